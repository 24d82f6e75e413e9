"""What a CLI command leaves behind: nothing running that it did not announce.

Each command runs as its own process, as a user runs it; whether the embedded Postgres
still runs is read from the operating system (the postmaster's pid), not from our code.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

DX7LAKE = str(Path(sys.executable).with_name("dx7lake"))


def postmaster_alive(home: Path) -> bool:
    pidfile = home / "pg" / "postmaster.pid"
    if not pidfile.exists():
        return False
    try:
        os.kill(int(pidfile.read_text().splitlines()[0]), 0)
    except ProcessLookupError:
        return False
    return True


def dx7lake(*args: str, home: Path, timeout: float = 300, **settings: str) -> subprocess.CompletedProcess:
    """``dx7lake *args`` in a process of its own, with only the ``DX7LAKE_*`` ``settings`` given."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DX7LAKE_")} | settings
    return subprocess.run(
        [DX7LAKE, *args, "--home", str(home)], capture_output=True, text=True, env=env, timeout=timeout
    )


@pytest.fixture
def home(tmp_path):
    yield tmp_path / "home"
    dx7lake("db", "stop", home=tmp_path / "home")


def test_a_command_stops_the_embedded_postgres_it_started(home):
    out = dx7lake("validate", "--patches", "sine", home=home)
    assert out.returncode == 1, out.stderr  # an empty lake: nothing to validate against
    assert (home / "pg" / "PG_VERSION").exists(), "validate did start the embedded server"
    assert not postmaster_alive(home)


def test_a_server_the_user_started_outlives_commands_until_db_stop(home):
    url = json.loads(dx7lake("db", "start", home=home).stdout.splitlines()[-1])["url"]
    assert url.startswith("postgresql://") and postmaster_alive(home)
    dx7lake("validate", "--patches", "sine", home=home)
    assert postmaster_alive(home)
    assert json.loads(dx7lake("db", "stop", home=home).stdout.splitlines()[-1]) == {"stopped": True}
    assert not postmaster_alive(home)


def test_commands_that_need_no_warehouse_import_neither_it_nor_the_render_stack():
    heavy = "{'numba', 'psycopg', 'airflow', 'dexed', 'pedalboard', 'pyarrow'}"
    code = (
        "import sys; from dx7lake.cli import build_parser; build_parser();"
        f"print(sorted({heavy} & {{m.split('.')[0] for m in sys.modules}}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.e2e
@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="one core: one task slot, nothing runs side by side")
def test_the_demo_runs_mapped_task_instances_side_by_side(home):
    """``dx7lake demo`` with ``DX7LAKE_DEMO_EXECUTOR=local`` is a real Airflow run whose mapped
    extract or render task instances overlap in time, as Airflow's own metadata DB recorded
    them: a task-by-task run (the default) cannot."""
    import psycopg

    out = dx7lake(
        "demo", "--limit", "3", "--patches", "sine,epiano", home=home, timeout=1100, DX7LAKE_DEMO_EXECUTOR="local"
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    noisy = [line for line in out.stdout.splitlines() if re.search(r"\b(error|warning)\b", line, re.I)]
    assert not noisy, "the demo printed:\n" + "\n".join(noisy)
    summary = json.loads(out.stdout.splitlines()[-1])
    assert summary["validation"] == "passed"
    assert 0 < summary["cpu"]["util"] <= 1 and summary["cpu"]["cores"] == len(os.sched_getaffinity(0))

    url = json.loads(dx7lake("db", "start", home=home).stdout.splitlines()[-1])["url"]
    with psycopg.connect(url, dbname="airflow") as conn:
        rows = conn.execute(
            "select task_id, map_index, start_date, end_date from task_instance"
            " where dag_id = 'dx7lake' and task_id in ('extract', 'render') and state = 'success'"
        ).fetchall()
    assert {r[0] for r in rows} == {"extract", "render"} and len(rows) >= 4, rows
    overlapping = [
        (a[:2], b[:2]) for a, b in itertools.combinations(rows, 2) if a[0] == b[0] and a[2] < b[3] and b[2] < a[3]
    ]
    assert overlapping, f"no two mapped instances ran at once: {sorted(rows)}"
