"""Bring-your-own measurements: one CSV row per request (`.csv` or `.csv.gz`).

Required columns: arrival_time_s, input_tokens, output_tokens, ttft_ms, e2e_ms.
Optional columns: stage (int, default 0), ok (1/0, default 1), prefix_group, prefix_tokens, itl_ms
(default: computed as (E2E − TTFT)/(N − 1)), recorded_input_tokens / recorded_output_tokens (the count
the client recorded when the replay uses an imputed one; blank = same). ttft_ms and e2e_ms may be blank
only on rows with ok=0 (failed requests stay in the replay but not in the metrics).

Manifest keys (ground_truth.*): path, mode (open | closed, default open), concurrency (closed loop),
run_name, stage_names (list), profile (an inference-perf profile.yaml giving the stage names),
lifecycle_metrics (inference-perf per-stage lifecycle files -> stage<k>_* aggregates), aggregates
(a mapping of extra measured means in ms), plus metadata (workload_profile, split, ...).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from servesim.validation._io import (
    as_list,
    as_num,
    as_str,
    fail,
    parse_bool,
    parse_int,
    parse_num,
    read_csv_lists,
    resolve_existing,
    short,
)
from servesim.validation.loaders import inference_perf
from servesim.validation.loaders._common import (
    Row,
    build_run,
    check_time_pair,
    metadata_notes,
    spec_choice,
    spec_int,
    spec_path,
    spec_paths,
)
from servesim.validation.measured import MeasuredRun

REQUIRED = ("arrival_time_s", "input_tokens", "output_tokens", "ttft_ms", "e2e_ms")
OPTIONAL = ("stage", "ok", "prefix_group", "prefix_tokens", "itl_ms", "recorded_input_tokens",
            "recorded_output_tokens")


def _checked_row(path: Path, line: int, rec: dict[str, str]) -> Row:
    """One CSV record validated field by field (the slow path: exact one-line errors)."""
    def cell(col: str) -> str:
        return rec.get(col, "")

    w = f"line {line}"
    ok = parse_bool(cell("ok"), path, f"{w}.ok") if cell("ok") else True
    arrival = parse_num(cell("arrival_time_s"), path, f"{w}.arrival_time_s")
    n_in = parse_int(cell("input_tokens"), path, f"{w}.input_tokens", min_value=1)
    n_out = parse_int(cell("output_tokens"), path, f"{w}.output_tokens", min_value=1)
    times: dict[str, float | None] = {}
    for col in ("ttft_ms", "e2e_ms", "itl_ms"):
        if cell(col) == "":
            if col != "itl_ms" and ok:
                raise fail(path, f"{w}.{col}", "empty on a row with ok=1 (only failed requests may lack times)")
            times[col] = None
        else:
            times[col] = parse_num(cell(col), path, f"{w}.{col}")
    check_time_pair(path, w, times["ttft_ms"], times["e2e_ms"])
    rec_in = parse_int(cell("recorded_input_tokens"), path, f"{w}.recorded_input_tokens") \
        if cell("recorded_input_tokens") else None
    rec_out = parse_int(cell("recorded_output_tokens"), path, f"{w}.recorded_output_tokens") \
        if cell("recorded_output_tokens") else None
    return Row(
        arrival_s=arrival,
        input_tokens=n_in,
        output_tokens=n_out,
        ttft_ms=times["ttft_ms"],
        e2e_ms=times["e2e_ms"],
        ok=ok,
        stage=parse_int(cell("stage"), path, f"{w}.stage") if cell("stage") else 0,
        prefix_group=cell("prefix_group") or None,
        prefix_tokens=parse_int(cell("prefix_tokens"), path, f"{w}.prefix_tokens") if cell("prefix_tokens") else 0,
        itl_ms=times["itl_ms"],
        recorded_input_tokens=rec_in,
        recorded_output_tokens=rec_out,
    )


_INF = float("inf")


def read_request_rows(path: Path) -> list[Row]:
    """Validated rows of a requests CSV, sorted by arrival time (stable).

    Well-formed rows take a fast path; any row it cannot accept is re-read by _checked_row, which
    raises the exact one-line error (or accepts a legal spelling the fast path skipped, e.g. '12.0').
    """
    header, records = read_csv_lists(path)
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        raise fail(path, "header", f"missing column(s) {', '.join(missing)} (required: {', '.join(REQUIRED)})")
    unknown = [c for c in header if c not in REQUIRED + OPTIONAL]
    if unknown:
        raise fail(path, "header", f"unknown column {unknown[0]!r} (allowed: {', '.join(REQUIRED + OPTIONAL)})")
    if not records:
        raise fail(path, "", "no data rows")
    col = {name: header.index(name) for name in header}
    i_arr, i_in, i_out, i_ttft, i_e2e = (col[c] for c in REQUIRED)
    i_ok, i_stage = col.get("ok"), col.get("stage")
    i_rin, i_rout = col.get("recorded_input_tokens"), col.get("recorded_output_tokens")
    slow = any(c in col for c in ("prefix_group", "prefix_tokens", "itl_ms"))
    rows: list[Row] = []
    for line, c in records:
        row = None
        if not slow:
            try:
                okc = c[i_ok] if i_ok is not None else "1"
                ok = okc == "1" or okc == ""
                arrival = float(c[i_arr])
                n_in, n_out = int(c[i_in]), int(c[i_out])
                ttft = float(c[i_ttft]) if c[i_ttft] else None
                e2e = float(c[i_e2e]) if c[i_e2e] else None
                stage = int(c[i_stage]) if i_stage is not None and c[i_stage] else 0
                rin = int(c[i_rin]) if i_rin is not None and c[i_rin] else None
                rout = int(c[i_rout]) if i_rout is not None and c[i_rout] else None
                good = (
                    (okc in ("0", "1", "")) and 0 <= arrival < _INF and n_in >= 1 and n_out >= 1 and stage >= 0
                    and (ttft is None or 0 <= ttft < _INF) and (e2e is None or 0 <= e2e < _INF)
                    and (not ok or (ttft is not None and e2e is not None))
                    and (ttft is None or e2e is None or ttft <= e2e)
                    and (rin is None or rin >= 0) and (rout is None or rout >= 0)
                )
                if good:
                    row = Row(arrival_s=arrival, input_tokens=n_in, output_tokens=n_out, ttft_ms=ttft, e2e_ms=e2e,
                              ok=ok, stage=stage, recorded_input_tokens=rin, recorded_output_tokens=rout)
            except ValueError:
                row = None
        if row is None:
            row = _checked_row(path, line, dict(zip(header, c)))
        rows.append(row)
    order = sorted(range(len(rows)), key=lambda i: rows[i].arrival_s)
    return [rows[i] for i in order]


def load_requests_csv(
    path: str | Path,
    *,
    mode: str = "open",
    concurrency: int | None = None,
    name: str | None = None,
    stage_names: list[str] | None = None,
    aggregates: dict[str, float] | None = None,
    notes: dict[str, Any] | None = None,
) -> MeasuredRun:
    """One MeasuredRun from a requests CSV."""
    path = resolve_existing(Path(path))
    if mode not in ("open", "closed"):
        raise fail(path, "mode", f"={mode!r}: not allowed (allowed: open | closed)")
    if mode == "closed" and not concurrency:
        raise fail(path, "concurrency", "missing: a closed-loop run needs the number of clients")
    rows = read_request_rows(path)
    n_stages = max(r.stage for r in rows) + 1
    names = list(stage_names) if stage_names else [f"stage{k}" for k in range(n_stages)]
    if len(names) < n_stages:
        raise fail(path, "stage", f"={n_stages - 1} but only {len(names)} stage name(s) are given")
    stem = path.name.split(".")[0]
    base_notes = {"source": {"requests": path.name}, "num_errored": sum(not r.ok for r in rows),
                  "stage_counts": [sum(1 for r in rows if r.stage == k) for k in range(len(names))]}
    base_notes.update(notes or {})
    return build_run(name or stem, rows, stage_names=names, mode=mode,  # type: ignore[arg-type]
                     concurrency=concurrency if mode == "closed" else None,
                     aggregates=aggregates, notes=base_notes)


def load(spec: dict[str, Any], data_path: Path, manifest: Path) -> list[MeasuredRun]:
    """Loader entry for format 'requests-csv'."""
    mode = spec_choice(spec, "mode", manifest, ("open", "closed"), "open")
    concurrency = spec_int(spec, "concurrency", manifest, None)
    if mode == "closed" and concurrency is None:
        raise fail(manifest, "ground_truth.concurrency", "missing: mode closed needs the number of clients")
    names = None
    if spec.get("stage_names") is not None:
        names = [as_str(n, manifest, f"ground_truth.stage_names[{j}]")
                 for j, n in enumerate(as_list(spec["stage_names"], manifest, "ground_truth.stage_names"))]
    profile = spec_path(spec, "profile", manifest)
    if profile is not None and names is None:
        prof = inference_perf.read_profile(profile)
        names = inference_perf.stage_names(inference_perf.profile_stages(prof, profile))
    aggregates: dict[str, float] = {}
    lifecycle = spec_paths(spec, "lifecycle_metrics", manifest)
    if lifecycle:
        aggregates.update(inference_perf.lifecycle_aggregates(lifecycle))
    extra = spec.get("aggregates")
    if extra is not None:
        if not isinstance(extra, dict):
            raise fail(manifest, "ground_truth.aggregates", f"={short(extra)}: expected a mapping name -> number")
        for k, v in extra.items():
            aggregates[str(k)] = as_num(v, manifest, f"ground_truth.aggregates.{k}", min_value=None)
    notes = metadata_notes(spec)
    run = load_requests_csv(data_path, mode=mode, concurrency=concurrency,
                            name=str(spec["run_name"]) if spec.get("run_name") else None,
                            stage_names=names, aggregates=aggregates, notes=notes)
    if lifecycle:
        sent = [int(aggregates.get(f"stage{k}_num_sent", -1)) for k in range(len(lifecycle))]
        run.notes["stage_counts_match_lifecycle"] = sent == run.notes["stage_counts"]
    return [run]

