"""Measured H100 kernel tables (GEMM, prefill and decode attention) and their lookups.

The tables come from InferSim's H100 bench data via BLIS (see data/kernels/README.md). Units, checked
on the CSVs themselves (blis-anchor.md §2.7):
- GEMM `mfu` = 2·M·K·N / (latency · 1979 TFLOP/s), i.e. relative to the FP8 dense peak (FP8 kernels);
- prefill attention `mfu` = 2·H·S²·d_h / (latency · 989.5 TFLOP/s) — causal (half) FLOPs, BF16 peak;
- decode attention `mfu` = 4·(H/tp)·kv·d_h·bs / (latency · 989.5 TFLOP/s) — full FLOPs, BF16 peak.
Each lookup can return either the CSV's rounded `mfu` column (what BLIS reads) or an efficiency
recomputed from `latency_us` at full precision (what the corrected model reads).
"""

from __future__ import annotations

import csv
from bisect import bisect_left
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from servesim.config.bundled import kernel_dir

GEMM_TABLE_PEAK_FLOPS = 1979e12  # the GEMM csv's mfu is relative to H100 dense FP8
ATTN_TABLE_PEAK_FLOPS = 989.5e12  # the attention csvs' mfu is relative to H100 dense BF16
MFU_FLOOR = 1e-4  # BLIS treats a smaller mfu as missing and falls back to a non-zero neighbour


def _interp(xs: list[float], ys: list[float], x: float) -> float:
    """Piecewise-linear interpolation in x, clamped to the end points."""
    if x <= xs[0]:
        return ys[0]
    if x >= xs[-1]:
        return ys[-1]
    i = bisect_left(xs, x)
    x0, x1 = xs[i - 1], xs[i]
    return ys[i - 1] + (ys[i] - ys[i - 1]) * (x - x0) / (x1 - x0)


@dataclass(frozen=True, slots=True)
class _Curve:
    """One 1-D curve: x values and both efficiency readings (rounded csv mfu, exact from latency)."""

    xs: list[float]
    mfu: list[float]
    exact: list[float]

    def at(self, x: float, exact: bool) -> float:
        return _interp(self.xs, self.exact if exact else self.mfu, x)


def _suffix_min(values: list[float]) -> list[float]:
    """values[i] replaced by min(values[i:]): the largest non-decreasing sequence nowhere above `values`."""
    out = list(values)
    for i in range(len(out) - 2, -1, -1):
        out[i] = min(out[i], out[i + 1])
    return out


def _nonzero_fill(values: list[float]) -> list[float]:
    """Replace values below MFU_FLOOR with the nearest non-zero neighbour (BLIS's zero-mfu fallback)."""
    good = [i for i, v in enumerate(values) if v >= MFU_FLOOR]
    if not good:
        return [MFU_FLOOR] * len(values)
    return [v if v >= MFU_FLOOR else values[min(good, key=lambda j: abs(j - i))] for i, v in enumerate(values)]


class GemmTable:
    """GEMM efficiency by (M, K, N): nearest (k, n) with k >= K and n >= N, then linear in M."""

    def __init__(self, path: Path) -> None:
        rows: dict[tuple[int, int], list[tuple[int, float, float]]] = {}
        with path.open() as fh:
            for r in csv.DictReader(fh):
                m, k, n = int(r["m"]), int(r["k"]), int(r["n"])
                rows.setdefault((k, n), []).append((m, float(r["mfu"]), float(r["latency_us"]) * 1e-6))
        self.shapes = sorted(rows)
        self.curves = {}
        for (k, n), v in rows.items():
            v.sort()
            # Exact reading, isotonic in M: a GEMM of M rows can be run padded to any M' > M, so a latency
            # above a larger M's latency is measurement noise (≤ 4 % in the H100 table); keeping it would
            # make more tokens cost less.
            lat = _suffix_min([t for _, _, t in v])
            exact = [2.0 * m * k * n / (t * GEMM_TABLE_PEAK_FLOPS) for (m, _, _), t in zip(v, lat)]
            self.curves[(k, n)] = _Curve([float(m) for m, _, _ in v], _nonzero_fill([x for _, x, _ in v]), exact)

    @lru_cache(maxsize=4096)
    def nearest_shape(self, k: int, n: int) -> tuple[int, int]:
        """BLIS stage 1: the (k, n) with k >= K and n >= N nearest in Euclidean distance, else the largest."""
        above = [(kk, nn) for kk, nn in self.shapes if kk >= k and nn >= n]
        if above:
            return min(above, key=lambda s: ((s[0] - k) ** 2 + (s[1] - n) ** 2, s))
        return max(self.shapes, key=lambda s: (s[0] ** 2 + s[1] ** 2, s))

    def efficiency(self, m: float, k: int, n: int, *, exact: bool = False) -> float:
        """Fraction of the FP8 dense peak the table's kernel reached at (M, K, N)."""
        return self.curves[self.nearest_shape(k, n)].at(m, exact)


