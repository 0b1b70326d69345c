"""Malformed data files raise one-line GroundTruthErrors naming the file and the field, never a traceback."""

from __future__ import annotations

import gzip
import json

import pytest

from servesim.errors import GroundTruthError
from servesim.validation import load_aggregate, load_guidellm, load_inference_perf_replay, load_requests_csv

from gt_helpers import CODEGEN, DATA

GL = DATA / "guidellm_excerpt.json"
_load_guidellm = load_guidellm


def load_guidellm(path, **kw):  # type: ignore[no-redef]
    """The excerpt holds 5 of the 40 requests its request_totals count: replay the sample (said in the notes)."""
    return _load_guidellm(path, sample="replay", **kw)
HEADER = "arrival_time_s,input_tokens,output_tokens,ttft_ms,e2e_ms\n"


def _raises(fn, *args, match: str, **kw) -> str:
    with pytest.raises(GroundTruthError, match=match) as info:
        fn(*args, **kw)
    assert "\n" not in str(info.value)
    return str(info.value)


# ------------------------------------------------------------------ guidellm
def _gl_variant(tmp_path, mutate):
    doc = json.loads(GL.read_text())
    mutate(doc)
    p = tmp_path / "g.json"
    p.write_text(json.dumps(doc))
    return p


def test_guidellm_missing_key(tmp_path):
    p = _gl_variant(tmp_path, lambda d: d["benchmarks"][0]["requests"]["successful"][1].pop("prompt_tokens"))
    msg = _raises(load_guidellm, p, match="prompt_tokens")
    assert "benchmarks[0].requests.successful[1].prompt_tokens" in msg and "g.json" in msg


def test_guidellm_wrong_type_and_negative(tmp_path):
    p = _gl_variant(tmp_path, lambda d: d["benchmarks"][0]["requests"]["successful"][0].update(output_tokens="ten"))
    _raises(load_guidellm, p, match=r"output_tokens.*expected a number")
    p = _gl_variant(tmp_path, lambda d: d["benchmarks"][0]["requests"]["successful"][0].update(prompt_tokens=-5))
    _raises(load_guidellm, p, match=r"prompt_tokens.*>= 0")

    def early_token(d):
        t = d["benchmarks"][0]["requests"]["successful"][0]["info"]["timings"]
        t["first_token_iteration"] = t["request_start"] - 1.0
    _raises(load_guidellm, _gl_variant(tmp_path, early_token), match="negative duration")


def test_guidellm_nan_empty_truncated(tmp_path):
    text = GL.read_text().replace('"duration": 39.71294379234314', '"duration": NaN', 1)
    assert "NaN" in text
    (tmp_path / "nan.json").write_text(text)
    _raises(load_guidellm, tmp_path / "nan.json", match="NaN is not allowed")
    (tmp_path / "empty.json").write_text("")
    _raises(load_guidellm, tmp_path / "empty.json", match="empty file")
    (tmp_path / "cut.json").write_text(GL.read_text()[:5000])
    _raises(load_guidellm, tmp_path / "cut.json", match="invalid JSON at line")
    (tmp_path / "cut.json.gz").write_bytes(gzip.compress(GL.read_bytes())[:3000])
    _raises(load_guidellm, tmp_path / "cut.json.gz", match="truncated or corrupt")
    _raises(load_guidellm, tmp_path / "missing.json", match="file not found")


def test_guidellm_unknown_strategy_and_empty(tmp_path):
    p = _gl_variant(tmp_path, lambda d: d["benchmarks"][0]["config"]["strategy"].update(type_="sweepy"))
    _raises(load_guidellm, p, match=r"strategy.type_='sweepy'.*synchronous")
    p = _gl_variant(tmp_path, lambda d: d.update(benchmarks=[]))
    _raises(load_guidellm, p, match="benchmarks: empty")


