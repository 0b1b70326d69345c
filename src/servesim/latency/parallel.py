"""Pipeline and expert parallelism around a step-time model: stage layers, stage-to-stage transfers,
batches in flight, and the expert all-to-all.

Pipeline parallelism (vLLM V1, v1/engine/core.py step_with_batch_queue): the engine keeps up to PP batches
in flight, one per stage; a request is in at most one of them (the scheduler skips requests whose token is
still in flight). The simulator runs one step per scheduling round of all running requests; this module
makes that step last one *pipeline period*: the requests are split into k = min(PP, requests) micro-batches
(balanced by tokens — the best case; vLLM's groups form from arrival timing and can be uneven), and

    period = max(Σ_i stage(m_i),  max_i [PP · stage(m_i) + (PP − 1) · transfer(m_i)])

the first term the busiest stage processing every micro-batch once (throughput: one micro-batch per stage
time), the second one micro-batch's round trip through all stages (a request's token latency is the sum over
stages). stage(m) is the wrapped model's step time for m on the heaviest stage (its layers, the LM head
assumed there too) plus one transfer. docs/LATENCY.md, "Parallelism", has the sources and the limits.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from servesim.config.hardware import Hardware
from servesim.config.model import ModelSpec
from servesim.errors import ConfigError
from servesim.latency.plan import Component, StepPlan, StepTime

ACT_BYTES = 2.0  # activations move in the 16-bit model dtype (bf16/fp16)
P2P_LATENCY_S = 10e-6  # per stage-to-stage send/recv launch + sync (NCCL p2p, small messages; assumption)
ALL2ALL_LATENCY_S = 10e-6  # per all-gather / reduce-scatter launch + sync (NCCL, small messages; assumption)


def pp_layer_partition(num_layers: int, pp: int) -> tuple[int, ...]:
    """Layers per pipeline stage as vLLM's get_pp_indices splits them (the remainder goes to the stages
    before the last, which also runs the final norm and LM head; vllm/distributed/utils.py)."""
    if pp < 1 or pp > num_layers:
        raise ConfigError(f"--pipeline-parallel-size {pp}: must be between 1 and num_hidden_layers={num_layers}")
    parts = [num_layers // pp] * pp
    for i in range(2, num_layers % pp + 2):
        parts[-i] += 1
    return tuple(parts)


def link_bytes_per_s(hardware: Hardware) -> float:
    """GPU-to-GPU bandwidth in bytes/s: the preset's NVLink (or Infinity Fabric) figure, else PCIe."""
    return max(hardware.nvlink_gb_s or hardware.pcie_gb_s, 1e-9) * 1e9


def stage_transfer_bytes(tokens: int, hidden_size: int) -> float:
    """Bytes sent from one stage to the next for a micro-batch: hidden_states and residual, tokens × hidden
    each (vLLM IntermediateTensors of Llama-style models: make_empty_intermediate_tensors)."""
    return 2.0 * tokens * hidden_size * ACT_BYTES


def stage_transfer_s(tokens: int, hidden_size: int, hardware: Hardware) -> float:
    """Seconds of one stage-to-stage transfer of a micro-batch (p2p latency + bytes / link bandwidth)."""
    return P2P_LATENCY_S + stage_transfer_bytes(tokens, hidden_size) / link_bytes_per_s(hardware)


def ep_all2all_bytes(tokens: int, hidden_size: int, dp: int) -> float:
    """Bytes one rank receives per MoE layer for dispatch + combine with vLLM's default all2all backend
    (allgather_reducescatter): the other DP ranks' tokens × hidden, gathered in, reduce-scattered back.
    0 at DP = 1: vLLM uses no all-to-all then (FusedMoEParallelConfig.use_all2all_kernels = dp > 1 and
    use_ep); tokens are replicated over TP and the experts' partial outputs meet in the TP all-reduce.
    (DeepEP/pplx backends move tokens × top_k × hidden instead.)"""
    if dp <= 1:
        return 0.0
    return 2.0 * (dp - 1) * tokens * hidden_size * ACT_BYTES


def ep_all2all_s(tokens: int, model: ModelSpec, dp: int, hardware: Hardware) -> float:
    """Seconds of the expert dispatch + combine over all MoE layers of one step on one rank."""
    if dp <= 1 or not model.is_moe:
        return 0.0
    per_layer = 2 * ALL2ALL_LATENCY_S + ep_all2all_bytes(tokens, model.hidden_size, dp) / link_bytes_per_s(hardware)
    return model.num_moe_layers * per_layer


def stage_model_spec(model: ModelSpec, pp: int) -> ModelSpec:
    """The model one stage holds: the heaviest stage's layers (dense/MoE and sliding layers in proportion)."""
    parts = pp_layer_partition(model.num_layers, pp)
    s = max(parts)
    frac = s / model.num_layers
    return replace(model, num_layers=s, num_dense_layers=min(s, round(model.num_dense_layers * frac)),
                   num_sliding_layers=min(s, round(model.num_sliding_layers * frac)))


