"""Calibration files: the fitted coefficients of the calibrated step-time model, as plain data."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from servesim.config.bundled import DATA_DIR
from servesim.config.hardware import Hardware
from servesim.config.jsonfile import read_json
from servesim.config.model import ModelSpec
from servesim.config.outfile import check_schema_version, write_json
from servesim.errors import ConfigError
from servesim.latency.intervals import check_envelope, check_intervals
from servesim.latency.calibrated import FEATURES, REFERENCE_BW_EFFICIENCY, CalibratedModel, StepFeatures

DEFAULT_CALIBRATION = DATA_DIR / "calibration" / "default.json"

# Largest accepted value per calibration field, so a typo (1e308) is refused instead of giving infinite steps.
# The GPU terms multiply a physical time (roofline seconds): a fitted value above 1000 would mean kernels 1000x
# slower than their roofline. The CPU terms are seconds per step / layer / request / op: above 1 s is absurd for
# a scheduler that runs ~10^2-10^4 steps per second. The shipped fits are all below 5 (GPU) and 0.01 s (CPU).
MAX_GPU_MULTIPLIER = 1000.0
MAX_CPU_SECONDS = 1.0
THETA_MAX = {k: (MAX_GPU_MULTIPLIER if k.endswith("_s") and k != "allreduce_ops" else MAX_CPU_SECONDS) for k in FEATURES}
THETA_MAX.update({"allreduce_ops": MAX_CPU_SECONDS, "layers": MAX_CPU_SECONDS, "step": MAX_CPU_SECONDS,
                  "requests": MAX_CPU_SECONDS, "prefill_step": MAX_CPU_SECONDS})
FIELD_MAX = {"frontend_latency_s": 60.0, "frontend_per_token_s": 0.01}  # s per request; s per prompt token


@dataclass(frozen=True)
class Calibration:
    """θ per feature (see latency/calibrated.py), the front-end latency, and where they were fitted."""

    theta: dict[str, float]
    frontend_latency_s: float = 0.0
    frontend_per_token_s: float = 0.0  # API-server time per prompt token (tokenisation), s
    layers_over_tp: bool = False
    pad_cuda_graphs: bool = True
    name: str = "custom"
    fitted_on: list[str] = field(default_factory=list)
    notes: dict[str, Any] = field(default_factory=dict)
    intervals: dict[str, Any] | None = None  # prediction intervals (latency/intervals.py), versioned; None in old files
    envelope: dict[str, Any] | None = None  # what the calibration data covered (latency/intervals.py)

    def vector(self) -> tuple[float, ...]:
        """θ in FEATURES order (missing features are 0)."""
        return tuple(float(self.theta.get(k, 0.0)) for k in FEATURES)

    def compute_bound_at(self) -> float:
        """θ_compute / θ_memory: where a GEMM's fitted compute cost overtakes its fitted memory cost."""
        mem, comp = self.theta.get("gemm_memory_s", 0.0), self.theta.get("gemm_compute_s", 0.0)
        return comp / mem if mem > 0 and comp > 0 else REFERENCE_BW_EFFICIENCY

    def model(self, model: ModelSpec, hardware: Hardware, tp: int, *, expert_parallel: int = 1,
              data_parallel: int = 1) -> CalibratedModel:
        """The calibrated step-time model for this model, GPU and TP degree (and EP size, DP ranks)."""
        dec = self.theta.get("attention_decode_s", 0.0)
        feats = StepFeatures(model, hardware, tp, layers_over_tp=self.layers_over_tp, pad_cuda_graphs=self.pad_cuda_graphs,
                             compute_bound_at=self.compute_bound_at(),
                             decode_theta=dec if dec > 0 else 1.0 / REFERENCE_BW_EFFICIENCY,
                             expert_parallel=expert_parallel, data_parallel=data_parallel)
        lm = CalibratedModel(feats, self.vector(), name=f"calibrated:{self.name}")
        from servesim.latency.plan import StepPlan

        # Every step must take time: a theta that is 0 on every term a small step uses would give 0 ms steps.
        for plan in (StepPlan((1,), (0,), ()), StepPlan((), (), (1,))):
            t = lm.step_time(plan)
            if not (math.isfinite(t) and t > 0):
                raise ConfigError(f"calibration {self.name}: a one-token step takes {t!r} s for {model.name}; "
                                  "theta must give positive, finite step times")
        return lm

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)


