"""Releases: shards round-trip to gold, splits hold in the files, killed builds leave nothing."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
from collections import Counter, defaultdict

import mido
import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
import pyloudnorm as pyln
import pytest
import soundfile as sf
from PIL import Image

from dx7lake.dataset import Release, ReleaseNotFound
from dx7lake.gold.engine import RenderSpec
from dx7lake.lake import LocalLake
from dx7lake.release import ReleaseExists, build_release, read_release
from dx7lake.release.examples import gold_manifests, gold_patches

PID = RenderSpec().profile_id
SCHEMA = pa.schema([("content_hash", pa.string())])

SHARD = 48 << 10  # tiny shards, so every split has several


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="module")
def lake(rendered_home, tmp_path_factory) -> LocalLake:
    """A copy of the rendered lake: releases are written here, never into the shared fixture."""
    root = tmp_path_factory.mktemp("release-lake") / "lake"
    shutil.copytree(rendered_home.lake_uri, root)
    return LocalLake(root)


@pytest.fixture(scope="module")
def song_release(lake, rendered_home) -> dict:
    with psycopg.connect(rendered_home.pg_url) as conn:
        result = build_release(lake, conn, "v1", split_by="song", shard_bytes=SHARD)
    assert result["status"] == "written"
    return read_release(lake, "v1")


def shard_tables(lake, name: str, manifest: dict, split: str):
    for shard in manifest["splits"][split]["shards"]["parquet"]:
        data = lake.get(f"releases/{name}/{shard['path']}")
        assert sha(data) == shard["sha256"]
        table = pq.read_table(io.BytesIO(data))
        assert table.num_rows == shard["rows"]
        yield table


def test_every_example_is_its_gold_object_and_splits_follow_silver(lake, rendered_home, song_release):
    with psycopg.connect(rendered_home.pg_url) as conn:
        silver = dict(conn.execute("select content_hash, set_type from silver.phrase_contents").fetchall())
        songs_of = defaultdict(set)
        for content_hash, midi_id in conn.execute("select content_hash, midi_id from silver.phrases"):
            songs_of[content_hash].add(midi_id)
    expected = Counter()
    for patch_id in gold_patches(lake, PID):
        for h in gold_manifests(lake, PID, patch_id).column("content_hash").to_pylist():
            expected[{"validate": "validation"}.get(silver[h], silver[h])] += 1
    seen, contents_of = set(), defaultdict(set)
    for split in ("train", "validation", "test"):
        rows = 0
        for table in shard_tables(lake, "v1", song_release, split):
            for ex in table.to_pylist():
                gold = lake.get(ex["gold_key"])  # the gold object itself, read back independently
                assert sha(ex["audio"]["bytes"]) == sha(gold) == ex["sha256"]
                assert ex["split"] == split and set(ex["midi_ids"]) == songs_of[ex["content_hash"]]
                assert ex["key"] not in seen
                seen.add(ex["key"])
                contents_of[split].add(ex["content_hash"])
                rows += 1
        assert rows == expected[split] == song_release["splits"][split]["examples"], split
    assert len(song_release["splits"]["train"]["shards"]["parquet"]) > 1
    # leakage: no phrase content in two splits
    assert not (contents_of["train"] & contents_of["test"]) and not (contents_of["train"] & contents_of["validation"])
    assert not (contents_of["validation"] & contents_of["test"])


def test_webdataset_shards_hold_the_same_examples(lake, song_release):
    for split, info in song_release["splits"].items():
        for pq_shard, tar_shard in zip(info["shards"]["parquet"], info["shards"]["webdataset"], strict=True):
            table = pq.read_table(io.BytesIO(lake.get(f"releases/v1/{pq_shard['path']}")))
            data = lake.get(f"releases/v1/{tar_shard['path']}")
            assert sha(data) == tar_shard["sha256"] and tar_shard["rows"] == table.num_rows
            with tarfile.open(fileobj=io.BytesIO(data)) as tar:
                members = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}
            for ex in table.to_pylist():
                assert members[f"{ex['key']}.flac"] == ex["audio"]["bytes"], split
                assert json.loads(members[f"{ex['key']}.json"])["sha256"] == ex["sha256"]
                assert members[f"{ex['key']}.mid"] == ex["midi"]


def test_example_metadata_midi_and_patch_params(lake, song_release):
    table = next(shard_tables(lake, "v1", song_release, "train"))
    ex = table.slice(0, 1).to_pylist()[0]
    midi = mido.MidiFile(file=io.BytesIO(ex["midi"]))
    ons = [m for m in midi if m.type == "note_on" and m.velocity > 0]
    assert sorted((m.note, m.velocity) for m in ons) == sorted((n["pitch"], n["velocity"]) for n in ex["notes"])
    assert abs(midi.length - max(n["start"] + n["duration"] for n in ex["notes"]) * 60 / ex["bpm"]) < 0.01
    rows = gold_manifests(lake, PID, ex["patch_id"]).to_pylist()
    manifest_row = next(r for r in rows if r["key"] == ex["gold_key"])
    assert ex["profile_id"] == PID and ex["profile"] == manifest_row["profile"]
    vced = manifest_row["patch_vced"]
    params = json.loads(ex["patch_params"])
    # by the DX7 VCED layout: byte 134 is the algorithm (raw 0-31), 135 feedback, 145-154 the name
    assert params["algorithm"] == vced[134] and params["feedback"] == vced[135]
    assert params["name"] == vced[145:155].decode().strip() and len(params["operators"]) == 6
    assert ex["drum_free"] and set(ex["instrument_families"]) <= {"piano", "organ", "strings", "ensemble", "reed"}
    # the audio features travel with the example: its loudness as pyloudnorm reads its own audio
    pcm, rate = sf.read(io.BytesIO(ex["audio"]["bytes"]))
    assert ex["lufs"] == pytest.approx(pyln.Meter(rate).integrated_loudness(pcm), abs=0.01)
    assert len(ex["mfcc"]) == 13 and 0 < ex["spectral_centroid_hz"] < rate / 2


def test_card_plots_and_previews(lake, song_release):
    card = lake.get("releases/v1/README.md").decode()
    for split, info in song_release["splits"].items():
        assert f"| {split} | {info['examples']} |" in card
    assert "CC-BY 4.0" in card and "GPL-3.0" in card and "load_dataset" in card
    corpus = lake.get("releases/v1/corpus.tsv").decode().splitlines()
    assert len(corpus) - 1 == song_release["card"]["songs"] == 2
    for plot in song_release["card"]["plots"]:
        assert Image.open(io.BytesIO(lake.get(f"releases/v1/{plot}"))).format == "PNG"
    assert song_release["card"]["previews"]
    mp3 = lake.get(f"releases/v1/{song_release['card']['previews'][0]}")
    assert mp3[:3] == b"ID3" or mp3[0] == 0xFF


def test_browser_stats_draws_the_cards_plots(rendered_home, song_release, lake):
    """/stats and the card: the same PNGs, the loudness one binned by Postgres over gold.renders
    for the browser and by Python over the release's shards for the card."""
    from fastapi.testclient import TestClient

    from dx7lake.browser.app import create_app

    assert {"plots/pitch.png", "plots/loudness.png"} <= set(song_release["card"]["plots"])
    with TestClient(create_app(rendered_home)) as client:
        for plot in song_release["card"]["plots"]:
            assert client.get(f"/stats/{plot.removeprefix('plots/')}").content == lake.get(f"releases/v1/{plot}"), plot


