"""Sliding-window KV blocks (vLLM SlidingWindowManager): blocks outside the window are freed as a request advances."""

from __future__ import annotations

from servesim.engine import Simulator
from servesim.engine.kv_cache import KVCacheManager
from servesim.engine.request import RequestRecord
from servesim.engine.scheduler import EngineRequest, Scheduler
from servesim.config.engine import EngineConfig
from servesim.engine.kv_groups import KVGroups
from servesim.simulation import engine_kv_layout, simulate
from servesim.config.model import load_model

from ._helpers import ConstLatency, ListSource, engine, spec


def req(i, inp, out=50, bs=16):
    return EngineRequest(spec(i, 0.0, inp, out), RequestRecord(i, 0.0, inp, out), bs)


def test_blocks_outside_the_window_are_freed():
    kv = KVCacheManager(num_blocks=20, block_size=16, enable_caching=False, sliding_window=32)
    r = req(1, 100)
    assert kv.allocate_slots(r, 100)
    assert len(r.blocks) == 7 and kv.pool.num_free == 19 - 7  # ceil(100 / 16)
    r.num_computed = 100
    r.num_tokens = 101
    assert kv.append_slot(r, 101)
    # Skipped tokens: 100 - 32 + 1 = 69 -> blocks 0..3 (tokens 0..63) lie wholly before the window.
    assert r.blocks[:4] == [0, 0, 0, 0] and kv.blocks_held(r) == 3
    assert kv.pool.num_free == 19 - 3
    kv.free(r)
    assert kv.pool.num_free == 19 and r.blocks == []


def test_full_attention_keeps_every_block():
    kv = KVCacheManager(num_blocks=20, block_size=16, enable_caching=False)
    r = req(1, 100)
    kv.allocate_slots(r, 100)
    r.num_computed, r.num_tokens = 100, 101
    kv.append_slot(r, 101)
    assert kv.blocks_held(r) == 7


def test_request_longer_than_the_cache_fits_inside_the_window():
    # 5,000 prompt tokens need 313 blocks of 16 in full attention; with a 512-token window vLLM needs at most
    # cdiv(512 - 1 + 2048, 16) + 1 = 161 blocks, so a 200-block cache serves it.
    sched = Scheduler(engine(), 200, sliding_window=512)
    assert sched.reject_reason(spec(1, 0.0, 5000, 10)) == ""
    full = Scheduler(engine(), 200)
    assert full.reject_reason(spec(1, 0.0, 5000, 10)).startswith("kv_capacity")


def test_kv_conservation_with_window_freeing():
    specs = [spec(i, 0.01 * i, 900 + 37 * i, 40 + i) for i in range(30)]
    sim = Simulator(engine(), ConstLatency(), 300, check_invariants=True, sliding_window=256)
    stats = sim.run(ListSource(specs))  # invariants (block conservation, ref counts = holders) checked every step
    assert stats.completed == 30
    pool = sim.scheduler.kv.pool
    assert pool.num_free == pool.num_usable  # everything returned
    # The same load without the window preempts (it needs more blocks than the cache holds at once).
    full = Simulator(engine(), ConstLatency(), 300, check_invariants=True).run(ListSource(specs))
    assert full.completed == 30 and full.preemptions > stats.preemptions


def test_kv_layout_of_each_kind_of_model():
    e = EngineConfig()
    assert engine_kv_layout(e, load_model("mistral-7b-v0.1")) == (4096, None)  # every layer slides: one group
    assert engine_kv_layout(e, load_model("llama-3.1-8b-instruct")) == (0, None)
    assert engine_kv_layout(e, load_model("gemma-2-9b")) == (4096, KVGroups(21, 1, 1))  # hybrid manager
    # Turned off by the flag and by any KV connector (CPU offload, PD transfer): every layer full, one table.
    off = (0, None)
    assert engine_kv_layout(EngineConfig(disable_hybrid_kv_cache_manager=True), load_model("gemma-2-9b")) == off
    assert engine_kv_layout(EngineConfig(kv_offloading_size=8.0), load_model("gemma-2-9b")) == off
    assert engine_kv_layout(e, load_model("gemma-2-9b"), kv_transfer=True) == off
    assert engine_kv_layout(EngineConfig(disable_hybrid_kv_cache_manager=True), load_model("mistral-7b-v0.1")) == (4096, None)


def test_simulate_uses_the_window_for_all_sliding_models():
    w = {"input_tokens": {"kind": "uniform", "min": 5000, "max": 9000}, "output_tokens": {"kind": "uniform", "min": 20, "max": 60},
         "arrival": {"process": "poisson", "rate": 5}, "num_requests": 30}
    a = simulate("mistral-7b-v0.1", workload=w, seed=3, engine={"num_gpu_blocks_override": 2000}, check_invariants=True)
    b = simulate("mistral-7b-v0.1", workload=w, seed=3, engine={"num_gpu_blocks_override": 2000})
    assert a.summary == b.summary  # the reference path either way (event skipping is off for sliding windows)


def test_window_prefix_hit_needs_only_the_window_blocks():
    # vLLM SlidingWindowManager.find_longest_cache_hit: a hit needs the last ⌈(w − 1) / bs⌉ = 2 blocks cached.
    kv = KVCacheManager(num_blocks=12, block_size=16, enable_caching=True, sliding_window=32)
    a = EngineRequest(spec(1, 0.0, 96, 50, "g", 96), RequestRecord(1, 0.0, 96, 50), 16)
    assert kv.allocate_slots(a, 96) and a.blocks == [1, 2, 3, 4, 5, 6]  # registered as (g, 0) .. (g, 5)
    a.num_computed, a.num_tokens = 96, 97
    assert kv.append_slot(a, 97)
    # (96 − 32 + 1) // 16 = 4 blocks left the window: freed newest first, keys kept until evicted.
    assert a.blocks[:4] == [0, 0, 0, 0] and a.blocks[6] == 7
    kv.pool.get_new_blocks(6)  # 8, 9, 10, 11, then blocks 4 and 3: (g, 3) and (g, 2) are evicted
    assert kv.pool.get_cached(("g", 2)) is None and kv.pool.get_cached(("g", 0)) == 1
    b = EngineRequest(spec(2, 0.0, 100, 10, "g", 96), RequestRecord(2, 0.0, 100, 10), 16)
    hits, n = kv.get_computed_blocks(b)
    assert hits == [0, 0, 0, 0, 5, 6] and n == 96  # a walk from the start would stop at (g, 2): 32 tokens
    free_before = kv.pool.num_free
    assert kv.allocate_slots(b, 4, hits, n)  # the hit blocks are held by a: only the new block is allocated
    assert kv.pool.num_free == free_before - 1 and b.blocks == [0, 0, 0, 0, 5, 6, b.blocks[6]]
    kv.free(b)
    kv.free(a)
    assert kv.pool.num_free == kv.pool.num_usable - 6  # all but the 6 blocks popped by hand


def test_window_prefix_caching_run_keeps_invariants():
    specs = [spec(i, 0.02 * i, 700 + 13 * i, 30, f"g{i % 3}", 600) for i in range(40)]
    sim = Simulator(engine(), ConstLatency(), 250, check_invariants=True, sliding_window=128)
    stats = sim.run(ListSource(specs))
    assert stats.completed == 40 and stats.prefix_cache_hit_tokens > 0
    assert sim.scheduler.kv.pool.num_free == sim.scheduler.kv.pool.num_usable
