"""Acceptance: the faults and views issue 9's chaos run needs (pacing squeeze, frozen market, order log, subscriptions)."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest

from core.types import OrderType, Side
from simulator import control
from simulator.server import SimulatorThread
from tests.simulator.conftest import Connect, MakeSim, eventually
from tests.simulator.ibapp import IBApp, order, stock

pytestmark = pytest.mark.timeout(30)

D = Decimal
AAPL = stock("AAPL")


class Wall:
    """A wall clock the test moves by hand (pacing windows, the accelerated market clock)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _ticks(app: IBApp, after: int, req_id: int = 1) -> int:
    return len([c for c in app.named("tickPrice", after) if c.args[0] == req_id])


def _execute(sim: SimulatorThread, request: dict[str, Any]) -> dict[str, Any]:
    return sim.call(control.execute, sim.sim, request)


def test_order_log_records_each_new_order_once_with_the_position_working_orders_and_quote_it_met(
        sim: SimulatorThread, app: IBApp) -> None:
    app.reqMktData(1, AAPL, "", False, False, [])
    sim.step(1)
    app.sync()
    buy = app.take_id()
    app.placeOrder(buy, AAPL, order("BUY", 100, orderRef="g1:entry"))
    app.wait_call("orderStatus", lambda o, s, *a: o == buy and s == "Filled")
    last = sim.call(lambda: sim.sim.quotes["AAPL"])
    sell = app.take_id()
    app.placeOrder(sell, AAPL, order("SELL", 40, "LMT", lmtPrice=float(last.ask + 50), tif="GTC", orderRef="g1:tp"))
    app.wait_call("orderStatus", lambda o, s, *a: o == sell and s == "Submitted")
    # A modify of a working order (same id) is not a new order.
    app.placeOrder(sell, AAPL, order("SELL", 40, "LMT", lmtPrice=float(last.ask + 60), tif="GTC", orderRef="g1:tp"))
    stop = app.take_id()
    app.placeOrder(stop, AAPL, order("SELL", 60, "STP", auxPrice=float(last.bid - 50), tif="GTC", orderRef="g1:sl"))
    app.sync()
    log = sim.order_log()
    assert [(r.order_ref, r.order_id) for r in log] == [("g1:entry", buy), ("g1:tp", sell), ("g1:sl", stop)]
    entry, tp, sl = log
    assert (entry.position, entry.working_orders, entry.side, entry.order_type) == (D(0), 0, Side.BUY, OrderType.MKT)
    assert (tp.position, tp.working_orders, tp.quantity, tp.limit_price) == (D(100), 0, D(40), last.ask + 50)
    assert (sl.working_orders, sl.stop_price, sl.order_type) == (1, last.bid - 50, OrderType.STP)
    assert (tp.bid, tp.ask, tp.last) == (last.bid, last.ask, last.last)
    reply = _execute(sim, {"cmd": "order_log", "last": 1})
    assert reply["ok"] and [r["order_ref"] for r in json.loads(json.dumps(reply, default=str))["orders"]] == ["g1:sl"]


def test_squeezed_pacing_answers_error_100_above_the_lower_limit_until_the_squeeze_ends(
        make_sim: MakeSim, connect: Connect) -> None:
    wall = Wall()
    sim = make_sim(pacing_msgs_per_s=50, wall=wall)
    app = connect(sim)
    wall.now += 2  # START_API's second is over
    sim.squeeze_pacing(10, 5.0)
    for _ in range(15):
        app.reqCurrentTime()
    app.wait_call("error", lambda rid, t, code, *a: rid == -1 and code == 100)
    assert "max=10" in app.errors(100)[0].args[3]
    eventually(lambda: sim.snapshot()["stats"].get("paced_out") == 5, what="the 5 excess messages dropped")
    assert len(app.named("currentTime")) == 10

    wall.now += 6  # the squeeze is over: the configured 50 a second again
    mark = app.mark()
    for _ in range(40):
        app.reqCurrentTime()
    app.wait_call("currentTime", count=50)
    assert not app.errors(100, mark) and app.isConnected()


