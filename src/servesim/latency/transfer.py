"""Measured kernel tables read for another GPU: the same achieved roofline fraction at the same
arithmetic intensity relative to the ridge point.

A kernel table measures one GPU (the bundled ones: an H100 SXM). For a kernel of FLOPs F and bytes B
the roofline is R = max(F / P, B / BW); the measured time t gives its achieved fraction e = R / t, a
compute efficiency when F / P ≥ B / BW and a bandwidth efficiency otherwise. The transfer assumes e
depends on the kernel's shape only through x = (F / B) / (P / BW), its intensity relative to the ridge
point P / BW: on a target GPU, t' = R' / e(x') with R' the target's own roofline.

For a family whose intensity is proportional to a size s (GEMM: I ∝ M, the rows; flash prefill
attention: I ∝ the sequence length), the target at s has the x of the table's GPU at s·r with
r = ridge_table / ridge_target, and — in both regimes, see docs/LATENCY.md — its efficiency relative
to its own peak is the table's at s·r: eff'(s) = eff(s·r). Decode attention's intensity is fixed
(H / H_kv FLOP per byte, far below every ridge): it stays memory-bound, keeps its bandwidth efficiency,
and its efficiency relative to peak becomes eff·r (its time scales with the bandwidth ratio).
Where the table's efficiency falls with size (compute-bound shape effects) the same shape's efficiency
bounds the result (_bounded). On the table's own GPU r = 1 exactly and the tables are returned unchanged
(same bits). docs/LATENCY.md, "Other GPUs", has the derivation and the datasheet numbers.
"""

from __future__ import annotations

from dataclasses import dataclass

from servesim.config.hardware import Hardware
from servesim.errors import ConfigError
from servesim.latency.kernels import KernelTables, load_kernel_tables


@dataclass(frozen=True, slots=True)
class TableGPU:
    """The GPU a kernel-table family was measured on: dense peaks (TFLOP/s) and HBM bandwidth (TB/s)."""

    name: str
    bf16_tflops: float
    fp8_tflops: float
    hbm_tb_s: float

    def peak_flops(self, bytes_per_weight: float) -> float:
        """Dense peak in FLOP/s for weights of this width (FP8 at <= 1 byte), as Hardware.peak_flops."""
        return (self.fp8_tflops if bytes_per_weight <= 1.0 else self.bf16_tflops) * 1e12


# The bundled tables are InferSim's H100 SXM measurements (data/kernels/README.md); peaks from the H100
# datasheet (2430615): dense BF16 989.5, FP8 1,979 TFLOP/s, HBM3 3.35 TB/s — the H100-SXM preset's numbers.
TABLE_GPUS = {"h100": TableGPU("H100", 989.5, 1979.0, 3.35)}

MEASURED = "measured {gpu} tables"
TRANSFERRED = "kernel efficiency transferred from {gpu} tables"


def ridge_scale(ref_flops: float, ref_bw: float, flops: float, bw: float) -> float:
    """r = ridge of the table's GPU / ridge of the target (ridge = peak FLOP/s over HBM bytes/s); exactly 1.0
    when the two have the same numbers (the products are the same IEEE operations on the same values)."""
    return (ref_flops * bw) / (ref_bw * flops)


@dataclass(frozen=True, slots=True)
class Transfer:
    """How one GPU reads a table family: the intensity scales r for GEMMs and attention, and its provenance."""

    gemm_r: float  # GEMM sizes M are read at M·r (r at the GEMM's peak: FP8 or BF16)
    attn_r: float  # prefill lengths read at S·r, decode efficiencies multiplied by r (BF16 peaks)
    provenance: str  # "measured H100 tables" or "kernel efficiency transferred from H100 tables"

    @property
    def identity(self) -> bool:
        """True when the tables are read as measured (r = 1 for every kernel)."""
        return self.gemm_r == 1.0 and self.attn_r == 1.0


def transfer_for(hardware: Hardware, gemm_bytes_per_weight: float) -> Transfer:
    """The Transfer of a GPU's kernel tables to this hardware, for GEMMs on weights of this width (bytes)."""
    ref = TABLE_GPUS.get(hardware.kernel_tables)
    if ref is None:
        raise ConfigError(f"hardware {hardware.name}: field 'kernel_tables'={hardware.kernel_tables!r} is not a bundled "
                          f"table family (allowed: {', '.join(TABLE_GPUS)})")
    ref_bw, bw = ref.hbm_tb_s * 1e12, hardware.hbm_bytes_per_s
    gemm_r = ridge_scale(ref.peak_flops(gemm_bytes_per_weight), ref_bw, hardware.peak_flops(gemm_bytes_per_weight), bw)
    attn_r = ridge_scale(ref.bf16_tflops * 1e12, ref_bw, hardware.bf16_flops, bw)
    same = (hardware.bf16_tflops, hardware.fp8_tflops, hardware.hbm_tb_s) == (ref.bf16_tflops, ref.fp8_tflops, ref.hbm_tb_s)
    return Transfer(gemm_r, attn_r, (MEASURED if same else TRANSFERRED).format(gpu=ref.name))


