"""Measured per-stage aggregates plus the workload that produced them (no per-request data).

The file is a CSV of `stage_index,metric_name,actual_ms` rows (sim-to-real-accuracy-validation's
error_records, one distinct row per stage and metric): stage_index k = the workload's k-th load stage,
-1 = the whole run; metric_name one of ttft_mean/p50/p90/p99, itl_mean, e2e_mean/p50/p90/p99.
ground_truth keys: `workload` (required: a servesim workload mapping, e.g. `inference_perf: {...}`,
see servesim.workload.spec; it is replayed seeded), `run_name` (default "run"), `drop_metrics`
({metric: reason}: measured values not to compare, e.g. an ITL computed with wrong token counts; the
reasons go to the run notes), plus the metadata keys
every loader keeps (workload_profile, published, ...). Runs are open loop.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from servesim.errors import GroundTruthError, WorkloadError
from servesim.validation._io import fail, parse_int, parse_num, read_csv_lists, short
from servesim.validation.loaders._common import metadata_notes
from servesim.validation.measured import MeasuredRun

COLUMNS = ("stage_index", "metric_name", "actual_ms")
METRICS = ("ttft_mean", "ttft_p50", "ttft_p90", "ttft_p99", "itl_mean", "e2e_mean", "e2e_p50", "e2e_p90", "e2e_p99")


def read_stage_metrics(path: Path) -> dict[int, dict[str, float]]:
    """{stage index (-1 = whole run): {metric: ms}} from a stage-metrics CSV (one-line errors on bad rows)."""
    header, rows = read_csv_lists(path)
    missing = [c for c in COLUMNS if c not in header]
    if missing:
        raise fail(path, "header", f"missing column(s) {', '.join(missing)} (expected: {', '.join(COLUMNS)})")
    col = {c: header.index(c) for c in COLUMNS}
    out: dict[int, dict[str, float]] = {}
    for line, cells in rows:
        stage = parse_int(cells[col["stage_index"]], path, f"line {line}.stage_index", min_value=-1)
        metric = cells[col["metric_name"]]
        if metric not in METRICS:
            raise fail(path, f"line {line}.metric_name", f"={short(metric)}: not allowed (allowed: {', '.join(METRICS)})")
        value = parse_num(cells[col["actual_ms"]], path, f"line {line}.actual_ms", min_value=0.0)
        seen = out.setdefault(stage, {})
        if metric in seen and seen[metric] != value:
            raise fail(path, f"line {line}", f"stage {stage} {metric} given twice with different values")
        seen[metric] = value
    if not out:
        raise fail(path, "", "no data rows")
    return out


def _stages(workload: Any) -> tuple[Any, ...]:
    """The load stages of a generated open-loop workload (empty for a plain rate)."""
    if workload.inference_perf is not None:
        return tuple(workload.inference_perf.stages)
    return tuple(workload.arrival.stages or ()) if workload.arrival is not None else ()


def load_stage_aggregates(path: Path, spec: dict[str, Any], manifest: Path) -> list[MeasuredRun]:
    """One open-loop MeasuredRun: the CSV's aggregates (stage<k>_<metric>_ms keys) and the parsed workload."""
    from servesim.workload import parse_workload

    if spec.get("workload") is None:
        raise fail(manifest, "ground_truth.workload", "missing required key (a servesim workload mapping, "
                                                      "e.g. inference_perf: {shared_prefix: ..., stages: ...})")
    try:
        workload = parse_workload(spec["workload"], where=f"{manifest}: ground_truth.workload", base_dir=manifest.parent)
    except WorkloadError as exc:
        raise GroundTruthError(str(exc)) from None
    if workload.trace is not None or workload.arrival is not None and workload.arrival.closed_loop:
        raise fail(manifest, "ground_truth.workload", "must be a generated open-loop workload (no trace, no closed loop)")
    stages = _stages(workload)
    metrics = read_stage_metrics(path)
    drop = spec.get("drop_metrics") or {}
    if not isinstance(drop, dict) or any(m not in METRICS or not isinstance(r, str) for m, r in drop.items()):
        raise fail(manifest, "ground_truth.drop_metrics", f"={short(drop)}: expected a mapping metric -> reason "
                                                         f"(metrics: {', '.join(METRICS)})")
    metrics = {k: {m: v for m, v in vals.items() if m not in drop} for k, vals in metrics.items()}
    if -1 not in metrics:
        raise fail(path, "stage_index", "no whole-run rows (stage_index -1)")
    n_stages = max(1, len(stages))  # a plain rate is one stage
    for k in metrics:
        if k >= n_stages:
            raise fail(path, "stage_index", f"={k}: the workload has {n_stages} load stage(s) (allowed: -1..{n_stages - 1})")
    aggregates: dict[str, float] = {f"{m}_ms": v for m, v in metrics[-1].items()}
    for k, values in sorted(metrics.items()):
        if k >= 0 and len(stages) > 1:
            aggregates.update({f"stage{k}_{m}_ms": v for m, v in values.items()})
    names = tuple(f"stage{k}: {s.rate:g} rps x {s.duration_s:g} s" for k, s in enumerate(stages)) if len(stages) > 1 else None
    run_name = str(spec.get("run_name") or "run")
    notes = {"source": {"file": path.name}, **metadata_notes(spec), **({"dropped_metrics": dict(drop)} if drop else {})}
    return [MeasuredRun(name=run_name, stage_names=names or (run_name,), mode="open", concurrency=None, requests=(),
                        measured=None, aggregates=aggregates, workload=None, notes=notes, workload_spec=workload)]


def load(spec: dict[str, Any], data_path: Path, manifest: Path) -> list[MeasuredRun]:
    """Loader entry for format 'stage-aggregates'."""
    return load_stage_aggregates(data_path, spec, manifest)
