"""Raw load on the real embedded Postgres: exact round trip, reruns, bad input, a kill mid-COPY."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from bench.synthetic import partitions, synthetic_notes
from dx7lake.bronze import BRONZE_SCHEMA
from dx7lake.warehouse import load as warehouse
from dx7lake.warehouse import schema

COLS = ", ".join(BRONZE_SCHEMA.names)


def raw_rows(conn: psycopg.Connection, p: str | None = None) -> list[tuple]:
    where = "" if p is None else f"where p = '{p}'"
    return conn.execute(f"select {COLS} from raw.detailed_notes {where} order by message_id").fetchall()


def as_rows(table: pa.Table) -> list[tuple]:
    table = table.sort_by("message_id")
    return list(zip(*(table.column(c).to_pylist() for c in BRONZE_SCHEMA.names), strict=True))


def with_column(table: pa.Table, name: str, values: list) -> pa.Table:
    field = BRONZE_SCHEMA.field(name)
    return table.set_column(BRONZE_SCHEMA.get_field_index(name), field, pa.array(values, field.type))


@pytest.fixture
def parts() -> dict[str, pa.Table]:
    return partitions(synthetic_notes(40, phrases_per_track=8))


def test_copy_round_trips_every_value_exactly(pg_url, parts):
    p, table = next(iter(parts.items()))
    # strings CSV must quote, an empty string that must not turn into NULL, NULL ints and doubles
    awkward = ["a,b", 'say "hi"', "two\nlines", "", "tab\there", "back\\slash", "ünïcödé"]
    table = table.slice(0, len(awkward))
    table = with_column(table, "source_key", awkward)
    table = with_column(table, "channel", [None, 1, 2, 3, 4, 5, 6])
    table = with_column(table, "start_seconds", [None, 0.1, 1 / 3, 1e-300, 2.5e10, 0.0, 7.0])
    table = with_column(table, "start_time", [0.1, 1 / 3, 2 / 3, 5.125, 1e-9, 123456.789, 0.0])
    with psycopg.connect(pg_url) as conn:
        schema.ensure_schema(conn)
        warehouse.load_bronze_partition(conn, p, table, "run-1")
        assert raw_rows(conn) == as_rows(table)


def test_rerun_leaves_the_same_rows_and_one_stats_row_per_run_and_partition(pg_url, parts):
    with psycopg.connect(pg_url) as conn:
        schema.ensure_schema(conn)
        for run in ("run-1", "run-1", "run-2"):
            results = [warehouse.load_bronze_partition(conn, p, t, run) for p, t in parts.items()]
        assert raw_rows(conn) == as_rows(pa.concat_tables(parts.values()))
        stats = conn.execute("select run_id, p, rows, bytes from ops.load_stats order by run_id, p").fetchall()
    assert [(r, p) for r, p, _, _ in stats] == [(r, p) for r in ("run-1", "run-2") for p in sorted(parts)]
    by_p = {r["p"]: r for r in results}
    for _, p, rows, nbytes in stats:
        assert rows == parts[p].num_rows == by_p[p]["rows"] and nbytes == by_p[p]["bytes"] > 0


def test_bad_input_fails_clearly_and_keeps_the_previous_partition(pg_url, parts):
    (p, table), (other, _) = list(parts.items())[:2]
    with psycopg.connect(pg_url) as conn:
        schema.ensure_schema(conn)
        warehouse.load_bronze_partition(conn, p, table, "run-1")
        before = raw_rows(conn)
        with pytest.raises(warehouse.PartitionMismatch, match=f"partition '{other}'"):
            warehouse.load_bronze_partition(conn, other, table, "run-2")
        bad = with_column(table, "velocity", [None] * table.num_rows)
        with pytest.raises(psycopg.errors.NotNullViolation):
            warehouse.load_bronze_partition(conn, p, bad, "run-2")
        assert raw_rows(conn) == before
        assert warehouse.scalar(conn, "select count(*) from ops.load_stats where run_id = 'run-2'") == 0


def test_a_load_killed_during_copy_leaves_the_table_as_it_was(pg_url, tmp_path):
    """A separate process loads a big partition and is SIGKILLed while its COPY streams."""
    big = synthetic_notes(200, phrases_per_track=64)
    big = with_column(big, "p", ["0"] * big.num_rows)
    with psycopg.connect(pg_url) as conn:
        schema.ensure_schema(conn)
        warehouse.load_bronze_partition(conn, "0", big.slice(0, 1000), "before")
    pq.write_table(big, tmp_path / "part.parquet")
    script = textwrap.dedent(
        f"""
        import psycopg, pyarrow.parquet as pq
        from dx7lake.warehouse import load as warehouse
        table = pq.read_table({str(tmp_path / "part.parquet")!r})
        with psycopg.connect({pg_url!r}) as conn:
            warehouse.load_bronze_partition(conn, "0", table, "killed")
        """
    )
    with psycopg.connect(pg_url, autocommit=True) as conn:
        before = raw_rows(conn)
        child = subprocess.Popen([sys.executable, "-c", script], env=os.environ.copy())
        try:
            copying = None
            deadline = time.monotonic() + 60
            while copying is None and child.poll() is None and time.monotonic() < deadline:
                copying = conn.execute(
                    "select pid from pg_stat_progress_copy where datname = current_database() and tuples_processed > 0"
                ).fetchone()
                time.sleep(0.005)
            child.send_signal(signal.SIGKILL)
            child.wait(timeout=30)
        finally:
            if child.poll() is None:
                child.kill()
        assert copying is not None, "the child finished or failed before its COPY was seen"
        while conn.execute("select 1 from pg_stat_activity where pid = %s", copying).fetchone():
            time.sleep(0.05)  # the backend notices its client is gone and rolls back
        assert raw_rows(conn) == before
        assert warehouse.scalar(conn, "select count(*) from ops.load_stats where run_id = 'killed'") == 0
        assert warehouse.scalar(conn, "select count(*) from ops.load_stats where run_id = 'before'") == 1


def test_loads_inside_a_callers_transaction_stage_only_their_own_rows(pg_url, parts):
    """Inside an open transaction each load is a savepoint, so no commit empties the
    session's staging table between loads: the load must."""
    (p, first), (q, second) = list(parts.items())[:2]
    with psycopg.connect(pg_url) as conn:
        schema.ensure_schema(conn)
        conn.execute("select 1")  # the connection is now inside a transaction
        warehouse.load_bronze_partition(conn, p, first, "run-1")
        warehouse.load_bronze_partition(conn, q, second, "run-1")
        conn.commit()
        assert raw_rows(conn) == as_rows(pa.concat_tables([first, second]))
