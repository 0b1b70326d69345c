"""Saturation: does a run's queue keep growing? One criterion for simulated and measured runs.

Two tests on TTFT in arrival order (docs/VALIDATION.md "Saturation"):
- quarter-means rule: the mean TTFT of the last quarter of requests (by arrival) exceeds both 1 s and
  3x that of the first quarter;
- trend rule: a Mann-Kendall test on the mean TTFT of 16 consecutive equal-count groups (by arrival)
  finds an increasing trend at one-sided p < 0.001, and the last group's mean exceeds both 1 s and 2x
  the first group's (a slower, steady climb the quarter rule misses).
A run that only spikes and recovers is flagged by neither. Fixed memory: requests are folded into
ArrivalBins (at most NUM_BINS time bins whose width doubles as the run grows), so quarters and groups
are taken at bin resolution (a boundary bin is split in proportion, at its mean), 1/128 of the span or finer.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

__all__ = ["ArrivalBins", "SaturationVerdict", "mann_kendall_z", "quarter_rule", "saturation_of_pairs", "trend_rule"]

NUM_BINS = 256
FIRST_WIDTH_S = 1e-3
TREND_GROUPS = 16
LATE_FLOOR_MS = 1000.0  # a queue that holds less than 1 s of work is not called saturated (VALIDATION.md)
QUARTER_RATIO = 3.0
TREND_RATIO = 2.0
TREND_Z = 3.090  # one-sided p = 0.001 of the standard normal


def quarter_rule(early_ms: float, late_ms: float) -> bool:
    """Quarter-means rule: late-quarter mean TTFT > 1 s and > 3x the first quarter's (ms in, bool out)."""
    return late_ms > LATE_FLOOR_MS and late_ms > QUARTER_RATIO * early_ms


def mann_kendall_z(values: Sequence[float]) -> float:
    """Mann-Kendall trend statistic z (continuity-corrected, no ties correction); > 0 means increasing."""
    x = np.asarray(values, dtype=float)
    n = x.size
    if n < 3:
        return 0.0
    s = float(np.sum(np.sign(x[None, :] - x[:, None])[np.triu_indices(n, 1)]))
    var = n * (n - 1) * (2 * n + 5) / 18.0
    if s == 0:
        return 0.0
    return (s - math.copysign(1.0, s)) / math.sqrt(var)


def trend_rule(group_means_ms: Sequence[float]) -> tuple[bool, float]:
    """Trend rule on group means (ms, arrival order): (saturated, Mann-Kendall z)."""
    z = mann_kendall_z(group_means_ms)
    if len(group_means_ms) < 3:
        return False, z
    first, last = group_means_ms[0], group_means_ms[-1]
    return bool(z >= TREND_Z and last > LATE_FLOOR_MS and last > TREND_RATIO * first), z


@dataclass(frozen=True)
class SaturationVerdict:
    """Whether the queue keeps growing, which rule said so, and what was served (rates in req/s)."""

    saturated: bool
    rule: str | None  # "quarter-means", "trend" or None
    early_ttft_ms: float | None
    late_ttft_ms: float | None
    trend_z: float
    offered_rate_rps: float | None
    sustainable_rate_rps: float | None  # completion rate in the middle half of the run (saturated runs only)

    def as_dict(self) -> dict[str, Any]:
        """Plain dict for JSON output."""
        return asdict(self)


def _segments(counts: np.ndarray, sums: np.ndarray, edges: Sequence[float]) -> list[float | None]:
    """Mean of each request segment [edges[i], edges[i+1]) (in request ranks), boundary bins split in proportion."""
    cum = np.concatenate([[0.0], np.cumsum(counts)])
    csum = np.concatenate([[0.0], np.cumsum(sums)])

    def upto(k: float) -> float:  # sum of the first k requests (fractional k)
        i = int(np.searchsorted(cum, k, side="right")) - 1
        i = min(max(i, 0), len(counts) - 1)
        part = (k - cum[i]) * (sums[i] / counts[i]) if counts[i] > 0 else 0.0
        return float(csum[i] + part)

    out: list[float | None] = []
    for a, b in zip(edges[:-1], edges[1:]):
        out.append((upto(b) - upto(a)) / (b - a) if b > a else None)
    return out