# ------------------------------------------------------------------ inference-perf
def _ip_variant(tmp_path, mutate_replay=None, mutate_truth=None):
    replay = json.loads((DATA / "ip_codegen" / f"{CODEGEN}.json").read_text())
    truth = json.loads((DATA / "ip_codegen" / f"{CODEGEN}_ground_truth.json").read_text())
    if mutate_replay:
        mutate_replay(replay)
    if mutate_truth:
        mutate_truth(truth)
    (tmp_path / "x.json").write_text(json.dumps(replay))
    (tmp_path / "x_ground_truth.json").write_text(json.dumps(truth))
    return tmp_path / "x.json"


def test_inference_perf_malformed(tmp_path):
    p = _ip_variant(tmp_path, lambda r: r["requests"][3].pop("arrival_time_us"))
    _raises(load_inference_perf_replay, p, match=r"x.json: requests\[3\].arrival_time_us: missing")
    p = _ip_variant(tmp_path, lambda r: r["requests"][3].update(arrival_time_us=-10))
    _raises(load_inference_perf_replay, p, match=r"arrival_time_us.*>= 0")
    p = _ip_variant(tmp_path, mutate_truth=lambda t: t[2].update(ttft_s="fast"))
    _raises(load_inference_perf_replay, p, match=r"x_ground_truth.json: \[index 2\].ttft_s.*expected a number")
    p = _ip_variant(tmp_path, mutate_truth=lambda t: t[2].update(ttft_s=99.0))
    _raises(load_inference_perf_replay, p, match="exceeds E2E")
    p = _ip_variant(tmp_path, mutate_truth=lambda t: t[2].pop("e2e_s"))
    _raises(load_inference_perf_replay, p, match="e2e_s: missing for a request without error")
    p = _ip_variant(tmp_path, mutate_truth=lambda t: t.pop())
    _raises(load_inference_perf_replay, p, match="has 29 records")
    p = _ip_variant(tmp_path, mutate_truth=lambda t: t[0].update(has_error=True))
    _raises(load_inference_perf_replay, p, match="has_error")
    p = _ip_variant(tmp_path, lambda r: r.update(requests=[]))
    _raises(load_inference_perf_replay, p, match="requests: empty")
    p = _ip_variant(tmp_path)
    (tmp_path / "x_ground_truth.json").write_text('[{"index": 0, "e2e_s": 4.4')
    _raises(load_inference_perf_replay, p, match="invalid JSON")


def test_inference_perf_bad_profile(tmp_path):
    p = _ip_variant(tmp_path)
    (tmp_path / "profile.yaml").write_text('{"load": {"stages": [{"rate": 5, "duration": 0}]}}')
    _raises(load_inference_perf_replay, p, profile=tmp_path / "profile.yaml", match=r"load.stages\[0\].duration")
    _raises(load_inference_perf_replay, p, output_tokens="requested", match="requested length is unknown")


# ------------------------------------------------------------------ requests-csv
@pytest.mark.parametrize("body, match", [
    ("", "empty file"),
    (HEADER, "no data rows"),
    ("arrival_time_s,input_tokens,output_tokens,ttft_ms\n0,1,2,3\n", "missing column.*e2e_ms"),
    (HEADER.strip() + ",colour\n0,10,5,1,2,red\n", "unknown column 'colour'"),
    (HEADER + "0,10,5,nan,20\n", r"line 2.ttft_ms='nan'.*finite"),
    (HEADER + "0,10,5,-1,20\n", r"line 2.ttft_ms.*>= 0"),
    (HEADER + "0,10,5,30,20\n", "exceeds E2E"),
    (HEADER + "0,ten,5,1,20\n", r"line 2.input_tokens='ten'"),
    (HEADER + "0,10,5,1\n", "has 4 cells"),
    (HEADER + "0,10,0,1,20\n", r"output_tokens.*>= 1"),
    (HEADER + "0,10,5,,20\n", "empty on a row with ok=1"),
])
def test_requests_csv_malformed(tmp_path, body, match):
    (tmp_path / "r.csv").write_text(body)
    msg = _raises(load_requests_csv, tmp_path / "r.csv", match=match)
    assert "r.csv" in msg


