"""A run's steady-state summary: warm-up and cool-down dropped, the rest summarised as `summarize` does.

Warm-up: MSER-5 (White 1997): batch means of 5 requests in arrival order, the truncation d <= half of the
batches that minimises the variance of the remaining mean over (batches kept)²; taken over TTFT and E2E,
the larger cut wins. Cool-down: requests arriving after (last arrival − p99 E2E) see an engine that drains
once arrivals stop (lighter load than steady state), so they are dropped too. A saturated run has no
steady state: its summary is still computed but marked (`saturated` in the run summary says so).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from servesim.metrics.definitions import e2e_s, is_completed, ttft_s
from servesim.metrics.summary import summarize

if TYPE_CHECKING:  # engine records are duck-typed here, as in metrics/summary.py
    from servesim.engine.request import RequestRecord

MSER_BATCH = 5
MIN_KEPT = 20  # fewer completed requests than this after the cuts: no steady-state summary (too few to mean anything)


def mser_cut(values: np.ndarray, batch: int = MSER_BATCH) -> int:
    """MSER-k warm-up truncation (requests to drop): the d <= half of the batch means minimising var/(m−d)²."""
    m = values.size // batch
    if m < 4:
        return 0
    z = values[: m * batch].reshape(m, batch).mean(axis=1)
    # Suffix sums give every truncation's mean and variance in one pass.
    s1 = np.cumsum(z[::-1])[::-1]
    s2 = np.cumsum((z * z)[::-1])[::-1]
    k = np.arange(m, 0, -1, dtype=float)  # points kept for truncation d = 0..m-1
    var = s2 / k - (s1 / k) ** 2
    crit = var / k
    half = m // 2
    return int(np.argmin(crit[: half + 1])) * batch


def steady_state_summary(records: Sequence[RequestRecord]) -> dict[str, Any]:
    """The summary of the requests left after dropping warm-up (MSER-5) and cool-down; counts of what was dropped."""
    recs = sorted(records, key=lambda r: (r.arrival_s, r.id))
    done = [r for r in recs if is_completed(r)]
    out: dict[str, Any] = {"method": "MSER-5 warm-up over TTFT and E2E; cool-down = arrivals after last arrival - p99 E2E",
                           "requests": len(recs)}
    if len(done) < MIN_KEPT:
        return out | {"dropped_warmup": 0, "dropped_cooldown": 0, "kept": 0,
                      "note": f"fewer than {MIN_KEPT} completed requests: no steady-state summary"}
    ttft = np.array([ttft_s(r) for r in done], dtype=float)
    e2e = np.array([e2e_s(r) for r in done], dtype=float)
    cut = max(mser_cut(ttft), mser_cut(e2e))
    start_s = done[cut].arrival_s if cut < len(done) else float("inf")
    end_s = recs[-1].arrival_s - float(np.percentile(e2e, 99))
    kept = [r for r in recs if start_s <= r.arrival_s <= end_s]
    dropped_warm = sum(1 for r in recs if r.arrival_s < start_s)
    dropped_cool = len(recs) - dropped_warm - len(kept)
    out |= {"dropped_warmup": dropped_warm, "dropped_cooldown": dropped_cool, "kept": len(kept),
            "window_s": [start_s, end_s] if kept else None}
    if sum(1 for r in kept if is_completed(r)) < MIN_KEPT:
        return out | {"note": f"fewer than {MIN_KEPT} completed requests inside the steady window: no steady-state summary"}
    # Throughput over the window's arrivals (span of their first arrival to last finish), as summarize() defines it.
    return out | summarize(kept)
