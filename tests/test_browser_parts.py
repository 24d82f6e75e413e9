"""The browser's pieces on known inputs: mel filterbank and spectrogram, byte ranges, piano roll."""

from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from dx7lake.browser.pianoroll import note_name, pianoroll_svg
from dx7lake.browser.ranges import RangeNotSatisfiable, parse_range
from dx7lake.browser.spectrogram import N_MELS, hz_to_mel, mel_filterbank, mel_power, spectrogram_png

SR = 22050


def sine(hz: float, seconds: float = 1.0) -> np.ndarray:
    return 0.5 * np.sin(2 * np.pi * hz * np.arange(int(SR * seconds)) / SR)


def test_mel_filterbank_is_triangles_along_the_mel_scale():
    bank = mel_filterbank(SR)
    assert bank.shape == (N_MELS, 513)
    assert (bank >= 0).all() and (bank.sum(axis=1) > 0).all()
    peaks = bank.argmax(axis=1)
    assert (np.diff(peaks) >= 0).all()  # centres rise with the band index
    assert hz_to_mel(1000.0) == pytest.approx(1000.0, rel=1e-3)  # the HTK scale's anchor


@pytest.mark.parametrize("hz", [220.0, 440.0, 1760.0])
def test_a_tone_lands_in_its_mel_band(hz):
    band = mel_power(sine(hz), SR).mean(axis=1).argmax()
    edges = np.linspace(0, hz_to_mel(SR / 2), N_MELS + 2)
    assert edges[band] <= hz_to_mel(hz) <= edges[band + 2]


def test_spectrogram_png_puts_low_pitches_at_the_bottom():
    flac = io.BytesIO()
    sf.write(flac, np.concatenate([sine(200.0), sine(4000.0)]), SR, format="FLAC")
    image = np.asarray(Image.open(io.BytesIO(spectrogram_png(flac.getvalue(), 400, 200))).convert("L"), dtype=float)
    first_half, second_half = image[:, 50:150], image[:, 250:350]
    assert first_half.mean(axis=1).argmax() > second_half.mean(axis=1).argmax()  # 200 Hz drawn below 4 kHz
    assert first_half.mean(axis=1).argmax() > 150


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("bytes=0-99", (0, 99)),
        ("bytes=100-", (100, 999)),
        ("bytes=-100", (900, 999)),
        ("bytes=-5000", (0, 999)),
        ("bytes=990-5000", (990, 999)),
        ("bytes=0-0,10-20", (0, 0)),
        ("bytes=5-3", None),
        ("items=0-5", None),
        ("bytes=-", None),
    ],
)
def test_parse_range(header, expected):
    assert parse_range(header, 1000) == expected


@pytest.mark.parametrize("header", ["bytes=1000-", "bytes=-0"])
def test_unsatisfiable_ranges(header):
    with pytest.raises(RangeNotSatisfiable):
        parse_range(header, 1000)


def test_pianoroll_places_notes_on_the_render_time_axis():
    notes = [
        {"start": 1.0, "duration": 0.5, "velocity": 127, "pitch": 60},
        {"start": 0.0, "duration": 1.0, "velocity": 10, "pitch": 67},
    ]
    svg = pianoroll_svg(notes, duration_s=2.5, bpm=120.0, width=900, row=10, label_width=40)
    assert svg.count('<rect class="note"') == 2
    # beat 1 at 120 BPM is 0.5 s: 40 + 0.5 * 860 / 2.5; half a beat is 86 px wide; pitch 60 is 9 rows under 69
    assert '<rect class="note" x="212.0" y="91" width="86.0"' in svg
    assert 'fill-opacity="1.00"' in svg and "<title>C4 vel 127 at beat 1 for 0.5</title>" in svg
    assert note_name(60) == "C4" and note_name(61) == "C♯4" and note_name(21) == "A0"


def test_pianoroll_of_real_world_oddities_stays_on_midi_pitches_and_on_the_render():
    """Pitches 0 and 127, a zero-length note and one held 240 beats (real files hold all four)."""
    notes = [
        {"start": 0.0, "duration": 240.0, "velocity": 1, "pitch": 0},
        {"start": 2.0, "duration": 0.0, "velocity": 127, "pitch": 127},
    ]
    svg = pianoroll_svg(notes, duration_s=2.5, bpm=120.0, width=900, row=10, label_width=40)
    assert svg.count('<rect class="note"') == 2
    assert 'height="1280"' in svg  # lanes 0..127: none for pitches MIDI has not got
    assert '<rect class="note" x="40.0" y="1271" width="860.0"' in svg  # cut where the render ends
    # beat 2 at 120 BPM is 1 s: 40 + 1 * 860 / 2.5; zero length is still drawn, 1 px wide
    assert '<rect class="note" x="384.0" y="1" width="1.0"' in svg
    assert ">C-1<" in svg and ">G9<" in svg
