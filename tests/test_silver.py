"""Silver (dbt) on the real embedded Postgres: phrases checked against plain Python.

The chorales go through the real extract and load, then ``dbt build`` (every model, data
test and unit test); the phrase rows are then recomputed from the bronze parquet with
nothing but the written rule, and must agree row for row.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict

import psycopg
import pyarrow as pa
import pytest

from bench.synthetic import partitions, synthetic_notes
from conftest import build_silver, new_database
from dx7lake import stages
from dx7lake.bronze import BRONZE_SCHEMA, read_bronze_partition, set_type_of
from dx7lake.config import load_settings
from dx7lake.lake import open_lake
from dx7lake.warehouse import load as warehouse
from dx7lake.warehouse import schema
from dx7lake.warehouse.transform import run_dbt

SPLIT_ORDER = ("train", "test", "validate")


def python_phrases(rows: list[dict]) -> dict[tuple[str, int], dict]:
    """The phrase rule of docs/ARCHITECTURE.md ("Silver"), written independently of the SQL.

    Starts and durations go on the 0.01-beat grid (Python's round: half to even), then
    bucket = floor(start / 4) and offset = start - 4 * bucket; drums are not phrases.
    """
    grouped: dict[tuple[str, int], list] = defaultdict(list)
    song: dict[tuple[str, int], tuple[str, str]] = {}
    for r in rows:
        if r["is_drum"]:
            continue
        start = round(r["start_time"] * 100)
        bucket = start // 400
        key = (r["track_id"], bucket)
        grouped[key].append((start - 400 * bucket, round(r["duration"] * 100), r["velocity"], r["note"]))
        song[key] = (r["midi_id"], r["set_type"])
    out = {}
    for key, notes in grouped.items():
        content = ";".join(",".join(map(str, n)) for n in sorted(notes))
        out[key] = {
            "content_hash": hashlib.md5(content.encode()).hexdigest(),
            "n_notes": len(notes),
            "song": song[key],
            "stats": (len({n[3] for n in notes}), max_polyphony(notes)),
            "notes": sorted(notes),
        }
    return out


def max_polyphony(notes: list[tuple[int, int, int, int]]) -> int:
    """Most notes sounding at once: a note ending at t no longer sounds at t; a zero-length
    note sounds at its onset (it ends one 0.01-beat step later)."""
    ends = [(o + max(d, 1), -1) for o, d, *_ in notes]
    events = sorted([(o, 1) for o, *_ in notes] + ends, key=lambda e: (e[0], e[1]))
    sounding = peak = 0
    for _, delta in events:
        sounding += delta
        peak = max(peak, sounding)
    return peak


def phrase_stats(conn: psycopg.Connection) -> dict[tuple[str, int], tuple[int, int]]:
    """(track, bucket) -> (distinct pitches, max polyphony) from silver.phrase_stats."""
    rows = conn.execute(
        "select p.track_id, p.bucket, s.distinct_pitches, s.max_polyphony"
        " from silver.phrases p join silver.phrase_stats s using (phrase_id)"
    )
    return {(t, b): (d, m) for t, b, d, m in rows}


def content_splits(phrases: dict[tuple[str, int], dict]) -> dict[str, str]:
    """Train first: each content goes to the earliest split any of its songs is in."""
    splits: dict[str, str] = {}
    for ph in phrases.values():
        h, split = ph["content_hash"], ph["song"][1]
        if h not in splits or SPLIT_ORDER.index(split) < SPLIT_ORDER.index(splits[h]):
            splits[h] = split
    return splits


@pytest.fixture(scope="module")
def built(pg_server, chorales, tmp_path_factory):
    """Chorales extracted, loaded and built once for this module's tests."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DX7LAKE_HOME", str(tmp_path_factory.mktemp("home")))
        mp.setenv("DX7LAKE_PG_URL", new_database(pg_server, "silver"))
        mp.setenv("DX7LAKE_SOURCE", str(chorales))
        settings = load_settings()
        build_silver(settings, "run-1")
        yield settings


def bronze_rows(settings) -> list[dict]:
    lake = open_lake(settings.lake_uri)
    return [r for p in stages.bronze_partitions(settings) for r in read_bronze_partition(lake, p).to_pylist()]


def test_phrases_match_an_independent_python_computation(built):
    expected = python_phrases(bronze_rows(built))
    with psycopg.connect(built.pg_url) as conn:
        got = {
            (t, b): (h, n)
            for t, b, h, n in conn.execute("select track_id, bucket, content_hash, n_notes from silver.phrases")
        }
        stats = phrase_stats(conn)
        unique = warehouse.scalar(conn, "select count(*) from silver.phrase_contents")
    assert len(got) == len(expected) > 100
    assert got == {k: (v["content_hash"], v["n_notes"]) for k, v in expected.items()}
    assert stats == {k: v["stats"] for k, v in expected.items()}
    assert unique == len({v["content_hash"] for v in expected.values()}) < len(expected)


def test_render_partition_and_notes_follow_the_content(built):
    with psycopg.connect(built.pg_url) as conn:
        rows = conn.execute("select content_hash, p, notes, n_notes from silver.phrase_contents").fetchall()
    for content_hash, p, notes, n_notes in rows:
        assert p == int(content_hash[:8], 16) % 16
        assert len(notes) == n_notes
        content = ";".join(",".join(str(round(x * 100)) for x in n[:2]) + f",{n[2]},{n[3]}" for n in notes)
        assert hashlib.md5(content.encode()).hexdigest() == content_hash
        assert notes == sorted(notes) and all(0 <= n[0] < 4 for n in notes)


def test_no_content_is_in_two_splits_and_moves_are_counted(built):
    expected = python_phrases(bronze_rows(built))
    splits = content_splits(expected)
    moved = sum(1 for v in expected.values() if splits[v["content_hash"]] != v["song"][1])
    with psycopg.connect(built.pg_url) as conn:
        leaks = warehouse.scalar(
            conn,
            "select count(*) from (select content_hash from silver.phrases group by content_hash"
            " having count(distinct set_type) > 1) x",
        )
        got = dict(conn.execute("select content_hash, set_type from silver.phrase_contents").fetchall())
        counted = warehouse.scalar(conn, "select sum(n_phrases) from silver.split_moves")
        per_song = warehouse.scalar(conn, "select sum(n_phrases_moved) from silver.song_summary")
    assert leaks == 0
    assert got == splits
    assert counted == per_song == moved


SILVER_TABLES = ("phrases", "phrase_contents", "phrase_stats", "rejected_phrases", "track_summary", "song_summary")
SILVER_TABLES += ("split_moves",)


def silver_snapshot(url: str) -> dict[str, set[tuple]]:
    """Every silver table as a set of rows (columns in name order)."""
    out = {}
    with psycopg.connect(url) as conn:
        for name in SILVER_TABLES:
            cols = [
                c
                for (c,) in conn.execute(
                    "select column_name from information_schema.columns where table_schema = 'silver'"
                    " and table_name = %s order by column_name",
                    (name,),
                )
            ]
            cols = [c for c in cols if c not in ("built_at", "loaded_at")]  # when, not what: a full refresh differs
            out[name] = {tuple(map(repr, r)) for r in conn.execute(f"select {', '.join(cols)} from silver.{name}")}
    return out


def test_incremental_build_equals_a_full_refresh(pg_url):
    """Songs A, build; then songs B, as new parts of partitions A has and of one it has not,
    build again: every silver table equals a full refresh on A + B, and the rule in Python."""
    first, second = synthetic_notes(96, motifs=60), synthetic_notes(96, motifs=60, seed=1)
    old, new = partitions(first), partitions(second)
    # split is a function of midi_id and so is p: 0-c hold train songs, d test, e-f validate
    keep, grow, add = ["0", "1", "2"], ["d", "3"], "f"
    with psycopg.connect(pg_url) as conn:
        schema.ensure_schema(conn)
        for p in [*keep, *grow]:
            warehouse.load_bronze_part(conn, p, "part-a", old[p], "run-1")
    run_dbt(["build", "--quiet"], url=pg_url)
    with psycopg.connect(pg_url) as conn:
        for p in [*grow, add]:
            warehouse.load_bronze_part(conn, p, "part-b", new[p], "run-2")
    run_dbt(["build", "--quiet"], url=pg_url)
    incremental = silver_snapshot(pg_url)
    run_dbt(["build", "--quiet", "--full-refresh"], url=pg_url)
    full = silver_snapshot(pg_url)

    assert all(incremental[name] for name in SILVER_TABLES if name != "rejected_phrases")  # none breaks a rule
    for name in SILVER_TABLES:
        assert incremental[name] == full[name], name

    rows = [r for p in (*keep, *grow) for r in old[p].to_pylist()]
    rows += [r for p in (*grow, add) for r in new[p].to_pylist()]
    expected = python_phrases(rows)
    splits = content_splits(expected)
    with psycopg.connect(pg_url) as conn:
        got = dict(conn.execute("select content_hash, set_type from silver.phrase_contents").fetchall())
        moved = warehouse.scalar(conn, "select sum(n_phrases) from silver.split_moves")
        stats = phrase_stats(conn)
    assert stats == {k: v["stats"] for k, v in expected.items()}
    assert max(m for _, m in stats.values()) > 1
    assert got == splits
    assert moved == sum(1 for v in expected.values() if splits[v["content_hash"]] != v["song"][1]) > 0


def hand_song(tag: str, split: str, notes: list[tuple[float, float, int, int]]) -> pa.Table:
    """Bronze rows of a one-track song in ``split`` (its midi_id is drawn until the split fits)."""
    midi_id = next(
        m for i in range(1000) if set_type_of(m := hashlib.md5(f"hand:{tag}:{i}".encode()).hexdigest()) == split
    )
    track_id = f"{midi_id[:16]}00000"
    rows = [
        {
            "midi_id": midi_id,
            "track_id": track_id,
            "message_id": f"{track_id}{i:06x}",
            "start_time": start,
            "duration": duration,
            "velocity": velocity,
            "note": pitch,
            "set_type": split,
            "p": midi_id[0],
            "channel": 0,
            "program": 0,
            "is_drum": False,
            "track_index": 0,
            "start_seconds": start / 2,
            "duration_seconds": duration / 2,
            "source_key": f"hand/{tag}.mid",
        }
        for i, (start, duration, velocity, pitch) in enumerate(notes)
    ]
    return pa.Table.from_pylist(rows, schema=BRONZE_SCHEMA)


def test_a_new_train_song_moves_an_older_test_phrase_to_train(pg_url):
    """Worked by hand. A: test song T plays content X in its first window and Y in its
    second; validate song V plays Y (so Y is test, V's phrase moved). B: train song R plays
    X: the incremental build moves T's first phrase (and X) to train, leaves Y in test, and
    ends where a full refresh ends."""
    x, y = [(0.0, 1.0, 80, 60), (1.0, 1.0, 80, 64)], [(0.0, 1.0, 80, 67)]
    at = lambda notes, bucket: [(s + 4 * bucket, d, v, n) for s, d, v, n in notes]  # noqa: E731
    t = hand_song("T", "test", at(x, 0) + at(y, 1))
    v = hand_song("V", "validate", at(y, 3))
    r = hand_song("R", "train", at(x, 2) + at([(0.5, 2.0, 90, 72)], 5))
    song = {name: table.column("midi_id")[0].as_py() for name, table in (("T", t), ("V", v), ("R", r))}

    def load(name: str, table: pa.Table, run: str) -> None:
        with psycopg.connect(pg_url) as conn:
            schema.ensure_schema(conn)
            warehouse.load_bronze_part(conn, song[name][0], f"part-{name}", table, run)

    def state() -> tuple[dict, dict, dict]:
        with psycopg.connect(pg_url) as conn:
            phrases = {(m, b): st for m, b, st in conn.execute("select midi_id, bucket, set_type from silver.phrases")}
            moved = dict(conn.execute("select midi_id, n_phrases_moved from silver.song_summary"))
            moves = {(f, t): n for f, t, n, *_ in conn.execute("select * from silver.split_moves")}
        return phrases, moved, moves

    load("T", t, "run-a")
    load("V", v, "run-a")
    run_dbt(["build", "--quiet"], url=pg_url)
    phrases, moved, moves = state()
    assert phrases == {(song["T"], 0): "test", (song["T"], 1): "test", (song["V"], 3): "test"}
    assert moved == {song["T"]: 0, song["V"]: 1} and moves == {("validate", "test"): 1}

    load("R", r, "run-b")
    run_dbt(["build", "--quiet"], url=pg_url)
    phrases, moved, moves = state()
    assert phrases == {
        (song["T"], 0): "train",
        (song["T"], 1): "test",
        (song["V"], 3): "test",
        (song["R"], 2): "train",
        (song["R"], 5): "train",
    }
    assert moved == {song["T"]: 1, song["V"]: 1, song["R"]: 0}
    assert moves == {("validate", "test"): 1, ("test", "train"): 1}
    incremental = silver_snapshot(pg_url)
    run_dbt(["build", "--quiet", "--full-refresh"], url=pg_url)
    assert silver_snapshot(pg_url) == incremental
