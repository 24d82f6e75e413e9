"""Audio features of one render, from the mastered samples the render worker already holds.

Every feature is computed here, in numpy plus three numba kernels, because the render path
is fast (~2 ms a render) and the libraries that compute them are not: ``make bench``
(``features`` row) times this module against pyloudnorm (integrated loudness, ~6x slower)
and librosa (STFT, MFCCs, centroid, ~25x slower) on the same renders, and the tests check
the readings against them. Even so the features cost about 1.3 ms a render: the render
path's rate roughly halves (the ``features`` row measures it).

- ``lufs``: integrated loudness by ITU-R BS.1770-4: K-weighting (the RBJ shelf at 1,500 Hz,
  +4 dB, and high-pass at 38 Hz, designed for the render's sample rate, as pyloudnorm
  does), 400 ms blocks with 75% overlap, the -70 LUFS absolute and -10 LU relative gates.
  Mono: one channel of weight 1. Null when no block passes the absolute gate (silence).
- ``true_peak_dbtp``: the peak of the signal oversampled 4x by a 48-tap windowed-sinc
  interpolator (BS.1770-4 Annex 2's structure), in dBTP. Its phase 0 passes the samples
  unchanged, so the true peak is never below the sample peak; a stretch of samples whose
  local maximum times the filter's largest absolute tap sum cannot beat the best value so
  far is skipped (exact: the same value as interpolating everything).
- ``zcr``: sign changes per sample pair (a zero counts as positive, as librosa does).
- ``spectral_centroid_hz``, ``spectral_bandwidth_hz``: centroid and spread (p = 2) of the
  phrase's magnitude spectrum, summed over 1,024-sample Hann frames (end to end): the
  magnitude-weighted mean of the frames' centroids, so silent frames weigh nothing.
- ``mfcc``: the mean over frames of 13 MFCCs: 40 Slaney mel bands (librosa's filter
  bank) of the power spectrum, in dB (floor 1e-10, 80 dB below the phrase's top),
  DCT-II orthonormal, as ``librosa.feature.mfcc`` computes them.
- ``onset_count``: peaks of the spectral flux (the mean rise of the dB mel bands frame
  to frame, from silence before the first frame) above a third of its maximum and 1 dB.
- ``f0_hz``, ``f0_error_cents``: for a phrase of one note, YIN (de Cheveigné and Kawahara
  2002) on 2,048 samples from 60 ms after its onset, and the error in cents against the
  note's MIDI pitch (equal temperament, A4 = 440 Hz): the voice's own transpose and
  frequency ratios count as error. Null for other phrases or when YIN finds no period.

RMS is the manifest's existing ``rms`` column (of the same quantised samples).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache

import numpy as np
from numba import njit

N_FFT = 1024
N_MELS = 40
N_MFCC = 13
TOP_DB = 80.0
ONSET_RELATIVE = 1 / 3  # a flux peak counts as an onset above this share of the phrase's largest
ONSET_MIN_DB = 1.0  # ... and above this mean rise per mel band (dB)
TP_PHASES = 4
TP_TAPS = 12  # per phase: 48 taps, as BS.1770-4 Annex 2
TP_BLOCK = 16  # outputs bounded together before interpolating
YIN_WINDOW = 1024
YIN_THRESHOLD = 0.15
F0_OFFSET_S = 0.06  # past the attack
F0_MIN_HZ, F0_MAX_HZ = 30.0, 2000.0

# the manifest columns, in order (render.MANIFEST_SCHEMA gives their types)
FEATURE_COLUMNS = (
    "lufs",
    "true_peak_dbtp",
    "spectral_centroid_hz",
    "spectral_bandwidth_hz",
    "zcr",
    "onset_count",
    "mfcc",
    "f0_hz",
    "f0_error_cents",
)


@dataclass(frozen=True)
class Features:
    lufs: float | None
    true_peak_dbtp: float | None
    spectral_centroid_hz: float
    spectral_bandwidth_hz: float
    zcr: float
    onset_count: int
    mfcc: list[float]
    f0_hz: float | None
    f0_error_cents: float | None

    def row(self) -> dict:
        return {name: getattr(self, name) for name in FEATURE_COLUMNS}


# --- loudness (BS.1770-4) ---


@cache
def k_weighting(sample_rate: int) -> np.ndarray:
    """The two K-weighting biquads for ``sample_rate``, rows (b0, b1, b2, a1, a2) with a0 = 1."""
    w0 = 2 * math.pi * 1500.0 / sample_rate  # high shelf, +4 dB, Q = 1/sqrt(2)
    gain = 10 ** (4.0 / 40)
    alpha = math.sin(w0) / (2 / math.sqrt(2))
    cos, root = math.cos(w0), 2 * math.sqrt(gain) * alpha
    shelf = [
        gain * ((gain + 1) + (gain - 1) * cos + root),
        -2 * gain * ((gain - 1) + (gain + 1) * cos),
        gain * ((gain + 1) + (gain - 1) * cos - root),
        (gain + 1) - (gain - 1) * cos + root,
        2 * ((gain - 1) - (gain + 1) * cos),
        (gain + 1) - (gain - 1) * cos - root,
    ]
    w0 = 2 * math.pi * 38.0 / sample_rate  # high-pass, Q = 0.5
    alpha, cos = math.sin(w0) / (2 * 0.5), math.cos(w0)
    high = [(1 + cos) / 2, -(1 + cos), (1 + cos) / 2, 1 + alpha, -2 * cos, 1 - alpha]
    return np.array([[b0 / a0, b1 / a0, b2 / a0, a1 / a0, a2 / a0] for b0, b1, b2, a0, a1, a2 in (shelf, high)])


@njit(cache=True, nogil=True)
def _k_squares(x: np.ndarray, sos: np.ndarray, step: int) -> tuple[np.ndarray, int]:
    """One pass: sums of squares of the K-weighted signal per ``step`` samples, and sign changes."""
    subs = np.zeros(len(x) // step)
    crossings = 0
    z1 = z2 = w1 = w2 = 0.0
    b0, b1, b2, a1, a2 = sos[0, 0], sos[0, 1], sos[0, 2], sos[0, 3], sos[0, 4]
    c0, c1, c2, d1, d2 = sos[1, 0], sos[1, 1], sos[1, 2], sos[1, 3], sos[1, 4]
    negative = x[0] < 0 if len(x) else False
    for i in range(len(subs) * step):
        s = x[i]
        y = b0 * s + z1  # transposed direct form II
        z1 = b1 * s - a1 * y + z2
        z2 = b2 * s - a2 * y
        k = c0 * y + w1
        w1 = c1 * y - d1 * k + w2
        w2 = c2 * y - d2 * k
        subs[i // step] += k * k
        now = s < 0
        crossings += now != negative
        negative = now
    for i in range(len(subs) * step, len(x)):
        now = x[i] < 0
        crossings += now != negative
        negative = now
    return subs, crossings


def gated_loudness(subs: np.ndarray, step: int) -> float | None:
    """Integrated loudness from sums of squares per 100 ms (``step`` samples): 400 ms blocks
    every 100 ms, absolute then relative gate. None when no block passes the absolute gate."""
    if len(subs) < 4:
        return None
    blocks = (subs[:-3] + subs[1:-2] + subs[2:-1] + subs[3:]) / (4 * step)
    with np.errstate(divide="ignore"):
        loud = -0.691 + 10 * np.log10(blocks)
    kept = blocks[loud > -70.0]
    if not len(kept):
        return None
    relative = -0.691 + 10 * math.log10(kept.mean()) - 10.0
    kept = blocks[(loud > -70.0) & (loud > relative)]
    return -0.691 + 10 * math.log10(kept.mean())


# --- true peak ---


@cache
def true_peak_filter() -> np.ndarray:
    """(phases, taps) of a 4x interpolator: Hann-windowed sinc, each phase summing to 1."""
    half = TP_TAPS // 2 - 1  # phase p, tap k: y[i + p/4] = sum_k phases[p, k] x[i - half + k]
    t = half - np.arange(TP_TAPS)[None, :] + np.arange(TP_PHASES)[:, None] / TP_PHASES
    phases = np.sinc(t) * (0.5 + 0.5 * np.cos(np.pi * t / (TP_TAPS / 2 + 0.5)))
    return phases / phases.sum(axis=1, keepdims=True)


@njit(cache=True, nogil=True)
def _true_peak(x: np.ndarray, phases: np.ndarray, sample_peak: float) -> float:
    """Max |4x interpolation|: a block of outputs whose bound (the largest sample its taps
    reach × the largest absolute tap sum of a phase) cannot beat the best so far is skipped."""
    taps = phases.shape[1]
    half = taps // 2 - 1
    gain = 0.0
    for p in range(phases.shape[0]):
        total = 0.0
        for k in range(taps):
            total += abs(phases[p, k])
        gain = max(gain, total)
    n = len(x)
    padded = np.zeros(n + taps)  # output i reads padded[i : i + taps] = x[i - half : i - half + taps]
    padded[half : half + n] = x
    best = sample_peak
    for start in range(0, n, TP_BLOCK):
        stop = min(n, start + TP_BLOCK)
        local = 0.0
        for j in range(start, stop + taps - 1):
            local = max(local, abs(padded[j]))
        if local * gain <= best:
            continue
        for i in range(start, stop):
            for p in range(1, phases.shape[0]):
                acc = 0.0
                for k in range(taps):
                    acc += phases[p, k] * padded[i + k]
                best = max(best, abs(acc))
    return best


# --- spectrum ---


@cache
def _hann(n_fft: int) -> np.ndarray:
    return 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)  # periodic, as librosa's


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    """Slaney's mel scale: linear below 1 kHz, logarithmic above."""
    hz = np.asarray(hz, dtype=np.float64)
    mel = hz / (200.0 / 3)
    log = hz >= 1000.0
    return np.where(log, 15.0 + np.log(np.maximum(hz, 1e-9) / 1000.0) / (np.log(6.4) / 27.0), mel)


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    hz = mel * (200.0 / 3)
    return np.where(mel >= 15.0, 1000.0 * np.exp((np.log(6.4) / 27.0) * (mel - 15.0)), hz)


