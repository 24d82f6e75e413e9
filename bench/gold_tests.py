"""Benchmark of the dbt tests of the gold source, which every run's validation runs: on a
gold.renders of many old renders plus the few a run loaded, the run's tests (the renders the
latest loading run loaded, dbt/macros/new_rows_only.sql) against the same tests over every
row (``full_tests``, the deep audit, and what every run read before gold.renders recorded
``loaded_at``), same process, same warehouse.

The old renders are written by SQL (a warehouse's worth without rendering), stamped a day
old in gold.renders and the ledger; the run's by the production loader. Postgres' statistics
are fresh (as autovacuum's analyze leaves them) before the run's load.
``DX7LAKE_BENCH_RENDERS`` sets the old renders (default 500k), ``DX7LAKE_BENCH_NEW`` the run's (64).
"""

from __future__ import annotations

import os
import time

import psycopg

from bench._result import against_baseline
from bench._warehouse import temporary_warehouse
from bench.synthetic import synthetic_manifest
from dx7lake.warehouse import load as warehouse
from dx7lake.warehouse.transform import invoke_dbt

PROFILE, PATCH, PARTITIONS = "bench-profile", "bench-patch", 16
OLD_RENDERS = f"""
insert into gold.renders (profile_id, content_hash, patch_id, key, sha256, bytes, sample_rate, duration_s,
                          peak, rms, bpm, notes, render_p, note_length, loaded_at)
select '{PROFILE}', md5(i::text), '{PATCH}', 'gold/renders/{PROFILE}/{PATCH}/' || md5(i::text) || '.flac',
       sha256(i::text::bytea)::text, 1000, 44100, 2.0, 0.5, 0.1, 120.0, '[[0.0, 1.0, 60, 100]]'::jsonb,
       i %% {PARTITIONS}, 'until-silent', now() - interval '1 day'
from generate_series(1, %s) as i
"""


def _test_seconds(url: str, *extra: str) -> tuple[float, int]:
    """Wall seconds of ``dbt test`` on the gold source, and the tests it ran (all must pass)."""
    started = time.perf_counter()
    outcome = invoke_dbt(["test", "--quiet", "--select", "source:gold", *extra], url=url)
    seconds = time.perf_counter() - started
    assert outcome.result is not None, outcome.exception
    bad = [r.node.name for r in outcome.result.results if str(r.status) not in ("pass", "success")]
    assert not bad, bad
    return seconds, len(outcome.result.results)


def run() -> dict:
    old = int(os.environ.get("DX7LAKE_BENCH_RENDERS", 500_000))
    new = int(os.environ.get("DX7LAKE_BENCH_NEW", 64))
    with temporary_warehouse() as url:
        with psycopg.connect(url, autocommit=True) as conn:
            warehouse.register_profiles(conn, [(PROFILE, "bench", '{"sample_rate": 44100}')])
            conn.execute(OLD_RENDERS, (old,))
            conn.execute(
                "insert into gold.manifest_parts (key, profile_id, patch_id, render_p, rows, run_id, loaded_at)"
                " select 'gold/manifests/old/p=' || p, %s, %s, p, %s, 'run-old', now() - interval '1 day'"
                " from generate_series(0, %s) as p",
                (PROFILE, PATCH, old // PARTITIONS, PARTITIONS - 1),
            )
            conn.execute("vacuum analyze gold.renders")
            part = synthetic_manifest(0, new, PROFILE, PATCH)
            warehouse.load_manifest_parts(conn, [("gold/manifests/new/p=0", PROFILE, PATCH, 0, part)], "run-new")
        # each timed after an untimed one with the same vars: dbt parses the project again
        # when its vars change, and that start-up is no test's cost
        run_s, tests = [_test_seconds(url) for _ in range(2)][1]
        full_s, _ = [_test_seconds(url, "--vars", "{full_tests: true}") for _ in range(2)][1]
    return against_baseline(
        "gold_tests", run_s, "every row (full_tests)", full_s, renders=old + new, new_renders=new, tests=tests
    )
