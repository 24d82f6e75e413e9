"""Real Airflow runs (dag.test) down the paths a clean run never takes.

Run 1: three Bach chorales among two corrupt files, triggered with ``bpm=90`` and
``sample_rate=44100``: it succeeds, the corrupt files are quarantined with their reasons,
and every render has the length and rate those params ask for. Then one render's object
is deleted from the lake, as a lost object would be, and run 2 (same params) must end
``failed``: validation names the key, ``summary`` fails the run, and the failure callback
records the reason in ``ops.pipeline_runs``.
"""

from __future__ import annotations

import io
import json
import shutil

import psycopg
import pytest
import soundfile as sf

from conftest import REPO, new_database
from midi_files import END_OF_TRACK, smf

PATCHES = "sine"
BPM, RATE = 90, 44100
# (4 beats × 60/90 s + the 0.5 s tail) × 44,100 Hz = (2.6667 + 0.5) × 44,100, worked by hand
EXPECTED_FRAMES = 139_650
CORRUPT = {
    "corrupt/garbage.mid": (b"not midi at all", "not a MIDI file"),
    "corrupt/truncated.mid": (smf(b"\x00\x90\x3c\x40\x60\x80\x3c\x00" + END_OF_TRACK)[:-3], "truncated"),
}
pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def runs(pg_server, chorales, airflow_db, tmp_path_factory):
    """(settings, run 1, run 2, run 1's summary, the key whose object run 2 lacks)."""
    from airflow.dag_processing.dagbag import DagBag

    from dx7lake.config import load_settings
    from dx7lake.lake import open_lake
    from dx7lake.warehouse.postgres import airflow_env

    home = tmp_path_factory.mktemp("e2e-failures")
    landing = home / "landing"
    landing.mkdir()
    for path in sorted(chorales.rglob("*.mid"))[:3]:
        shutil.copy(path, landing / path.name)
    for key, (data, _) in CORRUPT.items():
        (landing / key).parent.mkdir(parents=True, exist_ok=True)
        (landing / key).write_bytes(data)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DX7LAKE_HOME", str(home))
        mp.setenv("DX7LAKE_PG_URL", new_database(pg_server, "e2ef"))
        mp.setenv("DX7LAKE_SOURCE", str(landing))
        settings = load_settings()
        for key, value in airflow_env(settings).items():
            mp.setenv(key, value)
        dag = DagBag(dag_folder=str(REPO / "dags")).dags["dx7lake"]
        conf = {"patches": PATCHES, "bpm": BPM, "sample_rate": RATE, "extract_shards": 1}
        good = dag.test(run_conf=conf)
        summary = json.loads(settings.summary_path.read_text())
        with psycopg.connect(settings.pg_url) as conn:
            lost = conn.execute("select key from gold.renders order by key limit 1").fetchone()[0]
        open_lake(settings.lake_uri).delete(lost)
        bad = dag.test(run_conf=conf)
        yield settings, good, bad, summary, lost


def _rows(settings, sql: str, *args) -> list[tuple]:
    with psycopg.connect(settings.pg_url) as conn:
        return conn.execute(sql, args).fetchall()


def test_a_run_over_good_and_corrupt_files_succeeds_and_quarantines_them(runs):
    from dx7lake.bronze import QUARANTINE_PREFIX
    from dx7lake.lake import open_lake

    settings, good, _, summary, _ = runs
    assert good.state == "success"
    assert (summary["files_seen"], summary["files_extracted"], summary["files_quarantined"]) == (5, 3, 2)
    assert summary["validation"] == "passed" and summary["renders"] > 0
    quarantined = open_lake(settings.lake_uri).read_parquet_prefix(QUARANTINE_PREFIX).to_pylist()
    reasons = {row["source_key"]: row["error"] for row in quarantined}
    assert reasons.keys() == CORRUPT.keys()
    for key, (_, reason) in CORRUPT.items():
        assert reason in reasons[key], (key, reasons[key])
    assert _rows(settings, "select status, reason from ops.pipeline_runs where run_id = %s", good.run_id) == [
        ("success", None)
    ]


def test_trigger_params_set_every_renders_rate_and_length(runs):
    from dx7lake.gold.render import GOLD_RENDERS
    from dx7lake.lake import open_lake

    settings, _, _, summary, lost = runs
    lake = open_lake(settings.lake_uri)
    flacs = [k for k in lake.list(GOLD_RENDERS + "/") if k.endswith(".flac")]
    assert len(flacs) == summary["renders"] - 1  # all but the one deleted before run 2
    for key in flacs:
        audio, rate = sf.read(io.BytesIO(lake.get(key)), dtype="int16", always_2d=True)
        assert (rate, audio.shape) == (RATE, (EXPECTED_FRAMES, 1)), key
    rows = _rows(settings, "select distinct sample_rate, bpm, duration_s from gold.renders")
    assert rows == [(RATE, BPM, EXPECTED_FRAMES / RATE)]
    assert lost not in flacs


def test_a_run_whose_validation_fails_ends_failed_with_keys_and_reason(runs):
    settings, good, bad, _, lost = runs
    assert bad.state == "failed"
    states = {ti.task_id: ti.state for ti in bad.get_task_instances()}
    assert (states["validate"], states["summary"]) == ("success", "failed")
    assert _rows(
        settings, "select check_name, key, reason from ops.validation_failures where run_id = %s", bad.run_id
    ) == [("objects", lost, "object missing from the lake")]
    assert _rows(
        settings, "select check_name from ops.validation_results where run_id = %s and not passed", bad.run_id
    ) == [("objects",)]
    ((status, reason),) = _rows(settings, "select status, reason from ops.pipeline_runs where run_id = %s", bad.run_id)
    # the reason is written by the DAG's on_failure_callback alone (summary only sets the status)
    assert status == "failed" and reason.startswith("summary: validation failed") and lost in reason, reason
    assert json.loads(settings.summary_path.read_text())["validation"] == "failed"
    assert not _rows(settings, "select 1 from ops.validation_failures where run_id = %s", good.run_id)
