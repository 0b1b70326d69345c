"""Replay measured runs through the simulator and compare what it predicts with what was measured."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from servesim.engine.request import RequestRecord, RequestSpec
from servesim.simulation import DEFAULT_LATENCY_MODEL, DEFAULT_OVERHEAD, RunResult, simulate
from servesim.validation.compare import (
    Row,
    aggregate_saturation_possible,
    latency_rows,
    make_row,
    mape,
    queue_growing,
    stat,
)
from servesim.validation.measured import Experiment, MeasuredRequest, MeasuredRun

DEFAULT_SEED = 42


@dataclass(frozen=True)
class ModelChoice:
    """Which step-time model predicts: the latency model, the overhead variant, an optional calibration."""

    latency_model: str = DEFAULT_LATENCY_MODEL
    overhead: str = DEFAULT_OVERHEAD
    calibration: Any = None  # a servesim.calibration.Calibration, when given
    frontend_latency_s: float | None = None  # None = the calibration's (or 0)

    def label(self) -> str:
        """Short human label, e.g. 'roofline-v2 + per-layer'."""
        cal = f" + calibration {getattr(self.calibration, 'name', 'custom')}" if self.calibration is not None else ""
        return f"{self.latency_model} + {self.overhead}{cal}"


@dataclass
class RunComparison:
    """One measured run replayed: rows of predicted vs measured, saturation flags, timing."""

    experiment: str
    run: str
    label: str
    rows: list[Row]
    saturated_measured: bool
    saturated_predicted: bool
    predicted: dict[str, float] = field(default_factory=dict)
    measured: dict[str, float] = field(default_factory=dict)
    wall_s: float = 0.0
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def saturated(self) -> bool:
        """Measured saturated: the run has no steady-state latency to predict (reported apart)."""
        return self.saturated_measured

    @property
    def regime_mismatch(self) -> bool:
        """Predicted and measured saturation differ (the worst error a capacity tool can make)."""
        return self.saturated_measured != self.saturated_predicted


# ---- building the replayed workload --------------------------------------------------------------

def _cycle_prefixes(requests: Sequence[RequestSpec], period: int) -> list[RequestSpec]:
    """inference-perf cycles a fixed list of `period` prompts: request k resends request k−period's prompt.

    Modelling assumption: a request whose input length equals that of the request `period` earlier
    carries the same whole prompt (prefix group keyed by its position in the cycle and its length).
    """
    out = []
    for k, r in enumerate(requests):
        group = f"cycle{k % period}:{r.input_tokens}"
        out.append(RequestSpec(r.id, r.arrival_s, r.input_tokens, r.output_tokens, group, r.input_tokens, r.client, r.stage))
    return out


def clipped_normal_mean(mu: float, sigma: float, lo: float, hi: float) -> float:
    """Mean of N(mu, sigma) clipped to [lo, hi] (the GuideLLM/BLIS length sampler, before rounding)."""
    if sigma <= 0:
        return min(max(mu, lo), hi)
    cdf = lambda z: 0.5 * (1.0 + math.erf(z / math.sqrt(2.0)))  # noqa: E731
    pdf = lambda z: math.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi)  # noqa: E731
    a, b = (lo - mu) / sigma, (hi - mu) / sigma
    return lo * cdf(a) + hi * (1.0 - cdf(b)) + mu * (cdf(b) - cdf(a)) + sigma * (pdf(a) - pdf(b))


def mu_for_mean(target: float, sigma: float, lo: float, hi: float) -> float:
    """The Gaussian mean whose clipped distribution has mean `target` (bisection; the clipped mean is monotone)."""
    a, b = lo - 6 * sigma, hi + 6 * sigma
    for _ in range(100):
        mid = 0.5 * (a + b)
        if clipped_normal_mean(mid, sigma, lo, hi) < target:
            a = mid
        else:
            b = mid
    return 0.5 * (a + b)


def measured_output_mean(run: MeasuredRun) -> float | None:
    """Mean output tokens implied by GuideLLM's aggregates: its TPOT is ΣE2E/ΣN, so N̄ = mean E2E / TPOT."""
    agg = run.aggregates or {}
    e2e, tpot = agg.get("e2e_mean_ms"), agg.get("e2e_per_token_mean_ms")
    return e2e / tpot if e2e and tpot else None


