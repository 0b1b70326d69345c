"""docs/schema/*.json match the pydantic models, and real servesim outputs validate against those models."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from servesim.config.outfile import SCHEMA_VERSION
from servesim.latency.calibration import Calibration, load_calibration, save_calibration
from servesim.schema import SCHEMAS, CalibrationFile, json_schemas

from tests.reliability._cli import run_cli

DOCS = Path(__file__).resolve().parents[2] / "docs" / "schema"


def test_committed_schemas_match_the_models():
    for name, text in json_schemas().items():
        assert (DOCS / name).read_text() == text, f"docs/schema/{name} is stale: python -m servesim.schema docs/schema"
    assert sorted(p.name for p in DOCS.glob("*.json")) == sorted(SCHEMAS)


def test_calibration_model_has_every_field():
    assert set(CalibrationFile.model_fields) - {"schema_version"} == set(Calibration.__dataclass_fields__)


def _run(argv, capsys):
    code, out, err = run_cli(argv, capsys)
    assert code == 0, err
    return out


def test_real_outputs_validate(tmp_path, capsys):
    run = ["run", "--latency-model", "roofline-v2", "--num-requests", "6", "--prompt-tokens", "64", "--output-tokens", "4"]
    _run([*run, "-o", str(tmp_path / "r.json")], capsys)
    SCHEMAS["run.json"].model_validate_json((tmp_path / "r.json").read_text())
    _run([*run, "-o", str(tmp_path / "v.json"), "--output-format", "vllm-bench"], capsys)
    SCHEMAS["run-vllm-bench.json"].model_validate_json((tmp_path / "v.json").read_text())
    spec = tmp_path / "s.yaml"
    spec.write_text("base: {latency_model: roofline-v2, workload: {input_tokens: 10, output_tokens: 2, arrival: synchronous, num_requests: 2}}\n"
                    "grid: {tp: [1, 2]}\n")
    _run(["sweep", str(spec), "-o", str(tmp_path / "s.jsonl")], capsys)
    for line in (tmp_path / "s.jsonl").read_text().splitlines():
        SCHEMAS["sweep-line.json"].model_validate_json(line)
    for line in (tmp_path / "s.timings.jsonl").read_text().splitlines():
        SCHEMAS["sweep-timing-line.json"].model_validate_json(line)
    _run(["capacity", "--slo", "ttft_p99_ms=500", "--latency-model", "roofline-v2", "--num-requests", "20",
          "--rate-min", "1", "--rate-max", "4", "-o", str(tmp_path / "c.json")], capsys)
    SCHEMAS["capacity.json"].model_validate_json((tmp_path / "c.json").read_text())
    save_calibration(load_calibration(), tmp_path / "cal.json")
    doc = json.loads((tmp_path / "cal.json").read_text())
    assert doc["schema_version"] == SCHEMA_VERSION
    CalibrationFile.model_validate(doc)


def test_a_wrong_key_fails_the_model(tmp_path):
    with pytest.raises(Exception):
        SCHEMAS["sweep-timing-line.json"].model_validate({"schema_version": "1.0", "key": "k", "index": 0, "elapsed": 1.0})
