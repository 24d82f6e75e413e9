"""Every stage the DAG retries is safe to retry: run twice in a row with the same run id, as
Airflow's retry runs it, a stage leaves the warehouse rows and the lake objects exactly as
its first run left them (no duplicates, nothing rewritten).

A small real lake: two Bach chorales, two real-world files (one of them drums only) and a
corrupt file, on the embedded Postgres, through the same ``dx7lake.stages`` functions the
DAG's tasks call, in the DAG's order. The reference each second run is compared with is the
state the first run left, read back from Postgres' catalog and the lake's bytes; each first
run must also have changed that state, so the comparison cannot pass on a stage that did
nothing. What a retry may change is only the timing of its own bookkeeping rows
(timestamps, seconds, throughput), which the snapshot leaves out, and the figures of the
render attempt that succeeded in ``ops.render_stats``: a retry after a finished attempt
renders nothing and reuses every object, which the test asserts instead. The Metabase task
(skipped without METABASE_URL) is proved idempotent in tests/test_metabase.py, against a
stand-in of its API: provisioning twice creates everything once.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest

from conftest import REPO, build_gold, build_silver

REALWORLD = Path(os.environ.get("DX7LAKE_REALWORLD_CORPUS", REPO.parent / "shared" / "corpus" / "realworld"))
REAL_FILES = ("mma__stdlib_gypsyjazz.mid", "mma__midi-inc_drum.mid")
PATCHES = "sine"
RUN = "manual__retried"
# what a retry legitimately changes: when and how fast its own bookkeeping row was written
TIMING_COLUMNS = {"seconds", "throughput", "real_time_factor"}
# a render retry's own figures (asserted separately): it rendered nothing, reused everything
ATTEMPT_FIGURES = {("ops", "render_stats"): {"rendered", "reused", "audio_seconds", "memo_hit_rate"}}


def warehouse_rows(pg_url: str) -> dict[str, list[str]]:
    """Every base table outside Postgres' own schemas, as sorted row texts, timing left out."""
    with psycopg.connect(pg_url) as conn:
        columns = conn.execute(
            """select c.table_schema, c.table_name, c.column_name, c.data_type
               from information_schema.columns c
               join information_schema.tables t using (table_schema, table_name)
               where t.table_type = 'BASE TABLE' and c.table_schema not in ('pg_catalog', 'information_schema')
               order by c.table_schema, c.table_name, c.ordinal_position"""
        ).fetchall()
        tables: dict[str, list[str]] = {}
        for schema, table, column, data_type in columns:
            skipped = TIMING_COLUMNS | ATTEMPT_FIGURES.get((schema, table), set())
            if not data_type.startswith("timestamp") and column not in skipped:
                tables.setdefault(f'"{schema}"."{table}"', []).append(f'"{column}"')
        return {
            name: sorted(repr(row) for row in conn.execute(f"select {', '.join(cols)} from {name}"))
            for name, cols in tables.items()
        }


def lake_objects(lake) -> dict[str, str]:
    return {key: hashlib.sha256(lake.get(key)).hexdigest() for key in lake.list("")}


@pytest.fixture
def small_lake(settings, chorales, tmp_path):
    from dataclasses import replace

    if not REALWORLD.is_dir():
        pytest.skip(f"the real-world corpus is not at {REALWORLD} (set DX7LAKE_REALWORLD_CORPUS)")
    landing = tmp_path / "landing"
    landing.mkdir()
    for path in sorted(chorales.rglob("*.mid"))[:2]:
        shutil.copy(path, landing / path.name)
    for name in REAL_FILES:
        shutil.copy(REALWORLD / name, landing / name)
    (landing / "corrupt.mid").write_bytes(b"MThd not really")
    return replace(settings, source=str(landing), task_retries=2)


