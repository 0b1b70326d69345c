"""Ground-truth loaders, one module per file format; each returns MeasuredRuns (see validation.measured).

Every entry point has the signature `load(spec, data_path, manifest_file) -> list[MeasuredRun]`,
where spec is the manifest's `ground_truth` mapping. Malformed files raise one-line GroundTruthErrors.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from servesim.validation.loaders import aggregate, guidellm, inference_perf, requests_csv, stage_aggregates
from servesim.validation.loaders.aggregate import load_aggregate
from servesim.validation.loaders.guidellm import load_guidellm
from servesim.validation.loaders.inference_perf import load_inference_perf_replay
from servesim.validation.loaders.requests_csv import load_requests_csv
from servesim.validation.measured import MeasuredRun

Loader = Callable[[dict[str, Any], Path, Path], list[MeasuredRun]]

LOADERS: dict[str, Loader] = {
    "guidellm": guidellm.load,
    "inference-perf-replay": inference_perf.load,
    "requests-csv": requests_csv.load,
    "aggregate": aggregate.load,
    "stage-aggregates": stage_aggregates.load,
}

__all__ = [
    "LOADERS",
    "load_aggregate",
    "load_guidellm",
    "load_inference_perf_replay",
    "load_requests_csv",
]
