"""Trace replay readers: CSV, JSONL and inference-perf replay JSON, into RequestSpecs.

CSV/JSONL columns: one time column (`arrival_time_s`, `arrival_s` or `arrival_time_us`),
`input_tokens`, `output_tokens`; optional `prefix_group`, `prefix_tokens`, `stage`, `id` (default:
the 0-based data-row index), `lora` (the LoRA adapter name; empty = the base model). Other columns are ignored. input_tokens counts the prefix; a row with
prefix_tokens > 0 and no prefix_group joins group "shared". Unsorted rows are refused (naming the
line) unless sort=True. Every bad row raises WorkloadError naming file, line (or requests[i]) and field.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from servesim.config.compressed import read_bytes, strip_gz
from servesim.engine.request import RequestSpec
from servesim.errors import WorkloadError
from servesim.workload.prompts import SHARED_GROUP

__all__ = [
    "Trace",
    "read_csv_trace",
    "read_inference_perf_replay",
    "read_jsonl_trace",
    "read_trace",
]

# Accepted time columns and the divisor that turns them into seconds (division keeps 10 µs == 1e-05 s).
TIME_COLUMNS: dict[str, float] = {"arrival_time_s": 1.0, "arrival_s": 1.0, "arrival_time_us": 1e6}
REQUIRED_COLUMNS = ("input_tokens", "output_tokens")
ErrorRows = Literal["skip", "impute", "raise"]


@dataclass(frozen=True, slots=True)
class Trace:
    """Requests read from a trace file, plus what the reader dropped or changed."""

    specs: tuple[RequestSpec, ...]
    path: str
    skipped: int = 0  # rows left out (inference-perf rows with has_error under errors="skip")
    notes: tuple[str, ...] = ()  # one line per adjustment the reader made
    meta: Mapping[str, Any] = field(default_factory=dict)  # file-level fields (inference-perf: experiment, config…)


def _missing(value: Any) -> bool:
    """True for an absent or empty cell."""
    return value is None or (isinstance(value, str) and value.strip() == "")


def _as_float(value: Any, where: str, name: str) -> float:
    """A finite float from a cell, or a WorkloadError naming where and the field."""
    if _missing(value):
        raise WorkloadError(f"{where}: {name} is missing")
    if isinstance(value, bool):
        raise WorkloadError(f"{where}: {name}={value!r}: expected a number")
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise WorkloadError(f"{where}: {name}={value!r}: expected a number") from None
    if not math.isfinite(out):
        raise WorkloadError(f"{where}: {name}={value!r}: expected a finite number")
    return out


def _as_int(value: Any, where: str, name: str, lowest: int) -> int:
    """An integral value >= lowest from a cell (12 and 12.0 accepted), or a WorkloadError."""
    out = _as_float(value, where, name)
    if out != int(out) or out < lowest:
        raise WorkloadError(f"{where}: {name}={value!r}: expected an integer >= {lowest}")
    return int(out)


def _time_column(keys: Sequence[str], where: str) -> str:
    """The single time column present among keys, or a WorkloadError."""
    found = [k for k in TIME_COLUMNS if k in keys]
    if len(found) != 1:
        have = "none" if not found else ", ".join(found)
        raise WorkloadError(f"{where}: needs exactly one time column of {', '.join(TIME_COLUMNS)} (found {have})")
    return found[0]


def _spec_from_row(row: Mapping[str, Any], where: str, index: int, time_col: str) -> RequestSpec:
    """One RequestSpec from a CSV/JSONL row (a mapping of column to cell)."""
    arrival = _as_float(row.get(time_col), where, time_col) / TIME_COLUMNS[time_col]
    if arrival < 0:
        raise WorkloadError(f"{where}: {time_col}={row.get(time_col)!r}: must be >= 0")
    inp = _as_int(row.get("input_tokens"), where, "input_tokens", 1)
    out = _as_int(row.get("output_tokens"), where, "output_tokens", 1)
    prefix = 0 if _missing(row.get("prefix_tokens")) else _as_int(row.get("prefix_tokens"), where, "prefix_tokens", 0)
    if prefix > inp:
        raise WorkloadError(f"{where}: prefix_tokens={prefix} exceeds input_tokens={inp} (input counts the prefix)")
    group = None if _missing(row.get("prefix_group")) else str(row.get("prefix_group")).strip()
    if group is None and prefix > 0:
        group = SHARED_GROUP
    stage = 0 if _missing(row.get("stage")) else _as_int(row.get("stage"), where, "stage", 0)
    rid = index if _missing(row.get("id")) else _as_int(row.get("id"), where, "id", 0)
    lora = None if _missing(row.get("lora")) else (str(row.get("lora")).strip() or None)  # adapter name; empty = base
    return RequestSpec(rid, arrival, inp, out, group, prefix if group is not None else 0, None, stage, lora)


def _ordered(specs: list[RequestSpec], wheres: list[str], sort: bool) -> tuple[RequestSpec, ...]:
    """specs stably sorted by arrival (sort=True), or checked sorted with the offending row named."""
    if sort:
        order = sorted(range(len(specs)), key=lambda i: specs[i].arrival_s)
        specs, wheres = [specs[i] for i in order], [wheres[i] for i in order]
    seen: dict[int, str] = {}
    for i, spec in enumerate(specs):
        if i and spec.arrival_s < specs[i - 1].arrival_s:
            raise WorkloadError(
                f"{wheres[i]}: arrival {spec.arrival_s!r} s is earlier than the previous row's "
                f"{specs[i - 1].arrival_s!r} s; sort the trace by arrival time (or pass sort=True; in a workload YAML, trace: {{path: ..., sort: true}})"
            )
        if spec.id in seen:
            raise WorkloadError(f"{wheres[i]}: id={spec.id} repeats the id of {seen[spec.id]}; ids must be unique")
        seen[spec.id] = wheres[i]
    return tuple(specs)


def _read_text(path: Path) -> str:
    """The file's text, or a WorkloadError for a missing, unreadable or empty file."""
    try:
        raw = read_bytes(path, WorkloadError, "trace")  # `.gz` traces are gunzipped (config/compressed.py)
    except OSError as exc:
        raise WorkloadError(f"{path}: cannot read trace ({exc.__class__.__name__}: {exc})".replace("\n", " ")) from None
    try:
        text = raw.decode("utf-8-sig")  # a UTF-8 byte-order mark (Excel's default CSV export) is dropped
    except UnicodeDecodeError as exc:
        raise WorkloadError(f"{path}: byte offset {exc.start}: not UTF-8 (byte 0x{raw[exc.start]:02x}; save the trace as UTF-8)") from None
    if not text.strip():
        raise WorkloadError(f"{path}: empty trace file; expected a header and at least one request")
    return text


