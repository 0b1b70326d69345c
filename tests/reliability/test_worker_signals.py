"""The process pool's threads and workers never take a Ctrl-C meant for the parent's main thread."""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path

import pytest

from servesim.workers import map_unordered

pytestmark = pytest.mark.skipif(not Path("/proc/self/task").is_dir() or sys.platform != "linux", reason="reads /proc")


def _sigint_blocked(tid: int | str = "self") -> bool:
    """Whether SIGINT is in the signal mask of a thread of this process (or of this process's main thread)."""
    path = f"/proc/self/task/{tid}/status" if tid != "self" else "/proc/self/status"
    mask = next(l.split()[1] for l in Path(path).read_text().splitlines() if l.startswith("SigBlk:"))
    return bool(int(mask, 16) & (1 << (signal.SIGINT - 1)))


def _worker_state(_: int) -> tuple[bool, bool]:
    """(SIGINT ignored, SIGINT blocked) in the worker running this task."""
    return signal.getsignal(signal.SIGINT) == signal.SIG_IGN, _sigint_blocked()


def test_pool_threads_block_sigint_workers_ignore_it_and_the_caller_keeps_it():
    before = _sigint_blocked()
    it = map_unordered(_worker_state, [(i,) for i in range(4)], 2)
    first = next(it)  # the pool exists now: its manager (and queue feeder) threads are running
    others = [t for t in threading.enumerate() if t is not threading.main_thread() and t.native_id is not None]
    assert others, "the pool started no thread"
    assert all(_sigint_blocked(t.native_id) for t in others if Path(f"/proc/self/task/{t.native_id}").exists())
    assert _sigint_blocked() == before  # the caller's own mask is restored
    results = [first, *it]
    assert sorted(i for i, _ in results) == [0, 1, 2, 3]
    assert all(state == (True, False) for _, state in results)  # ignored, and unblocked again once ignored
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the parent still turns Ctrl-C into KeyboardInterrupt
