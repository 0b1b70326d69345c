"""One simulated serving run: resolve configs, build the engine and workload, run, summarise."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from servesim import __version__
from servesim.config import EngineConfig, Hardware, ModelSpec, engine_config, load_hardware, load_model
from servesim.engine import EngineStats, RequestRecord, RequestSource, RequestSpec, Simulator, num_gpu_blocks
from servesim.errors import ConfigError
from servesim.latency.factory import DEFAULT_LATENCY_MODEL, DEFAULT_OVERHEAD, build_latency_model
from servesim.latency.transfer import provenance as kernel_provenance
from servesim.metrics import per_request, summarize, summarize_by_stage
from servesim.metrics.saturation import ArrivalBins

STREAM_REL_ERROR = 0.005  # streaming percentiles: relative error bound (metrics/streaming.py)
STREAM_BATCH = 4096  # records folded into the streaming summary at a time


@dataclass
class RunResult:
    """A finished run: `summary` (dict), `requests` (per-request dicts), the `config` that reproduces it."""

    config: dict[str, Any]
    summary: dict[str, Any]
    requests: list[dict[str, Any]]
    stages: dict[str, Any] = field(default_factory=dict)
    records: list[RequestRecord] = field(default_factory=list, repr=False)
    stats: EngineStats | None = field(default=None, repr=False)

    def to_dict(self, *, include_requests: bool = True) -> dict[str, Any]:
        """The JSON document `servesim run --output` writes."""
        out: dict[str, Any] = {"config": self.config, "summary": self.summary}
        if self.stages:
            out["stages"] = self.stages
        if include_requests:
            out["requests"] = self.requests
        return out

    def to_pandas(self):  # type: ignore[no-untyped-def]
        """Per-request records as a pandas DataFrame (needs `pip install servesim[pandas]`)."""
        try:
            import pandas as pd
        except ModuleNotFoundError:
            raise ConfigError("to_pandas() needs pandas: pip install 'servesim[pandas]'") from None
        return pd.DataFrame(self.requests)


def resolve_engine(
    engine: EngineConfig | Mapping[str, Any] | None, model: ModelSpec, hardware: Hardware, tp: int
) -> EngineConfig:
    """An EngineConfig with vLLM V1's GPU-dependent defaults filled in, at tensor parallelism tp."""
    if engine is None:
        cfg = EngineConfig(tensor_parallel_size=tp)
    elif isinstance(engine, EngineConfig):
        cfg = engine.model_copy(update={"tensor_parallel_size": tp})
    else:
        cfg = engine_config(**{**dict(engine), "tensor_parallel_size": tp})
    derived = model.max_model_len
    if cfg.max_model_len is not None and cfg.max_model_len > derived:
        # vLLM _get_and_verify_max_len refuses to start (unless VLLM_ALLOW_LONG_MAX_MODEL_LEN=1).
        raise ConfigError(
            f"--max-model-len {cfg.max_model_len}: User-specified max_model_len ({cfg.max_model_len:,}) is greater than "
            f"the derived max_model_len ({derived:,}; max_position_embeddings ({model.max_position_embeddings}) with "
            f"rope_scaling in {model.name}'s config.json); vLLM refuses to start"
        )
    return cfg.resolved(
        gpu_memory_gib=hardware.usable_memory_bytes / (1 << 30),
        gpu_name=hardware.name,
        model_max_len=derived,
    )


