"""The cluster event loop: arrivals at the router, instance step completions and KV transfers on one clock.

A heap of (time s, priority, sequence, kind, payload), as in SimPy's core: ties at one time run in priority
order (scrape, arrival, KV received, step end, schedule), then in the order they were pushed. Every instance
steps through engine.core.EngineCore, the same step the single-engine loop (engine/simulator.py) runs, with
the same hand-over rule: a request reaching a busy instance joins at its next schedule (with async
scheduling: only if it arrived before the running step started), and an idle instance schedules at once.
tests/cluster/test_cluster.py checks that one instance here gives the single-engine answers bit for bit.
"""

from __future__ import annotations

import dataclasses
import heapq
from collections.abc import Callable
from dataclasses import dataclass, field

from servesim.cluster.instance import Instance, InstanceConfig
from servesim.cluster.link import KVLink
from servesim.cluster.router import Router, RouterConfig, make_router
from servesim.engine.core import EngineCore
from servesim.engine.invariants import InvariantError
from servesim.engine.kv_cache import cdiv
from servesim.engine.request import RequestRecord, RequestSource, RequestSpec
from servesim.engine.scheduler import EngineRequest
from servesim.engine.simulator import EngineStats, core_stats
from servesim.errors import ConfigError

SCRAPE, ARRIVAL, KV_DONE, STEP_END, SCHEDULE = 0, 1, 2, 3, 4


@dataclass
class ClusterStats:
    """What a cluster run produced: per-instance engine stats, router metrics, KV transfer times (s)."""

    duration_s: float = 0.0
    instances: list[EngineStats] = field(default_factory=list)
    routed: list[int] = field(default_factory=list)  # requests handed to each instance (prefill/decode legs too)
    ttft_sum_s: list[float] = field(default_factory=list)  # per instance: sum of TTFTs of requests it finished
    router: dict = field(default_factory=dict)
    transfers_s: list[float] = field(default_factory=list)  # PD: wire + latency, per request
    kv_wait_s: list[float] = field(default_factory=list)  # PD: prefill done -> transfer start (decode blocks, link FIFO)
    prefill_ttft_s: list[float] = field(default_factory=list)  # PD: first token on the prefill instance - arrival
    blocks_sent: int = 0
    blocks_received: int = 0
    arrivals: int = 0
    finished: int = 0  # completed + rejected, as the client sees them


