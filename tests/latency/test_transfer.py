"""Kernel efficiency transferred from the H100 tables to other GPUs (latency/transfer.py), by hand."""

import dataclasses

import pytest

from servesim.config import load_hardware
from servesim.config.hardware import preset_names
from servesim.errors import ConfigError
from servesim.latency.kernels import GEMM_TABLE_PEAK_FLOPS, load_kernel_tables
from servesim.latency.transfer import provenance, ridge_scale, tables_for, transfer_for

T = load_kernel_tables("h100")
H100 = load_hardware("H100")
A100 = load_hardware("A100-80GB")
PRESETS = [load_hardware(n) for n in preset_names()]
SHAPES = [(4096, 6144), (4096, 28672), (14336, 4096), (8192, 10240)]  # llama-3.1-8b / 70b layer GEMMs (K, N)


def test_h100_reads_the_measured_tables_themselves():
    tables, t = tables_for(H100, 2.0)
    assert tables is T and t.identity and t.gemm_r == 1.0 and t.attn_r == 1.0
    assert tables_for(H100, 1.0)[1].identity  # FP8 weights: the ridge at the FP8 peaks, also 1 exactly
    assert provenance(H100) == "measured H100 tables"
    for hw in PRESETS:
        if hw.name != "H100-SXM":
            assert provenance(hw) == "kernel efficiency transferred from H100 tables", hw.name


def test_ridge_scale_by_hand():
    # A100: ridge 312e12 / 2.039e12 = 153.0 FLOP/B; H100 BF16: 989.5 / 3.35 = 295.4 FLOP/B.
    assert transfer_for(A100, 2.0).gemm_r == pytest.approx((989.5 / 3.35) / (312 / 2.039), rel=1e-12)
    assert transfer_for(A100, 2.0).gemm_r == pytest.approx(1.93034, rel=1e-5)
    # FP8 weights on an A100 run at the BF16 rate (no FP8 tensor cores): ridge 153 against H100's FP8 590.7.
    assert transfer_for(A100, 1.0).gemm_r == pytest.approx((1979 / 3.35) / (312 / 2.039), rel=1e-12)
    # H200: same peaks, 4.8 TB/s → r = 4.8 / 3.35.
    assert transfer_for(load_hardware("H200"), 2.0).attn_r == pytest.approx(4.8 / 3.35, rel=1e-12)
    assert ridge_scale(1.0, 2.0, 1.0, 2.0) == 1.0


def test_a100_gemm_reads_h100_at_the_same_intensity_relative_to_the_ridge():
    tables, t = tables_for(A100, 2.0)
    for k, n in SHAPES:
        for m in (1, 4, 8, 64, 300, 4096):
            same_x, same_shape = T.gemm.efficiency(m * t.gemm_r, k, n, exact=True), T.gemm.efficiency(m, k, n, exact=True)
            assert tables.gemm.efficiency(m, k, n, exact=True) == max(same_x, same_shape)  # r > 1: the larger
    # Hand value: M = 64 on the A100 reads M' = 64 × 1.93034 = 123.54, between the table's 64 and 128 rows.
    e64, e128 = T.gemm.efficiency(64, 4096, 6144, exact=True), T.gemm.efficiency(128, 4096, 6144, exact=True)
    w = (64 * 1.930339 - 64) / 64
    assert tables.gemm.efficiency(64, 4096, 6144, exact=True) == pytest.approx(e64 + w * (e128 - e64), rel=1e-5)


def _h100_time(m: float, k: int, n: int) -> float:
    """Measured-table time (s) of a BF16 GEMM on the H100, as the corrected model costs it."""
    return 2.0 * m * k * n / (H100.bf16_flops * T.gemm.efficiency(m, k, n, exact=True))


