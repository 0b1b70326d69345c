"""Invariant checks applied from OUTSIDE the engine, so they also cover the event-skipping path.

`engine/invariants.py` (Simulator(check_invariants=True)) checks KV and scheduler state after every step, but
only on the exact step-by-step path (check_invariants switches event skipping off), and it does not check
request conservation, token conservation, prefix-hit identity, causality of the records or closed-loop
concurrency. This harness adds those without touching the engine:

* `Watched` wraps a RequestSource: counts requests handed to the engine and told finished, and the closed-loop
  clients' in-flight requests.
* `Spy` wraps a LatencyModel: the engine calls step_time() once per step, after schedule() and before the
  update, so the spy sees the scheduler mid-step and checks request conservation, the token budget,
  max_num_seqs, no admission in a step that preempted, KV block conservation/refcounts/holders, that a
  waiting request holds no KV, and that every prefix-cached block of a running request carries that request's
  own content key (hits only on identical prefixes).
* `check_records` checks a finished run from its records and counters: conservation of requests and output
  tokens, prefill/decode token accounting, causality (arrival <= first scheduled <= first token <= finish,
  token times non-decreasing: ITL >= 0), rejections only for requests that cannot be served, prefix hits only
  inside a request's shared prefix and never for the first request of a group, closed-loop concurrency.

Every failure raises `Violation` naming the invariant, the step (when known) and the request.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from servesim.engine import RequestRecord, RequestSpec, Simulator
from servesim.engine.kv_cache import cdiv
from servesim.latency.plan import StepPlan, StepTime


class Violation(AssertionError):
    def __init__(self, invariant: str, step: int | None, request: Any, detail: str) -> None:
        super().__init__(f"invariant {invariant} violated at step {step if step is not None else '-'} "
                         f"(request {request if request is not None else '-'}): {detail}")
        self.invariant = invariant


class Watched:
    """A RequestSource wrapper that counts what crosses the engine boundary."""

    def __init__(self, inner: Any, concurrency: int | None = None) -> None:
        self.inner = inner
        self.concurrency = concurrency
        self.popped = 0
        self.finished = 0
        self.in_flight: set[int] = set()
        self.max_in_flight = 0
        self.specs: dict[int, RequestSpec] = {}

    def peek_arrival_s(self) -> float | None:
        return self.inner.peek_arrival_s()

    def pop(self) -> RequestSpec:
        spec = self.inner.pop()
        self.popped += 1
        if spec.id in self.specs:
            raise Violation("unique_request_ids", None, spec.id, "the source handed out a repeated id")
        self.specs[spec.id] = spec
        self.in_flight.add(spec.id)
        self.max_in_flight = max(self.max_in_flight, len(self.in_flight))
        if self.concurrency is not None and len(self.in_flight) > self.concurrency:
            raise Violation("closed_loop_concurrency", None, spec.id, f"{len(self.in_flight)} in flight > {self.concurrency} clients")
        return spec

    def on_finish(self, spec: RequestSpec, finish_s: float) -> None:
        if spec.id not in self.in_flight:
            raise Violation("request_finished_once", None, spec.id, "finished twice or never handed out")
        self.in_flight.remove(spec.id)
        self.finished += 1
        self.inner.on_finish(spec, finish_s)


class Spy:
    """A LatencyModel wrapper that checks the scheduler's state in the middle of every step."""

    def __init__(self, inner: Any, source: Watched) -> None:
        self.inner = inner
        self.source = source
        self.name = getattr(inner, "name", "spy")
        self.sim: Simulator | None = None
        self.steps = 0
        self.prev_running: set[int] = set()
        self.prev_preemptions = 0
        self.plans: list[StepPlan] = []
        self.preempting_steps = 0

    def explain(self, plan: StepPlan) -> StepTime:
        return self.inner.explain(plan)

    def step_time(self, plan: StepPlan) -> float:
        self.steps += 1
        self.check(plan)
        return self.inner.step_time(plan)

    def check(self, plan: StepPlan) -> None:
        assert self.sim is not None, "set spy.sim before running"
        sched = self.sim.scheduler
        step = self.steps
        src = self.source
        waiting, running = list(sched.waiting), list(sched.running)
        first = running[0].id if running else (waiting[0].id if waiting else None)
        # Requests: everything handed over is finished/rejected, waiting or running (each exactly once).
        if src.popped != src.finished + len(waiting) + len(running):
            raise Violation("request_conservation", step, first,
                            f"arrived {src.popped} != finished or rejected {src.finished} + waiting {len(waiting)} + running {len(running)}")
        ids = [id(r) for r in waiting] + [id(r) for r in running]
        if len(set(ids)) != len(ids):
            raise Violation("request_in_one_queue", step, first, "a request is queued twice")
        # Scheduler limits.
        if plan.num_tokens > sched.max_num_batched_tokens or plan.num_tokens < 1:
            raise Violation("token_budget", step, first, f"{plan.num_tokens} tokens, budget {sched.max_num_batched_tokens}")
        if plan.num_requests > sched.max_num_seqs or len(running) > sched.max_num_seqs:
            raise Violation("max_num_seqs", step, first, f"{plan.num_requests} scheduled, {len(running)} running > {sched.max_num_seqs}")
        if any(n < 1 for n in plan.prefill_new) or any(c < 0 for c in plan.prefill_ctx + plan.decode_ctx):
            raise Violation("plan_counts", step, first, f"{plan}")
        # No admission in a step that preempted (vLLM: `if not preempted_reqs`).
        now_running = {id(r) for r in running}
        preempted = sched.num_preemptions - self.prev_preemptions
        admitted = [r for r in running if id(r) not in self.prev_running]
        if preempted:
            self.preempting_steps += 1
        if preempted and admitted:
            raise Violation("no_admission_after_preemption", step, admitted[0].id, f"{preempted} preempted, {len(admitted)} admitted")
        self.prev_running, self.prev_preemptions = now_running, sched.num_preemptions
        # KV blocks. Representation-independent part first: the blocks running requests hold and the free
        # queue partition the usable blocks; only shared-prefix blocks may be held by two requests.
        pool, kv, bs = sched.kv.pool, sched.kv, sched.block_size
        free = list(pool.free)
        free_set = set(free)
        if len(free) != len(free_set) or len(free) != pool.num_free or 0 in free_set:
            raise Violation("kv_free_queue", step, first, f"{len(free)} entries, {len(free_set)} distinct, num_free {pool.num_free}")
        holders = [0] * pool.num_blocks
        shared_block = [False] * pool.num_blocks
        for r in running:
            for i, b in enumerate(r.blocks):
                holders[b] += 1
                if i < r.n_shared_blocks:
                    shared_block[b] = True
                if b in free_set:
                    raise Violation("kv_held_block_not_free", step, r.id, f"block {b} is held and in the free queue")
            if len(r.blocks) * bs < min(r.num_computed, r.num_tokens) and not r.lazy:
                raise Violation("kv_blocks_cover_computed", step, r.id, f"{len(r.blocks)} blocks < {r.num_computed} tokens")
            if len(r.blocks) > cdiv(r.num_prompt + r.max_tokens - 1, bs):
                raise Violation("kv_blocks_bounded", step, r.id, f"{len(r.blocks)} blocks for {r.num_prompt}+{r.max_tokens} tokens")
            if len(set(r.blocks)) != len(r.blocks):
                raise Violation("kv_block_table_distinct", step, r.id, f"{r.blocks}")
        used = sum(1 for b in range(1, pool.num_blocks) if holders[b])
        if used + pool.num_free != pool.num_usable:
            raise Violation("kv_block_conservation", step, first, f"used {used} + free {pool.num_free} != {pool.num_usable}")
        for b in range(1, pool.num_blocks):
            if holders[b] > 1 and not shared_block[b]:
                raise Violation("kv_private_block_shared", step, first, f"private block {b} held by {holders[b]} requests")
        for r in waiting:
            if r.blocks or r.num_computed:
                raise Violation("waiting_holds_no_kv", step, r.id, f"{len(r.blocks)} blocks, {r.num_computed} computed")
        # Reference counts: all blocks, or only blocks registered under a (shared-prefix) key when the engine
        # keeps just those (engine/kv_cache.py `shared_refs_only`, on under event skipping).
        ref = pool.ref_cnt
        shared_only = getattr(pool, "shared_refs_only", False)
        for b in range(1, pool.num_blocks):
            if ref[b] < 0:
                raise Violation("kv_refcount_nonnegative", step, first, f"block {b}: {ref[b]}")
            if (not shared_only or pool.block_key[b] is not None) and ref[b] != holders[b]:
                raise Violation("kv_refcount_matches_holders", step, first, f"block {b}: ref {ref[b]}, held by {holders[b]}")
        if ref[0] != 0:
            raise Violation("kv_null_block", step, first, "block 0 was handed out")
        # Prefix caching: a registered block holds exactly this request's content at that position (only
        # shared-prefix blocks are registered under deferred private blocks).
        defer = getattr(kv, "defer_private", False)
        for r in running:
            upto = min(r.num_cached_blocks, len(r.blocks))
            for i in range(min(upto, r.n_shared_blocks) if defer else upto):
                key = pool.block_key[r.blocks[i]]
                if key != kv.key(r, i):
                    raise Violation("prefix_hit_identical_prefix", step, r.id, f"block {i} = #{r.blocks[i]} keyed {key!r}, expected {kv.key(r, i)!r}")


