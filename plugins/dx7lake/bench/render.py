"""Render benchmark: the production render path against a naive loop on the same phrases.

Phrases are the unique phrase contents of real Bach chorales (music21's corpus written as
MIDI, read by the bronze extractor, cut into 4-beat windows as silver cuts them). The
naive loop renders every note afresh with dexed-py, mixes into a new buffer, and encodes
FLAC. The production render path is what a pool worker runs per phrase (memoised notes,
reused buffers), starting cold; the partition rows time ``render.render_partition`` into a
temporary lake (lake writes and manifests included) with 1 and with 2 workers. Every
production FLAC must be byte-identical to the naive one.
"""

from __future__ import annotations

import hashlib
import math
import resource
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from ..corpus import write_demo_corpus
from ..lake import LocalLake
from ..midi import parse_midi
from ..patches import Voice, choose_voices
from ..render import PhraseRenderer, render_partition
from ..render_engine import DexedNotes, Note, RenderSpec
from ..render_flac import FlacEncoder
from ..render_master import FULL_SCALE, fade_ramp, staged_gain

CHORALES = 30
VOICES = "epiano,bell"
NAIVE_PHRASES = 300  # the naive loop is slow: it runs on the first phrases only


def chorale_phrases(limit: int = CHORALES) -> list[tuple[str, list[Note]]]:
    """Unique phrase contents of ``limit`` chorales, cut as silver.phrases cuts them."""
    phrases: dict[tuple, list] = defaultdict(list)
    with tempfile.TemporaryDirectory() as landing:
        write_demo_corpus(landing, limit)
        for path in sorted(Path(landing).rglob("*.mid")):
            table = parse_midi(path.read_bytes(), path.name).to_pydict()
            for track, start, dur, vel, pitch, drum in zip(
                table["track_id"],
                table["start_time"],
                table["duration"],
                table["velocity"],
                table["note"],
                table["is_drum"],
                strict=True,
            ):
                if not drum:
                    bucket = math.floor(start / 4)
                    phrases[track, bucket].append((round(start - 4 * bucket, 2), round(dur, 2), vel, pitch))
    unique = {}
    for notes in phrases.values():
        content = sorted(notes)
        unique[hashlib.md5(repr(content).encode()).hexdigest()] = content
    return sorted(unique.items())


def naive_render(spec: RenderSpec, voice: Voice, notes: list[Note]) -> bytes:
    """Every note rendered afresh to the phrase end into a fresh buffer, then faded, gain-staged, encoded."""
    engine = DexedNotes(spec, memoise=False)
    mix = np.zeros(spec.total_samples)
    for start, duration, velocity, pitch in notes:
        onset = spec.samples(start)
        if onset < spec.total_samples:
            mix[onset:] += engine.render(voice, pitch, velocity, spec.samples(duration), spec.total_samples - onset)
    mix[-spec.fade_samples :] *= fade_ramp(spec)
    gain = staged_gain(float(np.max(np.abs(mix))))
    pcm = np.round(mix * (gain * FULL_SCALE)).astype(np.int16)
    return FlacEncoder(spec.sample_rate, spec.flac_level).encode(pcm)


def _production(phrases, voices, spec, workers: int) -> dict:
    """One production partition render into a fresh lake: rates, manifest sha256s, memory."""
    with tempfile.TemporaryDirectory() as root:
        lake = LocalLake(root)
        wall, cpu = time.perf_counter(), time.process_time()
        stats = render_partition(lake, 0, iter(phrases), voices, spec, workers=workers)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        shas = {}
        for voice in voices:
            table = lake.read_parquet(f"gold/manifests/{voice.patch_id}/p=0000.parquet")
            for h, sha in zip(table["content_hash"].to_pylist(), table["sha256"].to_pylist(), strict=True):
                shas[voice.patch_id, h] = sha
    renders = len(phrases) * len(voices)
    return {"per_s": renders / wall, "per_cpu_s": renders / cpu, "shas": shas, "stats": stats}


def _render_path(phrases, voices, spec) -> dict:
    """The production render path alone (a fresh worker's renderer: cold memo), no lake."""
    renderer = PhraseRenderer(spec)
    shas = {}
    wall, cpu = time.perf_counter(), time.process_time()
    for voice in voices:
        for h, notes in phrases:
            flac, _ = renderer.render(voice, h, notes)
            shas[voice.patch_id, h] = hashlib.sha256(flac).hexdigest()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {"per_s": len(shas) / wall, "per_cpu_s": len(shas) / cpu, "shas": shas}


def run() -> dict:
    """Production render path and partition renders (1, 2 workers) vs the naive loop, same run.

    The machine may be shared: single-process rates are given per CPU second of this
    process (``process_time``), which contention inflates far less than wall-clock time,
    and per wall-clock second. The 2-worker run's CPU time is in its workers: wall only.
    """
    phrases = chorale_phrases()
    voices = choose_voices(VOICES)
    spec = RenderSpec()
    subset = phrases[:NAIVE_PHRASES]
    wall, cpu = time.perf_counter(), time.process_time()
    naive = {(v.patch_id, h): hashlib.sha256(naive_render(spec, v, n)).hexdigest() for v in voices for h, n in subset}
    naive_wall, naive_cpu = len(naive) / (time.perf_counter() - wall), len(naive) / (time.process_time() - cpu)

    path = _render_path(phrases, voices, spec)
    one = _production(phrases, voices, spec, workers=1)
    cold = _production(phrases, voices, spec, workers=2)  # starts the forkserver: once per process
    two = _production(phrases, voices, spec, workers=2)
    identical = all(path["shas"][k] == s for k, s in naive.items())
    identical = identical and path["shas"] == one["shas"] == two["shas"] == cold["shas"]
    audio_s = spec.total_samples / spec.sample_rate
    return {
        "name": "render",
        "phrases_per_s_per_core": round(path["per_cpu_s"], 1),
        "phrases_per_s_per_core_wall": round(path["per_s"], 1),
        "realtime_factor_per_core": round(path["per_cpu_s"] * audio_s, 1),
        "baseline": {
            "name": "naive: every note rendered afresh by dexed-py, mixed, FLAC-encoded",
            "phrases_per_s_per_core": round(naive_cpu, 1),
            "phrases_per_s_per_core_wall": round(naive_wall, 1),
        },
        "ratio": round(path["per_cpu_s"] / naive_cpu, 2),
        "ratio_wall": round(path["per_s"] / naive_wall, 2),
        "partition_with_lake_writes": {
            "workers_1_phrases_per_s": round(one["per_s"], 1),
            "workers_1_phrases_per_cpu_s": round(one["per_cpu_s"], 1),
            "workers_2_phrases_per_s": round(two["per_s"], 1),
            "workers_2_first_pool_phrases_per_s": round(cold["per_s"], 1),
            "scaling_2_vs_1_wall": round(two["per_s"] / one["per_s"], 2),
            "memo_hit_rate": one["stats"]["memo_hit_rate"],
            "worker_peak_rss_mib": two["stats"]["worker_peak_rss_mib"],
        },
        "identical_to_naive": identical,
        "compared_renders": len(naive),
        "renders": len(phrases) * len(voices),
        "unique_phrases": len(phrases),
        "notes_per_phrase": round(sum(len(n) for _, n in phrases) / len(phrases), 2),
        "voices": VOICES,
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
