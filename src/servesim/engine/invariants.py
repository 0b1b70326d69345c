"""Engine invariants checked after every step when `check_invariants=True`."""

from __future__ import annotations

import math

from servesim.errors import ServesimError


class InvariantError(ServesimError):
    """An engine invariant broke: names the invariant, the step number and the request id."""

    def __init__(self, invariant: str, step: int, request_id: int | None = None, detail: str = "") -> None:
        self.invariant = invariant
        self.step = step
        self.request_id = request_id
        rid = "-" if request_id is None else str(request_id)
        super().__init__(f"invariant {invariant} violated at step {step} (request {rid}): {detail}")


def check_step(sched, out, step: int, t_before: float, t_after: float, in_engine: int | None = None, reserved=()) -> None:
    """Raise InvariantError if the scheduler state after one step breaks any engine invariant.

    in_engine: requests handed to the scheduler and not finished yet (the simulator's count), for request
    conservation: every one of them must be waiting or running. reserved: requests holding blocks outside the
    scheduler (PD decode leg: allocated, KV still in flight).
    """
    pool = sched.kv.pool
    ref = pool.ref_cnt
    first_id = sched.running[0].id if sched.running else None

    # Requests: handed over = finished + rejected + waiting + running (the simulator counts the first two).
    if in_engine is not None and len(sched.waiting) + len(sched.running) != in_engine:
        raise InvariantError("request_conservation", step, first_id,
                             f"{in_engine} requests in the engine but {len(sched.waiting)} waiting + {len(sched.running)} running")

    # Prefix cache: a request's cached (keyed) blocks carry exactly its own content keys.
    kv = sched.kv
    for r in sched.running:
        for g, t in enumerate(kv.tables(r)):  # one table per KV cache group (engine/kv_hybrid.py), else one
            for i in range(min(r.num_cached_blocks, len(t))):
                key = pool.block_key[t[i]] if t[i] else None
                want = kv.key(r, i, g) if g else kv.key(r, i)
                if key is not None and key != want:
                    raise InvariantError("prefix_hit_identity", step, r.id, f"group {g} block {i} holds {key!r}, expected {want!r}")

    # Clock: the step may not move time backwards (or to NaN).
    if not (t_after >= t_before) or math.isnan(t_after):
        raise InvariantError("clock_monotonic", step, first_id, f"{t_before!r} -> {t_after!r}")

    # Scheduling limits (vLLM asserts the same at the end of schedule()).
    if out.num_scheduled_tokens > sched.max_num_batched_tokens or sum(out.num_new) != out.num_scheduled_tokens:
        rid = out.scheduled[-1].id if out.scheduled else None
        raise InvariantError(
            "token_budget", step, rid,
            f"scheduled {sum(out.num_new)} tokens > max_num_batched_tokens={sched.max_num_batched_tokens}",
        )
    if out.num_running > sched.max_num_seqs or len(sched.running) > sched.max_num_seqs:
        rid = out.admitted[-1].id if out.admitted else first_id
        raise InvariantError("max_num_seqs", step, rid, f"{out.num_running} running > {sched.max_num_seqs}")
    if out.preempted and out.admitted:
        raise InvariantError("no_admission_after_preemption", step, out.admitted[0].id, f"{len(out.preempted)} preempted")

    # KV blocks: reference counts, conservation, free-queue consistency.
    for b in range(1, pool.num_blocks):
        if ref[b] < 0:
            raise InvariantError("kv_refcount_nonnegative", step, _holder(sched, b), f"block {b} ref_cnt={ref[b]}")
    used = sum(1 for b in range(1, pool.num_blocks) if ref[b] > 0)
    if used + pool.num_free != pool.num_usable:
        raise InvariantError("kv_block_conservation", step, first_id, f"used {used} + free {pool.num_free} != {pool.num_usable}")
    for b in pool.free:
        if ref[b] != 0:
            raise InvariantError("kv_free_queue_refcount", step, _holder(sched, b), f"free block {b} has ref_cnt={ref[b]}")
    holders = [0] * pool.num_blocks

    def hold(r) -> None:  # count the blocks of every table of r
        for t in kv.tables(r):
            for b in t:
                holders[b] += 1

    for r in sched.running:
        hold(r)
        for t in kv.tables(r):
            if len(t) * sched.block_size < r.num_computed:
                raise InvariantError("kv_blocks_cover_computed", step, r.id, f"{len(t)} blocks < {r.num_computed} tokens")
        if r.num_output > r.max_tokens or r.num_computed > r.num_tokens:
            raise InvariantError("token_counts", step, r.id, f"output {r.num_output}/{r.max_tokens}, computed {r.num_computed}/{r.num_tokens}")
    for r in reserved:
        hold(r)
    for r in sched.waiting:
        if r.remote or r.load_until is not None:  # KV received (PD) or loaded from the CPU tier: holds blocks
            hold(r)
            continue
        if any(kv.tables(r)) or r.num_computed:
            raise InvariantError("waiting_holds_no_kv", step, r.id, f"{len(r.blocks)} blocks, {r.num_computed} computed")
    for b in range(1, pool.num_blocks):
        if holders[b] != ref[b]:
            raise InvariantError("kv_refcount_matches_holders", step, _holder(sched, b), f"block {b}: ref_cnt={ref[b]}, held by {holders[b]}")


def _holder(sched, block: int) -> int | None:
    for r in sched.running:
        if any(block in t for t in sched.kv.tables(r)):
            return r.id
    return None
