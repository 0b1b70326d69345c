"""Options and helpers shared by several commands."""

from __future__ import annotations

from pathlib import Path
from collections.abc import Callable
from typing import Any, TextIO

import typer

from servesim.config import outfile

ModelOpt = typer.Option("llama-2-7b-hf", "--model", "-m", help="Bundled name, Hugging Face id, or path to config.json/folder.")
HardwareOpt = typer.Option("H100", "--hardware", help="GPU preset (H100, H100-PCIe, H100-NVL, H200, A100-80GB, A100-40GB, L40S, B200, MI300X) or JSON file.")
HardwareConfigOpt = typer.Option(None, "--hardware-config", help="Hardware JSON (servesim or BLIS hardware_config.json layout).")
TpOpt = typer.Option(1, "--tp", "-tp", "--tensor-parallel-size", help="Tensor-parallel degree.", min=1)
PpOpt = typer.Option(1, "--pipeline-parallel-size", "-pp", help="Pipeline-parallel stages (layers split over them, as vLLM).", min=1)
EpOpt = typer.Option(False, "--enable-expert-parallel", help="MoE: spread whole experts over the TP × DP ranks instead of sharding each over TP.")
LatencyModelOpt = typer.Option("calibrated", "--latency-model", help="calibrated (fitted on real runs, default), roofline-v2 (the seed's) or roofline-v2-corrected.")
DtypeOpt = typer.Option("auto", "--dtype", help="auto | bfloat16 | float16 | float32 (vLLM: auto serves fp32 checkpoints in bfloat16).")
QuantizationOpt = typer.Option(None, "--quantization", "-q", help="Quantisation method (vLLM names: fp8, awq, gptq, compressed-tensors, mxfp4, bitsandbytes; default: the config's quantization_config).")
KvCacheDtypeOpt = typer.Option("auto", "--kv-cache-dtype", help="auto | fp8 | fp8_e4m3 | fp8_e5m2 (fp8 halves KV bytes; auto follows a config's kv_cache_scheme).")
DisableHybridKvOpt = typer.Option(False, "--disable-hybrid-kv-cache-manager", help="Models with sliding-window and full layers: keep every layer's KV for the whole sequence in one block table (vLLM's flag).")
OverheadOpt = typer.Option("auto", "--overhead", help="none | fixed | per-layer (the seed's 100/500/250 µs × layers/TP) | per-layer:C | sqrt-layer:C | log-layer:C | per-layer-no-tp:C; auto = per-layer for roofline models, nothing extra for calibrated.")

# LoRA engine flags (vLLM's names and defaults, vllm/config/lora.py), shared by run and capacity.
EnableLoraOpt = typer.Option(False, "--enable-lora", help="Serve LoRA adapters (docs/LATENCY.md, \"LoRA\").")
MaxLorasOpt = typer.Option(1, "--max-loras", help="Most distinct adapters in one batch (= GPU adapter slots).")
MaxLoraRankOpt = typer.Option(16, "--max-lora-rank", help="LoRA rank every slot is padded to (1, 8, 16, 32, 64, 128, 256, 320, 512).")
MaxCpuLorasOpt = typer.Option(None, "--max-cpu-loras", help="Adapters cached in CPU memory (default: --max-loras; must be >= it).")
LoraAdaptersOpt = typer.Option(None, "--lora-adapters", help="Each request asks for one of N LoRA adapters, uniformly (needs --enable-lora).")


def lora_engine_args(enable_lora: bool, max_loras: int, max_lora_rank: int, max_cpu_loras: int | None) -> dict[str, Any]:
    """The engine args the LoRA flags set ({} when LoRA is off); ServesimError for a LoRA limit without --enable-lora."""
    from servesim.errors import ServesimError

    if not enable_lora:
        if max_loras != 1 or max_lora_rank != 16 or max_cpu_loras is not None:
            raise ServesimError("--max-loras/--max-lora-rank/--max-cpu-loras: need --enable-lora")
        return {}
    return {"enable_lora": True, "max_loras": max_loras, "max_lora_rank": max_lora_rank, "max_cpu_loras": max_cpu_loras}


def check_output(path: Path | None, flag: str, *, regular_only: bool = False) -> None:
    """Refuse an output path before any work starts (config/outfile.check_output: folder exists and is writable,
    not a folder, device or socket)."""
    outfile.check_output(path, flag, regular_only=regular_only)


def check_files(outputs: list[tuple[str, Path | None]], inputs: list[tuple[str, Any]] | tuple = ()) -> None:
    """Check every output path, then refuse an output that is an input or another output, before any work."""
    for flag, path in outputs:
        check_output(path, flag)
    outfile.refuse_overlap(outputs, [(f, p) for f, p in inputs if isinstance(p, (str, Path))])


def write_atomic(path: Path, write: Callable[[TextIO], None], flag: str = "--output", newline: str | None = None) -> None:
    """Write a text file (config/outfile.write_text: atomic for files, in place for streams, links followed)."""
    outfile.write_text(path, write, flag, newline)


def write_json_atomic(path: Path, payload: Any, flag: str = "--output") -> None:
    """Write strict JSON to path atomically (indented, trailing newline; NaN/infinity refused, naming the field)."""
    outfile.write_json(path, payload, flag)


def echo_json(payload: Any, flag: str = "--json", **kwargs: Any) -> None:
    """Print strict JSON on stdout (`schema_version` stamped on an object; NaN/infinity refused, naming the field)."""
    typer.echo(outfile.dumps_json(outfile.stamp(payload), flag, **kwargs))


# Width of a console that is not a terminal (pipes, files, CI logs): wide enough that every table is drawn at its
# natural width (names never cut or folded, headers on one line); COLUMNS is a terminal's width and is not used there.
PIPE_WIDTH = 100_000


def make_console(stderr: bool = False):  # type: ignore[no-untyped-def]
    """A rich console: the terminal's width on a terminal; unlimited (tables at natural width) in pipes and files."""
    import sys

    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    return Console(stderr=stderr, width=None if stream.isatty() else PIPE_WIDTH)


def one_line(title: str | None):  # type: ignore[no-untyped-def]
    """A table title kept on one line (rich wraps a title to its table's width otherwise); None: no title."""
    from rich.text import Text

    return None if title is None else Text(title, no_wrap=True, overflow="ignore")
