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


def _decode_latency_us(name):
    with (kernel_dir("h100") / "mha_decode" / name).open() as fh:
        return {(int(r["batch_size"]), int(r["kv_len"])): float(r["latency_us"]) for r in csv.DictReader(fh)}


def test_decode_marginals_read_uniform_batches_exactly():
    lat = _decode_latency_us("32-32-128-tp1.csv")
    m = T.decode.marginals(32, 32, 128, 1)
    assert m.bounds == (1, 16, 32, 64, 128, 256, 512)
    for b, c in ((16, 4096), (32, 8192), (128, 1024), (512, 4096)):
        assert m.batch_time([c] * b) == pytest.approx(lat[(b, c)] * 1e-6, rel=1e-9)
    # batch 1 at kv 256 measured 37.0 µs, above the 21.9 µs at kv 512: launch noise, lowered to 21.9 µs
    assert m.batch_time([256]) == pytest.approx(lat[(1, 512)] * 1e-6)


def test_decode_marginals_by_hand_for_a_mixed_batch():
    lat = {k: v * 1e-6 for k, v in _decode_latency_us("32-32-128-tp1.csv").items()}
    m = T.decode.marginals(32, 32, 128, 1)
    # One request at 8192 and 16 at 1024, longest first: rank 1 costs T(1, 8192); ranks 2..16 each the per-rank
    # increment from batch 1 to 16 at 1024; rank 17 the increment from 16 to 32 at 1024.
    expect = lat[(1, 8192)] + 15 * (lat[(16, 1024)] - lat[(1, 1024)]) / 15 + (lat[(32, 1024)] - lat[(16, 1024)]) / 16
    assert m.batch_time([8192] + [1024] * 16) == pytest.approx(expect, rel=1e-9)
    # Between measured lengths the latency is linear in the KV length; below the first, proportional to it.
    assert m.batch_time([6144] * 16) == pytest.approx((lat[(16, 4096)] + lat[(16, 8192)]) / 2, rel=1e-9)
    assert m.batch_time([64] * 16) == pytest.approx(lat[(16, 256)] * 64 / 256, rel=1e-9)


def test_decode_marginals_never_fall_when_a_request_is_added_or_lengthened():
    for cfg in T.decode.grids:
        m = T.decode.marginals(*cfg)
        assert (m.rows >= 0).all() and (m.rows[:, 1:] >= m.rows[:, :-1]).all(), cfg
        batch = sorted([300, 5000, 1, 70000, 1024, 1024, 99] * 40, reverse=True)
        base = m.batch_time(batch)
        assert m.batch_time(sorted(batch + [1], reverse=True)) >= base
        assert m.batch_time(sorted([batch[0] + 1] + batch[1:], reverse=True)) >= base


def test_exact_gemm_and_prefill_readings_are_isotonic():
    # 2048 x 6144 measured 8.988, 8.816, 8.907, 8.716 µs at M = 8, 16, 32, 64: the exact reading takes 8.716 µs for all
    for m in (8, 16, 32, 64):
        assert 2 * m * 2048 * 6144 / (T.gemm.efficiency(m, 2048, 6144, exact=True) * 1979e12) == pytest.approx(8.716e-6)
    for curve in T.gemm.curves.values():
        lat = [m / e for m, e in zip(curve.xs, curve.exact)]
        assert all(b >= a for a, b in zip(lat, lat[1:]))
    for curve in T.prefill.curves.values():  # latency per token = s / eff (up to a constant): non-decreasing
        per_token = [s / e for s, e in zip(curve.xs, curve.exact)]
        assert all(b >= a for a, b in zip(per_token, per_token[1:]))
