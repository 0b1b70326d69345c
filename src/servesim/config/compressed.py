"""Reading a user's file whole, gzip-compressed or not: the one place servesim opens `.gz` inputs."""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

from servesim.errors import ServesimError

__all__ = ["GZIP_MAGIC", "is_gzip", "read_bytes", "strip_gz"]

GZIP_MAGIC = b"\x1f\x8b"  # RFC 1952 member header: ID1 ID2


def is_gzip(path: Path, head: bytes) -> bool:
    """True when the file is gzip data: a `.gz` name or the gzip magic bytes at its start."""
    return path.suffix.lower() == ".gz" or head[:2] == GZIP_MAGIC


def strip_gz(path: Path) -> Path:
    """The path without a trailing `.gz` (so `trace.csv.gz` is read as a `.csv`)."""
    return path.with_suffix("") if path.suffix.lower() == ".gz" else path


def read_bytes(path: str | Path, error: type[ServesimError] = ServesimError, what: str = "file") -> bytes:
    """The file's bytes, gunzipped when it is gzip data; OSError propagates, corrupt gzip raises `error` naming the file."""
    p = Path(path)
    raw = p.read_bytes()
    if not is_gzip(p, raw):
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as exc:
        raise error(f"{p}: cannot read gzip data of the {what} ({exc.__class__.__name__}: {exc}); truncated or corrupt file".replace("\n", " ")) from None
