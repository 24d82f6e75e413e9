"""The DAG on Celery workers for real, as on separate machines, and a worker lost mid-render.

Airflow's api-server, scheduler and dag-processor and two Celery workers run as separate
processes (``dx7lake.orchestration.celery_stack``, which the compose ``celery`` profile runs
too): metadata on the embedded Postgres, Redis as broker, the lake and the landing folder on
moto's S3 server over HTTP. Each worker has its own scratch home, temp folder, log folder
and name; they share only those network services. Runs are triggered through the REST API
with a JWT from ``/auth/token``, as the UI does, and read back through it (task instances,
their hostnames and tries).

The reference is a LocalExecutor run of the same corpus on the same control plane (the
scheduler restarted with ``LocalExecutor``, no worker), on its own lake and warehouse: gold
manifests and object sha256s must be identical to it. A worker killed (SIGKILL of its whole
process tree, as a lost machine) while it renders must cost one retry on the other worker,
and the run must end with the same gold and no duplicate row in the lake or the warehouse.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx
import psutil
import psycopg
import pytest

from conftest import new_database, require_tool
from dx7lake.config import Settings
from dx7lake.orchestration import celery_stack
from dx7lake.orchestration.airflow_env import airflow_environment

AIRFLOW = str(Path(sys.executable).with_name("airflow"))
PATCHES = "epiano"
# lower than production so that a lost worker's task is noticed in seconds, not minutes
# ([scheduler] task_instance_heartbeat_timeout is how long a running task may go unheard)
FAST_FAILURE_DETECTION = {
    "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "30",
    "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "3",
    "AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL": "2",
    # a task a lost worker had received but not yet started stays queued until this
    "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT": "180",
    "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT_CHECK_INTERVAL": "10",
    # the DAG's own retry policy (read by the dag-processor), with a short first delay
    "DX7LAKE_RETRY_DELAY": "5s",
    "DX7LAKE_MAX_RETRY_DELAY": "10s",
    # every worker a one-core machine running one render task at a time (pools follow)
    "DX7LAKE_WORKERS": "2",
    "DX7LAKE_RENDER_TASKS_PER_WORKER": "1",
}
RUN_TIMEOUT = 900
# four whole DAG runs (about 10 min each on two busy cores, most of it the dbt chain); the
# first test also pays for the control plane and the reference run
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(4 * 3600)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def kill_tree(proc: subprocess.Popen) -> None:
    """SIGKILL a process, its process group and every descendant (a lost machine)."""
    try:
        family = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        family = []
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    for p in family:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.kill()
    proc.wait(timeout=30)


@dataclass
class Stack:
    """Processes started by the test, each in its own process group; logs under ``logs``."""

    logs: Path
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)

    def start(self, process: celery_stack.Process, cores: set[int] | None = None) -> None:
        """Start ``process``; ``cores``: the only CPUs it and its children may run on (its machine's)."""
        log = (self.logs / f"{process.name}.log").open("ab")
        self.procs[process.name] = subprocess.Popen(
            [AIRFLOW, *process.args],
            env=process.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=None if cores is None else (lambda: os.sched_setaffinity(0, cores)),
        )

    def stop(self, name: str) -> None:
        kill_tree(self.procs.pop(name))

    def stop_all(self) -> None:
        for name in list(self.procs):
            self.stop(name)

    def check_alive(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                tail = (self.logs / f"{name}.log").read_text(errors="replace")[-3000:]
                raise AssertionError(f"{name} exited with {proc.returncode}:\n{tail}")


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory) -> Iterator[str]:
    """A Redis of its own, on a free port, with its own folder and a password, persisting nothing."""
    binary = require_tool("redis-server", "redis-server")
    folder = tmp_path_factory.mktemp("redis")
    port, password = free_port(), secrets.token_hex(16)
    proc = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(folder),
            "--save",
            "",
            "--appendonly",
            "no",
            "--requirepass",
            password,
        ],
        stdout=(folder / "redis.log").open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.2)
        yield f"redis://:{password}@127.0.0.1:{port}/0"
    finally:
        kill_tree(proc)


