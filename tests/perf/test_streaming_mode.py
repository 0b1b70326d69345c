"""simulate(keep_requests=False): fixed-memory streaming summary vs the exact one, and laziness of the inputs.

Documented tolerance (simulation.py, metrics/streaming.py): counts, token totals, throughputs exact;
means equal up to float summation order (1e-9 relative); percentiles within 0.5 % relative error.
Without token times the pooled ITL uses each request's TPOT for its N - 1 gaps: the ITL *mean* is
still exact (the gaps of a request sum to last token - first token), ITL percentiles are not comparable.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from servesim.simulation import simulate
from servesim.workload import build_source, parse_workload
from servesim.workload.spec import MAX_REQUESTS

REL = 0.005
WL = {"input_tokens": {"kind": "gaussian", "mean": 400, "stdev": 200, "min": 2, "max": 1500},
      "output_tokens": {"kind": "gaussian", "mean": 80, "stdev": 40, "min": 1, "max": 300},
      "arrival": {"process": "poisson", "rate": 25}, "num_requests": 600}
DIST_KEYS = ("ttft_ms", "itl_ms", "tpot_ms", "e2e_ms", "queue_ms")


def _same_verdict(a, b, where):
    """Equal verdict dicts: every non-float leaf identical, every float leaf within 1e-9 relative."""
    if isinstance(b, dict):
        assert isinstance(a, dict) and list(a) == list(b), where
        for k in b:
            _same_verdict(a[k], b[k], f"{where}.{k}")
    elif isinstance(b, (list, tuple)):
        assert isinstance(a, (list, tuple)) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _same_verdict(x, y, f"{where}[{i}]")
    elif isinstance(b, float):
        assert a == pytest.approx(b, rel=1e-9), where
    else:
        assert a == b, where


def check(exact, approx, *, itl_percentiles=True):
    assert list(approx) == list(exact)
    for key, value in exact.items():
        if key in ("saturation", "prediction_intervals"):  # same records folded the same way: the same verdicts,
            _same_verdict(approx[key], value, key)  # numbers from the (exact to 1e-9) means to 1e-9
        elif isinstance(value, dict):
            assert approx[key]["mean"] == pytest.approx(value["mean"], rel=1e-9), key
            if key == "itl_ms" and not itl_percentiles:
                continue
            for p in ("p50", "p90", "p95", "p99"):
                assert abs(approx[key][p] - value[p]) <= REL * abs(value[p]) * (1 + 1e-9), (key, p)
        else:
            assert approx[key] == pytest.approx(value, rel=1e-12), key


def test_streaming_matches_exact_with_token_times():
    exact = simulate(workload=WL, seed=4)
    stream = simulate(workload=WL, seed=4, keep_requests=False, record_token_times=True)
    assert stream.requests == [] and stream.records == [] and stream.stats.records == []
    assert stream.config["metrics"] == {"summary": "streaming", "record_token_times": True, "percentile_rel_error": REL}
    check(exact.summary, stream.summary)


def test_streaming_without_token_times_keeps_itl_mean_exact():
    exact = simulate(workload=WL, seed=4)
    stream = simulate(workload=WL, seed=4, keep_requests=False)
    assert stream.config["metrics"]["record_token_times"] is False
    check(exact.summary, stream.summary, itl_percentiles=False)


def test_streaming_per_stage_summaries():
    wl = {**WL, "num_requests": None, "arrival": {"process": "poisson", "stages": [{"rate": 5, "duration_s": 4}, {"rate": 30, "duration_s": 4}]}}
    wl = {k: v for k, v in wl.items() if v is not None}
    exact = simulate(workload=wl, seed=1)
    stream = simulate(workload=wl, seed=1, keep_requests=False, record_token_times=True)
    assert list(stream.stages) == list(exact.stages) == ["0", "1"]
    for stage in exact.stages:
        check(exact.stages[stage], stream.stages[stage])


def test_sources_are_lazy():
    # A workload of MAX_REQUESTS (10**7) requests is not materialised: building it and drawing a few requests is instant.
    spec = parse_workload({**WL, "num_requests": MAX_REQUESTS})
    t0 = time.perf_counter()
    src = build_source(spec, 0)
    for _ in range(3000):
        src.pop()
    assert time.perf_counter() - t0 < 2.0


def test_cli_run_streams_unless_per_request_output(tmp_path):
    args = [sys.executable, "-m", "servesim", "run", "--num-requests", "200", "--rate", "20", "--seed", "3", "--json"]
    stream = json.loads(subprocess.run(args, capture_output=True, text=True, check=True).stdout)
    out = tmp_path / "r.json"
    subprocess.run([*args, "--output", str(out)], capture_output=True, text=True, check=True)
    doc = json.loads(out.read_text())
    assert doc["config"]["metrics"]["summary"] == "exact" and len(doc["requests"]) == 200
    # --json prints the summary as its own document, stamped with schema_version (docs/FILES.md); the file nests it
    assert stream.pop("schema_version") == doc["schema_version"] == "1.0"
    check(doc["summary"], stream, itl_percentiles=False)
    samples = json.loads(subprocess.run([*args, "--itl-samples"], capture_output=True, text=True, check=True).stdout)
    assert samples.pop("schema_version") == "1.0"
    check(doc["summary"], samples)
