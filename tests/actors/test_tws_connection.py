"""TwsConnection against the real simulator over loopback, on multiprocTCPBase (ThespianWatch needs it).

simpleSystemBase does not support ThespianWatch (thespian-notes §7), so the actor runs only on the
TCP base here; its ibapi edge is also checked without a socket where that is pure.
"""

from __future__ import annotations

import inspect
import pickle
import re
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from ibapi import comm
from ibapi.client import EClient
from thespian.actors import ActorAddress, ActorExitRequest, ActorSystem

from actors import quote_channel as qc
from actors.journaling import JournalSettings
from actors import tws_edge as edge
from actors.tws_connection import (
    Route,
    SubscriptionState,
    TwsChange,
    TwsConnection,
    TwsSettings,
    TwsState,
    finished_before,
    routes_to_order,
    settings_from_config,
)
from core import matching
from core.config import loads_config
from core.connection import ConnectionConfig
from core.orders import OrderStatus, new_order
from core.types import OrderType, Side, TimeInForce
from journal.store import IntentRow, Journal, OrderRow
from messages import (
    ActorStatusSnapshot,
    BrokerError,
    CancelOrder,
    ClaimOrders,
    CommissionReported,
    ConnectionStateChanged,
    ExecutionReported,
    ExternalOrderDetected,
    GetActorStatus,
    GetHistoricalBars,
    HistoricalBars,
    MarketDataResumed,
    MarketDataStale,
    ModifyOrder,
    OrderAccepted,
    OrderRejected,
    OrderStatusChanged,
    OrderSubmitted,
    Peer,
    QuoteChannel,
    QuoteUpdate,
    SubmitOrder,
    SubscribeMarketData,
)
from messages.connection import ConnectionState
from simulator.market import WalkParams
from simulator.server import DEFAULT_SYMBOLS, SimulatorConfig, SimulatorThread, SymbolSpec

pytestmark = pytest.mark.timeout(60)

ASK = timedelta(seconds=10)
_HELPERS = "tests.actors.helpers_tws"
_ACTOR = f"{TwsConnection.__module__}.{TwsConnection.__qualname__}"
_S = 1_000_000_000
CLIENT_ID = 7
C = ConnectionState


from tests.actors import helpers_tws as h  # noqa: E402  (after the constants it may use)


@pytest.fixture
def asys(tcp_asys: ActorSystem) -> ActorSystem:
    # Created before the simulator thread starts: actor processes fork from the admin, which then
    # holds no copy of a running event loop or of a lock another thread held.
    return tcp_asys


def eventually(predicate: Callable[[], Any], timeout: float = 10.0, what: str = "") -> Any:
    """Poll predicate() until it is truthy (return it) or the deadline passes (fail)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out after {timeout} s waiting for {what or predicate}"
        time.sleep(0.01)


# ---------------------------------------------------------------- fixtures


# AAPL moves fast enough that a limit a few cents away is crossed within a minute of market time.
SYMBOLS = tuple(SymbolSpec(symbol=s.symbol, walk=WalkParams(volatility=1.5)) if s.symbol == "AAPL" else s
                for s in DEFAULT_SYMBOLS)


@pytest.fixture
def wire() -> str:
    """The simulator's wire: protobuf (sv 226) unless a test is parametrized over both."""
    return "protobuf"


@pytest.fixture
def sim(request: pytest.FixtureRequest, asys: ActorSystem, wire: str) -> SimulatorThread:
    # Pacing stays on (50 msg/s, error 100 beyond): the connection's pacer must keep under it.
    simulator = SimulatorThread(SimulatorConfig(host="127.0.0.1", port=0, clock="stepped", wire=wire,
                                                symbols=SYMBOLS, seed=3))
    request.addfinalizer(simulator.stop)
    simulator.start()
    simulator.step(1)  # every symbol has a quote
    return simulator


def _settings(sim: SimulatorThread, tmp_path: Path, **overrides: Any) -> TwsSettings:
    connection = ConnectionConfig(port=sim.port, client_id=CLIENT_ID, connect_timeout_ns=2 * _S,
                                  reconnect_initial_ns=_S // 5, reconnect_max_ns=_S, jitter=0.2,
                                  heartbeat_interval_ns=_S, heartbeat_timeout_ns=5 * _S,
                                  sync_step_timeout_ns=5 * _S)
    return TwsSettings(connection=connection, log_dir=str(tmp_path / "logs"), log_level="DEBUG",
                       **overrides)


class Rig:
    """A TwsConnection under a stand-in supervisor, with recording bus, owner, subscriber and requester."""

    def __init__(self, asys: ActorSystem, sim: SimulatorThread, tmp_path: Path, *,
                 state: TwsState | None = None, **overrides: Any) -> None:
        self.asys = asys
        self.sim = sim
        self.bus = asys.createActor(h.Recorder)
        self.owner = asys.createActor(h.Recorder)
        self.quotes = asys.createActor(h.Recorder)
        self.requester = asys.createActor(h.Recorder)
        self.symbols = asys.createActor(h.Recorder)  # plays the symbols supervisor
        self.parent = asys.createActor(h.StandInSupervisor)
        self.log_file = tmp_path / "logs" / "system.log"
        info = asys.ask(self.parent, h.StartChild(actor_class=_ACTOR, key="tws",
                                                  config=_settings(sim, tmp_path, **overrides), state=state,
                                                  peers=(Peer(name="bus", address=self.bus),
                                                         Peer(name="symbols", address=self.symbols))), ASK)
        assert isinstance(info, h.ChildInfo), info
        self.tws: ActorAddress = info.address

    def records(self, who: ActorAddress, type_name: str = "Message", count: int = 0,
                timeout: float = 10.0) -> Any:
        reply = self.asys.ask(who, h.AwaitRecords(type_name=type_name, count=count),
                              timedelta(seconds=timeout))
        assert isinstance(reply, h.Records), f"no {count}× {type_name} within {timeout} s (got {reply!r})"
        return reply

    def of(self, who: ActorAddress, cls: type, count: int = 0, timeout: float = 10.0) -> list[Any]:
        return [m for m in self.records(who, cls.__name__, count, timeout).messages if isinstance(m, cls)]

    def states(self) -> list[tuple[ConnectionState, ConnectionState, int]]:
        return [(m.previous, m.state, m.code) for m in self.of(self.bus, ConnectionStateChanged)]

    def wait_state(self, state: ConnectionState, nth: int = 1, timeout: float = 10.0) -> None:
        eventually(lambda: sum(1 for _, s, _ in self.states() if s is state) >= nth, timeout,
                   f"{nth}× {state.value}")

    def submit(self, order: Any, *, group: str = "g1", transmit: bool = True,
               protective: bool = False) -> SubmitOrder:
        msg = SubmitOrder(order=order, group_id=group, transmit=transmit, protective=protective,
                          reply_to=self.owner)
        self.asys.tell(self.tws, msg)
        return msg

    def quote(self, symbol: str = "AAPL") -> Any:
        return self.sim.call(lambda: self.sim.sim.quotes[symbol])

    def broker_order(self, broker_id: int) -> matching.BrokerOrder:
        return self.sim.call(lambda: matching.get_order(self.sim.sim.book, broker_id))

    def step_until(self, predicate: Callable[[], Any], seconds: float = 1.0, max_steps: int = 600,
                   what: str = "", wall_s: float = 5.0) -> Any:
        # Steps of the simulated clock take no wall time, but the connection paces on the wall
        # clock: keep stepping until `max_steps` are done and `wall_s` have passed.
        deadline, steps = time.monotonic() + wall_s, 0
        while steps < max_steps or time.monotonic() < deadline:
            self.sim.step(seconds)
            steps += 1
            value = predicate()
            if value:
                return value
        raise AssertionError(f"not met after {steps} steps of {seconds} s: {what}")


