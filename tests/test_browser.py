"""The phrase browser over HTTP: every route, filters, byte ranges, and requests it must refuse."""

from __future__ import annotations

import hashlib
import io
import re

import psycopg
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from dx7lake.browser.app import create_app
from dx7lake.browser.catalog import Catalog
from dx7lake.gold.engine import RenderSpec
from dx7lake.lake import open_lake

P = f"/profiles/{RenderSpec().profile_id}"  # the default profile: pages link within it


@pytest.fixture(scope="module")
def client(rendered_home):
    with TestClient(create_app(rendered_home)) as client:
        yield client


@pytest.fixture(scope="module")
def rendered_phrases(rendered_home) -> int:
    with psycopg.connect(rendered_home.pg_url) as conn:
        return conn.execute(
            "select count(*) from silver.phrases p where exists "
            "(select 1 from gold.renders g where g.content_hash = p.content_hash)"
        ).fetchone()[0]


def numbers(html: str) -> list[int]:
    return [int(n) for n in re.findall(rf'<td class="num"><a href="{P}/phrases/(\d+)', html)]


def total(html: str) -> int:
    return int(re.search(r'<span class="muted">(\d+) phrases</span>', html).group(1))


def audio_link(client: TestClient, n: int) -> str:
    page = client.get(f"/phrases/{n}").text
    return re.search(r'<audio id="player"[^>]* src="([^"]+)"', page).group(1).replace("&amp;", "&")


def test_index_lists_every_rendered_phrase_in_pages(client, rendered_phrases):
    first = client.get("/phrases", params={"size": 25})
    assert first.status_code == 200
    assert first.headers["content-type"].startswith("text/html")
    assert total(first.text) == rendered_phrases
    assert numbers(first.text) == list(range(1, 26))
    second = client.get("/phrases", params={"size": 25, "page": 2})
    assert numbers(second.text) == list(range(26, min(50, rendered_phrases) + 1))
    pages = (client.get("/phrases", params={"size": 200, "page": page}).text for page in range(1, 10))
    every = [n for page in pages for n in numbers(page)]
    assert every == list(range(1, rendered_phrases + 1))


def test_index_filters(client, rendered_home):
    """Expected counts come from silver.phrases and raw.detailed_notes (the pipeline's tables,
    not browser.phrases that the app reads), with each phrase's pitch range worked out here
    from its notes."""
    from collections import Counter

    with psycopg.connect(rendered_home.pg_url) as conn:
        phrases = conn.execute(
            "select p.midi_id, p.set_type, p.notes, p.content_hash from silver.phrases p"
            " where exists (select 1 from gold.renders g where g.content_hash = p.content_hash)"
        ).fetchall()
        song_of = dict(conn.execute("select distinct midi_id, source_key from raw.detailed_notes").fetchall())
    splits = Counter(set_type for _, set_type, _, _ in phrases)
    for split, count in splits.items():
        page = client.get("/phrases", params={"split": split, "size": 200})
        assert total(page.text) == count
        assert set(re.findall(r"<td>(train|test|validate)</td>", page.text)) == {split}
    midi_id = min(song_of)
    per_song = sum(m == midi_id for m, _, _, _ in phrases)
    assert total(client.get("/phrases", params={"song": song_of[midi_id].split("/")[-1][:6]}).text) == per_song
    by_id = client.get("/phrases", params={"song": midi_id}).text
    assert total(by_id) == per_song and f'href="{P}/phrases?song={midi_id}"' in by_id
    low = sum(max(note[3] for note in notes) <= 60 for _, _, notes, _ in phrases)
    assert 0 < low < len(phrases), "the pitch filter must split this corpus to be tested"
    assert total(client.get("/phrases", params={"pitch_max": 60, "pitch_min": ""}).text) == low
    assert total(client.get("/phrases", params={"pitch_min": 100}).text) == 0
    assert client.get("/phrases", params={"split": "holdout"}).status_code == 400
    assert client.get("/phrases", params={"pitch_min": "low"}).status_code == 400


def test_patch_filter_lists_only_phrases_rendered_with_that_patch(client, rendered_home):
    """Every phrase has every patch's render here, so a filter that ignored the patch would
    pass; a third patch rendered for one content only tells them apart."""
    with psycopg.connect(rendered_home.pg_url) as conn:
        content = conn.execute("select content_hash from gold.renders order by content_hash limit 1").fetchone()[0]
        columns = [
            c
            for (c,) in conn.execute(
                "select column_name from information_schema.columns"
                " where table_schema = 'gold' and table_name = 'renders' order by ordinal_position"
            )
        ]
        copied = ", ".join({"patch_id": "'onlyone'", "key": "key || '.onlyone'"}.get(c, c) for c in columns)
        conn.execute(
            f"insert into gold.renders ({', '.join(columns)}) select {copied} from gold.renders"
            " where content_hash = %s limit 1",
            (content,),
        )
        expected = conn.execute("select count(*) from silver.phrases where content_hash = %s", (content,)).fetchone()[0]
        all_rendered = conn.execute(
            "select count(*) from silver.phrases p"
            " where exists (select 1 from gold.renders g where g.content_hash = p.content_hash)"
        ).fetchone()[0]
        conn.commit()
    try:
        assert 0 < expected < all_rendered
        assert total(client.get("/phrases", params={"patch": "onlyone", "size": 200}).text) == expected
    finally:
        with psycopg.connect(rendered_home.pg_url) as conn:
            conn.execute("delete from gold.renders where patch_id = 'onlyone'")


