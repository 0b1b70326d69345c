"""`servesim validate FILE` without a manifest: the comparison table for a result file, refusals in one line."""

from __future__ import annotations

import json
from pathlib import Path

from tests.reliability._cli import run_cli

DATA = Path(__file__).resolve().parents[1] / "workload/data_formats"


def test_validate_vllm_bench_file_prints_table(capsys, tmp_path):
    out = tmp_path / "v.json"
    code, stdout, err = run_cli(["validate", str(DATA / "vllm_bench_detailed.json"), "--model", "llama-2-7b-hf",
                                 "--hardware", "H100", "--max-num-seqs", "8", "-o", str(out)], capsys)
    assert code == 0, err
    assert "predicted vs measured" in stdout
    rows = json.loads(out.read_text())
    assert rows  # the same report a suite writes


def test_validate_file_needs_model(capsys):
    code, _, err = run_cli(["validate", str(DATA / "vllm_bench_detailed.json")], capsys)
    assert code == 2 and "needs --model M --hardware H" in err and len(err.strip().splitlines()) == 1


def test_validate_bad_file_one_line(capsys, tmp_path):
    p = tmp_path / "x.json"
    p.write_text(json.dumps({"hello": 1}))
    code, _, err = run_cli(["validate", str(p), "--model", "llama-2-7b-hf", "--hardware", "H100"], capsys)
    assert code == 2 and str(p) in err and "not a recognised result file" in err
