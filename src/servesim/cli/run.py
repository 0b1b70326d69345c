"""`servesim run`: simulate one vLLM engine serving a workload; print and save what clients measure."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Optional

import typer

from servesim.cli.common import (
    DisableHybridKvOpt, DtypeOpt, EnableLoraOpt, LoraAdaptersOpt, MaxCpuLorasOpt, MaxLoraRankOpt, MaxLorasOpt, lora_engine_args, HardwareConfigOpt, HardwareOpt, KvCacheDtypeOpt, LatencyModelOpt, ModelOpt, OverheadOpt, EpOpt, PpOpt, QuantizationOpt, TpOpt, check_files, echo_json, make_console, write_atomic, write_json_atomic,
)
from servesim.errors import ConfigError, ServesimError

ENGINE_HELP = "vLLM engine (vLLM names; defaults are vLLM V1's for the GPU)"
SpeculativeConfigOpt = typer.Option(None, "--speculative-config", help='Speculative decoding, vLLM JSON: {"method": "ngram|eagle|eagle3|mtp|draft_model|suffix", "num_speculative_tokens": k[, "model": draft]}.', rich_help_panel=ENGINE_HELP)
SpeculativeAcceptanceOpt = typer.Option(None, "--speculative-acceptance", help="Per-token draft acceptance probability, or a comma list per position (default: the method's published figure; docs/LATENCY.md).", rich_help_panel=ENGINE_HELP)
CLUSTER_HELP = "Cluster (many instances behind a router; docs/CLUSTER.md)"
WORKLOAD_HELP = "Workload (GuideLLM/BLIS flag names; default: the 'chat' preset)"


def _sweep_size(rate: Any, arrival: Any, concurrency: Any, request_rate: Any, requests_csv: Any, steady_state: bool) -> int:
    """The number of benchmarks of --profile sweep (GuideLLM: --rate N, default 10); other load flags refused."""
    from servesim.sweep.guidellm import DEFAULT_SWEEP_SIZE

    for flag, value in (("--arrival", arrival), ("--concurrency", concurrency), ("--request-rate", request_rate),
                        ("--requests-csv", requests_csv), ("--steady-state", steady_state or None)):
        if value is not None:
            raise ServesimError(f"{flag} cannot be combined with --profile sweep (it sets the load of each benchmark)")
    if rate is None:
        return DEFAULT_SWEEP_SIZE
    if rate != int(rate) or not 2 <= rate <= 100:
        raise ServesimError(f"--profile sweep --rate={rate!r}: the number of benchmarks (GuideLLM), an integer in [2, 100]")
    return int(rate)


def _run_sweep_profile(spec: Any, size: int, output: Any, json_out: bool, kwargs: dict) -> None:
    """GuideLLM's sweep profile: synchronous, throughput, then constant rates between; a table or JSON per benchmark."""
    from servesim.simulation import simulate
    from servesim.sweep.guidellm import run_sweep_profile

    rows = run_sweep_profile(spec, size, lambda s: simulate(workload=s, **kwargs).summary)
    doc = {"profile": "sweep", "sweep_size": size, "benchmarks": rows}
    if output is not None:
        write_json_atomic(output, doc)
    if json_out:
        echo_json(doc, indent=2)
        return
    from rich.table import Table

    table = Table(title=f"GuideLLM sweep profile ({size} benchmarks)")
    for col in ("strategy", "rate (req/s)", "served (req/s)", "TTFT mean (ms)", "ITL mean (ms)", "E2E mean (ms)"):
        table.add_column(col, justify="left" if col == "strategy" else "right")
    for r in rows:
        s = r["summary"]
        fmt = lambda d: "–" if not d or d.get("mean") is None else f"{d['mean']:,.1f}"  # noqa: E731
        table.add_row(r["strategy"], "–" if r["rate_rps"] is None else f"{r['rate_rps']:.2f}", f"{s['requests_per_s']:.2f}",
                      fmt(s.get("ttft_ms")), fmt(s.get("itl_ms")), fmt(s.get("e2e_ms")))
    make_console().print(table)


