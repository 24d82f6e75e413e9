"""Compressed previews of gold renders: MP3 for web pages, downloads and a release's card.

pydub encodes through the ffmpeg binary that imageio-ffmpeg's wheel ships, never a system
one, so previews work on a machine set up from package registries alone. The FLAC is
decoded here with soundfile and handed to pydub as PCM: pydub would otherwise probe the
file with ffprobe, which the wheel does not ship.
"""

from __future__ import annotations

import functools
import io
import warnings

import soundfile as sf

PREVIEW_FORMAT = "mp3"
PREVIEW_MEDIA_TYPE = "audio/mpeg"
PREVIEW_BITRATE = "96k"  # mono speech-and-music quality at a tenth of the 16-bit FLAC's size


@functools.cache
def _audio_segment():
    import imageio_ffmpeg

    with warnings.catch_warnings():  # pydub looks for a system ffmpeg on import: it is given the wheel's below
        warnings.simplefilter("ignore", RuntimeWarning)
        from pydub import AudioSegment

    AudioSegment.converter = imageio_ffmpeg.get_ffmpeg_exe()
    return AudioSegment


def preview(flac: bytes, bitrate: str = PREVIEW_BITRATE) -> bytes:
    """The MP3 of a render's FLAC bytes (mono 16-bit, its own sample rate)."""
    pcm, rate = sf.read(io.BytesIO(flac), dtype="int16")
    channels = 1 if pcm.ndim == 1 else pcm.shape[1]
    segment = _audio_segment()(pcm.tobytes(), sample_width=2, frame_rate=rate, channels=channels)
    out = io.BytesIO()
    segment.export(out, format=PREVIEW_FORMAT, bitrate=bitrate)
    return out.getvalue()
