"""CPU KV offload tier, after vLLM's OffloadingConnector with the native CPU backend (vllm/v1/kv_offload/).

What vLLM does and what is modelled here (docs/LATENCY.md "CPU KV offload"):
- Stores: every full block a request computes is stored to CPU after the step that computed it, asynchronously
  (the connector's worker copies GPU -> CPU on a side stream; the step does not wait). A block is loadable only
  once its store finished. Blocks already in the CPU tier are not stored again.
- The CPU tier is an LRU over content keys (LRUOffloadingManager); a store into a full tier evicts the least
  recently used block whose store finished; if none can be evicted the store is skipped.
- Loads: at admission, after the GPU prefix-cache hit, the blocks that follow it and are ready in CPU are
  loaded; the request holds GPU blocks for them and waits (vLLM WAITING_FOR_REMOTE_KVS) until the load
  finished, then is scheduled at the first step that starts after that (its num_computed = all hits).
- The host link is full duplex: loads (H2D) and stores (D2H) each queue on their own direction at the
  hardware preset's effective host_link_gb_s.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

from servesim.errors import ConfigError

GIB = 1 << 30
BACKENDS = ("native", "lmcache")


@dataclass(frozen=True, slots=True)
class OffloadSpec:
    """One engine's CPU tier: its size in blocks, bytes of one block on one rank, host-link bytes/s per direction."""

    num_cpu_blocks: int
    block_bytes: float
    link_bytes_per_s: float


def num_cpu_blocks(size_gib: float, world_size: int, block_bytes_per_rank: float) -> int:
    """CPU blocks per rank: floor(size GiB / (tp * pp) / bytes of one block on one rank)."""
    # vLLM config (kv_offloading_size): the size is the total over all ranks, split evenly per TP x PP rank.
    return int(size_gib * GIB / world_size // block_bytes_per_rank)


def transfer_s(n_blocks: int, block_bytes: float, link_bytes_per_s: float) -> float:
    """Seconds to move n_blocks blocks of block_bytes each over a link of link_bytes_per_s (no fixed latency)."""
    # Assumption: a transfer is bandwidth-bound (vLLM batches a request's blocks into one copy; latency ~µs).
    return n_blocks * block_bytes / link_bytes_per_s


def offload_spec(size_gib: float, backend: str, world_size: int, block_bytes_per_rank: float, link_gb_s: float) -> OffloadSpec | None:
    """The OffloadSpec for --kv-offloading-size GiB (None when 0); ConfigError on a bad backend or link."""
    if backend not in BACKENDS:
        raise ConfigError(f"--kv-offloading-backend {backend!r}: allowed: {', '.join(BACKENDS)}")
    if not size_gib:
        return None
    if not link_gb_s > 0:
        raise ConfigError(f"hardware: host_link_gb_s={link_gb_s!r}: CPU KV offload needs a host link bandwidth > 0")
    n = num_cpu_blocks(size_gib, world_size, block_bytes_per_rank)
    if n < 1:
        raise ConfigError(
            f"--kv-offloading-size {size_gib}: holds no block of {block_bytes_per_rank / (1 << 20):.2f} MiB per rank "
            f"over {world_size} rank(s); give at least {block_bytes_per_rank * world_size / GIB:.4f}"
        )
    return OffloadSpec(n, block_bytes_per_rank, link_gb_s * 1e9)


class CPUTier:
    """LRU CPU tier of block content keys with the time each store finishes (s), and per-direction link queues."""

    __slots__ = ("spec", "capacity", "lru", "store_free_s", "load_free_s", "stored", "evicted", "skipped",
                 "queried_tokens", "hit_tokens", "done")

    def __init__(self, spec: OffloadSpec) -> None:
        self.spec = spec
        self.capacity = spec.num_cpu_blocks
        self.lru: OrderedDict[Hashable, float] = OrderedDict()  # key -> time its store finishes; LRU first
        self.store_free_s = 0.0  # D2H direction busy until
        self.load_free_s = 0.0  # H2D direction busy until
        self.stored = 0  # blocks ever stored
        self.evicted = 0  # blocks ever evicted
        self.skipped = 0  # stores skipped (tier full of blocks still in flight)
        self.queried_tokens = 0  # vLLM connector prefix-cache stats: tokens looked up in CPU ...
        self.hit_tokens = 0  # ... and tokens loaded from it
        self.done: dict[int, int] = {}  # request uid -> its leading blocks already handed to the tier

    def store(self, keys: Sequence[Hashable], now: float) -> None:
        """Queue stores of these blocks at clock `now` (s), skipping those already in the tier."""
        lru = self.lru
        bs, bw = self.spec.block_bytes, self.spec.link_bytes_per_s
        t = self.store_free_s if self.store_free_s > now else now
        for key in keys:
            if key in lru:
                continue
            if len(lru) >= self.capacity and not self._evict_one(now):
                self.skipped += 1
                continue
            t += bs / bw
            lru[key] = t
            self.stored += 1
        self.store_free_s = t

    def _evict_one(self, now: float) -> bool:
        # vLLM LRUOffloadingManager: evict the oldest block that is ready (its store finished).
        for key, ready in self.lru.items():
            if ready <= now:
                del self.lru[key]
                self.evicted += 1
                return True
        return False

    def lookup(self, keys: Sequence[Hashable], now: float) -> int:
        """How many leading keys are in the tier with their store finished by `now` (s)."""
        lru = self.lru
        n = 0
        for key in keys:
            ready = lru.get(key)
            if ready is None or ready > now:
                break
            n += 1
        return n

    def load(self, keys: Sequence[Hashable], now: float) -> float:
        """Start loading these blocks at `now` (s), marking them recently used; return when the load finishes (s)."""
        for key in keys:
            self.lru.move_to_end(key)
        t = self.load_free_s if self.load_free_s > now else now
        t += transfer_s(len(keys), self.spec.block_bytes, self.spec.link_bytes_per_s)
        self.load_free_s = t
        return t

    def after_step(self, scheduled, now: float, kv) -> None:
        """Store the blocks the step ending at `now` (s) completed, for each scheduled request."""
        bs = kv.block_size
        done = self.done
        for req in scheduled:
            full = req.num_computed // bs
            start = done.get(req.uid, 0)
            if full > start:
                self.store([kv.key(req, i) for i in range(start, full)], now)
                done[req.uid] = full

    def check(self) -> str:
        """'' if the tier's invariants hold, else what broke: within capacity, stored - evicted = held."""
        if len(self.lru) > self.capacity:
            return f"CPU tier holds {len(self.lru)} blocks > capacity {self.capacity}"
        if self.stored - self.evicted != len(self.lru):
            return f"CPU tier: stored {self.stored} - evicted {self.evicted} != held {len(self.lru)}"
        return ""
