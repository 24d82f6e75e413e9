"""A real browser on a phrase page, the stats page and the index's profile picker: headless
Debian Chromium driven over the DevTools protocol (tests/chromium_devtools.py).

The browser is served by ``dx7lake serve`` (the CLI contract), and the tests check what a
listener gets: audio whose duration is known, a spectrogram image that decoded, a piano
roll, a screenshot of the page; and that a click on another profile in the index's picker
lists that profile's renders.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest

from chromium_devtools import start_process
from conftest import build_gold, build_silver, new_database
from dx7lake.config import Settings
from dx7lake.gold.engine import RenderSpec

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


@contextmanager
def serving(settings) -> Iterator[str]:
    """``dx7lake serve --port 0`` on ``settings``' home for the block; yields the base URL."""
    env = os.environ | {"DX7LAKE_PG_URL": settings.pg_url, "DX7LAKE_LAKE": settings.lake_uri}
    cmd = [str(Path(sys.executable).with_name("dx7lake")), "serve", "--home", str(settings.home), "--port", "0"]
    proc, url = start_process(cmd, r'"url": "(http://[^"]+)/phrases"', "stdout", env)
    try:
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture
def served(rendered_home) -> Iterator[str]:
    with serving(rendered_home) as url:
        yield url


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


@pytest.fixture(scope="module")
def two_profiles_home(tmp_path_factory, pg_server, chorales) -> Settings:
    """One chorale rendered with the sine voice in the default profile, and in slow90 (90 BPM)
    for its first render partition only, so the two profiles list different phrases."""
    home = tmp_path_factory.mktemp("two-profiles")
    landing = home / "landing"
    landing.mkdir()
    first = sorted(chorales.rglob("*.mid"))[0]
    shutil.copy(first, landing / first.name)
    settings = Settings(
        home=home, lake_uri=str(home / "lake"), source=str(landing), pg_url=new_database(pg_server, "profiles")
    )
    build_silver(settings, "profiles", ("build", "--quiet", "--exclude", "path:models/analytics"))
    build_gold(settings, "sine")
    build_gold(settings, "sine", ["slow90"], partitions=1)
    return settings


def _listed_phrases(settings: Settings, profile_id: str) -> int:
    """Silver phrases whose content has a render of ``profile_id`` in the lake's manifests,
    read here with pyarrow (not through the browser's catalog or gold.renders)."""
    import pyarrow.parquet as pq

    root = Path(settings.lake_uri) / "gold" / "manifests" / profile_id
    contents = {h for part in root.rglob("*.parquet") for h in pq.read_table(part).column("content_hash").to_pylist()}
    with psycopg.connect(settings.pg_url) as conn:
        phrases = conn.execute("select content_hash from silver.phrases").fetchall()
    return sum(h in contents for (h,) in phrases)


INDEX_STATE = """(() => ({
  url: location.href,
  total: Number(document.querySelector("header .muted").textContent.match(/(\\d+) phrases/)[1]),
  rows: [...document.querySelectorAll("tbody td.num:first-child a")].map((a) => a.getAttribute("href")),
  picked: [...document.querySelectorAll("nav.profiles a.on")].map((a) => a.textContent),
}))()"""


def test_index_profile_picker_opens_the_other_profiles_listing(two_profiles_home, chromium):
    default, slow = RenderSpec().profile_id, RenderSpec(bpm=90.0).profile_id
    expected = {default: _listed_phrases(two_profiles_home, default), slow: _listed_phrases(two_profiles_home, slow)}
    assert 0 < expected[slow] < expected[default], "slow90 must list fewer phrases than the default to be told apart"
    with serving(two_profiles_home) as url:
        chromium.open_page(1100, 1000)
        chromium.navigate(f"{url}/phrases?size=200")
        before = chromium.evaluate(INDEX_STATE)
        assert before["url"] == f"{url}/phrases?size=200" and before["picked"] == ["default"]
        assert before["total"] == len(before["rows"]) == expected[default]
        chromium.events.clear()
        chromium.click("nav.profiles a:not(.on)")  # the picker's other profile, as a user clicks it
        chromium.wait_for("Page.loadEventFired")
        after = chromium.evaluate(INDEX_STATE)
    assert after["url"] == f"{url}/profiles/{slow}/phrases"
    assert after["picked"] == ["slow90"]
    assert after["total"] == len(after["rows"]) == expected[slow]  # fewer than one page of 50
    assert all(re.fullmatch(rf"/profiles/{slow}/phrases/\d+", href) for href in after["rows"])
