"""The bronze contract (docs/ARCHITECTURE.md, "Bronze"): columns, ids, the stable split.

Ids are built from the file's md5 and positions inside it, never from run state, so a
rerun or another worker produces byte-identical rows: ``track_id`` is 16 hex digits of the
midi_id, 4 of the MIDI track and 1 of the channel; ``message_id`` is the track id and 6 hex
digits of the note's ordinal in that track (note-on order). ``rows`` assembles them.
"""

from __future__ import annotations

import hashlib

import pyarrow as pa

from ..config import DEFAULT_SPLIT

BRONZE_PREFIX = "bronze/detailed_notes"
QUARANTINE_PREFIX = "bronze/quarantine"
INDEX_PREFIX = "bronze/index"
DRUM_CHANNEL = 9
HEX = "0123456789abcdef"

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

# One row per file a batch decided on: the extract's memory of what it has done.
INDEX_SCHEMA = pa.schema(
    [("midi_id", pa.string()), ("source_key", pa.string()), ("status", pa.string()), ("notes", pa.int64())]
)


def midi_id_of(data: bytes) -> str:
    """Lakh names files by the md5 of their bytes: so do we."""
    return hashlib.md5(data).hexdigest()


def set_type_of(midi_id: str, split: tuple[tuple[str, float], ...] = DEFAULT_SPLIT) -> str:
    """The split of a song from its id alone, so a song never straddles two sets."""
    u = int(midi_id[:8], 16) / 0x1_0000_0000
    total = sum(share for _, share in split)
    upper = 0.0
    for name, share in split:
        upper += share / total
        if u < upper:
            return name
    return split[-1][0]


def part_name(ids: list[str]) -> str:
    """A batch's object name from the ids it holds: the same batch always gets the same name."""
    digest = hashlib.blake2b("\n".join(sorted(ids)).encode(), digest_size=8).hexdigest()
    return f"part-{digest}.parquet"
