"""Predicted-vs-measured charts (PNG) for a validation report; matplotlib is imported lazily."""

from __future__ import annotations

from pathlib import Path

from servesim.errors import ServesimError
from servesim.validation.compare import Row


def _pyplot():  # type: ignore[no-untyped-def]
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ModuleNotFoundError:
        raise ServesimError("--plots needs matplotlib: pip install 'servesim[plot]'") from None
    return plt


def predicted_vs_measured(rows: list[Row], out_dir: Path, title: str) -> list[Path]:
    """One PNG per latency family (TTFT, ITL, E2E means and p90s): log-log scatter with the y = x line."""
    plt = _pyplot()
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for fam, label in (("ttft", "TTFT"), ("itl", "ITL"), ("e2e", "E2E")):
        fig, ax = plt.subplots(figsize=(5.2, 5.0))
        lo, hi = float("inf"), 0.0
        for stat, marker in (("mean", "o"), ("p90", "^")):
            sel = [r for r in rows if r.metric == f"{fam}_{stat}" and r.stage == "all"]
            for sat, colour in ((False, "tab:blue"), (True, "tab:red")):
                pts = [r for r in sel if r.saturated == sat]
                if not pts:
                    continue
                ax.scatter([r.actual for r in pts], [r.predicted for r in pts], marker=marker, c=colour, alpha=0.8,
                           label=f"{stat}{' (saturated)' if sat else ''}")
                lo = min(lo, *(min(r.actual, r.predicted) for r in pts))
                hi = max(hi, *(max(r.actual, r.predicted) for r in pts))
        if hi > 0:
            ax.plot([lo * 0.8, hi * 1.25], [lo * 0.8, hi * 1.25], "k--", lw=1, label="y = x")
            ax.set_xscale("log")
            ax.set_yscale("log")
        ax.set_xlabel(f"measured {label} (ms)")
        ax.set_ylabel(f"predicted {label} (ms)")
        ax.set_title(f"{label}: {title}", fontsize=9)
        ax.legend(fontsize=8)
        fig.tight_layout()
        path = out_dir / f"{fam}_predicted_vs_measured.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written
