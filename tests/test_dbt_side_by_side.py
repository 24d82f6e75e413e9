"""dbt invocations side by side on a fresh warehouse, as Cosmos' model tasks run under a
parallel executor: one creating a schema must not fail another creating the same one.

Postgres' ``create schema if not exists`` is not atomic: a second creator waits on the first's
uncommitted catalog row, then fails on ``pg_namespace``'s unique index. Here the other creator is
a plain connection holding ``create schema staging`` uncommitted; it commits only once dbt's own
``create schema`` is seen waiting on it in ``pg_stat_activity``, so the race is forced, not hoped for.
"""

from __future__ import annotations

import threading
import time

import psycopg

from dx7lake.warehouse import schema
from dx7lake.warehouse.transform import invoke_dbt


def _commit_once_waited_on(other: psycopg.Connection, url: str, waited: threading.Event) -> None:
    """Commit ``other`` as soon as some backend waits on its lock in a ``create schema``."""
    deadline = time.monotonic() + 120
    with psycopg.connect(url, autocommit=True) as watch:
        while time.monotonic() < deadline and not waited.is_set():
            waiting = watch.execute(
                "select count(*) from pg_stat_activity where wait_event_type = 'Lock' and query ilike %s and pid <> %s",
                ("%create schema if not exists%staging%", other.info.backend_pid),
            ).fetchone()[0]
            if waiting:
                waited.set()
            else:
                time.sleep(0.05)
    other.commit()


def test_dbt_creating_a_schema_another_run_is_creating_succeeds(pg_url):
    with psycopg.connect(pg_url) as conn:
        schema.ensure_schema(conn)
    other = psycopg.connect(pg_url)
    other.execute("create schema staging")  # not committed: invisible to dbt, which creates it too
    waited = threading.Event()
    committer = threading.Thread(target=_commit_once_waited_on, args=(other, pg_url, waited))
    committer.start()
    try:
        result = invoke_dbt(["run", "--quiet", "--select", "stg_loaded_files"], url=pg_url)
    finally:
        committer.join()
        other.close()
    assert waited.is_set(), "dbt never waited on the other creator: the race was not exercised"
    assert result.success, result.exception
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("select to_regclass('staging.stg_loaded_files')").fetchone()[0] is not None
