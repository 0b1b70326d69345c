"""Fit the calibrated step-time model to measured runs, with leave-one-model-out cross-validation.

Method (fixed-point linear least squares). Every simulated latency is a sum of step durations, and
each step lasts θ·φ(step). With the schedule of one simulation held fixed, a request's TTFT and E2E
are therefore linear in θ: TTFT_r = A_r·θ + f + idle_r, where A_r sums the features of the steps (or
the part of a step) between the request's hand-over to the engine and its first token, f is the
front-end latency and idle_r the engine's idle time in that window. So: simulate with the current θ,
collect A_r, solve a bounded linear least-squares problem (scipy.optimize.lsq_linear, θ ≥ 0) on the
relative errors of each measured run's mean TTFT, mean ITL and mean E2E (per load stage), then
re-simulate with the new θ, damped; the best iterate (by its real, simulated error) is kept. The
linearisation holds only while the schedule stays put: a step that moves θ far can tip runs into
queueing and make the real error much worse (seen in one fold with plain damped steps: 0.66 → 13 → 1.7 →
270 → 3.3 → 106,015, so the iterate a fold ended on was luck). So a step whose simulated objective exceeds
GUARD × the best so far is halved, up to three times; if it still does, the fit stops at the best iterate.
Saturated runs are left out.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from servesim.latency.calibrated import FEATURES, CalibratedModel
from servesim.latency.calibration import Calibration
from servesim.latency.plan import StepPlan
from servesim.simulation import RunResult
from servesim.validation.measured import Experiment, MeasuredRun
from servesim.validation.runner import replay

PARAMS = FEATURES + ("frontend", "frontend_per_token")
GUARD = 1.25  # a fit step may raise the simulated objective to at most this × the best so far (else: shorter step)
# Physically motivated starting point: 1/0.82 bandwidth, tables' compute efficiency, 0.5 ms/step, 30 µs/layer.
INITIAL = {"gemm_memory_s": 1 / 0.82, "gemm_compute_s": 1.0, "attention_prefill_s": 1.0, "attention_decode_s": 1 / 0.82,
           "activations_s": 1.0,
           "allreduce_bytes_s": 1.0, "allreduce_ops": 5e-6, "step": 5e-4, "layers": 5e-6, "requests": 5e-6,
           "prefill_step": 1e-3, "frontend": 5e-3, "frontend_per_token": 1e-6}
# Second starting point, GPU-bound: most per-step time on the GPU (launch gaps, element-wise kernels),
# little CPU work. The fixed point depends on where it starts, so fit() tries both and keeps the better.
# (Chosen a priori from the physics, informed by earlier fits; held-out data never enters a fold's fit.)
ALTERNATIVE = {**INITIAL, "gemm_memory_s": 1.05, "gemm_compute_s": 0.75, "attention_prefill_s": 1.5,
               "attention_decode_s": 1.0, "activations_s": 1.3, "allreduce_bytes_s": 3.0, "allreduce_ops": 5e-6,
               "layers": 4e-5, "step": 6e-4, "requests": 5e-5, "prefill_step": 2e-3, "frontend": 3e-3,
               "frontend_per_token": 5e-6}
# Physically plausible ranges (the fit may not leave them): bandwidth 62–100 % of peak, compute and
# attention within 2–3× of the kernel tables, CPU terms within what a Python scheduler can spend.
BOUNDS: dict[str, tuple[float, float]] = {
    "gemm_memory_s": (1.0, 1.6), "gemm_compute_s": (0.5, 2.0), "attention_prefill_s": (0.5, 3.0),
    "attention_decode_s": (1.0, 3.0), "activations_s": (0.0, 3.0), "allreduce_bytes_s": (0.5, 5.0),
    "allreduce_ops": (0.0, 50e-6), "layers": (0.0, 50e-6), "step": (0.0, 10e-3), "requests": (0.0, 100e-6),
    "prefill_step": (0.0, 20e-3),
    "frontend": (0.0, 100e-3), "frontend_per_token": (0.0, 20e-6),
}


class RecordingModel:
    """Wraps a CalibratedModel and records every step's features and duration, in call order."""

    def __init__(self, inner: CalibratedModel) -> None:
        self.inner = inner
        self.name = inner.name
        self.phis: list[list[float]] = []
        self.dts: list[float] = []

    def step_time(self, plan: StepPlan) -> float:
        """Seconds for the step (θ·φ_effective), recorded."""
        phi = self.inner.effective(plan)
        dt = 0.0
        for a, b in zip(self.inner.theta, phi):
            dt += a * b
        self.phis.append(phi)
        self.dts.append(dt)
        return dt

    def explain(self, plan: StepPlan):  # type: ignore[no-untyped-def]
        """Delegates to the wrapped model."""
        return self.inner.explain(plan)


