"""The DAG's trigger form in Airflow's own UI, in a real browser: the ``profiles`` field is a
multi-select of the names in profiles.yml, and what a user picks there is the run's conf.

A real ``airflow api-server`` (simple auth manager, a password of this test) serves the DAG
from a metadata DB of its own (SQLite), serialized by ``airflow dags reserialize`` as the
dag-processor would; no scheduler runs, so the triggered run stays queued. Headless Chromium
signs in through the login page and fills the form by clicks and keystrokes.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import httpx
import pytest
import yaml

from conftest import REPO
from dx7lake.orchestration.airflow_env import free_port

# migrating a metadata DB, serializing the DAG and starting the api-server take 40-60 s
# before the browser opens: too slow for the unit suite
pytestmark = pytest.mark.e2e

AIRFLOW = str(Path(sys.executable).with_name("airflow"))
PROFILES_YML = REPO / "plugins" / "dx7lake" / "gold" / "profiles.yml"


class AirflowUI(NamedTuple):
    url: str
    password: str

    def token(self) -> str:
        reply = httpx.post(f"{self.url}/auth/token", json={"username": "admin", "password": self.password})
        reply.raise_for_status()
        return reply.json()["access_token"]

    def get(self, path: str) -> dict:
        reply = httpx.get(self.url + path, headers={"Authorization": f"Bearer {self.token()}"})
        reply.raise_for_status()
        return reply.json()


@pytest.fixture(scope="module")
def airflow_ui(tmp_path_factory) -> Iterator[AirflowUI]:
    base = tmp_path_factory.mktemp("airflow-ui")
    port, password = free_port(), secrets.token_hex(8)
    (base / "passwords.json").write_text(json.dumps({"admin": password}))
    env = os.environ | {
        "AIRFLOW_HOME": str(base),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{base / 'airflow.db'}",
        "AIRFLOW__CORE__AUTH_MANAGER": "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(base / "passwords.json"),
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(32),
        "AIRFLOW__API__SECRET_KEY": secrets.token_hex(32),
        "DX7LAKE_HOME": str(base / "home"),  # the DAG file reads its settings when parsed
    }
    log = (base / "airflow.log").open("w")
    for step in (["db", "migrate"], ["dags", "reserialize"]):
        subprocess.run([AIRFLOW, *step], env=env, check=True, stdout=log, stderr=subprocess.STDOUT)
    cmd = [AIRFLOW, "api-server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    server = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    ui = AirflowUI(f"http://127.0.0.1:{port}", password)
    try:
        deadline = time.monotonic() + 120
        while True:
            assert server.poll() is None, f"the api-server exited; see {log.name}"
            try:
                if httpx.get(f"{ui.url}/api/v2/monitor/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, f"the api-server did not answer in time; see {log.name}"
            time.sleep(0.5)
        yield ui
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()


PROFILES = yaml.safe_load(PROFILES_YML.read_text())["profiles"]  # read here, not by dx7lake

# The multi-select (react-select): each chosen value is a chip with a "Remove <name>" button
# and a hidden input named after the field; the open menu lists the values not chosen yet.
CHOSEN = """[...document.querySelectorAll('#element_profiles input[type=hidden][name=element_profiles]')]
  .map((i) => i.value)"""
OPTIONS = "[...document.querySelectorAll('[id^=react-select][id*=-option-]')]"
TRIGGER = "[...document.querySelectorAll('button')].filter((b) => b.textContent.trim() === 'Trigger').pop()"


def click_found(chromium, element: str) -> None:
    """Click the element a JavaScript expression finds (once it finds one), as a user would."""
    mark = "if (e) e.setAttribute('data-test-click', ''); return !!e;"
    chromium.wait_until(f"(() => {{ const e = {element}; {mark} }})()")
    chromium.click("[data-test-click]")
    chromium.evaluate("document.querySelector('[data-test-click]')?.removeAttribute('data-test-click')")


def test_trigger_form_picks_profiles_from_profiles_yml_and_the_run_gets_them(airflow_ui, chromium):
    (plain,) = [name for name, settings in PROFILES.items() if not settings]  # the defaults, unchanged
    picked = [n for n in PROFILES if n != plain][:2]
    chromium.open_page(1400, 1000)
    chromium.navigate(f"{airflow_ui.url}/dags/dx7lake")
    chromium.wait_until("!!document.querySelector('input[name=username]')")  # sent to the login page
    chromium.click("input[name=username]")
    chromium.type_text("admin")
    chromium.click("input[name=password]")
    chromium.type_text(airflow_ui.password)
    chromium.click("button[type=submit]")
    click_found(chromium, "document.querySelector('[data-testid=trigger-dag-button]')")
    chromium.wait_until("!!document.querySelector('#element_profiles')")

    tag = chromium.evaluate("document.querySelector('#element_profiles').tagName")
    assert tag == "DIV", "a select widget, not a text field"
    assert chromium.evaluate(CHOSEN) == [plain]  # the default pre-selected
    assert chromium.evaluate(f"!{TRIGGER}.disabled"), "the form's defaults must be a valid run"
    chromium.click("#element_profiles input:not([type=hidden])")  # opens its menu
    offered = chromium.wait_until(f"{OPTIONS}.map((o) => o.textContent)")
    assert offered == [n for n in PROFILES if n != plain]  # and every other name, in the file's order
    for i, name in enumerate(picked):
        if i:  # the menu closes on each pick
            chromium.click("#element_profiles input:not([type=hidden])")
        click_found(chromium, f"{OPTIONS}.find((o) => o.textContent === {json.dumps(name)})")
    chromium.click(f"#element_profiles [aria-label='Remove {plain}']")
    chromium.wait_until(f"JSON.stringify({CHOSEN}) === {json.dumps(json.dumps(picked, separators=(',', ':')))}")
    click_found(chromium, TRIGGER)

    deadline = time.monotonic() + 30
    while not (runs := airflow_ui.get("/api/v2/dags/dx7lake/dagRuns")["dag_runs"]):
        assert time.monotonic() < deadline, "no dag run was created"
        time.sleep(0.5)
    (run,) = runs
    assert run["run_type"] == "manual" and run["conf"]["profiles"] == picked
    defaults = {k: p["value"] for k, p in airflow_ui.get("/api/v2/dags/dx7lake/details")["params"].items()}
    assert run["conf"] == defaults | {"profiles": picked}  # every other field as the form showed it
