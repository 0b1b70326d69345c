"""Arrival processes: exact constant spacing, Poisson/gamma rate and cv, stages."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from servesim.errors import WorkloadError
from servesim.workload import arrivals as a


def first_n(process: a.OpenLoop, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The first n (times, stage) of an open-loop process."""
    times, stages = [], []
    for t, s in process.chunks(np.random.default_rng(seed), chunk=1000):
        times.append(t)
        stages.append(np.full(len(t), s))
        if sum(map(len, times)) >= n:
            break
    return np.concatenate(times)[:n], np.concatenate(stages)[:n]


def test_constant_rate_is_exactly_spaced_from_zero():
    t, s = first_n(a.constant(4), 2500)
    assert t[0] == 0.0
    assert np.array_equal(t, np.arange(2500) / 4.0)  # k/rate, no accumulated rounding
    assert np.allclose(np.diff(t), 0.25, rtol=0, atol=1e-12)
    assert set(s.tolist()) == {0}


def test_poisson_mean_rate_and_unit_cv():
    t, _ = first_n(a.poisson(5), 40_000, seed=1)
    gaps = np.diff(t)
    assert t[0] == 0.0
    assert gaps.mean() == pytest.approx(0.2, rel=0.02)
    assert gaps.std() / gaps.mean() == pytest.approx(1.0, rel=0.03)


def test_gamma_mean_rate_and_cv():
    t, _ = first_n(a.gamma(5, cv=2.0), 40_000, seed=2)
    gaps = np.diff(t)
    assert gaps.mean() == pytest.approx(0.2, rel=0.05)
    assert gaps.std() / gaps.mean() == pytest.approx(2.0, rel=0.08)


def test_gamma_with_cv_one_matches_poisson_statistics():
    t, _ = first_n(a.gamma(10, cv=1.0), 20_000, seed=3)
    gaps = np.diff(t)
    assert gaps.mean() == pytest.approx(0.1, rel=0.03)
    assert gaps.std() / gaps.mean() == pytest.approx(1.0, rel=0.04)


def test_constant_stages_have_exact_counts_times_and_tags():
    p = a.staged([(2, 5), (10, 3)], "constant")
    chunks = list(p.chunks(np.random.default_rng(0), chunk=7))  # a small chunk crosses chunk borders
    t = np.concatenate([c[0] for c in chunks])
    s = np.concatenate([np.full(len(c[0]), c[1]) for c in chunks])
    assert len(t) == 2 * 5 + 10 * 3
    assert np.allclose(t[:10], np.arange(10) * 0.5)
    assert np.allclose(t[10:], 5.0 + np.arange(30) * 0.1)
    assert s.tolist() == [0] * 10 + [1] * 30
    assert p.finite and p.duration_s == 8


def test_inference_perf_general_profile_gives_its_16800_requests():
    # profile.yaml of 20260217-231439-llama-2-7b-tp1-general: stages 8 req/s and 20 req/s, 600 s each
    p = a.staged([(8, 600), (20, 600)], "constant")
    counts = [len(t) for t, _ in p.chunks(np.random.default_rng(0))]
    assert sum(counts) == 16_800


def test_poisson_stages_stay_inside_their_windows():
    p = a.staged([(20, 5), (50, 4)], "poisson")
    by_stage: dict[int, list[float]] = {0: [], 1: []}
    for t, s in p.chunks(np.random.default_rng(4), chunk=16):
        by_stage[s].extend(t.tolist())
    assert by_stage[0][0] == 0.0 and max(by_stage[0]) < 5.0
    assert by_stage[1][0] == 5.0 and min(by_stage[1]) >= 5.0 and max(by_stage[1]) < 9.0
    assert len(by_stage[0]) == pytest.approx(100, rel=0.35)
    assert len(by_stage[1]) == pytest.approx(200, rel=0.25)
    every = by_stage[0] + by_stage[1]
    assert every == sorted(every)


def test_plain_rates_are_endless_and_lazy():
    p = a.poisson(1000)
    assert not p.finite and p.duration_s == math.inf
    assert len(list(itertools.islice(p.chunks(np.random.default_rng(0), chunk=10), 3))) == 3


def test_closed_loop_factories():
    assert a.synchronous() == a.ClosedLoop(1, 0.0)
    assert a.concurrency(8, think_time_s=0.5) == a.ClosedLoop(8, 0.5)


@pytest.mark.parametrize(
    ("make", "needle"),
    [
        (lambda: a.constant(0), "rate=0"),
        (lambda: a.poisson(-1), "rate=-1"),
        (lambda: a.poisson(float("nan")), "rate=nan"),
        (lambda: a.poisson(float("inf")), "rate=inf"),
        (lambda: a.gamma(1, 0), "cv=0"),
        (lambda: a.staged([]), "stages=[]"),
        (lambda: a.staged([(1, 0)]), "duration_s=0"),
        (lambda: a.staged([(1, math.inf)]), "finite duration_s"),
        (lambda: a.staged([(1, 5)], "weibull"), "process='weibull'"),  # type: ignore[arg-type]
        (lambda: a.concurrency(0), "concurrency=0"),
        (lambda: a.concurrency(1.5), "concurrency=1.5"),  # type: ignore[arg-type]
        (lambda: a.concurrency(2, think_time_s=-1), "think_time_s=-1"),
    ],
)
def test_bad_arrival_parameters_raise_one_line_workload_error(make, needle):
    with pytest.raises(WorkloadError) as err:
        make()
    assert needle in str(err.value) and "\n" not in str(err.value)
