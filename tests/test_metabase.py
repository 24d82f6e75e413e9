"""Metabase dashboards as code, provisioned against a local stand-in of the Metabase API
(Metabase itself cannot run here; see tests/metabase_standin.py)."""

from __future__ import annotations

import json

import pytest
import yaml

from dx7lake.metabase.provision import MetabaseClient, MetabaseError, provision
from dx7lake.metabase.spec import DEFAULT_SPEC, SpecError, load_spec
from metabase_standin import REDACTED, MetabaseStandIn, normalize_query, normalize_visualization_settings

WAREHOUSE = "postgresql://dx7:pw@warehouse:5432/dx7lake"


@pytest.fixture
def metabase():
    with MetabaseStandIn() as standin:
        yield standin


def _client(standin: MetabaseStandIn) -> MetabaseClient:
    return MetabaseClient(standin.url, user="admin@example.com", password="secret")


def _layout(standin: MetabaseStandIn) -> dict[str, set[tuple]]:
    names = {c["id"]: c["name"] for c in standin.cards.values()}
    return {
        d["name"]: {(names[c["card_id"]], c["row"], c["col"], c["size_x"], c["size_y"]) for c in d["dashcards"]}
        for d in standin.dashboards.values()
    }


# Settings Metabase keeps as written: a column_settings key in compact JSON, table.columns
# without "key", a reference in today's ["field", ..., options] form.
KEPT_SETTINGS = {
    "column_settings": {'["name","rows_per_second"]': {"decimals": 1, "suffix": " rows/s"}},
    "table.columns": [{"name": "stage", "enabled": True, "fieldRef": ["field", "stage", {"base-type": "type/Text"}]}],
    "graph.metrics": ["expression"],  # metric names are not references, even this one
}


def test_the_standin_answers_as_metabase_v056_does():
    """Hand-worked from Metabase's source (models/interface.clj normalize-visualization-settings
    and migrate-viz-settings, legacy_mbql/normalize.cljc remove-empty-clauses): the stand-in
    rewrites what Metabase rewrites and keeps what it keeps."""
    sent = {
        "column_settings": {'["name", "rows"]': {"decimals": 1}, '["ref",["field-id",7]]': {"prefix": "$"}},
        "table.columns": [{"name": "a", "key": "old", "enabled": True}],
        "table.pivot_column": ["fk->", ["field-id", 1], ["field-id", 2]],
        "graph.dimensions": [["field-id", 3]],
        "graph.metrics": ["expression"],
        "columns": ["expression", "field"],
        "pie.show_legend": True,
        "click_behavior": {"type": "link", "linkType": "page"},
    }
    assert normalize_visualization_settings(sent) == {
        "column_settings": {'["name","rows"]': {"decimals": 1}, '["ref",["field",7,null]]': {"prefix": "$"}},
        "table.columns": [{"name": "a", "enabled": True}],
        "table.pivot_column": ["field", 2, {"source-field": 1}],
        "graph.dimensions": [["field", 3, None]],
        "graph.metrics": ["expression"],
        "columns": ["expression", "field"],
        "pie.show_legend": True,
        "pie.percent_visibility": "inside",
        "click_behavior": {"type": "link", "linkType": "dashboard"},
    }
    assert normalize_visualization_settings(KEPT_SETTINGS) == KEPT_SETTINGS
    query = {"type": "native", "database": 1, "parameters": [], "native": {"query": "select 1", "template-tags": {}}}
    assert normalize_query(query) == {"type": "native", "database": 1, "native": query["native"]}


def test_provisioning_twice_creates_everything_once_then_changes_nothing(metabase, tmp_path):
    raw = yaml.safe_load(DEFAULT_SPEC.read_text())
    raw["cards"][0]["visualization_settings"] = KEPT_SETTINGS
    spec_path = tmp_path / "dashboards.yml"
    spec_path.write_text(yaml.safe_dump(raw))
    spec = load_spec(spec_path)
    first = provision(_client(metabase), WAREHOUSE, spec_path)
    assert first["database_created"] == first["collection_created"] == 1
    assert first["card_created"] == len(spec.cards) == len(metabase.cards)
    assert first["dashboard_created"] == len(spec.dashboards) == len(metabase.dashboards)
    db = next(iter(metabase.databases.values()))
    assert db["details"] == {
        "host": "warehouse",
        "port": 5432,
        "dbname": "dx7lake",
        "user": "dx7",
        "password": "pw",
        "ssl": False,
    }
    wanted = {d.name: {(p.card, p.row, p.col, p.size_x, p.size_y) for p in d.cards} for d in spec.dashboards}
    assert _layout(metabase) == wanted
    assert all(c["dataset_query"]["database"] == db["id"] for c in metabase.cards.values())
    first_card = next(c for c in metabase.cards.values() if c["name"] == raw["cards"][0]["name"])
    assert first_card["visualization_settings"] == KEPT_SETTINGS and "updated_at" in first_card
    writes = len(metabase.writes())

    # the stand-in answers with Metabase's normalized forms and added fields, not an echo
    second = provision(_client(metabase), WAREHOUSE, spec_path)
    assert len(metabase.writes()) == writes, "a second run must send no write"
    assert second["writes"] == 0
    assert second["card_unchanged"] == len(spec.cards) and second["dashboard_unchanged"] == len(spec.dashboards)
    assert (len(metabase.databases), len(metabase.collections), len(metabase.cards)) == (1, 1, len(spec.cards))
    assert _layout(metabase) == wanted
    assert not any(path.endswith("/cards") for _, path in metabase.requests), "removed endpoint called"


