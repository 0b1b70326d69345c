"""Block pool and prefix cache, after vLLM V1 block_pool.py / kv_cache_manager.py."""

from __future__ import annotations

import pytest

from servesim.engine import Simulator
from servesim.engine.kv_cache import BlockPool, KVCacheManager
from servesim.engine.request import RequestRecord
from servesim.engine.scheduler import EngineRequest
from servesim.errors import ConfigError
from servesim.latency.plan import StepPlan

from ._helpers import ConstLatency, ListSource, engine, spec


def req(i, inp, group=None, prefix=0, bs=16):
    s = spec(i, 0.0, inp, 1, group, prefix)
    return EngineRequest(s, RequestRecord(i, 0.0, inp, 1), bs)


def test_null_block_is_reserved_and_usage_counts_usable_blocks():
    pool = BlockPool(5, True)
    assert pool.num_usable == 4 and pool.num_free == 4 and 0 not in pool.free
    assert pool.get_new_blocks(2) == [1, 2]  # free queue starts in block-id order
    assert pool.usage() == pytest.approx(0.5)
    with pytest.raises(ConfigError):
        BlockPool(1, True)


def test_freed_blocks_go_to_the_tail_in_reverse_and_keep_their_key_until_reused():
    kv = KVCacheManager(num_blocks=7, block_size=16, enable_caching=True)
    a = req(1, 64)
    assert kv.allocate_slots(a, 64)
    assert a.blocks == [1, 2, 3, 4] and a.num_cached_blocks == 4
    kv.free(a)
    # Tail blocks first, so the request's last block is the next to be evicted.
    assert list(kv.pool.free) == [5, 6, 4, 3, 2, 1]
    assert kv.pool.get_cached((1, 3)) == 4
    b = req(2, 48)
    assert kv.allocate_slots(b, 48)
    assert b.blocks == [5, 6, 4]  # block 4 popped for reuse: its key (1, 3) is dropped now
    assert kv.pool.get_cached((1, 3)) is None
    assert kv.pool.get_cached((1, 2)) == 3  # still cached though free


def test_hit_on_a_free_cached_block_pulls_it_out_of_the_free_queue():
    kv = KVCacheManager(num_blocks=9, block_size=16, enable_caching=True)
    a = req(1, 40, "sys", 32)
    assert kv.allocate_slots(a, 40)
    kv.free(a)
    b = req(2, 50, "sys", 32)
    hits, n = kv.get_computed_blocks(b)
    assert (hits, n) == ([1, 2], 32)
    assert kv.allocate_slots(b, 50 - n, hits, n)
    assert b.blocks[:2] == [1, 2] and kv.pool.ref_cnt[1] == 1 and 1 not in kv.pool.free
    assert (kv.stats.queries, kv.stats.hits) == (50, 32)


def test_allocation_counts_idle_hit_blocks_against_free_blocks():
    # 3 usable blocks: the two cached (idle) hit blocks + 2 new ones = 4 > 3 -> refused, nothing touched.
    kv = KVCacheManager(num_blocks=4, block_size=16, enable_caching=True)
    a = req(1, 32, "g", 32)
    assert kv.allocate_slots(a, 32)
    kv.free(a)
    b = req(2, 64, "g", 32)
    hits, n = kv.get_computed_blocks(b)
    assert n == 32
    assert not kv.allocate_slots(b, 32, hits, n)
    assert kv.pool.num_free == 3 and b.blocks == []


def test_duplicate_keys_are_kept_and_the_first_is_returned():
    pool = BlockPool(6, True)
    b1, b2 = pool.get_new_blocks(2)
    pool.cache_block(b1, ("g", 0))
    pool.cache_block(b2, ("g", 0))
    assert pool.get_cached(("g", 0)) == b1
    pool.free_blocks([b1])
    pool.get_new_blocks(3)  # pops 3, 4, 5
    pool.get_new_blocks(1)  # pops b1: its key falls back to the duplicate
    assert pool.get_cached(("g", 0)) == b2


