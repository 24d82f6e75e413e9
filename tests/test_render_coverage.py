"""A plan reads the contents built since gold last covered silver, not all of silver.

``gold.render_coverage`` marks, per (profile, patch), the ``built_at`` up to which every
content of silver.phrase_contents has its render in gold.renders (warehouse/coverage.py).
Here silver is the table's three columns the plan reads (dbt builds the rest) and gold.renders
is loaded through load_manifest_parts, as load_renders loads it: OLD contents built an hour
ago with their renders, then NEW ones built now. What a plan reads is counted by Postgres'
own EXPLAIN ANALYZE; which contents lack a render is known from how the test made them.
"""

from __future__ import annotations

import psycopg
import pytest
from test_gold_new_renders import _rows_read

from bench.synthetic import create_silver_contents, synthetic_manifest
from dx7lake.quality.validate import Check, _check_coverage
from dx7lake.warehouse import coverage, schema
from dx7lake.warehouse import load as warehouse

PROFILE = "prof-a"
PATCHES = ["patch-1", "patch-2"]
OLD, NEW = 400, 6
PARTITIONS = 16


def contents(start: int, n: int) -> list[tuple[str, int]]:
    """(hash, partition) of contents ``start`` .. ``start + n - 1``: synthetic_manifest's hashes."""
    hashes = synthetic_manifest(start, n, PROFILE, PATCHES[0]).column("content_hash").to_pylist()
    return [(h, int(h[:4], 16) % PARTITIONS) for h in hashes]


def add_contents(conn: psycopg.Connection, start: int, n: int, built_at: str = "now()") -> list[tuple[str, int]]:
    """Contents ``start`` .. into silver, built at ``built_at``, in one transaction (one dbt build)."""
    rows = contents(start, n)
    with conn.cursor() as cur:
        cur.executemany(f"insert into silver.phrase_contents values (%s, %s, {built_at})", rows)
    conn.commit()
    return rows


def render(conn: psycopg.Connection, start: int, n: int, patches: list[str] = PATCHES) -> None:
    """Load renders of contents ``start`` .. for ``patches``, as load_renders does."""
    parts = []
    for patch in patches:
        table = synthetic_manifest(start, n, PROFILE, patch)
        parts.append((f"gold/manifests/{PROFILE}/{patch}/p=0000/part-{start}.parquet", PROFILE, patch, 0, table))
    warehouse.load_manifest_parts(conn, parts, f"run-{start}")


def plan(conn: psycopg.Connection) -> tuple[list[int], int]:
    uncovered, looked = coverage.uncovered_partitions(conn, [PROFILE], PATCHES)
    conn.commit()
    return sorted({p for _, p in uncovered}), looked


def rows_read(conn: psycopg.Connection, since) -> dict[str, int]:
    """What the plan's scan of one voice reads, by Postgres' count."""
    params = {"profile": PROFILE, "patch": PATCHES[0], "since": since}
    with conn.cursor() as cur:
        cur.execute(f"explain (analyze, format json) {coverage._SCAN_SQL}", params)
        (found,) = cur.fetchone()[0]
    conn.rollback()
    return {table: _rows_read(found["Plan"], table) for table in ("phrase_contents", "renders")}


@pytest.fixture
def conn(pg_url):
    with psycopg.connect(pg_url) as conn:
        schema.ensure_schema(conn)
        create_silver_contents(conn)
        conn.commit()
        add_contents(conn, 0, OLD, built_at="now() - interval '1 hour'")
        render(conn, 0, OLD)
        conn.execute("analyze silver.phrase_contents")
        conn.execute("analyze gold.renders")
        conn.commit()
        yield conn