def test_a_changed_spec_updates_in_place(metabase, tmp_path):
    provision(_client(metabase), WAREHOUSE)
    raw = yaml.safe_load(DEFAULT_SPEC.read_text())
    raw["cards"][0]["sql"] = "select 1 as one"
    first_dashboard = raw["dashboards"][0]
    moved = first_dashboard["cards"][-1]["card"]
    first_dashboard["cards"][-1] |= {"row": 40, "col": 0}
    spec_path = tmp_path / "dashboards.yml"
    spec_path.write_text(yaml.safe_dump(raw))
    dashcard_ids = {d["id"] for dash in metabase.dashboards.values() for d in dash["dashcards"]}
    before = len(metabase.writes())

    result = provision(_client(metabase), WAREHOUSE, spec_path)

    assert result["card_updated"] == 1 and result["dashboard_updated"] == 1 and result["writes"] == 2
    assert len(metabase.writes()) == before + 2
    card = next(c for c in metabase.cards.values() if c["name"] == raw["cards"][0]["name"])
    assert card["dataset_query"]["native"]["query"] == "select 1 as one"
    assert (moved, 40, 0) in {t[:3] for t in _layout(metabase)[first_dashboard["name"]]}
    assert {d["id"] for dash in metabase.dashboards.values() for d in dash["dashcards"]} == dashcard_ids


def test_a_changed_warehouse_address_updates_the_connection_without_reading_its_password(metabase):
    provision(_client(metabase), WAREHOUSE)
    assert metabase._db(next(iter(metabase.databases.values())))["details"]["password"] == REDACTED
    result = provision(_client(metabase), WAREHOUSE.replace("warehouse:5432", "db.internal:6432"))
    assert result["database_updated"] == 1 and result["writes"] == 1
    db = next(iter(metabase.databases.values()))
    assert (db["details"]["host"], db["details"]["port"], db["details"]["password"]) == ("db.internal", 6432, "pw")


def test_errors_raise_instead_of_returning_false(metabase):
    with pytest.raises(MetabaseError, match="login"):
        MetabaseClient(metabase.url, user="admin@example.com", password="wrong")
    client = _client(metabase)
    with pytest.raises(MetabaseError, match=r"POST /api/card -> 400: .*dataset_query"):
        client.post("/api/card", {"name": "x", "display": "table", "visualization_settings": {}, "dataset_query": {}})


def _add_unknown_card(raw: dict) -> None:
    raw["dashboards"][0]["cards"].append({"card": "nope", "row": 99, "col": 0, "size_x": 1, "size_y": 1})


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (_add_unknown_card, "no such card"),
        (lambda raw: raw["dashboards"][0]["cards"][1].update(row=0, col=0), "overlaps"),
        (lambda raw: raw["dashboards"][0]["cards"][0].update(col=20), "grid"),
        (lambda raw: raw["cards"].append(dict(raw["cards"][0])), "repeat"),
        (lambda raw: raw["cards"][0].update(display="sparkles"), "display"),
        (lambda raw: raw["cards"][0].pop("sql"), "sql"),
        (
            lambda raw: raw["cards"][0].update(visualization_settings={"column_settings": {'["name", "x"]': {}}}),
            "not compact JSON",
        ),
        (
            lambda raw: raw["cards"][0].update(visualization_settings={"table.columns": [{"name": "x", "key": "k"}]}),
            "'key'",
        ),
        (lambda raw: raw["cards"][0].update(visualization_settings={"pie.show_legend": True}), "percent_visibility"),
        (
            lambda raw: raw["cards"][0].update(visualization_settings={"graph.dimensions": [["field-id", 3]]}),
            "legacy field reference",
        ),
    ],
)
def test_a_malformed_spec_is_refused_before_any_request(tmp_path, edit, message):
    raw = yaml.safe_load(DEFAULT_SPEC.read_text())
    edit(raw)
    path = tmp_path / "bad.yml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(SpecError, match=message):
        load_spec(path)


def test_cli_provisions_from_the_environment(metabase, tmp_path, monkeypatch, capsys):
    from dx7lake.cli import main

    monkeypatch.setenv("METABASE_URL", "http://127.0.0.1:9/overridden-by-url")
    monkeypatch.setenv("METABASE_USER", "admin@example.com")
    monkeypatch.setenv("METABASE_PASSWORD", "secret")
    monkeypatch.setenv("METABASE_WAREHOUSE_URL", WAREHOUSE)
    assert main(["metabase", "provision", "--url", metabase.url, "--home", str(tmp_path)]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["cards"] == len(metabase.cards) and out["dashboards"] == len(metabase.dashboards)


def test_a_fresh_metabase_gets_its_admin_then_dashboards(tmp_path, monkeypatch, capsys):
    """docker-compose starts Metabase with no user: provisioning completes its setup first."""
    from dx7lake.cli import main
    from dx7lake.metabase.provision import ensure_admin

    with MetabaseStandIn(fresh=True) as fresh:
        monkeypatch.setenv("METABASE_USER", "admin@dx7lake.local")
        monkeypatch.setenv("METABASE_PASSWORD", "pw-from-env")
        monkeypatch.setenv("METABASE_WAREHOUSE_URL", WAREHOUSE)
        assert main(["metabase", "provision", "--url", fresh.url, "--home", str(tmp_path)]) == 0
        assert fresh.users == {"admin@dx7lake.local": "pw-from-env"}
        assert fresh.cards and fresh.dashboards
        # set up once: a second call leaves the instance alone
        assert ensure_admin(fresh.url, "someone@else", "x") is False
        assert ("POST", "/api/setup") in fresh.requests and fresh.requests.count(("POST", "/api/setup")) == 1
