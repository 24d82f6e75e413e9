"""DX7 voices: a small bank designed in code, plus loading of ``.syx`` banks and voices.

No factory ROM data ships with dx7lake: the built-in voices are written here with the
dexed-py Patch API. A voice is identified everywhere by its ``patch_id``, a hash of its
156-byte unpacked (VCED) form, so the same sound always lands under the same gold keys.

Voices are chosen by a comma list (the DAG's ``patches`` param, the CLI's ``--patches``):
built-in names, voice names or patch ids, and ``random:K`` or ``random:K:SEED`` for K
seeded picks from the banks. Banks are the ``.syx`` files (or folders of them) listed in
``DX7LAKE_SYX`` (separated by ``os.pathsep``); without banks, random picks come from the
built-ins.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from dexed import Patch


@dataclass(frozen=True)
class Voice:
    name: str
    vced: bytes  # 156-byte unpacked DX7 voice

    @cached_property
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


BANK_BYTES = 4104  # F0 43 0n 09 20 00, 32 packed voices of 128 bytes, checksum, F7
VOICE_HEADER = bytes([0xF0, 0x43])  # then 0n 00 01 1B, 155 voice bytes, checksum, F7


def load_syx(path: str | Path) -> list[Voice]:
    """Voices of a 32-voice bulk dump or a single-voice (VCED) sysex file."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as err:
        raise ValueError(f"{path}: cannot read DX7 sysex: {err.strerror}") from err
    if len(data) >= BANK_BYTES - 8:  # a bulk dump, or its bare 4,096-byte payload
        try:
            patches = Patch.load_bank(str(path))
        except Exception as err:
            raise ValueError(f"{path}: not a DX7 32-voice bank: {err}") from err
        return [Voice(p.name.strip() or f"{path.stem}:{i}", p.to_sysex()) for i, p in enumerate(patches)]
    body = data[6:-2] if data[:2] == VOICE_HEADER else data
    if len(body) < 155:
        raise ValueError(f"{path}: not a DX7 bank ({BANK_BYTES} bytes) or single voice (155+ bytes)")
    patch = Patch.from_sysex(body[:155])
    return [Voice(patch.name.strip() or path.stem, patch.to_sysex())]


def bank_voices(paths: Iterable[str | Path]) -> list[Voice]:
    """Voices of every ``.syx`` file named, or found in a folder named, in order."""
    voices: list[Voice] = []
    for entry in paths:
        entry = Path(entry)
        files = sorted(entry.rglob("*.syx")) + sorted(entry.rglob("*.SYX")) if entry.is_dir() else [entry]
        for file in files:
            voices.extend(load_syx(file))
    return voices


def _distinct(voices: Iterable[Voice]) -> list[Voice]:
    """First voice of each patch_id: banks often repeat a voice (INIT VOICE) under one sound."""
    seen: dict[str, Voice] = {}
    for v in voices:
        seen.setdefault(v.patch_id, v)
    return list(seen.values())


def random_voices(pool: list[Voice], k: int, seed: int = 0) -> list[Voice]:
    """K distinct voices of ``pool`` picked by a seeded generator: the same picks every run."""
    distinct = sorted(_distinct(pool), key=lambda v: v.patch_id)
    if not 0 < k <= len(distinct):
        raise ValueError(f"cannot pick {k} random voices from a bank of {len(distinct)} distinct voices")
    return random.Random(seed).sample(distinct, k)


def choose_voices(spec: str | None, banks: list[Voice] | None = None) -> list[Voice]:
    """Voices from a comma list of names, patch ids and ``random:K[:SEED]`` (default: all built-ins).

    ``banks`` are the voices of the configured sysex banks (``bank_voices(settings.syx)``);
    names and ids are looked up in the built-ins and the banks, random picks come from the
    banks (the built-ins when there are none).
    """
    builtins = builtin_voices()
    if not spec:
        return builtins
    banks = banks or []
    by_id = {v.patch_id: v for v in [*builtins, *banks]}
    by_name: dict[str, list[Voice]] = {}
    for v in [*builtins, *banks]:
        by_name[v.name] = _distinct([*by_name.get(v.name, []), v])
    chosen: list[Voice] = []
    for token in (t.strip() for t in spec.split(",")):
        if not token:
            continue
        if token.startswith("random:"):
            parts = token.split(":")
            if len(parts) not in (2, 3) or not all(p.isdigit() for p in parts[1:]):
                raise ValueError(f"bad patch choice {token!r}: use random:K or random:K:SEED")
            chosen.extend(random_voices(banks or builtins, int(parts[1]), int(parts[2]) if len(parts) == 3 else 0))
        elif token in by_id:
            chosen.append(by_id[token])
        elif len(by_name.get(token, ())) == 1:
            chosen.append(by_name[token][0])
        elif token in by_name:
            ids = [v.patch_id for v in by_name[token]]
            raise ValueError(f"patch name {token!r} names several voices {ids}; choose by patch id")
        else:
            raise ValueError(
                f"unknown patch {token!r}; built-in voices are {sorted(BUILTIN)}"
                + (f", banks hold {len(banks)} voices" if banks else " (no banks: set DX7LAKE_SYX)")
            )
    return _distinct(chosen)
