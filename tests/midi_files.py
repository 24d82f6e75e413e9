"""Crafted MIDI files for tests (with mido, or byte by byte), and an independent mido reading.

The reading uses the contract's pairing rule (oldest open note of a channel+pitch closes
first, per track; notes open at the end of a track are dropped), written the plain way.
"""

from __future__ import annotations

import io
from collections import Counter, defaultdict, deque

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


def smf(*tracks: bytes, fmt: int = 1, division: int = 480, declared: int | None = None) -> bytes:
    """A Standard MIDI File from raw track bodies (events as bytes, for running status etc.)."""
    count = len(tracks) if declared is None else declared
    header = b"MThd" + (6).to_bytes(4, "big") + fmt.to_bytes(2, "big") + count.to_bytes(2, "big")
    header += division.to_bytes(2, "big")
    return header + b"".join(b"MTrk" + len(t).to_bytes(4, "big") + t for t in tracks)


END_OF_TRACK = b"\x00\xff\x2f\x00"


def mido_notes(data: bytes) -> list[tuple[int, int, int, float, float, int]]:
    """(track, channel, pitch, start beats, duration beats, velocity) of every closed note."""
    mid = mido.MidiFile(file=io.BytesIO(data))
    notes = []
    for index, track in enumerate(mid.tracks):
        tick = 0
        open_notes: dict[tuple[int, int], deque] = defaultdict(deque)
        for msg in track:
            tick += msg.time
            if msg.type == "note_on" and msg.velocity > 0:
                open_notes[msg.channel, msg.note].append((tick, msg.velocity))
            elif msg.type in ("note_off", "note_on") and open_notes[msg.channel, msg.note]:
                start, velocity = open_notes[msg.channel, msg.note].popleft()
                tpb = mid.ticks_per_beat
                notes.append((index, msg.channel, msg.note, start / tpb, (tick - start) / tpb, velocity))
    return notes


def summary(notes) -> tuple[int, Counter, float]:
    """Note count, pitch multiset and total beats: what the reference test compares."""
    return len(notes), Counter(n[2] for n in notes), round(sum(n[4] for n in notes), 6)
