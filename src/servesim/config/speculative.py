"""vLLM's --speculative-config (vllm/config/speculative.py names) and servesim's acceptance input.

vLLM has no acceptance input: the draft's acceptance depends on the text. servesim takes a per-token acceptance
probability (or one per draft position) from --speculative-acceptance, else the method's default below.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from servesim.errors import ConfigError

METHODS = ("ngram", "eagle", "eagle3", "mtp", "draft_model", "suffix")
# vLLM SpeculativeConfig.use_eagle(): these methods write the draft's KV into the target's block table, so the
# scheduler allocates num_lookahead_tokens = num_speculative_tokens extra slots (vllm/v1/core/sched/scheduler.py).
EAGLE_METHODS = ("eagle", "eagle3", "mtp")

# Default per-token acceptance probability per method: DEFAULTS, not predictions (acceptance depends on the text).
# (method, probability, source)
DEFAULT_ACCEPTANCE: tuple[tuple[str, float, str], ...] = (
    ("eagle", 0.75, "EAGLE (Li et al. 2024, arXiv:2401.15077): per-position acceptance rates n-α of about 0.7-0.8 on MT-bench"),
    ("eagle3", 0.8, "EAGLE-3 (Li et al. 2025, arXiv:2503.01840): acceptance stays near 0.8 per position (approximate reading)"),
    ("mtp", 0.85, "DeepSeek-V3 technical report (arXiv:2412.19437) §5.4.3: second-token acceptance rate 85-90 %"),
    ("draft_model", 0.6, "Leviathan et al. 2023 (arXiv:2211.17192) Table 3: α 0.5-0.8 for small drafts of T5/LaMDA targets"),
    ("ngram", 0.5, "no transferable published per-token figure (prompt-lookup gains are input-dependent); a placeholder: set --speculative-acceptance"),
    ("suffix", 0.5, "no transferable published per-token figure (SuffixDecoding, arXiv:2411.04975, is workload-dependent); a placeholder"),
)
_DEFAULTS = {m: p for m, p, _ in DEFAULT_ACCEPTANCE}


class SpeculativeConfig(BaseModel):
    """The vLLM --speculative-config keys servesim models (vllm/config/speculative.py field names)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    method: Literal["ngram", "eagle", "eagle3", "mtp", "draft_model", "suffix"]
    num_speculative_tokens: int = Field(ge=1)
    model: str | None = None  # the draft (draft_model) or the EAGLE head checkpoint; only bundled drafts are costed
    draft_tensor_parallel_size: int | None = Field(None, ge=1)
    prompt_lookup_max: int | None = Field(None, ge=1)  # ngram: accepted as vLLM takes it; not modelled (acceptance is an input)
    prompt_lookup_min: int | None = Field(None, ge=1)
    # servesim only (vLLM has none): per-token acceptance probability, one value or one per draft position.
    acceptance: tuple[float, ...] | None = Field(None, strict=False)  # a JSON list is fine


def _fail(where: str, msg: str) -> ConfigError:
    return ConfigError(f"{where}: {msg}")


def check_acceptance(value: Any, k: int, where: str = "--speculative-acceptance") -> tuple[float, ...]:
    """Acceptance probabilities as a tuple of k floats in [0, 1] (one value is repeated); ConfigError otherwise."""
    if isinstance(value, str):
        try:
            value = [float(x) for x in value.split(",")]
        except ValueError:
            raise _fail(where, f"{value!r}: expected a probability in [0, 1] or a comma list of them") from None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = [float(value)]
    if not isinstance(value, (list, tuple)) or not value or any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in value):
        raise _fail(where, f"{value!r}: expected a probability in [0, 1] or a list of them")
    probs = tuple(float(v) for v in value)
    if any(not 0.0 <= p <= 1.0 for p in probs):  # also refuses NaN
        raise _fail(where, f"{value!r}: every probability must lie in [0, 1]")
    if len(probs) == 1:
        probs = probs * k
    if len(probs) != k:
        raise _fail(where, f"{value!r}: {len(probs)} values for num_speculative_tokens={k} (give one, or one per position)")
    return probs


