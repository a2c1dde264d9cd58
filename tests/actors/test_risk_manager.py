"""RiskManager: every intent passes the gate; approved groups go to the connection and the groups supervisor,
denied ones nowhere; the kill switch and the daily-loss ladder change the trading state for every symbol."""

from __future__ import annotations

import time
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from thespian.actors import ActorAddress, ActorSystem

from actors.order_group import was_sent
from actors.risk_manager import RiskManager, RiskState
from actors.symbol import SymbolState
from actors.symbol import state_key as symbol_state_key
from core import bars as core_bars
from core import order_group as og
from core import risk as core_risk
from core.config import Config, parse_config
from core.orders import new_order
from core.position import Position, PositionState
from core.types import OrderType, Side, TimeInForce
from messages import (
    AdminError,
    AdminErrorCode,
    AdminReply,
    Flatten,
    GroupKind,
    GroupOutcome,
    Halt,
    OrderApproved,
    OrderDenied,
    OrderGroupFinished,
    OrderIntent,
    Peer,
    PeerMoved,
    PlaceOrderGroup,
    PositionChanged,
    Publish,
    Resume,
    SubmitOrder,
    SubmitOrders,
    ToSymbol,
    TradingStateChanged,
)
from messages.risk import TradingState
from journal.store import ExecRow, Journal
from tests.actors import helpers_runtime as h

pytestmark = pytest.mark.timeout(60)

ASK = timedelta(seconds=10)
D = Decimal
_ACTOR = f"{RiskManager.__module__}.{RiskManager.__qualname__}"


@pytest.fixture
def asys(simple_asys: ActorSystem) -> ActorSystem:
    return simple_asys


def _config(tmp_path: Any) -> Config:
    return parse_config({
        "system": {"log_dir": str(tmp_path / "logs"), "state_dir": str(tmp_path / "state")},
        "symbols": {"AAPL": {}, "MSFT": {}},
        "risk": {"max_order_quantity": 500, "max_order_notional": 50_000, "daily_loss_limit": 5000,
                 "reduce_only_at_pct": 80},
    })


def _bracket(gid: str, quantity: int = 100, side: Side = Side.BUY) -> og.OrderGroup:
    q = D(quantity)
    entry = new_order(ref=og.leg_ref(gid, og.ENTRY), symbol="AAPL", side=side, quantity=q, order_type=OrderType.MKT)
    stop = new_order(ref=og.leg_ref(gid, og.STOP_LOSS), symbol="AAPL", side=side.opposite, quantity=q,
                     order_type=OrderType.STP, stop_price=D(95) if side is Side.BUY else D(105),
                     tif=TimeInForce.GTC)
    target = new_order(ref=og.leg_ref(gid, og.TAKE_PROFIT), symbol="AAPL", side=side.opposite, quantity=q,
                       order_type=OrderType.LMT, limit_price=D(110) if side is Side.BUY else D(90),
                       tif=TimeInForce.GTC)
    return og.bracket(gid, entry, stop, target)


def _intent(group: og.OrderGroup, *, market: str | None = "100", **more: Any) -> OrderIntent:
    head = group.legs[0]
    return OrderIntent(intent_id=group.id, symbol=group.symbol, side=head.side, quantity=head.quantity,
                       order_type=head.order_type, limit_price=head.limit_price, stop_price=head.stop_price,
                       kind=GroupKind(group.kind.value), legs=group.legs,
                       market_price=D(market) if market is not None else None, rule="test", **more)


def _close(gid: str, quantity: int, side: Side = Side.SELL, **more: Any) -> OrderIntent:
    leg = new_order(ref=og.leg_ref(gid, og.ENTRY), symbol="AAPL", side=side, quantity=D(quantity),
                    order_type=OrderType.MKT)
    return _intent(og.single(gid, leg), reduce_only=True, **more)


def _position(quantity: int, *, last: str = "100", realized: str = "0", unrealized: str = "0") -> PositionChanged:
    return PositionChanged(symbol="AAPL", quantity=D(quantity), avg_cost=D(100), last_price=D(last),
                           realized_pnl=D(realized), unrealized_pnl=D(unrealized))


