"""Rendering a partition into the lake: manifests last, reruns write nothing, pools agree."""

from __future__ import annotations

import hashlib
import io
import os

import pytest
import soundfile as sf
from engine_reference import assert_sounds_like_its_row

from dx7lake.gold.patches import choose_voices
from dx7lake.gold.render import (
    MANIFEST_SCHEMA,
    GoldConflict,
    RenderSpec,
    content_fingerprint,
    manifest_key,
    pending_partitions,
    render_partition,
    render_row,
)
from dx7lake.lake import LocalLake

SPEC = RenderSpec()
CONTRACT = {"content_hash", "patch_id", "key", "sha256", "bytes", "sample_rate", "duration_s", "peak", "rms", "bpm"}


def contents(n: int, first: int = 0) -> list[tuple[str, list]]:
    """n distinct small phrases with a stable hash each."""
    out = []
    for i in range(first, first + n):
        notes = [(float(b), 1.0, 60 + 10 * (i % 5), 55 + (i * 7 + 3 * b) % 24) for b in range(4)]
        out.append((f"{i:032x}", notes))
    return out


def stamps(lake: LocalLake) -> dict[str, int]:
    return {k: (lake.root / k).stat().st_mtime_ns for k in lake.list()}


def test_partition_writes_objects_and_contract_manifests_and_rerun_writes_nothing(tmp_path):
    lake = LocalLake(tmp_path)
    voices = choose_voices("epiano,sine")
    first = render_partition(lake, 3, iter(contents(20)), voices, SPEC, workers=1)
    assert (first["rendered"], first["manifests_written"], first["contents"]) == (40, 2, 20)
    before = stamps(lake)
    assert sum(k.endswith(".flac") for k in before) == 40

    manifest = lake.read_parquet(manifest_key(voices[0].patch_id, 3))
    assert manifest.schema.equals(MANIFEST_SCHEMA) and set(manifest.column_names) >= CONTRACT | {"notes", "patch_vced"}
    row = manifest.slice(5, 1).to_pylist()[0]
    flac = lake.get(row["key"])
    assert hashlib.sha256(flac).hexdigest() == row["sha256"] and len(flac) == row["bytes"]
    assert_sounds_like_its_row(flac, row)  # against dexed-py itself, not dx7lake's renderer
    audio, sr = sf.read(io.BytesIO(flac), dtype="int16")
    assert sr == 22050 and len(audio) == SPEC.total_samples

    again = render_partition(lake, 3, iter(contents(20)), voices, SPEC, workers=1)
    assert (again["rendered"], again["manifests_written"], again["reused"]) == (0, 0, 40)
    assert stamps(lake) == before


def test_two_workers_write_exactly_what_one_worker_writes(tmp_path):
    one, two = LocalLake(tmp_path / "one"), LocalLake(tmp_path / "two")
    voices = choose_voices("bell,organ")
    render_partition(one, 0, iter(contents(48)), voices, SPEC, workers=1, batch_size=8)
    stats = render_partition(two, 0, iter(contents(48)), voices, SPEC, workers=2, batch_size=8, pool_min_renders=0)
    assert stats["workers"] == min(2, len(os.sched_getaffinity(0))) and stats["rendered"] == 96
    assert list(one.list()) == list(two.list())
    assert all(one.get(k) == two.get(k) for k in one.list())


def test_a_task_killed_halfway_leaves_no_manifest_and_the_retry_reuses_its_objects(tmp_path):
    lake = LocalLake(tmp_path)
    voices = choose_voices("epiano")

    def dies_after(n: int):
        yield from contents(n)
        raise KeyboardInterrupt("killed")

    with pytest.raises(KeyboardInterrupt):
        render_partition(lake, 1, dies_after(40), voices, SPEC, workers=1, batch_size=8)
    assert not list(lake.list("gold/manifests/"))
    written = sum(k.endswith(".flac") for k in lake.list())
    assert written >= 32

    retry = render_partition(lake, 1, iter(contents(60)), voices, SPEC, workers=1, batch_size=8)
    assert (retry["reused"], retry["rendered"]) == (written, 60 - written)
    assert lake.read_parquet(manifest_key(voices[0].patch_id, 1)).num_rows == 60


