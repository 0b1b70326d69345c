"""Writing a user's output file without ever destroying something else: the one writer every command uses.

Rules (docs/FILES.md):
- a regular file (or a new path) is written through a temporary file in the target's folder and renamed
  over it, so an interrupted or failed write leaves the old file (or nothing) behind, never half a file;
- a symlink is followed: its target is written and the link is kept;
- a stream (a character device such as /dev/null, a FIFO, a file descriptor such as /dev/stdout or
  /dev/fd/N, anything under /proc) is written in place, never replaced; a block device, socket or folder is refused;
- a new file gets mode 0o666 & ~umask, as other tools' files do; an overwritten file keeps its mode;
- an output path that is one of the command's inputs, or another of its outputs, is refused before any work;
- JSON is written strictly: a NaN or infinity is refused, naming the field, instead of writing invalid JSON;
- every JSON object servesim writes carries `schema_version` (SCHEMA_VERSION, "MAJOR.MINOR") as its first key,
  stamped here; JSONL files carry it on every line (each line is read on its own when a sweep resumes).
  A reader of servesim's own files accepts a file without it (written before it existed) and refuses a newer major.
"""

from __future__ import annotations

import json
import math
import os
import stat
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO, Any

from servesim.errors import ServesimError

__all__ = ["SCHEMA_VERSION", "check_output", "check_schema_version", "stamp", "dumps_json", "is_stream", "nonfinite_field", "refuse_overlap", "target_of", "write_bytes",
           "write_json", "write_text"]

# The version of every JSON layout servesim writes (docs/FILES.md, docs/schema/): MAJOR changes when a key is
# removed or changes meaning (older readers must refuse), MINOR when keys are added (older readers may ignore them).
SCHEMA_VERSION = "1.0"


def stamp(payload: Any) -> Any:
    """A JSON object with `schema_version` as its first key (any value it carried replaced); other values unchanged."""
    if not isinstance(payload, dict):
        return payload
    return {"schema_version": SCHEMA_VERSION, **{k: v for k, v in payload.items() if k != "schema_version"}}


def check_schema_version(doc: Any, where: str) -> None:
    """Refuse a servesim file whose schema_version has a newer major than this servesim reads (absent: accepted)."""
    if not isinstance(doc, dict) or "schema_version" not in doc:
        return
    value = doc["schema_version"]
    major = str(value).split(".")[0] if isinstance(value, (str, int)) and not isinstance(value, bool) else ""
    if not major.isdigit():
        raise ServesimError(f"{where}: schema_version {value!r}: expected \"MAJOR.MINOR\" such as \"{SCHEMA_VERSION}\"")
    if int(major) > int(SCHEMA_VERSION.split(".")[0]):
        raise ServesimError(f"{where}: schema_version {value} is newer than this servesim reads ({SCHEMA_VERSION}); "
                            "upgrade servesim to read it")


# These name a process's open descriptors: written in place (replacing /dev/stdout's target would swap a
# shell's redirected log for our file), whatever they point to.
FD_ROOTS = ("/proc/", "/dev/fd/")
STD_STREAMS = ("/dev/stdin", "/dev/stdout", "/dev/stderr")


def _stat(path: Path) -> os.stat_result | None:
    try:
        return os.stat(path)  # follows symlinks
    except FileNotFoundError:
        return None
    except NotADirectoryError:
        return None


def _names_a_descriptor(path: str | Path) -> bool:
    """True when path, or a link on its way, is a file descriptor (/dev/stdout, /dev/fd/N, /proc/.../fd/N)."""
    p = os.path.abspath(path)
    for _ in range(40):  # the kernel's own limit on chained links
        if p.startswith(FD_ROOTS) or p in STD_STREAMS:
            return True
        if not os.path.islink(p):
            return False
        p = os.path.abspath(os.path.join(os.path.dirname(p), os.readlink(p)))
    return False


def is_stream(path: str | Path) -> bool:
    """True when path names a character device, a FIFO or a file descriptor such as /dev/stdout (written in place)."""
    st = _stat(Path(path))
    if st is not None and (stat.S_ISCHR(st.st_mode) or stat.S_ISFIFO(st.st_mode)):
        return True
    return _names_a_descriptor(path)


def target_of(path: str | Path) -> Path:
    """The file a write to path lands in: symlinks followed (a dangling link's target is created)."""
    return Path(os.path.realpath(path))