def test_phrase_page_has_player_spectrogram_pianoroll_and_links(client, rendered_home):
    page = client.get("/phrases/2")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    html = page.text
    assert re.search(rf'<audio id="player"[^>]* src="{P}/phrases/2/audio\.flac\?patch=[0-9a-f]+"', html)
    assert re.search(rf'<img id="mel" src="{P}/phrases/2/mel\.png\?patch=[0-9a-f]+"', html)
    with psycopg.connect(rendered_home.pg_url) as conn:
        n_notes = conn.execute("select n_notes from browser.phrases where n = 2").fetchone()[0]
    assert html.count('<rect class="note"') == n_notes
    assert f'id="prev" href="{P}/phrases/1"' in html and f'id="next" href="{P}/phrases/3"' in html
    assert f'id="random" href="{P}/phrases/0"' in html
    assert client.get(f"{P}/phrases/2").text == html  # the URL from before profiles is the default profile's
    assert "epiano" in html and "bell" in html
    assert 'id="prev"' not in client.get("/phrases/1").text


def test_phrase_zero_redirects_to_a_random_matching_phrase(client):
    seen = set()
    for _ in range(8):
        response = client.get("/phrases/0", params={"split": "train"}, follow_redirects=False)
        assert response.status_code == 302
        n, query = re.fullmatch(rf"{P}/phrases/(\d+)\?(.*)", response.headers["location"]).groups()
        assert query == "split=train"
        assert "<dd>train</dd>" in client.get(f"/phrases/{n}").text
        seen.add(int(n))
    assert len(seen) > 1
    assert client.get("/phrases/0", params={"pitch_min": 127}, follow_redirects=False).status_code == 404


def test_audio_is_the_manifest_object_with_byte_ranges(client, rendered_home):
    src = audio_link(client, 3)
    whole = client.get(src)
    assert whole.status_code == 200
    assert whole.headers["content-type"] == "audio/flac"
    assert whole.headers["accept-ranges"] == "bytes"
    body = whole.content
    assert body[:4] == b"fLaC"
    lake = open_lake(rendered_home.lake_uri)
    etag = whole.headers["etag"].strip('"')
    assert hashlib.sha256(body).hexdigest() == etag
    assert any(lake.get(k) == body for k in lake.list("gold/renders/") if k.endswith(".flac"))

    size = len(body)
    part = client.get(src, headers={"Range": "bytes=0-99"})
    assert part.status_code == 206
    assert part.headers["content-range"] == f"bytes 0-99/{size}"
    assert part.content == body[:100]
    tail = client.get(src, headers={"Range": "bytes=-10"})
    assert tail.status_code == 206 and tail.content == body[-10:]
    rest = client.get(src, headers={"Range": f"bytes={size - 5}-"})
    assert rest.headers["content-range"] == f"bytes {size - 5}-{size - 1}/{size}" and rest.content == body[-5:]
    past = client.get(src, headers={"Range": f"bytes={size}-"})
    assert past.status_code == 416 and past.headers["content-range"] == f"bytes */{size}"
    assert client.get(src, headers={"Range": "bytes=9-3"}).status_code == 200  # invalid range: ignored
    head = client.head(src)
    assert head.status_code == 200 and int(head.headers["content-length"]) == size


def test_mel_spectrogram_is_a_png(client):
    src = audio_link(client, 4).replace("audio.flac", "mel.png")
    response = client.get(src)
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/png"
    image = Image.open(io.BytesIO(response.content))
    assert image.size == (900, 256)
    assert len(set(image.convert("L").getdata())) > 50  # a picture, not a flat fill


@pytest.mark.parametrize(
    "path",
    [
        "/phrases/999999",
        "/phrases/-1",
        "/phrases/abc",
        "/phrases/999999/audio.flac?patch=4326d2ebcfc9",
        "/phrases/1/audio.flac?patch=000000000000",
        "/phrases/1/audio.flac",
        "/phrases/1/mel.png?patch=000000000000",
    ],
)
def test_unknown_phrases_and_renders_are_404(client, path):
    assert client.get(path).status_code == 404


@pytest.mark.parametrize(
    "path",
    [
        "/phrases/1/audio.flac?patch=../../../../etc/passwd",
        "/phrases/1/audio.flac?patch=..%2F..%2Fsummary.json",
        "/phrases/1/mel.png?patch=%2Fetc%2Fpasswd",
        "/phrases/..%2F..%2F..%2Fetc%2Fpasswd",
        "/phrases/1/..%2F..%2Fsummary.json",
        "/phrases/%2e%2e/%2e%2e/etc/passwd",
        "/phrases/1/gold%2Fmanifests%2Fx.parquet",
    ],
)
def test_path_traversal_is_refused(client, path):
    response = client.get(path)
    assert response.status_code in (400, 404)
    assert b"root:" not in response.content and b"files_seen" not in response.content


