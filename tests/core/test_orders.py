"""Tests for core.orders: the transition table, broker races, executions, validation, tick rounding."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings, strategies as st

from core.errors import DuplicateExecution, InvalidExecution, InvalidOrder, InvalidTransition
from core.orders import (
    DONE_STATES,
    IB_STATUS,
    NEXT,
    WORKING_STATES,
    Order,
    OrderStatus,
    apply_broker_status,
    apply_execution,
    awaiting_executions,
    effective_executions,
    is_done,
    is_working,
    new_order,
    reject,
    remaining,
    request_cancel,
    round_to_tick,
    transition,
    validate,
)
from core.types import Execution, OrderType, Side, TimeInForce

D = Decimal
S = OrderStatus
REF = "g-1:entry"
ALL = tuple(OrderStatus)
ALLOWED = [(a, b) for a in ALL for b in sorted(NEXT[a], key=ALL.index)]
FORBIDDEN = [(a, b) for a in ALL for b in ALL if b is not a and b not in NEXT[a]]


def _order(status: OrderStatus = S.SUBMITTED, quantity: str = "100", **changes: Any) -> Order:
    return Order(ref=REF, symbol="AAPL", side=Side.BUY, quantity=D(quantity),
                 order_type=OrderType.LMT, limit_price=D("150"), status=status, **changes)


def _exec(exec_id: str, quantity: str | int, price: str = "150", *, side: Side = Side.BUY,
          symbol: str = "AAPL", order_ref: str = REF, commission: str = "0") -> Execution:
    return Execution(exec_id=exec_id, order_id=7, order_ref=order_ref, symbol=symbol, side=side,
                     quantity=D(quantity), price=D(price), commission=D(commission))


# ---------------------------------------------------------------- the table


def test_next_table_has_a_row_for_every_status_and_named_sets_partition_the_sent_states() -> None:
    assert set(NEXT) == set(OrderStatus)
    assert not DONE_STATES & WORKING_STATES
    assert DONE_STATES | WORKING_STATES | {S.CREATED} == set(OrderStatus)
    assert NEXT[S.FILLED] == frozenset() and NEXT[S.REJECTED] == frozenset()
    # done states only lead to other done states: nothing comes back to life
    assert all(NEXT[s] <= DONE_STATES for s in DONE_STATES)


@pytest.mark.parametrize(("start", "to"), ALLOWED, ids=[f"{a.value}->{b.value}" for a, b in ALLOWED])
def test_transition_allowed_by_table_moves_the_order(start: OrderStatus, to: OrderStatus) -> None:
    order = _order(start)
    moved = transition(order, to)
    assert moved.status is to
    assert replace(moved, status=start) == order


@pytest.mark.parametrize(("start", "to"), FORBIDDEN,
                         ids=[f"{a.value}->{b.value}" for a, b in FORBIDDEN])
def test_transition_forbidden_by_table_raises_naming_ref_and_both_statuses(
        start: OrderStatus, to: OrderStatus) -> None:
    with pytest.raises(InvalidTransition) as info:
        transition(_order(start), to)
    message = str(info.value)
    assert REF in message and start.value in message and to.value in message


@pytest.mark.parametrize("status", ALL)
def test_transition_to_current_status_returns_the_same_order(status: OrderStatus) -> None:
    order = _order(status)
    assert transition(order, status) is order


@pytest.mark.parametrize(
    ("status", "done", "working"),
    [(S.CREATED, False, False), (S.PENDING_SUBMIT, False, True), (S.PRE_SUBMITTED, False, True),
     (S.SUBMITTED, False, True), (S.PARTIALLY_FILLED, False, True), (S.PENDING_CANCEL, False, True),
     (S.FILLED, True, False), (S.CANCELLED, True, False), (S.REJECTED, True, False),
     (S.INACTIVE, True, False)],
)
def test_is_done_and_is_working_follow_the_named_sets(status: OrderStatus, done: bool,
                                                      working: bool) -> None:
    assert (is_done(_order(status)), is_working(_order(status))) == (done, working)


def test_remaining_is_quantity_minus_executed_fills() -> None:
    order = apply_execution(_order(), _exec("e.1", 30))
    assert remaining(order) == D(70)
    assert remaining(_order(S.CANCELLED)) == D(100)


# ---------------------------------------------------------------- broker statuses


def test_ib_status_table_translates_every_ib_status_string() -> None:
    assert IB_STATUS == {
        "ApiPending": S.PENDING_SUBMIT, "PendingSubmit": S.PENDING_SUBMIT,
        "PreSubmitted": S.PRE_SUBMITTED, "Submitted": S.SUBMITTED,
        "PendingCancel": S.PENDING_CANCEL, "ApiCancelled": S.CANCELLED,
        "Cancelled": S.CANCELLED, "Filled": S.FILLED, "Inactive": S.INACTIVE,
    }


@pytest.mark.parametrize(
    ("start", "ib_status", "filled", "expected"),
    [
        (S.PENDING_SUBMIT, "PreSubmitted", "0", S.PRE_SUBMITTED),
        (S.PENDING_SUBMIT, "Submitted", "0", S.SUBMITTED),
        (S.PRE_SUBMITTED, "Submitted", "0", S.SUBMITTED),       # bracket child released
        (S.PENDING_SUBMIT, "Filled", "100", S.FILLED),           # skipped every step
        (S.SUBMITTED, "Submitted", "40", S.PARTIALLY_FILLED),   # IB: Submitted while partly filled
        (S.PRE_SUBMITTED, "PreSubmitted", "40", S.PARTIALLY_FILLED),
        (S.PARTIALLY_FILLED, "Submitted", "60", S.PARTIALLY_FILLED),
        (S.SUBMITTED, "PendingCancel", "0", S.PENDING_CANCEL),
        (S.PENDING_CANCEL, "Cancelled", "0", S.CANCELLED),
        (S.PENDING_SUBMIT, "ApiCancelled", "0", S.CANCELLED),
        (S.PENDING_CANCEL, "Submitted", "0", S.SUBMITTED),       # cancel rejected (161/10148)
        (S.PENDING_CANCEL, "PreSubmitted", "0", S.PRE_SUBMITTED),
        (S.PENDING_CANCEL, "Submitted", "30", S.PARTIALLY_FILLED),
        (S.PENDING_CANCEL, "Filled", "100", S.FILLED),           # fill overtook the cancel
        (S.CANCELLED, "Filled", "100", S.FILLED),                # Filled after the Cancelled ack
        (S.SUBMITTED, "Cancelled", "0", S.CANCELLED),            # unexpected cancel (202)
        (S.SUBMITTED, "Inactive", "0", S.INACTIVE),
        (S.INACTIVE, "Cancelled", "0", S.CANCELLED),
        (S.REJECTED, "Cancelled", "0", S.REJECTED),              # 201 then its closing status
        (S.REJECTED, "Inactive", "0", S.REJECTED),
        (S.SUBMITTED, "PreSubmitted", "0", S.PRE_SUBMITTED),     # GTC held outside hours
        (S.PENDING_SUBMIT, "ApiPending", "0", S.PENDING_SUBMIT),
    ],
)
def test_apply_broker_status_moves_order_along_the_table(
        start: OrderStatus, ib_status: str, filled: str, expected: OrderStatus) -> None:
    order = apply_broker_status(_order(start), ib_status, D(filled), D(100) - D(filled))
    assert order.status is expected
    assert order.filled == 0  # a status never books fills
    assert order.broker_filled == D(filled)


@pytest.mark.parametrize(
    ("start", "ib_status"),
    [(S.FILLED, "Cancelled"), (S.FILLED, "PendingCancel"), (S.CANCELLED, "Submitted"),
     (S.CANCELLED, "PendingCancel"), (S.REJECTED, "Submitted"), (S.REJECTED, "Filled"),
     (S.CREATED, "Submitted"), (S.SUBMITTED, "PendingSubmit"), (S.PARTIALLY_FILLED, "PendingSubmit"),
     (S.INACTIVE, "Submitted")],
)
def test_apply_broker_status_impossible_transition_raises(start: OrderStatus, ib_status: str) -> None:
    with pytest.raises(InvalidTransition):
        apply_broker_status(_order(start), ib_status, D(0), D(100))


def test_apply_broker_status_unknown_string_raises() -> None:
    with pytest.raises(InvalidTransition, match="Warning"):
        apply_broker_status(_order(), "Warning", D(0), D(100))


@pytest.mark.parametrize(("filled", "remaining_"), [("-1", "0"), ("0", "-1"), ("NaN", "0"),
                                                    ("0", "Infinity")])
def test_apply_broker_status_bad_amounts_raise(filled: str, remaining_: str) -> None:
    with pytest.raises(InvalidExecution):
        apply_broker_status(_order(), "Submitted", D(filled), D(remaining_))


def test_apply_broker_status_repeated_identical_status_is_a_no_op() -> None:
    order = apply_broker_status(_order(S.PENDING_SUBMIT), "Submitted", D(0), D(100))
    assert apply_broker_status(order, "Submitted", D(0), D(100)) is order
    part = apply_broker_status(order, "Submitted", D(40), D(60))
    assert apply_broker_status(part, "Submitted", D(40), D(60)) is part


def test_apply_broker_status_filled_before_executions_waits_for_them() -> None:
    order = apply_broker_status(_order(), "Filled", D(100), D(0))
    assert (order.status, order.filled, awaiting_executions(order)) == (S.FILLED, 0, True)
    order = apply_execution(order, _exec("e.1", 60, "150"))
    assert (order.status, order.filled, awaiting_executions(order)) == (S.FILLED, 60, True)
    order = apply_execution(order, _exec("f.1", 40, "151"))
    assert (order.status, order.filled, order.avg_fill_price) == (S.FILLED, 100, D("150.4"))
    assert not awaiting_executions(order)


def test_apply_broker_status_behind_the_executions_is_stale_and_ignored() -> None:
    order = apply_execution(_order(), _exec("e.1", 100))
    assert order.status is S.FILLED
    assert apply_broker_status(order, "Submitted", D(60), D(40)) is order
    pending = apply_execution(request_cancel(_order()), _exec("e.1", 30))
    assert apply_broker_status(pending, "Submitted", D(0), D(100)) is pending


# ---------------------------------------------------------------- cancel / reject helpers


@pytest.mark.parametrize(
    ("start", "expected"),
    [(S.CREATED, S.CANCELLED), (S.PENDING_SUBMIT, S.PENDING_CANCEL), (S.SUBMITTED, S.PENDING_CANCEL),
     (S.PRE_SUBMITTED, S.PENDING_CANCEL), (S.PARTIALLY_FILLED, S.PENDING_CANCEL),
     (S.PENDING_CANCEL, S.PENDING_CANCEL), (S.FILLED, S.FILLED), (S.CANCELLED, S.CANCELLED),
     (S.REJECTED, S.REJECTED), (S.INACTIVE, S.INACTIVE)],
)
def test_request_cancel_gives_pending_cancel_or_leaves_done_orders(start: OrderStatus,
                                                                   expected: OrderStatus) -> None:
    assert request_cancel(_order(start)).status is expected


@pytest.mark.parametrize("start", [S.CREATED, S.PENDING_SUBMIT, S.SUBMITTED, S.CANCELLED, S.INACTIVE])
def test_reject_records_reason(start: OrderStatus) -> None:
    order = reject(_order(start), "201 LGSZ")
    assert (order.status, order.reason) == (S.REJECTED, "201 LGSZ")
    assert reject(order, "again") is order


@pytest.mark.parametrize("start", [S.PARTIALLY_FILLED, S.FILLED, S.PENDING_CANCEL])
def test_reject_of_order_that_executed_or_is_cancelling_raises(start: OrderStatus) -> None:
    with pytest.raises(InvalidTransition):
        reject(_order(start), "201")


# ---------------------------------------------------------------- races


def test_race_fill_after_cancel_ack_is_applied_and_fills_the_order() -> None:
    order = request_cancel(_order())
    order = apply_broker_status(order, "Cancelled", D(0), D(100))
    order = apply_execution(order, _exec("e.1", 100, "149.5"))
    assert (order.status, order.filled, order.avg_fill_price) == (S.FILLED, 100, D("149.5"))


def test_race_partial_fill_after_cancel_ack_counts_but_order_stays_cancelled() -> None:
    order = apply_broker_status(request_cancel(_order()), "Cancelled", D(30), D(0))
    assert awaiting_executions(order)
    order = apply_execution(order, _exec("e.1", 30))
    assert (order.status, order.filled, awaiting_executions(order)) == (S.CANCELLED, 30, False)


def test_race_fill_during_pending_cancel_keeps_cancel_pending_until_full() -> None:
    order = request_cancel(_order())
    order = apply_execution(order, _exec("e.1", 40))
    assert (order.status, order.filled) == (S.PENDING_CANCEL, 40)
    order = apply_execution(order, _exec("f.1", 60))
    assert (order.status, order.filled) == (S.FILLED, 100)


def test_race_cancel_rejected_returns_order_to_working() -> None:
    order = apply_broker_status(request_cancel(_order()), "PendingCancel", D(0), D(100))
    order = apply_broker_status(order, "Submitted", D(0), D(100))  # error 161/10148 came with it
    assert order.status is S.SUBMITTED
    order = apply_execution(order, _exec("e.1", 100))
    assert order.status is S.FILLED


def test_race_repeated_identical_status_changes_nothing_through_a_whole_life() -> None:
    order = _order(S.PENDING_SUBMIT)
    for status, filled in [("PreSubmitted", 0), ("Submitted", 0), ("Submitted", 50),
                           ("PendingCancel", 50), ("Cancelled", 50)]:
        order = apply_broker_status(order, status, D(filled), D(100 - filled))
        assert apply_broker_status(order, status, D(filled), D(100 - filled)) is order
    assert order.status is S.CANCELLED


# ---------------------------------------------------------------- executions


def test_apply_execution_books_volume_weighted_price_commission_and_ids() -> None:
    order = apply_execution(_order(), _exec("a.01", 30, "10", commission="1"))
    assert (order.status, order.filled, order.avg_fill_price) == (S.PARTIALLY_FILLED, 30, D(10))
    order = apply_execution(order, _exec("b.01", 70, "11", commission="2.5"))
    assert (order.status, order.filled, order.avg_fill_price) == (S.FILLED, 100, D("10.7"))
    assert order.commission == D("3.5")
    assert order.exec_ids == {"a.01", "b.01"}


def test_apply_execution_same_exec_id_twice_is_applied_once() -> None:
    order = apply_execution(_order(), _exec("a.01", 30))
    assert apply_execution(order, _exec("a.01", 30)) is order
    assert order.filled == 30


@pytest.mark.parametrize("changed", [{"quantity": D(31)}, {"price": D("150.01")}])
def test_apply_execution_same_exec_id_other_contents_raises_duplicate(changed: dict[str, Any]) -> None:
    first = _exec("a.01", 30)
    order = apply_execution(_order(), first)
    with pytest.raises(DuplicateExecution, match="a.01"):
        apply_execution(order, replace(first, **changed))


def test_apply_execution_repeat_without_order_ref_is_still_a_repeat() -> None:
    order = apply_execution(_order(), _exec("a.01", 30))
    assert apply_execution(order, _exec("a.01", 30, order_ref="")) is order


def test_apply_execution_commission_reported_later_is_joined_by_exec_id() -> None:
    order = apply_execution(_order(), _exec("a.01", 30))
    order = apply_execution(order, _exec("a.01", 30, commission="1.25"))
    assert (order.filled, order.commission) == (30, D("1.25"))
    assert apply_execution(order, _exec("a.01", 30)) is order          # repeat without commission
    with pytest.raises(DuplicateExecution):
        apply_execution(order, _exec("a.01", 30, commission="2"))


def test_apply_execution_correction_replaces_quantity_price_and_commission() -> None:
    order = apply_execution(_order(), _exec("0000e0d5.6589b5b6.01.01", 60, "150", commission="1"))
    order = apply_execution(order, _exec("0000e0d5.6589b5b6.02.01", 20, "151"))
    corrected = apply_execution(order, _exec("0000e0d5.6589b5b6.01.02", 50, "149", commission="0.8"))
    assert corrected.filled == 70
    assert corrected.avg_fill_price == (50 * D(149) + 20 * D(151)) / 70
    assert corrected.commission == D("0.8")
    assert {e.exec_id for e in effective_executions(corrected)} == {
        "0000e0d5.6589b5b6.01.02", "0000e0d5.6589b5b6.02.01"}
    # the original replayed later (reqExecutions after a reconnect) changes nothing
    assert apply_execution(corrected, _exec("0000e0d5.6589b5b6.01.01", 60, "150", commission="1")) \
        is corrected


def test_apply_execution_correction_seen_before_its_original_wins() -> None:
    order = apply_execution(_order(), _exec("x.1.02", 40, "150"))
    order = apply_execution(order, _exec("x.1.01", 45, "152"))
    assert (order.filled, order.avg_fill_price) == (40, D(150))


def test_apply_execution_correction_that_would_overfill_raises() -> None:
    order = apply_execution(_order(), _exec("x.1.01", 90))
    order = apply_execution(order, _exec("x.2.01", 10))
    with pytest.raises(InvalidExecution):
        apply_execution(order, _exec("x.1.02", 95))


def test_apply_execution_overfill_raises() -> None:
    order = apply_execution(_order(), _exec("a.01", 80))
    with pytest.raises(InvalidExecution, match="exceed"):
        apply_execution(order, _exec("b.01", 21))


@pytest.mark.parametrize(
    "execution",
    [_exec("a.01", 10, side=Side.SELL), _exec("a.01", 10, symbol="MSFT"),
     _exec("a.01", 10, order_ref="g-2:entry"), _exec("", 10), _exec("a.01", 0), _exec("a.01", -5),
     _exec("a.01", 10, price="-1"), _exec("a.01", 10, price="NaN"),
     _exec("a.01", 10, commission="Infinity")],
    ids=["side", "symbol", "order-ref", "no-exec-id", "zero-qty", "negative-qty", "negative-price",
         "nan-price", "infinite-commission"],
)
def test_apply_execution_that_does_not_fit_the_order_raises(execution: Execution) -> None:
    with pytest.raises(InvalidExecution):
        apply_execution(_order(), execution)


@pytest.mark.parametrize("status", [S.CREATED, S.REJECTED])
def test_apply_execution_on_order_never_working_raises(status: OrderStatus) -> None:
    with pytest.raises(InvalidTransition):
        apply_execution(_order(status), _exec("a.01", 10))


@pytest.mark.parametrize(("status", "quantity", "expected"),
                         [(S.PENDING_SUBMIT, 10, S.PARTIALLY_FILLED),
                          (S.PRE_SUBMITTED, 10, S.PARTIALLY_FILLED),
                          (S.INACTIVE, 10, S.INACTIVE), (S.INACTIVE, 100, S.FILLED),
                          (S.PENDING_SUBMIT, 100, S.FILLED)])
def test_apply_execution_status_follows_fill_and_race_rules(status: OrderStatus, quantity: int,
                                                            expected: OrderStatus) -> None:
    assert apply_execution(_order(status), _exec("a.01", quantity)).status is expected


# ---------------------------------------------------------------- property: any broker sequence

_statuses = st.tuples(st.just("status"), st.sampled_from(sorted(IB_STATUS)),
                      st.integers(0, 120))
# exec ids from a small pool so repeats, corrections and overfills happen: "f.<fill>.<revision>"
_executions = st.tuples(st.just("exec"), st.integers(0, 3), st.integers(1, 3))
_actions = st.one_of(_statuses, _executions, st.tuples(st.just("cancel")),
                     st.tuples(st.just("reject")), st.tuples(st.just("conflict")))


def _model_exec(fill: int, revision: int) -> Execution:
    # a given id always carries the same contents; "conflict" re-sends one with another price
    return _exec(f"f.{fill}.{revision:02d}", 10 + 12 * fill + 5 * revision,
                 str(D(10) + fill + D(revision) / 10))


@settings(max_examples=300)
@given(start=st.sampled_from([S.PENDING_SUBMIT, S.SUBMITTED, S.PRE_SUBMITTED]),
       actions=st.lists(_actions, max_size=25))
def test_any_broker_event_sequence_follows_table_or_raises(start: OrderStatus,
                                                          actions: list[tuple[Any, ...]]) -> None:
    order = _order(start, quantity="100")
    counted: dict[int, tuple[int, Decimal]] = {}  # fill -> (revision, quantity) that counts
    for action in actions:
        before = order
        try:
            if action[0] == "status":
                _, ib_status, filled = action
                order = apply_broker_status(order, ib_status, D(filled), D(max(100 - filled, 0)))
            elif action[0] == "exec":
                order = apply_execution(order, _model_exec(action[1], action[2]))
            elif action[0] == "cancel":
                order = request_cancel(order)
            elif action[0] == "reject":
                order = reject(order, "201")
            elif order.executions:
                known = order.executions[0]
                with pytest.raises(DuplicateExecution):
                    apply_execution(order, replace(known, price=known.price + 1))
        except (InvalidTransition, InvalidExecution):
            assert order is before
            continue
        assert order.status is before.status or order.status in NEXT[before.status]
        if action[0] == "exec":
            fill, revision = action[1], action[2]
            if fill not in counted or revision > counted[fill][0]:
                counted[fill] = (revision, _model_exec(fill, revision).quantity)
        assert order.filled <= order.quantity
        assert order.filled == sum((q for _, q in counted.values()), D(0))
        if order.filled == order.quantity:
            assert order.status is S.FILLED


# ---------------------------------------------------------------- validation

_VALID = [
    {"order_type": "MKT"},
    {"order_type": "MKT", "tif": "IOC"},
    {"order_type": "MKT", "tif": "GTC"},
    {"order_type": "LMT", "limit_price": "10.5"},
    {"order_type": "LMT", "limit_price": "10.5", "tif": "IOC"},
    {"order_type": "STP", "stop_price": "9"},
    {"order_type": "STP", "stop_price": "9", "tif": "GTC"},
    {"order_type": "STP LMT", "stop_price": "9", "limit_price": "8.9"},
    {"order_type": "TRAIL", "trail_amount": "0.5"},
    {"order_type": "TRAIL", "trail_percent": "2"},
    {"order_type": "TRAIL", "trail_percent": "99.9", "stop_price": "9.5", "tif": "GTC"},
]


def _fields(**changes: Any) -> dict[str, Any]:
    return {"ref": REF, "symbol": "AAPL", "side": "BUY", "quantity": 100, **changes}


@pytest.mark.parametrize("changes", _VALID, ids=[str(v) for v in _VALID])
def test_new_order_accepts_each_type_with_the_prices_it_needs(changes: dict[str, Any]) -> None:
    order = new_order(**_fields(**changes))
    assert order.status is S.CREATED
    assert validate(order) is order
    assert isinstance(order.quantity, Decimal)


@pytest.mark.parametrize(
    ("changes", "field_name"),
    [
        ({"order_type": "MKT", "limit_price": "10"}, "limit_price"),
        ({"order_type": "MKT", "stop_price": "10"}, "stop_price"),
        ({"order_type": "LMT"}, "limit_price"),
        ({"order_type": "LMT", "limit_price": "10", "stop_price": "9"}, "stop_price"),
        ({"order_type": "LMT", "limit_price": "0"}, "limit_price"),
        ({"order_type": "LMT", "limit_price": "-1"}, "limit_price"),
        ({"order_type": "LMT", "limit_price": "NaN"}, "limit_price"),
        ({"order_type": "STP"}, "stop_price"),
        ({"order_type": "STP", "stop_price": "9", "limit_price": "9"}, "limit_price"),
        ({"order_type": "STP LMT", "stop_price": "9"}, "limit_price"),
        ({"order_type": "STP LMT", "limit_price": "9"}, "stop_price"),
        ({"order_type": "TRAIL"}, "trail_amount/trail_percent"),
        ({"order_type": "TRAIL", "trail_amount": "1", "trail_percent": "1"},
         "trail_amount/trail_percent"),
        ({"order_type": "TRAIL", "trail_percent": "100"}, "trail_percent"),
        ({"order_type": "TRAIL", "trail_percent": "0"}, "trail_percent"),
        ({"order_type": "TRAIL", "trail_amount": "-0.5"}, "trail_amount"),
        ({"order_type": "TRAIL", "trail_amount": "1", "limit_price": "10"}, "limit_price"),
        ({"order_type": "STP", "stop_price": "9", "tif": "IOC"}, "tif"),
        ({"order_type": "STP LMT", "stop_price": "9", "limit_price": "9", "tif": "IOC"}, "tif"),
        ({"order_type": "TRAIL", "trail_amount": "1", "tif": "IOC"}, "tif"),
        ({"order_type": "LMT", "limit_price": "10", "tif": "GTD"}, "tif"),
        ({"order_type": "MOC"}, "order_type"),
        ({"order_type": "MKT", "side": "HOLD"}, "side"),
        ({"order_type": "MKT", "quantity": 0}, "quantity"),
        ({"order_type": "MKT", "quantity": -10}, "quantity"),
        ({"order_type": "MKT", "quantity": 1.5}, "quantity"),
        ({"order_type": "LMT", "limit_price": 10.1}, "limit_price"),
        ({"order_type": "MKT", "ref": ""}, "ref"),
        ({"order_type": "MKT", "symbol": ""}, "symbol"),
    ],
)
def test_new_order_invalid_fields_raise_naming_field_value_and_expectation(
        changes: dict[str, Any], field_name: str) -> None:
    with pytest.raises(InvalidOrder) as info:
        new_order(**_fields(**changes))
    message = str(info.value)
    assert f"{field_name}=" in message and "expected" in message


def test_new_order_converts_strings_and_ints_to_enums_and_decimals() -> None:
    order = new_order(**_fields(order_type="STP LMT", stop_price="9", limit_price=8, tif="GTC"))
    assert (order.side, order.order_type, order.tif) == (Side.BUY, OrderType.STP_LMT, TimeInForce.GTC)
    assert (order.quantity, order.stop_price, order.limit_price) == (D(100), D(9), D(8))


def test_new_order_unknown_or_missing_field_raises_invalid_order() -> None:
    with pytest.raises(InvalidOrder):
        new_order(**_fields(order_type="MKT", colour="red"))
    with pytest.raises(InvalidOrder):
        new_order(ref=REF, symbol="AAPL", side="BUY", order_type="MKT")


@pytest.mark.parametrize(("lot", "quantity", "ok"), [("100", 300, True), ("100", 250, False),
                                                      ("0.5", "2.5", True), ("0.5", "2.3", False)])
def test_new_order_lot_size_requires_whole_lots(lot: str, quantity: Any, ok: bool) -> None:
    fields = _fields(order_type="MKT", quantity=quantity)
    if ok:
        assert new_order(lot=D(lot), **fields).quantity == D(str(quantity))
    else:
        with pytest.raises(InvalidOrder, match="lot"):
            new_order(lot=D(lot), **fields)


# ---------------------------------------------------------------- tick rounding


@pytest.mark.parametrize(
    ("price", "tick", "side", "expected"),
    [
        ("100.123", "0.01", Side.BUY, "100.12"),
        ("100.123", "0.01", Side.SELL, "100.13"),
        ("100.12", "0.01", Side.BUY, "100.12"),     # on the grid: unchanged
        ("100.12", "0.01", Side.SELL, "100.12"),
        ("100.07", "0.05", Side.BUY, "100.05"),
        ("100.07", "0.05", Side.SELL, "100.10"),
        ("4312.6", "0.25", Side.BUY, "4312.50"),
        ("4312.6", "0.25", Side.SELL, "4312.75"),
        ("0.00049", "0.0001", Side.BUY, "0.0004"),
    ],
)
def test_round_to_tick_rounds_buys_down_and_sells_up(price: str, tick: str, side: Side,
                                                    expected: str) -> None:
    rounded = round_to_tick(D(price), D(tick), side)
    assert rounded == D(expected)
    assert rounded % D(tick) == 0
    assert (rounded <= D(price)) if side is Side.BUY else (rounded >= D(price))


@pytest.mark.parametrize("tick", ["0", "-0.01", "NaN"])
def test_round_to_tick_invalid_tick_raises(tick: str) -> None:
    with pytest.raises(InvalidOrder, match="tick"):
        round_to_tick(D("10"), D(tick), Side.BUY)


@given(price=st.decimals(min_value=D("0.01"), max_value=D("100000"), places=4),
       tick=st.sampled_from([D("0.01"), D("0.05"), D("0.25"), D("0.0001"), D(1)]),
       side=st.sampled_from(Side))
def test_round_to_tick_lands_on_grid_within_one_tick_on_the_conservative_side(
        price: Decimal, tick: Decimal, side: Side) -> None:
    rounded = round_to_tick(price, tick, side)
    assert rounded % tick == 0
    assert 0 <= (price - rounded) * side.sign < tick


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"side": "BUY", "order_type": "LMT", "limit_price": "10.127"}, {"limit_price": "10.12"}),
        ({"side": "SELL", "order_type": "LMT", "limit_price": "10.121"}, {"limit_price": "10.13"}),
        ({"side": "SELL", "order_type": "STP", "stop_price": "9.871"}, {"stop_price": "9.88"}),
        ({"side": "BUY", "order_type": "STP", "stop_price": "10.129"}, {"stop_price": "10.12"}),
        ({"side": "SELL", "order_type": "STP LMT", "stop_price": "9.871", "limit_price": "9.801"},
         {"stop_price": "9.88", "limit_price": "9.81"}),
        ({"side": "SELL", "order_type": "TRAIL", "trail_amount": "0.257"}, {"trail_amount": "0.25"}),
        ({"side": "SELL", "order_type": "TRAIL", "trail_percent": "1.234"}, {"trail_percent": "1.234"}),
    ],
)
def test_new_order_with_tick_rounds_prices_conservatively(changes: dict[str, Any],
                                                          expected: dict[str, str]) -> None:
    order = new_order(tick=D("0.01"), **_fields(**changes))
    for name, value in expected.items():
        assert getattr(order, name) == D(value)


def test_new_order_price_below_one_tick_rounds_to_zero_and_raises() -> None:
    with pytest.raises(InvalidOrder, match="limit_price"):
        new_order(tick=D("0.01"), **_fields(order_type="LMT", limit_price="0.004"))
