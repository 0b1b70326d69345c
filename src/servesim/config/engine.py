"""vLLM engine arguments under vLLM's own names, with vLLM V1's defaults for a given GPU."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from servesim.config.speculative import SpeculativeConfig
from servesim.errors import ConfigError


# The KV block sizes vLLM offers (vllm/config/cache.py, `BlockSize = Literal[1, 8, 16, 32, 64, 128, 256]`;
# vLLM <= 0.10 stopped at 128). engine_config() refuses others; EngineConfig itself takes any size >= 1 so tests
# can drive the scheduler with tiny blocks.
VLLM_BLOCK_SIZES = (1, 8, 16, 32, 64, 128, 256)
# The LoRA ranks vLLM offers (vllm/config/lora.py, `MaxLoRARanks = Literal[1, 8, 16, 32, 64, 128, 256, 320, 512]`).
VLLM_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)


class EngineConfig(BaseModel):
    """The vLLM engine arguments servesim models (names as in `vllm serve --help`)."""

    # strict: `max_num_seqs: true` in a YAML file is refused (a boolean is not a number), as is "256".
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    tensor_parallel_size: int = Field(1, ge=1)
    pipeline_parallel_size: int = Field(1, ge=1)  # layers split over stages (latency/parallel.py)
    enable_expert_parallel: bool = False  # MoE experts spread over TP × DP ranks instead of TP-sharded
    # vLLM V1 OpenAI server defaults on >=70 GiB GPUs (H100/H200/B200): 1024 seqs, 8192 tokens;
    # on smaller GPUs and A100: 256 seqs, 2048 tokens (vllm/engine/arg_utils.py, _set_default_args).
    max_num_seqs: int | None = Field(None, ge=1)
    max_num_batched_tokens: int | None = Field(None, ge=1)
    block_size: int = Field(16, ge=1)
    gpu_memory_utilization: float = Field(0.9, gt=0.0, le=1.0)
    num_gpu_blocks_override: int | None = Field(None, ge=1)
    enable_prefix_caching: bool = True  # V1 default: on
    enable_chunked_prefill: bool = True  # V1 always chunks prefills through the token budget
    long_prefill_token_threshold: int = Field(0, ge=0)  # 0 = no per-request chunk cap
    max_model_len: int | None = Field(None, ge=1)  # None = the model's max_position_embeddings
    # vLLM schedules step k+1 while step k runs; on by default since vLLM 0.14 (PR #27614), off in 0.11.
    async_scheduling: bool = True
    # LoRA (vllm/config/lora.py defaults): max_loras adapters per batch and GPU slots, max_lora_rank padded rank of
    # every slot, max_cpu_loras adapters cached in CPU memory (None = max_loras, vLLM's default).
    enable_lora: bool = False
    max_loras: int = Field(1, ge=1)
    max_lora_rank: int = Field(16, ge=1)
    max_cpu_loras: int | None = Field(None, ge=1)
    # vLLM --kv-offloading-size (GiB, total over all TP x PP ranks; 0 = off) and --kv-offloading-backend:
    # CPU KV offload tier (engine/offload.py). Both backends are modelled as the native connector's LRU tier.
    # Capped at 65,536 GiB (64 TiB) in all: more host memory than any server has (vLLM would fail to pin it).
    kv_offloading_size: float = Field(0.0, ge=0.0, le=65536.0, allow_inf_nan=False)
    kv_offloading_backend: Literal["native", "lmcache"] = "native"
    # vLLM --disable-hybrid-kv-cache-manager: models with full and sliding-window layers keep every layer's KV for the
    # whole sequence in one block table (vLLM unify_hybrid_kv_cache_specs) instead of one table per group (engine/kv_hybrid.py).
    disable_hybrid_kv_cache_manager: bool = False
    # vLLM --speculative-config (config/speculative.py); None = off. Build it with parse_speculative_config().
    speculative_config: SpeculativeConfig | None = None

    def __init__(self, **data: object) -> None:
        """Validate vLLM engine arguments; a bad one raises a one-line ConfigError naming the field and the value."""
        from pydantic import ValidationError

        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise _config_error(exc) from None

    @model_validator(mode="after")
    def _check(self) -> "EngineConfig":
        if (
            self.max_num_batched_tokens is not None
            and self.max_model_len is not None
            and not self.enable_chunked_prefill
            and self.max_num_batched_tokens < self.max_model_len
        ):
            raise ValueError(
                f"max_num_batched_tokens={self.max_num_batched_tokens} is below "
                f"max_model_len={self.max_model_len} with chunked prefill off"
            )
        if self.max_lora_rank not in VLLM_LORA_RANKS:
            raise ValueError(f"max_lora_rank={self.max_lora_rank}: not a rank vLLM offers (allowed: {', '.join(map(str, VLLM_LORA_RANKS))})")
        if self.max_cpu_loras is not None and self.max_cpu_loras < self.max_loras:
            # vLLM LoRAConfig: "max_cpu_loras (M) must be >= max_loras (N)".
            raise ValueError(f"max_cpu_loras={self.max_cpu_loras} must be >= max_loras={self.max_loras}")
        return self

    @property
    def cpu_loras(self) -> int:
        """Adapters the CPU LRU cache holds (vLLM: max_cpu_loras, default max_loras)."""
        return self.max_cpu_loras if self.max_cpu_loras is not None else self.max_loras

    def resolved(self, *, gpu_memory_gib: float, gpu_name: str, model_max_len: int) -> "EngineConfig":
        """A copy with every None default filled the way vLLM V1 fills it for this GPU and model."""
        big_gpu = gpu_memory_gib >= 70 and "a100" not in gpu_name.lower()
        updates: dict[str, int] = {}
        if self.max_num_seqs is None:
            updates["max_num_seqs"] = 1024 if big_gpu else 256
        if self.max_num_batched_tokens is None:
            updates["max_num_batched_tokens"] = 8192 if big_gpu else 2048
        if self.max_model_len is None:
            updates["max_model_len"] = model_max_len
        return self.model_copy(update=updates)


def engine_config(**kwargs: object) -> EngineConfig:
    """Build an EngineConfig, turning pydantic's error into a one-line ConfigError."""
    bs = kwargs.get("block_size", 16)
    if not isinstance(bs, bool) and isinstance(bs, int) and bs >= 1 and bs not in VLLM_BLOCK_SIZES:
        raise ConfigError(f"engine: block_size={bs}: not a block size vLLM offers (allowed: {', '.join(map(str, VLLM_BLOCK_SIZES))})")
    return EngineConfig(**kwargs)  # type: ignore[arg-type]


def _config_error(exc: Any) -> ConfigError:
    """pydantic's first error as 'engine: field=value: message'."""
    err = exc.errors()[0]
    field = ".".join(str(p) for p in err.get("loc", ())) or "engine"
    msg = str(err.get("msg")).removeprefix("Value error, ")
    if isinstance(err.get("input"), bool) and err.get("type") in ("int_type", "float_type"):
        msg += " (true/false is not a number)"
    if err.get("type") == "value_error":
        return ConfigError(f"engine: {msg}")
    return ConfigError(f"engine: {field}={err.get('input')!r}: {msg}")
