"""Release benchmark: the shard loader against reading per-render FLAC objects one by one,
same examples, decoded to float32 alike, on a local lake and on S3 (a moto server over HTTP),
best of three runs each;
and the shard-writing cost of a release build, extrapolated to 100k renders.

The build figure covers what grows with the renders (fetching gold objects, checking their
sha256, metadata and per-phrase MIDI, Parquet + tar shards, puts); the silver query and the
card are left out (the bench has no warehouse: each render gets a one-phrase ContentInfo).
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Callable

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
REPEATS = 3


def _best_rate(count: int, run: Callable[[], object], repeats: int = REPEATS) -> float:
    """Examples per second of the fastest of ``repeats`` runs (the machine may be shared)."""
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - started)
    return count / best


def _loader_vs_objects(lake: Lake, release: Lake, rows: list[dict], shards: list[dict]) -> dict:
    """Both readers decode every example; the breakdown says where the baseline's time goes
    (fetching the objects one by one vs decoding them), which bounds what shards can gain."""
    n = len(rows)
    assert sum(1 for _ in examples(release, shards, columns=["key"])) == n
    loader = _best_rate(n, lambda: sum(1 for _ in examples(release, shards, columns=["key"])))
    one_thread = _best_rate(n, lambda: sum(1 for _ in examples(release, shards, columns=["key"], decode_threads=1)))
    objects = _best_rate(n, lambda: [decode(lake.get(row["key"])) for row in rows])
    flacs = [lake.get(row["key"]) for row in rows]
    fetch = _best_rate(n, lambda: [lake.get(row["key"]) for row in rows])
    decoding = _best_rate(n, lambda: [decode(flac) for flac in flacs])
    return {
        "examples_per_s": round(loader, 1),
        "examples_per_s_one_decode_thread": round(one_thread, 1),
        "baseline": {"name": "per-render FLAC objects one by one", "examples_per_s": round(objects, 1)},
        "ratio": round(loader / objects, 2),
        "baseline_ms_per_example": {"fetch": round(1000 / fetch, 3), "decode": round(1000 / decoding, 3)},
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
