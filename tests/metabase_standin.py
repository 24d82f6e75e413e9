"""A local HTTP stand-in for the Metabase API endpoints dx7lake's provisioner calls.

Metabase (a JVM service) cannot run on the test machines, so this implements the
documented endpoints we use, with their answer shapes, and checks each payload the way
Metabase's schemas do (a bad payload gets a 400, an unknown endpoint a 404, a missing or
stale session a 401). It keeps every request so tests can count writes. It is not
Metabase: docker-compose runs the real one (v0.56.3).

What Metabase stores is not what it was sent, and an idempotency check that compares with
an echo proves nothing. So a saved card or dashcard is answered as Metabase answers it
(``src/metabase/models/interface.clj`` and ``legacy_mbql/normalize.cljc``, v0.56):

- ``visualization_settings`` (``transform-visualization-settings``, on the way out):
  ``column_settings`` keys are re-encoded as compact JSON of the normalized reference
  (``'["name", "rows"]'`` -> ``'["name","rows"]'``); legacy field clauses anywhere but in
  ``graph.metrics`` and in a ``columns`` list of names become ``["field", id, null]``
  (``["field-id", 7]``, ``["fk->", a, b]`` -> ``["field", b_id, {"source-field": a_id}]``);
  ``table.columns`` entries lose their unused ``key``; the v1 -> v2 migration turns
  ``pie.show_legend`` / ``pie.show_legend_perecent`` [sic] into ``pie.percent_visibility``
  (``inside`` / ``legend``) and a ``click_behavior.linkType`` of ``page`` into ``dashboard``;
- ``dataset_query`` (``transform-metabase-query``, legacy MBQL normalize): nil and empty
  clauses are dropped everywhere except under ``native``, which is kept verbatim;
- a card gains the fields Metabase fills (``type``, ``query_type``, ``database_id``,
  ``parameters``, ``parameter_mappings``, ``entity_id``, ``created_at``, ``updated_at``, ...),
  a dashcard ``series`` and ``dashboard_tab_id``, and each write moves ``updated_at``.
"""

from __future__ import annotations

import itertools
import json
import re
import secrets
import threading
import time
import uuid
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

REDACTED = "**MetabasePass**"
GRID_COLUMNS = 24
# the clause heads metabase.models.interface/normalize-visualization-settings normalizes
FIELD_CLAUSES = {"field-id", "fk->", "datetime-field", "joined-field", "binning-strategy", "field", "aggregation",
                 "expression"}  # fmt: skip


def normalize_field_clause(clause: list) -> list:
    """Legacy MBQL field references as ``mbql.normalize/normalize`` rewrites them (the two
    forms a hand-written spec would use; others are returned as sent)."""
    head = clause[0]
    if head == "field-id":
        return ["field", clause[1], None]
    if head == "fk->":
        source, target = (normalize_field_clause(c) for c in clause[1:3])
        return ["field", target[1], {**(target[2] or {}), "source-field": source[1]}]
    if head == "field" and len(clause) == 2:
        return ["field", clause[1], None]
    return clause


def _is_field_clause(form) -> bool:
    return isinstance(form, list) and bool(form) and isinstance(form[0], str) and form[0] in FIELD_CLAUSES


def _normalize_clauses(form, key: str | None = None):
    if _is_field_clause(form):
        return normalize_field_clause(form)
    if isinstance(form, list):
        # a `columns` list of plain names is left alone (a name may be "expression")
        if key == "columns" and not any(map(_is_field_clause, form)):
            return form
        return [_normalize_clauses(x) for x in form]
    if isinstance(form, dict):
        return {k: _normalize_clauses(v, k) for k, v in form.items()}
    return form


def normalize_visualization_settings(settings: dict) -> dict:
    """``visualization_settings`` as Metabase answers them (see the module docstring)."""
    out = {k: _normalize_clauses(v, k) for k, v in settings.items() if k not in ("column_settings", "graph.metrics")}
    if "table.columns" in out:
        out["table.columns"] = [{k: v for k, v in c.items() if k != "key"} for c in out["table.columns"]]
    if "column_settings" in settings:
        out["column_settings"] = {
            json.dumps(_column_key(json.loads(k)), separators=(",", ":")): v
            for k, v in settings["column_settings"].items()
        }
    if "graph.metrics" in settings:
        out["graph.metrics"] = settings["graph.metrics"]
    legend, percent = out.get("pie.show_legend"), out.get("pie.show_legend_perecent")
    if legend or percent:
        out["pie.percent_visibility"] = "inside" if legend else "legend"
    click = out.get("click_behavior")
    if isinstance(click, dict) and click.get("linkType") == "page":
        out["click_behavior"] = {**click, "linkType": "dashboard"}
    return out


