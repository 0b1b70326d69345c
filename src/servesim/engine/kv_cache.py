"""Paged KV cache with prefix caching, after vLLM V1 `block_pool.py` + `kv_cache_manager.py`.

No token ids exist in the simulator, so a block's content key stands in for vLLM's chained
block hash: block i of a request is keyed (prefix_group, i) while it lies wholly inside the
request's shared prefix, else (request uid, i). Equal keys <=> equal chained hashes.

Speed (docs/PERFORMANCE.md): the free queue is a list with a head index, so popping n blocks is one
slice and freeing a request is one extend; only blocks that carry a key (or are shared) are handled one
by one. After `KVCacheManager.defer()` (event skipping calls it) private blocks never enter the key map:
their keys are looked up only by the request itself, only while it waits after a preemption, so a
preempted request's registered private blocks are remembered as one *parked run* of free-queue positions
(`KVCacheManager.free_preempted` has the argument), the blocks of a request that finishes are freed as
plain blocks, and reference counts are kept only for blocks registered under shared-prefix keys (the only
ones two requests can hold). Same hits, same evictions, same LRU order as registering every block
(tests/engine/test_event_skipping.py drives both forms side by side).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Hashable, Iterable, Iterator
from dataclasses import dataclass

from servesim.errors import ConfigError

BlockKey = Hashable

_COMPACT_AT = 4096  # drop the popped part of the free-queue list once it is this long and half the list


def cdiv(a: int, b: int) -> int:
    """Ceiling division of non-negative ints."""
    return -(-a // b)


class FreeQueue:
    """Read-only view of a BlockPool's free queue, head (next to evict) first: len, iteration, `in`."""

    __slots__ = ("_pool",)

    def __init__(self, pool: "BlockPool") -> None:
        self._pool = pool

    def __len__(self) -> int:
        return self._pool.nfree

    def __iter__(self) -> Iterator[int]:
        p = self._pool
        return (b for b in p._q[p._h :] if b >= 0)

    def __contains__(self, b: object) -> bool:
        p = self._pool
        return isinstance(b, int) and b >= 0 and b in p._q[p._h :]


