"""WorkloadSpec: the user's workload description (YAML or CLI flags), and the RequestSource built from it.

YAML shape (every key optional unless noted; unknown keys are refused, naming the key):

    input_tokens:  {kind: gaussian, mean: 512, stdev: 256, min: 2, max: 2048}   # or an int = constant
    output_tokens: {kind: gaussian, mean: 256, stdev: 128, min: 2, max: 1024}
    prefix_tokens: 0            # one shared prefix prepended to every prompt (counts inside input)
    shared_prefix: {num_groups: 4, users_per_group: 8, system_prompt_len: 512, question_len: 128, output_len: 256}
    arrival: {process: poisson, rate: 4}     # synchronous | concurrency (concurrency, think_time_s)
                                             # | constant | poisson | gamma (cv) ; rate or stages
                                             # | concurrent (concurrency) | throughput (GuideLLM names)
                                             # | vllm (rate: absent = inf, burstiness): vllm bench serve
    max_concurrency: 64         # cap on requests in flight (vllm bench --max-concurrency; GuideLLM throughput streams)
    num_requests: 500           # and/or duration_s
    trace: {path: trace.csv, format: auto, sort: false, errors: skip}   # or just the path; format: see trace_formats.py
                                # columns: "arrival=t,input=p,output=o,arrival_unit=ms"; tokenizer: tokenizer.json (ShareGPT)
    inference_perf:             # an inference-perf run: its prompt list sent cyclically, load stages
      shared_prefix: {num_groups: 10, num_prompts_per_group: 10, system_prompt_len: 100, question_len: 447,
                      output_len: 248, extra_input_tokens: {kind: gaussian, mean: 27.87, stdev: 6.49, min: 12, max: 45}}
      stages: [{rate: 8, duration: 600}, {rate: 20, duration: 600}]
      arrival: poisson          # or constant (exact 1/rate gaps)
    lora: {adapters: 8}         # LoRA adapters lora-0 … lora-7, uniform; or {weights: {sql: 3, chat: 1}} (needs --enable-lora)
    seed: 0

A trace replaces lengths, prefixes and arrival (it may be cut by num_requests / duration_s).
Relative file paths in a YAML file are resolved against the YAML file's folder.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import numpy as np
from pydantic import AliasChoices, BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, ValidationInfo
from pydantic import field_validator, model_validator

from servesim.config.compressed import read_bytes, strip_gz
from servesim.config.yamlfile import YamlProblem, parse_yaml_bytes
from servesim.engine.request import RequestSource
from servesim.errors import WorkloadError
from servesim.workload import arrivals as arr
from servesim.workload.distributions import MAX_LENGTH, LengthDistribution, length_distribution
from servesim.workload.lora import MAX_ADAPTERS, LoraMixSource, LoraMixSpec
from servesim.workload.prompts import CycledPrompts, PromptModel, Prompts, SharedPrefixPrompts
from servesim.workload.sources import ClosedLoopListSource, ClosedLoopSource, ConcurrencyCap, ListSource, OpenLoopSource
from servesim.workload.formats.columns import parse_columns
from servesim.workload.trace_formats import FORMAT_NAMES, FORMATS, UNTIMED, TraceOptions, read_trace_file
from servesim.workload.traces import Trace, read_trace

__all__ = [
    "ArrivalSpec",
    "InferencePerfSpec",
    "LengthSpec",
    "PRESETS",
    "SharedPrefixSpec",
    "StageSpec",
    "TraceSpec",
    "WorkloadSpec",
    "build_prompts",
    "build_source",
    "load_workload",
    "load_workload_yaml",
    "parse_workload",
    "preset",
    "workload_from_flags",
]


# Most closed-loop clients a workload may have (each is a live request slot; vLLM engines run ~10^3).
MAX_CLIENTS = 1_000_000
# Most requests one run may send. Finished requests stream into a fixed-memory summary, but under overload (rate
# above what the engine serves) every arrived, unserved request waits in the scheduler's queue (~0.4 kB each,
# measured): 10^7 bounds that at ~4 GB and ~1-2 h of simulation (~2,000 requests/s on one core); a larger
# num_requests (10^14 would run for years) is refused rather than left to run (use duration_s to cut a run).
MAX_REQUESTS = 10_000_000
# Seeds: numpy.random.default_rng takes any integer >= 0; servesim caps them at int64 (2**63 - 1) so they survive
# JSON/CSV round trips through tools that read int64.
MAX_SEED = 2**63 - 1
SEED_RULE = "must be an integer in [0, 2**63 - 1]"


def check_seed(seed: Any) -> int | None:
    """seed unchanged when it is None or an int in [0, MAX_SEED]; WorkloadError naming the value otherwise."""
    if seed is None:
        return None
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed <= MAX_SEED:
        raise WorkloadError(f"seed={seed!r}: {SEED_RULE}")
    return int(seed)


class _Strict(BaseModel):
    # strict: YAML `rate: true` or `num_requests: "5"` is refused (a boolean or a string is not a number).
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False, strict=True)


def _resolve(path: str, info: ValidationInfo) -> str:
    """path made absolute against the validation context's base_dir (the YAML folder), if any."""
    base = (info.context or {}).get("base_dir")
    return str(Path(base) / path) if base is not None and not Path(path).is_absolute() else path


