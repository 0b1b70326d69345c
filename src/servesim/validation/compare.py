"""Predicted vs measured: absolute and signed percentage errors, MAPE, and saturation flags."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass

import numpy as np

from servesim.metrics.saturation import TREND_GROUPS, quarter_rule, trend_rule

# Latency metrics compared per run: (metric family, statistic). Percentiles use numpy "linear".
LATENCY_FAMILIES = ("ttft", "itl", "e2e")
STATISTICS = ("mean", "p50", "p90", "p99")
PERCENTILES = {"p50": 50.0, "p90": 90.0, "p99": 99.0}


def ape(predicted: float, actual: float) -> float:
    """Absolute percentage error |pred − actual| / actual × 100."""
    return abs(predicted - actual) / abs(actual) * 100.0


def signed_error(predicted: float, actual: float) -> float:
    """Signed percentage error (pred − actual) / actual × 100 (positive = over-prediction)."""
    return (predicted - actual) / abs(actual) * 100.0


def stat(values: Sequence[float] | np.ndarray, which: str) -> float | None:
    """Mean or a linear-interpolated percentile of values (None when empty)."""
    arr = np.asarray([v for v in values if v is not None and not math.isnan(v)], dtype=float)
    if arr.size == 0:
        return None
    if which == "mean":
        return float(arr.mean())
    return float(np.percentile(arr, PERCENTILES[which]))


@dataclass(frozen=True, slots=True)
class Row:
    """One comparison: an experiment's stage (or 'all'), a metric, the two values, the errors (%), the interval."""

    experiment: str
    stage: str
    metric: str
    predicted: float
    actual: float
    ape: float
    signed_error: float
    saturated: bool  # measured saturated: the run is reported apart, out of the headline MAPE
    interval: tuple[float, float] | None = None  # prediction interval of `predicted` (calibration's level), when known

    def as_dict(self) -> dict[str, object]:
        """Plain dict for JSON output."""
        return asdict(self)


def make_row(experiment: str, stage: str, metric: str, predicted: float | None, actual: float | None, saturated: bool) -> Row | None:
    """A Row, or None when either side is missing or the actual value is zero."""
    if predicted is None or actual is None or actual == 0 or math.isnan(predicted) or math.isnan(actual):
        return None
    return Row(experiment, stage, metric, float(predicted), float(actual), ape(predicted, actual), signed_error(predicted, actual), saturated)


def latency_rows(
    experiment: str,
    stage: str,
    predicted: dict[str, Sequence[float]],
    actual: dict[str, Sequence[float]],
    saturated: bool,
) -> list[Row]:
    """Rows for ttft/itl/e2e × mean/p50/p90/p99 from per-request ms values of both sides."""
    rows = []
    for fam in LATENCY_FAMILIES:
        for which in STATISTICS:
            row = make_row(experiment, stage, f"{fam}_{which}", stat(predicted.get(fam, ()), which), stat(actual.get(fam, ()), which), saturated)
            if row is not None:
                rows.append(row)
    return rows


def mape(rows: Iterable[Row], *, stage: str = "all", include_saturated: bool = False) -> dict[str, float]:
    """Mean APE (%) per metric over the given rows of one stage, saturated runs excluded by default."""
    groups: dict[str, list[float]] = {}
    for r in rows:
        if r.stage == stage and (include_saturated or not r.saturated):
            groups.setdefault(r.metric, []).append(r.ape)
    return {metric: float(np.mean(v)) for metric, v in sorted(groups.items())}


def queue_growing(arrival_s: Sequence[float], ttft_ms: Sequence[float | None], *, failed: int = 0, total: int | None = None) -> bool:
    """True when a run's queue keeps growing: TTFT climbs over the run, by arrival order.

    Criterion (metrics/saturation.py, stated once, used for both sides and by `run`): the quarter-means
    rule (last-quarter mean TTFT > 1 s and > 3x the first quarter's) or the trend rule (Mann-Kendall
    increasing at p < 0.001 over 16 equal-count groups, last group > 1 s and > 2x the first), or more than
    5 % of requests failed (client timeouts). A run that only spikes and recovers is not flagged.
    """
    pairs = sorted((a, t) for a, t in zip(arrival_s, ttft_ms) if t is not None)
    n = len(pairs)
    total = total if total is not None else n + failed
    if total and failed / total > 0.05:
        return True
    if n < 8:
        return False
    q = max(1, n // 4)
    early = float(np.mean([t for _, t in pairs[:q]]))
    late = float(np.mean([t for _, t in pairs[-q:]]))
    edges = np.linspace(0, n, TREND_GROUPS + 1).round().astype(int)
    groups = [float(np.mean([t for _, t in pairs[a:b]])) for a, b in zip(edges[:-1], edges[1:]) if b > a]
    return quarter_rule(early, late) or trend_rule(groups)[0]


# Bound for aggregate-only runs (no per-request data): TTFT >= 0, so the mean of the last quarter of n
# requests is at most n/floor(n/4) <= 4.1 times the whole-run mean (n >= 41); queue_growing's quarter-means
# arm is therefore impossible when 4.1 x mean TTFT <= 1 s. The trend arm (it needs the TTFT of each arrival
# group) and the failed-requests arm (it needs counts) cannot be checked from aggregates: not ruled out, not used.
QUARTER_BOUND = 4.1


def aggregate_saturation_possible(ttft_mean_ms: float | None) -> bool:
    """True unless the whole-run mean TTFT (ms) alone rules out queue_growing's criterion (see QUARTER_BOUND)."""
    return ttft_mean_ms is None or QUARTER_BOUND * ttft_mean_ms > 1000.0