def workload_for(exp: Experiment, run: MeasuredRun, *, seed: int = DEFAULT_SEED, prefix_model: str = "auto") -> Any:
    """What simulate() should replay for this run: a request source, or a workload spec (aggregate runs)."""
    from servesim.workload import ClosedLoopListSource, ListSource, workload_from_flags

    if run.requests:
        reqs: list[RequestSpec] = list(run.requests)
        profile = (exp.manifest.get("ground_truth") or {}).get("workload_profile") or {}
        period = profile.get("prompt_cycle_period")
        if prefix_model in ("auto", "cycle") and period and not any(r.prefix_group for r in reqs):
            reqs = _cycle_prefixes(reqs, int(period))
        if run.mode == "closed":
            return ClosedLoopListSource(reqs, int(run.concurrency or 1))
        return ListSource(reqs, sort=True, where=f"{exp.name}/{run.name}")
    if run.workload_spec is not None:
        from servesim.workload import build_source

        return build_source(run.workload_spec, seed=seed)
    w = dict(run.workload or {})
    n_bar = measured_output_mean(run)
    if n_bar is not None and w.get("output_tokens_stdev"):
        # Workload reconstruction: the output-length mean is set so the clipped distribution's mean equals the
        # measured N̄ (a property of the benchmark's data, not a model constant); stdev/min/max stay as given.
        lo, hi = float(w.get("output_tokens_min", 1)), float(w.get("output_tokens_max", 10**6))
        w["output_tokens"] = max(1, round(mu_for_mean(n_bar, float(w["output_tokens_stdev"]), lo, hi)))
    closed = run.mode == "closed"
    conc = int(run.concurrency or 1)
    return workload_from_flags(
        base=None,
        num_requests=int(w.get("num_requests", 50)),
        prompt_tokens=w.get("prompt_tokens"),
        prompt_tokens_stdev=w.get("prompt_tokens_stdev"),
        prompt_tokens_min=w.get("prompt_tokens_min"),
        prompt_tokens_max=w.get("prompt_tokens_max"),
        output_tokens=w.get("output_tokens"),
        output_tokens_stdev=w.get("output_tokens_stdev"),
        output_tokens_min=w.get("output_tokens_min"),
        output_tokens_max=w.get("output_tokens_max"),
        prefix_tokens=w.get("prefix_tokens") or None,
        arrival=("synchronous" if conc == 1 else "concurrency") if closed else "poisson",
        concurrency=conc if closed and conc > 1 else None,
        rate=None if closed else float(w.get("rate", 1.0)),
        seed=seed,
    )


def replay(
    exp: Experiment,
    run: MeasuredRun,
    choice: ModelChoice = ModelChoice(),
    *,
    seed: int = DEFAULT_SEED,
    engine_overrides: dict[str, Any] | None = None,
    prefix_model: str = "auto",
    record_token_times: bool = False,
    workload: Any = None,
    latency: Any = None,
    frontend_latency_s: float | None = None,
    frontend_per_token_s: float | None = None,
) -> RunResult:
    """Simulate one measured run with its own engine settings and load pattern (or `workload` instead)."""
    engine = {k: v for k, v in exp.engine_kwargs().items() if k != "tensor_parallel_size"}
    engine.update(engine_overrides or {})
    kwargs: dict[str, Any] = {}
    if choice.calibration is not None:
        kwargs["calibration"] = choice.calibration
    fe = frontend_latency_s if frontend_latency_s is not None else choice.frontend_latency_s
    return simulate(
        exp.model, exp.hardware, exp.tensor_parallel_size,
        workload=workload if workload is not None else workload_for(exp, run, seed=seed, prefix_model=prefix_model),
        engine=engine, latency_model=latency if latency is not None else choice.latency_model, overhead=choice.overhead,
        frontend_latency_s=fe, frontend_per_token_s=frontend_per_token_s, seed=seed,
        record_token_times=record_token_times, **kwargs,
    )


