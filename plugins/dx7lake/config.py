"""Run configuration resolved from the environment.

Everything defaults to an embedded layout under ``DX7LAKE_HOME`` so that a fresh clone
runs with no services; each piece can be pointed at a real service by one variable:

- ``DX7LAKE_HOME``      root of the embedded layout (default ``.dx7lake``)
- ``DX7LAKE_LAKE``      lake URI (default ``<home>/lake``; ``s3://bucket/prefix`` for S3)
- ``DX7LAKE_PG_URL``    external Postgres URL (default: embedded pgserver in ``<home>/pg``)
- ``DX7LAKE_SOURCE``    landing folder or URI of MIDI files (default ``<home>/landing``)
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_HOME = ".dx7lake"
WAREHOUSE_CONN_ID = "dx7lake_warehouse"


@dataclass(frozen=True)
class Settings:
    """Where a run reads and writes; immutable so tasks can pass it around freely."""

    home: Path
    lake_uri: str
    source: str
    pg_url: str | None

    @property
    def pgdata(self) -> Path:
        return self.home / "pg"

    @property
    def airflow_home(self) -> Path:
        return self.home / "airflow"

    @property
    def summary_path(self) -> Path:
        return self.home / "summary.json"


def load_settings(home: str | os.PathLike[str] | None = None) -> Settings:
    """Resolve settings; an explicit ``home`` wins over ``DX7LAKE_HOME``."""
    root = Path(home or os.environ.get("DX7LAKE_HOME") or DEFAULT_HOME).expanduser().resolve()
    return Settings(
        home=root,
        lake_uri=os.environ.get("DX7LAKE_LAKE") or str(root / "lake"),
        source=os.environ.get("DX7LAKE_SOURCE") or str(root / "landing"),
        pg_url=os.environ.get("DX7LAKE_PG_URL") or None,
    )
