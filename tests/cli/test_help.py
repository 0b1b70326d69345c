"""Every command's --help at 80 columns: bracketed help text survives, flag names are never cut or broken."""

from __future__ import annotations

import re

import pytest
import typer

from servesim.cli import _register, app
from tests.reliability._cli import run_cli

BRACKETED = re.compile(r"\[[^\[\]]*\]")
FLAG = re.compile(r"--[A-Za-z][\w-]*")


def _commands() -> list[tuple[list[str], object]]:
    """(argv path, click command) for the root, every command and every sub-command."""
    _register()
    out: list[tuple[list[str], object]] = []

    def walk(path: list[str], cmd: object) -> None:
        out.append((path, cmd))
        for name, sub in sorted(getattr(cmd, "commands", {}).items()):
            walk(path + [name], sub)

    walk([], typer.main.get_command(app))
    return out


COMMANDS = _commands()


def _flat(text: str) -> str:
    return " ".join(text.split())


def _whole(token: str, text: str) -> bool:
    """token occurs in text with no word character or hyphen glued to either side."""
    return re.search(r"(?<![\w-])" + re.escape(token) + r"(?![\w-])", text) is not None


def _source_help(cmd) -> list[str]:  # type: ignore[no-untyped-def]
    texts = [cmd.help or ""]
    texts += [getattr(p, "help", None) or "" for p in cmd.params]
    return texts


def test_every_command_is_covered():
    names = {" ".join(p) for p, _ in COMMANDS}
    assert {"", "run", "step", "models", "validate", "sweep", "capacity", "calibrate", "experiment h2b"} <= names


@pytest.mark.parametrize("path,cmd", COMMANDS, ids=[" ".join(p) or "servesim" for p, _ in COMMANDS])
def test_help_keeps_brackets_and_flag_names_at_80_columns(path, cmd, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    code, out, err = run_cli([*path, "--help"], capsys)
    assert code == 0, err
    flat = _flat(out)
    tokens = [t for text in _source_help(cmd) for t in BRACKETED.findall(text)]
    for token in tokens:
        assert _flat(token) in flat, (path, token)
    for p in cmd.params:
        for opt in [*getattr(p, "opts", []), *getattr(p, "secondary_opts", [])]:
            if opt.startswith("-"):
                assert _whole(opt, out), (path, opt)
    for text in _source_help(cmd):
        for flag in FLAG.findall(text):
            assert _whole(flag, out), (path, flag)  # a flag named in help text is not broken at a hyphen
    assert "…" not in out
    too_wide = [line for line in out.splitlines() if len(line) > 80]
    assert not too_wide, too_wide


def test_the_two_reported_cases(capsys, monkeypatch):
    """Issue 16: `servesim[ray]` showed as `servesim` and `--prefill` lost `[@CTX]`."""
    monkeypatch.setenv("COLUMNS", "80")
    _, out, _ = run_cli(["sweep", "--help"], capsys)
    assert "pip install 'servesim[ray]'" in out
    _, out, _ = run_cli(["step", "--help"], capsys)
    assert "LEN[@CTX]" in out
    assert re.search(r"^  -tp, --tp, --tensor-parallel-size <int range>$", out, re.M)


def test_panels_are_sections(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    _, out, _ = run_cli(["run", "--help"], capsys)
    heads = [line for line in out.splitlines() if line and not line.startswith(" ") and line.endswith(":")]
    assert heads[:2] == ["Options:", "vLLM engine (vLLM names; defaults are vLLM V1's for the GPU):"]
    assert out.index("vLLM engine (") < out.index("--max-num-seqs") < out.index("Workload (") < out.index("--rate <float>")
