"""The seed report's experiment (H2b): roofline v2 with no / fixed / model-scaled overhead on 13 real runs.

Three arms, all `roofline-v2` with the bandwidth factor 0.82 (the seed's H1): baseline (no overhead),
fixed (InferSim's 5/30/15 ms), scaled (100/500/250 µs × layers / TP). Each of the 13 experiments is
replayed at the synchronous rate (closed loop, one request in flight, as GuideLLM's synchronous
benchmark) with its reconstructed workload (50 requests, seed 42) and BLIS's engine settings
(max_num_seqs 256, max_num_batched_tokens 2048, 1e6 KV blocks), so the arms compare like for like.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from servesim.validation.compare import ape, signed_error
from servesim.validation.measured import Experiment
from servesim.validation.runner import ModelChoice, predicted_means, replay, workload_for

ARMS: dict[str, str] = {"baseline": "none", "fixed": "fixed", "scaled": "per-layer"}
ARM_SHORT = {"baseline": "BL", "fixed": "FX", "scaled": "SC"}
# The seed's published overall MAPEs (seed-h2b-scaled-overhead.md, "Overall Aggregates").
PUBLISHED_OVERALL = {"tpot_mape": {"baseline": 36.1, "fixed": 47.6, "scaled": 17.3}, "e2e_mape": {"baseline": 28.8, "fixed": 70.9, "scaled": 18.6}}
PUBLISHED_COLUMNS = {"baseline": "h2b_BL_tpot_mape", "fixed": "h2b_FX_tpot_mape", "scaled": "h2b_SC_tpot_mape"}
BLIS_ENGINE = {"max_num_seqs": 256, "max_num_batched_tokens": 2048, "num_gpu_blocks_override": 1_000_000}
FAMILY = {
    "llama-2-7b-hf": "Llama2-7B", "qwen2.5-7b-instruct": "Qwen2.5-7B", "qwen3-14b": "Qwen3-14B",
    "codellama-34b-instruct-hf": "CodeLlama-34B", "llama-2-70b-hf": "Llama2-70B",
}


@dataclass
class ArmResult:
    """One experiment under one arm: predicted means (ms) and errors (%) against the measured means."""

    experiment: str
    family: str
    predicted: dict[str, float]
    measured: dict[str, float]
    errors: dict[str, float] = field(default_factory=dict)  # signed %, keyed tpot/tpot_consistent/itl/e2e/ttft


def _errors(pred: dict[str, float], meas: dict[str, float]) -> dict[str, float]:
    pairs = {
        # The seed's TPOT: simulated mean of (E2E−TTFT)/(N−1) against GuideLLM's E2E/N — what its MAPE compared.
        "tpot": (pred["itl_mean"], meas["e2e_per_token_mean_ms"]),
        # Like for like: simulated E2E/N (token-weighted, as GuideLLM) against GuideLLM's E2E/N.
        "tpot_consistent": (pred["e2e_per_token_mean"], meas["e2e_per_token_mean_ms"]),
        "itl": (pred["itl_mean"], meas.get("itl_mean_ms_derived", math.nan)),
        "e2e": (pred["e2e_mean"], meas["e2e_mean_ms"]),
        "ttft": (pred["ttft_mean"], meas["ttft_mean_ms"]),
    }
    return {k: signed_error(p, a) for k, (p, a) in pairs.items() if not (math.isnan(p) or math.isnan(a))}


LOADS = ("blis", "closed-loop")


def _workload(exp: Experiment, load: str, seed: int, measured_e2e_ms: float) -> Any:
    """The replayed load: BLIS's constant rate (≈ n/duration of the synchronous benchmark) or closed loop."""
    from servesim.workload import workload_from_flags

    spec = workload_for(exp, exp.runs[0], seed=seed)
    if load == "closed-loop":
        return spec
    # BLIS (anchor §3.2) replayed the synchronous benchmark at constant rate n/duration; with one request in
    # flight that rate is 1 / mean E2E, which we take from the measured mean (the durations were not published).
    return workload_from_flags(base=spec, arrival="constant", rate=1000.0 / measured_e2e_ms)


