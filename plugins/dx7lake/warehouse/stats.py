"""Run statistics in ``ops.*``: what Metabase's run-health dashboard reads.

Every row is keyed by the Airflow run id (plus stage and partition), and written with an
upsert: a retried task replaces its own row, a rerun of the DAG is a new run id and adds
new rows, so no run's figures are ever counted twice. ``ops.load_stats`` belongs to the
raw load (``load``) and is only read here. Every table is created by ``schema``.
"""

from __future__ import annotations

import json

import psycopg

# The field of each stage's result that counts its rows, for ops.task_stats.
ROWS_FIELD = {
    "extract": "notes",
    "load": "rows",
    "plan_render": "contents_looked_at",
    "render": "contents",
    "load_renders": "renders",
    "validate": "checked",
}


def start_run(conn: psycopg.Connection, run_id: str, params: dict) -> None:
    """Open the run's row; a retried first task keeps the original start time."""
    with conn.transaction():
        conn.execute(
            """insert into ops.pipeline_runs (run_id, params, status) values (%s, %s, 'running')
               on conflict (run_id) do update set params = excluded.params, status = 'running',
               finished_at = null, reason = null""",
            (run_id, json.dumps(params, default=str)),
        )


def finish_run(conn: psycopg.Connection, run_id: str, status: str, reason: str | None = None) -> None:
    """Close the run; the first failure's reason is kept (a later failing task adds none)."""
    with conn.transaction():
        conn.execute(
            """insert into ops.pipeline_runs (run_id, status, finished_at, reason) values (%s, %s, now(), %s)
               on conflict (run_id) do update set status = excluded.status, finished_at = excluded.finished_at,
               reason = coalesce(ops.pipeline_runs.reason, excluded.reason)""",
            (run_id, status, reason),
        )


def record_task(conn: psycopg.Connection, run_id: str, stage: str, result: dict, partition: str | int = "") -> None:
    """One row of ``ops.task_stats`` from a stage's result (its rows field and seconds)."""
    rows = int(result.get(ROWS_FIELD[stage], 0))
    seconds = float(result.get("seconds", 0.0))
    with conn.transaction():
        conn.execute(
            """insert into ops.task_stats (run_id, stage, partition, rows, seconds, throughput)
               values (%s, %s, %s, %s, %s, %s)
               on conflict (run_id, stage, partition) do update set rows = excluded.rows,
               seconds = excluded.seconds, throughput = excluded.throughput, recorded_at = now()""",
            (run_id, stage, str(partition), rows, seconds, rows / seconds if seconds > 0 else None),
        )


def record_render(conn: psycopg.Connection, run_id: str, result: dict, phrase_seconds: float) -> None:
    """One row of ``ops.render_stats``: the real-time factor is wall seconds per second of
    audio rendered (below 1 is faster than real time)."""
    audio = result["rendered"] * phrase_seconds
    with conn.transaction():
        conn.execute(
            """insert into ops.render_stats (run_id, profile_id, render_p, phrases, rendered, reused, seconds,
                   audio_seconds, real_time_factor, memo_hit_rate)
               values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
               on conflict (run_id, profile_id, render_p) do update set phrases = excluded.phrases,
               rendered = excluded.rendered, reused = excluded.reused, seconds = excluded.seconds,
               audio_seconds = excluded.audio_seconds, real_time_factor = excluded.real_time_factor,
               memo_hit_rate = excluded.memo_hit_rate, recorded_at = now()""",
            (
                run_id,
                result["profile_id"],
                int(result["render_p"]),
                int(result["contents"]),
                int(result["rendered"]),
                int(result["reused"]),
                float(result["seconds"]),
                audio,
                result["seconds"] / audio if audio else None,
                float(result["memo_hit_rate"]),
            ),
        )
    record_task(conn, run_id, "render", result, f"{result['profile_id']}/{result['render_p']}")


def record_validation(conn: psycopg.Connection, run_id: str, checks: list[dict], failures: list[dict]) -> None:
    """Replace the run's validation results and failing keys in one transaction."""
    with conn.transaction():
        conn.execute("delete from ops.validation_failures where run_id = %s", (run_id,))
        conn.execute("delete from ops.validation_results where run_id = %s", (run_id,))
        with conn.cursor() as cur:
            cur.executemany(
                """insert into ops.validation_results (run_id, check_name, checked, failed, passed, seconds)
                   values (%s, %s, %s, %s, %s, %s)""",
                [(run_id, c["check"], c["checked"], c["failed"], c["failed"] == 0, c["seconds"]) for c in checks],
            )
            cur.executemany(
                """insert into ops.validation_failures (run_id, check_name, key, reason) values (%s, %s, %s, %s)
                   on conflict (run_id, check_name, key) do update
                   set reason = ops.validation_failures.reason || '; ' || excluded.reason""",
                [(run_id, f["check"], f["key"], f["reason"]) for f in failures],
            )


def failure_reason(context) -> str:
    """What ``ops.pipeline_runs.reason`` says about a failure, from an Airflow callback's context.

    A task's callback (its retries spent) names the task and its error. The DAG's callback
    has a ``reason`` from Airflow: ``timed_out`` when ``dagrun_timeout`` passed (no task
    callback runs then: the unfinished tasks are skipped), else how the run ended, with the
    task Airflow names (the last to fail, or the one still running at the timeout).
    """
    ti = context.get("ti")
    task = ""
    if ti is not None:
        index = getattr(ti, "map_index", -1)
        task = f"{ti.task_id}[{index}]" if index is not None and index >= 0 else ti.task_id
    reason = context.get("reason")
    if reason is None:
        return f"{task}: {context.get('exception')}"[:2000]
    if reason == "timed_out":
        timeout = getattr(context.get("dag"), "dagrun_timeout", None)
        return f"run timed out: still running after dagrun_timeout {timeout}" + (f" (in {task})" if task else "")
    return f"run failed ({reason})" + (f", last failed task {task}" if task else "")


def mark_run_failed(context) -> None:
    """Airflow failure callback of every task and of the DAG: a run that dies in any task, or
    times out, ends ``failed`` here too, with the first reason kept (``failure_reason``)."""
    from ..config import load_settings
    from .postgres import connect

    with connect(load_settings()) as conn:
        finish_run(conn, context["run_id"], "failed", failure_reason(context))
