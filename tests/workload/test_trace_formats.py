"""Trace formats (workload/trace_formats.py) on small files following each upstream schema; hand-checked values."""

from __future__ import annotations

import gzip
import json
import math

import numpy as np
import pytest

from servesim.engine.request import RequestSpec
from servesim.errors import WorkloadError
from servesim.workload import build_source, parse_workload, workload_from_flags
from servesim.workload.arrivals import VllmBench
from servesim.workload.formats.columns import parse_columns
from servesim.workload.sources import ConcurrencyCap, ListSource
from servesim.workload.trace_formats import TraceOptions, detect_format, read_trace_file

MOONCAKE = (
    '{"timestamp": 0, "input_length": 1100, "output_length": 50, "hash_ids": [0, 1, 2]}\n'
    '{"timestamp": 1500, "input_length": 700, "output_length": 20, "hash_ids": [0, 3]}\n'
    '{"timestamp": 3052, "input_length": 1500, "output_length": 30, "hash_ids": [0, 1, 2]}\n'
    '{"timestamp": 4000, "input_length": 300, "output_length": 5, "hash_ids": [9]}\n'
)
AZURE = "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46.6805900,4808,10\n2023-11-16 18:15:50.9951690,3180,8\n"
BURSTGPT = ("Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type\n"
            "5,ChatGPT,472,18,490,Conversation log\n45,ChatGPT,1087,0,1087,Conversation log\n110.5,GPT-4,417,505,922,API log\n")
VIDUR = "arrived_at,num_prefill_tokens,num_decode_tokens\n0.0,100,10\n0.5,200,20\n"
SHAREGPT = [
    {"id": "a", "conversations": [{"from": "human", "value": "x" * 40}, {"from": "gpt", "value": "y" * 21}]},
    {"id": "b", "conversations": [{"from": "human", "value": "only one turn"}]},
    {"id": "c", "conversations": [{"from": "human", "value": "z" * 8}, {"from": "gpt", "value": "w" * 400}]},
]


def _write(tmp_path, name, text, gz=False):
    p = tmp_path / name
    if gz:
        p.write_bytes(gzip.compress(text.encode()))
    else:
        p.write_text(text)
    return p


def test_mooncake_ms_timestamps_and_hash_id_prefix_groups(tmp_path):
    t = read_trace_file(_write(tmp_path, "m.jsonl", MOONCAKE))
    s = t.specs
    assert [x.arrival_s for x in s] == [0.0, 1.5, 3.052, 4.0]
    assert [(x.input_tokens, x.output_tokens) for x in s] == [(1100, 50), (700, 20), (1500, 30), (300, 5)]
    # the first of group 0 starts the chain [0,1,2] (all 1100 tokens shareable); [0,3] shares 1 block = 512 tokens;
    # [0,1,2] matches the whole chain: 3 blocks, capped at its input 1500; [9] starts its own chain
    assert [(x.prefix_group, x.prefix_tokens) for x in s] == [("mooncake:0", 1100), ("mooncake:0", 512), ("mooncake:0", 1500),
                                                              ("mooncake:9", 300)]


def test_azure_iso_timestamps_relative_to_first(tmp_path):
    t = read_trace_file(_write(tmp_path, "a.csv", AZURE))
    assert detect_format(tmp_path / "a.csv") == "azure"
    assert t.specs[0].arrival_s == 0.0
    assert t.specs[1].arrival_s == pytest.approx(50.9951690 - 46.6805900, abs=1e-6)  # 7 fractional digits kept
    assert [(x.input_tokens, x.output_tokens) for x in t.specs] == [(4808, 10), (3180, 8)]


@pytest.mark.parametrize("errors,n,outs", [("skip", 2, [18, 505]), ("impute", 3, [18, 262, 505])])
def test_burstgpt_gz_failed_rows(tmp_path, errors, n, outs):
    p = _write(tmp_path, "b.csv.gz", BURSTGPT, gz=True)
    t = read_trace_file(p, options=TraceOptions(errors=errors))
    assert len(t.specs) == n and [x.output_tokens for x in t.specs] == outs  # impute: median(18, 505) = 261.5 -> 262
    assert t.specs[0].arrival_s == 5.0 and t.specs[-1].arrival_s == 110.5  # BurstGPT seconds as given
    assert t.skipped == (1 if errors == "skip" else 0)
    with pytest.raises(WorkloadError, match=r"b.csv.gz: line 3: Response tokens=0"):
        read_trace_file(p, options=TraceOptions(errors="raise"))


