"""Tests for core.position: fill arithmetic, lifecycle table, protective levels, P&L invariants."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from decimal import Decimal

import pytest
from hypothesis import assume, given, strategies as st

from core.errors import InvalidExecution, InvalidPosition
from core.position import (
    NEXT,
    ExitReason,
    Position,
    PositionState,
    COMMISSION_DUE_KEPT,
    Trigger,
    apply_commission,
    apply_execution,
    cancel_entry,
    cancel_exit,
    expect_entry,
    expect_exit,
    from_broker,
    held_ns,
    mark,
    market_value,
    move_stop_to_break_even,
    net_pnl,
    set_stop_loss,
    set_take_profit,
    set_trailing,
    settle_fills,
    triggered_exit,
    unrealized_pnl,
    with_unapplied_fills,
    update_trailing,
)
from core.types import Execution, Side

D = Decimal
S = PositionState
SYMBOL = "AAPL"

Fill = tuple[str, str | int, str]  # side, quantity, price


def _exec(side: str, quantity: str | int, price: str, *, exec_id: str, commission: str = "0",
          symbol: str = SYMBOL, ts_ns: int = 0) -> Execution:
    return Execution(exec_id=exec_id, order_id=1, order_ref="g-1:entry", symbol=symbol,
                     side=Side(side), quantity=D(quantity), price=D(price),
                     commission=D(commission), ts_ns=ts_ns)


def _run(fills: Sequence[Fill], position: Position | None = None, *, start: int = 0) -> Position:
    pos = position if position is not None else Position(symbol=SYMBOL)
    for i, (side, qty, price) in enumerate(fills, start=start):
        pos = apply_execution(pos, _exec(side, qty, price, exec_id=f"e{i}"))
    return pos


def _long(qty: int = 100, price: str = "100", last: str | None = None) -> Position:
    pos = _run([("BUY", qty, price)])
    return mark(pos, D(last)) if last is not None else pos


def _short(qty: int = 100, price: str = "100", last: str | None = None) -> Position:
    pos = _run([("SELL", qty, price)])
    return mark(pos, D(last)) if last is not None else pos


# ---------------------------------------------------------------- fill arithmetic


@pytest.mark.parametrize(
    ("fills", "quantity", "avg_cost", "realized"),
    [
        ([("BUY", 100, "10")], "100", "10", "0"),
        ([("SELL", 100, "10")], "-100", "10", "0"),
        ([("BUY", 30, "10"), ("BUY", 70, "10")], "100", "10", "0"),                    # partial fills
        ([("BUY", 100, "10"), ("BUY", 100, "12")], "200", "11", "0"),                  # long add
        ([("SELL", 100, "10"), ("SELL", 300, "14")], "-400", "13", "0"),               # short add
        ([("BUY", 100, "10"), ("SELL", 40, "12.5")], "60", "10", "100"),               # partial close, profit
        ([("BUY", 100, "10"), ("SELL", 40, "9")], "60", "10", "-40"),                  # partial close, loss
        ([("SELL", 100, "10"), ("BUY", 30, "8")], "-70", "10", "60"),                  # short cover, profit
        ([("SELL", 100, "10"), ("BUY", 100, "11")], "0", "0", "-100"),                 # short cover, loss
        ([("BUY", 100, "10"), ("SELL", 100, "11")], "0", "0", "100"),                  # full close
        ([("BUY", 100, "10"), ("SELL", 150, "12")], "-50", "12", "200"),               # flip long -> short
        ([("SELL", 100, "10"), ("BUY", 130, "11")], "30", "11", "-100"),               # flip short -> long
        ([("BUY", 100, "10"), ("BUY", 100, "12"), ("SELL", 50, "13")], "150", "11", "100"),
        ([("BUY", 10, "10"), ("SELL", 10, "11"), ("SELL", 5, "20")], "-5", "20", "10"),  # reopen after close
        ([("BUY", 100, "10"), ("SELL", 30, "11"), ("SELL", 30, "12"), ("SELL", 40, "9")],
         "0", "0", "50"),                                                               # scaled-out exit
    ],
)
def test_apply_execution_fill_sequence_gives_quantity_avg_cost_and_realized(
        fills: list[Fill], quantity: str, avg_cost: str, realized: str) -> None:
    pos = _run(fills)
    assert pos.quantity == D(quantity)
    assert pos.avg_cost == D(avg_cost)
    assert pos.realized_pnl == D(realized)


def test_apply_execution_uneven_partial_close_keeps_pnl_consistent_with_cash() -> None:
    pos = _run([("BUY", 1, "100.01"), ("BUY", 1, "100.02"), ("BUY", 1, "100.04"), ("SELL", 1, "101")])
    # avg 100.02333..., the release is rounded but realized + unrealized still equals cash + value
    cash = -D("100.01") - D("100.02") - D("100.04") + D("101")
    assert pos.realized_pnl + unrealized_pnl(pos, D("99.5")) == cash + 2 * D("99.5")
    assert abs(pos.avg_cost - D("100.0233333333")) < D("1e-9")


@pytest.mark.parametrize(
    ("fills", "multiplier", "realized", "unrealized_at_12"),
    [
        ([("BUY", 2, "10"), ("SELL", 1, "11")], "100", "100", "200"),
        ([("SELL", 3, "10"), ("BUY", 1, "9")], "50", "50", "-200"),
        ([("BUY", 4, "10"), ("SELL", 6, "13")], "0.5", "6", "1"),
    ],
)
def test_apply_execution_multiplier_scales_realized_and_unrealized(
        fills: list[Fill], multiplier: str, realized: str, unrealized_at_12: str) -> None:
    pos = _run(fills, Position(symbol=SYMBOL, multiplier=D(multiplier)))
    assert pos.realized_pnl == D(realized)
    assert unrealized_pnl(pos, D("12")) == D(unrealized_at_12)


@pytest.mark.parametrize(
    ("fills", "commissions", "mark_price", "net"),
    [
        ([("BUY", 100, "10", "1.00")], "1.00", "10", "-1.00"),
        ([("BUY", 100, "10", "1.00"), ("SELL", 100, "11", "1.05")], "2.05", "11", "97.95"),
        ([("SELL", 50, "20", "0.35"), ("SELL", 50, "20", "0.35"), ("BUY", 40, "19", "0.40")],
         "1.10", "18", "158.90"),
        ([("BUY", 100, "10", "0"), ("SELL", 100, "10", "-0.20")], "-0.20", "10", "0.20"),  # rebate
    ],
)
def test_apply_execution_commissions_accumulate_and_reduce_net_pnl(
        fills: list[tuple[str, int, str, str]], commissions: str, mark_price: str, net: str) -> None:
    pos = Position(symbol=SYMBOL)
    for i, (side, qty, price, commission) in enumerate(fills):
        pos = apply_execution(pos, _exec(side, qty, price, exec_id=f"c{i}", commission=commission))
    assert pos.commissions == D(commissions)
    assert net_pnl(pos, D(mark_price)) == D(net)
    # the average cost never absorbs commissions
    assert pos.avg_cost in (D(0), D(fills[0][2]))


def test_a_late_commission_report_joins_its_fill_once_and_a_fill_that_had_one_takes_none() -> None:
    pos = apply_execution(Position(symbol=SYMBOL), _exec("BUY", 100, "10", exec_id="late", commission="0"))
    pos = apply_execution(pos, _exec("SELL", 40, "11", exec_id="paid", commission="1.5"))
    assert (pos.commissions, pos.commission_due) == (D("1.5"), ("late",))
    joined = apply_commission(pos, "late", D("2.25"))
    assert (joined.commissions, joined.commission_due) == (D("3.75"), ())
    assert net_pnl(joined, D(11)) == D(100) - D("3.75")
    assert apply_commission(joined, "late", D("2.25")) is joined  # a repeat adds nothing
    assert apply_commission(joined, "paid", D("1.5")) is joined   # its fill had it already
    assert apply_commission(joined, "unknown", D(1)) is joined
    with pytest.raises(InvalidExecution, match="finite"):
        apply_commission(pos, "late", D("NaN"))


def test_fills_waiting_for_a_commission_are_bounded_to_the_newest() -> None:
    pos = Position(symbol=SYMBOL)
    for i in range(COMMISSION_DUE_KEPT + 5):
        pos = apply_execution(pos, _exec("BUY", 1, "10", exec_id=f"z{i}", commission="0"))
    assert pos.commission_due == tuple(f"z{i}" for i in range(5, COMMISSION_DUE_KEPT + 5))
    assert apply_commission(pos, "z0", D(1)) is pos  # let go: IB may report zero for good


def test_apply_execution_repeated_exec_id_returns_position_unchanged() -> None:
    pos = _run([("BUY", 100, "10")])
    again = apply_execution(pos, _exec("BUY", 100, "10", exec_id="e0"))
    assert again == pos
    assert again.quantity == D(100)


@pytest.mark.parametrize(
    "execution",
    [
        _exec("BUY", 1, "10", exec_id="x1", symbol="MSFT"),
        _exec("BUY", 0, "10", exec_id="x2"),
        _exec("BUY", -5, "10", exec_id="x3"),
        _exec("BUY", 1, "-1", exec_id="x4"),
        _exec("BUY", 1, "NaN", exec_id="x5"),
        _exec("BUY", 1, "10", exec_id=""),
        _exec("BUY", 1, "10", exec_id="x7", commission="Infinity"),
    ],
    ids=["other-symbol", "zero-qty", "negative-qty", "negative-price", "nan-price", "no-exec-id",
         "infinite-commission"],
)
def test_apply_execution_invalid_execution_raises(execution: Execution) -> None:
    with pytest.raises(InvalidExecution):
        apply_execution(_long(), execution)


def test_apply_execution_sets_last_price_and_lifecycle_timestamps() -> None:
    pos = apply_execution(Position(symbol=SYMBOL), _exec("BUY", 10, "50", exec_id="a", ts_ns=1_000))
    assert (pos.last_price, pos.opened_ts_ns, held_ns(pos, 4_000)) == (D(50), 1_000, 3_000)
    pos = apply_execution(pos, _exec("BUY", 10, "52", exec_id="b", ts_ns=2_000))
    assert pos.opened_ts_ns == 1_000                    # an add does not restart the clock
    flipped = apply_execution(pos, _exec("SELL", 30, "55", exec_id="c", ts_ns=5_000))
    assert flipped.opened_ts_ns == 5_000                 # a flip is a new lifecycle
    closed = apply_execution(flipped, _exec("BUY", 10, "54", exec_id="d", ts_ns=6_000))
    assert (closed.opened_ts_ns, held_ns(closed, 9_000)) == (0, 0)


# ---------------------------------------------------------------- valuation


def test_unrealized_pnl_uses_given_price_else_last_mark() -> None:
    pos = _long(100, "10")
    assert unrealized_pnl(pos) == D(0)                   # last price is the fill price
    pos = mark(pos, D("10.50"))
    assert unrealized_pnl(pos) == D(50)
    assert unrealized_pnl(pos, D("9")) == D(-100)
    assert market_value(pos) == D("1050.00")
    assert market_value(_short(100, "10"), D("9")) == D(-900)


def test_unrealized_pnl_without_any_price_raises_but_flat_is_zero() -> None:
    pos = from_broker(SYMBOL, D(100), D(10))
    with pytest.raises(InvalidPosition):
        unrealized_pnl(pos)
    assert unrealized_pnl(Position(symbol=SYMBOL)) == D(0)
    assert market_value(Position(symbol=SYMBOL)) == D(0)


@pytest.mark.parametrize("price", [D(-1), D("NaN"), D("Infinity")])
def test_mark_invalid_price_raises(price: Decimal) -> None:
    with pytest.raises(InvalidPosition):
        mark(_long(), price)


# ---------------------------------------------------------------- broker state


@pytest.mark.parametrize(
    ("quantity", "avg_cost", "multiplier", "state", "expected_avg"),
    [
        ("100", "150.25", "1", S.OPEN, "150.25"),
        ("-20", "80", "1", S.OPEN, "80"),
        ("3", "250", "100", S.OPEN, "2.5"),                 # IB reports option avgCost per contract
        ("0", "0", "1", S.FLAT, "0"),
    ],
)
def test_from_broker_builds_position_from_reported_quantity_and_avg_cost(
        quantity: str, avg_cost: str, multiplier: str, state: PositionState, expected_avg: str) -> None:
    pos = from_broker(SYMBOL, D(quantity), D(avg_cost), multiplier=D(multiplier))
    assert (pos.quantity, pos.state, pos.avg_cost) == (D(quantity), state, D(expected_avg))
    assert (pos.realized_pnl, pos.commissions) == (D(0), D(0))


def test_from_broker_listed_exec_ids_are_not_applied_again() -> None:
    pos = from_broker(SYMBOL, D(100), D(10), exec_ids=frozenset({"e0"}))
    assert apply_execution(pos, _exec("BUY", 100, "10", exec_id="e0")) == pos
    closed = apply_execution(pos, _exec("SELL", 100, "12", exec_id="e1"))
    assert (closed.state, closed.realized_pnl) == (S.CLOSED, D(200))


@pytest.mark.parametrize(
    ("quantity", "avg_cost", "multiplier"),
    [("NaN", "10", "1"), ("10", "-1", "1"), ("10", "10", "0")],
)
def test_from_broker_invalid_report_raises(quantity: str, avg_cost: str, multiplier: str) -> None:
    with pytest.raises(InvalidPosition):
        from_broker(SYMBOL, D(quantity), D(avg_cost), multiplier=D(multiplier))


@pytest.mark.parametrize(
    "fields",
    [
        {"symbol": ""},
        {"symbol": SYMBOL, "quantity": D(1)},                          # FLAT with a quantity
        {"symbol": SYMBOL, "state": S.OPEN},                           # OPEN without one
        {"symbol": SYMBOL, "cost_basis": D(5)},
        {"symbol": SYMBOL, "multiplier": D(0)},
    ],
)
def test_position_inconsistent_fields_raise(fields: dict[str, object]) -> None:
    with pytest.raises(InvalidPosition):
        Position(**fields)  # type: ignore[arg-type]


# ---------------------------------------------------------------- lifecycle

_STATES: dict[PositionState, Callable[[], Position]] = {
    S.FLAT: lambda: Position(symbol=SYMBOL),
    S.OPENING: lambda: expect_entry(Position(symbol=SYMBOL)),
    S.OPEN: lambda: _long(),
    S.CLOSING: lambda: expect_exit(_long()),
    S.CLOSED: lambda: _run([("BUY", 100, "100"), ("SELL", 100, "101")]),
}

_COMMANDS: dict[str, Callable[[Position], Position]] = {
    "expect_entry": expect_entry,
    "cancel_entry": cancel_entry,
    "expect_exit": expect_exit,
    "cancel_exit": cancel_exit,
}

_ALLOWED = [
    (S.FLAT, "expect_entry", S.OPENING),
    (S.CLOSED, "expect_entry", S.OPENING),
    (S.OPENING, "expect_entry", S.OPENING),
    (S.OPENING, "cancel_entry", S.FLAT),
    (S.OPEN, "cancel_entry", S.OPEN),
    (S.CLOSING, "cancel_entry", S.CLOSING),
    (S.CLOSED, "cancel_entry", S.CLOSED),
    (S.OPEN, "expect_exit", S.CLOSING),
    (S.CLOSING, "expect_exit", S.CLOSING),
    (S.CLOSING, "cancel_exit", S.OPEN),
    (S.OPEN, "cancel_exit", S.OPEN),
    (S.CLOSED, "cancel_exit", S.CLOSED),
]

_FORBIDDEN = [
    (S.OPEN, "expect_entry"),
    (S.CLOSING, "expect_entry"),
    (S.FLAT, "cancel_entry"),
    (S.FLAT, "expect_exit"),
    (S.OPENING, "expect_exit"),
    (S.CLOSED, "expect_exit"),
    (S.FLAT, "cancel_exit"),
    (S.OPENING, "cancel_exit"),
]


def test_lifecycle_tables_cover_every_state_and_command() -> None:
    pairs = {(s, c) for s, c, _ in _ALLOWED} | set(_FORBIDDEN)
    assert pairs == {(s, c) for s in S for c in _COMMANDS}


@pytest.mark.parametrize(("start", "command", "expected"), _ALLOWED)
def test_lifecycle_allowed_command_moves_state(
        start: PositionState, command: str, expected: PositionState) -> None:
    pos = _STATES[start]()
    assert pos.state is start
    moved = _COMMANDS[command](pos)
    assert moved.state is expected
    assert moved.quantity == pos.quantity


@pytest.mark.parametrize(("start", "command"), _FORBIDDEN)
def test_lifecycle_forbidden_command_raises(start: PositionState, command: str) -> None:
    with pytest.raises(InvalidPosition):
        _COMMANDS[command](_STATES[start]())


@pytest.mark.parametrize(
    ("start", "fill", "expected"),
    [
        (S.FLAT, ("BUY", 10, "100"), S.OPEN),
        (S.OPENING, ("BUY", 10, "100"), S.OPEN),
        (S.CLOSED, ("SELL", 10, "100"), S.OPEN),
        (S.OPEN, ("BUY", 10, "100"), S.OPEN),
        (S.OPEN, ("SELL", 10, "100"), S.OPEN),
        (S.OPEN, ("SELL", 100, "100"), S.CLOSED),
        (S.OPEN, ("SELL", 150, "100"), S.OPEN),
        (S.CLOSING, ("SELL", 40, "100"), S.CLOSING),
        (S.CLOSING, ("SELL", 100, "100"), S.CLOSED),
        (S.CLOSING, ("SELL", 130, "100"), S.OPEN),
    ],
)
def test_lifecycle_fill_moves_state(start: PositionState, fill: Fill, expected: PositionState) -> None:
    pos = _run([fill], _STATES[start](), start=100)
    assert pos.state is expected


def test_lifecycle_table_allows_every_fill_where_it_can_occur() -> None:
    for state in (S.FLAT, S.OPENING, S.CLOSED):
        assert (state, Trigger.FILL_OPENS) in NEXT
    for state in (S.OPEN, S.CLOSING):
        for trigger in (Trigger.FILL_RESIZES, Trigger.FILL_CLOSES, Trigger.FILL_FLIPS):
            assert (state, trigger) in NEXT


def test_lifecycle_late_fill_after_cancelled_entry_opens_position() -> None:
    pos = cancel_entry(expect_entry(Position(symbol=SYMBOL)))
    assert pos.state is S.FLAT
    assert _run([("BUY", 5, "10")], pos).state is S.OPEN


# ---------------------------------------------------------------- protective levels


def test_levels_clear_when_position_closes() -> None:
    pos = set_trailing(set_take_profit(set_stop_loss(_long(), D(95)), D(110)), amount=D(2))
    closed = _run([("SELL", 100, "101")], pos, start=10)
    assert closed.state is S.CLOSED
    assert (closed.stop_loss, closed.take_profit, closed.trail_amount, closed.trailing_stop,
            closed.trail_extreme) == (None, None, None, None, None)


def test_levels_clear_when_position_flips() -> None:
    pos = set_take_profit(set_stop_loss(_long(), D(95)), D(110))
    flipped = _run([("SELL", 150, "101")], pos, start=10)
    assert (flipped.quantity, flipped.stop_loss, flipped.take_profit) == (D(-50), None, None)


def test_levels_survive_partial_close() -> None:
    pos = set_stop_loss(_long(), D(95))
    assert _run([("SELL", 50, "101")], pos, start=10).stop_loss == D(95)


@pytest.mark.parametrize(
    ("position", "setter", "level"),
    [
        (_long(last="100"), set_stop_loss, "100"),           # at the price: would trigger at once
        (_long(last="100"), set_stop_loss, "101"),
        (_long(last="90"), set_stop_loss, "95"),             # below entry, but above the price
        (_short(last="100"), set_stop_loss, "99"),
        (_long(last="100"), set_take_profit, "100"),
        (_long(last="100"), set_take_profit, "99"),
        (_short(last="100"), set_take_profit, "101"),
        (Position(symbol=SYMBOL), set_stop_loss, "95"),      # flat: no direction
        (_long(last="100"), set_stop_loss, "0"),
        (_long(last="100"), set_stop_loss, "-5"),
        (_long(last="100"), set_stop_loss, "NaN"),
        (set_take_profit(_long(last="100"), D(104)), lambda p, lv: set_stop_loss(mark(p, D(106)), lv), "104"),
        (set_stop_loss(_long(last="100"), D(98)), lambda p, lv: set_take_profit(mark(p, D(97)), lv), "98"),
    ],
    ids=["long-stop-at-price", "long-stop-above-price", "long-stop-above-price-below-entry",
         "short-stop-below-price", "long-tp-at-price", "long-tp-below-price",
         "short-tp-above-price", "flat", "zero", "negative", "nan", "stop-beyond-tp",
         "tp-inside-stop"],
)
def test_set_level_on_wrong_side_raises(
        position: Position, setter: Callable[[Position, Decimal], Position], level: str) -> None:
    with pytest.raises(InvalidPosition):
        setter(position, D(level))


@pytest.mark.parametrize(
    ("position", "stop", "take_profit"),
    [
        (_long(price="100", last="100"), "95", "110"),
        (_long(price="100", last="105"), "102", "110"),       # stop above entry locks in profit
        (_short(price="100", last="100"), "105", "90"),
        (from_broker(SYMBOL, D(100), D(100)), "99", "101"),   # no mark yet: the avg cost is the reference
    ],
)
def test_set_levels_on_protective_side_are_stored(position: Position, stop: str, take_profit: str) -> None:
    pos = set_take_profit(set_stop_loss(position, D(stop)), D(take_profit))
    assert (pos.stop_loss, pos.take_profit) == (D(stop), D(take_profit))
    cleared = set_take_profit(set_stop_loss(pos, None), None)
    assert (cleared.stop_loss, cleared.take_profit) == (None, None)


@pytest.mark.parametrize(
    ("position", "kwargs", "prices", "stops"),
    [
        (_long(last="100"), {"amount": D(2)}, ["101", "100", "103", "99", "103"],
         ["99", "99", "101", "101", "101"]),
        (_long(last="100"), {"percent": D(10)}, ["110", "105", "120"], ["99.0", "99.0", "108.0"]),
        (_short(last="100"), {"amount": D(2)}, ["99", "101", "95", "96"], ["101", "101", "97", "97"]),
        (_short(last="100"), {"percent": D(5)}, ["90", "95", "80"], ["94.50", "94.50", "84.00"]),
    ],
    ids=["long-amount", "long-percent", "short-amount", "short-percent"],
)
def test_update_trailing_ratchets_only_in_protective_direction(
        position: Position, kwargs: dict[str, Decimal], prices: list[str], stops: list[str]) -> None:
    pos = set_trailing(position, **kwargs)
    seen = []
    for price in prices:
        pos = update_trailing(pos, D(price))
        seen.append(pos.trailing_stop)
    assert seen == [D(s) for s in stops]


def test_set_trailing_starts_from_reference_price() -> None:
    pos = set_trailing(_long(last="100"), amount=D("2.5"))
    assert (pos.trail_extreme, pos.trailing_stop) == (D(100), D("97.5"))
    pos = set_trailing(_short(last="100"), percent=D(1))
    assert (pos.trail_extreme, pos.trailing_stop) == (D(100), D(101))


@pytest.mark.parametrize(
    ("position", "kwargs"),
    [
        (_long(), {}),
        (_long(), {"amount": D(1), "percent": D(1)}),
        (_long(), {"amount": D(0)}),
        (_long(), {"percent": D(-1)}),
        (_long(), {"percent": D(100)}),
        (_long(price="1", last="1"), {"amount": D(1)}),      # no positive stop left
        (Position(symbol=SYMBOL), {"amount": D(1)}),
    ],
)
def test_set_trailing_invalid_width_raises(position: Position, kwargs: dict[str, Decimal]) -> None:
    with pytest.raises(InvalidPosition):
        set_trailing(position, **kwargs)


def test_update_trailing_without_trailing_stop_returns_position_unchanged() -> None:
    pos = _long()
    assert update_trailing(pos, D(200)) == pos


_LONG_LEVELS = set_take_profit(set_stop_loss(_long(price="100", last="100"), D(95)), D(110))
_SHORT_LEVELS = set_take_profit(set_stop_loss(_short(price="100", last="100"), D(105)), D(90))
_LONG_TRAIL = set_stop_loss(update_trailing(set_trailing(_long(last="100"), amount=D(3)), D(104)), D(95))


@pytest.mark.parametrize(
    ("position", "price", "reason"),
    [
        (_LONG_LEVELS, "100", None),
        (_LONG_LEVELS, "95.01", None),
        (_LONG_LEVELS, "95", ExitReason.STOP_LOSS),
        (_LONG_LEVELS, "80", ExitReason.STOP_LOSS),
        (_LONG_LEVELS, "109.99", None),
        (_LONG_LEVELS, "110", ExitReason.TAKE_PROFIT),
        (_SHORT_LEVELS, "104.99", None),
        (_SHORT_LEVELS, "105", ExitReason.STOP_LOSS),
        (_SHORT_LEVELS, "90", ExitReason.TAKE_PROFIT),
        (_SHORT_LEVELS, "85", ExitReason.TAKE_PROFIT),
        (_LONG_TRAIL, "101.01", None),
        (_LONG_TRAIL, "101", ExitReason.TRAILING_STOP),
        (_LONG_TRAIL, "90", ExitReason.TRAILING_STOP),        # both hit: the trail (101) is tighter
        (Position(symbol=SYMBOL), "1", None),
        (_long(), "1", None),                                  # no levels set
    ],
)
def test_triggered_exit_reports_level_hit_at_price(
        position: Position, price: str, reason: ExitReason | None) -> None:
    assert triggered_exit(position, D(price)) is reason


def test_triggered_exit_stop_loss_wins_when_tighter_than_trail() -> None:
    pos = set_stop_loss(set_trailing(_long(last="100"), amount=D(10)), D(95))
    assert triggered_exit(pos, D(85)) is ExitReason.STOP_LOSS


@pytest.mark.parametrize(
    ("position", "offset", "expected"),
    [
        (_long(price="100", last="105"), "0", "100"),
        (_long(price="100", last="105"), "0.5", "100.5"),
        (set_stop_loss(_long(price="100", last="105"), D(102)), "0", "102"),  # already tighter: kept
        (set_stop_loss(_long(price="100", last="105"), D(90)), "0", "100"),
        (_short(price="100", last="95"), "0", "100"),
        (_short(price="100", last="95"), "0.25", "99.75"),
        (set_stop_loss(_short(price="100", last="95"), D(97)), "0", "97"),
        (_run([("BUY", 100, "10"), ("BUY", 100, "12"), ("SELL", 1, "13")]), "0", "11"),
    ],
)
def test_move_stop_to_break_even_sets_stop_at_avg_cost_never_loosening(
        position: Position, offset: str, expected: str) -> None:
    assert move_stop_to_break_even(position, offset=D(offset)).stop_loss == D(expected)


@pytest.mark.parametrize(
    "position",
    [_long(price="100", last="99"), _long(price="100", last="100"), _short(price="100", last="101"),
     Position(symbol=SYMBOL)],
)
def test_move_stop_to_break_even_not_in_profit_raises(position: Position) -> None:
    with pytest.raises(InvalidPosition):
        move_stop_to_break_even(position)


# ---------------------------------------------------------------- properties

_prices = st.integers(min_value=1, max_value=100_000).map(lambda n: D(n) / 100)
_quantities = st.one_of(
    st.integers(min_value=1, max_value=1_000).map(D),
    st.integers(min_value=1, max_value=100_000).map(lambda n: D(n) / 100),
)
_commissions = st.integers(min_value=0, max_value=1_000).map(lambda n: D(n) / 100)
_fills = st.lists(
    st.tuples(st.sampled_from([Side.BUY, Side.SELL]), _quantities, _prices, _commissions),
    min_size=1, max_size=30,
)
_multipliers = st.sampled_from([D(1), D(100), D("0.5")])


def _executions(fills: list[tuple[Side, Decimal, Decimal, Decimal]]) -> list[Execution]:
    return [
        Execution(exec_id=f"p{i}", order_id=i, order_ref="", symbol=SYMBOL, side=side,
                  quantity=qty, price=price, commission=commission, ts_ns=i)
        for i, (side, qty, price, commission) in enumerate(fills)
    ]


@given(fills=_fills, mark_price=_prices, multiplier=_multipliers)
def test_property_realized_plus_unrealized_equals_cash_flows_plus_value(
        fills: list[tuple[Side, Decimal, Decimal, Decimal]], mark_price: Decimal,
        multiplier: Decimal) -> None:
    pos = Position(symbol=SYMBOL, multiplier=multiplier)
    for execution in _executions(fills):
        pos = apply_execution(pos, execution)
    cash = sum((-side.sign * qty * price for side, qty, price, _ in fills), D(0))
    quantity = sum((side.sign * qty for side, qty, _, _ in fills), D(0))
    assert pos.quantity == quantity
    assert pos.realized_pnl + unrealized_pnl(pos, mark_price) == (cash + quantity * mark_price) * multiplier
    assert pos.commissions == sum((c for *_, c in fills), D(0))
    assert net_pnl(pos, mark_price) == (cash + quantity * mark_price) * multiplier - pos.commissions
    assert (pos.quantity != 0) == (pos.state in (S.OPEN, S.CLOSING))


@given(fills=_fills, data=st.data())
def test_property_duplicates_interleaved_give_same_position(
        fills: list[tuple[Side, Decimal, Decimal, Decimal]], data: st.DataObject) -> None:
    executions = _executions(fills)
    clean = Position(symbol=SYMBOL)
    for execution in executions:
        clean = apply_execution(clean, execution)
    noisy = Position(symbol=SYMBOL)
    for i, execution in enumerate(executions):
        noisy = apply_execution(noisy, execution)
        repeats = data.draw(st.lists(st.integers(min_value=0, max_value=i), max_size=3))
        for j in repeats:
            noisy = apply_execution(noisy, executions[j])
    assert noisy == clean


@given(
    start=_prices,
    prices=st.lists(_prices, min_size=1, max_size=30),
    short=st.booleans(),
    width=st.one_of(
        st.integers(min_value=1, max_value=50).map(lambda n: ("percent", D(n))),
        st.integers(min_value=1, max_value=100).map(lambda n: ("amount", D(n) / 100)),
    ),
)
def test_property_trailing_stop_never_loosens(
        start: Decimal, prices: list[Decimal], short: bool, width: tuple[str, Decimal]) -> None:
    pos = _short(price=str(start)) if short else _long(price=str(start))
    kind, value = width
    assume(short or kind == "percent" or value < start)
    pos = set_trailing(pos, **{kind: value})
    for price in prices:
        before = pos.trailing_stop
        pos = update_trailing(pos, price)
        assert before is not None and pos.trailing_stop is not None
        assert (pos.trailing_stop <= before) if short else (pos.trailing_stop >= before)


# ---------------------------------------------------------------- exec floor


@pytest.mark.parametrize(("applied", "journaled", "floor", "kept"), [
    ({"a", "b"}, [("a", 1), ("b", 2)], 2, set()),            # every journaled fill applied: all fold in
    ({"a", "c"}, [("a", 1), ("b", 2), ("c", 3)], 1, {"c"}),  # b still on its way: the floor stops below it
    ({"x"}, [], 0, {"x"}),                                   # nothing journaled (no journal row yet)
    ({"a"}, [("z", 1), ("a", 2)], 0, {"a"}),                 # the first journaled fill not applied yet
])
def test_settle_fills_raises_the_floor_over_the_applied_prefix_only(
        applied: set[str], journaled: list[tuple[str, int]], floor: int, kept: set[str]) -> None:
    position = Position(symbol=SYMBOL, exec_ids=frozenset(applied))
    settled = settle_fills(position, journaled)
    assert (settled.exec_floor, settled.exec_ids) == (floor, frozenset(kept))


def test_settle_fills_ignores_rows_at_or_below_the_floor_and_keeps_going_from_it() -> None:
    position = Position(symbol=SYMBOL, exec_ids=frozenset({"d"}), exec_floor=3)
    settled = settle_fills(position, [("a", 1), ("c", 3), ("d", 4)])
    assert (settled.exec_floor, settled.exec_ids) == (4, frozenset())
    assert settle_fills(settled, [("d", 4)]) is settled


@given(st.lists(st.booleans(), min_size=1, max_size=30))
def test_settled_position_holds_only_fills_above_its_floor_and_the_floor_never_passes_a_missing_one(
        delivered: list[bool]) -> None:
    rows = [(f"e{i}", i + 1) for i in range(len(delivered))]
    position = Position(symbol=SYMBOL, exec_ids=frozenset(e for (e, _), got in zip(rows, delivered) if got))
    settled = settle_fills(position, rows)
    first_missing = next((seq for (_, seq), got in zip(rows, delivered) if not got), None)
    assert settled.exec_floor == (len(rows) if first_missing is None else first_missing - 1)
    assert settled.exec_ids == frozenset(e for e, seq in rows if seq > settled.exec_floor and delivered[seq - 1])


def test_with_unapplied_fills_counts_only_the_journaled_fills_the_position_has_not_applied() -> None:
    held = Position(symbol="AAPL", quantity=Decimal(53), cost_basis=Decimal(5300), state=PositionState.OPEN,
                    exec_ids=frozenset({"e3"}), exec_floor=2)
    journaled = [("e1", 1, Decimal(53)), ("e2", 2, Decimal(-10)),  # under the floor: counted already
                 ("e3", 3, Decimal(10)),                           # applied (in exec_ids)
                 ("e4", 4, Decimal(-53))]                          # not heard of yet
    assert with_unapplied_fills(held, journaled) == 0
    assert with_unapplied_fills(held, journaled[:3]) == 53
    assert with_unapplied_fills(held, []) == 53
