"""Saturation verdicts: the shared rules on hand-made numbers, and simulated overloaded vs light runs."""

from __future__ import annotations

import math

import pytest

from servesim.metrics.saturation import ArrivalBins, mann_kendall_z, quarter_rule, saturation_of_pairs, trend_rule
from servesim.simulation import simulate
from servesim.validation.compare import queue_growing


def test_mann_kendall_by_hand():
    # [1, 2, 3, 4]: S = 6 concordant pairs, var = 4·3·13/18, z = (6 − 1)/sqrt(var).
    assert mann_kendall_z([1, 2, 3, 4]) == pytest.approx(5 / math.sqrt(4 * 3 * 13 / 18))
    assert mann_kendall_z([4, 3, 2, 1]) == pytest.approx(-5 / math.sqrt(4 * 3 * 13 / 18))
    assert mann_kendall_z([1, 1, 1]) == 0.0


def test_quarter_and_trend_rules():
    assert quarter_rule(300.0, 1000.1) and not quarter_rule(400.0, 1000.1) and not quarter_rule(10.0, 999.0)
    rising = [100.0 * (i + 1) for i in range(16)]  # 100 ms .. 1600 ms, monotone: z well above 3.09
    assert trend_rule(rising)[0]
    assert not trend_rule([x / 10 for x in rising])[0]  # same trend but the last group is under 1 s


def test_binned_verdict_on_constructed_runs():
    n = 4000
    arrivals = [i * 0.01 for i in range(n)]
    light = saturation_of_pairs(arrivals, [50.0 + (i % 7) for i in range(n)])
    growing = saturation_of_pairs(arrivals, [10.0 * i for i in range(n)])  # the queue adds 10 ms per arrival
    assert not light.saturated and light.rule is None
    assert growing.saturated and growing.rule == "quarter-means"
    # First quarter of 10·i ms over i < 1000 averages 4,995 ms; the last quarter (i >= 3000) 34,995 ms.
    assert growing.early_ttft_ms == pytest.approx(4995.0, rel=0.01)
    assert growing.late_ttft_ms == pytest.approx(34995.0, rel=0.01)
    assert light.offered_rate_rps == pytest.approx(100.0)
    assert queue_growing(arrivals, [10.0 * i for i in range(n)]) and not queue_growing(arrivals, [50.0] * n)


def test_sustainable_rate_is_the_completion_rate_of_the_middle_half():
    bins = ArrivalBins()
    # 1,000 requests arrive at 20/s but complete at 5/s (finish k at 2 + k/5 s): TTFT climbs without bound.
    for k in range(1000):
        a = k / 20
        f = 2.0 + k / 5
        bins.add(a, f - a - 0.5, f)
    v = bins.verdict()
    assert v.saturated and v.sustainable_rate_rps == pytest.approx(5.0, rel=0.03)
    assert not bins.verdict(closed_loop=True).saturated


WL = {"input_tokens": {"kind": "gaussian", "mean": 512, "stdev": 256, "min": 2, "max": 2048},
      "output_tokens": {"kind": "gaussian", "mean": 256, "stdev": 128, "min": 2, "max": 1024}}


def test_simulated_overload_is_saturated_and_a_light_run_is_not():
    heavy = simulate("llama-2-70b-hf", "H100", 4, workload={**WL, "arrival": {"process": "poisson", "rate": 40}, "num_requests": 1500},
                     seed=0, keep_requests=False)
    light = simulate("llama-2-70b-hf", "H100", 4, workload={**WL, "arrival": {"process": "poisson", "rate": 2}, "num_requests": 300},
                     seed=0, keep_requests=False)
    assert heavy.summary["saturated"] is True and light.summary["saturated"] is False
    s = heavy.summary["saturation"]
    # The estimated sustainable rate lies below what was offered and near what was served.
    assert s["sustainable_rate_rps"] < s["offered_rate_rps"] and s["offered_rate_rps"] == pytest.approx(40, rel=0.1)
    assert 0.5 * heavy.summary["requests_per_s"] < s["sustainable_rate_rps"] < 1.5 * heavy.summary["requests_per_s"]
