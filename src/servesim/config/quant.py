"""How vLLM stores a checkpoint's weights and KV cache: served dtype, quantisation method, KV-cache dtype.

Every width is in bytes per element (per weight for linear layers, scales and zero points included).
Sources: vllm/config/model.py (`_get_and_verify_dtype`, `_resolve_auto_dtype`), vllm/model_executor/layers/
quantization/* (fp8.py, awq.py, gptq.py, compressed_tensors/, mxfp4.py, bitsandbytes.py) and the formats'
own definitions (OCP MX spec for MXFP4, bitsandbytes NF4 blocks); docs/LATENCY.md "Model formats".
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from servesim.errors import ConfigError

# `--dtype` values and the bytes of one element.
SERVED_DTYPES: dict[str, float] = {"bfloat16": 2.0, "float16": 2.0, "float32": 4.0}
DTYPE_ALIASES: dict[str, str] = {"half": "float16", "float": "float32", "bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}
DTYPE_CHOICES = ("auto", "bfloat16", "float16", "float32")

# vLLM refuses float16 for these model types (_FLOAT16_NOT_SUPPORTED_MODELS in vllm/config/model.py).
FLOAT16_NOT_SUPPORTED = ("gemma2", "gemma3", "gemma3_text", "plamo2", "glm4")

# Model types whose HF config class ties the LM head to the embedding when config.json omits the key.
TIED_BY_DEFAULT = ("gemma", "gemma2", "gemma3", "gemma3_text")

# `--kv-cache-dtype` values and bytes per KV element ("auto" = the served dtype).
KV_CACHE_DTYPES: dict[str, float] = {"fp8": 1.0, "fp8_e4m3": 1.0, "fp8_e5m2": 1.0}
KV_CACHE_CHOICES = ("auto", "fp8", "fp8_e4m3", "fp8_e5m2")


@dataclass(frozen=True, slots=True)
class WeightFormat:
    """Bytes per weight of each module class and the width the GEMM math runs at."""

    method: str  # "" = unquantised
    linear: float  # quantised linear layers (attention, dense MLP, shared experts)
    experts: float  # routed MoE expert weights
    compute: float  # bytes of the GEMM operands the tensor cores multiply (1 = FP8/INT8 path, 2 = 16-bit)
    lm_head: float  # LM head (vLLM's ParallelLMHead is quantised only by GPTQ `lm_head: true`)
    ignore: tuple[str, ...] = ()  # module-name patterns kept at the served dtype (compressed-tensors `ignore`)


def _num(q: dict[str, Any], key: str, default: float, where: str, lo: float = 0.0, hi: float = math.inf) -> float:
    v = q.get(key, default)
    if v is None:
        return default
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not (lo < v <= hi or (v == -1 and key.endswith("group_size"))):
        raise ConfigError(f"{where}: field 'quantization_config.{key}'={v!r} must be a number in ({lo:g}, {hi:g}]")
    return float(v)


def _int_weight(bits: float, group: float, scale_bytes: float, zero: bool) -> float:
    """Bytes per weight of a grouped integer format: packed bits + one scale (+ one packed zero) per group."""
    if group <= 0:  # group_size -1: one scale per output channel, < 0.01 % of the weight bytes; ignored
        return bits / 8.0
    return bits / 8.0 + (scale_bytes + (bits / 8.0 if zero else 0.0)) / group


def _fp8(q: dict[str, Any], where: str, act: float) -> WeightFormat:
    # FP8 W8A8 (vllm fp8.py): 1-byte weights; block-wise checkpoints carry one fp32 scale per block.
    block = q.get("weight_block_size")
    extra = 0.0
    if block is not None:
        if not (isinstance(block, list) and len(block) == 2 and all(isinstance(b, int) and not isinstance(b, bool) and b > 0 for b in block)):
            raise ConfigError(f"{where}: field 'quantization_config.weight_block_size'={block!r} must be two positive integers")
        extra = 4.0 / (block[0] * block[1])
    return WeightFormat("fp8", 1.0 + extra, 1.0 + extra, 1.0, act, tuple(_patterns(q, "modules_to_not_convert", where)))


def _awq(q: dict[str, Any], where: str, act: float) -> WeightFormat:
    # AWQ (vllm awq.py): 4-bit weights, per group an fp16 scale and a packed 4-bit zero point; math in 16-bit.
    bits = _num(q, "bits", _num(q, "w_bit", 4, where, 0, 8), where, 0, 8)
    group = _num(q, "group_size", _num(q, "q_group_size", 128, where, 0, 1 << 20), where, 0, 1 << 20)
    zero = bool(q.get("zero_point", True))
    w = _int_weight(bits, group, 2.0, zero)
    return WeightFormat("awq", w, w, act, act, tuple(_patterns(q, "modules_to_not_convert", where)))


def _gptq(q: dict[str, Any], where: str, act: float) -> WeightFormat:
    # GPTQ (vllm gptq.py): packed `bits` weights, per group an fp16 scale and packed zero; math in 16-bit.
    # The per-row g_idx (int32 per input channel) is 4/N bytes per weight, < 0.1 %: ignored.
    bits = _num(q, "bits", 4, where, 0, 8)
    group = _num(q, "group_size", 128, where, 0, 1 << 20)
    w = _int_weight(bits, group, 2.0, True)
    head = w if q.get("lm_head") is True else act
    return WeightFormat("gptq", w, w, act, head, tuple(_patterns(q, "modules_to_not_convert", where)))


def _mxfp4(q: dict[str, Any], where: str, act: float) -> WeightFormat:
    # MXFP4 (OCP MX v1.0): 4-bit E2M1 values + one E8M0 (1-byte) scale per 32 -> 0.5 + 1/32 B/weight.
    # vLLM's Mxfp4Config quantises FusedMoE experts only; attention, router, embeddings, LM head stay 16-bit.
    # Dequantisation cost: the MoE GEMM runs in 16-bit on the dequantised weights (no FP4 math modelled).
    return WeightFormat("mxfp4", act, 0.5 + 1.0 / 32.0, act, act, tuple(_patterns(q, "modules_to_not_convert", where)))


def _bitsandbytes(q: dict[str, Any], where: str, act: float) -> WeightFormat:
    if q.get("load_in_8bit") and not q.get("load_in_4bit"):
        # LLM.int8: 1-byte weights + one fp32 scale per output row (< 0.1 %); math in 16-bit.
        w = 1.0
    else:
        # NF4/FP4 blocks of 64 with an fp32 absmax each; double quant stores the absmax as 1 byte
        # plus one fp32 per 256 blocks (bitsandbytes Linear4bit / QuantState).
        w = 0.5 + (1.0 / 64.0 + 4.0 / (64.0 * 256.0) if q.get("bnb_4bit_use_double_quant") else 4.0 / 64.0)
    skip = _patterns(q, "llm_int8_skip_modules", where)
    return WeightFormat("bitsandbytes", w, w, act, act, tuple(skip))


def _compressed_tensors(q: dict[str, Any], where: str, act: float) -> WeightFormat:
    # compressed-tensors: one scheme per config group (the first group that names weights is used);
    # W8A8 (8-bit activations) multiplies in FP8/INT8, weight-only schemes (W4A16 ...) in 16-bit.
    groups = q.get("config_groups") or {}
    if not isinstance(groups, dict):
        raise ConfigError(f"{where}: field 'quantization_config.config_groups'={groups!r} must be an object")
    weights, acts = None, None
    for name, group in groups.items():
        if not isinstance(group, dict) or not isinstance(group.get("weights") or {}, dict):
            raise ConfigError(f"{where}: field 'quantization_config.config_groups.{name}' must be an object with a 'weights' object")
        if group.get("weights"):
            weights, acts = group["weights"], group.get("input_activations")
            break
    if weights is None:
        raise ConfigError(f"{where}: field 'quantization_config.config_groups' has no group with 'weights'")
    bits = _num(weights, "num_bits", 8, where, 0, 16)
    strategy = str(weights.get("strategy") or "tensor")
    group = _num(weights, "group_size", 128, where, 0, 1 << 20) if strategy == "group" else 0.0
    block = weights.get("block_structure")
    w = _int_weight(bits, group, 2.0, not weights.get("symmetric", True))
    if strategy == "block" and isinstance(block, list) and len(block) == 2 and all(isinstance(b, int) and b > 0 for b in block):
        w = bits / 8.0 + 4.0 / (block[0] * block[1])  # one fp32 scale per block, as fp8 block-wise
    a_bits = (acts or {}).get("num_bits") if isinstance(acts, dict) else None
    compute = 1.0 if isinstance(a_bits, (int, float)) and not isinstance(a_bits, bool) and a_bits <= 8 else act
    return WeightFormat("compressed-tensors", w, w, compute, act, tuple(_patterns(q, "ignore", where)))


# quant_method -> builder (vLLM's names; aliases map onto them)
QUANT_METHODS = {
    "fp8": _fp8,
    "fbgemm_fp8": _fp8,
    "awq": _awq,
    "awq_marlin": _awq,
    "gptq": _gptq,
    "gptq_marlin": _gptq,
    "mxfp4": _mxfp4,
    "bitsandbytes": _bitsandbytes,
    "compressed-tensors": _compressed_tensors,
}
QUANT_ALIASES = {"compressed_tensors": "compressed-tensors"}


def _patterns(q: dict[str, Any], key: str, where: str) -> list[str]:
    v = q.get(key)
    if v is None:
        return []
    if not isinstance(v, list) or not all(isinstance(s, str) for s in v):
        raise ConfigError(f"{where}: field 'quantization_config.{key}'={v!r} must be a list of module names")
    return list(v)


def known_methods() -> str:
    """The quantisation methods servesim reads, comma-separated."""
    return ", ".join(sorted(QUANT_METHODS))


def weight_format(cfg: dict[str, Any], quantization: str | None, act_bytes: float, where: str) -> WeightFormat:
    """The weight format of a config.json (or of the `--quantization` override) at the served width act_bytes."""
    q = cfg.get("quantization_config")
    if q is not None and not isinstance(q, dict):
        raise ConfigError(f"{where}: field 'quantization_config' must be an object")
    q = dict(q or {})
    method = str(q.get("quant_method", "") or "").lower()
    if quantization is not None:
        override = QUANT_ALIASES.get(quantization.lower(), quantization.lower())
        if override not in QUANT_METHODS:
            raise ConfigError(f"--quantization {quantization}: unknown method; known: {known_methods()}")
        if method and QUANT_ALIASES.get(method, method) != override and not (method, override) in (("awq", "awq_marlin"), ("gptq", "gptq_marlin")):
            # vLLM: "Quantization method specified in the model config (X) does not match the quantization method specified in the `quantization` argument (Y)."
            raise ConfigError(f"--quantization {quantization}: the model config says quant_method '{method}' ({where})")
        method = override
    if not method:
        return WeightFormat("", act_bytes, act_bytes, act_bytes, act_bytes)
    method = QUANT_ALIASES.get(method, method)
    if method not in QUANT_METHODS:
        raise ConfigError(f"{where}: field 'quantization_config.quant_method'={method!r} is not known; known: {known_methods()}")
    return QUANT_METHODS[method](q, where, act_bytes)


def served_dtype(config_dtype: str, requested: str, model_type: str, where: str) -> str:
    """The dtype vLLM serves in: --dtype, or for 'auto' the config's, fp32 checkpoints downcast to bfloat16."""
    req = DTYPE_ALIASES.get(requested.lower(), requested.lower())
    if req not in DTYPE_CHOICES:
        raise ConfigError(f"--dtype {requested}: must be one of {', '.join(DTYPE_CHOICES)}")
    if req == "auto":
        # vLLM _resolve_auto_dtype: float32 -> the platform's first supported dtype (bfloat16 on sm80+ and
        # every preset here); other 16-bit dtypes are kept. A config without a dtype is read as bfloat16.
        cfg = DTYPE_ALIASES.get(config_dtype, config_dtype)
        return cfg if cfg in ("bfloat16", "float16") else "bfloat16"
    if req == "float16" and model_type in FLOAT16_NOT_SUPPORTED:
        raise ConfigError(f"--dtype float16: the model type '{model_type}' does not support float16 "
                          f"(vLLM: numerical instability; use bfloat16 or float32) ({where})")
    return req


