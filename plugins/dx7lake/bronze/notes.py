"""One MIDI file's bytes to its closed notes, or a ``MidiError`` saying why not."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .scan import ERRORS, NOT_MIDI, OK, SHORT_HEADER, TOO_MANY_NOTES, scan


class MidiError(ValueError):
    """A file that cannot become bronze rows; its message is the quarantine reason."""


@dataclass(frozen=True)
class Notes:
    """Parallel arrays of a file's notes, ordered by track then note-on."""

    track: np.ndarray
    channel: np.ndarray
    ordinal: np.ndarray
    pitch: np.ndarray
    velocity: np.ndarray
    program: np.ndarray
    start_beats: np.ndarray
    duration_beats: np.ndarray
    start_seconds: np.ndarray
    duration_seconds: np.ndarray
    unclosed: int

    def __len__(self) -> int:
        return len(self.pitch)


def parse_notes(data: bytes, max_notes: int = 2_000_000, max_seconds: float | None = None) -> Notes:
    """The closed notes of one file (see ``scan`` for the rules); raises MidiError.

    A well-formed file with no closed notes (a tempo map, a lyrics track, only notes never
    closed) is not an error: it returns no notes, and the caller counts it as empty.
    """
    if not data:
        raise MidiError("empty file")
    error, pos, _division, _tracks, unclosed, *arrays = scan(np.frombuffer(data, np.uint8), max_notes)
    if error != OK:
        where = f" (at byte {pos})" if error not in (NOT_MIDI, SHORT_HEADER) else ""
        cap = f" of {max_notes:,}" if error == TOO_MANY_NOTES else ""
        raise MidiError(f"{ERRORS[error]}{cap}{where}")
    notes = Notes(*arrays, unclosed=unclosed)
    if max_seconds is not None and len(notes):
        length = float(np.max(notes.start_seconds + notes.duration_seconds))
        if length > max_seconds:
            raise MidiError(f"over the length cap: {length:,.0f} s > {max_seconds:,.0f} s")
    return notes
