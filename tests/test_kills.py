"""Real process kills: each stage runs in a child process that is SIGKILLed at a random
point (seeded), three times over the same home; after each kill nothing half-done is
visible, and a final rerun completes with exactly what an uninterrupted run produces.

What is visible is read through the public readers (bronze partitions, the quarantine,
raw.detailed_notes, the gold manifests and their objects, gold.renders), never through
file names, so a change of layout keeps these tests meaningful.
"""

from __future__ import annotations

import dataclasses
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest

from conftest import new_database
from dx7lake.bronze import QUARANTINE_PREFIX, bronze_partitions, read_bronze_partition
from dx7lake.gold.render import manifest_parts, part_partition, read_manifest
from dx7lake.lake import open_lake
from midi_files import midi_bytes

SEED = 18
ROUNDS = 3
RENDER_PARTS, PER_PART = 4, 30
TESTS = str(Path(__file__).parent)
PRELUDE = f"""
import sys
sys.path.insert(0, {TESTS!r})
from dx7lake import stages
from dx7lake.config import load_settings
settings = load_settings()
"""
STAGES = {
    "extract": "print('ready', flush=True)\nstages.extract(settings)",
    "load": "print('ready', flush=True)\nfor p in stages.bronze_partitions(settings):\n"
    "    stages.load_partition(settings, p, 'kill')",
    "render": f"""
from dx7lake.lake import open_lake
from dx7lake.gold.patches import choose_voices
from dx7lake.gold.render import RenderSpec, render_partition
from test_render_partition import contents
lake, voices = open_lake(settings.lake_uri), choose_voices("epiano")
print('ready', flush=True)
for p in range({RENDER_PARTS}):
    render_partition(lake, p, iter(contents({PER_PART}, p * {PER_PART})), voices, RenderSpec(), workers=1)
""",
    "load_renders": "print('ready', flush=True)\nstages.load_renders(settings)",
}


def _env(settings) -> dict[str, str]:
    return os.environ | {
        "DX7LAKE_HOME": str(settings.home),
        "DX7LAKE_LAKE": settings.lake_uri,
        "DX7LAKE_PG_URL": settings.pg_url,
        "DX7LAKE_SOURCE": settings.source,
    }


def _start(stage: str, settings) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-c", PRELUDE + STAGES[stage]],
        env=_env(settings),
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group: a kill reaches any pool workers too
    )
    assert proc.stdout.readline().strip() == "ready", "the child died before its stage began"
    return proc


def _finish(proc: subprocess.Popen) -> float:
    started = time.monotonic()
    proc.stdout.read()
    assert proc.wait() == 0
    return time.monotonic() - started


def run_to_end(stage: str, settings) -> float:
    """Run ``stage`` uninterrupted; its seconds from the start of the stage to its exit."""
    return _finish(_start(stage, settings))


def kill_then_rerun(stage: str, settings, seconds: float, visible: Callable[[], object], consistent) -> int:
    """Kill ``stage`` on ``settings`` ROUNDS times at seeded random points of a run that took
    ``seconds``, checking ``consistent(visible())`` after each, and that nothing once visible
    went away, then rerun it to the end. Returns how many rounds were killed mid-stage.

    The first kill lands in the first half of the reference run, so it finds the stage running
    unless this run is twice as fast (a first kill drawn at 93% missed a run 7% faster than
    its reference, and the rounds after it found nothing left to do); later ones anywhere."""
    rng = random.Random(f"{SEED}-{stage}-{settings.lake_uri[:2]}")
    killed, seen = 0, set()
    for round_ in range(ROUNDS):
        proc = _start(stage, settings)
        time.sleep(rng.uniform(0.05, 0.5 if round_ == 0 else 0.95) * seconds)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            killed += 1
        proc.wait()
        proc.stdout.close()
        state = visible()
        consistent(state)
        keys = set(state[0] if isinstance(state, tuple) else state)
        assert seen <= keys, f"{sorted(seen - keys)[:3]} visible before the kill, gone after it"
        seen = keys
    run_to_end(stage, settings)
    return killed


