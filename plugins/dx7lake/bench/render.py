"""Render benchmark: the production render path against a naive loop on the same phrases.

Phrases are the unique phrase contents of real Bach chorales (music21's corpus written as
MIDI, read by the bronze extractor, cut into 4-beat windows as silver cuts them). The
naive loop renders every note afresh with dexed-py, mixes into a new buffer, and encodes
FLAC; the production path is ``render.render_partition`` into a temporary lake (memoised
notes, reused buffers, lake writes and the manifest included) with 1 and with 2 workers.
Every production FLAC must be byte-identical to the naive one.
"""

from __future__ import annotations

import hashlib
import math
import resource
import tempfile
import time
from collections import defaultdict

import numpy as np

from ..corpus import write_demo_corpus
from ..lake import LocalLake
from ..midi import iter_source, parse_midi
from ..patches import Voice, choose_voices
from ..render import render_partition
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
        for key, data in iter_source(landing):
            table = parse_midi(data, key).to_pydict()
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
    """Every note rendered afresh into a fresh buffer, then faded, gain-staged, encoded."""
    engine = DexedNotes(spec, memoise=False)
    mix = np.zeros(spec.total_samples)
    for start, duration, velocity, pitch in notes:
        onset = spec.samples(start)
        audio = engine.render(voice, pitch, velocity, spec.samples(duration))[: spec.total_samples - onset]
        mix[onset : onset + len(audio)] += audio
    mix[-spec.fade_samples :] *= fade_ramp(spec)
    gain = staged_gain(float(np.max(np.abs(mix))))
    pcm = np.round(mix * (gain * FULL_SCALE)).astype(np.int16)
    return FlacEncoder(spec.sample_rate, spec.flac_level).encode(pcm)


def _production(phrases, voices, spec, workers: int) -> tuple[float, dict[tuple[str, str], str]]:
    with tempfile.TemporaryDirectory() as root:
        lake = LocalLake(root)
        started = time.perf_counter()
        render_partition(lake, 0, iter(phrases), voices, spec, workers=workers)
        seconds = time.perf_counter() - started
        shas = {}
        for voice in voices:
            table = lake.read_parquet(f"gold/manifests/{voice.patch_id}/p=0000.parquet")
            for h, sha in zip(table["content_hash"].to_pylist(), table["sha256"].to_pylist(), strict=True):
                shas[voice.patch_id, h] = sha
    return len(phrases) * len(voices) / seconds, shas


def run() -> dict:
    """Production path (1 and 2 workers) vs the naive loop on chorale phrases, same run."""
    phrases = chorale_phrases()
    voices = choose_voices(VOICES)
    spec = RenderSpec()
    notes_per_phrase = sum(len(n) for _, n in phrases) / len(phrases)

    subset = phrases[:NAIVE_PHRASES]
    started = time.perf_counter()
    naive = {(v.patch_id, h): hashlib.sha256(naive_render(spec, v, n)).hexdigest() for v in voices for h, n in subset}
    naive_rate = len(naive) / (time.perf_counter() - started)

    one, shas_one = _production(phrases, voices, spec, workers=1)
    two, shas_two = _production(phrases, voices, spec, workers=2)
    identical = all(shas_one[k] == s == shas_two[k] for k, s in naive.items()) and shas_one == shas_two
    audio_s = spec.total_samples / spec.sample_rate
    rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    child_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {
        "name": "render",
        "phrases_per_s": round(one, 1),
        "phrases_per_s_per_core": round(one, 1),  # one worker: one core
        "realtime_factor": round(one * audio_s, 1),
        "baseline": {"name": "naive per-note dexed-py render + mix + FLAC", "phrases_per_s": round(naive_rate, 1)},
        "ratio": round(one / naive_rate, 2),
        "workers_2": {
            "phrases_per_s": round(two, 1),
            "phrases_per_s_per_core": round(two / 2, 1),
            "scaling": round(two / one, 2),
        },
        "identical_to_naive": identical,
        "compared_renders": len(naive),
        "renders": len(phrases) * len(voices),
        "unique_phrases": len(phrases),
        "notes_per_phrase": round(notes_per_phrase, 2),
        "voices": VOICES,
        "peak_rss_mib": round(rss_mib, 1),
        "peak_rss_worker_mib": round(child_mib, 1),
    }
