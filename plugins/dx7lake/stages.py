"""Pipeline stages as plain functions: the Airflow tasks and the CLI both call these.

Each stage takes settings plus keys or small parameters and returns a small JSON-able
dict of counts and timings, which is all that travels through XCom.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable, Sequence

from . import bronze
from .config import Settings
from .gold import render
from .gold.engine import RenderSpec
from .gold.patches import Voice, bank_voices, choose_voices
from .gold.pool import worker_count
from .gold.profiles import OVERRIDES, ProfileError, canonical, resolve, spec_from_canonical
from .lake import lake_of
from .quality import validate
from .warehouse import coverage, schema, stats
from .warehouse import load as warehouse
from .warehouse.postgres import connect

log = logging.getLogger(__name__)
LOAD_PARTS_BATCH = 64  # manifest parts per load transaction: bounds the rows held in memory


def _timed(fn):
    def wrapper(*args, **kwargs) -> dict:
        started = time.time()
        out = fn(*args, **kwargs)
        out.update(started_at=started, finished_at=time.time(), seconds=round(time.time() - started, 3))
        return out

    wrapper.__name__ = fn.__name__
    wrapper.__doc__ = fn.__doc__
    return wrapper


@_timed
def extract(settings: Settings, source: str | None = None) -> dict:
    """Bronze: every new MIDI file under the source into the lake."""
    stats = bronze.extract(source or settings.source, lake_of(settings), bronze.ExtractOptions.from_settings(settings))
    return stats.as_dict()


@_timed
def extract_shard(settings: Settings, source: str | None, shard: int, shards: int) -> dict:
    """Bronze, one shard: the new files whose md5 falls in this shard's partitions."""
    lake = lake_of(settings)
    options = bronze.ExtractOptions.from_settings(settings)
    return bronze.extract_shard(source or settings.source, lake, options, shard=shard, shards=shards).as_dict()


def voices_of(settings: Settings, patches: str | None) -> list[Voice]:
    """The voices ``patches`` names, among the built-ins and the configured banks."""
    return choose_voices(patches, bank_voices(settings.syx))


def task_results(value: Sequence[dict] | dict) -> list[dict]:
    """One task's result, or a mapped task's results, as a list.

    Mapped results arrive as a lazy XCom sequence: it is indexed by its length rather than
    iterated, which would probe one offset past the end (an error in the task log).
    """
    return [value] if isinstance(value, dict) else [value[i] for i in range(len(value)) if value[i]]


def merge_extract(results: Sequence[dict]) -> dict:
    """The run's extract totals from its shards (what the summary reads)."""
    return bronze.merge_stats(task_results(results))


def bronze_partitions(settings: Settings) -> list[str]:
    return bronze.bronze_partitions(lake_of(settings))


@_timed
def load_partition(settings: Settings, p: str, run_id: str, reload: bool = False) -> dict:
    """Raw: the bronze parts of partition ``p`` not yet in raw.detailed_notes (all of them,
    replacing their files' rows, with ``reload``)."""
    with connect(settings) as conn:
        schema.ensure_schema(conn)
        return warehouse.load_new_bronze_parts(conn, lake_of(settings), p, run_id, reload)


@_timed
def finish_load(settings: Settings, results: Sequence[dict] | dict) -> dict:
    """The run's load totals from its partitions' results; when the run loaded rows, the raw
    tables are vacuumed and analysed before dbt reads them (``warehouse.settle_raw``)."""
    loads = task_results(results)
    rows = sum(r["rows"] for r in loads)
    if rows:
        with connect(settings, autocommit=True) as conn:
            warehouse.settle_raw(conn)
    return {"partitions": len(loads), "rows": rows}


def profiles_of(
    settings: Settings, profiles: Sequence[str] | str | None = None, overrides: dict | None = None
) -> list[tuple[str, RenderSpec]]:
    """(name, profile) of the render profiles a run picks: names from ``settings.profiles``
    (``default`` when none) and the ad-hoc profile ``overrides`` make (``profiles.resolve``)."""
    return resolve(profiles, overrides, settings.profiles, settings.effects, settings.dexed_vst3)


def profile_ids_of(
    settings: Settings, profiles: Sequence[str] | str | None, overrides: dict | None = None
) -> list[str]:
    return [spec.profile_id for _, spec in profiles_of(settings, profiles, overrides)]


def overrides_of(params: dict) -> dict:
    """The ad-hoc profile settings a run's params give (None: not given)."""
    return {name: params.get(name) for name in OVERRIDES if params.get(name) is not None}


