"""inference-perf native outputs: `per_request_lifecycle_metrics.json` (+ its `config.yaml` load stages), into
an ImportedRun.

Schema read from kubernetes-sigs/inference-perf inference_perf/reportgen/base.py (the report file
"per_request_lifecycle_metrics": a list of {start_time, end_time, request, response, info, error}, with info =
InferenceInfo {input_tokens, output_tokens, output_token_times}) and its config (load.type constant|poisson,
load.stages [{rate, duration}], load.sweep). Times are the client's time.perf_counter() seconds.
"""

from __future__ import annotations

import bisect
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from servesim.config.yamlfile import YamlProblem, parse_yaml_bytes
from servesim.errors import WorkloadError
from servesim.workload.formats._common import ImportedRequest, ImportedRun, parse_model, read_json


class InferenceInfo(BaseModel):
    """inference-perf InferenceInfo: token counts and the client time of every streamed chunk."""

    model_config = ConfigDict(extra="allow")

    input_tokens: int = Field(0, ge=0)
    output_tokens: int = Field(0, ge=0)
    output_token_times: list[float] = Field(default_factory=list)


class LifecycleRecord(BaseModel):
    """One entry of per_request_lifecycle_metrics.json."""

    model_config = ConfigDict(extra="allow")

    start_time: float
    end_time: float
    request: Any = None
    response: Any = None
    info: InferenceInfo | None = None
    error: Any = None


class LifecycleFile(BaseModel):
    """The whole per-request file: a JSON list of records."""

    records: list[LifecycleRecord] = Field(min_length=1)


class LoadStage(BaseModel):
    """inference-perf config load.stages[i]: rate (req/s) for duration (s)."""

    model_config = ConfigDict(extra="allow")

    rate: float = Field(gt=0)
    duration: float = Field(gt=0)


class LoadConfig(BaseModel):
    """inference-perf config `load:` section (the keys servesim reads)."""

    model_config = ConfigDict(extra="allow")

    type: Literal["constant", "poisson", "concurrent"] = "constant"
    stages: list[LoadStage] = Field(default_factory=list)
    sweep: Any = None


class InferencePerfConfig(BaseModel):
    """inference-perf config.yaml (only `load` is read)."""

    model_config = ConfigDict(extra="allow")

    load: LoadConfig | None = None


def read_config(path: Path) -> InferencePerfConfig:
    """An inference-perf config.yaml, validated."""
    try:
        data = parse_yaml_bytes(path.read_bytes())
    except OSError as exc:
        raise WorkloadError(f"{path}: cannot read ({exc.__class__.__name__})") from None
    except YamlProblem as exc:
        raise WorkloadError(f"{path}: {exc}") from None
    return parse_model(InferencePerfConfig, data or {}, path, "inference-perf config")


def read_inference_perf_lifecycle(path: str | Path, *, config: str | Path | None = None) -> ImportedRun:
    """Requests of an inference-perf per-request lifecycle file; stages from config.yaml (default: beside the file)."""
    p = Path(path)
    doc = read_json(p)
    parsed = parse_model(LifecycleFile, {"records": doc}, p, "inference-perf")
    cfg_path = Path(config) if config is not None else p.with_name("config.yaml")
    stages: list[LoadStage] = []
    notes: list[str] = []
    if cfg_path.is_file():
        cfg = read_config(cfg_path)
        if cfg.load is not None:
            stages = cfg.load.stages
            if cfg.load.sweep:
                notes.append(f"{cfg_path}: load.sweep stages are tagged by send time like fixed stages")
    elif config is not None:
        raise WorkloadError(f"{cfg_path}: inference-perf config not found")
    recs = sorted(parsed.records, key=lambda r: r.start_time)
    t0 = recs[0].start_time
    # Stages run back to back: a request belongs to the stage whose [start, start + duration) holds its send time.
    ends, acc = [], 0.0
    for s in stages:
        acc += s.duration
        ends.append(acc)
    out = []
    for r in recs:
        info = r.info or InferenceInfo()
        ok = r.error is None and info.output_tokens > 0
        ttft = (info.output_token_times[0] - r.start_time) * 1e3 if ok and info.output_token_times else None
        e2e = (r.end_time - r.start_time) * 1e3 if ok else None
        stage = min(bisect.bisect_right(ends, r.start_time - t0), len(ends) - 1) if ends else 0
        out.append(ImportedRequest(r.start_time - t0, info.input_tokens, info.output_tokens, ok, ttft, e2e, stage))
    names = tuple(f"stage{i}" for i in range(len(stages))) if stages else ("all",)
    return ImportedRun(str(p), "inference-perf", tuple(out), stage_names=names, notes=tuple(notes))


def is_inference_perf_lifecycle(doc: Any) -> bool:
    """True when a parsed JSON document looks like inference-perf per-request lifecycle metrics."""
    return isinstance(doc, list) and bool(doc) and isinstance(doc[0], dict) and "start_time" in doc[0] and "info" in doc[0]
