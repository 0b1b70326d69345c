"""The cluster event loop: one instance equals the single-engine loop bit for bit; N instances split load as
they should; routers, PD transfers and cluster invariants, with hand-computed values."""

from __future__ import annotations

import dataclasses
import math

import pytest

from servesim.cluster import KVLink, RouterConfig, make_router, parse_weights
from servesim.cluster.loop import check_cluster
from servesim.engine import InvariantError, RequestSpec
from servesim.errors import ConfigError
from servesim.simulation import simulate
from tests.engine._helpers import LinearLatency

GAUSS = {"input_tokens": {"kind": "gaussian", "mean": 512, "stdev": 256, "min": 2, "max": 2048},
         "output_tokens": {"kind": "gaussian", "mean": 128, "stdev": 64, "min": 2, "max": 512}}


def _wl(rate: float, n: int, process: str = "constant", **kw) -> dict:
    return {"arrival": {"process": process, "rate": rate}, "num_requests": n, **kw}


@pytest.mark.parametrize("workload,engine", [
    (_wl(20, 400, "poisson", seed=3, **GAUSS), None),
    (_wl(30, 300, "poisson", seed=5, prefix_tokens=256, **GAUSS), {"num_gpu_blocks_override": 600}),
    ({"arrival": {"process": "concurrency", "concurrency": 16}, "num_requests": 200, "seed": 1, **GAUSS}, None),
    (_wl(25, 300, "poisson", seed=2, **GAUSS), {"async_scheduling": False, "num_gpu_blocks_override": 400}),
])
def test_one_instance_cluster_equals_the_single_engine_loop(workload, engine):
    a = simulate(workload=workload, engine=engine)
    b = simulate(workload=workload, engine=engine, router="round-robin")  # through the cluster event loop
    assert b.cluster["instances"][0]["routed"] == len(a.requests)
    assert {k: b.summary[k] for k in a.summary} == a.summary
    assert b.requests == a.requests


def test_four_instances_round_robin_at_4x_rate_equal_one_instance_at_1x():
    lengths = {"input_tokens": 512, "output_tokens": 128}
    one = simulate(workload=_wl(20, 800, **lengths))
    four = simulate(workload=_wl(80, 3200, **lengths), instances=4, router="round-robin")
    assert [x["routed"] for x in four.cluster["instances"]] == [800] * 4
    assert [x["completed"] for x in four.cluster["instances"]] == [800] * 4
    for key in ("ttft_ms", "itl_ms", "tpot_ms", "e2e_ms"):
        for stat in ("mean", "p50", "p99"):
            assert four.summary[key][stat] == pytest.approx(one.summary[key][stat], rel=1e-9), (key, stat)
    assert four.summary["output_tokens_per_s"] == pytest.approx(4 * one.summary["output_tokens_per_s"], rel=2e-3)
    assert four.cluster["router"]["request_imbalance"] == 1.0


def test_event_skipping_changes_no_cluster_answer():
    wl = _wl(60, 600, "poisson", seed=7, prefix_tokens=128, **GAUSS)
    kw = dict(workload=wl, instances=3, router="least-requests", engine={"num_gpu_blocks_override": 500})
    a, b = simulate(**kw), simulate(**kw, event_skipping=False)
    assert a.requests == b.requests and a.cluster == b.cluster


def test_prefix_aware_routing_beats_round_robin_on_shared_prefix_groups():
    wl = {"shared_prefix": {"num_groups": 8, "users_per_group": 16, "system_prompt_len": 2048, "question_len": 128,
                            "output_len": 64}, "arrival": {"process": "poisson", "rate": 24}, "num_requests": 1200, "seed": 4}
    eng = {"num_gpu_blocks_override": 700}  # room for about 5 of the 8 prefixes per instance next to the running requests
    rr = simulate(workload=wl, instances=4, router="round-robin", engine=eng)
    pa = simulate(workload=wl, instances=4, router="prefix-aware", engine=eng)
    assert pa.summary["prefix_cache_hit_rate"] > rr.summary["prefix_cache_hit_rate"]
    assert pa.summary["ttft_ms"]["mean"] < rr.summary["ttft_ms"]["mean"]


