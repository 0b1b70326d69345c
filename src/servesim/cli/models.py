"""`servesim models`: the bundled model configs with their sizes."""

from __future__ import annotations

import typer

from servesim.cli.common import DtypeOpt, KvCacheDtypeOpt


def register(app: typer.Typer) -> None:
    """Add the `models` command."""

    @app.command("models")
    def models(
        json_out: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
        dtype: str = DtypeOpt,
        kv_cache_dtype: str = KvCacheDtypeOpt,
    ) -> None:
        """List bundled models as vLLM would serve them: parameters, weight bytes, KV-cache bytes per token."""
        from servesim.config.bundled import bundled_models
        from servesim.config.model import load_model

        rows = []
        for name in bundled_models():
            m = load_model(name, dtype=dtype, kv_cache_dtype=kv_cache_dtype)
            rows.append(
                {
                    "name": name,
                    "params_b": round(m.param_count / 1e9, 3),
                    "active_params_b": round(m.active_param_count / 1e9, 3),
                    "weight_gb": round(m.weight_bytes / 1e9, 2),
                    "kv_bytes_per_token": int(m.kv_bytes_per_token),
                    "layers": m.num_layers,
                    "heads": f"{m.num_heads}/{m.num_kv_heads}x{m.head_dim}",
                    "moe": f"{m.num_experts_per_tok}/{m.num_experts}" if m.is_moe else "",
                    "dtype": m.dtype,
                    "quantization": m.quant_method or None,
                    "kv_cache_dtype": m.kv_cache_dtype,
                    "max_model_len": m.max_model_len,
                }
            )
        if json_out:
            from servesim.cli.common import echo_json

            echo_json(rows, indent=2)
            return
        from servesim.cli.common import make_console
        from rich.table import Table

        table = Table(title="Bundled models")
        for col, justify in [("name", "left"), ("params (B)", "right"), ("active (B)", "right"), ("weights (GB)", "right"),
                             ("KV B/token", "right"), ("layers", "right"), ("heads q/kv x dim", "left"), ("MoE k/E", "left"), ("format", "left"), ("max len", "right")]:
            table.add_column(col, justify=justify, no_wrap=True)  # type: ignore[arg-type]
        for r in rows:
            table.add_row(r["name"], f"{r['params_b']:.2f}", f"{r['active_params_b']:.2f}", f"{r['weight_gb']:.2f}",
                          f"{r['kv_bytes_per_token']:,}", str(r["layers"]), r["heads"], r["moe"], _format(r), f"{r['max_model_len']:,}")
        make_console().print(table)


_SHORT = {"bfloat16": "bf16", "float16": "fp16", "float32": "fp32"}


def _format(row: dict) -> str:
    """'bf16', 'bf16 mxfp4', 'fp16 kv:fp8': served dtype, quantisation method, KV-cache dtype when not auto."""
    parts = [_SHORT.get(row["dtype"], row["dtype"])]
    if row["quantization"]:
        parts.append(row["quantization"])
    if row["kv_cache_dtype"] != "auto":
        parts.append(f"kv:{row['kv_cache_dtype']}")
    return " ".join(parts)
