"""Capacity on the simulated cluster: the fewest GPUs that meet the SLOs at a target rate, with a router.

Not a division: each candidate cluster (n instances behind the router, or x prefill + y decode instances) is
simulated at the target rate, and the first that meets every SLO is the answer. The search for n starts at
the ideal-balancer count ceil(target / one instance's max rate), because no router beats a perfect balancer
of the same instances: a smaller cluster that happens to pass one random arrival sample is sampling luck,
not capacity, so the answer is never more optimistic than the ideal-balancer one.
PD (xPyD): for k = 2, 3, ... total instances, every split x + y = k is simulated; the fewest GPUs wins, ties
broken by the lowest worst-SLO ratio (value / limit). Cost: GPUs x $/GPU-hour; $/1M output tokens =
$/hour / (simulated output tokens/s x 3600) x 1e6.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from servesim.errors import ConfigError
from servesim.sweep.capacity import Slo, instances_for

# Indicative on-demand $/GPU-hour: midpoints of the "specialty cloud" on-demand ranges in Mercatus, "Cloud GPU
# pricing" (https://www.mercatus-ai.com/blog/cloud-gpu-pricing, May 2026): A100 80GB $1.10-1.50, H100 SXM5
# $2.50-3.50, H200 SXM5 $3.50-4.50. Prices vary 2-3x across providers and over time; pass --gpu-hour-price.
GPU_HOUR_PRICE_USD = {"A100-80GB": 1.30, "H100-SXM": 3.00, "H200": 4.00}
PRICE_SOURCE = "indicative: midpoint of specialty-cloud on-demand ranges, mercatus-ai.com/blog/cloud-gpu-pricing, May 2026"


MAX_GPU_HOUR_PRICE_USD = 1000.0  # no GPU rents for more; a larger figure is a typo (cents, or $/month)


def check_cluster_search(router: str, max_instances: int, price: float | None) -> None:
    """Refuse a bad --router, --max-instances or --gpu-hour-price before any probe runs (one line, the flag named)."""
    from servesim.cluster import RouterConfig
    from servesim.cluster_sim import MAX_INSTANCES

    RouterConfig(router)
    if isinstance(max_instances, bool) or not isinstance(max_instances, int) or not 1 <= max_instances <= MAX_INSTANCES:
        raise ConfigError(f"--max-instances: {max_instances!r}: must be an integer in [1, {MAX_INSTANCES}]")
    if price is not None:
        gpu_hour_price("", price)


def gpu_hour_price(hardware: str, override: float | None) -> float | None:
    """$/GPU-hour for a hardware preset name: the override, the default table's, or None (unknown GPU)."""
    if override is not None:
        if isinstance(override, bool) or not (0 < override <= MAX_GPU_HOUR_PRICE_USD):
            raise ConfigError(f"--gpu-hour-price: {override!r}: must be a finite number in (0, {MAX_GPU_HOUR_PRICE_USD:g}] ($ per GPU-hour)")
        return float(override)
    from servesim.config import load_hardware

    try:
        name = load_hardware(hardware).name
    except ConfigError:
        return None
    return GPU_HOUR_PRICE_USD.get(name)


def probe(kwargs: dict[str, Any], rate: float, slos: Sequence[Slo], summary: str = "exact") -> tuple[bool, dict[str, Any]]:
    """One probe: simulate kwargs (a whole cluster when it carries instances/router) at rate; (SLOs met, summary)."""
    from servesim.simulation import simulate
    from servesim.sweep.grid import point_kwargs

    res = simulate(**point_kwargs(kwargs, {"rate": rate}), keep_requests=summary == "exact")
    s = res.summary
    return all(x.met(s) for x in slos), s


def _worst(slos: Sequence[Slo], s: dict[str, Any]) -> float:
    vals = [(x.value(s) or float("inf")) / x.limit_ms for x in slos]
    return max(vals)


def _cost(gpus: int, price: float | None, s: dict[str, Any]) -> dict[str, Any]:
    if price is None:
        return {"usd_per_gpu_hour": None, "usd_per_hour": None, "usd_per_1m_output_tokens": None}
    per_hour = gpus * price
    tok = s.get("output_tokens_per_s") or 0.0
    return {"usd_per_gpu_hour": price, "usd_per_hour": per_hour,
            "usd_per_1m_output_tokens": per_hour / (tok * 3600.0) * 1e6 if tok > 0 else None}


