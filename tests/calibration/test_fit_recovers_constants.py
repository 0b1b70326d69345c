"""The calibration procedure recovers known constants from synthetic measurements made with them."""

from dataclasses import replace

import numpy as np
import pytest

from servesim.latency.calibrated import FEATURES
from servesim.latency.calibration import Calibration
from servesim.validation import load_experiment
from servesim.validation.calibrate import fit
from servesim.validation.measured import Experiment, MeasuredRequest, MeasuredRun
from servesim.validation.runner import replay
from servesim.workload import OpenLoopSource, Prompts, arrivals, distributions

TRUE = Calibration({"gemm_memory_s": 1.25, "gemm_compute_s": 0.8, "attention_prefill_s": 1.0, "attention_decode_s": 1.3,
                    "allreduce_bytes_s": 1.0, "allreduce_ops": 6e-6, "step": 1.5e-3, "layers": 0.0, "requests": 2e-5,
                    "prefill_step": 0.0}, 0.006, 0.0, name="truth")


def synthetic_experiment(model: str, tp: int, rate: float, seed: int) -> tuple[Experiment, MeasuredRun]:
    """Requests simulated with TRUE and recorded as if measured."""
    rng = np.random.default_rng(seed)
    src = OpenLoopSource(arrivals.poisson(rate), Prompts(distributions.uniform(100, 1500), distributions.uniform(20, 200)), rng, num_requests=120)
    specs = []
    while src.peek_arrival_s() is not None:
        specs.append(src.pop())
    run = MeasuredRun("synthetic", ("all",), "open", None, tuple(specs), None)
    exp = Experiment(f"{model}-tp{tp}-r{rate}", model, "H100", tp, {"max_num_seqs": 64, "max_num_batched_tokens": 1024,
                     "num_gpu_blocks": 4000, "async_scheduling": False}, [run], None, {})  # type: ignore[arg-type]
    res = replay(exp, run, latency=TRUE.model(*_mh(model, tp)), frontend_latency_s=TRUE.frontend_latency_s, frontend_per_token_s=0.0)
    by = {r.id: r for r in res.records}
    measured = tuple(MeasuredRequest(s.arrival_s, s.input_tokens, s.output_tokens,
                                     (by[s.id].first_token_s - s.arrival_s) * 1e3, (by[s.id].finish_s - s.arrival_s) * 1e3,
                                     ((by[s.id].finish_s - by[s.id].first_token_s) * 1e3) / (s.output_tokens - 1)) for s in specs)
    run = replace(run, measured=measured)
    return replace(exp, runs=[run]), run


def _mh(model, tp):
    from servesim.config import load_hardware, load_model

    return load_model(model), load_hardware("H100"), tp


def test_fit_recovers_known_constants():
    units = [synthetic_experiment(m, tp, rate, i) for i, (m, tp, rate) in enumerate(
        [("llama-2-7b-hf", 1, 0.5), ("llama-2-7b-hf", 1, 4.0), ("llama-2-7b-hf", 1, 16.0), ("llama-2-7b-hf", 2, 6.0),
         ("qwen3-14b", 1, 3.0), ("codellama-34b-instruct-hf", 2, 2.0), ("codellama-34b-instruct-hf", 2, 6.0)])]
    free = ("gemm_memory_s", "gemm_compute_s", "step", "requests")
    fixed = {k: v for k, v in TRUE.theta.items() if k not in free}
    fixed.update({"frontend": TRUE.frontend_latency_s, "frontend_per_token": 0.0})
    start = Calibration({**TRUE.theta, "gemm_memory_s": 1.0, "gemm_compute_s": 1.5, "step": 0.0, "requests": 0.0}, 0.006, 0.0)
    result = fit(units, start=start, iterations=12, damping=0.5, fixed=fixed)
    got = result.calibration.theta
    assert got["gemm_memory_s"] == pytest.approx(1.25, rel=0.03)
    assert got["gemm_compute_s"] == pytest.approx(0.8, rel=0.05)
    # The fixed per-step and per-request CPU terms trade off against each other (batch sizes vary by ~10×
    # here), so they are checked together: the per-step overhead at batch 1 and at batch 32.
    for batch in (1, 32):
        assert got["step"] + batch * got["requests"] == pytest.approx(1.5e-3 + batch * 2e-5, rel=0.15)
    worst = max(abs(e) for errs in result.train_errors.values() for e in errs.values())
    assert worst < 1.0  # the fitted model reproduces the synthetic means within 1 %


def test_fit_objective_never_rises_past_the_guard_and_folds_run_in_parallel_identically():
    from servesim.validation.calibrate import GUARD
    from servesim.validation.crossval import leave_one_model_out

    units = [synthetic_experiment(m, 1, rate, i) for i, (m, rate) in enumerate(
        [("llama-2-7b-hf", 2.0), ("llama-2-7b-hf", 12.0), ("qwen3-14b", 3.0)])]
    fixed = {k: v for k, v in TRUE.theta.items() if k not in ("gemm_memory_s", "step")}
    fixed.update({"frontend": TRUE.frontend_latency_s, "frontend_per_token": 0.0})
    start = Calibration({**TRUE.theta, "gemm_memory_s": 1.0, "step": 0.0}, 0.006, 0.0)
    result = fit(units, start=start, iterations=4, fixed=fixed)
    scores = [h["objective"] for h in result.history]
    assert len(scores) > 1 and all(s <= GUARD * min(scores[:i]) for i, s in enumerate(scores) if i)
    serial = leave_one_model_out(units, iterations=2, start=start, fixed=fixed)
    parallel = leave_one_model_out(units, iterations=2, start=start, fixed=fixed, workers=2)
    assert [f.held_out for f in parallel] == [f.held_out for f in serial] == ["llama-2-7b-hf", "qwen3-14b"]
    assert [f.fit.calibration.theta for f in parallel] == [f.fit.calibration.theta for f in serial]
