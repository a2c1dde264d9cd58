"""Tests for core.analytics: round trips from fills, and every metric against hand-computed values."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import date, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings, strategies as st

from core.analytics import Breakdown, Fill, Metrics, Trade, TradeSide, metrics, round_trips
from core.errors import InvalidAnalyticsInput, InvalidExecution
from core.position import Position, apply_execution, unrealized_pnl
from core.types import Execution, Side

D = Decimal
NY = ZoneInfo("America/New_York")
HOUR = 3_600 * 10**9


def _ts(when: str) -> int:
    return int(datetime.fromisoformat(when).replace(tzinfo=NY).timestamp()) * 10**9


Row = tuple[str, str, int | str, str, str]  # symbol, side, quantity, price, "YYYY-MM-DD HH:MM" (New York)


def _fills(rows: Sequence[Row], *, rule: str = "", stop: str | None = None, commission: str = "0") -> list[Fill]:
    return [Fill(exec_id=f"e{i}", symbol=sym, side=Side(side), quantity=D(qty), price=D(price),
                 commission=D(commission), ts_ns=_ts(when), group_id=f"g{i}", rule=rule,
                 stop=None if stop is None else D(stop))
            for i, (sym, side, qty, price, when) in enumerate(rows)]


def _fill(n: int, symbol: str, side: str, qty: int | str, price: str, when: str, rule: str = "",
          stop: str | None = None, commission: str = "1") -> Fill:
    return Fill(exec_id=f"x{n}", symbol=symbol, side=Side(side), quantity=D(qty), price=D(price),
                commission=D(commission), ts_ns=_ts(when), group_id=f"{symbol}-{n}", rule=rule,
                stop=None if stop is None else D(stop))


# ---------------------------------------------------------------- the fixed trade list

# Capital 10,000; every fill pays a commission of 1. Times are New York.
#   T1 AAPL long  "breakout" stop 98:  BUY 100 @100 (03-04 10:00), SELL 100 @103 (03-04 11:00)
#   T2 MSFT short "fade"     stop 205: SELL 50 @200 (03-04 10:30), BUY 50 @204 (03-04 14:00)
#   T3 AAPL long  "pullback" stop 100: BUY 60 @102 (03-05 10:00), BUY 40 @104.5 (10:15),
#                                      SELL 50 @101 (11:00), SELL 50 @100 (12:00)
#   T4 MSFT long  no rule, no stop:    BUY 20 @210 (03-06 09:45), SELL 20 @215 (03-06 15:00)
#   T5 AAPL short "fade"     stop 110: SELL 30 @105 (03-06 13:00), still open, marked at 104
FIXED = (
    _fill(1, "AAPL", "BUY", 100, "100", "2024-03-04 10:00", "breakout", "98"),
    _fill(2, "MSFT", "SELL", 50, "200", "2024-03-04 10:30", "fade", "205"),
    _fill(3, "AAPL", "SELL", 100, "103", "2024-03-04 11:00", "breakout", "98"),
    _fill(4, "MSFT", "BUY", 50, "204", "2024-03-04 14:00", "fade", "205"),
    _fill(5, "AAPL", "BUY", 60, "102", "2024-03-05 10:00", "pullback", "100"),
    _fill(6, "AAPL", "BUY", 40, "104.5", "2024-03-05 10:15", "pullback", "100"),
    _fill(7, "AAPL", "SELL", 50, "101", "2024-03-05 11:00", "pullback", "100"),
    _fill(8, "AAPL", "SELL", 50, "100", "2024-03-05 12:00", "pullback", "100"),
    _fill(9, "MSFT", "BUY", 20, "210", "2024-03-06 09:45"),
    _fill(10, "AAPL", "SELL", 30, "105", "2024-03-06 13:00", "fade", "110"),
    _fill(11, "MSFT", "SELL", 20, "215", "2024-03-06 15:00"),
)


@pytest.fixture(scope="module")
def fixed() -> tuple[tuple[Trade, ...], Metrics]:
    trades = round_trips(FIXED)
    return trades, metrics(trades, capital=D(10_000), marks={"AAPL": D(104)}, zone=NY)


def test_fixed_list_round_trips_have_hand_computed_prices_pnl_and_r(
        fixed: tuple[tuple[Trade, ...], Metrics]) -> None:
    trades, _ = fixed
    t1, t2, t3, t4, t5 = trades
    # T1: (103 − 100) × 100 = 300 gross, 2 commissions, 298 net; risk |100 − 98| × 100 = 200 → 1.49 R
    assert (t1.symbol, t1.side, t1.quantity, t1.entry_price, t1.exit_price) == ("AAPL", TradeSide.LONG, 100, 100, 103)
    assert (t1.gross_pnl, t1.commissions, t1.net_pnl, t1.r_multiple) == (300, 2, 298, D("1.49"))
    assert (t1.opened_ns, t1.closed_ns, t1.rule, t1.fills) == (_ts("2024-03-04 10:00"), _ts("2024-03-04 11:00"),
                                                                "breakout", 2)
    # T2: short (200 − 204) × 50 = −200 gross, −202 net; risk |200 − 205| × 50 = 250 → −0.808 R
    assert (t2.side, t2.gross_pnl, t2.net_pnl, t2.r_multiple) == (TradeSide.SHORT, -200, -202, D("-0.808"))
    # T3: entry (60 × 102 + 40 × 104.5) / 100 = 103; exit (50 × 101 + 50 × 100) / 100 = 100.5;
    #     (100.5 − 103) × 100 = −250 gross, 4 commissions, −254 net; risk |103 − 100| × 100 = 300
    assert (t3.quantity, t3.entry_price, t3.exit_price, t3.fills) == (100, 103, D("100.5"), 4)
    assert (t3.gross_pnl, t3.commissions, t3.net_pnl) == (-250, 4, -254)
    assert t3.r_multiple == D(-254) / D(300)
    # T4: (215 − 210) × 20 = 100 gross, 98 net, no stop → no R; no rule
    assert (t4.net_pnl, t4.r_multiple, t4.rule) == (98, None, "")
    # T5: open short 30 at 105, one commission paid, nothing realized yet
    assert (t5.is_open, t5.side, t5.open_quantity, t5.open_cost, t5.exit_price) == (True, TradeSide.SHORT, 30,
                                                                                    3150, None)
    assert (t5.gross_pnl, t5.net_pnl) == (0, -1)


def test_fixed_list_money_metrics_match_hand_computation(fixed: tuple[tuple[Trade, ...], Metrics]) -> None:
    _, m = fixed
    assert m.realized_pnl == 300 - 200 - 250 + 100          # = −50
    assert m.unrealized_pnl == 30 * (105 - 104)            # short 30 from 105 marked at 104 = 30
    assert m.commissions == 2 + 2 + 4 + 2 + 1              # = 11
    assert m.net_pnl == -50 + 30 - 11                      # = −31
    assert (m.trades, m.open_trades, m.winners, m.losers) == (4, 1, 2, 2)
    assert m.win_rate == D("0.5")                          # 2 of 4
    assert (m.gross_wins, m.gross_losses) == (298 + 98, 202 + 254)
    assert m.profit_factor == D(396) / D(456)              # ≈ 0.868
    assert m.expectancy == D(298 - 202 - 254 + 98) / 4     # = −15
    assert m.avg_r == (D("1.49") + D("-0.808") + D(-254) / D(300)) / 3


def test_fixed_list_daily_series_sharpe_and_sortino_match_hand_computation(
        fixed: tuple[tuple[Trade, ...], Metrics]) -> None:
    _, m = fixed
    # 03-04: 298 − 202 = 96; 03-05: −254; 03-06: 98 (the open T5 does not count)
    assert [(d.day, d.pnl, d.ret) for d in m.daily] == [
        (date(2024, 3, 4), 96, D("0.0096")), (date(2024, 3, 5), -254, D("-0.0254")),
        (date(2024, 3, 6), 98, D("0.0098"))]
    # mean = (0.0096 − 0.0254 + 0.0098) / 3 = −0.002
    # sample variance = (0.0116² + 0.0234² + 0.0118²) / 2 = 0.00082136 / 2 = 0.00041068
    sharpe = -0.002 / math.sqrt(0.00041068) * math.sqrt(252)          # ≈ −1.5667
    # downside variance = (0 + 0.0254² + 0) / 3 = 0.00064516 / 3
    sortino = -0.002 / math.sqrt(0.00064516 / 3) * math.sqrt(252)     # ≈ −2.1650
    assert m.sharpe == pytest.approx(sharpe, rel=1e-9)
    assert m.sortino == pytest.approx(sortino, rel=1e-9)
    assert m.sharpe == pytest.approx(-1.5667, abs=1e-4) and m.sortino == pytest.approx(-2.1650, abs=1e-4)


def test_fixed_list_equity_drawdown_and_exposure_match_hand_computation(
        fixed: tuple[tuple[Trade, ...], Metrics]) -> None:
    _, m = fixed
    # 10,000 at the first fill; +298 → 10,298 (the peak); −202 → 10,096; −254 → 9,842; +98 → 9,940
    assert [(p.ts_ns, p.equity, p.drawdown) for p in m.equity] == [
        (_ts("2024-03-04 10:00"), 10_000, 0), (_ts("2024-03-04 11:00"), 10_298, 0),
        (_ts("2024-03-04 14:00"), 10_096, -202), (_ts("2024-03-05 12:00"), 9_842, -456),
        (_ts("2024-03-06 15:00"), 9_940, -358)]
    assert m.equity[2].drawdown_pct == D(-202) / D(10_298) * 100
    # the deepest point: 10,298 → 9,842 = 456 = 4.428 % of the peak; never recovered, so the
    # duration runs from the peak (03-04 11:00) to the last point (03-06 15:00) = 52 h
    assert m.max_drawdown == 456
    assert m.max_drawdown_pct == D(456) / D(10_298) * 100
    assert m.max_drawdown_ns == 52 * HOUR
    # held: 03-04 10:00–14:00 (T1 ∪ T2) 4 h + 03-05 10:00–12:00 2 h + 03-06 09:45–15:00 5.25 h
    # (T5 lies inside T4) = 11.25 h of the 53 h from the first fill to the last
    assert m.exposure == pytest.approx(11.25 / 53, rel=1e-12)
    assert (m.first_ns, m.last_ns) == (_ts("2024-03-04 10:00"), _ts("2024-03-06 15:00"))


def test_fixed_list_breakdowns_per_symbol_and_rule_match_hand_computation(
        fixed: tuple[tuple[Trade, ...], Metrics]) -> None:
    _, m = fixed
    assert m.by_symbol == (
        Breakdown(key="AAPL", trades=2, win_rate=D("0.5"), net_pnl=D(44), expectancy=D(22)),     # 298 − 254
        Breakdown(key="MSFT", trades=2, win_rate=D("0.5"), net_pnl=D(-104), expectancy=D(-52)))  # −202 + 98
    assert [(b.key, b.trades, b.win_rate, b.net_pnl) for b in m.by_rule] == [
        ("", 1, 1, 98), ("breakout", 1, 1, 298), ("fade", 1, 0, -202), ("pullback", 1, 0, -254)]


# ---------------------------------------------------------------- edge cases

_DAY1 = "2024-03-04"


@pytest.mark.parametrize(("rows", "expected"), [
    # partial closes: 40 at 11 (+40) and 60 at 9 (−60) = −20; exit (440 + 540) / 100 = 9.8
    ([("AAPL", "BUY", 100, "10", f"{_DAY1} 10:00"), ("AAPL", "SELL", 40, "11", f"{_DAY1} 11:00"),
      ("AAPL", "SELL", 60, "9", f"{_DAY1} 12:00")],
     [("LONG", 100, "10", "9.8", "-20", False, 3)]),
    # short: sold 10 at 50, bought back at 45 = +50
    ([("AAPL", "SELL", 10, "50", f"{_DAY1} 10:00"), ("AAPL", "BUY", 10, "45", f"{_DAY1} 11:00")],
     [("SHORT", 10, "50", "45", "50", False, 2)]),
    # flip through zero: the SELL 150 closes the long 100 (+200) and opens a short 50 at 12
    ([("AAPL", "BUY", 100, "10", f"{_DAY1} 10:00"), ("AAPL", "SELL", 150, "12", f"{_DAY1} 11:00")],
     [("LONG", 100, "10", "12", "200", False, 2), ("SHORT", 50, "12", None, "0", True, 1)]),
    # scaling in and out: the largest position is 150 at 10; selling 100 at 12 realizes 200, adding
    # 50 at 13 to the 50 left moves the average cost to (500 + 650) / 100 = 11.5, and closing 100 at
    # 11 realizes −50: 150 in all (= the cash flows −1500 + 1200 − 650 + 1100); entry
    # (1000 + 500 + 650) / 200 = 10.75, exit (1200 + 1100) / 200 = 11.5
    ([("AAPL", "BUY", 100, "10", f"{_DAY1} 10:00"), ("AAPL", "BUY", 50, "10", f"{_DAY1} 10:05"),
      ("AAPL", "SELL", 100, "12", f"{_DAY1} 10:10"), ("AAPL", "BUY", 50, "13", f"{_DAY1} 10:15"),
      ("AAPL", "SELL", 100, "11", f"{_DAY1} 10:20")],
     [("LONG", 150, "10.75", "11.5", "150", False, 5)]),
    # open at the end: nothing realized, no exit price
    ([("AAPL", "BUY", 5, "20", f"{_DAY1} 10:00")], [("LONG", 5, "20", None, "0", True, 1)]),
    # two symbols interleave independently
    ([("AAPL", "BUY", 1, "10", f"{_DAY1} 10:00"), ("MSFT", "SELL", 2, "20", f"{_DAY1} 10:01"),
      ("AAPL", "SELL", 1, "11", f"{_DAY1} 10:02"), ("MSFT", "BUY", 2, "21", f"{_DAY1} 10:03")],
     [("LONG", 1, "10", "11", "1", False, 2), ("SHORT", 2, "20", "21", "-2", False, 2)]),
])
def test_round_trips_edge_case_yields_expected_trades(
        rows: list[Row], expected: list[tuple[str, int, str, str | None, str, bool, int]]) -> None:
    got = [(t.side.value, t.quantity, t.entry_price, t.exit_price, t.gross_pnl, t.is_open, t.fills)
           for t in round_trips(_fills(rows))]
    assert got == [(side, D(q), D(entry), None if exit_ is None else D(exit_), D(gross), is_open, n)
                   for side, q, entry, exit_, gross, is_open, n in expected]


def test_round_trips_flip_splits_its_commission_by_quantity() -> None:
    fills = _fills([("AAPL", "BUY", 100, "10", f"{_DAY1} 10:00"), ("AAPL", "SELL", 150, "12", f"{_DAY1} 11:00")],
                   commission="3")
    first, second = round_trips(fills)
    # the flip fill's 3 splits 100 : 50 → 2 to the closing trade (with the entry's 3), 1 to the new one
    assert (first.commissions, first.net_pnl, first.closed_ns) == (5, 195, _ts(f"{_DAY1} 11:00"))
    assert (second.commissions, second.opened_ns, second.open_quantity) == (1, _ts(f"{_DAY1} 11:00"), 50)


def test_round_trips_repeated_exec_id_counts_once() -> None:
    buy, sell = _fills([("AAPL", "BUY", 10, "10", f"{_DAY1} 10:00"), ("AAPL", "SELL", 10, "11", f"{_DAY1} 11:00")])
    (trade,) = round_trips([buy, buy, sell, sell])
    assert (trade.fills, trade.quantity, trade.gross_pnl, trade.is_open) == (2, 10, 10, False)


@pytest.mark.parametrize(("stop", "r"), [
    (None, None),          # missing stop → no R
    ("10", None),          # stop at the entry: zero risk → no R
    ("9", D("0.5")),       # +5 net on a risk of |10 − 9| × 10 = 10
    ("12", D("0.25")),     # a stop on the wrong side still measures the distance: 5 / 20
])
def test_round_trip_r_multiple_needs_a_stop_away_from_the_entry(stop: str | None, r: Decimal | None) -> None:
    (trade,) = round_trips(_fills([("AAPL", "BUY", 10, "10", f"{_DAY1} 10:00"),
                                   ("AAPL", "SELL", 10, "10.5", f"{_DAY1} 11:00")], stop=stop))
    assert trade.r_multiple == r


@pytest.mark.parametrize("changes", [
    {"quantity": D(0)}, {"quantity": D(-1)}, {"quantity": D("NaN")}, {"price": D(-1)},
    {"price": D("Infinity")}, {"commission": D("NaN")}, {"exec_id": ""}, {"symbol": ""}, {"stop": D(-1)},
])
def test_fill_with_invalid_field_raises_invalid_execution(changes: dict[str, object]) -> None:
    fields: dict[str, object] = {"exec_id": "e1", "symbol": "AAPL", "side": Side.BUY, "quantity": D(1),
                                 "price": D(10), **changes}
    with pytest.raises(InvalidExecution):
        Fill(**fields)  # type: ignore[arg-type]


def test_metrics_of_no_trades_are_empty_and_undefined_ratios_are_none() -> None:
    m = metrics((), capital=D(1000), zone=NY)
    assert (m.trades, m.open_trades, m.realized_pnl, m.unrealized_pnl, m.net_pnl, m.commissions) == (0, 0, 0, 0, 0, 0)
    assert (m.win_rate, m.profit_factor, m.expectancy, m.avg_r, m.sharpe, m.sortino, m.exposure) == (None,) * 7
    assert (m.equity, m.daily, m.by_symbol, m.by_rule) == ((), (), (), ())
    assert (m.max_drawdown, m.max_drawdown_pct, m.max_drawdown_ns) == (0, 0, 0)


def test_metrics_of_only_winners_has_no_profit_factor_sortino_or_drawdown() -> None:
    trades = round_trips(_fills([
        ("AAPL", "BUY", 10, "10", "2024-03-04 10:00"), ("AAPL", "SELL", 10, "11", "2024-03-04 11:00"),   # +10
        ("AAPL", "BUY", 10, "10", "2024-03-05 10:00"), ("AAPL", "SELL", 10, "13", "2024-03-05 11:00"),   # +30
    ]))
    m = metrics(trades, capital=D(1000), zone=NY)
    assert (m.win_rate, m.profit_factor, m.gross_losses, m.expectancy) == (1, None, 0, 20)
    # returns 0.01 and 0.03: mean 0.02, sample stdev √((0.01² + 0.01²) / 1) = 0.01414…; no downside
    assert m.sharpe == pytest.approx(0.02 / math.sqrt(0.0002) * math.sqrt(252))
    assert m.sortino is None
    assert (m.max_drawdown, m.max_drawdown_ns) == (0, 0)


def test_metrics_of_one_day_has_no_sharpe_or_sortino() -> None:
    trades = round_trips(_fills([("AAPL", "BUY", 10, "10", f"{_DAY1} 10:00"), ("AAPL", "SELL", 10, "9", f"{_DAY1} 11:00")]))
    m = metrics(trades, capital=D(1000), zone=NY)
    assert (len(m.daily), m.sharpe, m.sortino) == (1, None, None)


def test_metrics_drawdown_duration_runs_from_peak_to_recovery() -> None:
    trades = round_trips(_fills([
        ("AAPL", "BUY", 10, "10", f"{_DAY1} 10:00"), ("AAPL", "SELL", 10, "12", f"{_DAY1} 11:00"),  # +20, peak 1020
        ("AAPL", "BUY", 10, "12", f"{_DAY1} 12:00"), ("AAPL", "SELL", 10, "9", f"{_DAY1} 13:00"),   # −30 → 990
        ("AAPL", "BUY", 10, "9", f"{_DAY1} 14:00"), ("AAPL", "SELL", 10, "13", f"{_DAY1} 15:00"),   # +40 → 1030
        ("AAPL", "BUY", 10, "13", f"{_DAY1} 15:10"), ("AAPL", "SELL", 10, "12", f"{_DAY1} 15:20"),  # −10 → 1020
    ]))
    m = metrics(trades, capital=D(1000), zone=NY)
    # the largest drawdown is 1020 → 990 = 30, from its peak at 11:00 back above it at 15:00 = 4 h;
    # the later −10 is smaller and does not replace it
    assert (m.max_drawdown, m.max_drawdown_ns) == (30, 4 * HOUR)
    assert m.max_drawdown_pct == D(30) / D(1020) * 100


def test_metrics_open_trade_is_valued_at_its_mark_else_its_last_fill() -> None:
    trades = round_trips(_fills([("AAPL", "BUY", 10, "10", f"{_DAY1} 10:00"), ("AAPL", "SELL", 4, "12", f"{_DAY1} 11:00"),
                                 ("MSFT", "SELL", 5, "20", f"{_DAY1} 12:00")]))
    marked = metrics(trades, capital=D(1000), marks={"AAPL": D(15), "MSFT": D(18)}, zone=NY)
    # AAPL realized 4 × (12 − 10) = 8 and holds 6 at 10 → 6 × 5 = 30; MSFT short 5 from 20 at 18 → 10
    assert (marked.realized_pnl, marked.unrealized_pnl, marked.trades, marked.open_trades) == (8, 40, 0, 2)
    unmarked = metrics(trades, capital=D(1000), zone=NY)
    # without marks: AAPL at its last fill 12 → 6 × 2 = 12; MSFT at 20 → 0
    assert unmarked.unrealized_pnl == 12
    # the open trades count as held until the last fill: 10:00–12:00 of 10:00–12:00
    assert unmarked.exposure == 1.0


@pytest.mark.parametrize(("capital", "marks"), [
    (D(0), {}), (D(-5), {}), (D("NaN"), {}), (D(100), {"AAPL": D(-1)}), (D(100), {"AAPL": D("Infinity")}),
])
def test_metrics_with_unusable_capital_or_mark_raises(capital: Decimal, marks: dict[str, Decimal]) -> None:
    with pytest.raises(InvalidAnalyticsInput):
        metrics((), capital=capital, marks=marks, zone=NY)


def test_metrics_day_is_the_exchange_day_not_the_utc_day() -> None:
    # 20:30 in New York is already the next day in UTC
    trades = round_trips(_fills([("AAPL", "BUY", 1, "10", "2024-03-04 19:00"), ("AAPL", "SELL", 1, "11", "2024-03-04 20:30")]))
    assert [d.day for d in metrics(trades, capital=D(100), zone=NY).daily] == [date(2024, 3, 4)]


@pytest.mark.parametrize(("closes", "days"), [
    # 2024-03-10 is 23 hours long in New York (DST starts), 2024-11-03 is 25 hours long
    (("2024-03-10 00:30", "2024-03-10 23:59", "2024-03-11 00:01"), [(date(2024, 3, 10), 2), (date(2024, 3, 11), 1)]),
    (("2024-11-03 00:30", "2024-11-03 23:30", "2024-11-04 00:00"), [(date(2024, 11, 3), 2), (date(2024, 11, 4), 1)]),
    # out of order: a later day first, then back
    (("2024-03-05 10:00", "2024-03-04 10:00", "2024-03-05 11:00"), [(date(2024, 3, 4), 1), (date(2024, 3, 5), 2)]),
])
def test_metrics_daily_series_follows_exchange_midnights_across_dst(
        closes: tuple[str, ...], days: list[tuple[date, int]]) -> None:
    # each trade gains 1 and closes at the given time
    trades = round_trips(_fills([row for i, when in enumerate(closes) for row in (
        (f"S{i}", "BUY", 1, "10", when), (f"S{i}", "SELL", 1, "11", when))]))
    assert [(d.day, d.pnl) for d in metrics(trades, capital=D(100), zone=NY).daily] == days


# ---------------------------------------------------------------- against core/position.py

_fill_steps = st.lists(
    st.tuples(st.sampled_from(["AAPL", "MSFT"]), st.sampled_from([Side.BUY, Side.SELL]),
              st.integers(1, 300), st.integers(1, 50_000), st.integers(0, 300)),
    min_size=1, max_size=40)


@settings(max_examples=150)
@given(steps=_fill_steps, marks=st.tuples(st.integers(1, 50_000), st.integers(1, 50_000)),
       close_out=st.booleans())
def test_trades_add_up_to_the_position_arithmetic(steps: list[tuple[str, Side, int, int, int]],
                                                   marks: tuple[int, int], close_out: bool) -> None:
    fills = [Fill(exec_id=f"e{i}", symbol=sym, side=side, quantity=D(qty), price=D(cents) / 100,
                  commission=D(fee) / 100, ts_ns=i * HOUR) for i, (sym, side, qty, cents, fee) in enumerate(steps)]
    positions = {s: Position(symbol=s) for s in ("AAPL", "MSFT")}
    for f in fills:
        positions[f.symbol] = apply_execution(positions[f.symbol], Execution(
            exec_id=f.exec_id, order_id=1, order_ref="g:entry", symbol=f.symbol, side=f.side,
            quantity=f.quantity, price=f.price, commission=f.commission, ts_ns=f.ts_ns))
    if close_out:
        for s, pos in positions.items():
            if pos.quantity:
                f = Fill(exec_id=f"close-{s}", symbol=s, side=Side.SELL if pos.quantity > 0 else Side.BUY,
                         quantity=abs(pos.quantity), price=D("123.45"), commission=D(1), ts_ns=len(fills) * HOUR)
                fills.append(f)
                positions[s] = apply_execution(pos, Execution(
                    exec_id=f.exec_id, order_id=1, order_ref="g:exit", symbol=s, side=f.side,
                    quantity=f.quantity, price=f.price, commission=f.commission, ts_ns=f.ts_ns))
    mark = {"AAPL": D(marks[0]) / 100, "MSFT": D(marks[1]) / 100}
    trades = round_trips(fills)
    m = metrics(trades, capital=D(100_000), marks=mark, zone=NY)

    realized = sum((p.realized_pnl for p in positions.values()), D(0))
    commissions = sum((p.commissions for p in positions.values()), D(0))
    unrealized = sum((unrealized_pnl(p, mark[s]) for s, p in positions.items()), D(0))
    closed_net = sum((t.net_pnl for t in trades if not t.is_open), D(0))
    open_net = sum((t.net_pnl for t in trades if t.is_open), D(0))
    assert closed_net + open_net + m.unrealized_pnl == realized + unrealized - commissions
    assert (m.realized_pnl, m.unrealized_pnl, m.commissions) == (realized, unrealized, commissions)
    assert m.net_pnl == realized + unrealized - commissions
    if close_out:
        # every position flat: the closed trades alone carry the position's realized P&L
        assert (m.open_trades, m.unrealized_pnl) == (0, 0)
        assert closed_net == realized - commissions
    # a trade opens at most once per fill and the open ones are exactly the non-flat positions
    assert sum(t.fills for t in trades) >= len(fills)
    assert {t.symbol: t.direction * t.open_quantity for t in trades if t.is_open} == {
        s: p.quantity for s, p in positions.items() if p.quantity}
    for t in trades:
        if not t.is_open:
            assert t.open_quantity == 0 and t.exit_price is not None
