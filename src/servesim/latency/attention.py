"""Attention variants as pure formulas: multi-head latent attention (MLA) and sliding-window layers.

Per GPU at tensor parallelism tp, summed over the model's layers. Units: FLOPs, bytes, key counts.
docs/LATENCY.md, "Attention variants", has every formula and its source.
"""

from __future__ import annotations

from servesim.config.model import ModelSpec

# FlashMLA (deepseek-ai/FlashMLA README, H800 SXM5): 580 TFLOP/s dense BF16 in the compute-bound decode
# configuration, of the H800's 989.5 TFLOP/s peak. MLA decode's compute side is costed at this fraction.
MLA_DECODE_COMPUTE_EFFICIENCY = 580.0 / 989.5


def is_variant(m: ModelSpec) -> bool:
    """True when attention is MLA or has sliding-window layers (the standard formulas do not apply)."""
    return m.is_mla or m.num_sliding_layers > 0


def prefill_pair_flops(m: ModelSpec, tp: int) -> float:
    """FLOPs of one (query, key) pair in one layer on one GPU: QK^T + PV over the heads of this GPU."""
    heads = m.num_heads / tp
    if m.is_mla:
        # vLLM MLA prefill (v1/attention/backends/mla/common.py, forward_mha): K/V are up-projected by kv_b and
        # attention is standard with q/k head dim qk_nope + qk_rope and v head dim v_head_dim.
        return 2.0 * heads * (m.qk_nope_head_dim + m.qk_rope_head_dim + m.v_head_dim)
    return 4.0 * heads * m.head_dim


def decode_pair_flops(m: ModelSpec, tp: int) -> float:
    """FLOPs of one decode query against one cached token in one layer on one GPU."""
    heads = m.num_heads / tp
    if m.is_mla:
        # vLLM MLA decode (common.py, forward_mqa, weight absorption): the query is projected into the latent
        # space (W_UK absorbed), each head scores the cached [c_kv; k_pe] (kv_lora_rank + qk_rope_head_dim) and
        # sums the latent c_kv (kv_lora_rank); W_UV is applied to the output (counted with the kv_b GEMM).
        return 2.0 * heads * (2 * m.kv_lora_rank + m.qk_rope_head_dim)
    return 4.0 * heads * m.head_dim


def causal_pairs(new: int, prior: int, window: int = 0) -> int:
    """(query, key) pairs of a causal chunk of `new` tokens after `prior` ones; each query sees at most
    `window` keys (itself included) when window > 0 (sliding-window attention, as flash-attn's window)."""
    if window <= 0:
        return new * prior + new * (new + 1) // 2
    # Query at 1-based position i sees min(i, window) keys; positions prior+1 .. prior+new.
    a = max(0, min(prior + new, window) - prior)  # queries still inside the first window
    return a * prior + a * (a + 1) // 2 + (new - a) * window


def prefill_layer_pairs(m: ModelSpec, new: int, prior: int) -> int:
    """Causal pairs of a prefill chunk summed over layers (full layers: all keys; sliding layers: the window)."""
    full = m.num_full_layers * causal_pairs(new, prior)
    return full + (m.num_sliding_layers * causal_pairs(new, prior, m.sliding_window) if m.num_sliding_layers else 0)


def layer_keys(m: ModelSpec, tokens: int) -> int:
    """Cached tokens attended (and read) over all layers by a query whose context holds `tokens` tokens."""
    if not m.num_sliding_layers:
        return m.num_layers * tokens
    return m.num_full_layers * tokens + m.num_sliding_layers * min(tokens, m.sliding_window)


def kv_bytes_per_token_layer(m: ModelSpec, tp: int) -> float:
    """KV-cache bytes one token holds in one layer on one GPU (K and V, or the MLA latent)."""
    return m.kv_bytes_per_token_per_gpu(tp) / m.num_layers


def mla_context_upproj_flops(m: ModelSpec, tp: int, prior: int) -> float:
    """FLOPs of up-projecting `prior` cached latent tokens to K/V for a chunked prefill (vLLM MLA
    _compute_prefill_context runs kv_b over the cached context), all layers, one GPU; 0 for non-MLA."""
    if not m.is_mla or prior <= 0:
        return 0.0
    return 2.0 * prior * m.kv_lora_rank * (m.num_heads / tp) * (m.qk_nope_head_dim + m.v_head_dim) * m.num_layers


def prefill_attention(m: ModelSpec, tp: int, new: int, prior: int) -> tuple[float, float]:
    """(FLOPs, KV bytes) of one prefill chunk's attention on one GPU, all layers."""
    flops = prefill_pair_flops(m, tp) * prefill_layer_pairs(m, new, prior) + mla_context_upproj_flops(m, tp, prior)
    return flops, kv_bytes_per_token_layer(m, tp) * layer_keys(m, prior + new)


def decode_attention(m: ModelSpec, tp: int, ctx: int) -> tuple[float, float]:
    """(FLOPs, KV bytes) of one decode token's attention over ctx cached tokens plus itself, one GPU, all layers."""
    keys = layer_keys(m, ctx + 1)
    return decode_pair_flops(m, tp) * keys, kv_bytes_per_token_layer(m, tp) * keys


def mla_decode_compute_s(flops: float, peak_flops: float) -> float:
    """Seconds of MLA decode attention's compute side at FlashMLA's achieved fraction of the BF16 peak."""
    return flops / (peak_flops * MLA_DECODE_COMPUTE_EFFICIENCY)
