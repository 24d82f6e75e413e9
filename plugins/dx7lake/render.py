"""Gold rendering: unique phrase contents × DX7 voices to mono 16-bit FLAC with manifests.

Each note is rendered alone by the dexed-py engine (the msfa engine Dexed runs) and mixed
at its sample-accurate onset; a phrase lasts ``beats`` at ``bpm`` plus a release tail
that ends in a short fade. Note renders are deterministic, so a worker memoises them:
the output is identical to rendering every note afresh, with far fewer engine calls.

Gold objects are content-addressed (``gold/renders/<patch>/<hh>/<content_hash>.flac``)
and a partition's manifest is written last, so a killed task leaves no manifest and a
rerun skips every object that already exists.
"""

from __future__ import annotations

import hashlib
import io
import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import soundfile as sf

from .lake import Lake
from .patches import Voice

log = logging.getLogger(__name__)

GOLD_RENDERS = "gold/renders"
GOLD_MANIFESTS = "gold/manifests"

# Fixed gain for the summed engine output (a single DX7 note peaks near 3.0 at full
# velocity); loud chords are scaled down further so nothing clips.
BASE_GAIN = 0.1
PEAK_CEILING = 0.891  # -1 dBFS

MANIFEST_SCHEMA = pa.schema(
    [
        ("content_hash", pa.string()),
        ("patch_id", pa.string()),
        ("patch_name", pa.string()),
        ("key", pa.string()),
        ("sha256", pa.string()),
        ("bytes", pa.int64()),
        ("sample_rate", pa.int32()),
        ("duration_s", pa.float64()),
        ("peak", pa.float64()),
        ("rms", pa.float64()),
        ("bpm", pa.float64()),
        ("gain", pa.float64()),
        (
            "notes",
            pa.list_(
                pa.struct(
                    [
                        ("start", pa.float64()),
                        ("duration", pa.float64()),
                        ("velocity", pa.int32()),
                        ("pitch", pa.int32()),
                    ]
                )
            ),
        ),
        ("patch_vced", pa.binary()),
    ]
)

Note = tuple[float, float, int, int]  # (start beats, duration beats, velocity, pitch)


@dataclass(frozen=True)
class RenderSpec:
    sample_rate: int = 22050
    bpm: float = 120.0
    beats: float = 4.0
    tail_s: float = 0.5
    fade_s: float = 0.05
    release_s: float = 1.0  # how long a released note rings before it is cut

    @property
    def seconds_per_beat(self) -> float:
        return 60.0 / self.bpm

    @property
    def total_samples(self) -> int:
        return round((self.beats * self.seconds_per_beat + self.tail_s) * self.sample_rate)


@dataclass
class NoteRenderer:
    """One dexed engine per voice, with a per-worker memo of rendered notes."""

    spec: RenderSpec
    memoise: bool = True
    hits: int = 0
    misses: int = 0
    _synths: dict = field(default_factory=dict)
    _memo: dict = field(default_factory=dict)

    def _synth(self, voice: Voice):
        synth = self._synths.get(voice.patch_id)
        if synth is None:
            from dexed._dexed import DexedSynth

            synth = DexedSynth(float(self.spec.sample_rate), 0)
            synth.load_sysex(voice.vced)
            self._synths[voice.patch_id] = synth
        return synth

    def note(self, voice: Voice, pitch: int, velocity: int, duration_beats: float) -> np.ndarray:
        held = duration_beats * self.spec.seconds_per_beat
        key = (voice.patch_id, pitch, velocity, round(held * self.spec.sample_rate))
        if self.memoise:
            cached = self._memo.get(key)
            if cached is not None:
                self.hits += 1
                return cached
        self.misses += 1
        audio = np.asarray(
            self._synth(voice).render(int(pitch), int(velocity), held, held + self.spec.release_s), dtype=np.float32
        )
        if self.memoise:
            audio.setflags(write=False)
            self._memo[key] = audio
        return audio


