"""The one configuration object: every environment variable and default, read once.

``load_settings()`` reads the process environment (and nothing else does) into a frozen
``Settings`` that is handed down to every stage; the CLI passes its options as overrides
instead of writing environment variables. Everything defaults to an embedded layout under
``DX7LAKE_HOME`` so that a fresh clone runs with no services; each piece can be pointed at
a real service by one variable. ``VARIABLES`` lists them all: the README's settings table
is generated from it (``dx7lake settings --markdown``) and a test keeps the two equal.

Render parameters that a run chooses (voices, tempo, sample rate) are DAG params and CLI
options; their defaults live here once (``DEFAULT_*``). ``PHRASE_BEATS`` is silver's phrase
window as gold renders it; dbt's ``beats_per_phrase`` var must equal it (a test checks).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

DEFAULT_HOME = ".dx7lake"
WAREHOUSE_CONN_ID = "dx7lake_warehouse"
REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_DBT_PROJECT = REPO_ROOT / "dbt"

# What a run renders unless told otherwise (DAG params, CLI options, RenderSpec).
DEFAULT_PATCHES = "epiano,bell"
DEFAULT_BPM = 120.0
DEFAULT_SAMPLE_RATE = 22050
PHRASE_BEATS = 4.0  # = dbt var beats_per_phrase (tests/test_config.py)
DEFAULT_SPLIT = (("train", 0.8), ("test", 0.1), ("validate", 0.1))
DEFAULT_AWS_CONN_ID = "aws_default"
DEFAULT_MAX_FILE_BYTES = 32 * 1024 * 1024
DEFAULT_MAX_NOTES = 2_000_000
DEFAULT_MAX_SECONDS = 6 * 3600.0
DEFAULT_DEMO_LIMIT = 40
DEFAULT_VALIDATION_AUDIT = 200  # older renders re-checked per run (validate --full checks all)


def _split(raw: str) -> tuple[tuple[str, float], ...]:
    shares = [float(x) for x in raw.split(",")]
    if len(shares) != 3 or min(shares) < 0 or sum(shares) <= 0:
        raise ValueError(f"DX7LAKE_SPLIT needs three non-negative shares: {raw!r}")
    return tuple(zip(("train", "test", "validate"), shares, strict=True))


def _workers(raw: str) -> int:
    if int(raw) < 1:
        raise ValueError(f"DX7LAKE_RENDER_WORKERS must be at least 1, got {raw!r}")
    return int(raw)


def parse_demo_limit(raw: str) -> int | None:
    """A count of chorales, or ``all`` (None)."""
    return None if raw.strip().lower() == "all" else int(raw)


def _paths(raw: str) -> tuple[str, ...]:
    return tuple(p for p in raw.split(os.pathsep) if p.strip())


@dataclass(frozen=True)
class Variable:
    """One environment variable: the ``Settings`` field it sets, how it is parsed, its doc."""

    name: str
    field: str
    doc: str
    parse: Callable[[str], Any] = str
    default: str | None = None  # as the README shows it; None: the Settings field's default


VARIABLES: tuple[Variable, ...] = (
    Variable("DX7LAKE_HOME", "home", "root of the embedded layout", default=DEFAULT_HOME),
    Variable(
        "DX7LAKE_LAKE", "lake_uri", "lake URI: a folder, `file:///dir`, or `s3://bucket/prefix`", default="<home>/lake"
    ),
    Variable("DX7LAKE_PG_URL", "pg_url", "an external Postgres instead", default="embedded pgserver in `<home>/pg`"),
    Variable(
        "DX7LAKE_SOURCE",
        "source",
        "where MIDI files are read from: a folder, a `.tar(.gz)` archive or an `s3://` prefix",
        default="<home>/landing",
    ),
    Variable(
        "DX7LAKE_AWS_CONN_ID", "aws_conn_id", "the Airflow connection an `s3://` lake or source is reached through"
    ),
    Variable("DX7LAKE_DBT_PROJECT", "dbt_project", "the dbt project", Path, "<repo>/dbt"),
    Variable("DX7LAKE_MAX_FILE_BYTES", "max_file_bytes", "extract cap: a larger file is quarantined", int),
    Variable("DX7LAKE_MAX_NOTES", "max_notes", "extract cap: a file with more notes is quarantined", int),
    Variable("DX7LAKE_MAX_SECONDS", "max_seconds", "extract cap: a longer file is quarantined", float),
    Variable("DX7LAKE_SPLIT", "split", "train, test, validate shares (stable per midi_id)", _split, "80,10,10"),
    Variable(
        "DX7LAKE_RENDER_WORKERS",
        "render_workers",
        "render processes per render task",
        _workers,
        "the cores this process may use",
    ),
    Variable(
        "DX7LAKE_VALIDATION_AUDIT",
        "validation_audit",
        "older renders a run's validation re-checks, drawn at random with the run id as seed",
        int,
    ),
    Variable(
        "DX7LAKE_LOUDNESS_OUTLIER_LU",
        "loudness_outlier_lu",
        "validation fails a checked render whose loudness is this many LU below its patch's median",
        float,
    ),
    Variable(
        "DX7LAKE_SYX",
        "syx",
        "DX7 `.syx` banks or single voices (files or folders, `:`-separated) that `patches` can name,"
        " and that `random:K[:SEED]` picks from",
        _paths,
    ),
    Variable(
        "DX7LAKE_EFFECTS",
        "effects",
        'pedalboard effects after the mix, JSON: `[{"name": "Reverb", "room_size": 0.3}]`',
    ),
    Variable(
        "DX7LAKE_DEXED_VST3", "dexed_vst3", "render with this Dexed `.vst3` through pedalboard instead of dexed-py"
    ),
    Variable("DEMO_LIMIT", "demo_limit", "chorales in the demo corpus (`all` for every one)", parse_demo_limit),
    Variable("METABASE_URL", "metabase_url", "Metabase to provision (the DAG's `metabase` task skips when unset)"),
    Variable("METABASE_USER", "metabase_user", "Metabase admin (created on a fresh Metabase)"),
    Variable("METABASE_PASSWORD", "metabase_password", "its password"),
    Variable("METABASE_API_KEY", "metabase_api_key", "a Metabase API key instead of user and password"),
    Variable(
        "METABASE_WAREHOUSE_URL",
        "metabase_warehouse_url",
        "the warehouse as Metabase reaches it",
        default="the warehouse URL",
    ),
)


@dataclass(frozen=True)
class Settings:
    """Where a run reads and writes and how; immutable so tasks can pass it around freely."""

    home: Path
    lake_uri: str
    source: str
    pg_url: str | None = field(default=None, repr=False)
    aws_conn_id: str = DEFAULT_AWS_CONN_ID
    dbt_project: Path = DEFAULT_DBT_PROJECT
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES
    max_notes: int = DEFAULT_MAX_NOTES
    max_seconds: float = DEFAULT_MAX_SECONDS
    split: tuple[tuple[str, float], ...] = DEFAULT_SPLIT
    render_workers: int | None = None
    validation_audit: int = DEFAULT_VALIDATION_AUDIT
    loudness_outlier_lu: float = 30.0  # a render 30 LU (1/1000 of the power) under its voice's median is a near miss
    syx: tuple[str, ...] = ()
    dexed_vst3: str | None = None
    effects: str = ""
    demo_limit: int | None = DEFAULT_DEMO_LIMIT
    metabase_url: str | None = None
    metabase_user: str | None = None
    metabase_password: str | None = field(default=None, repr=False)
    metabase_api_key: str | None = field(default=None, repr=False)
    metabase_warehouse_url: str | None = field(default=None, repr=False)

    @property
    def pgdata(self) -> Path:
        return self.home / "pg"

    @property
    def airflow_home(self) -> Path:
        return self.home / "airflow"

    @property
    def summary_path(self) -> Path:
        return self.home / "summary.json"


def load_settings(
    home: str | os.PathLike[str] | None = None, env: Mapping[str, str] | None = None, **overrides: Any
) -> Settings:
    """Resolve settings from ``env`` (default: the process environment).

    An explicit ``home`` wins over ``DX7LAKE_HOME``; ``overrides`` (CLI options) win over
    their variables; a ``None`` override means "not given". Empty variables count as unset.
    """
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    for var in VARIABLES:
        raw = env.get(var.name, "")
        if raw.strip():
            values[var.field] = var.parse(raw)
    values.update({k: v for k, v in overrides.items() if v is not None})
    known = {f.name for f in fields(Settings)}
    if unknown := set(values) - known:
        raise TypeError(f"unknown settings: {sorted(unknown)}")
    root = Path(home or values.get("home") or DEFAULT_HOME).expanduser().resolve()
    values["home"] = root
    values.setdefault("lake_uri", str(root / "lake"))
    values.setdefault("source", str(root / "landing"))
    if "dbt_project" in values:
        values["dbt_project"] = Path(values["dbt_project"]).resolve()
    return Settings(**values)


def _shown_default(var: Variable) -> str:
    default = var.default if var.default is not None else Settings.__dataclass_fields__[var.field].default
    if default in (None, "", ()):
        return "unset"
    return str(default) if " " in str(default) else f"`{default}`"


def settings_table() -> str:
    """The README's settings table, in Markdown."""
    lines = ["| variable | default | meaning |", "| --- | --- | --- |"]
    lines += [f"| `{v.name}` | {_shown_default(v)} | {v.doc} |" for v in VARIABLES]
    return "\n".join(lines) + "\n"