def test_requests_csv_truncated_gzip(tmp_path):
    (tmp_path / "r.csv.gz").write_bytes(gzip.compress((DATA / "requests_excerpt.csv").read_bytes())[:200])
    _raises(load_requests_csv, tmp_path / "r.csv.gz", match="truncated or corrupt")


# ------------------------------------------------------------------ aggregate
def test_aggregate_malformed(tmp_path):
    rows = (DATA / "seed13_two_rows.csv").read_text().splitlines()
    (tmp_path / "m.csv").write_text(rows[0] + "\n" + rows[1].replace(",67.1,", ",-67.1,") + "\n")
    _raises(load_aggregate, tmp_path / "m.csv", match=r"gt_ttft_mean_ms='-67.1'")
    (tmp_path / "two.csv").write_text("\n".join(rows) + "\n")
    _raises(load_aggregate, tmp_path / "two.csv", match="has 2 rows, name one")
    _raises(load_aggregate, tmp_path / "two.csv", {"row": "nope"}, match="'nope': not in two.csv")
    _raises(load_aggregate, tmp_path / "two.csv", {"row": rows[1].split(",")[0],
                                                   "workload": {"prompt_tokens": 10}}, match="output_tokens: missing")
    _raises(load_aggregate, tmp_path / "two.csv", {"row": rows[1].split(",")[0],
                                                   "workload": {"prompt_tokens": 10, "output_tokens": 5, "colour": 1}},
            match="workload.colour: unknown key")
    (tmp_path / "a.yaml").write_text("runs:\n- name: x\n  aggregates: {ttft_mean_ms: .nan}\n")
    _raises(load_aggregate, tmp_path / "a.yaml", match=r"runs\[0\].aggregates.ttft_mean_ms.*finite")


# ------------------------------------------------------------------ never a traceback
def _paths(obj, prefix=()):
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield prefix + (k,)
            yield from _paths(v, prefix + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj[:2]):
            yield prefix + (i,)
            yield from _paths(v, prefix + (i,))


def test_random_corruptions_only_raise_ground_truth_errors(tmp_path):
    """300 seeded single-field corruptions (deleted key, wrong type, negative, huge) of real excerpts."""
    import copy
    import random

    rng = random.Random(20260218)
    bad_values = [None, "x", -1, -1e9, [], {}, True, 0, 1.5, 1e300]
    gl = json.loads(GL.read_text())
    replay = json.loads((DATA / "ip_codegen" / f"{CODEGEN}.json").read_text())
    truth = json.loads((DATA / "ip_codegen" / f"{CODEGEN}_ground_truth.json").read_text())
    targets = {"gl": (gl, list(_paths(gl))), "replay": (replay, list(_paths(replay))),
               "truth": (truth, list(_paths(truth)))}
    for _ in range(300):
        which = rng.choice(sorted(targets))
        doc, paths = targets[which]
        doc = copy.deepcopy(doc)
        path = rng.choice(paths)
        parent = doc
        for key in path[:-1]:
            parent = parent[key]
        if isinstance(parent, dict) and rng.random() < 0.4:
            del parent[path[-1]]
        else:
            parent[path[-1]] = rng.choice(bad_values)
        try:
            if which == "gl":
                (tmp_path / "g.json").write_text(json.dumps(doc))
                load_guidellm(tmp_path / "g.json")
            else:
                (tmp_path / "x.json").write_text(json.dumps(doc if which == "replay" else replay))
                (tmp_path / "x_ground_truth.json").write_text(json.dumps(doc if which == "truth" else truth))
                load_inference_perf_replay(tmp_path / "x.json", profile=DATA / "ip_codegen" / "profile.yaml")
        except GroundTruthError as exc:
            assert "\n" not in str(exc)
