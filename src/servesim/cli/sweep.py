"""`servesim sweep`: run a grid of simulations (local processes or Ray), resumable, optionally plotted."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import typer

from servesim.cli.common import check_files, check_output, echo_json, make_console, one_line
from servesim.errors import ConfigError, ServesimError


def register(app: typer.Typer) -> None:
    """Add the `sweep` command."""

    @app.command("sweep")
    def sweep(
        spec_path: Path = typer.Argument(..., metavar="SPEC.yaml", help="Sweep file: base: (simulate() arguments) and grid: (parameter -> values)."),
        workers: int = typer.Option(1, "--workers", "-j", help="Local worker processes (1 = in this process).", min=1),
        ray: bool = typer.Option(False, "--ray", help="Run points on Ray (pip install 'servesim[ray]'); a local Ray instance unless --ray-address."),
        ray_address: Optional[str] = typer.Option(None, "--ray-address", help="Ray cluster address for ray.init (implies --ray), e.g. ray://head:10001 or auto."),
        output: Optional[Path] = typer.Option(None, "--output", "-o", help="Results: .jsonl (one line per point) or .parquet; default SPEC.results.jsonl. Points already there are skipped."),
        plot: Optional[Path] = typer.Option(None, "--plot", help="Write latency-vs-rate curves (PNG; needs `rate` in grid)."),
        plot_metric: Optional[list[str]] = typer.Option(None, "--plot-metric", help="Summary metric to plot (repeatable; default ttft_ms.p99, itl_ms.mean, e2e_ms.p99, output_tokens_per_s)."),
        json_out: bool = typer.Option(False, "--json", help="Print the results as JSON lines instead of a table."),
    ) -> None:
        """Run every point of a parameter grid through the simulator; results are written as each point finishes."""
        from servesim.sweep import load_sweep, run_sweep
        from servesim.sweep.runner import timings_path

        spec = load_sweep(spec_path)
        out = output if output is not None else spec_path.with_name(spec_path.stem + ".results.jsonl")
        check_output(out, "--output", regular_only=True)  # read back to resume: a regular file
        if plot is not None or plot_metric:  # refused before any point runs, not after the whole sweep
            from servesim.sweep.plot import check_plot, need_matplotlib

            if plot is not None:
                need_matplotlib()
            check_output(plot, "--plot")
            check_plot(spec.grid, tuple(plot_metric or ()))
        outputs = [("--output", out), ("--output timings", timings_path(out)), ("--plot", plot)]
        check_files(outputs, [("SPEC", spec_path)] + _base_files(spec.base) + _base_files(spec.grid, "grid"))
        check_points(spec)
        console = make_console(stderr=True)
        started = time.perf_counter()
        with _Bar(console, len(spec.points())) as bar:
            rows = run_sweep(spec, out, workers=workers, use_ray=ray or ray_address is not None, ray_address=ray_address, on_result=bar.update)
        wall = time.perf_counter() - started
        if plot is not None:
            from servesim.sweep.plot import DEFAULT_METRICS, plot_sweep

            plot_sweep(rows, plot, metrics=tuple(plot_metric) if plot_metric else DEFAULT_METRICS)
        if json_out:
            for r in rows:
                echo_json(r)
            return
        _render(rows, spec, out, wall, bar.ran, plot)


def _base_files(value, where: str = "base") -> list[tuple[str, str]]:  # type: ignore[no-untyped-def]
    """Every existing file a sweep's base names (workload YAML, trace, calibration, ...): inputs an output must spare."""
    if isinstance(value, dict):
        return [f for k, v in value.items() for f in _base_files(v, f"{where}.{k}")]
    if isinstance(value, (list, tuple)):
        return [f for i, v in enumerate(value) for f in _base_files(v, f"{where}[{i}]")]
    if isinstance(value, (str, Path)) and str(value) and len(str(value)) < 4096 and Path(value).is_file():
        return [(f"SPEC {where}", str(value))]
    return []


