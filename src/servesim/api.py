"""The public Python API: what the CLI calls, with units in names and docstrings."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from pathlib import Path

from servesim.config import Hardware, ModelSpec, load_hardware, load_model
from servesim.errors import ConfigError
from servesim.latency import StepPlan, StepTime
from servesim.latency.factory import build_latency_model

from servesim.errors import ConfigError
from servesim.simulation import DEFAULT_LATENCY_MODEL, DEFAULT_OVERHEAD, RunResult, check_hardware_arg, check_model_arg, check_tp, simulate

__all__ = ["MAX_STEP_REQUESTS", "RunResult", "check_step", "resolve_hardware", "resolve_model", "simulate", "step_time"]


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


# Most requests one step may hold: vLLM's max_num_seqs is 256-1024 by default; 2**16 leaves room for any setting.
MAX_STEP_REQUESTS = 65536


def _items(values: Any, flag: str) -> list[Any]:
    if isinstance(values, (str, bytes, int)) or not isinstance(values, Iterable):
        raise ConfigError(f"{flag} {values!r}: expected a list")
    out = list(values)
    if len(out) > MAX_STEP_REQUESTS:
        raise ConfigError(f"{flag}: {len(out)} requests in one step; at most {MAX_STEP_REQUESTS}")
    return out


def _int_tokens(value: Any, flag: str, what: str, lowest: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < lowest:
        raise ConfigError(f"{flag} {what}={value!r}: must be an integer >= {lowest} (tokens)")
    return int(value)


def _chunk(p: Any) -> tuple[int, int]:
    if isinstance(p, (tuple, list)) and len(p) == 2:
        return _int_tokens(p[0], "--prefill", "new_tokens", 1), _int_tokens(p[1], "--prefill", "context_tokens", 0)
    return _int_tokens(p, "--prefill", "new_tokens", 1), 0


def check_step(spec: ModelSpec, chunks: Sequence[tuple[int, int]], ctxs: Sequence[int]) -> StepPlan:
    """The StepPlan of (new, context) prefill chunks and decode contexts, each within the model's context (tokens)."""
    if len(chunks) + len(ctxs) > MAX_STEP_REQUESTS:
        raise ConfigError(f"--prefill/--decode: {len(chunks) + len(ctxs)} requests in one step; at most {MAX_STEP_REQUESTS}")
    limit = spec.max_position_embeddings  # no request may be longer than the model's context (vLLM max_model_len)
    for n, c in chunks:
        _int_tokens(n, "--prefill", "new_tokens", 1)
        _int_tokens(c, "--prefill", "context_tokens", 0)
        if n + c > limit:
            raise ConfigError(f"--prefill {n}@{c}: {n + c} tokens exceed {spec.name}'s context of {limit} (max_position_embeddings)")
    for c in ctxs:
        _int_tokens(c, "--decode", "context", 1)
        if c > limit:
            raise ConfigError(f"--decode context {c}: exceeds {spec.name}'s context of {limit} tokens (max_position_embeddings)")
    return StepPlan(prefill_new=tuple(n for n, _ in chunks), prefill_ctx=tuple(c for _, c in chunks), decode_ctx=tuple(ctxs))


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
    pp: int = 1,
    enable_expert_parallel: bool = False,
) -> StepTime:
    """Time of one engine step (StepTime.seconds) with its breakdown.

    prefill: (new_tokens, context_tokens_before) per prefilling request, or just new_tokens;
    decode: context length (tokens) per decoding request. pp / enable_expert_parallel: vLLM's
    --pipeline-parallel-size and --enable-expert-parallel (latency/parallel.py).
    """
    check_model_arg(model)
    check_hardware_arg(hardware, hardware_config)
    check_tp(tp)
    if not isinstance(async_scheduling, bool):
        raise ConfigError(f"async_scheduling={async_scheduling!r}: must be True or False")
    spec = resolve_model(model, dtype=dtype, quantization=quantization, kv_cache_dtype=kv_cache_dtype)
    hw = resolve_hardware(hardware, hardware_config)
    chunks = [_chunk(p) for p in _items(prefill, "--prefill")]
    ctxs = [_int_tokens(c, "--decode", "context", 1) for c in _items(decode, "--decode")]
    plan = check_step(spec, chunks, ctxs)
    lm, _ = build_latency_model(latency_model, spec, hw, tp, overhead, calibration, async_scheduling=async_scheduling,
                                **_parallel_kwargs(spec, pp, enable_expert_parallel))
    return lm.explain(plan)


def _parallel_kwargs(spec: ModelSpec, pp: int, enable_expert_parallel: bool) -> dict[str, object]:
    """build_latency_model's pp / EP arguments, checked as the engine checks them (none at PP 1 without EP)."""
    from servesim.latency.parallel import pp_layer_partition

    if isinstance(pp, bool) or not isinstance(pp, int):
        raise ConfigError(f"--pipeline-parallel-size {pp!r}: must be an integer >= 1")
    pp_layer_partition(spec.num_layers, pp)
    return {"pp": pp, "enable_expert_parallel": bool(enable_expert_parallel)} if pp > 1 or enable_expert_parallel else {}
