"""GuideLLM results (`benchmarks.json` / `guidellm-results.json`, plain or .gz): one MeasuredRun per benchmark.

What each strategy becomes (GuideLLM's scheduler semantics):
* synchronous -> closed loop, concurrency 1: one request at a time, the next sent when the previous
  ends; requests in their measured send order.
* concurrent  -> closed loop, concurrency = strategy.streams.
* throughput  -> closed loop, concurrency = strategy.max_concurrency (GuideLLM queues every request at
  once and keeps at most max_concurrency in flight; with max_requests below that, all start at t≈0).
  If max_concurrency is absent, concurrency = the number of requests.
* constant / poisson -> open loop; each request arrives at its measured send time (request_start)
  relative to the benchmark start (not the targeted time: client lag is part of what was measured).

Per request: TTFT = first_token_iteration − request_start, E2E = request_end − request_start,
e2e_per_token_ms = (last_token_iteration − request_start)/N (GuideLLM's time_per_output_token_ms).
Errored/incomplete requests were sent: they stay in the replay with ok=False and their requested
max_tokens as output length. Exception (drop_rejected, default true): requests the server refused
before serving them (HTTP 4xx, no token) are left out of the replay — they cost the engine nothing
(for example prompts over max_model_len by the server's tokenizer) — and listed in the run notes.
A shared prefix declared in the synthetic data config (prefix_tokens) is attributed to every request.

Warmup requests (sent before start_time, within warmup_duration) and cooldown requests (sent after
start_time + duration, within cooldown_duration) are left out, as GuideLLM's metrics leave them out. A file holding only a sample of the sent requests (metrics.request_totals > the records;
GuideLLM sample_requests) is refused unless sample="replay", which replays the sample and says so.
YAML reports (benchmarks.yaml) are read like JSON.

Manifest keys (ground_truth.*): path, benchmarks (list of indices to keep, default all),
drop_rejected (default true), sample (refuse | replay, default refuse).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any

from servesim.validation._io import (
    as_dict,
    as_int,
    as_list,
    as_num,
    fail,
    get,
    read_json,
    read_yaml,
    resolve_existing,
    short,
)
from servesim.validation.loaders._common import (Row, build_run, check_time_pair, median_count, metadata_notes, spec_bool,
                                                 spec_choice)
from servesim.validation.measured import MeasuredRun

PREFIX_GROUP = "guidellm-shared-prefix"
_REJECTED = re.compile(r"Client error '4\d\d|\b4\d\d (Bad Request|Unprocessable|Payload Too Large)")
_MAX_TOKENS = re.compile(r"""['"]max_tokens['"]\s*:\s*(\d+)""")
# Open-loop strategies replay at the measured send times, so a strategy's type matters only for closed loops.
_STRATEGIES = ("synchronous", "concurrent", "throughput", "constant", "poisson", "async", "trace")
OPEN_STRATEGIES = ("constant", "poisson", "async", "trace")


def _timings(req: dict[str, Any], path: Path, where: str) -> dict[str, float | None]:
    """request_start, first_token, last_token, request_end (epoch s) from GuideLLM 0.6 `info.timings`
    or the older `scheduler_info.request_timings`."""
    if isinstance(req.get("info"), dict) and "timings" in req["info"]:
        t = as_dict(req["info"]["timings"], path, f"{where}.info.timings")
        keys = ("request_start", "first_token_iteration", "last_token_iteration", "request_end")
        base = f"{where}.info.timings"
    elif isinstance(req.get("scheduler_info"), dict) and "request_timings" in req["scheduler_info"]:
        t = as_dict(req["scheduler_info"]["request_timings"], path, f"{where}.scheduler_info.request_timings")
        keys = ("request_start", "first_iteration", "last_iteration", "request_end")
        base = f"{where}.scheduler_info.request_timings"
    else:
        raise fail(path, f"{where}.info.timings", "missing (per-request timings are needed)")
    out: dict[str, float | None] = {}
    targeted = t.get("targeted_start")
    out["targeted"] = None if targeted is None else as_num(targeted, path, f"{base}.targeted_start")
    for name, key in zip(("start", "first", "last", "end"), keys):
        v = t.get(key)
        out[name] = None if v is None else as_num(v, path, f"{base}.{key}")
    if out["start"] is None:
        raise fail(path, f"{base}.{keys[0]}", "missing")
    return out


