"""Tests for core.order_group: builders, bracket / OCO / single coordination, races, finishing."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings, strategies as st

from core.errors import CoreError, InvalidExecution, InvalidGroupEvent, InvalidOrder
from core.order_group import (
    OCA_TYPE,
    CancelEntry,
    CancelGroup,
    CancelOrder,
    Command,
    Event,
    GroupFinished,
    GroupKind,
    GroupState,
    LegAccepted,
    LegExecution,
    LegRejected,
    LegStatus,
    ModifyOrder,
    OrderGroup,
    ReplaceStop,
    Start,
    SubmitOrder,
    bracket,
    decide,
    find_leg,
    oco,
    single,
    unprotected,
)
from core.orders import Order, OrderStatus, awaiting_executions, is_done, new_order
from core.types import Execution, OrderType, Side

D = Decimal
S = OrderStatus
G = "g-17"
ENTRY, SL, TP = f"{G}:entry", f"{G}:sl", f"{G}:tp"


def _o(side: str = "BUY", order_type: str = "LMT", quantity: int = 100, symbol: str = "AAPL",
       **prices: str) -> Order:
    if order_type == "LMT" and not prices:
        prices = {"limit_price": "100"}
    return new_order(ref="tmp", symbol=symbol, side=side, quantity=quantity, order_type=order_type,
                     **prices)


def _bracket(side: str = "BUY", quantity: int = 100) -> OrderGroup:
    exit_side = "SELL" if side == "BUY" else "BUY"
    sl, tp = ("95", "110") if side == "BUY" else ("105", "90")
    return bracket(G, _o(side, "LMT", quantity, limit_price="100"),
                   _o(exit_side, "STP", quantity, stop_price=sl),
                   _o(exit_side, "LMT", quantity, limit_price=tp))


def _run(group: OrderGroup, *events: Event) -> tuple[OrderGroup, list[Command]]:
    commands: list[Command] = []
    for event in events:
        group, emitted = decide(group, event)
        commands.extend(emitted)
    return group, commands


# IB exec ids end in a revision ("<fill>.<revision>"): distinct fills differ before the last period.
def _fill(ref: str, quantity: int, exec_id: str, price: str = "100", side: str | None = None) -> LegExecution:
    if side is None:
        side = "BUY" if ref.endswith(":entry") or ref.endswith("oco0") else "SELL"
    return LegExecution(execution=Execution(
        exec_id=exec_id, order_id=0, order_ref=ref, symbol="AAPL", side=Side(side),
        quantity=D(quantity), price=D(price)))


def _status(ref: str, ib_status: str, filled: int = 0, quantity: int = 100) -> LegStatus:
    return LegStatus(ref=ref, ib_status=ib_status, filled=D(filled), remaining=D(quantity - filled))


def _started_bracket(side: str = "BUY") -> OrderGroup:
    group, _ = _run(_bracket(side), Start(), _status(ENTRY, "Submitted"),
                    _status(SL, "PreSubmitted"), _status(TP, "PreSubmitted"))
    return group


def _of(commands: list[Command], kind: type) -> list[Any]:
    return [c for c in commands if isinstance(c, kind)]


# ---------------------------------------------------------------- builders


def test_bracket_builder_sets_refs_parent_and_shared_oca_group() -> None:
    group = _bracket()
    entry, sl, tp = group.legs
    assert (group.kind, group.state, group.size) == (GroupKind.BRACKET, GroupState.PENDING, D(100))
    assert (entry.ref, sl.ref, tp.ref) == (ENTRY, SL, TP)
    assert (entry.parent_ref, sl.parent_ref, tp.parent_ref) == ("", ENTRY, ENTRY)
    assert sl.oca_group == tp.oca_group == group.oca_group != ""
    assert entry.oca_group == ""


def _bad_bracket(**changes: Any) -> tuple[Order, Order, Order]:
    legs = {"entry": _o("BUY", "LMT", limit_price="100"), "sl": _o("SELL", "STP", stop_price="95"),
            "tp": _o("SELL", "LMT", limit_price="110")}
    legs.update(changes)
    return legs["entry"], legs["sl"], legs["tp"]


@pytest.mark.parametrize(
    ("changes", "needle"),
    [
        ({"sl": _o("SELL", "STP", stop_price="101")}, "stop_price"),        # stop above a long entry
        ({"sl": _o("SELL", "STP", stop_price="100")}, "stop_price"),
        ({"tp": _o("SELL", "LMT", limit_price="99")}, "limit_price"),       # target below a long entry
        ({"sl": _o("BUY", "STP", stop_price="95")}, "side"),                # child on the entry's side
        ({"tp": _o("BUY", "LMT", limit_price="110")}, "side"),
        ({"sl": _o("SELL", "STP", 50, stop_price="95")}, "quantity"),
        ({"tp": _o("SELL", "LMT", symbol="MSFT", limit_price="110")}, "symbol"),
        ({"tp": _o("SELL", "MKT")}, "order_type"),
        ({"sl": _o("SELL", "LMT", limit_price="95")}, "order_type"),
        # a market entry has no price: the stop must still sit below the target
        ({"entry": _o("BUY", "MKT"), "sl": _o("SELL", "STP", stop_price="111")}, "stop_price"),
    ],
)
def test_bracket_builder_rejects_inconsistent_legs(changes: dict[str, Order], needle: str) -> None:
    with pytest.raises(InvalidOrder, match=needle):
        bracket(G, *_bad_bracket(**changes))


def test_bracket_builder_short_side_needs_stop_above_and_target_below() -> None:
    assert _bracket("SELL").legs[1].stop_price == D(105)
    with pytest.raises(InvalidOrder, match="stop_price"):
        bracket(G, _o("SELL", "LMT", limit_price="100"), _o("BUY", "STP", stop_price="95"),
                _o("BUY", "LMT", limit_price="90"))


def test_bracket_builder_accepts_market_entry_and_trailing_stop() -> None:
    group = bracket(G, _o("BUY", "MKT"), _o("SELL", "TRAIL", trail_percent="2"),
                    _o("SELL", "LMT", limit_price="110"))
    assert group.legs[1].order_type is OrderType.TRAIL


def test_builders_refuse_orders_already_sent_and_empty_group_id() -> None:
    sent = replace(_o(), status=S.SUBMITTED)
    with pytest.raises(InvalidOrder, match="status"):
        single(G, sent)
    with pytest.raises(InvalidOrder, match="group_id"):
        single("", _o())


def test_oco_builder_sets_refs_and_checks_symbol_and_size() -> None:
    group = oco(G, [_o("BUY", "STP", stop_price="105"), _o("SELL", "STP", stop_price="95")])
    assert [leg.ref for leg in group.legs] == [f"{G}:oco0", f"{G}:oco1"]
    assert {leg.oca_group for leg in group.legs} == {group.oca_group}
    with pytest.raises(InvalidOrder, match="quantity"):
        oco(G, [_o(), _o(quantity=50)])
    with pytest.raises(InvalidOrder, match="symbol"):
        oco(G, [_o(), _o(symbol="MSFT")])
    with pytest.raises(InvalidOrder, match="at least 2"):
        oco(G, [_o()])


# ---------------------------------------------------------------- submission


def test_bracket_start_submits_entry_then_children_with_ib_transmit_flags() -> None:
    group, commands = decide(_bracket(), Start())
    assert all(isinstance(c, SubmitOrder) for c in commands)
    assert [(c.order.ref, c.transmit, c.parent_ref) for c in commands] == [
        (ENTRY, False, ""), (SL, False, ENTRY), (TP, True, ENTRY)]
    assert [c.oca_type for c in commands] == [0, OCA_TYPE, OCA_TYPE]
    assert commands[1].order.oca_group == commands[2].order.oca_group != ""
    assert group.state is GroupState.WORKING
    assert all(leg.status is S.PENDING_SUBMIT for leg in group.legs)


def test_start_twice_raises() -> None:
    group, _ = decide(_bracket(), Start())
    with pytest.raises(InvalidGroupEvent, match="Start"):
        decide(group, Start())


def test_single_and_oco_start_transmit_every_leg() -> None:
    _, commands = decide(single(G, _o()), Start())
    assert [(c.order.ref, c.transmit, c.oca_type) for c in commands] == [(ENTRY, True, 0)]
    _, commands = decide(oco(G, [_o(), _o("SELL", limit_price="120")]), Start())
    assert [(c.transmit, c.oca_type) for c in commands] == [(True, OCA_TYPE), (True, OCA_TYPE)]


# ---------------------------------------------------------------- bracket coordination


def test_bracket_partial_entry_fill_resizes_children() -> None:
    group, commands = _run(_started_bracket(), _fill(ENTRY, 30, "e.1"))
    assert [(c.order.ref, c.order.quantity) for c in _of(commands, ModifyOrder)] == [
        (SL, D(30)), (TP, D(30))]
    assert len(commands) == 2
    group, commands = _run(group, _status(ENTRY, "Submitted", 30), _fill(ENTRY, 50, "e2.1"))
    assert [(c.order.ref, c.order.quantity) for c in commands] == [(SL, D(80)), (TP, D(80))]
    group, commands = _run(group, _fill(ENTRY, 20, "e3.1"))
    assert [(c.order.ref, c.order.quantity) for c in commands] == [(SL, D(100)), (TP, D(100))]
    assert [leg.quantity for leg in group.legs] == [D(100)] * 3
    assert group.state is GroupState.WORKING


def test_bracket_entry_filled_at_once_leaves_children_at_full_size() -> None:
    group, commands = _run(_started_bracket(), _fill(ENTRY, 100, "e.1"),
                           _status(ENTRY, "Filled", 100), _status(SL, "Submitted"),
                           _status(TP, "Submitted"))
    assert commands == []
    assert find_leg(group, ENTRY).status is S.FILLED


def test_bracket_entry_filled_status_ahead_of_executions_keeps_children_full() -> None:
    group, commands = _run(_started_bracket(), _status(ENTRY, "Filled", 100))
    assert commands == []
    group, commands = _run(group, _fill(ENTRY, 40, "e.1"))
    assert commands == []  # the broker said Filled: no resize down to 40 and back


@pytest.mark.parametrize(("filler", "other", "name"), [(TP, SL, "take-profit"), (SL, TP, "stop-loss")])
def test_bracket_child_fill_cancels_the_other_child_and_group_finishes(filler: str, other: str,
                                                                       name: str) -> None:
    group, _ = _run(_started_bracket(), _fill(ENTRY, 100, "e.1"), _status(ENTRY, "Filled", 100))
    group, commands = _run(group, _fill(filler, 100, "x.1"))
    assert commands == [CancelOrder(ref=other, reason=f"{name} filled")]
    assert find_leg(group, other).status is S.PENDING_CANCEL
    assert group.state is GroupState.WORKING  # until the broker confirms the cancel
    group, commands = _run(group, _status(filler, "Filled", 100), _status(other, "Cancelled"))
    assert group.state is GroupState.DONE
    [finished] = commands
    assert isinstance(finished, GroupFinished)
    assert (finished.group_id, finished.reason, finished.unprotected) == (G, f"{name} filled", 0)


def test_bracket_partial_child_fill_reduces_sibling_then_full_exit_cancels_it() -> None:
    group, _ = _run(_started_bracket(), _fill(ENTRY, 100, "e.1"))
    group, commands = _run(group, _fill(SL, 30, "s.1"))
    assert [(c.order.ref, c.order.quantity) for c in commands] == [(TP, D(70))]
    group, commands = _run(group, _fill(TP, 70, "t.1"))  # the target takes the rest
    assert commands == [CancelOrder(ref=SL, reason="take-profit filled")]
    group, commands = _run(group, _status(SL, "Cancelled", 30), _status(TP, "Filled", 70, 70))
    assert group.state is GroupState.DONE and unprotected(group) == 0


def test_bracket_child_exit_while_entry_partly_filled_cancels_entry_rest() -> None:
    group, _ = _run(_started_bracket(), _fill(ENTRY, 30, "e.1"))
    group, commands = _run(group, _fill(SL, 30, "s.1"))
    assert {c.ref for c in _of(commands, CancelOrder)} == {ENTRY, TP}


@pytest.mark.parametrize("ending", [
    LegRejected(ref=ENTRY, reason="201 LGSZ"),
    LegStatus(ref=ENTRY, ib_status="Cancelled", filled=D(0), remaining=D(0)),
    LegStatus(ref=ENTRY, ib_status="Inactive", filled=D(0), remaining=D(100)),
])
def test_bracket_entry_rejected_or_cancelled_unfilled_cancels_children(ending: Event) -> None:
    group, commands = _run(_started_bracket(), ending)
    assert [c.ref for c in commands] == [SL, TP]
    assert all(isinstance(c, CancelOrder) for c in commands)
    assert group.reason.startswith("entry")
    group, commands = _run(group, _status(SL, "Cancelled"), _status(TP, "Cancelled"))
    assert group.state is GroupState.DONE
    assert isinstance(commands[-1], GroupFinished) and commands[-1].unprotected == 0


def test_bracket_entry_rejected_reason_is_reported_at_finish() -> None:
    group, commands = _run(_started_bracket(), LegRejected(ref=ENTRY, reason="201 LGSZ"),
                           _status(SL, "Cancelled"), _status(TP, "Cancelled"))
    assert commands[-1].reason == "entry Rejected: 201 LGSZ"


@pytest.mark.parametrize("ending", [LegRejected(ref=SL, reason="201 stop price"),
                                    LegStatus(ref=SL, ib_status="Cancelled", filled=D(0),
                                              remaining=D(0))])
def test_bracket_stop_loss_ended_by_broker_cancels_the_working_entry(ending: Event) -> None:
    group, commands = _run(_started_bracket(), _fill(ENTRY, 40, "e.1"), ending)
    assert [(type(c), c.ref) for c in commands if isinstance(c, CancelOrder)] == [(CancelOrder, ENTRY)]
    group, commands = _run(group, _status(ENTRY, "Cancelled", 40))
    assert find_leg(group, TP).quantity == 40                # the take-profit still covers the fills
    group, commands = _run(group, _fill(TP, 40, "t.1"), _status(TP, "Filled", 40, 40))
    assert group.state is GroupState.DONE and commands[-1].unprotected == 0


def test_bracket_take_profit_ended_by_broker_keeps_entry_and_stop_working() -> None:
    group, commands = _run(_started_bracket(), _status(TP, "Cancelled"))
    assert commands == [] and find_leg(group, ENTRY).status is S.SUBMITTED


def test_bracket_entry_cancelled_after_partial_fill_keeps_children_protecting_it() -> None:
    group, _ = _run(_started_bracket(), _fill(ENTRY, 40, "e.1"))
    group, commands = _run(group, _status(ENTRY, "Cancelled", 40))
    assert commands == []
    assert [(leg.quantity, leg.status) for leg in group.legs[1:]] == [
        (D(40), S.PRE_SUBMITTED), (D(40), S.PRE_SUBMITTED)]
    group, commands = _run(group, _fill(TP, 40, "t.1"))
    assert commands == [CancelOrder(ref=SL, reason="take-profit filled")]


def test_bracket_entry_cancelled_with_fills_not_yet_reported_waits_for_them() -> None:
    group, commands = _run(_started_bracket(), _status(ENTRY, "Cancelled", 25))
    assert commands == []  # do not cancel the protection of 25 shares about to be reported
    group, commands = _run(group, _fill(ENTRY, 25, "e.1"))
    assert [(c.order.ref, c.order.quantity) for c in commands] == [(SL, D(25)), (TP, D(25))]


def test_bracket_cancel_group_cancels_working_legs_and_a_racing_fill_is_applied() -> None:
    group, commands = _run(_started_bracket(), CancelGroup(reason="operator"))
    assert [c.ref for c in commands] == [ENTRY, SL, TP]
    group, commands = _run(group, _fill(ENTRY, 100, "e.1"))   # the fill beat our cancel
    assert commands == []                                   # nothing re-sent
    assert find_leg(group, ENTRY).status is S.FILLED and find_leg(group, ENTRY).filled == 100
    group, commands = _run(group, _status(SL, "Cancelled"), _status(TP, "Cancelled"))
    assert group.state is GroupState.DONE
    assert commands[-1].unprotected == D(100)               # the position is left unprotected
    assert commands[-1].reason == "cancelled: operator"


def test_bracket_cancel_entry_after_partial_fill_keeps_children_sized_to_the_fills() -> None:
    group, _ = _run(_started_bracket(), _fill(ENTRY, 40, "e.1"))
    group, commands = _run(group, CancelEntry(reason="halt"))
    assert commands == [CancelOrder(ref=ENTRY, reason="halt")]   # the children are not touched
    group, commands = _run(group, _status(ENTRY, "Cancelled", 40))
    assert commands == []
    assert [(leg.quantity, leg.status) for leg in group.legs[1:]] == [
        (D(40), S.PRE_SUBMITTED), (D(40), S.PRE_SUBMITTED)]
    assert group.state is GroupState.WORKING                     # the children protect 40 shares


def test_bracket_cancel_entry_unfilled_ends_the_whole_group() -> None:
    group, commands = _run(_started_bracket(), CancelEntry(reason="halt"))
    assert commands == [CancelOrder(ref=ENTRY, reason="halt")]
    group, commands = _run(group, _status(ENTRY, "Cancelled"))
    assert sorted(c.ref for c in commands) == [SL, TP]           # nothing to protect
    group, commands = _run(group, _status(SL, "Cancelled"), _status(TP, "Cancelled"))
    assert group.state is GroupState.DONE and isinstance(commands[-1], GroupFinished)


def test_cancel_entry_of_a_single_order_cancels_it() -> None:
    group, _ = _run(single(G, _o("BUY", "LMT", limit_price="100")), Start(), _status(f"{G}:entry", "Submitted"))
    group, commands = _run(group, CancelEntry(reason="halt"))
    assert [c.ref for c in commands] == [group.legs[0].ref]


def test_cancel_group_is_idempotent_and_harmless_after_done() -> None:
    group, first = _run(_started_bracket(), CancelGroup(reason="a"))
    group, again = _run(group, CancelGroup(reason="b"))
    assert len(first) == 3 and again == []
    group, _ = _run(group, *(_status(r, "Cancelled") for r in (ENTRY, SL, TP)))
    assert group.state is GroupState.DONE
    assert decide(group, CancelGroup(reason="c")) == (group, ())


def test_cancel_group_before_start_drops_legs_without_broker_commands() -> None:
    group, commands = decide(_bracket(), CancelGroup(reason="risk"))
    assert group.state is GroupState.DONE
    assert all(leg.status is S.CANCELLED for leg in group.legs)
    assert len(commands) == 1 and isinstance(commands[0], GroupFinished)


def test_leg_rejected_before_start_voids_the_group() -> None:
    group, commands = decide(_bracket(), LegRejected(ref=ENTRY, reason="risk: too large"))
    assert group.state is GroupState.DONE
    assert group.reason == f"{ENTRY} rejected: risk: too large"
    assert [leg.status for leg in group.legs] == [S.REJECTED, S.CANCELLED, S.CANCELLED]
    assert [type(c) for c in commands] == [GroupFinished]


def test_execution_repeated_exec_id_is_applied_once_by_the_group() -> None:
    group, _ = _run(_started_bracket(), _fill(ENTRY, 30, "e.1"))
    assert decide(group, _fill(ENTRY, 30, "e.1")) == (group, ())
    assert find_leg(group, ENTRY).filled == 30


def test_execution_correction_resizes_children_to_the_corrected_fill() -> None:
    group, _ = _run(_started_bracket(), _fill(ENTRY, 30, "e.1.01"))
    group, commands = _run(group, _fill(ENTRY, 20, "e.1.02"))
    assert [(c.order.ref, c.order.quantity) for c in commands] == [(SL, D(20)), (TP, D(20))]


def test_child_fill_that_beat_a_downsizing_modify_is_applied_not_refused() -> None:
    group, _ = _run(_started_bracket(), _fill(ENTRY, 100, "e.1"), _fill(SL, 30, "s.1"))
    assert find_leg(group, TP).quantity == 70
    group, commands = _run(group, _fill(TP, 100, "t.1"))    # TP filled 100 before the modify
    tp = find_leg(group, TP)
    assert (tp.filled, tp.quantity, tp.status) == (D(100), D(100), S.FILLED)
    assert unprotected(group) == D(-30)                      # over-exit, reported
    with pytest.raises(InvalidExecution):                   # never past the built size
        decide(group, _fill(SL, 71, "s2.1"))


def test_replace_stop_modifies_the_stop_loss() -> None:
    group, _ = _run(_started_bracket(), _fill(ENTRY, 100, "e.1"))
    group, commands = decide(group, ReplaceStop(new_price=D("100.5")))
    [modify] = commands
    assert isinstance(modify, ModifyOrder)
    assert (modify.order.ref, modify.order.stop_price) == (SL, D("100.5"))
    assert decide(group, ReplaceStop(new_price=D("100.5"))) == (group, ())


@pytest.mark.parametrize("price", [D("110"), D("111"), D("0"), D("-1")])
def test_replace_stop_at_or_beyond_target_or_not_positive_raises(price: Decimal) -> None:
    with pytest.raises(InvalidGroupEvent):
        decide(_started_bracket(), ReplaceStop(new_price=price))


def test_replace_stop_on_oco_or_after_the_stop_is_done_raises() -> None:
    with pytest.raises(InvalidGroupEvent):
        decide(oco(G, [_o(), _o()]), ReplaceStop(new_price=D(1)))
    group, _ = _run(_started_bracket(), _fill(ENTRY, 100, "e.1"), _fill(SL, 100, "s.1"))
    with pytest.raises(InvalidGroupEvent):
        decide(group, ReplaceStop(new_price=D(96)))


def test_replace_stop_before_start_changes_the_leg_without_command() -> None:
    group, commands = decide(_bracket(), ReplaceStop(new_price=D(94)))
    assert commands == () and find_leg(group, SL).stop_price == D(94)


# ---------------------------------------------------------------- OCO and single


def _started_oco(n: int = 3) -> OrderGroup:
    legs = [_o("BUY", "LMT", limit_price=str(100 - i)) for i in range(n)]
    group, _ = _run(oco(G, legs), Start(), *(_status(f"{G}:oco{i}", "Submitted") for i in range(n)))
    return group


def test_oco_fill_cancels_sibling_and_group_finishes() -> None:
    group, commands = _run(_started_oco(2), _fill(f"{G}:oco1", 100, "x.1", side="BUY"))
    assert commands == [CancelOrder(ref=f"{G}:oco0", reason=f"{G}:oco1 filled")]
    group, commands = _run(group, _status(f"{G}:oco1", "Filled", 100), _status(f"{G}:oco0", "Cancelled"))
    assert group.state is GroupState.DONE
    assert isinstance(commands[-1], GroupFinished) and commands[-1].reason == f"{G}:oco1 filled"


def test_oco_partial_fill_reduces_the_other_legs_by_the_filled_amount() -> None:
    group, commands = _run(_started_oco(3), _fill(f"{G}:oco1", 40, "x.1", side="BUY"))
    assert [(c.order.ref, c.order.quantity) for c in commands] == [
        (f"{G}:oco0", D(60)), (f"{G}:oco2", D(60))]
    group, commands = _run(group, _fill(f"{G}:oco0", 10, "y.1", side="BUY"))
    # every leg keeps its own fills plus the 50 nobody has filled yet
    assert [(c.order.ref, c.order.quantity) for c in commands] == [
        (f"{G}:oco1", D(90)), (f"{G}:oco2", D(50))]
    group, commands = _run(group, _fill(f"{G}:oco2", 50, "z.1", side="BUY"))
    assert {c.ref for c in _of(commands, CancelOrder)} == {f"{G}:oco0", f"{G}:oco1"}


def test_single_order_group_finishes_when_filled_and_its_executions_are_in() -> None:
    group, _ = _run(single(G, _o()), Start(), LegAccepted(ref=ENTRY, broker_id=41))
    group, commands = _run(group, _status(ENTRY, "Filled", 100))
    assert commands == [] and group.state is GroupState.WORKING  # fills still on the way
    group, commands = _run(group, LegExecution(execution=Execution(
        exec_id="e.1", order_id=41, order_ref="", symbol="AAPL", side=Side.BUY,
        quantity=D(100), price=D(99))))                          # routed by broker order id
    assert group.state is GroupState.DONE
    [finished] = commands
    assert isinstance(finished, GroupFinished) and finished.legs[0].avg_fill_price == D(99)


def test_events_after_done_update_legs_without_commands() -> None:
    group, _ = _run(single(G, _o()), Start(), _fill(ENTRY, 100, "e.1"))
    assert group.state is GroupState.DONE
    group2, commands = decide(group, _status(ENTRY, "Filled", 100))
    assert commands == () and group2.state is GroupState.DONE


# ---------------------------------------------------------------- events that do not fit


@pytest.mark.parametrize("event", [
    _status(f"{G}:nope", "Submitted"),
    _fill(f"{G}:nope", 1, "n.1"),
    LegRejected(ref="other:entry", reason="x"),
    LegAccepted(ref=f"{G}:zz", broker_id=3),
    LegExecution(execution=Execution(exec_id="q.1", order_id=999, order_ref="", symbol="AAPL",
                                     side=Side.BUY, quantity=D(1), price=D(1))),
])
def test_event_for_unknown_leg_raises_invalid_group_event(event: Event) -> None:
    with pytest.raises(InvalidGroupEvent):
        decide(_started_bracket(), event)


@pytest.mark.parametrize("event", [_status(ENTRY, "Submitted"), _fill(ENTRY, 1, "e.1"),
                                   LegAccepted(ref=ENTRY, broker_id=5)])
def test_broker_event_before_start_raises(event: Event) -> None:
    with pytest.raises(InvalidGroupEvent, match="before the group was started"):
        decide(_bracket(), event)


def test_unknown_event_type_raises() -> None:
    with pytest.raises(InvalidGroupEvent):
        decide(_bracket(), "Start")  # type: ignore[arg-type]


def test_leg_accepted_records_broker_id_and_refuses_a_new_id_once_acknowledged() -> None:
    group, _ = _run(_bracket(), Start(), LegAccepted(ref=ENTRY, broker_id=10))
    group, _ = _run(group, LegAccepted(ref=ENTRY, broker_id=13))  # error 103: re-sent under a new id
    assert find_leg(group, ENTRY).broker_id == 13
    group, _ = _run(group, _status(ENTRY, "Submitted"))
    with pytest.raises(InvalidGroupEvent, match="already"):
        decide(group, LegAccepted(ref=ENTRY, broker_id=14))
    with pytest.raises(InvalidGroupEvent):
        decide(group, LegAccepted(ref=SL, broker_id=0))


# ---------------------------------------------------------------- property: bracket invariants

_REFS = (ENTRY, SL, TP)
_group_events = st.one_of(
    st.builds(lambda r, s, f: _status(r, s, f), st.sampled_from(_REFS),
              st.sampled_from(["PreSubmitted", "Submitted", "PendingCancel", "Cancelled",
                               "Cancelled", "Filled", "Inactive"]), st.sampled_from([0, 0, 30, 100])),
    # an exec id always carries the same quantity, so repeats are harmless repeats
    st.builds(lambda r, i: _fill(r, 10 + 15 * i, f"{r}.{i}.01"), st.sampled_from(_REFS),
              st.integers(0, 4)),
    st.builds(lambda r: LegRejected(ref=r, reason="201"), st.sampled_from(_REFS)),
    st.just(CancelGroup(reason="stop")),
    st.builds(lambda p: ReplaceStop(new_price=D(p)), st.integers(90, 99)),
)


def _idle(group: OrderGroup) -> bool:
    return all(is_done(leg) and not awaiting_executions(leg) for leg in group.legs)


@settings(max_examples=150)
@given(events=st.lists(_group_events, max_size=30))
def test_bracket_any_event_sequence_keeps_sizes_positive_and_finishes_once(events: list[Event]) -> None:
    group, _ = decide(_bracket(), Start())
    finished = 0
    # the random events, then the broker closing every leg as it stands
    closing = [lambda g, ref=ref: _status(ref, "Cancelled", int(find_leg(g, ref).filled))
               for ref in _REFS]
    for event in [*events, *closing]:
        try:
            after, commands = decide(group, event if not callable(event) else event(group))
        except CoreError:
            continue
        for command in commands:
            if isinstance(command, ModifyOrder):
                leg = command.order
                assert leg.filled < leg.quantity <= group.size  # never zero, never below fills
            assert not isinstance(command, SubmitOrder)  # nothing is submitted after Start
        finished += sum(isinstance(c, GroupFinished) for c in commands)
        if after.state is GroupState.DONE:
            assert all(is_done(leg) for leg in after.legs)
        else:
            assert not _idle(after)  # a group with nothing working or due has finished
        assert all(leg.filled <= leg.quantity for leg in after.legs)
        group = after
    assert finished == (1 if group.state is GroupState.DONE else 0)
