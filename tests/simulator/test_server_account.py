"""Acceptance: positions and account summary agree with the fills and commissions the client saw."""

from __future__ import annotations

from decimal import Decimal

import pytest

from simulator.server import SimulatorThread
from tests.simulator.conftest import Connect, step_until
from tests.simulator.ibapp import IBApp, order, stock

pytestmark = pytest.mark.timeout(30)

D = Decimal
LAST = 4
CASH = D(1_000_000)
TAGS = "NetLiquidation,TotalCashValue,RealizedPnL,UnrealizedPnL"


class Book:
    """The client's own ledger, built only from execDetails and commission reports (IB's avgCost rules)."""

    def __init__(self) -> None:
        self.qty: dict[str, Decimal] = {}
        self.avg: dict[str, Decimal] = {}
        self.cash = CASH
        self.realized = D(0)
        self.realized_by_exec: dict[str, Decimal] = {}

    def apply(self, symbol: str, side: str, shares: Decimal, price: Decimal, fee: Decimal, exec_id: str) -> None:
        sign = 1 if side == "BOT" else -1
        q, avg = self.qty.get(symbol, D(0)), self.avg.get(symbol, D(0))
        self.cash -= sign * shares * price + fee
        realized = D(0)
        if q == 0 or (q > 0) == (sign > 0):           # open or add: the fee goes into avgCost
            new_avg = (abs(q) * avg + shares * price + sign * fee) / (abs(q) + shares)
        else:                                          # reduce, close or flip
            closed = min(shares, abs(q))
            close_fee = fee * closed / shares
            realized = (price - avg) * closed * (1 if q > 0 else -1) - close_fee
            opened = shares - closed
            new_avg = price + sign * (fee - close_fee) / opened if opened else (avg if q + sign * shares else D(0))
        self.qty[symbol], self.avg[symbol] = q + sign * shares, new_avg
        self.realized += realized
        self.realized_by_exec[exec_id] = realized


def _ledger(app: IBApp) -> Book:
    fees = {c.args[0].execId: D(str(c.args[0].commissionAndFees)) for c in app.named("commissionAndFeesReport")}
    book = Book()
    for c in app.named("execDetails"):
        if c.args[0] != -1:
            continue
        ex = c.args[2]
        book.apply(c.args[1].symbol, ex.side, ex.shares, D(str(ex.price)), fees[ex.execId], ex.execId)
    return book


def _last_trade(app: IBApp, req_id: int) -> Decimal:
    return [D(str(c.args[2])) for c in app.named("tickPrice") if c.args[0] == req_id and c.args[1] == LAST][-1]


def _fill(sim: SimulatorThread, app: IBApp, symbol: str, action: str, quantity: int) -> None:
    oid = app.take_id()
    app.placeOrder(oid, stock(symbol), order(action, quantity))
    step_until(sim, app, lambda: any(c.args[0] == oid and c.args[1] == "Filled" for c in app.named("orderStatus")),
               seconds=0.25)
    app.wait_call("commissionAndFeesReport", count=len(app.named("execDetails")))


def _trade_session(sim: SimulatorThread, app: IBApp) -> None:
    app.reqMktData(1, stock("AAPL"), "", False, False, [])
    app.reqMktData(2, stock("MSFT"), "", False, False, [])
    app.sync()
    sim.step(1)
    _fill(sim, app, "AAPL", "BUY", 300)
    sim.step(3)
    _fill(sim, app, "MSFT", "BUY", 200)
    _fill(sim, app, "AAPL", "BUY", 1500)   # large: several partial fills, each paying its own fee
    sim.step(7)
    _fill(sim, app, "AAPL", "SELL", 700)
    sim.step(5)
    _fill(sim, app, "MSFT", "SELL", 300)   # flips to a short of 100
    sim.step(11)                           # the market moves on: unrealized P&L changes
    app.sync()


def test_positions_match_quantities_and_commission_inclusive_avg_cost_from_executions(
        sim: SimulatorThread, app: IBApp) -> None:
    _trade_session(sim, app)
    book = _ledger(app)
    assert book.qty == {"AAPL": D(1100), "MSFT": D(-100)}
    app.reqPositions()
    app.wait_call("positionEnd")
    got = {c.args[1].symbol: (c.args[2], c.args[3]) for c in app.named("position")}
    assert set(got) == {"AAPL", "MSFT"} and all(c.args[0] == "DU1234567" for c in app.named("position"))
    for symbol, (quantity, avg_cost) in got.items():
        assert quantity == book.qty[symbol]
        assert avg_cost == pytest.approx(float(book.avg[symbol]), rel=1e-9)


def test_commission_reports_carry_the_realized_pnl_of_closing_fills(sim: SimulatorThread, app: IBApp) -> None:
    _trade_session(sim, app)
    book = _ledger(app)
    reports = {c.args[0].execId: c.args[0] for c in app.named("commissionAndFeesReport")}
    closing = {e: r for e, r in book.realized_by_exec.items() if r}
    assert closing
    for exec_id, realized in closing.items():
        assert reports[exec_id].realizedPNL == pytest.approx(float(realized), abs=1e-6)


def test_account_summary_cash_realized_and_net_liquidation_match_the_clients_ledger(
        sim: SimulatorThread, app: IBApp) -> None:
    _trade_session(sim, app)
    book = _ledger(app)
    marks = {"AAPL": _last_trade(app, 1), "MSFT": _last_trade(app, 2)}
    app.reqAccountSummary(9, "All", TAGS)
    app.wait_call("accountSummaryEnd", lambda rid: rid == 9)
    values = {c.args[2]: (D(c.args[3]), c.args[4]) for c in app.named("accountSummary") if c.args[0] == 9}
    assert set(values) == set(TAGS.split(",")) and {ccy for _, ccy in values.values()} == {"USD"}
    unrealized = sum((marks[s] - book.avg[s]) * q for s, q in book.qty.items())
    expected = {
        "TotalCashValue": book.cash,
        "RealizedPnL": book.realized,
        "UnrealizedPnL": unrealized,
        "NetLiquidation": book.cash + sum(q * marks[s] for s, q in book.qty.items()),
    }
    for tag, value in expected.items():
        assert abs(values[tag][0] - value) <= D("0.01"), tag
    # IB's identity: what the account gained is realized plus unrealized P&L.
    assert abs(values["NetLiquidation"][0] - CASH - values["RealizedPnL"][0] - values["UnrealizedPnL"][0]) <= D("0.02")


def test_position_subscription_streams_updates_after_each_fill(sim: SimulatorThread, app: IBApp) -> None:
    app.reqMktData(1, stock("SPY"), "", False, False, [])
    app.reqPositions()
    app.wait_call("positionEnd")
    assert not app.named("position")
    sim.step(1)
    _fill(sim, app, "SPY", "BUY", 200)
    app.wait_call("position", lambda acct, c, q, avg: c.symbol == "SPY" and q == D(200))
    app.cancelPositions()
    app.sync()
    mark = app.mark()
    _fill(sim, app, "SPY", "SELL", 200)
    assert not app.named("position", mark)


def test_positions_and_summary_are_account_wide_across_client_ids(sim: SimulatorThread, connect: Connect) -> None:
    trader = connect(sim, 1)
    trader.reqMktData(1, stock("NVDA"), "", False, False, [])
    trader.sync()
    sim.step(1)
    _fill(sim, trader, "NVDA", "BUY", 100)
    watcher = connect(sim, 2)
    watcher.reqPositions()
    watcher.wait_call("positionEnd")
    assert [(c.args[1].symbol, c.args[2]) for c in watcher.named("position")] == [("NVDA", D(100))]
