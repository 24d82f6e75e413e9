"""Notes of many files to one bronze arrow table, column by column.

A batch of files becomes one table with no per-note Python: string columns are
``take``s from per-file dictionaries, and the hex ids are assembled as byte matrices.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from .notes import Notes
from .schema import BRONZE_SCHEMA, DRUM_CHANNEL

_HEX = np.frombuffer(b"0123456789abcdef", np.uint8)


@dataclass(frozen=True)
class ParsedFile:
    midi_id: str
    source_key: str
    set_type: str
    notes: Notes


def _hex_digits(values: np.ndarray, width: int) -> np.ndarray:
    """(n, width) ASCII hex digits of ``values``, most significant first."""
    shifts = np.arange(width - 1, -1, -1, dtype=np.int64) * 4
    return _HEX[(values.astype(np.int64)[:, None] >> shifts) & 15]


def _strings(matrix: np.ndarray) -> pa.Array:
    """Fixed-width ASCII rows of a uint8 matrix as an arrow string array."""
    n, width = matrix.shape
    offsets = np.arange(0, (n + 1) * width, width, dtype=np.int32)
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(np.ascontiguousarray(matrix)))


def bronze_table(files: list[ParsedFile]) -> pa.Table:
    """The bronze rows of ``files`` (see ``schema`` for the id layout)."""
    if not files:
        return BRONZE_SCHEMA.empty_table()

    def cat(name: str) -> np.ndarray:
        return np.concatenate([getattr(f.notes, name) for f in files])

    owner = np.repeat(np.arange(len(files)), [len(f.notes) for f in files])
    take = pa.array(owner)

    def per_file(values: list[str]) -> pa.Array:
        return pa.array(values, pa.string()).take(take)

    track, channel, ordinal = cat("track"), cat("channel"), cat("ordinal")
    prefixes = np.frombuffer("".join(f.midi_id[:16] for f in files).encode(), np.uint8).reshape(-1, 16)
    track_ids = np.hstack([prefixes[owner], _hex_digits(track, 4), _hex_digits(channel, 1)])
    columns = {
        "midi_id": per_file([f.midi_id for f in files]),
        "track_id": _strings(track_ids),
        "message_id": _strings(np.hstack([track_ids, _hex_digits(ordinal, 6)])),
        "start_time": cat("start_beats"),
        "duration": cat("duration_beats"),
        "velocity": cat("velocity"),
        "note": cat("pitch"),
        "set_type": per_file([f.set_type for f in files]),
        "p": per_file([f.midi_id[0] for f in files]),
        "channel": channel,
        "program": cat("program"),
        "is_drum": channel == DRUM_CHANNEL,
        "track_index": track,
        "start_seconds": cat("start_seconds"),
        "duration_seconds": cat("duration_seconds"),
        "source_key": per_file([f.source_key for f in files]),
    }
    return pa.table(columns, schema=BRONZE_SCHEMA)
