"""Wall time of a 64-point sweep on 1 and on 2 local workers (issue 7 target: 2 workers <= 0.6 x 1 worker).

    python benchmarks/sweep_bench.py [--requests 300]

Grid: tp {1, 2} x rate {2, 4, 8, 16} x max_num_seqs {32, 64, 128, 256} x output mean {64, 128}, on the
issue-7 length distributions; results go to a temporary folder and are checked equal between the runs.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=300)
    ap.add_argument("--output", type=Path, default=Path(__file__).with_name("sweep_results.json"))
    args = ap.parse_args()
    from servesim.sweep import parse_sweep, run_sweep

    spec = parse_sweep({
        "name": "bench64",
        "base": {
            "model": "llama-2-7b-hf",
            "workload": {
                "input_tokens": {"kind": "gaussian", "mean": 512, "stdev": 256, "min": 2, "max": 2048},
                "output_tokens": {"kind": "gaussian", "mean": 256, "stdev": 128, "min": 2, "max": 1024},
                "arrival": {"process": "poisson", "rate": 4}, "num_requests": args.requests,
            },
            "seed": 42,
        },
        "grid": {"tp": [1, 2], "rate": [2, 4, 8, 16], "engine.max_num_seqs": [32, 64, 128, 256], "workload.output_tokens.mean": [64, 128]},
    })
    times = {}
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for workers in (1, 2):
            t0 = time.perf_counter()
            out = run_sweep(spec, Path(tmp) / f"w{workers}.jsonl", workers=workers)
            times[workers] = time.perf_counter() - t0
            rows[workers] = {r["key"]: r["summary"] for r in out}
            print(f"{workers} worker(s): {len(out)} points in {times[workers]:.2f} s", flush=True)
    assert rows[1] == rows[2], "results differ between 1 and 2 workers"
    ratio = times[2] / times[1]
    print(f"ratio 2 workers / 1 worker = {ratio:.2f} (target <= 0.6)")
    args.output.write_text(json.dumps({"points": 64, "requests_per_point": args.requests,
                                       "wall_s": {str(k): round(v, 3) for k, v in times.items()}, "ratio": round(ratio, 3)}, indent=2) + "\n")


if __name__ == "__main__":
    main()
