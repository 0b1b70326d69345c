"""Local process pools that Ctrl-C stops: workers ignore SIGINT, and the parent ends them when it is interrupted."""

from __future__ import annotations

import multiprocessing as mp
import signal
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from typing import Any

__all__ = ["map_unordered", "pool_context"]


def _ignore_sigint() -> None:
    # Ctrl-C in a terminal reaches every process of the group: only the parent handles it (and ends the workers).
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def pool_context() -> Any:
    """fork where the platform has it (workers start in milliseconds and inherit imported modules), else the default."""
    return mp.get_context("fork") if "fork" in mp.get_all_start_methods() else None


def _stop(pool: ProcessPoolExecutor) -> None:
    """End a pool now: running tasks are killed, queued ones cancelled (nothing is waited for)."""
    procs = list((getattr(pool, "_processes", None) or {}).values())
    for p in procs:
        if p.is_alive():
            p.terminate()
    pool.shutdown(wait=True, cancel_futures=True)
    for p in procs:
        p.join(timeout=5)


def map_unordered(fn: Callable[..., Any], tasks: list[tuple[Any, ...]], workers: int, mp_context: Any = None) -> Iterator[tuple[int, Any]]:
    """Yield (task index, fn(*task)) as tasks finish on a process pool of `workers`; an interrupt (or closing the
    iterator early) kills the workers instead of waiting for their tasks."""
    if not tasks:
        return
    ctx = mp_context if mp_context is not None else pool_context()
    pool = ProcessPoolExecutor(max_workers=min(workers, len(tasks)), mp_context=ctx, initializer=_ignore_sigint)
    try:
        futures: dict[Future[Any], int] = {pool.submit(fn, *task): i for i, task in enumerate(tasks)}
        pending = set(futures)
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for fut in sorted(done, key=futures.__getitem__):
                yield futures[fut], fut.result()
    except BaseException:
        _stop(pool)
        raise
    pool.shutdown(wait=True)
