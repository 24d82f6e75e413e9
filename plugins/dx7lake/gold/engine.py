"""The Dexed engine in-process: notes from dexed-py, memoised, mixed at sample-accurate onsets.

dexed-py runs the msfa engine Dexed itself runs. A DX7 note rendered alone is a pure
function of (voice, pitch, velocity, held samples, rendered samples): the engine keeps
no state between calls (tests check it). So a phrase is the sum of its notes, each
rendered alone and added at its onset, and a worker can memoise note renders: the mix
is bit-identical to rendering every note afresh, with far fewer engine calls.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..config import DEFAULT_BPM, DEFAULT_SAMPLE_RATE, PHRASE_BEATS
from .patches import Voice

Note = tuple[float, float, int, int]  # (start beats, duration beats, velocity, pitch)

DEFAULT_MEMO_BYTES = 192 << 20  # per worker: ~1,400 distinct notes of 1.5 s at 22,050 Hz


@dataclass(frozen=True)
class RenderSpec:
    """Everything a render depends on besides the notes and the voice (recorded per row)."""

    sample_rate: int = DEFAULT_SAMPLE_RATE
    bpm: float = DEFAULT_BPM
    beats: float = PHRASE_BEATS
    tail_s: float = 0.5
    fade_s: float = 0.05
    release_s: float = 1.0  # how long a released note rings before it is cut
    flac_level: int = 0  # libFLAC compression level 0..8: 0 encodes fastest, 5 is ~25% smaller
    effects: str = ""  # JSON effects chain (see effects.py), "" for none

    @property
    def seconds_per_beat(self) -> float:
        return 60.0 / self.bpm

    @property
    def samples_per_beat(self) -> float:
        return 60.0 * self.sample_rate / self.bpm

    def samples(self, beats: float) -> int:
        """Sample index of a time in beats: onsets and held lengths both go through here."""
        return round(beats * self.samples_per_beat)

    @property
    def total_samples(self) -> int:
        return round((self.beats * self.seconds_per_beat + self.tail_s) * self.sample_rate)

    @property
    def release_samples(self) -> int:
        return round(self.release_s * self.sample_rate)

    @property
    def fade_samples(self) -> int:
        return round(self.fade_s * self.sample_rate)


class DexedNotes:
    """Single notes from one dexed-py synth per voice, behind a size-bounded LRU memo."""

    def __init__(self, spec: RenderSpec, memoise: bool = True, memo_bytes: int = DEFAULT_MEMO_BYTES) -> None:
        self.spec = spec
        self.memoise = memoise
        self.memo_bytes = memo_bytes
        self.hits = 0
        self.misses = 0
        self._held_bytes = 0
        self._synths: dict[str, object] = {}
        self._memo: OrderedDict[tuple[str, int, int, int], np.ndarray] = OrderedDict()

    def synth(self, voice: Voice):
        synth = self._synths.get(voice.patch_id)
        if synth is None:
            from dexed._dexed import DexedSynth

            synth = DexedSynth(float(self.spec.sample_rate), 0)
            synth.load_sysex(bytes(voice.vced))
            self._synths[voice.patch_id] = synth
        return synth

    def render(self, voice: Voice, pitch: int, velocity: int, held: int) -> np.ndarray:
        """One note held ``held`` samples, rendered through its release, cut at the phrase length."""
        spec = self.spec
        length = min(held + spec.release_samples, spec.total_samples)
        sr = spec.sample_rate
        return self.synth(voice).render(int(pitch), int(velocity), held / sr, length / sr)

    def note(self, voice: Voice, pitch: int, velocity: int, held: int) -> np.ndarray:
        if not self.memoise:
            self.misses += 1
            return self.render(voice, pitch, velocity, held)
        key = (voice.patch_id, pitch, velocity, held)
        audio = self._memo.get(key)
        if audio is not None:
            self.hits += 1
            self._memo.move_to_end(key)
            return audio
        self.misses += 1
        audio = self.render(voice, pitch, velocity, held)
        audio.setflags(write=False)
        self._memo[key] = audio
        self._held_bytes += audio.nbytes
        while self._held_bytes > self.memo_bytes and len(self._memo) > 1:
            _, dropped = self._memo.popitem(last=False)
            self._held_bytes -= dropped.nbytes
        return audio


class DexedEngine:
    """Phrases as the sum of their notes, each added at its sample-accurate onset."""

    def __init__(self, spec: RenderSpec, memoise: bool = True, memo_bytes: int = DEFAULT_MEMO_BYTES) -> None:
        self.spec = spec
        self.notes = DexedNotes(spec, memoise, memo_bytes)
        self._buf = np.zeros(spec.total_samples, dtype=np.float64)

    def phrase(self, voice: Voice, notes: Sequence[Note]) -> np.ndarray:
        """The float mix (engine units), in a buffer reused by the next call."""
        total = self.spec.total_samples
        per_beat = self.spec.samples_per_beat  # inlined RenderSpec.samples: this loop is the hot path
        note = self.notes.note
        buf = self._buf
        buf.fill(0.0)
        for start, duration, velocity, pitch in notes:
            onset = round(start * per_beat)
            if onset >= total:
                continue
            audio = note(voice, pitch, velocity, round(duration * per_beat))
            n = min(len(audio), total - onset)
            buf[onset : onset + n] += audio[:n]
        return buf

    def stats(self) -> dict:
        return {"engine_calls": self.notes.misses, "memo_hits": self.notes.hits}
