"""Run validation: reconcile lake and warehouse, check renders' audio, run the dbt tests of
the gold tables, and name every failing key.

A run's cost grows with what it added, not with the lake: the renders of the manifest
parts this run loaded are checked in full, older renders by a seeded random audit of a
configurable size (``full=True``, ``dx7lake validate --full``, checks every render: the
scheduled deep audit). All checks always run to the end, so one validation reports
everything that is wrong; the caller records the results (``ops.validation_results``)
before it fails the run. Checks, by the name they are recorded under:

- ``bronze_raw``: raw.detailed_notes holds exactly the rows the bronze index records,
  partition by partition (the index's per-file counts: no note parquet is read), by raw's
  ledger, the latest load's parts counted in raw; with ``full``, every row of raw counted;
Every check but ``bronze_raw`` is on the run's render profiles and voices.

- ``coverage``: every unique phrase content × patch × profile has a row in gold.renders: the
  contents built since gold last covered silver (the run's, as its plan found them) and a
  seeded audit of older ones, or all with ``full``;
- ``gold_load``: every manifest part in the lake is in the warehouse's ledger, and every
  row of the checked parts is loaded in gold.renders with its sha256; a manifest part of
  the layout before profiles fails it (``dx7lake migrate-profiles`` moves them);
- ``objects``: each checked render's object exists and its sha256 matches;
- ``audio``: each checked render decodes and sounds right (see ``audio_qa``);
- ``loudness``: flags (does not fail) checked renders ``Settings.loudness_outlier_lu`` or
  more below their patch's median integrated loudness, or under the -70 LUFS gate (a near
  miss of the silence check: audible samples, nothing a listener hears). Flags, because real
  files hold such phrases on purpose (a velocity-1 note, a pitch-0 note the K-weighting
  filters out) and their renders are right; the flags go in the result for a listener to
  review, and the ``sound_by_patch`` mart counts them. Renders without features (from parts
  written before them) are not judged;
- ``dbt_gold``: the dbt data tests declared on the gold source; with ``full``, every dbt data
  test of the project over every row (``full_tests``: by default a run's tests read only
  what the latest build added, see dbt/macros/new_rows_only.sql), the deep audit.
"""

from __future__ import annotations

import hashlib
import time
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import chain, islice

from .. import bronze
from ..config import DEFAULT_VALIDATION_READERS, Settings
from ..gold import render
from ..gold.engine import RenderSpec
from ..gold.pool import in_order, ordered_map, worker_count
from ..gold.profiles import spec_from_canonical
from ..lake import Lake, lake_of
from ..warehouse import coverage, schema
from ..warehouse import load as warehouse
from ..warehouse.postgres import connect
from ..warehouse.transform import invoke_dbt
from . import audio_qa

CHECKS = ("bronze_raw", "coverage", "gold_load", "objects", "audio", "loudness", "dbt_gold")
DBT_GOLD_SELECTOR = "source:gold"
# fewer renders are checked in this process: starting a pool costs about a second
POOL_MIN_RENDERS = 1000
# renders per job of the audio checks' pool: a job's round trip costs about a render's check
AUDIO_BATCH = 32
# manifest rows checked against the warehouse at a time, on their way to the object checks
ROWS_PER_SLICE = 5_000
AUDIT_COLUMNS = ["key", "profile_id", "sha256", "sample_rate", "bpm", "duration_s", "peak", "rms"]
# failing (and flagged) keys a check names, in memory and in ops.validation_failures; past them
# it counts: a lake whose every render is missing would otherwise list 70 M keys (at Lakh)
KEPT_PER_CHECK = 10_000


@dataclass
class Check:
    """One check's figures. It names its first ``KEPT_PER_CHECK`` failures and flags and
    counts them all (``failed``, ``flagged``), so its memory is bounded whatever the lake."""

    name: str
    checked: int = 0
    seconds: float = 0.0
    failed: int = 0
    flagged: int = 0
    failures: list[dict] = field(default_factory=list)
    flags: list[dict] = field(default_factory=list)

    def fail(self, key: str, reason: str) -> None:
        self.failed += 1
        if len(self.failures) < KEPT_PER_CHECK:
            self.failures.append({"check": self.name, "key": key, "reason": reason})

    def flag(self, key: str, reason: str) -> None:
        """A finding to review that does not fail the run."""
        self.flagged += 1
        if len(self.flags) < KEPT_PER_CHECK:
            self.flags.append({"check": self.name, "key": key, "reason": reason})