def parse_speculative_config(value: Any, acceptance: Any = None, where: str = "--speculative-config") -> SpeculativeConfig | None:
    """A SpeculativeConfig from JSON text or a mapping (None stays None); a one-line ConfigError naming the field."""
    if value is None:
        if acceptance is not None:
            raise _fail("--speculative-acceptance", "needs --speculative-config")
        return None
    if isinstance(value, SpeculativeConfig):
        data: dict[str, Any] = value.model_dump()
    elif isinstance(value, str):
        try:
            data = json.loads(value)
        except json.JSONDecodeError as exc:
            raise _fail(where, f"not valid JSON ({exc.msg} at character {exc.pos})") from None
    else:
        data = value
    if not isinstance(data, dict):
        raise _fail(where, f"{value!r}: expected a JSON object such as '{{\"method\": \"ngram\", \"num_speculative_tokens\": 3}}'")
    data = dict(data)
    if "method" not in data:
        raise _fail(where, f"method: missing (allowed: {', '.join(METHODS)})")
    if data["method"] not in METHODS:
        raise _fail(where, f"method={data['method']!r}: not a method servesim models (allowed: {', '.join(METHODS)})")
    if "num_speculative_tokens" not in data:
        raise _fail(where, "num_speculative_tokens: missing (the draft tokens proposed per step, an integer >= 1)")
    if isinstance(data.get("acceptance"), list):
        data["acceptance"] = tuple(data["acceptance"])
    try:
        cfg = SpeculativeConfig(**data)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err.get("loc", ())) or "speculative_config"
        if err.get("type") == "extra_forbidden":
            raise _fail(where, f"{field}: not a key servesim models (allowed: {', '.join(SpeculativeConfig.model_fields)})") from None
        raise _fail(where, f"{field}={err.get('input')!r}: {err.get('msg')}") from None
    if cfg.method == "draft_model":
        from servesim.config.bundled import resolve_model_name

        if cfg.model is None:
            raise _fail(where, "model: missing (draft_model needs a bundled draft model name)")
        try:
            cfg = cfg.model_copy(update={"model": resolve_model_name(cfg.model)})
        except ConfigError:
            raise _fail(where, f"model={cfg.model!r}: not a bundled model (servesim costs only bundled drafts; see `servesim models`)") from None
    k = cfg.num_speculative_tokens
    acc = acceptance if acceptance is not None else cfg.acceptance
    if acc is None:
        return cfg  # acceptance left to the workload's speculative_acceptance, else the method default (acceptance_of)
    probs = check_acceptance(acc, k, "--speculative-acceptance" if acceptance is not None else f"{where}: acceptance")
    return cfg.model_copy(update={"acceptance": probs})


def with_workload_acceptance(cfg: SpeculativeConfig, value: Any) -> SpeculativeConfig:
    """cfg with the workload's speculative_acceptance when cfg has none of its own (an explicit flag wins)."""
    if cfg.acceptance is not None or value is None:
        return cfg
    return cfg.model_copy(update={"acceptance": check_acceptance(value, cfg.num_speculative_tokens, "workload: speculative_acceptance")})


def acceptance_of(cfg: SpeculativeConfig) -> tuple[float, ...]:
    """The per-position acceptance probabilities a config runs with: its own, else the method's default."""
    k = cfg.num_speculative_tokens
    return check_acceptance(cfg.acceptance, k, "speculative_config.acceptance") if cfg.acceptance is not None else (_DEFAULTS[cfg.method],) * k


def expected_tokens_per_step(probs: tuple[float, ...]) -> float:
    """Expected tokens emitted per verify step (bonus included): 1 + p1 + p1 p2 + ... (chain acceptance)."""
    total, run = 1.0, 1.0
    for p in probs:
        run *= p
        total += run
    return total
