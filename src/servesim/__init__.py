"""servesim — simulate vLLM inference serving: TTFT, ITL, E2E and throughput, without a GPU."""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

# Lazy exports keep `import servesim` (and the CLI's start-up) cheap.
_EXPORTS = {
    "step_time": "servesim.api",
    "simulate": "servesim.api",
    "validate": "servesim.workflows",
    "sweep": "servesim.workflows",
    "capacity": "servesim.workflows",
    "calibrate": "servesim.workflows",
    "ValidateResult": "servesim.workflows",
    "SweepResult": "servesim.workflows",
    "CapacityReport": "servesim.workflows",
    "CalibrateResult": "servesim.workflows",
    "load_model": "servesim.config",
    "load_hardware": "servesim.config",
    "EngineConfig": "servesim.config",
    "ModelSpec": "servesim.config",
    "Hardware": "servesim.config",
    "StepPlan": "servesim.latency",
    "StepTime": "servesim.latency",
    "ServesimError": "servesim.errors",
    "RouterConfig": "servesim.cluster",
    "KVLink": "servesim.cluster",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'servesim' has no attribute {name!r}")
