"""Sweeps: the YAML schema, grid expansion, worker-count independence, resuming, Ray, Parquet, plots, CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from servesim.errors import ConfigError
from servesim.sweep import load_results, load_sweep, parse_sweep, point_key, run_sweep
from servesim.sweep.runner import expand

BASE = {
    "model": "llama-2-7b-hf",
    "workload": {"input_tokens": 200, "output_tokens": 24, "arrival": {"process": "poisson", "rate": 4}, "num_requests": 25},
    "seed": 5,
}
GRID = {"tp": [1, 2], "rate": [2, 16], "engine.max_num_seqs": [8, 64]}


def spec(**over):
    return parse_sweep({"name": "t", "base": BASE, "grid": GRID, **over})


def comparable(rows):
    return {r["key"]: (r["index"], r["params"], r["config"], r["summary"]) for r in rows}


def test_grid_points_in_order_with_aliases_and_dotted_paths():
    s = spec()
    pts = expand(s)
    assert len(pts) == 8
    assert pts[0].params == {"tp": 1, "rate": 2, "engine.max_num_seqs": 8}
    assert pts[1].params["engine.max_num_seqs"] == 64  # the last grid key varies fastest
    kw = pts[-1].kwargs
    assert kw["tp"] == 2 and kw["workload"]["arrival"] == {"process": "poisson", "rate": 16}
    assert kw["engine"] == {"max_num_seqs": 64} and BASE["workload"]["arrival"]["rate"] == 4  # base not mutated
    assert len({p.key for p in pts}) == 8
    assert point_key(kw) == point_key(json.loads(json.dumps(kw)))  # stable across a JSON round trip


@pytest.mark.parametrize("data,msg", [
    ({"base": {}, "grid": {}, "workers": 2}, "workers: unknown key"),
    ({"base": {"modle": "x"}}, "base.modle: unknown run parameter"),
    ({"grid": {"max_num_seqs": [1]}}, "grid.max_num_seqs: unknown run parameter"),
    ({"grid": {"tp.x": [1]}}, "only engine.* and workload.*"),
    ({"grid": {"tp": []}}, "at least one value"),
    ({"summary": "fast"}, "summary"),
])
def test_schema_refuses_unknown_keys_with_one_line(data, msg):
    with pytest.raises(ConfigError) as exc:
        parse_sweep(data)
    assert msg in str(exc.value) and "\n" not in str(exc.value)


def test_invalid_point_values_fail_before_running(tmp_path):
    bad = parse_sweep({"base": BASE, "grid": {"engine.max_num_seqs": [4, 0]}})
    with pytest.raises(ConfigError, match=r"point 1 \(engine.max_num_seqs=0\)"):
        run_sweep(bad, tmp_path / "r.jsonl")
    assert not (tmp_path / "r.jsonl").exists() or (tmp_path / "r.jsonl").read_text() == ""


def test_one_and_two_workers_give_identical_results(tmp_path):
    one = run_sweep(spec(), tmp_path / "one.jsonl", workers=1)
    two = run_sweep(spec(), tmp_path / "two.jsonl", workers=2)
    assert len(one) == 8 and all(r.get("summary") for r in one)
    assert comparable(one) == comparable(two)
    assert [r["index"] for r in two] == list(range(8))  # returned in grid order whatever the completion order


def test_resume_skips_points_already_written(tmp_path):
    out = tmp_path / "r.jsonl"
    seen: list[int] = []
    full = run_sweep(spec(), out, on_result=lambda row, done, total: seen.append(row["index"]))
    assert sorted(seen) == list(range(8))
    lines = out.read_text().splitlines()
    # Drop two finished points and leave a half-written line, as an interrupted run would.
    out.write_text("\n".join(lines[:5]) + "\n" + lines[5][: len(lines[5]) // 2])
    seen.clear()
    again = run_sweep(spec(), out, workers=2, on_result=lambda row, done, total: seen.append(row["index"]))
    assert sorted(seen) == sorted(json.loads(l)["index"] for l in lines[5:])
    assert comparable(again) == comparable(full)
    seen.clear()
    run_sweep(spec(), out, on_result=lambda row, done, total: seen.append(row["index"]))
    assert seen == []
    # A changed base is a different point: nothing is skipped wrongly.
    changed = parse_sweep({"base": {**BASE, "seed": 6}, "grid": {"tp": [1]}})
    assert len(run_sweep(changed, out)) == 1 and len(load_results(out)) == 9


def test_error_points_are_recorded_and_not_rerun(tmp_path):
    s = parse_sweep({"base": {**BASE, "model": "llama-2-70b-hf"}, "grid": {"tp": [1, 4]}})
    rows = run_sweep(s, tmp_path / "r.jsonl")
    assert "does not fit" in rows[0]["error"] and rows[1]["summary"]["completed"] == 25


def test_streaming_summary_option(tmp_path):
    exact = run_sweep(parse_sweep({"base": BASE, "grid": {"rate": [8]}}), tmp_path / "a.jsonl")[0]["summary"]
    stream = run_sweep(parse_sweep({"base": BASE, "grid": {"rate": [8]}, "summary": "streaming"}), tmp_path / "b.jsonl")[0]["summary"]
    assert stream["completed"] == exact["completed"] and stream["ttft_ms"]["mean"] == pytest.approx(exact["ttft_ms"]["mean"], rel=1e-9)


def test_parquet_output_round_trip_and_resume(tmp_path):
    pytest.importorskip("pyarrow")
    out = tmp_path / "r.parquet"
    rows = run_sweep(spec(), out)
    assert out.exists() and not (tmp_path / "r.parquet.partial.jsonl").exists()
    back = load_results(out)
    assert [r["key"] for r in back] == [r["key"] for r in rows]
    assert back[3]["params"] == rows[3]["params"] and back[3]["summary"]["ttft_ms"]["p99"] == rows[3]["summary"]["ttft_ms"]["p99"]
    seen = []
    run_sweep(spec(), out, on_result=lambda row, done, total: seen.append(row))
    assert seen == []


def test_ray_gives_the_pool_results(tmp_path):
    pytest.importorskip("ray", reason="Ray not installed (pip install 'servesim[ray]')")
    small = parse_sweep({"base": BASE, "grid": {"tp": [1, 2], "rate": [4]}})
    pool = run_sweep(small, tmp_path / "pool.jsonl", workers=2)
    ray_rows = run_sweep(small, tmp_path / "ray.jsonl", workers=2, use_ray=True)
    assert comparable(pool) == comparable(ray_rows)


def test_plot_writes_a_png(tmp_path):
    pytest.importorskip("matplotlib")
    from servesim.sweep.plot import plot_sweep

    rows = run_sweep(parse_sweep({"base": BASE, "grid": {"tp": [1, 2], "rate": [2, 8]}}), tmp_path / "r.jsonl")
    png = plot_sweep(rows, tmp_path / "p.png", metrics=("ttft_ms.p99", "itl_ms.mean"))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ConfigError, match="grid key 'rate'"):
        plot_sweep(run_sweep(parse_sweep({"base": BASE, "grid": {"tp": [1]}}), tmp_path / "s.jsonl"), tmp_path / "q.png")


def test_preset_workload_base_with_rate_grid_and_relative_paths(tmp_path):
    f = tmp_path / "s.yaml"
    f.write_text(yaml.safe_dump({"base": {"workload": "chat", "seed": 1}, "grid": {"rate": [3], "num_requests": [20]}}))
    s = load_sweep(f)
    (pt,) = expand(s)
    assert pt.kwargs["workload"]["arrival"]["rate"] == 3 and pt.kwargs["workload"]["num_requests"] == 20
    assert pt.kwargs["workload"]["input_tokens"]["kind"] == "gaussian"


def test_cli_sweep_and_errors(tmp_path):
    f = tmp_path / "s.yaml"
    f.write_text(yaml.safe_dump({"name": "cli", "base": BASE, "grid": {"rate": [2, 8]}}))
    run = lambda *a: subprocess.run([sys.executable, "-m", "servesim", "sweep", str(f), *a], capture_output=True, text=True)  # noqa: E731
    p = run("--workers", "2", "--plot", str(tmp_path / "p.png"))
    assert p.returncode == 0, p.stderr
    assert (tmp_path / "s.results.jsonl").exists() and (tmp_path / "p.png").exists() and "2 points" in p.stdout
    p = run("--json")
    assert p.returncode == 0 and len(p.stdout.splitlines()) == 2 and "0 run now" not in p.stdout
    p = run("-o", str(tmp_path / "x.csv"))
    assert p.returncode == 2 and p.stderr.count("\n") == 1 and ".jsonl or .parquet" in p.stderr
    f.write_text("base: {}\ngrid: {nope: [1]}\n")
    p = run()
    assert p.returncode == 2 and "grid.nope" in p.stderr