def check_kv_capacity(engine: EngineConfig, model: ModelSpec, blocks: int) -> None:
    """Raise ConfigError, as vLLM's check_enough_kv_cache_memory does at start-up, unless one
    max_model_len request fits the KV cache of `blocks` blocks per GPU."""
    bs, length = engine.block_size, int(engine.max_model_len or model.max_model_len)
    need = -(-length // bs)
    if blocks >= need or blocks < 2:  # < 2 blocks: the engine's own one-line refusal (engine/simulator.py)
        return
    per_block = bs * model.kv_bytes_per_token_per_gpu(engine.tensor_parallel_size)
    source = (f"--num-gpu-blocks-override {blocks}" if engine.num_gpu_blocks_override is not None
              else f"gpu_memory_utilization={engine.gpu_memory_utilization}")
    raise ConfigError(
        f"KV cache holds {blocks * bs:,} tokens ({blocks:,} blocks of {bs}, {source}); max_model_len {length:,} needs "
        f"{need:,} blocks: to serve at least one request with the model's max seq len ({length:,}), "
        f"{need * per_block / (1 << 30):.2f} GiB KV cache is needed, which is larger than the available KV cache memory "
        f"({blocks * per_block / (1 << 30):.2f} GiB); the estimated maximum model length is {blocks * bs:,}. "
        f"Try increasing --gpu-memory-utilization or decreasing --max-model-len"
    )


def kv_blocks_for(engine: EngineConfig, model: ModelSpec, hardware: Hardware) -> int:
    """KV blocks per GPU: the override when set, else vLLM's memory profile (engine/capacity.py)."""
    tp = engine.tensor_parallel_size
    have = hardware.usable_memory_bytes * engine.gpu_memory_utilization
    if model.weight_bytes / tp > have:
        # vLLM fails loading the weights (CUDA out of memory), override or not.
        raise ConfigError(
            f"{model.name} does not fit on {hardware.name} at TP{tp}: weights need {model.weight_bytes / tp / (1 << 30):.1f} GiB "
            f"per GPU, {have / (1 << 30):.1f} GiB available at gpu_memory_utilization={engine.gpu_memory_utilization} "
            f"(raise --tp or --gpu-memory-utilization, or quantise)"
        )
    if engine.num_gpu_blocks_override is not None:
        return engine.num_gpu_blocks_override
    try:
        return num_gpu_blocks(
            gpu_memory_bytes=hardware.usable_memory_bytes,
            gpu_memory_utilization=engine.gpu_memory_utilization,
            weight_bytes=model.weight_bytes,
            tensor_parallel_size=tp,
            kv_bytes_per_token_per_gpu=model.kv_bytes_per_token_per_gpu(tp),
            block_size=engine.block_size,
            max_num_batched_tokens=int(engine.max_num_batched_tokens or 2048),
            hidden_size=model.hidden_size,
            intermediate_size=model.dense_intermediate_size or model.intermediate_size,
        )
    except ConfigError:
        need = model.weight_bytes / tp / (1 << 30)
        have = hardware.usable_memory_bytes * engine.gpu_memory_utilization / (1 << 30)
        raise ConfigError(
            f"{model.name} does not fit on {hardware.name} at TP{tp}: weights need {need:.1f} GiB per GPU, "
            f"{have:.1f} GiB available at gpu_memory_utilization={engine.gpu_memory_utilization} "
            f"(raise --tp or --gpu-memory-utilization)"
        ) from None


def _latency(latency_model: Any, overhead: str, calibration: Any, spec: ModelSpec, hw: Hardware, tp: int,
             async_scheduling: bool) -> tuple[Any, Any]:
    """The step-time model (and the calibration it uses, if any)."""
    if not isinstance(latency_model, str):
        return latency_model, getattr(latency_model, "calibration", None)
    return build_latency_model(latency_model, spec, hw, tp, overhead, calibration, async_scheduling=async_scheduling)


def _workload_source(workload: Any, seed: int | None) -> tuple[RequestSource, dict[str, Any] | None]:
    from servesim.workload import ListSource, WorkloadSpec, build_source, load_workload_yaml, parse_workload, preset

    if workload is None:
        workload = "chat"
    if isinstance(workload, (str, Path)):
        text = str(workload)
        spec = load_workload_yaml(text) if text.endswith((".yaml", ".yml")) or Path(text).is_file() else preset(text)
    elif isinstance(workload, WorkloadSpec):
        spec = workload
    elif isinstance(workload, Mapping):
        spec = parse_workload(dict(workload))
    elif hasattr(workload, "peek_arrival_s"):
        return workload, None
    else:
        return ListSource(list(workload)), None
    described = spec.model_dump(mode="json", exclude_none=True)
    if seed is not None:
        described["seed"] = seed
    return build_source(spec, seed), described


def _intervals(summary: dict[str, Any], cal: Any, spec: ModelSpec, hw: Hardware, tp: int, eng: EngineConfig,
               max_context: int | None) -> dict[str, Any]:
    """Add the calibration's prediction intervals to summary (latency/intervals.py); returns the note on them."""
    from servesim.latency import intervals as iv

    if cal is None:
        return {"available": False, "note": "prediction intervals exist for --latency-model calibrated only"}
    outside: list[str] = []
    if cal.intervals is not None and cal.envelope is not None:
        load = iv.mean_in_system(summary["requests_per_s"], summary["e2e_ms"]["mean"])
        near = summary["saturated"] or summary["preemptions"] > 0 or summary["kv_cache_peak_usage"] >= iv.NEAR_CAPACITY_KV_USAGE
        regime = "loaded" if summary["saturated"] else iv.regime_of(load)
        outside = iv.outside_envelope(cal.envelope, hardware=hw.name, features=iv.model_features(spec), tp=tp,
                                      max_context_tokens=max_context, mean_batch=iv.mean_batch(load, int(eng.max_num_seqs or 1)),
                                      regime=regime, near_capacity=near)
    return iv.annotate(summary, cal.intervals, outside)


class _Stream:
    """Streaming summaries, overall and per load stage, fed in batches of STREAM_BATCH records."""

    def __init__(self) -> None:
        from servesim.metrics import StreamingSummary

        self._new = lambda: StreamingSummary(STREAM_REL_ERROR)
        self.total = self._new()
        self.by_stage: dict[int, Any] = {}
        self.buf: list[RequestRecord] = []

    def add(self, rec: RequestRecord) -> None:
        self.buf.append(rec)
        if len(self.buf) >= STREAM_BATCH:
            self.flush()

    def flush(self) -> None:
        buf, self.buf = self.buf, []
        if not buf:
            return
        self.total.add_batch(buf)
        groups: dict[int, list[RequestRecord]] = {}
        for r in buf:
            groups.setdefault(r.stage, []).append(r)
        for stage, recs in groups.items():
            if stage not in self.by_stage:
                self.by_stage[stage] = self._new()
            self.by_stage[stage].add_batch(recs)

    def summaries(self) -> tuple[dict[str, Any], dict[str, Any]]:
        self.flush()
        stages = {}
        if len(self.by_stage) > 1:
            stages = {str(k): self.by_stage[k].summary() for k in sorted(self.by_stage)}
        return self.total.summary(), stages


def simulate(
    model: str | Path | ModelSpec = "llama-2-7b-hf",
    hardware: str | Path | Hardware = "H100",
    tp: int = 1,
    *,
    workload: Any = None,
    engine: EngineConfig | Mapping[str, Any] | None = None,
    latency_model: Any = DEFAULT_LATENCY_MODEL,
    overhead: str = DEFAULT_OVERHEAD,
    frontend_latency_s: float | None = None,
    frontend_per_token_s: float | None = None,
    calibration: Any = None,
    seed: int | None = None,
    hardware_config: str | Path | None = None,
    record_token_times: bool | None = None,
    check_invariants: bool = False,
    on_record: Callable[[RequestRecord], None] | None = None,
    keep_requests: bool = True,
    event_skipping: bool = True,
    dtype: str = "auto",
    quantization: str | None = None,
    kv_cache_dtype: str = "auto",
) -> RunResult:
    """Simulate one vLLM engine serving a workload and summarise what clients would measure.

    workload: a preset name ("chat"), a YAML path, a WorkloadSpec or dict, a RequestSource, or an
    iterable of RequestSpec (a trace). engine: vLLM engine args (vLLM names) as EngineConfig or dict.
    frontend_latency_s: API-server/tokenisation time before the engine sees a request (counted in TTFT);
    None = the calibration's (calibrated model) or 0. latency_model: a name (roofline-v2,
    roofline-v2-corrected, calibrated) or a LatencyModel object; calibration: a Calibration, a path,
    or None for the shipped default (used by the calibrated model only).

    keep_requests=False streams every finished record into a fixed-memory StreamingSummary and keeps
    none (result.requests and result.records are empty; memory is bounded by the requests in flight).
    Counts, token totals, throughputs and means are exact; percentiles are within 0.5 % relative error
    (metrics/streaming.py). record_token_times (default: True when keeping requests, else False) keeps
    every output token's time; without it pooled ITL weights each request's TPOT by its N - 1 gaps
    (exact ITL mean, approximate ITL percentiles). event_skipping changes speed, never answers
    (engine/skipping.py). dtype, quantization and kv_cache_dtype are vLLM's --dtype, --quantization and
    --kv-cache-dtype (config/quant.py). Set-ups vLLM refuses at start-up raise ConfigError: max_model_len above
    the model's derived maximum, a KV cache smaller than one max_model_len request, weights that do not fit.
    """
    if isinstance(model, ModelSpec):
        if (dtype, quantization, kv_cache_dtype) != ("auto", None, "auto"):
            raise ConfigError("dtype/quantization/kv_cache_dtype: apply to a model name or path; a ModelSpec is already resolved")
        spec = model
    else:
        spec = load_model(model, dtype=dtype, quantization=quantization, kv_cache_dtype=kv_cache_dtype)
    hw = hardware if isinstance(hardware, Hardware) else load_hardware(str(hardware), hardware_config)
    spec.check_tp(tp)
    eng = resolve_engine(engine, spec, hw, tp)
    blocks = kv_blocks_for(eng, spec, hw)
    check_kv_capacity(eng, spec, blocks)
    lm, cal = _latency(latency_model, overhead, calibration, spec, hw, tp, eng.async_scheduling)
    if frontend_latency_s is None:
        frontend_latency_s = cal.frontend_latency_s if cal is not None else 0.0
    if frontend_per_token_s is None:
        frontend_per_token_s = cal.frontend_per_token_s if cal is not None else 0.0
    for flag, v in (("--frontend-latency-ms", frontend_latency_s), ("frontend_per_token_s", frontend_per_token_s)):
        if isinstance(v, bool) or not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
            raise ConfigError(f"{flag}: {v!r} s must be a finite number >= 0")
    source, described = _workload_source(workload, seed)
    from servesim.workload.sources import ClosedLoopListSource, ClosedLoopSource

    closed_loop = isinstance(source, (ClosedLoopSource, ClosedLoopListSource))
    if frontend_latency_s or frontend_per_token_s:
        from servesim.workload.frontend import FrontendSource

        # The API server delays each request before the engine sees it (workload/frontend.py).
        source = FrontendSource(source, frontend_latency_s, frontend_per_token_s)
    if record_token_times is None:
        record_token_times = keep_requests
    sim = Simulator(eng, lm, blocks, frontend_latency_s=0.0, record_token_times=record_token_times,
                    check_invariants=check_invariants, event_skipping=event_skipping)
    records: list[RequestRecord] = []
    stream = None if keep_requests else _Stream()
    bins = ArrivalBins()  # fixed-memory saturation record, fed the same way in both summary modes

    def keep(rec: RequestRecord) -> None:
        records.append(rec)
        bins.add_record(rec)
        if on_record is not None:
            on_record(rec)

    def fold(rec: RequestRecord) -> None:
        stream.add(rec)  # type: ignore[union-attr]
        bins.add_record(rec)
        if on_record is not None:
            on_record(rec)

    stats = sim.run(source, on_finish=keep if keep_requests else fold)
    if stream is None:
        records.sort(key=lambda r: r.id)
        summary = summarize(records)
        stages = {}
        if len({r.stage for r in records}) > 1:
            stages = {str(k): v for k, v in summarize_by_stage(records).items()}
    else:
        summary, stages = stream.summaries()
    if stats.rejected:
        # Requests refused one by one before the engine (vLLM's API answers 400), counted by reason.
        summary["rejected_by_reason"] = dict(sorted(stats.rejected_by_reason.items()))
    summary["preemptions"] = stats.preemptions
    summary["kv_cache_peak_usage"] = stats.kv_peak_usage
    summary["prefix_cache_hit_rate"] = (
        stats.prefix_cache_hit_tokens / stats.prefix_cache_queried_tokens if stats.prefix_cache_queried_tokens else 0.0
    )
    summary["engine_steps"] = stats.steps
    summary["engine_busy_s"] = stats.busy_s
    verdict = bins.verdict(closed_loop=closed_loop)
    summary["saturated"] = verdict.saturated
    summary["saturation"] = verdict.as_dict()
    summary["prediction_intervals"] = _intervals(summary, cal, spec, hw, tp, eng, bins.max_context_tokens)
    config = {
        "servesim_version": __version__,
        "model": spec.name,
        "model_source": spec.source,
        "model_format": {"dtype": spec.dtype, "quantization": spec.quant_method or None, "kv_cache_dtype": spec.kv_cache_dtype,
                         "weight_bytes": spec.weight_bytes, "max_model_len_derived": spec.max_model_len},
        "hardware": hw.name,
        "hardware_spec": {k: getattr(hw, k) for k in ("bf16_tflops", "fp8_tflops", "hbm_tb_s", "usable_memory_bytes", "nvlink_gb_s", "bw_efficiency", "per_layer_overhead_us")},
        "kernel_efficiency": kernel_provenance(hw),
        "tensor_parallel_size": tp,
        "engine": eng.model_dump(),
        "num_gpu_blocks": blocks,
        "latency_model": getattr(lm, "name", str(latency_model)),
        "overhead": overhead,
        "calibration": cal.to_dict() if cal is not None else None,
        "frontend_latency_s": frontend_latency_s,
        "frontend_per_token_s": frontend_per_token_s,
        "workload": described,
        "seed": seed,
        "metrics": {"summary": "exact" if keep_requests else "streaming", "record_token_times": record_token_times}
        | ({} if keep_requests else {"percentile_rel_error": STREAM_REL_ERROR}),
    }
    return RunResult(config, summary, [per_request(r) for r in records], stages, records, stats)
