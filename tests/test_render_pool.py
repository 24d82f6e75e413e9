"""The render process pool: sized to the cores, results in job order, safe where forking is not."""

from __future__ import annotations

import multiprocessing
import os

import pytest

from dx7lake.gold.pool import ordered_map, worker_count

_offset = {"value": 0}


def _init(offset: int) -> None:
    _offset["value"] = offset


def _job(n: int) -> tuple[int, int]:
    return n + _offset["value"], os.getpid()


def test_worker_count_is_the_affinity_capped_by_config():
    from dx7lake.config import load_settings

    cores = len(os.sched_getaffinity(0))
    assert worker_count() == cores
    assert worker_count(1) == 1 and worker_count(cores + 5) == cores
    assert worker_count(load_settings(env={"DX7LAKE_RENDER_WORKERS": "1"}).render_workers) == 1
    with pytest.raises(ValueError, match="at least 1"):
        worker_count(0)
    with pytest.raises(ValueError, match="at least 1"):
        load_settings(env={"DX7LAKE_RENDER_WORKERS": "0"})


def test_a_render_task_takes_its_share_of_the_workers_cores():
    """Render tasks per worker split its cores (at least one each); a configured count wins."""
    from dx7lake.config import load_settings

    cores = len(os.sched_getaffinity(0))
    settings = load_settings(env={"DX7LAKE_RENDER_TASKS_PER_WORKER": "2", "DX7LAKE_WORKERS": "3"})
    assert worker_count(settings.render_workers, settings.render_tasks_per_worker) == max(1, cores // 2)
    assert worker_count(None, cores * 4) == 1 and worker_count(1, 2) == 1
    assert settings.pools["dx7lake_render"]["slots"] == 6 and settings.pools["dx7lake_extract"]["slots"] == 12
    with pytest.raises(ValueError, match="DX7LAKE_WORKERS must be at least 1"):
        load_settings(env={"DX7LAKE_WORKERS": "0"})


def test_pool_results_come_back_in_job_order_from_other_processes():
    out = list(ordered_map(_job, range(40), workers=2, initializer=_init, initargs=(1000,), in_flight=3))
    assert [n for n, _ in out] == [1000 + i for i in range(40)]
    assert os.getpid() not in {pid for _, pid in out}


def _in_daemon(queue) -> None:
    queue.put([pid for _, pid in ordered_map(_job, range(5), workers=2, initializer=_init, initargs=(0,))])


def test_a_daemonic_process_runs_the_jobs_itself():
    ctx = multiprocessing.get_context("forkserver")
    queue = ctx.Queue()
    proc = ctx.Process(target=_in_daemon, args=(queue,), daemon=True)
    proc.start()
    pids = queue.get(timeout=60)
    proc.join()
    assert set(pids) == {proc.pid}


def test_a_single_job_runs_in_this_process():
    (out,) = ordered_map(_job, [7], workers=2, initializer=_init, initargs=(0,))
    assert out == (7, os.getpid())


def test_too_few_jobs_for_a_pool_run_in_this_process():
    out = list(ordered_map(_job, range(5), workers=2, initializer=_init, initargs=(0,), min_jobs=6))
    assert {pid for _, pid in out} == {os.getpid()} and [n for n, _ in out] == list(range(5))
    pooled = list(ordered_map(_job, range(6), workers=2, initializer=_init, initargs=(0,), min_jobs=6))
    assert os.getpid() not in {pid for _, pid in pooled} and [n for n, _ in pooled] == list(range(6))
