"""Run the real CLI entry point in process: (exit code, stdout, stderr)."""

from __future__ import annotations

from servesim.cli import main


def run_cli(argv: list[str], capsys) -> tuple[int, str, str]:  # type: ignore[no-untyped-def]
    """servesim.cli.main(argv) with its SystemExit turned into an exit code, and what it printed."""
    try:
        main(argv)
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err
