"""Gold rendering: unique phrase contents × DX7 voices to mono 16-bit FLAC with manifests.

A phrase is rendered by an engine (dexed-py in-process by default, see ``engine``; the
real Dexed VST3 when ``DX7LAKE_DEXED_VST3`` is set, see ``vst3``), mastered to FLAC
(``master``), and described by a manifest row that alone reproduces it: the aligned
notes, the 156-byte voice, the tempo, sample rate, effects, FLAC level and encoder, and
note-length rule, and the render profile they make (``profiles``: its id and canonical
form); and the render's audio features (``features``), computed from the mastered samples
in the worker. ``notes`` are silver's; the profile's augmentations (transpose, velocity
scale) apply to them at render time, and the features (f0 against the pitch) see the
augmented notes.

Gold objects are content-addressed per render profile
(``gold/renders/<profile_id>/<patch>/<hh>/<content_hash>.flac``): a profile is every
setting that changes the audio, so another tempo, rate, effects chain or augmentation is
another profile, rendered beside the others, never mistaken for them. Gold is append-only:
a run that renders new contents into a partition adds one manifest part per (profile,
voice) (``gold/manifests/<profile_id>/<patch>/p=NNNN/part-<stamp>-<digest>.parquet``)
holding only the new rows, written after their objects, so a killed task leaves no part
and a rerun with nothing new writes nothing. A partition's manifest is the union of its
parts (a later part wins for a content it repeats); ``compact_partition`` merges them.

Lakes rendered before profiles (``gold/renders/<note_length>/<patch>/...``, manifests
``gold/manifests/<patch>/p=NNNN/``) are moved to this layout once by ``migrate``
(``dx7lake migrate-profiles``); until then readers do not see their parts and validation
names them.

A partition's rendering is spread over a process pool (``pool``) in batches, with a
bounded number in flight; the objects are stored by threads of the task process itself,
through its own lake client (an S3 lake's Airflow connection is only reachable from the
task process, not from pool workers).
"""

from __future__ import annotations

import hashlib
import io
import os
import resource
import tempfile
import time
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import islice

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..lake import Lake
from .engine import DEFAULT_MEMO_BYTES, DexedEngine, Note, RenderSpec
from .features import features
from .master import Master
from .patches import Voice
from .pool import ordered_map, worker_count
from .profiles import canonical, spec_from_canonical
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
        ("profile_id", pa.string()),  # the render profile (``profiles``): part of the key
        ("profile", pa.string()),  # its canonical form: the row alone says how it was rendered
        # audio features (``features``): null in parts written before they existed
        ("lufs", pa.float64()),
        ("true_peak_dbtp", pa.float64()),
        ("spectral_centroid_hz", pa.float64()),
        ("spectral_bandwidth_hz", pa.float64()),
        ("zcr", pa.float64()),
        ("onset_count", pa.int32()),
        ("mfcc", pa.list_(pa.float64())),
        ("f0_hz", pa.float64()),
        ("f0_error_cents", pa.float64()),
    ]
)


class GoldConflict(RuntimeError):
    """A gold key already holds different audio than the render of its profile."""


def render_key(profile_id: str, patch_id: str, content_hash: str) -> str:
    """Renders of another profile are other audio: the profile is part of the key."""
    return f"{GOLD_RENDERS}/{profile_id}/{patch_id}/{content_hash[:2]}/{content_hash}.flac"


def manifest_prefix(profile_id: str, patch_id: str, render_p: int) -> str:
    """The folder of one (profile, patch, partition)'s manifest parts."""
    return f"{GOLD_MANIFESTS}/{profile_id}/{patch_id}/p={render_p:04d}/"


