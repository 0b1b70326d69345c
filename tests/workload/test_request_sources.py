"""Request sources: open loop (lazy), closed loop (fed on_finish by hand), explicit lists."""

from __future__ import annotations

import collections
import time
import tracemalloc

import numpy as np
import pytest

from servesim.engine.request import RequestSpec
from servesim.errors import WorkloadError
from servesim.workload import arrivals as a
from servesim.workload import distributions as d
from servesim.workload.prompts import Prompts, SharedPrefixPrompts
from servesim.workload.sources import ClosedLoopSource, ListSource, OpenLoopSource

CONST = Prompts(d.constant(100), d.constant(10))


def drain(src) -> list[RequestSpec]:
    out = []
    while src.peek_arrival_s() is not None:
        out.append(src.pop())
    return out


def test_open_loop_ids_order_and_exhaustion():
    src = OpenLoopSource(a.constant(4), CONST, np.random.default_rng(0), num_requests=5)
    specs = drain(src)
    assert [s.id for s in specs] == [0, 1, 2, 3, 4]
    assert [s.arrival_s for s in specs] == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert all(s.input_tokens == 100 and s.output_tokens == 10 and s.client is None for s in specs)
    assert src.peek_arrival_s() is None
    with pytest.raises(IndexError):
        src.pop()


def test_open_loop_duration_limit_and_start_offset():
    src = OpenLoopSource(a.constant(10), CONST, np.random.default_rng(0), duration_s=1.0, start_s=2.0)
    specs = drain(src)
    assert len(specs) == 10
    assert specs[0].arrival_s == 2.0 and specs[-1].arrival_s == pytest.approx(2.9)


def test_open_loop_stops_at_the_first_limit_reached():
    src = OpenLoopSource(a.constant(10), CONST, np.random.default_rng(0), num_requests=3, duration_s=100)
    assert len(drain(src)) == 3


def test_staged_source_tags_stages():
    src = OpenLoopSource(a.staged([(2, 2), (4, 1)]), CONST, np.random.default_rng(0))
    specs = drain(src)
    assert [s.stage for s in specs] == [0, 0, 0, 0, 1, 1, 1, 1]
    assert [s.id for s in specs] == list(range(8))


def test_open_loop_is_lazy_for_ten_million_requests():
    tracemalloc.start()
    t0 = time.perf_counter()
    src = OpenLoopSource(a.poisson(100), Prompts(d.gaussian(512, 256, 2, 2048), d.constant(64)),
                         np.random.default_rng(0), num_requests=10**7)
    first = [src.pop() for _ in range(5)]
    elapsed = time.perf_counter() - t0
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert [s.id for s in first] == [0, 1, 2, 3, 4]
    assert elapsed < 1.0
    assert peak < 5_000_000  # bytes: a materialised 10^7-request list would need gigabytes


def test_fixed_prefix_counts_inside_input_tokens():
    src = OpenLoopSource(a.constant(1), Prompts(d.constant(100), d.constant(10), prefix_tokens=50),
                         np.random.default_rng(0), num_requests=3)
    for s in drain(src):
        assert (s.input_tokens, s.prefix_tokens, s.prefix_group) == (150, 50, "shared")


def test_shared_prefix_groups_are_uniform_and_lengths_constant():
    model = SharedPrefixPrompts(num_groups=4, users_per_group=8, system_prompt_len=512, question_len=128, output_len=256)
    batch = model.sample(np.random.default_rng(9), 20_000)
    counts = collections.Counter(batch.prefix_group)
    assert set(counts) == {"system-0", "system-1", "system-2", "system-3"}
    assert all(abs(c - 5000) < 250 for c in counts.values())
    assert set(batch.input_tokens) == {640} and set(batch.output_tokens) == {256}
    assert set(batch.prefix_tokens) == {512}


@pytest.mark.parametrize("field", ["num_groups", "users_per_group", "system_prompt_len", "question_len", "output_len"])
def test_shared_prefix_refuses_non_positive_fields(field):
    args = dict(num_groups=2, users_per_group=2, system_prompt_len=10, question_len=5, output_len=5)
    args[field] = 0
    with pytest.raises(WorkloadError, match=f"shared_prefix.{field}=0"):
        SharedPrefixPrompts(**args)


