"""Roofline step-time models: the seed's "v2" exactly as the anchor computes it, and a corrected variant.

`roofline-v2` reproduces blis-anchor.md §2 (BLIS @389235eb) formula for formula, defects included, so the
seed report's tables compare like for like. `roofline-v2-corrected` keeps the same kernel tables but fixes
what §2.7 and §6 list: explicit table units at full precision, one forward pass per step (GEMMs over all
tokens, weights loaded once), exact causal prefill FLOPs, MFU looked up at TP-sharded shapes, LM head,
TP all-reduce, MoE experts, and per-kernel max(compute, memory) summed over the kernels of the pass.
Decode attention is costed from the uniform-batch latency grid as marginal per-request latencies
(kernels.DecodeMarginals), so with no overhead the step time never falls when a step gets more tokens,
more requests or longer contexts.
"""

from __future__ import annotations

import math
from array import array as _u64
from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass, field
from operator import itemgetter

import numpy as np

from servesim.config.hardware import Hardware
from servesim.config.model import Gemm, ModelSpec
from servesim.latency import attention as attn
from servesim.latency.kernels import ATTN_TABLE_PEAK_FLOPS, GEMM_TABLE_PEAK_FLOPS, DecodeAttentionTable, KernelTables
from servesim.latency.overhead import Overhead, make_overhead
from servesim.latency.plan import Component, StepPlan, StepTime
from servesim.latency.transfer import TransferredTables, tables_for

# Anchor §2.4–2.5 memory-traffic discounts (empirical constants of BLIS v2).
V2_DECODE_KV_READ = 0.80
V2_DECODE_ACT = 0.75
V2_PREFILL_KV_READ = 0.92
V2_PREFILL_ACT = 0.85
V2_CAUSAL_DIVISOR = 1.8  # anchor §2.5: "causal-mask" divisor applied to full prefill attention FLOPs
V2_BUCKET_MIN, V2_BUCKET_MAX = 512, 65536

ALLREDUCE_LATENCY_S = 5e-6  # per all-reduce launch+sync on NVLink (vLLM custom all-reduce, small messages)


def _bucket(seq: int) -> int:
    """Anchor §2.5: smallest power of two >= seq, clamped to [512, 65536]."""
    b = 1 << max(0, math.ceil(math.log2(max(seq, 1))))
    return min(max(b, V2_BUCKET_MIN), V2_BUCKET_MAX)


def _classify(plan: StepPlan) -> str:
    if plan.prefill_new and plan.decode_ctx:
        return "mixed"
    return "prefill" if plan.prefill_new else ("decode" if plan.decode_ctx else "empty")


ROW_BLOCK = 1024  # decode-term rows grow to the next multiple of this context length
ROWS_MAX_ENTRIES = 4_000_000  # per model: all rows are dropped (and refilled on demand) beyond this


def decode_efficiency_row(table: DecodeAttentionTable, batch: int, lo: int, hi: int, h: int, hkv: int, dh: int,
                          tp: int, exact: bool) -> np.ndarray:
    """table.efficiency(batch, c, ...) for c = lo .. hi - 1, vectorised with the same IEEE operations in the
    same order (elementwise numpy float64), so every value has the same bits as the scalar lookup."""
    bss, kvs, grid = table.grids[table.nearest_config(h, hkv, dh, tp)]
    g = grid[exact]
    b = min(max(batch, bss[0]), bss[-1])
    i = min(max(bisect_left(bss, b), 1), len(bss) - 1)
    b0, b1 = bss[i - 1], bss[i]
    tb = (b - b0) / (b1 - b0)
    kv_arr = np.asarray(kvs, dtype=np.float64)
    k = np.minimum(np.maximum(np.arange(lo, hi, dtype=np.float64), kvs[0]), kvs[-1])
    j = np.clip(np.searchsorted(kv_arr, k, side="left"), 1, len(kvs) - 1)
    k0, k1 = kv_arr[j - 1], kv_arr[j]
    tk = (k - k0) / (k1 - k0)
    g0, g1 = np.asarray(g[i - 1], dtype=np.float64), np.asarray(g[i], dtype=np.float64)
    top = g0[j - 1] * (1 - tk) + g0[j] * tk
    bottom = g1[j - 1] * (1 - tk) + g1[j] * tk
    return top * (1 - tb) + bottom * tb


