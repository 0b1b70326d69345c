"""Arrival processes: open loop (constant, Poisson, gamma, staged rates) and closed loop (N clients).

Open-loop convention: within every stage the first request arrives exactly at the stage start and
the next ones follow the process's inter-arrival gaps; a stage's requests all arrive before its end.
A plain rate is one stage of infinite length; the source stops it by count or duration.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias

import numpy as np

from servesim.errors import WorkloadError

__all__ = [
    "ArrivalProcess",
    "ClosedLoop",
    "VllmBench",
    "OpenLoop",
    "Stage",
    "concurrency",
    "constant",
    "gamma",
    "poisson",
    "staged",
    "synchronous",
]

Process = Literal["constant", "poisson", "gamma"]


def _check_finite_positive(where: str, value: Any) -> float:
    """A finite float > 0, or a WorkloadError naming where."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise WorkloadError(f"{where}={value!r}: must be a number > 0")
    out = float(value)
    if not math.isfinite(out) or out <= 0:
        raise WorkloadError(f"{where}={value!r}: must be a finite number > 0")
    return out


@dataclass(frozen=True, slots=True)
class Stage:
    """A load stage: `rate` requests/s for `duration_s` seconds (inference-perf `load.stages`)."""

    rate: float
    duration_s: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "rate", _check_finite_positive("stage rate", self.rate))
        if self.duration_s != math.inf:
            object.__setattr__(self, "duration_s", _check_finite_positive("stage duration_s", self.duration_s))


def _constant_offsets(rng: np.random.Generator, rate: float, cv: float, k0: int, n: int, last: float) -> np.ndarray:
    """Offsets (s) from the stage start of requests k0..k0+n-1 at exactly 1/rate spacing: k/rate."""
    return (k0 + np.arange(n, dtype=np.float64)) / rate


def _renewal(gaps: Callable[[np.random.Generator, float, float, int], np.ndarray]):
    """Offsets (s) of a renewal process: cumulative gaps after `last`, the stage's first gap set to 0."""

    def offsets(rng: np.random.Generator, rate: float, cv: float, k0: int, n: int, last: float) -> np.ndarray:
        g = gaps(rng, rate, cv, n)
        if k0 == 0:
            g[0] = 0.0  # the stage's first request arrives at the stage start
        return last + np.cumsum(g)

    return offsets


# Inter-arrival gap samplers (s). Poisson: Exp(mean 1/rate). Gamma: shape 1/cv², scale cv²/rate, so
# mean 1/rate and coefficient of variation cv (cv = 1 is Poisson; BLIS `gamma` arrival).
_OFFSETS = {
    "constant": _constant_offsets,
    "poisson": _renewal(lambda rng, rate, cv, n: rng.exponential(1.0 / rate, n)),
    "gamma": _renewal(lambda rng, rate, cv, n: rng.gamma(1.0 / cv**2, cv**2 / rate, n)),
}


@dataclass(frozen=True, slots=True)
class OpenLoop:
    """Open-loop arrivals: `process` (constant | poisson | gamma) at each stage's rate, stage after stage."""

    process: Process
    stages: tuple[Stage, ...]
    cv: float = 1.0  # gamma burstiness (coefficient of variation of the gaps); 1 for the others

    def __post_init__(self) -> None:
        if self.process not in _OFFSETS:
            raise WorkloadError(f"arrival process={self.process!r}: must be one of {sorted(_OFFSETS)}")
        if not self.stages:
            raise WorkloadError("arrival stages=[]: needs at least one (rate, duration_s) stage")
        object.__setattr__(self, "stages", tuple(self.stages))
        object.__setattr__(self, "cv", _check_finite_positive("arrival cv", self.cv))

    @property
    def finite(self) -> bool:
        """True when the stages end by themselves (every stage has a finite duration)."""
        return all(s.duration_s != math.inf for s in self.stages)

    @property
    def duration_s(self) -> float:
        """Total length of all stages (s); inf for a plain rate."""
        return sum(s.duration_s for s in self.stages)

    def chunks(
        self, rng: np.random.Generator, start_s: float = 0.0, chunk: int = 1024
    ) -> Iterator[tuple[np.ndarray, int]]:
        """Lazily yield (arrival times in s, stage index) chunks in increasing time order."""
        offsets = _OFFSETS[self.process]
        stage_start = start_s
        for index, stage in enumerate(self.stages):
            end = stage_start + stage.duration_s
            k0, last = 0, 0.0
            while True:
                off = offsets(rng, stage.rate, self.cv, k0, chunk, last)
                times = stage_start + off
                inside = times < end
                if not inside.all():
                    yield times[inside], index
                    break
                yield times, index
                k0, last = k0 + chunk, float(off[-1])
            stage_start = end


