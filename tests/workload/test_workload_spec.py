"""WorkloadSpec: YAML loading, strict keys, presets, GuideLLM/BLIS flags, build_source."""

from __future__ import annotations

from pathlib import Path

import pytest

from servesim.errors import WorkloadError
from servesim.workload import distributions as d
from servesim.workload.sources import ClosedLoopSource, ListSource, OpenLoopSource
from servesim.workload.spec import (
    PRESETS,
    build_source,
    load_workload_yaml,
    parse_workload,
    preset,
    workload_from_flags,
)

EXCERPT = Path(__file__).parent / "data" / "inference_perf_replay_excerpt.json"


def drain(src):
    out = []
    while src.peek_arrival_s() is not None:
        out.append(src.pop())
    return out


def yaml_file(tmp_path: Path, text: str, name: str = "w.yaml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def test_full_yaml_round_trip(tmp_path):
    (tmp_path / "lens.txt").write_text("5\n6\n")
    p = yaml_file(
        tmp_path,
        """
input_tokens: {kind: empirical, file: lens.txt}
output_tokens: 7
prefix_tokens: 100
arrival: {process: gamma, rate: 2.0, cv: 3}
num_requests: 20
seed: 5
""",
    )
    spec = load_workload_yaml(p)
    assert spec.input_tokens.build() == d.Empirical((5, 6))  # path resolved against the YAML folder
    assert spec.output_tokens.build() == d.constant(7)
    src = build_source(spec)
    assert isinstance(src, OpenLoopSource)
    specs = drain(src)
    assert len(specs) == 20
    assert {s.input_tokens for s in specs} <= {105, 106} and {s.prefix_group for s in specs} == {"shared"}


def test_staged_yaml_accepts_inference_perf_key_names(tmp_path):
    p = yaml_file(
        tmp_path,
        """
shared_prefix: {num_unique_system_prompts: 3, num_users_per_system_prompt: 2, system_prompt_len: 100,
                question_len: 50, output_len: 20}
arrival: {process: constant, stages: [{rate: 2, duration: 5}, {rate: 4, duration_s: 1}]}
""",
    )
    specs = drain(build_source(load_workload_yaml(p)))
    assert [s.stage for s in specs] == [0] * 10 + [1] * 4
    assert {s.input_tokens for s in specs} == {150} and {s.prefix_tokens for s in specs} == {100}
    assert {s.prefix_group for s in specs} <= {"system-0", "system-1", "system-2"}


def test_closed_loop_yaml(tmp_path):
    p = yaml_file(tmp_path, "input_tokens: 10\noutput_tokens: 5\narrival: {process: concurrency, concurrency: 4, think_time_s: 0.1}\nnum_requests: 9\n")
    src = build_source(load_workload_yaml(p))
    assert isinstance(src, ClosedLoopSource)
    assert len(drain(src)) == 4


def test_synchronous_shorthand(tmp_path):
    p = yaml_file(tmp_path, "input_tokens: 10\noutput_tokens: 5\narrival: synchronous\nduration_s: 10\n")
    src = build_source(load_workload_yaml(p))
    assert isinstance(src, ClosedLoopSource) and len(drain(src)) == 1


def test_trace_yaml_with_relative_path_and_cut(tmp_path):
    (tmp_path / "t.csv").write_text("arrival_s,input_tokens,output_tokens\n0,1,1\n1,1,1\n2,1,1\n3,1,1\n")
    src = build_source(load_workload_yaml(yaml_file(tmp_path, "trace: t.csv\nduration_s: 2.5\n")))
    assert isinstance(src, ListSource) and len(src) == 3
    src = build_source(parse_workload({"trace": {"path": str(EXCERPT)}, "num_requests": 10}))
    assert [s.id for s in drain(src)] == list(range(10))


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("input_tokens: 10\noutput_tokens: 5\narrival: poisson\nrate: 3\nnum_requests: 5\n", "rate: unknown key (allowed: input_tokens"),
        ("input_tokens: 10\noutput_tokens: 5\narrival: {process: poisson, ratee: 3}\nnum_requests: 5\n", "arrival.ratee: unknown key (allowed: process, rate"),
        ("input_tokens: {kind: gaussian, mean: 5, stddev: 1}\noutput_tokens: 5\narrival: synchronous\nnum_requests: 5\n", "input_tokens.stddev: unknown key"),
        ("input_tokens: {kind: gaussian, mean: 50, stdev: 1, min: 10, max: 3}\noutput_tokens: 5\narrival: synchronous\nnum_requests: 5\n", "input_tokens: gaussian length: max=3: must be >= min (10)"),
        ("input_tokens: {kind: constant, value: 5, mean: 3}\noutput_tokens: 5\narrival: synchronous\nnum_requests: 5\n", "unknown parameter 'mean'"),
        ("input_tokens: 0\noutput_tokens: 5\narrival: synchronous\nnum_requests: 5\n", "value=0"),
        ("input_tokens: 10\narrival: synchronous\nnum_requests: 5\n", "output_tokens is required"),
        ("input_tokens: 10\noutput_tokens: 5\nnum_requests: 5\n", "arrival is required"),
        ("input_tokens: 10\noutput_tokens: 5\narrival: {process: poisson, rate: 2}\n", "num_requests and/or duration_s"),
        ("input_tokens: 10\noutput_tokens: 5\narrival: {process: poisson}\nnum_requests: 5\n", "exactly one of rate or stages"),
        ("input_tokens: 10\noutput_tokens: 5\narrival: {process: gamma, rate: 2}\nnum_requests: 5\n", "needs cv"),
        ("input_tokens: 10\noutput_tokens: 5\narrival: {process: poisson, rate: 2, cv: 2}\nnum_requests: 5\n", "cv does not apply to process 'poisson'"),
        ("input_tokens: 10\noutput_tokens: 5\narrival: {process: synchronous, rate: 2}\nnum_requests: 5\n", "rate does not apply"),
        ("input_tokens: 10\noutput_tokens: 5\narrival: {process: concurrency}\nnum_requests: 5\n", "needs concurrency"),
        ("input_tokens: 10\noutput_tokens: 5\narrival: {process: poisson, rate: -1}\nnum_requests: 5\n", "arrival.rate=-1: Input should be greater than 0"),
        ("input_tokens: 10\noutput_tokens: 5\narrival: {process: poisson, rate: .nan}\nnum_requests: 5\n", "arrival.rate=nan"),
        ("input_tokens: 10\noutput_tokens: 5\narrival: {process: weibull, rate: 1}\nnum_requests: 5\n", "arrival.process='weibull'"),
        ("input_tokens: 10\noutput_tokens: 5\narrival: {process: constant, stages: []}\n", "arrival.stages"),
        ("input_tokens: 10\noutput_tokens: 5\narrival: synchronous\nnum_requests: 0\n", "num_requests=0"),
        ("trace: t.csv\narrival: synchronous\n", "arrival cannot be combined with trace"),
        ("shared_prefix: {num_groups: 1, users_per_group: 1, system_prompt_len: 1, question_len: 1, output_len: 1}\ninput_tokens: 5\narrival: synchronous\nnum_requests: 1\n", "input_tokens cannot be combined with shared_prefix"),
        ("- 1\n- 2\n", "expected a mapping"),
        ("input_tokens: [1, 2\n", "not valid YAML at line"),
    ],
)
def test_bad_yaml_gives_one_line_error_naming_file_and_key(tmp_path, text, needle):
    p = yaml_file(tmp_path, text)
    with pytest.raises(WorkloadError) as err:
        load_workload_yaml(p)
    msg = str(err.value)
    assert msg.startswith(str(p)) and needle in msg and "\n" not in msg


