"""Render benchmark: the production render path against a naive loop on the same phrases.

Phrases are unique phrase contents cut into 4-beat windows as silver cuts them, from real
Bach chorales (music21's corpus written as MIDI: tidy) and, when it is present beside the
repository, from the real-world corpus (``../shared/corpus/realworld``: multitrack game,
pop and accompaniment files, dense as Lakh is; a fixed sample of its unique phrases). The
naive loop renders every note afresh with dexed-py to the phrase end, mixes into a new
buffer, and encodes FLAC. The production render path is what a pool worker runs per
phrase (memoised notes, each rendered until it falls silent, reused buffers), starting
cold; the partition rows time ``render.render_partition`` into a temporary lake (lake
writes and manifests included) with 1 and with 2 workers. Every production FLAC must be
byte-identical to the naive one. The note-length rows give the cost of rendering notes
whole (``until-silent``) against the old cut 1 s after each note-off (``release-1s``),
per voice: ``organ`` and ``epiano`` release within a second, ``bell`` rings for ~4 s.
"""

from __future__ import annotations

import hashlib
import resource
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from dx7lake.bronze import MidiError, parse_midi
from dx7lake.bronze.corpus import write_demo_corpus
from dx7lake.config import DEFAULT_PATCHES, PHRASE_BEATS
from dx7lake.gold.engine import RELEASE_1S, UNTIL_SILENT, DexedNotes, Note, RenderSpec
from dx7lake.gold.flac import FlacEncoder
from dx7lake.gold.master import FULL_SCALE, fade_ramp, staged_gain
from dx7lake.gold.patches import Voice, choose_voices
from dx7lake.gold.render import PhraseRenderer, read_manifest, render_partition
from dx7lake.lake import LocalLake

CHORALES = 30
VOICES = DEFAULT_PATCHES
NAIVE_PHRASES = 300  # the naive loop is slow: it runs on the first phrases only
REALWORLD = Path(__file__).resolve().parents[1].parent / "shared" / "corpus" / "realworld"
REALWORLD_PHRASES = 1000  # the first unique phrases in content-hash order: a fixed pseudo-random sample
REALWORLD_NAIVE_PHRASES = 150
COST_VOICES = ("organ", "epiano", "bell")  # shortest, short and long release
COST_REPEATS = 2  # each note-length rate is the best of this many interleaved runs (the machine is shared)


def phrases_of(paths: list[Path]) -> list[tuple[str, list[Note]]]:
    """Unique phrase contents of MIDI files, cut as silver.phrases cuts them (files that do not parse are skipped).

    The rule of docs/ARCHITECTURE.md (and ``int_notes_bucketed``/``int_phrases``): starts and
    durations on the 0.01-beat grid first, then bucket and offset; the hash is silver's
    ``content_hash``.
    """
    window = round(PHRASE_BEATS * 100)
    phrases: dict[tuple, list] = defaultdict(list)
    for path in paths:
        try:
            table = parse_midi(path.read_bytes(), path.name).to_pydict()
        except MidiError:
            continue
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
                start_cb = round(start * 100)  # silver's grid: hundredths of a beat
                bucket = start_cb // window
                phrases[track, bucket].append((start_cb - window * bucket, round(dur * 100), vel, pitch))
    unique = {}
    for notes in phrases.values():
        content = sorted(notes)
        content_hash = hashlib.md5(";".join(",".join(map(str, n)) for n in content).encode()).hexdigest()
        unique[content_hash] = [(o / 100, d / 100, v, n) for o, d, v, n in content]
    return sorted(unique.items())


def chorale_phrases(limit: int = CHORALES) -> list[tuple[str, list[Note]]]:
    """Unique phrase contents of ``limit`` chorales."""
    with tempfile.TemporaryDirectory() as landing:
        write_demo_corpus(landing, limit)
        return phrases_of(sorted(Path(landing).rglob("*.mid")))


def realworld_phrases(folder: Path = REALWORLD, limit: int = REALWORLD_PHRASES) -> list[tuple[str, list[Note]]]:
    """A fixed sample of the real-world corpus's unique phrase contents (none when it is absent)."""
    return phrases_of(sorted(folder.glob("*.mid")))[:limit] if folder.is_dir() else []


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
            table = read_manifest(lake, spec.profile_id, voice.patch_id, 0)
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
    stats = renderer.engine.stats()
    return {
        "per_s": len(shas) / wall,
        "per_cpu_s": len(shas) / cpu,
        "shas": shas,
        "memo_hit_rate": stats["memo_hits"] / max(1, stats["memo_hits"] + stats["engine_calls"]),
        "engine_s_per_render": stats["engine_samples"] / spec.sample_rate / len(shas),
    }


