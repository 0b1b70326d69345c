#!/usr/bin/env python3
"""Cut the small real excerpts in this folder from the shared data (run once; output is committed).

    python tests/validation/data/make_excerpts.py [SHARED]   # default ../shared next to the repository
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import re
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]


def cut_guidellm(shared: Path) -> None:
    src = shared / "data/groundtruth/guidellm-h100/jan20-prefill-llama7b-tp1-1/guidellm-results.json"
    doc = json.loads(src.read_text())

    def slim(req: dict) -> dict:
        req = dict(req)
        m = re.search(r"'max_tokens': (\d+)", req.get("request_args") or "")
        req["request_args"] = "{'body': {'max_tokens': %s, 'prompt': '<cut>'}}" % (m.group(1) if m else "None")
        if isinstance(req.get("output"), str):
            req["output"] = "<cut>"
        return req

    benches = []
    for i, n_ok in ((0, 3), (4, 3)):  # synchronous; constant 3.84 req/s (has 2 HTTP-400 rejections)
        b = dict(doc["benchmarks"][i])
        ok = sorted(b["requests"]["successful"], key=lambda r: r["info"]["timings"]["request_start"])[:n_ok]
        b["requests"] = {"successful": [slim(r) for r in ok],
                         "errored": [slim(r) for r in b["requests"]["errored"]],
                         "incomplete": [], "total": None}
        b["config"] = {k: b["config"][k] for k in ("strategy", "requests")}
        b["metrics"] = {k: v for k, v in b["metrics"].items() if k in (
            "request_totals", "request_latency", "time_to_first_token_ms", "time_per_output_token_ms",
            "inter_token_latency_ms", "prompt_token_count", "output_token_count")}
        b.pop("scheduler_state", None)
        benches.append(b)
    out = {"metadata": doc["metadata"], "args": {k: doc["args"][k] for k in ("data", "profile", "max_requests")},
           "benchmarks": benches}
    (HERE / "guidellm_excerpt.json").write_text(json.dumps(out, indent=1))


def cut_inference_perf(shared: Path) -> None:
    base = shared / "data/groundtruth/inference-perf-h100"
    for exp, keep, tag in (
        ("20260218-150956-codellama-34b-tp2-codegen", list(range(20)) + list(range(2995, 3005)), "ip_codegen"),
        ("20260217-170634-llama-2-7b-tp1-reasoning", list(range(725, 745)), "ip_reasoning"),
    ):
        replay = json.loads((base / "replay" / f"{exp}.json").read_text())
        truth = json.loads((base / "replay" / f"{exp}_ground_truth.json").read_text())
        replay["requests"] = [replay["requests"][i] for i in keep]
        truth = [truth[i] for i in keep]
        folder = HERE / tag
        folder.mkdir(exist_ok=True)
        (folder / f"{exp}.json").write_text(json.dumps(replay, indent=0))
        (folder / f"{exp}_ground_truth.json").write_text(json.dumps(truth, indent=0))
        shutil.copyfile(base / "experiments" / exp / "profile.yaml", folder / "profile.yaml")
        shutil.copyfile(base / "experiments" / exp / "results" / "config.yaml", folder / "config.yaml")
        for p in sorted((base / "experiments" / exp / "results").glob("stage_*_lifecycle_metrics.json")):
            shutil.copyfile(p, folder / p.name)


def cut_seed13(shared: Path) -> None:
    src = shared / "data/groundtruth/seed13"
    with open(src / "seed13_sync_ground_truth_and_blis_tpot_mape.csv", newline="") as f:
        rows = list(csv.reader(f))
    wanted = ("jan30-llama2-7b-tp1-codesweep", "dec17-tp1-qwen7-summarization")
    keep = [rows[0]] + [r for r in rows[1:] if r[0] in wanted]
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(keep)
    (HERE / "seed13_two_rows.csv").write_text(buf.getvalue())
    shutil.copyfile(src / "seed13_workload_reconstruction.yaml", HERE / "seed13_workload_reconstruction.yaml")


def cut_requests_csv() -> None:
    src = REPO / "src/servesim/data/suites/inference-perf-h100/llama-2-7b-tp1-reasoning/requests.csv.gz"
    lines = gzip.decompress(src.read_bytes()).decode().splitlines()
    keep = [lines[0]] + lines[1:11] + lines[729:741]  # first 10 requests; the switch to timeouts at t=180 s
    (HERE / "requests_excerpt.csv").write_text("\n".join(keep) + "\n")


def main() -> int:
    shared = Path(sys.argv[1]) if len(sys.argv) > 1 else REPO.parent / "shared"
    cut_guidellm(shared)
    cut_inference_perf(shared)
    cut_seed13(shared)
    cut_requests_csv()
    return 0


if __name__ == "__main__":
    sys.exit(main())