@dataclass(frozen=True, slots=True)
class ClosedLoop:
    """Closed loop: `clients` users, each sending its next request think_time_s after the last finishes."""

    clients: int
    think_time_s: float = 0.0

    def __post_init__(self) -> None:
        if isinstance(self.clients, bool) or not isinstance(self.clients, (int, np.integer)) or self.clients < 1:
            raise WorkloadError(f"arrival concurrency={self.clients!r}: must be an integer >= 1")
        think = float(self.think_time_s)
        if not math.isfinite(think) or think < 0:
            raise WorkloadError(f"arrival think_time_s={self.think_time_s!r}: must be a finite number >= 0")
        object.__setattr__(self, "clients", int(self.clients))
        object.__setattr__(self, "think_time_s", think)


@dataclass(frozen=True, slots=True)
class VllmBench:
    """`vllm bench serve` arrivals for n requests: --request-rate (inf = all at once) and --burstiness.

    As vLLM's get_request (vllm/benchmarks/serve.py): gaps Gamma(shape=burstiness, scale=1/(rate*burstiness)),
    mean 1/rate (burstiness 1 = Poisson); the first request waits one gap too; the cumulative delays are then
    rescaled so the last request is sent at exactly n/rate s.
    """

    rate: float
    burstiness: float
    n: int

    finite = True

    @property
    def duration_s(self) -> float:
        """When the last request is sent (s): n / rate (0 for an infinite rate)."""
        return 0.0 if self.rate == math.inf else self.n / self.rate

    def chunks(self, rng: np.random.Generator, start_s: float = 0.0, chunk: int = 1024) -> Iterator[tuple[np.ndarray, int]]:
        """All n arrival times (s) as one chunk, stage 0."""
        if self.rate == math.inf:
            yield np.full(self.n, start_s), 0
            return
        delays = np.cumsum(rng.gamma(self.burstiness, 1.0 / (self.rate * self.burstiness), self.n))
        if delays[-1] != 0:
            delays *= (self.n / self.rate) / delays[-1]  # vLLM: all requests sent within n/rate s
        yield start_s + delays, 0


ArrivalProcess: TypeAlias = OpenLoop | ClosedLoop


def constant(rate: float) -> OpenLoop:
    """Requests exactly 1/rate seconds apart (rate in requests/s), the first at the start."""
    return OpenLoop("constant", (Stage(rate, math.inf),))


def poisson(rate: float) -> OpenLoop:
    """Poisson arrivals at rate requests/s (exponential gaps), the first at the start."""
    return OpenLoop("poisson", (Stage(rate, math.inf),))


def gamma(rate: float, cv: float) -> OpenLoop:
    """Gamma-renewal arrivals: mean gap 1/rate s, gap coefficient of variation cv (burstiness)."""
    return OpenLoop("gamma", (Stage(rate, math.inf),), cv)


def staged(stages: Sequence[tuple[float, float] | Stage], process: Process = "constant", cv: float = 1.0) -> OpenLoop:
    """Stages of (rate req/s, duration s) run back to back; each request is tagged with its stage index."""
    built = tuple(s if isinstance(s, Stage) else Stage(*s) for s in stages)
    if any(s.duration_s == math.inf for s in built):
        raise WorkloadError("arrival stages: every stage needs a finite duration_s")
    return OpenLoop(process, built, cv)


def synchronous() -> ClosedLoop:
    """GuideLLM's synchronous benchmark: one request in flight, the next sent when it finishes."""
    return ClosedLoop(1)


def concurrency(clients: int, think_time_s: float = 0.0) -> ClosedLoop:
    """N closed-loop clients; each sends its next request think_time_s (s) after its previous finishes."""
    return ClosedLoop(clients, think_time_s)
