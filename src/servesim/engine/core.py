"""One vLLM engine's step semantics, driven from outside: ingest -> begin_step (schedule, step time) -> end_step.

Both the single-engine loop (engine/simulator.py) and the cluster event loop (servesim/cluster/loop.py) drive
engines through this class, so there is one definition of what a step does.
"""

from __future__ import annotations

from collections.abc import Callable

from servesim.config.engine import EngineConfig
from servesim.engine.invariants import InvariantError, check_step
from servesim.engine.kv_groups import KVGroups
from servesim.engine.lora import LoraSlots, check_lora
from servesim.engine.offload import OffloadSpec
from servesim.engine.request import RequestRecord, RequestSpec
from servesim.engine.scheduler import EngineRequest, Scheduler
from servesim.engine.skipping import EventSkipper
from servesim.latency.plan import LatencyModel, StepPlan

Emit = Callable[[RequestSpec, RequestRecord, float], None]  # (spec, record, time s): a request left the engine


class EngineCore:
    """State of one engine between steps: scheduler, KV cache, event skipper and run counters."""

    def __init__(
        self,
        engine: EngineConfig,
        latency: LatencyModel,
        num_gpu_blocks: int,
        emit: Emit,
        *,
        record_token_times: bool = True,
        check_invariants: bool = False,
        event_skipping: bool = True,
        reject_delay_s: float = 0.0,
        sliding_window: int = 0,
        offload: OffloadSpec | None = None,
        spec_seed: int = 0,
        draft_time: Callable[[int], float] | None = None,
        kv_groups: KVGroups | None = None,
    ) -> None:
        # sliding_window > 0: the sliding layers slide over it and the KV manager frees blocks outside it (kv_cache.py;
        # with kv_groups of both kinds, vLLM's hybrid manager, kv_hybrid.py); event skipping's deferred blocks do not
        # model that freeing, so such engines take the reference path.
        self.sched = sched = Scheduler(engine, num_gpu_blocks, sliding_window, offload, spec_seed=spec_seed,
                                       check_invariants=check_invariants, kv_groups=kv_groups)
        self.step_time = latency.step_time
        self.tt = record_token_times
        self.check = check_invariants
        # LoRA (engine/lora.py): the skipper's lazy steps carry no per-request adapters, so LoRA takes the reference path.
        self.lora = LoraSlots(engine.max_loras, engine.cpu_loras) if engine.enable_lora else None
        # CPU KV offload (engine/offload.py) loads blocks the skipper's lazy decodes do not model: reference path.
        # Speculative decoding: event skipping assumes one token per decode step, so such engines take the reference path.
        spec_on = sched.spec is not None
        lazy_ok = (event_skipping and not check_invariants and not sliding_window and self.lora is None and offload is None
                   and not spec_on)
        self.skipper = EventSkipper(sched, record_token_times) if lazy_ok else None
        # (requests drafting this step) -> seconds of draft forward passes (latency/spec_decode.py); None = no draft cost.
        self.draft_time = draft_time if spec_on else None
        self.emit = emit
        self.reject_delay_s = reject_delay_s  # rejection time = arrival + this (the frontend's latency)
        self.bs = sched.block_size
        self.free = sched.kv.pool.free
        self.usable = sched.kv.pool.num_usable
        self.uid = 0  # run-unique request number (spec ids may repeat across closed-loop sources)
        self.outside_total = 0  # remote requests ever created (0: no PD decode leg, the check is skipped)
        self.outside = 0  # remote requests created and not yet queued (awaiting blocks or KV)
        self.reserved: dict[int, EngineRequest] = {}  # uid -> request holding blocks while its KV is in flight
        self.computed: dict[int, int] = {}  # tokens computed per request, when checking invariants
        self.steps = 0
        self.busy_s = 0.0
        self.peak = 0.0
        self.prefill_tokens = 0
        self.decode_tokens = 0
        self.completed = 0
        self.rejected = 0
        self.rejected_by_reason: dict[str, int] = {}  # 'max_model_len' (the API's 400), 'kv_capacity', ...
        self._out = None  # the step in flight: SchedulerOutput (exact path) or None (lazy path)
        self._lazy = False
        self._idle = False  # the step in flight is a wait for a CPU KV load (nothing computed)
        self._t0 = 0.0

    def _reject(self, reason: str) -> None:
        """Count one rejection under its reason's key (the text before ':')."""
        self.rejected += 1
        key = reason.split(":", 1)[0]
        self.rejected_by_reason[key] = self.rejected_by_reason.get(key, 0) + 1

    def admit(self, spec: RequestSpec) -> EngineRequest | None:
        """Hand one request to the engine: queue it (returned) or reject it at once (None)."""
        tt = self.tt
        rec = RequestRecord(
            id=spec.id, arrival_s=spec.arrival_s, input_tokens=spec.input_tokens,
            output_tokens=spec.output_tokens, stage=spec.stage, token_times_s=[] if tt else None,
        )
        sched = self.sched
        reason = sched.reject_reason(spec)
        if reason:
            rec.rejected = True
            rec.reject_reason = reason
            self._reject(reason)
            # The frontend rejects at arrival + frontend latency; the engine never sees the request.
            self.emit(spec, rec, spec.arrival_s + self.reject_delay_s)
            return None
        req = EngineRequest(spec, rec, self.bs, self.uid)
        self.uid += 1
        sched.add(req)
        return req

    def new_remote(self, spec: RequestSpec) -> EngineRequest | None:
        """A request whose prompt KV another instance computes (PD decode leg): created, not queued; None if rejected."""
        sched = self.sched
        reason = sched.reject_reason(spec)
        rec = RequestRecord(
            id=spec.id, arrival_s=spec.arrival_s, input_tokens=spec.input_tokens,
            output_tokens=spec.output_tokens, stage=spec.stage, token_times_s=[] if self.tt else None,
        )
        if reason:
            rec.rejected = True
            rec.reject_reason = reason
            self._reject(reason)
            self.emit(spec, rec, spec.arrival_s)
            return None
        req = EngineRequest(spec, rec, self.bs, self.uid)
        self.uid += 1
        self.outside += 1
        self.outside_total += 1
        return req

    def reserve(self, req: EngineRequest) -> bool:
        """Allocate the blocks for req's whole prompt before its KV arrives (between steps only); False if short."""
        if not self.sched.kv.allocate_slots(req, req.spec.input_tokens):
            return False
        self.reserved[req.uid] = req
        return True

    def receive(self, req: EngineRequest) -> None:
        """req's prompt KV has arrived: queue it; its first step recomputes only the last prompt token."""
        del self.reserved[req.uid]
        self.outside -= 1
        req.remote = req.spec.input_tokens
        self.sched.add(req)

    def _unblock_remote(self) -> bool:
        # Nothing runs and the head of the queue (a preempted request) cannot get blocks while requests whose KV
        # has arrived hold theirs: let those go first (they need no new block for their first step), or the
        # engine would wait forever. Assumption (no vLLM counterpart modelled): arrived KV is never dropped.
        w = self.sched.waiting
        if w and not w[0].remote and any(r.remote for r in w):
            ready = [r for r in w if r.remote]
            rest = [r for r in w if not r.remote]
            w.clear()
            w.extend(ready + rest)
            return True
        return False

    def has_work(self) -> bool:
        """True while some request is waiting or running."""
        s = self.sched
        return bool(s.running or s.waiting)

    def begin_step(self, now: float) -> float:
        """Schedule one step at clock `now` (s) and return its duration (s); end_step() must follow.

        Returns -1.0 (no step) when nothing can run until KV in flight arrives (PD decode leg only)."""
        sched = self.sched
        skipper = self.skipper
        steps = self.steps
        if self.outside_total and not sched.running:
            self._unblock_remote()
        lazy = skipper.schedule(now, steps) if skipper is not None else None
        if lazy is not None:
            p_new, p_ctx, d_ctx = lazy
            if not p_new and not d_ctx and self.outside_total and self._unblock_remote():
                lazy = None  # every running request was preempted this step: retry exactly, arrived KV first
            elif not p_new and not d_ctx:
                if self.reserved:
                    return -1.0
                raise InvariantError("progress", steps + 1, sched.waiting[0].id if sched.waiting else None, "step scheduled nothing")
            else:
                plan = StepPlan(tuple(p_new), tuple(p_ctx), d_ctx)
                self._lazy = True
        if lazy is None:
            if skipper is not None:
                skipper.materialize(steps)
            out = sched.schedule(now)
            if not out.scheduled and self.outside_total and self._unblock_remote():
                out = sched.schedule(now)  # every running request was preempted this step: arrived KV first
            if not out.scheduled and self.reserved:
                return -1.0
            if not out.scheduled and sched.tier is not None:
                t = sched.next_load_s()
                if t is not None and t > now:
                    # Only requests waiting for CPU loads: the engine idles until the first load finishes.
                    self._idle = True
                    self._out = None
                    return t - now
            if not out.scheduled:
                # Cannot happen for requests that passed reject_reason(); guard against a silent livelock.
                raise InvariantError("progress", steps + 1, sched.waiting[0].id if sched.waiting else None, "step scheduled nothing")
            p_new, d_ctx = out.prefill_new, out.decode_ctx
            plan = StepPlan(tuple(p_new), tuple(out.prefill_ctx), tuple(d_ctx),
                            self.lora.step(out.scheduled, out.num_new) if self.lora is not None else None)
            self._out = out
            self._lazy = False
        u = 1.0 - len(self.free) / self.usable  # pool.usage(), inlined
        if u > self.peak:
            self.peak = u
        dt = self.step_time(plan)
        if self.draft_time is not None:
            dt += self.draft_time(len(self._out.scheduled))  # the drafter runs for every request in the batch
        if not dt >= 0.0:  # also catches NaN; one comparison per step, so always on
            rid = self._out.scheduled[0].id if lazy is None else sched.running[0].id  # the step's first request
            raise InvariantError("clock_monotonic", steps + 1, rid, f"step time {dt!r} s")
        self._t0 = now
        self.busy_s += dt
        if p_new:
            self.prefill_tokens += sum(p_new)
        self.decode_tokens += len(d_ctx)
        return dt

    def end_step(self, now: float) -> list[EngineRequest]:
        """Finish the step begun by begin_step() at clock `now` (s): sample, free, emit; return finished requests."""
        if self._idle:
            self._idle = False
            return []
        if self._lazy:
            finished = self.skipper.update(now, self.steps)  # type: ignore[union-attr]
            self.steps += 1
        else:
            out = self._out
            self._out = None
            self.steps = steps = self.steps + 1
            sched = self.sched
            finished = sched.update_from_output(out, now, self.tt)
            if self.check:
                check_step(sched, out, steps, self._t0, now, reserved=self.reserved.values(),
                           in_engine=self.uid - self.completed - len(finished) - self.outside)
                if self.lora is not None:
                    check_lora(out, self.lora, steps)
                if sched.tier is not None and (bad := sched.tier.check()):
                    raise InvariantError("cpu_tier_conservation", steps, None, bad)
                computed = self.computed
                rejected = sched.spec.steps_rejected if sched.spec is not None else {}
                for req, n in zip(out.scheduled, out.num_new):
                    # Rejected drafts are rolled back (num_computed decreases): they do not count as computed.
                    computed[req.uid] = computed.get(req.uid, 0) + n - rejected.get(req.uid, 0)
                for req in finished:
                    # Token conservation: a request never preempted computes its prompt minus the cached prefix,
                    # then one token per output after the first. (A preempted one recomputes what its own blocks,
                    # possibly still cached, do not cover: no exact count to check against.)
                    need = req.spec.input_tokens + req.spec.output_tokens - 1 - req.rec.cached_tokens
                    got = computed.pop(req.uid, 0)
                    if req.rec.preemptions == 0 and got != need:
                        raise InvariantError("token_conservation", steps, req.id, f"computed {got} tokens, expected {need}")
            if self.skipper is not None:
                self.skipper.rebuild(self.steps)
        if finished:
            emit = self.emit
            self.completed += len(finished)
            for req in finished:
                emit(req.spec, req.rec, now)
        return finished
