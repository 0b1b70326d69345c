"""vLLM server logs: the engine arguments and the KV block count the server started with.

Log lines read (strings from vLLM's source): vllm/entrypoints/utils.py log_non_default_args
"non-default args: {...}" (a Python dict literal); vllm/v1/engine/core.py "Initializing a V1 LLM engine
(vX) with config: key=value, ..."; vllm/v1/core/kv_cache_utils.py "GPU KV cache size: N tokens" (N with
thousands commas); the V0 engine's "# GPU blocks: N, # CPU blocks: M".
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from servesim.errors import WorkloadError

NON_DEFAULT = re.compile(r"non-default args: (\{.*\})\s*$")
V1_CONFIG = re.compile(r"Initializing a V1 LLM engine \(v?([^)]*)\) with config: (.*)$")
KV_TOKENS = re.compile(r"GPU KV cache size: ([\d,]+) tokens")
GPU_BLOCKS = re.compile(r"# GPU blocks: (\d+)")
# non-default args key -> servesim engine key (vLLM's own names; only those servesim models).
ARG_KEYS = {"max_num_seqs": "max_num_seqs", "max_num_batched_tokens": "max_num_batched_tokens",
            "block_size": "block_size", "enable_prefix_caching": "enable_prefix_caching",
            "max_model_len": "max_model_len", "gpu_memory_utilization": "gpu_memory_utilization",
            "long_prefill_token_threshold": "long_prefill_token_threshold", "async_scheduling": "async_scheduling",
            "num_gpu_blocks_override": "num_gpu_blocks_override",
            "disable_hybrid_kv_cache_manager": "disable_hybrid_kv_cache_manager"}
# "with config:" key -> servesim engine key, for the ones it prints (it prints neither max_num_seqs nor block_size).
CONFIG_KEYS = {"enable_prefix_caching": "enable_prefix_caching", "max_seq_len": "max_model_len"}
DEFAULT_BLOCK_SIZE = 16  # vLLM's default KV block size on CUDA (CacheConfig.block_size)


@dataclass(frozen=True, slots=True)
class VllmLogConfig:
    """What a vLLM log says about the engine: engine kwargs (servesim names), TP, model, version."""

    engine: dict[str, Any] = field(default_factory=dict)
    tensor_parallel_size: int | None = None
    model: str | None = None
    version: str | None = None
    notes: tuple[str, ...] = ()
    # The logged "GPU KV cache size" in tokens when num_gpu_blocks came from it (vLLM logs num_blocks // number of
    # KV cache groups x block_size, so a hybrid model's pool holds that many blocks per group: validation/direct.py).
    kv_cache_tokens: int | None = None


def _config_pairs(text: str) -> dict[str, str]:
    """Top-level key=value pairs of vLLM's 'with config:' line (nested parentheses/brackets kept whole)."""
    out: dict[str, str] = {}
    depth, start = 0, 0
    for i, ch in enumerate(text + ","):
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == "," and depth == 0:
            key, _, value = text[start:i].strip().partition("=")
            out[key.strip()] = value.strip().strip("'")
            start = i + 1
    return out


def _literal(value: str) -> Any:
    """A config value as Python: True/False/None/numbers, else the string."""
    try:
        return ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return value


def read_vllm_log(path: str | Path) -> VllmLogConfig:
    """Engine arguments and num_gpu_blocks_override from a vLLM server log (the last start-up in the file wins)."""
    p = Path(path)
    try:
        text = p.read_bytes().decode("utf-8", errors="replace")
    except OSError as exc:
        raise WorkloadError(f"--vllm-log {p}: cannot read ({exc.__class__.__name__})") from None
    engine: dict[str, Any] = {}
    tp = model = version = None
    kv_tokens = blocks = None
    for line in text.splitlines():
        if m := NON_DEFAULT.search(line):
            try:
                args = ast.literal_eval(m.group(1))
            except (ValueError, SyntaxError):
                raise WorkloadError(f"--vllm-log {p}: 'non-default args' line is not a dict literal") from None
            engine.update({ARG_KEYS[k]: v for k, v in args.items() if k in ARG_KEYS})
            tp = args.get("tensor_parallel_size", tp)
            model = args.get("model", model)
        elif m := V1_CONFIG.search(line):
            version = m.group(1)
            pairs = _config_pairs(m.group(2))
            for k, key in CONFIG_KEYS.items():
                if k in pairs:
                    engine.setdefault(key, _literal(pairs[k]))
            if "tensor_parallel_size" in pairs:
                tp = int(pairs["tensor_parallel_size"])
            model = model or pairs.get("model")
        elif m := KV_TOKENS.search(line):
            kv_tokens = int(m.group(1).replace(",", ""))
        elif m := GPU_BLOCKS.search(line):
            blocks = int(m.group(1))
    if not engine and kv_tokens is None and blocks is None and version is None:
        raise WorkloadError(f"--vllm-log {p}: no vLLM start-up lines found ('non-default args', "
                            "'Initializing a V1 LLM engine', 'GPU KV cache size', '# GPU blocks')")
    notes = []
    from_tokens = blocks is None and kv_tokens is not None
    if blocks is None and kv_tokens is not None:
        bs = int(engine.get("block_size", DEFAULT_BLOCK_SIZE))
        blocks = kv_tokens // bs  # vLLM logs num_blocks × block_size (per KV group) as the cache size in tokens
        notes.append(f"num_gpu_blocks {blocks} = GPU KV cache size {kv_tokens} tokens / block_size {bs}")
    if blocks is not None:
        engine.setdefault("num_gpu_blocks_override", blocks)
    return VllmLogConfig(engine, tp, model, version, tuple(notes), kv_tokens if from_tokens else None)