def test_release_stage_as_the_dag_runs_it(lake, rendered_home):
    """The Airflow task's stage: the run's voices (names resolved to ids), the chosen split rule."""
    from dataclasses import replace

    from dx7lake import stages
    from dx7lake.gold.patches import choose_voices

    settings = replace(rendered_home, lake_uri=str(lake.root))
    result = stages.release(settings, "staged", "bell", "patch")
    manifest = read_release(lake, "staged")
    assert result["status"] == "written" and result["examples"] == manifest["examples"] > 0
    assert manifest["request"]["patches"] == [choose_voices("bell")[0].patch_id]
    assert manifest["request"]["split_by"] == "patch"
    assert stages.release(settings, "staged", "bell", "patch")["status"] == "exists"


def test_rerun_finds_the_release_and_other_settings_refuse(lake, rendered_home, song_release):
    before = {k: (lake.root / k).stat().st_mtime_ns for k in lake.list("releases/v1/")}
    with psycopg.connect(rendered_home.pg_url) as conn:
        assert build_release(lake, conn, "v1", split_by="song", shard_bytes=SHARD)["status"] == "exists"
        with pytest.raises(ReleaseExists):
            build_release(lake, conn, "v1", split_by="patch", shard_bytes=SHARD)
    assert {k: (lake.root / k).stat().st_mtime_ns for k in lake.list("releases/v1/")} == before


def test_patch_split_holds_whole_voices_out(lake, rendered_home):
    with psycopg.connect(rendered_home.pg_url) as conn:
        build_release(lake, conn, "by-patch", split_by="patch", shard_bytes=SHARD, card=False)
    manifest = read_release(lake, "by-patch")
    patches_of = {}
    for split in ("train", "validation", "test"):
        patches_of[split] = {
            p for t in shard_tables(lake, "by-patch", manifest, split) for p in t["patch_id"].to_pylist()
        }
    assert len(patches_of["test"]) == 1 and len(patches_of["train"]) == 1 and not patches_of["validation"]
    assert not patches_of["test"] & patches_of["train"]