@dataclass
class Run:
    """A finished run with everything the checks need."""

    sim: Simulator
    stats: Any
    records: list[RequestRecord]
    source: Watched
    spy: Spy
    engine: Any
    latency: Any
    extra: dict[str, Any] = field(default_factory=dict)


def run_checked(engine: Any, latency: Any, blocks: int, source: Any, *, concurrency: int | None = None,
                event_skipping: bool = True, check_invariants: bool = False, record_token_times: bool = True) -> Run:
    """Run a Simulator with the outside checks on every step and on the records at the end."""
    watched = Watched(source, concurrency)
    spy = Spy(latency, watched)
    sim = Simulator(engine, spy, blocks, event_skipping=event_skipping, check_invariants=check_invariants,
                    record_token_times=record_token_times)
    spy.sim = sim
    stats = sim.run(watched)
    run = Run(sim, stats, stats.records, watched, spy, engine, latency)
    check_records(run)
    return run


def check_records(run: Run, *, strict_times: bool = True) -> None:
    """End-of-run invariants from the records and counters (see the module docstring)."""
    stats, recs, src, eng = run.stats, run.records, run.source, run.engine
    sched = run.sim.scheduler
    bs = eng.block_size
    # Request conservation at the end: every arrival completed or rejected; nothing left queued or running.
    done = [r for r in recs if not r.rejected]
    rejected = [r for r in recs if r.rejected]
    if len(recs) != src.popped or src.finished != src.popped or sched.waiting or sched.running or src.in_flight:
        raise Violation("request_conservation", stats.steps, None,
                        f"arrived {src.popped}, records {len(recs)}, finished {src.finished}, left waiting {len(sched.waiting)} running {len(sched.running)}")
    if stats.completed != len(done) or stats.rejected != len(rejected):
        raise Violation("request_counters", stats.steps, None, f"completed {stats.completed}/{len(done)}, rejected {stats.rejected}/{len(rejected)}")
    if len({r.id for r in recs}) != len(recs):
        raise Violation("unique_records", stats.steps, None, "a request has two records")
    # KV: everything returned to the pool.
    pool = sched.kv.pool
    if pool.num_free != pool.num_usable or any(pool.ref_cnt) or len(set(pool.free)) != pool.num_usable:
        raise Violation("kv_all_freed", stats.steps, None, f"{pool.num_usable - pool.num_free} blocks still held")
    # Rejections: exactly the requests the engine cannot serve.
    for r in recs:
        too_long = r.input_tokens + r.output_tokens > eng.max_model_len
        too_big = cdiv(r.input_tokens + r.output_tokens - 1, bs) > pool.num_usable
        cannot = too_long or too_big or r.input_tokens < 1 or r.output_tokens < 1
        if r.rejected != cannot:
            raise Violation("rejection_rule", None, r.id, f"rejected={r.rejected} ({r.reject_reason!r}) for {r.input_tokens}+{r.output_tokens} tokens, "
                            f"max_model_len {eng.max_model_len}, {pool.num_usable} blocks of {bs}")
        if r.rejected and (r.first_scheduled_s is not None or r.first_token_s is not None or r.token_times_s):
            raise Violation("rejected_never_served", None, r.id, "a rejected request was scheduled")
    # Causality and output tokens: each produced exactly once, in time order.
    fe = run.sim.frontend_latency_s
    for r in done:
        t = (r.arrival_s, r.first_scheduled_s, r.first_token_s, r.finish_s)
        if None in t or not (r.arrival_s + fe <= r.first_scheduled_s <= r.first_token_s <= r.finish_s):
            raise Violation("causality", None, r.id, f"arrival {r.arrival_s} (+{fe}), scheduled {r.first_scheduled_s}, first token {r.first_token_s}, finish {r.finish_s}")
        if strict_times and not r.first_scheduled_s < r.first_token_s:
            raise Violation("causality", None, r.id, "first token in zero time")
        if r.token_times_s is not None:
            tt = r.token_times_s
            if len(tt) != r.output_tokens:
                raise Violation("output_tokens_once", None, r.id, f"{len(tt)} token times for {r.output_tokens} output tokens")
            if tt[0] != r.first_token_s or tt[-1] != r.finish_s:
                raise Violation("token_times", None, r.id, f"first/last token time {tt[0]}/{tt[-1]} vs {r.first_token_s}/{r.finish_s}")
            for a, b in zip(tt, tt[1:]):
                if not (a < b if strict_times else a <= b):
                    raise Violation("itl_nonnegative", None, r.id, f"token times {a} then {b}")
        if r.preemptions < 0 or r.cached_tokens < 0:
            raise Violation("record_counts", None, r.id, f"preemptions {r.preemptions}, cached {r.cached_tokens}")
    if sum(r.preemptions for r in recs) != stats.preemptions:
        raise Violation("preemption_count", None, None, f"records {sum(r.preemptions for r in recs)} != engine {stats.preemptions}")
    # Prefix hits: whole blocks, inside the request's shared prefix, never for the first request of a group.
    specs = src.specs
    first_of_group: dict[str, list[RequestRecord]] = defaultdict(list)
    for r in done:
        spec = specs[r.id]
        shared = min(spec.prefix_tokens, spec.input_tokens) if spec.prefix_group is not None else 0
        limit = min(shared // bs, (r.input_tokens - 1) // bs) * bs if eng.enable_prefix_caching else 0
        if r.cached_tokens % bs or r.cached_tokens > limit:
            raise Violation("prefix_hit_identical_prefix", None, r.id, f"cached {r.cached_tokens} tokens, shared prefix {shared}, block {bs}, limit {limit}")
        if spec.prefix_group is not None:
            first_of_group[str(spec.prefix_group)].append(r)
    for group, members in first_of_group.items():
        t0 = min(m.first_scheduled_s for m in members)  # type: ignore[type-var]
        if all(m.cached_tokens for m in members if m.first_scheduled_s == t0):
            raise Violation("prefix_hit_needs_earlier_request", None, members[0].id, f"every first request of group {group!r} hit the cache")
    # Token accounting: prompt tokens computed = input - cached (+ recomputation after preemption); the last
    # output token is never fed back, so a request computes input + output - 1 tokens.
    need = sum(r.input_tokens - r.cached_tokens + r.output_tokens - 1 for r in done)
    computed = stats.prefill_tokens + stats.decode_tokens
    if (computed != need) if stats.preemptions == 0 else (computed < need):
        raise Violation("token_conservation", stats.steps, None,
                        f"computed {computed} (prefill {stats.prefill_tokens} + decode {stats.decode_tokens}) vs input - cached + output - 1 = {need}, "
                        f"{stats.preemptions} preemptions")
    if stats.preemptions == 0 and stats.decode_tokens > sum(r.output_tokens - 1 for r in done):
        raise Violation("token_conservation", stats.steps, None, f"{stats.decode_tokens} decode tokens > outputs - 1")
    if stats.prefix_cache_hit_tokens > stats.prefix_cache_queried_tokens or (not eng.enable_prefix_caching and stats.prefix_cache_hit_tokens):
        raise Violation("prefix_cache_stats", None, None, f"hits {stats.prefix_cache_hit_tokens} > queries {stats.prefix_cache_queried_tokens}")
    # Closed loop: never more requests in flight (arrived, not finished) than clients.
    if run.source.concurrency is not None:
        events = sorted([(r.arrival_s, 1) for r in recs] + [((r.finish_s if not r.rejected else r.arrival_s + fe), -1) for r in recs],
                        key=lambda e: (e[0], e[1]))
        live = peak = 0
        for _, d in events:
            live += d
            peak = max(peak, live)
        if peak > run.source.concurrency:
            raise Violation("closed_loop_concurrency", None, None, f"{peak} requests in flight > {run.source.concurrency} clients")
    if stats.kv_peak_usage > 1.0 or stats.busy_s > stats.duration_s * (1 + 1e-12) + 1e-12:
        raise Violation("engine_counters", None, None, f"kv peak {stats.kv_peak_usage}, busy {stats.busy_s} > duration {stats.duration_s}")
