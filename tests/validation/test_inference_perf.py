"""inference-perf replay loader on real excerpts: 30 requests of CodeLlama-34B codegen (20 from stage 0,
10 across the stage boundary) and 20 requests of Llama-2-7B reasoning where the 300 s timeouts begin."""

from __future__ import annotations

import json

import pytest
import yaml

from servesim.validation import load_experiment, load_inference_perf_replay
from servesim.validation.loaders.inference_perf import lifecycle_aggregates

from gt_helpers import CODEGEN, DATA, REASONING, write_manifest

CG = DATA / "ip_codegen"
RS = DATA / "ip_reasoning"


def _codegen(**kw):
    return load_inference_perf_replay(CG / f"{CODEGEN}.json", profile=CG / "profile.yaml",
                                      resolved_config=CG / "config.yaml", **kw)


@pytest.fixture(scope="module")
def pair():
    replay = json.loads((CG / f"{CODEGEN}.json").read_text())
    truth = json.loads((CG / f"{CODEGEN}_ground_truth.json").read_text())
    return replay, truth


def test_open_loop_with_measured_arrivals(pair):
    replay, truth = pair
    run = _codegen()
    assert (run.mode, run.concurrency) == ("open", None)
    assert len(run.requests) == 30
    assert [s.arrival_s for s in run.requests] == [r["arrival_time_us"] / 1e6 for r in replay["requests"]]
    assert [s.input_tokens for s in run.requests] == [r["input_tokens"] for r in replay["requests"]]


def test_first_request_ttft_e2e_itl_from_the_files_numbers(pair):
    replay, truth = pair
    m = _codegen().measured[0]
    n = 247  # profile output_len: ignore_eos with a fixed max_tokens, so every request generated 247 tokens
    assert yaml.safe_load((CG / "config.yaml").read_text())["data"]["shared_prefix"]["output_len"] == n
    assert m.ttft_ms == pytest.approx(truth[0]["ttft_s"] * 1000, rel=1e-12)
    assert m.e2e_ms == pytest.approx(truth[0]["e2e_s"] * 1000, rel=1e-12)
    assert m.output_tokens == n and m.recorded_output_tokens == replay["requests"][0]["output_tokens"] == 251
    assert m.itl_ms == pytest.approx((truth[0]["e2e_s"] - truth[0]["ttft_s"]) * 1000 / (n - 1), rel=1e-12)
    assert m.itl_ms == pytest.approx(17.91, abs=0.01)


def test_recorded_output_counts_on_request(pair):
    replay, truth = pair
    run = _codegen(output_tokens="recorded")
    n = replay["requests"][0]["output_tokens"]
    m = run.measured[0]
    assert m.output_tokens == n and m.recorded_output_tokens is None
    assert m.itl_ms == pytest.approx((truth[0]["e2e_s"] - truth[0]["ttft_s"]) * 1000 / (n - 1), rel=1e-12)
    assert run.notes["output_tokens_policy"] == "recorded"


def test_stage_assignment_by_arrival_time(pair):
    replay, _ = pair
    run = _codegen()
    assert run.stage_names == ("stage0: 5 rps x 600 s", "stage1: 10 rps x 600 s")
    expected = [0 if r["arrival_time_us"] < 600_000_000 else 1 for r in replay["requests"]]
    assert [s.stage for s in run.requests] == expected == [0] * 25 + [1] * 5
    # stage 1 begins ~6 s after 600 s: inference-perf drains stage 0 first
    first1 = next(s for s in run.requests if s.stage == 1)
    assert 605.0 < first1.arrival_s < 607.0
    assert run.notes["stage_counts"] == [25, 5]


def test_lifecycle_aggregates_are_per_stage_ttft_and_latency_only():
    agg = lifecycle_aggregates([CG / "stage_0_lifecycle_metrics.json", CG / "stage_1_lifecycle_metrics.json"])
    lc = json.loads((CG / "stage_0_lifecycle_metrics.json").read_text())
    assert agg["stage0_ttft_mean_ms"] == pytest.approx(1000 * lc["successes"]["latency"]["time_to_first_token"]["mean"])
    assert agg["stage0_e2e_p90_ms"] == pytest.approx(1000 * lc["successes"]["latency"]["request_latency"]["p90"])
    assert agg["stage0_num_sent"] == 3000 and agg["stage1_num_sent"] == 6000
    assert not any("itl" in k or "tpot" in k or "per_output" in k for k in agg)


