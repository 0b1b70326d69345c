"""One vLLM V1 `Scheduler.schedule()` step: running requests first, then waiting ones (vllm/v1/core/sched/scheduler.py)."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from servesim.config.engine import EngineConfig
from servesim.config.speculative import EAGLE_METHODS
from servesim.engine.kv_cache import KVCacheManager, cdiv
from servesim.engine.kv_groups import KVGroups
from servesim.engine.kv_hybrid import HybridKVCacheManager
from servesim.engine.offload import CPUTier, OffloadSpec
from servesim.engine.request import RequestRecord, RequestSpec
from servesim.errors import ConfigError


class EngineRequest:
    """Engine-side state of one request (vLLM `Request`): token counts, blocks and its record."""

    __slots__ = (
        "spec", "rec", "id", "uid", "num_prompt", "max_tokens", "num_tokens", "num_computed", "num_output",
        "blocks", "num_cached_blocks", "group", "n_shared_blocks", "num_preemptions",
        # Event-skipping bookkeeping (engine/skipping.py): position in running order and lazy decode offsets.
        "rank", "lazy", "off", "ooff", "g0", "sfin", "evs",
        # KV bookkeeping under KVCacheManager.defer_private: parked run (position, length) and its hits.
        "parked", "phits",
        # Prompt tokens whose KV another instance computed and sent (PD decode side; 0 = none).
        "remote",
        # CPU KV offload (engine/offload.py): time (s) its load from the CPU tier finishes; None = no load.
        "load_until",
        # Draft tokens attached for the next verify step (speculative decoding, engine/spec_decode.py; 0 = none).
        "drafts",
        # Block table of every KV cache group under the hybrid manager (engine/kv_hybrid.py; None = one table, `blocks`).
        "tables",
    )

    def __init__(self, spec: RequestSpec, rec: RequestRecord, block_size: int, uid: int | None = None) -> None:
        # (Runs once per request: chained assignments keep it short.)
        self.spec = spec
        self.rec = rec
        self.id = sid = spec.id
        self.uid = sid if uid is None else uid  # run-unique number keying this request's private blocks
        # vLLM request.num_tokens: prompt + generated so far.
        self.num_prompt = self.num_tokens = inp = spec.input_tokens
        self.max_tokens = spec.output_tokens
        # num_computed: vLLM num_computed_tokens, tokens whose KV is (being) computed;
        # num_cached_blocks: leading blocks already registered in the prefix cache.
        self.num_computed = self.num_output = self.num_cached_blocks = self.num_preemptions = 0
        self.blocks: list[int] = []
        g = spec.prefix_group
        if g is None:
            self.group = None
            self.n_shared_blocks = 0
        else:
            # str: never equal to a uid. vLLM's block hashes carry the adapter name as an extra key
            # (kv_cache_utils._gen_lora_extra_hash_keys): one prefix under two adapters is two cache entries.
            self.group = str(g) if spec.lora is None else f"{g}\x00lora:{spec.lora}"
            # Blocks wholly inside the shared prefix have group-wide content; the rest are unique (RequestSpec contract).
            self.n_shared_blocks = min(spec.prefix_tokens, inp) // block_size
        self.rank = self.off = self.ooff = self.g0 = self.sfin = self.phits = 0
        self.lazy = False
        self.evs = -1  # step of a pending lazy KV event that is not the next block's (skipping._drop_event)
        self.parked: tuple[int, int] | None = None
        self.remote = 0
        self.load_until: float | None = None
        self.drafts = 0
        self.tables: list[list[int]] | None = None


@dataclass(slots=True)
class SchedulerOutput:
    """What one schedule() decided: scheduled requests with their token counts, and the StepPlan lists."""

    scheduled: list[EngineRequest] = field(default_factory=list)
    num_new: list[int] = field(default_factory=list)
    prefill_new: list[int] = field(default_factory=list)
    prefill_ctx: list[int] = field(default_factory=list)
    decode_ctx: list[int] = field(default_factory=list)
    num_scheduled_tokens: int = 0
    preempted: list[EngineRequest] = field(default_factory=list)
    admitted: list[EngineRequest] = field(default_factory=list)
    num_running: int = 0  # len(running) right after scheduling


def validate_engine(engine: EngineConfig) -> None:
    """Raise ConfigError unless the engine config is resolved and schedulable."""
    if engine.max_num_seqs is None or engine.max_num_batched_tokens is None or engine.max_model_len is None:
        raise ConfigError("engine: call EngineConfig.resolved() first (max_num_seqs/max_num_batched_tokens/max_model_len unset)")
    # Without chunking a prompt must fit one step's budget, or it would wait forever.
    if not engine.enable_chunked_prefill and engine.max_num_batched_tokens < engine.max_model_len:
        raise ConfigError(
            f"engine: max_num_batched_tokens={engine.max_num_batched_tokens} is below "
            f"max_model_len={engine.max_model_len} with chunked prefill off"
        )


class Scheduler:
    """vLLM V1 FCFS scheduler with recompute preemption over a KVCacheManager."""

    def __init__(self, engine: EngineConfig, num_gpu_blocks: int, sliding_window: int = 0, offload: OffloadSpec | None = None,
                 spec_seed: int = 0, check_invariants: bool = False, kv_groups: KVGroups | None = None) -> None:
        validate_engine(engine)
        self.max_num_seqs: int = engine.max_num_seqs
        self.max_num_batched_tokens: int = engine.max_num_batched_tokens
        self.max_model_len: int = engine.max_model_len
        self.threshold: int = engine.long_prefill_token_threshold
        self.chunked_prefill: bool = engine.enable_chunked_prefill
        self.block_size: int = engine.block_size
        # kv_groups with both full and sliding groups: vLLM's hybrid manager (one table per group, engine/kv_hybrid.py);
        # else one table, whose layers all slide over sliding_window (> 0) or are all full attention (0).
        hybrid = kv_groups is not None and kv_groups.full_groups and kv_groups.sliding_groups
        self.kv: KVCacheManager | HybridKVCacheManager = (
            HybridKVCacheManager(num_gpu_blocks, engine.block_size, engine.enable_prefix_caching, sliding_window, kv_groups)
            if hybrid else KVCacheManager(num_gpu_blocks, engine.block_size, engine.enable_prefix_caching, sliding_window))
        self.running: list[EngineRequest] = []
        self.waiting: deque[EngineRequest] = deque()
        self.num_preemptions = 0
        self.max_loras: int = engine.max_loras if engine.enable_lora else 0  # 0 = LoRA off (engine/lora.py)
        if offload is not None and sliding_window:
            raise ConfigError("--kv-offloading-size: CPU KV offload is not modelled with sliding-window attention; set it to 0")
        self.tier: CPUTier | None = CPUTier(offload) if offload is not None else None
        sc = engine.speculative_config
        self.spec = None if sc is None else make_spec_decode(sc, spec_seed, check_invariants)
        self.lookahead = 0 if sc is None else self.spec.lookahead
        # vLLM use_eagle (eagle, eagle3, mtp): prefix hits drop their last block (kv_cache.py, kv_hybrid.py).
        self.kv.use_eagle = sc is not None and sc.method in EAGLE_METHODS
        if offload is not None and sc is not None:
            raise ConfigError("--kv-offloading-size: CPU KV offload is not modelled together with --speculative-config; "
                              "set one of them off")

    def reject_reason(self, spec: RequestSpec) -> str:
        """Why this request can never be served ('' if it can), checked when it reaches the engine."""
        if spec.input_tokens < 1 or spec.output_tokens < 1:
            return f"invalid lengths: input_tokens={spec.input_tokens}, output_tokens={spec.output_tokens}"
        # vLLM's OpenAI frontend returns 400 when prompt + max_tokens exceeds max_model_len.
        if spec.input_tokens + spec.output_tokens > self.max_model_len:
            return f"max_model_len: {spec.input_tokens}+{spec.output_tokens} > {self.max_model_len}"
        # vLLM's OpenAI frontend answers 404 for a model name it does not serve (an adapter without --enable-lora).
        if spec.lora is not None and not self.max_loras:
            return f"unknown_model: adapter {spec.lora!r} requested but LoRA is not enabled"
        # vLLM refuses to start unless one max_model_len sequence fits the cache; we reject the request instead.
        # A request holds KV for at most input + output - 1 tokens (the last output token is never fed back).
        need = self.kv.request_blocks_needed(spec.input_tokens + spec.output_tokens - 1, self.max_num_batched_tokens)
        if need > self.kv.pool.num_usable:
            return f"kv_capacity: needs {need} blocks > {self.kv.pool.num_usable} usable"
        return ""

    def add(self, req: EngineRequest) -> None:
        """Queue a new request at the back of the waiting queue (FCFS)."""
        self.waiting.append(req)

    def schedule(self, now: float) -> SchedulerOutput:
        """Decide one step at clock `now` (s): which requests compute how many tokens; allocates KV."""
        out = SchedulerOutput()
        kv = self.kv
        bs = self.block_size
        caching = kv.enable_caching
        slides = kv.sliding_window > 0
        running = self.running
        threshold = self.threshold
        budget = self.max_num_batched_tokens
        scheduled, num_new_l = out.scheduled, out.num_new
        p_new, p_ctx, d_ctx = out.prefill_new, out.prefill_ctx, out.decode_ctx

        # (a) RUNNING requests, in list order, while budget lasts.
        i = 0
        while i < len(running) and budget > 0:
            req = running[i]
            ctx = req.num_computed
            # vLLM: num_new = num_tokens (+ draft tokens) - num_computed (remaining prompt/recompute, or 1 decode token).
            n = req.num_tokens + req.drafts - ctx
            if 0 < threshold < n:
                n = threshold
            if n > budget:
                n = budget
            total = ctx + n
            if total + self.lookahead <= len(req.blocks) * bs:
                # Fast path of vLLM allocate_slots: no new block needed; only newly full blocks get cached
                # (after the blocks that slid out of the window are freed, which vLLM does first on every call).
                if slides:
                    kv.remove_skipped_blocks(req)
                if caching:
                    n_full = (total if total < req.num_tokens else req.num_tokens) // bs
                    if n_full > req.num_cached_blocks:
                        kv.cache_upto(req, n_full)
            else:
                ok = True
                while not kv.allocate_slots(req, n, lookahead=self.lookahead):
                    # vLLM FCFS preemption: pop the TAIL of running; it is never a request already scheduled
                    # this step (it sits after index i) nor one admitted this step (phase (b) runs later).
                    victim = running.pop()
                    self._preempt(victim, out)
                    if victim is req:
                        ok = False
                        break
                if not ok:
                    break
            scheduled.append(req)
            num_new_l.append(n)
            budget -= n
            i += 1
            # A decode feeds the last sampled token: one token, context = KV already held (prompt + generated - 1).
            if n == 1 and req.num_output and ctx == req.num_tokens - 1:
                d_ctx.append(ctx)
            elif req.drafts and req.num_output and ctx == req.num_tokens - 1:
                # Verify step: 1 + drafts tokens as decode tokens at growing context (vLLM runs it as a uniform decode batch).
                d_ctx.extend(range(ctx, ctx + n))
            else:
                p_new.append(n)
                p_ctx.append(ctx)
            # vLLM _update_after_schedule advances num_computed_tokens right after scheduling; doing it here is
            # equivalent because later preemption victims are never requests scheduled earlier in the step.
            req.num_computed = total

        # (b) WAITING requests, FCFS, only if nothing was preempted this step (vLLM: `if not preempted_reqs`).
        if not out.preempted:
            waiting = self.waiting
            max_loras = self.max_loras
            if max_loras:
                # vLLM scheduled_loras: the adapters of the running requests scheduled above.
                loras = {r.spec.lora for r in scheduled if r.spec.lora is not None}
                skipped: list[EngineRequest] = []
            tier = self.tier
            # vLLM skips WAITING_FOR_REMOTE_KVS requests whose load has not finished and puts them back in front.
            held: list[EngineRequest] = []
            if tier is not None:
                rest: list[EngineRequest] = []
                for r in waiting:  # one pass: loading requests aside, the rest in their order
                    (held if r.load_until is not None and r.load_until > now else rest).append(r)
                if held:
                    waiting.clear()
                    waiting.extend(rest)
            while waiting and budget > 0:
                if len(running) == self.max_num_seqs:
                    break
                req = waiting[0]
                if max_loras and req.spec.lora is not None and req.spec.lora not in loras:
                    if len(loras) == max_loras:
                        # vLLM: a new adapter would exceed max_loras: skip the request, keep it queued in its place.
                        skipped.append(waiting.popleft())
                        continue
                # vLLM looks the prefix cache up only for num_computed_tokens == 0 (always true here:
                # no KV connector), and resumed requests look up prompt + already generated tokens.
                ahit = -1
                if req.load_until is not None:
                    # Its CPU load finished: it holds blocks for all its hits (num_computed); schedule the rest.
                    hit_blocks, num_hit, ahit = [], req.num_computed, 0
                elif req.remote:
                    # KV received from a prefill instance into blocks allocated before the transfer (vLLM NIXL
                    # connector); vLLM recomputes the last prompt token for its logits, so the hit is remote - 1 tokens.
                    hit_blocks, num_hit = [], req.remote - 1
                else:
                    hit_blocks, num_hit = kv.get_computed_blocks(req)
                    if tier is not None and self._start_load(req, hit_blocks, num_hit, now):
                        waiting.popleft()
                        held.append(req)
                        continue
                n = req.num_tokens - num_hit
                if 0 < threshold < n:
                    n = threshold
                # vLLM PR #28911 (Nov 2025; in 0.15.1, not 0.11.0): with chunked prefill off, a prompt that does not fit the
                # remaining budget stops admission (0.11 skipped to the next waiting request instead).
                if not self.chunked_prefill and n > budget:
                    break
                if n > budget:
                    n = budget
                # vLLM breaks (does not skip) when the head of the queue cannot get blocks; no preemption here.
                if not kv.allocate_slots(req, n, hit_blocks, num_hit if ahit < 0 else ahit, lookahead=self.lookahead):
                    break
                req.load_until = None
                waiting.popleft()
                running.append(req)
                req.remote = 0  # admitted: a later preemption recomputes everything locally
                rec = req.rec
                if rec.first_scheduled_s is None:
                    rec.first_scheduled_s = now
                    # vLLM num_cached_tokens is set once, at the first admission (`if num_cached_tokens < 0`).
                    rec.cached_tokens = num_hit
                out.admitted.append(req)
                scheduled.append(req)
                num_new_l.append(n)
                budget -= n
                if n == 1 and req.num_output and num_hit == req.num_tokens - 1:
                    d_ctx.append(num_hit)
                else:
                    p_new.append(n)
                    p_ctx.append(num_hit)
                # vLLM sets num_computed_tokens = cached tokens at admission, then adds the scheduled chunk.
                req.num_computed = num_hit + n
                if max_loras and req.spec.lora is not None:
                    loras.add(req.spec.lora)
            if max_loras and skipped:
                waiting.extendleft(reversed(skipped))  # vLLM prepend_requests: skipped ones ahead, in FCFS order

            if held:
                waiting.extendleft(reversed(held))
        out.num_scheduled_tokens = self.max_num_batched_tokens - budget
        out.num_running = len(running)
        return out

    def _start_load(self, req: EngineRequest, hit_blocks: list[int], num_hit: int, now: float) -> bool:
        """Look up the blocks after req's GPU hit in the CPU tier; on a hit allocate them, start the load, True."""
        kv, bs, tier = self.kv, self.block_size, self.tier
        g = len(hit_blocks)
        max_blocks = (req.num_tokens - 1) // bs  # as the GPU lookup: the last token is always recomputed
        keys = [kv.key(req, i) for i in range(g, max_blocks)]
        tier.queried_tokens += req.num_tokens
        k = tier.lookup(keys, now)
        if not k:
            return False
        # vLLM allocate_slots(..., delay_cache_blocks=True): blocks being loaded are not registered until loaded.
        if not kv.allocate_slots(req, k * bs, hit_blocks, num_hit, delay_cache=True):
            return False
        tier.hit_tokens += k * bs
        req.num_computed = num_hit + k * bs
        req.load_until = tier.load(keys[:k], now)
        return True

    def next_load_s(self) -> float | None:
        """When the earliest CPU load of a waiting request finishes (s), or None."""
        t = [r.load_until for r in self.waiting if r.load_until is not None]
        return min(t) if t else None

    def _preempt(self, req: EngineRequest, out: SchedulerOutput) -> None:
        # vLLM _preempt_request (recompute mode): free blocks, num_computed_tokens = 0, prepend to waiting;
        # generated tokens are kept, so the resumed request recomputes prompt + generated tokens.
        self.kv.free_preempted(req)
        req.num_computed = 0
        req.drafts = 0  # vLLM drops a preempted request's draft tokens
        req.num_preemptions += 1
        req.rec.preemptions += 1
        self.num_preemptions += 1
        self.waiting.appendleft(req)
        out.preempted.append(req)

    def update_from_output(self, out: SchedulerOutput, now: float, record_token_times: bool) -> list[EngineRequest]:
        """Apply a finished step at clock `now` (s): sample tokens, stamp times, free finished requests."""
        spec = self.spec
        finished = (spec.sample if spec is not None else sample_tokens)(out.scheduled, now, record_token_times)
        tier = self.tier
        if tier is not None:
            tier.after_step(out.scheduled, now, self.kv)
            for req in finished:
                tier.done.pop(req.uid, None)
        if finished:
            kv = self.kv
            for req in finished:
                kv.free(req)
            # vLLM remove_all(running, stopped): order of the survivors is kept.
            self.running = [r for r in self.running if r.num_output < r.max_tokens]
        return finished