class PrefillAttentionTable:
    """Prefill (flash) attention efficiency by sequence length, per (H, H_kv, d_h) config."""

    def __init__(self, folder: Path) -> None:
        self.curves: dict[tuple[int, int, int], _Curve] = {}
        for path in sorted(folder.glob("*.csv")):
            h, hkv, dh = (int(x) for x in path.stem.split("-"))
            pts = []
            with path.open() as fh:
                for r in csv.DictReader(fh):
                    pts.append((int(r["seq_len"]), float(r["mfu"]), float(r["latency_us"]) * 1e-6))
            pts.sort()
            # Exact reading with the latency per token non-decreasing in the sequence length: each token of a
            # causal prefill attends to all before it, so its cost cannot fall as the sequence grows. (This
            # also keeps a chunk's cost, FLOPs / efficiency at p + n, monotone in its context p; the H100
            # table already satisfies it.)
            per_token = _suffix_min([t / s for s, _, t in pts])
            exact = [2.0 * h * s * dh / (pt * ATTN_TABLE_PEAK_FLOPS) for (s, _, _), pt in zip(pts, per_token)]
            self.curves[(h, hkv, dh)] = _Curve([float(s) for s, _, _ in pts], _nonzero_fill([m for _, m, _ in pts]), exact)

    @lru_cache(maxsize=256)
    def nearest_config(self, h: int, hkv: int, dh: int) -> tuple[int, int, int]:
        """The config itself, else the nearest by unweighted Euclidean distance (BLIS's fallback)."""
        if (h, hkv, dh) in self.curves:
            return (h, hkv, dh)
        return min(self.curves, key=lambda c: ((c[0] - h) ** 2 + (c[1] - hkv) ** 2 + (c[2] - dh) ** 2, c))

    def efficiency(self, seq_len: float, h: int, hkv: int, dh: int, *, exact: bool = False) -> float:
        """Fraction of the BF16 peak reached on causal FLOPs at this sequence length."""
        return self.curves[self.nearest_config(h, hkv, dh)].at(seq_len, exact)


