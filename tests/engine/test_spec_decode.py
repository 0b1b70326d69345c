"""Speculative decoding: acceptance arithmetic, hand-traced verify steps (k=2), invariants, draft cost, ITL."""

from __future__ import annotations

import json

import pytest

from servesim.config import load_hardware, load_model
from servesim.config.engine import EngineConfig
from servesim.config.speculative import DEFAULT_ACCEPTANCE, acceptance_of, METHODS, expected_tokens_per_step, parse_speculative_config
from servesim.engine.request import RequestRecord, RequestSpec
from servesim.engine.scheduler import EngineRequest, Scheduler
from servesim.engine.spec_decode import accepted_count
from servesim.errors import ConfigError
from servesim.latency.spec_decode import FUSION_INPUTS, draft_time_fn, head_pass, model_pass, pass_seconds


def _sc(method: str = "ngram", k: int = 2, acc: float | str = 1.0, **kw):
    return parse_speculative_config({"method": method, "num_speculative_tokens": k, **kw}, str(acc))


def _sched(sc, blocks: int = 64) -> Scheduler:
    eng = EngineConfig(max_num_seqs=4, max_num_batched_tokens=64, block_size=4, max_model_len=64, speculative_config=sc)
    return Scheduler(eng, blocks)


def _req(uid: int, inp: int, out: int) -> EngineRequest:
    spec = RequestSpec(id=uid, arrival_s=0.0, input_tokens=inp, output_tokens=out)
    rec = RequestRecord(id=uid, arrival_s=0.0, input_tokens=inp, output_tokens=out, token_times_s=[])
    return EngineRequest(spec, rec, 4, uid)


# ---- acceptance arithmetic -------------------------------------------------------------------------------

@pytest.mark.parametrize("a,k,expected", [(0.8, 3, 1 + 0.8 + 0.64 + 0.512), (0.5, 2, 1.75), (0.0, 4, 1.0), (1.0, 3, 4.0)])
def test_expected_tokens_per_step_is_the_geometric_sum(a, k, expected):
    assert expected_tokens_per_step((a,) * k) == pytest.approx(expected)


def test_expected_tokens_per_step_per_position():
    # 1 + 0.9 + 0.9*0.5 = 2.35
    assert expected_tokens_per_step((0.9, 0.5)) == pytest.approx(2.35)


