"""A real Airflow run of the whole DAG (dag.test) against the embedded Postgres.

It runs on an ``s3://`` lake on moto's server over HTTP, reached through the
``aws_default`` connection: the backend of every deployment (compose, AWS). Whole DAG
runs on a local-folder lake are test_e2e_failures' two, test_e2e_realworld's and the
fresh-machine demo in CI; each whole run costs minutes (the dbt chain), so this one is
not repeated on a local folder.
"""

from __future__ import annotations

import dataclasses
import io
import json

import psycopg
import pytest
import soundfile as sf

from conftest import REPO
from dx7lake.gold.engine import RenderSpec


@pytest.fixture
def settings(settings, s3_lake_uri):
    """conftest's ``settings``, with the lake on S3 (moto's server)."""
    return dataclasses.replace(settings, lake_uri=s3_lake_uri)


@pytest.mark.e2e
def test_dag_runs_end_to_end_and_reruns_idempotently(settings, airflow_db, monkeypatch):
    from airflow.dag_processing.dagbag import DagBag

    from dx7lake.gold.render import GOLD_MANIFESTS, GOLD_RENDERS
    from dx7lake.lake import open_lake
    from dx7lake.warehouse.postgres import airflow_env

    monkeypatch.setenv("DX7LAKE_LAKE", settings.lake_uri)
    for key, value in airflow_env(settings).items():
        monkeypatch.setenv(key, value)
    dag = DagBag(dag_folder=str(REPO / "dags")).dags["dx7lake"]

    run = dag.test(run_conf={"patches": "epiano,sine", "release": "e2e"})
    assert run.state == "success"
    states = {ti.task_id: ti.state for ti in run.get_task_instances()}
    assert states["release"] == "success"

    summary = json.loads(settings.summary_path.read_text())
    assert summary["files_seen"] == 6 and summary["files_extracted"] == 6
    assert summary["validation"] == "passed"
    assert summary["patches"] == 2
    assert summary["renders"] == 2 * summary["unique_phrases"] > 0
    assert 0 < summary["unique_phrases"] <= summary["phrases"]
    assert set(summary["seconds"]) >= {"extract", "load", "dbt", "render"}

    lake = open_lake(settings.lake_uri)
    flacs = [k for k in lake.list(GOLD_RENDERS + "/") if k.endswith(".flac")]
    manifests = [k for k in lake.list(GOLD_MANIFESTS + "/") if k.endswith(".parquet")]
    rows = sum(lake.read_parquet(k).num_rows for k in manifests)
    assert len(flacs) == rows == summary["renders"]

    with psycopg.connect(settings.pg_url) as conn:
        raw = conn.execute("select count(*) from raw.detailed_notes").fetchone()[0]
        gold = conn.execute("select count(*) from gold.renders").fetchone()[0]
        # the summary takes them from the incremental analytics marts: counted here in silver
        counted = conn.execute(
            "select (select count(*) from silver.phrases), (select count(*) from silver.phrase_contents)"
        ).fetchone()
    assert raw == summary["notes"] > 0
    assert counted == (summary["phrases"], summary["unique_phrases"])
    assert gold == summary["renders"]

    release = json.loads(lake.get("releases/e2e/release.json"))  # the release task, after validation
    assert release["examples"] == summary["renders"] and release["request"]["split_by"] == "song"

    info = sf.info(io.BytesIO(lake.get(flacs[0])))
    assert (info.samplerate, info.channels, info.subtype) == (22050, 1, "PCM_16")

    first_stats = _run_stats(settings.pg_url)
    # gold/manifests/<profile>/<patch>/p=NNNN/part-….parquet: the default profile, one part per patch
    assert {key.split("/")[2] for key in manifests} == {RenderSpec().profile_id}
    render_partitions = {key.split("/")[4] for key in manifests}
    assert len(manifests) == 2 * len(render_partitions)

    # a second run finds everything done: same rows, no new objects
    rerun = dag.test(run_conf={"patches": "epiano,sine", "release": "e2e"})
    assert rerun.state == "success"
    assert {ti.task_id: ti.state for ti in rerun.get_task_instances()}["release"] == "success"
    assert json.loads(lake.get("releases/e2e/release.json")) == release  # found finished, not rewritten
    again = json.loads(settings.summary_path.read_text())
    assert again["files_skipped"] == 6 and again["files_extracted"] == 0
    assert again["rendered_this_run"] == 0
    assert (again["notes"], again["renders"]) == (summary["notes"], summary["renders"])
    assert len([k for k in lake.list(GOLD_RENDERS + "/") if k.endswith(".flac")]) == len(flacs)
    assert [k for k in lake.list(GOLD_MANIFESTS + "/") if k.endswith(".parquet")] == manifests  # no new part

    # run statistics: each run records its own rows once; the rerun never touches the first's
    after_rerun = _run_stats(settings.pg_url)
    assert after_rerun["runs"] == {run.run_id: "success", rerun.run_id: "success"}
    for table in ("task_stats", "render_stats"):
        assert after_rerun[table][run.run_id] == first_stats[table][run.run_id], table
    assert first_stats["render_stats"][run.run_id] == len(render_partitions) > 0  # one row per rendered partition
    assert rerun.run_id not in after_rerun["render_stats"]  # the rerun's plan had nothing to render
    assert after_rerun["task_stats"][rerun.run_id] > 0
    assert sorted(after_rerun["checks"]) == sorted([(run.run_id, True), (rerun.run_id, True)])


def _run_stats(pg_url: str) -> dict:
    """Rows of the ops tables per run id."""
    with psycopg.connect(pg_url) as conn:
        return {
            "runs": dict(conn.execute("select run_id, status from ops.pipeline_runs").fetchall()),
            "task_stats": dict(conn.execute("select run_id, count(*) from ops.task_stats group by run_id").fetchall()),
            "render_stats": dict(
                conn.execute("select run_id, count(*) from ops.render_stats group by run_id").fetchall()
            ),
            "checks": conn.execute(
                "select run_id, bool_and(passed) from ops.validation_results group by run_id"
            ).fetchall(),
        }
