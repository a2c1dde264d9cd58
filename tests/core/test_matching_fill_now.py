"""Tests for core.matching.fill_now: the forced fill behind the simulator's fill-after-cancel fault."""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal

import pytest
from hypothesis import given, settings, strategies as st

from core.errors import InvalidExecution, InvalidTransition
from core.matching import (
    ORDER_CANCELLED,
    Book,
    BrokerOrder,
    CommissionModel,
    ErrorEvent,
    Event,
    FillEvent,
    OpenOrderEvent,
    StatusEvent,
    cancel,
    fill_now,
    get_order,
    new_book,
    on_quote,
    place,
)
from core.types import OrderType, Quote, Side

D = Decimal
SYM = "AAPL"
BUY, SELL = Side.BUY, Side.SELL
FREE = CommissionModel(per_share=D(0), minimum=D(0))


def _order(oid: int, side: Side, qty: int, kind: OrderType = OrderType.LMT, **kw: object) -> BrokerOrder:
    for name in ("limit_price", "stop_price"):
        if isinstance(kw.get(name), str):
            kw[name] = D(kw[name])  # type: ignore[arg-type]
    return BrokerOrder(order_id=oid, symbol=SYM, side=side, quantity=D(qty), order_type=kind, **kw)  # type: ignore[arg-type]


def _quote(bid: str, ask: str, *, size: int = 0) -> Quote:
    return Quote(symbol=SYM, bid=D(bid), ask=D(ask), last=D(bid), bid_size=D(size), ask_size=D(size))


def _kinds(events: Iterable[Event]) -> list[tuple[str, int, str]]:
    out = []
    for e in events:
        if isinstance(e, StatusEvent):
            out.append(("status", e.order_id, e.status))
        elif isinstance(e, FillEvent):
            out.append(("fill", e.order_id, str(e.quantity)))
        elif isinstance(e, ErrorEvent):
            out.append(("error", e.order_id, str(e.code)))
        else:
            out.append(("open", e.order.order_id, e.order.status))
    return out


def _placed(book: Book, *orders: BrokerOrder) -> Book:
    for ts, order in enumerate(orders, start=10):
        book, _ = place(book, order, ts)
    return book


def test_fill_now_resting_limit_fills_whole_quantity_with_normal_fill_sequence() -> None:
    book = _placed(new_book(), _order(1, BUY, 100, limit_price="99"))
    book, _ = on_quote(book, _quote("100", "100.05"), 20)
    book, events = fill_now(book, 1, D("99"), 30)
    assert _kinds(events) == [("fill", 1, "100"), ("status", 1, "Filled"), ("open", 1, "Filled")]
    (fill,) = [e for e in events if isinstance(e, FillEvent)]
    assert (fill.price, fill.cum_qty, fill.avg_price, fill.ts_ns) == (D("99"), D(100), D("99"), 30)
    assert fill.commission == D("1.00")  # IB fixed: 100 × 0.005 is below the 1.00 minimum
    order = get_order(book, 1)
    assert order is not None and (order.status, order.filled, order.remaining) == ("Filled", D(100), D(0))


def test_fill_now_after_partial_fill_fills_only_the_rest_and_keeps_average_exact() -> None:
    book = _placed(new_book(commission=FREE), _order(1, BUY, 100, kind=OrderType.MKT))
    book, events = on_quote(book, _quote("10", "10.00", size=30), 20)
    assert [e.quantity for e in events if isinstance(e, FillEvent)] == [D(30)]
    book, events = fill_now(book, 1, D("11"), 30)
    (fill,) = [e for e in events if isinstance(e, FillEvent)]
    assert (fill.quantity, fill.cum_qty, fill.avg_price) == (D(70), D(100), D("10.7"))
    assert fill.exec_id.endswith(".02.01")  # the order's second execution


def test_fill_now_consumes_no_liquidity_of_the_displayed_quote() -> None:
    book = _placed(new_book(commission=FREE), _order(1, BUY, 50, limit_price="9"))
    book, _ = on_quote(book, _quote("10", "10.01", size=100), 20)
    book, _ = fill_now(book, 1, D("9"), 21)
    book, events = place(book, _order(2, BUY, 100, kind=OrderType.MKT), 22)
    assert [e.quantity for e in events if isinstance(e, FillEvent)] == [D(100)]


def test_fill_now_untriggered_stop_fills_at_the_given_price() -> None:
    book = _placed(new_book(), _order(1, SELL, 10, kind=OrderType.STP, stop_price="90"))
    book, _ = on_quote(book, _quote("100", "100.01"), 20)
    book, events = fill_now(book, 1, D("89.5"), 30)
    assert [(e.quantity, e.price) for e in events if isinstance(e, FillEvent)] == [(D(10), D("89.5"))]


