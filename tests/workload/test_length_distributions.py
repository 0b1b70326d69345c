"""Token-length distributions: GuideLLM/BLIS clamp+round, sample means, validation."""

from __future__ import annotations

import numpy as np
import pytest

from servesim.errors import WorkloadError
from servesim.workload import distributions as d

N = 20_000


class FixedDraws:
    """A stand-in Generator whose continuous draws are a fixed array (to check the transform by hand)."""

    def __init__(self, values: list[float]) -> None:
        self.values = np.array(values, dtype=np.float64)

    def normal(self, mean: float, stdev: float, n: int) -> np.ndarray:
        return self.values[:n].copy()


DRAWS = [-3.0, 0.4, 0.5, 1.49, 7.5, 2047.6, 5000.0]


def test_gaussian_clamps_then_rounds_half_up_within_bounds():
    g = d.gaussian(512, 256, min=2, max=2048)
    out = g.sample(FixedDraws(DRAWS), len(DRAWS))  # type: ignore[arg-type]
    assert out.tolist() == [2, 2, 2, 2, 8, 2048, 2048]
    assert out.dtype == np.int64


def test_gaussian_never_below_one_even_with_min_zero():
    g = d.gaussian(512, 256, min=0)
    out = g.sample(FixedDraws(DRAWS), len(DRAWS))  # type: ignore[arg-type]
    # -3 -> clamp 0 -> 1; 0.4 -> 0 -> 1; 0.5 -> 1 (half up); 1.49 -> 1; 7.5 -> 8; unbounded above
    assert out.tolist() == [1, 1, 1, 1, 8, 2048, 5000]


def test_gaussian_zero_stdev_is_the_rounded_mean():
    rng = np.random.default_rng(0)
    assert set(d.gaussian(2.5, 0).sample(rng, 100).tolist()) == {3}
    assert set(d.gaussian(0.2, 0, min=0).sample(rng, 100).tolist()) == {1}


def test_gaussian_wide_stdev_hits_both_bounds_and_stays_inside():
    out = d.gaussian(100, 1000, min=5, max=20).sample(np.random.default_rng(1), N)
    assert out.min() == 5 and out.max() == 20


@pytest.mark.parametrize(
    ("dist", "mean", "rel_tol"),
    [
        (d.constant(7), 7.0, 0.0),
        (d.gaussian(1000, 100, min=1, max=5000), 1000.0, 0.005),
        (d.uniform(10, 20), 15.0, 0.01),
        (d.exponential(200), 200.0, 0.03),
        (d.lognormal(300, 150), 300.0, 0.02),
        (d.empirical([1, 2, 3, 10]), 4.0, 0.03),
    ],
)
def test_sample_mean_on_20k_draws(dist, mean, rel_tol):
    out = dist.sample(np.random.default_rng(42), N)
    assert out.shape == (N,) and out.dtype == np.int64 and out.min() >= 1
    assert abs(out.mean() - mean) <= rel_tol * mean + 1e-12


def test_lognormal_is_parameterised_by_the_lengths_mean_and_stdev():
    out = d.lognormal(300, 150).sample(np.random.default_rng(3), N)
    assert out.std() == pytest.approx(150, rel=0.05)


def test_uniform_is_inclusive_at_both_ends():
    out = d.uniform(10, 12).sample(np.random.default_rng(5), 3000)
    assert set(out.tolist()) == {10, 11, 12}


def test_empirical_only_returns_given_values():
    out = d.empirical([5, 9]).sample(np.random.default_rng(5), 1000)
    assert set(out.tolist()) == {5, 9}


def test_same_seed_same_lengths_different_seed_different():
    g = d.gaussian(512, 256, 2, 2048)
    a = g.sample(np.random.default_rng(11), 500)
    b = g.sample(np.random.default_rng(11), 500)
    c = g.sample(np.random.default_rng(12), 500)
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_empirical_reads_one_integer_per_line(tmp_path):
    f = tmp_path / "lengths.txt"
    f.write_text("12\n\n30\n7.0\n")
    assert d.empirical(file=f).values == (12, 30, 7)


def test_empirical_reads_a_csv_column(tmp_path):
    f = tmp_path / "lengths.csv"
    f.write_text("prompt,output\n100,5\n200,6\n")
    assert d.empirical(file=f, column="output").values == (5, 6)


@pytest.mark.parametrize(
    ("make", "needle"),
    [
        (lambda: d.gaussian(100, 10, min=50, max=20), "max=20"),
        (lambda: d.gaussian(100, -1), "stdev=-1"),
        (lambda: d.gaussian(float("nan"), 1), "mean=nan"),
        (lambda: d.gaussian(100, 10, min=-1), "min=-1"),
        (lambda: d.gaussian(100, 10, min=2.5), "min=2.5"),
        (lambda: d.constant(0), "value=0"),
        (lambda: d.constant(-5), "value=-5"),
        (lambda: d.constant(2.5), "value=2.5"),
        (lambda: d.constant(True), "value=True"),
        (lambda: d.uniform(0, 5), "min=0"),
        (lambda: d.uniform(9, 5), "max=5"),
        (lambda: d.exponential(0), "mean=0"),
        (lambda: d.exponential(float("inf")), "mean=inf"),
        (lambda: d.lognormal(100, -3), "stdev=-3"),
        (lambda: d.empirical([]), "values=[]"),
        (lambda: d.empirical([3, 0]), "values[1]=0"),
        (lambda: d.empirical(), "exactly one of values or file"),
        (lambda: d.length_distribution("zipf", {}), "kind='zipf'"),
        (lambda: d.length_distribution("constant", {"value": 3, "stdev": 1}), "'stdev'"),
        (lambda: d.length_distribution("gaussian", {"mean": 3}), "needs mean, stdev"),
    ],
)
def test_bad_parameters_raise_one_line_workload_error(make, needle):
    with pytest.raises(WorkloadError) as err:
        make()
    msg = str(err.value)
    assert needle in msg and "\n" not in msg


@pytest.mark.parametrize(
    ("name", "text", "column", "needle"),
    [
        ("bad.txt", "12\nabc\n", None, "line 2"),
        ("zero.txt", "12\n0\n", None, "line 2"),
        ("empty.txt", "", None, "no lengths"),
        ("nocol.csv", "a,b\n1,2\n", "c", "column='c'"),
        ("ambiguous.csv", "a,b\n1,2\n", None, "2 columns"),
        ("short.csv", "a,b\n1,2\n3\n", "b", "line 3"),
    ],
)
def test_bad_lengths_files_name_file_and_line(tmp_path, name, text, column, needle):
    f = tmp_path / name
    f.write_text(text)
    with pytest.raises(WorkloadError) as err:
        d.empirical(file=f, column=column)
    assert name in str(err.value) and needle in str(err.value)


def test_missing_lengths_file_is_a_workload_error(tmp_path):
    with pytest.raises(WorkloadError, match="cannot read"):
        d.empirical(file=tmp_path / "nope.txt")