def part_name(content_hashes: Iterable[str]) -> str:
    """A new part's file name: a UTC stamp first, so parts sort in the order they were
    written (a later part wins), then a digest of its contents, so two writers never collide."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    return f"part-{stamp}-{content_fingerprint(content_hashes)[:12]}.parquet"


def part_key(profile_id: str, patch_id: str, render_p: int, content_hashes: Iterable[str]) -> str:
    return manifest_prefix(profile_id, patch_id, render_p) + part_name(content_hashes)


def part_partition(key: str) -> tuple[str, str, int]:
    """(profile_id, patch_id, render partition) of a manifest part's key."""
    profile_id, patch_id, folder = key.removeprefix(GOLD_MANIFESTS + "/").split("/")[:3]
    return profile_id, patch_id, int(folder.removeprefix("p="))


def _is_part(key: str, depth: int) -> bool:
    """A manifest part ``depth`` folders below gold/manifests/ (3: profile, patch, p=; 2: legacy)."""
    folders = key.removeprefix(GOLD_MANIFESTS + "/").split("/")
    return len(folders) == depth + 1 and folders[-2].startswith("p=") and folders[-1].startswith("part-")


def manifest_parts(
    lake: Lake, profile_id: str | None = None, patch_id: str | None = None, render_p: int | None = None
) -> list[str]:
    """Keys of the manifest parts of gold, of one profile, of one (profile, patch), or of one
    (profile, patch, partition), in order. Parts of the layout before profiles are not among them."""
    if profile_id is None:
        prefix = GOLD_MANIFESTS + "/"
    elif patch_id is None:
        prefix = f"{GOLD_MANIFESTS}/{profile_id}/"
    elif render_p is None:
        prefix = f"{GOLD_MANIFESTS}/{profile_id}/{patch_id}/"
    else:
        prefix = manifest_prefix(profile_id, patch_id, render_p)
    return [k for k in lake.list(prefix) if k.endswith(".parquet") and _is_part(k, 3)]


def legacy_parts(lake: Lake) -> list[str]:
    """Manifest parts of the layout before profiles (``gold/manifests/<patch>/p=NNNN/part-*``)."""
    return [k for k in lake.list(GOLD_MANIFESTS + "/") if k.endswith(".parquet") and _is_part(k, 2)]


def union_of_parts(tables: Sequence[pa.Table]) -> pa.Table | None:
    """The parts of one partition as one manifest: a content repeated by a later part
    (re-rendered after a lost part, or a compaction not yet cleaned up) keeps the later row."""
    if not tables:
        return None
    seen: pa.Array = pa.array([], pa.string())
    kept = []
    for table in reversed(tables):
        fresh = table.filter(pc.invert(pc.is_in(table.column("content_hash"), seen)))
        kept.append(fresh)
        seen = pa.concat_arrays([seen, fresh.column("content_hash").combine_chunks()])
    return pa.concat_tables(reversed(kept), promote_options="default")


def read_part(lake: Lake, key: str, columns: list[str] | None = None) -> pa.Table:
    """One manifest part, with those of ``columns`` it has (a part written before a column
    was added lacks it; the union fills it with nulls)."""
    part = pq.ParquetFile(io.BytesIO(lake.get(key)))
    if columns is not None:
        columns = [c for c in columns if c in part.schema_arrow.names]
    return part.read(columns=columns)


def read_manifest(
    lake: Lake, profile_id: str, patch_id: str, render_p: int, columns: list[str] | None = None
) -> pa.Table | None:
    """One (profile, patch, partition)'s manifest: the union of its parts (None when it has none)."""
    keys = manifest_parts(lake, profile_id, patch_id, render_p)
    return union_of_parts([read_part(lake, k, columns) for k in keys])


def current_manifest(lake: Lake, profile_id: str, patch_id: str) -> pa.Table | None:
    """Every manifest row of one (profile, patch): each partition's manifest (the union of
    its parts, a later part winning per content). None when it has no parts."""
    partitions: dict[int, list[str]] = {}
    for key in manifest_parts(lake, profile_id, patch_id):
        partitions.setdefault(part_partition(key)[2], []).append(key)
    if not partitions:
        return None
    return pa.concat_tables(
        [union_of_parts([read_part(lake, k) for k in keys]) for _, keys in sorted(partitions.items())],
        promote_options="default",
    )