class DecodeAttentionTable:
    """Decode (paged) attention efficiency by (batch, kv_len), per (H, H_kv, d_h, tp); bilinear, clamped."""

    def __init__(self, folder: Path) -> None:
        self.grids: dict[tuple[int, int, int, int], tuple[list[float], list[float], dict[bool, list[list[float]]]]] = {}
        for path in sorted(folder.glob("*.csv")):
            cfg, tp = path.stem.rsplit("-tp", 1)
            h, hkv, dh = (int(x) for x in cfg.split("-"))
            t = int(tp)
            raw: dict[tuple[int, int], tuple[float, float]] = {}
            with path.open() as fh:
                for r in csv.DictReader(fh):
                    bs, kv, lat = int(r["batch_size"]), int(r["kv_len"]), float(r["latency_us"]) * 1e-6
                    exact = 4.0 * (h / t) * kv * dh * bs / (lat * ATTN_TABLE_PEAK_FLOPS)
                    raw[(bs, kv)] = (float(r["mfu"]), exact)
            bss = sorted({b for b, _ in raw})
            kvs = sorted({k for _, k in raw})
            # Exact reading, isotonic in kv: a kernel cannot take longer on a shorter KV length, so a
            # latency above a longer-kv latency in the same row is launch noise (e.g. bs=1, kv=256).
            for b in bss:
                row = [k for k in kvs if (b, k) in raw]
                for i, k in enumerate(row):
                    lat_k = 4.0 * (h / t) * k * dh * b / (raw[(b, k)][1] * ATTN_TABLE_PEAK_FLOPS)
                    best = min(4.0 * (h / t) * kk * dh * b / (raw[(b, kk)][1] * ATTN_TABLE_PEAK_FLOPS) for kk in row[i:])
                    if best < lat_k:
                        raw[(b, k)] = (raw[(b, k)][0], 4.0 * (h / t) * k * dh * b / (best * ATTN_TABLE_PEAK_FLOPS))
            good = [p for p, v in raw.items() if v[0] >= MFU_FLOOR]

            def value(b: int, k: int, exact: bool) -> float:
                if (b, k) in raw and (exact or raw[(b, k)][0] >= MFU_FLOOR):
                    return raw[(b, k)][1 if exact else 0]
                # BLIS: a missing or zero cell takes the nearest non-zero grid point in (bs, kv).
                nb, nk = min(good, key=lambda p: ((p[0] - b) ** 2 + (p[1] - k) ** 2, p))
                return raw[(nb, nk)][1 if exact else 0]

            grid = {e: [[value(b, k, e) for k in kvs] for b in bss] for e in (False, True)}
            self.grids[(h, hkv, dh, t)] = ([float(b) for b in bss], [float(k) for k in kvs], grid)

    @lru_cache(maxsize=256)
    def nearest_config(self, h: int, hkv: int, dh: int, tp: int) -> tuple[int, int, int, int]:
        """Exact config and tp, else the nearest head config, then the nearest available tp."""
        configs = {(a, b, c) for a, b, c, _ in self.grids}
        cfg = (h, hkv, dh) if (h, hkv, dh) in configs else min(
            configs, key=lambda c: ((c[0] - h) ** 2 + (c[1] - hkv) ** 2 + (c[2] - dh) ** 2, c)
        )
        tps = sorted(t for a, b, c, t in self.grids if (a, b, c) == cfg)
        return (*cfg, min(tps, key=lambda t: (abs(t - tp), t)))

    @lru_cache(maxsize=64)
    def marginals(self, h: int, hkv: int, dh: int, tp: int) -> DecodeMarginals:
        """The nearest config's grid (exact reading) as monotone marginal per-request latencies."""
        cfg = self.nearest_config(h, hkv, dh, tp)
        bss, kvs, grid = self.grids[cfg]
        per_token = 4.0 * (cfg[0] / cfg[3]) * cfg[2]
        latency = [[per_token * k * b / (e * ATTN_TABLE_PEAK_FLOPS) for k, e in zip(kvs, row)] for b, row in zip(bss, grid[True])]
        return decode_marginals(bss, kvs, latency, per_token)

    def efficiency(self, batch: float, kv_len: float, h: int, hkv: int, dh: int, tp: int, *, exact: bool = False) -> float:
        """Fraction of the BF16 peak reached (full FLOPs of H/tp heads) at this batch size and KV length."""
        bss, kvs, grid = self.grids[self.nearest_config(h, hkv, dh, tp)]
        g = grid[exact]
        b = min(max(batch, bss[0]), bss[-1])
        k = min(max(kv_len, kvs[0]), kvs[-1])
        i = min(max(bisect_left(bss, b), 1), len(bss) - 1)
        j = min(max(bisect_left(kvs, k), 1), len(kvs) - 1)
        b0, b1, k0, k1 = bss[i - 1], bss[i], kvs[j - 1], kvs[j]
        tb = (b - b0) / (b1 - b0)
        tk = (k - k0) / (k1 - k0)
        top = g[i - 1][j - 1] * (1 - tk) + g[i - 1][j] * tk
        bottom = g[i][j - 1] * (1 - tk) + g[i][j] * tk
        return top * (1 - tb) + bottom * tb


