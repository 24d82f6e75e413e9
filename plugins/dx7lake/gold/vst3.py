"""The real Dexed VST3 through pedalboard, when ``DX7LAKE_DEXED_VST3`` names the plugin.

One plugin instance per worker, kept across phrases (no reload, no reset per phrase:
the voice is sent once as a DX7 single-voice sysex when it changes, and every phrase
renders its own release tail to silence). A phrase is one MIDI sequence with the notes at
their onsets in seconds; pedalboard returns planar float audio (channels × samples),
which is folded to mono here rather than misread as interleaved PCM.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .engine import Note, RenderSpec
from .patches import Voice

VST3_ENV = "DX7LAKE_DEXED_VST3"
SETTLE_S = 1.0  # rendered past each phrase end (instances are not reset between phrases)


class Vst3Error(ValueError):
    """The configured plugin path does not hold a loadable VST3 instrument."""


def voice_sysex(voice: Voice) -> bytes:
    """DX7 single-voice dump (VCED) of ``voice``: F0 43 00 00 01 1B, 155 bytes, checksum, F7."""
    body = bytes(voice.vced[:155])
    checksum = (-sum(body)) & 0x7F
    return bytes([0xF0, 0x43, 0x00, 0x00, 0x01, 0x1B]) + body + bytes([checksum, 0xF7])


def load_vst3(path: str):
    """The plugin at ``path``, or a Vst3Error that says what is wrong with the path."""
    plugin_path = Path(path)
    if not plugin_path.exists():
        raise Vst3Error(f"{VST3_ENV}={path}: no such file or folder (expected a Dexed .vst3 bundle)")
    if plugin_path.suffix.lower() != ".vst3":
        raise Vst3Error(f"{VST3_ENV}={path}: not a .vst3 plugin bundle")
    import pedalboard

    try:
        plugin = pedalboard.load_plugin(str(plugin_path))
    except Exception as err:  # pedalboard raises ImportError/RuntimeError with the loader's reason
        raise Vst3Error(f"{VST3_ENV}={path}: pedalboard cannot load it: {err}") from err
    if not getattr(plugin, "is_instrument", False):
        raise Vst3Error(f"{VST3_ENV}={path}: {plugin.name!r} is an effect, not an instrument")
    return plugin


class Vst3Engine:
    """Phrases from one Dexed VST3 instance (same ``phrase`` interface as DexedEngine)."""

    def __init__(self, spec: RenderSpec, path: str) -> None:
        self.spec = spec
        self.plugin = load_vst3(path)
        self._voice_id: str | None = None
        self.calls = 0

    def phrase(self, voice: Voice, notes: Sequence[Note]) -> np.ndarray:
        spec = self.spec
        sr = spec.sample_rate
        events: list[tuple[bytes, float]] = []
        if voice.patch_id != self._voice_id:
            events.append((voice_sysex(voice), 0.0))
            self._voice_id = voice.patch_id
        for start, duration, velocity, pitch in notes:
            on = spec.samples(start) / sr
            events.append((bytes([0x90, int(pitch), int(velocity)]), on))
            events.append((bytes([0x80, int(pitch), 0]), on + spec.samples(duration) / sr))
        duration_s = spec.total_samples / sr + SETTLE_S  # let the last releases die out before the next phrase
        audio = self.plugin(events, duration=duration_s, sample_rate=sr, num_channels=2, reset=False)
        self.calls += 1
        return np.asarray(audio, dtype=np.float64).mean(axis=0)[: spec.total_samples].copy()

    def stats(self) -> dict:
        return {"engine_calls": self.calls, "memo_hits": 0}
