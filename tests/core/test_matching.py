"""Tests for core.matching: order types, liquidity, TIF, brackets, OCA, modify/cancel/reject codes, commissions."""

from __future__ import annotations

import pickle
import re
from collections.abc import Iterable, Sequence
from decimal import Decimal

import pytest
from hypothesis import given, settings, strategies as st

from core.matching import (
    CANCEL_UNKNOWN,
    CANNOT_CANCEL,
    DUPLICATE_ORDER_ID,
    MODIFY_FAILED,
    MODIFY_MISMATCH,
    ORDER_CANCELLED,
    ORDER_REJECTED,
    Book,
    BrokerOrder,
    CommissionModel,
    ErrorEvent,
    Event,
    FillEvent,
    IdMap,
    OpenOrderEvent,
    StatusEvent,
    cancel,
    commission_for,
    end_of_day,
    get_order,
    new_book,
    on_quote,
    open_orders,
    place,
    with_reject_next,
)
from core.types import OrderType, Quote, Side, TimeInForce

D = Decimal
SYM = "AAPL"
BUY, SELL = Side.BUY, Side.SELL
MKT, LMT, STP, STP_LMT, TRAIL = (OrderType.MKT, OrderType.LMT, OrderType.STP, OrderType.STP_LMT,
                                 OrderType.TRAIL)
FREE = CommissionModel(per_share=D(0), minimum=D(0))


def _order(oid: int, side: Side, qty: int | str, kind: OrderType = MKT, **kw: object) -> BrokerOrder:
    for name in ("limit_price", "stop_price", "trail_amount", "trail_percent"):
        if isinstance(kw.get(name), (str, int)):
            kw[name] = D(kw[name])  # type: ignore[arg-type]
    kw.setdefault("symbol", SYM)
    return BrokerOrder(order_id=oid, side=side, quantity=D(qty), order_type=kind, **kw)  # type: ignore[arg-type]


def _quote(bid: str | None = None, ask: str | None = None, *, last: str | None = None,
           bid_size: int | str = 0, ask_size: int | str = 0, symbol: str = SYM) -> Quote:
    return Quote(symbol=symbol, bid=None if bid is None else D(bid), ask=None if ask is None else D(ask),
                 last=None if last is None else D(last), bid_size=D(bid_size), ask_size=D(ask_size))


def _fills(events: Iterable[Event], oid: int | None = None) -> list[FillEvent]:
    return [e for e in events if isinstance(e, FillEvent) and (oid is None or e.order_id == oid)]


def _statuses(events: Iterable[Event], oid: int | None = None) -> list[StatusEvent]:
    return [e for e in events if isinstance(e, StatusEvent) and (oid is None or e.order_id == oid)]


def _errors(events: Iterable[Event]) -> list[ErrorEvent]:
    return [e for e in events if isinstance(e, ErrorEvent)]


def _kinds(events: Iterable[Event]) -> list[tuple[str, int, str]]:
    """Return a compact (event, order id, detail) trace for sequence assertions."""
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


def _run(book: Book, *steps: BrokerOrder | Quote) -> tuple[Book, list[Event]]:
    events: list[Event] = []
    for ts, step in enumerate(steps, start=1):
        book, out = place(book, step, ts) if isinstance(step, BrokerOrder) else on_quote(book, step, ts)
        events.extend(out)
    return book, events


def _status(book: Book, oid: int) -> str:
    order = get_order(book, oid)
    assert order is not None
    return order.status


# ---------------------------------------------------------------- market orders and liquidity


@pytest.mark.parametrize(("side", "price"), [(BUY, "100.02"), (SELL, "99.98")])
def test_market_order_fills_at_the_touch(side: Side, price: str) -> None:
    book, events = _run(new_book(), _quote("99.98", "100.02"), _order(1, side, 100))
    assert [(f.quantity, f.price) for f in _fills(events)] == [(D(100), D(price))]
    assert _kinds(events) == [("open", 1, "Submitted"), ("status", 1, "Submitted"),
                              ("fill", 1, "100"), ("status", 1, "Filled"), ("open", 1, "Filled")]


def test_market_order_without_quote_rests_submitted_until_first_quote() -> None:
    book, events = _run(new_book(), _order(1, BUY, 100))
    assert _statuses(events)[-1].status == "Submitted" and not _fills(events)
    book, events = _run(book, _quote("10", "10.01"))
    assert [(f.price, f.cum_qty) for f in _fills(events)] == [(D("10.01"), D(100))]
    assert _status(book, 1) == "Filled"


def test_market_order_on_quote_missing_its_side_rests() -> None:
    book, events = _run(new_book(), _quote(bid="10"), _order(1, BUY, 5))
    assert not _fills(events) and _status(book, 1) == "Submitted"


