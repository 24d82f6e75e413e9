"""dbt data tests read what the latest run added (dbt/macros/new_rows_only.sql), so a run's
tests cost what it adds; ``--vars '{full_tests: true}'`` reads every row, the deep audit.

Songs A are built, then songs B. A row broken by hand is then caught by the default tests
when it is one of B's (the latest build's), and only by the deep audit when it is one of A's;
a new row repeating an old key is refused by the keyed table's unique index."""

from __future__ import annotations

import psycopg
import pytest

from bench.synthetic import partitions, synthetic_notes
from dx7lake.warehouse import load as warehouse
from dx7lake.warehouse import schema
from dx7lake.warehouse.transform import invoke_dbt, run_dbt

FULL = ["--vars", "{full_tests: true}"]
SELECT = ["--select", "source:raw.detailed_notes", "phrase_contents", "phrases"]


def failing(url: str, *extra: str) -> set[str]:
    """The names of the data tests of SELECT that fail (dbt test: the tests a run's tasks run after each build)."""
    result = invoke_dbt(["test", "--quiet", *SELECT, *extra], url=url)
    assert result.result is not None, result.exception
    return {r.node.name for r in result.result.results if str(r.status) not in ("pass", "success")}


def break_a_note(conn: psycopg.Connection, p: str) -> None:
    """Velocity 0 (out of MIDI's 1..127) on one raw note of bronze partition ``p``."""
    conn.execute(
        "update raw.detailed_notes set velocity = 0"
        " where message_id = (select min(message_id) from raw.detailed_notes where p = %s)",
        (p,),
    )


@pytest.fixture
def two_runs(pg_url) -> str:
    """A warehouse built on songs A (run-1), then on songs B (run-2) in other partitions."""
    old, new = partitions(synthetic_notes(64, motifs=40)), partitions(synthetic_notes(64, motifs=40, seed=1))
    with psycopg.connect(pg_url) as conn:
        schema.ensure_schema(conn)
        for p in ("0", "1", "d"):
            warehouse.load_bronze_part(conn, p, "part-a", old[p], "run-1")
    run_dbt(["build", "--quiet"], url=pg_url)
    with psycopg.connect(pg_url) as conn:
        for p in ("2", "e"):
            warehouse.load_bronze_part(conn, p, "part-b", new[p], "run-2")
    run_dbt(["build", "--quiet"], url=pg_url)
    assert failing(pg_url) == failing(pg_url, *FULL) == set()
    return pg_url


def test_a_bad_new_row_fails_the_run_and_a_bad_old_row_only_the_deep_audit(two_runs):
    with psycopg.connect(two_runs) as conn:
        newest = "(select max(built_at) from silver.phrase_contents)"
        (old_content,) = conn.execute(
            f"select content_hash from silver.phrase_contents where built_at < {newest} limit 1"
        ).fetchone()
        conn.execute("update silver.phrase_contents set p = 99 where content_hash = %s", (old_content,))
        # a note of partition 0, loaded by run-1
        break_a_note(conn, "0")
    assert failing(two_runs) == set()  # A's rows: as the run that built them checked them
    assert failing(two_runs, *FULL) == {
        "in_range_phrase_contents_p___var_render_partitions_1___0",
        "source_in_range_raw_detailed_notes_velocity__127__1",
    }

    with psycopg.connect(two_runs) as conn:
        (new_content,) = conn.execute(
            f"select content_hash from silver.phrase_contents where built_at = {newest} limit 1"
        ).fetchone()
        conn.execute("update silver.phrase_contents set p = -1 where content_hash = %s", (new_content,))
        # a note of partition 2, loaded by run-2
        break_a_note(conn, "2")
    assert failing(two_runs) == {
        "in_range_phrase_contents_p___var_render_partitions_1___0",
        "source_in_range_raw_detailed_notes_velocity__127__1",
    }


