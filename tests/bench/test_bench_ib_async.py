"""Smoke test of bench.bench_ib_async: the ib_async baseline measures entry latencies on the simulator."""

from __future__ import annotations

import importlib.util
import math

import pytest

# ib_async is pinned in the bench extra; CI (.ci/run) installs only '.[test]', so there it is absent.
pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("ib_async") is None,
    reason="ib_async is in the 'bench' extra, which the test command (pip install -e '.[test]') does not install")


@pytest.mark.timeout(60)
def test_bench_ib_async_few_symbols_measures_positive_entry_latencies() -> None:
    from bench.bench_ib_async import bench_ib_async

    result = bench_ib_async(symbols=20, trading=20, seconds=4.0, warmup=4.0)

    assert result["entries"] >= 1
    for key in ("p50_ms", "p99_ms", "entries_per_s", "orders_per_s", "trigger_p99_ms"):
        assert math.isfinite(result[key]) and result[key] > 0, key
    assert result["p50_ms"] <= result["p99_ms"]
    assert result["orders_per_s"] >= result["entries_per_s"]
    # Every message of the run decoded on both sides: no request the simulator refused (321, 320),
    # nothing ib_async could not read; 202 is an order cancelled (a bracket's other leg, an exit).
    assert set(result["errors"]) <= {"202"}, result["errors"]
    assert result["library_problems"] == []
