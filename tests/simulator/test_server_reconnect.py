"""Acceptance: drops, TWS restarts and reconnects; the broker's state outlives client connections."""

from __future__ import annotations

from decimal import Decimal

import pytest
from ibapi.execution import ExecutionFilter

from simulator.market import WalkParams
from simulator.server import SymbolSpec, SimulatorThread
from tests.simulator.conftest import Connect, MakeSim, eventually
from tests.simulator.ibapp import IBApp, order, stock

pytestmark = pytest.mark.timeout(30)

D = Decimal
BID, ASK = 1, 2
AAPL = stock("AAPL")
VOLATILE = (SymbolSpec(symbol="AAPL", walk=WalkParams(volatility=8.0)), SymbolSpec(symbol="MSFT"))


def _touch(app: IBApp, req_id: int = 1) -> dict[int, Decimal]:
    return {c.args[1]: D(str(c.args[2])) for c in app.named("tickPrice") if c.args[0] == req_id}


def _place(app: IBApp, o, contract=AAPL) -> int:
    oid = app.take_id()
    app.placeOrder(oid, contract, o)
    return oid


def _status_of(app: IBApp, oid: int, after: int = 0) -> str | None:
    found = [c.args[1] for c in app.named("orderStatus", after) if c.args[0] == oid]
    return found[-1] if found else None


def _step_server_until(sim: SimulatorThread, predicate, seconds: float = 1.0, max_steps: int = 60) -> None:
    """Step market time while no client is connected, until the broker's own state satisfies predicate."""
    for _ in range(max_steps):
        sim.step(seconds)
        if predicate(sim.snapshot()):
            return
    raise AssertionError("the broker never reached the expected state")


def _setup_orders(sim: SimulatorThread, app: IBApp) -> dict[str, int]:
    """Fill a bracket's entry, and leave one far and one near resting order working."""
    app.reqMktData(1, AAPL, "", False, False, [])
    app.sync()
    sim.step(1)
    app.sync()
    touch = _touch(app)
    ids = {
        "entry": _place(app, order("BUY", 100, "LMT", lmtPrice=float(touch[ASK] + 1), transmit=False)),
    }
    ids["target"] = _place(app, order("SELL", 100, "LMT", lmtPrice=float(touch[ASK] + 200),
                                      parentId=ids["entry"], transmit=False))
    ids["stop"] = _place(app, order("SELL", 100, "STP", auxPrice=float(touch[BID] - 200), parentId=ids["entry"]))
    ids["near"] = _place(app, order("BUY", 50, "LMT", lmtPrice=float(touch[BID] - 1), tif="GTC"))
    app.wait_call("orderStatus", lambda o, s, *a: o == ids["near"] and s == "Submitted")
    app.wait_call("orderStatus", lambda o, s, *a: o == ids["stop"] and s == "Submitted")
    return ids


def test_dropped_client_reconnects_and_recovers_fills_made_meanwhile_and_open_orders(
        make_sim: MakeSim, connect: Connect) -> None:
    sim = make_sim(symbols=VOLATILE)
    app = connect(sim, 3)
    ids = _setup_orders(sim, app)
    first_id = app.named("nextValidId")[-1].args[0]
    assert sim.drop(3) == 1
    app.wait_call("connectionClosed")
    _step_server_until(sim, lambda snap: snap["executions"] == 2)  # the near order filled while away
    mark = app.mark()
    app.start(sim.port, 3)
    assert app.named("nextValidId", mark)[0].args[0] > first_id
    # TWS re-sends the client's working orders on connect: the bracket children are still working.
    app.wait_call("orderStatus", lambda o, s, *a: o == ids["stop"] and s == "Submitted", after=mark)
    assert _status_of(app, ids["target"], mark) == "Submitted"
    assert _status_of(app, ids["near"], mark) is None  # it is done: not re-sent as open

    app.reqExecutions(7, ExecutionFilter())
    app.wait_call("execDetailsEnd", lambda rid: rid == 7)
    recovered = {c.args[2].orderId: c.args[2] for c in app.named("execDetails", mark) if c.args[0] == 7}
    assert set(recovered) == {ids["entry"], ids["near"]}
    assert recovered[ids["near"]].shares == D(50) and recovered[ids["near"]].side == "BOT"
    reports = {c.args[0].execId for c in app.named("commissionAndFeesReport", mark)}
    assert {e.execId for e in recovered.values()} <= reports

    app.reqOpenOrders()
    app.wait_call("openOrderEnd")
    opened = {c.args[0]: c.args[3].status for c in app.named("openOrder", mark)}
    assert opened == {ids["target"]: "Submitted", ids["stop"]: "Submitted"}

    app.reqCompletedOrders(True)
    app.wait_call("completedOrdersEnd")
    completed = {(c.args[1].permId, c.args[2].status) for c in app.named("completedOrder")}
    assert {status for _, status in completed} == {"Filled"} and len(completed) == 2

    app.reqPositions()
    app.wait_call("positionEnd")
    assert [(c.args[1].symbol, c.args[2]) for c in app.named("position")] == [("AAPL", D(150))]