class LengthSpec(_Strict):
    """A token-length distribution: `kind` plus that kind's parameters (an int means constant)."""

    kind: Literal["constant", "gaussian", "uniform", "exponential", "lognormal", "empirical"]
    value: int | None = None
    mean: float | None = None
    stdev: float | None = None
    min: int | None = None
    max: int | None = None
    values: list[int] | None = None
    file: str | None = None
    column: str | None = None
    _dist: Any = PrivateAttr(default=None)
    # Not strict: 512.0 is accepted as 512 (distributions.py); booleans are refused by _shorthand below.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False, strict=False)

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        if isinstance(data, (int, float)) and not isinstance(data, bool):
            return {"kind": "constant", "value": data}
        if isinstance(data, dict):
            for key, v in data.items():
                if isinstance(v, bool) or (isinstance(v, list) and any(isinstance(x, bool) for x in v)):
                    raise ValueError(f"{key}={v!r}: true/false is not a number")
        return data

    @field_validator("file")
    @classmethod
    def _resolve_file(cls, v: str | None, info: ValidationInfo) -> str | None:
        return None if v is None else _resolve(v, info)

    @model_validator(mode="after")
    def _build(self) -> "LengthSpec":
        params = {k: getattr(self, k) for k in type(self).model_fields if k != "kind" and k in self.model_fields_set}
        try:
            self._dist = length_distribution(self.kind, params)
        except WorkloadError as exc:
            raise ValueError(str(exc)) from None
        return self

    def build(self) -> LengthDistribution:
        """The validated length distribution."""
        return self._dist


class StageSpec(_Strict):
    """One load stage: rate (req/s) for duration_s (s); inference-perf's `duration` is accepted too."""

    rate: float = Field(gt=0)
    duration_s: float = Field(gt=0, validation_alias=AliasChoices("duration_s", "duration"))


ArrivalName = Literal["synchronous", "concurrency", "concurrent", "throughput", "constant", "poisson", "gamma", "vllm"]
_CLOSED = ("synchronous", "concurrency", "concurrent", "throughput")
# GuideLLM's default max_concurrency (guidellm settings.max_concurrency = 512): the streams of its throughput profile.
GUIDELLM_MAX_CONCURRENCY = 512
# process: (required keys, other allowed keys); open-loop processes need exactly one of rate / stages.
_ARRIVAL_KEYS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "synchronous": ((), ("think_time_s",)),
    "concurrency": (("concurrency",), ("think_time_s",)),
    "concurrent": (("concurrency",), ()),  # GuideLLM: N streams, each sending its next request when one finishes
    "throughput": ((), ()),  # GuideLLM: everything at once, max_concurrency (default 512) in flight
    "constant": ((), ("rate", "stages")),
    "poisson": ((), ("rate", "stages")),
    "gamma": (("cv",), ("rate", "stages")),
    "vllm": ((), ("rate", "burstiness")),  # vllm bench serve: no rate = inf (all at t=0); burstiness default 1
}


class ArrivalSpec(_Strict):
    """How requests arrive: closed loop (synchronous, concurrency) or open loop at a rate or in stages."""

    process: ArrivalName
    rate: float | None = Field(None, gt=0)
    concurrency: int | None = Field(None, ge=1, le=MAX_CLIENTS)
    cv: float | None = Field(None, gt=0, le=1000)  # gamma shape 1/cv**2: above 1000 it underflows to bursts of 0 s gaps
    think_time_s: float | None = Field(None, ge=0)
    stages: tuple[StageSpec, ...] | None = Field(None, min_length=1, strict=False)  # a YAML list is fine
    burstiness: float | None = Field(None, gt=0, le=1e6)  # vllm bench --burstiness: gamma shape of the gaps

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        return {"process": data} if isinstance(data, str) else data

    @model_validator(mode="after")
    def _check(self) -> "ArrivalSpec":
        required, allowed = _ARRIVAL_KEYS[self.process]
        given = self.model_fields_set - {"process"}
        for key in sorted(given - set(required) - set(allowed)):
            allowed_keys = ", ".join(required + allowed) or "none"
            raise ValueError(f"{key} does not apply to process {self.process!r} (allowed: {allowed_keys})")
        for key in required:
            if key not in given:
                raise ValueError(f"process {self.process!r} needs {key}")
        if self.process not in (*_CLOSED, "vllm") and (self.rate is None) == (self.stages is None):
            raise ValueError(f"process {self.process!r} needs exactly one of rate or stages")
        return self

    @property
    def closed_loop(self) -> bool:
        """True for synchronous / concurrency."""
        return self.process in _CLOSED

    def build(self) -> arr.ArrivalProcess:
        """The arrival process this spec describes."""
        if self.closed_loop:
            return arr.ClosedLoop(self.concurrency or (GUIDELLM_MAX_CONCURRENCY if self.process == "throughput" else 1),
                                  self.think_time_s or 0.0)
        cv = self.cv or 1.0
        if self.stages is not None:
            return arr.staged([(s.rate, s.duration_s) for s in self.stages], self.process, cv)  # type: ignore[arg-type]
        return arr.OpenLoop(self.process, (arr.Stage(self.rate, math.inf),), cv)  # type: ignore[arg-type]