def step_windows(dts: Sequence[float], result: RunResult, frontend_s: float, per_token_s: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Start and end time (s) of every step, rebuilt from the step durations and the request records.

    The engine starts the next step as soon as the previous one ends while any request is in flight
    (handed over and not finished); otherwise it idles until the next hand-over (arrival + frontend).
    """
    recs = [r for r in result.records if not r.rejected]
    entries = sorted(r.arrival_s + frontend_s + per_token_s * r.input_tokens for r in recs)
    finishes = sorted(r.finish_s for r in recs if r.finish_s is not None)
    starts = np.empty(len(dts))
    ends = np.empty(len(dts))
    now = entries[0] if entries else 0.0
    for k, dt in enumerate(dts):
        starts[k] = now
        now = now + dt
        ends[k] = now
        entered = bisect.bisect_right(entries, now + 1e-12)
        done = bisect.bisect_right(finishes, now + 1e-12)
        if entered <= done and entered < len(entries):  # nobody in flight: idle until the next hand-over
            now = max(now, entries[entered])
    return starts, ends


@dataclass
class LinearForms:
    """Per measured unit (run × stage): mean TTFT / ITL / E2E as (row vector over PARAMS, constant, target)."""

    unit: str
    model: str
    rows: list[tuple[str, np.ndarray, float, float]] = field(default_factory=list)  # (metric, a, c, target)


def linear_forms(exp: Experiment, run: MeasuredRun, result: RunResult, rec: RecordingModel, frontend_s: float,
                 per_token_s: float = 0.0) -> LinearForms:
    """Mean TTFT, ITL and E2E of each stage (and the whole run) as linear functions of (θ, frontend)."""
    phis = np.asarray(rec.phis, dtype=float)
    dts = np.asarray(rec.dts, dtype=float)
    starts, ends = step_windows(rec.dts, result, frontend_s, per_token_s)
    cum = np.vstack([np.zeros(len(FEATURES)), np.cumsum(phis, axis=0)])
    theta = np.asarray(rec.inner.theta)

    def window(t_from: float, t_to: float) -> tuple[np.ndarray, float]:
        """Feature sum of the steps between t_from and t_to (a step end), and the idle time in between."""
        lo = int(np.searchsorted(ends, t_from + 1e-12, side="left"))  # first step ending after t_from
        hi = int(np.searchsorted(ends, t_to - 1e-9, side="left"))  # the step that ends at t_to
        a = cum[hi + 1] - cum[lo]
        if lo <= hi and starts[lo] < t_from:
            a = a - (t_from - starts[lo]) / max(dts[lo], 1e-15) * phis[lo]
        idle = (t_to - t_from) - float(a @ theta)
        return a, idle

    forms = LinearForms(f"{exp.name}/{run.name}", exp.model)
    by_id = {r.id: r for r in result.records}
    per_req: list[tuple[int, np.ndarray, float, np.ndarray, float, int]] = []
    stage_of: dict[int, int] = {}
    targets: dict[int, Any] = {}
    if run.measured is not None:
        for spec, m in zip(run.requests, run.measured):
            if m.ok and m.ttft_ms is not None and m.e2e_ms is not None:
                targets[spec.id] = m
                stage_of[spec.id] = m.stage
    for r in result.records:
        if r.rejected or r.first_token_s is None or r.finish_s is None:
            continue
        if run.measured is not None and r.id not in targets:
            continue
        entry = r.arrival_s + frontend_s + per_token_s * r.input_tokens
        a1, i1 = window(entry, r.first_token_s)
        a2, i2 = window(entry, r.finish_s)
        fe = np.array([1.0, float(r.input_tokens)])  # d(latency)/d(frontend, frontend_per_token)
        per_req.append((r.id, np.append(a1, fe), i1, np.append(a2, fe), i2, r.output_tokens))
    if not per_req:
        return forms

    def unit_rows(sel: list[tuple[int, np.ndarray, float, np.ndarray, float, int]], stage: str) -> None:
        ttft_a = np.mean([a1 for _, a1, _, _, _, _ in sel], axis=0)
        ttft_c = float(np.mean([i1 for _, _, i1, _, _, _ in sel]))
        e2e_a = np.mean([a2 for _, _, _, a2, _, _ in sel], axis=0)
        e2e_c = float(np.mean([i2 for _, _, _, _, i2, _ in sel]))
        dec = [((a2 - a1) / (n - 1), (i2 - i1) / (n - 1)) for _, a1, i1, a2, i2, n in sel if n >= 2]
        if run.measured is not None:
            ms = [targets[rid] for rid, *_ in sel]
            forms.rows.append((f"ttft_mean{stage}", ttft_a, ttft_c, float(np.mean([m.ttft_ms for m in ms])) / 1e3))
            forms.rows.append((f"e2e_mean{stage}", e2e_a, e2e_c, float(np.mean([m.e2e_ms for m in ms])) / 1e3))
            itl = [m.itl_ms for m in ms if m.itl_ms is not None and m.output_tokens >= 2]
            if dec and itl:
                forms.rows.append((f"itl_mean{stage}", np.mean([d[0] for d in dec], axis=0), float(np.mean([d[1] for d in dec])), float(np.mean(itl)) / 1e3))
        else:
            agg = run.measured_means(None if not stage else int(stage.removeprefix("@stage")))
            if "ttft_mean_ms" in agg:
                forms.rows.append((f"ttft_mean{stage}", ttft_a, ttft_c, agg["ttft_mean_ms"] / 1e3))
            if "e2e_mean_ms" in agg:
                forms.rows.append((f"e2e_mean{stage}", e2e_a, e2e_c, agg["e2e_mean_ms"] / 1e3))
            if dec and "itl_mean_ms" in agg:
                forms.rows.append((f"itl_mean{stage}", np.mean([d[0] for d in dec], axis=0), float(np.mean([d[1] for d in dec])), agg["itl_mean_ms"] / 1e3))

    unit_rows(per_req, "")
    if len(run.stage_names) > 1:
        sim_stage = {r.id: r.stage for r in result.records}
        for i in range(len(run.stage_names)):
            # Measured runs: the measured request's stage; aggregate runs: the simulated request's own stage.
            sel = [p for p in per_req if (stage_of.get(p[0]) if run.measured is not None else sim_stage.get(p[0])) == i]
            if sel:
                unit_rows(sel, f"@stage{i}")
    return forms


@dataclass
class FitResult:
    """A fitted calibration, its training residuals per unit, and the iteration history."""

    calibration: Calibration
    train_errors: dict[str, dict[str, float]]
    history: list[dict[str, float]]


def solve(forms: list[LinearForms], *, fixed: dict[str, float] | None = None, ttft_weight: float = 1.0,
          bounds: dict[str, tuple[float, float]] | None = None) -> np.ndarray:
    """Bounded least squares on relative errors of every unit's metrics; returns (θ, frontend) within bounds."""
    from scipy.optimize import lsq_linear

    rows, rhs = [], []
    for f in forms:
        for metric, a, c, target in f.rows:
            w = (ttft_weight if metric.startswith("ttft") else 1.0) / target
            rows.append(a * w)
            rhs.append((target - c) * w)
    a_mat = np.asarray(rows)
    b_vec = np.asarray(rhs)
    lo = np.zeros(len(PARAMS))
    hi = np.full(len(PARAMS), np.inf)
    for k, (a, b) in (BOUNDS if bounds is None else bounds).items():
        i = PARAMS.index(k)
        lo[i], hi[i] = a, b
    for k, v in (fixed or {}).items():
        i = PARAMS.index(k)
        lo[i], hi[i] = v, v + 1e-15
    scale = np.maximum(np.abs(a_mat).max(axis=0), 1e-12)  # column scaling for conditioning
    res = lsq_linear(a_mat / scale, b_vec, bounds=(lo * scale, hi * scale), method="bvls")
    return np.clip(res.x / scale, lo, hi)  # undo the column scaling; clip float dust outside the bounds


def _calibration(x: np.ndarray, base: Calibration, name: str, fitted_on: list[str]) -> Calibration:
    theta = {k: float(v) for k, v in zip(FEATURES, x[: len(FEATURES)])}
    return Calibration(theta, float(x[-2]), float(x[-1]), base.layers_over_tp, base.pad_cuda_graphs, name, fitted_on, dict(base.notes))


def fit(
    units: list[tuple[Experiment, MeasuredRun]],
    *,
    start: Calibration | None = None,
    iterations: int = 5,
    damping: float = 0.7,
    fixed: dict[str, float] | None = None,
    bounds: dict[str, tuple[float, float]] | None = None,
    name: str = "fit",
    on_iteration: Callable[[int, Calibration], None] | None = None,
) -> FitResult:
    """Fit θ and the front-end latency on these measured runs (fixed-point iterations, see module doc).

    Without a start, the fit runs from each of the two physical starting points (INITIAL, ALTERNATIVE) to
    its end and keeps the one with the lower training objective: the fixed point depends on the start."""
    if start is not None:
        return _fit_from(units, start, iterations, damping, fixed, bounds, name, on_iteration)[1]
    starts = [Calibration({k: p[k] for k in FEATURES}, p["frontend"], p["frontend_per_token"], name="initial")
              for p in (INITIAL, ALTERNATIVE)]
    runs = [_fit_from(units, s, iterations, damping, fixed, bounds, name, on_iteration) for s in starts]
    return min(runs, key=lambda r: r[0])[1]


def _fit_from(units: list[tuple[Experiment, MeasuredRun]], start: Calibration, iterations: int, damping: float,
              fixed: dict[str, float] | None, bounds: dict[str, tuple[float, float]] | None, name: str,
              on_iteration: Callable[[int, Calibration], None] | None) -> tuple[float, FitResult]:
    """(best training objective, fit) of the guarded fixed-point iterations from one start."""
    cal = start
    x = np.array([*cal.vector(), cal.frontend_latency_s, cal.frontend_per_token_s])
    fitted_on = sorted({f"{e.name}/{r.name}" for e, r in units})
    # The residuals at θ are the simulation's real errors (not a linearised estimate).
    forms = collect_forms(units, cal)
    score = objective(forms, x)
    best = (score, cal, forms, x)
    history = [{**{k: float(v) for k, v in zip(PARAMS, x)}, "objective": score}]
    if on_iteration is not None:
        on_iteration(0, cal)
    for it in range(1, iterations + 1):
        target = solve(forms, fixed=fixed, bounds=bounds)
        for alpha in _step_sizes(1.0 if it == 1 else damping):
            x_try = x + alpha * (target - x)
            cal_try = _calibration(x_try, cal, name, fitted_on)
            forms_try = collect_forms(units, cal_try)
            score_try = objective(forms_try, x_try)
            if score_try <= GUARD * best[0]:
                break
        else:
            break  # even short steps make the real error much worse: stop at the best iterate
        x, cal, forms, score = x_try, cal_try, forms_try, score_try
        history.append({**{k: float(v) for k, v in zip(PARAMS, x)}, "objective": score, "alpha": alpha})
        if score < best[0]:
            best = (score, cal, forms, x)
        if on_iteration is not None:
            on_iteration(it, cal)
    best_score, cal, forms, x = best
    # The kept iterate may be the start itself (no step improved it): it was still selected on these units,
    # so it carries their names (a fold's calibration used as a start otherwise kept the fold's list).
    cal = replace(cal, name=name, fitted_on=fitted_on)
    train = {f.unit: {m: (float(a @ x) + c - t) / t * 100.0 for m, a, c, t in f.rows} for f in forms}
    return best_score, FitResult(cal, train, history)


def _step_sizes(first: float) -> tuple[float, ...]:
    """Step sizes to try towards the least-squares solution: first, then halved three times."""
    return tuple(first / 2**k for k in range(4))


def select_start(units: list[tuple[Experiment, MeasuredRun]], candidates: list[Calibration]) -> tuple[Calibration, float]:
    """The candidate calibration with the lowest real objective on these units (multi-start for fit())."""
    scored = []
    for cal in candidates:
        x = np.array([*cal.vector(), cal.frontend_latency_s, cal.frontend_per_token_s])
        scored.append((objective(collect_forms(units, cal), x), cal))
    score, best = min(scored, key=lambda p: p[0])
    return best, score


def objective(forms: list[LinearForms], x: np.ndarray) -> float:
    """Sum of squared relative errors of every unit's metrics at parameters x (the quantity solve() minimises)."""
    return float(sum(((a @ x + c - t) / t) ** 2 for f in forms for _, a, c, t in f.rows))


def collect_forms(units: list[tuple[Experiment, MeasuredRun]], cal: Calibration) -> list[LinearForms]:
    """Simulate every unit with this calibration and return its linear forms."""
    from servesim.config import load_hardware, load_model

    forms = []
    for exp, run in units:
        model = cal.model(load_model(exp.model), load_hardware(exp.hardware), exp.tensor_parallel_size)
        model.overlap_cpu = bool(exp.engine.get("async_scheduling", True))  # EngineConfig's default
        rec = RecordingModel(model)
        result = replay(exp, run, seed=42, latency=rec, frontend_latency_s=cal.frontend_latency_s,
                        frontend_per_token_s=cal.frontend_per_token_s)
        forms.append(linear_forms(exp, run, result, rec, cal.frontend_latency_s, cal.frontend_per_token_s))
    return forms


def units_of(experiments: list[Experiment], *, exclude_saturated: Sequence[str] = ()) -> list[tuple[Experiment, MeasuredRun]]:
    """(experiment, run) pairs to fit on, skipping runs named in exclude_saturated ('exp/run' or 'exp')."""
    out = []
    for e in experiments:
        for r in e.runs:
            if e.name in exclude_saturated or f"{e.name}/{r.name}" in exclude_saturated:
                continue
            out.append((e, r))
    return out


def model_groups(units: list[tuple[Experiment, MeasuredRun]]) -> dict[str, list[tuple[Experiment, MeasuredRun]]]:
    """Units grouped by model (the leave-one-model-out folds)."""
    groups: dict[str, list[tuple[Experiment, MeasuredRun]]] = {}
    for e, r in units:
        groups.setdefault(e.model, []).append((e, r))
    return groups


def measured_saturated(experiments: Sequence[Experiment]) -> set[str]:
    """Names ('exp/run') of open-loop runs measured saturated (queue growing), which a fit leaves out."""
    from servesim.validation.compare import aggregate_saturation_possible, queue_growing

    out = set()
    for e in experiments:
        for r in e.runs:
            if r.mode != "open":
                continue
            if r.measured is None:  # aggregates only: left out unless the mean TTFT rules saturation out
                if aggregate_saturation_possible(r.measured_means().get("ttft_mean_ms")):
                    out.add(f"{e.name}/{r.name}")
                continue
            ok = [m for m in r.measured if m.ok]
            if queue_growing([m.arrival_s for m in ok], [m.ttft_ms for m in ok], failed=len(r.measured) - len(ok), total=len(r.measured)):
                out.add(f"{e.name}/{r.name}")
    return out
