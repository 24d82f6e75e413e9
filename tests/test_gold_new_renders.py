"""The dbt tests of the gold source read the renders the latest loading run loaded (by
``gold.renders.loaded_at``, dbt/macros/new_rows_only.sql), as the tests of the other large
tables read what their latest build wrote: a run's validation costs what the run loaded, not
gold. ``--vars '{full_tests: true}'`` reads every row, the deep audit of ``validate --full``.

Renders A are loaded by run-1 (many), then a few, B, by run-2, through load_manifest_parts as
load_renders loads them. A row broken by hand fails the run's tests when it is one of B's and
only the deep audit when it is one of A's; a new row repeating an old FLAC key fails
``unique``; what the tests read of gold.renders is counted by Postgres' own EXPLAIN ANALYZE;
a warehouse from before the column gets it, each old row its partition's load time."""

from __future__ import annotations

import psycopg
import pyarrow as pa
import pytest

from bench.synthetic import synthetic_manifest
from dx7lake.warehouse import load as warehouse
from dx7lake.warehouse import schema
from dx7lake.warehouse.transform import invoke_dbt

PROFILE = "prof-a"
PATCH = "patch-1"
SELECT = ["--select", "source:gold"]
FULL = ["--vars", "{full_tests: true}"]
OLD, NEW = 2000, 6
RANGE_TEST = "source_accepted_values_gold_renders_sample_rate__False__16000__22050__44100__48000"


def manifest_part(start: int, n: int, key_of=None) -> pa.Table:
    return synthetic_manifest(start, n, PROFILE, PATCH, key_of)


def load(conn: psycopg.Connection, run_id: str, parts: list[tuple[int, pa.Table]]) -> None:
    """Parts (render partition, table) loaded by ``run_id``, as load_renders loads them."""
    warehouse.load_manifest_parts(
        conn,
        [
            (f"gold/manifests/{PROFILE}/{PATCH}/p={p:04d}/part-{run_id}-{i}.parquet", PROFILE, PATCH, p, t)
            for i, (p, t) in enumerate(parts)
        ],
        run_id,
    )


def failing(url: str, *extra: str) -> set[str]:
    """Names of the failing tests of the gold source (as validation runs them)."""
    result = invoke_dbt(["test", "--quiet", *SELECT, *extra], url=url)
    assert result.result is not None, result.exception
    return {r.node.name for r in result.result.results if str(r.status) not in ("pass", "success")}


