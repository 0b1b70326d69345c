"""CPU KV offload (engine/offload.py): hand-computed transfer times and sizes, a hand-traced evict-then-hit scenario,
the tier's conservation invariant, and offload size 0 == off byte for byte."""

from __future__ import annotations

import json

import pytest

from servesim.config.engine import engine_config
from servesim.engine.offload import CPUTier, OffloadSpec, num_cpu_blocks, offload_spec, transfer_s
from servesim.engine.request import RequestRecord, RequestSpec
from servesim.engine.scheduler import EngineRequest, Scheduler
from servesim.errors import ConfigError, ServesimError

MIB = 1 << 20
GIB = 1 << 30


def test_load_time_of_n_blocks_at_link_bandwidth():
    # Llama-2-7B: 32 layers x 32 KV heads x 128 dims x 2 (K, V) x 2 bytes = 524,288 B/token; a 16-token block = 8 MiB.
    block = 16 * 524_288
    assert block == 8 * MIB
    # 10 blocks over 50 GB/s: 83,886,080 B / 5e10 B/s = 1.6777216 ms.
    assert transfer_s(10, block, 50e9) == pytest.approx(1.6777216e-3, rel=1e-12)
    tier = CPUTier(OffloadSpec(100, block, 50e9))
    keys = [("g", i) for i in range(10)]
    tier.store(keys, 0.0)  # stores queue on the D2H direction: the last is ready at 10 x 0.16777216 ms
    assert tier.lru[("g", 9)] == pytest.approx(1.6777216e-3)
    assert tier.lookup(keys, 1.0e-3) == 5  # 1 ms: five stores of 0.168 ms done, the sixth at 1.007 ms not yet
    assert tier.load(keys, 2.0) == pytest.approx(2.0 + 1.6777216e-3)
    assert tier.load(keys[:1], 2.0) == pytest.approx(2.0 + 1.6777216e-3 + 0.16777216e-3)  # queued behind the first load


def test_cpu_blocks_per_rank():
    # vLLM splits --kv-offloading-size over TP x PP ranks: 8 GiB of 8 MiB blocks = 1024 at TP1, 256 per rank at TP4.
    assert num_cpu_blocks(8, 1, 8 * MIB) == 1024
    assert num_cpu_blocks(8, 4, 8 * MIB) == 256
    # Llama-3.1-70B TP4: 80 layers x 2 KV heads per rank x 128 x 2 x 2 B x 16 tokens = 1,310,720 B per block and rank;
    # 32 GiB over 4 ranks = 6553 blocks (the inference-perf-trainval servers' recorded cpu_kv_blocks).
    assert num_cpu_blocks(32, 4, 1_310_720) == 6553
    assert offload_spec(0, "native", 1, 8 * MIB, 50) is None
    with pytest.raises(ConfigError, match="--kv-offloading-backend 'x'"):
        offload_spec(8, "x", 1, 8 * MIB, 50)
    with pytest.raises(ConfigError, match="host_link_gb_s"):
        offload_spec(8, "native", 1, 8 * MIB, 0.0)


def test_lru_evicts_oldest_ready_block_and_skips_when_all_in_flight():
    tier = CPUTier(OffloadSpec(2, 1e6, 1e9))  # 1 ms per block
    tier.store([1, 2], 0.0)  # ready at 1 ms and 2 ms
    tier.store([3], 0.0015)  # full: evicts 1 (ready), not 2 (in flight); queued after 2's store: ready at 3 ms
    assert list(tier.lru) == [2, 3] and tier.lru[3] == pytest.approx(3e-3)
    tier.store([4], 0.0025)  # full, 2 ready -> evicted
    assert list(tier.lru) == [3, 4]
    tier.store([5], 0.0026)  # 3 ready only at 3 ms, 4 at 4 ms: nothing evictable, the store is skipped
    assert list(tier.lru) == [3, 4] and tier.skipped == 1
    assert tier.check() == ""
    tier.lru[99] = 0.0  # above capacity and not counted as stored: the invariant names it
    assert "capacity 2" in tier.check()


def _req(sched: Scheduler, rid: int, inp: int, group: str | None, prefix: int) -> EngineRequest:
    spec = RequestSpec(rid, 0.0, inp, 1, group, prefix)
    rec = RequestRecord(id=rid, arrival_s=0.0, input_tokens=inp, output_tokens=1)
    req = EngineRequest(spec, rec, sched.block_size, rid)
    sched.add(req)
    return req