def check_output(path: str | Path | None, flag: str, *, regular_only: bool = False) -> None:
    """Refuse an output path before any work starts: a folder, a block device or socket, a missing or read-only
    folder; with regular_only (outputs read back, such as a sweep's journal) streams are refused too."""
    if path is None:
        return
    path = Path(path)
    st = _stat(path)
    if st is not None:
        mode = st.st_mode
        if stat.S_ISDIR(mode):
            raise ServesimError(f"{flag} {path}: is a folder; give a file name")
        if not stat.S_ISREG(mode) and not stat.S_ISCHR(mode) and not stat.S_ISFIFO(mode):
            kind = "a block device" if stat.S_ISBLK(mode) else "a socket" if stat.S_ISSOCK(mode) else "not a regular file"
            raise ServesimError(f"{flag} {path}: is {kind}; servesim writes regular files, character devices and pipes only")
    if regular_only and is_stream(path):
        raise ServesimError(f"{flag} {path}: must be a regular file (it is read back to resume), not a device or pipe")
    if is_stream(path):
        if st is None:
            raise ServesimError(f"{flag} {path}: does not exist (file descriptors and /proc entries are written only if they exist)")
        if not os.access(path, os.W_OK):
            raise ServesimError(f"{flag} {path}: not writable")
        return
    target = target_of(path)  # a link to a folder was refused above (stat follows links)
    parent = target.parent
    if not parent.is_dir():
        raise ServesimError(f"{flag} {path}: folder {path.parent if target == path.absolute() else parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK) or (st is not None and not os.access(target, os.W_OK)):
        raise ServesimError(f"{flag} {path}: not writable")


def _same(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist yet: compare where writes would land
        return target_of(a) == target_of(b)


def refuse_overlap(outputs: Iterable[tuple[str, str | Path | None]], inputs: Iterable[tuple[str, str | Path | None]] = ()) -> None:
    """Refuse, before any work, an output that is one of the inputs or another output (resolved paths compared).
    Streams (/dev/null, /dev/stdout, pipes) are exempt: writing one twice destroys nothing."""
    outs = [(flag, Path(p)) for flag, p in outputs if p is not None and not is_stream(p)]
    ins = [(flag, Path(p)) for flag, p in inputs if p is not None and str(p) != "" and Path(p).is_file() and not is_stream(p)]
    for i, (flag, out) in enumerate(outs):
        for in_flag, inp in ins:
            if _same(out, inp):
                raise ServesimError(f"{flag} {out}: is the input {in_flag} {inp}; refusing to overwrite an input, give another output path")
        for other_flag, other in outs[:i]:
            if _same(out, other):
                raise ServesimError(f"{flag} {out}: is the same file as {other_flag} {other}; give each output its own path")


def _umask() -> int:
    """The process umask: read from /proc (no race with other threads), else set-and-restore."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _write(path: Path, write: Callable[[IO[Any]], None], flag: str, binary: bool, newline: str | None) -> None:
    path = Path(path)
    check_output(path, flag)
    if is_stream(path):
        try:  # append, never truncate: /dev/stdout may be a shell's `>> log` redirection
            with open(path, "ab" if binary else "a", **({} if binary else {"newline": newline})) as fh:
                write(fh)
        except OSError as exc:
            raise ServesimError(f"{flag} {path}: cannot write ({exc.strerror})") from None
        return
    target = target_of(path)
    st = _stat(target)
    mode = stat.S_IMODE(st.st_mode) if st is not None else 0o666 & ~_umask()
    try:
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    except OSError as exc:
        raise ServesimError(f"{flag} {path}: cannot write ({exc.strerror})") from None
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb" if binary else "w", **({} if binary else {"newline": newline})) as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise ServesimError(f"{flag} {path}: cannot write ({exc.strerror})") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text(path: str | Path, write: Callable[[IO[str]], None], flag: str = "--output", newline: str | None = None) -> None:
    """Write a text file by calling write(fh), under the rules above (atomic for files, in place for streams)."""
    _write(Path(path), write, flag, False, newline)


def write_bytes(path: str | Path, write: Callable[[IO[bytes]], None], flag: str = "--output") -> None:
    """Write a binary file (e.g. a PNG) by calling write(fh), under the rules above."""
    _write(Path(path), write, flag, True, None)


def nonfinite_field(x: Any, where: str = "") -> str | None:
    """The dotted path of the first NaN or infinity in a JSON-ready value (None when every number is finite)."""
    if isinstance(x, float):
        return (where or "value") if not math.isfinite(x) else None
    if isinstance(x, dict):
        for k, v in x.items():
            found = nonfinite_field(v, f"{where}.{k}" if where else str(k))
            if found:
                return found
    elif isinstance(x, (list, tuple)):
        for i, v in enumerate(x):
            found = nonfinite_field(v, f"{where}[{i}]")
            if found:
                return found
    return None


def dumps_json(payload: Any, where: str, **kwargs: Any) -> str:
    """json.dumps refusing NaN and infinity: a ServesimError naming `where` and the non-finite field."""
    try:
        return json.dumps(payload, allow_nan=False, **kwargs)
    except ValueError as exc:
        field = nonfinite_field(payload)
        if field is None:
            raise
        value = _get(payload, field)
        raise ServesimError(f"{where}: {field}={value}: not a finite number; refusing to write invalid JSON "
                            "(an input produced an overflow or NaN)") from None


def _get(payload: Any, field: str) -> Any:
    import re

    node = payload
    for part in re.findall(r"[^.\[\]]+|\[\d+\]", field):
        node = node[int(part[1:-1])] if part.startswith("[") and isinstance(node, (list, tuple)) else node[part]
    return node


def write_json(path: str | Path, payload: Any, flag: str = "--output", indent: int | None = 2) -> None:
    """Write strict JSON (indented, trailing newline, `schema_version` stamped on an object); non-finite numbers are
    refused before anything is written."""
    text = dumps_json(stamp(payload), f"{flag} {path}", indent=indent) + "\n"
    write_text(path, lambda fh: fh.write(text), flag)
