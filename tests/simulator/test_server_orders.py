"""Acceptance: every order type and order life cycle through the official ibapi client."""

from __future__ import annotations

from decimal import Decimal

import pytest
from ibapi.order import Order
from ibapi.order_cancel import OrderCancel

from simulator.market import WalkParams, ny_ns
from simulator.server import SymbolSpec, SimulatorThread
from tests.simulator.conftest import Connect, MakeSim, step_until
from tests.simulator.ibapp import IBApp, order, stock

pytestmark = pytest.mark.timeout(30)

D = Decimal
BID, ASK, LAST = 1, 2, 4
AAPL = stock("AAPL")
# A fast market: triggers and targets are reached within a few stepped seconds.
VOLATILE = (SymbolSpec(symbol="AAPL", walk=WalkParams(volatility=8.0)), SymbolSpec(symbol="MSFT"))


def _subscribe(sim: SimulatorThread, app: IBApp, req_id: int = 1, contract=AAPL) -> None:
    app.reqMktData(req_id, contract, "", False, False, [])
    app.sync()
    sim.step(1)
    app.sync()


def _touch(app: IBApp, req_id: int = 1) -> dict[int, Decimal]:
    """Return the latest bid, ask and last the client saw for a request."""
    seen: dict[int, Decimal] = {}
    for c in app.named("tickPrice"):
        if c.args[0] == req_id:
            seen[c.args[1]] = D(str(c.args[2]))
    return seen


def _place(app: IBApp, contract, o) -> int:
    oid = app.take_id()
    app.placeOrder(oid, contract, o)
    return oid


def _statuses(app: IBApp, oid: int) -> list[tuple[str, Decimal, Decimal]]:
    return [(c.args[1], c.args[2], c.args[3]) for c in app.named("orderStatus") if c.args[0] == oid]


def _execs(app: IBApp, oid: int, req_id: int = -1) -> list:
    return [c.args[2] for c in app.named("execDetails") if c.args[2].orderId == oid and c.args[0] == req_id]


def _wait_status(app: IBApp, oid: int, status: str, timeout: float = 5.0) -> None:
    app.wait_call("orderStatus", lambda o, s, *a: o == oid and s == status, timeout=timeout)


def _trace(app: IBApp, oid: int) -> list[tuple[str, str]]:
    """Return the order's callbacks in order: (openOrder, status), (orderStatus, status), (execDetails, shares), (error, code)."""
    out: list[tuple[str, str]] = []
    for c in app.calls:
        if c.name == "openOrder" and c.args[0] == oid:
            out.append(("openOrder", c.args[3].status))
        elif c.name == "orderStatus" and c.args[0] == oid:
            out.append(("orderStatus", c.args[1]))
        elif c.name == "execDetails" and c.args[2].orderId == oid:
            out.append(("execDetails", str(c.args[2].shares)))
        elif c.name == "error" and c.args[0] == oid:
            out.append(("error", str(c.args[2])))
    return out


# ---------------------------------------------------------------- market and limit orders


@pytest.mark.parametrize(("action", "side", "touch"), [("BUY", "BOT", ASK), ("SELL", "SLD", BID)])
def test_market_order_fills_at_the_touch_with_commission_and_filled_status(
        sim: SimulatorThread, app: IBApp, action: str, side: str, touch: int) -> None:
    _subscribe(sim, app)
    price = _touch(app)[touch]
    oid = _place(app, AAPL, order(action, 100))
    _wait_status(app, oid, "Filled")
    app.wait_call("openOrder", lambda o, c, od, st: o == oid and st.status == "Filled")
    assert _trace(app, oid) == [("openOrder", "Submitted"), ("orderStatus", "Submitted"),
                                ("execDetails", "100"), ("orderStatus", "Filled"), ("openOrder", "Filled")]
    (ex,) = _execs(app, oid)
    assert (ex.side, ex.shares, D(str(ex.price)), ex.cumQty, ex.clientId, ex.acctNumber) == (
        side, D(100), price, D(100), 1, "DU1234567")
    report = app.wait_call("commissionAndFeesReport")[0].args[0]
    assert report.execId == ex.execId and report.commissionAndFees == pytest.approx(1.0)
    assert _statuses(app, oid)[-1] == ("Filled", D(100), D(0))


def test_limit_order_away_from_market_rests_submitted(sim: SimulatorThread, app: IBApp) -> None:
    _subscribe(sim, app)
    bid = _touch(app)[BID]
    oid = _place(app, AAPL, order("BUY", 100, "LMT", lmtPrice=float(bid - 5)))
    _wait_status(app, oid, "Submitted")
    opened = app.named("openOrder")[-1].args
    assert opened[0] == oid and D(str(opened[2].lmtPrice)) == bid - 5 and opened[2].orderType == "LMT"
    assert _statuses(app, oid) == [("Submitted", D(0), D(100))]
    sim.step(3)
    app.sync()
    assert not _execs(app, oid)


