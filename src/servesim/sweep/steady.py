"""Steady-state capacity probes: drop warm-up and cool-down, run until the SLO statistic is stable or the queue grows.

One probe at one rate (requests in arrival order):
1. Saturation (metrics/saturation.py, the rule `run` and `validate` use): the queue grows, the SLO fails for certain.
2. Warm-up: MSER-5 (White 1997; batch means of 5 requests, the truncation d <= half that minimises the
   standard error of the remaining mean), taken per SLO metric, the largest cut wins. Cool-down: requests
   arriving after (last arrival - p99 E2E) see the engine drain once arrivals stop, and are dropped.
3. The kept requests are cut into BATCHES consecutive batches; a bootstrap over batches (RESAMPLES
   resamples, seeded) gives a 95 % confidence interval of each SLO statistic of the pooled requests.
4. Mann-Kendall tests: over the batch statistics of each SLO, and over the batch means of TTFT (queue
   growth). An increasing trend (z >= 3.09, p < 0.001) means not yet steady; a TTFT trend still there at
   the cap means the queue grows, and the probe fails. Verdict per SLO: CI entirely below the limit (pass, sure), entirely above (fail, sure), CI
   half-width <= REL_CI of the estimate (decided by the estimate: stable), else the probe is repeated with
   twice the requests, up to a cap; at the cap the estimate decides and the reason says so.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from servesim.metrics.saturation import TREND_Z, mann_kendall_z
from servesim.metrics.steady import MSER_BATCH, mser_cut  # noqa: F401 - one MSER for run and capacity

BATCHES = 20
RESAMPLES = 200
REL_CI = 0.05  # a CI half-width within 5 % of the estimate is "stable"
FIRST_REQUESTS = 1500
MAX_REQUESTS = 24000


@dataclass
class MetricSeries:
    """Per-request values of one metric in arrival order, with weights (ITL: N−1 gaps per request; else 1)."""

    values: np.ndarray
    weights: np.ndarray


def statistic(values: np.ndarray, weights: np.ndarray, stat: str) -> float:
    """Weighted mean or numpy-"linear" percentile (weights repeat values) of one sample."""
    from servesim.metrics.summary import weighted_percentiles

    if stat == "mean":
        return float(np.sum(values * weights) / weights.sum())  # not np.dot: its last bit follows the BLAS thread count
    if np.all(weights == 1):
        return float(np.percentile(values, float(stat[1:])))
    return weighted_percentiles(values, weights.astype(np.int64), [float(stat[1:])])[0]


def bootstrap_ci(values: np.ndarray, weights: np.ndarray, stat: str, rng: np.random.Generator,
                 batches: int = BATCHES, resamples: int = RESAMPLES) -> tuple[float, float, float, list[float]]:
    """(estimate, CI low, CI high, batch statistics): 95 % bootstrap over consecutive batches of the pooled statistic."""
    idx = np.array_split(np.arange(values.size), batches)
    est = statistic(values, weights, stat)
    per_batch = [statistic(values[i], weights[i], stat) for i in idx]
    boots = []
    for _ in range(resamples):
        pick = rng.integers(0, batches, batches)
        sel = np.concatenate([idx[j] for j in pick])
        boots.append(statistic(values[sel], weights[sel], stat))
    lo, hi = np.percentile(boots, [2.5, 97.5])
    return est, float(lo), float(hi), per_batch


@dataclass
class SloCheck:
    """One SLO at one probe: estimate, 95 % CI, trend z, and what was decided (pass/fail/undecided) and why."""

    name: str
    estimate: float | None
    ci: tuple[float, float] | None
    trend_z: float
    decision: str  # "pass" | "fail" | "undecided"
    reason: str


@dataclass
class ProbeVerdict:
    """A steady-state probe's outcome: ok, how sure (reason), requests simulated / used, per-SLO checks."""

    ok: bool
    reason: str
    requests: int
    used: int
    warmup_dropped: int
    cooldown_dropped: int
    checks: list[SloCheck] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """Plain dict for JSON output."""
        return asdict(self)


def check_slo(name: str, series: MetricSeries, stat: str, limit: float, rng: np.random.Generator) -> SloCheck:
    """Decide one SLO on the kept requests (see the module docstring)."""
    if series.values.size < BATCHES * 5:
        return SloCheck(name, None, None, 0.0, "undecided", "too few requests after warm-up")
    est, lo, hi, per_batch = bootstrap_ci(series.values, series.weights, stat, rng)
    z = mann_kendall_z(per_batch)
    if z >= TREND_Z:
        return SloCheck(name, est, (lo, hi), z, "undecided", "still rising (trend)")
    if hi <= limit:
        return SloCheck(name, est, (lo, hi), z, "pass", "95 % CI below the limit")
    if lo > limit:
        return SloCheck(name, est, (lo, hi), z, "fail", "95 % CI above the limit")
    if (hi - lo) / 2 <= REL_CI * abs(est):
        return SloCheck(name, est, (lo, hi), z, "pass" if est <= limit else "fail", "CI narrow (within 5 %), estimate decides")
    return SloCheck(name, est, (lo, hi), z, "undecided", "CI straddles the limit")


