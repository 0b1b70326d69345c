"""A simulated cluster run: build each pool's instances, run the cluster event loop, summarise per instance.

Sits beside simulation.py (same layer): it resolves configs with simulation's helpers and drives
servesim.cluster. `servesim.simulate(..., instances=N, router=...)` and `servesim run --instances` land here.
"""

from __future__ import annotations

import math
from typing import Any

from servesim import __version__
from servesim.cluster import KVLink, RouterConfig, link_preset, run_cluster
from servesim.cluster.instance import InstanceConfig
from servesim.cluster.spec import PoolSpec
from servesim.config import Hardware, ModelSpec, load_hardware, load_model
from servesim.errors import ConfigError
from servesim.latency.factory import DEFAULT_LATENCY_MODEL, DEFAULT_OVERHEAD
from servesim.metrics import Distribution, per_request, summarize, summarize_by_stage
from servesim.metrics.saturation import ArrivalBins


def _percentiles_ms(values_s: list[float]) -> dict[str, Any]:
    d = Distribution.of(values_s)
    out: dict[str, Any] = {"count": d.count}
    for k in ("mean", "p50", "p90", "p95", "p99"):
        v = getattr(d, k)
        out[k] = None if v is None else v * 1e3
    return out


def _imbalance(xs: list[float]) -> float:
    """max / mean (1.0 = perfectly balanced; 0 when nothing happened)."""
    m = sum(xs) / len(xs) if xs else 0.0
    return max(xs) / m if m > 0 else 0.0


def build_instances(pools: list[PoolSpec], latency_model: Any, overhead: str, calibration: Any) -> tuple[list[InstanceConfig], list[dict], Any]:
    """InstanceConfigs for every pool (count each), their JSON descriptions, and the first pool's calibration."""
    from servesim.simulation import (_latency, check_kv_capacity, engine_dump, engine_kv_layout, kv_blocks_for,
                                     kv_groups_entry, resolve_engine)

    configs: list[InstanceConfig] = []
    described: list[dict] = []
    first_cal = None
    for k, p in enumerate(pools):
        spec = p.model if isinstance(p.model, ModelSpec) else load_model(p.model)
        hw = p.hardware if isinstance(p.hardware, Hardware) else load_hardware(str(p.hardware), p.hardware_config)
        spec.check_tp(p.tp)
        eng = resolve_engine(p.engine, spec, hw, p.tp)
        if eng.kv_offloading_size:
            raise ConfigError(f"pool {p.name}: engine.kv_offloading_size={eng.kv_offloading_size}: CPU KV offload is modelled "
                              "for one instance only, not in a cluster; set it to 0")
        if eng.speculative_config is not None:
            raise ConfigError("--speculative-config: not yet supported for clusters (run one engine with `servesim run`)")
        pd = p.role != "both"  # a PD pool runs a KV connector, which turns vLLM's hybrid KV cache manager off
        blocks = kv_blocks_for(eng, spec, hw, kv_transfer=pd)
        check_kv_capacity(eng, spec, blocks, kv_transfer=pd)  # vLLM refuses to start each instance otherwise
        window, groups = engine_kv_layout(eng, spec, kv_transfer=pd)
        lm_name = latency_model if p.latency_model is None else p.latency_model
        lm, cal = _latency(lm_name, overhead, calibration, spec, hw, p.tp, eng.async_scheduling, eng)
        if k == 0:
            first_cal = cal
        gpus = p.tp * getattr(eng, "pipeline_parallel_size", 1)
        ic = InstanceConfig(eng, lm, blocks, p.name, p.role, spec.kv_bytes_per_token_per_gpu(p.tp) * p.tp, gpus,
                            window, groups)
        configs.extend([ic] * p.count)
        described.append({"name": p.name, "count": p.count, "role": p.role, "model": spec.name, "hardware": hw.name,
                          "tensor_parallel_size": p.tp, "gpus_per_instance": gpus, "num_gpu_blocks": blocks,
                          "latency_model": getattr(lm, "name", str(lm_name)), "engine": engine_dump(eng),
                          "nvlink_gb_s": hw.nvlink_gb_s}
                         | kv_groups_entry(spec, groups))
    return configs, described, first_cal


def _cluster_intervals(summary: dict[str, Any], pools: list[PoolSpec], configs: list[InstanceConfig], cal: Any,
                       max_context: int | None) -> dict[str, Any]:
    """Prediction intervals for a cluster of one pool of identical instances (each is a calibrated engine); none for
    PD or heterogeneous pools, which no calibration run covers."""
    from servesim.simulation import _intervals

    if len(pools) != 1 or pools[0].role != "both":
        return {"available": False, "note": "no calibration run covers prefill/decode or heterogeneous pools"}
    p = pools[0]
    spec = p.model if isinstance(p.model, ModelSpec) else load_model(p.model)
    hw = p.hardware if isinstance(p.hardware, Hardware) else load_hardware(str(p.hardware), p.hardware_config)
    return _intervals(summary, cal, spec, hw, p.tp, configs[0].engine, max_context)


