"""Tests for simulator.account: fills at IB avgCost, cash, P&L invariants, summary tags and formatting."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given, settings, strategies as st

from core.errors import InvalidExecution
from core.types import Execution, Side
from simulator.account import (
    Account,
    AccountError,
    apply_execution,
    apply_fill,
    format_money,
    gross_position_value,
    holding,
    mark,
    mark_many,
    mark_price,
    net_liquidation,
    open_account,
    positions,
    summary,
    unrealized_pnl,
)

D = Decimal
C0 = D(1_000_000)
BUY, SELL = Side.BUY, Side.SELL

Fill = tuple[Side, str, str, str]  # side, quantity, price, commission


def run(fills: list[Fill], symbol: str = "AAPL") -> Account:
    account = open_account()
    for side, qty, px, comm in fills:
        account = apply_fill(account, symbol, side, D(qty), D(px), D(comm))
    return account


@pytest.mark.parametrize(
    ("fills", "quantity", "avg_cost", "realized", "cash_change"),
    [
        # long open: commission raises the cost
        ([(BUY, "100", "50", "1")], "100", "50.01", "0", "-5001"),
        ([(BUY, "100", "50", "1"), (BUY, "100", "60", "1")], "200", "55.01", "0", "-11002"),
        # partial and full close realize against avgCost, minus the closing commission
        ([(BUY, "100", "50", "1"), (SELL, "40", "55", "1")], "60", "50.01", "198.6", "-2802"),
        ([(BUY, "100", "50", "1"), (SELL, "100", "55", "1")], "0", "0", "498", "498"),
        # short open: commission lowers the proceeds
        ([(SELL, "100", "50", "1")], "-100", "49.99", "0", "4999"),
        ([(SELL, "100", "50", "1"), (BUY, "100", "45", "1")], "0", "0", "498", "498"),
        ([(SELL, "100", "50", "1"), (SELL, "100", "40", "3")], "-200", "44.98", "0", "8996"),
        # flips: the commission is split pro rata between the closed and the opened part
        ([(BUY, "100", "50", "2"), (SELL, "150", "55", "3")], "-50", "54.98", "496", "3245"),
        ([(SELL, "100", "50", "0"), (BUY, "300", "40", "3")], "200", "40.01", "999", "-7003"),
        # losses
        ([(BUY, "10", "100", "0"), (SELL, "10", "90", "0")], "0", "0", "-100", "-100"),
    ],
)
def test_fill_table_quantity_avg_cost_realized_and_cash(
        fills: list[Fill], quantity: str, avg_cost: str, realized: str, cash_change: str) -> None:
    account = run(fills)
    h = holding(account, "AAPL")
    assert (h.quantity, h.avg_cost, account.realized_pnl) == (D(quantity), D(avg_cost), D(realized))
    assert account.cash - C0 == D(cash_change)


def test_commissions_reduce_cash_and_accumulate() -> None:
    account = run([(BUY, "100", "10", "1.25"), (SELL, "100", "10", "1.75")])
    assert account.cash == C0 - D("3.00")
    assert account.commissions == D("3.00")
    assert account.realized_pnl == D("-3.00")


def test_net_liquidation_is_cash_plus_marked_positions() -> None:
    account = open_account()
    account = apply_fill(account, "AAPL", BUY, D(100), D(50), D(1))
    account = apply_fill(account, "MSFT", SELL, D(20), D(300), D(1))
    account = mark_many(account, {"AAPL": D("52.5"), "MSFT": D(310)})
    assert net_liquidation(account) == account.cash + 100 * D("52.5") - 20 * D(310)
    assert gross_position_value(account) == 100 * D("52.5") + 20 * D(310)


def test_fill_marks_its_symbol_only_when_unmarked() -> None:
    account = apply_fill(open_account(), "AAPL", BUY, D(1), D(50))
    assert mark_price(account, "AAPL") == D(50)
    account = apply_fill(mark(account, "AAPL", D(51)), "AAPL", BUY, D(1), D(49))
    assert mark_price(account, "AAPL") == D(51)


def test_apply_execution_equals_apply_fill() -> None:
    ex = Execution(exec_id="e1", order_id=1, order_ref="g-1", symbol="AAPL", side=SELL,
                   quantity=D(5), price=D("10.5"), commission=D("0.35"))
    assert apply_execution(open_account(), ex) == apply_fill(
        open_account(), "AAPL", SELL, D(5), D("10.5"), D("0.35"))


@pytest.mark.parametrize(
    ("side", "quantity", "price", "commission"),
    [(BUY, "0", "10", "0"), (BUY, "-1", "10", "0"), (BUY, "1", "0", "0"), (BUY, "1", "-5", "0"),
     (BUY, "1", "10", "-1"), (BUY, "NaN", "10", "0"), (BUY, "1", "Infinity", "0"), ("BUY", "1", "10", "0")],
)
def test_invalid_fill_raises_invalid_execution(side: Side, quantity: str, price: str, commission: str) -> None:
    with pytest.raises(InvalidExecution):
        apply_fill(open_account(), "AAPL", side, D(quantity), D(price), D(commission))


@pytest.mark.parametrize("price", ["0", "-1", "NaN"])
def test_mark_non_positive_price_raises(price: str) -> None:
    with pytest.raises(AccountError):
        mark(open_account(), "AAPL", D(price))


def test_positions_keep_first_trade_order_and_report_closed_as_zero() -> None:
    account = open_account()
    account = apply_fill(account, "MSFT", BUY, D(10), D(300), D(1))
    account = apply_fill(account, "AAPL", SELL, D(5), D(100), D(1))
    account = apply_fill(account, "MSFT", SELL, D(10), D(301), D(1))
    assert positions(account) == (("MSFT", D(0), D(0)), ("AAPL", D(-5), D("99.8")))


# ---------------------------------------------------------------------------------- invariants

fill_st = st.tuples(
    st.sampled_from([BUY, SELL]),
    st.integers(min_value=1, max_value=500).map(D),
    st.integers(min_value=1, max_value=50_000).map(lambda c: D(c) / 100),
    st.integers(min_value=0, max_value=500).map(lambda c: D(c) / 100),
)


def reference_realized(fills: list[tuple[Side, Decimal, Decimal, Decimal]]) -> Fraction:
    """Average-cost realized P&L from a total cost basis, in exact fractions (commissions in)."""
    qty, basis, realized = Fraction(0), Fraction(0), Fraction(0)  # basis: signed cost incl. fees
    for side, q, p, c in fills:
        q, p, c = Fraction(q) * side.sign, Fraction(p), Fraction(c)
        if qty == 0 or (qty > 0) == (q > 0):
            basis += q * p + c
            qty += q
            continue
        closed = min(abs(q), abs(qty)) * (1 if q > 0 else -1)
        share = c * abs(closed) / abs(q)
        released = basis * (-closed) / qty
        realized += -closed * p - released - share
        basis -= released
        qty += closed
        rest = q - closed
        if rest:
            basis = rest * p + (c - share)
            qty = rest
    return realized


@given(fills=st.lists(fill_st, min_size=1, max_size=25),
       marks=st.integers(min_value=1, max_value=50_000).map(lambda c: D(c) / 100))
@settings(max_examples=150)
def test_realized_plus_unrealized_equals_net_liquidation_change(fills: list, marks: Decimal) -> None:
    account = open_account()
    for side, q, p, c in fills:
        account = apply_fill(account, "AAPL", side, q, p, c)
    account = mark(account, "AAPL", marks)
    cash_flows = sum((-s.sign * q * p - c for s, q, p, c in fills), D(0))
    position = sum((s.sign * q for s, q, _, _ in fills), D(0))
    tol = D("1e-12")
    assert holding(account, "AAPL").quantity == position
    assert abs(account.cash - (C0 + cash_flows)) <= tol
    assert abs(net_liquidation(account) - (C0 + cash_flows + position * marks)) <= tol
    assert abs(account.realized_pnl + unrealized_pnl(account) - (net_liquidation(account) - C0)) <= tol
    assert abs(Fraction(account.realized_pnl) - reference_realized(fills)) <= Fraction(1, 10**12)


# ---------------------------------------------------------------------------------- summary


def test_summary_of_a_fresh_account() -> None:
    values = summary(open_account())
    expected = {
        "AccountType": ("INDIVIDUAL", ""), "NetLiquidation": ("1000000.00", "USD"),
        "TotalCashValue": ("1000000.00", "USD"), "BuyingPower": ("4000000.00", "USD"),
        "GrossPositionValue": ("0.00", "USD"), "AvailableFunds": ("1000000.00", "USD"),
        "ExcessLiquidity": ("1000000.00", "USD"), "EquityWithLoanValue": ("1000000.00", "USD"),
        "RealizedPnL": ("0.00", "USD"), "UnrealizedPnL": ("0.00", "USD"),
        "Currency": ("USD", "USD"), "Cushion": ("1.000000", ""), "Leverage": ("0.00", ""),
        "DayTradesRemaining": ("-1", ""),
    }
    assert {k: values[k] for k in expected} == expected


def test_summary_with_a_marked_long_position() -> None:
    account = apply_fill(open_account(), "AAPL", BUY, D(1000), D(100), D(5))
    values = summary(mark(account, "AAPL", D(101)))
    assert {k: values[k][0] for k in (
        "TotalCashValue", "NetLiquidation", "GrossPositionValue", "InitMarginReq", "MaintMarginReq",
        "AvailableFunds", "ExcessLiquidity", "BuyingPower", "UnrealizedPnL", "RealizedPnL",
        "RegTMargin", "SMA", "Leverage")} == {
        "TotalCashValue": "899995.00", "NetLiquidation": "1000995.00",
        "GrossPositionValue": "101000.00", "InitMarginReq": "50500.00",
        "MaintMarginReq": "25250.00", "AvailableFunds": "950495.00",
        "ExcessLiquidity": "975745.00", "BuyingPower": "3902980.00",
        "UnrealizedPnL": "995.00", "RealizedPnL": "0.00", "RegTMargin": "50500.00",
        "SMA": "950495.00", "Leverage": "0.10"}


def test_summary_short_position_adds_proceeds_to_cash_and_counts_gross() -> None:
    account = mark(apply_fill(open_account(), "AAPL", SELL, D(100), D(50), D(0)), "AAPL", D(55))
    values = summary(account)
    assert values["TotalCashValue"][0] == "1005000.00"
    assert values["NetLiquidation"][0] == "999500.00"
    assert values["GrossPositionValue"][0] == "5500.00"
    assert values["UnrealizedPnL"][0] == "-500.00"


@pytest.mark.parametrize(
    ("tags", "keys"),
    [
        ("NetLiquidation,TotalCashValue,BuyingPower", ["NetLiquidation", "TotalCashValue", "BuyingPower"]),
        (["AccountType", "NoSuchTag"], ["AccountType"]),
        ("ReqTEquity,RegTMargin", ["ReqTEquity", "RegTMargin"]),
        ("$LEDGER", ["Currency", "CashBalance", "TotalCashBalance", "AccruedCash", "StockMarketValue",
                     "NetLiquidationByCurrency", "RealizedPnL", "UnrealizedPnL", "ExchangeRate"]),
        ("$LEDGER:EUR", []),
        ("", []),
    ],
)
def test_summary_answers_exactly_the_requested_tags(tags: str | list[str], keys: list[str]) -> None:
    assert list(summary(open_account(), tags)) == keys


@pytest.mark.parametrize(
    ("value", "text"),
    [(D(1), "1.00"), (D("-0.001"), "0.00"), (D("1234567.891"), "1234567.89"), (D("1E+3"), "1000.00"),
     (D("-5.5"), "-5.50"), (D("0.005"), "0.00"), (D("0.015"), "0.02"), (D("1e-30"), "0.00")],
)
def test_format_money_plain_two_places(value: Decimal, text: str) -> None:
    assert format_money(value) == text


def test_summary_values_parse_back_as_plain_decimals() -> None:
    account = run([(BUY, "333", "33.33", "1.11"), (SELL, "111", "35.55", "0.37")])
    for tag, (value, currency) in summary(mark(account, "AAPL", D("34.44"))).items():
        if currency == "USD" and tag != "Currency":
            assert "E" not in value and "," not in value
            assert D(value) == D(value).quantize(D("0.01"))
