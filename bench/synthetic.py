"""Synthetic bronze notes at any scale, for the load/dbt benchmark and the silver tests (and
gold manifest rows, for the benchmark and tests of the gold source's dbt tests).

Songs are built from a small library of 4-beat motifs, so identical phrase contents recur
across songs and across splits the way real corpora repeat riffs and cadences: that is
what the content hash, the dedup and the split-leakage rule have to handle at scale.
"""

from __future__ import annotations

import hashlib

import numpy as np
import psycopg
import pyarrow as pa
import pyarrow.compute as pc

from dx7lake.bronze import BRONZE_SCHEMA, set_type_of

_DURATIONS = np.array([0.25, 0.5, 1.0, 2.0])


def _hex(text: str) -> str:
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


def _motifs(rng: np.random.Generator, count: int) -> list[np.ndarray]:
    """Rows of (offset, duration, velocity, pitch) inside one 4-beat window."""
    motifs = []
    for _ in range(count):
        n = int(rng.integers(2, 9))
        offsets = np.sort(rng.integers(0, 16, n)) * 0.25
        motifs.append(
            np.column_stack(
                [offsets, rng.choice(_DURATIONS, n), rng.integers(40, 110, n), rng.integers(36, 90, n)]
            ).astype(np.float64)
        )
    return motifs


def synthetic_notes(
    songs: int, tracks: int = 3, phrases_per_track: int = 32, motifs: int = 400, seed: int = 0
) -> pa.Table:
    """Bronze rows of ``songs`` synthetic songs (the last track of each is drums)."""
    rng = np.random.default_rng(seed)
    library = _motifs(rng, motifs)
    lengths = np.array([len(m) for m in library])
    flat = np.concatenate(library)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])

    picks = rng.integers(0, motifs, songs * tracks * phrases_per_track)
    counts = lengths[picks]
    first = np.repeat(np.cumsum(counts) - counts, counts)
    rows = flat[np.repeat(starts[picks], counts) + np.arange(counts.sum()) - first]
    phrase = np.repeat(np.arange(len(picks)), counts)
    bucket = phrase % phrases_per_track
    track = (phrase // phrases_per_track) % tracks
    song = phrase // (phrases_per_track * tracks)

    midi_ids = [hashlib.md5(f"synthetic:{seed}:{s}".encode()).hexdigest() for s in range(songs)]
    track_ids = [_hex(f"{m}:{t}") for m in midi_ids for t in range(tracks)]
    track_of_row = pa.array(track_ids).take(song * tracks + track)
    per_song = pa.array(song)
    start = bucket * 4.0 + rows[:, 0]
    n = len(start)
    is_drum = track == tracks - 1
    return pa.table(
        {
            "midi_id": pa.array(midi_ids).take(per_song),
            "track_id": track_of_row,
            "message_id": pc.binary_join_element_wise(track_of_row, pa.array(np.char.mod("%08x", np.arange(n))), ""),
            "start_time": start,
            "duration": rows[:, 1],
            "velocity": rows[:, 2].astype(np.int64),
            "note": rows[:, 3].astype(np.int64),
            "set_type": pa.array([set_type_of(m) for m in midi_ids]).take(per_song),
            "p": pa.array([m[0] for m in midi_ids]).take(per_song),
            "channel": np.where(is_drum, 9, track).astype(np.int16),
            "program": np.zeros(n, np.int16),
            "is_drum": is_drum,
            "track_index": track.astype(np.int32),
            "start_seconds": start * 0.5,
            "duration_seconds": rows[:, 1] * 0.5,
            "source_key": pa.array([f"synthetic/{s}.mid" for s in range(songs)]).take(per_song),
        },
        schema=BRONZE_SCHEMA,
    )


def partitions(table: pa.Table) -> dict[str, pa.Table]:
    """The table split by bronze partition ``p``."""
    return {p: table.filter(pc.equal(table.column("p"), p)) for p in sorted(set(table.column("p").to_pylist()))}


def synthetic_manifest(start: int, n: int, profile_id: str, patch_id: str, key_of=None) -> pa.Table:
    """``n`` gold manifest rows of plausible renders (levels, rate and rule in range), contents
    ``start`` .. ``start + n - 1``: what load_manifest_parts loads, without rendering.
    ``key_of(content_hash)`` gives a row's FLAC key (default: its own)."""
    hashes = [_hex(str(i)) for i in range(start, start + n)]
    return pa.table(
        {
            "content_hash": hashes,
            "patch_id": [patch_id] * n,
            "key": [key_of(h) if key_of else f"gold/renders/{profile_id}/{patch_id}/{h}.flac" for h in hashes],
            "sha256": [hashlib.sha256(h.encode()).hexdigest() for h in hashes],
            "bytes": pa.array([1000] * n, pa.int64()),
            "sample_rate": pa.array([44100] * n, pa.int32()),
            "duration_s": [2.0] * n,
            "peak": [0.5] * n,
            "rms": [0.1] * n,
            "bpm": [120.0] * n,
            "notes": [[[0.0, 1.0, 60, 100]]] * n,
            "note_length": ["until-silent"] * n,
            "profile": ['{"sample_rate": 44100}'] * n,
        }
    )


def create_silver_contents(conn: psycopg.Connection) -> None:
    """A stand-in for silver.phrase_contents with the three columns a render plan and the
    coverage check read (dbt builds the rest): the plan's benchmark and tests fill it."""
    conn.execute("create schema silver")
    conn.execute(
        "create table silver.phrase_contents"
        " (content_hash text primary key, p integer not null, built_at timestamptz not null)"
    )
    conn.execute("create index on silver.phrase_contents (built_at)")
