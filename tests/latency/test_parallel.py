"""Pipeline and expert parallelism (latency/parallel.py), with hand-computed expectations."""

from __future__ import annotations

import pytest

from servesim.config.hardware import load_hardware
from servesim.config.model import load_model
from servesim.errors import ConfigError
from servesim.latency import parallel as par
from servesim.latency.factory import build_latency_model
from servesim.latency.plan import StepPlan
from servesim.latency.roofline import RooflineCorrected

H100 = load_hardware("H100")  # NVLink 900 GB/s
LLAMA = load_model("llama-3.1-8b-instruct")
MIXTRAL = load_model("mixtral-8x7b-v0.1")  # 8 experts, top-2, hidden 4096, expert ff 14336


def test_pp_layer_partition_as_get_pp_indices():
    assert par.pp_layer_partition(32, 2) == (16, 16)
    assert par.pp_layer_partition(61, 4) == (15, 15, 16, 15)  # remainder to the stages before the last
    assert par.pp_layer_partition(27, 4) == (7, 7, 7, 6)
    assert par.pp_layer_partition(5, 1) == (5,)
    with pytest.raises(ConfigError, match="pipeline-parallel-size 40"):
        par.pp_layer_partition(32, 40)


def test_stage_transfer_bytes_and_time():
    # hidden_states + residual: 2 × 64 tokens × 4096 × 2 bytes = 1,048,576 B.
    assert par.stage_transfer_bytes(64, 4096) == 1_048_576.0
    assert par.stage_transfer_s(64, 4096, H100) == pytest.approx(10e-6 + 1_048_576 / 900e9)


def test_ep_all2all_bytes_and_time():
    assert par.ep_all2all_bytes(100, 4096, 1) == 0.0  # DP = 1: no all-to-all in vLLM (TP all-reduce combines)
    # DP = 2: gather the other rank's 100 tokens and reduce-scatter them back: 2 × 1 × 100 × 4096 × 2 B.
    assert par.ep_all2all_bytes(100, 4096, 2) == 1_638_400.0
    assert par.ep_all2all_s(100, MIXTRAL, 2, H100) == pytest.approx(32 * (20e-6 + 1_638_400 / 900e9))
    assert par.ep_all2all_s(100, LLAMA, 2, H100) == 0.0  # dense model: nothing to dispatch


def test_ep_expert_gemms_per_rank():
    ep = RooflineCorrected(MIXTRAL, H100, 2, expert_parallel=2)
    tp = RooflineCorrected(MIXTRAL, H100, 2)
    up = next(g for g in MIXTRAL.mlp_gemms(True) if g.name == "expert_up")
    # 64 tokens × top-2 = 128 picks, uniform over 8 experts: the rank with 4 experts gets 64 picks of whole experts.
    _, flops, wbytes, _ = ep._gemm(up, 64)
    assert flops == 2.0 * 64 * 4096 * 14336
    touched = 4 * (1 - (7 / 8) ** 128)
    assert wbytes == pytest.approx(touched * 4096 * 14336 * 2)
    # TP-sharded experts do the same FLOPs per rank (half of each of the 128 picks).
    assert tp._gemm(up, 64)[1] == flops
    with pytest.raises(ValueError, match="expert_parallel=3"):
        RooflineCorrected(MIXTRAL, H100, 2, expert_parallel=3)


def test_no_pp_no_ep_builds_the_plain_model():
    lm, _ = build_latency_model("roofline-v2-corrected", LLAMA, H100, 1)
    assert isinstance(lm, RooflineCorrected)
    lm, _ = build_latency_model("calibrated", LLAMA, H100, 2, enable_expert_parallel=True)  # dense: EP ignored
    assert not isinstance(lm, par.ParallelModel)


