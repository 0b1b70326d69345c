"""The engine: vLLM V1 scheduler, paged KV cache with prefix caching, and the step loop."""

from servesim.engine.capacity import (
    activation_reserve_bytes,
    kv_bytes_per_token_per_gpu,
    num_gpu_blocks,
    resolve_num_gpu_blocks,
)
from servesim.engine.invariants import InvariantError
from servesim.engine.kv_cache import BlockPool, KVCacheManager, PrefixCacheStats
from servesim.engine.request import RequestRecord, RequestSource, RequestSpec
from servesim.engine.scheduler import EngineRequest, Scheduler, SchedulerOutput
from servesim.engine.simulator import EngineStats, Simulator

__all__ = [
    "BlockPool",
    "EngineRequest",
    "EngineStats",
    "InvariantError",
    "KVCacheManager",
    "PrefixCacheStats",
    "RequestRecord",
    "RequestSource",
    "RequestSpec",
    "Scheduler",
    "SchedulerOutput",
    "Simulator",
    "activation_reserve_bytes",
    "kv_bytes_per_token_per_gpu",
    "num_gpu_blocks",
    "resolve_num_gpu_blocks",
]