def test_fill_while_away_keeps_its_limit_price(make_sim: MakeSim, connect: Connect) -> None:
    sim = make_sim(symbols=VOLATILE)
    app = connect(sim, 3)
    ids = _setup_orders(sim, app)
    limit = [c.args[2].lmtPrice for c in app.named("openOrder") if c.args[0] == ids["near"]][0]
    sim.drop()
    app.wait_call("connectionClosed")
    _step_server_until(sim, lambda snap: snap["executions"] == 2)
    app.start(sim.port, 3)
    app.reqExecutions(8, ExecutionFilter())
    app.wait_call("execDetailsEnd", lambda rid: rid == 8)
    (fill,) = [c.args[2] for c in app.named("execDetails") if c.args[0] == 8 and c.args[2].orderId == ids["near"]]
    assert fill.price <= limit


def test_execution_filter_selects_by_symbol_side_and_client(sim: SimulatorThread, connect: Connect) -> None:
    one = connect(sim, 1)
    one.reqMktData(1, AAPL, "", False, False, [])
    one.sync()
    sim.step(1)
    for symbol in ("AAPL", "MSFT"):
        oid = _place(one, order("BUY", 100), stock(symbol))
        one.wait_call("orderStatus", lambda o, s, *rest: o == oid)
    two = connect(sim, 2)  # order ids are unique across clients: its nextValidId is above client 1's
    oid = _place(two, order("SELL", 100))
    two.wait_call("orderStatus", lambda o, s, *rest: o == oid)
    sim.step(1)
    one.sync()
    cases = [({}, 3), ({"symbol": "AAPL"}, 2), ({"side": "SELL"}, 1), ({"clientId": 1}, 2),
             ({"clientId": 2, "symbol": "MSFT"}, 0)]
    for req_id, (fields, count) in enumerate(cases, start=20):
        f = ExecutionFilter()
        for name, value in fields.items():
            setattr(f, name, value)
        one.reqExecutions(req_id, f)
        one.wait_call("execDetailsEnd", lambda rid, r=req_id: rid == r)
        assert len([c for c in one.named("execDetails") if c.args[0] == req_id]) == count, fields


def test_refuse_acts_like_a_tws_restart_then_accepts_again(sim: SimulatorThread, app: IBApp) -> None:
    app.reqMktData(1, AAPL, "", False, False, [])
    app.sync()
    sim.refuse(0.5)
    app.wait_call("connectionClosed")
    mark = app.mark()
    app.start(sim.port, 1, wait=False)
    assert not app.isConnected() and app.errors(502, mark)  # "Couldn't connect to TWS"

    def reconnected() -> bool:
        if not app.isConnected():
            app.start(sim.port, 1, wait=False)
        return bool(app.named("nextValidId", mark))
    eventually(reconnected, timeout=5, what="the simulator to accept connections again")
    assert sim.snapshot()["clients"] == [1]
    # Subscriptions died with the old socket: a new request streams again.
    app.reqMktData(2, AAPL, "", False, False, [])
    app.sync()
    sim.step(1)
    app.wait_call("tickPrice", lambda rid, *a: rid == 2, count=3)


def test_state_outlives_connections_for_a_new_session_of_the_same_client(
        sim: SimulatorThread, connect: Connect) -> None:
    first = connect(sim, 4)
    first.reqMktData(1, AAPL, "", False, False, [])
    first.sync()
    sim.step(1)
    first.sync()
    bid = _touch(first)[BID]
    filled = _place(first, order("BUY", 100))
    resting = _place(first, order("BUY", 100, "LMT", lmtPrice=float(bid - 20)))
    first.wait_call("orderStatus", lambda o, s, *a: o == resting and s == "Submitted")
    first.stop()
    eventually(lambda: sim.snapshot()["clients"] == [], what="client 4 to be gone")
    sim.step(5)
    second = connect(sim, 4)
    # Its working order is announced on connect, and the fill is still listed.
    second.wait_call("openOrder", lambda o, *a: o == resting)
    assert second.named("nextValidId")[0].args[0] > resting
    second.reqExecutions(1, ExecutionFilter())
    second.wait_call("execDetailsEnd")
    assert [c.args[2].orderId for c in second.named("execDetails")] == [filled]
    second.reqPositions()
    second.wait_call("positionEnd")
    assert [(c.args[1].symbol, c.args[2]) for c in second.named("position")] == [("AAPL", D(100))]
