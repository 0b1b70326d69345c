"""`servesim step`: the time of one engine step and why."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Optional

import typer

from servesim.cli.common import DtypeOpt, EpOpt, HardwareConfigOpt, HardwareOpt, KvCacheDtypeOpt, LatencyModelOpt, ModelOpt, OverheadOpt, PpOpt, QuantizationOpt, TpOpt
from servesim.errors import ConfigError

DEFAULT_PREFILL = ["512"]
DEFAULT_DECODE = ["16x1024"]

# What each breakdown component is, in words (the JSON keeps the identifier as `component`, this as `label`).
COMPONENT_LABELS = {
    # calibrated: one term of θ·φ each (latency/calibrated.py FEATURES)
    "gemm_memory_s": "GEMMs, memory-bound (weights read)",
    "gemm_compute_s": "GEMMs, compute-bound",
    "attention_prefill_s": "attention, prefill chunks",
    "attention_decode_s": "attention, decodes (KV cache read)",
    "activations_s": "activations (norms, residuals, RoPE, SiLU)",
    "allreduce_bytes_s": "TP all-reduce, bytes on the link",
    "allreduce_ops": "TP all-reduce, per-call latency",
    "layers": "per-layer kernel launches and gaps",
    "step": "CPU, per step",
    "requests": "CPU, per request",
    "prefill_step": "CPU, extra for a prefill step",
    # roofline-v2 (the seed's; latency/roofline.py)
    "prefill.gemm": "prefill GEMMs",
    "prefill.attention": "prefill attention",
    "prefill.memory": "prefill memory traffic",
    "decode.gemm": "decode GEMMs",
    "decode.attention": "decode attention",
    "decode.memory": "decode memory traffic (weights + KV)",
    # roofline-v2-corrected
    "gemm": "GEMMs",
    "attention.prefill": "attention, prefill chunks",
    "attention.decode": "attention, decodes",
    "lm_head": "LM head",
    "tp_allreduce": "TP all-reduce",
    # any model
    "overhead": "CPU overhead",
    "ep_all2all": "EP all-to-all",
    "pp_stage_transfer": "PP activations to the next stage",
    "pp_pipeline": "PP: rest of the pipeline period",
    "lora": "LoRA shrink/expand kernels",
    "lora_load": "LoRA adapter loads (CPU to GPU)",
}
STAGE_PREFIX = "stage."  # latency/parallel.py: components of the first pipeline stage


def component_label(name: str) -> str:
    """The words for a breakdown component's identifier (the identifier itself when it has none)."""
    if name.startswith(STAGE_PREFIX):
        return "stage 1: " + component_label(name[len(STAGE_PREFIX):])
    return COMPONENT_LABELS.get(name, name)


def parse_prefill(text: str) -> tuple[int, int]:
    """'LEN' or 'LEN@CTX' → (new tokens, context tokens before the chunk)."""
    m = re.fullmatch(r"\s*(\d+)\s*(?:@\s*(\d+))?\s*", text)
    if not m:  # values (LEN >= 1, within the model's context) are checked by api.check_step, as for the Python API
        raise ConfigError(f"--prefill {text!r}: expected LEN or LEN@CTX with LEN >= 1 and CTX >= 0 (e.g. 2048 or 512@1024)")
    return int(m.group(1)), int(m.group(2) or 0)


def parse_decode(text: str) -> list[int]:
    """'NxCTX' or 'CTX' → N copies of the context length."""
    from servesim.api import MAX_STEP_REQUESTS

    m = re.fullmatch(r"\s*(?:(\d+)\s*[xX*]\s*)?(\d+)\s*", text)
    if not m or (m.group(1) is not None and int(m.group(1)) < 1):  # CTX values: api.check_step
        raise ConfigError(f"--decode {text!r}: expected NxCTX or CTX with N >= 1 and CTX >= 1 (e.g. 16x1024)")
    if int(m.group(1) or 1) > MAX_STEP_REQUESTS:
        raise ConfigError(f"--decode: {int(m.group(1))} requests in one step; at most {MAX_STEP_REQUESTS}")
    return [int(m.group(2))] * int(m.group(1) or 1)


