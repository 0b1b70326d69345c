"""Exact summaries of RequestRecords: distributions (mean, p50/p90/p95/p99) and throughput.

Percentiles are numpy's "linear" method (rank p/100·(n−1), interpolated), as BLIS and inference-perf.
Empty convention: a distribution with no samples has every statistic None (JSON null), never NaN;
throughputs over a zero duration are 0.0.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from servesim.metrics.definitions import (
    PER_REQUEST_METRICS,
    is_completed,
    itl_gaps_s,
)

if TYPE_CHECKING:
    from servesim.engine.request import RequestRecord

__all__ = [
    "PERCENTILES",
    "SUMMARY_KEYS",
    "Distribution",
    "metric_distribution",
    "per_request",
    "summarize",
    "summarize_by_stage",
    "weighted_percentiles",
]

PERCENTILES = (50, 90, 95, 99)
STAT_KEYS = ("mean", "p50", "p90", "p95", "p99")
SUMMARY_KEYS = (
    "ttft_ms",
    "itl_ms",
    "tpot_ms",
    "e2e_ms",
    "queue_ms",
    "completed",
    "rejected",
    "duration_s",
    "requests_per_s",
    "output_tokens_per_s",
    "total_tokens_per_s",
    "preemptions",
)


def weighted_percentiles(values: np.ndarray, counts: np.ndarray, qs: Sequence[float]) -> list[float]:
    """numpy "linear" percentiles of `values` each repeated `counts` times, without materialising them."""
    order = np.argsort(values, kind="stable")
    v, c = values[order], np.cumsum(counts[order])
    total = int(c[-1])
    out = []
    for q in qs:
        rank = q / 100.0 * (total - 1)
        lo = int(np.floor(rank))
        hi = min(lo + 1, total - 1)
        a = v[np.searchsorted(c, lo, side="right")]
        b = v[np.searchsorted(c, hi, side="right")]
        out.append(float(a + (rank - lo) * (b - a)))
    return out


@dataclass(frozen=True, slots=True)
class Distribution:
    """count, mean and p50/p90/p95/p99 of a sample (unit of the input); statistics None when count is 0."""

    count: int
    mean: float | None
    p50: float | None
    p90: float | None
    p95: float | None
    p99: float | None

    @classmethod
    def of(cls, values: Iterable[float] | np.ndarray, counts: np.ndarray | None = None) -> Distribution:
        """Summary of values (optionally each repeated counts[i] times); empty gives count 0 and Nones."""
        v = np.asarray(values if isinstance(values, np.ndarray) else list(values), dtype=np.float64)
        if counts is None:
            if v.size == 0:
                return cls(0, None, None, None, None, None)
            return cls(int(v.size), float(np.mean(v)), *(float(x) for x in np.percentile(v, PERCENTILES)))
        c = np.asarray(counts, dtype=np.int64)
        keep = c > 0
        v, c = v[keep], c[keep]
        n = int(c.sum())
        if n == 0:
            return cls(0, None, None, None, None, None)
        # np.sum (pairwise, single-threaded), not np.dot: BLAS splits a long dot product over its threads, so
        # the last bit followed the thread count (Ray workers run with 1 thread) and answers differed by executor.
        return cls(n, float(np.sum(v * c) / n), *weighted_percentiles(v, c, PERCENTILES))

    def as_dict(self, scale: float = 1.0) -> dict[str, float | None]:
        """{mean, p50, p90, p95, p99}, each multiplied by scale (1000 turns s into ms); None stays None."""
        return {k: (None if (x := getattr(self, k)) is None else x * scale) for k in STAT_KEYS}


def metric_distribution(records: Iterable[RequestRecord], name: str) -> Distribution:
    """Distribution (s) of a per-request metric by name: ttft, tpot, e2e, queue, e2e_per_token, or itl (pooled)."""
    if name == "itl":
        parts = [g for r in records if (g := itl_gaps_s(r)) is not None]
        if not parts:
            return Distribution.of([])
        return Distribution.of(np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]))
    fn = PER_REQUEST_METRICS[name]
    return Distribution.of([x for r in records if (x := fn(r)) is not None])


def _span_s(records: Sequence[RequestRecord]) -> float:
    """Default duration (s): last finish_s − first arrival_s over all records; 0.0 when undefined."""
    finishes = [r.finish_s for r in records if r.finish_s is not None]
    if not records or not finishes:
        return 0.0
    return max(0.0, max(finishes) - min(r.arrival_s for r in records))


def _rate(amount: float, duration_s: float) -> float:
    """amount per second, 0.0 over a zero duration."""
    return amount / duration_s if duration_s > 0 else 0.0


def summarize(records: Iterable[RequestRecord], *, duration_s: float | None = None) -> dict[str, Any]:
    """The run summary: latency distributions in ms, counts, throughputs per second over duration_s.

    duration_s defaults to last finish − first arrival. Throughputs count completed requests only;
    total tokens = input + output tokens of completed requests. preemptions sums every record.
    """
    recs = list(records)
    done = [r for r in recs if is_completed(r)]
    dur = _span_s(recs) if duration_s is None else float(duration_s)
    out_tokens = sum(r.output_tokens for r in done)
    in_tokens = sum(r.input_tokens for r in done)
    return {
        "ttft_ms": metric_distribution(done, "ttft").as_dict(1e3),
        "itl_ms": metric_distribution(done, "itl").as_dict(1e3),
        "tpot_ms": metric_distribution(done, "tpot").as_dict(1e3),
        "e2e_ms": metric_distribution(done, "e2e").as_dict(1e3),
        "queue_ms": metric_distribution(done, "queue").as_dict(1e3),
        "completed": len(done),
        "rejected": sum(1 for r in recs if r.rejected),
        "duration_s": dur,
        "requests_per_s": _rate(len(done), dur),
        "output_tokens_per_s": _rate(out_tokens, dur),
        "total_tokens_per_s": _rate(in_tokens + out_tokens, dur),
        "preemptions": sum(r.preemptions for r in recs),
    }


def summarize_by_stage(
    records: Iterable[RequestRecord], *, durations_s: Mapping[int, float] | None = None
) -> dict[int, dict[str, Any]]:
    """summarize() per load stage (record.stage), keyed by stage index in increasing order.

    A stage's duration is durations_s[stage] when given, else its own last finish − first arrival.
    """
    groups: dict[int, list[RequestRecord]] = defaultdict(list)
    for r in records:
        groups[r.stage].append(r)
    given = durations_s or {}
    return {s: summarize(groups[s], duration_s=given.get(s)) for s in sorted(groups)}


def _ms(x: float | None) -> float | None:
    """Seconds to ms, None kept."""
    return None if x is None else x * 1e3


def per_request(record: RequestRecord) -> dict[str, Any]:
    """One record as a flat dict (times in ms, None where undefined) for per-request output."""
    metrics = {f"{name}_ms": _ms(fn(record)) for name, fn in PER_REQUEST_METRICS.items()}
    return {
        "id": record.id,
        "arrival_s": record.arrival_s,
        "input_tokens": record.input_tokens,
        "output_tokens": record.output_tokens,
        "cached_tokens": record.cached_tokens,
        "ttft_ms": metrics["ttft_ms"],
        "tpot_ms": metrics["tpot_ms"],
        "e2e_ms": metrics["e2e_ms"],
        "queue_ms": metrics["queue_ms"],
        "e2e_per_token_ms": metrics["e2e_per_token_ms"],
        "preemptions": record.preemptions,
        "stage": record.stage,
        "rejected": record.rejected,
        "reject_reason": record.reject_reason or None,
    }