@dataclass
class Validation:
    raw_rows: int = 0
    bronze_rows: int = 0
    patches: int = 0
    mode: str = "incremental"
    new_renders: int = 0
    audited: int = 0
    checks: dict[str, Check] = field(default_factory=lambda: {name: Check(name) for name in CHECKS})

    @property
    def failures(self) -> list[dict]:
        """The failures each check named (all of them up to ``KEPT_PER_CHECK`` a check)."""
        return [f for check in self.checks.values() for f in check.failures]

    @property
    def flags(self) -> list[dict]:
        return [f for check in self.checks.values() for f in check.flags]

    @property
    def failed(self) -> int:
        return sum(c.failed for c in self.checks.values())

    @property
    def flagged(self) -> int:
        return sum(c.flagged for c in self.checks.values())

    @property
    def passed(self) -> bool:
        return not self.failed

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
            "mode": self.mode,
            "new_renders": self.new_renders,
            "audited": self.audited,
            "checked": sum(c.checked for c in self.checks.values()),
            "checks": [
                {
                    "check": c.name,
                    "checked": c.checked,
                    "failed": c.failed,
                    "flagged": c.flagged,
                    "seconds": round(c.seconds, 3),
                }
                for c in self.checks.values()
            ],
            "flags": self.flags[:max_failures],
            "flagged": self.flagged,
            "failures": self.failures[:max_failures],
            "failed": self.failed,
            "passed": self.passed,
        }


def validate_run(
    settings: Settings,
    patch_ids: list[str],
    dbt_tests: bool = True,
    run_id: str | None = None,
    audit: int | None = None,
    full: bool = False,
    profile_ids: list[str] | None = None,
) -> Validation:
    """Every check for these patches and profiles: on the parts ``run_id`` loaded (the latest loading run's
    when None) plus an audit of ``audit`` older renders (``settings.validation_audit`` when
    None), or on all of gold with ``full``; ``profile_ids`` default to the default profile.

    The manifest rows stream through the checks a slice at a time, their keys kept in a
    temporary table for the audit and the loudness check: a first run's or a ``--full``
    validation holds a partition's manifest, not gold's 70 M rows (at Lakh)."""
    audit = settings.validation_audit if audit is None else audit
    profile_ids = profile_ids or [RenderSpec().profile_id]
    lake = lake_of(settings)
    result = Validation(patches=len(patch_ids), mode="full" if full else "incremental")
    with connect(settings) as conn:
        schema.ensure_schema(conn)
        with result.timing("bronze_raw") as check:
            _reconcile_bronze(conn, lake, result, full, check)
        with result.timing("coverage") as check:
            _check_coverage(conn, profile_ids, patch_ids, None if full else audit, run_id or "", check)
        forget_checked(conn)
        with result.timing("gold_load") as check:
            partitions = _chosen_parts(conn, lake, profile_ids, patch_ids, run_id, full, check)
        rows = _manifest_rows(conn, lake, partitions, result)
        if not full and audit > 0:
            rows = chain(rows, _audit_rows(conn, profile_ids, patch_ids, audit, run_id or "", result))
        specs = {
            pid: spec_from_canonical(text)
            for pid, text in conn.execute("select profile_id, canonical from gold.profiles").fetchall()
        }
        conn.commit()
        reading = result.checks["gold_load"].seconds
        check_objects(lake, rows, result, specs, readers=settings.validation_readers)
        # the manifest slices were read and checked inside that pass: their time is gold_load's
        for name in ("objects", "audio"):
            result.checks[name].seconds -= (result.checks["gold_load"].seconds - reading) / 2
        with result.timing("loudness") as check:
            _check_loudness(conn, patch_ids, settings.loudness_outlier_lu, check)
    if dbt_tests:
        with result.timing("dbt_gold") as check:
            _run_dbt_tests(settings, check, full)
    return result


def forget_checked(conn) -> None:
    """An empty ``validation_checked``: this session's table of the renders validation checks."""
    conn.execute("create temporary table if not exists validation_checked (key text primary key)")
    conn.execute("truncate validation_checked")


def remember_checked(conn, keys: list[str]) -> None:
    """Keys of renders this validation checks, for the audit to leave out and loudness to judge
    (committed: validation holds no transaction open while it reads the objects)."""
    with conn.cursor() as cur, cur.copy("copy validation_checked (key) from stdin") as copy:
        for key in keys:
            copy.write_row((key,))
    conn.commit()