class Rig:
    """A RiskManager under a stand-in supervisor with recording tws, groups, symbols and bus."""

    def __init__(self, asys: ActorSystem, config: Config, state: object = None) -> None:
        self.asys = asys
        self.tws = asys.createActor(h.Recorder)
        self.groups = asys.createActor(h.Recorder)
        self.symbols = asys.createActor(h.Recorder)
        self.bus = asys.createActor(h.Recorder)
        self.parent = asys.createActor(h.StandInSupervisor)
        peers = tuple(Peer(name=n, address=a) for n, a in (
            ("tws", self.tws), ("groups", self.groups), ("symbols", self.symbols), ("bus", self.bus)))
        info = asys.ask(self.parent, h.StartChild(actor_class=_ACTOR, key="risk", config=config, state=state,
                                                  peers=peers, restart=False), ASK)
        assert isinstance(info, h.ChildInfo)
        self.risk: ActorAddress = info.address

    def send(self, *messages: Any) -> None:
        for message in messages:
            self.asys.tell(self.risk, message)

    def ask(self, message: Any) -> Any:
        return self.asys.ask(self.risk, message, ASK)

    def sent(self, who: ActorAddress, cls: type, count: int = 0) -> list[Any]:
        answer = self.asys.ask(who, h.AwaitRecords(type_name=cls.__name__, count=count), ASK)
        assert isinstance(answer, h.Records), answer
        return [m for m in answer.messages if isinstance(m, cls)]

    def submits(self, count: int) -> list[SubmitOrder]:
        """Return the legs risk handed to the connection (in SubmitOrders batches), once there are `count`."""
        batches = self.sent(self.tws, SubmitOrders, 1)
        legs = [leg for batch in batches for leg in batch.orders]
        assert len(legs) >= count, legs
        return legs

    def published(self, cls: type, count: int = 0) -> list[Any]:
        """Return the published `cls` messages once there are at least `count` of them."""
        deadline = time.monotonic() + 10
        while True:
            answer = self.asys.ask(self.bus, h.AwaitRecords(type_name="Publish"), ASK)
            assert isinstance(answer, h.Records), answer
            found = [p.message for p in answer.messages if isinstance(p, Publish) and isinstance(p.message, cls)]
            if len(found) >= count:
                return found
            assert time.monotonic() < deadline, f"only {len(found)} published {cls.__name__}, wanted {count}"
            time.sleep(0.01)


def test_approved_bracket_goes_to_the_connection_and_its_group_with_the_approval(asys: ActorSystem,
                                                                                   tmp_path: Any) -> None:
    rig = Rig(asys, _config(tmp_path))
    group = _bracket("AAPL-1-1")
    rig.send(_intent(group))
    submits = rig.submits(3)
    assert len(rig.sent(rig.tws, SubmitOrders)) == 1  # every leg in one message: one transmit to tws
    assert [m.order.ref for m in submits] == [leg.ref for leg in group.legs]  # entry first
    assert [m.transmit for m in submits] == [False, False, True]  # the last leg transmits the bracket
    assert all(m.unowned and m.group_id == "AAPL-1-1" for m in submits)
    assert [m.protective for m in submits] == [False, True, True]
    (place,) = rig.sent(rig.groups, PlaceOrderGroup, 1)
    assert (place.group_id, place.kind, place.intent_id) == ("AAPL-1-1", GroupKind.BRACKET, "AAPL-1-1")
    assert isinstance(place.started, og.OrderGroup) and all(was_sent(leg) for leg in place.started.legs)
    (approved,) = rig.published(OrderApproved, 1)
    assert place.approval == approved.msg_id and approved.intent.intent_id == "AAPL-1-1"


def test_denied_intent_reaches_neither_broker_nor_groups_and_says_which_limit_by_how_much(
        asys: ActorSystem, tmp_path: Any) -> None:
    rig = Rig(asys, _config(tmp_path))
    rig.send(_intent(_bracket("AAPL-1-1", quantity=800)), _intent(_bracket("AAPL-1-2", quantity=100)))
    # The second (allowed) intent is the barrier: everything about the first happened before it.
    assert {m.group_id for m in rig.submits(3)} == {"AAPL-1-2"}
    assert [p.group_id for p in rig.sent(rig.groups, PlaceOrderGroup, 1)] == ["AAPL-1-2"]
    (denied,) = rig.published(OrderDenied, 1)
    assert denied.limit == "max_order_quantity" and "800" in denied.detail and "by 300" in denied.detail
    (told,) = rig.sent(rig.symbols, ToSymbol, 1)
    assert told.symbol == "AAPL" and isinstance(told.message, OrderDenied)