def test_hand_traced_evict_to_cpu_then_hit():
    # 6 GPU blocks (5 usable) of 16 tokens; CPU tier of 16 blocks of 1 MB at 1 GB/s (1 ms per block).
    eng = engine_config(max_num_seqs=4, max_num_batched_tokens=256, max_model_len=256, block_size=16)
    sched = Scheduler(eng, 6, offload=OffloadSpec(16, 1e6, 1e9))
    tier = sched.tier
    # A: 65-token prompt, 64 of them group g's prefix (4 blocks); one output token, so it ends after its prefill.
    a = _req(sched, 0, 65, "g", 64)
    out = sched.schedule(0.0)
    assert out.num_new == [65] and len(a.blocks) == 5
    sched.update_from_output(out, 1.0, False)  # step ends at 1 s: 4 full blocks stored, ready at 1.001..1.004 s
    assert [tier.lru[("g", i)] for i in range(4)] == pytest.approx([1.001, 1.002, 1.003, 1.004])
    # B: 80 private tokens = 5 blocks: takes every GPU block, evicting g's 4 cached blocks from the GPU.
    b = _req(sched, 1, 80, None, 0)
    out = sched.schedule(2.0)
    assert out.scheduled == [b] and ("g", 0) not in sched.kv.pool.cached
    sched.update_from_output(out, 3.0, False)
    # C: same prefix as A. GPU: no hit. CPU: blocks (g, 0..3) ready -> 4 blocks loaded, 4 ms, from t = 3 s.
    c = _req(sched, 2, 65, "g", 64)
    out = sched.schedule(3.0)
    assert out.scheduled == [] and c.load_until == pytest.approx(3.004)
    assert c.num_computed == 64 and len(c.blocks) == 4 and list(sched.waiting) == [c]
    assert sched.next_load_s() == pytest.approx(3.004)
    assert sched.schedule(3.002).scheduled == []  # still loading: skipped, as vLLM's WAITING_FOR_REMOTE_KVS
    out = sched.schedule(3.004)  # load done: scheduled with its 64 tokens computed, only the last token to compute
    assert out.scheduled == [c] and out.num_new == [1] and out.prefill_ctx == [64]
    assert c.rec.cached_tokens == 64 and c.load_until is None
    # Stats: lookups of A (65), B (80), C (65) tokens; C's 64 hit in CPU.
    assert (tier.queried_tokens, tier.hit_tokens) == (210, 64)
    assert tier.check() == ""


def _run(**engine):
    from servesim.simulation import simulate

    wl = {"shared_prefix": {"num_groups": 6, "users_per_group": 4, "system_prompt_len": 512, "question_len": 32,
                            "output_len": 8}, "arrival": {"process": "poisson", "rate": 20}, "num_requests": 120, "seed": 1}
    return simulate("llama-2-7b-hf", "H100", 1, workload=wl, latency_model="roofline-v2", check_invariants=True,
                    engine={"num_gpu_blocks_override": 120, "max_model_len": 1024, **engine})


def test_offload_hits_cpu_under_invariants_and_lowers_ttft():
    # 6 prefixes x 32 blocks = 192 blocks > 120 GPU blocks: prefixes are evicted; 2 GiB = 256 CPU blocks hold them.
    off, on = _run(), _run(kv_offloading_size=2.0)
    assert "cpu_prefix_cache_hit_rate" not in off.summary
    assert on.summary["cpu_prefix_cache_hit_rate"] > 0.0
    assert on.config["num_cpu_blocks"] == 256
    assert on.summary["ttft_ms"]["mean"] < off.summary["ttft_ms"]["mean"]


def test_offload_size_zero_is_off_byte_for_byte():
    a, b = _run(), _run(kv_offloading_size=0.0, kv_offloading_backend="lmcache")
    dump = lambda r: json.dumps([r.config, r.summary, r.requests], sort_keys=True, default=str)  # noqa: E731
    assert dump(a) == dump(b)


def test_offload_refused_in_a_cluster():
    from servesim.simulation import simulate

    with pytest.raises(ServesimError, match="--kv-offloading-size 8.0: CPU KV offload is modelled for one instance"):
        simulate("llama-2-7b-hf", "H100", 1, engine={"kv_offloading_size": 8.0}, instances=2)