@pytest.fixture(scope="module")
def s3(moto_s3, chorales) -> Iterator[dict]:
    """``aws_default`` on the moto server, a landing bucket holding the chorales, and a way to make lakes."""
    from dx7lake.lake import s3_client

    conn = {
        "conn_type": "aws",
        "login": "testing",
        "password": "testing",
        "extra": {"endpoint_url": moto_s3, "region_name": "us-east-1"},
    }
    mp = pytest.MonkeyPatch()
    mp.setenv("AIRFLOW_CONN_AWS_DEFAULT", json.dumps(conn))
    client = s3_client()
    client.create_bucket(Bucket="landing")
    for path in sorted(chorales.rglob("*.mid")):
        client.put_object(Bucket="landing", Key=f"chorales/{path.name}", Body=path.read_bytes())
    yield {"AIRFLOW_CONN_AWS_DEFAULT": json.dumps(conn), "source": "s3://landing/chorales", "client": client}
    mp.undo()


@dataclass
class Deployment:
    """The control plane plus whatever workers a scenario starts, and the REST API."""

    stack: Stack
    wiring: dict[str, str]
    base: Path
    api: str
    token: str
    s3: dict
    pg_server: object
    control_env: dict[str, str] = field(default_factory=dict)

    def target(self, name: str) -> Settings:
        """A fresh lake (its own bucket) and warehouse (its own database) for one scenario."""
        bucket = f"lake-{name}"
        self.s3["client"].create_bucket(Bucket=bucket)
        return Settings(
            home=self.base / "unused",
            lake_uri=f"s3://{bucket}/lake",
            source=self.s3["source"],
            pg_url=new_database(self.pg_server, f"wh_{name}"),
        )

    def machine_env(self, name: str, target: Settings) -> dict[str, str]:
        """The environment of one machine: its own scratch home, temp and Airflow folders."""
        scratch = self.base / "machines" / name
        (scratch / "tmp").mkdir(parents=True, exist_ok=True)
        settings = Settings(home=scratch, lake_uri=target.lake_uri, source=target.source, pg_url=target.pg_url)
        env = airflow_environment(settings)
        env.update(self.wiring)
        env.update(
            {
                "TMPDIR": str(scratch / "tmp"),
                "AIRFLOW_CONN_AWS_DEFAULT": self.s3["AIRFLOW_CONN_AWS_DEFAULT"],
                "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
            }
        )
        return env

    def start_workers(self, target: Settings, names: tuple[str, ...]) -> None:
        """Each worker a one-core machine: pinned to a core of its own, so that the render
        processes it starts (one per core it may use) never share a core with another worker's."""
        cores = sorted(os.sched_getaffinity(0))
        for i, name in enumerate(names):
            self.stack.start(celery_stack.worker(self.machine_env(name, target), name), {cores[i % len(cores)]})

    def size_pools(self, workers: int) -> None:
        """The DAG's pools sized for ``workers`` (as ``dx7lake pools`` does in compose's airflow-init)."""
        from dx7lake.orchestration.airflow_env import ensure_pools

        ensure_pools(Settings(home=self.base, lake_uri="", source="", workers=workers), self.control_env)

    def restart_scheduler(self, env: dict[str, str]) -> None:
        self.stack.stop("airflow-scheduler")
        self.stack.start(celery_stack.Process("airflow-scheduler", celery_stack.COMMANDS["airflow-scheduler"], env))

    def get(self, path: str, **params) -> dict:
        response = httpx.get(f"{self.api}{path}", params=params, headers=self.headers, timeout=30)
        response.raise_for_status()
        return response.json()

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def trigger(self, **conf) -> str:
        body = {"logical_date": None, "conf": {"source": self.s3["source"], "patches": PATCHES, **conf}}
        response = httpx.post(f"{self.api}/api/v2/dags/dx7lake/dagRuns", json=body, headers=self.headers, timeout=30)
        assert response.status_code == 200, response.text
        return response.json()["dag_run_id"]

    def task_instances(self, run_id: str) -> list[dict]:
        return self.get(f"/api/v2/dags/dx7lake/dagRuns/{run_id}/taskInstances", limit=1000)["task_instances"]

    def tries(self, run_id: str, task_id: str, map_index: int) -> list[dict]:
        path = f"/api/v2/dags/dx7lake/dagRuns/{run_id}/taskInstances/{task_id}/{map_index}/tries"
        return self.get(path)["task_instances"]

    def wait(self, run_id: str, on_poll=None) -> str:
        deadline = time.monotonic() + RUN_TIMEOUT
        while time.monotonic() < deadline:
            self.stack.check_alive()
            state = self.get(f"/api/v2/dags/dx7lake/dagRuns/{run_id}")["state"]
            if state in ("success", "failed"):
                return state
            if on_poll is not None:
                on_poll()
            time.sleep(1)
        raise AssertionError(f"{run_id} still running after {RUN_TIMEOUT} s")


