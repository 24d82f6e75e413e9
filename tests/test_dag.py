"""The DAG file imports cleanly and has the shape the design asks for (its parse time is
measured by `make bench`, bench.dag_parse, not asserted here)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from conftest import REPO

PARSE = """
import json
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(dag_folder=%r)
print(json.dumps({"errors": {k: str(v) for k, v in bag.import_errors.items()}, "dags": sorted(bag.dags)}))
"""


def _parse() -> dict:
    out = subprocess.run(
        [sys.executable, "-c", PARSE % str(REPO / "dags")],
        capture_output=True,
        text=True,
        env=os.environ.copy(),
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_dag_imports_without_errors():
    """In a fresh interpreter, as the dag-processor parses it."""
    result = _parse()
    assert result["errors"] == {}
    assert result["dags"] == ["dx7lake"]


def test_dag_shape():
    from airflow.dag_processing.dagbag import DagBag

    dag = DagBag(dag_folder=str(REPO / "dags")).dags["dx7lake"]
    ids = set(dag.task_ids)
    assert {"extract", "load", "plan_render", "render", "load_renders", "validate", "summary"} <= ids
    assert any(t.startswith("dbt_silver.") for t in ids), "dbt runs as a Cosmos task group"
    # partitions are dynamically mapped
    from airflow.sdk.definitions.mappedoperator import MappedOperator

    assert isinstance(dag.get_task("render"), MappedOperator)
    assert isinstance(dag.get_task("load"), MappedOperator)
    # the DAG file holds wiring only: no dx7lake business module imported at parse time
    source = (REPO / "dags" / "dx7lake_pipeline.py").read_text()
    assert "from dx7lake import stages" in source and "\nfrom dx7lake import stages" not in source


def _silver_in_manifest() -> tuple[dict[str, set[str]], set[str], dict[str, set[str]]]:
    """Read from dbt's own manifest, not from Cosmos: the silver models with the silver nodes
    they read, the sources with data tests, and the tests spanning two models with those models
    (silver: every node outside models/analytics, which a later task builds)."""
    manifest = json.loads((REPO / "dbt" / "target" / "manifest.json").read_text())
    nodes = {**manifest["nodes"], **manifest["sources"]}
    silver = {k for k, n in nodes.items() if not n["original_file_path"].startswith("models/analytics/")}

    def name(key: str) -> str:
        node = nodes[key]
        return f"{node['source_name']}_{node['name']}" if node["resource_type"] == "source" else node["name"]

    def parents(key: str) -> set[str]:
        return {name(p) for p in nodes[key]["depends_on"]["nodes"] if p in silver}

    models = {name(k): parents(k) for k in silver if nodes[k]["resource_type"] == "model"}
    tests = [k for k in silver if nodes[k]["resource_type"] == "test"]
    tested_sources = {
        name(p) for k in tests for p in nodes[k]["depends_on"]["nodes"] if p.startswith("source.") and p in silver
    }
    two_model_tests = {name(k): parents(k) for k in tests if len(nodes[k]["depends_on"]["nodes"]) > 1}
    return models, tested_sources, two_model_tests


def test_dbt_runs_one_build_per_model_with_its_tests_and_source_tests_first():
    """One dbt invocation per model (``dbt build``: the model, then its tests), per tested
    source (its tests, before any model reads it) and per test spanning two models (once
    both are built); no ``dbt source freshness`` (the sources declare none)."""
    dag = _dag()
    models, sources, two_model_tests = _silver_in_manifest()
    task_of = {m: f"dbt_silver.{m}_model_build" for m in models}
    task_of |= {s: f"dbt_silver.{s}_source_test" for s in sources}
    tests_of = {t: f"dbt_silver.{t}_test" for t in two_model_tests}
    dbt_tasks = {t.task_id: t for t in dag.tasks if t.task_id.startswith("dbt_silver.")}
    assert set(dbt_tasks) == set(task_of.values()) | set(tests_of.values())
    assert len(dbt_tasks) == 20  # 12 models, 3 tested sources, 5 two-model tests (was 34 tasks)
    for model, reads in models.items():
        task = dbt_tasks[task_of[model]]
        assert task.base_cmd == ["build"] and task.select.startswith("fqn:") and task.select.endswith(f".{model}")
        assert task.upstream_task_ids >= {task_of[r] for r in reads}, model  # sources' tests first
        # its two-model tests are left to their own task, which waits for the other model too
        assert {t for t, between in two_model_tests.items() if model in between} <= set(task.exclude.split())
    for source in sources:
        task = dbt_tasks[task_of[source]]
        assert task.base_cmd == ["test"] and task.select.startswith("source:"), source
        assert {u for u in task.upstream_task_ids if u.startswith("dbt_silver.")} == set()
    for test, between in two_model_tests.items():
        assert dbt_tasks[tests_of[test]].upstream_task_ids == {task_of[m] for m in between}, test
    assert not [t for t in dbt_tasks.values() if "freshness" in t.base_cmd]
    # the run publishes silver only once every dbt task succeeded
    assert set(dag.get_task("plan_render").upstream_task_ids) <= set(dbt_tasks)
    leaves = {t for t, task in dbt_tasks.items() if not task.downstream_task_ids - {"plan_render"}}
    assert leaves <= set(dag.get_task("plan_render").upstream_task_ids)


# Tasks that must not retry, with the reason; every other task retries (docs/ARCHITECTURE.md,
# Guarantees: every stage is idempotent, tests/test_idempotency.py proves it per stage).
NOT_RETRIED: dict[str, str] = {}


def _dag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(REPO / "dags")).dags["dx7lake"]


def test_every_task_retries_with_backoff_and_has_its_stage_timeout():
    from dx7lake.config import EXTRACT_POOL, RENDER_POOL, load_settings

    settings, dag = load_settings(env={}), _dag()
    assert dag.dagrun_timeout == settings.dagrun_timeout and dag.on_failure_callback
    stage_of = {"extract": "extract", "load": "load", "loaded": "load", "render": "render", "validate": "validate"}
    stage_of |= {"plan_render": "plan_render", "load_renders": "load_renders", "analytics": "analytics"}
    stage_of |= {"metabase": "metabase", "release": "release"}
    for task in dag.tasks:
        if task.task_id in NOT_RETRIED:
            assert task.retries == 0, task.task_id
        else:
            assert task.retries == settings.task_retries > 0, task.task_id
            assert task.retry_exponential_backoff > 1 and task.max_retry_delay == settings.max_retry_delay
            assert task.retry_delay == settings.retry_delay
        stage = "dbt" if task.task_id.startswith("dbt_silver.") else stage_of.get(task.task_id, "other")
        assert task.execution_timeout == settings.task_timeout(stage), task.task_id
        assert task.on_failure_callback, task.task_id
    # the heavy stages spread over workers through pools, not a per-DAG cap of one
    assert (dag.get_task("render").pool, dag.get_task("extract").pool) == (RENDER_POOL, EXTRACT_POOL)
    assert dag.get_task("render").max_active_tis_per_dag is None
    # gold is published once, by the task that fails the run unless validation passed
    publishers = {t.task_id for t in dag.tasks for o in t.outlets if o.name == "dx7lake_gold"}
    assert publishers == {"summary"}


def test_the_failure_policy_follows_the_environment_the_dag_is_parsed_in():
    parse = PARSE.replace(
        'print(json.dumps({"errors"',
        'd = bag.dags["dx7lake"]; r = d.get_task("render"); b = d.get_task("dbt_silver.phrases_model_build")\n'
        'print(json.dumps({"render": r.execution_timeout.total_seconds(), "retries": r.retries,'
        ' "run": d.dagrun_timeout.total_seconds(), "dbt": b.execution_timeout.total_seconds(),'
        ' "tasks": d.max_active_tasks}))\n'
        'print(json.dumps({"errors"',
    )
    env = os.environ | {
        "DX7LAKE_TASK_TIMEOUTS": "render=5m,dbt=90s",
        "DX7LAKE_TASK_RETRIES": "4",
        "DX7LAKE_DAGRUN_TIMEOUT": "3h",
        "DX7LAKE_WORKERS": "6",  # extract pool: 6 × 4 slots, more than Airflow's 16 per DAG
    }
    out = subprocess.run([sys.executable, "-c", parse % str(REPO / "dags")], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-2]) == {
        "render": 300,
        "retries": 4,
        "run": 10800,
        "dbt": 90,
        "tasks": 24,
    }


def test_pools_are_created_with_slots_from_settings(airflow_db):
    """As `dx7lake demo`, `dx7lake airflow` and compose's airflow-init create them; read back
    through Airflow's own CLI."""
    from dx7lake.config import load_settings
    from dx7lake.orchestration.airflow_env import ensure_pools

    env = {"DX7LAKE_WORKERS": "3", "DX7LAKE_RENDER_TASKS_PER_WORKER": "2"}
    assert ensure_pools(load_settings(env=env)) == {"dx7lake_render": 6, "dx7lake_extract": 12}
    airflow = os.path.join(os.path.dirname(sys.executable), "airflow")
    listed = subprocess.run([airflow, "pools", "list", "-o", "json"], capture_output=True, text=True, check=True)
    slots = {p["pool"]: int(p["slots"]) for p in json.loads(listed.stdout)}
    assert (slots["dx7lake_render"], slots["dx7lake_extract"]) == (6, 12)


def test_release_task_follows_validation_and_publishes_its_asset():
    dag = _dag()
    task = dag.get_task("release")
    assert [a.name for a in task.outlets] == ["dx7lake_release"]
    assert {"validate", "analytics"} <= task.upstream_task_ids
    assert dag.params["release"] is None and dag.params["release_split"] == "song"
