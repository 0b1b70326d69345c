"""ShareGPT conversations (JSON list of `{"conversations": [{"from": ..., "value": text}, ...]}`) as request lengths.

As vLLM's ShareGPT benchmark dataset does (vllm/benchmarks/datasets.py ShareGPTDataset): entries with fewer
than two turns are dropped; the first turn is the prompt, the second the completion whose length is the
output. ShareGPT has no times: arrivals come from the workload's arrival process (--rate/--arrival/--profile).
"""

from __future__ import annotations

import json
import math
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable

from servesim.engine.request import RequestSpec
from servesim.errors import WorkloadError
from servesim.workload.traces import Trace, _read_text

__all__ = ["CHARS_PER_TOKEN", "ESTIMATE_NOTE", "char_estimate", "read_sharegpt", "tokenizer_counter"]

# Without a tokenizer: ~4 characters of English text per token (OpenAI, "What are tokens and how to count them").
CHARS_PER_TOKEN = 4.0
ESTIMATE_NOTE = ("token counts estimated as ceil(characters / 4) (OpenAI's ~4 characters per English token); "
                 "pass --tokenizer tokenizer.json with servesim[tokenizer] installed for exact counts")


def char_estimate(text: str) -> int:
    """Estimated tokens of a text: ceil(characters / CHARS_PER_TOKEN), at least 1."""
    return max(1, math.ceil(len(text) / CHARS_PER_TOKEN))


@lru_cache(maxsize=4)
def tokenizer_counter(path: str) -> Callable[[str], int]:
    """A token counter from a local Hugging Face tokenizer.json (the `tokenizers` library, servesim[tokenizer])."""
    p = Path(path)
    if not p.is_file():
        raise WorkloadError(f"--tokenizer {path}: no such file; give a local tokenizer.json")
    try:
        from tokenizers import Tokenizer
    except ImportError:
        raise WorkloadError(f"--tokenizer {path}: needs the `tokenizers` library: pip install 'servesim[tokenizer]'") from None
    try:
        tok = Tokenizer.from_file(str(p))
    except Exception as exc:  # tokenizers raises its own Exception type for a bad file
        raise WorkloadError(f"--tokenizer {path}: not a tokenizer.json ({str(exc)[:80]})".replace("\n", " ")) from None
    # encode() adds the tokenizer's special tokens (BOS), as vLLM's benchmark counts tokenizer(text).input_ids.
    return lambda text: max(1, len(tok.encode(text).ids))


def _turn_text(turn: Any, where: str) -> str:
    """The text of one conversation turn, or a WorkloadError naming the entry."""
    if not isinstance(turn, dict) or not isinstance(turn.get("value"), str):
        raise WorkloadError(f"{where}: expected an object with a string 'value'")
    return turn["value"]


def read_sharegpt(path: str | Path, *, tokenizer: str | None = None) -> Trace:
    """Request lengths from a ShareGPT JSON file (first turn = prompt, second = output); all arrivals 0 (untimed)."""
    p = Path(path)
    try:
        doc = json.loads(_read_text(p))
    except json.JSONDecodeError as exc:
        raise WorkloadError(f"{p}: not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno}; truncated file?)") from None
    if not isinstance(doc, list):
        raise WorkloadError(f"{p}: expected a JSON list of ShareGPT entries ({{\"conversations\": [...]}}), got {type(doc).__name__}")
    count = tokenizer_counter(str(tokenizer)) if tokenizer is not None else char_estimate
    specs: list[RequestSpec] = []
    dropped = 0
    for i, entry in enumerate(doc):
        where = f"{p}: [{i}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("conversations"), list):
            raise WorkloadError(f"{where}: expected an object with a 'conversations' list")
        turns = entry["conversations"]
        if len(turns) < 2:
            dropped += 1  # vLLM's ShareGPTDataset keeps only entries with at least two turns
            continue
        prompt = _turn_text(turns[0], f"{where}.conversations[0]")
        completion = _turn_text(turns[1], f"{where}.conversations[1]")
        specs.append(RequestSpec(len(specs), 0.0, count(prompt), count(completion)))
    if not specs:
        raise WorkloadError(f"{p}: no ShareGPT entry has two turns; nothing to replay")
    notes = [] if tokenizer is not None else [ESTIMATE_NOTE]
    if dropped:
        notes.append(f"{dropped} entries with fewer than two turns dropped (as vLLM's ShareGPT dataset does)")
    return Trace(tuple(specs), str(p), dropped, tuple(notes), {"format": "sharegpt", "timed": False})
