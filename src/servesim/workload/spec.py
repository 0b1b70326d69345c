"""WorkloadSpec: the user's workload description (YAML or CLI flags), and the RequestSource built from it.

YAML shape (every key optional unless noted; unknown keys are refused, naming the key):

    input_tokens:  {kind: gaussian, mean: 512, stdev: 256, min: 2, max: 2048}   # or an int = constant
    output_tokens: {kind: gaussian, mean: 256, stdev: 128, min: 2, max: 1024}
    prefix_tokens: 0            # one shared prefix prepended to every prompt (counts inside input)
    shared_prefix: {num_groups: 4, users_per_group: 8, system_prompt_len: 512, question_len: 128, output_len: 256}
    arrival: {process: poisson, rate: 4}     # synchronous | concurrency (concurrency, think_time_s)
                                             # | constant | poisson | gamma (cv) ; rate or stages
    num_requests: 500           # and/or duration_s
    trace: {path: trace.csv, format: auto, sort: false, errors: skip}   # or just the path
    inference_perf:             # an inference-perf run: its prompt list sent cyclically, load stages
      shared_prefix: {num_groups: 10, num_prompts_per_group: 10, system_prompt_len: 100, question_len: 447,
                      output_len: 248, extra_input_tokens: {kind: gaussian, mean: 27.87, stdev: 6.49, min: 12, max: 45}}
      stages: [{rate: 8, duration: 600}, {rate: 20, duration: 600}]
      arrival: poisson          # or constant (exact 1/rate gaps)
    seed: 0

A trace replaces lengths, prefixes and arrival (it may be cut by num_requests / duration_s).
Relative file paths in a YAML file are resolved against the YAML file's folder.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import numpy as np
from pydantic import AliasChoices, BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, ValidationInfo
from pydantic import field_validator, model_validator

from servesim.config.yamlfile import YamlProblem, parse_yaml_bytes
from servesim.engine.request import RequestSource
from servesim.errors import WorkloadError
from servesim.workload import arrivals as arr
from servesim.workload.distributions import MAX_LENGTH, LengthDistribution, length_distribution
from servesim.workload.prompts import CycledPrompts, PromptModel, Prompts, SharedPrefixPrompts
from servesim.workload.sources import ClosedLoopSource, ListSource, OpenLoopSource
from servesim.workload.traces import read_trace

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


ArrivalName = Literal["synchronous", "concurrency", "constant", "poisson", "gamma"]
_CLOSED = ("synchronous", "concurrency")
# process: (required keys, other allowed keys); open-loop processes need exactly one of rate / stages.
_ARRIVAL_KEYS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "synchronous": ((), ("think_time_s",)),
    "concurrency": (("concurrency",), ("think_time_s",)),
    "constant": ((), ("rate", "stages")),
    "poisson": ((), ("rate", "stages")),
    "gamma": (("cv",), ("rate", "stages")),
}


class ArrivalSpec(_Strict):
    """How requests arrive: closed loop (synchronous, concurrency) or open loop at a rate or in stages."""

    process: ArrivalName
    rate: float | None = Field(None, gt=0)
    concurrency: int | None = Field(None, ge=1, le=MAX_CLIENTS)
    cv: float | None = Field(None, gt=0, le=1000)  # gamma shape 1/cv**2: above 1000 it underflows to bursts of 0 s gaps
    think_time_s: float | None = Field(None, ge=0)
    stages: tuple[StageSpec, ...] | None = Field(None, min_length=1, strict=False)  # a YAML list is fine

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
        if self.process not in _CLOSED and (self.rate is None) == (self.stages is None):
            raise ValueError(f"process {self.process!r} needs exactly one of rate or stages")
        return self

    @property
    def closed_loop(self) -> bool:
        """True for synchronous / concurrency."""
        return self.process in _CLOSED

    def build(self) -> arr.ArrivalProcess:
        """The arrival process this spec describes."""
        if self.closed_loop:
            return arr.ClosedLoop(self.concurrency or 1, self.think_time_s or 0.0)
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


class TraceSpec(_Strict):
    """A trace file to replay (CSV, JSONL or inference-perf replay JSON)."""

    path: str
    format: Literal["auto", "csv", "jsonl", "inference_perf"] = "auto"
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
        if self.trace is not None:
            for key in ("input_tokens", "output_tokens", "prefix_tokens", "shared_prefix", "arrival"):
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
        data = parse_yaml_bytes(p.read_bytes())
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
    if p.suffix in (".yaml", ".yml") or p.is_file():
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
    if spec.trace is not None:
        t = spec.trace
        trace = read_trace(t.path, format=t.format, sort=t.sort, errors=t.errors, stage_durations_s=t.stage_durations_s)
        specs = [s for s in trace.specs if spec.duration_s is None or s.arrival_s < spec.duration_s]
        return ListSource(specs[: spec.num_requests], where=trace.path)
    arrival = spec.inference_perf.arrival_spec() if spec.inference_perf is not None else spec.arrival
    assert arrival is not None
    rng = np.random.default_rng(spec.seed if seed is None else seed)
    process = arrival.build()
    kwargs = {"num_requests": spec.num_requests, "duration_s": spec.duration_s}
    if isinstance(process, arr.ClosedLoop):
        return ClosedLoopSource(process, build_prompts(spec), rng, **kwargs)
    return OpenLoopSource(process, build_prompts(spec), rng, **kwargs)


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
    if trace is not None:
        clashing = {
            "prompt-tokens": lengths["input_tokens"],
            "output-tokens": lengths["output_tokens"],
            "prefix-tokens": prefix_tokens,
            "rate": rate,
            "arrival": arrival,
            "concurrency": concurrency,
        }
        given = [k for k, v in clashing.items() if v is not None]
        if given:
            raise WorkloadError(f"flags: --trace cannot be combined with --{given[0]}")
        # A trace brings its own requests: only the seed survives from the base (a preset's 500 requests would truncate it).
        data = {k: v for k, v in data.items() if k == "seed"}
        data["trace"] = {"path": str(trace)}
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
        carry = {"rate": rate, "concurrency": concurrency, "cv": cv, "think_time_s": think_time_s}
        for key, value in carry.items():
            if value is not None and key not in allowed:
                raise WorkloadError(f"flags: --{key.replace('_', '-')} does not apply to arrival {new['process']!r}")
            value = value if value is not None else old.get(key)  # keep the base's value where it applies
            if value is not None and key in allowed:
                new[key] = value
        if "stages" in old and "stages" in allowed and "rate" not in new:
            new["stages"] = old["stages"]
        data["arrival"] = new
    for key, value in {"num_requests": num_requests, "duration_s": duration_s, "seed": seed}.items():
        if value is not None:
            data[key] = value
    return parse_workload(data, where="flags")
