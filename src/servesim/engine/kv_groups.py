"""vLLM's KV cache groups for hybrid (sliding + full attention) models, and the block count they give.

vLLM V1 (vllm/v1/core/kv_cache_utils.py `_get_kv_cache_groups_uniform_page_size`) splits the layers of each
attention type into groups of `group_size` layers; every group shares one block pool whose block holds one
page of `group_size` layers, so `num_gpu_blocks = available_bytes // (page_bytes_per_layer * group_size)`
(`get_kv_cache_config_from_groups` / `get_num_blocks`). A request then takes blocks in every group: in a full
group one per block_size tokens, in a sliding-window group only those still inside the window
(SlidingWindowManager). With `--disable-hybrid-kv-cache-manager`, `unify_hybrid_kv_cache_specs` turns every
sliding layer into a full one: one group of all layers, every layer holding the whole sequence.
Plain numbers only (layer counts, bytes, tokens).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class KVGroups:
    """How the layers are grouped: layers per group (= per block page) and the groups of each type."""

    group_size: int
    full_groups: int
    sliding_groups: int


def kv_cache_groups(num_full_layers: int, num_sliding_layers: int, hybrid: bool = True) -> KVGroups:
    """vLLM's grouping of full and sliding-window layers (hybrid manager on or off)."""
    n = num_full_layers + num_sliding_layers
    if not num_sliding_layers:
        return KVGroups(n, 1, 0)
    if not num_full_layers:
        return KVGroups(n, 0, 1)  # every layer slides (Mistral v0.1): one sliding group, hybrid or not
    if not hybrid:
        return KVGroups(n, 1, 0)  # unify_hybrid_kv_cache_specs: sliding layers become full ones
    lo, hi = min(num_full_layers, num_sliding_layers), max(num_full_layers, num_sliding_layers)
    # vLLM: group_size = the smaller type's layer count, or the larger one when it is < 1.5x the smaller
    # (avoids padding, e.g. gpt-oss + an EAGLE drafter, 12 sw + 13 full -> 13/13).
    size = hi if hi < lo * 1.5 else lo
    return KVGroups(size, -(-num_full_layers // size), -(-num_sliding_layers // size))


def hybrid_num_gpu_blocks(available_bytes: float, block_size: int, kv_bytes_per_token_per_layer: float, groups: KVGroups) -> int:
    """KV blocks in the shared pool: available bytes // (one page of group_size layers)."""
    return int(available_bytes // (block_size * kv_bytes_per_token_per_layer * groups.group_size))


def blocks_per_request(num_tokens: int, block_size: int, sliding_window: int, groups: KVGroups, num_new_tokens: int = 1) -> int:
    """Blocks one request holds over all groups with num_tokens computed and num_new_tokens being scheduled."""
    full = -(-(num_tokens + num_new_tokens) // block_size)
    if not groups.sliding_groups:
        return groups.full_groups * full
    # SlidingWindowManager: blocks wholly before num_computed - window + 1 are freed (get_num_skipped_tokens).
    skipped = max(0, num_tokens - sliding_window + 1) // block_size
    return groups.full_groups * full + groups.sliding_groups * (full - skipped)