def test_missing_yaml_file(tmp_path):
    with pytest.raises(WorkloadError, match="cannot read workload file"):
        load_workload_yaml(tmp_path / "none.yaml")


def test_chat_preset_is_what_the_docs_say():
    spec = preset("chat")
    assert spec.input_tokens.build() == d.gaussian(512, 256, 2, 2048)
    assert spec.output_tokens.build() == d.gaussian(256, 128, 2, 1024)
    assert (spec.arrival.process, spec.arrival.rate, spec.num_requests) == ("poisson", 4.0, 500)
    specs = drain(build_source(spec))
    assert len(specs) == 500
    assert all(2 <= s.input_tokens <= 2048 and 2 <= s.output_tokens <= 1024 for s in specs)
    assert specs[-1].arrival_s == pytest.approx(499 / 4, rel=0.15)
    with pytest.raises(WorkloadError, match="preset='chatty'"):
        preset("chatty")
    assert set(PRESETS) == {"chat"}


def test_flags_follow_guidellm_length_rules():
    spec = workload_from_flags(prompt_tokens=100, prompt_tokens_stdev=20, output_tokens=32, output_tokens_min=1,
                               output_tokens_max=64)
    assert spec.input_tokens.build() == d.gaussian(100, 20, 1, 200)  # mean ± 5σ, at least 1
    assert spec.output_tokens.build() == d.uniform(1, 64)  # min/max without stdev
    spec = workload_from_flags(prompt_tokens=70, prefix_tokens=284, output_tokens=215, prompt_tokens_stdev=35,
                               prompt_tokens_min=2, prompt_tokens_max=200)
    assert spec.input_tokens.build() == d.gaussian(70, 35, 2, 200) and spec.prefix_tokens == 284
    assert workload_from_flags(output_tokens=5).output_tokens.build() == d.constant(5)


