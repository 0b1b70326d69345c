"""Run a sweep's points through simulate() on a local process pool or on Ray; resumable output.

Each point runs in one worker (`run_point`), whose result depends only on the point's arguments, so
results are the same whatever the number of workers or the backend; only the order in which lines are
written follows completion order. Each finished point is appended to the output at once (JSONL: one
line per point), so an interrupted sweep keeps what it finished, and a rerun skips every point whose
key (a hash of its full simulate() arguments, `grid.point_key`) is already in the output.
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

from servesim.errors import ConfigError, ServesimError
from servesim.sweep.grid import SweepSpec, point_key

__all__ = ["SweepPoint", "load_results", "resolve_base", "run_point", "run_sweep", "run_tasks"]

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
    """Simulate one point; a user error (e.g. the model does not fit) is returned as {"error": message}."""
    from servesim.simulation import simulate

    started = time.perf_counter()
    try:
        res = simulate(**kwargs, keep_requests=summary == "exact")
    except ServesimError as exc:
        return {"error": str(exc), "elapsed_s": time.perf_counter() - started}
    config = {k: res.config.get(k) for k in CONFIG_FIELDS}
    return {"config": config, "summary": res.summary, "stages": res.stages or None, "elapsed_s": time.perf_counter() - started}


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
        for row in _read_parquet(output):
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
    import multiprocessing as mp
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    # fork: workers start in milliseconds and inherit the imported modules (imported here first, so no
    # worker pays the ~0.3 s import); the pool is created and its workers forked before any progress-bar
    # thread starts.
    import servesim.simulation  # noqa: F401

    ctx = mp.get_context("fork") if "fork" in mp.get_all_start_methods() else None
    with ProcessPoolExecutor(max_workers=min(workers, len(tasks)), mp_context=ctx) as pool:
        futures = {pool.submit(fn, *task): i for i, task in enumerate(tasks)}
        pending = set(futures)
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for fut in sorted(done, key=futures.__getitem__):
                yield futures[fut], fut.result()


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
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            for ref in done:
                yield refs[ref], ray.get(ref)
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
    with journal.open("a") as fh:
        for i, result in run_tasks(run_point, tasks, workers=workers, use_ray=use_ray, ray_address=ray_address):
            p = todo[i]
            row = _clean({"key": p.key, "index": p.index, "name": spec.name, "params": p.params, **result})
            fh.write(json.dumps(row, separators=(",", ":")) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
            finished += 1
            if on_result is not None:
                on_result(row, finished, total)
    wanted = {p.key for p in points}
    rows = [r for r in load_results(output) if r["key"] in wanted]
    if output.suffix == ".parquet":
        _write_parquet(output, load_results(output))
        journal.unlink(missing_ok=True)
    return rows


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

    for key in ("key", "index", "name", "error", "elapsed_s"):
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
    tmp = path.with_name(f".{path.name}.tmp")
    pq.write_table(pa.table(data), tmp)
    os.replace(tmp, path)


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
