"""The bundled suites load completely, and their contents keep the invariants the loaders promise."""

from __future__ import annotations

import importlib.util
import math
import subprocess
import sys
from pathlib import Path

import pytest

from servesim.errors import GroundTruthError
from servesim.validation import list_suites, load_suite, suite_path

from gt_helpers import SHARED

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def seed13():
    return load_suite("seed13")


@pytest.fixture(scope="module")
def inference_perf():
    return load_suite("inference-perf-h100")


@pytest.fixture(scope="module")
def guidellm():
    return load_suite("guidellm-h100")


def test_list_and_paths():
    assert list_suites() == ["guidellm-h100", "inference-perf-h100", "inference-perf-trainval", "seed13"]
    assert (suite_path("seed13") / "README.md").is_file()
    with pytest.raises(GroundTruthError, match="not a bundled suite.*seed13"):
        suite_path("nope")


def test_seed13(seed13):
    assert len(seed13) == 13
    for exp in seed13:
        (run,) = exp.runs
        assert (run.mode, run.concurrency, run.requests, run.measured) == ("closed", 1, (), None)
        assert set(run.aggregates) == {"ttft_mean_ms", "e2e_mean_ms", "e2e_per_token_mean_ms"}
        assert run.workload["num_requests"] == 50 and run.workload["prompt_tokens"] > 0
    # the report's headline: scaled-overhead TPOT MAPE 17.3 % = unweighted mean over the 13 experiments
    sc = [e.runs[0].notes["published"]["h2b_SC_tpot_mape"] for e in seed13]
    assert sum(sc) / 13 == pytest.approx(17.3, abs=0.05)
    dec17 = next(e for e in seed13 if e.name.startswith("dec17"))
    assert dec17.engine["num_gpu_blocks"] == 65833 and dec17.model == "qwen2.5-7b-instruct"


def test_inference_perf(inference_perf):
    assert len(inference_perf) == 12
    sizes = {e.name: len(e.runs[0].requests) for e in inference_perf}
    assert sizes["codellama-34b-tp2-codegen"] == 9000 and sizes["llama-2-70b-tp4-general"] == 16800
    errored = {e.name: e.runs[0].notes["num_errored"] for e in inference_perf}
    assert errored["llama-2-7b-tp1-reasoning"] == 4068 and errored["llama-2-70b-tp4-reasoning"] == 1600
    assert errored["codellama-34b-tp2-reasoning"] == 4 and errored["codellama-34b-tp2-codegen"] == 0
    for exp in inference_perf:
        run = exp.runs[0]
        wp = run.notes["workload_profile"]
        assert exp.engine["max_num_seqs"] == 128 and exp.engine["num_gpu_blocks"] > 0
        assert run.mode == "open" and run.notes["split"] in ("train", "validate", "test")
        assert run.notes["stage_counts_match_lifecycle"] is True
        assert wp["prompt_cycle_period"] == 100 and wp["prompt_cycle_match"] > 0.97
        assert all(s.prefix_group is None for s in run.requests)  # the replay carries no prefix information
        assert all(s.output_tokens == wp["requested_output_tokens"] for s in run.requests)
        arrivals = [s.arrival_s for s in run.requests]
        assert arrivals == sorted(arrivals) and [s.id for s in run.requests] == list(range(len(arrivals)))
        # per-stage means from the per-request CSV agree with inference-perf's own lifecycle report
        for k in range(len(run.stage_names)):
            means = run.measured_means(k)
            assert means["num_ok"] == run.aggregates[f"stage{k}_num_ok"]
            assert means["ttft_mean_ms"] == pytest.approx(run.aggregates[f"stage{k}_ttft_mean_ms"], abs=1e-3)
            assert means["e2e_mean_ms"] == pytest.approx(run.aggregates[f"stage{k}_e2e_mean_ms"], abs=1e-3)


def test_guidellm(guidellm):
    (exp,) = guidellm
    assert exp.model == "codellama-34b-instruct-hf" and exp.tensor_parallel_size == 1
    assert exp.engine == {"max_num_seqs": 256, "max_num_batched_tokens": 4096, "block_size": 16,
                          "num_gpu_blocks": 2537, "enable_prefix_caching": True, "enable_chunked_prefill": True,
                          "max_model_len": 4096, "async_scheduling": False}
    got = [(r.name, r.mode, r.concurrency, len(r.requests)) for r in exp.runs]
    assert got == [("0-synchronous", "closed", 1, 40), ("1-throughput", "closed", 512, 39),
                   ("2-constant@1.952rps", "open", None, 40), ("3-constant@2.897rps", "open", None, 40),
                   ("4-constant@3.842rps", "open", None, 38)]
    # the client sent the first 13 requests of the 1.95 req/s benchmark ~6 s late; the replay keeps the burst
    assert exp.run("2-constant@1.952rps").notes["max_send_lag_s"] > 6.0
    assert sum(r.notes["num_rejected_dropped"] for r in exp.runs) == 3
    for run in exp.runs:
        means = run.measured_means()
        assert means["ttft_mean_ms"] == pytest.approx(run.aggregates["ttft_mean_ms"], rel=1e-9)
        assert means["e2e_mean_ms"] == pytest.approx(run.aggregates["e2e_mean_ms"], rel=1e-9)
        # GuideLLM's TPOT aggregate is token-weighted E2E-per-token
        assert means["e2e_per_token_mean_ms"] == pytest.approx(run.aggregates["e2e_per_token_mean_ms"], rel=1e-9)
        assert all(math.isfinite(m.itl_ms) for m in run.measured if m.ok and m.output_tokens > 1)


