"""Draft cost of speculative decoding: the drafter's forward passes per engine step, by roofline.

vLLM proposes drafts after each step's sampling, for every request in the batch (vllm/v1/spec_decode/eagle.py,
draft_model.py, ngram_proposer.py): k sequential passes of the drafter, one token per request each.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from servesim.config.hardware import Hardware
from servesim.config.model import ModelSpec

# EAGLE's head fuses the target's hidden state with the token embedding through an fc of (2·hidden → hidden)
# (EAGLE, arXiv:2401.15077 §4); EAGLE-3 fuses three target layers' hidden states (3·hidden, arXiv:2503.01840);
# DeepSeek-V3's MTP module projects (2·hidden → hidden) before its transformer block (arXiv:2412.19437 §2.2).
FUSION_INPUTS = {"eagle": 2, "eagle3": 3, "mtp": 2}


@dataclass(frozen=True, slots=True)
class DraftPass:
    """One drafter forward pass per GPU: parameters touched per token and weight bytes read."""

    params_per_token: float  # multiply-accumulate weights per token (FLOPs = 2 × this × tokens)
    weight_bytes: float


def head_pass(model: ModelSpec, method: str, tp: int) -> DraftPass:
    """An EAGLE/EAGLE-3/MTP head sized from the target: one decoder layer + fusion fc + LM head, split over tp."""
    h = model.hidden_size
    # Assumption: the head's decoder layer has the shape of the target's typical layer (active experts for MoE),
    # and it reads the LM head (shared with the target in vLLM) once per pass.
    layer = 2 * h + sum(g.k * g.n * g.active for g in model.layer_gemms())
    params = layer + FUSION_INPUTS[method] * h * h + model.vocab_size * h
    return DraftPass(params / tp, params * model.weight_bytes_per_param / tp)


def model_pass(draft: ModelSpec, tp: int) -> DraftPass:
    """A separate draft model's decode pass: its active parameters' FLOPs and all its weights' bytes, split over tp."""
    return DraftPass(draft.active_param_count / tp, draft.param_count * draft.weight_bytes_per_param / tp)


def pass_seconds(p: DraftPass, tokens: int, hw: Hardware, bytes_per_weight: float) -> float:
    """Roofline seconds of one draft pass over `tokens` tokens: max(FLOPs / peak, bytes / sustained bandwidth)."""
    compute = 2.0 * p.params_per_token * tokens / hw.peak_flops(bytes_per_weight)
    memory = p.weight_bytes / (hw.hbm_bytes_per_s * hw.bw_efficiency)
    return compute if compute > memory else memory


def draft_time_fn(sc, model: ModelSpec, hw: Hardware, tp: int) -> Callable[[int], float] | None:
    """(requests drafting) -> draft seconds per step for a SpeculativeConfig; None when the draft is CPU-only."""
    method, k = sc.method, sc.num_speculative_tokens
    if method in ("ngram", "suffix"):
        # Assumption: prompt-lookup / suffix-tree proposals run on the CPU (vLLM ngram_proposer.py, numba) and are
        # treated as costing ~0 s of step time; no published per-step figure is modelled.
        return None
    if method == "draft_model":
        from servesim.config import load_model

        draft = load_model(sc.model)
        p, width = model_pass(draft, sc.draft_tensor_parallel_size or tp), draft.weight_bytes_per_param
    else:
        p, width = head_pass(model, method, tp), model.weight_bytes_per_param
    return lambda n: k * pass_seconds(p, n, hw, width)
