"""vLLM V1 schedule() semantics, hand-traced with a constant 10 ms step (check_invariants on everywhere)."""

from __future__ import annotations

import pytest

from servesim.engine import Simulator
from servesim.latency.plan import StepPlan

from ._helpers import ConstLatency, LinearLatency, ListSource, engine, spec


def run(specs, blocks=10_000, lat=None, **kw):
    lat = lat or ConstLatency(0.010)
    sim = Simulator(engine(**kw), lat, blocks, check_invariants=True)
    stats = sim.run(ListSource(specs))
    return stats, lat.plans, {r.id: r for r in stats.records}


def test_long_prompt_is_chunked_by_the_token_budget():
    # 5000 = 2048 + 2048 + 904; the first token comes at the end of the third step.
    stats, plans, recs = run([spec(0, 0.0, 5000, 1)], max_num_batched_tokens=2048)
    assert plans == [
        StepPlan((2048,), (0,), ()),
        StepPlan((2048,), (2048,), ()),
        StepPlan((904,), (4096,), ()),
    ]
    assert recs[0].first_token_s == pytest.approx(0.030)  # TTFT = 3 steps
    assert recs[0].finish_s == pytest.approx(0.030)
    assert stats.steps == 3 and stats.prefill_tokens == 5000 and stats.decode_tokens == 0


def test_decodes_take_budget_before_new_prefills():
    # Step 1 (t=0): three 10-token prompts. The 2048-token prompt arrives at 5 ms and is seen at step 2,
    # where the three decodes take 3 tokens of the 2048 budget, leaving it 2045; the last 3 come in step 3.
    specs = [spec(i, 0.0, 10, 10) for i in range(3)] + [spec(3, 0.005, 2048, 2)]
    stats, plans, recs = run(specs, max_num_batched_tokens=2048)
    assert plans[0] == StepPlan((10, 10, 10), (0, 0, 0), ())
    assert plans[1] == StepPlan((2045,), (0,), (10, 10, 10))
    assert plans[2] == StepPlan((3,), (2045,), (11, 11, 11))
    assert plans[3] == StepPlan((), (), (12, 12, 12, 2048))
    assert recs[3].first_token_s == pytest.approx(0.030)
    assert recs[3].first_token_s - recs[3].arrival_s == pytest.approx(0.025)


def test_step_time_comes_from_the_plan():
    # base 5 ms + 10 us/token: step 1 = 3 x 10 tokens -> 5.3 ms; step 2 = 3 decodes -> 5.03 ms.
    stats, plans, recs = run([spec(i, 0.0, 10, 2) for i in range(3)], lat=LinearLatency(0.005, 1e-5))
    assert recs[0].first_token_s == pytest.approx(0.0053)
    assert recs[0].finish_s == pytest.approx(0.0053 + 0.00503)
    assert stats.busy_s == pytest.approx(stats.duration_s)


def test_long_prefill_token_threshold_caps_each_chunk():
    # threshold 512: 1000 -> 512 + 488 although the budget is 2048; the second prompt uses the rest.
    stats, plans, recs = run([spec(0, 0.0, 1000, 1), spec(1, 0.0, 300, 1)], long_prefill_token_threshold=512)
    assert plans[0] == StepPlan((512, 300), (0, 0), ())
    assert plans[1] == StepPlan((488,), (512,), ())


def test_chunked_prefill_off_stops_at_the_first_prompt_that_does_not_fit():
    # Budget 256: A (200) is admitted; B (100) does not fit the 56 left, so admission stops and C (10),
    # queued behind B, waits too (vLLM since PR #28911 breaks; 0.11.0 skipped).
    specs = [spec(0, 0.0, 200, 3), spec(1, 0.0, 100, 1), spec(2, 0.0, 10, 1)]
    stats, plans, recs = run(specs, enable_chunked_prefill=False, max_num_batched_tokens=256, max_model_len=256)
    assert plans[0] == StepPlan((200,), (0,), ())
    assert plans[1] == StepPlan((100, 10), (0, 0), (200,))


