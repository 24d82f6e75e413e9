"""Render profiles: the id of a hand-written canonical form, the named profiles file and its
errors, augmentations heard in the audio, and the one-time move of a legacy lake."""

from __future__ import annotations

import hashlib
import io
import json

import numpy as np
import pyarrow as pa
import pytest
import soundfile as sf

from dx7lake.gold import migrate, profiles
from dx7lake.gold.engine import RenderSpec
from dx7lake.gold.patches import choose_voices
from dx7lake.gold.render import (
    GOLD_MANIFESTS,
    legacy_parts,
    manifest_parts,
    part_partition,
    read_manifest,
    render_partition,
)
from dx7lake.lake import Lake, LocalLake
from dx7lake.quality.validate import Validation, check_objects

VERSION = "0.3.0"


def test_the_profile_id_is_the_sha256_of_a_hand_written_canonical_form():
    hand = (
        '{"beats":4,"bpm":90,"effects":[{"name":"Reverb","room_size":0.3}],"engine":"dexed-py",'
        '"engine_version":"0.3.0","fade_s":0.05,"flac_level":0,"note_length":"until-silent",'
        '"sample_rate":22050,"tail_s":0.5,"transpose":12,"velocity_scale":1}'
    )
    spec = RenderSpec(bpm=90.0, transpose=12, effects='[{"room_size": 0.30, "name": "Reverb"}]', engine_version=VERSION)
    assert profiles.canonical(spec) == hand
    assert spec.profile_id == hashlib.sha256(hand.encode()).hexdigest()[:12]
    # one tempo however it is spelt; any setting that changes the audio is another profile
    assert (
        RenderSpec(bpm=90, engine_version=VERSION).profile_id == RenderSpec(bpm=90.0, engine_version=VERSION).profile_id
    )
    base = RenderSpec(engine_version=VERSION)
    others = [
        RenderSpec(bpm=91.0, engine_version=VERSION),
        RenderSpec(sample_rate=16000, engine_version=VERSION),
        RenderSpec(transpose=-1, engine_version=VERSION),
        RenderSpec(velocity_scale=0.5, engine_version=VERSION),
        RenderSpec(flac_level=5, engine_version=VERSION),
        RenderSpec(tail_s=1.0, engine_version=VERSION),
        RenderSpec(note_length="release-1s", engine_version=VERSION),
        RenderSpec(effects='[{"name": "Reverb"}]', engine_version=VERSION),
        RenderSpec(engine_version="0.3.1"),
    ]
    assert len({base.profile_id, *(o.profile_id for o in others)}) == len(others) + 1
    assert profiles.spec_from_canonical(hand) == spec


def test_the_shipped_profiles_file_names_the_default_and_its_variations():
    named = dict(profiles.resolve(["default", "slow90", "lofi16k", "up12"]))
    assert named["default"] == RenderSpec()
    assert named["slow90"] == RenderSpec(bpm=90.0)
    assert named["lofi16k"] == RenderSpec(sample_rate=16000)
    assert named["up12"] == RenderSpec(transpose=12)
    assert len({spec.profile_id for spec in named.values()}) == 4
    assert [n for n, _ in profiles.resolve(None)] == ["default"]


def test_overrides_change_every_picked_profile_and_repeats_are_dropped():
    chosen = profiles.resolve("up12,default", {"bpm": 90, "sample_rate": None})
    assert chosen == [("up12+bpm=90", RenderSpec(transpose=12, bpm=90.0)), ("default+bpm=90", RenderSpec(bpm=90.0))]
    assert [n for n, _ in profiles.resolve(["default", "slow90"], {"bpm": 90})] == ["default+bpm=90"]  # one profile


