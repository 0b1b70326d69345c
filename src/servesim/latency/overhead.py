"""CPU-side scheduling overhead per engine step: none, InferSim's fixed constants, or the seed's per-layer form.

Variant strings (`--overhead`):
- `none`; `fixed` (5 / 30 / 15 ms per decode / prefill / mixed step, InferSim via the seed's H2 arm);
- `per-layer` — the seed's H2b: c × L / TP µs with c = 100 (decode), 500 (prefill), 250 (mixed);
- `per-layer:C` — the same form with decode constant C µs (prefill 5×C, mixed 2.5×C, the seed's ratios);
  the report's suggested sweep is C = 50…150 in steps of 10;
- `per-layer-no-tp:C` — C × L µs (not divided by TP; BLIS trained-physics' form of the per-layer term);
- `sqrt-layer:C` and `log-layer:C` — C × sqrt(L / TP) and C × log2(1 + L / TP) µs, the non-linear forms the
  report proposed, with the same 1 : 5 : 2.5 decode : prefill : mixed ratios.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from servesim.errors import ConfigError

OVERHEAD_KINDS = ("none", "fixed", "per-layer", "per-layer:C", "per-layer-no-tp:C", "sqrt-layer:C", "log-layer:C")

# InferSim's constants as used in the seed's H2 arm (µs per decode / prefill / mixed step).
FIXED_US = (5000.0, 30000.0, 15000.0)
# The seed's H2b constants (µs per layer per step, divided by TP): decode / prefill / mixed.
PER_LAYER_US = (100.0, 500.0, 250.0)
RATIOS = (1.0, 5.0, 2.5)  # decode : prefill : mixed, as in the seed's constants

# Scale of each layer-based form as a function of (layers, tp).
FORMS = {
    "per-layer": lambda layers, tp: layers / tp,
    "per-layer-no-tp": lambda layers, tp: float(layers),
    "sqrt-layer": lambda layers, tp: math.sqrt(layers / tp),
    "log-layer": lambda layers, tp: math.log2(1.0 + layers / tp),
}


@dataclass(frozen=True, slots=True)
class Overhead:
    """Seconds added to a decode-only, prefill-only and mixed step."""

    kind: str
    decode_s: float = 0.0
    prefill_s: float = 0.0
    mixed_s: float = 0.0

    def for_step(self, has_prefill: bool, has_decode: bool) -> float:
        """Overhead in seconds for a step with this content (0 for an empty step)."""
        if has_prefill and has_decode:
            return self.mixed_s
        if has_prefill:
            return self.prefill_s
        return self.decode_s if has_decode else 0.0


def make_overhead(
    kind: str,
    *,
    num_layers: int,
    tp: int,
    fixed_us: tuple[float, float, float] = FIXED_US,
    per_layer_us: tuple[float, float, float] = PER_LAYER_US,
) -> Overhead:
    """Build an overhead variant from its string (see the module docstring); constants in µs."""
    if kind in ("none", "auto", "calibrated"):
        return Overhead("none")
    if kind == "fixed":
        d, p, m = fixed_us
        return Overhead("fixed", d * 1e-6, p * 1e-6, m * 1e-6)
    if kind == "per-layer":
        scale = num_layers / tp * 1e-6  # seed H2b: dominant CPU work is O(layers), shared across TP ranks
        d, p, m = per_layer_us
        return Overhead("per-layer", d * scale, p * scale, m * scale)
    form, _, const = kind.partition(":")
    if form in FORMS and const:
        try:
            c = float(const)
        except ValueError:
            c = math.nan
        if not (math.isfinite(c) and c >= 0):
            raise ConfigError(f"--overhead {kind}: the constant {const!r} must be a number >= 0 (µs)")
        scale = FORMS[form](num_layers, tp) * c * 1e-6
        return Overhead(kind, *(r * scale for r in RATIOS))
    raise ConfigError(f"--overhead {kind}: unknown variant (allowed: {', '.join(OVERHEAD_KINDS)})")
