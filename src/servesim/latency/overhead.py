"""CPU-side scheduling overhead per engine step: none, InferSim's fixed constants, or the seed's per-layer form."""

from __future__ import annotations

from dataclasses import dataclass

from servesim.errors import ConfigError

OVERHEAD_KINDS = ("none", "fixed", "per-layer")

# InferSim's constants as used in the seed's H2 arm (µs per decode / prefill / mixed step).
FIXED_US = (5000.0, 30000.0, 15000.0)
# The seed's H2b constants (µs per layer per step, divided by TP): decode / prefill / mixed.
PER_LAYER_US = (100.0, 500.0, 250.0)


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
    """Build an overhead variant; `per-layer` is the seed's constant × num_hidden_layers / tp (µs)."""
    if kind == "none":
        return Overhead("none")
    if kind == "fixed":
        d, p, m = fixed_us
        return Overhead("fixed", d * 1e-6, p * 1e-6, m * 1e-6)
    if kind == "per-layer":
        scale = num_layers / tp * 1e-6  # seed H2b: dominant CPU work is O(layers), shared across TP ranks
        d, p, m = per_layer_us
        return Overhead("per-layer", d * scale, p * scale, m * scale)
    raise ConfigError(f"--overhead {kind}: unknown variant (allowed: {', '.join(OVERHEAD_KINDS)})")
