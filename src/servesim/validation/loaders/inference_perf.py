"""inference-perf replay pairs: `replay/<exp>.json` (every request sent) + `replay/<exp>_ground_truth.json`
(measured ttft_s / e2e_s per request), with the run's `profile.yaml` (load stages, shared-prefix data),
its resolved `results/config.yaml` and per-stage `results/stage_<k>_lifecycle_metrics.json`.

Manifest keys (ground_truth.*): path (replay json), ground_truth_path (default `<stem>_ground_truth.json`),
experiment_dir (folder holding profile.yaml, results/config.yaml, results/stage_*_lifecycle_metrics.json),
or explicitly profile, resolved_config, lifecycle_metrics (list), and output_tokens: auto | recorded | requested.

Data facts this loader handles (see the suite README for the evidence):
* Errored requests (has_error, e.g. 300 s client timeouts in the overloaded "reasoning" runs) were really
  sent: they stay in the replay with ok=False and are excluded from metrics. Their recorded input and
  output counts are 0 (lost), so the replay imputes them (median of the run's successful requests).
* inference-perf counts output tokens by re-tokenizing the streamed text client-side. With ignore_eos
  and a fixed max_tokens (shared_prefix data) every request really generated `output_len` tokens: the
  decode time is uncorrelated with the recorded count, which scatters around output_len (and is 0-10 %
  of it for some Llama-2 requests). `output_tokens: auto` therefore replays output_len when the profile
  says ignore_eos with a fixed output_len, keeping the recorded count in recorded_output_tokens.
* Stages: stage k covers arrivals in [Σ durations before k, Σ durations through k); inference-perf waits
  for a stage to drain before starting the next, so stage k>0 starts a few seconds late.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from servesim.validation._io import (
    as_bool,
    as_dict,
    as_int,
    as_list,
    as_num,
    fail,
    get,
    read_json,
    read_yaml,
    resolve_existing,
)
from servesim.validation.loaders._common import (
    Row,
    build_run,
    check_time_pair,
    median_count,
    metadata_notes,
    spec_choice,
    spec_path,
    spec_paths,
    stage_of,
)
from servesim.validation.measured import MeasuredRun

OUTPUT_POLICIES = ("auto", "recorded", "requested")
_PCTS = (("mean", "mean"), ("p50", "median"), ("p90", "p90"), ("p99", "p99"))


# ------------------------------------------------------------------------ profile
def read_profile(path: Path) -> dict[str, Any]:
    """inference-perf profile.yaml (a one-line JSON blob read as YAML) or a resolved results/config.yaml."""
    prof = read_yaml(path)
    return as_dict(prof, path, "<top>")


def profile_stages(profile: dict[str, Any], path: Path) -> list[tuple[float, float]]:
    """[(rate_per_s, duration_s)] of load.stages."""
    load = as_dict(get(profile, "load", path, ""), path, "load")
    stages = as_list(get(load, "stages", path, "load"), path, "load.stages")
    if not stages:
        raise fail(path, "load.stages", "empty (expected at least one {rate, duration})")
    out = []
    for k, st in enumerate(stages):
        where = f"load.stages[{k}]"
        rate = as_num(get(st, "rate", path, where), path, f"{where}.rate")
        dur = as_num(get(st, "duration", path, where), path, f"{where}.duration")
        if dur <= 0:
            raise fail(path, f"{where}.duration", f"={dur:g}: must be > 0")
        out.append((rate, dur))
    return out


def stage_names(stages: list[tuple[float, float]]) -> list[str]:
    return [f"stage{k}: {rate:g} rps x {dur:g} s" for k, (rate, dur) in enumerate(stages)]


def requested_output_len(profiles: list[tuple[dict[str, Any], Path]]) -> tuple[int | None, str]:
    """The fixed max_tokens every request asked for, when the run's data config makes it fixed.

    Returns (output_len or None, reason). Fixed means: shared_prefix data with output_len and no output
    distribution (std/min/max) and the server config says ignore_eos: true.
    """
    output_len: int | None = None
    ignore_eos = False
    for prof, path in profiles:
        data = prof.get("data") or {}
        sp = data.get("shared_prefix") if isinstance(data, dict) else None
        if isinstance(sp, dict):
            if any(k in sp and sp[k] not in (None, 0) for k in ("output_len_std", "output_len_min", "output_len_max")):
                return None, f"{path.name}: output lengths follow a distribution"
            if data.get("output_distribution"):
                return None, f"{path.name}: output lengths follow a distribution"
            if "output_len" in sp:
                output_len = as_int(sp["output_len"], path, "data.shared_prefix.output_len", min_value=1)
        server = prof.get("server")
        if isinstance(server, dict) and server.get("ignore_eos") is True:
            ignore_eos = True
    if output_len is None:
        return None, "no shared_prefix output_len in the profile"
    if not ignore_eos:
        return None, "server.ignore_eos is not true, so outputs may stop early"
    return output_len, "ignore_eos with a fixed shared_prefix output_len"


# ------------------------------------------------------------------------ lifecycle
def lifecycle_aggregates(paths: list[Path]) -> dict[str, float]:
    """stage<k>_* aggregates (ms) from inference-perf stage_<k>_lifecycle_metrics.json files (in stage order).

    TTFT and request latency only: inference-perf's TPOT/ITL are per streamed chunk and are not used.
    """
    out: dict[str, float] = {}
    for k, path in enumerate(paths):
        d = as_dict(read_json(path), path, "<top>")
        pre = f"stage{k}_"
        load = as_dict(get(d, "load_summary", path, ""), path, "load_summary")
        succ = as_dict(get(d, "successes", path, ""), path, "successes")
        fails = as_dict(get(d, "failures", path, ""), path, "failures")
        out[pre + "num_sent"] = float(as_int(get(load, "count", path, "load_summary"), path, "load_summary.count"))
        for key in ("requested_rate", "achieved_rate", "send_duration"):
            if load.get(key) is not None:
                name = {"send_duration": "send_duration_s"}.get(key, key + "_per_s")
                out[pre + name] = as_num(load[key], path, f"load_summary.{key}")
        n_ok = as_int(get(succ, "count", path, "successes"), path, "successes.count")
        out[pre + "num_ok"] = float(n_ok)
        out[pre + "num_failed"] = float(as_int(get(fails, "count", path, "failures"), path, "failures.count"))
        if n_ok:
            lat = as_dict(get(succ, "latency", path, "successes"), path, "successes.latency")
            for metric, src in (("ttft", "time_to_first_token"), ("e2e", "request_latency")):
                dist = as_dict(get(lat, src, path, "successes.latency"), path, f"successes.latency.{src}")
                for name, field in _PCTS:
                    value = get(dist, field, path, f"successes.latency.{src}")
                    out[f"{pre}{metric}_{name}_ms"] = 1000.0 * as_num(value, path, f"successes.latency.{src}.{field}")
            thr = succ.get("throughput")
            if isinstance(thr, dict) and "requests_per_sec" in thr:
                out[pre + "requests_per_s"] = as_num(thr["requests_per_sec"], path,
                                                     "successes.throughput.requests_per_sec")
    return out


# ------------------------------------------------------------------------ replay pair
def default_ground_truth_path(replay: Path) -> Path:
    name = replay.name
    if name.endswith(".json.gz"):
        return replay.with_name(name[: -len(".json.gz")] + "_ground_truth.json.gz")
    if name.endswith(".json"):
        return replay.with_name(name[: -len(".json")] + "_ground_truth.json")
    return replay.with_name(name + "_ground_truth.json")


def read_replay_pair(replay: Path, truth: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Validated (replay metadata, merged per-request records sorted by arrival)."""
    doc = as_dict(read_json(replay), replay, "<top>")
    reqs = as_list(get(doc, "requests", replay, ""), replay, "requests")
    if not reqs:
        raise fail(replay, "requests", "empty (no requests)")
    gt_doc = read_json(truth)
    if isinstance(gt_doc, dict):
        gt_doc = get(gt_doc, "requests", truth, "")
    gts = as_list(gt_doc, truth, "<top>")
    if len(gts) != len(reqs):
        raise fail(truth, "<top>", f"has {len(gts)} records, {replay.name} has {len(reqs)} requests")
    by_index: dict[int, dict[str, Any]] = {}
    for j, g in enumerate(gts):
        where = f"[{j}]"
        idx = as_int(get(g, "index", truth, where), truth, f"{where}.index")
        if idx in by_index:
            raise fail(truth, f"{where}.index", f"={idx}: duplicate index")
        by_index[idx] = as_dict(g, truth, where)
    merged = []
    for j, r in enumerate(reqs):
        where = f"requests[{j}]"
        idx = as_int(get(r, "index", replay, where), replay, f"{where}.index")
        arrival_us = as_int(get(r, "arrival_time_us", replay, where), replay, f"{where}.arrival_time_us")
        n_in = as_int(get(r, "input_tokens", replay, where), replay, f"{where}.input_tokens")
        n_out = as_int(get(r, "output_tokens", replay, where), replay, f"{where}.output_tokens")
        err = as_bool(get(r, "has_error", replay, where, False), replay, f"{where}.has_error")
        g = by_index.get(idx)
        if g is None:
            raise fail(truth, "<top>", f"no record with index {idx} (requests[{j}] of {replay.name})")
        gwhere = f"[index {idx}]"
        g_err = as_bool(get(g, "has_error", truth, gwhere, err), truth, f"{gwhere}.has_error")
        if g_err != err:
            raise fail(truth, f"{gwhere}.has_error", f"={g_err} but {replay.name} says has_error={err}")
        e2e_raw = g.get("e2e_s")
        ttft_raw = g.get("ttft_s")
        e2e = as_num(e2e_raw, truth, f"{gwhere}.e2e_s") * 1000.0 if e2e_raw is not None else None
        ttft = as_num(ttft_raw, truth, f"{gwhere}.ttft_s") * 1000.0 if ttft_raw is not None else None
        if not err and (e2e is None or ttft is None):
            missing = "e2e_s" if e2e is None else "ttft_s"
            raise fail(truth, f"{gwhere}.{missing}", "missing for a request without error")
        check_time_pair(truth, gwhere, ttft, e2e)
        merged.append(dict(index=idx, arrival_us=arrival_us, n_in=n_in, n_out=n_out, err=err, ttft=ttft, e2e=e2e,
                           prefix_group=r.get("prefix_group") or None))
    merged.sort(key=lambda m: (m["arrival_us"], m["index"]))  # stable: the file is already in arrival order
    return doc, merged


