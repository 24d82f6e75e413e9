"""Audio features of renders against independent readings: the BS.1770 reference level,
pyloudnorm, librosa, hand-worked values on synthetic signals, and the engine's own pitch."""

from __future__ import annotations

import math

import librosa
import numpy as np
import psycopg
import pyarrow as pa
import pyloudnorm
import pytest

from dx7lake.gold import features as F
from dx7lake.gold.patches import choose_voices
from dx7lake.gold.render import (
    MANIFEST_SCHEMA,
    PhraseRenderer,
    RenderSpec,
    backfill_features,
    manifest_parts,
    read_manifest,
    render_partition,
    rerender_row,
)
from dx7lake.lake import LocalLake
from dx7lake.quality import validate
from dx7lake.warehouse import load, schema

SPEC = RenderSpec()
PID = SPEC.profile_id
SR = SPEC.sample_rate
PHRASE = [(0.0, 0.5, 100, 60), (1.0, 0.5, 90, 64), (2.0, 0.5, 80, 67), (3.0, 0.5, 80, 72)]


def voice(name: str):
    (v,) = choose_voices(name)
    return v


def pcm_of(x: np.ndarray) -> np.ndarray:
    return np.round(x * 32768).astype(np.int32)


def sine(hz: float, amplitude: float, seconds: float, sr: int = SR, phase: float = 0.0) -> np.ndarray:
    return amplitude * np.sin(2 * np.pi * hz * np.arange(round(seconds * sr)) / sr + phase)


@pytest.mark.parametrize("sr", [22050, 48000])
def test_lufs_of_a_calibrated_sine_is_the_bs1770_reference(sr):
    # BS.1770-4: a 0 dBFS 997 Hz sine in one channel reads -3.01 LKFS, so -20 dBFS reads -23.01
    lufs = F.features(pcm_of(sine(997.0, 0.1, 3.0, sr)), sr).lufs
    assert lufs == pytest.approx(-23.01, abs=0.5)
    assert lufs == pytest.approx(-23.01, abs=0.1)


def test_lufs_of_renders_agrees_with_pyloudnorm():
    renderer = PhraseRenderer(SPEC)
    meter = pyloudnorm.Meter(SR)
    for name in ("epiano", "bell", "organ"):
        out = renderer.master.master(renderer.engine.phrase(voice(name), PHRASE))
        ours = F.features(out.pcm, SR)
        assert ours.lufs == pytest.approx(meter.integrated_loudness(out.pcm / 32768.0), abs=1e-6)
        assert F.features(out.pcm, SR, sample_peak=out.peak) == ours  # the master's peak is the samples' peak


def test_silence_has_no_loudness_and_a_quiet_tone_is_gated_not_silent():
    assert F.features(np.zeros(SPEC.total_samples, dtype=np.int32), SR).lufs is None
    assert F.features(pcm_of(sine(997.0, 10 ** (-60 / 20), 2.5)), SR).lufs == pytest.approx(-63.01, abs=0.1)


def test_true_peak_finds_the_peak_between_samples():
    # a quarter-rate sine at 45°: every sample sits at 0.707 of the amplitude, the peaks fall between them
    x = sine(SR / 4, 0.5, 1.0, phase=math.pi / 4)
    ramp = np.hanning(400)[:200]  # faded in and out: an abrupt edge is not band-limited, and rings
    x[:200] *= ramp
    x[-200:] *= ramp[::-1]
    got = F.features(pcm_of(x), SR)
    assert 20 * math.log10(np.abs(x).max()) == pytest.approx(-9.03, abs=0.01)
    assert got.true_peak_dbtp == pytest.approx(20 * math.log10(0.5), abs=0.1)


def test_true_peak_pruning_gives_the_full_interpolations_value():
    renderer = PhraseRenderer(SPEC)
    phases = F.true_peak_filter()
    for name in ("epiano", "bell"):
        x = renderer.master.master(renderer.engine.phrase(voice(name), PHRASE)).pcm / 32768.0
        full = max(np.abs(np.convolve(x, p[::-1], mode="full")).max() for p in phases)
        assert F.true_peak(x, float(np.abs(x).max())) == pytest.approx(full, rel=1e-12)


@pytest.mark.parametrize("n", [1, 5, 11, 12, 30, 48, 49, 97, 1000, SPEC.total_samples])
def test_true_peak_of_loud_noise_is_that_of_every_sample_oversampled(n):
    # full-scale noise defeats the bounds (every block is near the peak) and is loud up to both
    # ends: the brute-force reading interpolates every output i in [0, n) from x[i - 5 : i + 7]
    pcm = np.random.default_rng(n).integers(-32768, 32768, n).astype(np.int32)
    pcm[[0, -1]] = 32767, -32768
    x = pcm / 32768.0
    phases = F.true_peak_filter()
    oversampled = [np.convolve(x, phase[::-1])[6 : n + 6] for phase in phases]
    expected = max(float(np.abs(np.concatenate(oversampled)).max()), float(np.abs(x).max()))
    assert F.true_peak(pcm, float(np.abs(x).max()), F.SCALE) == pytest.approx(expected, rel=1e-12)
    assert F.true_peak(pcm.astype(np.int16), float(np.abs(x).max()), F.SCALE) == pytest.approx(expected, rel=1e-12)
    assert F.features(pcm, SR).true_peak_dbtp == pytest.approx(20 * math.log10(expected), abs=1e-9)


