"""Where the package's bundled data lives (model configs, kernel tables, hardware presets, suites)."""

from __future__ import annotations

import difflib
from functools import lru_cache
from pathlib import Path

from servesim.errors import ConfigError

DATA_DIR = Path(__file__).resolve().parent.parent / "data"

# Short names users type, mapped to bundled folder names.
MODEL_ALIASES: dict[str, str] = {
    "llama-2-7b": "llama-2-7b-hf",
    "llama2-7b": "llama-2-7b-hf",
    "llama-2-70b": "llama-2-70b-hf",
    "llama2-70b": "llama-2-70b-hf",
    "codellama-34b": "codellama-34b-instruct-hf",
    "meta-llama-3.1-8b": "llama-3.1-8b",
    "meta-llama-3.1-8b-instruct": "llama-3.1-8b-instruct",
    "meta-llama-3.1-70b-instruct": "llama-3.1-70b-instruct",
    "qwen2.5-7b": "qwen2.5-7b-instruct",
    "mixtral-8x7b": "mixtral-8x7b-v0.1",
}


@lru_cache(maxsize=1)
def bundled_models() -> tuple[str, ...]:
    """Names of the bundled model configs (folder names under data/models)."""
    return tuple(sorted(p.parent.name for p in (DATA_DIR / "models").glob("*/config.json")))


def resolve_model_name(text: str) -> str:
    """Map a bundled name, an alias or a Hugging Face id (org/name, any case) to a bundled name."""
    names = bundled_models()
    key = text.strip().lower().rstrip("/")
    candidates = [key, key.rsplit("/", 1)[-1]]
    for cand in candidates:
        if cand in names:
            return cand
        if cand in MODEL_ALIASES:
            return MODEL_ALIASES[cand]
    close = difflib.get_close_matches(candidates[-1], list(names) + list(MODEL_ALIASES), n=1, cutoff=0.6)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    raise ConfigError(
        f"--model {text}: not a bundled model, a known Hugging Face id, or a path to config.json{hint} "
        f"(see `servesim models`)"
    )


def model_config_path(name: str) -> Path:
    """Path of a bundled model's config.json."""
    return DATA_DIR / "models" / name / "config.json"


def kernel_dir(gpu: str) -> Path:
    """Folder of the measured kernel tables for a GPU family (e.g. 'h100')."""
    return DATA_DIR / "kernels" / gpu
