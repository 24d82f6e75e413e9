"""Audio QA of one gold render: the checks a listener would make, done by numbers.

A render passes when it decodes as mono FLAC at the manifest's sample rate, lasts exactly
the phrase length its profile gives (beats at its tempo plus its tail), is not silent, is not clipped, and its
manifest's level figures hold no NaN. 16-bit PCM cannot carry a NaN: a NaN in a render's
float mix reaches the file as full-scale samples, which the clipping check catches. Every
failed check is reported, not only the first, so one look at the validation results says
everything that is wrong with a file.
"""

from __future__ import annotations

import io
import math

import numpy as np
import soundfile as sf

from ..gold.engine import RenderSpec

# 16-bit full scale is 32767; the renderer leaves 1 dB of headroom, so a few samples at
# full scale can only mean clipping.
CLIP_LEVEL = 32767
MAX_CLIPPED_SAMPLES = 2
# Below about -80 dBFS a phrase is inaudible: a render that peaks there is silent.
SILENCE_PEAK = 1e-4


def expected_samples(sample_rate: int, bpm: float) -> int:
    """Samples of a phrase rendered at this rate and tempo (its beats plus the release tail)."""
    return RenderSpec(sample_rate=int(sample_rate), bpm=float(bpm)).total_samples


def check_render(data: bytes, row: dict, spec: RenderSpec | None = None) -> list[str]:
    """Reasons why the render ``data`` of manifest ``row`` (rendered in profile ``spec``; by the
    default tail when None) is bad (empty when it is good)."""
    reasons = []
    if any(not math.isfinite(float(row[k])) for k in ("peak", "rms", "duration_s")):
        reasons.append("manifest peak, rms or duration is NaN or infinite")
    try:
        pcm, sample_rate = sf.read(io.BytesIO(data), dtype="int16", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, ValueError) as err:
        return [*reasons, f"does not decode: {err}"]
    if pcm.shape[1] != 1:
        reasons.append(f"{pcm.shape[1]} channels, expected mono")
    if sample_rate != row["sample_rate"]:
        reasons.append(f"sample rate {sample_rate}, manifest says {row['sample_rate']}")
    want = spec.total_samples if spec else expected_samples(row["sample_rate"], row["bpm"])
    if pcm.shape[0] != want:
        reasons.append(f"{pcm.shape[0]} samples, expected {want} at {row['bpm']} BPM")
    audio = pcm[:, 0].astype(np.float64) / 32768.0
    peak = float(np.max(np.abs(audio))) if audio.size else 0.0
    if peak < SILENCE_PEAK:
        reasons.append(f"silent (peak {peak:.2e})")
    clipped = int(np.count_nonzero(np.abs(pcm[:, 0].astype(np.int32)) >= CLIP_LEVEL))
    if clipped > MAX_CLIPPED_SAMPLES:
        reasons.append(f"clipped ({clipped} samples at full scale)")
    return reasons


def check_fetched(batch: list[tuple[bytes | None, dict, RenderSpec | None]]) -> list[list[str]]:
    """:func:`check_render` of each (object, manifest row, profile) that validation read, as one
    job of its process pool; an object that was not there has no audio to check."""
    return [[] if data is None else check_render(data, row, spec) for data, row, spec in batch]
