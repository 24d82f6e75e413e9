"""Bronze extraction: contract schema, quarantine, idempotent reruns."""

from __future__ import annotations

import pytest

from dx7lake.lake import LocalLake
from dx7lake.midi import BRONZE_SCHEMA, MidiError, extract, midi_id_of, parse_midi, set_type_of
from midi_files import midi_bytes, simple_melody


def test_parse_gives_contract_rows_in_beats_and_seconds():
    data = simple_melody()
    table = parse_midi(data, "x/y.mid")
    assert table.schema == BRONZE_SCHEMA
    rows = table.to_pylist()
    assert [r["note"] for r in rows] == [60, 62, 64, 65]
    assert [r["start_time"] for r in rows] == [0.0, 1.0, 2.0, 3.0]
    assert [r["duration"] for r in rows] == [1.0] * 4
    assert [r["start_seconds"] for r in rows] == [0.0, 0.5, 1.0, 1.5]  # 120 bpm default tempo
    assert {r["midi_id"] for r in rows} == {midi_id_of(data)}
    assert {r["p"] for r in rows} == {midi_id_of(data)[0]}
    assert len({r["message_id"] for r in rows}) == 4
    assert parse_midi(data, "x/y.mid").equals(table), "ids are deterministic"


def test_tempo_change_maps_seconds_not_beats():
    data = midi_bytes(
        [
            (0, "note_on", {"note": 60, "velocity": 80}),
            (480, "note_off", {"note": 60, "velocity": 0}),
            (0, "tempo", {"tempo": 250_000}),  # 240 bpm from beat 1
            (0, "note_on", {"note": 62, "velocity": 80}),
            (480, "note_off", {"note": 62, "velocity": 0}),
        ]
    )
    rows = parse_midi(data, "t.mid").to_pylist()
    assert [r["start_time"] for r in rows] == [0.0, 1.0]
    assert [r["duration_seconds"] for r in rows] == [0.5, 0.25]


def test_drums_are_flagged():
    data = midi_bytes(
        [(0, "note_on", {"note": 36, "velocity": 100, "channel": 9}), (240, "note_off", {"note": 36, "channel": 9})]
    )
    (row,) = parse_midi(data, "d.mid").to_pylist()
    assert row["is_drum"] and row["channel"] == 9


@pytest.mark.parametrize(
    "data, reason",
    [(b"", "empty"), (b"hello world", "not a MIDI file"), (b"MThd\x00\x00\x00\x06\x00", "unreadable")],
)
def test_bad_files_raise_with_a_reason(data, reason):
    with pytest.raises(MidiError, match=reason):
        parse_midi(data, "bad.mid")


def test_split_is_stable_and_roughly_80_10_10():
    ids = [midi_id_of(str(i).encode()) for i in range(5000)]
    splits = [set_type_of(i) for i in ids]
    assert splits == [set_type_of(i) for i in ids]
    share = {s: splits.count(s) / len(splits) for s in ("train", "test", "validate")}
    assert 0.77 < share["train"] < 0.83 and 0.08 < share["test"] < 0.12 and 0.08 < share["validate"] < 0.12


def test_extract_quarantines_and_reruns_add_nothing(tmp_path, chorales):
    source = tmp_path / "src"
    source.mkdir()
    for f in sorted(chorales.rglob("*.mid"))[:2]:
        (source / f.name).write_bytes(f.read_bytes())
    (source / "garbage.mid").write_bytes(b"not midi at all")
    (source / "dup.mid").write_bytes(sorted(chorales.rglob("*.mid"))[0].read_bytes())
    lake = LocalLake(tmp_path / "lake")

    first = extract(str(source), lake)
    assert (first.files_seen, first.files_extracted, first.files_quarantined) == (4, 2, 1)
    assert first.files_skipped == 1  # the byte-identical duplicate counts once
    (q,) = lake.read_parquet_prefix("bronze/quarantine/").to_pylist()
    assert q["source_key"] == "garbage.mid" and "MThd" in q["error"]

    keys = list(lake.list())
    second = extract(str(source), lake)
    assert second.files_extracted == 0 and second.files_skipped == 4
    assert list(lake.list()) == keys
