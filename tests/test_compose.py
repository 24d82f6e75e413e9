"""docker-compose.yml, checked statically (no Docker engine runs here).

Debian's ``docker-compose config`` validates the file against the compose schema and
interpolates a ``.env`` written by ``make env``; the rest are the stack's promises read
off the file: services, profiles, healthchecks, named volumes, secrets from .env only.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml

from conftest import REPO, require_tool

COMPOSE_FILE = REPO / "docker-compose.yml"
AIRFLOW_SERVICES = {"airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer"}
ONE_SHOT = {"airflow-init", "lake-init", "metabase-provision"}
SECRET = re.compile(r"PASSWORD|SECRET|FERNET|ENCRYPTION|_PASS$|REDISCLI_AUTH")

_spec = importlib.util.spec_from_file_location("make_env", REPO / "docker" / "make_env.py")
make_env = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(make_env)


def _compose(env_file: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    binary = require_tool("docker-compose", "docker-compose")
    cmd = [binary, "--env-file", str(env_file), "--project-directory", str(REPO), "-f", str(COMPOSE_FILE), *args]
    return subprocess.run(
        cmd, capture_output=True, text=True, check=False, env=None if env is None else os.environ | env
    )


@pytest.fixture(scope="module")
def env_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("compose") / ".env"
    subprocess.run([sys.executable, str(REPO / "docker" / "make_env.py"), "--file", str(path)], check=True)
    return path


@pytest.fixture(scope="module")
def config(env_file) -> dict:
    """The file as docker-compose resolves it: schema-checked, .env interpolated."""
    result = _compose(env_file, "config")
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


@pytest.fixture(scope="module")
def raw() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def test_schema_valid_with_the_generated_env(config):
    services = set(config["services"])
    assert services >= AIRFLOW_SERVICES | ONE_SHOT | {"postgres", "s3", "redis", "airflow-worker", "metabase"}


def test_without_env_nothing_resolves(tmp_path):
    empty = tmp_path / "empty.env"
    empty.write_text("")
    result = _compose(empty, "config")
    assert result.returncode != 0 and "run make env" in result.stderr


def test_every_variable_reference_is_required_or_a_non_secret_knob():
    """``${NAME:?...}`` everywhere, except the executor switch and the worker count: no literal default secret."""
    refs = re.findall(r"(?<!\$)\$\{([A-Z0-9_]+)(:?[-?][^}]*)?\}", COMPOSE_FILE.read_text())
    optional = {name for name, tail in refs if not tail.startswith(":?")}
    assert optional == {"AIRFLOW_EXECUTOR", "DX7LAKE_WORKERS"}


def test_no_secret_is_written_in_the_file(raw):
    for name, service in raw["services"].items():
        env = service.get("environment") or {}
        for key, value in env.items():
            if SECRET.search(key):
                assert str(value).startswith("${") and ":?" in str(value), (name, key)


def test_local_executor_by_default_and_a_celery_profile(config, env_file, raw):
    assert raw["services"]["airflow-worker"]["profiles"] == ["celery"]
    assert raw["services"]["redis"]["profiles"] == ["celery"]
    for name in AIRFLOW_SERVICES:
        assert config["services"][name]["environment"]["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
        assert "profiles" not in raw["services"][name]
    broker = urlparse(config["services"]["airflow-worker"]["environment"]["AIRFLOW__CELERY__BROKER_URL"])
    assert broker.hostname == "redis" and broker.password == make_env.read_env(env_file)["REDIS_PASSWORD"]
    assert "redis" in config["services"]["airflow-worker"]["depends_on"]


def test_one_fernet_key_and_jwt_secret_shared(config, env_file):
    env = make_env.read_env(env_file)
    airflow = AIRFLOW_SERVICES | {"airflow-worker", "airflow-init"}
    for name in airflow:
        service_env = config["services"][name]["environment"]
        assert service_env["AIRFLOW__CORE__FERNET_KEY"] == env["AIRFLOW_FERNET_KEY"]
        assert service_env["AIRFLOW__API_AUTH__JWT_SECRET"] == env["AIRFLOW_JWT_SECRET"]


def test_separate_databases_and_users(config):
    airflow_env = config["services"]["airflow-scheduler"]["environment"]
    metadata = urlparse(airflow_env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"])
    warehouse = urlparse(airflow_env["DX7LAKE_PG_URL"])
    conn = urlparse(airflow_env["AIRFLOW_CONN_DX7LAKE_WAREHOUSE"])
    metabase = config["services"]["metabase"]["environment"]
    assert (metadata.username, metadata.path) == ("airflow", "/airflow")
    assert (warehouse.username, warehouse.path) == (conn.username, conn.path) == ("warehouse", "/warehouse")
    assert metadata.password != warehouse.password
    assert metabase["MB_DB_HOST"] == "metabase-postgres" and metabase["MB_DB_USER"] == "metabase"
    assert metabase["MB_DB_PASS"] not in (metadata.password, warehouse.password)


def test_lake_on_the_stack_s3_store_through_aws_default(config, env_file):
    import json

    airflow_env = config["services"]["airflow-scheduler"]["environment"]
    assert airflow_env["DX7LAKE_LAKE"].startswith("s3://")
    conn = json.loads(airflow_env["AIRFLOW_CONN_AWS_DEFAULT"])
    assert conn["extra"]["endpoint_url"] == "http://s3:8333"
    s3_env = config["services"]["s3"]["environment"]
    assert (conn["login"], conn["password"]) == (s3_env["S3_ACCESS_KEY"], s3_env["S3_SECRET_KEY"])
    assert make_env.read_env(env_file)["COMPOSE_PROFILES"] == "local-s3"
    assert config["services"]["lake-init"]["entrypoint"][0] == "python"
    assert "ensure_bucket()" in config["services"]["lake-init"]["command"][0]


def test_healthchecks_dependencies_and_named_volumes(raw, config):
    for name, service in config["services"].items():
        if name not in ONE_SHOT:
            assert "healthcheck" in service, name
        for mount in service.get("volumes", []):
            source, _target, *mode = mount.split(":")
            if source.startswith("/"):  # a bind mount: only read-only config from docker/
                assert source.startswith(str(REPO / "docker")) and mode == ["ro"], (name, mount)
            else:
                assert source in raw["volumes"], (name, mount)
    for name in AIRFLOW_SERVICES:
        deps = config["services"][name]["depends_on"]
        assert deps["postgres"]["condition"] == "service_healthy"
        assert deps["airflow-init"]["condition"] == deps["lake-init"]["condition"] == "service_completed_successfully"
    provision = config["services"]["metabase-provision"]
    assert provision["entrypoint"] == ["dx7lake", "metabase", "provision"]
    assert provision["depends_on"]["metabase"]["condition"] == "service_healthy"


def test_images_pinned_and_the_airflow_image_official(raw):
    for name, service in raw["services"].items():
        image = service.get("image", "")
        if "build" not in service and "<<" not in service:
            assert re.search(r":[\w.-]+$|@sha256:[0-9a-f]{64}$", image) and not image.endswith(":latest"), name
    dockerfile = (REPO / "docker" / "airflow" / "Dockerfile").read_text()
    assert re.search(r"^FROM apache/airflow:\$\{AIRFLOW_VERSION\}-python\$\{PYTHON_VERSION\}$", dockerfile, re.M)
    assert re.search(r"^ARG AIRFLOW_VERSION=3\.", dockerfile, re.M)
    assert re.search(r"^ARG PYTHON_VERSION=3\.11$", dockerfile, re.M)
    assert ".env" in (REPO / ".dockerignore").read_text().split()


def test_make_env_generates_keeps_and_overrides(tmp_path):
    from cryptography.fernet import Fernet

    path = tmp_path / ".env"
    first = make_env.write_env(path)
    assert path.stat().st_mode & 0o777 == 0o600
    Fernet(first["AIRFLOW_FERNET_KEY"])  # a valid key
    secrets = [v for k, v in first.items() if SECRET.search(k)]
    assert len(set(secrets)) == len(secrets) and all(len(v) >= 32 for v in secrets)
    again = make_env.write_env(path, {"DX7LAKE_LAKE": "s3://prod-bucket/lake", "COMPOSE_PROFILES": ""})
    assert {k: v for k, v in again.items() if k not in ("DX7LAKE_LAKE", "COMPOSE_PROFILES")} == {
        k: v for k, v in first.items() if k not in ("DX7LAKE_LAKE", "COMPOSE_PROFILES")
    }
    assert make_env.read_env(path)["DX7LAKE_LAKE"] == "s3://prod-bucket/lake"
    assert make_env.read_env(path)["COMPOSE_PROFILES"] == ""
    assert make_env.write_env(tmp_path / "other.env")["POSTGRES_PASSWORD"] != first["POSTGRES_PASSWORD"]


def test_postgres_init_script_isolates_airflow_from_the_warehouse(pg_server):
    """The init script, run for real on the session's Postgres: each role reaches its database only."""
    import psycopg

    socket_dir = urlparse(pg_server.get_uri()).query.removeprefix("host=")
    env = {
        "PATH": f"{Path(psycopg.__file__).parents[1] / 'pgserver' / 'pginstall' / 'bin'}:/usr/bin:/bin",
        "PGHOST": socket_dir,
        "POSTGRES_USER": "postgres",
        "AIRFLOW_DB_PASSWORD": "a" * 32,
        "WAREHOUSE_DB_PASSWORD": "w" * 32,
    }
    script = REPO / "docker" / "postgres" / "init-databases.sh"
    try:
        result = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True, check=False)
        assert result.returncode == 0, result.stderr
        for role, own, other in (("airflow", "airflow", "warehouse"), ("warehouse", "warehouse", "airflow")):
            with psycopg.connect(host=socket_dir, user=role, dbname=own) as conn:
                assert conn.execute("select current_user").fetchone()[0] == role
            with pytest.raises(psycopg.OperationalError, match="permission denied"):
                psycopg.connect(host=socket_dir, user=role, dbname=other)
    finally:
        with psycopg.connect(pg_server.get_uri(), autocommit=True) as conn:
            for name in ("airflow", "warehouse"):
                conn.execute(f"drop database if exists {name}")
                conn.execute(f"drop role if exists {name}")


