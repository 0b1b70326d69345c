"""Cost of the cluster event loop: wall/CPU time of `servesim run --instances N` at N x the issue-7 rate.

One subprocess per point (CPU time = that process's user + system, read with RUSAGE_CHILDREN in a fresh
wrapper, as run_benchmarks.py). Linear cost means N instances serving N x the requests at N x the rate take
about N x the CPU time of one instance (engine steps grow N x; the loop adds a heap push/pop per step and
per arrival). Results go to benchmarks/cluster_results.json; docs/PERFORMANCE.md discusses them.

    python benchmarks/cluster_bench.py                          # 1 and 4 instances x 25k requests each
    python benchmarks/cluster_bench.py --instances 8 --per-instance 100000   # the 8 x 100k = 800k entry
    python benchmarks/cluster_bench.py --constant-lengths       # identical requests: per-instance work identical
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from run_benchmarks import SCENARIO, _child  # noqa: E402  (the issue-7 scenario and the one-point runner)

BASE_RATE = 20.0  # req/s per instance, the issue-7 scenario's


def point(n_inst: int, per_instance: int, router: str, model: str, constant: bool = False) -> dict:
    """One run of n_inst instances at n_inst x BASE_RATE with n_inst x per_instance requests."""
    argv = [a for a in SCENARIO]
    if constant:  # every request alike: each instance gets exactly one instance's work (the 4x = 1x test's setting)
        for flag in ("--prompt-tokens-stdev", "--output-tokens-stdev"):  # stdev 0 and min == max == mean:
            argv[argv.index(flag) + 1] = "0"                                # constant (min < max would be uniform)
        for flag, v in (("--prompt-tokens-min", "512"), ("--prompt-tokens-max", "512"),
                        ("--output-tokens-min", "256"), ("--output-tokens-max", "256")):
            argv[argv.index(flag) + 1] = v
    argv[argv.index("--rate") + 1] = str(BASE_RATE * n_inst)
    argv += ["--num-requests", str(per_instance * n_inst), "--latency-model", model]
    if n_inst > 1:
        argv += ["--instances", str(n_inst), "--router", router]
    proc = subprocess.run([sys.executable, __file__, "--child", "--", *argv], capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(proc.stderr.strip() or proc.stdout.strip())
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    s = res["summary"]
    return {"lengths": "constant" if constant else "gaussian", "instances": n_inst, "router": router if n_inst > 1 else None, "latency_model": model,
            "num_requests": per_instance * n_inst, "wall_s": round(res["wall_s"], 2), "cpu_s": round(res["cpu_s"], 2),
            "engine_steps": s["engine_steps"], "completed": s["completed"],
            "peak_rss_mb": round(res["maxrss_bytes"] / 1e6, 1), "ttft_p99_ms": s["ttft_ms"]["p99"],
            "itl_mean_ms": s["itl_ms"]["mean"]}


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        _child(sys.argv[3:] if sys.argv[2:3] == ["--"] else sys.argv[2:])
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--instances", default="1,4", help="comma list of instance counts (default 1,4)")
    ap.add_argument("--per-instance", type=int, default=25_000, help="requests per instance (default 25,000)")
    ap.add_argument("--router", default="round-robin")
    ap.add_argument("--model", default="calibrated")
    ap.add_argument("--constant-lengths", action="store_true", help="512-token prompts and 256-token outputs, no spread")
    ap.add_argument("--repeat", type=int, default=1, help="interleaved repetitions (the machine may be shared)")
    ap.add_argument("--output", type=Path, default=HERE / "cluster_results.json")
    args = ap.parse_args()
    rows = []
    for rep in range(args.repeat):
        for n in [int(x) for x in args.instances.split(",")]:
            row = point(n, args.per_instance, args.router, args.model, args.constant_lengths) | {"repeat": rep}
            rows.append(row)
            print(json.dumps(row), flush=True)
    old = json.loads(args.output.read_text()) if args.output.exists() else {"results": []}
    doc = {"machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()},
           "results": old["results"] + rows}
    args.output.write_text(json.dumps(doc, indent=2) + "\n")


if __name__ == "__main__":
    main()
