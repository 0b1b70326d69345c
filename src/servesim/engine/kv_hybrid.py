"""vLLM's hybrid KV cache manager: one block table per KV cache group over one shared block pool.

After vLLM V1 `HybridKVCacheCoordinator` (vllm/v1/core/kv_cache_coordinator.py) over `FullAttentionManager` and
`SlidingWindowManager` (single_type_kv_cache_manager.py), for models with both full and sliding-window layers
(Gemma-2/3, gpt-oss). The layers of each type are split into groups (engine/kv_groups.py); a pool block is one
page of `group_size` layers, so a request takes blocks in every group: in a full group one per block_size tokens,
in a sliding group only those still inside the window (the ones before it become the null block, 0).

Assumptions, each as vLLM does it unless said:
- Group order is sliding groups first, then full ones: vLLM orders groups by the first layer of each type, and
  layer 0 slides in every hybrid model servesim bundles (Gemma-2/3, gpt-oss).
- A block's content key carries its group (vLLM BlockHashWithGroupId): group g's block i is (key of block i, g).
- A prefix hit needs every group of a type to hit: full groups first, from the start; the sliding groups then
  look for their window's run within that length; full hits are cut to the sliding hit (the "simple hybrid",
  one iteration of HybridKVCacheCoordinator.find_longest_cache_hit).
- With EAGLE-style drafting (use_eagle) the full groups' hit drops its last block, and the sliding groups look for a
  run one block longer and drop its last (as FullAttentionManager / SlidingWindowManager do).
The scheduler drives this class through the same methods as KVCacheManager; event skipping is never used with it.
"""

from __future__ import annotations

from servesim.engine.kv_cache import (BlockKey, BlockPool, PrefixCacheStats, cdiv, free_outside_window,
                                     sliding_blocks_needed, window_hit_length)
from servesim.engine.kv_groups import KVGroups


