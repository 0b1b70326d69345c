"""Steady-state probe stopping rule on synthetic data: warm-up cut, CI verdicts, doubling, saturation."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from servesim.sweep import parse_slo
from servesim.sweep.steady import MAX_REQUESTS, MetricSeries, check_slo, mser_cut, probe, record_series, statistic


def test_mser_cuts_the_warm_up_ramp():
    rng = np.random.default_rng(0)
    x = np.concatenate([np.full(100, 100.0), 1.0 + 0.01 * rng.standard_normal(2000)])
    assert mser_cut(x) == 100
    assert mser_cut(1.0 + 0.01 * rng.standard_normal(2000)) < 200  # stationary: little or nothing dropped


def test_weighted_statistics():
    v, w = np.array([10.0, 20.0]), np.array([1.0, 3.0])
    assert statistic(v, w, "mean") == pytest.approx(17.5)
    assert statistic(np.arange(101.0), np.ones(101), "p99") == pytest.approx(99.0)


def _records(n, values, rate=10.0):
    return [{"id": i, "arrival_s": i / rate, "ttft_ms": float(values[i]), "e2e_ms": 100.0, "tpot_ms": 5.0, "output_tokens": 10}
            for i in range(n)]


def test_probe_decides_at_once_when_the_ci_is_clear_of_the_limit():
    calls = []
    rng = np.random.default_rng(1)
    vals = 50 + rng.standard_normal(MAX_REQUESTS)

    def run(n):
        calls.append(n)
        return _records(n, vals), SimpleNamespace(saturated=False, rule=None)

    v = probe(run, [parse_slo("ttft_mean_ms=60")], record_series)
    assert v.ok and calls == [1500] and "CI below" in v.reason
    v = probe(run, [parse_slo("ttft_mean_ms=40")], record_series)
    assert not v.ok and "CI above" in v.reason


def test_probe_doubles_until_the_cap_when_the_statistic_sits_on_the_limit():
    calls = []
    rng = np.random.default_rng(2)
    vals = 50 + 30 * rng.standard_normal(MAX_REQUESTS)  # mean 50 exactly at the limit, CI wider than 5 % at first

    def run(n):
        calls.append(n)
        return _records(n, vals), SimpleNamespace(saturated=False, rule=None)

    v = probe(run, [parse_slo("ttft_p99_ms=119.8")], record_series)
    assert len(calls) > 1 and calls[0] == 1500 and all(b == min(2 * a, MAX_REQUESTS) for a, b in zip(calls, calls[1:]))
    assert v.requests == calls[-1]


def test_saturated_probe_fails_without_more_requests():
    calls = []

    def run(n):
        calls.append(n)
        return _records(n, np.arange(n, dtype=float)), SimpleNamespace(saturated=True, rule="quarter-means")

    v = probe(run, [parse_slo("ttft_p99_ms=500")], record_series)
    assert not v.ok and calls == [1500] and v.reason.startswith("saturated")


def test_check_slo_sees_a_rising_series_as_not_steady():
    x = np.linspace(10, 40, 2000)
    c = check_slo("ttft_mean_ms", MetricSeries(x, np.ones(x.size)), "mean", 100.0, np.random.default_rng(0))
    assert c.decision == "undecided" and "rising" in c.reason


def test_queue_trend_flags_a_slowly_growing_ttft_only():
    from servesim.sweep.steady import queue_trend_z

    rng = np.random.default_rng(3)
    flat = 100 + 5 * rng.standard_normal(2000)
    assert queue_trend_z(flat) < 3.09
    assert queue_trend_z(flat + np.linspace(0, 50, 2000)) >= 3.09  # +50 ms over the window: 20 rising batch means
