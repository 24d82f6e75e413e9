"""One configuration object: every variable read once, documented once, handed down."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
import yaml

from dx7lake.config import (
    DEFAULT_BPM,
    PHRASE_BEATS,
    VARIABLES,
    Settings,
    load_settings,
    settings_table,
)

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "plugins" / "dx7lake"
# Airflow and dbt glue that must touch the process environment: a child Airflow process's
# environment, and dbt's profiles.yml (it reads DX7LAKE_PG_* with env_var()).
# glue that Airflow or dbt calls, where no Settings object is at hand (celery_stack: the
# hostname callable Airflow runs in a worker to name it)
ENV_GLUE = {"config.py", "orchestration/airflow_env.py", "orchestration/celery_stack.py", "warehouse/transform.py"}


def test_the_readme_table_is_the_generated_one():
    readme = (REPO / "README.md").read_text()
    block = re.search(r"<!-- settings:start -->\n(.*?)<!-- settings:end -->", readme, re.S)
    assert block, "README.md lost its settings markers"
    assert block.group(1) == settings_table(), "run `dx7lake settings --markdown` and paste it into README.md"


def test_every_variable_sets_a_field_and_every_variable_the_code_names_is_listed():
    names = {f.name for f in dataclasses.fields(Settings)}
    assert all(v.field in names for v in VARIABLES)
    listed = {v.name for v in VARIABLES}
    named = set()
    for path in PACKAGE.rglob("*.py"):
        named |= set(re.findall(r"\b(?:DX7LAKE|METABASE)_[A-Z0-9_]*[A-Z0-9]\b", path.read_text()))
    glue = {"DX7LAKE_PG_HOST", "DX7LAKE_PG_PORT", "DX7LAKE_PG_USER", "DX7LAKE_PG_PASSWORD", "DX7LAKE_PG_DBNAME"}
    glue |= {"DX7LAKE_WORKER_NAME"}  # a worker process's own name, read by Airflow's hostname callable
    assert named - glue - {"DX7LAKE_WAREHOUSE"} <= listed


def test_only_the_configuration_module_reads_the_environment():
    readers = {
        str(path.relative_to(PACKAGE))
        for path in PACKAGE.rglob("*.py")
        if re.search(r"os\.environ|os\.getenv", path.read_text())
    }
    assert readers <= ENV_GLUE, readers - ENV_GLUE


def test_values_come_from_the_given_environment_and_options_win():
    env = {
        "DX7LAKE_HOME": "/tmp/h",
        "DX7LAKE_LAKE": "s3://b/p",
        "DX7LAKE_SPLIT": "1,0,0",
        "DX7LAKE_SYX": "/a:/b",
        "DX7LAKE_MAX_NOTES": "7",
        "DEMO_LIMIT": "all",
        "METABASE_URL": "",  # empty is unset
    }
    settings = load_settings(env=env, source="/landing")
    assert settings.home == Path("/tmp/h") and settings.lake_uri == "s3://b/p" and settings.source == "/landing"
    assert settings.split == (("train", 1.0), ("test", 0.0), ("validate", 0.0))
    assert settings.syx == ("/a", "/b") and settings.max_notes == 7 and settings.demo_limit is None
    assert settings.metabase_url is None
    assert load_settings("/tmp/other", env=env, lake_uri=None).home == Path("/tmp/other")
    assert load_settings("/tmp/other", env={}).lake_uri == "/tmp/other/lake"
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.home = Path("/")  # type: ignore[misc]
    with pytest.raises(TypeError, match="unknown"):
        load_settings(env={}, colour="red")


def test_secrets_stay_out_of_the_repr():
    settings = load_settings(env={"METABASE_PASSWORD": "hunter2", "DX7LAKE_PG_URL": "postgresql://u:pw@h/db"})
    assert settings.metabase_password == "hunter2"
    assert "hunter2" not in repr(settings) and "pw@" not in repr(settings)


def test_gold_renders_the_window_silver_cuts():
    """dbt owns the phrase rules; gold's phrase length and tempo default must be the same numbers."""
    dbt_vars = yaml.safe_load((REPO / "dbt" / "dbt_project.yml").read_text())["vars"]
    assert float(dbt_vars["beats_per_phrase"]) == PHRASE_BEATS
    assert float(dbt_vars["bpm"]) == DEFAULT_BPM


def test_the_cli_passes_options_instead_of_writing_the_environment(tmp_path, capsys, monkeypatch):
    import json
    import os

    from dx7lake.cli import main

    monkeypatch.delenv("DX7LAKE_LAKE", raising=False)
    before = dict(os.environ)
    assert main(["settings", "--home", str(tmp_path), "--lake", "s3://bucket/x"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["lake_uri"] == "s3://bucket/x" and out["home"] == str(tmp_path.resolve())
    assert dict(os.environ) == before


def test_failure_policy_settings_parse_durations_and_stage_timeouts():
    from datetime import timedelta

    env = {"DX7LAKE_TASK_TIMEOUTS": "render=90m, dbt=45", "DX7LAKE_RETRY_DELAY": "2m", "DX7LAKE_DAGRUN_TIMEOUT": "1d"}
    settings = load_settings(env=env)
    assert settings.task_timeout("render") == timedelta(minutes=90)
    assert settings.task_timeout("dbt") == timedelta(seconds=45)  # a bare number is seconds
    assert settings.task_timeout("extract") == timedelta(hours=2)  # not named: its default
    assert (settings.retry_delay, settings.dagrun_timeout) == (timedelta(minutes=2), timedelta(days=1))
    with pytest.raises(ValueError, match="unknown stage 'rendr'"):
        load_settings(env={"DX7LAKE_TASK_TIMEOUTS": "rendr=1h"})
    with pytest.raises(ValueError, match="positive"):
        load_settings(env={"DX7LAKE_DAGRUN_TIMEOUT": "0h"})