def load_inference_perf_replay(
    replay: str | Path,
    ground_truth: str | Path | None = None,
    *,
    profile: str | Path | None = None,
    resolved_config: str | Path | None = None,
    lifecycle_metrics: list[str | Path] | tuple[str | Path, ...] = (),
    output_tokens: str = "auto",
    name: str | None = None,
    extra_notes: dict[str, Any] | None = None,
) -> MeasuredRun:
    """One open-loop MeasuredRun from an inference-perf replay pair (+ optional profile and lifecycle files)."""
    replay = resolve_existing(Path(replay))
    truth = resolve_existing(Path(ground_truth)) if ground_truth is not None else resolve_existing(
        default_ground_truth_path(replay))
    if output_tokens not in OUTPUT_POLICIES:
        raise fail(replay, "output_tokens", f"={output_tokens!r}: not allowed (allowed: {' | '.join(OUTPUT_POLICIES)})")
    doc, merged = read_replay_pair(replay, truth)

    profs: list[tuple[dict[str, Any], Path]] = []
    stages: list[tuple[float, float]] = [(0.0, float("inf"))]
    names = ["stage0"]
    if profile is not None:
        ppath = resolve_existing(Path(profile))
        prof = read_profile(ppath)
        stages = profile_stages(prof, ppath)
        names = stage_names(stages)
        profs.append((prof, ppath))
    if resolved_config is not None:
        cpath = resolve_existing(Path(resolved_config))
        profs.append((read_profile(cpath), cpath))
    boundaries, t = [], 0.0
    for _, dur in stages[:-1]:
        t += dur
        boundaries.append(t)

    ok_in = [m["n_in"] for m in merged if not m["err"]]
    ok_out = [m["n_out"] for m in merged if not m["err"]]
    med_in, med_out = median_count(ok_in), median_count(ok_out)
    fixed_len, why = requested_output_len(profs) if profs else (None, "no profile given")
    policy = output_tokens
    if policy == "auto":
        policy = "requested" if fixed_len is not None else "recorded"
    if policy == "requested" and fixed_len is None:
        raise fail(replay, "output_tokens", f"='requested' but the requested length is unknown ({why})")

    rows: list[Row] = []
    counts = {"errored": 0, "input_imputed": 0, "output_replaced": 0}
    for m in merged:
        n_in, n_out = m["n_in"], m["n_out"]
        rec_in = rec_out = None
        if n_in < 1:
            if med_in is None:
                raise fail(replay, f"requests[index {m['index']}].input_tokens",
                           "=0 and no request has a count to impute")
            rec_in, n_in = n_in, med_in
            counts["input_imputed"] += 1
        if policy == "requested":
            if n_out != fixed_len:
                rec_out, n_out = n_out, fixed_len
                counts["output_replaced"] += 1
        elif n_out < 1:
            if med_out is None:
                raise fail(replay, f"requests[index {m['index']}].output_tokens",
                           "=0 and no request has a count to impute")
            rec_out, n_out = n_out, med_out
            counts["output_replaced"] += 1
        arrival_s = m["arrival_us"] / 1e6
        counts["errored"] += m["err"]
        rows.append(Row(
            arrival_s=arrival_s, input_tokens=n_in, output_tokens=n_out,
            ttft_ms=m["ttft"] if not m["err"] else None, e2e_ms=m["e2e"], ok=not m["err"],
            stage=stage_of(arrival_s, boundaries), prefix_group=m["prefix_group"], prefix_tokens=0,
            recorded_input_tokens=rec_in, recorded_output_tokens=rec_out,
        ))

    lc_paths = [resolve_existing(Path(p)) for p in lifecycle_metrics]
    aggregates = lifecycle_aggregates(lc_paths) if lc_paths else {}
    stage_counts = [sum(1 for r in rows if r.stage == k) for k in range(len(names))]
    notes: dict[str, Any] = {
        "source": {"replay": replay.name, "ground_truth": truth.name},
        "experiment": doc.get("experiment"),
        "split": doc.get("split"),
        "num_errored": counts["errored"],
        "num_input_imputed": counts["input_imputed"],
        "num_output_replaced": counts["output_replaced"],
        "output_tokens_policy": policy,
        "output_tokens_policy_reason": why if policy == "requested" else "recorded client-side counts",
        "stage_counts": stage_counts,
    }
    if fixed_len is not None:
        notes["requested_output_tokens"] = fixed_len
    if lc_paths:
        sent = [int(aggregates.get(f"stage{k}_num_sent", -1)) for k in range(len(lc_paths))]
        notes["stage_counts_match_lifecycle"] = sent == stage_counts[: len(sent)] and len(sent) == len(stage_counts)
    if extra_notes:
        notes.update(extra_notes)
    return build_run(
        name or str(doc.get("experiment") or replay.stem),
        rows,
        stage_names=names,
        mode="open",
        concurrency=None,
        aggregates=aggregates,
        notes=notes,
    )