def _data_config(bench: dict[str, Any], doc: dict[str, Any]) -> dict[str, Any]:
    """The synthetic data config (a dict) from config.requests.data or args.data, if parseable."""
    candidates = []
    cfg = bench.get("config")
    if isinstance(cfg, dict) and isinstance(cfg.get("requests"), dict):
        candidates.append(cfg["requests"].get("data"))
    if isinstance(doc.get("args"), dict):
        candidates.append(doc["args"].get("data"))
    for c in candidates:
        items = c if isinstance(c, list) else [c]
        for item in items:
            if isinstance(item, str):
                try:
                    item = ast.literal_eval(item)
                except (ValueError, SyntaxError):
                    continue
            if isinstance(item, list) and item:
                item = item[0]
            if isinstance(item, dict):
                return item
    return {}


def _strategy(bench: dict[str, Any], path: Path, where: str) -> dict[str, Any]:
    cfg = bench.get("config") if isinstance(bench.get("config"), dict) else bench.get("args")
    if not isinstance(cfg, dict) or "strategy" not in cfg:
        raise fail(path, f"{where}.config.strategy", "missing")
    strat = as_dict(cfg["strategy"], path, f"{where}.config.strategy")
    kind = strat.get("type_", strat.get("type"))
    if kind not in _STRATEGIES:
        raise fail(path, f"{where}.config.strategy.type_",
                   f"={short(kind)}: not supported (allowed: {', '.join(_STRATEGIES)})")
    return strat


def _aggregates(bench: dict[str, Any], path: Path, where: str, n_ok: int, n_failed: int,
                duration: float) -> dict[str, float]:
    """Benchmark-level means and percentiles over successful requests (ms)."""
    out: dict[str, float] = {"num_ok": float(n_ok), "num_failed": float(n_failed), "duration_s": duration}
    if duration > 0:
        out["requests_per_s"] = n_ok / duration
    metrics = bench.get("metrics")
    if metrics is None:
        return out
    metrics = as_dict(metrics, path, f"{where}.metrics")
    spec = (("ttft", "time_to_first_token_ms", 1.0, True), ("e2e", "request_latency", 1000.0, True),
            ("e2e_per_token", "time_per_output_token_ms", 1.0, False),
            ("guidellm_itl", "inter_token_latency_ms", 1.0, False))
    for name, key, scale, pcts in spec:
        if key not in metrics:
            continue
        base = f"{where}.metrics.{key}.successful"
        succ = as_dict(get(as_dict(metrics[key], path, f"{where}.metrics.{key}"), "successful", path,
                           f"{where}.metrics.{key}"), path, base)
        if not succ.get("count"):
            continue
        out[f"{name}_mean_ms"] = scale * as_num(get(succ, "mean", path, base), path, f"{base}.mean")
        if pcts:
            p = as_dict(get(succ, "percentiles", path, base), path, f"{base}.percentiles")
            for label, field in (("p50", "p50"), ("p90", "p90"), ("p99", "p99")):
                out[f"{name}_{label}_ms"] = scale * as_num(get(p, field, path, f"{base}.percentiles"), path,
                                                           f"{base}.percentiles.{field}")
    return out


def _prefix_buckets(data_cfg: dict[str, Any], path: Path, where: str) -> list[tuple[float, int, int]]:
    """GuideLLM (v0.7+) synthetic-data prefix_buckets as (bucket_weight, prefix_count, prefix_tokens); [] if none."""
    buckets = data_cfg.get("prefix_buckets")
    if not buckets:
        return []
    out = []
    for b, item in enumerate(as_list(buckets, path, f"{where}.data.prefix_buckets")):
        bw = f"{where}.data.prefix_buckets[{b}]"
        item = as_dict(item, path, bw)
        weight = as_num(item.get("bucket_weight", 1.0), path, f"{bw}.bucket_weight")
        count = as_int(item.get("prefix_count", 1), path, f"{bw}.prefix_count", min_value=1)
        tokens = as_int(item.get("prefix_tokens", 0), path, f"{bw}.prefix_tokens")
        if weight < 0:
            raise fail(path, f"{bw}.bucket_weight", f"={weight!r}: must be >= 0")
        out.append((weight, count, tokens))
    if sum(w for w, _, _ in out) <= 0:
        raise fail(path, f"{where}.data.prefix_buckets", "bucket weights sum to 0")
    return out


