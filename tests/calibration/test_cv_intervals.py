"""Cross-validation writes schema-valid intervals and an envelope into the calibration it fits (synthetic runs)."""

from dataclasses import replace

from servesim.latency.calibration import load_calibration, save_calibration
from servesim.simulation import simulate
from servesim.validation.crossval import cv_report, leave_one_model_out
from servesim.validation.intervals import cv_intervals, envelope_doc

from test_fit_recovers_constants import TRUE, synthetic_experiment


def test_cv_intervals_and_envelope_round_trip(tmp_path):
    units = [synthetic_experiment(m, 1, rate, i) for i, (m, rate) in enumerate(
        [("llama-2-7b-hf", 2.0), ("llama-2-7b-hf", 8.0), ("qwen3-14b", 1.0), ("qwen3-14b", 4.0),
         ("codellama-34b-instruct-hf", 1.0), ("codellama-34b-instruct-hf", 3.0)])]
    fixed = {k: v for k, v in TRUE.theta.items() if k not in ("gemm_memory_s", "step")}
    fixed.update({"frontend": TRUE.frontend_latency_s, "frontend_per_token": 0.0})
    start = replace(TRUE, theta={**TRUE.theta, "gemm_memory_s": 1.0, "step": 0.0})
    rep = cv_report(leave_one_model_out(units, iterations=1, start=start, fixed=fixed))
    runs, intervals = cv_intervals(rep, [e for e, _ in units])
    assert len(runs) == 6 and {r["model"] for r in runs} == {"llama-2-7b-hf", "qwen3-14b", "codellama-34b-instruct-hf"}
    assert intervals["fitted_on"]["runs"] == 6 and intervals["quantiles"]["all"]["ttft_mean"]["n"] == 6
    # Six scores at level 0.8: k = ceil(7·0.8) = 6, the largest held-out score.
    scores = [abs(__import__("math").log(r.predicted / r.actual)) for r in rep.rows if r.stage == "all" and r.metric == "ttft_mean"]
    assert intervals["quantiles"]["all"]["ttft_mean"]["q"] == max(scores)
    env = envelope_doc(units, {r["experiment"]: r["mean_in_system"] for r in runs})
    assert env["hardware"] == ["H100-SXM"] and env["tp"] == [1] and env["features"]["dense"] and not env["features"]["moe"]
    path = tmp_path / "cal.json"
    save_calibration(replace(TRUE, intervals=intervals, envelope=env), path)
    cal = load_calibration(path)
    res = simulate("llama-2-7b-hf", "H100", 2, workload={"input_tokens": 200, "output_tokens": 50, "num_requests": 60,
                   "arrival": {"process": "poisson", "rate": 2}}, latency_model="calibrated", calibration=cal, seed=0)
    pi = res.summary["prediction_intervals"]
    assert pi["available"] and any("TP2" in x for x in pi["outside_envelope"])
    assert "mean_interval" in res.summary["ttft_ms"]