def test_accepted_count_extremes_and_mean():
    assert all(accepted_count((0.0,) * 3, 3, 7, u, 0) == 0 for u in range(50))
    assert all(accepted_count((1.0,) * 3, 3, 7, u, 0) == 3 for u in range(50))
    n = 20000
    mean = sum(accepted_count((0.8,) * 3, 3, 1, u, p) for u in range(200) for p in range(n // 200)) / n
    assert mean == pytest.approx(0.8 + 0.64 + 0.512, abs=0.03)  # E[accepted] = expected tokens - 1
    assert accepted_count((0.8,) * 3, 3, 1, 5, 9) == accepted_count((0.8,) * 3, 3, 1, 5, 9)  # deterministic


# ---- hand-traced scheduler steps, k = 2 -------------------------------------------------------------------

def _step(s: Scheduler, now: float):
    out = s.schedule(now)
    fin = s.update_from_output(out, now, True)
    return out, fin


def test_k2_all_accepted_trace():
    s = _sched(_sc(k=2, acc=1.0))
    r = _req(0, 5, 6)
    s.add(r)
    out, _ = _step(s, 1.0)  # prefill 5; samples token 1; 2 drafts attached
    assert out.num_new == [5] and r.num_output == 1 and r.drafts == 2
    out, _ = _step(s, 2.0)  # verify 1 + 2 at context 5: both accepted + bonus = 3 tokens
    assert out.num_new == [3] and out.decode_ctx == [5, 6, 7]
    assert r.num_output == 4 and r.num_tokens == 9 and r.num_computed == 8
    assert r.drafts == 1  # 6 - 4 - 1: only one draft can still be followed by a bonus token
    out, fin = _step(s, 3.0)
    assert out.num_new == [2] and out.decode_ctx == [8, 9] and fin == [r]
    assert r.rec.token_times_s == [1.0, 2.0, 2.0, 2.0, 3.0, 3.0]
    assert s.spec.proposed == 3 and s.spec.accepted == 3


def test_k2_all_rejected_rolls_back():
    s = _sched(_sc(k=2, acc=0.0))
    r = _req(0, 5, 4)
    s.add(r)
    _step(s, 1.0)
    out, _ = _step(s, 2.0)
    assert out.num_new == [3]  # 1 + 2 drafts scheduled against the budget
    # Both drafts rejected: num_computed 5 + 3 - 2 = 6, one token emitted.
    assert r.num_output == 2 and r.num_computed == 6 and r.num_tokens == 7
    assert len(r.blocks) == 2  # slots for 8 tokens stay allocated (vLLM keeps the blocks)
    assert r.drafts == 1  # 4 - 2 - 1
    out, _ = _step(s, 3.0)
    assert out.num_new == [2] and out.decode_ctx == [6, 7] and r.num_computed == 7 and r.num_output == 3
    out, fin = _step(s, 4.0)
    assert out.num_new == [1] and fin == [r]  # one output left: no draft proposed
    assert r.rec.token_times_s == [1.0, 2.0, 3.0, 4.0]
    assert s.spec.proposed == 3 and s.spec.accepted == 0


def test_eagle_allocates_lookahead_slots():
    ngram, eagle = _sched(_sc("ngram", k=2)), _sched(_sc("eagle", k=2))
    for s in (ngram, eagle):
        s.add(_req(0, 8, 10))
        _step(s, 1.0)
    # Prefill of 8 tokens: 2 blocks; EAGLE reserves 2 lookahead slots more -> 3 blocks (vLLM num_lookahead_tokens).
    assert len(ngram.running[0].blocks) == 2 and len(eagle.running[0].blocks) == 3


def test_budget_cuts_drafts():
    sc = _sc(k=3, acc=1.0)
    eng = EngineConfig(max_num_seqs=4, max_num_batched_tokens=6, block_size=4, max_model_len=64, speculative_config=sc)
    s = Scheduler(eng, 64)
    a, b = _req(0, 4, 10), _req(1, 2, 10)
    s.add(a)
    s.add(b)
    _step(s, 1.0)  # 4 + 2 prompt tokens
    out, _ = _step(s, 2.0)  # a takes 1 + 3 = 4, b gets the 2 left: 1 + 1 draft
    assert out.num_new == [4, 2]
    assert a.num_output == 5 and b.num_output == 3  # b verified only the draft that fit


# ---- invariants and determinism through the real engine ---------------------------------------------------

def _run(engine, seed=3, n=30, check=True, rate=20.0, out_tokens=40):
    from servesim.simulation import simulate

    wl = {"input_tokens": 200, "output_tokens": out_tokens, "num_requests": n, "arrival": {"process": "poisson", "rate": rate}}
    return simulate("llama-3.2-3b-instruct", "H100", 1, workload=wl, engine=engine, latency_model="roofline-v2",
                    seed=seed, check_invariants=check)


@pytest.mark.parametrize("method", ["ngram", "eagle", "draft_model"])
def test_invariants_hold_and_tokens_conserved(method):
    extra = {"model": "qwen2.5-1.5b-instruct"} if method == "draft_model" else {}
    sc = _sc(method, k=3, acc=0.7, **extra)
    res = _run({"speculative_config": sc, "num_gpu_blocks_override": 400, "max_model_len": 4096})
    assert res.summary["completed"] == 30
    assert all(len(r.token_times_s) == r.output_tokens for r in res.records)  # never more than max_tokens
    sd = res.summary["speculative_decoding"]
    assert 0 < sd["accepted_tokens"] <= sd["proposed_tokens"]
    # Chain acceptance: E[accepted] / k = (a + a^2 + a^3) / 3 = 0.511 at a = 0.7 (fewer drafts near max_tokens shift it).
    assert sd["acceptance_rate"] == pytest.approx((0.7 + 0.49 + 0.343) / 3, abs=0.08)


def test_same_seed_same_answer_other_seed_other_draws():
    sc = _sc(k=3, acc=0.6)
    a = _run({"speculative_config": sc}, seed=5, check=False).summary
    b = _run({"speculative_config": sc}, seed=5, check=False).summary
    assert json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


@pytest.mark.parametrize("seed,k,method", [(1, 1, "ngram"), (2, 3, "ngram"), (3, 5, "eagle"), (4, 2, "mtp"), (5, 4, "suffix")])
def test_acceptance_zero_never_lowers_itl(seed, k, method):
    off = _run({}, seed=seed, check=False).summary
    on = _run({"speculative_config": _sc(method, k=k, acc=0.0)}, seed=seed, check=False).summary
    assert on["itl_ms"]["mean"] >= off["itl_ms"]["mean"]
    assert on["tpot_ms"]["mean"] >= off["tpot_ms"]["mean"]


def test_acceptance_raises_throughput_at_low_load():
    off = _run({}, check=False, rate=1.0).summary
    on = _run({"speculative_config": _sc("ngram", k=3, acc=0.8)}, check=False, rate=1.0).summary
    assert on["itl_ms"]["mean"] < off["itl_ms"]["mean"] / 2  # 2.95 tokens per step at a ~4-token verify cost


def test_cluster_refuses():
    from servesim.simulation import simulate

    with pytest.raises(ConfigError, match="--speculative-config: not yet supported for clusters"):
        simulate("llama-3.2-3b-instruct", "H100", 1, engine={"speculative_config": _sc()}, instances=2,
                 workload={"input_tokens": 10, "output_tokens": 2, "num_requests": 2})


# ---- draft cost arithmetic ---------------------------------------------------------------------------------

def test_eagle_head_size_for_llama_3_1_8b():
    m = load_model("llama-3.1-8b-instruct")
    h, kv, inter, vocab = 4096, 1024, 14336, 128256
    layer = 2 * h + h * h + 2 * h * kv + h * h + 3 * h * inter  # norms, q, k+v, o, gate/up/down
    want = layer + 2 * h * h + vocab * h  # + fusion fc (2h -> h) + LM head
    p = head_pass(m, "eagle", 1)
    assert p.params_per_token == want == 777_003_008
    assert p.weight_bytes == 2 * want
    assert head_pass(m, "eagle3", 2).params_per_token == (want + h * h) / 2  # 3h -> h fc, split over TP 2
    assert FUSION_INPUTS["mtp"] == 2


def test_draft_pass_roofline_seconds():
    m, hw = load_model("llama-3.1-8b-instruct"), load_hardware("H100")
    p = head_pass(m, "eagle", 1)
    # One token: memory-bound, 1.554e9 B / (3.35e12 B/s x 0.82) = 0.5657 ms.
    assert pass_seconds(p, 1, hw, 2.0) == pytest.approx(2 * 777_003_008 / (3.35e12 * 0.82))
    # 4096 tokens: compute-bound, 2 x params x tokens / peak.
    assert pass_seconds(p, 4096, hw, 2.0) == pytest.approx(2 * 777_003_008 * 4096 / hw.peak_flops(2.0))
    fn = draft_time_fn(_sc("eagle", k=3), m, hw, 1)
    assert fn(1) == pytest.approx(3 * pass_seconds(p, 1, hw, 2.0))  # k sequential passes
    assert draft_time_fn(_sc("ngram", k=3), m, hw, 1) is None  # CPU proposer: no GPU time
    d = load_model("qwen2.5-1.5b-instruct")
    fd = draft_time_fn(_sc("draft_model", k=2, model="qwen2.5-1.5b-instruct"), m, hw, 1)
    assert fd(1) == pytest.approx(2 * d.param_count * d.weight_bytes_per_param / (3.35e12 * 0.82))
    assert model_pass(d, 2).weight_bytes == d.param_count * d.weight_bytes_per_param / 2


# ---- config --------------------------------------------------------------------------------------------------

def test_every_method_has_a_sourced_default():
    assert {m for m, _, _ in DEFAULT_ACCEPTANCE} == set(METHODS)
    assert all(0 < p < 1 and src for _, p, src in DEFAULT_ACCEPTANCE)
    cfg = parse_speculative_config('{"method": "mtp", "num_speculative_tokens": 1}')
    assert cfg.acceptance is None and acceptance_of(cfg) == (0.85,)


def test_workload_acceptance_fills_in_but_the_flag_wins():
    wl = {"input_tokens": 200, "output_tokens": 40, "num_requests": 20, "arrival": {"process": "poisson", "rate": 1.0}}
    from servesim.simulation import simulate

    def itl(sc, acc):
        r = simulate("llama-3.2-3b-instruct", "H100", 1, workload={**wl, "speculative_acceptance": acc},
                     engine={"speculative_config": sc}, latency_model="roofline-v2", seed=2)
        return r.summary["itl_ms"]["mean"], list(r.config["engine"]["speculative_config"]["acceptance"])

    plain = parse_speculative_config('{"method": "ngram", "num_speculative_tokens": 3}')
    assert itl(plain, 0.9)[1] == [0.9, 0.9, 0.9]
    assert itl(plain, [0.9, 0.5, 0.1])[1] == [0.9, 0.5, 0.1]
    assert itl(_sc("ngram", k=3, acc=0.2), 0.9)[1] == [0.2, 0.2, 0.2]  # explicit acceptance wins
    assert itl(plain, 0.9)[0] < itl(plain, 0.1)[0]
    with pytest.raises(ConfigError, match="speculative_acceptance"):
        simulate("llama-3.2-3b-instruct", "H100", 1, workload={**wl, "speculative_acceptance": 0.5}, latency_model="roofline-v2")
    with pytest.raises(ConfigError, match="workload: speculative_acceptance"):
        itl(plain, [0.5, 0.5])


@pytest.mark.parametrize("value,acc,needle", [
    ('{"method": "medusa", "num_speculative_tokens": 2}', None, "method='medusa'"),
    ('{"method": "eagle"}', None, "num_speculative_tokens: missing"),
    ('{"method": "draft_model", "num_speculative_tokens": 2}', None, "model: missing"),
    ('{"method": "draft_model", "num_speculative_tokens": 2, "model": "nope-1b"}', None, "model='nope-1b'"),
    ('{"method": "ngram", "num_speculative_tokens": 2, "colour": 1}', None, "colour"),
    ('{"method": "ngram", "num_speculative_tokens": 0}', None, "num_speculative_tokens=0"),
    ('{"method": ', None, "not valid JSON"),
    ('{"method": "ngram", "num_speculative_tokens": 2}', "1.5", "[0, 1]"),
    ('{"method": "ngram", "num_speculative_tokens": 2}', "0.5,0.5,0.5", "3 values"),
    ('{"method": "ngram", "num_speculative_tokens": 2}', "x", "--speculative-acceptance"),
    (None, "0.5", "needs --speculative-config"),
])
def test_bad_speculative_config(value, acc, needle):
    with pytest.raises(ConfigError) as exc:
        parse_speculative_config(value, acc)
    assert needle in str(exc.value) and "\n" not in str(exc.value)
