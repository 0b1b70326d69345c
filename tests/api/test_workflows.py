"""servesim.validate / sweep / capacity / calibrate: typed results with real numbers, DataFrames, ServesimError."""

from __future__ import annotations

import csv
import sys

import pytest

import servesim
from servesim.errors import ServesimError

WL = {"input_tokens": 256, "output_tokens": 32, "arrival": {"process": "poisson", "rate": 6}, "num_requests": 40}


def _self_experiment(tmp_path, latency_model="roofline-v2", overhead="per-layer", name="self"):
    """An experiment whose measurements are a servesim run itself: replaying it must give ~0 % error."""
    r = servesim.simulate("llama-2-7b-hf", "H100", 1, latency_model=latency_model, overhead=overhead, seed=1, workload=WL)
    folder = tmp_path / name
    folder.mkdir()
    with open(folder / "r.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["arrival_time_s", "input_tokens", "output_tokens", "ttft_ms", "e2e_ms"])
        for q in r.requests:
            w.writerow([repr(q["arrival_s"]), q["input_tokens"], q["output_tokens"], repr(q["ttft_ms"]), repr(q["e2e_ms"])])
    (folder / "experiment.yaml").write_text(f"name: {name}\nmodel: llama-2-7b-hf\nhardware: H100\ntensor_parallel_size: 1\n"
                                            "engine: {}\nground_truth: {format: requests-csv, path: r.csv}\n")
    return folder, r


def test_validate_a_run_against_itself_is_exact(tmp_path):
    folder, r = _self_experiment(tmp_path)
    res = servesim.validate(folder, latency_model="roofline-v2", overhead="per-layer")
    assert isinstance(res, servesim.ValidateResult) and res.model == "roofline-v2 + per-layer"
    ttft = [row for row in res.rows if row["metric"] == "ttft_mean" and row["stage"] == "all"]
    assert len(ttft) == 1 and ttft[0]["actual"] == pytest.approx(r.summary["ttft_ms"]["mean"], rel=1e-9)
    assert all(row["ape"] < 1e-6 for row in res.rows if row["metric"].startswith(("ttft", "e2e")))
    assert res.mape["ttft_mean"] < 1e-6
    from servesim.config.outfile import stamp
    from servesim.schema import ValidationOutput

    ValidationOutput.model_validate(stamp(res.report))  # what `validate --output` writes fits its schema
    with pytest.raises(ServesimError, match="give experiments"):
        servesim.validate()


def test_sweep_in_memory_matches_simulate():
    spec = {"base": {"latency_model": "roofline-v2", "workload": {"input_tokens": 100, "output_tokens": 8,
                                                                  "arrival": "synchronous", "num_requests": 4}},
            "grid": {"tp": [1, 2]}}
    res = servesim.sweep(spec)
    assert [row["params"] for row in res.rows] == [{"tp": 1}, {"tp": 2}]
    one = servesim.simulate("llama-2-7b-hf", "H100", 2, latency_model="roofline-v2",
                            workload=spec["base"]["workload"])
    assert res.rows[1]["summary"]["ttft_ms"]["mean"] == one.summary["ttft_ms"]["mean"]
    assert res.rows[1]["summary"]["ttft_ms"]["mean"] < res.rows[0]["summary"]["ttft_ms"]["mean"]  # TP2 prefills faster
    with pytest.raises(ServesimError, match="workers"):
        servesim.sweep(spec, workers=0)


def test_capacity_bisects_to_the_slo():
    res = servesim.capacity("ttft_p99_ms=80", latency_model="roofline-v2", num_requests=60, rate_min=1, rate_max=64,
                            tolerance=0.1, workload={"input_tokens": 512, "output_tokens": 64, "arrival": {"process": "poisson", "rate": 1}, "num_requests": 60})
    (row,) = res.results
    assert res.slos == {"ttft_p99_ms": 80.0} and row["bracketed"]
    rate = row["max_rate"]
    assert 1 <= rate < 64
    # every probe at or below the answer met the SLO, and one just above it (within the tolerance) failed
    assert all(e["ok"] and e["ttft_p99_ms"] <= 80 for e in row["evaluations"] if e["rate"] <= rate)
    above = [e["rate"] for e in row["evaluations"] if not e["ok"]]
    assert above and min(above) <= rate * 1.1 + 1e-9 and min(above) > rate
    with pytest.raises(ServesimError):
        servesim.capacity("ttft_p99=100")


def test_calibrate_recovers_a_fit_with_small_training_error(tmp_path):
    folder, _ = _self_experiment(tmp_path, latency_model="calibrated", overhead="none", name="cal")
    res = servesim.calibrate(folder, iterations=2, fit_window_s=0)
    assert len(res.fitted_on) == 1 and res.fitted_on[0].startswith("cal/") and res.left_out_saturated == []
    from servesim.latency.calibration import load_calibration

    assert set(res.calibration.theta) == set(load_calibration().theta)
    assert res.mape and all(v == v for v in res.mape.values())  # finite numbers
    assert res.mape["ttft_mean"] < 25  # fitted on this run: a training error
    with pytest.raises(ServesimError, match="iterations"):
        servesim.calibrate(folder, iterations=0)


def test_to_dataframe_without_pandas_is_one_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "pandas", None)
    res = servesim.workflows.SweepResult("x", [])
    with pytest.raises(ServesimError, match=r"pip install 'servesim\[pandas\]'"):
        res.to_dataframe()


def test_to_dataframe_columns(tmp_path):
    pytest.importorskip("pandas")
    folder, _ = _self_experiment(tmp_path)
    df = servesim.validate(folder, latency_model="roofline-v2", overhead="per-layer").to_dataframe()
    assert {"experiment", "stage", "metric", "predicted", "actual", "ape"} <= set(df.columns) and len(df) > 5
    spec = {"base": {"latency_model": "roofline-v2", "workload": {"input_tokens": 10, "output_tokens": 2, "arrival": "synchronous", "num_requests": 2}},
            "grid": {"tp": [1, 2]}}
    sdf = servesim.sweep(spec).to_dataframe()
    assert list(sdf["params.tp"]) == [1, 2] and "summary.ttft_ms.mean" in sdf.columns


def test_py_typed_ships():
    from importlib.resources import files

    assert files("servesim").joinpath("py.typed").is_file()