def run(specs, blocks=1000, **kw):
    lat = ConstLatency(0.010)
    stats = Simulator(engine(**kw), lat, blocks, check_invariants=True).run(ListSource(specs))
    return stats, lat.plans, {r.id: r for r in stats.records}


def test_second_request_of_a_group_hits_the_full_blocks_of_the_shared_prefix():
    # Prefix 100 tokens = 6 full blocks (96 tokens) + 4 tokens in a block that also holds unique tokens.
    specs = [
        spec(0, 0.00, 150, 2, "sys", 100),
        spec(1, 0.05, 140, 2, "sys", 100),  # same group: 96 cached tokens, computes 44
        spec(2, 0.10, 150, 2, "other", 100),  # another group: nothing cached
        spec(3, 0.15, 150, 2),  # no group
    ]
    stats, plans, recs = run(specs)
    assert [recs[i].cached_tokens for i in range(4)] == [0, 96, 0, 0]
    assert StepPlan((44,), (96,), ()) in plans
    assert (stats.prefix_cache_queried_tokens, stats.prefix_cache_hit_tokens) == (150 + 140 + 150 + 150, 96)


def test_request_admitted_in_the_same_step_hits_blocks_cached_at_allocation():
    # vLLM caches full blocks when it allocates them, so the second request of the step already hits.
    stats, plans, recs = run([spec(0, 0.0, 150, 1, "sys", 100), spec(1, 0.0, 150, 1, "sys", 100)])
    assert plans[0] == StepPlan((150, 54), (0, 96), ())
    assert recs[1].cached_tokens == 96


def test_full_prompt_hit_recomputes_the_last_block():
    # Prompt = prefix = 96 tokens = 6 full blocks, all cached. vLLM caps hits at num_tokens - 1 = 95,
    # rounded down to whole blocks: 5 blocks = 80 tokens; the last block (16 tokens) is recomputed.
    specs = [spec(0, 0.0, 96, 1, "sys", 96), spec(1, 0.05, 96, 1, "sys", 96)]
    stats, plans, recs = run(specs)
    assert recs[1].cached_tokens == 80
    assert plans[1] == StepPlan((16,), (80,), ())
    # A 100-token prompt with the 6 shared blocks cached hits all 96 (99 // 16 = 6 blocks).
    stats, plans, recs = run([spec(0, 0.0, 100, 1, "s", 100), spec(1, 0.05, 100, 1, "s", 100)])
    assert recs[1].cached_tokens == 96 and plans[1] == StepPlan((4,), (96,), ())


def test_prefix_caching_off_never_hits_and_records_no_queries():
    specs = [spec(0, 0.0, 150, 1, "sys", 100), spec(1, 0.05, 150, 1, "sys", 100)]
    stats, plans, recs = run(specs, enable_prefix_caching=False)
    assert recs[1].cached_tokens == 0 and plans[1] == StepPlan((150,), (0,), ())
    assert stats.prefix_cache_queried_tokens == 0


def test_decode_filled_blocks_become_cached_when_full():
    # Prompt 10 + 30 outputs: tokens 0..38 have KV; blocks 0 and 1 (32 tokens) fill and are cached.
    sim = Simulator(engine(), ConstLatency(), 1000, check_invariants=True)
    sim.run(ListSource([spec(7, 0.0, 10, 30)]))
    cached = sim.scheduler.kv.pool.cached
    # Private blocks are keyed by the run-unique uid (0 for the run's first request), not the spec id.
    assert (0, 0) in cached and (0, 1) in cached and (0, 2) not in cached


def test_repeated_spec_ids_do_not_share_private_blocks():
    # Two different prompts with the same id: without run-unique keys the second would hit the first's blocks.
    stats = Simulator(engine(), ConstLatency(), 1000, check_invariants=True).run(
        ListSource([spec(1, 0.0, 64, 1), spec(1, 0.05, 64, 1)])
    )
    assert [r.cached_tokens for r in stats.records] == [0, 0] and stats.prefix_cache_hit_tokens == 0
