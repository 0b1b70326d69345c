"""`servesim step/run` with --pipeline-parallel-size / -pp, --enable-expert-parallel and -tp, and simulate(pp=...)."""

import json
import subprocess
import sys

import pytest

from servesim.config.engine import EngineConfig
from servesim.config.hardware import load_hardware
from servesim.config.model import load_model
from servesim.engine.capacity import GIB, activation_reserve_bytes
from servesim.errors import ConfigError
from servesim.simulation import kv_blocks_for, resolve_engine, simulate


def run(*args):
    return subprocess.run([sys.executable, "-m", "servesim", *args], capture_output=True, text=True)


def test_step_pp_and_ep_breakdown_show_communication():
    out = run("step", "-m", "mixtral-8x7b-v0.1", "-tp", "2", "-pp", "2", "--enable-expert-parallel", "--decode", "32x1000", "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    names = {c["component"] for c in data["breakdown"]}
    assert {"ep_all2all", "pp_stage_transfer", "pp_pipeline"} <= names
    assert data["tp"] == 2 and data["pipeline_parallel_size"] == 2 and data["enable_expert_parallel"] is True
    assert data["notes"]["pp_layers"] == "16,16"
    total = sum(c["time_ms"] for c in data["breakdown"])
    assert total == pytest.approx(data["step_time_ms"])


def test_tp_alias_is_the_same_as_tp():
    a = json.loads(run("step", "-m", "llama-2-7b-hf", "-tp", "2", "--json").stdout)
    b = json.loads(run("step", "-m", "llama-2-7b-hf", "--tp", "2", "--json").stdout)
    assert a["step_time_ms"] == b["step_time_ms"]


def test_bad_pp_is_one_line_exit_2():
    out = run("step", "-m", "llama-2-7b-hf", "-pp", "64")
    assert out.returncode == 2 and "pipeline-parallel-size 64" in out.stderr and "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


def test_run_with_pp_and_ep():
    out = run("run", "-m", "mixtral-8x7b-v0.1", "-tp", "2", "-pp", "2", "--enable-expert-parallel",
              "--num-requests", "20", "--rate", "5", "--json")
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    assert summary["completed"] == 20 and summary["rejected"] == 0


def test_simulate_pp_kwarg_equals_engine_field():
    w = {"input_tokens": {"kind": "constant", "value": 300}, "output_tokens": {"kind": "constant", "value": 40},
         "arrival": {"process": "poisson", "rate": 8}, "num_requests": 30}
    a = simulate("llama-3.1-8b-instruct", workload=w, seed=1, pp=2)
    b = simulate("llama-3.1-8b-instruct", workload=w, seed=1, engine={"pipeline_parallel_size": 2})
    assert a.summary == b.summary
    assert a.config["engine"]["pipeline_parallel_size"] == 2


def test_pp_kv_blocks_per_stage():
    m, hw = load_model("llama-3.1-8b-instruct"), load_hardware("H100")
    eng = resolve_engine({"pipeline_parallel_size": 2}, m, hw, 1)
    # Stage 0 holds 16 of 32 layers and one vocab matrix: weights = (W - 2 · V · d · 2 B) / 2 + V · d · 2 B;
    # it caches KV for its 16 layers: 65,536 B per token.
    vocab = 128256 * 4096 * 2
    weights = (m.weight_bytes - 2 * vocab) / 2 + vocab
    reserve = activation_reserve_bytes(8192, 4096, 14336, 1)
    expect = int((hw.usable_memory_bytes * 0.9 - weights - reserve) // (16 * 65536))
    assert kv_blocks_for(eng, m, hw) == expect
    assert expect > 2 * kv_blocks_for(resolve_engine(None, m, hw, 1), m, hw)


def test_engine_rejects_bad_pp():
    with pytest.raises(ConfigError, match="pipeline-parallel-size 33"):
        resolve_engine({"pipeline_parallel_size": 33}, load_model("llama-3.1-8b-instruct"), load_hardware("H100"), 1)
    assert EngineConfig().pipeline_parallel_size == 1 and EngineConfig().enable_expert_parallel is False


@pytest.mark.parametrize("model,kw", [("llama-3.1-8b-instruct", dict(pp=2)),
                                      ("mixtral-8x7b-v0.1", dict(tp=2, enable_expert_parallel=True)),
                                      ("llama-3.1-8b-instruct", dict(pp=3, latency_model="roofline-v2-corrected"))])
def test_pp_ep_runs_same_with_and_without_event_skipping(model, kw):
    w = {"input_tokens": {"kind": "gaussian", "mean": 400, "stdev": 200, "min": 10, "max": 1500},
         "output_tokens": {"kind": "gaussian", "mean": 120, "stdev": 60, "min": 1, "max": 400},
         "arrival": {"process": "poisson", "rate": 20}, "num_requests": 80}
    a = simulate(model, workload=w, seed=2, **kw)
    b = simulate(model, workload=w, seed=2, check_invariants=True, **kw)  # the reference path, invariants every step
    assert a.summary == b.summary and a.summary["completed"] == 80
