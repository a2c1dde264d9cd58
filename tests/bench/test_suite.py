"""The benchmark suite's table from canned part outputs (goals MET/MISSED, FAILED rows); a bench_recovery smoke run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench.suite import (
    FAILED,
    MET,
    MISSED,
    NA,
    PARTS,
    SKIPPED,
    Outcome,
    Row,
    failed_parts,
    format_table,
    table_rows,
)

ROOT = Path(__file__).resolve().parents[2]


def backtest(ours: float, theirs: float | None, bars: int = 100_000) -> list[dict[str, Any]]:
    return [{"bars": 10_000, "ours_bars_per_s": 2_000.0, "backtrader_bars_per_s": 13_000.0, "ratio": 0.15,
             "ours_fills": 11, "backtrader_fills": 11},
            {"bars": bars, "ours_bars_per_s": ours, "backtrader_bars_per_s": theirs,
             "ratio": ours / theirs if theirs else None, "ours_fills": 113, "backtrader_fills": 113}]


def linearity(small: float, large: float) -> list[dict[str, Any]]:
    return [{"bars": 10_000, "ours_bars_per_s": small, "backtrader_bars_per_s": None},
            {"bars": 1_000_000, "ours_bars_per_s": large, "backtrader_bars_per_s": None}]


def latency(p99: float | None) -> dict[str, Any]:
    return {"latency": {"staggered": {"symbols": 100, "trading": 20, "entries": 40, "p50_ms": 8.0, "p99_ms": p99}},
            "scale": None}


def ib_async(p99: float) -> dict[str, Any]:
    return {"ib_async": {"symbols": 100, "trading": 20, "entries": 40, "p50_ms": 2.0, "p99_ms": p99}}


MEMORY = {"latency": {}, "scale": {"symbols": 300, "baseline_symbols": 3, "pss_per_symbol_actor_mib": 7.5,
                                   "pss_total_mib": 2300.0, "start_s": 40.0}}
JOURNAL = {"latency_ms": {"full": {"journal_adds_p50": 1.2, "journal_adds_p99": 5.0}},
           "writes_ms": {"full": {"outbound_path": {"n": 200, "p50": 0.8, "p99": 3.1, "max": 9.0}}}}


def recovery(kept: bool = True) -> dict[str, Any]:
    return {"kills": 20, "symbols": 10, "positions_kept": kept,
            "ready_ms": {"n": 20, "p50": 90.0, "p90": 120.0, "p99": None, "max": 130.0},
            "first_quote_ms": {"n": 20, "p50": 100.0, "p90": 140.0, "p99": None, "max": 150.0}}


def every_part(**changed: Outcome) -> dict[str, Outcome]:
    outcomes = {"backtest": Outcome(data=backtest(5_000.0, 2_000.0)),
                "linearity": Outcome(data=linearity(2_000, 1_900)),
                "latency": Outcome(data=latency(20.0)), "ib_async": Outcome(data=ib_async(10.0)),
                "memory": Outcome(data=MEMORY), "journal": Outcome(data=JOURNAL), "recovery": Outcome(data=recovery())}
    outcomes.update(changed)
    return outcomes


def goal_row(rows: list[Row], part: str) -> Row:
    (row,) = [r for r in rows if r.part == part and r.goal]
    return row


@pytest.mark.parametrize(("ours", "theirs", "status"), [
    (4_000.0, 2_000.0, MET),       # exactly 2x
    (3_999.0, 2_000.0, MISSED),
    (1_000.0, 13_700.0, MISSED),   # today's figure
])
def test_rows_backtest_ratio_goal_is_met_at_twice_backtrader(ours: float, theirs: float, status: str) -> None:
    row = goal_row(table_rows(every_part(backtest=Outcome(data=backtest(ours, theirs)))), "backtest")

    assert (row.status, row.number) == (status, pytest.approx(ours / theirs))


@pytest.mark.parametrize(("ours_p99", "ib_p99", "status"), [
    (50.0, 10.0, MET),     # exactly 5x
    (50.1, 10.0, MISSED),
    (3.0, 10.0, MET),
])
def test_rows_latency_goal_compares_ours_p99_with_five_times_ib_async(ours_p99: float, ib_p99: float,
                                                                      status: str) -> None:
    rows = table_rows(every_part(latency=Outcome(data=latency(ours_p99)), ib_async=Outcome(data=ib_async(ib_p99))))

    row = goal_row(rows, "ib_async")
    assert (row.status, row.number) == (status, pytest.approx(ours_p99 / ib_p99))
    assert failed_parts(rows) == []


@pytest.mark.parametrize(("small", "large", "status"), [
    (2_000.0, 1_600.0, MET),    # 20 % slower at 1M
    (2_000.0, 1_599.0, MISSED),
    (2_000.0, 3_000.0, MET),    # faster at 1M is not a cost growing
])
def test_rows_linearity_goal_is_met_within_twenty_percent_of_the_small_size(small: float, large: float,
                                                                          status: str) -> None:
    rows = table_rows(every_part(linearity=Outcome(data=linearity(small, large))))

    assert goal_row(rows, "linearity").status == status
    # The backtest part's 100,000 bars sit between the linearity part's two sizes, shown without a goal.
    figures = [r.figure for r in rows if r.part == "linearity" and not r.goal]
    assert figures == ["ours bars/s, 10,000 bars", "ours bars/s, 100,000 bars (backtest part)",
                       "ours bars/s, 1,000,000 bars"]


def test_rows_every_part_fine_gives_no_failed_row_and_the_table_lists_each_part() -> None:
    rows = table_rows(every_part())

    assert failed_parts(rows) == []
    assert [r.part for r in rows if r.status] == ["backtest", "linearity", "ib_async", "recovery"]
    assert list(dict.fromkeys(r.part for r in rows)) == list(PARTS)
    table = format_table(rows)
    assert "PSS per symbol actor" in table and "journal per order before it leaves (FULL, in process) p99" in table


@pytest.mark.parametrize(("part", "outcome", "reason"), [
    ("latency", Outcome(error="exit code 1: RuntimeError: the system did not start"), "the system did not start"),
    ("journal", Outcome(error="timed out after 1800 s"), "timed out"),
    ("memory", Outcome(data={"scale": None}), "no scale run"),
    ("memory", Outcome(data={"unexpected": 1}), "KeyError"),
    ("backtest", Outcome(data=backtest(5_000.0, None)), "backtrader is not installed"),
    ("recovery", Outcome(data=recovery(kept=False), error="exit code 1: position changed"), "exit code 1"),
    ("ib_async", Outcome(data=None), "no figures"),
])
def test_rows_failed_part_gets_a_failed_row_with_its_reason_and_the_others_still_count(
        part: str, outcome: Outcome, reason: str) -> None:
    rows = table_rows(every_part(**{part: outcome}))

    failed = [r for r in rows if r.status == FAILED]
    assert failed_parts(rows) == [part]
    assert any(reason in r.value for r in failed), failed
    assert {r.part for r in rows if r.status == MET} >= {"linearity", "recovery"} - {part}


def test_rows_latency_goal_without_our_figure_is_not_applicable_and_the_skipped_part_says_so() -> None:
    outcomes = every_part()
    del outcomes["latency"]

    rows = table_rows(outcomes)

    assert goal_row(rows, "ib_async").status == NA
    assert [r.status for r in rows if r.part == "latency"] == [SKIPPED]
    assert failed_parts(rows) == []


def test_rows_recovery_with_a_changed_position_misses_its_goal() -> None:
    assert goal_row(table_rows(every_part(recovery=Outcome(data=recovery(kept=False)))), "recovery").status == MISSED


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_bench_recovery_one_kill_of_three_symbols_recovers_with_the_position_kept(tmp_path: Path) -> None:
    out = tmp_path / "recovery.json"
    run = subprocess.run([sys.executable, "-m", "bench.bench_recovery", "--kills", "1", "--symbols", "3",
                          "--gap", "0", "--json", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=80)

    assert run.returncode == 0, run.stdout + run.stderr
    result = json.loads(out.read_text())
    assert result["kills"] == 1 and result["positions_kept"] is True
    (kill,) = result["each"]
    assert kill["incarnation"] == 2
    # The new incarnation subscribes to its quotes while configured: a quote may beat its ActorReady.
    assert 0 < kill["exit_noticed_ms"] <= kill["ready_ms"] < 30_000
    assert 0 < kill["first_quote_ms"] < 30_000
    rows = table_rows({"recovery": Outcome(data=result)})
    assert goal_row(rows, "recovery").status == MET
