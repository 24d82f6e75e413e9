"""Bronze rows: the contract's schema, units and the stable split."""

from __future__ import annotations

import hashlib

from dx7lake.bronze import BRONZE_SCHEMA, midi_id_of, parse_midi, set_type_of
from midi_files import simple_melody


def test_parse_gives_contract_rows_in_beats_and_seconds():
    data = simple_melody()
    table = parse_midi(data, "x/y.mid")
    assert table.schema == BRONZE_SCHEMA
    rows = table.to_pylist()
    assert [r["note"] for r in rows] == [60, 62, 64, 65]
    assert [r["start_time"] for r in rows] == [0.0, 1.0, 2.0, 3.0]
    assert [r["duration"] for r in rows] == [1.0] * 4
    assert [r["start_seconds"] for r in rows] == [0.0, 0.5, 1.0, 1.5]  # 120 bpm default tempo
    # ids, worked out by hand from the contract: midi_id = md5 of the bytes (as Lakh names its
    # files), track_id = 16 hex of it + 4 of the track + 1 of the channel, message_id = the
    # track id + 6 hex of the note's ordinal in its track
    md5 = hashlib.md5(data).hexdigest()
    assert {r["midi_id"] for r in rows} == {md5} and midi_id_of(data) == md5
    assert {r["p"] for r in rows} == {md5[0]}
    assert {r["source_key"] for r in rows} == {"x/y.mid"}
    assert {r["track_id"] for r in rows} == {f"{md5[:16]}00000"}
    assert [r["message_id"] for r in rows] == [f"{md5[:16]}00000{i:06x}" for i in range(4)]


def test_split_is_stable_and_roughly_80_10_10():
    ids = [midi_id_of(str(i).encode()) for i in range(5000)]
    splits = [set_type_of(i) for i in ids]
    assert splits == [set_type_of(i) for i in ids]
    share = {s: splits.count(s) / len(splits) for s in ("train", "test", "validate")}
    assert 0.77 < share["train"] < 0.83 and 0.08 < share["test"] < 0.12 and 0.08 < share["validate"] < 0.12
    halves = [set_type_of(i, (("train", 1), ("test", 1), ("validate", 0))) for i in ids]
    assert 0.47 < halves.count("train") / len(ids) < 0.53 and "validate" not in halves