def test_marketable_limit_order_fills_at_the_touch_not_worse_than_limit(sim: SimulatorThread, app: IBApp) -> None:
    _subscribe(sim, app)
    ask = _touch(app)[ASK]
    oid = _place(app, AAPL, order("BUY", 100, "LMT", lmtPrice=float(ask + 1)))
    _wait_status(app, oid, "Filled")
    assert D(str(_execs(app, oid)[0].price)) == ask  # price improvement goes to the order


# ---------------------------------------------------------------- stops and trailing stops


@pytest.mark.parametrize(("offset", "fills"), [
    (D(-1), True),   # a buy stop below the ask is already hit: triggers on the quote it sees
    (D(50), False),  # far above: stays working
])
def test_buy_stop_triggers_only_when_market_reaches_it(sim: SimulatorThread, app: IBApp,
                                                       offset: Decimal, fills: bool) -> None:
    _subscribe(sim, app)
    ask = _touch(app)[ASK]
    oid = _place(app, AAPL, order("BUY", 100, "STP", auxPrice=float(ask + offset)))
    _wait_status(app, oid, "Submitted")
    sim.step(2)
    app.sync()
    execs = _execs(app, oid)
    assert bool(execs) is fills
    if fills:
        assert D(str(execs[0].price)) == ask
        assert _statuses(app, oid)[-1][0] == "Filled"


@pytest.mark.parametrize(("limit_offset", "fills"), [(D(1), True), (D(-20), False)])
def test_stop_limit_once_triggered_acts_as_limit(sim: SimulatorThread, app: IBApp,
                                                 limit_offset: Decimal, fills: bool) -> None:
    _subscribe(sim, app)
    ask = _touch(app)[ASK]
    oid = _place(app, AAPL, order("BUY", 100, "STP LMT", auxPrice=float(ask - 1),
                                   lmtPrice=float(ask + limit_offset)))
    _wait_status(app, oid, "Submitted")
    sim.step(1)
    app.sync()
    execs = _execs(app, oid)
    assert bool(execs) is fills
    if fills:
        assert D(str(execs[0].price)) <= ask + limit_offset
    else:
        assert _statuses(app, oid)[-1][0] == "Submitted"


@pytest.mark.parametrize("fields", [{"auxPrice": 2.0}, {"trailingPercent": 0.5}],
                         ids=["amount", "percent"])
def test_trailing_sell_stop_fills_only_after_price_falls_trail_from_its_high(
        make_sim: MakeSim, connect: Connect, fields: dict) -> None:
    sim = make_sim(symbols=VOLATILE)
    app = connect(sim)
    _subscribe(sim, app)
    start = app.mark()
    oid = _place(app, AAPL, order("SELL", 100, "TRAIL", **fields))
    _wait_status(app, oid, "Submitted")
    opened = app.named("openOrder")[-1].args[2]
    if "auxPrice" in fields:
        assert opened.auxPrice == pytest.approx(2.0)
    else:
        assert opened.trailingPercent == pytest.approx(0.5)
    step_until(sim, app, lambda: _execs(app, oid), seconds=1)
    ex = _execs(app, oid)[0]
    fill_at = next(i for i, c in enumerate(app.calls) if c.name == "execDetails" and c.args[2].orderId == oid)
    # The last trades seen from placement until the fill (the quote that placed it included).
    lasts = [D(str(c.args[2])) for c in app.calls[start - 7:fill_at] if c.name == "tickPrice" and c.args[1] == LAST]
    high = max(lasts)
    trail = D("2.0") if "auxPrice" in fields else high * D("0.005")
    assert D(str(ex.price)) <= high - trail
    assert min(lasts[:-1] or lasts) > high - trail - D("5")  # it did not wait for a collapse either
    assert _statuses(app, oid)[-1][0] == "Filled"


# ---------------------------------------------------------------- time in force


