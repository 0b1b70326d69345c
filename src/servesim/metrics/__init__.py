"""Metrics: per-request definitions (TTFT, TPOT, ITL, E2E, queue), exact and streaming summaries."""

from servesim.metrics.definitions import (
    PER_REQUEST_METRICS,
    e2e_per_token_s,
    e2e_s,
    is_completed,
    itl_gaps_s,
    queue_s,
    tpot_s,
    ttft_s,
)
from servesim.metrics.streaming import LogHistogram, StreamingSummary
from servesim.metrics.summary import (
    PERCENTILES,
    SUMMARY_KEYS,
    Distribution,
    metric_distribution,
    per_request,
    summarize,
    summarize_by_stage,
    weighted_percentiles,
)

__all__ = [
    "PERCENTILES",
    "PER_REQUEST_METRICS",
    "SUMMARY_KEYS",
    "Distribution",
    "LogHistogram",
    "StreamingSummary",
    "e2e_per_token_s",
    "e2e_s",
    "is_completed",
    "itl_gaps_s",
    "metric_distribution",
    "per_request",
    "queue_s",
    "summarize",
    "summarize_by_stage",
    "tpot_s",
    "ttft_s",
    "weighted_percentiles",
]
