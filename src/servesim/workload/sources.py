"""Request sources the engine pulls from (the `RequestSource` protocol): open loop, closed loop, explicit lists.

Generated sources are lazy: requests are drawn in fixed-size chunks as the engine asks for them.
Randomness: the given Generator is split with `rng.spawn(2)` into an arrival stream and a prompt
stream, so the same seed gives the same request lengths whatever the arrival process or rate.
"""

from __future__ import annotations

import dataclasses
import heapq
import math
from collections.abc import Callable, Iterable, Iterator

import numpy as np

from servesim.engine.request import RequestSpec
from servesim.errors import WorkloadError
from servesim.workload.arrivals import ClosedLoop, OpenLoop
from servesim.workload.prompts import PromptModel, prompt_stream

__all__ = ["ConcurrencyCap", "ClosedLoopListSource", "ClosedLoopSource", "ListSource", "OpenLoopSource", "check_sorted"]

CHUNK = 1024  # requests drawn per vectorised batch; fixed so the draws depend only on the seed


def _limits(num_requests: int | None, duration_s: float | None, what: str) -> tuple[int | float, float]:
    """Validated (max requests, max duration s); None means no limit of that kind."""
    bad_n = isinstance(num_requests, bool) or int(num_requests or 0) != num_requests or (num_requests or 0) < 1
    if num_requests is not None and bad_n:
        raise WorkloadError(f"{what}: num_requests={num_requests!r}: must be an integer >= 1")
    if duration_s is not None and not (math.isfinite(duration_s) and duration_s > 0):
        raise WorkloadError(f"{what}: duration_s={duration_s!r}: must be a finite number > 0")
    max_n = math.inf if num_requests is None else int(num_requests)
    return max_n, (math.inf if duration_s is None else float(duration_s))


class OpenLoopSource:
    """Open-loop requests: ids 0..n-1 in arrival order, stopped by num_requests, duration_s or the stages' end."""

    def __init__(
        self,
        arrivals: OpenLoop,
        prompts: PromptModel,
        rng: np.random.Generator,
        *,
        num_requests: int | None = None,
        duration_s: float | None = None,
        start_s: float = 0.0,
    ) -> None:
        if num_requests is None and duration_s is None and not arrivals.finite:
            raise WorkloadError("open-loop workload: give num_requests or duration_s (or finite stages)")
        max_n, max_s = _limits(num_requests, duration_s, "open-loop workload")
        arrival_rng, prompt_rng = rng.spawn(2)
        self._specs = self._generate(arrivals, prompts, arrival_rng, prompt_rng, max_n, start_s + max_s, start_s)
        self._next: RequestSpec | None = next(self._specs, None)

    @staticmethod
    def _generate(
        arrivals: OpenLoop,
        prompts: PromptModel,
        arrival_rng: np.random.Generator,
        prompt_rng: np.random.Generator,
        max_n: int | float,
        end_s: float,
        start_s: float,
    ) -> Iterator[RequestSpec]:
        """The requests, one at a time, from chunked arrival times and prompt shapes."""
        shapes = prompt_stream(prompts, prompt_rng, CHUNK)
        rid = 0
        for times, stage in arrivals.chunks(arrival_rng, start_s, CHUNK):
            for t in times.tolist():
                if rid >= max_n or t >= end_s:
                    return
                inp, out, group, prefix = next(shapes)
                yield RequestSpec(rid, t, inp, out, group, prefix, None, stage)
                rid += 1

    def peek_arrival_s(self) -> float | None:
        """Arrival time (s) of the next request, or None when the workload is exhausted."""
        return None if self._next is None else self._next.arrival_s

    def pop(self) -> RequestSpec:
        """Remove and return the next request."""
        if self._next is None:
            raise IndexError("pop from an exhausted OpenLoopSource")
        spec, self._next = self._next, next(self._specs, None)
        return spec

    def on_finish(self, spec: RequestSpec, finish_s: float) -> None:
        """Open loop: arrivals do not depend on completions."""