# ---- comparing ----------------------------------------------------------------------------------

def _predicted_ms(rec: RequestRecord) -> tuple[float, float, float | None] | None:
    if rec.rejected or rec.first_token_s is None or rec.finish_s is None:
        return None
    ttft = (rec.first_token_s - rec.arrival_s) * 1e3
    e2e = (rec.finish_s - rec.arrival_s) * 1e3
    itl = (e2e - ttft) / (rec.output_tokens - 1) if rec.output_tokens >= 2 else None
    return ttft, e2e, itl


def _throughput(arrivals: Sequence[float], finishes: Sequence[float], out_tokens: Sequence[int]) -> tuple[float, float] | None:
    if len(arrivals) < 2:
        return None
    span = max(finishes) - min(arrivals)
    return (len(arrivals) / span, sum(out_tokens) / span) if span > 0 else None


def compare(exp: Experiment, run: MeasuredRun, result: RunResult, label: str | None = None) -> RunComparison:
    """Rows of predicted vs measured for one replayed run (whole run and per stage)."""
    label = label or (exp.name if len(exp.runs) == 1 else f"{exp.name}/{run.name}")
    by_id = {r.id: r for r in result.records}
    rows: list[Row] = []
    if run.measured is None:  # aggregate-only ground truth: compare the means that exist
        return _compare_aggregate(exp, run, result, label)
    pairs: list[tuple[MeasuredRequest, RequestRecord]] = []
    pred_all: list[tuple[float, float, float | None]] = []
    failed = 0
    for i, m in enumerate(run.measured):
        rec = by_id.get(run.requests[i].id)
        if not m.ok:
            failed += 1
            continue
        pred = _predicted_ms(rec) if rec is not None else None
        if pred is not None and m.ttft_ms is not None and m.e2e_ms is not None:
            pairs.append((m, rec))  # type: ignore[arg-type]
            pred_all.append(pred)
    closed = run.mode == "closed"
    sat_meas = False if closed else queue_growing([m.arrival_s for m, _ in pairs], [m.ttft_ms for m, _ in pairs], failed=failed, total=len(run.measured))
    sat_pred = False if closed else queue_growing([r.arrival_s for _, r in pairs], [p[0] for p in pred_all])
    stages: list[tuple[str, int | None]] = [("all", None)]
    if len(run.stage_names) > 1:
        stages += [(name, i) for i, name in enumerate(run.stage_names)]
    predicted_means: dict[str, float] = {}
    measured_means: dict[str, float] = {}
    for stage_name, idx in stages:
        sel = [(m, r, p) for (m, r), p in zip(pairs, pred_all) if idx is None or m.stage == idx]
        if not sel:
            continue
        pred = {"ttft": [p[0] for _, _, p in sel], "e2e": [p[1] for _, _, p in sel], "itl": [p[2] for _, _, p in sel if p[2] is not None]}
        act = {"ttft": [m.ttft_ms for m, _, _ in sel], "e2e": [m.e2e_ms for m, _, _ in sel], "itl": [m.itl_ms for m, _, _ in sel if m.itl_ms is not None]}
        stage_rows = latency_rows(label, stage_name, pred, act, sat_meas)
        if not closed:
            tp_pred = _throughput([r.arrival_s for _, r, _ in sel], [r.finish_s for _, r, _ in sel], [r.output_tokens for _, r, _ in sel])
            tp_act = _throughput([m.arrival_s for m, _, _ in sel], [m.arrival_s + m.e2e_ms / 1e3 for m, _, _ in sel], [m.output_tokens for m, _, _ in sel])
            if tp_pred and tp_act:
                for metric, a, b in (("throughput_rps", tp_pred[0], tp_act[0]), ("output_tokens_per_s", tp_pred[1], tp_act[1])):
                    row = make_row(label, stage_name, metric, a, b, sat_meas)
                    if row:
                        stage_rows.append(row)
        stage_rows = with_intervals(stage_rows, result.summary)
        rows += stage_rows
        if idx is None:
            predicted_means = {r.metric: r.predicted for r in stage_rows}
            measured_means = {r.metric: r.actual for r in stage_rows}
    return RunComparison(exp.name, run.name, label, rows, sat_meas, sat_pred, predicted_means, measured_means,
                         notes={"failed_measured": failed, "compared_requests": len(pairs), **_load_notes(result)})