def test_release_reads_gold_parts_as_gold_does(rendered_home, tmp_path):
    """A part of another profile (the old note-length rule; no audio behind its keys) is not
    released, and a content a later part repeats is released with the later row."""
    root = tmp_path / "lake"
    shutil.copytree(rendered_home.lake_uri, root)
    lake = LocalLake(root)
    patch_id = gold_patches(lake, PID)[0]
    folder = root / "gold" / "manifests" / PID / patch_id
    other = RenderSpec(note_length="release-1s").profile_id
    first_part = sorted(folder.rglob("part-*.parquet"))[0]
    # the truth, read by pyarrow from the untouched lake (one part per partition so far)
    expected = {r["key"] for f in folder.rglob("*.parquet") for r in pq.read_table(f).to_pylist()}
    rows = pq.read_table(first_part)
    stale = rows.set_column(
        rows.schema.get_field_index("key"),
        "key",
        pa.array([k.replace(f"/{PID}/", f"/{other}/") for k in rows.column("key").to_pylist()]),
    )
    stale = stale.set_column(
        stale.schema.get_field_index("note_length"), "note_length", pa.array(["release-1s"] * len(stale))
    )
    stale_folder = root / "gold" / "manifests" / other / patch_id / first_part.parent.name
    stale_folder.mkdir(parents=True)
    pq.write_table(stale, stale_folder / "part-00000000T000000000000Z-stale.parquet")
    later = rows.slice(0, 1)
    later = later.set_column(later.schema.get_field_index("peak"), "peak", pa.array([0.123]))
    pq.write_table(later, first_part.parent / "part-99991231T000000000000Z-later.parquet")
    with psycopg.connect(rendered_home.pg_url) as conn:
        build_release(lake, conn, "parts", patches=[patch_id], shard_bytes=SHARD, card=False)
    manifest = read_release(lake, "parts")
    examples = [
        ex for split in manifest["splits"] for t in shard_tables(lake, "parts", manifest, split) for ex in t.to_pylist()
    ]
    assert {ex["gold_key"] for ex in examples} == expected and not manifest["skipped"]
    assert next(ex["peak"] for ex in examples if ex["gold_key"] == later.column("key")[0].as_py()) == 0.123


KILLED_BUILD = """
import sys, time, psycopg
from dx7lake.dataset import Release, ReleaseNotFound
from dx7lake.lake import LocalLake
from dx7lake.release import build_release

def slow(rel):
    print(rel, flush=True)
    time.sleep(30)

with psycopg.connect(sys.argv[2]) as conn:
    build_release(LocalLake(sys.argv[1]), conn, "killed", shard_bytes=int(sys.argv[3]), on_shard=slow)
"""


def test_killed_build_leaves_no_release_and_a_rerun_finishes_it(lake, rendered_home):
    proc = subprocess.Popen(
        [sys.executable, "-c", KILLED_BUILD, str(lake.root), rendered_home.pg_url, str(SHARD)],
        stdout=subprocess.PIPE,
        text=True,
    )
    first = proc.stdout.readline().strip()  # the first shard is in the lake; the build sleeps
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert first and lake.exists(f"releases/killed/{first}")
    assert read_release(lake, "killed") is None and not lake.exists("releases/killed/release.json")
    with pytest.raises(ReleaseNotFound):
        Release(str(lake.root / "releases/killed"))
    with psycopg.connect(rendered_home.pg_url) as conn:
        assert build_release(lake, conn, "killed", shard_bytes=SHARD, card=False)["status"] == "written"
    assert read_release(lake, "killed")["examples"] > 0


def test_datasets_loads_the_parquet_shards_with_decoded_audio(lake, song_release, tmp_path):
    datasets = pytest.importorskip("datasets", reason="Hugging Face datasets comes with the [ml] extra")
    files = {
        split: [str(lake.root / "releases/v1" / s["path"]) for s in info["shards"]["parquet"]]
        for split, info in song_release["splits"].items()
        if info["examples"]
    }
    ds = datasets.load_dataset("parquet", data_files=files, cache_dir=str(tmp_path / "hf"))
    assert isinstance(ds["train"].features["audio"], datasets.Audio)
    for split in files:
        assert ds[split].num_rows == song_release["splits"][split]["examples"]
        example = ds[split][0]
        audio = example["audio"]
        assert audio["sampling_rate"] == example["sample_rate"] == 22050
        assert len(audio["array"]) == round(example["duration_s"] * example["sample_rate"])
        assert 0 < abs(audio["array"]).max() <= 1.0


