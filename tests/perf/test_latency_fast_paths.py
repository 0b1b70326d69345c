"""The step-time models' fast paths (issue 7) give the same bits as their reference forms.

RooflineV2.step_time and RooflineCorrected.step_time skip the per-component breakdown and read per-request
decode terms from tables filled with numpy; both must equal explain(plan).seconds exactly (==, not approx)
on any plan. The tables' vectorised decode-attention lookup must equal the scalar one for every cell.
"""

from __future__ import annotations

import random

import pytest

from servesim.config import load_hardware, load_model
from servesim.latency import roofline
from servesim.latency.kernels import load_kernel_tables
from servesim.latency.overhead import make_overhead
from servesim.latency.plan import StepPlan

MODELS = [("llama-2-7b-hf", 1), ("llama-2-70b-hf", 2), ("llama-2-70b-hf", 4), ("mixtral-8x7b-v0.1", 2),
          ("deepseek-v2-lite", 1), ("glm-5.2-fp8", 8), ("qwen2.5-1.5b-instruct", 1)]


def plans(seed: int, n: int = 120) -> list[StepPlan]:
    rng = random.Random(seed)
    out = [StepPlan(), StepPlan((1,), (0,), ()), StepPlan((), (), (1,)), StepPlan((), (), (7, 7, 7)),
           StepPlan((8192,), (0,), ()), StepPlan((), (), (200_000, 3, 131_072)),  # beyond the table: clamped
           StepPlan((), (), (-5, 100)), StepPlan((), (), (2.5, 100))]  # negative / non-int: reference path
    for _ in range(n):
        d = rng.choice([0, 1, 2, 5, 64, 163, 300, 1024])
        ctx = tuple(rng.randint(1, rng.choice([300, 4000, 40_000])) for _ in range(d))
        k = rng.choice([0, 0, 1, 2, 4])
        new = tuple(rng.randint(1, 3000) for _ in range(k))
        prior = tuple(rng.choice([0, rng.randint(0, 20_000)]) for _ in range(k))
        out.append(StepPlan(new, prior, ctx))
    return out


@pytest.mark.parametrize("cls", [roofline.RooflineV2, roofline.RooflineCorrected])
@pytest.mark.parametrize("name,tp", MODELS)
def test_step_time_equals_explain_bit_for_bit(cls, name, tp):
    spec = load_model(name)
    hw = load_hardware("H100")
    for ovh in ("none", "per-layer"):
        lm = cls(model=spec, hardware=hw, tp=tp, overhead=make_overhead(ovh, num_layers=spec.num_layers, tp=tp))
        for plan in plans(hash((name, tp, ovh)) & 0xFFFF):
            for _ in range(2):  # second pass reads the filled tables
                assert lm.step_time(plan) == lm.explain(plan).seconds, (name, tp, plan)


def test_tables_dropped_and_refilled_give_the_same_bits(monkeypatch):
    monkeypatch.setattr(roofline, "ROWS_MAX_ENTRIES", 3000)
    spec, hw = load_model("llama-2-7b-hf"), load_hardware("H100")
    for cls in (roofline.RooflineV2, roofline.RooflineCorrected):
        lm = cls(model=spec, hardware=hw)
        for plan in plans(11, 60) * 2:
            assert lm.step_time(plan) == lm.explain(plan).seconds
        assert lm._rows.entries <= 3000 + 40 * roofline.ROW_BLOCK


def test_vectorised_decode_efficiency_equals_the_scalar_lookup():
    table = load_kernel_tables("h100").decode
    for (h, hkv, dh, tp) in table.grids:
        for batch in (1, 2, 15, 16, 17, 100, 163, 512, 600):
            for exact in (False, True):
                row = roofline.decode_efficiency_row(table, batch, 0, 140_000, h, hkv, dh, tp, exact)
                cs = list(range(0, 1100, 7)) + [255, 256, 257, 511, 512, 513, 1023, 1024, 1025] + list(range(1100, 140_000, 1999))
                assert [row[c] for c in cs] == [table.efficiency(batch, c, h, hkv, dh, tp, exact=exact) for c in cs], (h, hkv, dh, tp, batch)
