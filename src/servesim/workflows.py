"""Typed top-level functions for the commands that are more than one run: validate, sweep, capacity, calibrate.

Each returns a frozen result dataclass with its plain data and `.to_dataframe()` (pandas, the optional extra
`servesim[pandas]`); each raises the same ServesimError messages as the command it mirrors.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from servesim.errors import ConfigError, ServesimError

if TYPE_CHECKING:  # pragma: no cover
    import pandas

    from servesim.latency.calibration import Calibration
    from servesim.validation.manifest import Experiment

__all__ = ["CalibrateResult", "CapacityReport", "SweepResult", "ValidateResult", "calibrate", "capacity", "sweep", "validate"]


def _pandas():  # type: ignore[no-untyped-def]
    try:
        import pandas as pd
    except ModuleNotFoundError:
        raise ServesimError("to_dataframe() needs pandas, which is not installed: pip install 'servesim[pandas]'") from None
    return pd


def _flat(row: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested dict as one flat row (keys joined with dots), lists kept as values."""
    out: dict[str, Any] = {}
    for k, v in row.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flat(v, key + "."))
        else:
            out[key] = v
    return out


def _experiments(experiments: Iterable[str | Path | Experiment] | str | Path | None, suite: Iterable[str] | str | None) -> list[Experiment]:
    """Experiments from folders/manifests, Experiment objects and bundled suite names, suites' errors first."""
    from servesim.validation import load_experiment, load_suite
    from servesim.validation.manifest import Experiment

    if isinstance(experiments, (str, Path)):
        experiments = [experiments]
    if isinstance(suite, str):
        suite = [suite]
    suites = [e for name in suite or [] for e in load_suite(name)]
    given = [e if isinstance(e, Experiment) else load_experiment(Path(e)) for e in experiments or []]
    if not given and not suites:
        raise ConfigError("give experiments (folders, experiment.yaml files or Experiment objects) or suite=NAME")
    return given + suites


@dataclass(frozen=True)
class ValidateResult:
    """Predicted vs measured per (experiment, stage, metric): `rows` (dicts, errors in %), `mape` per metric (%)."""

    model: str
    rows: list[dict[str, Any]]
    mape: dict[str, float]
    saturated_runs: list[Any] = field(default_factory=list)
    report: dict[str, Any] = field(default_factory=dict, repr=False)  # what `servesim validate --output` writes

    def to_dataframe(self) -> pandas.DataFrame:
        """One row per comparison: experiment, stage, metric, predicted, actual, ape (%), signed error (%), ..."""
        return _pandas().DataFrame(self.rows)


def validate(
    experiments: Iterable[str | Path | Experiment] | str | Path | None = None, *, suite: Iterable[str] | str | None = None,
    latency_model: str | None = None, overhead: str | None = None, calibration: str | Path | Calibration | None = None,
    seed: int = 42,
) -> ValidateResult:
    """Replay measured runs (experiment folders or bundled suites) and compare TTFT, ITL, E2E and throughput (ms, %)."""
    from servesim.latency.calibration import Calibration, load_calibration
    from servesim.simulation import DEFAULT_LATENCY_MODEL, DEFAULT_OVERHEAD
    from servesim.validation.runner import ModelChoice
    from servesim.validation.runner import validate as run_validation
    from servesim.workload.spec import check_seed

    check_seed(seed)
    exps = _experiments(experiments, suite)
    cal = calibration if isinstance(calibration, Calibration) or calibration is None else load_calibration(calibration)
    choice = ModelChoice("calibrated" if cal is not None else latency_model or DEFAULT_LATENCY_MODEL, overhead or DEFAULT_OVERHEAD, cal)
    report = run_validation(exps, choice, seed=seed)
    doc = report.to_dict()
    return ValidateResult(doc["model"], doc["rows"], doc["mape"], doc.get("saturated_runs", []), doc)


@dataclass(frozen=True)
class SweepResult:
    """Every point of a sweep in grid order: `rows` as `servesim sweep` writes them (params, config, summary)."""

    name: str | None
    rows: list[dict[str, Any]]

    def to_dataframe(self) -> pandas.DataFrame:
        """One row per point: params.*, config.*, summary.* (nested keys joined with dots), error when it failed."""
        from servesim.sweep.runner import flatten

        return _pandas().DataFrame([flatten(r) for r in self.rows])


def sweep(spec: str | Path | dict[str, Any], *, output: str | Path | None = None, workers: int = 1) -> SweepResult:
    """Run a sweep spec (YAML path or mapping); with output (.jsonl/.parquet) resumable as `servesim sweep -o`."""
    from servesim.sweep.grid import SweepSpec, load_sweep, parse_sweep
    from servesim.sweep.runner import expand, result_line, run_sweep, run_tasks, timed_point

    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ConfigError(f"--workers {workers!r}: must be an integer >= 1")
    if isinstance(spec, SweepSpec):
        s = spec
    elif isinstance(spec, (str, Path)):
        s = load_sweep(spec)
    elif isinstance(spec, dict):
        s = parse_sweep(spec)
    else:
        raise ConfigError(f"sweep spec {spec!r}: expected a YAML path, a mapping or a SweepSpec")
    if output is not None:
        from servesim.config.outfile import check_output

        check_output(output, "--output", regular_only=True)
        return SweepResult(s.name, run_sweep(s, output, workers=workers))
    import json

    points = expand(s)
    answers: dict[int, dict[str, Any]] = {}
    for i, (answer, _elapsed) in run_tasks(timed_point, [(p.kwargs, s.summary) for p in points], workers=workers):
        answers[i] = json.loads(result_line(points[i], s.name, answer))  # the one serialisation every sweep uses
    return SweepResult(s.name, [answers[i] for i in range(len(points))])


