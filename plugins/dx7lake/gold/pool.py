"""A process pool sized to the cores, mapping jobs in order with a bounded number in flight
(render, and validation's audio checks).

Workers are started by ``forkserver``: forking an Airflow task process (threads for
heartbeats and log shipping) is unsafe, and forkserver children start from a clean,
single-threaded server that already imported dx7lake. Results come back in job order,
so what a task writes does not depend on scheduling, and at most ``in_flight`` jobs
(their inputs and outputs) are held at once whatever the partition size.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from itertools import chain, islice
from typing import Any

log = logging.getLogger(__name__)


def worker_count(configured: int | None = None, tasks_per_worker: int = 1) -> int:
    """Processes for one task: ``configured`` (``Settings.render_workers``) capped by the cores
    this process may run on, or else its share of them when ``tasks_per_worker`` such tasks
    run on this machine at once (``Settings.render_tasks_per_worker``), so that they together
    use every core once and no core twice."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if configured is None:
        return max(1, cores // max(1, tasks_per_worker))
    if configured < 1:
        raise ValueError(f"render workers must be at least 1, got {configured!r}")
    return min(configured, cores)


def in_order(submit: Callable[[Any], Future], jobs: Iterable[Any], in_flight: int) -> Iterator[Any]:
    """The results of ``submit(job)`` for each of ``jobs``, in job order, with at most
    ``in_flight`` submitted and not yet taken: the memory held is bounded, not the jobs."""
    pending: deque[Future] = deque()
    for job in jobs:
        pending.append(submit(job))
        if len(pending) >= in_flight:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


def ordered_map(
    fn: Callable[[Any], Any],
    jobs: Iterable[Any],
    workers: int,
    initializer: Callable[..., None] | None = None,
    initargs: tuple = (),
    in_flight: int | None = None,
    min_jobs: int = 2,
) -> Iterator[Any]:
    """``fn`` over ``jobs`` in worker processes (in this one when ``workers`` is 1), in order.

    Fewer than ``min_jobs`` jobs also run here (starting a pool costs more than it saves on
    a little work), and so does everything in a daemonic process (a Celery prefork child,
    say), which may not start children; it says so.
    """
    jobs = iter(jobs)
    if workers > 1 and multiprocessing.current_process().daemon:
        log.warning("daemonic process: running %s in-process instead of %d workers", fn.__name__, workers)
        workers = 1
    min_jobs = max(2, min_jobs)
    # look ahead only when a pool is possible: in-process, jobs stream one at a time
    head = list(islice(jobs, min_jobs)) if workers > 1 else []
    if workers <= 1 or len(head) < min_jobs:
        if initializer:
            initializer(*initargs)
        for job in chain(head, jobs):
            yield fn(job)
        return
    context = multiprocessing.get_context("forkserver")
    # the server imports the worker's module once; every later worker forks from it warm
    context.set_forkserver_preload([fn.__module__])
    pool = ProcessPoolExecutor(workers, mp_context=context, initializer=initializer, initargs=initargs)
    try:
        yield from in_order(lambda job: pool.submit(fn, job), chain(head, jobs), in_flight or 2 * workers)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
