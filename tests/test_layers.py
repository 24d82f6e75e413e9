"""The layer rules of docs/ARCHITECTURE.md, checked on the import statements themselves."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "plugins" / "dx7lake"
EVERYTHING = {"config", "lake", "bronze", "warehouse", "gold", "quality", "metabase", "browser", "release", "stages"}
# What each layer may import, besides itself (docs/ARCHITECTURE.md, "Layers and packages").
MAY_IMPORT = {
    "support": set(),  # run by `make setup` with the system Python, before anything is installed
    "config": set(),
    "lake": {"config"},
    "bronze": {"config", "lake"},
    "warehouse": {"config", "lake", "bronze"},
    "gold": {"config", "lake"},
    "quality": {"config", "lake", "bronze", "warehouse", "gold"},
    "metabase": {"config", "warehouse"},
    "browser": {"config", "lake", "warehouse", "gold", "release"},  # release: the card's plots for /stats
    "release": {"config", "lake", "gold", "__version__"},
    "dataset": {"lake", "release"},
    "orchestration": EVERYTHING,
    "stages": EVERYTHING - {"stages"},
    "cli": EVERYTHING | {"orchestration", "dataset"},
}


def layer_of(path: Path) -> str:
    return path.relative_to(PACKAGE).parts[0].removesuffix(".py")


def imported_layers(path: Path, source: str | None = None) -> set[str]:
    """Top-level dx7lake parts a module imports (relative imports resolved)."""
    here = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    package = here if path.name == "__init__.py" else here[:-1]
    package = [p for p in package if p != "__init__"]
    found = set()
    for node in ast.walk(ast.parse(path.read_text() if source is None else source)):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1] + (node.module.split(".") if node.module else [])
            else:
                base = (node.module or "").split(".")
            if base[:1] != ["dx7lake"]:
                continue
            targets = [base] if len(base) > 1 else [[*base, alias.name] for alias in node.names]
        elif isinstance(node, ast.Import):
            targets = [a.name.split(".") for a in node.names if a.name.startswith("dx7lake.")]
        else:
            continue
        found |= {t[1] for t in targets if len(t) > 1}
    return found


def test_every_layer_imports_only_what_it_may():
    broken = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        layer = layer_of(path)
        if layer == "__init__":
            continue
        extra = imported_layers(path) - MAY_IMPORT[layer] - {layer}
        if extra:
            broken[str(path.relative_to(PACKAGE))] = sorted(extra)
    assert not broken, broken


def test_every_layer_package_says_what_it_owns_and_may_import():
    for init in PACKAGE.glob("*/__init__.py"):
        doc = ast.get_docstring(ast.parse(init.read_text())) or ""
        assert "May import" in doc and "ARCHITECTURE.md" in doc, init


def test_the_checker_sees_a_forbidden_import():
    """The rule can fail: relative and absolute upward imports in gold are found."""
    engine = PACKAGE / "gold" / "engine.py"
    assert imported_layers(engine) == {"config", "gold"}
    assert imported_layers(engine, "from ..warehouse import postgres\n") == {"warehouse"}
    assert imported_layers(engine, "from .. import quality\nimport dx7lake.browser.app\n") == {"quality", "browser"}