def run_h2b(experiments: list[Experiment], *, seed: int = 42, latency_model: str = "roofline-v2",
            load: str = "blis", arms: dict[str, str] | None = None) -> dict[str, list[ArmResult]]:
    """Simulate every experiment under each arm (name -> overhead variant; default the seed's three)."""
    arms = ARMS if arms is None else arms
    out: dict[str, list[ArmResult]] = {arm: [] for arm in arms}
    for exp in experiments:
        run = exp.runs[0]
        meas = dict(run.measured_means())
        for arm, overhead in arms.items():
            res = replay(exp, run, ModelChoice(latency_model, overhead), seed=seed, engine_overrides=BLIS_ENGINE,
                         workload=_workload(exp, load, seed, meas["e2e_mean_ms"]))
            pred = predicted_means(res)
            m = dict(meas)
            # Measured ITL is not published for these runs: derived from the measured means,
            # (E2E − TTFT) / (N̄ − 1), with N̄ = E2E / TPOT (GuideLLM's TPOT is ΣE2E/ΣN). Approximate.
            n = m["e2e_mean_ms"] / m["e2e_per_token_mean_ms"]
            m["itl_mean_ms_derived"] = (m["e2e_mean_ms"] - m["ttft_mean_ms"]) / (n - 1) if n > 1 else math.nan
            out[arm].append(ArmResult(exp.name, FAMILY.get(exp.model, exp.model), pred, m, _errors(pred, m)))
    return out


def overall(results: list[ArmResult]) -> dict[str, float]:
    """MAPE (%) over experiments of each metric."""
    keys = ("tpot", "tpot_consistent", "itl", "e2e", "ttft")
    return {f"{k}_mape": float(np.mean([abs(r.errors[k]) for r in results if k in r.errors])) for k in keys}


def _published(exp: Experiment, arm: str) -> float | None:
    run = exp.runs[0]
    pub = (run.notes or {}).get("published", {})
    val = pub.get(PUBLISHED_COLUMNS[arm])
    return float(val) if isinstance(val, (int, float)) else None


def criteria(results: dict[str, list[ArmResult]]) -> list[tuple[str, bool, str]]:
    """The seed's three accept criteria, evaluated on our TPOT (seed definition) errors."""
    bl, fx, sc = (overall(results[a])["tpot_mape"] for a in ("baseline", "fixed", "scaled"))
    worse = [
        (b.experiment, abs(s.errors["tpot"]) - abs(b.errors["tpot"]))
        for b, s in zip(results["baseline"], results["scaled"])
        if abs(s.errors["tpot"]) - abs(b.errors["tpot"]) > 5.0
    ]
    return [
        ("1. TPOT MAPE improves by >= 3 pp vs baseline", bl - sc >= 3.0, f"{bl:.1f}% -> {sc:.1f}% ({bl - sc:+.1f} pp)"),
        ("2. no experiment worsens by > 5 pp vs baseline", not worse,
         "none" if not worse else "; ".join(f"{e} +{d:.1f} pp" for e, d in worse)),
        ("3. scaled TPOT MAPE < fixed TPOT MAPE", sc < fx, f"{sc:.1f}% vs {fx:.1f}%"),
    ]


def _arms_json(results: dict[str, list[ArmResult]]) -> dict[str, Any]:
    arms = {}
    for arm, rows in results.items():
        arms[arm] = {
            "overhead": ARMS[arm],
            "overall": overall(rows),
            "experiments": [
                {"experiment": r.experiment, "family": r.family, "predicted_ms": r.predicted, "measured_ms": r.measured,
                 "signed_error_pct": r.errors, "ape_pct": {k: abs(v) for k, v in r.errors.items()}}
                for r in rows
            ],
        }
    return arms


def results_json(results: dict[str, list[ArmResult]], closed_loop: dict[str, list[ArmResult]] | None = None) -> dict[str, Any]:
    """The `results.json` document: per arm, overall MAPEs and per-experiment values (percentages, ms)."""
    doc = {
        "definitions": {
            "tpot_mape": "the seed's definition: simulated mean per-request (E2E-TTFT)/(N-1) vs measured GuideLLM time_per_output_token (E2E/N, token-weighted)",
            "tpot_consistent_mape": "simulated GuideLLM-style E2E/N (token-weighted) vs measured E2E/N",
            "itl_mape": "simulated mean (E2E-TTFT)/(N-1) vs measured (E2E_mean-TTFT_mean)/(N_mean-1), N_mean = E2E_mean/TPOT (approximate)",
            "e2e_mape": "mean E2E", "ttft_mape": "mean TTFT",
        },
        "published_overall": PUBLISHED_OVERALL,
        "load": "BLIS-style constant rate = 1 / measured mean E2E",
        "arms": _arms_json(results),
    }
    if closed_loop is not None:
        doc["arms_closed_loop"] = _arms_json(closed_loop)
    return doc


