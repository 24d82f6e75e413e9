"""Raw load: COPY through a staging table, replace a partition atomically, rerun-safe."""

from __future__ import annotations

import psycopg
import pytest

from dx7lake import warehouse
from dx7lake.midi import parse_midi
from midi_files import simple_melody


def test_partition_load_is_idempotent_and_atomic(pg_url):
    table = parse_midi(simple_melody(), "m.mid")
    p = table.column("p")[0].as_py()
    with psycopg.connect(pg_url) as conn:
        warehouse.ensure_schema(conn)
        warehouse.load_bronze_partition(conn, p, table, "run-1")
        warehouse.load_bronze_partition(conn, p, table, "run-1")
        assert warehouse.scalar(conn, "select count(*) from raw.detailed_notes") == 4
        assert warehouse.scalar(conn, "select count(*) from ops.load_stats") == 1

        bad = table.set_column(table.schema.get_field_index("note"), "note", table.column("midi_id"))
        with pytest.raises(psycopg.Error):
            warehouse.load_bronze_partition(conn, p, bad, "run-2")
        conn.rollback()
        assert warehouse.scalar(conn, "select count(*) from raw.detailed_notes") == 4
