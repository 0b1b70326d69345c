"""capacity on the simulated cluster: GPUs, cost, never more optimistic than the ideal balancer, xPyD search."""

from __future__ import annotations

import pytest

from servesim.errors import ConfigError
from servesim.sweep import parse_slo, run_capacity
from servesim.sweep.cluster_capacity import GPU_HOUR_PRICE_USD, gpu_hour_price, run_cluster_capacity

WL = {"input_tokens": {"kind": "gaussian", "mean": 512, "stdev": 128, "min": 64, "max": 1024},
      "output_tokens": {"kind": "gaussian", "mean": 128, "stdev": 32, "min": 16, "max": 256},
      "arrival": {"process": "poisson", "rate": 1.0}, "num_requests": 200, "seed": 2}


def _configs():
    kw = {"model": "llama-2-7b-hf", "hardware": "H100", "tp": 1, "workload": WL, "seed": 2}
    return [("7b", {"model": "llama-2-7b-hf", "hardware": "H100", "tp": 1}, kw)]


def test_four_instance_cluster_is_simulated_and_never_beats_the_ideal_balancer():
    slos = [parse_slo("ttft_p99_ms=250"), parse_slo("itl_p99_ms=60")]
    single = run_capacity(_configs(), slos, rate_lo=1, rate_hi=64, rel_tol=0.05)
    target = 3.97 * single[0]["max_rate"]  # ideal balancer: ceil(3.97) = 4 instances, each at 99 % of its max
    out = run_cluster_capacity(_configs(), single, slos, target_rate=target, router="random", max_instances=8)[0]
    assert out["ideal_instances"] == 4
    assert out["instances"] is not None and out["instances"] >= 4 and out["gpus"] == out["instances"]
    probes = out["probes"]
    assert probes[0]["instances"] == 4 and all(not p["ok"] for p in probes[:-1]) and probes[-1]["ok"]
    # Random routing balances worse than round-robin: at the same 4 instances and 99 % load its SLO statistics
    # are no better (the simulated answer can only be at or above the ideal balancer's count).
    rr = run_cluster_capacity(_configs(), single, slos, target_rate=target, router="round-robin", max_instances=8)[0]
    assert rr["probes"][0]["instances"] == 4 and rr["instances"] >= 4
    for name in ("ttft_p99_ms", "itl_p99_ms"):
        assert probes[0][name] >= rr["probes"][0][name]
    # $/hour = GPUs x price; $/1M output tokens = $/hour / (output tok/s x 3600) x 1e6
    assert out["usd_per_hour"] == pytest.approx(out["gpus"] * GPU_HOUR_PRICE_USD["H100-SXM"])
    assert out["usd_per_1m_output_tokens"] == pytest.approx(out["usd_per_hour"] / (out["output_tokens_per_s"] * 3600) * 1e6)


def test_pd_search_tries_every_split_of_the_smallest_passing_size():
    slos = [parse_slo("ttft_p99_ms=400")]
    single = [{"max_rate": None}]
    out = run_cluster_capacity(_configs(), single, slos, target_rate=6.0, pd=True, max_instances=3,
                               gpu_hour_price_usd=2.0)[0]
    sizes = [(p["prefill"], p["decode"]) for p in out["probes"]]
    assert sizes[0] == (1, 1)
    assert out["instances"] is not None and out["prefill"] + out["decode"] == out["instances"]
    k = out["instances"]
    assert [s for s in sizes if sum(s) == k] == [(x, k - x) for x in range(1, k)]
    assert out["usd_per_hour"] == pytest.approx(2.0 * out["gpus"])


def test_price_table_and_bad_price():
    assert gpu_hour_price("H200", None) == GPU_HOUR_PRICE_USD["H200"]
    assert gpu_hour_price("L40S", None) is None  # not in the table: cost left out unless --gpu-hour-price
    assert gpu_hour_price("L40S", 1.5) == 1.5
    with pytest.raises(ConfigError, match="--gpu-hour-price"):
        gpu_hour_price("H100", -1.0)
