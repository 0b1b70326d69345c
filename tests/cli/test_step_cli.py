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
    from servesim.config.bundled import bundled_models

    assert rows["llama-2-7b-hf"]["kv_bytes_per_token"] == 524288 and len(rows) == len(bundled_models()) >= 24


def test_bad_inputs_exit_2_one_line():
    for args in (["step", "--model", "nope"], ["step", "--tp", "3"], ["step", "--hardware", "H1000"],
                 ["step", "--decode", "-4x10"], ["step", "--prefill", "abc"], ["step", "--overhead", "some"]):
        out = run(*args)
        assert out.returncode == 2, (args, out.stderr)
        assert out.stderr.count("\n") == 1 and "Traceback" not in out.stderr, out.stderr


def test_step_and_run_say_where_kernel_efficiency_comes_from(tmp_path):
    out = run("step", "--decode", "8x700", "--json")
    assert json.loads(out.stdout)["kernel_efficiency"] == "measured H100 tables"
    out = run("step", "--hardware", "MI300X", "--decode", "8x700")
    assert out.returncode == 0 and "kernel efficiency transferred from H100 tables" in out.stdout
    path = tmp_path / "run.json"
    out = run("run", "--hardware", "A100-80GB", "--rate", "4", "--num-requests", "5", "--output", str(path))
    assert out.returncode == 0, out.stderr
    assert "kernel efficiency transferred from H100 tables" in out.stdout
    assert json.loads(path.read_text())["config"]["kernel_efficiency"] == "kernel efficiency transferred from H100 tables"


def test_a100_decode_batch_8_scales_with_bandwidth_not_flops():
    """Issue 13: batch 4 → 8 no longer doubles on an A100 (was 9.66 → 18.38 ms with the calibrated model)."""
    t = {}
    for gpu in ("H100", "A100-80GB"):
        for n in (4, 8):
            out = run("step", "--model", "llama-3.1-8b-instruct", "--hardware", gpu, "--decode", f"{n}x700", "--json")
            t[gpu, n] = json.loads(out.stdout)["step_time_ms"]
    assert t["A100-80GB", 8] / t["A100-80GB", 4] < 1.1
    assert 1.0 < t["A100-80GB", 8] / t["H100", 8] < 3.35 / 2.039


def test_step_with_lora_adds_a_lora_component():
    # Llama-3.1-8B rank 16: 83,886,080 FLOPs per token (2 * 16 * 81,920 * 32) and 83,886,080 bytes per adapter.
    base = json.loads(run("step", "--model", "llama-3.1-8b", "--latency-model", "roofline-v2", "--decode", "10x500", "--json").stdout)
    out = run("step", "--model", "llama-3.1-8b", "--latency-model", "roofline-v2", "--decode", "10x500", "--json",
              "--enable-lora", "--lora-adapters", "2")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    lora = next(c for c in data["breakdown"] if c["component"] == "lora")
    assert lora["flops"] == 10 * 83_886_080 and lora["bytes"] == 2 * 83_886_080 and lora["bound"] == "memory"
    assert abs(data["step_time_ms"] - base["step_time_ms"] - lora["time_ms"]) < 1e-9
