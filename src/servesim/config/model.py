"""Model specifications read from Hugging Face `config.json`, and what follows from them."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from servesim.config import bundled, quant
from servesim.config.jsonfile import read_json
from servesim.errors import ConfigError

# Largest integer accepted for a size in config.json: 2^53 keeps every derived byte count a finite float.
MAX_CONFIG_INT = 2**53

# Bytes per element of a torch dtype string (HF `torch_dtype` / `dtype`).
DTYPE_BYTES: dict[str, float] = {
    "float32": 4.0,
    "float": 4.0,
    "float16": 2.0,
    "half": 2.0,
    "bfloat16": 2.0,
    "float8_e4m3fn": 1.0,
    "float8_e5m2": 1.0,
    "fp8": 1.0,
    "int8": 1.0,
    "uint8": 1.0,
    "int4": 0.5,
    "nf4": 0.5,
}

@dataclass(frozen=True, slots=True)
class Gemm:
    """One weight matrix applied per layer: y[M, N] = x[M, K] · W[K, N]."""

    name: str
    k: int
    n: int
    experts: int = 1  # matrices of this shape per layer (MoE experts); each token uses `active` of them
    active: int = 1


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """A decoder-only transformer as vLLM would load it; sizes are for the whole (unsharded) model."""

    name: str
    num_layers: int
    hidden_size: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    intermediate_size: int
    vocab_size: int
    tie_word_embeddings: bool = False
    dtype: str = "bfloat16"
    weight_bytes_per_param: float = 2.0
    kv_bytes_per_element: float = 2.0
    max_position_embeddings: int = 4096
    # MoE (0 experts = dense)
    num_experts: int = 0
    num_experts_per_tok: int = 0
    moe_intermediate_size: int = 0
    num_shared_experts: int = 0
    shared_expert_intermediate_size: int = 0
    num_dense_layers: int = 0  # leading layers with a dense MLP in an MoE model
    dense_intermediate_size: int = 0  # MLP width of those dense layers
    # Multi-head latent attention (DeepSeek-V2 style); 0 = standard GQA attention
    kv_lora_rank: int = 0
    q_lora_rank: int = 0
    qk_rope_head_dim: int = 0
    qk_nope_head_dim: int = 0
    v_head_dim: int = 0
    # Sliding-window attention: layers that attend to (and cache) only the last `sliding_window` tokens
    sliding_window: int = 0  # 0 = every layer is full attention
    num_sliding_layers: int = 0
    source: str = ""
    # How vLLM stores it (config/quant.py); 0 = the same as weight_bytes_per_param (an unquantised model).
    model_type: str = ""
    quant_method: str = ""  # "" = unquantised: every weight at weight_bytes_per_param
    served_bytes_per_param: float = 0.0  # the served dtype (embeddings, norms, unquantised layers)
    expert_bytes_per_param: float = 0.0  # routed MoE experts
    lm_head_bytes_per_param: float = 0.0
    compute_bytes_per_param: float = 0.0  # width of the GEMM math (1 = FP8/INT8 tensor cores)
    unquantised: frozenset[tuple[int, str]] = frozenset()  # (layer, gemm) kept at the served dtype (ignore lists)
    kv_cache_dtype: str = "auto"
    derived_max_model_len: int = 0  # vLLM's derived max_model_len; 0 = max_position_embeddings

    # ---- derived sizes -------------------------------------------------------------------------
    @property
    def is_moe(self) -> bool:
        """True when the MLP is a mixture of experts."""
        return self.num_experts > 0

    @property
    def is_mla(self) -> bool:
        """True when attention caches a compressed latent (DeepSeek MLA)."""
        return self.kv_lora_rank > 0

    @property
    def num_full_layers(self) -> int:
        """Layers with full (unwindowed) attention."""
        return self.num_layers - self.num_sliding_layers

    @property
    def num_moe_layers(self) -> int:
        """Layers whose MLP is a mixture of experts."""
        return self.num_layers - self.num_dense_layers if self.is_moe else 0

    @property
    def q_size(self) -> int:
        """Width of the query projection output (heads × head_dim)."""
        return self.num_heads * self.head_dim

    @property
    def kv_size(self) -> int:
        """Width of one of the K or V projection outputs (kv_heads × head_dim)."""
        return self.num_kv_heads * self.head_dim

    def attention_gemms(self) -> tuple[Gemm, ...]:
        """Per-layer attention projections as (K, N) weight shapes."""
        d = self.hidden_size
        if self.is_mla:
            qk = self.qk_nope_head_dim + self.qk_rope_head_dim
            q = (
                (Gemm("q_a", d, self.q_lora_rank), Gemm("q_b", self.q_lora_rank, self.num_heads * qk))
                if self.q_lora_rank
                else (Gemm("q", d, self.num_heads * qk),)
            )
            return q + (
                Gemm("kv_a", d, self.kv_lora_rank + self.qk_rope_head_dim),
                Gemm("kv_b", self.kv_lora_rank, self.num_heads * (self.qk_nope_head_dim + self.v_head_dim)),
                Gemm("o", self.num_heads * self.v_head_dim, d),
            )
        return (
            Gemm("q", d, self.q_size),
            Gemm("k", d, self.kv_size),
            Gemm("v", d, self.kv_size),
            Gemm("o", self.q_size, d),
        )

    def mlp_gemms(self, moe: bool) -> tuple[Gemm, ...]:
        """Per-layer gated MLP (SwiGLU: gate, up, down) — dense, or experts + shared experts + router."""
        d = self.hidden_size
        if not moe:
            ff = self.dense_intermediate_size or self.intermediate_size
            return (Gemm("gate", d, ff), Gemm("up", d, ff), Gemm("down", ff, d))
        e, k, ff = self.num_experts, self.num_experts_per_tok, self.moe_intermediate_size
        gemms = [
            Gemm("router", d, e),
            Gemm("expert_gate", d, ff, e, k),
            Gemm("expert_up", d, ff, e, k),
            Gemm("expert_down", ff, d, e, k),
        ]
        shared = self.shared_expert_intermediate_size or self.num_shared_experts * ff
        if shared:
            gemms += [Gemm("shared_gate", d, shared), Gemm("shared_up", d, shared), Gemm("shared_down", shared, d)]
        return tuple(gemms)

    def layer_gemms(self) -> tuple[Gemm, ...]:
        """GEMMs of a typical layer (an MoE layer for MoE models)."""
        return self.attention_gemms() + self.mlp_gemms(self.is_moe)

    @property
    def embedding_params(self) -> int:
        """Input embedding + LM head parameters (the head counted once more unless tied)."""
        head = 0 if self.tie_word_embeddings else self.vocab_size * self.hidden_size
        return self.vocab_size * self.hidden_size + head

    def _layer_params(self, moe: bool, active_only: bool) -> int:
        total = 2 * self.hidden_size  # two RMSNorm weight vectors
        for g in self.attention_gemms() + self.mlp_gemms(moe):
            total += g.k * g.n * (g.active if active_only else g.experts)
        return total

    def _params(self, active_only: bool) -> int:
        dense = self.num_layers - self.num_moe_layers
        return (
            dense * self._layer_params(False, False)
            + self.num_moe_layers * self._layer_params(True, active_only)
            + self.embedding_params
            + self.hidden_size  # final norm
        )

    @property
    def param_count(self) -> int:
        """Total parameters (weights of every expert; biases ignored, < 0.1 % for these models)."""
        return self._params(active_only=False)

    @property
    def active_param_count(self) -> int:
        """Parameters one token touches (top-k experts only for MoE)."""
        return self._params(active_only=True)

    # ---- bytes by module class ---------------------------------------------------------------------
    @property
    def served_bytes(self) -> float:
        """Bytes per element of the served dtype (embeddings, norms, layers a quantisation leaves alone)."""
        return self.served_bytes_per_param or self.weight_bytes_per_param

    @property
    def gemm_compute_bytes(self) -> float:
        """Operand width of the GEMM math in bytes (selects the FP8 or the 16-bit tensor-core peak)."""
        return self.compute_bytes_per_param or self.weight_bytes_per_param

    @property
    def lm_head_bytes(self) -> float:
        """Bytes per LM-head weight."""
        return self.lm_head_bytes_per_param or self.weight_bytes_per_param

    def layer_gemm_bytes(self, g: Gemm, layer: int) -> float:
        """Bytes per weight of GEMM g in one layer (router and ignored modules at the served dtype)."""
        if not self.quant_method:
            return self.weight_bytes_per_param
        # vLLM builds MoE routers with quant_config=None (mixtral.py, qwen*_moe.py, deepseek_v2.py, gpt_oss.py).
        if g.name == "router" or (layer, g.name) in self.unquantised:
            return self.served_bytes
        return (self.expert_bytes_per_param or self.weight_bytes_per_param) if g.experts > 1 else self.weight_bytes_per_param

    def gemm_bytes_per_param(self, g: Gemm) -> float:
        """Bytes per weight of GEMM g averaged over the layers that have it (for the latency models)."""
        if not self.quant_method:
            return self.weight_bytes_per_param
        moe = g.experts > 1 or g.name.startswith(("expert_", "shared_", "router"))
        layers = range(self.num_dense_layers, self.num_layers) if moe and self.is_moe else range(self.num_layers)
        if g.name in ("gate", "up", "down") and self.is_moe:
            layers = range(self.num_dense_layers)
        if not layers:
            return self.layer_gemm_bytes(g, 0)
        return sum(self.layer_gemm_bytes(g, i) for i in layers) / len(layers)

    @property
    def weight_bytes(self) -> float:
        """Bytes of all weights: each module class at its stored width, scales and zero points included."""
        if not self.quant_method:
            return self.param_count * self.weight_bytes_per_param
        act = self.served_bytes
        head = 0 if self.tie_word_embeddings else self.vocab_size * self.hidden_size
        total = self.vocab_size * self.hidden_size * act + head * self.lm_head_bytes + self.hidden_size * act
        dense = self.num_layers - self.num_moe_layers
        for i in range(self.num_layers):
            total += 2 * self.hidden_size * act  # two norm weight vectors
            for g in self.attention_gemms() + self.mlp_gemms(i >= dense):
                total += g.k * g.n * g.experts * self.layer_gemm_bytes(g, i)
        return total

    @property
    def max_model_len(self) -> int:
        """vLLM's derived max_model_len (tokens): max_position_embeddings scaled by rope_scaling."""
        return self.derived_max_model_len or self.max_position_embeddings

    @property
    def kv_elements_per_token_per_layer(self) -> int:
        """KV-cache elements one token stores in one layer (K and V, or the MLA latent)."""
        if self.is_mla:
            return self.kv_lora_rank + self.qk_rope_head_dim
        return 2 * self.num_kv_heads * self.head_dim

    @property
    def kv_bytes_per_token(self) -> float:
        """KV-cache bytes one token occupies across all layers of the whole model."""
        return self.num_layers * self.kv_elements_per_token_per_layer * self.kv_bytes_per_element

    def kv_bytes_per_token_per_gpu(self, tp: int) -> float:
        """KV-cache bytes per token on one GPU at tensor parallelism tp (KV heads are sharded, MLA replicated)."""
        if self.is_mla:
            return self.kv_bytes_per_token
        # vLLM replicates KV heads when tp > num_kv_heads, so each GPU holds at least one head.
        heads_per_gpu = max(1, self.num_kv_heads // tp) if tp <= self.num_kv_heads else 1
        return self.num_layers * 2 * heads_per_gpu * self.head_dim * self.kv_bytes_per_element

    def check_tp(self, tp: int) -> None:
        """Raise ConfigError unless attention heads split evenly over tp GPUs (vLLM's rule)."""
        if tp < 1:
            raise ConfigError(f"tensor_parallel_size={tp}: must be >= 1")
        if self.num_heads % tp:
            raise ConfigError(
                f"{self.name}: num_attention_heads={self.num_heads} is not divisible by tensor_parallel_size={tp}"
            )
        kv = self.num_kv_heads
        if not self.is_mla and (kv % tp if tp <= kv else tp % kv):
            raise ConfigError(
                f"{self.name}: num_key_value_heads={kv} and tensor_parallel_size={tp} do not divide one another"
            )


# ---- reading config.json ----------------------------------------------------------------------

_ALIASES: dict[str, tuple[str, ...]] = {
    "num_hidden_layers": ("num_hidden_layers", "n_layer", "num_layers", "n_layers"),
    "hidden_size": ("hidden_size", "n_embd", "d_model", "dim"),
    "num_attention_heads": ("num_attention_heads", "n_head", "num_heads", "n_heads"),
    "num_key_value_heads": ("num_key_value_heads", "num_kv_heads", "multi_query_group_num", "n_kv_heads"),
    "intermediate_size": ("intermediate_size", "ffn_hidden_size", "n_inner", "ffn_dim"),
    "max_position_embeddings": ("max_position_embeddings", "n_positions", "max_seq_len", "seq_length"),
}


def short(value: Any, limit: int = 60) -> str:
    """repr() of a value cut to one short line, for error messages."""
    text = " ".join(repr(value).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _get(cfg: dict[str, Any], key: str, where: str, *, required: bool = True, default: Any = None) -> Any:
    for alias in _ALIASES.get(key, (key,)):
        if alias in cfg and cfg[alias] is not None:
            return cfg[alias]
    if required:
        raise ConfigError(f"{where}: missing required field '{key}'")
    return default


def _int(cfg: dict[str, Any], key: str, where: str, *, required: bool = True, default: int = 0, minimum: int = 1) -> int:
    value = _get(cfg, key, where, required=required, default=default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (isinstance(value, float) and not value.is_integer()):
        raise ConfigError(f"{where}: field '{key}'={value!r} must be an integer")
    value = int(value)
    if value < minimum and (required or value != default):
        raise ConfigError(f"{where}: field '{key}'={value} must be >= {minimum}")
    if value > MAX_CONFIG_INT:
        raise ConfigError(f"{where}: field '{key}'={value} must be <= {MAX_CONFIG_INT}")
    return value


# Keys vLLM reads for the longest context (_get_and_verify_max_len), smallest wins.
_MAX_LEN_KEYS = ("max_position_embeddings", "n_positions", "max_seq_len", "seq_length", "max_sequence_length", "max_seq_length", "seq_len")

# HF module names of each GEMM inside a decoder layer, matched against ignore lists.
_MODULE_NAMES: dict[str, tuple[str, ...]] = {
    "q": ("self_attn.q_proj",), "k": ("self_attn.k_proj",), "v": ("self_attn.v_proj",), "o": ("self_attn.o_proj",),
    "q_a": ("self_attn.q_a_proj",), "q_b": ("self_attn.q_b_proj",), "kv_a": ("self_attn.kv_a_proj_with_mqa",),
    "kv_b": ("self_attn.kv_b_proj",),
    "gate": ("mlp.gate_proj", "feed_forward.gate_proj"), "up": ("mlp.up_proj", "feed_forward.up_proj"),
    "down": ("mlp.down_proj", "feed_forward.down_proj"),
    "expert_gate": ("mlp.experts.0.gate_proj", "block_sparse_moe.experts.0.w1", "feed_forward.experts.gate_up_proj", "mlp.experts.gate_up_proj"),
    "expert_up": ("mlp.experts.0.up_proj", "block_sparse_moe.experts.0.w3", "feed_forward.experts.gate_up_proj", "mlp.experts.gate_up_proj"),
    "expert_down": ("mlp.experts.0.down_proj", "block_sparse_moe.experts.0.w2", "feed_forward.experts.down_proj", "mlp.experts.down_proj"),
    "shared_gate": ("mlp.shared_experts.gate_proj", "mlp.shared_expert.gate_proj", "feed_forward.shared_expert.gate_proj"),
    "shared_up": ("mlp.shared_experts.up_proj", "mlp.shared_expert.up_proj", "feed_forward.shared_expert.up_proj"),
    "shared_down": ("mlp.shared_experts.down_proj", "mlp.shared_expert.down_proj", "feed_forward.shared_expert.down_proj"),
}
_LAYER_PREFIXES = ("model.layers.{i}.", "language_model.model.layers.{i}.", "model.language_model.layers.{i}.")


def derived_max_len(cfg: dict[str, Any], where: str) -> int:
    """vLLM's derived max_model_len (_get_and_verify_max_len): the smallest length key, times the rope factor."""
    lengths = [cfg[k] for k in _MAX_LEN_KEYS if isinstance(cfg.get(k), int) and not isinstance(cfg.get(k), bool) and cfg[k] > 0]
    derived = float(min(lengths)) if lengths else 2048.0  # vLLM's default when no key is present
    rs = cfg.get("rope_scaling")
    # Gemma-3's max_position_embeddings is already RoPE-scaled: vLLM skips the factor for "gemma3" model types.
    if "gemma3" in str(cfg.get("model_type", "")):
        rs = None
    if isinstance(rs, dict) and isinstance(rs.get("factor"), (int, float)) and not isinstance(rs.get("factor"), bool):
        kind = str(rs.get("rope_type", rs.get("type", "")))
        # vLLM leaves su/longrope/llama3 lengths alone; yarn scales original_max_position_embeddings.
        if kind not in ("su", "longrope", "llama3", "mrope", "default"):
            if kind == "yarn" and isinstance(rs.get("original_max_position_embeddings"), int):
                derived = float(rs["original_max_position_embeddings"])
            derived *= float(rs["factor"])
    if not math.isfinite(derived) or derived < 1 or derived > MAX_CONFIG_INT:
        raise ConfigError(f"{where}: derived max_model_len {derived!r} (max_position_embeddings x rope_scaling.factor) is out of range")
    return int(derived)


def _unquantised(fmt: quant.WeightFormat, spec: "ModelSpec") -> frozenset[tuple[int, str]]:
    """(layer, gemm) pairs an ignore list keeps at the served dtype."""
    if not fmt.ignore:
        return frozenset()
    out = set()
    dense = spec.num_layers - spec.num_moe_layers
    for i in range(spec.num_layers):
        for g in spec.attention_gemms() + spec.mlp_gemms(i >= dense):
            names = [p.format(i=i) + m for p in _LAYER_PREFIXES for m in _MODULE_NAMES.get(g.name, ())]
            if any(quant.matches(n, fmt.ignore) for n in names):
                out.add((i, g.name))
    return frozenset(out)


def spec_from_config(cfg: dict[str, Any], name: str, where: str = "config.json", *, dtype: str = "auto",
                     quantization: str | None = None, kv_cache_dtype: str = "auto") -> ModelSpec:
    """Build a ModelSpec from a parsed HF config dict as vLLM would serve it (`--dtype`, `--quantization`,
    `--kv-cache-dtype`); configs nested under `text_config` are pivoted."""
    if not isinstance(cfg, dict):
        raise ConfigError(f"{where}: expected a JSON object, got {type(cfg).__name__}")
    text = cfg.get("text_config")
    if isinstance(text, dict):
        cfg = {**{k: v for k, v in cfg.items() if k != "text_config"}, **text}
    layers = _int(cfg, "num_hidden_layers", where)
    hidden = _int(cfg, "hidden_size", where)
    heads = _int(cfg, "num_attention_heads", where)
    kv_heads = _int(cfg, "num_key_value_heads", where, required=False, default=heads)
    # GQA: each KV head serves num_attention_heads / num_key_value_heads query heads (HF LlamaAttention's rule).
    if heads % kv_heads:
        raise ConfigError(f"{where}: num_key_value_heads={kv_heads} does not divide num_attention_heads={heads}")
    head_dim = cfg.get("head_dim")
    if head_dim is None:
        if hidden % heads:
            raise ConfigError(f"{where}: hidden_size={hidden} is not divisible by num_attention_heads={heads} and no head_dim is given")
        head_dim = hidden // heads
    head_dim = _int({"head_dim": head_dim}, "head_dim", where)
    # Every architecture servesim models (dense, MoE, MLA) has an MLP width and a vocabulary: a missing one is refused,
    # not guessed (4 x hidden, 32000 would silently mis-size the weights).
    ff = _int(cfg, "intermediate_size", where)
    vocab = _int(cfg, "vocab_size", where)
    config_dtype = str(cfg.get("torch_dtype") or cfg.get("dtype") or "bfloat16").replace("torch.", "")
    if config_dtype not in DTYPE_BYTES:
        raise ConfigError(f"{where}: field 'torch_dtype'={config_dtype!r} is not one of {', '.join(sorted(DTYPE_BYTES))}")
    model_type = str(cfg.get("model_type", "") or "")
    served = quant.served_dtype(config_dtype, dtype, model_type, where)
    act = quant.SERVED_DTYPES[served]
    fmt = quant.weight_format(cfg, quantization, act, where)
    kv_dtype, kv_bytes = quant.kv_cache_bytes(kv_cache_dtype, act, cfg.get("quantization_config"), where)
    tied_default = model_type in quant.TIED_BY_DEFAULT  # the HF config class's default when the key is absent
    experts = _int(cfg, "num_local_experts", where, required=False, default=0, minimum=0) or _int(
        cfg, "num_experts", where, required=False, default=0, minimum=0
    ) or _int(cfg, "n_routed_experts", where, required=False, default=0, minimum=0)
    topk = _int(cfg, "num_experts_per_tok", where, required=False, default=0, minimum=0) if experts else 0
    moe_ff = _int(cfg, "moe_intermediate_size", where, required=False, default=0, minimum=0) or (ff if experts else 0)
    shared_n = _int(cfg, "n_shared_experts", where, required=False, default=0, minimum=0)
    shared_ff = _int(cfg, "shared_expert_intermediate_size", where, required=False, default=0, minimum=0)
    dense_layers, dense_ff = 0, 0
    if experts:
        if str(cfg.get("model_type", "")).startswith("llama4"):
            # Llama 4: every `interleave_moe_layer_step`-th layer is MoE with one shared expert of width intermediate_size.
            step = _int(cfg, "interleave_moe_layer_step", where, required=False, default=1)
            dense_layers = layers - layers // step
            dense_ff = _int(cfg, "intermediate_size_mlp", where, required=False, default=ff)
            shared_ff = shared_ff or ff
        else:
            dense_layers = _int(cfg, "first_k_dense_replace", where, required=False, default=0, minimum=0)
            dense_ff = ff
        if topk < 1 or topk > experts:
            raise ConfigError(f"{where}: field 'num_experts_per_tok'={topk} must be between 1 and {experts}")
    kv_lora = _int(cfg, "kv_lora_rank", where, required=False, default=0, minimum=0)
    window, sliding = _sliding_layers(cfg, layers, where)
    spec = ModelSpec(
        name=name,
        num_layers=layers,
        hidden_size=hidden,
        num_heads=heads,
        num_kv_heads=kv_heads,
        head_dim=head_dim,
        intermediate_size=ff,
        vocab_size=vocab,
        tie_word_embeddings=bool(cfg.get("tie_word_embeddings", tied_default)),
        dtype=served,
        weight_bytes_per_param=fmt.linear,
        kv_bytes_per_element=kv_bytes,
        max_position_embeddings=_int(cfg, "max_position_embeddings", where, required=False, default=4096),
        num_experts=experts,
        num_experts_per_tok=topk,
        moe_intermediate_size=moe_ff,
        num_shared_experts=shared_n,
        shared_expert_intermediate_size=shared_ff,
        num_dense_layers=dense_layers,
        dense_intermediate_size=dense_ff,
        kv_lora_rank=kv_lora,
        q_lora_rank=_int(cfg, "q_lora_rank", where, required=False, default=0, minimum=0) if kv_lora else 0,
        qk_rope_head_dim=_int(cfg, "qk_rope_head_dim", where, required=False, default=0, minimum=0) if kv_lora else 0,
        qk_nope_head_dim=_int(cfg, "qk_nope_head_dim", where, required=False, default=0, minimum=0) if kv_lora else 0,
        v_head_dim=_int(cfg, "v_head_dim", where, required=False, default=0, minimum=0) if kv_lora else 0,
        sliding_window=window,
        num_sliding_layers=sliding,
        source=where,
        model_type=model_type,
        quant_method=fmt.method,
        served_bytes_per_param=act,
        expert_bytes_per_param=fmt.experts,
        lm_head_bytes_per_param=fmt.lm_head,
        compute_bytes_per_param=fmt.compute,
        kv_cache_dtype=kv_dtype,
        derived_max_model_len=derived_max_len(cfg, where),
    )
    if fmt.ignore:
        spec = replace(spec, unquantised=_unquantised(fmt, spec))
    return spec


def _sliding_layers(cfg: dict[str, Any], layers: int, where: str) -> tuple[int, int]:
    """(sliding_window, number of sliding-window layers) as vLLM reads them from config.json."""
    window = _int(cfg, "sliding_window", where, required=False, default=0, minimum=0)
    if not window or cfg.get("use_sliding_window") is False:
        return 0, 0  # Qwen2/Qwen3 carry a sliding_window but `use_sliding_window: false` turns it off (HF, vLLM)
    types = cfg.get("layer_types")
    if types is not None:
        # Transformers >= 4.53: one entry per layer, "sliding_attention" or "full_attention" (Gemma-2/3, gpt-oss).
        if not isinstance(types, list) or len(types) != layers or not set(types) <= {"sliding_attention", "full_attention"}:
            raise ConfigError(f"{where}: field 'layer_types' must list 'sliding_attention' or 'full_attention' "
                              f"for each of the {layers} layers")
        return window, types.count("sliding_attention")
    pattern = cfg.get("sliding_window_pattern")
    if isinstance(pattern, int) and not isinstance(pattern, bool) and pattern > 0:
        # Gemma-3: every `sliding_window_pattern`-th layer (i + 1 ≡ 0 mod pattern) is global, the rest local.
        return window, layers - layers // pattern
    if str(cfg.get("model_type", "")) == "gemma2":
        # Gemma-2: layers alternate local (even index) and global (odd index) (HF modeling_gemma2, vLLM gemma2.py).
        return window, (layers + 1) // 2
    return window, layers  # Mistral v0.1 / Mixtral-style: every layer uses the window (vLLM keeps it on by default)


def load_model(model: str | Path, *, dtype: str = "auto", quantization: str | None = None,
               kv_cache_dtype: str = "auto") -> ModelSpec:
    """Resolve a bundled name, a Hugging Face id or a path (folder or config.json) to a ModelSpec, served
    with vLLM's --dtype, --quantization and --kv-cache-dtype."""
    opts = {"dtype": dtype, "quantization": quantization, "kv_cache_dtype": kv_cache_dtype}
    text = str(model)
    if not text.strip():
        raise ConfigError(f"--model {model!r}: expected a bundled model name, a Hugging Face id, a config.json path or a ModelSpec")
    path = Path(text).expanduser()
    if path.is_dir():
        path = path / "config.json"
    if path.is_file():
        return _read_config(path, path.parent.name if path.name == "config.json" else path.stem, opts)
    if path.suffix == ".json" or text.startswith((".", "/", "~")):
        raise ConfigError(f"--model {text}: no such file or folder")
    name = bundled.resolve_model_name(text)
    return _read_config(bundled.model_config_path(name), name, opts)


def _read_config(path: Path, name: str, opts: dict[str, Any]) -> ModelSpec:
    return spec_from_config(read_json(path, str(path)), name, str(path), **opts)
