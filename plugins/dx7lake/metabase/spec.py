"""The dashboards-as-code spec: cards (native SQL over the warehouse) and dashboard layouts.

The spec is checked whole before anything is sent to Metabase, so a typo in the YAML
fails with a message naming the card or dashboard instead of half-provisioning it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import yaml

DEFAULT_SPEC = Path(__file__).with_name("dashboards.yml")
GRID_COLUMNS = 24  # Metabase's dashboard grid
DISPLAYS = {"table", "bar", "line", "row", "pie", "scalar", "area", "scatter"}
# Metabase rewrites these in saved visualization settings (models/interface.clj,
# transform-visualization-settings): a spec holding one never reads back as written, so
# every provisioning run would rewrite its card. They are refused instead.
LEGACY_FIELD_REFS = {"field-id", "fk->", "datetime-field", "joined-field", "binning-strategy"}
MIGRATED_SETTINGS = {"pie.show_legend", "pie.show_legend_perecent"}  # [sic]: Metabase's v1 key


class SpecError(ValueError):
    """The dashboard spec is malformed."""


@dataclass(frozen=True)
class Card:
    name: str
    sql: str
    display: str
    description: str | None = None
    visualization_settings: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Placement:
    card: str
    row: int
    col: int
    size_x: int
    size_y: int

    def cells(self) -> set[tuple[int, int]]:
        return {
            (r, c) for r in range(self.row, self.row + self.size_y) for c in range(self.col, self.col + self.size_x)
        }


@dataclass(frozen=True)
class Dashboard:
    name: str
    cards: tuple[Placement, ...]
    description: str | None = None


@dataclass(frozen=True)
class Spec:
    database: str
    collection: str
    collection_description: str | None
    cards: tuple[Card, ...]
    dashboards: tuple[Dashboard, ...]


def load_spec(path: str | Path = DEFAULT_SPEC) -> Spec:
    """Read and check the spec at ``path``."""
    try:
        raw = yaml.safe_load(Path(path).read_text())
        collection = raw["collection"]
        spec = Spec(
            database=str(raw["database"]),
            collection=str(collection["name"]),
            collection_description=collection.get("description"),
            cards=tuple(
                Card(
                    name=c["name"],
                    sql=c["sql"].strip(),
                    display=c["display"],
                    description=c.get("description"),
                    visualization_settings=c.get("visualization_settings") or {},
                )
                for c in raw["cards"]
            ),
            dashboards=tuple(
                Dashboard(
                    name=d["name"],
                    description=d.get("description"),
                    cards=tuple(
                        Placement(p["card"], int(p["row"]), int(p["col"]), int(p["size_x"]), int(p["size_y"]))
                        for p in d["cards"]
                    ),
                )
                for d in raw["dashboards"]
            ),
        )
    except (KeyError, TypeError, AttributeError) as err:
        raise SpecError(f"{path}: missing or malformed field {err}") from None
    _check(spec)
    return spec


def _check(spec: Spec) -> None:
    names = [c.name for c in spec.cards]
    if len(set(names)) != len(names):
        raise SpecError(f"card names repeat: {sorted({n for n in names if names.count(n) > 1})}")
    for card in spec.cards:
        if card.display not in DISPLAYS:
            raise SpecError(f"card {card.name!r}: display {card.display!r} is not one of {sorted(DISPLAYS)}")
        problem = _rewritten_by_metabase(card.visualization_settings)
        if problem:
            raise SpecError(f"card {card.name!r}: {problem}, which Metabase rewrites when it saves the card")
    dashboards = [d.name for d in spec.dashboards]
    if len(set(dashboards)) != len(dashboards):
        raise SpecError("dashboard names repeat")
    for dashboard in spec.dashboards:
        taken: set[tuple[int, int]] = set()
        for p in dashboard.cards:
            where = f"dashboard {dashboard.name!r}, card {p.card!r}"
            if p.card not in names:
                raise SpecError(f"{where}: no such card")
            if min(p.row, p.col) < 0 or min(p.size_x, p.size_y) < 1 or p.col + p.size_x > GRID_COLUMNS:
                raise SpecError(f"{where}: outside the {GRID_COLUMNS}-column grid")
            if taken & p.cells():
                raise SpecError(f"{where}: overlaps another card")
            taken |= p.cells()


def _rewritten_by_metabase(settings: dict) -> str | None:
    """What in ``settings`` Metabase would store in another form, or None."""
    for key in settings.get("column_settings") or {}:
        try:
            ref = json.loads(key)
        except ValueError:
            return f"column_settings key {key!r} is not JSON"
        if json.dumps(ref, separators=(",", ":")) != key:
            return f"column_settings key {key!r} is not compact JSON"
    if any("key" in column for column in settings.get("table.columns") or []):
        return "a table.columns entry has a 'key'"
    if MIGRATED_SETTINGS & settings.keys():
        return f"{sorted(MIGRATED_SETTINGS & settings.keys())} (use pie.percent_visibility)"
    if (settings.get("click_behavior") or {}).get("linkType") == "page":
        return "click_behavior.linkType 'page' (use 'dashboard')"
    refs = {k: v for k, v in settings.items() if k != "graph.metrics"}  # metric names are not references
    return _legacy_ref(refs)


def _legacy_ref(form) -> str | None:
    head = form[0] if isinstance(form, list) and form and isinstance(form[0], str) else None
    if head in LEGACY_FIELD_REFS or (head == "field" and len(form) == 2):
        return f"the legacy field reference {form!r}"
    items = form.values() if isinstance(form, dict) else form if isinstance(form, list) else ()
    return next((found for found in map(_legacy_ref, items) if found), None)
