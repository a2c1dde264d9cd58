"""Monitoring figures: counters and fixed-bucket histograms per actor, added up across actors, in Prometheus text."""

from __future__ import annotations

import pytest

from actors.metrics import BOUNDS_US, Metrics, merge, prometheus_text, quantile_ms
from messages import ActorStatusSnapshot

MS = 1_000_000


def _status(metrics: Metrics, key: str, gauges: tuple[tuple[str, int], ...] = ()) -> ActorStatusSnapshot:
    counters, histograms = metrics.snapshot()
    return ActorStatusSnapshot(key=key, counters=counters, histograms=histograms, gauges=gauges)


def test_counters_add_up_per_name_and_histograms_bucket_each_observation_at_or_under_its_bound() -> None:
    m = Metrics()
    m.inc("fills")
    m.inc("fills", 2)
    for ms in (0.05, 0.1, 3, 3, 7000):
        m.observe("tick_to_order", int(ms * MS))
    counters, (h,) = m.snapshot()
    assert counters == (("fills", 3),)
    assert h.count == 5 and h.bounds_us == BOUNDS_US and len(h.counts) == len(BOUNDS_US) + 1
    assert h.counts[0] == 2                       # 0.05 ms and exactly 0.1 ms: the first bucket (<= 100 us)
    assert h.counts[BOUNDS_US.index(5_000)] == 2  # 3 ms: the <= 5 ms bucket
    assert h.counts[-1] == 1                      # 7 s: past the last bound
    assert h.sum_us == 50 + 100 + 3000 + 3000 + 7_000_000


def test_merge_adds_counters_and_histograms_of_many_actors_and_keeps_gauges() -> None:
    a, b = Metrics(), Metrics()
    a.inc("fills", 2)
    b.inc("fills", 3)
    b.inc("orders_sent")
    a.observe("pacing_delay", 2 * MS)
    b.observe("pacing_delay", 20 * MS)
    counters, histograms, gauges = merge([_status(a, "tws"), _status(b, "risk", (("quote_age_ms_AAPL", 12),))])
    assert counters == {"fills": 5, "orders_sent": 1}
    assert histograms["pacing_delay"].count == 2 and histograms["pacing_delay"].sum_us == 22_000
    assert gauges == {"quote_age_ms_AAPL": 12}


@pytest.mark.parametrize(("observations_ms", "q", "expected"), [
    ((), 0.5, None),
    ((1, 1, 1, 40), 0.5, 1.0),
    ((1, 1, 1, 40), 0.99, 50.0),
    ((1,) * 99 + (9000,), 0.99, 1.0),
    ((1,) * 98 + (9000, 9000), 0.99, float("inf")),
])
def test_quantile_is_the_upper_bound_of_the_bucket_holding_it(observations_ms: tuple[float, ...], q: float,
                                                                 expected: float | None) -> None:
    m = Metrics()
    for ms in observations_ms:
        m.observe("x", int(ms * MS))
    _, histograms = m.snapshot()
    h = histograms[0] if histograms else None
    assert (quantile_ms(h, q) if h is not None else None) == expected


def test_prometheus_text_has_typed_counters_cumulative_buckets_in_seconds_and_gauges() -> None:
    m = Metrics()
    m.inc("signals_rejected_MALFORMED", 4)
    m.observe("tick_to_order", 3 * MS)
    m.observe("tick_to_order", 30 * MS)
    counters, histograms, _ = merge([_status(m, "x")])
    text = prometheus_text(counters, histograms, gauges={"restarts": 2.0})
    lines = text.splitlines()
    assert "# TYPE ibactors_signals_rejected_malformed_total counter" in lines
    assert "ibactors_signals_rejected_malformed_total 4" in lines
    assert "# TYPE ibactors_tick_to_order_seconds histogram" in lines
    assert 'ibactors_tick_to_order_seconds_bucket{le="0.005"} 1' in lines
    assert 'ibactors_tick_to_order_seconds_bucket{le="0.05"} 2' in lines
    assert 'ibactors_tick_to_order_seconds_bucket{le="+Inf"} 2' in lines
    assert "ibactors_tick_to_order_seconds_count 2" in lines and "ibactors_tick_to_order_seconds_sum 0.033" in lines
    assert "ibactors_restarts 2" in lines and text.endswith("\n")
