"""Warehouse connection: an external Postgres URL, or an embedded pgserver instance.

The embedded server lives in ``<home>/pg`` and is started on first use with
``cleanup_mode=None`` so that it outlives any one task process (Airflow runs tasks in
separate processes outside ``dags test``); ``dx7lake db stop`` stops it cleanly at the end
of a demo.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import parse_qs, unquote, urlparse

import psycopg

from ..config import WAREHOUSE_CONN_ID, Settings

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


def stop_embedded(settings: Settings) -> bool:
    """Stop the embedded server if it runs; returns whether one was stopped."""
    if settings.pg_url or not (settings.pgdata / "postmaster.pid").exists():
        return False
    from pgserver._commands import pg_ctl

    user = "pgserver" if os.geteuid() == 0 else None
    pg_ctl(["-w", "-m", "fast", "stop"], pgdata=settings.pgdata, user=user)
    log.info("embedded Postgres in %s stopped", settings.pgdata)
    return True


@contextmanager
def connect(settings: Settings, autocommit: bool = False) -> Iterator[psycopg.Connection]:
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
