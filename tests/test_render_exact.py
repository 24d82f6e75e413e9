"""Gold audio is the engine's audio: renders against an independent per-note dexed-py mix.

The reference here is written with dexed-py's public API alone: each note rendered by its
own call from its onset to the phrase end (so nothing is ever cut), summed at its onset.
It shares no code with the render path (no RenderSpec, no memo, no note-length rule).
Voices: every built-in, and a 32-voice ``.syx`` bank written here byte by byte with long
releases and the cases that keep a note from ever falling silent (L4 > 0, LFO amplitude
modulation, fixed frequencies, velocity floors).
"""

from __future__ import annotations

import io
import math
import random

import numpy as np
import pytest
import soundfile as sf
from dexed import DexedSynth, Patch

from dx7lake.gold.engine import ENGINE_BLOCK, RELEASE_1S, VoiceFacts
from dx7lake.gold.patches import builtin_voices, load_syx
from dx7lake.gold.render import PhraseRenderer, RenderSpec

SR, BPM, PHRASE_S, FADE_S = 22050, 120.0, 2.5, 0.05
TOTAL = round(PHRASE_S * SR)
LIMIT_DB = -60.0

# (start beats, duration beats, velocity, pitch): zero-length and over-long notes, the same
# note at a late and then an early onset (the memo must not serve the shorter render), pitch extremes
PHRASES = [
    [(3.0, 0.5, 100, 60), (0.0, 0.5, 100, 60), (1.0, 1.0, 127, 64), (2.0, 2.0, 80, 67), (3.5, 0.0, 90, 72)],
    [(0.0, 4.0, 127, 36), (0.25, 0.01, 64, 96), (3.0, 3.0, 110, 48), (1.5, 0.75, 101, 55)],
    [(0.0, 0.25, 70, 24), (0.5, 0.25, 71, 108), (1.0, 0.25, 120, 84), (2.75, 1.0, 127, 30)],
]


def _op(rates, levels, ol=99, coarse=1, fine=0, mode=0, ams=0, kvs=0, rs=0, det=7, bp=39, ld=0, rd=0) -> bytes:
    """One operator in the packed (bulk dump) layout, 17 bytes."""
    return bytes([*rates, *levels, bp, ld, rd, 0, (det << 3) | rs, (kvs << 2) | ams, ol, (coarse << 1) | mode, fine])


def _voice(name, ops, alg, fb=0, peg=(50, 50, 50, 50), lfo=(35, 0, 0, 0), pms=0, transpose=24) -> bytes:
    """A packed 128-byte voice: ``ops`` from OP1 to OP6 (stored OP6 first), ``lfo`` = speed, delay, pmd, amd."""
    body = b"".join(reversed(ops)) + bytes([99, 99, 99, 99, *peg, alg, fb, *lfo, pms << 4, transpose])
    return body + name.ljust(10)[:10].encode("ascii")


def long_release_bank() -> bytes:
    """A DX7 32-voice bulk dump: slow releases, drones, LFO tremolo, fixed and sub-octave carriers."""
    slow = (99, 40, 30, 15)
    off = [_op(slow, (99, 90, 85, 0), ol=0)] * 5
    voices = [
        _voice("SLOW PAD", [_op(slow, (99, 90, 85, 0), kvs=3)] * 6, alg=31),
        _voice("VERYSLOW", [_op((99, 50, 50, 1), (99, 95, 90, 0))] + [_op(slow, (99, 90, 85, 0), ol=0)] * 5, alg=31),
        _voice("DRONE L4", [_op((99, 50, 50, 30), (99, 90, 80, 50))] + [_op(slow, (99, 0, 0, 0), ol=0)] * 5, alg=31),
        _voice("TREMOLO", [_op(slow, (99, 90, 85, 0), ams=3, ol=30), *off], alg=31, lfo=(5, 0, 0, 99)),
        _voice("FIXED 1HZ", [_op(slow, (99, 90, 85, 0), mode=1, coarse=0, ol=50), *off], alg=31),
        _voice("SUB OCT", [_op(slow, (99, 90, 85, 0), coarse=0)] + [_op(slow, (99, 80, 60, 0), coarse=3)] * 5, alg=4),
        _voice("PITCH EG", [_op(slow, (99, 90, 85, 0))] * 6, alg=31, peg=(99, 0, 50, 20)),
        _voice("TRANSP", [_op(slow, (99, 90, 85, 0), kvs=7)] * 6, alg=21, transpose=0),
        _voice("RATESCAL", [_op(slow, (99, 90, 85, 0), rs=7, ld=99, rd=99)] * 6, alg=8, fb=7),
        _voice("VIBRATO", [_op(slow, (99, 90, 85, 0))] * 6, alg=31, lfo=(30, 0, 99, 0), pms=7),
    ]
    rng = random.Random(19)
    while len(voices) < 32:
        ops = [
            _op(
                (rng.randint(60, 99), rng.randint(10, 60), rng.randint(10, 60), rng.randint(5, 35)),
                (99, rng.randint(50, 99), rng.randint(40, 99), 0),
                ol=rng.randint(50, 99),
                coarse=rng.randint(0, 7),
                fine=rng.choice((0, 0, 13, 41)),
                kvs=rng.randint(0, 7),
                rs=rng.randint(0, 3),
                det=rng.randint(0, 14),
            )
            for _ in range(6)
        ]
        voices.append(_voice(f"RAND {len(voices):02d}", ops, alg=rng.randint(0, 31), fb=rng.randint(0, 7)))
    data = b"".join(voices)
    return bytes([0xF0, 0x43, 0x00, 0x09, 0x20, 0x00]) + data + bytes([(-sum(data)) & 0x7F, 0xF7])


