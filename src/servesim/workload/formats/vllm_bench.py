"""`vllm bench serve --save-result [--save-detailed]` result JSON, into an ImportedRun.

Schema read from vLLM's vllm/benchmarks/serve.py (benchmark() `result` dict and main()'s `result_json`):
top-level run settings (backend, model_id, num_prompts, request_rate — a number or "inf" —, burstiness,
max_concurrency) and summary numbers (duration s, completed, failed, total_input_tokens, total_output_tokens,
request_throughput, mean/median/std/pNN _ttft_ms/_tpot_ms/_itl_ms/_e2el_ms). --save-detailed keeps the
per-request lists input_lens, output_lens, ttfts (s), itls (list of s per request), errors, generated_texts,
and in newer vLLM start_times (time.perf_counter() at send); without it vLLM deletes those lists.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from servesim.errors import WorkloadError
from servesim.workload.formats._common import ImportedRequest, ImportedRun, parse_model, read_json

NonNeg = Field(ge=0)
# Summary keys copied into ImportedRun.aggregates as the tool's own numbers (ms).
SUMMARY_KEYS = ("mean_ttft_ms", "median_ttft_ms", "p99_ttft_ms", "mean_tpot_ms", "median_tpot_ms", "mean_itl_ms",
                "median_itl_ms", "p99_itl_ms", "mean_e2el_ms", "median_e2el_ms", "p99_e2el_ms", "request_throughput")


class VllmBenchResult(BaseModel):
    """The keys of a vllm bench serve result file that servesim reads (others are kept, unread)."""

    model_config = ConfigDict(extra="allow")

    backend: str | None = None
    model_id: str | None = None
    num_prompts: int | None = Field(None, ge=1)
    request_rate: float | str = float("inf")  # vLLM writes "inf" for --request-rate inf
    burstiness: float = Field(1.0, gt=0)
    max_concurrency: int | None = Field(None, ge=1)
    duration: float = NonNeg
    completed: int = NonNeg
    failed: int | None = Field(None, ge=0)
    total_input_tokens: int = NonNeg
    total_output_tokens: int = NonNeg
    input_lens: list[int] | None = None
    output_lens: list[int] | None = None
    ttfts: list[float | None] | None = None
    itls: list[list[float]] | None = None
    start_times: list[float] | None = None
    errors: list[str | None] | None = None

    @model_validator(mode="after")
    def _check(self) -> "VllmBenchResult":
        rate = self.request_rate
        if isinstance(rate, str) and rate != "inf":
            raise ValueError(f"request_rate={rate!r}: expected a number or 'inf'")
        lists = {k: getattr(self, k) for k in ("input_lens", "output_lens", "ttfts", "itls", "start_times", "errors")}
        sizes = {k: len(v) for k, v in lists.items() if v is not None}
        if len(set(sizes.values())) > 1:
            raise ValueError("per-request lists differ in length: " + ", ".join(f"{k} {n}" for k, n in sizes.items()))
        return self

    @property
    def rate(self) -> float:
        """Offered request rate in req/s (inf = all at once)."""
        return float("inf") if self.request_rate == "inf" else float(self.request_rate)


def _arrivals(res: VllmBenchResult, n: int, seed: int) -> np.ndarray:
    """Send times (s) as vLLM's get_request draws them: gamma gaps, shape = burstiness, mean 1/rate."""
    if math.isinf(res.rate):
        return np.zeros(n)
    rng = np.random.default_rng(seed)
    # vLLM serve.py get_request: theta = 1 / (request_rate * burstiness); gap ~ Gamma(burstiness, theta).
    gaps = rng.gamma(shape=res.burstiness, scale=1.0 / (res.rate * res.burstiness), size=n)
    return np.concatenate([[0.0], np.cumsum(gaps[:-1])]) if n else gaps


def read_vllm_bench(path: str | Path, *, seed: int = 0) -> ImportedRun:
    """A vllm bench serve result file as an ImportedRun (per request with --save-detailed, else rebuilt from totals)."""
    p = Path(path)
    doc = read_json(p)
    if not isinstance(doc, dict):
        raise WorkloadError(f"{p}: expected a vllm bench serve result object, got {type(doc).__name__}")
    res = parse_model(VllmBenchResult, doc, p, "vllm-bench")
    notes: list[str] = []
    mode, conc = "open", None
    if math.isinf(res.rate) and res.max_concurrency:
        mode, conc = "closed", res.max_concurrency  # rate inf + a cap: each slot sends as soon as one finishes
    elif res.max_concurrency:
        notes.append(f"max_concurrency={res.max_concurrency} with request_rate={res.rate}: the cap is not applied "
                     "in the replay (arrivals open-loop at the recorded times)")
    aggregates = {k: float(v) for k in SUMMARY_KEYS if isinstance(v := doc.get(k), (int, float)) and not isinstance(v, bool)}
    if res.input_lens is not None and res.output_lens is not None:
        n = len(res.input_lens)
        if res.start_times is not None:
            t0 = min(res.start_times) if n else 0.0
            arrivals = np.array([t - t0 for t in res.start_times])
        else:
            arrivals = _arrivals(res, n, seed)
            if not math.isinf(res.rate):
                notes.append(f"no start_times in the file: send times redrawn as vLLM draws them "
                             f"(gamma, burstiness {res.burstiness}, rate {res.rate}/s, seed {seed})")
        reqs = []
        for i in range(n):
            err = res.errors[i] if res.errors is not None else None
            ttft = res.ttfts[i] if res.ttfts is not None else None
            ok = not err and ttft is not None and ttft > 0
            itl = res.itls[i] if res.itls is not None else None
            e2e = (ttft + math.fsum(itl)) * 1e3 if ok and itl is not None else None  # vLLM: latency = ttft + Σ itl (streamed)
            reqs.append(ImportedRequest(float(arrivals[i]), res.input_lens[i], res.output_lens[i], ok,
                                        ttft * 1e3 if ok else None, e2e))
        reqs.sort(key=lambda r: r.arrival_s)  # stable: equal send times keep the file's order
        return ImportedRun(str(p), "vllm-bench", tuple(reqs), mode, conc, aggregates=aggregates, notes=tuple(notes))
    # Without --save-detailed only totals exist: every request gets the mean lengths (stated in the notes).
    n = res.completed + (res.failed or 0)
    if n == 0 or res.completed == 0:
        raise WorkloadError(f"{p}: vllm-bench field completed=0: no successful requests to rebuild a workload from")
    inp = max(1, round(res.total_input_tokens / res.completed))
    out = max(1, round(res.total_output_tokens / res.completed))
    notes.append(f"no per-request lists (run without --save-detailed): {n} requests rebuilt with the mean lengths "
                 f"{inp} in / {out} out tokens and vLLM-drawn send times (seed {seed}); per-request errors unknown")
    arrivals = _arrivals(res, n, seed)
    reqs = tuple(ImportedRequest(float(a), inp, out, True) for a in arrivals)
    return ImportedRun(str(p), "vllm-bench", reqs, mode, conc, aggregates=aggregates, notes=tuple(notes))


def is_vllm_bench(doc: Any) -> bool:
    """True when a parsed JSON document looks like a vllm bench serve result."""
    return isinstance(doc, dict) and "total_input_tokens" in doc and "completed" in doc and "duration" in doc