def test_frozen_market_sends_no_quotes_and_resumes_where_it_stopped(make_sim: MakeSim, connect: Connect) -> None:
    wall = Wall()
    sim = make_sim(clock="accelerated", speed=4.0, wall=wall, loop_interval_s=0.005)
    app = connect(sim)
    app.reqMktData(1, AAPL, "", False, False, [])
    app.sync()
    wall.now += 1
    app.wait_call("tickPrice", lambda rid, *a: rid == 1)
    sim.freeze()
    frozen_ns = sim.snapshot()["market_ns"]
    assert sim.snapshot()["frozen"] is True
    mark = app.mark()
    wall.now += 30  # two minutes of market time would pass
    with pytest.raises(AssertionError):  # the market loop runs every 5 ms: 40 turns without a quote
        app.wait_call("tickPrice", lambda rid, *a: rid == 1, timeout=0.2, after=mark)
    app.sync()
    assert _ticks(app, mark) == 0 and sim.snapshot()["market_ns"] == frozen_ns
    assert app.named("currentTime", mark)[0].args[0] == frozen_ns // 1_000_000_000

    sim.freeze(False)
    assert sim.snapshot()["market_ns"] == frozen_ns  # no jump over the frozen interval
    wall.now += 1
    app.wait_call("tickPrice", lambda rid, *a: rid == 1, count=_ticks(app, 0) + 1)
    assert sim.snapshot()["market_ns"] == frozen_ns + 4_000_000_000


def test_frozen_market_fills_no_resting_order_but_a_market_order_at_the_last_quote(
        make_sim: MakeSim, connect: Connect) -> None:
    wall = Wall()
    sim = make_sim(clock="accelerated", speed=4.0, wall=wall, loop_interval_s=0.005)
    app = connect(sim)
    app.reqMktData(1, AAPL, "", False, False, [])
    wall.now += 1
    app.wait_call("tickPrice", lambda rid, *a: rid == 1)
    sim.freeze()
    last = sim.call(lambda: sim.sim.quotes["AAPL"])
    limit = app.take_id()
    app.placeOrder(limit, AAPL, order("BUY", 100, "LMT", lmtPrice=float(last.bid - D("0.01")), tif="GTC"))
    app.wait_call("orderStatus", lambda o, s, *a: o == limit and s == "Submitted")
    wall.now += 60
    market = app.take_id()
    app.placeOrder(market, AAPL, order("BUY", 100))
    app.wait_call("orderStatus", lambda o, s, *a: o == market and s == "Filled")
    (fill,) = [c.args[2] for c in app.named("execDetails")]
    assert fill.orderId == market and D(str(fill.price)) == last.ask
    assert sim.snapshot()["open_orders"] == 1  # the resting limit never met a new quote


def test_snapshot_counts_each_clients_market_data_subscriptions(sim: SimulatorThread, connect: Connect) -> None:
    one, two = connect(sim, 1), connect(sim, 2)
    one.reqMktData(1, AAPL, "", False, False, [])
    one.reqMktData(2, stock("MSFT"), "", False, False, [])
    one.reqMktData(3, AAPL, "", False, False, [])  # a second request for one symbol counts it once
    two.reqMktData(1, stock("SPY"), "", False, False, [])
    one.sync()
    two.sync()
    assert sim.snapshot()["subscribed"] == {"1": 2, "2": 1}
    sim.restore_link(data_kept=False)  # 1101: data lost, every subscription dropped
    assert sim.snapshot()["subscribed"] == {"1": 0, "2": 0}


@pytest.mark.parametrize(("request_", "says"), [
    ({"cmd": "squeeze", "seconds": 5}, "msgs_per_s"),
    ({"cmd": "squeeze", "msgs_per_s": 0, "seconds": 5}, ">= 1"),
    ({"cmd": "squeeze", "msgs_per_s": 10}, "seconds"),
    ({"cmd": "freeze"}, "accelerated"),
    ({"cmd": "order_log", "last": -1}, "whole number"),
])
def test_control_refuses_bad_chaos_commands_and_changes_nothing(
        sim: SimulatorThread, request_: dict[str, Any], says: str) -> None:
    reply = _execute(sim, request_)
    assert reply["ok"] is False and says in reply["error"], reply
    assert sim.sim.squeeze is None and sim.sim.frozen is None


def test_control_squeezes_and_freezes_an_accelerated_simulator(make_sim: MakeSim) -> None:
    wall = Wall()
    sim = make_sim(clock="accelerated", wall=wall)
    assert _execute(sim, {"cmd": "squeeze", "msgs_per_s": 20, "seconds": 3})["ok"]
    assert sim.sim.squeeze == (20, wall.now + 3)
    assert _execute(sim, {"cmd": "freeze"})["ok"] and sim.sim.frozen is not None
    assert _execute(sim, {"cmd": "freeze", "on": False})["ok"] and sim.sim.frozen is None
