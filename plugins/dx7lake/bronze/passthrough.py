"""Lakh-style ``detailed_notes`` parquet, checked against the contract and passed through.

The public midi_etl dataset ships ``detailed_notes/p=<x>/data_0.parquet`` with the
Lakh columns; our provenance columns are optional there. A part whose schema does not
fit is quarantined whole; a song whose rows break the contract's value rules is
quarantined alone. Parts are read batch by batch (twice: check, then copy), so memory
stays bounded by the batch, not the part.
"""

from __future__ import annotations

import io
import re
from collections import Counter
from collections.abc import Iterator

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .schema import BRONZE_SCHEMA, DRUM_CHANNEL

REQUIRED = ("midi_id", "track_id", "message_id", "start_time", "duration", "velocity", "note", "set_type")
OPTIONAL = ("channel", "program", "is_drum", "track_index", "start_seconds", "duration_seconds", "source_key")
SET_TYPES = ("train", "test", "validate")
_MD5 = re.compile(r"^[0-9a-f]{32}$")
_BATCH = 65_536


def open_part(data: bytes) -> pq.ParquetFile:
    """The part as a ParquetFile; raises ValueError with the reason it is not one."""
    try:
        part = pq.ParquetFile(io.BytesIO(data))
    except Exception as err:
        raise ValueError(f"not a parquet file: {err}") from err
    problem = schema_problem(part.schema_arrow)
    if problem:
        raise ValueError(problem)
    return part


def schema_problem(schema: pa.Schema) -> str | None:
    """Why a part's schema cannot be passed through, or None."""
    missing = [c for c in REQUIRED if c not in schema.names]
    if missing:
        return f"not detailed_notes: missing columns {', '.join(missing)}"
    for name in (*REQUIRED, *OPTIONAL):
        if name in schema.names:
            have, want = schema.field(name).type, BRONZE_SCHEMA.field(name).type
            if not _castable(have, want):
                return f"column {name} is {have}, the contract needs {want}"
    return None


def _castable(have: pa.DataType, want: pa.DataType) -> bool:
    if pa.types.is_string(want):
        return pa.types.is_string(have) or pa.types.is_large_string(have)
    if pa.types.is_floating(want):
        return pa.types.is_floating(have) or pa.types.is_integer(have)
    if pa.types.is_integer(want):
        return pa.types.is_integer(have)
    return have == want


def _id_counts(part: pq.ParquetFile) -> Counter[str | None]:
    """Rows per midi_id, batch by batch (a part's id column is never held whole)."""
    counts: Counter[str | None] = Counter()
    for batch in part.iter_batches(batch_size=_BATCH, columns=["midi_id"]):
        for v in pc.value_counts(batch.column(0).cast(pa.string())).to_pylist():
            counts[v["values"]] += v["counts"]
    return counts


def midi_ids(part: pq.ParquetFile) -> tuple[dict[str, int], str | None]:
    """{midi_id: rows} of a part, and why its ids are unusable (None when fine)."""
    counts = _id_counts(part)
    bad = next((i for i in counts if i is None or not _MD5.match(i)), False)
    return dict(counts), (f"midi_id {bad!r} is not an md5 hex digest" if bad is not False else None)


def _problems(batch: pa.Table) -> pa.Array:
    """Per row: the first contract rule it breaks, or null."""
    rules = [
        ("note outside 0..127", pc.or_kleene(pc.less(batch["note"], 0), pc.greater(batch["note"], 127))),
        (
            "velocity outside 0..127",
            pc.or_kleene(pc.less(batch["velocity"], 0), pc.greater(batch["velocity"], 127)),
        ),
        ("negative start_time or duration", pc.or_(pc.less(batch["start_time"], 0), pc.less(batch["duration"], 0))),
        ("set_type not train/test/validate", pc.invert(pc.is_in(batch["set_type"], pa.array(SET_TYPES)))),
    ]
    nulls = pc.or_(
        pc.is_null(batch["track_id"]),
        pc.or_(pc.is_null(batch["message_id"]), pc.or_(pc.is_null(batch["note"]), pc.is_null(batch["start_time"]))),
    )
    problem = pc.if_else(nulls, "null in a required column", pa.scalar(None, pa.string()))
    for reason, broken in reversed(rules):
        problem = pc.if_else(pc.fill_null(broken, True), reason, problem)
    return problem


def broken_songs(part: pq.ParquetFile, wanted: set[str]) -> dict[str, str]:
    """{midi_id: reason} of the wanted songs with a row that breaks the contract."""
    broken: dict[str, str] = {}
    value_set = pa.array(sorted(wanted), pa.string())
    for batch in part.iter_batches(batch_size=_BATCH, columns=list(REQUIRED)):
        table = pa.Table.from_batches([batch])
        table = table.filter(pc.is_in(table["midi_id"].cast(pa.string()), value_set))
        problem = _problems(table)
        flagged = table.filter(pc.is_valid(problem))
        for midi_id, reason in zip(
            flagged["midi_id"].to_pylist(), problem.filter(pc.is_valid(problem)).to_pylist(), strict=True
        ):
            broken.setdefault(midi_id, f"detailed_notes row breaks the contract: {reason}")
    return broken


def conformed_batches(part: pq.ParquetFile, wanted: set[str], source_key: str) -> Iterator[pa.Table]:
    """The rows of the wanted songs, cast to the bronze schema, provenance filled in."""
    value_set = pa.array(sorted(wanted), pa.string())
    for batch in part.iter_batches(batch_size=_BATCH):
        table = pa.Table.from_batches([batch])
        table = table.filter(pc.is_in(table["midi_id"].cast(pa.string()), value_set))
        if table.num_rows:
            yield _conform(table, source_key)


def _conform(table: pa.Table, source_key: str) -> pa.Table:
    n = table.num_rows
    cols = {name: table[name].cast(BRONZE_SCHEMA.field(name).type) for name in REQUIRED}
    present = {
        name: table[name].cast(BRONZE_SCHEMA.field(name).type) for name in OPTIONAL if name in table.column_names
    }
    channel = present.get("channel", pa.nulls(n, pa.int16()))
    cols.update(
        p=pc.utf8_slice_codeunits(cols["midi_id"], 0, 1),
        channel=channel,
        program=present.get("program", pa.nulls(n, pa.int16())),
        is_drum=present.get("is_drum", pc.fill_null(pc.equal(channel, DRUM_CHANNEL), False)),
        track_index=present.get("track_index", pa.array([-1] * n, pa.int32())),  # -1: not known upstream
        start_seconds=present.get("start_seconds", pa.nulls(n, pa.float64())),
        duration_seconds=present.get("duration_seconds", pa.nulls(n, pa.float64())),
        source_key=present.get("source_key", pa.array([source_key] * n, pa.string())),
    )
    return pa.table({name: cols[name] for name in BRONZE_SCHEMA.names}, schema=BRONZE_SCHEMA)
