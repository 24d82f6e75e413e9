"""The bronze extract: a source's new files into the lake, one shard of partitions at a time.

Shard ``k`` of ``n`` owns the partitions ``p`` (first hex digit of the md5) with
``int(p, 16) % n == k``. Every worker streams the whole source but hashes to decide and
parses only the files it owns, so byte-identical files always meet in the same worker
(duplicates count once, with no coordination), and each partition has exactly one
writer. Counts of all shards add up to the run's (``merge_stats``).
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from ..config import (
    DEFAULT_AWS_CONN_ID,
    DEFAULT_MAX_FILE_BYTES,
    DEFAULT_MAX_NOTES,
    DEFAULT_MAX_SECONDS,
    DEFAULT_SPLIT,
    Settings,
)
from ..lake import Lake
from . import passthrough
from . import store as bronze
from .notes import MidiError, parse_notes
from .rows import ParsedFile
from .schema import HEX, midi_id_of, set_type_of
from .sources import SourceFile, open_source

log = logging.getLogger(__name__)

MAX_ORDINAL = 0xFFFFFF  # message ids give a note's ordinal 6 hex digits


@dataclass(frozen=True)
class ExtractOptions:
    """Caps, split and the S3 connection of a source; ``from_settings`` takes the run's."""

    max_bytes: int = DEFAULT_MAX_FILE_BYTES
    max_notes: int = DEFAULT_MAX_NOTES
    max_seconds: float = DEFAULT_MAX_SECONDS
    split: tuple[tuple[str, float], ...] = DEFAULT_SPLIT
    aws_conn_id: str = DEFAULT_AWS_CONN_ID
    flush_rows: int = 1_000_000
    flush_files: int = 5_000

    def __post_init__(self) -> None:
        if not 0 < self.max_notes <= MAX_ORDINAL:
            raise ValueError(f"max_notes must be in 1..{MAX_ORDINAL}")

    @classmethod
    def from_settings(cls, settings: Settings) -> ExtractOptions:
        return cls(
            max_bytes=settings.max_file_bytes,
            max_notes=settings.max_notes,
            max_seconds=settings.max_seconds,
            split=settings.split,
            aws_conn_id=settings.aws_conn_id,
        )


@dataclass
class ExtractStats:
    files_seen: int = 0
    files_extracted: int = 0
    files_empty: int = 0  # part of files_extracted: read fine, no closed note in them
    files_quarantined: int = 0
    files_skipped: int = 0  # already in bronze, or a byte-identical copy of a file seen earlier
    duplicates: int = 0  # the second part of files_skipped
    notes: int = 0
    unclosed_dropped: int = 0
    partitions: list[str] = field(default_factory=list)
    quarantine_reasons: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {k: (dict(v) if isinstance(v, dict) else v) for k, v in self.__dict__.items()}


COUNTS = ("files_seen", "files_extracted", "files_empty", "files_quarantined", "files_skipped", "duplicates", "notes")


def merge_stats(results: Iterable[dict]) -> dict:
    """One run's totals from its shards' results (timings span all shards)."""
    results = list(results)
    merged = ExtractStats()
    reasons: Counter[str] = Counter()
    for r in results:
        for name in (*COUNTS, "unclosed_dropped"):
            setattr(merged, name, getattr(merged, name) + r[name])
        merged.partitions = sorted(set(merged.partitions) | set(r["partitions"]))
        reasons.update(r["quarantine_reasons"])
    merged.quarantine_reasons = dict(sorted(reasons.items()))
    out = merged.as_dict() | {"shards": len(results)}
    if results and all("started_at" in r for r in results):
        started, finished = min(r["started_at"] for r in results), max(r["finished_at"] for r in results)
        out.update(started_at=started, finished_at=finished, seconds=round(finished - started, 3))
    return out


def owned_partitions(shard: int, shards: int) -> list[str]:
    if not 1 <= shards <= len(HEX) or not 0 <= shard < shards:
        raise ValueError(f"shard {shard} of {shards}: need 0 <= shard < shards <= 16")
    return [p for p in HEX if int(p, 16) % shards == shard]