def test_halt_denies_entries_tells_every_symbol_and_an_operator_flatten_still_closes(asys: ActorSystem,
                                                                                      tmp_path: Any) -> None:
    rig = Rig(asys, _config(tmp_path))
    rig.send(_position(100))
    reply = rig.ask(Halt(reason="test"))
    assert isinstance(reply, AdminReply) and "HALTED" in reply.text
    (changed,) = rig.sent(rig.symbols, TradingStateChanged, 1)
    assert (changed.state, changed.previous) == (TradingState.HALTED, TradingState.ACTIVE)
    rig.send(_intent(_bracket("AAPL-1-1")), _close("AAPL-1-2", 100, operator=True))
    assert [p.group_id for p in rig.sent(rig.groups, PlaceOrderGroup, 1)] == ["AAPL-1-2"]
    (denied,) = rig.published(OrderDenied, 1)
    assert denied.intent.intent_id == "AAPL-1-1" and denied.limit == "trading_state"
    reply = rig.ask(Resume())
    assert isinstance(reply, AdminReply) and "ACTIVE" in reply.text
    assert rig.sent(rig.symbols, TradingStateChanged, 2)[1].state is TradingState.ACTIVE


def test_daily_loss_moves_to_reduce_only_then_halt_and_resume_is_refused_while_past_the_limit(
        asys: ActorSystem, tmp_path: Any) -> None:
    rig = Rig(asys, _config(tmp_path))
    rig.send(_position(100, unrealized="0"), _position(100, last="59", unrealized="-4100"))
    (first,) = rig.sent(rig.symbols, TradingStateChanged, 1)
    assert first.state is TradingState.REDUCE_ONLY and "80%" in first.reason
    rig.send(_intent(_bracket("AAPL-1-1")), _close("AAPL-1-2", 50))  # the close reduces: allowed
    assert [p.group_id for p in rig.sent(rig.groups, PlaceOrderGroup, 1)] == ["AAPL-1-2"]
    rig.send(_position(50, last="49", unrealized="-2550", realized="-2500"))
    second = rig.sent(rig.symbols, TradingStateChanged, 2)[1]
    assert second.state is TradingState.HALTED and "daily_loss_limit" in second.reason
    refused = rig.ask(Resume(reason="try"))
    assert isinstance(refused, AdminError) and refused.code is AdminErrorCode.REFUSED
    assert "daily loss" in refused.text


def test_flatten_all_halts_and_goes_to_the_symbols(asys: ActorSystem, tmp_path: Any) -> None:
    rig = Rig(asys, _config(tmp_path))
    reply = rig.ask(Flatten(reason="end of test"))
    assert isinstance(reply, AdminReply) and "every symbol" in reply.text
    (flatten,) = rig.sent(rig.symbols, Flatten, 1)
    assert flatten.symbol == ""
    assert rig.sent(rig.symbols, TradingStateChanged, 1)[0].state is TradingState.HALTED


def test_finished_group_frees_its_open_orders(asys: ActorSystem, tmp_path: Any) -> None:
    config = parse_config({"system": {"log_dir": str(tmp_path / "logs"), "state_dir": str(tmp_path / "state")},
                           "symbols": {"AAPL": {}}, "risk": {"max_open_orders": 3}})
    rig = Rig(asys, config)
    rig.send(_intent(_bracket("AAPL-1-1")), _intent(_bracket("AAPL-1-2")))
    (denied,) = rig.published(OrderDenied, 1)
    assert denied.intent.intent_id == "AAPL-1-2" and denied.limit == "max_open_orders"
    rig.send(OrderGroupFinished(group_id="AAPL-1-1", symbol="AAPL", outcome=GroupOutcome.CANCELLED),
             _intent(_bracket("AAPL-1-3")))
    assert [p.group_id for p in rig.sent(rig.groups, PlaceOrderGroup, 2)] == ["AAPL-1-1", "AAPL-1-3"]


def test_a_restarted_symbols_supervisor_hears_the_mode_again(asys: ActorSystem, tmp_path: Any) -> None:
    rig = Rig(asys, _config(tmp_path))
    rig.ask(Halt(reason="before the symbols restart"))
    rig.sent(rig.symbols, TradingStateChanged, 1)
    fresh = asys.createActor(h.Recorder)
    rig.send(PeerMoved(name="symbols", address=fresh))
    answer = asys.ask(fresh, h.AwaitRecords(type_name="TradingStateChanged", count=1), ASK)
    (told,) = [m for m in answer.messages if isinstance(m, TradingStateChanged)]
    assert told.state is TradingState.HALTED and "before the symbols restart" in told.reason


def test_restarted_gate_keeps_its_mode_and_repeats_it_to_the_symbols(asys: ActorSystem, tmp_path: Any) -> None:
    account = core_risk.set_mode(core_risk.Account(), core_risk.Mode.HALTED, "operator: before the restart")
    rig = Rig(asys, _config(tmp_path), state=RiskState(account=account))
    (told,) = rig.sent(rig.symbols, TradingStateChanged, 1)
    assert told.state is TradingState.HALTED and told.reason == "operator: before the restart"
    rig.send(_intent(_bracket("AAPL-1-1")))
    (denied,) = rig.published(OrderDenied, 1)
    assert denied.limit == "trading_state"