def test_max_num_seqs_is_respected():
    stats, plans, recs = run([spec(i, 0.0, 20, 3) for i in range(5)], max_num_seqs=2)
    assert all(p.num_requests <= 2 for p in plans)
    assert plans[0] == StepPlan((20, 20), (0, 0), ())
    # Requests 0 and 1 finish at the end of step 3; 2 and 3 are admitted in step 4, 4 in step 7.
    assert [recs[i].first_scheduled_s for i in range(5)] == pytest.approx([0.0, 0.0, 0.03, 0.03, 0.06])
    assert stats.completed == 5


def test_tail_request_is_preempted_and_recomputed():
    # 8 usable blocks of 16 (9 with vLLM's null block). A and B (64-token prompts) take 4 blocks each.
    # Step 2: A's decode needs a 5th block -> B (tail) is preempted; B's freed blocks go to the free queue
    # tail in reverse (8, 7, 6, 5) and A's new block pops 8, evicting B's block 3. A later pops 7 and 6.
    # When A finishes (step 40), B (65 tokens: prompt + its first output) hits only its block 0 (16 tokens)
    # and recomputes 49 tokens; it then produces its remaining 39 tokens in steps 41-79.
    stats, plans, recs = run([spec(0, 0.0, 64, 40), spec(1, 0.0, 64, 40)], blocks=9)
    assert plans[0] == StepPlan((64, 64), (0, 0), ())
    assert plans[1] == StepPlan((), (), (64,))
    assert plans[40] == StepPlan((49,), (16,), ())
    assert stats.preemptions == 1 and recs[1].preemptions == 1 and recs[0].preemptions == 0
    assert recs[0].finish_s == pytest.approx(0.40)
    assert recs[1].first_token_s == pytest.approx(0.01)  # TTFT is not reset by preemption
    assert recs[1].finish_s == pytest.approx(0.79)
    assert [len(r.token_times_s) for r in stats.records] == [40, 40]
    assert stats.steps == 79
    # Each step B waited, it looked the cache up again (vLLM 0.11-0.15 count every lookup): steps 3-41.
    assert stats.prefix_cache_preempted_queried_tokens == 39 * 65
    assert stats.prefix_cache_queried_tokens == 128


def test_no_admission_in_a_step_that_preempted():
    # Prefix caching off, threshold 32, 6 usable blocks. Steps 1-2 prefill A and B (48 tokens, 3 blocks each).
    # Step 3: A needs a 4th block -> B preempted (3 blocks freed, A takes 1, 2 left). B's next chunk (32
    # tokens, 2 blocks) would fit, but vLLM admits nothing in a step that preempted; B returns in step 4.
    specs = [spec(0, 0.0, 48, 10), spec(1, 0.0, 48, 10)]
    stats, plans, recs = run(specs, blocks=7, enable_prefix_caching=False, long_prefill_token_threshold=32)
    assert plans[0] == StepPlan((32, 32), (0, 0), ())
    assert plans[1] == StepPlan((16, 16), (32, 32), ())
    assert plans[2] == StepPlan((), (), (48,))
    assert plans[3] == StepPlan((32,), (0,), (49,))
    # Step 5: B's second chunk needs 2 more blocks, none are free, and B is the tail: it preempts itself.
    assert plans[4] == StepPlan((), (), (50,))
    assert recs[0].finish_s == pytest.approx(0.11)
    assert recs[1].preemptions >= 2 and stats.preemptions == recs[1].preemptions
    assert [len(r.token_times_s) for r in stats.records] == [10, 10]


def test_many_requests_under_pressure_all_finish_with_their_token_counts():
    specs = [spec(i, 0.001 * i, 30 + 17 * i, 5 + (i * 7) % 23) for i in range(30)]
    stats, plans, recs = run(specs, blocks=45, max_num_batched_tokens=128)
    assert stats.completed == 30 and stats.rejected == 0
    assert stats.preemptions > 0
    for s in specs:
        r = recs[s.id]
        assert len(r.token_times_s) == s.output_tokens
        assert r.token_times_s == sorted(r.token_times_s)
        assert r.first_token_s == r.token_times_s[0] and r.finish_s == r.token_times_s[-1]
