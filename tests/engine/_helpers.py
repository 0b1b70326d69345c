"""Small fakes shared by the engine tests: latency models, request sources, configs."""

from __future__ import annotations

from collections import deque

from servesim.config.engine import EngineConfig
from servesim.engine.request import RequestSpec
from servesim.latency.plan import StepPlan, StepTime


class ConstLatency:
    """Every step takes `s` seconds; remembers every plan it saw."""

    name = "const"

    def __init__(self, s: float = 0.010) -> None:
        self.s = s
        self.plans: list[StepPlan] = []

    def step_time(self, plan: StepPlan) -> float:
        self.plans.append(plan)
        return self.s

    def explain(self, plan: StepPlan) -> StepTime:
        return StepTime(self.s)


class LinearLatency(ConstLatency):
    """base + per_token * tokens in the step (seconds)."""

    name = "linear"

    def __init__(self, base: float = 0.005, per_token: float = 1e-5) -> None:
        super().__init__(base)
        self.per_token = per_token

    def step_time(self, plan: StepPlan) -> float:
        self.plans.append(plan)
        return self.s + self.per_token * plan.num_tokens


class ListSource:
    """Open-loop source over a fixed list of specs (sorted by arrival)."""

    def __init__(self, specs: list[RequestSpec]) -> None:
        self.q = deque(sorted(specs, key=lambda s: (s.arrival_s, s.id)))
        self.finished: list[tuple[int, float]] = []

    def peek_arrival_s(self) -> float | None:
        return self.q[0].arrival_s if self.q else None

    def pop(self) -> RequestSpec:
        return self.q.popleft()

    def on_finish(self, spec: RequestSpec, finish_s: float) -> None:
        self.finished.append((spec.id, finish_s))


class ClosedLoopSource:
    """`clients` closed-loop clients, each sending `per_client` requests back to back (think time 0)."""

    def __init__(self, clients: int, per_client: int, input_tokens: int, output_tokens: int) -> None:
        self.left = {c: per_client for c in range(clients)}
        self.ready: deque[RequestSpec] = deque()
        self.next_id = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.lengths = (input_tokens, output_tokens)
        for c in range(clients):
            self._issue(c, 0.0)

    def _issue(self, client: int, t: float) -> None:
        if self.left[client] == 0:
            return
        self.left[client] -= 1
        self.ready.append(RequestSpec(self.next_id, t, *self.lengths, client=client))
        self.next_id += 1

    def peek_arrival_s(self) -> float | None:
        return self.ready[0].arrival_s if self.ready else None

    def pop(self) -> RequestSpec:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        return self.ready.popleft()

    def on_finish(self, spec: RequestSpec, finish_s: float) -> None:
        self.in_flight -= 1
        self._issue(spec.client, finish_s)


def engine(**kw) -> EngineConfig:
    """A resolved EngineConfig with small defaults, overridable by keyword."""
    # Hand-traced with synchronous scheduling (vLLM <= 0.13); async scheduling has its own tests.
    base = dict(max_num_seqs=256, max_num_batched_tokens=2048, max_model_len=8192, block_size=16, async_scheduling=False)
    base.update(kw)
    return EngineConfig(**base)


def spec(i: int, arrival: float, inp: int, out: int, group: str | None = None, prefix: int = 0) -> RequestSpec:
    return RequestSpec(id=i, arrival_s=arrival, input_tokens=inp, output_tokens=out, prefix_group=group, prefix_tokens=prefix)
