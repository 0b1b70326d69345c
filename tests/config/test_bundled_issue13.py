"""Bundled configs of issue 13: parameter counts against the published figures, formats and lengths as vLLM reads them."""

import pytest

from servesim.config.model import load_model

# (bundled name, published total parameters, source of that figure)
PUBLISHED = [
    ("qwen2.5-32b", 32.5e9, "Qwen2.5-32B model card 'Number of Parameters: 32.5B' (ZHUI/paddlenlp_model_readme@ffc26950 Qwen/Qwen2.5-32B/index.md)"),
    ("qwen2.5-72b", 72.7e9, "Qwen2.5-72B model card 'Number of Parameters: 72.7B'"),
    ("qwen3-32b", 32.8e9, "Qwen3-32B model card 'Number of Parameters: 32.8B'"),
    ("qwen3-235b-a22b", 235e9, "Qwen3-235B-A22B model card '235B in total and 22B activated'"),
    ("gemma-2-9b", 9.24e9, "gemma-2-9b model card (9.24B params) / Gemma 2 report: 917M embedding + 8,324M non-embedding"),
    ("gemma-3-27b-it", 27e9, "Gemma 3 27B (text tower; the 0.4B vision tower is not modelled)"),
    ("gpt-oss-120b", 116.8e9, "gpt-oss model card (arXiv:2508.10925): 116.8B total"),
    ("deepseek-v3", 671e9, "deepseek-ai/DeepSeek-V3@b4e06d88 README_WEIGHTS.md: main model 671B total"),
]


@pytest.mark.parametrize("name,published,source", PUBLISHED)
def test_parameter_count_within_one_percent_of_published(name, published, source):
    assert abs(load_model(name).param_count / published - 1) < 0.01, source


def test_hand_counted_qwen3_32b_and_qwen2_5_72b():
    # Qwen3-32B: q/o 5120x8192, k/v 5120x1024, MLP 3x5120x25600, two 5120 norms per layer; untied 151936x5120 embed + head.
    layer = 2 * 5120 * 8192 + 2 * 5120 * 1024 + 3 * 5120 * 25600 + 2 * 5120
    assert load_model("qwen3-32b").param_count == 64 * layer + 2 * 151936 * 5120 + 5120  # 32,762,106,880
    layer = 2 * 8192 * 8192 + 2 * 8192 * 1024 + 3 * 8192 * 29568 + 2 * 8192
    assert load_model("qwen2.5-72b").param_count == 80 * layer + 2 * 152064 * 8192 + 8192  # 72,705,384,448


def test_moe_active_parameters():
    # Qwen3-235B-A22B: "22B activated" (model card); gpt-oss-120b: 5.1B active excluding the 0.58B embedding.
    assert abs(load_model("qwen3-235b-a22b").active_param_count / 22e9 - 1) < 0.01
    m = load_model("gpt-oss-120b")
    assert abs((m.active_param_count - 201088 * 2880) / 5.13e9 - 1) < 0.01


def test_formats_weights_and_lengths():
    oss = load_model("gpt-oss-120b")
    assert oss.quant_method == "mxfp4" and 60e9 < oss.weight_bytes < 70e9  # ~61 GiB checkpoint
    assert (oss.num_sliding_layers, oss.sliding_window) == (18, 128)
    ds = load_model("deepseek-v3")
    assert ds.quant_method == "fp8" and ds.is_mla and 660e9 < ds.weight_bytes < 700e9
    assert ds.max_model_len == 4096 * 40  # yarn: original_max_position_embeddings x factor
    g3 = load_model("gemma-3-27b-it")
    assert g3.max_model_len == 131072  # vLLM does not apply the rope factor to gemma3 (already scaled)
    assert (g3.num_sliding_layers, g3.sliding_window) == (52, 1024)
    g2 = load_model("gemma-2-9b")
    assert g2.dtype == "bfloat16" and (g2.num_sliding_layers, g2.sliding_window) == (21, 4096)
    assert load_model("qwen2.5-72b").weight_bytes == pytest.approx(2 * 72_705_384_448)
    assert 465e9 < load_model("qwen3-235b-a22b").weight_bytes < 475e9