def test_errored_requests_stay_in_replay_but_not_in_metrics():
    run = load_inference_perf_replay(RS / f"{REASONING}.json", profile=RS / "profile.yaml",
                                     resolved_config=RS / "config.yaml")
    replay = json.loads((RS / f"{REASONING}.json").read_text())
    truth = json.loads((RS / f"{REASONING}_ground_truth.json").read_text())
    n_err = sum(r["has_error"] for r in replay["requests"])
    assert n_err == 13 and len(run.requests) == 20
    failed = [m for m in run.measured if not m.ok]
    assert len(failed) == n_err
    for m in failed:
        assert m.ttft_ms is None and m.itl_ms is None
        assert 300_000 <= m.e2e_ms <= 301_000  # the client timeout
        assert m.recorded_input_tokens == 0 and m.recorded_output_tokens == 0  # the counts were lost
        assert m.output_tokens == 1448
    ok_inputs = sorted(r["input_tokens"] for r in replay["requests"] if not r["has_error"])
    assert failed[0].input_tokens == ok_inputs[(len(ok_inputs) - 1) // 2]  # lower median of the ok requests
    means = run.measured_means()
    ok_truth = [t for t in truth if not t["has_error"]]
    assert means["num_ok"] == 7 and means["num_failed"] == 13
    assert means["ttft_mean_ms"] == pytest.approx(1000 * sum(t["ttft_s"] for t in ok_truth) / 7)
    assert run.notes["num_errored"] == 13


def test_manifest_with_explicit_files(codegen_dir):
    write_manifest(codegen_dir, {
        "format": "inference-perf-replay", "path": f"{CODEGEN}.json", "profile": "profile.yaml",
        "resolved_config": "config.yaml",
        "lifecycle_metrics": ["stage_0_lifecycle_metrics.json", "stage_1_lifecycle_metrics.json"],
        "split": "validate", "workload_profile": {"system_prompt_len": 100}})
    exp = load_experiment(codegen_dir / "experiment.yaml")
    run = exp.runs[0]
    assert exp.engine["num_gpu_blocks"] == 26602 and exp.tensor_parallel_size == 2
    assert run.notes["split"] == "validate" and run.notes["workload_profile"] == {"system_prompt_len": 100}
    assert run.aggregates["stage1_requested_rate_per_s"] == 10
    assert run.notes["stage_counts_match_lifecycle"] is False  # an excerpt: 30 of 9000 requests


def test_manifest_experiment_dir_layout(tmp_path):
    # the shared layout: replay/<exp>.json + replay/<exp>_ground_truth.json + experiments/<exp>/...
    import shutil

    (tmp_path / "replay").mkdir()
    for name in (f"{CODEGEN}.json", f"{CODEGEN}_ground_truth.json"):
        shutil.copyfile(CG / name, tmp_path / "replay" / name)
    exp_dir = tmp_path / "experiments" / CODEGEN
    (exp_dir / "results").mkdir(parents=True)
    shutil.copyfile(CG / "profile.yaml", exp_dir / "profile.yaml")
    shutil.copyfile(CG / "config.yaml", exp_dir / "results" / "config.yaml")
    for k in (0, 1):
        name = f"stage_{k}_lifecycle_metrics.json"
        shutil.copyfile(CG / name, exp_dir / "results" / name)
    write_manifest(tmp_path, {"format": "inference-perf-replay", "path": f"replay/{CODEGEN}.json",
                              "experiment_dir": f"experiments/{CODEGEN}"})
    run = load_experiment(tmp_path).runs[0]
    assert len(run.stage_names) == 2 and "stage1_ttft_mean_ms" in run.aggregates
    assert run.notes["output_tokens_policy"] == "requested"


def test_gzipped_pair(tmp_path):
    import gzip

    for name in (f"{CODEGEN}.json", f"{CODEGEN}_ground_truth.json"):
        (tmp_path / (name + ".gz")).write_bytes(gzip.compress((CG / name).read_bytes()))
    run = load_inference_perf_replay(tmp_path / f"{CODEGEN}.json.gz")
    assert len(run.requests) == 30 and run.stage_names == ("stage0",)
    assert run.notes["output_tokens_policy"] == "recorded"  # no profile: nothing says the length was fixed
