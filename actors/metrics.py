"""Monitoring figures each actor keeps: counters and latency histograms, and their Prometheus text.

Every ShellActor has a `metrics` (counters and histograms with fixed buckets, so merging the
figures of many actors is adding them) and reports them in its ActorStatusSnapshot. `status` and
the Prometheus endpoint ask every actor and add up what they answer.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable
from typing import Final

from messages import ActorStatusSnapshot, HistogramData

# Bucket upper bounds in microseconds: 0.1 ms .. 5 s, then +Inf.
BOUNDS_US: Final = (100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
                    1_000_000, 2_500_000, 5_000_000)


class Metrics:
    """One actor's counters and histograms (actor-local, mutable; never sent as such)."""

    __slots__ = ("counters", "histograms")

    def __init__(self) -> None:
        self.counters: dict[str, int] = {}
        self.histograms: dict[str, list[int]] = {}  # name -> [count per bucket..., +Inf, total count, sum_us]

    def inc(self, name: str, n: int = 1) -> None:
        """Add `n` to the counter `name`."""
        self.counters[name] = self.counters.get(name, 0) + n

    def observe(self, name: str, elapsed_ns: int) -> None:
        """Count one observation of `elapsed_ns` in the histogram `name` (negative values count as 0)."""
        us = max(elapsed_ns, 0) // 1_000
        cells = self.histograms.get(name)
        if cells is None:
            cells = self.histograms[name] = [0] * (len(BOUNDS_US) + 3)
        cells[bisect_left(BOUNDS_US, us)] += 1
        cells[-2] += 1
        cells[-1] += us

    def snapshot(self) -> tuple[tuple[tuple[str, int], ...], tuple[HistogramData, ...]]:
        """Return the counters and histograms as message values."""
        histograms = tuple(HistogramData(name=name, bounds_us=BOUNDS_US, counts=tuple(cells[:-2]),
                                         count=cells[-2], sum_us=cells[-1])
                           for name, cells in sorted(self.histograms.items()))
        return tuple(sorted(self.counters.items())), histograms


def merge(statuses: Iterable[ActorStatusSnapshot]) -> tuple[dict[str, int], dict[str, HistogramData],
                                                            dict[str, int]]:
    """Return the counters and histograms of many actors added up by name, and their gauges."""
    counters: dict[str, int] = {}
    histograms: dict[str, HistogramData] = {}
    gauges: dict[str, int] = {}
    for status in statuses:
        for name, value in status.gauges:
            gauges[name] = value
        for name, value in status.counters:
            counters[name] = counters.get(name, 0) + value
        for h in status.histograms:
            seen = histograms.get(h.name)
            if seen is None or seen.bounds_us != h.bounds_us:
                histograms[h.name] = h
                continue
            histograms[h.name] = HistogramData(
                name=h.name, bounds_us=h.bounds_us, counts=tuple(a + b for a, b in zip(seen.counts, h.counts)),
                count=seen.count + h.count, sum_us=seen.sum_us + h.sum_us)
    return counters, histograms, gauges


def quantile_ms(h: HistogramData, q: float) -> float | None:
    """Return the upper bound (ms) of the bucket holding the q-quantile (None without data; inf past 5 s)."""
    if h.count == 0:
        return None
    rank = q * h.count
    seen = 0
    for i, n in enumerate(h.counts):
        seen += n
        if seen >= rank and n:
            return h.bounds_us[i] / 1_000 if i < len(h.bounds_us) else float("inf")
    return float("inf")


def prometheus_text(counters: dict[str, int], histograms: dict[str, HistogramData], *,
                    gauges: dict[str, float] | None = None, prefix: str = "ibactors_") -> str:
    """Return the figures in the Prometheus text exposition format (counters, histograms in seconds, gauges)."""
    lines: list[str] = []
    for name, value in sorted(counters.items()):
        metric = prefix + _safe(name) + "_total"
        lines += [f"# TYPE {metric} counter", f"{metric} {value}"]
    for name, h in sorted(histograms.items()):
        metric = prefix + _safe(name) + "_seconds"
        lines.append(f"# TYPE {metric} histogram")
        cumulative = 0
        for bound, n in zip(h.bounds_us + (None,), h.counts):
            cumulative += n
            le = "+Inf" if bound is None else f"{bound / 1e6:g}"
            lines.append(f'{metric}_bucket{{le="{le}"}} {cumulative}')
        lines += [f"{metric}_sum {h.sum_us / 1e6:g}", f"{metric}_count {h.count}"]
    for name, value in sorted((gauges or {}).items()):
        metric = prefix + _safe(name)
        lines += [f"# TYPE {metric} gauge", f"{metric} {value:g}"]
    return "\n".join(lines) + "\n"


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c == "_" else "_" for c in name.lower())
