"""DAG parse time: the dag-processor reparses the DAG file often, so its steady-state parse
must stay small. Measured in a fresh interpreter, against a baseline parsed in that same
process: a minimal TaskFlow DAG of ten tasks. The first ("cold") parse of each also pays
for imports (Airflow's for the baseline, Cosmos and the providers for ours)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

DAGS = Path(__file__).resolve().parents[1] / "dags"
PARSES = 5
BASELINE_DAG = """
import pendulum
from airflow.sdk import dag, task


@dag(dag_id="baseline", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"))
def baseline():
    previous = None
    for i in range(10):
        current = task(lambda: i, task_id=f"t{i}")()
        if previous is not None:
            previous >> current
        previous = current


baseline()
"""
TIMER = """
import json, sys, time
from airflow.dag_processing.dagbag import DagBag
out = {}
for name, folder in json.loads(sys.argv[1]).items():
    timings = []
    for _ in range(int(sys.argv[2])):
        started = time.perf_counter()
        bag = DagBag(dag_folder=folder)
        timings.append(time.perf_counter() - started)
    out[name] = {"cold": timings[0], "seconds": min(timings[1:]), "errors": sorted(bag.import_errors),
                 "dags": sorted(bag.dags)}
print(json.dumps(out))
"""


def run() -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        baseline = Path(tmp) / "dags"
        baseline.mkdir()
        (baseline / "baseline.py").write_text(BASELINE_DAG)
        env = os.environ | {"AIRFLOW_HOME": str(Path(tmp) / "airflow"), "AIRFLOW__CORE__LOAD_EXAMPLES": "False"}
        folders = {"baseline": str(baseline), "dx7lake": os.environ.get("AIRFLOW__CORE__DAGS_FOLDER", str(DAGS))}
        out = subprocess.run(
            [sys.executable, "-c", TIMER, json.dumps(folders), str(PARSES)],
            capture_output=True,
            text=True,
            env=env,
            check=True,
        )
    parsed = json.loads(out.stdout.strip().splitlines()[-1])
    ours, base = parsed["dx7lake"], parsed["baseline"]
    if ours["errors"] or ours["dags"] != ["dx7lake"] or base["dags"] != ["baseline"]:
        raise RuntimeError(f"a DAG file did not parse: {parsed}")
    return {
        "name": "dag_parse",
        "seconds": round(ours["seconds"], 4),
        "cold_seconds": round(ours["cold"], 3),
        "baseline": {
            "name": "a minimal ten-task TaskFlow DAG",
            "seconds": round(base["seconds"], 4),
            "cold_seconds": round(base["cold"], 3),
        },
        "ratio": round(ours["seconds"] / base["seconds"], 2),
    }