@pytest.fixture(scope="module")
def deployment(tmp_path_factory, pg_server, redis_url, s3) -> Iterator[Deployment]:
    """Metadata DB migrated on the embedded Postgres, then the api-server, scheduler and dag-processor."""
    from cryptography.fernet import Fernet

    base = tmp_path_factory.mktemp("celery")
    metadata = new_database(pg_server, "airflow")  # postgresql://user@/db?host=<socket dir>
    sqlalchemy_url = metadata.replace("postgresql://", "postgresql+psycopg2://", 1)
    api_port = free_port()
    passwords = base / "passwords.json"
    password = secrets.token_hex(12)
    passwords.write_text(json.dumps({"admin": password}))
    wiring = {
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": sqlalchemy_url,
        "AIRFLOW__CELERY__BROKER_URL": redis_url,
        "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + sqlalchemy_url,
        "AIRFLOW__CORE__FERNET_KEY": Fernet.generate_key().decode(),
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(32),
        "AIRFLOW__API__SECRET_KEY": secrets.token_hex(32),
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{api_port}/execution/",
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(api_port),
        "AIRFLOW__CORE__AUTH_MANAGER": "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
        **FAST_FAILURE_DETECTION,
    }
    assert set(celery_stack.WIRING) <= set(wiring)
    dep = Deployment(Stack(base), wiring, base, f"http://127.0.0.1:{api_port}", "", s3, pg_server)
    control = dep.control_env = {**dep.machine_env("control", dep.target("control")), **celery_stack.CELERY_SETTINGS}
    subprocess.run(
        [AIRFLOW, "db", "migrate"],
        env=control,
        check=True,
        stdout=(base / "migrate.log").open("wb"),
        stderr=subprocess.STDOUT,
    )
    dep.size_pools(2)
    try:
        for process in celery_stack.control_plane(control):
            dep.stack.start(process)
        deadline = time.monotonic() + 180
        while True:
            dep.stack.check_alive()
            try:
                response = httpx.post(f"{dep.api}/auth/token", json={"username": "admin", "password": password})
                if response.status_code in (200, 201):
                    dep.token = response.json()["access_token"]
                    if dep.get("/api/v2/dags/dx7lake")["dag_id"] == "dx7lake":
                        break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the API server did not serve the parsed DAG in time"
            time.sleep(2)
        yield dep
    finally:
        dep.stack.stop_all()


# --- what a run leaves: gold in the lake, rows in the warehouse ----------------------------


def gold(settings: Settings) -> tuple[list[tuple], dict[str, str]]:
    """(every manifest row, sorted, parts concatenated without dedup; key -> sha256 of each object)."""
    from dx7lake.gold.render import GOLD_MANIFESTS, GOLD_RENDERS
    from dx7lake.lake import open_lake

    lake = open_lake(settings.lake_uri)
    rows = []
    for key in sorted(k for k in lake.list(GOLD_MANIFESTS + "/") if k.endswith(".parquet")):
        for row in lake.read_parquet(key).to_pylist():
            rows.append(tuple(sorted((k, json.dumps(v, sort_keys=True, default=str)) for k, v in row.items())))
    objects = {k: hashlib.sha256(lake.get(k)).hexdigest() for k in lake.list(GOLD_RENDERS + "/") if k.endswith(".flac")}
    return sorted(rows), objects


