"""Gold rendering: unique phrase contents × DX7 voices to mono 16-bit FLAC with manifests.

A phrase is rendered by an engine (dexed-py in-process by default, see ``engine``; the
real Dexed VST3 when ``DX7LAKE_DEXED_VST3`` is set, see ``vst3``), mastered to FLAC
(``master``), and described by a manifest row that alone reproduces it: the aligned
notes, the 156-byte voice, the tempo, sample rate, effects, FLAC level and encoder, and note-length rule.

Gold objects are content-addressed (``gold/renders/<note_length>/<patch>/<hh>/<content_hash>.flac``)
and a partition's manifests are written last, so a killed task leaves no manifest and a
rerun skips every object that already exists. Gold of another note-length rule (before
issue 19 each note was cut 1 s after its note-off) is never reused: planning finds it and
its partitions are rendered afresh under their own keys, replacing the manifest. A
partition's rendering is spread over a process pool (``pool``) in batches, with a
bounded number in flight; the objects are stored by threads of the task process itself,
through its own lake client (an S3 lake's Airflow connection is only reachable from the
task process, not from pool workers).
"""

from __future__ import annotations

import hashlib
import io
import resource
import tempfile
import time
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from itertools import islice

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..lake import Lake
from .engine import DEFAULT_MEMO_BYTES, RELEASE_1S, UNTIL_SILENT, DexedEngine, Note, RenderSpec
from .master import Master
from .patches import Voice
from .pool import ordered_map, worker_count
from .vst3 import Vst3Engine

GOLD_RENDERS = "gold/renders"
GOLD_MANIFESTS = "gold/manifests"
BATCH = 64  # phrases per pool job: large enough to amortise IPC, small enough to bound memory
STORE_THREADS = 8  # concurrent lake writes (S3 PUTs wait on the network, not the CPU)
# A pool in a fresh task process costs about a second (the forkserver imports the render
# stack, each worker warms its own note memo): below this many renders in a partition, one
# process is faster. Measured on the demo: 16 partitions of ~260 renders took ~3 s per
# Airflow task with 2 workers, against ~0.3 s of rendering once warm.
POOL_MIN_RENDERS = 1024
ROW_GROUP = 4096

NOTE_STRUCT = pa.struct(
    [("start", pa.float64()), ("duration", pa.float64()), ("velocity", pa.int32()), ("pitch", pa.int32())]
)
MANIFEST_SCHEMA = pa.schema(
    [
        ("content_hash", pa.string()),
        ("patch_id", pa.string()),
        ("patch_name", pa.string()),
        ("key", pa.string()),
        ("sha256", pa.string()),
        ("bytes", pa.int64()),
        ("sample_rate", pa.int32()),
        ("duration_s", pa.float64()),
        ("peak", pa.float64()),
        ("rms", pa.float64()),
        ("bpm", pa.float64()),
        ("gain", pa.float64()),
        ("notes", pa.list_(NOTE_STRUCT)),
        ("patch_vced", pa.binary()),
        ("engine", pa.string()),
        ("effects", pa.string()),
        ("flac_level", pa.int32()),
        ("flac_encoder", pa.string()),
        ("note_length", pa.string()),
    ]
)


class GoldConflict(RuntimeError):
    """A gold key already holds different audio: it was rendered with other settings."""


def render_key(patch_id: str, content_hash: str, note_length: str = UNTIL_SILENT) -> str:
    """Renders by another note-length rule are other audio: the rule is part of the key."""
    return f"{GOLD_RENDERS}/{note_length}/{patch_id}/{content_hash[:2]}/{content_hash}.flac"


def manifest_key(patch_id: str, render_p: int) -> str:
    return f"{GOLD_MANIFESTS}/{patch_id}/p={render_p:04d}.parquet"


def spec_of_row(row: dict) -> RenderSpec:
    """The spec a manifest row was rendered with (rows from before the note-length rule cut at 1 s)."""
    return RenderSpec(
        sample_rate=row["sample_rate"],
        bpm=row["bpm"],
        effects=row["effects"],
        flac_level=row["flac_level"],
        note_length=row.get("note_length") or RELEASE_1S,
    )


def content_fingerprint(content_hashes: Iterable[str]) -> str:
    """md5 of the sorted hashes concatenated; silver computes the same in SQL."""
    return hashlib.md5("".join(sorted(content_hashes)).encode()).hexdigest()


