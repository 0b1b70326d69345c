"""Event skipping (engine/skipping.py) changes speed only: records and counters are bit-identical to the
exact step-by-step path on varied workloads (floats compared with ==, not approx)."""

from __future__ import annotations

import dataclasses

import pytest

from servesim.engine import Simulator
from servesim.simulation import simulate

from ._helpers import ClosedLoopSource, LinearLatency, ListSource, engine, spec

GAUSS = {"kind": "gaussian", "mean": 300, "stdev": 200, "min": 2, "max": 1500}
OUT = {"kind": "gaussian", "mean": 120, "stdev": 80, "min": 1, "max": 400}

# name -> simulate() kwargs; each exercises a different part of the scheduler.
CASES = {
    "open_poisson": dict(workload={"input_tokens": GAUSS, "output_tokens": OUT, "arrival": {"process": "poisson", "rate": 30}, "num_requests": 150}),
    "closed_loop_think": dict(workload={"input_tokens": GAUSS, "output_tokens": OUT, "arrival": {"process": "concurrency", "concurrency": 24, "think_time_s": 0.05}, "num_requests": 120}),
    "prefix_groups": dict(workload={"shared_prefix": {"num_groups": 3, "users_per_group": 6, "system_prompt_len": 700, "question_len": 90, "output_len": 60}, "arrival": {"process": "poisson", "rate": 40}, "num_requests": 150}),
    "preemption_tiny_kv": dict(workload={"input_tokens": GAUSS, "output_tokens": OUT, "arrival": {"process": "poisson", "rate": 60}, "num_requests": 120},
                               engine={"num_gpu_blocks_override": 160, "max_model_len": 2560}),
    "preemption_prefix_tiny_kv": dict(workload={"shared_prefix": {"num_groups": 2, "users_per_group": 8, "system_prompt_len": 300, "question_len": 150, "output_len": 200}, "arrival": {"process": "poisson", "rate": 80}, "num_requests": 120},
                                      engine={"num_gpu_blocks_override": 120, "max_model_len": 1920}),
    "chunked_threshold_small_budget": dict(workload={"input_tokens": {"kind": "uniform", "min": 200, "max": 3000}, "output_tokens": OUT, "arrival": {"process": "gamma", "rate": 25, "cv": 3}, "num_requests": 120},
                                           engine={"max_num_batched_tokens": 512, "long_prefill_token_threshold": 200, "max_num_seqs": 48}),
    "staged_rates": dict(workload={"input_tokens": GAUSS, "output_tokens": OUT, "arrival": {"process": "constant", "stages": [{"rate": 5, "duration_s": 3}, {"rate": 40, "duration_s": 2}, {"rate": 10, "duration_s": 3}]}}),
    "no_chunked_prefill_no_caching": dict(workload={"input_tokens": GAUSS, "output_tokens": OUT, "arrival": {"process": "poisson", "rate": 40}, "num_requests": 120},
                                          engine={"enable_chunked_prefill": False, "max_num_batched_tokens": 4096, "max_model_len": 4096, "enable_prefix_caching": False, "num_gpu_blocks_override": 400}),
    "seat_limited_frontend": dict(workload={"input_tokens": GAUSS, "output_tokens": OUT, "arrival": {"process": "poisson", "rate": 50}, "num_requests": 120},
                                  engine={"max_num_seqs": 8}, frontend_latency_s=0.004),
    "corrected_model_tp2": dict(model="llama-2-70b-hf", tp=4, latency_model="roofline-v2-corrected",
                                workload={"input_tokens": GAUSS, "output_tokens": OUT, "arrival": {"process": "poisson", "rate": 20}, "num_requests": 100}),
}


def _run(case: dict, skip: bool, **extra):
    kw = {"seed": 3, **case, **extra}
    return simulate(kw.pop("model", "llama-2-7b-hf"), kw.pop("hardware", "H100"), kw.pop("tp", 1), event_skipping=skip, **kw)


@pytest.mark.parametrize("name", sorted(CASES))
def test_event_skipping_is_bit_identical(name):
    exact = _run(CASES[name], False)
    fast = _run(CASES[name], True)
    assert fast.summary == exact.summary
    assert fast.stages == exact.stages
    assert [dataclasses.astuple(r) for r in fast.records] == [dataclasses.astuple(r) for r in exact.records]
    for field in ("steps", "preemptions", "rejected", "completed", "duration_s", "busy_s", "kv_peak_usage",
                  "prefix_cache_queried_tokens", "prefix_cache_hit_tokens", "prefix_cache_preempted_queried_tokens",
                  "prefix_cache_preempted_hit_tokens", "prefill_tokens", "decode_tokens"):
        assert getattr(fast.stats, field) == getattr(exact.stats, field), field


def test_the_varied_cases_really_exercise_preemption_prefix_hits_and_rejections():
    assert _run(CASES["preemption_tiny_kv"], True).summary["preemptions"] > 10
    pref = _run(CASES["preemption_prefix_tiny_kv"], True)
    assert pref.summary["preemptions"] > 5 and pref.stats.prefix_cache_preempted_hit_tokens > 0
    assert _run(CASES["prefix_groups"], True).summary["prefix_cache_hit_rate"] > 0.3
    assert len(_run(CASES["staged_rates"], True).stages) == 3


def test_streaming_mode_without_token_times_is_identical_too():
    case = CASES["preemption_tiny_kv"]
    a = _run(case, False, keep_requests=False)
    b = _run(case, True, keep_requests=False)
    assert a.summary == b.summary and a.requests == b.requests == []


