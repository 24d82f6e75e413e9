"""One-time move of a lake rendered before render profiles to their layout (``dx7lake migrate-profiles``).

Before profiles, objects were ``gold/renders/<note_length>/<patch>/<hh>/<content_hash>.flac``
and manifest parts ``gold/manifests/<patch>/p=NNNN/part-*.parquet``. Each legacy row
records what its audio depends on (sample rate, tempo, effects, FLAC level, engine and
note-length rule; a row without the rule was cut 1 s after each note-off), so its profile
is computed from the row (``legacy_spec``); the engine's version, which legacy rows did not
record, is taken as the installed one (the audit of ``dx7lake validate --full`` decodes
every object; a re-render from its row shows whether the engine still agrees).

Each legacy part is moved on its own, in this order, so nothing is ever half-visible and a
migration killed anywhere is finished by running it again:

1. each row's object is copied to its profile's key (server-side on S3), unless it is there;
2. one new part per profile among its rows, with the legacy part's file name (its stamp
   keeps the order in which parts win), unless it is there;
3. the legacy objects its rows name are deleted, then the legacy part itself.

Readers list only parts of the profile layout, so a reader sees a row either in its legacy
part (not read) or in its new part, never a new part whose object is missing.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pyarrow as pa

from ..lake import Lake
from .engine import RELEASE_1S, RenderSpec, installed_engine_version
from .profiles import canonical, effects_json
from .render import GOLD_MANIFESTS, MANIFEST_SCHEMA, STORE_THREADS, legacy_parts, manifest_prefix, read_part, render_key


def legacy_spec(row: dict) -> RenderSpec:
    """The profile of a row written before profiles, from the settings it records."""
    engine = row.get("engine") or "dexed-py"
    return RenderSpec(
        sample_rate=int(row["sample_rate"]),
        bpm=float(row["bpm"]),
        effects=effects_json(row.get("effects") or ""),
        flac_level=int(row.get("flac_level") or 0),
        note_length=row.get("note_length") or RELEASE_1S,
        engine=engine,
        engine_version=installed_engine_version(engine),
    )


def _migrated_rows(table: pa.Table) -> dict[str, list[dict]]:
    """The part's rows by profile id, each with its profile and its new key."""
    by_profile: dict[str, list[dict]] = {}
    specs: dict[tuple, RenderSpec] = {}
    for row in table.to_pylist():
        settings = (row["sample_rate"], row["bpm"], row.get("effects"), row.get("flac_level"), row.get("note_length"))
        spec = specs.get(settings) or specs.setdefault(settings, legacy_spec(row))
        profile_id = spec.profile_id
        row.update(
            legacy_key=row["key"],
            key=render_key(profile_id, row["patch_id"], row["content_hash"]),
            note_length=spec.note_length,
            effects=spec.effects,
            profile_id=profile_id,
            profile=canonical(spec),
        )
        by_profile.setdefault(profile_id, []).append(row)
    return by_profile


def _copy(lake: Lake, source: str, key: str) -> int:
    if lake.exists(key):
        return 0
    try:
        lake.copy(source, key)
    except KeyError:
        raise KeyError(f"{source}: the legacy object a manifest row names is missing; {key} cannot be made") from None
    return 1


def migrate_part(lake: Lake, key: str) -> dict:
    """Move one legacy part and its objects to the profile layout (steps 1-3 of the module doc)."""
    patch_id, folder, name = key.removeprefix(GOLD_MANIFESTS + "/").split("/")
    render_p = int(folder.removeprefix("p="))
    by_profile = _migrated_rows(read_part(lake, key))
    rows = [row for group in by_profile.values() for row in group]
    with ThreadPoolExecutor(STORE_THREADS, thread_name_prefix="gold-migrate") as pool:
        copied = sum(pool.map(lambda r: _copy(lake, r["legacy_key"], r["key"]), rows))
    parts = []
    for profile_id, group in sorted(by_profile.items()):
        new = manifest_prefix(profile_id, patch_id, render_p) + name
        if not lake.exists(new):
            lake.put_parquet(new, pa.Table.from_pylist(group, schema=MANIFEST_SCHEMA))
        parts.append(new)
    legacy = sorted({r["legacy_key"] for r in rows} - {r["key"] for r in rows})
    with ThreadPoolExecutor(STORE_THREADS, thread_name_prefix="gold-migrate") as pool:
        list(pool.map(lake.delete, legacy))
    lake.delete(key)
    return {"part": key, "rows": len(rows), "copied": copied, "parts": parts, "profiles": sorted(by_profile)}


def migrate_lake(lake: Lake) -> dict:
    """Every legacy part of the lake (none: nothing to do, so a rerun writes nothing)."""
    done = [migrate_part(lake, key) for key in legacy_parts(lake)]
    return {
        "legacy_parts": len(done),
        "rows": sum(d["rows"] for d in done),
        "objects_copied": sum(d["copied"] for d in done),
        "parts_written": sum(len(d["parts"]) for d in done),
        "profiles": sorted({p for d in done for p in d["profiles"]}),
    }
