"""vLLM's hybrid KV cache manager (engine/kv_hybrid.py): one block table per group over one pool — hand-traced."""

from __future__ import annotations

import json

import pytest

from servesim.config.engine import EngineConfig
from servesim.config.hardware import get_preset
from servesim.config.model import load_model
from servesim.engine import Simulator
from servesim.engine.capacity import activation_reserve_bytes
from servesim.engine.kv_groups import KVGroups
from servesim.engine.kv_hybrid import HybridKVCacheManager
from servesim.engine.request import RequestRecord
from servesim.engine.scheduler import EngineRequest, Scheduler
from servesim.errors import ConfigError
from servesim.simulation import check_kv_capacity, kv_blocks_for, resolve_engine, simulate

from ._helpers import ConstLatency, ListSource, engine, spec

ONE_EACH = KVGroups(2, 1, 1)  # group 0 slides, group 1 is full (vLLM's order: layer 0 slides)
TWO = {"input_tokens": 100, "output_tokens": 10, "num_requests": 2, "arrival": {"process": "poisson", "rate": 1}}


def req(i, inp, out=50, group=None, prefix=0):
    return EngineRequest(spec(i, 0.0, inp, out, group, prefix), RequestRecord(i, 0.0, inp, out), 16)


def test_every_group_gets_its_blocks_and_the_window_frees_them():
    kv = HybridKVCacheManager(num_blocks=40, block_size=16, enable_caching=False, sliding_window=32, groups=ONE_EACH)
    r = req(1, 100)
    assert kv.allocate_slots(r, 100)
    # ceil(100 / 16) = 7 blocks per group, popped group by group from the free-queue head (block 0 is the null block).
    assert r.tables == [[1, 2, 3, 4, 5, 6, 7], [8, 9, 10, 11, 12, 13, 14]] and r.blocks is r.tables[0]
    assert kv.pool.num_free == 39 - 14
    r.num_computed, r.num_tokens = 100, 101
    assert kv.allocate_slots(r, 1)  # the decode of token 101: no new block (7 x 16 = 112 slots)
    # (100 - 32 + 1) // 16 = 4 sliding blocks lie wholly before the window: freed, the full group keeps all 7.
    assert r.tables[0] == [0, 0, 0, 0, 5, 6, 7] and r.tables[1] == [8, 9, 10, 11, 12, 13, 14]
    assert kv.blocks_held(r) == 3 + 7 and kv.pool.num_free == 39 - 10
    kv.free(r)
    assert kv.pool.num_free == 39 and r.tables is None and r.blocks == []


def test_allocation_fails_whole_when_any_group_is_short():
    kv = HybridKVCacheManager(num_blocks=14, block_size=16, enable_caching=False, sliding_window=32, groups=ONE_EACH)
    r = req(1, 100)
    assert not kv.allocate_slots(r, 100)  # 14 blocks needed, 13 usable: nothing is taken
    assert kv.pool.num_free == 13 and kv.blocks_held(r) == 0


def test_prefix_hit_needs_all_groups_and_only_the_window_of_the_sliding_one():
    kv = HybridKVCacheManager(num_blocks=40, block_size=16, enable_caching=True, sliding_window=32, groups=ONE_EACH)
    a = req(1, 96, group="g", prefix=96)
    assert kv.allocate_slots(a, 96)
    assert a.tables == [[1, 2, 3, 4, 5, 6], [7, 8, 9, 10, 11, 12]] and a.num_cached_blocks == 6
    assert kv.pool.get_cached((("g", 0), 0)) == 1 and kv.pool.get_cached((("g", 0), 1)) == 7  # keys carry the group
    a.num_computed, a.num_tokens = 96, 97
    assert kv.allocate_slots(a, 1)
    # (96 - 32 + 1) // 16 = 4: sliding blocks 1..4 freed newest first (4, 3, 2, 1 join the queue tail), keys kept.
    assert a.tables[0][:4] == [0, 0, 0, 0]
    b = req(2, 100, group="g", prefix=96)
    hits, n = kv.get_computed_blocks(b)
    # max hit (100 - 1) // 16 = 6 blocks. Full group: all 6 cached. Sliding group: from the right, blocks 5 and 4
    # make a run of ceil((32 - 1) / 16) = 2, so the hit is all 6 blocks with the 4 before the run as the null block.
    assert hits == [[0, 0, 0, 0, 5, 6], [7, 8, 9, 10, 11, 12]] and n == 96
    free = kv.pool.num_free
    assert kv.allocate_slots(b, 4, hits, n)  # hit blocks are held by a: one new block per group
    assert kv.pool.num_free == free - 2 and kv.pool.ref_cnt[5] == 2 and kv.pool.ref_cnt[12] == 2
    kv.free(b)
    kv.free(a)
    assert kv.pool.num_free == 39


