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
from servesim.engine.kv_cache import sliding_blocks_needed
from servesim.engine.kv_groups import KVGroups, kv_cache_groups
from servesim.errors import ConfigError
from servesim.latency.factory import DEFAULT_LATENCY_MODEL, DEFAULT_OVERHEAD, build_latency_model
from servesim.latency.transfer import provenance as kernel_provenance
from servesim.metrics import per_request, summarize, summarize_by_stage
from servesim.metrics.saturation import ArrivalBins

STREAM_REL_ERROR = 0.005  # streaming percentiles: relative error bound (metrics/streaming.py)
STREAM_BATCH = 4096  # records folded into the streaming summary at a time
# Front-end (API server) delay bounds, as for calibration files (latency/calibration.py FIELD_MAX): a request
# that waits a minute before the engine sees it is a broken server, not a latency to simulate.
MAX_FRONTEND_S = 60.0
MAX_FRONTEND_PER_TOKEN_S = 0.01
MAX_GPU_BLOCKS = 1 << 24  # largest --num-gpu-blocks-override (see kv_blocks_for)


@dataclass
class RunResult:
    """A finished run: `summary` (dict), `requests` (per-request dicts), the `config` that reproduces it."""

    config: dict[str, Any]
    summary: dict[str, Any]
    requests: list[dict[str, Any]]
    stages: dict[str, Any] = field(default_factory=dict)
    records: list[RequestRecord] = field(default_factory=list, repr=False)
    stats: EngineStats | None = field(default=None, repr=False)
    cluster: dict[str, Any] = field(default_factory=dict)  # cluster runs: instances, router, pools, kv_transfer
    cluster_stats: Any = field(default=None, repr=False)

    def to_dict(self, *, include_requests: bool = True) -> dict[str, Any]:
        """The JSON document `servesim run --output` writes."""
        out: dict[str, Any] = {"config": self.config, "summary": self.summary, **self.cluster}
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


def check_tp(tp: Any) -> int:
    """tp unchanged when it is an int >= 1 (not a bool or "2"); ConfigError naming --tp otherwise."""
    if isinstance(tp, bool) or not isinstance(tp, int) or tp < 1:
        raise ConfigError(f"--tp={tp!r}: must be an integer >= 1 (tensor-parallel GPUs)")
    return tp


def check_model_arg(model: Any) -> None:
    """ConfigError unless model is a model name / Hugging Face id / path (non-empty) or a ModelSpec."""
    if isinstance(model, ModelSpec):
        return
    if not isinstance(model, (str, Path)) or not str(model).strip():
        raise ConfigError(f"--model {model!r}: expected a bundled model name, a Hugging Face id, a config.json path or a ModelSpec")


def check_hardware_arg(hardware: Any, hardware_config: Any = None) -> None:
    """ConfigError unless hardware is a GPU preset name / JSON path (non-empty) or a Hardware, and hardware_config a path."""
    if not isinstance(hardware, Hardware) and (not isinstance(hardware, (str, Path)) or not str(hardware).strip()):
        raise ConfigError(f"--hardware {hardware!r}: expected a GPU preset name (e.g. H100), a hardware JSON path or a Hardware")
    if hardware_config is not None and (not isinstance(hardware_config, (str, Path)) or not str(hardware_config).strip()):
        raise ConfigError(f"--hardware-config {hardware_config!r}: expected a path to a hardware JSON file")


