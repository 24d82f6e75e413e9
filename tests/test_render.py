"""Rendering one phrase: timing, pitch, level, length, determinism, FLAC, reproducibility."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import soundfile as sf
from engine_reference import assert_sounds_like_its_row

from bench.render import naive_render
from dx7lake.gold.engine import DexedEngine
from dx7lake.gold.master import BASE_GAIN, PEAK_CEILING
from dx7lake.gold.patches import choose_voices
from dx7lake.gold.render import PhraseRenderer, RenderSpec, render_row
from dx7lake.gold.vst3 import Vst3Error, load_vst3, voice_sysex

PHRASE = [(0.0, 1.0, 100, 60), (1.0, 1.0, 90, 64), (2.0, 2.0, 80, 67), (2.0, 2.0, 80, 72)]
SPEC = RenderSpec()


def voice(name: str):
    (v,) = choose_voices(name)
    return v


def decode(flac: bytes) -> tuple[np.ndarray, int]:
    return sf.read(io.BytesIO(flac), dtype="int16")


def test_phrase_is_mono_16bit_flac_of_exact_length():
    flac, row = PhraseRenderer(SPEC).render(voice("epiano"), "ab" * 16, PHRASE)
    info = sf.info(io.BytesIO(flac))
    assert (info.format, info.subtype, info.channels, info.samplerate) == ("FLAC", "PCM_16", 1, 22050)
    audio, _ = decode(flac)
    assert len(audio) == SPEC.total_samples == round(2.5 * 22050)
    assert row["duration_s"] == 2.5 and row["note_length"] == "until-silent"
    assert row["key"] == f"gold/renders/{SPEC.profile_id}/{voice('epiano').patch_id}/ab/{'ab' * 16}.flac"
    assert row["profile_id"] == SPEC.profile_id and json.loads(row["profile"])["bpm"] == 120
    assert row["peak"] == np.abs(audio.astype(float)).max() / 32768
    assert row["rms"] == pytest.approx(np.sqrt(np.mean((audio / 32768.0) ** 2)), rel=1e-12)
    assert len(row["patch_vced"]) == 156
    assert row["notes"][2] == {"start": 2.0, "duration": 2.0, "velocity": 80, "pitch": 67}


@pytest.mark.parametrize("bpm", [90.0, 120.0, 150.0])
def test_length_is_four_beats_at_the_tempo_plus_the_tail(bpm):
    spec = RenderSpec(bpm=bpm)
    audio, _ = decode(PhraseRenderer(spec).render(voice("sine"), "cd" * 16, PHRASE)[0])
    assert len(audio) == round((4 * 60 / bpm + 0.5) * 22050)


def test_rendering_is_deterministic_across_renderers():
    first = PhraseRenderer(SPEC).render(voice("bell"), "ef" * 16, PHRASE)[0]
    renderer = PhraseRenderer(SPEC)
    renderer.render(voice("bell"), "00" * 16, [(0.5, 0.25, 127, 30)])  # other work in between
    assert renderer.render(voice("bell"), "ef" * 16, PHRASE)[0] == first


def test_memoised_output_equals_naive_output():
    memo = PhraseRenderer(SPEC)
    plain = PhraseRenderer(SPEC, memoise=False)
    for name in ("epiano", "bell", "organ"):
        for phrase in (PHRASE, PHRASE[:2], PHRASE * 2):
            flac = memo.render(voice(name), "12" * 16, phrase)[0]
            assert flac == plain.render(voice(name), "12" * 16, phrase)[0]
            assert flac == naive_render(SPEC, voice(name), phrase)
    assert memo.engine.notes.hits > 0 and plain.engine.notes.hits == 0


def test_a_bounded_memo_evicts_and_stays_exact():
    tiny = PhraseRenderer(SPEC, memo_bytes=200_000)  # room for about one note
    for phrase in (PHRASE, PHRASE[::-1], PHRASE):
        assert tiny.render(voice("epiano"), "34" * 16, phrase)[0] == naive_render(SPEC, voice("epiano"), phrase)
    assert tiny.engine.notes._held_bytes <= 200_000 or len(tiny.engine.notes._memo) == 1


@pytest.mark.parametrize("beat", [0.0, 1.0, 1.5, 2.25, 3.0])
def test_a_note_at_beat_k_starts_at_its_sample(beat):
    engine = DexedEngine(SPEC)
    at_zero = engine.phrase(voice("sine"), [(0.0, 0.5, 127, 69)]).copy()
    shifted = engine.phrase(voice("sine"), [(beat, 0.5, 127, 69)]).copy()
    onset = round(beat * 0.5 * 22050)
    assert not shifted[:onset].any()
    assert np.array_equal(shifted[onset:], at_zero[: len(shifted) - onset])
    assert np.abs(shifted[onset : onset + 64]).max() > 0


@pytest.mark.parametrize("pitch", [57, 69, 76])
def test_a_sine_voice_sounds_at_the_note_frequency(pitch):
    audio, sr = decode(PhraseRenderer(SPEC).render(voice("sine"), "56" * 16, [(0.0, 4.0, 100, pitch)])[0])
    window = audio[2000 : 2000 + 32768].astype(float) * np.hanning(32768)
    spectrum = np.abs(np.fft.rfft(window))
    peak_hz = np.argmax(spectrum) * sr / 32768
    expected = 440.0 * 2 ** ((pitch - 69) / 12)
    assert abs(peak_hz - expected) < 2 * sr / 32768


def test_velocity_changes_level():
    rms = [PhraseRenderer(SPEC).render(voice("sine"), "78" * 16, [(0.0, 2.0, v, 60)])[1]["rms"] for v in (30, 70, 127)]
    assert rms[0] < rms[1] < rms[2]


def test_loud_chords_are_scaled_below_the_ceiling_and_never_clip():
    chord = [(0.0, 4.0, 127, p) for p in range(48, 84, 2)]
    flac, row = PhraseRenderer(SPEC).render(voice("organ"), "9a" * 16, chord)
    audio, _ = decode(flac)
    assert row["gain"] < BASE_GAIN
    assert row["peak"] <= PEAK_CEILING + 1 / 32768 and np.abs(audio.astype(int)).max() < 32767


def test_a_manifest_row_alone_reproduces_its_flac():
    flac, row = PhraseRenderer(RenderSpec(bpm=100.0)).render(voice("epiano"), "bc" * 16, PHRASE)
    assert render_row(json.loads(json.dumps(row, default=lambda b: list(b)))) == flac  # survives serialising
    assert_sounds_like_its_row(flac, row)  # and the row says what dexed-py itself makes of it


def test_effects_chain_from_json_is_applied_and_recorded():
    chain = json.dumps([{"name": "Reverb", "room_size": 0.6}, {"name": "LowpassFilter", "cutoff_frequency_hz": 3000}])
    dry, _ = PhraseRenderer(SPEC).render(voice("epiano"), "de" * 16, PHRASE)
    wet, row = PhraseRenderer(RenderSpec(effects=chain)).render(voice("epiano"), "de" * 16, PHRASE)
    assert wet != dry and json.loads(row["effects"]) == json.loads(chain)  # recorded in canonical form
    assert PhraseRenderer(RenderSpec(effects=chain)).render(voice("epiano"), "de" * 16, PHRASE)[0] == wet
    assert render_row(row) == wet


@pytest.mark.parametrize("chain", ['[{"name": "NoSuchPlugin"}]', '{"name": "Reverb"}', "[{}]", "not json"])
def test_a_bad_effects_chain_is_a_clear_error(chain):
    """Malformed chains are refused as the profile is made; an unknown plugin when it is built."""
    with pytest.raises(ValueError, match=r"bad effects chain|invalid render profile: effects"):
        PhraseRenderer(RenderSpec(effects=chain))


def test_vst3_path_errors_are_clear(tmp_path):
    with pytest.raises(Vst3Error, match="no such file"):
        load_vst3(str(tmp_path / "Dexed.vst3"))
    (tmp_path / "Dexed.so").write_bytes(b"\x7fELF")
    with pytest.raises(Vst3Error, match=r"not a \.vst3"):
        load_vst3(str(tmp_path / "Dexed.so"))
    fake = tmp_path / "Fake.vst3"
    (fake / "Contents").mkdir(parents=True)
    with pytest.raises(Vst3Error, match="cannot load"):
        PhraseRenderer(SPEC, vst3_path=str(fake))


def test_voice_sysex_is_a_dx7_single_voice_dump():
    dump = voice_sysex(voice("epiano"))
    assert len(dump) == 163 and dump[:6] == bytes([0xF0, 0x43, 0, 0, 1, 0x1B]) and dump[-1] == 0xF7
    assert (sum(dump[6:161]) + dump[161]) % 128 == 0
