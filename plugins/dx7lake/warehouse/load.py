"""Postgres warehouse: atomic COPY loads of bronze and gold manifests (tables in ``schema``).

Both are loaded by part, each part once, through a ledger in the warehouse. A bronze part
goes through a temporary table filled by COPY, then a delete-and-insert of its files' rows
and its row in ``raw.bronze_parts``, inside one transaction: readers see a part whole or not
at all, and a rerun loads only parts the ledger lacks. Gold manifest parts likewise:
``gold.manifest_parts`` is the ledger of the parts loaded, written in the transaction that
upserts the part's rows, so a run loads only the parts that are new since the last one.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import psycopg
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from ..bronze import BRONZE_SCHEMA, committed_data_parts, read_bronze_part
from ..lake import Lake


class PartitionMismatch(ValueError):
    """Rows of another partition were handed to a partition load."""


def csv_chunks(table: pa.Table, batch_rows: int = 1 << 16) -> Iterator[pa.Buffer]:
    """``table`` as headerless CSV in bounded chunks, written by Arrow's C++ writer.

    Postgres' CSV format reads Arrow's output as it is: strings are always quoted (so an
    empty string stays one), nulls are unquoted empty fields, doubles are printed in their
    shortest round-trip form (no precision is lost), booleans as true/false.
    """
    options = pacsv.WriteOptions(include_header=False)
    for batch in table.to_batches(max_chunksize=batch_rows):
        sink = pa.BufferOutputStream()
        pacsv.write_csv(batch, sink, options)
        yield sink.getvalue()


def copy_csv(conn: psycopg.Connection, relation: str, table: pa.Table) -> int:
    """COPY ``table`` into ``relation`` (columns by name); returns the bytes sent."""
    sent = 0
    with conn.cursor().copy(f"copy {relation} ({', '.join(table.column_names)}) from stdin (format csv)") as copy:
        for chunk in csv_chunks(table):
            copy.write(memoryview(chunk))
            sent += chunk.size
    return sent


def load_bronze_part(conn: psycopg.Connection, p: str, part: str, table: pa.Table, run_id: str) -> dict:
    """Load one bronze part of partition ``p`` atomically: its files' rows, its ledger row
    in raw.bronze_parts and the run's figures in ops.load_stats, in one transaction.

    COPY fills a temporary table (no WAL, no indexes), then the rows of the part's files
    are deleted and the staged rows inserted: loading a part twice replaces its rows, never
    duplicates them, and a failure or a killed process leaves nothing of the part (and no
    ledger row, so the next run loads it). ``ops.load_stats`` keeps one row per (run,
    partition): ``rows`` is what the ledger holds of the parts this run loaded into ``p``
    (the stats never describe rows that are not there), ``bytes`` (CSV sent by COPY) and
    ``seconds`` add up over the run's parts.
    """
    started = time.perf_counter()
    table = table.select(BRONZE_SCHEMA.names)
    others = pc.count_distinct(pc.filter(table.column("p"), pc.not_equal(table.column("p"), p))).as_py()
    if others:
        raise PartitionMismatch(f"partition {p!r} load got rows of {others} other partition(s)")
    midi_ids = pc.unique(table.column("midi_id")).to_pylist()
    cols = ", ".join(BRONZE_SCHEMA.names)
    with conn.transaction():
        # one staging table per session, emptied at commit; truncated here too, for a caller
        # that runs this inside its own transaction (then this block is only a savepoint)
        conn.execute("create temp table if not exists stage_notes (like raw.detailed_notes) on commit delete rows")
        conn.execute("truncate stage_notes")
        nbytes = copy_csv(conn, "stage_notes", table)
        conn.execute("delete from raw.detailed_notes where midi_id = any(%s)", (midi_ids,))
        conn.execute(f"insert into raw.detailed_notes ({cols}) select {cols} from stage_notes")
        conn.execute(
            """insert into raw.bronze_parts (p, part, midi_ids, rows, run_id) values (%s, %s, %s, %s, %s)
               on conflict (p, part) do update set midi_ids = excluded.midi_ids, rows = excluded.rows,
               run_id = excluded.run_id, loaded_at = now()""",
            (p, part, midi_ids, table.num_rows, run_id),
        )
        seconds = time.perf_counter() - started
        conn.execute(
            """insert into ops.load_stats (run_id, p, rows, bytes, seconds)
               select %(run)s, %(p)s, sum(rows), %(bytes)s, %(seconds)s from raw.bronze_parts
               where p = %(p)s and run_id = %(run)s
               on conflict (run_id, p) do update set rows = excluded.rows,
               bytes = load_stats.bytes + excluded.bytes, seconds = load_stats.seconds + excluded.seconds,
               loaded_at = now()""",
            {"run": run_id, "p": p, "bytes": nbytes, "seconds": seconds},
        )
    return {"p": p, "part": part, "rows": table.num_rows, "bytes": nbytes, "seconds": round(seconds, 4)}


def loaded_bronze_parts(conn: psycopg.Connection, p: str) -> set[str]:
    """Names of the bronze parts of partition ``p`` in the ledger (loaded into raw)."""
    with conn.transaction():  # a read of its own, so each part load after it commits alone
        return {name for (name,) in conn.execute("select part from raw.bronze_parts where p = %s", (p,))}


def load_new_bronze_parts(conn: psycopg.Connection, lake: Lake, p: str, run_id: str, reload: bool = False) -> dict:
    """Load the committed bronze parts of partition ``p`` that the ledger lacks (every part
    with ``reload``, to repair raw), one transaction each: a run costs the parts it adds, a
    rerun loads nothing, and a load killed halfway keeps the parts it committed and leaves
    the rest to the next run.

    The figures are the run's, from the ledger and ``ops.load_stats``, not this attempt's: a
    retry after an attempt that loaded everything reports what the run loaded, not zero."""
    done = set() if reload else loaded_bronze_parts(conn, p)
    for name in committed_data_parts(lake, p):
        if name not in done:
            load_bronze_part(conn, p, name, read_bronze_part(lake, p, name), run_id)
    with conn.transaction():
        parts, rows = conn.execute(
            "select count(*), coalesce(sum(rows), 0) from raw.bronze_parts where p = %s and run_id = %s", (p, run_id)
        ).fetchone()
        loaded = conn.execute("select bytes from ops.load_stats where p = %s and run_id = %s", (p, run_id)).fetchone()
    return {"p": p, "parts": int(parts), "rows": int(rows), "bytes": int(loaded[0]) if loaded else 0}


def settle_raw(conn: psycopg.Connection) -> None:
    """VACUUM (ANALYZE) the raw tables once a run's loads are done (``conn`` in autocommit).

    Rows fresh from COPY have no statistics and no visibility hints yet. Left so, the run's
    dbt build plans its first reads blind and pays for the hints in every one of them, while
    autovacuum wakes up in the middle: at 3.4 M notes each source test took 17 s instead of
    1.3 s. VACUUM skips the pages its visibility map already marks (what earlier runs loaded),
    so it costs what the run added; ANALYZE samples a fixed number of rows."""
    for table in ("raw.detailed_notes", "raw.bronze_parts"):
        conn.execute(f"vacuum (analyze) {table}")


FEATURE_COLUMNS = (
    "lufs",
    "true_peak_dbtp",
    "spectral_centroid_hz",
    "spectral_bandwidth_hz",
    "zcr",
    "onset_count",
    "mfcc",
    "f0_hz",
    "f0_error_cents",
)  # = gold.features.FEATURE_COLUMNS (tests/test_features.py): null in parts written before them
MANIFEST_COLUMNS = (
    "profile_id, content_hash, patch_id, key, sha256, bytes, sample_rate, duration_s, peak, rms, bpm, notes"
)
RENDER_COLUMNS = ", ".join([MANIFEST_COLUMNS, "render_p", "note_length", *FEATURE_COLUMNS])
RENDER_KEY = "profile_id, content_hash, patch_id"


def register_profiles(conn: psycopg.Connection, profiles: list[tuple[str, str | None, str]]) -> None:
    """(id, name, canonical form) into gold.profiles; a name given replaces the one known."""
    with conn.cursor() as cur:
        cur.executemany(
            """insert into gold.profiles (profile_id, name, canonical) values (%s, %s, %s)
               on conflict (profile_id) do update set name = coalesce(excluded.name, gold.profiles.name)""",
            profiles,
        )


def load_manifest_parts(
    conn: psycopg.Connection, parts: list[tuple[str, str, str, int, pa.Table]], run_id: str | None
) -> int:
    """Upsert the rows of manifest parts (key, profile_id, patch_id, render_p, table) into
    gold.renders and record them in the ledger, in one transaction (one COPY, one upsert: a
    run's new parts cost one round trip, not one each). A content a later part repeats takes
    the later row: parts come in key order, which is the order they were written. The
    profiles the parts name are registered in gold.profiles (unnamed, unless known).

    Every row upserted takes ``loaded_at`` = now() (the transaction's time, as its parts' in
    the ledger): dbt's tests of the gold source read the rows of the latest loading run by it
    (dbt/macros/new_rows_only.sql), a reload's rows included."""
    with conn.transaction():
        conn.execute(
            "create temp table if not exists stage_renders (like gold.renders including defaults)"
            " on commit delete rows; alter table stage_renders add column if not exists part_no integer"
        )
        conn.execute("truncate stage_renders")
        with conn.cursor().copy(f"copy stage_renders ({RENDER_COLUMNS}, part_no) from stdin") as copy:
            for part_no, (_, profile_id, _, render_p, table) in enumerate(parts):
                for r in table.to_pylist():
                    copy.write_row(
                        (
                            profile_id,
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
                            r.get("note_length"),  # None: rendered before the rule was recorded
                            *(r.get(c) for c in FEATURE_COLUMNS),
                            part_no,
                        )
                    )
        updates = ", ".join(f"{c} = excluded.{c}" for c in [*RENDER_COLUMNS.split(", ")[3:], "loaded_at"])
        conn.execute(
            f"insert into gold.renders ({RENDER_COLUMNS}) select distinct on ({RENDER_KEY}) "
            f"{RENDER_COLUMNS} from stage_renders order by {RENDER_KEY}, part_no desc "
            f"on conflict ({RENDER_KEY}) do update set {updates}"
        )
        profiles = {}
        for _, profile_id, _, _, table in parts:
            if profile_id not in profiles and table.num_rows and "profile" in table.column_names:
                profiles[profile_id] = table.column("profile")[0].as_py()
        register_profiles(conn, [(pid, None, text) for pid, text in profiles.items()])
        with conn.cursor() as cur:
            cur.executemany(
                """insert into gold.manifest_parts (key, profile_id, patch_id, render_p, rows, run_id)
                   values (%s, %s, %s, %s, %s, %s) on conflict (key) do update set rows = excluded.rows,
                   run_id = excluded.run_id, loaded_at = now()""",
                [(key, pid, patch, render_p, table.num_rows, run_id) for key, pid, patch, render_p, table in parts],
            )
    return sum(table.num_rows for *_, table in parts)


def loaded_parts(conn: psycopg.Connection) -> dict[str, str | None]:
    """Key to loading run of every manifest part in the ledger."""
    return dict(conn.execute("select key, run_id from gold.manifest_parts").fetchall())


def forget_parts(conn: psycopg.Connection, keys: list[str]) -> None:
    """Drop ledger rows of parts no longer in the lake (merged by a compaction): their rows
    stay in gold.renders, where the merged part holds them too."""
    with conn.transaction():
        conn.execute("delete from gold.manifest_parts where key = any(%s)", (keys,))


def scalar(conn: psycopg.Connection, sql: str, params: tuple = ()) -> int:
    row = conn.execute(sql, params).fetchone()
    return int(row[0]) if row and row[0] is not None else 0