def chart(results: dict[str, list[ArmResult]], path: Path) -> None:
    """Grouped bars: per-experiment TPOT APE (seed definition) under the three arms."""
    from servesim.validation.plots import _pyplot

    plt = _pyplot("experiment h2b chart")
    names = [r.experiment for r in results["baseline"]]
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(11, 4.6))
    for i, (arm, colour) in enumerate((("baseline", "tab:gray"), ("fixed", "tab:red"), ("scaled", "tab:blue"))):
        ax.bar(x + (i - 1) * 0.27, [abs(r.errors["tpot"]) for r in results[arm]], 0.27, label=f"{arm} ({overall(results[arm])['tpot_mape']:.1f}%)", color=colour)
    ax.set_xticks(x)
    ax.set_xticklabels([n.replace("20260210-", "").replace("jan30-", "") for n in names], rotation=35, ha="right", fontsize=8)
    ax.set_ylabel("TPOT APE % (seed definition)")
    ax.set_title("H2b reproduction: per-experiment TPOT error by overhead arm (servesim roofline-v2, η = 0.82)")
    ax.legend()
    fig.tight_layout()
    from servesim.validation.plots import save_png

    save_png(fig, path, "--output-dir", dpi=110)
    plt.close(fig)


def _overall_table(results: dict[str, list[ArmResult]]) -> list[str]:
    ov = {arm: overall(rows) for arm, rows in results.items()}
    lines = ["| Metric | Baseline | Fixed | Scaled | BL→SC | FX→SC | seed BL / FX / SC |", "|---|---|---|---|---|---|---|"]
    for key, label in (("tpot_mape", "TPOT (seed definition)"), ("tpot_consistent_mape", "TPOT (E2E/N both sides)"),
                       ("itl_mape", "ITL (derived measured)"), ("e2e_mape", "E2E"), ("ttft_mape", "TTFT")):
        b, f, s = ov["baseline"][key], ov["fixed"][key], ov["scaled"][key]
        pub = PUBLISHED_OVERALL.get(key)
        pubs = " / ".join(f"{pub[a]:.1f}%" for a in ("baseline", "fixed", "scaled")) if pub else "not published"
        lines.append(f"| {label} | {b:.1f}% | {f:.1f}% | {s:.1f}% | {b - s:+.1f}pp | {f - s:+.1f}pp | {pubs} |")
    lines += [""]
    for name, ok, detail in criteria(results):
        lines.append(f"- {name}: **{'PASS' if ok else 'FAIL'}** — {detail}")
    return lines


