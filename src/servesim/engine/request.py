"""Plain request data crossing the engine's boundary: what clients send and what the engine records."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True, slots=True)
class RequestSpec:
    """What a client sends: arrival time (s), token counts, and which shared prefix the prompt starts with.

    Modelling assumption: prompts of one prefix_group share their first prefix_tokens tokens exactly
    (a longer prefix of the same group extends a shorter one); every other token is unique.
    """

    id: int
    arrival_s: float
    input_tokens: int
    output_tokens: int
    prefix_group: str | None = None
    prefix_tokens: int = 0
    client: int | None = None  # closed-loop client that sent it (None for open-loop arrivals)
    stage: int = 0  # load stage index (inference-perf stages, GuideLLM benchmarks)
    lora: str | None = None  # LoRA adapter name the request asks for (vLLM's `model` field); None = the base model


@dataclass(slots=True)
class RequestRecord:
    """What the engine observed for one request; times are simulation seconds (float)."""

    id: int
    arrival_s: float
    input_tokens: int
    output_tokens: int
    stage: int = 0
    cached_tokens: int = 0  # prompt tokens served from the prefix cache at (last) admission
    first_scheduled_s: float | None = None
    first_token_s: float | None = None
    finish_s: float | None = None
    preemptions: int = 0
    rejected: bool = False
    reject_reason: str = ""
    token_times_s: list[float] | None = field(default=None)  # time of every output token, when recorded


class RequestSource(Protocol):
    """Where the engine's requests come from (open-loop arrivals or closed-loop clients)."""

    def peek_arrival_s(self) -> float | None:
        """Arrival time (s) of the next request that exists now, or None if none is pending."""
        ...

    def pop(self) -> RequestSpec:
        """Remove and return the next request (the one peek_arrival_s() described)."""
        ...

    def on_finish(self, spec: RequestSpec, finish_s: float) -> None:
        """Told when a request completes or is rejected; closed-loop sources issue the client's next request."""
        ...
