"""The table of trace formats `--trace-format` names: format name -> reader, plus auto-detection from the file.

Every reader takes (path, TraceOptions) and returns a traces.Trace; `.gz` files work everywhere
(config/compressed.py). To add a format, add a reader and a FORMATS row (and a DETECT row if it can be sniffed).
"""

from __future__ import annotations

import gzip
import json
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from servesim.config.compressed import strip_gz
from servesim.errors import WorkloadError
from servesim.workload.formats._common import ImportedRun
from servesim.workload.formats.columns import ColumnMap, read_mapped
from servesim.workload.formats.guidellm import is_guidellm_report, read_guidellm_trace
from servesim.workload.formats.inference_perf import is_inference_perf_lifecycle, read_inference_perf_lifecycle
from servesim.workload.formats.mooncake import read_mooncake
from servesim.workload.formats.sharegpt import read_sharegpt
from servesim.workload.formats.vllm_bench import is_vllm_bench, read_vllm_bench
from servesim.workload.traces import Trace, _read_text, read_trace

__all__ = ["FORMATS", "FORMAT_NAMES", "TraceOptions", "UNTIMED", "detect_format", "read_trace_file"]


@dataclass(frozen=True, slots=True)
class TraceOptions:
    """How to read a trace: ordering, failed rows, stage tags, a user column map, a tokenizer for text formats."""

    sort: bool = False
    errors: str = "skip"  # rows the format marks failed: skip | impute | raise
    stage_durations_s: Sequence[float] | None = None
    columns: ColumnMap | None = None  # --trace-columns: any CSV/JSONL
    tokenizer: str | None = None  # local tokenizer.json for text formats (ShareGPT)


# Column maps of the CSV formats, with their sources:
# Azure LLM inference traces (Azure/AzurePublicDataset AzureLLMInferenceTrace_{code,conv}.csv):
#   TIMESTAMP = date-time string of the request, ContextTokens = prompt tokens, GeneratedTokens = output tokens.
AZURE = ColumnMap("TIMESTAMP", "ContextTokens", "GeneratedTokens", "iso")
# BurstGPT (HPMLL/BurstGPT README): Timestamp = seconds from the trace start, Request/Response tokens;
#   Response tokens 0 marks a failed request (kept in BurstGPT_{1,2}.csv, removed in the *_without_fails files).
BURSTGPT = ColumnMap("Timestamp", "Request tokens", "Response tokens", "s", zero_output_is_failure=True)
# Vidur trace CSVs (microsoft/vidur TraceReplayRequestGenerator): arrived_at (s), num_prefill_tokens, num_decode_tokens.
#   Vidur's own scale factors and its clamp to max_tokens are not applied: an over-long request is rejected as vLLM does.
VIDUR = ColumnMap("arrived_at", "num_prefill_tokens", "num_decode_tokens", "s")

Reader = Callable[[Path, TraceOptions], Trace]


def _servesim(path: Path, o: TraceOptions) -> Trace:
    return read_trace(path, sort=o.sort, errors=o.errors, stage_durations_s=o.stage_durations_s)  # type: ignore[arg-type]


def _columns(cmap: ColumnMap, name: str) -> Reader:
    return lambda path, o: read_mapped(path, cmap, sort=o.sort, errors=o.errors, fmt=name)


def _imported(read: Callable[[Path], ImportedRun]) -> Reader:
    """A reader of another tool's result file (workload/formats/), as a Trace; failed requests kept: they were load."""
    def reader(path: Path, o: TraceOptions) -> Trace:
        run = read(path)
        return Trace(run.specs(), run.path, 0, run.notes, {"format": run.format, "mode": run.mode, "concurrency": run.concurrency})
    return reader


FORMATS: dict[str, Reader] = {
    "servesim": _servesim,  # servesim CSV/JSONL (arrival_time_s,...) and inference-perf replay JSON
    "mooncake": lambda path, o: read_mooncake(path, sort=o.sort),
    "azure": _columns(AZURE, "azure"),
    "burstgpt": _columns(BURSTGPT, "burstgpt"),
    "vidur": _columns(VIDUR, "vidur"),
    "sharegpt": lambda path, o: read_sharegpt(path, tokenizer=o.tokenizer),
    "vllm-bench": _imported(read_vllm_bench),  # vllm bench serve --save-result [--save-detailed]
    "inference-perf": _imported(read_inference_perf_lifecycle),  # per_request_lifecycle_metrics.json
    "guidellm": _imported(read_guidellm_trace),  # benchmarks.json / .yaml
}
FORMAT_NAMES = ("auto", *FORMATS)
UNTIMED = frozenset({"sharegpt"})  # formats without arrival times: arrivals come from the workload's arrival process

