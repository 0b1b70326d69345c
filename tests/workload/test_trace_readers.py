"""Trace readers: CSV, JSONL, inference-perf replay JSON (a real 50-request excerpt), bad rows."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from servesim.engine.request import RequestSpec
from servesim.errors import WorkloadError
from servesim.workload.traces import read_csv_trace, read_inference_perf_replay, read_jsonl_trace, read_trace

EXCERPT = Path(__file__).parent / "data" / "inference_perf_replay_excerpt.json"


def write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def test_csv_with_all_columns(tmp_path):
    p = write(
        tmp_path,
        "t.csv",
        "arrival_time_s,input_tokens,output_tokens,prefix_group,prefix_tokens,stage,note\n"
        "0.0,100,10,,,,x\n"
        "0.5,300,20,sys,200,1,y\n"
        "1.25,50,1,,30,2,z\n",
    )
    trace = read_csv_trace(p)
    assert trace.specs == (
        RequestSpec(0, 0.0, 100, 10),
        RequestSpec(1, 0.5, 300, 20, "sys", 200, None, 1),
        RequestSpec(2, 1.25, 50, 1, "shared", 30, None, 2),  # prefix without a group joins "shared"
    )
    assert trace.skipped == 0 and trace.notes == ()


def test_csv_time_columns_in_seconds_and_microseconds(tmp_path):
    s = read_csv_trace(write(tmp_path, "s.csv", "arrival_s,input_tokens,output_tokens\n2.5,10,3\n"))
    us = read_csv_trace(write(tmp_path, "us.csv", "arrival_time_us,input_tokens,output_tokens\n2500000,10,3\n"))
    assert s.specs[0].arrival_s == 2.5 and us.specs[0].arrival_s == 2.5


def test_csv_id_column_and_integral_floats(tmp_path):
    p = write(tmp_path, "ids.csv", "id,arrival_s,input_tokens,output_tokens\n7,0,12.0,3\n3,1,5,2\n")
    assert [(s.id, s.input_tokens) for s in read_csv_trace(p).specs] == [(7, 12), (3, 5)]


def test_jsonl_trace(tmp_path):
    p = write(
        tmp_path,
        "t.jsonl",
        '{"arrival_time_us": 0, "input_tokens": 8, "output_tokens": 2}\n\n'
        '{"arrival_time_us": 1500, "input_tokens": 9, "output_tokens": 3, "prefix_group": "g", "prefix_tokens": 4}\n',
    )
    assert read_jsonl_trace(p).specs == (RequestSpec(0, 0.0, 8, 2), RequestSpec(1, 0.0015, 9, 3, "g", 4))


def test_read_trace_dispatches_on_suffix(tmp_path):
    p = write(tmp_path, "t.ndjson", '{"arrival_s": 0, "input_tokens": 8, "output_tokens": 2}\n')
    assert len(read_trace(p).specs) == 1
    assert len(read_trace(EXCERPT).specs) == 50
    with pytest.raises(WorkloadError, match="suffix '.txt'"):
        read_trace(write(tmp_path, "t.txt", "x"))


def test_unsorted_trace_is_refused_naming_the_line_unless_sorted(tmp_path):
    p = write(tmp_path, "u.csv", "arrival_s,input_tokens,output_tokens\n0,1,1\n2,1,1\n1,1,1\n")
    with pytest.raises(WorkloadError) as err:
        read_csv_trace(p)
    assert "u.csv: line 4: arrival 1.0 s is earlier" in str(err.value) and "sort=True" in str(err.value)
    assert [s.id for s in read_csv_trace(p, sort=True).specs] == [0, 2, 1]


def test_real_inference_perf_replay_excerpt():
    trace = read_inference_perf_replay(EXCERPT)
    specs = trace.specs
    assert len(specs) == 50 and [s.id for s in specs] == list(range(50))
    assert specs[0] == RequestSpec(0, 0.0, 582, 250)
    assert specs[-1].arrival_s == pytest.approx(8.198084) and specs[-1].output_tokens == 3
    assert sum(s.input_tokens for s in specs) == 28755
    # index 32 is a successful row with output_tokens 0 in the file: replayed with 1 output token
    assert specs[32].output_tokens == 1 and sum(s.output_tokens for s in specs) == 9895 + 1
    assert trace.notes == ("1 successful rows with output_tokens 0 replayed with 1 output token",)
    assert all(s.prefix_group is None and s.prefix_tokens == 0 for s in specs)
    assert trace.meta["experiment"] == "20260217-231439-llama-2-7b-tp1-general"
    assert trace.meta["config"]["max_num_batched_tokens"] == 2048


def test_replay_stage_tags_from_stage_durations():
    raw = json.loads(EXCERPT.read_text())["requests"]
    expected = [0 if r["arrival_time_us"] < 5_000_000 else 1 for r in raw]
    trace = read_inference_perf_replay(EXCERPT, stage_durations_s=(5.0, 600.0))
    assert [s.stage for s in trace.specs] == expected and 0 < sum(expected) < 50


def replay_file(tmp_path: Path, rows: list[dict], **top) -> Path:
    doc = {"experiment": "x", "config": {"system_prompt_len": 0}, **top, "requests": rows}
    return write(tmp_path, "r.json", json.dumps(doc))


def row(i: int, t_us: int, inp: int, out: int, err: bool = False, group: str = "") -> dict:
    return {"index": i, "arrival_time_us": t_us, "input_tokens": inp, "output_tokens": out,
            "prefix_group": group, "has_error": err}


ROWS = [row(0, 0, 100, 10), row(1, 10, 0, 0, err=True), row(2, 20, 300, 30), row(3, 30, 200, 20)]


def test_replay_error_rows_skip_impute_raise(tmp_path):
    p = replay_file(tmp_path, ROWS)
    skip = read_inference_perf_replay(p)
    assert [s.id for s in skip.specs] == [0, 2, 3] and skip.skipped == 1
    imputed = read_inference_perf_replay(p, errors="impute")
    assert imputed.specs[1] == RequestSpec(1, 10e-6, 200, 20)  # medians of the successful rows
    with pytest.raises(WorkloadError, match=r"requests\[1\]: has_error=true"):
        read_inference_perf_replay(p, errors="raise")


def test_replay_prefix_groups_take_the_system_prompt_length(tmp_path):
    p = replay_file(tmp_path, [row(0, 0, 600, 10, group="g0")], config={"system_prompt_len": 100})
    assert read_inference_perf_replay(p).specs[0] == RequestSpec(0, 0.0, 600, 10, "g0", 100)


HEADER = "arrival_s,input_tokens,output_tokens\n"


@pytest.mark.parametrize(
    ("name", "text", "needle"),
    [
        ("empty.csv", "", "empty trace file"),
        ("header_only.csv", HEADER, "no requests after the header"),
        ("no_input.csv", "arrival_s,output_tokens\n0,1\n", "missing column 'input_tokens'"),
        ("no_time.csv", "input_tokens,output_tokens\n1,1\n", "needs exactly one time column"),
        ("two_times.csv", "arrival_s,arrival_time_us,input_tokens,output_tokens\n0,0,1,1\n", "found arrival_s, arrival_time_us"),
        ("word.csv", HEADER + "0,ten,1\n", "line 2: input_tokens='ten': expected a number"),
        ("nan.csv", HEADER + "nan,1,1\n", "line 2: arrival_s='nan': expected a finite number"),
        ("negative.csv", HEADER + "-1,1,1\n", "line 2: arrival_s='-1': must be >= 0"),
        ("zero_in.csv", HEADER + "0,0,1\n", "line 2: input_tokens='0': expected an integer >= 1"),
        ("zero_out.csv", HEADER + "0,1,0\n", "line 2: output_tokens='0': expected an integer >= 1"),
        ("frac.csv", HEADER + "0,1.5,1\n", "line 2: input_tokens='1.5'"),
        ("truncated.csv", HEADER + "0,1,1\n0.5,7", "line 3: output_tokens is missing"),
        ("extra.csv", HEADER + "0,1,1,9\n", "line 2: 4 fields but the header has 3"),
        ("prefix.csv", "arrival_s,input_tokens,output_tokens,prefix_tokens\n0,10,1,11\n", "prefix_tokens=11 exceeds"),
        ("empty.jsonl", "\n\n", "empty trace file"),
        ("truncated.jsonl", '{"arrival_s": 0, "input_tokens": 1, "output_tokens": 1}\n{"arrival_s": 1, "inp', "line 2: not valid JSON"),
        ("list.jsonl", "[1, 2]\n", "line 1: expected a JSON object"),
        ("missing.jsonl", '{"arrival_s": 0, "input_tokens": 1}\n', "line 1: output_tokens is missing"),
        ("bool.jsonl", '{"arrival_s": 0, "input_tokens": true, "output_tokens": 1}\n', "line 1: input_tokens=True"),
        ("truncated.json", '{"requests": [{"index": 0, "arrival_time_us": 0', "not valid JSON"),
        ("noreq.json", '{"experiment": "x"}', "'requests' list"),
        ("emptyreq.json", '{"requests": []}', "requests is empty"),
        ("badrow.json", '{"requests": [{"index": 0, "input_tokens": 5, "output_tokens": 1}]}', "requests[0]: arrival_time_us is missing"),
        ("neg.json", '{"requests": [{"index": 0, "arrival_time_us": -5, "input_tokens": 5, "output_tokens": 1}]}', "requests[0]: arrival_time_us=-5.0"),
        ("zeroin.json", '{"requests": [{"index": 0, "arrival_time_us": 0, "input_tokens": 0, "output_tokens": 1}]}', "requests[0]: input_tokens=0"),
        ("allerr.json", '{"requests": [{"index": 0, "arrival_time_us": 0, "input_tokens": 0, "output_tokens": 0, "has_error": true}]}', "every request has has_error"),
        ("unsorted.json", '{"requests": [{"index": 0, "arrival_time_us": 9, "input_tokens": 1, "output_tokens": 1}, {"index": 1, "arrival_time_us": 3, "input_tokens": 1, "output_tokens": 1}]}', "requests[1]: arrival"),
        ("dupid.csv", "id,arrival_s,input_tokens,output_tokens\n1,0,1,1\n1,1,1,1\n", "line 3: id=1 repeats"),
    ],
)
def test_bad_traces_raise_one_line_errors_naming_file_row_and_field(tmp_path, name, text, needle):
    p = write(tmp_path, name, text)
    with pytest.raises(WorkloadError) as err:
        read_trace(p)
    msg = str(err.value)
    assert name in msg and needle in msg and "\n" not in msg


def test_missing_trace_file(tmp_path):
    with pytest.raises(WorkloadError, match="cannot read trace"):
        read_trace(tmp_path / "absent.csv")
