"""SimBroker: the connection's own code over core.matching, on simpleSystemBase and a virtual clock."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from thespian.actors import ActorAddress, ActorSystem

from actors import tws_edge as edge
from actors.clock import VirtualClock, VirtualTimers
from actors.journaling import JournalSettings
from actors.sim_broker import MarketQuote, SimBroker
from actors.tws_connection import TwsSettings
from core.bar_data import parse_timestamp
from core.orders import new_order
from core.types import OrderType, Quote, Side, TimeInForce
from journal.store import Journal
from messages import (
    ConnectionStateChanged,
    ExecutionReported,
    OrderAccepted,
    OrderSubmitted,
    Peer,
    QuoteUpdate,
    SubmitOrder,
    SubscribeMarketData,
)
from messages.connection import ConnectionState
from tests.actors import helpers_tws as h
from tests.actors.conftest import virtual_time

pytestmark = pytest.mark.timeout(30)
ASK = timedelta(seconds=5)
D = Decimal
T0 = parse_timestamp("2024-01-02T09:30:00")
S = 1_000_000_000
_ACTOR = f"{SimBroker.__module__}.{SimBroker.__qualname__}"


@pytest.fixture
def virtual() -> Iterator[tuple[VirtualClock, VirtualTimers]]:
    with virtual_time(T0) as vt:
        yield vt


class Rig:
    def __init__(self, asys: ActorSystem, timers: VirtualTimers, tmp_path: Path) -> None:
        self.asys, self.timers = asys, timers
        self.bus = asys.createActor(h.Recorder)
        self.owner = asys.createActor(h.Recorder)
        self.quotes = asys.createActor(h.Recorder)
        self.parent = asys.createActor(h.StandInSupervisor)
        self.journal = str(tmp_path / "state" / "journal.sqlite")
        settings = TwsSettings(contracts=(edge.ContractSpec(symbol="AAPL"),),
                               journal=JournalSettings(path=self.journal, synchronous="NORMAL"))
        info = asys.ask(self.parent, h.StartChild(actor_class=_ACTOR, key="tws", config=settings,
                                                  peers=(Peer(name="bus", address=self.bus),)), ASK)
        assert isinstance(info, h.ChildInfo), info
        self.tws: ActorAddress = info.address

    def at(self, ts_ns: int) -> None:
        """Let virtual time run to `ts_ns` (every timer due by then fires)."""
        self.timers.fire_until(ts_ns, self.asys.tell)

    def quote(self, ts_ns: int, bid: str, ask: str, last: str) -> None:
        self.at(ts_ns)
        self.asys.tell(self.tws, MarketQuote(quote=Quote(symbol="AAPL", bid=D(bid), ask=D(ask), last=D(last),
                                                         bid_size=D(500), ask_size=D(500), last_size=D(10),
                                                         volume=D(100), ts_ns=ts_ns)))

    def of(self, who: ActorAddress, cls: type) -> list[Any]:
        reply = self.asys.ask(who, h.AwaitRecords(type_name=cls.__name__, count=0), ASK)
        return [m for m in reply.messages if isinstance(m, cls)]


def test_it_connects_streams_quotes_and_fills_orders_through_the_live_code_with_no_wall_clock(
        simple_asys: ActorSystem, virtual: tuple[VirtualClock, VirtualTimers], tmp_path: Path) -> None:
    clock, timers = virtual
    rig = Rig(simple_asys, timers, tmp_path)
    rig.at(T0 + S // 10)
    assert [m.state for m in rig.of(rig.bus, ConnectionStateChanged)][-1] is ConnectionState.READY

    simple_asys.tell(rig.tws, SubscribeMarketData(symbol="AAPL", reply_to=rig.quotes))
    rig.quote(T0 + 1 * S, "99.99", "100.00", "100.00")
    (update,) = rig.of(rig.quotes, QuoteUpdate)
    assert (update.quote.bid, update.quote.ask, update.quote.last) == (D("99.99"), D("100.00"), D("100.00"))

    buy = new_order(ref="g1:entry", symbol="AAPL", side=Side.BUY, quantity=10, order_type=OrderType.MKT)
    simple_asys.tell(rig.tws, SubmitOrder(order=buy, group_id="g1", reply_to=rig.owner))
    rest = new_order(ref="g2:entry", symbol="AAPL", side=Side.BUY, quantity=5, order_type=OrderType.LMT,
                     limit_price=D("99.00"), tif=TimeInForce.GTC)
    simple_asys.tell(rig.tws, SubmitOrder(order=rest, group_id="g2", reply_to=rig.owner))
    rig.at(T0 + 2 * S)
    submitted = {m.ref: m.broker_id for m in rig.of(rig.owner, OrderSubmitted)}
    assert submitted == {"g1:entry": 1, "g2:entry": 2}
    assert {m.ref for m in rig.of(rig.owner, OrderAccepted)} == {"g1:entry", "g2:entry"}
    (fill,) = rig.of(rig.owner, ExecutionReported)
    assert (fill.execution.order_ref, fill.execution.price, fill.execution.quantity, fill.execution.commission) \
        == ("g1:entry", D("100.00"), D(10), D("1.00"))
    assert fill.execution.ts_ns == T0 + 1 * S  # filled at the quote in force, on the virtual clock

    rig.quote(T0 + 3 * S, "98.89", "98.90", "98.90")  # the resting limit is now marketable
    fills = rig.of(rig.owner, ExecutionReported)
    assert [(f.execution.order_ref, f.execution.price) for f in fills][1:] == [("g2:entry", D("98.90"))]
    rig.at(T0 + 4 * S)
    with Journal.open(rig.journal, readonly=True) as journal:
        assert [e.ref for e in journal.executions()] == ["g1:entry", "g2:entry"]
        assert journal.order_id_hwm() == 2
        assert all(e.ts_ns < T0 + 4 * S for e in journal.executions())  # virtual times, not wall times
    assert clock.now_ns() == T0 + 4 * S
