"""Round trip: a servesim run, written in vllm bench serve's --save-detailed layout, validates against itself
at ~0 % error (the importer reads send times, lengths, TTFT and E2E = ttft + Σ itls exactly as written)."""

from __future__ import annotations

import json

from tests.reliability._cli import run_cli



def _validate_mape(result, tmp_path, capsys, *flags: str) -> dict:
    """`servesim validate RESULT --model llama-2-7b-hf --hardware H100 [flags]`: its MAPE per metric (exit 0 asserted)."""
    report = tmp_path / "report.json"
    code, _, err = run_cli(["validate", str(result), "--model", "llama-2-7b-hf", "--hardware", "H100", "-o", str(report),
                            *flags], capsys)
    assert code == 0, err
    return json.loads(report.read_text())["mape"]

def test_servesim_run_as_vllm_bench_validates_to_zero_error(tmp_path, capsys):
    run = tmp_path / "run.json"
    code, _, err = run_cli(["run", "--num-requests", "40", "--rate", "4", "--prompt-tokens", "256",
                            "--output-tokens", "32", "--seed", "1", "-o", str(run)], capsys)
    assert code == 0, err
    recs = json.loads(run.read_text())["requests"]
    bench = {"backend": "vllm", "request_rate": 4.0, "burstiness": 1.0, "duration": 20.0, "completed": len(recs),
             "failed": 0, "total_input_tokens": sum(r["input_tokens"] for r in recs),
             "total_output_tokens": sum(r["output_tokens"] for r in recs),
             "input_lens": [r["input_tokens"] for r in recs], "output_lens": [r["output_tokens"] for r in recs],
             "ttfts": [r["ttft_ms"] / 1e3 for r in recs],
             "itls": [[(r["e2e_ms"] - r["ttft_ms"]) / 1e3 / (r["output_tokens"] - 1)] * (r["output_tokens"] - 1) for r in recs],
             "start_times": [50.0 + r["arrival_s"] for r in recs], "errors": ["" for _ in recs]}
    f = tmp_path / "bench.json"
    f.write_text(json.dumps(bench))
    mape = _validate_mape(f, tmp_path, capsys)
    assert mape and all(abs(v) < 0.01 for v in mape.values()), mape


def test_run_output_format_vllm_bench_validates_against_itself(tmp_path, capsys):
    """Issue 16 done-when: `run --output-format vllm-bench` read back by `validate FILE` gives ~0 % error."""
    f = tmp_path / "vb.json"
    code, _, err = run_cli(["run", "--num-requests", "60", "--rate", "4", "--prompt-tokens", "256", "--output-tokens", "32",
                            "--seed", "3", "-o", str(f), "--output-format", "vllm-bench"], capsys)
    assert code == 0, err
    doc = json.loads(f.read_text())
    assert len(doc["start_times"]) == len(doc["ttfts"]) == 60 and doc["schema_version"]
    mape = _validate_mape(f, tmp_path, capsys)
    assert mape and all(abs(v) < 0.01 for v in mape.values()), mape


def test_validate_file_takes_engine_flags(tmp_path, capsys):
    """validate FILE passes its engine flags to the replay: speculative decoding at acceptance 0.8 moves ITL off the
    run that wrote the file (which had none), and a bad engine value is refused in one line."""
    f = tmp_path / "vb.json"
    code, _, err = run_cli(["run", "--num-requests", "30", "--rate", "2", "--prompt-tokens", "256", "--output-tokens", "32",
                            "--seed", "3", "-o", str(f), "--output-format", "vllm-bench"], capsys)
    assert code == 0, err
    mape = _validate_mape(f, tmp_path, capsys, "--speculative-config", '{"method": "ngram", "num_speculative_tokens": 3}',
                          "--speculative-acceptance", "0.8")
    assert mape["itl_mean"] > 0.3  # ~2.9x fewer steps per token: ITL far below
    code, _, err = run_cli(["validate", str(f), "--model", "llama-2-7b-hf", "--hardware", "H100",
                            "--gpu-memory-utilization", "1.5"], capsys)
    assert code == 2 and "gpu_memory_utilization=1.5" in err
