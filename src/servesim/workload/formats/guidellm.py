"""GuideLLM benchmarks.json / .yaml as a replay trace (`run --trace FILE --trace-format guidellm`).

Schema read from GuideLLM's GenerativeBenchmarksReport (benchmarks[] with config.strategy.type_, start_time,
warmup_duration, metrics.request_totals, requests.{successful, errored, incomplete}[] with prompt_tokens,
output_tokens and info.timings.request_start). The benchmarks of a sweep ran one after another: each
becomes a load stage, and every request arrives at its measured send time from the first benchmark's start.
Closed-loop strategies (synchronous, concurrent, throughput) are replayed at those measured send times too
(said in the notes). Warmup requests are dropped as GuideLLM drops them from its metrics; a file holding
only a sample of the sent requests is refused. For validation, servesim.validation reads the same files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from servesim.config.yamlfile import YamlProblem, parse_yaml_bytes
from servesim.errors import WorkloadError
from servesim.workload.formats._common import ImportedRequest, ImportedRun, parse_model, read_json

CLOSED = ("synchronous", "concurrent", "throughput")


class _Loose(BaseModel):
    model_config = ConfigDict(extra="allow")


class Timings(_Loose):
    request_start: float | None = None
    first_token_iteration: float | None = None
    request_end: float | None = None


class RequestInfo(_Loose):
    timings: Timings = Field(default_factory=Timings)


class GenerativeRequest(_Loose):
    prompt_tokens: int = Field(ge=0)
    output_tokens: int | None = Field(None, ge=0)
    info: RequestInfo = Field(default_factory=RequestInfo)


class Requests(_Loose):
    successful: list[GenerativeRequest] = Field(default_factory=list)
    errored: list[GenerativeRequest] = Field(default_factory=list)
    incomplete: list[GenerativeRequest] = Field(default_factory=list)


class Strategy(_Loose):
    type_: str = Field(alias="type_")


class BenchConfig(_Loose):
    strategy: Strategy


class Benchmark(_Loose):
    config: BenchConfig
    start_time: float
    warmup_duration: float = Field(0.0, ge=0)
    duration: float = Field(0.0, ge=0)
    cooldown_duration: float = Field(0.0, ge=0)
    metrics: dict[str, Any] = Field(default_factory=dict)
    requests: Requests


class Report(_Loose):
    benchmarks: list[Benchmark] = Field(min_length=1)


def read_guidellm_trace(path: str | Path) -> ImportedRun:
    """Every benchmark of a GuideLLM report as one stage of one replay (send times from the first start)."""
    p = Path(path)
    if p.name.lower().removesuffix(".gz").endswith((".yaml", ".yml")):
        try:
            doc = parse_yaml_bytes(p.read_bytes())
        except (OSError, YamlProblem) as exc:
            raise WorkloadError(f"{p}: {exc}") from None
    else:
        doc = read_json(p)
    report = parse_model(Report, doc, p, "guidellm")
    t0 = min(b.start_time for b in report.benchmarks)
    reqs: list[ImportedRequest] = []
    notes: list[str] = []
    names = []
    for i, b in enumerate(report.benchmarks):
        kind = b.config.strategy.type_
        names.append(f"{i}-{kind}")
        held = [r for status in ("successful", "errored", "incomplete") for r in getattr(b.requests, status)]
        totals = b.metrics.get("request_totals") if isinstance(b.metrics.get("request_totals"), dict) else {}
        sent = sum(int(totals.get(k) or 0) for k in ("successful", "errored", "incomplete"))
        if sent > len(held):
            raise WorkloadError(f"{p}: guidellm field benchmarks[{i}].requests holds {len(held)} of the {sent} requests "
                                "sent (a sample): servesim refuses to replay a sample as the load")
        warm = cool = 0
        for r in held:
            start = r.info.timings.request_start
            if start is None:
                raise WorkloadError(f"{p}: guidellm field benchmarks[{i}].requests: info.timings.request_start is missing")
            if start < b.start_time - 1e-3 and b.start_time - start <= b.warmup_duration + 1e-3:
                warm += 1  # GuideLLM's metrics leave warmup requests out
                continue
            over = start - (b.start_time + b.duration)
            if b.cooldown_duration > 0 and over > 1e-3 and over <= b.cooldown_duration + 1e-3:
                cool += 1  # sent after the measured window, within cooldown_duration: GuideLLM leaves them out too
                continue
            reqs.append(ImportedRequest(max(start - t0, 0.0), max(1, r.prompt_tokens), max(1, r.output_tokens or 1),
                                        True, stage=i))
        if warm:
            notes.append(f"benchmark {i}: {warm} warmup requests dropped")
        if cool:
            notes.append(f"benchmark {i}: {cool} cooldown requests dropped")
        if kind in CLOSED:
            notes.append(f"benchmark {i} ({kind}): closed-loop in GuideLLM, replayed at its measured send times")
    reqs.sort(key=lambda r: r.arrival_s)
    return ImportedRun(str(p), "guidellm", tuple(reqs), stage_names=tuple(names), notes=tuple(notes))


def is_guidellm_report(doc: Any) -> bool:
    """True when a parsed document looks like a GuideLLM benchmarks report."""
    return isinstance(doc, dict) and isinstance(doc.get("benchmarks"), list)