# silver's keyed tables and their keys: a unique index each (their config), no dbt `unique` test
KEYED = {
    "intermediate.int_phrases": "phrase_id",
    "silver.phrase_contents": "content_hash",
    "silver.phrases": "phrase_id",
    "silver.phrase_stats": "phrase_id",
    "silver.track_summary": "track_id",
    "silver.song_summary": "midi_id",
}


def test_a_new_row_repeating_an_old_key_is_refused_by_the_tables_unique_index(two_runs):
    """A `unique` test would re-read every row of a first build (2 s a table at 3.4 M notes);
    the unique index refuses the duplicate as it is written, whichever build wrote the old row."""
    with psycopg.connect(two_runs) as conn:
        for table, key in KEYED.items():
            (old,) = conn.execute(f"select {key} from {table} order by {key} limit 1").fetchone()
            with pytest.raises(psycopg.errors.UniqueViolation, match=key), conn.transaction():
                conn.execute(f"insert into {table} select * from {table} where {key} = %s", (old,))


def compiled_plan(url: str, model: str) -> dict:
    """A model's compiled SQL, as the next ``dbt run`` would run it, under EXPLAIN ANALYZE."""
    result = invoke_dbt(["compile", "--quiet", "--select", model], url=url)
    assert result.result is not None, result.exception
    (compiled,) = [r.node.compiled_code for r in result.result.results if r.node.resource_type == "model"]
    with psycopg.connect(url) as conn:
        (plan,) = conn.execute(f"explain (analyze, format json) {compiled}").fetchone()[0]
    return plan["Plan"]


def test_a_rerun_reads_the_phrases_of_the_contents_it_touched(pg_url):
    """phrase_contents, rebuilt after new files, reads from int_phrases the phrases of the
    contents those files touched (through the content_hash index), not every phrase of the
    lake: the render rules are checked on the phrases it reads, not by an anti-join with every
    rejected phrase. Then song_summary reads the phrases of the songs that play those contents,
    not every phrase. Their compiled SQL under EXPLAIN
    ANALYZE, once their inputs hold the new files and they do not yet."""
    from test_gold_new_renders import _rows_read

    # another seed draws another motif library: the new songs play contents of their own
    old, new = partitions(synthetic_notes(64)), partitions(synthetic_notes(4, seed=1))
    with psycopg.connect(pg_url) as conn:
        schema.ensure_schema(conn)
        for p, table in old.items():
            warehouse.load_bronze_part(conn, p, "part-a", table, "run-1")
    run_dbt(["build", "--quiet"], url=pg_url)
    with psycopg.connect(pg_url) as conn:
        for p, table in new.items():
            warehouse.load_bronze_part(conn, p, "part-b", table, "run-2")
    run_dbt(["run", "--quiet", "--select", "+int_phrases"], url=pg_url)
    plan = compiled_plan(pg_url, "phrase_contents")
    with psycopg.connect(pg_url) as conn:
        total, touched = conn.execute(
            "select count(*), count(*) filter (where content_hash = any(array("
            "  select content_hash from intermediate.int_phrases"
            "  where built_at = (select max(built_at) from intermediate.int_phrases))))"
            " from intermediate.int_phrases"
        ).fetchone()
    assert 0 < touched < total / 4
    # the new phrases (for their contents), then every phrase of those contents
    assert _rows_read(plan, "int_phrases") <= 2 * touched

    run_dbt(["run", "--quiet", "--select", "phrase_contents"], url=pg_url)
    plan = compiled_plan(pg_url, "song_summary")
    with psycopg.connect(pg_url) as conn:
        (songs_phrases,) = conn.execute(
            """select count(*) from intermediate.int_phrases where midi_id in (
                   select midi_id from intermediate.int_phrases where content_hash in (
                       select content_hash from silver.phrase_contents
                       where built_at = (select max(built_at) from silver.phrase_contents)))"""
        ).fetchone()
    assert 0 < songs_phrases < total / 2
    # the touched contents' phrases (which songs play them), then those songs' phrases
    assert _rows_read(plan, "int_phrases") <= 2 * touched + songs_phrases