class SharedPrefixSpec(_Strict):
    """inference-perf shared_prefix (its key names are accepted too): groups × users, constant lengths."""

    num_groups: int = Field(ge=1, le=MAX_LENGTH, validation_alias=AliasChoices("num_groups", "num_unique_system_prompts"))
    users_per_group: int = Field(
        ge=1, le=MAX_LENGTH, validation_alias=AliasChoices("users_per_group", "num_users_per_system_prompt", "num_prompts_per_group")
    )
    system_prompt_len: int = Field(ge=1, le=MAX_LENGTH)
    question_len: int = Field(ge=1, le=MAX_LENGTH)
    output_len: int = Field(ge=1, le=MAX_LENGTH)


class InferencePerfSharedPrefix(_Strict):
    """inference-perf `data.shared_prefix` under its own key names, plus the tokens its client adds per prompt."""

    num_groups: int = Field(ge=1, le=MAX_LENGTH)
    num_prompts_per_group: int = Field(ge=1, le=MAX_LENGTH)
    system_prompt_len: int = Field(ge=1, le=MAX_LENGTH)
    question_len: int = Field(ge=1, le=MAX_LENGTH)
    output_len: int = Field(ge=1, le=MAX_LENGTH)
    extra_input_tokens: LengthSpec | None = None  # per prompt, on top of system + question (None = 0)


class InferencePerfSpec(_Strict):
    """An inference-perf workload: shared_prefix data sent cyclically, at each load stage's rate for its duration."""

    shared_prefix: InferencePerfSharedPrefix
    stages: tuple[StageSpec, ...] = Field(min_length=1, strict=False)  # a YAML list is fine
    # Measured on the inference-perf-h100 runs: inference-perf's `constant` load gave exponential gaps (CV 1.00).
    arrival: Literal["poisson", "constant"] = "poisson"

    def arrival_spec(self) -> "ArrivalSpec":
        """The equivalent staged open-loop ArrivalSpec."""
        return ArrivalSpec(process=self.arrival, stages=self.stages)

    def prompts(self) -> PromptModel:
        """The cycled prompt list (see workload.prompts.CycledPrompts)."""
        sp = self.shared_prefix
        extra = sp.extra_input_tokens.build() if sp.extra_input_tokens is not None else None
        return CycledPrompts(sp.num_groups, sp.num_prompts_per_group, sp.system_prompt_len, sp.question_len,
                             sp.output_len, extra)



# The names `trace: {format}` takes: auto, servesim's older reader names, and every row of the trace-format table.
TraceFormat = Literal[("auto", "csv", "jsonl", "inference_perf", *FORMATS)]  # type: ignore[valid-type]

