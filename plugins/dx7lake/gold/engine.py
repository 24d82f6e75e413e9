"""The Dexed engine in-process: notes from dexed-py, memoised, mixed at sample-accurate onsets.

dexed-py runs the msfa engine Dexed itself runs. A DX7 note rendered alone is a pure
function of (voice, pitch, velocity, held samples, rendered samples): the engine keeps
no state between calls (tests check it). So a phrase is the sum of its notes, each
rendered alone and added at its onset, and a worker can memoise note renders: the mix
is bit-identical to rendering every note afresh, with far fewer engine calls.

How long a note is rendered is the spec's ``note_length`` rule, recorded in every manifest:

- ``until-silent`` (the default): a note sounds through its whole release or to the phrase
  end, whichever comes first; nothing is cut. The engine's output becomes exactly 0.0 once
  every carrier's envelope has fallen below msfa's level threshold, and it stays 0.0 (a
  released envelope only falls, towards L4 = 0). So a note is rendered until it is
  provably silent and its trailing zeros are dropped: identical to rendering it to the
  phrase end. Some notes never fall silent (at high velocity a carrier's release floor
  can sit just above the threshold: a 1-LSB tone forever); they are rendered to the end.
- ``release-1s``: the rule of gold before issue 19, each note cut 1 s after its note-off;
  kept so that old manifest rows still reproduce their FLACs.

Exact equivalences of the engine make the memo hit more often (tests check them against
dexed-py): velocity reaches a note only as each operator's level offset, msfa's
``ScaleVelocity(velocity, sensitivity)`` (a 64-step table, scaled down by each operator's
sensitivity: velocities giving the same six offsets are one note, and all are one for a
voice without velocity sensitivity); a note-off takes effect at the end of the 64-sample
block it falls in, so held lengths within one block render identically; and a note
released after the phrase end sounds there as one held forever.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from dexed import Patch, get_carriers
from dexed.graph import VELOCITY_DATA  # msfa's velocity table (dx7note.cc)

from ..config import DEFAULT_BPM, DEFAULT_SAMPLE_RATE, PHRASE_BEATS
from .patches import Voice

Note = tuple[float, float, int, int]  # (start beats, duration beats, velocity, pitch)

DEFAULT_MEMO_BYTES = 192 << 20  # per worker: ~1,400 distinct notes of 1.5 s at 22,050 Hz
DEXED_PY = "dexed-py"
UNTIL_SILENT = "until-silent"
RELEASE_1S = "release-1s"
NOTE_LENGTHS = (UNTIL_SILENT, RELEASE_1S)
ENGINE_BLOCK = 64  # msfa's block: a note-off lands at the end of the block it falls in
MIN_SILENCE = 256  # samples of zeros after the note-off (and at least 2 carrier periods) that prove a note over


def installed_engine_version(engine: str = DEXED_PY) -> str:
    """The installed version of dexed-py (a render profile records it: another engine build
    may render other audio); ``unknown`` for an engine that is not a Python package."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(engine) if engine == DEXED_PY else "unknown"
    except PackageNotFoundError:
        return "unknown"


@dataclass(frozen=True)
class RenderSpec:
    """Everything a render depends on besides the notes and the voice: a render profile
    (``profiles``), identified by ``profile_id``, a hash of its canonical form.

    ``transpose`` and ``velocity_scale`` are augmentations, applied to a phrase's notes
    before the engine (``augment``)."""

    sample_rate: int = DEFAULT_SAMPLE_RATE
    bpm: float = DEFAULT_BPM
    beats: float = PHRASE_BEATS
    tail_s: float = 0.5
    fade_s: float = 0.05
    note_length: str = UNTIL_SILENT  # how long a note is rendered: one of NOTE_LENGTHS
    flac_level: int = 0  # libFLAC compression level 0..8: 0 encodes fastest, 5 is ~25% smaller
    effects: str = ""  # JSON effects chain (see effects.py), "" for none
    engine: str = DEXED_PY  # or "dexed-vst3" (``vst3``)
    engine_version: str = field(default_factory=installed_engine_version)
    transpose: int = 0  # semitones added to every pitch
    velocity_scale: float = 1.0  # every velocity times this, rounded, within 1..127

    def __post_init__(self) -> None:
        from .profiles import check_spec

        check_spec(self)

    @property
    def profile_id(self) -> str:
        from .profiles import profile_id

        return profile_id(self)

    def augment(self, notes: Sequence[Note]) -> list[Note]:
        """The notes as this profile renders them: transposed, velocities scaled."""
        if not self.transpose and self.velocity_scale == 1.0:
            return list(notes)
        k, scale = self.transpose, self.velocity_scale
        return [(s, d, min(127, max(1, round(v * scale))), _fold(p + k)) for s, d, v, p in notes]

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
    def fade_samples(self) -> int:
        return round(self.fade_s * self.sample_rate)