def _naive(phrases, voices, spec) -> tuple[dict, float, float]:
    """sha256 of each naive render, renders per wall second and per CPU second."""
    wall, cpu = time.perf_counter(), time.process_time()
    shas = {(v.patch_id, h): hashlib.sha256(naive_render(spec, v, n)).hexdigest() for v in voices for h, n in phrases}
    return shas, len(shas) / (time.perf_counter() - wall), len(shas) / (time.process_time() - cpu)


def _against_naive(path: dict, naive_wall: float, naive_cpu: float, audio_s: float) -> dict:
    """The render path's rates, memo and real-time factor beside the naive loop's (one shape for every corpus)."""
    return {
        "phrases_per_s_per_core": round(path["per_cpu_s"], 1),
        "phrases_per_s_per_core_wall": round(path["per_s"], 1),
        "realtime_factor_per_core": round(path["per_cpu_s"] * audio_s, 1),
        "memo_hit_rate": round(path["memo_hit_rate"], 4),
        "baseline": {
            "name": "naive: every note rendered afresh by dexed-py to the phrase end, mixed, FLAC-encoded",
            "phrases_per_s_per_core": round(naive_cpu, 1),
            "phrases_per_s_per_core_wall": round(naive_wall, 1),
        },
        "ratio": round(path["per_cpu_s"] / naive_cpu, 2),
    }


def _realworld(phrases, spec) -> dict:
    """The chorale headline on the real-world sample: render path against the naive loop."""
    if not phrases:
        return {"skipped": f"no real-world corpus at {REALWORLD}"}
    voices = choose_voices(VOICES)
    naive, naive_wall, naive_cpu = _naive(phrases[:REALWORLD_NAIVE_PHRASES], voices, spec)
    path = _render_path(phrases, voices, spec)
    audio_s = spec.total_samples / spec.sample_rate
    return {
        **_against_naive(path, naive_wall, naive_cpu, audio_s),
        "engine_s_per_render": round(path["engine_s_per_render"], 2),
        "identical_to_naive": all(path["shas"][k] == sha for k, sha in naive.items()),
        "compared_renders": len(naive),
        "renders": len(phrases) * len(voices),
        "unique_phrases": len(phrases),
        "notes_per_phrase": round(sum(len(n) for _, n in phrases) / len(phrases), 2),
        "voices": VOICES,
    }


def _note_length_cost(corpora: dict[str, list]) -> list[dict]:
    """Render-path rates per voice with notes whole against notes cut 1 s after their note-off."""
    rows = []
    for corpus, phrases in corpora.items():
        if not phrases:
            continue
        for name in COST_VOICES:
            voices = choose_voices(name)
            runs: dict[str, list[dict]] = {UNTIL_SILENT: [], RELEASE_1S: []}
            for _ in range(COST_REPEATS):  # interleaved, so both rules see the same machine load
                for rule, results in runs.items():
                    results.append(_render_path(phrases, voices, RenderSpec(note_length=rule)))
            best = {rule: max(results, key=lambda r: r["per_cpu_s"]) for rule, results in runs.items()}
            whole, cut = best[UNTIL_SILENT], best[RELEASE_1S]
            rows.append(
                {
                    "corpus": corpus,
                    "voice": name,
                    "phrases": len(phrases),
                    "until_silent_per_core": round(whole["per_cpu_s"], 1),
                    "release_1s_per_core": round(cut["per_cpu_s"], 1),
                    "ratio": round(whole["per_cpu_s"] / cut["per_cpu_s"], 2),
                    "engine_s_per_render": {
                        UNTIL_SILENT: round(whole["engine_s_per_render"], 2),
                        RELEASE_1S: round(cut["engine_s_per_render"], 2),
                    },
                    "memo_hit_rate": round(whole["memo_hit_rate"], 4),
                }
            )
    return rows


def run() -> dict:
    """Production render path and partition renders (1, 2 workers) vs the naive loop, same run.

    The machine may be shared: single-process rates are given per CPU second of this
    process (``process_time``), which contention inflates far less than wall-clock time,
    and per wall-clock second. The 2-worker run's CPU time is in its workers: wall only.
    """
    phrases = chorale_phrases()
    real = realworld_phrases()
    voices = choose_voices(VOICES)
    spec = RenderSpec()
    naive, naive_wall, naive_cpu = _naive(phrases[:NAIVE_PHRASES], voices, spec)

    path = _render_path(phrases, voices, spec)
    one = _production(phrases, voices, spec, workers=1)
    cold = _production(phrases, voices, spec, workers=2)  # starts the forkserver: once per process
    two = _production(phrases, voices, spec, workers=2)
    identical = all(path["shas"][k] == s for k, s in naive.items())
    identical = identical and path["shas"] == one["shas"] == two["shas"] == cold["shas"]
    audio_s = spec.total_samples / spec.sample_rate
    return {
        "name": "render",
        **_against_naive(path, naive_wall, naive_cpu, audio_s),
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
        "realworld": _realworld(real, spec),
        "note_length_cost": _note_length_cost({"chorales": phrases, "realworld": real}),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