# Auto-detection: CSV header columns that identify a format (all must be present), first match wins.
DETECT_CSV: tuple[tuple[str, frozenset[str]], ...] = (
    ("azure", frozenset({AZURE.arrival, AZURE.input, AZURE.output})),
    ("burstgpt", frozenset({BURSTGPT.arrival, BURSTGPT.input, BURSTGPT.output})),
    ("vidur", frozenset({VIDUR.arrival, VIDUR.input, VIDUR.output})),
)
# JSON result files of other tools, told apart by content, in order.
DETECT_JSON: tuple[tuple[str, Callable[[Any], bool]], ...] = (
    ("vllm-bench", is_vllm_bench),
    ("inference-perf", is_inference_perf_lifecycle),
    ("guidellm", is_guidellm_report),
)
DETECT_JSONL: tuple[tuple[str, frozenset[str]], ...] = (("mooncake", frozenset({"timestamp", "input_length", "output_length"})),)


def _head_line(p: Path) -> str:
    """The first non-blank line of a (possibly gzipped) text trace, read without loading the rest of the file."""
    try:
        with p.open("rb") as raw:
            gz = raw.read(2) == b"\x1f\x8b"
        with (gzip.open(p, "rt", encoding="utf-8-sig") if gz else p.open(encoding="utf-8-sig")) as fh:
            return next((line for line in fh if line.strip()), "")
    except (OSError, EOFError, UnicodeDecodeError, zlib.error):
        # The whole-file reader names the problem (missing, folder, not UTF-8, corrupt gzip) in one line.
        text = _read_text(p)
        return next((line for line in text.splitlines() if line.strip()), "")


def detect_format(path: str | Path) -> str:
    """The format of a trace file from its name and first line: a DETECT row's columns, else servesim/sharegpt."""
    p = Path(path)
    suffix = strip_gz(p).suffix.lower()
    if suffix == ".csv":
        header = {h.strip() for h in _head_line(p).split(",")}
        return next((name for name, cols in DETECT_CSV if cols <= header), "servesim")
    if suffix in (".jsonl", ".ndjson"):
        first = _head_line(p)
        try:
            keys = set(json.loads(first)) if first.strip().startswith("{") else set()
        except json.JSONDecodeError:
            keys = set()
        return next((name for name, cols in DETECT_JSONL if cols <= keys), "servesim")
    if suffix in (".yaml", ".yml"):
        return "guidellm"  # the only YAML trace format (GuideLLM benchmarks.yaml)
    if suffix == ".json":
        try:
            doc = json.loads(_read_text(p))
        except ValueError:
            return "servesim"  # the servesim reader reports the unreadable file with its own one-line error
        found = next((name for name, test in DETECT_JSON if test(doc)), None)
        return found or ("sharegpt" if isinstance(doc, list) else "servesim")
    raise WorkloadError(f"{p}: cannot tell the trace format from suffix {suffix!r}; "
                        f"name it with --trace-format ({', '.join(FORMATS)}) or map columns with --trace-columns")


def read_trace_file(path: str | Path, format: str = "auto", options: TraceOptions = TraceOptions()) -> Trace:  # noqa: A002
    """Requests from a trace in the named format ("auto": detected; a column map reads any CSV/JSONL)."""
    p = Path(path)
    if options.columns is not None:
        if format not in ("auto", "columns"):
            raise WorkloadError(f"--trace-columns cannot be combined with --trace-format {format} (that format names its own columns)")
        return read_mapped(p, options.columns, sort=options.sort, errors=options.errors, fmt="columns")
    if format not in FORMATS and format != "auto":
        raise WorkloadError(f"--trace-format {format!r}: must be one of {', '.join(FORMAT_NAMES)}")
    name = detect_format(p) if format == "auto" else format
    trace = FORMATS[name](p, options)
    return trace
