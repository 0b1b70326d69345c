"""GuideLLM loader on a real 2-benchmark cut of the jan20 sweep (3 + 3 successful requests, 2 rejected)."""

from __future__ import annotations

import json

import pytest

from servesim.validation import load_experiment, load_guidellm
from servesim.validation.loaders.guidellm import PREFIX_GROUP

from gt_helpers import DATA, write_manifest

EXCERPT = DATA / "guidellm_excerpt.json"


@pytest.fixture(scope="module")
def raw() -> dict:
    return json.loads(EXCERPT.read_text())


@pytest.fixture(scope="module")
def runs():
    return load_guidellm(EXCERPT, sample="replay")  # the excerpt keeps 5 of 40 requests with the full request_totals


def test_one_run_per_benchmark_with_strategy_mapping(runs):
    assert [r.name for r in runs] == ["0-synchronous", "1-constant@3.842rps"]
    sync, const = runs
    assert (sync.mode, sync.concurrency) == ("closed", 1)
    assert all(s.client == 0 for s in sync.requests)
    assert (const.mode, const.concurrency) == ("open", None)
    assert all(s.client is None for s in const.requests)


def test_synchronous_requests_in_measured_send_order(runs, raw):
    sync = runs[0]
    b = raw["benchmarks"][0]
    starts = sorted(r["info"]["timings"]["request_start"] for r in b["requests"]["successful"])
    assert [s.arrival_s for s in sync.requests] == pytest.approx([t - b["start_time"] for t in starts], abs=1e-9)
    assert [s.id for s in sync.requests] == [0, 1, 2]
    # closed loop: request k+1 is sent right after request k ends (GuideLLM synchronous)
    ends = [m.arrival_s + m.e2e_ms / 1000 for m in sync.measured]
    assert [s.arrival_s for s in sync.requests[1:]] == pytest.approx(ends[:-1], abs=2e-3)


def test_first_request_metrics_from_the_files_own_timings(runs, raw):
    req = min(raw["benchmarks"][0]["requests"]["successful"], key=lambda r: r["info"]["timings"]["request_start"])
    t = req["info"]["timings"]
    n = req["output_tokens"]
    ttft = (t["first_token_iteration"] - t["request_start"]) * 1000
    e2e = (t["request_end"] - t["request_start"]) * 1000
    m = runs[0].measured[0]
    assert m.input_tokens == req["prompt_tokens"] and m.output_tokens == n
    assert m.ttft_ms == pytest.approx(ttft, rel=1e-12)
    assert m.ttft_ms == pytest.approx(req["time_to_first_token_ms"], rel=1e-9)
    assert m.e2e_ms == pytest.approx(e2e, rel=1e-12)
    assert m.e2e_ms == pytest.approx(req["request_latency"] * 1000, rel=1e-9)
    assert m.itl_ms == pytest.approx((e2e - ttft) / (n - 1), rel=1e-12)
    # GuideLLM's own ITL stops at the last token, ours at the end of the response: a few µs apart
    assert m.itl_ms == pytest.approx(req["inter_token_latency_ms"], abs=0.05)
    # E2E per token (GuideLLM TPOT) includes TTFT and divides by N: kept apart from ITL
    assert m.e2e_per_token_ms == pytest.approx(req["time_per_output_token_ms"], rel=1e-9)
    assert m.e2e_per_token_ms > m.itl_ms


def test_constant_rate_arrivals_are_measured_send_times(runs, raw):
    b = raw["benchmarks"][1]
    const = runs[1]
    starts = sorted(r["info"]["timings"]["request_start"] - b["start_time"] for r in b["requests"]["successful"])
    assert [s.arrival_s for s in const.requests] == pytest.approx(starts, abs=1e-9)
    assert const.requests[0].arrival_s == pytest.approx(0.261, abs=1e-3)


def test_rejected_requests_are_dropped_and_listed(runs, raw):
    const = runs[1]
    errored = raw["benchmarks"][1]["requests"]["errored"]
    assert len(errored) == 2 and all("400 Bad Request" in r["info"]["error"] for r in errored)
    assert len(const.requests) == 3  # the 3 successful ones
    assert const.notes["num_rejected_dropped"] == 2
    assert sorted(d["prompt_tokens"] for d in const.notes["rejected_dropped"]) == [3177, 3192]


def test_rejected_requests_kept_when_asked():
    const = load_guidellm(EXCERPT, drop_rejected=False, sample="replay")[1]
    assert len(const.requests) == 5
    failed = [m for m in const.measured if not m.ok]
    assert len(failed) == 2
    assert all(m.ttft_ms is None and m.itl_ms is None for m in failed)
    # their output length is the requested max_tokens from request_args
    assert sorted(m.output_tokens for m in failed) == [17, 21]
    assert const.measured_means()["num_failed"] == 2


def test_shared_prefix_from_the_data_config(runs):
    for run in runs:
        for s in run.requests:
            assert s.prefix_group == PREFIX_GROUP and s.prefix_tokens == 1024


