"""The in-memory FLAC encoders: lossless, standard FLAC that other decoders read.

Each encoder is checked against independent decoders: libsndfile (soundfile) and ffmpeg
(the binary that imageio-ffmpeg's wheel ships, so no system ffmpeg is needed).
"""

from __future__ import annotations

import io
import subprocess

import imageio_ffmpeg
import numpy as np
import pytest
import soundfile as sf

from dx7lake.gold.flac import BACKENDS, FlacEncoder, default_backend


def samples(n: int = 30_000) -> np.ndarray:
    rng = np.random.default_rng(5)
    tone = 12_000 * np.sin(np.arange(n) * 2 * np.pi * 440 / 22050)
    return np.clip(np.round(tone + rng.normal(0, 300, n)), -32768, 32767).astype(np.int16)


@pytest.fixture(params=BACKENDS)
def backend(request) -> str:
    return request.param


@pytest.mark.parametrize("n", [1, 2047, 2048, 55_125])
def test_encoding_is_lossless_and_carries_the_exact_length(backend, n):
    pcm = samples(n)
    flac = FlacEncoder(22050, backend=backend).encode(pcm)
    info = sf.info(io.BytesIO(flac))
    assert (info.samplerate, info.channels, info.subtype, info.frames) == (22050, 1, "PCM_16", n)
    decoded, _ = sf.read(io.BytesIO(flac), dtype="int16")
    assert np.array_equal(decoded, pcm)


def test_extremes_survive_and_higher_levels_are_smaller(backend):
    pcm = np.array([-32768, 32767, 0, -1, 1] * 1000, dtype=np.int16)
    assert np.array_equal(sf.read(io.BytesIO(FlacEncoder(22050, backend=backend).encode(pcm)), dtype="int16")[0], pcm)
    tone = samples()
    assert len(FlacEncoder(22050, 8, backend).encode(tone)) < len(FlacEncoder(22050, 0, backend).encode(tone))
    with pytest.raises(ValueError, match=r"0\.\.8"):
        FlacEncoder(22050, 9, backend)


def test_ffmpeg_decodes_it_too(backend):
    pcm = samples()
    out = subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-i", "pipe:0", "-f", "s16le", "pipe:1"],
        input=FlacEncoder(22050, backend=backend).encode(pcm),
        capture_output=True,
        check=True,
    ).stdout
    assert np.array_equal(np.frombuffer(out, dtype="<i2"), pcm)


def test_the_wheel_libflac_is_the_default_and_names_itself():
    # plibflac is a dependency with wheels for every supported platform: no system libFLAC is involved
    assert default_backend() == "libflac"
    assert FlacEncoder(22050).name.startswith("libFLAC 1.")
    assert FlacEncoder(22050, backend="libsndfile").name.startswith("libsndfile 1.")
    with pytest.raises(ValueError, match="unknown FLAC encoder"):
        FlacEncoder(22050, backend="lame")