def test_pp_single_request_pays_every_stage():
    lm, _ = build_latency_model("roofline-v2-corrected", LLAMA, H100, 1, overhead="none", pp=2)
    plan = StepPlan(decode_ctx=(1000,))
    inner = lm.inner.step_time(plan)
    xfer = par.stage_transfer_s(1, LLAMA.hidden_size, H100)
    assert lm.inner.model.num_layers == 16
    assert lm.step_time(plan) == pytest.approx(2 * inner + xfer)  # a round trip: both stages, one transfer


def test_pp_full_pipeline_period():
    lm, _ = build_latency_model("calibrated", LLAMA, H100, 1, pp=2)
    plan = StepPlan(decode_ctx=tuple(range(500, 564)))
    parts = par.split_plan(plan, 2)
    assert [len(p.decode_ctx) for p in parts] == [32, 32]
    assert sorted(parts[0].decode_ctx + parts[1].decode_ctx) == list(plan.decode_ctx)
    stage = [lm.inner.step_time(p) + par.stage_transfer_s(32, 4096, H100) for p in parts]
    xfer = par.stage_transfer_s(32, 4096, H100)
    expect = max(sum(stage), max(2 * (s - xfer) + xfer for s in stage))
    assert lm.step_time(plan) == pytest.approx(expect)
    st = lm.explain(plan)
    assert st.seconds == lm.step_time(plan)
    assert sum(c.time_s for c in st.components) == pytest.approx(st.seconds)
    names = [c.name for c in st.components]
    assert "pp_stage_transfer" in names and "pp_pipeline" in names
    # With a batch per stage in flight the period is below two serial passes of the whole batch on one stage's
    # layers each (the PP=1 step), and above one.
    one, _ = build_latency_model("calibrated", LLAMA, H100, 1)
    assert lm.step_time(plan) < 2 * one.step_time(plan)


def test_ep_breakdown_shows_all2all():
    lm, _ = build_latency_model("roofline-v2-corrected", MIXTRAL, H100, 2, enable_expert_parallel=True)
    st = lm.explain(StepPlan(decode_ctx=(1000,) * 16))
    a2a = next(c for c in st.components if c.name == "ep_all2all")
    assert a2a.time_s == 0.0 and "DP=1" in st.notes["ep_all2all"]
    lm2, _ = build_latency_model("roofline-v2-corrected", MIXTRAL, H100, 2, enable_expert_parallel=True, dp=2)
    st2 = lm2.explain(StepPlan(decode_ctx=(1000,) * 16))
    a2a2 = next(c for c in st2.components if c.name == "ep_all2all")
    assert a2a2.bytes == par.ep_all2all_bytes(16, 4096, 2) * 32
    assert a2a2.time_s == pytest.approx(par.ep_all2all_s(16, MIXTRAL, 2, H100))


@pytest.mark.parametrize("name,tp,kw", [("llama-3.1-8b-instruct", 1, dict(pp=2)), ("llama-3.1-8b-instruct", 1, dict(pp=3)),
                                        ("mixtral-8x7b-v0.1", 2, dict(enable_expert_parallel=True)),
                                        ("deepseek-v2-lite", 1, {}), ("mistral-7b-v0.1", 1, {}),
                                        ("deepseek-v2-lite", 2, dict(enable_expert_parallel=True, pp=3))])
@pytest.mark.parametrize("lm_name", ["calibrated", "roofline-v2-corrected"])
def test_step_time_non_decreasing_with_variants_and_parallelism(name, tp, kw, lm_name):
    lm, _ = build_latency_model(lm_name, load_model(name), H100, tp, **kw)
    for series in ([StepPlan(decode_ctx=(1000,) * b) for b in range(1, 130, 3)],
                   [StepPlan(decode_ctx=(c,) * 16) for c in range(0, 12000, 397)],
                   [StepPlan(prefill_new=(n,), prefill_ctx=(0,)) for n in range(1, 8192, 251)]):
        times = [lm.step_time(p) for p in series]
        assert all(b >= a for a, b in zip(times, times[1:]))
