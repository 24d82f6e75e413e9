"""Validation benchmark: sha256 + audio QA of gold renders as validation runs them (reader
threads, audio checks in a process per core) against one render at a time in this process,
on the same renders in a local lake: enough of them that validation starts its pool."""

from __future__ import annotations

import tempfile
import time

from dx7lake.config import load_settings
from dx7lake.gold.engine import RenderSpec
from dx7lake.gold.patches import choose_voices
from dx7lake.gold.pool import worker_count
from dx7lake.gold.render import PhraseRenderer
from dx7lake.lake import LocalLake
from dx7lake.quality.validate import POOL_MIN_RENDERS, Validation, check_objects

from .render import chorale_phrases


def run() -> dict:
    (voice,) = choose_voices("epiano")
    renderer = PhraseRenderer(RenderSpec())
    readers = load_settings().validation_readers
    with tempfile.TemporaryDirectory() as tmp:
        lake = LocalLake(tmp)
        rows = []
        for content_hash, notes in chorale_phrases()[: POOL_MIN_RENDERS + 200]:
            flac, row = renderer.render(voice, content_hash, notes)
            lake.put(row["key"], flac)
            rows.append(row)

        def renders_per_s(**workers: int | None) -> float:
            result = Validation()
            started = time.perf_counter()
            check_objects(lake, rows, result, **workers)
            elapsed = time.perf_counter() - started
            if not result.passed:
                raise AssertionError(result.failures[:3])
            return len(rows) / elapsed

        serial = renders_per_s(readers=1, processes=1)
        production = renders_per_s(readers=readers)
    return {
        "name": "validate",
        "renders": len(rows),
        "renders_per_s": round(production, 1),
        "baseline": {"name": "one render at a time", "renders_per_s": round(serial, 1)},
        "ratio": round(production / serial, 2),
        "readers": readers,
        "processes": worker_count(),
    }