def read_csv_trace(path: str | Path, *, sort: bool = False) -> Trace:
    """Requests from a CSV trace with a header row (times in s, or µs for arrival_time_us)."""
    p = Path(path)
    reader = csv.DictReader(_read_text(p).splitlines())
    header = [h.strip() for h in (reader.fieldnames or [])]
    reader.fieldnames = header
    repeated = sorted({h for h in header if header.count(h) > 1})
    if repeated:
        raise WorkloadError(f"{p}: header: column {repeated[0]!r} appears {header.count(repeated[0])} times; each column once")
    time_col = _time_column(header, f"{p}: header")
    for col in REQUIRED_COLUMNS:
        if col not in header:
            raise WorkloadError(f"{p}: header: missing column {col!r} (have: {', '.join(header)})")
    specs: list[RequestSpec] = []
    wheres: list[str] = []
    for row in reader:
        where = f"{p}: line {reader.line_num}"
        if None in row:
            raise WorkloadError(f"{where}: {len(header) + len(row[None])} fields but the header has {len(header)}")
        specs.append(_spec_from_row(row, where, len(specs), time_col))
        wheres.append(where)
    if not specs:
        raise WorkloadError(f"{p}: no requests after the header")
    return Trace(_ordered(specs, wheres, sort), str(p))


