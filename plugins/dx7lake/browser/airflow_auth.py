"""The phrase browser as Airflow's API server mounts it: only signed-in Airflow users get in.

Airflow protects its own API with a router dependency that does not reach mounted plugin
apps, so the browser declares Airflow's ``requires_authenticated`` on every route: the JWT
comes from the UI's session cookie or an ``Authorization: Bearer`` header, and a browser
without one is sent to the auth manager's login page.
"""

from __future__ import annotations

from fastapi import Depends, FastAPI, Request

from ..config import load_settings
from .app import create_app


def create_airflow_app() -> FastAPI:
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.core_api.security import requires_authenticated

    def login_url(request: Request) -> str:
        return get_auth_manager().get_url_login(next_url=str(request.url))

    return create_app(load_settings(), dependencies=[Depends(requires_authenticated())], login_url=login_url)
