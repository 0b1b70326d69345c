"""Errors a user can cause: one line naming the file/field, the value and what is allowed."""

from __future__ import annotations


class ServesimError(Exception):
    """A user-caused error; the CLI prints its one-line message and exits with code 2."""


class ConfigError(ServesimError):
    """A bad model, hardware or engine configuration."""


class WorkloadError(ServesimError):
    """A bad workload description or trace file."""


class GroundTruthError(ServesimError):
    """A bad experiment manifest or ground-truth file."""