def cluster_capacity_task(label: str, kwargs: dict[str, Any], slos: list[Slo], target_rate: float, router: str,
                          max_rate: float | None, max_instances: int, pd: bool, summary: str,
                          price: float | None) -> dict[str, Any]:
    """Fewest GPUs meeting the SLOs at target_rate (see the module docstring); runs in a worker."""
    from servesim.errors import ServesimError

    tp = int(kwargs.get("tp") or 1)
    base_n = (kwargs.get("workload") or {}).get("num_requests")

    def sized(kw: dict[str, Any], n: int) -> dict[str, Any]:
        # Each instance sees about as many requests as one single-instance probe: num_requests x instances.
        if base_n:
            kw = {**kw, "workload": {**kw["workload"], "num_requests": int(base_n) * n}}
        return kw

    ideal = instances_for(target_rate, max_rate)
    out: dict[str, Any] = {"label": label, "router": router, "target_rate": target_rate, "ideal_instances": ideal,
                           "pd": pd, "instances": None, "gpus": None, "probes": [], "price_source": PRICE_SOURCE}
    try:
        if not pd:
            start = ideal if ideal is not None else 1
            for n in range(start, max_instances + 1):
                ok, s = probe(sized({**kwargs, "instances": n, "router": router}, n), target_rate, slos, summary)
                out["probes"].append({"instances": n, "ok": ok, **{x.name: x.value(s) for x in slos}})
                if ok:
                    out.update(instances=n, gpus=n * tp, **_cost(n * tp, price, s),
                               output_tokens_per_s=s.get("output_tokens_per_s"))
                    break
        else:
            for k in range(2, max_instances + 1):
                best = None
                for x in range(1, k):
                    kw = {**kwargs, "prefill_instances": x, "decode_instances": k - x, "router": router}
                    ok, s = probe(sized(kw, k), target_rate, slos, summary)
                    out["probes"].append({"prefill": x, "decode": k - x, "ok": ok, **{z.name: z.value(s) for z in slos}})
                    if ok and (best is None or _worst(slos, s) < best[0]):
                        best = (_worst(slos, s), x, s)
                if best is not None:
                    _, x, s = best
                    out.update(instances=k, prefill=x, decode=k - x, gpus=k * tp, **_cost(k * tp, price, s),
                               output_tokens_per_s=s.get("output_tokens_per_s"))
                    break
    except ServesimError as exc:
        out["error"] = str(exc)
    return out


def run_cluster_capacity(
    configs: Sequence[tuple[str, dict[str, Any], dict[str, Any]]], results: Sequence[dict[str, Any]],
    slos: Sequence[Slo], *, target_rate: float, router: str = "round-robin", max_instances: int = 16, pd: bool = False,
    summary: str = "exact", gpu_hour_price_usd: float | None = None, workers: int = 1, use_ray: bool = False,
    ray_address: str | None = None,
) -> list[dict[str, Any]]:
    """Cluster capacity of each configuration, given its single-instance search result (for the ideal count)."""
    from contextlib import closing

    from servesim.cluster import RouterConfig
    from servesim.sweep.runner import run_tasks

    check_cluster_search(router, max_instances, gpu_hour_price_usd)  # before any work
    tasks = []
    for (label, params, kw), res in zip(configs, results):
        price = gpu_hour_price(str(params.get("hardware", kw.get("hardware", "H100"))), gpu_hour_price_usd)
        tasks.append((label, kw, list(slos), target_rate, router, res.get("max_rate"), max_instances, pd, summary, price))
    out: list[dict[str, Any] | None] = [None] * len(tasks)
    with closing(run_tasks(cluster_capacity_task, tasks, workers=workers, use_ray=use_ray, ray_address=ray_address)) as it:
        for i, r in it:  # each task is whole cluster simulations, on the same executors as any sweep point
            out[i] = r
    return out  # type: ignore[return-value]
