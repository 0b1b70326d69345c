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
    pp: int = 1,
    enable_expert_parallel: bool = False,
    dp: int = 1,
) -> tuple[Any, Any]:
    """(step-time model, calibration or None) for a model name, an overhead variant and a calibration; with
    pp > 1 or expert parallelism the model is built for one stage and wrapped (latency/parallel.py)."""
    from servesim.latency.calibration import Calibration

    if not isinstance(overhead, str):
        raise ConfigError(f"--overhead {overhead!r}: expected a variant name (none, fixed, per-layer, ...)")
    if calibration is not None and not isinstance(calibration, (str, Path, Calibration)):
        raise ConfigError(f"--calibration {calibration!r}: expected a calibration JSON path, 'default' or a Calibration")
    if isinstance(calibration, (str, Path)) and not str(calibration).strip():
        raise ConfigError(f"--calibration {str(calibration)!r}: empty; give a calibration JSON path or 'default'")
    ep = tp * dp if enable_expert_parallel and model.is_moe else 1  # vLLM: EP size = TP × DP; dense models ignore it
    if pp == 1 and ep == 1:
        return _build(name, model, hardware, tp, overhead, calibration, async_scheduling, 1, 1)
    from servesim.latency.parallel import ParallelModel, stage_model_spec

    lm, cal = _build(name, stage_model_spec(model, pp), hardware, tp, overhead, calibration, async_scheduling, ep, dp)
    return ParallelModel(lm, model, hardware, pp=pp, expert_parallel=ep, dp=dp), cal


def _build(name: str, model: ModelSpec, hardware: Hardware, tp: int, overhead: str, calibration: Any,
           async_scheduling: bool, ep: int, dp: int) -> tuple[Any, Any]:
    from servesim.latency.calibration import Calibration
    if name == "calibrated":
        from servesim.latency.calibration import load_calibration

        cal = calibration if isinstance(calibration, Calibration) else load_calibration(calibration)
        lm = cal.model(model, hardware, tp) if ep == 1 else cal.model(model, hardware, tp, expert_parallel=ep, data_parallel=dp)
        lm.overlap_cpu = async_scheduling  # async scheduling hides per-step CPU work behind the GPU
        if overhead not in ("auto", "none"):
            lm.extra_overhead = make_overhead(overhead, num_layers=model.num_layers, tp=tp)  # on top of the fit
        return lm, cal
    if name not in LATENCY_MODELS:
        raise ConfigError(f"--latency-model {name}: unknown model (allowed: {', '.join(MODEL_NAMES)})")
    if calibration is not None:
        raise ConfigError(f"--calibration applies to --latency-model calibrated, not {name}")
    kwargs: dict[str, Any] = {"expert_parallel": ep, "data_parallel": dp} if ep > 1 and name == "roofline-v2-corrected" else {}
    return make_latency_model(name, model, hardware, tp, "per-layer" if overhead == "auto" else overhead, **kwargs), None
