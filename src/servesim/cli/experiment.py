"""`servesim experiment h2b`: reproduce the seed report's three-arm overhead experiment."""

from __future__ import annotations

from pathlib import Path

import typer

from servesim.cli.common import make_console, write_json_atomic
from servesim.errors import ServesimError

experiment_app = typer.Typer(help="Reproduce published experiments.", no_args_is_help=True)


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
    if output_dir.exists() and not output_dir.is_dir():
        raise ServesimError(f"--output-dir {output_dir}: exists and is not a folder")
    if not output_dir.resolve().parent.is_dir():
        raise ServesimError(f"--output-dir {output_dir}: folder {output_dir.parent} does not exist")
    experiments = load_suite("seed13")
    console = make_console()
    with make_console(stderr=True).status("simulating 13 experiments × 3 arms × 2 loads"):
        results = run_h2b(experiments, seed=seed, load="blis")
        closed = run_h2b(experiments, seed=seed, load="closed-loop")
    output_dir.mkdir(exist_ok=True)
    (output_dir / "report.md").write_text(report_markdown(results, experiments, closed))
    write_json_atomic(output_dir / "results.json", results_json(results, closed))
    chart(results, output_dir / "tpot_by_experiment.png")
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
    console.print(f"wrote {output_dir / 'report.md'}, {output_dir / 'results.json'}, {output_dir / 'tpot_by_experiment.png'}")