def test_a_rerun_plan_reads_the_new_contents_not_silver(conn):
    assert plan(conn) == ([], OLD * len(PATCHES))  # the first plan reads everything, once
    assert plan(conn) == ([], 0)
    new = add_contents(conn, OLD, NEW)
    assert plan(conn) == (sorted({p for _, p in new}), NEW * len(PATCHES))

    since = coverage.rendered_through(conn, [PROFILE], PATCHES[:1])
    read = rows_read(conn, since)
    assert read["phrase_contents"] == NEW and read["renders"] <= NEW, read
    everything = rows_read(conn, "-infinity")  # without the mark: every content, every render of the voice
    assert everything["phrase_contents"] == OLD + NEW and everything["renders"] >= OLD, everything

    render(conn, OLD, NEW)
    assert plan(conn) == ([], NEW * len(PATCHES))  # covered now: the mark moves past them
    assert plan(conn) == ([], 0)


def test_the_mark_stops_before_the_oldest_content_lacking_a_render(conn):
    plan(conn)
    first = add_contents(conn, OLD, 1)  # lacks its render in one patch
    add_contents(conn, OLD + 1, 2)
    render(conn, OLD, 1, PATCHES[:1])
    render(conn, OLD + 1, 2)
    assert plan(conn) == ([first[0][1]], 3 * len(PATCHES))
    # that patch looks again at the gap and what was built after it, until the gap is rendered
    assert plan(conn) == ([first[0][1]], 3)
    render(conn, OLD, 1, PATCHES[1:])
    assert plan(conn) == ([], 3)
    assert plan(conn) == ([], 0)


def test_the_mark_stays_before_a_build_still_open(conn, pg_url):
    """A dbt build commits contents built at its transaction's start: a plan while it is open
    must not mark past that time, even when a build begun later has committed."""
    plan(conn)
    ((slow_hash, slow_p),) = contents(OLD, 1)
    with psycopg.connect(pg_url) as slow:
        slow.execute("insert into silver.phrase_contents values (%s, %s, current_timestamp)", (slow_hash, slow_p))
        add_contents(conn, OLD + 1, 1)  # built later, committed first, rendered
        render(conn, OLD + 1, 1)
        assert plan(conn) == ([], len(PATCHES))
        slow.commit()
    assert plan(conn)[0] == [slow_p]


def test_deleting_renders_forgets_the_coverage_of_their_voice(conn):
    plan(conn)
    marks = lambda: {patch for (patch,) in conn.execute("select patch_id from gold.render_coverage")}  # noqa: E731
    assert marks() == set(PATCHES)
    (h, p) = conn.execute("select content_hash, p from silver.phrase_contents order by content_hash limit 1").fetchone()
    conn.execute("delete from gold.renders where content_hash = %s and patch_id = %s", (h, PATCHES[1]))
    conn.commit()
    assert marks() == {PATCHES[0]}
    assert plan(conn) == ([p], OLD)  # the voice that lost a render is read again in full
    conn.execute("truncate gold.renders")
    conn.commit()
    assert marks() == set()


def test_validation_checks_the_new_contents_and_an_audit_or_all(conn):
    plan(conn)
    # a content lacking its renders, built before the mark: what only an audit or --full finds
    ((lost, _),) = add_contents(conn, OLD + NEW, 1, built_at="now() - interval '2 hours'")
    new = add_contents(conn, OLD, NEW)
    render(conn, OLD, NEW)
    lost_keys = {f"gold/renders/{PROFILE}/{patch}/{lost[:2]}/{lost}.flac" for patch in PATCHES}

    def coverage_check(audit: int | None) -> Check:
        check = Check("coverage")
        _check_coverage(conn, [PROFILE], PATCHES, audit, "seed", check)
        return check

    incremental = coverage_check(0)
    assert incremental.checked == len(new) * len(PATCHES) and not incremental.failures
    full = coverage_check(None)
    assert full.checked == (OLD + NEW + 1) * len(PATCHES)
    assert {f["key"] for f in full.failures} == lost_keys
    audited = coverage_check(OLD + 1)  # an audit the size of the old contents draws every one
    assert {f["key"] for f in audited.failures} == lost_keys
