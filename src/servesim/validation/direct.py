"""`servesim validate FILE --model M --hardware H --tp N`: an Experiment from one result file, without a manifest."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from servesim.errors import GroundTruthError
from servesim.validation.measured import Experiment

VALIDATE_FORMATS = ("guidellm", "vllm-bench", "inference-perf")


def detect_result_format(path: Path) -> str:
    """The result format of a file from its content (GuideLLM: a 'benchmarks' list), or GroundTruthError."""
    from servesim.errors import WorkloadError
    from servesim.workload.trace_formats import detect_format

    try:
        fmt = detect_format(path)
    except WorkloadError:  # a suffix no trace format has: told below by content, or refused
        fmt = ""
    if fmt in VALIDATE_FORMATS:
        return fmt
    if path.name.lower().removesuffix(".gz").endswith((".yaml", ".yml")):
        from servesim.validation._io import read_yaml

        doc = read_yaml(path)
    else:
        try:
            doc = json.loads(path.read_bytes())
        except (OSError, ValueError):
            doc = None
    if isinstance(doc, dict) and isinstance(doc.get("benchmarks"), list):
        return "guidellm"
    raise GroundTruthError(f"{path}: not a recognised result file (formats: {', '.join(VALIDATE_FORMATS)}); "
                           "pass --trace-format, or an experiment folder with experiment.yaml")


def _groups_in_pool(model: str, eng: dict[str, Any]) -> int:
    """KV cache groups sharing the model's block pool under these engine args (1 unless vLLM's hybrid manager is on)."""
    from servesim.config import engine_config, load_model
    from servesim.simulation import engine_kv_layout

    keys = ("disable_hybrid_kv_cache_manager", "kv_offloading_size", "pipeline_parallel_size")
    _, groups = engine_kv_layout(engine_config(**{k: eng[k] for k in keys if k in eng}), load_model(model))
    return 1 if groups is None else groups.full_groups + groups.sliding_groups


def experiment_from_file(path: str | Path, *, model: str, hardware: str, tp: int, engine: dict[str, Any],
                         trace_format: str = "auto", vllm_log: str | Path | None = None, seed: int = 0) -> Experiment:
    """An Experiment for one result file: flags give what was served; --vllm-log fills engine args not given."""
    from servesim.validation.loaders.native import load_native

    p = Path(path)
    if not p.is_file():
        raise GroundTruthError(f"{p}: file not found")
    fmt = detect_result_format(p) if trace_format == "auto" else trace_format
    if fmt not in VALIDATE_FORMATS:
        raise GroundTruthError(f"--trace-format {trace_format!r}: validate reads {', '.join(VALIDATE_FORMATS)} (or auto)")
    eng = {k: v for k, v in engine.items() if v is not None}
    notes: dict[str, Any] = {}
    if vllm_log is not None:
        from servesim.workload.formats import read_vllm_log

        log = read_vllm_log(vllm_log)
        explicit_blocks = "num_gpu_blocks_override" in eng
        for k, v in log.engine.items():
            eng.setdefault(k, v)  # an explicit flag wins over the log
        log_notes = list(log.notes)
        if log.kv_cache_tokens is not None and not explicit_blocks:
            n = _groups_in_pool(model, eng)
            if n > 1:  # vLLM logged tokens = num_blocks // groups x block_size: the pool holds groups x as many blocks
                eng["num_gpu_blocks_override"] *= n
                log_notes.append(f"num_gpu_blocks x {n} KV cache groups (hybrid KV cache manager) = {eng['num_gpu_blocks_override']}")
        if log.tensor_parallel_size and log.tensor_parallel_size != tp:
            raise GroundTruthError(f"--tp {tp}: the vLLM log {vllm_log} says tensor_parallel_size={log.tensor_parallel_size}")
        notes = {"vllm_log": str(vllm_log), "vllm_version": log.version, "log_notes": log_notes}
    if "num_gpu_blocks_override" in eng:
        eng["num_gpu_blocks"] = eng.pop("num_gpu_blocks_override")  # Experiment.engine uses the manifest's name
    runs = load_native(p, fmt, seed=seed)
    for r in runs:
        r.notes.update(notes)
    return Experiment(name=p.stem, model=model, hardware=hardware, tensor_parallel_size=tp, engine=eng, runs=runs,
                      root=p.parent, manifest={"ground_truth": {"format": fmt, "path": str(p)}})
