"""Speculative decoding in the vLLM V1 scheduler (vllm/v1/core/sched/scheduler.py, vllm/v1/spec_decode/).

A decoding request carries `spec` draft tokens proposed after its last step; the scheduler schedules
1 + spec tokens (the last sampled token plus the drafts) against the token budget and KV slots. After the
verify step an accepted prefix of the drafts (drawn here) plus one bonus token is emitted, all at the step's
end time, and num_computed rolls back over the rejected drafts (vLLM: num_computed_tokens -= num_rejected).
"""

from __future__ import annotations

from servesim.engine.invariants import InvariantError

_MASK = (1 << 64) - 1


def _uniform(seed: int, uid: int, pos: int, j: int) -> float:
    """A uniform in [0, 1) from (seed, request uid, output position, draft index): splitmix64, reproducible."""
    z = (seed * 0x9E3779B97F4A7C15 + uid * 0xBF58476D1CE4E5B9 + pos * 0x94D049BB133111EB + j * 0x2545F4914F6CDD1D) & _MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
    z ^= z >> 31
    return (z >> 11) / float(1 << 53)


def accepted_count(probs: tuple[float, ...], n: int, seed: int, uid: int, pos: int) -> int:
    """Drafts accepted out of the first n: the leading run j = 0.. with u_j < probs[j] (a chain stops at its first reject)."""
    for j in range(n):
        if not _uniform(seed, uid, pos, j) < probs[j]:
            return j
    return n


class SpecDecode:
    """Draft proposals and verification for one engine: k drafts per step, acceptance per position, counters."""

    __slots__ = ("k", "probs", "lookahead", "seed", "check", "proposed", "accepted", "steps_rejected")

    def __init__(self, k: int, probs: tuple[float, ...], lookahead: int, seed: int = 0, check: bool = False) -> None:
        self.k = k
        self.probs = probs
        self.lookahead = lookahead  # extra KV slots allocate_slots reserves (EAGLE-style drafts write target KV)
        self.seed = seed
        self.check = check
        self.proposed = 0  # draft tokens scheduled for verification, whole run
        self.accepted = 0
        self.steps_rejected: dict[int, int] = {}  # uid -> drafts rejected in the last step (token conservation)

    def propose(self, req) -> None:
        """Attach drafts to a request that just sampled: k, but never more than its outputs left minus the bonus."""
        # Assumption: drafts past max_tokens are not proposed (vLLM would verify and then drop them at check_stop).
        left = req.max_tokens - req.num_output - 1
        req.drafts = self.k if self.k < left else (left if left > 0 else 0)

    def sample(self, scheduled: list, now: float, record_token_times: bool) -> list:
        """sample_tokens() with verification: emit accepted drafts + a bonus token at `now` (s); return finished requests."""
        finished = []
        rejected = self.steps_rejected
        rejected.clear()
        probs, seed = self.probs, self.seed
        for req in scheduled:
            # Drafts that made it into this step (the budget may cut them: vLLM num_scheduled_spec_tokens).
            n_spec = req.num_computed - req.num_tokens
            if n_spec < 0:
                continue  # partial prefill chunk: no sample
            acc = accepted_count(probs, n_spec, seed, req.uid, req.num_output) if n_spec else 0
            if self.check and not 0 <= acc <= n_spec:
                raise InvariantError("spec_accepted_le_proposed", 0, req.id, f"accepted {acc} of {n_spec}")
            self.proposed += n_spec
            self.accepted += acc
            if n_spec:
                rejected[req.uid] = n_spec - acc
                req.num_computed -= n_spec - acc  # vLLM: rejected drafts' slots are recomputed later
            emit = 1 + acc
            req.num_output += emit
            req.num_tokens += emit
            rec = req.rec
            if rec.first_token_s is None:
                rec.first_token_s = now
            if record_token_times:
                rec.token_times_s.extend([now] * emit)  # type: ignore[union-attr]
            if self.check and req.num_output > req.max_tokens:
                raise InvariantError("spec_max_tokens", 0, req.id, f"emitted {req.num_output} > max_tokens {req.max_tokens}")
            req.drafts = 0
            if req.num_output >= req.max_tokens:
                rec.finish_s = now
                finished.append(req)
            else:
                self.propose(req)
        return finished
