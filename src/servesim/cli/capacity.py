"""`servesim capacity`: the highest request rate one engine meets SLOs at, per configuration (bisection on rate)."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any, Optional

import typer

from servesim.cli.run import SpeculativeAcceptanceOpt, SpeculativeConfigOpt
from servesim.cli.common import (
    DisableHybridKvOpt, EnableLoraOpt, LoraAdaptersOpt, MaxCpuLorasOpt, MaxLoraRankOpt, MaxLorasOpt, lora_engine_args,
    HardwareConfigOpt,
    LatencyModelOpt,
    OverheadOpt,
    check_files,
    echo_json,
    make_console,
    one_line,
    write_json_atomic,
)

CLUSTER_HELP = "Cluster (with --target-rate: simulate the cluster at that rate; docs/CLUSTER.md)"
WORKLOAD_HELP = "Workload (the rate is what is searched; default: the 'chat' preset's lengths, Poisson arrivals)"


def register(app: typer.Typer) -> None:
    """Add the `capacity` command."""

    @app.command("capacity")
    def capacity(
        slo: list[str] = typer.Option(..., "--slo", help="SLO as METRIC_STAT_ms=VALUE, repeatable: ttft_p99_ms=500, itl_mean_ms=50 (metrics ttft|itl|tpot|e2e|queue; stats mean|p50|p90|p95|p99)."),
        model: list[str] = typer.Option(["llama-2-7b-hf"], "--model", "-m", help="Model (repeatable: one configuration per model × hardware × tp)."),
        hardware: list[str] = typer.Option(["H100"], "--hardware", help="GPU preset (repeatable)."),
        tp: list[int] = typer.Option([1], "--tp", "-tp", "--tensor-parallel-size", help="Tensor-parallel degree (repeatable).", min=1),
        hardware_config: Optional[Path] = HardwareConfigOpt,
        latency_model: str = LatencyModelOpt,
        overhead: str = OverheadOpt,
        calibration: Optional[Path] = typer.Option(None, "--calibration", help="Calibration JSON for --latency-model calibrated (default: the shipped one); its prediction intervals give the rate range."),
        max_num_seqs: Optional[int] = typer.Option(None, "--max-num-seqs", help="vLLM max_num_seqs."),
        max_num_batched_tokens: Optional[int] = typer.Option(None, "--max-num-batched-tokens", help="vLLM max_num_batched_tokens."),
        enable_lora: bool = EnableLoraOpt,
        max_loras: int = MaxLorasOpt,
        max_lora_rank: int = MaxLoraRankOpt,
        max_cpu_loras: Optional[int] = MaxCpuLorasOpt,
        lora_adapters: Optional[int] = LoraAdaptersOpt,
        kv_offloading_size: float = typer.Option(0.0, "--kv-offloading-size", help="CPU KV offload in GiB, total over TP x PP ranks (0 = off)."),
        kv_offloading_backend: str = typer.Option("native", "--kv-offloading-backend", help="native | lmcache (both modelled as the native LRU CPU tier)."),
        disable_hybrid_kv_cache_manager: bool = DisableHybridKvOpt,
        speculative_config: Optional[str] = SpeculativeConfigOpt,
        speculative_acceptance: Optional[str] = SpeculativeAcceptanceOpt,
        workload: Optional[str] = typer.Option(None, "--workload", help="Workload YAML or preset (its rate is replaced).", rich_help_panel=WORKLOAD_HELP),
        num_requests: Optional[int] = typer.Option(None, "--num-requests", help="Fixed-length probes of this many requests (default: steady-state probes that run until the SLO statistic is stable).", rich_help_panel=WORKLOAD_HELP),
        duration: Optional[float] = typer.Option(None, "--duration", help="Fixed-length probes of this many seconds of arrivals.", rich_help_panel=WORKLOAD_HELP),
        prompt_tokens: Optional[int] = typer.Option(None, "--prompt-tokens", rich_help_panel=WORKLOAD_HELP),
        prompt_tokens_stdev: Optional[float] = typer.Option(None, "--prompt-tokens-stdev", rich_help_panel=WORKLOAD_HELP),
        output_tokens: Optional[int] = typer.Option(None, "--output-tokens", rich_help_panel=WORKLOAD_HELP),
        output_tokens_stdev: Optional[float] = typer.Option(None, "--output-tokens-stdev", rich_help_panel=WORKLOAD_HELP),
        arrival: Optional[str] = typer.Option(None, "--arrival", help="poisson | constant | gamma.", rich_help_panel=WORKLOAD_HELP),
        seed: Optional[int] = typer.Option(None, "--seed", rich_help_panel=WORKLOAD_HELP),
        rate_min: float = typer.Option(0.5, "--rate-min", help="Lowest rate probed (req/s)."),
        rate_max: float = typer.Option(256.0, "--rate-max", help="Highest rate probed (req/s)."),
        tolerance: float = typer.Option(0.02, "--tolerance", help="Stop when the pass/fail rates are within this relative gap."),
        target_rate: Optional[float] = typer.Option(None, "--target-rate", help="Also report the fewest instances for this total rate (req/s)."),
        workers: int = typer.Option(1, "--workers", "-j", help="Configurations searched in parallel (local processes).", min=1),
        ray: bool = typer.Option(False, "--ray", help="Search configurations on Ray."),
        ray_address: Optional[str] = typer.Option(None, "--ray-address", help="Ray cluster address (implies --ray)."),
        router: str = typer.Option("round-robin", "--router", help="With --target-rate: the router of the simulated cluster (servesim run --router).", rich_help_panel=CLUSTER_HELP),
        pd: bool = typer.Option(False, "--pd", help="With --target-rate: search prefill/decode pool sizes (xPyD) instead of identical instances.", rich_help_panel=CLUSTER_HELP),
        max_instances: int = typer.Option(16, "--max-instances", help="With --target-rate: largest cluster tried (instances).", rich_help_panel=CLUSTER_HELP),
        gpu_hour_price: Optional[float] = typer.Option(None, "--gpu-hour-price", help="$ per GPU-hour (default: an indicative table for A100-80GB, H100-SXM, H200; docs/CLUSTER.md).", rich_help_panel=CLUSTER_HELP),
        output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write the results (every probe included) as JSON."),
        json_out: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    ) -> None:
        """Highest request rate meeting every SLO, per configuration (one engine instance per simulation)."""
        from servesim.sweep.capacity import check_search, parse_slo, run_capacity
        from servesim.sweep.cluster_capacity import check_cluster_search
        from servesim.workload import load_workload, workload_from_flags

        slos = [parse_slo(s) for s in slo]
        check_search(slos, rate_min, rate_max, tolerance)
        check_cluster_search(router, max_instances, gpu_hour_price)
        check_files([("--output", output)], [("--workload", workload), ("--hardware-config", hardware_config)])
        base: Any = "chat"
        if workload is not None:
            base = load_workload(workload)
        spec = workload_from_flags(
            base=base, rate=rate_min, num_requests=num_requests, duration_s=duration, prompt_tokens=prompt_tokens,
            prompt_tokens_stdev=prompt_tokens_stdev, output_tokens=output_tokens, output_tokens_stdev=output_tokens_stdev,
            arrival=arrival, seed=seed, lora_adapters=lora_adapters,
        )
        wl = spec.model_dump(mode="json", exclude_none=True)
        engine = {k: v for k, v in {"max_num_seqs": max_num_seqs, "max_num_batched_tokens": max_num_batched_tokens}.items() if v is not None}
        engine.update(lora_engine_args(enable_lora, max_loras, max_lora_rank, max_cpu_loras))
        if disable_hybrid_kv_cache_manager:  # only when set: outputs without it stay as they were
            engine["disable_hybrid_kv_cache_manager"] = True
        if kv_offloading_size or kv_offloading_backend != "native":  # only when set: outputs without it stay as they were
            from servesim.config.engine import engine_config

            engine_config(kv_offloading_size=kv_offloading_size, kv_offloading_backend=kv_offloading_backend)  # named before any search
            engine.update(kv_offloading_size=kv_offloading_size, kv_offloading_backend=kv_offloading_backend)
        from servesim.config.speculative import parse_speculative_config

        sc = parse_speculative_config(speculative_config, speculative_acceptance)
        if sc is not None:
            engine["speculative_config"] = sc.model_dump(mode="json")
        configs = []
        for m, hw, t in itertools.product(model, hardware, tp):
            kw = {"model": m, "hardware": hw, "tp": t, "latency_model": latency_model, "overhead": overhead,
                  "workload": wl, "engine": engine, "seed": seed}
            if hardware_config is not None:
                kw["hardware_config"] = str(hardware_config)
            if calibration is not None:
                kw["calibration"] = str(calibration)
            configs.append((f"{m} · {hw} · TP{t}", {"model": m, "hardware": hw, "tp": t}, kw))
        # Steady-state probes (sweep/steady.py) unless the user fixed the probe length.
        steady = num_requests is None and duration is None
        results = run_capacity(configs, slos, rate_lo=rate_min, rate_hi=rate_max, rel_tol=tolerance, target_rate=target_rate,
                               workers=workers, use_ray=ray or ray_address is not None, ray_address=ray_address, steady=steady)
        cluster = None
        if target_rate is not None:
            from servesim.sweep.cluster_capacity import run_cluster_capacity

            cluster = run_cluster_capacity(configs, results, slos, target_rate=target_rate, router=router, pd=pd,
                                           max_instances=max_instances, gpu_hour_price_usd=gpu_hour_price, workers=workers,
                                           use_ray=ray or ray_address is not None, ray_address=ray_address)
        doc = {
            "slos": {s.name: s.limit_ms for s in slos},
            "search": {"rate_min": rate_min, "rate_max": rate_max, "tolerance": tolerance,
                       "probes": "steady-state (warm-up and cool-down dropped, run until the SLO statistic's CI is narrow or the queue grows; sweep/steady.py)"
                       if steady else "fixed-length (whole run, warm-up included)"},
            "workload": wl,
            "target_rate": target_rate,
            "assumption": "one simulation = one engine instance; instances = ceil(target_rate / max_rate) under ideal load balancing",
            "results": results,
        }
        if cluster is not None:
            doc["cluster"] = cluster
            doc["cluster_method"] = ("each candidate cluster simulated at target_rate behind the router, from the ideal-balancer "
                                     "count up (never fewer); num_requests x instances per probe (docs/CLUSTER.md)")
        if output is not None:
            write_json_atomic(output, doc)
        if json_out:
            echo_json(doc, indent=2)
            return
        _render(results, slos, target_rate)
        if cluster is not None:
            _render_cluster(cluster, slos)


def _rate(x) -> str:  # type: ignore[no-untyped-def]
    return "below --rate-min" if x is None else f"{x:.2f}"


def _how_sure(r) -> str:  # type: ignore[no-untyped-def]
    """The verdicts of the probes that bracket the answer (steady-state probes only)."""
    ev = r["evaluations"]
    passing = [e for e in ev if e["ok"] and e["rate"] == r["max_rate"] and e.get("probe")]
    failing = sorted((e for e in ev if not e["ok"] and e.get("probe") and (r["max_rate"] is None or e["rate"] > r["max_rate"])), key=lambda e: e["rate"])
    parts = []
    if passing:
        p = passing[-1]["probe"]
        parts.append(f"pass: {p['reason']} ({p['used']:,} of {p['requests']:,} requests)")
    if failing:
        p = failing[0]["probe"]
        parts.append(f"fail at {failing[0]['rate']:.2f}: {p['reason']}")
    return " · ".join(parts) or "fixed-length probes (no confidence measure)"


def _render(results, slos, target_rate) -> None:  # type: ignore[no-untyped-def]
    from rich.table import Table

    console = make_console()
    table = Table(title=one_line("capacity: " + " · ".join(f"{s.name} ≤ {s.limit_ms:g}" for s in slos)))
    table.add_column("configuration")
    table.add_column("max rate (req/s)", justify="right")
    for s in slos:
        table.add_column(f"{s.name} at max", justify="right")
    table.add_column("probes", justify="right")
    table.add_column("how sure", overflow="fold")
    if any(r.get("rate_range") for r in results):
        table.add_column("80 % range (req/s)", justify="right")
    if target_rate is not None:
        table.add_column(f"instances (GPUs) for {target_rate:g} req/s", justify="right")
    for r in results:
        if r.get("error"):
            table.add_row(r["label"], f"[red]{r['error']}[/]", *[""] * (len(slos) + 1 + (target_rate is not None)))
            continue
        best = next((e for e in reversed(r["evaluations"]) if e["ok"] and e["rate"] == r["max_rate"]), None)
        rate = "below --rate-min" if r["max_rate"] is None else f"{r['max_rate']:.2f}" + ("" if r["bracketed"] else "+ (≥ --rate-max)")
        row = [r["label"], rate, *[("–" if best is None or best.get(s.name) is None else f"{best[s.name]:,.1f}") for s in slos], str(len(r["evaluations"]))]
        row.append(_how_sure(r))
        if any(x.get("rate_range") for x in results):
            rr = r.get("rate_range")
            row.append("–" if not rr else f"{_rate(rr['pessimistic'])} – {_rate(rr['optimistic'])}")
        if target_rate is not None:
            cell = "–" if r["instances"] is None else f"{r['instances']} ({r['gpus']} GPUs)"
            if r.get("instances_pessimistic") is not None:
                cell += f"; pessimistic {r['instances_pessimistic']} ({r['gpus_pessimistic']} GPUs)"
            row.append(cell)
        table.add_row(*row)
    console.print(table)
    if target_rate is not None:
        console.print("instances = ceil(target rate / max rate): independent engine instances behind an ideal load balancer; GPUs = instances × TP"
                      + ("; pessimistic = at the low end of the 80 % rate range." if any(r.get("rate_range") for r in results) else "."))
    if not any(r.get("rate_range") for r in results):
        console.print("rate range: none (needs --latency-model calibrated and a calibration file with prediction intervals)")



def _render_cluster(cluster, slos) -> None:  # type: ignore[no-untyped-def]
    from rich.table import Table

    console = make_console()
    c0 = cluster[0] if cluster else {}
    table = Table(title=one_line(f"cluster at {c0.get('target_rate', 0):g} req/s, router {c0.get('router', '')} (simulated, not divided)"))
    for col in ("configuration", "ideal instances", "instances", "GPUs", "$/hour", "$/1M output tokens", "probes"):
        table.add_column(col, justify="left" if col == "configuration" else "right")
    for r in cluster:
        if r.get("error"):
            table.add_row(r["label"], f"[red]{r['error']}[/]", "", "", "", "", "")
            continue
        inst = "–" if r["instances"] is None else (f"{r['prefill']}P{r['decode']}D" if r.get("pd") else str(r["instances"]))
        usd = r.get("usd_per_hour")
        tok = r.get("usd_per_1m_output_tokens")
        table.add_row(r["label"], "–" if r["ideal_instances"] is None else str(r["ideal_instances"]),
                      inst if r["instances"] is not None else "none ≤ --max-instances",
                      "–" if r["gpus"] is None else str(r["gpus"]), "–" if usd is None else f"{usd:,.2f}",
                      "–" if tok is None else f"{tok:,.3f}", str(len(r["probes"])))
    console.print(table)
    console.print(f"prices: {c0.get('price_source', '')}; --gpu-hour-price sets your own.")