def test_new_contents_in_a_partition_render_only_the_new_ones(tmp_path):
    lake = LocalLake(tmp_path)
    voices = choose_voices("sine")
    render_partition(lake, 2, iter(contents(10)), voices, SPEC, workers=1)
    more = render_partition(lake, 2, iter(contents(15)), voices, SPEC, workers=1)
    assert (more["rendered"], more["reused"], more["manifests_written"]) == (5, 10, 1)
    table = lake.read_parquet(manifest_key(voices[0].patch_id, 2))
    assert sorted(table.column("content_hash").to_pylist()) == [h for h, _ in contents(15)]


def test_a_gold_object_from_other_settings_is_a_conflict_not_an_overwrite(tmp_path):
    lake = LocalLake(tmp_path)
    voices = choose_voices("sine")
    render_partition(lake, 0, iter(contents(4)), voices, SPEC, workers=1)
    with pytest.raises(GoldConflict, match="rendered with"):
        render_partition(lake, 0, iter(contents(4)), voices, RenderSpec(bpm=90.0), workers=1)
    lake.delete(manifest_key(voices[0].patch_id, 0))
    with pytest.raises(GoldConflict, match="holds a different render"):
        render_partition(lake, 0, iter(contents(4)), voices, RenderSpec(bpm=90.0), workers=1)


def test_pending_partitions_are_those_whose_manifests_do_not_match_silver(tmp_path):
    lake = LocalLake(tmp_path)
    voices = choose_voices("epiano,sine")
    parts = {0: contents(5), 1: contents(5, first=100), 2: contents(3, first=200)}
    render_partition(lake, 0, iter(parts[0]), voices, SPEC, workers=1)
    render_partition(lake, 1, iter(parts[1]), voices[:1], SPEC, workers=1)  # second voice missing
    fingerprints = {p: content_fingerprint(h for h, _ in c) for p, c in parts.items()}
    assert pending_partitions(lake, fingerprints, voices) == [1, 2]
    fingerprints[0] = content_fingerprint(h for h, _ in contents(6))  # silver grew
    assert pending_partitions(lake, fingerprints, voices) == [0, 1, 2]


def test_gold_from_the_old_note_length_rule_is_pending_and_rerendered_under_new_keys(tmp_path):
    """Gold cut 1 s after each note-off (before issue 19) is detected by its recorded rule, or by
    having none, and re-rendered beside it: never two rules under one key or in one manifest."""
    import pyarrow.parquet as pq

    lake = LocalLake(tmp_path)
    voices = choose_voices("bell,sine")
    parts = {0: contents(4), 1: contents(4, first=50)}
    legacy = RenderSpec(note_length="release-1s")
    for p, items in parts.items():
        render_partition(lake, p, iter(items), voices, legacy, workers=1)
    old_row = lake.read_parquet(manifest_key(voices[0].patch_id, 0)).slice(0, 1).to_pylist()[0]
    assert render_row(old_row) == lake.get(old_row["key"])  # the old rule still reproduces its rows
    # a manifest written before the rule was recorded has no note_length column at all
    key = manifest_key(voices[1].patch_id, 1)
    lake.put(key, _parquet(lake.read_parquet(key).drop_columns(["note_length"])))
    fingerprints = {p: content_fingerprint(h for h, _ in c) for p, c in parts.items()}
    assert pending_partitions(lake, fingerprints, voices) == [0, 1]
    assert pending_partitions(lake, fingerprints, voices[:1], note_length="release-1s") == []

    again = render_partition(lake, 0, iter(parts[0]), voices, SPEC, workers=1)
    assert (again["rendered"], again["reused"]) == (8, 0)
    assert pending_partitions(lake, fingerprints, voices) == [1]
    table = lake.read_parquet(manifest_key(voices[0].patch_id, 0))
    assert set(table.column("note_length").to_pylist()) == {"until-silent"} and table.num_rows == 4
    new_row = table.to_pylist()[0]
    assert new_row["key"].startswith("gold/renders/until-silent/") and old_row["key"].startswith(
        "gold/renders/release-1s/"
    )
    assert lake.get(new_row["key"]) != lake.get(old_row["key"])  # the bell rings past the old cut
    assert render_row(new_row) == lake.get(new_row["key"])
    assert pq.read_schema(io.BytesIO(lake.get(manifest_key(voices[0].patch_id, 0)))).equals(MANIFEST_SCHEMA)
    assert render_partition(lake, 1, iter(parts[1]), voices, SPEC, workers=1)["rendered"] == 8
    assert pending_partitions(lake, fingerprints, voices) == []


