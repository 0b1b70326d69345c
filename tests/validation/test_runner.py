"""Replaying measured runs: the load pattern is kept, the comparison is on the same requests, h2b arms."""

import pytest

from servesim.validation import load_experiment, load_suite
from servesim.validation.h2b import ARMS, BLIS_ENGINE, overall, run_h2b
from servesim.validation.runner import ModelChoice, compare, predicted_means, replay, validate


def test_guidellm_sweep_replays_every_benchmark_with_its_load():
    (exp,) = load_suite("guidellm-h100")
    report = validate([exp])
    names = [c.run for c in report.runs]
    assert len(names) == 5 and names[0] == "0-synchronous"
    sync = report.runs[0]
    res = replay(exp, exp.runs[0])
    recs = sorted(res.records, key=lambda r: r.arrival_s)
    assert all(b.arrival_s >= a.finish_s for a, b in zip(recs, recs[1:]))  # closed loop, one in flight
    assert {r.metric for r in sync.rows} >= {"ttft_mean", "itl_p90", "e2e_p99"}
    assert set(report.mape()) >= {"ttft_mean", "itl_mean", "e2e_mean", "ttft_p90"}


def test_open_loop_replay_keeps_measured_arrivals(tmp_path):
    (exp,) = load_suite("guidellm-h100")
    run = exp.runs[2]  # constant-rate benchmark: open loop at measured send times
    res = replay(exp, run)
    sent = {r.id: r.arrival_s for r in run.requests}
    assert all(rec.arrival_s == pytest.approx(sent[rec.id]) for rec in res.records)
    comp = compare(exp, run, res)
    tp = next(r for r in comp.rows if r.metric == "throughput_rps" and r.stage == "all")
    assert tp.actual > 0 and tp.predicted > 0


def test_scaled_overhead_adds_exactly_layers_over_tp_to_sync_itl():
    exps = [e for e in load_suite("seed13") if e.name == "jan30-llama2-7b-tp1-chatsweep"]
    base = predicted_means(replay(exps[0], exps[0].runs[0], ModelChoice("roofline-v2", "none"), engine_overrides=BLIS_ENGINE))
    sc = predicted_means(replay(exps[0], exps[0].runs[0], ModelChoice("roofline-v2", "per-layer"), engine_overrides=BLIS_ENGINE))
    # synchronous: every decode step is a batch-1 decode step, so ITL grows by 100 µs × 32 / 1 = 3.2 ms
    assert sc["itl_mean"] - base["itl_mean"] == pytest.approx(3.2, abs=1e-6)


def test_h2b_arms_on_two_experiments():
    exps = [e for e in load_suite("seed13") if e.name in ("jan30-llama2-7b-tp2-chatsweep", "20260210-llama2-70b-tp4-chatsweep")]
    res = run_h2b(exps, load="closed-loop")
    assert set(res) == set(ARMS) and all(len(v) == 2 for v in res.values())
    ov = {arm: overall(rows) for arm, rows in res.items()}
    # On these two chat runs the scaled overhead is the closest arm, as in the seed (7.3 % / 7.6 % there)
    assert ov["scaled"]["tpot_mape"] < ov["baseline"]["tpot_mape"]
    assert ov["scaled"]["tpot_mape"] < ov["fixed"]["tpot_mape"]