def make_spec_decode(sc, seed: int, check: bool):
    """The engine's SpecDecode for a parsed SpeculativeConfig."""
    from servesim.config.speculative import acceptance_of
    from servesim.engine.spec_decode import SpecDecode

    k = sc.num_speculative_tokens
    return SpecDecode(k, acceptance_of(sc), k if sc.method in EAGLE_METHODS else 0, seed, check)


def sample_tokens(scheduled: list[EngineRequest], now: float, record_token_times: bool) -> list[EngineRequest]:
    """Give each scheduled request whose computation caught up its next token at `now` (s); return those that finished."""
    finished: list[EngineRequest] = []
    for req in scheduled:
        # vLLM samples a token only for requests whose computed tokens caught up with num_tokens
        # (a partial prefill chunk's sample is discarded).
        if req.num_computed != req.num_tokens:
            continue
        req.num_output += 1
        req.num_tokens += 1
        rec = req.rec
        if rec.first_token_s is None:
            rec.first_token_s = now
        if record_token_times:
            rec.token_times_s.append(now)  # type: ignore[union-attr]
        # vLLM check_stop: FINISHED_LENGTH_CAPPED once num_output_tokens >= max_tokens (ignore_eos).
        if req.num_output >= req.max_tokens:
            rec.finish_s = now
            finished.append(req)
    return finished