@pytest.mark.parametrize(
    ("yaml_text", "names", "overrides", "message"),
    [
        ("profiles: {default: {}}", ["nope"], {}, r"unknown render profile\(s\) \['nope'\].*defines \['default'\]"),
        ("profiles: {fast: {bpm: 1000}}", ["fast"], {}, r"bpm 1000.0 is not within 20..400"),
        ("profiles: {odd: {sample_rate: 12345}}", ["odd"], {}, r"sample_rate 12345 is not one of"),
        ("profiles: {long: {beats: 8}}", ["long"], {}, r"silver's window of 4 beats \(dbt var beats_per_phrase\)"),
        ("profiles: {typo: {bmp: 90}}", ["typo"], {}, r"profile 'typo' sets \['bmp'\]"),
        ("profiles: {half: {transpose: 0.5}}", ["half"], {}, r"transpose must be a whole number"),
        ("profiles: {default: {}}", ["default"], {"velocity_scale": -1}, r"velocity_scale -1.0 must be within"),
        ("profiles: {default: {}}", ["default"], {"tempo": 90}, r"unknown profile override\(s\) \['tempo'\]"),
        ("profiles: [default]", ["default"], {}, r"expected a mapping 'profiles:"),
    ],
)
def test_an_unknown_name_or_an_invalid_value_is_a_clear_error(tmp_path, yaml_text, names, overrides, message):
    path = tmp_path / "profiles.yml"
    path.write_text(yaml_text)
    with pytest.raises(profiles.ProfileError, match=message):
        profiles.resolve(names, overrides, path)


def test_augmentations_move_pitches_by_octaves_into_midi_range_and_scale_velocities():
    notes = [(0.0, 1.0, 100, 60), (1.0, 1.0, 10, 120), (2.0, 1.0, 127, 3)]
    assert RenderSpec(transpose=12, velocity_scale=1.5).augment(notes) == [
        (0.0, 1.0, 127, 72),  # 150 capped at 127
        (1.0, 1.0, 15, 120),  # 132 is above MIDI's range: an octave down, the same pitch class
        (2.0, 1.0, 127, 15),
    ]
    assert RenderSpec(transpose=-12, velocity_scale=0.01).augment(notes)[2] == (2.0, 1.0, 1, 3)  # 3-12 folds up


def _yin_f0(flac: bytes, seconds: float) -> float:
    """The median YIN f0 (librosa's, not dx7lake's estimator) over the first held ``seconds``."""
    import librosa

    pcm, rate = sf.read(io.BytesIO(flac), dtype="float32")
    held = pcm[int(0.1 * rate) : int(seconds * rate)]
    return float(np.median(librosa.yin(held, fmin=60, fmax=2000, sr=rate)))


def test_transpose_by_12_doubles_the_f0_heard_and_the_f0_check_expects_the_transposed_pitch(tmp_path):
    lake = LocalLake(tmp_path)
    sine = choose_voices("sine")
    one_note = [("ab" * 16, [(0.0, 3.0, 100, 57)])]  # A3, 220 Hz, held 1.5 s at 120 BPM
    for spec in (RenderSpec(), RenderSpec(transpose=12)):
        render_partition(lake, 0, iter(one_note), sine, spec, workers=1)
    (plain,) = read_manifest(lake, RenderSpec().profile_id, sine[0].patch_id, 0).to_pylist()
    (up,) = read_manifest(lake, RenderSpec(transpose=12).profile_id, sine[0].patch_id, 0).to_pylist()
    assert plain["key"] != up["key"] and plain["notes"] == up["notes"]  # silver's notes, augmented when rendered
    f0, f0_up = _yin_f0(lake.get(plain["key"]), 1.4), _yin_f0(lake.get(up["key"]), 1.4)
    assert f0 == pytest.approx(220.0, rel=0.01) and f0_up / f0 == pytest.approx(2.0, rel=0.01)
    # the manifest's f0 check measures against the pitch played: A4 for the transposed profile
    assert abs(plain["f0_error_cents"]) < 20 and abs(up["f0_error_cents"]) < 20
    assert up["f0_hz"] == pytest.approx(440.0, rel=0.015)


# --- the layout before profiles, and its migration ---


def _legacy_key(row: dict) -> str:
    h = row["content_hash"]
    return f"gold/renders/{row['note_length']}/{row['patch_id']}/{h[:2]}/{h}.flac"


