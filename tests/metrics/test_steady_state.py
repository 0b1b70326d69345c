"""run --steady-state: MSER-5 warm-up and cool-down cuts on hand-built request records."""

from __future__ import annotations

import json

import numpy as np

from servesim.cli import main
from servesim.engine.request import RequestRecord
from servesim.metrics.steady import mser_cut, steady_state_summary


def _records(ttfts: list[float], e2e: float = 1.0, gap: float = 0.125) -> list[RequestRecord]:
    """One request every `gap` s, 11 output tokens, the given TTFTs (s) and a fixed E2E (binary fractions: exact sums)."""
    return [RequestRecord(id=i, arrival_s=i * gap, input_tokens=10, output_tokens=11, first_scheduled_s=i * gap,
                          first_token_s=i * gap + t, finish_s=i * gap + max(e2e, t + 0.01)) for i, t in enumerate(ttfts)]


def test_mser_keeps_everything_when_the_series_is_flat_and_cuts_a_transient():
    assert mser_cut(np.full(100, 3.0)) == 0
    # 20 high values then noise-free steady values: the cut removes exactly the 4 transient batches of 5.
    series = np.r_[np.full(20, 10.0), np.full(80, 1.0)]
    assert mser_cut(series) == 20
    # A cut never exceeds half the batches, whatever the series.
    assert mser_cut(np.linspace(10, 0, 100)) <= 50


def test_steady_state_drops_warmup_and_cooldown_and_summarises_the_rest():
    ttfts = [0.5] * 30 + [0.0625] * 170  # a 30-request transient
    recs = _records(ttfts, e2e=1.0)
    st = steady_state_summary(recs)
    assert st["dropped_warmup"] == 30  # the whole transient, batches of 5
    # Cool-down: arrivals after last arrival (199 × 0.125 = 24.875 s) − p99 E2E (1.0 s) = 23.875 s → the 8
    # requests arriving at 24.0 … 24.875 s.
    assert st["dropped_cooldown"] == 8
    assert st["kept"] == 162 and st["completed"] == 162
    assert st["ttft_ms"]["mean"] == 62.5 and st["ttft_ms"]["p99"] == 62.5
    assert st["window_s"] == [30 * 0.125, 23.875]


def test_steady_state_refuses_to_summarise_too_few_requests():
    st = steady_state_summary(_records([0.05] * 10))
    assert st["kept"] == 0 and "fewer than" in st["note"] and "ttft_ms" not in st


def test_run_steady_state_flag_adds_the_summary(capsys):
    main(["run", "--rate", "8", "--num-requests", "300", "--prompt-tokens", "256", "--output-tokens", "32",
          "--steady-state", "--json"])
    summary = json.loads(capsys.readouterr().out)
    st = summary["steady_state"]
    assert st["requests"] == 300
    assert st["kept"] + st["dropped_warmup"] + st["dropped_cooldown"] == 300
    assert st["completed"] == st["kept"] > 0
    assert 0 < st["itl_ms"]["mean"] and st["ttft_ms"]["mean"] > 0
