"""Pieces every loader shares: turning per-request rows into RequestSpecs + MeasuredRequests, ground-truth
keys of the manifest, stage lookup."""

from __future__ import annotations

import bisect
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

from servesim.engine.request import RequestSpec
from servesim.validation._io import as_int, as_list, as_str, fail, resolve_existing, short
from servesim.validation.measured import MeasuredRequest, MeasuredRun, Mode, itl_ms

# Keys under ground_truth that any format may carry as plain metadata (copied into run notes).
METADATA_KEYS = ("workload_profile", "split", "description", "published", "source")


@dataclass(slots=True)
class Row:
    """One request as a loader read it, before it becomes a RequestSpec + MeasuredRequest."""

    arrival_s: float
    input_tokens: int
    output_tokens: int
    ttft_ms: float | None
    e2e_ms: float | None
    ok: bool
    stage: int = 0
    prefix_group: str | None = None
    prefix_tokens: int = 0
    itl_ms: float | None = None  # given by the source; computed from E2E/TTFT/N when None
    e2e_per_token_ms: float | None = None
    recorded_input_tokens: int | None = None
    recorded_output_tokens: int | None = None


def build_run(
    name: str,
    rows: Sequence[Row],
    *,
    stage_names: Sequence[str],
    mode: Mode,
    concurrency: int | None,
    aggregates: dict[str, float] | None = None,
    notes: dict[str, Any] | None = None,
) -> MeasuredRun:
    """A MeasuredRun from rows already in send order. ids are 0..n-1; closed-loop client = i % concurrency."""
    specs: list[RequestSpec] = []
    measured: list[MeasuredRequest] = []
    for i, r in enumerate(rows):
        client = (i % concurrency) if (mode == "closed" and concurrency) else None
        prefix_tokens = min(r.prefix_tokens, r.input_tokens)
        group = r.prefix_group if (r.prefix_group and prefix_tokens > 0) else None
        specs.append(
            RequestSpec(
                id=i,
                arrival_s=r.arrival_s,
                input_tokens=r.input_tokens,
                output_tokens=r.output_tokens,
                prefix_group=group,
                prefix_tokens=prefix_tokens if group else 0,
                client=client,
                stage=r.stage,
            )
        )
        itl = None
        if r.ok:
            itl = r.itl_ms if r.itl_ms is not None else itl_ms(r.e2e_ms, r.ttft_ms, r.output_tokens)
        measured.append(
            MeasuredRequest(
                arrival_s=r.arrival_s,
                input_tokens=r.input_tokens,
                output_tokens=r.output_tokens,
                ttft_ms=r.ttft_ms,
                e2e_ms=r.e2e_ms,
                itl_ms=itl,
                stage=r.stage,
                ok=r.ok,
                prefix_group=group,
                prefix_tokens=prefix_tokens if group else 0,
                e2e_per_token_ms=r.e2e_per_token_ms if r.ok else None,
                recorded_input_tokens=r.recorded_input_tokens,
                recorded_output_tokens=r.recorded_output_tokens,
            )
        )
    return MeasuredRun(
        name=name,
        stage_names=tuple(stage_names),
        mode=mode,
        concurrency=concurrency,
        requests=tuple(specs),
        measured=tuple(measured),
        aggregates=dict(aggregates or {}),
        workload=None,
        notes=dict(notes or {}),
    )


def check_time_pair(path: Path | str, where: str, ttft_ms: float | None, e2e_ms: float | None) -> None:
    """TTFT must not exceed E2E."""
    if ttft_ms is not None and e2e_ms is not None and ttft_ms > e2e_ms * (1 + 1e-9) + 1e-6:
        raise fail(path, where, f"TTFT {ttft_ms:.6g} ms exceeds E2E {e2e_ms:.6g} ms")


def median_count(values: Iterable[int]) -> int | None:
    """Lower median of positive counts (an observed value), None when there are none."""
    vals = sorted(v for v in values if v > 0)
    return statistics.median_low(vals) if vals else None


def stage_of(arrival_s: float, boundaries_s: Sequence[float]) -> int:
    """Stage index for an arrival: stage k covers [boundaries[k-1], boundaries[k]); past the end -> last stage."""
    return min(bisect.bisect_right(boundaries_s, arrival_s), len(boundaries_s))


# ------------------------------------------------------------------- manifest keys
def spec_path(spec: dict[str, Any], key: str, manifest: Path, *, required: bool = False) -> Path | None:
    """A file named by ground_truth.<key>, relative to experiment.yaml; must exist."""
    value = spec.get(key)
    if value is None:
        if required:
            raise fail(manifest, f"ground_truth.{key}", "missing required key (a path relative to experiment.yaml)")
        return None
    text = as_str(value, manifest, f"ground_truth.{key}")
    p = resolve_existing(manifest.parent / text)
    if not p.is_file():
        raise fail(manifest, f"ground_truth.{key}", f"={text!r}: file not found ({manifest.parent / text})")
    return p


def spec_paths(spec: dict[str, Any], key: str, manifest: Path) -> list[Path]:
    """A list of files named by ground_truth.<key> (a path or a list of paths)."""
    value = spec.get(key)
    if value is None:
        return []
    items = [value] if isinstance(value, str) else as_list(value, manifest, f"ground_truth.{key}")
    out = []
    for j, item in enumerate(items):
        text = as_str(item, manifest, f"ground_truth.{key}[{j}]")
        p = resolve_existing(manifest.parent / text)
        if not p.is_file():
            raise fail(manifest, f"ground_truth.{key}[{j}]", f"={text!r}: file not found ({manifest.parent / text})")
        out.append(p)
    return out


def spec_choice(spec: dict[str, Any], key: str, manifest: Path, allowed: Sequence[str], default: str) -> str:
    value = spec.get(key, default)
    if value not in allowed:
        raise fail(manifest, f"ground_truth.{key}", f"={short(value)}: not allowed (allowed: {' | '.join(allowed)})")
    return str(value)


def spec_int(spec: dict[str, Any], key: str, manifest: Path, default: int | None, *, min_value: int = 1) -> int | None:
    value = spec.get(key, default)
    if value is None:
        return None
    return as_int(value, manifest, f"ground_truth.{key}", min_value=min_value)


def spec_bool(spec: dict[str, Any], key: str, manifest: Path, default: bool) -> bool:
    value = spec.get(key, default)
    if not isinstance(value, bool):
        raise fail(manifest, f"ground_truth.{key}", f"={short(value)}: expected true or false")
    return value


def metadata_notes(spec: dict[str, Any]) -> dict[str, Any]:
    """Metadata keys of ground_truth (workload_profile, split, ...) to carry into run notes."""
    return {k: spec[k] for k in METADATA_KEYS if k in spec}
