"""Event skipping: the same steps as `Scheduler.schedule()` + `update_from_output()`, with per-request work
only at that request's events.

A running request in the decode state (num_computed == num_tokens - 1, at least one output token) does the
same thing every step until one of its *events*: it needs a new KV block (or, in the rare case that it still
has shared-prefix blocks to register, one of them fills), or it finishes. Between events its counters grow by
exactly one per step, so instead of touching it every step we keep it *lazy*: its counters are `off + s`
(num_computed at the start of step s), `off + s + 1` (num_tokens) and `ooff + s` (num_output), and its
events sit in buckets keyed by step number. A step then costs O(events + prefilling requests) Python work
plus building the decode contexts `off + s` for the StepPlan (one numpy add over the offsets).

The latency model is still called once per step with the full StepPlan (contexts grow every step, so
every step's time is different); nothing about its inputs or their order changes.

A step takes the exact path instead (materialise every lazy request, run Scheduler.schedule() and
update_from_output(), re-lazify) when the running requests' tokens exceed the step budget (some running
request would not be scheduled). Every other step is provably the same as the exact one: all running
requests are scheduled in running (rank) order with uncapped token counts; phase (a)'s allocations either
cannot fail (below) or run in rank order with preemption from the tail, as the exact path does; phase (b)
(admission) runs the same code on the same pool state; finished requests are emitted and freed in the same
order. Private blocks that fill while decoding are never registered in the key map: event skipping puts the
KV cache in its deferred form (kv_cache.KVCacheManager.defer), where a preempted request's blocks become a
parked run, with the same hits and evictions. tests/engine/test_event_skipping.py checks records and
counters bit for bit against the exact path on varied workloads, and tests/perf/test_golden_outputs.py
against outputs pinned before the speed work.

Batched decode events. When the blocks phase (a) needs in total (prefilling requests' chunks plus one per
decode event of the step) fit the free queue, no allocation can fail, so no preemption happens and the
order of allocations does not matter: the step pops the same first k blocks of the free queue whatever
the order, every popped block loses its key all the same, and which of the (now key-less, single-
reference) blocks goes to which request is unobservable. Decode events register nothing, so the step's
decode events take their blocks in one slice, and the whole bucket moves to the step `block_size` later (a
request that finishes before then leaves it when it finishes). Otherwise (the blocks may run out, or a
request still has shared-prefix blocks to register) the step merges events and prefilling requests in rank
order as the exact path does, taking runs of events at once while blocks last and one at a time at the
shortfall, preempting from the tail.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left
from collections import deque as _deque
from operator import attrgetter

import numpy as np

from servesim.engine.scheduler import EngineRequest, Scheduler, SchedulerOutput, sample_tokens

_rank = attrgetter("rank")
_blocks = attrgetter("blocks")
_append = list.append
_frombuffer, _int64 = np.frombuffer, np.int64


class EventSkipper:
    """Drives a Scheduler with lazy decode requests; see the module docstring."""

    def __init__(self, sched: Scheduler, record_token_times: bool) -> None:
        self.sched = sched
        self.kv = sched.kv
        self.pool = sched.kv.pool
        self.bs = sched.block_size
        self.caching = sched.kv.enable_caching
        self.kv.defer()  # private blocks: parked runs at preemption (kv_cache.KVCacheManager.free_preempted)
        self.tt = record_token_times
        # Lazy decoders in running (rank) order: ranks, requests, and offsets (ctx at step s = off + s).
        self.dranks: list[int] = []
        self.dreqs: list[EngineRequest] = []
        self.doffs = array("q")  # C int64s: the StepPlan's contexts come from one numpy add (off + s)
        self.events: dict[int, list[EngineRequest]] = {}  # step -> lazy requests with a KV event in it
        self.ordered: set[int] = set()  # steps whose events must run in rank order (shared-prefix caching)
        self.fins: dict[int, list[EngineRequest]] = {}  # step -> lazy requests finishing in it
        self.prefillers: list[EngineRequest] = []  # non-lazy running requests, rank order
        self.next_rank = 0
        self.times: list[float] = []  # end time of step times_base + i (recorded only with token times)
        self.times_base = 0
        # The step in flight (between schedule() and update()).
        self._explicit: list[EngineRequest] = []
        self._preempted = False
        self._cut = 0  # lowest rank preempted this step: requests from it on are gone
        self._out = SchedulerOutput()

    # -- lazy bookkeeping --------------------------------------------------------------------------------
    def _reschedule(self, r: EngineRequest, s_from: int) -> None:
        """Bucket r's next KV event at or after step s_from: the step whose decode needs a new block.

        Private blocks that fill while decoding are registered when r is preempted (never observable
        earlier, kv_cache.KVCacheManager.free_preempted). A request that still has shared-prefix blocks to
        register (looked up by others, so registered in their own step) also gets an event at the step
        the next one fills, and that step runs its events in rank order.
        """
        bs = self.bs
        e = len(r.blocks) * bs - r.off  # first step whose num_tokens exceeds the held blocks
        slow = False
        if self.caching and r.num_cached_blocks < r.n_shared_blocks:
            c = (r.num_cached_blocks + 1) * bs - r.off - 1  # first step with num_tokens // bs > cached blocks
            if c < e:
                e = c
            slow = True
        if e < s_from:
            e = s_from
        r.evs = -1
        if e <= r.sfin:
            if slow:
                r.evs = e  # not len(blocks) * bs - off: remember it (see _drop_event)
                self.ordered.add(e)
            bucket = self.events.get(e)
            if bucket is None:
                self.events[e] = [r]
            else:
                bucket.append(r)

    def _drop_event(self, r: EngineRequest, g: int) -> None:
        """Take lazy r out of the bucket of its pending KV event, if that is after step g: the step whose
        decode needs a new block (len(blocks) * bs - off), unless _reschedule recorded another in r.evs."""
        e = r.evs
        if e <= g:
            e = len(r.blocks) * self.bs - r.off
        if e > g:
            bucket = self.events.get(e)
            if bucket is not None and r in bucket:
                bucket.remove(r)
        r.evs = -1

    def _lazify(self, r: EngineRequest, g: int) -> None:
        """Make a decode-state request lazy from step g on (g = steps completed)."""
        r.lazy = True
        off = r.off = r.num_computed - g
        r.ooff = r.num_output - g
        r.g0 = g
        sfin = r.sfin = r.max_tokens - 1 - r.ooff  # the step whose update brings num_output to max_tokens
        rank = r.rank
        dranks = self.dranks
        if not dranks or dranks[-1] < rank:
            dranks.append(rank)
            self.dreqs.append(r)
            self.doffs.append(off)
        else:
            i = bisect_left(dranks, rank)
            dranks.insert(i, rank)
            self.dreqs.insert(i, r)
            self.doffs.insert(i, off)
        bucket = self.fins.get(sfin)
        if bucket is None:
            self.fins[sfin] = [r]
        else:
            bucket.append(r)
        self._reschedule(r, g)

    def _token_times(self, r: EngineRequest, upto: int) -> None:
        """Append the step end times of steps r.g0 .. upto-1 to r's token times."""
        b = self.times_base
        r.rec.token_times_s.extend(self.times[r.g0 - b : upto - b])  # type: ignore[union-attr]

    def _unlazify(self, r: EngineRequest, g: int) -> None:
        """Materialise one lazy request at the start of step g and drop it from the lazy structures."""
        r.num_computed = r.off + g
        r.num_tokens = r.off + g + 1
        r.num_output = r.ooff + g
        if self.tt:
            self._token_times(r, g)
        r.lazy = False
        i = bisect_left(self.dranks, r.rank)
        del self.dranks[i], self.dreqs[i], self.doffs[i]
        self.fins[r.sfin].remove(r)
        self._drop_event(r, g)  # (an event in step g itself: its bucket is out of self.events already)

    def materialize(self, g: int) -> None:
        """Write every lazy request's counters (g = steps completed) and drop the lazy structures."""
        for r in self.dreqs:
            r.num_computed = r.off + g
            r.num_tokens = r.off + g + 1
            r.num_output = r.ooff + g
            if self.tt:
                self._token_times(r, g)
            r.lazy = False
            r.evs = -1
        self.dranks, self.dreqs, self.doffs = [], [], array("q")
        self.events.clear()
        self.ordered.clear()
        self.fins.clear()
        self.prefillers = []
        self.times.clear()
        self.times_base = g

    def rebuild(self, g: int) -> None:
        """After an exact step (g = steps completed): rank running requests and lazify the decoding ones."""
        self.times.clear()
        self.times_base = g
        prefillers = self.prefillers = []
        for i, r in enumerate(self.sched.running):
            r.rank = i
            if r.num_output and r.num_computed == r.num_tokens - 1:
                self._lazify(r, g)
            else:
                prefillers.append(r)
        self.next_rank = len(self.sched.running)

    # -- one step --------------------------------------------------------------------------------------
    def schedule(self, now: float, s: int) -> tuple[list[int], list[int], tuple[int, ...]] | None:
        """Schedule step s at clock `now`: (prefill_new, prefill_ctx, decode_ctx), or None for the exact path."""
        sched, kv, bs = self.sched, self.kv, self.bs
        threshold = sched.threshold
        pre = self.prefillers
        # Dry run of phase (a): with no cap binding, every running request is scheduled; count the blocks.
        tokens = len(self.dreqs)
        ns: list[int] = []
        need = 0
        for req in pre:
            n = req.num_tokens - req.num_computed
            if 0 < threshold < n:
                n = threshold
            ns.append(n)
            tokens += n
            k = -(-(req.num_computed + n) // bs) - len(req.blocks)
            if k > 0:
                need += k
        if tokens > sched.max_num_batched_tokens:
            return None

        caching = self.caching
        p_new: list[int] = []
        p_ctx: list[int] = []
        explicit: list[EngineRequest] = []
        self._explicit = explicit
        self._preempted = False
        events = self.events
        ev = events.pop(s, None)
        if ev:
            need += len(ev)
        ordered = self.ordered
        if need <= self.pool.nfree and not (ordered and s in ordered):
            # Phase (a), no allocation can fail: prefilling requests in rank order, then the decode events
            # of the step in one batch (module docstring).
            for k, req in enumerate(pre):
                self._schedule_chunk(req, ns[k], s, p_new, p_ctx)
            if ev:
                self._take_blocks(ev, s)
        else:
            # Phase (a) in rank order, as Scheduler.schedule(): prefilling requests and lazy requests' KV
            # events merged, preempting from the tail when blocks run out.
            slow = s in ordered
            ordered.discard(s)
            if ev and len(ev) > 1:
                ev.sort(key=_rank)
            ie, ne = 0, len(ev) if ev else 0
            for k, req in enumerate(pre):
                j = ie
                while j < ne and ev[j].rank < req.rank:  # type: ignore[index]
                    j += 1
                if j > ie:
                    self._events_in_order(ev, ie, j, s, slow)  # type: ignore[arg-type]
                    ie = j
                if self._preempted and req.rank >= self._cut:
                    break  # preempted from the tail earlier in this step
                if not self._schedule_chunk(req, ns[k], s, p_new, p_ctx):
                    break
            else:
                if ie < ne:
                    self._events_in_order(ev, ie, ne, s, slow)  # type: ignore[arg-type]
        doffs = self.doffs
        d_ctx = tuple((_frombuffer(doffs, _int64) + s).tolist()) if doffs else ()

        # Phase (b): WAITING requests, exactly as Scheduler.schedule(), only if nothing was preempted.
        budget = sched.max_num_batched_tokens - tokens
        waiting = sched.waiting
        if waiting and budget > 0 and not self._preempted:
            running = sched.running
            pool, stats = self.pool, kv.stats
            d_extra: list[int] = []
            while waiting and budget > 0:
                if len(running) == sched.max_num_seqs:
                    break
                req = waiting[0]
                if req.remote:  # KV received from a prefill instance (Scheduler.schedule, phase (b))
                    hit_blocks, num_hit = [], req.remote - 1
                elif req.n_shared_blocks or req.num_preemptions:
                    hit_blocks, num_hit = kv.get_computed_blocks(req)
                else:
                    # No key of a never-preempted request without a shared prefix can be cached: the lookup
                    # finds nothing (get_computed_blocks skips its walk too) but still counts in the stats.
                    hit_blocks, num_hit = None, 0
                    if caching:
                        stats.requests += 1
                        stats.queries += req.num_tokens
                n = req.num_tokens - num_hit
                if 0 < threshold < n:
                    n = threshold
                if not sched.chunked_prefill and n > budget:
                    break
                if n > budget:
                    n = budget
                if hit_blocks is None:
                    # A waiting request holds no blocks and has computed nothing: it needs cdiv(n, bs) blocks.
                    if -(-n // bs) > pool.nfree or not kv.allocate_slots(req, n):
                        break
                elif not kv.allocate_slots(req, n, hit_blocks, num_hit):
                    break
                waiting.popleft()
                running.append(req)
                req.remote = 0  # admitted: a later preemption recomputes everything locally
                req.rank = self.next_rank
                self.next_rank += 1
                rec = req.rec
                if rec.first_scheduled_s is None:
                    rec.first_scheduled_s = now
                    rec.cached_tokens = num_hit
                explicit.append(req)
                budget -= n
                if n == 1 and req.num_output and num_hit == req.num_tokens - 1:
                    d_extra.append(num_hit)
                else:
                    p_new.append(n)
                    p_ctx.append(num_hit)
                req.num_computed = num_hit + n
            if d_extra:
                d_ctx = d_ctx + tuple(d_extra)
        return p_new, p_ctx, d_ctx

    def _schedule_chunk(self, req: EngineRequest, n: int, s: int, p_new: list[int], p_ctx: list[int]) -> bool:
        """Schedule n more prompt tokens of a running request in step s: cache its newly full blocks, or
        allocate (preempting from the tail when blocks run out); False when no room can be made."""
        ctx = req.num_computed
        total = ctx + n
        bs = self.bs
        if total <= len(req.blocks) * bs:
            if self.caching:
                n_full = (total if total < req.num_tokens else req.num_tokens) // bs
                if n_full > req.num_cached_blocks:
                    self.kv.cache_upto(req, n_full)
        elif not self.kv.allocate_slots(req, n) and not self._make_room(req, n, s):
            return False
        self._explicit.append(req)
        p_new.append(n)
        p_ctx.append(ctx)
        req.num_computed = total
        return True

    def _make_room(self, req: EngineRequest, n: int, s: int) -> bool:
        """vLLM FCFS preemption after a failed allocation: pop the running tail until req fits (True) or is
        itself preempted (False). Victims always rank after req, so none was scheduled yet this step."""
        sched = self.sched
        running = sched.running
        while True:
            victim = running.pop()
            if victim.lazy:
                self._unlazify(victim, s)
            if not self._preempted:
                self._preempted = True
                self._out = SchedulerOutput()
            self._cut = victim.rank
            sched._preempt(victim, self._out)
            if victim is req:
                return False
            if self.kv.allocate_slots(req, n):
                return True

    def _take_blocks(self, rs: list[EngineRequest], s: int) -> None:
        """Decode events of lazy requests rs in step s that cannot fail (enough free blocks, no shared-prefix
        registration): one block each, in one slice; their next event is block_size steps later (a request
        that finishes before then is taken out of that bucket when it finishes)."""
        _deque(map(_append, map(_blocks, rs), self.pool.get_new_blocks(len(rs))), 0)
        nxt = s + self.bs
        bucket = self.events.get(nxt)
        if bucket is None:
            self.events[nxt] = rs
        else:
            bucket.extend(rs)

    def _events_in_order(self, ev: list[EngineRequest], i: int, j: int, s: int, slow: bool) -> bool:
        """Decode events ev[i:j] (rank order) of step s, as the exact phase (a) runs them: while blocks last,
        a run of them at once; at a shortfall one at a time, preempting from the tail. False when phase (a)
        ends (a request preempted itself)."""
        while i < j:
            r = ev[i]
            if not r.lazy:  # preempted earlier in this step (victims leave from the tail: the rest are too)
                return True
            k = self.pool.nfree
            if k and not slow:
                if k > j - i:
                    k = j - i
                run = ev[i : i + k]
                if not run[-1].lazy:
                    run = [x for x in run if x.lazy]
                self._take_blocks(run, s)
                i += len(run)
                continue
            if not self._decode_event(r, s):
                return False
            i += 1
        return True

    def _decode_event(self, r: EngineRequest, s: int) -> bool:
        """Lazy request r's KV event in step s: the same allocation / caching as the exact phase (a).
        False when r itself was preempted (phase (a) stops there)."""
        t = r.off + s + 1  # num_tokens == total tokens after this step's decode
        r.num_computed = t - 1
        r.num_tokens = t
        if t <= len(r.blocks) * self.bs:
            if self.caching and t // self.bs > r.num_cached_blocks:
                self.kv.cache_upto(r, t // self.bs)
        elif not self.kv.append_slot(r, t) and not self._make_room(r, 1, s):
            return False
        self._reschedule(r, s + 1)
        return True

    def update(self, now: float, s: int) -> list[EngineRequest]:
        """Apply step s, which ended at `now`: sample tokens, finish requests (in scheduled order), lazify."""
        tt = self.tt
        sched = self.sched
        explicit = self._explicit
        finished = sample_tokens(explicit, now, tt)
        if tt:
            self.times.append(now)
        fin = self.fins.pop(s, None)
        if fin:
            dranks, dreqs, doffs = self.dranks, self.dreqs, self.doffs
            g = s + 1
            for r in fin:
                self._drop_event(r, s)
                r.num_computed = r.off + g
                r.num_tokens = r.off + g + 1
                r.num_output = r.ooff + g
                if tt:
                    self._token_times(r, g)
                r.lazy = False
                r.rec.finish_s = now
                i = bisect_left(dranks, r.rank)
                del dranks[i], dreqs[i], doffs[i]
            if finished:
                finished.extend(fin)
                finished.sort(key=_rank)
            else:
                finished = fin
                if len(fin) > 1:
                    fin.sort(key=_rank)
        if finished:
            # Freed in running order (vLLM frees finished requests as it walks the scheduled ones), and
            # dropped from running keeping the survivors' order (running is sorted by rank).
            kv = self.kv
            running = sched.running
            for req in finished:
                kv.free(req)
                del running[bisect_left(running, req.rank, key=_rank)]
        g = s + 1
        prefillers = self.prefillers = []
        for req in explicit:
            if req.num_output >= req.max_tokens:
                continue
            if req.num_output and req.num_computed == req.num_tokens - 1:
                self._lazify(req, g)
            else:
                prefillers.append(req)
        return finished