class PhraseRenderer:
    """Engine + master: FLAC bytes and the manifest row of one (content, voice)."""

    def __init__(
        self, spec: RenderSpec, vst3_path: str | None = None, memoise: bool = True, memo_bytes: int = DEFAULT_MEMO_BYTES
    ) -> None:
        self.spec = spec
        self.engine = Vst3Engine(spec, vst3_path) if vst3_path else DexedEngine(spec, memoise, memo_bytes)
        self.engine_name = "dexed-vst3" if vst3_path else "dexed-py"
        self.master = Master(spec)

    def render(self, voice: Voice, content_hash: str, notes: Sequence[Note]) -> tuple[bytes, dict]:
        spec = self.spec
        out = self.master.master(self.engine.phrase(voice, notes))
        row = {
            "content_hash": content_hash,
            "patch_id": voice.patch_id,
            "patch_name": voice.name,
            "key": render_key(voice.patch_id, content_hash, spec.note_length),
            "sha256": hashlib.sha256(out.flac).hexdigest(),
            "bytes": len(out.flac),
            "sample_rate": spec.sample_rate,
            "duration_s": len(out.pcm) / spec.sample_rate,
            "peak": out.peak,
            "rms": out.rms,
            "bpm": spec.bpm,
            "gain": out.gain,
            "notes": [{"start": s, "duration": d, "velocity": v, "pitch": p} for s, d, v, p in notes],
            "patch_vced": bytes(voice.vced),
            "engine": self.engine_name,
            "effects": spec.effects,
            "flac_level": spec.flac_level,
            "flac_encoder": self.master.encoder.name,
            "note_length": spec.note_length,
        }
        return out.flac, row


def render_row(row: dict, vst3_path: str | None = None) -> bytes:
    """Re-render one manifest row from the row alone (its notes, voice and settings)."""
    voice = Voice(row["patch_name"], bytes(row["patch_vced"]))
    notes = [(n["start"], n["duration"], n["velocity"], n["pitch"]) for n in row["notes"]]
    flac, _ = PhraseRenderer(spec_of_row(row), vst3_path).render(voice, row["content_hash"], notes)
    return flac


# --- pool workers: one renderer (engine, memo, effects) per process ---

_worker: dict = {}


def _init_worker(spec: RenderSpec, vst3_path: str | None, memo_bytes: int) -> None:
    _worker["renderer"] = PhraseRenderer(spec, vst3_path, memo_bytes=memo_bytes)


@dataclass
class Batch:
    voice: Voice
    items: list[tuple[str, Sequence[Note]]]


