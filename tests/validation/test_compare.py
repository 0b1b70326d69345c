"""APE / signed error / MAPE arithmetic and the saturation criterion."""

import pytest

from servesim.validation.compare import ape, latency_rows, make_row, mape, queue_growing, signed_error, stat


def test_ape_and_signed_error_by_hand():
    assert ape(110.0, 100.0) == pytest.approx(10.0)
    assert ape(90.0, 100.0) == pytest.approx(10.0)
    assert signed_error(90.0, 100.0) == pytest.approx(-10.0)
    assert signed_error(125.0, 100.0) == pytest.approx(25.0)


def test_stat_uses_linear_percentiles():
    vals = [1.0, 2.0, 3.0, 4.0, 5.0]
    assert stat(vals, "mean") == 3.0
    assert stat(vals, "p50") == 3.0
    assert stat(vals, "p90") == pytest.approx(4.6)  # rank 0.9·4 = 3.6 → 4 + 0.6·(5 − 4)
    assert stat([], "mean") is None


def test_mape_excludes_saturated_and_other_stages():
    rows = [
        make_row("a", "all", "ttft_mean", 110, 100, False),
        make_row("b", "all", "ttft_mean", 70, 100, False),
        make_row("c", "all", "ttft_mean", 900, 100, True),  # saturated: reported apart
        make_row("a", "stage0", "ttft_mean", 200, 100, False),  # per-stage rows are not whole-run rows
    ]
    assert mape(rows) == {"ttft_mean": pytest.approx(20.0)}
    assert mape(rows, include_saturated=True)["ttft_mean"] == pytest.approx((10 + 30 + 800) / 3)
    assert mape(rows, stage="stage0") == {"ttft_mean": pytest.approx(100.0)}


def test_latency_rows_cover_means_and_percentiles():
    pred = {"ttft": [10, 20, 30], "itl": [5, 5, 5], "e2e": [100, 200, 300]}
    act = {"ttft": [10, 20, 30], "itl": [4, 5, 6], "e2e": [100, 100, 100]}
    rows = {r.metric: r for r in latency_rows("x", "all", pred, act, False)}
    assert set(rows) == {f"{f}_{s}" for f in ("ttft", "itl", "e2e") for s in ("mean", "p50", "p90", "p99")}
    assert rows["ttft_mean"].ape == 0.0 and rows["e2e_mean"].signed_error == pytest.approx(100.0)


def test_queue_growing():
    arrivals = [i * 1.0 for i in range(40)]
    steady = [50.0 + (i % 3) for i in range(40)]
    growing = [50.0 + 200.0 * i for i in range(40)]
    assert not queue_growing(arrivals, steady)
    assert queue_growing(arrivals, growing)
    assert queue_growing(arrivals, steady, failed=10, total=50)  # 20 % timeouts