def _by_ref(msgs: list[Any], ref: str) -> list[Any]:
    return [m for m in msgs if getattr(m, "ref", None) == ref
            or (isinstance(m, ExecutionReported) and m.execution.order_ref == ref)]


# ---------------------------------------------------------------- the ibapi edge, without a socket


def test_eclient_request_methods_touch_only_conn_version_connstate_and_wrapper() -> None:
    allowed = {"conn", "connState", "serverVersion_", "wrapper", "clientId", "optCapab"}
    seen: set[str] = set()

    def walk(name: str) -> set[str]:
        if name in seen:
            return set()
        seen.add(name)
        attrs = set(re.findall(r"self\.(\w+)", inspect.getsource(getattr(EClient, name))))
        data = {a for a in attrs if not callable(getattr(EClient, a, None))}
        for method in attrs - data:
            data |= walk(method)
        return data

    touched = set().union(*(walk(name) for name in edge.CLIENT_METHODS))
    assert touched <= allowed, f"EClient request methods also touch {sorted(touched - allowed)}"
    # isConnected() needs exactly these two; sendMsg goes through conn.
    assert {"conn", "connState", "serverVersion_", "wrapper"} <= touched


@pytest.mark.parametrize(("bar_size_s", "count", "duration", "setting"), [
    (60, 5, "300 S", "1 min"),
    (60, 1440, "86400 S", "1 min"),
    (60, 1441, "2 D", "1 min"),
    (5, 100, "500 S", "5 secs"),
    (86_400, 30, "30 D", "1 day"),
])
def test_history_request_settings_cover_count_bars(bar_size_s: int, count: int, duration: str,
                                                   setting: str) -> None:
    assert edge.duration_setting(bar_size_s, count) == duration
    assert edge.bar_size_setting(bar_size_s) == setting


@pytest.mark.parametrize("bar_size_s", [7, 45, 0])
def test_bar_size_ib_does_not_offer_is_refused(bar_size_s: int) -> None:
    with pytest.raises(ValueError):
        edge.bar_size_setting(bar_size_s)


@pytest.mark.parametrize(("text", "expected"), [
    ("20240102 09:30:00 US/Eastern", 1704205800 * _S),
    ("20240102-14:30:00", 1704205800 * _S),
    ("1704205800", 1704205800 * _S),
    ("20240102", 1704171600 * _S),
    ("", 0),
    ("garbage", 0),
])
def test_ib_times_parse_to_epoch_ns(text: str, expected: int) -> None:
    assert edge.parse_ib_time(text) == expected


@pytest.mark.parametrize(("code", "routed"), [
    (201, True), (103, True), (161, True), (10148, True), (110, True), (200, True), (10147, True),
    (202, False), (2102, False), (2109, False), (399, False), (10349, False), (2104, False), (1100, False),
])
def test_order_errors_route_to_owner_except_cancel_ack_and_warnings(code: int, routed: bool) -> None:
    assert routes_to_order(code) is routed


@pytest.mark.parametrize(("status", "rejected", "at", "expected"), [
    (None, False, 0, False),                      # never heard of: live
    (OrderStatus.SUBMITTED, False, 10, False),    # working
    (OrderStatus.FILLED, False, 10, True),        # filled before the cut-off
    (OrderStatus.FILLED, False, 100, False),      # filled after it: still kept
    (OrderStatus.CANCELLED, False, 10, True),
    (None, True, 10, True),                       # rejected before the cut-off
    (None, True, 100, False),
])
def test_finished_before_tells_which_routes_leave_the_snapshot(status: OrderStatus | None, rejected: bool,
                                                               at: int, expected: bool) -> None:
    last = None if status is None else OrderStatusChanged(ref="g:e", status=status, ts_ns=at)
    rejection = OrderRejected(ref="g:e", code=201, reason="no", ts_ns=at) if rejected else None
    route = Route(ref="g:e", last_status=last, rejection=rejection)
    assert finished_before(route, 50) is expected


def test_settings_from_config_take_broker_symbols_and_market_data() -> None:
    config = loads_config('''
[broker]
port = 4002
client_id = 3
account = "DU42"
[broker.reconnect]
initial_s = 2.0
[market_data]
stale_after_s = 12.5
[[symbols]]
symbol = "AAPL"
primary_exchange = "NASDAQ"
[[symbols]]
symbol = "SPY"
''')
    settings = settings_from_config(config, order_id_hwm=77, port=5555)
    c = settings.connection
    assert (c.port, c.client_id, c.reconnect_initial_ns) == (5555, 3, 2 * _S)
    assert (settings.account, settings.order_id_hwm, settings.stale_after_ns) == ("DU42", 77, 12_500_000_000)
    assert settings.contracts == (edge.ContractSpec(symbol="AAPL", primary_exchange="NASDAQ"),
                                  edge.ContractSpec(symbol="SPY"))


def test_wire_reads_frames_split_at_every_byte() -> None:
    text = b"226\x0020240102 14:30:01 GMT\x00"
    reply = struct.pack("!I", len(text)) + text
    next_id = comm.make_msg_proto(9 + 200, b"\x08\x2a")  # NEXT_VALID_ID protobuf: orderId 42
    stream = reply + next_id
    for cut in range(1, len(stream)):
        wire = edge.Wire(CLIENT_ID)
        events = wire.feed(stream[:cut]) + wire.feed(stream[cut:])
        assert events == [edge.Handshaken(server_version=226, connection_time="20240102 14:30:01 GMT"),
                          edge.NextIdSeen(order_id=42)], cut


