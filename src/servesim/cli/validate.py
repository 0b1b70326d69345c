"""`servesim validate`: replay real measurements and report prediction errors."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import typer

from servesim.cli.common import LatencyModelOpt, OverheadOpt, check_files, make_console, one_line, write_json_atomic
from servesim.cli.run import SpeculativeAcceptanceOpt, SpeculativeConfigOpt
from servesim.errors import ServesimError


def register(app: typer.Typer) -> None:
    """Add the `validate` command."""

    @app.command("validate")
    def validate_cmd(
        paths: Optional[list[Path]] = typer.Argument(None, help="Experiment folders (or experiment.yaml files), or result files (vllm bench serve JSON, inference-perf per_request_lifecycle_metrics.json, GuideLLM benchmarks.json) with --model/--hardware/--tp."),
        suite: Optional[list[str]] = typer.Option(None, "--suite", help="Bundled suite: seed13, inference-perf-h100, guidellm-h100, inference-perf-trainval."),
        latency_model: str = LatencyModelOpt,
        overhead: str = OverheadOpt,
        calibration: Optional[Path] = typer.Option(None, "--calibration", help="Calibration JSON from `servesim calibrate` (or 'default')."),
        seed: int = typer.Option(42, "--seed", help="Seed for generated workloads (aggregate experiments)."),
        output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write rows and MAPE as JSON."),
        plots: Optional[Path] = typer.Option(None, "--plots", help="Write predicted-vs-measured PNG charts into this folder."),
        model: Optional[str] = typer.Option(None, "--model", "-m", help="Result files: the model served (bundled name, HF id or config.json)."),
        hardware: Optional[str] = typer.Option(None, "--hardware", help="Result files: the GPU preset or JSON file."),
        tp: int = typer.Option(1, "--tp", "-tp", "--tensor-parallel-size", help="Result files: tensor-parallel degree.", min=1),
        trace_format: str = typer.Option("auto", "--trace-format", help="Result files: auto (by content) | vllm-bench | inference-perf | guidellm."),
        vllm_log: Optional[Path] = typer.Option(None, "--vllm-log", help="Result files: vLLM server log; engine args and num_gpu_blocks read from it (flags win)."),
        max_num_seqs: Optional[int] = typer.Option(None, "--max-num-seqs", min=1, help="Result files: vLLM --max-num-seqs."),
        max_num_batched_tokens: Optional[int] = typer.Option(None, "--max-num-batched-tokens", min=1, help="Result files: vLLM --max-num-batched-tokens."),
        block_size: Optional[int] = typer.Option(None, "--block-size", min=1, help="Result files: KV block size."),
        num_gpu_blocks_override: Optional[int] = typer.Option(None, "--num-gpu-blocks-override", min=1, help="Result files: KV blocks on the GPU."),
        max_model_len: Optional[int] = typer.Option(None, "--max-model-len", min=1, help="Result files: vLLM --max-model-len."),
        enable_prefix_caching: Optional[bool] = typer.Option(None, "--enable-prefix-caching/--no-enable-prefix-caching", help="Result files: prefix caching."),
        gpu_memory_utilization: Optional[float] = typer.Option(None, "--gpu-memory-utilization", help="Result files: vLLM --gpu-memory-utilization (0, 1]."),
        long_prefill_token_threshold: Optional[int] = typer.Option(None, "--long-prefill-token-threshold", min=0, help="Result files: vLLM --long-prefill-token-threshold."),
        pipeline_parallel_size: Optional[int] = typer.Option(None, "--pipeline-parallel-size", "-pp", min=1, help="Result files: pipeline-parallel stages."),
        enable_expert_parallel: Optional[bool] = typer.Option(None, "--enable-expert-parallel", help="Result files: MoE experts spread over the ranks."),
        disable_hybrid_kv_cache_manager: Optional[bool] = typer.Option(None, "--disable-hybrid-kv-cache-manager", help="Result files: vLLM ran with the hybrid KV cache manager off (sliding-window models)."),
        speculative_config: Optional[str] = SpeculativeConfigOpt,
        speculative_acceptance: Optional[str] = SpeculativeAcceptanceOpt,
        kv_offloading_size: Optional[float] = typer.Option(None, "--kv-offloading-size", help="CPU KV offload GiB for every experiment, over each manifest's engine.kv_offloading_size (0 = off; default: the manifest's)."),
    ) -> None:
        """Replay each experiment's measured runs and compare TTFT, ITL, E2E (mean, p50, p90, p99) and throughput."""
        from servesim.validation import list_suites, load_experiment, load_suite
        from servesim.validation.runner import ModelChoice, validate

        overrides = None
        if kv_offloading_size is not None:
            from servesim.config.engine import engine_config

            engine_config(kv_offloading_size=kv_offloading_size)  # a bad value is named before any experiment runs
            overrides = {"kv_offloading_size": kv_offloading_size}
        if not paths and not suite:
            raise ServesimError(f"validate: give experiment folders or --suite NAME (suites: {', '.join(list_suites())})")
        from servesim.workload.spec import check_seed

        check_seed(seed)
        check_files([("--output", output)], [("--calibration", calibration)] + _experiment_files(paths or []))
        if plots is not None:
            check_plot_folder(plots)
        suites = [e for name in suite or [] for e in load_suite(name)]  # a bad --suite is named before any folder is read
        from servesim.validation.direct import experiment_from_file

        engine = {"max_num_seqs": max_num_seqs, "max_num_batched_tokens": max_num_batched_tokens, "block_size": block_size,
                  "num_gpu_blocks_override": num_gpu_blocks_override, "max_model_len": max_model_len,
                  "enable_prefix_caching": enable_prefix_caching, "gpu_memory_utilization": gpu_memory_utilization,
                  "long_prefill_token_threshold": long_prefill_token_threshold,
                  "pipeline_parallel_size": pipeline_parallel_size, "enable_expert_parallel": enable_expert_parallel,
                  "disable_hybrid_kv_cache_manager": disable_hybrid_kv_cache_manager}
        from servesim.config.speculative import parse_speculative_config

        sc = parse_speculative_config(speculative_config, speculative_acceptance)
        engine["speculative_config"] = None if sc is None else sc.model_dump(mode="json")
        files = [p for p in paths or [] if p.is_file() and p.name != "experiment.yaml"]
        if files and (model is None or hardware is None):
            raise ServesimError(f"validate {files[0]}: a result file needs --model M --hardware H [--tp N] "
                                "(or an experiment folder with experiment.yaml)")
        direct = {"--model": model, "--hardware": hardware, "--vllm-log": vllm_log,
                  "--trace-format": None if trace_format == "auto" else trace_format, "--tp": None if tp == 1 else tp,
                  **{"--" + k.replace("_", "-"): v for k, v in engine.items()}}
        given = [f"{k} {v}" for k, v in direct.items() if v is not None]
        if given and not files:
            raise ServesimError(f"validate {given[0]}: only for result files (experiment folders and suites take "
                                "these from experiment.yaml)")
        if vllm_log is not None:
            check_files([("--output", output)], [("--vllm-log", vllm_log)])
        experiments = [experiment_from_file(p, model=model or "", hardware=hardware or "", tp=tp, engine=engine,
                                            trace_format=trace_format, vllm_log=vllm_log, seed=seed)
                       if p in files else load_experiment(p) for p in paths or []] + suites
        cal = None
        if calibration is not None:
            from servesim.latency.calibration import load_calibration

            cal = load_calibration(calibration)
        choice = ModelChoice("calibrated" if cal is not None else latency_model, overhead, cal)
        console = make_console()
        err = make_console(stderr=True)
        with err.status(f"validating {len(experiments)} experiment(s) with {choice.label()}") as status:
            def tick(c):  # type: ignore[no-untyped-def]
                status.update(f"{c.label}: {c.wall_s:.1f} s")

            report = validate(experiments, choice, seed=seed, on_run=tick, engine_overrides=overrides)
        if report.in_sample is not None and report.in_sample["runs"]:
            typer.echo(f"note: calibration '{report.in_sample['calibration']}' is {report.in_sample['note']}: "
                       "those errors are training errors, not predictions", err=True)
        render_report(console, report)
        if output is not None:
            write_json_atomic(output, report.to_dict())
        if plots is not None:
            from servesim.validation.plots import predicted_vs_measured

            for path in predicted_vs_measured(report.rows, plots, choice.label()):
                err.print(f"wrote {path}")