def _estimated_tokens(trace: Any) -> bool:
    """True when the trace is text (ShareGPT) counted without a tokenizer, so its token counts are estimates."""
    from servesim.workload.trace_formats import UNTIMED, detect_format

    fmt = trace.format if trace.format != "auto" or trace.columns is not None else detect_format(trace.path)
    return fmt in UNTIMED


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
        enable_lora: bool = EnableLoraOpt,
        max_loras: int = MaxLorasOpt,
        max_lora_rank: int = MaxLoraRankOpt,
        max_cpu_loras: Optional[int] = MaxCpuLorasOpt,
        kv_offloading_size: float = typer.Option(0.0, "--kv-offloading-size", help="CPU KV offload in GiB, total over TP x PP ranks (0 = off).", rich_help_panel=ENGINE_HELP),
        kv_offloading_backend: str = typer.Option("native", "--kv-offloading-backend", help="native | lmcache (both modelled as the native LRU CPU tier).", rich_help_panel=ENGINE_HELP),
        disable_hybrid_kv_cache_manager: bool = typer.Option(False, "--disable-hybrid-kv-cache-manager", help=DisableHybridKvOpt.help, rich_help_panel=ENGINE_HELP),
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
        trace: Optional[Path] = typer.Option(None, "--trace", help="Replay a trace: CSV/JSONL (columns arrival_time_s, input_tokens, output_tokens[, prefix_group]) or an inference-perf replay JSON.", rich_help_panel=WORKLOAD_HELP),
        trace_format: Optional[str] = typer.Option(None, "--trace-format", help="auto | servesim | mooncake | azure | burstgpt | vidur | sharegpt | vllm-bench | inference-perf | guidellm (default auto: from the file).", rich_help_panel=WORKLOAD_HELP),
        trace_columns: Optional[str] = typer.Option(None, "--trace-columns", help="Any CSV/JSONL: arrival=COL,input=COL,output=COL (optional arrival_unit=s|ms|us|ns|iso).", rich_help_panel=WORKLOAD_HELP),
        tokenizer: Optional[Path] = typer.Option(None, "--tokenizer", help="Local tokenizer.json to count ShareGPT tokens (servesim[tokenizer]; default: ~4 characters per token, stated).", rich_help_panel=WORKLOAD_HELP),
        profile: Optional[str] = typer.Option(None, "--profile", help="GuideLLM profile: synchronous | concurrent (--rate = streams) | throughput | constant | poisson (--rate req/s).", rich_help_panel=WORKLOAD_HELP),
        request_rate: Optional[float] = typer.Option(None, "--request-rate", help="vllm bench serve: requests/s (inf = all at once), gamma gaps with --burstiness.", rich_help_panel=WORKLOAD_HELP),
        burstiness: Optional[float] = typer.Option(None, "--burstiness", help="vllm bench serve: gamma shape of the gaps (1 = Poisson; < 1 burstier).", rich_help_panel=WORKLOAD_HELP),
        max_concurrency: Optional[int] = typer.Option(None, "--max-concurrency", help="Cap on requests in flight; later ones wait at the client (vllm bench; GuideLLM throughput streams, default 512).", rich_help_panel=WORKLOAD_HELP),
        seed: Optional[int] = typer.Option(None, "--seed", help="Random seed (default: the workload's).", rich_help_panel=WORKLOAD_HELP),
        lora_adapters: Optional[int] = LoraAdaptersOpt,
        output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write config, summary and per-request records as JSON."),
        output_format: str = typer.Option("servesim", "--output-format", help="Layout of --output: servesim (config, summary, per-request records) | vllm-bench (the keys `vllm bench serve --save-result --save-detailed` writes; docs/FILES.md)."),
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
        inputs = [("--trace", trace), ("--tokenizer", tokenizer), ("--workload", workload), ("--hardware-config", hardware_config),
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
        sweep_size = None
        if profile == "sweep":  # GuideLLM: --rate is the number of benchmarks (default 10)
            sweep_size, rate, profile = _sweep_size(rate, arrival, concurrency, request_rate, requests_csv, steady_state), None, None
        spec = workload_from_flags(
            base=base, rate=rate, num_requests=num_requests, duration_s=duration,
            prompt_tokens=prompt_tokens, prompt_tokens_stdev=prompt_tokens_stdev, prompt_tokens_min=prompt_tokens_min,
            prompt_tokens_max=prompt_tokens_max, output_tokens=output_tokens, output_tokens_stdev=output_tokens_stdev,
            output_tokens_min=output_tokens_min, output_tokens_max=output_tokens_max, prefix_tokens=prefix_tokens,
            arrival=arrival, concurrency=concurrency, cv=cv, trace=str(trace) if trace else None, seed=seed,
            profile=profile, request_rate=request_rate, burstiness=burstiness, max_concurrency=max_concurrency,
            trace_format=trace_format, trace_columns=trace_columns, tokenizer=str(tokenizer) if tokenizer else None,
            lora_adapters=lora_adapters,
        )
        engine = {
            "max_num_seqs": max_num_seqs, "max_num_batched_tokens": max_num_batched_tokens, "block_size": block_size,
            "gpu_memory_utilization": gpu_memory_utilization, "num_gpu_blocks_override": num_gpu_blocks_override,
            "enable_prefix_caching": enable_prefix_caching, "long_prefill_token_threshold": long_prefill_token_threshold,
            "max_model_len": max_model_len, "async_scheduling": async_scheduling,
            "kv_offloading_size": kv_offloading_size, "kv_offloading_backend": kv_offloading_backend,
            "pipeline_parallel_size": pp, "enable_expert_parallel": enable_expert_parallel,
        }
        engine.update(lora_engine_args(enable_lora, max_loras, max_lora_rank, max_cpu_loras))
        if disable_hybrid_kv_cache_manager:  # only when set: outputs without it stay as they were
            engine["disable_hybrid_kv_cache_manager"] = True
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
        if sweep_size is not None:
            _run_sweep_profile(spec, sweep_size, output, json_out, dict(
                model=model, hardware=hardware, tp=tp, engine=engine, latency_model=latency_model, overhead=overhead,
                frontend_latency_s=None if frontend_latency_ms is None else frontend_latency_ms / 1e3, seed=seed,
                hardware_config=hardware_config, calibration=calibration, check_invariants=check_invariants,
                keep_requests=False, dtype=dtype, quantization=quantization, kv_cache_dtype=kv_cache_dtype, **cluster_kw))
            return
        started = time.perf_counter()
        # Without per-request output, records stream into a fixed-memory summary (exact counts and means,
        # percentiles within 0.5 %); every token's time is kept only with --itl-samples.
        if output_format not in OUTPUT_FORMATS:
            raise ConfigError(f"--output-format {output_format!r}: unknown (allowed: {', '.join(OUTPUT_FORMATS)})")
        if output_format != "servesim" and output is None:
            raise ConfigError(f"--output-format {output_format}: applies to --output; give --output FILE")
        keep = output is not None or requests_csv is not None or steady_state
        with _Progress(console, spec.num_requests) as progress:
            result = simulate(
                model, hardware, tp, workload=spec, engine=engine, latency_model=latency_model, overhead=overhead,
                frontend_latency_s=None if frontend_latency_ms is None else frontend_latency_ms / 1e3, seed=seed,
                hardware_config=hardware_config, calibration=calibration,
                check_invariants=check_invariants, on_record=progress.advance, keep_requests=keep,
                record_token_times=True if itl_samples or output_format == "vllm-bench" else None, **cluster_kw,
                dtype=dtype, quantization=quantization, kv_cache_dtype=kv_cache_dtype,
            )
            if steady_state:
                from servesim.metrics.steady import steady_state_summary

                progress.phase("summarising the steady state")
                result.summary["steady_state"] = steady_state_summary(result.records)
            wall = time.perf_counter() - started
            if output is not None:
                progress.phase(f"writing {output}")
                write_json_atomic(output, result.to_dict() if output_format == "servesim" else vllm_bench_doc(result, spec))
            if requests_csv is not None:
                progress.phase(f"writing {requests_csv}")
                _write_csv(requests_csv, result.requests)
        if result.summary["saturated"]:
            typer.echo(saturation_warning(result.summary), err=True)
        if spec.trace is not None and spec.trace.tokenizer is None and _estimated_tokens(spec.trace):
            from servesim.workload.formats.sharegpt import ESTIMATE_NOTE

            typer.echo(f"note: {spec.trace.path}: {ESTIMATE_NOTE}", err=True)
        if json_out:
            echo_json(result.summary, indent=2)
        else:
            render_summary(result, wall)
            if result.cluster:
                from servesim.cli.cluster import render_cluster

                render_cluster(result)


# --output layouts: servesim's own, and vllm bench serve's result JSON (metrics/vllm_bench.py).
OUTPUT_FORMATS = ("servesim", "vllm-bench")


def vllm_bench_doc(result: Any, spec: Any) -> dict[str, Any]:
    """The run as `vllm bench serve --save-result --save-detailed` writes it, with the traffic keys from the workload."""
    from servesim.metrics.vllm_bench import vllm_bench_result

    arrival = getattr(spec, "arrival", None)
    process = getattr(arrival, "process", None)
    closed = process in ("synchronous", "concurrency")
    # Closed loop is vllm's --request-rate inf with --max-concurrency C (synchronous: C = 1); staged rates and traces
    # have no single vllm rate (null).
    rate: float | str | None = "inf" if closed else None if arrival is None or arrival.rate is None else arrival.rate
    # vllm's burstiness is the gamma shape of inter-arrival gaps (1 = Poisson); servesim's gamma cv gives 1/cv**2;
    # constant pacing (shape -> infinity) and traces have none (null).
    burstiness = 1.0 if process == "poisson" or closed else 1.0 / arrival.cv ** 2 if process == "gamma" and arrival.cv else None
    concurrency = 1 if process == "synchronous" else getattr(arrival, "concurrency", None) if closed else None
    return vllm_bench_result(result.records, duration_s=result.summary["duration_s"], model_id=result.config["model"],
                             request_rate=rate, burstiness=burstiness, max_concurrency=concurrency)


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


def _kv_groups_tag(g: dict[str, Any] | None) -> str:
    """' (hybrid KV cache manager: ...)' for a model with sliding-window layers, '' otherwise."""
    if not g:
        return ""
    if not g["hybrid"]:
        return f" (hybrid KV cache manager off: every layer keeps the whole sequence; window {g['sliding_window']:,})"
    return (f" (hybrid KV cache manager: {g['sliding_groups']} sliding + {g['full_groups']} full group(s) of "
            f"{g['group_size']} layers, window {g['sliding_window']:,})")


def render_summary(result, wall_s: float | None = None) -> None:  # type: ignore[no-untyped-def]
    """Print a run's summary as rich tables."""
    from rich.table import Table

    console = make_console()
    c, s = result.config, result.summary
    eng = c["engine"]
    console.print(
        f"[bold]{c['model']}[/] on [bold]{c['hardware']}[/] TP{c['tensor_parallel_size']}{_parallel_tag(c['engine'])} · {c['latency_model']} + overhead {c['overhead']} · "
        f"max_num_seqs {eng['max_num_seqs']} · max_num_batched_tokens {eng['max_num_batched_tokens']} · "
        f"{c['num_gpu_blocks']:,} KV blocks of {eng['block_size']}" + _kv_groups_tag(c.get("kv_cache_groups"))
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
