"""Options and helpers shared by several commands."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from collections.abc import Callable
from typing import Any, TextIO

import typer

from servesim.errors import ServesimError

ModelOpt = typer.Option("llama-2-7b-hf", "--model", "-m", help="Bundled name, Hugging Face id, or path to config.json/folder.")
HardwareOpt = typer.Option("H100", "--hardware", help="GPU preset (H100, H100-PCIe, H100-NVL, H200, A100-80GB, A100-40GB, L40S, B200, MI300X) or JSON file.")
HardwareConfigOpt = typer.Option(None, "--hardware-config", help="Hardware JSON (servesim or BLIS hardware_config.json layout).")
TpOpt = typer.Option(1, "--tp", "--tensor-parallel-size", help="Tensor-parallel degree.", min=1)
LatencyModelOpt = typer.Option("calibrated", "--latency-model", help="calibrated (fitted on real runs, default), roofline-v2 (the seed's) or roofline-v2-corrected.")
OverheadOpt = typer.Option("auto", "--overhead", help="none | fixed | per-layer (the seed's 100/500/250 µs × layers/TP) | per-layer:C | sqrt-layer:C | log-layer:C | per-layer-no-tp:C; auto = per-layer for roofline models, nothing extra for calibrated.")


def check_output(path: Path | None, flag: str) -> None:
    """Refuse an output file path before any work starts: its folder must exist and be writable, and the path
    itself must not be a folder."""
    if path is None:
        return
    path = Path(path)
    parent = path.resolve().parent
    if not parent.is_dir():
        raise ServesimError(f"{flag} {path}: folder {path.parent} does not exist")
    if path.is_dir():
        raise ServesimError(f"{flag} {path}: is a folder; give a file name")
    if not os.access(parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise ServesimError(f"{flag} {path}: not writable")


def write_atomic(path: Path, write: Callable[[TextIO], None], flag: str = "--output", newline: str | None = None) -> None:
    """Write a text file through a temporary file in the same folder, so a failure never leaves a half-written one."""
    path = Path(path)
    check_output(path, flag)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.resolve().parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise ServesimError(f"{flag} {path}: cannot write ({exc.strerror})") from None
    try:
        with os.fdopen(fd, "w", newline=newline) as fh:
            write(fh)
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise ServesimError(f"{flag} {path}: cannot write ({exc.strerror})") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json_atomic(path: Path, payload: Any, flag: str = "--output") -> None:
    """Write JSON to path atomically (indented, trailing newline)."""

    def dump(fh: TextIO) -> None:
        json.dump(payload, fh, indent=2, sort_keys=False)
        fh.write("\n")

    write_atomic(path, dump, flag)


def make_console(stderr: bool = False):  # type: ignore[no-untyped-def]
    """A rich console; at least 120 columns wide when output is not a terminal (pipes, CI logs)."""
    import sys

    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    return Console(stderr=stderr, width=None if stream.isatty() else 120)