def register(app: typer.Typer) -> None:
    """Add the `step` command."""

    @app.command("step")
    def step(
        model: str = ModelOpt,
        hardware: str = HardwareOpt,
        hardware_config: Optional[Path] = HardwareConfigOpt,
        tp: int = TpOpt,
        dtype: str = DtypeOpt,
        quantization: Optional[str] = QuantizationOpt,
        kv_cache_dtype: str = KvCacheDtypeOpt,
        pp: int = PpOpt,
        enable_expert_parallel: bool = EpOpt,
        prefill: Optional[list[str]] = typer.Option(None, "--prefill", help="A prefill chunk LEN[@CTX]; repeat for more requests."),
        decode: Optional[list[str]] = typer.Option(None, "--decode", help="Decoding requests NxCTX; repeat for mixed contexts."),
        overhead: str = OverheadOpt,
        latency_model: str = LatencyModelOpt,
        json_out: bool = typer.Option(False, "--json", help="Print JSON with step_time_ms and breakdown."),
        calibration: Optional[str] = typer.Option(None, "--calibration", help="Calibration JSON for --latency-model calibrated."),
        no_async_scheduling: bool = typer.Option(False, "--no-async-scheduling", help="Calibrated model: add CPU time to GPU time instead of overlapping them (vLLM < 0.14)."),
        enable_lora: bool = typer.Option(False, "--enable-lora", help="Every request of the step uses a LoRA adapter (adds the lora component)."),
        max_lora_rank: int = typer.Option(16, "--max-lora-rank", help="LoRA rank (vLLM's allowed ranks), with --enable-lora."),
        lora_adapters: int = typer.Option(1, "--lora-adapters", help="Distinct adapters in the step (each one's weights read once), with --enable-lora."),
    ) -> None:
        """Time one engine step and explain it (default: Llama-2-7B, H100, a 512-token prefill next to 16 decodes at 1024)."""
        from servesim.api import check_step, resolve_hardware, resolve_model
        from servesim.latency.factory import build_latency_model
        from servesim.latency.transfer import provenance as kernel_provenance

        if prefill is None and decode is None:
            prefill, decode = DEFAULT_PREFILL, DEFAULT_DECODE
        chunks = [parse_prefill(p) for p in prefill or []]
        ctxs = [c for d in decode or [] for c in parse_decode(d)]
        spec = resolve_model(model, dtype=dtype, quantization=quantization, kv_cache_dtype=kv_cache_dtype)
        hw = resolve_hardware(hardware, hardware_config)
        from servesim.api import _parallel_kwargs

        plan = check_step(spec, chunks, ctxs)
        lm, _ = build_latency_model(latency_model, spec, hw, tp, overhead, calibration,
                                    async_scheduling=not no_async_scheduling, **_parallel_kwargs(spec, pp, enable_expert_parallel))
        if enable_lora or max_lora_rank != 16 or lora_adapters != 1:
            plan, lm = _with_lora(plan, lm, spec, hw, tp, pp, enable_lora, max_lora_rank, lora_adapters)
        result = lm.explain(plan)
        payload = {
            "model": spec.name,
            "hardware": hw.name,
            "kernel_efficiency": kernel_provenance(hw),
            "model_format": {"dtype": spec.dtype, "quantization": spec.quant_method or None, "kv_cache_dtype": spec.kv_cache_dtype,
                             "weight_bytes": spec.weight_bytes},
            "tp": tp,
            "pipeline_parallel_size": pp,
            "enable_expert_parallel": enable_expert_parallel,
            "latency_model": lm.name,
            "overhead": overhead,
            "plan": {"prefill": [{"new_tokens": n, "context_tokens": c} for n, c in chunks], "decode_context_tokens": list(ctxs)},
            "step_time_ms": result.seconds * 1e3,
            "breakdown": [
                {
                    "component": c.name,
                    "label": component_label(c.name),
                    "flops": c.flops,
                    "bytes": c.bytes,
                    "compute_ms": c.compute_s * 1e3,
                    "memory_ms": c.memory_s * 1e3,
                    "time_ms": c.time_s * 1e3,
                    "bound": c.bound,
                }
                for c in result.components
            ],
            "notes": {k: (v * 1e3 if k.endswith("_s") else v) for k, v in result.notes.items()},
        }
        payload["notes"] = {(k[:-2] + "_ms" if k.endswith("_s") else k): v for k, v in payload["notes"].items()}
        if json_out:
            from servesim.cli.common import echo_json

            echo_json(payload, indent=2)
            return
        _render(payload, spec, hw)


