"""LoRA from the workload side: adapter mixes, the trace column, refusals, and the end-to-end effect of max_loras."""

from __future__ import annotations

import pytest

from servesim.errors import ConfigError, WorkloadError
from servesim.simulation import simulate
from servesim.workload import build_source, parse_workload, workload_from_flags
from servesim.workload.traces import read_trace

BASE = {"input_tokens": 200, "output_tokens": 50, "arrival": {"process": "poisson", "rate": 20}, "num_requests": 80}


def _drain(src):
    out = []
    while src.peek_arrival_s() is not None:
        out.append(src.pop())
    return out


def test_uniform_mix_leaves_lengths_and_arrivals_as_they_were():
    plain = _drain(build_source(parse_workload(BASE), 5))
    mixed = _drain(build_source(parse_workload({**BASE, "lora": {"adapters": 4}}), 5))
    assert [(s.arrival_s, s.input_tokens, s.output_tokens) for s in plain] == [(s.arrival_s, s.input_tokens, s.output_tokens) for s in mixed]
    names = [s.lora for s in mixed]
    assert set(names) == {"lora-0", "lora-1", "lora-2", "lora-3"} and all(s.lora is None for s in plain)
    assert names == [s.lora for s in _drain(build_source(parse_workload({**BASE, "lora": {"adapters": 4}}), 5))]  # seeded


def test_weighted_mix_draws_by_weight():
    specs = _drain(build_source(parse_workload({**BASE, "num_requests": 4000, "lora": {"weights": {"sql": 3, "chat": 1}}}), 1))
    share = sum(s.lora == "sql" for s in specs) / len(specs)
    assert 0.72 < share < 0.78  # 0.75 ± 4.9 standard deviations of a 4000-draw binomial


def test_lora_adapters_flag_and_bad_values():
    assert workload_from_flags(lora_adapters=8).lora.adapters == 8
    for bad in (0, -1, True, 100_001):
        with pytest.raises(WorkloadError, match="--lora-adapters"):
            workload_from_flags(lora_adapters=bad)
    with pytest.raises(WorkloadError, match="exactly one of adapters"):
        parse_workload({**BASE, "lora": {"adapters": 2, "weights": {"a": 1}}})
    with pytest.raises(WorkloadError, match="must be > 0"):
        parse_workload({**BASE, "lora": {"weights": {"a": 0}}})


def test_trace_lora_column(tmp_path):
    p = tmp_path / "t.csv"
    p.write_text("arrival_time_s,input_tokens,output_tokens,lora\n0,10,2,sql\n0.1,10,2,\n0.2,10,2, chat \n")
    assert [s.lora for s in read_trace(p).specs] == ["sql", None, "chat"]
    with pytest.raises(WorkloadError, match="has its own lora column"):
        build_source(parse_workload({"trace": str(p), "lora": {"adapters": 2}}))


def test_adapters_without_enable_lora_are_refused():
    with pytest.raises(ConfigError, match="add --enable-lora"):
        simulate("llama-3.1-8b", workload={**BASE, "lora": {"adapters": 2}})


def test_lora_on_without_adapter_requests_changes_nothing():
    # Same KV blocks on both sides (LoRA's adapter slots otherwise take 4 x 80 MiB of the KV cache's memory).
    off = simulate("llama-3.1-8b", workload=BASE, latency_model="roofline-v2", seed=2, engine={"num_gpu_blocks_override": 20_000})
    on = simulate("llama-3.1-8b", workload=BASE, latency_model="roofline-v2", seed=2,
                  engine={"enable_lora": True, "max_loras": 4, "num_gpu_blocks_override": 20_000})
    lora = on.summary.pop("lora")
    assert lora["adapter_loads"] == 0 and on.summary == off.summary and on.requests == off.requests


def test_max_loras_1_raises_e2e_over_max_loras_8_with_8_adapters():
    wl = {**BASE, "lora": {"adapters": 8}}
    runs = {m: simulate("llama-3.1-8b", workload=wl, latency_model="roofline-v2", seed=2, check_invariants=True,
                        engine={"enable_lora": True, "max_loras": m}) for m in (1, 8)}
    assert runs[1].summary["e2e_ms"]["mean"] > 1.5 * runs[8].summary["e2e_ms"]["mean"]
    assert runs[8].summary["lora"]["adapter_loads"] == 8  # each adapter loaded once, then resident
    assert runs[1].summary["lora"]["adapter_loads"] > 8


def test_lora_adds_step_time_over_base_model():
    base = simulate("llama-3.1-8b", workload=BASE, latency_model="calibrated", seed=2, engine={"enable_lora": True, "max_loras": 8})
    wl = simulate("llama-3.1-8b", workload={**BASE, "lora": {"adapters": 8}}, latency_model="calibrated", seed=2,
                  engine={"enable_lora": True, "max_loras": 8})
    assert wl.summary["engine_busy_s"] > base.summary["engine_busy_s"]
    assert any("LoRA" in x for x in wl.summary["prediction_intervals"].get("outside_envelope", []))


def test_cluster_runs_lora_per_instance():
    r = simulate("llama-3.1-8b", workload={**BASE, "lora": {"adapters": 4}}, latency_model="roofline-v2", seed=2,
                 instances=2, check_invariants=True, engine={"enable_lora": True, "max_loras": 2})
    assert r.summary["completed"] == 80 and r.summary["lora"]["adapter_loads"] >= 4


def test_adapter_slots_take_kv_memory():
    from servesim.config import load_hardware, load_model
    from servesim.simulation import kv_blocks_for, resolve_engine

    m, hw = load_model("llama-3.1-8b"), load_hardware("H100")
    off = kv_blocks_for(resolve_engine({}, m, hw, 1), m, hw)
    on = kv_blocks_for(resolve_engine({"enable_lora": True, "max_loras": 8}, m, hw, 1), m, hw)
    # 8 slots x 83,886,080 bytes = 640 MiB; a block of 16 tokens of Llama-3.1-8B KV is 16 x 131,072 = 2 MiB: 320 blocks.
    assert off - on == 320
