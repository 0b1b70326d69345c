"""Wall and CPU time, simulated requests/s, engine steps/s and peak RSS of `servesim run` on the issue-7 scenario.

Plain timer, one subprocess per point (so peak RSS and CPU time are that process's: resource.getrusage(
RUSAGE_CHILDREN) is read after each child and only grows, hence one fresh `python benchmarks/run_benchmarks.py
--child` wrapper per point). Wall time includes start-up (imports); CPU time (user + system) is reported too
because it moves less than wall time when other jobs share the machine. Not part of the test suite; results
go to benchmarks/results.json and a Markdown table (docs/PERFORMANCE.md discusses them).

    python benchmarks/run_benchmarks.py                      # 10k and 100k, calibrated and roofline-v2
    python benchmarks/run_benchmarks.py --sizes 10k,100k,1m  # add 1M
    python benchmarks/run_benchmarks.py --models calibrated  # one latency model
    python benchmarks/run_benchmarks.py --label before --pythonpath /tmp/baseline/src

Scenario (issue 7): Llama-2-7B / H100 / TP1, Gaussian input 512±256 in [2, 2048], output 256±128 in
[2, 1024], constant 20 req/s, seed 42.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCENARIO = [
    "--rate", "20", "--arrival", "constant",
    "--prompt-tokens", "512", "--prompt-tokens-stdev", "256", "--prompt-tokens-min", "2", "--prompt-tokens-max", "2048",
    "--output-tokens", "256", "--output-tokens-stdev", "128", "--output-tokens-min", "2", "--output-tokens-max", "1024",
    "--seed", "42",
]
SIZES = {"1k": 1_000, "10k": 10_000, "100k": 100_000, "1m": 1_000_000}


def _child(argv: list[str]) -> None:
    """Run one `servesim run` in a grandchild and print {wall_s, maxrss_bytes, summary} as JSON."""
    cmd = [sys.executable, "-m", "servesim", "run", *argv, "--json"]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"benchmark point failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)  # Linux ru_maxrss: KiB
    print(json.dumps({"wall_s": wall, "cpu_s": ru.ru_utime + ru.ru_stime, "maxrss_bytes": ru.ru_maxrss * 1024,
                      "summary": json.loads(proc.stdout)}))


def run_point(n: int, model: str, extra: list[str], pythonpath: str | None) -> dict:
    env = dict(os.environ)
    if pythonpath:
        env["PYTHONPATH"] = pythonpath + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    argv = [*SCENARIO, "--num-requests", str(n), "--latency-model", model, *extra]
    proc = subprocess.run([sys.executable, __file__, "--child", "--", *argv], capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise SystemExit(proc.stderr.strip() or proc.stdout.strip())
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    s = res["summary"]
    return {
        "latency_model": model,
        "num_requests": n,
        "wall_s": round(res["wall_s"], 3),
        "cpu_s": round(res["cpu_s"], 3),  # user + system CPU of the run: steadier than wall on a shared machine
        "requests_per_s": round(n / res["wall_s"], 1),
        "engine_steps": s["engine_steps"],
        "steps_per_s": round(s["engine_steps"] / res["wall_s"], 1),
        "peak_rss_mb": round(res["maxrss_bytes"] / 1e6, 1),
        "completed": s["completed"],
        "ttft_p99_ms": s["ttft_ms"]["p99"],
        "itl_mean_ms": s["itl_ms"]["mean"],
        "args": argv,
    }


def markdown(rows: list[dict]) -> str:
    lines = [
        "| label | latency model | requests | wall (s) | CPU (s) | simulated req/s | engine steps | steps/s | µs/step | peak RSS (MB) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        cpu = f"{r['cpu_s']:.2f}" if "cpu_s" in r else ""
        lines.append(
            f"| {r.get('label', '')} | {r.get('latency_model', 'roofline-v2')} | {r['num_requests']:,} | {r['wall_s']:.2f} | {cpu} | "
            f"{r['requests_per_s']:,.0f} | {r['engine_steps']:,} | {r['steps_per_s']:,.0f} | "
            f"{1e6 / r['steps_per_s']:,.0f} | {r['peak_rss_mb']:,.0f} |"
        )
    return "\n".join(lines)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        _child(sys.argv[3:] if sys.argv[2:3] == ["--"] else sys.argv[2:])
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="10k,100k", help="comma list of 1k,10k,100k,1m (default 10k,100k)")
    ap.add_argument("--models", default="calibrated,roofline-v2", help="comma list of --latency-model values")
    ap.add_argument("--label", default="current", help="label stored with each row (e.g. before/after)")
    ap.add_argument("--pythonpath", default=None, help="import servesim from this folder instead (e.g. a baseline copy)")
    ap.add_argument("--output", type=Path, default=HERE / "results.json")
    ap.add_argument("--extra", default="", help="extra `servesim run` arguments, space separated")
    args = ap.parse_args()
    rows = []
    for model in args.models.split(","):
        for size in args.sizes.split(","):
            n = SIZES[size.strip().lower()]
            row = run_point(n, model.strip(), args.extra.split(), args.pythonpath)
            row["label"] = args.label
            rows.append(row)
            print(markdown([row]).splitlines()[-1], flush=True)
    old = json.loads(args.output.read_text()) if args.output.exists() else {"machine": {}, "results": []}
    done = {(x["latency_model"], x["num_requests"]) for x in rows}
    keep = [r for r in old["results"]
            if not (r.get("label") == args.label and (r.get("latency_model", "roofline-v2"), r["num_requests"]) in done)]
    results = sorted(keep + rows, key=lambda r: (r.get("latency_model", "roofline-v2"), r.get("label", ""), r["num_requests"]))
    doc = {"machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()},
           **({"notes": old["notes"]} if "notes" in old else {}), "results": results}
    args.output.write_text(json.dumps(doc, indent=2) + "\n")
    md = args.output.with_suffix(".md")
    md.write_text("# servesim benchmark (issue-7 scenario)\n\n" + markdown(results) + "\n")
    print(markdown(results))


if __name__ == "__main__":
    main()
