"""Benchmark of a rerun's plan: finding the contents gold lacks after a run added a few.

Silver holds many contents with their renders in two patches, plus the few a run added
without theirs. The plan with the marks of ``gold.render_coverage`` (set by the plan before
the run: it reads the contents built since) against the same plan without marks (every
content against gold.renders: what every plan read before the marks, and what a first plan
or one after renders were deleted reads), same process, same warehouse.

Silver is the table's columns the plan reads (dbt builds the rest) and the renders are
written by SQL, a warehouse's worth without rendering; statistics are fresh (as autovacuum's
analyze leaves them) before the run's contents are added.
``DX7LAKE_BENCH_CONTENTS`` sets the old contents (default 500k), ``DX7LAKE_BENCH_NEW`` the run's (64).
"""

from __future__ import annotations

import os
import time

import psycopg

from bench._result import against_baseline
from bench._warehouse import temporary_warehouse
from bench.synthetic import create_silver_contents
from dx7lake.warehouse import coverage

PROFILE, PATCHES, PARTITIONS = "bench-profile", ["bench-a", "bench-b"], 16
CONTENTS = f"""
insert into silver.phrase_contents
select md5(i::text), i %% {PARTITIONS}, %s::timestamptz from generate_series(%s, %s) as i
"""
RENDERS = f"""
insert into gold.renders (profile_id, content_hash, patch_id, key, sha256, bytes, sample_rate, duration_s,
                          peak, rms, bpm, notes, render_p, note_length)
select '{PROFILE}', c.content_hash, v.patch_id, 'gold/renders/{PROFILE}/' || v.patch_id || '/' || c.content_hash,
       c.content_hash, 1000, 44100, 2.0, 0.5, 0.1, 120.0, '[]'::jsonb, c.p, 'until-silent'
from silver.phrase_contents as c cross join unnest(%s::text[]) as v(patch_id)
"""


def _plan_seconds(conn: psycopg.Connection) -> tuple[float, list, int]:
    started = time.perf_counter()
    uncovered, looked = coverage.uncovered_partitions(conn, [PROFILE], PATCHES)
    conn.commit()
    return time.perf_counter() - started, uncovered, looked


def run() -> dict:
    old = int(os.environ.get("DX7LAKE_BENCH_CONTENTS", 500_000))
    new = int(os.environ.get("DX7LAKE_BENCH_NEW", 64))
    with temporary_warehouse() as url, psycopg.connect(url) as conn:
        create_silver_contents(conn)
        conn.execute(CONTENTS, ("yesterday", 1, old))
        conn.execute(RENDERS, (PATCHES,))
        conn.commit()
        conn.autocommit = True
        conn.execute("vacuum analyze silver.phrase_contents")
        conn.execute("vacuum analyze gold.renders")
        conn.autocommit = False
        _plan_seconds(conn)  # the plan before the run: sets the marks
        conn.execute(CONTENTS, ("now", old + 1, old + new))
        conn.commit()
        rerun_s, uncovered, looked = _plan_seconds(conn)
        assert looked == new * len(PATCHES) and uncovered, (looked, uncovered)
        conn.execute("delete from gold.render_coverage")
        conn.commit()
        full_s, everything, read = _plan_seconds(conn)
        assert everything == uncovered and read == (old + new) * len(PATCHES)
    return against_baseline(
        "render_plan",
        rerun_s,
        "every content (no coverage marks)",
        full_s,
        contents=old + new,
        new_contents=new,
        pairs_looked_at=looked,
    )