def test_day_order_expires_at_new_york_midnight_while_gtc_survives(make_sim: MakeSim, connect: Connect) -> None:
    sim = make_sim(start_ns=ny_ns(2024, 1, 2, 23, 59, 50))
    app = connect(sim)
    _subscribe(sim, app)
    bid = _touch(app)[BID]
    day = _place(app, AAPL, order("BUY", 100, "LMT", lmtPrice=float(bid - 10), tif="DAY"))
    gtc = _place(app, AAPL, order("BUY", 100, "LMT", lmtPrice=float(bid - 10), tif="GTC"))
    _wait_status(app, gtc, "Submitted")
    sim.step(5)
    app.sync()
    assert _statuses(app, day)[-1][0] == "Submitted"
    sim.step(10)
    _wait_status(app, day, "Cancelled")
    app.wait_call("error", lambda rid, t, code, *a: rid == day and code == 202)
    app.reqOpenOrders()
    app.wait_call("openOrderEnd")
    assert [c.args[0] for c in app.named("openOrder") if c.args[3].status == "Submitted"][-1] == gtc
    assert _statuses(app, gtc)[-1][0] == "Submitted"


def test_ioc_order_fills_what_the_touch_offers_and_cancels_the_rest(sim: SimulatorThread, app: IBApp) -> None:
    _subscribe(sim, app)
    oid = _place(app, AAPL, order("BUY", 100_000, tif="IOC"))
    _wait_status(app, oid, "Cancelled")
    execs = _execs(app, oid)
    assert len(execs) == 1 and D(0) < execs[0].shares < D(100_000)
    assert _statuses(app, oid)[-1] == ("Cancelled", execs[0].shares, D(100_000) - execs[0].shares)
    app.wait_call("error", lambda rid, t, code, *a: rid == oid and code == 202)


def test_ioc_limit_order_not_marketable_is_cancelled_without_fill(sim: SimulatorThread, app: IBApp) -> None:
    _subscribe(sim, app)
    bid = _touch(app)[BID]
    oid = _place(app, AAPL, order("BUY", 100, "LMT", lmtPrice=float(bid - 5), tif="IOC"))
    _wait_status(app, oid, "Cancelled")
    assert not _execs(app, oid)


# ---------------------------------------------------------------- partial fills


def test_large_order_fills_in_parts_with_cumulative_quantity_and_exact_average(
        sim: SimulatorThread, app: IBApp) -> None:
    _subscribe(sim, app)
    oid = _place(app, AAPL, order("BUY", 5000))
    step_until(sim, app, lambda: ("Filled", D(5000), D(0)) in _statuses(app, oid), seconds=0.5)
    execs = _execs(app, oid)
    assert len(execs) >= 2
    cums = [e.cumQty for e in execs]
    assert cums == sorted(cums) and cums[-1] == D(5000) and sum(e.shares for e in execs) == D(5000)
    for e, cum in zip(execs, cums):
        assert e.cumQty == cum
    partials = [s for s in _statuses(app, oid) if s[0] == "Submitted" and s[1] > 0]
    assert partials and all(f + r == D(5000) for _, f, r in partials)
    value = sum(e.shares * D(str(e.price)) for e in execs)
    last = [c.args for c in app.named("orderStatus") if c.args[0] == oid][-1]
    assert last[4] == pytest.approx(float(value / 5000))
    reports = {c.args[0].execId: c.args[0].commissionAndFees for c in app.named("commissionAndFeesReport")}
    assert set(reports) >= {e.execId for e in execs}
    assert sum(reports[e.execId] for e in execs) == pytest.approx(25.0)  # 5000 × 0.005, minimum paid once


# ---------------------------------------------------------------- cancel, modify, ids, rejections


def test_cancel_resting_order_gives_cancelled_status_then_error_202(sim: SimulatorThread, app: IBApp) -> None:
    _subscribe(sim, app)
    bid = _touch(app)[BID]
    oid = _place(app, AAPL, order("BUY", 100, "LMT", lmtPrice=float(bid - 5)))
    _wait_status(app, oid, "Submitted")
    app.cancelOrder(oid, OrderCancel())
    app.wait_call("error", lambda rid, t, code, *a: rid == oid and code == 202)
    assert _trace(app, oid)[-2:] == [("orderStatus", "Cancelled"), ("error", "202")]
    sim.step(2)
    app.sync()
    assert not _execs(app, oid)


def test_cancel_of_filled_order_is_refused_with_10148_and_unknown_with_10147(sim: SimulatorThread, app: IBApp) -> None:
    _subscribe(sim, app)
    oid = _place(app, AAPL, order("BUY", 100))
    _wait_status(app, oid, "Filled")
    app.cancelOrder(oid, OrderCancel())
    app.cancelOrder(oid + 1000, OrderCancel())
    app.wait_call("error", lambda rid, t, code, *a: code in (10147, 10148), count=2)
    assert [c.args[0] for c in app.errors(10148)] == [oid]
    assert [c.args[0] for c in app.errors(10147)] == [oid + 1000]


