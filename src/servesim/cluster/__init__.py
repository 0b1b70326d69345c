"""The cluster: many engine instances on one clock behind a router, optionally as prefill/decode pools.

Layering: above `engine` (instances drive engine.core.EngineCore) and below `simulation` (which builds the
configs); nothing in config/latency/engine/workload/metrics imports it.
"""

from servesim.cluster.link import KVLink, link_preset
from servesim.cluster.loop import ClusterStats, run_cluster
from servesim.cluster.router import ROUTERS, RouterConfig, make_router, parse_weights

__all__ = ["ROUTERS", "ClusterStats", "KVLink", "RouterConfig", "link_preset", "make_router", "parse_weights", "run_cluster"]
