"""Streaming summaries against the exact summary: exact means, percentiles within 0.5 %."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from servesim.engine.request import RequestRecord
from servesim.metrics.streaming import LogHistogram, StreamingSummary
from servesim.metrics.summary import summarize

REL = 0.005


def random_records(n: int, seed: int) -> list[RequestRecord]:
    """Records with lognormal latencies; a third without token times; some rejected, some one-token."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        arrival = i * 0.05
        if i % 17 == 0:
            out.append(RequestRecord(i, arrival, 50, 10, rejected=True, preemptions=1))
            continue
        n_out = int(rng.integers(1, 40))
        sched = arrival + rng.lognormal(-6, 1.5)
        first = sched + rng.lognormal(-3, 0.7)
        gaps = rng.lognormal(-4, 0.5, n_out - 1)
        times = list(first + np.concatenate([[0.0], np.cumsum(gaps)]))
        out.append(RequestRecord(i, arrival, int(rng.integers(10, 900)), n_out, first_scheduled_s=sched,
                                 first_token_s=first, finish_s=times[-1], preemptions=int(i % 5 == 0),
                                 token_times_s=times if i % 3 else None))
    return out


def test_streaming_matches_exact_summary_within_the_stated_bound():
    records = random_records(4000, seed=1)
    exact = summarize(records)
    stream = StreamingSummary()
    stream.add_many(records)
    approx = stream.summary()
    assert list(approx) == list(exact)
    for key, value in exact.items():
        if isinstance(value, dict):
            assert approx[key]["mean"] == pytest.approx(value["mean"], rel=1e-9), key
            for p in ("p50", "p90", "p95", "p99"):
                assert abs(approx[key][p] - value[p]) <= REL * abs(value[p]) * (1 + 1e-9), (key, p)
        else:
            assert approx[key] == pytest.approx(value, rel=1e-12), key


def test_streaming_empty_and_explicit_duration():
    s = StreamingSummary().summary()
    assert s["completed"] == 0 and s["ttft_ms"]["mean"] is None and s["requests_per_s"] == 0.0
    stream = StreamingSummary()
    stream.add_many(random_records(50, seed=2))
    assert stream.summary(duration_s=10.0)["requests_per_s"] == pytest.approx(stream.completed / 10.0)


def test_histogram_memory_is_fixed():
    h = LogHistogram()
    size = h._counts.size
    for seed in range(5):
        h.add(np.random.default_rng(seed).lognormal(0, 3, 100_000))
    assert h._counts.size == size < 4000 and h.count == 500_000


@settings(max_examples=80, deadline=None)
@given(st.lists(st.one_of(st.just(0.0), st.floats(1e-6, 1e5)), min_size=1, max_size=200), st.integers(1, 5))
def test_histogram_percentiles_within_relative_error(values, weight):
    v = np.array(values)
    h = LogHistogram()
    h.add(v, weight)
    exact = np.percentile(np.repeat(v, weight), [0, 10, 50, 90, 95, 99, 100])
    approx = np.array(h.percentiles([0, 10, 50, 90, 95, 99, 100]))
    assert np.all(np.abs(approx - exact) <= REL * np.abs(exact) * (1 + 1e-9) + 1e-12)
    assert h.distribution().mean == pytest.approx(v.mean(), rel=1e-9, abs=1e-12)


def test_histogram_refuses_negative_values():
    with pytest.raises(ValueError):
        LogHistogram().add([-1.0])
