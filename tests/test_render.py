"""Gold rendering: exact length, determinism, memoisation, FLAC, manifests."""

from __future__ import annotations

import io

import numpy as np
import soundfile as sf

from dx7lake.lake import LocalLake
from dx7lake.patches import choose_voices
from dx7lake.render import NoteRenderer, RenderSpec, mix_phrase, render_partition, render_phrase

PHRASE = [(0.0, 1.0, 100, 60), (1.0, 1.0, 90, 64), (2.0, 2.0, 80, 67), (2.0, 2.0, 80, 72)]
SPEC = RenderSpec()


def test_phrase_has_exact_length_and_decodes():
    (voice,) = choose_voices("epiano")
    flac, row = render_phrase(NoteRenderer(SPEC), voice, "ab" * 16, PHRASE)
    audio, sr = sf.read(io.BytesIO(flac), dtype="int16")
    assert sr == 22050 and audio.ndim == 1
    assert len(audio) == SPEC.total_samples == round(2.5 * 22050)
    assert row["duration_s"] == 2.5 and 0 < row["peak"] < 0.9 and row["rms"] > 0
    assert row["key"] == f"gold/renders/{voice.patch_id}/ab/{'ab' * 16}.flac"
    assert len(row["patch_vced"]) == 156


def test_rendering_is_deterministic_and_memo_equals_naive():
    (voice,) = choose_voices("bell")
    memo = NoteRenderer(SPEC)
    first, _ = mix_phrase(memo, voice, PHRASE)
    again, _ = mix_phrase(memo, voice, PHRASE)
    naive, _ = mix_phrase(NoteRenderer(SPEC, memoise=False), voice, PHRASE)
    assert memo.hits == len(PHRASE)
    assert np.array_equal(first, again) and np.array_equal(first, naive)


def test_note_onset_is_sample_accurate():
    (voice,) = choose_voices("sine")
    audio, _ = mix_phrase(NoteRenderer(SPEC), voice, [(1.0, 0.5, 127, 69)])
    onset = round(1.0 * 0.5 * 22050)
    assert np.all(audio[:onset] == 0)
    assert np.any(audio[onset : onset + 64] != 0)


def test_partition_rerun_writes_nothing(tmp_path):
    lake = LocalLake(tmp_path)
    voices = choose_voices("epiano,sine")
    contents = [("aa" * 16, PHRASE), ("bb" * 16, PHRASE[:2])]
    first = render_partition(lake, 3, contents, voices, SPEC)
    assert first["rendered"] == 4
    stamp = {k: (tmp_path / k).stat().st_mtime_ns for k in lake.list()}
    second = render_partition(lake, 3, contents, voices, SPEC)
    assert second["rendered"] == 0 and second["reused"] == 4
    assert {k: (tmp_path / k).stat().st_mtime_ns for k in lake.list()} == stamp
    manifest = lake.read_parquet(f"gold/manifests/{voices[0].patch_id}/p=0003.parquet")
    assert sorted(manifest.column("content_hash").to_pylist()) == ["aa" * 16, "bb" * 16]