def check_points(spec) -> None:  # type: ignore[no-untyped-def]
    """Refuse a sweep before any point runs when a point names an unknown model, GPU, latency model, overhead or
    calibration file, or a TP degree the model's heads do not divide (typos would otherwise become error rows).
    Whether a model fits in memory is a result of the point, not checked here."""
    from servesim.config import load_hardware, load_model
    from servesim.latency import LATENCY_MODELS, make_overhead
    from servesim.simulation import DEFAULT_LATENCY_MODEL, DEFAULT_OVERHEAD
    from servesim.sweep.runner import expand

    seen: set[str] = set()
    for point in expand(spec):  # workload and engine values, checked by the runner
        kw = point.kwargs
        key = repr(sorted((k, repr(kw.get(k))) for k in ("model", "hardware", "hardware_config", "tp", "latency_model", "overhead", "calibration", "seed")))
        if key in seen:
            continue
        seen.add(key)
        where = f"sweep point {point.index} ({', '.join(f'{k}={v}' for k, v in point.params.items())})"
        try:
            model = kw.get("model", "llama-2-7b-hf")
            spec_m = model if not isinstance(model, (str, Path)) else load_model(model)
            hardware = kw.get("hardware", "H100")
            if isinstance(hardware, (str, Path)):
                load_hardware(str(hardware), kw.get("hardware_config"))
            tp = kw.get("tp", 1)
            if isinstance(tp, bool) or not isinstance(tp, int) or tp < 1:
                raise ConfigError(f"tp={tp!r}: must be an integer >= 1")
            spec_m.check_tp(tp)
            from servesim.workload.spec import check_seed

            check_seed(kw.get("seed"))
            lm = kw.get("latency_model", DEFAULT_LATENCY_MODEL)
            if isinstance(lm, str) and lm != "calibrated" and lm not in LATENCY_MODELS:
                raise ConfigError(f"latency_model={lm!r}: unknown model (allowed: calibrated, {', '.join(LATENCY_MODELS)})")
            overhead = kw.get("overhead", DEFAULT_OVERHEAD)
            if not isinstance(overhead, str):
                raise ConfigError(f"overhead={overhead!r}: must be a string such as none, fixed or per-layer")
            make_overhead(overhead, num_layers=spec_m.num_layers, tp=tp)
            if lm == "calibrated" or kw.get("calibration") is not None:
                from servesim.latency.calibration import Calibration, load_calibration

                cal = kw.get("calibration")
                if not isinstance(cal, Calibration):
                    load_calibration(cal)
        except ServesimError as exc:
            raise ConfigError(f"{where}: {exc}") from None


class _Bar:
    """Progress bar on stderr (terminals only); counts points finished, resumed ones included."""

    def __init__(self, console, total: int) -> None:  # type: ignore[no-untyped-def]
        self.console, self.total, self.ran, self.bar, self.task = console, total, 0, None, None

    def __enter__(self) -> "_Bar":
        return self

    def update(self, _row: dict, done: int, total: int) -> None:
        self.ran += 1
        if self.bar is None and self.console.is_terminal:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self.bar = Progress("sweep", BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn(), console=self.console, transient=True)
            self.bar.start()
            self.task = self.bar.add_task("points", total=total)
        if self.bar is not None:
            self.bar.update(self.task, completed=done)  # type: ignore[arg-type]

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()


def _fmt(x: object) -> str:
    return "–" if x is None else (f"{x:,.1f}" if isinstance(x, float) else str(x))


def _render(rows, spec, out: Path, wall: float, ran: int, plot: Optional[Path]) -> None:  # type: ignore[no-untyped-def]
    from rich.table import Table

    console = make_console()
    table = Table(title=one_line(spec.name))
    keys = list(spec.grid)
    for k in keys:
        table.add_column(k)
    for col in ("TTFT p99 ms", "ITL mean ms", "E2E p99 ms", "req/s", "out tok/s"):
        table.add_column(col, justify="right")
    for r in rows:
        s = r.get("summary")
        vals = [_fmt(r["params"].get(k)) for k in keys]
        if s is None:
            table.add_row(*vals, f"[red]error: {r.get('error', '?')}[/]", "", "", "", "")
            continue
        table.add_row(*vals, _fmt(s["ttft_ms"]["p99"]), _fmt(s["itl_ms"]["mean"]), _fmt(s["e2e_ms"]["p99"]),
                      _fmt(s["requests_per_s"]), _fmt(s["output_tokens_per_s"]))
    console.print(table)
    console.print(f"{len(rows)} points ({ran} run now, {len(rows) - ran} from {out}) in {wall:.1f} s -> {out}"
                  + (f" · plot {plot}" if plot else ""))
