"""A piano roll of a render's aligned notes, drawn as inline SVG on the server.

Time runs in seconds across the whole render (notes plus release tail), the same axis
as the spectrogram above it, so a note and its sound line up on the page.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from html import escape

NAMES = ("C", "C♯", "D", "D♯", "E", "F", "F♯", "G", "G♯", "A", "A♯", "B")
BLACK = {1, 3, 6, 8, 10}


def note_name(pitch: int) -> str:
    """MIDI pitch to scientific pitch notation (60 is C4)."""
    return f"{NAMES[pitch % 12]}{pitch // 12 - 1}"


def pianoroll_svg(
    notes: Iterable[Mapping],
    duration_s: float,
    bpm: float,
    width: int = 900,
    row: int = 10,
    label_width: int = 40,
) -> str:
    """SVG with one rectangle per note (opacity by velocity), beat lines, and pitch labels."""
    notes = list(notes)
    pitches = [int(n["pitch"]) for n in notes] or [60]
    low, high = max(0, min(pitches) - 2), min(127, max(pitches) + 2)  # MIDI pitches only
    height = (high - low + 1) * row
    seconds_per_beat = 60.0 / bpm
    scale = (width - label_width) / duration_s

    def x(beats: float) -> float:
        return label_width + beats * seconds_per_beat * scale

    def y(pitch: int) -> int:
        return (high - pitch) * row

    parts = [
        f'<svg class="pianoroll" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" role="img" aria-label="piano roll of {len(notes)} notes">'
    ]
    for pitch in range(low, high + 1):
        fill = "#23262e" if pitch % 12 in BLACK else "#2d313b"
        lane = f'x="{label_width}" y="{y(pitch)}" width="{width - label_width}" height="{row}"'
        parts.append(f'<rect {lane} fill="{fill}"/>')
        if pitch % 12 == 0 or pitch in (low, high):
            parts.append(
                f'<text x="2" y="{y(pitch) + row - 1}" font-size="{row}" fill="#aab">{note_name(pitch)}</text>'
            )
    beat = 0
    while x(beat) <= width:
        stroke = "#667" if beat % 4 == 0 else "#444a55"
        parts.append(f'<line x1="{x(beat):.1f}" y1="0" x2="{x(beat):.1f}" y2="{height}" stroke="{stroke}"/>')
        beat += 1
    for note in notes:
        start, length = float(note["start"]), float(note["duration"])
        pitch, velocity = int(note["pitch"]), int(note["velocity"])
        title = escape(f"{note_name(pitch)} vel {velocity} at beat {start:g} for {length:g}")
        left, right = x(start), min(x(start + length), width)  # a note held past the render ends with it
        parts.append(
            f'<rect class="note" x="{left:.1f}" y="{y(pitch) + 1}" width="{max(1.0, right - left):.1f}"'
            f' height="{row - 2}" rx="2" fill="#f5a142" fill-opacity="{0.35 + 0.65 * velocity / 127:.2f}">'
            f"<title>{title}</title></rect>"
        )
    parts.append("</svg>")
    return "".join(parts)
