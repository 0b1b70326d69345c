"""The engine loop: one vLLM V1 engine instance, where each step is schedule -> execute -> update."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

from servesim.config.engine import EngineConfig
from servesim.engine.core import EngineCore
from servesim.engine.kv_groups import KVGroups
from servesim.engine.offload import OffloadSpec
from servesim.engine.request import RequestRecord, RequestSource, RequestSpec
from servesim.engine.scheduler import Scheduler, validate_engine
from servesim.errors import ConfigError
from servesim.latency.plan import LatencyModel


@dataclass(slots=True)
class EngineStats:
    """What one run produced: records (if not streamed), counters, and times in seconds."""

    records: list[RequestRecord] = field(default_factory=list)
    steps: int = 0
    preemptions: int = 0
    rejected: int = 0
    rejected_by_reason: dict[str, int] = field(default_factory=dict)  # 'max_model_len' (API 400), 'kv_capacity', ...
    completed: int = 0
    duration_s: float = 0.0  # clock when the run ended
    busy_s: float = 0.0  # sum of step times
    kv_peak_usage: float = 0.0  # peak fraction of usable KV blocks held by requests (after scheduling)
    prefix_cache_queried_tokens: int = 0  # vLLM prefix_cache_queries (lookups of never-preempted requests)
    prefix_cache_hit_tokens: int = 0  # vLLM prefix_cache_hits
    prefix_cache_preempted_queried_tokens: int = 0  # re-lookups after preemption (vLLM keeps them apart)
    prefix_cache_preempted_hit_tokens: int = 0
    prefill_tokens: int = 0  # prompt/recompute tokens computed
    decode_tokens: int = 0  # decode steps summed over requests
    lora_loads: int = 0  # LoRA adapters copied CPU -> GPU (engine/lora.py; 0 with LoRA off)
    lora_disk_loads: int = 0  # of those, read from disk first (not in the CPU cache)
    cpu_prefix_cache_queried_tokens: int = 0  # CPU KV offload: tokens looked up in the CPU tier (vLLM connector stats)
    cpu_prefix_cache_hit_tokens: int = 0  # tokens loaded from the CPU tier


class Simulator:
    """Discrete-time simulator of one engine: the step is the clock (no event heap needed)."""

    def __init__(
        self,
        engine: EngineConfig,
        latency: LatencyModel,
        num_gpu_blocks: int,
        *,
        frontend_latency_s: float = 0.0,
        record_token_times: bool = True,
        check_invariants: bool = False,
        event_skipping: bool = True,
        sliding_window: int = 0,
        offload: OffloadSpec | None = None,
        spec_seed: int = 0,
        draft_time: Callable[[int], float] | None = None,
        kv_groups: KVGroups | None = None,
    ) -> None:
        if not (frontend_latency_s >= 0.0 and math.isfinite(frontend_latency_s)):
            raise ConfigError(f"engine: frontend_latency_s={frontend_latency_s!r}: must be a finite number >= 0")
        self.engine = engine
        self.latency = latency
        self.num_gpu_blocks = num_gpu_blocks
        self.frontend_latency_s = frontend_latency_s
        self.record_token_times = record_token_times
        self.check_invariants = check_invariants
        # Same answers either way (engine/skipping.py); off = every request touched every step (the reference).
        self.event_skipping = event_skipping and not check_invariants and not sliding_window
        # > 0: every layer slides over this many tokens; the KV manager frees blocks outside it (kv_cache.py).
        # Event skipping's deferred blocks do not model that freeing, so such runs take the reference path.
        self.sliding_window = sliding_window
        self.offload = offload  # CPU KV tier (engine/offload.py); None = off
        self.kv_groups = kv_groups  # full and sliding groups: vLLM's hybrid KV cache manager (engine/kv_hybrid.py)
        validate_engine(engine)
        if not isinstance(num_gpu_blocks, int) or num_gpu_blocks < 2:
            raise ConfigError(f"engine: num_gpu_blocks={num_gpu_blocks!r}: need an int >= 2 (one is vLLM's null block)")
        self.scheduler: Scheduler | None = None  # the last run's scheduler, for inspection
        self.spec_seed = spec_seed  # speculative decoding: seeds the acceptance draws (engine/spec_decode.py)
        self.draft_time = draft_time  # (requests drafting) -> draft seconds per step (latency/spec_decode.py)

    def run(self, source: RequestSource, on_finish: Callable[[RequestRecord], None] | None = None) -> EngineStats:
        """Serve every request the source yields; return counters (and records when on_finish is None)."""
        stats = EngineStats()
        keep = on_finish is None
        records = stats.records

        def emit(spec: RequestSpec, rec: RequestRecord, t: float) -> None:
            source.on_finish(spec, t)
            if keep:
                records.append(rec)
            else:
                on_finish(rec)  # type: ignore[misc]

        fe = self.frontend_latency_s
        core = EngineCore(self.engine, self.latency, self.num_gpu_blocks, emit, record_token_times=self.record_token_times,
                          check_invariants=self.check_invariants, event_skipping=self.event_skipping, reject_delay_s=fe,
                          sliding_window=self.sliding_window, offload=self.offload, spec_seed=self.spec_seed,
                          draft_time=self.draft_time, kv_groups=self.kv_groups)
        sched = core.sched
        self.scheduler = sched
        admit, begin_step, end_step = core.admit, core.begin_step, core.end_step
        now = 0.0
        async_sched = self.engine.async_scheduling
        prev_start = 0.0
        idle = True
        while True:
            # Ingest: requests the frontend has handed over by now (arrival + API-server/tokenisation time).
            # vLLM EngineCore drains its input queue between steps, so a mid-step arrival waits for the next schedule().
            # With async scheduling (vLLM >= 0.14 default) step k+1 is scheduled while step k runs, so only requests
            # handed over before step k started can join step k+1; an idle engine schedules at once.
            cutoff = now if (idle or not async_sched) else prev_start
            t = source.peek_arrival_s()
            while t is not None and t + fe <= cutoff:
                admit(source.pop())
                t = source.peek_arrival_s()

            if not sched.running and not sched.waiting:
                if t is None:
                    break
                now = max(now, t + fe)  # idle: jump to the next hand-over
                idle = True
                continue
            idle = False

            # One step: schedule -> execute -> update (engine/core.py). Per-step CPU time (scheduling, sampling,
            # detokenisation) lives in the latency model, which overlaps it with GPU time under async scheduling.
            dt = begin_step(now)
            prev_start = now
            now = now + dt
            end_step(now)

        return core_stats(core, stats, now)


def core_stats(core: EngineCore, stats: EngineStats, now: float) -> EngineStats:
    """Fill stats from an engine's counters at the end of a run ending at clock `now` (s)."""
    sched = core.sched
    stats.steps = core.steps
    stats.rejected = core.rejected
    stats.rejected_by_reason = dict(core.rejected_by_reason)
    stats.completed = core.completed
    stats.preemptions = sched.num_preemptions
    stats.duration_s = now
    stats.busy_s = core.busy_s
    stats.kv_peak_usage = core.peak
    s = sched.kv.stats
    stats.prefix_cache_queried_tokens = s.queries
    stats.prefix_cache_hit_tokens = s.hits
    stats.prefix_cache_preempted_queried_tokens = s.preempted_queries
    stats.prefix_cache_preempted_hit_tokens = s.preempted_hits
    stats.prefill_tokens = core.prefill_tokens
    stats.decode_tokens = core.decode_tokens
    if core.lora is not None:
        stats.lora_loads, stats.lora_disk_loads = core.lora.cpu_loads, core.lora.disk_loads
    if sched.tier is not None:
        stats.cpu_prefix_cache_queried_tokens = sched.tier.queried_tokens
        stats.cpu_prefix_cache_hit_tokens = sched.tier.hit_tokens
    return stats