@dataclass(frozen=True)
class CapacityReport:
    """Per configuration (`results`, as `servesim capacity --output` writes them): `max_rate` (req/s meeting every SLO,
    None below rate_min), `bracketed`, and every probe in `evaluations`."""

    slos: dict[str, float]
    results: list[dict[str, Any]]

    def to_dataframe(self) -> pandas.DataFrame:
        """One row per configuration: label, params.*, max_rate (req/s), ... (probes left out; see .results)."""
        return _pandas().DataFrame([_flat({k: v for k, v in r.items() if k != "evaluations"}) for r in self.results])


def capacity(
    slo: Sequence[str] | str, *, model: Sequence[str] | str = "llama-2-7b-hf", hardware: Sequence[str] | str = "H100",
    tp: Sequence[int] | int = 1, workload: str | dict[str, Any] = "chat", rate_min: float = 0.5, rate_max: float = 256.0,
    tolerance: float = 0.02, num_requests: int | None = None, latency_model: str | None = None, overhead: str | None = None,
    engine: dict[str, Any] | None = None, seed: int | None = None, workers: int = 1,
) -> CapacityReport:
    """Highest request rate (req/s) meeting every SLO (e.g. "ttft_p99_ms=500") per (model, hardware, tp), by bisection."""
    import itertools

    from servesim.simulation import DEFAULT_LATENCY_MODEL, DEFAULT_OVERHEAD
    from servesim.sweep.capacity import check_search, parse_slo, run_capacity
    from servesim.workload import load_workload, parse_workload, workload_from_flags

    slos = [parse_slo(s) for s in ([slo] if isinstance(slo, str) else slo)]
    check_search(slos, rate_min, rate_max, tolerance)
    base: Any = load_workload(workload) if isinstance(workload, str) else parse_workload(workload, where="workload")
    spec = workload_from_flags(base=base, rate=rate_min, num_requests=num_requests, seed=seed)
    wl = spec.model_dump(mode="json", exclude_none=True)
    models = [model] if isinstance(model, str) else list(model)
    gpus = [hardware] if isinstance(hardware, str) else list(hardware)
    tps = [tp] if isinstance(tp, int) else list(tp)
    configs = []
    for m, hw, t in itertools.product(models, gpus, tps):
        kw = {"model": m, "hardware": hw, "tp": t, "latency_model": latency_model or DEFAULT_LATENCY_MODEL,
              "overhead": overhead or DEFAULT_OVERHEAD, "workload": wl, "engine": dict(engine or {}), "seed": seed}
        configs.append((f"{m} · {hw} · TP{t}", {"model": m, "hardware": hw, "tp": t}, kw))
    results = run_capacity(configs, slos, rate_lo=rate_min, rate_hi=rate_max, rel_tol=tolerance, workers=workers,
                           steady=num_requests is None)
    return CapacityReport({s.name: s.limit_ms for s in slos}, results)


@dataclass(frozen=True)
class CalibrateResult:
    """A calibration fitted on measured runs, its training errors (`rows`, `mape` in %) and what it was fitted on."""

    calibration: Calibration
    fitted_on: list[str]
    left_out_saturated: list[str]
    rows: list[dict[str, Any]]
    mape: dict[str, float]

    def to_dataframe(self) -> pandas.DataFrame:
        """One row per training comparison (errors of the fitted calibration on the runs it was fitted on)."""
        return _pandas().DataFrame(self.rows)


def calibrate(
    experiments: Iterable[str | Path | Experiment] | str | Path | None = None, *, suite: Iterable[str] | str | None = None,
    iterations: int = 5, fit_window_s: float | None = 300.0, name: str = "fit",
) -> CalibrateResult:
    """Fit the calibrated model's θ and front-end latency on measured runs (`servesim calibrate` without --cv)."""
    try:  # the fit solves bounded least squares with scipy, an optional extra
        import scipy.optimize  # noqa: F401
    except ImportError:
        raise ServesimError("calibrate needs scipy, which is not installed: pip install 'servesim[calibrate]'") from None
    if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 1:
        raise ConfigError(f"--iterations {iterations!r}: must be an integer >= 1")
    if fit_window_s is not None and not (isinstance(fit_window_s, (int, float)) and math.isfinite(fit_window_s) and fit_window_s >= 0):
        raise ConfigError(f"--fit-window {fit_window_s}: must be a finite number of seconds >= 0 (0 = whole runs)")
    from servesim.validation.calibrate import fit, measured_saturated, units_of
    from servesim.validation.crossval import evaluate, window_units
    from servesim.validation.runner import ModelChoice, ValidationReport

    exps = _experiments(experiments, suite)
    sat = measured_saturated(exps)
    units = units_of(exps, exclude_saturated=sat)
    if not units:
        raise ConfigError("calibrate: no unsaturated measured runs to fit on")
    cal = fit(window_units(units, fit_window_s or None), iterations=iterations, name=name).calibration
    train = ValidationReport(ModelChoice("calibrated", "auto", cal), evaluate(units, cal))
    return CalibrateResult(cal, sorted({f"{e.name}/{r.name}" for e, r in units}), sorted(sat),
                           [r.as_dict() for r in train.rows], train.mape())