def load(spec: dict[str, Any], data_path: Path, manifest: Path) -> list[MeasuredRun]:
    """Loader entry for format 'inference-perf-replay'."""
    truth = spec_path(spec, "ground_truth_path", manifest)
    profile = spec_path(spec, "profile", manifest)
    resolved = spec_path(spec, "resolved_config", manifest)
    lifecycle = spec_paths(spec, "lifecycle_metrics", manifest)
    if spec.get("experiment_dir") is not None:
        exp_dir = manifest.parent / str(spec["experiment_dir"])
        if not exp_dir.is_dir():
            raise fail(manifest, "ground_truth.experiment_dir", f"={spec['experiment_dir']!r}: folder not found")
        if profile is None and resolve_existing(exp_dir / "profile.yaml").is_file():
            profile = resolve_existing(exp_dir / "profile.yaml")
        if resolved is None and resolve_existing(exp_dir / "results" / "config.yaml").is_file():
            resolved = resolve_existing(exp_dir / "results" / "config.yaml")
        if not lifecycle:
            k = 0
            while resolve_existing(exp_dir / "results" / f"stage_{k}_lifecycle_metrics.json").is_file():
                lifecycle.append(resolve_existing(exp_dir / "results" / f"stage_{k}_lifecycle_metrics.json"))
                k += 1
    if truth is None:
        truth = resolve_existing(default_ground_truth_path(data_path))
        if not truth.is_file():
            raise fail(manifest, "ground_truth.ground_truth_path",
                       f"not given and {truth.name} not found next to {data_path.name}")
    policy = spec_choice(spec, "output_tokens", manifest, OUTPUT_POLICIES, "auto")
    run_name = spec.get("run_name")
    return [
        load_inference_perf_replay(
            data_path, truth, profile=profile, resolved_config=resolved, lifecycle_metrics=lifecycle,
            output_tokens=policy, name=str(run_name) if run_name else None, extra_notes=metadata_notes(spec),
        )
    ]
