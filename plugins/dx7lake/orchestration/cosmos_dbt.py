"""The dbt project as an Airflow task group, through astronomer-cosmos.

Kept out of the DAG file so the DAG stays wiring only. The profile comes from the
``dx7lake_warehouse`` Airflow connection; dbt runs in-process (dbtRunner) and each model's
tests (data and unit tests) run as their own tasks right after it; tests that span two
models run once both exist, and the sources' tests run before the first model reads them.
When ``dbt/target/manifest.json`` exists (``make setup`` writes it) Cosmos reads it instead
of calling ``dbt ls``, which keeps DAG parsing fast.
"""

from __future__ import annotations

from cosmos import DbtTaskGroup, ExecutionConfig, ProfileConfig, ProjectConfig, RenderConfig
from cosmos.constants import InvocationMode, LoadMode, SourceRenderingBehavior, TestBehavior
from cosmos.profiles import PostgresUserPasswordProfileMapping

from ..config import WAREHOUSE_CONN_ID, Settings
from ..warehouse.transform import manifest_path


def dbt_task_group(settings: Settings, group_id: str = "dbt_silver", **kwargs) -> DbtTaskGroup:
    project = settings.dbt_project
    manifest = manifest_path(project)
    return DbtTaskGroup(
        group_id=group_id,
        project_config=ProjectConfig(
            dbt_project_path=project,
            manifest_path=manifest if manifest.exists() else None,
            install_dbt_deps=False,
        ),
        profile_config=ProfileConfig(
            profile_name="dx7lake",
            target_name="airflow",
            profile_mapping=PostgresUserPasswordProfileMapping(
                conn_id=WAREHOUSE_CONN_ID, profile_args={"schema": "silver", "threads": 2}
            ),
        ),
        execution_config=ExecutionConfig(invocation_mode=InvocationMode.DBT_RUNNER),
        render_config=RenderConfig(
            load_method=LoadMode.DBT_MANIFEST if manifest.exists() else LoadMode.AUTOMATIC,
            test_behavior=TestBehavior.AFTER_EACH,
            # analytics marts read gold, which exists only after rendering: a later task builds them
            exclude=["path:models/analytics"],
            # relationships tests span two models: run them once both are built
            should_detach_multiple_parents_tests=True,
            # the raw source's tests run as their own task before anything reads it
            source_rendering_behavior=SourceRenderingBehavior.WITH_TESTS_OR_FRESHNESS,
            # Cosmos would emit postgres:// assets, which need a host (the embedded server is a
            # socket); the DAG declares its own silver asset instead.
            emit_datasets=False,
        ),
        operator_args={"install_deps": False, "execution_timeout": settings.task_timeout("dbt")},
        **kwargs,
    )
