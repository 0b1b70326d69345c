"""Experiment manifests: `experiment.yaml` next to its data files.

```yaml
name: codellama-34b-tp2-codegen
model: codellama-34b-instruct-hf      # bundled name, HF id or path
hardware: H100                        # preset or path
tensor_parallel_size: 2
engine:                               # vLLM engine args under vLLM's names
  max_num_seqs: 128
  max_num_batched_tokens: 2048
  block_size: 16
  num_gpu_blocks: 26602
  enable_prefix_caching: true
  max_model_len: 4096
ground_truth:
  format: inference-perf-replay       # guidellm | inference-perf-replay | requests-csv | aggregate | stage-aggregates
  path: replay/xxx.json               # relative to experiment.yaml; format-specific keys allowed
notes: free text or mapping           # optional
source: free text or mapping          # optional
```
Unknown keys are refused (except under `ground_truth`, `notes` and `source`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from servesim.errors import GroundTruthError
from servesim.validation._io import fail, read_yaml, resolve_existing, short
from servesim.validation.measured import Experiment

FORMATS = ("guidellm", "inference-perf-replay", "requests-csv", "aggregate", "stage-aggregates")
MANIFEST_NAME = "experiment.yaml"


class EngineArgs(BaseModel):
    """vLLM engine arguments an experiment ran with (vLLM's names; omitted = unknown/vLLM default)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)  # `max_num_seqs: true` is not a number

    max_num_seqs: int | None = Field(None, ge=1)
    max_num_batched_tokens: int | None = Field(None, ge=1)
    block_size: int | None = Field(None, ge=1)
    num_gpu_blocks: int | None = Field(None, ge=1)  # vLLM --num-gpu-blocks-override / the logged KV block count
    enable_prefix_caching: bool | None = None
    enable_chunked_prefill: bool | None = None
    max_model_len: int | None = Field(None, ge=1)
    gpu_memory_utilization: float | None = Field(None, gt=0.0, le=1.0)
    long_prefill_token_threshold: int | None = Field(None, ge=0)
    async_scheduling: bool | None = None  # vLLM --async-scheduling (default on since vLLM 0.14)
    num_cpu_blocks: int | None = Field(None, ge=0)  # CPU KV-offload blocks as logged (recorded; kv_offloading_size is modelled)
    enable_lora: bool | None = None  # vLLM --enable-lora and its limits (docs/LATENCY.md "LoRA")
    max_loras: int | None = Field(None, ge=1)
    max_lora_rank: int | None = Field(None, ge=1)
    max_cpu_loras: int | None = Field(None, ge=1)
    kv_offloading_size: float | None = Field(None, ge=0.0)  # vLLM --kv-offloading-size, GiB over all ranks (0 = off)
    kv_offloading_backend: str | None = None  # vLLM --kv-offloading-backend: native | lmcache
    disable_hybrid_kv_cache_manager: bool | None = None  # vLLM --disable-hybrid-kv-cache-manager (sliding-window models)


class GroundTruthSpec(BaseModel):
    """Where the measurements are; keys beyond format/path are read by the format's loader."""

    model_config = ConfigDict(extra="allow", frozen=True)

    format: Literal["guidellm", "inference-perf-replay", "requests-csv", "aggregate", "stage-aggregates"]
    path: str = Field(min_length=1)


class Manifest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    model: str = Field(min_length=1)
    hardware: str = Field(min_length=1)
    tensor_parallel_size: int = Field(ge=1, strict=True)  # `true` is not a TP degree
    engine: EngineArgs
    ground_truth: GroundTruthSpec
    notes: Any = None
    source: Any = None


_ALLOWED_HINT = {
    "": "name, model, hardware, tensor_parallel_size, engine, ground_truth, notes, source",
    "engine": ", ".join(EngineArgs.model_fields),
    "ground_truth.format": " | ".join(FORMATS),
    "model": "a bundled model name, a Hugging Face id or a path to config.json",
    "hardware": "a hardware preset name or a path",
    "tensor_parallel_size": "an integer >= 1",
    "name": "a non-empty string",
    "ground_truth.path": "a path relative to experiment.yaml",
}


def _one_line(file: Path, exc: ValidationError) -> GroundTruthError:
    err = exc.errors()[0]
    loc = [str(p) for p in err.get("loc", ())]
    field = ".".join(loc)
    kind = err.get("type", "")
    if kind == "extra_forbidden":
        parent = ".".join(loc[:-1])
        where = f"{parent}." if parent else ""
        return fail(file, f"{where}{loc[-1]}", f"unknown key (allowed: {_ALLOWED_HINT.get(parent, '')})")
    if kind == "missing":
        hint = _ALLOWED_HINT.get(field)
        return fail(file, field, "missing required key" + (f" ({hint})" if hint else ""))
    if kind == "literal_error":
        return fail(file, field, f"={short(err.get('input'))}: not allowed (allowed: {_ALLOWED_HINT.get(field, '')})")
    hint = _ALLOWED_HINT.get(field)
    return fail(file, field, f"={short(err.get('input'))}: {err.get('msg')}" + (f" (allowed: {hint})" if hint else ""))


def manifest_file(path: str | Path) -> Path:
    """experiment.yaml for a folder, or the given yaml file itself."""
    p = Path(path)
    if p.is_dir():
        p = p / MANIFEST_NAME
    if not p.is_file():
        raise GroundTruthError(
            f"{p}: experiment manifest not found (give a folder holding {MANIFEST_NAME} or the file)")
    return p


def parse_manifest(file: Path) -> Manifest:
    """Validate experiment.yaml; every problem is a one-line GroundTruthError naming file and field."""
    raw = read_yaml(file)
    if not isinstance(raw, dict):
        raise fail(file, "", f"expected a mapping of manifest keys, got {type(raw).__name__}")
    for key in raw:
        if not isinstance(key, str):
            raise fail(file, short(key), "unknown key (keys must be strings)")
    if raw.get("engine") is None and "engine" in raw:
        raw = {**raw, "engine": {}}
    try:
        return Manifest.model_validate(raw)
    except ValidationError as exc:
        raise _one_line(file, exc) from None


def load_experiment(path: str | Path) -> Experiment:
    """Load an experiment folder (or its experiment.yaml): manifest + measured runs.

    Raises GroundTruthError (one line: file, field, value, what is allowed) on any problem.
    """
    from servesim.validation.loaders import LOADERS

    file = manifest_file(path)
    manifest = parse_manifest(file)
    root = file.parent
    gt = manifest.ground_truth
    data_path = resolve_existing(root / gt.path)
    if not data_path.is_file():
        raise fail(file, "ground_truth.path", f"={gt.path!r}: file not found ({root / gt.path})")
    spec = gt.model_dump()
    runs = LOADERS[gt.format](spec, data_path, file)
    if not runs:
        raise fail(data_path, "", "no runs found")
    engine = manifest.engine.model_dump(exclude_none=True)
    return Experiment(
        name=manifest.name,
        model=manifest.model,
        hardware=manifest.hardware,
        tensor_parallel_size=manifest.tensor_parallel_size,
        engine=engine,
        runs=list(runs),
        root=root,
        manifest=manifest.model_dump(),
    )