def judge(checks: Sequence[SloCheck]) -> tuple[bool | None, str]:
    """Combine SLO checks: any fail fails, all pass passes, else undecided (None)."""
    fails = [c for c in checks if c.decision == "fail"]
    if fails:
        return False, f"{fails[0].name}: {fails[0].reason}"
    if all(c.decision == "pass" for c in checks):
        return True, "; ".join(f"{c.name}: {c.reason}" for c in checks)
    return None, "; ".join(f"{c.name}: {c.reason}" for c in checks if c.decision == "undecided")


def probe(run: Callable[[int], tuple[list[Any], Any]], slos: Sequence[Any], series_of: Callable[[list[Any], str], MetricSeries],
          *, seed: int = 0, first: int = FIRST_REQUESTS, cap: int = MAX_REQUESTS) -> ProbeVerdict:
    """Steady-state probe: run(n) -> (kept records in arrival order with e2e_ms, saturation verdict); doubles n until decided."""
    n = first
    while True:
        records, saturation = run(n)
        if saturation.saturated:
            return ProbeVerdict(False, f"saturated: queue grows ({saturation.rule} rule), fails every latency SLO", n, 0, 0, 0)
        e2e = np.array([r["e2e_ms"] for r in records])
        arrivals = np.array([r["arrival_s"] for r in records])
        cool = 0
        if e2e.size:
            # Cool-down: requests arriving within one p99 E2E of the last arrival see the engine drain.
            cutoff = arrivals.max() - float(np.percentile(e2e, 99)) / 1e3
            keep_n = int(np.searchsorted(arrivals, cutoff, side="right"))
            cool = len(records) - keep_n
            records = records[:keep_n]
        cut = max((mser_cut(series_of(records, s.metric).values) for s in slos), default=0)
        kept = records[cut:]
        rng = np.random.default_rng([seed, n])
        checks = []
        for s in slos:
            ser = series_of(kept, s.metric)
            checks.append(check_slo(s.name, ser, s.stat, s.limit_ms, rng))
        ok, reason = judge(checks)
        z_queue = queue_trend_z(series_of(kept, "ttft").values)
        if z_queue >= TREND_Z and ok is not False:
            # TTFT still climbing over the kept requests: the queue grows (slowly), the statistic is not steady.
            if n >= cap:
                return ProbeVerdict(False, f"queue still growing at the cap of {cap} requests (TTFT trend z={z_queue:.1f})",
                                    n, len(kept), cut, cool, checks)
            n = min(2 * n, cap)
            continue
        if ok is not None:
            return ProbeVerdict(ok, reason, n, len(kept), cut, cool, checks)
        if n >= cap:
            est_ok = all(c.estimate is not None and c.estimate <= s.limit_ms for c, s in zip(checks, slos))
            return ProbeVerdict(est_ok, f"cap of {cap} requests reached, estimate decides ({reason})", n, len(kept), cut, cool, checks)
        n = min(2 * n, cap)


def queue_trend_z(ttft_ms: np.ndarray, batches: int = BATCHES) -> float:
    """Mann-Kendall z of the mean TTFT of consecutive batches (arrival order); >= 3.09: the queue grows."""
    if ttft_ms.size < batches * 5:
        return 0.0
    return mann_kendall_z([float(b.mean()) for b in np.array_split(ttft_ms, batches)])


def record_series(records: list[dict[str, Any]], metric: str) -> MetricSeries:
    """Per-request series of ttft|e2e|queue|tpot (weight 1) or itl (TPOT weighted by N−1 gaps), ms, arrival order."""
    if metric == "itl":
        pairs = [(r["tpot_ms"], r["output_tokens"] - 1) for r in records if r.get("tpot_ms") is not None and r["output_tokens"] >= 2]
        if not pairs:
            return MetricSeries(np.zeros(0), np.zeros(0))
        v, w = zip(*pairs)
        return MetricSeries(np.asarray(v, dtype=float), np.asarray(w, dtype=float))
    v = np.asarray([r[f"{metric}_ms"] for r in records if r.get(f"{metric}_ms") is not None], dtype=float)
    return MetricSeries(v, np.ones(v.size))


def fmt_ci(ci: tuple[float, float] | None) -> str:
    """'[lo, hi]' with one decimal, or '–'."""
    return "–" if ci is None or any(math.isnan(x) for x in ci) else f"[{ci[0]:,.1f}, {ci[1]:,.1f}]"
