"""The sweep file: `base` (simulate() keyword arguments) and `grid` (parameter -> list of values).

    # sweep.yaml
    base:
      model: llama-2-7b-hf
      hardware: H100
      workload: {input_tokens: 512, output_tokens: 256, arrival: {process: poisson, rate: 4}, num_requests: 500}
      engine: {max_num_seqs: 256}
      seed: 42
    grid:
      tp: [1, 2]
      rate: [2, 4, 8, 16]                  # shorthand for workload.arrival.rate
      engine.max_num_batched_tokens: [2048, 8192]
    summary: exact                          # or streaming (fixed memory, percentiles within 0.5 %)

Grid keys are a simulate() argument (model, hardware, tp, latency_model, overhead, frontend_latency_s,
seed, hardware_config, calibration, engine, workload) or a dotted path into one of the dict-valued ones
(`engine.max_num_seqs`, `workload.arrival.rate`, `workload.input_tokens.mean`); `rate` and `num_requests`
are shorthands for `workload.arrival.rate` and `workload.num_requests`. Points are the cartesian product
in the order the grid lists its keys (the last key varies fastest). Unknown keys are refused.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
from pathlib import Path
from typing import Any, Literal

from servesim.config.compressed import read_bytes
from servesim.config.yamlfile import YamlProblem, parse_yaml_bytes
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from servesim.errors import ConfigError

__all__ = ["ALIASES", "RUN_KEYS", "SweepSpec", "load_sweep", "parse_sweep", "point_key", "point_kwargs"]

# simulate() keyword arguments a sweep may set (callbacks and output switches are the runner's business).
RUN_KEYS = (
    "model", "hardware", "tp", "latency_model", "overhead", "frontend_latency_s", "seed", "hardware_config",
    "calibration", "engine", "workload",
    # cluster points (servesim/cluster_sim.py): each point is one whole cluster simulation
    "instances", "router", "data_parallel_size", "prefill_instances", "decode_instances", "kv_link", "cluster",
)
ALIASES = {"rate": "workload.arrival.rate", "num_requests": "workload.num_requests", "duration_s": "workload.duration_s"}


class SweepSpec(BaseModel):
    """A validated sweep: base run, grid, and how to summarise each point."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str | None = None
    base: dict[str, Any] = Field(default_factory=dict)
    grid: dict[str, list[Any]] = Field(default_factory=dict)
    summary: Literal["exact", "streaming"] = "exact"

    @field_validator("base")
    @classmethod
    def _base_keys(cls, v: dict[str, Any]) -> dict[str, Any]:
        for key in v:
            if key not in RUN_KEYS:
                raise ValueError(f"base.{key}: unknown run parameter (allowed: {', '.join(RUN_KEYS)})")
        for key in ("engine", "workload"):
            if key in v and v[key] is not None and not isinstance(v[key], (dict, str)):
                raise ValueError(f"base.{key}: must be a mapping" + (" or a preset/YAML path" if key == "workload" else ""))
        return v

    @field_validator("grid")
    @classmethod
    def _grid_keys(cls, v: dict[str, list[Any]]) -> dict[str, list[Any]]:
        for key, values in v.items():
            path = ALIASES.get(key, key)
            head = path.split(".", 1)[0]
            if head not in RUN_KEYS:
                raise ValueError(f"grid.{key}: unknown run parameter (allowed: {', '.join(RUN_KEYS)}, dotted paths into engine/workload, or {', '.join(ALIASES)})")
            if "." in path and head not in ("engine", "workload"):
                raise ValueError(f"grid.{key}: only engine.* and workload.* take dotted paths")
            if not values:
                raise ValueError(f"grid.{key}: needs at least one value")
        return v

    def points(self) -> list[dict[str, Any]]:
        """Every grid assignment {grid key: value}, in grid order (last key fastest)."""
        keys = list(self.grid)
        return [dict(zip(keys, combo)) for combo in itertools.product(*(self.grid[k] for k in keys))]

    def kwargs(self, params: dict[str, Any]) -> dict[str, Any]:
        """simulate() keyword arguments of one point: base with the point's values written in."""
        return point_kwargs(self.base, params)


def point_kwargs(base: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """base (deep-copied) with each grid value set at its (dotted, alias-expanded) path."""
    out = copy.deepcopy(base)
    for key, value in params.items():
        path = ALIASES.get(key, key).split(".")
        node = out
        for i, part in enumerate(path[:-1]):
            nxt = node.get(part)
            if nxt is None:
                nxt = node[part] = {}
            elif not isinstance(nxt, dict):
                where = ".".join(path[: i + 1])
                raise ConfigError(f"grid.{key}: base {where} is {nxt!r}, not a mapping; write it as a mapping in base")
            node = nxt
        node[path[-1]] = copy.deepcopy(value)
    return out


def point_key(kwargs: dict[str, Any], summary: str = "exact") -> str:
    """Stable identity of a point: sha256 of its full simulate() arguments (canonical JSON), 16 hex digits."""
    doc = json.dumps({"run": kwargs, "summary": summary}, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(doc.encode()).hexdigest()[:16]


def parse_sweep(data: Any, *, where: str = "sweep") -> SweepSpec:
    """Validate a sweep mapping; errors name the key (ConfigError, one line)."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping with base: and grid:")
    try:
        return SweepSpec.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(x) for x in err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key (allowed: name, base, grid, summary)"
        raise ConfigError(f"{where}: {loc}: {msg}") from None


def load_sweep(path: str | Path) -> SweepSpec:
    """Read and validate a sweep YAML file."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"sweep file {p}: not found")
    try:
        data = parse_yaml_bytes(read_bytes(p, ConfigError, "sweep file"))  # `.gz` files are gunzipped
    except OSError as exc:
        raise ConfigError(f"sweep file {p}: cannot read ({exc.strerror})") from None
    except YamlProblem as exc:
        raise ConfigError(f"sweep file {p}: invalid YAML: {exc}") from None
    spec = parse_sweep(data, where=str(p))
    # Relative workload/hardware file paths are relative to the sweep file, as for workload YAML files.
    base = dict(spec.base)
    for key in ("hardware_config", "calibration"):
        if isinstance(base.get(key), str) and not Path(base[key]).is_absolute():
            base[key] = str((p.parent / base[key]).resolve())
    if isinstance(base.get("workload"), str) and base["workload"].endswith((".yaml", ".yml")) and not Path(base["workload"]).is_absolute():
        base["workload"] = str((p.parent / base["workload"]).resolve())
    return spec.model_copy(update={"base": base})
