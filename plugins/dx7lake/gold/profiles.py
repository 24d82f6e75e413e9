"""Render profiles: every setting that changes the audio, named in a YAML file, identified by a hash.

A profile is a ``RenderSpec`` (``engine``): the engine and its installed version, sample
rate, tempo, beats per phrase, release tail and fade, note-length rule, effects chain, FLAC
level, and the augmentations (transpose by k semitones, velocity scale). Its id is part of
every gold key, manifest path and ``gold.renders`` row, so several profiles live side by
side in one lake and a change of any setting renders a new profile instead of reusing audio.

The canonical form (what the id hashes) is a JSON object of ``CANONICAL_FIELDS``, keys
sorted, no whitespace, ASCII only; a number that is integral is written as an integer
(``120.0`` and ``120`` are one tempo), any other as Python's shortest repr of the float
rounded to 12 significant digits; the effects chain is the parsed JSON list (``[]`` for
none) with the same rules inside. ``profile_id`` is the first 12 hex digits of the SHA-256
of that text, UTF-8 encoded (tests/test_profiles.py works one out by hand).

Named profiles live in a YAML file (``Settings.profiles``, by default the ``profiles.yml``
shipped beside this module): ``profiles: {name: {field: value, ...}}``, each field over the
defaults of ``RenderSpec``. A run picks names and may give ad-hoc ``OVERRIDES`` (bpm,
sample rate, transpose, velocity scale): each picked profile with those settings changed
is then an ad-hoc profile (named e.g. ``default+bpm=90``), rendered instead of it.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from ..config import DEFAULT_PROFILES, PHRASE_BEATS

if TYPE_CHECKING:
    from .engine import RenderSpec

DEFAULT_PROFILE = "default"
ID_DIGITS = 12
SAMPLE_RATES = (16000, 22050, 44100, 48000)
ENGINES = ("dexed-py", "dexed-vst3")
CANONICAL_FIELDS = (
    "beats",
    "bpm",
    "effects",
    "engine",
    "engine_version",
    "fade_s",
    "flac_level",
    "note_length",
    "sample_rate",
    "tail_s",
    "transpose",
    "velocity_scale",
)
# what a YAML profile may set (the engine comes from the deployment: DX7LAKE_DEXED_VST3)
YAML_FIELDS = tuple(f for f in CANONICAL_FIELDS if f not in ("engine", "engine_version"))
OVERRIDES = ("bpm", "sample_rate", "transpose", "velocity_scale")
_TYPES = {"sample_rate": int, "flac_level": int, "transpose": int}


class ProfileError(ValueError):
    """A profile that cannot be rendered, or a name the profiles file does not define."""


def _number(x: float | int) -> float | int:
    """12 significant digits; integral values as int, so 120.0 and 120 hash alike."""
    if isinstance(x, int):  # bools too
        return x
    rounded = float(f"{x:.12g}")
    return int(rounded) if rounded.is_integer() else rounded


def _normalise(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _normalise(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_normalise(v) for v in value]
    if isinstance(value, int | float) and not isinstance(value, bool):
        return _number(value)
    return value


def effects_chain(effects: str | list) -> list:
    """The effects chain as a list of ``{"name": ..., params}`` (``[]`` for none)."""
    if isinstance(effects, str):
        try:
            effects = json.loads(effects) if effects.strip() else []
        except json.JSONDecodeError as err:
            raise ProfileError(f"effects is not JSON: {effects!r} ({err})") from None
    named = isinstance(effects, list) and all(isinstance(e, dict) and isinstance(e.get("name"), str) for e in effects)
    if not named:
        raise ProfileError(f'effects must be a list of {{"name": ..., params}} objects, got {effects!r}')
    return _normalise(effects)


def effects_json(effects: str | list) -> str:
    """The chain as the canonical JSON string ``RenderSpec.effects`` holds ("" for none)."""
    chain = effects_chain(effects)
    return json.dumps(chain, sort_keys=True, separators=(",", ":")) if chain else ""


def check_spec(spec: RenderSpec) -> None:
    """Refuse a profile that cannot be rendered (``RenderSpec`` calls it when made)."""
    from .engine import NOTE_LENGTHS

    problems = []
    if spec.note_length not in NOTE_LENGTHS:
        problems.append(f"unknown note_length {spec.note_length!r}: dexed-py renders {NOTE_LENGTHS}")
    if spec.sample_rate not in SAMPLE_RATES:
        problems.append(f"sample_rate {spec.sample_rate!r} is not one of {SAMPLE_RATES}")
    if not (isinstance(spec.bpm, int | float) and 20 <= spec.bpm <= 400):
        problems.append(f"bpm {spec.bpm!r} is not within 20..400")
    if spec.beats != PHRASE_BEATS:
        problems.append(
            f"beats {spec.beats!r}: a phrase is silver's window of {PHRASE_BEATS:g} beats (dbt var beats_per_phrase);"
            " render another phrase length by changing that var and rebuilding silver, not in a profile"
        )
    if not (0 <= spec.tail_s <= 10 and 0 <= spec.fade_s <= 1):
        problems.append(f"tail_s {spec.tail_s!r} must be within 0..10 s and fade_s {spec.fade_s!r} within 0..1 s")
    if spec.flac_level not in range(9):
        problems.append(f"flac_level {spec.flac_level!r} is not within 0..8")
    if not (isinstance(spec.transpose, int) and -48 <= spec.transpose <= 48):
        problems.append(f"transpose {spec.transpose!r} must be a whole number of semitones within -48..48")
    if not (isinstance(spec.velocity_scale, int | float) and 0 < spec.velocity_scale <= 4):
        problems.append(f"velocity_scale {spec.velocity_scale!r} must be within (0, 4]")
    if spec.engine not in ENGINES:
        problems.append(f"engine {spec.engine!r} is not one of {ENGINES}")
    try:
        canonical_effects = effects_json(spec.effects)
    except ProfileError as err:
        problems.append(str(err))
    else:
        object.__setattr__(spec, "effects", canonical_effects)  # one spelling per chain
    if problems:
        raise ProfileError("invalid render profile: " + "; ".join(problems))


def canonical(spec: RenderSpec) -> str:
    """The text the profile id hashes (see the module's doc)."""
    values = {name: getattr(spec, name) for name in CANONICAL_FIELDS}
    values["effects"] = effects_chain(spec.effects)
    return json.dumps(_normalise(values), sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def profile_id(spec: RenderSpec) -> str:
    return hashlib.sha256(canonical(spec).encode()).hexdigest()[:ID_DIGITS]


def spec_from_canonical(text: str) -> RenderSpec:
    """The profile a canonical form (a manifest row's ``profile``, ``gold.profiles``) describes."""
    from .engine import RenderSpec

    values = json.loads(text)
    values["effects"] = effects_json(values.get("effects", []))
    return RenderSpec(**_typed(values))


def _typed(values: dict) -> dict:
    """YAML and JSON numbers as the spec's types: an integral float for an int field is fine, 12.5 is not."""
    out = dict(values)
    for name, kind in _TYPES.items():
        if name in out and out[name] is not None:
            value = out[name]
            if isinstance(value, bool) or not isinstance(value, int | float) or not float(value).is_integer():
                raise ProfileError(f"{name} must be a whole number, got {value!r}")
            out[name] = kind(value)
    for name in ("bpm", "velocity_scale", "tail_s", "fade_s", "beats"):
        if name in out and isinstance(out[name], int) and not isinstance(out[name], bool):
            out[name] = float(out[name])
    return out


def load_profiles(path: str | Path = DEFAULT_PROFILES) -> dict[str, dict]:
    """The named profiles of a YAML file, as the settings each changes (checked by ``resolve``)."""
    try:
        raw = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as err:
        raise ProfileError(f"cannot read the profiles file {path}: {err}") from None
    profiles = raw.get("profiles") if isinstance(raw, dict) else None
    if not isinstance(profiles, dict) or not profiles:
        raise ProfileError(f"{path}: expected a mapping 'profiles: {{name: {{setting: value}}}}'")
    out = {}
    for name, settings in profiles.items():
        settings = settings or {}
        if not isinstance(settings, dict):
            raise ProfileError(f"{path}: profile {name!r} must be a mapping of settings")
        if unknown := sorted(set(settings) - set(YAML_FIELDS)):
            raise ProfileError(f"{path}: profile {name!r} sets {unknown}; a profile may set {list(YAML_FIELDS)}")
        out[str(name)] = settings
    return out


def profile_names(path: str | Path = DEFAULT_PROFILES) -> list[str]:
    return list(load_profiles(path))


def _make_spec(settings: dict, engine: str = "dexed-py", engine_version: str | None = None) -> RenderSpec:
    from .engine import RenderSpec, installed_engine_version

    values = _typed(settings)
    if "effects" in values:
        values["effects"] = effects_json(values["effects"])
    version = engine_version or installed_engine_version(engine)
    return RenderSpec(**values, engine=engine, engine_version=version)


def resolve(
    names: list[str] | str | None,
    overrides: dict | None = None,
    path: str | Path = DEFAULT_PROFILES,
    effects: str = "",
    vst3_path: str | None = None,
) -> list[tuple[str, RenderSpec]]:
    """(name, profile) of each picked name (``default`` when none), each changed by the
    ``OVERRIDES`` given in ``overrides`` (an ad-hoc profile per picked one). A
    non-empty ``effects`` (DX7LAKE_EFFECTS) replaces every profile's chain; with
    ``vst3_path`` (DX7LAKE_DEXED_VST3) the engine is the Dexed VST3, versioned by its file name."""
    if isinstance(names, str):
        names = [n.strip() for n in names.split(",") if n.strip()]
    names = list(dict.fromkeys(names or [DEFAULT_PROFILE]))
    defined = load_profiles(path)
    if unknown := [n for n in names if n not in defined]:
        raise ProfileError(f"unknown render profile(s) {unknown}: {path} defines {sorted(defined)}")
    engine, version = ("dexed-vst3", Path(vst3_path).name) if vst3_path else ("dexed-py", None)

    def spec(settings: dict) -> RenderSpec:
        settings = {**settings, **({"effects": effects} if effects else {})}
        try:
            return _make_spec(settings, engine, version)
        except (TypeError, ProfileError) as err:
            raise ProfileError(f"{path}: {err}") from None

    given = {k: v for k, v in (overrides or {}).items() if v is not None and v != ""}
    if unknown := sorted(set(given) - set(OVERRIDES)):
        raise ProfileError(f"unknown profile override(s) {unknown}: a run may override {list(OVERRIDES)}")
    suffix = "+" + ",".join(f"{k}={_number(float(v))}" for k, v in sorted(given.items())) if given else ""
    chosen = [(name + suffix, spec({**defined[name], **given})) for name in names]
    unique: dict[str, tuple[str, RenderSpec]] = {}
    for name, profile in chosen:
        unique.setdefault(profile.profile_id, (name, profile))
    return list(unique.values())
