"""The CLI: each stage prints its JSON summary as the last line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from conftest import build_silver


def test_extract_prints_json_summary(tmp_path, chorales):
    dx7lake = Path(sys.executable).with_name("dx7lake")
    out = subprocess.run(
        [str(dx7lake), "extract", "--source", str(chorales), "--lake", str(tmp_path / "lake"), "--home", str(tmp_path)],
        capture_output=True,
        text=True,
        check=True,
    )
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    assert summary["files_seen"] == summary["files_extracted"] == 6
    assert summary["notes"] > 0
    assert any((tmp_path / "lake" / "bronze" / "detailed_notes").rglob("*.parquet"))


def test_validate_exits_non_zero_and_names_failures(settings):
    from dx7lake.cli import main

    build_silver(settings)
    # nothing rendered yet: every unique phrase × patch is missing
    assert main(["validate", "--home", str(settings.home), "--patches", "sine"]) == 1