def test_every_retried_stage_run_twice_leaves_the_same_rows_and_objects(small_lake):
    from dx7lake import stages
    from dx7lake.lake import lake_of
    from dx7lake.warehouse.transform import run_dbt

    settings = small_lake
    lake = lake_of(settings)
    retried: list[str] = []

    def twice(stage: str, fn: Callable[[], object], changes: bool = True):
        """Run ``fn`` as a task's first attempt and its retry; the retry must change nothing."""
        before = (warehouse_rows(settings.pg_url), lake_objects(lake))
        first = fn()
        after_first = (warehouse_rows(settings.pg_url), lake_objects(lake))
        fn()
        after_retry = (warehouse_rows(settings.pg_url), lake_objects(lake))
        if changes:
            assert after_first != before, f"{stage}: its first run wrote nothing, so the check would prove nothing"
        for name in sorted(set(after_first[0]) | set(after_retry[0])):
            assert after_retry[0].get(name) == after_first[0].get(name), f"{stage} retried changed {name}"
        assert after_retry[1] == after_first[1], f"{stage} retried changed the lake"
        retried.append(stage)
        return first  # what XCom holds: the attempt that succeeded first

    twice("start_run", lambda: stages.start_run(settings, RUN, {"patches": PATCHES}))
    shards = [twice(f"extract[{i}]", lambda i=i: stages.extract_shard(settings, None, i, 2)) for i in range(2)]
    extracted = twice("merge_extract", lambda: stages.record(settings, RUN, "extract", stages.merge_extract(shards)))
    assert (extracted["files_extracted"], extracted["files_quarantined"]) == (4, 1)
    loads = [
        twice(
            f"load[{p}]", lambda p=p: stages.record(settings, RUN, "load", stages.load_partition(settings, p, RUN), p)
        )
        for p in stages.bronze_partitions(settings)
    ]
    twice("dbt", lambda: run_dbt(["build", "--quiet"], settings=settings))
    plan = twice(
        "plan_render", lambda: stages.record(settings, RUN, "plan_render", stages.plan_render(settings, PATCHES))
    )
    assert plan["partitions"], "nothing to render: the render stage would go unchecked"
    renders = [
        twice(
            f"render[{p}]",
            lambda p=p: stages.record_render(settings, RUN, stages.render_partition(settings, p, PATCHES)),
        )
        for p in plan["partitions"]
    ]
    gold = twice(
        "load_renders", lambda: stages.record(settings, RUN, "load_renders", stages.load_renders(settings, RUN))
    )
    assert gold["renders"] == sum(r["rendered"] for r in renders) > 0
    with psycopg.connect(settings.pg_url) as conn:
        retries = conn.execute("select rendered, reused, phrases from ops.render_stats order by render_p").fetchall()
    assert retries == [(0, r["contents"], r["contents"]) for r in renders]
    checks = twice(
        "validate",
        lambda: stages.record(
            settings, RUN, "validate", stages.run_validation(settings, PATCHES, RUN, max_failures=50)
        ),
    )
    assert checks["passed"], checks["failures"]
    twice("analytics", lambda: stages.build_analytics(settings))
    results = {"extract": extracted, "load": loads, "plan": plan, "render": renders, "load_renders": gold}
    twice(
        "summary",
        lambda: stages.finish_run(
            settings, RUN, stages.write_summary(settings, results | {"validate": checks})["validation"] == "passed"
        ),
    )

    # no duplicates: one FLAC per gold row, one raw row per bronze note, one run row
    with psycopg.connect(settings.pg_url) as conn:
        flacs = [k for k in lake.list("gold/renders/") if k.endswith(".flac")]
        assert conn.execute("select count(*), count(distinct key) from gold.renders").fetchone() == (
            len(flacs),
            len(flacs),
        )
        raw = conn.execute("select count(*), count(distinct message_id) from raw.detailed_notes").fetchone()
        assert raw[0] == raw[1] == extracted["notes"]
        assert conn.execute("select status from ops.pipeline_runs").fetchall() == [("success",)]
    assert len(retried) == 10 + len(loads) + len(renders)


def test_a_render_task_streams_only_the_contents_gold_lacks(settings):
    """A partition's rerun reads its missing contents from silver, not the whole partition:
    three renders dropped from gold.renders (their objects and manifest rows stay) are the
    task's whole work, found rendered in the manifest and reused."""
    from dx7lake import stages

    build_silver(settings)
    build_gold(settings, "sine")
    with psycopg.connect(settings.pg_url) as conn:
        profile_id, p, size = conn.execute(
            "select profile_id, render_p, count(*) from gold.renders group by 1, 2 order by 3 desc limit 1"
        ).fetchone()
        dropped = conn.execute(
            """delete from gold.renders where content_hash in (
                   select content_hash from gold.renders where profile_id = %s and render_p = %s
                   order by content_hash limit 3)
               returning content_hash""",
            (profile_id, p),
        ).fetchall()
    assert len(dropped) == 3 and size > 3
    again = stages.render_partition(settings, (profile_id, p), "sine")
    assert (again["contents"], again["rendered"], again["reused"]) == (3, 0, 3)
