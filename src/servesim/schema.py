"""Pydantic models of the JSON files servesim writes, and their JSON Schemas (docs/schema/*.json).

The models describe what the writers produce (their keys are not changed here); tests/api/test_schema.py checks
real outputs against them and the committed schemas against the models. Regenerate after a change of layout:
    python -m servesim.schema docs/schema
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from servesim.config.outfile import SCHEMA_VERSION
from servesim.validation.compare import Row

__all__ = ["SCHEMAS", "json_schemas", "write_schemas"]


class _Doc(BaseModel):
    """A top-level servesim JSON object: its first key is schema_version."""

    model_config = ConfigDict(extra="forbid")
    schema_version: str = Field(SCHEMA_VERSION, description="MAJOR.MINOR of this layout (config/outfile.SCHEMA_VERSION)")


class Distribution(BaseModel):
    """A latency distribution in ms: mean and percentiles (metrics/summary.py)."""

    model_config = ConfigDict(extra="allow")  # more percentiles may be added
    mean: float | None = None
    p50: float | None = None
    p90: float | None = None
    p95: float | None = None
    p99: float | None = None


class Summary(BaseModel):
    """A run's summary: latency distributions (ms), counts, throughputs (per s), saturation and intervals."""

    model_config = ConfigDict(extra="allow")  # steady_state, rejected_by_reason, per-feature additions
    ttft_ms: Distribution
    itl_ms: Distribution
    tpot_ms: Distribution
    e2e_ms: Distribution
    queue_ms: Distribution
    completed: int
    rejected: int
    duration_s: float
    requests_per_s: float
    output_tokens_per_s: float
    total_tokens_per_s: float
    preemptions: int
    saturated: bool


class RequestOut(BaseModel):
    """One request of `run --output` (times in ms; None where the request did not complete)."""

    model_config = ConfigDict(extra="allow")
    id: int
    arrival_s: float
    input_tokens: int
    output_tokens: int
    ttft_ms: float | None
    e2e_ms: float | None
    rejected: bool


class RunOutput(_Doc):
    """`servesim run --output FILE` (--output-format servesim)."""

    model_config = ConfigDict(extra="allow")  # cluster runs add instances, router, pools, kv_transfer
    config: dict[str, Any]
    summary: Summary
    stages: dict[str, Any] | None = None
    requests: list[RequestOut] | None = None


class VllmBenchOutput(_Doc):
    """`servesim run --output FILE --output-format vllm-bench`: vllm bench serve's --save-result --save-detailed keys
    (aggregates in ms, ttfts/itls in s; metrics/vllm_bench.py)."""

    model_config = ConfigDict(extra="allow")  # mean/median/std/pNN of ttft, tpot, itl, e2el (ms)
    backend: str
    endpoint_type: str
    label: str | None
    model_id: str
    tokenizer_id: str
    num_prompts: int
    request_rate: float | str | None
    burstiness: float | None
    max_concurrency: int | None
    duration: float
    completed: int
    failed: int
    total_input_tokens: int
    total_output_tokens: int
    request_throughput: float
    request_goodput: float | None
    output_throughput: float
    total_token_throughput: float
    input_lens: list[int] | None = None
    output_lens: list[int] | None = None
    ttfts: list[float] | None = None
    itls: list[list[float]] | None = None
    errors: list[str] | None = None
    max_output_tokens_per_s: float
    max_concurrent_requests: int


class SweepLine(_Doc):
    """One line of a sweep's JSONL output (one point), grid order when the sweep has finished."""

    key: str
    index: int
    name: str | None
    params: dict[str, Any]
    config: dict[str, Any] | None = None
    summary: dict[str, Any] | None = None
    stages: dict[str, Any] | None = None
    cluster: dict[str, Any] | None = None
    error: str | None = None


class TimingLine(_Doc):
    """One line of OUTPUT_STEM.timings.jsonl: a point's wall-clock seconds (never in the answers)."""

    key: str
    index: int
    elapsed_s: float


class CapacityOutput(_Doc):
    """`servesim capacity --output FILE`."""

    slos: dict[str, float]
    search: dict[str, Any]
    workload: dict[str, Any]
    target_rate: float | None
    assumption: str
    results: list[dict[str, Any]]
    cluster: Any = None
    cluster_method: str | None = None


class ValidationOutput(_Doc):
    """`servesim validate --output FILE`: every comparison row (errors in %) and MAPE per metric."""

    model_config = ConfigDict(extra="allow")
    model: str
    rows: list[Row]
    mape: dict[str, float]


class CalibrationFile(_Doc):
    """A calibration file (`servesim calibrate --output`, data/calibration/default.json)."""

    theta: dict[str, float]
    frontend_latency_s: float = 0.0
    frontend_per_token_s: float = 0.0
    layers_over_tp: bool = False
    pad_cuda_graphs: bool = True
    name: str = "custom"
    fitted_on: list[str] = []
    notes: dict[str, Any] = {}
    intervals: dict[str, Any] | None = None
    envelope: dict[str, Any] | None = None


# File name in docs/schema/ -> model.
SCHEMAS: dict[str, type[BaseModel]] = {
    "run.json": RunOutput, "run-vllm-bench.json": VllmBenchOutput, "sweep-line.json": SweepLine,
    "sweep-timing-line.json": TimingLine, "capacity.json": CapacityOutput, "validation.json": ValidationOutput,
    "calibration.json": CalibrationFile,
}


def json_schemas() -> dict[str, str]:
    """Each schema file's text (sorted keys, 2-space indent, trailing newline), by file name."""
    return {name: json.dumps(model.model_json_schema(), indent=2, sort_keys=True) + "\n" for name, model in SCHEMAS.items()}


def write_schemas(folder: str | Path) -> list[Path]:
    """Write docs/schema/*.json (through config/outfile, atomically) and return their paths."""
    from servesim.config.outfile import write_text

    out = []
    for name, text in json_schemas().items():
        path = Path(folder) / name
        write_text(path, lambda fh, t=text: fh.write(t), "schema")
        out.append(path)
    return out


if __name__ == "__main__":  # python -m servesim.schema docs/schema
    for p in write_schemas(sys.argv[1] if len(sys.argv) > 1 else "docs/schema"):
        print(p)
