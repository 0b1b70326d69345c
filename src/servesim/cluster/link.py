"""The link KV bytes cross between a prefill and a decode instance: latency + bytes / bandwidth, FIFO per sender."""

from __future__ import annotations

import math
from dataclasses import dataclass

from servesim.errors import ConfigError

# Per-GPU link presets (GB/s = 1e9 bytes/s, one direction; latency in s per transfer).
# nvlink: the hardware preset's NVLink figure is the bidirectional aggregate (H100/H200 datasheets: 900 GB/s),
#   so one direction gets half; latency ~10 us (NIXL/UCX over NVLink, order of magnitude, not measured here).
# rdma: one 400 Gb/s InfiniBand NDR / ConnectX-7 port per GPU (the DGX H100/H200 layout) = 50 GB/s;
#   latency ~20 us per transfer (RDMA write + NIXL notification, order of magnitude, not measured here).
RDMA_GB_S = 50.0
NVLINK_LATENCY_S = 10e-6
RDMA_LATENCY_S = 20e-6
LINK_KINDS = ("nvlink", "rdma")


@dataclass(frozen=True, slots=True)
class KVLink:
    """One link: bandwidth per GPU (GB/s, inf = instant) and fixed latency per transfer (s)."""

    bandwidth_gb_s: float
    latency_s: float
    kind: str = "custom"

    def __post_init__(self) -> None:
        if not (self.bandwidth_gb_s > 0):  # inf allowed: an infinite link
            raise ConfigError(f"--kv-link-bandwidth: {self.bandwidth_gb_s!r} GB/s must be > 0 (inf = no transfer time)")
        if not (self.latency_s >= 0 and math.isfinite(self.latency_s)):
            raise ConfigError(f"--kv-link-latency: {self.latency_s!r} s must be a finite number >= 0")

    def transfer_s(self, nbytes: float, gpus: int = 1) -> float:
        """Seconds on the wire for nbytes sent by `gpus` GPUs in parallel (each sends its TP shard over its own link)."""
        if math.isinf(self.bandwidth_gb_s):
            return 0.0
        return nbytes / (self.bandwidth_gb_s * 1e9 * gpus)

    def to_dict(self) -> dict:
        """JSON form (strict JSON has no infinity: an infinite link's bandwidth is null)."""
        bw = None if math.isinf(self.bandwidth_gb_s) else self.bandwidth_gb_s
        return {"kind": self.kind, "bandwidth_gb_s": bw, "latency_s": self.latency_s}


def link_preset(kind: str, nvlink_gb_s: float) -> KVLink:
    """The KV link for 'nvlink' (same node, from the hardware preset's NVLink figure) or 'rdma' (between nodes)."""
    if kind == "nvlink":
        if nvlink_gb_s <= 0:
            raise ConfigError("--kv-link nvlink: this hardware preset has no NVLink (nvlink_gb_s = 0); use rdma or --kv-link-bandwidth")
        return KVLink(nvlink_gb_s / 2.0, NVLINK_LATENCY_S, "nvlink")
    if kind == "rdma":
        return KVLink(RDMA_GB_S, RDMA_LATENCY_S, "rdma")
    raise ConfigError(f"--kv-link: {kind!r} is not one of {', '.join(LINK_KINDS)}")
