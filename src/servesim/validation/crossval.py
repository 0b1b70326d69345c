"""Leave-one-model-out cross-validation of the calibrated model, and truncated runs for faster fits."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from servesim.latency.calibration import Calibration
from servesim.validation.calibrate import FitResult, fit, model_groups
from servesim.validation.measured import Experiment, MeasuredRun
from servesim.validation.runner import ModelChoice, RunComparison, ValidationReport, compare, replay


WARMUP_E2E = 10.0  # generated runs: a fit window spans at least this many measured E2E means (see window_run)


def window_run(run: MeasuredRun, seconds_per_stage: float | None) -> MeasuredRun:
    """The run cut to the first `seconds_per_stage` of each load stage (open-loop runs only; for faster fits).

    Per-request runs keep the measured requests of the window (exact). Generated inference-perf runs
    (stage-aggregates) replay each stage for at most that long and keep the whole-stage measured aggregates
    as targets: this assumes each stage's latencies are stationary (queues settle within seconds at these
    loads), so the window's means estimate the stage's; scoring (crossval.evaluate) always replays in full."""
    if seconds_per_stage is None or run.mode != "open":
        return run
    spec = run.workload_spec
    if spec is not None and spec.inference_perf is not None:
        ip = spec.inference_perf
        # A stage fills from empty over about one E2E, so a window keeps >= WARMUP_E2E measured E2E means:
        # the warm-up then weighs <= ~1/WARMUP_E2E of the window (the targets are whole-stage means).
        e2e_s = (run.aggregates.get("e2e_mean_ms") or 0.0) / 1e3
        window = max(seconds_per_stage, WARMUP_E2E * e2e_s)
        stages = tuple(s.model_copy(update={"duration_s": min(s.duration_s, window)}) for s in ip.stages)
        if stages == ip.stages:
            return run
        return replace(run, workload_spec=spec.model_copy(update={"inference_perf": ip.model_copy(update={"stages": stages})}))
    if run.measured is None or not run.requests:
        return run
    stage_start: dict[int, float] = {}
    for spec in run.requests:
        stage_start[spec.stage] = min(stage_start.get(spec.stage, spec.arrival_s), spec.arrival_s)
    keep = [i for i, spec in enumerate(run.requests) if spec.arrival_s - stage_start[spec.stage] < seconds_per_stage]
    if len(keep) == len(run.requests):
        return run
    return replace(run, requests=tuple(run.requests[i] for i in keep), measured=tuple(run.measured[i] for i in keep))


def window_units(units: list[tuple[Experiment, MeasuredRun]], seconds_per_stage: float | None) -> list[tuple[Experiment, MeasuredRun]]:
    """Every unit's run cut with window_run."""
    return [(e, window_run(r, seconds_per_stage)) for e, r in units]


@dataclass
class Fold:
    """One held-out model: the calibration fitted without it, and its held-out comparisons."""

    held_out: str
    fit: FitResult
    comparisons: list[RunComparison]


def evaluate(units: list[tuple[Experiment, MeasuredRun]], cal: Calibration) -> list[RunComparison]:
    """Replay these runs with the calibrated model and compare (full runs, not windowed)."""
    choice = ModelChoice("calibrated", "auto", cal)
    out = []
    for exp, run in units:
        res = replay(exp, run, choice)
        comp = compare(exp, run, res)
        out.append(comp)
    return out


def leave_one_model_out(
    units: list[tuple[Experiment, MeasuredRun]],
    *,
    fit_window_s: float | None = None,
    iterations: int = 5,
    start: Calibration | None = None,
    fixed: dict[str, float] | None = None,
    bounds: dict[str, tuple[float, float]] | None = None,
    on_fold: Callable[[Fold], None] | None = None,
    evaluate_units: list[tuple[Experiment, MeasuredRun]] | None = None,
    workers: int = 1,
) -> list[Fold]:
    """For each model: fit on every other model's runs, then predict this model's runs (all of them).
    Folds are independent: with workers > 1 they run in a process pool (same results, in the same order)."""
    groups = model_groups(units)
    eval_groups = model_groups(evaluate_units) if evaluate_units is not None else groups
    jobs = [(held, [u for m, us in groups.items() if m != held for u in us], eval_groups[held]) for held in sorted(eval_groups)]
    args = (fit_window_s, iterations, start, fixed, bounds)
    folds: list[Fold] = []
    if workers > 1 and len(jobs) > 1:
        from servesim.workers import map_unordered

        finished: dict[int, Fold] = {}
        for i, fold in map_unordered(_fold, [(*job, *args) for job in jobs], workers):  # Ctrl-C ends the workers
            finished[i] = fold
            while len(folds) in finished:  # folds in job order, whatever order they finish in
                folds.append(finished.pop(len(folds)))
                if on_fold is not None:
                    on_fold(folds[-1])
        return folds
    for job in jobs:
        folds.append(_fold(*job, *args))
        if on_fold is not None:
            on_fold(folds[-1])
    return folds


def _fold(held: str, train: list[tuple[Experiment, MeasuredRun]], test: list[tuple[Experiment, MeasuredRun]],
          fit_window_s: float | None, iterations: int, start: Calibration | None, fixed: dict[str, float] | None,
          bounds: dict[str, tuple[float, float]] | None) -> Fold:
    """One leave-one-model-out fold: fit without `held`, evaluate on its runs."""
    result = fit(window_units(train, fit_window_s), iterations=iterations, start=start, fixed=fixed, bounds=bounds,
                 name=f"lomo-without-{held}")
    return Fold(held, result, evaluate(test, result.calibration))


def cv_report(folds: list[Fold]) -> ValidationReport:
    """All held-out comparisons as one report (each run predicted by the fold that did not see its model)."""
    first: Any = folds[0].fit.calibration if folds else None
    return ValidationReport(ModelChoice("calibrated", "auto", first), [c for f in folds for c in f.comparisons])