def test_vidur_columns(tmp_path):
    t = read_trace_file(_write(tmp_path, "v.csv", VIDUR), "vidur")
    assert [(x.arrival_s, x.input_tokens, x.output_tokens) for x in t.specs] == [(0.0, 100, 10), (0.5, 200, 20)]


def test_sharegpt_char_estimate_and_arrivals_from_rate(tmp_path):
    p = _write(tmp_path, "s.json", json.dumps(SHAREGPT))
    t = read_trace_file(p)
    assert [(x.input_tokens, x.output_tokens) for x in t.specs] == [(10, 6), (2, 100)]  # ceil(chars / 4)
    assert t.skipped == 1 and any("estimated" in n for n in t.notes)
    spec = workload_from_flags(trace=str(p), arrival="constant", rate=2.0)
    src = build_source(spec)
    got = [src.pop() for _ in range(2)]
    assert [g.arrival_s for g in got] == [0.0, 0.5] and src.peek_arrival_s() is None
    with pytest.raises(WorkloadError, match="no arrival times"):
        build_source(workload_from_flags(trace=str(p)))


def test_trace_columns_any_csv_and_units(tmp_path):
    p = _write(tmp_path, "x.csv", "t,p,o\n250,12,3\n1250,7,2\n")
    t = read_trace_file(p, options=TraceOptions(columns=parse_columns("arrival=t,input=p,output=o,arrival_unit=ms")))
    assert [(x.arrival_s, x.input_tokens, x.output_tokens) for x in t.specs] == [(0.25, 12, 3), (1.25, 7, 2)]
    with pytest.raises(WorkloadError, match="needs output=COLUMN"):
        parse_columns("arrival=t,input=p")
    with pytest.raises(WorkloadError, match="missing column 'q'"):
        read_trace_file(p, options=TraceOptions(columns=parse_columns("arrival=t,input=q,output=o")))


def test_bad_rows_name_file_line_and_field(tmp_path):
    p = _write(tmp_path, "b.csv", BURSTGPT.replace("1087,0", "abc,0"))
    with pytest.raises(WorkloadError, match=r"b.csv: line 3: Request tokens='abc': expected a number"):
        read_trace_file(p)
    m = _write(tmp_path, "m.jsonl", MOONCAKE.replace('"input_length": 700', '"input_length": -3'))
    with pytest.raises(WorkloadError, match=r"m.jsonl: line 2: input_length=-3"):
        read_trace_file(m, "mooncake")
    with pytest.raises(WorkloadError, match=r"m.jsonl: not valid JSON"):  # a Mooncake JSONL is not a vllm-bench result
        read_trace_file(m, "vllm-bench")


def test_gz_workload_yaml_with_trace_format(tmp_path):
    _write(tmp_path, "m.jsonl.gz", MOONCAKE, gz=True)
    y = _write(tmp_path, "w.yaml.gz", "trace: {path: m.jsonl.gz, format: mooncake}\n", gz=True)
    from servesim.workload import load_workload

    src = build_source(load_workload(str(y)))
    assert src.pop().input_tokens == 1100


def test_vllm_bench_arrivals_rescaled_to_n_over_rate():
    times = next(VllmBench(4.0, 0.5, 40).chunks(np.random.default_rng(1)))[0]
    assert times[-1] == pytest.approx(10.0) and np.all(np.diff(times) >= 0) and times[0] > 0
    assert np.all(next(VllmBench(math.inf, 1.0, 5).chunks(np.random.default_rng(1)))[0] == 0.0)


