"""Readers of other formats: tools' native output files into ImportedRun (requests to replay plus the per-request
measurements the file holds), and trace formats (Mooncake, Azure, BurstGPT, Vidur, ShareGPT, user column maps) into
traces.Trace. The table of format names lives in workload/trace_formats.py. Pure workload-layer code."""

from servesim.workload.formats._common import ImportedRequest, ImportedRun
from servesim.workload.formats.inference_perf import read_inference_perf_lifecycle
from servesim.workload.formats.vllm_bench import read_vllm_bench
from servesim.workload.formats.vllm_log import VllmLogConfig, read_vllm_log

__all__ = ["ImportedRequest", "ImportedRun", "VllmLogConfig", "read_inference_perf_lifecycle", "read_vllm_bench",
           "read_vllm_log"]
