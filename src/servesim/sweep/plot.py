"""Latency-vs-rate curves of a sweep: one panel per metric, one line per configuration (PNG via matplotlib)."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

from servesim.errors import ConfigError

__all__ = ["DEFAULT_METRICS", "PLOT_METRICS", "check_plot", "need_matplotlib", "plot_figure", "plot_sweep", "plot_title", "series_style", "use_log_y"]

DEFAULT_METRICS = ("ttft_ms.p99", "itl_ms.mean", "e2e_ms.p99", "output_tokens_per_s")


def _get(summary: dict[str, Any], path: str) -> float | None:
    node: Any = summary
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node if isinstance(node, (int, float)) else None


def need_matplotlib() -> None:
    """Refuse --plot before any point runs when matplotlib is missing."""
    try:
        import matplotlib  # noqa: F401
    except ModuleNotFoundError:
        raise ConfigError("--plot needs matplotlib: pip install 'servesim[plot]'") from None


# The summary metrics a sweep can plot (the keys simulate() puts in RunResult.summary).
LATENCY_METRICS = ("ttft_ms", "itl_ms", "tpot_ms", "e2e_ms", "queue_ms")
LATENCY_STATS = ("mean", "p50", "p90", "p95", "p99")
SCALAR_METRICS = ("completed", "rejected", "duration_s", "requests_per_s", "output_tokens_per_s", "total_tokens_per_s",
                  "preemptions", "kv_cache_peak_usage", "prefix_cache_hit_rate", "engine_steps", "engine_busy_s")
PLOT_METRICS = tuple(f"{m}.{s}" for m in LATENCY_METRICS for s in LATENCY_STATS) + SCALAR_METRICS


def check_plot(grid_keys: Any, metrics: tuple[str, ...], *, x: str = "rate") -> None:
    """Refuse --plot / --plot-metric before any point runs: the grid must vary x and every metric must exist."""
    for m in metrics:
        if m not in PLOT_METRICS:
            raise ConfigError(f"--plot-metric {m!r}: not a summary metric (e.g. ttft_ms.p99, itl_ms.mean, output_tokens_per_s; "
                              f"latency metrics {'|'.join(LATENCY_METRICS)} with .{'|.'.join(LATENCY_STATS)})")
    if x not in set(grid_keys):
        raise ConfigError(f"--plot: the sweep's grid has no {x!r} (plot needs {x} in grid:)")


# Distinct per series, also in greyscale print: series i gets LINESTYLES[i % 8] and MARKERS[(i + i // 8) % 8]
# (64 distinct pairs before one repeats).
LINESTYLES = ("-", "--", "-.", ":", (0, (5, 1)), (0, (3, 1, 1, 1, 1, 1)), (0, (1, 3)), (0, (6, 2, 1, 2, 1, 2)))
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
DECADE = 10.0  # a panel goes to a log y axis when one series' max / min reaches this (and every value is > 0)
TITLE_FIELDS = (("model", ""), ("hardware", "on "), ("tensor_parallel_size", "TP "))  # config keys named in the title


def series_style(i: int) -> tuple[Any, str]:
    """(linestyle, marker) of the i-th series of a panel."""
    return LINESTYLES[i % len(LINESTYLES)], MARKERS[(i + i // len(LINESTYLES)) % len(MARKERS)]


def use_log_y(series: list[list[float]]) -> bool:
    """True when a panel's y axis should be logarithmic: all values positive and one series spans a decade or more."""
    values = [y for ys in series for y in ys]
    if not values or min(values) <= 0:
        return False
    return any(ys and max(ys) / min(ys) >= DECADE for ys in series)


def plot_title(rows: list[dict[str, Any]]) -> str:
    """'NAME: MODEL on GPU, TP N' from the points' configs (several values are joined with ' / ')."""
    parts = []
    for key, prefix in TITLE_FIELDS:
        seen: list[str] = []
        for r in rows:
            v = (r.get("config") or {}).get(key)
            if v is not None and str(v) not in seen:
                seen.append(str(v))
        if seen:
            parts.append(prefix + " / ".join(seen))
    head = " ".join(parts[:2]) + (", " + parts[2] if len(parts) > 2 else "")
    name = next((r.get("name") for r in rows if r.get("name")), None)
    return f"{name}: {head}" if name and head else (name or head or "sweep")


def plot_figure(rows: list[dict[str, Any]], *, x: str = "rate", metrics: tuple[str, ...] = DEFAULT_METRICS):  # type: ignore[no-untyped-def]
    """The matplotlib Figure of metric vs the grid key `x`, one panel per metric, one line per other-keys combination."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ModuleNotFoundError:
        raise ConfigError("--plot needs matplotlib: pip install 'servesim[plot]'") from None
    ok = [r for r in rows if r.get("summary") and x in (r.get("params") or {})]
    if not ok:
        raise ConfigError(f"--plot: no finished point has grid key {x!r} (plot needs {x} in grid:)")
    for m in metrics:
        if _get(ok[0]["summary"], m) is None and not any(_get(r["summary"], m) is not None for r in ok):
            raise ConfigError(f"--plot-metric {m}: not in the summary (e.g. ttft_ms.p99, itl_ms.mean, output_tokens_per_s)")
    series: dict[str, list[tuple[float, dict[str, Any]]]] = defaultdict(list)
    for r in ok:
        others = {k: v for k, v in r["params"].items() if k != x}
        label = ", ".join(f"{k}={v}" for k, v in others.items()) or "sweep"
        series[label].append((float(r["params"][x]), r["summary"]))
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 3.9), squeeze=False)
    for ax, m in zip(axes[0], metrics):
        curves = []
        for label, pts in series.items():
            pts.sort(key=lambda p: p[0])
            xs = [p[0] for p in pts if _get(p[1], m) is not None]
            ys = [float(_get(p[1], m)) for p in pts if _get(p[1], m) is not None]  # type: ignore[arg-type]
            curves.append((label, xs, ys))
        for i, (label, xs, ys) in enumerate(curves):
            style, marker = series_style(i)
            ax.plot(xs, ys, linestyle=style, marker=marker, ms=4, label=label)
        if use_log_y([ys for _, _, ys in curves]):
            ax.set_yscale("log")
        ax.set_xlabel(f"{x} (req/s)" if x == "rate" else x)
        ax.set_ylabel(m)
        ax.set_title(m)
        ax.grid(alpha=0.3, which="both" if ax.get_yscale() == "log" else "major")
    axes[0][0].legend(fontsize=7)
    fig.suptitle(plot_title(ok))
    fig.tight_layout()
    return fig


def plot_sweep(rows: list[dict[str, Any]], path: str | Path, *, x: str = "rate", metrics: tuple[str, ...] = DEFAULT_METRICS) -> Path:
    """Write a PNG of metric vs the grid key `x` (default rate) for each combination of the other grid keys."""
    fig = plot_figure(rows, x=x, metrics=metrics)  # refuses a missing matplotlib first
    import matplotlib.pyplot as plt

    out = Path(path)
    from servesim.config.outfile import write_bytes

    try:
        write_bytes(out, lambda fh: fig.savefig(fh, format="png", dpi=120), "--plot")
    finally:
        plt.close(fig)
    return out
