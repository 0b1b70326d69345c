"""Reading a user's YAML text: UTF-8 only, and a key given twice in one mapping is refused (not silently the last)."""

from __future__ import annotations

import re
from typing import Any

import yaml

__all__ = ["DuplicateKeyError", "UniqueKeyLoader", "YamlProblem", "decode_utf8", "parse_yaml_bytes", "safe_load_unique", "yaml_error_text"]


class DuplicateKeyError(yaml.YAMLError):
    """A mapping that gives the same key twice; `problem_mark` is where the second one is."""

    def __init__(self, key: Any, mark: Any) -> None:
        super().__init__(f"key {key!r} given twice")
        self.key, self.problem_mark, self.problem = key, mark, f"key {key!r} given twice"


class UniqueKeyLoader(yaml.SafeLoader):
    """yaml.SafeLoader that raises DuplicateKeyError instead of keeping the last of two equal keys."""

    def construct_mapping(self, node: Any, deep: bool = False) -> dict[Any, Any]:
        self.flatten_mapping(node)  # resolve `<<` merge keys first: a merged key may be overridden on purpose
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                duplicate = key in seen
            except TypeError:  # an unhashable key: SafeLoader reports it itself
                break
            if duplicate:
                raise DuplicateKeyError(key, key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


# YAML 1.2 floats: PyYAML (YAML 1.1) reads `1e12` (no dot) as a string, which strict schemas would then refuse.
UniqueKeyLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def decode_utf8(raw: bytes) -> str:
    """raw as text (a UTF-8 BOM is dropped); UnicodeDecodeError (with .start = byte offset) when not UTF-8."""
    return raw.decode("utf-8-sig")


def safe_load_unique(text: str) -> Any:
    """yaml.safe_load with duplicate keys refused (DuplicateKeyError, a yaml.YAMLError naming the key and line)."""
    return yaml.load(text, Loader=UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass


def yaml_error_text(exc: yaml.YAMLError) -> str:
    """' at line L column C: problem' for a YAML error (the location when known)."""
    mark = getattr(exc, "problem_mark", None)
    at = f" at line {mark.line + 1} column {mark.column + 1}" if mark is not None else ""
    problem = getattr(exc, "problem", None) or exc.__class__.__name__
    return f"{at}: {problem}"


class YamlProblem(ValueError):
    """Why YAML bytes could not be read, as one line without the file name ('byte offset 94: not UTF-8 ...')."""


def parse_yaml_bytes(raw: bytes) -> Any:
    """The YAML document in raw (UTF-8, duplicate keys refused); YamlProblem with a one-line reason otherwise."""
    try:
        text = decode_utf8(raw)
    except UnicodeDecodeError as exc:
        raise YamlProblem(f"byte offset {exc.start}: not UTF-8 (byte 0x{raw[exc.start]:02x}; save the file as UTF-8)") from None
    try:
        return safe_load_unique(text)
    except yaml.YAMLError as exc:
        raise YamlProblem(f"not valid YAML{yaml_error_text(exc)}") from None