# --- what each stage leaves visible -----------------------------------------------------


def bronze_state(settings) -> tuple[Counter, set, list]:
    """(rows per midi_id, quarantined (source, reason) pairs, every row sorted) of the lake."""
    lake = open_lake(settings.lake_uri)
    tables = [read_bronze_partition(lake, p) for p in bronze_partitions(lake)]
    rows = sorted((r for t in tables if t is not None for r in t.to_pylist()), key=lambda r: r["message_id"])
    quarantine = lake.read_parquet_prefix(QUARANTINE_PREFIX)
    reasons = set() if quarantine is None else {(q["source_key"], q["error"]) for q in quarantine.to_pylist()}
    return Counter(r["midi_id"] for r in rows), reasons, rows


def raw_state(settings) -> dict[str, Counter]:
    """Rows of raw.detailed_notes by file (midi_id): each row's message id and how often it is there."""
    with psycopg.connect(settings.pg_url) as conn:
        if not conn.execute("select to_regclass('raw.detailed_notes')").fetchone()[0]:
            return {}
        rows = conn.execute("select midi_id, message_id from raw.detailed_notes").fetchall()
    by_file: dict[str, Counter] = {}
    for midi_id, message_id in rows:
        by_file.setdefault(midi_id, Counter())[message_id] += 1
    return by_file


def gold_state(settings) -> dict[tuple[str, str, int], set]:
    """Every manifest row's (key, sha256) per (profile, patch, render partition), the union of its
    parts, after checking each row's object exists with that sha256 (validate's own check)."""
    from dx7lake.quality.validate import Validation, check_objects

    lake = open_lake(settings.lake_uri)
    partitions = {part_partition(k) for k in manifest_parts(lake)}
    manifests = {where: read_manifest(lake, *where).to_pylist() for where in partitions}
    result = Validation()
    check_objects(lake, [r for rows in manifests.values() for r in rows], result)
    assert result.passed, result.failures[:3]
    return {where: {(r["key"], r["sha256"]) for r in rows} for where, rows in manifests.items()}


def loaded_renders(settings) -> dict[tuple[str, int], set]:
    with psycopg.connect(settings.pg_url) as conn:
        if not conn.execute("select to_regclass('gold.renders')").fetchone()[0]:
            return {}
        rows = conn.execute("select patch_id, render_p, key, sha256 from gold.renders").fetchall()
    out: dict[tuple[str, int], set] = {}
    for patch_id, render_p, key, sha in rows:
        out.setdefault((patch_id, render_p), set()).add((key, sha))
    return out


# --- fixtures -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def landing(tmp_path_factory) -> Path:
    """300 small seeded MIDI files and three that cannot be read (they go to the quarantine)."""
    rng = random.Random(SEED)
    root = tmp_path_factory.mktemp("kill-landing")
    for i in range(300):
        events = []
        for _ in range(rng.randint(4, 24)):
            pitch, ticks = rng.randint(36, 96), rng.choice((120, 240, 480))
            events += [(0, "note_on", {"note": pitch, "velocity": rng.randint(40, 127), "channel": i % 4})]
            events += [(ticks, "note_off", {"note": pitch, "velocity": 0, "channel": i % 4})]
        (root / f"song{i:04d}.mid").write_bytes(midi_bytes(events))
    for i in range(3):
        (root / f"broken{i}.mid").write_bytes(b"MThd" + bytes([i]) * 9)
    return root


@pytest.fixture
def homes(tmp_path, pg_server, landing):
    """(home killed, reference home): local lakes, fresh databases, the same landing."""
    from dx7lake.config import Settings

    def home(name: str) -> Settings:
        root = tmp_path / name
        return Settings(root, str(root / "lake"), str(landing), new_database(pg_server, f"k{name[0]}"))

    return home("killed"), home("reference")


