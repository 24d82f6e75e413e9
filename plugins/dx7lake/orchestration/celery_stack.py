"""The Airflow processes of a Celery deployment: which command each runs, with which settings.

One definition for two places that must agree: the compose file's ``celery`` profile
(``make up CELERY=1 WORKERS=3``) runs these commands as containers, and
``tests/test_celery_workers.py`` runs them as local processes against the embedded Postgres,
a Redis and an S3 endpoint; ``tests/test_compose.py`` checks the compose file against this
module (commands, settings, the wiring every process needs). Settings the two deployments
share are in ``CELERY_SETTINGS``; ``WIRING`` names what each deployment points at its own
services (its database, broker, secrets and API server).

A worker's name (``DX7LAKE_WORKER_NAME``) becomes the hostname Airflow records on the task
instances it runs (``worker_hostname``), so a run shows which machine ran what; unset, it is
the host's name, as Airflow's default.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass

WORKER_NAME_VARIABLE = "DX7LAKE_WORKER_NAME"

# compose service -> the `airflow` subcommand it runs
COMMANDS: dict[str, tuple[str, ...]] = {
    "airflow-apiserver": ("api-server",),
    "airflow-scheduler": ("scheduler",),
    "airflow-dag-processor": ("dag-processor",),
    "airflow-worker": ("celery", "worker"),
}

# identical in every Celery deployment of dx7lake
CELERY_SETTINGS: dict[str, str] = {
    "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
    "AIRFLOW__CORE__HOSTNAME_CALLABLE": "dx7lake.orchestration.celery_stack.worker_hostname",
    "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
    "AIRFLOW__API__EXPOSE_CONFIG": "False",
    # a worker takes a task only when it has a free slot: a queued render waits for the
    # first free worker instead of behind another worker's running one
    "AIRFLOW__CELERY__WORKER_PREFETCH_MULTIPLIER": "1",
    # slots per worker: a render task runs a process per core of its share, so more task
    # slots would only oversubscribe the machine
    "AIRFLOW__CELERY__WORKER_CONCURRENCY": "4",
}

# set by every deployment to its own services; every Airflow process needs each of them
WIRING: tuple[str, ...] = (
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN",
    "AIRFLOW__CELERY__BROKER_URL",
    "AIRFLOW__CELERY__RESULT_BACKEND",
    "AIRFLOW__CORE__FERNET_KEY",
    "AIRFLOW__API_AUTH__JWT_SECRET",
    "AIRFLOW__API__SECRET_KEY",
    "AIRFLOW__CORE__EXECUTION_API_SERVER_URL",
)


def worker_hostname() -> str:
    """The hostname Airflow records for this process (``[core] hostname_callable``)."""
    return os.environ.get(WORKER_NAME_VARIABLE) or socket.getfqdn()


@dataclass(frozen=True)
class Process:
    """One Airflow process of the deployment: a name, ``airflow`` arguments, its environment."""

    name: str
    args: tuple[str, ...]
    env: dict[str, str]


def control_plane(env: Mapping[str, str]) -> list[Process]:
    """The API server, the scheduler and the DAG processor, on ``env`` (wiring included)."""
    base = {**env, **CELERY_SETTINGS}
    return [
        Process(name, COMMANDS[name], base)
        for name in ("airflow-apiserver", "airflow-scheduler", "airflow-dag-processor")
    ]


def worker(env: Mapping[str, str], name: str, own: Mapping[str, str] = ()) -> Process:
    """A Celery worker called ``name``; ``own`` is what belongs to its machine alone (scratch
    home, log server port). Containers each have a hostname; processes sharing one host need
    ``--celery-hostname`` to be told apart by Celery too."""
    args = (*COMMANDS["airflow-worker"], "--celery-hostname", f"{name}@%h")
    return Process(name, args, {**env, **CELERY_SETTINGS, **dict(own), WORKER_NAME_VARIABLE: name})
