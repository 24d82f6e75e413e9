"""Features benchmark: what computing a render's audio features costs the render path, and
our numpy/numba code against the libraries that compute the same readings.

Render rate with and without features: a fresh renderer (cold memo, as ``render``'s row)
renders the chorale phrases for the demo voices through ``PhraseRenderer.render`` (FLAC,
sha256, manifest row), once as it is and once with the features call replaced by one that
computes nothing, in interleaved rounds (best of each: the machine may be shared), per CPU
second of this process. The library rows time
integrated loudness against pyloudnorm and the spectral features (MFCCs, centroid) against
librosa on the same mastered renders, with the largest disagreement of each.
"""

from __future__ import annotations

import time
from contextlib import ExitStack
from importlib.metadata import version
from unittest import mock

import librosa
import numpy as np
import pyloudnorm

from dx7lake.config import DEFAULT_PATCHES
from dx7lake.gold import render
from dx7lake.gold.engine import RenderSpec
from dx7lake.gold.features import N_FFT, N_MELS, N_MFCC, features, loudness, spectral
from dx7lake.gold.patches import choose_voices
from dx7lake.gold.render import PhraseRenderer

from .render import chorale_phrases

PHRASES = 300
ROUNDS = 3
LIBRARY_RENDERS = 100


class _NoFeatures:
    def row(self) -> dict:
        return {}


def _rate(phrases, voices, spec, with_features: bool) -> float:
    renderer = PhraseRenderer(spec)
    with ExitStack() as stack:
        if not with_features:
            stack.enter_context(mock.patch.object(render, "features", lambda *args: _NoFeatures()))
        started = time.process_time()
        for voice in voices:
            for content_hash, notes in phrases:
                renderer.render(voice, content_hash, notes)
        return len(phrases) * len(voices) / (time.process_time() - started)


def _best(fn, items, rounds: int = ROUNDS) -> tuple[float, list]:
    """Best CPU seconds per item over ``rounds``, and the last round's results."""
    best, out = float("inf"), []
    for _ in range(rounds):
        started = time.process_time()
        out = [fn(item) for item in items]
        best = min(best, time.process_time() - started)
    return best / len(items), out


def _librosa_spectral(x: np.ndarray, sr: int) -> tuple[float, np.ndarray]:
    magnitude = np.abs(librosa.stft(x, n_fft=N_FFT, hop_length=N_FFT, center=False))
    centroid = librosa.feature.spectral_centroid(S=magnitude.sum(axis=1, keepdims=True), sr=sr, n_fft=N_FFT)
    mfcc = librosa.feature.mfcc(S=librosa.power_to_db(librosa.feature.melspectrogram(
        S=magnitude**2, sr=sr, n_fft=N_FFT, n_mels=N_MELS)), n_mfcc=N_MFCC)  # fmt: skip
    return float(centroid[0, 0]), mfcc.mean(axis=1)


def run() -> dict:
    spec = RenderSpec()
    phrases = chorale_phrases()[:PHRASES]
    voices = choose_voices(DEFAULT_PATCHES)
    features(np.ones(spec.total_samples, dtype=np.int32), spec.sample_rate)  # numba kernels: load or compile
    rates: dict[bool, float] = {False: 0.0, True: 0.0}
    for _ in range(ROUNDS):
        for with_features in rates:
            rates[with_features] = max(rates[with_features], _rate(phrases, voices, spec, with_features))

    renderer = PhraseRenderer(spec)
    mixes = [(renderer.master.master(renderer.engine.phrase(v, n)).pcm.copy(), n) for v in voices for _, n in phrases][
        :LIBRARY_RENDERS
    ]
    xs = [pcm / 32768.0 for pcm, _ in mixes]
    sr = spec.sample_rate
    per_render, _ = _best(lambda m: features(m[0], sr, m[1], spec.samples_per_beat), mixes)
    meter = pyloudnorm.Meter(sr)
    ours_lufs, ours = _best(lambda x: loudness(x, sr)[0], xs)
    lib_lufs, lib = _best(meter.integrated_loudness, xs)
    lufs_diff = max(abs(a - b) for a, b in zip(ours, lib, strict=True) if a is not None)
    _librosa_spectral(xs[0], sr)  # librosa's first call compiles its numba kernels
    ours_spec, ours_s = _best(lambda x: spectral(x, sr), xs)
    lib_spec, lib_s = _best(lambda x: _librosa_spectral(x, sr), xs)
    return {
        "name": "features",
        "renders": len(phrases) * len(voices),
        "render_path_per_cpu_s": {
            "without_features": round(rates[False], 1),
            "with_features": round(rates[True], 1),
        },
        "render_rate_change": round(rates[True] / rates[False] - 1, 3),
        "features_ms_per_render": round(1000 * per_render, 3),
        "loudness": {
            "ours_ms": round(1000 * ours_lufs, 3),
            "baseline": {"name": "pyloudnorm " + version("pyloudnorm"), "ms": round(1000 * lib_lufs, 3)},
            "ratio": round(lib_lufs / ours_lufs, 2),
            "max_abs_diff_lu": float(f"{lufs_diff:.3g}"),
        },
        "spectral": {
            "ours_ms": round(1000 * ours_spec, 3),
            "baseline": {
                "name": f"librosa {librosa.__version__} (stft, centroid, mfcc)",
                "ms": round(1000 * lib_spec, 3),
            },
            "ratio": round(lib_spec / ours_spec, 2),
            "max_abs_diff_centroid_hz": float(
                f"{max(abs(a[0] - b[0]) for a, b in zip(ours_s, lib_s, strict=True)):.3g}"
            ),
            "max_abs_diff_mfcc": float(
                f"{max(np.abs(a[2] - b[1]).max() for a, b in zip(ours_s, lib_s, strict=True)):.3g}"
            ),
        },
    }