def _fold(pitch: int) -> int:
    """A transposed pitch outside MIDI's 0..127 moved back by octaves: it keeps its pitch class."""
    while pitch > 127:
        pitch -= 12
    while pitch < 0:
        pitch += 12
    return pitch


class VoiceFacts:
    """What a voice's parameters say about its notes: which velocities sound alike, and
    when a note can be proved silent.

    A run of zeros after the note-off proves a note over only when every carrier's
    released envelope falls towards 0 and nothing can lift it back: no carrier with
    L4 > 0, no fixed-frequency carrier (a 1 Hz tone has long zero runs), no carrier under
    LFO amplitude modulation. A carrier above the threshold puts out negative samples
    (at least one LSB) every period, so the run must outlast two periods of the lowest
    carrier, taken with every pitch shift the voice can apply.
    """

    def __init__(self, voice: Voice) -> None:
        patch = Patch.from_sysex(bytes(voice.vced)[:155])
        carriers = [patch.op[i] for i in get_carriers(patch.algorithm)]
        self.can_fall_silent = all(
            op.envelope.levels[3] == 0
            and op.frequency_mode == 0
            and not (op.amp_mod_sensitivity and patch.lfo.amp_mod_depth)
            for op in carriers
        )
        ratio = min((op.frequency_coarse or 0.5) * (1 + op.frequency_fine / 100) for op in carriers)
        ratio *= 0.9  # detune
        if any(level != 50 for level in patch.pitch_envelope.levels):
            ratio /= 16  # the pitch envelope spans up to 4 octaves down
        if patch.lfo.pitch_mod_depth and patch.pitch_mod_sensitivity:
            ratio /= 2
        self._lowest_ratio = ratio
        self._transpose = patch.transpose - 24
        sensitivities = [op.velocity_sensitivity for op in patch.op]
        offsets = {v: tuple(_velocity_offset(v, s) for s in sensitivities) for v in range(128)}
        first = {}
        self.velocity_class = [first.setdefault(offsets[v], v) for v in range(128)]  # lowest equivalent velocity

    def silence(self, pitch: int, sample_rate: int) -> int:
        """Zeros after the note-off that prove a note of ``pitch`` silent for good."""
        hz = 440.0 * 2 ** ((pitch + self._transpose - 69) / 12) * self._lowest_ratio
        return max(MIN_SILENCE, math.ceil(2 * sample_rate / hz))


def _velocity_offset(velocity: int, sensitivity: int) -> int:
    """msfa's ScaleVelocity: what velocity adds to an operator's output level."""
    return ((sensitivity * (int(VELOCITY_DATA[velocity >> 1]) - 239) + 7) >> 3) << 4


def _sounding_end(audio: np.ndarray) -> int:
    """Index after the last nonzero sample (0 if none), searched from the end in chunks."""
    stop = len(audio)
    while stop > 0:
        start = max(0, stop - 4096)
        chunk = audio[start:stop]
        if chunk.any():
            return start + int(np.flatnonzero(chunk)[-1]) + 1
        stop = start
    return 0


@dataclass
class Rendered:
    audio: np.ndarray  # a note's samples from its onset; zero after the end when ``complete``
    complete: bool  # every sample not held is 0.0 (the note fell silent, or was cut by its rule)