@pytest.fixture(scope="module")
def bank_voices(tmp_path_factory):
    path = tmp_path_factory.mktemp("syx") / "long_release.syx"
    path.write_bytes(long_release_bank())
    voices = load_syx(path)
    assert len(voices) == 32 and voices[0].name == "SLOW PAD"
    return voices


def reference_mix(vced: bytes, notes) -> np.ndarray:
    """Each note by its own dexed-py call, onset to phrase end, summed: the engine's phrase."""
    synth = DexedSynth(sample_rate=SR)
    synth.load_patch(Patch.from_sysex(vced[:155]))
    mix = np.zeros(TOTAL)
    per_beat = 60.0 / BPM * SR
    for start, duration, velocity, pitch in notes:
        onset = round(start * per_beat)
        mix[onset:] += synth.render(pitch, velocity, round(duration * per_beat) / SR, (TOTAL - onset) / SR)
    return mix


def errors_db(renderer: PhraseRenderer, voice, notes) -> tuple[float, float]:
    """Worst differences from the reference outside the final fade, in dB of its peak: of the
    engine's mix, and of the FLAC beyond its 16-bit step (one LSB at the row's gain; quiet
    phrases are stored with few LSBs, as the gain staging says)."""
    ref = reference_mix(voice.vced, notes)
    peak = float(np.abs(ref).max())
    body = slice(0, TOTAL - round(FADE_S * SR))
    mix = renderer.engine.phrase(voice, notes)[body].copy()
    flac, row = renderer.render(voice, "ab" * 16, notes)
    pcm, _ = sf.read(io.BytesIO(flac), dtype="int16")
    step = 1.0 / (row["gain"] * 32767.0)
    beyond = max(float(np.abs(pcm[body] * step - ref[body]).max()) - step, 0.0)
    return tuple(20 * math.log10(max(worst, 1e-12) / peak) for worst in (float(np.abs(mix - ref[body]).max()), beyond))


def test_every_builtin_and_long_release_voice_matches_the_engine(bank_voices):
    renderer = PhraseRenderer(RenderSpec(sample_rate=SR, bpm=BPM))  # one memo across voices and phrases
    failing = {}
    for voice in [*builtin_voices(), *bank_voices]:
        for i, notes in enumerate(PHRASES):
            mix_db, flac_db = errors_db(renderer, voice, notes)
            if max(mix_db, flac_db) > LIMIT_DB:
                failing[voice.name, i] = (round(mix_db, 1), round(flac_db, 1))
    assert not failing, f"renders differ from the engine by more than {LIMIT_DB} dB (mix, flac): {failing}"
    assert renderer.engine.notes.hits > 0


def test_the_comparison_sees_the_old_one_second_cut():
    """The same check fails gold rendered by the old rule: it can tell a cut note."""
    (bell,) = [v for v in builtin_voices() if v.name == "bell"]
    legacy = PhraseRenderer(RenderSpec(sample_rate=SR, bpm=BPM, note_length=RELEASE_1S))
    assert min(errors_db(legacy, bell, PHRASES[0])) > -40.0