@pytest.fixture
def two_loads(pg_url) -> str:
    with psycopg.connect(pg_url) as conn:
        schema.ensure_schema(conn)
        load(conn, "run-1", [(p, manifest_part(p * OLD // 4, OLD // 4)) for p in range(4)])
        conn.execute("analyze gold.renders")
    with psycopg.connect(pg_url) as conn:
        load(conn, "run-2", [(4, manifest_part(OLD, NEW))])
    assert failing(pg_url) == failing(pg_url, *FULL) == set()
    return pg_url


def _break(conn: psycopg.Connection, newest: bool) -> None:
    """A sample rate dbt does not accept, on one row of run-1 or of run-2."""
    since = "(select min(loaded_at) from gold.manifest_parts where run_id = 'run-2')"
    side = ">=" if newest else "<"
    conn.execute(
        f"update gold.renders set sample_rate = 12345"
        f" where key = (select min(key) from gold.renders where loaded_at {side} {since})"
    )


def test_a_bad_new_render_fails_the_run_and_a_bad_old_one_only_the_deep_audit(two_loads):
    with psycopg.connect(two_loads) as conn:
        _break(conn, newest=False)
        conn.execute(  # a NaN peak, which only the singular levels test reads
            "update gold.renders set peak = 'NaN' where key = (select max(key) from gold.renders where bpm = 120"
            " and loaded_at < (select min(loaded_at) from gold.manifest_parts where run_id = 'run-2'))"
        )
    assert failing(two_loads) == set()
    assert failing(two_loads, *FULL) == {RANGE_TEST, "gold_renders_levels_in_range"}

    with psycopg.connect(two_loads) as conn:
        _break(conn, newest=True)
    assert failing(two_loads) == {RANGE_TEST}


def test_a_new_render_repeating_an_old_key_or_naming_an_unknown_profile_fails(two_loads):
    with psycopg.connect(two_loads) as conn:
        (old_key,) = conn.execute("select key from gold.renders where render_p = 0 limit 1").fetchone()
        # a new content whose FLAC key is an old render's (another primary key, so the upsert keeps both)
        load(conn, "run-3", [(5, manifest_part(10_000, 1, key_of=lambda h: old_key))])
        naive = conn.execute(
            "select key from gold.renders where loaded_at >= (select min(loaded_at) from gold.manifest_parts"
            " where run_id = 'run-3') group by key having count(*) > 1"
        ).fetchall()
    assert naive == []  # the new rows alone hold the key once
    assert failing(two_loads) == {"source_unique_gold_renders_key"}

    with psycopg.connect(two_loads) as conn:
        # a row of run-4 moved to a profile gold.profiles lacks: relationships checks the new child
        # against every parent (and unique now reads run-4's keys only, not run-3's repeat)
        load(conn, "run-4", [(6, manifest_part(20_000, 1))])
        conn.execute(
            "update gold.renders set profile_id = 'unknown' where loaded_at >= (select min(loaded_at)"
            " from gold.manifest_parts where run_id = 'run-4')"
        )
    assert failing(two_loads) == {"source_relationships_gold_renders_profile_id__profile_id__source_gold_profiles_"}


def _rows_read(plan: dict, relation: str) -> int:
    """Rows a plan's nodes read from ``relation``: returned plus removed by filters, per loop."""
    read = 0
    if plan.get("Relation Name") == relation:
        kept = plan.get("Actual Rows", 0)
        removed = plan.get("Rows Removed by Filter", 0) + plan.get("Rows Removed by Index Recheck", 0)
        read += (kept + removed) * plan.get("Actual Loops", 1)
    return read + sum(_rows_read(child, relation) for child in plan.get("Plans", []))


def rows_read_per_test(url: str, *extra: str) -> dict[str, int]:
    """Each gold source test's compiled SQL run under EXPLAIN ANALYZE: the rows of gold.renders
    Postgres read for it."""
    result = invoke_dbt(["compile", "--quiet", *SELECT, *extra], url=url)
    assert result.result is not None, result.exception
    read = {}
    with psycopg.connect(url) as conn:
        for r in result.result.results:
            if r.node.resource_type == "test" and "renders" in r.node.compiled_code:
                (plan,) = conn.execute(f"explain (analyze, format json) {r.node.compiled_code}").fetchone()[0]
                read[r.node.name] = _rows_read(plan["Plan"], "renders")
    return read


def test_the_runs_tests_read_the_renders_it_loaded_and_the_audit_reads_all(two_loads):
    run, audit = rows_read_per_test(two_loads), rows_read_per_test(two_loads, *FULL)
    assert set(run) == set(audit) and len(run) >= 10, run
    assert all(n <= 2 * NEW for n in run.values()), run  # unique reads the new keys' rows: NEW here
    # every row, but for not_null on an indexed column, which Postgres answers from the index
    by_index = {f"source_not_null_gold_renders_{c}" for c in ("profile_id", "content_hash", "patch_id", "key")}
    assert {name for name, n in audit.items() if n < OLD + NEW} == by_index, audit


def test_a_warehouse_from_before_loaded_at_upgrades(pg_url):
    """Old rows take the newest load of their partition in the ledger, rows no ledger part
    accounts for -infinity; the next load's rows are what the run's tests check."""
    with psycopg.connect(pg_url) as conn:
        schema.ensure_schema(conn)
        load(conn, "run-1", [(0, manifest_part(0, 30))])
        load(conn, "run-2", [(0, manifest_part(30, 10))])
        load(conn, "run-2", [(1, manifest_part(40, 20))])  # another transaction: a later time
        conn.execute("alter table gold.renders drop column loaded_at")
        ledger = dict(conn.execute("select render_p, loaded_at from gold.manifest_parts where run_id = 'run-2'"))
        conn.commit()
        assert "loaded_at" not in {c.name for c in conn.execute("select * from gold.renders limit 0").description}

        schema.ensure_schema(conn)
        got = dict(conn.execute("select content_hash, loaded_at from gold.renders").fetchall())
        want = {
            **{h: ledger[0] for h in manifest_part(0, 40).column("content_hash").to_pylist()},
            **{h: ledger[1] for h in manifest_part(40, 20).column("content_hash").to_pylist()},
        }
        assert got == want
        want_old = min(want)
        assert ledger[0] < ledger[1]
        conn.execute("delete from gold.manifest_parts")
        conn.execute("alter table gold.renders drop column loaded_at")
        schema.ensure_schema(conn)  # the ledger accounts for no row now
        assert conn.execute("select bool_and(loaded_at = '-infinity') from gold.renders").fetchone() == (True,)
        (nullable, default) = conn.execute(
            "select is_nullable, column_default from information_schema.columns"
            " where table_schema = 'gold' and table_name = 'renders' and column_name = 'loaded_at'"
        ).fetchone()
        assert (nullable, default) == ("NO", "now()")
        conn.commit()
        load(conn, "run-3", [(2, manifest_part(100, 3))])
    with psycopg.connect(pg_url) as conn:  # an old row broken: the audit's; then one of run-3: the run's
        conn.execute("update gold.renders set sample_rate = 12345 where content_hash = %s", (want_old,))
    assert (failing(pg_url), failing(pg_url, *FULL)) == (set(), {RANGE_TEST})
    with psycopg.connect(pg_url) as conn:
        conn.execute("update gold.renders set sample_rate = 12345 where render_p = 2")
    assert failing(pg_url) == {RANGE_TEST}