def _chosen_parts(
    conn, lake: Lake, profile_ids: list[str], patch_ids: list[str], run_id: str | None, full: bool, check: Check
) -> list[list[str]]:
    """Every part listed is in the ledger. Returns the parts to check (all, or those the run
    loaded), grouped by partition."""
    loaded = warehouse.loaded_parts(conn)
    listed = [
        k for pid in profile_ids for k in render.manifest_parts(lake, pid) if render.part_partition(k)[1] in patch_ids
    ]
    for key in listed:
        if key not in loaded:
            check.fail(key, "manifest part not loaded into gold.renders")
    for key in render.legacy_parts(lake):
        check.fail(key, "manifest part of the layout before render profiles: run `dx7lake migrate-profiles`")
    if full:
        chosen = listed
    else:
        if run_id is None:  # the latest loading run's parts
            latest = conn.execute("select run_id from gold.manifest_parts order by loaded_at desc limit 1").fetchone()
            run_id = latest[0] if latest else None
        chosen = [k for k in listed if k in loaded and loaded[k] == run_id]
    by_partition: dict[tuple[str, int], list[str]] = {}
    for key in chosen:
        by_partition.setdefault(render.part_partition(key), []).append(key)
    check.checked += len(listed)
    return list(by_partition.values())


def _manifest_rows(conn, lake: Lake, partitions: list[list[str]], result: Validation) -> Iterator[dict]:
    """The rows of the chosen parts (a partition's union at a time, later rows winning), in
    slices of ``ROWS_PER_SLICE``: a slice is checked against gold.renders (there, same
    sha256) and remembered as checked before its rows go on to the object checks."""
    for keys in partitions:
        with result.timing("gold_load"):
            parts = [lake.read_parquet(k, [*AUDIT_COLUMNS, "content_hash"]) for k in keys]
            table = render.union_of_parts(parts).select(AUDIT_COLUMNS)
        for offset in range(0, table.num_rows, ROWS_PER_SLICE):
            with result.timing("gold_load") as check:
                rows = table.slice(offset, ROWS_PER_SLICE).to_pylist()
                keys_here = [r["key"] for r in rows]
                stored = dict(
                    conn.execute("select key, sha256 from gold.renders where key = any(%s)", (keys_here,)).fetchall()
                )
                for row in rows:
                    if stored.get(row["key"]) != row["sha256"]:
                        check.fail(row["key"], "manifest row missing from gold.renders or loaded with another sha256")
                remember_checked(conn, keys_here)
                check.checked += len(rows)
                result.new_renders += len(rows)
            yield from rows


def _audit_rows(
    conn, profile_ids: list[str], patch_ids: list[str], size: int, seed: str, result: Validation
) -> Iterator[dict]:
    """The seeded audit of older renders, drawn once every row of the run is remembered."""
    sample = _audit_sample(conn, profile_ids, patch_ids, size, seed)
    remember_checked(conn, [r["key"] for r in sample])
    result.audited = len(sample)
    yield from sample


AUDIT_OVERSAMPLE = 4  # pages sampled for ~4x the audit's rows, so the draw rarely falls short


def _samplings(conn, table: str, size: int, seed: str) -> list[str]:
    """How to draw ``size`` rows of ``table``, in the order to try: Postgres reads only a
    share of the table's pages (``tablesample system``, by the planner's row estimate, the
    same pages for the same seed), so a draw costs its size, not the lake's; then the whole
    table, for a draw that falls short."""
    estimate = conn.execute("select reltuples from pg_class where oid = %s::regclass", (table,)).fetchone()[0]
    share = min(100.0, 100.0 * AUDIT_OVERSAMPLE * size / max(estimate, 1.0))
    repeatable = int(hashlib.md5(seed.encode()).hexdigest()[:8], 16)
    return ([f" tablesample system ({share}) repeatable ({repeatable})"] if share < 100 else []) + [""]


def _audit_sample(conn, profile_ids: list[str], patch_ids: list[str], size: int, seed: str) -> list[dict]:
    """``size`` renders of gold.renders that this validation does not check already
    (``validation_checked``), drawn by a hash of key and seed: the same seed draws the same
    sample, each run's id another one (``_samplings``)."""
    columns = ", ".join(f"r.{c}" for c in AUDIT_COLUMNS)
    for sampled in _samplings(conn, "gold.renders", size, seed):
        cur = conn.execute(
            f"select {columns} from gold.renders as r{sampled} where r.profile_id = any(%s) and r.patch_id = any(%s)"
            " and not exists (select from validation_checked as c where c.key = r.key)"
            " order by md5(r.key || %s) limit %s",
            (profile_ids, patch_ids, seed, size),
        )
        rows = cur.fetchall()
        if len(rows) == size or not sampled:
            break
    names = [d.name for d in cur.description]
    return [dict(zip(names, row, strict=True)) for row in rows]


