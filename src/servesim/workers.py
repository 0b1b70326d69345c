"""Local process pools that Ctrl-C stops: workers ignore SIGINT, and the parent ends them when it is interrupted."""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import signal
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from typing import Any

__all__ = ["map_unordered", "pool_context"]

_CAN_MASK = hasattr(signal, "pthread_sigmask")  # POSIX; elsewhere Ctrl-C goes to the main thread anyway


def _ignore_sigint() -> None:
    # Ctrl-C in a terminal reaches every process of the group: only the parent handles it (and ends the workers).
    # A worker forks with SIGINT blocked (_sigint_held): ignoring it first drops one that arrived in between.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if _CAN_MASK:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


@contextlib.contextmanager
def _sigint_held() -> Iterator[None]:
    """Block SIGINT in this thread for the block; a Ctrl-C meanwhile raises KeyboardInterrupt when it ends.

    Threads and processes started inside inherit the block: the pool's manager and queue-feeder threads keep
    it (the kernel may hand a process-wide SIGINT to any thread that does not block it, and CPython acts on
    one caught by another thread only when the main thread next wakes, possibly never), and forked workers
    hold it until their initializer ignores it (so no worker dies of Ctrl-C with a traceback).
    """
    if not _CAN_MASK:
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)  # a pending Ctrl-C is raised here, in the caller's try


def pool_context() -> Any:
    """fork where the platform has it (workers start in milliseconds and inherit imported modules), else the default."""
    return mp.get_context("fork") if "fork" in mp.get_all_start_methods() else None


def _stop(pool: ProcessPoolExecutor) -> None:
    """End a pool now: running tasks are killed, queued ones cancelled, its threads joined (nothing else waited for).

    Runs with SIGINT held, so a second Ctrl-C cannot cut the cleanup short (it is raised once the pool is gone).
    """
    with _sigint_held():
        procs = list((getattr(pool, "_processes", None) or {}).values())
        for p in procs:
            if p.is_alive():
                p.terminate()
        # Joins the manager thread (it marks the killed tasks broken), so no pool thread outlives this call.
        pool.shutdown(wait=True, cancel_futures=True)
        for p in procs:
            p.join(timeout=5)


def map_unordered(fn: Callable[..., Any], tasks: list[tuple[Any, ...]], workers: int, mp_context: Any = None) -> Iterator[tuple[int, Any]]:
    """Yield (task index, fn(*task)) as tasks finish on a process pool of `workers`; an interrupt (or closing the
    iterator early) kills the workers instead of waiting for their tasks."""
    if not tasks:
        return
    ctx = mp_context if mp_context is not None else pool_context()
    pool: ProcessPoolExecutor | None = None
    try:
        with _sigint_held():  # the pool forks its workers and starts its threads at the first submit
            pool = ProcessPoolExecutor(max_workers=min(workers, len(tasks)), mp_context=ctx, initializer=_ignore_sigint)
            futures: dict[Future[Any], int] = {pool.submit(fn, *task): i for i, task in enumerate(tasks)}
        pending = set(futures)
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for fut in sorted(done, key=futures.__getitem__):
                yield futures[fut], fut.result()
    except BaseException:
        if pool is not None:
            _stop(pool)
        raise
    pool.shutdown(wait=True)