def _load_notes(result: RunResult) -> dict[str, Any]:
    """The simulated run's mean requests in system (Little's law) and regime (latency/intervals.py)."""
    from servesim.latency.intervals import mean_in_system, regime_of

    s = result.summary
    load = mean_in_system(s.get("requests_per_s"), (s.get("e2e_ms") or {}).get("mean"))
    return {"mean_in_system": load, "regime": "loaded" if s.get("saturated") else regime_of(load)}


def with_intervals(rows: list[Row], summary: dict[str, Any]) -> list[Row]:
    """Rows with the interval of each predicted value, from the run's interval scores (none: rows unchanged)."""
    from dataclasses import replace as _replace

    from servesim.latency.intervals import interval

    scores = (summary.get("prediction_intervals") or {}).get("scores") or {}
    return [_replace(r, interval=tuple(interval(r.predicted, scores[r.metric]))) if r.metric in scores and r.predicted > 0 else r
            for r in rows]


def predicted_means(result: RunResult) -> dict[str, float]:
    """Means over completed simulated requests: ttft, e2e, itl (per-request mean) and GuideLLM's E2E/N (token-weighted)."""
    done, vals = [], []
    for r in result.records:
        v = _predicted_ms(r)
        if v is not None:
            done.append(r)
            vals.append(v)
    if not vals:
        return {}
    out = {
        "ttft_mean": float(np.mean([v[0] for v in vals])),
        "e2e_mean": float(np.mean([v[1] for v in vals])),
        "itl_mean": float(np.mean([v[2] for v in vals if v[2] is not None])) if any(v[2] is not None for v in vals) else math.nan,
        "e2e_per_token_mean": math.fsum(v[1] for v in vals) / sum(r.output_tokens for r in done),
        "output_tokens_mean": float(np.mean([r.output_tokens for r in done])),
    }
    return out


# Aggregate metrics compared when the measured side has them (whole run and, where given, per stage).
AGGREGATE_METRICS = ("ttft_mean", "e2e_mean", "itl_mean", "e2e_per_token_mean",
                     "ttft_p50", "ttft_p90", "ttft_p99", "e2e_p50", "e2e_p90", "e2e_p99")


def _predicted_aggregate(metric: str, done: list[tuple[RequestRecord, tuple[float, float, float | None]]]) -> float | None:
    """One aggregate over completed simulated requests (ms): a mean/percentile, or GuideLLM's token-weighted E2E/N."""
    if not done:
        return None
    if metric == "e2e_per_token_mean":
        return math.fsum(v[1] for _, v in done) / sum(r.output_tokens for r, _ in done)
    family, which = metric.split("_")
    col = {"ttft": 0, "e2e": 1, "itl": 2}[family]
    return stat([v[col] for _, v in done if v[col] is not None], which)  # type: ignore[misc]


def _compare_aggregate(exp: Experiment, run: MeasuredRun, result: RunResult, label: str) -> RunComparison:
    done = [(r, v) for r in result.records if (v := _predicted_ms(r)) is not None]
    act = run.measured_means()
    is_open = run.mode == "open"
    # Predicted side: the usual quarter rule on simulated requests. Measured side: only ruled out by the
    # whole-run mean (aggregate_saturation_possible); when it cannot be ruled out the run counts as saturated.
    sat_pred = is_open and queue_growing([r.arrival_s for r, _ in done], [v[0] for _, v in done])
    sat_meas = is_open and aggregate_saturation_possible(act.get("ttft_mean_ms"))
    stages: list[tuple[str, int | None]] = [("all", None)]
    if len(run.stage_names) > 1:
        stages += [(name, i) for i, name in enumerate(run.stage_names)]
    rows = []
    for stage_name, idx in stages:
        sel = done if idx is None else [(r, v) for r, v in done if r.stage == idx]
        measured = act if idx is None else run.measured_means(idx)
        for metric in AGGREGATE_METRICS:
            if f"{metric}_ms" not in measured:
                continue
            # Row.saturated = measured saturated (a run measured unsaturated counts whatever was predicted).
            row = make_row(label, stage_name, metric, _predicted_aggregate(metric, sel), measured[f"{metric}_ms"], sat_meas)
            if row:
                rows.append(row)
    rows = with_intervals(rows, result.summary)
    whole = [r for r in rows if r.stage == "all"]
    return RunComparison(exp.name, run.name, label, rows, sat_meas, sat_pred,
                         {r.metric: r.predicted for r in whole}, {r.metric: r.actual for r in whole}, notes=_load_notes(result))


