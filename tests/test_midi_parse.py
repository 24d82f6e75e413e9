"""The MIDI scanner: exact against mido on real files, the contract's rules on crafted
files, a reason for every malformed file, and no crash on mutated bytes."""

from __future__ import annotations

import random
from pathlib import Path

import music21
import pytest

from dx7lake.bronze import MidiError, parse_midi, parse_notes
from midi_files import END_OF_TRACK, midi_bytes, mido_notes, smf, summary

MUSIC21_MIDI = sorted((Path(music21.__file__).parent / "midi" / "testPrimitive").glob("*.mid"))


def our_notes(data: bytes) -> list[tuple[int, int, int, float, float, int]]:
    n = parse_notes(data)
    return [
        (int(t), int(c), int(p), float(s), float(d), int(v))
        for t, c, p, s, d, v in zip(
            n.track, n.channel, n.pitch, n.start_beats, n.duration_beats, n.velocity, strict=True
        )
    ]


@pytest.mark.parametrize("path", MUSIC21_MIDI, ids=lambda p: p.name)
def test_music21_midi_files_match_an_independent_mido_reading(path):
    data = path.read_bytes()
    ours, reference = our_notes(data), mido_notes(data)
    assert summary(ours) == summary(reference)  # note count, pitch multiset, total beats
    assert sorted(ours) == sorted(reference)  # and every note, with its track and channel


def test_chorales_match_an_independent_mido_reading(chorales):
    files = sorted(chorales.rglob("*.mid"))
    assert len(files) == 6
    for path in files:
        data = path.read_bytes()
        assert sorted(our_notes(data)) == sorted(mido_notes(data)), path.name


def test_real_corpus_is_not_trivial():
    assert len(MUSIC21_MIDI) >= 20
    assert sum(len(parse_notes(p.read_bytes())) for p in MUSIC21_MIDI) > 10_000


def test_tempo_changes_map_seconds_not_beats():
    data = midi_bytes(
        [
            (0, "note_on", {"note": 60, "velocity": 80}),
            (480, "note_off", {"note": 60, "velocity": 0}),
            (0, "tempo", {"tempo": 250_000}),  # 240 bpm from beat 1
            (0, "note_on", {"note": 62, "velocity": 80}),
            (960, "note_off", {"note": 62, "velocity": 0}),
            (0, "tempo", {"tempo": 1_000_000}),  # 60 bpm from beat 3
            (0, "note_on", {"note": 64, "velocity": 80}),
            (240, "tempo", {"tempo": 500_000}),  # back to 120 bpm mid-note
            (240, "note_off", {"note": 64, "velocity": 0}),
        ]
    )
    rows = parse_midi(data, "t.mid").to_pylist()
    assert [r["start_time"] for r in rows] == [0.0, 1.0, 3.0]
    assert [r["duration"] for r in rows] == [1.0, 2.0, 1.0]
    assert [r["start_seconds"] for r in rows] == [0.0, 0.5, 1.0]
    assert [r["duration_seconds"] for r in rows] == [0.5, 0.5, 0.75]


def test_tempo_in_another_track_applies_to_every_track():
    conductor = b"\x00\xff\x51\x03\x03\xd0\x90" + END_OF_TRACK  # 250,000 µs: 240 bpm at tick 0
    melody = b"\x00\x90\x3c\x40\x83\x60\x80\x3c\x00" + END_OF_TRACK  # one beat
    (row,) = parse_midi(smf(conductor, melody), "c.mid").to_pylist()
    assert (row["track_index"], row["duration"], row["duration_seconds"]) == (1, 1.0, 0.25)


def test_type0_file_yields_one_track_per_channel_and_flags_drums():
    data = midi_bytes(
        [
            (0, "program_change", {"program": 5, "channel": 0}),
            (0, "note_on", {"note": 60, "velocity": 90, "channel": 0}),
            (0, "note_on", {"note": 36, "velocity": 100, "channel": 9}),
            (0, "note_on", {"note": 64, "velocity": 70, "channel": 3}),
            (480, "note_off", {"note": 60, "channel": 0}),
            (0, "note_off", {"note": 36, "channel": 9}),
            (0, "note_off", {"note": 64, "channel": 3}),
        ]
    )
    rows = {r["channel"]: r for r in parse_midi(data, "t0.mid").to_pylist()}
    assert sorted(rows) == [0, 3, 9]
    assert len({r["track_id"] for r in rows.values()}) == 3
    assert {r["track_index"] for r in rows.values()} == {0}
    assert [rows[c]["is_drum"] for c in (0, 3, 9)] == [False, False, True]
    assert (rows[0]["program"], rows[3]["program"]) == (5, 0)


def test_overlapping_same_pitch_notes_close_oldest_first():
    data = midi_bytes(
        [
            (0, "note_on", {"note": 60, "velocity": 90}),
            (120, "note_on", {"note": 60, "velocity": 50}),
            (120, "note_off", {"note": 60}),  # closes the first (oldest) note
            (240, "note_off", {"note": 60}),
        ]
    )
    rows = parse_midi(data, "o.mid").to_pylist()
    assert [(r["start_time"], r["duration"], r["velocity"]) for r in rows] == [(0.0, 0.5, 90), (0.25, 0.75, 50)]
    assert sorted(our_notes(data)) == sorted(mido_notes(data))


def test_running_status_and_velocity_zero_note_offs():
    # one status byte 0x90, then running status for the rest; velocity-0 note-ons end notes
    body = b"\x00\x90\x3c\x64" + b"\x00\x40\x64" + b"\x83\x60\x3c\x00" + b"\x00\x40\x00" + END_OF_TRACK
    rows = parse_midi(smf(body), "r.mid").to_pylist()
    assert [(r["note"], r["velocity"], r["duration"]) for r in rows] == [(60, 100, 1.0), (64, 100, 1.0)]
    assert sorted(our_notes(smf(body))) == sorted(mido_notes(smf(body)))


