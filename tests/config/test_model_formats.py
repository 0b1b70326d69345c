"""Model configs read as vLLM reads them (issue 13): served dtype, quantisation formats, tied heads, KV-cache dtype,
derived max_model_len, and the start-up refusals. Every byte count below is worked out by hand in the comments."""

from __future__ import annotations

import pytest

from servesim.config import load_hardware
from servesim.config.model import load_model, spec_from_config
from servesim.errors import ConfigError
from servesim.simulation import check_kv_capacity, kv_blocks_for, resolve_engine, simulate

# A small llama-shaped config: d=64, 4 heads x 16, 2 KV heads, ff=128, 2 layers, vocab 1000.
#   attention per layer: q 64x64 + k 64x32 + v 64x32 + o 64x64 = 4096 + 2048 + 2048 + 4096 = 12,288
#   MLP per layer: 3 x 64 x 128 = 24,576     -> linear weights per layer 36,864; norms 2 x 64 = 128
#   embedding 64,000; LM head 64,000 (untied); final norm 64
SMALL = {"model_type": "llama", "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
         "num_key_value_heads": 2, "intermediate_size": 128, "vocab_size": 1000, "torch_dtype": "bfloat16"}
SMALL_16BIT_FIXED = 64_000 * 2 + 64_000 * 2 + 64 * 2  # embedding + LM head + final norm at 2 B = 256,128
SMALL_LINEAR = 36_864
SMALL_NORMS = 128


def small(**quant) -> dict:
    return {**SMALL, "quantization_config": quant} if quant else dict(SMALL)


def test_unquantised_small_model_is_two_bytes_everywhere():
    m = spec_from_config(small(), "small")
    assert m.param_count == 128_064 + 2 * (SMALL_LINEAR + SMALL_NORMS)  # 202,048
    assert m.weight_bytes == 2 * 202_048


def test_gpt_oss_20b_mxfp4_bytes_by_module_class():
    m = load_model("gpt-oss-20b")
    assert (m.dtype, m.quant_method) == ("bfloat16", "mxfp4")
    # d=2880, 64 heads x 64, 8 KV heads, 24 layers, 32 experts (top-4) of width 2880, vocab 201,088, untied.
    attention = 2880 * 4096 + 2880 * 512 + 2880 * 512 + 4096 * 2880  # 26,542,080 per layer, bf16
    router = 2880 * 32  # 92,160 per layer, bf16 (vLLM builds routers unquantised)
    experts = 3 * 2880 * 2880 * 32  # 796,262,400 per layer, MXFP4: 0.5 B + one 1-byte scale per 32 = 0.53125 B
    norms = 2 * 2880
    embed = 201_088 * 2880  # 579,133,440, and the same again for the LM head
    want = 2 * (2 * embed + 2880) + 24 * (2 * (attention + router + norms) + experts * 0.53125)
    assert m.weight_bytes == want
    assert 13.0e9 < m.weight_bytes < 14.0e9  # 13.75 GB: the checkpoint's ~13 GB, not 41.8 GB of bf16
    assert m.expert_bytes_per_param == 0.53125 and m.weight_bytes_per_param == 2.0
    assert m.max_model_len == 131_072  # yarn: original 4,096 x factor 32


# gemma-2-9b's public config.json (google/gemma-2-9b): float32 checkpoint, no tie_word_embeddings key
# (Gemma2Config ties by default).
GEMMA2_9B = {"model_type": "gemma2", "architectures": ["Gemma2ForCausalLM"], "hidden_size": 3584, "intermediate_size": 14336,
             "num_hidden_layers": 42, "num_attention_heads": 16, "num_key_value_heads": 8, "head_dim": 256,
             "vocab_size": 256000, "max_position_embeddings": 8192, "torch_dtype": "float32"}


