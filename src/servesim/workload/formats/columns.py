"""A CSV/JSONL trace whose columns are named by a ColumnMap: the reader behind Azure, BurstGPT, Vidur and
`--trace-columns arrival=...,input=...,output=...[,arrival_unit=ms]`.

Rows become RequestSpecs with id = 0-based data-row index. Arrival units: s, ms, us, ns (numbers, divided
into seconds) or iso (date-time strings such as `2023-11-16 18:15:46.6805900`, made relative to the earliest
row). A row whose output count is 0 is a failed request where the map says so (BurstGPT): skipped, imputed
with the median of the good rows, or refused, as `errors` says; elsewhere output must be >= 1.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from servesim.config.compressed import strip_gz
from servesim.engine.request import RequestSpec
from servesim.errors import WorkloadError
from servesim.workload.prompts import SHARED_GROUP
from servesim.workload.traces import Trace, _as_float, _as_int, _missing, _ordered, _read_text, jsonl_rows

__all__ = ["ARRIVAL_UNITS", "OPTIONAL_FIELDS", "ColumnMap", "parse_columns", "read_mapped", "rows_of"]

# Numeric arrival units and the divisor that turns them into seconds (division keeps 10 µs == 1e-05 s).
ARRIVAL_UNITS: dict[str, float] = {"s": 1.0, "ms": 1e3, "us": 1e6, "ns": 1e9}
ISO = "iso"
# Optional servesim fields a map may name a column for: field -> (lowest integer allowed, or None for text).
# Add a row here for a new optional trace column (e.g. a LoRA adapter name) and read it in _optional below.
OPTIONAL_FIELDS: dict[str, int | None] = {"prefix_group": None, "prefix_tokens": 0, "stage": 0, "id": 0}


@dataclass(frozen=True, slots=True)
class ColumnMap:
    """Which column holds what: arrival (and its unit), input and output tokens, optional servesim fields."""

    arrival: str
    input: str
    output: str
    arrival_unit: str = "s"
    optional: Mapping[str, str] = field(default_factory=dict)  # servesim field -> column (OPTIONAL_FIELDS)
    zero_output_is_failure: bool = False  # BurstGPT: Response tokens 0 marks a failed request

    def __post_init__(self) -> None:
        if self.arrival_unit not in (*ARRIVAL_UNITS, ISO):
            raise WorkloadError(f"arrival_unit={self.arrival_unit!r}: must be one of {', '.join((*ARRIVAL_UNITS, ISO))}")


def parse_columns(text: str, flag: str = "--trace-columns") -> ColumnMap:
    """A ColumnMap from `arrival=COL,input=COL,output=COL[,arrival_unit=s|ms|us|ns|iso][,prefix_group=COL,...]`."""
    keys = {"arrival", "input", "output", "arrival_unit", *OPTIONAL_FIELDS}
    got: dict[str, str] = {}
    for part in str(text).split(","):
        if not part.strip():
            continue
        name, sep, value = part.partition("=")
        name, value = name.strip(), value.strip()
        if not sep or not value:
            raise WorkloadError(f"{flag} {text!r}: {part.strip()!r} is not KEY=COLUMN (keys: {', '.join(sorted(keys))})")
        if name not in keys:
            raise WorkloadError(f"{flag} {text!r}: unknown key {name!r} (keys: {', '.join(sorted(keys))})")
        if name in got:
            raise WorkloadError(f"{flag} {text!r}: key {name!r} given twice")
        got[name] = value
    for name in ("arrival", "input", "output"):
        if name not in got:
            raise WorkloadError(f"{flag} {text!r}: needs {name}=COLUMN (arrival, input and output are required)")
    unit = got.get("arrival_unit", "s")
    if unit not in (*ARRIVAL_UNITS, ISO):
        raise WorkloadError(f"{flag} {text!r}: arrival_unit={unit!r}: must be one of {', '.join((*ARRIVAL_UNITS, ISO))}")
    optional = {k: v for k, v in got.items() if k in OPTIONAL_FIELDS}
    return ColumnMap(got["arrival"], got["input"], got["output"], unit, optional)


def rows_of(path: Path, jsonl: bool | None = None) -> tuple[list[str], Iterator[tuple[str, Mapping[str, Any]]]]:
    """(columns, iterator of (where, row)) of a CSV with a header or a JSONL file (jsonl None: by suffix, .gz stripped)."""
    text = _read_text(path)
    if jsonl is None:
        jsonl = strip_gz(path).suffix.lower() in (".jsonl", ".ndjson")
    if jsonl:
        return [], jsonl_rows(path, text)
    reader = csv.DictReader(text.splitlines())
    header = [h.strip() for h in (reader.fieldnames or [])]
    reader.fieldnames = header

    def rows() -> Iterator[tuple[str, Mapping[str, Any]]]:
        for row in reader:
            where = f"{path}: line {reader.line_num}"
            if None in row:
                raise WorkloadError(f"{where}: {len(header) + len(row[None])} fields but the header has {len(header)}")
            yield where, row
    return header, rows()


def _iso_seconds(value: Any, where: str, name: str) -> float:
    """Seconds since the Unix epoch of a date-time string (no zone = UTC; any number of fractional digits)."""
    if _missing(value):
        raise WorkloadError(f"{where}: {name} is missing")
    text = str(value).strip()
    base, dot, frac = text.partition(".")
    zone = ""
    if dot:  # fractional seconds: keep every digit (Azure writes 7), then any zone suffix
        digits = len(frac) - len(frac.lstrip("0123456789"))
        frac, zone = frac[:digits], frac[digits:]
    try:
        stamp = datetime.fromisoformat(base + zone.replace("Z", "+00:00"))
    except ValueError:
        raise WorkloadError(f"{where}: {name}={value!r}: expected an ISO date-time such as 2023-11-16 18:15:46.68") from None
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=timezone.utc)
    return stamp.timestamp() + (float("0." + frac) if frac else 0.0)


def _optional(row: Mapping[str, Any], cmap: ColumnMap, where: str) -> dict[str, Any]:
    """The optional servesim fields a row carries under the map's column names."""
    out: dict[str, Any] = {}
    for name, column in cmap.optional.items():
        cell = row.get(column)
        if _missing(cell):
            continue
        lowest = OPTIONAL_FIELDS[name]
        out[name] = str(cell).strip() if lowest is None else _as_int(cell, where, column, lowest)
    return out


