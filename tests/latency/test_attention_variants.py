"""MLA and sliding-window attention formulas (latency/attention.py), with hand-computed expectations."""

from __future__ import annotations

import pytest

from servesim.api import step_time
from servesim.config.hardware import load_hardware
from servesim.config.model import load_model, spec_from_config
from servesim.errors import ConfigError
from servesim.latency import attention as attn
from servesim.latency.roofline import RooflineCorrected
from servesim.latency.plan import StepPlan

DS = load_model("deepseek-v2-lite")  # 27 layers, 16 heads, kv_lora_rank 512, rope 64, nope 128, v 128
MISTRAL = load_model("mistral-7b-v0.1")  # 32 layers, sliding_window 4096 on every layer


def test_mla_kv_bytes_are_the_latent():
    # (kv_lora_rank + qk_rope_head_dim) × 2 bytes per layer: 576 × 2 = 1,152 B; × 27 layers = 31,104 B, any TP.
    assert attn.kv_bytes_per_token_layer(DS, 1) == 1152.0
    assert DS.kv_bytes_per_token_per_gpu(1) == 31104.0 == DS.kv_bytes_per_token_per_gpu(4)


def test_mla_decode_flops_weight_absorbed():
    # Per head per cached token: 2·(512 + 64) scores + 2·512 latent sum = 2,176 FLOPs; × 16 heads = 34,816.
    assert attn.decode_pair_flops(DS, 1) == 34816.0
    assert attn.decode_pair_flops(DS, 2) == 17408.0
    # The standard formula (4 · heads · head_dim, head_dim = 2048 / 16 = 128) gives 8,192: 4.25× fewer.
    assert 4.0 * DS.num_heads * DS.head_dim == 8192.0
    f, b = attn.decode_attention(DS, 1, 999)  # 999 cached + itself = 1,000 keys in each of 27 layers
    assert f == 34816.0 * 27_000 and b == 1152.0 * 27_000


def test_mla_prefill_is_up_projected_standard_attention():
    # 2 · heads · (qk_nope + qk_rope + v_head) = 2 · 16 · 320 = 10,240 FLOPs per pair per layer.
    assert attn.prefill_pair_flops(DS, 1) == 10240.0
    f, b = attn.prefill_attention(DS, 1, 100, 0)
    assert f == 10240.0 * 27 * (100 * 101 // 2) and b == 1152.0 * 27 * 100
    # With 50 cached tokens the context is up-projected by kv_b: 2 · 50 · 512 · 16 · (128 + 128) · 27 FLOPs more.
    f2, _ = attn.prefill_attention(DS, 1, 100, 50)
    assert f2 == 10240.0 * 27 * (100 * 50 + 5050) + 2.0 * 50 * 512 * 16 * 256 * 27


def test_mla_decode_attention_is_max_of_compute_and_memory():
    hw = load_hardware("H100")
    rc = RooflineCorrected(DS, hw, 1)
    plan = StepPlan(decode_ctx=(1000,) * 32)
    att = next(c for c in rc.explain(plan).components if c.name == "attention.decode")
    flops, kv = 32 * 34816.0 * 27 * 1001, 32 * 1152.0 * 27 * 1001
    assert att.flops == pytest.approx(flops) and att.bytes == pytest.approx(kv)
    compute = flops / (hw.bf16_flops * 580.0 / 989.5)
    memory = kv / (hw.hbm_bytes_per_s * hw.bw_efficiency)
    assert att.time_s == pytest.approx(max(compute, memory))
    assert rc.step_time(plan) == rc.explain(plan).seconds


def test_causal_pairs_with_window():
    assert attn.causal_pairs(3, 2) == 3 * 2 + 6
    assert attn.causal_pairs(10, 0, 4) == 1 + 2 + 3 + 4 * 7  # query i sees min(i, 4) keys
    assert attn.causal_pairs(5, 8, 4) == 20  # every query already past the window
    assert attn.causal_pairs(4, 2, 5) == 3 + 4 + 5 + 5
    assert attn.causal_pairs(6, 1, 100) == attn.causal_pairs(6, 1)  # a window longer than the sequence: no change


def test_sliding_layers_bound_attention_by_the_window():
    assert attn.layer_keys(MISTRAL, 10_000) == 32 * 4096
    assert attn.layer_keys(MISTRAL, 1000) == 32 * 1000
    f_long, b_long = attn.decode_attention(MISTRAL, 1, 20_000)
    f_win, b_win = attn.decode_attention(MISTRAL, 1, 4095)
    assert (f_long, b_long) == (f_win, b_win)  # beyond the window a decode costs the same
    # A step over a context 5× the window costs the same attention as one at the window.
    long = step_time("mistral-7b-v0.1", decode=[20_000] * 8, latency_model="roofline-v2-corrected", overhead="none")
    win = step_time("mistral-7b-v0.1", decode=[4095] * 8, latency_model="roofline-v2-corrected", overhead="none")
    assert long.seconds == win.seconds


def _cfg(**kw):
    base = {"num_hidden_layers": 62, "hidden_size": 1024, "num_attention_heads": 8, "num_key_value_heads": 4, "head_dim": 128,
            "intermediate_size": 4096, "vocab_size": 32000}
    return spec_from_config({**base, **kw}, "t")


def test_sliding_layers_read_as_vllm_reads_config():
    assert (MISTRAL.sliding_window, MISTRAL.num_sliding_layers) == (4096, 32)
    assert load_model("qwen2.5-7b-instruct").num_sliding_layers == 0  # use_sliding_window: false
    g3 = _cfg(sliding_window=1024, sliding_window_pattern=6)  # Gemma-3: every 6th layer global
    assert (g3.sliding_window, g3.num_sliding_layers, g3.num_full_layers) == (1024, 52, 10)
    g2 = _cfg(model_type="gemma2", num_hidden_layers=42, sliding_window=4096)
    assert g2.num_sliding_layers == 21
    types = ["sliding_attention", "full_attention"] * 31
    assert _cfg(sliding_window=128, layer_types=types).num_sliding_layers == 31
    assert _cfg(sliding_window=None).num_sliding_layers == 0
    with pytest.raises(ConfigError, match="layer_types"):
        _cfg(sliding_window=128, layer_types=["sliding_attention"])


def test_hybrid_prefill_pairs_split_by_layer_type():
    g3 = _cfg(sliding_window=8, sliding_window_pattern=6)
    assert attn.prefill_layer_pairs(g3, 20, 0) == 10 * attn.causal_pairs(20, 0) + 52 * attn.causal_pairs(20, 0, 8)


def test_standard_models_unchanged():
    assert not attn.is_variant(load_model("llama-3.1-8b-instruct"))