def jsonl_rows(path: Path, text: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """(where, object) for each non-blank line of a JSONL text; a bad line is a one-line WorkloadError naming it."""
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        where = f"{path}: line {lineno}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise WorkloadError(f"{where}: not valid JSON ({exc.msg} at column {exc.colno}; truncated file?)") from None
        if not isinstance(row, dict):
            raise WorkloadError(f"{where}: expected a JSON object, got {type(row).__name__}")
        yield where, row


def read_jsonl_trace(path: str | Path, *, sort: bool = False) -> Trace:
    """Requests from a JSONL trace: one JSON object per line (blank lines skipped)."""
    p = Path(path)
    specs: list[RequestSpec] = []
    wheres: list[str] = []
    for where, row in jsonl_rows(p, _read_text(p)):
        specs.append(_spec_from_row(row, where, len(specs), _time_column(list(row), where)))
        wheres.append(where)
    return Trace(_ordered(specs, wheres, sort), str(p))


def _stage_of(arrival_s: np.ndarray, durations_s: Sequence[float]) -> np.ndarray:
    """Stage index of each arrival given back-to-back stage durations; later arrivals join the last stage."""
    ends = np.cumsum(np.asarray(durations_s, dtype=np.float64))
    return np.minimum(np.searchsorted(ends, arrival_s, side="right"), len(ends) - 1)


def read_inference_perf_replay(
    path: str | Path,
    *,
    errors: ErrorRows = "skip",
    stage_durations_s: Sequence[float] | None = None,
    sort: bool = False,
) -> Trace:
    """Requests from an inference-perf replay JSON (`requests[{index, arrival_time_us, input_tokens, …}]`).

    ids are the file's `index`. Rows with has_error (their token counts are 0: the client never saw a
    response) are dropped (errors="skip", counted in Trace.skipped), given the median input/output of the
    successful rows (errors="impute", keeps the offered load), or refused (errors="raise"). A successful
    row with output_tokens 0 is replayed with 1 output token (noted). prefix_tokens = config.system_prompt_len
    for rows with a non-empty prefix_group. stage_durations_s tags each request with its load stage.
    """
    p = Path(path)
    if errors not in ("skip", "impute", "raise"):
        raise WorkloadError(f"inference-perf replay errors={errors!r}: must be skip, impute or raise")
    try:
        doc = json.loads(_read_text(p))
    except json.JSONDecodeError as exc:
        at = f"{exc.msg} at line {exc.lineno} column {exc.colno}"
        raise WorkloadError(f"{p}: not valid JSON ({at}; truncated file?)") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("requests"), list):
        raise WorkloadError(f"{p}: expected an object with a 'requests' list (inference-perf replay format)")
    rows = doc["requests"]
    if not rows:
        raise WorkloadError(f"{p}: requests is empty")
    config = doc.get("config") if isinstance(doc.get("config"), dict) else {}
    raw_len = config.get("system_prompt_len")
    system_len = 0 if _missing(raw_len) else _as_int(raw_len, f"{p}: config", "system_prompt_len", 0)

    parsed: list[tuple[str, int, float, int, int, str | None, bool]] = []
    for i, row in enumerate(rows):
        where = f"{p}: requests[{i}]"
        if not isinstance(row, dict):
            raise WorkloadError(f"{where}: expected an object, got {type(row).__name__}")
        has_error = row.get("has_error", False)
        if not isinstance(has_error, bool):
            raise WorkloadError(f"{where}: has_error={has_error!r}: expected true or false")
        rid = _as_int(row.get("index"), where, "index", 0)
        arrival_us = _as_float(row.get("arrival_time_us"), where, "arrival_time_us")
        if arrival_us < 0:
            raise WorkloadError(f"{where}: arrival_time_us={arrival_us!r}: must be >= 0")
        lowest = 0 if has_error else 1
        inp = _as_int(row.get("input_tokens"), where, "input_tokens", lowest)
        out = _as_int(row.get("output_tokens"), where, "output_tokens", 0)
        group = None if _missing(row.get("prefix_group")) else str(row["prefix_group"])
        if has_error and errors == "raise":
            raise WorkloadError(f"{where}: has_error=true (pass errors='skip' or 'impute' to replay such rows)")
        parsed.append((where, rid, arrival_us / 1e6, inp, out, group, has_error))

    good = [(inp, out) for _, _, _, inp, out, _, err in parsed if not err]
    if not good:
        raise WorkloadError(f"{p}: every request has has_error=true; nothing to replay")
    fill_in = int(np.median([g[0] for g in good]) + 0.5)
    fill_out = max(1, int(np.median([g[1] for g in good]) + 0.5))
    stages = (
        _stage_of(np.array([r[2] for r in parsed]), stage_durations_s).tolist()
        if stage_durations_s
        else [0] * len(parsed)
    )
    specs: list[RequestSpec] = []
    wheres: list[str] = []
    skipped = zero_out = imputed = 0
    for (where, rid, arrival, inp, out, group, err), stage in zip(parsed, stages):
        if err and errors == "skip":
            skipped += 1
            continue
        if err:
            imputed += 1
            inp, out = inp or fill_in, out or fill_out
        elif out == 0:
            zero_out += 1
            out = 1
        prefix = min(system_len, inp) if group is not None else 0
        specs.append(RequestSpec(rid, arrival, inp, out, group, prefix, None, stage))
        wheres.append(where)
    notes = []
    if skipped:
        notes.append(f"{skipped} has_error rows skipped")
    if imputed:
        notes.append(f"{imputed} has_error rows imputed with median input {fill_in} / output {fill_out} tokens")
    if zero_out:
        notes.append(f"{zero_out} successful rows with output_tokens 0 replayed with 1 output token")
    meta = {k: v for k, v in doc.items() if k != "requests"}
    return Trace(_ordered(specs, wheres, sort), str(p), skipped, tuple(notes), meta)


_READERS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "inference_perf"}
TraceFormat = Literal["auto", "csv", "jsonl", "inference_perf"]


def read_trace(
    path: str | Path,
    *,
    format: TraceFormat = "auto",  # noqa: A002
    sort: bool = False,
    errors: ErrorRows = "skip",
    stage_durations_s: Sequence[float] | None = None,
) -> Trace:
    """Requests from a trace file; format "auto" picks by suffix (.csv, .jsonl/.ndjson, .json = inference-perf)."""
    p = Path(path)
    fmt = _READERS.get(strip_gz(p).suffix.lower()) if format == "auto" else format
    readers = {
        "csv": lambda: read_csv_trace(p, sort=sort),
        "jsonl": lambda: read_jsonl_trace(p, sort=sort),
        "inference_perf": lambda: read_inference_perf_replay(
            p, errors=errors, stage_durations_s=stage_durations_s, sort=sort
        ),
    }
    if fmt not in readers:
        raise WorkloadError(
            f"{p}: trace format={format!r} with suffix {strip_gz(p).suffix!r}: "
            "use .csv, .jsonl or .json (optionally .gz), or format=csv|jsonl|inference_perf"
        )
    return readers[fmt]()
