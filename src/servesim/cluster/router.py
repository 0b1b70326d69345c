"""Routers: pick the instance for each request from (possibly stale) instance state.

State per instance, as a router reads it: waiting (requests handed to the instance and not yet admitted),
running, and KV usage (fraction of usable blocks held). With staleness > 0 the router reads a snapshot taken
at the last scrape (every `staleness_s` seconds), as a gateway reads scraped Prometheus metrics.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from servesim.engine.request import RequestSpec
from servesim.errors import ConfigError

ROUTERS = ("round-robin", "random", "least-requests", "least-kv", "prefix-aware", "weighted", "vllm-dp")
# llm-d inference-scheduling guide's default scorer weights (prefix-cache-scorer 3, kv-cache-utilization 2,
# queue-scorer 2; llm-d-inference-scheduler deploy/config, 2025); used when --router-weights is not given.
DEFAULT_WEIGHTS = {"queue": 2.0, "kv": 2.0, "prefix": 3.0}
# vLLM's DP coordinator publishes engine counts every stats_update_interval_ms = 100 ms (vllm/v1/engine/coordinator.py).
VLLM_DP_STALENESS_S = 0.1


@dataclass(frozen=True)
class RouterConfig:
    """Which router, its scorer weights (weighted only), staleness of the state it reads (s), and RNG seed."""

    name: str = "round-robin"
    weights: tuple[tuple[str, float], ...] = tuple(DEFAULT_WEIGHTS.items())
    staleness_s: float | None = None  # None: 0, or vLLM's 0.1 s for vllm-dp
    seed: int = 0

    def __post_init__(self) -> None:
        if self.name not in ROUTERS:
            raise ConfigError(f"--router: {self.name!r} is not one of {', '.join(ROUTERS)}")
        s = self.staleness_s
        if s is not None and (isinstance(s, bool) or not isinstance(s, (int, float)) or not (s >= 0 and math.isfinite(s))):
            raise ConfigError(f"--router-staleness: {s!r} s must be a finite number >= 0")

    @property
    def staleness(self) -> float:
        """Seconds between scrapes of instance state (0 = the router reads live state)."""
        if self.staleness_s is not None:
            return float(self.staleness_s)
        return VLLM_DP_STALENESS_S if self.name == "vllm-dp" else 0.0

    def to_dict(self) -> dict:
        """JSON form."""
        out: dict = {"name": self.name, "staleness_s": self.staleness}
        if self.name == "weighted":
            out["weights"] = dict(self.weights)
        return out


def parse_weights(text: str) -> tuple[tuple[str, float], ...]:
    """'queue=2,kv=1,prefix=3' -> weights; missing scorers get weight 0."""
    out = dict.fromkeys(DEFAULT_WEIGHTS, 0.0)
    for part in text.split(","):
        key, eq, val = part.partition("=")
        key = key.strip()
        if not eq or key not in DEFAULT_WEIGHTS:
            raise ConfigError(f"--router-weights: {part!r} must be NAME=WEIGHT with NAME one of {', '.join(DEFAULT_WEIGHTS)}")
        try:
            w = float(val)
        except ValueError:
            raise ConfigError(f"--router-weights: {part!r}: weight {val!r} is not a number") from None
        if not (w >= 0 and math.isfinite(w)):
            raise ConfigError(f"--router-weights: {part!r}: weight must be a finite number >= 0")
        out[key] = w
    if not any(out.values()):
        raise ConfigError(f"--router-weights: {text!r}: at least one weight must be > 0")
    return tuple(out.items())


class Router:
    """Base: round-robin. Subclasses override pick(); `state` is a list of (waiting, running, kv_usage)."""

    needs_state = False

    def __init__(self, n: int, cfg: RouterConfig) -> None:
        self.n = n
        self.cfg = cfg
        self.count = 0  # requests routed
        self.routed = [0] * n

    def route(self, spec: RequestSpec, state: list[tuple[int, int, float]] | None) -> int:
        """Instance index for spec (one decision; counts it)."""
        i = self.pick(spec, state)
        self.count += 1
        self.routed[i] += 1
        return i

    def pick(self, spec: RequestSpec, state) -> int:  # type: ignore[no-untyped-def]
        return self.count % self.n

    def scraped(self, state: list[tuple[int, int, float]]) -> None:
        """Told when a fresh snapshot was taken (vllm-dp resets its local counts)."""

    def _argmin(self, keys: list) -> int:  # type: ignore[type-arg]
        # Ties: scan from a start that rotates with each decision, strict <, so equal instances take turns.
        n = self.n
        start = self.count % n
        best, bi = None, start
        for k in range(n):
            i = (start + k) % n
            if best is None or keys[i] < best:
                best, bi = keys[i], i
        return bi

    def metrics(self) -> dict:
        """Router counters for the JSON output."""
        return {"decisions": self.count, "routed": list(self.routed)}


class RandomRouter(Router):
    """Uniform random instance (seeded, so runs are reproducible)."""

    def __init__(self, n: int, cfg: RouterConfig) -> None:
        super().__init__(n, cfg)
        self.rng = random.Random(cfg.seed)

    def pick(self, spec, state):  # type: ignore[no-untyped-def]
        return self.rng.randrange(self.n)


class LeastRequests(Router):
    """Fewest waiting + running requests."""

    needs_state = True

    def pick(self, spec, state):  # type: ignore[no-untyped-def]
        return self._argmin([w + r for w, r, _ in state])


class LeastKV(Router):
    """Lowest KV usage, then fewest requests."""

    needs_state = True

    def pick(self, spec, state):  # type: ignore[no-untyped-def]
        return self._argmin([(kv, w + r) for w, r, kv in state])


class _PrefixIndex:
    """Router-side index of the prefixes it sent where, as llm-d's approximate prefix-cache scorer keeps one
    from routing history (it never sees evictions); here per instance: prefix group -> longest prefix sent."""

    def __init__(self, n: int) -> None:
        self.sent: list[dict[str, int]] = [{} for _ in range(n)]
        self.hits = 0  # decisions that went to an instance already holding part of the prefix

    def match(self, spec: RequestSpec, i: int) -> int:
        """Prefix tokens of spec that instance i was sent before (0 if none)."""
        g = spec.prefix_group
        if g is None or not spec.prefix_tokens:
            return 0
        return min(self.sent[i].get(str(g), 0), spec.prefix_tokens, spec.input_tokens)

    def record(self, spec: RequestSpec, i: int) -> None:
        g = spec.prefix_group
        if g is not None and spec.prefix_tokens:
            d = self.sent[i]
            key = str(g)
            if d.get(key, 0) > 0:
                self.hits += 1
            if spec.prefix_tokens > d.get(key, 0):
                d[key] = spec.prefix_tokens


class PrefixAware(Router):
    """Cache-aware routing as SGLang's router does it (sgl-router CacheAwarePolicy, defaults below).

    If the load (waiting + running) is imbalanced (max - min > 32 and max > 1.0001 x min), the least-loaded
    instance; else, if some instance was sent more than half of this prompt as a shared prefix (router-side
    index), the best match (ties: least loaded); else the least-loaded instance.
    """

    needs_state = True
    BALANCE_ABS, BALANCE_REL, CACHE_THRESHOLD = 32, 1.0001, 0.5

    def __init__(self, n: int, cfg: RouterConfig) -> None:
        super().__init__(n, cfg)
        self.index = _PrefixIndex(n)
        self.imbalanced = 0  # decisions taken by the load fallback

    def pick(self, spec, state):  # type: ignore[no-untyped-def]
        loads = [w + r for w, r, _ in state]
        lo, hi = min(loads), max(loads)
        m = self.index.match
        if hi - lo > self.BALANCE_ABS and hi > lo * self.BALANCE_REL:
            self.imbalanced += 1
            i = self._argmin(loads)
        else:
            matches = [m(spec, j) for j in range(self.n)]
            if max(matches) > self.CACHE_THRESHOLD * spec.input_tokens:
                i = self._argmin([(-x, ld) for x, ld in zip(matches, loads)])
            else:
                i = self._argmin(loads)
        self.index.record(spec, i)
        return i

    def metrics(self) -> dict:
        return super().metrics() | {"prefix_index_hits": self.index.hits, "load_fallbacks": self.imbalanced}


class Weighted(Router):
    """llm-d-style weighted scorers, highest total wins.

    Scores in [0, 1], as the Gateway API Inference Extension's plugins compute them: queue = (max - waiting) /
    (max - min) over the candidates (1 for all when equal; pkg/epp/scheduling/framework/plugins/scorer/queue.go),
    kv = 1 - KV usage (kvcache_utilization.go), prefix = matched prefix tokens / prompt tokens (the prefix
    plugin's matched blocks / prompt blocks). llm-d's max-score picker breaks ties at random; here they rotate.
    """

    needs_state = True

    def __init__(self, n: int, cfg: RouterConfig) -> None:
        super().__init__(n, cfg)
        w = dict(cfg.weights)
        self.wq, self.wk, self.wp = w.get("queue", 0.0), w.get("kv", 0.0), w.get("prefix", 0.0)
        self.index = _PrefixIndex(n)

    def pick(self, spec, state):  # type: ignore[no-untyped-def]
        waits = [w for w, _, _ in state]
        lo, hi = min(waits), max(waits)
        m = self.index.match
        keys = []
        for i, (w, _r, kv) in enumerate(state):
            q = 1.0 if hi == lo else (hi - w) / (hi - lo)
            p = m(spec, i) / spec.input_tokens if spec.input_tokens > 0 else 0.0
            keys.append(-(self.wq * q + self.wk * (1.0 - kv) + self.wp * p))
        i = self._argmin(keys)
        self.index.record(spec, i)
        return i

    def metrics(self) -> dict:
        return super().metrics() | {"prefix_index_hits": self.index.hits}


class VllmDP(Router):
    """vLLM's internal data-parallel load balancer (DPLBAsyncMPClient.get_core_engine_for_request, vLLM 0.11).

    score = waiting * 4 + running from the coordinator's last published counts; the first strict minimum
    scanning from engine 0 (one API server: eng_start_index = 0) wins; after each choice the client adds 1
    to that engine's waiting count locally, until the next publication replaces the counts.
    """

    needs_state = True

    def __init__(self, n: int, cfg: RouterConfig) -> None:
        super().__init__(n, cfg)
        self.counts: list[list[int]] | None = None

    def scraped(self, state):  # type: ignore[no-untyped-def]
        self.counts = [[w, r] for w, r, _ in state]

    def pick(self, spec, state):  # type: ignore[no-untyped-def]
        if self.counts is None or self.cfg.staleness == 0:
            self.counts = [[w, r] for w, r, _ in state]
        c = self.counts
        best, bi = None, 0
        for i in range(self.n):
            s = c[i][0] * 4 + c[i][1]
            if best is None or s < best:
                best, bi = s, i
        c[bi][0] += 1
        return bi


_CLASSES = {"round-robin": Router, "random": RandomRouter, "least-requests": LeastRequests, "least-kv": LeastKV,
            "prefix-aware": PrefixAware, "weighted": Weighted, "vllm-dp": VllmDP}


def make_router(cfg: RouterConfig, n: int) -> Router:
    """A fresh router over n instances."""
    return _CLASSES[cfg.name](n, cfg)
