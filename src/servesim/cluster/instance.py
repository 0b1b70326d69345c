"""One engine instance in a cluster: an EngineCore plus what the event loop needs around it."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from servesim.config.engine import EngineConfig
from servesim.engine.core import EngineCore
from servesim.engine.kv_groups import KVGroups
from servesim.engine.scheduler import EngineRequest
from servesim.latency.plan import LatencyModel

ROLES = ("both", "prefill", "decode")


@dataclass(frozen=True)
class InstanceConfig:
    """What one instance runs: resolved engine args, step-time model, KV blocks, and its place in the cluster."""

    engine: EngineConfig
    latency: LatencyModel
    num_gpu_blocks: int
    pool: str = "default"
    role: str = "both"  # both | prefill | decode
    kv_bytes_per_token: float = 0.0  # KV of one token over the whole model (all layers, all TP ranks), bytes
    gpus: int = 1  # tensor x pipeline parallel GPUs
    sliding_window: int = 0  # > 0: the sliding layers slide over this many tokens (engine/kv_cache.py frees outside it)
    kv_groups: KVGroups | None = None  # full and sliding groups: vLLM's hybrid KV cache manager (engine/kv_hybrid.py)


class Instance:
    """An engine on the cluster clock: inbox of handed-over work, step state, and per-instance counters."""

    __slots__ = ("index", "cfg", "core", "inbox", "busy", "pending", "idle", "prev_start", "async_sched",
                 "to_reserve", "link_free_s", "routed", "ttft_sum", "first_tokens")

    def __init__(self, index: int, cfg: InstanceConfig, core: EngineCore) -> None:
        self.index = index
        self.cfg = cfg
        self.core = core
        self.inbox: deque[tuple[float, object]] = deque()  # (hand-over time s, RequestSpec or received EngineRequest)
        self.busy = False  # a step is in flight
        self.pending = False  # a SCHEDULE event is queued
        self.idle = True
        self.prev_start = 0.0
        self.async_sched = cfg.engine.async_scheduling
        self.to_reserve: deque[tuple[EngineRequest, object]] = deque()  # PD decode: awaiting blocks before transfer
        self.link_free_s = 0.0  # PD prefill: when its outgoing KV link is free (FIFO)
        self.routed = 0
        self.ttft_sum = 0.0
        self.first_tokens = 0

    def state(self) -> tuple[int, int, float]:
        """(waiting, running, KV usage) as a router reads it: handed-over work not yet running counts as waiting."""
        s = self.core.sched
        return (len(self.inbox) + len(self.to_reserve) + len(s.waiting), len(s.running),
                1.0 - len(self.core.free) / self.core.usable)
