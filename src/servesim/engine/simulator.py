"""The engine loop: one vLLM V1 engine instance, where each step is schedule -> execute -> update."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

from servesim.config.engine import EngineConfig
from servesim.engine.invariants import InvariantError, check_step
from servesim.engine.request import RequestRecord, RequestSource, RequestSpec
from servesim.engine.scheduler import EngineRequest, Scheduler, validate_engine
from servesim.engine.skipping import EventSkipper
from servesim.errors import ConfigError
from servesim.latency.plan import LatencyModel, StepPlan


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
        self.event_skipping = event_skipping and not check_invariants
        validate_engine(engine)
        if not isinstance(num_gpu_blocks, int) or num_gpu_blocks < 2:
            raise ConfigError(f"engine: num_gpu_blocks={num_gpu_blocks!r}: need an int >= 2 (one is vLLM's null block)")
        self.scheduler: Scheduler | None = None  # the last run's scheduler, for inspection

    def run(self, source: RequestSource, on_finish: Callable[[RequestRecord], None] | None = None) -> EngineStats:
        """Serve every request the source yields; return counters (and records when on_finish is None)."""
        sched = Scheduler(self.engine, self.num_gpu_blocks)
        self.scheduler = sched
        kv = sched.kv
        pool = kv.pool
        step_time = self.latency.step_time
        fe = self.frontend_latency_s
        tt = self.record_token_times
        check = self.check_invariants
        bs = sched.block_size
        stats = EngineStats()
        skipper = EventSkipper(sched, tt) if self.event_skipping else None
        free = pool.free
        usable = pool.num_usable
        keep = on_finish is None
        records = stats.records

        def emit(spec: RequestSpec, rec: RequestRecord, t: float) -> None:
            source.on_finish(spec, t)
            if keep:
                records.append(rec)
            else:
                on_finish(rec)  # type: ignore[misc]

        now = 0.0
        uid = 0  # run-unique request number (spec ids may repeat across closed-loop sources)
        computed: dict[int, int] = {}  # tokens computed per request, when checking invariants
        steps = 0
        busy = 0.0
        peak = 0.0
        prefill_tokens = decode_tokens = 0
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
                spec = source.pop()
                rec = RequestRecord(
                    id=spec.id, arrival_s=spec.arrival_s, input_tokens=spec.input_tokens,
                    output_tokens=spec.output_tokens, stage=spec.stage, token_times_s=[] if tt else None,
                )
                reason = sched.reject_reason(spec)
                if reason:
                    rec.rejected = True
                    rec.reject_reason = reason
                    stats.rejected += 1
                    key = reason.split(":", 1)[0]
                    stats.rejected_by_reason[key] = stats.rejected_by_reason.get(key, 0) + 1
                    # The frontend rejects at arrival + frontend latency; the engine never sees the request.
                    emit(spec, rec, spec.arrival_s + fe)
                else:
                    sched.add(EngineRequest(spec, rec, bs, uid))
                    uid += 1
                t = source.peek_arrival_s()

            if not sched.running and not sched.waiting:
                if t is None:
                    break
                now = max(now, t + fe)  # idle: jump to the next hand-over
                idle = True
                continue
            idle = False

            # One step: schedule -> execute -> update. Per-step CPU time (scheduling, sampling, detokenisation) lives
            # in the latency model, which overlaps it with GPU time under async scheduling (latency/calibrated.py).
            lazy = skipper.schedule(now, steps) if skipper is not None else None
            if lazy is not None:
                p_new, p_ctx, d_ctx = lazy
                if not p_new and not d_ctx:
                    raise InvariantError("progress", steps + 1, sched.waiting[0].id if sched.waiting else None, "step scheduled nothing")
                plan = StepPlan(tuple(p_new), tuple(p_ctx), d_ctx)
            else:
                if skipper is not None:
                    skipper.materialize(steps)
                out = sched.schedule(now)
                if not out.scheduled:
                    # Cannot happen for requests that passed reject_reason(); guard against a silent livelock.
                    raise InvariantError("progress", steps + 1, sched.waiting[0].id if sched.waiting else None, "step scheduled nothing")
                p_new, d_ctx = out.prefill_new, out.decode_ctx
                plan = StepPlan(tuple(p_new), tuple(out.prefill_ctx), tuple(d_ctx))
            u = 1.0 - len(free) / usable  # pool.usage(), inlined
            if u > peak:
                peak = u
            dt = step_time(plan)
            if not dt >= 0.0:  # also catches NaN; one comparison per step, so always on
                rid = out.scheduled[0].id if lazy is None else sched.running[0].id  # the step's first request
                raise InvariantError("clock_monotonic", steps + 1, rid, f"step time {dt!r} s")
            t0 = now
            prev_start = t0
            now = t0 + dt
            busy += dt
            if p_new:
                prefill_tokens += sum(p_new)
            decode_tokens += len(d_ctx)

            if lazy is not None:
                finished = skipper.update(now, steps)  # type: ignore[union-attr]
                steps += 1
            else:
                steps += 1
                finished = sched.update_from_output(out, now, tt)
                if check:
                    check_step(sched, out, steps, t0, now, in_engine=uid - stats.completed - len(finished))
                    for req, n in zip(out.scheduled, out.num_new):
                        computed[req.uid] = computed.get(req.uid, 0) + n
                    for req in finished:
                        # Token conservation: a request never preempted computes its prompt minus the cached prefix,
                        # then one token per output after the first. (A preempted one recomputes what its own blocks,
                        # possibly still cached, do not cover: no exact count to check against.)
                        need = req.spec.input_tokens + req.spec.output_tokens - 1 - req.rec.cached_tokens
                        got = computed.pop(req.uid, 0)
                        if req.rec.preemptions == 0 and got != need:
                            raise InvariantError("token_conservation", steps, req.id, f"computed {got} tokens, expected {need}")
                if skipper is not None:
                    skipper.rebuild(steps)
            for req in finished:
                stats.completed += 1
                emit(req.spec, req.rec, now)

        stats.steps = steps
        stats.preemptions = sched.num_preemptions
        stats.duration_s = now
        stats.busy_s = busy
        stats.kv_peak_usage = peak
        s = kv.stats
        stats.prefix_cache_queried_tokens = s.queries
        stats.prefix_cache_hit_tokens = s.hits
        stats.prefix_cache_preempted_queried_tokens = s.preempted_queries
        stats.prefix_cache_preempted_hit_tokens = s.preempted_hits
        stats.prefill_tokens = prefill_tokens
        stats.decode_tokens = decode_tokens
        return stats
