"""DX7 voices: a small bank designed in code, plus loading of ``.syx`` banks and voices.

No factory ROM data ships with dx7lake: the built-in voices are written here with the
dexed-py Patch API. A voice is identified everywhere by its ``patch_id``, a hash of its
156-byte unpacked (VCED) form, so the same sound always lands under the same gold keys.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from dexed import Patch


@dataclass(frozen=True)
class Voice:
    name: str
    vced: bytes  # 156-byte unpacked DX7 voice

    @property
    def patch_id(self) -> str:
        return patch_id_of(self.vced)


def patch_id_of(vced: bytes) -> str:
    return hashlib.blake2b(bytes(vced), digest_size=6).hexdigest()


def _env(op, rates, levels) -> None:
    op.envelope.rates = list(rates)
    op.envelope.levels = list(levels)


def _sine() -> Patch:
    """One carrier, ratio 1: close to a pure tone (used by the pitch tests too)."""
    p = Patch(name="DX7L SINE")
    p.algorithm = 31
    for i in range(6):
        p.op[i].output_level = 0
    p.op[0].output_level = 99
    p.op[0].velocity_sensitivity = 7
    _env(p.op[0], (95, 60, 50, 60), (99, 95, 90, 0))
    return p


def _epiano() -> Patch:
    """Three carrier/modulator stacks with a bright tine: an electric-piano family sound."""
    p = Patch(name="DX7L EPNO")
    p.algorithm = 4
    for i, (ratio, level) in enumerate(((1, 99), (1, 70), (1, 95), (14, 58), (1, 90), (1, 66))):
        p.op[i].frequency_coarse = ratio
        p.op[i].output_level = level
        p.op[i].velocity_sensitivity = 6 if i % 2 else 3
        _env(
            p.op[i], (95, 40, 30, 55) if i % 2 == 0 else (98, 60, 40, 60), (99, 80, 0, 0) if i % 2 else (99, 90, 70, 0)
        )
    p.op[4].detune = 9
    p.op[2].detune = 5
    return p


def _bell() -> Patch:
    """Inharmonic modulator ratios and slow decay: a glassy bell."""
    p = Patch(name="DX7L BELL")
    p.algorithm = 4
    for i, (ratio, level) in enumerate(((1, 99), (3, 75), (2, 90), (7, 60), (1, 85), (5, 50))):
        p.op[i].frequency_coarse = ratio
        p.op[i].output_level = level
        p.op[i].velocity_sensitivity = 4
        _env(p.op[i], (99, 30, 20, 40), (99, 70, 0, 0))
    p.op[3].frequency_fine = 41
    return p


def _organ() -> Patch:
    """Additive drawbar-like partials on six parallel carriers."""
    p = Patch(name="DX7L ORGN")
    p.algorithm = 31
    for i, (ratio, level) in enumerate(((0, 92), (1, 95), (2, 88), (3, 80), (4, 78), (8, 70))):
        p.op[i].frequency_coarse = ratio
        p.op[i].output_level = level
        _env(p.op[i], (99, 99, 99, 70), (99, 99, 99, 0))
    return p


BUILTIN: dict[str, Callable[[], Patch]] = {
    "sine": _sine,
    "epiano": _epiano,
    "bell": _bell,
    "organ": _organ,
}


def builtin_voices() -> list[Voice]:
    return [Voice(name, factory().to_sysex()) for name, factory in BUILTIN.items()]


def load_syx(path: str | Path) -> list[Voice]:
    """Voices of a 32-voice bulk dump or a single-voice (VCED) sysex file."""
    data = Path(path).read_bytes()
    if len(data) >= 4104:
        return [Voice(p.name.strip() or f"voice{i}", p.to_sysex()) for i, p in enumerate(Patch.load_bank(str(path)))]
    body = data[6:-2] if data[:1] == b"\xf0" else data
    if len(body) < 155:
        raise ValueError(f"{path}: not a DX7 bank (4104 bytes) or single voice (155+ bytes)")
    patch = Patch.from_sysex(body[:155])
    return [Voice(patch.name.strip(), patch.to_sysex())]


def choose_voices(spec: str | None) -> list[Voice]:
    """Voices from a comma list of built-in names or patch ids (default: all built-ins)."""
    voices = builtin_voices()
    if not spec:
        return voices
    wanted = [s.strip() for s in spec.split(",") if s.strip()]
    by_key = {v.name: v for v in voices} | {v.patch_id: v for v in voices}
    missing = [w for w in wanted if w not in by_key]
    if missing:
        raise ValueError(f"unknown patches {missing}; built-in voices are {sorted(BUILTIN)}")
    return [by_key[w] for w in wanted]
