"""FLAC benchmark: the two encoders that wheels bring, on the same mastered renders.

The samples are real renders: the mastered 16-bit mixes of chorale phrase contents (the
render benchmark's phrases) for both demo voices. Each encoder encodes all of them, in
interleaved rounds (best of each, robust to a busy machine); every stream is decoded by
libsndfile and must give back the samples exactly.
"""

from __future__ import annotations

import io
import time

import numpy as np
import soundfile as sf

from dx7lake.gold.engine import RenderSpec
from dx7lake.gold.flac import BACKENDS, FlacEncoder, default_backend
from dx7lake.gold.patches import choose_voices
from dx7lake.gold.render import PhraseRenderer

from .render import chorale_phrases

PHRASES = 400
ROUNDS = 3


def _mastered(spec: RenderSpec) -> list[np.ndarray]:
    renderer = PhraseRenderer(spec)
    phrases = chorale_phrases(10)[: PHRASES // 2]
    return [
        renderer.master.master(renderer.engine.phrase(voice, notes)).pcm.copy()
        for voice in choose_voices("epiano,bell")
        for _, notes in phrases
    ]


def run() -> dict:
    spec = RenderSpec()
    pcms = _mastered(spec)
    encoders = {name: FlacEncoder(spec.sample_rate, spec.flac_level, name) for name in BACKENDS}
    best = dict.fromkeys(BACKENDS, float("inf"))
    sizes: dict[str, int] = {}
    for _ in range(ROUNDS):
        for name, encoder in encoders.items():
            started = time.process_time()
            streams = [encoder.encode(pcm) for pcm in pcms]
            best[name] = min(best[name], time.process_time() - started)
            sizes[name] = sum(map(len, streams))
    lossless = all(
        np.array_equal(sf.read(io.BytesIO(encoder.encode(pcm)), dtype="int16")[0], pcm)
        for encoder in encoders.values()
        for pcm in pcms[:50]
    )
    audio_s = sum(map(len, pcms)) / spec.sample_rate
    per_s = {name: len(pcms) / best[name] for name in BACKENDS}
    return {
        "name": "flac",
        "default": default_backend(),
        "renders": len(pcms),
        "encoders": {
            name: {
                "library": encoders[name].name,
                "renders_per_cpu_s": round(per_s[name], 1),
                "ms_per_render": round(1000 / per_s[name], 3),
                "realtime_factor": round(audio_s / best[name], 1),
                "mean_bytes": round(sizes[name] / len(pcms)),
            }
            for name in BACKENDS
        },
        "ratio_libflac_vs_libsndfile": round(per_s["libflac"] / per_s["libsndfile"], 2),
        "lossless": lossless,
    }
