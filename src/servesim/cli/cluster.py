"""Cluster flags of `servesim run` and the per-instance table it prints."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from servesim.cli.common import make_console
from servesim.errors import ServesimError


def cluster_args(*, instances: int, router: str | None, router_weights: str | None, router_staleness: float | None,
                 data_parallel_size: int, prefill_instances: int, decode_instances: int, kv_link: str | None,
                 kv_link_bandwidth: float | None, kv_link_latency: float | None, cluster: Path | None,
                 seed: int | None) -> dict[str, Any]:
    """simulate() keyword arguments for the cluster flags ({} when none is given: a single engine)."""
    from servesim.cluster import KVLink, RouterConfig, parse_weights

    pd = prefill_instances or decode_instances
    given = (instances != 1 or data_parallel_size != 1 or pd or router is not None or cluster is not None)
    if not given:
        for flag, v in (("--router-weights", router_weights), ("--router-staleness", router_staleness),
                        ("--kv-link", kv_link), ("--kv-link-bandwidth", kv_link_bandwidth), ("--kv-link-latency", kv_link_latency)):
            if v is not None:
                raise ServesimError(f"{flag}: only used with --instances, --router, --data-parallel-size, --prefill-instances/--decode-instances or --cluster")
        return {}
    if cluster is not None:
        for flag, v in (("--router", router), ("--router-weights", router_weights), ("--kv-link", kv_link),
                        ("--kv-link-bandwidth", kv_link_bandwidth)):
            if v is not None:
                raise ServesimError(f"{flag}: give it in --cluster {cluster} instead (the spec sets the router and link)")
        if instances != 1 or data_parallel_size != 1 or pd:
            raise ServesimError(f"--cluster {cluster}: the spec sets the pools; drop --instances/--data-parallel-size/--prefill-instances/--decode-instances")
        return {"cluster": cluster}
    if router_weights is not None and router != "weighted":
        raise ServesimError(f"--router-weights: only used with --router weighted (got --router {router})")
    name = router if router is not None else ("vllm-dp" if data_parallel_size > 1 else "round-robin")
    kw: dict[str, Any] = {}
    if name == "weighted" and router_weights is not None:
        kw["weights"] = parse_weights(router_weights)
    rcfg = RouterConfig(name=name, staleness_s=router_staleness, seed=0 if seed is None else seed, **kw)
    link: Any = None
    if kv_link_bandwidth is not None:
        link = KVLink(kv_link_bandwidth, 0.0 if kv_link_latency is None else kv_link_latency)
    elif kv_link_latency is not None:
        raise ServesimError("--kv-link-latency: give --kv-link-bandwidth too (or use a --kv-link preset)")
    elif kv_link is not None:
        link = kv_link
    if link is not None and not pd:
        raise ServesimError("--kv-link: only used with --prefill-instances/--decode-instances")
    return {"instances": instances, "router": rcfg, "data_parallel_size": data_parallel_size,
            "prefill_instances": prefill_instances, "decode_instances": decode_instances, "kv_link": link}


def render_cluster(result) -> None:  # type: ignore[no-untyped-def]
    """Print the per-instance table, router line and (PD) KV transfer line of a cluster run."""
    from rich.table import Table

    console = make_console()
    cl = result.cluster
    table = Table(title=None)
    for col in ("instance", "pool", "role", "routed", "completed", "rejected", "TTFT mean (ms)", "KV peak", "prefix hits", "busy"):
        table.add_column(col, justify="left" if col in ("pool", "role") else "right")
    for x in cl["instances"]:
        ttft = "–" if x["ttft_mean_ms"] is None else f"{x['ttft_mean_ms']:,.2f}"
        table.add_row(str(x["index"]), x["pool"], x["role"], f"{x['routed']:,}", f"{x['completed']:,}", f"{x['rejected']:,}",
                      ttft, f"{100 * x['kv_cache_peak_usage']:.1f} %", f"{100 * x['prefix_cache_hit_rate']:.1f} %",
                      f"{100 * x['busy_fraction']:.1f} %")
    console.print(table)
    r = cl["router"]
    console.print(f"router {r['name']} · staleness {r['staleness_s']:g} s · load imbalance (max/mean busy time) "
                  f"{r['load_imbalance']:.3f} · request imbalance (max/mean routed) {r['request_imbalance']:.3f}")
    kt = cl.get("kv_transfer")
    if kt:
        t = kt["transfer_ms"]
        fmt = lambda v: "–" if v is None else f"{v:,.3f}"  # noqa: E731
        bw = kt["link"]["bandwidth_gb_s"]
        console.print(f"KV transfers {t['count']:,} over {kt['link']['kind']} ({'∞' if bw is None else f'{bw:g}'} GB/s, "
                      f"{kt['link']['latency_s'] * 1e6:g} µs): mean {fmt(t['mean'])} ms · p50 {fmt(t['p50'])} · "
                      f"p99 {fmt(t['p99'])} · wait for blocks/link mean {fmt(kt['wait_ms']['mean'])} ms · blocks sent {kt['blocks_sent']:,} = received {kt['blocks_received']:,}")