# --- the kills ----------------------------------------------------------------------------


def test_killed_extract_and_load_leave_nothing_half_visible_and_reruns_match(homes):
    killed_home, reference = homes
    seconds = run_to_end("extract", reference)
    per_file, reasons, rows = expected = bronze_state(reference)
    assert len(reasons) == 3 and len(per_file) == 300

    def extract_consistent(state) -> None:
        visible_files, visible_reasons, visible_rows = state
        assert all(n == per_file[m] for m, n in visible_files.items()), "a file's rows are visible in part"
        assert visible_reasons <= reasons and len(visible_rows) == sum(visible_files.values())

    killed = kill_then_rerun("extract", killed_home, seconds, lambda: bronze_state(killed_home), extract_consistent)
    assert bronze_state(killed_home) == expected
    assert killed >= 1, "no round was killed mid-extract"

    seconds = run_to_end("load", reference)
    loaded = raw_state(reference)
    assert sum(map(len, loaded.values())) == len(rows)

    def load_consistent(state) -> None:
        for midi_id, ids in state.items():  # a file is whole or absent (bronze parts load whole)
            assert ids == loaded[midi_id], f"raw rows of {midi_id} are half-loaded or hold duplicates"

    killed = kill_then_rerun("load", killed_home, seconds, lambda: raw_state(killed_home), load_consistent)
    assert raw_state(killed_home) == loaded
    assert killed >= 1, "no round was killed mid-load"


@pytest.mark.parametrize("backend", ["local", "s3"])
def test_killed_render_leaves_no_manifest_part_without_its_objects_and_reruns_match(homes, backend, request):
    killed_home, reference = homes
    if backend == "s3":
        request.getfixturevalue("s3_env")
        lake_uri = request.getfixturevalue("s3_lake_uri")
        reference_uri = lake_uri.replace("/lake", "/reference")
        killed_home = dataclasses.replace(killed_home, lake_uri=lake_uri)
        reference = dataclasses.replace(reference, lake_uri=reference_uri)
    seconds = run_to_end("render", reference)
    expected = gold_state(reference)
    assert len(expected) == RENDER_PARTS and sum(map(len, expected.values())) == RENDER_PARTS * PER_PART

    def consistent(state) -> None:  # each visible manifest is whole and its objects all there
        for key, rows in state.items():
            assert rows == expected[key], f"{key} is visible in part"

    killed = kill_then_rerun("render", killed_home, seconds, lambda: gold_state(killed_home), consistent)
    assert gold_state(killed_home) == expected
    assert len(manifest_parts(open_lake(killed_home.lake_uri))) == len(expected)  # no part twice, none partial
    assert killed >= 1, "no round was killed mid-render"


def test_killed_load_renders_leaves_whole_manifests_and_reruns_match(homes):
    killed_home, reference = homes
    run_to_end("render", killed_home)  # one rendered lake; the two homes differ in their database
    reference = dataclasses.replace(reference, lake_uri=killed_home.lake_uri)
    seconds = run_to_end("load_renders", reference)
    expected = loaded_renders(reference)
    assert len(expected) == RENDER_PARTS and sum(map(len, expected.values())) == RENDER_PARTS * PER_PART

    def consistent(state) -> None:
        for group, rows in state.items():
            assert rows == expected[group], f"gold.renders {group} is loaded in part"

    killed = kill_then_rerun("load_renders", killed_home, seconds, lambda: loaded_renders(killed_home), consistent)
    assert loaded_renders(killed_home) == expected
    with psycopg.connect(killed_home.pg_url) as conn:  # the ledger holds every part, and only those
        ledger = {k for (k,) in conn.execute("select key from gold.manifest_parts")}
    assert ledger == set(manifest_parts(open_lake(killed_home.lake_uri)))
    assert killed >= 1, "no round was killed mid-load_renders"
