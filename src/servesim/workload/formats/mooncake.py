"""Mooncake trace (JSONL): `{"timestamp": ms, "input_length": N, "output_length": M, "hash_ids": [...]}` per line.

Schema as Mooncake publishes it (kvcache-ai/Mooncake FAST25-release/traces; ai-dynamo's data_generator
README): timestamp = arrival in milliseconds since the first request; input/output lengths in tokens;
hash_ids = one id per 512-token block of the prompt, equal ids meaning equal blocks (a shared prefix).
"""

from __future__ import annotations

from pathlib import Path

from servesim.engine.request import RequestSpec
from servesim.errors import WorkloadError
from servesim.workload.formats.columns import rows_of
from servesim.workload.traces import Trace, _as_float, _as_int, _ordered

__all__ = ["BLOCK_TOKENS", "read_mooncake"]

BLOCK_TOKENS = 512  # tokens per hash_ids block (Mooncake trace README / ai-dynamo data_generator: block_size 512)


def _leading(a: list[int], b: list[int]) -> int:
    """How many leading entries a and b share."""
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def read_mooncake(path: str | Path, *, sort: bool = False) -> Trace:
    """Requests from a Mooncake JSONL trace: ms timestamps, token lengths, hash_ids as shared-prefix groups.

    Modelling assumption (servesim's prefix groups are chains, engine/request.py): requests whose hash_ids start
    with the same id form group "mooncake:<id>"; the group's chain is the longest hash_ids list seen so far that
    each newer one extends; a request's prefix is its leading blocks equal to that chain (x 512 tokens, at most
    input_length): all its blocks when it starts or extends the chain, so later requests can hit them. Sharing on a branch off the chain is not counted (under-counts cache hits, never over-counts).
    """
    p = Path(path)
    _, rows = rows_of(p, jsonl=True)
    chains: dict[int, list[int]] = {}
    specs: list[RequestSpec] = []
    wheres: list[str] = []
    for where, row in rows:
        arrival = _as_float(row.get("timestamp"), where, "timestamp") / 1e3  # Mooncake timestamps are ms
        if arrival < 0:
            raise WorkloadError(f"{where}: timestamp={row.get('timestamp')!r}: must be >= 0 (ms since the first request)")
        inp = _as_int(row.get("input_length"), where, "input_length", 1)
        out = _as_int(row.get("output_length"), where, "output_length", 1)
        ids = row.get("hash_ids", [])
        if not isinstance(ids, list) or any(isinstance(x, bool) or not isinstance(x, int) for x in ids):
            raise WorkloadError(f"{where}: hash_ids={str(ids)[:40]!r}: expected a list of integers")
        group, prefix = None, 0
        if ids:
            chain = chains.setdefault(ids[0], [])
            shared = _leading(ids, chain)
            if shared == len(chain):
                chains[ids[0]] = list(ids)  # this request starts or extends the chain: all its blocks are shareable
                shared = len(ids)
            group, prefix = f"mooncake:{ids[0]}", min(shared * BLOCK_TOKENS, inp)
        specs.append(RequestSpec(len(specs), arrival, inp, out, group, prefix))
        wheres.append(where)
    if not specs:
        raise WorkloadError(f"{p}: no requests in the trace")
    return Trace(_ordered(specs, wheres, sort), str(p), meta={"format": "mooncake"})