def test_market_order_partial_fill_from_limited_size_completes_on_later_quote() -> None:
    book, events = _run(new_book(commission=FREE), _quote("99.9", "100", ask_size=60), _order(1, BUY, 100))
    assert [f.quantity for f in _fills(events)] == [D(60)]
    last = _statuses(events)[-1]
    assert (last.status, last.filled, last.remaining) == ("Submitted", D(60), D(40))
    book, events = _run(book, _quote("100.4", "100.5", ask_size=500))
    (fill,) = _fills(events)
    assert (fill.quantity, fill.price, fill.cum_qty) == (D(40), D("100.5"), D(100))
    assert fill.avg_price == D("100.2")  # (60 × 100 + 40 × 100.5) / 100
    last = _statuses(events)[-1]
    assert (last.status, last.filled, last.remaining, last.avg_fill_price) == (
        "Filled", D(100), D(0), D("100.2"))


def test_two_orders_on_one_quote_share_its_displayed_size_in_time_priority() -> None:
    book, events = _run(new_book(), _order(1, BUY, 50), _order(2, BUY, 50), _quote("9", "10", ask_size=70))
    assert [(f.order_id, f.quantity) for f in _fills(events)] == [(1, D(50)), (2, D(20))]


def test_order_placed_after_a_quote_gets_only_what_earlier_fills_left() -> None:
    book, events = _run(new_book(), _quote("9", "10", ask_size=70), _order(1, BUY, 50), _order(2, BUY, 50))
    assert [(f.order_id, f.quantity) for f in _fills(events)] == [(1, D(50)), (2, D(20))]
    book, events = _run(book, _order(3, SELL, 30))
    assert [(f.order_id, f.quantity) for f in _fills(events)] == [(3, D(30))]  # bid side is unlimited


def test_zero_displayed_size_means_unknown_depth_and_fills_everything() -> None:
    book, events = _run(new_book(), _quote("9", "10"), _order(1, BUY, 1_000_000))
    assert [f.quantity for f in _fills(events)] == [D(1_000_000)]


# ---------------------------------------------------------------- limit orders


@pytest.mark.parametrize(
    ("side", "limit", "expected"),
    [
        (BUY, "100.05", "100.02"),   # marketable: price improvement at the ask
        (BUY, "100.02", "100.02"),
        (BUY, "100.01", None),
        (SELL, "99.95", "99.98"),    # marketable: price improvement at the bid
        (SELL, "99.98", "99.98"),
        (SELL, "99.99", None),
    ],
)
def test_limit_order_fills_only_when_marketable_at_the_touch(side: Side, limit: str, expected: str | None) -> None:
    book, events = _run(new_book(), _quote("99.98", "100.02"), _order(1, side, 10, LMT, limit_price=limit))
    assert [f.price for f in _fills(events)] == ([] if expected is None else [D(expected)])
    assert _status(book, 1) == ("Submitted" if expected is None else "Filled")


def test_resting_limit_fills_when_the_market_reaches_it() -> None:
    book, _ = _run(new_book(), _quote("99", "101"), _order(1, BUY, 10, LMT, limit_price="100"))
    book, events = _run(book, _quote("99.5", "100.5"))
    assert not _fills(events)
    book, events = _run(book, _quote("99.8", "99.9"))
    assert [f.price for f in _fills(events)] == [D("99.9")]


# ---------------------------------------------------------------- stops


@pytest.mark.parametrize(
    ("side", "quote", "fill_price"),
    [
        (BUY, _quote("100.9", "101", last="100.5"), "101"),     # ask reaches the stop
        (BUY, _quote("100.4", "100.5", last="101"), "100.5"),   # last reaches the stop; fills at the ask
        (BUY, _quote("100.4", "100.5", last="100.5"), None),
        (SELL, _quote("99", "99.1", last="99.5"), "99"),        # bid reaches the stop
        (SELL, _quote("99.5", "99.6", last="99"), "99.5"),      # last reaches the stop; fills at the bid
        (SELL, _quote("99.5", "99.6", last="99.5"), None),
    ],
)
def test_stop_triggers_on_last_or_touch_then_fills_as_market(side: Side, quote: Quote, fill_price: str | None) -> None:
    stop = "101" if side is BUY else "99"
    book, events = _run(new_book(), _order(1, side, 10, STP, stop_price=stop), quote)
    assert [f.price for f in _fills(events)] == ([] if fill_price is None else [D(fill_price)])
    order = get_order(book, 1)
    assert order is not None and order.triggered is (fill_price is not None)


def test_stop_limit_triggers_then_rests_as_limit_until_marketable() -> None:
    book, events = _run(new_book(), _order(1, SELL, 10, STP_LMT, stop_price="99", limit_price="98.9"),
                        _quote("98.5", "98.6", last="98.5"))
    order = get_order(book, 1)
    assert order is not None and order.triggered and not _fills(events)
    book, events = _run(book, _quote("98.95", "99", last="98.95"))
    assert [f.price for f in _fills(events)] == [D("98.95")]


# ---------------------------------------------------------------- trailing stops


