"""Mono 16-bit FLAC in memory, straight from libFLAC (Debian's libflac12) through ctypes.

Why not soundfile: profiling the render path showed FLAC encoding as its largest cost,
and a good part of that was libFLAC's MD5 of the samples plus libsndfile's Python I/O
callbacks. Here one encoder call takes the whole phrase in 2,048-sample blocks (the
fastest size measured here), and the stream is written once, front to back: STREAMINFO
carries the exact sample count (given up front), while its MD5 and min/max frame sizes
are left unset, which the FLAC format allows ("0 means unknown"). Every gold object is
covered by the sha256 in its manifest row instead. Decoders (soundfile, ffmpeg) read it
as any FLAC.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from functools import cache

import numpy as np

BLOCK_SIZE = 2048
LIBFLAC_NAMES = ("libFLAC.so.12", "libFLAC.so.14", "libFLAC.so.8")

_WRITE = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint32, ctypes.c_uint32, ctypes.c_void_p
)


@cache
def libflac() -> ctypes.CDLL:
    """The system libFLAC, with the signatures used here declared."""
    names = [*LIBFLAC_NAMES, ctypes.util.find_library("FLAC")]
    for name in filter(None, names):
        try:
            lib = ctypes.CDLL(name)
            break
        except OSError:
            continue
    else:
        raise RuntimeError("libFLAC not found: install Debian's libflac12 (.ci/run does)")
    enc = ctypes.c_void_p
    lib.FLAC__stream_encoder_new.restype = enc
    for name, arg in (
        ("channels", ctypes.c_uint),
        ("bits_per_sample", ctypes.c_uint),
        ("sample_rate", ctypes.c_uint),
        ("compression_level", ctypes.c_uint),
        ("blocksize", ctypes.c_uint),
        ("do_md5", ctypes.c_int),
        ("total_samples_estimate", ctypes.c_uint64),
    ):
        fn = getattr(lib, f"FLAC__stream_encoder_set_{name}")
        fn.argtypes, fn.restype = [enc, arg], ctypes.c_int
    null = ctypes.c_void_p  # the seek, tell and metadata callbacks are passed as NULL
    lib.FLAC__stream_encoder_init_stream.argtypes = [enc, _WRITE, null, null, null, ctypes.c_void_p]
    lib.FLAC__stream_encoder_process_interleaved.argtypes = [enc, ctypes.c_void_p, ctypes.c_uint32]
    lib.FLAC__stream_encoder_process_interleaved.restype = ctypes.c_int
    lib.FLAC__stream_encoder_finish.argtypes = [enc]
    lib.FLAC__stream_encoder_finish.restype = ctypes.c_int
    lib.FLAC__stream_encoder_delete.argtypes = [enc]
    return lib


class FlacEncoder:
    """Encodes int16 mono arrays to FLAC bytes; one per worker (it keeps its callbacks)."""

    def __init__(self, sample_rate: int, level: int = 0) -> None:
        if not 0 <= level <= 8:
            raise ValueError(f"FLAC compression level must be 0..8, got {level}")
        self.sample_rate = sample_rate
        self.level = level
        self._lib = libflac()
        self._chunks: list[bytes] = []
        self._write = _WRITE(self._on_write)  # must outlive every encoder that may call it

    def _on_write(self, _enc, data, size, _samples, _frame, _client) -> int:
        self._chunks.append(ctypes.string_at(data, size))
        return 0

    def encode(self, pcm: np.ndarray) -> bytes:
        lib = self._lib
        samples = np.ascontiguousarray(pcm, dtype=np.int32)
        self._chunks = []
        enc = lib.FLAC__stream_encoder_new()
        if not enc:
            raise MemoryError("libFLAC could not allocate an encoder")
        try:
            lib.FLAC__stream_encoder_set_channels(enc, 1)
            lib.FLAC__stream_encoder_set_bits_per_sample(enc, 16)
            lib.FLAC__stream_encoder_set_sample_rate(enc, self.sample_rate)
            lib.FLAC__stream_encoder_set_compression_level(enc, self.level)
            lib.FLAC__stream_encoder_set_blocksize(enc, BLOCK_SIZE)
            lib.FLAC__stream_encoder_set_do_md5(enc, 0)
            lib.FLAC__stream_encoder_set_total_samples_estimate(enc, len(samples))
            status = lib.FLAC__stream_encoder_init_stream(enc, self._write, None, None, None, None)
            if status != 0:
                raise RuntimeError(f"libFLAC encoder init failed (status {status})")
            if len(samples) and not lib.FLAC__stream_encoder_process_interleaved(
                enc, samples.ctypes.data, len(samples)
            ):
                raise RuntimeError("libFLAC failed to encode the samples")
            if not lib.FLAC__stream_encoder_finish(enc):
                raise RuntimeError("libFLAC failed to finish the stream")
        finally:
            lib.FLAC__stream_encoder_delete(enc)
        return b"".join(self._chunks)
