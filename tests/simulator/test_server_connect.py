"""Acceptance: connecting the official ibapi client to the simulator (handshake, notices, client ids)."""

from __future__ import annotations

import pytest

from simulator.market import NS
from simulator.server import SimulatorConfig, SimulatorThread
from tests.simulator.conftest import SERVER_VERSION, Connect, MakeSim, eventually
from tests.simulator.ibapp import IBApp, order, stock

pytestmark = pytest.mark.timeout(30)


def _sequence(app: IBApp) -> list[tuple[str, object]]:
    """Return the connect-time callbacks in order, ProtoBuf twins left out."""
    out: list[tuple[str, object]] = []
    for c in app.calls:
        if c.name == "managedAccounts":
            out.append((c.name, c.args[0]))
        elif c.name == "nextValidId":
            out.append((c.name, c.args[0]))
        elif c.name == "error":
            out.append((c.name, (c.args[0], c.args[2])))
    return out


def test_connect_negotiates_version_then_accounts_next_id_and_farm_notices(wire: str, app: IBApp) -> None:
    assert app.serverVersion() == SERVER_VERSION[wire]
    app.wait_call("error", lambda rid, t, code, *a: code == 2158)
    assert _sequence(app) == [("managedAccounts", "DU1234567"), ("nextValidId", 1),
                              ("error", (-1, 2104)), ("error", (-1, 2106)), ("error", (-1, 2158))]
    assert app.named("connectAck")


def test_connect_with_text_wire_caps_version_at_200_even_if_allowed_higher(make_sim: MakeSim, connect: Connect,
                                                                          wire: str) -> None:
    sim = make_sim(max_server_version=210)
    app = connect(sim)
    assert app.serverVersion() == (210 if wire == "protobuf" else 200)


def test_current_time_follows_the_stepped_market_clock(sim: SimulatorThread, app: IBApp) -> None:
    start = SimulatorConfig().start_ns // NS
    app.sync()
    assert app.named("currentTime")[-1].args == (start,)
    sim.step(90)
    app.sync()
    assert app.named("currentTime")[-1].args == (start + 90,)


def test_several_clients_at_once_each_get_their_own_answers(sim: SimulatorThread, connect: Connect) -> None:
    apps = [connect(sim, cid) for cid in (1, 2, 3)]
    assert sim.snapshot()["clients"] == [1, 2, 3]
    for req_id, a in enumerate(apps, start=10):
        a.reqMktData(req_id, stock("MSFT"), "", False, False, [])
        a.sync()
    sim.step(1)
    for req_id, a in enumerate(apps, start=10):
        a.wait_call("tickPrice", lambda rid, *rest, r=req_id: rid == r, count=3)
        a.sync()
        assert {c.args[0] for c in a.named("tickPrice")} == {req_id}  # nobody sees another's req ids


def test_duplicate_client_id_gets_326_then_closed_while_first_client_keeps_working(
        sim: SimulatorThread, connect: Connect) -> None:
    first = connect(sim, 7)
    second = connect(sim, 7, wait=False)
    second.wait_call("connectionClosed")
    names = [c.name for c in second.calls if c.name in ("error", "connectionClosed", "nextValidId")]
    assert names[:2] == ["error", "connectionClosed"] and "nextValidId" not in names
    assert second.errors(326)[0].args[0] == -1
    first.reqMktData(1, stock("AAPL"), "", False, False, [])
    first.sync()
    sim.step(1)
    first.wait_call("tickPrice", count=3)
    first.sync()
    assert sim.snapshot()["clients"] == [7]


def test_client_id_is_free_again_once_its_client_disconnected(sim: SimulatorThread, connect: Connect) -> None:
    first = connect(sim, 5)
    first.stop()
    # ibapi's reader thread holds the socket in recv (1 s timeout), so the close reaches TWS late.
    eventually(lambda: sim.snapshot()["clients"] == [], what="the server to see client 5 leave")
    second = connect(sim, 5)
    second.sync()
    assert not second.errors(326)


def test_req_ids_and_next_client_start_above_every_order_id_used(sim: SimulatorThread, connect: Connect) -> None:
    first = connect(sim, 1)
    oid = first.take_id()
    first.placeOrder(oid + 40, stock("AAPL"), order("BUY", 1, "LMT", lmtPrice=1.0))
    first.wait_call("orderStatus", lambda o, *a: o == oid + 40)
    first.reqIds(-1)
    first.wait_call("nextValidId", lambda n: n == oid + 41)
    second = connect(sim, 2)
    assert second.named("nextValidId")[0].args == (oid + 41,)


def test_managed_accounts_and_market_data_type_requests_are_answered(app: IBApp) -> None:
    app.reqManagedAccts()
    app.wait_call("managedAccounts", count=2)
    app.reqMarketDataType(3)
    app.wait_call("marketDataType", lambda rid, kind: kind == 3)


@pytest.mark.parametrize("client_max", [157, 178, 195])
def test_older_client_gets_its_own_version_of_the_text_protocol_and_trades(
        make_sim: MakeSim, connect: Connect, monkeypatch: pytest.MonkeyPatch, client_max: int) -> None:
    # An older ibapi release (or a third-party client such as ib_async, "v157..178") offers a lower
    # range; the official client's own constant is the faithful way to make it offer one.
    import ibapi.client

    monkeypatch.setattr(ibapi.client, "MAX_CLIENT_VER", client_max)
    sim = make_sim()
    app = connect(sim)
    assert app.serverVersion() == client_max
    app.reqHistoricalData(7, stock("AAPL"), "", "300 S", "1 min", "TRADES", 0, 1, False, [])
    end = app.wait_call("historicalDataEnd")[0]
    assert end.args[0] == 7 and end.args[1] and end.args[2]  # the dates travel inside HISTORICAL_DATA below 196
    assert app.named("historicalData")
    app.reqMktData(1, stock("AAPL"), "", False, False, [])
    sim.step(1)
    app.wait_call("tickPrice", lambda rid, tick, price, attrib: rid == 1 and price > 0)
    oid = app.take_id()
    app.placeOrder(oid, stock("AAPL"), order("BUY", 100, "MKT"))
    sim.step(1)
    fill = app.wait_call("execDetails")[0]
    assert fill.args[2].orderId == oid and fill.args[2].shares == 100