class _Run:
    """State of one shard's pass over a source."""

    def __init__(self, lake: Lake, options: ExtractOptions, shard: int, shards: int) -> None:
        self.options = options
        self.owned = set(owned_partitions(shard, shards))
        bronze.drop_orphans(lake, sorted(self.owned))
        self.known = bronze.known_ids(lake, sorted(self.owned))
        self.this_run: set[str] = set()
        self.writer = bronze.BronzeWriter(lake, options.flush_rows, options.flush_files)
        self.stats = ExtractStats()
        self.reasons: Counter[str] = Counter()

    def claim(self, midi_id: str) -> bool:
        """Count a file of this shard and say whether it is new (not skipped)."""
        self.stats.files_seen += 1
        if midi_id in self.known:
            self.stats.files_skipped += 1
            self.stats.duplicates += midi_id in self.this_run
            return False
        self.known.add(midi_id)
        self.this_run.add(midi_id)
        return True

    def quarantine(self, source_key: str, midi_id: str, size: int, error: str) -> None:
        self.stats.files_quarantined += 1
        self.reasons[error.split(":")[0].split(" (")[0]] += 1
        self.writer.add_quarantine(source_key, midi_id, size, error)

    def midi_file(self, item: SourceFile) -> None:
        midi_id, data = item.read_capped(self.options.max_bytes)
        if midi_id[0] not in self.owned or not self.claim(midi_id):
            return
        try:
            if data is None:
                raise MidiError(f"over the size cap: {item.size:,} bytes > {self.options.max_bytes:,}")
            notes = parse_notes(data, self.options.max_notes, self.options.max_seconds)
        except MidiError as err:
            self.quarantine(item.key, midi_id, item.size, str(err))
            return
        self.stats.files_extracted += 1
        self.stats.files_empty += len(notes) == 0
        self.stats.notes += len(notes)
        self.stats.unclosed_dropped += notes.unclosed
        self.writer.add_parsed(ParsedFile(midi_id, item.key, set_type_of(midi_id, self.options.split), notes))

    def notes_part(self, item: SourceFile) -> None:
        with item.open() as fh:
            data = fh.read()
        try:
            part = passthrough.open_part(data)
            ids, problem = passthrough.midi_ids(part)
            if problem:
                raise ValueError(problem)
        except ValueError as err:
            part_id = midi_id_of(data)
            if part_id[0] in self.owned and self.claim(part_id):
                self.quarantine(item.key, part_id, len(data), str(err))
            return
        wanted = {i for i in ids if i[0] in self.owned and self.claim(i)}
        if not wanted:
            return
        broken = passthrough.broken_songs(part, wanted)
        for midi_id, reason in sorted(broken.items()):
            self.quarantine(f"{item.key}#{midi_id}", midi_id, 0, reason)
        good = wanted - set(broken)
        index = [{"midi_id": i, "source_key": item.key, "status": "passthrough", "notes": ids[i]} for i in sorted(good)]
        self.stats.files_extracted += len(good)
        self.stats.notes += sum(ids[i] for i in good)
        self.writer.add_stream(passthrough.conformed_batches(part, good, item.key), index)

    def finish(self) -> ExtractStats:
        self.writer.flush()
        self.stats.partitions = sorted(self.writer.partitions)
        self.stats.quarantine_reasons = dict(sorted(self.reasons.items()))
        return self.stats


def extract_shard(
    source: str, lake: Lake, options: ExtractOptions | None = None, shard: int = 0, shards: int = 1
) -> ExtractStats:
    """Extract the new files of one shard of ``source`` into bronze; quarantine bad ones."""
    started = time.perf_counter()
    options = options or ExtractOptions()
    run = _Run(lake, options, shard, shards)
    src = open_source(source, options.aws_conn_id)
    for item in src.midi_files():
        run.midi_file(item)
    for item in src.notes_parts():
        run.notes_part(item)
    stats = run.finish()
    log.info("extract shard %d/%d in %.1fs: %s", shard, shards, time.perf_counter() - started, stats.as_dict())
    return stats


def extract(source: str, lake: Lake, options: ExtractOptions | None = None) -> ExtractStats:
    """Every new file of ``source`` (one shard owning every partition)."""
    return extract_shard(source, lake, options)
