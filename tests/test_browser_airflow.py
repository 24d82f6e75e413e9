"""The browser inside Airflow's own API server: mounted by the plugin, closed to anonymous callers."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from dx7lake.gold.engine import RenderSpec


@pytest.fixture(scope="module")
def airflow_api(airflow_db, rendered_home):
    """Airflow's API server app (plugins from the repo's plugins/), pointed at a rendered home."""
    mp = pytest.MonkeyPatch()
    mp.setenv("DX7LAKE_HOME", str(rendered_home.home))
    mp.setenv("DX7LAKE_LAKE", rendered_home.lake_uri)
    mp.setenv("DX7LAKE_PG_URL", rendered_home.pg_url)
    from airflow.api_fastapi.app import create_app, get_auth_manager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

    with TestClient(create_app("core")) as client:
        token = get_auth_manager().generate_jwt(SimpleAuthManagerUser(username="admin", role="admin"))
        yield client, token
    mp.undo()


def test_anonymous_callers_are_refused(airflow_api):
    client, _ = airflow_api
    for path in ("/dx7lake/phrases", "/dx7lake/phrases/1", "/dx7lake/phrases/1/audio.flac", "/dx7lake/phrases/0"):
        response = client.get(path, follow_redirects=False)
        assert response.status_code == 401, path
    page = client.get("/dx7lake/phrases/1", headers={"Accept": "text/html"}, follow_redirects=False)
    assert page.status_code == 303
    assert "login" in page.headers["location"] and "next=" in page.headers["location"]
    forged = client.get("/dx7lake/phrases", headers={"Authorization": "Bearer not-a-token"})
    assert forged.status_code in (401, 403)


def test_signed_in_users_browse_under_the_plugin_prefix(airflow_api):
    client, token = airflow_api
    page = client.get("/dx7lake/phrases/1", cookies={"_token": token})
    assert page.status_code == 200
    src = re.search(r'<audio id="player"[^>]* src="([^"]+)"', page.text).group(1).replace("&amp;", "&")
    profile = f"/dx7lake/profiles/{RenderSpec().profile_id}"  # the default profile: links stay within it
    assert src.startswith(f"{profile}/phrases/1/audio.flac?patch=")
    assert f'id="next" href="{profile}/phrases/2"' in page.text
    audio = client.get(src, headers={"Authorization": f"Bearer {token}", "Range": "bytes=0-3"})
    assert audio.status_code == 206 and audio.content == b"fLaC"
    index = client.get("/dx7lake/phrases", headers={"Authorization": f"Bearer {token}"})
    assert index.status_code == 200 and f'href="{profile}/phrases/1"' in index.text


def test_plugin_adds_a_link_to_the_airflow_ui(airflow_api):
    client, token = airflow_api
    plugins = client.get("/api/v2/plugins", headers={"Authorization": f"Bearer {token}"}).json()["plugins"]
    ours = next(p for p in plugins if p["name"] == "dx7lake")
    assert ours["fastapi_apps"][0]["url_prefix"] == "/dx7lake"
    view = ours["external_views"][0]
    assert view["href"] == "dx7lake/phrases" and view["url_route"] == "dx7lake-phrases"


def test_plugin_module_imports_cheaply():
    """Every Airflow component imports plugin modules: the browser must not load with it."""
    import subprocess
    import sys

    from conftest import REPO

    code = (
        "import sys; sys.path.insert(0, 'plugins'); import dx7lake_plugin; "
        "heavy = [m for m in ('fastapi', 'dx7lake.browser', 'psycopg', 'PIL', 'numpy') if m in sys.modules]; "
        "print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"
