"""Capacity search: bisection on a monotone toy, SLO parsing, fleet sizing, a real small search, the CLI."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest

from servesim.errors import ConfigError
from servesim.sweep import find_capacity, instances_for, parse_slo, run_capacity


def toy(rate: float) -> dict:
    # Monotone latencies: p99 TTFT 40 ms per req/s, ITL mean 10 ms + 2 ms per req/s.
    return {"ttft_ms": {"p99": 40.0 * rate}, "itl_ms": {"mean": 10.0 + 2.0 * rate}}


@pytest.mark.parametrize("tol", [0.05, 0.01, 0.001])
def test_bisection_finds_the_boundary_within_tolerance_and_meets_the_slo(tol):
    slos = [parse_slo("ttft_p99_ms=500"), parse_slo("itl_mean_ms=50")]  # binding: ttft at 12.5 req/s
    res = find_capacity(toy, slos, rate_lo=0.5, rate_hi=1000, rel_tol=tol)
    assert res.bracketed and res.max_rate is not None
    assert 12.5 * (1 - tol) <= res.max_rate <= 12.5
    assert all(s.met(toy(res.max_rate)) for s in slos)
    assert any(not e["ok"] and e["rate"] <= 12.5 * (1 + tol) for e in res.evaluations)  # a failing rate just above
    assert [e["rate"] for e in res.evaluations][:5] == [0.5, 1.0, 2.0, 4.0, 8.0]


def test_unreachable_and_unbounded_cases():
    slo = [parse_slo("ttft_p99_ms=10")]
    low = find_capacity(toy, slo, rate_lo=1.0, rate_hi=100)
    assert low.max_rate is None and len(low.evaluations) == 1
    high = find_capacity(toy, [parse_slo("ttft_p99_ms=1e9")], rate_lo=1.0, rate_hi=100)
    assert high.max_rate == 100 and not high.bracketed
    missing = find_capacity(lambda r: {"ttft_ms": {"p99": None}}, slo, rate_lo=1, rate_hi=2)
    assert missing.max_rate is None  # no completed request: the SLO is not met


@pytest.mark.parametrize("text", ["ttft_p99=5", "ttft_p42_ms=5", "foo_p99_ms=5", "ttft_p99_ms=-1", "ttft_p99_ms=x"])
def test_bad_slo_text(text):
    with pytest.raises(ConfigError, match="--slo"):
        parse_slo(text)


def test_slo_forms_and_instances():
    s = parse_slo("e2e_mean_ms<=1500")
    assert (s.metric, s.stat, s.limit_ms, s.name) == ("e2e", "mean", 1500.0, "e2e_mean_ms")
    assert instances_for(100, 30) == 4 and instances_for(90, 30) == 3 and instances_for(1, 30) == 1
    assert instances_for(10, None) is None


def test_real_capacity_search_is_monotone_in_tp():
    wl = {"input_tokens": 256, "output_tokens": 32, "arrival": {"process": "poisson", "rate": 1}, "num_requests": 60}
    configs = [(f"TP{t}", {"tp": t}, {"model": "llama-2-7b-hf", "tp": t, "workload": wl, "seed": 2}) for t in (1, 2)]
    slos = [parse_slo("itl_mean_ms=12")]
    res = run_capacity(configs, slos, rate_lo=1, rate_hi=64, rel_tol=0.1, target_rate=100)
    tp1, tp2 = res
    assert tp1["max_rate"] is not None and tp2["max_rate"] is not None
    assert tp2["max_rate"] >= tp1["max_rate"]
    for r in res:
        best = [e for e in r["evaluations"] if e["rate"] == r["max_rate"]][0]
        assert best["ok"] and best["itl_mean_ms"] <= 12
        assert r["instances"] == instances_for(100, r["max_rate"])
    with pytest.raises(ConfigError, match="open-loop"):
        run_capacity([("c", {}, {"workload": {**wl, "arrival": {"process": "concurrency", "concurrency": 2}}})], slos)


def test_cli_capacity_json(tmp_path):
    out = tmp_path / "cap.json"
    p = subprocess.run([sys.executable, "-m", "servesim", "capacity", "--slo", "itl_mean_ms=15", "--tp", "1", "--num-requests", "40",
                        "--prompt-tokens", "128", "--output-tokens", "16", "--rate-min", "1", "--rate-max", "16", "--tolerance", "0.2",
                        "--target-rate", "50", "-o", str(out)], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    doc = json.loads(out.read_text())
    assert doc["slos"] == {"itl_mean_ms": 15.0} and "one engine instance" in doc["assumption"]
    (r,) = doc["results"]
    assert r["label"].startswith("llama-2-7b-hf") and r["evaluations"]
    # Ideal-balancer instances = ceil(target / max rate), in the JSON and in the table's column (its header may wrap).
    assert r["instances"] == math.ceil(50 / r["max_rate"]) and "instances" in p.stdout and f"{r['instances']} (" in p.stdout