def test_make_targets():
    """The deploy targets exist; `up CELERY=1` switches the executor and adds the celery profile."""
    targets = ["env", "up", "down", "logs", "tf-init", "tf-plan", "tf-apply", "tf-destroy"]
    dry = subprocess.run(["make", "-n", "-C", str(REPO), *targets], capture_output=True, text=True)
    assert dry.returncode == 0, dry.stderr
    celery = subprocess.run(
        ["make", "-n", "-C", str(REPO), "up", "CELERY=1", "WORKERS=3"], capture_output=True, text=True
    )
    assert "AIRFLOW_EXECUTOR=CeleryExecutor" in celery.stdout and "--scale airflow-worker=3" in celery.stdout
    assert "DX7LAKE_WORKERS=3" in celery.stdout
    assert 'COMPOSE_PROFILES="${profiles:+$profiles,}celery"' in celery.stdout


@pytest.fixture(scope="module")
def celery_config(env_file) -> dict:
    """The file as ``make up CELERY=1`` resolves it: the celery profile, the CeleryExecutor."""
    result = _compose(env_file, "config", env={"COMPOSE_PROFILES": "celery", "AIRFLOW_EXECUTOR": "CeleryExecutor"})
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


def test_celery_profile_runs_what_the_celery_test_runs(celery_config):
    """Same commands, settings and wiring as dx7lake.orchestration.celery_stack, which
    tests/test_celery_workers.py starts as processes."""
    from dx7lake.orchestration import celery_stack

    services = celery_config["services"]
    for name, command in celery_stack.COMMANDS.items():
        compose_command = services[name]["command"]
        assert tuple(compose_command.split() if isinstance(compose_command, str) else compose_command) == command
        env = services[name]["environment"]
        assert {k: env.get(k) for k in celery_stack.CELERY_SETTINGS} == celery_stack.CELERY_SETTINGS, name
        assert not [k for k in celery_stack.WIRING if not env.get(k)], name
        # the test names its workers; a container's name is its hostname
        assert celery_stack.WORKER_NAME_VARIABLE not in env
    # the test's processes: the same airflow subcommands (local workers add only a Celery node name)
    processes = {p.name: p.args for p in celery_stack.control_plane({})}
    processes["airflow-worker"] = celery_stack.worker({}, "w").args
    for name, args in processes.items():
        assert args[: len(celery_stack.COMMANDS[name])] == celery_stack.COMMANDS[name]
    assert processes["airflow-worker"][2:] == ("--celery-hostname", "w@%h")
    assert services["airflow-worker"]["depends_on"]["redis"]["condition"] == "service_healthy"
    # airflow-init sizes the DAG's pools (`dx7lake pools`) once the metadata DB is migrated
    init = services["airflow-init"]
    assert init["command"] == ["/entrypoint airflow version && dx7lake pools"]
    assert init["environment"]["_AIRFLOW_DB_MIGRATE"] == "true" and init["environment"]["DX7LAKE_WORKERS"] == "1"


def test_the_image_installs_the_airflow_and_celery_provider_the_tests_ran():
    """The Dockerfile pins the versions installed here, and pyproject admits them."""
    from importlib.metadata import version

    from packaging.requirements import Requirement

    dockerfile = (REPO / "docker" / "airflow" / "Dockerfile").read_text()
    pins = dict(re.findall(r"^ARG ([A-Z_]+)=(\S+)$", dockerfile, re.M))
    assert pins["AIRFLOW_VERSION"] == version("apache-airflow")
    assert pins["CELERY_PROVIDER_VERSION"] == version("apache-airflow-providers-celery")
    assert '"apache-airflow-providers-celery==${CELERY_PROVIDER_VERSION}"' in dockerfile
    import tomllib

    dependencies = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    requirements = [Requirement(r) for r in dependencies]
    wanted = {r.name: r for r in requirements}
    for package in ("apache-airflow-providers-celery", "celery"):
        assert wanted[package].specifier.contains(version(package)), (package, version(package))
