"""Run validation: reconcile lake and warehouse, check every render's audio, run the dbt
tests of the gold tables, and name every failing key.

All checks always run to the end, so one validation reports everything that is wrong;
the caller records the results (``ops.validation_results``) before it fails the run.
Checks, by the name they are recorded under:

- ``bronze_raw``: raw.detailed_notes holds exactly the bronze rows, partition by partition;
- ``coverage``: every unique phrase content × patch has a row in gold.renders;
- ``gold_load``: every manifest row in the lake is loaded in gold.renders;
- ``objects``: every manifest row's object exists and its sha256 matches;
- ``audio``: every render decodes and sounds right (see ``audio_qa``);
- ``dbt_gold``: the dbt data tests declared on the gold source.
"""

from __future__ import annotations

import hashlib
import io
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field

import pyarrow.parquet as pq

from .. import bronze
from ..config import Settings
from ..gold import render
from ..lake import Lake, lake_of
from ..warehouse import load as warehouse
from ..warehouse import schema
from ..warehouse.postgres import connect
from ..warehouse.transform import invoke_dbt
from . import audio_qa

CHECKS = ("bronze_raw", "coverage", "gold_load", "objects", "audio", "dbt_gold")
DBT_GOLD_SELECTOR = "source:gold"
# object reads are I/O (S3 round trips); decoding in libsndfile releases the GIL
READ_WORKERS = 8


@dataclass
class Check:
    name: str
    checked: int = 0
    seconds: float = 0.0
    failures: list[dict] = field(default_factory=list)

    def fail(self, key: str, reason: str) -> None:
        self.failures.append({"check": self.name, "key": key, "reason": reason})


@dataclass
class Validation:
    raw_rows: int = 0
    bronze_rows: int = 0
    patches: int = 0
    checks: dict[str, Check] = field(default_factory=lambda: {name: Check(name) for name in CHECKS})

    @property
    def failures(self) -> list[dict]:
        return [f for check in self.checks.values() for f in check.failures]

    @property
    def passed(self) -> bool:
        return not self.failures

    @contextmanager
    def timing(self, name: str) -> Iterator[Check]:
        started = time.perf_counter()
        try:
            yield self.checks[name]
        finally:
            self.checks[name].seconds += time.perf_counter() - started

    def as_dict(self, max_failures: int | None = None) -> dict:
        """Counts, per-check figures and the failures (the first ``max_failures`` of them)."""
        return {
            "raw_rows": self.raw_rows,
            "bronze_rows": self.bronze_rows,
            "patches": self.patches,
            "checked": sum(c.checked for c in self.checks.values()),
            "checks": [
                {"check": c.name, "checked": c.checked, "failed": len(c.failures), "seconds": round(c.seconds, 3)}
                for c in self.checks.values()
            ],
            "failures": self.failures[:max_failures],
            "failed": len(self.failures),
            "passed": self.passed,
        }


def validate_run(settings: Settings, patch_ids: list[str], dbt_tests: bool = True) -> Validation:
    """Every check on the finished run for these patches."""
    lake = lake_of(settings)
    result = Validation(patches=len(patch_ids))
    with connect(settings) as conn:
        schema.ensure_schema(conn)
        with result.timing("bronze_raw") as check:
            _reconcile_bronze(conn, lake, result, check)
        with result.timing("coverage") as check:
            _check_coverage(conn, patch_ids, check)
        with result.timing("gold_load") as check:
            loaded = {
                key: sha
                for key, sha in conn.execute(
                    "select key, sha256 from gold.renders where patch_id = any(%s)", (patch_ids,)
                ).fetchall()
            }
            rows = list(_manifest_rows(lake, patch_ids))
            check.checked = len(rows)
            for row in rows:
                if loaded.get(row["key"]) != row["sha256"]:
                    check.fail(row["key"], "manifest row missing from gold.renders or loaded with another sha256")
    check_objects(lake, rows, result)
    if dbt_tests:
        with result.timing("dbt_gold") as check:
            _run_dbt_gold_tests(settings, check)
    return result


