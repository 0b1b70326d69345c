"""Readers of other tools' native files, on fixtures that follow each tool's schema:
vllm_bench_*.json: vllm/benchmarks/serve.py (benchmark() result + main() result_json; --save-detailed lists);
ip/per_request_lifecycle_metrics.json: kubernetes-sigs/inference-perf inference_perf/reportgen/base.py;
vLLM logs: the real jan20 server log in ../shared (vLLM 0.11.0)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from servesim.errors import ServesimError, WorkloadError
from servesim.workload.formats import read_inference_perf_lifecycle, read_vllm_bench, read_vllm_log
from servesim.workload.trace_formats import FORMATS as TRACE_FORMATS, detect_format, read_trace_file

DATA = Path(__file__).parent / "data_formats"
JAN20_LOG = Path(__file__).resolve().parents[3] / "shared/data/groundtruth/guidellm-h100/jan20-prefill-llama7b-tp1-1/vllm.log"


def test_vllm_bench_detailed_per_request():
    run = read_vllm_bench(DATA / "vllm_bench_detailed.json")
    assert [r.arrival_s for r in run.requests] == [0.0, 0.5, 1.0, 1.5]  # start_times − first
    assert [r.ok for r in run.requests] == [True, True, True, False]  # errors[3] = "Bad Request"
    assert run.requests[0].ttft_ms == pytest.approx(20.0)
    assert run.requests[0].e2e_ms == pytest.approx(20.0 + 30.0)  # ttft + Σ itls = 0.02 + 3 × 0.01 s
    assert run.aggregates["mean_ttft_ms"] == 30.0
    assert run.notes == ()


def test_vllm_bench_summary_rebuilt_and_said_so():
    run = read_vllm_bench(DATA / "vllm_bench_summary.json", seed=3)
    assert len(run.requests) == 4  # completed 3 + failed 1
    assert {(r.input_tokens, r.output_tokens) for r in run.requests} == {(100, 4)}  # 300/3, 12/3
    assert "without --save-detailed" in run.notes[0]
    gaps = [b.arrival_s - a.arrival_s for a, b in zip(run.requests, run.requests[1:])]
    assert all(g > 0 for g in gaps)
    assert read_vllm_bench(DATA / "vllm_bench_summary.json", seed=3) == run  # deterministic for a seed


def test_vllm_bench_rate_inf_with_cap_is_closed_loop(tmp_path):
    doc = json.loads((DATA / "vllm_bench_detailed.json").read_text())
    doc.update(request_rate="inf", max_concurrency=2)
    p = tmp_path / "r.json"
    p.write_text(json.dumps(doc))
    run = read_vllm_bench(p)
    assert (run.mode, run.concurrency) == ("closed", 2)
    assert [s.client for s in run.specs()] == [0, 1, 0, 1]


@pytest.mark.parametrize("change, message", [
    ({"completed": -1}, "field completed=-1"),
    ({"request_rate": "fast"}, "request_rate='fast'"),
    ({"ttfts": [0.1]}, "per-request lists differ in length"),
])
def test_vllm_bench_bad_fields_name_file_and_field(tmp_path, change, message):
    doc = json.loads((DATA / "vllm_bench_detailed.json").read_text())
    doc.update(change)
    p = tmp_path / "bad.json"
    p.write_text(json.dumps(doc))
    with pytest.raises(WorkloadError) as exc:
        read_vllm_bench(p)
    assert str(p) in str(exc.value) and message in str(exc.value) and "\n" not in str(exc.value)


def test_vllm_bench_missing_key(tmp_path):
    doc = json.loads((DATA / "vllm_bench_detailed.json").read_text())
    del doc["duration"]
    p = tmp_path / "bad.json"
    p.write_text(json.dumps(doc))
    with pytest.raises(WorkloadError, match=r"bad.json: vllm-bench field duration is missing"):
        read_vllm_bench(p)


def test_inference_perf_lifecycle_with_config_stages():
    run = read_inference_perf_lifecycle(DATA / "ip/per_request_lifecycle_metrics.json")
    assert [r.arrival_s for r in run.requests] == [0.0, 1.0, 3.0]
    assert [r.stage for r in run.requests] == [0, 0, 1]  # stages of 2 s back to back (config.yaml)
    assert run.stage_names == ("stage0", "stage1")
    assert run.requests[0].ttft_ms == pytest.approx(100.0)  # first output_token_times − start_time
    assert run.requests[1].e2e_ms == pytest.approx(800.0)
    assert not run.requests[2].ok  # error set


def test_inference_perf_bad_record(tmp_path):
    p = tmp_path / "per_request_lifecycle_metrics.json"
    p.write_text(json.dumps([{"start_time": "soon", "end_time": 1.0}]))
    with pytest.raises(WorkloadError, match=r"inference-perf field records\[0\]\.start_time='soon'"):
        read_inference_perf_lifecycle(p)


@pytest.mark.skipif(not JAN20_LOG.is_file(), reason="shared data not present")
def test_vllm_log_real_jan20():
    log = read_vllm_log(JAN20_LOG)
    assert log.engine["num_gpu_blocks_override"] == 2537  # 40,592 tokens / 16
    assert log.engine["max_num_seqs"] == 256 and log.engine["max_num_batched_tokens"] == 4096
    assert log.engine["max_model_len"] == 4096 and log.engine["enable_prefix_caching"] is True
    assert (log.tensor_parallel_size, log.version) == (1, "0.11.0")


def test_vllm_log_v0_blocks_and_nothing(tmp_path):
    p = tmp_path / "v0.log"
    p.write_text("INFO 01-01 executor_base.py:113] # GPU blocks: 1234, # CPU blocks: 512\n")
    assert read_vllm_log(p).engine == {"num_gpu_blocks_override": 1234}
    q = tmp_path / "empty.log"
    q.write_text("hello\n")
    with pytest.raises(WorkloadError, match="no vLLM start-up lines"):
        read_vllm_log(q)


def test_trace_table_and_detection(tmp_path):
    assert {"servesim", "vllm-bench", "inference-perf"} <= set(TRACE_FORMATS)
    assert detect_format(DATA / "vllm_bench_detailed.json") == "vllm-bench"
    assert detect_format(DATA / "ip/per_request_lifecycle_metrics.json") == "inference-perf"
    gz = tmp_path / "r.json.gz"
    gz.write_bytes(gzip.compress((DATA / "vllm_bench_detailed.json").read_bytes()))
    assert detect_format(gz) == "vllm-bench"
    trace = read_trace_file(gz)
    assert [s.input_tokens for s in trace.specs] == [100, 100, 100, 50]
    with pytest.raises(ServesimError, match="--trace-format 'nope'"):
        read_trace_file(gz, "nope")


def test_closed_loop_vllm_bench_trace_replays_through_clients(tmp_path):
    from servesim.workload.sources import ClosedLoopListSource
    from servesim.workload.spec import build_source, workload_from_flags

    doc = json.loads((DATA / "vllm_bench_detailed.json").read_text())
    doc.update(request_rate="inf", max_concurrency=2)
    p = tmp_path / "r.json"
    p.write_text(json.dumps(doc))
    src = build_source(workload_from_flags(trace=str(p), trace_format="vllm-bench"))
    assert isinstance(src, ClosedLoopListSource)


GUIDELLM_EXCERPT = Path(__file__).resolve().parents[1] / "validation/data/guidellm_excerpt.json"
JAN20 = JAN20_LOG.with_name("guidellm-results.json")


def test_guidellm_sample_refused_as_trace():
    assert detect_format(GUIDELLM_EXCERPT) == "guidellm"
    with pytest.raises(WorkloadError, match=r"benchmarks\[0\]\.requests holds 3 of the 40 requests sent"):
        read_trace_file(GUIDELLM_EXCERPT)


@pytest.mark.skipif(not JAN20.is_file(), reason="shared data not present")
def test_guidellm_real_sweep_as_trace_stages():
    trace = read_trace_file(JAN20)
    assert len(trace.specs) == 200  # 5 benchmarks × 40 requests, none sampled
    assert sorted({s.stage for s in trace.specs}) == [0, 1, 2, 3, 4]
    arrivals = [s.arrival_s for s in trace.specs]
    assert arrivals == sorted(arrivals) and arrivals[0] >= 0