def _bucket_prefixes(buckets: list[tuple[float, int, int]], n: int) -> list[tuple[str | None, int]]:
    """(prefix_group, prefix_tokens) for n requests in send order, spread over the buckets by weight.

    Assumption (the file does not say which prompt got which prefix): buckets are interleaved by smooth
    weighted round-robin, and a bucket's requests cycle through its prefix_count prefixes in order.
    """
    total = sum(w for w, _, _ in buckets)
    credit = [0.0] * len(buckets)
    used = [0] * len(buckets)
    out: list[tuple[str | None, int]] = []
    for _ in range(n):
        credit = [c + w / total for c, (w, _, _) in zip(credit, buckets)]
        b = max(range(len(buckets)), key=lambda k: credit[k])  # first of the largest credits
        credit[b] -= 1.0
        _, count, tokens = buckets[b]
        out.append((f"guidellm-bucket{b}-prefix{used[b] % count}" if tokens > 0 else None, tokens))
        used[b] += 1
    return out


def _refuse_sample(bench: dict[str, Any], path: Path, where: str, held: int, sample: str) -> str | None:
    """Refuse a benchmark whose file holds only a sample of the requests sent (GuideLLM sample_requests).

    Replaying the sample would offer a fraction of the load at the wrong rate, so servesim refuses
    (sample="refuse", the default) rather than replay it; it does not rebuild the missing requests from
    the aggregates. sample="replay" replays the sample anyway and returns the note saying so.
    """
    metrics = bench.get("metrics") if isinstance(bench.get("metrics"), dict) else {}
    totals = metrics.get("request_totals")
    if not isinstance(totals, dict):
        return
    sent = sum(int(totals.get(k) or 0) for k in ("successful", "errored", "incomplete"))
    if sent <= held:
        return None
    cfg = bench.get("config") if isinstance(bench.get("config"), dict) else {}
    size = cfg.get("sample_requests", cfg.get("sample_size"))
    if sample == "replay":
        return f"replayed only the {held} sampled requests of the {sent} sent (sample_requests={size!r}): the offered load is a fraction of the real one"
    raise fail(path, f"{where}.requests",
               f"holds {held} of the {sent} requests sent (metrics.request_totals; sample_requests={size!r}): "
               "servesim refuses to replay a sample as the load; rerun GuideLLM keeping every request "
               "(or pass sample='replay' / ground_truth.sample: replay to replay the sample, said in the notes)")
    return None


