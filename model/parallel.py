"""Ordered work split over worker processes, for the long golden-model sweeps (check, eval).

Each task is a pure function of its arguments (every model and image has its own seed), and the
results are returned in task order, so a sweep's output is the same whatever the number of workers.
Workers are started with ``spawn`` (a fork of a parent that has initialized torch or OpenMP threads
can hang) and run single-threaded: BLAS/OpenMP thread counts are set to 1 in the environment they
inherit, before they import NumPy, and torch is set to one thread if a worker loads it.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from typing import Any, TypeVar

__all__ = ["WorkerError", "check_threads", "ordered_map"]

T = TypeVar("T")

# environment variables that fix a worker's native thread pools; read when a library loads
_ONE_THREAD_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                   "BLIS_NUM_THREADS", "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")


class WorkerError(RuntimeError):
    """A worker process died (killed, out of memory) instead of returning or raising."""


def check_threads(threads: object) -> int:
    """``threads`` as a validated worker count (an int >= 1)."""
    if not isinstance(threads, int) or isinstance(threads, bool):
        raise TypeError(f"threads must be an integer, got {type(threads).__name__}")
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    return threads


@contextmanager
def _single_threaded_children() -> Iterator[None]:
    """Spawned children inherit ``os.environ`` as it is when they start: set the thread counts to 1
    for that time only (the parent's libraries are already loaded and keep their settings)."""
    saved = {k: os.environ.get(k) for k in _ONE_THREAD_ENV}
    os.environ.update(dict.fromkeys(_ONE_THREAD_ENV, "1"))
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _worker_init() -> None:
    import sys

    if "torch" in sys.modules:  # only if the unpickled task imported it; do not load it for nothing
        sys.modules["torch"].set_num_threads(1)


def ordered_map(
    fn: Callable[..., T],
    tasks: Sequence[tuple[Any, ...]],
    threads: int = 1,
    done: Callable[[int, T], None] | None = None,
) -> list[T]:
    """``[fn(*t) for t in tasks]``, over ``threads`` worker processes when ``threads > 1``.

    ``fn`` must be a module-level function (workers import it). ``done(i, result)`` is called in the
    calling process, in task order, as soon as task i and all before it are finished (progress lines
    keep their order). An exception raised by a task is raised here, unchanged, after the pending
    tasks are cancelled; a worker that dies raises :class:`WorkerError`.
    """
    check_threads(threads)
    if threads == 1 or len(tasks) <= 1:
        out = []
        for i, t in enumerate(tasks):
            out.append(fn(*t))
            if done is not None:
                done(i, out[-1])
        return out
    ctx = multiprocessing.get_context("spawn")
    with _single_threaded_children():
        pool = ProcessPoolExecutor(max_workers=min(threads, len(tasks)), mp_context=ctx,
                                   initializer=_worker_init)
        try:
            futures: list[Future] = [pool.submit(fn, *t) for t in tasks]
            out = []
            for i, f in enumerate(futures):
                try:
                    out.append(f.result())
                except BrokenProcessPool as exc:
                    raise WorkerError(f"a worker process died while running task {i} of "
                                      f"{len(tasks)} ({exc})") from None
                if done is not None:
                    done(i, out[-1])
        finally:
            # on an error, do not wait for the queued tasks: cancel them, then end the workers
            pool.shutdown(wait=True, cancel_futures=True)
    return out
