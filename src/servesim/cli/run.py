"""`servesim run`: simulate one vLLM engine serving a workload; print and save what clients measure."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Optional

import typer

from servesim.cli.common import (
    DtypeOpt, HardwareConfigOpt, HardwareOpt, KvCacheDtypeOpt, LatencyModelOpt, ModelOpt, OverheadOpt, EpOpt, PpOpt, QuantizationOpt, TpOpt, check_files, echo_json, make_console, write_atomic, write_json_atomic,
)
from servesim.errors import ServesimError

ENGINE_HELP = "vLLM engine (vLLM names; defaults are vLLM V1's for the GPU)"
SpeculativeConfigOpt = typer.Option(None, "--speculative-config", help='Speculative decoding, vLLM JSON: {"method": "ngram|eagle|eagle3|mtp|draft_model|suffix", "num_speculative_tokens": k[, "model": draft]}.', rich_help_panel=ENGINE_HELP)
SpeculativeAcceptanceOpt = typer.Option(None, "--speculative-acceptance", help="Per-token draft acceptance probability, or a comma list per position (default: the method's published figure; docs/LATENCY.md).", rich_help_panel=ENGINE_HELP)
CLUSTER_HELP = "Cluster (many instances behind a router; docs/CLUSTER.md)"
WORKLOAD_HELP = "Workload (GuideLLM/BLIS flag names; default: the 'chat' preset)"


def register(app: typer.Typer) -> None:
    """Add the `run` command."""

    @app.command("run")
    def run(
        model: str = ModelOpt,
        hardware: str = HardwareOpt,
        hardware_config: Optional[Path] = HardwareConfigOpt,
        tp: int = TpOpt,
        pp: int = PpOpt,
        enable_expert_parallel: bool = EpOpt,
        dtype: str = DtypeOpt,
        quantization: Optional[str] = QuantizationOpt,
        kv_cache_dtype: str = KvCacheDtypeOpt,
        latency_model: str = LatencyModelOpt,
        overhead: str = OverheadOpt,
        frontend_latency_ms: Optional[float] = typer.Option(None, "--frontend-latency-ms", help="API-server/tokenisation time per request before the engine sees it (ms; counted in TTFT; default: the calibration's, else 0)."),
        calibration: Optional[str] = typer.Option(None, "--calibration", help="Calibration JSON for --latency-model calibrated (default: the shipped one)."),
        max_num_seqs: Optional[int] = typer.Option(None, "--max-num-seqs", help="Max requests in a step.", rich_help_panel=ENGINE_HELP),
        max_num_batched_tokens: Optional[int] = typer.Option(None, "--max-num-batched-tokens", help="Token budget per step.", rich_help_panel=ENGINE_HELP),
        block_size: int = typer.Option(16, "--block-size", help="Tokens per KV block.", rich_help_panel=ENGINE_HELP),
        gpu_memory_utilization: float = typer.Option(0.9, "--gpu-memory-utilization", help="Fraction of GPU memory vLLM may use.", rich_help_panel=ENGINE_HELP),
        num_gpu_blocks_override: Optional[int] = typer.Option(None, "--num-gpu-blocks-override", help="KV blocks per GPU (skips the memory estimate).", rich_help_panel=ENGINE_HELP),
        enable_prefix_caching: bool = typer.Option(True, "--enable-prefix-caching/--no-enable-prefix-caching", help="Automatic prefix caching.", rich_help_panel=ENGINE_HELP),
        long_prefill_token_threshold: int = typer.Option(0, "--long-prefill-token-threshold", help="Cap on one request's prefill chunk (0 = none).", rich_help_panel=ENGINE_HELP),
        max_model_len: Optional[int] = typer.Option(None, "--max-model-len", help="Longest prompt+output accepted (default: the model's).", rich_help_panel=ENGINE_HELP),
        async_scheduling: bool = typer.Option(True, "--async-scheduling/--no-async-scheduling", help="Schedule step k+1 while step k runs (vLLM >= 0.14 default).", rich_help_panel=ENGINE_HELP),
        speculative_config: Optional[str] = SpeculativeConfigOpt,
        speculative_acceptance: Optional[str] = SpeculativeAcceptanceOpt,
        workload: Optional[str] = typer.Option(None, "--workload", help="Workload YAML file or preset name (chat).", rich_help_panel=WORKLOAD_HELP),
        rate: Optional[float] = typer.Option(None, "--rate", help="Requests per second (open loop).", rich_help_panel=WORKLOAD_HELP),
        num_requests: Optional[int] = typer.Option(None, "--num-requests", help="Requests to send.", rich_help_panel=WORKLOAD_HELP),
        duration: Optional[float] = typer.Option(None, "--duration", help="Stop sending after this many seconds.", rich_help_panel=WORKLOAD_HELP),
        prompt_tokens: Optional[int] = typer.Option(None, "--prompt-tokens", rich_help_panel=WORKLOAD_HELP),
        prompt_tokens_stdev: Optional[float] = typer.Option(None, "--prompt-tokens-stdev", rich_help_panel=WORKLOAD_HELP),
        prompt_tokens_min: Optional[int] = typer.Option(None, "--prompt-tokens-min", rich_help_panel=WORKLOAD_HELP),
        prompt_tokens_max: Optional[int] = typer.Option(None, "--prompt-tokens-max", rich_help_panel=WORKLOAD_HELP),
        output_tokens: Optional[int] = typer.Option(None, "--output-tokens", rich_help_panel=WORKLOAD_HELP),
        output_tokens_stdev: Optional[float] = typer.Option(None, "--output-tokens-stdev", rich_help_panel=WORKLOAD_HELP),
        output_tokens_min: Optional[int] = typer.Option(None, "--output-tokens-min", rich_help_panel=WORKLOAD_HELP),
        output_tokens_max: Optional[int] = typer.Option(None, "--output-tokens-max", rich_help_panel=WORKLOAD_HELP),
        prefix_tokens: Optional[int] = typer.Option(None, "--prefix-tokens", help="Shared prefix on every prompt (counted in the prompt).", rich_help_panel=WORKLOAD_HELP),
        arrival: Optional[str] = typer.Option(None, "--arrival", help="synchronous | concurrency | constant | poisson | gamma.", rich_help_panel=WORKLOAD_HELP),
        concurrency: Optional[int] = typer.Option(None, "--concurrency", help="Closed-loop clients.", rich_help_panel=WORKLOAD_HELP),
        cv: Optional[float] = typer.Option(None, "--cv", help="Burstiness (coefficient of variation) for gamma arrivals.", rich_help_panel=WORKLOAD_HELP),
        trace: Optional[Path] = typer.Option(None, "--trace", help="Replay a trace: CSV/JSONL (arrival_time_s,input_tokens,output_tokens[,prefix_group]) or an inference-perf replay JSON.", rich_help_panel=WORKLOAD_HELP),
        seed: Optional[int] = typer.Option(None, "--seed", help="Random seed (default: the workload's).", rich_help_panel=WORKLOAD_HELP),
        output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write config, summary and per-request records as JSON."),
        requests_csv: Optional[Path] = typer.Option(None, "--requests-csv", help="Write per-request records as CSV."),
        json_out: bool = typer.Option(False, "--json", help="Print the summary as JSON instead of a table."),
        check_invariants: bool = typer.Option(False, "--check-invariants", help="Check KV/scheduler invariants after every step."),
        itl_samples: bool = typer.Option(False, "--itl-samples", help="Keep every output token's time (exact pooled ITL percentiles; more memory)."),
        steady_state: bool = typer.Option(False, "--steady-state", help="Also summarise the steady state: warm-up (MSER-5) and cool-down dropped (summary.steady_state)."),
        instances: int = typer.Option(1, "--instances", help="Identical vLLM instances behind the router.", rich_help_panel=CLUSTER_HELP),
        router: Optional[str] = typer.Option(None, "--router", help="round-robin | random | least-requests | least-kv | prefix-aware | weighted | vllm-dp.", rich_help_panel=CLUSTER_HELP),
        router_weights: Optional[str] = typer.Option(None, "--router-weights", help="Scorer weights for --router weighted, e.g. queue=2,kv=2,prefix=3 (llm-d's defaults).", rich_help_panel=CLUSTER_HELP),
        router_staleness: Optional[float] = typer.Option(None, "--router-staleness", help="Seconds between scrapes of instance state the router reads (default 0 = live; vllm-dp 0.1).", rich_help_panel=CLUSTER_HELP),
        data_parallel_size: int = typer.Option(1, "--data-parallel-size", help="vLLM data parallel engines with vLLM's internal load balancer.", rich_help_panel=CLUSTER_HELP),
        prefill_instances: int = typer.Option(0, "--prefill-instances", help="PD: prefill instances (with --decode-instances).", rich_help_panel=CLUSTER_HELP),
        decode_instances: int = typer.Option(0, "--decode-instances", help="PD: decode instances (with --prefill-instances).", rich_help_panel=CLUSTER_HELP),
        kv_link: Optional[str] = typer.Option(None, "--kv-link", help="PD KV link preset: nvlink (same node) | rdma (between nodes; default).", rich_help_panel=CLUSTER_HELP),
        kv_link_bandwidth: Optional[float] = typer.Option(None, "--kv-link-bandwidth", help="PD KV link bandwidth per GPU, GB/s (overrides --kv-link; inf = instant).", rich_help_panel=CLUSTER_HELP),
        kv_link_latency: Optional[float] = typer.Option(None, "--kv-link-latency", help="PD KV link latency per transfer, s (with --kv-link-bandwidth; default 0).", rich_help_panel=CLUSTER_HELP),
        cluster: Optional[Path] = typer.Option(None, "--cluster", help="Cluster spec YAML: heterogeneous pools, router, KV link (docs/CLUSTER.md).", rich_help_panel=CLUSTER_HELP),
    ) -> None:
        """Simulate a vLLM engine serving a workload: TTFT, ITL, TPOT, E2E, throughput (default: Llama-2-7B, H100, chat)."""
        from servesim.simulation import simulate
        from servesim.workload import load_workload, workload_from_flags

        outputs = [("--output", output), ("--requests-csv", requests_csv)]
        inputs = [("--trace", trace), ("--workload", workload), ("--hardware-config", hardware_config),
                  ("--calibration", calibration), ("--model", model), ("--hardware", hardware)]
        inputs.append(("--cluster", cluster))
        check_files(outputs, inputs)  # before any work: an output that is an input or another output is refused
        if calibration is not None and latency_model != "calibrated":
            raise ServesimError(f"--calibration {calibration}: only used with --latency-model calibrated (got --latency-model {latency_model})")
        if trace is not None and workload is not None:
            raise ServesimError(f"--trace {trace} cannot be combined with --workload {workload}: give one (a workload YAML may name its trace: {{path: ...}})")
        base: Any = "chat"
        if workload is not None:
            base = load_workload(workload)
        spec = workload_from_flags(
            base=base, rate=rate, num_requests=num_requests, duration_s=duration,
            prompt_tokens=prompt_tokens, prompt_tokens_stdev=prompt_tokens_stdev, prompt_tokens_min=prompt_tokens_min,
            prompt_tokens_max=prompt_tokens_max, output_tokens=output_tokens, output_tokens_stdev=output_tokens_stdev,
            output_tokens_min=output_tokens_min, output_tokens_max=output_tokens_max, prefix_tokens=prefix_tokens,
            arrival=arrival, concurrency=concurrency, cv=cv, trace=str(trace) if trace else None, seed=seed,
        )
        engine = {
            "max_num_seqs": max_num_seqs, "max_num_batched_tokens": max_num_batched_tokens, "block_size": block_size,
            "gpu_memory_utilization": gpu_memory_utilization, "num_gpu_blocks_override": num_gpu_blocks_override,
            "enable_prefix_caching": enable_prefix_caching, "long_prefill_token_threshold": long_prefill_token_threshold,
            "max_model_len": max_model_len, "async_scheduling": async_scheduling,
            "pipeline_parallel_size": pp, "enable_expert_parallel": enable_expert_parallel,
        }
        from servesim.config.speculative import parse_speculative_config

        sc = parse_speculative_config(speculative_config, speculative_acceptance)
        if sc is not None:
            engine["speculative_config"] = sc
        if spec.trace is not None:  # a workload YAML's trace is an input too
            check_files(outputs, [("--workload trace", spec.trace.path)])
        from servesim.cli.cluster import cluster_args

        cluster_kw = cluster_args(
            instances=instances, router=router, router_weights=router_weights, router_staleness=router_staleness,
            data_parallel_size=data_parallel_size, prefill_instances=prefill_instances, decode_instances=decode_instances,
            kv_link=kv_link, kv_link_bandwidth=kv_link_bandwidth, kv_link_latency=kv_link_latency, cluster=cluster,
            seed=seed)
        console = make_console(stderr=True)
        started = time.perf_counter()
        # Without per-request output, records stream into a fixed-memory summary (exact counts and means,
        # percentiles within 0.5 %); every token's time is kept only with --itl-samples.
        keep = output is not None or requests_csv is not None or steady_state
        with _Progress(console, spec.num_requests) as progress:
            result = simulate(
                model, hardware, tp, workload=spec, engine=engine, latency_model=latency_model, overhead=overhead,
                frontend_latency_s=None if frontend_latency_ms is None else frontend_latency_ms / 1e3, seed=seed,
                hardware_config=hardware_config, calibration=calibration,
                check_invariants=check_invariants, on_record=progress.advance, keep_requests=keep,
                record_token_times=True if itl_samples else None, **cluster_kw,
                dtype=dtype, quantization=quantization, kv_cache_dtype=kv_cache_dtype,
            )
            if steady_state:
                from servesim.metrics.steady import steady_state_summary

                progress.phase("summarising the steady state")
                result.summary["steady_state"] = steady_state_summary(result.records)
            wall = time.perf_counter() - started
            if output is not None:
                progress.phase(f"writing {output}")
                write_json_atomic(output, result.to_dict())
            if requests_csv is not None:
                progress.phase(f"writing {requests_csv}")
                _write_csv(requests_csv, result.requests)
        if result.summary["saturated"]:
            typer.echo(saturation_warning(result.summary), err=True)
        if json_out:
            echo_json(result.summary, indent=2)
        else:
            render_summary(result, wall)
            if result.cluster:
                from servesim.cli.cluster import render_cluster

                render_cluster(result)


class _Progress:
    """A rich progress bar on stderr that appears only when a run takes more than ~2 s.

    It counts finished requests and reaches the total with the last one; what follows (exact percentiles
    over every request and token, building per-request records, writing files: ~15 s for 200,000 requests
    with --output) is shown as its own phase instead of a bar that looks stalled."""

    def __init__(self, console, total: int | None) -> None:  # type: ignore[no-untyped-def]
        self.console, self.total, self.done, self.bar, self.task = console, total, 0, None, None
        self.start = time.perf_counter()

    def __enter__(self) -> "_Progress":
        return self

    def advance(self, _record: object) -> None:
        self.done += 1
        last = self.done == self.total
        if self.done % 256 and not last:
            return
        if self.bar is None and time.perf_counter() - self.start > 2.0 and self.console.is_terminal:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                                console=self.console, transient=True)
            self.bar.start()
            self.task = self.bar.add_task("simulating", total=self.total)
        if self.bar is not None:
            self.bar.update(self.task, completed=self.done,  # type: ignore[arg-type]
                            description="summarising (exact percentiles)" if last else "simulating")

    def phase(self, text: str) -> None:
        """Name what happens after the last request finished (e.g. writing a file)."""
        if self.bar is not None:
            self.bar.update(self.task, completed=self.done, description=text)  # type: ignore[arg-type]

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    import csv

    def dump(fh) -> None:  # type: ignore[no-untyped-def]
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]) if rows else ["id"])
        writer.writeheader()
        writer.writerows(rows)

    write_atomic(path, dump, "--requests-csv", newline="")


def saturation_warning(s: dict[str, Any]) -> str:
    """The one stderr line a saturated run gets: offered vs served, and the estimated sustainable rate."""
    sat = s["saturation"]
    offered = sat.get("offered_rate_rps")
    sustainable = sat.get("sustainable_rate_rps")
    return (f"warning: saturated — the queue keeps growing ({sat['rule']} rule: TTFT {sat['early_ttft_ms']:,.0f} ms in the first "
            f"quarter of arrivals, {sat['late_ttft_ms']:,.0f} ms in the last); offered "
            + (f"{offered:.2f}" if offered is not None else "?") + " req/s, estimated sustainable rate "
            + (f"{sustainable:.2f}" if sustainable is not None else "?")
            + " req/s (completions per s over the middle half of the run); latencies grow with the run's length")


def _render_notes(console, s: dict[str, Any]) -> None:  # type: ignore[no-untyped-def]
    """Saturation and prediction-interval lines under the summary table."""
    if s.get("saturated"):
        sus = s["saturation"].get("sustainable_rate_rps")
        console.print(f"[bold red]saturated[/]: the queue keeps growing; estimated sustainable rate "
                      + (f"{sus:.2f} req/s" if sus is not None else "unknown") + " — latencies are not steady-state")
    else:
        console.print("not saturated (queue-growth tests: docs/VALIDATION.md \"Saturation\")")
    st = s.get("steady_state")
    if st is not None:
        if st.get("kept") and "ttft_ms" in st:
            console.print(f"steady state ({st['kept']:,} of {st['requests']:,} requests; warm-up {st['dropped_warmup']:,} and "
                          f"cool-down {st['dropped_cooldown']:,} dropped): TTFT mean {st['ttft_ms']['mean']:,.2f} p99 {st['ttft_ms']['p99']:,.2f} · "
                          f"ITL mean {st['itl_ms']['mean']:,.2f} · E2E mean {st['e2e_ms']['mean']:,.2f} ms")
        else:
            console.print(f"steady state: {st.get('note')}")
    pi = s.get("prediction_intervals") or {}
    if not pi.get("available"):
        console.print(f"prediction intervals: none ({pi.get('note', 'not available')})")
        return
    parts = []
    for key, label in (("ttft_ms", "TTFT"), ("itl_ms", "ITL"), ("e2e_ms", "E2E")):
        for stat in ("mean", "p90", "p99"):
            iv = s[key].get(f"{stat}_interval")
            if iv is not None:
                parts.append(f"{label} {stat} [{iv[0]:,.1f}, {iv[1]:,.1f}]")
    console.print(f"{100 * pi['level']:.0f} % prediction intervals ({pi['regime']} regime, ms): " + " · ".join(parts))
    if pi.get("outside_envelope"):
        console.print("[yellow]outside the calibration data[/]: " + "; ".join(pi["outside_envelope"]) + f" — intervals widened: {pi['widening']}")


def render_summary(result, wall_s: float | None = None) -> None:  # type: ignore[no-untyped-def]
    """Print a run's summary as rich tables."""
    from rich.table import Table

    console = make_console()
    c, s = result.config, result.summary
    eng = c["engine"]
    console.print(
        f"[bold]{c['model']}[/] on [bold]{c['hardware']}[/] TP{c['tensor_parallel_size']}{_parallel_tag(c['engine'])} · {c['latency_model']} + overhead {c['overhead']} · "
        f"max_num_seqs {eng['max_num_seqs']} · max_num_batched_tokens {eng['max_num_batched_tokens']} · "
        f"{c['num_gpu_blocks']:,} KV blocks of {eng['block_size']}"
        + (f"\n{c['kernel_efficiency']}" if c.get("kernel_efficiency") else "")
    )
    table = Table(title=None)
    table.add_column("metric (ms)")
    for col in ("mean", "p50", "p90", "p95", "p99"):
        table.add_column(col, justify="right")
    for key, label in (("ttft_ms", "TTFT"), ("itl_ms", "ITL (pooled gaps)"), ("tpot_ms", "TPOT (per request)"), ("e2e_ms", "E2E"), ("queue_ms", "queue")):
        d = s[key]
        table.add_row(label, *(f"{d[k]:,.2f}" if d[k] is not None else "–" for k in ("mean", "p50", "p90", "p95", "p99")))
    console.print(table)
    console.print(
        f"completed {s['completed']:,} · rejected {s['rejected']:,}{_reasons(s)} · preemptions {s['preemptions']:,} · "
        f"duration {s['duration_s']:,.1f} s · {s['requests_per_s']:.2f} req/s · {s['output_tokens_per_s']:,.0f} output tok/s · "
        f"{s['total_tokens_per_s']:,.0f} total tok/s · KV peak {100 * s['kv_cache_peak_usage']:.1f} % · "
        f"prefix-cache hits {100 * s['prefix_cache_hit_rate']:.1f} % · {s['engine_steps']:,} steps"
        + (f" · simulated in {wall_s:.2f} s" if wall_s is not None else "")
    )
    _render_notes(console, s)


def _parallel_tag(engine: dict) -> str:
    """' PP2 EP' style suffix for the header (empty at PP 1 without expert parallelism)."""
    pp = engine.get("pipeline_parallel_size", 1)
    return (f" PP{pp}" if pp > 1 else "") + (" EP" if engine.get("enable_expert_parallel") else "")
def _reasons(summary: dict) -> str:
    """' (max_model_len 3)': why requests were rejected, when any were."""
    by = summary.get("rejected_by_reason") or {}
    return f" ({', '.join(f'{k} {v:,}' for k, v in by.items())})" if by else ""