def test_cluster_invariants_hold_under_pressure_and_catch_a_lost_block():
    wl = _wl(120, 800, "poisson", seed=9, prefix_tokens=64, **GAUSS)
    res = simulate(workload=wl, instances=4, router="least-kv", engine={"num_gpu_blocks_override": 300}, check_invariants=True)
    assert res.summary["completed"] + res.summary["rejected"] == 800
    assert res.summary["preemptions"] > 0  # the pressure is real
    pd = simulate(workload=wl, prefill_instances=2, decode_instances=2, kv_link="rdma",
                  engine={"num_gpu_blocks_override": 400}, check_invariants=True)
    kt = pd.cluster["kv_transfer"]
    assert kt["blocks_sent"] == kt["blocks_received"] > 0
    cs = dataclasses.replace(pd.cluster_stats, blocks_received=kt["blocks_received"] - 1)
    with pytest.raises(InvariantError, match="kv_blocks_sent_received"):
        check_cluster(cs, [], True)


BASE, PER_TOKEN = 0.004, 2e-5
# Llama-2-7B KV per token: 2 (K, V) x 32 layers x 32 heads x 128 dims x 2 bytes (bf16).
KV_BYTES_PER_TOKEN = 2 * 32 * 32 * 128 * 2


def _pd_one_request(link: KVLink, prompt: int = 1000, output: int = 8):
    spec = [RequestSpec(0, 0.0, prompt, output)]
    return simulate(workload=spec, latency_model=LinearLatency(BASE, PER_TOKEN), prefill_instances=1,
                    decode_instances=1, kv_link=link, check_invariants=True)


def test_pd_infinite_link_ttft_is_prefill_ttft_plus_one_decode_step():
    res = _pd_one_request(KVLink(math.inf, 0.0))
    prefill_ttft = BASE + PER_TOKEN * 1000  # one step computing the whole prompt on an idle prefill instance
    first_decode = BASE + PER_TOKEN * 1  # the decode instance recomputes the last prompt token (vLLM NIXL)
    assert res.cluster["kv_transfer"]["prefill_ttft_ms"]["mean"] == pytest.approx(prefill_ttft * 1e3, rel=1e-12)
    assert res.requests[0]["ttft_ms"] == pytest.approx((prefill_ttft + first_decode) * 1e3, rel=1e-12)
    assert res.cluster["kv_transfer"]["transfer_ms"]["mean"] == 0.0