def _render_batch(batch: Batch) -> tuple[list[tuple[bytes, dict]], dict]:
    """FLACs and rows of a batch, with the engine counts and this worker's peak RSS."""
    renderer: PhraseRenderer = _worker["renderer"]
    before = renderer.engine.stats()
    renders = [renderer.render(batch.voice, content_hash, notes) for content_hash, notes in batch.items]
    after = renderer.engine.stats()
    stats = {k: after[k] - before[k] for k in after}
    stats["peak_rss_kib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return renders, stats


def _store(lake: Lake, flac: bytes, row: dict) -> bool:
    """Put one object unless it exists (from an attempt that died before its manifest),
    in which case it must be the same render. True when written."""
    if not lake.exists(row["key"]):
        lake.put(row["key"], flac)
        return True
    if hashlib.sha256(lake.get(row["key"])).hexdigest() != row["sha256"]:
        raise GoldConflict(
            f"{row['key']} holds a different render: gold keys do not carry the tempo, sample rate "
            "or effects, so render other settings into another lake"
        )
    return False


# --- partitions ---


class ManifestWriter:
    """Rows of one (voice, partition) spooled to a parquet file; put into the lake last."""

    def __init__(self, file) -> None:
        self._file = file
        self._writer: pq.ParquetWriter | None = None
        self._rows: list[dict] = []
        self.count = 0

    def add_rows(self, rows: list[dict]) -> None:
        self._rows.extend(rows)
        self.count += len(rows)
        if len(self._rows) >= ROW_GROUP:
            self._flush()

    def add_table(self, table: pa.Table) -> None:
        self._flush()
        self._write(table)
        self.count += table.num_rows

    def _write(self, table: pa.Table) -> None:
        if self._writer is None:
            self._writer = pq.ParquetWriter(self._file, MANIFEST_SCHEMA, compression="zstd")
        self._writer.write_table(table)

    def _flush(self) -> None:
        if self._rows:
            self._write(pa.Table.from_pylist(self._rows, schema=MANIFEST_SCHEMA))
            self._rows = []

    def publish(self, lake: Lake, key: str) -> None:
        self._flush()
        if self._writer is None:
            self._write(MANIFEST_SCHEMA.empty_table())
        self._writer.close()
        self._file.seek(0)
        lake.put(key, self._file.read())


def _read_manifest(lake: Lake, key: str, spec: RenderSpec) -> pa.Table | None:
    """The manifest's rows when they are renders of ``spec``; None when there is none, or
    when it is from another note-length rule (its objects are under other keys: all re-rendered)."""
    if not lake.exists(key):
        return None
    table = lake.read_parquet(key)
    if table.num_rows:
        first = table.slice(0, 1).to_pylist()[0]
        if spec_of_row(first).note_length != spec.note_length:
            return None
        if spec_of_row(first) != spec:
            raise GoldConflict(
                f"{key} was rendered with {spec_of_row(first)}, this run asks for {spec}: gold keys do not carry "
                "the render settings, so render other settings into another lake"
            )
    return table


def _batches(contents: Iterable[tuple[str, Sequence[Note]]], size: int) -> Iterator[list]:
    it = iter(contents)
    while batch := list(islice(it, size)):
        yield batch


def render_partition(
    lake: Lake,
    render_p: int,
    contents: Iterable[tuple[str, Sequence[Note]]],
    voices: Sequence[Voice],
    spec: RenderSpec,
    workers: int | None = None,
    vst3_path: str | None = None,
    memo_bytes: int = DEFAULT_MEMO_BYTES,
    batch_size: int = BATCH,
    pool_min_renders: int = POOL_MIN_RENDERS,
) -> dict:
    """Render every (content, voice) of one partition that gold lacks; manifests last.

    ``contents`` may be a stream (a database cursor): it is read once, in batches, so
    memory stays bounded by the pool's jobs in flight and the spooled manifests.
    """
    started = time.perf_counter()
    workers = worker_count(workers)
    done: dict[str, tuple[pa.Table, set[str]]] = {}
    for voice in voices:
        table = _read_manifest(lake, manifest_key(voice.patch_id, render_p), spec)
        if table is not None:
            done[voice.patch_id] = (table, set(table.column("content_hash").to_pylist()))
    wanted: set[str] = set()

    def jobs() -> Iterator[Batch]:
        for batch in _batches(contents, batch_size):
            wanted.update(h for h, _ in batch)
            for voice in voices:
                have = done[voice.patch_id][1] if voice.patch_id in done else set()
                todo = [item for item in batch if item[0] not in have]
                if todo:
                    yield Batch(voice, todo)

    written = reused = kept = calls = hits = manifests = rss = 0
    with ExitStack() as stack:
        writers = {v.patch_id: ManifestWriter(stack.enter_context(tempfile.TemporaryFile())) for v in voices}
        storing = stack.enter_context(ThreadPoolExecutor(STORE_THREADS, thread_name_prefix="gold-store"))
        stored: deque[Future] = deque()
        initargs = (spec, vst3_path, memo_bytes)
        min_jobs = -(-pool_min_renders // batch_size)  # batches worth starting a pool for
        for renders, stats in ordered_map(_render_batch, jobs(), workers, _init_worker, initargs, min_jobs=min_jobs):
            writers[renders[0][1]["patch_id"]].add_rows([row for _, row in renders])
            stored.extend(storing.submit(_store, lake, flac, row) for flac, row in renders)
            while len(stored) > 16 * STORE_THREADS:  # bound the FLAC bytes waiting to be stored
                written += stored.popleft().result()
            calls, hits = calls + stats["engine_calls"], hits + stats["memo_hits"]
            rss = max(rss, stats["peak_rss_kib"])
        while stored:
            written += stored.popleft().result()
        reused = sum(w.count for w in writers.values()) - written
        for voice in voices:  # every object is in gold: now the manifests, last
            writer = writers[voice.patch_id]
            if voice.patch_id in done:
                old = done[voice.patch_id][0]
                still = old.filter(pc.is_in(old.column("content_hash"), pa.array(sorted(wanted), pa.string())))
                kept += still.num_rows
                if writer.count == 0 and still.num_rows == old.num_rows:
                    continue  # the manifest already says exactly this: write nothing
                writer.add_table(still.cast(MANIFEST_SCHEMA))
            writer.publish(lake, manifest_key(voice.patch_id, render_p))
            manifests += 1
    return {
        "render_p": render_p,
        "contents": len(wanted),
        "patches": len(voices),
        "rendered": written,
        "reused": reused + kept,
        "manifests_written": manifests,
        "workers": workers,
        "seconds": round(time.perf_counter() - started, 3),
        "memo_hit_rate": round(hits / (hits + calls), 4) if calls + hits else 0.0,
        "worker_peak_rss_mib": round(rss / 1024, 1),
    }


def pending_partitions(
    lake: Lake, fingerprints: dict[int, str], voices: Sequence[Voice], note_length: str = UNTIL_SILENT
) -> list[int]:
    """Partitions where some voice's manifest does not cover exactly silver's contents by ``note_length``."""
    pending = []
    for p, fingerprint in sorted(fingerprints.items()):
        for voice in voices:
            key = manifest_key(voice.patch_id, p)
            if not lake.exists(key):
                pending.append(p)
                break
            manifest = pq.ParquetFile(io.BytesIO(lake.get(key)))
            if "note_length" not in manifest.schema_arrow.names:  # rendered before the rule was recorded
                pending.append(p)
                break
            table = manifest.read(columns=["content_hash", "note_length"])
            hashes = table.column("content_hash").to_pylist()
            rules = set(table.column("note_length").to_pylist())
            if content_fingerprint(hashes) != fingerprint or rules - {note_length}:
                pending.append(p)
                break
    return pending