def test_loader_decodes_as_libsndfile_does(lake, song_release):
    """pedalboard decodes, libsndfile (soundfile) is the independent reading: the same floats."""
    import numpy as np
    import soundfile as sf

    from dx7lake.dataset import examples

    shard = song_release["splits"]["train"]["shards"]["parquet"][:1]
    for example in examples(LocalLake(lake.root / "releases/v1"), shard, columns=["gold_key"]):
        expected, rate = sf.read(io.BytesIO(lake.get(example["gold_key"])), dtype="float32")
        assert example["sample_rate"] == rate and np.array_equal(example["audio"], expected)


def test_torch_loader_two_workers_yield_each_example_once(lake, song_release):
    pytest.importorskip("torch", reason="torch comes with the [ml] extra")
    from torch.utils.data import DataLoader

    from dx7lake.dataset import Release, ReleaseDataset

    root = str(lake.root / "releases/v1")
    expected = Counter(Release(root).to_pandas("train")["key"])
    assert len(expected) == song_release["splits"]["train"]["examples"] and max(expected.values()) == 1
    ds = ReleaseDataset(root, "train", seed=7, columns=["key", "duration_s"])
    seen = Counter()
    for example in DataLoader(ds, batch_size=None, num_workers=2):
        assert example["audio"].dtype.is_floating_point and example["sample_rate"] == 22050
        assert len(example["audio"]) == round(example["duration_s"] * 22050)
        seen[example["key"]] += 1
    assert seen == expected
    # ranks split the shards between them: together every example once
    ranks = [
        Counter(e["key"] for e in ReleaseDataset(root, "train", rank=r, world_size=2, columns=["key"])) for r in (0, 1)
    ]
    assert ranks[0] + ranks[1] == expected and not set(ranks[0]) & set(ranks[1])
    # each epoch reorders the same shards; resampling on request
    orders = []
    for epoch in range(4):
        ds.set_epoch(epoch)
        orders.append([s["path"] for s in ds.assigned_shards()])
    assert (
        all(sorted(o) == sorted(s["path"] for s in ds.shard_list) for o in orders) and len(set(map(tuple, orders))) > 1
    )
    first = next(iter(ReleaseDataset(root, "train", sample_rate=16000, columns=["duration_s"])))
    assert first["sample_rate"] == 16000 and abs(len(first["audio"]) - first["duration_s"] * 16000) <= 2


def test_a_release_streams_from_s3(lake, song_release, s3_lake_uri):
    from dx7lake.dataset import examples
    from dx7lake.lake import open_lake

    s3 = open_lake(s3_lake_uri)
    for key in lake.list("releases/v1/"):
        s3.put(key, lake.get(key))
    release = Release(f"{s3_lake_uri}/releases/v1")
    meta = release.to_pandas("validation")
    streamed = list(examples(release.lake, release.shards("validation"), columns=["key", "sha256", "duration_s"]))
    assert [e["key"] for e in streamed] == list(meta["key"]) and len(streamed) == song_release["splits"]["validation"][
        "examples"
    ]
    assert all(len(e["audio"]) == round(e["duration_s"] * 22050) for e in streamed)


def test_cli_writes_a_release_of_chosen_patches(lake, rendered_home, monkeypatch, capsys, tmp_path):
    from dx7lake.cli import main

    monkeypatch.setenv("DX7LAKE_PG_URL", rendered_home.pg_url)
    args = ["release", "--home", str(tmp_path), "--lake", str(lake.root), "--name", "cli-epiano"]
    assert main([*args, "--patches", "epiano", "--split-by", "song", "--shard-size", "64K"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    manifest = read_release(lake, "cli-epiano")
    assert out["status"] == "written" and out["examples"] == manifest["examples"] > 0
    assert [p["patch_name"] for p in manifest["patches"]] == ["epiano"] and manifest["request"][
        "shard_bytes"
    ] == 64 << 10


def test_patch_split_counts_only_voices_with_renders(tmp_path):
    """A voice whose manifest parts are all empty has no example, so it must not take a split
    (with two real voices and one empty, test would hold none)."""
    from dx7lake.gold.render import part_key
    from dx7lake.release.examples import gold_partitions, patches_with_rows

    lake = LocalLake(str(tmp_path))
    rows = {"current": [{"content_hash": "aa" * 16}], "later": [], "empty": []}
    for patch_id, table in rows.items():
        hashes = [r["content_hash"] for r in table]
        lake.put_parquet(part_key("pf", patch_id, 3, hashes), pa.Table.from_pylist(table, SCHEMA))
    lake.put_parquet(part_key("pf", "later", 5, ["bd" * 16]), pa.Table.from_pylist([{"content_hash": "bd" * 16}]))
    lake.put_parquet(part_key("other", "gone", 3, ["dd" * 16]), pa.Table.from_pylist([{"content_hash": "dd" * 16}]))
    partitions = gold_partitions(lake, "pf", ["current", "later", "empty", "gone"])
    assert patches_with_rows(lake, partitions) == ["current", "later"]
