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
    assert out.returncode == 0 and "step time:" in out.stdout and "GEMMs, memory-bound (weights read)" in out.stdout  # calibrated default
    assert "gemm_memory_s" not in out.stdout  # words in the table, the identifier in --json
    out = run("step", "--latency-model", "roofline-v2")
    assert out.returncode == 0 and "prefill GEMMs" in out.stdout


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


def _rows(stdout):
    return {cells[0]: cells[1:] for cells in ([c.strip() for c in line.strip("│").split("│")] for line in stdout.splitlines()
                                              if line.startswith("│"))}


def test_calibrated_step_shows_flops_and_bytes():
    """Issue 16: under the calibrated model `step` shows FLOPs and bytes per term, hand-checkable (Llama-2-7B, fp16)."""
    out = run("step", "--prefill", "512", "--decode", "16x1024", "--json")
    data = json.loads(out.stdout)
    by = {c["component"]: c for c in data["breakdown"]}
    kv_token = 2 * 32 * 4096 * 2  # K and V × 32 layers × 4096 hidden × 2 bytes = 524,288 B/token
    assert by["attention_decode_s"]["bytes"] == kv_token * 16 * 1025  # 16 requests read 1024 cached tokens + their own
    assert by["attention_decode_s"]["flops"] == 4 * 4096 * 32 * 16 * 1025  # QK^T and PV: 2 × 2 FLOPs per head dim, layer, key
    assert by["attention_prefill_s"]["flops"] == 4 * 4096 * 32 * (512 * 513 // 2)  # causal pairs of a 512-token chunk
    assert by["attention_prefill_s"]["bytes"] == kv_token * 512
    assert by["activations_s"]["bytes"] > 0 and by["activations_s"]["flops"] == 0
    assert by["allreduce_bytes_s"]["bytes"] == 0  # TP 1: no all-reduce
    for term in ("layers", "step", "requests", "prefill_step"):  # counts, not roofline quantities
        assert by[term]["flops"] == by[term]["bytes"] == 0
    # The two GEMM terms hold every GEMM of the step once: as many FLOPs and weight bytes as the corrected roofline's.
    ref = json.loads(run("step", "--prefill", "512", "--decode", "16x1024", "--latency-model", "roofline-v2-corrected",
                         "--json").stdout)
    rb = {c["component"]: c for c in ref["breakdown"]}
    for key in ("flops", "bytes"):
        ours = by["gemm_memory_s"][key] + by["gemm_compute_s"][key]
        assert abs(ours - (rb["gemm"][key] + rb["lm_head"][key])) <= 1e-9 * ours
    assert by["gemm_compute_s"]["flops"] > 100 * by["gemm_memory_s"]["flops"]  # 528 tokens: the layer GEMMs are compute-bound
    assert abs(sum(c["time_ms"] for c in data["breakdown"]) - data["step_time_ms"]) < 1e-9
    table = _rows(run("step", "--prefill", "512", "--decode", "16x1024").stdout)
    assert table["attention, decodes (KV cache read)"][:2] == [f"{4 * 4096 * 32 * 16 * 1025 / 1e9:,.1f}", f"{kv_token * 16 * 1025 / 1e6:,.1f}"]
    assert table["attention, prefill chunks"][1] == f"{kv_token * 512 / 1e6:,.1f}"
    tp2 = {c["component"]: c for c in json.loads(run("step", "--tp", "2", "--json").stdout)["breakdown"]}
    # 2 all-reduces per layer of 528 tokens × 4096 × 2 bytes, ring factor 2(t−1)/t = 1 at TP 2
    assert tp2["allreduce_bytes_s"]["bytes"] == 2 * 32 * 528 * 4096 * 2 * 1.0


def test_every_component_has_words():
    from servesim.api import step_time
    from servesim.cli.step import COMPONENT_LABELS, component_label

    seen = set()
    for lm in ("calibrated", "roofline-v2", "roofline-v2-corrected"):
        for kw in ({}, {"tp": 2}, {"tp": 2, "pp": 2}, {"model": "mixtral-8x7b-v0.1", "tp": 2, "enable_expert_parallel": True},
                   {"model": "deepseek-v2-lite"}, {"model": "gemma-2-9b-it"}):
            for plan in ({"prefill": [512]}, {"decode": [1024] * 8}, {"prefill": [(256, 512)], "decode": [300, 700]}):
                seen |= {c.name for c in step_time(latency_model=lm, **plan, **kw).components}
    assert seen
    for name in seen:
        label = component_label(name)
        assert label != name and "_" not in label, name
    assert set(COMPONENT_LABELS) >= {n.removeprefix("stage.") for n in seen}


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
