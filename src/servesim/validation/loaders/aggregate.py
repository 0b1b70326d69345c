"""Measured means only, plus a description of the workload to generate (no per-request data).

Two file shapes:
* CSV, one row per experiment (the seed report's `seed13_sync_ground_truth_and_blis_tpot_mape.csv`):
  ground_truth keys `row` (value of the `key_column`, default "experiment"; optional when the file has
  one row), `columns` (aggregate name -> CSV column; default: the names below), `workload` (inline
  mapping) or `workload_path` + `workload_key` (a YAML file of named workloads), `mode` (default
  closed), `concurrency` (default 1), `run_name` (default "synchronous"). Every other numeric column is
  kept under notes["published"] (a "22.4%" cell becomes 22.4, in percent).
* YAML/JSON: `runs: [{name, mode, concurrency, aggregates: {...}, workload: {...}, notes: {...}}]`.

Default column mapping (seed report names first): ttft_mean_ms <- gt_ttft_mean_ms | ttft_mean_ms;
e2e_mean_ms <- gt_e2e_mean_ms | e2e_mean_ms; e2e_per_token_mean_ms <- gt_tpot_mean_ms |
e2e_per_token_mean_ms (the seed's measured "TPOT" is GuideLLM time_per_output_token_ms = E2E/N, which
includes TTFT; it is *not* ITL); itl_mean_ms <- itl_mean_ms.

Workload keys (GuideLLM synthetic-data semantics: each prompt = the shared prefix of prefix_tokens + a
prompt of prompt_tokens ~ N(mean, stdev) clipped to [min, max]; total input = prefix + prompt):
prompt_tokens, prompt_tokens_stdev/min/max, output_tokens, output_tokens_stdev/min/max, prefix_tokens,
num_requests.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from servesim.validation._io import (
    as_dict,
    as_int,
    as_list,
    as_num,
    as_str,
    fail,
    get,
    read_csv,
    read_json,
    read_yaml,
    resolve_existing,
    short,
)
from servesim.validation.loaders._common import metadata_notes, spec_choice, spec_int, spec_path
from servesim.validation.measured import MeasuredRun

WORKLOAD_KEYS = (
    "prompt_tokens", "prompt_tokens_stdev", "prompt_tokens_min", "prompt_tokens_max",
    "output_tokens", "output_tokens_stdev", "output_tokens_min", "output_tokens_max",
    "prefix_tokens", "num_requests",
)
DEFAULT_COLUMNS: dict[str, tuple[str, ...]] = {
    "ttft_mean_ms": ("gt_ttft_mean_ms", "ttft_mean_ms"),
    "e2e_mean_ms": ("gt_e2e_mean_ms", "e2e_mean_ms"),
    "e2e_per_token_mean_ms": ("gt_tpot_mean_ms", "e2e_per_token_mean_ms"),
    "itl_mean_ms": ("itl_mean_ms",),
}
IDENTITY_COLUMNS = ("experiment", "model_config_folder", "hf_model", "tp", "workload", "model", "hardware", "name")


def check_workload(value: Any, path: Path | str, where: str) -> dict[str, Any]:
    """A validated workload description (numbers >= 0; prompt_tokens and output_tokens required)."""
    wl = as_dict(value, path, where)
    out: dict[str, Any] = {}
    for key, v in wl.items():
        if key not in WORKLOAD_KEYS:
            raise fail(path, f"{where}.{key}", f"unknown key (allowed: {', '.join(WORKLOAD_KEYS)})")
        if key in ("num_requests", "prefix_tokens"):
            out[key] = as_int(v, path, f"{where}.{key}", min_value=1 if key == "num_requests" else 0)
        else:
            out[key] = as_num(v, path, f"{where}.{key}")
    for key in ("prompt_tokens", "output_tokens"):
        if key not in out:
            raise fail(path, f"{where}.{key}", "missing required key")
    for base in ("prompt_tokens", "output_tokens"):
        lo, hi = out.get(f"{base}_min"), out.get(f"{base}_max")
        if lo is not None and hi is not None and lo > hi:
            raise fail(path, f"{where}.{base}_min", f"={lo:g} exceeds {base}_max={hi:g}")
    return out


def _cell_number(text: str) -> float | None:
    t = text.strip().rstrip("%").strip()
    try:
        x = float(t)
    except ValueError:
        return None
    return x if x == x and abs(x) != float("inf") else None


def _from_csv(spec: dict[str, Any], path: Path, manifest: Path) -> MeasuredRun:
    header, rows = read_csv(path)
    if not rows:
        raise fail(path, "", "no data rows")
    key_col = as_str(spec.get("key_column", "experiment"), manifest, "ground_truth.key_column")
    if spec.get("row") is not None:
        if key_col not in header:
            raise fail(path, "header", f"no column {key_col!r} to select row {spec['row']!r} by")
        matches = [r for r in rows if r[key_col] == str(spec["row"])]
        if not matches:
            known = ", ".join(r[key_col] for r in rows[:5])
            raise fail(manifest, "ground_truth.row", f"={spec['row']!r}: not in {path.name} (rows: {known}...)")
        row = matches[0]
        line = rows.index(row) + 2
    elif len(rows) == 1:
        row, line = rows[0], 2
    else:
        raise fail(manifest, "ground_truth.row", f"missing: {path.name} has {len(rows)} rows, name one")

    mapping: dict[str, tuple[str, ...]] = dict(DEFAULT_COLUMNS)
    if spec.get("columns") is not None:
        cols = as_dict(spec["columns"], manifest, "ground_truth.columns")
        mapping = {str(k): (as_str(v, manifest, f"ground_truth.columns.{k}"),) for k, v in cols.items()}
        for k, (col,) in mapping.items():
            if col not in header:
                raise fail(manifest, f"ground_truth.columns.{k}", f"={col!r}: no such column in {path.name}")
    aggregates: dict[str, float] = {}
    used = {key_col}
    for name, candidates in mapping.items():
        col = next((c for c in candidates if c in header), None)
        if col is None:
            continue
        used.add(col)
        if row[col] == "":
            continue
        x = _cell_number(row[col])
        if x is None or x < 0:
            raise fail(path, f"line {line}.{col}", f"={short(row[col])}: expected a number >= 0")
        aggregates[name] = x
    if not aggregates:
        raise fail(path, "header", f"no measured column found (expected one of: "
                                   f"{', '.join(c for cs in DEFAULT_COLUMNS.values() for c in cs)})")
    published: dict[str, float] = {}
    identity: dict[str, str] = {}
    for col in header:
        if col in used:
            continue
        if col in IDENTITY_COLUMNS:
            identity[col] = row[col]
            continue
        x = _cell_number(row[col]) if row[col] else None
        if x is not None:
            published[col] = x
    workload = None
    if spec.get("workload") is not None:
        workload = check_workload(spec["workload"], manifest, "ground_truth.workload")
    elif spec.get("workload_path") is not None:
        wpath = spec_path(spec, "workload_path", manifest)
        assert wpath is not None
        doc = as_dict(read_yaml(wpath), wpath, "<top>")
        key = spec.get("workload_key") or identity.get("workload")
        if key is None:
            raise fail(manifest, "ground_truth.workload_key", "missing: which workload of the file to use")
        workload = check_workload(get(doc, str(key), wpath, ""), wpath, str(key))
    if workload is not None and "num_requests" not in workload and spec.get("num_requests") is not None:
        workload["num_requests"] = spec_int(spec, "num_requests", manifest, None)
    mode = spec_choice(spec, "mode", manifest, ("open", "closed"), "closed")
    conc = spec_int(spec, "concurrency", manifest, 1 if mode == "closed" else None)
    notes: dict[str, Any] = {"source": {"file": path.name, "row": row.get(key_col, "")}, "published": published}
    if identity:
        notes["row"] = identity
    notes.update(metadata_notes(spec))
    if "published" in spec and isinstance(spec["published"], dict):
        notes["published"] = {**published, **spec["published"]}
    name = str(spec.get("run_name") or ("synchronous" if mode == "closed" and conc == 1 else "aggregate"))
    return MeasuredRun(name=name, stage_names=(name,), mode=mode, concurrency=conc if mode == "closed" else None,  # type: ignore[arg-type]
                       requests=(), measured=None, aggregates=aggregates, workload=workload, notes=notes)


def _from_runs_file(path: Path) -> list[MeasuredRun]:
    doc = as_dict(read_json(path) if ".json" in path.suffixes else read_yaml(path), path, "<top>")
    runs = as_list(get(doc, "runs", path, ""), path, "runs")
    if not runs:
        raise fail(path, "runs", "empty")
    out = []
    for j, r in enumerate(runs):
        w = f"runs[{j}]"
        r = as_dict(r, path, w)
        name = as_str(get(r, "name", path, w), path, f"{w}.name")
        mode = r.get("mode", "closed")
        if mode not in ("open", "closed"):
            raise fail(path, f"{w}.mode", f"={short(mode)}: not allowed (allowed: open | closed)")
        conc = r.get("concurrency", 1 if mode == "closed" else None)
        conc = as_int(conc, path, f"{w}.concurrency", min_value=1) if conc is not None else None
        aggs = as_dict(get(r, "aggregates", path, w), path, f"{w}.aggregates")
        aggregates = {str(k): as_num(v, path, f"{w}.aggregates.{k}") for k, v in aggs.items()}
        workload = check_workload(r["workload"], path, f"{w}.workload") if r.get("workload") is not None else None
        notes = dict(as_dict(r.get("notes") or {}, path, f"{w}.notes"))
        out.append(MeasuredRun(name=name, stage_names=(name,), mode=mode,
                               concurrency=conc if mode == "closed" else None, requests=(), measured=None,
                               aggregates=aggregates, workload=workload, notes=notes))
    return out


def load_aggregate(
    path: str | Path, spec: dict[str, Any] | None = None, manifest: Path | None = None
) -> list[MeasuredRun]:
    """Aggregate-only runs from a CSV row (see module doc) or a YAML/JSON `runs:` file."""
    path = resolve_existing(Path(path))
    spec = dict(spec or {})
    manifest = manifest or path
    names = [s.lower() for s in path.suffixes]
    if ".csv" in names:
        return [_from_csv(spec, path, manifest)]
    if any(s in names for s in (".yaml", ".yml", ".json")):
        return _from_runs_file(path)
    raise fail(manifest, "ground_truth.path",
               f"={path.name!r}: aggregate files are .csv, .yaml or .json (optionally .gz)")


def load(spec: dict[str, Any], data_path: Path, manifest: Path) -> list[MeasuredRun]:
    """Loader entry for format 'aggregate'."""
    return load_aggregate(data_path, spec, manifest)
