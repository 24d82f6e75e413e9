"""Render benchmark: the production path against a naive per-note loop on the same phrases."""

from __future__ import annotations

import time

from ..patches import choose_voices
from ..render import NoteRenderer, RenderSpec, render_phrase


def _phrases(n: int) -> list[tuple[str, list[tuple[float, float, int, int]]]]:
    """Chorale-like four-voice phrases: quarter-note chords over a small pitch range."""
    import random

    rng = random.Random(7)
    out = []
    for i in range(n):
        notes = [
            (float(beat), 1.0, rng.choice((70, 80, 90)), base + rng.choice((0, 2, 4, 5, 7)))
            for beat in range(4)
            for base in (48, 55, 62, 67)
        ]
        out.append((f"{i:032x}", sorted(notes)))
    return out


def run() -> dict:
    """Production render path (memoised notes) vs a naive loop (every note rendered afresh)."""
    phrases = _phrases(200)
    (voice,) = choose_voices("epiano")
    spec = RenderSpec()

    def run(memoise: bool) -> float:
        renderer = NoteRenderer(spec, memoise=memoise)
        started = time.perf_counter()
        for content_hash, notes in phrases:
            render_phrase(renderer, voice, content_hash, notes)
        return len(phrases) / (time.perf_counter() - started)

    naive = run(False)
    fast = run(True)
    return {
        "name": "render",
        "phrases_per_s": round(fast, 1),
        "phrases_per_s_per_core": round(fast, 1),  # one process: one core
        "baseline": {"name": "naive per-note render + mix + FLAC", "phrases_per_s": round(naive, 1)},
        "ratio": round(fast / naive, 2),
        "realtime_factor": round(fast * spec.total_samples / spec.sample_rate, 1),
    }