def test_pd_finite_link_adds_exactly_the_transfer_time():
    inf = _pd_one_request(KVLink(math.inf, 0.0))
    fin = _pd_one_request(KVLink(50.0, 2e-5))
    blocks = -(-1000 // 16)  # 63 whole blocks cross the link
    transfer = 2e-5 + blocks * 16 * KV_BYTES_PER_TOKEN / 50e9  # = 0.010589... s
    assert fin.cluster["kv_transfer"]["transfer_ms"]["mean"] == pytest.approx(transfer * 1e3, rel=1e-12)
    assert fin.requests[0]["ttft_ms"] - inf.requests[0]["ttft_ms"] == pytest.approx(transfer * 1e3, rel=1e-9)
    assert fin.requests[0]["e2e_ms"] - inf.requests[0]["e2e_ms"] == pytest.approx(transfer * 1e3, rel=1e-9)
    assert fin.cluster["kv_transfer"]["blocks_sent"] == blocks


def test_vllm_dp_scores_waiting_times_four_plus_running_and_counts_its_own_choices():
    r = make_router(RouterConfig("vllm-dp", staleness_s=0.1), 3)
    r.scraped([(1, 0, 0.0), (0, 3, 0.0), (0, 5, 0.0)])  # scores 4, 3, 5
    s = RequestSpec(0, 0.0, 10, 10)
    picks = [r.route(s, None) for _ in range(4)]
    # 1 (3) -> its waiting +1: scores 4, 7, 5 -> 0; then 8, 7, 5 -> 2; then 8, 7, 9 -> 1
    assert picks == [1, 0, 2, 1]
    r.scraped([(0, 0, 0.0)] * 3)  # a publication replaces the local counts; ties: first strict minimum
    assert r.route(s, None) == 0


def test_weighted_router_normalises_as_the_inference_extension_scorers():
    r = make_router(RouterConfig("weighted", weights=parse_weights("queue=1,kv=0,prefix=0")), 3)
    assert r.route(RequestSpec(0, 0.0, 10, 10), [(8, 0, 0.0), (0, 0, 0.9), (4, 0, 0.0)]) == 1
    r = make_router(RouterConfig("weighted", weights=parse_weights("kv=1")), 3)
    assert r.route(RequestSpec(0, 0.0, 10, 10), [(0, 0, 0.5), (9, 9, 0.1), (0, 0, 0.3)]) == 1
    # prefix 0.75 of the prompt (300/400) x 1 beats the queue score 1 x 0.5 from an emptier instance
    r = make_router(RouterConfig("weighted", weights=parse_weights("queue=0.5,prefix=1")), 2)
    r.index.sent[0]["g"] = 300
    assert r.route(RequestSpec(0, 0.0, 400, 10, "g", 300), [(2, 0, 0.0), (0, 0, 0.0)]) == 0


@pytest.mark.parametrize("text", ["queue", "foo=1", "kv=x", "kv=-1", "queue=0,kv=0,prefix=0"])
def test_bad_router_weights_name_the_flag(text):
    with pytest.raises(ConfigError, match="--router-weights"):
        parse_weights(text)


def test_bad_cluster_arguments_are_refused():
    with pytest.raises(ConfigError, match="--router"):
        RouterConfig("fastest")
    with pytest.raises(ConfigError, match="--instances"):
        simulate(workload=[RequestSpec(0, 0.0, 10, 10)], instances=0)
    with pytest.raises(ConfigError, match="PD needs both"):
        simulate(workload=[RequestSpec(0, 0.0, 10, 10)], prefill_instances=1)
    with pytest.raises(ConfigError, match="--router-staleness"):
        RouterConfig("least-kv", staleness_s=-1.0)


def test_pd_under_kv_pressure_is_the_same_with_and_without_event_skipping():
    wl = _wl(120, 600, "poisson", seed=9, prefix_tokens=64, **GAUSS)
    kw = dict(workload=wl, prefill_instances=2, decode_instances=2, kv_link="rdma", engine={"num_gpu_blocks_override": 400})
    a, b = simulate(**kw), simulate(**kw, event_skipping=False)
    assert a.summary["preemptions"] > 0
    assert a.requests == b.requests and a.cluster == b.cluster


def test_lower_layers_never_import_the_cluster():
    import ast
    from pathlib import Path

    root = Path(__file__).parents[2] / "src" / "servesim"
    for layer in ("config", "latency", "engine", "workload", "metrics"):
        for path in (root / layer).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                    [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
                assert not any(n.startswith(("servesim.cluster", "servesim.cluster_sim")) for n in names), path
    for path in (root / "cluster").rglob("*.py"):  # and the cluster never imports what sits above it
        text = path.read_text()
        assert "servesim.simulation" not in text and "servesim.cli" not in text and "servesim.sweep" not in text, path


@pytest.mark.parametrize("staleness,routed", [(0.0, [1, 2]), (10.0, [2, 1])])
def test_router_staleness_routes_on_the_last_scrape(staleness, routed):
    # r0 (1,000-token prompt) goes to instance 0; at 0.5 s and 0.6 s two small requests arrive. Live, least-kv
    # sees instance 0 holding r0's blocks and sends both to instance 1; with a 10 s scrape interval it still
    # sees the empty snapshot from t = 0, so ties rotate: r1 -> instance 1 (2nd decision), r2 -> instance 0.
    specs = [RequestSpec(0, 0.0, 1000, 2000), RequestSpec(1, 0.5, 10, 2000), RequestSpec(2, 0.6, 10, 2000)]
    res = simulate(workload=specs, latency_model=LinearLatency(BASE, PER_TOKEN), instances=2,
                   router=RouterConfig("least-kv", staleness_s=staleness), check_invariants=True)
    assert res.cluster["router"]["routed"] == routed