def test_zero_crossings_and_centroid_of_tones_are_hand_worked():
    # tones on FFT bins, unquantised: each Hann frame's spectrum is exactly three bins, 1/2, 1, 1/2
    bin_hz = SR / F.N_FFT
    hz, other = 43 * bin_hz, 150 * bin_hz
    one = F.features(sine(hz, 0.5, 2.5) * 32768, SR)
    assert one.zcr == pytest.approx(2 * hz / SR, rel=0.01)
    assert one.spectral_centroid_hz == pytest.approx(hz, abs=1e-6)
    assert one.spectral_bandwidth_hz == pytest.approx(bin_hz / math.sqrt(2), rel=1e-6)
    two = F.features((sine(hz, 0.3, 2.5) + sine(other, 0.3, 2.5)) * 32768, SR)
    assert two.spectral_centroid_hz == pytest.approx((hz + other) / 2, abs=1e-6)
    assert two.spectral_bandwidth_hz == pytest.approx(math.hypot((other - hz) / 2, bin_hz / math.sqrt(2)), rel=1e-6)


def test_mfcc_and_centroid_agree_with_librosa():
    renderer = PhraseRenderer(SPEC)
    for name in ("epiano", "bell"):
        x = renderer.master.master(renderer.engine.phrase(voice(name), PHRASE)).pcm / 32768.0
        centroid, bandwidth, mfcc, _ = F.spectral(x, SR)
        power = np.abs(librosa.stft(x, n_fft=F.N_FFT, hop_length=F.N_FFT, center=False)) ** 2
        mel = librosa.feature.melspectrogram(S=power, sr=SR, n_fft=F.N_FFT, n_mels=F.N_MELS)
        expected = librosa.feature.mfcc(S=librosa.power_to_db(mel), n_mfcc=F.N_MFCC).mean(axis=1)
        np.testing.assert_allclose(mfcc, expected, atol=1e-4)
        summed = np.sqrt(power).sum(axis=1, keepdims=True)
        assert centroid == pytest.approx(librosa.feature.spectral_centroid(S=summed, sr=SR, n_fft=F.N_FFT)[0, 0])
        assert bandwidth == pytest.approx(
            librosa.feature.spectral_bandwidth(S=summed, sr=SR, n_fft=F.N_FFT, centroid=np.array([[centroid]]))[0, 0]
        )


def test_onsets_count_the_phrases_separate_note_starts():
    renderer = PhraseRenderer(SPEC)
    for name in ("epiano", "organ"):
        assert renderer.render(voice(name), "ab" * 16, PHRASE)[1]["onset_count"] == 4
    assert renderer.render(voice("epiano"), "ab" * 16, PHRASE[:1])[1]["onset_count"] == 1


@pytest.mark.parametrize("name", ["epiano", "sine"])
def test_f0_of_a_single_note_is_its_pitch_and_transposing_an_octave_doubles_it(name):
    renderer = PhraseRenderer(SPEC)
    rows = {p: renderer.render(voice(name), "cd" * 16, [(0.0, 2.0, 100, p)])[1] for p in (57, 69)}
    for pitch, row in rows.items():
        assert row["f0_hz"] == pytest.approx(440.0 * 2 ** ((pitch - 69) / 12), rel=2**(5 / 1200) - 1)  # fmt: skip
        assert abs(row["f0_error_cents"]) < 5
    assert 1200 * math.log2(rows[69]["f0_hz"] / rows[57]["f0_hz"]) == pytest.approx(1200, abs=3)
    assert renderer.render(voice(name), "ef" * 16, PHRASE)[1]["f0_hz"] is None  # not a single note


def test_f0_error_counts_the_voices_own_octave():
    # the organ voice's carriers run at ratio 0.5: it sounds an octave below the key it is played on
    row = PhraseRenderer(SPEC).render(voice("organ"), "12" * 16, [(0.0, 2.0, 100, 69)])[1]
    assert row["f0_error_cents"] == pytest.approx(-1200, abs=5)


