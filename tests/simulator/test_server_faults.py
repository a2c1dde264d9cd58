"""Acceptance: injected faults as the official ibapi client sees them (link loss, duplicates, races, silence)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from ibapi.execution import ExecutionFilter
from ibapi.order_cancel import OrderCancel

from simulator.market import WalkParams
from simulator.server import SimulatorThread, SymbolSpec
from tests.simulator.conftest import Connect, MakeSim
from tests.simulator.ibapp import IBApp, order, stock

pytestmark = pytest.mark.timeout(30)

D = Decimal
BID, ASK = 1, 2
AAPL, MSFT = stock("AAPL"), stock("MSFT")
VOLATILE = (SymbolSpec(symbol="AAPL", walk=WalkParams(volatility=8.0)),)  # a resting limit fills within seconds


def _subscribe(sim: SimulatorThread, app: IBApp, *symbols: str) -> None:
    for req_id, symbol in enumerate(symbols or ("AAPL",), start=1):
        app.reqMktData(req_id, stock(symbol), "", False, False, [])
    app.sync()
    sim.step(1)
    app.sync()


def _bid(app: IBApp, req_id: int = 1) -> Decimal:
    return [D(str(c.args[2])) for c in app.named("tickPrice") if c.args[0] == req_id and c.args[1] == BID][-1]


def _place(app: IBApp, o, contract=AAPL) -> int:
    oid = app.take_id()
    app.placeOrder(oid, contract, o)
    return oid


def _index(app: IBApp, name: str, match=lambda *a: True) -> int:
    return next(i for i, c in enumerate(app.calls) if c.name == name and match(*c.args))


def _ticks_after(app: IBApp, mark: int, req_id: int | None = None) -> int:
    return len([c for c in app.named("tickPrice", mark) if req_id is None or c.args[0] == req_id])


def test_link_loss_1100_pauses_data_and_order_events_then_1101_delivers_held_events_and_drops_data(
        sim: SimulatorThread, app: IBApp) -> None:
    _subscribe(sim, app)
    sim.lose_link()
    app.wait_call("error", lambda rid, t, code, *a: rid == -1 and code == 1100)
    assert app.isConnected()  # the API socket stays open through 1100
    mark = app.mark()
    sim.step(2)
    oid = _place(app, order("BUY", 100))
    app.sync()
    assert _ticks_after(app, mark) == 0
    assert not [c for c in app.calls[mark:] if c.name in ("openOrder", "orderStatus", "execDetails")]

    sim.restore_link(data_kept=False)
    app.wait_call("orderStatus", lambda o, s, *a: o == oid and s == "Filled")
    restored = _index(app, "error", lambda rid, t, code, *a: code == 1101)
    assert restored < _index(app, "openOrder", lambda o, *a: o == oid)
    assert restored < _index(app, "execDetails", lambda rid, c, e: e.orderId == oid)
    # 1101: data was lost; subscriptions are gone until re-requested.
    mark = app.mark()
    sim.step(2)
    app.sync()
    assert _ticks_after(app, mark) == 0
    app.reqMktData(9, AAPL, "", False, False, [])
    app.sync()
    sim.step(1)
    app.sync()
    assert _ticks_after(app, mark, 9) >= 12


def test_link_restored_with_data_kept_1102_resumes_ticks_without_resubscribing(sim: SimulatorThread, app: IBApp) -> None:
    _subscribe(sim, app)
    sim.lose_link()
    sim.step(1)
    sim.restore_link(data_kept=True)
    app.wait_call("error", lambda rid, t, code, *a: rid == -1 and code == 1102)
    mark = app.mark()
    sim.step(1)
    app.sync()
    assert _ticks_after(app, mark, 1) >= 12
    assert not app.errors(1101)


def test_fill_during_link_outage_arrives_after_restore(make_sim: MakeSim, connect: Connect) -> None:
    sim = make_sim(symbols=VOLATILE)
    app = connect(sim)
    _subscribe(sim, app)
    oid = _place(app, order("BUY", 100, "LMT", lmtPrice=float(_bid(app) - 1)))
    app.wait_call("orderStatus", lambda o, s, *a: o == oid and s == "Submitted")
    sim.lose_link()
    app.wait_call("error", lambda rid, t, code, *a: code == 1100)
    for _ in range(60):
        sim.step(1)
        if sim.snapshot()["executions"]:
            break
    assert sim.snapshot()["executions"] == 1
    app.sync()
    assert not [c for c in app.named("execDetails") if c.args[2].orderId == oid]
    sim.restore_link(data_kept=True)
    app.wait_call("execDetails", lambda rid, c, e: e.orderId == oid)
    assert _index(app, "error", lambda rid, t, code, *a: code == 1102) < _index(app, "execDetails")


def test_duplicate_statuses_fault_repeats_identical_order_status(sim: SimulatorThread, app: IBApp) -> None:
    _subscribe(sim, app)
    bid = _bid(app)
    sim.duplicate_statuses(1)
    oid = _place(app, order("BUY", 100, "LMT", lmtPrice=float(bid - 5)))
    app.wait_call("orderStatus", lambda o, *a: o == oid, count=2)
    first, second = [c.args for c in app.named("orderStatus") if c.args[0] == oid]
    assert first == second and first[1] == "Submitted"
    other = _place(app, order("BUY", 100, "LMT", lmtPrice=float(bid - 6)))
    app.wait_call("orderStatus", lambda o, *a: o == other)
    app.sync()
    assert len([c for c in app.named("orderStatus") if c.args[0] == other]) == 1  # the fault was used up


def test_fill_after_cancel_fault_acks_cancel_then_reports_the_fill(sim: SimulatorThread, app: IBApp) -> None:
    _subscribe(sim, app)
    bid = _bid(app)
    oid = _place(app, order("BUY", 100, "LMT", lmtPrice=float(bid - 5)))
    app.wait_call("orderStatus", lambda o, s, *a: o == oid and s == "Submitted")
    sim.fill_after_cancel(1)
    app.cancelOrder(oid, OrderCancel())
    app.wait_call("orderStatus", lambda o, s, *a: o == oid and s == "Filled")
    trace = [(c.name, c.args[1] if c.name == "orderStatus" else c.args[2] if c.name == "error" else "")
             for c in app.calls
             if (c.name in ("orderStatus", "error") and c.args[0] == oid)
             or (c.name == "execDetails" and c.args[2].orderId == oid)]
    assert trace == [("orderStatus", "Submitted"), ("orderStatus", "Cancelled"), ("error", 202),
                     ("execDetails", ""), ("orderStatus", "Filled")]
    (ex,) = [c.args[2] for c in app.named("execDetails") if c.args[2].orderId == oid]
    assert ex.shares == D(100) and D(str(ex.price)) == bid - 5  # filled at its limit
    app.reqPositions()
    app.wait_call("positionEnd")
    assert [(c.args[1].symbol, c.args[2]) for c in app.named("position")] == [("AAPL", D(100))]
    app.reqExecutions(3, ExecutionFilter())
    app.wait_call("execDetailsEnd")
    assert [c.args[2].orderId for c in app.named("execDetails") if c.args[0] == 3] == [oid]


def test_silenced_symbol_stops_ticking_while_others_continue_then_resumes(sim: SimulatorThread, app: IBApp) -> None:
    _subscribe(sim, app, "AAPL", "MSFT")
    sim.silence("AAPL")
    mark = app.mark()
    sim.step(2)
    app.sync()
    assert _ticks_after(app, mark, 1) == 0 and _ticks_after(app, mark, 2) >= 24
    assert not app.errors(None, mark)  # silent: no notice of any kind
    sim.silence("AAPL", False)
    mark = app.mark()
    sim.step(1)
    app.sync()
    assert _ticks_after(app, mark, 1) >= 12


def test_silenced_symbol_still_fills_working_orders(make_sim: MakeSim, connect: Connect) -> None:
    sim = make_sim(symbols=VOLATILE)
    app = connect(sim)
    _subscribe(sim, app)
    oid = _place(app, order("BUY", 100, "LMT", lmtPrice=float(_bid(app) - 1)))
    app.wait_call("orderStatus", lambda o, s, *a: o == oid and s == "Submitted")
    sim.silence("AAPL")
    mark = app.mark()
    for _ in range(60):
        sim.step(1)
        if sim.snapshot()["executions"]:
            break
    app.wait_call("orderStatus", lambda o, s, *a: o == oid and s == "Filled")
    app.sync()
    assert _ticks_after(app, mark) == 0
    assert sim.snapshot()["positions"] == {"AAPL": "100"}