class TraceSpec(_Strict):
    """A trace file to replay, in any format of workload/trace_formats.py (or read through a column map)."""

    path: str
    format: TraceFormat = "auto"
    columns: str | None = None  # arrival=COL,input=COL,output=COL[,arrival_unit=s|ms|us|ns|iso] (any CSV/JSONL)
    tokenizer: str | None = None  # local tokenizer.json for ShareGPT text (servesim[tokenizer]); else ~4 chars/token
    sort: bool = False  # False: an unsorted trace is refused, naming the row
    errors: Literal["skip", "impute", "raise"] = "skip"  # inference-perf rows with has_error
    stage_durations_s: tuple[Annotated[float, Field(gt=0, strict=True)], ...] | None = Field(None, min_length=1, strict=False)  # tag requests with load stages

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        return {"path": str(data)} if isinstance(data, (str, Path)) else data

    @field_validator("path")
    @classmethod
    def _resolve_path(cls, v: str, info: ValidationInfo) -> str:
        return _resolve(v, info)

    @field_validator("tokenizer")
    @classmethod
    def _resolve_tokenizer(cls, v: str | None, info: ValidationInfo) -> str | None:
        return None if v is None else _resolve(v, info)

    @field_validator("columns")
    @classmethod
    def _check_columns(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                parse_columns(v, "columns")
            except WorkloadError as exc:
                raise ValueError(str(exc)) from None
        return v

    @property
    def may_be_untimed(self) -> bool:
        """True when the trace may lack arrival times (ShareGPT), so an arrival process may come with it."""
        return self.columns is None and (self.format in UNTIMED or (self.format == "auto" and strip_gz(Path(self.path)).suffix.lower() == ".json"))

    def read(self) -> Trace:
        """The trace's requests (workload/trace_formats.py)."""
        opts = TraceOptions(self.sort, self.errors, self.stage_durations_s,
                            None if self.columns is None else parse_columns(self.columns), self.tokenizer)
        if self.format in ("csv", "jsonl", "inference_perf"):  # servesim's older format names
            return read_trace(self.path, format=self.format, sort=self.sort, errors=self.errors,
                              stage_durations_s=self.stage_durations_s)
        return read_trace_file(self.path, self.format, opts)


class WorkloadSpec(_Strict):
    """A whole workload: request shapes, arrivals and size, or a trace; plus the seed."""

    input_tokens: LengthSpec | None = None  # prompt tokens AFTER any prefix_tokens
    output_tokens: LengthSpec | None = None
    prefix_tokens: int = Field(0, ge=0, le=MAX_LENGTH)  # input = prefix_tokens + input_tokens draw (GuideLLM convention)
    shared_prefix: SharedPrefixSpec | None = None
    arrival: ArrivalSpec | None = None
    num_requests: int | None = Field(None, ge=1, le=MAX_REQUESTS)
    duration_s: float | None = Field(None, gt=0)
    trace: TraceSpec | None = None
    inference_perf: InferencePerfSpec | None = None
    max_concurrency: int | None = Field(None, ge=1, le=MAX_CLIENTS)  # vllm bench --max-concurrency: cap on in-flight requests
    lora: LoraMixSpec | None = None  # LoRA adapter mix (workload/lora.py); None = every request uses the base model
    # Speculative decoding: per-token draft acceptance for this text (a probability or one per draft position);
    # overrides the method default, not an explicit --speculative-acceptance (config/speculative.py).
    speculative_acceptance: float | list[float] | None = None
    seed: int = 0

    @field_validator("seed", mode="before")
    @classmethod
    def _seed(cls, v: Any) -> Any:
        try:
            return check_seed(v)
        except WorkloadError:
            raise ValueError(SEED_RULE) from None

    @model_validator(mode="after")
    def _check(self) -> "WorkloadSpec":
        given = self.model_fields_set
        if self.inference_perf is not None:
            for key in ("input_tokens", "output_tokens", "prefix_tokens", "shared_prefix", "arrival", "trace"):
                if key in given:
                    raise ValueError(f"{key} cannot be combined with inference_perf (it sets lengths and arrivals)")
            return self
        if self.max_concurrency is not None and self.arrival is not None and self.arrival.process in ("synchronous", "concurrency", "concurrent"):
            raise ValueError(f"max_concurrency does not apply to arrival {self.arrival.process!r} (it caps open-loop, trace and throughput loads)")
        if self.arrival is not None and self.arrival.process == "vllm" and self.num_requests is None:
            raise ValueError("arrival 'vllm' needs num_requests (vllm bench --num-prompts)")
        if self.trace is not None:
            untimed = self.trace.may_be_untimed
            for key in ("input_tokens", "output_tokens", "prefix_tokens", "shared_prefix", *(() if untimed else ("arrival",))):
                if key in given:
                    raise ValueError(f"{key} cannot be combined with trace (the trace gives lengths and arrivals)")
            return self
        if self.shared_prefix is not None:
            for key in ("input_tokens", "output_tokens", "prefix_tokens"):
                if key in given:
                    raise ValueError(f"{key} cannot be combined with shared_prefix (it sets the lengths)")
        else:
            for key in ("input_tokens", "output_tokens"):
                if getattr(self, key) is None:
                    raise ValueError(f"{key} is required unless trace or shared_prefix is given")
        if self.arrival is None:
            raise ValueError("arrival is required unless trace is given")
        if self.num_requests is None and self.duration_s is None and self.arrival.stages is None:
            raise ValueError("give num_requests and/or duration_s (or arrival stages)")
        if self.num_requests is None and not self.arrival.closed_loop:
            # Without num_requests the run sends rate x duration requests (on average): bounded like num_requests.
            stages = self.arrival.stages or ()
            expected = sum(st.rate * st.duration_s for st in stages) if stages else self.arrival.rate * self.duration_s  # type: ignore[operator]
            if self.duration_s is not None and stages:
                expected = min(expected, max(st.rate for st in stages) * self.duration_s)
            if expected > MAX_REQUESTS:
                raise ValueError(f"rate x duration_s = {expected:.3g} requests on average, more than MAX_REQUESTS = {MAX_REQUESTS}; "
                                 "give num_requests or a shorter duration_s")
        return self


def _model_of(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model inside an annotation like `X | None` or `tuple[X, ...]`, if any."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        found = _model_of(arg)
        if found is not None:
            return found
    return None


def _allowed_keys(loc: tuple[Any, ...]) -> list[str]:
    """The keys WorkloadSpec accepts at the mapping that holds loc's last key."""
    model: type[BaseModel] | None = WorkloadSpec
    for part in loc[:-1]:
        if isinstance(part, int) or model is None:
            continue
        info = model.model_fields.get(part)
        model = _model_of(info.annotation) if info is not None else None
    if model is None:
        return []
    return [name for name, f in model.model_fields.items() if not name.startswith("_")]


def _key_text(part: Any) -> str:
    """A key of the YAML path as typed, or its repr when it holds spaces, dots or control characters."""
    text = str(part)
    return text if text.isprintable() and text.strip() == text and "." not in text and text else repr(text)


def _one_line(exc: ValidationError, where: str) -> WorkloadError:
    """pydantic's first error as a one-line WorkloadError naming where, the key path and the value."""
    errors = exc.errors()
    # An unknown key is the likeliest root cause (a misspelt `rate` also makes `arrival` incomplete).
    err = next((e for e in errors if e.get("type") == "extra_forbidden"), errors[0])
    loc = tuple(err.get("loc", ()))
    path = ".".join(_key_text(p) for p in loc) or "workload"
    if err.get("type") == "extra_forbidden":
        allowed = ", ".join(_allowed_keys(loc))
        return WorkloadError(f"{where}: {path}: unknown key (allowed: {allowed})")
    msg = str(err.get("msg", "")).removeprefix("Value error, ").replace("\n", " ")
    value = repr(err.get("input"))
    value = value if len(value) <= 60 else value[:57] + "..."
    raw = err.get("input")
    if isinstance(raw, bool) and err.get("type") in ("int_type", "float_type"):
        msg += " (true/false is not a number)"
    if err.get("type") == "value_error" and isinstance(raw, (dict, list, tuple)):
        return WorkloadError(f"{where}: {path}: {msg}")
    if err.get("type") == "less_than_equal" and loc[-1:] == ("num_requests",):
        msg += " (servesim's MAX_REQUESTS; cut long runs with duration_s)"
    return WorkloadError(f"{where}: {path}={value}: {msg}")


def parse_workload(data: Any, *, where: str = "workload", base_dir: str | Path | None = None) -> WorkloadSpec:
    """A WorkloadSpec from plain data (a YAML mapping); bad input raises a one-line WorkloadError."""
    if not isinstance(data, dict):
        raise WorkloadError(f"{where}: expected a mapping of workload keys, got {type(data).__name__}")
    try:
        return WorkloadSpec.model_validate(data, context={"base_dir": None if base_dir is None else str(base_dir)})
    except ValidationError as exc:
        raise _one_line(exc, where) from None


def load_workload_yaml(path: str | Path) -> WorkloadSpec:
    """A WorkloadSpec from a YAML file (UTF-8, no key twice); relative file paths inside resolve against its folder."""
    p = Path(path)
    if p.is_dir():
        raise WorkloadError(f"--workload {p}: is a folder; give a workload YAML file or a preset ({', '.join(sorted(PRESETS))})")
    try:
        data = parse_yaml_bytes(read_bytes(p, WorkloadError, "workload file"))
    except OSError as exc:
        raise WorkloadError(f"{p}: cannot read workload file ({exc.__class__.__name__})") from None
    except YamlProblem as exc:
        raise WorkloadError(f"{p}: {exc}") from None
    return parse_workload(data, where=str(p), base_dir=p.parent)


def load_workload(text: str | Path) -> WorkloadSpec:
    """--workload's value: a YAML file (a path ending .yaml/.yml, or any existing file) or a preset name."""
    if not str(text).strip():
        raise WorkloadError(f"--workload {str(text)!r}: empty; give a workload YAML file or a preset ({', '.join(sorted(PRESETS))})")
    p = Path(text)
    if p.is_dir():
        raise WorkloadError(f"--workload {p}: is a folder; give a workload YAML file or a preset ({', '.join(sorted(PRESETS))})")
    if strip_gz(p).suffix in (".yaml", ".yml") or p.is_file():
        return load_workload_yaml(p)
    return preset(str(text))


def build_prompts(spec: WorkloadSpec) -> PromptModel:
    """The prompt-shape model of a generated (non-trace) workload."""
    if spec.inference_perf is not None:
        return spec.inference_perf.prompts()
    if spec.shared_prefix is not None:
        return SharedPrefixPrompts(**spec.shared_prefix.model_dump())
    assert spec.input_tokens is not None and spec.output_tokens is not None
    return Prompts(spec.input_tokens.build(), spec.output_tokens.build(), spec.prefix_tokens)


def build_source(spec: WorkloadSpec, seed: int | None = None) -> RequestSource:
    """The lazy RequestSource for spec; an explicit seed overrides spec.seed (BLIS: CLI --seed wins)."""
    source = _build_source(spec, seed)
    if spec.lora is not None:
        if spec.trace is not None and any(s.lora is not None for s in getattr(source, "_specs", ())):
            raise WorkloadError(f"workload: lora: the trace {spec.trace.path} has its own lora column; give one of the two")
        source = LoraMixSource(source, spec.lora, spec.seed if seed is None else seed)
    # vllm bench --max-concurrency (and GuideLLM's max_concurrency on async rates): later requests wait at the client.
    if spec.max_concurrency is not None and not (spec.arrival is not None and spec.arrival.closed_loop):
        return ConcurrencyCap(source, spec.max_concurrency)
    return source


def _timed_specs(spec: WorkloadSpec, trace: Trace, seed: int | None) -> list:
    """An untimed trace's requests (ShareGPT) given arrival times drawn from the workload's open-loop process."""
    arrival = spec.arrival
    if arrival is None:
        raise WorkloadError(f"{trace.path}: this trace has no arrival times; give --rate/--arrival/--profile (a workload YAML: arrival:)")
    rng = np.random.default_rng(spec.seed if seed is None else seed)
    n = len(trace.specs) if spec.num_requests is None else min(spec.num_requests, len(trace.specs))
    process = _open_process(arrival, n)
    out, it = [], iter(trace.specs)
    for times, stage in process.chunks(rng.spawn(2)[0], 0.0, 1024):
        for t in times.tolist():
            base = next(it, None)
            if base is None or len(out) >= n or (spec.duration_s is not None and t >= spec.duration_s):
                return out
            out.append(dataclasses.replace(base, arrival_s=t, stage=stage))
    return out


def _open_process(arrival: ArrivalSpec, n: int):  # type: ignore[no-untyped-def]
    """The open-loop arrival process of an ArrivalSpec; the vllm process needs the request count n."""
    if arrival.process == "vllm":
        return arr.VllmBench(arrival.rate or math.inf, arrival.burstiness or 1.0, n)
    return arrival.build()


def _closed(spec: WorkloadSpec) -> arr.ClosedLoop:
    """The closed loop of spec's arrival; GuideLLM throughput runs max_concurrency streams (default 512)."""
    assert spec.arrival is not None
    if spec.arrival.process == "throughput":
        return arr.ClosedLoop(spec.max_concurrency or GUIDELLM_MAX_CONCURRENCY)
    process = spec.arrival.build()
    assert isinstance(process, arr.ClosedLoop)
    return process


def _build_source(spec: WorkloadSpec, seed: int | None) -> RequestSource:
    """The RequestSource of spec before any concurrency cap."""
    if spec.trace is not None:
        trace = spec.trace.read()
        if trace.meta.get("mode") == "closed":  # e.g. vllm bench --request-rate inf --max-concurrency N
            specs = [s for s in trace.specs if spec.duration_s is None or s.arrival_s < spec.duration_s]
            return ClosedLoopListSource(specs[: spec.num_requests], int(trace.meta["concurrency"]))
        if trace.meta.get("timed", True):
            if spec.arrival is not None:
                raise WorkloadError(f"{trace.path}: arrival cannot be combined with trace (the trace gives arrivals)")
            specs = [s for s in trace.specs if spec.duration_s is None or s.arrival_s < spec.duration_s]
            return ListSource(specs[: spec.num_requests], where=trace.path)
        if spec.arrival is not None and spec.arrival.closed_loop:
            process = _closed(spec)
            return ClosedLoopListSource(list(trace.specs[: spec.num_requests]), process.clients, think_time_s=process.think_time_s)
        return ListSource(_timed_specs(spec, trace, seed), where=trace.path)
    arrival = spec.inference_perf.arrival_spec() if spec.inference_perf is not None else spec.arrival
    assert arrival is not None
    rng = np.random.default_rng(spec.seed if seed is None else seed)
    kwargs = {"num_requests": spec.num_requests, "duration_s": spec.duration_s}
    if arrival.closed_loop:
        return ClosedLoopSource(_closed(spec), build_prompts(spec), rng, **kwargs)  # type: ignore[arg-type]
    return OpenLoopSource(_open_process(arrival, spec.num_requests or 0), build_prompts(spec), rng, **kwargs)  # type: ignore[arg-type]


# Named workloads. `chat` (the CLI default): Gaussian prompts 512±256 tokens in [2, 2048], Gaussian
# outputs 256±128 in [2, 1024], Poisson arrivals at 4 req/s, 500 requests, seed 0.
PRESETS: dict[str, dict[str, Any]] = {
    "chat": {
        "input_tokens": {"kind": "gaussian", "mean": 512, "stdev": 256, "min": 2, "max": 2048},
        "output_tokens": {"kind": "gaussian", "mean": 256, "stdev": 128, "min": 2, "max": 1024},
        "arrival": {"process": "poisson", "rate": 4.0},
        "num_requests": 500,
        "seed": 0,
    },
}


def preset(name: str) -> WorkloadSpec:
    """The named preset workload (see PRESETS)."""
    if name not in PRESETS:
        raise WorkloadError(f"workload preset={name!r}: must be one of {', '.join(sorted(PRESETS))}")
    return parse_workload(PRESETS[name], where=f"preset {name}")


def _flag_lengths(prefix: str, mean: int | None, stdev: float | None, lo: int | None, hi: int | None) -> dict | None:
    """GuideLLM IntegerRangeSampler semantics for --<prefix>-tokens flags (None when none given).

    stdev > 0: gaussian(mean, stdev, min or max(1, mean−5·stdev), max or mean+5·stdev);
    no stdev but min < max: uniform(min, max); otherwise constant(mean).
    """
    if mean is None:
        if any(v is not None for v in (stdev, lo, hi)):
            raise WorkloadError(f"flags: --{prefix}-tokens-stdev/-min/-max need --{prefix}-tokens")
        return None
    if stdev is not None and (isinstance(stdev, bool) or not isinstance(stdev, (int, float)) or not math.isfinite(stdev) or stdev < 0):
        raise WorkloadError(f"flags: --{prefix}-tokens-stdev={stdev!r}: must be a finite number >= 0")
    if stdev is not None and stdev > MAX_LENGTH:
        raise WorkloadError(f"flags: --{prefix}-tokens-stdev={stdev!r}: must be <= {MAX_LENGTH}")
    for flag, v, lowest in ((f"--{prefix}-tokens-min", lo, 0), (f"--{prefix}-tokens-max", hi, 1)):
        if v is not None and not lowest <= v <= MAX_LENGTH:
            raise WorkloadError(f"flags: {flag}={v}: must be an integer in [{lowest}, {MAX_LENGTH}]")
    # A mean outside [min, max] contradicts the bounds (the mean would be silently ignored): refuse it.
    if lo is not None and hi is not None and lo > hi:
        raise WorkloadError(f"flags: --{prefix}-tokens-max={hi}: must be >= --{prefix}-tokens-min ({lo})")
    if (lo is not None and mean < lo) or (hi is not None and mean > hi):
        bounds = f"[{lo if lo is not None else '-'}, {hi if hi is not None else '-'}]"
        raise WorkloadError(f"flags: --{prefix}-tokens={mean}: outside --{prefix}-tokens-min/-max {bounds}; give a mean inside the bounds")
    if stdev:
        lo_v = lo if lo is not None else max(1, math.floor(mean - 5 * stdev))
        hi_v = hi if hi is not None else math.ceil(mean + 5 * stdev)
        return {"kind": "gaussian", "mean": mean, "stdev": stdev, "min": lo_v, "max": hi_v}
    if lo is not None and hi is not None and lo != hi:
        return {"kind": "uniform", "min": lo, "max": hi}
    return {"kind": "constant", "value": mean}


def workload_from_flags(
    *,
    base: str | WorkloadSpec | None = "chat",
    rate: float | None = None,
    num_requests: int | None = None,
    duration_s: float | None = None,
    prompt_tokens: int | None = None,
    prompt_tokens_stdev: float | None = None,
    prompt_tokens_min: int | None = None,
    prompt_tokens_max: int | None = None,
    output_tokens: int | None = None,
    output_tokens_stdev: float | None = None,
    output_tokens_min: int | None = None,
    output_tokens_max: int | None = None,
    prefix_tokens: int | None = None,
    arrival: str | None = None,
    concurrency: int | None = None,
    cv: float | None = None,
    think_time_s: float | None = None,
    trace: str | Path | None = None,
    seed: int | None = None,
    profile: str | None = None,
    request_rate: float | None = None,
    burstiness: float | None = None,
    max_concurrency: int | None = None,
    trace_format: str | None = None,
    trace_columns: str | None = None,
    tokenizer: str | Path | None = None,
    lora_adapters: int | None = None,
) -> WorkloadSpec:
    """A WorkloadSpec from GuideLLM/BLIS-style flat flags laid over `base` (a preset name or spec).

    Lengths follow GuideLLM: given prompt/output tokens with stdev → gaussian (default bounds mean±5σ,
    at least 1); min/max without stdev → uniform; alone → constant. A flag group given replaces the
    base's distribution whole. arrival defaults to: concurrency if --concurrency, else the base's
    open-loop process (poisson for chat) when --rate is given; base values that still apply (rate,
    think time) are kept when only the process changes. --trace replaces lengths and arrivals.
    """
    data: dict[str, Any] = {}
    seed = check_seed(seed)
    arrival, rate, concurrency = _load_shape(profile, request_rate, burstiness, arrival, rate, concurrency, cv)
    if burstiness is not None and arrival != "vllm":
        raise WorkloadError("flags: --burstiness needs --request-rate (vllm bench serve arrivals)")
    if isinstance(base, str):
        base = preset(base)
    if base is not None:
        data = base.model_dump(exclude_unset=True, by_alias=False)
    lengths = {
        "input_tokens": _flag_lengths(
            "prompt", prompt_tokens, prompt_tokens_stdev, prompt_tokens_min, prompt_tokens_max
        ),
        "output_tokens": _flag_lengths(
            "output", output_tokens, output_tokens_stdev, output_tokens_min, output_tokens_max
        ),
    }
    trace_spec: dict[str, Any] = {"path": str(trace)} if trace is not None else {}
    for key, value in {"format": trace_format, "columns": trace_columns, "tokenizer": tokenizer}.items():
        if value is not None:
            if trace is None:
                raise WorkloadError(f"flags: --trace-{key} needs --trace" if key != "tokenizer" else "flags: --tokenizer needs --trace (a ShareGPT file)")
            trace_spec[key] = str(value)
    if trace_format is not None and trace_format not in get_args(TraceSpec.model_fields["format"].annotation):
        raise WorkloadError(f"flags: --trace-format={trace_format!r}: must be one of {', '.join(FORMAT_NAMES)}")
    if trace_columns is not None:
        parse_columns(trace_columns, "flags: --trace-columns")
    try:
        untimed = trace is not None and TraceSpec.model_validate(trace_spec).may_be_untimed
    except ValidationError as exc:
        raise _one_line(exc, "flags: trace") from None
    if trace is not None:
        clashing = {
            "prompt-tokens": lengths["input_tokens"],
            "output-tokens": lengths["output_tokens"],
            "prefix-tokens": prefix_tokens,
            **({} if untimed else {"rate": rate, "arrival": arrival, "concurrency": concurrency}),
        }
        given = [k for k, v in clashing.items() if v is not None]
        if given:
            raise WorkloadError(f"flags: --trace cannot be combined with --{given[0]}")
        # A trace brings its own requests: only the seed survives from the base (a preset's 500 requests would truncate it).
        data = {k: v for k, v in data.items() if k == "seed"}
        data["trace"] = trace_spec
    for key, dist in lengths.items():
        if dist is not None:
            data[key] = dist
            data.pop("shared_prefix", None)
    if prefix_tokens is not None:
        data["prefix_tokens"] = prefix_tokens
    old = dict(data.get("arrival") or {})
    process = arrival if arrival is not None else ("concurrency" if concurrency is not None else None)
    if process is None and rate is not None:
        process = old.get("process") if old.get("process") not in (None, *_CLOSED) else "poisson"
    if process is not None or any(v is not None for v in (rate, cv, think_time_s)):
        new: dict[str, Any] = {"process": process if process is not None else old.get("process", "poisson")}
        allowed = sum(_ARRIVAL_KEYS.get(new["process"], ((), ())), ())  # unknown processes: pydantic says so
        carry = {"rate": rate, "concurrency": concurrency, "cv": cv, "think_time_s": think_time_s, "burstiness": burstiness}
        for key, value in carry.items():
            if value is not None and key not in allowed:
                raise WorkloadError(f"flags: --{key.replace('_', '-')} does not apply to arrival {new['process']!r}")
            value = value if value is not None else old.get(key)  # keep the base's value where it applies
            if value is not None and key in allowed:
                new[key] = value
        if new["process"] == "vllm" and request_rate == math.inf:
            new.pop("rate", None)  # --request-rate inf: no rate key (every request at t=0), not the base's rate
        if "stages" in old and "stages" in allowed and "rate" not in new:
            new["stages"] = old["stages"]
        data["arrival"] = new
    for key, value in {"num_requests": num_requests, "duration_s": duration_s, "seed": seed, "max_concurrency": max_concurrency}.items():
        if value is not None:
            data[key] = value
    if lora_adapters is not None:  # --lora-adapters N: a uniform mix over N adapters, replacing the base's mix
        if isinstance(lora_adapters, bool) or not isinstance(lora_adapters, int) or not 1 <= lora_adapters <= MAX_ADAPTERS:
            raise WorkloadError(f"flags: --lora-adapters={lora_adapters!r}: must be an integer in [1, {MAX_ADAPTERS}]")
        data["lora"] = {"adapters": lora_adapters}
    return parse_workload(data, where="flags")


# GuideLLM --profile names -> servesim arrival processes (guidellm benchmark/profile.py: synchronous = one request
# at a time; concurrent = --rate streams; throughput = all at once, max_concurrency in flight; constant = 1/rate
# intervals; poisson = exponential gaps at rate; sweep = synchronous, throughput, then rates between).
PROFILES: dict[str, str] = {"synchronous": "synchronous", "concurrent": "concurrent", "throughput": "throughput",
                            "constant": "constant", "poisson": "poisson", "sweep": "sweep"}


def _load_shape(profile: str | None, request_rate: float | None, burstiness: float | None, arrival: str | None,
                rate: float | None, concurrency: int | None, cv: float | None) -> tuple[str | None, float | None, int | None]:
    """(arrival, rate, concurrency) after --profile (GuideLLM) or --request-rate/--burstiness (vllm bench)."""
    if profile is not None and request_rate is not None:
        raise WorkloadError("flags: --profile cannot be combined with --request-rate (GuideLLM or vllm bench names, not both)")
    if (profile is not None or request_rate is not None) and arrival is not None:
        raise WorkloadError(f"flags: --arrival cannot be combined with --{'profile' if profile is not None else 'request-rate'}")
    if request_rate is not None:
        if rate is not None:
            raise WorkloadError("flags: --request-rate cannot be combined with --rate (they are the same thing; give one)")
        if isinstance(request_rate, bool) or not (request_rate > 0):
            raise WorkloadError(f"flags: --request-rate={request_rate!r}: must be a number > 0 or inf")
        return "vllm", (None if request_rate == math.inf else request_rate), concurrency
    if profile is None:
        return arrival, rate, concurrency
    if profile not in PROFILES:
        raise WorkloadError(f"flags: --profile={profile!r}: must be one of {', '.join(PROFILES)}")
    if profile == "sweep":
        raise WorkloadError("flags: --profile sweep runs several benchmarks (synchronous, throughput, then rates between them): "
                            "servesim run --profile sweep (servesim.sweep.guidellm.run_sweep_profile), not one workload")
    if profile == "concurrent":
        if rate is not None and (rate != int(rate) or rate < 1):
            raise WorkloadError(f"flags: --profile concurrent --rate={rate!r}: the number of streams, an integer >= 1")
        streams = concurrency if concurrency is not None else (None if rate is None else int(rate))
        if streams is None:
            raise WorkloadError("flags: --profile concurrent needs --rate N (streams, as GuideLLM) or --concurrency N")
        return "concurrent", None, streams
    if profile in ("synchronous", "throughput") and rate is not None:
        raise WorkloadError(f"flags: --rate does not apply to --profile {profile}")
    if profile in ("constant", "poisson") and rate is None:
        raise WorkloadError(f"flags: --profile {profile} needs --rate (requests/s)")
    return PROFILES[profile], rate, concurrency
