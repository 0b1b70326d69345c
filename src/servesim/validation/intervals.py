"""Prediction intervals from leave-one-model-out residuals (split-conformal), their nested-CV coverage, the envelope.

Input: held-out rows (each run predicted by the calibration fitted without its model). Per metric
(ttft/itl/e2e x mean/p90/p99) and regime (latency/intervals.py: light vs loaded by the mean number of
requests in the system), the conformal quantile of the scores |ln(pred/actual)| at level 80 % gives the
interval [p·e^(−q), p·e^(q)]. A regime bin too small for a finite quantile falls back to the pooled bin 'all'.

Coverage is measured honestly by nesting: for each held-out model, the quantiles are recomputed without
that model's runs and its runs are checked against those intervals (the model's own residuals never
set its interval).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from servesim.latency.intervals import (
    ENVELOPE_VERSION,
    INTERVAL_METRICS,
    INTERVALS_VERSION,
    LEVEL,
    LIGHT_BELOW_IN_SYSTEM,
    REGIMES,
    conformal_quantile,
    interval,
    mean_batch,
    mean_in_system,
    model_features,
    regime_of,
    score,
)

REGIME_RULE = (f"light: mean requests in the system (Little's law: completions/s x mean E2E, simulated) < {LIGHT_BELOW_IN_SYSTEM:g}; "
               "loaded otherwise (a saturated run is loaded)")


@dataclass
class HeldOutRun:
    """One held-out run: its label, model, regime and (predicted, actual) per metric."""

    label: str
    model: str
    regime: str
    values: dict[str, tuple[float, float]] = field(default_factory=dict)


def held_out_runs(rows: Iterable[Mapping[str, Any]], model_of: Mapping[str, str], load_of: Mapping[str, float | None]) -> list[HeldOutRun]:
    """Whole-run rows of measured-unsaturated runs grouped per run (rows as dicts: experiment, stage, metric, predicted, actual, saturated)."""
    runs: dict[str, HeldOutRun] = {}
    for r in rows:
        if r["stage"] != "all" or r.get("saturated") or r["metric"] not in INTERVAL_METRICS:
            continue
        if r["predicted"] <= 0 or r["actual"] <= 0:
            continue
        label = r["experiment"]
        if label not in runs:
            runs[label] = HeldOutRun(label, model_of[label], regime_of(load_of.get(label)))
        runs[label].values[r["metric"]] = (float(r["predicted"]), float(r["actual"]))
    return [runs[k] for k in sorted(runs)]


def fit_quantiles(runs: Sequence[HeldOutRun], level: float = LEVEL) -> dict[str, dict[str, dict[str, float | int]]]:
    """{regime|'all': {metric: {q, n}}} from the runs' scores; a bin without a finite quantile is left out."""
    out: dict[str, dict[str, dict[str, float | int]]] = {}
    for regime in (*REGIMES, "all"):
        for metric in INTERVAL_METRICS:
            scores = [score(*r.values[metric]) for r in runs if metric in r.values and regime in (r.regime, "all")]
            q = conformal_quantile(scores, level)
            if q is not None:
                out.setdefault(regime, {})[metric] = {"q": q, "n": len(scores)}
    return out


def _q(quantiles: Mapping[str, Any], metric: str, regime: str) -> float | None:
    for key in (regime, "all"):
        entry = (quantiles.get(key) or {}).get(metric)
        if entry is not None:
            return float(entry["q"])
    return None


@dataclass(frozen=True)
class Coverage:
    """Nested leave-one-model-out coverage: inside / checked, overall and per metric family of means."""

    inside: int
    checked: int
    per_metric: dict[str, tuple[int, int]]

    @property
    def fraction(self) -> float | None:
        """inside / checked (None when nothing was checked)."""
        return self.inside / self.checked if self.checked else None

    def as_dict(self) -> dict[str, Any]:
        """Plain dict for JSON output."""
        return {"inside": self.inside, "checked": self.checked, "fraction": self.fraction,
                "per_metric": {m: {"inside": a, "checked": b, "fraction": a / b if b else None} for m, (a, b) in self.per_metric.items()}}


def nested_coverage(runs: Sequence[HeldOutRun], metrics: Sequence[str] = INTERVAL_METRICS, level: float = LEVEL) -> Coverage:
    """For each model: quantiles without its runs, then the share of its runs' actual values inside their intervals."""
    per: dict[str, list[int]] = {m: [0, 0] for m in metrics}
    for model in sorted({r.model for r in runs}):
        quantiles = fit_quantiles([r for r in runs if r.model != model], level)
        for r in runs:
            if r.model != model:
                continue
            for metric in metrics:
                if metric not in r.values:
                    continue
                q = _q(quantiles, metric, r.regime)
                if q is None:
                    continue
                pred, actual = r.values[metric]
                lo, hi = interval(pred, q)
                per[metric][1] += 1
                per[metric][0] += int(lo <= actual <= hi)
    inside, checked = sum(v[0] for v in per.values()), sum(v[1] for v in per.values())
    return Coverage(inside, checked, {m: (a, b) for m, (a, b) in per.items() if b})


MEAN_METRICS = ("ttft_mean", "itl_mean", "e2e_mean")


