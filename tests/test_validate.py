"""Validation of a finished run: a clean run passes; each injected fault fails with its key named.

One real run (6 Bach chorales, extract → load → dbt → Dexed render → gold load) serves the
module; each test injects one fault into the lake or the warehouse and undoes it after.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np
import psycopg
import pyarrow as pa
import pyarrow.compute as pc
import pytest
import soundfile as sf

from conftest import build_gold, build_silver, new_database
from dx7lake import stages
from dx7lake.config import Settings, load_settings
from dx7lake.gold.engine import RenderSpec
from dx7lake.gold.flac import FlacEncoder
from dx7lake.gold.render import manifest_parts, part_key, part_partition
from dx7lake.lake import Lake, open_lake
from dx7lake.quality.audio_qa import expected_samples
from dx7lake.quality.validate import validate_run
from dx7lake.warehouse import schema

PATCHES = "sine"
PID = RenderSpec().profile_id


@pytest.fixture(scope="module")
def run(pg_server, chorales, tmp_path_factory) -> Iterator[Settings]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DX7LAKE_HOME", str(tmp_path_factory.mktemp("home")))
        mp.setenv("DX7LAKE_PG_URL", new_database(pg_server, "v"))
        mp.setenv("DX7LAKE_SOURCE", str(chorales))
        settings = load_settings()
        build_silver(settings, "setup", ("build", "--quiet", "--exclude", "path:models/analytics"))
        build_gold(settings, PATCHES)
        yield settings


def _patch_id() -> str:
    from dx7lake.gold.patches import choose_voices

    return choose_voices(PATCHES)[0].patch_id


def _failures(settings: Settings) -> list[dict]:
    """Every failure of the checks on the whole lake and the warehouse (dbt's are tested apart)."""
    return validate_run(settings, [_patch_id()], dbt_tests=False, full=True).failures


@contextmanager
def _render_fault(
    settings: Settings, make: Callable[[bytes, dict], bytes | None], reseal: bool, run_id: str | None = None
) -> Iterator[str]:
    """Replace one render's object with ``make(original, row)`` (None deletes it). With
    ``reseal`` a new manifest part (loaded by ``run_id``) and gold.renders take the new
    object's sha256, as a renderer that produced the bad audio itself would have written
    them. Undone on exit."""
    lake = open_lake(settings.lake_uri)
    manifest = manifest_parts(lake, PID, _patch_id())[0]
    table = lake.read_parquet(manifest)
    row = table.slice(0, 1).to_pylist()[0]
    original, fault_part = lake.get(row["key"]), None
    try:
        data = make(original, row)
        if data is None:
            lake.delete(row["key"])
        else:
            lake.put(row["key"], data)
            if reseal:
                fault_part = _reseal(lake, manifest, table.slice(0, 1), data)
        stages.load_renders(settings, run_id)
        yield row["key"]
    finally:
        lake.put(row["key"], original)
        if fault_part:
            lake.delete(fault_part)
        stages.load_renders(settings, reload=True)


def _reseal(lake: Lake, manifest: str, table: pa.Table, data: bytes) -> str:
    """A later part of the manifest's partition with the row's new sha256 and size."""
    import hashlib

    table = table.set_column(table.schema.get_field_index("sha256"), "sha256", [[hashlib.sha256(data).hexdigest()]])
    table = table.set_column(table.schema.get_field_index("bytes"), "bytes", pa.array([len(data)], pa.int64()))
    key = part_key(*part_partition(manifest), table.column("content_hash").to_pylist())
    lake.put_parquet(key, table)
    return key


def _pcm(data: bytes) -> np.ndarray:
    return sf.read(io.BytesIO(data), dtype="int16")[0]


def test_a_clean_run_passes_every_check(run):
    result = validate_run(run, [_patch_id()])
    assert result.passed, result.failures[:5]
    checked = {c["check"]: c["checked"] for c in result.as_dict()["checks"]}
    assert all(n > 0 for n in checked.values()), checked
    assert checked["objects"] == checked["audio"] == checked["coverage"]


@pytest.mark.parametrize(
    ("fault", "reseal", "expected", "reason"),
    [
        ("truncated", False, {"objects", "audio"}, "does not decode"),
        ("silent", True, {"audio"}, "silent"),
        ("clipped", True, {"audio"}, "clipped"),
        ("wrong_length", True, {"audio"}, "samples, expected"),
        ("sha_mismatch", False, {"objects"}, "sha256"),
        ("missing", False, {"objects"}, "object missing"),
    ],
)
def test_a_bad_render_fails_validation_naming_its_key(run, fault, reseal, expected, reason):
    def make(original: bytes, row: dict) -> bytes | None:
        rate, n = row["sample_rate"], expected_samples(row["sample_rate"], row["bpm"])
        if fault == "truncated":
            return original[: len(original) // 2]
        if fault == "silent":
            return FlacEncoder(rate).encode(np.zeros(n, dtype=np.int16))
        if fault == "clipped":
            pcm = _pcm(original).astype(np.int32) * 40
            return FlacEncoder(rate).encode(np.clip(pcm, -32768, 32767).astype(np.int16))
        if fault == "wrong_length":
            return FlacEncoder(rate).encode(_pcm(original)[: n - rate // 10])
        if fault == "sha_mismatch":
            pcm = _pcm(original).copy()
            pcm[n // 2] ^= 1  # one LSB: the audio is fine, the bytes are not the manifest's
            return FlacEncoder(rate).encode(pcm)
        return None

    with _render_fault(run, make, reseal) as key:
        failures = _failures(run)
        assert {f["check"] for f in failures if f["key"] == key} == expected
        assert {f["key"] for f in failures} == {key}, "only the injected render fails"
        assert reason in " | ".join(f["reason"] for f in failures)
    assert not _failures(run)


def test_partition_mismatch_missing_render_and_gold_test_are_named(run):
    from dx7lake.cli import main

    with psycopg.connect(run.pg_url) as conn:
        p, message_id, midi_id = conn.execute(
            "select p, message_id, midi_id from raw.detailed_notes order by message_id limit 1"
        ).fetchone()
        (part,) = conn.execute("select part from raw.bronze_parts where %s = any(midi_ids)", (midi_id,)).fetchone()
        key = conn.execute("select key from gold.renders order by key limit 1").fetchone()[0]
        other = conn.execute("select key from gold.renders order by key desc limit 1").fetchone()[0]
        conn.execute("delete from raw.detailed_notes where message_id = %s", (message_id,))
        conn.execute("delete from gold.renders where key = %s", (key,))
        conn.execute("update gold.renders set peak = 'NaN' where key = %s", (other,))
        conn.commit()
    try:
        result = validate_run(run, [_patch_id()], full=True)
        failures = {(f["check"], f["key"]) for f in result.failures}
        assert ("bronze_raw", f"bronze/detailed_notes/p={p}") in failures
        # a run's check counts the rows of the parts the latest load loaded (this one, here)
        latest = validate_run(run, [_patch_id()], dbt_tests=False).checks["bronze_raw"].failures
        assert [f["key"] for f in latest] == [f"bronze/detailed_notes/p={p}/{part}"]
        assert {("coverage", key), ("gold_load", key)} <= failures
        assert any(check == "dbt_gold" and "gold_renders_levels_in_range" in k for check, k in failures)
        # the deep audit runs every dbt test of the project, silver's included, not the gold source's alone
        assert result.checks["dbt_gold"].checked > validate_run(run, [_patch_id()]).checks["dbt_gold"].checked
        assert main(["validate", "--home", str(run.home), "--patches", PATCHES, "--run-id", "cli-check", "--full"]) == 1
        with psycopg.connect(run.pg_url) as conn:
            recorded = conn.execute(
                "select check_name, key from ops.validation_failures where run_id = 'cli-check'"
            ).fetchall()
            assert set(recorded) == failures
        capped = stages.run_validation(run, PATCHES, "capped", max_failures=1, full=True)
        assert (len(capped["failures"]), capped["failed"], capped["passed"]) == (1, len(failures), False)
        with psycopg.connect(run.pg_url) as conn:
            assert conn.execute("select count(*) from ops.validation_failures where run_id = 'capped'").fetchone() == (
                len(failures),
            )
    finally:
        stages.load_partition(run, p, "restore", reload=True)  # the ledger holds the part: reload it
        stages.load_renders(run, reload=True)
    assert not _failures(run)


def test_a_check_names_its_first_failures_and_counts_them_all(run, monkeypatch):
    """Memory and ops.validation_failures stay bounded when most of a lake is broken: each
    check names its first KEPT_PER_CHECK failing keys, and counts every one."""
    from dx7lake.quality import validate

    monkeypatch.setattr(validate, "KEPT_PER_CHECK", 3)
    lake = open_lake(run.lake_uri)
    keys = lake.read_parquet(manifest_parts(lake, PID, _patch_id())[0]).column("key").to_pylist()[:8]
    originals = {key: lake.get(key) for key in keys}
    for key in keys:
        lake.delete(key)
    try:
        result = stages.run_validation(run, PATCHES, "kept", full=True)
        with psycopg.connect(run.pg_url) as conn:
            named = conn.execute(
                "select key from ops.validation_failures where run_id = 'kept' and check_name = 'objects'"
            ).fetchall()
            (counted,) = conn.execute(
                "select failed from ops.validation_results where run_id = 'kept' and check_name = 'objects'"
            ).fetchone()
    finally:
        for key, data in originals.items():
            lake.put(key, data)
    objects = next(c for c in result["checks"] if c["check"] == "objects")
    assert (objects["failed"], counted, result["passed"]) == (8, 8, False)
    assert result["failed"] == sum(c["failed"] for c in result["checks"])
    assert len(named) == 3 and {key for (key,) in named} <= set(keys)
    assert sorted(f["key"] for f in result["failures"] if f["check"] == "objects") == sorted(key for (key,) in named)
    assert not _failures(run)


def test_a_run_checks_its_own_renders_in_full_and_audits_a_seeded_sample_of_older_ones(run):
    """The cost of validation follows what the run added: an old render's damage is found
    by the audit when drawn and always by --full; a new part's damage always."""
    pid = _patch_id()
    total = validate_run(run, [pid], dbt_tests=False, full=True).checks["objects"].checked

    def truncate(original: bytes, row: dict) -> bytes:
        return original[: len(original) // 2]

    def silent(original: bytes, row: dict) -> bytes:
        n = expected_samples(row["sample_rate"], row["bpm"])
        return FlacEncoder(row["sample_rate"]).encode(np.zeros(n, np.int16))

    with _render_fault(run, truncate, reseal=False) as key:
        quiet = validate_run(run, [pid], dbt_tests=False, run_id="nothing-new", audit=0)
        assert quiet.passed and quiet.checks["objects"].checked == 0 and quiet.new_renders == 0
        audited = validate_run(run, [pid], dbt_tests=False, run_id="nothing-new", audit=total)
        assert audited.audited == total and {f["key"] for f in audited.failures} == {key}
        some = [validate_run(run, [pid], dbt_tests=False, run_id="seed", audit=3) for _ in range(2)]
        assert some[0].audited == 3 and some[0].failures == some[1].failures  # the seed fixes the sample
        assert {f["key"] for f in _failures(run)} == {key}

    with _render_fault(run, silent, reseal=True, run_id="adds-one") as key:
        new = validate_run(run, [pid], dbt_tests=False, run_id="adds-one", audit=0)
        assert (new.new_renders, new.audited, new.checks["audio"].checked) == (1, 0, 1)
        assert {(f["check"], f["key"]) for f in new.failures} == {("audio", key)}
    assert not _failures(run)


def test_the_audit_reads_a_share_of_a_large_table_and_draws_the_seeds_rows(pg_url):
    """Once the planner knows gold.renders is large, the audit samples its pages (the plan
    says so) yet returns its size, the same rows for one seed, none it must exclude."""
    from dx7lake.quality.validate import _audit_sample, forget_checked, remember_checked

    with psycopg.connect(pg_url, autocommit=True) as conn:
        schema.ensure_schema(conn)
        conn.execute(
            """insert into gold.renders (profile_id, content_hash, patch_id, key, sha256, bytes, sample_rate,
                   duration_s, peak, rms, bpm, notes, render_p)
               select 'pf', md5(i::text), 'v', 'k' || i, md5(i::text), 1, 22050, 2.5, 0.5, 0.1, 120, '[]', 0
               from generate_series(1, 20000) as i"""
        )
        conn.execute("analyze gold.renders")
        plan = conn.execute("explain select * from gold.renders tablesample system (1)").fetchall()
        assert "Sample Scan" in plan[0][0]
        exclude = {"k1", "k2"}
        forget_checked(conn)
        remember_checked(conn, sorted(exclude))  # renders the run checks already
        drawn = [_audit_sample(conn, ["pf"], ["v"], 50, seed="run-a") for _ in range(2)]
        keys = [r["key"] for r in drawn[0]]
        assert len(set(keys)) == 50 and not set(keys) & exclude and drawn[0] == drawn[1]
        assert [r["key"] for r in _audit_sample(conn, ["pf"], ["v"], 50, seed="run-b")] != keys
        assert _audit_sample(conn, ["other"], ["v"], 50, seed="run-a") == []  # another profile's renders
        # a full sort by the same hash would give the table's first 50: the audit read a share of it
        first = conn.execute(
            "select key from gold.renders where not key = any(%s) order by md5(key || 'run-a') limit 50",
            (sorted(exclude),),
        ).fetchall()
        assert keys != [k for (k,) in first]


def test_recorded_run_feeds_every_dashboard_card(run):
    """The analytics marts build (with their tests) on a finished run, and every card of the
    dashboard spec is valid SQL over the warehouse that returns rows."""
    from dx7lake.metabase.spec import load_spec

    stages.start_run(run, "cards", {"patches": PATCHES})
    first = stages.plan_render(run)["partitions"][0]
    stages.record_render(run, "cards", stages.render_partition(run, first, PATCHES))
    stages.record(run, "cards", "validate", stages.run_validation(run, PATCHES, "cards"))
    stages.finish_run(run, "cards", True)
    with psycopg.connect(run.pg_url) as conn:
        conn.execute("insert into ops.load_stats (run_id, p, rows, bytes, seconds) values ('cards', 'a', 10, 100, 0.1)")
        conn.commit()
    stages.build_analytics(run)
    with psycopg.connect(run.pg_url) as conn:
        empty = [card.name for card in load_spec().cards if not conn.execute(card.sql).fetchall()]
        rejected = conn.execute("select count(*) from silver.rejected_phrases").fetchone()[0]
    # empty: the failures card (the recorded validation passed) and the rejected card, as the
    # chorales break no render rule (test_e2e_realworld checks that card's rows on messy files)
    assert rejected == 0
    assert empty == ["Failing keys of the latest run", "Rejected phrases by reason"]


def test_load_renders_loads_only_new_parts_and_compaction_keeps_every_row(run):
    """The ledger: a second load reads no part; two parts of a partition, compacted, leave
    gold.renders row for row as it was, the ledger equal to the lake, and nothing to plan."""

    def renders() -> list[tuple]:
        with psycopg.connect(run.pg_url) as conn:
            return conn.execute(
                "select content_hash, patch_id, key, sha256, render_p from gold.renders order by 1, 2"
            ).fetchall()

    lake = open_lake(run.lake_uri)
    before = renders()
    assert stages.load_renders(run, "again")["parts_loaded"] == 0
    whole = manifest_parts(lake, PID, _patch_id())[0]
    table = lake.read_parquet(whole)
    half = table.num_rows // 2
    for piece in (table.slice(0, half), table.slice(half)):  # as two runs would have written it
        lake.put_parquet(part_key(*part_partition(whole), piece.column("content_hash").to_pylist()), piece)
    lake.delete(whole)
    loaded = stages.load_renders(run, "split")
    assert (loaded["parts_loaded"], loaded["parts_forgotten"], loaded["rows_loaded"]) == (2, 1, table.num_rows)
    assert len(manifest_parts(lake, *part_partition(whole))) == 2

    compacted = stages.compact(run, PATCHES)
    assert (compacted["partitions_compacted"], compacted["parts_merged"]) == (1, 2)
    (merged,) = manifest_parts(lake, *part_partition(whole))
    assert lake.read_parquet(merged).sort_by("content_hash").equals(table.sort_by("content_hash"))
    assert renders() == before
    with psycopg.connect(run.pg_url) as conn:
        ledger = {k for (k,) in conn.execute("select key from gold.manifest_parts")}
    assert ledger == set(manifest_parts(lake))
    assert stages.plan_render(run, PATCHES)["partitions"] == []


def test_stereo_wrong_rate_nan_levels_and_a_stale_sha_each_print_their_fail_line(run, capsys):
    """Four faults at once on four renders, each as the README's `FAIL <key>: <reason>` line
    of `dx7lake validate --full`. The bad FLACs are written by libsndfile (not dx7lake's
    encoder), and a later manifest part takes their sha256, as a renderer that made them
    would have written it."""
    from dx7lake.cli import main

    lake = open_lake(run.lake_uri)
    manifests = manifest_parts(lake, PID, _patch_id())
    rows = [(m, r) for m in manifests for r in lake.read_parquet(m).select(["key", "sample_rate"]).to_pylist()]
    (stereo_m, stereo), (rate_m, rate), (nan_m, nan), (_, stale) = rows[0], rows[1], rows[2], rows[3]
    saved = {r["key"]: lake.get(r["key"]) for r in (stereo, rate)}
    faults: list[str] = []

    def flac(pcm: np.ndarray, sample_rate: int) -> bytes:
        out = io.BytesIO()
        sf.write(out, pcm, sample_rate, format="FLAC", subtype="PCM_16")
        return out.getvalue()

    def row_of(manifest: str, key: str) -> pa.Table:
        table = lake.read_parquet(manifest)
        return table.filter(pc.equal(table.column("key"), key))

    try:
        mono = _pcm(saved[stereo["key"]])
        for manifest, key, data in (
            (stereo_m, stereo["key"], flac(np.column_stack([mono, mono]), stereo["sample_rate"])),
            (rate_m, rate["key"], flac(_pcm(saved[rate["key"]]), 44100)),
        ):
            lake.put(key, data)
            faults.append(_reseal(lake, manifest, row_of(manifest, key), data))
        table = row_of(nan_m, nan["key"])
        i = table.schema.get_field_index("peak")
        faults.append(part_key(*part_partition(nan_m), [nan["key"]]))
        lake.put_parquet(faults[-1], table.set_column(i, "peak", pa.array([float("nan")], pa.float64())))
        stages.load_renders(run, "faults")
        with psycopg.connect(run.pg_url) as conn:
            conn.execute("update gold.renders set sha256 = repeat('0', 64) where key = %s", (stale["key"],))
        capsys.readouterr()
        assert main(["validate", "--home", str(run.home), "--patches", PATCHES, "--full"]) == 1
        lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("FAIL ")]
    finally:
        for key, data in saved.items():
            lake.put(key, data)
        for key in faults:
            lake.delete(key)
        stages.load_renders(run, reload=True)
    expected = {
        f"FAIL {stereo['key']}: 2 channels, expected mono [audio]",
        f"FAIL {rate['key']}: sample rate 44100, manifest says {rate['sample_rate']} [audio]",
        f"FAIL {nan['key']}: manifest peak, rms or duration is NaN or infinite [audio]",
        f"FAIL {stale['key']}: manifest row missing from gold.renders or loaded with another sha256 [gold_load]",
    }
    assert expected <= set(lines), lines
    # nothing else fails but dbt's range test on the NaN peak now in gold.renders
    others = set(lines) - expected
    assert others and all(line.endswith("[dbt_gold]") and "levels_in_range" in line for line in others), others
    assert not _failures(run)


def test_the_runs_dbt_tests_fail_on_a_render_it_loaded_and_leave_an_old_one_to_the_full_audit(run):
    """Validation's dbt tests of the gold source read the renders the latest loading run
    loaded (gold.renders.loaded_at): a NaN peak in a part this run loads fails them; the same
    damage on a render no later load touched fails only --full."""
    lake = open_lake(run.lake_uri)
    manifest = manifest_parts(lake, PID, _patch_id())[0]
    table = lake.read_parquet(manifest)
    bad, clean = table.slice(0, 1), table.slice(1, 1)
    key = bad.column("key")[0].as_py()

    def dbt_failures(result) -> set[str]:
        return {f["key"] for f in result.failures if f["check"] == "dbt_gold"}

    parts = [part_key(*part_partition(manifest), [key])]
    try:
        nan = bad.set_column(bad.schema.get_field_index("peak"), "peak", pa.array([float("nan")], pa.float64()))
        lake.put_parquet(parts[0], nan)
        stages.load_renders(run, "loads-a-nan")
        new = validate_run(run, [_patch_id()], run_id="loads-a-nan", audit=0)
        assert any("gold_renders_levels_in_range" in k for k in dbt_failures(new)), new.failures

        lake.delete(parts.pop())
        stages.load_renders(run, "restores", reload=True)
        with psycopg.connect(run.pg_url) as conn:
            conn.execute("update gold.renders set peak = 'NaN' where key = %s", (key,))
        parts.append(part_key(*part_partition(manifest), [clean.column("key")[0].as_py()]))
        lake.put_parquet(parts[0], clean)  # a later run loads another render, unchanged
        stages.load_renders(run, "later")
        assert dbt_failures(validate_run(run, [_patch_id()], run_id="later", audit=0)) == set()
        full = validate_run(run, [_patch_id()], full=True)
        assert any("gold_renders_levels_in_range" in k for k in dbt_failures(full)), full.failures
    finally:
        for part in parts:
            lake.delete(part)
        stages.load_renders(run, reload=True)
    assert not _failures(run)


def test_a_render_the_warehouse_lacks_is_planned_and_named_by_coverage(run):
    """gold.renders without one render of the run's profile: planning renders its partition
    again (in that profile) and coverage names its key."""
    with psycopg.connect(run.pg_url) as conn:
        content_hash, key, render_p = conn.execute(
            "select content_hash, key, render_p from gold.renders order by key limit 1"
        ).fetchone()
        conn.execute("delete from gold.renders where key = %s", (key,))
    try:
        assert stages.plan_render(run, PATCHES)["partitions"] == [[PID, render_p]]
        coverage = validate_run(run, [_patch_id()], dbt_tests=False, audit=0).checks["coverage"]
        assert [f["key"] for f in coverage.failures] == [
            f"gold/renders/{PID}/{_patch_id()}/{content_hash[:2]}/{content_hash}.flac"
        ]
        assert key == coverage.failures[0]["key"]
    finally:
        stages.load_renders(run, reload=True)
    assert stages.plan_render(run, PATCHES)["partitions"] == []


def _renders(run: Settings) -> dict[str, set]:
    with psycopg.connect(run.pg_url) as conn:
        rows = conn.execute("select profile_id, content_hash, patch_id, key, sha256, duration_s from gold.renders")
        out: dict[str, set] = {}
        for profile_id, *rest in rows.fetchall():
            out.setdefault(profile_id, set()).add(tuple(rest))
    return out


def test_two_profiles_render_into_one_lake_with_disjoint_keys_and_both_validate(run):
    """slow90 (the shipped profile at 90 BPM) beside the default: new keys, its own durations
    (4 beats at 90 BPM plus the 0.5 s tail = 3.1667 s, by hand), the default's renders
    untouched; both profiles validate in full (dbt's tests on gold included), and a rerun
    of either plans nothing."""
    slow = RenderSpec(bpm=90.0).profile_id
    before = _renders(run)
    plan = stages.plan_render(run, PATCHES, ["slow90"])
    assert plan["profiles"] == [slow] and plan["partitions"] and {p[0] for p in plan["partitions"]} == {slow}
    for work in plan["partitions"]:
        stages.render_partition(run, work, PATCHES)
    stages.load_renders(run, "slow90")
    after = _renders(run)
    assert after[PID] == before[PID] and len(after[slow]) == len(before[PID])
    assert not {r[2] for r in after[PID]} & {r[2] for r in after[slow]}
    assert {round(r[4], 4) for r in after[slow]} == {round(4 * 60 / 90 + 0.5, 4)}
    assert {round(r[4], 4) for r in after[PID]} == {2.5}
    result = stages.run_validation(run, PATCHES, "two-profiles", full=True, profiles=["default", "slow90"])
    assert result["passed"] and result["new_renders"] == 2 * len(before[PID]), result["failures"][:3]
    assert stages.plan_render(run, PATCHES, ["default", "slow90"])["partitions"] == []
    with psycopg.connect(run.pg_url) as conn:
        names = dict(conn.execute("select profile_id, name from gold.profiles").fetchall())
    assert names[PID] == "default" and names[slow] == "slow90"


def test_the_browser_shows_each_profile_under_its_url_and_old_urls_show_the_default(run):
    """With the previous test's second profile: its pages play its own audio (90 BPM long, by
    libsndfile), the picker names both profiles, and ``/phrases/<n>`` is the default's page."""
    import re

    from fastapi.testclient import TestClient

    from dx7lake.browser.app import create_app

    slow = RenderSpec(bpm=90.0).profile_id
    with TestClient(create_app(run)) as client:
        for profile, seconds in ((PID, 2.5), (slow, 4 * 60 / 90 + 0.5)):
            page = client.get(f"/profiles/{profile}/phrases/1").text
            src = re.search(r'<audio id="player"[^>]* src="([^"]+)"', page).group(1).replace("&amp;", "&")
            assert src.startswith(f"/profiles/{profile}/phrases/1/audio.flac?patch=")
            audio, rate = sf.read(io.BytesIO(client.get(src).content))
            assert len(audio) == round(seconds * rate)
            assert ">default</a>" in page and ">slow90</a>" in page  # the picker
        assert client.get("/phrases/1").text == client.get(f"/profiles/{PID}/phrases/1").text
        assert client.get("/profiles/nothex/phrases/1").status_code == 400


def test_a_legacy_lake_and_warehouse_migrate_keeping_every_render_and_validate(run, capsys):
    """The module's lake turned into the layout before profiles (test_profiles.make_legacy; a
    legacy lake held one tempo, so the previous test's slow90 renders are removed first), its
    warehouse into the schema before them (one row per content and patch, no profile):
    validation names the legacy parts; `dx7lake migrate-profiles` brings back every render
    under its profile, the warehouse's schema migrates, and validation passes in full."""
    from test_profiles import make_legacy

    from dx7lake.cli import main

    lake = open_lake(run.lake_uri)
    slow = RenderSpec(bpm=90.0).profile_id
    assert set(_renders(run)) == {PID, slow}  # the previous test's second profile is in the lake too
    for part in manifest_parts(lake, slow):
        for key in lake.read_parquet(part, ["key"]).column("key").to_pylist():
            lake.delete(key)
        lake.delete(part)
    with psycopg.connect(run.pg_url) as conn:
        conn.execute("delete from gold.renders where profile_id = %s", (slow,))
    before = _renders(run)
    make_legacy(lake)
    with psycopg.connect(run.pg_url) as conn:  # the warehouse as it was before profiles
        conn.execute("alter table gold.renders drop column profile_id cascade")  # and the analytics view on it
        conn.execute("alter table gold.renders add primary key (content_hash, patch_id)")
        conn.execute(
            "update gold.renders set key = 'gold/renders/' || note_length || '/' || patch_id || '/'"
            " || left(content_hash, 2) || '/' || content_hash || '.flac'"
        )
        conn.execute("delete from gold.manifest_parts")
        conn.execute("alter table gold.manifest_parts drop column profile_id")
        conn.execute("drop table gold.profiles")
    failures = validate_run(run, [_patch_id()], dbt_tests=False, full=True).failures
    assert failures and all("migrate-profiles" in f["reason"] for f in failures if f["check"] == "gold_load")
    capsys.readouterr()
    assert main(["migrate-profiles", "--home", str(run.home)]) == 0
    moved = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (moved["legacy_rows_dropped"], moved["renders"]) == (len(before[PID]), len(before[PID]))
    assert moved["profiles"] == [PID] and _renders(run) == before  # every render, key, sha256 and duration
    result = stages.run_validation(run, PATCHES, "migrated", full=True)
    assert result["passed"], result["failures"][:3]
    assert stages.plan_render(run, PATCHES)["partitions"] == []
    assert main(["migrate-profiles", "--home", str(run.home)]) == 0
    again = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (again["legacy_parts"], again["legacy_rows_dropped"], again["renders"]) == (0, 0, moved["renders"])


def test_audio_checks_in_worker_processes_name_each_bad_render(tmp_path, monkeypatch):
    """Past POOL_MIN_RENDERS, objects are read by threads and their audio checked in batches
    by worker processes: each failure still lands on its own key, in whichever batch."""
    import hashlib

    from dx7lake.lake import LocalLake
    from dx7lake.quality import audio_qa
    from dx7lake.quality import validate as validation

    rate, bpm = 22050, 120.0
    n = expected_samples(rate, bpm)
    tone = (8000 * np.sin(np.arange(n) * 2 * np.pi * 440 / rate)).astype(np.int16)
    good, silent = FlacEncoder(rate).encode(tone), FlacEncoder(rate).encode(np.zeros(n, dtype=np.int16))
    lake, rows = LocalLake(tmp_path), []
    for i in range(60):
        key = f"gold/renders/t/{i:03d}.flac"
        data = {7: good[: len(good) // 2], 30: silent}.get(i, good)
        if i != 45:  # 45: the object is missing
            lake.put(key, data)
        sha = hashlib.sha256(data).hexdigest()  # 7 and 30: the manifest's sha256 is of the bad bytes
        rows.append(
            {
                "key": key,
                "profile_id": "t",
                "sha256": sha if i != 52 else sha[::-1],  # 52: another sha256
                "sample_rate": rate,
                "bpm": bpm,
                "duration_s": n / rate,
                "peak": 0.25,
                "rms": 0.17,
            }
        )
    monkeypatch.setattr(validation, "POOL_MIN_RENDERS", 16)
    monkeypatch.setattr(validation, "AUDIO_BATCH", 4)

    def not_here(*_):
        raise AssertionError("audio checked in the validating process, not in its pool")

    # workers import audio_qa afresh: only the parent's check_render is broken
    monkeypatch.setattr(audio_qa, "check_render", not_here)
    result = validation.Validation()
    validation.check_objects(lake, rows, result, readers=3, processes=2)
    failed = {(f["check"], f["key"].split("/")[-1], f["reason"].split(":")[0].split(" (")[0]) for f in result.failures}
    assert failed == {
        ("audio", "007.flac", "does not decode"),
        ("audio", "030.flac", "silent"),
        ("objects", "045.flac", "object missing from the lake"),
        ("objects", "052.flac", "sha256 " + hashlib.sha256(good).hexdigest()[:12] + "… does not match the manifest's"),
    }
    assert (result.checks["objects"].checked, result.checks["audio"].checked) == (60, 59)


def test_manifest_rows_reach_the_object_checks_a_slice_at_a_time(run, monkeypatch):
    """A first run's or a --full validation checks all of gold: its rows stream, a slice
    checked against the warehouse and remembered at a time, so memory holds a slice (and a
    partition's manifest), not every render; together the slices are every render of gold."""
    from dx7lake.lake import lake_of
    from dx7lake.quality import validate as validation

    monkeypatch.setattr(validation, "ROWS_PER_SLICE", 4)
    result = validation.Validation()
    with psycopg.connect(run.pg_url) as conn:
        validation.forget_checked(conn)
        check = result.checks["gold_load"]
        partitions = validation._chosen_parts(conn, lake_of(run), [PID], [_patch_id()], None, True, check)
        rows = validation._manifest_rows(conn, lake_of(run), partitions, result)
        first = next(rows)
        assert conn.execute("select count(*) from validation_checked").fetchone()[0] == 4
        keys = [first["key"], *(r["key"] for r in rows)]
        in_gold = {k for (k,) in conn.execute("select key from gold.renders where patch_id = %s", (_patch_id(),))}
        assert len(keys) == len(set(keys)) == len(in_gold) > 4 and set(keys) == in_gold
        assert conn.execute("select count(*) from validation_checked").fetchone()[0] == len(in_gold)
    assert result.new_renders == len(in_gold) and not result.failures