def profile_spec(conn, profile_id: str) -> RenderSpec:
    """A registered profile (``plan_render`` registers those a run picks) by its id."""
    found = conn.execute("select canonical from gold.profiles where profile_id = %s", (profile_id,)).fetchone()
    if found is None:
        raise ProfileError(f"render profile {profile_id!r} is not registered in gold.profiles: plan the run first")
    return spec_from_canonical(found[0])


@_timed
def plan_render(
    settings: Settings,
    patches: str | None = None,
    profiles: Sequence[str] | str | None = None,
    overrides: dict | None = None,
) -> dict:
    """(profile, partition) pairs where silver has contents gold.renders lacks for a chosen
    voice in a chosen profile, or whose manifest parts differ from those loaded: an
    anti-join of the contents built since gold last covered silver (``coverage``; its
    (content, voice) pairs are ``contents_looked_at``) and a listing of part keys.
    Registers the run's profiles in gold.profiles (the render tasks read their settings
    there: XCom carries only their ids)."""
    voices = voices_of(settings, patches)
    chosen = profiles_of(settings, profiles, overrides)
    profile_ids = [spec.profile_id for _, spec in chosen]
    with connect(settings) as conn:
        schema.ensure_schema(conn)
        with conn.transaction():
            warehouse.register_profiles(conn, [(spec.profile_id, name, canonical(spec)) for name, spec in chosen])
        uncovered, looked = coverage.uncovered_partitions(conn, profile_ids, [v.patch_id for v in voices])
        loaded = warehouse.loaded_parts(conn)
    pending = render.pending_partitions(lake_of(settings), profile_ids, voices, uncovered, loaded)
    return {
        "partitions": [[profile_id, p] for profile_id, p in pending],
        "profiles": profile_ids,
        "contents_looked_at": looked,
    }


@_timed
def render_partition(settings: Settings, work: Sequence, patches: str | None) -> dict:
    """Gold: FLACs and manifests of one render partition for the chosen voices in one
    profile: ``work`` is a (profile id, partition) pair of ``plan_render``'s (which
    registered the profile).

    Contents stream from a server-side cursor, so a partition of any size is read in batches,
    and only those gold.renders lacks for a chosen voice among those built since gold last
    covered silver (``coverage``): a rerun that adds a few contents to a partition streams
    and reads those, not the partition (what was rendered but not yet loaded, the
    partition's manifest parts tell; ``contents`` counts what was streamed).
    """
    profile_id, render_p = str(work[0]), int(work[1])
    voices = voices_of(settings, patches)
    patch_ids = [v.patch_id for v in voices]
    with connect(settings) as conn:
        spec = profile_spec(conn, profile_id)
        since = coverage.rendered_through(conn, [profile_id], patch_ids)
    with connect(settings) as conn, conn.transaction():
        cursor = conn.cursor(name="phrase_contents")
        cursor.itersize = 2000
        cursor.execute(
            """select c.content_hash, c.notes from silver.phrase_contents c
               where c.p = %(p)s and c.built_at > %(since)s::timestamptz and exists (
                   select 1 from unnest(%(patches)s::text[]) as v(patch_id)
                   where not exists (
                       select 1 from gold.renders r
                       where r.profile_id = %(profile)s and r.content_hash = c.content_hash
                             and r.patch_id = v.patch_id))
               order by c.content_hash""",
            {"p": render_p, "since": since, "patches": patch_ids, "profile": profile_id},
        )
        contents = ((h, [(float(s), float(d), int(v), int(n)) for s, d, v, n in notes]) for h, notes in cursor)
        result = render.render_partition(
            lake_of(settings),
            render_p,
            contents,
            voices,
            spec,
            workers=worker_count(settings.render_workers, settings.render_tasks_per_worker),
            vst3_path=settings.dexed_vst3,
        )
    return {**result, "phrase_seconds": spec.total_samples / spec.sample_rate}


@_timed
def load_renders(settings: Settings, run_id: str | None = None, reload: bool = False) -> dict:
    """Load the gold manifest parts the ledger has not seen into gold.renders (every part
    with ``reload``), and forget ledger rows of parts a compaction merged away."""
    lake = lake_of(settings)
    rows = 0
    with connect(settings) as conn:
        schema.ensure_schema(conn)
        loaded = warehouse.loaded_parts(conn)
        listed = render.manifest_parts(lake)
        todo = [key for key in listed if reload or key not in loaded]
        for i in range(0, len(todo), LOAD_PARTS_BATCH):
            batch = todo[i : i + LOAD_PARTS_BATCH]
            parts = [(key, *render.part_partition(key), lake.read_parquet(key)) for key in batch]
            rows += warehouse.load_manifest_parts(conn, parts, run_id)
        gone = sorted(set(loaded) - set(listed))
        if gone:
            warehouse.forget_parts(conn, gone)
        renders = warehouse.scalar(conn, "select count(*) from gold.renders")
    return {"renders": renders, "parts_loaded": len(todo), "rows_loaded": rows, "parts_forgotten": len(gone)}


