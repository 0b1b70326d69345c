"""`servesim calibrate`: fit the calibrated step-time model on measured runs, with cross-validation."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Optional

import typer

from servesim.cli.common import make_console, write_json_atomic
from servesim.errors import ServesimError


def register(app: typer.Typer) -> None:
    """Add the `calibrate` command."""

    @app.command("calibrate")
    def calibrate_cmd(
        paths: Optional[list[Path]] = typer.Argument(None, help="Experiment folders (or experiment.yaml files)."),
        suite: Optional[list[str]] = typer.Option(None, "--suite", help="Bundled suite(s) to fit on."),
        cv: str = typer.Option("none", "--cv", help="none | leave-one-model-out."),
        output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write the calibration fitted on all given runs (JSON)."),
        report: Optional[Path] = typer.Option(None, "--report", help="Write train and CV errors (JSON)."),
        iterations: int = typer.Option(5, "--iterations", min=1, help="Fixed-point iterations (simulate, solve)."),
        fit_window: Optional[float] = typer.Option(300.0, "--fit-window", help="Fit on the first N seconds of each load stage of open-loop runs (speed); 0 = whole runs."),
        layers_over_tp: bool = typer.Option(False, "--layers-over-tp/--layers", help="The per-layer overhead feature as layers/TP (the seed's form) or layers."),
        workers: int = typer.Option(1, "--workers", min=1, help="Processes for the cross-validation folds (same results)."),
    ) -> None:
        """Fit θ (and the front-end latency) on real runs; with --cv, report held-out errors per model."""
        try:  # the fit solves bounded least squares with scipy, an optional extra
            import scipy.optimize  # noqa: F401
        except ImportError:
            raise ServesimError("calibrate needs scipy, which is not installed: pip install 'servesim[calibrate]'") from None
        if fit_window is not None and not (math.isfinite(fit_window) and fit_window >= 0):
            raise ServesimError(f"--fit-window {fit_window}: must be a finite number of seconds >= 0 (0 = whole runs)")
        from servesim.latency.calibration import Calibration, save_calibration
        from servesim.validation import load_experiment, load_suite
        from servesim.validation.calibrate import INITIAL, fit, select_start, units_of
        from servesim.validation.crossval import cv_report, leave_one_model_out, window_units
        from servesim.validation.runner import ValidationReport, ModelChoice, validate  # noqa: F401

        if cv not in ("none", "leave-one-model-out"):
            raise ServesimError(f"--cv {cv}: allowed: none, leave-one-model-out")
        if not paths and not suite:
            raise ServesimError("calibrate: give experiment folders or --suite NAME")
        from servesim.cli.common import check_files
        from servesim.cli.validate import _experiment_files

        check_files([("--output", output), ("--report", report)], _experiment_files(paths or []))
        suites = [e for name in suite or [] for e in load_suite(name)]  # a bad --suite is named before any folder is read
        experiments = [load_experiment(p) for p in paths or []] + suites
        window = fit_window or None
        err = make_console(stderr=True)
        console = make_console()
        # Saturated runs (measured queue grows) are not latency targets: detect and leave them out.
        sat = _measured_saturated(experiments)
        if sat:
            err.print(f"leaving out saturated runs: {', '.join(sorted(sat))}")
        units = units_of(experiments, exclude_saturated=sat)
        start = None
        if layers_over_tp:
            start = Calibration({k: INITIAL[k] for k in INITIAL if k not in ("frontend", "frontend_per_token")},
                                INITIAL["frontend"], INITIAL["frontend_per_token"], layers_over_tp=True, name="initial")
        doc: dict = {"fitted_on": sorted({f"{e.name}/{r.name}" for e, r in units}), "left_out_saturated": sorted(sat)}
        if cv == "leave-one-model-out":
            with err.status("leave-one-model-out folds") as status:
                folds = leave_one_model_out(units, fit_window_s=window, iterations=iterations, start=start, workers=workers,
                                            on_fold=lambda f: status.update(f"fold without {f.held_out} done"))
            rep = cv_report(folds)
            _table(console, rep, "held-out (leave-one-model-out) errors")
            doc["cv"] = {"mape": rep.mape(), "rows": [r.as_dict() for r in rep.rows],
                         "folds": {f.held_out: f.fit.calibration.to_dict() for f in folds}}
            doc["cv"]["runs"], intervals = _cv_intervals(rep, experiments)
            doc["cv"]["intervals"] = intervals
            cov = intervals["coverage_means"]
            if cov["fraction"] is not None:
                err.print(f"80 % intervals: nested leave-one-model-out coverage of held-out run means {100 * cov['fraction']:.1f} % "
                          f"({cov['inside']} of {cov['checked']})")
        with err.status("fitting on all runs"):
            fit_units = window_units(units, window)
            result = fit(fit_units, iterations=iterations, start=start, name="all-public-data")
            cal = result.calibration
            if cv == "leave-one-model-out":
                # The fixed point depends on the start (step times change the schedule): restart from the best of
                # the folds' calibrations and the plain fit, judged on all runs, and keep the better end point.
                from dataclasses import replace as _replace

                candidates = [cal] + [_replace(f.fit.calibration, name="all-public-data") for f in folds]
                best, _ = select_start(fit_units, candidates)
                if best is not cal:
                    cal = fit(fit_units, iterations=max(2, iterations // 2), start=best, name="all-public-data").calibration
        notes = {"method": "fixed-point bounded linear least squares on run means (servesim/validation/calibrate.py)",
                 "fit_window_s": window, "iterations": iterations}
        if "cv" in doc:
            notes["cv_mape"] = doc["cv"]["mape"]
        from dataclasses import replace

        cal = replace(cal, notes=notes)
        console.print("θ: " + ", ".join(f"{k}={v:.4g}" for k, v in cal.theta.items())
                      + f", frontend={cal.frontend_latency_s * 1e3:.2f} ms + {cal.frontend_per_token_s * 1e6:.2f} µs/token")
        train = ValidationReport(ModelChoice("calibrated", "auto", cal), [])
        from servesim.validation.crossval import evaluate

        train.runs = evaluate(units, cal)
        _table(console, train, "training errors (fitted on these runs)")
        doc["train"] = {"mape": train.mape(), "rows": [r.as_dict() for r in train.rows]}
        if "cv" in doc:
            from servesim.validation.intervals import envelope_doc

            envelope = envelope_doc(units, {c.label: c.notes.get("mean_in_system") for c in train.runs})
            cal = replace(cal, intervals={k: v for k, v in doc["cv"]["intervals"].items()}, envelope=envelope)
        doc["calibration"] = cal.to_dict()
        # Both documents are checked (strict JSON, every number finite) before either is written.
        from servesim.config.outfile import dumps_json

        if output is not None:
            dumps_json(cal.to_dict(), f"--output {output}")
        if report is not None:
            dumps_json(doc, f"--report {report}")
        if output is not None:
            save_calibration(cal, output)
        if report is not None:
            write_json_atomic(report, doc, "--report")


def _cv_intervals(rep, experiments):  # type: ignore[no-untyped-def]
    """Per-run regime records of the held-out comparisons and the conformal intervals computed from them."""
    from servesim.validation.intervals import cv_intervals

    return cv_intervals(rep, experiments)


def _measured_saturated(experiments) -> set[str]:  # type: ignore[no-untyped-def]
    from servesim.validation.calibrate import measured_saturated

    return measured_saturated(experiments)


def _table(console, report, title: str) -> None:  # type: ignore[no-untyped-def]
    from rich.table import Table

    t = Table(title=title)
    t.add_column("run")
    for col in ("TTFT err %", "ITL err %", "E2E err %"):
        t.add_column(col, justify="right")
    for c in report.runs:
        cells = []
        for fam in ("ttft", "itl", "e2e"):
            row = next((r for r in c.rows if r.stage == "all" and r.metric == f"{fam}_mean"), None)
            cells.append(f"{row.signed_error:+.1f}" if row else "–")
        t.add_row(c.label + (" (saturated)" if c.saturated else ""), *cells)
    console.print(t)
    m = report.mape()
    console.print("MAPE: " + ", ".join(f"{k} {m[k]:.1f}%" for k in ("ttft_mean", "itl_mean", "e2e_mean") if k in m))