def test_modify_by_replacing_an_id_changes_price_seen_in_open_order_and_fill(sim: SimulatorThread, app: IBApp) -> None:
    _subscribe(sim, app)
    touch = _touch(app)
    oid = _place(app, AAPL, order("BUY", 100, "LMT", lmtPrice=float(touch[BID] - 5)))
    _wait_status(app, oid, "Submitted")
    app.placeOrder(oid, AAPL, order("BUY", 200, "LMT", lmtPrice=float(touch[BID] - 3)))
    app.wait_call("openOrder", lambda o, c, od, st: o == oid and od.lmtPrice == float(touch[BID] - 3))
    assert app.named("openOrder")[-1].args[2].totalQuantity == D(200)
    sim.step(0.25)
    app.sync()
    ask = _touch(app)[ASK]
    app.placeOrder(oid, AAPL, order("BUY", 200, "LMT", lmtPrice=float(ask + D("0.5"))))
    _wait_status(app, oid, "Filled")
    assert sum(e.shares for e in _execs(app, oid)) == D(200)
    assert all(D(str(e.price)) <= ask + D("0.5") for e in _execs(app, oid))


def test_modify_changing_side_is_refused_with_105_and_order_unchanged(sim: SimulatorThread, app: IBApp) -> None:
    _subscribe(sim, app)
    bid = _touch(app)[BID]
    oid = _place(app, AAPL, order("BUY", 100, "LMT", lmtPrice=float(bid - 5)))
    _wait_status(app, oid, "Submitted")
    app.placeOrder(oid, AAPL, order("SELL", 100, "LMT", lmtPrice=float(bid - 5)))
    app.wait_call("error", lambda rid, t, code, *a: rid == oid and code == 105)
    assert _statuses(app, oid) == [("Submitted", D(0), D(100))]


def test_reusing_an_order_id_gets_103_and_changes_nothing(sim: SimulatorThread, app: IBApp) -> None:
    _subscribe(sim, app)
    oid = _place(app, AAPL, order("BUY", 100))
    _wait_status(app, oid, "Filled")
    app.placeOrder(oid, AAPL, order("BUY", 300))
    app.wait_call("error", lambda rid, t, code, msg, *a: rid == oid and code == 103 and "Duplicate" in msg)
    app.sync()
    assert len(_execs(app, oid)) == 1 and sim.snapshot()["positions"] == {"AAPL": "100"}


def test_reject_next_fault_rejects_one_order_with_201_and_reason(sim: SimulatorThread, app: IBApp) -> None:
    _subscribe(sim, app)
    sim.reject_next("margin check failed (test)")
    first = _place(app, AAPL, order("BUY", 100))
    app.wait_call("error", lambda rid, t, code, *a: rid == first and code == 201)
    assert "margin check failed (test)" in app.errors(201)[0].args[3]
    _wait_status(app, first, "Inactive")
    second = _place(app, AAPL, order("BUY", 100))
    _wait_status(app, second, "Filled")
    assert not _execs(app, first)


@pytest.mark.parametrize(("o", "reason"), [
    (order("BUY", 100, "LMT"), "limit price"),              # LMT without a price
    (order("BUY", 100, "STP"), "stop price"),
    (order("BUY", 0, "MKT"), "quantity"),
    (order("BUY", 100, "TRAIL"), "trail"),
    (order("HOLD", 100, "MKT"), "action"),
    (order("BUY", 100, "PEG MID"), "orderType"),
], ids=["lmt-no-price", "stp-no-price", "zero-qty", "trail-no-amount", "bad-action", "bad-type"])
def test_invalid_order_is_rejected_with_201_naming_the_reason(sim: SimulatorThread, app: IBApp, o: Order,
                                                              reason: str) -> None:
    oid = _place(app, AAPL, o)
    app.wait_call("error", lambda rid, t, code, *a: rid == oid and code == 201)
    assert reason in app.errors(201)[0].args[3]
    app.sync()
    assert not _execs(app, oid) and sim.snapshot()["executions"] == 0


def test_order_for_unknown_symbol_gets_error_200(app: IBApp) -> None:
    oid = _place(app, stock("NOPE"), order("BUY", 100))
    app.wait_call("error", lambda rid, t, code, *a: rid == oid and code == 200)


# ---------------------------------------------------------------- brackets and OCA


