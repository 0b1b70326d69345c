"""--disable-hybrid-kv-cache-manager and the hybrid KV layout through run, capacity, validate and vLLM logs."""

from __future__ import annotations

import json
from pathlib import Path

from servesim.validation.direct import _groups_in_pool, experiment_from_file
from servesim.validation.manifest import EngineArgs
from servesim.workload.formats import read_vllm_log

from tests.reliability._cli import run_cli

DATA = Path(__file__).resolve().parents[1] / "workload" / "data_formats"
SHORT = ["--num-requests", "4", "--prompt-tokens", "300", "--output-tokens", "20", "--rate", "2"]


def test_run_header_and_output_say_which_kv_layout_ran(tmp_path, capsys):
    code, out, err = run_cli(["run", "--model", "gemma-2-9b", *SHORT, "-o", str(tmp_path / "h.json")], capsys)
    assert code == 0, err
    # H100 at the defaults: 20,656 blocks of one 21-layer page (10,328 of the 42-layer page with the manager off).
    assert "20,656 KV blocks of 16 (hybrid KV cache manager: 1 sliding + 1 full group(s) of 21 layers, window 4,096)" in out
    cfg = json.loads((tmp_path / "h.json").read_text())["config"]
    assert cfg["num_gpu_blocks"] == 20656 and cfg["kv_cache_groups"]["hybrid"] is True
    assert "disable_hybrid_kv_cache_manager" not in cfg["engine"]  # off-by-default keys stay out of the outputs
    code, out, err = run_cli(["run", "--model", "gemma-2-9b", *SHORT, "--disable-hybrid-kv-cache-manager",
                              "-o", str(tmp_path / "o.json")], capsys)
    assert code == 0, err
    assert "10,328 KV blocks of 16 (hybrid KV cache manager off" in out
    cfg = json.loads((tmp_path / "o.json").read_text())["config"]
    assert cfg["engine"]["disable_hybrid_kv_cache_manager"] is True
    assert cfg["kv_cache_groups"] == {"hybrid": False, "sliding_window": 4096}


def test_dense_models_outputs_carry_no_kv_layout_key(tmp_path, capsys):
    code, _, err = run_cli(["run", *SHORT, "-o", str(tmp_path / "d.json")], capsys)
    assert code == 0, err
    cfg = json.loads((tmp_path / "d.json").read_text())["config"]
    assert "kv_cache_groups" not in cfg and "disable_hybrid_kv_cache_manager" not in cfg["engine"]


def test_capacity_passes_the_flag_to_every_probe(monkeypatch, capsys):
    import servesim.sweep.capacity as cap

    seen = []
    real = cap.run_capacity

    def spy(configs, *a, **k):  # the engine args each configuration's probes run with
        seen.extend(kw["engine"] for _, _, kw in configs)
        return real(configs, *a, **k)

    monkeypatch.setattr(cap, "run_capacity", spy)
    argv = ["capacity", "--slo", "ttft_p99_ms=2000", "--model", "gpt-oss-20b", "--num-requests", "10",
            "--rate-max", "2", "--tolerance", "0.5", "--json"]
    code, _, err = run_cli([*argv, "--disable-hybrid-kv-cache-manager"], capsys)
    assert code == 0, err
    assert seen == [{"disable_hybrid_kv_cache_manager": True}]
    seen.clear()
    code, _, err = run_cli(argv, capsys)
    assert code == 0, err
    assert seen == [{}]


def test_manifest_field_and_groups_in_the_pool():
    assert EngineArgs(disable_hybrid_kv_cache_manager=True).disable_hybrid_kv_cache_manager is True
    assert _groups_in_pool("gemma-3-27b-it", {}) == 7  # 1 full + 6 sliding groups of 10 layers
    assert _groups_in_pool("gemma-3-27b-it", {"disable_hybrid_kv_cache_manager": True}) == 1
    assert _groups_in_pool("gpt-oss-20b", {"kv_offloading_size": 8.0}) == 1  # a KV connector turns it off
    assert _groups_in_pool("llama-3.1-8b-instruct", {}) == 1


def test_vllm_log_tokens_are_per_group_for_hybrid_models(tmp_path):
    log = tmp_path / "vllm.log"
    log.write_text(
        "INFO vllm.entrypoints.utils: non-default args: {'model': 'openai/gpt-oss-20b', 'max_model_len': 8192}\n"
        "INFO vllm.v1.core.kv_cache_utils: GPU KV cache size: 1,270,528 tokens\n")
    parsed = read_vllm_log(log)
    # vLLM logs num_blocks // len(kv_cache_groups) x block_size: 1,270,528 / 16 = 79,408 blocks per group.
    assert parsed.kv_cache_tokens == 1_270_528 and parsed.engine["num_gpu_blocks_override"] == 79408
    exp = experiment_from_file(DATA / "vllm_bench_detailed.json", model="gpt-oss-20b", hardware="H100", tp=1,
                               engine={}, vllm_log=log)
    assert exp.engine["num_gpu_blocks"] == 2 * 79408  # two groups (12 sliding + 12 full layers) share the pool
    assert any("x 2 KV cache groups" in n for n in exp.runs[0].notes["log_notes"])
    off = experiment_from_file(DATA / "vllm_bench_detailed.json", model="gpt-oss-20b", hardware="H100", tp=1,
                               engine={"disable_hybrid_kv_cache_manager": True}, vllm_log=log)
    assert off.engine["num_gpu_blocks"] == 79408
    flag = experiment_from_file(DATA / "vllm_bench_detailed.json", model="gpt-oss-20b", hardware="H100", tp=1,
                                engine={"num_gpu_blocks_override": 5000}, vllm_log=log)
    assert flag.engine["num_gpu_blocks"] == 5000  # an explicit flag wins over the log, untouched
