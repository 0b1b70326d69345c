"""The `servesim` command line: thin typer commands over the Python API, rendered with rich."""

from __future__ import annotations

import sys

import typer

from servesim.errors import ServesimError

app = typer.Typer(
    name="servesim",
    help="Simulate vLLM inference serving: TTFT, ITL, E2E latency and throughput, without a GPU.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _register() -> None:
    from servesim.cli import models, step

    models.register(app)
    step.register(app)
    for optional in ("run", "validate", "experiment", "calibrate", "sweep", "capacity"):
        try:
            module = __import__(f"servesim.cli.{optional}", fromlist=["register"])
        except ModuleNotFoundError as exc:
            if exc.name != f"servesim.cli.{optional}":
                raise
            continue
        module.register(app)


def main(argv: list[str] | None = None) -> None:
    """Console entry point: user errors print one line on stderr and exit with code 2."""
    _register()
    try:
        app(args=argv, standalone_mode=False)
    except ServesimError as exc:
        print(f"servesim: error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    except typer.Exit as exc:
        raise SystemExit(exc.exit_code) from None
    except typer.Abort:
        print("servesim: aborted", file=sys.stderr)
        raise SystemExit(130) from None
    except Exception as exc:  # click usage errors arrive here in non-standalone mode
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            raise SystemExit(exc.exit_code) from None
        raise
