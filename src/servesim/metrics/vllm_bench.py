"""A run written as `vllm bench serve --save-result [--save-detailed]` writes it (`--output-format vllm-bench`).

Keys, units and statistics follow vLLM's vllm/benchmarks/serve.py (`benchmark()` result dict and `main_async()`
result_json, read at neuralmagic/vllm 32f5573e): aggregates in ms (`mean_ttft_ms`, `p99_itl_ms`, ...) from numpy's
mean / std (population) / median / percentile (linear interpolation); per-request lists in seconds (`ttfts`,
`itls` = each request's gaps between consecutive output tokens) and tokens (`input_lens`, `output_lens`), one entry
per request sent, a rejected request as vLLM records a failed one (ttft 0.0, itl [], output_len 0, its error).
`generated_texts` is not written: servesim generates no text.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from servesim.engine.request import RequestRecord
from servesim.metrics.definitions import e2e_s, is_completed, tpot_s, ttft_s

__all__ = ["DETAILED_KEYS", "PERCENTILE_METRICS", "vllm_bench_result"]

# vllm adds mean/median/std/p<P> of a metric only when it is in --percentile-metrics (its default ttft,tpot,itl;
# --metric-percentiles default 99). servesim writes what `--percentile-metrics ttft,tpot,itl,e2el
# --metric-percentiles 50,90,95,99` gives: every key of vllm's default result, plus E2E and more percentiles.
PERCENTILE_METRICS = ("ttft", "tpot", "itl", "e2el")
DEFAULT_PERCENTILES = (50.0, 90.0, 95.0, 99.0)
# The lists vllm drops from the result unless --save-detailed.
DETAILED_KEYS = ("input_lens", "output_lens", "ttfts", "itls", "start_times", "generated_texts", "errors")


def _itl_s(r: RequestRecord) -> list[float]:
    """One completed request's gaps (s) between consecutive output tokens; [] without token times or N < 2."""
    t = r.token_times_s
    if not is_completed(r) or not t or len(t) < 2:
        return []
    return [float(b - a) for a, b in zip(t[:-1], t[1:])]


def _stats(name: str, values_s: Sequence[float], percentiles: Sequence[float]) -> dict[str, float]:
    """mean/median/std (and p<P>) of values in seconds, as vllm writes them: ms; an empty list gives 0.0 as vllm's does."""
    x = np.asarray(values_s if len(values_s) else [0.0], dtype=np.float64)
    out = {f"mean_{name}_ms": float(np.mean(x)) * 1000, f"median_{name}_ms": float(np.median(x)) * 1000,
           f"std_{name}_ms": float(np.std(x)) * 1000}
    for p in percentiles:
        word = str(int(p)) if int(p) == p else str(p)  # vllm's key: p99, p99.9
        out[f"p{word}_{name}_ms"] = float(np.percentile(x, p)) * 1000
    return out


def _peaks(records: Sequence[RequestRecord]) -> tuple[float, int]:
    """vllm's max_output_tokens_per_s and max_concurrent_requests: 1-second buckets from the first request's start."""
    done = [r for r in records if is_completed(r)]
    if not done:
        return 0.0, 0
    start = min(r.arrival_s for r in done)
    end = max(r.finish_s for r in done)  # type: ignore[type-var]
    n = int(np.ceil(end - start)) + 1
    tokens, active = np.zeros(n), np.zeros(n)
    for r in done:
        for t in r.token_times_s or [r.first_token_s]:  # type: ignore[list-item]
            b = int(t - start)
            if 0 <= b < n:
                tokens[b] += 1
        active[int(r.arrival_s - start): int(r.finish_s - start) + 1] += 1  # type: ignore[operator]
    return float(tokens.max()), int(active.max())


def vllm_bench_result(
    records: Sequence[RequestRecord], *, duration_s: float, model_id: str, num_prompts: int | None = None,
    request_rate: float | str | None = "inf", burstiness: float | None = 1.0, max_concurrency: int | None = None,
    percentiles: Sequence[float] = DEFAULT_PERCENTILES, percentile_metrics: Sequence[str] = PERCENTILE_METRICS,
    detailed: bool = True,
) -> dict[str, Any]:
    """The JSON document `vllm bench serve --save-result` (with detailed: `--save-detailed`) writes for these records;
    durations in seconds, *_ms aggregates in ms, per-request ttfts/itls in seconds."""
    recs = sorted(records, key=lambda r: r.id)
    done = [r for r in recs if is_completed(r)]
    out_lens = [r.output_tokens if is_completed(r) else 0 for r in recs]
    total_in = sum(r.input_tokens for r in done)
    total_out = sum(out_lens)
    rate = (lambda x: x / duration_s if duration_s > 0 else 0.0)
    ttfts = [ttft_s(r) for r in done]
    tpots = [t for r in done if (t := tpot_s(r)) is not None]
    itls = [g for r in done for g in _itl_s(r)]
    e2els = [e2e_s(r) for r in done]
    peak_tokens, peak_requests = _peaks(recs)
    doc: dict[str, Any] = {
        "backend": "servesim", "endpoint_type": "servesim", "label": None, "model_id": model_id, "tokenizer_id": model_id,
        "num_prompts": len(recs) if num_prompts is None else num_prompts,
        "request_rate": request_rate,  # vllm writes the string "inf" for no pacing (all sent at once / closed loop)
        "burstiness": burstiness, "max_concurrency": max_concurrency,
        "duration": duration_s, "completed": len(done), "failed": len(recs) - len(done),
        "total_input_tokens": total_in, "total_output_tokens": total_out,
        "request_throughput": rate(len(done)), "request_goodput": None,
        "output_throughput": rate(total_out), "total_token_throughput": rate(total_in + total_out),
        "input_lens": [r.input_tokens for r in recs], "output_lens": out_lens,
        "ttfts": [ttft_s(r) if is_completed(r) else 0.0 for r in recs],
        "itls": [_itl_s(r) for r in recs],
        # vllm (vllm/benchmarks/serve.py, recent versions) writes each request's send time (perf_counter s); servesim
        # writes its simulated arrival time in s, so an importer replays the same send times.
        "start_times": [r.arrival_s for r in recs],
        "errors": ["" if is_completed(r) else (r.reject_reason or "rejected") for r in recs],
        "max_output_tokens_per_s": peak_tokens, "max_concurrent_requests": peak_requests,
    }
    for name, values in (("ttft", ttfts), ("tpot", tpots), ("itl", itls), ("e2el", e2els)):
        if name in percentile_metrics:
            doc.update(_stats(name, values, percentiles))  # type: ignore[arg-type]
    if not detailed:
        for key in DETAILED_KEYS:
            doc.pop(key, None)
    return doc