def row_counts(settings: Settings) -> dict[str, int]:
    """Rows per table and in bronze's parts (every part, unmerged), and bronze's distinct notes.

    Equal to the reference's counts means no stage added a row twice; bronze counts notes
    across all parts, so a batch written twice shows up even where readers would dedupe.
    """
    from dx7lake.lake import open_lake

    tables = ["raw.detailed_notes", "silver.phrases", "silver.phrase_contents", "gold.renders"]
    tables += ["gold.manifest_parts", "ops.load_stats", "ops.render_stats"]
    with psycopg.connect(settings.pg_url) as conn:
        counts = {t: conn.execute(f"select count(*) from {t}").fetchone()[0] for t in tables}
    lake = open_lake(settings.lake_uri)
    ids = [
        m
        for key in lake.list("bronze/detailed_notes/")
        if key.endswith(".parquet")
        for m in lake.read_parquet(key).column("message_id").to_pylist()
    ]
    counts["bronze notes"], counts["bronze distinct notes"] = len(ids), len(set(ids))
    return counts


def warehouse_gold(settings: Settings) -> list[tuple]:
    with psycopg.connect(settings.pg_url) as conn:
        return conn.execute("select content_hash, patch_id, key, sha256 from gold.renders order by 1, 2").fetchall()


def render_throughput(tis: list[dict], renders: int) -> dict:
    """Renders per second over the render tasks' span (first start to last end)."""
    done = [t for t in tis if t["task_id"] == "render" and t["state"] == "success"]
    start = min(datetime.fromisoformat(t["start_date"]) for t in done)
    end = max(datetime.fromisoformat(t["end_date"]) for t in done)
    span = (end - start).total_seconds()
    return {"render_tasks": len(done), "renders": renders, "span_s": round(span, 2), "renders_per_s": renders / span}


# --- the scenarios, in order: reference, two workers, one worker, a worker lost ----------

RESULTS: dict[str, dict] = {}


@pytest.fixture(scope="module")
def reference(deployment) -> dict:
    """The same corpus run by the LocalExecutor on the same control plane (no Celery worker)."""
    target = deployment.target("local")
    env = {**deployment.machine_env("local", target), **celery_stack.CELERY_SETTINGS}
    env.update(AIRFLOW__CORE__EXECUTOR="LocalExecutor", AIRFLOW__CORE__PARALLELISM="4")
    deployment.restart_scheduler(env)
    try:
        run_id = deployment.trigger()
        assert deployment.wait(run_id) == "success"
    finally:
        deployment.restart_scheduler(deployment.control_env)
    rows, objects = gold(target)
    assert rows and len(objects) == len(rows)
    assert {t["hostname"] for t in deployment.task_instances(run_id) if t["task_id"] == "render"} == {socket.getfqdn()}
    counts = row_counts(target)
    assert counts["bronze notes"] == counts["bronze distinct notes"] == counts["raw.detailed_notes"] > 0
    return {"rows": rows, "objects": objects, "warehouse": warehouse_gold(target), "counts": counts}


def run_on_workers(deployment, name: str, workers: tuple[str, ...], on_poll=None) -> tuple[Settings, str, list]:
    target = deployment.target(name)
    deployment.start_workers(target, workers)
    try:
        run_id = deployment.trigger()
        state = deployment.wait(run_id, on_poll=on_poll and (lambda: on_poll(run_id)))
        assert state == "success", f"run {run_id} ended {state}"
        return target, run_id, deployment.task_instances(run_id)
    finally:
        for worker in workers:
            if worker in deployment.stack.procs:
                deployment.stack.stop(worker)


