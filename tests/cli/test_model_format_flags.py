"""`--dtype`, `--quantization`, `--kv-cache-dtype` and the start-up refusals through the real CLI: one line, exit 2."""

from __future__ import annotations

import json

import pytest

from tests.reliability._cli import run_cli


RUN = ["run", "--num-requests", "3", "--latency-model", "roofline-v2"]
CASES = [
    ("bad-dtype", [*RUN, "--dtype", "fp4"], ["--dtype fp4", "auto, bfloat16, float16, float32"]),
    ("bad-kv-cache-dtype", [*RUN, "--kv-cache-dtype", "int8"], ["--kv-cache-dtype int8", "auto, fp8, fp8_e4m3, fp8_e5m2"]),
    ("unknown-quantization", [*RUN, "--quantization", "hqq"], ["--quantization hqq", "unknown method", "known:", "mxfp4"]),
    ("unknown-quant-method-in-config", [*RUN, "--model", "q_unknown.json"], ["q_unknown.json", "quant_method", "'int3'", "known:", "awq"]),
    ("step-bad-dtype", ["step", "--dtype", "half-ish"], ["--dtype half-ish", "must be one of"]),
    ("max-model-len-above-derived", [*RUN, "--max-model-len", "5000"], ["max_model_len (5,000)", "derived max_model_len (4,096"]),
    ("kv-override-too-small", [*RUN, "--num-gpu-blocks-override", "2"],
     ["KV cache holds 32 tokens", "max_model_len 4,096 needs 256 blocks", "estimated maximum model length is 32"]),
    ("kv-memory-too-small", [*RUN, "--model", "llama-3.1-8b-instruct", "--hardware", "A100-40GB", "--gpu-memory-utilization", "0.5"],
     ["KV cache holds", "max_model_len 131,072 needs 8,192 blocks", "16.00 GiB KV cache is needed"]),
    ("gemma-float16", [*RUN, "--model", "g2.json", "--dtype", "float16"], ["does not support float16"]),
]

FILES = {
    "q_unknown.json": '{"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 128, '
                      '"vocab_size": 100, "quantization_config": {"quant_method": "int3"}}',
    "g2.json": '{"model_type": "gemma2", "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, '
               '"intermediate_size": 128, "vocab_size": 100, "torch_dtype": "float32"}',
}


@pytest.mark.parametrize("case_id,argv,expected", CASES, ids=[c[0] for c in CASES])
def test_refused_with_one_line_and_exit_2(case_id, argv, expected, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    for name, text in FILES.items():
        (tmp_path / name).write_text(text)
    out_file = tmp_path / "out.json"
    code, out, err = run_cli([*argv, "-o", str(out_file)] if argv[0] == "run" else argv, capsys)
    lines = err.strip().splitlines()
    assert code == 2, (case_id, code, out, err)
    assert len(lines) == 1 and lines[0].startswith("servesim: error: "), err
    for piece in expected:
        assert piece in lines[0], (piece, lines[0])
    assert not out_file.exists()


def test_models_lists_gpt_oss_at_its_mxfp4_size_and_fp8_kv_halves_kv_bytes(capsys):
    code, out, _ = run_cli(["models", "--json"], capsys)
    rows = {r["name"]: r for r in json.loads(out)}
    assert code == 0 and rows["gpt-oss-20b"]["weight_gb"] == 13.75 and rows["gpt-oss-20b"]["quantization"] == "mxfp4"
    assert rows["llama-2-7b-hf"]["dtype"] == "float16" and rows["llama-3.1-8b-instruct"]["kv_bytes_per_token"] == 131_072
    code, out, _ = run_cli(["models", "--json", "--kv-cache-dtype", "fp8"], capsys)
    assert json.loads(out)[0]["kv_cache_dtype"] == "fp8"
    assert {r["name"]: r for r in json.loads(out)}["llama-3.1-8b-instruct"]["kv_bytes_per_token"] == 65_536


def test_run_with_fp8_kv_reports_twice_the_blocks(tmp_path, capsys):
    blocks = []
    for kv in ("auto", "fp8"):
        out = tmp_path / f"{kv}.json"
        code, _, err = run_cli(["run", "--model", "llama-3.1-8b-instruct", "--num-requests", "2", "--latency-model", "roofline-v2",
                                "--kv-cache-dtype", kv, "-o", str(out)], capsys)
        assert code == 0, err
        doc = json.loads(out.read_text())
        blocks.append(doc["config"]["num_gpu_blocks"])
        assert doc["config"]["model_format"]["kv_cache_dtype"] == kv
    assert blocks[1] in (2 * blocks[0], 2 * blocks[0] + 1), blocks