def test_features_of_a_render_equal_those_of_its_rerender_from_the_manifest(tmp_path):
    lake = LocalLake(str(tmp_path))
    contents = [("ab" * 16, PHRASE), ("cd" * 16, [(0.5, 1.0, 110, 62)])]
    render_partition(lake, 0, iter(contents), [voice("bell")], SPEC, workers=1)
    rows = read_manifest(lake, PID, voice("bell").patch_id, 0).to_pylist()
    assert {r["content_hash"] for r in rows} == {h for h, _ in contents}
    for row in rows:
        _, again = rerender_row(row)
        assert {c: again[c] for c in F.FEATURE_COLUMNS} == {c: row[c] for c in F.FEATURE_COLUMNS}
        assert row["lufs"] is not None and len(row["mfcc"]) == F.N_MFCC


def test_backfill_gives_an_old_partition_the_features_a_render_records(tmp_path):
    lake = LocalLake(str(tmp_path))
    bell = voice("bell")
    render_partition(lake, 0, iter([("ab" * 16, PHRASE), ("cd" * 16, PHRASE[:1])]), [bell], SPEC, workers=1)
    (key,) = manifest_parts(lake, PID, bell.patch_id, 0)
    rendered = lake.read_parquet(key)
    lake.delete(key)
    lake.put_parquet(key, rendered.drop_columns(list(F.FEATURE_COLUMNS)))  # as written before features
    assert backfill_features(lake, PID, bell.patch_id, 0)["backfilled"] == 2
    assert backfill_features(lake, PID, bell.patch_id, 0)["backfilled"] == 0  # once
    after = read_manifest(lake, PID, bell.patch_id, 0).sort_by("content_hash")
    assert after.select(F.FEATURE_COLUMNS).equals(rendered.sort_by("content_hash").select(F.FEATURE_COLUMNS))
    assert after.column("sha256").equals(rendered.sort_by("content_hash").column("sha256"))


def test_warehouse_columns_are_the_features():
    assert load.FEATURE_COLUMNS == F.FEATURE_COLUMNS
    assert set(F.FEATURE_COLUMNS) <= set(MANIFEST_SCHEMA.names)


def _part(rows: list[dict], with_features: bool) -> pa.Table:
    table = pa.Table.from_pylist(rows, schema=MANIFEST_SCHEMA)
    return table if with_features else table.drop_columns(list(F.FEATURE_COLUMNS))


def test_old_parts_load_with_null_features_and_validation_flags_quiet_renders(pg_url):
    renderer = PhraseRenderer(SPEC)
    bell = voice("bell")
    rows = [renderer.render(bell, f"{i:02x}" * 16, [(0.0, 1.0, 100, 60 + i)])[1] for i in range(6)]
    rows[5] = {**rows[5], "lufs": rows[5]["lufs"] - 40}  # far below the voice's median
    rows[4] = {**rows[4], "lufs": None}  # under the gate
    settings_lu = 30.0
    old = [renderer.render(bell, "ee" * 16, PHRASE)[1]]
    with psycopg.connect(pg_url) as conn:
        schema.ensure_schema(conn)
        load.load_manifest_parts(conn, [("old", PID, bell.patch_id, 0, _part(old, False))], "r1")
        load.load_manifest_parts(conn, [("new", PID, bell.patch_id, 0, _part(rows, True))], "r2")
        got = dict(conn.execute("select content_hash, lufs from gold.renders").fetchall())
        assert got["ee" * 16] is None and got["00" * 16] == pytest.approx(rows[0]["lufs"])
        mfcc = conn.execute("select mfcc from gold.renders where content_hash = %s", ("01" * 16,)).fetchone()[0]
        assert mfcc == pytest.approx(rows[1]["mfcc"])
        check = validate.Check("loudness")
        validate.forget_checked(conn)
        validate.remember_checked(conn, [r["key"] for r in [*rows, *old]])
        validate._check_loudness(conn, [bell.patch_id], settings_lu, check)
    assert check.checked == len(rows)  # the old render has no features: not judged
    assert sorted(f["key"] for f in check.flags) == sorted([rows[4]["key"], rows[5]["key"]])
    assert not check.failures  # flagged for review, not failing the run (real files hold quiet phrases)


def test_backfill_stage_loads_the_features_into_the_warehouse(settings):
    from dx7lake import stages
    from dx7lake.lake import lake_of

    lake = lake_of(settings)
    bell = voice("bell")
    render_partition(lake, 3, iter([("ab" * 16, PHRASE)]), [bell], SPEC, workers=1)
    (key,) = manifest_parts(lake, PID, bell.patch_id, 3)
    rendered = lake.read_parquet(key)
    lake.delete(key)
    lake.put_parquet(key, rendered.drop_columns(list(F.FEATURE_COLUMNS)))
    assert stages.load_renders(settings)["rows_loaded"] == 1
    with psycopg.connect(settings.pg_url) as conn:
        assert conn.execute("select lufs from gold.renders").fetchone()[0] is None
    assert stages.backfill_features(settings, "bell")["backfilled"] == 1
    with psycopg.connect(settings.pg_url) as conn:
        assert conn.execute("select lufs from gold.renders").fetchone()[0] == pytest.approx(rendered["lufs"][0].as_py())