def test_flags_arrival_rules():
    assert workload_from_flags(rate=10).arrival.model_dump(exclude_none=True) == {"process": "poisson", "rate": 10.0}
    assert workload_from_flags(rate=10, arrival="constant").arrival.process == "constant"
    assert workload_from_flags(concurrency=8).arrival.concurrency == 8
    gamma = workload_from_flags(arrival="gamma", rate=3, cv=2)
    assert (gamma.arrival.rate, gamma.arrival.cv) == (3.0, 2.0)
    kept = workload_from_flags(arrival="gamma", cv=2)  # chat's 4 req/s carries over to the new process
    assert (kept.arrival.process, kept.arrival.rate, kept.arrival.cv) == ("gamma", 4.0, 2.0)
    sync = workload_from_flags(arrival="synchronous", num_requests=3, seed=9)
    assert (sync.arrival.process, sync.num_requests, sync.seed) == ("synchronous", 3, 9)


def test_flags_trace_replaces_lengths_and_arrival():
    spec = workload_from_flags(trace=EXCERPT, num_requests=5)
    assert spec.trace is not None and spec.input_tokens is None and spec.num_requests == 5
    assert len(drain(build_source(spec))) == 5


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"trace": "x.csv", "prompt_tokens": 5}, "--trace cannot be combined with --prompt-tokens"),
        ({"prompt_tokens_stdev": 5}, "--prompt-tokens-stdev/-min/-max need --prompt-tokens"),
        ({"cv": 2}, "--cv does not apply to arrival 'poisson'"),
        ({"arrival": "synchronous", "rate": 3}, "--rate does not apply"),
        ({"rate": 0}, "arrival.rate=0"),
        ({"arrival": "zipf"}, "arrival.process='zipf'"),
    ],
)
def test_bad_flags(kwargs, needle):
    with pytest.raises(WorkloadError) as err:
        workload_from_flags(**kwargs)
    assert needle in str(err.value)


def test_build_source_is_deterministic_and_seed_overrides():
    spec = preset("chat")
    a, b = drain(build_source(spec)), drain(build_source(spec))
    c = drain(build_source(spec, seed=1))
    assert a == b and a != c
    assert c == drain(build_source(workload_from_flags(seed=1)))
