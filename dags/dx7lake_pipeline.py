"""dx7lake: MIDI landing → bronze parquet → raw (COPY) → dbt silver → Dexed gold FLAC.

Wiring only: every task calls a function of ``dx7lake.stages``; XCom carries keys,
partition numbers and counts, never data. The failure policy comes from ``Settings``: every
task retries with exponential backoff (every stage is idempotent) and has its stage's
``execution_timeout``; the run has a ``dagrun_timeout``; a failure, a timeout included,
ends the run ``failed`` in ``ops.pipeline_runs`` with its reason. Extract and render run in
Airflow pools sized for the workers (``Settings.pools``), so they spread over Celery workers.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import Asset, Param, dag, get_current_context, task
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from dx7lake.config import DEFAULT_PATCHES, EXTRACT_POOL, RENDER_POOL, load_settings
from dx7lake.gold.profiles import DEFAULT_PROFILE, SAMPLE_RATES, profile_names
from dx7lake.orchestration.cosmos_dbt import dbt_task_group

BRONZE = Asset("dx7lake_bronze")
RAW = Asset("dx7lake_raw")
SILVER = Asset("dx7lake_silver")
GOLD = Asset("dx7lake_gold")
RELEASE = Asset("dx7lake_release")


def _mark_run_failed(context) -> None:
    from dx7lake.warehouse.stats import mark_run_failed

    mark_run_failed(context)


SETTINGS = load_settings()  # the dag-processor's environment: timeouts, retries, dbt project, profiles
PROFILES = profile_names(SETTINGS.profiles)  # the trigger form's pick list


def timeout(stage: str):
    return SETTINGS.task_timeout(stage)


@dag(
    dag_id="dx7lake",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    # Airflow's default of 16 running tasks per DAG would cap the pools on many workers
    max_active_tasks=max(16, *(pool["slots"] for pool in SETTINGS.pools.values())),
    tags=["dx7lake"],
    dagrun_timeout=SETTINGS.dagrun_timeout,
    on_failure_callback=_mark_run_failed,
    default_args={
        "retries": SETTINGS.task_retries,
        "retry_delay": SETTINGS.retry_delay,
        "retry_exponential_backoff": 2.0,
        "max_retry_delay": SETTINGS.max_retry_delay,
        "execution_timeout": timeout("other"),
        "on_failure_callback": _mark_run_failed,
    },
    params={
        "source": Param(None, type=["null", "string"], description="MIDI folder or URI (default: the landing folder)"),
        "extract_shards": Param(4, type="integer", minimum=1, maximum=16, description="parallel extract shards"),
        "patches": Param(DEFAULT_PATCHES, type="string", description="voice names, patch ids, random:K[:SEED]"),
        "profiles": Param(
            [DEFAULT_PROFILE],
            type="array",
            examples=PROFILES,  # the form's multi-select
            items={"type": "string", "enum": PROFILES},
            minItems=1,
            uniqueItems=True,
            description=f"render profiles from {SETTINGS.profiles.name}, rendered beside those in the lake;"
            " bpm, sample_rate, transpose and velocity_scale, when set, change each of them (ad-hoc profiles)",
        ),
        "bpm": Param(None, type=["null", "number"], minimum=20, maximum=400, description="ad-hoc profile: tempo"),
        "sample_rate": Param(
            None, type=["null", "integer"], enum=[None, *SAMPLE_RATES], description="ad-hoc profile: sample rate"
        ),
        "transpose": Param(
            None, type=["null", "integer"], minimum=-48, maximum=48, description="ad-hoc profile: semitones"
        ),
        "velocity_scale": Param(
            None, type=["null", "number"], exclusiveMinimum=0, maximum=4, description="ad-hoc profile: velocity ×"
        ),
        # nullable: Airflow's trigger form takes a field whose type lacks "null" as required, and
        # an empty required field keeps its Trigger button disabled
        "release": Param(
            None, type=["null", "string"], description="release name under <lake>/releases/ (empty: no release)"
        ),
        "release_split": Param("song", type="string", enum=["song", "patch"], description="release split rule"),
    },
    doc_md=__doc__,
)
def dx7lake():
    @task
    def extract_shards() -> list[int]:
        """Opens the run in ops.pipeline_runs, then fans extraction out over shards."""
        from dx7lake import stages

        context = get_current_context()
        stages.start_run(load_settings(), context["run_id"], dict(context["params"]))
        return list(range(int(context["params"]["extract_shards"])))

    @task(pool=EXTRACT_POOL, execution_timeout=timeout("extract"))
    def extract(shard: int, shards: str) -> dict:
        from dx7lake import stages

        params = get_current_context()["params"]
        return stages.extract_shard(load_settings(), params.get("source"), shard, int(shards))

    @task(outlets=[BRONZE])
    def merge_extract(shards: list[dict]) -> dict:
        from dx7lake import stages

        context = get_current_context()
        return stages.record(load_settings(), context["run_id"], "extract", stages.merge_extract(shards))

    @task
    def bronze_partitions(_extracted: dict) -> list[str]:
        from dx7lake import stages

        return stages.bronze_partitions(load_settings())

    @task(outlets=[RAW], max_active_tis_per_dag=2, execution_timeout=timeout("load"))
    def load(p: str) -> dict:
        from dx7lake import stages

        run_id, settings = get_current_context()["run_id"], load_settings()
        return stages.record(settings, run_id, "load", stages.load_partition(settings, p, run_id), p)

    @task(execution_timeout=timeout("load"))  # vacuums what the run loaded: a first load's is all of raw
    def loaded(results: list[dict]) -> dict:
        from dx7lake import stages

        return stages.finish_load(load_settings(), results)

    @task(outlets=[SILVER], execution_timeout=timeout("plan_render"))
    def plan_render() -> dict:
        """Runs once dbt built silver and its tests passed: publishes silver, plans gold."""
        from dx7lake import stages

        context, settings = get_current_context(), load_settings()
        params = context["params"]
        plan = stages.plan_render(settings, params["patches"], params["profiles"], stages.overrides_of(params))
        return stages.record(settings, context["run_id"], "plan_render", plan)

    @task
    def render_partitions(plan: dict) -> list[list]:
        """[profile id, partition] pairs: the render task is mapped over both."""
        return plan["partitions"]

    @task(pool=RENDER_POOL, execution_timeout=timeout("render"))  # processes: its share of the worker's cores
    def render(work: list, patches: str) -> dict:
        from dx7lake import stages

        settings = load_settings()
        result = stages.render_partition(settings, work, patches)
        return stages.record_render(settings, get_current_context()["run_id"], result)

    @task(trigger_rule="none_failed", execution_timeout=timeout("load_renders"))  # also when nothing to render
    def load_renders(_rendered: list[dict]) -> dict:
        from dx7lake import stages

        run_id, settings = get_current_context()["run_id"], load_settings()
        return stages.record(settings, run_id, "load_renders", stages.load_renders(settings, run_id))

    @task(execution_timeout=timeout("validate"))
    def validate(_gold: dict) -> dict:
        from dx7lake import stages

        context, settings = get_current_context(), load_settings()
        params = context["params"]
        result = stages.run_validation(
            settings,
            params["patches"],
            context["run_id"],
            max_failures=50,
            profiles=params["profiles"],
            overrides=stages.overrides_of(params),
        )
        return stages.record(settings, context["run_id"], "validate", result)

    @task(execution_timeout=timeout("analytics"))
    def analytics(_checks: dict) -> dict:
        """The dbt analytics marts the dashboards read."""
        from dx7lake import stages

        return stages.build_analytics(load_settings())

    @task(execution_timeout=timeout("metabase"))
    def metabase(_analytics: dict) -> dict:
        """Dashboards as code onto Metabase; skipped when METABASE_URL is not set."""
        from dx7lake import stages

        settings = load_settings()
        if not settings.metabase_url:
            raise AirflowSkipException("METABASE_URL is not set")
        return stages.provision_metabase(settings)

    @task(outlets=[RELEASE], execution_timeout=timeout("release"))
    def release(checks: dict) -> dict:
        """The run's voices in its first profile as an immutable release, once validation passed
        and the card's marts exist."""
        from dx7lake import stages

        params = get_current_context()["params"]
        if not params["release"]:
            raise AirflowSkipException("no release name given")
        if not checks["passed"]:
            raise AirflowSkipException("validation failed: no release")
        return stages.release(
            load_settings(), params["release"], params["patches"], params["release_split"], params["profiles"][0]
        )

    @task(trigger_rule="none_failed", outlets=[GOLD])
    def summary(extracted: dict, loads: list[dict], plan: dict, renders: list[dict], gold: dict, checks: dict):
        """Publishes gold (one asset event) once validation passed; else fails the run, no retry."""
        from dx7lake import stages

        settings = load_settings()
        result = stages.write_summary(
            settings,
            {
                "extract": extracted,
                "load": loads,
                "plan": plan,
                "render": renders,
                "load_renders": gold,
                "validate": checks,
            },
        )
        stages.finish_run(settings, get_current_context()["run_id"], result["validation"] == "passed")
        if result["validation"] != "passed":
            raise AirflowFailException(f"validation failed: {result['validation_failures'][:10]}")
        return {k: v for k, v in result.items() if k != "validation_failures"}

    extracted = merge_extract(extract.partial(shards="{{ params.extract_shards }}").expand(shard=extract_shards()))
    loads = load.expand(p=bronze_partitions(extracted))
    silver = dbt_task_group(SETTINGS)
    plan = plan_render()
    loaded(loads) >> silver >> plan
    renders = render.partial(patches="{{ params.patches }}").expand(work=render_partitions(plan))
    gold = load_renders(renders)
    checks = validate(gold)
    marts = analytics(checks)
    metabase(marts)
    marts >> release(checks)
    marts >> summary(extracted, loads, plan, renders, gold, checks)


dx7lake()
