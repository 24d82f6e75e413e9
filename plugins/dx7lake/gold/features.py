"""Audio features of one render, from the mastered samples the render worker already holds.

Every feature is computed here, in numba kernels on the 16-bit samples themselves (no float
copy of the render; the full scale 2^15 is a power of two, so scaling anywhere is exact) and
numpy's FFT, because the render path is fast (~1.9 ms a render) and the libraries that
compute them are not: ``make bench`` (``features`` row) times this module against
pyloudnorm (integrated loudness, ~12x slower), librosa (STFT, MFCCs, centroid, ~30x) and a
4x oversampling of every sample (true peak, ~25x) on the same renders, and the tests check
the readings against them. The features cost about 0.5 ms a render measured alone (FFT
~0.15, the pass after it ~0.07, loudness ~0.13, true peak ~0.07-0.09, and YIN ~0.2 for a
one-note phrase only) and ~0.75 ms inside the render path (caches shared with the engine
and FLAC): the render rate drops ~27% on the chorales and ~10% on the real-world sample
(whose denser phrases take longer to render; the ``features`` row measures both), against
44% and 17% for the first version of this module. The readings are that version's to the
last rounding digit (~1e-12): old manifests stay valid.

- ``lufs``: integrated loudness by ITU-R BS.1770-4: K-weighting (the RBJ shelf at 1,500 Hz,
  +4 dB, and high-pass at 38 Hz, designed for the render's sample rate, as pyloudnorm
  does), 400 ms blocks with 75% overlap, the -70 LUFS absolute and -10 LU relative gates.
  Mono: one channel of weight 1. Null when no block passes the absolute gate (silence).
- ``true_peak_dbtp``: the peak of the signal oversampled 4x by a 48-tap windowed-sinc
  interpolator (BS.1770-4 Annex 2's structure), in dBTP: the largest of the samples (its
  phase 0 passes them unchanged) and of the three phases between them, each output
  interpolated from the 12 samples around it (zeros beyond the ends). Exact bounds skip
  most of the work without changing the value (see ``_true_peak``).
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
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache

import numpy as np
from numba import njit

N_FFT = 1024
N_MELS = 40
N_MFCC = 13
SCALE = 1 / 32768  # 16-bit full scale: a power of two, so scaling is exact
TOP_DB = 80.0
ONSET_RELATIVE = 1 / 3  # a flux peak counts as an onset above this share of the phrase's largest
ONSET_MIN_DB = 1.0  # ... and above this mean rise per mel band (dB)
TP_PHASES = 4
TP_TAPS = 12  # per phase: 48 taps, as BS.1770-4 Annex 2
TP_BLOCK = 16  # outputs bounded together before interpolating (>= TP_TAPS - 1: a window spans two blocks)
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
    sos = np.array([[b0 / a0, b1 / a0, b2 / a0, a1 / a0, a2 / a0] for b0, b1, b2, a0, a1, a2 in (shelf, high)])
    assert sos[1, 1] == -2 * sos[1, 0] and sos[1, 2] == sos[1, 0]  # _k_squares relies on it
    return sos


@njit(cache=True, nogil=True, fastmath={"contract"})
def _k_squares(pcm: np.ndarray, scale: float, sos: np.ndarray, step: int) -> tuple[np.ndarray, int]:
    """One pass: sums of squares of the K-weighted signal (``pcm`` × ``scale``) per ``step``
    samples, and sign changes. Direct form I, the feedback term added last: each biquad's
    loop-carried chain is one multiply-add, and the two run side by side (twice the speed of
    the transposed form, whose chain is two). One flat loop: a nested one per block is 4x slower."""
    subs = np.zeros(len(pcm) // step)
    b0, b1, b2, a1, a2 = sos[0, 0] * scale, sos[0, 1] * scale, sos[0, 2] * scale, sos[0, 3], sos[0, 4]
    c0, d1, d2 = sos[1, 0], sos[1, 3], sos[1, 4]  # the high-pass's numerator is c0 (1, -2, 1)
    x1 = x2 = y1 = y2 = k1 = k2 = acc = 0.0
    block = count = crossings = 0
    negative = pcm[0] < 0 if len(pcm) else False
    for i in range(len(subs) * step):
        v = pcm[i]
        x = float(v)
        y = (b0 * x + b1 * x1 + b2 * x2 - a2 * y2) - a1 * y1
        k = (c0 * ((y + y2) - (y1 + y1)) - d2 * k2) - d1 * k1
        x2, x1, y2, y1, k2, k1 = x1, x, y1, y, k1, k
        acc += k * k
        now = v < 0
        crossings += now != negative
        negative = now
        count += 1
        if count == step:
            subs[block] = acc
            block += 1
            acc = 0.0
            count = 0
    for i in range(len(subs) * step, len(pcm)):
        now = pcm[i] < 0
        crossings += now != negative
        negative = now
    return subs, crossings


@njit(cache=True, nogil=True)
def gated_loudness(subs: np.ndarray, step: int) -> float:
    """Integrated loudness from sums of squares per 100 ms (``step`` samples): 400 ms blocks
    every 100 ms, absolute then relative gate. NaN when no block passes the absolute gate."""
    blocks = (subs[:-3] + subs[1:-2] + subs[2:-1] + subs[3:]) / (4 * step) if len(subs) >= 4 else subs[:0]
    relative = -np.inf
    for _ in range(2):  # the absolute gate, then also the relative one
        total, kept = 0.0, 0
        for power in blocks:
            loud = -0.691 + 10 * math.log10(power) if power > 0 else -np.inf
            if loud > -70.0 and loud > relative:
                total += power
                kept += 1
        if not kept:
            return np.nan
        relative = -0.691 + 10 * math.log10(total / kept) - 10.0
    return relative + 10.0


# --- true peak ---


@cache
def true_peak_filter() -> np.ndarray:
    """(phases, taps) of a 4x interpolator: Hann-windowed sinc, each phase summing to 1."""
    half = TP_TAPS // 2 - 1  # phase p, tap k: y[i + p/4] = sum_k phases[p, k] x[i - half + k]
    t = half - np.arange(TP_TAPS)[None, :] + np.arange(TP_PHASES)[:, None] / TP_PHASES
    phases = np.sinc(t) * (0.5 + 0.5 * np.cos(np.pi * t / (TP_TAPS / 2 + 0.5)))
    return phases / phases.sum(axis=1, keepdims=True)


@cache
def true_peak_kernel() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The interpolator folded by its symmetries: phase 2 is symmetric and phase 3 is phase 1
    reversed, so with a window's end-to-end sums a_k + a_(11-k) and differences a_k - a_(11-k),
    phase 2 is 6 products (``mid``), and phases 1 and 3 are (S ± D) / 2 for S (``outer``) and
    D (``inner``) of 6 products each: 18 in all for 36. ``rest``: per phase (0: phase 2,
    1: phases 1 and 3), the |tap sum| outside the 4 central taps, and over all 12 taps: the
    most the far samples can add to the central ones' value, and to nothing (a little over:
    the products' rounding)."""
    phases = true_peak_filter()
    half = TP_TAPS // 2
    assert np.allclose(phases[3], phases[1, ::-1], rtol=0, atol=1e-15)
    assert np.allclose(phases[2], phases[2, ::-1], rtol=0, atol=1e-15)
    outer = phases[1, :half] + phases[1, ::-1][:half]
    inner = phases[1, :half] - phases[1, ::-1][:half]
    far = np.abs(phases[[2, 1]]).sum(axis=1) - np.abs(phases[[2, 1], half - 2 : half + 2]).sum(axis=1)
    rest = np.array([*far, np.abs(phases).sum(axis=1).max()]) * (1 + 1e-9)
    return phases[2, :half].copy(), outer, inner, rest


