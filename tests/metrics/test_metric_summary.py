"""Exact summaries: percentile arithmetic, pooled ITL, throughput, empty input, stages."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from servesim.engine.request import RequestRecord
from servesim.metrics.summary import SUMMARY_KEYS, Distribution, summarize, summarize_by_stage, weighted_percentiles


def rec(i, arrival, ttft, e2e, n, *, sched=None, times=True, stage=0, preempt=0, inp=100) -> RequestRecord:
    """A completed record; token times evenly spaced from first token to finish when times=True."""
    first, finish = arrival + ttft, arrival + e2e
    token_times = list(np.linspace(first, finish, n)) if times else None
    return RequestRecord(i, arrival, inp, n, stage=stage, first_scheduled_s=arrival + (sched or 0.0),
                         first_token_s=first, finish_s=finish, preemptions=preempt, token_times_s=token_times)


def test_percentiles_by_hand():
    dist = Distribution.of([10.0, 20.0, 60.0])
    # ranks p/100·(n−1): p50 → 1 → 20; p90 → 1.8 → 20 + 0.8·40 = 52; p95 → 1.9 → 56; p99 → 1.98 → 59.2
    assert (dist.count, dist.mean, dist.p50) == (3, 30.0, 20.0)
    assert dist.p90 == pytest.approx(52.0) and dist.p95 == pytest.approx(56.0) and dist.p99 == pytest.approx(59.2)
    assert Distribution.of([5.0]).as_dict() == {"mean": 5.0, "p50": 5.0, "p90": 5.0, "p95": 5.0, "p99": 5.0}


def test_empty_distribution_is_none_not_nan():
    assert Distribution.of([]).as_dict(1e3) == {"mean": None, "p50": None, "p90": None, "p95": None, "p99": None}
    assert Distribution.of([1.0], np.array([0])).count == 0


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.floats(0, 1e3, allow_nan=False), st.integers(0, 6)), min_size=1, max_size=30).filter(
        lambda xs: sum(c for _, c in xs) > 0
    )
)
def test_weighted_percentiles_equal_numpy_on_the_repeated_sample(pairs):
    values = np.array([v for v, _ in pairs])
    counts = np.array([c for _, c in pairs])
    qs = (0, 1, 50, 90, 95, 99, 100)
    expected = np.percentile(np.repeat(values, counts), qs)
    assert np.allclose(weighted_percentiles(values, counts, qs), expected, rtol=1e-12, atol=1e-12)


def test_summarize_hand_built_run():
    records = [
        rec(0, 0.0, 0.010, 0.040, 4, sched=0.001, preempt=1),  # ITL gaps 10, 10, 10 ms
        rec(1, 0.5, 0.020, 0.070, 2, sched=0.004),  # one gap 50 ms
        rec(2, 1.0, 0.060, 0.160, 3, times=False),  # no token times: 2 gaps of its TPOT 50 ms
        RequestRecord(3, 1.2, 100, 8, rejected=True, reject_reason="too long", preemptions=2),
        rec(4, 1.5, 0.030, 0.030, 1),  # one token: no TPOT, no ITL
    ]
    s = summarize(records)
    assert tuple(s) == SUMMARY_KEYS
    assert s["completed"] == 4 and s["rejected"] == 1 and s["preemptions"] == 3
    assert s["ttft_ms"]["mean"] == pytest.approx((10 + 20 + 60 + 30) / 4)
    assert s["e2e_ms"]["p50"] == pytest.approx((40 + 70) / 2)  # sorted 30, 40, 70, 160
    assert s["tpot_ms"]["mean"] == pytest.approx((10 + 50 + 50) / 3)
    # pooled ITL: 10, 10, 10, 50, 50, 50 ms → mean 30, p50 at rank 2.5 → 30, p90 at rank 4.5 → 50
    assert s["itl_ms"]["mean"] == pytest.approx(30.0)
    assert s["itl_ms"]["p50"] == pytest.approx(30.0) and s["itl_ms"]["p90"] == pytest.approx(50.0)
    assert s["queue_ms"]["mean"] == pytest.approx((1 + 4 + 0 + 0) / 4)
    # duration: first arrival 0.0 → last finish 1.53
    assert s["duration_s"] == pytest.approx(1.53)
    assert s["requests_per_s"] == pytest.approx(4 / 1.53)
    assert s["output_tokens_per_s"] == pytest.approx((4 + 2 + 3 + 1) / 1.53)
    assert s["total_tokens_per_s"] == pytest.approx((4 + 2 + 3 + 1 + 400) / 1.53)
    assert summarize(records, duration_s=2.0)["requests_per_s"] == 2.0


def test_summarize_nothing_is_nan_free():
    s = summarize([])
    assert s["completed"] == 0 and s["duration_s"] == 0.0 and s["requests_per_s"] == 0.0
    assert s["ttft_ms"]["p99"] is None and s["itl_ms"]["mean"] is None
    flat = [v for v in s.values() if not isinstance(v, dict)] + [x for v in s.values() if isinstance(v, dict) for x in v.values()]
    assert not any(isinstance(x, float) and math.isnan(x) for x in flat)
    only_rejected = summarize([RequestRecord(0, 0.0, 10, 5, rejected=True)])
    assert only_rejected["rejected"] == 1 and only_rejected["requests_per_s"] == 0.0


def test_summarize_by_stage():
    records = [rec(0, 0.0, 0.01, 0.05, 2, stage=0), rec(1, 1.0, 0.02, 0.04, 2, stage=1),
               rec(2, 1.5, 0.03, 0.06, 2, stage=1)]
    by = summarize_by_stage(records)
    assert list(by) == [0, 1]
    assert by[0]["completed"] == 1 and by[1]["completed"] == 2
    assert by[1]["duration_s"] == pytest.approx(0.56)  # 1.0 → 1.56
    assert summarize_by_stage(records, durations_s={1: 10.0})[1]["requests_per_s"] == pytest.approx(0.2)