def test_concurrency_cap_holds_requests_at_the_client():
    inner = ListSource([RequestSpec(i, 0.0, 10, 2) for i in range(3)])
    cap = ConcurrencyCap(inner, 2)
    a, b = cap.pop(), cap.pop()
    assert (a.arrival_s, b.arrival_s) == (0.0, 0.0) and cap.peek_arrival_s() is None  # both slots taken
    cap.on_finish(a, 2.5)
    assert cap.peek_arrival_s() == 2.5 and cap.pop().arrival_s == 2.5  # sent when the slot freed


def test_max_concurrency_one_at_infinite_rate_is_synchronous():
    """vllm bench --request-rate inf --max-concurrency 1 sends one request at a time: GuideLLM synchronous."""
    from servesim.simulation import simulate

    kw = dict(num_requests=12, prompt_tokens=200, output_tokens=20, seed=3)
    capped = simulate(workload=workload_from_flags(request_rate=math.inf, max_concurrency=1, **kw), latency_model="roofline-v2")
    sync = simulate(workload=workload_from_flags(profile="synchronous", **kw), latency_model="roofline-v2")
    got = [(r.arrival_s, r.finish_s) for r in capped.records]
    assert got == [(r.arrival_s, r.finish_s) for r in sync.records]
    assert all(got[i + 1][0] == got[i][1] for i in range(len(got) - 1))  # next sent when the previous finished


def test_profiles_map_to_guidellm_strategies():
    assert workload_from_flags(profile="concurrent", rate=4).arrival.concurrency == 4
    tp = workload_from_flags(profile="throughput")
    assert tp.arrival.process == "throughput" and build_source(tp)._pending.__len__() == 500  # 512 streams > 500 requests
    assert workload_from_flags(profile="constant", rate=2).arrival.process == "constant"
    with pytest.raises(WorkloadError, match="--profile sweep"):
        workload_from_flags(profile="sweep")
    with pytest.raises(WorkloadError, match="--profile poisson needs --rate"):
        workload_from_flags(profile="poisson")
    y = parse_workload({"input_tokens": 5, "output_tokens": 2, "arrival": {"process": "vllm", "rate": 2, "burstiness": 0.5},
                        "num_requests": 4, "max_concurrency": 2})
    assert type(build_source(y)).__name__ == "ConcurrencyCap"


def test_sharegpt_with_a_local_tokenizer_json(tmp_path):
    tokenizers = pytest.importorskip("tokenizers")
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import Whitespace

    tok = tokenizers.Tokenizer(WordLevel({"[UNK]": 0, "hello": 1, "world": 2}, unk_token="[UNK]"))
    tok.pre_tokenizer = Whitespace()
    tok.save(str(tmp_path / "tokenizer.json"))
    data = [{"conversations": [{"from": "human", "value": "hello world hello"}, {"from": "gpt", "value": "world"}]}]
    p = _write(tmp_path, "s.json", json.dumps(data))
    t = read_trace_file(p, options=TraceOptions(tokenizer=str(tmp_path / "tokenizer.json")))
    assert [(x.input_tokens, x.output_tokens) for x in t.specs] == [(3, 1)]  # whitespace words, not characters / 4
    assert not any("estimated" in n for n in t.notes)


def test_guidellm_sweep_rates_and_order():
    from servesim.sweep.guidellm import run_sweep_profile, sweep_rates

    assert sweep_rates(1.0, 10.0, 5) == [4.0, 7.0, 10.0]  # linspace(1, 10, 4)[1:]
    seen = []

    def fake_run(spec):
        seen.append((spec.arrival.process, spec.arrival.rate))
        return {"requests_per_s": {"synchronous": 1.0, "throughput": 10.0}.get(spec.arrival.process, 0.5)}

    rows = run_sweep_profile(workload_from_flags(num_requests=5), 5, fake_run)
    assert seen == [("synchronous", None), ("throughput", None), ("constant", 4.0), ("constant", 7.0), ("constant", 10.0)]
    assert [r["strategy"] for r in rows] == ["synchronous", "throughput", "constant", "constant", "constant"]
    with pytest.raises(WorkloadError, match="integer >= 2"):
        sweep_rates(1.0, 2.0, 1)
