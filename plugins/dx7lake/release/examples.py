"""One release example per gold render: its audio key plus what silver knows of its content.

Gold manifests are read through :func:`gold_manifests` alone, which reads them as gold
does (:func:`..gold.render.current_manifest`: the union of each partition's parts), in one
render profile; silver through the warehouse, reading
existing columns of ``silver.phrases``, ``silver.phrase_contents`` and ``silver.track_summary``.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import mido
import psycopg
import pyarrow as pa

from ..gold.features import FEATURE_COLUMNS
from ..gold.render import current_manifest, manifest_parts, part_partition, read_part, spec_of_row, union_of_parts
from ..lake import Lake

SPLITS = ("train", "validation", "test")
SILVER_SPLIT = {"train": "train", "validate": "validation", "test": "test"}  # silver's name -> release name
SPLIT_BY = ("song", "patch")
TICKS_PER_BEAT = 480
# General MIDI instrument families: program // 8
GM_FAMILIES = (
    "piano",
    "chromatic_percussion",
    "organ",
    "guitar",
    "bass",
    "strings",
    "ensemble",
    "brass",
    "reed",
    "pipe",
    "synth_lead",
    "synth_pad",
    "synth_effects",
    "ethnic",
    "percussive",
    "sound_effects",
)


def gold_manifests(lake: Lake, profile_id: str, patch_id: str) -> pa.Table | None:
    """The renders of one patch in one profile: a content a later manifest part repeats keeps
    the later row (None: no parts)."""
    return current_manifest(lake, profile_id, patch_id)


def gold_partitions(lake: Lake, profile_id: str, patch_ids: Sequence[str]) -> dict[int, dict[str, list[str]]]:
    """Render partition -> patch -> the keys of its manifest parts (in write order), for ``patch_ids``."""
    out: dict[int, dict[str, list[str]]] = {}
    for patch_id in patch_ids:
        for key in manifest_parts(lake, profile_id, patch_id):
            out.setdefault(part_partition(key)[2], {}).setdefault(patch_id, []).append(key)
    return dict(sorted(out.items()))


def patches_with_rows(lake: Lake, partitions: dict[int, dict[str, list[str]]]) -> list[str]:
    """The patches of ``partitions`` that have a render: a patch whose parts are all empty has
    no example, so it takes no split of its own. Reads one column of a patch's parts until
    the first row (one part, as a rule)."""
    keys: dict[str, list[str]] = {}
    for parts in partitions.values():
        for patch_id, patch_keys in parts.items():
            keys.setdefault(patch_id, []).extend(patch_keys)
    return sorted(
        patch_id
        for patch_id, patch_keys in keys.items()
        if any(read_part(lake, k, columns=["content_hash"]).num_rows for k in reversed(patch_keys))
    )


def partition_rows(lake: Lake, parts: dict[str, list[str]]) -> dict[str, pa.Table]:
    """Each patch's manifest rows of one render partition (``parts``: patch -> part keys)."""
    return {patch_id: union_of_parts([read_part(lake, k) for k in keys]) for patch_id, keys in parts.items()}


def gold_patches(lake: Lake, profile_id: str) -> list[str]:
    """Patch ids that have manifest parts in gold in this profile."""
    return sorted({part_partition(key)[1] for key in manifest_parts(lake, profile_id)})


@dataclass(frozen=True)
class ContentInfo:
    """Where a phrase content occurs in the corpus (silver)."""

    silver_split: str
    phrase_ids: list[str]
    midi_ids: list[str]
    track_ids: list[str]
    programs: list[int]
    drums: list[bool]


CONTENT_SQL = """
select c.content_hash, c.set_type,
       array_agg(p.phrase_id order by p.phrase_id),
       array_agg(p.midi_id order by p.phrase_id),
       array_agg(p.track_id order by p.phrase_id),
       array_agg(t.program order by p.phrase_id),
       array_agg(t.is_drum order by p.phrase_id)
from silver.phrase_contents as c
join silver.phrases as p using (content_hash)
join silver.track_summary as t using (track_id)
where c.content_hash = any(%s)
group by c.content_hash, c.set_type
"""


def silver_contents(conn: psycopg.Connection, wanted: set[str]) -> dict[str, ContentInfo]:
    """ContentInfo of each wanted content hash (one render partition's: the indexes on
    ``content_hash`` serve it, whatever the size of silver)."""
    rows = conn.execute(CONTENT_SQL, (sorted(wanted),)).fetchall()
    return {h: ContentInfo(split, *lists) for h, split, *lists in rows}


def songs(conn: psycopg.Connection, midi_ids: Iterable[str]) -> list[tuple[str, str, str]]:
    """(midi_id = the file's md5, source_key, song split) of the given songs, from silver."""
    rows = conn.execute(
        "select midi_id, source_key, song_set_type from silver.song_summary where midi_id = any(%s) order by midi_id",
        (sorted(set(midi_ids)),),
    ).fetchall()
    return [(m, s, SILVER_SPLIT.get(t, t)) for m, s, t in rows]