def _experiment_files(paths: list[Path]) -> list[tuple[str, Path]]:
    """Every file of the given experiments (a folder's files, recursively): inputs an output must not replace."""
    out: list[tuple[str, Path]] = []
    for p in paths:
        files = [p] if p.is_file() else sorted(f for f in p.rglob("*") if f.is_file()) if p.is_dir() else []
        out += [(f"experiment {p}", f) for f in files]
    return out


def check_plot_folder(plots: Path) -> None:
    """Refuse --plots before any work: matplotlib missing, or a folder that cannot be created or written."""
    from servesim.validation.plots import _pyplot

    _pyplot()
    if plots.exists() and not plots.is_dir():
        raise ServesimError(f"--plots {plots}: exists and is not a folder")
    parent = plots if plots.is_dir() else plots.absolute().parent
    if not parent.is_dir():
        raise ServesimError(f"--plots {plots}: folder {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ServesimError(f"--plots {plots}: not writable")


def render_report(console, report) -> None:  # type: ignore[no-untyped-def]
    """Per-run table (means) and the MAPE table."""
    from rich.table import Table

    table = Table(title=one_line(f"predicted vs measured — {report.choice.label()}"))
    table.add_column("run")
    for fam in ("TTFT", "ITL", "E2E"):
        table.add_column(f"{fam} pred/meas ms", justify="right")
        table.add_column("err %", justify="right")
    table.add_column("saturated")
    for c in report.runs:
        cells = []
        for fam in ("ttft", "itl", "e2e"):
            row = next((r for r in c.rows if r.stage == "all" and r.metric == f"{fam}_mean"), None)
            if row is None and fam == "itl":
                row = next((r for r in c.rows if r.stage == "all" and r.metric == "e2e_per_token_mean"), None)
            cells += [f"{row.predicted:,.1f} / {row.actual:,.1f}", f"{row.signed_error:+.1f}"] if row else ["–", "–"]
        sat = ("measured " if c.saturated_measured else "") + ("predicted" if c.saturated_predicted else "")
        table.add_row(c.label, *cells, (sat.strip() or "no") + (" (mismatch)" if c.regime_mismatch else ""))
    console.print(table)
    m = report.mape()
    mt = Table(title=one_line("MAPE % over runs measured unsaturated (whole run; predicted-saturated ones included)"))
    mt.add_column("metric")
    mt.add_column("MAPE %", justify="right")
    for k, v in m.items():
        mt.add_row(k, f"{v:.1f}")
    console.print(mt)
    sat = [c.label for c in report.runs if c.saturated]
    if sat:
        console.print(f"measured saturated (reported apart, not in MAPE): {', '.join(sat)}")
    acc = report.regime_accuracy()
    if acc is not None:
        mism = [c.label for c in report.runs if c.regime_mismatch]
        console.print(f"regime accuracy (predicted vs measured saturation): {100 * acc:.0f} % of {len(report.runs)} runs"
                      + (f"; mismatches: {', '.join(mism)}" if mism else ""))