@dataclass(frozen=True)
class DecodeMarginals:
    """Decode attention as marginal per-request latencies, monotone by construction (seconds, one layer).

    The table measures uniform batches: T(b, c) = latency of b requests all at KV length c. A batch of
    mixed lengths sorted longest first, c_(1) >= c_(2) >= ..., costs Σ_j U(j, c_(j)) with
    U(j, c) = T(j, c) - T(j - 1, c), the cost the j-th request adds (T linear in b between measured batch
    sizes, proportional to b below the first and beyond the last). Uniform batches read the table exactly.
    With U >= 0 and non-decreasing in c (enforced on the grid below), adding a request or lengthening one
    never lowers the sum. U is constant in j between measured batch sizes, so row `seg` holds U for the
    requests ranked in (bounds[seg - 1], bounds[seg]] (seg 0: ranks 1 .. bounds[0]; the last row: beyond).
    """

    bounds: tuple[int, ...]  # measured batch sizes: the ranks where U changes
    kvs: np.ndarray  # measured KV lengths
    rows: np.ndarray  # rows[seg, k]: U for ranks in segment seg at kvs[k], seconds
    flops_per_token: float  # attention FLOPs of one request per KV token in the table's kernel (4 · H/tp · d_h)

    def row(self, seg: int, lo: int, hi: int) -> np.ndarray:
        """U(seg, c) for c = lo .. hi - 1 (s): linear in c between measured lengths, proportional outside."""
        c = np.arange(lo, hi, dtype=np.float64)
        kvs, u = self.kvs, self.rows[seg]
        inside = np.interp(c, kvs, u)
        # Outside the measured lengths the kernel keeps its efficiency: latency proportional to c.
        return np.where(c < kvs[0], u[0] * c / kvs[0], np.where(c > kvs[-1], u[-1] * c / kvs[-1], inside))

    def batch_time(self, ctx_desc: list[int]) -> float:
        """Σ_j U(j, c_(j)) for KV lengths sorted longest first (s, one layer): the scalar reference."""
        total = 0.0
        for j, c in enumerate(ctx_desc):
            seg = bisect_left(self.bounds, j + 1)
            total += float(self.row(seg, c, c + 1)[0])
        return total


def decode_marginals(bss: list[float], kvs: list[float], latency: list[list[float]], flops_per_token: float) -> DecodeMarginals:
    """DecodeMarginals from a uniform-batch latency grid latency[b][k] (s), cleaned to be monotone."""
    lat = np.array([_suffix_min(r) for r in latency], dtype=np.float64)  # isotonic in KV length
    rows, prev_t, prev_b = [], np.zeros(len(kvs)), 0.0
    for b, t in zip(bss, lat):
        # The batch's increment over the previous measured batch, made >= 0 and non-decreasing in KV length
        # (a longer request cannot add less): a running max, which only raises latencies (< 1 % on all but 4
        # of the 910 H100 cells, at most 8.5 %).
        inc = np.maximum.accumulate(np.maximum(t - prev_t, 0.0))
        prev_t = prev_t + inc
        rows.append(inc / (b - prev_b))
        prev_b = b
    rows.append(prev_t / prev_b)  # beyond the largest batch: its per-request latency
    return DecodeMarginals(tuple(int(b) for b in bss), np.asarray(kvs, dtype=np.float64), np.array(rows), flops_per_token)


@dataclass(frozen=True)
class KernelTables:
    """The three measured tables of one GPU family."""

    gemm: GemmTable
    prefill: PrefillAttentionTable
    decode: DecodeAttentionTable


@lru_cache(maxsize=4)
def load_kernel_tables(gpu: str = "h100") -> KernelTables:
    """Load (once) the bundled kernel tables of a GPU family."""
    folder = kernel_dir(gpu)
    return KernelTables(
        gemm=GemmTable(folder / "gemm.csv"),
        prefill=PrefillAttentionTable(folder / "mha_prefill"),
        decode=DecodeAttentionTable(folder / "mha_decode"),
    )
