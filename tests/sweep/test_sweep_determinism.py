"""Sweep answers are the same bytes whatever runs them: -j 1, -j N, Ray (or a fresh-interpreter stand-in), resumed.

Ray differed from -j 1 in the last bit of itl_ms.mean on 17 of 24 points: weighted means were np.dot, whose
BLAS sum is split over threads, and Ray workers run with one BLAS thread. They are np.sum now (pairwise,
single-threaded); the test below pins that a long weighted mean does not depend on the thread count.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import subprocess
import sys

import pytest

from servesim.sweep import load_results, parse_sweep, run_sweep
from servesim.sweep import runner
from servesim.sweep.runner import timings_path

BASE = {
    "model": "llama-2-7b-hf",
    "workload": {"input_tokens": 128, "output_tokens": 16, "arrival": {"process": "poisson", "rate": 4}, "num_requests": 30},
    "seed": 7,
}
GRID = {"tp": [1, 2], "rate": [2, 8, 32], "engine.max_num_seqs": [8, 64]}


def spec():
    return parse_sweep({"name": "det", "base": BASE, "grid": GRID})


def test_workers_give_byte_identical_answers_in_grid_order_and_timings_apart(tmp_path):
    one, two = tmp_path / "one.jsonl", tmp_path / "two.jsonl"
    run_sweep(spec(), one, workers=1)
    run_sweep(spec(), two, workers=2)
    assert one.read_bytes() == two.read_bytes()
    rows = [json.loads(l) for l in one.read_text().splitlines()]
    assert [r["index"] for r in rows] == list(range(12))
    assert all("elapsed_s" not in r for r in rows) and all(r["summary"]["completed"] == 30 for r in rows)
    times = [json.loads(l) for l in timings_path(two).read_text().splitlines()]
    assert sorted(t["index"] for t in times) == list(range(12)) and all(t["elapsed_s"] > 0 for t in times)
    assert {t["key"] for t in times} == {r["key"] for r in rows}
    assert timings_path(one) == tmp_path / "one.timings.jsonl"


def test_resumed_sweep_gives_the_same_bytes(tmp_path):
    full, part = tmp_path / "full.jsonl", tmp_path / "part.jsonl"
    run_sweep(spec(), full)
    lines = full.read_text().splitlines(keepends=True)
    part.write_text("".join(lines[7:9] + lines[2:4]))  # some points done, out of order, as -j 4 would leave them
    run_sweep(spec(), part, workers=2)
    assert part.read_bytes() == full.read_bytes()


def _fresh_interpreter_tasks(fn, tasks, address, workers):
    """A stand-in for Ray: each task in a fresh interpreter (spawn) with one BLAS thread, as Ray's workers run."""
    saved = {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS")}
    os.environ.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    try:
        with mp.get_context("spawn").Pool(2) as pool:
            results = pool.starmap(fn, tasks)
    finally:
        for k, v in saved.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)
    yield from reversed(list(enumerate(results)))  # and in an order of its own


def test_ray_code_path_gives_the_pool_bytes(tmp_path, monkeypatch):
    pool = tmp_path / "pool.jsonl"
    run_sweep(spec(), pool, workers=2)
    monkeypatch.setattr(runner, "_ray_tasks", _fresh_interpreter_tasks)
    fake = tmp_path / "fake-ray.jsonl"
    run_sweep(spec(), fake, use_ray=True)
    assert fake.read_bytes() == pool.read_bytes()


def test_real_ray_gives_the_pool_bytes(tmp_path):
    pytest.importorskip("ray", reason="Ray not installed (pip install 'servesim[ray]')")
    small = parse_sweep({"name": "det", "base": BASE, "grid": {"tp": [1, 2], "rate": [4]}})
    run_sweep(small, tmp_path / "pool.jsonl", workers=2)
    run_sweep(small, tmp_path / "ray.jsonl", workers=2, use_ray=True)
    assert (tmp_path / "ray.jsonl").read_bytes() == (tmp_path / "pool.jsonl").read_bytes()


WEIGHTED_MEAN = """
import numpy as np
from servesim.metrics.summary import Distribution
from servesim.metrics.streaming import LogHistogram
rng = np.random.default_rng(1)
v = rng.random(400_000) * 1e-2
c = rng.integers(1, 5, v.size)
h = LogHistogram()
h.add(v, c)
print(repr(Distribution.of(v, c).mean), repr(h._sum))
"""


def test_weighted_means_do_not_depend_on_the_blas_thread_count():
    out = []
    for threads in ("1", "2"):
        env = {**os.environ, "OMP_NUM_THREADS": threads, "OPENBLAS_NUM_THREADS": threads}
        p = subprocess.run([sys.executable, "-c", WEIGHTED_MEAN], capture_output=True, text=True, env=env, timeout=120)
        assert p.returncode == 0, p.stderr
        out.append(p.stdout)
    assert out[0] == out[1]


def test_an_interrupted_run_leaves_no_empty_output(tmp_path, monkeypatch):
    def interrupted(*a, **k):
        raise KeyboardInterrupt
        yield  # a generator, like the executors

    monkeypatch.setattr(runner, "run_tasks", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_sweep(spec(), tmp_path / "r.jsonl")
    assert list(tmp_path.iterdir()) == []
    assert load_results(tmp_path / "r.jsonl") == []