def test_fill_now_bracket_parent_activates_children() -> None:
    book = _placed(
        new_book(),
        _order(1, BUY, 100, limit_price="99", transmit=False),
        _order(2, SELL, 100, limit_price="110", parent_id=1, transmit=False),
        _order(3, SELL, 100, kind=OrderType.STP, stop_price="90", parent_id=1),
    )
    book, _ = on_quote(book, _quote("100", "100.05"), 20)
    book, events = fill_now(book, 1, D("99"), 30)
    assert _kinds(events) == [("fill", 1, "100"), ("status", 1, "Filled"), ("open", 1, "Filled"),
                              ("status", 2, "Submitted"), ("status", 3, "Submitted")]


def test_fill_now_bracket_target_cancels_the_stop() -> None:
    book = _placed(
        new_book(),
        _order(1, BUY, 100, kind=OrderType.MKT, transmit=False),
        _order(2, SELL, 100, limit_price="110", parent_id=1, transmit=False),
        _order(3, SELL, 100, kind=OrderType.STP, stop_price="90", parent_id=1),
    )
    book, _ = on_quote(book, _quote("100", "100.05"), 20)
    book, events = fill_now(book, 2, D("110"), 30)
    assert ("fill", 2, "100") in _kinds(events)
    assert ("status", 3, "Cancelled") in _kinds(events)
    assert ("error", 3, str(ORDER_CANCELLED)) in _kinds(events)
    assert get_order(book, 3).status == "Cancelled"  # type: ignore[union-attr]


@pytest.mark.parametrize("oca_type", [1, 2, 3])  # 2 and 3 reduce the sibling to 0 shares: cancelled
def test_fill_now_oca_member_full_fill_cancels_its_sibling(oca_type: int) -> None:
    book = _placed(
        new_book(),
        _order(1, SELL, 100, limit_price="120", oca_group="g", oca_type=oca_type),
        _order(2, SELL, 100, kind=OrderType.STP, stop_price="80", oca_group="g", oca_type=oca_type),
    )
    book, _ = on_quote(book, _quote("100", "100.05"), 20)
    book, events = fill_now(book, 1, D("120"), 30)
    sibling = get_order(book, 2)
    assert sibling is not None and sibling.status == "Cancelled"
    assert ("status", 2, "Cancelled") in _kinds(events)


def test_fill_now_after_cancel_ack_race_cannot_fill_the_cancelled_order() -> None:
    book = _placed(new_book(), _order(1, BUY, 100, limit_price="99"))
    book, _ = cancel(book, 1, 20)
    with pytest.raises(InvalidTransition):
        fill_now(book, 1, D("99"), 30)


@pytest.mark.parametrize("oid", [7, 1])
def test_fill_now_unknown_or_held_order_raises(oid: int) -> None:
    book = _placed(new_book(), _order(1, BUY, 100, limit_price="99", transmit=False))
    with pytest.raises(InvalidTransition):
        fill_now(book, oid, D("99"), 30)


@pytest.mark.parametrize("price", [D(0), D(-1), D("NaN"), D("Infinity")])
def test_fill_now_non_positive_or_non_finite_price_raises_and_leaves_book(price: Decimal) -> None:
    book = _placed(new_book(), _order(1, BUY, 100, limit_price="99"))
    with pytest.raises(InvalidExecution):
        fill_now(book, 1, price, 30)
    assert get_order(book, 1).status == "Submitted"  # type: ignore[union-attr]


@settings(max_examples=50)
@given(quantity=st.integers(1, 10_000), first=st.integers(0, 10_000),
       cents=st.integers(1, 1_000_000))
def test_fill_now_always_completes_the_order_with_fills_summing_to_quantity(
        quantity: int, first: int, cents: int) -> None:
    price = D(cents) / 100
    book = _placed(new_book(), _order(1, BUY, quantity, kind=OrderType.MKT))
    book, before = on_quote(book, _quote("10", "10.00", size=max(1, min(first, quantity - 1))), 20)
    if get_order(book, 1).done:  # type: ignore[union-attr]
        return
    book, events = fill_now(book, 1, price, 30)
    fills = [e for e in (*before, *events) if isinstance(e, FillEvent)]
    order = get_order(book, 1)
    assert order is not None and order.status == "Filled"
    assert sum(f.quantity for f in fills) == D(quantity) == fills[-1].cum_qty
    assert isinstance(events[-1], OpenOrderEvent)
