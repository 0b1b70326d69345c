"""Parameter sweeps and capacity search over simulate(): local process pool or Ray, resumable output."""

import sys
import types
from typing import Any

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


class _CallableModule(types.ModuleType):
    """servesim.sweep is both this package and the top-level function servesim.sweep(spec, ...): importing the
    package makes it the attribute `servesim.sweep`, so the package itself forwards a call to workflows.sweep."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        from servesim.workflows import sweep

        return sweep(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