def _trail_stops(book: Book, oid: int, quotes: Sequence[Quote]) -> tuple[Book, list[Decimal | None], list[Event]]:
    levels: list[Decimal | None] = []
    events: list[Event] = []
    for q in quotes:
        book, out = on_quote(book, q, 0)
        events.extend(out)
        order = get_order(book, oid)
        assert order is not None
        levels.append(order.trail_stop)
    return book, levels, events


def test_trailing_sell_stop_initialises_from_market_ratchets_up_only_and_triggers() -> None:
    book, _ = _run(new_book(), _order(1, SELL, 10, TRAIL, trail_amount="1", tif=TimeInForce.GTC))
    quotes = [_quote("99.99", "100.01", last="100"), _quote("100.99", "101.01", last="101"),
              _quote("100.49", "100.51", last="100.5"), _quote("99.99", "100.01", last="100")]
    book, levels, events = _trail_stops(book, 1, quotes)
    assert levels == [D(99), D(100), D(100), D(100)]
    assert [f.price for f in _fills(events)] == [D("99.99")]  # triggered by last 100 <= 100, sold at the bid


def test_trailing_buy_stop_by_percent_ratchets_down_only() -> None:
    book, _ = _run(new_book(), _order(1, BUY, 10, TRAIL, trail_percent="1", tif=TimeInForce.GTC))
    quotes = [_quote("99.99", "100.01", last="100"), _quote("97.99", "98.01", last="98"),
              _quote("98.49", "98.51", last="98.5")]
    book, levels, events = _trail_stops(book, 1, quotes)
    assert levels == [D("101.00"), D("98.98"), D("98.98")] and not _fills(events)
    book, levels, events = _trail_stops(book, 1, [_quote("98.97", "98.99", last="98.98")])
    assert [f.price for f in _fills(events)] == [D("98.99")]


@pytest.mark.parametrize(("side", "expected"), [(SELL, "122.21"), (BUY, "124.69")])
def test_trailing_percent_level_rounds_away_from_market_to_the_tick(side: Side, expected: str) -> None:
    # 1 % of 123.45 = 1.2345: sell 122.2155 -> 122.21, buy 124.6845 -> 124.69
    book, _ = _run(new_book(), _order(1, side, 10, TRAIL, trail_percent="1"),
                   _quote(last="123.45"))
    order = get_order(book, 1)
    assert order is not None and order.trail_stop == D(expected)


@pytest.mark.parametrize(("initial", "expected"), [("99.5", "99.5"), ("95", "99")])
def test_trailing_initial_stop_price_is_kept_unless_the_market_ratchets_past_it(initial: str, expected: str) -> None:
    book, _ = _run(new_book(), _order(1, SELL, 10, TRAIL, trail_amount="1", stop_price=initial))
    assert get_order(book, 1).trail_stop == D(initial)  # type: ignore[union-attr]
    book, _ = _run(book, _quote("99.99", "100.01", last="100"))
    assert get_order(book, 1).trail_stop == D(expected)  # type: ignore[union-attr]


# ---------------------------------------------------------------- time in force


def test_end_of_day_cancels_day_orders_and_gtc_orders_survive() -> None:
    book, _ = _run(new_book(), _order(1, BUY, 10, LMT, limit_price="90"),
                   _order(2, BUY, 10, LMT, limit_price="90", tif=TimeInForce.GTC), _quote("99", "100"))
    book, events = end_of_day(book, 10)
    assert _kinds(events) == [("status", 1, "Cancelled"), ("error", 1, "202")]
    assert _status(book, 1) == "Cancelled" and _status(book, 2) == "Submitted"
    assert [o.order_id for o in open_orders(book)] == [2]


def test_ioc_fills_the_displayed_size_then_cancels_the_rest() -> None:
    book, events = _run(new_book(), _quote("99", "100", ask_size=30), _order(1, BUY, 100, tif=TimeInForce.IOC))
    assert [f.quantity for f in _fills(events)] == [D(30)]
    last = _statuses(events)[-1]
    assert (last.status, last.filled, last.remaining) == ("Cancelled", D(30), D(70))
    assert _errors(events)[-1].code == ORDER_CANCELLED


def test_ioc_without_a_quote_is_cancelled_whole() -> None:
    book, events = _run(new_book(), _order(1, BUY, 100, tif=TimeInForce.IOC))
    assert not _fills(events) and _status(book, 1) == "Cancelled"


# ---------------------------------------------------------------- brackets


def _bracket(last_transmit: bool = True, qty: int = 100) -> list[BrokerOrder]:
    return [
        _order(1, BUY, qty, MKT, transmit=False, tif=TimeInForce.GTC),
        _order(2, SELL, qty, LMT, limit_price="105", parent_id=1, transmit=False, tif=TimeInForce.GTC),
        _order(3, SELL, qty, STP, stop_price="95", parent_id=1, transmit=last_transmit, tif=TimeInForce.GTC),
    ]


