"""Parameter sweeps and capacity search over simulate(): local process pool or Ray, resumable output."""

from servesim.sweep.capacity import (
    CapacityResult,
    Slo,
    find_capacity,
    instances_for,
    parse_slo,
    run_capacity,
)
from servesim.sweep.grid import SweepSpec, load_sweep, parse_sweep, point_key
from servesim.sweep.runner import SweepPoint, load_results, run_sweep

__all__ = [
    "CapacityResult",
    "Slo",
    "SweepPoint",
    "SweepSpec",
    "find_capacity",
    "instances_for",
    "load_results",
    "load_sweep",
    "parse_slo",
    "parse_sweep",
    "point_key",
    "run_capacity",
    "run_sweep",
]