def test_wire_encodes_bracket_leg_with_parent_transmit_and_order_ref() -> None:
    wire = edge.Wire(CLIENT_ID)
    reply = b"200\x00now\x00"  # the text protocol: the fields are readable
    assert wire.feed(struct.pack("!I", len(reply)) + reply)[0] == edge.Handshaken(server_version=200,
                                                                                 connection_time="now")
    order = new_order(ref="g9.stop", symbol="AAPL", side=Side.SELL, quantity=10, order_type=OrderType.STP,
                      stop_price="95.5", tif=TimeInForce.GTC)
    frames, errors = wire.encode(edge.PlaceOrderRequest(order_id=12, order=order,
                                                        contract=edge.ContractSpec(symbol="AAPL"),
                                                        parent_id=11, transmit=False))
    assert errors == []
    _, payload, rest = comm.read_msg(frames)
    assert rest == b""
    fields = comm.read_fields(payload)
    assert fields[:2] == (b"3", b"12")  # PLACE_ORDER, order id
    for value in (b"g9.stop", b"SELL", b"STP", b"95.5", b"GTC", b"AAPL"):
        assert value in fields, value
    assert b"11" in fields  # parentId


# ---------------------------------------------------------------- connection


@pytest.mark.parametrize("wire", ["protobuf", "text"])
def test_connection_reaches_ready_through_connecting_and_synchronizing(
    asys: ActorSystem, sim: SimulatorThread, tmp_path: Path,
) -> None:
    rig = Rig(asys, sim, tmp_path)
    rig.wait_state(C.READY)
    assert rig.states() == [(C.DISCONNECTED, C.CONNECTING, 0), (C.CONNECTING, C.SYNCHRONIZING, 0),
                            (C.SYNCHRONIZING, C.READY, 0)]
    assert sim.snapshot()["clients"] == [CLIENT_ID]
    ready = rig.records(rig.parent, "ActorReady", 1).messages
    assert any(type(m).__name__ == "ActorReady" and m.key == "tws" for m in ready)


# ---------------------------------------------------------------- market data


def test_quotes_reach_subscriber_coalesced_with_at_most_one_in_flight(asys: ActorSystem, sim: SimulatorThread,
                                                                      tmp_path: Path) -> None:
    rig = Rig(asys, sim, tmp_path)
    asys.tell(rig.quotes, h.Setup(auto_ack=False))
    rig.wait_state(C.READY)
    asys.tell(rig.tws, SubscribeMarketData(symbol="AAPL", reply_to=rig.quotes))
    rig.of(rig.quotes, QuoteUpdate, 1)
    for _ in range(20):  # 80 quotes, 7 ticks each, while the first update is not answered
        sim.step(1)
    latest = rig.quote("AAPL")

    def caught_up() -> bool:
        got = rig.records(rig.quotes, "QuoteUpdate")
        q = [m for m in got.messages if isinstance(m, QuoteUpdate)][-1].quote
        if (q.bid, q.ask, q.last, q.volume) == (latest.bid, latest.ask, latest.last, latest.volume):
            return True
        if got.in_flight:
            asys.tell(rig.quotes, h.Ack())  # processed: the connection may send the next (latest) one
        return False

    eventually(caught_up, 10, "the latest quote")
    got = rig.records(rig.quotes)
    updates = [m for m in got.messages if isinstance(m, QuoteUpdate)]
    assert got.max_in_flight == 1
    assert all(u.quote.symbol == "AAPL" for u in updates)
    assert len(updates) <= 10, f"{len(updates)} updates for 560 ticks: not coalesced"
    assert sum(u.coalesced for u in updates) >= 7 * 80
    assert max(u.coalesced for u in updates) > 100


def test_quote_channel_subscriber_gets_datagrams_one_in_flight_and_a_resend_when_unacknowledged(
        asys: ActorSystem, sim: SimulatorThread, tmp_path: Path) -> None:
    rig = Rig(asys, sim, tmp_path)
    rig.wait_state(C.READY)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as inbox:
        inbox.bind(("127.0.0.1", 0))
        inbox.settimeout(10)
        channel = QuoteChannel(host="127.0.0.1", port=inbox.getsockname()[1], token="secret-1")
        asys.tell(rig.tws, SubscribeMarketData(symbol="AAPL", reply_to=rig.quotes, channel=channel))

        def receive() -> tuple[int, QuoteUpdate, tuple[str, int]]:
            data, sender = inbox.recvfrom(2048)
            seq, update = qc.decode_quote(data, "secret-1")
            return seq, update, sender

        seq, first, tws = receive()
        assert (seq, first.quote.symbol) == (1, "AAPL")
        for _ in range(20):  # 80 quotes while the first datagram is not acknowledged
            sim.step(1)
        # Unacknowledged for a second: taken as lost, the latest quote goes again (seq 2), once.
        seq, resent, _ = receive()
        latest = rig.quote("AAPL")
        assert seq == 2 and resent.coalesced >= 7 * 80
        assert (resent.quote.bid, resent.quote.ask, resent.quote.last) == (latest.bid, latest.ask, latest.last)
        inbox.sendto(qc.encode_ack("secret-1", 1, "AAPL"), tws)  # a stale acknowledgement frees nothing
        inbox.sendto(qc.encode_ack("wrong", 2, "AAPL"), tws)     # nor a foreign one
        sim.step(1)
        inbox.settimeout(0.5)  # proving an absence takes a bounded wait (the resend needs 1 s)
        with pytest.raises(TimeoutError):
            inbox.recvfrom(2048)
        inbox.settimeout(10)
        inbox.sendto(qc.encode_ack("secret-1", 2, "AAPL"), tws)
        seq, after_ack, _ = receive()
        assert seq == 3 and 1 <= after_ack.coalesced <= 7 * 4  # only what came after the resend
    assert rig.of(rig.quotes, QuoteUpdate) == []  # nothing came as a thespian message