def test_bracket_is_held_silently_until_the_last_child_transmits() -> None:
    parent, target, stop = _bracket()
    book, events = _run(new_book(), parent, target)
    assert events == [] and open_orders(book) == () and _status(book, 1) == "PendingSubmit"
    book, events = _run(book, stop)
    assert _kinds(events) == [("open", 1, "Submitted"), ("status", 1, "Submitted"),
                              ("open", 2, "PreSubmitted"), ("status", 2, "PreSubmitted"),
                              ("open", 3, "PreSubmitted"), ("status", 3, "PreSubmitted")]
    assert {s.why_held for s in _statuses(events) if s.order_id != 1} == {"child"}
    assert [s.parent_id for s in _statuses(events)] == [0, 1, 1]


def test_bracket_whose_last_child_is_untransmitted_never_executes() -> None:
    book, events = _run(new_book(), *_bracket(last_transmit=False), _quote("99", "100"))
    assert events == [] and {_status(book, i) for i in (1, 2, 3)} == {"PendingSubmit"}


def test_bracket_children_stay_inactive_until_the_parent_is_fully_filled() -> None:
    book, _ = _run(new_book(), *_bracket())
    book, events = _run(book, _quote("99", "100", ask_size=40))
    assert [f.quantity for f in _fills(events, 1)] == [D(40)]
    book, events = _run(book, _quote("110", None))          # the target would be marketable
    assert not _fills(events) and {_status(book, 2), _status(book, 3)} == {"PreSubmitted"}
    book, events = _run(book, _quote("100.9", "101", ask_size=100))
    assert _kinds(events) == [("fill", 1, "60"), ("status", 1, "Filled"), ("open", 1, "Filled"),
                              ("status", 2, "Submitted"), ("status", 3, "Submitted")]
    assert (get_order(book, 2).quantity, get_order(book, 3).quantity) == (D(100), D(100))  # type: ignore[union-attr]


def test_bracket_target_fill_cancels_the_stop() -> None:
    book, _ = _run(new_book(), *_bracket(), _quote("99", "100"))
    book, events = _run(book, _quote("105", "105.1"))
    assert _kinds(events) == [("fill", 2, "100"), ("status", 2, "Filled"), ("open", 2, "Filled"),
                              ("status", 3, "Cancelled"), ("error", 3, "202")]


def test_bracket_stop_fill_cancels_the_target() -> None:
    book, _ = _run(new_book(), *_bracket(), _quote("99", "100"))
    book, events = _run(book, _quote("94.9", "95"))
    assert [f.order_id for f in _fills(events)] == [3] and _status(book, 2) == "Cancelled"


def test_bracket_target_partial_fill_reduces_the_stop() -> None:
    book, _ = _run(new_book(), *_bracket(), _quote("99", "100"))
    book, events = _run(book, _quote("105", "105.1", bid_size=30))
    reduced = [e.order for e in events if isinstance(e, OpenOrderEvent) and e.order.order_id == 3]
    assert [o.quantity for o in reduced] == [D(70)]
    assert _statuses(events, 3)[-1].remaining == D(70)
    book, events = _run(book, _quote("94", "94.1"))
    assert [(f.order_id, f.quantity) for f in _fills(events)] == [(3, D(70))]
    assert _status(book, 2) == "Cancelled"  # reduced to its 30 filled shares


def test_cancelling_the_parent_cancels_its_children() -> None:
    book, _ = _run(new_book(), *_bracket())
    book, events = cancel(book, 1, 5)
    assert _kinds(events) == [("status", 1, "Cancelled"), ("error", 1, "202"),
                              ("status", 2, "Cancelled"), ("error", 2, "202"),
                              ("status", 3, "Cancelled"), ("error", 3, "202")]
    assert open_orders(book) == ()


def test_cancelling_a_held_parent_cancels_its_held_children_and_the_family_is_gone() -> None:
    parent, target, stop = _bracket()
    book, _ = _run(new_book(), parent, target)
    book, events = cancel(book, 1, 5)
    assert {(s.order_id, s.status) for s in _statuses(events)} == {(1, "Cancelled"), (2, "Cancelled")}
    book, events = _run(book, stop)
    assert _errors(events)[0].code == ORDER_REJECTED and "parent order 1" in _errors(events)[0].message


def test_child_of_an_unknown_parent_is_rejected() -> None:
    book, events = _run(new_book(), _order(7, SELL, 10, STP, stop_price="9", parent_id=3))
    assert [e.code for e in _errors(events)] == [ORDER_REJECTED] and _status(book, 7) == "Inactive"


def test_child_added_after_the_parent_filled_is_active_at_once() -> None:
    book, _ = _run(new_book(), _quote("99", "100"), _order(1, BUY, 10))
    book, events = _run(book, _order(2, SELL, 10, STP, stop_price="90", parent_id=1))
    assert _statuses(events)[-1].status == "Submitted"


