"""The dbt project: where it lives, its profile environment, and running it.

Inside Airflow, Cosmos renders the project as a task group (see ``cosmos_dbt``); the CLI
and the tests run the very same project in-process through dbt's programmatic runner.
"""

from __future__ import annotations

import gc
import os
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlparse

from ..config import DEFAULT_DBT_PROJECT, Settings
from .postgres import warehouse_url


def manifest_path(project: Path = DEFAULT_DBT_PROJECT) -> Path:
    return project / "target" / "manifest.json"


def profile_env(url: str) -> dict[str, str]:
    """Variables read by ``dbt/profiles.yml`` for the warehouse at ``url``."""
    parsed = urlparse(url)
    query = parse_qs(parsed.query)
    return {
        "DX7LAKE_PG_HOST": query.get("host", [parsed.hostname or "localhost"])[0],
        "DX7LAKE_PG_PORT": str(parsed.port or 5432),
        "DX7LAKE_PG_USER": unquote(parsed.username or "postgres"),
        "DX7LAKE_PG_PASSWORD": unquote(parsed.password or ""),
        "DX7LAKE_PG_DBNAME": (parsed.path or "/postgres").lstrip("/") or "postgres",
    }


def invoke_dbt(args: list[str], url: str | None = None, settings: Settings | None = None):
    """Run a dbt command on the project in-process and return dbt's result, per-node
    statuses included (validation records each test's outcome).

    ``dbt/profiles.yml`` reads the connection from ``DX7LAKE_PG_*`` variables, so they are
    set in this process's environment: dbt glue, the one place the package writes it."""
    from dbt.cli.main import dbtRunner

    if url is None and settings is not None:
        url = warehouse_url(settings)
    os.environ.update(profile_env(url or "postgresql://postgres@localhost/postgres"))
    project = str(settings.dbt_project if settings else DEFAULT_DBT_PROJECT)
    try:
        return dbtRunner().invoke([*args, "--project-dir", project, "--profiles-dir", project])
    finally:
        # dbt's adapters hold multiprocessing locks (named semaphores) until collected: a task
        # process, which ends with os._exit, would leave them to the resource tracker's
        # "leaked semaphore" warning (as Cosmos' dbt runner does)
        from dbt.adapters.factory import reset_adapters

        reset_adapters()
        gc.collect()


def run_dbt(args: list[str], url: str | None = None, settings: Settings | None = None) -> None:
    """Run a dbt command on the project in-process; raises when dbt reports failure."""
    result = invoke_dbt(args, url, settings)
    if not result.success:
        raise RuntimeError(f"dbt {' '.join(args)} failed: {result.exception or 'see the dbt log above'}")


def parse_project(settings: Settings) -> Path:
    """Write ``target/manifest.json`` (no database needed) so Cosmos renders the DAG fast."""
    run_dbt(["parse", "--quiet"], url="postgresql://postgres@localhost/postgres", settings=settings)
    return manifest_path(settings.dbt_project)
