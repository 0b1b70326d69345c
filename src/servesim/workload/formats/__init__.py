"""Readers of other tools' native output files (one module per tool), into ImportedRun: requests to replay
plus the per-request measurements the file holds. Pure workload-layer code: no engine, no validation."""

from servesim.workload.formats._common import ImportedRequest, ImportedRun
from servesim.workload.formats.inference_perf import read_inference_perf_lifecycle
from servesim.workload.formats.vllm_bench import read_vllm_bench
from servesim.workload.formats.vllm_log import VllmLogConfig, read_vllm_log

__all__ = ["ImportedRequest", "ImportedRun", "VllmLogConfig", "read_inference_perf_lifecycle", "read_vllm_bench",
           "read_vllm_log"]
