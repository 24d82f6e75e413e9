"""The dbt silver task group run by Airflow (dag.test, the real Cosmos tasks, a real Postgres).

Run 1 loads songs A and builds silver: every task succeeds, and silver holds A's phrases. Run 2
loads songs B with one note out of MIDI's velocity range: the raw source's test task fails on
it, no model reading raw notes runs (so silver holds no phrase of B), and the tests of the
other sources still run (``raw.bronze_parts`` is read by ``stg_loaded_files`` alone).
"""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from bench.synthetic import partitions, synthetic_notes
from dx7lake.warehouse import load as warehouse
from dx7lake.warehouse import schema

pytestmark = pytest.mark.e2e


# the task group alone in a DAG of its own (dag.test runs a DAG its dags folder holds)
DAG_FILE = """
import pendulum
from airflow.sdk import DAG

from dx7lake.config import load_settings
from dx7lake.orchestration.cosmos_dbt import dbt_task_group

with DAG("dx7lake_dbt_silver", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC")):
    dbt_task_group(load_settings())
"""


def _run_silver(dags: Path) -> dict[str, str]:
    """One run of the task group, task by task as `airflow dags test` runs it: {task id: state}."""
    from airflow.dag_processing.dagbag import DagBag

    run = DagBag(dag_folder=str(dags)).dags["dx7lake_dbt_silver"].test()
    return {ti.task_id: str(ti.state) for ti in run.get_task_instances()}


def _midi_ids(conn: psycopg.Connection, sql: str) -> set[int]:
    return {row[0] for row in conn.execute(sql)}


def test_a_failing_source_test_stops_every_model_reading_the_source(pg_url, airflow_db, tmp_path, monkeypatch):
    from dx7lake.config import load_settings
    from dx7lake.warehouse.postgres import airflow_env

    monkeypatch.setenv("DX7LAKE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("DX7LAKE_PG_URL", pg_url)
    settings = load_settings()
    for key, value in airflow_env(settings).items():
        monkeypatch.setenv(key, value)
    dags = tmp_path / "dags"
    dags.mkdir()
    (dags / "dbt_silver.py").write_text(DAG_FILE)
    monkeypatch.setenv("AIRFLOW__CORE__DAGS_FOLDER", str(dags))
    songs_a, songs_b = synthetic_notes(8, motifs=20), synthetic_notes(8, motifs=20, seed=1)
    with psycopg.connect(pg_url) as conn:
        schema.ensure_schema(conn)
        for p, table in partitions(songs_a).items():
            warehouse.load_bronze_part(conn, p, "part-a", table, "run-1")

    states = _run_silver(dags)
    assert len(states) == 20 and set(states.values()) == {"success"}, states
    with psycopg.connect(pg_url) as conn:
        assert _midi_ids(conn, "select distinct midi_id from silver.phrases") == set(
            songs_a.column("midi_id").to_pylist()
        )

    with psycopg.connect(pg_url) as conn:
        for p, table in partitions(songs_b).items():
            warehouse.load_bronze_part(conn, p, "part-b", table, "run-2")
        conn.execute(
            "update raw.detailed_notes set velocity = 0 where message_id ="
            " (select min(message_id) from raw.detailed_notes where midi_id = %s)",
            (songs_b.column("midi_id")[0].as_py(),),
        )

    states = _run_silver(dags)
    prefix = "dbt_silver."
    assert states[prefix + "raw_detailed_notes_source_test"] == "failed"
    assert states[prefix + "raw_bronze_parts_source_test"] == states[prefix + "ops_load_stats_source_test"] == "success"
    readers = {"stg_detailed_notes", "int_notes_bucketed", "int_phrases", "phrases", "phrase_contents", "track_summary"}
    assert {states[f"{prefix}{model}_model_build"] for model in readers} == {"upstream_failed"}
    with psycopg.connect(pg_url) as conn:
        assert not _midi_ids(conn, "select distinct midi_id from silver.phrases") & set(
            songs_b.column("midi_id").to_pylist()
        )