def spec_of_row(row: dict) -> RenderSpec:
    """The profile a manifest row was rendered with (rows of the layout before profiles: see ``migrate``)."""
    if row.get("profile"):
        return spec_from_canonical(row["profile"])
    from .migrate import legacy_spec

    return legacy_spec(row)


def content_fingerprint(content_hashes: Iterable[str]) -> str:
    """md5 of the sorted hashes concatenated: the same set always gets the same digest."""
    return hashlib.md5("".join(sorted(content_hashes)).encode()).hexdigest()


class PhraseRenderer:
    """Engine + master: FLAC bytes and the manifest row of one (content, voice)."""

    def __init__(
        self, spec: RenderSpec, vst3_path: str | None = None, memoise: bool = True, memo_bytes: int = DEFAULT_MEMO_BYTES
    ) -> None:
        self.spec = spec
        self.engine = Vst3Engine(spec, vst3_path) if vst3_path else DexedEngine(spec, memoise, memo_bytes)
        self.engine_name = "dexed-vst3" if vst3_path else "dexed-py"
        if self.engine_name != spec.engine:
            raise ValueError(f"profile {spec.profile_id} renders with {spec.engine}, not {self.engine_name}")
        self.master = Master(spec)
        self.profile_id = spec.profile_id
        self.profile = canonical(spec)

    def render(self, voice: Voice, content_hash: str, notes: Sequence[Note]) -> tuple[bytes, dict]:
        """The FLAC and manifest row of silver's ``notes`` as this profile renders them (augmented)."""
        spec = self.spec
        heard = spec.augment(notes)
        out = self.master.master(self.engine.phrase(voice, heard))
        row = {
            "content_hash": content_hash,
            "patch_id": voice.patch_id,
            "patch_name": voice.name,
            "key": render_key(self.profile_id, voice.patch_id, content_hash),
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
            "profile_id": self.profile_id,
            "profile": self.profile,
            **features(out.pcm, spec.sample_rate, heard, spec.samples_per_beat, out.peak).row(),
        }
        return out.flac, row


def rerender_row(row: dict, vst3_path: str | None = None) -> tuple[bytes, dict]:
    """Re-render one manifest row from the row alone (its notes, voice and settings): FLAC and the new row."""
    voice = Voice(row["patch_name"], bytes(row["patch_vced"]))
    notes = [(n["start"], n["duration"], n["velocity"], n["pitch"]) for n in row["notes"]]
    return PhraseRenderer(spec_of_row(row), vst3_path).render(voice, row["content_hash"], notes)


def render_row(row: dict, vst3_path: str | None = None) -> bytes:
    """The FLAC of one manifest row, re-rendered from the row alone."""
    return rerender_row(row, vst3_path)[0]


# --- pool workers: one renderer (engine, memo, effects) per process ---

_worker: dict = {}


def _init_worker(spec: RenderSpec, vst3_path: str | None, memo_bytes: int) -> None:
    _worker["renderer"] = PhraseRenderer(spec, vst3_path, memo_bytes=memo_bytes)


@dataclass
class Batch:
    voice: Voice
    items: list[tuple[str, Sequence[Note]]]


