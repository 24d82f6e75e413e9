"""Mono 16-bit FLAC in memory, from libraries that PyPI wheels ship (no system library).

Two encoders, chosen once per process:

- ``libflac``: the reference libFLAC that the ``plibflac`` wheel carries (Linux x86_64 and
  aarch64, macOS arm64, Windows). One encoder call takes the whole phrase in 2,048-sample
  blocks (the fastest size measured for the render path) and writes to a memory buffer.
- ``libsndfile``: the libsndfile inside soundfile's wheel (which links libFLAC itself),
  for a platform without a plibflac wheel. It is slower (Python I/O callbacks) and its
  bytes differ (another block size and vendor string), but the samples are the same.

Both are lossless standard FLAC that any decoder reads. Which one wrote a render is
recorded in its manifest row (``flac_encoder``): the bytes, and so the sha256, belong to
an encoder, while the decoded samples do not. ``make bench`` times both.
"""

from __future__ import annotations

import io
from functools import cache

import numpy as np

BLOCK_SIZE = 2048
BACKENDS = ("libflac", "libsndfile")


@cache
def default_backend() -> str:
    """``libflac`` where the plibflac wheel imports, else ``libsndfile``."""
    try:
        import plibflac  # noqa: F401
    except ImportError:
        return "libsndfile"
    return "libflac"


class FlacEncoder:
    """Encodes int16-range mono arrays to FLAC bytes; one per worker."""

    def __init__(self, sample_rate: int, level: int = 0, backend: str | None = None) -> None:
        if not 0 <= level <= 8:
            raise ValueError(f"FLAC compression level must be 0..8, got {level}")
        backend = backend or default_backend()
        if backend not in BACKENDS:
            raise ValueError(f"unknown FLAC encoder {backend!r}: choose one of {', '.join(BACKENDS)}")
        self.sample_rate = sample_rate
        self.level = level
        self.backend = backend
        self.name = _describe(backend)
        self._encode = self._libflac if backend == "libflac" else self._libsndfile

    def encode(self, pcm: np.ndarray) -> bytes:
        return self._encode(np.ascontiguousarray(pcm, dtype=np.int32))

    def _libflac(self, samples: np.ndarray) -> bytes:
        import plibflac

        buf = io.BytesIO()
        with plibflac.Encoder(
            buf,
            channels=1,
            bits_per_sample=16,
            sample_rate=self.sample_rate,
            compression_level=self.level,
            blocksize=BLOCK_SIZE,
            total_samples_estimate=len(samples),
        ) as encoder:
            if len(samples):
                encoder.write([samples])
        return buf.getvalue()

    def _libsndfile(self, samples: np.ndarray) -> bytes:
        import soundfile

        buf = io.BytesIO()
        soundfile.write(
            buf, samples.astype(np.int16), self.sample_rate, format="FLAC", subtype="PCM_16",
            compression_level=self.level / 8,
        )  # fmt: skip
        return buf.getvalue()


@cache
def _describe(backend: str) -> str:
    """Encoder and library version, as recorded in manifests."""
    if backend == "libflac":
        import plibflac

        return f"libFLAC {plibflac.flac_version()} (plibflac {plibflac.__version__})"
    import soundfile

    return f"libsndfile {soundfile.__libsndfile_version__} (soundfile {soundfile.__version__})"
