"""Shared fixtures: a real embedded Postgres, real MIDI from music21, an isolated Airflow.

Airflow reads its configuration when first imported, so its environment is set here,
before any test module imports it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
_AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="dx7lake-airflow-"))
os.environ.update(
    {
        "AIRFLOW_HOME": str(_AIRFLOW_HOME),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__COSMOS__ENABLE_TELEMETRY": "False",
        "DO_NOT_TRACK": "1",
        "SCARF_ANALYTICS": "false",
    }
)
for var in ("DX7LAKE_HOME", "DX7LAKE_LAKE", "DX7LAKE_PG_URL", "DX7LAKE_SOURCE"):
    os.environ.pop(var, None)


def in_ci() -> bool:
    """CI sets ``CI=true``: there, a test that cannot run is a failure, never a skip."""
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def require_tool(name: str, debian_package: str | None) -> str:
    """The path of the command ``name``; without it, skip locally and fail under CI.

    ``debian_package`` names what installs it (``.ci/run`` does); None for a tool that no
    Debian package provides, whose message then says so.
    """
    path = shutil.which(name)
    if path is not None:
        return path
    how = f"apt-get install {debian_package}" if debian_package else "no Debian package provides it"
    message = f"{name} is not installed ({how}; .ci/run installs what it can)"
    if in_ci():
        pytest.fail(f"CI=true and a needed tool is missing: {message}", pytrace=False)
    pytest.skip(message)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """Under CI, any skip (a skipif marker, a ``pytest.skip`` outside ``require_tool``) fails
    the test: a green CI run then means every test ran."""
    report = yield
    if in_ci() and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"skipped under CI=true, which runs every test: {reason}"
    return report


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory):
    """One embedded Postgres (pgserver) for the whole session, deleted at the end."""
    import pgserver

    server = pgserver.get_server(tmp_path_factory.mktemp("pg") / "data", cleanup_mode="delete")
    yield server
    server.cleanup()


def new_database(pg_server, prefix: str = "t") -> str:
    """URL of a fresh database on the session server, so tests never see each other's rows."""
    import psycopg

    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_server.get_uri(), autocommit=True) as conn:
        conn.execute(f"create database {name}")
    return pg_server.get_uri(name)


def build_silver(settings, run_id: str = "test", dbt_args: tuple[str, ...] = ("build", "--quiet")) -> None:
    """The stages up to silver, as the DAG runs them: extract, load every partition, dbt."""
    from dx7lake import stages
    from dx7lake.warehouse.transform import run_dbt

    stages.extract(settings)
    for p in stages.bronze_partitions(settings):
        stages.load_partition(settings, p, run_id)
    run_dbt(list(dbt_args), settings=settings)  # raises unless every dbt test passes


def build_gold(settings, patches: str, profiles: list[str] | None = None, partitions: int | None = None) -> None:
    """Render every pending partition (the first ``partitions`` of them, when given) with
    ``patches`` in ``profiles`` (the default profile when None) and load the manifests."""
    from dx7lake import stages

    for p in stages.plan_render(settings, patches, profiles)["partitions"][:partitions]:
        stages.render_partition(settings, p, patches)
    stages.load_renders(settings)


@pytest.fixture
def pg_url(pg_server) -> str:
    return new_database(pg_server)


@pytest.fixture(scope="session")
def chorales(tmp_path_factory) -> Path:
    """Six real Bach chorales written out as MIDI by music21."""
    from dx7lake.bronze.corpus import write_demo_corpus

    landing = tmp_path_factory.mktemp("landing")
    result = write_demo_corpus(landing, limit=6)
    assert result["written"] == 6
    return landing


@pytest.fixture
def settings(tmp_path, pg_url, chorales, monkeypatch):
    """Settings for a run in a temporary home against a fresh database."""
    from dx7lake.config import load_settings

    monkeypatch.setenv("DX7LAKE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("DX7LAKE_PG_URL", pg_url)
    monkeypatch.setenv("DX7LAKE_SOURCE", str(chorales))
    return load_settings()


@pytest.fixture(scope="session")
def airflow_db():
    """Airflow's metadata DB (SQLite) in the session's AIRFLOW_HOME."""
    airflow = Path(sys.executable).with_name("airflow")
    subprocess.run([str(airflow), "db", "migrate"], check=True, capture_output=True, env=os.environ.copy())
    return _AIRFLOW_HOME


@pytest.fixture(scope="session")
def rendered_home(tmp_path_factory, pg_server, chorales):
    """A finished run (bronze to gold, epiano and bell) on two chorales, shared read-only."""
    import shutil

    from dx7lake.config import Settings

    home = tmp_path_factory.mktemp("rendered")
    landing = home / "landing"
    landing.mkdir()
    for path in sorted(chorales.rglob("*.mid"))[:2]:
        shutil.copy(path, landing / path.name)
    settings = Settings(
        home=home, lake_uri=str(home / "lake"), source=str(landing), pg_url=new_database(pg_server, "rendered")
    )
    build_silver(settings, "rendered")
    build_gold(settings, "epiano,bell")
    return settings


@pytest.fixture
def chromium():
    """Headless Debian Chromium (a profile of its own, deleted after), driven over DevTools."""
    from chromium_devtools import DevTools, start_process

    profile = tempfile.mkdtemp(prefix="dx7lake-chromium-")
    cmd = [
        require_tool("chromium", "chromium"),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-default-apps",
        "--no-first-run",
        "--mute-audio",
        f"--user-data-dir={profile}",
        "--remote-debugging-port=0",
        "about:blank",
    ]
    proc, ws_url = start_process(cmd, r"DevTools listening on (ws://\S+)", "stderr")
    devtools = DevTools(ws_url)
    yield devtools
    devtools.close()
    proc.terminate()
    proc.wait(timeout=10)
    shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture(scope="session")
def moto_s3():
    """A real S3 protocol endpoint: moto's server mode over HTTP on loopback.

    Yields its URL; tests reach it through an ``aws_default`` connection whose extra sets
    ``endpoint_url``, as the docker-compose stack reaches its S3-compatible store.
    """
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3_lake_uri(moto_s3, monkeypatch) -> str:
    """``s3://<fresh bucket>/lake`` on the moto server, with ``aws_default`` pointing at it."""
    import json

    from dx7lake.lake import s3_client

    conn = {
        "conn_type": "aws",
        "login": "testing",
        "password": "testing",
        "extra": {"endpoint_url": moto_s3, "region_name": "us-east-1"},
    }
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", json.dumps(conn))
    bucket = f"dx7lake-{uuid.uuid4().hex[:12]}"
    s3_client().create_bucket(Bucket=bucket)
    return f"s3://{bucket}/lake"


@pytest.fixture
def s3_env(moto_s3, monkeypatch) -> str:
    """The moto endpoint as plain AWS environment (no Airflow connection): boto3's own chain."""
    for key, value in {
        "AWS_ENDPOINT_URL": moto_s3,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(key, value)
    return moto_s3