class _Rows:
    """Per-request decode terms tabulated by context length, one row per key (a batch size, or a name):
    rows[key][c]. A step reads its terms with one itemgetter and sums them with the builtin sum, which adds
    the same values in the same order as the per-request Python loop it replaces (so the same bits)."""

    __slots__ = ("fill", "rows", "entries")

    def __init__(self, fill) -> None:  # type: ignore[no-untyped-def]
        self.fill = fill  # (key, lo, hi) -> list of the terms for contexts lo .. hi - 1
        self.rows: dict[object, list[float]] = {}
        self.entries = 0

    def terms(self, key: object, get, ctx: Sequence[int]) -> tuple[float, ...]:  # type: ignore[no-untyped-def]
        row = self.rows.get(key)
        if row is not None:
            try:
                return get(row)
            except IndexError:  # a context beyond the row: grow it
                pass
        if row is None:
            if self.entries > ROWS_MAX_ENTRIES:
                self.rows.clear()
                self.entries = 0
            row = self.rows[key] = []
        hi = (max(ctx) // ROW_BLOCK + 1) * ROW_BLOCK
        lo = len(row)
        row.extend(self.fill(key, lo, hi))
        self.entries += hi - lo
        return get(row)


def _getter(ctx: Sequence[int]):  # type: ignore[no-untyped-def]
    """An itemgetter of the contexts for the row tables, or None when they cannot serve them: a negative
    or non-int context (the caller takes its scalar path). array('Q') checks both in C."""
    try:
        _u64("Q", ctx)
    except (OverflowError, TypeError):
        return None
    if len(ctx) > 1:
        return itemgetter(*ctx)
    c = ctx[0]
    return lambda row: (row[c],)  # itemgetter of one item returns the item, not a tuple


@dataclass
class RooflineV2:
    """The seed's roofline (anchor §2), reproduced: bandwidth factor, MFU tables, max() mixing, overhead."""

    model: ModelSpec
    hardware: Hardware
    tp: int = 1
    overhead: Overhead = field(default_factory=lambda: Overhead("none"))
    bw_efficiency: float | None = None  # None = the hardware's (0.82 for the presets, the seed's H1)
    name: str = "roofline-v2"

    def __post_init__(self) -> None:
        self.model.check_tp(self.tp)
        m, b = self.model, self.model.weight_bytes_per_param
        self.peak = self.hardware.bf16_flops  # BLIS: TFlopsPeak whatever the dtype
        # The H100 tables as this GPU reads them (transfer.py; unchanged on an H100, so the seed's formula there).
        self.tables: KernelTables | TransferredTables
        self.tables, self.transfer = tables_for(self.hardware, 2.0)  # ridge at TFlopsPeak (BF16), as the peak
        eta = self.hardware.bw_efficiency if self.bw_efficiency is None else self.bw_efficiency
        self.bw = self.hardware.hbm_bytes_per_s * eta
        d, dkv = m.hidden_size, m.num_kv_heads * m.head_dim
        ff = m.intermediate_size  # anchor reads no MoE fields: an MoE model is costed as dense
        # Anchor §2.3 shape set (K, N): Q, K, V, O, gate, up, down — at the unsharded shapes.
        self.shapes = [(d, m.q_size), (d, dkv), (d, dkv), (m.q_size, d), (d, ff), (d, ff), (ff, d)]
        self.weights = m.num_layers * (d * (m.q_size + 2 * dkv) + m.q_size * d + 3 * d * ff) * b
        self.kv_token = 2 * m.num_layers * m.num_kv_heads * m.head_dim * b
        self._gemm_cache: dict[int, tuple[float, float, float, float]] = {}
        self._mu_cache: dict[tuple[int, int], float] = {}
        # step_time() fast path: constants of _decode/_prefill, factored exactly as those expressions group.
        L, h = m.num_layers, m.hidden_size
        self._per_token = 4.0 * m.num_heads * m.head_dim * L
        self._attn_coef = 4.0 * m.num_heads * m.head_dim
        self._dec_kv = V2_DECODE_KV_READ * self.kv_token
        self._dec_act = V2_DECODE_ACT * L * h * b
        self._pre_kv = V2_PREFILL_KV_READ * self.kv_token
        self._pre_act = V2_PREFILL_ACT * L * h * b
        self._rows = _Rows(self._fill_row)
        self._prefill_mu: dict[int, float] = {}
        self._bucket_of: dict[int, int] = {}

    def _fill_row(self, key: object, lo: int, hi: int) -> list[float]:
        """Row `key` of the decode terms for contexts lo .. hi - 1: batch D -> c * μ_dec(D, c) (the weighted
        FLOPs term of _decode); "dyn" -> the KV/activation bytes term of _decode."""
        c = np.arange(lo, hi, dtype=np.float64)
        if key == "dyn":
            return (self.kv_token + self._dec_kv * c + self._dec_act).tolist()
        m = self.model
        mu = decode_efficiency_row(self.tables.decode, key, lo, hi, m.num_heads, m.num_kv_heads, m.head_dim, self.tp, False)  # type: ignore[arg-type]
        if not self.transfer.identity:
            mu = mu * self.transfer.attn_r  # as tables.decode.efficiency (transfer._Decode): the same product
        return (c * mu).tolist()

    # -- pieces ----------------------------------------------------------------------------------
    def gemms(self, m_tokens: int) -> tuple[float, float, float, float]:
        """Anchor §2.3: (seconds, FLOPs, compute-only seconds, weight bytes) of all GEMMs for M tokens, × L / tp."""
        hit = self._gemm_cache.get(m_tokens)
        if hit is not None:
            return hit
        b, total, flops, compute, wbytes = self.model.weight_bytes_per_param, 0.0, 0.0, 0.0, 0.0
        for k, n in self.shapes:
            mfu = self.tables.gemm.efficiency(m_tokens, k, n)
            f = 2.0 * m_tokens * k * n
            total += max(f / (self.peak * mfu), k * n * b / self.bw)  # weight-load floor (anchor H11)
            flops, compute, wbytes = flops + f, compute + f / (self.peak * mfu), wbytes + k * n * b
        scale = self.model.num_layers / self.tp
        out = (total * scale, flops * scale, compute * scale, wbytes * scale)
        self._gemm_cache[m_tokens] = out
        return out

    def _gemm_component(self, name: str, m_tokens: int) -> Component:
        s, f, c, w = self.gemms(m_tokens)
        return Component(name, f, w, c, w / self.bw, s, "compute" if c >= w / self.bw else "memory")

    def _decode_mfu(self, batch: int, ctx: int) -> float:
        """μ_dec(batch, kv) from the decode table, memoised (the engine asks for the same pairs many times)."""
        key = (batch, ctx)
        mu = self._mu_cache.get(key)
        if mu is None:
            m = self.model
            mu = self.tables.decode.efficiency(batch, ctx, m.num_heads, m.num_kv_heads, m.head_dim, self.tp)
            if len(self._mu_cache) < 1_000_000:
                self._mu_cache[key] = mu
        return mu

    def _decode(self, ctx: tuple[int, ...]) -> tuple[float, list[Component]]:
        m, L, D = self.model, self.model.num_layers, len(ctx)
        per_token = 4.0 * m.num_heads * m.head_dim * L
        mfu = self._decode_mfu
        attn_flops = per_token * sum(ctx)
        weighted = per_token * sum(c * mfu(D, c) for c in ctx)
        g_s = self.gemms(D)[0]
        attn_s = attn_flops / (self.peak * (weighted / attn_flops) * self.tp) if attn_flops else 0.0
        b = m.weight_bytes_per_param
        dyn = sum(self.kv_token + V2_DECODE_KV_READ * self.kv_token * c + V2_DECODE_ACT * L * m.hidden_size * b for c in ctx)
        mem_bytes = (self.weights + dyn) / self.tp
        compute_s, memory_s = g_s + attn_s, mem_bytes / self.bw
        comps = [
            self._gemm_component("decode.gemm", D),
            Component("decode.attention", attn_flops / self.tp, 0.0, attn_s, 0.0, attn_s, "compute"),
            Component("decode.memory", 0.0, mem_bytes, 0.0, memory_s, memory_s, "memory"),
        ]
        return max(compute_s, memory_s), comps

    def _prefill(self, new: tuple[int, ...], prior: tuple[int, ...]) -> tuple[float, list[Component]]:
        m, L = self.model, self.model.num_layers
        buckets: dict[int, list[tuple[int, int]]] = {}
        for n, p in zip(new, prior):
            buckets.setdefault(_bucket(p + n), []).append((n, p))
        g_total_s = g_total_f = g_total_c = g_total_w = a_total_s = a_total_f = 0.0
        for beta in sorted(buckets):
            items = buckets[beta]
            g_s, g_f, g_c, g_w = self.gemms(sum(n for n, _ in items))  # each bucket is its own GEMM pass (anchor §2.5)
            g_total_c, g_total_w = g_total_c + g_c, g_total_w + g_w
            f_att = sum(4.0 * m.num_heads * m.head_dim * n * (p + n) * L for n, p in items)
            mu = self.tables.prefill.efficiency(beta, m.num_heads, m.num_kv_heads, m.head_dim)
            a_s = f_att / (V2_CAUSAL_DIVISOR * self.peak * mu * self.tp)
            g_total_s, g_total_f, a_total_s, a_total_f = g_total_s + g_s, g_total_f + g_f, a_total_s + a_s, a_total_f + f_att / self.tp
        b = m.weight_bytes_per_param
        dyn = sum(self.kv_token * n + V2_PREFILL_KV_READ * self.kv_token * p + V2_PREFILL_ACT * L * m.hidden_size * b * n for n, p in zip(new, prior))
        mem_bytes = (self.weights + dyn) / self.tp
        compute_s, memory_s = g_total_s + a_total_s, mem_bytes / self.bw
        comps = [
            Component("prefill.gemm", g_total_f, g_total_w, g_total_c, g_total_w / self.bw, g_total_s,
                      "compute" if g_total_c >= g_total_w / self.bw else "memory"),
            Component("prefill.attention", a_total_f, 0.0, a_total_s, 0.0, a_total_s, "compute"),
            Component("prefill.memory", 0.0, mem_bytes, 0.0, memory_s, memory_s, "memory"),
        ]
        return max(compute_s, memory_s), comps

    # -- protocol --------------------------------------------------------------------------------
    def explain(self, plan: StepPlan) -> StepTime:
        """Anchor §2.6: max(prefill phase, decode phase) + overhead, rounded to whole µs as BLIS does."""
        comps: list[Component] = []
        phases: dict[str, float] = {}
        if plan.prefill_new:
            phases["prefill"], c = self._prefill(plan.prefill_new, plan.prefill_ctx)
            comps += c
        if plan.decode_ctx:
            phases["decode"], c = self._decode(plan.decode_ctx)
            comps += c
        hw = max(phases.values(), default=0.0)
        ovh = self.overhead.for_step(bool(plan.prefill_new), bool(plan.decode_ctx))
        comps.append(Component("overhead", time_s=ovh, bound="fixed"))
        seconds = round(1e6 * hw + 1e6 * ovh) * 1e-6 if phases else 0.0
        notes: dict[str, float | str] = {"step": _classify(plan), "gpu_s": hw, "overhead_s": ovh}
        for k, v in phases.items():
            notes[f"{k}_phase_s"] = v
        if self.model.is_moe:
            notes["warning"] = "roofline-v2 costs MoE models as dense (as the anchor does); use roofline-v2-corrected"
        return StepTime(seconds, tuple(comps), notes)

    def step_time(self, plan: StepPlan) -> float:
        """Seconds for this step: explain(plan).seconds, computed without the breakdown (same bits)."""
        new, ctx = plan.prefill_new, plan.decode_ctx
        if new:
            hw = self._prefill_s(new, plan.prefill_ctx)
            if ctx:
                d = self._decode_s(ctx)
                if d > hw:
                    hw = d
        elif ctx:
            hw = self._decode_s(ctx)
        else:
            return 0.0
        ovh = self.overhead.for_step(bool(new), bool(ctx))
        return round(1e6 * hw + 1e6 * ovh) * 1e-6

    def _decode_s(self, ctx: tuple[int, ...]) -> float:
        """_decode(ctx)[0]: the per-request terms come from row tables, summed in C in the same order."""
        get = _getter(ctx)
        if get is None:
            return self._decode(ctx)[0]
        D = len(ctx)
        rows = self._rows
        per_token = self._per_token
        attn_flops = per_token * sum(ctx)
        weighted = per_token * sum(rows.terms(D, get, ctx))
        g_s = self.gemms(D)[0]
        attn_s = attn_flops / (self.peak * (weighted / attn_flops) * self.tp) if attn_flops else 0.0
        mem_bytes = (self.weights + sum(rows.terms("dyn", get, ctx))) / self.tp
        compute_s, memory_s = g_s + attn_s, mem_bytes / self.bw
        return memory_s if memory_s > compute_s else compute_s  # max(compute_s, memory_s)

    def _prefill_s(self, new: tuple[int, ...], prior: tuple[int, ...]) -> float:
        """_prefill(new, prior)[0], without the breakdown: the same terms added in the same order (the
        builtin sum starts from 0 and adds left to right, as these loops do)."""
        L = self.model.num_layers
        coef, kv, pre_kv, pre_act = self._attn_coef, self.kv_token, self._pre_kv, self._pre_act
        bucket_of = self._bucket_of
        buckets: dict[int, list] = {}  # bucket -> [tokens, attention FLOPs], items in plan order
        dyn = 0
        for n, p in zip(new, prior):
            beta = bucket_of.get(p + n)
            if beta is None:
                beta = bucket_of[p + n] = _bucket(p + n)
            f = coef * n * (p + n) * L
            acc = buckets.get(beta)
            if acc is None:
                buckets[beta] = [n, 0 + f]
            else:
                acc[0] += n
                acc[1] += f
            dyn += kv * n + pre_kv * p + pre_act * n
        g_total_s = a_total_s = 0.0
        denom = V2_CAUSAL_DIVISOR * self.peak
        for beta in sorted(buckets) if len(buckets) > 1 else buckets:
            tokens, f_att = buckets[beta]
            mu = self._prefill_mu.get(beta)
            if mu is None:
                m = self.model
                mu = self._prefill_mu[beta] = self.tables.prefill.efficiency(beta, m.num_heads, m.num_kv_heads, m.head_dim)
            g_total_s += self.gemms(tokens)[0]
            a_total_s += f_att / (denom * mu * self.tp)
        mem_bytes = (self.weights + dyn) / self.tp
        compute_s, memory_s = g_total_s + a_total_s, mem_bytes / self.bw
        return memory_s if memory_s > compute_s else compute_s  # max(compute_s, memory_s)


@dataclass
class RooflineCorrected:
    """The v2 roofline with the anchor's known defects fixed (see the module docstring)."""

    model: ModelSpec
    hardware: Hardware
    tp: int = 1
    overhead: Overhead = field(default_factory=lambda: Overhead("none"))
    bw_efficiency: float | None = None
    allreduce_latency_s: float = ALLREDUCE_LATENCY_S
    include_lm_head: bool = True
    include_tp_comm: bool = True
    expert_parallel: int = 1  # EP size: 1 = experts TP-sharded (vLLM default); else TP × DP ranks hold E / EP experts each
    data_parallel: int = 1  # DP ranks whose tokens meet in the experts under EP (1 here; see latency/parallel.py)
    name: str = "roofline-v2-corrected"

    def __post_init__(self) -> None:
        self.model.check_tp(self.tp)
        m = self.model
        if self.expert_parallel not in (1, self.tp * self.data_parallel):
            raise ValueError(f"expert_parallel={self.expert_parallel}: must be 1 or TP × DP = {self.tp * self.data_parallel}")
        # FP8 path for W8A8 (1-byte operands); weight-only int4/mxfp4 dequantise and multiply in 16-bit (config/quant.py).
        self.peak = self.hardware.peak_flops(m.gemm_compute_bytes)
        # The H100 tables as this GPU reads them (transfer.py): the same bits on an H100.
        self.tables: KernelTables | TransferredTables
        self.tables, self.transfer = tables_for(self.hardware, m.gemm_compute_bytes)
        self.attn_peak = self.hardware.bf16_flops  # attention runs on a 16-bit KV cache
        eta = self.hardware.bw_efficiency if self.bw_efficiency is None else self.bw_efficiency
        self.bw = self.hardware.hbm_bytes_per_s * eta
        self.kv_token_gpu = m.kv_bytes_per_token_per_gpu(self.tp)
        self.layer_sets = [(m.num_layers - m.num_moe_layers, m.attention_gemms() + m.mlp_gemms(False))]
        if m.num_moe_layers:
            self.layer_sets.append((m.num_moe_layers, m.attention_gemms() + m.mlp_gemms(True)))
        self._gemm_cache: dict[int, tuple[float, float, float, float]] = {}
        self._marginals = self.tables.decode.marginals(m.num_heads, m.num_kv_heads, m.head_dim, self.tp)
        # Decode attention of this model from the table's kernel: scale by the FLOPs per KV token (heads per
        # GPU, head size, all layers) over the table's, and by the table's peak over this GPU's; off the
        # table's GPU the efficiency is × r (memory-bound kernel: net time × table bandwidth / this GPU's).
        self._decode_scale = (4.0 * (m.num_heads / self.tp) * m.head_dim * m.num_layers / self._marginals.flops_per_token
                              * ATTN_TABLE_PEAK_FLOPS / self.attn_peak)
        if not self.transfer.identity:
            self._decode_scale /= self.transfer.attn_r
        # The table's kernel read a 16-bit KV cache; the memory-bound kernel's time scales with the KV bytes (FP8 KV: half).
        self._decode_scale *= m.kv_bytes_per_element / 2.0
        self._segments = tuple(zip((0, *self._marginals.bounds), (*self._marginals.bounds, None)))
        # step_time() fast path.
        self._rows = _Rows(self._fill_row)
        self._prefill_eff: dict[int, float] = {}
        self._lm_s: dict[int, float] = {}
        self._kv_integral = float(self.kv_token_gpu).is_integer()
        self._variant = attn.is_variant(m)

    def _variant_decode_s(self, ctx: tuple[int, ...], flops: float) -> float:
        """Decode attention compute-side seconds for MLA or sliding-window layers (one GPU, all layers)."""
        m = self.model
        if m.is_mla:
            # Weight-absorbed MLA decode has ~2·heads/TP FLOP per cached byte per layer (DeepSeek-V3 at TP1: ~240,
            # near the H100 ridge), so its compute side is costed on its own; the memory side is the caller's max().
            return attn.mla_decode_compute_s(flops, self.attn_peak)
        # Standard heads with windowed layers: the measured kernel at the layer-averaged attended context.
        L = m.num_layers
        return self._decode_attention_s(tuple(max(0, -(-attn.layer_keys(m, c + 1) // L) - 1) for c in ctx))

    def _sharded(self, g: Gemm) -> tuple[int, int]:
        """Megatron TP: row-parallel layers (o, down) split K; the others split N."""
        row = g.name in ("o", "down", "expert_down", "shared_down")
        if g.name == "router":
            return g.k, g.n
        return (max(1, g.k // self.tp), g.n) if row else (g.k, max(1, g.n // self.tp))

    def _gemm(self, g: Gemm, m_tokens: int) -> tuple[float, float, float, float]:
        """(seconds, FLOPs, weight bytes, compute-only seconds) of one layer's GEMM of this shape on one GPU."""
        b = self.model.gemm_bytes_per_param(g)  # stored width of this module class (experts may differ)
        if g.experts > 1 and self.expert_parallel > 1:
            return self._ep_gemm(g, m_tokens)
        k, n = self._sharded(g)
        if g.experts > 1:
            # Tokens spread evenly over experts; expected number of distinct experts touched by M·k picks.
            picks = m_tokens * g.active
            touched = g.experts * (1.0 - (1.0 - 1.0 / g.experts) ** picks)
            per_expert = picks / max(touched, 1e-9)
            eff = self.tables.gemm.efficiency(per_expert, k, n, exact=True)
            flops = 2.0 * picks * k * n
            wbytes = touched * k * n * b
        else:
            eff = self.tables.gemm.efficiency(m_tokens, k, n, exact=True)
            flops = 2.0 * m_tokens * k * n
            wbytes = k * n * b
        # Table efficiency is a fraction of the kernel dtype's peak; it is applied to this model's dtype peak.
        compute = flops / (self.peak * eff)
        return max(compute, wbytes / self.bw), flops, wbytes, compute

    def _ep_gemm(self, g: Gemm, m_tokens: int) -> tuple[float, float, float, float]:
        """_gemm for an expert GEMM under expert parallelism: whole (unsharded) experts, E / EP per rank."""
        b, ep = self.model.gemm_bytes_per_param(g), self.expert_parallel
        # vLLM determine_expert_map: E // EP experts per rank, one more on the first E % EP ranks (the busiest rank).
        local = -(-g.experts // ep)
        # Uniform routing assumption: each of the tokens × DP × top_k picks lands on any expert with probability 1 / E.
        picks = m_tokens * self.data_parallel * g.active
        local_picks = picks * local / g.experts
        touched = local * (1.0 - (1.0 - 1.0 / g.experts) ** picks)
        per_expert = local_picks / max(touched, 1e-9)
        eff = self.tables.gemm.efficiency(per_expert, g.k, g.n, exact=True)
        flops = 2.0 * local_picks * g.k * g.n
        wbytes = touched * g.k * g.n * b
        compute = flops / (self.peak * eff)
        return max(compute, wbytes / self.bw), flops, wbytes, compute

    def gemms(self, m_tokens: int) -> tuple[float, float, float, float]:
        """(seconds, FLOPs, weight bytes, compute-only seconds) of every layer's GEMMs for M tokens on one GPU."""
        hit = self._gemm_cache.get(m_tokens)
        if hit is not None:
            return hit
        s = f = w = c = 0.0
        for count, gemms in self.layer_sets:
            for g in gemms:
                gs, gf, gw, gc = self._gemm(g, m_tokens)
                s, f, w, c = s + count * gs, f + count * gf, w + count * gw, c + count * gc
        self._gemm_cache[m_tokens] = (s, f, w, c)
        return s, f, w, c

    def explain(self, plan: StepPlan) -> StepTime:
        """One forward pass: GEMMs over all tokens + attention per request + LM head + all-reduce + overhead."""
        m, L, tp = self.model, self.model.num_layers, self.tp
        comps: list[Component] = []
        tokens, seqs = plan.num_tokens, plan.num_requests
        if seqs == 0:
            return StepTime(0.0, (), {"step": "empty"})
        g_s, g_f, g_w, g_c = self.gemms(tokens)
        comps.append(Component("gemm", g_f, g_w, g_c, g_w / self.bw, g_s, "compute" if g_c >= g_w / self.bw else "memory"))
        heads = m.num_heads / tp
        # Prefill attention: exact causal FLOPs of a chunk of n new tokens over p prior ones.
        pf = pb = pc = 0.0
        for n, p in zip(plan.prefill_new, plan.prefill_ctx):
            if self._variant:  # MLA / sliding-window layers (latency/attention.py)
                f, kvb = attn.prefill_attention(m, tp, n, p)
            else:
                f, kvb = 4.0 * heads * m.head_dim * (n * p + n * (n + 1) / 2.0) * L, self.kv_token_gpu * (p + n)
            eff = self.tables.prefill.efficiency(p + n, m.num_heads, m.num_kv_heads, m.head_dim, exact=True)
            pf, pc, pb = pf + f, pc + f / (self.attn_peak * eff), pb + kvb
        if plan.prefill_new:
            ps = max(pc, pb / self.bw)
            comps.append(Component("attention.prefill", pf, pb, pc, pb / self.bw, ps, "compute" if pc >= pb / self.bw else "memory"))
        # Decode attention: one paged-attention kernel over the batch, as marginal per-request latencies.
        D = len(plan.decode_ctx)
        df = db = 0.0
        if self._variant:
            for c in plan.decode_ctx:
                f, b = attn.decode_attention(m, tp, c)
                df, db = df + f, db + b
            dc = self._variant_decode_s(plan.decode_ctx, df) if D else 0.0
        else:
            for c in plan.decode_ctx:
                df, db = df + 4.0 * heads * m.head_dim * c * L, db + self.kv_token_gpu * (c + 1)
            dc = self._decode_attention_s(plan.decode_ctx) if D else 0.0
        if D:
            ds = max(dc, db / self.bw)
            comps.append(Component("attention.decode", df, db, dc, db / self.bw, ds, "compute" if dc >= db / self.bw else "memory"))
        if self.include_lm_head:
            # vLLM computes logits for the last scheduled token of every request in the step.
            k, n = m.hidden_size, max(1, m.vocab_size // tp)
            eff = self.tables.gemm.efficiency(seqs, k, n, exact=True)
            lf, lb = 2.0 * seqs * k * n, k * n * m.lm_head_bytes
            lc, lm = lf / (self.peak * eff), lb / self.bw
            comps.append(Component("lm_head", lf, lb, lc, lm, max(lc, lm), "compute" if lc >= lm else "memory"))
        if self.include_tp_comm and tp > 1:
            # Two all-reduces per layer (after attention and after the MLP) of tokens × hidden 16-bit values.
            msg = tokens * m.hidden_size * 2.0
            link = max(self.hardware.nvlink_gb_s or self.hardware.pcie_gb_s, 1e-9) * 1e9
            per = self.allreduce_latency_s + 2.0 * (tp - 1) / tp * msg / link
            comps.append(Component("tp_allreduce", 0.0, 2 * L * msg, 0.0, 2 * L * per, 2 * L * per, "communication"))
        gpu = sum(c.time_s for c in comps)
        ovh = self.overhead.for_step(bool(plan.prefill_new), bool(plan.decode_ctx))
        comps.append(Component("overhead", time_s=ovh, bound="fixed"))
        return StepTime(gpu + ovh, tuple(comps), {"step": _classify(plan), "gpu_s": gpu, "overhead_s": ovh})

    def step_time(self, plan: StepPlan) -> float:
        """Seconds for this step: explain(plan).seconds, computed without the breakdown (same bits: the
        same terms added in the same order; per-request decode terms from row tables, summed in C)."""
        new, ctx = plan.prefill_new, plan.decode_ctx
        D = len(ctx)
        seqs = len(new) + D
        if seqs == 0:
            return 0.0
        if self._variant:
            return self.explain(plan).seconds  # MLA / sliding windows: no fast path (same bits by construction)
        tokens = sum(new) + D
        m, L, tp = self.model, self.model.num_layers, self.tp
        gpu = self.gemms(tokens)[0]
        if new:
            heads = m.num_heads / tp
            effs = self._prefill_eff
            pc = pb = 0.0
            for n, p in zip(new, plan.prefill_ctx):
                f = 4.0 * heads * m.head_dim * (n * p + n * (n + 1) / 2.0) * L
                eff = effs.get(p + n)
                if eff is None:
                    eff = effs[p + n] = self.tables.prefill.efficiency(p + n, m.num_heads, m.num_kv_heads, m.head_dim, exact=True)
                pc, pb = pc + f / (self.attn_peak * eff), pb + self.kv_token_gpu * (p + n)
            gpu += max(pc, pb / self.bw)
        if D:
            get = _getter(ctx)
            if get is None:
                return self.explain(plan).seconds
            dc = self._decode_attention_s(ctx)
            kv = self.kv_token_gpu
            db_int = kv * (sum(ctx) + D)
            if self._kv_integral and db_int < 2**53:
                db = float(db_int)  # every partial sum of the integer terms kv·(c + 1) is exact in a double
            else:
                db = 0.0 + sum(self._rows.terms("db", get, ctx))
            gpu += max(dc, db / self.bw)
        if self.include_lm_head:
            lm = self._lm_s.get(seqs)
            if lm is None:
                k, n = m.hidden_size, max(1, m.vocab_size // tp)
                eff = self.tables.gemm.efficiency(seqs, k, n, exact=True)
                lc, lmem = 2.0 * seqs * k * n / (self.peak * eff), k * n * m.lm_head_bytes / self.bw
                lm = self._lm_s[seqs] = max(lc, lmem)
            gpu += lm
        if self.include_tp_comm and tp > 1:
            msg = tokens * m.hidden_size * 2.0
            link = max(self.hardware.nvlink_gb_s or self.hardware.pcie_gb_s, 1e-9) * 1e9
            gpu += 2 * L * (self.allreduce_latency_s + 2.0 * (tp - 1) / tp * msg / link)
        return gpu + self.overhead.for_step(bool(new), bool(ctx))

    def _decode_attention_s(self, ctx: tuple[int, ...]) -> float:
        """Decode attention compute seconds of a batch: Σ_j U(j, c_(j)) over the contexts sorted longest first,
        each rank's marginal latency read from its segment's row (kernels.DecodeMarginals), all layers."""
        ranked = sorted(ctx, reverse=True)
        total = 0.0
        for seg, (a, b) in enumerate(self._segments):
            part = ranked[a:b]
            if not part:
                break
            get = _getter(part)
            if get is None:  # a context the row tables cannot index (negative): evaluate each on its own
                total += sum(self._fill_row(seg, c, c + 1)[0] for c in part)
            else:
                total += sum(self._rows.terms(seg, get, part))
        return total

    def _fill_row(self, key: object, lo: int, hi: int) -> list[float]:
        """Row `key` of the decode terms for contexts lo .. hi - 1: segment index -> attention compute seconds
        of a request ranked in that segment (all layers); "db" -> KV bytes kv·(c + 1) (when kv is not integral)."""
        c = np.arange(lo, hi, dtype=np.float64)
        if key == "db":
            return (self.kv_token_gpu * (c + 1)).tolist()
        return (self._marginals.row(key, lo, hi) * self._decode_scale).tolist()  # type: ignore[arg-type]


LATENCY_MODELS = {"roofline-v2": RooflineV2, "roofline-v2-corrected": RooflineCorrected}


def make_latency_model(
    name: str,
    model: ModelSpec,
    hardware: Hardware,
    tp: int = 1,
    overhead: str = "none",
    **kwargs: object,
) -> RooflineV2 | RooflineCorrected:
    """Build a named step-time model with one of the overhead variants."""
    from servesim.errors import ConfigError

    if name not in LATENCY_MODELS:
        raise ConfigError(f"--latency-model {name}: unknown model (allowed: {', '.join(LATENCY_MODELS)})")
    ovh = make_overhead(overhead, num_layers=model.num_layers, tp=tp)
    return LATENCY_MODELS[name](model=model, hardware=hardware, tp=tp, overhead=ovh, **kwargs)  # type: ignore[arg-type]
