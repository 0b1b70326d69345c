"""Fixed-memory streaming summaries for long runs: exact means, percentiles from log-bucketed histograms.

Percentile method (DDSketch-style, Masson et al., VLDB 2019): a positive value x falls in bucket
i = ceil(log_γ x) with γ = (1+α)/(1−α), and the bucket is represented by 2γ^i/(γ+1), which is within
relative error α of every value in (γ^(i−1), γ^i]. Percentiles use numpy's "linear" rule on the
order statistics' representatives, so each reported percentile is within relative error α of the
exact one (α = 0.5 % by default) for values in [min_value, max_value] = [1e-9 s, 1e7 s]; values below
min_value count as 0 (absolute error < 1e-9 s), values above max_value land in the top bucket.
Representatives are clamped to the observed min/max, which are kept exactly. Memory: about
ln(max/min)/ln γ ≈ 3,700 int64 counters per metric, whatever the number of records.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from servesim.metrics.definitions import e2e_s, is_completed, itl_gaps_s, queue_s, tpot_s, ttft_s
from servesim.metrics.summary import PERCENTILES, Distribution

if TYPE_CHECKING:
    from servesim.engine.request import RequestRecord

__all__ = ["LogHistogram", "StreamingSummary"]

FLUSH_AT = 65_536  # values held before folding them into the histograms (bounds the buffer memory)
_ONE = np.ones(1, dtype=np.int64)


class LogHistogram:
    """Counts of non-negative values in geometric buckets; mean exact, percentiles within rel_error."""

    def __init__(self, rel_error: float = 0.005, min_value: float = 1e-9, max_value: float = 1e7) -> None:
        if not 0 < rel_error < 1 or not 0 < min_value < max_value:
            raise ValueError("need 0 < rel_error < 1 and 0 < min_value < max_value")
        self.rel_error = rel_error
        self._log_gamma = math.log((1 + rel_error) / (1 - rel_error))
        self._gamma = math.exp(self._log_gamma)
        self._min_value = min_value
        self._offset = math.ceil(math.log(min_value) / self._log_gamma)
        top = math.ceil(math.log(max_value) / self._log_gamma)
        self._counts = np.zeros(top - self._offset + 1, dtype=np.int64)
        self._zeros = 0  # values below min_value, reported as 0
        self.count = 0
        self._sum = 0.0
        self._lo = math.inf
        self._hi = -math.inf

    def add(self, values: np.ndarray | Sequence[float] | float, counts: np.ndarray | Sequence[int] | int = 1) -> None:
        """Add values (s), each counts times (an int or one count per value)."""
        v = np.atleast_1d(np.asarray(values, dtype=np.float64))
        c = np.broadcast_to(np.asarray(counts, dtype=np.int64), v.shape)
        keep = c > 0
        v, c = v[keep], c[keep]
        if v.size == 0:
            return
        if np.any(v < 0) or not np.all(np.isfinite(v)):
            raise ValueError("LogHistogram takes finite values >= 0")
        small = v < self._min_value
        self._zeros += int(c[small].sum())
        idx = np.ceil(np.log(v[~small]) / self._log_gamma).astype(np.int64) - self._offset
        np.add.at(self._counts, np.clip(idx, 0, len(self._counts) - 1), c[~small])
        self.count += int(c.sum())
        self._sum += float(np.sum(v * c))  # not np.dot: its BLAS sum order depends on the thread count (metrics/summary.py)
        self._lo = min(self._lo, float(v.min()))
        self._hi = max(self._hi, float(v.max()))

    def _value_at(self, cum: np.ndarray, k: int) -> float:
        """Representative of the k-th smallest value (0-based), clamped to the observed range."""
        if k < self._zeros:
            return max(0.0, self._lo)
        i = int(np.searchsorted(cum, k - self._zeros, side="right"))
        rep = 2 * self._gamma ** (i + self._offset) / (self._gamma + 1)
        return min(max(rep, self._lo), self._hi)

    def percentiles(self, qs: Sequence[float]) -> list[float]:
        """numpy-"linear" percentiles (within rel_error of exact); empty raises ValueError."""
        if self.count == 0:
            raise ValueError("no values")
        cum = np.cumsum(self._counts)
        out = []
        for q in qs:
            rank = q / 100.0 * (self.count - 1)
            lo = int(math.floor(rank))
            a = self._value_at(cum, lo)
            b = self._value_at(cum, min(lo + 1, self.count - 1))
            out.append(a + (rank - lo) * (b - a))
        return out

    def distribution(self) -> Distribution:
        """count, exact mean and approximate p50/p90/p95/p99 (None when empty)."""
        if self.count == 0:
            return Distribution(0, None, None, None, None, None)
        return Distribution(self.count, self._sum / self.count, *self.percentiles(PERCENTILES))


class StreamingSummary:
    """Accepts RequestRecords one at a time and produces the same dict as `summary.summarize`."""

    _METRICS = {"ttft": ttft_s, "tpot": tpot_s, "e2e": e2e_s, "queue": queue_s}

    def __init__(self, rel_error: float = 0.005) -> None:
        self._hists = {name: LogHistogram(rel_error) for name in ("ttft", "itl", "tpot", "e2e", "queue")}
        self.completed = 0
        self.rejected = 0
        self.preemptions = 0
        self._input_tokens = 0
        self._output_tokens = 0
        self._first_arrival_s = math.inf
        self._last_finish_s = -math.inf
        # Small bounded buffers, folded into the histograms FLUSH_AT values at a time (vectorised).
        self._pending: dict[str, tuple[list[np.ndarray], list[np.ndarray]]] = {n: ([], []) for n in self._hists}
        self._pending_n = 0

    def add(self, record: RequestRecord) -> None:
        """Fold one record in (finished, rejected or still unfinished)."""
        self.preemptions += record.preemptions
        self.rejected += int(record.rejected)
        self._first_arrival_s = min(self._first_arrival_s, record.arrival_s)
        if record.finish_s is not None:
            self._last_finish_s = max(self._last_finish_s, record.finish_s)
        if not is_completed(record):
            return
        self.completed += 1
        self._input_tokens += record.input_tokens
        self._output_tokens += record.output_tokens
        for name, fn in self._METRICS.items():
            x = fn(record)
            if x is not None:
                self._queue(name, np.array([x]), _ONE)
        gaps = itl_gaps_s(record)
        if gaps is not None:
            self._queue("itl", *gaps)
        if self._pending_n >= FLUSH_AT:
            self._flush()

    def add_batch(self, records: Sequence[RequestRecord]) -> None:
        """Fold in many records at once; equals add() on each (up to float summation order of the means).

        The per-request metrics are the vectorised form of metrics/definitions.py (same operations,
        elementwise, so the same float values); tests/metrics check the two against each other.
        """
        arr: list[float] = []
        fs: list[float | None] = []
        ft: list[float] = []
        fin: list[float] = []
        n_out: list[int] = []
        itl_arrays: list[tuple[np.ndarray, np.ndarray]] = []
        no_times: list[bool] = []
        for record in records:
            self.preemptions += record.preemptions
            self.rejected += int(record.rejected)
            if record.arrival_s < self._first_arrival_s:
                self._first_arrival_s = record.arrival_s
            if record.finish_s is not None and record.finish_s > self._last_finish_s:
                self._last_finish_s = record.finish_s
            if record.rejected or record.finish_s is None or record.first_token_s is None:
                if is_completed(record):  # completed without a first token: only e2e exists
                    self.add(record)
                continue
            self.completed += 1
            self._input_tokens += record.input_tokens
            self._output_tokens += record.output_tokens
            arr.append(record.arrival_s)
            fs.append(record.first_scheduled_s)
            ft.append(record.first_token_s)
            fin.append(record.finish_s)
            n_out.append(record.output_tokens)
            times = record.token_times_s
            if times is not None and len(times) >= 2:
                itl_arrays.append(itl_gaps_s(record))  # type: ignore[arg-type]
                no_times.append(False)
            else:
                no_times.append(True)
        if not arr:
            return
        a = np.asarray(arr)
        ttft = np.asarray(ft) - a
        e2e = np.asarray(fin) - a
        n = np.asarray(n_out, dtype=np.int64)
        multi = n >= 2
        tpot = (e2e[multi] - ttft[multi]) / (n[multi] - 1)
        sched = [x for x in fs if x is not None]
        if len(sched) == len(fs):
            queue = np.asarray(sched) - a
        else:
            queue = np.asarray([x - y for x, y in zip(fs, arr) if x is not None], dtype=np.float64)
        for name, v in (("ttft", ttft), ("e2e", e2e), ("tpot", tpot), ("queue", queue)):
            if v.size:
                self._queue(name, v, np.ones(v.size, dtype=np.int64))
        # Pooled ITL: exact gaps where token times exist, else N - 1 gaps equal to TPOT (itl_gaps_s's fallback).
        fallback = multi & np.asarray(no_times)
        if fallback.any():
            self._queue("itl", (e2e[fallback] - ttft[fallback]) / (n[fallback] - 1), n[fallback] - 1)
        for gaps in itl_arrays:
            self._queue("itl", *gaps)
        if self._pending_n >= FLUSH_AT:
            self._flush()

    def _queue(self, name: str, values: np.ndarray, counts: np.ndarray) -> None:
        """Hold values (with counts) for the next flush."""
        vals, cnts = self._pending[name]
        vals.append(values)
        cnts.append(counts)
        self._pending_n += len(values)

    def _flush(self) -> None:
        """Fold every held value into its histogram."""
        for name, (vals, cnts) in self._pending.items():
            if vals:
                self._hists[name].add(np.concatenate(vals), np.concatenate(cnts))
                vals.clear()
                cnts.clear()
        self._pending_n = 0

    def add_many(self, records: Iterable[RequestRecord]) -> None:
        """Fold in every record of an iterable."""
        for r in records:
            self.add(r)

    def summary(self, *, duration_s: float | None = None) -> dict[str, Any]:
        """Same keys and units as summarize(); duration_s defaults to last finish − first arrival."""
        self._flush()
        if duration_s is None:
            span = self._last_finish_s - self._first_arrival_s
            duration_s = max(0.0, span) if math.isfinite(span) else 0.0

        def rate(x: float) -> float:
            return x / duration_s if duration_s > 0 else 0.0

        h = self._hists
        return {
            "ttft_ms": h["ttft"].distribution().as_dict(1e3),
            "itl_ms": h["itl"].distribution().as_dict(1e3),
            "tpot_ms": h["tpot"].distribution().as_dict(1e3),
            "e2e_ms": h["e2e"].distribution().as_dict(1e3),
            "queue_ms": h["queue"].distribution().as_dict(1e3),
            "completed": self.completed,
            "rejected": self.rejected,
            "duration_s": float(duration_s),
            "requests_per_s": rate(self.completed),
            "output_tokens_per_s": rate(self._output_tokens),
            "total_tokens_per_s": rate(self._input_tokens + self._output_tokens),
            "preemptions": self.preemptions,
        }
