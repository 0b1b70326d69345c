"""LoRA: shrink/expand FLOPs and bytes by hand, the max_loras batch limit hand-traced, adapter LRU caches, invariants."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from servesim.config import load_hardware, load_model
from servesim.config.engine import EngineConfig
from servesim.engine import Simulator
from servesim.engine.invariants import InvariantError
from servesim.engine.lora import LoraSlots, check_lora
from servesim.engine.request import RequestSpec
from servesim.errors import ConfigError
from servesim.latency.lora import DISK_LOAD_GB_S, LoraLatency, adapter_bytes_per_gpu, lora_step_cost
from servesim.latency.plan import LoraStep, StepPlan

from ._helpers import ConstLatency, ListSource, engine


def lspec(i: int, arrival: float, inp: int, out: int, lora: str | None, group: str | None = None, prefix: int = 0) -> RequestSpec:
    return RequestSpec(i, arrival, inp, out, group, prefix, None, 0, lora)


def run(specs, **kw):
    lat = ConstLatency(0.010)
    sim = Simulator(engine(enable_lora=True, **kw), lat, 10_000, check_invariants=True)
    stats = sim.run(ListSource(specs))
    return stats, lat.plans, {r.id: r for r in stats.records}


# --- cost, by hand: Llama-3.1-8B (hidden 4096, 32 q heads / 8 kv heads of 128, MLP 14336, 32 layers), rank 16 ---
# (in + out) per module: q 4096+4096, k 4096+1024, v 4096+1024, o 4096+4096, gate/up 4096+14336, down 14336+4096
# = 8192 + 5120 + 5120 + 8192 + 3 * 18432 = 81,920 per layer.

def test_llama31_8b_rank16_bytes_and_flops_tp1():
    m = load_model("llama-3.1-8b")
    # 16 * 81,920 * 2 bytes (bf16) = 2,621,440 per layer; * 32 layers = 83,886,080 bytes (80 MiB) per adapter.
    assert adapter_bytes_per_gpu(m, 1, 16) == 83_886_080
    flops, nbytes = lora_step_cost(m, 1, 16, tokens=100, adapters=3)
    assert flops == 2 * 100 * 16 * 81_920 * 32 == 8_388_608_000
    assert nbytes == 3 * 83_886_080


def test_llama31_8b_rank16_tp2_shards_as_vllm():
    # Column parallel (q, k, v, gate, up): A whole, B split on the output; row parallel (o, down): A split, B whole.
    # q 4096+2048, k 4096+512, v 4096+512, o 2048+4096, gate/up 4096+7168, down 7168+4096 = 55,296 per layer.
    m = load_model("llama-3.1-8b")
    assert adapter_bytes_per_gpu(m, 2, 16) == 16 * 55_296 * 2 * 32 == 56_623_104
    assert lora_step_cost(m, 2, 16, tokens=1, adapters=0) == (2 * 16 * 55_296 * 32, 0.0)


def test_lora_latency_adds_kernel_and_load_components():
    m, hw = load_model("llama-3.1-8b"), load_hardware("H100")
    lm = LoraLatency(ConstLatency(0.010), m, hw, 1, 16)
    plan = StepPlan((10,), (0,), (), LoraStep(tokens=10, adapters=2, cpu_loads=1, disk_loads=1))
    flops, nbytes = 10 * 83_886_080, 2 * 83_886_080
    kernel = max(flops / 989.5e12, nbytes / (3.35e12 * hw.bw_efficiency))  # memory-bound: 167,772,160 B
    load = 83_886_080 / 50e9 + 83_886_080 / (DISK_LOAD_GB_S * 1e9)
    assert lm.step_time(plan) == pytest.approx(0.010 + kernel + load, rel=1e-12)
    st = lm.explain(plan)
    parts = {c.name: c for c in st.components}
    assert parts["lora"].flops == flops and parts["lora"].bytes == nbytes and parts["lora"].bound == "memory"
    assert parts["lora_load"].time_s == pytest.approx(load, rel=1e-12)
    assert st.seconds == pytest.approx(lm.step_time(plan), rel=1e-12)
    # No adapter tokens and nothing to load: exactly the inner model's time.
    assert lm.step_time(StepPlan((10,), (0,), (), LoraStep(0, 0, 0, 0))) == 0.010


def test_moe_models_are_refused():
    from servesim.latency.lora import lora_modules

    with pytest.raises(ConfigError, match="--enable-lora: mixtral"):
        lora_modules(load_model("mixtral-8x7b-v0.1"))


# --- scheduler, hand-traced: constant 10 ms steps, synchronous scheduling ---

def test_max_loras_1_skips_a_second_adapter_and_keeps_it_queued():
    # t=0: r0 (A), r1 (B), r2 (A), 10-token prompts, 2 outputs. Step 1 admits r0; r1 would be a second adapter:
    # skipped, kept at the head; r2 (A) is admitted. Step 2 decodes r0, r2 (r1 skipped again); both finish at 20 ms.
    # Step 3 admits r1 (B: loaded from disk, A leaves the one-entry CPU cache), step 4 decodes it.
    specs = [lspec(0, 0.0, 10, 2, "A"), lspec(1, 0.0, 10, 2, "B"), lspec(2, 0.0, 10, 2, "A")]
    stats, plans, recs = run(specs, max_loras=1)
    assert plans == [
        StepPlan((10, 10), (0, 0), (), LoraStep(20, 1, 1, 1)),
        StepPlan((), (), (10, 10), LoraStep(2, 1, 0, 0)),
        StepPlan((10,), (0,), (), LoraStep(10, 1, 1, 1)),
        StepPlan((), (), (10,), LoraStep(1, 1, 0, 0)),
    ]
    assert recs[0].finish_s == pytest.approx(0.020) and recs[2].finish_s == pytest.approx(0.020)
    assert recs[1].first_scheduled_s == pytest.approx(0.020) and recs[1].finish_s == pytest.approx(0.040)
    assert (stats.lora_loads, stats.lora_disk_loads) == (2, 2)


def test_max_loras_2_batches_both_adapters():
    specs = [lspec(0, 0.0, 10, 2, "A"), lspec(1, 0.0, 10, 2, "B"), lspec(2, 0.0, 10, 2, "A")]
    stats, plans, recs = run(specs, max_loras=2)
    assert plans == [
        StepPlan((10, 10, 10), (0, 0, 0), (), LoraStep(30, 2, 2, 2)),
        StepPlan((), (), (10, 10, 10), LoraStep(3, 2, 0, 0)),
    ]
    assert all(r.finish_s == pytest.approx(0.020) for r in recs.values())


def test_base_model_requests_are_never_skipped():
    # r1 asks for the base model: it joins A's batch; r2 (B) waits.
    specs = [lspec(0, 0.0, 10, 1, "A"), lspec(1, 0.0, 10, 1, None), lspec(2, 0.0, 10, 1, "B")]
    _, plans, recs = run(specs, max_loras=1)
    assert plans[0] == StepPlan((10, 10), (0, 0), (), LoraStep(10, 1, 1, 1))
    assert plans[1] == StepPlan((10,), (0,), (), LoraStep(10, 1, 1, 1))
    assert recs[2].first_token_s == pytest.approx(0.020)


def test_skipped_requests_keep_fcfs_order():
    # A runs (long output); B1 and C... max_loras 1: B and C both wait; when A finishes, B (older) goes first.
    specs = [lspec(0, 0.0, 10, 3, "A"), lspec(1, 0.0, 10, 1, "B"), lspec(2, 0.0, 10, 1, "C"), lspec(3, 0.0, 10, 1, "B")]
    _, _, recs = run(specs, max_loras=1)
    assert recs[1].first_scheduled_s == pytest.approx(0.030) and recs[3].first_scheduled_s == pytest.approx(0.030)
    assert recs[2].first_scheduled_s == pytest.approx(0.040)


def test_prefix_cache_is_per_adapter():
    # Same 64-token prefix: a hit under the same adapter, none under another (vLLM hashes the adapter name in).
    specs = [lspec(0, 0.0, 80, 1, "A", "g", 64), lspec(1, 0.1, 80, 1, "A", "g", 64), lspec(2, 0.2, 80, 1, "B", "g", 64)]
    _, _, recs = run(specs, max_loras=2)
    assert (recs[0].cached_tokens, recs[1].cached_tokens, recs[2].cached_tokens) == (0, 64, 0)


def test_adapter_without_lora_is_rejected_like_vllms_404():
    sim = Simulator(engine(), ConstLatency(0.010), 10_000, check_invariants=True)
    stats = sim.run(ListSource([lspec(0, 0.0, 10, 1, "A"), lspec(1, 0.0, 10, 1, None)]))
    assert stats.rejected == 1 and stats.rejected_by_reason == {"unknown_model": 1} and stats.completed == 1


# --- adapter caches and invariants ---

def test_gpu_and_cpu_caches_are_lru():
    slots = LoraSlots(max_loras=2, max_cpu_loras=3)
    assert slots.activate(["A", "B"]) == (2, 2)
    assert slots.activate(["C"]) == (1, 1)  # GPU evicts A (least recently used); CPU holds A, B, C
    assert list(slots.gpu) == ["B", "C"] and list(slots.cpu) == ["A", "B", "C"]
    assert slots.activate(["A"]) == (1, 0)  # from the CPU cache: no disk read; GPU evicts B
    assert list(slots.gpu) == ["C", "A"]
    assert slots.activate(["D"]) == (1, 1)  # CPU evicts B (LRU), GPU evicts C
    assert list(slots.cpu) == ["C", "A", "D"] and list(slots.gpu) == ["A", "D"]


def test_invariant_adapters_in_batch_at_most_max_loras():
    slots = LoraSlots(1, 1)
    slots.activate(["A"])
    reqs = [SimpleNamespace(id=i, spec=SimpleNamespace(lora=n)) for i, n in enumerate(["A", "B"])]
    with pytest.raises(InvariantError, match="lora_batch_adapters"):
        check_lora(SimpleNamespace(scheduled=reqs), slots, 1)
    check_lora(SimpleNamespace(scheduled=reqs[:1]), slots, 1)  # one adapter, resident: fine


def test_invariant_gpu_resident_at_most_max_loras():
    slots = LoraSlots(1, 2)
    slots.gpu.update({"A": None, "B": None})  # a broken cache
    with pytest.raises(InvariantError, match="lora_gpu_resident"):
        check_lora(SimpleNamespace(scheduled=[]), slots, 1)


def test_engine_config_follows_vllm_rules():
    assert EngineConfig().max_loras == 1 and EngineConfig().max_lora_rank == 16 and EngineConfig().cpu_loras == 1
    assert EngineConfig(max_loras=4).cpu_loras == 4
    with pytest.raises(ConfigError, match="max_cpu_loras=2 must be >= max_loras=4"):
        EngineConfig(max_loras=4, max_cpu_loras=2)
    with pytest.raises(ConfigError, match="max_lora_rank=17: not a rank vLLM offers"):
        EngineConfig(max_lora_rank=17)
