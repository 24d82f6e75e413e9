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


def test_validate_exits_non_zero_and_names_failures(settings, capsys):
    import psycopg

    from dx7lake.cli import main
    from dx7lake.gold.engine import RenderSpec
    from dx7lake.gold.patches import choose_voices

    build_silver(settings)
    capsys.readouterr()
    # nothing rendered yet: every unique phrase content × the patch is missing, and each is
    # printed as FAIL <key>: <reason> [<check>] with the key spelled out by hand here
    assert main(["validate", "--home", str(settings.home), "--patches", "sine"]) == 1
    lines = capsys.readouterr().out.strip().splitlines()
    patch_id = choose_voices("sine")[0].patch_id
    profile_id = RenderSpec().profile_id  # the default profile
    with psycopg.connect(settings.pg_url) as conn:
        contents = [h for (h,) in conn.execute("select distinct content_hash from silver.phrases")]
    expected = {
        f"FAIL gold/renders/{profile_id}/{patch_id}/{h[:2]}/{h}.flac: no render in gold.renders [coverage]"
        for h in contents
    }
    assert len(contents) > 0 and set(lines[:-1]) == expected and len(lines) - 1 == len(expected)
    assert json.loads(lines[-1]) | {"raw_rows": 0, "bronze_rows": 0} == {
        "passed": False,
        "raw_rows": 0,
        "bronze_rows": 0,
        "patches": 1,
        "mode": "incremental",
        "new_renders": 0,  # nothing loaded: no run's parts to check, no older render to audit
        "audited": 0,
        "failures": len(contents),
    }