def test_a_worker_killed_mid_render_is_retried_on_the_other(deployment, reference):
    killed: dict[str, object] = {}

    def kill_worker_b_mid_render(run_id: str) -> None:
        """SIGKILL worker-b's process tree once one of its render tasks has run for a second.

        A render task of this small corpus lasts a few seconds, most of it the task process
        starting; a longer wait missed every one of worker-b's tasks in a CI run."""
        if killed:
            return
        now = datetime.now(UTC)
        for t in deployment.task_instances(run_id):
            rendering = t["task_id"] == "render" and t["state"] == "running" and t["hostname"] == "worker-b"
            if rendering and (now - datetime.fromisoformat(t["start_date"])).total_seconds() >= 1:
                deployment.stack.stop("worker-b")
                killed.update(map_index=t["map_index"], try_number=t["try_number"])
                return

    target, run_id, tis = run_on_workers(deployment, "killed", ("worker-a", "worker-b"), kill_worker_b_mid_render)
    assert killed, "worker-b never ran a render task for a second"
    extract_hosts = Counter(t["hostname"] for t in tis if t["task_id"] == "extract")
    assert set(extract_hosts) == {"worker-a", "worker-b"}, extract_hosts
    tries = deployment.tries(run_id, "render", killed["map_index"])
    by_try = {t["try_number"]: t for t in tries}
    lost, retry = by_try[killed["try_number"]], by_try[max(by_try)]
    assert lost["hostname"] == "worker-b" and lost["state"] in ("failed", "up_for_retry"), lost
    assert retry["try_number"] > lost["try_number"] and retry["hostname"] == "worker-a"
    assert retry["state"] == "success"
    rows, objects = gold(target)
    assert rows == reference["rows"]  # every manifest part concatenated: no render listed twice
    assert objects == reference["objects"]
    assert warehouse_gold(target) == reference["warehouse"]
    assert row_counts(target) == reference["counts"]


@pytest.mark.workers_bench
def test_two_workers_share_extract_and_render_and_match_the_local_executor(deployment, reference):
    target, _run_id, tis = run_on_workers(deployment, "two", ("worker-a", "worker-b"))
    for task in ("extract", "render"):
        hosts = Counter(t["hostname"] for t in tis if t["task_id"] == task and t["map_index"] >= 0)
        assert set(hosts) == {"worker-a", "worker-b"}, (task, hosts)
    assert {t["hostname"] for t in tis if t["state"] == "success"} == {"worker-a", "worker-b"}
    rows, objects = gold(target)
    assert rows == reference["rows"]
    assert objects == reference["objects"]
    assert warehouse_gold(target) == reference["warehouse"]
    assert row_counts(target) == reference["counts"]
    RESULTS["two"] = render_throughput(tis, len(rows))


@pytest.mark.workers_bench
def test_one_worker_renders_the_same(deployment, reference):
    """The 1-worker baseline of the throughput ratio (and the same gold again)."""
    deployment.size_pools(1)
    try:
        target, _run_id, tis = run_on_workers(deployment, "one", ("worker-a",))
    finally:
        deployment.size_pools(2)
    assert {t["hostname"] for t in tis if t["state"] == "success"} == {"worker-a"}
    rows, objects = gold(target)
    assert (rows, objects) == (reference["rows"], reference["objects"])
    RESULTS["one"] = render_throughput(tis, len(rows))


@pytest.mark.workers_bench
def test_render_throughput_one_vs_two_workers(capsys):
    if set(RESULTS) != {"one", "two"}:
        pytest.fail(f"the 1- and 2-worker runs did not both pass: {sorted(RESULTS)}")
    figure = {
        "bench": "celery_render_throughput",
        "one_worker": RESULTS["one"],
        "two_workers": RESULTS["two"],
        "ratio_two_vs_one": round(RESULTS["two"]["renders_per_s"] / RESULTS["one"]["renders_per_s"], 3),
        "cores": os.cpu_count(),
    }
    with capsys.disabled():
        print("\n" + json.dumps(figure))
