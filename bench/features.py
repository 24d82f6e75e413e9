"""Features benchmark: what computing a render's audio features costs the render path, and
our numpy/numba code against the libraries that compute the same readings.

Render rate with and without features, per corpus (the chorale phrases, and the real-world
sample of ``bench.render`` when present): a fresh renderer (cold memo, as ``render``'s row)
renders the phrases for the demo voices through ``PhraseRenderer.render`` (FLAC, sha256,
manifest row), as it is and with the features call replaced by one that computes nothing,
the two taking turns render by render (best of three rounds: the machine may be shared),
per CPU second of this process. ``features_ms`` splits one render's features into their parts on that
corpus's mastered renders. The library rows time integrated loudness against pyloudnorm,
the spectral features (MFCCs, centroid) against librosa and the true peak against a 4x
oversampling of every sample (numpy's convolution), on the same renders, with the largest
disagreement of each.
"""

from __future__ import annotations

import time
from importlib.metadata import version
from unittest import mock

import librosa
import numpy as np
import pyloudnorm

from dx7lake.config import DEFAULT_PATCHES
from dx7lake.gold import render
from dx7lake.gold.engine import RenderSpec
from dx7lake.gold.features import (
    F0_OFFSET_S,
    N_FFT,
    N_MELS,
    N_MFCC,
    SCALE,
    YIN_WINDOW,
    features,
    loudness,
    spectral,
    true_peak,
    true_peak_filter,
    yin,
)
from dx7lake.gold.patches import choose_voices
from dx7lake.gold.render import PhraseRenderer

from .render import chorale_phrases, realworld_phrases

PHRASES = {"chorales": 300, "realworld": 150}
ROUNDS = 3
LIBRARY_RENDERS = 100


class _NoFeatures:
    def row(self) -> dict:
        return {}


def _rates(phrases, voices, spec, variants: dict) -> dict[str, float]:
    """Renders per CPU second of each variant of ``features`` (name -> function), each with its
    own fresh renderer (cold memo, as ``render``'s row), taking turns render by render (the
    machine may be shared: a slow spell falls on all of them alike), best of ROUNDS."""
    best = dict.fromkeys(variants, 0.0)
    for _ in range(ROUNDS):
        renderers = {name: PhraseRenderer(spec) for name in variants}
        spent = dict.fromkeys(variants, 0.0)
        turns = [(v, p) for v in voices for p in phrases]
        for i, (voice, (content_hash, notes)) in enumerate(turns):
            for name in [*variants][i % len(variants) :] + [*variants][: i % len(variants)]:
                with mock.patch.object(render, "features", variants[name]):
                    started = time.process_time()
                    renderers[name].render(voice, content_hash, notes)
                    spent[name] += time.process_time() - started
        for name in variants:
            best[name] = max(best[name], len(phrases) * len(voices) / spent[name])
    return best


def _best(fn, items, rounds: int = ROUNDS) -> tuple[float, list]:
    """Best CPU seconds per item over ``rounds``, and the last round's results."""
    best, out = float("inf"), []
    for _ in range(rounds):
        started = time.process_time()
        out = [fn(item) for item in items]
        best = min(best, time.process_time() - started)
    return best / len(items), out


def _mixes(phrases, voices, spec) -> list[tuple]:
    """(samples, sample peak, notes) of the mastered renders, as the worker holds them."""
    renderer = PhraseRenderer(spec)
    mixes = [(renderer.master.master(renderer.engine.phrase(v, n)), n) for v in voices for _, n in phrases]
    return [(out.pcm.copy(), out.peak, notes) for out, notes in mixes[:LIBRARY_RENDERS]]