@cache
def mel_filters(sample_rate: int, n_fft: int = N_FFT, n_mels: int = N_MELS) -> np.ndarray:
    """(n_mels, bins) triangular filters, area-normalised (Slaney), from 0 Hz to Nyquist."""
    bins = np.linspace(0, sample_rate / 2, n_fft // 2 + 1)
    edges = _mel_to_hz(np.linspace(_hz_to_mel(0.0), _hz_to_mel(sample_rate / 2), n_mels + 2))
    widths = np.diff(edges)
    ramps = edges[:, None] - bins[None, :]
    lower = -ramps[:-2] / widths[:-1, None]
    upper = ramps[2:] / widths[1:, None]
    weights = np.maximum(0, np.minimum(lower, upper))
    return weights * (2.0 / (edges[2:] - edges[:-2]))[:, None]


@cache
def mel_bands(sample_rate: int) -> tuple[np.ndarray, np.ndarray]:
    """The mel filters as (weights, first and last nonzero bin per band): a triangle spans few bins."""
    weights = mel_filters(sample_rate)
    nonzero = weights > 0
    first = nonzero.argmax(axis=1)
    last = weights.shape[1] - nonzero[:, ::-1].argmax(axis=1)
    return weights, np.stack([first, last], axis=1)


@njit(cache=True, nogil=True)
def _mel(power: np.ndarray, weights: np.ndarray, spans: np.ndarray) -> np.ndarray:
    """power @ weights.T over each band's span (a BLAS product would start its threads)."""
    out = np.zeros((power.shape[0], weights.shape[0]))
    for f in range(power.shape[0]):
        for m in range(weights.shape[0]):
            acc = 0.0
            for b in range(spans[m, 0], spans[m, 1]):
                acc += power[f, b] * weights[m, b]
            out[f, m] = acc
    return out


@cache
def dct_matrix(n_mfcc: int = N_MFCC, n_mels: int = N_MELS) -> np.ndarray:
    """DCT-II, orthonormal: (n_mfcc, n_mels)."""
    k = np.arange(n_mfcc)[:, None]
    n = np.arange(n_mels)[None, :]
    basis = np.cos(np.pi * k * (2 * n + 1) / (2 * n_mels)) * math.sqrt(2.0 / n_mels)
    basis[0] /= math.sqrt(2.0)
    return basis


def power_frames(x: np.ndarray) -> np.ndarray:
    """(frames, bins) power spectra of Hann frames laid end to end (overlapping frames cost 8x in numpy's
    FFT, and a 46 ms step still separates notes); a phrase shorter than a frame is zero-padded."""
    if len(x) < N_FFT:
        x = np.pad(x, (0, N_FFT - len(x)))
    frames = x[: len(x) // N_FFT * N_FFT].reshape(-1, N_FFT)
    spectrum = np.fft.rfft(frames * _hann(N_FFT), axis=1)
    return spectrum.real**2 + spectrum.imag**2


def power_to_db(power: np.ndarray) -> np.ndarray:
    db = 10.0 * np.log10(np.maximum(power, 1e-10))
    return np.maximum(db, db.max() - TOP_DB)


def onsets(log_mel: np.ndarray) -> int:
    """Peaks of the spectral flux (mean rise of the dB mel bands) above the thresholds."""
    floor = np.full((1, log_mel.shape[1]), log_mel.min())
    flux = np.maximum(0.0, np.diff(np.vstack([floor, log_mel]), axis=0)).mean(axis=1)
    if not len(flux) or flux.max() < ONSET_MIN_DB:
        return 0
    padded = np.concatenate([[0.0], flux, [0.0]])
    peaks = (flux > padded[:-2]) & (flux >= padded[2:]) & (flux >= max(ONSET_MIN_DB, ONSET_RELATIVE * flux.max()))
    return int(np.count_nonzero(peaks))


# --- f0 ---


def yin(x: np.ndarray, sample_rate: int) -> float | None:
    """f0 of ``x`` (at least 2 × YIN_WINDOW samples) by YIN, or None when no dip is below the
    threshold or the period found is outside F0_MIN_HZ..F0_MAX_HZ."""
    w = YIN_WINDOW
    x = x[: 2 * w]
    if len(x) < 2 * w or not x.any():
        return None
    tau_min, tau_max = max(2, int(sample_rate / F0_MAX_HZ)), min(w - 1, int(sample_rate / F0_MIN_HZ))
    size = 4 * w
    corr = np.fft.irfft(np.fft.rfft(x, size) * np.conj(np.fft.rfft(x[:w], size)), size)[:w]
    squares = np.concatenate([[0.0], np.cumsum(x * x)])
    shifted = squares[np.arange(w) + w] - squares[np.arange(w)]  # energy of x[tau : tau + w]
    diff = squares[w] + shifted - 2 * corr
    diff[0] = 0.0
    cumulative = np.cumsum(diff[1:]) / np.arange(1, w)
    cmnd = np.ones(w)
    cmnd[1:] = diff[1:] / np.maximum(cumulative, 1e-20)
    below = np.flatnonzero(cmnd[tau_min:tau_max] < YIN_THRESHOLD)
    if not len(below):
        return None
    tau = tau_min + int(below[0])
    while tau + 1 < tau_max and cmnd[tau + 1] < cmnd[tau]:
        tau += 1
    a, b, c = cmnd[tau - 1], cmnd[tau], cmnd[tau + 1]
    shift = 0.5 * (a - c) / (a - 2 * b + c) if a - 2 * b + c > 0 else 0.0
    f0 = sample_rate / (tau + shift)
    return float(f0) if F0_MIN_HZ <= f0 <= F0_MAX_HZ else None


def cents(f0: float, pitch: int) -> float:
    return 1200.0 * math.log2(f0 / (440.0 * 2 ** ((pitch - 69) / 12)))


# --- one render ---


def loudness(x: np.ndarray, sample_rate: int) -> tuple[float | None, int]:
    """Integrated loudness (LUFS, None for silence) of float samples, and their sign changes."""
    step = round(0.1 * sample_rate)
    subs, crossings = _k_squares(x, k_weighting(sample_rate), step)
    return gated_loudness(subs, step), crossings


def spectral(x: np.ndarray, sample_rate: int) -> tuple[float, float, np.ndarray, int]:
    """Centroid, bandwidth (Hz), MFCC means and onset count of float samples."""
    power = power_frames(x)
    magnitude = np.sqrt(power).sum(axis=0)
    freqs = np.linspace(0, sample_rate / 2, len(magnitude))
    total = magnitude.sum()
    centroid = float(freqs @ magnitude / total) if total > 0 else 0.0
    bandwidth = float(np.sqrt(((freqs - centroid) ** 2) @ magnitude / total)) if total > 0 else 0.0
    log_mel = power_to_db(_mel(power, *mel_bands(sample_rate)))
    return centroid, bandwidth, (log_mel @ dct_matrix().T).mean(axis=0), onsets(log_mel)


def features(
    pcm: np.ndarray,
    sample_rate: int,
    notes: Sequence[tuple] = (),
    samples_per_beat: float = 0.0,
    sample_peak: float | None = None,
) -> Features:
    """The features of one render's samples (16-bit values, full scale 32,768) and its notes
    (``(start beats, duration, velocity, pitch)``; f0 only for one note). ``sample_peak``
    (full scale 1.0), when the caller knows it, saves a pass over the samples."""
    x = np.asarray(pcm, dtype=np.float64) / 32768.0
    lufs, crossings = loudness(x, sample_rate)
    if sample_peak is None:
        sample_peak = float(np.abs(x).max()) if len(x) else 0.0
    tp = _true_peak(x, true_peak_filter(), sample_peak) if sample_peak > 0 else 0.0
    centroid, bandwidth, mfcc, onset_count = spectral(x, sample_rate)
    f0 = error = None
    if len(notes) == 1 and samples_per_beat > 0:
        onset = round(notes[0][0] * samples_per_beat + F0_OFFSET_S * sample_rate)
        f0 = yin(x[onset:], sample_rate)
        error = cents(f0, notes[0][3]) if f0 else None
    return Features(
        lufs=lufs,
        true_peak_dbtp=20 * math.log10(tp) if tp > 0 else None,
        spectral_centroid_hz=centroid,
        spectral_bandwidth_hz=bandwidth,
        zcr=crossings / (len(x) - 1) if len(x) > 1 else 0.0,
        onset_count=onset_count,
        mfcc=[float(v) for v in mfcc],
        f0_hz=f0,
        f0_error_cents=error,
    )