class ArrivalBins:
    """Fixed-memory record of a run by time: TTFT sums by arrival, arrivals, and completions by finish time."""

    def __init__(self) -> None:
        self.width_s = FIRST_WIDTH_S
        self.n = np.zeros(NUM_BINS)  # completed requests with a TTFT, by arrival bin
        self.ttft_sum_ms = np.zeros(NUM_BINS)
        self.arrived = np.zeros(NUM_BINS)  # every record, by arrival bin
        self.finished = np.zeros(NUM_BINS)  # completions, by finish bin
        self.first_arrival_s = math.inf
        self.last_arrival_s = -math.inf
        self.count = 0
        self.max_context_tokens: int | None = None  # largest input + output tokens of one request

    def _fit(self, t: float) -> int:
        """Bin index of time t, doubling the bin width (merging pairs) until it fits."""
        i = int(t / self.width_s)
        while i >= NUM_BINS:
            for a in (self.n, self.ttft_sum_ms, self.arrived, self.finished):
                a[: NUM_BINS // 2] = a[0::2] + a[1::2]
                a[NUM_BINS // 2:] = 0.0
            self.width_s *= 2
            i = int(t / self.width_s)
        return max(i, 0)

    def add(self, arrival_s: float, ttft_s: float | None, finish_s: float | None) -> None:
        """Fold one request: its arrival (s), TTFT (s, None if it has none) and finish time (s, None if not completed)."""
        self.count += 1
        self.first_arrival_s = min(self.first_arrival_s, arrival_s)
        self.last_arrival_s = max(self.last_arrival_s, arrival_s)
        if finish_s is not None:
            self._fit(finish_s)
        i = self._fit(arrival_s)
        self.arrived[i] += 1
        if ttft_s is not None:
            self.n[i] += 1
            self.ttft_sum_ms[i] += ttft_s * 1e3
        if finish_s is not None:
            self.finished[self._fit(finish_s)] += 1

    def add_record(self, rec: Any) -> None:
        """Fold a RequestRecord (engine/request.py)."""
        ctx = rec.input_tokens + rec.output_tokens
        self.max_context_tokens = ctx if self.max_context_tokens is None else max(self.max_context_tokens, ctx)
        done = not rec.rejected and rec.finish_s is not None
        ttft = rec.first_token_s - rec.arrival_s if done and rec.first_token_s is not None else None
        self.add(rec.arrival_s, ttft, rec.finish_s if done else None)

    def verdict(self, *, closed_loop: bool = False) -> SaturationVerdict:
        """The saturation verdict of what was folded in (see the module docstring); a closed loop never saturates."""
        total = float(self.n.sum())
        offered = None
        if self.count > 1 and self.last_arrival_s > self.first_arrival_s:
            offered = (self.count - 1) / (self.last_arrival_s - self.first_arrival_s)
        if total < 8:
            return SaturationVerdict(False, None, None, None, 0.0, offered, None)
        q = max(1, int(total) // 4)
        early, late = _segments(self.n, self.ttft_sum_ms, [0.0, q, total - q, total])[0::2]
        groups = _segments(self.n, self.ttft_sum_ms, list(np.linspace(0.0, total, TREND_GROUPS + 1)))
        by_trend, z = trend_rule([g for g in groups if g is not None])
        by_quarter = quarter_rule(early, late)  # type: ignore[arg-type]
        rule = "quarter-means" if by_quarter else ("trend" if by_trend else None)
        if closed_loop:  # its queue is bounded by the number of clients: latencies are steady, never growing
            rule = None
        sustainable = self._backlogged_rate() if rule else None
        return SaturationVerdict(rule is not None, rule, early, late, z, offered, sustainable)

    def _backlogged_rate(self) -> float | None:
        """Completions per s over the middle half of [first arrival, last finish]: the engine is backlogged there."""
        nz = np.nonzero(self.finished)[0]
        if nz.size == 0:
            return None
        # Saturated runs fill the batch at the start and empty it at the end; the middle half is the steady part.
        t0, t_end = self.first_arrival_s, (nz[-1] + 1) * self.width_s
        j1 = int((t0 + 0.25 * (t_end - t0)) / self.width_s)
        j2 = int((t0 + 0.75 * (t_end - t0)) / self.width_s)
        if j2 <= j1:
            return None
        return float(self.finished[j1:j2].sum() / ((j2 - j1) * self.width_s))


def saturation_of_pairs(arrival_s: Sequence[float], ttft_ms: Sequence[float | None]) -> SaturationVerdict:
    """The verdict for (arrival s, TTFT ms) pairs, as ArrivalBins computes it (finish times unknown: no rate)."""
    bins = ArrivalBins()
    for a, t in zip(arrival_s, ttft_ms):
        bins.add(a, None if t is None else t / 1e3, None)
    return bins.verdict()