def _corpus(phrases, voices, spec) -> dict:
    """Render rate with and without features on ``phrases``, and the features' parts (ms a render)."""
    rates = _rates(phrases, voices, spec, {"without": lambda *args: _NoFeatures(), "with": features})
    sr, per_beat = spec.sample_rate, spec.samples_per_beat
    mixes = _mixes(phrases, voices, spec)
    onsets = [(pcm, round(notes[0][0] * per_beat + F0_OFFSET_S * sr)) for pcm, _, notes in mixes if len(notes) == 1]
    single = [pcm[onset : onset + 2 * YIN_WINDOW] for pcm, onset in onsets]  # YIN's window, as features cuts it

    def ms(fn, items) -> float:
        return round(1000 * _best(fn, items)[0], 3)

    return {
        "renders": len(phrases) * len(voices),
        "render_path_per_cpu_s": {
            "without_features": round(rates["without"], 1),
            "with_features": round(rates["with"], 1),
        },
        "render_rate_change": round(rates["with"] / rates["without"] - 1, 3),
        "features_ms": {
            "all": ms(lambda m: features(m[0], sr, m[2], per_beat, m[1]), mixes),
            "loudness_and_zcr": ms(lambda m: loudness(m[0], sr, SCALE), mixes),
            "true_peak": ms(lambda m: true_peak(m[0], m[1], SCALE), mixes),
            "spectral": ms(lambda m: spectral(m[0], sr, SCALE), mixes),
            "f0_single_notes": ms(lambda w: yin(w * SCALE, sr), single) if single else None,
        },
    }


def _librosa_spectral(x: np.ndarray, sr: int) -> tuple[float, np.ndarray]:
    magnitude = np.abs(librosa.stft(x, n_fft=N_FFT, hop_length=N_FFT, center=False))
    centroid = librosa.feature.spectral_centroid(S=magnitude.sum(axis=1, keepdims=True), sr=sr, n_fft=N_FFT)
    mfcc = librosa.feature.mfcc(S=librosa.power_to_db(librosa.feature.melspectrogram(
        S=magnitude**2, sr=sr, n_fft=N_FFT, n_mels=N_MELS)), n_mfcc=N_MFCC)  # fmt: skip
    return float(centroid[0, 0]), mfcc.mean(axis=1)


def _oversampled_peak(x: np.ndarray) -> float:
    return max(float(np.abs(np.convolve(x, phase[::-1])).max()) for phase in true_peak_filter())


def _against_libraries(mixes, sr: int) -> dict:
    xs = [pcm * SCALE for pcm, _, _ in mixes]
    meter = pyloudnorm.Meter(sr)
    ours_lufs, ours = _best(lambda x: loudness(x, sr)[0], xs)
    lib_lufs, lib = _best(meter.integrated_loudness, xs)
    lufs_diff = max(abs(a - b) for a, b in zip(ours, lib, strict=True) if a is not None)
    _librosa_spectral(xs[0], sr)  # librosa's first call compiles its numba kernels
    ours_spec, ours_s = _best(lambda x: spectral(x, sr), xs)
    lib_spec, lib_s = _best(lambda x: _librosa_spectral(x, sr), xs)
    ours_tp, ours_t = _best(lambda m: true_peak(m[0], m[1], SCALE), mixes)
    full_tp, full_t = _best(_oversampled_peak, xs)
    return {
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
        "true_peak": {
            "ours_ms": round(1000 * ours_tp, 3),
            "baseline": {"name": "numpy convolve: every sample oversampled 4x", "ms": round(1000 * full_tp, 3)},
            "ratio": round(full_tp / ours_tp, 2),
            "max_rel_diff": float(f"{max(abs(a / b - 1) for a, b in zip(ours_t, full_t, strict=True)):.3g}"),
        },
    }


def run() -> dict:
    spec = RenderSpec()
    voices = choose_voices(DEFAULT_PATCHES)
    features(np.ones(spec.total_samples, dtype=np.int32), spec.sample_rate)  # numba kernels: load or compile
    corpora = {"chorales": chorale_phrases(), "realworld": realworld_phrases()}
    result = {"name": "features"}
    for name, phrases in corpora.items():
        phrases = phrases[: PHRASES[name]]
        result[name] = _corpus(phrases, voices, spec) if phrases else {"skipped": "no real-world corpus"}
    result["against_libraries"] = _against_libraries(
        _mixes(corpora["chorales"][: PHRASES["chorales"]], voices, spec), spec.sample_rate
    )
    return result
