"""Notes of many files to one bronze arrow table, column by column.

A batch of files becomes one table with no per-note Python: string columns are
``take``s from per-file dictionaries, and the hex ids are assembled as byte matrices.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
from numba import njit

from .notes import Notes
from .schema import BRONZE_SCHEMA, DRUM_CHANNEL

_HEX = np.frombuffer(b"0123456789abcdef", np.uint8)


@dataclass(frozen=True)
class ParsedFile:
    midi_id: str
    source_key: str
    set_type: str
    notes: Notes


@njit(cache=True, nogil=True)
def _id_bytes(prefixes, owner, track, channel, ordinal):
    """ASCII track ids (16 hex of the file, 4 of the track, 1 of the channel) and message
    ids (the track id and 6 hex of the ordinal), row by row."""
    n = owner.shape[0]
    track_ids = np.empty((n, 21), np.uint8)
    message_ids = np.empty((n, 27), np.uint8)
    for i in range(n):
        for j in range(16):
            track_ids[i, j] = prefixes[owner[i], j]
        for j in range(4):
            track_ids[i, 16 + j] = _HEX[(track[i] >> (12 - 4 * j)) & 15]
        track_ids[i, 20] = _HEX[channel[i] & 15]
        for j in range(21):
            message_ids[i, j] = track_ids[i, j]
        for j in range(6):
            message_ids[i, 21 + j] = _HEX[(ordinal[i] >> (20 - 4 * j)) & 15]
    return track_ids, message_ids


def _strings(matrix: np.ndarray) -> pa.Array:
    """Fixed-width ASCII rows of a uint8 matrix as an arrow string array."""
    n, width = matrix.shape
    offsets = np.arange(0, (n + 1) * width, width, dtype=np.int32)
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(np.ascontiguousarray(matrix)))


def _repeated(values: list[str], counts: list[int]) -> pa.Array:
    """``values[i]`` repeated ``counts[i]`` times, built as buffers (no per-row objects)."""
    encoded = [v.encode() for v in values]
    lengths = np.repeat(np.array([len(e) for e in encoded], np.int64), counts)
    offsets = np.zeros(len(lengths) + 1, np.int32)
    np.cumsum(lengths, out=offsets[1:])
    data = b"".join(e * c for e, c in zip(encoded, counts, strict=True))
    return pa.StringArray.from_buffers(len(lengths), pa.py_buffer(offsets), pa.py_buffer(data))


def bronze_table(files: list[ParsedFile]) -> pa.Table:
    """The bronze rows of ``files`` (see ``schema`` for the id layout)."""
    if not files:
        return BRONZE_SCHEMA.empty_table()

    def cat(name: str) -> np.ndarray:
        return np.concatenate([getattr(f.notes, name) for f in files])

    counts = [len(f.notes) for f in files]
    owner = np.repeat(np.arange(len(files)), counts)

    def per_file(values: list[str]) -> pa.Array:
        return _repeated(values, counts)

    track, channel, ordinal = cat("track"), cat("channel"), cat("ordinal")
    prefixes = np.frombuffer("".join(f.midi_id[:16] for f in files).encode(), np.uint8).reshape(-1, 16)
    track_ids, message_ids = _id_bytes(prefixes, owner, track, channel, ordinal)
    columns = {
        "midi_id": per_file([f.midi_id for f in files]),
        "track_id": _strings(track_ids),
        "message_id": _strings(message_ids),
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
