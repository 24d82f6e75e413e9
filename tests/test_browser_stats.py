"""The browser's compressed previews and its ``/stats`` page, over HTTP.

Previews are decoded by libsndfile (its mpg123 MP3 decoder, not the ffmpeg that encoded
them) and compared with the gold FLAC; the real-browser checks are in test_browser_chromium.
"""

from __future__ import annotations

import io
import re

import numpy as np
import psycopg
import pytest
import soundfile as sf
from fastapi.testclient import TestClient
from PIL import Image

from dx7lake.browser.app import create_app


@pytest.fixture(scope="module")
def client(rendered_home):
    with TestClient(create_app(rendered_home)) as client:
        yield client


def flac_link(client: TestClient, n: int) -> str:
    page = client.get(f"/phrases/{n}").text
    return re.search(r'<audio id="player"[^>]* src="([^"]+)"', page).group(1).replace("&amp;", "&")


def test_preview_is_the_render_as_mp3(client, rendered_home):
    flac_url = flac_link(client, 2)
    flac = client.get(flac_url).content
    reply = client.get(flac_url.replace("/audio.flac", "/preview.mp3"))
    assert reply.status_code == 200 and reply.headers["content-type"] == "audio/mpeg"
    assert "content-disposition" not in reply.headers
    mp3, mp3_rate = sf.read(io.BytesIO(reply.content), dtype="float32")
    assert sf.info(io.BytesIO(reply.content)).format == "MP3"
    pcm, rate = sf.read(io.BytesIO(flac), dtype="float32")
    assert mp3_rate == rate == 22050
    assert abs(len(mp3) / mp3_rate - len(pcm) / rate) < 0.06  # the phrase's 2.5 s, up to an MP3 frame of padding
    level = lambda x: 20 * np.log10(np.sqrt(np.mean(np.square(x))))  # noqa: E731
    assert abs(level(mp3) - level(pcm)) < 1.0  # the same sound, not silence or another render
    assert len(reply.content) < 3 * len(flac)

    page = client.get("/phrases/2").text  # the phrase page links the download it offers
    download = re.search(r'<a id="download-preview" href="([^"]+)"', page).group(1).replace("&amp;", "&")
    saved = client.get(download)
    assert saved.content == reply.content
    disposition = saved.headers["content-disposition"]
    assert re.fullmatch(r'attachment; filename="[0-9a-f]{32}_[0-9A-Za-z_-]+\.mp3"', disposition)


def test_preview_of_an_unknown_render_is_404(client):
    assert client.get("/phrases/1/preview.mp3", params={"patch": "nosuchpatch"}).status_code == 404
    assert client.get("/phrases/999999/preview.mp3").status_code == 404


def test_stats_page_shows_each_split_in_every_plot(client, rendered_home):
    page = client.get("/stats")
    assert page.status_code == 200
    sources = dict(re.findall(r'<img class="plot" id="plot-(\w+)" src="([^"]+)"', page.text))
    assert list(sources) == ["pitch", "velocity", "density", "loudness"]
    with psycopg.connect(rendered_home.pg_url) as conn:  # the splits silver has phrases in
        splits = {s for (s,) in conn.execute("select distinct set_type from silver.phrases")}
    colours = {"train": (52, 101, 164), "validate": (245, 121, 0), "test": (78, 154, 6)}
    for name, src in sources.items():
        png = Image.open(io.BytesIO(client.get(src).content))
        assert (png.format, png.size) == ("PNG", (720, 300))
        drawn = {c for _, c in png.convert("RGB").getcolors(720 * 300)}
        assert {s for s, c in colours.items() if c in drawn} == splits, name
    assert client.get("/stats/nosuch.png").status_code == 404
    assert 'href="/stats"' in client.get("/phrases").text
