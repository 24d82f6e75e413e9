"""What a CLI command leaves behind: nothing running that it did not announce.

Each command runs as its own process, as a user runs it; whether the embedded Postgres
still runs is read from the operating system (the postmaster's pid), not from our code.
"""

from __future__ import annotations

import json
import os
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


def dx7lake(*args: str, home: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DX7LAKE_")}
    return subprocess.run([DX7LAKE, *args, "--home", str(home)], capture_output=True, text=True, env=env, timeout=300)


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
