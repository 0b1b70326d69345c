"""`servesim run` cluster flags and `--cluster` specs: JSON keys, determinism, one-line errors (exit 2)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from servesim.cluster.spec import parse_cluster
from servesim.errors import ConfigError


def cli(*args):
    return subprocess.run([sys.executable, "-m", "servesim", "run", *args], capture_output=True, text=True)


def test_cluster_json_has_summary_instances_router_and_is_deterministic(tmp_path):
    args = ["--instances", "3", "--router", "weighted", "--router-weights", "queue=1,kv=1,prefix=2",
            "--router-staleness", "0.05", "--num-requests", "90", "--rate", "12", "--seed", "3", "--check-invariants"]
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    ra, rb = cli(*args, "-o", str(a)), cli(*args, "-o", str(b))
    assert ra.returncode == 0 and rb.returncode == 0, ra.stderr
    assert a.read_bytes() == b.read_bytes()
    doc = json.loads(a.read_text())
    assert doc["summary"]["completed"] == 90
    assert len(doc["instances"]) == 3 and sum(x["completed"] for x in doc["instances"]) == 90
    assert {"completed", "kv_cache_peak_usage", "prefix_cache_hit_rate", "busy_fraction"} <= set(doc["instances"][0])
    assert doc["router"]["name"] == "weighted" and doc["router"]["weights"] == {"queue": 1.0, "kv": 1.0, "prefix": 2.0}
    assert doc["router"]["staleness_s"] == 0.05 and sum(doc["router"]["routed"]) == 90
    assert doc["router"]["load_imbalance"] >= 1.0
    assert "instance" in ra.stdout  # the terminal table (stdout of the -o run still prints it)


def test_data_parallel_uses_vllm_dp_router_and_pd_reports_transfers(tmp_path):
    out = tmp_path / "dp.json"
    r = cli("--data-parallel-size", "2", "--num-requests", "40", "--rate", "8", "-o", str(out))
    assert r.returncode == 0, r.stderr
    doc = json.loads(out.read_text())
    assert doc["router"]["name"] == "vllm-dp" and doc["router"]["staleness_s"] == 0.1
    out = tmp_path / "pd.json"
    r = cli("--prefill-instances", "1", "--decode-instances", "2", "--kv-link-bandwidth", "25", "--kv-link-latency", "1e-4",
            "--num-requests", "40", "--rate", "8", "-o", str(out), "--check-invariants")
    assert r.returncode == 0, r.stderr
    doc = json.loads(out.read_text())
    kt = doc["kv_transfer"]
    assert kt["link"] == {"kind": "custom", "bandwidth_gb_s": 25.0, "latency_s": 1e-4}
    assert kt["transfer_ms"]["count"] == 40 and kt["transfer_ms"]["p50"] >= 0.1
    assert kt["blocks_sent"] == kt["blocks_received"]
    assert doc["pools"]["prefill"]["completed"] == 40 and doc["pools"]["decode"]["completed"] == 40


def test_infinite_link_writes_strict_json(tmp_path):
    out = tmp_path / "inf.json"
    r = cli("--prefill-instances", "1", "--decode-instances", "1", "--kv-link-bandwidth", "inf",
            "--num-requests", "10", "--rate", "4", "-o", str(out))
    assert r.returncode == 0, r.stderr
    kt = json.loads(out.read_text())["kv_transfer"]
    assert kt["link"]["bandwidth_gb_s"] is None and kt["transfer_ms"]["mean"] == 0.0
    assert "∞ GB/s" in r.stdout


@pytest.mark.parametrize("args,needle", [
    (["--router", "fastest"], "--router: 'fastest' is not one of"),
    (["--instances", "0"], "--instances: 0"),
    (["--router-weights", "queue=1"], "--router-weights: only used with"),
    (["--router", "weighted", "--router-weights", "q=1"], "--router-weights: 'q=1'"),
    (["--prefill-instances", "2"], "PD needs both"),
    (["--instances", "2", "--kv-link", "rdma"], "--kv-link: only used with"),
    (["--prefill-instances", "1", "--decode-instances", "1", "--kv-link", "pcie"], "--kv-link: 'pcie'"),
    (["--prefill-instances", "1", "--decode-instances", "1", "--kv-link-bandwidth", "0"], "--kv-link-bandwidth"),
    (["--instances", "2", "--router-staleness", "-1"], "--router-staleness"),
])
def test_bad_cluster_flags_exit_2_with_one_line(args, needle):
    r = cli("--num-requests", "5", *args)
    assert r.returncode == 2, r.stderr
    assert needle in r.stderr and "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_cluster_yaml_heterogeneous_pools(tmp_path):
    spec = tmp_path / "c.yaml"
    spec.write_text(
        "router: {name: least-requests}\n"
        "pools:\n"
        "  - {name: big, count: 1, model: llama-3.1-8b, hardware: H200, tp: 2}\n"
        "  - {name: small, count: 2, model: llama-3.1-8b, hardware: H100, tp: 1, engine: {max_num_seqs: 64}}\n")
    out = tmp_path / "o.json"
    r = cli("--cluster", str(spec), "--num-requests", "60", "--rate", "10", "-o", str(out))
    assert r.returncode == 0, r.stderr
    doc = json.loads(out.read_text())
    pools = doc["config"]["cluster"]["pools"]
    assert [(p["name"], p["hardware"], p["tensor_parallel_size"], p["count"]) for p in pools] == [
        ("big", "H200", 2, 1), ("small", "H100-SXM", 1, 2)]
    assert pools[1]["engine"]["max_num_seqs"] == 64
    assert doc["config"]["gpus"] == 4
    assert [x["pool"] for x in doc["instances"]] == ["big", "small", "small"]


@pytest.mark.parametrize("text,needle", [
    ("pools: [{name: a, colour: red}]", "pools.0.colour: unknown key"),
    ("pools: []", "pools=[]"),
    ("router: {name: fastest}\npools: [{name: a}]", "router.name='fastest'"),
    ("pools: [{name: a, role: prefill}]", "PD needs 'prefill' and 'decode'"),
    ("pools: [{name: a}, {name: a}]", "names must be unique"),
    ("extra: 1\npools: [{name: a}]", "extra: unknown key"),
    ("pools: [{name: a, count: 0}]", "pools.0.count=0"),
])
def test_bad_cluster_yaml_names_the_file_and_key(tmp_path, text, needle):
    spec = tmp_path / "bad.yaml"
    spec.write_text(text + "\n")
    r = cli("--cluster", str(spec), "--num-requests", "5")
    assert r.returncode == 2, r.stderr
    assert needle in r.stderr and f"--cluster {spec}" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_parse_cluster_refuses_a_non_mapping():
    with pytest.raises(ConfigError, match="expected a mapping"):
        parse_cluster([1, 2])