def test_silent_symbol_is_published_stale_then_resumed(asys: ActorSystem, sim: SimulatorThread,
                                                       tmp_path: Path) -> None:
    rig = Rig(asys, sim, tmp_path, stale_after_ns=_S // 2)
    rig.wait_state(C.READY)
    asys.tell(rig.tws, SubscribeMarketData(symbol="NVDA", reply_to=rig.quotes))
    rig.of(rig.quotes, QuoteUpdate, 1)
    started = time.monotonic()
    (stale,) = rig.of(rig.bus, MarketDataStale, 1)  # the stepped market is silent until stepped
    assert time.monotonic() - started >= 0.3
    assert stale.symbol == "NVDA" and stale.silent_ns >= _S // 2 and stale.last_ts_ns > 0
    assert rig.of(rig.bus, MarketDataResumed) == []
    sim.step(1)
    (resumed,) = rig.of(rig.bus, MarketDataResumed, 1)
    assert resumed.symbol == "NVDA"
    assert len(rig.of(rig.bus, MarketDataStale)) == 1


def test_history_request_answers_bars_oldest_first(asys: ActorSystem, sim: SimulatorThread,
                                                   tmp_path: Path) -> None:
    rig = Rig(asys, sim, tmp_path)
    sim.step(600)
    ask = GetHistoricalBars(symbol="MSFT", bar_size_s=60, count=5)
    asys.tell(rig.requester, h.Feed(to=rig.tws, message=ask))
    (answer,) = rig.of(rig.requester, HistoricalBars, 1)
    assert (answer.symbol, answer.bar_size_s, len(answer.bars)) == ("MSFT", 60, 5)
    stamps = [b.ts_ns for b in answer.bars]
    assert stamps == sorted(stamps) and all(b.symbol == "MSFT" and b.high >= b.low for b in answer.bars)


# ---------------------------------------------------------------- orders


@pytest.mark.parametrize("wire", ["protobuf", "text"])
def test_bracket_reaches_simulator_with_parent_and_transmit_and_fills_route_once(
    asys: ActorSystem, sim: SimulatorThread, tmp_path: Path,
) -> None:
    rig = Rig(asys, sim, tmp_path)
    rig.wait_state(C.READY)
    bid = rig.quote("AAPL").bid
    entry = new_order(ref="g1.entry", symbol="AAPL", side=Side.BUY, quantity=10, order_type=OrderType.MKT)
    stop = new_order(ref="g1.stop", symbol="AAPL", side=Side.SELL, quantity=10, order_type=OrderType.STP,
                     stop_price=bid - 5, tif=TimeInForce.GTC, parent_ref="g1.entry")
    target = new_order(ref="g1.target", symbol="AAPL", side=Side.SELL, quantity=10, order_type=OrderType.LMT,
                       limit_price=bid - 1, tif=TimeInForce.GTC, parent_ref="g1.entry")
    first = rig.submit(entry, transmit=False)
    rig.submit(stop, transmit=False, protective=True)
    held = {m.ref: m.broker_id for m in rig.of(rig.owner, OrderSubmitted, 2)}
    # Not transmitted yet: the broker holds both legs silently.
    legs = [eventually(lambda i=i: rig.broker_order(i), 5, f"order {i} at the broker")
            for i in (held["g1.entry"], held["g1.stop"])]
    assert [(o.order_ref, o.parent_id, o.transmit) for o in legs] == [
        ("g1.entry", 0, False), ("g1.stop", held["g1.entry"], False)]
    assert sim.snapshot()["executions"] == 0
    rig.submit(target, transmit=True, protective=True)
    submitted = {m.ref: m.broker_id for m in rig.of(rig.owner, OrderSubmitted, 3)}
    ids = [submitted[r] for r in ("g1.entry", "g1.stop", "g1.target")]
    assert ids == sorted(ids) and len(set(ids)) == 3
    legs = [eventually(lambda i=i: rig.broker_order(i), 5, f"order {i} at the broker") for i in ids]
    assert [(o.order_ref, o.parent_id) for o in legs] == [
        ("g1.entry", 0), ("g1.stop", ids[0]), ("g1.target", ids[0])]
    eventually(lambda: all(rig.broker_order(i).transmit for i in ids), 5, "the last leg transmits all")

    def fills() -> list[ExecutionReported]:
        return rig.of(rig.owner, ExecutionReported)
    rig.step_until(lambda: len(fills()) >= 2, what="entry and target filled")
    sim.step(1)
    rig.records(rig.owner)  # one more round trip: nothing else arrives
    got = rig.records(rig.owner).messages
    executions = [m for m in got if isinstance(m, ExecutionReported)]
    assert sorted(m.execution.order_ref for m in executions) == ["g1.entry", "g1.target"]
    assert len({m.execution.exec_id for m in executions}) == len(executions) == sim.snapshot()["executions"]
    assert all(m.group_id == "g1" and m.execution.commission > 0 for m in executions)
    # Every event about the entry continues the correlation chain of its SubmitOrder.
    assert {m.corr_id for m in _by_ref(list(got), "g1.entry")} == {first.msg_id}
    for ref in ("g1.entry", "g1.target"):
        mine = _by_ref(list(got), ref)
        first_fill = next(i for i, m in enumerate(mine) if isinstance(m, ExecutionReported))
        filled = next(i for i, m in enumerate(mine) if isinstance(m, OrderStatusChanged)
                      and m.status is OrderStatus.FILLED)
        assert first_fill < filled, f"{ref}: Filled reached the owner before its execution"
    stop_statuses = [m.status for m in _by_ref(list(got), "g1.stop") if isinstance(m, OrderStatusChanged)]
    def stop_cancelled() -> bool:
        statuses = _by_ref(rig.of(rig.owner, OrderStatusChanged), "g1.stop")
        return OrderStatus.CANCELLED in [m.status for m in statuses]
    eventually(stop_cancelled, 5, "the stop cancelled (OCA with the target)")
    assert OrderStatus.FILLED not in stop_statuses
    assert set(sim.snapshot()["orders_per_ref"].values()) == {1}
    accepted = [m.ref for m in rig.of(rig.owner, OrderAccepted)]
    assert sorted(accepted) == ["g1.entry", "g1.stop", "g1.target"]


def test_a_fill_after_an_acknowledged_cancel_reaches_the_symbols_when_its_owner_has_ended(
        asys: ActorSystem, sim: SimulatorThread, tmp_path: Path) -> None:
    # The field notes' late fill: the cancel is acknowledged, then the order turns out to have
    # filled. Its group may have ended on the Cancelled; the position must still hear of the fill.
    rig = Rig(asys, sim, tmp_path)
    rig.wait_state(C.READY)
    group = asys.createActor(h.Recorder)
    order = new_order(ref="g3.entry", symbol="MSFT", side=Side.BUY, quantity=5, order_type=OrderType.LMT,
                      limit_price=rig.quote("MSFT").bid - 50)
    asys.tell(rig.tws, SubmitOrder(order=order, group_id="g3", reply_to=group))
    eventually(lambda: any(m.status is OrderStatus.SUBMITTED for m in rig.of(group, OrderStatusChanged)),
               5, "Submitted")
    asys.tell(group, ActorExitRequest())  # the group ended (it would on the Cancelled)
    sim.fill_after_cancel(1)
    asys.tell(rig.tws, CancelOrder(ref="g3.entry", reason="test"))
    (fill,) = rig.of(rig.symbols, ExecutionReported, 1)
    assert (fill.execution.order_ref, fill.execution.symbol, fill.execution.quantity, fill.group_id) == (
        "g3.entry", "MSFT", Decimal(5), "g3")
    assert fill.execution.exec_id == sim.call(lambda: sim.sim.executions[-1].fill.exec_id)
    rig.records(rig.symbols)  # one more round trip: once only
    assert len(rig.of(rig.symbols, ExecutionReported)) == 1


def test_a_commission_report_later_than_the_wait_follows_its_fill_to_the_symbols_once(
        asys: ActorSystem, sim: SimulatorThread, tmp_path: Path) -> None:
    sim.commission_lag(1.0)
    rig = Rig(asys, sim, tmp_path, commission_wait_ns=_S // 5)
    rig.wait_state(C.READY)
    order = new_order(ref="g4.entry", symbol="AAPL", side=Side.BUY, quantity=10, order_type=OrderType.MKT)
    rig.submit(order, group="g4")
    (fill,) = rig.step_until(lambda: rig.of(rig.symbols, ExecutionReported), seconds=0.25,
                             what="the fill passed on without its commission")
    assert fill.execution.commission == 0
    (late,) = rig.of(rig.symbols, CommissionReported, 1)
    assert (late.exec_id, late.symbol, late.order_ref) == (fill.execution.exec_id, "AAPL", "g4.entry")
    assert late.commission == sim.call(lambda: sim.sim.executions[-1].fill.commission) > 0
    rig.records(rig.symbols)  # one more round trip: once only
    assert len(rig.of(rig.symbols, CommissionReported)) == 1


def test_cancel_of_resting_order_ends_cancelled_at_owner(asys: ActorSystem, sim: SimulatorThread,
                                                         tmp_path: Path) -> None:
    rig = Rig(asys, sim, tmp_path)
    rig.wait_state(C.READY)
    order = new_order(ref="g2.entry", symbol="MSFT", side=Side.BUY, quantity=5, order_type=OrderType.LMT,
                      limit_price=rig.quote("MSFT").bid - 50)
    rig.submit(order, group="g2")
    eventually(lambda: any(m.status is OrderStatus.SUBMITTED for m in rig.of(rig.owner, OrderStatusChanged)),
               5, "Submitted")
    asys.tell(rig.tws, CancelOrder(ref="g2.entry", reason="test"))
    eventually(lambda: any(m.status is OrderStatus.CANCELLED and m.broker_id
                           for m in rig.of(rig.owner, OrderStatusChanged)), 5, "Cancelled")
    (submitted,) = rig.of(rig.owner, OrderSubmitted)
    assert rig.broker_order(submitted.broker_id).status == matching.CANCELLED


def test_order_of_another_client_is_announced_external_and_left_alone(asys: ActorSystem, sim: SimulatorThread,
                                                                     tmp_path: Path) -> None:
    manual = new_order(ref="manual-1", symbol="MSFT", side=Side.SELL, quantity=3, order_type=OrderType.LMT,
                       limit_price=sim.call(lambda: sim.sim.quotes["MSFT"]).ask + 50)
    external_id = h.place_external(sim.port, 9, manual)
    rig = Rig(asys, sim, tmp_path)
    rig.wait_state(C.READY)
    (found,) = rig.of(rig.bus, ExternalOrderDetected, 1)
    assert (found.order.ref, found.order.symbol, found.order.side, found.order.quantity) == (
        "manual-1", "MSFT", Side.SELL, Decimal(3))
    assert "client 9" in found.reason
    ours = new_order(ref="g6.entry", symbol="MSFT", side=Side.BUY, quantity=1, order_type=OrderType.LMT,
                     limit_price=rig.quote("MSFT").bid - 50)
    rig.submit(ours, group="g6")
    (submitted,) = rig.of(rig.owner, OrderSubmitted, 1)
    assert submitted.broker_id > external_id  # above every id seen at the broker
    assert rig.broker_order(external_id).status == matching.SUBMITTED  # never touched
    assert sim.snapshot()["orders_per_ref"] == {"manual-1": 1, "g6.entry": 1}
    assert len(rig.of(rig.bus, ExternalOrderDetected)) == 1


def test_first_order_id_is_above_the_journaled_high_water_mark(asys: ActorSystem, sim: SimulatorThread,
                                                                tmp_path: Path) -> None:
    rig = Rig(asys, sim, tmp_path, order_id_hwm=500)
    rig.wait_state(C.READY)
    order = new_order(ref="g7.entry", symbol="SPY", side=Side.BUY, quantity=1, order_type=OrderType.LMT,
                      limit_price=rig.quote("SPY").bid - 20)
    rig.submit(order, group="g7")
    (submitted,) = rig.of(rig.owner, OrderSubmitted, 1)
    assert submitted.broker_id == 501  # the simulator's nextValidId is 1: the journal's floor wins
    assert eventually(lambda: rig.broker_order(501), 5, "order 501 at the broker").order_ref == "g7.entry"


# ---------------------------------------------------------------- outages


def test_drop_reconnects_with_backoff_resyncs_and_routes_missed_fill_once(
    asys: ActorSystem, sim: SimulatorThread, tmp_path: Path,
) -> None:
    rig = Rig(asys, sim, tmp_path)
    rig.wait_state(C.READY)
    order = new_order(ref="g3.entry", symbol="AAPL", side=Side.BUY, quantity=10, order_type=OrderType.LMT,
                      limit_price=rig.quote("AAPL").bid - Decimal("0.30"))
    rig.submit(order, group="g3")
    eventually(lambda: any(m.status is OrderStatus.SUBMITTED for m in rig.of(rig.owner, OrderStatusChanged)),
               5, "Submitted")
    sim.refuse(1.5)  # a TWS restart: the socket drops, connections are refused for 1.5 s
    rig.step_until(lambda: sim.snapshot()["executions"] >= 1, what="a fill during the outage")
    assert rig.of(rig.owner, ExecutionReported) == []  # nobody to tell yet
    rig.wait_state(C.READY, nth=2, timeout=15)
    fills = rig.of(rig.owner, ExecutionReported, 1)
    rig.records(rig.owner)
    assert len(rig.of(rig.owner, ExecutionReported)) == len(fills) == 1
    assert fills[0].execution.order_ref == "g3.entry" and fills[0].execution.commission > 0
    assert sim.snapshot()["orders_per_ref"] == {"g3.entry": 1}
    states = rig.states()
    after_drop = states[states.index((C.SYNCHRONIZING, C.READY, 0)) + 1:]
    assert after_drop[0][:2] == (C.READY, C.DISCONNECTED)
    assert after_drop[-1][:2] == (C.SYNCHRONIZING, C.READY)
    attempts = sum(1 for prev, state, _ in after_drop if state is C.CONNECTING)
    assert attempts >= 2, f"the refused period should need several attempts, saw {after_drop}"
    assert OrderStatus.FILLED in [m.status for m in rig.of(rig.owner, OrderStatusChanged)]


def test_a_frame_longer_than_the_protocol_allows_makes_the_connection_reconnect_and_resync(
    asys: ActorSystem, sim: SimulatorThread, tmp_path: Path,
) -> None:
    # A 4 GB frame header (a corrupt or hostile stream) is neither buffered nor skipped: the stream
    # cannot be realigned, so the socket is closed and the connection synchronizes again.
    rig = Rig(asys, sim, tmp_path)
    rig.wait_state(C.READY)

    def corrupt() -> int:
        for session in sim.sim.sessions:
            session.queue(struct.pack("!I", 0xFFFFFFF0) + b"not a frame")
            session.flush()
        return len(sim.sim.sessions)

    assert sim.call(corrupt) == 1
    rig.wait_state(C.READY, nth=2, timeout=15)
    states = rig.states()
    after = states[states.index((C.SYNCHRONIZING, C.READY, 0)) + 1:]
    assert after[0][:2] == (C.READY, C.DISCONNECTED) and after[-1][:2] == (C.SYNCHRONIZING, C.READY)


def test_orders_wait_for_ready_and_cancels_for_a_socket_during_an_outage(
    asys: ActorSystem, sim: SimulatorThread, tmp_path: Path,
) -> None:
    rig = Rig(asys, sim, tmp_path)
    rig.wait_state(C.READY)
    bid = rig.quote("MSFT").bid
    keep = new_order(ref="g8.keep", symbol="MSFT", side=Side.BUY, quantity=2, order_type=OrderType.LMT,
                     limit_price=bid - 50)
    rig.submit(keep, group="g8")
    (kept,) = rig.of(rig.owner, OrderSubmitted, 1)
    eventually(lambda: rig.of(rig.owner, OrderAccepted), 5, "accepted")
    sim.refuse(1.0)
    rig.wait_state(C.DISCONNECTED, nth=1)
    asys.tell(rig.tws, CancelOrder(ref="g8.keep", reason="test"))
    late = new_order(ref="g8.late", symbol="MSFT", side=Side.BUY, quantity=1, order_type=OrderType.LMT,
                     limit_price=bid - 60)
    rig.submit(late, group="g8")
    status = asys.ask(rig.tws, GetActorStatus(), ASK)  # both handled: the connection is still down
    assert isinstance(status, ActorStatusSnapshot) and not status.failed
    assert C.READY not in [s for _, s, _ in rig.states()[3:]]
    rig.wait_state(C.READY, nth=2, timeout=15)
    later = eventually(lambda: [m for m in rig.of(rig.owner, OrderSubmitted) if m.ref == "g8.late"], 5,
                       "the held order leaves once READY")
    assert later[0].broker_id > kept.broker_id
    eventually(lambda: rig.broker_order(kept.broker_id).status == matching.CANCELLED, 5,
               "the parked cancel reaches the broker")
    eventually(lambda: any(m.ref == "g8.keep" and m.status is OrderStatus.CANCELLED
                           for m in rig.of(rig.owner, OrderStatusChanged)), 5, "Cancelled at the owner")
    assert sim.snapshot()["orders_per_ref"] == {"g8.keep": 1, "g8.late": 1}


def test_modify_re_places_under_the_same_id_and_a_repeated_submit_sends_nothing_new(
    asys: ActorSystem, sim: SimulatorThread, tmp_path: Path,
) -> None:
    rig = Rig(asys, sim, tmp_path)
    rig.wait_state(C.READY)
    bid = rig.quote("SPY").bid
    order = new_order(ref="g10.entry", symbol="SPY", side=Side.BUY, quantity=4, order_type=OrderType.LMT,
                      limit_price=bid - 30)
    rig.submit(order, group="g10")
    (submitted,) = rig.of(rig.owner, OrderSubmitted, 1)
    eventually(lambda: rig.of(rig.owner, OrderAccepted), 5, "accepted")
    rig.submit(order, group="g10")  # the same leg again: answered, not sent again
    assert [m.broker_id for m in rig.of(rig.owner, OrderSubmitted, 2)] == [submitted.broker_id] * 2
    asys.tell(rig.tws, ModifyOrder(ref="g10.entry", limit_price=bid - 20, quantity=Decimal(6)))
    moved = eventually(lambda: (o := rig.broker_order(submitted.broker_id)).limit_price == bid - 20 and o, 5,
                       "the new limit at the broker")
    assert moved.quantity == 6 and moved.order_ref == "g10.entry"
    assert sim.snapshot()["orders_per_ref"] == {"g10.entry": 1}
    assert len(rig.of(rig.owner, OrderSubmitted)) == 2


def test_link_loss_degrades_and_1101_resubscribes_market_data(asys: ActorSystem, sim: SimulatorThread,
                                                              tmp_path: Path) -> None:
    rig = Rig(asys, sim, tmp_path)
    rig.wait_state(C.READY)
    asys.tell(rig.tws, SubscribeMarketData(symbol="SPY", reply_to=rig.quotes))
    rig.of(rig.quotes, QuoteUpdate, 1)
    sim.lose_link()
    rig.wait_state(C.DEGRADED)
    sim.restore_link(data_kept=False)  # 1101: the simulator dropped every subscription
    rig.wait_state(C.READY, nth=2)
    before = len(rig.of(rig.quotes, QuoteUpdate))
    rig.step_until(lambda: len(rig.of(rig.quotes, QuoteUpdate)) > before, max_steps=100,
                   what="quotes flow again after 1101")
    assert rig.states()[3:] == [(C.READY, C.DEGRADED, 1100), (C.DEGRADED, C.SYNCHRONIZING, 1101),
                                (C.SYNCHRONIZING, C.READY, 0)]


def test_burst_of_200_data_requests_stays_under_simulator_pacing_limit(
    asys: ActorSystem, sim: SimulatorThread, tmp_path: Path,
) -> None:
    rig = Rig(asys, sim, tmp_path)
    rig.wait_state(C.READY)
    started = time.monotonic()
    for _ in range(200):
        asys.tell(rig.requester, h.Feed(to=rig.tws, message=GetHistoricalBars(symbol="SPY", bar_size_s=60,
                                                                                count=2)))
    answers = rig.of(rig.requester, HistoricalBars, 200, timeout=30)
    elapsed = time.monotonic() - started
    assert len(answers) == 200 and all(a.bars for a in answers)
    assert sim.snapshot()["stats"].get("paced_out", 0) == 0
    assert [m for m in rig.of(rig.bus, BrokerError) if m.code == 100] == []
    # 45/s with a reserve: 200 requests cannot have left in much under 4 s
    assert elapsed > 3.5, f"200 requests answered in {elapsed:.2f} s: not paced"


# ---------------------------------------------------------------- restart


def test_restarted_connection_resumes_routes_from_snapshot_and_claims_replay(
    asys: ActorSystem, sim: SimulatorThread, tmp_path: Path,
) -> None:
    rig = Rig(asys, sim, tmp_path)
    rig.wait_state(C.READY)
    order = new_order(ref="g4.entry", symbol="AAPL", side=Side.BUY, quantity=10, order_type=OrderType.LMT,
                      limit_price=rig.quote("AAPL").bid - Decimal("0.30"))
    rig.submit(order, group="g4")
    (submitted,) = rig.of(rig.owner, OrderSubmitted, 1)
    eventually(lambda: rig.of(rig.owner, OrderAccepted), 5, "accepted")

    def snapshot_routes() -> Any:
        info = asys.ask(rig.parent, h.GetChild(), ASK)
        state = info.state
        return state if isinstance(state, TwsState) and any(r.accepted for r in state.routes) else None
    eventually(snapshot_routes, 5, "a snapshot with the accepted route")
    asys.tell(rig.tws, ActorExitRequest())
    info = eventually(lambda: (i := asys.ask(rig.parent, h.GetChild(), ASK)).incarnation == 2 and i, 10,
                      "the restart")
    rig.wait_state(C.READY, nth=2, timeout=15)
    rig.step_until(lambda: rig.of(rig.owner, ExecutionReported), what="the fill after the restart")
    sim.step(1)
    fills = rig.of(rig.owner, ExecutionReported)
    assert len(fills) == 1 and fills[0].execution.order_id == submitted.broker_id

    # A restarted group claims its leg: the connection replays what it has seen, to the new owner.
    claimer = asys.createActor(h.Recorder)
    asys.tell(info.address, ClaimOrders(group_id="g4", refs=("g4.entry",), reply_to=claimer))
    replay = rig.of(claimer, ExecutionReported, 1)
    assert [m.execution.exec_id for m in replay] == [fills[0].execution.exec_id]
    claimed = rig.records(claimer).messages
    assert [m.broker_id for m in claimed if isinstance(m, OrderSubmitted)] == [submitted.broker_id]
    assert any(isinstance(m, OrderStatusChanged) and m.status is OrderStatus.FILLED for m in claimed)

    # New orders never reuse an id of the earlier incarnation.
    nxt = new_order(ref="g5.entry", symbol="MSFT", side=Side.BUY, quantity=1, order_type=OrderType.LMT,
                    limit_price=rig.quote("MSFT").bid - 50)
    asys.tell(info.address, SubmitOrder(order=nxt, group_id="g5", reply_to=rig.owner))
    later = eventually(lambda: [m for m in rig.of(rig.owner, OrderSubmitted) if m.ref == "g5.entry"], 5, "g5")
    assert later[0].broker_id > submitted.broker_id
    # OrderSubmitted goes out as the frame leaves; the simulator may not have read it yet.
    assert eventually(lambda: "g5.entry" in sim.snapshot()["orders_per_ref"], 5, "g5 at the simulator")
    assert sim.snapshot()["orders_per_ref"] == {"g4.entry": 1, "g5.entry": 1}


def test_tws_changes_add_up_to_the_state_and_forget_long_finished_routes() -> None:
    a1, b1 = Route(ref="a", group_id="g1"), Route(ref="b", group_id="g1")
    kept = TwsChange(next_order_id=5, routes=(a1, b1)).apply(None)
    subs = (SubscriptionState(symbol="AAPL"),)
    a2 = Route(ref="a", group_id="g1", broker_id=7)
    kept = TwsChange(next_order_id=8, routes=(a2,), subscriptions=subs).apply(kept)
    assert kept == TwsState(next_order_id=8, routes=(a2, b1), subscriptions=subs)
    kept = TwsChange(next_order_id=3, forget=("b",)).apply(kept)  # the id floor never goes back
    assert kept == TwsState(next_order_id=8, routes=(a2,), subscriptions=subs)


def test_unowned_order_keeps_its_events_until_its_group_claims_it_then_replays_them(
        asys: ActorSystem, sim: SimulatorThread, tmp_path: Path) -> None:
    rig = Rig(asys, sim, tmp_path)
    rig.wait_state(C.READY)
    order = new_order(ref="g9.entry", symbol="AAPL", side=Side.BUY, quantity=10, order_type=OrderType.MKT)
    asys.tell(rig.tws, SubmitOrder(order=order, group_id="g9", unowned=True))
    fill = rig.step_until(lambda: sim.call(lambda: sim.sim.orders_per_ref.get("g9.entry")), seconds=0.25,
                          what="the order at the simulator")
    assert fill == 1
    rig.step_until(lambda: sim.call(lambda: len(sim.sim.executions)), what="the fill at the simulator")
    claimer = asys.createActor(h.Recorder)
    asys.tell(rig.tws, ClaimOrders(group_id="g9", refs=("g9.entry",), reply_to=claimer))
    (submitted,) = rig.of(claimer, OrderSubmitted, 1)
    fills = rig.of(claimer, ExecutionReported, 1)
    assert submitted.broker_id > 0 and [f.execution.quantity for f in fills] == [Decimal(10)]
    assert rig.of(rig.owner, ExecutionReported) == []  # nobody else heard of it
    # A repeat of the unowned submit after the claim keeps the claimer and sends nothing twice.
    asys.tell(rig.tws, SubmitOrder(order=order, group_id="g9", unowned=True))
    rig.of(claimer, OrderSubmitted, 2)
    assert sim.call(lambda: sim.sim.orders_per_ref["g9.entry"]) == 1


# ---------------------------------------------------------------- the journal


def _journal_settings(tmp_path: Path) -> JournalSettings:
    return JournalSettings(path=str(tmp_path / "state" / "journal.sqlite"))


def test_journal_floors_the_order_id_and_each_first_placement_raises_it_before_it_leaves(
        asys: ActorSystem, sim: SimulatorThread, tmp_path: Path) -> None:
    with Journal.open(_journal_settings(tmp_path).path) as journal:
        journal.raise_order_id_hwm(700)
        journal.record_intent(IntentRow(intent_id="g10", ts_ns=1, symbol="SPY", side=Side.BUY,
                                        quantity=Decimal(1), order_type=OrderType.LMT, decision="APPROVED"))
    rig = Rig(asys, sim, tmp_path, journal=_journal_settings(tmp_path))
    rig.wait_state(C.READY)
    order = new_order(ref="g10.entry", symbol="SPY", side=Side.BUY, quantity=1, order_type=OrderType.LMT,
                      limit_price=rig.quote("SPY").bid - 20)
    rig.submit(order, group="g10")
    (submitted,) = rig.of(rig.owner, OrderSubmitted, 1)
    assert submitted.broker_id == 701  # above the journaled mark, though the simulator's next id is 1
    with Journal.open(_journal_settings(tmp_path).path, readonly=True) as journal:
        assert journal.order_id_hwm() == 701
        row = journal.order("g10.entry")
        assert row is not None and row.broker_id == 701 and row.route is not None
        intent = journal.intent("g10")
        assert intent is not None and intent.resolution == "SENT" and "701" in intent.resolution_reason


def test_later_order_states_reach_the_journal_in_one_batch_shortly_after_and_at_exit(
        asys: ActorSystem, sim: SimulatorThread, tmp_path: Path) -> None:
    settings = _journal_settings(tmp_path)
    rig = Rig(asys, sim, tmp_path, journal=settings)
    rig.wait_state(C.READY)
    order = new_order(ref="g14.entry", symbol="SPY", side=Side.BUY, quantity=2, order_type=OrderType.MKT)
    rig.submit(order, group="g14")
    rig.step_until(lambda: rig.of(rig.owner, ExecutionReported), seconds=0.25, what="the fill")

    def row_status() -> OrderStatus | None:
        with Journal.open(settings.path, readonly=True) as journal:
            row = journal.order("g14.entry")
        return None if row is None else row.status

    # The fill itself is journaled before it is routed; the order's row follows within the batch delay.
    with Journal.open(settings.path, readonly=True) as journal:
        assert [e.exec_id for e in journal.executions(refs=("g14.entry",))]
    eventually(lambda: row_status() is OrderStatus.FILLED, 5, "the FILLED row")
    # A state changed just before the actor stops is journaled on its way out.
    resting = new_order(ref="g15.entry", symbol="SPY", side=Side.BUY, quantity=1, order_type=OrderType.LMT,
                        limit_price=rig.quote("SPY").bid - 20)
    rig.submit(resting, group="g15")
    eventually(lambda: [m for m in rig.of(rig.owner, OrderStatusChanged)
                        if m.ref == "g15.entry" and m.status is OrderStatus.SUBMITTED], 5, "working")
    asys.tell(rig.tws, ActorExitRequest())
    eventually(lambda: sim.snapshot()["clients"] == [], 10, "the connection gone")
    with Journal.open(settings.path, readonly=True) as journal:
        row = journal.order("g15.entry")
    assert row is not None and row.status is OrderStatus.SUBMITTED


def test_started_again_from_the_journal_it_resumes_open_orders_and_never_sends_them_twice(
        asys: ActorSystem, sim: SimulatorThread, tmp_path: Path) -> None:
    settings = _journal_settings(tmp_path)
    rig = Rig(asys, sim, tmp_path, journal=settings)
    rig.wait_state(C.READY)
    resting = new_order(ref="g11.entry", symbol="AAPL", side=Side.BUY, quantity=10, order_type=OrderType.LMT,
                        limit_price=rig.quote("AAPL").bid - Decimal("0.30"))
    rig.submit(resting, group="g11")
    (submitted,) = rig.of(rig.owner, OrderSubmitted, 1)
    eventually(lambda: rig.of(rig.owner, OrderAccepted), 5, "accepted")
    # A route the journal holds with an id the broker never saw, and one never given an id.
    with Journal.open(settings.path) as journal:
        for ref, broker_id in (("g12.entry", 900), ("g13.entry", 0)):
            order = new_order(ref=ref, symbol="MSFT", side=Side.BUY, quantity=1, order_type=OrderType.LMT,
                              limit_price=Decimal(1))
            route = Route(ref=ref, group_id=ref.split(".")[0], order=order, broker_id=broker_id)
            journal.upsert_order(OrderRow.of(replace(order, broker_id=broker_id), group_id=route.group_id,
                                             route=pickle.dumps(route)))
    asys.tell(rig.parent, ActorExitRequest())  # the whole system stops: nobody keeps a snapshot
    eventually(lambda: sim.snapshot()["clients"] == [], 10, "the first connection gone")

    again = Rig(asys, sim, tmp_path, journal=settings)  # no state: only the journal
    again.wait_state(C.READY)
    claimer = asys.createActor(h.Recorder)
    asys.tell(again.tws, ClaimOrders(group_id="g11", refs=("g11.entry",), reply_to=claimer))
    (replayed,) = rig.of(claimer, OrderSubmitted, 1)
    assert replayed.broker_id == submitted.broker_id
    for group in ("g12", "g13"):
        lost = asys.createActor(h.Recorder)
        asys.tell(again.tws, ClaimOrders(group_id=group, refs=(f"{group}.entry",), reply_to=lost))
        (rejected,) = rig.of(lost, OrderRejected, 1)
        assert "not sent again" in rejected.reason or "abandoned" in rejected.reason, rejected.reason
    again.step_until(lambda: rig.of(claimer, ExecutionReported), what="the resting order's fill")
    assert sim.snapshot()["orders_per_ref"] == {"g11.entry": 1}  # nothing re-sent, nothing invented


def test_subscriptions_lost_to_error_100_are_asked_again_once_it_stops(
    asys: ActorSystem, sim: SimulatorThread, tmp_path: Path,
) -> None:
    rig = Rig(asys, sim, tmp_path)
    rig.wait_state(C.READY)
    sim.squeeze_pacing(1, 3.0)  # another client takes the budget: above 1 msg/s, IB drops with 100
    symbols = [s.symbol for s in SYMBOLS]
    for symbol in symbols:
        asys.tell(rig.tws, SubscribeMarketData(symbol=symbol, reply_to=rig.quotes))
    eventually(lambda: sim.snapshot()["stats"].get("paced_out", 0) > 0, 15, "a request dropped with error 100")

    def quoted() -> set[str]:
        return {m.quote.symbol for m in rig.of(rig.quotes, QuoteUpdate)}

    rig.step_until(lambda: quoted() == set(symbols), max_steps=50, wall_s=30,
                   what=f"quotes of every symbol after the squeeze (got {sorted(quoted())})")
    assert "market data asked again after error 100" in rig.log_file.read_text(encoding="utf-8")