def test_gemma2_9b_is_served_in_bf16_with_its_tied_head_counted_once():
    m = spec_from_config(GEMMA2_9B, "gemma-2-9b")
    assert m.dtype == "bfloat16" and m.tie_word_embeddings  # vLLM --dtype auto: fp32 -> bf16
    # per layer: attention 3584 x (4096 + 2048 + 2048) + 4096 x 3584 = 44,040,192; MLP 3 x 3584 x 14336 = 154,140,672;
    # 2 norms 7,168 -> 198,188,032; x 42 = 8,323,897,344; embedding (once) 917,504,000; final norm 3,584.
    assert m.param_count == 9_241_404_928
    assert m.weight_bytes == 2 * 9_241_404_928
    fp32 = spec_from_config(GEMMA2_9B, "gemma-2-9b", dtype="float32")
    assert fp32.weight_bytes == 4 * 9_241_404_928 and fp32.kv_bytes_per_element == 4.0
    with pytest.raises(ConfigError, match="does not support float16"):
        spec_from_config(GEMMA2_9B, "gemma-2-9b", dtype="float16")


def test_fp16_config_stays_fp16_and_dtype_overrides():
    m = load_model("llama-2-7b-hf")
    assert m.dtype == "float16" and m.weight_bytes == 2 * m.param_count
    assert load_model("llama-2-7b-hf", dtype="bfloat16").dtype == "bfloat16"


def test_compressed_tensors_honours_its_ignore_list():
    w8a8 = {"quant_method": "compressed-tensors",
            "config_groups": {"group_0": {"targets": ["Linear"], "weights": {"num_bits": 8, "type": "float", "strategy": "channel"},
                                          "input_activations": {"num_bits": 8, "type": "float", "strategy": "token"}}},
            "ignore": ["lm_head", r"re:model\.layers\.0\..*"]}
    m = spec_from_config(small(**w8a8), "small")
    # layer 0 ignored -> 2 B; layer 1 at 1 B; LM head, embedding and norms at 2 B whatever the scheme.
    assert m.weight_bytes == SMALL_16BIT_FIXED + (2 * SMALL_LINEAR + 2 * SMALL_NORMS) + (SMALL_LINEAR + 2 * SMALL_NORMS)  # 367,232
    assert m.weight_bytes == 367_232
    assert m.gemm_compute_bytes == 1.0  # 8-bit activations: FP8 tensor-core math
    no_ignore = spec_from_config(small(**{**w8a8, "ignore": ["lm_head"]}), "small")
    assert no_ignore.weight_bytes == SMALL_16BIT_FIXED + 2 * (SMALL_LINEAR + 2 * SMALL_NORMS)  # 330,368


def test_compressed_tensors_ignore_list_of_the_bundled_fp8_scout():
    m = load_model("llama-4-scout-17b-16e-instruct-fp8-dynamic")
    # Its ignore list names every layer's q/k/v/o projections (and routers): attention stays bf16.
    assert all((i, g) in m.unquantised for i in range(48) for g in ("q", "k", "v", "o"))
    assert m.gemm_bytes_per_param(m.attention_gemms()[0]) == 2.0
    assert m.gemm_bytes_per_param(m.mlp_gemms(True)[1]) == 1.0  # experts at 1 byte


@pytest.mark.parametrize("method,extra,per_weight", [
    # AWQ: 4-bit + per 128-group an fp16 scale (2 B) and a packed 4-bit zero (0.5 B): 0.5 + 2.5/128
    ("awq", {"bits": 4, "group_size": 128, "zero_point": True}, 0.5 + 2.5 / 128),
    # GPTQ 4-bit g128: the same layout
    ("gptq", {"bits": 4, "group_size": 128}, 0.51953125),
    # GPTQ 8-bit g64: 1 + (2 + 1)/64
    ("gptq", {"bits": 8, "group_size": 64}, 1.046875),
    # bitsandbytes NF4, blocks of 64 with an fp32 absmax: 0.5 + 4/64
    ("bitsandbytes", {"load_in_4bit": True}, 0.5625),
    # fp8 block-wise 128x128: 1 + 4/16384
    ("fp8", {"weight_block_size": [128, 128]}, 1.0 + 4 / 16384),
])
def test_grouped_formats_count_their_scales(method, extra, per_weight):
    m = spec_from_config(small(quant_method=method, **extra), "small")
    assert m.weight_bytes_per_param == per_weight
    assert m.weight_bytes == SMALL_16BIT_FIXED + 2 * (SMALL_LINEAR * per_weight + 2 * SMALL_NORMS)
    # weight-only formats dequantise and multiply in 16-bit; fp8 W8A8 uses the FP8 path
    assert m.gemm_compute_bytes == (1.0 if method == "fp8" else 2.0)


