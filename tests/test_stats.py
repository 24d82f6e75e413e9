"""Run statistics in ops.*: one set of rows per run, retries replace, reruns add."""

from __future__ import annotations

from types import SimpleNamespace

import psycopg
import pytest

from dx7lake import stages
from dx7lake.warehouse import stats


def _run(settings, run_id: str, passed: bool = True) -> None:
    """The recording calls a DAG run makes, with the stage results it would pass."""
    stages.start_run(settings, run_id, {"patches": "sine", "bpm": 120.0})
    stages.record(settings, run_id, "extract", {"notes": 1200, "seconds": 2.0})
    for p, rows in (("a", 300), ("b", 900)):
        stages.record(settings, run_id, "load", {"rows": rows, "seconds": 0.5}, p)
    stages.record(settings, run_id, "load", {"rows": 300, "seconds": 0.25}, "a")  # a retried task
    render = {"render_p": 3, "contents": 40, "rendered": 40, "reused": 0, "seconds": 5.0, "memo_hit_rate": 0.5}
    stages.record_render(settings, run_id, {**render, "profile_id": "0123456789ab", "phrase_seconds": 2.5})
    stages.finish_run(settings, run_id, passed)


def _rows(settings, sql: str, params: tuple = ()) -> list[tuple]:
    with psycopg.connect(settings.pg_url) as conn:
        return conn.execute(sql, params).fetchall()


def test_stats_rows_are_written_once_per_run_and_a_rerun_adds_a_new_run(settings):
    _run(settings, "run-1")
    first = _rows(settings, "select * from ops.task_stats where run_id = 'run-1' order by stage, partition")
    assert [(r[1], r[2], r[3]) for r in first] == [
        ("extract", "", 1200),
        ("load", "a", 300),
        ("load", "b", 900),
        ("render", "0123456789ab/3", 40),  # (profile, partition)
    ]
    assert _rows(settings, "select throughput from ops.task_stats where stage = 'load' and partition = 'a'") == [
        (1200.0,)
    ], "the retry replaced the first attempt's figures"
    ((phrases, audio, rtf, memo),) = _rows(
        settings, "select phrases, audio_seconds, real_time_factor, memo_hit_rate from ops.render_stats"
    )
    assert (phrases, audio, memo) == (40, 40 * 2.5, 0.5)  # 4 beats at 120 BPM + 0.5 s tail
    assert rtf == pytest.approx(5.0 / 100.0)

    _run(settings, "run-2", passed=False)
    assert _rows(settings, "select * from ops.task_stats where run_id = 'run-1' order by stage, partition") == first
    assert _rows(settings, "select run_id, count(*) from ops.task_stats group by run_id order by 1") == [
        ("run-1", 4),
        ("run-2", 4),
    ]
    assert _rows(settings, "select run_id, count(*) from ops.render_stats group by run_id order by 1") == [
        ("run-1", 1),
        ("run-2", 1),
    ]
    runs = _rows(
        settings, "select run_id, status, params ->> 'patches', finished_at >= started_at from ops.pipeline_runs"
    )
    assert sorted(runs) == [("run-1", "success", "sine", True), ("run-2", "failed", "sine", True)]


def test_a_failed_task_marks_its_run_failed(settings):
    stages.start_run(settings, "run-x", {})
    # the part of Airflow's callback context it reads (a real run's callback: tests/test_e2e_failures.py)
    context = {"run_id": "run-x", "ti": SimpleNamespace(task_id="render"), "exception": RuntimeError("boom")}
    stats.mark_run_failed(context)
    stats.mark_run_failed(context | {"ti": SimpleNamespace(task_id="summary")})
    assert _rows(settings, "select status, finished_at is not null, reason from ops.pipeline_runs") == [
        ("failed", True, "render: boom")  # the first failure's reason is kept
    ]
    stages.start_run(settings, "run-x", {})  # a retried run starts clean
    assert _rows(settings, "select status, reason from ops.pipeline_runs") == [("running", None)]


def test_a_timed_out_run_is_marked_failed_by_the_dags_own_callback(settings):
    """The DAG's on_failure_callback with the context Airflow gives a DAG callback when
    ``dagrun_timeout`` passes (``reason`` timed_out, the still-running task as ``ti``): no task
    callback runs then, so this is the only record of why the run failed."""
    from airflow.dag_processing.dagbag import DagBag

    from conftest import REPO

    dag = DagBag(dag_folder=str(REPO / "dags")).dags["dx7lake"]
    stages.start_run(settings, "run-t", {})
    ti = SimpleNamespace(task_id="render", map_index=3)
    dag.on_failure_callback({"run_id": "run-t", "reason": "timed_out", "dag": dag, "ti": ti})
    ((status, reason),) = _rows(settings, "select status, reason from ops.pipeline_runs")
    assert status == "failed"
    assert reason == f"run timed out: still running after dagrun_timeout {dag.dagrun_timeout} (in render[3])"
    stages.start_run(settings, "run-u", {})
    dag.on_failure_callback({"run_id": "run-u", "reason": "task_failure", "dag": dag, "ti": ti})
    assert _rows(settings, "select reason from ops.pipeline_runs where run_id = 'run-u'") == [
        ("run failed (task_failure), last failed task render[3]",)
    ]


def test_validation_results_replace_the_runs_own_rows(settings):
    stages.start_run(settings, "run-v", {})
    checks = [{"check": "audio", "checked": 10, "failed": 1, "seconds": 0.1}]
    failures = [
        {"check": "audio", "key": "gold/renders/p/aa/aa.flac", "reason": "silent"},
        {"check": "audio", "key": "gold/renders/p/aa/aa.flac", "reason": "clipped"},
    ]
    with psycopg.connect(settings.pg_url) as conn:
        for _ in range(2):
            stats.record_validation(conn, "run-v", checks, failures)
    assert _rows(settings, "select check_name, checked, failed, passed from ops.validation_results") == [
        ("audio", 10, 1, False)
    ]
    assert _rows(settings, "select key, reason from ops.validation_failures") == [
        ("gold/renders/p/aa/aa.flac", "silent; clipped")
    ]
