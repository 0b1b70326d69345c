"""Tables piped (stdout not a terminal, COLUMNS=80): every name whole, no ellipsis, every header on one line."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

LONG_RUN = "a-very-long-experiment-name-that-would-be-cut-at-eighty-columns-llama-2-7b-hf-tp1"


def piped(*args: str, cwd=None) -> str:  # type: ignore[no-untyped-def]
    """Run servesim with stdout a pipe and COLUMNS=80 (what a narrow terminal would set); return stdout."""
    env = {**os.environ, "COLUMNS": "80", "LINES": "24"}
    out = subprocess.run([sys.executable, "-m", "servesim", *args], capture_output=True, text=True, env=env, cwd=cwd)
    assert out.returncode == 0, out.stderr
    return out.stdout


def cells(out: str) -> list[list[str]]:
    """The cells of every body and header row of the rich tables in out."""
    rows = []
    for line in out.splitlines():
        if line.startswith(("│", "┃")):
            rows.append([c.strip() for c in line.strip("│┃").replace("┃", "│").split("│")])
    return rows


def header_rows(out: str) -> list[list[str]]:
    return [[c.strip() for c in line.strip("┃").split("┃")] for line in out.splitlines() if line.startswith("┃")]


def check_whole(out: str, names: list[str], column: int = 0) -> None:
    assert "…" not in out
    first = {r[column] for r in cells(out)}
    for name in names:
        assert name in first, (name, sorted(first))


def test_models_names_whole():
    from servesim.config.bundled import bundled_models

    out = piped("models")
    check_whole(out, list(bundled_models()))
    assert len(header_rows(out)) == 1 and "heads q/kv x dim" in header_rows(out)[0]


def test_validate_run_names_whole(tmp_path):
    exp = tmp_path / "e"
    exp.mkdir()
    (exp / "experiment.yaml").write_text(f"name: {LONG_RUN}\nmodel: llama-2-7b-hf\nhardware: H100\ntensor_parallel_size: 1\n"
                                         "engine: {}\nground_truth: {format: requests-csv, path: r.csv}\n")
    (exp / "r.csv").write_text("arrival_time_s,input_tokens,output_tokens,ttft_ms,e2e_ms\n0.0,10,2,10.0,20.0\n1.0,10,2,10.0,20.0\n")
    out = piped("validate", str(exp), "--latency-model", "roofline-v2")
    check_whole(out, [LONG_RUN])
    assert "MAPE % over runs measured unsaturated (whole run; predicted-saturated ones included)" in out.splitlines()
    assert {"run", "TTFT pred/meas ms", "saturated"} <= set(header_rows(out)[0])
    metrics = {r[0] for r in cells(out)}
    assert {"ttft_mean", "itl_mean", "e2e_mean", "output_tokens_per_s", "throughput_rps"} <= metrics


def test_capacity_headers_on_one_line_and_gpus_named():
    out = piped("capacity", "--slo", "ttft_p99_ms=500", "--num-requests", "3", "--model", "llama-2-7b-hf",
                "--model", "mixtral-8x7b-instruct-v0.1", "--tp", "2", "--target-rate", "10", "--latency-model", "roofline-v2")
    check_whole(out, ["llama-2-7b-hf · H100 · TP2", "mixtral-8x7b-instruct-v0.1 · H100 · TP2"])
    heads = header_rows(out)
    assert len(heads) == 2  # the per-instance table and the cluster table: one header line each, none wrapped
    assert heads[0] == ["configuration", "max rate (req/s)", "ttft_p99_ms at max", "probes", "how sure",
                        "instances (GPUs) for 10 req/s"]
    assert "GPUs" in heads[1]
    assert "fixed-length probes (no confidence measure)" in {r[4] for r in cells(out)}


def test_sweep_and_cluster_tables_whole(tmp_path):
    spec = tmp_path / "s.yaml"
    name = "a-sweep-with-a-name-longer-than-the-table-it-titles-so-rich-would-wrap-it"
    spec.write_text(f"name: {name}\nbase: {{latency_model: roofline-v2, workload: {{input_tokens: 10, output_tokens: 2, "
                    "arrival: synchronous, num_requests: 2}}\ngrid: {model: [mixtral-8x7b-instruct-v0.1, llama-2-7b-hf], tp: [2]}\n")
    out = piped("sweep", str(spec), "-o", str(tmp_path / "r.jsonl"))
    check_whole(out, ["mixtral-8x7b-instruct-v0.1", "llama-2-7b-hf"])
    assert out.splitlines()[0] == name
    cluster = tmp_path / "c.yaml"
    cluster.write_text("pools:\n  - {name: a-pool-name-long-enough-to-be-cut-in-eighty-columns, count: 2}\n")
    untitled = tmp_path / "u.yaml"  # a sweep without a name: a table without a title
    untitled.write_text("base: {latency_model: roofline-v2, workload: {input_tokens: 10, output_tokens: 2, arrival: synchronous, "
                        "num_requests: 2}}\ngrid: {tp: [1]}\n")
    assert cells(piped("sweep", str(untitled), "-o", str(tmp_path / "u.jsonl")))[0][0] == "tp"
    out = piped("run", "--cluster", str(cluster), "--num-requests", "4", "--latency-model", "roofline-v2")
    check_whole(out, ["a-pool-name-long-enough-to-be-cut-in-eighty-columns"], column=1)