def make_legacy(lake: Lake) -> dict[str, set]:
    """Turn a lake of the profile layout into the one before profiles, as such lakes were
    written: objects at ``gold/renders/<note_length>/<patch>/...``, parts at
    ``gold/manifests/<patch>/p=NNNN/`` without the profile columns (and a release-1s part
    without even the note_length column, as parts before that rule). Returns the rows
    (key, sha256) of each (profile, patch, partition) before, to compare after migrating."""
    before: dict[str, set] = {}
    for key in manifest_parts(lake):
        _, patch_id, render_p = part_partition(key)
        table = lake.read_parquet(key)
        rows = table.to_pylist()
        before.setdefault(key, set()).update((r["key"], r["sha256"]) for r in rows)
        for row in rows:
            lake.put(_legacy_key(row), lake.get(row["key"]))
            lake.delete(row["key"])
        legacy = table.set_column(
            table.schema.get_field_index("key"), "key", pa.array([_legacy_key(r) for r in rows], pa.string())
        ).drop_columns(["profile_id", "profile"])
        if rows and rows[0]["note_length"] == "release-1s":
            legacy = legacy.drop_columns(["note_length"])
        lake.put_parquet(f"{GOLD_MANIFESTS}/{patch_id}/p={render_p:04d}/{key.rsplit('/', 1)[1]}", legacy)
        lake.delete(key)
    assert not manifest_parts(lake) and legacy_parts(lake)
    return before


def _state(lake: Lake) -> dict[str, set]:
    return {k: {(r["key"], r["sha256"]) for r in lake.read_parquet(k).to_pylist()} for k in manifest_parts(lake)}


def _render_two_profiles(lake: Lake) -> None:
    from test_render_partition import contents

    voices = choose_voices("epiano,sine")
    render_partition(lake, 1, iter(contents(6)), voices, RenderSpec(), workers=1)
    render_partition(lake, 2, iter(contents(4, first=20)), voices[:1], RenderSpec(note_length="release-1s"), workers=1)


class DiesOnDelete(LocalLake):
    """A lake whose process is killed at its first delete (after the new part was written)."""

    def delete(self, key: str) -> None:
        raise KeyboardInterrupt("killed")


def test_a_legacy_lake_migrates_to_every_render_under_its_profile_and_a_rerun_moves_nothing(tmp_path):
    lake = LocalLake(tmp_path)
    _render_two_profiles(lake)
    before = make_legacy(lake)
    with pytest.raises(KeyboardInterrupt):  # killed after its first new part: the legacy part stays
        migrate.migrate_lake(DiesOnDelete(tmp_path))
    assert len(legacy_parts(lake)) == len(before) and len(manifest_parts(lake)) == 1
    done = migrate.migrate_lake(lake)
    assert done["legacy_parts"] == len(before) and done["rows"] == 6 * 2 + 4
    assert done["profiles"] == sorted({RenderSpec().profile_id, RenderSpec(note_length="release-1s").profile_id})
    assert _state(lake) == before  # the same parts (names kept), keys and sha256s
    assert not legacy_parts(lake) and not [k for k in lake.list("gold/renders/") if "/until-silent/" in k]
    assert sum(k.endswith(".flac") for k in lake.list()) == 16  # no legacy object left behind
    rows = [r for k in manifest_parts(lake) for r in lake.read_parquet(k).to_pylist()]
    result = Validation()
    check_objects(lake, rows, result)  # every object there, its sha256 and its audio as validation checks them
    assert result.passed and result.checks["audio"].checked == 16, result.failures[:3]
    assert all(json.loads(r["profile"])["note_length"] == r["note_length"] for r in rows)
    assert migrate.migrate_lake(lake) == {
        "legacy_parts": 0,
        "rows": 0,
        "objects_copied": 0,
        "parts_written": 0,
        "profiles": [],
    }
    # rendering the default profile again finds everything: the migrated rows are its renders
    from test_render_partition import contents

    again = render_partition(lake, 1, iter(contents(6)), choose_voices("epiano,sine"), RenderSpec(), workers=1)
    assert (again["rendered"], again["manifests_written"]) == (0, 0)


def test_a_legacy_s3_lake_migrates_with_server_side_copies(s3_lake_uri, monkeypatch):
    """Real S3 protocol (moto in server mode): objects are copied by the server, then deleted."""
    from dx7lake.lake import S3Lake, s3_client

    lake = S3Lake(s3_lake_uri, client=s3_client())
    uploads = []
    lake_put = lake.put
    monkeypatch.setattr(lake, "put", lambda key, data: (uploads.append(key), lake_put(key, data)))
    _render_two_profiles(lake)
    before = make_legacy(lake)
    uploads.clear()
    done = migrate.migrate_lake(lake)
    assert done["objects_copied"] == 16 and not [k for k in uploads if k.endswith(".flac")]  # no bytes re-sent
    assert _state(lake) == before and not legacy_parts(lake)