def split_plan(plan: StepPlan, k: int) -> list[StepPlan]:
    """The plan's requests in k micro-batches balanced by tokens (largest first into the lightest; ties to the
    lowest index), each keeping plan order."""
    items = [(n, 0, i) for i, n in enumerate(plan.prefill_new)] + [(1, 1, i) for i in range(len(plan.decode_ctx))]
    load = [0] * k
    groups: list[list[tuple[int, int, int]]] = [[] for _ in range(k)]
    for tok, kind, i in sorted(items, key=lambda x: (-x[0], x[1], x[2])):
        j = min(range(k), key=lambda g: (load[g], g))
        load[j] += tok
        groups[j].append((tok, kind, i))
    out = []
    for g in groups:
        pre = sorted(i for _, kind, i in g if kind == 0)
        dec = sorted(i for _, kind, i in g if kind == 1)
        out.append(StepPlan(tuple(plan.prefill_new[i] for i in pre), tuple(plan.prefill_ctx[i] for i in pre),
                            tuple(plan.decode_ctx[i] for i in dec)))
    return out


@dataclass
class ParallelModel:
    """A step-time model (built for one pipeline stage) with PP batches in flight and the EP all-to-all."""

    inner: Any  # the wrapped LatencyModel, built for stage_model_spec(model, pp)
    model: ModelSpec  # the whole model
    hardware: Hardware
    pp: int = 1
    expert_parallel: int = 1  # EP size (1 = off)
    dp: int = 1

    def __post_init__(self) -> None:
        self.name = self.inner.name
        self.partition = pp_layer_partition(self.model.num_layers, self.pp)
        self.calibration = getattr(self.inner, "calibration", None)

    def _comm(self, plan: StepPlan) -> tuple[float, float]:
        """(all-to-all seconds, stage transfer seconds) of a (micro-)batch."""
        t = plan.num_tokens
        a2a = ep_all2all_s(t, self.model, self.dp, self.hardware) * self._stage_frac if self.expert_parallel > 1 else 0.0
        xfer = stage_transfer_s(t, self.model.hidden_size, self.hardware) if self.pp > 1 else 0.0
        return a2a, xfer

    @property
    def _stage_frac(self) -> float:
        return max(self.partition) / self.model.num_layers

    def _period(self, plan: StepPlan) -> tuple[float, list[StepPlan], list[float], list[float]]:
        k = min(self.pp, plan.num_requests)
        parts = split_plan(plan, k) if self.pp > 1 else [plan]
        stage, xfers = [], []
        for m in parts:
            a2a, xfer = self._comm(m)
            stage.append(self.inner.step_time(m) + a2a + xfer)
            xfers.append(xfer)
        if self.pp == 1:
            return stage[0], parts, stage, xfers
        busiest = sum(stage)
        trip = max(self.pp * (s - x) + (self.pp - 1) * x for s, x in zip(stage, xfers))
        return max(busiest, trip), parts, stage, xfers

    def step_time(self, plan: StepPlan) -> float:
        """Seconds of one scheduling round: the pipeline period of its micro-batches (the step itself at PP = 1)."""
        if plan.num_requests == 0:
            return 0.0
        return self._period(plan)[0]

    def explain(self, plan: StepPlan) -> StepTime:
        """The first micro-batch's stage breakdown, the communication terms, and the rest of the period."""
        if plan.num_requests == 0:
            return StepTime(0.0, (), {"step": "empty"})
        seconds, parts, stage, xfers = self._period(plan)
        first = self.inner.explain(parts[0])
        pre = "stage." if self.pp > 1 else ""
        comps = [replace(c, name=pre + c.name) for c in first.components]
        t = parts[0].num_tokens
        if self.expert_parallel > 1:
            a2a, _ = self._comm(parts[0])
            comps.append(Component("ep_all2all", 0.0, ep_all2all_bytes(t, self.model.hidden_size, self.dp)
                                   * self.model.num_moe_layers * self._stage_frac, 0.0, a2a, a2a, "communication"))
        if self.pp > 1:
            comps.append(Component("pp_stage_transfer", 0.0, stage_transfer_bytes(t, self.model.hidden_size), 0.0,
                                   xfers[0], xfers[0], "communication"))
            comps.append(Component("pp_pipeline", time_s=seconds - stage[0], bound="pipeline"))
        notes = dict(first.notes)
        notes.update({"pipeline_parallel_size": self.pp, "pp_layers": ",".join(map(str, self.partition)),
                      "micro_batches": len(parts), "expert_parallel_size": self.expert_parallel})
        if self.expert_parallel > 1:
            notes["ep_all2all"] = ("allgather_reducescatter over DP ranks" if self.dp > 1 else
                                   "none at DP=1: experts' outputs combine in the TP all-reduce (vLLM use_all2all_kernels)")
        if self.pp > 1:
            notes["pp_period"] = "max(sum of stage times, one micro-batch's round trip)"
        return StepTime(seconds, tuple(comps), notes)
