"""--output-format vllm-bench: the keys, units and statistics of `vllm bench serve --save-result --save-detailed`."""

from __future__ import annotations

import json

import numpy as np
import pytest

from servesim.engine.request import RequestRecord
from servesim.metrics.vllm_bench import vllm_bench_result
from servesim.simulation import simulate

from tests.reliability._cli import run_cli


def _records() -> list[RequestRecord]:
    # Two completed requests with hand-set token times and one rejected (vLLM's 400: a failed output).
    a = RequestRecord(0, 0.0, 100, 3, first_token_s=0.1, finish_s=0.3, token_times_s=[0.1, 0.2, 0.3])
    b = RequestRecord(1, 0.5, 50, 2, first_token_s=0.8, finish_s=1.2, token_times_s=[0.8, 1.2])
    c = RequestRecord(2, 1.0, 9000, 10, rejected=True, reject_reason="max_model_len")
    return [a, b, c]


def test_hand_computed_keys_and_units():
    d = vllm_bench_result(_records(), duration_s=2.0, model_id="m", request_rate=1.5, percentiles=(50, 99))
    assert (d["completed"], d["failed"], d["num_prompts"]) == (2, 1, 3)
    assert d["total_input_tokens"] == 150 and d["total_output_tokens"] == 5  # completed only, as vllm counts
    assert d["request_throughput"] == 1.0 and d["output_throughput"] == 2.5 and d["total_token_throughput"] == 77.5
    assert d["input_lens"] == [100, 50, 9000] and d["output_lens"] == [3, 2, 0]
    assert d["ttfts"] == pytest.approx([0.1, 0.3, 0.0])  # seconds; a failed request's ttft is vllm's default 0.0
    assert d["itls"][0] == pytest.approx([0.1, 0.1]) and d["itls"][1] == pytest.approx([0.4]) and d["itls"][2] == []
    assert d["errors"] == ["", "", "max_model_len"]
    assert d["mean_ttft_ms"] == pytest.approx(200.0) and d["median_ttft_ms"] == pytest.approx(200.0)
    assert d["std_ttft_ms"] == pytest.approx(100.0)  # numpy's population std, as vllm uses
    assert d["p99_ttft_ms"] == pytest.approx(100 + 0.99 * 200)  # numpy linear interpolation
    assert d["mean_tpot_ms"] == pytest.approx((100 + 400) / 2)  # (e2e - ttft) / (N - 1): 0.2/2 and 0.4/1
    assert d["mean_itl_ms"] == pytest.approx(200.0) and d["p50_itl_ms"] == pytest.approx(100.0)  # pooled gaps
    assert d["mean_e2el_ms"] == pytest.approx(500.0)  # (0.3 + 0.7) / 2
    assert d["request_rate"] == 1.5 and d["burstiness"] == 1.0 and d["max_concurrency"] is None
    assert "generated_texts" not in d


def test_without_detailed_drops_the_lists():
    d = vllm_bench_result(_records(), duration_s=2.0, model_id="m", detailed=False)
    assert not {"input_lens", "output_lens", "ttfts", "itls", "errors"} & set(d)
    assert d["p99_itl_ms"] > 0 and d["request_rate"] == "inf"


def test_aggregates_agree_with_servesim_summary_of_the_same_run():
    r = simulate("llama-2-7b-hf", "H100", 1, latency_model="roofline-v2", record_token_times=True,
                 workload={"input_tokens": 300, "output_tokens": 40, "arrival": {"process": "poisson", "rate": 10}, "num_requests": 60})
    d = vllm_bench_result(r.records, duration_s=r.summary["duration_s"], model_id="m")
    s = r.summary
    assert d["mean_ttft_ms"] == pytest.approx(s["ttft_ms"]["mean"], rel=1e-12)
    assert d["mean_itl_ms"] == pytest.approx(s["itl_ms"]["mean"], rel=1e-12)
    assert d["mean_tpot_ms"] == pytest.approx(s["tpot_ms"]["mean"], rel=1e-12)
    assert d["mean_e2el_ms"] == pytest.approx(s["e2e_ms"]["mean"], rel=1e-12)
    assert d["request_throughput"] == pytest.approx(s["requests_per_s"], rel=1e-12)
    # per-request lists rebuild the aggregates (the reader's round trip): seconds -> ms
    assert d["mean_ttft_ms"] == pytest.approx(np.mean(d["ttfts"]) * 1000, rel=1e-12)
    assert d["p99_itl_ms"] == pytest.approx(np.percentile([g for x in d["itls"] for g in x], 99) * 1000, rel=1e-12)
    assert all(len(x) == n - 1 for x, n in zip(d["itls"], d["output_lens"]))


def test_cli_writes_vllm_bench_json(tmp_path, capsys):
    out = tmp_path / "vb.json"
    code, _, err = run_cli(["run", "--latency-model", "roofline-v2", "--concurrency", "4", "--prompt-tokens", "64",
                            "--output-tokens", "5", "--num-requests", "12", "--output", str(out), "--output-format", "vllm-bench"], capsys)
    assert code == 0, err
    d = json.loads(out.read_text())
    assert d["schema_version"] == "1.0"
    assert (d["request_rate"], d["max_concurrency"], d["burstiness"], d["completed"]) == ("inf", 4, 1.0, 12)
    assert len(d["ttfts"]) == 12 and all(len(x) == 4 for x in d["itls"])
