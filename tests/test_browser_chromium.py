"""A real browser on a phrase page and the stats page: headless Debian Chromium driven over the DevTools protocol.

The browser is served by ``dx7lake serve`` (the CLI contract), Chromium downloads nothing
(background networking, component updates and sync are off), and the test checks what a
listener gets: audio whose duration is known, a spectrogram image that decoded, a piano
roll, and a screenshot of the page.
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from conftest import require_tool

PAGE_STATE = """
new Promise((resolve) => {
  const audio = document.getElementById("player");
  const mel = document.getElementById("mel");
  const report = () => resolve({
    duration: audio.duration,
    audioError: audio.error ? audio.error.code : null,
    melLoaded: mel.complete && mel.naturalWidth > 0,
    melSize: [mel.naturalWidth, mel.naturalHeight],
    melShown: mel.getBoundingClientRect().width > 0 && getComputedStyle(mel).visibility === "visible",
    notes: document.querySelectorAll("svg.pianoroll rect.note").length,
    title: document.title,
  });
  const ready = () => audio.readyState >= 1 && mel.complete;
  if (ready()) return report();
  const poll = setInterval(() => { if (ready() || audio.error) { clearInterval(poll); report(); } }, 50);
  setTimeout(() => { clearInterval(poll); report(); }, 15000);
})
"""


class DevTools:
    """The few DevTools-protocol calls the test needs, over one websocket in flat session mode."""

    def __init__(self, ws_url: str) -> None:
        from websockets.sync.client import connect

        self.ws = connect(ws_url, max_size=64 * 2**20)
        self.ids = itertools.count(1)
        self.events: list[dict] = []
        self.session: str | None = None

    def call(self, method: str, timeout: float = 30.0, **params) -> dict:
        call_id = next(self.ids)
        message = {"id": call_id, "method": method, "params": params}
        if self.session:
            message["sessionId"] = self.session
        self.ws.send(json.dumps(message))
        deadline = time.monotonic() + timeout
        while True:
            reply = json.loads(self.ws.recv(timeout=max(0.1, deadline - time.monotonic())))
            if reply.get("id") == call_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]
            self.events.append(reply)

    def wait_for(self, event: str, timeout: float = 30.0) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            for i, seen in enumerate(self.events):
                if seen.get("method") == event:
                    return self.events.pop(i)
            self.events.append(json.loads(self.ws.recv(timeout=max(0.1, deadline - time.monotonic()))))

    def open_page(self, width: int, height: int) -> None:
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        self.call("Page.enable")
        self.call("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=False)

    def close(self) -> None:
        self.ws.close()


def _start(cmd: list[str], pattern: str, stream: str, env: dict | None = None) -> tuple[subprocess.Popen, str]:
    """Start a process and return it with the first match of ``pattern`` in its output."""
    proc = subprocess.Popen(cmd, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    pipe = proc.stdout if stream == "stdout" else proc.stderr
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = pipe.readline()
        if not line and proc.poll() is not None:
            break
        match = re.search(pattern, line)
        if match:
            return proc, match.group(1)
    proc.kill()
    raise RuntimeError(f"{cmd[0]} did not print {pattern!r}: {proc.communicate()}")


@pytest.fixture
def served(rendered_home):
    """``dx7lake serve --port 0`` on the rendered home; yields the base URL."""
    env = os.environ | {"DX7LAKE_PG_URL": rendered_home.pg_url, "DX7LAKE_LAKE": rendered_home.lake_uri}
    cmd = [str(Path(sys.executable).with_name("dx7lake")), "serve", "--home", str(rendered_home.home), "--port", "0"]
    proc, url = _start(cmd, r'"url": "(http://[^"]+)/phrases"', "stdout", env)
    yield url
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture
def chromium():
    profile = tempfile.mkdtemp(prefix="dx7lake-chromium-")
    cmd = [
        require_tool("chromium", "chromium"),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-default-apps",
        "--no-first-run",
        "--mute-audio",
        f"--user-data-dir={profile}",
        "--remote-debugging-port=0",
        "about:blank",
    ]
    proc, ws_url = _start(cmd, r"DevTools listening on (ws://\S+)", "stderr")
    devtools = DevTools(ws_url)
    yield devtools
    devtools.close()
    proc.terminate()
    proc.wait(timeout=10)
    shutil.rmtree(profile, ignore_errors=True)


def test_phrase_page_plays_and_shows_its_spectrogram(served, chromium, tmp_path):
    chromium.open_page(1100, 1000)
    chromium.call("Page.navigate", url=f"{served}/phrases/3")
    chromium.wait_for("Page.loadEventFired")
    state = chromium.call("Runtime.evaluate", expression=PAGE_STATE, awaitPromise=True, returnByValue=True)
    state = state["result"]["value"]

    screenshot = tmp_path / "phrase-3.png"
    screenshot.write_bytes(base64.b64decode(chromium.call("Page.captureScreenshot", format="png")["data"]))
    print(f"screenshot: {screenshot}")

    assert state["audioError"] is None
    assert state["duration"] == pytest.approx(2.5, abs=0.05)  # 4 beats at 120 BPM and a 0.5 s tail
    assert state["melLoaded"] and state["melShown"]
    assert state["melSize"] == [900, 256]
    assert state["notes"] > 0
    assert state["title"].startswith("Phrase 3")
    assert screenshot.stat().st_size > 10_000


STATS_STATE = """
new Promise((resolve) => {
  const plots = [...document.querySelectorAll("img.plot")];
  const preview = new Audio(PREVIEW);  // Chromium's own MP3 decoder
  const report = () => resolve({
    plots: plots.map((p) => [p.id, p.complete && p.naturalWidth, p.naturalHeight]),
    previewDuration: preview.duration,
    previewError: preview.error ? preview.error.code : null,
  });
  const ready = () => plots.every((p) => p.complete) && (preview.readyState >= 1 || preview.error);
  if (ready()) return report();
  const poll = setInterval(() => { if (ready()) { clearInterval(poll); report(); } }, 50);
  setTimeout(() => { clearInterval(poll); report(); }, 15000);
})
"""


def test_stats_page_shows_its_plots_and_a_preview_plays(served, chromium):
    import urllib.request

    with urllib.request.urlopen(f"{served}/phrases/3") as reply:  # the phrase page's FLAC link names its patch
        flac = re.search(r'<audio id="player"[^>]* src="([^"]+)"', reply.read().decode()).group(1)
    preview = served + flac.replace("&amp;", "&").replace("/audio.flac", "/preview.mp3")
    chromium.open_page(1100, 1000)
    chromium.call("Page.navigate", url=f"{served}/stats")
    chromium.wait_for("Page.loadEventFired")
    script = STATS_STATE.replace("PREVIEW", json.dumps(preview))
    state = chromium.call("Runtime.evaluate", expression=script, awaitPromise=True, returnByValue=True)
    state = state["result"]["value"]
    assert [p[0] for p in state["plots"]] == ["plot-pitch", "plot-velocity", "plot-density", "plot-loudness"]
    assert all(p[1:] == [720, 300] for p in state["plots"])
    assert state["previewError"] is None
    assert state["previewDuration"] == pytest.approx(2.5, abs=0.08)  # 4 beats at 120 BPM and a 0.5 s tail
