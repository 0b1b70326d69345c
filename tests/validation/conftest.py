"""Shared fixtures for the validation tests: the real excerpts in data/."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from gt_helpers import DATA

@pytest.fixture
def data_dir() -> Path:
    return DATA


@pytest.fixture
def codegen_dir(tmp_path: Path) -> Path:
    """A writable copy of the CodeLlama codegen replay excerpt (30 requests, both stages)."""
    dst = tmp_path / "ip_codegen"
    shutil.copytree(DATA / "ip_codegen", dst)
    return dst
