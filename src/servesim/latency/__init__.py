"""Step-time models: the seed's roofline (v2), its corrected variant, and overhead variants."""

from servesim.latency.overhead import OVERHEAD_KINDS, Overhead, make_overhead
from servesim.latency.plan import Component, LatencyModel, StepPlan, StepTime
from servesim.latency.roofline import LATENCY_MODELS, RooflineCorrected, RooflineV2, make_latency_model

__all__ = [
    "LATENCY_MODELS",
    "OVERHEAD_KINDS",
    "Component",
    "LatencyModel",
    "Overhead",
    "RooflineCorrected",
    "RooflineV2",
    "StepPlan",
    "StepTime",
    "make_latency_model",
    "make_overhead",
]
