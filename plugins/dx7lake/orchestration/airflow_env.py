"""Environment for Airflow processes that run the dx7lake DAG on a given home.

``make demo`` and ``make airflow`` both go through here, so the DAG run from the
terminal and the one triggered in the UI see the same lake, warehouse and settings.
"""

from __future__ import annotations

import os
import sys
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