def intervals_doc(runs: Sequence[HeldOutRun], level: float = LEVEL) -> dict[str, Any]:
    """The `intervals` field of a calibration file: quantiles from every held-out run, and their nested coverage."""
    models = sorted({r.model for r in runs})
    return {
        "version": INTERVALS_VERSION,
        "level": level,
        "method": "split-conformal on |ln(predicted/measured)| of per-run values, leave-one-model-out held-out predictions",
        "regime_rule": REGIME_RULE,
        "quantiles": fit_quantiles(runs, level),
        "fitted_on": {"runs": len(runs), "models": models, "regimes": {g: sum(r.regime == g for r in runs) for g in REGIMES}},
        "coverage_means": nested_coverage(runs, MEAN_METRICS, level).as_dict(),
        "coverage_all": nested_coverage(runs, INTERVAL_METRICS, level).as_dict(),
    }


def _max_context(run: Any) -> int | None:
    if run.requests:
        return max(r.input_tokens + r.output_tokens for r in run.requests)
    w = run.workload or {}
    p = w.get("prompt_tokens_max") or w.get("prompt_tokens")
    o = w.get("output_tokens_max") or w.get("output_tokens")
    return int(p + o) if p and o else None


def envelope_doc(units: Sequence[tuple[Any, Any]], load_of: Mapping[str, float | None]) -> dict[str, Any]:
    """The `envelope` field: GPUs, model features, TP degrees, max context, max mean batch and regimes of the runs fitted on."""
    from servesim.config import load_hardware, load_model

    hardware, tps, feats, contexts, batches, regimes = set(), set(), dict.fromkeys(("dense", "moe", "mla", "fp8_weights", "fp8_kv"), False), [], [], set()
    for exp, run in units:
        hardware.add(load_hardware(exp.hardware).name)
        tps.add(int(exp.tensor_parallel_size))
        for k, v in model_features(load_model(exp.model)).items():
            feats[k] = feats[k] or v
        if (c := _max_context(run)) is not None:
            contexts.append(c)
        label = run_label(exp, run)
        load = load_of.get(label)
        seqs = exp.engine_kwargs().get("max_num_seqs") or 256
        if (b := mean_batch(load, int(seqs))) is not None:
            batches.append(b)
        regimes.add(regime_of(load))
    return {"version": ENVELOPE_VERSION, "hardware": sorted(hardware), "features": feats, "tp": sorted(tps),
            "max_context_tokens": max(contexts) if contexts else None, "max_batch": max(batches) if batches else None,
            "regimes": sorted(regimes), "near_capacity": False}


def run_label(exp: Any, run: Any) -> str:
    """The label validation rows use for a run: the experiment name, or experiment/run when it has several."""
    return exp.name if len(exp.runs) == 1 else f"{exp.name}/{run.name}"


def loads_from_rows(rows: Iterable[Mapping[str, Any]], experiments: Sequence[Any]) -> dict[str, float | None]:
    """Mean requests in the system per run for reports without it: throughput x E2E (predicted), or the closed loop's concurrency."""
    pred: dict[str, dict[str, float]] = {}
    for r in rows:
        if r["stage"] == "all":
            pred.setdefault(r["experiment"], {})[r["metric"]] = float(r["predicted"])
    out: dict[str, float | None] = {}
    for exp in experiments:
        for run in exp.runs:
            label = run_label(exp, run)
            p = pred.get(label, {})
            if run.mode == "closed":
                out[label] = float(run.concurrency or 1)
            elif "throughput_rps" in p and "e2e_mean" in p:
                out[label] = mean_in_system(p["throughput_rps"], p["e2e_mean"])
            elif (rate := (run.workload or {}).get("rate")) and "e2e_mean" in p:
                out[label] = mean_in_system(float(rate), p["e2e_mean"])
            else:
                out[label] = None
    return out


def model_of_runs(experiments: Sequence[Any]) -> dict[str, str]:
    """Run label -> model name."""
    return {run_label(e, r): e.model for e in experiments for r in e.runs}


def from_report(report: Mapping[str, Any], experiments: Sequence[Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(intervals, envelope) from a `calibrate --cv leave-one-model-out --report` document and the experiments it used.

    Reports written before intervals existed have no per-run loads: they are rebuilt from the rows
    (predicted throughput x predicted E2E, or the closed loop's concurrency)."""
    rows = report["cv"]["rows"]
    cv_runs = report["cv"].get("runs")
    loads = {r["experiment"]: r.get("mean_in_system") for r in cv_runs} if cv_runs else loads_from_rows(rows, experiments)
    held = held_out_runs(rows, model_of_runs(experiments), loads)
    fitted = set(report.get("fitted_on", []))
    units = [(e, r) for e in experiments for r in e.runs if f"{e.name}/{r.name}" in fitted]
    return intervals_doc(held), envelope_doc(units, loads)


def cv_intervals(report: Any, experiments: Sequence[Any]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """(per-run records, `intervals` field) from a cross-validation ValidationReport (each run held out)."""
    models = model_of_runs(experiments)
    loads = {c.label: c.notes.get("mean_in_system") for c in report.runs}
    runs = [{"experiment": c.label, "model": models.get(c.label), "mean_in_system": loads[c.label],
             "regime": c.notes.get("regime"), "saturated_measured": c.saturated_measured,
             "saturated_predicted": c.saturated_predicted} for c in report.runs]
    held = held_out_runs([r.as_dict() for r in report.rows], models, loads)
    return runs, intervals_doc(held)
