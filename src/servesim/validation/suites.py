"""Bundled validation suites: `servesim/data/suites/<suite>/<experiment>/experiment.yaml` + compact data.

Regenerate them with `python scripts/build_suites.py [path/to/shared]`.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from servesim.errors import GroundTruthError
from servesim.validation.manifest import MANIFEST_NAME, load_experiment
from servesim.validation.measured import Experiment


def _suites_root() -> Path:
    """The bundled suites folder (located through the servesim package, so it works when installed)."""
    return Path(str(resources.files("servesim").joinpath("data", "suites")))


def list_suites() -> list[str]:
    """Names of the bundled suites, sorted."""
    root = _suites_root()
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if p.is_dir() and any(p.glob(f"*/{MANIFEST_NAME}")))


def suite_path(name: str) -> Path:
    """Folder of a bundled suite (GroundTruthError listing the suites when unknown)."""
    names = list_suites()
    if name not in names:
        raise GroundTruthError(f"suite {name!r}: not a bundled suite (available: {', '.join(names) or 'none'})")
    return _suites_root() / name


def experiment_paths(name: str) -> list[Path]:
    """Experiment folders of a suite, sorted by name."""
    return sorted(p.parent for p in suite_path(name).glob(f"*/{MANIFEST_NAME}"))


def load_suite(name: str) -> list[Experiment]:
    """Every experiment of a bundled suite, sorted by folder name."""
    return [load_experiment(p) for p in experiment_paths(name)]
