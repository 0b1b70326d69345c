"""Capacity: the highest request rate one engine instance serves within latency SLOs, by bisection on rate.

Search (per configuration): evaluate rate_lo; if it misses an SLO the capacity is below rate_lo (None).
Then double the rate until an SLO is missed or rate_hi is reached, and bisect between the last rate that
met every SLO and the first that missed one until they are within rel_tol of each other. The answer is
always a rate that was simulated and met every SLO; it assumes latency grows with rate (monotone), which
holds for the engine but not exactly for one random arrival sample, so the answer is the highest passing
rate *found*, not a proof that no higher rate passes.

Probes: by default each rate is a steady-state probe (sweep/steady.py: warm-up and cool-down dropped, run
until the SLO statistic's 95 % CI is narrow or clear of the limit, or the queue grows, doubling the
requests up to a cap); each evaluation carries the probe's verdict and reason. With a fixed probe length
(the CLI's --num-requests/--duration) each rate is one whole run, warm-up included, as before.
With prediction intervals in the calibration, two more bisections (reusing the probes) find the highest
rate whose SLO statistics meet the SLOs at the intervals' upper end (pessimistic) and lower end (optimistic).

Fleet sizing assumes independent instances behind an ideal load balancer: each gets rate / n requests
per second, so n = ceil(target_rate / max_rate). One simulation = one engine instance (TP ranks of one
instance are inside the step-time model); routing, queueing imbalance and prefix affinity across
instances are not modelled.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from servesim.errors import ConfigError

__all__ = ["CapacityResult", "Slo", "check_search", "find_capacity", "instances_for", "parse_slo", "run_capacity"]

# Highest request rate a search may probe or size a fleet for (req/s): one engine serves ~1-10^3 req/s, so 10^6
# already means a thousand instances; 1e300 would only double its way to a meaningless answer.
MAX_RATE = 1e6
METRICS = ("ttft", "itl", "tpot", "e2e", "queue")
STATS = ("mean", "p50", "p90", "p95", "p99")
_SLO_RE = re.compile(r"^(?P<metric>[a-z0-9]+)_(?P<stat>mean|p50|p90|p95|p99)_ms\s*(?:=|<=)\s*(?P<value>[-+0-9.eE]+)$")


@dataclass(frozen=True)
class Slo:
    """summary[metric_ms][stat] <= limit_ms (e.g. ttft p99 <= 500 ms)."""

    metric: str
    stat: str
    limit_ms: float

    @property
    def name(self) -> str:
        return f"{self.metric}_{self.stat}_ms"

    def value(self, summary: dict[str, Any]) -> float | None:
        return (summary.get(f"{self.metric}_ms") or {}).get(self.stat)

    def met(self, summary: dict[str, Any]) -> bool:
        v = self.value(summary)
        return v is not None and v <= self.limit_ms


def parse_slo(text: str) -> Slo:
    """'ttft_p99_ms=500' -> Slo(ttft, p99, 500.0); metrics ttft|itl|tpot|e2e|queue, stats mean|p50|p90|p95|p99."""
    m = _SLO_RE.match(text.strip())
    if not m or m["metric"] not in METRICS:
        raise ConfigError(
            f"--slo {text}: expected METRIC_STAT_ms=VALUE with METRIC in {'|'.join(METRICS)} and STAT in {'|'.join(STATS)} "
            "(e.g. ttft_p99_ms=500)"
        )
    value = float(m["value"])
    if not (math.isfinite(value) and value > 0):
        raise ConfigError(f"--slo {text}: the limit must be a finite number of ms > 0")
    return Slo(m["metric"], m["stat"], value)


@dataclass
class CapacityResult:
    """The search outcome for one configuration (rates in requests per second)."""

    label: str
    params: dict[str, Any]
    max_rate: float | None  # highest simulated rate meeting every SLO (None: not even rate_lo)
    bracketed: bool  # False when rate_hi itself met the SLOs (capacity may be higher)
    evaluations: list[dict[str, Any]] = field(default_factory=list)  # {rate, ok, <slo name>: value} in search order
    instances: int | None = None  # for target_rate, when given
    error: str | None = None
    rate_range: dict[str, Any] | None = None  # max rate at the pessimistic / optimistic ends of the prediction intervals
    instances_pessimistic: int | None = None  # instances for target_rate at the pessimistic max rate
    gpus: int | None = None  # instances x TP
    gpus_pessimistic: int | None = None  # instances_pessimistic x TP

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def instances_for(target_rate: float, max_rate: float | None) -> int | None:
    """Fewest independent instances for target_rate at max_rate each (ideal balancing): ceil(target / max)."""
    if max_rate is None or max_rate <= 0:
        return None
    return max(1, math.ceil(target_rate / max_rate - 1e-12))


def check_search(slos: Sequence[Slo], rate_lo: float, rate_hi: float, rel_tol: float) -> None:
    """Refuse a search that cannot mean anything (no SLO, an empty or non-finite rate range, a tolerance outside (0, 1))."""
    if not slos:
        raise ConfigError("capacity: give at least one --slo")
    for flag, v in (("--rate-min", rate_lo), ("--rate-max", rate_hi), ("--tolerance", rel_tol)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise ConfigError(f"capacity: {flag} {v!r}: must be a finite number")
    if not 0 < rate_lo < rate_hi:
        raise ConfigError(f"capacity: need 0 < --rate-min ({rate_lo}) < --rate-max ({rate_hi})")
    if rate_hi > MAX_RATE:
        raise ConfigError(f"capacity: --rate-max {rate_hi}: must be <= {MAX_RATE:g} req/s")
    if not 0 < rel_tol < 1:
        raise ConfigError(f"capacity: --tolerance {rel_tol}: must be in (0, 1)")


def find_capacity(
    evaluate: Callable[[float], dict[str, Any]],
    slos: Sequence[Slo],
    *,
    rate_lo: float = 0.5,
    rate_hi: float = 256.0,
    rel_tol: float = 0.02,
    max_evals: int = 40,
    label: str = "",
    params: dict[str, Any] | None = None,
    passes: Callable[[dict[str, Any]], bool] | None = None,
) -> CapacityResult:
    """Bisection on rate (see the module docstring); evaluate(rate) returns a run summary (a steady probe's has "_ok").

    passes(summary) overrides the pass test (the pessimistic/optimistic searches of the interval range)."""
    check_search(slos, rate_lo, rate_hi, rel_tol)
    res = CapacityResult(label, dict(params or {}), None, True)
    cache: dict[float, bool] = {}

    def ok(rate: float) -> bool:
        if rate not in cache:
            summary = evaluate(rate)
            if passes is not None:
                passed = passes(summary)
            else:
                passed = summary["_ok"] if "_ok" in summary else all(s.met(summary) for s in slos)
            entry = {"rate": rate, "ok": passed, **{s.name: s.value(summary) for s in slos}}
            if "_probe" in summary:
                entry["probe"] = summary["_probe"]
            res.evaluations.append(entry)
            cache[rate] = passed
        return cache[rate]

    if not ok(rate_lo):
        return res
    good, bad = rate_lo, None
    r = rate_lo
    while bad is None:
        r = min(2 * r, rate_hi)
        if ok(r):
            good = r
            if r >= rate_hi:
                res.max_rate, res.bracketed = good, False
                return res
        else:
            bad = r
    while bad - good > rel_tol * good and len(res.evaluations) < max_evals:
        mid = 0.5 * (good + bad)
        if ok(mid):
            good = mid
        else:
            bad = mid
    res.max_rate = good
    return res


def _with_rate(kwargs: dict[str, Any], rate: float) -> dict[str, Any]:
    from servesim.sweep.grid import point_kwargs

    return point_kwargs(kwargs, {"rate": rate})


def _steady_evaluate(kwargs: dict[str, Any], slos: list[Slo], seed: int) -> Callable[[float], dict[str, Any]]:
    """evaluate(rate) for steady-state probes (sweep/steady.py): a summary-like dict of the SLO estimates, "_ok", "_probe"."""
    from types import SimpleNamespace

    from servesim.simulation import simulate
    from servesim.sweep.steady import probe, record_series

    def evaluate(rate: float) -> dict[str, Any]:
        last: dict[str, Any] = {}

        def run(n: int) -> tuple[list[dict[str, Any]], Any]:
            from servesim.sweep.grid import point_kwargs

            res = simulate(**point_kwargs(kwargs, {"rate": rate, "num_requests": n}), keep_requests=True, record_token_times=False)
            last["summary"] = res.summary
            done = [r for r in res.requests if r["e2e_ms"] is not None and r["ttft_ms"] is not None]
            done.sort(key=lambda r: (r["arrival_s"], r["id"]))
            return done, SimpleNamespace(**res.summary["saturation"])

        verdict = probe(run, slos, record_series, seed=seed)
        out: dict[str, Any] = {f"{s.metric}_ms": {} for s in slos}
        for s, c in zip(slos, verdict.checks):
            out[f"{s.metric}_ms"][s.stat] = c.estimate
        if not verdict.checks:
            for s in slos:
                out[f"{s.metric}_ms"][s.stat] = None
        out["_ok"] = verdict.ok
        out["_probe"] = verdict.as_dict()
        out["prediction_intervals"] = last["summary"].get("prediction_intervals")
        return out

    return evaluate


def _interval_passes(slos: Sequence[Slo], side: int) -> Callable[[dict[str, Any]], bool]:
    """Pass test at one end of the prediction intervals: estimate·e^(side·q) <= limit for every SLO (side +1 pessimistic)."""

    def passes(summary: dict[str, Any]) -> bool:
        scores = (summary.get("prediction_intervals") or {}).get("scores") or {}
        for s in slos:
            v = s.value(summary)
            q = scores.get(f"{s.metric}_{s.stat}")
            if v is None or q is None or not summary.get("_ok", True) and side > 0:
                return False
            if v * math.exp(side * q) > s.limit_ms:
                return False
        return True

    return passes


def interval_range_available(summary: dict[str, Any], slos: Sequence[Slo]) -> bool:
    """True when every SLO statistic has a prediction-interval score in this probe's summary."""
    scores = (summary.get("prediction_intervals") or {}).get("scores") or {}
    return all(f"{s.metric}_{s.stat}" in scores for s in slos)


def capacity_task(
    label: str, params: dict[str, Any], kwargs: dict[str, Any], slos: list[Slo], rate_lo: float, rate_hi: float,
    rel_tol: float, summary: str, target_rate: float | None, steady: bool = False,
) -> dict[str, Any]:
    """One configuration's search, in a worker; simulate() at each probed rate. Returns CapacityResult.to_dict().

    steady: steady-state probes (sweep/steady.py) instead of one fixed-length run per rate."""
    from servesim.errors import ServesimError
    from servesim.simulation import simulate

    cache: dict[float, dict[str, Any]] = {}
    if steady:
        raw = _steady_evaluate(kwargs, slos, int(kwargs.get("seed") or 0))
    else:
        def raw(rate: float) -> dict[str, Any]:
            return simulate(**_with_rate(kwargs, rate), keep_requests=summary == "exact").summary

    def evaluate(rate: float) -> dict[str, Any]:
        if rate not in cache:
            cache[rate] = raw(rate)
        return cache[rate]

    try:
        res = find_capacity(evaluate, slos, rate_lo=rate_lo, rate_hi=rate_hi, rel_tol=rel_tol, label=label, params=params)
        if res.max_rate is not None and interval_range_available(cache[res.max_rate], slos):
            ends = {}
            for side, name in ((1, "pessimistic"), (-1, "optimistic")):
                r = find_capacity(evaluate, slos, rate_lo=rate_lo, rate_hi=rate_hi, rel_tol=rel_tol, passes=_interval_passes(slos, side))
                ends[name] = r.max_rate
            level = (cache[res.max_rate].get("prediction_intervals") or {}).get("level")
            res.rate_range = {"level": level, **ends,
                              "rule": "highest rate whose SLO statistics at the interval's upper (pessimistic) / lower (optimistic) end meet the SLOs"}
    except ServesimError as exc:
        res = CapacityResult(label, params, None, False, error=str(exc))
    if target_rate is not None:
        res.instances = instances_for(target_rate, res.max_rate)
        if res.rate_range is not None:
            res.instances_pessimistic = instances_for(target_rate, res.rate_range["pessimistic"])
        tp = int(kwargs.get("tp") or 1)
        res.gpus = None if res.instances is None else res.instances * tp
        res.gpus_pessimistic = None if res.instances_pessimistic is None else res.instances_pessimistic * tp
    return res.to_dict()


def run_capacity(
    configs: Sequence[tuple[str, dict[str, Any], dict[str, Any]]],
    slos: Sequence[Slo],
    *,
    rate_lo: float = 0.5,
    rate_hi: float = 256.0,
    rel_tol: float = 0.02,
    target_rate: float | None = None,
    summary: str = "exact",
    workers: int = 1,
    use_ray: bool = False,
    ray_address: str | None = None,
    on_result: Callable[[dict[str, Any]], None] | None = None,
    steady: bool = False,
) -> list[dict[str, Any]]:
    """Capacity of each (label, params, simulate kwargs) configuration; results in the given order.

    The workload in each kwargs must be a mapping with an open-loop arrival (its rate is replaced).
    """
    from servesim.sweep.runner import run_tasks

    check_search(slos, rate_lo, rate_hi, rel_tol)  # before any configuration runs: an error, not a result row
    for label, _, kw in configs:
        arrival = (kw.get("workload") or {}).get("arrival") if isinstance(kw.get("workload"), dict) else None
        if not isinstance(arrival, dict) or arrival.get("process") in (None, "synchronous", "concurrency") or arrival.get("stages"):
            raise ConfigError(f"capacity {label}: needs an open-loop workload with one rate (poisson, constant or gamma)")
    if target_rate is not None and not (math.isfinite(target_rate) and 0 < target_rate <= MAX_RATE):
        raise ConfigError(f"--target-rate {target_rate}: must be a finite number in (0, {MAX_RATE:g}] req/s")
    from servesim.simulation import check_run

    for label, _, kw in configs:  # a bad model, GPU or TP is an error before anything runs, not a result row
        check_run(**kw)
    tasks = [(label, params, kw, list(slos), rate_lo, rate_hi, rel_tol, summary, target_rate, steady) for label, params, kw in configs]
    out: list[dict[str, Any] | None] = [None] * len(tasks)
    from contextlib import closing

    with closing(run_tasks(capacity_task, tasks, workers=workers, use_ray=use_ray, ray_address=ray_address)) as results:
        for i, res in results:  # closing: an interrupt ends the workers at once (servesim.workers)
            out[i] = res
            if on_result is not None:
                on_result(res)
    return out  # type: ignore[return-value]