def simulate_cluster(
    pools: list[PoolSpec],
    *,
    workload: Any = None,
    router: RouterConfig | None = None,
    link: KVLink | str | None = None,
    latency_model: Any = DEFAULT_LATENCY_MODEL,
    overhead: str = DEFAULT_OVERHEAD,
    calibration: Any = None,
    frontend_latency_s: float | None = None,
    frontend_per_token_s: float | None = None,
    seed: int | None = None,
    record_token_times: bool | None = None,
    check_invariants: bool = False,
    keep_requests: bool = True,
    event_skipping: bool = True,
    on_record: Any = None,
):  # type: ignore[no-untyped-def]
    """Simulate pools of vLLM instances behind a router (optionally prefill/decode pools joined by a KV link)."""
    from servesim.simulation import STREAM_REL_ERROR, RunResult, _Stream, check_lora_workload, client_source, lora_summary

    router = router or RouterConfig()
    configs, described, cal = build_instances(pools, latency_model, overhead, calibration)
    pd = any(p.role == "decode" for p in pools)
    if isinstance(link, str):
        link = link_preset(link, min(d["nvlink_gb_s"] for d in described))
    if pd and link is None:
        link = link_preset("rdma", 0.0)
    source, wl, closed_loop, frontend_latency_s, frontend_per_token_s = client_source(
        workload, seed, cal, frontend_latency_s, frontend_per_token_s)
    check_lora_workload(wl, [c.engine for c in configs])  # every instance gets the adapters' requests
    if record_token_times is None:
        record_token_times = keep_requests
    records: list = []
    stream = None if keep_requests else _Stream()
    bins = ArrivalBins()  # the cluster's saturation record, as simulate() keeps it for one engine

    def sink(rec) -> None:  # type: ignore[no-untyped-def]
        if stream is None:
            records.append(rec)
        else:
            stream.add(rec)
        bins.add_record(rec)
        if on_record is not None:
            on_record(rec)

    cs = run_cluster(configs, source, router, sink, link=link if pd else None, record_token_times=record_token_times,
                     check_invariants=check_invariants, event_skipping=event_skipping)
    if stream is None:
        records.sort(key=lambda r: r.id)
        summary = summarize(records)
        stages: dict = {}
        if len({r.stage for r in records}) > 1:
            stages = {str(k): v for k, v in summarize_by_stage(records).items()}
    else:
        summary, stages = stream.summaries()
    st = cs.instances
    queried = sum(s.prefix_cache_queried_tokens for s in st)
    summary["preemptions"] = sum(s.preemptions for s in st)
    summary["kv_cache_peak_usage"] = max(s.kv_peak_usage for s in st)
    summary["prefix_cache_hit_rate"] = sum(s.prefix_cache_hit_tokens for s in st) / queried if queried else 0.0
    summary["engine_steps"] = sum(s.steps for s in st)
    summary["engine_busy_s"] = sum(s.busy_s for s in st)
    lora_summary(summary, st, [c.engine for c in configs])
    verdict = bins.verdict(closed_loop=closed_loop)
    summary["saturated"] = verdict.saturated
    summary["saturation"] = verdict.as_dict()
    summary["prediction_intervals"] = _cluster_intervals(summary, pools, configs, cal, bins.max_context_tokens)
    dur = cs.duration_s
    instances = []
    for i, (c, s) in enumerate(zip(configs, st)):
        q = s.prefix_cache_queried_tokens
        n_ttft = s.completed
        instances.append({
            "index": i, "pool": c.pool, "role": c.role, "routed": cs.routed[i], "completed": s.completed,
            "rejected": s.rejected, "kv_cache_peak_usage": s.kv_peak_usage,
            "prefix_cache_hit_rate": s.prefix_cache_hit_tokens / q if q else 0.0,
            "busy_fraction": s.busy_s / dur if dur > 0 else 0.0, "engine_busy_s": s.busy_s, "engine_steps": s.steps,
            "preemptions": s.preemptions,
            "ttft_mean_ms": cs.ttft_sum_s[i] / n_ttft * 1e3 if n_ttft else None,
        })
    # Load imbalance per pool: max / mean over its instances of engine busy time (1.0 = perfectly balanced);
    # request_imbalance: the same over requests routed.
    pools_out: dict[str, Any] = {}
    for p in pools:
        mine = [x for x in instances if x["pool"] == p.name]
        pools_out[p.name] = {
            "role": p.role, "instances": len(mine), "completed": sum(x["completed"] for x in mine),
            "routed": sum(x["routed"] for x in mine),
            "busy_fraction": sum(x["busy_fraction"] for x in mine) / len(mine),
            "load_imbalance": _imbalance([x["engine_busy_s"] for x in mine]),
            "request_imbalance": _imbalance([float(x["routed"]) for x in mine]),
        }
    front = [x for x in instances if x["role"] != "decode"]
    router_out = router.to_dict() | cs.router | {
        "load_imbalance": _imbalance([x["engine_busy_s"] for x in front]),
        "request_imbalance": _imbalance([float(x["routed"]) for x in front]),
    }
    extra: dict[str, Any] = {"instances": instances, "router": router_out, "pools": pools_out}
    if pd:
        extra["kv_transfer"] = {"link": link.to_dict(), "transfer_ms": _percentiles_ms(cs.transfers_s),  # type: ignore[union-attr]
                                "wait_ms": _percentiles_ms(cs.kv_wait_s),
                                "prefill_ttft_ms": _percentiles_ms(cs.prefill_ttft_s),
                                "blocks_sent": cs.blocks_sent, "blocks_received": cs.blocks_received}
    d0 = described[0]
    config = {
        "servesim_version": __version__,
        # The first pool's model/GPU/engine, for readers of single-engine outputs; every pool is under "cluster".
        "model": d0["model"], "hardware": d0["hardware"], "tensor_parallel_size": d0["tensor_parallel_size"],
        "engine": d0["engine"], "num_gpu_blocks": d0["num_gpu_blocks"], "latency_model": d0["latency_model"],
        "cluster": {"pools": described, "router": router.to_dict(), "kv_link": link.to_dict() if pd else None},  # type: ignore[union-attr]
        "gpus": sum(d["count"] * d["gpus_per_instance"] for d in described),
        "overhead": overhead, "calibration": cal.to_dict() if cal is not None else None,
        "frontend_latency_s": frontend_latency_s, "frontend_per_token_s": frontend_per_token_s,
        "workload": wl, "seed": seed,
        "metrics": {"summary": "exact" if keep_requests else "streaming", "record_token_times": record_token_times}
        | ({} if keep_requests else {"percentile_rel_error": STREAM_REL_ERROR}),
    }
    return RunResult(config, summary, [per_request(r) for r in records], stages, records, None, extra, cs)