def _check_loudness(conn, patch_ids: list[str], outlier_lu: float, check: Check) -> None:
    """Flags checked renders (``validation_checked``) far below their patch's median loudness,
    or below the gate. The median is over the checked renders (this run's and the seeded audit
    of older ones, a random sample of the voice), so the check reads what validation reads,
    not all of gold; only the flagged ones come through here."""
    judged, flagged = conn.execute(
        """with checked as (
               select r.key, r.patch_id, r.lufs from gold.renders as r
               join validation_checked as c using (key)
               where r.patch_id = any(%s) and r.spectral_centroid_hz is not null),
           medians as (
               select patch_id, percentile_cont(0.5) within group (order by lufs) as median
               from checked group by patch_id)
           select count(*), coalesce(jsonb_agg(jsonb_build_array(c.key, c.lufs, m.median) order by c.key)
                                     filter (where c.lufs is null or c.lufs <= m.median - %s), '[]')
           from checked c join medians m using (patch_id)""",
        (patch_ids, outlier_lu),
    ).fetchone()
    check.checked = judged
    for key, lufs, median in flagged:
        if lufs is None:
            check.flag(key, "loudness below the -70 LUFS gate (audible samples, nothing heard)")
        else:
            check.flag(key, f"loudness {lufs:.1f} LUFS is {median - lufs:.1f} LU below its patch's median {median:.1f}")


def _reconcile_bronze(conn, lake: Lake, result: Validation, full: bool, check: Check) -> None:
    """Raw holds what the bronze index records, partition by partition: the index's note
    counts against raw's. Those are the rows raw's ledger records per part, and the rows of
    the parts the latest loading run loaded are counted in raw itself (by their files,
    through the midi_id index); with ``full``, raw's every row is counted instead."""
    if full:
        raw_by_p = dict(conn.execute("select p, count(*) from raw.detailed_notes group by p").fetchall())
    else:
        raw_by_p = dict(conn.execute("select p, sum(rows)::bigint from raw.bronze_parts group by p").fetchall())
        latest = conn.execute(
            """select b.p, b.part, b.rows,
                      (select count(*) from raw.detailed_notes as d where d.midi_id = any(b.midi_ids))
               from raw.bronze_parts as b
               where b.run_id = (select run_id from raw.bronze_parts order by loaded_at desc limit 1)"""
        ).fetchall()
        for p, part, rows, counted in latest:
            check.checked += 1
            if counted != rows:
                where = f"{bronze.BRONZE_PREFIX}/p={p}/{part}"
                check.fail(where, f"raw's ledger records {rows} rows of the part, raw has {counted}")
    result.raw_rows = sum(raw_by_p.values())
    bronze_by_p = bronze.bronze_counts(lake)
    for p in sorted(set(bronze_by_p) | set(raw_by_p)):
        n = bronze_by_p.get(p, 0)
        result.bronze_rows += n
        check.checked += 1
        if raw_by_p.get(p, 0) != n:
            check.fail(f"{bronze.BRONZE_PREFIX}/p={p}", f"bronze has {n} rows, raw has {raw_by_p.get(p, 0)}")
    if result.raw_rows == 0:
        check.fail("raw.detailed_notes", "no notes loaded")


