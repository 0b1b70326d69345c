"""One entry point for every step-time model: roofline-v2, roofline-v2-corrected, calibrated."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from servesim.config.hardware import Hardware
from servesim.config.model import ModelSpec
from servesim.errors import ConfigError
from servesim.latency.overhead import make_overhead
from servesim.latency.roofline import LATENCY_MODELS, make_latency_model

MODEL_NAMES = ("calibrated", *LATENCY_MODELS)
DEFAULT_LATENCY_MODEL = "calibrated"
# "auto": the seed's per-layer overhead for the roofline models; nothing extra for the calibrated model,
# whose fitted CPU terms already are its overhead.
DEFAULT_OVERHEAD = "auto"


def build_latency_model(
    name: str,
    model: ModelSpec,
    hardware: Hardware,
    tp: int = 1,
    overhead: str = DEFAULT_OVERHEAD,
    calibration: Any = None,
    *,
    async_scheduling: bool = True,
) -> tuple[Any, Any]:
    """(step-time model, calibration or None) for a model name, an overhead variant and a calibration."""
    from servesim.latency.calibration import Calibration

    if not isinstance(overhead, str):
        raise ConfigError(f"--overhead {overhead!r}: expected a variant name (none, fixed, per-layer, ...)")
    if calibration is not None and not isinstance(calibration, (str, Path, Calibration)):
        raise ConfigError(f"--calibration {calibration!r}: expected a calibration JSON path, 'default' or a Calibration")
    if isinstance(calibration, (str, Path)) and not str(calibration).strip():
        raise ConfigError(f"--calibration {str(calibration)!r}: empty; give a calibration JSON path or 'default'")
    if name == "calibrated":
        from servesim.latency.calibration import load_calibration

        cal = calibration if isinstance(calibration, Calibration) else load_calibration(calibration)
        lm = cal.model(model, hardware, tp)
        lm.overlap_cpu = async_scheduling  # async scheduling hides per-step CPU work behind the GPU
        if overhead not in ("auto", "none"):
            lm.extra_overhead = make_overhead(overhead, num_layers=model.num_layers, tp=tp)  # on top of the fit
        return lm, cal
    if name not in LATENCY_MODELS:
        raise ConfigError(f"--latency-model {name}: unknown model (allowed: {', '.join(MODEL_NAMES)})")
    if calibration is not None:
        raise ConfigError(f"--calibration applies to --latency-model calibrated, not {name}")
    return make_latency_model(name, model, hardware, tp, "per-layer" if overhead == "auto" else overhead), None
