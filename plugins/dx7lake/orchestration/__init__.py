"""Airflow glue: what the DAG and ``dx7lake airflow``/``demo`` need beyond ``stages``.

Owns: ``airflow_env`` (the environment of an Airflow process on a dx7lake home) and
``cosmos_dbt`` (the dbt project as a Cosmos task group).
May import: every layer; nothing below imports it.
See docs/ARCHITECTURE.md.
"""
