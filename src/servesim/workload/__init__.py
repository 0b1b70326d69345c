"""Workloads: token-length distributions, arrival processes, prompt shapes, trace readers, lazy request sources.

Prefix convention: `RequestSpec.input_tokens` includes the shared prefix (input = prefix + prompt).
"""

from servesim.workload import arrivals, distributions
from servesim.workload.prompts import PromptBatch, PromptModel, Prompts, SharedPrefixPrompts
from servesim.workload.sources import ClosedLoopListSource, ClosedLoopSource, ListSource, OpenLoopSource, check_sorted
from servesim.workload.spec import (
    PRESETS,
    WorkloadSpec,
    build_prompts,
    build_source,
    load_workload,
    load_workload_yaml,
    parse_workload,
    preset,
    workload_from_flags,
)
from servesim.workload.traces import Trace, read_csv_trace, read_inference_perf_replay, read_jsonl_trace, read_trace

__all__ = [
    "PRESETS",
    "ClosedLoopListSource",
    "ClosedLoopSource",
    "ListSource",
    "OpenLoopSource",
    "PromptBatch",
    "PromptModel",
    "Prompts",
    "SharedPrefixPrompts",
    "Trace",
    "WorkloadSpec",
    "arrivals",
    "build_prompts",
    "build_source",
    "check_sorted",
    "distributions",
    "load_workload",
    "load_workload_yaml",
    "parse_workload",
    "preset",
    "read_csv_trace",
    "read_inference_perf_replay",
    "read_jsonl_trace",
    "read_trace",
    "workload_from_flags",
]
