"""vLLM's hybrid KV cache groups (engine/kv_groups.py): grouping, pool size, blocks per request — hand-computed."""

from servesim.config.engine import EngineConfig
from servesim.config.hardware import get_preset
from servesim.config.model import load_model
from servesim.engine.capacity import activation_reserve_bytes
from servesim.engine.kv_groups import KVGroups, blocks_per_request, hybrid_num_gpu_blocks, kv_cache_groups
from servesim.simulation import kv_blocks_for


def test_grouping_rule():
    assert kv_cache_groups(21, 21) == KVGroups(21, 1, 1)  # gemma-2-9b: 21 full + 21 sliding
    assert kv_cache_groups(12, 12) == KVGroups(12, 1, 1)  # gpt-oss-20b
    assert kv_cache_groups(10, 52) == KVGroups(10, 1, 6)  # gemma-3-27b: group of the smaller type, 8 padding slots
    assert kv_cache_groups(13, 12) == KVGroups(13, 1, 1)  # 13 < 1.5 x 12: the larger count, no second group
    assert kv_cache_groups(32, 0) == KVGroups(32, 1, 0) == kv_cache_groups(32, 0, hybrid=False)
    assert kv_cache_groups(0, 32) == KVGroups(32, 0, 1) == kv_cache_groups(0, 32, hybrid=False)
    assert kv_cache_groups(21, 21, hybrid=False) == KVGroups(42, 1, 0)  # --disable-hybrid-kv-cache-manager


def _available(name):
    """(model, bytes left for KV on an H100, blocks with --disable-hybrid-kv-cache-manager, blocks with the hybrid manager)."""
    m, hw, e = load_model(name), get_preset("H100"), EngineConfig()
    reserve = activation_reserve_bytes(2048, m.hidden_size, m.dense_intermediate_size or m.intermediate_size, 1)
    off = kv_blocks_for(EngineConfig(disable_hybrid_kv_cache_manager=True), m, hw)
    return m, hw.usable_memory_bytes * e.gpu_memory_utilization - m.weight_bytes - reserve, off, kv_blocks_for(e, m, hw)


def test_num_gpu_blocks_gemma_2_9b_h100():
    m, avail, old, hybrid = _available("gemma-2-9b")
    # 85,029,615,042.56 B x 0.9 - 18,482,809,856 B weights - (2048 x 2 x (3 x 14336 + 4 x 3584) + 0.23 GiB) = 57,562,002,038.78 B
    assert round(avail) == 57_562_002_039
    # per token per layer 2 x 8 heads x 256 x 2 B = 8192 B; old rule: a block is 16 tokens x 42 layers = 5,505,024 B
    assert old == 10456 == int(avail // (16 * 8192 * 42))
    # hybrid: a block is one page of the 21-layer group (2,752,512 B) and the pool is shared by both groups
    assert hybrid_num_gpu_blocks(avail, 16, 8192, kv_cache_groups(21, 21)) == 20912 == hybrid
    assert hybrid_num_gpu_blocks(avail, 16, 8192, kv_cache_groups(21, 21, hybrid=False)) == old


def test_num_gpu_blocks_gpt_oss_20b_h100():
    m, avail, old, hybrid = _available("gpt-oss-20b")
    assert (m.num_full_layers, m.num_sliding_layers) == (12, 12)
    # per token per layer 2 x 8 x 64 x 2 B = 2048 B; old: 16 x 2048 x 24 = 786,432 B a block; hybrid 393,216 B
    assert old == 79408 == int(avail // 786_432)
    assert hybrid_num_gpu_blocks(avail, 16, 2048, kv_cache_groups(12, 12)) == 158817 == hybrid


def test_sliding_group_frees_blocks_outside_the_window():
    g = kv_cache_groups(12, 12)
    # gpt-oss-20b, window 128, 1000 tokens computed + 1 scheduled: full group ceil(1001/16) = 63 blocks;
    # tokens before 1000 - 128 + 1 = 873 are never attended again: 873 // 16 = 54 blocks freed -> 9 in the window.
    assert blocks_per_request(1000, 16, 128, g) == 63 + 9
    # Inside the window nothing is freed: both groups hold the same blocks (as much as the old rule's one table).
    for n in (0, 1, 15, 16, 100, 126):
        assert blocks_per_request(n, 16, 128, g) == 2 * -(-(n + 1) // 16)
    # Conservation: the sliding group never holds more than the full group, nor fewer than the window needs.
    for n in range(0, 5000, 37):
        b = blocks_per_request(n, 16, 128, g)
        full = -(-(n + 1) // 16)
        assert full <= b <= 2 * full and b - full >= -(-128 // 16) - 1 or n < 128
    # The hybrid pool holds twice the blocks of the old one, so a long request fits ~2x more often once past the window.
    assert blocks_per_request(100_000, 16, 128, g) < 1.01 * -(-100_001 // 16)
