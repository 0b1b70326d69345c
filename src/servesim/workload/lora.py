"""LoRA adapter mixes: which adapter each request asks for (uniform over N names, or weights per name)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from servesim.engine.request import RequestSource, RequestSpec

MAX_ADAPTERS = 100_000  # distinct adapter names one workload may draw from
# Stream of the adapter draws, apart from the workload's own stream: turning a mix on leaves every length and arrival as it was.
_STREAM = 0x4C6F5241  # "LoRA"


class LoraMixSpec(BaseModel):
    """`lora:` in a workload YAML: `adapters: N` (uniform over lora-0 … lora-{N-1}) or `weights: {name: w, ...}`."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False, strict=True)

    adapters: int | None = Field(None, ge=1, le=MAX_ADAPTERS)
    weights: dict[str, float] | None = Field(None, min_length=1, max_length=MAX_ADAPTERS)

    @model_validator(mode="after")
    def _check(self) -> "LoraMixSpec":
        if (self.adapters is None) == (self.weights is None):
            raise ValueError("give exactly one of adapters (a count) or weights (name: weight)")
        for name, w in (self.weights or {}).items():
            if not name.strip():
                raise ValueError("weights: an adapter name is empty")
            if not w > 0:
                raise ValueError(f"weights: {name}={w!r}: must be > 0")
        return self

    def names_and_probs(self) -> tuple[list[str], np.ndarray]:
        """Adapter names and the probability of each."""
        if self.weights is None:
            n = int(self.adapters)  # type: ignore[arg-type]
            return [f"lora-{i}" for i in range(n)], np.full(n, 1.0 / n)
        names = list(self.weights)
        w = np.array([self.weights[k] for k in names], dtype=float)
        return names, w / w.sum()


class LoraMixSource:
    """Wraps a RequestSource: every request it yields asks for an adapter drawn from the mix (seeded, own stream)."""

    def __init__(self, inner: RequestSource, mix: LoraMixSpec, seed: int) -> None:
        self.inner = inner
        self.names, probs = mix.names_and_probs()
        self.cum = np.cumsum(probs)
        self.rng = np.random.default_rng([seed, _STREAM])

    def peek_arrival_s(self) -> float | None:
        """Arrival time (s) of the inner source's next request."""
        return self.inner.peek_arrival_s()

    def pop(self) -> RequestSpec:
        """The inner source's next request, with its adapter."""
        spec = self.inner.pop()
        i = min(int(np.searchsorted(self.cum, self.rng.random(), side="right")), len(self.names) - 1)
        return replace(spec, lora=self.names[i])

    def on_finish(self, spec: RequestSpec, finish_s: float) -> None:
        """Passed to the inner source (closed-loop clients send their next request)."""
        self.inner.on_finish(spec, finish_s)