def test_held_order_transmitted_by_a_modify_becomes_active_and_fills() -> None:
    book, events = _run(new_book(), _quote("99", "100"), _order(1, BUY, 10, transmit=False))
    assert events == []
    book, events = _run(book, _order(1, BUY, 10, transmit=True))
    assert [f.price for f in _fills(events)] == [D(100)]


# ---------------------------------------------------------------- OCA groups


def _oca_pair(oca_type: int) -> list[BrokerOrder]:
    return [_order(1, SELL, 100, LMT, limit_price="105", oca_group="G", oca_type=oca_type),
            _order(2, SELL, 100, LMT, limit_price="50", symbol="MSFT", oca_group="G", oca_type=oca_type)]


@pytest.mark.parametrize("oca_type", [0, 1])
def test_oca_cancel_type_full_fill_cancels_the_other_members(oca_type: int) -> None:
    book, events = _run(new_book(), *_oca_pair(oca_type), _quote("105", "105.1"))
    assert _kinds(events)[-2:] == [("status", 2, "Cancelled"), ("error", 2, "202")]


def test_oca_type_1_partial_fill_blocks_the_others_until_that_member_is_done() -> None:
    book, _ = _run(new_book(), *_oca_pair(1), _quote("105", "105.1", bid_size=40))
    book, events = _run(book, _quote("50", "50.1", symbol="MSFT"))
    assert not _fills(events) and get_order(book, 2).quantity == D(100)  # type: ignore[union-attr]
    book, _ = cancel(book, 1, 5)
    book, events = _run(book, _quote("50", "50.1", symbol="MSFT"))
    assert [(f.order_id, f.quantity) for f in _fills(events)] == [(2, D(100))]


@pytest.mark.parametrize("oca_type", [2, 3])
def test_oca_reduce_types_partial_fill_reduces_the_other_members(oca_type: int) -> None:
    book, events = _run(new_book(), *_oca_pair(oca_type), _quote("105", "105.1", bid_size=40))
    assert _statuses(events, 2)[-1].remaining == D(60)
    book, events = _run(book, _quote("50", "50.1", symbol="MSFT"))
    assert [(f.order_id, f.quantity) for f in _fills(events)] == [(2, D(60))]
    assert _status(book, 1) == "Cancelled" and get_order(book, 1).filled == D(40)  # type: ignore[union-attr]


@pytest.mark.parametrize(("oca_type", "total"), [(2, 100), (3, 200)])
def test_oca_type_3_without_block_can_overfill_on_one_quote_and_type_2_cannot(oca_type: int, total: int) -> None:
    book, events = _run(new_book(),
                        _order(1, SELL, 100, LMT, limit_price="105", oca_group="G", oca_type=oca_type),
                        _order(2, SELL, 100, LMT, limit_price="104", oca_group="G", oca_type=oca_type),
                        _quote("105", "105.1"))
    assert sum(f.quantity for f in _fills(events)) == D(total)


def test_oca_reduction_is_proportional_to_member_size() -> None:
    book, events = _run(new_book(),
                        _order(1, SELL, 100, LMT, limit_price="105", oca_group="G", oca_type=2),
                        _order(2, SELL, 50, LMT, limit_price="200", oca_group="G", oca_type=2),
                        _quote("105", "105.1", bid_size=40))
    assert get_order(book, 2).quantity == D(30)  # type: ignore[union-attr]


# ---------------------------------------------------------------- modify


def test_modify_limit_price_makes_the_order_marketable_and_keeps_its_perm_id() -> None:
    book, _ = _run(new_book(), _quote("99", "100"), _order(1, BUY, 10, LMT, limit_price="99"))
    perm = get_order(book, 1).perm_id  # type: ignore[union-attr]
    book, events = _run(book, _order(1, BUY, 10, LMT, limit_price="100"))
    assert _kinds(events)[:3] == [("open", 1, "Submitted"), ("status", 1, "Submitted"), ("fill", 1, "10")]
    assert get_order(book, 1).perm_id == perm and _fills(events)[0].perm_id == perm  # type: ignore[union-attr]


def test_modify_quantity_changes_remaining() -> None:
    book, _ = _run(new_book(), _order(1, BUY, 10, LMT, limit_price="99"))
    book, events = _run(book, _order(1, BUY, 25, LMT, limit_price="99"))
    assert _statuses(events)[-1].remaining == D(25)


@pytest.mark.parametrize("new_qty", [50, 60])
def test_modify_quantity_not_above_filled_is_refused_and_the_order_is_unchanged(new_qty: int) -> None:
    book, _ = _run(new_book(), _quote("99", "100", ask_size=60), _order(1, BUY, 100, LMT, limit_price="100"))
    before = get_order(book, 1)
    after, events = place(book, _order(1, BUY, new_qty, LMT, limit_price="100"), 9)
    assert [e.code for e in _errors(events)] == [MODIFY_FAILED] and len(events) == 1
    assert after.orders is book.orders and get_order(after, 1) == before