class _ClientHeap:
    """Closed-loop plumbing shared by the closed-loop sources: issued requests wait in a heap by arrival, and a
    finished request makes its client issue the next one (subclasses define _issue)."""

    _pending: list[tuple[float, int, RequestSpec]]
    _in_flight: set[int]
    _think_s: float
    _issue: Callable[[int, float], None]  # (client, arrival s): queue that client's next request, defined by subclasses

    def peek_arrival_s(self) -> float | None:
        """Arrival time (s) of the earliest request issued and not yet popped, or None."""
        return self._pending[0][0] if self._pending else None

    def pop(self) -> RequestSpec:
        """Remove and return the earliest pending request."""
        _, _, spec = heapq.heappop(self._pending)
        self._in_flight.add(spec.id)
        return spec

    def on_finish(self, spec: RequestSpec, finish_s: float) -> None:
        """The request finished (or was rejected) at finish_s (s): its client sends the next one."""
        if spec.id not in self._in_flight or spec.client is None:
            raise ValueError(f"on_finish for request {spec.id} that this source has not handed out (or twice)")
        self._in_flight.remove(spec.id)
        self._issue(spec.client, finish_s + self._think_s)


class ClosedLoopSource(_ClientHeap):
    """N clients in a closed loop: the first N requests arrive at start_s; each finish releases the next.

    A request finishing (or rejected) at t makes its client's next request arrive at t + think_time_s.
    Stops after num_requests requests, or at the first request that would arrive at/after start_s + duration_s.
    (With only duration_s, zero think time and an engine that rejects every request on arrival, time
    never advances; give num_requests as well when rejections are possible.)
    """

    def __init__(
        self,
        loop: ClosedLoop,
        prompts: PromptModel,
        rng: np.random.Generator,
        *,
        num_requests: int | None = None,
        duration_s: float | None = None,
        start_s: float = 0.0,
    ) -> None:
        if num_requests is None and duration_s is None:
            raise WorkloadError("closed-loop workload: give num_requests or duration_s")
        self._max_n, max_s = _limits(num_requests, duration_s, "closed-loop workload")
        self._end_s = start_s + max_s
        self._think_s = loop.think_time_s
        _, prompt_rng = rng.spawn(2)  # same prompt stream as an open-loop source with this seed
        self._shapes = prompt_stream(prompts, prompt_rng, CHUNK)
        self._pending: list[tuple[float, int, RequestSpec]] = []
        self._in_flight: set[int] = set()
        self._issued = 0
        # Clients beyond num_requests would never send anything: do not loop over them.
        for client in range(int(min(loop.clients, self._max_n))):
            self._issue(client, start_s)

    def _issue(self, client: int, arrival_s: float) -> None:
        """Create the client's next request arriving at arrival_s, unless the workload is over."""
        if self._issued >= self._max_n or arrival_s >= self._end_s:
            return
        inp, out, group, prefix = next(self._shapes)
        spec = RequestSpec(self._issued, arrival_s, inp, out, group, prefix, client, 0)
        heapq.heappush(self._pending, (arrival_s, spec.id, spec))
        self._issued += 1



def check_sorted(specs: Iterable[RequestSpec], where: str = "requests") -> None:
    """Raise WorkloadError at the first request arriving before its predecessor, or with a repeated id."""
    prev = -math.inf
    seen: set[int] = set()
    for i, spec in enumerate(specs):
        if spec.arrival_s < prev:
            raise WorkloadError(
                f"{where}[{i}] (id {spec.id}): arrival_s={spec.arrival_s!r} is earlier than the previous "
                f"request's {prev!r}; sort by arrival or pass sort=True"
            )
        if spec.id in seen:
            raise WorkloadError(f"{where}[{i}]: id={spec.id!r} repeats an earlier request's id; ids must be unique")
        seen.add(spec.id)
        prev = spec.arrival_s