def patch_splits(patch_ids: Sequence[str]) -> dict[str, str]:
    """NSynth-style: whole patches held out. Patches ordered by a hash of their id (stable,
    not by name); about a fifth go to test (at least one), a tenth to validation (at least
    one from three patches on), the rest to train."""
    ordered = sorted(patch_ids, key=lambda p: hashlib.blake2b(p.encode(), digest_size=8).hexdigest())
    n = len(ordered)
    n_test = max(1, round(n * 0.2)) if n >= 2 else 0
    n_val = max(1, round(n * 0.1)) if n >= 3 else 0
    split = {p: "test" for p in ordered[:n_test]}
    split |= {p: "validation" for p in ordered[n_test : n_test + n_val]}
    return split | {p: "train" for p in ordered[n_test + n_val :]}


def family(program: int | None, is_drum: bool) -> str:
    if is_drum:
        return "drums"
    return GM_FAMILIES[int(program) // 8] if program is not None and 0 <= program < 128 else "unknown"


def phrase_midi(notes: Sequence[dict], bpm: float) -> bytes:
    """A type-0 MIDI file of the aligned notes (beats) at the render's tempo, written with mido."""
    events: list[tuple[int, int, mido.Message]] = []
    for n in notes:
        on = round(n["start"] * TICKS_PER_BEAT)
        off = on + max(1, round(n["duration"] * TICKS_PER_BEAT))
        events.append((on, 1, mido.Message("note_on", note=int(n["pitch"]), velocity=int(n["velocity"]))))
        events.append((off, 0, mido.Message("note_off", note=int(n["pitch"]), velocity=0)))
    track = mido.MidiTrack([mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(bpm), time=0)])
    now = 0
    for tick, _, msg in sorted(events, key=lambda e: (e[0], e[1])):  # offs before ons at one tick
        track.append(msg.copy(time=tick - now))
        now = tick
    track.append(mido.MetaMessage("end_of_track", time=0))
    out = io.BytesIO()
    mido.MidiFile(type=0, ticks_per_beat=TICKS_PER_BEAT, tracks=[track]).save(file=out)
    return out.getvalue()


def patch_params(vced: bytes) -> dict:
    """The voice's parameters as dexed-py decodes them (the engine's own reading of the bytes)."""
    from dexed import Patch

    patch = Patch.from_raw(bytes(vced))

    def plain(value):
        if isinstance(value, bool | int | float | str) or value is None:
            return value
        if isinstance(value, list | tuple):
            return [plain(v) for v in value]
        return {k.lstrip("_"): plain(v) for k, v in vars(value).items()} if hasattr(value, "__dict__") else str(value)

    return {
        "name": patch.name.strip(),
        "algorithm": patch.algorithm,
        "feedback": patch.feedback,
        "transpose": patch.transpose,
        "osc_key_sync": bool(patch.osc_key_sync),
        "pitch_mod_sensitivity": patch.pitch_mod_sensitivity,
        "pitch_envelope": {"rates": list(patch.pitch_envelope.rates), "levels": list(patch.pitch_envelope.levels)},
        "lfo": plain(patch.lfo),
        "operators": [plain(patch.op[i]) for i in range(6)],
    }


def example_meta(row: dict, info: ContentInfo, split: str, params_json: str) -> dict:
    """Every column of an example but its audio bytes. Its notes (and MIDI) are those heard:
    silver's, with the profile's augmentations (transpose, velocity scale) applied."""
    heard = spec_of_row(row).augment([(n["start"], n["duration"], n["velocity"], n["pitch"]) for n in row["notes"]])
    notes = [{"start": s, "duration": d, "velocity": v, "pitch": p} for s, d, v, p in heard]
    return {
        "key": f"{row['content_hash']}_{row['patch_id']}",
        "split": split,
        "content_hash": row["content_hash"],
        "patch_id": row["patch_id"],
        "patch_name": row["patch_name"],
        "patch_params": params_json,
        "phrase_ids": info.phrase_ids,
        "midi_ids": info.midi_ids,
        "track_ids": info.track_ids,
        "programs": info.programs,
        "instrument_families": [family(p, d) for p, d in zip(info.programs, info.drums, strict=True)],
        "drum_free": not any(info.drums),
        "notes": notes,
        "bpm": row["bpm"],
        "sample_rate": row["sample_rate"],
        "duration_s": row["duration_s"],
        "peak": row["peak"],
        "rms": row["rms"],
        "gain": row["gain"],
        "sha256": row["sha256"],
        "engine": row["engine"],
        "effects": row["effects"],
        "flac_level": row["flac_level"],
        "flac_encoder": row["flac_encoder"],
        "profile_id": row["profile_id"],
        "profile": row["profile"],
        **{name: row.get(name) for name in FEATURE_COLUMNS},
        "gold_key": row["key"],
        "midi": phrase_midi(notes, row["bpm"]),
    }


def params_json(vced: bytes) -> str:
    return json.dumps(patch_params(vced), sort_keys=True)