def test_modify_changing_the_side_is_refused_with_105() -> None:
    book, _ = _run(new_book(), _order(1, BUY, 10, LMT, limit_price="99"))
    after, events = place(book, _order(1, SELL, 10, LMT, limit_price="99"), 9)
    assert [e.code for e in _errors(events)] == [MODIFY_MISMATCH] and get_order(after, 1).side is BUY  # type: ignore[union-attr]


# ---------------------------------------------------------------- duplicate ids


def _filled_and_cancelled() -> Book:
    book, _ = _run(new_book(), _quote("99", "100"), _order(5, BUY, 10), _order(6, BUY, 10, LMT, limit_price="1"))
    book, _ = cancel(book, 6, 3)
    return book


@pytest.mark.parametrize(
    "order",
    [
        _order(5, BUY, 10),                   # id of a Filled order
        _order(6, BUY, 10),                   # id of a Cancelled order
        _order(4, BUY, 10),                   # new id below the highest this client used
        _order(6, BUY, 10, client_id=2),      # another client's id
    ],
)
def test_duplicate_order_id_is_refused_with_103_and_nothing_changes(order: BrokerOrder) -> None:
    book = _filled_and_cancelled()
    after, events = place(book, order, 9)
    assert after is book
    assert events == (ErrorEvent(order_id=order.order_id, code=DUPLICATE_ORDER_ID, message="Duplicate order id"),)


def test_order_ids_are_tracked_per_client() -> None:
    book = _filled_and_cancelled()
    book, events = place(book, _order(1, BUY, 10, LMT, limit_price="1", client_id=2), 9)
    assert _statuses(events)[-1].status == "Submitted"


def test_rejected_order_id_is_consumed() -> None:
    book, _ = _run(new_book(), _order(1, BUY, 0))
    _, events = place(book, _order(1, BUY, 10), 9)
    assert [e.code for e in _errors(events)] == [DUPLICATE_ORDER_ID]


# ---------------------------------------------------------------- cancel


def test_cancel_working_order_reports_cancelled_then_202() -> None:
    book, _ = _run(new_book(), _order(1, BUY, 10, LMT, limit_price="9"))
    book, events = cancel(book, 1, 5)
    assert events[0] == StatusEvent(order_id=1, status="Cancelled", filled=D(0), remaining=D(10),
                                    avg_fill_price=D(0), last_fill_price=D(0),
                                    perm_id=get_order(book, 1).perm_id, parent_id=0, client_id=0)  # type: ignore[union-attr]
    assert events[1] == ErrorEvent(order_id=1, code=ORDER_CANCELLED, message="Order Canceled - reason:")
    assert len(events) == 2 and open_orders(book) == ()


def test_cancel_unknown_order_gives_10147() -> None:
    book = new_book()
    after, events = cancel(book, 42, 5)
    assert after is book and [e.code for e in _errors(events)] == [CANCEL_UNKNOWN]


def test_cancel_of_another_clients_order_gives_10147() -> None:
    book, _ = _run(new_book(), _order(1, BUY, 10, LMT, limit_price="9", client_id=3))
    after, events = cancel(book, 1, 5, client_id=4)
    assert after is book and [e.code for e in _errors(events)] == [CANCEL_UNKNOWN]


@pytest.mark.parametrize("oid", [5, 6])
def test_cancel_of_a_done_order_gives_10148_and_changes_nothing(oid: int) -> None:
    book = _filled_and_cancelled()
    after, events = cancel(book, oid, 5)
    assert after is book and [e.code for e in _errors(events)] == [CANNOT_CANCEL] and len(events) == 1


# ---------------------------------------------------------------- rejections


@pytest.mark.parametrize(
    ("order", "reason"),
    [
        (_order(1, BUY, 0), "quantity"),
        (_order(1, BUY, -5), "quantity"),
        (_order(1, BUY, 10, LMT), "limit price"),
        (_order(1, BUY, 10, STP), "stop price"),
        (_order(1, BUY, 10, STP_LMT, stop_price="9"), "limit price"),
        (_order(1, BUY, 10, STP_LMT, limit_price="9"), "stop price"),
        (_order(1, BUY, 10, LMT, limit_price="-1"), "limit_price"),
        (_order(1, BUY, 10, STP, stop_price="-0.01"), "stop_price"),
        (_order(1, BUY, 10, TRAIL), "trail"),
        (_order(1, BUY, 10, TRAIL, trail_amount="1", trail_percent="1"), "trail"),
        (_order(1, BUY, 10, TRAIL, trail_percent="100"), "trail percent"),
        (_order(1, BUY, 10, TRAIL, trail_amount="0"), "trail_amount"),
        (_order(1, BUY, 10, "MOC"), "order type"),  # type: ignore[arg-type]
        (_order(1, BUY, 10, oca_group="G", oca_type=4), "OCA type"),
        (_order(1, BUY, 10, symbol=""), "symbol"),
    ],
)
def test_invalid_order_is_rejected_with_201_and_its_reason(order: BrokerOrder, reason: str) -> None:
    book, events = place(new_book(), order, 1)
    (error,) = _errors(events)
    assert error.code == ORDER_REJECTED and error.message.startswith("Order rejected - reason:")
    assert reason in error.message
    assert _statuses(events)[-1].status == "Inactive" and _status(book, 1) == "Inactive"


