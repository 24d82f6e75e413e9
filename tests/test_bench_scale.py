"""The Lakh-like corpus of bench-scale: every file new (md5), pitched notes moved, drums kept."""

from __future__ import annotations

import hashlib

import mido

from bench.scale import TRANSPOSE, make_corpus


def _song(path) -> None:
    mid = mido.MidiFile(type=1)
    conductor = mido.MidiTrack([mido.MetaMessage("set_tempo", tempo=500000, time=0)])
    piano = mido.MidiTrack()
    drums = mido.MidiTrack()
    for pitch in (60, 64, 67):
        piano += [
            mido.Message("note_on", note=pitch, velocity=80, time=0),
            mido.Message("note_off", note=pitch, time=480),
        ]
        drums += [
            mido.Message("note_on", channel=9, note=36, velocity=90, time=0),
            mido.Message("note_off", channel=9, note=36, time=480),
        ]
    mid.tracks += [conductor, piano, drums]
    mid.save(path)


def _notes(path) -> tuple[list[int], list[int], int]:
    mid = mido.MidiFile(path)
    pitched = [m.note for t in mid.tracks for m in t if m.type == "note_on" and m.channel != 9]
    drums = [m.note for t in mid.tracks for m in t if m.type == "note_on" and m.channel == 9]
    tempo = next(m.tempo for t in mid.tracks for m in t if m.type == "set_tempo")
    return pitched, drums, tempo


def test_variants_are_new_files_with_transposed_pitches_and_the_same_drums(tmp_path):
    source, out = tmp_path / "src", tmp_path / "out"
    source.mkdir()
    _song(source / "a.mid")
    (source / "broken.mid").write_bytes(b"MThd not really")
    assert make_corpus(source, out, 0, 4) == 3  # a broken source is written once, as it is
    files = sorted(out.iterdir())
    digests = {hashlib.md5(p.read_bytes()).hexdigest() for p in files}
    assert len(digests) == 3
    for path in files:
        if "broken" in path.name:
            continue
        i = int(path.name[:6])
        pitched, drums, tempo = _notes(path)
        assert pitched == [p + TRANSPOSE[i // 2] for p in (60, 64, 67)]
        assert drums == [36, 36, 36] and 400000 <= tempo <= 625000
    assert make_corpus(source, out, 0, 4) == 3 and {hashlib.md5(p.read_bytes()).hexdigest() for p in files} == digests