def _render_batch(batch: Batch) -> tuple[list[tuple[bytes, dict]], dict]:
    """FLACs and rows of a batch, with the engine counts, this worker's peak RSS and the CPU
    seconds the batch took in it (a pool worker's CPU time reaches no parent's rusage: the
    forkserver that reaps it outlives the task)."""
    renderer: PhraseRenderer = _worker["renderer"]
    before, cpu_before = renderer.engine.stats(), time.process_time()
    renders = [renderer.render(batch.voice, content_hash, notes) for content_hash, notes in batch.items]
    after = renderer.engine.stats()
    stats = {k: after[k] - before[k] for k in after}
    stats["peak_rss_kib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    stats["cpu_seconds"], stats["pid"] = time.process_time() - cpu_before, os.getpid()
    return renders, stats


def _store(lake: Lake, flac: bytes, row: dict) -> bool:
    """Put one object unless it exists (from an attempt that died before its manifest),
    in which case it must be the same render. True when written."""
    if not lake.exists(row["key"]):
        lake.put(row["key"], flac)
        return True
    if hashlib.sha256(lake.get(row["key"])).hexdigest() != row["sha256"]:
        raise GoldConflict(
            f"{row['key']} holds a different render than profile {row['profile_id']} gives now: the engine "
            "renders otherwise than it did (a changed build under the same version?); move the object aside"
        )
    return False


# --- partitions ---


class ManifestWriter:
    """Rows of one (voice, partition) spooled to a parquet file; put into the lake last."""

    def __init__(self, file) -> None:
        self._file = file
        self._writer: pq.ParquetWriter | None = None
        self._rows: list[dict] = []
        self.hashes: list[str] = []

    @property
    def count(self) -> int:
        return len(self.hashes)

    def add_rows(self, rows: list[dict]) -> None:
        self._rows.extend(rows)
        self.hashes.extend(row["content_hash"] for row in rows)
        if len(self._rows) >= ROW_GROUP:
            self._flush()

    def _write(self, table: pa.Table) -> None:
        if self._writer is None:
            self._writer = pq.ParquetWriter(self._file, MANIFEST_SCHEMA, compression="zstd")
        self._writer.write_table(table)

    def _flush(self) -> None:
        if self._rows:
            self._write(pa.Table.from_pylist(self._rows, schema=MANIFEST_SCHEMA))
            self._rows = []

    def publish(self, lake: Lake, profile_id: str, patch_id: str, render_p: int) -> str:
        """Put the rows as a new part of the partition's manifest; returns its key."""
        self._flush()
        if self._writer is None:
            self._write(MANIFEST_SCHEMA.empty_table())
        self._writer.close()
        self._file.seek(0)
        key = part_key(profile_id, patch_id, render_p, self.hashes)
        lake.put(key, self._file.read())
        return key


def _rendered_contents(lake: Lake, spec: RenderSpec, patch_id: str, render_p: int) -> set[str]:
    """The contents a partition's manifest holds as renders of ``spec``'s profile; raises
    GoldConflict when its rows name another profile (two profiles whose ids collide)."""
    profile_id = spec.profile_id
    table = read_manifest(lake, profile_id, patch_id, render_p, ["content_hash", "profile"])
    if table is None:
        return set()
    others = set(table.column("profile").unique().to_pylist()) - {canonical(spec)}
    if others:
        raise GoldConflict(
            f"{manifest_prefix(profile_id, patch_id, render_p)} holds renders of {sorted(others)}, "
            f"not of {canonical(spec)}: two profiles share the id {profile_id}"
        )
    return set(table.column("content_hash").to_pylist())


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
    """Render every (content, voice) of one partition that gold lacks in ``spec``'s profile;
    a new manifest part per voice that rendered anything, after its objects.

    ``contents`` may be a stream (a database cursor): it is read once, in batches, so
    memory stays bounded by the pool's jobs in flight and the spooled manifests.
    """
    started = time.perf_counter()
    workers = worker_count(workers)
    done = {voice.patch_id: _rendered_contents(lake, spec, voice.patch_id, render_p) for voice in voices}
    wanted: set[str] = set()

    def jobs() -> Iterator[Batch]:
        for batch in _batches(contents, batch_size):
            wanted.update(h for h, _ in batch)
            for voice in voices:
                todo = [item for item in batch if item[0] not in done[voice.patch_id]]
                if todo:
                    yield Batch(voice, todo)

    written = reused = calls = hits = manifests = rss = 0
    pool_cpu = 0.0
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
            pool_cpu += stats["cpu_seconds"] if stats["pid"] != os.getpid() else 0.0
        while stored:
            written += stored.popleft().result()
        reused = sum(w.count for w in writers.values()) - written
        kept = sum(len(wanted & have) for have in done.values())
        for voice in voices:  # every object is in gold: now the new parts, last
            if writers[voice.patch_id].count:
                writers[voice.patch_id].publish(lake, spec.profile_id, voice.patch_id, render_p)
                manifests += 1
    return {
        "profile_id": spec.profile_id,
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
        "pool_cpu_seconds": round(pool_cpu, 3),
    }


def pending_partitions(
    lake: Lake,
    profile_ids: Sequence[str],
    voices: Sequence[Voice],
    uncovered: Iterable[tuple[str, int]],
    loaded_parts: Iterable[str],
) -> list[tuple[str, int]]:
    """(profile, partition) pairs to render: those where silver has contents gold.renders
    lacks for some voice in that profile (``uncovered``), and those whose manifest parts in
    the lake differ from the parts the warehouse has loaded (a part written but not loaded,
    or loaded but gone). Only the parts' keys are listed: no manifest is read."""
    listed = {key for pid in profile_ids for voice in voices for key in manifest_parts(lake, pid, voice.patch_id)}
    chosen = {(pid, voice.patch_id) for pid in profile_ids for voice in voices}
    loaded = {key for key in loaded_parts if _is_part(key, 3) and part_partition(key)[:2] in chosen}
    changed = {(part_partition(key)[0], part_partition(key)[2]) for key in listed ^ loaded}
    return sorted(set(uncovered) | changed)


def compact_partition(lake: Lake, profile_id: str, patch_id: str, render_p: int) -> dict:
    """Merge a partition's parts into one: the merged part is written first, then the old
    parts are deleted, so a reader sees every row at all times (the union tolerates the
    repeats in between), and a compaction killed halfway is finished by the next one."""
    keys = manifest_parts(lake, profile_id, patch_id, render_p)
    where = {"profile_id": profile_id, "patch_id": patch_id, "render_p": render_p}
    if len(keys) < 2:
        return {**where, "parts": len(keys), "merged": 0}
    table = union_of_parts([read_part(lake, k) for k in keys])
    for field in MANIFEST_SCHEMA:  # a column no part has yet (written before it existed): nulls
        if field.name not in table.column_names:
            table = table.append_column(field, pa.nulls(table.num_rows, field.type))
    table = table.select(MANIFEST_SCHEMA.names).cast(MANIFEST_SCHEMA).sort_by("content_hash")
    merged = part_key(profile_id, patch_id, render_p, table.column("content_hash").to_pylist())
    lake.put_parquet(merged, table)
    for key in keys:
        lake.delete(key)
    return {**where, "parts": len(keys), "merged": table.num_rows, "key": merged}


def backfill_features(lake: Lake, profile_id: str, patch_id: str, render_p: int) -> dict:
    """Audio features for the rows of a partition's manifest that lack them (parts written
    before features existed), from their FLACs: decoded, they are the samples the worker
    held, so the features are those a render today records. The rows, otherwise unchanged,
    go into a new part (a later part wins; ``compact`` merges them); nothing to do, no part."""
    import soundfile

    table = read_manifest(lake, profile_id, patch_id, render_p)
    rows = [] if table is None else [r for r in table.to_pylist() if r.get("spectral_centroid_hz") is None]
    for row in rows:
        pcm, sample_rate = soundfile.read(io.BytesIO(lake.get(row["key"])), dtype="int32")
        spec = spec_of_row(row)
        notes = spec.augment([(n["start"], n["duration"], n["velocity"], n["pitch"]) for n in row["notes"]])
        row.update(features(pcm >> 16, sample_rate, notes, spec.samples_per_beat).row())
    if rows:
        lake.put_parquet(
            part_key(profile_id, patch_id, render_p, [r["content_hash"] for r in rows]),
            pa.Table.from_pylist(rows, schema=MANIFEST_SCHEMA),
        )
    return {"profile_id": profile_id, "patch_id": patch_id, "render_p": render_p, "backfilled": len(rows)}
