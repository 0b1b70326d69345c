"""Measured ground truth as plain data, the same whatever file format it came from.

Metric definitions (shared by the measured side and the simulated side; never mix them):

* **TTFT** (`ttft_ms`) — client-side time from sending the request to receiving the first output
  token (GuideLLM: first_token_iteration − request_start; inference-perf: ttft_s).
* **E2E** (`e2e_ms`) — client-side time from sending the request to receiving the end of the
  response (GuideLLM: request_end − request_start = request_latency; inference-perf: e2e_s).
* **ITL** (`itl_ms`) — per request, (E2E − TTFT) / (N − 1) with N the request's output tokens, for
  N >= 2 (None otherwise). This is BLIS's per-request "TPOT" and GuideLLM's `inter_token_latency_ms`
  up to the few µs between the last token and the end of the response. Run-level ITL means are
  plain means over requests of this per-request value.
* **E2E per token** (`e2e_per_token_ms`) — GuideLLM's `time_per_output_token_ms`
  = (last_token_iteration − request_start) / N. It *includes* TTFT and divides by N, so it is a
  different quantity from ITL (tens of percent apart for short outputs behind long prompts). The
  seed report's "TPOT" is this quantity; it is kept only under this name.
* inference-perf's own `time_per_output_token` / `inter_token_latency` fields are per streamed
  chunk (about 2 tokens per chunk) and are never used.

Aggregate keys (`MeasuredRun.aggregates`, all ms unless the name says otherwise):
``ttft_mean_ms``, ``ttft_p50_ms``, ``ttft_p90_ms``, ``ttft_p99_ms``, ``e2e_mean_ms`` (and p50/p90/p99),
``itl_mean_ms`` (mean over requests of the per-request ITL), ``e2e_per_token_mean_ms`` (GuideLLM
TPOT = the seed report's measured "TPOT"; GuideLLM's benchmark-level mean is *token-weighted*:
Σ(last−start)/ΣN over successful requests, not the mean of per-request values — 32.4 ms vs 40.8 ms
on the jan20 synchronous benchmark), ``guidellm_itl_mean_ms`` (GuideLLM's token-weighted
inter-token mean: Σ(last−first)/Σ(N−1)), ``requests_per_s``, ``duration_s``, ``num_ok``, ``num_failed``. Aggregates
copied from a source report are means over that report's successful requests only. Per-stage
aggregates carry a ``stage<k>_`` prefix.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from servesim.engine.request import RequestSpec
from servesim.errors import GroundTruthError

Mode = Literal["open", "closed"]


def itl_ms(e2e_ms: float | None, ttft_ms: float | None, output_tokens: int) -> float | None:
    """Per-request inter-token latency (E2E − TTFT)/(N − 1) in ms; None when N < 2 or a time is missing."""
    if e2e_ms is None or ttft_ms is None or output_tokens < 2:
        return None
    return (e2e_ms - ttft_ms) / (output_tokens - 1)


@dataclass(frozen=True, slots=True)
class MeasuredRequest:
    """One measured request. `measured[i]` of a MeasuredRun describes `requests[i]` (same id i).

    arrival_s: send time relative to the run's start (s). input/output_tokens: the counts the replay
    uses. ttft_ms/e2e_ms are None only for failed requests (ok=False), which were really sent (they
    stay in the replayed workload) but are excluded from measured metrics. recorded_*_tokens hold
    what the client recorded when the replay uses another (imputed) count, else None.
    """

    arrival_s: float
    input_tokens: int
    output_tokens: int
    ttft_ms: float | None
    e2e_ms: float | None
    itl_ms: float | None
    stage: int = 0
    ok: bool = True
    prefix_group: str | None = None
    prefix_tokens: int = 0
    e2e_per_token_ms: float | None = None  # GuideLLM time_per_output_token_ms (includes TTFT); never ITL
    recorded_input_tokens: int | None = None  # client-recorded count when it was unusable (see notes)
    recorded_output_tokens: int | None = None

    @property
    def imputed(self) -> bool:
        """True when the replay uses a token count other than the one the client recorded."""
        return self.recorded_input_tokens is not None or self.recorded_output_tokens is not None


@dataclass(frozen=True, slots=True)
class MeasuredRun:
    """One replayable measured run (a GuideLLM benchmark, an inference-perf run, a CSV, an aggregate row).

    mode "open": requests arrive at `arrival_s` whatever the server does. mode "closed": `concurrency`
    clients each send their next request as soon as their previous one finishes, in `requests` order
    (`arrival_s` then holds the measured send time, for reference). `requests` is empty and
    `measured` None when only aggregates exist; `workload` (flat GuideLLM-style keys) or
    `workload_spec` (a full WorkloadSpec, e.g. an inference-perf run with stages) then says what to generate.
    """

    name: str
    stage_names: tuple[str, ...]
    mode: Mode
    concurrency: int | None
    requests: tuple[RequestSpec, ...]
    measured: tuple[MeasuredRequest, ...] | None
    aggregates: dict[str, float] = field(default_factory=dict)
    workload: dict[str, Any] | None = None
    notes: dict[str, Any] = field(default_factory=dict)
    workload_spec: Any = None  # a servesim.workload.WorkloadSpec to replay (stage-aggregates runs), else None

    def ok_requests(self, stage: int | None = None) -> list[MeasuredRequest]:
        """Measured requests that succeeded (optionally of one stage): the ones metrics are computed on."""
        if self.measured is None:
            return []
        return [m for m in self.measured if m.ok and (stage is None or m.stage == stage)]

    def measured_means(self, stage: int | None = None) -> dict[str, float]:
        """Means over successful requests (optionally of one stage): ttft_mean_ms, e2e_mean_ms, itl_mean_ms
        (mean of per-request ITLs), e2e_per_token_mean_ms (token-weighted, as GuideLLM), num_ok, num_failed.

        Falls back to the stored aggregates when there are no per-request measurements.
        """
        if self.measured is None:
            if stage is None:
                return dict(self.aggregates)
            prefix = f"stage{stage}_"
            return {k[len(prefix):]: v for k, v in self.aggregates.items() if k.startswith(prefix)}
        ok = self.ok_requests(stage)
        sel = [m for m in self.measured if stage is None or m.stage == stage]
        out: dict[str, float] = {"num_ok": float(len(ok)), "num_failed": float(len(sel) - len(ok))}
        ttft = [m.ttft_ms for m in ok if m.ttft_ms is not None]
        e2e = [m.e2e_ms for m in ok if m.e2e_ms is not None]
        itl = [m.itl_ms for m in ok if m.itl_ms is not None]
        for key, vals in (("ttft_mean_ms", ttft), ("e2e_mean_ms", e2e), ("itl_mean_ms", itl)):
            if vals:
                out[key] = math.fsum(vals) / len(vals)
        # Token-weighted, as GuideLLM aggregates it: Σ(last − start) / ΣN (checked equal on the jan20 sweep).
        tok = [(m.e2e_per_token_ms * m.output_tokens, m.output_tokens) for m in ok if m.e2e_per_token_ms is not None]
        if tok:
            out["e2e_per_token_mean_ms"] = math.fsum(a for a, _ in tok) / sum(n for _, n in tok)
        return out


@dataclass(frozen=True, slots=True)
class Experiment:
    """An experiment manifest with its measured runs: what was served, on what, and what was measured."""

    name: str
    model: str
    hardware: str
    tensor_parallel_size: int
    engine: dict[str, Any]
    runs: list[MeasuredRun]
    root: Path
    manifest: dict[str, Any]

    def run(self, name: str) -> MeasuredRun:
        """The run with this name (GroundTruthError listing the names otherwise)."""
        for r in self.runs:
            if r.name == name:
                return r
        raise GroundTruthError(
            f"{self.root / 'experiment.yaml'}: run {name!r} not found (runs: {', '.join(r.name for r in self.runs)})"
        )

    def engine_kwargs(self) -> dict[str, Any]:
        """Engine args in servesim.config.EngineConfig's names (vLLM's `num_gpu_blocks_override`) plus TP."""
        kwargs = dict(self.engine)
        kwargs.pop("num_cpu_blocks", None)  # recorded only: the modelled tier's size comes from kv_offloading_size
        if "num_gpu_blocks" in kwargs:
            kwargs["num_gpu_blocks_override"] = kwargs.pop("num_gpu_blocks")
        kwargs["tensor_parallel_size"] = self.tensor_parallel_size
        return kwargs