def run_cluster(
    configs: list[InstanceConfig],
    source: RequestSource,
    router_cfg: RouterConfig,
    sink: Callable[[RequestRecord], None],
    *,
    link: KVLink | None = None,
    record_token_times: bool = False,
    check_invariants: bool = False,
    event_skipping: bool = True,
) -> ClusterStats:
    """Serve every request of source on the instances; each finished record goes to sink. Times in seconds."""
    stats = ClusterStats()
    heap: list = []
    seq = 0
    live = 0  # events in the heap other than scrapes
    pd = any(c.role == "decode" for c in configs)
    if pd and (link is None or any(c.role == "both" for c in configs) or not any(c.role == "prefill" for c in configs)):
        raise ConfigError("cluster: PD needs prefill and decode pools only (no 'both' pool) and a KV link")
    orig: dict[int, RequestSpec] = {}  # id(prefill-leg spec) -> the client's spec (PD)

    def final(spec: RequestSpec, rec: RequestRecord, t: float) -> None:
        stats.finished += 1
        source.on_finish(spec, t)
        sink(rec)

    instances: list[Instance] = []

    def make_emit(inst_ref: list) -> Callable[[RequestSpec, RequestRecord, float], None]:
        def emit(spec: RequestSpec, rec: RequestRecord, t: float) -> None:
            inst = inst_ref[0]
            if not rec.rejected and rec.first_token_s is not None:
                inst.ttft_sum += rec.first_token_s - rec.arrival_s
                inst.first_tokens += 1
            if inst.cfg.role == "prefill":
                prefill_done(inst, spec, rec, t)
            else:
                final(spec, rec, t)
        return emit

    for i, c in enumerate(configs):
        ref: list = [None]
        core = EngineCore(c.engine, c.latency, c.num_gpu_blocks, make_emit(ref), record_token_times=record_token_times,
                          check_invariants=check_invariants, event_skipping=event_skipping, sliding_window=c.sliding_window,
                          kv_groups=c.kv_groups)
        inst = Instance(i, c, core)
        ref[0] = inst
        instances.append(inst)
    front = [x for x in instances if x.cfg.role != "decode"]
    back = [x for x in instances if x.cfg.role == "decode"]
    router = make_router(router_cfg, len(front))
    drouter = make_router(dataclasses.replace(router_cfg), len(back)) if back else None
    staleness = router_cfg.staleness
    snap: dict[int, list] = {}  # id(router) -> last scraped state of its pool

    def push(t: float, prio: int, obj: object) -> None:
        nonlocal seq, live
        heapq.heappush(heap, (t, prio, seq, obj))
        seq += 1
        if prio != SCRAPE:
            live += 1

    def wake(inst: Instance, t: float) -> None:
        if not inst.busy and not inst.pending:
            inst.pending = True
            push(t, SCHEDULE, inst)

    def state_for(r: Router, pool: list[Instance]) -> list | None:
        if not r.needs_state:
            return None
        if staleness > 0:
            return snap[id(r)]
        return [x.state() for x in pool]

    def scrape() -> None:
        for r, pool in ((router, front), (drouter, back)):
            if r is not None:
                s = [x.state() for x in pool]
                snap[id(r)] = s
                r.scraped(s)

    def prefill_done(p: Instance, pspec: RequestSpec, rec: RequestRecord, t: float) -> None:
        spec = orig.pop(id(pspec))
        if rec.rejected:
            out = RequestRecord(id=spec.id, arrival_s=spec.arrival_s, input_tokens=spec.input_tokens,
                                output_tokens=spec.output_tokens, stage=spec.stage, rejected=True,
                                reject_reason=rec.reject_reason, token_times_s=[] if record_token_times else None)
            final(spec, out, t)
            return
        stats.prefill_ttft_s.append(rec.first_token_s - rec.arrival_s)  # type: ignore[operator]
        # The decode leg computes no prefix: the whole prompt's KV arrives from the prefill instance.
        dspec = dataclasses.replace(spec, prefix_group=None, prefix_tokens=0)
        d = back[drouter.route(dspec, state_for(drouter, back))]  # type: ignore[union-attr]
        d.routed += 1
        req = d.core.new_remote(dspec)
        if req is None:
            return  # rejected by the decode instance (emitted as final)
        d.to_reserve.append((req, (p, t)))
        wake(d, t)

    def start_transfers(d: Instance, t: float) -> None:
        # vLLM NIXL: the decode scheduler allocates the blocks (at its schedule()), then the worker reads the KV.
        while d.to_reserve:
            req, (p, t_ready) = d.to_reserve[0]
            if not d.core.reserve(req):
                return
            d.to_reserve.popleft()
            n_p = cdiv(req.spec.input_tokens, p.cfg.engine.block_size)
            nbytes = n_p * p.cfg.engine.block_size * p.cfg.kv_bytes_per_token  # whole blocks cross the link
            wire = link.transfer_s(nbytes, min(p.cfg.gpus, d.cfg.gpus))  # type: ignore[union-attr]
            start = max(t, p.link_free_s)  # one transfer at a time per prefill instance (FIFO)
            p.link_free_s = start + wire
            done = start + wire + link.latency_s  # type: ignore[union-attr]
            stats.blocks_sent += n_p
            stats.transfers_s.append(done - start)
            stats.kv_wait_s.append(start - t_ready)
            push(done, KV_DONE, (d, req, n_p))

    def schedule(inst: Instance, t: float) -> None:
        inst.pending = False
        core = inst.core
        if inst.to_reserve:
            start_transfers(inst, t)
        cutoff = t if (inst.idle or not inst.async_sched) else inst.prev_start
        inbox = inst.inbox
        while inbox and inbox[0][0] <= cutoff:
            _take(core, inbox.popleft()[1])
        if not core.has_work():
            inst.idle = True
            if not inbox:
                return
            while inbox:  # handed over during the last step: an idle engine takes them at once
                _take(core, inbox.popleft()[1])
            if not core.has_work():
                return
        inst.idle = False
        dt = core.begin_step(t)
        if dt < 0:  # stalled: every free block is promised to KV in flight; the next KV arrival wakes it
            inst.idle = True
            return
        inst.prev_start = t
        inst.busy = True
        push(t + dt, STEP_END, inst)

    if staleness > 0:
        scrape()
        push(staleness, SCRAPE, 1)
    now = 0.0
    while True:
        ta = source.peek_arrival_s()
        if heap and (ta is None or (heap[0][0], heap[0][1]) < (ta, ARRIVAL)):
            t, prio, _, obj = heapq.heappop(heap)
            now = t
            if prio == SCRAPE:
                if live == 0 and ta is None:
                    continue
                scrape()
                k = obj + 1  # scrape number: times are k * staleness (no drift)
                if live == 0 and ta is not None and ta > k * staleness:
                    k = max(k, int(ta / staleness))  # nothing changes while idle: skip to the last scrape before ta
                push(k * staleness, SCRAPE, k)
                continue
            live -= 1
            if prio == STEP_END:
                if obj.core.end_step(t):  # finished requests may let closed-loop clients send their next one
                    ta = source.peek_arrival_s()
                obj.busy = False
                if (not heap or heap[0][0] > t) and (ta is None or ta > t):
                    schedule(obj, t)  # nothing else happens at t: the SCHEDULE event would be next anyway
                else:
                    obj.pending = True
                    push(t, SCHEDULE, obj)
            elif prio == SCHEDULE:
                schedule(obj, t)
            else:  # KV_DONE
                d, req, n_p = obj
                stats.blocks_received += n_p
                d.inbox.append((t, req))
                wake(d, t)
        elif ta is not None:
            now = ta
            spec = source.pop()
            stats.arrivals += 1
            inst = front[router.route(spec, state_for(router, front))]
            inst.routed += 1
            if pd:
                pspec = dataclasses.replace(spec, output_tokens=1)  # vLLM NIXL: the prefill leg runs max_tokens=1
                orig[id(pspec)] = spec
                spec = pspec
            inst.inbox.append((ta, spec))
            wake(inst, ta)
        else:
            break

    stats.duration_s = now
    stats.instances = [core_stats(x.core, EngineStats(), now) for x in instances]
    stats.routed = [x.routed for x in instances]
    stats.ttft_sum_s = [x.ttft_sum for x in instances]
    stats.router = router.metrics() | ({"decode": drouter.metrics()} if drouter is not None else {})
    if check_invariants:
        check_cluster(stats, instances, pd)
    return stats