class DexedNotes:
    """Single notes from one dexed-py synth per voice, behind a size-bounded LRU memo."""

    def __init__(self, spec: RenderSpec, memoise: bool = True, memo_bytes: int = DEFAULT_MEMO_BYTES) -> None:
        self.spec = spec
        self.memoise = memoise
        self.memo_bytes = memo_bytes
        self.hits = 0
        self.misses = 0
        self.engine_samples = 0  # samples the engine computed, retries included
        self._held_bytes = 0
        self._synths: dict[str, object] = {}
        self._facts_by_id: dict[str, VoiceFacts] = {}
        self._guess: dict[tuple[str, int], int] = {}  # (voice, velocity class): release samples to try first
        self._memo: OrderedDict[tuple[str, int, int, int], Rendered] = OrderedDict()

    def synth(self, voice: Voice):
        synth = self._synths.get(voice.patch_id)
        if synth is None:
            from dexed._dexed import DexedSynth

            synth = DexedSynth(float(self.spec.sample_rate), 0)
            synth.load_sysex(bytes(voice.vced))
            self._synths[voice.patch_id] = synth
        return synth

    def render(self, voice: Voice, pitch: int, velocity: int, held: int, length: int) -> np.ndarray:
        """One note held ``held`` samples, ``length`` samples from its onset: one engine call."""
        sr = self.spec.sample_rate
        self.engine_samples += length
        return self.synth(voice).render(int(pitch), int(velocity), held / sr, length / sr)

    def _facts(self, voice: Voice) -> VoiceFacts:
        facts = self._facts_by_id.get(voice.patch_id)
        if facts is None:
            facts = self._facts_by_id[voice.patch_id] = VoiceFacts(voice)
        return facts

    def _until_silent(self, voice: Voice, pitch: int, velocity: int, held: int, need: int) -> Rendered:
        """The note to its proven silence or to ``need`` samples, whichever is shorter.

        A voice that can fall silent is first tried to its usual release (learnt per voice
        and velocity class) plus the proof window; only a note still sounding there is
        rendered again, to ``need``.
        """
        facts = self._facts(voice)
        if not facts.can_fall_silent:
            return Rendered(self.render(voice, pitch, velocity, held, need), False)
        off = -(-held // ENGINE_BLOCK) * ENGINE_BLOCK
        window = facts.silence(pitch, self.spec.sample_rate)
        guess_key = (voice.patch_id, velocity)
        guess = self._guess.get(guess_key, self.spec.sample_rate // 2)
        length = min(need, off + guess + window)
        audio = self.render(voice, pitch, velocity, held, length)
        if length >= off + window and not audio[length - window :].any():
            return Rendered(audio[: _sounding_end(audio)].copy(), True)  # the memo holds only what sounds
        if length == need:
            return Rendered(audio, False)
        self._guess[guess_key] = 2 * guess  # this voice rings longer at this velocity: try longer next time
        return Rendered(self.render(voice, pitch, velocity, held, need), False)

    def note(self, voice: Voice, pitch: int, velocity: int, held: int, need: int) -> np.ndarray:
        """The note's samples from its onset: at least ``need`` of them, or all it ever sounds."""
        if self.spec.note_length == RELEASE_1S:
            need = min(held + self.spec.sample_rate, self.spec.total_samples)
        velocity = self._facts(voice).velocity_class[velocity]
        if self.spec.note_length == RELEASE_1S:
            block = held  # legacy cuts fall at held + 1 s exactly: there the held length itself is the key
        else:
            block = -(-held // ENGINE_BLOCK)
            if block * ENGINE_BLOCK >= self.spec.total_samples:  # released after the phrase end: never, here
                block = -(-self.spec.total_samples // ENGINE_BLOCK)
                held = block * ENGINE_BLOCK
        key = (voice.patch_id, pitch, velocity, block)
        found = self._memo.get(key) if self.memoise else None
        if found is not None and (found.complete or len(found.audio) >= need):
            self.hits += 1
            self._memo.move_to_end(key)
            return found.audio
        self.misses += 1
        if self.spec.note_length == RELEASE_1S:
            rendered = Rendered(self.render(voice, pitch, velocity, held, need), True)
        else:
            rendered = self._until_silent(voice, pitch, velocity, held, need)
        if self.memoise:
            self._remember(key, rendered, found)
        return rendered.audio

    def _remember(self, key: tuple, rendered: Rendered, replaced: Rendered | None) -> None:
        rendered.audio.setflags(write=False)
        if replaced is not None:
            self._held_bytes -= replaced.audio.nbytes
        self._memo[key] = rendered
        self._memo.move_to_end(key)
        self._held_bytes += rendered.audio.nbytes
        while self._held_bytes > self.memo_bytes and len(self._memo) > 1:
            _, dropped = self._memo.popitem(last=False)
            self._held_bytes -= dropped.audio.nbytes


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
            audio = note(voice, pitch, velocity, round(duration * per_beat), total - onset)
            n = min(len(audio), total - onset)
            buf[onset : onset + n] += audio[:n]
        return buf

    def stats(self) -> dict:
        return {
            "engine_calls": self.notes.misses,
            "memo_hits": self.notes.hits,
            "engine_samples": self.notes.engine_samples,
        }
