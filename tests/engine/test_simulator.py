"""The step loop: times, frontend latency, closed loop, rejection, determinism, invariants."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from servesim.engine import InvariantError, Simulator
from servesim.engine.invariants import check_step
from servesim.engine.request import RequestRecord
from servesim.engine.scheduler import EngineRequest, Scheduler
from servesim.errors import ConfigError, ServesimError

from ._helpers import ClosedLoopSource, ConstLatency, LinearLatency, ListSource, engine, spec


def test_ttft_token_times_and_e2e_by_hand():
    # 10 ms steps, prompt 100, output 4: token 1 at the end of step 1, then one per step.
    stats = Simulator(engine(), ConstLatency(0.010), 100, check_invariants=True).run(ListSource([spec(0, 0.0, 100, 4)]))
    (r,) = stats.records
    assert r.first_scheduled_s == 0.0
    assert r.first_token_s == pytest.approx(0.010)
    assert r.token_times_s == pytest.approx([0.010, 0.020, 0.030, 0.040])
    assert r.finish_s == pytest.approx(0.040)
    assert (stats.steps, stats.completed, stats.duration_s, stats.busy_s) == (4, 1, pytest.approx(0.04), pytest.approx(0.04))
    assert stats.kv_peak_usage == pytest.approx(7 / 99)  # 103 tokens -> 7 blocks of 99 usable


def test_idle_engine_jumps_to_the_next_arrival():
    stats = Simulator(engine(), ConstLatency(0.010), 100, check_invariants=True).run(
        ListSource([spec(0, 1.0, 10, 2), spec(1, 5.0, 10, 1)])
    )
    recs = {r.id: r for r in stats.records}
    assert recs[0].first_token_s == pytest.approx(1.010) and recs[0].finish_s == pytest.approx(1.020)
    assert recs[1].finish_s == pytest.approx(5.010)
    assert stats.duration_s == pytest.approx(5.010) and stats.busy_s == pytest.approx(0.030)


def test_frontend_latency_adds_to_ttft():
    # The engine sees the request 5 ms after arrival; TTFT counts from arrival.
    sim = Simulator(engine(), ConstLatency(0.010), 100, frontend_latency_s=0.005, check_invariants=True)
    stats = sim.run(ListSource([spec(0, 0.0, 100, 2), spec(1, 0.012, 10, 1)]))
    recs = {r.id: r for r in stats.records}
    assert recs[0].first_scheduled_s == pytest.approx(0.005)
    assert recs[0].first_token_s - recs[0].arrival_s == pytest.approx(0.015)
    # Request 1 reaches the engine at 17 ms, during step 2 (15-25 ms); it is scheduled at 25 ms.
    assert recs[1].first_scheduled_s == pytest.approx(0.025)
    assert recs[1].first_token_s - recs[1].arrival_s == pytest.approx(0.035 - 0.012)


def test_closed_loop_single_client_never_has_two_requests_in_flight():
    src = ClosedLoopSource(clients=1, per_client=6, input_tokens=50, output_tokens=3)
    stats = Simulator(engine(), ConstLatency(0.010), 100, check_invariants=True).run(src)
    assert stats.completed == 6 and src.max_in_flight == 1
    recs = sorted(stats.records, key=lambda r: r.id)
    for prev, nxt in zip(recs, recs[1:]):
        assert nxt.arrival_s == prev.finish_s  # the next request is sent when the previous one ends
    assert stats.steps == 18  # 3 steps per request, never overlapping


def test_closed_loop_clients_share_the_engine():
    src = ClosedLoopSource(clients=4, per_client=5, input_tokens=40, output_tokens=4)
    stats = Simulator(engine(), ConstLatency(0.010), 100, check_invariants=True).run(src)
    assert stats.completed == 20 and src.max_in_flight == 4


def test_rejections_are_counted_and_do_not_crash():
    specs = [
        spec(0, 0.0, 100, 50),  # 150 > max_model_len 128
        spec(1, 0.0, 20, 2),
        spec(2, 0.0, 120, 8),  # 128 tokens: allowed
        spec(3, 0.0, 0, 5),  # empty prompt
    ]
    src = ListSource(specs)
    stats = Simulator(engine(max_model_len=128), ConstLatency(0.010), 100, check_invariants=True).run(src)
    recs = {r.id: r for r in stats.records}
    assert stats.rejected == 2 and stats.completed == 2
    assert recs[0].rejected and recs[0].reject_reason.startswith("max_model_len")
    assert recs[3].rejected and recs[3].reject_reason.startswith("invalid")
    assert recs[0].finish_s is None and recs[0].first_token_s is None
    assert (0, 0.0) in src.finished  # the source is told, so a closed-loop client can go on
    assert not recs[2].rejected and len(recs[2].token_times_s) == 8


def test_request_larger_than_the_kv_cache_is_rejected():
    # 4 usable blocks = 64 tokens; 60 + 10 - 1 = 69 tokens of KV do not fit.
    stats = Simulator(engine(), ConstLatency(0.010), 5, check_invariants=True).run(
        ListSource([spec(0, 0.0, 60, 10), spec(1, 0.0, 60, 5)])
    )
    recs = {r.id: r for r in stats.records}
    assert recs[0].rejected and recs[0].reject_reason.startswith("kv_capacity")
    assert not recs[1].rejected and stats.completed == 1


def test_streaming_records_to_on_finish_keeps_stats_records_empty():
    seen = []
    stats = Simulator(engine(), ConstLatency(0.010), 100, record_token_times=False).run(
        ListSource([spec(i, 0.0, 10, 2) for i in range(3)]), on_finish=seen.append
    )
    assert stats.records == [] and len(seen) == 3 and all(r.token_times_s is None for r in seen)


def random_specs(seed: int, n: int = 60):
    rng = np.random.default_rng(seed)
    t = np.cumsum(rng.exponential(0.004, n))
    out = []
    for i in range(n):
        group = ["a", "b", None][int(rng.integers(3))]
        out.append(spec(i, float(t[i]), int(rng.integers(20, 400)), int(rng.integers(1, 40)), group, int(rng.integers(0, 200))))
    return out


def test_two_runs_give_identical_records():
    def once():
        sim = Simulator(engine(max_num_batched_tokens=256, max_num_seqs=8), LinearLatency(), 60, check_invariants=True)
        return sim.run(ListSource(random_specs(7)))

    a, b = once(), once()
    assert a.records == b.records and a.preemptions == b.preemptions and a.preemptions > 0
    assert a.prefix_cache_hit_tokens > 0


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    blocks=st.integers(30, 120),
    budget=st.sampled_from([32, 100, 512]),
    seqs=st.integers(1, 16),
    threshold=st.sampled_from([0, 48]),
    caching=st.booleans(),
)
def test_random_workloads_keep_invariants_and_finish(seed, blocks, budget, seqs, threshold, caching):
    specs = random_specs(seed, 25)
    cfg = engine(max_num_batched_tokens=budget, max_num_seqs=seqs, long_prefill_token_threshold=threshold,
                 enable_prefix_caching=caching, max_model_len=1024)
    stats = Simulator(cfg, LinearLatency(), blocks, check_invariants=True).run(ListSource(specs))
    assert stats.completed + stats.rejected == len(specs)
    for r in stats.records:
        if not r.rejected:
            assert len(r.token_times_s) == r.output_tokens and r.finish_s == r.token_times_s[-1]


def test_invariant_checker_catches_a_broken_refcount():
    sched = Scheduler(engine(), 50)
    sched.add(EngineRequest(spec(5, 0.0, 40, 3), RequestRecord(5, 0.0, 40, 3, token_times_s=[]), 16))
    out = sched.schedule(0.0)
    sched.update_from_output(out, 0.01, True)
    check_step(sched, out, 1, 0.0, 0.01)  # healthy
    sched.kv.pool.ref_cnt[sched.running[0].blocks[0]] += 1  # a reference nobody holds
    with pytest.raises(InvariantError) as e:
        check_step(sched, out, 1, 0.0, 0.01)
    assert e.value.invariant == "kv_refcount_matches_holders" and e.value.request_id == 5
    assert "step 1" in str(e.value) and isinstance(e.value, ServesimError)


def test_invariant_checker_catches_an_admission_after_preemption():
    sched = Scheduler(engine(), 50)
    sched.add(EngineRequest(spec(5, 0.0, 40, 3), RequestRecord(5, 0.0, 40, 3, token_times_s=[]), 16))
    out = sched.schedule(0.0)
    out.preempted.append(out.admitted[0])  # pretend the same step also preempted
    with pytest.raises(InvariantError, match="no_admission_after_preemption"):
        check_step(sched, out, 3, 0.0, 0.01)


def test_invariant_checker_catches_time_going_back():
    class Backwards(ConstLatency):
        def step_time(self, plan):
            return -0.001

    sim = Simulator(engine(), Backwards(), 50, check_invariants=True)
    with pytest.raises(InvariantError, match="clock_monotonic"):
        sim.run(ListSource([spec(0, 0.0, 40, 3)]))


def test_bad_configuration_is_a_config_error():
    from servesim.config.engine import EngineConfig

    with pytest.raises(ConfigError):
        Simulator(EngineConfig(), ConstLatency(), 100)  # unresolved: max_num_seqs is None
    with pytest.raises(ConfigError):
        Simulator(engine(), ConstLatency(), 100, frontend_latency_s=math.nan)


def test_async_scheduling_admits_one_step_later():
    # vLLM async scheduling: step k+1 is scheduled while step k runs. Request 1 is handed over at 12 ms,
    # during step 2 (10-20 ms); step 3 (20-30 ms) was scheduled at 10 ms without it, so it starts at 30 ms.
    sim = Simulator(engine(async_scheduling=True), ConstLatency(0.010), 100, check_invariants=True)
    stats = sim.run(ListSource([spec(0, 0.0, 100, 6), spec(1, 0.012, 10, 1)]))
    recs = {r.id: r for r in stats.records}
    assert recs[0].first_scheduled_s == 0.0  # an idle engine schedules at once
    assert recs[1].first_scheduled_s == pytest.approx(0.030)
    sync = Simulator(engine(async_scheduling=False), ConstLatency(0.010), 100, check_invariants=True)
    recs_sync = {r.id: r for r in sync.run(ListSource([spec(0, 0.0, 100, 6), spec(1, 0.012, 10, 1)])).records}
    assert recs_sync[1].first_scheduled_s == pytest.approx(0.020)


def test_async_scheduling_after_the_engine_drains():
    # Request 0 finishes at 20 ms; request 1 handed over at 15 ms was not in step 2's schedule, and with nothing
    # left running the engine schedules it at once when step 2 ends.
    sim = Simulator(engine(async_scheduling=True), ConstLatency(0.010), 100, check_invariants=True)
    recs = {r.id: r for r in sim.run(ListSource([spec(0, 0.0, 100, 2), spec(1, 0.015, 10, 1)])).records}
    assert recs[0].finish_s == pytest.approx(0.020)
    assert recs[1].first_scheduled_s == pytest.approx(0.020)