def test_html_errors_are_pages_and_api_errors_json(client):
    page = client.get("/phrases/999999", headers={"Accept": "text/html"})
    assert page.status_code == 404 and page.headers["content-type"].startswith("text/html")
    assert "no phrase 999999" in page.text
    assert client.get("/phrases/999999").json() == {"detail": "no phrase 999999"}


def test_numbers_survive_a_restart(client, rendered_home):
    before = {n: client.get(f"/phrases/{n}").text.split("<dt>phrase id</dt><dd>")[1][:32] for n in (1, 7, 20)}
    with TestClient(create_app(rendered_home)) as restarted:
        after = {n: restarted.get(f"/phrases/{n}").text.split("<dt>phrase id</dt><dd>")[1][:32] for n in (1, 7, 20)}
        assert restarted.app.state.catalog.refresh(force=True) == 0
    assert before == after
    with psycopg.connect(rendered_home.pg_url) as conn:
        order = conn.execute("select song, track_index, bucket from browser.phrases order by n").fetchall()
    assert order == sorted(order)


def test_concurrent_workers_number_each_phrase_once(rendered_home, rendered_phrases):
    """API-server workers racing to number the same phrases leave 1..N, no gaps, no repeats."""
    from concurrent.futures import ThreadPoolExecutor

    with psycopg.connect(rendered_home.pg_url) as conn:
        before = conn.execute("select n, phrase_id from browser.phrases order by n").fetchall()
        conn.execute("drop schema browser cascade")
    with ThreadPoolExecutor(4) as pool:
        added = list(pool.map(lambda _: Catalog(rendered_home).refresh(force=True), range(4)))
    assert sorted(added) == [0, 0, 0, rendered_phrases]
    with psycopg.connect(rendered_home.pg_url) as conn:
        after = conn.execute("select n, phrase_id from browser.phrases order by n").fetchall()
    assert after == before  # the numbering is a function of the data, whoever does it


def test_a_home_without_renders_says_so(settings):
    response = TestClient(create_app(settings)).get("/phrases", headers={"Accept": "text/html"})
    assert response.status_code == 503
    assert "run the pipeline" in response.text


def test_phrase_page_shows_the_renders_features_as_the_audio_reads(client):
    """The loudness shown is the FLAC's own, as pyloudnorm reads it from the served audio."""
    import numpy as np
    import pyloudnorm
    import soundfile as sf

    html = client.get("/phrases/3").text
    shown = re.search(r'<dd id="features">(-?\d+\.\d) LUFS, true peak (-?\d+\.\d) dBTP, centroid (\d+) Hz', html)
    assert shown and "MFCC means" in html
    audio, sr = sf.read(io.BytesIO(client.get(audio_link(client, 3)).content), dtype="float64")
    assert float(shown.group(1)) == pytest.approx(pyloudnorm.Meter(sr).integrated_loudness(audio), abs=0.051)
    assert float(shown.group(2)) >= 20 * np.log10(np.abs(audio).max()) - 0.051  # never below the sample peak


def test_index_sorts_and_filters_by_loudness_and_centroid(client, rendered_home):
    """Expected counts come from silver.phrases joined to gold.renders, not browser.phrases."""
    with psycopg.connect(rendered_home.pg_url) as conn:
        median = conn.execute("select percentile_cont(0.5) within group (order by lufs) from gold.renders").fetchone()
        median = median[0]
        quiet = conn.execute(
            "select count(*) from silver.phrases p where exists (select 1 from gold.renders g"
            " where g.content_hash = p.content_hash and g.lufs <= %s)",
            (round(median, 1),),
        ).fetchone()[0]
        bright = conn.execute(
            "select count(*) from silver.phrases p where exists (select 1 from gold.renders g"
            " where g.content_hash = p.content_hash and g.spectral_centroid_hz >= 1000)"
        ).fetchone()[0]
    assert total(client.get("/phrases", params={"lufs_max": round(median, 1)}).text) == quiet
    assert total(client.get("/phrases", params={"centroid_min": 1000}).text) == bright
    for sort, column in (("loudness", 1), ("-centroid", 2)):
        page = client.get("/phrases", params={"sort": sort, "size": 200}).text
        cells = re.findall(r'<td class="num">(-?[\d.]+)</td>\s*<td class="num">(-?[\d.]+)</td>\s*</tr>', page)
        values = [float(c[column - 1]) for c in cells]
        assert len(values) == min(200, total(page)) and values
        assert values == sorted(values, reverse=sort.startswith("-"))
    assert client.get("/phrases", params={"sort": "random()"}).status_code == 400
    assert client.get("/phrases", params={"lufs_min": "loud"}).status_code == 400