def kv_cache_bytes(kv_cache_dtype: str, served_bytes: float, quant: dict[str, Any] | None, where: str) -> tuple[str, float]:
    """(resolved --kv-cache-dtype, bytes per KV element); 'auto' takes a compressed-tensors kv_cache_scheme."""
    req = kv_cache_dtype.lower()
    if req not in KV_CACHE_CHOICES:
        raise ConfigError(f"--kv-cache-dtype {kv_cache_dtype}: must be one of {', '.join(KV_CACHE_CHOICES)}")
    if req != "auto":
        return req, KV_CACHE_DTYPES[req]
    scheme = (quant or {}).get("kv_cache_scheme") if isinstance(quant, dict) else None
    if isinstance(scheme, dict):
        bits = scheme.get("num_bits")
        if isinstance(bits, bool) or not isinstance(bits, (int, float)) or bits not in (8, 16):
            raise ConfigError(f"{where}: field 'quantization_config.kv_cache_scheme.num_bits'={bits!r} must be 8 or 16")
        if bits == 8:
            # A checkpoint with an 8-bit kv_cache_scheme ships KV scales for an FP8 cache (compressed-tensors).
            return "fp8", 1.0
    return "auto", served_bytes


def matches(name: str, patterns: tuple[str, ...]) -> bool:
    """True when a module name is in a skip list: exact, a parent path, 're:' regex, or '*' glob (vLLM's rules)."""
    for p in patterns:
        if p.startswith("re:"):
            if re.match(p[3:], name):
                return True
        elif "*" in p:
            if re.fullmatch(re.escape(p).replace(r"\*", r"[^.]+") + r"(\..*)?", name):
                return True
        elif name == p or name.startswith(p + "."):
            return True
    return False
