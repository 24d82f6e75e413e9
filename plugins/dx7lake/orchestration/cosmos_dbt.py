"""The dbt project as an Airflow task group, through astronomer-cosmos.

Kept out of the DAG file so the DAG stays wiring only. The profile comes from the
``dx7lake_warehouse`` Airflow connection; dbt runs in-process (dbtRunner). Each model is one
task running ``dbt build`` on it (Cosmos' ``TestBehavior.BUILD``): the model, then its unit
and data tests, in one dbt invocation, so a failing test fails the model's task and nothing
downstream of it runs. Tests that span two models run as their own task once both are built,
and each source's tests run as a task of their own before anything reads the source. That is
one dbt invocation per model, per tested source and per two-model test (20 for silver),
where a run and a test task per model, and a freshness check per source that declares no
freshness, took 34 (docs/SCALING.md, "One machine"). When ``dbt/target/manifest.json``
exists (``make setup`` writes it) Cosmos reads it instead of calling ``dbt ls``, which keeps
DAG parsing fast.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import DAG, TaskGroup
from cosmos import DbtTaskGroup, ExecutionConfig, ProfileConfig, ProjectConfig, RenderConfig
from cosmos.constants import DbtResourceType, InvocationMode, LoadMode, SourceRenderingBehavior, TestBehavior
from cosmos.dbt.graph import DbtNode
from cosmos.operators.local import DbtTestLocalOperator
from cosmos.profiles import PostgresUserPasswordProfileMapping

from ..config import WAREHOUSE_CONN_ID, Settings
from ..warehouse.transform import manifest_path

# analytics marts read gold, which exists only after rendering: a later task builds them
ANALYTICS = "path:models/analytics"


def source_tests_task(
    dag: DAG, task_group: TaskGroup | None, node: DbtNode, task_args: dict[str, Any], **_: Any
) -> DbtTestLocalOperator | None:
    """A source's data tests as one task, upstream of every model that reads the source.

    Under ``TestBehavior.BUILD`` Cosmos gives a source ``dbt source freshness`` (or nothing)
    and runs its tests nowhere: a model's ``dbt build`` selects the model's tests, not those of
    the source it reads. The sources declare no freshness (the run loads them itself), so this
    task runs what matters instead: ``dbt test --select source:<name>``.
    """
    if not node.has_test:
        return None
    return DbtTestLocalOperator(
        task_id=f"{node.name}_source_test",
        dag=dag,
        task_group=task_group,
        **task_args,
        select=f"source:{node.resource_name}",
        exclude=ANALYTICS,
    )


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
            test_behavior=TestBehavior.BUILD,
            exclude=[ANALYTICS],
            # relationships tests span two models: run them once both are built
            should_detach_multiple_parents_tests=True,
            source_rendering_behavior=SourceRenderingBehavior.WITH_TESTS_OR_FRESHNESS,
            node_converters={DbtResourceType.SOURCE: source_tests_task},
            # Cosmos would emit postgres:// assets, which need a host (the embedded server is a
            # socket); the DAG declares its own silver asset instead.
            emit_datasets=False,
        ),
        operator_args={"install_deps": False, "execution_timeout": settings.task_timeout("dbt")},
        **kwargs,
    )