def _column_key(ref):
    if isinstance(ref, list) and ref and ref[0] == "ref":
        return ["ref", normalize_field_clause(ref[1])]
    if _is_field_clause(ref):
        return normalize_field_clause(ref)
    return ref


def normalize_query(query):
    """Legacy ``mbql.normalize/normalize``'s empty-clause removal: nil, ``{}`` and ``[]``
    values go, except under ``native`` (kept verbatim)."""
    if isinstance(query, dict):
        kept = {k: v if k == "native" else normalize_query(v) for k, v in query.items()}
        return {k: v for k, v in kept.items() if k == "native" or v not in (None, {}, [])}
    if isinstance(query, list):
        return [normalize_query(v) for v in query]
    return query


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + f".{time.time_ns() % 10**9:09d}Z"


class Reject(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def _need(cond: bool, message: str) -> None:
    if not cond:
        raise Reject(HTTPStatus.BAD_REQUEST, message)


class MetabaseStandIn:
    def __init__(self, email: str = "admin@example.com", password: str = "secret", fresh: bool = False):
        # fresh: a new instance with no user yet, waiting for its first-run setup
        self.users = {} if fresh else {email: password}
        self.setup_token = str(uuid.uuid4()) if fresh else None
        self.sessions: set[str] = set()
        self.requests: list[tuple[str, str]] = []
        self.ids = itertools.count(1)
        self.databases: dict[int, dict] = {}
        self.collections: dict[int, dict] = {}
        self.cards: dict[int, dict] = {}
        self.dashboards: dict[int, dict] = {}
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.server.server_port}"

    def __enter__(self) -> MetabaseStandIn:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def writes(self) -> list[tuple[str, str]]:
        """Requests that change state, login apart."""
        return [(m, p) for m, p in self.requests if m in ("POST", "PUT", "DELETE") and p != "/api/session"]

    # --- routing -----------------------------------------------------------------------

    def _handler(self):
        standin = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # keep test output quiet
                pass

            def _serve(self, method: str) -> None:
                url = urlparse(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw) if raw else None
                    with standin.lock:
                        standin.requests.append((method, url.path))
                        status, answer = standin.dispatch(
                            method, url.path, parse_qs(url.query), body, self.headers.get("X-Metabase-Session")
                        )
                except Reject as err:
                    status, answer = err.status, {"message": str(err)}
                except json.JSONDecodeError:
                    status, answer = HTTPStatus.BAD_REQUEST, {"message": "body is not JSON"}
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                self._serve("GET")

            def do_POST(self) -> None:
                self._serve("POST")

            def do_PUT(self) -> None:
                self._serve("PUT")

            def do_DELETE(self) -> None:
                self._serve("DELETE")

        return Handler

    def dispatch(self, method: str, path: str, query: dict, body, session: str | None):
        if (method, path) == ("POST", "/api/session"):
            return self.login(body)
        if (method, path) == ("GET", "/api/session/properties"):
            return HTTPStatus.OK, {"has-user-setup": bool(self.users), "setup-token": self.setup_token}
        if (method, path) == ("POST", "/api/setup"):
            return self.setup(body)
        if session not in self.sessions:
            raise Reject(HTTPStatus.UNAUTHORIZED, "Unauthenticated")
        routes = [
            ("GET", r"/api/user/current", lambda: {"id": 1, "email": next(iter(self.users))}),
            ("GET", r"/api/database", lambda: {"data": [self._db(d) for d in self.databases.values()]}),
            ("POST", r"/api/database", lambda: self.create_database(body)),
            ("GET", r"/api/database/(\d+)", lambda i: self._db(self._get(self.databases, i))),
            ("PUT", r"/api/database/(\d+)", lambda i: self.update_database(i, body)),
            ("GET", r"/api/collection", self.list_collections),
            ("POST", r"/api/collection", lambda: self.create_collection(body)),
            ("GET", r"/api/collection/(\d+)", lambda i: self._get(self.collections, i)),
            ("PUT", r"/api/collection/(\d+)", lambda i: self.update_collection(i, body)),
            ("GET", r"/api/collection/(\d+)/items", lambda i: self.items(i, query)),
            ("POST", r"/api/card", lambda: self.create_card(body)),
            ("GET", r"/api/card/(\d+)", lambda i: self._get(self.cards, i)),
            ("PUT", r"/api/card/(\d+)", lambda i: self.update_card(i, body)),
            ("POST", r"/api/dashboard", lambda: self.create_dashboard(body)),
            ("GET", r"/api/dashboard/(\d+)", lambda i: self._get(self.dashboards, i)),
            ("PUT", r"/api/dashboard/(\d+)", lambda i: self.update_dashboard(i, body)),
        ]
        for verb, pattern, fn in routes:
            match = re.fullmatch(pattern + "/?", path)
            if verb == method and match:
                return HTTPStatus.OK, fn(*(int(g) for g in match.groups()))
        raise Reject(HTTPStatus.NOT_FOUND, f"API endpoint does not exist: {method} {path}")

    # --- endpoints ---------------------------------------------------------------------

    def setup(self, body):
        _need(isinstance(body, dict) and isinstance(body.get("user"), dict), "user is required")
        if self.users or body.get("token") != self.setup_token:
            raise Reject(HTTPStatus.FORBIDDEN, "The /api/setup route can only be used to create the first user")
        user = body["user"]
        _need({"email", "password", "first_name"} <= set(user), "user needs email, password, first_name")
        self.users[user["email"]] = user["password"]
        self.setup_token = None
        token = str(uuid.uuid4())
        self.sessions.add(token)
        return HTTPStatus.OK, {"id": token}

    def login(self, body):
        _need(isinstance(body, dict) and {"username", "password"} <= set(body), "username and password required")
        if self.users.get(body["username"]) != body["password"]:
            raise Reject(HTTPStatus.UNAUTHORIZED, "did not match stored password")
        token = str(uuid.uuid4())
        self.sessions.add(token)
        return HTTPStatus.OK, {"id": token}

    @staticmethod
    def _get(table: dict, i: int) -> dict:
        if i not in table:
            raise Reject(HTTPStatus.NOT_FOUND, "Not found.")
        return table[i]

    @staticmethod
    def _db(db: dict) -> dict:
        return {**db, "details": {**db["details"], "password": REDACTED}}

    def _check_database(self, body: dict, partial: bool) -> None:
        _need(isinstance(body, dict), "body must be a map")
        if not partial or "name" in body:
            _need(isinstance(body.get("name"), str) and body["name"], "name must be a non-blank string")
        if not partial or "engine" in body:
            _need(body.get("engine") == "postgres", "engine must be a valid database engine")
        if not partial or "details" in body:
            details = body.get("details")
            _need(isinstance(details, dict), "details must be a map")
            for key in ("host", "dbname", "user"):
                _need(isinstance(details.get(key), str) and details[key], f"details.{key} is required")
            _need(isinstance(details.get("port"), int), "details.port must be an integer")

    def create_database(self, body):
        self._check_database(body, partial=False)
        i = next(self.ids)
        self.databases[i] = {"id": i, "name": body["name"], "engine": body["engine"], "details": body["details"]}
        return self._db(self.databases[i])

    def update_database(self, i: int, body):
        db = self._get(self.databases, i)
        self._check_database(body, partial=True)
        if "details" in body and body["details"].get("password") == REDACTED:
            body = {**body, "details": {**body["details"], "password": db["details"].get("password")}}
        db.update({k: v for k, v in body.items() if k in ("name", "engine", "details")})
        return self._db(db)

    def list_collections(self):
        root = {"id": "root", "name": "Our analytics", "location": None, "archived": False}
        return [root, *self.collections.values()]

    def create_collection(self, body):
        _need(isinstance(body, dict) and isinstance(body.get("name"), str) and body["name"], "name is required")
        parent = body.get("parent_id")
        _need(parent is None or parent in self.collections, "parent_id must be an existing collection")
        i = next(self.ids)
        location = "/" if parent is None else f"{self.collections[parent]['location']}{parent}/"
        self.collections[i] = {
            "id": i,
            "name": body["name"],
            "description": body.get("description"),
            "location": location,
            "archived": False,
            "personal_owner_id": None,
        }
        return self.collections[i]

    def update_collection(self, i: int, body):
        collection = self._get(self.collections, i)
        _need(isinstance(body, dict), "body must be a map")
        collection.update({k: v for k, v in body.items() if k in ("name", "description")})
        return collection

    def items(self, i: int, query: dict):
        self._get(self.collections, i)
        models = set(query.get("models", [])) or {"card", "dashboard"}
        found = [
            {"id": o["id"], "name": o["name"], "model": model}
            for model, table in (("card", self.cards), ("dashboard", self.dashboards))
            if model in models
            for o in table.values()
            if o["collection_id"] == i and not o["archived"]
        ]
        return {"data": found, "total": len(found), "models": sorted(models)}

    def _check_card(self, body, partial: bool) -> None:
        _need(isinstance(body, dict), "body must be a map")
        required = ("name", "display", "dataset_query", "visualization_settings")
        for key in required if not partial else (k for k in required if k in body):
            _need(key in body, f"{key} is required")
        if "name" in body:
            _need(isinstance(body["name"], str) and body["name"], "name must be a non-blank string")
        if "display" in body:
            _need(isinstance(body["display"], str) and body["display"], "display must be a non-blank string")
        if "visualization_settings" in body:
            _need(isinstance(body["visualization_settings"], dict), "visualization_settings must be a map")
        if "dataset_query" in body:
            q = body["dataset_query"]
            _need(isinstance(q, dict) and q.get("type") == "native", "dataset_query must be a native query")
            _need(q.get("database") in self.databases, "dataset_query.database must be an existing database")
            native = q.get("native")
            _need(isinstance(native, dict) and isinstance(native.get("query"), str) and native["query"].strip(),
                  "dataset_query.native.query must be a non-blank string")  # fmt: skip
        if body.get("collection_id") is not None:
            _need(body["collection_id"] in self.collections, "collection_id must be an existing collection")

    @staticmethod
    def _stored_card(body: dict) -> dict:
        """A card payload as Metabase stores and answers it."""
        out = {k: v for k, v in body.items() if k != "id"}
        if "visualization_settings" in out:
            out["visualization_settings"] = normalize_visualization_settings(out["visualization_settings"])
        if "dataset_query" in out:
            out["dataset_query"] = normalize_query(out["dataset_query"])
            out["database_id"] = out["dataset_query"]["database"]
        return out

    def create_card(self, body):
        self._check_card(body, partial=False)
        i = next(self.ids)
        now = _now()
        self.cards[i] = {
            "id": i,
            "entity_id": secrets.token_urlsafe(16)[:21],
            "type": "question",
            "description": None,
            "collection_id": None,
            "collection_position": None,
            "archived": False,
            "query_type": "native",
            "table_id": None,
            "parameters": [],
            "parameter_mappings": [],
            "result_metadata": None,
            "cache_ttl": None,
            "enable_embedding": False,
            "embedding_params": None,
            "creator_id": 1,
            "created_at": now,
            "updated_at": now,
            **self._stored_card(body),
        }
        return self.cards[i]

    def update_card(self, i: int, body):
        card = self._get(self.cards, i)
        self._check_card(body, partial=True)
        card.update(self._stored_card(body), updated_at=_now())
        return card

    def create_dashboard(self, body):
        _need(isinstance(body, dict) and isinstance(body.get("name"), str) and body["name"], "name is required")
        collection = body.get("collection_id")
        _need(collection is None or collection in self.collections, "collection_id must be an existing collection")
        i = next(self.ids)
        now = _now()
        self.dashboards[i] = {
            "id": i,
            "entity_id": secrets.token_urlsafe(16)[:21],
            "name": body["name"],
            "description": body.get("description"),
            "collection_id": collection,
            "archived": False,
            "parameters": [],
            "tabs": [],
            "width": "fixed",
            "auto_apply_filters": True,
            "dashcards": [],
            "created_at": now,
            "updated_at": now,
        }
        return self.dashboards[i]

    def update_dashboard(self, i: int, body):
        dashboard = self._get(self.dashboards, i)
        _need(isinstance(body, dict), "body must be a map")
        if "dashcards" in body:
            dashboard["dashcards"] = self._dashcards(dashboard, body["dashcards"])
        dashboard.update({k: v for k, v in body.items() if k in ("name", "description", "collection_id")})
        dashboard["updated_at"] = _now()
        return dashboard

    def _dashcards(self, dashboard: dict, dashcards) -> list[dict]:
        """Replace a dashboard's cards as PUT /api/dashboard/:id does: negative ids are new,
        positive ones must be this dashboard's, omitted ones are removed."""
        _need(isinstance(dashcards, list), "dashcards must be a sequence")
        own = {d["id"] for d in dashboard["dashcards"]}
        placed = []
        for d in dashcards:
            _need(isinstance(d, dict) and isinstance(d.get("id"), int), "each dashcard needs an integer id")
            _need(d["id"] < 0 or d["id"] in own, f"dashcard {d['id']} is not on this dashboard")
            _need(d.get("card_id") in self.cards, "card_id must be an existing card")
            for key in ("row", "col", "size_x", "size_y"):
                _need(isinstance(d.get(key), int), f"{key} must be an integer")
            _need(d["row"] >= 0 and d["col"] >= 0 and d["size_x"] >= 1 and d["size_y"] >= 1, "bad position")
            _need(d["col"] + d["size_x"] <= GRID_COLUMNS, "dashcard is wider than the grid")
            _need(isinstance(d.get("parameter_mappings", []), list), "parameter_mappings must be a sequence")
            placed.append(
                {
                    "id": d["id"] if d["id"] > 0 else next(self.ids),
                    "dashboard_id": dashboard["id"],
                    "card_id": d["card_id"],
                    "card": self.cards[d["card_id"]],
                    **{k: d[k] for k in ("row", "col", "size_x", "size_y")},
                    "parameter_mappings": d.get("parameter_mappings", []),
                    "visualization_settings": normalize_visualization_settings(d.get("visualization_settings", {})),
                    "series": [],
                    "dashboard_tab_id": None,
                }
            )
        return placed