def _render(payload: dict, spec, hw) -> None:  # type: ignore[no-untyped-def]
    from rich.table import Table

    from servesim.cli.common import make_console

    console = make_console()
    plan = payload["plan"]
    desc = []
    if plan["prefill"]:
        desc.append("prefill " + ", ".join(f"{p['new_tokens']}@{p['context_tokens']}" for p in plan["prefill"]))
    if plan["decode_context_tokens"]:
        ctx = plan["decode_context_tokens"]
        desc.append(f"{len(ctx)} decode (ctx {min(ctx)}–{max(ctx)})" if min(ctx) != max(ctx) else f"{len(ctx)} decode x ctx {ctx[0]}")
    console.print(
        f"[bold]{spec.name}[/] on [bold]{hw.name}[/] TP{payload['tp']}{_parallel_tag(payload)} · {payload['latency_model']} · overhead {payload['overhead']}\n"
        f"weights {spec.weight_bytes / 1e9:.2f} GB ({' '.join(filter(None, (spec.dtype, spec.quant_method)))}) · "
        f"KV {spec.kv_bytes_per_token:,.0f} B/token (kv-cache-dtype {spec.kv_cache_dtype}) · step: {'; '.join(desc)}"
        f"\n{payload['kernel_efficiency']}"
    )
    table = Table(show_lines=False)
    for col in ("component", "GFLOP", "MB", "compute ms", "memory ms", "time ms", "bound"):
        table.add_column(col, justify="left" if col in ("component", "bound") else "right")
    for c in payload["breakdown"]:
        table.add_row(c["label"], f"{c['flops'] / 1e9:,.1f}", f"{c['bytes'] / 1e6:,.1f}", f"{c['compute_ms']:.3f}",
                      f"{c['memory_ms']:.3f}", f"{c['time_ms']:.3f}", c["bound"])
    console.print(table)
    console.print(f"[bold]step time: {payload['step_time_ms']:.3f} ms[/]  ({payload['notes'].get('step', '')} step)")


def _parallel_tag(payload: dict) -> str:
    """' PP2 EP' style suffix for the header (empty at PP 1 without expert parallelism)."""
    pp = payload["pipeline_parallel_size"]
    return (f" PP{pp}" if pp > 1 else "") + (" EP" if payload["enable_expert_parallel"] else "")


def _with_lora(plan, lm, spec, hw, tp: int, pp: int, enable: bool, rank: int, adapters: int):  # type: ignore[no-untyped-def]
    """The step with every request on one of `adapters` LoRA adapters (resident: no load), and the LoRA-wrapped model."""
    from dataclasses import replace

    from servesim.config.engine import EngineConfig
    from servesim.errors import ServesimError
    from servesim.latency.lora import with_lora
    from servesim.latency.plan import LoraStep

    if not enable:
        raise ServesimError("--max-lora-rank/--lora-adapters: need --enable-lora")
    if not 1 <= adapters <= max(1, plan.num_requests):
        raise ServesimError(f"--lora-adapters={adapters}: must be in [1, {max(1, plan.num_requests)}] (the step's requests)")
    eng = EngineConfig(enable_lora=True, max_lora_rank=rank, max_loras=adapters, pipeline_parallel_size=pp)
    return replace(plan, lora=LoraStep(plan.num_tokens, adapters, 0, 0)), with_lora(lm, spec, hw, tp, eng)