@njit(cache=True, nogil=True, fastmath=True)
def _block_peaks(pcm: np.ndarray) -> np.ndarray:
    """The largest |sample| of each TP_BLOCK samples of ``pcm`` (and a zero after the last)."""
    peaks = np.zeros((len(pcm) + TP_BLOCK - 1) // TP_BLOCK + 1)
    for b in range(len(pcm) // TP_BLOCK):
        top = abs(pcm[b * TP_BLOCK])
        for j in range(b * TP_BLOCK + 1, (b + 1) * TP_BLOCK):
            top = max(top, abs(pcm[j]))
        peaks[b] = top
    for j in range(len(pcm) // TP_BLOCK * TP_BLOCK, len(pcm)):
        peaks[-2] = max(peaks[-2], abs(pcm[j]))
    return peaks


@njit(cache=True, nogil=True, fastmath={"contract"}, inline="always")
def _interpolated(
    x: np.ndarray, start: int, first: int, mid: np.ndarray, outer: np.ndarray, inner: np.ndarray
) -> tuple[float, float]:
    """|phase 2| and max(|phase 1|, |phase 3|) interpolated in the window x[start : start + 12],
    from its tap pairs ``first`` to 5 (0: all; 4: the central four)."""
    half = sums = diffs = 0.0
    last = start + 2 * len(mid) - 1
    for k in range(first, len(mid)):
        a, c = float(x[start + k]), float(x[last - k])
        half += mid[k] * (a + c)
        sums += outer[k] * (a + c)
        diffs += inner[k] * (a - c)
    return abs(half), 0.5 * (abs(sums) + abs(diffs))


@njit(cache=True, nogil=True, fastmath={"contract"})
def _true_peak(
    pcm: np.ndarray, scale: float, mid: np.ndarray, outer: np.ndarray, inner: np.ndarray, rest: np.ndarray, peak: float
) -> float:
    """Max |4x interpolation| of ``pcm`` × ``scale``, at least the sample ``peak``. Output i's
    window is pcm[i - 5 : i + 7] (zeros outside). Bounds skip work and keep the value exact
    (that of interpolating everything): a block of outputs is skipped when the peak of the
    samples its windows reach × the largest |tap sum| cannot beat the best so far, an output
    when its central four taps' value plus the far taps' most cannot. ``scale`` is a power of
    two, applied to the sums (the same values as to the samples)."""
    taps = 2 * len(mid)
    lead = len(mid) - 1
    n = len(pcm)
    best = peak / scale
    lo, hi = (lead, n - taps + lead + 1) if n > 4 * taps else (n, n)  # outputs whose windows lie inside pcm
    if lo < hi:
        peaks = _block_peaks(pcm)  # the windows of outputs lo + b * TP_BLOCK on are in blocks b and b + 1
        for b in range((hi - lo + TP_BLOCK - 1) // TP_BLOCK):
            top = max(peaks[b], peaks[b + 1])
            if top * rest[2] <= best:
                continue
            for i in range(lo + b * TP_BLOCK, min(hi, lo + (b + 1) * TP_BLOCK)):
                half, sides = _interpolated(pcm, i - lead, len(mid) - 2, mid, outer, inner)
                if max(half + rest[0] * top, sides + rest[1] * top) > best:
                    half, sides = _interpolated(pcm, i - lead, 0, mid, outer, inner)
                    best = max(best, half, sides)
    head = np.zeros(lo + 2 * taps, dtype=pcm.dtype)  # the outputs at the ends, zero-padded
    head[lead : lead + min(n, lo + taps)] = pcm[: min(n, lo + taps)]
    for i in range(lo):
        best = max(best, *_interpolated(head, i, 0, mid, outer, inner))
    if hi < n:
        tail = np.zeros(2 * taps, dtype=pcm.dtype)
        tail[: n - hi + lead] = pcm[hi - lead :]
        for i in range(hi, n):
            best = max(best, *_interpolated(tail, i - hi, 0, mid, outer, inner))
    return best * scale


def samples(pcm: np.ndarray) -> np.ndarray:
    """``pcm`` as the kernels take it: integers at least 32 bits wide (|-32768| overflows int16)."""
    pcm = np.asarray(pcm)
    return pcm.astype(np.int32) if pcm.dtype.kind in "iu" and pcm.dtype.itemsize < 4 else pcm


def true_peak(pcm: np.ndarray, sample_peak: float, scale: float = 1.0) -> float:
    """The true peak (full scale 1.0) of ``pcm`` × ``scale``, whose sample peak is ``sample_peak``."""
    return _true_peak(samples(pcm), scale, *true_peak_kernel(), sample_peak) if sample_peak > 0 else 0.0


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


@cache
def dct_matrix(n_mfcc: int = N_MFCC, n_mels: int = N_MELS) -> np.ndarray:
    """DCT-II, orthonormal: (n_mfcc, n_mels)."""
    k = np.arange(n_mfcc)[:, None]
    n = np.arange(n_mels)[None, :]
    basis = np.cos(np.pi * k * (2 * n + 1) / (2 * n_mels)) * math.sqrt(2.0 / n_mels)
    basis[0] /= math.sqrt(2.0)
    return basis


_buffers = threading.local()


def spectra(pcm: np.ndarray, scale: float = 1.0) -> np.ndarray:
    """(frames, bins) complex spectra of the Hann frames of ``pcm`` × ``scale`` laid end to end
    (overlapping frames cost 8x in numpy's FFT, and a 46 ms step still separates notes); a
    phrase shorter than a frame is zero-padded. The frames and spectra are written into this
    thread's buffers, valid until its next call: fresh arrays of this size (~0.4 MB) cost more
    than the FFT (the allocator maps new pages each time)."""
    if len(pcm) < N_FFT:
        pcm = np.pad(pcm, (0, N_FFT - len(pcm)))
    frames = pcm[: len(pcm) // N_FFT * N_FFT].reshape(-1, N_FFT)
    windowed, spectrum = getattr(_buffers, "spectra", (np.empty((0, N_FFT)), None))
    if len(windowed) < len(frames):
        windowed = np.empty((len(frames), N_FFT))
        spectrum = np.empty((len(frames), N_FFT // 2 + 1), dtype=np.complex128)
        _buffers.spectra = windowed, spectrum
    windowed, spectrum = windowed[: len(frames)], spectrum[: len(frames)]
    np.multiply(frames, _hann(N_FFT) * scale, out=windowed)
    return np.fft.rfft(windowed, axis=1, out=spectrum)


@njit(cache=True, nogil=True, fastmath=True)
def _spectral(
    spectrum: np.ndarray, bin_hz: float, weights: np.ndarray, spans: np.ndarray, dct: np.ndarray, top_db: float
) -> tuple[float, float, np.ndarray, int]:
    """One pass over the frames' spectra: centroid and bandwidth of the magnitude summed over
    frames, the mean of the frames' MFCCs (the DCT of the mean dB mel bands, ``top_db`` below
    the loudest: the DCT is linear), and the onset count (peaks of the mean rise of the dB
    bands frame to frame, from the floor before the first). Sums in any order (fastmath):
    the readings move by rounding only."""
    frames, bins = spectrum.shape
    n_mels = weights.shape[0]
    magnitude = np.zeros(bins)
    power = np.zeros((4, bins))  # four frames at a time: four independent sums per band (one waits on itself)
    log_mel = np.empty((frames + 3, n_mels))
    for first in range(0, frames, 4):
        for g in range(min(4, frames - first)):
            for b in range(bins):
                re, im = spectrum[first + g, b].real, spectrum[first + g, b].imag
                power[g, b] = re * re + im * im
                magnitude[b] += math.sqrt(power[g, b])
        for g in range(frames - first, 4):
            power[g] = 0.0
        for m in range(n_mels):  # power @ weights.T over each band's span (BLAS would start its threads)
            acc0 = acc1 = acc2 = acc3 = 0.0
            for b in range(spans[m, 0], spans[m, 1]):
                w = weights[m, b]
                acc0 += power[0, b] * w
                acc1 += power[1, b] * w
                acc2 += power[2, b] * w
                acc3 += power[3, b] * w
            log_mel[first, m] = 10.0 * math.log10(max(acc0, 1e-10))
            log_mel[first + 1, m] = 10.0 * math.log10(max(acc1, 1e-10))
            log_mel[first + 2, m] = 10.0 * math.log10(max(acc2, 1e-10))
            log_mel[first + 3, m] = 10.0 * math.log10(max(acc3, 1e-10))
    log_mel = log_mel[:frames]
    floor = log_mel.max() - top_db
    mean = np.zeros(n_mels)
    flux = np.zeros(frames)
    lowest = floor + top_db
    for f in range(frames):
        for m in range(n_mels):
            value = max(log_mel[f, m], floor)
            log_mel[f, m] = value
            mean[m] += value / frames
            lowest = min(lowest, value)
    for f in range(frames):
        rise = 0.0
        for m in range(n_mels):
            rise += max(0.0, log_mel[f, m] - (log_mel[f - 1, m] if f else lowest))
        flux[f] = rise / n_mels
    top = flux.max() if frames else 0.0
    count = 0
    if top >= ONSET_MIN_DB:
        threshold = max(ONSET_MIN_DB, ONSET_RELATIVE * top)
        for f in range(frames):
            before = flux[f - 1] if f else 0.0
            after = flux[f + 1] if f + 1 < frames else 0.0
            count += flux[f] > before and flux[f] >= after and flux[f] >= threshold
    total = centroid = spread = 0.0
    for b in range(bins):
        total += magnitude[b]
        centroid += b * bin_hz * magnitude[b]
    centroid = centroid / total if total > 0 else 0.0
    for b in range(bins):
        spread += (b * bin_hz - centroid) ** 2 * magnitude[b]
    mfcc = np.zeros(dct.shape[0])
    for c in range(dct.shape[0]):
        for m in range(n_mels):
            mfcc[c] += dct[c, m] * mean[m]
    return centroid, math.sqrt(spread / total) if total > 0 else 0.0, mfcc, count


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


def loudness(pcm: np.ndarray, sample_rate: int, scale: float = 1.0) -> tuple[float | None, int]:
    """Integrated loudness (LUFS, None for silence) of ``pcm`` × ``scale``, and its sign changes."""
    step = round(0.1 * sample_rate)
    subs, crossings = _k_squares(pcm, scale, k_weighting(sample_rate), step)
    lufs = gated_loudness(subs, step)
    return None if math.isnan(lufs) else lufs, crossings


def spectral(pcm: np.ndarray, sample_rate: int, scale: float = 1.0) -> tuple[float, float, np.ndarray, int]:
    """Centroid, bandwidth (Hz), MFCC means and onset count of ``pcm`` × ``scale``."""
    return _spectral(spectra(pcm, scale), sample_rate / N_FFT, *mel_bands(sample_rate), dct_matrix(), TOP_DB)


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
    pcm = samples(pcm)
    lufs, crossings = loudness(pcm, sample_rate, SCALE)
    if sample_peak is None:
        sample_peak = float(np.abs(pcm).max()) * SCALE if len(pcm) else 0.0
    tp = true_peak(pcm, sample_peak, SCALE)
    centroid, bandwidth, mfcc, onset_count = spectral(pcm, sample_rate, SCALE)
    f0 = error = None
    if len(notes) == 1 and samples_per_beat > 0:
        onset = round(notes[0][0] * samples_per_beat + F0_OFFSET_S * sample_rate)
        f0 = yin(pcm[onset : onset + 2 * YIN_WINDOW] * SCALE, sample_rate)
        error = cents(f0, notes[0][3]) if f0 else None
    return Features(
        lufs=lufs,
        true_peak_dbtp=20 * math.log10(tp) if tp > 0 else None,
        spectral_centroid_hz=centroid,
        spectral_bandwidth_hz=bandwidth,
        zcr=crossings / (len(pcm) - 1) if len(pcm) > 1 else 0.0,
        onset_count=onset_count,
        mfcc=[float(v) for v in mfcc],
        f0_hz=f0,
        f0_error_cents=error,
    )