def test_quantization_override_and_its_conflicts():
    m = spec_from_config(small(), "small", quantization="fp8")  # vLLM quantises a bf16 checkpoint to fp8 on load
    assert m.weight_bytes == SMALL_16BIT_FIXED + 2 * (SMALL_LINEAR + 2 * SMALL_NORMS)
    with pytest.raises(ConfigError, match=r"--quantization int3: unknown method; known: .*awq.*mxfp4"):
        spec_from_config(small(), "small", quantization="int3")
    with pytest.raises(ConfigError, match="says quant_method 'awq'"):
        spec_from_config(small(quant_method="awq"), "small", quantization="fp8")


def test_unknown_quant_method_names_the_known_ones():
    with pytest.raises(ConfigError) as err:
        spec_from_config(small(quant_method="hqq"), "small", "cfg.json")
    msg = str(err.value)
    assert "cfg.json" in msg and "'hqq'" in msg and "compressed-tensors" in msg and "bitsandbytes" in msg and "\n" not in msg


def test_kv_cache_dtype_and_kv_cache_scheme():
    base = load_model("llama-3.1-8b-instruct")
    fp8 = load_model("llama-3.1-8b-instruct", kv_cache_dtype="fp8")
    assert base.kv_bytes_per_token == 32 * 2 * 8 * 128 * 2 == 131_072 and fp8.kv_bytes_per_token == 65_536
    scheme = {"quant_method": "compressed-tensors", "kv_cache_scheme": {"num_bits": 8, "type": "float", "strategy": "tensor"},
              "config_groups": {"g": {"weights": {"num_bits": 8, "type": "float", "strategy": "channel"}}}}
    m = spec_from_config(small(**scheme), "small")
    assert (m.kv_cache_dtype, m.kv_bytes_per_element) == ("fp8", 1.0)
    with pytest.raises(ConfigError, match="--kv-cache-dtype int4: must be one of auto, fp8, fp8_e4m3, fp8_e5m2"):
        load_model("llama-3.1-8b-instruct", kv_cache_dtype="int4")


def test_fp8_kv_cache_doubles_the_blocks():
    hw = load_hardware("H100")
    counts = []
    for kv in ("auto", "fp8"):
        spec = load_model("llama-3.1-8b-instruct", kv_cache_dtype=kv)
        counts.append(kv_blocks_for(resolve_engine(None, spec, hw, 1), spec, hw))
    b16, b8 = counts
    # the same free bytes over half the bytes per block: floor(2x / y) is 2 floor(x / y) or one more
    assert b8 in (2 * b16, 2 * b16 + 1), counts


def test_dtype_flag_is_checked():
    with pytest.raises(ConfigError, match="--dtype fp4: must be one of auto, bfloat16, float16, float32"):
        load_model("llama-2-7b-hf", dtype="fp4")


# ---- start-up refusals -------------------------------------------------------------------------

def test_max_model_len_above_the_derived_one_is_refused():
    spec, hw = load_model("llama-3.1-8b-instruct"), load_hardware("H100")
    with pytest.raises(ConfigError, match=r"max_model_len \(200,000\) is greater than the derived max_model_len \(131,072"):
        resolve_engine({"max_model_len": 200_000}, spec, hw, 1)
    assert resolve_engine({"max_model_len": 131_072}, spec, hw, 1).max_model_len == 131_072


def test_rope_scaling_factor_extends_the_derived_length():
    linear = {**SMALL, "max_position_embeddings": 4096, "rope_scaling": {"type": "linear", "factor": 2.0}}
    llama3 = {**SMALL, "max_position_embeddings": 4096, "rope_scaling": {"rope_type": "llama3", "factor": 8.0}}
    assert spec_from_config(linear, "x").max_model_len == 8192
    assert spec_from_config(llama3, "x").max_model_len == 4096