@pytest.mark.parametrize("hw", PRESETS, ids=lambda h: h.name)
def test_transferred_gemm_is_its_own_roofline_over_the_h100_fraction_at_the_same_x(hw):
    """From first principles: e(x) = R_H100 / t_H100 at the H100 shape with the same x = intensity / ridge;
    the target then takes R_target / e(x). Memory-bound shapes (x < 1) are never faster than the target's
    bandwidth allows, compute-bound ones never faster than its peak."""
    tables, _ = tables_for(hw, 2.0)
    ridge_h, ridge_t = H100.bf16_flops / H100.hbm_bytes_per_s, hw.bf16_flops / hw.hbm_bytes_per_s
    for k, n in SHAPES:
        for m in (8, 16, 40, 100, 256, 1000, 8192):
            flops, wbytes = 2.0 * m * k * n, 2.0 * k * n  # intensity (FLOP/B) = M for 2-byte weights
            m_h = m * ridge_h / ridge_t  # the H100 GEMM with the same x
            if m_h < 8:
                continue  # below the table's first row the H100 cost is itself extrapolated
            r_h = max(2.0 * m_h * k * n / H100.bf16_flops, wbytes / H100.hbm_bytes_per_s)
            frac = r_h / _h100_time(m_h, k, n)
            assert 0 < frac <= 1
            r_t = max(flops / hw.bf16_flops, wbytes / hw.hbm_bytes_per_s)
            t_target = flops / (hw.bf16_flops * tables.gemm.efficiency(m, k, n, exact=True))
            # ... bounded by the H100's efficiency at the same shape (transfer._bounded): a target with a lower
            # ridge (more bandwidth per FLOP) is no less efficient than the H100 at that shape, a higher one no more.
            same_shape = flops / (hw.bf16_flops * T.gemm.efficiency(m, k, n, exact=True))
            bounded = min(r_t / frac, same_shape) if ridge_t <= ridge_h else max(r_t / frac, same_shape)
            assert t_target == pytest.approx(bounded, rel=1e-9)
            assert t_target >= wbytes / hw.hbm_bytes_per_s and t_target >= flops / hw.bf16_flops


@pytest.mark.parametrize("hw", PRESETS, ids=lambda h: h.name)
def test_decode_attention_scales_with_bandwidth(hw):
    """Decode attention is memory-bound (H/H_kv FLOP per byte ≪ ridge): the same kernel's time on the target
    is the H100's × H100 bandwidth / the target's, and never below its compute roof."""
    tables, t = tables_for(hw, 2.0)
    args = (32, 8, 128, 1)
    for b, kv in ((1, 700), (16, 4096), (256, 700), (64, 32768)):
        flops = 4.0 * 32 * kv * 128 * b
        t_h = flops / (H100.bf16_flops * T.decode.efficiency(b, kv, *args, exact=True))
        t_t = flops / (hw.bf16_flops * tables.decode.efficiency(b, kv, *args, exact=True))
        assert t_t == pytest.approx(t_h * H100.hbm_bytes_per_s / hw.hbm_bytes_per_s, rel=1e-12)
        assert t_t >= flops / hw.bf16_flops
        kv_bytes = 2 * 8 * 128 * 2 * kv * b  # K and V of 8 KV heads, 2 bytes each
        assert t_h >= kv_bytes / H100.hbm_bytes_per_s and t_t >= kv_bytes / hw.hbm_bytes_per_s


def test_prefill_attention_reads_the_length_at_the_same_x():
    tables, t = tables_for(load_hardware("L40S"), 2.0)
    assert t.attn_r == pytest.approx((989.5 / 3.35) / (362.05 / 0.864), rel=1e-12)
    for s in (512, 2000, 9000):
        same_x, same_shape = T.prefill.efficiency(s * t.attn_r, 32, 8, 128, exact=True), T.prefill.efficiency(s, 32, 8, 128, exact=True)
        assert tables.prefill.efficiency(s, 32, 8, 128, exact=True) == min(same_x, same_shape)  # r < 1: the smaller


def test_same_ridge_as_h100_keeps_the_efficiencies():
    """A GPU with twice the H100's peaks and bandwidth has the same ridge: r = 1, same efficiencies, half the time."""
    double = dataclasses.replace(H100, name="2xH100", bf16_tflops=2 * 989.5, fp8_tflops=2 * 1979.0, hbm_tb_s=2 * 3.35)
    tables, t = tables_for(double, 2.0)
    assert t.identity and tables is T
    assert t.provenance == "kernel efficiency transferred from H100 tables"


def test_unknown_table_family_is_a_config_error():
    with pytest.raises(ConfigError, match="kernel_tables"):
        transfer_for(dataclasses.replace(H100, kernel_tables="mi300"), 2.0)


def test_gemm_table_peak_is_the_h100_fp8_peak():
    assert GEMM_TABLE_PEAK_FLOPS == H100.fp8_tflops * 1e12
