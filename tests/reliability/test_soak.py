"""Streaming mode (no per-request output) keeps memory bounded by the requests in flight: peak RSS after 60k
requests is the same as after 10k. (The 1,000,000-request soak is a manual measurement: see the reliability report.)"""

from __future__ import annotations

import subprocess
import sys

import pytest

SCRIPT = r"""
import resource
from servesim.simulation import simulate

class Const:
    name = "const"
    def step_time(self, plan):
        return 0.01
    def explain(self, plan):
        raise NotImplementedError

def peak_kib(n):
    wl = {"input_tokens": {"kind": "uniform", "min": 50, "max": 400}, "output_tokens": {"kind": "uniform", "min": 5, "max": 60},
          "prefix_tokens": 16, "arrival": {"process": "poisson", "rate": 20}, "num_requests": n}
    r = simulate(workload=wl, latency_model=Const(), keep_requests=False, seed=1)
    assert r.summary["completed"] == n and r.requests == []
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

print(peak_kib(10_000), peak_kib(60_000))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="ru_maxrss is KiB on Linux only")
def test_streaming_memory_does_not_grow_with_requests():
    r = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    small, large = (int(x) for x in r.stdout.split())
    assert large - small < 4 * 1024, f"peak RSS grew {large - small} KiB from 10k to 60k requests"
