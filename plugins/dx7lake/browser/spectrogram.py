"""Mel-spectrogram images of gold renders, computed server-side with numpy and Pillow.

The mel filterbank is built here (HTK mel scale, Slaney area normalisation) rather than
pulling in an audio-analysis library for one picture per page.
"""

from __future__ import annotations

import io

import numpy as np
import soundfile as sf
from PIL import Image

N_FFT = 1024
HOP = 128
N_MELS = 128
TOP_DB = 80.0
# anchors of a perceptually ordered dark-to-bright map (magma-like), interpolated to 256 steps
_ANCHORS = np.array(
    [
        (0, 0, 4),
        (40, 17, 89),
        (101, 26, 128),
        (161, 48, 126),
        (222, 73, 104),
        (251, 135, 97),
        (254, 201, 141),
        (252, 253, 191),
    ],
    dtype=np.float64,
)
COLORMAP = np.stack(
    [np.interp(np.linspace(0, 1, 256), np.linspace(0, 1, len(_ANCHORS)), _ANCHORS[:, c]) for c in range(3)], axis=1
).astype(np.uint8)


def hz_to_mel(hz: np.ndarray | float) -> np.ndarray:
    return 2595.0 * np.log10(1.0 + np.asarray(hz, dtype=np.float64) / 700.0)


def mel_to_hz(mel: np.ndarray | float) -> np.ndarray:
    return 700.0 * (10.0 ** (np.asarray(mel, dtype=np.float64) / 2595.0) - 1.0)


def mel_filterbank(sample_rate: int, n_fft: int = N_FFT, n_mels: int = N_MELS, fmin: float = 0.0) -> np.ndarray:
    """(n_mels, n_fft // 2 + 1) triangular filters, each of unit area over frequency."""
    fft_hz = np.linspace(0.0, sample_rate / 2.0, n_fft // 2 + 1)
    edges = mel_to_hz(np.linspace(hz_to_mel(fmin), hz_to_mel(sample_rate / 2.0), n_mels + 2))
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (fft_hz[None, :] - lower) / (centre - lower)
    falling = (upper - fft_hz[None, :]) / (upper - centre)
    weights = np.maximum(0.0, np.minimum(rising, falling))
    return weights * (2.0 / (upper - lower))


def mel_power(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """Mel power spectrogram (n_mels, frames) of mono audio, Hann window, centred frames."""
    padded = np.pad(np.asarray(audio, dtype=np.float64), N_FFT // 2, mode="reflect")
    frames = 1 + (len(padded) - N_FFT) // HOP
    index = np.arange(N_FFT)[None, :] + HOP * np.arange(frames)[:, None]
    spectrum = np.abs(np.fft.rfft(padded[index] * np.hanning(N_FFT)[None, :], axis=1)) ** 2
    return mel_filterbank(sample_rate) @ spectrum.T


def to_db(power: np.ndarray) -> np.ndarray:
    """Decibels relative to the loudest cell, floored ``TOP_DB`` below it."""
    db = 10.0 * np.log10(np.maximum(power, 1e-10))
    return np.maximum(db, db.max() - TOP_DB)


def spectrogram_png(flac: bytes, width: int = 900, height: int = 256) -> bytes:
    """The mel-spectrogram of an audio file as a PNG: time left to right, low pitches at the bottom."""
    audio, sample_rate = sf.read(io.BytesIO(flac), dtype="float64", always_2d=True)
    db = to_db(mel_power(audio.mean(axis=1), sample_rate))
    span = db.max() - db.min()
    levels = np.zeros_like(db) if span == 0 else (db - db.min()) / span
    pixels = COLORMAP[np.round(levels[::-1] * 255).astype(np.uint8)]
    image = Image.fromarray(pixels).resize((width, height), Image.Resampling.BICUBIC)
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=True)
    return out.getvalue()