def test_closed_loop_releases_the_next_request_on_finish():
    src = ClosedLoopSource(a.concurrency(2, think_time_s=0.5), CONST, np.random.default_rng(0), num_requests=5)
    assert src.peek_arrival_s() == 0.0
    r0, r1 = src.pop(), src.pop()
    assert (r0.id, r0.client, r1.id, r1.client) == (0, 0, 1, 1)
    assert src.peek_arrival_s() is None  # nothing exists until a request finishes
    src.on_finish(r1, 1.0)
    assert src.peek_arrival_s() == 1.5
    src.on_finish(r0, 1.2)
    r2, r3 = src.pop(), src.pop()
    assert (r2.id, r2.client, r2.arrival_s) == (2, 1, 1.5)
    assert (r3.id, r3.client, r3.arrival_s) == (3, 0, 1.7)
    src.on_finish(r2, 2.0)
    r4 = src.pop()
    assert (r4.id, r4.client, r4.arrival_s) == (4, 1, 2.5)
    src.on_finish(r3, 3.0)
    src.on_finish(r4, 3.0)
    assert src.peek_arrival_s() is None  # all 5 issued


def test_synchronous_has_one_request_in_flight():
    src = ClosedLoopSource(a.synchronous(), CONST, np.random.default_rng(0), num_requests=3)
    t = 0.0
    for i in range(3):
        assert src.peek_arrival_s() == t
        spec = src.pop()
        assert spec.id == i and src.peek_arrival_s() is None
        t += 0.75
        src.on_finish(spec, t)
    assert src.peek_arrival_s() is None


def test_closed_loop_duration_stops_new_requests():
    src = ClosedLoopSource(a.synchronous(), CONST, np.random.default_rng(0), duration_s=2.0)
    spec = src.pop()
    src.on_finish(spec, 1.5)
    spec = src.pop()
    src.on_finish(spec, 2.0)  # next would arrive at 2.0 = the end: not issued
    assert src.peek_arrival_s() is None


def test_closed_loop_with_fewer_requests_than_clients():
    src = ClosedLoopSource(a.concurrency(8), CONST, np.random.default_rng(0), num_requests=3)
    assert len(drain(src)) == 3


def test_closed_loop_refuses_unknown_or_repeated_finishes():
    src = ClosedLoopSource(a.synchronous(), CONST, np.random.default_rng(0), num_requests=3)
    spec = src.pop()
    src.on_finish(spec, 1.0)
    with pytest.raises(ValueError):
        src.on_finish(spec, 1.0)


@pytest.mark.parametrize("kwargs", [{}, {"num_requests": 0}, {"num_requests": 2.5}, {"duration_s": -1.0}])
def test_sources_need_a_valid_size(kwargs):
    with pytest.raises(WorkloadError):
        ClosedLoopSource(a.synchronous(), CONST, np.random.default_rng(0), **kwargs)
    with pytest.raises(WorkloadError):
        OpenLoopSource(a.poisson(1), CONST, np.random.default_rng(0), **kwargs)


def specs_of(src, n: int) -> list[RequestSpec]:
    return [src.pop() for _ in range(n)]


def test_same_seed_same_requests_different_seed_different():
    prompts = Prompts(d.gaussian(512, 256, 2, 2048), d.exponential(200))

    def make(seed: int) -> list[RequestSpec]:
        return specs_of(OpenLoopSource(a.poisson(4), prompts, np.random.default_rng(seed), num_requests=3000), 3000)

    assert make(7) == make(7)
    assert make(7) != make(8)


def test_lengths_do_not_depend_on_the_arrival_process():
    prompts = Prompts(d.gaussian(512, 256, 2, 2048), d.exponential(200))
    sources = [
        OpenLoopSource(a.poisson(4), prompts, np.random.default_rng(3), num_requests=50),
        OpenLoopSource(a.constant(40), prompts, np.random.default_rng(3), num_requests=50),
        ClosedLoopSource(a.concurrency(50), prompts, np.random.default_rng(3), num_requests=50),
    ]
    shapes = [[(s.input_tokens, s.output_tokens) for s in drain(src)] for src in sources]
    assert shapes[0] == shapes[1] == shapes[2]


def spec(i: int, t: float) -> RequestSpec:
    return RequestSpec(i, t, 10, 5)


def test_list_source_replays_in_order_and_ignores_finishes():
    src = ListSource([spec(0, 0.0), spec(1, 0.5), spec(2, 0.5)])
    assert len(src) == 3
    first = src.pop()
    src.on_finish(first, 9.0)
    assert [s.id for s in drain(src)] == [1, 2]


def test_list_source_refuses_unsorted_input_naming_the_row():
    with pytest.raises(WorkloadError, match=r"trace\[1\] \(id 1\): arrival_s=0.5 .* pass sort=True"):
        ListSource([spec(0, 1.0), spec(1, 0.5)], where="trace")


def test_list_source_sorts_stably_when_asked():
    src = ListSource([spec(0, 1.0), spec(1, 0.5), spec(2, 0.5)], sort=True)
    assert [s.id for s in drain(src)] == [1, 2, 0]


def test_list_source_refuses_repeated_ids():
    with pytest.raises(WorkloadError, match="id=0 repeats"):
        ListSource([spec(0, 0.0), spec(0, 1.0)])