def _parquet(table) -> bytes:
    import pyarrow.parquet as pq

    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()


KILLED_RENDER = """
import sys
from dx7lake.lake import LocalLake
from dx7lake.gold.patches import choose_voices
from dx7lake.gold.render import RenderSpec, render_partition
sys.path.insert(0, {tests!r})
from test_render_partition import contents
render_partition(LocalLake({root!r}), 4, iter(contents(3000)), choose_voices("epiano"), RenderSpec(), workers=2)
"""


def test_a_render_killed_with_sigkill_leaves_no_manifest(tmp_path):
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    root = tmp_path / "lake"
    script = KILLED_RENDER.format(tests=str(Path(__file__).parent), root=str(root))
    proc = subprocess.Popen([sys.executable, "-c", script], start_new_session=True)
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if root.exists() and sum(1 for _ in root.rglob("*.flac")) >= 8:
                break
            time.sleep(0.02)
        assert proc.poll() is None, "the render finished before it could be killed"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the task and its pool workers
        proc.wait()
    lake = LocalLake(root)
    assert not list(lake.list("gold/manifests/"))
    done = [int(k.rsplit("/", 1)[-1].removesuffix(".flac"), 16) for k in lake.list() if k.endswith(".flac")]
    n = max(done) + 11
    retry = render_partition(lake, 4, iter(contents(n)), choose_voices("epiano"), SPEC, workers=1)
    assert (retry["reused"], retry["rendered"]) == (len(done), n - len(done))


def test_a_partition_renders_into_s3_through_the_task_process_client(monkeypatch):
    """Real S3 protocol (moto in server mode); pool workers never open a lake of their own."""
    import boto3
    from moto.server import ThreadedMotoServer

    from dx7lake.lake import S3Lake

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    server = ThreadedMotoServer(port=0)
    server.start()
    try:
        host, port = server.get_host_and_port()
        client = boto3.client("s3", endpoint_url=f"http://{host}:{port}")
        client.create_bucket(Bucket="gold")
        lake = S3Lake("s3://gold/run1", client=client)
        voices = choose_voices("epiano")
        first = render_partition(lake, 5, iter(contents(30)), voices, SPEC, workers=2, batch_size=8, pool_min_renders=0)
        assert (first["rendered"], first["manifests_written"]) == (30, 1)
        keys = [o["Key"] for o in client.list_objects_v2(Bucket="gold", Prefix="run1/gold/")["Contents"]]
        assert len(keys) == 31 and f"run1/{manifest_key(voices[0].patch_id, 5)}" in keys
        row = lake.read_parquet(manifest_key(voices[0].patch_id, 5)).slice(0, 1).to_pylist()[0]
        flac = lake.get(row["key"])
        assert hashlib.sha256(flac).hexdigest() == row["sha256"]
        assert_sounds_like_its_row(flac, row)
        again = render_partition(lake, 5, iter(contents(30)), voices, SPEC, workers=2, pool_min_renders=0)
        assert (again["rendered"], again["manifests_written"]) == (0, 0)
    finally:
        server.stop()