class BlockPool:
    """Fixed pool of KV blocks: reference counts, an LRU free queue and a key -> block map.

    The free queue (vLLM FreeKVCacheBlockQueue) is `_q[_h:]`, head first; a block taken out of the middle
    (a prefix-cache hit on an idle block) leaves a -1 behind. Blocks that carry a key while free have their
    queue position in `_pos` (for that removal) and in `_kpos` (so popping finds the keys to drop).
    """

    __slots__ = ("num_blocks", "enable_caching", "ref_cnt", "block_key", "cached", "_dups",
                 "nfree", "_q", "_h", "_base", "_ntomb", "_pos", "_kpos", "free", "shared_refs_only")

    def __init__(self, num_blocks: int, enable_caching: bool) -> None:
        if num_blocks < 2:
            raise ConfigError(f"engine: num_gpu_blocks={num_blocks}: need at least 2 (one is vLLM's null block)")
        self.num_blocks = num_blocks
        self.enable_caching = enable_caching
        self.ref_cnt: list[int] = [0] * num_blocks
        self.block_key: list[BlockKey | None] = [None] * num_blocks
        # Initial order is block id order (kv_cache_utils.py); vLLM BlockPool.__init__ pops block 0 as the
        # null block, which is never allocated or freed.
        self._q: list[int] = list(range(1, num_blocks))
        self._h = 0  # head index into _q
        self._base = 0  # absolute position of _q[0] (positions survive compaction)
        self._ntomb = 0  # -1 entries in _q[_h:]
        self._pos: dict[int, int] = {}  # keyed free block -> absolute position
        self._kpos: deque[int] = deque()  # absolute positions of keyed entries, ascending (may be stale)
        self.nfree = num_blocks - 1
        self.free = FreeQueue(self)
        # True under KVCacheManager.defer_private: ref_cnt is kept only for blocks registered under a
        # shared-prefix key (the only ones that more than one request can hold, and whose counts are read).
        self.shared_refs_only = False
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
        return self.nfree

    def usage(self) -> float:
        """Fraction of usable blocks held by requests (vLLM get_usage: 1 - free / (total - null))."""
        return 1.0 - self.nfree / (self.num_blocks - 1)

    def get_cached(self, key: BlockKey) -> int | None:
        """The block holding this content, or None on a miss."""
        return self.cached.get(key)

    def get_new_blocks(self, n: int) -> list[int]:
        """Pop n blocks from the free-queue head (LRU), dropping any key they still carry."""
        if n > self.nfree:
            raise ValueError(f"get_new_blocks({n}): only {self.nfree} free blocks")
        q = self._q
        h = self._h
        end = h + n
        out = q[h:end]
        if self._ntomb and -1 in out:  # entries taken out of the middle: skip them
            out, end = self._take_skipping(n)
        self._h = end
        self.nfree -= n
        kp = self._kpos
        if kp and kp[0] < self._base + end:
            # vLLM _maybe_evict_cached_block: a reused block's key is dropped only now (lazy eviction).
            self._evict_popped(self._base + end)
        if not self.shared_refs_only:
            ref = self.ref_cnt
            for b in out:
                ref[b] = 1
        if end >= _COMPACT_AT and end + end > len(q):
            del q[:end]
            self._base += end
            self._h = 0
        return out

    def _take_skipping(self, n: int) -> tuple[list[int], int]:
        q, i = self._q, self._h
        out: list[int] = []
        while len(out) < n:
            b = q[i]
            i += 1
            if b < 0:
                self._ntomb -= 1
            else:
                out.append(b)
        return out, i

    def _evict_popped(self, end_pos: int) -> None:
        q, base, pos, kp = self._q, self._base, self._pos, self._kpos
        while kp and kp[0] < end_pos:
            p = kp.popleft()
            b = q[p - base]
            if b >= 0 and pos.get(b) == p:
                del pos[b]
                self._evict(b)

    def _remove(self, b: int) -> None:
        """Take free block b out of the middle of the queue."""
        p = self._pos.pop(b, None)
        if p is None:  # a block without a key (only reachable through the public API)
            p = self._base + self._q.index(b, self._h)
        self._q[p - self._base] = -1
        self._ntomb += 1
        self.nfree -= 1

    def _append(self, b: int) -> None:
        """Put b (ref count now 0) at the queue tail."""
        if self.block_key[b] is not None:
            p = self._base + len(self._q)
            self._pos[b] = p
            self._kpos.append(p)
        self._q.append(b)
        self.nfree += 1

    def touch(self, blocks: Iterable[int]) -> None:
        """Take a reference on prefix-cache hits, pulling idle ones out of the free queue."""
        ref = self.ref_cnt
        for b in blocks:
            if ref[b] == 0:
                self._remove(b)
            ref[b] += 1

    def take_run(self, pos: int, blocks: list[int]) -> None:
        """Take idle blocks out of the queue: those at positions pos.. pos + len(blocks) - 1 (any order)."""
        i = pos - self._base
        n = len(blocks)
        self._q[i : i + n] = [-1] * n
        self._ntomb += n
        self.nfree -= n
        if not self.shared_refs_only:
            ref = self.ref_cnt
            for b in blocks:
                ref[b] = 1

    def free_blocks(self, ordered: Iterable[int]) -> None:
        """Drop one reference per block; blocks reaching zero join the queue tail in the given order."""
        ref = self.ref_cnt
        for b in ordered:
            ref[b] -= 1
            if ref[b] == 0:
                self._append(b)

    def free_unkeyed(self, ordered: list[int]) -> None:
        """free_blocks() for blocks known to carry no key and one reference each (a request's own
        unregistered blocks): one extend."""
        if not self.shared_refs_only:
            ref = self.ref_cnt
            for b in ordered:
                ref[b] = 0
        self._q.extend(ordered)
        self.nfree += len(ordered)

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


