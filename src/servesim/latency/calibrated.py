"""The calibrated step-time model: physical features of a step, weighted by fitted coefficients.

step_time(plan) = Σ_k θ_k · φ_k(plan), with every feature a roofline quantity or a CPU-work count:

| feature | unit | what it measures | θ means |
|---|---|---|---|
| gemm_memory_s | s | weight bytes of the GEMMs that are memory-bound, / (TP · HBM peak) | 1 / sustained-bandwidth fraction |
| gemm_compute_s | s | FLOPs of the compute-bound GEMMs / (TP · peak · table efficiency) | compute-time multiplier |
| attention_prefill_s | s | max(causal FLOPs / (peak · flash-attn efficiency), KV bytes / HBM peak), / TP | multiplier |
| attention_decode_s | s | KV-cache bytes read by decoding requests / (TP · HBM peak) | 1 / bandwidth fraction |
| activations_s | s | element-wise traffic (norms, residuals, RoPE, SiLU·mul) of the step's tokens / HBM peak | multiplier |
| allreduce_bytes_s | s | 2 all-reduces per layer: 2(t−1)/t · bytes / NVLink bandwidth | multiplier |
| allreduce_ops | count | 2 · layers when TP > 1 | seconds per all-reduce (latency) |
| layers | count | num_hidden_layers (or layers / TP, the seed's form) | GPU seconds per layer per step (small kernels, launch gaps) |
| step | 1 | every step | seconds of fixed CPU work per step |
| requests | count | requests in the step | CPU seconds per request (input prep, sampling, output processing) |
| prefill_step | 0/1 | the step holds a prefill chunk (no full CUDA graph) | extra CPU seconds for such a step |

Under vLLM's async scheduling the CPU work of step k+1 overlaps the GPU work of step k, so a step lasts
max(GPU part, CPU part) instead of their sum (GPU part: the first eight features; CPU part: the last three).
Each GEMM sits on the side of the roofline its fitted cost puts it on: it counts in gemm_compute_s
when θ_compute · compute ≥ θ_memory · bytes / bandwidth, else in gemm_memory_s, so it costs
max(θ_memory · memory, θ_compute · compute) — continuous and monotone in M (StepFeatures.compute_bound_at
holds θ_compute / θ_memory; 0.82, the seed's bandwidth factor, when no calibration sets it). A step of at
most 512 tokens pads its token count to the next CUDA-graph capture size, as vLLM V1's model runner does
for every batch it runs under (piecewise or full) CUDA graphs, so its GEMMs see the padded M. With every
θ ≥ 0 the step time is then monotone: more tokens, requests or context never make a step shorter.
The coefficients come from `servesim calibrate` (fitted on real runs, cross-validated) and are carried
by a `Calibration` (servesim/calibration.py).
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

from servesim.config.hardware import Hardware
from servesim.config.model import ModelSpec
from servesim.latency import attention as attn
from servesim.latency.plan import Component, StepPlan, StepTime
from servesim.latency.roofline import RooflineCorrected

FEATURES = (
    "gemm_memory_s",
    "gemm_compute_s",
    "attention_prefill_s",
    "attention_decode_s",
    "activations_s",
    "allreduce_bytes_s",
    "allreduce_ops",
    "layers",
    "step",
    "requests",
    "prefill_step",
)
# Which roofline side each term stands for (explain()'s `bound`); count terms are "fixed" or "communication".
FEATURE_BOUND = {"gemm_memory_s": "memory", "gemm_compute_s": "compute", "attention_prefill_s": "compute",
                 "attention_decode_s": "memory", "activations_s": "memory", "allreduce_bytes_s": "communication",
                 "allreduce_ops": "communication"}
GPU_FEATURES = 8  # FEATURES[:8] run on the GPU, FEATURES[8:] are CPU work (hidden under async scheduling)
# Element-wise activation traffic per token per layer, in hidden-size units: 2 RMSNorms and 2 residual adds
# (read + write each, replicated under TP) and RoPE, plus SiLU·mul over the sharded MLP width (3 × ff / TP).
ACTIVATION_PASSES = 6
REFERENCE_BW_EFFICIENCY = 0.82  # which side of the roofline a GEMM is on, when no calibration decides it
# vLLM V1's default CUDA-graph capture sizes (a batch of at most 512 tokens is padded up to the next one).
CUDA_GRAPH_SIZES = (1, 2, 4) + tuple(range(8, 256 + 1, 8)) + tuple(range(272, 512 + 1, 16))


def padded_batch(n: int) -> int:
    """The CUDA-graph size a step of n scheduled tokens runs at (n itself above 512, where vLLM runs eager)."""
    i = bisect.bisect_left(CUDA_GRAPH_SIZES, n)
    return CUDA_GRAPH_SIZES[i] if i < len(CUDA_GRAPH_SIZES) else n


_PADDED = tuple(padded_batch(n) for n in range(CUDA_GRAPH_SIZES[-1] + 1))  # padded_batch, tabulated


@dataclass
class StepFeatures:
    """Computes φ(plan) for one model on one GPU at one TP degree."""

    model: ModelSpec
    hardware: Hardware
    tp: int = 1
    layers_over_tp: bool = False  # the `layers` feature as L / TP (the seed's form) instead of L
    pad_cuda_graphs: bool = True
    # A GEMM is compute-bound when compute ≥ bytes / (HBM peak · this): θ_compute / θ_memory of a calibration.
    compute_bound_at: float = REFERENCE_BW_EFFICIENCY
    # θ of attention_decode_s (1 / sustained bandwidth fraction): puts MLA decode's compute side in seconds.
    decode_theta: float = 1.0 / REFERENCE_BW_EFFICIENCY
    expert_parallel: int = 1  # EP size (1 = experts TP-sharded); see latency/parallel.py
    data_parallel: int = 1
    _gemm_cache: dict[int, tuple[float, float]] = field(default_factory=dict, repr=False)
    _prefill_eff: dict[int, float] = field(default_factory=dict, repr=False)  # sequence length -> efficiency
    _layer_gemms: dict[int, tuple[float, float]] = field(default_factory=dict, repr=False)  # m_tokens -> (mem, comp)
    _lm_head: dict[int, tuple[bool, float]] = field(default_factory=dict, repr=False)  # seqs -> (compute-bound, s)

    def __post_init__(self) -> None:
        self.model.check_tp(self.tp)
        m = self.model
        # Reuse the corrected roofline's GEMM inventory (sharded shapes, MoE, LM head) and constants.
        self._rc = RooflineCorrected(m, self.hardware, self.tp, bw_efficiency=1.0, expert_parallel=self.expert_parallel,
                                     data_parallel=self.data_parallel)
        self._variant = attn.is_variant(m)
        self.tables = self._rc.tables  # the H100 tables as this GPU reads them (transfer.py)
        self.peak = self.hardware.peak_flops(m.gemm_compute_bytes)  # 16-bit math for weight-only formats
        self.attn_peak = self.hardware.bf16_flops
        self.bw = self.hardware.hbm_bytes_per_s
        self.kv_token = m.kv_bytes_per_token_per_gpu(self.tp)
        self.layers = m.num_layers / self.tp if self.layers_over_tp else float(m.num_layers)
        link = max(self.hardware.nvlink_gb_s or self.hardware.pcie_gb_s, 1e-9) * 1e9
        self._ar_bytes_per_token = 2 * m.num_layers * 2.0 * (self.tp - 1) / self.tp * m.hidden_size * 2.0  # ring all-reduce bytes
        self._ar_per_token = self._ar_bytes_per_token / link  # same operations in the same order as before: same bits
        self._ar_ops = 2.0 * m.num_layers if self.tp > 1 else 0.0
        self._heads = m.num_heads / self.tp
        ff = m.dense_intermediate_size or m.intermediate_size
        self._act_per_token = m.num_layers * (ACTIVATION_PASSES * m.hidden_size + 3 * ff / self.tp) * 2.0 / self.bw
        self._lm = (m.hidden_size, max(1, m.vocab_size // self.tp))

    def gemm(self, m_tokens: int, seqs: int) -> tuple[float, float]:
        """(memory-bound seconds, compute-bound seconds) of every GEMM incl. the LM head, per GPU."""
        key = m_tokens * 4096 + seqs
        hit = self._gemm_cache.get(key)
        if hit is not None:
            return hit
        # The layer GEMMs depend on m_tokens only and the LM head (added last) on seqs only: each part is
        # memoised on its own, so a new (m_tokens, seqs) pair costs one addition (same sums, same order).
        layers = self._layer_gemms.get(m_tokens)
        if layers is None:
            mem = comp = 0.0
            for count, gemms in self._rc.layer_sets:
                for g in gemms:
                    _, flops, wbytes, compute = self._rc._gemm(g, m_tokens)
                    if compute >= wbytes / (self.bw * self.compute_bound_at):
                        comp += count * compute
                    else:
                        mem += count * wbytes / self.bw
            layers = self._layer_gemms[m_tokens] = (mem, comp)
        mem, comp = layers
        lm = self._lm_head.get(seqs)
        if lm is None:
            b = self.model.lm_head_bytes
            k, n = self._lm
            eff = self.tables.gemm.efficiency(seqs, k, n, exact=True)
            lc, lb = 2.0 * seqs * k * n / (self.peak * eff), k * n * b
            lm = self._lm_head[seqs] = (True, lc) if lc >= lb / (self.bw * self.compute_bound_at) else (False, lb / self.bw)
        if lm[0]:
            comp += lm[1]
        else:
            mem += lm[1]
        out = (mem, comp)
        if len(self._gemm_cache) < 200_000:
            self._gemm_cache[key] = out
        return out

    def _variant_phi(self, plan: StepPlan, tokens: int, seqs: int, g_mem: float, g_comp: float) -> list[float]:
        """φ(plan) for MLA or sliding-window attention (latency/attention.py formulas; no memo fast path)."""
        m, tp, bw = self.model, self.tp, self.bw
        pre = 0.0
        for n, p in zip(plan.prefill_new, plan.prefill_ctx):
            f, kvb = attn.prefill_attention(m, tp, n, p)
            eff = self.tables.prefill.efficiency(p + n, m.num_heads, m.num_kv_heads, m.head_dim, exact=True)
            pre += max(f / (self.attn_peak * eff), kvb / bw)
        dec = 0.0
        if plan.decode_ctx:
            df = db = 0.0
            for c in plan.decode_ctx:
                f, b = attn.decode_attention(m, tp, c)
                df, db = df + f, db + b
            dec = db / bw
            if m.is_mla:
                # MLA decode can be compute-bound (weight absorption): θ_decode · φ = max(θ_decode · bytes / BW, compute s),
                # the compute side unfitted physics at FlashMLA's achieved efficiency (latency/attention.py).
                dec = max(dec, attn.mla_decode_compute_s(df, self.attn_peak) / self.decode_theta)
        return [g_mem, g_comp, pre, dec, self._act_per_token * tokens, self._ar_per_token * tokens, self._ar_ops,
                self.layers, 1.0, float(seqs), 1.0 if plan.prefill_new else 0.0]

    def physics(self, plan: StepPlan) -> list[tuple[float, float]]:
        """(FLOPs, bytes) behind each feature of φ(plan), in FEATURES order, per GPU (for explain(); not timed)."""
        out = [(0.0, 0.0)] * len(FEATURES)
        new, ctx = plan.prefill_new, plan.decode_ctx
        seqs = len(new) + len(ctx)
        if seqs == 0:
            return out
        m, tp = self.model, self.tp
        tokens = sum(new) + len(ctx)
        # The GEMMs run at the CUDA-graph size the step is padded to, as in __call__.
        m_gemm = (_PADDED[tokens] if tokens < len(_PADDED) else tokens) if self.pad_cuda_graphs else tokens
        sides = [[0.0, 0.0], [0.0, 0.0]]  # [memory-bound, compute-bound] × [FLOPs, weight bytes]
        for count, gemms in self._rc.layer_sets:
            for g in gemms:
                _, flops, wbytes, compute = self._rc._gemm(g, m_gemm)
                side = sides[1 if compute >= wbytes / (self.bw * self.compute_bound_at) else 0]
                side[0] += count * flops
                side[1] += count * wbytes
        k, n = self._lm
        eff = self.tables.gemm.efficiency(seqs, k, n, exact=True)
        lf, lb = 2.0 * seqs * k * n, k * n * self.model.lm_head_bytes
        side = sides[1 if lf / (self.peak * eff) >= lb / (self.bw * self.compute_bound_at) else 0]
        side[0] += lf
        side[1] += lb
        pre = [attn.prefill_attention(m, tp, c, p) for c, p in zip(new, plan.prefill_ctx)]
        dec = [attn.decode_attention(m, tp, c) for c in ctx]
        out = list(out)
        out[0], out[1] = (sides[0][0], sides[0][1]), (sides[1][0], sides[1][1])
        out[2] = (sum(f for f, _ in pre), sum(b for _, b in pre))
        out[3] = (sum(f for f, _ in dec), sum(b for _, b in dec))
        out[4] = (0.0, self._act_per_token * tokens * self.bw)
        out[5] = (0.0, self._ar_bytes_per_token * tokens)
        return out

    def __call__(self, plan: StepPlan) -> list[float]:
        """φ(plan) in FEATURES order."""
        # Called once per engine step: memo lookups and precomputed constants, same arithmetic (bit-identical).
        new, ctx = plan.prefill_new, plan.decode_ctx
        d = len(ctx)
        seqs = len(new) + d
        if seqs == 0:
            return [0.0] * len(FEATURES)
        tokens = sum(new) + d
        if self.pad_cuda_graphs:
            m_gemm = _PADDED[tokens] if tokens < len(_PADDED) else tokens
        else:
            m_gemm = tokens
        hit = self._gemm_cache.get(m_gemm * 4096 + seqs)
        g_mem, g_comp = hit if hit is not None else self.gemm(m_gemm, seqs)
        if self._variant:
            return self._variant_phi(plan, tokens, seqs, g_mem, g_comp)
        pre = 0.0
        if new:
            m = self.model
            c0, layers, ap, kv, bw = 4.0 * self._heads * m.head_dim, m.num_layers, self.attn_peak, self.kv_token, self.bw
            effs = self._prefill_eff
            for n, p in zip(new, plan.prefill_ctx):
                f = c0 * (n * p + n * (n + 1) / 2.0) * layers
                eff = effs.get(p + n)
                if eff is None:
                    eff = effs[p + n] = self.tables.prefill.efficiency(p + n, m.num_heads, m.num_kv_heads, m.head_dim, exact=True)
                pre += max(f / (ap * eff), kv * (p + n) / bw)
        dec = self.kv_token * (sum(ctx) + d) / self.bw if d else 0.0
        return [g_mem, g_comp, pre, dec, self._act_per_token * tokens, self._ar_per_token * tokens, self._ar_ops,
                self.layers, 1.0, float(seqs), 1.0 if new else 0.0]


@dataclass
class CalibratedModel:
    """Step time = θ · φ(plan): the calibrated physics model (see the module docstring)."""

    features: StepFeatures
    theta: tuple[float, ...]
    name: str = "calibrated"
    extra_overhead: object = None  # an Overhead to add on top (normally none)
    overlap_cpu: bool = False  # vLLM async scheduling: CPU work of the next step hides behind this step's GPU work

    def __post_init__(self) -> None:
        if len(self.theta) != len(FEATURES):
            raise ValueError(f"calibration has {len(self.theta)} coefficients, the model needs {len(FEATURES)}")

    def effective(self, plan: StepPlan) -> list[float]:
        """φ with the hidden part zeroed: under CPU/GPU overlap only the longer of the two parts counts."""
        phi = self.features(plan)
        if not self.overlap_cpu:
            return phi
        th = self.theta
        gpu = sum(th[i] * phi[i] for i in range(GPU_FEATURES))
        cpu = sum(th[i] * phi[i] for i in range(GPU_FEATURES, len(phi)))
        if gpu >= cpu:
            return phi[:GPU_FEATURES] + [0.0] * (len(phi) - GPU_FEATURES)
        return [0.0] * GPU_FEATURES + phi[GPU_FEATURES:]

    def step_time(self, plan: StepPlan) -> float:
        """Seconds for this step: θ·φ, or max(GPU part, CPU part) under async scheduling."""
        phi = self.features(plan)
        th = self.theta
        if self.overlap_cpu:
            # Same additions in the same order as θ·effective(plan) (the hidden part adds exact zeros).
            gpu = 0.0
            for i in range(GPU_FEATURES):
                gpu += th[i] * phi[i]
            cpu = 0.0
            for i in range(GPU_FEATURES, len(phi)):
                cpu += th[i] * phi[i]
            t = gpu if gpu >= cpu else cpu
        else:
            t = 0.0
            for a, b in zip(th, phi):
                t += a * b
        if self.extra_overhead is not None:
            t += self.extra_overhead.for_step(bool(plan.prefill_new), bool(plan.decode_ctx))  # type: ignore[attr-defined]
        return t

    def explain(self, plan: StepPlan) -> StepTime:
        """Per-feature contributions θ_k·φ_k (seconds; the hidden part is 0 under overlap) and the total."""
        phi = self.effective(plan)
        work = self.features.physics(plan)  # FLOPs and bytes behind each term (also where overlap hides its time)
        comps = []
        for name, a, b, (flops, nbytes) in zip(FEATURES, self.theta, phi, work):
            unit_s = name.endswith("_s")
            bound = FEATURE_BOUND.get(name, "fixed")
            comps.append(Component(name, compute_s=b if bound == "compute" else 0.0, memory_s=b if bound == "memory" else 0.0,
                                   time_s=a * b, bound=bound, flops=flops, bytes=nbytes) if unit_s else
                         Component(name, time_s=a * b, bound=bound))
        total = sum(c.time_s for c in comps)
        if self.extra_overhead is not None:
            ovh = self.extra_overhead.for_step(bool(plan.prefill_new), bool(plan.decode_ctx))  # type: ignore[attr-defined]
            comps.append(Component("overhead", time_s=ovh, bound="fixed"))
            total += ovh
        notes: dict[str, float | str] = {"step": "mixed" if plan.prefill_new and plan.decode_ctx else ("prefill" if plan.prefill_new else "decode")}
        notes.update({f"phi.{n}": v for n, v in zip(FEATURES, phi)})
        return StepTime(total, tuple(comps), notes)
