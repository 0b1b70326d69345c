"""`servesim models`: the bundled model configs with their sizes."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add the `models` command."""

    @app.command("models")
    def models(json_out: bool = typer.Option(False, "--json", help="Print JSON instead of a table.")) -> None:
        """List bundled models: parameters, weight bytes, KV-cache bytes per token."""
        from servesim.config.bundled import bundled_models
        from servesim.config.model import load_model

        rows = []
        for name in bundled_models():
            m = load_model(name)
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
                    "dtype": m.dtype if m.weight_bytes_per_param >= 2 else f"{m.weight_bytes_per_param:g} B/param",
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
                             ("KV B/token", "right"), ("layers", "right"), ("heads q/kv x dim", "left"), ("MoE k/E", "left"), ("dtype", "left")]:
            table.add_column(col, justify=justify)  # type: ignore[arg-type]
        for r in rows:
            table.add_row(r["name"], f"{r['params_b']:.2f}", f"{r['active_params_b']:.2f}", f"{r['weight_gb']:.2f}",
                          f"{r['kv_bytes_per_token']:,}", str(r["layers"]), r["heads"], r["moe"], r["dtype"])
        make_console().print(table)
