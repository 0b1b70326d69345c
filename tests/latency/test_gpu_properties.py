"""Physical properties of the step time on every GPU preset, for all three latency models (issue 13).

* non-decreasing in batch (1–256 decodes at context 700) and in context;
* a GPU with at least the peaks and bandwidth of another is never slower: H200 ≤ H100, B200 ≤ H200;
* GPU time on a target over GPU time on the H100 lies between the bandwidth ratio and the FLOPs ratio
  (each kernel's transferred time is the H100's at the same intensity relative to the ridge, × the
  bandwidth ratio: latency/transfer.py), with the fixed CPU / per-layer terms and the TP all-reduce
  (which scales with the interconnect, not HBM) left out of the ratio.
Models: llama-3.1-8b-instruct TP1 and llama-2-70b-hf TP4. Hypothesis is derandomised (no database).
"""

from __future__ import annotations

from functools import lru_cache

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from servesim.config import load_hardware, load_model
from servesim.config.hardware import preset_names
from servesim.latency import StepPlan, make_latency_model
from servesim.latency.calibrated import FEATURES
from servesim.latency.factory import build_latency_model
from servesim.latency.kernels import load_kernel_tables

PRESETS = preset_names()
SETUPS = [("llama-3.1-8b-instruct", 1), ("llama-2-70b-hf", 4)]
LATENCY_MODELS = ["calibrated", "roofline-v2", "roofline-v2-corrected"]
BATCHES = range(1, 257)
CONTEXTS = (1, 16, 256, 700, 2048, 4096, 8192, 32768)
HBM_TERMS = 5  # calibrated features 0–4 (GEMMs, attention, activations) scale with the GPU; 5–7 do not
REL = 1e-9
# roofline-v2 is the seed's formula (bit for bit on the H100) and is not monotone there: its decode-attention
# efficiency μ(D, c) rises with the batch D (docs/LATENCY.md, correction 6), so one more request can lower a
# step (−0.27 %, 70B TP4, 8 → 9 decodes), and the rounded 3-digit decode mfu makes a batch-1 step 5.3 % shorter
# at KV 8192 than at 4096 (70B TP4). Both are pinned below on the H100; elsewhere v2 is checked to these slacks.
V2_BATCH_SLACK, V2_CONTEXT_SLACK = 0.005, 0.06


def _v2_mfu_slack() -> float:
    """How much the latency implied by the GEMM csv's rounded mfu column (what v2 reads) falls as M grows, at
    most, over the table: v2's GPU-time ratios can leave the band by this much (the corrected model reads
    the isotonic latencies and has no slack)."""
    worst = 0.0
    for (k, n), c in load_kernel_tables("h100").gemm.curves.items():
        lat = [2.0 * m * k * n / mfu for m, mfu in zip(c.xs, c.mfu)]
        worst = max([worst] + [(a - b) / a for a, b in zip(lat, lat[1:])])
    return worst


V2_BAND_SLACK = _v2_mfu_slack()


def decode(n: int, ctx: int = 700) -> StepPlan:
    return StepPlan((), (), (ctx,) * n)


@lru_cache(maxsize=None)
def lm(name: str, model: str, tp: int, gpu: str, overhead: str = "auto"):  # type: ignore[no-untyped-def]
    """A step-time model (default overheads: per-layer for the rooflines, the fitted CPU terms for calibrated)."""
    return build_latency_model(name, load_model(model), load_hardware(gpu), tp, overhead)[0]


@lru_cache(maxsize=None)
def bare(name: str, model: str, tp: int, gpu: str):  # type: ignore[no-untyped-def]
    """A roofline model with no overhead: GPU time only."""
    return make_latency_model(name, load_model(model), load_hardware(gpu), tp, "none")


def hbm_seconds(name: str, model: str, tp: int, gpu: str, plan: StepPlan) -> float:
    """The part of a step's time that runs on the GPU's tensor cores and HBM (s): for the roofline models the
    step without overhead, less the TP all-reduce; for the calibrated model θ·φ over the GEMM, attention and
    activation features (its per-layer, all-reduce and CPU terms do not depend on the GPU's peaks)."""
    if name == "calibrated":
        m = lm(name, model, tp, gpu)
        phi = m.features(plan)
        return sum(m.theta[i] * phi[i] for i in range(HBM_TERMS))
    st_ = bare(name, model, tp, gpu).explain(plan)
    return st_.seconds - sum(c.time_s for c in st_.components if c.name == "tp_allreduce")


def ratios(gpu: str) -> tuple[float, float]:
    """(H100 bandwidth / target's, H100 BF16 peak / target's): the band of target / H100 GPU time."""
    h, t = load_hardware("H100"), load_hardware(gpu)
    return h.hbm_bytes_per_s / t.hbm_bytes_per_s, h.bf16_flops / t.bf16_flops


@pytest.mark.parametrize("gpu", PRESETS)
@pytest.mark.parametrize("name", LATENCY_MODELS)
@pytest.mark.parametrize("model, tp", SETUPS)
def test_step_time_non_decreasing_in_batch_and_context(model, tp, name, gpu):
    m = lm(name, model, tp, gpu)
    v2 = name == "roofline-v2"
    keep_b, keep_c = (1.0 - V2_BATCH_SLACK, 1.0 - V2_CONTEXT_SLACK) if v2 else (1.0, 1.0)
    times = [m.step_time(decode(n)) for n in BATCHES]
    assert all(b >= a * keep_b for a, b in zip(times, times[1:])), [(n + 1, a, b) for n, (a, b) in enumerate(zip(times, times[1:])) if b < a][:3]
    for n in (1, 8, 64, 256):
        by_ctx = [m.step_time(decode(n, c)) for c in CONTEXTS]
        assert all(b >= a * keep_c for a, b in zip(by_ctx, by_ctx[1:])), (n, by_ctx)


