"""Conformal intervals from held-out rows, nested coverage, regime mismatches and the in-sample note."""

from __future__ import annotations

import math

import pytest

from servesim.latency.calibration import Calibration
from servesim.validation.compare import Row, make_row
from servesim.validation.intervals import HeldOutRun, fit_quantiles, held_out_runs, nested_coverage
from servesim.validation.runner import ModelChoice, RunComparison, ValidationReport, in_sample_of


def _run(label, model, s, regime="loaded"):
    # predicted = actual·e^s, so the run's score |ln(pred/actual)| is s exactly.
    return HeldOutRun(label, model, regime, {"ttft_mean": (100.0 * math.exp(s), 100.0)})


def test_nested_coverage_by_hand():
    runs = [_run(f"{m}{i}", m, s) for m, s in (("A", 0.1), ("B", 0.2), ("C", 0.3)) for i in range(4)]
    # Without A: scores 0.2 x4, 0.3 x4 -> k = ceil(9·0.8) = 8 -> q = 0.3 covers A's 0.1 (4 of 4).
    # Without B: 0.1 x4, 0.3 x4 -> q = 0.3 covers B (4 of 4). Without C: 0.1 x4, 0.2 x4 -> q = 0.2 misses C's 0.3 (0 of 4).
    cov = nested_coverage(runs, ["ttft_mean"])
    assert (cov.inside, cov.checked) == (8, 12) and cov.fraction == pytest.approx(2 / 3)
    q = fit_quantiles(runs)
    assert q["loaded"]["ttft_mean"] == {"q": pytest.approx(0.3), "n": 12} and "light" not in q


def test_held_out_runs_keep_measured_unsaturated_whole_run_rows():
    rows = [make_row("r1", "all", "ttft_mean", 110.0, 100.0, False), make_row("r1", "s0", "ttft_mean", 1.0, 2.0, False),
            make_row("r2", "all", "ttft_mean", 50.0, 100.0, True), make_row("r3", "all", "throughput_rps", 5.0, 5.0, False)]
    runs = held_out_runs([r.as_dict() for r in rows], {"r1": "m", "r2": "m", "r3": "m"}, {"r1": 1.0})
    assert [(r.label, r.regime, r.values) for r in runs] == [("r1", "light", {"ttft_mean": (110.0, 100.0)})]


def _comp(label, meas, pred, ape):
    row = Row(label, "all", "ttft_mean", 100 + ape, 100.0, ape, ape, meas)
    return RunComparison(label, "run", label, [row], meas, pred)


def test_regime_mismatches_and_headline_mape():
    report = ValidationReport(ModelChoice(), [_comp("a", False, True, 50.0), _comp("b", False, False, 10.0),
                                              _comp("c", True, True, 90.0), _comp("d", True, False, 70.0)])
    doc = report.to_dict()
    assert [m["experiment"] for m in doc["regime_mismatches"]] == ["a", "d"]
    assert doc["regime_accuracy"] == 0.5
    # Measured-unsaturated runs a and b enter the headline whatever was predicted: (50 + 10) / 2.
    assert doc["mape"]["ttft_mean"] == pytest.approx(30.0)
    assert [s["experiment"] for s in doc["saturated_runs"]] == ["c", "d"]


def test_in_sample_names_the_runs_the_calibration_saw():
    cal = Calibration({}, fitted_on=["a/run", "x/run"], name="t")
    runs = [_comp("a", False, False, 1.0), _comp("b", False, False, 1.0)]
    info = in_sample_of(ModelChoice("calibrated", "auto", cal), runs)
    assert info["runs"] == 1 and info["of"] == 2 and info["names"] == ["a"] and "in-sample for 1 of 2 runs" in info["note"]
    assert in_sample_of(ModelChoice("roofline-v2", "per-layer"), runs) is None
