"""LoRA cost of one step: the punica shrink/expand kernels of every wrapped layer, and adapter loads (docs/LATENCY.md, "LoRA")."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from servesim.config.hardware import Hardware
from servesim.config.model import ModelSpec
from servesim.errors import ConfigError
from servesim.latency.plan import Component, LoraStep, StepPlan, StepTime

# Adapter copies CPU -> GPU run at the preset's effective host-link bandwidth (Hardware.host_copy_bytes_per_s, shared
# with CPU KV offload); vLLM keeps CPU-cached adapters in pinned memory (vllm/lora/models.py, pin_memory when available).
# Reading an adapter from disk into the CPU cache (safetensors load + pinning), GB/s. Assumption, not measured: a
# local NVMe SSD's sequential read (PCIe Gen4 x4 datasheets: ~7 GB/s) derated to 2 GB/s for parsing and copies.
DISK_LOAD_GB_S = 2.0


@dataclass(frozen=True, slots=True)
class LoraModule:
    """One LoRA-wrapped linear layer: input and output width, and how vLLM shards it over TP."""

    name: str
    fan_in: int
    fan_out: int
    row_parallel: bool  # True: input dim sharded (o_proj, down_proj), else output dim sharded (column parallel)


def lora_modules(model: ModelSpec) -> tuple[LoraModule, ...]:
    """The linear layers vLLM wraps with LoRA in one decoder layer (dense attention + MLP models)."""
    if model.is_moe or model.is_mla:
        raise ConfigError(f"--enable-lora: {model.name}: LoRA cost is modelled for dense-MLP, non-MLA models only "
                          "(MoE experts and MLA projections not modelled)")
    h, q, kv, f = model.hidden_size, model.q_size, model.kv_size, model.intermediate_size
    # Assumption: every adapter targets all seven projections vLLM's punica layers wrap for Llama-class models
    # (qkv_proj as q/k/v slices, o_proj, gate_up_proj as gate/up slices, down_proj: PEFT target_modules="all-linear").
    return (
        LoraModule("q_proj", h, q, False), LoraModule("k_proj", h, kv, False), LoraModule("v_proj", h, kv, False),
        LoraModule("o_proj", q, h, True),
        LoraModule("gate_proj", h, f, False), LoraModule("up_proj", h, f, False), LoraModule("down_proj", f, h, True),
    )


def _widths_per_gpu(m: LoraModule, tp: int) -> tuple[float, float]:
    # vLLM ColumnParallelLinearWithLoRA: lora_a (shrink, rank x in) replicated, lora_b (expand) sliced on the output;
    # RowParallelLinearWithLoRA: lora_a sliced on the input, lora_b (rank x out) whole (the partial sums are all-reduced
    # with the base layer's). (vllm/lora/layers; fully_sharded_loras not modelled.)
    if m.row_parallel:
        return m.fan_in / tp, float(m.fan_out)
    return float(m.fan_in), m.fan_out / tp


def adapter_bytes_per_gpu(model: ModelSpec, tp: int, rank: int, dtype_bytes: float | None = None) -> float:
    """Bytes of one adapter's A and B matrices held by one GPU, over all layers."""
    b = model.served_bytes if dtype_bytes is None else dtype_bytes  # vLLM lora_dtype "auto" = the model's dtype
    per_layer = sum(sum(_widths_per_gpu(m, tp)) for m in lora_modules(model))
    return rank * per_layer * b * model.num_layers


def lora_step_cost(model: ModelSpec, tp: int, rank: int, tokens: int, adapters: int) -> tuple[float, float]:
    """(FLOPs, bytes) per GPU of one step's shrink + expand kernels: 2·tokens·rank·(in+out) FLOPs per module per
    layer, and each active adapter's weights read once (rank·(in+out)·dtype bytes per module per layer)."""
    flops = 2.0 * tokens * rank * sum(sum(_widths_per_gpu(m, tp)) for m in lora_modules(model)) * model.num_layers
    # Assumption: the kernels' activation traffic (x read by the shrink, y updated by the expand) is not counted.
    return flops, adapters * adapter_bytes_per_gpu(model, tp, rank)


