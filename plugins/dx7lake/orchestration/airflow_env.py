"""Environment for Airflow processes that run the dx7lake DAG on a given home, and its pools.

``make demo`` and ``make airflow`` both go through here, so the DAG run from the
terminal and the one triggered in the UI see the same lake, warehouse and settings.
The DAG's extract and render tasks run in Airflow pools (``Settings.pools``): a scheduler
never queues a task whose pool does not exist, so every place that migrates the metadata
DB creates them next (``ensure_pools``; compose's airflow-init runs ``dx7lake pools``).
``airflow dags test`` (the demo) runs tasks itself and ignores pools; it gets them anyway,
so a later ``make airflow`` on the same home finds them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from ..config import REPO_ROOT, Settings
from ..warehouse.postgres import airflow_env as warehouse_conn_env


def airflow_environment(settings: Settings) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "DX7LAKE_HOME": str(settings.home),
            "DX7LAKE_LAKE": settings.lake_uri,
            "DX7LAKE_SOURCE": settings.source,
            "AIRFLOW_HOME": str(settings.airflow_home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO_ROOT / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO_ROOT / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": env.get("AIRFLOW__LOGGING__LOGGING_LEVEL", "INFO"),
            "AIRFLOW__API__EXPOSE_CONFIG": "False",
            # no phoning home (and no network here): Cosmos and Scarf telemetry off
            "AIRFLOW__COSMOS__ENABLE_TELEMETRY": "False",
            "DO_NOT_TRACK": "1",
            "SCARF_ANALYTICS": "false",
            "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT / "plugins"), env.get("PYTHONPATH")])),
            # `airflow standalone` starts its components as `airflow ...` from PATH
            "PATH": os.pathsep.join(filter(None, [str(Path(sys.executable).parent), env.get("PATH")])),
        }
    )
    port = env.get("AIRFLOW__API__PORT")
    if port and "AIRFLOW__CORE__EXECUTION_API_SERVER_URL" not in env:
        # task supervisors reach the API server here; its default assumes port 8080
        env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] = f"http://localhost:{port}/execution/"
    if settings.pg_url:
        env["DX7LAKE_PG_URL"] = settings.pg_url
    env.update(warehouse_conn_env(settings))
    return env


def ensure_pools(settings: Settings, env: dict[str, str] | None = None) -> dict[str, int]:
    """Create or resize the DAG's pools in the metadata DB that ``env`` (default: this
    process's environment) points at, already migrated, with one ``airflow pools import``;
    returns their slots."""
    airflow = str(Path(sys.executable).with_name("airflow"))
    with tempfile.NamedTemporaryFile("w", suffix=".json", prefix="dx7lake-pools-") as fh:
        json.dump(settings.pools, fh)
        fh.flush()
        subprocess.run(
            [airflow, "pools", "import", fh.name],
            env=dict(os.environ) if env is None else env,
            check=True,
            stdout=subprocess.DEVNULL,
        )
    return {name: pool["slots"] for name, pool in settings.pools.items()}