def sliding_blocks_needed(tokens: int, window: int, max_num_batched_tokens: int, block_size: int) -> int:
    """Most blocks a sliding-window table holds at once for a request with KV for `tokens` tokens (vLLM
    SlidingWindowSpec.max_memory_usage_bytes: the window plus one step's tokens, plus one block; never more than
    full attention's ⌈tokens / block_size⌉)."""
    return min(cdiv(tokens, block_size), cdiv(window - 1 + max_num_batched_tokens, block_size) + 1)


def free_outside_window(pool: BlockPool, blocks: list[int], skipped: int) -> None:
    """Free the first `skipped` blocks of a table, newest first, leaving the null block (0) in their place; stops at
    the first null (the ones before it were freed by an earlier call), as vLLM remove_skipped_blocks does."""
    removed = []
    for i in range(min(skipped, len(blocks)) - 1, -1, -1):
        b = blocks[i]
        if b == 0:
            break
        removed.append(b)
        blocks[i] = 0
    if removed:
        pool.free_blocks(removed)


def window_hit_length(max_blocks: int, need: int, cached_at: Callable[[int], bool]) -> int:
    """Blocks of a sliding-window prefix hit (vLLM SlidingWindowManager.find_longest_cache_hit): scanning from the
    longest possible hit (max_blocks) backwards, the first end whose last `need` blocks are all cached; without such
    a run, the cached blocks contiguous from the start. Only the hit's last min(need, length) blocks are real: the
    ones before stand as the null block."""
    run = 0
    for i in range(max_blocks - 1, -1, -1):
        if not cached_at(i):
            run = 0
            continue
        run += 1
        if run >= need:
            return i + run
    return run


@dataclass(slots=True)
class PrefixCacheStats:
    """vLLM PrefixCacheStats, in tokens: lookups by never-preempted requests vs re-lookups after preemption."""

    requests: int = 0
    queries: int = 0
    hits: int = 0
    preempted_requests: int = 0
    preempted_queries: int = 0
    preempted_hits: int = 0

    def record(self, req, hit_tokens: int) -> None:
        """Count one lookup of req's num_tokens that hit hit_tokens (under preempted_* once req was preempted)."""
        # vLLM 0.11-0.15 record stats at every lookup, so a head-of-line request that fails to
        # allocate is counted again next step (moved to admission time only in vLLM PR #48860, 2026).
        if req.num_preemptions:
            self.preempted_requests += 1
            self.preempted_queries += req.num_tokens
            self.preempted_hits += hit_tokens
        else:
            self.requests += 1
            self.queries += req.num_tokens
            self.hits += hit_tokens


