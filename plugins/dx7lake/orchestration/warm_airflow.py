"""``airflow`` with dbt and dx7lake's stages already imported, for ``airflow dags test
--use-executor`` (the demo).

A LocalExecutor forks its workers from the process that runs it, and each task process is
forked from a worker: what this process imported, every task process starts with, as a
task-by-task ``dags test`` reuses its one process. Cosmos runs dbt in the task process
(``InvocationMode.DBT_RUNNER``) and the stages import the parser, pyarrow and psycopg:
about 4 CPU seconds paid once here instead of once per task (a run has about 80).
"""

from __future__ import annotations

import sys

import dbt.adapters.postgres
import dbt.cli.main  # noqa: F401  (imported for the task processes forked from this one)
from airflow.__main__ import main

import dx7lake.stages  # noqa: F401

if __name__ == "__main__":
    sys.exit(main())