def _journal_symbol_position(config: Config, quantity: int, *, later_fills: tuple[tuple[Side, int], ...] = ()) -> None:
    """Journal AAPL's state as its symbol actor does before it sends an intent (the bus not told yet).

    Its fills so far are journaled under its floor; `later_fills` are journaled after it, as the
    connection journals a fill before the symbol hears of it.
    """
    journal = Journal.open(config.journal_path)
    try:
        if quantity:
            journal.record_execution(ExecRow(exec_id="e0", ref="AAPL-1-1:entry", order_id=1, symbol="AAPL",
                                             side=Side.BUY if quantity > 0 else Side.SELL, quantity=D(abs(quantity)),
                                             price=D(100), ts_ns=1))
        position = Position(symbol="AAPL", quantity=D(quantity), cost_basis=D(quantity) * 100,
                            state=PositionState.OPEN if quantity else PositionState.FLAT,
                            exec_floor=1 if quantity else 0)
        journal.put_state(symbol_state_key("AAPL"), SymbolState(symbol="AAPL", position=position,
                                                                bars=core_bars.new_state("AAPL", 1)))
        for n, (side, size) in enumerate(later_fills, start=1):
            journal.record_execution(ExecRow(exec_id=f"e{n}", ref="AAPL-1-1:tp", order_id=3, symbol="AAPL",
                                             side=side, quantity=D(size), price=D(110), ts_ns=1 + n))
    finally:
        journal.close()


def test_a_close_asked_before_the_bus_told_the_gate_of_its_entry_fill_is_judged_on_the_journaled_position(
        asys: ActorSystem, tmp_path: Any) -> None:
    # Seen in a chaos run: the entry filled, the rule closed 1.4 s later, the gate still counted 0
    # from the bus and denied "would not reduce the position 0", with the bracket's stop already
    # cancelled for the exit. The symbol journals its position before it sends any intent.
    config = _config(tmp_path)
    rig = Rig(asys, config)
    _journal_symbol_position(config, 61)
    rig.send(_close("AAPL-1-2", 61), _close("AAPL-1-3", 100), _intent(_bracket("AAPL-1-4", quantity=10)))
    # The bracket is the barrier: both closes were decided before it.
    assert [m.group_id for m in rig.submits(4)] == ["AAPL-1-2", "AAPL-1-4", "AAPL-1-4", "AAPL-1-4"]
    (denied,) = rig.published(OrderDenied, 1)  # selling 100 of 61 is no close, whatever the count
    assert denied.intent.intent_id == "AAPL-1-3" and denied.limit == "reduce_only"
    assert "position 61 (to -39)" in denied.detail


def test_a_close_of_a_position_the_journal_does_not_hold_either_is_still_denied(asys: ActorSystem,
                                                                                tmp_path: Any) -> None:
    config = _config(tmp_path)
    rig = Rig(asys, config)
    _journal_symbol_position(config, 0)
    rig.send(_close("AAPL-1-2", 61), _intent(_bracket("AAPL-1-3", quantity=10)))
    assert {m.group_id for m in rig.submits(3)} == {"AAPL-1-3"}
    (denied,) = rig.published(OrderDenied, 1)
    assert denied.limit == "reduce_only" and "position 0 (to -61)" in denied.detail


def test_a_close_the_broker_already_made_by_a_fill_the_symbol_has_not_heard_of_is_denied(
        asys: ActorSystem, tmp_path: Any) -> None:
    # Seen in a chaos run: the exit cancelled the bracket's target, the broker acknowledged the
    # cancel and filled it anyway; the connection journaled that fill 60 ms before the gate approved
    # the close (the symbol and the bus still said long 53), and the close took the account short.
    config = _config(tmp_path)
    rig = Rig(asys, config)
    rig.send(_position(53))
    _journal_symbol_position(config, 53, later_fills=((Side.SELL, 53),))
    rig.send(_close("AAPL-1-2", 53), _intent(_bracket("AAPL-1-3", quantity=10)))
    assert {m.group_id for m in rig.submits(3)} == {"AAPL-1-3"}
    (denied,) = rig.published(OrderDenied, 1)
    assert (denied.intent.intent_id, denied.limit) == ("AAPL-1-2", "reduce_only")
    assert "position 0 (to -53)" in denied.detail
