"""Airflow plugin: the dx7lake phrase browser inside the Airflow UI.

Every Airflow component imports plugin modules, so this one imports nothing heavy: the
FastAPI app is built on its first request, in the API server only. Airflow does not
authenticate plugin apps, so the app requires a signed-in Airflow user on every route
(``dx7lake.browser.airflow_auth``).
"""

from __future__ import annotations

from typing import Any, ClassVar

from airflow.plugins_manager import AirflowPlugin

URL_PREFIX = "/dx7lake"


class LazyBrowserApp:
    """An ASGI app that builds the phrase browser when the first request reaches it."""

    def __init__(self) -> None:
        self._app = None

    async def __call__(self, scope, receive, send) -> None:
        if self._app is None:
            from dx7lake.browser.airflow_auth import create_airflow_app

            self._app = create_airflow_app()
        await self._app(scope, receive, send)


class Dx7lakePlugin(AirflowPlugin):
    name = "dx7lake"
    fastapi_apps: ClassVar[list[dict[str, Any]]] = [
        {"app": LazyBrowserApp(), "url_prefix": URL_PREFIX, "name": "dx7lake phrase browser"}
    ]
    external_views: ClassVar[list[dict[str, Any]]] = [
        {
            "name": "Phrases",
            "href": f"{URL_PREFIX.lstrip('/')}/phrases",
            "destination": "nav",
            "url_route": "dx7lake-phrases",
        }
    ]