def mix_phrase(renderer: NoteRenderer, voice: Voice, notes: Iterable[Note]) -> tuple[np.ndarray, float]:
    """Float mix of a phrase and the gain applied, before quantisation."""
    spec = renderer.spec
    total = spec.total_samples
    buf = np.zeros(total, dtype=np.float64)
    for start, duration, velocity, pitch in notes:
        onset = round(start * spec.seconds_per_beat * spec.sample_rate)
        if onset >= total:
            continue
        audio = renderer.note(voice, pitch, velocity, duration)
        n = min(len(audio), total - onset)
        buf[onset : onset + n] += audio[:n]
    fade = round(spec.fade_s * spec.sample_rate)
    if fade:
        buf[-fade:] *= np.linspace(1.0, 0.0, fade)
    raw_peak = float(np.max(np.abs(buf))) if total else 0.0
    gain = BASE_GAIN if raw_peak * BASE_GAIN <= PEAK_CEILING else PEAK_CEILING / raw_peak
    return buf * gain, gain


def to_pcm16(audio: np.ndarray) -> np.ndarray:
    return np.clip(np.round(audio * 32767.0), -32768, 32767).astype(np.int16)


def encode_flac(pcm: np.ndarray, sample_rate: int) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, pcm, sample_rate, format="FLAC", subtype="PCM_16")
    return buf.getvalue()


def render_key(patch_id: str, content_hash: str) -> str:
    return f"{GOLD_RENDERS}/{patch_id}/{content_hash[:2]}/{content_hash}.flac"


def manifest_key(patch_id: str, render_p: int) -> str:
    return f"{GOLD_MANIFESTS}/{patch_id}/p={render_p:04d}.parquet"


def render_phrase(renderer: NoteRenderer, voice: Voice, content_hash: str, notes: Sequence[Note]) -> tuple[bytes, dict]:
    """FLAC bytes and the manifest row of one phrase content with one voice."""
    spec = renderer.spec
    mixed, gain = mix_phrase(renderer, voice, notes)
    pcm = to_pcm16(mixed)
    flac = encode_flac(pcm, spec.sample_rate)
    as_float = pcm.astype(np.float64) / 32768.0
    row = {
        "content_hash": content_hash,
        "patch_id": voice.patch_id,
        "patch_name": voice.name,
        "key": render_key(voice.patch_id, content_hash),
        "sha256": hashlib.sha256(flac).hexdigest(),
        "bytes": len(flac),
        "sample_rate": spec.sample_rate,
        "duration_s": len(pcm) / spec.sample_rate,
        "peak": float(np.max(np.abs(as_float))),
        "rms": float(np.sqrt(np.mean(as_float**2))),
        "bpm": spec.bpm,
        "gain": gain,
        "notes": [
            {"start": float(s), "duration": float(d), "velocity": int(v), "pitch": int(p)} for s, d, v, p in notes
        ],
        "patch_vced": bytes(voice.vced),
    }
    return flac, row


def render_partition(
    lake: Lake,
    render_p: int,
    contents: Sequence[tuple[str, Sequence[Note]]],
    voices: Sequence[Voice],
    spec: RenderSpec,
) -> dict:
    """Render every (content, voice) of one partition that gold lacks; manifests last."""
    renderer = NoteRenderer(spec)
    started = time.perf_counter()
    rendered = reused = 0
    wanted = {content_hash for content_hash, _ in contents}
    for voice in voices:
        mkey = manifest_key(voice.patch_id, render_p)
        done = {r["content_hash"]: r for r in lake.read_parquet(mkey).to_pylist()} if lake.exists(mkey) else {}
        if set(done) == wanted:
            reused += len(done)
            continue
        rows = []
        for content_hash, notes in contents:
            if content_hash in done:
                rows.append(done[content_hash])
                reused += 1
                continue
            flac, row = render_phrase(renderer, voice, content_hash, notes)
            if lake.exists(row["key"]):  # written by an earlier, interrupted attempt
                reused += 1
            else:
                lake.put(row["key"], flac)
                rendered += 1
            rows.append(row)
        lake.put_parquet(mkey, pa.Table.from_pylist(rows, schema=MANIFEST_SCHEMA))
    seconds = time.perf_counter() - started
    calls = renderer.hits + renderer.misses
    return {
        "render_p": render_p,
        "contents": len(contents),
        "rendered": rendered,
        "reused": reused,
        "seconds": round(seconds, 3),
        "memo_hit_rate": round(renderer.hits / calls, 4) if calls else 0.0,
    }
