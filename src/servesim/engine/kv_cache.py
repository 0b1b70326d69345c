"""Paged KV cache with prefix caching, after vLLM V1 `block_pool.py` + `kv_cache_manager.py`.

No token ids exist in the simulator, so a block's content key stands in for vLLM's chained
block hash: block i of a request is keyed (prefix_group, i) while it lies wholly inside the
request's shared prefix, else (request uid, i). Equal keys <=> equal chained hashes.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable, Iterable
from dataclasses import dataclass

from servesim.errors import ConfigError

BlockKey = Hashable


def cdiv(a: int, b: int) -> int:
    """Ceiling division of non-negative ints."""
    return -(-a // b)


class BlockPool:
    """Fixed pool of KV blocks: reference counts, an LRU free queue and a key -> block map."""

    __slots__ = ("num_blocks", "enable_caching", "ref_cnt", "block_key", "free", "cached", "_dups")

    def __init__(self, num_blocks: int, enable_caching: bool) -> None:
        if num_blocks < 2:
            raise ConfigError(f"engine: num_gpu_blocks={num_blocks}: need at least 2 (one is vLLM's null block)")
        self.num_blocks = num_blocks
        self.enable_caching = enable_caching
        self.ref_cnt: list[int] = [0] * num_blocks
        self.block_key: list[BlockKey | None] = [None] * num_blocks
        # vLLM FreeKVCacheBlockQueue: doubly linked list, head = next to evict; OrderedDict gives O(1)
        # popleft / append / remove-from-middle. Initial order is block id order (kv_cache_utils.py).
        self.free: OrderedDict[int, None] = OrderedDict.fromkeys(range(num_blocks))
        # vLLM BlockPool.__init__ pops block 0 as the null block; it is never allocated or freed.
        self.free.popitem(last=False)
        # vLLM cached_block_hash_to_block: a key may map to several blocks (no de-duplication);
        # lookups return the first inserted, so we keep the first in `cached` and later ones in `_dups`.
        self.cached: dict[BlockKey, int] = {}
        self._dups: dict[BlockKey, list[int]] = {}

    @property
    def num_usable(self) -> int:
        """Blocks that requests can hold (all but the null block)."""
        return self.num_blocks - 1

    @property
    def num_free(self) -> int:
        """Blocks in the free queue, including cached-but-evictable ones."""
        return len(self.free)

    def usage(self) -> float:
        """Fraction of usable blocks held by requests (vLLM get_usage: 1 - free / (total - null))."""
        return 1.0 - len(self.free) / (self.num_blocks - 1)

    def get_cached(self, key: BlockKey) -> int | None:
        """The block holding this content, or None on a miss."""
        return self.cached.get(key)

    def get_new_blocks(self, n: int) -> list[int]:
        """Pop n blocks from the free-queue head (LRU), dropping any key they still carry."""
        popitem, ref, keys, cached, dups = self.free.popitem, self.ref_cnt, self.block_key, self.cached, self._dups
        out = []
        for _ in range(n):
            b = popitem(False)[0]
            # vLLM _maybe_evict_cached_block: a reused block's hash is dropped only now (lazy eviction).
            key = keys[b]
            if key is not None:
                if dups and key in dups:
                    self._evict(b)
                else:  # _evict's common case, inlined: the key has no duplicate blocks
                    keys[b] = None
                    if cached.get(key) == b:
                        del cached[key]
            ref[b] = 1
            out.append(b)
        return out

    def touch(self, blocks: Iterable[int]) -> None:
        """Take a reference on prefix-cache hits, pulling idle ones out of the free queue."""
        free, ref = self.free, self.ref_cnt
        for b in blocks:
            if ref[b] == 0:
                del free[b]
            ref[b] += 1

    def free_blocks(self, ordered: Iterable[int]) -> None:
        """Drop one reference per block; blocks reaching zero join the queue tail in the given order."""
        free, ref = self.free, self.ref_cnt
        for b in ordered:
            ref[b] -= 1
            if ref[b] == 0:
                free[b] = None

    def cache_block(self, b: int, key: BlockKey) -> None:
        """Register a newly full block under its content key (vLLM cache_full_blocks)."""
        self.block_key[b] = key
        if key in self.cached:
            self._dups.setdefault(key, []).append(b)
        else:
            self.cached[key] = b

    def _evict(self, b: int) -> None:
        key = self.block_key[b]
        self.block_key[b] = None
        dups = self._dups.get(key)
        if self.cached.get(key) == b:
            if dups:
                self.cached[key] = dups.pop(0)
                if not dups:
                    del self._dups[key]
            else:
                del self.cached[key]
        elif dups is not None:
            dups.remove(b)
            if not dups:
                del self._dups[key]


@dataclass(slots=True)
class PrefixCacheStats:
    """vLLM PrefixCacheStats, in tokens: lookups by never-preempted requests vs re-lookups after preemption."""

    requests: int = 0
    queries: int = 0
    hits: int = 0
    preempted_requests: int = 0
    preempted_queries: int = 0
    preempted_hits: int = 0


class KVCacheManager:
    """Per-request block tables over a BlockPool: prefix lookup, slot allocation and freeing.

    Works on any request object with the attributes of `scheduler.EngineRequest`
    (uid, blocks, num_cached_blocks, num_computed, num_tokens, group, n_shared_blocks, num_preemptions).
    """

    __slots__ = ("pool", "block_size", "enable_caching", "stats")

    def __init__(self, num_blocks: int, block_size: int, enable_caching: bool) -> None:
        self.pool = BlockPool(num_blocks, enable_caching)
        self.block_size = block_size
        self.enable_caching = enable_caching
        self.stats = PrefixCacheStats()

    def key(self, req, i: int) -> BlockKey:
        """Content key of block i of req: shared within its prefix group, else unique to the request."""
        return (req.group, i) if i < req.n_shared_blocks else (req.uid, i)

    def get_computed_blocks(self, req) -> tuple[list[int], int]:
        """Longest run of cached full blocks at the start of req's tokens: (blocks, tokens)."""
        if not self.enable_caching:
            return [], 0
        # vLLM get_computed_blocks: max_cache_hit_length = num_tokens - 1 (the last token is always
        # recomputed for its logits), and only whole blocks hit: floor((num_tokens - 1) / block_size).
        max_blocks = (req.num_tokens - 1) // self.block_size
        hits: list[int] = []
        if req.n_shared_blocks or req.num_preemptions:  # otherwise every key is new: skip the walk
            cached = self.pool.cached
            for i in range(max_blocks):
                b = cached.get((req.group, i) if i < req.n_shared_blocks else (req.uid, i))
                if b is None:
                    break
                hits.append(b)
        n = len(hits) * self.block_size
        # vLLM 0.11-0.15 record stats at every lookup, so a head-of-line request that fails to
        # allocate is counted again next step (moved to admission time only in vLLM PR #48860, 2026).
        s = self.stats
        if req.num_preemptions:
            s.preempted_requests += 1
            s.preempted_queries += req.num_tokens
            s.preempted_hits += n
        else:
            s.requests += 1
            s.queries += req.num_tokens
            s.hits += n
        return hits, n

    def allocate_slots(self, req, num_new: int, hit_blocks: list[int] | None = None, num_hit: int = 0) -> bool:
        """Reserve KV slots for num_new more tokens (after num_hit cached ones); False if blocks run out."""
        pool = self.pool
        bs = self.block_size
        total = req.num_computed + num_hit + num_new
        blocks = req.blocks
        num_new_blocks = cdiv(total, bs) - len(blocks) - (len(hit_blocks) if hit_blocks else 0)
        need = num_new_blocks
        if hit_blocks:
            # vLLM get_num_blocks_to_allocate: hit blocks sitting idle in the free queue count as allocations.
            ref = pool.ref_cnt
            need += sum(1 for b in hit_blocks if ref[b] == 0)
        if need > len(pool.free):
            return False
        if hit_blocks:
            pool.touch(hit_blocks)
            blocks.extend(hit_blocks)
            req.num_cached_blocks = len(hit_blocks)
        if num_new_blocks > 0:
            blocks.extend(pool.get_new_blocks(num_new_blocks))
        if self.enable_caching:
            # vLLM allocate_slots caches blocks at allocation time, before they are computed, up to
            # min(computed + new, num_tokens) tokens; a request admitted later in the same step can hit them.
            n_full = min(total, req.num_tokens) // bs
            if n_full > req.num_cached_blocks:
                self.cache_full_blocks(req, n_full)
        return True

    def append_slot(self, req, total: int) -> bool:
        """allocate_slots(req, 1) for a decode whose tokens after the step are `total` (same effects, fewer steps)."""
        blocks = req.blocks
        bs = self.block_size
        free = self.pool.free
        if -(-total // bs) - len(blocks) != 1 or not free:
            return self.allocate_slots(req, 1)
        blocks.append(self.pool.get_new_blocks(1)[0])
        if self.enable_caching:
            n_full = total // bs  # min(total, num_tokens) // bs with total == num_tokens
            if n_full > req.num_cached_blocks:
                self.cache_full_blocks(req, n_full)
        return True

    def cache_full_blocks(self, req, n_full: int) -> None:
        """Register req's blocks num_cached_blocks..n_full-1 (now full) under their content keys."""
        blocks, n_sh, group, uid = req.blocks, req.n_shared_blocks, req.group, req.uid
        cache_block = self.pool.cache_block
        for i in range(req.num_cached_blocks, n_full):
            cache_block(blocks[i], (group, i) if i < n_sh else (uid, i))
        req.num_cached_blocks = n_full

    def free(self, req) -> None:
        """Release all of req's blocks, tail first (vLLM frees in reverse so tail blocks are evicted first)."""
        if req.blocks:
            self.pool.free_blocks(reversed(req.blocks))
            req.blocks = []
        req.num_cached_blocks = 0
