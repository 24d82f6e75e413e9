"""The whole DAG (dag.test) on real-world MIDI, checked against an independent mido reading.

The 170 real files of ``../shared/corpus/realworld`` (three Debian packages, see its
SOURCES.md) are messy as Lakh is; this test runs a subset that keeps every oddity they
hold, small enough for a few minutes on a busy 2-core machine. Why each file is in it:

- ``mma__stdlib_gypsyjazz``: no notes at all (extracted empty, not quarantined);
- ``freedoom__freedoom1_D_INTROA``: 89 ticks per beat;
- ``freedoom__freedoom1_D_E1M2``: velocity 1 notes, 96 ticks per beat, drums on channel 10;
- ``freedoom__freedoom1_D_E2M4``: the corpus's only notes at pitch 127;
- ``mma__midi-inc_frankie2``: 265 notes in one 4-beat window (the densest phrase);
- ``mma__solo_solo-sequence``, ``mma__delay_round``: zero-length notes (on and off on one tick);
- ``mma__plectrum_lullaby2``: notes held for 241 beats;
- ``freedoom__freedoom2_D_MESSAG``: 156 tempo changes, 1,024 ticks per beat;
- ``mma__rndset_tempo``: a tempo change every few beats (31);
- ``mma__midi-inc_drum``: a type-0 file (one track, so a track per channel);
- ``freedoom__freedoom1_D_E2M5``: 960 ticks per beat;
- ``openttd-openmsx__coconut_run2``: the third source package (480 ticks per beat).

The corpus has no 15,360 ticks per beat, no 128-note chord and no pitch 0: one file made
with mido adds them (and velocity 1 at pitch 0, a note of 300 beats, 300 tempo changes).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
from collections import Counter
from pathlib import Path

import mido
import psycopg
import pytest
import yaml

from conftest import REPO
from midi_files import mido_notes

REALWORLD = Path(os.environ.get("DX7LAKE_REALWORLD_CORPUS", REPO.parent / "shared" / "corpus" / "realworld"))
SUBSET = [
    "mma__stdlib_gypsyjazz.mid",
    "freedoom__freedoom1_D_INTROA.mid",
    "freedoom__freedoom1_D_E1M2.mid",
    "freedoom__freedoom1_D_E2M4.mid",
    "mma__midi-inc_frankie2.mid",
    "mma__solo_solo-sequence.mid",
    "mma__delay_round.mid",
    "mma__plectrum_lullaby2.mid",
    "freedoom__freedoom2_D_MESSAG.mid",
    "mma__rndset_tempo.mid",
    "mma__midi-inc_drum.mid",
    "freedoom__freedoom1_D_E2M5.mid",
    "openttd-openmsx__coconut_run2.mid",
]
# the render rules' defaults in dbt_project.yml, restated: the test reads the contract, not the SQL
RULES = yaml.safe_load((REPO / "dbt" / "dbt_project.yml").read_text())["vars"]
DENSE = 64  # notes in one window: far beyond anything in the chorales


def oddities_file() -> bytes:
    """15,360 ticks per beat and 300 tempo changes; a 128-note chord (channel 1), then pitch 0
    at velocity 1 (channel 1, next window), and a note held 300 beats (channel 2)."""
    tpb = 15_360
    mid = mido.MidiFile(type=1, ticks_per_beat=tpb)
    tempi = [mido.MetaMessage("set_tempo", tempo=400_000 + 1000 * i, time=tpb // 4) for i in range(300)]
    chord = [mido.Message("note_on", note=n, velocity=1 + n % 127, time=0) for n in range(128)]
    chord += [mido.Message("note_off", note=n, time=tpb if n == 0 else 0) for n in range(128)]
    chord += [mido.Message("note_on", note=0, velocity=1, time=3 * tpb), mido.Message("note_off", note=0, time=tpb)]
    held = [
        mido.Message("note_on", channel=1, note=64, velocity=90, time=4 * tpb + 3),
        mido.Message("note_off", channel=1, note=64, time=300 * tpb),
    ]
    mid.tracks += [mido.MidiTrack(tempi), mido.MidiTrack(chord), mido.MidiTrack(held)]
    buf = io.BytesIO()
    mid.save(file=buf)
    return buf.getvalue()


def reject_reason(content: list[tuple[int, int, int, int]]) -> str | None:
    """The render rules on one content of (offset, duration, velocity, pitch) in 0.01 beats."""
    pitches, durations = [n[3] for n in content], [n[1] / 100 for n in content]
    if len(content) > RULES["max_notes_per_phrase"]:
        return "too_many_notes"
    if min(pitches) < RULES["render_pitch_min"] or max(pitches) > RULES["render_pitch_max"]:
        return "pitch_out_of_range"
    if min(durations) < RULES["min_note_beats"]:
        return "note_too_short"
    if max(durations) > RULES["max_note_beats"]:
        return "note_too_long"
    return None


def mido_phrases(files: list[Path]) -> list[dict]:
    """The silver contract from mido's reading: the pitched notes of one (file, track,
    channel) starting in one 4-beat window, on the 0.01-beat grid, sorted and hashed."""
    window = round(RULES["beats_per_phrase"] * 100)
    grouped: dict[tuple, list] = {}
    for path in files:
        for track, channel, pitch, start, duration, velocity in mido_notes(path.read_bytes()):
            if channel == 9:  # General MIDI drums are not phrases
                continue
            start_cb = round(start * 100)
            bucket = start_cb // window
            note = (start_cb - window * bucket, round(duration * 100), velocity, pitch)
            grouped.setdefault((path.name, track, channel, bucket), []).append(note)
    phrases = []
    for key, notes in grouped.items():
        content = sorted(notes)
        text = ";".join(",".join(map(str, n)) for n in content)
        phrases.append(
            {
                "key": key,
                "hash": hashlib.md5(text.encode()).hexdigest(),
                "n_notes": len(content),
                "zero_length": any(n[1] == 0 for n in content),
                "reason": reject_reason(content),
            }
        )
    return phrases


@pytest.fixture
def landing(tmp_path) -> Path:
    if not REALWORLD.is_dir():
        pytest.skip(f"the real-world corpus is not at {REALWORLD} (set DX7LAKE_REALWORLD_CORPUS)")
    root = tmp_path / "realworld"
    root.mkdir()
    for name in SUBSET:
        shutil.copy(REALWORLD / name, root / name)
    (root / "crafted__oddities.mid").write_bytes(oddities_file())
    return root


@pytest.mark.e2e
def test_dag_runs_on_real_world_midi(settings, landing, airflow_db, monkeypatch):
    from airflow.dag_processing.dagbag import DagBag

    from dx7lake.warehouse.postgres import airflow_env

    monkeypatch.setenv("DX7LAKE_SOURCE", str(landing))
    monkeypatch.setenv("DX7LAKE_LAKE", settings.lake_uri)
    for key, value in airflow_env(settings).items():
        monkeypatch.setenv(key, value)
    dag = DagBag(dag_folder=str(REPO / "dags")).dags["dx7lake"]
    run = dag.test(run_conf={"patches": "epiano", "source": str(landing)})
    summary = json.loads(settings.summary_path.read_text())
    assert summary["validation_failures"] == []
    assert run.state == "success"
    assert summary["validation"] == "passed"

    files = sorted(landing.glob("*.mid"))
    expected = mido_phrases(files)
    kept = [p for p in expected if p["reason"] is None]
    rejected = [p for p in expected if p["reason"] is not None]
    assert (summary["files_seen"], summary["files_extracted"]) == (len(files), len(files))
    assert (summary["files_empty"], summary["files_quarantined"]) == (1, 0)
    assert summary["notes"] == sum(len(mido_notes(f.read_bytes())) for f in files)
    assert summary["phrases"] == len(kept)
    assert summary["unique_phrases"] == len({p["hash"] for p in kept})
    assert summary["rejected_by_reason"] == dict(sorted(Counter(p["reason"] for p in rejected).items()))
    assert summary["renders"] == summary["unique_phrases"]

    with psycopg.connect(settings.pg_url) as conn:
        contents = {h for (h,) in conn.execute("select content_hash from silver.phrase_contents")}
        rendered = {h for (h,) in conn.execute("select content_hash from gold.renders")}
        set_aside = Counter(conn.execute("select content_hash, reason from silver.rejected_phrases").fetchall())
        card = _card_sql("Rejected phrases by reason")
        by_card = {reason: (n, contents) for reason, n, contents in conn.execute(card)}
    assert contents == rendered == {p["hash"] for p in kept}
    assert set_aside == Counter((p["hash"], p["reason"]) for p in rejected)
    assert {reason: n for reason, (n, _) in by_card.items()} == summary["rejected_by_reason"]
    assert {reason: c for reason, (_, c) in by_card.items()} == {
        reason: len({p["hash"] for p in rejected if p["reason"] == reason}) for reason in by_card
    }
    # the oddities are all there: each rendered, or set aside with its reason
    zero_length = [p for p in expected if p["zero_length"]]
    dense = [p for p in expected if p["n_notes"] >= DENSE]
    assert zero_length and dense and any(p["reason"] is None for p in dense)
    for p in zero_length + dense:
        assert p["hash"] in rendered or (p["hash"], p["reason"]) in set_aside, p
    assert {p["reason"] for p in zero_length} <= {"note_too_short", "too_many_notes"}
    assert any(p["n_notes"] == 128 and p["reason"] is None for p in dense)  # the crafted chord renders


def _card_sql(name: str) -> str:
    from dx7lake.metabase.spec import load_spec

    return next(c.sql for c in load_spec().cards if c.name == name)
