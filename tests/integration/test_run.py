"""`servesim run` / simulate() end to end: outputs, determinism, replay, errors."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from servesim import simulate
from servesim.errors import ConfigError

EXCERPT = Path(__file__).parents[1] / "workload" / "data" / "inference_perf_replay_excerpt.json"


def cli(*args):
    return subprocess.run([sys.executable, "-m", "servesim", *args], capture_output=True, text=True)


def test_summary_and_request_fields():
    r = simulate(workload={"input_tokens": 300, "output_tokens": 20, "arrival": {"process": "constant", "rate": 2.0}, "num_requests": 30}, seed=1)
    s = r.summary
    stats = {"mean", "p50", "p90", "p95", "p99"}
    for key in ("tpot_ms", "queue_ms"):
        assert set(s[key]) == stats
    for key in ("ttft_ms", "itl_ms", "e2e_ms"):  # the shipped calibration carries 80 % prediction intervals
        assert set(s[key]) == stats | {"mean_interval", "p90_interval", "p99_interval"}
        for stat in ("mean", "p90", "p99"):
            lo, hi = s[key][f"{stat}_interval"]
            assert 0 < lo < s[key][stat] < hi
    assert s["prediction_intervals"]["available"] and s["prediction_intervals"]["level"] == 0.8
    for key in ("completed", "rejected", "duration_s", "requests_per_s", "output_tokens_per_s", "total_tokens_per_s",
                "preemptions", "kv_cache_peak_usage", "prefix_cache_hit_rate"):
        assert key in s
    assert s["completed"] == 30 and s["rejected"] == 0
    req = r.requests[0]
    assert {"id", "arrival_s", "input_tokens", "output_tokens", "cached_tokens", "ttft_ms", "tpot_ms", "e2e_ms", "queue_ms", "preemptions"} <= set(req)
    # E2E = TTFT + (N − 1) × TPOT for every request, by definition
    for q in r.requests:
        assert q["e2e_ms"] == pytest.approx(q["ttft_ms"] + (q["output_tokens"] - 1) * q["tpot_ms"])


def test_same_seed_byte_identical_json_and_different_seed_differs(tmp_path):
    args = ["run", "--num-requests", "40", "--rate", "5", "--json"]
    a, b, c = tmp_path / "a.json", tmp_path / "b.json", tmp_path / "c.json"
    assert cli(*args, "--seed", "7", "-o", str(a)).returncode == 0
    assert cli(*args, "--seed", "7", "-o", str(b)).returncode == 0
    assert cli(*args, "--seed", "8", "-o", str(c)).returncode == 0
    assert a.read_bytes() == b.read_bytes()
    assert a.read_bytes() != c.read_bytes()
    doc = json.loads(a.read_text())
    assert set(doc) >= {"config", "summary", "requests"} and len(doc["requests"]) == 40
    assert doc["config"]["seed"] == 7 and doc["config"]["workload"]["arrival"]["rate"] == 5.0


def test_synchronous_run_has_no_queueing():
    r = simulate(workload={"input_tokens": 200, "output_tokens": 10, "arrival": "synchronous", "num_requests": 12},
                 latency_model="roofline-v2")  # no front-end stage: queue is pure engine queueing
    recs = sorted(r.records, key=lambda x: x.arrival_s)
    for prev, nxt in zip(recs, recs[1:]):
        assert nxt.arrival_s >= prev.finish_s  # closed loop, one in flight
    assert r.summary["queue_ms"]["max" if "max" in r.summary["queue_ms"] else "p99"] == pytest.approx(0.0)


def test_replay_excerpt_end_to_end(tmp_path):
    out = cli("run", "--trace", str(EXCERPT), "--max-num-seqs", "128", "--max-num-batched-tokens", "2048",
              "--num-gpu-blocks-override", "7462", "--max-model-len", "4096", "--requests-csv", str(tmp_path / "r.csv"))
    assert out.returncode == 0, out.stderr
    assert "completed 50" in out.stdout or "completed 4" in out.stdout
    assert (tmp_path / "r.csv").read_text().startswith("id,arrival_s,")


def test_model_that_does_not_fit():
    with pytest.raises(ConfigError, match="does not fit on H100-SXM at TP1: weights need 128.5 GiB"):
        simulate("llama-2-70b-hf", workload={"input_tokens": 10, "output_tokens": 2, "num_requests": 1, "arrival": "synchronous"})


def test_bad_run_flags_exit_2_and_no_output(tmp_path):
    out_file = tmp_path / "never.json"
    for args in (["--rate", "-1"], ["--block-size", "0"], ["--prompt-tokens", "10", "--prompt-tokens-min", "20", "--prompt-tokens-max", "5"],
                 ["--trace", str(tmp_path / "missing.csv")], ["--model", "llama-2-70b-hf"], ["--output", str(tmp_path / "no" / "x.json")]):
        r = cli("run", "--num-requests", "5", *args, "-o", str(out_file)) if "--output" not in args else cli("run", "--num-requests", "5", *args)
        assert r.returncode == 2, (args, r.stdout, r.stderr)
        assert "Traceback" not in r.stderr and r.stderr.strip().count("\n") == 0, r.stderr
    assert not out_file.exists()
