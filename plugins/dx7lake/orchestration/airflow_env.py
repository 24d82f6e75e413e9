"""Environment for Airflow processes that run the dx7lake DAG on a given home, and its pools.

``make demo`` and ``make airflow`` both go through here, so the DAG run from the
terminal and the one triggered in the UI see the same lake, warehouse and settings.
The DAG's extract and render tasks run in Airflow pools (``Settings.pools``): a scheduler
never queues a task whose pool does not exist, so every place that migrates the metadata
DB creates them next (``ensure_pools``; compose's airflow-init runs ``dx7lake pools``).
``airflow dags test`` (the demo) queues tasks without looking at pools; it gets them anyway,
so a later ``make airflow`` on the same home finds them.

On the embedded default the metadata DB is a database of the embedded Postgres (not SQLite),
so that several task processes may run at once: the demo runs ``airflow dags test
--use-executor`` with a LocalExecutor of one slot per core (``local_executor_env``) and an
execution API server of its own (``execution_api``), and ``make airflow``'s scheduler runs
the same LocalExecutor on the same database.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..config import REPO_ROOT, Settings
from ..warehouse.postgres import airflow_env as warehouse_conn_env
from ..warehouse.postgres import embedded_database_url

METADATA_DATABASE = "airflow"


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
    elif "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN" not in env:
        url = embedded_database_url(settings, METADATA_DATABASE)
        env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = url.replace("postgresql://", "postgresql+psycopg2://", 1)
    env.update(warehouse_conn_env(settings))
    return env


def runs_tasks_in_parallel(env: dict[str, str]) -> bool:
    """Whether the metadata DB of ``env`` takes several task processes at once (SQLite does not)."""
    return not env.get("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "sqlite").startswith("sqlite")


def local_executor_env(slots: int, api_port: int) -> dict[str, str]:
    """A LocalExecutor of ``slots`` task processes whose supervisors reach the execution API
    on ``api_port``, with a JWT secret of this run shared by the executor and that server."""
    return {
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": str(slots),
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{api_port}/execution/",
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(32),
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def execution_api(env: dict[str, str], port: int, log_path: Path, timeout: float = 180) -> Iterator[None]:
    """An ``airflow api-server`` serving only the execution API (what task supervisors talk to)
    on 127.0.0.1:``port`` for the block; it is stopped at the end, whatever happens."""
    airflow = str(Path(sys.executable).with_name("airflow"))
    cmd = [airflow, "api-server", "--apps", "execution", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    with open(log_path, "w") as log_file:
        proc = subprocess.Popen(cmd, env=env, stdout=log_file, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"the execution API server exited with {proc.returncode}; see {log_path}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/execution/health", timeout=2):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"the execution API server did not answer in {timeout:.0f}s; see {log_path}"
                    ) from None
                time.sleep(0.5)
        yield
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


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
