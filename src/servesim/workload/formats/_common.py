"""Shared pieces of the native-format readers: the imported request/run dataclasses, JSON reading, and
pydantic errors turned into one line naming the file and the field."""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ValidationError

from servesim.engine.request import RequestSpec
from servesim.errors import WorkloadError

M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True, slots=True)
class ImportedRequest:
    """One request as another tool recorded it: send time (s from the first send), tokens, measured latencies (ms)."""

    arrival_s: float
    input_tokens: int
    output_tokens: int
    ok: bool
    ttft_ms: float | None = None
    e2e_ms: float | None = None
    stage: int = 0
    prefix_group: str | None = None
    prefix_tokens: int = 0


@dataclass(frozen=True, slots=True)
class ImportedRun:
    """A run read from another tool's file: its requests in send order, how load was offered, and what it says."""

    path: str
    format: str
    requests: tuple[ImportedRequest, ...]
    mode: Literal["open", "closed"] = "open"
    concurrency: int | None = None
    stage_names: tuple[str, ...] = ("all",)
    aggregates: dict[str, float] = field(default_factory=dict)  # the tool's own summary numbers (ms, req/s)
    notes: tuple[str, ...] = ()  # one line per reconstruction or adjustment the reader made

    def specs(self) -> tuple[RequestSpec, ...]:
        """RequestSpecs to replay (ids 0..n-1; closed-loop client = i % concurrency); failed requests are kept as load."""
        out = []
        for i, r in enumerate(self.requests):
            client = (i % self.concurrency) if (self.mode == "closed" and self.concurrency) else None
            group = r.prefix_group if r.prefix_tokens > 0 else None
            out.append(RequestSpec(i, r.arrival_s, max(1, r.input_tokens), max(1, r.output_tokens), group,
                                   r.prefix_tokens if group else 0, client, r.stage))
        return tuple(out)


def read_json(path: Path) -> Any:
    """The parsed JSON of path (.gz read transparently), or a one-line WorkloadError."""
    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
    except (OSError, EOFError) as exc:
        raise WorkloadError(f"{path}: cannot read ({exc.__class__.__name__}: {exc})".replace("\n", " ")) from None
    try:
        return json.loads(raw.decode("utf-8-sig"))
    except UnicodeDecodeError as exc:
        raise WorkloadError(f"{path}: byte offset {exc.start}: not UTF-8") from None
    except json.JSONDecodeError as exc:
        raise WorkloadError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno}; truncated file?)") from None


def parse_model(model: type[M], data: Any, path: Path | str, what: str) -> M:
    """data validated as model, or a WorkloadError naming the file, the first bad field, its value and the rule."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = "".join(f"[{p}]" if isinstance(p, int) else (f".{p}" if i else str(p)) for i, p in enumerate(err["loc"]))
        if err["type"] == "missing":
            raise WorkloadError(f"{path}: {what} field {loc} is missing") from None
        value = err.get("input")
        shown = repr(value) if not isinstance(value, (dict, list)) else type(value).__name__
        raise WorkloadError(f"{path}: {what} field {loc or '(top level)'}={shown}: {err['msg']}") from None
