"""Same inputs and seed => byte-identical JSON, across runs and across processes, whatever PYTHONHASHSEED is.

Each workload is run by two `servesim run ... -o X.json` subprocesses with different hash seeds (prefix-group
names are strings, so any set/dict iteration over them that leaked into results would show up here).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from servesim.simulation import simulate

SHARED_PREFIX_YAML = """\
shared_prefix: {num_groups: 5, users_per_group: 4, system_prompt_len: 300, question_len: 60, output_len: 40}
arrival: {process: poisson, rate: 30}
num_requests: 120
seed: 11
"""

TRACE_CSV = "arrival_time_s,input_tokens,output_tokens,prefix_group,prefix_tokens\n" + "".join(
    f"{0.013 * i:.3f},{300 + (37 * i) % 300},{5 + (11 * i) % 40},{['sys-a', 'sys-b', 'sys-c', ''][i % 4]},{[128, 256, 64, 0][i % 4]}\n"
    for i in range(120)
)

WORKLOADS = {
    "poisson-flags": ["--rate", "25", "--num-requests", "150", "--prompt-tokens", "400", "--prompt-tokens-stdev", "150",
                      "--output-tokens", "60", "--output-tokens-stdev", "30", "--prefix-tokens", "64", "--seed", "3"],
    "prefix-groups-yaml": ["--workload", "wl.yaml", "--latency-model", "roofline-v2", "--num-gpu-blocks-override", "600"],
    "trace-csv": ["--trace", "trace.csv", "--latency-model", "roofline-v2-corrected", "--max-num-seqs", "16"],
}


def _run(folder: Path, args: list[str], out: str, hashseed: str) -> bytes:
    env = {**os.environ, "PYTHONHASHSEED": hashseed}
    r = subprocess.run([sys.executable, "-m", "servesim", "run", *args, "-o", out], cwd=folder, env=env,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return (folder / out).read_bytes()


@pytest.mark.parametrize("name", sorted(WORKLOADS))
def test_two_processes_with_different_hash_seeds_write_identical_bytes(name, tmp_path):
    (tmp_path / "wl.yaml").write_text(SHARED_PREFIX_YAML)
    (tmp_path / "trace.csv").write_text(TRACE_CSV)
    a = _run(tmp_path, WORKLOADS[name], "a.json", "0")
    b = _run(tmp_path, WORKLOADS[name], "b.json", "12345")
    assert a == b
    doc = json.loads(a)
    assert doc["summary"]["completed"] > 100 and len(doc["requests"]) == doc["summary"]["completed"] + doc["summary"]["rejected"]
    if name != "poisson-flags":
        assert doc["summary"]["prefix_cache_hit_rate"] > 0  # the prefix groups were really exercised


def test_same_process_repeat_is_identical_and_seed_matters():
    wl = {"input_tokens": {"kind": "lognormal", "mean": 300, "stdev": 200, "max": 2000}, "output_tokens": 30,
          "arrival": {"process": "gamma", "rate": 20, "cv": 2}, "num_requests": 80}
    a = json.dumps(simulate(workload=wl, seed=5).to_dict())
    b = json.dumps(simulate(workload=wl, seed=5).to_dict())
    c = json.dumps(simulate(workload=wl, seed=6).to_dict())
    assert a == b and a != c