def test_full_group_miss_cuts_the_sliding_search_and_the_sliding_hit_cuts_the_full_one():
    kv = HybridKVCacheManager(num_blocks=40, block_size=16, enable_caching=True, sliding_window=32, groups=ONE_EACH)
    pool = kv.pool
    # Hand-made cache of idle blocks: full group holds (g, 0..4), sliding group (g, 0), (g, 1), (g, 3).
    for i in range(5):
        pool.cache_block(20 + i, (("g", i), 1))
    for i in (0, 1, 3):
        pool.cache_block(30 + i, (("g", i), 0))
    b = req(2, 100, group="g", prefix=100)
    hits, n = kv.get_computed_blocks(b)
    # Full: blocks 0..4 hit (5 is missing). Sliding within 5: block 4 missing, 3 alone, 2 missing, then 1 and 0 make
    # the run of 2: a hit of 2 blocks. The full group's hit is cut to those 2.
    assert hits == [[30, 31], [20, 21]] and n == 32
    need_before = pool.num_free
    assert kv.allocate_slots(b, 100 - 32, hits, n)
    # 7 blocks a group: 2 hit (idle, so they count as taken) + 5 new each.
    assert pool.num_free == need_before - 14
    # Sliding block 2 cached too: the sliding run is 2..3, the hit is 4 blocks (the ones before it null).
    kv2 = HybridKVCacheManager(num_blocks=40, block_size=16, enable_caching=True, sliding_window=32, groups=ONE_EACH)
    for i in range(5):
        kv2.pool.cache_block(20 + i, (("g", i), 1))
    for i in (0, 1, 2, 3):
        kv2.pool.cache_block(30 + i, (("g", i), 0))
    hits, n = kv2.get_computed_blocks(req(3, 100, group="g", prefix=100))
    assert hits == [[0, 0, 32, 33], [20, 21, 22, 23]] and n == 64


def test_most_blocks_one_request_needs():
    # gemma-3-27b: 1 full + 6 sliding groups of 10 layers, window 1024; 131,071 tokens of KV, 8,192 batched tokens.
    kv = HybridKVCacheManager(100, 16, True, 1024, KVGroups(10, 1, 6))
    # full group: ceil(131071 / 16) = 8,192; each sliding group: min(8192, ceil((1023 + 8192) / 16) + 1 = 577).
    assert kv.request_blocks_needed(131_071, 8192) == 8192 + 6 * 577
    assert kv.request_blocks_needed(100, 8192) == 7 * 7  # short requests: every group holds all their blocks


def test_scheduler_uses_the_hybrid_manager_only_for_both_kinds():
    assert isinstance(Scheduler(engine(), 100, 32, kv_groups=ONE_EACH).kv, HybridKVCacheManager)
    assert not isinstance(Scheduler(engine(), 100, 32, kv_groups=KVGroups(2, 0, 1)).kv, HybridKVCacheManager)
    s = Scheduler(engine(), 100, 32, kv_groups=ONE_EACH)
    # 2,009 tokens of KV: full group ceil(2009 / 16) = 126 blocks; sliding min(126, ceil((31 + 2048) / 16) + 1 = 131) = 126.
    assert s.reject_reason(spec(1, 0.0, 2000, 10)) == "kv_capacity: needs 252 blocks > 99 usable"


def test_invariants_hold_with_prefix_hits_and_the_window_saves_preemptions():
    shared = [spec(i, 0.01 * i, 900 + 37 * i, 40 + i, f"g{i % 3}", 512) for i in range(30)]
    hyb = Simulator(engine(), ConstLatency(), 600, check_invariants=True, sliding_window=128, kv_groups=ONE_EACH)
    st = hyb.run(ListSource(shared))  # invariants (every group's table, ref counts = holders) checked every step
    assert st.completed == 30 and st.prefix_cache_hit_tokens > 0
    assert hyb.scheduler.kv.pool.num_free == hyb.scheduler.kv.pool.num_usable
    # Same memory as one table of 300 blocks (a hybrid block is one layer's page of the two, not both): past the
    # window the sliding group gives its blocks back, so more requests run at once: fewer preemptions and steps.
    private = [spec(i, 0.01 * i, 900 + 37 * i, 40 + i) for i in range(30)]
    h = Simulator(engine(), ConstLatency(), 600, check_invariants=True, sliding_window=128, kv_groups=ONE_EACH).run(ListSource(private))
    one = Simulator(engine(), ConstLatency(), 300, check_invariants=True).run(ListSource(private))
    assert h.completed == one.completed == 30
    assert (h.preemptions, one.preemptions) == (5, 12) and h.steps < one.steps


