"""Make a Metabase match the dashboard spec: database connection, collection, cards and
dashboards, created or updated in place, idempotently.

Every object is found by name (cards and dashboards inside the spec's collection) and
only written when it differs from the spec in a field the spec sets, so a second run
sends no write at all and never duplicates anything. metabase-api provides the session
(login, re-login on expiry); its ``post`` returns ``False`` on errors and its
``add_card_to_dashboard`` calls an endpoint current Metabase removed, so every call goes
through :class:`MetabaseClient`, which takes the raw response and raises on any error,
and cards are placed with ``PUT /api/dashboard/:id`` and its ``dashcards`` list.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

from ..config import Settings
from .spec import DEFAULT_SPEC, Card, Dashboard, Spec, load_spec

log = logging.getLogger(__name__)

# Metabase answers a database's password with this placeholder, never the secret.
REDACTED = "**MetabasePass**"


class MetabaseError(RuntimeError):
    """Metabase refused a request."""


class MetabaseClient:
    """metabase-api's authenticated session, with every response checked."""

    def __init__(self, url: str, user: str | None = None, password: str | None = None, api_key: str | None = None):
        from metabase_api import Metabase_API

        if not (api_key or (user and password)):
            raise MetabaseError("set METABASE_API_KEY, or METABASE_USER and METABASE_PASSWORD")
        try:
            self.api = Metabase_API(url, email=user, password=password, api_key=api_key)
        except ValueError as err:
            raise MetabaseError(str(err)) from None
        except Exception as err:  # metabase-api raises a bare Exception(response) on a failed login
            raise MetabaseError(f"login to {url} failed: {err}") from None
        self.writes: Counter[str] = Counter()

    def call(self, method: str, endpoint: str, payload: dict | None = None, params: dict | None = None) -> Any:
        res = getattr(self.api, method)(endpoint, "raw", json=payload, params=params)
        if not res.ok:
            raise MetabaseError(f"{method.upper()} {endpoint} -> {res.status_code}: {res.text[:500]}")
        if method != "get":
            self.writes[f"{method.upper()} {endpoint.split('/')[2]}"] += 1
        return res.json() if res.content else None

    def get(self, endpoint: str, **params) -> Any:
        return self.call("get", endpoint, params=params or None)

    def post(self, endpoint: str, payload: dict) -> Any:
        return self.call("post", endpoint, payload)

    def put(self, endpoint: str, payload: dict) -> Any:
        return self.call("put", endpoint, payload)


def matches(actual: Any, desired: Any) -> bool:
    """Whether ``actual`` already holds everything ``desired`` sets (Metabase adds fields)."""
    if isinstance(desired, dict):
        return isinstance(actual, dict) and all(matches(actual.get(k), v) for k, v in desired.items())
    if isinstance(desired, list | tuple):
        return (
            isinstance(actual, list)
            and len(actual) == len(desired)
            and all(matches(a, d) for a, d in zip(actual, desired, strict=True))
        )
    return actual == desired


def _data(listing: Any) -> list[dict]:
    """Metabase lists come bare or wrapped in ``{"data": [...]}`` depending on the endpoint."""
    return listing["data"] if isinstance(listing, dict) else listing


