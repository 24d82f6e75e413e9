"""Rendering a partition into the lake: manifest parts last, reruns write nothing, pools agree,
new contents add a part, compaction merges parts without a moment where a row is missing."""

from __future__ import annotations

import hashlib
import io
import os
import re
import time

import pytest
import soundfile as sf
from engine_reference import assert_sounds_like_its_row

from dx7lake.gold.patches import choose_voices
from dx7lake.gold.render import (
    MANIFEST_SCHEMA,
    GoldConflict,
    RenderSpec,
    compact_partition,
    manifest_parts,
    pending_partitions,
    read_manifest,
    render_partition,
    render_row,
)
from dx7lake.lake import LocalLake

SPEC = RenderSpec()
PID = SPEC.profile_id
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

    (part,) = manifest_parts(lake, PID, voices[0].patch_id, 3)
    assert part.startswith(f"gold/manifests/{PID}/{voices[0].patch_id}/p=0003/part-")
    manifest = lake.read_parquet(part)
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
    cpu_before = time.process_time()
    alone = render_partition(one, 0, iter(contents(48)), voices, SPEC, workers=1, batch_size=8)
    cpu_alone = time.process_time() - cpu_before
    stats = render_partition(two, 0, iter(contents(48)), voices, SPEC, workers=2, batch_size=8, pool_min_renders=0)
    assert stats["workers"] == min(2, len(os.sched_getaffinity(0))) and stats["rendered"] == 96
    # in-process work is this process's own CPU time; a pool's is counted by its workers, and is
    # of the order of what the same renders cost here (the OS's count for this process, not the
    # pool's): more, as each worker warms its own engine and memo (3.2x seen on a busy machine)
    assert alone["pool_cpu_seconds"] == 0.0
    if stats["workers"] > 1:
        assert 0.3 * cpu_alone < stats["pool_cpu_seconds"] < 8 * cpu_alone
    unstamped = [re.sub(r"part-\d{8}T\d{12}Z-", "part-", k) for k in one.list()]  # parts carry their time
    assert unstamped == [re.sub(r"part-\d{8}T\d{12}Z-", "part-", k) for k in two.list()]
    assert all(one.get(a) == two.get(b) for a, b in zip(one.list(), two.list(), strict=True))


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
    assert len(manifest_parts(lake, PID, voices[0].patch_id, 1)) == 1
    assert read_manifest(lake, PID, voices[0].patch_id, 1).num_rows == 60


def test_new_contents_add_a_part_of_only_the_new_rows_and_leave_the_old_part_untouched(tmp_path):
    lake = LocalLake(tmp_path)
    voices = choose_voices("sine")
    render_partition(lake, 2, iter(contents(10)), voices, SPEC, workers=1)
    before = stamps(lake)
    more = render_partition(lake, 2, iter(contents(15)), voices, SPEC, workers=1)
    assert (more["rendered"], more["reused"], more["manifests_written"]) == (5, 10, 1)
    _, new = manifest_parts(lake, PID, voices[0].patch_id, 2)
    assert {k: v for k, v in stamps(lake).items() if k in before} == before  # nothing rewritten
    assert sorted(lake.read_parquet(new).column("content_hash").to_pylist()) == [h for h, _ in contents(5, first=10)]
    table = read_manifest(lake, PID, voices[0].patch_id, 2)
    assert sorted(table.column("content_hash").to_pylist()) == [h for h, _ in contents(15)]


def test_compaction_merges_parts_and_a_reader_never_misses_a_row(tmp_path):
    lake = LocalLake(tmp_path)
    voices = choose_voices("sine")
    for n in (4, 8, 12):
        render_partition(lake, 6, iter(contents(n)), voices, SPEC, workers=1)
    pid = voices[0].patch_id
    parts = manifest_parts(lake, PID, pid, 6)
    rows = {r["content_hash"]: r for r in read_manifest(lake, PID, pid, 6).to_pylist()}
    assert len(parts) == 3 and len(rows) == 12

    # a compaction killed between its merged part and the deletes: the union repeats rows, loses none
    class DiesOnDelete(LocalLake):
        def delete(self, key: str) -> None:
            raise KeyboardInterrupt("killed")

    with pytest.raises(KeyboardInterrupt):
        compact_partition(DiesOnDelete(tmp_path), PID, pid, 6)
    assert len(manifest_parts(lake, PID, pid, 6)) == 4
    assert {r["content_hash"]: r for r in read_manifest(lake, PID, pid, 6).to_pylist()} == rows

    done = compact_partition(lake, PID, pid, 6)
    (merged,) = manifest_parts(lake, PID, pid, 6)
    assert (done["parts"], done["merged"], done["key"]) == (4, 12, merged)
    assert {r["content_hash"]: r for r in lake.read_parquet(merged).to_pylist()} == rows
    again = render_partition(lake, 6, iter(contents(12)), voices, SPEC, workers=1)
    assert (again["rendered"], again["manifests_written"]) == (0, 0)


