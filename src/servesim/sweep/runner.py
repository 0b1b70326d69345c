"""Run a sweep's points through simulate() on a local process pool or on Ray; resumable output.

Each point runs in one worker (`run_point`), whose answer depends only on the point's arguments, and
every answer is serialised by one function in the parent (`result_line`), so answers are byte-identical
whatever the number of workers or the executor. Each finished point is appended to the output at once
(JSONL: one line per point, completion order), so an interrupted sweep keeps what it finished, and a
rerun skips every point whose key (a hash of its full simulate() arguments, `grid.point_key`) is already
in the output; when every point has finished the file is rewritten in grid order (atomically). Wall-clock
seconds per point are never in the answers: they go to OUTPUT_STEM.timings.jsonl beside the output.
A `.parquet` output is written from a `.partial.jsonl` journal beside it when the sweep ends.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from servesim.config.outfile import check_schema_version, stamp, write_bytes, write_text
from servesim.errors import ConfigError, ServesimError
from servesim.sweep.grid import SweepSpec, point_key

__all__ = ["SweepPoint", "load_results", "resolve_base", "result_line", "run_point", "run_sweep", "run_tasks", "timed_point",
           "timings_path"]

# Config fields copied into each result line next to the summary.
CONFIG_FIELDS = ("model", "hardware", "tensor_parallel_size", "latency_model", "overhead", "num_gpu_blocks")


@dataclass(frozen=True)
class SweepPoint:
    """One point: its index in grid order, grid values, full simulate() arguments and stable key."""

    index: int
    params: dict[str, Any]
    kwargs: dict[str, Any]
    key: str


def resolve_base(spec: SweepSpec) -> SweepSpec:
    """A base whose workload is a preset name or YAML path becomes a mapping when the grid sets workload.* keys."""
    from servesim.sweep.grid import ALIASES

    wl = spec.base.get("workload")
    touches = any(ALIASES.get(k, k).startswith("workload.") for k in spec.grid)
    if not touches or isinstance(wl, dict):
        return spec
    from servesim.workload import load_workload_yaml, preset

    if wl is None:
        wl = "chat"
    ws = load_workload_yaml(wl) if str(wl).endswith((".yaml", ".yml")) or Path(str(wl)).is_file() else preset(str(wl))
    return spec.model_copy(update={"base": {**spec.base, "workload": ws.model_dump(mode="json", exclude_none=True)}})


def expand(spec: SweepSpec) -> list[SweepPoint]:
    """Every point of the sweep, validated up front (engine args and workload) so errors come before any run."""
    from pydantic import ValidationError

    from servesim.config import engine_config
    from servesim.workload import parse_workload

    spec = resolve_base(spec)
    points = []
    for i, params in enumerate(spec.points()):
        kw = spec.kwargs(params)
        where = f"point {i} ({', '.join(f'{k}={v}' for k, v in params.items())})"
        try:
            if isinstance(kw.get("workload"), dict):
                parse_workload(kw["workload"], where="workload")
            if isinstance(kw.get("engine"), dict):
                engine_config(**kw["engine"])
        except ServesimError as exc:
            raise ConfigError(f"sweep {where}: {exc}") from None
        except ValidationError as exc:  # engine_config: pydantic errors
            first = str(exc).splitlines()
            raise ConfigError(f"sweep {where}: engine: {first[1] if len(first) > 1 else first[0]}") from None
        points.append(SweepPoint(i, params, kw, point_key(kw, spec.summary)))
    return points


def run_point(kwargs: dict[str, Any], summary: str = "exact") -> dict[str, Any]:
    """Simulate one point; a user error (e.g. the model does not fit) is returned as {"error": message}.
    The answer depends only on the arguments (no wall clock), whichever process or executor runs it."""
    from servesim.simulation import simulate

    try:
        res = simulate(**kwargs, keep_requests=summary == "exact")
    except ServesimError as exc:
        return {"error": str(exc)}
    config = {k: res.config.get(k) for k in CONFIG_FIELDS}
    out = {"config": config, "summary": res.summary, "stages": res.stages or None}
    if res.cluster:  # a cluster point: per-pool figures and the router's, next to the cluster-wide summary
        out["cluster"] = {"router": res.cluster["router"], "pools": res.cluster["pools"]}
    return out


def timed_point(kwargs: dict[str, Any], summary: str = "exact") -> tuple[dict[str, Any], float]:
    """run_point and its wall-clock seconds, measured in the worker (timings go to the sidecar, never the answers)."""
    started = time.perf_counter()
    answer = run_point(kwargs, summary)
    return answer, time.perf_counter() - started


def result_line(point: SweepPoint, name: str | None, answer: dict[str, Any]) -> str:
    """The one serialisation of a point's answer as a JSONL line (every executor's results pass through it)."""
    row = _clean({"key": point.key, "index": point.index, "name": name, "params": point.params, **answer})
    return _line(row)


def _line(row: dict[str, Any]) -> str:
    # Every JSONL line carries schema_version (config/outfile.stamp): lines are read back one by one on resume.
    return json.dumps(stamp(row), separators=(",", ":"), allow_nan=False) + "\n"


def timings_path(output: str | Path) -> Path:
    """Where a sweep's wall-clock timings go: OUTPUT_STEM.timings.jsonl beside the output (one line per point run)."""
    output = Path(output)
    return output.with_name(output.stem + ".timings.jsonl")