class Provisioner:
    def __init__(self, client: MetabaseClient, spec: Spec):
        self.client = client
        self.spec = spec
        self.actions: Counter[str] = Counter()

    def _upsert(self, kind: str, existing: dict | None, desired: dict, endpoint: str) -> dict:
        """Create ``desired`` at ``endpoint`` or bring ``existing`` up to it; returns the object."""
        if existing is None:
            self.actions[f"{kind}_created"] += 1
            return self.client.post(endpoint, desired)
        full = self.client.get(f"{endpoint}/{existing['id']}")
        if matches(full, desired):
            self.actions[f"{kind}_unchanged"] += 1
            return full
        self.actions[f"{kind}_updated"] += 1
        return self.client.put(f"{endpoint}/{existing['id']}", desired)

    def database(self, details: dict) -> int:
        existing = next((d for d in _data(self.client.get("/api/database")) if d["name"] == self.spec.database), None)
        desired = {"name": self.spec.database, "engine": "postgres", "details": details}
        if existing is not None:
            full = self.client.get(f"/api/database/{existing['id']}")
            # the password cannot be read back: compare everything else, resend it on change
            public = {**desired, "details": {k: v for k, v in details.items() if k != "password"}}
            if matches(full, public):
                self.actions["database_unchanged"] += 1
                return full["id"]
            self.actions["database_updated"] += 1
            return self.client.put(f"/api/database/{existing['id']}", desired)["id"]
        self.actions["database_created"] += 1
        return self.client.post("/api/database", desired)["id"]

    def collection(self) -> int:
        existing = next(
            (
                c
                for c in _data(self.client.get("/api/collection"))
                if c.get("name") == self.spec.collection
                and not c.get("archived")
                and c.get("location", "/") == "/"
                and not c.get("personal_owner_id")
            ),
            None,
        )
        desired = {"name": self.spec.collection, "description": self.spec.collection_description, "parent_id": None}
        return self._upsert("collection", existing, desired, "/api/collection")["id"]

    def _items(self, collection_id: int, model: str) -> dict[str, dict]:
        items = _data(self.client.get(f"/api/collection/{collection_id}/items", models=model))
        return {i["name"]: i for i in items if i.get("model") == model}

    def card(self, card: Card, existing: dict | None, database_id: int, collection_id: int) -> int:
        desired = {
            "name": card.name,
            "description": card.description,
            "display": card.display,
            "collection_id": collection_id,
            "dataset_query": {
                "type": "native",
                "database": database_id,
                "native": {"query": card.sql, "template-tags": {}},
            },
            "visualization_settings": card.visualization_settings,
        }
        return self._upsert("card", existing, desired, "/api/card")["id"]

    def dashboard(self, dashboard: Dashboard, existing: dict | None, collection_id: int, card_ids: dict[str, int]):
        desired = {"name": dashboard.name, "description": dashboard.description, "collection_id": collection_id}
        created = existing is None
        if created:
            existing = self.client.post("/api/dashboard", desired)
        full = self.client.get(f"/api/dashboard/{existing['id']}")
        layout = [
            {"card_id": card_ids[p.card], "row": p.row, "col": p.col, "size_x": p.size_x, "size_y": p.size_y}
            for p in dashboard.cards
        ]
        current = sorted(
            (d["card_id"], d["row"], d["col"], d["size_x"], d["size_y"]) for d in full.get("dashcards") or []
        )
        wanted = sorted(tuple(d.values()) for d in layout)
        if current == wanted and matches(full, desired):
            self.actions["dashboard_unchanged"] += 1
            return
        self.actions["dashboard_created" if created else "dashboard_updated"] += 1
        # keep the ids of cards already on the dashboard; new dashcards take negative ids
        reuse = {d["card_id"]: d["id"] for d in full.get("dashcards") or []}
        dashcards = [
            {
                "id": reuse.pop(d["card_id"], -(i + 1)),
                **d,
                "parameter_mappings": [],
                "visualization_settings": {},
            }
            for i, d in enumerate(layout)
        ]
        self.client.put(f"/api/dashboard/{existing['id']}", {**desired, "dashcards": dashcards})

    def run(self, database_details: dict) -> dict:
        database_id = self.database(database_details)
        collection_id = self.collection()
        cards = self._items(collection_id, "card")
        card_ids = {c.name: self.card(c, cards.get(c.name), database_id, collection_id) for c in self.spec.cards}
        dashboards = self._items(collection_id, "dashboard")
        for d in self.spec.dashboards:
            self.dashboard(d, dashboards.get(d.name), collection_id, card_ids)
        return {
            "database_id": database_id,
            "collection_id": collection_id,
            "cards": len(card_ids),
            "dashboards": len(self.spec.dashboards),
            **dict(sorted(self.actions.items())),
            "writes": sum(self.client.writes.values()),
        }


def database_details(url: str) -> dict:
    """Metabase's Postgres connection details for the warehouse at libpq ``url``."""
    from ..warehouse.transform import profile_env

    env = profile_env(url)
    return {
        "host": env["DX7LAKE_PG_HOST"],
        "port": int(env["DX7LAKE_PG_PORT"]),
        "dbname": env["DX7LAKE_PG_DBNAME"],
        "user": env["DX7LAKE_PG_USER"],
        "password": env["DX7LAKE_PG_PASSWORD"],
        "ssl": False,
    }


def provision(client: MetabaseClient, warehouse_url: str, spec_path=DEFAULT_SPEC) -> dict:
    return Provisioner(client, load_spec(spec_path)).run(database_details(warehouse_url))


def ensure_admin(url: str, email: str, password: str) -> bool:
    """Finish a fresh Metabase's first-run setup with this admin; True when it did.

    A new Metabase (as docker-compose starts it) has no user: it publishes a one-time setup
    token at ``GET /api/session/properties`` and takes the first admin at ``POST /api/setup``.
    An instance that is already set up is left alone.
    """
    import requests

    props = requests.get(f"{url}/api/session/properties", timeout=30)
    if not props.ok:
        raise MetabaseError(f"GET /api/session/properties -> {props.status_code}: {props.text[:500]}")
    body = props.json()
    if body.get("has-user-setup") or not body.get("setup-token"):
        return False
    payload = {
        "token": body["setup-token"],
        "user": {"email": email, "password": password, "first_name": "dx7lake", "last_name": "admin"},
        "prefs": {"site_name": "dx7lake", "allow_tracking": False},
    }
    res = requests.post(f"{url}/api/setup", json=payload, timeout=60)
    if not res.ok:
        raise MetabaseError(f"POST /api/setup -> {res.status_code}: {res.text[:500]}")
    log.info("Metabase at %s set up with admin %s", url, email)
    return True


def provision_from_settings(settings: Settings, spec_path=DEFAULT_SPEC) -> dict:
    """Provision the Metabase at ``settings.metabase_url`` with its credentials.

    Metabase usually reaches the warehouse by another address than the pipeline does (in
    docker-compose, by the service name): ``METABASE_WAREHOUSE_URL`` gives that address,
    and defaults to the pipeline's own warehouse URL.
    """
    from ..warehouse.postgres import warehouse_url

    url = settings.metabase_url
    if not url:
        raise MetabaseError("METABASE_URL is not set")
    user, password = settings.metabase_user, settings.metabase_password
    if user and password:
        ensure_admin(url, user, password)
    client = MetabaseClient(url, user=user, password=password, api_key=settings.metabase_api_key)
    result = provision(client, settings.metabase_warehouse_url or warehouse_url(settings), spec_path)
    log.info("Metabase at %s provisioned: %s", url, result)
    return result