def check_cluster(stats: ClusterStats, instances: list[Instance], pd: bool) -> None:
    """Raise InvariantError unless every request was routed once and finished or rejected once, and KV blocks
    sent equal blocks received."""
    if stats.blocks_sent != stats.blocks_received:
        raise InvariantError("kv_blocks_sent_received", 0, None, f"sent {stats.blocks_sent}, received {stats.blocks_received}")
    front = [x for x in instances if x.cfg.role != "decode"]
    if sum(x.routed for x in front) != stats.arrivals:
        raise InvariantError("routed_once", 0, None, f"{stats.arrivals} arrivals, {sum(x.routed for x in front)} routed")
    if stats.finished != stats.arrivals:
        raise InvariantError("finished_once", 0, None, f"{stats.arrivals} arrivals, {stats.finished} finished or rejected")
    for x, s in zip(instances, stats.instances):
        if s.completed + s.rejected != x.routed:
            raise InvariantError("instance_conservation", s.steps, None,
                                 f"instance {x.index}: routed {x.routed}, completed {s.completed} + rejected {s.rejected}")


def _take(core: EngineCore, item: EngineRequest | RequestSpec) -> None:
    """Hand one inbox item to the engine: a PD request whose KV has arrived, or a new request to admit."""
    if isinstance(item, EngineRequest):
        core.receive(item)
    else:
        core.admit(item)