class HybridKVCacheManager:
    """Per-group block tables (`req.tables`, group 0 is `req.blocks`) over one BlockPool: hits, allocation, freeing."""

    __slots__ = ("pool", "block_size", "enable_caching", "stats", "defer_private", "sliding_window", "groups",
                 "num_groups", "sliding", "full", "use_eagle")

    def __init__(self, num_blocks: int, block_size: int, enable_caching: bool, sliding_window: int, groups: KVGroups) -> None:
        if not (sliding_window > 0 and groups.sliding_groups and groups.full_groups):
            raise ValueError("HybridKVCacheManager needs both sliding and full groups and a window > 0")
        self.pool = BlockPool(num_blocks, enable_caching)
        self.block_size = block_size
        self.enable_caching = enable_caching
        self.stats = PrefixCacheStats()
        self.defer_private = False  # never deferred: event skipping does not drive hybrid engines
        self.sliding_window = sliding_window
        self.groups = groups
        self.num_groups = n = groups.sliding_groups + groups.full_groups
        self.sliding = range(groups.sliding_groups)  # group ids of each type (sliding first, see module doc)
        self.full = range(groups.sliding_groups, n)
        self.use_eagle = False  # EAGLE drafting: each type's hit drops its last matched block (set by the scheduler)

    def tables(self, req) -> list[list[int]]:
        """req's block table of every group (empty lists before its first allocation)."""
        t = req.tables
        if t is None:
            req.tables = t = [req.blocks] + [[] for _ in range(self.num_groups - 1)]
        return t

    def key(self, req, i: int, g: int = 0) -> BlockKey:
        """Content key of block i of req in group g: shared within its prefix group, else unique to the request."""
        return ((req.group, i) if i < req.n_shared_blocks else (req.uid, i), g)

    def blocks_held(self, req) -> int:
        """Real (non-null) blocks req holds over all groups."""
        return sum(len(t) - t.count(0) for t in self.tables(req))

    def request_blocks_needed(self, tokens: int, max_num_batched_tokens: int) -> int:
        """Most blocks one request holding KV for `tokens` tokens takes at once, over all groups."""
        sw = sliding_blocks_needed(tokens, self.sliding_window, max_num_batched_tokens, self.block_size)
        return self.groups.full_groups * cdiv(tokens, self.block_size) + self.groups.sliding_groups * sw

    def remove_skipped_blocks(self, req) -> None:
        """Free each sliding group's blocks wholly outside the window, leaving the null block (0) in their place
        (vLLM SlidingWindowManager.remove_skipped_blocks, called at the start of every allocate_slots)."""
        # vLLM get_num_skipped_tokens: tokens before num_computed - sliding_window + 1 are never attended again.
        skipped = (req.num_computed - self.sliding_window + 1) // self.block_size
        if skipped <= 0 or req.tables is None:
            return
        for g in self.sliding:
            free_outside_window(self.pool, req.tables[g], skipped)

    def get_computed_blocks(self, req) -> tuple[list[list[int]], int]:
        """Longest prefix every group has cached (vLLM HybridKVCacheCoordinator): (hit blocks per group, tokens)."""
        hits: list[list[int]] = [[] for _ in range(self.num_groups)]
        if not self.enable_caching:
            return hits, 0
        bs = self.block_size
        # vLLM get_computed_blocks: the last token is always recomputed, and only whole blocks hit.
        max_blocks = (req.num_tokens - 1) // bs
        n = 0
        if req.n_shared_blocks or req.num_preemptions:  # otherwise every key is new: skip the walk
            cached = self.pool.cached
            n_sh, group, uid = req.n_shared_blocks, req.group, req.uid
            full = self.full
            for i in range(max_blocks):  # FullAttentionManager.find_longest_cache_hit over all full groups
                base = (group, i) if i < n_sh else (uid, i)
                found = [cached.get((base, g)) for g in full]
                if None in found:
                    break
                for g, b in zip(full, found):
                    hits[g].append(b)
            if self.use_eagle and hits[full[0]]:
                for g in full:
                    hits[g].pop()  # FullAttentionManager: EAGLE drops the last matched block
            n_full = len(hits[full[0]])
            n_sw = self._window_hits(req, n_full, hits)
            for g in full:
                del hits[g][n_sw:]
            n = n_sw * bs
        self.stats.record(req, n)
        return hits, n

    def _window_hits(self, req, max_blocks: int, hits: list[list[int]]) -> int:
        """SlidingWindowManager.find_longest_cache_hit over all sliding groups within max_blocks: fills their hit
        lists (the null block before the window's run) and returns the hit length in blocks."""
        cached, n_sh, group, uid = self.pool.cached, req.n_shared_blocks, req.group, req.uid
        sliding = self.sliding
        # Contiguous blocks a hit needs; EAGLE asks one more and drops it (SlidingWindowManager).
        need = max(1, cdiv(self.sliding_window - 1, self.block_size)) + self.use_eagle

        def base(i: int) -> BlockKey:
            return (group, i) if i < n_sh else (uid, i)

        length = window_hit_length(max_blocks, need, lambda i: all((base(i), g) in cached for g in sliding))
        real = min(need, length)
        for g in sliding:
            hits[g] = [0] * (length - real) + [cached[(base(i), g)] for i in range(length - real, length)]
        if self.use_eagle and length:
            length -= 1
            for g in sliding:
                hits[g].pop()
        return length

    def allocate_slots(self, req, num_new: int, hit_blocks: list[list[int]] | None = None, num_hit: int = 0,
                       delay_cache: bool = False, lookahead: int = 0) -> bool:
        """Reserve KV slots in every group for num_new more tokens (after num_hit cached ones) plus `lookahead`
        draft slots; False if blocks run out (vLLM KVCacheManager.allocate_slots over the coordinator)."""
        pool = self.pool
        tables = self.tables(req)
        self.remove_skipped_blocks(req)
        total = req.num_computed + num_hit + num_new
        n_req = cdiv(total + lookahead, self.block_size)
        ref = pool.ref_cnt
        new = [0] * self.num_groups
        need = 0
        for g in range(self.num_groups):
            hb = hit_blocks[g] if hit_blocks else ()
            # vLLM get_num_blocks_to_allocate: blocks still missing, plus hit blocks sitting idle in the free queue.
            k = n_req - len(tables[g]) - len(hb)
            new[g] = k = k if k > 0 else 0
            need += k + sum(1 for b in hb if b and not ref[b])
        if need > pool.nfree:
            return False
        if hit_blocks:
            for g in range(self.num_groups):
                hb = hit_blocks[g]
                pool.touch([b for b in hb if b])  # a window hit's null blocks take no block
                tables[g].extend(hb)
            req.num_cached_blocks = len(hit_blocks[0])
        for g in range(self.num_groups):  # vLLM allocate_new_blocks, group by group
            if new[g]:
                tables[g].extend(pool.get_new_blocks(new[g]))
        if self.enable_caching and not delay_cache:
            # vLLM caches blocks at allocation time, up to min(computed + new, num_tokens) tokens.
            n_full = min(total, req.num_tokens) // self.block_size
            if n_full > req.num_cached_blocks:
                self.cache_full_blocks(req, n_full)
        return True

    def cache_upto(self, req, n_full: int) -> None:
        """Blocks up to n_full became full: register them in every group."""
        self.cache_full_blocks(req, n_full)

    def cache_full_blocks(self, req, n_full: int) -> None:
        """Register req's blocks num_cached_blocks..n_full-1 of every group under their content keys."""
        pool = self.pool
        keys, cached = pool.block_key, pool.cached
        n_sh, group, uid = req.n_shared_blocks, req.group, req.uid
        tables = self.tables(req)
        for i in range(req.num_cached_blocks, n_full):
            base = (group, i) if i < n_sh else (uid, i)
            for g, t in enumerate(tables):
                b = t[i]
                if not b:
                    continue  # the null block of a sliding window (its block was freed, keeping its key)
                key = (base, g)
                keys[b] = key
                if cached.setdefault(key, b) != b:
                    pool._dups.setdefault(key, []).append(b)
        req.num_cached_blocks = n_full

    def free(self, req) -> None:
        """Release all of req's blocks, group by group, each tail first (vLLM KVCacheCoordinator.free)."""
        if req.tables is not None:
            pool = self.pool
            for t in req.tables:
                pool.free_blocks([b for b in reversed(t) if b])  # null blocks stand for blocks freed already
            req.tables = None
        req.blocks = []
        req.num_cached_blocks = 0

    def free_preempted(self, req) -> None:
        """Free a preempted request, with the blocks vLLM would have registered by now registered
        (its first num_computed // block_size blocks, as KVCacheManager.free_preempted)."""
        if self.enable_caching:
            n_full = req.num_computed // self.block_size
            if n_full > req.num_cached_blocks:
                self.cache_full_blocks(req, n_full)
        self.free(req)
