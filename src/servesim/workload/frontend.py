"""The API-server stage between clients and the engine: a per-request delay before the engine sees a request."""

from __future__ import annotations

import heapq

from servesim.engine.request import RequestSource, RequestSpec


class FrontendSource:
    """Wraps a RequestSource: request r reaches the engine at arrival + base_s + per_input_token_s × input_tokens.

    Modelling assumption: the OpenAI API server (HTTP parsing, tokenisation, request validation) handles
    requests in parallel with the engine, so it delays each request but never blocks the engine; its
    cost grows with the prompt (tokenisation). Records keep the client's arrival time, so the delay
    counts in TTFT and E2E. Requests are handed over in order of hand-over time.
    """

    def __init__(self, inner: RequestSource, base_s: float = 0.0, per_input_token_s: float = 0.0) -> None:
        self.inner = inner
        self.base_s = base_s
        self.per_input_token_s = per_input_token_s
        self._ready: list[tuple[float, int, RequestSpec]] = []
        self._seq = 0

    def delay_s(self, spec: RequestSpec) -> float:
        """Seconds between the client sending this request and the engine receiving it."""
        return self.base_s + self.per_input_token_s * spec.input_tokens

    def _fill(self) -> None:
        # A request not yet pulled arrives no earlier than inner.peek_arrival_s() and is delayed by >= base_s,
        # so the earliest buffered hand-over is final once it is <= that bound.
        while True:
            t = self.inner.peek_arrival_s()
            if t is None or (self._ready and self._ready[0][0] <= t + self.base_s):
                return
            spec = self.inner.pop()
            heapq.heappush(self._ready, (spec.arrival_s + self.delay_s(spec), self._seq, spec))
            self._seq += 1

    def peek_arrival_s(self) -> float | None:
        """Hand-over time (s) of the next request to the engine, or None if none is pending."""
        self._fill()
        return self._ready[0][0] if self._ready else None

    def pop(self) -> RequestSpec:
        """The next request handed to the engine (its arrival_s is still the client's send time)."""
        self._fill()
        return heapq.heappop(self._ready)[2]

    def on_finish(self, spec: RequestSpec, finish_s: float) -> None:
        """Forwarded to the wrapped source (closed-loop clients send their next request)."""
        self.inner.on_finish(spec, finish_s)
