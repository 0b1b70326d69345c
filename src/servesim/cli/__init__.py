"""The `servesim` command line: thin typer commands over the Python API, rendered with rich."""

from __future__ import annotations

import sys

import typer

from servesim.cli import helpfmt
from servesim.errors import ServesimError

# Plain-text help (cli/helpfmt.py): rich markup would eat bracketed text such as servesim[ray] or LEN[@CTX].
app = helpfmt.Typer(
    name="servesim",
    help="Simulate vLLM inference serving: TTFT, ITL, E2E latency and throughput, without a GPU.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            v = version("servesim")
        except PackageNotFoundError:  # pragma: no cover - running from a source tree that was never installed
            v = "unknown"
        typer.echo(f"servesim {v}")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print servesim's version and exit."),
) -> None:
    pass


INTERRUPTED = 130  # 128 + SIGINT, what shells report for a process stopped by Ctrl-C

_registered = False


def _register() -> None:
    # Once per process: main() may be called many times (tests, notebooks) and typer keeps every registration.
    global _registered
    if _registered:
        return
    _registered = True
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


def _click_exception_types() -> tuple[type[BaseException], ...]:
    """click's exception base, and typer's vendored copy of it (typer >= 0.17 ships its own click)."""
    types: list[type[BaseException]] = []
    try:
        import click

        types.append(click.ClickException)
    except ModuleNotFoundError:  # pragma: no cover - typer without a click install
        pass
    try:
        from typer._click.exceptions import ClickException as TyperClickException  # type: ignore[import-not-found]

        types.append(TyperClickException)
    except ModuleNotFoundError:  # older typer uses click itself
        pass
    return tuple(types)


def _usage_message(exc: BaseException) -> str:
    """A click usage error as one line: the flag, the bad value (when known) and what is allowed."""
    message = exc.format_message()  # type: ignore[attr-defined]
    param = getattr(exc, "param", None)
    cause = exc.__cause__
    if param is not None and cause is not None and hasattr(cause, "errors"):
        # typer coerces option values with pydantic: its error holds the value the user typed.
        try:
            err = cause.errors()[0]  # type: ignore[union-attr]
            opts = list(getattr(param, "opts", None) or [getattr(param, "name", "?")])
            flag = next((o for o in opts if o.startswith("--")), opts[0])
            message = f"{flag}={err.get('input')!r}: {err.get('msg')}"
        except Exception:  # noqa: BLE001 - fall back to click's own wording
            pass
    return " ".join(str(message).split())


def main(argv: list[str] | None = None) -> None:
    """Console entry point: user errors print one line on stderr and exit with code 2; Ctrl-C exits with 130."""
    try:
        code = _main(argv)
    except KeyboardInterrupt:
        code = INTERRUPTED
    if code == INTERRUPTED:
        try:
            print("servesim: interrupted", file=sys.stderr)
        except KeyboardInterrupt:  # a second Ctrl-C while reporting the first: still one line's worth, exit 130
            pass
    if code:
        raise SystemExit(code)


def _main(argv: list[str] | None) -> int:
    """Run the command; return its exit code (typer returns 130 for a KeyboardInterrupt: it must reach the shell)."""
    _register()
    click_errors = _click_exception_types()
    try:
        code = app(args=argv, standalone_mode=False)
    except ServesimError as exc:
        print(f"servesim: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    except typer.Exit as exc:
        return exc.exit_code
    except typer.Abort:
        return INTERRUPTED
    except click_errors as exc:  # usage errors (bad flag value, unknown flag, missing argument)
        if type(exc).__name__ == "NoArgsIsHelpError":  # `servesim experiment`: the group's help
            exc.show()  # type: ignore[attr-defined]
            return exc.exit_code  # type: ignore[attr-defined]
        print(f"servesim: error: {_usage_message(exc)}", file=sys.stderr)
        return getattr(exc, "exit_code", 2) or 2
    return code if isinstance(code, int) else 0
