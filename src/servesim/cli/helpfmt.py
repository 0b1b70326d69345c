"""Plain-text --help for every command: no markup parsing, flag names never cut or broken, panels as sections.

typer's rich help parses help strings as rich markup (`servesim[ray]` printed as `servesim`, `LEN[@CTX]` as
`LEN`) and ellipsises long flag names in narrow terminals; click's plain layout has neither problem. This
module adds what the rich layout had and click's lacks: options grouped under their `rich_help_panel`
headings, and text wrapped at spaces only (never inside `--flag-names` or `per-layer-no-tp:C`).
"""

from __future__ import annotations

import textwrap
from typing import Any

import typer
from typer.core import TyperCommand, TyperGroup

_BaseContext = TyperCommand.context_class  # click's Context (typer's vendored copy, or click itself)
_BaseFormatter = _BaseContext.formatter_class

COL_MAX = 30  # widest first column (flag names) before the help text moves to the next line, as click


def wrap(text: str, width: int) -> list[str]:
    """Lines of text wrapped at spaces only, at most width columns unless one word is longer; blank lines kept."""
    lines: list[str] = []
    for i, par in enumerate(p for p in text.split("\n\n")):
        if i:
            lines.append("")
        if par.lstrip("\n").startswith("\b"):  # click's marker: keep this paragraph's lines as written
            lines.extend(par.lstrip("\n")[1:].lstrip("\n").splitlines())
            continue
        lines.extend(textwrap.wrap(" ".join(par.split()), max(width, 10), break_on_hyphens=False, break_long_words=False) or [""])
    return lines


class HelpFormatter(_BaseFormatter):  # type: ignore[misc, valid-type]
    """click's HelpFormatter, wrapping at spaces only."""

    def write_text(self, text: str) -> None:
        """A paragraph of prose, indented and wrapped."""
        indent = " " * self.current_indent
        for line in wrap(text, self.width - self.current_indent):
            self.write(f"{indent}{line}\n" if line else "\n")

    def write_heading(self, heading: str) -> None:
        """A section heading with its colon, wrapped like prose."""
        indent = " " * self.current_indent
        for line in wrap(f"{heading}:", self.width - self.current_indent):
            self.write(f"{indent}{line}\n")

    def write_dl(self, rows: Any, col_max: int = COL_MAX, col_spacing: int = 2, *, first_width: int | None = None) -> None:
        """Two columns (flags, help); a first column wider than col_max puts its help on the next line."""
        rows = list(rows)
        widest = first_width if first_width is not None else max((len(r[0]) for r in rows), default=0)
        first_col = min(widest, col_max) + col_spacing
        pad = " " * (self.current_indent + first_col)
        for first, *rest in rows:
            second = rest[0] if rest else ""
            self.write(" " * self.current_indent + first)
            if not second:
                self.write("\n")
                continue
            if len(first) <= first_col - col_spacing:
                self.write(" " * (first_col - len(first)))
            else:
                self.write("\n" + pad)
            lines = wrap(second, self.width - self.current_indent - first_col)
            self.write(lines[0] + "\n")
            for line in lines[1:]:
                self.write((pad + line if line else "") + "\n")


class HelpContext(_BaseContext):  # type: ignore[misc, valid-type]
    """click's Context with servesim's help formatter."""

    formatter_class = HelpFormatter


def _sections(command: Any, ctx: Any) -> list[tuple[str, list[tuple[str, str]]]]:
    """(heading, rows) of the command's parameters: Arguments, Options, then each rich_help_panel in order of first use."""
    sections: dict[str, list[tuple[str, str]]] = {}
    for param in command.get_params(ctx):
        record = param.get_help_record(ctx)
        if record is None:
            continue
        heading = "Arguments" if param.param_type_name == "argument" else (getattr(param, "rich_help_panel", None) or "Options")
        sections.setdefault(heading, []).append(record)
    order = [h for h in ("Arguments", "Options") if h in sections] + [h for h in sections if h not in ("Arguments", "Options")]
    return [(h, sections[h]) for h in order]


class Command(TyperCommand):  # type: ignore[misc]
    """A typer command whose help is plain text with panels as sections."""

    context_class = HelpContext

    def format_options(self, ctx: Any, formatter: Any) -> None:
        """Every parameter, grouped under its panel heading."""
        sections = _sections(self, ctx)
        widest = max((len(r[0]) for _, rows in sections for r in rows), default=0)  # one column edge for all sections
        for heading, rows in sections:
            with formatter.section(heading):
                formatter.write_dl(rows, first_width=widest)


class Group(TyperGroup):  # type: ignore[misc]
    """A typer group whose help is plain text."""

    context_class = HelpContext

    def format_commands(self, ctx: Any, formatter: Any) -> None:
        """Each command with its whole first sentence (click cuts it to fit one line)."""
        rows = []
        for name in self.list_commands(ctx):
            cmd = self.get_command(ctx, name)
            if cmd is not None and not cmd.hidden:
                rows.append((name, cmd.get_short_help_str(limit=10_000)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


class Typer(typer.Typer):
    """typer.Typer whose commands and sub-groups use servesim's plain help (rich markup off)."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("cls", Group)
        kwargs.setdefault("rich_markup_mode", None)
        super().__init__(**kwargs)

    def command(self, *args: Any, **kwargs: Any) -> Any:
        """typer's command decorator, with servesim's help Command class by default."""
        kwargs.setdefault("cls", Command)
        return super().command(*args, **kwargs)
