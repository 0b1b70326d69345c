"""Other tools' native result files (vllm bench serve, inference-perf per-request lifecycle) as MeasuredRuns,
read by servesim.workload.formats; GuideLLM files go through loaders.guidellm."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from servesim.validation.loaders._common import Row, build_run
from servesim.validation.measured import MeasuredRun
from servesim.workload.formats import ImportedRun

# The tool's own summary keys -> servesim's aggregate names (used when the file has no per-request rows).
# vLLM's TPOT (excl. the 1st token) is mean over requests of (E2E − TTFT)/(N − 1): servesim's itl_mean_ms.
AGGREGATE_NAMES = {"mean_ttft_ms": "ttft_mean_ms", "mean_e2el_ms": "e2e_mean_ms", "mean_tpot_ms": "itl_mean_ms"}


def run_from_imported(imp: ImportedRun, name: str) -> MeasuredRun:
    """A MeasuredRun from an ImportedRun: per-request measurements when the file has them, else its aggregates."""
    rows = [Row(r.arrival_s, max(1, r.input_tokens), max(1, r.output_tokens), r.ttft_ms, r.e2e_ms, r.ok, r.stage,
                r.prefix_group, r.prefix_tokens) for r in imp.requests]
    notes = {"format": imp.format, "source_file": imp.path}
    if imp.notes:
        notes["import_notes"] = list(imp.notes)
    run = build_run(name, rows, stage_names=imp.stage_names, mode=imp.mode, concurrency=imp.concurrency,
                    aggregates=imp.aggregates, notes=notes)
    if any(r.ttft_ms is not None for r in imp.requests):
        return run
    agg = {new: imp.aggregates[old] for old, new in AGGREGATE_NAMES.items() if old in imp.aggregates}
    return replace(run, measured=None, aggregates=agg)


def load_native(path: Path, fmt: str, *, seed: int = 0) -> list[MeasuredRun]:
    """The runs of a result file in format fmt (vllm-bench, inference-perf or guidellm)."""
    from servesim.workload.formats import read_inference_perf_lifecycle, read_vllm_bench

    if fmt == "guidellm":
        from servesim.validation.loaders.guidellm import load_guidellm

        return load_guidellm(path)
    if fmt == "vllm-bench":
        return [run_from_imported(read_vllm_bench(path, seed=seed), "vllm-bench")]
    return [run_from_imported(read_inference_perf_lifecycle(path), "inference-perf")]
