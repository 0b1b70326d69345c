"""The trace-format table: format name -> reader returning a Trace, plus auto-detection from a file's content.

Other formats (mooncake, azure, burstgpt, vidur, sharegpt) are added to TRACE_FORMATS by their own modules.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from servesim.errors import WorkloadError
from servesim.workload.formats import read_inference_perf_lifecycle, read_vllm_bench
from servesim.workload.formats._common import ImportedRun
from servesim.workload.formats.guidellm import is_guidellm_report, read_guidellm_trace
from servesim.workload.formats.inference_perf import is_inference_perf_lifecycle
from servesim.workload.formats.vllm_bench import is_vllm_bench
from servesim.workload.traces import Trace, read_trace

Reader = Callable[..., Trace]


def _from_imported(run: ImportedRun) -> Trace:
    """An ImportedRun as a Trace (failed requests kept: they were offered load)."""
    return Trace(run.specs(), run.path, 0, run.notes, {"format": run.format, "mode": run.mode,
                                                          "concurrency": run.concurrency})


def _servesim(path: Path, **kw: Any) -> Trace:
    return read_trace(path, format="auto", **kw)


def _vllm_bench(path: Path, **kw: Any) -> Trace:
    return _from_imported(read_vllm_bench(path))


def _inference_perf(path: Path, **kw: Any) -> Trace:
    return _from_imported(read_inference_perf_lifecycle(path))


def _guidellm(path: Path, **kw: Any) -> Trace:
    return _from_imported(read_guidellm_trace(path))


TRACE_FORMATS: dict[str, Reader] = {
    "servesim": _servesim,  # servesim CSV/JSONL and inference-perf replay JSON (traces.py)
    "vllm-bench": _vllm_bench,
    "inference-perf": _inference_perf,
    "guidellm": _guidellm,
}
# Content tests for auto-detection of JSON files, in order.
JSON_DETECTORS: tuple[tuple[str, Callable[[Any], bool]], ...] = (
    ("vllm-bench", is_vllm_bench),
    ("inference-perf", is_inference_perf_lifecycle),
    ("guidellm", is_guidellm_report),
)


def detect_format(path: str | Path) -> str:
    """The format name of a trace file: JSON content sniffed against JSON_DETECTORS, everything else servesim."""
    p = Path(path)
    name = p.name.lower().removesuffix(".gz")
    if name.endswith((".yaml", ".yml")):
        return "guidellm"  # the only YAML trace format (GuideLLM benchmarks.yaml)
    if not name.endswith(".json"):
        return "servesim"
    try:
        raw = p.read_bytes()
        doc = json.loads(gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw)
    except (OSError, ValueError, EOFError):
        return "servesim"  # the servesim reader reports the unreadable file with its own one-line error
    return next((fmt for fmt, test in JSON_DETECTORS if test(doc)), "servesim")


def read_any_trace(path: str | Path, *, trace_format: str = "auto", **kw: Any) -> Trace:
    """Requests of a trace file in any format of TRACE_FORMATS ("auto" = detect_format)."""
    fmt = detect_format(path) if trace_format == "auto" else trace_format
    if fmt not in TRACE_FORMATS:
        raise WorkloadError(f"--trace-format {trace_format!r}: allowed auto, {', '.join(TRACE_FORMATS)}")
    return TRACE_FORMATS[fmt](Path(path), **kw)
