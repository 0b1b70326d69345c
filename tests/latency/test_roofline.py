"""The seed's roofline (v2) against hand-computed numbers, and what the corrected variant changes."""

import pytest

from servesim import step_time
from servesim.config import load_hardware, load_model
from servesim.latency import StepPlan, make_latency_model

H100 = load_hardware("H100")
L7 = load_model("llama-2-7b-hf")
BW = 3.35e12 * 0.82
W7 = 32 * (4 * 4096**2 + 3 * 4096 * 11008) * 2  # anchor §2.4: layer weights only, no embeddings


def comp(st, name):
    return next(c for c in st.components if c.name == name)


def test_prefill_2048_gemm_flops_by_hand():
    st = step_time("llama-2-7b-hf", latency_model="roofline-v2", prefill=[2048], overhead="none")
    per_layer = 2 * 2048 * (4 * 4096 * 4096 + 3 * 4096 * 11008)
    assert comp(st, "prefill.gemm").flops == pytest.approx(32 * per_layer)  # 26.5 TFLOP
    assert 32 * per_layer == 26_525_718_020_096


def test_decode_batch1_is_weight_bound_and_overheads():
    base = step_time("llama-2-7b-hf", latency_model="roofline-v2", decode=[300], overhead="none").seconds
    # weights / (3.35 TB/s × 0.82) = 4.715 ms; + attention over 300 tokens; total ≈ 4.79 ms
    assert W7 / BW == pytest.approx(4.715e-3, rel=1e-3)
    assert base == pytest.approx(4.788e-3, abs=2e-6)
    gemm = comp(step_time("llama-2-7b-hf", latency_model="roofline-v2", decode=[300], overhead="none"), "decode.gemm")
    assert gemm.bound == "memory" and gemm.time_s == pytest.approx(W7 / BW)
    per_layer = step_time("llama-2-7b-hf", latency_model="roofline-v2", decode=[300], overhead="per-layer").seconds
    fixed = step_time("llama-2-7b-hf", latency_model="roofline-v2", decode=[300], overhead="fixed").seconds
    assert per_layer - base == pytest.approx(3.2e-3, abs=1e-6)  # 100 µs × 32 layers / TP1
    assert fixed - base == pytest.approx(5.0e-3, abs=1e-6)


@pytest.mark.parametrize("kind, plan, expect_us", [
    ("per-layer", dict(decode=[300]), 100 * 32 / 2),
    ("per-layer", dict(prefill=[512]), 500 * 32 / 2),
    ("per-layer", dict(prefill=[512], decode=[300]), 250 * 32 / 2),
    ("fixed", dict(decode=[300]), 5000),
    ("fixed", dict(prefill=[512]), 30000),
    ("fixed", dict(prefill=[512], decode=[300]), 15000),
])
def test_overhead_variants_by_step_type(kind, plan, expect_us):
    st = step_time("llama-2-7b-hf", latency_model="roofline-v2", tp=2, overhead=kind, **plan)
    assert comp(st, "overhead").time_s == pytest.approx(expect_us * 1e-6)


def test_tp_scaling_divides_everything():
    t1 = step_time("llama-2-7b-hf", latency_model="roofline-v2", tp=1, decode=[300] * 8, overhead="none").seconds
    t2 = step_time("llama-2-7b-hf", latency_model="roofline-v2", tp=2, decode=[300] * 8, overhead="none").seconds
    t4 = step_time("llama-2-7b-hf", latency_model="roofline-v2", tp=4, decode=[300] * 8, overhead="none").seconds
    assert t2 == pytest.approx(t1 / 2, rel=0.03) and t4 == pytest.approx(t1 / 4, rel=0.05)


def test_mixed_step_is_max_of_phases():
    st = step_time("llama-2-7b-hf", latency_model="roofline-v2", prefill=[1024], decode=[500] * 4, overhead="none")
    assert st.seconds == pytest.approx(max(st.notes["prefill_phase_s"], st.notes["decode_phase_s"]), abs=1e-6)


def test_v2_gemm_is_twice_the_fp8_table_latency_for_bf16():
    """Anchor §2.7: GEMM mfu is relative to the FP8 peak, so v2 costs a BF16 GEMM at 2× the csv latency."""
    lm = make_latency_model("roofline-v2", L7, H100)
    mfu = lm.tables.gemm.efficiency(4096, 4096, 6144)
    assert 2 * 4096 * 4096 * 6144 / (989.5e12 * mfu) == pytest.approx(2 * 167.988e-6, rel=3e-3)


def test_corrected_uses_fp8_peak_for_fp8_weights():
    fp8 = load_model("llama-4-scout-17b-16e-instruct-fp8-dynamic")
    bf16 = load_model("llama-4-scout-17b-16e-instruct")
    a = make_latency_model("roofline-v2-corrected", fp8, H100, 4)
    b = make_latency_model("roofline-v2-corrected", bf16, H100, 4)
    assert a.peak == 1979e12 and b.peak == 989.5e12
    big = StepPlan(prefill_new=(8192,), prefill_ctx=(0,))
    assert a.gemms(8192)[3] == pytest.approx(b.gemms(8192)[3] / 2)  # compute-only GEMM time halves


def test_corrected_adds_lm_head_and_allreduce():
    st = step_time("llama-2-7b-hf", tp=2, decode=[300], latency_model="roofline-v2-corrected", overhead="none")
    lm = comp(st, "lm_head")
    assert lm.bytes == 4096 * 16000 * 2  # vocab sharded over TP
    ar = comp(st, "tp_allreduce")
    assert ar.time_s == pytest.approx(2 * 32 * (5e-6 + 2 * 0.5 * 4096 * 2 / 900e9))
    assert "tp_allreduce" not in [c.name for c in step_time("llama-2-7b-hf", tp=1, decode=[300], latency_model="roofline-v2-corrected", overhead="none").components]


def test_corrected_causal_prefill_flops():
    st = step_time("llama-2-7b-hf", prefill=[(512, 1024)], latency_model="roofline-v2-corrected", overhead="none")
    expect = 4 * 32 * 128 * (512 * 1024 + 512 * 513 / 2) * 32
    assert comp(st, "attention.prefill").flops == pytest.approx(expect)


def test_corrected_moe_touches_fewer_weights_at_batch1():
    mix = load_model("mixtral-8x7b-v0.1")
    lm = make_latency_model("roofline-v2-corrected", mix, H100, 2)
    w1 = lm.gemms(1)[2]
    w_all = lm.gemms(4096)[2]
    assert w1 < 0.4 * w_all  # one token reads 2 of 8 experts per layer


def test_monotone_in_tokens_and_context_without_overhead():
    for name in ("roofline-v2", "roofline-v2-corrected"):
        lm = make_latency_model(name, L7, H100)
        assert lm.step_time(StepPlan(decode_ctx=(500,) * 16)) <= lm.step_time(StepPlan(decode_ctx=(500,) * 32))
        assert lm.step_time(StepPlan(decode_ctx=(500,) * 16)) <= lm.step_time(StepPlan(decode_ctx=(2000,) * 16))
        assert lm.step_time(StepPlan((256,), (0,))) <= lm.step_time(StepPlan((2048,), (0,)))
