"""The calibrated model's features on hand-computed cases, the front-end stage, calibration files."""

import json

import pytest

from servesim.config import load_hardware, load_model
from servesim.engine.request import RequestSpec
from servesim.errors import ConfigError
from servesim.latency import StepPlan
from servesim.latency.calibrated import FEATURES, StepFeatures, padded_batch
from servesim.latency.calibration import Calibration, load_calibration, save_calibration
from servesim.workload import ListSource
from servesim.workload.frontend import FrontendSource

H100 = load_hardware("H100")
L7 = load_model("llama-2-7b-hf")


def phi(plan, tp=1, model=L7, **kw):
    return dict(zip(FEATURES, StepFeatures(model, H100, tp, **kw)(plan)))


def test_cuda_graph_padding():
    assert [padded_batch(n) for n in (1, 3, 5, 9, 130, 257, 600)] == [1, 4, 8, 16, 136, 272, 600]


def test_decode_batch1_features_by_hand():
    f = phi(StepPlan(decode_ctx=(300,)))
    # every GEMM is memory-bound at batch 1: weights of the 32 layers + LM head, / 3.35 TB/s
    weights = 32 * (4 * 4096**2 + 3 * 4096 * 11008) * 2 + 32000 * 4096 * 2
    assert f["gemm_memory_s"] == pytest.approx(weights / 3.35e12)
    assert f["gemm_compute_s"] == 0.0
    assert f["attention_decode_s"] == pytest.approx(524288 * 301 / 3.35e12)  # KV of 300 tokens + the new one
    assert (f["step"], f["layers"], f["requests"], f["prefill_step"], f["allreduce_ops"]) == (1.0, 32.0, 1.0, 0.0, 0.0)


def test_layers_over_tp_and_allreduce_at_tp2():
    f = phi(StepPlan(decode_ctx=(300,) * 3), tp=2, layers_over_tp=True)
    assert f["layers"] == 16.0 and f["allreduce_ops"] == 64.0
    # 2 all-reduces × 32 layers × 2(t−1)/t × 4 tokens (3 padded to 4) × 4096 × 2 B / 900 GB/s
    assert f["allreduce_bytes_s"] == pytest.approx(2 * 32 * 1.0 * 3 * 4096 * 2 / 900e9)


def test_long_prefill_is_compute_bound():
    f = phi(StepPlan(prefill_new=(2048,), prefill_ctx=(0,)))
    assert f["gemm_compute_s"] > 10 * f["gemm_memory_s"] and f["prefill_step"] == 1.0


def test_step_time_is_theta_dot_phi():
    cal = Calibration({k: 1.0 for k in FEATURES}, 0.0)
    m = cal.model(L7, H100, 1)
    plan = StepPlan((128,), (256,), (500, 600))
    assert m.step_time(plan) == pytest.approx(sum(m.features(plan)))
    assert m.explain(plan).seconds == pytest.approx(m.step_time(plan))


def test_frontend_source_delays_by_prompt_length():
    specs = [RequestSpec(0, 0.0, 1000, 5), RequestSpec(1, 0.001, 10, 5)]
    src = FrontendSource(ListSource(specs), base_s=0.002, per_input_token_s=1e-5)
    # request 0 is handed over at 0 + 2 ms + 10 ms = 12 ms; request 1 at 1 + 2 + 0.1 = 3.1 ms: it goes first
    assert src.peek_arrival_s() == pytest.approx(0.0031)
    assert src.pop().id == 1
    assert src.peek_arrival_s() == pytest.approx(0.012)
    assert src.pop().arrival_s == 0.0  # the record keeps the client's send time


def test_calibration_file_round_trip_and_errors(tmp_path):
    cal = Calibration({"step": 1e-3, "gemm_memory_s": 1.2}, 0.004, 2e-6, name="t")
    path = tmp_path / "c.json"
    save_calibration(cal, path)
    back = load_calibration(path)
    assert back.theta == cal.theta and back.frontend_per_token_s == 2e-6
    for bad, msg in (({"theta": {"warp": 1}}, "unknown feature"), ({"theta": {"step": -1}}, "must be a finite number >= 0"),
                     ({"theta": {}, "colour": 1}, "unknown field 'colour'"), ({"theta": {}, "frontend_latency_s": "x"}, "frontend_latency_s")):
        path.write_text(json.dumps(bad))
        with pytest.raises(ConfigError, match=msg):
            load_calibration(path)


def test_default_calibration_ships_and_runs():
    cal = load_calibration("default")
    assert cal.fitted_on and cal.notes.get("cv_mape") is not None
    m = cal.model(L7, H100, 1)
    assert 0.003 < m.step_time(StepPlan(decode_ctx=(300,))) < 0.02


@pytest.mark.parametrize("overlap", [True, False])
def test_step_time_fast_path_has_the_bits_of_explain(overlap):
    import random

    m = load_calibration().model(load_model("llama-2-70b-hf"), H100, 4)
    m.overlap_cpu = overlap
    rng = random.Random(7)
    for _ in range(300):
        k = rng.randint(0, 3)
        plan = StepPlan(tuple(rng.randint(1, 3000) for _ in range(k)), tuple(rng.randint(0, 9000) for _ in range(k)),
                        tuple(rng.randint(1, 9000) for _ in range(rng.randint(0 if k else 1, 300))))
        assert m.step_time(plan) == m.explain(plan).seconds
        phi = m.effective(plan)
        t = 0.0
        for a, b in zip(m.theta, phi):
            t += a * b
        assert m.step_time(plan) == t