def test_unclosed_notes_are_dropped_and_counted():
    data = midi_bytes(
        [
            (0, "note_on", {"note": 60, "velocity": 90}),
            (0, "note_on", {"note": 67, "velocity": 90}),
            (480, "note_off", {"note": 60}),
            (0, "note_off", {"note": 61}),  # closes nothing
        ]
    )
    notes = parse_notes(data)
    assert (len(notes), notes.unclosed, int(notes.pitch[0])) == (1, 1, 60)


def test_notes_do_not_close_across_tracks():
    opener = b"\x00\x90\x3c\x40" + END_OF_TRACK
    closer = b"\x00\x90\x3e\x40\x60\x80\x3c\x00\x00\x80\x3e\x00" + END_OF_TRACK
    notes = parse_notes(smf(opener, closer))
    assert (len(notes), notes.unclosed, int(notes.pitch[0])) == (1, 1, 62)


def test_message_ids_are_unique_deterministic_and_per_track_channel():
    data = MUSIC21_MIDI[3].read_bytes()
    table = parse_midi(data, "a.mid")
    ids = table.column("message_id").to_pylist()
    assert len(set(ids)) == len(ids) == table.num_rows
    assert parse_midi(data, "a.mid").equals(table)
    for row in table.to_pylist()[:50]:
        assert row["message_id"].startswith(row["track_id"]) and row["track_id"].startswith(row["midi_id"][:16])


MALFORMED = {
    "empty": (b"", "empty file"),
    "not midi": (b"RIFF\x00\x00\x00\x00WAVEfmt ", "not a MIDI file"),
    "text": (b"hello world, this is not music", "not a MIDI file"),
    "short header": (b"MThd\x00\x00\x00\x06\x00", "file ends inside the MThd header"),
    "header too short": (b"MThd\x00\x00\x00\x02\x00\x01\x00\x01\x01\xe0", "shorter than 6 bytes"),
    "format 3": (smf(END_OF_TRACK, fmt=3), "format is not 0, 1 or 2"),
    "smpte": (smf(END_OF_TRACK, division=0xE728), "SMPTE"),
    "zero division": (smf(END_OF_TRACK, division=0), "zero ticks per beat"),
    "missing tracks": (smf(END_OF_TRACK, declared=3), "fewer track chunks"),
    "truncated chunk": (smf(b"\x00\x90\x3c\x40\x60\x80\x3c\x00" + END_OF_TRACK)[:-5], "runs past the end of the file"),
    "event past chunk": (smf(b"\x00\x90\x3c"), "runs past the end of its track chunk"),
    "long vlq": (smf(b"\xff\xff\xff\xff\x7f\x90\x3c\x40" + END_OF_TRACK), "longer than 4 bytes"),
    "running status first": (smf(b"\x00\x3c\x40" + END_OF_TRACK), "running status with no previous"),
    "undefined status": (smf(b"\x00\xf4" + END_OF_TRACK), "undefined status byte"),
    "bad data byte": (smf(b"\x00\x90\x3c\xc0" + END_OF_TRACK), "data byte above 127"),
}


def test_a_file_with_no_closed_note_is_empty_not_malformed():
    """A tempo map alone, or notes never closed: read fine, no notes (counted as empty)."""
    tempo_only = parse_notes(smf(b"\x00\xff\x51\x03\x07\xa1\x20" + END_OF_TRACK), max_seconds=1.0)
    unclosed = parse_notes(smf(b"\x00\x90\x3c\x40" + END_OF_TRACK))
    assert (len(tempo_only), tempo_only.unclosed) == (0, 0)
    assert (len(unclosed), unclosed.unclosed) == (0, 1)


@pytest.mark.parametrize("data, reason", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_files_raise_with_a_reason(data, reason):
    with pytest.raises(MidiError, match=reason.replace("(", r"\(").replace(")", r"\)")):
        parse_notes(data)


def test_caps_on_notes_and_length():
    data = MUSIC21_MIDI[3].read_bytes()
    with pytest.raises(MidiError, match="over the note cap of 100"):
        parse_notes(data, max_notes=100)
    with pytest.raises(MidiError, match="over the length cap"):
        parse_notes(data, max_seconds=1.0)


def _mutations(seed: int, originals: list[bytes], cases: int):
    rng = random.Random(seed)
    for _ in range(cases):
        data = bytearray(rng.choice(originals))
        kind = rng.randrange(4)
        if kind == 0:  # flip a few bytes
            for _ in range(rng.randint(1, 8)):
                data[rng.randrange(len(data))] = rng.randrange(256)
        elif kind == 1:  # truncate
            del data[rng.randrange(len(data)) :]
        elif kind == 2:  # insert random bytes
            at = rng.randrange(len(data))
            data[at:at] = rng.randbytes(rng.randint(1, 16))
        else:  # corrupt a chunk length
            at = rng.choice([4, 18]) if len(data) > 22 else 4
            data[at : at + 4] = rng.randbytes(4)
        yield bytes(data)


def test_fuzz_mutated_files_never_crash():
    originals = [p.read_bytes() for p in MUSIC21_MIDI if p.stat().st_size < 20_000]
    outcomes = {"parsed": 0, "quarantined": 0}
    for data in _mutations(20261122, originals, 3000):
        try:
            notes = parse_notes(data)
        except MidiError as err:
            assert str(err)
            outcomes["quarantined"] += 1
        else:
            assert len(notes) > 0 and (notes.duration_beats >= 0).all()
            outcomes["parsed"] += 1
    assert outcomes["parsed"] > 50 and outcomes["quarantined"] > 1000, outcomes  # both paths exercised