def test_kv_cache_smaller_than_one_request_is_refused_with_the_numbers():
    spec, hw = load_model("llama-3.1-8b-instruct"), load_hardware("H100")
    eng = resolve_engine({"num_gpu_blocks_override": 2}, spec, hw, 1)
    with pytest.raises(ConfigError) as err:
        check_kv_capacity(eng, spec, kv_blocks_for(eng, spec, hw))
    msg = str(err.value)
    # 2 blocks x 16 = 32 tokens; 131,072 / 16 = 8,192 blocks; 8,192 x 16 x 131,072 B = 16.00 GiB
    assert "KV cache holds 32 tokens" in msg and "max_model_len 131,072 needs 8,192 blocks" in msg and "16.00 GiB" in msg
    check_kv_capacity(resolve_engine({"num_gpu_blocks_override": 8192}, spec, hw, 1), spec, 8192)  # exactly enough


def test_a_bundled_default_vllm_would_refuse_is_refused():
    # 70B at TP2 on H100: weights leave 24,608 tokens of KV per GPU, not one 131,072-token request.
    with pytest.raises(ConfigError, match=r"KV cache holds 24,608 tokens .*max_model_len 131,072 needs 8,192 blocks"):
        simulate("llama-3.1-70b-instruct", "H100", 2, workload={"input_tokens": 10, "output_tokens": 2,
                                                                "arrival": "synchronous", "num_requests": 1})


def test_weights_that_do_not_fit_are_refused_even_with_an_override():
    spec, hw = load_model("llama-2-70b-hf"), load_hardware("H100")
    eng = resolve_engine({"num_gpu_blocks_override": 1000}, spec, hw, 1)
    with pytest.raises(ConfigError, match="does not fit on H100"):
        kv_blocks_for(eng, spec, hw)


def test_long_requests_are_rejected_one_by_one_and_counted_by_reason():
    from servesim.engine import RequestSpec

    trace = [RequestSpec(id=i, arrival_s=0.1 * i, input_tokens=n, output_tokens=10) for i, n in enumerate((100, 995, 2000, 100))]
    r = simulate("llama-2-7b-hf", "H100", 1, workload=trace, engine={"max_model_len": 1000}, latency_model="roofline-v2")
    # 995 + 10 and 2000 + 10 exceed 1,000: two 400s; the other two complete.
    assert r.summary["rejected"] == 2 and r.summary["completed"] == 2
    assert r.summary["rejected_by_reason"] == {"max_model_len": 2}
    assert [q["reject_reason"] for q in r.requests if q["rejected"]] == ["max_model_len: 995+10 > 1000", "max_model_len: 2000+10 > 1000"]


def test_bundled_new_configs_load_with_their_public_sizes():
    gemma = load_model("gemma-2-9b-it")  # no tie_word_embeddings key: Gemma2Config ties the head
    assert gemma.tie_word_embeddings and gemma.param_count == 9_241_404_928 and gemma.dtype == "bfloat16"
    # Phi-4: d=5120, 40 layers, 40 heads x 128, 10 KV heads, ff 17920, vocab 100,352, untied:
    # per layer 5120 x (5120 + 1280 + 1280) + 5120 x 5120 + 3 x 5120 x 17920 + 2 x 5120 = 340,797,440
    assert load_model("phi-4").param_count == 40 * 340_797_440 + 2 * 100_352 * 5120 + 5120  # 14.66 B
    llama = load_model("llama-3.2-3b-instruct")  # tied head, counted once
    assert llama.tie_word_embeddings and llama.max_model_len == 131_072


def test_fp8_kv_halves_the_attention_bytes_a_decode_step_reads():
    from servesim.api import step_time

    parts = {}
    for kv in ("auto", "fp8"):
        st = step_time("llama-3.1-8b-instruct", "H100", decode=[4096] * 32, latency_model="roofline-v2-corrected",
                       overhead="none", kv_cache_dtype=kv)
        parts[kv] = {c.name: c for c in st.components}
    # bytes = KV bytes per token per GPU x (context + 1) per request: 131,072 -> 65,536 B per token
    assert parts["fp8"]["attention.decode"].bytes == parts["auto"]["attention.decode"].bytes / 2 == 32 * 4097 * 65_536
    assert parts["fp8"]["attention.decode"].time_s < parts["auto"]["attention.decode"].time_s
    assert parts["fp8"]["gemm"].time_s == parts["auto"]["gemm"].time_s  # weights untouched