def test_other_settings_render_a_new_profile_beside_the_old_one_never_reusing_its_audio(tmp_path):
    """Changing the tempo is another profile: new keys, new parts, the old ones untouched,
    and each render lasts what its own tempo gives (worked by hand: 4 beats at 90 BPM plus
    the 0.5 s tail at 22,050 Hz = 4 * 60/90 * 22050 + 11025 = 69,825 samples; at 120 BPM 55,125)."""
    lake = LocalLake(tmp_path)
    voices = choose_voices("sine")
    render_partition(lake, 0, iter(contents(4)), voices, SPEC, workers=1)
    before = stamps(lake)
    slow = RenderSpec(bpm=90.0)
    assert slow.profile_id != PID
    again = render_partition(lake, 0, iter(contents(4)), voices, slow, workers=1)
    assert (again["rendered"], again["reused"], again["manifests_written"]) == (4, 0, 1)
    assert {k: v for k, v in stamps(lake).items() if k in before} == before  # nothing of the old profile rewritten
    old = read_manifest(lake, PID, voices[0].patch_id, 0).to_pylist()
    new = read_manifest(lake, slow.profile_id, voices[0].patch_id, 0).to_pylist()
    assert not {r["key"] for r in old} & {r["key"] for r in new}
    assert all(r["key"].startswith(f"gold/renders/{slow.profile_id}/") and r["bpm"] == 90.0 for r in new)
    for rows, samples in ((old, 4 * 60 / 120 * 22050 + 11025), (new, 4 * 60 / 90 * 22050 + 11025)):
        for row in rows:
            audio, sr = sf.read(io.BytesIO(lake.get(row["key"])), dtype="int16")
            assert (sr, len(audio)) == (22050, samples)
    assert render_partition(lake, 0, iter(contents(4)), voices, slow, workers=1)["manifests_written"] == 0


def test_an_object_that_differs_from_its_profiles_render_is_a_conflict_not_an_overwrite(tmp_path):
    lake = LocalLake(tmp_path)
    voices = choose_voices("sine")
    render_partition(lake, 0, iter(contents(4)), voices, SPEC, workers=1)
    row = read_manifest(lake, PID, voices[0].patch_id, 0).to_pylist()[0]
    for key in manifest_parts(lake, PID, voices[0].patch_id, 0):
        lake.delete(key)
    lake.put(row["key"], b"other audio")
    with pytest.raises(GoldConflict, match="holds a different render"):
        render_partition(lake, 0, iter(contents(4)), voices, SPEC, workers=1)


def test_pending_partitions_are_the_uncovered_ones_and_those_whose_parts_differ_from_the_ledger(tmp_path):
    lake = LocalLake(tmp_path)
    voices = choose_voices("epiano,sine")
    slow = RenderSpec(bpm=90.0).profile_id
    render_partition(lake, 0, iter(contents(5)), voices, SPEC, workers=1)
    render_partition(lake, 1, iter(contents(5, first=100)), voices[:1], SPEC, workers=1)
    loaded = [k for v in voices for k in manifest_parts(lake, PID, v.patch_id)]
    assert len(loaded) == 3
    assert pending_partitions(lake, [PID], voices, [], loaded) == []
    uncovered = [(PID, 1), (PID, 2), (slow, 0)]  # silver has contents gold lacks
    assert pending_partitions(lake, [PID, slow], voices, uncovered, loaded) == sorted(uncovered)
    assert pending_partitions(lake, [PID], voices, [], loaded[1:]) == [(PID, 0)]  # a part written but never loaded
    (p1,) = manifest_parts(lake, PID, voices[0].patch_id, 1)
    lake.delete(p1)
    assert pending_partitions(lake, [PID], voices, [], loaded) == [(PID, 1)]  # a loaded part gone from the lake
    assert pending_partitions(lake, [PID], voices[1:], [], loaded) == []  # the ledger's other patches do not count
    assert pending_partitions(lake, [slow], voices, [], loaded) == []  # nor its other profiles


def test_the_note_length_rule_before_issue_19_is_a_profile_of_its_own_and_reproduces_its_rows(tmp_path):
    """Gold cut 1 s after each note-off is another profile: rendered beside the current rule,
    never mixed into its manifests, and its rows re-render from themselves."""
    import pyarrow.parquet as pq

    lake = LocalLake(tmp_path)
    voices = choose_voices("bell")
    legacy = RenderSpec(note_length="release-1s")
    render_partition(lake, 0, iter(contents(4)), voices, legacy, workers=1)
    old_row = read_manifest(lake, legacy.profile_id, voices[0].patch_id, 0).slice(0, 1).to_pylist()[0]
    assert render_row(old_row) == lake.get(old_row["key"])  # the old rule still reproduces its rows
    again = render_partition(lake, 0, iter(contents(4)), voices, SPEC, workers=1)
    assert (again["rendered"], again["reused"], again["manifests_written"]) == (4, 0, 1)
    table = read_manifest(lake, PID, voices[0].patch_id, 0)
    assert set(table.column("note_length").to_pylist()) == {"until-silent"} and table.num_rows == 4
    new_row = next(r for r in table.to_pylist() if r["content_hash"] == old_row["content_hash"])
    assert lake.get(new_row["key"]) != lake.get(old_row["key"])  # the bell rings past the old cut
    assert render_row(new_row) == lake.get(new_row["key"])
    newest = manifest_parts(lake, PID, voices[0].patch_id, 0)[-1]
    assert pq.read_schema(io.BytesIO(lake.get(newest))).equals(MANIFEST_SCHEMA)


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
        (part,) = manifest_parts(lake, PID, voices[0].patch_id, 5)
        assert len(keys) == 31 and f"run1/{part}" in keys
        row = lake.read_parquet(part).slice(0, 1).to_pylist()[0]
        flac = lake.get(row["key"])
        assert hashlib.sha256(flac).hexdigest() == row["sha256"]
        assert_sounds_like_its_row(flac, row)
        again = render_partition(lake, 5, iter(contents(30)), voices, SPEC, workers=2, pool_min_renders=0)
        assert (again["rendered"], again["manifests_written"]) == (0, 0)
    finally:
        server.stop()
