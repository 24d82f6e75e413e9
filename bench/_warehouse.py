"""A bench's own warehouse: an embedded Postgres with dx7lake's schema, deleted afterwards,
so a figure never depends on (or changes) a user's warehouse."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg

from dx7lake.warehouse import schema


@contextmanager
def temporary_warehouse() -> Iterator[str]:
    """The URL of a fresh embedded Postgres holding dx7lake's schema."""
    import pgserver

    with tempfile.TemporaryDirectory(prefix="dx7lake-bench-") as tmp:
        server = pgserver.get_server(tmp, cleanup_mode="delete")
        try:
            url = server.get_uri()
            with psycopg.connect(url, autocommit=True) as conn:
                schema.ensure_schema(conn)
            yield url
        finally:
            server.cleanup()
