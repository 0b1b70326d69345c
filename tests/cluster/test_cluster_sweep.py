"""A cluster point is just another sweep point: same executors, same key, the whole cluster per point."""

from __future__ import annotations

from servesim.sweep.grid import parse_sweep, point_key
from servesim.sweep.runner import run_point


def test_sweep_grid_over_instances_and_routers_runs_whole_clusters():
    spec = parse_sweep({
        "base": {"workload": {"input_tokens": 256, "output_tokens": 32, "arrival": {"process": "poisson", "rate": 20},
                              "num_requests": 120, "seed": 1}},
        "grid": {"instances": [1, 2], "router": ["round-robin", {"name": "weighted", "weights": {"queue": 1, "kv": 1}}]},
    })
    points = spec.points()
    assert len(points) == 4
    kws = [spec.kwargs(p) for p in points]
    answers = [run_point(kw) for kw in kws]
    assert all("error" not in a for a in answers), answers
    assert all(a["summary"]["completed"] == 120 for a in answers)
    two = [a for p, a in zip(points, answers) if p["instances"] == 2]
    assert all(a["cluster"]["pools"]["default"]["instances"] == 2 for a in two)
    assert two[1]["cluster"]["router"]["weights"] == {"queue": 1.0, "kv": 1.0, "prefix": 0.0}
    assert len({point_key(kw) for kw in kws}) == 4
