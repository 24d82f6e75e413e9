"""Crafted MIDI files for tests, built message by message with mido."""

from __future__ import annotations

import io

import mido


def midi_bytes(events: list[tuple], ticks_per_beat: int = 480, midi_type: int = 0) -> bytes:
    """A one-track file from (delta_ticks, kind, kwargs) events."""
    mid = mido.MidiFile(type=midi_type, ticks_per_beat=ticks_per_beat)
    track = mido.MidiTrack()
    mid.tracks.append(track)
    for delta, kind, kwargs in events:
        if kind == "tempo":
            track.append(mido.MetaMessage("set_tempo", tempo=kwargs["tempo"], time=delta))
        else:
            track.append(mido.Message(kind, time=delta, **kwargs))
    buf = io.BytesIO()
    mid.save(file=buf)
    return buf.getvalue()


def simple_melody(pitches=(60, 62, 64, 65), beat_ticks: int = 480) -> bytes:
    events = []
    for pitch in pitches:
        events.append((0, "note_on", {"note": pitch, "velocity": 90, "channel": 0}))
        events.append((beat_ticks, "note_off", {"note": pitch, "velocity": 0, "channel": 0}))
    return midi_bytes(events)