@dataclass
class ValidationReport:
    """All runs of a validation: rows, MAPE over non-saturated whole-run rows, per-run comparisons."""

    choice: ModelChoice
    runs: list[RunComparison]
    in_sample: dict[str, Any] | None = None  # which validated runs the calibration in use was fitted on

    @property
    def rows(self) -> list[Row]:
        """Every comparison row of every run."""
        return [r for c in self.runs for r in c.rows]

    def mape(self) -> dict[str, float]:
        """Mean APE (%) per metric over the whole-run rows of runs measured unsaturated (whatever the prediction)."""
        return mape(self.rows)

    def regime_accuracy(self) -> float | None:
        """Fraction of runs whose predicted saturation agrees with the measured one (None: no runs)."""
        return sum(not c.regime_mismatch for c in self.runs) / len(self.runs) if self.runs else None

    def to_dict(self) -> dict[str, Any]:
        """The JSON document `servesim validate --output` writes."""
        return {
            "model": self.choice.label(),
            "rows": [r.as_dict() for r in self.rows],
            "mape": self.mape(),
            "saturated_runs": [
                {"experiment": c.label, "measured": c.saturated_measured, "predicted": c.saturated_predicted}
                for c in self.runs if c.saturated
            ],
            "mape_saturated_included": mape(self.rows, include_saturated=True),
            "regime_mismatches": [
                {"experiment": c.label, "measured_saturated": c.saturated_measured, "predicted_saturated": c.saturated_predicted}
                for c in self.runs if c.regime_mismatch
            ],
            "regime_accuracy": self.regime_accuracy(),
            "in_sample": self.in_sample,
        }


def validate(
    experiments: Iterable[Experiment],
    choice: ModelChoice = ModelChoice(),
    *,
    seed: int = DEFAULT_SEED,
    on_run: Callable[[RunComparison], None] | None = None,
    prefix_model: str = "auto",
    engine_overrides: dict[str, Any] | None = None,
) -> ValidationReport:
    """Replay every run of every experiment with the chosen model and compare (engine_overrides over each manifest's engine)."""
    out = []
    for exp in experiments:
        for run in exp.runs:
            t0 = time.perf_counter()
            result = replay(exp, run, choice, seed=seed, prefix_model=prefix_model, engine_overrides=engine_overrides)
            comp = compare(exp, run, result)
            comp.wall_s = time.perf_counter() - t0
            out.append(comp)
            if on_run is not None:
                on_run(comp)
    return ValidationReport(choice, out, in_sample_of(choice, out))


def in_sample_of(choice: ModelChoice, runs: Sequence[RunComparison]) -> dict[str, Any] | None:
    """Which validated runs the calibration in use was fitted on ('exp/run' names in its fitted_on); None when not calibrated."""
    if choice.latency_model != "calibrated":
        return None
    cal = choice.calibration
    if cal is None:
        from servesim.latency.calibration import load_calibration

        cal = load_calibration("default")
    fitted = set(cal.fitted_on)
    names = [c.label for c in runs if f"{c.experiment}/{c.run}" in fitted or c.experiment in fitted]
    return {"calibration": cal.name, "runs": len(names), "of": len(runs), "names": names,
            "note": f"in-sample for {len(names)} of {len(runs)} runs (the calibration was fitted on them)"}
