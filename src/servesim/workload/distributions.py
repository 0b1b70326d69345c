"""Token-length distributions: frozen dataclasses whose `sample(rng, n)` returns n positive int lengths.

Every continuous distribution is turned into lengths the GuideLLM/BLIS way: draw, clamp to
[min, max], round half up (Go `math.Round` on positive values, as BLIS does), and never below 1.
Bad parameters raise `WorkloadError` naming the distribution, the field and the allowed range.
"""

from __future__ import annotations

import csv
import inspect
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeAlias

import numpy as np

from servesim.config.compressed import read_bytes, strip_gz
from servesim.errors import WorkloadError

# Longest length any distribution produces (tokens): far beyond any model's context, and it keeps every
# draw inside int64 arithmetic (a larger parameter is refused; continuous draws are clamped to it).
MAX_LENGTH = 2**31 - 1

__all__ = [
    "Constant",
    "Empirical",
    "Exponential",
    "Gaussian",
    "LengthDistribution",
    "Lognormal",
    "Uniform",
    "constant",
    "empirical",
    "exponential",
    "gaussian",
    "length_distribution",
    "lognormal",
    "read_lengths_file",
    "uniform",
]


def _number(kind: str, name: str, value: Any) -> float:
    """The finite float value of a numeric parameter, or a WorkloadError."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise WorkloadError(f"{kind} length: {name}={value!r}: must be a number")
    out = float(value)
    if not math.isfinite(out):
        raise WorkloadError(f"{kind} length: {name}={value!r}: must be a finite number")
    return out


def _positive(kind: str, name: str, value: Any) -> float:
    """A finite float in (0, MAX_LENGTH], or a WorkloadError."""
    out = _number(kind, name, value)
    if out <= 0 or out > MAX_LENGTH:
        raise WorkloadError(f"{kind} length: {name}={value!r}: must be > 0 and <= {MAX_LENGTH}")
    return out


def _non_negative(kind: str, name: str, value: Any) -> float:
    """A finite float in [0, MAX_LENGTH], or a WorkloadError."""
    out = _number(kind, name, value)
    if out < 0 or out > MAX_LENGTH:
        raise WorkloadError(f"{kind} length: {name}={value!r}: must be >= 0 and <= {MAX_LENGTH}")
    return out


def _integer(kind: str, name: str, value: Any, lowest: int) -> int:
    """An integral value in [lowest, MAX_LENGTH] (512.0 is accepted as 512), or a WorkloadError."""
    out = _number(kind, name, value)
    if out != int(out) or out < lowest or out > MAX_LENGTH:
        raise WorkloadError(f"{kind} length: {name}={value!r}: must be an integer >= {lowest} and <= {MAX_LENGTH}")
    return int(out)


def _bounds(kind: str, lo: Any, hi: Any, lowest: int = 0) -> tuple[int, int | None]:
    """Validated (min, max) token bounds; max None means unbounded; min <= max."""
    lo_i = _integer(kind, "min", lo, lowest)
    if hi is None:
        return lo_i, None
    hi_i = _integer(kind, "max", hi, 1)
    if hi_i < lo_i:
        raise WorkloadError(f"{kind} length: max={hi!r}: must be >= min ({lo_i})")
    return lo_i, hi_i


def _to_lengths(x: np.ndarray, lo: int, hi: int | None) -> np.ndarray:
    """Clamp draws to [lo, hi], round half up and floor at 1 (GuideLLM/BLIS: round(clamp(x)), >= 1)."""
    clipped = np.clip(x, lo, MAX_LENGTH if hi is None else hi)
    return np.maximum(np.floor(clipped + 0.5), 1).astype(np.int64)


@dataclass(frozen=True, slots=True)
class Constant:
    """Every request has exactly `value` tokens."""

    value: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "value", _integer("constant", "value", self.value, 1))

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """n lengths (tokens), all equal to value; rng is not consumed."""
        return np.full(n, self.value, dtype=np.int64)


@dataclass(frozen=True, slots=True)
class Gaussian:
    """GuideLLM/BLIS lengths: round(clamp(N(mean, stdev), min, max)), at least 1; max None = unbounded."""

    mean: float
    stdev: float
    min: int = 1
    max: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "mean", _positive("gaussian", "mean", self.mean))
        object.__setattr__(self, "stdev", _non_negative("gaussian", "stdev", self.stdev))
        lo, hi = _bounds("gaussian", self.min, self.max)
        object.__setattr__(self, "min", lo)
        object.__setattr__(self, "max", hi)

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """n lengths (tokens) from the clamped, rounded normal."""
        return _to_lengths(rng.normal(self.mean, self.stdev, n), self.min, self.max)


@dataclass(frozen=True, slots=True)
class Uniform:
    """Integers drawn uniformly from [min, max], both inclusive."""

    min: int
    max: int

    def __post_init__(self) -> None:
        lo, hi = _bounds("uniform", self.min, self.max, lowest=1)
        if hi is None:
            raise WorkloadError("uniform length: max=None: must be an integer >= min")
        object.__setattr__(self, "min", lo)
        object.__setattr__(self, "max", hi)

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """n lengths (tokens), uniform over the inclusive range."""
        return rng.integers(self.min, self.max, size=n, endpoint=True, dtype=np.int64)


@dataclass(frozen=True, slots=True)
class Exponential:
    """round(clamp(Exp(mean), min, max)), at least 1."""

    mean: float
    min: int = 1
    max: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "mean", _positive("exponential", "mean", self.mean))
        lo, hi = _bounds("exponential", self.min, self.max)
        object.__setattr__(self, "min", lo)
        object.__setattr__(self, "max", hi)

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """n lengths (tokens) from the clamped, rounded exponential."""
        return _to_lengths(rng.exponential(self.mean, n), self.min, self.max)


@dataclass(frozen=True, slots=True)
class Lognormal:
    """Lognormal lengths parameterised by the MEAN and STDEV OF THE LENGTHS (not of their logarithm).

    sigma² = ln(1 + (stdev/mean)²), mu = ln(mean) − sigma²/2, so the unclamped draws have exactly
    this mean and stdev; then round(clamp(x, min, max)), at least 1.
    """

    mean: float
    stdev: float
    min: int = 1
    max: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "mean", _positive("lognormal", "mean", self.mean))
        object.__setattr__(self, "stdev", _non_negative("lognormal", "stdev", self.stdev))
        lo, hi = _bounds("lognormal", self.min, self.max)
        object.__setattr__(self, "min", lo)
        object.__setattr__(self, "max", hi)

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """n lengths (tokens) from the clamped, rounded lognormal."""
        sigma2 = math.log1p((self.stdev / self.mean) ** 2)
        mu = math.log(self.mean) - sigma2 / 2
        return _to_lengths(rng.lognormal(mu, math.sqrt(sigma2), n), self.min, self.max)


@dataclass(frozen=True, slots=True)
class Empirical:
    """Lengths drawn uniformly, with replacement, from a list of observed lengths."""

    values: tuple[int, ...]
    _array: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if len(self.values) == 0:
            raise WorkloadError("empirical length: values=[]: needs at least one length")
        vals = tuple(_integer("empirical", f"values[{i}]", v, 1) for i, v in enumerate(self.values))
        object.__setattr__(self, "values", vals)
        object.__setattr__(self, "_array", np.asarray(vals, dtype=np.int64))

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """n lengths (tokens) resampled from values."""
        return self._array[rng.integers(0, len(self._array), size=n)]


LengthDistribution: TypeAlias = Constant | Gaussian | Uniform | Exponential | Lognormal | Empirical


def constant(value: int) -> Constant:
    """Every length equals value (tokens)."""
    return Constant(value)


def gaussian(mean: float, stdev: float, min: int = 1, max: int | None = None) -> Gaussian:  # noqa: A002
    """GuideLLM/BLIS Gaussian lengths (tokens): round(clamp(N(mean, stdev), min, max)), >= 1."""
    return Gaussian(mean, stdev, min, max)


def uniform(min: int, max: int) -> Uniform:  # noqa: A002
    """Uniform integer lengths (tokens) in [min, max] inclusive."""
    return Uniform(min, max)


def exponential(mean: float, min: int = 1, max: int | None = None) -> Exponential:  # noqa: A002
    """Exponential lengths (tokens) with the given mean, clamped and rounded, >= 1."""
    return Exponential(mean, min, max)


def lognormal(mean: float, stdev: float, min: int = 1, max: int | None = None) -> Lognormal:  # noqa: A002
    """Lognormal lengths (tokens) whose unclamped draws have this mean and stdev."""
    return Lognormal(mean, stdev, min, max)


def empirical(
    values: Sequence[int] | None = None, file: str | Path | None = None, column: str | None = None
) -> Empirical:
    """Lengths (tokens) resampled from `values` or from a file (one integer per line, or a CSV column)."""
    if (values is None) == (file is None):
        raise WorkloadError("empirical length: give exactly one of values or file")
    if file is not None:
        return Empirical(read_lengths_file(file, column))
    if column is not None:
        raise WorkloadError(f"empirical length: column={column!r}: only allowed with file")
    return Empirical(tuple(values))  # type: ignore[arg-type]


def _parse_length(text: str, where: str) -> int:
    """One positive integer length parsed from text, or a WorkloadError naming where."""
    try:
        value = float(text)
    except ValueError:
        raise WorkloadError(f"{where}: {text!r} is not a number; expected a positive integer length") from None
    if not math.isfinite(value) or value != int(value) or value < 1 or value > MAX_LENGTH:
        raise WorkloadError(f"{where}: {text!r}: expected a positive integer length <= {MAX_LENGTH}")
    return int(value)


def read_lengths_file(path: str | Path, column: str | None = None) -> tuple[int, ...]:
    """Positive integer lengths from a file: one per line, or a named column of a CSV with a header."""
    p = Path(path)
    try:
        text = read_bytes(p, WorkloadError, "lengths file").decode("utf-8")  # `.gz` files are gunzipped
    except (OSError, UnicodeDecodeError) as exc:
        raise WorkloadError(f"{p}: cannot read lengths file ({exc.__class__.__name__})") from None
    lines = text.splitlines()
    if column is None and strip_gz(p).suffix.lower() != ".csv":
        out = tuple(_parse_length(s.strip(), f"{p}: line {i}") for i, s in enumerate(lines, 1) if s.strip())
    else:
        out = _lengths_from_csv(p, lines, column)
    if not out:
        raise WorkloadError(f"{p}: no lengths found; expected one positive integer per line")
    return out


def _lengths_from_csv(path: Path, lines: list[str], column: str | None) -> tuple[int, ...]:
    """The named (or only) column of a CSV with a header row, as positive integer lengths."""
    reader = csv.reader(lines)
    header = next(reader, None)
    if not header:
        raise WorkloadError(f"{path}: empty CSV; expected a header row naming the length column")
    header = [h.strip() for h in header]
    if column is None and len(header) != 1:
        raise WorkloadError(f"{path}: {len(header)} columns {header}; name the length column with column=")
    name = column if column is not None else header[0]
    if name not in header:
        raise WorkloadError(f"{path}: column={name!r} not in header {header}")
    idx = header.index(name)
    out = []
    for row in reader:
        if not any(cell.strip() for cell in row):
            continue
        where = f"{path}: line {reader.line_num} column {name!r}"
        if idx >= len(row):
            raise WorkloadError(f"{where}: missing value (row has {len(row)} fields)")
        out.append(_parse_length(row[idx].strip(), where))
    return tuple(out)


_FACTORIES: dict[str, Callable[..., LengthDistribution]] = {
    "constant": constant,
    "gaussian": gaussian,
    "uniform": uniform,
    "exponential": exponential,
    "lognormal": lognormal,
    "empirical": empirical,
}


def length_distribution(kind: str, params: Mapping[str, Any] | Iterable[tuple[str, Any]] = ()) -> LengthDistribution:
    """A length distribution from its kind name and parameters, refusing unknown kinds and keys."""
    factory = _FACTORIES.get(kind)
    if factory is None:
        raise WorkloadError(f"length kind={kind!r}: must be one of {sorted(_FACTORIES)}")
    given = dict(params)
    allowed = list(inspect.signature(factory).parameters)
    unknown = [k for k in given if k not in allowed]
    if unknown:
        raise WorkloadError(f"{kind} length: unknown parameter {unknown[0]!r} (allowed: {', '.join(allowed)})")
    try:
        return factory(**given)
    except TypeError:
        required = [n for n, p in inspect.signature(factory).parameters.items() if p.default is p.empty]
        raise WorkloadError(f"{kind} length: needs {', '.join(required)}; got {sorted(given)}") from None
