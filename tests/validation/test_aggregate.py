"""aggregate loader on two real rows of the seed report's CSV and its workload reconstruction."""

from __future__ import annotations

import pytest

from servesim.validation import load_experiment
from servesim.validation.loaders.aggregate import load_aggregate

from gt_helpers import DATA, write_manifest


def _exp(tmp_path, row, **gt):
    (tmp_path / "m.csv").write_text((DATA / "seed13_two_rows.csv").read_text())
    (tmp_path / "w.yaml").write_text((DATA / "seed13_workload_reconstruction.yaml").read_text())
    spec = {"format": "aggregate", "path": "m.csv", "row": row, "workload_path": "w.yaml", **gt}
    write_manifest(tmp_path, spec)
    return load_experiment(tmp_path)


def test_codesweep_row(tmp_path):
    run = _exp(tmp_path, "jan30-llama2-7b-tp1-codesweep", num_requests=50).runs[0]
    assert (run.name, run.mode, run.concurrency) == ("synchronous", "closed", 1)
    assert run.requests == () and run.measured is None
    # gt_tpot_mean_ms is GuideLLM's E2E/N: loaded as e2e_per_token_mean_ms, never as ITL
    assert run.aggregates == {"ttft_mean_ms": 67.1, "e2e_mean_ms": 334.0, "e2e_per_token_mean_ms": 8.1}
    # the workload key comes from the row's `workload` column
    assert run.workload == {"prefix_tokens": 0, "prompt_tokens": 2048, "prompt_tokens_stdev": 1974,
                            "prompt_tokens_min": 2, "prompt_tokens_max": 3500, "output_tokens": 28,
                            "output_tokens_stdev": 60, "output_tokens_min": 6, "output_tokens_max": 200,
                            "num_requests": 50}
    pub = run.notes["published"]
    assert pub["h1_bw082_pred_e2e_ms"] == 275.0
    assert pub["h2b_SC_tpot_mape"] == pytest.approx(15.2)  # "15.2%" -> percent
    assert run.notes["row"]["hf_model"] == "meta-llama/Llama-2-7b-hf"
    assert run.measured_means() == run.aggregates


def test_summarization_row_with_inline_workload(tmp_path):
    wl = {"prompt_tokens": 4096, "output_tokens": 512, "num_requests": 50}
    run = _exp(tmp_path, "dec17-tp1-qwen7-summarization", workload=wl).runs[0]
    assert run.aggregates["ttft_mean_ms"] == 117.0 and run.aggregates["e2e_mean_ms"] == 3532.7
    assert run.workload == wl  # inline wins over workload_path


def test_runs_yaml_shape(tmp_path):
    (tmp_path / "a.yaml").write_text(
        "runs:\n- name: sync\n  aggregates: {ttft_mean_ms: 13.9, e2e_mean_ms: 1292.6}\n"
        "  workload: {prompt_tokens: 70, output_tokens: 215, prefix_tokens: 284, num_requests: 50}\n"
        "- name: rate-2\n  mode: open\n  aggregates: {ttft_mean_ms: 20}\n")
    runs = load_aggregate(tmp_path / "a.yaml")
    assert [(r.name, r.mode, r.concurrency) for r in runs] == [("sync", "closed", 1), ("rate-2", "open", None)]
    assert runs[0].workload["prefix_tokens"] == 284