def _benchmark_run(doc: dict[str, Any], i: int, path: Path, drop_rejected: bool, sample: str = "refuse") -> MeasuredRun:
    where = f"benchmarks[{i}]"
    bench = as_dict(doc["benchmarks"][i], path, where)
    strat = _strategy(bench, path, where)
    kind = strat.get("type_", strat.get("type"))
    reqs = as_dict(get(bench, "requests", path, where), path, f"{where}.requests")
    start = bench.get("start_time")
    if start is None and isinstance(bench.get("run_stats"), dict):
        start = bench["run_stats"].get("start_time")
    if start is None:
        raise fail(path, f"{where}.start_time", "missing")
    start = as_num(start, path, f"{where}.start_time")
    duration = as_num(bench.get("duration", 0.0) or 0.0, path, f"{where}.duration")
    data_cfg = _data_config(bench, doc)
    prefix_raw = data_cfg.get("prefix_tokens") or 0
    prefix = int(prefix_raw) if isinstance(prefix_raw, (int, float)) and prefix_raw > 0 else 0

    warmup_s = as_num(bench.get("warmup_duration", 0.0) or 0.0, path, f"{where}.warmup_duration")
    warmup_dropped = cooldown_dropped = 0
    cooldown_s = as_num(bench.get("cooldown_duration", 0.0) or 0.0, path, f"{where}.cooldown_duration")
    raw: list[tuple[float, int, Row]] = []
    lags: list[float] = []
    rejected: list[dict[str, Any]] = []
    succ_out: list[int] = []
    n_ok = n_failed = 0
    for status in ("successful", "errored", "incomplete"):
        items = reqs.get(status)
        if items is None:
            if status == "successful":
                raise fail(path, f"{where}.requests.successful", "missing")
            continue
        for j, req in enumerate(as_list(items, path, f"{where}.requests.{status}")):
            rw = f"{where}.requests.{status}[{j}]"
            req = as_dict(req, path, rw)
            t = _timings(req, path, rw)
            n_in = as_int(get(req, "prompt_tokens", path, rw), path, f"{rw}.prompt_tokens")
            ok = status == "successful"
            if ok:
                n_out = as_int(get(req, "output_tokens", path, rw), path, f"{rw}.output_tokens", min_value=1)
                for name in ("first", "last", "end"):
                    if t[name] is None:
                        raise fail(path, f"{rw}.info.timings", f"{name} time missing on a successful request")
                ttft = (t["first"] - t["start"]) * 1000.0  # type: ignore[operator]
                e2e = (t["end"] - t["start"]) * 1000.0  # type: ignore[operator]
                if ttft < 0 or e2e < 0:
                    raise fail(path, f"{rw}.info.timings", f"negative duration (TTFT {ttft:.6g} ms, E2E {e2e:.6g} ms)")
                check_time_pair(path, rw, ttft, e2e)
                per_tok = (t["last"] - t["start"]) * 1000.0 / n_out  # type: ignore[operator]
                succ_out.append(n_out)
                n_ok += 1
            else:
                info = req.get("info") if isinstance(req.get("info"), dict) else {}
                error = str(info.get("error") or req.get("error") or "")
                if drop_rejected and t["first"] is None and _REJECTED.search(error):
                    rejected.append({"prompt_tokens": n_in, "status": status,
                                     "send_s": round(t["start"] - start, 6), "error": error.splitlines()[0][:120]})
                    continue
                n_failed += 1
                m = _MAX_TOKENS.search(str(req.get("request_args") or ""))
                n_out = int(m.group(1)) if m else int(req.get("output_tokens") or 0)
                ttft = e2e = per_tok = None
                if t["end"] is not None:
                    e2e = (t["end"] - t["start"]) * 1000.0
            arrival = t["start"] - start
            warm = arrival < -1e-3 and -arrival <= warmup_s + 1e-3
            cool = cooldown_s > 0 and 1e-3 < arrival - duration <= cooldown_s + 1e-3
            if warm or cool:
                # GuideLLM leaves warmup requests (sent before start_time, within warmup_duration) and cooldown ones
                # (after the measured window, within cooldown_duration) out of its metrics: dropped here too (notes).
                warmup_dropped += warm
                cooldown_dropped += cool
                if ok:
                    n_ok -= 1
                    succ_out.pop()
                else:
                    n_failed -= 1
                continue
            if t["targeted"] is not None:
                lags.append(t["start"] - t["targeted"])  # type: ignore[operator]
            if arrival < -1e-3:
                raise fail(path, f"{rw}.info.timings.request_start",
                           f"is {-arrival:.6g} s before the benchmark start_time (negative arrival)")
            raw.append((max(arrival, 0.0), len(raw), Row(
                arrival_s=max(arrival, 0.0), input_tokens=n_in, output_tokens=n_out, ttft_ms=ttft, e2e_ms=e2e,
                ok=ok, prefix_group=PREFIX_GROUP if prefix > 0 else None, prefix_tokens=prefix,
                e2e_per_token_ms=per_tok)))
    if not raw:
        raise fail(path, f"{where}.requests", "no requests")
    sample_note = _refuse_sample(bench, path, where, len(raw) + warmup_dropped + cooldown_dropped + len(rejected), sample)
    med_out = median_count(succ_out) or 1
    rows = []
    for _, _, r in sorted(raw, key=lambda x: (x[0], x[1])):
        if r.output_tokens < 1:  # failed request whose requested length is unknown
            r.recorded_output_tokens, r.output_tokens = r.output_tokens, med_out
        rows.append(r)
    buckets = _prefix_buckets(data_cfg, path, where)
    if buckets:
        for r, (group, tokens) in zip(rows, _bucket_prefixes(buckets, len(rows))):
            r.prefix_group, r.prefix_tokens = group, min(tokens, r.input_tokens)

    if kind == "synchronous":
        mode, conc = "closed", 1
    elif kind == "concurrent":
        mode, conc = "closed", as_int(get(strat, "streams", path, f"{where}.config.strategy"), path,
                                      f"{where}.config.strategy.streams", min_value=1)
    elif kind == "throughput":
        mc = strat.get("max_concurrency")
        mode, conc = "closed", (as_int(mc, path, f"{where}.config.strategy.max_concurrency", min_value=1)
                                if mc is not None else len(rows))
    else:
        mode, conc = "open", None
    name = f"{i}-{kind}"
    if kind in OPEN_STRATEGIES and strat.get("rate") is not None:
        name += f"@{as_num(strat['rate'], path, f'{where}.config.strategy.rate'):.3f}rps"
    elif kind == "concurrent":
        name += f"x{conc}"
    notes: dict[str, Any] = {
        "strategy": {k: v for k, v in strat.items() if k in ("type_", "rate", "streams", "max_concurrency",
                                                                 "worker_count")},
        "benchmark_index": i,
        "num_rejected_dropped": len(rejected),
    }
    if lags and mode == "open":  # how late the client sent requests vs GuideLLM's schedule (replay uses actual sends)
        notes["max_send_lag_s"] = round(max(lags), 6)
    if rejected:
        notes["rejected_dropped"] = rejected
    if sample_note:
        notes["sample"] = sample_note
    if warmup_dropped:
        notes["warmup_dropped"] = f"{warmup_dropped} warmup requests (sent in the {warmup_s:g} s warmup) left out, as GuideLLM's metrics leave them out"
    if cooldown_dropped:
        notes["cooldown_dropped"] = f"{cooldown_dropped} cooldown requests (sent in the {cooldown_s:g} s cooldown) left out, as GuideLLM's metrics leave them out"
    if buckets:
        notes["prefix"] = ("shared prefixes from GuideLLM prefix_buckets " + ", ".join(
            f"{c}×{t} tokens (weight {w:g})" for w, c, t in buckets) + "; buckets interleaved by weight in send order")
    elif prefix > 0:
        notes["prefix"] = f"every prompt starts with the same {prefix}-token prefix (GuideLLM data prefix_tokens)"
    return build_run(name, rows, stage_names=[name], mode=mode, concurrency=conc,  # type: ignore[arg-type]
                     aggregates=_aggregates(bench, path, where, n_ok, n_failed, duration), notes=notes)


