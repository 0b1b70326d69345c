"""`servesim experiment h2b`: reproduce the seed report's three-arm overhead experiment."""

from __future__ import annotations

from pathlib import Path

import typer

from servesim.cli import helpfmt
from servesim.cli.common import make_console, write_atomic, write_json_atomic
from servesim.errors import ServesimError

experiment_app = helpfmt.Typer(help="Reproduce published experiments.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    """Add the `experiment` command group."""
    app.add_typer(experiment_app, name="experiment")


@experiment_app.command("h2b")
def h2b(
    output_dir: Path = typer.Option(Path("h2b-results"), "--output-dir", help="Where report.md, results.json and the PNG go."),
    seed: int = typer.Option(42, "--seed", help="Workload seed (the seed report used 42)."),
) -> None:
    """The seed's H2b: roofline v2 with no / fixed / model-scaled overhead on its 13 synchronous H100 runs."""
    from servesim.validation import load_suite
    from servesim.validation.h2b import chart, criteria, overall, report_markdown, results_json, run_h2b

    from servesim.workload.spec import check_seed

    check_seed(seed)
    created = check_output_dir(output_dir)
    try:
        experiments = load_suite("seed13")
        console = make_console()
        with make_console(stderr=True).status("simulating 13 experiments × 3 arms × 2 loads"):
            results = run_h2b(experiments, seed=seed, load="blis")
            closed = run_h2b(experiments, seed=seed, load="closed-loop")
        report, doc, png = output_dir / "report.md", output_dir / "results.json", output_dir / "tpot_by_experiment.png"
        text = report_markdown(results, experiments, closed)
        write_atomic(report, lambda fh: fh.write(text), "--output-dir")
        write_json_atomic(doc, results_json(results, closed), "--output-dir")
    except BaseException:  # an error or Ctrl-C before anything was written: leave no empty folder behind
        if created and not any(output_dir.iterdir()):
            output_dir.rmdir()
        raise
    wrote = [report, doc]
    if _has_matplotlib():
        chart(results, png)
        wrote.append(png)
    else:  # the report and results are the answer; the chart is optional (matplotlib is an extra)
        make_console(stderr=True).print(f"note: chart {png.name} skipped: matplotlib is not installed (pip install 'servesim[plot]')")
    from rich.table import Table

    table = Table(title="H2b overall MAPE % (13 experiments, BLIS-style constant-rate load)")
    table.add_column("metric")
    for arm in ("baseline", "fixed", "scaled"):
        table.add_column(arm, justify="right")
    ov = {arm: overall(rows) for arm, rows in results.items()}
    for key in ("tpot_mape", "tpot_consistent_mape", "itl_mape", "e2e_mape", "ttft_mape"):
        table.add_row(key, *(f"{ov[a][key]:.1f}" for a in ("baseline", "fixed", "scaled")))
    console.print(table)
    for name, ok, detail in criteria(results):
        console.print(f"{'PASS' if ok else 'FAIL'}  {name}: {detail}")
    console.print("wrote " + ", ".join(str(p) for p in wrote))


def _has_matplotlib() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ModuleNotFoundError:
        return False
    return True


def check_output_dir(output_dir: Path) -> bool:
    """Make --output-dir (if missing) and prove it writable before any work; True when this call created it."""
    import tempfile

    if output_dir.exists() and not output_dir.is_dir():
        raise ServesimError(f"--output-dir {output_dir}: exists and is not a folder")
    created = not output_dir.exists()
    if created and not output_dir.absolute().parent.is_dir():
        raise ServesimError(f"--output-dir {output_dir}: folder {output_dir.parent} does not exist")
    try:
        output_dir.mkdir(exist_ok=True)
    except OSError as exc:
        raise ServesimError(f"--output-dir {output_dir}: cannot create the folder ({exc.strerror})") from None
    try:  # a real probe: permission bits say nothing for root, or on a read-only file system
        with tempfile.TemporaryFile(dir=output_dir):
            pass
    except OSError as exc:
        if created:
            output_dir.rmdir()
        raise ServesimError(f"--output-dir {output_dir}: folder is not writable ({exc.strerror})") from None
    return created
