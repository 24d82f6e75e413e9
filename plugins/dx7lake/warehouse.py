"""Postgres warehouse: schemas, atomic COPY loads of bronze, gold manifests and run stats.

A partition load goes through a temporary table filled by COPY, then a delete-and-insert
of that partition inside one transaction: readers see the old rows or the new ones, never
a mix, and a rerun leaves exactly the same rows.
"""

from __future__ import annotations

import json
import time

import psycopg
import pyarrow as pa

from .midi import BRONZE_SCHEMA

DDL = """
create schema if not exists raw;
create schema if not exists ops;
create schema if not exists gold;
create table if not exists raw.detailed_notes (
    midi_id text not null,
    track_id text not null,
    message_id text not null,
    start_time double precision not null,
    duration double precision not null,
    velocity bigint not null,
    note bigint not null,
    set_type text not null,
    p text not null,
    channel smallint,
    program smallint,
    is_drum boolean not null,
    track_index integer not null,
    start_seconds double precision,
    duration_seconds double precision,
    source_key text,
    primary key (message_id)
);
create index if not exists detailed_notes_p on raw.detailed_notes (p);
create index if not exists detailed_notes_track on raw.detailed_notes (track_id);
create table if not exists ops.load_stats (
    run_id text not null,
    p text not null,
    rows bigint not null,
    bytes bigint not null,
    seconds double precision not null,
    loaded_at timestamptz not null default now(),
    primary key (run_id, p)
);
create table if not exists gold.renders (
    content_hash text not null,
    patch_id text not null,
    key text not null,
    sha256 text not null,
    bytes bigint not null,
    sample_rate integer not null,
    duration_s double precision not null,
    peak double precision not null,
    rms double precision not null,
    bpm double precision not null,
    notes jsonb not null,
    render_p integer not null,
    primary key (content_hash, patch_id)
);
"""

_PG_TYPES = {
    pa.string(): "text",
    pa.float64(): "double precision",
    pa.int64(): "bigint",
    pa.int32(): "integer",
    pa.int16(): "smallint",
    pa.bool_(): "boolean",
}


def ensure_schema(conn: psycopg.Connection) -> None:
    with conn.transaction():
        conn.execute(DDL)


def load_bronze_partition(conn: psycopg.Connection, p: str, table: pa.Table | None, run_id: str) -> dict:
    """Replace partition ``p`` of raw.detailed_notes with ``table`` atomically."""
    started = time.perf_counter()
    cols = BRONZE_SCHEMA.names
    rows = 0 if table is None else table.num_rows
    with conn.transaction():
        conn.execute("create temp table stage_notes (like raw.detailed_notes including defaults) on commit drop")
        if table is not None:
            table = table.select(cols)
            with conn.cursor().copy(f"copy stage_notes ({', '.join(cols)}) from stdin") as copy:
                copy.set_types([_PG_TYPES[f.type] for f in BRONZE_SCHEMA])
                for row in zip(*(table.column(c).to_pylist() for c in cols), strict=True):
                    copy.write_row(row)
        conn.execute("delete from raw.detailed_notes where p = %s", (p,))
        conn.execute(f"insert into raw.detailed_notes ({', '.join(cols)}) select {', '.join(cols)} from stage_notes")
        seconds = time.perf_counter() - started
        nbytes = 0 if table is None else table.nbytes
        conn.execute(
            """insert into ops.load_stats (run_id, p, rows, bytes, seconds) values (%s, %s, %s, %s, %s)
               on conflict (run_id, p) do update set rows = excluded.rows, bytes = excluded.bytes,
               seconds = excluded.seconds, loaded_at = now()""",
            (run_id, p, rows, nbytes, seconds),
        )
    return {"p": p, "rows": rows, "seconds": round(seconds, 4)}


def load_manifest_rows(conn: psycopg.Connection, patch_id: str, render_p: int, table: pa.Table) -> int:
    """Replace the gold.renders rows of one (patch, render partition) manifest."""
    rows = table.to_pylist()
    with conn.transaction():
        conn.execute("delete from gold.renders where patch_id = %s and render_p = %s", (patch_id, render_p))
        with conn.cursor().copy(
            "copy gold.renders (content_hash, patch_id, key, sha256, bytes, sample_rate, duration_s, peak, rms, "
            "bpm, notes, render_p) from stdin"
        ) as copy:
            for r in rows:
                copy.write_row(
                    (
                        r["content_hash"],
                        r["patch_id"],
                        r["key"],
                        r["sha256"],
                        r["bytes"],
                        r["sample_rate"],
                        r["duration_s"],
                        r["peak"],
                        r["rms"],
                        r["bpm"],
                        json.dumps(r["notes"]),
                        render_p,
                    )
                )
    return len(rows)


def scalar(conn: psycopg.Connection, sql: str, params: tuple = ()) -> int:
    row = conn.execute(sql, params).fetchone()
    return int(row[0]) if row and row[0] is not None else 0
