"""Validation of a finished run: a clean run passes; each injected fault fails with its key named.

One real run (6 Bach chorales, extract → load → dbt → Dexed render → gold load) serves the
module; each test injects one fault into the lake or the warehouse and undoes it after.
"""

from __future__ import annotations

import io
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
from dx7lake.gold.flac import FlacEncoder
from dx7lake.gold.render import GOLD_MANIFESTS
from dx7lake.lake import Lake, open_lake
from dx7lake.quality.audio_qa import expected_samples
from dx7lake.quality.validate import validate_run

PATCHES = "sine"


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
    """Every failure of the checks on the lake and the warehouse (dbt's are tested apart)."""
    return validate_run(settings, [_patch_id()], dbt_tests=False).failures


@contextmanager
def _render_fault(settings: Settings, make: Callable[[bytes, dict], bytes | None], reseal: bool) -> Iterator[str]:
    """Replace one render's object with ``make(original, row)`` (None deletes it). With
    ``reseal`` the manifest and gold.renders take the new object's sha256, as a renderer
    that produced the bad audio itself would have written them. Undone on exit."""
    lake = open_lake(settings.lake_uri)
    manifest = next(k for k in lake.list(f"{GOLD_MANIFESTS}/{_patch_id()}/") if k.endswith(".parquet"))
    table = lake.read_parquet(manifest)
    row = table.slice(0, 1).to_pylist()[0]
    original, original_manifest = lake.get(row["key"]), lake.get(manifest)
    try:
        data = make(original, row)
        if data is None:
            lake.delete(row["key"])
        else:
            lake.put(row["key"], data)
            if reseal:
                _reseal(lake, manifest, table, row["key"], data)
        stages.load_renders(settings)
        yield row["key"]
    finally:
        lake.put(row["key"], original)
        lake.put(manifest, original_manifest)
        stages.load_renders(settings)


def _reseal(lake: Lake, manifest: str, table: pa.Table, key: str, data: bytes) -> None:
    import hashlib

    is_row = pc.equal(table.column("key"), key)
    for column, value in (("sha256", hashlib.sha256(data).hexdigest()), ("bytes", len(data))):
        i = table.schema.get_field_index(column)
        table = table.set_column(
            i, column, pc.if_else(is_row, pa.scalar(value, table.column(column).type), table[column])
        )
    lake.put_parquet(manifest, table)


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
        p, message_id = conn.execute(
            "select p, message_id from raw.detailed_notes order by message_id limit 1"
        ).fetchone()
        key = conn.execute("select key from gold.renders order by key limit 1").fetchone()[0]
        other = conn.execute("select key from gold.renders order by key desc limit 1").fetchone()[0]
        conn.execute("delete from raw.detailed_notes where message_id = %s", (message_id,))
        conn.execute("delete from gold.renders where key = %s", (key,))
        conn.execute("update gold.renders set peak = 'NaN' where key = %s", (other,))
        conn.commit()
    try:
        result = validate_run(run, [_patch_id()])
        failures = {(f["check"], f["key"]) for f in result.failures}
        assert ("bronze_raw", f"bronze/detailed_notes/p={p}") in failures
        assert {("coverage", key), ("gold_load", key)} <= failures
        assert any(check == "dbt_gold" and "gold_renders_levels_in_range" in k for check, k in failures)
        assert main(["validate", "--home", str(run.home), "--patches", PATCHES, "--run-id", "cli-check"]) == 1
        with psycopg.connect(run.pg_url) as conn:
            recorded = conn.execute(
                "select check_name, key from ops.validation_failures where run_id = 'cli-check'"
            ).fetchall()
            assert set(recorded) == failures
        capped = stages.run_validation(run, PATCHES, "capped", max_failures=1)
        assert (len(capped["failures"]), capped["failed"], capped["passed"]) == (1, len(failures), False)
        with psycopg.connect(run.pg_url) as conn:
            assert conn.execute("select count(*) from ops.validation_failures where run_id = 'capped'").fetchone() == (
                len(failures),
            )
    finally:
        stages.load_partition(run, p, "restore")
        stages.load_renders(run)
    assert not _failures(run)


def test_recorded_run_feeds_every_dashboard_card(run):
    """The analytics marts build (with their tests) on a finished run, and every card of the
    dashboard spec is valid SQL over the warehouse that returns rows."""
    from dx7lake.metabase.spec import load_spec

    stages.start_run(run, "cards", {"patches": PATCHES})
    first = stages.plan_render(run)["partitions"][0]
    stages.record_render(run, "cards", stages.render_partition(run, first, PATCHES), 120.0, 22050)
    stages.record(run, "cards", "validate", stages.run_validation(run, PATCHES, "cards"))
    stages.finish_run(run, "cards", True)
    with psycopg.connect(run.pg_url) as conn:
        conn.execute("insert into ops.load_stats (run_id, p, rows, bytes, seconds) values ('cards', 'a', 10, 100, 0.1)")
        conn.commit()
    stages.build_analytics(run)
    with psycopg.connect(run.pg_url) as conn:
        empty = [card.name for card in load_spec().cards if not conn.execute(card.sql).fetchall()]
    # only the failures card is empty: the recorded validation passed
    assert empty == ["Failing keys of the latest run"]


def test_stereo_wrong_rate_nan_levels_and_a_stale_sha_each_print_their_fail_line(run, capsys):
    """Four faults at once on four renders, each as the README's `FAIL <key>: <reason>` line
    of `dx7lake validate`. The bad FLACs are written by libsndfile (not dx7lake's encoder),
    and the manifest takes their sha256, as a renderer that made them would have."""
    from dx7lake.cli import main

    lake = open_lake(run.lake_uri)
    manifests = [k for k in lake.list(f"{GOLD_MANIFESTS}/{_patch_id()}/") if k.endswith(".parquet")]
    saved = {k: lake.get(k) for k in manifests}
    rows = [(m, r) for m in manifests for r in lake.read_parquet(m).select(["key", "sample_rate"]).to_pylist()]
    (stereo_m, stereo), (rate_m, rate), (nan_m, nan), (_, stale) = rows[0], rows[1], rows[2], rows[3]
    saved |= {r["key"]: lake.get(r["key"]) for r in (stereo, rate)}

    def flac(pcm: np.ndarray, sample_rate: int) -> bytes:
        out = io.BytesIO()
        sf.write(out, pcm, sample_rate, format="FLAC", subtype="PCM_16")
        return out.getvalue()

    try:
        mono = _pcm(saved[stereo["key"]])
        for manifest, key, data in (
            (stereo_m, stereo["key"], flac(np.column_stack([mono, mono]), stereo["sample_rate"])),
            (rate_m, rate["key"], flac(_pcm(saved[rate["key"]]), 44100)),
        ):
            lake.put(key, data)
            _reseal(lake, manifest, lake.read_parquet(manifest), key, data)
        table = lake.read_parquet(nan_m)
        i = table.schema.get_field_index("peak")
        is_row = pc.equal(table.column("key"), nan["key"])
        lake.put_parquet(nan_m, table.set_column(i, "peak", pc.if_else(is_row, float("nan"), table["peak"])))
        stages.load_renders(run)
        with psycopg.connect(run.pg_url) as conn:
            conn.execute("update gold.renders set sha256 = repeat('0', 64) where key = %s", (stale["key"],))
        capsys.readouterr()
        assert main(["validate", "--home", str(run.home), "--patches", PATCHES]) == 1
        lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("FAIL ")]
    finally:
        for key, data in saved.items():
            lake.put(key, data)
        stages.load_renders(run)
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
