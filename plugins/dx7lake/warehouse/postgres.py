"""Warehouse connection: an external Postgres URL, or an embedded pgserver instance.

The embedded server lives in ``<home>/pg`` and is started on first use with
``cleanup_mode=None`` so that it outlives any one task process (Airflow runs tasks in
separate processes outside ``dags test``). A CLI command that starts it stops it when it
ends (``stopped_after``), unless the user started it with ``dx7lake db start``, which
leaves a marker until ``dx7lake db stop``.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, unquote, urlparse

from ..config import WAREHOUSE_CONN_ID, Settings

if TYPE_CHECKING:
    import psycopg

log = logging.getLogger(__name__)


def warehouse_url(settings: Settings) -> str:
    """The libpq URL of the warehouse, starting the embedded server when needed."""
    if settings.pg_url:
        return settings.pg_url
    return _embedded_server(settings).get_uri()


def _embedded_server(settings: Settings):
    import pgserver

    settings.pgdata.parent.mkdir(parents=True, exist_ok=True)
    return pgserver.get_server(settings.pgdata, cleanup_mode=None)


def embedded_database_url(settings: Settings, name: str) -> str:
    """URL of the database ``name`` on the embedded server, created on first use (the
    embedded default keeps Airflow's metadata there, next to the warehouse)."""
    import psycopg

    server = _embedded_server(settings)
    with psycopg.connect(server.get_uri(), autocommit=True) as conn:
        if conn.execute("select 1 from pg_database where datname = %s", (name,)).fetchone() is None:
            conn.execute(f'create database "{name}"')
    return server.get_uri(name)


def embedded_cpu_seconds(settings: Settings) -> float:
    """CPU seconds the running embedded server has used so far (its postmaster and every
    backend it reaped), from /proc; 0 when it does not run or /proc is not there."""
    try:
        pid = (settings.pgdata / "postmaster.pid").read_text().split()[0]
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    # utime, stime, cutime, cstime: fields 14 to 17 of stat, 12 to 15 after the command
    return sum(int(t) for t in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def _kept_marker(settings: Settings) -> Path:
    return settings.home / "pg.kept"


def _embedded_running(settings: Settings) -> bool:
    return not settings.pg_url and (settings.pgdata / "postmaster.pid").exists()


def start_embedded(settings: Settings) -> str:
    """Start the embedded server and keep it running after this process (``dx7lake db start``)."""
    url = warehouse_url(settings)
    if not settings.pg_url:
        _kept_marker(settings).touch()
    return url


@contextmanager
def stopped_after(settings: Settings) -> Iterator[None]:
    """Stop, at the end, an embedded server that the block started: not one that was already
    running (a DAG run's, or one the user started with ``dx7lake db start``)."""
    running_before = _embedded_running(settings)
    try:
        yield
    finally:
        if not running_before and not _kept_marker(settings).exists():
            stop_embedded(settings)


def stop_embedded(settings: Settings) -> bool:
    """Stop the embedded server if it runs; returns whether one was stopped."""
    _kept_marker(settings).unlink(missing_ok=True)
    if not _embedded_running(settings):
        return False
    from pgserver._commands import pg_ctl

    user = "pgserver" if os.geteuid() == 0 else None
    pg_ctl(["-w", "-m", "fast", "stop"], pgdata=settings.pgdata, user=user)
    log.info("embedded Postgres in %s stopped", settings.pgdata)
    return True


@contextmanager
def connect(settings: Settings, autocommit: bool = False) -> Iterator[psycopg.Connection]:
    import psycopg

    with psycopg.connect(warehouse_url(settings), autocommit=autocommit) as conn:
        yield conn


def airflow_connection_json(url: str) -> str:
    """The warehouse as an Airflow connection (JSON form), for Cosmos' profile mapping.

    Unix-socket URLs (``postgresql://user:@/db?host=/dir``) become a host that is the
    socket directory, which psycopg2 (and so dbt-postgres) accepts as it is.
    """
    parsed = urlparse(url)
    query = parse_qs(parsed.query)
    host = query.get("host", [parsed.hostname or "localhost"])[0]
    return json.dumps(
        {
            "conn_type": "postgres",
            "host": host,
            "login": unquote(parsed.username or "postgres"),
            # trust auth on the embedded socket ignores it; Cosmos requires one
            "password": unquote(parsed.password or "") or "postgres",
            "port": parsed.port or 5432,
            "schema": (parsed.path or "/postgres").lstrip("/") or "postgres",
        }
    )


def airflow_env(settings: Settings) -> dict[str, str]:
    """Environment that points an Airflow process at this warehouse."""
    return {f"AIRFLOW_CONN_{WAREHOUSE_CONN_ID.upper()}": airflow_connection_json(warehouse_url(settings))}