def _reconcile_bronze(conn, lake: Lake, result: Validation, check: Check) -> None:
    raw_by_p = dict(conn.execute("select p, count(*) from raw.detailed_notes group by p").fetchall())
    result.raw_rows = sum(raw_by_p.values())
    bronze_by_p = {
        # the row count is in each file's footer: no column is decoded
        p: sum(
            pq.ParquetFile(io.BytesIO(lake.get(key))).metadata.num_rows
            for key in lake.list(f"{bronze.BRONZE_PREFIX}/p={p}/")
            if key.endswith(".parquet")
        )
        for p in bronze.bronze_partitions(lake)
    }
    for p in sorted(set(bronze_by_p) | set(raw_by_p)):
        n = bronze_by_p.get(p, 0)
        result.bronze_rows += n
        check.checked += 1
        if raw_by_p.get(p, 0) != n:
            check.fail(f"{bronze.BRONZE_PREFIX}/p={p}", f"bronze has {n} rows, raw has {raw_by_p.get(p, 0)}")
    if result.raw_rows == 0:
        check.fail("raw.detailed_notes", "no notes loaded")


def _check_coverage(conn, patch_ids: list[str], check: Check) -> None:
    contents = warehouse.scalar(conn, "select count(*) from silver.phrase_contents")
    check.checked = contents * len(patch_ids)
    missing = conn.execute(
        """select c.content_hash, x.patch_id from silver.phrase_contents c
           cross join unnest(%s::text[]) as x(patch_id)
           left join gold.renders r on r.content_hash = c.content_hash and r.patch_id = x.patch_id
           where r.key is null order by 2, 1""",
        (patch_ids,),
    ).fetchall()
    for content_hash, patch_id in missing:
        check.fail(render.render_key(patch_id, content_hash), "no render in gold.renders")


def _manifest_rows(lake: Lake, patch_ids: list[str]) -> Iterator[dict]:
    columns = ["key", "sha256", "sample_rate", "bpm", "duration_s", "peak", "rms"]
    for patch_id in patch_ids:
        for key in lake.list(f"{render.GOLD_MANIFESTS}/{patch_id}/"):
            if key.endswith(".parquet"):
                yield from lake.read_parquet(key).select(columns).to_pylist()


def _inspect(lake: Lake, row: dict) -> tuple[bool, str | None, list[str]]:
    """(object present, object failure, audio failures) of one manifest row."""
    try:
        data = lake.get(row["key"])
    except KeyError:
        return False, "object missing from the lake", []
    digest = hashlib.sha256(data).hexdigest()
    mismatch = None if digest == row["sha256"] else f"sha256 {digest[:12]}… does not match the manifest's"
    return True, mismatch, audio_qa.check_render(data, row)


def check_objects(lake: Lake, rows: list[dict], result: Validation, workers: int = READ_WORKERS) -> None:
    """Existence and sha256 of every manifest row's object, then audio QA of those present."""
    started = time.perf_counter()
    objects, audio = result.checks["objects"], result.checks["audio"]
    with ThreadPoolExecutor(workers) as pool:
        for row, (present, object_failure, audio_failures) in zip(
            rows, pool.map(lambda r: _inspect(lake, r), rows), strict=True
        ):
            objects.checked += 1
            audio.checked += present
            if object_failure:
                objects.fail(row["key"], object_failure)
            for reason in audio_failures:
                audio.fail(row["key"], reason)
    # one pass reads each object once for both checks: split its time evenly
    objects.seconds = audio.seconds = (time.perf_counter() - started) / 2


def _run_dbt_gold_tests(settings: Settings, check: Check) -> None:
    """``dbt test`` on the gold source; each failing test is named by its dbt id."""
    outcome = invoke_dbt(["test", "--select", DBT_GOLD_SELECTOR, "--quiet"], settings=settings)
    if outcome.result is None:
        check.checked += 1
        check.fail("dbt", f"dbt test did not run: {outcome.exception}")
        return
    for node_result in outcome.result.results:
        check.checked += 1
        if str(node_result.status) not in ("pass", "success"):
            check.fail(node_result.node.unique_id, f"{node_result.status}: {node_result.message or ''}".strip())
