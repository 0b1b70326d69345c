"""Predicted-vs-measured charts (PNG) for a validation report; matplotlib is imported lazily."""

from __future__ import annotations

from pathlib import Path

from servesim.errors import ServesimError
from servesim.validation.compare import Row


def _pyplot(flag: str = "--plots"):  # type: ignore[no-untyped-def]
    """matplotlib.pyplot on the Agg backend; a one-line ServesimError naming `flag` when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ModuleNotFoundError:
        raise ServesimError(f"{flag} needs matplotlib: pip install 'servesim[plot]'") from None
    return plt


def save_png(fig, path: Path, flag: str, dpi: int) -> None:  # type: ignore[no-untyped-def]
    """Write a matplotlib figure as PNG through the one output writer (atomic, links followed, umask modes)."""
    from servesim.config.outfile import write_bytes

    write_bytes(path, lambda fh: fig.savefig(fh, format="png", dpi=dpi), flag)


def predicted_vs_measured(rows: list[Row], out_dir: Path, title: str) -> list[Path]:
    """One PNG per latency family (TTFT, ITL, E2E means and p90s): log-log scatter with the y = x line."""
    plt = _pyplot()
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ServesimError(f"--plots {out_dir}: cannot create the folder ({exc.strerror})") from None
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
        save_png(fig, path, "--plots", dpi=110)
        plt.close(fig)
        written.append(path)
    return written