def test_reject_next_rejects_exactly_the_next_new_order() -> None:
    book, events = _run(new_book(reject_next=True), _quote("99", "100"), _order(1, BUY, 10))
    assert [e.code for e in _errors(events)] == [ORDER_REJECTED] and not _fills(events)
    book, events = _run(book, _order(2, BUY, 10))
    assert not _errors(events) and _status(book, 2) == "Filled"


def test_with_reject_next_uses_the_given_reason() -> None:
    book = with_reject_next(new_book(), "LGSZ size limit")
    book, events = place(book, _order(1, BUY, 10), 1)
    assert _errors(events)[0].message == "Order rejected - reason:LGSZ size limit"
    assert book.reject_next == ""


# ---------------------------------------------------------------- commissions


@pytest.mark.parametrize(
    ("qty", "price", "expected"),
    [
        ("100", "10", "1.00"),     # minimum
        ("1000", "10", "5.000"),   # per share
        ("100", "0.5", "0.500"),   # capped at 1 % of 50
        ("10", "1", "0.10"),       # the cap wins over the minimum
    ],
)
def test_commission_for_applies_minimum_per_share_and_cap(qty: str, price: str, expected: str) -> None:
    assert commission_for(CommissionModel(), D(qty), D(price)) == D(expected)


@pytest.mark.parametrize(("qty", "sizes", "per_fill"), [
    (100, (60, 40), ("1.00", "0.00")),
    (400, (100, 300), ("1.00", "1.000")),
    (1000, (100, 100, 800), ("1.00", "0.00", "4.000")),
])
def test_partial_fills_charge_the_minimum_once_per_order(qty: int, sizes: tuple[int, ...],
                                                          per_fill: tuple[str, ...]) -> None:
    book, _ = _run(new_book(), _order(1, BUY, qty))
    fills: list[FillEvent] = []
    for size in sizes:
        book, events = on_quote(book, _quote("9.99", "10", ask_size=size), 0)
        fills += _fills(events)
    assert [f.commission for f in fills] == [D(c) for c in per_fill]
    assert sum(f.commission for f in fills) == commission_for(CommissionModel(), D(qty), D(10))


# ---------------------------------------------------------------- ids and persistence


def test_exec_ids_are_unique_and_ib_shaped_and_perm_ids_unique() -> None:
    book = new_book()
    all_fills: list[FillEvent] = []
    for oid in range(1, 21):
        book, events = place(book, _order(oid, BUY if oid % 2 else SELL, 30), oid)
        all_fills += _fills(events)
        book, events = on_quote(book, _quote("9.99", "10.01", bid_size=20, ask_size=20), oid)
        all_fills += _fills(events)
    exec_ids = [f.exec_id for f in all_fills]
    assert len(exec_ids) == len(set(exec_ids)) == 40
    assert all(re.fullmatch(r"0000e0d5\.[0-9a-f]{8}\.[0-9a-f]{2,}\.01", e) for e in exec_ids)
    perm_ids = [get_order(book, oid).perm_id for oid in range(1, 21)]  # type: ignore[union-attr]
    assert len(set(perm_ids)) == 20 and perm_ids == sorted(perm_ids)


def test_book_survives_a_pickle_round_trip() -> None:
    book, _ = _run(new_book(), *_bracket(), _quote("99", "100"))
    copy = pickle.loads(pickle.dumps(book))
    assert copy == book
    _, events = on_quote(copy, _quote("105", "105.1"), 1)
    assert [f.order_id for f in _fills(events)] == [2]


@given(st.lists(st.tuples(st.integers(-5000, 300_000), st.one_of(st.none(), st.integers())), max_size=60))
@settings(max_examples=60)
def test_property_idmap_behaves_like_a_dict(changes: list[tuple[int, int | None]]) -> None:
    from core.matching import _DELETE
    m: IdMap[int] = IdMap()
    ref: dict[int, int] = {}
    for key, value in changes:
        m = m.updated({key: _DELETE if value is None else value})
        if value is None:
            ref.pop(key, None)
        else:
            ref[key] = value
    assert list(m) == sorted(ref) and len(m) == len(ref) and dict(m.items()) == ref


# ---------------------------------------------------------------- property: fills stay consistent


_kinds_st = st.sampled_from([MKT, LMT, STP, STP_LMT, TRAIL])
_place = st.tuples(st.just("place"), _kinds_st, st.sampled_from([BUY, SELL]), st.integers(1, 300),
                   st.integers(-30, 30), st.sampled_from(list(TimeInForce)), st.integers(0, 3),
                   st.booleans(), st.sampled_from(["", "", "G1", "G2"]), st.integers(0, 3))