def _build_module():
    spec = importlib.util.spec_from_file_location("build_suites", REPO / "scripts" / "build_suites.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    return mod


@pytest.mark.skipif(not (SHARED / "data" / "groundtruth").is_dir(), reason="shared data folder not present")
def test_rebuild_is_byte_identical(tmp_path):
    """seed13, guidellm-h100 and inference-perf-trainval rebuilt from shared/ equal the bundled files
    (deterministic, up to date; trainval's length check reads the bundled inference-perf-h100)."""
    out = tmp_path / "suites"
    subprocess.run([sys.executable, str(REPO / "scripts" / "build_suites.py"), str(SHARED), "--out", str(out),
                    "--suite", "seed13", "--suite", "guidellm-h100", "--suite", "inference-perf-trainval"],
                   check=True, capture_output=True)
    for suite in ("seed13", "guidellm-h100", "inference-perf-trainval"):
        built = sorted(p.relative_to(out / suite) for p in (out / suite).rglob("*") if p.is_file())
        bundled = sorted(p.relative_to(suite_path(suite)) for p in suite_path(suite).rglob("*") if p.is_file())
        assert built == bundled
        for rel in built:
            assert (out / suite / rel).read_bytes() == (suite_path(suite) / rel).read_bytes(), rel


@pytest.mark.skipif(not (SHARED / "data" / "groundtruth").is_dir(), reason="shared data folder not present")
def test_bundled_csv_matches_the_raw_replay_pair(inference_perf):
    from servesim.validation import load_inference_perf_replay

    base = SHARED / "data" / "groundtruth" / "inference-perf-h100"
    exp_id = "20260217-170634-llama-2-7b-tp1-reasoning"
    raw = load_inference_perf_replay(base / "replay" / f"{exp_id}.json",
                                     profile=base / "experiments" / exp_id / "profile.yaml",
                                     resolved_config=base / "experiments" / exp_id / "results" / "config.yaml")
    bundled = next(e for e in inference_perf if e.name == "llama-2-7b-tp1-reasoning").runs[0]
    assert len(bundled.requests) == len(raw.requests) == 4800
    for a, b in zip(raw.measured, bundled.measured):
        assert (a.arrival_s, a.input_tokens, a.output_tokens, a.ok, a.stage) == \
               (b.arrival_s, b.input_tokens, b.output_tokens, b.ok, b.stage)
        assert a.recorded_input_tokens == b.recorded_input_tokens
        assert a.recorded_output_tokens == b.recorded_output_tokens
        assert (a.ttft_ms is None) == (b.ttft_ms is None)
        if a.ttft_ms is not None:
            assert abs(a.ttft_ms - b.ttft_ms) <= 5e-4 and abs(a.itl_ms - b.itl_ms) <= 1e-5
        assert abs(a.e2e_ms - b.e2e_ms) <= 5e-4


@pytest.fixture(scope="module")
def trainval():
    return load_suite("inference-perf-trainval")


def test_trainval(trainval):
    from servesim.workload import build_source

    assert len(trainval) == 12
    assert sorted({e.model for e in trainval}) == [
        "llama-2-7b-hf", "llama-3.1-70b-instruct", "llama-4-scout-17b-16e-instruct-fp8-dynamic",
        "mistral-nemo-instruct-2407", "qwen2.5-7b-instruct", "yi-34b"]
    by = {e.name.split("-")[0]: e for e in trainval}
    # replay config of id 60 (Llama-3.1-70B TP4): 8192 batched tokens, 30251 GPU / 6553 CPU blocks
    e60 = by["60"]
    assert (e60.tensor_parallel_size, e60.engine["max_num_batched_tokens"], e60.engine["num_gpu_blocks"],
            e60.engine["num_cpu_blocks"]) == (4, 8192, 30251, 6553)
    assert "num_cpu_blocks" not in e60.engine_kwargs()  # recorded, not modelled
    assert by["17"].engine["num_cpu_blocks"] == 0
    (run,) = e60.runs
    assert run.mode == "open" and run.requests == () and run.measured is None
    assert run.stage_names == ("stage0: 2.5 rps x 600 s", "stage1: 6 rps x 600 s")
    assert run.aggregates["ttft_mean_ms"] == pytest.approx(53.699620385088174)
    assert run.aggregates["stage1_e2e_p99_ms"] > run.aggregates["stage1_e2e_mean_ms"]
    ip = run.workload_spec.inference_perf
    assert (ip.shared_prefix.num_groups, ip.shared_prefix.num_prompts_per_group) == (10, 10)
    assert (ip.shared_prefix.system_prompt_len, ip.shared_prefix.question_len, ip.shared_prefix.output_len) == (100, 447, 248)
    # 67 (Llama-2-7B reasoning-lite): implied output tokens 1120 for 1448 sent -> its ITL is dropped
    assert "itl_mean_ms" not in by["67"].runs[0].aggregates and "itl_mean" in by["67"].runs[0].notes["dropped_metrics"]
    assert all("itl_mean_ms" in e.runs[0].aggregates for k, e in by.items() if k != "67")
    # single-stage runs carry whole-run aggregates only
    assert by["21"].runs[0].stage_names == (by["21"].runs[0].name,)
    # the generated workload: 2.5 rps x 600 s + 6 rps x 600 s -> about 5100 requests (the replay config's count)
    src = build_source(run.workload_spec)
    reqs = []
    while src.peek_arrival_s() is not None:
        reqs.append(src.pop())
    assert abs(len(reqs) - 5100) < 5 * math.sqrt(5100)
    assert {r.output_tokens for r in reqs} == {248}
    assert all(r.input_tokens > 547 and r.prefix_tokens == r.input_tokens for r in reqs)
    assert [r.prefix_group for r in reqs[:3]] == ["prompt-0", "prompt-1", "prompt-2"]
    assert reqs[100].input_tokens == reqs[0].input_tokens and reqs[100].prefix_group == "prompt-0"
