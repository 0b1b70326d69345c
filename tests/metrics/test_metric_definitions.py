"""Per-request metric definitions on hand-built RequestRecords."""

from __future__ import annotations

import numpy as np
import pytest

from servesim.engine.request import RequestRecord
from servesim.metrics import definitions as m
from servesim.metrics.summary import per_request


def record(**kw) -> RequestRecord:
    base = dict(id=0, arrival_s=0.0, input_tokens=100, output_tokens=4, first_scheduled_s=0.002,
                first_token_s=0.010, finish_s=0.040, token_times_s=[0.010, 0.020, 0.030, 0.040])
    base.update(kw)
    return RequestRecord(**base)


def test_the_textbook_request():
    r = record()
    assert m.ttft_s(r) == pytest.approx(0.010)
    assert m.e2e_s(r) == pytest.approx(0.040)
    assert m.tpot_s(r) == pytest.approx(0.010)  # (40 − 10) / (4 − 1) ms
    assert m.queue_s(r) == pytest.approx(0.002)
    assert m.e2e_per_token_s(r) == pytest.approx(0.010)  # 40 ms / 4 tokens: GuideLLM's "TPOT"
    gaps, counts = m.itl_gaps_s(r)
    assert np.allclose(gaps, [0.010] * 3) and counts.tolist() == [1, 1, 1]


def test_e2e_per_token_differs_from_tpot_when_ttft_is_long():
    r = record(first_token_s=0.100, finish_s=0.130, token_times_s=[0.100, 0.110, 0.120, 0.130])
    assert m.tpot_s(r) == pytest.approx(0.010)
    assert m.e2e_per_token_s(r) == pytest.approx(0.0325)  # 130 ms / 4, includes TTFT


def test_single_token_requests_have_no_tpot_and_no_gaps():
    r = record(output_tokens=1, finish_s=0.010, token_times_s=[0.010])
    assert m.tpot_s(r) is None and m.itl_gaps_s(r) is None
    assert m.ttft_s(r) == pytest.approx(0.010) and m.e2e_per_token_s(r) == pytest.approx(0.010)


def test_itl_falls_back_to_tpot_weighted_by_n_minus_one():
    r = record(output_tokens=5, first_token_s=0.020, finish_s=0.100, token_times_s=None)
    gaps, counts = m.itl_gaps_s(r)
    assert gaps.tolist() == pytest.approx([0.020]) and counts.tolist() == [4]


def test_rejected_and_unfinished_requests_have_no_latencies():
    for r in (record(rejected=True, reject_reason="too long"), record(finish_s=None)):
        assert not m.is_completed(r)
        assert all(fn(r) is None for fn in m.PER_REQUEST_METRICS.values())
        assert m.itl_gaps_s(r) is None


def test_per_request_row():
    row = per_request(record(id=7, cached_tokens=32, preemptions=1, stage=2))
    assert row == {
        "id": 7, "arrival_s": 0.0, "input_tokens": 100, "output_tokens": 4, "cached_tokens": 32,
        "ttft_ms": pytest.approx(10.0), "tpot_ms": pytest.approx(10.0), "e2e_ms": pytest.approx(40.0),
        "queue_ms": pytest.approx(2.0), "e2e_per_token_ms": pytest.approx(10.0), "preemptions": 1,
        "stage": 2, "rejected": False, "reject_reason": None,
    }
    rejected = per_request(record(rejected=True, reject_reason="max_model_len: 5000+10 > 4096"))
    assert rejected["ttft_ms"] is None and rejected["rejected"] is True
    assert rejected["reject_reason"] == "max_model_len: 5000+10 > 4096"