def _chosen_partitions(
    settings: Settings, patches: str | None, profiles: Sequence[str] | str | None
) -> dict[tuple[str, str, int], int]:
    """Parts per (profile, patch, partition) of gold, for these voices and profiles (all when None)."""
    patch_ids = {v.patch_id for v in voices_of(settings, patches)} if patches else None
    profile_ids = set(profile_ids_of(settings, profiles)) if profiles else None
    counts: dict[tuple[str, str, int], int] = {}
    for key in render.manifest_parts(lake_of(settings)):
        where = render.part_partition(key)
        if (patch_ids is None or where[1] in patch_ids) and (profile_ids is None or where[0] in profile_ids):
            counts[where] = counts.get(where, 0) + 1
    return counts


@_timed
def compact(
    settings: Settings, patches: str | None = None, min_parts: int = 2, profiles: Sequence[str] | str | None = None
) -> dict:
    """Merge the manifest parts of every partition with ``min_parts`` or more into one, then
    load the merged parts (the warehouse's rows do not change; its ledger follows the lake)."""
    lake = lake_of(settings)
    counts = _chosen_partitions(settings, patches, profiles)
    merged = [render.compact_partition(lake, *where) for where, n in sorted(counts.items()) if n >= min_parts]
    gold = load_renders(settings, run_id=f"compact-{int(time.time())}")
    return {
        "partitions_compacted": len(merged),
        "parts_merged": sum(m["parts"] for m in merged),
        "rows": sum(m["merged"] for m in merged),
        "renders": gold["renders"],
    }


@_timed
def backfill_features(
    settings: Settings, patches: str | None = None, profiles: Sequence[str] | str | None = None
) -> dict:
    """One-time, for a lake rendered before audio features: compute them for every manifest
    row that lacks them, from its FLAC, into new parts, then load them into gold.renders."""
    lake = lake_of(settings)
    done = [render.backfill_features(lake, *where) for where in sorted(_chosen_partitions(settings, patches, profiles))]
    gold = load_renders(settings, run_id=f"backfill-features-{int(time.time())}")
    return {
        "partitions": len(done),
        "backfilled": sum(d["backfilled"] for d in done),
        "renders": gold["renders"],
    }


@_timed
def migrate_profiles(settings: Settings) -> dict:
    """One-time, for a lake rendered before render profiles: every legacy manifest part and
    its objects moved to the profile layout (``gold.migrate``), the moved parts loaded, and
    the warehouse's rows of the legacy parts (profile '') dropped. Idempotent: a rerun (or a
    run on a lake without legacy parts) moves nothing and drops nothing."""
    from .gold.migrate import migrate_lake

    moved = migrate_lake(lake_of(settings))
    gold = load_renders(settings, run_id=f"migrate-profiles-{int(time.time())}")
    with connect(settings) as conn:
        with conn.transaction():
            dropped = conn.execute("delete from gold.renders where profile_id = ''").rowcount
            conn.execute("delete from gold.manifest_parts where profile_id = ''")
        renders = warehouse.scalar(conn, "select count(*) from gold.renders")
    return {**moved, "parts_loaded": gold["parts_loaded"], "legacy_rows_dropped": dropped, "renders": renders}


@_timed
def run_validation(
    settings: Settings,
    patches: str | None,
    run_id: str | None = None,
    max_failures: int | None = None,
    audit: int | None = None,
    full: bool = False,
    profiles: Sequence[str] | str | None = None,
    overrides: dict | None = None,
) -> dict:
    """Every validation check, on this run's renders plus an audit of ``audit`` older ones
    (``settings.validation_audit`` when None; every render with ``full``); with a run id,
    each result is recorded in ops before the caller fails the run on it. ``max_failures``
    caps the failures returned (XCom), not those recorded."""
    patch_ids = [v.patch_id for v in voices_of(settings, patches)]
    profile_ids = profile_ids_of(settings, profiles, overrides)
    result = validate.validate_run(settings, patch_ids, run_id=run_id, audit=audit, full=full, profile_ids=profile_ids)
    if run_id:
        with connect(settings) as conn:
            schema.ensure_schema(conn)
            stats.record_validation(conn, run_id, result.as_dict()["checks"], result.failures)
    return result.as_dict(max_failures)


@_timed
def build_analytics(settings: Settings) -> dict:
    """The dbt analytics marts (and their tests) over silver and gold, for the dashboards."""
    from .warehouse.transform import run_dbt

    run_dbt(["build", "--select", "path:models/analytics", "--quiet"], settings=settings)
    return {"built": "analytics"}