def save_calibration(cal: Calibration, path: str | Path, flag: str = "--output") -> None:
    """Write a calibration JSON file (atomically, strict JSON: a non-finite coefficient is refused, naming it)."""
    write_json(path, cal.to_dict(), flag)


def load_calibration(path: str | Path | None = None) -> Calibration:
    """Read a calibration file ('default' or None = the one shipped with the package)."""
    p = DEFAULT_CALIBRATION if path in (None, "default") else Path(path)
    where = f"--calibration {p}"
    raw = read_json(p, where)
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a JSON object")
    check_schema_version(raw, where)
    raw = {k: v for k, v in raw.items() if k != "schema_version"}
    allowed = set(Calibration.__dataclass_fields__)
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise ConfigError(f"{where}: unknown field '{unknown[0]}' (allowed: {', '.join(sorted(allowed))})")
    theta = raw.get("theta")
    if not isinstance(theta, dict):
        raise ConfigError(f"{where}: field 'theta' must be an object of feature -> coefficient")
    for k, v in theta.items():
        if k not in FEATURES:
            raise ConfigError(f"{where}: theta.{k}: unknown feature (allowed: {', '.join(FEATURES)})")
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
            raise ConfigError(f"{where}: theta.{k}={v!r}: must be a finite number >= 0")
        if v > THETA_MAX[k]:
            raise ConfigError(f"{where}: theta.{k}={v!r}: must be <= {THETA_MAX[k]:g} (latency/calibration.py THETA_MAX)")
    for key in ("frontend_latency_s", "frontend_per_token_s"):
        fe = raw.get(key, 0.0)
        if isinstance(fe, bool) or not isinstance(fe, (int, float)) or not math.isfinite(fe) or fe < 0:
            raise ConfigError(f"{where}: {key}={fe!r}: must be a finite number >= 0")
        if fe > FIELD_MAX[key]:
            raise ConfigError(f"{where}: {key}={fe!r}: must be <= {FIELD_MAX[key]:g} s")
    for key in ("layers_over_tp", "pad_cuda_graphs"):
        if key in raw and not isinstance(raw[key], bool):
            raise ConfigError(f"{where}: {key}={raw[key]!r}: must be true or false")
    fitted_on = raw.get("fitted_on", [])
    if not isinstance(fitted_on, list) or not all(isinstance(x, str) for x in fitted_on):
        raise ConfigError(f"{where}: fitted_on: must be a list of run names")
    notes = raw.get("notes", {})
    if not isinstance(notes, dict):
        raise ConfigError(f"{where}: notes: must be an object")
    intervals = check_intervals(raw.get("intervals"), where)
    envelope = check_envelope(raw.get("envelope"), where)
    if not any(float(theta.get(k, 0.0)) > 0 for k in FEATURES):
        raise ConfigError(f"{where}: theta: every coefficient is 0, which gives 0 ms steps; give at least one > 0")
    return Calibration(
        theta={k: float(v) for k, v in theta.items()},
        frontend_latency_s=float(raw.get("frontend_latency_s", 0.0)),
        frontend_per_token_s=float(raw.get("frontend_per_token_s", 0.0)),
        layers_over_tp=bool(raw.get("layers_over_tp", False)),
        pad_cuda_graphs=bool(raw.get("pad_cuda_graphs", True)),
        name=str(raw.get("name", p.stem)),
        fitted_on=list(fitted_on),
        notes=dict(notes),
        intervals=intervals,
        envelope=envelope,
    )
