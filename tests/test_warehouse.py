"""Raw load on the real embedded Postgres: exact round trip, load by part, reruns, bad input, a kill mid-COPY."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import psycopg
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from bench.synthetic import partitions, synthetic_notes
from dx7lake.bronze import BRONZE_PREFIX, BRONZE_SCHEMA, INDEX_PREFIX
from dx7lake.bronze.schema import INDEX_SCHEMA
from dx7lake.lake import LocalLake
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
        warehouse.load_bronze_part(conn, p, "part-a", table, "run-1")
        assert raw_rows(conn) == as_rows(table)


def test_a_part_loaded_again_replaces_its_rows_and_stats_count_the_ledger(pg_url, parts):
    with psycopg.connect(pg_url) as conn:
        schema.ensure_schema(conn)
        for run in ("run-1", "run-1", "run-2"):
            results = [warehouse.load_bronze_part(conn, p, f"part-{p}", t, run) for p, t in parts.items()]
        assert raw_rows(conn) == as_rows(pa.concat_tables(parts.values()))
        stats = conn.execute("select run_id, p, rows, bytes from ops.load_stats order by run_id, p").fetchall()
        ledger = conn.execute("select p, part, rows, run_id from raw.bronze_parts order by p").fetchall()
    assert ledger == [(p, f"part-{p}", parts[p].num_rows, "run-2") for p in sorted(parts)]
    # run-1 loaded each part twice: its rows are those of the part (the ledger's), bytes add up
    assert [(r, p) for r, p, _, _ in stats] == [(r, p) for r in ("run-1", "run-2") for p in sorted(parts)]
    by_p = {r["p"]: r for r in results}
    for run, p, rows, nbytes in stats:
        assert rows == parts[p].num_rows == by_p[p]["rows"]
        assert nbytes == by_p[p]["bytes"] * (2 if run == "run-1" else 1) > 0


def put_part(lake: LocalLake, table: pa.Table, name: str) -> None:
    """A committed bronze part as extract writes one: the notes, then the index (the commit)."""
    p = table.column("p")[0].as_py()
    pq.write_table(table, buf := pa.BufferOutputStream())
    lake.put(f"{BRONZE_PREFIX}/p={p}/{name}", buf.getvalue().to_pybytes())
    ids = sorted(set(table.column("midi_id").to_pylist()))
    index = pa.table({"midi_id": ids, "source_key": ids, "status": ["extracted"] * len(ids), "notes": [0] * len(ids)})
    lake.put_parquet(f"{INDEX_PREFIX}/p={p}/{name}", index.cast(INDEX_SCHEMA))


def songs_of(table: pa.Table) -> list[pa.Table]:
    ids = sorted(set(table.column("midi_id").to_pylist()))
    return [table.filter(pc.equal(table.column("midi_id"), m)) for m in ids]


def test_load_takes_only_the_parts_the_ledger_lacks(pg_url, parts, tmp_path):
    """Two parts, then a third in the same partition: the second run loads the third alone
    and leaves the rows of the first two as they were (same row versions); a third run loads
    nothing. Raw equals the lake's parts read back by pyarrow, without the loader."""
    lake = LocalLake(tmp_path / "lake")
    p, table = max(parts.items(), key=lambda item: len(set(item[1].column("midi_id").to_pylist())))
    first, second, third = songs_of(table)[:3]
    put_part(lake, first, "part-1.parquet")
    put_part(lake, second, "part-2.parquet")
    with psycopg.connect(pg_url) as conn:
        schema.ensure_schema(conn)
        one = warehouse.load_new_bronze_parts(conn, lake, p, "run-1")
        versions = conn.execute("select message_id, xmin::text from raw.detailed_notes order by 1").fetchall()
        put_part(lake, third, "part-3.parquet")
        two = warehouse.load_new_bronze_parts(conn, lake, p, "run-2")
        three = warehouse.load_new_bronze_parts(conn, lake, p, "run-3")
        old = conn.execute(
            "select message_id, xmin::text from raw.detailed_notes where midi_id <> %s order by 1",
            (third.column("midi_id")[0].as_py(),),
        ).fetchall()
        stats = conn.execute("select run_id, rows from ops.load_stats order by run_id").fetchall()
        ledger = conn.execute("select part, rows from raw.bronze_parts order by part").fetchall()
        got = raw_rows(conn)
    read_back = pq.read_table(tmp_path / "lake" / BRONZE_PREFIX / f"p={p}")
    assert got == as_rows(read_back.select(BRONZE_SCHEMA.names).cast(BRONZE_SCHEMA))
    assert (one["parts"], one["rows"]) == (2, first.num_rows + second.num_rows)
    assert (two["parts"], two["rows"]) == (1, third.num_rows)
    assert (three["parts"], three["rows"]) == (0, 0)
    assert old == versions  # the first two parts were not rewritten
    assert stats == [("run-1", first.num_rows + second.num_rows), ("run-2", third.num_rows)]
    assert ledger == [(f"part-{i}.parquet", t.num_rows) for i, t in enumerate((first, second, third), 1)]