def _records(stats):
    return sorted((dataclasses.astuple(r) for r in stats.records), key=lambda t: t[0])


@pytest.mark.parametrize("blocks,kw", [
    (40, {}),  # heavy preemption
    (300, {"max_num_batched_tokens": 64, "long_prefill_token_threshold": 24}),  # budget binds: exact-path fallbacks
    (60, {"enable_prefix_caching": False, "block_size": 8}),
])
def test_engine_level_fakes_identical(blocks, kw):
    specs = [spec(i, 0.002 * i, 20 + (37 * i) % 200, 1 + (13 * i) % 90, group="g" if i % 3 == 0 else None, prefix=48) for i in range(80)]
    runs = []
    for skip in (False, True):
        sim = Simulator(engine(**kw), LinearLatency(0.004, 3e-6), blocks, event_skipping=skip)
        runs.append(sim.run(ListSource(list(specs))))
    a, b = runs
    assert _records(a) == _records(b)
    assert (a.steps, a.preemptions, a.busy_s, a.kv_peak_usage, a.prefix_cache_hit_tokens) == (
        b.steps, b.preemptions, b.busy_s, b.kv_peak_usage, b.prefix_cache_hit_tokens)


def test_closed_loop_fake_identical():
    runs = []
    for skip in (False, True):
        src = ClosedLoopSource(clients=12, per_client=6, input_tokens=90, output_tokens=33)
        runs.append(Simulator(engine(), LinearLatency(), 50, event_skipping=skip).run(src))
    assert runs[0].preemptions > 0
    # Same emission order (stats.records is in completion order), so the same follow-up requests.
    assert [dataclasses.astuple(r) for r in runs[0].records] == [dataclasses.astuple(r) for r in runs[1].records]


def test_blocks_filled_while_decoding_are_cached_and_hit_after_preemption():
    # Two long decodes in 20 usable blocks: B (the tail) is preempted, A evicts only B's last blocks,
    # and B's resume hits blocks that became full *during decode* (lazy cache events must register them).
    specs = [spec(0, 0.0, 16, 200), spec(1, 0.001, 16, 200)]
    runs = []
    for skip in (False, True):
        runs.append(Simulator(engine(), LinearLatency(0.004, 3e-6), 21, event_skipping=skip).run(ListSource(list(specs))))
    a, b = runs
    assert a.preemptions >= 1 and a.prefix_cache_preempted_hit_tokens > 16  # more than the prompt's one block
    assert _records(a) == _records(b)
    assert (a.prefix_cache_preempted_hit_tokens, a.steps, a.busy_s) == (b.prefix_cache_preempted_hit_tokens, b.steps, b.busy_s)


def _drive_kv(defer: bool, seed: int, num_blocks: int, bs: int) -> list:
    """Random admit / decode / preempt / finish sequence on one KVCacheManager; everything observable, logged."""
    import random

    from servesim.engine.kv_cache import KVCacheManager
    from servesim.engine.request import RequestRecord
    from servesim.engine.scheduler import EngineRequest

    rng = random.Random(seed)
    kv = KVCacheManager(num_blocks, bs, True)
    if defer:
        kv.defer()
    waiting = [EngineRequest(spec(i, 0.0, rng.randint(1, 90), 60, rng.choice([None, None, "a", "b"]), rng.choice([16, 40, 64])),
                             RequestRecord(i, 0.0, 1, 1), bs) for i in range(60)]
    running: list = []
    log: list = []
    for _ in range(900):
        op = rng.random()
        if waiting and op < 0.3:
            r = waiting[0]
            hits, n = kv.get_computed_blocks(r)
            ok = kv.allocate_slots(r, r.num_tokens - n, hits, n)
            log.append(("admit", r.id, list(hits), n, ok))
            if ok:
                waiting.pop(0)
                running.append(r)
                r.num_computed = r.num_tokens
                r.num_tokens += 1  # the step samples a token: as in the engine, num_computed == num_tokens - 1
        elif running and op < 0.8:
            r = rng.choice(running)
            ok = kv.allocate_slots(r, 1)  # decode the last sampled token
            log.append(("decode", r.id, ok))
            if ok:
                r.num_computed += 1
                r.num_tokens += 1
        elif running and op < 0.93:
            r = running.pop()  # FCFS preemption takes the tail
            kv.free_preempted(r)
            r.num_computed = 0
            r.num_preemptions += 1
            waiting.insert(0, r)
            log.append(("preempt", r.id))
        elif running:
            r = running.pop(rng.randrange(len(running)))
            kv.free(r)
            log.append(("finish", r.id))
        log.append((kv.pool.num_free, list(kv.pool.free), dataclasses.astuple(kv.stats)))
    return log


@pytest.mark.parametrize("seed", range(6))
def test_parked_runs_match_registering_every_block(seed):
    # KVCacheManager.defer() (event skipping): private blocks parked at preemption, never in the key map.
    # Same hits (block ids included), same free-queue order, same stats as eager registration.
    for num_blocks, bs in ((40, 16), (90, 8), (200, 16)):
        eager = _drive_kv(False, seed, num_blocks, bs)
        deferred = _drive_kv(True, seed, num_blocks, bs)
        assert deferred == eager
        assert eager[-1][2][2] > 0 and eager[-1][2][5] > 0  # shared-prefix hits and hits after preemption
