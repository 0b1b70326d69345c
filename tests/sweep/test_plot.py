"""Sweep plots: log y where a series spans a decade, a distinct line style and marker per series, a title naming
model, GPU and TP (checked on the matplotlib figure objects)."""

from __future__ import annotations

import pytest

pytest.importorskip("matplotlib")

from servesim.sweep.grid import parse_sweep  # noqa: E402
from servesim.sweep.plot import plot_figure, plot_title, series_style, use_log_y  # noqa: E402
from servesim.sweep.runner import run_sweep  # noqa: E402


def row(tp: int, rate: float, ttft: float, itl: float, model: str = "llama-2-7b-hf") -> dict:
    return {"name": "rates", "params": {"tp": tp, "rate": rate},
            "config": {"model": model, "hardware": "H100-SXM", "tensor_parallel_size": tp},
            "summary": {"ttft_ms": {"p99": ttft}, "itl_ms": {"mean": itl}}}


def test_log_axis_only_where_a_series_spans_a_decade():
    import matplotlib.pyplot as plt

    # TTFT p99 climbs 20 → 900 ms (45×) near saturation; ITL stays within 6–9 ms.
    rows = [row(1, r, t, i) for r, t, i in ((2, 20.0, 6.0), (8, 60.0, 7.0), (16, 900.0, 9.0))]
    rows += [row(2, r, t, i) for r, t, i in ((2, 15.0, 5.0), (8, 18.0, 5.5), (16, 40.0, 6.5))]
    fig = plot_figure(rows, metrics=("ttft_ms.p99", "itl_ms.mean"))
    try:
        ttft, itl = fig.axes
        assert ttft.get_yscale() == "log" and itl.get_yscale() == "linear"
        assert [ln.get_ydata().tolist() for ln in ttft.get_lines()] == [[20.0, 60.0, 900.0], [15.0, 18.0, 40.0]]
    finally:
        plt.close(fig)
    assert use_log_y([[1.0, 10.0]]) and not use_log_y([[1.0, 9.99]])
    assert not use_log_y([[0.0, 50.0]])  # a zero cannot go on a log axis
    assert not use_log_y([[2.0, 3.0], [5.0, 6.0]])  # 3× overall, no series spans a decade


def test_each_series_has_its_own_line_style_and_marker():
    import matplotlib.pyplot as plt

    rows = [row(tp, r, 10.0 * tp + r, 5.0) for tp in (1, 2, 4, 8, 16) for r in (2, 8)]
    fig = plot_figure(rows, metrics=("ttft_ms.p99",))
    try:
        lines = fig.axes[0].get_lines()
        assert len(lines) == 5
        # the dash pattern matplotlib draws with (get_linestyle() names every custom pattern '--')
        dashes = {str(ln._unscaled_dash_pattern) for ln in lines}
        assert len(dashes) == 5 == len({ln.get_marker() for ln in lines})
        assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == [f"tp={tp}" for tp in (1, 2, 4, 8, 16)]
    finally:
        plt.close(fig)
    assert len({series_style(i) for i in range(64)}) == 64


def test_title_names_model_gpu_and_tp():
    import matplotlib.pyplot as plt

    fig = plot_figure([row(2, 4, 10.0, 5.0), row(2, 8, 12.0, 5.0)], metrics=("ttft_ms.p99",))
    try:
        assert fig._suptitle.get_text() == "rates: llama-2-7b-hf on H100-SXM, TP 2"
    finally:
        plt.close(fig)
    mixed = [row(1, 4, 1.0, 1.0), row(2, 4, 1.0, 1.0, model="mixtral-8x7b-v0.1")]
    assert plot_title(mixed) == "rates: llama-2-7b-hf / mixtral-8x7b-v0.1 on H100-SXM, TP 1 / 2"


def test_title_from_a_real_sweep(tmp_path):
    import matplotlib.pyplot as plt

    base = {"model": "llama-2-7b-hf", "hardware": "H100", "latency_model": "roofline-v2",
            "workload": {"input_tokens": 64, "output_tokens": 4, "arrival": {"process": "poisson", "rate": 1}, "num_requests": 8}}
    rows = run_sweep(parse_sweep({"name": "s", "base": base, "grid": {"tp": [2], "rate": [2, 8]}}), tmp_path / "r.jsonl")
    fig = plot_figure(rows, metrics=("ttft_ms.p99",))
    try:
        assert fig._suptitle.get_text() == "s: llama-2-7b-hf on H100-SXM, TP 2"
    finally:
        plt.close(fig)
