"""Bronze layer: MIDI files to Lakh ``detailed_notes``-compatible parquet in the lake.

Owns the bronze schema and lake layout (``bronze/``), quarantine, and the demo corpus.
May import: ``config``, ``lake``. See docs/ARCHITECTURE.md, "Bronze".

- ``scan``: the compiled byte scanner (pairing, channels, tempo map, errors);
- ``notes``: one file's bytes to its notes, or a ``MidiError`` (the quarantine reason);
- ``rows``: notes of many files to one arrow table of the bronze contract (``schema``);
- ``sources``: folders, tar archives read as streams, lake prefixes (S3);
- ``passthrough``: Lakh-style detailed_notes parquet, checked and passed through;
- ``store``: the lake layout (parts committed by their index), readers;
- ``extract``: one shard's pass over a source, and the merge of shard counts;
- ``corpus``: the demo corpus (music21's Bach chorales written as MIDI).
"""

from __future__ import annotations

import pyarrow as pa

from .extract import ExtractOptions, ExtractStats, extract, extract_shard, merge_stats, owned_partitions
from .notes import MidiError, Notes, parse_notes
from .rows import ParsedFile, bronze_table
from .schema import (
    BRONZE_PREFIX,
    BRONZE_SCHEMA,
    INDEX_PREFIX,
    QUARANTINE_PREFIX,
    QUARANTINE_SCHEMA,
    midi_id_of,
    set_type_of,
)
from .store import bronze_counts, bronze_partitions, committed_data_parts, read_bronze_part, read_bronze_partition


def parse_midi(data: bytes, source_key: str, midi_id: str | None = None) -> pa.Table:
    """Bronze rows of one file; raises MidiError with a reason when it cannot be read."""
    midi_id = midi_id or midi_id_of(data)
    notes = parse_notes(data)
    return bronze_table([ParsedFile(midi_id, source_key, set_type_of(midi_id), notes)])


__all__ = [
    "BRONZE_PREFIX",
    "BRONZE_SCHEMA",
    "INDEX_PREFIX",
    "QUARANTINE_PREFIX",
    "QUARANTINE_SCHEMA",
    "ExtractOptions",
    "ExtractStats",
    "MidiError",
    "Notes",
    "bronze_counts",
    "bronze_partitions",
    "committed_data_parts",
    "extract",
    "extract_shard",
    "merge_stats",
    "midi_id_of",
    "owned_partitions",
    "parse_midi",
    "parse_notes",
    "read_bronze_part",
    "read_bronze_partition",
    "set_type_of",
]