def test_bad_input_fails_clearly_and_keeps_the_previous_partition(pg_url, parts):
    (p, table), (other, _) = list(parts.items())[:2]
    with psycopg.connect(pg_url) as conn:
        schema.ensure_schema(conn)
        warehouse.load_bronze_part(conn, p, "part-a", table, "run-1")
        before = raw_rows(conn)
        with pytest.raises(warehouse.PartitionMismatch, match=f"partition '{other}'"):
            warehouse.load_bronze_part(conn, other, "part-a", table, "run-2")
        bad = with_column(table, "velocity", [None] * table.num_rows)
        with pytest.raises(psycopg.errors.NotNullViolation):
            warehouse.load_bronze_part(conn, p, "part-a", bad, "run-2")
        assert raw_rows(conn) == before
        assert warehouse.scalar(conn, "select count(*) from ops.load_stats where run_id = 'run-2'") == 0
        assert warehouse.scalar(conn, "select count(*) from raw.bronze_parts where run_id = 'run-2'") == 0


def test_a_load_killed_during_copy_leaves_the_table_as_it_was(pg_url, tmp_path):
    """A separate process loads a big partition and is SIGKILLed while its COPY streams."""
    big = synthetic_notes(200, phrases_per_track=64)
    big = with_column(big, "p", ["0"] * big.num_rows)
    with psycopg.connect(pg_url) as conn:
        schema.ensure_schema(conn)
        warehouse.load_bronze_part(conn, "0", "part-before", big.slice(0, 1000), "before")
    pq.write_table(big, tmp_path / "part.parquet")
    script = textwrap.dedent(
        f"""
        import psycopg, pyarrow.parquet as pq
        from dx7lake.warehouse import load as warehouse
        table = pq.read_table({str(tmp_path / "part.parquet")!r})
        with psycopg.connect({pg_url!r}) as conn:
            warehouse.load_bronze_part(conn, "0", "part-killed", table, "killed")
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
        assert warehouse.scalar(conn, "select count(*) from raw.bronze_parts where part = 'part-killed'") == 0


def test_loads_inside_a_callers_transaction_stage_only_their_own_rows(pg_url, parts):
    """Inside an open transaction each load is a savepoint, so no commit empties the
    session's staging table between loads: the load must."""
    (p, first), (q, second) = list(parts.items())[:2]
    with psycopg.connect(pg_url) as conn:
        schema.ensure_schema(conn)
        conn.execute("select 1")  # the connection is now inside a transaction
        warehouse.load_bronze_part(conn, p, "part-a", first, "run-1")
        warehouse.load_bronze_part(conn, q, "part-a", second, "run-1")
        conn.commit()
        assert raw_rows(conn) == as_rows(pa.concat_tables([first, second]))


def _raw_upkeep(conn: psycopg.Connection) -> tuple:
    """Postgres' own record of raw.detailed_notes: last vacuum, last analyse, rows changed
    since, and whether its visibility map covers every page."""
    conn.execute("select pg_stat_clear_snapshot()")
    return conn.execute(
        "select s.last_vacuum, s.last_analyze, s.n_mod_since_analyze, c.relallvisible = c.relpages"
        " from pg_stat_user_tables as s join pg_class as c on c.oid = s.relid"
        " where s.schemaname = 'raw' and s.relname = 'detailed_notes'"
    ).fetchone()


def test_a_run_that_loaded_rows_leaves_raw_vacuumed_and_analysed_for_dbt(settings):
    """finish_load (the DAG's `loaded` task) vacuums and analyses raw once a run's loads are
    done, so dbt plans on statistics and reads hinted, all-visible pages; a run that loaded
    nothing leaves them alone (it would only re-sample the same rows)."""
    from dx7lake import stages

    stages.extract(settings)
    loads = [stages.load_partition(settings, p, "run-1") for p in stages.bronze_partitions(settings)]
    with psycopg.connect(settings.pg_url, autocommit=True) as conn:
        last_vacuum, last_analyze, changed, all_visible = _raw_upkeep(conn)
        assert last_vacuum is None and changed == sum(r["rows"] for r in loads) > 0

        done = stages.finish_load(settings, loads)
        assert done["rows"] == changed and done["partitions"] == len(loads)
        last_vacuum, last_analyze, changed, all_visible = _raw_upkeep(conn)
        assert last_vacuum is not None and last_analyze is not None
        assert changed == 0 and all_visible

        again = [stages.load_partition(settings, p, "run-2") for p in stages.bronze_partitions(settings)]
        assert stages.finish_load(settings, again)["rows"] == 0
        assert _raw_upkeep(conn)[:2] == (last_vacuum, last_analyze)
