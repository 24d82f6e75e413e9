"""Release benchmark: the shard loader against reading per-render FLAC objects one by one,
same examples, decoded to float32 alike, on a local lake and on S3 (a moto server over HTTP);
and the shard-writing cost of a release build, extrapolated to 100k renders.

The build figure covers what grows with the renders (fetching gold objects, checking their
sha256, metadata and per-phrase MIDI, Parquet + tar shards, puts); the silver query and the
card are left out (the bench has no warehouse: each render gets a one-phrase ContentInfo).
"""

from __future__ import annotations

import logging
import tempfile
import time

from dx7lake.dataset import decode, examples
from dx7lake.gold.engine import RenderSpec
from dx7lake.gold.patches import choose_voices
from dx7lake.gold.render import PhraseRenderer
from dx7lake.lake import Lake, LocalLake, S3Lake
from dx7lake.release.build import SplitWriter
from dx7lake.release.examples import ContentInfo, params_json

from .render import chorale_phrases

RENDERS = 240
SHARD_BYTES = 4 << 20


def _loader_vs_objects(lake: Lake, release: Lake, rows: list[dict], shards: list[dict]) -> dict:
    """Both readers decode every example; the breakdown says where the baseline's time goes
    (fetching the objects one by one vs decoding them), which bounds what shards can gain."""
    started = time.perf_counter()
    n = sum(1 for _ in examples(release, shards, columns=["key"]))
    loader = n / (time.perf_counter() - started)
    started = time.perf_counter()
    for row in rows:
        decode(lake.get(row["key"]))
    objects = len(rows) / (time.perf_counter() - started)
    assert n == len(rows)
    started = time.perf_counter()
    flacs = [lake.get(row["key"]) for row in rows]
    fetch_ms = (time.perf_counter() - started) / len(rows) * 1000
    started = time.perf_counter()
    for flac in flacs:
        decode(flac)
    decode_ms = (time.perf_counter() - started) / len(rows) * 1000
    return {
        "examples_per_s": round(loader, 1),
        "baseline": {"name": "per-render FLAC objects one by one", "examples_per_s": round(objects, 1)},
        "ratio": round(loader / objects, 2),
        "baseline_ms_per_example": {"fetch": round(fetch_ms, 3), "decode": round(decode_ms, 3)},
    }


def _s3_copy(local: LocalLake, keys: list[str]):
    """The same objects on a moto S3 server; returns (server, lake) or None without moto."""
    try:
        import boto3
        from moto.server import ThreadedMotoServer
    except ImportError:
        return None
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's server logs every request
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    client = boto3.client(
        "s3",
        endpoint_url=f"http://{host}:{port}",
        aws_access_key_id="bench",
        aws_secret_access_key="bench",
        region_name="us-east-1",
    )
    client.create_bucket(Bucket="bench")
    lake = S3Lake("s3://bench/lake", client=client)
    for key in keys:
        lake.put(key, local.get(key))
    return server, lake


def run() -> dict:
    (voice,) = choose_voices("epiano")
    renderer = PhraseRenderer(RenderSpec())
    with tempfile.TemporaryDirectory() as tmp:
        lake = LocalLake(tmp)
        items = []
        for i, (content_hash, notes) in enumerate(chorale_phrases()[:RENDERS]):
            flac, row = renderer.render(voice, content_hash, notes)
            lake.put(row["key"], flac)
            items.append((row, ContentInfo("train", [f"phrase{i}"], ["song"], ["track"], [0], [False])))
        rows = [row for row, _ in items]
        started = time.perf_counter()
        with SplitWriter(lake, "releases/bench", {voice.patch_id: params_json(voice.vced)}, SHARD_BYTES, 0) as w:
            w.add("train", items)
            split = w.finish()["train"]
        build_s = time.perf_counter() - started
        shards = split["shards"]["parquet"]
        result = {
            "name": "release",
            "renders": len(rows),
            "shards": len(shards),
            "build_s": round(build_s, 3),
            "build_s_per_100k_renders": round(build_s / len(rows) * 100_000, 1),
            "local": _loader_vs_objects(lake, LocalLake(f"{tmp}/releases/bench"), rows, shards),
        }
        keys = [row["key"] for row in rows] + [f"releases/bench/{s['path']}" for s in shards]
        s3 = _s3_copy(lake, keys)
        if s3 is not None:
            server, s3_lake = s3
            try:
                release = S3Lake("s3://bench/lake/releases/bench", client=s3_lake.client)
                result["s3_moto"] = _loader_vs_objects(s3_lake, release, rows, shards)
            finally:
                server.stop()
    return result