@_timed
def release(
    settings: Settings, name: str, patches: str | None, split_by: str = "song", profile: str | None = None
) -> dict:
    """An immutable release ``name`` of ``patches``' renders in one profile (the first the run
    picks; ``default`` when None) (``dx7lake release``); the DAG runs it after validation
    passed and the analytics marts its card plots read were built. A rerun with the same
    request finds the finished release; another request under that name refuses."""
    from .release import build_release

    patch_ids = [v.patch_id for v in voices_of(settings, patches)]
    profile_id = profile_ids_of(settings, profile)[0]
    with connect(settings) as conn:
        return build_release(lake_of(settings), conn, name, patch_ids, split_by, profile_id=profile_id)


def provision_metabase(settings: Settings) -> dict:
    """Dashboards as code: the repo's spec onto the Metabase at ``settings.metabase_url``."""
    from .metabase.provision import provision_from_settings

    return provision_from_settings(settings)


def start_run(settings: Settings, run_id: str, params: dict) -> None:
    """Open the run in ops.pipeline_runs (the first task calls it, before any parallel task)."""
    with connect(settings) as conn:
        schema.ensure_schema(conn)
        stats.start_run(conn, run_id, params)


def record(settings: Settings, run_id: str, stage: str, result: dict, partition: str | int = "") -> dict:
    """A stage's rows, seconds and throughput into ops.task_stats; returns ``result``."""
    with connect(settings) as conn:
        stats.record_task(conn, run_id, stage, result, partition)
    return result


def record_render(settings: Settings, run_id: str, result: dict) -> dict:
    """A render partition's figures into ops.render_stats and ops.task_stats; returns ``result``."""
    with connect(settings) as conn:
        stats.record_render(conn, run_id, result, result["phrase_seconds"])
    return result


def finish_run(settings: Settings, run_id: str, passed: bool) -> None:
    with connect(settings) as conn:
        stats.finish_run(conn, run_id, "success" if passed else "failed")


def write_summary(settings: Settings, stage_results: dict[str, Iterable[dict] | dict]) -> dict:
    """``summary.json`` under the home: counts of every stage and its seconds."""

    ext = task_results(stage_results["extract"])[0]
    loads = task_results(stage_results["load"])
    plan = task_results(stage_results["plan"])[0]
    renders = task_results(stage_results["render"])
    gold = task_results(stage_results["load_renders"])[0]
    val = task_results(stage_results["validate"])[0]
    with connect(settings) as conn:
        # the analytics marts count them incrementally: counting silver would read the lake each run
        phrases, unique = conn.execute(
            "select n_phrases, unique_contents from analytics.dedup_ratio where set_type = 'all'"
        ).fetchone()
        rejected = dict(conn.execute("select reason, n_phrases from analytics.rejected_by_reason order by reason"))
    seconds = {
        "extract": ext["seconds"],
        "load": round(max(r["finished_at"] for r in loads) - min(r["started_at"] for r in loads), 3) if loads else 0,
        "dbt": round(plan["started_at"] - max((r["finished_at"] for r in loads), default=plan["started_at"]), 3),
        "render": round(max(r["finished_at"] for r in renders) - min(r["started_at"] for r in renders), 3)
        if renders
        else 0,
        "load_renders": gold["seconds"],
        "validate": val["seconds"],
    }
    summary = {
        "files_seen": ext["files_seen"],
        "files_extracted": ext["files_extracted"],
        "files_empty": ext["files_empty"],
        "files_quarantined": ext["files_quarantined"],
        "files_skipped": ext["files_skipped"],
        "notes": val["raw_rows"],
        "phrases": phrases,
        "unique_phrases": unique,
        "rejected_phrases": sum(rejected.values()),
        "rejected_by_reason": rejected,
        "patches": val["patches"],
        "renders": gold["renders"],
        "rendered_this_run": sum(r["rendered"] for r in renders),
        # render pools' processes belong to forkservers no task reaps: their CPU time only they report
        "render_pool_cpu_seconds": round(sum(r["pool_cpu_seconds"] for r in renders), 1),
        "validation": "passed" if val["passed"] else "failed",
        "validation_failed": val["failed"],
        "validation_failures": val["failures"][:50],
        "validation_flagged": val["flagged"],
        "seconds": seconds,
        "lake": settings.lake_uri,
    }
    settings.home.mkdir(parents=True, exist_ok=True)
    settings.summary_path.write_text(json.dumps(summary, indent=2) + "\n")
    log.info("summary written to %s", settings.summary_path)
    return summary
