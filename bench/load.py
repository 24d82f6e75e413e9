"""Load and dbt benchmark on synthetic scale-up notes in a throwaway embedded Postgres.

- load: the production part load (COPY into a temp table, delete-and-insert of its files,
  ledger and stats rows in one transaction; here one part per partition) against a bare
  COPY of the same CSV into a twin of raw.detailed_notes (same keys and indexes), one
  transaction per partition, same run.
  The CSV COPY itself is also timed against the row-by-row COPY it replaced
  (``to_pylist()`` + ``write_row``), both into the same temporary table.
- dbt: a full ``dbt build`` (models, data tests, unit tests) per million notes, against
  the incremental build after one part is reloaded.

``DX7LAKE_BENCH_NOTES`` sets the size (default about 300k notes, a few minutes on 2 cores).
"""

from __future__ import annotations

import os
import time

import psycopg

from bench._warehouse import temporary_warehouse
from bench.synthetic import partitions, synthetic_notes
from dx7lake.bronze import BRONZE_SCHEMA
from dx7lake.warehouse import load as warehouse
from dx7lake.warehouse.transform import run_dbt

NOTES_PER_SONG = 490  # what synthetic_notes makes with its defaults


def _seconds(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def run() -> dict:
    songs = max(16, int(os.environ.get("DX7LAKE_BENCH_NOTES", 300_000)) // NOTES_PER_SONG)
    parts = partitions(synthetic_notes(songs))
    rows = sum(t.num_rows for t in parts.values())
    with temporary_warehouse() as url:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("create table public.copy_twin (like raw.detailed_notes including all)")

            conn.execute("create temp table copy_scratch (like raw.detailed_notes)")

            def row_by_row() -> None:
                names = BRONZE_SCHEMA.names
                for table in parts.values():
                    with conn.cursor().copy(f"copy copy_scratch ({', '.join(names)}) from stdin") as copy:
                        for row in zip(*(table.column(c).to_pylist() for c in names), strict=True):
                            copy.write_row(row)
                    conn.execute("truncate copy_scratch")

            def csv_copy() -> None:
                for table in parts.values():
                    warehouse.copy_csv(conn, "copy_scratch", table)
                    conn.execute("truncate copy_scratch")

            rowwise_s = min(_seconds(row_by_row) for _ in range(2))
            csv_s = min(_seconds(csv_copy) for _ in range(2))

            def bare_copy() -> None:
                for table in parts.values():
                    with conn.transaction():
                        warehouse.copy_csv(conn, "public.copy_twin", table)

            def load(run_id: str) -> None:
                for p, table in parts.items():
                    warehouse.load_bronze_part(conn, p, f"part-{p}", table, run_id)

            # alternate, into the same empty state each time, and keep the best of two
            copy_s, load_s = [], []
            for attempt in range(2):
                copy_s.append(_seconds(bare_copy))
                load_s.append(_seconds(lambda a=attempt: load(f"bench-{a}")))
                conn.execute("truncate public.copy_twin, raw.detailed_notes")
            rerun_s = [_seconds(lambda: load("bench-first")), _seconds(lambda: load("bench-rerun"))][1]

        full_s = _seconds(lambda: run_dbt(["build", "--quiet", "--full-refresh"], url=url))
        reload_p = sorted(parts)[0]
        with psycopg.connect(url) as conn:
            warehouse.load_bronze_part(conn, reload_p, f"part-{reload_p}", parts[reload_p], "bench-reload")
        incremental_s = _seconds(lambda: run_dbt(["build", "--quiet"], url=url))

    load_rate, copy_rate = rows / min(load_s), rows / min(copy_s)
    per_million = 1e6 / rows
    return {
        "name": "load",
        "rows_per_s": round(load_rate),
        "baseline": {"name": "bare COPY of the same CSV into a twin table", "rows_per_s": round(copy_rate)},
        "ratio": round(load_rate / copy_rate, 2),
        "rerun_rows_per_s": round(rows / rerun_s),  # replacing parts that hold the same rows
        "csv_copy_rows_per_s": round(rows / csv_s),
        "row_by_row_copy_rows_per_s": round(rows / rowwise_s),
        "csv_over_row_by_row": round(rowwise_s / csv_s, 2),
        "notes": rows,
        "partitions": len(parts),
        "dbt_build_s_per_million_notes": round(full_s * per_million, 1),
        "dbt_baseline": {
            "name": f"incremental dbt build after reloading 1 of {len(parts)} parts",
            "s_per_million_notes": round(incremental_s * per_million, 1),
        },
        "dbt_full_over_incremental": round(full_s / incremental_s, 2),
    }