def _available(name):
    m, hw, e = load_model(name), get_preset("H100"), EngineConfig()
    reserve = activation_reserve_bytes(2048, m.hidden_size, m.dense_intermediate_size or m.intermediate_size, 1)
    return m, hw, hw.usable_memory_bytes * e.gpu_memory_utilization - m.weight_bytes - reserve


def test_gemma_3_block_count_is_one_page_of_ten_layers():
    m, hw, avail = _available("gemma-3-27b-it")
    per_layer = m.kv_bytes_per_token_per_gpu(1) / m.num_layers
    assert (m.num_full_layers, m.num_sliding_layers) == (10, 52)
    assert kv_blocks_for(EngineConfig(), m, hw) == int(avail // (16 * per_layer * 10))
    assert kv_blocks_for(EngineConfig(disable_hybrid_kv_cache_manager=True), m, hw) == int(avail // (16 * per_layer * 62))


def test_start_up_check_counts_layers_not_groups():
    m, hw = load_model("gpt-oss-20b"), get_preset("H100")
    # max_model_len 131,072: 12 full layers x 8,192 pages + 12 sliding x min(8192, ceil((127 + 8192) / 16) + 1 = 521)
    # = 104,556 one-layer pages; a pool block is 12 layers' page, so ceil(104556 / 12) = 8,713 blocks are needed.
    ok = resolve_engine({"num_gpu_blocks_override": 8713}, m, hw, 1)
    check_kv_capacity(ok, m, 8713)
    short = resolve_engine({"num_gpu_blocks_override": 8712}, m, hw, 1)
    with pytest.raises(ConfigError, match=r"8,712 blocks of 16 tokens x 12 layers.*104,556 one-layer pages"):
        check_kv_capacity(short, m, 8712)
    # With the hybrid manager off every layer keeps the whole sequence: 8,192 blocks of all 24 layers.
    off = resolve_engine({"num_gpu_blocks_override": 8191, "disable_hybrid_kv_cache_manager": True}, m, hw, 1)
    with pytest.raises(ConfigError, match="needs 8,192 blocks"):
        check_kv_capacity(off, m, 8191)


def test_pipeline_parallel_hybrid_is_refused_in_one_line():
    with pytest.raises(ConfigError, match=r"--pipeline-parallel-size 2: gemma-2-9b mixes 21 full-attention and 21 "
                                          r"sliding-window layers.*--disable-hybrid-kv-cache-manager"):
        simulate("gemma-2-9b", engine={"pipeline_parallel_size": 2}, workload=TWO)
    r = simulate("gemma-2-9b", engine={"pipeline_parallel_size": 2, "disable_hybrid_kv_cache_manager": True},
                 workload=TWO)
    assert r.summary["completed"] == 2 and r.config["kv_cache_groups"] == {"hybrid": False, "sliding_window": 4096}


def test_simulate_gpt_oss_hybrid_beats_one_table_at_equal_memory():
    # gpt-oss-20b (window 128): at the same KV memory (6,000 hybrid blocks of 12 layers = 3,000 of 24), long prompts
    # keep only 128 tokens in half the layers, so fewer requests are preempted and TTFT drops.
    w = {"input_tokens": {"kind": "uniform", "min": 2000, "max": 7500}, "output_tokens": {"kind": "uniform", "min": 50, "max": 300},
         "arrival": {"process": "poisson", "rate": 8}, "num_requests": 150}
    eng = {"max_model_len": 8192}
    h = simulate("gpt-oss-20b", workload=w, seed=1, engine={**eng, "num_gpu_blocks_override": 6000}, check_invariants=True)
    o = simulate("gpt-oss-20b", workload=w, seed=1, engine={**eng, "num_gpu_blocks_override": 3000,
                                                             "disable_hybrid_kv_cache_manager": True})
    assert h.config["kv_cache_groups"] == {"hybrid": True, "group_size": 12, "full_groups": 1, "sliding_groups": 1,
                                           "sliding_window": 128}
    assert h.summary["completed"] == o.summary["completed"] == 150
    assert h.summary["preemptions"] < o.summary["preemptions"]
    assert h.summary["ttft_ms"]["mean"] < o.summary["ttft_ms"]["mean"]
    # Same answers with and without the per-step invariant checks (both take the exact reference path).
    again = simulate("gpt-oss-20b", workload=w, seed=1, engine={**eng, "num_gpu_blocks_override": 6000})
    assert again.summary == h.summary


def test_cluster_instances_run_the_hybrid_manager_and_pd_pools_turn_it_off():
    w = {"input_tokens": {"kind": "uniform", "min": 500, "max": 3000}, "output_tokens": 40,
         "arrival": {"process": "poisson", "rate": 10}, "num_requests": 60}
    r = simulate("gpt-oss-20b", workload=w, seed=2, instances=2, check_invariants=True)
    assert r.summary["completed"] == 60
    blocks = {p["num_gpu_blocks"] for p in r.config["cluster"]["pools"]}
    assert blocks == {kv_blocks_for(resolve_engine(None, load_model("gpt-oss-20b"), get_preset("H100"), 1),
                                    load_model("gpt-oss-20b"), get_preset("H100"))}
    pd = simulate("gpt-oss-20b", workload=w, seed=2, prefill_instances=1, decode_instances=1, check_invariants=True)
    assert pd.summary["completed"] == 60
    # vLLM turns the hybrid manager off under a KV connector: each PD instance holds one table of all 24 layers.
    m, hw = load_model("gpt-oss-20b"), get_preset("H100")
    off = kv_blocks_for(resolve_engine({"disable_hybrid_kv_cache_manager": True}, m, hw, 1), m, hw)
    assert {p["num_gpu_blocks"] for p in pd.config["cluster"]["pools"]} == {off}
    assert [p["kv_cache_groups"]["hybrid"] for p in pd.config["cluster"]["pools"]] == [False, False]
    assert r.config["cluster"]["pools"][0]["kv_cache_groups"]["hybrid"] is True


def _eagle_pair(kv):
    """Request a (96 tokens, all shared) allocated and decoded once; request b (100 tokens) sharing its prefix."""
    a = req(1, 96, group="g", prefix=96)
    assert kv.allocate_slots(a, 96)
    a.num_computed, a.num_tokens = 96, 97
    assert kv.allocate_slots(a, 1)  # sliding tables free their 4 blocks before the window (keys kept)
    return a, req(2, 100, group="g", prefix=96)


def test_eagle_drops_the_last_hit_block_in_every_kind_of_manager():
    from servesim.engine.kv_cache import KVCacheManager

    # Full attention (vLLM FullAttentionManager, use_eagle): 6 cached blocks hit, the last is dropped -> 5.
    kv = KVCacheManager(40, 16, True)
    kv.use_eagle = True
    _, b = _eagle_pair(kv)
    hits, n = kv.get_computed_blocks(b)
    assert hits == [1, 2, 3, 4, 5] and n == 80
    # Every layer slides (w 32): the run needs ceil(31 / 16) + 1 = 3 blocks (5, 4 and the freed-but-cached 3 at
    # positions 5, 4, 3), then its last is dropped: 5 blocks, the 3 before the run null. Without EAGLE: 6 blocks.
    kv = KVCacheManager(40, 16, True, sliding_window=32)
    kv.use_eagle = True
    _, b = _eagle_pair(kv)
    hits, n = kv.get_computed_blocks(b)
    assert hits == [0, 0, 0, 4, 5] and n == 80
    # Hybrid: the full groups' 6 hits drop one (5); the sliding run of 3 within 5 blocks ends at block 4 (positions
    # 2..4 = blocks 3, 4, 5), dropped to 4 blocks; the full hit is cut to 4.
    kv = HybridKVCacheManager(40, 16, True, 32, ONE_EACH)
    kv.use_eagle = True
    _, b = _eagle_pair(kv)
    hits, n = kv.get_computed_blocks(b)
    assert hits == [[0, 0, 3, 4], [7, 8, 9, 10]] and n == 64


def test_scheduler_sets_use_eagle_for_eagle_methods_only():
    from servesim.config.speculative import parse_speculative_config

    for method, eagle in (("eagle", True), ("mtp", True), ("ngram", False)):
        sc = parse_speculative_config(json.dumps({"method": method, "num_speculative_tokens": 2,
                                                  **({"model": "x"} if method == "eagle" else {})}), None)
        assert Scheduler(engine(speculative_config=sc), 100).kv.use_eagle is eagle
    assert Scheduler(engine(), 100).kv.use_eagle is False
