"""Validation benchmark: sha256 + audio QA of gold renders, threaded (production) against
one render at a time, on the same renders in a local lake."""

from __future__ import annotations

import tempfile
import time

from dx7lake.gold.engine import RenderSpec
from dx7lake.gold.patches import choose_voices
from dx7lake.gold.render import PhraseRenderer
from dx7lake.lake import LocalLake
from dx7lake.quality.validate import READ_WORKERS, Validation, check_objects

from .render import chorale_phrases


def run() -> dict:
    (voice,) = choose_voices("epiano")
    renderer = PhraseRenderer(RenderSpec())
    with tempfile.TemporaryDirectory() as tmp:
        lake = LocalLake(tmp)
        rows = []
        for content_hash, notes in chorale_phrases()[:300]:
            flac, row = renderer.render(voice, content_hash, notes)
            lake.put(row["key"], flac)
            rows.append(row)

        def renders_per_s(workers: int) -> float:
            result = Validation()
            started = time.perf_counter()
            check_objects(lake, rows, result, workers=workers)
            elapsed = time.perf_counter() - started
            if not result.passed:
                raise AssertionError(result.failures[:3])
            return len(rows) / elapsed

        serial = renders_per_s(1)
        threaded = renders_per_s(READ_WORKERS)
    return {
        "name": "validate",
        "renders_per_s": round(threaded, 1),
        "baseline": {"name": "one render at a time", "renders_per_s": round(serial, 1)},
        "ratio": round(threaded / serial, 2),
        "workers": READ_WORKERS,
    }
