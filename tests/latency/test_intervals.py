"""Prediction intervals: conformal quantile, interval arithmetic, file format, and what `run` does with them."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest

from servesim.errors import ConfigError
from servesim.latency.calibration import load_calibration, save_calibration
from servesim.latency.intervals import (
    annotate,
    conformal_quantile,
    interval,
    outside_envelope,
    regime_of,
    widened,
)
from servesim.simulation import simulate


def test_conformal_quantile_by_hand():
    # k = ceil((n + 1)·0.8): n = 5 -> 5th smallest; n = 9 -> 8th; n = 4 -> 4th; n = 3 -> none (k = 4 > 3).
    assert conformal_quantile([0.5, 0.1, 0.4, 0.2, 0.3]) == 0.5
    assert conformal_quantile([0.1 * i for i in range(1, 10)]) == pytest.approx(0.8)
    assert conformal_quantile([0.4, 0.3, 0.2, 0.1]) == 0.4
    assert conformal_quantile([0.1, 0.2, 0.3]) is None


def test_interval_arithmetic_and_widening():
    lo, hi = interval(100.0, math.log(1.25))
    assert lo == pytest.approx(80.0) and hi == pytest.approx(125.0)
    assert widened(0.1, 0) == 0.1 and widened(0.1, 2) == pytest.approx(0.3)
    assert regime_of(1.5) == "light" and regime_of(2.0) == "loaded" and regime_of(None) == "loaded"


ENV = {"version": 1, "hardware": ["H100-SXM"], "features": {"dense": True, "moe": False, "mla": False, "fp8_weights": False, "fp8_kv": False},
       "tp": [1, 2, 4], "max_context_tokens": 4096, "max_batch": 64.0, "regimes": ["light", "loaded"], "near_capacity": False}
FEATS = {"dense": True, "moe": False, "mla": False, "fp8_weights": False, "fp8_kv": False}


def test_envelope_names_each_dimension_outside():
    inside = outside_envelope(ENV, hardware="H100-SXM", features=FEATS, tp=2, max_context_tokens=3000, mean_batch=10.0,
                              regime="loaded", near_capacity=False)
    assert inside == []
    out = outside_envelope(ENV, hardware="B200", features={**FEATS, "moe": True, "fp8_kv": True}, tp=8, max_context_tokens=9000,
                           mean_batch=100.0, regime="loaded", near_capacity=True)
    assert len(out) == 7 and out[0].startswith("GPU B200") and any("moe" in x for x in out) and any("TP8" in x for x in out)


INTERVALS = {"version": 1, "level": 0.8, "quantiles": {"loaded": {"ttft_mean": {"q": 0.2, "n": 10}}, "all": {"ttft_mean": {"q": 0.3, "n": 20},
             "itl_mean": {"q": 0.1, "n": 20}}}}


def test_annotate_uses_the_regime_bin_then_the_pooled_one():
    s = {"ttft_ms": {"mean": 100.0, "p90": 150.0}, "itl_ms": {"mean": 10.0}, "e2e_ms": {"mean": 2000.0}, "requests_per_s": 5.0, "saturated": False}
    note = annotate(s, INTERVALS, [])
    assert note["regime"] == "loaded" and note["level"] == 0.8  # 5 req/s x 2 s = 10 in system
    assert s["ttft_ms"]["mean_interval"] == pytest.approx([100 * math.exp(-0.2), 100 * math.exp(0.2)])
    assert s["itl_ms"]["mean_interval"] == pytest.approx([10 * math.exp(-0.1), 10 * math.exp(0.1)])  # pooled bin
    assert "p90_interval" not in s["ttft_ms"]  # no quantile stored for it
    s2 = {"ttft_ms": {"mean": 100.0}, "itl_ms": {}, "e2e_ms": {"mean": 2000.0}, "requests_per_s": 5.0, "saturated": False}
    annotate(s2, INTERVALS, ["GPU B200", "TP8"])
    assert s2["ttft_ms"]["mean_interval"] == pytest.approx([100 * math.exp(-0.6), 100 * math.exp(0.6)])  # 0.2 x (1 + 2)


def test_calibration_files_with_and_without_intervals(tmp_path):
    old = load_calibration("default")
    assert old.intervals is None or old.intervals["version"] == 1
    path = tmp_path / "cal.json"
    save_calibration(dataclasses.replace(old, intervals=INTERVALS, envelope=ENV), path)
    new = load_calibration(path)
    assert new.intervals == INTERVALS and new.envelope == ENV
    wl = {"input_tokens": 256, "output_tokens": 64, "arrival": {"process": "poisson", "rate": 4}, "num_requests": 100}
    res = simulate("llama-2-7b-hf", "H100", 1, workload=wl, latency_model="calibrated", calibration=new, seed=1)
    pi = res.summary["prediction_intervals"]
    assert pi["available"] and pi["level"] == 0.8 and pi["outside_envelope"] == []
    q = pi["scores"]["ttft_mean"]
    m = res.summary["ttft_ms"]["mean"]
    assert res.summary["ttft_ms"]["mean_interval"] == pytest.approx([m * math.exp(-q), m * math.exp(q)])
    bare = dataclasses.replace(old, intervals=None, envelope=None)
    res0 = simulate("llama-2-7b-hf", "H100", 1, workload=wl, latency_model="calibrated", calibration=bare, seed=1)
    assert res0.summary["prediction_intervals"]["available"] is False and "no prediction intervals" in res0.summary["prediction_intervals"]["note"]
    assert "mean_interval" not in res0.summary["ttft_ms"]


@pytest.mark.parametrize("field,value,needle", [
    ("intervals", {"version": 2, "level": 0.8, "quantiles": {}}, "intervals.version=2"),
    ("intervals", {"version": 1, "level": 1.5, "quantiles": {}}, "intervals.level=1.5"),
    ("intervals", {"version": 1, "level": 0.8, "quantiles": {"heavy": {}}}, "intervals.quantiles.heavy"),
    ("intervals", {"version": 1, "level": 0.8, "quantiles": {"all": {"ttft_mean": {"q": -1}}}}, "intervals.quantiles.all.ttft_mean.q=-1"),
    ("envelope", {"version": 1, "hardware": "H100", "tp": [1], "features": {}}, "envelope.hardware"),
])
def test_bad_interval_fields_are_named(tmp_path, field, value, needle):
    raw = load_calibration("default").to_dict()
    raw[field] = value
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(raw))
    with pytest.raises(ConfigError, match=needle.replace(".", r"\.").replace("=", "=").replace("[", r"\[")):
        load_calibration(path)