@dataclass
class LoraLatency:
    """A step-time model with LoRA's kernels and adapter loads added as their own components (`lora`, `lora_load`)."""

    inner: Any
    model: ModelSpec
    hardware: Hardware
    tp: int
    rank: int

    def __post_init__(self) -> None:
        self.name = getattr(self.inner, "name", "custom")
        self.calibration = getattr(self.inner, "calibration", None)
        self._adapter_bytes = adapter_bytes_per_gpu(self.model, self.tp, self.rank)
        self._file_bytes = adapter_bytes_per_gpu(self.model, 1, self.rank)  # the whole adapter, as each rank reads it
        self._per_token = lora_step_cost(self.model, self.tp, self.rank, 1, 0)[0]  # FLOPs per token
        # Assumption: the shrink/expand kernels run at the dense BF16 peak or the sustained HBM bandwidth,
        # whichever binds (no measured punica efficiency table; an optimistic bound).
        self._peak = self.hardware.bf16_flops
        self._bw = self.hardware.hbm_bytes_per_s * self.hardware.bw_efficiency
        self._host = self.hardware.host_copy_bytes_per_s()
        self._disk = DISK_LOAD_GB_S * 1e9

    def __getattr__(self, item: str) -> Any:
        if item == "inner":
            raise AttributeError(item)
        return getattr(self.inner, item)

    def _parts(self, ls: LoraStep | None) -> tuple[Component, Component]:
        if ls is None:
            return Component("lora", bound="memory"), Component("lora_load", bound="fixed")
        flops = self._per_token * ls.tokens
        nbytes = self._adapter_bytes * ls.adapters
        cs, ms = flops / self._peak, nbytes / self._bw
        kern = Component("lora", flops, nbytes, cs, ms, max(cs, ms), "compute" if cs > ms else "memory")
        # vLLM activates adapters (set_active_adapters) before the forward pass, synchronously: the load is on the
        # step's critical path. Each TP rank reads the whole adapter file (vLLM LoRAModel.from_local_checkpoint) and
        # copies its own shard over its own link, all ranks at the same time.
        lb = self._adapter_bytes * ls.cpu_loads
        load_s = lb / self._host + self._file_bytes * ls.disk_loads / self._disk
        return kern, Component("lora_load", 0.0, lb, 0.0, load_s, load_s, "fixed")

    def step_time(self, plan: StepPlan) -> float:
        """Seconds of the step: the inner model's plus LoRA's kernels and loads."""
        ls = plan.lora
        base = self.inner.step_time(replace(plan, lora=None) if ls is not None else plan)
        if ls is None or not (ls.tokens or ls.cpu_loads):
            return base
        kern, load = self._parts(ls)
        return base + kern.time_s + load.time_s

    def explain(self, plan: StepPlan) -> StepTime:
        """The inner breakdown with the `lora` and `lora_load` components appended (seconds)."""
        ls = plan.lora
        st = self.inner.explain(replace(plan, lora=None) if ls is not None else plan)
        kern, load = self._parts(ls)
        notes = dict(st.notes)
        notes["lora_rank"] = self.rank
        return StepTime(st.seconds + kern.time_s + load.time_s, (*st.components, kern, load), notes)


def with_lora(lm: Any, model: ModelSpec, hardware: Hardware, tp: int, engine: Any) -> Any:
    """lm wrapped in LoraLatency when engine.enable_lora, else lm unchanged."""
    if not getattr(engine, "enable_lora", False):
        return lm
    if engine.pipeline_parallel_size > 1:
        raise ConfigError("--enable-lora with --pipeline-parallel-size > 1: not modelled (give -pp 1)")
    lora_modules(model)  # refuses MoE / MLA models
    return LoraLatency(lm, model, hardware, tp, engine.max_lora_rank)
