"""What one engine step computes (StepPlan), how long it takes (StepTime), and the model protocol."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True, slots=True)
class LoraStep:
    """LoRA work in one step: tokens of adapter requests, distinct adapters, and adapters loaded this step."""

    tokens: int = 0  # tokens computed this step by requests that use an adapter
    adapters: int = 0  # distinct adapters in the batch (each one's weights are read once)
    cpu_loads: int = 0  # adapters copied CPU -> GPU before the step (not GPU-resident)
    disk_loads: int = 0  # of those, adapters read from disk first (not in the CPU cache)


@dataclass(frozen=True, slots=True)
class StepPlan:
    """The content of one engine step, per request, in tokens.

    prefill_new[j]  new prompt tokens computed this step by prefilling request j (a chunk)
    prefill_ctx[j]  tokens already in request j's KV cache before the chunk (cached prefix + earlier chunks)
    decode_ctx[i]   tokens in decoding request i's context before this step's token (prompt + generated)
    lora            LoRA work of the step (engine/lora.py), None when LoRA is off
    """

    prefill_new: tuple[int, ...] = ()
    prefill_ctx: tuple[int, ...] = ()
    decode_ctx: tuple[int, ...] = ()
    lora: LoraStep | None = None

    @property
    def num_tokens(self) -> int:
        """Tokens computed in this step (prefill chunk tokens + one per decode)."""
        return sum(self.prefill_new) + len(self.decode_ctx)

    @property
    def num_requests(self) -> int:
        """Requests in this step."""
        return len(self.prefill_new) + len(self.decode_ctx)


@dataclass(frozen=True, slots=True)
class Component:
    """One named part of a step's time: FLOPs, bytes, and the time each would take (seconds)."""

    name: str
    flops: float = 0.0
    bytes: float = 0.0
    compute_s: float = 0.0
    memory_s: float = 0.0
    time_s: float = 0.0
    bound: str = ""  # "compute" | "memory" | "fixed"


@dataclass(frozen=True, slots=True)
class StepTime:
    """A step's duration in seconds, with the breakdown that explains it."""

    seconds: float
    components: tuple[Component, ...] = ()
    notes: dict[str, float | str] = field(default_factory=dict)


class LatencyModel(Protocol):
    """A step-time model: the engine calls step_time() once per step; explain() is for humans."""

    name: str

    def step_time(self, plan: StepPlan) -> float:
        """Seconds the engine spends on this step (GPU time plus any per-step overhead)."""
        ...

    def explain(self, plan: StepPlan) -> StepTime:
        """The same seconds as step_time(), with a per-component breakdown."""
        ...