def _clean(x: Any) -> Any:
    """JSON-safe: non-finite floats become None."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    return x


def _journal(output: Path) -> Path:
    return output.with_name(output.name + ".partial.jsonl") if output.suffix == ".parquet" else output


def load_results(output: str | Path) -> list[dict[str, Any]]:
    """Result lines of a sweep output (JSONL, or Parquet plus its journal), sorted by point index."""
    output = Path(output)
    rows: dict[str, dict[str, Any]] = {}
    if output.suffix == ".parquet" and output.exists():
        for n, row in enumerate(_read_parquet(output), 1):
            check_schema_version(row, f"{output} row {n}")
            rows[row["key"]] = row
    journal = _journal(output)
    if journal.exists():
        text = journal.read_text()
        lines = text.split("\n")
        for n, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                # The last line cut by an interrupted write is dropped (its point reruns); others are corruption.
                if n == len(lines):
                    break
                raise ConfigError(f"{journal}:{n}: not a JSON line; remove it or start a new output") from None
            check_schema_version(row, f"{journal}:{n}")
            rows[row["key"]] = row
    return sorted(rows.values(), key=lambda r: (r.get("index", 0), r["key"]))


def run_tasks(
    fn: Callable[..., Any], tasks: list[tuple[Any, ...]], *, workers: int = 1, ray_address: str | None = None, use_ray: bool = False,
) -> Iterator[tuple[int, Any]]:
    """Yield (task index, fn(*task)) as tasks finish: in-process for 1 worker, else a process pool, or Ray."""
    if not tasks:
        return
    if use_ray:
        yield from _ray_tasks(fn, tasks, ray_address, workers)
        return
    if workers <= 1:
        for i, task in enumerate(tasks):
            yield i, fn(*task)
        return
    # fork: workers start in milliseconds and inherit the imported modules (imported here first, so no
    # worker pays the ~0.3 s import); the pool is created and its workers forked before any progress-bar
    # thread starts. Ctrl-C kills the workers (servesim.workers) instead of waiting for their points.
    import servesim.simulation  # noqa: F401
    from servesim.workers import map_unordered

    yield from map_unordered(fn, tasks, workers)


def _ray_tasks(fn: Callable[..., Any], tasks: list[tuple[Any, ...]], address: str | None, workers: int) -> Iterator[tuple[int, Any]]:
    try:
        import ray
    except ModuleNotFoundError:
        raise ConfigError("--ray needs Ray: pip install 'servesim[ray]'") from None
    started_here = False
    if not ray.is_initialized():
        kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
        if address:
            kwargs["address"] = address
        elif workers > 1:
            kwargs["num_cpus"] = workers
        try:
            ray.init(**kwargs)
        except (ConnectionError, ValueError, RuntimeError) as exc:
            raise ConfigError(f"--ray {address or 'local'}: cannot start or reach Ray ({str(exc).splitlines()[0]})") from None
        started_here = True
    try:
        remote = ray.remote(num_cpus=1)(fn)
        refs = {remote.remote(*task): i for i, task in enumerate(tasks)}
        pending = list(refs)
        try:
            while pending:
                done, pending = ray.wait(pending, num_returns=1)
                for ref in done:
                    yield refs[ref], ray.get(ref)
        except BaseException:  # Ctrl-C (or the caller stopping early): cancel what is still running
            for ref in pending:
                ray.cancel(ref, force=True)
            raise
    finally:
        if started_here:
            ray.shutdown()


def run_sweep(
    spec: SweepSpec,
    output: str | Path,
    *,
    workers: int = 1,
    use_ray: bool = False,
    ray_address: str | None = None,
    on_result: Callable[[dict[str, Any], int, int], None] | None = None,
) -> list[dict[str, Any]]:
    """Run every point not yet in `output`, appending each result as it finishes; return all results.

    on_result(row, done, total) is called after each point is written (for progress bars).
    """
    if workers < 1:
        raise ConfigError(f"--workers {workers}: must be >= 1")
    output = Path(output)
    if output.suffix not in (".jsonl", ".parquet"):
        raise ConfigError(f"--output {output}: must end in .jsonl or .parquet")
    if not output.resolve().parent.is_dir():
        raise ConfigError(f"--output {output}: folder {output.parent} does not exist")
    if output.suffix == ".parquet":
        _need_pyarrow()
    points = expand(spec)
    done_keys = {r["key"] for r in load_results(output)}
    todo = [p for p in points if p.key not in done_keys]
    total, finished = len(points), len(points) - len(todo)
    journal = _journal(output)
    _drop_partial_line(journal)
    tasks = [(p.kwargs, spec.summary) for p in todo]
    fh = times = None
    results = run_tasks(timed_point, tasks, workers=workers, use_ray=use_ray, ray_address=ray_address)
    try:
        # Each finished point is appended at once (completion order) so an interrupt keeps it; the file is
        # opened at the first result, so an interrupt before any point finishes leaves no empty file.
        for i, (answer, elapsed_s) in results:
            p = todo[i]
            line = result_line(p, spec.name, answer)
            if fh is None:
                fh, times = journal.open("a"), timings_path(output).open("a")
            fh.write(line)
            fh.flush()
            os.fsync(fh.fileno())
            times.write(_line({"key": p.key, "index": p.index, "elapsed_s": elapsed_s}))
            times.flush()
            finished += 1
            if on_result is not None:
                on_result(json.loads(line), finished, total)
    finally:
        results.close()  # an interrupt ends the workers now (servesim.workers), not when the generator is collected
        for f in (fh, times):
            if f is not None:
                f.close()
    wanted = {p.key for p in points}
    rows = load_results(output)
    if output.suffix == ".parquet":
        _write_parquet(output, rows)
        journal.unlink(missing_ok=True)
    else:
        # Answers in grid order whatever the number of workers or the executor: the journal is rewritten
        # sorted (atomically) once every point has finished, so -j 1, -j 4 and Ray give the same bytes.
        text = "".join(_line(_answer_only(r)) for r in rows)
        if rows and (not output.exists() or output.read_text() != text):
            write_text(output, lambda out: out.write(text), "--output")
    return [r for r in rows if r["key"] in wanted]


def _answer_only(row: dict[str, Any]) -> dict[str, Any]:
    """A result line without wall-clock fields (lines written before timings moved to the sidecar had elapsed_s)."""
    return {k: v for k, v in row.items() if k != "elapsed_s"}


def _drop_partial_line(journal: Path) -> None:
    """Cut a trailing line without its newline (an interrupted write) so appends start on a fresh line."""
    if not journal.exists():
        return
    data = journal.read_bytes()
    if data and not data.endswith(b"\n"):
        with journal.open("r+b") as fh:
            fh.truncate(data.rfind(b"\n") + 1)


def flatten(row: dict[str, Any]) -> dict[str, Any]:
    """One result line as flat columns: key, index, params.*, config.*, summary.* (nested with dots)."""
    out: dict[str, Any] = {}

    def put(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                put(f"{prefix}.{k}" if prefix else str(k), v)
        else:
            out[prefix] = value

    for key in ("schema_version", "key", "index", "name", "error"):
        if key in row:
            out[key] = row[key]
    for k, v in (row.get("params") or {}).items():
        out[f"params.{k}"] = v
    for key in ("config", "summary"):
        if isinstance(row.get(key), dict):
            put(key, row[key])
    if row.get("stages"):
        out["stages_json"] = json.dumps(row["stages"])
    return out


def _need_pyarrow() -> None:
    try:
        import pyarrow  # noqa: F401
    except ModuleNotFoundError:
        raise ConfigError("--output *.parquet needs pyarrow: pip install 'servesim[parquet]' (or write .jsonl)") from None


def _write_parquet(path: Path, rows: Iterable[dict[str, Any]]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    flat = [flatten(r) for r in rows]
    cols = sorted({k for r in flat for k in r}, key=lambda k: (k.split(".")[0] != "key", k))
    for r in flat:  # grid values of mixed types (e.g. 1 and "a") are stored as JSON text
        for k in cols:
            r.setdefault(k, None)
    data = {}
    for k in cols:
        vals = [r[k] for r in flat]
        kinds = {type(v) for v in vals if v is not None}
        if len(kinds) > 1 and not kinds <= {int, float}:
            vals = [None if v is None else json.dumps(v) for v in vals]
        elif kinds == {int, float}:
            vals = [None if v is None else float(v) for v in vals]
        elif kinds and next(iter(kinds)) in (list, dict):
            vals = [None if v is None else json.dumps(v) for v in vals]
        data[k] = vals
    table = pa.table(data)
    write_bytes(path, lambda fh: pq.write_table(table, fh), "--output")


def _read_parquet(path: Path) -> list[dict[str, Any]]:
    """Rows of a sweep Parquet file, re-nested enough for resuming and loading (key, index, params, summary)."""
    import pyarrow.parquet as pq

    out = []
    for flat in pq.read_table(path).to_pylist():
        row: dict[str, Any] = {}
        for k, v in flat.items():
            if k == "stages_json":
                row["stages"] = json.loads(v) if v else None
                continue
            if k.startswith("params."):  # grid keys may contain dots themselves
                row.setdefault("params", {})[k[len("params.") :]] = v
                continue
            parts = k.split(".")
            node = row
            for part in parts[:-1]:
                node = node.setdefault(part, {})
            node[parts[-1]] = v
        out.append(row)
    return out