def test_released_notes_end_in_exact_zeros_unless_a_floor_holds_them():
    """What dexed-py does after the envelopes finish: 0.0 for good, except at a level floor."""
    for voice in builtin_voices():
        synth = DexedSynth(sample_rate=SR)
        synth.load_patch(Patch.from_sysex(voice.vced[:155]))
        audio = synth.render(60, 100, 0.5, 10.0)
        assert audio[: SR // 2].any() and not audio[-5 * SR :].any(), voice.name
    (sine,) = [v for v in builtin_voices() if v.name == "sine"]
    synth = DexedSynth(sample_rate=SR)
    synth.load_patch(Patch.from_sysex(sine.vced[:155]))
    tail = synth.render(60, 127, 0.5, 10.0)[-SR:]  # velocity 127 lifts the release floor over msfa's threshold
    assert tail.any() and np.abs(tail).max() < 1e-3


def test_velocities_of_one_class_and_held_lengths_within_a_block_render_alike(bank_voices):
    """The memo's key, checked on the engine: velocities the voice's facts call one class, and
    held lengths within one 64-sample block, render identically; other classes do not."""
    rng = random.Random(7)
    for voice in [*builtin_voices(), *bank_voices[:12]]:
        classes = VoiceFacts(voice).velocity_class
        synth = DexedSynth(sample_rate=SR)
        synth.load_patch(Patch.from_sysex(voice.vced[:155]))
        for _ in range(4):
            pitch, velocity, held = rng.randint(24, 108), rng.randint(1, 127), rng.randint(0, 20000)
            block_end = -(-held // ENGINE_BLOCK) * ENGINE_BLOCK
            length = (block_end + 4000) / SR
            a = synth.render(pitch, velocity, held / SR, length)
            assert np.array_equal(a, synth.render(pitch, classes[velocity], block_end / SR, length)), voice.name
            other = [v for v in range(1, 128) if classes[v] != classes[velocity]]
            if other:
                assert not np.array_equal(a, synth.render(pitch, rng.choice(other), held / SR, length)), voice.name
    organ = next(v for v in builtin_voices() if v.name == "organ")  # no velocity sensitivity: one class
    assert set(VoiceFacts(organ).velocity_class) == {0}


def zero_runs(audio: np.ndarray, start: int) -> list[tuple[int, int]]:
    """(first sample, length) of each run of exact zeros from ``start`` that sound follows."""
    flags = np.concatenate([[0], (audio[start:] == 0).astype(np.int8), [0]])
    edges = np.diff(flags)
    runs = zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1), strict=True)
    return [(start + a, b - a) for a, b in runs if start + b < len(audio)]


def test_a_silence_window_after_the_note_off_is_never_followed_by_sound(bank_voices):
    """The rule that ends a note, checked on the engine: for every voice the rule trusts, no
    run of zeros as long as its window follows a note-off and then sounds again; the voices
    it does not trust (LFO tremolo, 1 Hz carriers) do have such runs."""
    rng = random.Random(11)
    trusted = 0
    for voice in [*builtin_voices(), *bank_voices]:
        release = VoiceFacts(voice)
        synth = DexedSynth(sample_rate=SR)
        synth.load_patch(Patch.from_sysex(voice.vced[:155]))
        for _ in range(6):
            pitch, velocity, held = rng.randint(12, 115), rng.randint(1, 127), rng.randint(0, SR)
            audio = synth.render(pitch, velocity, held / SR, 6.0)
            off = -(-held // ENGINE_BLOCK) * ENGINE_BLOCK
            longest = max((n for _, n in zero_runs(audio, off)), default=0)
            if release.can_fall_silent:
                trusted += 1
                assert longest < release.silence(pitch, SR), (voice.name, pitch, velocity, held)
    assert trusted > 150
    untrusted = {v.name: v for v in bank_voices if not VoiceFacts(v).can_fall_silent}
    assert {"TREMOLO", "FIXED 1HZ", "DRONE L4"} <= set(untrusted)
    for name in ("TREMOLO", "FIXED 1HZ"):
        synth = DexedSynth(sample_rate=SR)
        synth.load_patch(Patch.from_sysex(untrusted[name].vced[:155]))
        audio = synth.render(60, 100, 0.3, 3.0)
        assert max(n for _, n in zero_runs(audio, round(0.3 * SR))) >= 128, name
