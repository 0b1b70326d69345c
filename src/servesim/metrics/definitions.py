"""Per-request metric definitions, shared by summaries, streaming summaries and the validation layer.

Every function takes one RequestRecord and returns seconds (or None when the quantity does not exist
for that request). A record counts as completed when it was not rejected and has a finish_s; metrics of
rejected or unfinished requests are None.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from servesim.engine.request import RequestRecord

__all__ = [
    "PER_REQUEST_METRICS",
    "e2e_per_token_s",
    "e2e_s",
    "is_completed",
    "itl_gaps_s",
    "queue_s",
    "tpot_s",
    "ttft_s",
]


def is_completed(r: RequestRecord) -> bool:
    """True when the request finished: not rejected and finish_s recorded."""
    return not r.rejected and r.finish_s is not None


def ttft_s(r: RequestRecord) -> float | None:
    """TTFT (s) = first_token_s − arrival_s; queueing and prefill included. None unless completed."""
    if not is_completed(r) or r.first_token_s is None:
        return None
    return r.first_token_s - r.arrival_s


def e2e_s(r: RequestRecord) -> float | None:
    """E2E latency (s) = finish_s − arrival_s. None unless completed."""
    return r.finish_s - r.arrival_s if is_completed(r) else None  # type: ignore[operator]


def tpot_s(r: RequestRecord) -> float | None:
    """Per-request TPOT (s) = (E2E − TTFT) / (N − 1), N = output_tokens; None for N < 2 (excluded)."""
    ttft, e2e = ttft_s(r), e2e_s(r)
    if ttft is None or e2e is None or r.output_tokens < 2:
        return None
    return (e2e - ttft) / (r.output_tokens - 1)


def queue_s(r: RequestRecord) -> float | None:
    """Queueing delay (s) = first_scheduled_s − arrival_s (BLIS scheduling delay). None unless completed."""
    if not is_completed(r) or r.first_scheduled_s is None:
        return None
    return r.first_scheduled_s - r.arrival_s


def e2e_per_token_s(r: RequestRecord) -> float | None:
    """E2E / N (s): GuideLLM's `time_per_output_token_ms`, which INCLUDES TTFT. Not TPOT. None unless completed."""
    e2e = e2e_s(r)
    return None if e2e is None or r.output_tokens < 1 else e2e / r.output_tokens


def itl_gaps_s(r: RequestRecord) -> tuple[np.ndarray, np.ndarray] | None:
    """Inter-token gaps (s) of one completed request as (values, counts), for pooled ITL.

    With token_times_s: every gap between consecutive output-token times (counts all 1).
    Fallback without token_times_s: its N − 1 gaps are all taken equal to its TPOT, one value with
    count N − 1 (pooled mean stays exact; pooled percentiles become approximate). None when N < 2.
    """
    if not is_completed(r):
        return None
    if r.token_times_s is not None and len(r.token_times_s) >= 2:
        gaps = np.diff(np.asarray(r.token_times_s, dtype=np.float64))
        return gaps, np.ones(len(gaps), dtype=np.int64)
    tpot = tpot_s(r)
    if tpot is None:
        return None
    return np.array([tpot]), np.array([r.output_tokens - 1], dtype=np.int64)


# Scalar per-request metrics by output name stem (`ttft` → `ttft_ms`).
PER_REQUEST_METRICS: dict[str, Callable[[RequestRecord], float | None]] = {
    "ttft": ttft_s,
    "tpot": tpot_s,
    "e2e": e2e_s,
    "queue": queue_s,
    "e2e_per_token": e2e_per_token_s,
}