def test_bracket_holds_until_last_child_then_entry_fill_target_fill_cancels_stop(
        make_sim: MakeSim, connect: Connect) -> None:
    sim = make_sim(symbols=VOLATILE)
    app = connect(sim)
    _subscribe(sim, app)
    touch = _touch(app)
    parent = _place(app, AAPL, order("BUY", 100, "LMT", lmtPrice=float(touch[ASK] + 1), transmit=False))
    target = _place(app, AAPL, order("SELL", 100, "LMT", lmtPrice=float(touch[ASK] + 2), parentId=parent,
                                     transmit=False))
    app.sync()
    assert not _trace(app, parent) and not _trace(app, target)  # held silently until transmitted
    stop = _place(app, AAPL, order("SELL", 100, "STP", auxPrice=float(touch[BID] - 50), parentId=parent,
                                   transmit=True))
    _wait_status(app, parent, "Filled")
    app.wait_call("orderStatus", lambda o, s, *a: o == stop and s == "Submitted")
    assert _trace(app, parent)[:2] == [("openOrder", "Submitted"), ("orderStatus", "Submitted")]
    for child in (target, stop):
        assert _trace(app, child)[:3] == [("openOrder", "PreSubmitted"), ("orderStatus", "PreSubmitted"),
                                          ("orderStatus", "Submitted")]
        assert {c.args[2].parentId for c in app.named("openOrder") if c.args[0] == child} == {parent}
        assert {c.args[6] for c in app.named("orderStatus") if c.args[0] == child} == {parent}
    step_until(sim, app, lambda: _execs(app, target), seconds=1)
    _wait_status(app, target, "Filled")
    _wait_status(app, stop, "Cancelled")
    app.wait_call("error", lambda rid, t, code, *a: rid == stop and code == 202)
    assert not _execs(app, stop)
    app.sync()
    assert sim.snapshot()["positions"] == {"AAPL": "0"}


def test_bracket_parent_cancel_cancels_its_children(sim: SimulatorThread, app: IBApp) -> None:
    _subscribe(sim, app)
    bid = _touch(app)[BID]
    parent = _place(app, AAPL, order("BUY", 100, "LMT", lmtPrice=float(bid - 5), transmit=False))
    child = _place(app, AAPL, order("SELL", 100, "STP", auxPrice=float(bid - 10), parentId=parent))
    _wait_status(app, child, "PreSubmitted")
    app.cancelOrder(parent, OrderCancel())
    _wait_status(app, child, "Cancelled")
    assert _statuses(app, parent)[-1][0] == "Cancelled"


def test_oca_group_fill_of_one_member_cancels_the_other(sim: SimulatorThread, app: IBApp) -> None:
    _subscribe(sim, app)
    touch = _touch(app)
    resting = _place(app, AAPL, order("BUY", 100, "LMT", lmtPrice=float(touch[BID] - 5),
                                      ocaGroup="oca-1", ocaType=1))
    _wait_status(app, resting, "Submitted")
    filling = _place(app, AAPL, order("BUY", 100, "LMT", lmtPrice=float(touch[ASK] + 1),
                                      ocaGroup="oca-1", ocaType=1))
    _wait_status(app, filling, "Filled")
    _wait_status(app, resting, "Cancelled")
    app.wait_call("error", lambda rid, t, code, *a: rid == resting and code == 202)
    opened = [c.args[2] for c in app.named("openOrder") if c.args[0] == resting][0]
    assert (opened.ocaGroup, opened.ocaType) == ("oca-1", 1)
    assert not _execs(app, resting)


def test_cancel_of_another_clients_order_is_not_found_and_the_order_keeps_working(
        sim: SimulatorThread, connect: Connect) -> None:
    owner = connect(sim, 1)
    _subscribe(sim, owner)
    oid = _place(owner, AAPL, order("BUY", 100, "LMT", lmtPrice=float(_touch(owner)[BID] - 5)))
    _wait_status(owner, oid, "Submitted")
    other = connect(sim, 2)
    other.cancelOrder(oid, OrderCancel())
    other.wait_call("error", lambda rid, t, code, *a: rid == oid and code == 10147)
    owner.sync()
    assert _statuses(owner, oid) == [("Submitted", D(0), D(100))]


def test_placing_another_clients_order_id_gets_103_sent_to_the_placer(sim: SimulatorThread, connect: Connect) -> None:
    owner = connect(sim, 1)
    _subscribe(sim, owner)
    oid = _place(owner, AAPL, order("BUY", 100, "LMT", lmtPrice=float(_touch(owner)[BID] - 5)))
    _wait_status(owner, oid, "Submitted")
    other = connect(sim, 2)
    other.placeOrder(oid, AAPL, order("SELL", 100))
    other.wait_call("error", lambda rid, t, code, *a: rid == oid and code == 103)
    owner.sync()
    assert not owner.errors(103) and _statuses(owner, oid) == [("Submitted", D(0), D(100))]