# Largest cluster a run may build: each instance holds its own scheduler and KV block table in memory.
MAX_INSTANCES = 1024


def _count(flag: str, v: Any, lo: int) -> int:
    """An instance count in [lo, MAX_INSTANCES], or a one-line ConfigError naming the flag."""
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= MAX_INSTANCES:
        raise ConfigError(f"{flag}: {v!r}: must be an integer in [{lo}, {MAX_INSTANCES}]")
    return v


def cluster_from_args(model: Any, hardware: Any, tp: int, engine: Any, hardware_config: Any, *, instances: int = 1,
                      router: Any = None, seed: int | None = None, data_parallel_size: int = 1,
                      prefill_instances: int = 0, decode_instances: int = 0, kv_link: Any = None,
                      cluster: Any = None) -> tuple[list[PoolSpec], RouterConfig, KVLink | str | None]:
    """Pools, router config and KV link from simulate()'s cluster arguments (or a cluster spec)."""
    if cluster is not None:
        from servesim.cluster.spec import ClusterSpec, load_cluster_yaml

        cs = cluster if isinstance(cluster, ClusterSpec) else load_cluster_yaml(str(cluster))
        return cs.pools_list(), cs.router_config(seed), cs.link()
    instances = _count("--instances", instances, 1)
    dp = _count("--data-parallel-size", data_parallel_size, 1)
    p, d = _count("--prefill-instances", prefill_instances, 0), _count("--decode-instances", decode_instances, 0)
    if (p > 0) != (d > 0):
        raise ConfigError(f"--prefill-instances {p} --decode-instances {d}: PD needs both >= 1")
    if sum([instances > 1, dp > 1, p > 0]) > 1:
        raise ConfigError("--instances, --data-parallel-size and --prefill-instances/--decode-instances: choose one")
    eng = dict(engine) if isinstance(engine, dict) else engine
    common = {"model": model, "hardware": hardware, "tp": tp, "engine": eng, "hardware_config": hardware_config}
    if isinstance(router, RouterConfig):
        rcfg = router
    elif isinstance(router, dict):  # {name, weights, staleness_s}, as a cluster spec's router (sweep files)
        from servesim.cluster.spec import parse_cluster

        rcfg = parse_cluster({"pools": [{"name": "x"}], "router": router}, where="router").router_config(seed)
    else:
        name = router if router is not None else ("vllm-dp" if dp > 1 else "round-robin")
        rcfg = RouterConfig(name=name, seed=0 if seed is None else seed)
    if p:
        pools = [PoolSpec(name="prefill", count=p, role="prefill", **common),
                 PoolSpec(name="decode", count=d, role="decode", **common)]
    else:
        pools = [PoolSpec(name="default", count=max(instances, dp), **common)]
    return pools, rcfg, kv_link
