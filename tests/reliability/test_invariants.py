"""Run-time invariants: the engine's own per-step checks (engine/invariants.py, `--check-invariants`) and the
outside checks of tests/reliability/_checks.py, on the engine tests' scenarios, on the CLI, and against injected
faults (so neither checker is vacuous)."""

from __future__ import annotations

import dataclasses
import json

import pytest

from servesim.cli import main
from servesim.config.engine import EngineConfig
from servesim.engine import InvariantError, RequestSpec, Simulator
from servesim.simulation import simulate

from ._checks import Violation, check_records, run_checked
from .test_properties import ClosedLoop, Const, Linear, ListSource

ENG = EngineConfig(max_num_seqs=8, max_num_batched_tokens=256, block_size=16, max_model_len=4096, async_scheduling=False)


def _specs(n: int = 30) -> list[RequestSpec]:
    groups = ["a", "b", None]
    return [RequestSpec(i, 0.004 * i, 100 + (53 * i) % 400, 5 + (7 * i) % 30, groups[i % 3], 64 if groups[i % 3] else 0) for i in range(n)]


# ------------------------------------------------------------------------------- engine scenarios, checked
def test_engine_scenarios_pass_every_invariant_check():
    """The event-skipping test scenarios (tests/engine) with check_invariants=True give the same records as the
    fast path: every scenario of the engine suite also runs with the per-step checks on."""
    from engine.test_event_skipping import CASES

    # The scenarios with small KV pools: check_step is O(KV blocks) per step, 20-40x slower on real pools.
    for name in ("preemption_tiny_kv", "preemption_prefix_tiny_kv", "no_chunked_prefill_no_caching"):
        case = CASES[name]
        kw = {"seed": 3, **case}
        args = (kw.pop("model", "llama-2-7b-hf"), kw.pop("hardware", "H100"), kw.pop("tp", 1))
        checked = simulate(*args, check_invariants=True, **kw)
        fast = simulate(*args, **kw)
        assert [dataclasses.astuple(r) for r in checked.records] == [dataclasses.astuple(r) for r in fast.records], name


@pytest.mark.parametrize("blocks", [12, 40, 400])
@pytest.mark.parametrize("skip", [True, False])
def test_outside_checks_on_preemption_and_prefix_heavy_trace(blocks, skip):
    run = run_checked(ENG, Linear(), blocks, ListSource(_specs()), event_skipping=skip)
    if blocks == 40:
        assert run.stats.preemptions > 0 and run.spy.preempting_steps > 0
    if blocks == 400:
        assert run.stats.prefix_cache_hit_tokens > 0 and run.stats.preemptions == 0
    if blocks == 12:
        assert run.stats.rejected > 0  # requests that can never fit are rejected, not hung


def test_closed_loop_concurrency_is_never_exceeded():
    shapes = [(50 + 10 * i, 3 + i % 5, None, 0) for i in range(40)]
    for clients in (1, 3, 7):
        run = run_checked(ENG, Const(0.01), 300, ClosedLoop(shapes, clients, 0.0), concurrency=clients)
        assert run.source.max_in_flight == clients


def test_check_invariants_flag_on_the_cli(tmp_path, capsys):
    args = ["run", "--num-requests", "60", "--rate", "30", "--num-gpu-blocks-override", "300", "--max-num-seqs", "16", "--seed", "2"]
    for flag, out in (([], "plain.json"), (["--check-invariants"], "checked.json")):
        try:
            main([*args, *flag, "-o", str(tmp_path / out)])
        except SystemExit as exc:
            assert exc.code in (0, None)
    capsys.readouterr()
    plain = json.loads((tmp_path / "plain.json").read_text())
    checked = json.loads((tmp_path / "checked.json").read_text())
    assert plain["summary"]["preemptions"] > 0
    assert plain["summary"] == checked["summary"] and plain["requests"] == checked["requests"]


# ------------------------------------------------------------------------------- injected faults are caught
class Fault:
    """A latency model that corrupts the scheduler's state once, at step `at`, then behaves."""

    name = "fault"

    def __init__(self, at: int, corrupt) -> None:
        self.at, self.corrupt, self.steps, self.sim = at, corrupt, 0, None

    def step_time(self, plan) -> float:
        self.steps += 1
        if self.steps == self.at:
            self.corrupt(self.sim.scheduler)
        return 0.01

    def explain(self, plan):  # pragma: no cover
        raise NotImplementedError


def _with_fault(corrupt, *, check_invariants: bool):
    fault = Fault(5, corrupt)
    sim = Simulator(ENG, fault, 200, check_invariants=check_invariants)
    fault.sim = sim
    return sim.run(ListSource(_specs()))


def _drop_waiting(sched) -> None:
    sched.waiting.pop()


def _lose_a_block(sched) -> None:
    sched.running[0].blocks.pop()


def _leak_a_reference(sched) -> None:
    r = sched.running[0]
    sched.kv.pool.ref_cnt[r.blocks[0]] += 1


def test_engine_check_names_invariant_step_and_request():
    with pytest.raises(InvariantError) as info:
        _with_fault(_leak_a_reference, check_invariants=True)
    assert str(info.value).startswith("invariant kv_refcount_matches_holders violated at step 5 (request ")
    assert info.value.step == 5 and info.value.request_id is not None
    # An orphaned block (dropped from its request's table) has no holder left to name: request "-".
    with pytest.raises(InvariantError, match=r"invariant kv_refcount_matches_holders violated at step 5 \(request -\)"):
        _with_fault(_lose_a_block, check_invariants=True)


def test_engine_check_catches_a_lost_request():
    with pytest.raises(InvariantError, match="request"):
        _with_fault(_drop_waiting, check_invariants=True)


@pytest.mark.parametrize("corrupt,invariant", [(_drop_waiting, "request_conservation"), (_lose_a_block, "kv_block_conservation"),
                                              (_leak_a_reference, "kv_refcount_matches_holders")])
def test_outside_checks_catch_injected_faults(corrupt, invariant):
    class Corrupting(Linear):
        steps = 0

        def step_time(self, plan):
            Corrupting.steps += 1
            if Corrupting.steps == 5:
                corrupt(spy.sim.scheduler)
            return super().step_time(plan)

    from ._checks import Spy, Watched

    watched = Watched(ListSource(_specs()))
    spy = Spy(Corrupting(), watched)
    sim = Simulator(ENG, spy, 200, event_skipping=False)
    spy.sim = sim
    with pytest.raises(Violation) as info:
        sim.run(watched)
    assert info.value.invariant == invariant and "at step 6" in str(info.value)


def test_end_of_run_checks_catch_bad_records():
    run = run_checked(ENG, Const(0.01), 400, ListSource(_specs(12)))
    r = next(x for x in run.records if x.output_tokens > 2)
    r.token_times_s = list(reversed(r.token_times_s))
    with pytest.raises(Violation, match="token_times|itl_nonnegative"):
        check_records(run)
    r.token_times_s = list(reversed(r.token_times_s))
    r.first_scheduled_s, saved = r.arrival_s - 1.0, r.first_scheduled_s
    with pytest.raises(Violation, match="causality"):
        check_records(run)
    r.first_scheduled_s = saved
    r.cached_tokens = r.input_tokens
    with pytest.raises(Violation, match="prefix_hit"):
        check_records(run)