def test_benchmark_aggregates_read_from_metrics(runs, raw):
    m = raw["benchmarks"][0]["metrics"]
    agg = runs[0].aggregates
    assert agg["ttft_mean_ms"] == pytest.approx(m["time_to_first_token_ms"]["successful"]["mean"])
    assert agg["ttft_p90_ms"] == pytest.approx(m["time_to_first_token_ms"]["successful"]["percentiles"]["p90"])
    assert agg["e2e_mean_ms"] == pytest.approx(1000 * m["request_latency"]["successful"]["mean"])
    assert agg["e2e_per_token_mean_ms"] == pytest.approx(m["time_per_output_token_ms"]["successful"]["mean"])
    assert agg["guidellm_itl_mean_ms"] == pytest.approx(m["inter_token_latency_ms"]["successful"]["mean"])
    assert "itl_mean_ms" not in agg  # GuideLLM's token-weighted ITL is never passed off as the per-request mean


def test_manifest_selects_benchmarks(tmp_path):
    (tmp_path / "g.json").write_text(EXCERPT.read_text())
    write_manifest(tmp_path, {"format": "guidellm", "path": "g.json", "benchmarks": [1], "split": "test", "sample": "replay"})
    exp = load_experiment(tmp_path)
    assert [r.name for r in exp.runs] == ["1-constant@3.842rps"]
    assert exp.runs[0].notes["split"] == "test"
    assert exp.run("1-constant@3.842rps") is exp.runs[0]


def test_sample_is_refused_by_default():
    with pytest.raises(Exception, match=r"holds 5 of the 40 requests sent .*refuses to replay a sample"):
        load_guidellm(EXCERPT, benchmarks=[1])


def test_sample_replayed_only_when_asked_and_said(runs):
    assert "replayed only the 5 sampled requests of the 40 sent" in runs[1].notes["sample"]


def _variant(tmp_path, raw, mutate):
    import copy

    doc = copy.deepcopy(raw)
    mutate(doc)
    p = tmp_path / "g.json"
    p.write_text(json.dumps(doc))
    return p


def test_warmup_requests_dropped_as_guidellm_drops_them(tmp_path, raw):
    def warm(doc):
        b = doc["benchmarks"][1]
        b["warmup_duration"] = 5.0
        t = b["requests"]["successful"][0]["info"]["timings"]
        shift = t["request_start"] - b["start_time"] + 2.0  # sent 2 s before the benchmark start
        for k, v in list(t.items()):
            if isinstance(v, float):
                t[k] = v - shift
    run = load_guidellm(_variant(tmp_path, raw, warm), benchmarks=[1], sample="replay")[0]
    before = load_guidellm(EXCERPT, benchmarks=[1], sample="replay")[0]
    assert len(run.requests) == len(before.requests) - 1 and "1 warmup requests" in run.notes["warmup_dropped"]


def test_cooldown_requests_dropped_as_guidellm_drops_them(tmp_path, raw):
    """A request sent 1 s after start_time + duration, inside a 3 s cooldown, is left out (GuideLLM's metrics do)."""
    def cool(doc):
        b = doc["benchmarks"][1]
        b["cooldown_duration"] = 3.0
        t = b["requests"]["successful"][0]["info"]["timings"]
        shift = b["start_time"] + b["duration"] + 1.0 - t["request_start"]
        for k, v in list(t.items()):
            if isinstance(v, float):
                t[k] = v + shift
    run = load_guidellm(_variant(tmp_path, raw, cool), benchmarks=[1], sample="replay")[0]
    before = load_guidellm(EXCERPT, benchmarks=[1], sample="replay")[0]
    assert len(run.requests) == len(before.requests) - 1 and "1 cooldown requests" in run.notes["cooldown_dropped"]
    same = load_guidellm(_variant(tmp_path, raw, lambda d: d["benchmarks"][1].update(cooldown_duration=3.0)),
                         benchmarks=[1], sample="replay")[0]
    assert len(same.requests) == len(before.requests)  # nothing sent after the window: nothing dropped


def test_trace_strategy_is_open_loop_and_yaml_reads(tmp_path, raw):
    import yaml

    p = _variant(tmp_path, raw, lambda d: d["benchmarks"][1]["config"]["strategy"].update(type_="trace"))
    run = load_guidellm(p, benchmarks=[1], sample="replay")[0]
    assert (run.mode, run.name) == ("open", "1-trace@3.842rps")
    y = tmp_path / "benchmarks.yaml"
    y.write_text(yaml.safe_dump(raw))
    assert [r.name for r in load_guidellm(y, sample="replay")] == ["0-synchronous", "1-constant@3.842rps"]


def test_prefix_buckets_carried_as_shared_prefix_groups(tmp_path, raw):
    from servesim.validation.loaders.guidellm import _bucket_prefixes

    # Hand-computed: weights 3:1, bucket 0 has 2 prefixes of 100 tokens, bucket 1 one of 50.
    got = _bucket_prefixes([(3.0, 2, 100), (1.0, 1, 50)], 4)
    assert got == [("guidellm-bucket0-prefix0", 100), ("guidellm-bucket0-prefix1", 100),
                   ("guidellm-bucket1-prefix0", 50), ("guidellm-bucket0-prefix0", 100)]

    def buckets(doc):
        doc["benchmarks"][1]["config"]["requests"]["data"] = [
            {"prompt_tokens": 2000, "output_tokens": 50,
             "prefix_buckets": [{"bucket_weight": 1, "prefix_count": 2, "prefix_tokens": 64}]}]
    run = load_guidellm(_variant(tmp_path, raw, buckets), benchmarks=[1], sample="replay")[0]
    assert {s.prefix_group for s in run.requests} == {"guidellm-bucket0-prefix0", "guidellm-bucket0-prefix1"}
    assert {s.prefix_tokens for s in run.requests} == {64}
    assert "prefix_buckets" in run.notes["prefix"]