def report_markdown(results: dict[str, list[ArmResult]], experiments: list[Experiment],
                    closed_loop: dict[str, list[ArmResult]] | None = None) -> str:
    """The report: the seed's tables with our numbers, the seed's published numbers beside them."""
    by_name = {e.name: e for e in experiments}
    lines = ["# H2b reproduction: model-scaled scheduling overhead", "",
             "Generated by `servesim experiment h2b`. Roofline `roofline-v2` (the anchor's formulas), bandwidth factor 0.82, "
             "13 experiments at the synchronous rate, reconstructed workloads (50 requests, seed 42), BLIS's engine settings "
             "(256 seqs, 2048-token budget, 1e6 KV blocks). **Load:** the main tables replay the synchronous benchmark as BLIS did, "
             "at a constant rate n/duration (≈ 1 / measured mean E2E, since the durations were not published); the last section "
             "replays it as what GuideLLM really ran, a closed loop with one request in flight.", "",
             "**TPOT definitions.** *TPOT (seed)* is what the seed's MAPE compared: the simulated mean per-request "
             "(E2E−TTFT)/(N−1) against GuideLLM's measured `time_per_output_token` (= E2E/N, which includes TTFT). "
             "*TPOT (E2E/N)* compares like with like: simulated E2E/N against measured E2E/N. *ITL* compares simulated "
             "(E2E−TTFT)/(N−1) with the measured (E2E−TTFT)/(N̄−1), N̄ = E2E/TPOT since GuideLLM's TPOT is ΣE2E/ΣN "
             "(approximate: the seed published no measured ITL). The reconstructed output-length distribution is centred so "
             "its mean equals that N̄ (stdev/min/max as assumed by the reconstruction).", "",
             "## Per-experiment TPOT error (seed definition), 3-way", "",
             "| Experiment | BL | FX | SC | BL→SC | FX→SC | seed BL | seed FX | seed SC |", "|---|---|---|---|---|---|---|---|---|"]
    for b, f, s in zip(results["baseline"], results["fixed"], results["scaled"]):
        e = by_name[b.experiment]
        pub = [_published(e, a) for a in ("baseline", "fixed", "scaled")]
        ab, af, as_ = abs(b.errors["tpot"]), abs(f.errors["tpot"]), abs(s.errors["tpot"])
        lines.append(f"| {b.experiment} | {ab:.1f}% | {af:.1f}% | {as_:.1f}% | {ab - as_:+.1f}pp | {af - as_:+.1f}pp | "
                     + " | ".join(f"{p:.1f}%" if p is not None else "–" for p in pub) + " |")
    lines += ["", "## By model family (TPOT, seed definition)", "", "| Family | N | BL | FX | SC | BL→SC | FX→SC |", "|---|---|---|---|---|---|---|"]
    fams: dict[str, list[int]] = {}
    for i, r in enumerate(results["baseline"]):
        fams.setdefault(r.family, []).append(i)
    for fam, idx in fams.items():
        v = {arm: float(np.mean([abs(results[arm][i].errors["tpot"]) for i in idx])) for arm in ARMS}
        lines.append(f"| {fam} | {len(idx)} | {v['baseline']:.1f}% | {v['fixed']:.1f}% | {v['scaled']:.1f}% | "
                     f"{v['baseline'] - v['scaled']:+.1f}pp | {v['fixed'] - v['scaled']:+.1f}pp |")
    lines += ["", "## Overall (MAPE over the 13 experiments) and the seed's accept criteria", ""] + _overall_table(results)
    lines += ["", "## Signed errors (TPOT seed definition / E2E / TTFT)", "", "| Experiment | BL | FX | SC |", "|---|---|---|---|"]
    for b, f, s in zip(results["baseline"], results["fixed"], results["scaled"]):
        cell = lambda r: f"{r.errors['tpot']:+.1f}% / {r.errors['e2e']:+.1f}% / {r.errors['ttft']:+.1f}%"  # noqa: E731
        lines.append(f"| {b.experiment} | {cell(b)} | {cell(f)} | {cell(s)} |")
    if closed_loop is not None:
        lines += ["", "## The same experiment replayed as a closed loop (concurrency 1)", "",
                  "What GuideLLM's synchronous benchmark does: the next request leaves when the previous one finishes, so a "
                  "request never shares a step with another. Under BLIS's constant rate, an arm that over-predicts E2E makes "
                  "requests overlap: decode steps become mixed steps carrying the fixed arm's 15 ms mixed overhead, which is "
                  "why the fixed arm is worse under BLIS's load than under the closed loop.", ""] + _overall_table(closed_loop)
    lines += ["", "## Why our numbers differ from the seed's", "",
              "- **Workloads are reconstructed.** The seed's profile.yaml and GuideLLM JSON for these 13 runs were never published; "
              "means come from the report family, stdev/min/max are BLIS golden-dataset assumptions (`seed13_workload_reconstruction.yaml`). "
              "Measured E2E / TPOT gives each run's mean output length (e.g. 41 tokens for the 7B TP1 codesweep, not 28); the "
              "output distribution is centred on it. Input-length spreads remain assumptions.",
              "- **The constant rate is approximated** as 1 / measured mean E2E (BLIS used n/duration of the GuideLLM benchmark, "
              "which includes the client's small gaps between requests); the closed-loop section shows the load-independent view.",
              "- **No phantom ITL.** BLIS @389235eb appended one extra step to every request's E2E (anchor §1.2; +3.7 % TPOT at N = 28); servesim "
              "counts N−1 inter-token gaps.",
              "- **Prefill FLOPs.** BLIS's published TTFT predictions (e.g. 8.8 ms for a 2048-token Llama-2-7B prefill) are below the "
              "2·params·tokens / peak compute floor (~27 ms); HG1 mentions a later prefill-FLOPs bug fix. servesim follows the formulas "
              "of anchor §2 as written, so its TTFTs are larger than BLIS's.",
              "- **TPOT compares different quantities** (anchor §3.2): the seed's MAPE set simulated (E2E−TTFT)/(N−1) against measured E2E/N. "
              "We report that (for comparability) and the consistent E2E/N comparison.",
              "- **Kernel-table defects are kept on purpose** in `roofline-v2` (anchor §2.7: FP8-rate GEMM MFU, causal divisor 1.8); "
              "`roofline-v2-corrected` and the calibrated model fix them (docs/LATENCY.md, docs/ACCURACY.md).", ""]
    return "\n".join(lines)
