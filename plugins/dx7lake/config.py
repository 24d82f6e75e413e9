"""The one configuration object: every environment variable and default, read once.

``load_settings()`` reads the process environment (and nothing else does) into a frozen
``Settings`` that is handed down to every stage; the CLI passes its options as overrides
instead of writing environment variables. Everything defaults to an embedded layout under
``DX7LAKE_HOME`` so that a fresh clone runs with no services; each piece can be pointed at
a real service by one variable. ``VARIABLES`` lists them all: the README's settings table
is generated from it (``dx7lake settings --markdown``) and a test keeps the two equal.

Render parameters that a run chooses (voices, render profiles and ad-hoc tempo, sample
rate, transpose, velocity scale) are DAG params and CLI options; their defaults live here
once (``DEFAULT_*``), the named profiles in the YAML file ``Settings.profiles``. ``PHRASE_BEATS`` is silver's phrase
window as gold renders it; dbt's ``beats_per_phrase`` var must equal it (a test checks).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from datetime import timedelta
from pathlib import Path
from typing import Any

DEFAULT_HOME = ".dx7lake"
WAREHOUSE_CONN_ID = "dx7lake_warehouse"
REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_DBT_PROJECT = REPO_ROOT / "dbt"
DEFAULT_PROFILES = Path(__file__).resolve().parent / "gold" / "profiles.yml"  # named render profiles

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
# how `make demo` runs tasks: one after another in one process, or a LocalExecutor's processes
DEMO_EXECUTORS = ("sequential", "local")
DEFAULT_VALIDATION_AUDIT = 200  # older renders re-checked per run (validate --full checks all)
DEFAULT_VALIDATION_READERS = 8  # threads reading render objects: S3 round trips overlap

# The DAG's failure policy (docs/ARCHITECTURE.md, Guarantees: every stage is idempotent, so
# a retry is safe). A stage's timeout bounds a hung S3, Postgres or Metabase call; ``other``
# is every bookkeeping task. Sized for a Lakh-scale run on one machine.
TASK_STAGES = (
    "extract",
    "load",
    "dbt",
    "plan_render",
    "render",
    "load_renders",
    "validate",
    "analytics",
    "metabase",
    "release",
    "other",
)
DEFAULT_TASK_TIMEOUTS = (
    "extract=2h,load=1h,dbt=2h,plan_render=30m,render=6h,"
    "load_renders=1h,validate=2h,analytics=1h,metabase=15m,release=2h,other=15m"
)
# Airflow pools that spread the heavy stages over workers (``Settings.pools``).
RENDER_POOL = "dx7lake_render"
EXTRACT_POOL = "dx7lake_extract"


def _split(raw: str) -> tuple[tuple[str, float], ...]:
    shares = [float(x) for x in raw.split(",")]
    if len(shares) != 3 or min(shares) < 0 or sum(shares) <= 0:
        raise ValueError(f"DX7LAKE_SPLIT needs three non-negative shares: {raw!r}")
    return tuple(zip(("train", "test", "validate"), shares, strict=True))


def _positive(name: str) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        if int(raw) < 1:
            raise ValueError(f"{name} must be at least 1, got {raw!r}")
        return int(raw)

    return parse


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(raw: str) -> timedelta:
    """``90``, ``30s``, ``10m``, ``4h`` or ``2d``: a positive duration (bare numbers are seconds)."""
    raw = raw.strip().lower()
    number, unit = (raw[:-1], raw[-1]) if raw[-1:] in _UNITS else (raw, "s")
    seconds = float(number) * _UNITS[unit]
    if seconds <= 0:
        raise ValueError(f"a duration must be positive, got {raw!r}")
    return timedelta(seconds=seconds)


def parse_task_timeouts(raw: str) -> tuple[tuple[str, timedelta], ...]:
    """``stage=duration,...`` over the defaults: a stage not named keeps its default."""
    timeouts = dict(_stage_durations(DEFAULT_TASK_TIMEOUTS))
    timeouts.update(_stage_durations(raw))
    return tuple((stage, timeouts[stage]) for stage in TASK_STAGES)


def _stage_durations(raw: str) -> list[tuple[str, timedelta]]:
    pairs = []
    for item in filter(None, (x.strip() for x in raw.split(","))):
        stage, _, duration = item.partition("=")
        if stage.strip() not in TASK_STAGES:
            raise ValueError(f"DX7LAKE_TASK_TIMEOUTS: unknown stage {stage!r} (stages: {', '.join(TASK_STAGES)})")
        pairs.append((stage.strip(), parse_duration(duration)))
    return pairs


def parse_demo_limit(raw: str) -> int | None:
    """A count of chorales, or ``all`` (None)."""
    return None if raw.strip().lower() == "all" else int(raw)


def parse_demo_executor(raw: str) -> str:
    """``sequential`` (the default: faster on 2 cores, see docs/SCALING.md) or ``local``."""
    value = raw.strip().lower()
    if value not in DEMO_EXECUTORS:
        raise ValueError(f"DX7LAKE_DEMO_EXECUTOR must be one of {', '.join(DEMO_EXECUTORS)}, got {raw!r}")
    return value


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
    Variable(
        "DX7LAKE_PROFILES",
        "profiles",
        "the named render profiles (YAML) runs pick from and the DAG's form lists",
        Path,
        "the `profiles.yml` shipped in `dx7lake/gold`",
    ),
    Variable("DX7LAKE_MAX_FILE_BYTES", "max_file_bytes", "extract cap: a larger file is quarantined", int),
    Variable("DX7LAKE_MAX_NOTES", "max_notes", "extract cap: a file with more notes is quarantined", int),
    Variable("DX7LAKE_MAX_SECONDS", "max_seconds", "extract cap: a longer file is quarantined", float),
    Variable("DX7LAKE_SPLIT", "split", "train, test, validate shares (stable per midi_id)", _split, "80,10,10"),
    Variable(
        "DX7LAKE_RENDER_WORKERS",
        "render_workers",
        "render processes per render task",
        _positive("DX7LAKE_RENDER_WORKERS"),
        "the worker's cores ÷ `DX7LAKE_RENDER_TASKS_PER_WORKER`",
    ),
    Variable(
        "DX7LAKE_WORKERS",
        "workers",
        "Airflow workers (machines or Celery workers) the pools are sized for",
        _positive("DX7LAKE_WORKERS"),
    ),
    Variable(
        "DX7LAKE_RENDER_TASKS_PER_WORKER",
        "render_tasks_per_worker",
        f"render tasks one worker runs at once: pool `{RENDER_POOL}` has workers × this slots,"
        " and each task renders with the worker's cores ÷ this processes",
        _positive("DX7LAKE_RENDER_TASKS_PER_WORKER"),
    ),
    Variable(
        "DX7LAKE_EXTRACT_TASKS_PER_WORKER",
        "extract_tasks_per_worker",
        f"extract shards (one process each) one worker runs at once: pool `{EXTRACT_POOL}` has workers × this slots",
        _positive("DX7LAKE_EXTRACT_TASKS_PER_WORKER"),
    ),
    Variable(
        "DX7LAKE_TASK_RETRIES",
        "task_retries",
        "retries of a failed task (every stage is idempotent), with exponential backoff",
        int,
    ),
    Variable(
        "DX7LAKE_RETRY_DELAY", "retry_delay", "delay before the first retry, doubled each time", parse_duration, "30s"
    ),
    Variable("DX7LAKE_MAX_RETRY_DELAY", "max_retry_delay", "the longest delay between retries", parse_duration, "10m"),
    Variable(
        "DX7LAKE_TASK_TIMEOUTS",
        "task_timeouts",
        f"`execution_timeout` per stage, `stage=duration,...` over the defaults (stages: {', '.join(TASK_STAGES)};"
        " `other` is every bookkeeping task)",
        parse_task_timeouts,
        DEFAULT_TASK_TIMEOUTS,
    ),
    Variable(
        "DX7LAKE_DAGRUN_TIMEOUT",
        "dagrun_timeout",
        "a run still going after this fails, with the reason in `ops.pipeline_runs`",
        parse_duration,
        "48h",
    ),
    Variable(
        "DX7LAKE_VALIDATION_AUDIT",
        "validation_audit",
        "older renders a run's validation re-checks, drawn at random with the run id as seed",
        int,
    ),
    Variable(
        "DX7LAKE_VALIDATION_READERS",
        "validation_readers",
        "threads that read and hash render objects in validation (the audio checks take a process per core):"
        " more for an S3 lake far away, whose reads wait on round trips",
        _positive("DX7LAKE_VALIDATION_READERS"),
    ),
    Variable(
        "DX7LAKE_LOUDNESS_OUTLIER_LU",
        "loudness_outlier_lu",
        "validation flags (for review, not failing the run) a checked render this many LU below its patch's median",
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
        'pedalboard effects after the mix, JSON: `[{"name": "Reverb", "room_size": 0.3}]`;'
        " replaces every run profile's chain (so it renders other profiles)",
    ),
    Variable(
        "DX7LAKE_DEXED_VST3", "dexed_vst3", "render with this Dexed `.vst3` through pedalboard instead of dexed-py"
    ),
    Variable("DEMO_LIMIT", "demo_limit", "chorales in the demo corpus (`all` for every one)", parse_demo_limit),
    Variable(
        "DX7LAKE_DEMO_EXECUTOR",
        "demo_executor",
        "how the demo runs tasks: `sequential` (one after another) or `local` (a LocalExecutor, one slot per core)",
        parse_demo_executor,
    ),
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
    profiles: Path = DEFAULT_PROFILES
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES
    max_notes: int = DEFAULT_MAX_NOTES
    max_seconds: float = DEFAULT_MAX_SECONDS
    split: tuple[tuple[str, float], ...] = DEFAULT_SPLIT
    render_workers: int | None = None
    workers: int = 1
    render_tasks_per_worker: int = 1
    extract_tasks_per_worker: int = 4
    task_retries: int = 2
    retry_delay: timedelta = timedelta(seconds=30)
    max_retry_delay: timedelta = timedelta(minutes=10)
    task_timeouts: tuple[tuple[str, timedelta], ...] = field(default_factory=lambda: parse_task_timeouts(""))
    dagrun_timeout: timedelta = timedelta(hours=48)
    validation_audit: int = DEFAULT_VALIDATION_AUDIT
    validation_readers: int = DEFAULT_VALIDATION_READERS
    loudness_outlier_lu: float = 30.0  # a render 30 LU (1/1000 of the power) under its voice's median is a near miss
    syx: tuple[str, ...] = ()
    dexed_vst3: str | None = None
    effects: str = ""
    demo_limit: int | None = DEFAULT_DEMO_LIMIT
    demo_executor: str = DEMO_EXECUTORS[0]
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

    def task_timeout(self, stage: str) -> timedelta:
        """The ``execution_timeout`` of a stage's tasks (``other`` for bookkeeping tasks)."""
        return dict(self.task_timeouts)[stage]

    @property
    def pools(self) -> dict[str, dict[str, Any]]:
        """The Airflow pools the DAG's heavy tasks run in, as ``airflow pools import`` reads them:
        one slot per task a worker may run at once, times the workers."""
        return {
            RENDER_POOL: {
                "slots": self.workers * self.render_tasks_per_worker,
                "description": f"dx7lake render: {self.workers} worker(s) × {self.render_tasks_per_worker} task(s)",
            },
            EXTRACT_POOL: {
                "slots": self.workers * self.extract_tasks_per_worker,
                "description": f"dx7lake extract: {self.workers} worker(s) × {self.extract_tasks_per_worker} shard(s)",
            },
        }


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
