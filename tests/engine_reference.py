"""A render rebuilt from a manifest row with dexed-py alone, for tests that must not re-run
dx7lake's renderer to check it.

The arithmetic is the README's, written out here: a phrase is 4 beats at the row's tempo
plus a 0.5 s tail; each note starts and is held at its beat times and rings on to the
phrase end; the last 50 ms fade out linearly; the sum is scaled by the row's gain to 16 bit.
Voices whose notes die out within a second (epiano, sine) match dx7lake's renders to a
sample or two; long-release voices (bell) differ where dx7lake cuts a note's release.
"""

from __future__ import annotations

import io

import numpy as np
import soundfile as sf


def engine_pcm(row: dict) -> np.ndarray:
    """16-bit samples of ``row``'s phrase, straight from a dexed-py synth of its 156-byte voice."""
    from dexed._dexed import DexedSynth

    rate, bpm = int(row["sample_rate"]), float(row["bpm"])
    per_beat = 60.0 * rate / bpm
    total = round((4 * 60.0 / bpm + 0.5) * rate)
    synth = DexedSynth(float(rate), 0)
    synth.load_sysex(bytes(row["patch_vced"]))
    mix = np.zeros(total)
    for note in row["notes"]:
        onset, held = round(note["start"] * per_beat), round(note["duration"] * per_beat)
        audio = np.asarray(synth.render(int(note["pitch"]), int(note["velocity"]), held / rate, (total - onset) / rate))
        mix[onset : onset + len(audio)] += audio[: total - onset]
    fade = round(0.05 * rate)
    mix[-fade:] *= np.linspace(1.0, 0.0, fade)
    return np.rint(mix * float(row["gain"]) * 32767.0).astype(np.int16)


def assert_sounds_like_its_row(flac: bytes, row: dict, tolerance: int = 2) -> None:
    """``flac``, decoded by libsndfile, is the row's phrase as dexed-py renders it."""
    pcm, rate = sf.read(io.BytesIO(flac), dtype="int16")
    expected = engine_pcm(row)
    assert rate == row["sample_rate"] and pcm.shape == expected.shape, (rate, pcm.shape, expected.shape)
    worst = int(np.abs(pcm.astype(np.int32) - expected).max())
    assert worst <= tolerance, f"{row['key']}: differs from dexed-py's render by up to {worst} LSB"
    assert np.abs(expected).max() > 1000, "a silent reference proves nothing"
