"""What each request's prompt looks like: its token counts and which shared prefix it starts with.

Prefix convention (everywhere in servesim): `RequestSpec.input_tokens` COUNTS the prefix.
input_tokens = prefix_tokens + prompt tokens, as GuideLLM and BLIS build prompts: their
`prefix_tokens` are prepended to a prompt of `prompt_tokens` tokens.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from servesim.errors import WorkloadError
from servesim.workload.distributions import MAX_LENGTH, LengthDistribution

__all__ = ["CycledPrompts", "PromptBatch", "PromptModel", "Prompts", "SharedPrefixPrompts", "prompt_stream"]

SHARED_GROUP = "shared"  # prefix group of GuideLLM/BLIS `prefix_tokens` (one prefix for every request)


@dataclass(frozen=True, slots=True)
class PromptBatch:
    """n requests' shapes as parallel lists: input tokens (prefix included), output tokens, prefix."""

    input_tokens: list[int]
    output_tokens: list[int]
    prefix_group: list[str | None]
    prefix_tokens: list[int]


class PromptModel(Protocol):
    """Draws the token shapes of n requests from rng."""

    def sample(self, rng: np.random.Generator, n: int) -> PromptBatch:
        """n request shapes (token counts)."""
        ...


def _count(name: str, value: object, lowest: int) -> int:
    """An integer count in [lowest, MAX_LENGTH], or a WorkloadError naming the field."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not lowest <= value <= MAX_LENGTH:
        raise WorkloadError(f"{name}={value!r}: must be an integer >= {lowest} and <= {MAX_LENGTH}")
    return int(value)


@dataclass(frozen=True, slots=True)
class Prompts:
    """Independent input/output lengths; with prefix_tokens > 0 every prompt starts with one shared prefix.

    input_tokens = prefix_tokens + a draw of `input` (the prompt after the prefix), group "shared".
    """

    input: LengthDistribution
    output: LengthDistribution
    prefix_tokens: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "prefix_tokens", _count("prefix_tokens", self.prefix_tokens, 0))

    def sample(self, rng: np.random.Generator, n: int) -> PromptBatch:
        """n shapes: input drawn first, then output, from the same rng."""
        prompt = self.input.sample(rng, n)
        output = self.output.sample(rng, n)
        group = SHARED_GROUP if self.prefix_tokens > 0 else None
        return PromptBatch(
            (prompt + self.prefix_tokens).tolist(), output.tolist(), [group] * n, [self.prefix_tokens] * n
        )


@dataclass(frozen=True, slots=True)
class SharedPrefixPrompts:
    """inference-perf `shared_prefix`: num_groups system prompts × users_per_group users.

    Each request comes from a user drawn uniformly at random; its prefix group is that user's system
    prompt ("system-<g>"), input = system_prompt_len + question_len, output = output_len (all constant).
    """

    num_groups: int
    users_per_group: int
    system_prompt_len: int
    question_len: int
    output_len: int

    def __post_init__(self) -> None:
        for name in ("num_groups", "users_per_group", "system_prompt_len", "question_len", "output_len"):
            object.__setattr__(self, name, _count(f"shared_prefix.{name}", getattr(self, name), 1))

    def sample(self, rng: np.random.Generator, n: int) -> PromptBatch:
        """n shapes; one uniform user draw per request picks the prefix group."""
        users = rng.integers(0, self.num_groups * self.users_per_group, size=n)
        groups = (users // self.users_per_group).tolist()
        return PromptBatch(
            [self.system_prompt_len + self.question_len] * n,
            [self.output_len] * n,
            [f"system-{g}" for g in groups],
            [self.system_prompt_len] * n,
        )


class CycledPrompts:
    """inference-perf `shared_prefix` data as its client sends it: a fixed list of prompts, in order, cyclically.

    num_groups × num_prompts_per_group prompts (group-major); prompt p = its group's system prompt
    (system_prompt_len) + a question (question_len) + `extra` tokens drawn once per prompt (the client's
    tokenizer round trip, see docs/VALIDATION.md); request k sends prompt k mod P. Every request after
    the first pass resends a whole earlier prompt, so its prefix group is the prompt ("prompt-<p>") and
    its prefix is the whole prompt (the first pass shares only within a prompt, not the system prompt
    across a group: P of thousands of requests).
    """

    def __init__(self, num_groups: int, num_prompts_per_group: int, system_prompt_len: int, question_len: int,
                 output_len: int, extra: LengthDistribution | None = None) -> None:
        self.num_groups = _count("shared_prefix.num_groups", num_groups, 1)
        self.num_prompts_per_group = _count("shared_prefix.num_prompts_per_group", num_prompts_per_group, 1)
        self.system_prompt_len = _count("shared_prefix.system_prompt_len", system_prompt_len, 1)
        self.question_len = _count("shared_prefix.question_len", question_len, 1)
        self.output_len = _count("shared_prefix.output_len", output_len, 1)
        self.extra = extra
        self._inputs: list[int] | None = None
        self._next = 0

    def prompt_inputs(self, rng: np.random.Generator) -> list[int]:
        """Input tokens of each of the P prompts (drawn from rng on first use, then fixed)."""
        if self._inputs is None:
            n = self.num_groups * self.num_prompts_per_group
            extra = self.extra.sample(rng, n).tolist() if self.extra is not None else [0] * n
            self._inputs = [self.system_prompt_len + self.question_len + int(e) for e in extra]
        return self._inputs

    def sample(self, rng: np.random.Generator, n: int) -> PromptBatch:
        """The next n requests' shapes (prompt k mod P for the k-th request of this model)."""
        inputs = self.prompt_inputs(rng)
        idx = [(self._next + i) % len(inputs) for i in range(n)]
        self._next += n
        return PromptBatch([inputs[p] for p in idx], [self.output_len] * n, [f"prompt-{p}" for p in idx],
                           [inputs[p] for p in idx])


def prompt_stream(
    model: PromptModel, rng: np.random.Generator, chunk: int = 1024
) -> Iterator[tuple[int, int, str | None, int]]:
    """Endless (input_tokens, output_tokens, prefix_group, prefix_tokens) tuples, drawn chunk by chunk."""
    while True:
        b = model.sample(rng, chunk)
        yield from zip(b.input_tokens, b.output_tokens, b.prefix_group, b.prefix_tokens)
