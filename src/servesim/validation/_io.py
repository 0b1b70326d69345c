"""Reading ground-truth files: plain or gzipped JSON/YAML/CSV, and typed field access that fails as
one-line GroundTruthErrors naming the file, the field, the bad value and what is allowed."""

from __future__ import annotations

import csv
import gzip
import io
import json
import math
import zlib
from pathlib import Path
from typing import Any

import yaml

from servesim.config.yamlfile import safe_load_unique

from servesim.errors import GroundTruthError

_MISSING = object()


def fail(path: Path | str, field: str, message: str) -> GroundTruthError:
    """A one-line GroundTruthError: '<file>: <field>: <message>' ('<file>: <field>=<value>: ...' when the
    message starts with '=<value>')."""
    if field and message.startswith("="):
        text = f"{path}: {field}{message}"
    else:
        text = f"{path}: {field}: {message}" if field else f"{path}: {message}"
    return GroundTruthError(" ".join(text.split()))


def short(value: Any, limit: int = 60) -> str:
    """repr() of a value cut to one short line, for error messages."""
    text = " ".join(repr(value).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def resolve_existing(path: Path) -> Path:
    """The path itself, or its '.gz' twin when only that exists (either spelling may be given)."""
    if path.is_file():
        return path
    if path.suffix == ".gz" and path.with_suffix("").is_file():
        return path.with_suffix("")
    gz = path.with_name(path.name + ".gz")
    if gz.is_file():
        return gz
    return path


def read_text(path: Path) -> str:
    """File contents as text; '.gz' files are decompressed. Missing/unreadable/corrupt -> GroundTruthError."""
    path = resolve_existing(Path(path))
    if not path.is_file():
        raise fail(path, "", "file not found")
    try:
        raw = path.read_bytes()
        if path.suffix == ".gz" or raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
        return raw.decode("utf-8")
    except (OSError, EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise fail(path, "", f"cannot read gzip data ({exc.__class__.__name__}: {exc}); truncated or corrupt file")
    except UnicodeDecodeError as exc:
        raise fail(path, "", f"not UTF-8 text ({exc.reason} at byte {exc.start})")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed (only finite numbers)")


def read_json(path: Path) -> Any:
    """Parsed JSON (plain or .gz). Truncated/invalid JSON and NaN/Infinity -> GroundTruthError."""
    text = read_text(path)
    if not text.strip():
        raise fail(path, "", "empty file (expected JSON)")
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise fail(path, "", f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg} (truncated file?)")
    except ValueError as exc:
        raise fail(path, "", f"invalid JSON: {exc}")


def read_yaml(path: Path) -> Any:
    """Parsed YAML (plain or .gz). Syntax errors -> GroundTruthError."""
    text = read_text(path)
    try:
        return safe_load_unique(text)  # a key given twice is refused, naming it and its line
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1} column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or exc.__class__.__name__
        raise fail(path, "", f"invalid YAML{where}: {problem}")


def read_csv_lists(path: Path) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """Header and (line number, stripped cells) rows of a CSV file (plain or .gz); ragged rows -> GroundTruthError."""
    text = read_text(path)
    if not text.strip():
        raise fail(path, "", "empty file (expected a CSV header and rows)")
    reader = csv.reader(io.StringIO(text))
    try:
        header = [h.strip() for h in next(reader)]
        rows: list[tuple[int, list[str]]] = []
        width = len(header)
        for line_no, cells in enumerate(reader, start=2):
            if len(cells) != width:
                if not cells or all(not c.strip() for c in cells):
                    continue
                raise fail(path, f"line {line_no}", f"has {len(cells)} cells, the header has {width}")
            rows.append((line_no, [c.strip() for c in cells]))
    except csv.Error as exc:
        raise fail(path, "", f"invalid CSV: {exc}")
    dup = sorted({h for h in header if header.count(h) > 1})
    if dup:
        raise fail(path, "header", f"duplicate column(s) {', '.join(dup)}")
    return header, rows


def read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    """Header and rows (as dicts) of a CSV file (plain or .gz)."""
    header, rows = read_csv_lists(path)
    return header, [dict(zip(header, cells)) for _, cells in rows]


# ---------------------------------------------------------------- typed field access
def get(obj: Any, key: str, path: Path | str, where: str, default: Any = _MISSING) -> Any:
    """obj[key] where obj must be a mapping; missing -> GroundTruthError unless a default is given."""
    label = f"{where}.{key}" if where else key
    if not isinstance(obj, dict):
        raise fail(path, where or "<top>", f"expected an object with key '{key}', got {type(obj).__name__}")
    if key not in obj:
        if default is _MISSING:
            raise fail(path, label, "missing")
        return default
    return obj[key]


def as_dict(value: Any, path: Path | str, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise fail(path, where, f"expected an object, got {type(value).__name__} {short(value)}")
    return value


def as_list(value: Any, path: Path | str, where: str) -> list[Any]:
    if not isinstance(value, list):
        raise fail(path, where, f"expected a list, got {type(value).__name__} {short(value)}")
    return value


def as_str(value: Any, path: Path | str, where: str) -> str:
    if not isinstance(value, str):
        raise fail(path, where, f"={short(value)}: expected a string")
    return value


def as_num(value: Any, path: Path | str, where: str, *, min_value: float | None = 0.0) -> float:
    """A finite number (bool refused), optionally >= min_value (default 0: times and counts are never negative)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise fail(path, where, f"={short(value)}: expected a number")
    x = float(value)
    if not math.isfinite(x):
        raise fail(path, where, f"={short(value)}: expected a finite number")
    if min_value is not None and x < min_value:
        raise fail(path, where, f"={short(value)}: must be >= {min_value:g}")
    return x


def as_int(value: Any, path: Path | str, where: str, *, min_value: int | None = 0) -> int:
    """An integer (an integral float such as 12.0 is accepted; bool refused), optionally >= min_value."""
    x = as_num(value, path, where, min_value=None)
    if x != int(x):
        raise fail(path, where, f"={short(value)}: expected an integer")
    if min_value is not None and x < min_value:
        raise fail(path, where, f"={short(value)}: must be >= {min_value}")
    return int(x)


def as_bool(value: Any, path: Path | str, where: str) -> bool:
    if isinstance(value, bool):
        return value
    raise fail(path, where, f"={short(value)}: expected true or false")


def parse_num(text: str, path: Path | str, where: str, *, min_value: float | None = 0.0) -> float:
    """A CSV cell as a finite number."""
    try:
        x = float(text)
    except ValueError:
        raise fail(path, where, f"={short(text)}: expected a number") from None
    if not math.isfinite(x):
        raise fail(path, where, f"={short(text)}: expected a finite number")
    return as_num(x, path, where, min_value=min_value)


def parse_int(text: str, path: Path | str, where: str, *, min_value: int | None = 0) -> int:
    """A CSV cell as an integer ('12' or '12.0')."""
    x = parse_num(text, path, where, min_value=None)
    return as_int(x, path, where, min_value=min_value)


def parse_bool(text: str, path: Path | str, where: str) -> bool:
    low = text.strip().lower()
    if low in ("1", "true", "yes", "y", "t"):
        return True
    if low in ("0", "false", "no", "n", "f"):
        return False
    raise fail(path, where, f"={short(text)}: expected 1/0 or true/false")
