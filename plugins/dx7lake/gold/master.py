"""Mastering a phrase mix: effects, release fade, gain staging with headroom, 16-bit FLAC.

Gain staging: the summed engine output gets a fixed gain, so levels compare across
phrases, unless the phrase would then peak above -1 dBFS; then it is scaled down to
exactly that ceiling. Nothing clips, and the gain used is recorded. Peak and RMS are
measured on the quantised samples, so they are what a decoder of the FLAC will see.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .effects import EffectsChain
from .engine import RenderSpec
from .flac import FlacEncoder

# A single DX7 note peaks near 3.0 (engine units) at full velocity: 0.1 leaves room for chords.
BASE_GAIN = 0.1
PEAK_CEILING = 0.891  # -1 dBFS
FULL_SCALE = 32767.0


@dataclass(frozen=True)
class Mastered:
    pcm: np.ndarray  # mono 16-bit samples, held as int32 (what libFLAC takes)
    flac: bytes
    gain: float
    peak: float  # of the quantised samples, full scale = 1.0
    rms: float


def staged_gain(raw_peak: float) -> float:
    return BASE_GAIN if raw_peak * BASE_GAIN <= PEAK_CEILING else PEAK_CEILING / raw_peak


def fade_ramp(spec: RenderSpec) -> np.ndarray:
    return np.linspace(1.0, 0.0, spec.fade_samples)


class Master:
    """Turns a float phrase mix into FLAC; owns its effects chain and scratch buffers."""

    def __init__(self, spec: RenderSpec) -> None:
        self.spec = spec
        self.effects = EffectsChain.from_json(spec.effects, spec.sample_rate)
        self.encoder = FlacEncoder(spec.sample_rate, spec.flac_level)
        self._ramp = fade_ramp(spec)
        self._squares = np.empty(spec.total_samples)

    def master(self, mix: np.ndarray) -> Mastered:
        """Masters ``mix`` in place (it is the engine's scratch buffer)."""
        if self.effects:
            mix[:] = self.effects.process(mix)
        if len(self._ramp):
            mix[-len(self._ramp) :] *= self._ramp
        high, low = (float(mix.max()), float(mix.min())) if len(mix) else (0.0, 0.0)
        gain = staged_gain(max(high, -low))
        scale = gain * FULL_SCALE
        np.multiply(mix, scale, out=mix)
        np.rint(mix, out=mix)
        pcm = mix.astype(np.int32)
        # rint(x * scale) is monotonic in x: the quantised extremes are those of the mix
        peak = max(float(np.rint(high * scale)), -float(np.rint(low * scale))) / 32768.0
        # squares of integers sum exactly in float64; np.dot would go through BLAS threads
        squares = np.square(mix, out=self._squares[: len(mix)])
        rms = math.sqrt(float(squares.sum()) / len(mix)) / 32768.0 if len(mix) else 0.0
        return Mastered(pcm, self.encoder.encode(pcm), gain, peak, rms)
