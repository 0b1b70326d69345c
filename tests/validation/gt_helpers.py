"""Helpers for the validation tests (imported by name: pytest puts this folder on sys.path)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

DATA = Path(__file__).resolve().parent / "data"
SHARED = Path(__file__).resolve().parents[3] / "shared"

CODEGEN = "20260218-150956-codellama-34b-tp2-codegen"
REASONING = "20260217-170634-llama-2-7b-tp1-reasoning"


def write_manifest(folder: Path, ground_truth: dict[str, Any], **overrides: Any) -> Path:
    """Write an experiment.yaml in folder (a valid one unless overrides say otherwise); returns the folder."""
    doc: dict[str, Any] = {
        "name": "test-exp",
        "model": "codellama-34b-instruct-hf",
        "hardware": "H100",
        "tensor_parallel_size": 2,
        "engine": {"max_num_seqs": 128, "max_num_batched_tokens": 2048, "block_size": 16,
                   "num_gpu_blocks": 26602, "enable_prefix_caching": True, "max_model_len": 4096},
        "ground_truth": ground_truth,
    }
    for key, value in overrides.items():
        if value is None:
            doc.pop(key, None)
        else:
            doc[key] = value
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "experiment.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    return folder
