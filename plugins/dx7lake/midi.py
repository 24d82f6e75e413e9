"""Bronze extraction: MIDI files to Lakh ``detailed_notes``-compatible parquet.

symusic parses the files (C++, fast); each file becomes rows of the bronze contract
(see shared DESIGN.md): ids are deterministic hashes so reruns produce identical rows,
and a file that cannot be parsed is quarantined with its reason instead of failing the
run.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .lake import Lake

log = logging.getLogger(__name__)

BRONZE_PREFIX = "bronze/detailed_notes"
QUARANTINE_PREFIX = "bronze/quarantine"
MIDI_SUFFIXES = (".mid", ".midi")
DRUM_CHANNEL = 9

BRONZE_SCHEMA = pa.schema(
    [
        ("midi_id", pa.string()),
        ("track_id", pa.string()),
        ("message_id", pa.string()),
        ("start_time", pa.float64()),
        ("duration", pa.float64()),
        ("velocity", pa.int64()),
        ("note", pa.int64()),
        ("set_type", pa.string()),
        ("p", pa.string()),
        ("channel", pa.int16()),
        ("program", pa.int16()),
        ("is_drum", pa.bool_()),
        ("track_index", pa.int32()),
        ("start_seconds", pa.float64()),
        ("duration_seconds", pa.float64()),
        ("source_key", pa.string()),
    ]
)

QUARANTINE_SCHEMA = pa.schema(
    [("source_key", pa.string()), ("midi_id", pa.string()), ("bytes", pa.int64()), ("error", pa.string())]
)

SPLITS = (("train", 0.8), ("test", 0.9), ("validate", 1.0))


class MidiError(ValueError):
    """A file that cannot become bronze rows; its message is the quarantine reason."""


def midi_id_of(data: bytes) -> str:
    """Lakh names files by the md5 of their bytes: so do we."""
    return hashlib.md5(data).hexdigest()


def set_type_of(midi_id: str) -> str:
    """Stable 80/10/10 split from the id alone, so a song never straddles two splits."""
    u = int(midi_id[:8], 16) / 0x1_0000_0000
    return next(name for name, upper in SPLITS if u < upper)


def _hex_id(*parts: object) -> str:
    return hashlib.blake2b(":".join(map(str, parts)).encode(), digest_size=8).hexdigest()


def iter_source(source: str) -> Iterator[tuple[str, bytes]]:
    """(key relative to the source root, bytes) of every MIDI file under a folder."""
    root = Path(source)
    if not root.is_dir():
        raise FileNotFoundError(f"MIDI source folder not found: {source}")
    for path in sorted(root.rglob("*")):
        if path.is_file() and path.suffix.lower() in MIDI_SUFFIXES:
            yield path.relative_to(root).as_posix(), path.read_bytes()


def parse_midi(data: bytes, source_key: str, midi_id: str | None = None) -> pa.Table:
    """Bronze rows for one file; raises MidiError with a reason when it cannot be read."""
    from symusic import Score

    if not data:
        raise MidiError("empty file")
    if not data.startswith(b"MThd"):
        raise MidiError("not a MIDI file: missing MThd header")
    try:
        beats = Score.from_midi(data, ttype="quarter")
        seconds = Score.from_midi(data, ttype="second")
    except Exception as err:
        raise MidiError(f"unreadable MIDI: {err}") from err
    midi_id = midi_id or midi_id_of(data)
    cols: dict[str, list] = {name: [] for name in BRONZE_SCHEMA.names}
    for index, (track, track_s) in enumerate(zip(beats.tracks, seconds.tracks, strict=True)):
        n = len(track.notes)
        if n == 0:
            continue
        channel = DRUM_CHANNEL if track.is_drum else -1  # refined by the extract issue
        track_id = _hex_id(midi_id, index, channel, track.program)
        nb = track.notes.numpy()
        ns = track_s.notes.numpy()
        cols["midi_id"] += [midi_id] * n
        cols["track_id"] += [track_id] * n
        cols["message_id"] += [_hex_id(track_id, i) for i in range(n)]
        cols["start_time"] += nb["time"].astype(np.float64).tolist()
        cols["duration"] += nb["duration"].astype(np.float64).tolist()
        cols["velocity"] += nb["velocity"].astype(np.int64).tolist()
        cols["note"] += nb["pitch"].astype(np.int64).tolist()
        cols["channel"] += [channel] * n
        cols["program"] += [track.program] * n
        cols["is_drum"] += [bool(track.is_drum)] * n
        cols["track_index"] += [index] * n
        cols["start_seconds"] += ns["time"].astype(np.float64).tolist()
        cols["duration_seconds"] += ns["duration"].astype(np.float64).tolist()
    rows = len(cols["midi_id"])
    if rows == 0:
        raise MidiError("no notes")
    cols["set_type"] = [set_type_of(midi_id)] * rows
    cols["p"] = [midi_id[0]] * rows
    cols["source_key"] = [source_key] * rows
    return pa.table(cols, schema=BRONZE_SCHEMA)


def bronze_midi_ids(lake: Lake) -> set[str]:
    """midi_ids already in bronze or quarantine: the extract skips them (incremental runs)."""
    seen: set[str] = set()
    for prefix in (BRONZE_PREFIX, QUARANTINE_PREFIX):
        for key in lake.list(prefix + "/"):
            if key.endswith(".parquet"):
                seen.update(lake.read_parquet(key).column("midi_id").unique().to_pylist())
    return seen


@dataclass
class ExtractStats:
    files_seen: int = 0
    files_extracted: int = 0
    files_quarantined: int = 0
    files_skipped: int = 0
    duplicates: int = 0
    notes: int = 0
    partitions: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def _write_batch(lake: Lake, tables: Iterable[pa.Table], stats: ExtractStats) -> None:
    """Write one parquet per partition ``p``, named by its content so reruns are no-ops."""
    table = pa.concat_tables(list(tables))
    for p in sorted(set(table.column("p").to_pylist())):
        part = table.filter(pc.equal(table.column("p"), p))
        ids = sorted(set(part.column("midi_id").to_pylist()))
        key = f"{BRONZE_PREFIX}/p={p}/part-{_hex_id(*ids)}.parquet"
        if not lake.exists(key):
            lake.put_parquet(key, part)
        stats.partitions.append(p)


def extract(source: str, lake: Lake, batch_files: int = 500) -> ExtractStats:
    """Extract every MIDI file under ``source`` not yet in bronze; quarantine bad ones."""
    stats = ExtractStats()
    known = bronze_midi_ids(lake)
    batch: list[pa.Table] = []
    quarantine: list[dict] = []
    for source_key, data in iter_source(source):
        stats.files_seen += 1
        midi_id = midi_id_of(data)
        if midi_id in known:
            stats.files_skipped += 1
            continue
        known.add(midi_id)
        try:
            table = parse_midi(data, source_key, midi_id)
        except MidiError as err:
            stats.files_quarantined += 1
            quarantine.append({"source_key": source_key, "midi_id": midi_id, "bytes": len(data), "error": str(err)})
            continue
        batch.append(table)
        stats.files_extracted += 1
        stats.notes += table.num_rows
        if len(batch) >= batch_files:
            _write_batch(lake, batch, stats)
            batch = []
    if batch:
        _write_batch(lake, batch, stats)
    if quarantine:
        ids = sorted(q["midi_id"] for q in quarantine)
        lake.put_parquet(
            f"{QUARANTINE_PREFIX}/part-{_hex_id(*ids)}.parquet",
            pa.Table.from_pylist(quarantine, schema=QUARANTINE_SCHEMA),
        )
    stats.partitions = sorted(set(stats.partitions))
    log.info("extract: %s", stats.as_dict())
    return stats


def bronze_partitions(lake: Lake) -> list[str]:
    """The ``p`` values that have bronze data."""
    parts = {k.split("/")[2].removeprefix("p=") for k in lake.list(BRONZE_PREFIX + "/") if k.endswith(".parquet")}
    return sorted(parts)


def read_bronze_partition(lake: Lake, p: str) -> pa.Table | None:
    return lake.read_parquet_prefix(f"{BRONZE_PREFIX}/p={p}/")


__all__ = [
    "BRONZE_SCHEMA",
    "MidiError",
    "bronze_partitions",
    "extract",
    "midi_id_of",
    "parse_midi",
    "read_bronze_partition",
    "set_type_of",
]