_quote_step = st.tuples(st.just("quote"), st.integers(-40, 40), st.integers(0, 200), st.integers(0, 200),
                        st.sampled_from(["AAPL", "MSFT"]))
_step = st.one_of(
    _place, _quote_step, _place, _quote_step,   # weighted: mostly places and quotes
    st.tuples(st.just("cancel"), st.integers(1, 30)),
    st.tuples(st.just("modify"), st.integers(1, 30), st.integers(1, 300), st.integers(-30, 30)),
    st.just(("eod",)),
)


def _random_order(oid: int, step: tuple, parent: int) -> BrokerOrder:  # type: ignore[type-arg]
    _, kind, side, qty, offset, tif, _, transmit, group, oca_type = step
    price = D(100) + D(offset) / 10
    kw: dict[str, object] = {"tif": tif, "transmit": transmit or not parent, "parent_id": parent,
                             "oca_group": group, "oca_type": oca_type}
    if kind in (LMT, STP_LMT):
        kw["limit_price"] = price
    if kind in (STP, STP_LMT):
        kw["stop_price"] = price
    if kind is TRAIL:
        kw["trail_amount"] = D(abs(offset) + 1) / 10
    return BrokerOrder(order_id=oid, symbol="AAPL" if oid % 3 else "MSFT", side=side, quantity=D(qty),
                       order_type=kind, **kw)  # type: ignore[arg-type]


@given(steps=st.lists(_step, min_size=25, max_size=80))
@settings(max_examples=100)
def test_property_filled_never_exceeds_quantity_and_cum_qty_is_the_running_sum(steps: list[tuple]) -> None:  # type: ignore[type-arg]
    book = new_book()
    running: dict[int, Decimal] = {}
    done: set[int] = set()
    commissions: dict[int, Decimal] = {}
    next_id = 1
    liquidity: dict[tuple[str, Side], Decimal | None] = {}
    for ts, step in enumerate(steps):
        if step[0] == "place":
            parent = next_id - step[6] if step[6] and step[6] < next_id else 0  # a recent order
            book, events = place(book, _random_order(next_id, step, parent), ts)
            next_id += 1
        elif step[0] == "quote":
            _, offset, bid_size, ask_size, symbol = step
            mid = D(100) + D(offset) / 10
            quote = Quote(symbol=symbol, bid=mid - D("0.05"), ask=mid + D("0.05"), last=mid,
                          bid_size=D(bid_size), ask_size=D(ask_size))
            liquidity[(symbol, SELL)] = D(bid_size) if bid_size else None
            liquidity[(symbol, BUY)] = D(ask_size) if ask_size else None
            book, events = on_quote(book, quote, ts)
        elif step[0] == "cancel":
            book, events = cancel(book, step[1], ts)
        elif step[0] == "modify":
            old = get_order(book, step[1])
            if old is None:
                continue
            book, events = place(book, BrokerOrder(
                order_id=old.order_id, symbol=old.symbol, side=old.side, quantity=D(step[2]),
                order_type=LMT, limit_price=D(100) + D(step[3]) / 10, parent_id=old.parent_id,
                oca_group=old.oca_group, oca_type=old.oca_type, tif=old.tif), ts)
        else:
            book, events = end_of_day(book, ts)
        for event in events:
            if isinstance(event, FillEvent):
                assert event.quantity > 0 and event.order_id not in done
                running[event.order_id] = running.get(event.order_id, D(0)) + event.quantity
                assert event.cum_qty == running[event.order_id]
                assert event.commission >= 0
                commissions[event.order_id] = commissions.get(event.order_id, D(0)) + event.commission
                order = get_order(book, event.order_id)
                assert order is not None
                if order.parent_id:  # a child never fills before its parent is complete
                    assert get_order(book, order.parent_id).status == "Filled"  # type: ignore[union-attr]
                left = liquidity.get((order.symbol, order.side))
                if left is not None:  # never more than the displayed size of the current quote
                    assert event.quantity <= left
                    liquidity[(order.symbol, order.side)] = left - event.quantity
            elif isinstance(event, StatusEvent):
                assert event.filled == running.get(event.order_id, D(0)) and event.remaining >= 0
                if event.status in ("Filled", "Cancelled", "Inactive"):
                    done.add(event.order_id)
    for oid in book.orders:
        order = book.orders[oid]
        assert order.filled == running.get(oid, D(0)) and order.filled <= order.quantity
        assert commissions.get(oid, D(0)) == order.commission
        assert (oid in book.live) is (not order.done)
    # the indexes match the orders: working = Submitted (in activation order), held = PendingSubmit
    submitted = {o.order_id for o in map(book.orders.__getitem__, book.live) if o.status == "Submitted"}
    assert sorted(i for ids in book.working.values() for i in ids) == sorted(submitted)
    pending = {o.order_id for o in map(book.orders.__getitem__, book.live) if o.status == "PendingSubmit"}
    assert sorted(i for root in book.held for i in book.held[root]) == sorted(pending)
