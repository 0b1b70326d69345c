"""How many KV blocks vLLM V1 allocates on one GPU, from plain numbers (bytes, token counts).

vLLM (v1/worker/gpu_worker.py determine_available_memory) profiles one forward pass of
max_num_batched_tokens tokens and sets

    kv_bytes = total_gpu_bytes * gpu_memory_utilization - weights_per_gpu - peak_activation - non_torch
    num_gpu_blocks = floor(kv_bytes / (block_size * kv_bytes_per_token_per_gpu))

We cannot profile, so peak_activation + non_torch is modelled as

    reserve = max_num_batched_tokens * dtype_bytes * (3 * intermediate_size / tp + 4 * hidden_size)
              + 0.23 GiB + (0.42 GiB if tp > 1)

The token term is the MLP's live tensors (gate_up output 2*ff/tp + activation output ff/tp) plus
four hidden-size buffers (residual, normed input, attention output, projection output; replicated
under TP). 0.23 GiB (cuBLAS/attention workspaces, allocator slack) and 0.42 GiB (NCCL and custom
all-reduce buffers, TP > 1 only) are fitted to five real vLLM block counts on H100
(tests/engine/test_capacity.py lists them; every case within 0.2 %).
"""

from __future__ import annotations

from servesim.config.engine import EngineConfig
from servesim.errors import ConfigError

GIB = 1 << 30
# Fitted to vLLM 0.11.0 / 0.15.1 block counts on H100 (see module docstring and test_capacity.py).
RUNTIME_RESERVE_BYTES = 0.23 * GIB
TP_COMM_RESERVE_BYTES = 0.42 * GIB


def kv_bytes_per_token_per_gpu(num_layers: int, num_kv_heads: int, head_dim: int, tensor_parallel_size: int, kv_dtype_bytes: int = 2) -> int:
    """Bytes of K and V per token on one GPU, summed over layers (same rule as ModelSpec.kv_bytes_per_token_per_gpu)."""
    # vLLM shards KV heads over TP and replicates them when there are fewer heads than ranks.
    heads = max(1, num_kv_heads // tensor_parallel_size)
    return 2 * num_layers * heads * head_dim * kv_dtype_bytes


def activation_reserve_bytes(
    max_num_batched_tokens: int, hidden_size: int, intermediate_size: int, tensor_parallel_size: int, dtype_bytes: int = 2
) -> float:
    """Bytes vLLM keeps out of the KV cache for activations and runtime buffers on one GPU."""
    tp = tensor_parallel_size
    act = max_num_batched_tokens * dtype_bytes * (3 * intermediate_size / tp + 4 * hidden_size)
    return act + RUNTIME_RESERVE_BYTES + (TP_COMM_RESERVE_BYTES if tp > 1 else 0.0)


def num_gpu_blocks(
    *,
    gpu_memory_bytes: float,
    gpu_memory_utilization: float,
    weight_bytes: float,
    tensor_parallel_size: int,
    kv_bytes_per_token_per_gpu: float,
    block_size: int,
    max_num_batched_tokens: int,
    hidden_size: int,
    intermediate_size: int,
    dtype_bytes: int = 2,
) -> int:
    """KV blocks per GPU: (memory * utilization - weights / tp - reserve) // block bytes.

    gpu_memory_bytes is what torch reports as total (about 79.19 GiB on an H100 80GB);
    weight_bytes is the whole model's weights (all ranks together, e.g. ModelSpec.weight_bytes).
    """
    reserve = activation_reserve_bytes(max_num_batched_tokens, hidden_size, intermediate_size, tensor_parallel_size, dtype_bytes)
    available = gpu_memory_bytes * gpu_memory_utilization - weight_bytes / tensor_parallel_size - reserve
    block_bytes = block_size * kv_bytes_per_token_per_gpu
    blocks = int(available // block_bytes)
    if blocks < 2:
        # vLLM raises "No available memory for the cache blocks" in the same situation.
        raise ConfigError(
            f"engine: no memory left for the KV cache ({available / GIB:.2f} GiB after weights and reserve); "
            "raise gpu_memory_utilization or tensor_parallel_size"
        )
    return blocks


def resolve_num_gpu_blocks(engine: EngineConfig, computed: int) -> int:
    """The block count vLLM uses: num_gpu_blocks_override when set, else the computed one."""
    return engine.num_gpu_blocks_override if engine.num_gpu_blocks_override is not None else computed
