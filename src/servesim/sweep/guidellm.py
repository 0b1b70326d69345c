"""GuideLLM's `sweep` profile: a synchronous benchmark, a throughput benchmark, then constant rates between them.

As guidellm/benchmark/profile.py SweepProfile: benchmark 1 is synchronous, benchmark 2 throughput (max_concurrency
streams), then sweep_size - 2 constant-rate benchmarks at np.linspace(synchronous rate, throughput rate,
sweep_size - 1)[1:]; sweep_size defaults to guidellm settings.default_sweep_number = 10. Every benchmark sends the
same workload (lengths, num_requests, seed); only the arrival process changes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from servesim.errors import WorkloadError
from servesim.workload.spec import ArrivalSpec, WorkloadSpec

__all__ = ["DEFAULT_SWEEP_SIZE", "run_sweep_profile", "sweep_rates"]

DEFAULT_SWEEP_SIZE = 10  # guidellm settings.default_sweep_number


def sweep_rates(synchronous_rps: float, throughput_rps: float, sweep_size: int) -> list[float]:
    """The constant rates (req/s) GuideLLM's sweep runs after synchronous and throughput: linspace(...)[1:]."""
    if isinstance(sweep_size, bool) or not isinstance(sweep_size, int) or sweep_size < 2:
        raise WorkloadError(f"--profile sweep --rate={sweep_size!r}: the number of benchmarks, an integer >= 2")
    return [float(r) for r in np.linspace(synchronous_rps, throughput_rps, sweep_size - 1)[1:]]


def run_sweep_profile(spec: WorkloadSpec, sweep_size: int, run: Callable[[WorkloadSpec], Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Run the sweep's benchmarks with run(spec) -> summary; [{strategy, rate_rps, summary}] in GuideLLM's order.

    The measured rate of a benchmark is its summary's requests_per_s (completed requests / run duration), standing
    in for GuideLLM's requests_per_second.successful.mean.
    """
    if spec.num_requests is None and spec.duration_s is None:
        raise WorkloadError("--profile sweep: give --num-requests or --duration (each benchmark's size)")
    sweep_rates(1.0, 2.0, sweep_size)  # checks sweep_size before any simulation
    out: list[dict[str, Any]] = []

    def bench(strategy: str, arrival: ArrivalSpec, rate: float | None) -> Mapping[str, Any]:
        summary = run(spec.model_copy(update={"arrival": arrival}))
        out.append({"strategy": strategy, "rate_rps": rate, "summary": dict(summary)})
        return summary

    sync = bench("synchronous", ArrivalSpec(process="synchronous"), None)
    thr = bench("throughput", ArrivalSpec(process="throughput"), None)
    for rate in sweep_rates(float(sync["requests_per_s"]), float(thr["requests_per_s"]), sweep_size)[: sweep_size - 2]:
        if rate <= 0:
            raise WorkloadError("--profile sweep: a benchmark completed no requests; no rates to sweep")
        bench("constant", ArrivalSpec(process="constant", rate=rate), rate)
    return out
