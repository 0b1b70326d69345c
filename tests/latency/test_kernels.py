"""Kernel-table lookups: on grid points, between them, clamped, nearest-shape fallbacks."""

import csv

import pytest

from servesim.config.bundled import kernel_dir
from servesim.latency.kernels import load_kernel_tables

T = load_kernel_tables("h100")


def test_gemm_on_and_between_grid_points():
    assert T.gemm.efficiency(64, 2048, 6144) == pytest.approx(0.093)
    assert T.gemm.efficiency(128, 2048, 6144) == pytest.approx(0.164)
    assert T.gemm.efficiency(96, 2048, 6144) == pytest.approx((0.093 + 0.164) / 2)
    assert T.gemm.efficiency(1, 2048, 6144) == pytest.approx(0.011)  # clamped below M=8
    assert T.gemm.efficiency(10**7, 2048, 6144) == pytest.approx(0.623)  # clamped above M=131072


def test_gemm_nearest_shape_rules():
    assert T.gemm.nearest_shape(4096, 4096) == (4096, 6144)  # Llama-2-7B Q/O
    assert T.gemm.nearest_shape(4096, 11008) == (4096, 11008)  # gate/up
    assert T.gemm.nearest_shape(11008, 4096) == (8192, 11008)  # nothing with k >= 11008: the largest
    assert T.gemm.nearest_shape(8192, 1024) == (8192, 6144)  # Llama-2-70B K/V


def test_gemm_exact_reading_is_latency():
    # exact efficiency × FP8 peak reproduces the measured latency: 2·M·K·N / (eff · 1979e12) = latency
    eff = T.gemm.efficiency(4096, 4096, 6144, exact=True)
    assert 2 * 4096 * 4096 * 6144 / (eff * 1979e12) == pytest.approx(167.988e-6)


def test_prefill_attention_interpolation_and_nearest_config():
    assert T.prefill.efficiency(4096, 32, 32, 128) == pytest.approx(0.64)
    assert T.prefill.efficiency(2560, 32, 32, 128) == pytest.approx((0.224 + 0.64) / 2)
    assert T.prefill.efficiency(100, 32, 32, 128) == pytest.approx(0.224)  # clamped
    # Qwen3-14B has no 40-8-128 table: the nearest by Euclidean distance is 32-8-128
    assert T.prefill.nearest_config(40, 8, 128) == (32, 8, 128)


def _decode_rows(name):
    with (kernel_dir("h100") / "mha_decode" / name).open() as fh:
        return {(int(r["batch_size"]), int(r["kv_len"])): float(r["mfu"]) for r in csv.DictReader(fh)}


def test_decode_attention_bilinear():
    rows = _decode_rows("32-32-128-tp1.csv")
    assert T.decode.efficiency(16, 4096, 32, 32, 128, 1) == pytest.approx(rows[(16, 4096)])
    mid = T.decode.efficiency(24, 6144, 32, 32, 128, 1)
    expect = (rows[(16, 4096)] + rows[(16, 8192)] + rows[(32, 4096)] + rows[(32, 8192)]) / 4
    assert mid == pytest.approx(expect)


def test_decode_zero_mfu_falls_back_and_missing_tp_uses_nearest():
    # bs=1, kv=256 has mfu 0.0 in the csv: BLIS takes the nearest non-zero grid point
    assert T.decode.efficiency(1, 256, 32, 32, 128, 1) > 0
    assert T.decode.nearest_config(40, 8, 128, 8) == (32, 8, 128, 4)
