"""ModelSpec from config.json: hand-computed sizes and the errors users see."""

import json

import pytest

from servesim.config import load_model, spec_from_config
from servesim.errors import ConfigError


def test_llama2_7b_sizes_by_hand():
    m = load_model("llama-2-7b-hf")
    # per layer: attention 4·4096² + MLP 3·4096·11008 + 2 norms·4096; plus embeddings and LM head 2·32000·4096 + final norm
    per_layer = 4 * 4096**2 + 3 * 4096 * 11008 + 2 * 4096
    assert m.param_count == 32 * per_layer + 2 * 32000 * 4096 + 4096 == 6_738_415_616
    assert m.weight_bytes == 13_476_831_232  # ~13.5 GB in fp16
    assert m.kv_bytes_per_token == 2 * 32 * 32 * 128 * 2 == 524_288
    assert m.kv_bytes_per_token_per_gpu(2) == 262_144


def test_hf_id_alias_and_path(tmp_path):
    assert load_model("meta-llama/Llama-2-7b-hf").param_count == load_model("llama-2-7b-hf").param_count
    assert load_model("Qwen/Qwen3-14B").name == "qwen3-14b"
    cfg = {"num_hidden_layers": 2, "hidden_size": 64, "num_attention_heads": 4, "intermediate_size": 128, "vocab_size": 100}
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    folder = load_model(tmp_path)
    assert folder.num_kv_heads == 4 and folder.head_dim == 16
    assert load_model(tmp_path / "config.json").param_count == folder.param_count


def test_head_dim_is_read_not_assumed():
    cfg = {"num_hidden_layers": 1, "hidden_size": 4096, "num_attention_heads": 32, "num_key_value_heads": 8,
           "head_dim": 256, "intermediate_size": 8192, "vocab_size": 32000}
    m = spec_from_config(cfg, "x")
    assert m.head_dim == 256 and m.q_size == 8192
    assert m.kv_bytes_per_token == 1 * 2 * 8 * 256 * 2


def test_gqa_70b_and_moe_and_text_config():
    m70 = load_model("llama-2-70b-hf")
    assert m70.kv_bytes_per_token == 2 * 80 * 8 * 128 * 2
    assert abs(m70.param_count / 1e9 - 68.98) < 0.01
    mix = load_model("mixtral-8x7b-v0.1")
    assert mix.num_experts == 8 and mix.num_experts_per_tok == 2 and mix.moe_intermediate_size == 14336
    assert abs(mix.param_count / 1e9 - 46.70) < 0.01 and abs(mix.active_param_count / 1e9 - 12.88) < 0.01
    q3 = load_model("qwen3-30b-a3b")
    assert q3.num_experts == 128 and q3.moe_intermediate_size == 768 and abs(q3.active_param_count / 1e9 - 3.35) < 0.05
    scout = load_model("llama-4-scout-17b-16e-instruct")  # nested under text_config
    assert scout.num_layers == 48 and scout.num_experts == 16 and abs(scout.active_param_count / 1e9 - 17.2) < 0.3
    fp8 = load_model("llama-4-scout-17b-16e-instruct-fp8-dynamic")
    assert fp8.weight_bytes_per_param == 1.0
    ds = load_model("deepseek-v2-lite")  # MLA latent KV cache: kv_lora_rank + rope dim per layer
    assert ds.kv_bytes_per_token == 27 * (512 + 64) * 2


@pytest.mark.parametrize(
    "cfg, fragment",
    [
        ({"num_hidden_layers": 2, "num_attention_heads": 4}, "missing required field 'hidden_size'"),
        ({"num_hidden_layers": 2, "hidden_size": "big", "num_attention_heads": 4}, "'hidden_size'='big' must be an integer"),
        ({"num_hidden_layers": -2, "hidden_size": 64, "num_attention_heads": 4}, "'num_hidden_layers'=-2 must be >= 1"),
        ({"num_hidden_layers": 2, "hidden_size": 64, "num_attention_heads": 4, "intermediate_size": 128, "vocab_size": 100, "torch_dtype": "float13"}, "torch_dtype"),
    ],
)
def test_bad_configs_one_line(cfg, fragment):
    with pytest.raises(ConfigError) as err:
        spec_from_config(cfg, "bad", "bad/config.json")
    assert fragment in str(err.value) and "\n" not in str(err.value)


def test_unknown_model_did_you_mean():
    with pytest.raises(ConfigError, match="did you mean 'llama-2-7b-hf'"):
        load_model("llama-2-7b-hff")


def test_heads_not_divisible_by_tp():
    with pytest.raises(ConfigError, match="not divisible by tensor_parallel_size=3"):
        load_model("llama-2-7b-hf").check_tp(3)
