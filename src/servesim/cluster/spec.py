"""The cluster spec (`--cluster cluster.yaml`): pools of instances, the router and the KV link.

    router: {name: weighted, weights: {queue: 2, kv: 2, prefix: 3}, staleness_s: 0.05}
    kv_link: {kind: rdma}                 # or {bandwidth_gb_s: 50, latency_s: 2e-5}; PD only
    pools:
      - {name: prefill, role: prefill, count: 2, model: llama-3.1-8b, hardware: H100, tp: 2}
      - {name: decode, role: decode, count: 4, model: llama-3.1-8b, hardware: H200, tp: 1,
         engine: {max_num_seqs: 512}}

Unknown keys are refused, naming the file and the key path (docs/CLUSTER.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from servesim.cluster.link import KVLink, link_preset
from servesim.config.compressed import read_bytes
from servesim.cluster.router import DEFAULT_WEIGHTS, ROUTERS, RouterConfig
from servesim.errors import ConfigError


@dataclass
class PoolSpec:
    """One pool of identical instances: count, role (both | prefill | decode), model, GPU, TP and engine args."""

    name: str = "default"
    count: int = 1
    role: str = "both"
    model: Any = "llama-2-7b-hf"
    hardware: Any = "H100"
    tp: int = 1
    engine: dict[str, Any] | None = None
    latency_model: Any = None  # None: the run's
    hardware_config: str | Path | None = None

    def __post_init__(self) -> None:
        if isinstance(self.count, bool) or not isinstance(self.count, int) or self.count < 1:
            raise ConfigError(f"cluster pool {self.name!r}: count={self.count!r}: must be an integer >= 1")
        if self.role not in ("both", "prefill", "decode"):
            raise ConfigError(f"cluster pool {self.name!r}: role={self.role!r}: must be one of both, prefill, decode")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RouterModel(_Strict):
    name: Literal[ROUTERS] = "round-robin"  # type: ignore[valid-type]
    weights: dict[Literal[tuple(DEFAULT_WEIGHTS)], float] | None = None  # type: ignore[valid-type]
    staleness_s: float | None = Field(None, ge=0)

    @field_validator("weights")
    @classmethod
    def _weights(cls, v):  # type: ignore[no-untyped-def]
        if v is not None:
            if any(not (w >= 0 and math.isfinite(w)) for w in v.values()):
                raise ValueError("weights must be finite numbers >= 0")
            if not any(v.values()):
                raise ValueError("at least one weight must be > 0")
        return v


class LinkModel(_Strict):
    kind: Literal["nvlink", "rdma"] | None = None
    bandwidth_gb_s: float | None = Field(None, gt=0)
    latency_s: float | None = Field(None, ge=0)


class PoolModel(_Strict):
    name: str
    role: Literal["both", "prefill", "decode"] = "both"
    count: int = Field(1, ge=1, le=4096)
    model: str = "llama-2-7b-hf"
    hardware: str = "H100"
    tp: int = Field(1, ge=1)
    engine: dict[str, Any] | None = None
    latency_model: str | None = None


class ClusterSpec(_Strict):
    """A validated cluster spec."""

    pools: list[PoolModel] = Field(min_length=1)
    router: RouterModel = RouterModel()
    kv_link: LinkModel | None = None

    def pools_list(self, base_dir: Path | None = None) -> list[PoolSpec]:
        """The pools as PoolSpecs."""
        names = [p.name for p in self.pools]
        if len(set(names)) != len(names):
            raise ConfigError(f"cluster: pools: names must be unique (got {names})")
        roles = {p.role for p in self.pools}
        if "decode" in roles or "prefill" in roles:
            if roles != {"prefill", "decode"}:
                raise ConfigError(f"cluster: pools: PD needs 'prefill' and 'decode' pools only (got roles {sorted(roles)})")
        return [PoolSpec(name=p.name, count=p.count, role=p.role, model=p.model, hardware=p.hardware, tp=p.tp,
                         engine=p.engine, latency_model=p.latency_model) for p in self.pools]

    def router_config(self, seed: int | None) -> RouterConfig:
        """The RouterConfig (weights default to llm-d's when none are given)."""
        r = self.router
        kw: dict[str, Any] = {}
        if r.weights is not None:
            kw["weights"] = tuple({**dict.fromkeys(DEFAULT_WEIGHTS, 0.0), **r.weights}.items())
        return RouterConfig(name=r.name, staleness_s=r.staleness_s, seed=0 if seed is None else seed, **kw)

    def link(self) -> KVLink | str | None:
        """The KV link: explicit bandwidth/latency, a preset kind, or None (the default: rdma)."""
        k = self.kv_link
        if k is None:
            return None
        if k.bandwidth_gb_s is not None:
            return KVLink(k.bandwidth_gb_s, k.latency_s or 0.0)
        if k.latency_s is not None:
            raise ConfigError("cluster: kv_link.latency_s: give bandwidth_gb_s too (or only kind)")
        return k.kind


def _one_line(exc: ValidationError, where: str) -> ConfigError:
    err = next((e for e in exc.errors() if e.get("type") == "extra_forbidden"), exc.errors()[0])
    path = ".".join(str(p) for p in err.get("loc", ())) or "cluster"
    if err.get("type") == "extra_forbidden":
        return ConfigError(f"{where}: {path}: unknown key")
    msg = str(err.get("msg", "")).removeprefix("Value error, ").replace("\n", " ")
    value = repr(err.get("input"))
    value = value if len(value) <= 60 else value[:57] + "..."
    return ConfigError(f"{where}: {path}={value}: {msg}")


def parse_cluster(data: Any, where: str = "cluster") -> ClusterSpec:
    """A ClusterSpec from plain data; bad input raises a one-line ConfigError naming where and the key."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping with 'pools' (and optional 'router', 'kv_link'), got {type(data).__name__}")
    try:
        spec = ClusterSpec.model_validate(data)
    except ValidationError as exc:
        raise _one_line(exc, where) from None
    try:
        spec.pools_list()
        spec.link()
    except ConfigError as exc:
        raise ConfigError(str(exc).replace("cluster:", f"{where}:", 1)) from None
    return spec


def load_cluster_yaml(path: str | Path) -> ClusterSpec:
    """A ClusterSpec from a YAML file."""
    p = Path(path)
    try:
        data = yaml.safe_load(read_bytes(p, ConfigError, "cluster spec").decode("utf-8"))  # `.gz` files are gunzipped
    except OSError as exc:
        raise ConfigError(f"--cluster {p}: cannot read ({exc.__class__.__name__})") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1} column {mark.column + 1}" if mark is not None else ""
        raise ConfigError(f"--cluster {p}: not valid YAML{at}") from None
    return parse_cluster(data, where=f"--cluster {p}")