class ListSource:
    """Replays explicit RequestSpecs (traces). Unsorted input is REFUSED unless sort=True (stable sort by arrival)."""

    def __init__(self, specs: Iterable[RequestSpec], *, sort: bool = False, where: str = "requests") -> None:
        items = list(specs)
        if sort:
            items.sort(key=lambda s: s.arrival_s)
        check_sorted(items, where)
        self._specs = items
        self._i = 0

    def __len__(self) -> int:
        return len(self._specs)

    def peek_arrival_s(self) -> float | None:
        """Arrival time (s) of the next request, or None at the end of the list."""
        return self._specs[self._i].arrival_s if self._i < len(self._specs) else None

    def pop(self) -> RequestSpec:
        """Remove and return the next request."""
        if self._i >= len(self._specs):
            raise IndexError("pop from an exhausted ListSource")
        self._i += 1
        return self._specs[self._i - 1]

    def on_finish(self, spec: RequestSpec, finish_s: float) -> None:
        """Replayed arrivals do not depend on completions."""


class ClosedLoopListSource(_ClientHeap):
    """Replays explicit RequestSpecs in order through N closed-loop clients (GuideLLM synchronous/throughput).

    The first N requests arrive at start_s; each finish (or rejection) at t sends the next unsent request
    of the list at t + think_time_s. Request ids and lengths are kept; arrival times are replaced.
    """

    def __init__(self, specs: Iterable[RequestSpec], concurrency: int, *, start_s: float = 0.0, think_time_s: float = 0.0) -> None:
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
            raise WorkloadError(f"closed-loop replay: concurrency={concurrency!r}: must be an integer >= 1")
        self._queue = list(specs)
        self._next = 0
        self._think_s = think_time_s
        self._pending: list[tuple[float, int, RequestSpec]] = []
        self._in_flight: set[int] = set()
        for client in range(min(concurrency, len(self._queue))):
            self._issue(client, start_s)

    def _issue(self, client: int, arrival_s: float) -> None:
        if self._next >= len(self._queue):
            return
        base = self._queue[self._next]
        self._next += 1
        spec = RequestSpec(base.id, arrival_s, base.input_tokens, base.output_tokens, base.prefix_group,
                           base.prefix_tokens, client, base.stage, base.lora)
        heapq.heappush(self._pending, (arrival_s, self._next, spec))



class ConcurrencyCap:
    """Wraps a RequestSource so at most `limit` requests are in flight (vllm bench --max-concurrency).

    Modelling assumption (vLLM's benchmark wraps each request in an asyncio.Semaphore(max_concurrency), and
    starts its clock inside it): a request that finds every slot taken waits at the client, first come first
    served, and is sent, with its arrival time set to the sending time, when the earliest slot frees.
    """

    def __init__(self, inner, limit: int) -> None:  # type: ignore[no-untyped-def]
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise WorkloadError(f"max_concurrency={limit!r}: must be an integer >= 1")
        self.inner = inner
        self._free: list[float] = [-math.inf] * limit  # min-heap: since when each free slot is free (s)

    def peek_arrival_s(self) -> float | None:
        """Sending time (s) of the next request, or None while every slot is taken (or the source is empty)."""
        t = self.inner.peek_arrival_s()
        if t is None or not self._free:
            return None
        return max(t, self._free[0])

    def pop(self) -> RequestSpec:
        """The next request, its arrival moved to when a slot was free for it."""
        spec = self.inner.pop()
        t = max(spec.arrival_s, heapq.heappop(self._free))
        return spec if t == spec.arrival_s else dataclasses.replace(spec, arrival_s=t)

    def on_finish(self, spec: RequestSpec, finish_s: float) -> None:
        """The request finished (or was rejected) at finish_s (s): its slot frees."""
        heapq.heappush(self._free, finish_s)
        self.inner.on_finish(spec, finish_s)