def test_roofline_v2_keeps_the_anchor_defects_on_h100():
    """The slacks above are the seed's own: v2 on the H100 gets faster from 8 to 9 decodes and from KV 4096 to
    8192, and its rounded GEMM mfu implies latencies that fall with M by a few per cent."""
    m = lm("roofline-v2", "llama-2-70b-hf", 4, "H100")
    assert m.step_time(decode(8)) * (1 - V2_BATCH_SLACK) < m.step_time(decode(9)) < m.step_time(decode(8))
    assert m.step_time(decode(1, 4096)) * (1 - V2_CONTEXT_SLACK) < m.step_time(decode(1, 8192)) < m.step_time(decode(1, 4096))
    assert 0.03 < V2_BAND_SLACK < 0.05  # 4.3 % at most (e.g. 15.65 → 15.07 µs from M = 16 to 32 at (4096, 6144))


@pytest.mark.parametrize("name", LATENCY_MODELS)
@pytest.mark.parametrize("model, tp", SETUPS)
@pytest.mark.parametrize("fast, slow", [("H200", "H100"), ("B200", "H200"), ("B200", "H100")])
def test_faster_gpu_is_never_slower(model, tp, name, fast, slow):
    for n in BATCHES:
        plan = decode(n)
        assert lm(name, model, tp, fast).step_time(plan) <= lm(name, model, tp, slow).step_time(plan), n
    for plan in (StepPlan((2048,), (0,), ()), StepPlan((512,), (1024,), (700,) * 32), StepPlan((8192,), (0,), ())):
        assert lm(name, model, tp, fast).step_time(plan) <= lm(name, model, tp, slow).step_time(plan), plan


def _in_band(name: str, model: str, tp: int, gpu: str, plan: StepPlan) -> None:
    bw, fl = ratios(gpu)
    lo, hi = min(bw, fl), max(bw, fl)
    h, t = hbm_seconds(name, model, tp, "H100", plan), hbm_seconds(name, model, tp, gpu, plan)
    v2 = name == "roofline-v2"
    tol = 1e-6 if v2 else 0.0  # roofline-v2 rounds its step to whole µs (anchor §2.6)
    slack = V2_BAND_SLACK if v2 else REL
    assert lo * h * (1 - slack) - tol <= t <= hi * h * (1 + slack) + tol, (gpu, plan.num_requests, t / h, lo, hi)


@pytest.mark.parametrize("gpu", PRESETS)
@pytest.mark.parametrize("name", LATENCY_MODELS)
@pytest.mark.parametrize("model, tp", SETUPS)
def test_gpu_time_ratio_between_bandwidth_and_flops_ratios(model, tp, name, gpu):
    for n in BATCHES:
        _in_band(name, model, tp, gpu, decode(n))


@pytest.mark.parametrize("gpu", PRESETS)
@pytest.mark.parametrize("name", LATENCY_MODELS)
def test_memory_bound_decode_scales_with_bandwidth(name, gpu):
    """A batch-1 decode streams the weights: its GPU time scales exactly with the HBM bandwidth (roofline models)
    or, for the calibrated model, within the band; end to end the fixed CPU terms pull the ratio towards 1."""
    bw, fl = ratios(gpu)
    model = "llama-3.1-8b-instruct"
    h, t = hbm_seconds(name, model, 1, "H100", decode(1)), hbm_seconds(name, model, 1, gpu, decode(1))
    if name != "calibrated":
        assert t / h == pytest.approx(bw, abs=1e-3 if name == "roofline-v2" else 1e-9)
    full_h, full_t = lm(name, model, 1, "H100").step_time(decode(1)), lm(name, model, 1, gpu).step_time(decode(1))
    assert min(1.0, bw, fl) * (1 - REL) <= full_t / full_h <= max(1.0, bw, fl) * (1 + REL)


plans = st.builds(
    lambda pre, dec: StepPlan(tuple(n for n, _ in pre), tuple(p for _, p in pre), tuple(dec)),
    st.lists(st.tuples(st.integers(1, 4096), st.integers(0, 8192)), max_size=3),
    st.lists(st.integers(1, 16384), max_size=96),
).filter(lambda p: p.num_requests > 0)


@settings(max_examples=40, deadline=None, database=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(plan=plans, model=st.sampled_from(SETUPS), name=st.sampled_from(LATENCY_MODELS))
def test_mixed_steps_order_and_band_on_every_gpu(plan, model, name):
    """Random prefill/decode mixes: H200 ≤ H100, B200 ≤ H200, and every preset's GPU time in the band."""
    mdl, tp = model
    t = {g: lm(name, mdl, tp, g).step_time(plan) for g in ("H100", "H200", "B200")}
    assert t["H200"] <= t["H100"] and t["B200"] <= t["H200"], t
    for gpu in PRESETS:
        _in_band(name, mdl, tp, gpu, plan)
        if name != "calibrated":  # the fast path and the breakdown agree bit for bit off the H100 too
            assert bare(name, mdl, tp, gpu).step_time(plan) == bare(name, mdl, tp, gpu).explain(plan).seconds


def test_hbm_terms_are_the_gemm_attention_and_activation_features():
    assert FEATURES[:HBM_TERMS] == ("gemm_memory_s", "gemm_compute_s", "attention_prefill_s", "attention_decode_s", "activations_s")