class KVCacheManager:
    """Per-request block tables over a BlockPool: prefix lookup, slot allocation and freeing.

    Works on any request object with the attributes of `scheduler.EngineRequest`
    (uid, blocks, num_cached_blocks, num_computed, num_tokens, group, n_shared_blocks, num_preemptions).
    A request's registered blocks are always its first `num_cached_blocks`; the rest carry no key.
    """

    __slots__ = ("pool", "block_size", "enable_caching", "stats", "defer_private", "sliding_window", "use_eagle")

    def __init__(self, num_blocks: int, block_size: int, enable_caching: bool, sliding_window: int = 0) -> None:
        self.pool = BlockPool(num_blocks, enable_caching)
        self.block_size = block_size
        self.enable_caching = enable_caching
        self.stats = PrefixCacheStats()
        # Keep private (uid-keyed) blocks out of the key map: parked runs instead (see free_preempted).
        self.defer_private = False
        # > 0: every layer is a sliding-window layer (one vLLM KV cache group, SlidingWindowManager): blocks
        # wholly outside the window are freed as the request advances. 0: full attention (FullAttentionManager).
        self.sliding_window = sliding_window
        # EAGLE-style drafting (vLLM use_eagle: eagle, eagle3, mtp) needs the hidden state of the last hit token, so a
        # prefix hit drops its last matched block (find_longest_cache_hit). Set by the scheduler; never with defer().
        self.use_eagle = False

    def defer(self) -> None:
        """Switch to deferred private blocks (event skipping does, before the first request): parked runs
        instead of private keys, and reference counts only for shared-prefix blocks."""
        if self.sliding_window or self.use_eagle:
            raise ValueError("deferred private blocks do not support sliding-window freeing or EAGLE's dropped hit block")
        self.defer_private = True
        self.pool.shared_refs_only = True

    def remove_skipped_blocks(self, req) -> None:
        """Free req's blocks that lie wholly outside the sliding window, leaving the null block (0) in their
        place (vLLM SlidingWindowManager.remove_skipped_blocks, called at the start of allocate_slots)."""
        # vLLM get_num_skipped_tokens: tokens before num_computed - sliding_window + 1 are never attended again.
        free_outside_window(self.pool, req.blocks, (req.num_computed - self.sliding_window + 1) // self.block_size)

    def blocks_held(self, req) -> int:
        """Real (non-null) blocks req holds."""
        return len(req.blocks) - req.blocks.count(0) if self.sliding_window else len(req.blocks)

    def tables(self, req) -> list[list[int]]:
        """req's block tables: its one table."""
        return [req.blocks]

    def request_blocks_needed(self, tokens: int, max_num_batched_tokens: int) -> int:
        """Most blocks one request holding KV for `tokens` tokens takes at once."""
        if self.sliding_window:
            return sliding_blocks_needed(tokens, self.sliding_window, max_num_batched_tokens, self.block_size)
        return cdiv(tokens, self.block_size)

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
        if self.defer_private:
            req.phits = 0
            n_sh = req.n_shared_blocks
            if n_sh:
                cached, group = self.pool.cached, req.group
                for i in range(n_sh if n_sh < max_blocks else max_blocks):
                    b = cached.get((group, i))
                    if b is None:
                        break
                    hits.append(b)
            parked = req.parked
            if parked is not None and len(hits) == n_sh < max_blocks:
                # The parked run's blocks n_sh.. sit at positions a + k - 1 down to a; the head of the
                # queue has evicted those below it, the highest block numbers first.
                pool = self.pool
                a, k = parked
                head = pool._base + pool._h
                alive = a + k - (head if head > a else a)
                if alive > max_blocks - n_sh:
                    alive = max_blocks - n_sh  # cannot happen (registered blocks <= max_blocks); kept exact
                if alive > 0:
                    i = a + k - pool._base
                    hits += pool._q[i - alive : i][::-1]
                    req.phits = alive
        elif self.sliding_window and (req.n_shared_blocks or req.num_preemptions):
            hits = self._window_hits(req, max_blocks)
        elif req.n_shared_blocks or req.num_preemptions:  # otherwise every key is new: skip the walk
            cached = self.pool.cached
            n_sh, group, uid = req.n_shared_blocks, req.group, req.uid
            for i in range(max_blocks):
                b = cached.get((group, i) if i < n_sh else (uid, i))
                if b is None:
                    break
                hits.append(b)
        if self.use_eagle and hits and not self.sliding_window:
            hits.pop()  # vLLM FullAttentionManager: drop the last matched block (the window's is dropped in _window_hits)
        n = len(hits) * self.block_size
        self.stats.record(req, n)
        return hits, n

    def _window_hits(self, req, max_blocks: int) -> list[int]:
        """Prefix hit under a sliding window (vLLM SlidingWindowManager.find_longest_cache_hit): the longest
        prefix whose last ⌈(w − 1) / block_size⌉ blocks are cached; the blocks before them are not needed and
        stand as the null block (0). Without such a run, the cached blocks contiguous from the start."""
        cached, n_sh, group, uid = self.pool.cached, req.n_shared_blocks, req.group, req.uid

        def key(i: int) -> BlockKey:
            return (group, i) if i < n_sh else (uid, i)

        need = max(1, -(-(self.sliding_window - 1) // self.block_size)) + self.use_eagle  # EAGLE: one more, dropped below
        length = window_hit_length(max_blocks, need, lambda i: key(i) in cached)
        real = min(need, length)
        hits = [0] * (length - real) + [cached[key(i)] for i in range(length - real, length)]
        return hits[:-1] if self.use_eagle and hits else hits

    def allocate_slots(self, req, num_new: int, hit_blocks: list[int] | None = None, num_hit: int = 0,
                       delay_cache: bool = False, lookahead: int = 0) -> bool:
        """Reserve KV slots for num_new more tokens (after num_hit cached ones) plus `lookahead` draft slots
        (vLLM num_lookahead_tokens, never cached); False if blocks run out.
        delay_cache: do not register the new blocks yet (their KV is being loaded from the CPU tier)."""
        pool = self.pool
        bs = self.block_size
        if self.sliding_window and req.blocks:
            self.remove_skipped_blocks(req)
        total = req.num_computed + num_hit + num_new
        blocks = req.blocks
        num_new_blocks = -(-(total + lookahead) // bs) - len(blocks) - (len(hit_blocks) if hit_blocks else 0)
        need = num_new_blocks
        if hit_blocks:
            # vLLM get_num_blocks_to_allocate: hit blocks sitting idle in the free queue count as allocations.
            ref = pool.ref_cnt
            hp = req.phits if self.defer_private else 0  # hits from the parked run: all idle
            shared = hit_blocks[: len(hit_blocks) - hp] if hp else hit_blocks
            if self.sliding_window and 0 in shared:
                shared = [b for b in shared if b]  # null blocks of a window hit take no block
            need += list(map(ref.__getitem__, shared)).count(0) + hp
        if need > pool.nfree:
            return False
        if hit_blocks:
            if hp:
                pool.touch(shared)
                a, k = req.parked
                pool.take_run(a + k - hp, hit_blocks[len(hit_blocks) - hp :])
            else:
                pool.touch(shared)
            blocks.extend(hit_blocks)
            req.num_cached_blocks = len(hit_blocks)
        if self.defer_private:
            req.parked = None  # admitted: the parked run is used up (hit, or evicted below the hits)
        if num_new_blocks > 0:
            blocks.extend(pool.get_new_blocks(num_new_blocks))
        if self.enable_caching and not delay_cache:
            # vLLM allocate_slots caches blocks at allocation time, before they are computed, up to
            # min(computed + new, num_tokens) tokens; a request admitted later in the same step can hit them.
            n_full = min(total, req.num_tokens) // bs
            if n_full > req.num_cached_blocks:
                self.cache_upto(req, n_full)
        return True

    def append_slot(self, req, total: int) -> bool:
        """allocate_slots(req, 1) for a decode whose tokens after the step are `total` (same effects, fewer steps)."""
        blocks = req.blocks
        bs = self.block_size
        pool = self.pool
        if self.sliding_window:
            self.remove_skipped_blocks(req)
        if -(-total // bs) - len(blocks) != 1 or not pool.nfree:
            return self.allocate_slots(req, 1)
        blocks.extend(pool.get_new_blocks(1))
        if self.enable_caching:
            n_full = total // bs  # min(total, num_tokens) // bs with total == num_tokens
            if n_full > req.num_cached_blocks:
                self.cache_upto(req, n_full)
        return True

    def cache_upto(self, req, n_full: int) -> None:
        """Blocks up to n_full became full: register them now, or only the shared-prefix ones when deferring."""
        if self.defer_private:
            if n_full > req.n_shared_blocks:
                n_full = req.n_shared_blocks
            if n_full <= req.num_cached_blocks:
                return
        self.cache_full_blocks(req, n_full)

    def cache_full_blocks(self, req, n_full: int) -> None:
        """Register req's blocks num_cached_blocks..n_full-1 (now full) under their content keys."""
        blocks, n_sh, group, uid = req.blocks, req.n_shared_blocks, req.group, req.uid
        pool = self.pool
        keys, cached = pool.block_key, pool.cached
        for i in range(req.num_cached_blocks, n_full):
            b = blocks[i]
            if not b:
                continue  # the null block of a sliding window (its block was freed, keeping its key)
            key = (group, i) if i < n_sh else (uid, i)
            keys[b] = key
            if cached.setdefault(key, b) != b:
                pool._dups.setdefault(key, []).append(b)
        if pool.shared_refs_only:  # a block gets a tracked count once it is registered (held by req alone)
            ref = pool.ref_cnt
            for i in range(req.num_cached_blocks, n_full):
                ref[blocks[i]] = 1
        req.num_cached_blocks = n_full

    def free(self, req) -> None:
        """Release all of req's blocks, tail first (vLLM frees in reverse so tail blocks are evicted first)."""
        if self.defer_private:
            self._free_deferred(req, False)
            return
        blocks = req.blocks
        if blocks and self.sliding_window and 0 in blocks:
            nc = req.num_cached_blocks
            live = [b for b in blocks if b]  # the null block stands for blocks freed already
            n_live_cached = sum(1 for b in blocks[:nc] if b)
            blocks, req.blocks, req.num_cached_blocks = live, live, n_live_cached
        if blocks:
            nc = req.num_cached_blocks
            pool = self.pool
            if nc:
                # Unregistered blocks have no key and one reference (only hits share blocks, and hits are
                # registered): one bulk append; registered ones one by one (shared, or positions to keep).
                if nc < len(blocks):
                    pool.free_unkeyed(blocks[: nc - 1 : -1])
                pool.free_blocks(blocks[nc - 1 :: -1])
            else:
                pool.free_unkeyed(blocks[::-1])
            req.blocks = []
        req.num_cached_blocks = 0

    def free_preempted(self, req) -> None:
        """Free a preempted request, with the blocks vLLM would have registered by now registered.

        vLLM registers a block when it is allocated for the tokens that fill it, so by the time a request
        is preempted its first num_computed // block_size blocks are registered (num_computed <= num_tokens).

        With defer_private, the private ones among them (block numbers n_shared_blocks.. num_cached - 1) go
        to the queue tail as one *parked run* instead of into the key map. Why that is exact: (uid, i) keys
        are looked up only by this request, only while it waits after a preemption (never before its first:
        get_computed_blocks skips the walk), so nothing else can observe them; the run is freed in reverse,
        so block i sits at position a + k - 1 - (i - n_shared_blocks), and since the head pops positions in
        order, the blocks still cached are exactly the run's positions at or after the head: a prefix of the
        block numbers, which is what the key walk finds (it stops at the first evicted key). Only this
        request can take blocks out of the run's middle (its own hits), and its next admission either hits
        the surviving prefix or finds it evicted, so the run is used up then; the same argument shows the
        key map would never have held two blocks for one private key, so no duplicate order is lost.
        """
        if self.defer_private:
            if self.enable_caching:
                n_full = req.num_computed // self.block_size
                if n_full > req.num_cached_blocks:
                    req.num_cached_blocks = n_full
            self._free_deferred(req, True)
            return
        if self.enable_caching:
            n_full = req.num_computed // self.block_size
            if n_full > req.num_cached_blocks:
                self.cache_full_blocks(req, n_full)
        self.free(req)

    def _free_deferred(self, req, park: bool) -> None:
        """free() under defer_private: private blocks in one extend (a parked run when preempted), then the
        registered shared-prefix blocks one by one (they may be shared, and keep their keys)."""
        blocks = req.blocks
        req.parked = None
        if blocks:
            nc = req.num_cached_blocks
            n_sh = req.n_shared_blocks
            n_g = nc if nc < n_sh else n_sh  # registered shared-prefix blocks
            pool = self.pool
            start = pool._base + len(pool._q)
            if n_g:
                pool.free_unkeyed(blocks[n_g:][::-1])
                pool.free_blocks(blocks[n_g - 1 :: -1])
            else:
                pool.free_unkeyed(blocks[::-1])
            if park and nc > n_g:
                req.parked = (start + len(blocks) - nc, nc - n_g)  # (position of block nc - 1, length)
            req.blocks = []
        req.num_cached_blocks = 0
