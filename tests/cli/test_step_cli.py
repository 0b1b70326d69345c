"""`servesim step` and `servesim models` as a user runs them."""

import json
import subprocess
import sys


def run(*args):
    return subprocess.run([sys.executable, "-m", "servesim", *args], capture_output=True, text=True)


def test_step_json_has_time_and_breakdown():
    out = run("step", "--latency-model", "roofline-v2", "--decode", "1x300", "--overhead", "per-layer", "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["step_time_ms"] == 7.988
    assert {c["component"] for c in data["breakdown"]} >= {"decode.gemm", "decode.memory", "overhead"}


def test_step_default_table():
    out = run("step")
    assert out.returncode == 0 and "step time:" in out.stdout and "gemm_memory_s" in out.stdout  # calibrated default
    out = run("step", "--latency-model", "roofline-v2")
    assert out.returncode == 0 and "prefill.gemm" in out.stdout


def test_models_lists_bundled():
    out = run("models", "--json")
    rows = {r["name"]: r for r in json.loads(out.stdout)}
    assert rows["llama-2-7b-hf"]["kv_bytes_per_token"] == 524288 and len(rows) == 22


def test_bad_inputs_exit_2_one_line():
    for args in (["step", "--model", "nope"], ["step", "--tp", "3"], ["step", "--hardware", "H1000"],
                 ["step", "--decode", "-4x10"], ["step", "--prefill", "abc"], ["step", "--overhead", "some"]):
        out = run(*args)
        assert out.returncode == 2, (args, out.stderr)
        assert out.stderr.count("\n") == 1 and "Traceback" not in out.stderr, out.stderr
