"""Ground truth: experiment manifests, loaders for measured runs (GuideLLM, inference-perf replays, request
CSVs, published aggregates) and the bundled validation suites."""

from __future__ import annotations

from servesim.validation.loaders import (
    LOADERS,
    load_aggregate,
    load_guidellm,
    load_inference_perf_replay,
    load_requests_csv,
)
from servesim.validation.manifest import FORMATS, load_experiment
from servesim.validation.measured import Experiment, MeasuredRequest, MeasuredRun, itl_ms
from servesim.validation.suites import list_suites, load_suite, suite_path

__all__ = [
    "FORMATS",
    "LOADERS",
    "Experiment",
    "MeasuredRequest",
    "MeasuredRun",
    "itl_ms",
    "list_suites",
    "load_aggregate",
    "load_experiment",
    "load_guidellm",
    "load_inference_perf_replay",
    "load_requests_csv",
    "load_suite",
    "suite_path",
]