def _check_flag(name: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise ConfigError(f"{name}={value!r}: must be True or False")


def resolve_engine(
    engine: EngineConfig | Mapping[str, Any] | None, model: ModelSpec, hardware: Hardware, tp: int,
    parallel: Mapping[str, Any] | None = None,
) -> EngineConfig:
    """An EngineConfig with vLLM V1's GPU-dependent defaults filled in, at tensor parallelism tp (and the
    pipeline_parallel_size / enable_expert_parallel in `parallel`, when given, over the engine's)."""
    over = {"tensor_parallel_size": tp, **{k: v for k, v in (parallel or {}).items() if v is not None}}
    if engine is None:
        cfg = engine_config(**over)
    elif isinstance(engine, EngineConfig):
        cfg = engine_config(**{**engine.model_dump(), **over}) if len(over) > 1 else engine.model_copy(update=over)
    else:
        cfg = engine_config(**{**dict(engine), **over})
    from servesim.latency.parallel import pp_layer_partition

    pp_layer_partition(model.num_layers, cfg.pipeline_parallel_size)  # vLLM refuses more stages than layers
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


def engine_offload(engine: EngineConfig, model: ModelSpec, hardware: Hardware):
    """The engine's CPU KV tier (engine/offload.py OffloadSpec), or None when --kv-offloading-size is 0."""
    from servesim.engine.offload import offload_spec

    tp, pp = engine.tensor_parallel_size, engine.pipeline_parallel_size
    # One rank holds its TP shard of its PP stage's layers: the model's per-TP-rank block bytes / pp.
    block_bytes = engine.block_size * model.kv_bytes_per_token_per_gpu(tp) / pp
    return offload_spec(engine.kv_offloading_size, engine.kv_offloading_backend, tp * pp, block_bytes, hardware.host_link_gb_s)


def engine_dump(engine: EngineConfig) -> dict[str, Any]:
    """engine.model_dump(), without the CPU-offload fields while offload is off and without
    disable_hybrid_kv_cache_manager while it is False (outputs stay as before they existed)."""
    d = engine.model_dump()
    if not engine.kv_offloading_size:
        d.pop("kv_offloading_size", None)
        d.pop("kv_offloading_backend", None)
    if not engine.disable_hybrid_kv_cache_manager:
        d.pop("disable_hybrid_kv_cache_manager", None)
    return d


def engine_kv_layout(engine: EngineConfig, model: ModelSpec, kv_transfer: bool = False) -> tuple[int, KVGroups | None]:
    """(window the KV manager frees blocks outside of, KV cache groups): vLLM's hybrid KV cache manager (one table
    per group, engine/kv_hybrid.py) when the model mixes full and sliding-window layers and nothing turns it off;
    else one table: every layer slides (window > 0, groups None) or every layer is full attention (0, None).

    kv_transfer: the engine runs a KV connector (PD disaggregation)."""
    full, sliding = model.num_full_layers, model.num_sliding_layers
    if not sliding:
        return 0, None
    if not full:
        return model.sliding_window, None  # one sliding group (Mistral v0.1), hybrid manager or not
    # vLLM 0.11 VllmConfig.__post_init__ turns the hybrid manager off under any KV connector ("not compatible with KV
    # transfer"): the CPU offloading connector and the PD (NIXL) one; unify_hybrid_kv_cache_specs then makes every
    # sliding layer a full one.
    if engine.disable_hybrid_kv_cache_manager or engine.kv_offloading_size or kv_transfer:
        return 0, None
    if engine.pipeline_parallel_size > 1:
        raise ConfigError(
            f"--pipeline-parallel-size {engine.pipeline_parallel_size}: {model.name} mixes {full} full-attention and "
            f"{sliding} sliding-window layers; the hybrid KV cache manager's groups per pipeline stage are not modelled "
            "(add --disable-hybrid-kv-cache-manager, or run PP1)")
    return model.sliding_window, kv_cache_groups(full, sliding)


def kv_groups_entry(model: ModelSpec, groups: KVGroups | None) -> dict[str, Any]:
    """{'kv_cache_groups': ...} for the config of a model with full and sliding-window layers (whether vLLM's hybrid
    manager is on, and its groups; groups None = off: one table in which every layer keeps the whole sequence);
    {} for any other model, whose outputs stay as before the key existed."""
    if not (model.num_sliding_layers and model.num_full_layers):
        return {}
    if groups is None:
        return {"kv_cache_groups": {"hybrid": False, "sliding_window": model.sliding_window}}
    return {"kv_cache_groups": {"hybrid": True, "group_size": groups.group_size, "full_groups": groups.full_groups,
                                "sliding_groups": groups.sliding_groups, "sliding_window": model.sliding_window}}


def check_kv_capacity(engine: EngineConfig, model: ModelSpec, blocks: int, kv_transfer: bool = False) -> None:
    """Raise ConfigError, as vLLM's check_enough_kv_cache_memory does at start-up, unless one
    max_model_len request fits the KV cache of `blocks` blocks per GPU."""
    bs, length = engine.block_size, int(engine.max_model_len or model.max_model_len)
    step = int(engine.max_num_batched_tokens or length)
    window, groups = engine_kv_layout(engine, model, kv_transfer)
    if groups is not None:
        _check_hybrid_kv_capacity(engine, model, blocks, window, groups, length, step)
        return
    need = sliding_blocks_needed(length, window, step, bs) if window else -(-length // bs)
    if blocks >= need or blocks < 2:  # < 2 blocks: the engine's own one-line refusal (engine/simulator.py)
        return
    per_block = bs * model.kv_bytes_per_token_per_gpu(engine.tensor_parallel_size)
    source = _blocks_source(engine, blocks)
    raise ConfigError(
        f"KV cache holds {blocks * bs:,} tokens ({blocks:,} blocks of {bs}, {source}); max_model_len {length:,} needs "
        f"{need:,} blocks: to serve at least one request with the model's max seq len ({length:,}), "
        f"{need * per_block / (1 << 30):.2f} GiB KV cache is needed, which is larger than the available KV cache memory "
        f"({blocks * per_block / (1 << 30):.2f} GiB); the estimated maximum model length is {blocks * bs:,}. "
        f"Try increasing --gpu-memory-utilization or decreasing --max-model-len"
    )


def _blocks_source(engine: EngineConfig, blocks: int) -> str:
    """Where a KV block count came from, as the start-up refusals name it."""
    if engine.num_gpu_blocks_override is not None:
        return f"--num-gpu-blocks-override {blocks}"
    return f"gpu_memory_utilization={engine.gpu_memory_utilization}"


def _check_hybrid_kv_capacity(engine: EngineConfig, model: ModelSpec, blocks: int, window: int, groups: KVGroups,
                              length: int, step: int) -> None:
    """check_kv_capacity() under the hybrid manager: vLLM sums max_memory_usage_bytes over the layers, each full
    layer holding max_model_len tokens and each sliding one its window plus one step's tokens (and one block)."""
    if blocks < 2:
        return
    bs = engine.block_size
    full, sliding = model.num_full_layers, model.num_sliding_layers

    def pages(n: int) -> int:  # one-layer pages a request of n tokens needs over all layers
        return full * -(-n // bs) + sliding * sliding_blocks_needed(n, window, step, bs)

    have = blocks * groups.group_size  # a pool block is one page of group_size layers
    if pages(length) <= have:
        return
    lo, hi = 0, length  # vLLM estimate_max_model_len: the longest length whose need fits (binary search)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if pages(mid) <= have else (lo, mid - 1)
    page = bs * model.kv_bytes_per_token_per_gpu(engine.tensor_parallel_size) / model.num_layers
    source = _blocks_source(engine, blocks)
    raise ConfigError(
        f"KV cache holds {blocks:,} blocks of {bs} tokens x {groups.group_size} layers ({source}; hybrid KV cache manager, "
        f"{full} full + {sliding} sliding-window layers); max_model_len {length:,} needs {pages(length):,} one-layer pages: "
        f"to serve at least one request with the model's max seq len ({length:,}), {pages(length) * page / (1 << 30):.3f} GiB "
        f"KV cache is needed, which is larger than the available KV cache memory ({have * page / (1 << 30):.3f} GiB); "
        f"the estimated maximum model length is {lo:,}. Try increasing --gpu-memory-utilization or decreasing --max-model-len"
    )


def lora_slot_bytes(engine: EngineConfig, model: ModelSpec) -> float:
    """Bytes per GPU of the max_loras adapter slots vLLM allocates at start-up (each padded to max_lora_rank)."""
    from servesim.latency.lora import adapter_bytes_per_gpu

    # vLLM's memory profile runs with dummy LoRAs in every slot: the slots come out of the KV cache's memory.
    return engine.max_loras * adapter_bytes_per_gpu(model, engine.tensor_parallel_size, engine.max_lora_rank)


def kv_blocks_for(engine: EngineConfig, model: ModelSpec, hardware: Hardware, kv_transfer: bool = False) -> int:
    """KV blocks per GPU: the override when set, else vLLM's memory profile (engine/capacity.py).

    kv_transfer: the engine runs a KV connector (PD disaggregation), which turns vLLM's hybrid manager off."""
    tp, pp = engine.tensor_parallel_size, engine.pipeline_parallel_size
    weights, kv_token = model.weight_bytes, model.kv_bytes_per_token_per_gpu(tp)
    _, groups = engine_kv_layout(engine, model, kv_transfer)
    if groups is not None:
        # vLLM get_kv_cache_config_from_groups: a block is one page of group_size layers, shared by all groups, so
        # num_blocks = available // (page_size * group_size) (engine/kv_groups.py hybrid_num_gpu_blocks).
        kv_token = kv_token * groups.group_size / model.num_layers
    if pp > 1:
        # vLLM takes the smallest block count over the workers: the heaviest stage's layers, with one vocab matrix
        # (embedding on the first stage, LM head on the last), each stage caching KV for its own layers only.
        from servesim.latency.parallel import pp_layer_partition

        frac = max(pp_layer_partition(model.num_layers, pp)) / model.num_layers
        vocab = model.vocab_size * model.hidden_size * model.served_bytes
        weights = (weights - model.embedding_params * model.served_bytes) * frac + vocab
        kv_token = kv_token * frac
    have = hardware.usable_memory_bytes * engine.gpu_memory_utilization
    if engine.enable_lora:
        slots = lora_slot_bytes(engine, model)
        if slots + weights / tp > have:
            raise ConfigError(
                f"--max-loras {engine.max_loras} --max-lora-rank {engine.max_lora_rank}: the adapter slots need "
                f"{slots / (1 << 30):.2f} GiB per GPU on top of {weights / tp / (1 << 30):.1f} GiB of weights; "
                f"{have / (1 << 30):.1f} GiB available (lower --max-loras or --max-lora-rank)")
        weights += slots * tp
    if weights / tp > have:
        # vLLM fails loading the weights (CUDA out of memory), override or not.
        raise ConfigError(
            f"{model.name} does not fit on {hardware.name} at TP{tp}" + (f" PP{pp}" if pp > 1 else "") +
            f": weights need {weights / tp / (1 << 30):.1f} GiB per GPU, {have / (1 << 30):.1f} GiB available at "
            f"gpu_memory_utilization={engine.gpu_memory_utilization} (raise --tp or --gpu-memory-utilization, or quantise)"
        )
    if engine.num_gpu_blocks_override is not None:
        n = engine.num_gpu_blocks_override
        # The engine keeps a few Python objects per KV block (engine/kv_cache.py), so the override is capped at
        # MAX_GPU_BLOCKS (~1 GB of block table) instead of failing with MemoryError. The cap is not a physical one:
        # the seed's experiment (validation/h2b.py) uses 1,000,000 blocks to mean "KV never binds".
        if n > MAX_GPU_BLOCKS:
            fit = int(hardware.usable_memory_bytes // (engine.block_size * model.kv_bytes_per_token_per_gpu(tp)))
            raise ConfigError(
                f"--num-gpu-blocks-override {n}: at most {MAX_GPU_BLOCKS:,} blocks (servesim's block table); "
                f"{hardware.name}'s whole memory holds {fit:,} blocks of {engine.block_size} tokens of {model.name}'s KV cache"
            )
        return n
    try:
        return num_gpu_blocks(
            gpu_memory_bytes=hardware.usable_memory_bytes,
            gpu_memory_utilization=engine.gpu_memory_utilization,
            weight_bytes=weights,
            tensor_parallel_size=tp,
            kv_bytes_per_token_per_gpu=kv_token,
            block_size=engine.block_size,
            max_num_batched_tokens=int(engine.max_num_batched_tokens or 2048),
            hidden_size=model.hidden_size,
            intermediate_size=model.dense_intermediate_size or model.intermediate_size,
        )
    except ConfigError:
        need = weights / tp / (1 << 30)
        have = hardware.usable_memory_bytes * engine.gpu_memory_utilization / (1 << 30)
        raise ConfigError(
            f"{model.name} does not fit on {hardware.name} at TP{tp}: weights need {need:.1f} GiB per GPU, "
            f"{have:.1f} GiB available at gpu_memory_utilization={engine.gpu_memory_utilization} "
            f"(raise --tp or --gpu-memory-utilization)"
        ) from None


def _latency(latency_model: Any, overhead: str, calibration: Any, spec: ModelSpec, hw: Hardware, tp: int,
             async_scheduling: bool, eng: EngineConfig | None = None) -> tuple[Any, Any]:
    """The step-time model (and the calibration it uses, if any)."""
    if not isinstance(latency_model, str):
        lm, cal = latency_model, getattr(latency_model, "calibration", None)
    else:
        par: dict[str, Any] = {}
        if eng is not None and (eng.pipeline_parallel_size > 1 or eng.enable_expert_parallel):
            par = {"pp": eng.pipeline_parallel_size, "enable_expert_parallel": eng.enable_expert_parallel}
        lm, cal = build_latency_model(latency_model, spec, hw, tp, overhead, calibration, async_scheduling=async_scheduling, **par)
    if eng is not None and eng.enable_lora:
        from servesim.latency.lora import with_lora

        lm = with_lora(lm, spec, hw, tp, eng)  # the shrink/expand kernels and adapter loads (latency/lora.py)
    return lm, cal


def check_lora_workload(described: Mapping[str, Any] | None, engines: Iterable[EngineConfig]) -> None:
    """ConfigError when a workload assigns LoRA adapters and an engine serving it has LoRA off."""
    if described and described.get("lora") is not None and not all(e.enable_lora for e in engines):
        # vLLM answers 404 (model does not exist) for an adapter it does not serve: refused whole, before the run.
        raise ConfigError(f"--lora-adapters / workload lora {described['lora']}: the workload asks for LoRA adapters but the engine has "
                          "LoRA off; add --enable-lora (engine enable_lora: true)")


def lora_summary(summary: dict[str, Any], stats: Iterable[EngineStats], engines: Iterable[EngineConfig]) -> None:
    """Add summary['lora'] (adapter loads over the run) when LoRA is on in some engine; nothing otherwise."""
    engines = list(engines)
    if not any(e.enable_lora for e in engines):
        return
    st = list(stats)
    e = next(e for e in engines if e.enable_lora)
    summary["lora"] = {"max_loras": e.max_loras, "max_lora_rank": e.max_lora_rank, "max_cpu_loras": e.cpu_loras,
                       "adapter_loads": sum(s.lora_loads for s in st), "disk_loads": sum(s.lora_disk_loads for s in st)}


def _workload_source(workload: Any, seed: int | None) -> tuple[RequestSource, dict[str, Any] | None]:
    from servesim.workload import ListSource, WorkloadSpec, build_source, load_workload, parse_workload

    if workload is None:
        workload = "chat"
    if isinstance(workload, (str, Path)):
        spec = load_workload(workload)
    elif isinstance(workload, WorkloadSpec):
        spec = workload
    elif isinstance(workload, Mapping):
        spec = parse_workload(dict(workload))
    elif hasattr(workload, "peek_arrival_s"):
        return workload, None
    else:
        from servesim.engine import RequestSpec
        from servesim.errors import WorkloadError

        try:
            items = list(workload)
        except TypeError:
            items = None
        bad = None if items is None else next((i for i, x in enumerate(items) if not isinstance(x, RequestSpec)), None)
        if items is None or bad is not None:
            what = type(workload).__name__ if items is None else f"item {bad} is {type(items[bad]).__name__}"
            raise WorkloadError(f"workload: {what}; expected a preset name, a YAML path, a mapping, a WorkloadSpec, "
                                "a RequestSource or a list of RequestSpec")
        return ListSource(items), None
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
        # No calibration run used these (docs/LATENCY.md, "Attention variants" and "Parallelism").
        if eng.pipeline_parallel_size > 1:
            outside.append(f"pipeline parallelism PP{eng.pipeline_parallel_size} (no calibration run used PP)")
        if eng.enable_expert_parallel and spec.is_moe:
            outside.append("expert parallelism (no calibration run used EP)")
        if spec.num_sliding_layers:
            outside.append("sliding-window layers (no calibration run had them)")
        if eng.enable_lora:
            outside.append("LoRA adapters (no calibration run served LoRA; its cost is an unfitted roofline term)")
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


def check_run(
    model: Any = "llama-2-7b-hf", hardware: Any = "H100", tp: Any = 1, *, engine: Any = None,
    latency_model: Any = DEFAULT_LATENCY_MODEL, overhead: Any = DEFAULT_OVERHEAD, calibration: Any = None,
    hardware_config: Any = None, **_: Any,
) -> None:
    """Raise the ServesimError simulate() would for this configuration (model, GPU, TP, engine, step-time model),
    without running anything; the workload is not checked."""
    check_model_arg(model)
    check_hardware_arg(hardware, hardware_config)
    check_tp(tp)
    spec = model if isinstance(model, ModelSpec) else load_model(model)
    hw = hardware if isinstance(hardware, Hardware) else load_hardware(str(hardware), hardware_config)
    spec.check_tp(tp)
    eng = resolve_engine(engine, spec, hw, tp)
    kv_blocks_for(eng, spec, hw)
    _latency(latency_model, overhead, calibration, spec, hw, tp, eng.async_scheduling)


def client_source(workload: Any, seed: int | None, cal: Any, frontend_latency_s: float | None,
                  frontend_per_token_s: float | None) -> tuple[RequestSource, dict[str, Any] | None, bool, float, float]:
    """(source, its description, closed loop?, front-end s, front-end s/token): the workload's requests as the
    engine (or the cluster's router) sees them, after the API server's delay (None = the calibration's, else 0)."""
    if frontend_latency_s is None:
        frontend_latency_s = cal.frontend_latency_s if cal is not None else 0.0
    if frontend_per_token_s is None:
        frontend_per_token_s = cal.frontend_per_token_s if cal is not None else 0.0
    for flag, v, most in (("--frontend-latency-ms", frontend_latency_s, MAX_FRONTEND_S), ("frontend_per_token_s", frontend_per_token_s, MAX_FRONTEND_PER_TOKEN_S)):
        if isinstance(v, bool) or not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
            raise ConfigError(f"{flag}: {v!r} s must be a finite number >= 0")
        if v > most:
            raise ConfigError(f"{flag}: {v!r} s must be <= {most:g} s")
    source, described = _workload_source(workload, seed)
    from servesim.workload.sources import ClosedLoopListSource, ClosedLoopSource

    closed_loop = isinstance(source, (ClosedLoopSource, ClosedLoopListSource))
    if frontend_latency_s or frontend_per_token_s:
        from servesim.workload.frontend import FrontendSource

        # The API server delays each request before the engine sees it (workload/frontend.py); in a cluster each
        # pod's API server does, and the router decides at hand-over time, adding no latency of its own.
        source = FrontendSource(source, frontend_latency_s, frontend_per_token_s)
    return source, described, closed_loop, frontend_latency_s, frontend_per_token_s


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
    pp: int | None = None,
    enable_expert_parallel: bool | None = None,
    instances: int = 1,
    router: Any = None,
    data_parallel_size: int = 1,
    prefill_instances: int = 0,
    decode_instances: int = 0,
    kv_link: Any = None,
    cluster: Any = None,
) -> RunResult:
    """Simulate one vLLM engine serving a workload and summarise what clients would measure.

    Cluster runs (servesim/cluster_sim.py): instances=N identical engines behind router (a name, or a
    cluster.RouterConfig); data_parallel_size=N the same with vLLM's internal DP load balancer;
    prefill_instances=P, decode_instances=D prefill/decode pools joined by kv_link ('nvlink', 'rdma' or a
    cluster.KVLink); cluster= a cluster YAML path or ClusterSpec for heterogeneous pools.

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
    (engine/skipping.py). pp / enable_expert_parallel (vLLM --pipeline-parallel-size, --enable-expert-parallel)
    override the engine's pipeline_parallel_size / enable_expert_parallel when given (latency/parallel.py).
    dtype, quantization and kv_cache_dtype are vLLM's --dtype, --quantization and
    --kv-cache-dtype (config/quant.py). Set-ups vLLM refuses at start-up raise ConfigError: max_model_len above
    the model's derived maximum, a KV cache smaller than one max_model_len request, weights that do not fit.
    """
    from servesim.workload.spec import check_seed

    check_model_arg(model)
    check_hardware_arg(hardware, hardware_config)
    check_tp(tp)
    seed = check_seed(seed)
    for name, flag in (("check_invariants", check_invariants), ("keep_requests", keep_requests), ("event_skipping", event_skipping)):
        _check_flag(name, flag)
    if record_token_times is not None:
        _check_flag("record_token_times", record_token_times)
    if engine is not None and not isinstance(engine, (EngineConfig, Mapping)):
        raise ConfigError(f"engine={engine!r}: expected a mapping of vLLM engine arguments or an EngineConfig")
    if not isinstance(latency_model, str) and not callable(getattr(latency_model, "step_time", None)):
        raise ConfigError(f"--latency-model {latency_model!r}: expected a model name (calibrated, roofline-v2, ...) or an object with step_time()")
    if not isinstance(overhead, str):
        raise ConfigError(f"--overhead {overhead!r}: expected a variant name (none, fixed, per-layer, ...)")
    if on_record is not None and not callable(on_record):
        raise ConfigError(f"on_record={on_record!r}: must be callable")
    if cluster is not None or instances != 1 or data_parallel_size != 1 or prefill_instances or decode_instances or router is not None:
        from servesim.cluster_sim import cluster_from_args, simulate_cluster
        size = engine.kv_offloading_size if isinstance(engine, EngineConfig) else (engine or {}).get("kv_offloading_size")
        if size:
            raise ConfigError(f"--kv-offloading-size {size}: CPU KV offload is modelled for one instance only, not in a cluster; "
                              "set it to 0 or run one instance")

        if (dtype, quantization, kv_cache_dtype) != ("auto", None, "auto"):
            raise ConfigError("--dtype/--quantization/--kv-cache-dtype: not yet supported for clusters (give a config.json "
                              "with the format instead)")
        par = {k: v for k, v in (("pipeline_parallel_size", pp), ("enable_expert_parallel", enable_expert_parallel)) if v is not None}
        if par:  # every pool of a flag-built cluster runs the same engine: pp/EP go into its engine args
            engine = {**(engine.model_dump() if isinstance(engine, EngineConfig) else dict(engine or {})), **par}

        pools, rcfg, link = cluster_from_args(
            model, hardware, tp, engine, hardware_config, instances=instances, router=router, seed=seed,
            data_parallel_size=data_parallel_size, prefill_instances=prefill_instances,
            decode_instances=decode_instances, kv_link=kv_link, cluster=cluster)
        return simulate_cluster(
            pools, workload=workload, router=rcfg, link=link, latency_model=latency_model, overhead=overhead,
            calibration=calibration, frontend_latency_s=frontend_latency_s, frontend_per_token_s=frontend_per_token_s,
            seed=seed, record_token_times=record_token_times, check_invariants=check_invariants,
            keep_requests=keep_requests, event_skipping=event_skipping, on_record=on_record)
    if isinstance(model, ModelSpec):
        if (dtype, quantization, kv_cache_dtype) != ("auto", None, "auto"):
            raise ConfigError("dtype/quantization/kv_cache_dtype: apply to a model name or path; a ModelSpec is already resolved")
        spec = model
    else:
        spec = load_model(model, dtype=dtype, quantization=quantization, kv_cache_dtype=kv_cache_dtype)
    hw = hardware if isinstance(hardware, Hardware) else load_hardware(str(hardware), hardware_config)
    spec.check_tp(tp)
    eng = resolve_engine(engine, spec, hw, tp, {"pipeline_parallel_size": pp, "enable_expert_parallel": enable_expert_parallel})
    blocks = kv_blocks_for(eng, spec, hw)
    check_kv_capacity(eng, spec, blocks)
    lm, cal = _latency(latency_model, overhead, calibration, spec, hw, tp, eng.async_scheduling, eng)
    source, described, closed_loop, frontend_latency_s, frontend_per_token_s = client_source(
        workload, seed, cal, frontend_latency_s, frontend_per_token_s)
    check_lora_workload(described, [eng])
    if record_token_times is None:
        record_token_times = keep_requests
    offload = engine_offload(eng, spec, hw)
    draft = None
    wl_acc = (described or {}).get("speculative_acceptance")
    if wl_acc is not None and eng.speculative_config is None:
        raise ConfigError(f"workload: speculative_acceptance={wl_acc!r}: needs --speculative-config (speculative decoding is off)")
    if eng.speculative_config is not None:
        from servesim.config.speculative import with_workload_acceptance

        eng = eng.model_copy(update={"speculative_config": with_workload_acceptance(eng.speculative_config, wl_acc)})
        from servesim.latency.spec_decode import draft_time_fn

        draft = draft_time_fn(eng.speculative_config, spec, hw, tp)
    window, groups = engine_kv_layout(eng, spec)
    sim = Simulator(eng, lm, blocks, frontend_latency_s=0.0, record_token_times=record_token_times,
                    check_invariants=check_invariants, event_skipping=event_skipping, sliding_window=window,
                    offload=offload, spec_seed=seed or 0, draft_time=draft, kv_groups=groups)
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
    if offload is not None:
        summary["cpu_prefix_cache_hit_rate"] = (
            stats.cpu_prefix_cache_hit_tokens / stats.cpu_prefix_cache_queried_tokens if stats.cpu_prefix_cache_queried_tokens else 0.0
        )
    summary["engine_steps"] = stats.steps
    summary["engine_busy_s"] = stats.busy_s
    lora_summary(summary, [stats], [eng])
    sd = sim.scheduler.spec if sim.scheduler is not None else None
    if sd is not None:  # only with speculative decoding on: runs without it keep their summary keys
        summary["speculative_decoding"] = {
            "proposed_tokens": sd.proposed, "accepted_tokens": sd.accepted,
            "acceptance_rate": sd.accepted / sd.proposed if sd.proposed else 0.0,
        }
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
        "engine": engine_dump(eng),
        "num_gpu_blocks": blocks,
        "latency_model": getattr(lm, "name", str(latency_model)),
        "overhead": overhead,
        "calibration": cal.to_dict() if cal is not None else None,
        "frontend_latency_s": frontend_latency_s,
        "frontend_per_token_s": frontend_per_token_s,
        "workload": described,
        "seed": seed,
        **({"num_cpu_blocks": offload.num_cpu_blocks, "host_link_gb_s": hw.host_link_gb_s} if offload is not None else {}),
        **kv_groups_entry(spec, groups),
        "metrics": {"summary": "exact" if keep_requests else "streaming", "record_token_times": record_token_times}
        | ({} if keep_requests else {"percentile_rel_error": STREAM_REL_ERROR}),
    }
    return RunResult(config, summary, [per_request(r) for r in records], stages, records, stats)
