"""Manifest errors are one-line GroundTruthErrors naming the file, the field, the value and what is allowed."""

from __future__ import annotations

import pytest

from servesim.errors import GroundTruthError, ServesimError
from servesim.validation import load_experiment
from servesim.validation.manifest import FORMATS

from gt_helpers import DATA, write_manifest

GT = {"format": "requests-csv", "path": "r.csv"}


@pytest.fixture
def folder(tmp_path):
    (tmp_path / "r.csv").write_text((DATA / "requests_excerpt.csv").read_text())
    return tmp_path


def _error(path) -> str:
    with pytest.raises(GroundTruthError) as info:
        load_experiment(path)
    msg = str(info.value)
    assert "\n" not in msg and "experiment.yaml" in msg or "r.csv" in msg
    assert isinstance(info.value, ServesimError)
    return msg


def test_valid_manifest_loads(folder):
    exp = load_experiment(write_manifest(folder, GT))
    assert exp.name == "test-exp" and exp.model == "codellama-34b-instruct-hf" and exp.hardware == "H100"
    assert exp.root == folder and exp.manifest["ground_truth"]["format"] == "requests-csv"
    kw = exp.engine_kwargs()
    assert kw["num_gpu_blocks_override"] == 26602 and "num_gpu_blocks" not in kw and kw["tensor_parallel_size"] == 2


def test_engine_kwargs_build_an_engine_config(folder):
    from servesim.config.engine import engine_config

    cfg = engine_config(**load_experiment(write_manifest(folder, GT)).engine_kwargs())
    assert cfg.num_gpu_blocks_override == 26602 and cfg.max_num_seqs == 128


def test_unknown_top_level_key(folder):
    msg = _error(write_manifest(folder, GT, colour="blue"))
    assert "colour" in msg and "unknown key" in msg and "tensor_parallel_size" in msg


def test_unknown_engine_key(folder):
    msg = _error(write_manifest(folder, GT, engine={"max_num_seq": 128}))
    assert "engine.max_num_seq" in msg and "max_num_seqs" in msg


def test_missing_model(folder):
    msg = _error(write_manifest(folder, GT, model=None))
    assert "model" in msg and "missing" in msg and "Hugging Face" in msg


def test_bad_format_name(folder):
    msg = _error(write_manifest(folder, {"format": "locust", "path": "r.csv"}))
    assert "ground_truth.format" in msg and "'locust'" in msg
    assert all(f in msg for f in FORMATS)


def test_missing_data_file(folder):
    msg = _error(write_manifest(folder, {"format": "requests-csv", "path": "nope.csv"}))
    assert "ground_truth.path" in msg and "nope.csv" in msg and "not found" in msg


def test_missing_auxiliary_file(folder):
    msg = _error(write_manifest(folder, {**GT, "profile": "profile.yaml"}))
    assert "ground_truth.profile" in msg and "not found" in msg


def test_bad_values(folder):
    assert "tensor_parallel_size" in _error(write_manifest(folder, GT, tensor_parallel_size=0))
    assert "engine.block_size" in _error(write_manifest(folder, GT, engine={"block_size": "big"}))
    assert "ground_truth.mode" in _error(write_manifest(folder, {**GT, "mode": "half-open"}))
    assert "ground_truth.concurrency" in _error(write_manifest(folder, {**GT, "mode": "closed"}))


def test_missing_manifest_and_bad_yaml(tmp_path):
    assert "experiment manifest not found" in _error(tmp_path)
    (tmp_path / "experiment.yaml").write_text("name: [unclosed\n")
    assert "invalid YAML" in _error(tmp_path)
    (tmp_path / "experiment.yaml").write_text("- just\n- a list\n")
    assert "expected a mapping" in _error(tmp_path)


def test_extra_keys_allowed_under_ground_truth_notes_source(folder):
    exp = load_experiment(write_manifest(folder, {**GT, "anything": {"x": 1}}, notes="free text",
                                         source={"url": "somewhere"}))
    assert exp.manifest["notes"] == "free text"
