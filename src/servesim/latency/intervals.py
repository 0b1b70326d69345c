"""Prediction intervals and the calibration envelope, as stored in a calibration file (plain data + pure functions).

The numbers come from validation/intervals.py (split-conformal on leave-one-model-out residuals); this module
holds their format (versioned, schema-checked), the regime rule, the interval arithmetic and the envelope test,
so `run` can apply them without importing validation.

Score: s = |ln(predicted / measured)| of one run's metric (a symmetric relative error). With the conformal
quantile q of the held-out scores at level L, the interval for a new prediction p is [p·e^(−q), p·e^(q)].
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from servesim.errors import ConfigError

INTERVALS_VERSION = 1
ENVELOPE_VERSION = 1
LEVEL = 0.8
INTERVAL_METRICS = tuple(f"{f}_{s}" for f in ("ttft", "itl", "e2e") for s in ("mean", "p90", "p99"))
REGIMES = ("light", "loaded")
# Regime boundary: fewer than 2 requests in the engine on average (Little's law) is an unbatched run, where
# the step time is the weight-read floor; a definition of the bins, not a fitted constant.
LIGHT_BELOW_IN_SYSTEM = 2.0
NEAR_CAPACITY_KV_USAGE = 0.9  # KV cache this full (or any preemption) counts as load near capacity
FEATURES = ("dense", "moe", "mla", "fp8_weights", "fp8_kv")


def mean_in_system(requests_per_s: float | None, e2e_mean_ms: float | None) -> float | None:
    """Mean requests in the engine (Little's law L = λ·W): completions per s × mean E2E (ms in)."""
    if requests_per_s is None or e2e_mean_ms is None:
        return None
    return requests_per_s * e2e_mean_ms / 1e3


def mean_batch(load: float | None, max_num_seqs: int) -> float | None:
    """Mean batch: the mean number in the system capped at max_num_seqs (the rest wait in the queue)."""
    return None if load is None else min(load, float(max_num_seqs))


def regime_of(load: float | None) -> str:
    """'light' when the mean number of requests in the system is below LIGHT_BELOW_IN_SYSTEM, else 'loaded'."""
    return "light" if load is not None and load < LIGHT_BELOW_IN_SYSTEM else "loaded"


def conformal_quantile(scores: Sequence[float], level: float = LEVEL) -> float | None:
    """Split-conformal quantile: the ceil((n+1)·level)-th smallest score; None when n is too small for one."""
    s = sorted(float(x) for x in scores)
    k = math.ceil((len(s) + 1) * level)
    if k > len(s) or not s:
        return None
    return s[k - 1]


def score(predicted: float, actual: float) -> float:
    """Conformity score |ln(predicted / actual)| (both > 0)."""
    return abs(math.log(predicted / actual))


def interval(predicted: float, q: float) -> list[float]:
    """[p·e^(−q), p·e^(q)]: the range of measured values whose score against p is at most q."""
    return [predicted * math.exp(-q), predicted * math.exp(q)]


def widened(q: float, outside: int) -> float:
    """Heuristic widening outside the envelope: the score quantile times (1 + number of dimensions outside)."""
    return q * (1 + outside)


def quantile_for(intervals: Mapping[str, Any], metric: str, regime: str) -> tuple[float, str] | None:
    """(q, the bin it came from) for a metric in a regime; the pooled bin 'all' when the regime's is missing."""
    bins = intervals.get("quantiles", {})
    for key in (regime, "all"):
        entry = (bins.get(key) or {}).get(metric)
        if entry is not None and entry.get("q") is not None:
            return float(entry["q"]), key
    return None


def model_features(model: Any) -> dict[str, bool]:
    """Envelope features of a ModelSpec: dense/MoE, MLA, fp8 (1-byte) weights, fp8 (1-byte) KV cache."""
    return {"dense": not model.is_moe, "moe": bool(model.is_moe), "mla": bool(model.is_mla),
            "fp8_weights": model.weight_bytes_per_param <= 1.0, "fp8_kv": model.kv_bytes_per_element <= 1.0}


def outside_envelope(envelope: Mapping[str, Any], *, hardware: str, features: Mapping[str, bool], tp: int,
                     max_context_tokens: int | None, mean_batch: float | None, regime: str,
                     near_capacity: bool) -> list[str]:
    """What of this run lies outside the calibration data, one phrase per dimension (empty: inside)."""
    out = []
    if hardware not in envelope.get("hardware", []):
        out.append(f"GPU {hardware} (calibrated on {', '.join(envelope.get('hardware', [])) or 'none'})")
    seen = envelope.get("features", {})
    for f in FEATURES:
        if features.get(f) and not seen.get(f):
            out.append(f"model feature {f} (not in the calibration data)")
    tps = envelope.get("tp", [])
    if tps and tp > max(tps):
        out.append(f"TP{tp} (calibrated up to TP{max(tps)})")
    ctx = envelope.get("max_context_tokens")
    if ctx is not None and max_context_tokens is not None and max_context_tokens > ctx:
        out.append(f"context {max_context_tokens} tokens (calibrated up to {ctx})")
    mb = envelope.get("max_batch")
    if mb is not None and mean_batch is not None and mean_batch > mb:
        out.append(f"mean batch {mean_batch:.1f} requests (calibrated up to {mb:.1f})")
    if regime not in envelope.get("regimes", REGIMES):
        out.append(f"regime {regime} (no calibration run was {regime})")
    if near_capacity:
        out.append("load near capacity (saturated, preempting or KV cache >= 90 % full; no calibration run was)")
    return out


def _number(x: Any) -> bool:
    return not isinstance(x, bool) and isinstance(x, (int, float)) and math.isfinite(x)


def check_intervals(raw: Any, where: str) -> dict[str, Any] | None:
    """Validate the `intervals` field of a calibration file (None stays None); raises ConfigError naming the field."""
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: intervals: must be an object")
    if raw.get("version") != INTERVALS_VERSION:
        raise ConfigError(f"{where}: intervals.version={raw.get('version')!r}: this servesim reads version {INTERVALS_VERSION}")
    level = raw.get("level")
    if not _number(level) or not 0 < level < 1:
        raise ConfigError(f"{where}: intervals.level={level!r}: must be a number in (0, 1)")
    quantiles = raw.get("quantiles")
    if not isinstance(quantiles, dict):
        raise ConfigError(f"{where}: intervals.quantiles: must be an object of regime -> metric -> {{q, n}}")
    for regime, metrics in quantiles.items():
        if regime not in (*REGIMES, "all"):
            raise ConfigError(f"{where}: intervals.quantiles.{regime}: unknown regime (allowed: {', '.join((*REGIMES, 'all'))})")
        if not isinstance(metrics, dict):
            raise ConfigError(f"{where}: intervals.quantiles.{regime}: must be an object")
        for metric, entry in metrics.items():
            if metric not in INTERVAL_METRICS:
                raise ConfigError(f"{where}: intervals.quantiles.{regime}.{metric}: unknown metric (allowed: {', '.join(INTERVAL_METRICS)})")
            q = entry.get("q") if isinstance(entry, dict) else None
            if not _number(q) or q < 0:
                raise ConfigError(f"{where}: intervals.quantiles.{regime}.{metric}.q={q!r}: must be a finite number >= 0")
    return dict(raw)


def check_envelope(raw: Any, where: str) -> dict[str, Any] | None:
    """Validate the `envelope` field of a calibration file (None stays None); raises ConfigError naming the field."""
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: envelope: must be an object")
    if raw.get("version") != ENVELOPE_VERSION:
        raise ConfigError(f"{where}: envelope.version={raw.get('version')!r}: this servesim reads version {ENVELOPE_VERSION}")
    if not isinstance(raw.get("hardware"), list) or not all(isinstance(h, str) for h in raw["hardware"]):
        raise ConfigError(f"{where}: envelope.hardware: must be a list of GPU names")
    if not isinstance(raw.get("tp"), list) or not all(isinstance(t, int) and not isinstance(t, bool) for t in raw["tp"]):
        raise ConfigError(f"{where}: envelope.tp: must be a list of integers")
    feats = raw.get("features")
    if not isinstance(feats, dict) or not all(isinstance(v, bool) for v in feats.values()):
        raise ConfigError(f"{where}: envelope.features: must be an object of feature -> true/false")
    for key in ("max_context_tokens", "max_batch"):
        v = raw.get(key)
        if v is not None and (not _number(v) or v < 0):
            raise ConfigError(f"{where}: envelope.{key}={v!r}: must be a finite number >= 0 or null")
    return dict(raw)


def annotate(summary: dict[str, Any], intervals: Mapping[str, Any] | None, outside: list[str]) -> dict[str, Any]:
    """Add <metric>.<stat>_interval to a run summary and return the `prediction_intervals` note (level, regime, …)."""
    if intervals is None:
        return {"available": False, "note": "the calibration file has no prediction intervals (fitted before they existed, "
                                             "or without --cv leave-one-model-out)"}
    load = mean_in_system(summary.get("requests_per_s"), (summary.get("e2e_ms") or {}).get("mean"))
    regime = "loaded" if summary.get("saturated") else regime_of(load)
    used: dict[str, float] = {}
    for metric in INTERVAL_METRICS:
        fam, stat = metric.split("_")
        pred = (summary.get(f"{fam}_ms") or {}).get(stat)
        found = quantile_for(intervals, metric, regime)
        if pred is None or found is None or pred <= 0:
            continue
        q = widened(found[0], len(outside))
        summary[f"{fam}_ms"][f"{stat}_interval"] = interval(pred, q)
        used[metric] = q
    return {"available": True, "level": float(intervals["level"]), "regime": regime, "mean_in_system": load,
            "outside_envelope": outside, "widening": f"score quantile x {1 + len(outside)} (heuristic: x(1 + dimensions outside))",
            "scores": used}