def read_mapped(path: str | Path, cmap: ColumnMap, *, sort: bool = False, errors: str = "skip", fmt: str = "columns") -> Trace:
    """Requests from a CSV/JSONL trace read through a ColumnMap (times in its arrival_unit)."""
    p = Path(path)
    header, rows = rows_of(p)
    if header:
        needed = [cmap.arrival, cmap.input, cmap.output, *cmap.optional.values()]
        for col in needed[:3]:
            if col not in header:
                raise WorkloadError(f"{p}: header: missing column {col!r} for --trace-format {fmt} (have: {', '.join(header)})")
    parsed: list[tuple[str, float, int, int, dict[str, Any]]] = []
    for where, row in rows:
        if cmap.arrival_unit == ISO:
            arrival = _iso_seconds(row.get(cmap.arrival), where, cmap.arrival)
        else:
            arrival = _as_float(row.get(cmap.arrival), where, cmap.arrival) / ARRIVAL_UNITS[cmap.arrival_unit]
            if arrival < 0:
                raise WorkloadError(f"{where}: {cmap.arrival}={row.get(cmap.arrival)!r}: must be >= 0")
        inp = _as_int(row.get(cmap.input), where, cmap.input, 1)
        out = _as_int(row.get(cmap.output), where, cmap.output, 0 if cmap.zero_output_is_failure else 1)
        parsed.append((where, arrival, inp, out, _optional(row, cmap, where)))
    if not parsed:
        raise WorkloadError(f"{p}: no requests in the trace")
    if cmap.arrival_unit == ISO:  # absolute clock times: the earliest request arrives at 0 s
        t0 = min(r[1] for r in parsed)
        parsed = [(w, a - t0, i, o, x) for w, a, i, o, x in parsed]
    good = [r for r in parsed if r[3] > 0]
    failed = len(parsed) - len(good)
    if failed and errors == "raise":
        bad = next(r for r in parsed if r[3] == 0)
        raise WorkloadError(f"{bad[0]}: {cmap.output}=0: a failed request (pass errors='skip' or 'impute' to replay such rows)")
    if not good:
        raise WorkloadError(f"{p}: every request has {cmap.output}=0 (failed); nothing to replay")
    fill_out = max(1, int(np.median([r[3] for r in good]) + 0.5))
    specs: list[RequestSpec] = []
    wheres: list[str] = []
    for index, (where, arrival, inp, out, extra) in enumerate(parsed):
        if out == 0 and errors == "skip":
            continue
        prefix = extra.get("prefix_tokens", 0)
        if prefix > inp:
            raise WorkloadError(f"{where}: prefix_tokens={prefix} exceeds {cmap.input}={inp} (input counts the prefix)")
        group = extra.get("prefix_group", SHARED_GROUP if prefix > 0 else None)
        specs.append(RequestSpec(extra.get("id", index), arrival, inp, out or fill_out, group,
                                 prefix if group is not None else 0, None, extra.get("stage", 0)))
        wheres.append(where)
    notes: list[str] = []
    skipped = failed if errors == "skip" else 0
    if failed:
        action = "skipped" if errors == "skip" else f"imputed with the median output {fill_out} tokens"
        notes.append(f"{failed} failed rows ({cmap.output} 0) {action}")
    return Trace(_ordered(specs, wheres, sort), str(p), skipped, tuple(notes), {"format": fmt})