def provenance(hardware: Hardware) -> str:
    """One line saying where this GPU's kernel efficiencies come from (for run/step output)."""
    return transfer_for(hardware, 2.0).provenance


def _bounded(at_same_x: float, at_same_shape: float, r: float) -> float:
    """The efficiency at the same x, but on a GPU with a lower ridge (r > 1: more bandwidth per FLOP) never
    below the table's at the same shape, and with a higher ridge (r < 1) never above it. Where the table's
    efficiency falls with size (compute-bound tile/wave effects of that shape, e.g. GEMM M 8,192 → 131,072)
    the shape's own efficiency is kept, so a GPU with the H100's peaks and more bandwidth is never slower.
    Both bounds keep the time monotone in size and its ratio to the table GPU's between the FLOPs and the
    bandwidth ratios (docs/LATENCY.md)."""
    if r >= 1.0:
        return at_same_x if at_same_x >= at_same_shape else at_same_shape
    return at_same_x if at_same_x <= at_same_shape else at_same_shape


class _Gemm:
    """GemmTable read at M·r."""

    __slots__ = ("table", "r")

    def __init__(self, table, r: float) -> None:  # type: ignore[no-untyped-def]
        self.table, self.r = table, r

    def nearest_shape(self, k: int, n: int) -> tuple[int, int]:
        return self.table.nearest_shape(k, n)

    def efficiency(self, m: float, k: int, n: int, *, exact: bool = False) -> float:
        """The table's efficiency at M·r, bounded by its efficiency at M itself (see _bounded): this GPU's
        fraction of its own peak at (M, K, N)."""
        t = self.table
        return _bounded(t.efficiency(m * self.r, k, n, exact=exact), t.efficiency(m, k, n, exact=exact), self.r)


class _Prefill:
    """PrefillAttentionTable read at S·r."""

    __slots__ = ("table", "r")

    def __init__(self, table, r: float) -> None:  # type: ignore[no-untyped-def]
        self.table, self.r = table, r

    def efficiency(self, seq_len: float, h: int, hkv: int, dh: int, *, exact: bool = False) -> float:
        """The table's causal-FLOP efficiency at S·r, bounded by its efficiency at S (see _bounded): this GPU's
        fraction of its BF16 peak at length S."""
        t = self.table
        return _bounded(t.efficiency(seq_len * self.r, h, hkv, dh, exact=exact), t.efficiency(seq_len, h, hkv, dh, exact=exact), self.r)


class _Decode:
    """DecodeAttentionTable with efficiencies × r (memory-bound: time scales with the bandwidth ratio)."""

    __slots__ = ("table", "r", "grids")

    def __init__(self, table, r: float) -> None:  # type: ignore[no-untyped-def]
        self.table, self.r, self.grids = table, r, table.grids

    def nearest_config(self, h: int, hkv: int, dh: int, tp: int) -> tuple[int, int, int, int]:
        return self.table.nearest_config(h, hkv, dh, tp)

    def marginals(self, h: int, hkv: int, dh: int, tp: int):  # type: ignore[no-untyped-def]
        """The measured marginals (seconds on the table's GPU); callers divide their time by r."""
        return self.table.marginals(h, hkv, dh, tp)

    def efficiency(self, batch: float, kv_len: float, h: int, hkv: int, dh: int, tp: int, *, exact: bool = False) -> float:
        """The table's efficiency × r: this GPU's fraction of its BF16 peak at (batch, KV length)."""
        return self.table.efficiency(batch, kv_len, h, hkv, dh, tp, exact=exact) * self.r


@dataclass(frozen=True)
class TransferredTables:
    """The three tables as a target GPU reads them (same lookups as KernelTables)."""

    gemm: _Gemm
    prefill: _Prefill
    decode: _Decode


def tables_for(hardware: Hardware, gemm_bytes_per_weight: float) -> tuple[KernelTables | TransferredTables, Transfer]:
    """The kernel tables as this GPU reads them (the measured ones themselves when r = 1), and the Transfer."""
    t = transfer_for(hardware, gemm_bytes_per_weight)
    tables = load_kernel_tables(hardware.kernel_tables)
    if t.identity:
        return tables, t
    return TransferredTables(_Gemm(tables.gemm, t.gemm_r), _Prefill(tables.prefill, t.attn_r), _Decode(tables.decode, t.attn_r)), t