def _check_coverage(
    conn, profile_ids: list[str], patch_ids: list[str], audit: int | None, seed: str, check: Check
) -> None:
    """Every content of silver has its render in each chosen profile and patch (a render of
    another profile does not cover its content: it is other audio). With an ``audit`` size,
    the contents built since gold last covered silver (``coverage``: this run's, when its
    plan ran) are checked, and a seeded sample of ``audit`` older ones; with None, all."""
    voices = {"profiles": profile_ids, "patches": patch_ids}
    if audit is None:
        checked = "select content_hash from silver.phrase_contents"
    else:
        # the newer contents stay in Postgres (a first run's are all of silver); the audit's
        # older ones, at most ``audit``, come through here to see whether the draw fell short
        voices["since"] = coverage.rendered_through(conn, profile_ids, patch_ids)
        for sampled in _samplings(conn, "silver.phrase_contents", audit, seed):
            voices["older"] = [
                h
                for (h,) in conn.execute(
                    f"select content_hash from silver.phrase_contents{sampled} where built_at <= %s"
                    " order by md5(content_hash || %s) limit %s",
                    (voices["since"], seed, audit),
                )
            ]
            if len(voices["older"]) == audit or not sampled:
                break
        checked = """select content_hash from silver.phrase_contents where built_at > %(since)s
                     union all select unnest(%(older)s::text[])"""
    # one read of the selection: it counts the pairs it checks as it finds those lacking a render
    check.checked, missing = conn.execute(
        f"""select count(*), coalesce(jsonb_agg(jsonb_build_array(x.profile_id, v.patch_id, c.content_hash)
                                         order by x.profile_id, v.patch_id, c.content_hash)
                                         filter (where r.key is null), '[]')
           from ({checked}) as c(content_hash)
           cross join unnest(%(profiles)s::text[]) as x(profile_id)
           cross join unnest(%(patches)s::text[]) as v(patch_id)
           left join gold.renders r on r.profile_id = x.profile_id and r.content_hash = c.content_hash
                                     and r.patch_id = v.patch_id""",
        voices,
    ).fetchone()
    for profile_id, patch_id, content_hash in missing:
        check.fail(render.render_key(profile_id, patch_id, content_hash), "no render in gold.renders")


def _fetch(lake: Lake, row: dict) -> tuple[dict, bytes | None, str | None]:
    """One manifest row, its object (None when missing) and why it fails the object check."""
    try:
        data = lake.get(row["key"])
    except KeyError:
        return row, None, "object missing from the lake"
    digest = hashlib.sha256(data).hexdigest()
    return row, data, None if digest == row["sha256"] else f"sha256 {digest[:12]}… does not match the manifest's"


def check_objects(
    lake: Lake,
    rows: Iterable[dict],
    result: Validation,
    specs: dict[str, RenderSpec] | None = None,
    readers: int = DEFAULT_VALIDATION_READERS,
    processes: int | None = None,
) -> None:
    """Existence and sha256 of every manifest row's object, then audio QA of those present
    (the length its profile in ``specs`` gives; the default tail for a profile not there).

    ``readers`` threads read and hash the objects (waiting on the store and hashing release the GIL);
    decoding holds it (libsndfile reads through Python callbacks: more threads only
    contend), so the audio checks run in ``processes`` (the cores when None). At most a
    few objects per reader and a few batches per process are in memory at once, whatever the rows."""
    specs = specs or {}
    started = time.perf_counter()
    objects, audio = result.checks["objects"], result.checks["audio"]
    checked: deque[list[tuple[dict, bool]]] = deque()  # the batches sent to the audio checks, in order
    with ThreadPoolExecutor(readers) as threads:

        def batches() -> Iterator[list[tuple[bytes | None, dict, RenderSpec | None]]]:
            read = in_order(lambda row: threads.submit(_fetch, lake, row), rows, 4 * readers)
            while batch := list(islice(read, AUDIO_BATCH)):
                for row, _, failure in batch:
                    objects.checked += 1
                    if failure:
                        objects.fail(row["key"], failure)
                checked.append([(row, data is not None) for row, data, _ in batch])
                yield [(data, row, specs.get(row.get("profile_id"))) for row, data, _ in batch]

        workers = worker_count(processes)
        min_batches = POOL_MIN_RENDERS // AUDIO_BATCH
        for failures in ordered_map(audio_qa.check_fetched, batches(), workers, min_jobs=min_batches):
            for (row, present), audio_failures in zip(checked.popleft(), failures, strict=True):
                audio.checked += present
                for reason in audio_failures:
                    audio.fail(row["key"], reason)
    # one pass reads each object once for both checks: split its time evenly
    objects.seconds = audio.seconds = (time.perf_counter() - started) / 2


def _run_dbt_tests(settings: Settings, check: Check, full: bool) -> None:
    """``dbt test`` on the gold source, or with ``full`` every test on every row; each failing
    test is named by its dbt id."""
    scope = ["--vars", "{full_tests: true}"] if full else ["--select", DBT_GOLD_SELECTOR]
    outcome = invoke_dbt(["test", *scope, "--quiet"], settings=settings)
    if outcome.result is None:
        check.checked += 1
        check.fail("dbt", f"dbt test did not run: {outcome.exception}")
        return
    for node_result in outcome.result.results:
        check.checked += 1
        if str(node_result.status) not in ("pass", "success"):
            check.fail(node_result.node.unique_id, f"{node_result.status}: {node_result.message or ''}".strip())