def load_guidellm(path: str | Path, *, benchmarks: list[int] | None = None,
                  drop_rejected: bool = True, sample: str = "refuse") -> list[MeasuredRun]:
    """One MeasuredRun per benchmark of a GuideLLM results file (optionally only the given indices)."""
    path = resolve_existing(Path(path))
    is_yaml = path.name.lower().removesuffix(".gz").endswith((".yaml", ".yml"))  # GuideLLM writes benchmarks.yaml too
    doc = as_dict(read_yaml(path) if is_yaml else read_json(path), path, "<top>")
    benches = as_list(get(doc, "benchmarks", path, ""), path, "benchmarks")
    if not benches:
        raise fail(path, "benchmarks", "empty (no benchmarks)")
    indices = list(range(len(benches))) if benchmarks is None else benchmarks
    for i in indices:
        if not 0 <= i < len(benches):
            raise fail(path, "benchmarks", f"index {i} out of range (the file has {len(benches)})")
    if sample not in ("refuse", "replay"):
        raise fail(path, "sample", f"={sample!r}: allowed refuse, replay")
    return [_benchmark_run(doc, i, path, drop_rejected, sample) for i in indices]


def load(spec: dict[str, Any], data_path: Path, manifest: Path) -> list[MeasuredRun]:
    """Loader entry for format 'guidellm'."""
    sel = spec.get("benchmarks")
    indices = None
    if sel is not None:
        indices = [as_int(v, manifest, f"ground_truth.benchmarks[{j}]")
                   for j, v in enumerate(as_list(sel, manifest, "ground_truth.benchmarks"))]
    runs = load_guidellm(data_path, benchmarks=indices, drop_rejected=spec_bool(spec, "drop_rejected", manifest, True),
                         sample=spec_choice(spec, "sample", manifest, ("refuse", "replay"), "refuse"))
    meta = metadata_notes(spec)
    for r in runs:
        r.notes.update(meta)
    return runs
