"""The public Python API: what the CLI calls, with units in names and docstrings."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from servesim.config import Hardware, ModelSpec, load_hardware, load_model
from servesim.latency import StepPlan, StepTime
from servesim.latency.factory import build_latency_model

from servesim.simulation import DEFAULT_LATENCY_MODEL, DEFAULT_OVERHEAD, RunResult, simulate

__all__ = ["RunResult", "resolve_hardware", "resolve_model", "simulate", "step_time"]


def resolve_model(model: str | Path | ModelSpec, *, dtype: str = "auto", quantization: str | None = None,
                  kv_cache_dtype: str = "auto") -> ModelSpec:
    """A ModelSpec from a bundled name, HF id, path (served with vLLM's --dtype/--quantization/--kv-cache-dtype),
    or an existing spec."""
    if isinstance(model, ModelSpec):
        return model
    return load_model(model, dtype=dtype, quantization=quantization, kv_cache_dtype=kv_cache_dtype)


def resolve_hardware(hardware: str | Path | Hardware = "H100", hardware_config: str | Path | None = None) -> Hardware:
    """Hardware from a preset name, a JSON file (servesim or BLIS layout), or an existing object."""
    return hardware if isinstance(hardware, Hardware) else load_hardware(str(hardware), hardware_config)


def step_time(
    model: str | Path | ModelSpec = "llama-2-7b-hf",
    hardware: str | Path | Hardware = "H100",
    tp: int = 1,
    *,
    prefill: Iterable[tuple[int, int] | int] = (),
    decode: Iterable[int] = (),
    overhead: str = DEFAULT_OVERHEAD,
    latency_model: str = DEFAULT_LATENCY_MODEL,
    hardware_config: str | Path | None = None,
    calibration: str | Path | None = None,
    async_scheduling: bool = True,
    dtype: str = "auto",
    quantization: str | None = None,
    kv_cache_dtype: str = "auto",
) -> StepTime:
    """Time of one engine step (StepTime.seconds) with its breakdown.

    prefill: (new_tokens, context_tokens_before) per prefilling request, or just new_tokens;
    decode: context length (tokens) per decoding request.
    """
    spec = resolve_model(model, dtype=dtype, quantization=quantization, kv_cache_dtype=kv_cache_dtype)
    hw = resolve_hardware(hardware, hardware_config)
    chunks = [(p, 0) if isinstance(p, int) else (int(p[0]), int(p[1])) for p in prefill]
    plan = StepPlan(
        prefill_new=tuple(n for n, _ in chunks),
        prefill_ctx=tuple(c for _, c in chunks),
        decode_ctx=tuple(int(c) for c in decode),
    )
    lm, _ = build_latency_model(latency_model, spec, hw, tp, overhead, calibration, async_scheduling=async_scheduling)
    return lm.explain(plan)
