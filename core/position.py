"""Positions for one symbol: fills, average cost, P&L, lifecycle and protective exit levels."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from decimal import Decimal
from enum import Enum
from typing import Any, Final

from core.canonical import canonical_reduce
from core.errors import InvalidExecution, InvalidPosition
from core.types import ZERO, Execution

ONE: Final = Decimal(1)
_HUNDRED: Final = Decimal(100)
# A partial close releases cost_basis × closed / open, which rarely divides evenly. The share is
# rounded to this quantum so every later addition stays exact; realized and unrealized P&L move
# by the same rounded amount, so realized + unrealized never drifts from the cash flows.
_COST_QUANTUM: Final = Decimal("1e-10")


class PositionState(str, Enum):
    FLAT = "FLAT"        # never opened, or the entry was cancelled before anything filled
    OPENING = "OPENING"  # an entry order is working, nothing filled yet
    OPEN = "OPEN"
    CLOSING = "CLOSING"  # an exit order is working; resting protective stops do not count
    CLOSED = "CLOSED"    # back to flat after being open; the next entry starts a new lifecycle


class Trigger(str, Enum):
    EXPECT_ENTRY = "EXPECT_ENTRY"
    ENTRY_CANCELLED = "ENTRY_CANCELLED"
    EXPECT_EXIT = "EXPECT_EXIT"
    EXIT_CANCELLED = "EXIT_CANCELLED"
    FILL_OPENS = "FILL_OPENS"      # zero -> non-zero
    FILL_RESIZES = "FILL_RESIZES"  # non-zero -> non-zero in the same direction (add, partial close)
    FILL_CLOSES = "FILL_CLOSES"    # non-zero -> zero
    FILL_FLIPS = "FILL_FLIPS"      # through zero: closes one direction and opens the other


class ExitReason(str, Enum):
    STOP_LOSS = "STOP_LOSS"
    TAKE_PROFIT = "TAKE_PROFIT"
    TRAILING_STOP = "TRAILING_STOP"


_S = PositionState
_T = Trigger

# The lifecycle, read top to bottom. A pair missing from this table raises InvalidPosition.
# Fills are the broker's truth: every fill trigger is allowed from every state it can occur in
# (quantity is zero exactly in FLAT, OPENING and CLOSED), so a fill is never refused here.
NEXT: Final[Mapping[tuple[PositionState, Trigger], PositionState]] = {
    (_S.FLAT, _T.EXPECT_ENTRY): _S.OPENING,
    (_S.CLOSED, _T.EXPECT_ENTRY): _S.OPENING,         # a new lifecycle on the same symbol
    (_S.OPENING, _T.EXPECT_ENTRY): _S.OPENING,        # repeat, or a second entry leg
    (_S.OPENING, _T.ENTRY_CANCELLED): _S.FLAT,
    (_S.OPEN, _T.ENTRY_CANCELLED): _S.OPEN,           # part of the entry filled before the cancel took
    (_S.CLOSING, _T.ENTRY_CANCELLED): _S.CLOSING,     # same, with an exit already working
    (_S.CLOSED, _T.ENTRY_CANCELLED): _S.CLOSED,       # the partial entry was stopped out before the cancel
    (_S.OPEN, _T.EXPECT_EXIT): _S.CLOSING,
    (_S.CLOSING, _T.EXPECT_EXIT): _S.CLOSING,         # repeat, or the exit was replaced
    (_S.CLOSING, _T.EXIT_CANCELLED): _S.OPEN,         # possibly after a partial exit fill
    (_S.OPEN, _T.EXIT_CANCELLED): _S.OPEN,            # the exit overfilled through zero before its rest was cancelled
    (_S.CLOSED, _T.EXIT_CANCELLED): _S.CLOSED,        # the exit filled before our cancel took: IB reports the fill after the ack
    (_S.FLAT, _T.FILL_OPENS): _S.OPEN,                # a fill nobody expected (a manual trade in TWS) still counts
    (_S.OPENING, _T.FILL_OPENS): _S.OPEN,
    (_S.CLOSED, _T.FILL_OPENS): _S.OPEN,              # a new lifecycle
    (_S.OPEN, _T.FILL_RESIZES): _S.OPEN,
    (_S.CLOSING, _T.FILL_RESIZES): _S.CLOSING,        # a partial exit fill: the rest is still working
    (_S.OPEN, _T.FILL_CLOSES): _S.CLOSED,             # a resting stop or take-profit filled
    (_S.CLOSING, _T.FILL_CLOSES): _S.CLOSED,
    (_S.OPEN, _T.FILL_FLIPS): _S.OPEN,                # a new lifecycle in the other direction
    (_S.CLOSING, _T.FILL_FLIPS): _S.OPEN,             # the exit overfilled
}

_HOLDING: Final = frozenset({PositionState.OPEN, PositionState.CLOSING})

_NO_LEVELS: Final[Mapping[str, None]] = {
    "stop_loss": None,
    "take_profit": None,
    "trail_amount": None,
    "trail_percent": None,
    "trail_extreme": None,
    "trailing_stop": None,
}

# Fills applied without their commission that a late report may still join (IB may report 0 for
# good, so the oldest are let go).
COMMISSION_DUE_KEPT: Final = 64


@dataclass(frozen=True, slots=True, kw_only=True)
class Position:
    """One symbol's position; the average cost excludes commissions, which are tracked apart.

    `cost_basis` is signed quantity × average cost (price units, before the multiplier); it is
    stored instead of the average so P&L stays exact; `avg_cost` derives it. `realized_pnl` is
    gross (money, multiplier applied); `commissions` is what was paid; `net_pnl` subtracts it.
    Realized P&L and commissions accumulate over every lifecycle of the value; `opened_ts_ns`
    and the protective levels belong to the current lifecycle and clear when it goes flat.
    `trail_extreme` is the high-water mark of a long (low-water mark of a short) since the
    trailing stop was set; `trailing_stop` is the current trailing level.
    `exec_ids` are the fills applied that the journal's `exec_floor` does not cover yet: every
    journaled fill of the symbol with a sequence number up to the floor is applied (see
    `settle_fills`), so the set stays small however long the position trades.
    `commission_due` are the newest fills applied before their commission report (IB sends it
    apart, and it can lag the fill): `apply_commission` adds a late report once, by exec id.
    """

    symbol: str
    quantity: Decimal = ZERO
    cost_basis: Decimal = ZERO
    realized_pnl: Decimal = ZERO
    commissions: Decimal = ZERO
    state: PositionState = PositionState.FLAT
    stop_loss: Decimal | None = None
    take_profit: Decimal | None = None
    trail_amount: Decimal | None = None
    trail_percent: Decimal | None = None
    trail_extreme: Decimal | None = None
    trailing_stop: Decimal | None = None
    exec_ids: frozenset[str] = field(default_factory=frozenset)
    exec_floor: int = 0
    commission_due: tuple[str, ...] = ()
    last_price: Decimal | None = None
    opened_ts_ns: int = 0
    multiplier: Decimal = ONE

    def __reduce__(self) -> tuple[Any, ...]:
        # Sets sorted: the same journal bytes under any PYTHONHASHSEED (core/canonical.py).
        return canonical_reduce(self)

    def __post_init__(self) -> None:
        if not self.symbol:
            raise InvalidPosition("a position needs a symbol")
        if not self.multiplier.is_finite() or self.multiplier <= 0:
            raise InvalidPosition(f"{self.symbol}: multiplier must be positive, got {self.multiplier}")
        if (self.quantity != 0) != (self.state in _HOLDING):
            raise InvalidPosition(
                f"{self.symbol}: state {self.state.value} does not fit quantity {self.quantity}")
        if self.quantity == 0 and self.cost_basis != 0:
            raise InvalidPosition(f"{self.symbol}: a flat position has no cost basis")

    @property
    def avg_cost(self) -> Decimal:
        """Return the average cost per unit, commissions excluded (zero when flat)."""
        return self.cost_basis / self.quantity if self.quantity else ZERO

    @property
    def is_flat(self) -> bool:
        return self.quantity == 0

    @property
    def is_long(self) -> bool:
        return self.quantity > 0

    @property
    def is_short(self) -> bool:
        return self.quantity < 0


# ---------------------------------------------------------------- lifecycle


def _move(position: Position, trigger: Trigger) -> PositionState:
    to = NEXT.get((position.state, trigger))
    if to is None:
        raise InvalidPosition(
            f"{position.symbol}: {trigger.value} is not allowed in state {position.state.value}")
    return to


def expect_entry(position: Position) -> Position:
    """Return the position waiting for its entry fill (OPENING); only from FLAT or CLOSED."""
    return replace(position, state=_move(position, Trigger.EXPECT_ENTRY))


def cancel_entry(position: Position) -> Position:
    """Return the position after the entry order ended unfilled or partly filled."""
    return replace(position, state=_move(position, Trigger.ENTRY_CANCELLED))


def expect_exit(position: Position) -> Position:
    """Return the position with an exit order working (CLOSING); only from OPEN."""
    return replace(position, state=_move(position, Trigger.EXPECT_EXIT))


def cancel_exit(position: Position) -> Position:
    """Return the position after the exit order ended without closing it."""
    return replace(position, state=_move(position, Trigger.EXIT_CANCELLED))


# ---------------------------------------------------------------- fills


def _direction(quantity: Decimal) -> int:
    return 1 if quantity > 0 else -1 if quantity < 0 else 0


def _classify(old: Decimal, new: Decimal) -> Trigger:
    if old == 0:
        return Trigger.FILL_OPENS
    if new == 0:
        return Trigger.FILL_CLOSES
    if _direction(old) == _direction(new):
        return Trigger.FILL_RESIZES
    return Trigger.FILL_FLIPS


def share(cost: Decimal, part: Decimal, whole: Decimal) -> Decimal:
    """Return the part/whole share of `cost` (all of it when part == whole), rounded past 10 decimals."""
    if part == whole:
        return cost
    share = cost * part / whole
    exponent = share.as_tuple().exponent
    if isinstance(exponent, int) and exponent < -10:
        share = share.quantize(_COST_QUANTUM)
    return share


def _check_execution(position: Position, execution: Execution) -> None:
    if execution.symbol != position.symbol:
        raise InvalidExecution(
            f"execution {execution.exec_id} is for {execution.symbol}, not {position.symbol}")
    if not execution.exec_id:
        raise InvalidExecution(f"{position.symbol}: an execution needs an exec id")
    if not execution.quantity.is_finite() or execution.quantity <= 0:
        raise InvalidExecution(
            f"execution {execution.exec_id}: quantity must be positive, got {execution.quantity}")
    # Zero is a real fill price: options that expire worthless are booked at 0.
    if not execution.price.is_finite() or execution.price < 0:
        raise InvalidExecution(
            f"execution {execution.exec_id}: price must be finite and not negative, got {execution.price}")
    if not execution.commission.is_finite():
        raise InvalidExecution(
            f"execution {execution.exec_id}: commission must be finite, got {execution.commission}")


def apply_execution(position: Position, execution: Execution) -> Position:
    """Return the position after one fill; an exec id already applied changes nothing.

    Adding moves the weighted average cost; reducing realizes (price − avg) × qty × direction;
    a fill through zero realizes on the closed part and opens the rest at the fill price.
    The fill price becomes the last price. Levels clear when the position closes or flips.
    """
    _check_execution(position, execution)
    if execution.exec_id in position.exec_ids:
        return position
    signed = execution.quantity * execution.side.sign
    old = position.quantity
    new = old + signed
    trigger = _classify(old, new)
    state = _move(position, trigger)
    cost = position.cost_basis
    realized = position.realized_pnl
    if trigger is Trigger.FILL_OPENS or _direction(signed) == _direction(old):
        cost += signed * execution.price
    else:
        closed = min(abs(signed), abs(old))
        released = share(cost, closed, abs(old))
        realized += (_direction(old) * closed * execution.price - released) * position.multiplier
        cost -= released
        if trigger is Trigger.FILL_FLIPS:
            cost = new * execution.price
    changes: dict[str, object] = {}
    if trigger in (Trigger.FILL_CLOSES, Trigger.FILL_FLIPS):
        changes.update(_NO_LEVELS)
    if trigger in (Trigger.FILL_OPENS, Trigger.FILL_FLIPS):
        changes["opened_ts_ns"] = execution.ts_ns
    elif trigger is Trigger.FILL_CLOSES:
        changes["opened_ts_ns"] = 0
    return replace(
        position,
        quantity=new,
        cost_basis=cost,
        realized_pnl=realized,
        commissions=position.commissions + execution.commission,
        state=state,
        exec_ids=position.exec_ids | {execution.exec_id},
        commission_due=(position.commission_due if execution.commission
                        else (position.commission_due + (execution.exec_id,))[-COMMISSION_DUE_KEPT:]),
        last_price=execution.price,
        **changes,  # type: ignore[arg-type]
    )


def apply_commission(position: Position, exec_id: str, commission: Decimal) -> Position:
    """Return the position with a late commission report added; anything but a fill still due changes nothing.

    A report for a fill applied with its commission, a repeat, or one older than the last
    `COMMISSION_DUE_KEPT` fills without one returns `position` itself.
    """
    if not commission.is_finite():
        raise InvalidExecution(f"execution {exec_id}: commission must be finite, got {commission}")
    if exec_id not in position.commission_due:
        return position
    return replace(position, commissions=position.commissions + commission,
                   commission_due=tuple(e for e in position.commission_due if e != exec_id))


def with_unapplied_fills(position: Position, journaled: Iterable[tuple[str, int, Decimal]]) -> Decimal:
    """Return the position's quantity counting the journaled fills it has not applied yet.

    `journaled` is the symbol's journaled fills as (exec id, sequence number, signed quantity); the
    ones under the position's floor or among its `exec_ids` are in its quantity already. A fill is
    journaled before the position hears of it, so this is the broker's count as far as we know it.
    """
    quantity = position.quantity
    for exec_id, seq, signed in journaled:
        if seq > position.exec_floor and exec_id not in position.exec_ids:
            quantity += signed
    return quantity


def settle_fills(position: Position, journaled: Iterable[tuple[str, int]]) -> Position:
    """Return the position with its exec floor raised over the applied prefix of `journaled`.

    `journaled` is the symbol's journaled fills above the floor as (exec id, sequence number), in
    sequence order. The floor moves up while each one is in `exec_ids`, and those ids leave the set;
    a fill journaled but not applied yet (still on its way) stops the floor below it.
    """
    floor, settled = position.exec_floor, []
    for exec_id, seq in journaled:
        if seq <= floor:
            continue
        if exec_id not in position.exec_ids:
            break
        floor = seq
        settled.append(exec_id)
    if not settled:
        return position
    return replace(position, exec_ids=position.exec_ids.difference(settled), exec_floor=floor)


def from_broker(
    symbol: str,
    quantity: Decimal,
    avg_cost: Decimal,
    *,
    multiplier: Decimal = ONE,
    last_price: Decimal | None = None,
    exec_ids: frozenset[str] = frozenset(),
    opened_ts_ns: int = 0,
) -> Position:
    """Return a position built from IB's `position` report (reconciliation).

    `avg_cost` is IB's avgCost: per contract (price × multiplier) and with commissions folded
    in, which IB does not report apart, so the result has no separate commissions.
    `exec_ids` names fills already contained in the report so they are not applied again.
    """
    if not quantity.is_finite():
        raise InvalidPosition(f"{symbol}: broker quantity must be finite, got {quantity}")
    if not avg_cost.is_finite() or avg_cost < 0:
        raise InvalidPosition(f"{symbol}: broker avg cost must be finite and not negative, got {avg_cost}")
    if not multiplier.is_finite() or multiplier <= 0:
        raise InvalidPosition(f"{symbol}: multiplier must be positive, got {multiplier}")
    if last_price is not None:
        _check_price(symbol, last_price, "last price")
    return Position(
        symbol=symbol,
        quantity=quantity,
        cost_basis=quantity * avg_cost / multiplier if quantity else ZERO,
        state=PositionState.OPEN if quantity else PositionState.FLAT,
        exec_ids=frozenset(exec_ids),
        last_price=last_price,
        opened_ts_ns=opened_ts_ns if quantity else 0,
        multiplier=multiplier,
    )


# ---------------------------------------------------------------- valuation


def _check_price(symbol: str, price: Decimal, what: str) -> None:
    if not price.is_finite() or price < 0:
        raise InvalidPosition(f"{symbol}: {what} must be finite and not negative, got {price}")


def _price_or_last(position: Position, price: Decimal | None) -> Decimal:
    if price is not None:
        _check_price(position.symbol, price, "price")
        return price
    if position.last_price is None:
        raise InvalidPosition(f"{position.symbol}: no price given and none marked yet")
    return position.last_price


def mark(position: Position, price: Decimal) -> Position:
    """Return the position with `price` as its last known market price."""
    _check_price(position.symbol, price, "mark price")
    return replace(position, last_price=price)


def unrealized_pnl(position: Position, price: Decimal | None = None) -> Decimal:
    """Return the open quantity's gross P&L at `price` (default: the last price); zero when flat."""
    if position.quantity == 0:
        return ZERO
    at = _price_or_last(position, price)
    return (position.quantity * at - position.cost_basis) * position.multiplier


def net_pnl(position: Position, price: Decimal | None = None) -> Decimal:
    """Return realized + unrealized P&L minus all commissions paid."""
    return position.realized_pnl + unrealized_pnl(position, price) - position.commissions


def market_value(position: Position, price: Decimal | None = None) -> Decimal:
    """Return signed quantity × price × multiplier (default price: the last price); zero when flat."""
    if position.quantity == 0:
        return ZERO
    return position.quantity * _price_or_last(position, price) * position.multiplier


def held_ns(position: Position, now_ns: int) -> int:
    """Return how long the current lifecycle has been open at `now_ns`; zero when flat."""
    if position.quantity == 0:
        return 0
    return max(0, now_ns - position.opened_ts_ns)


# ---------------------------------------------------------------- protective levels
#
# Rejected with InvalidPosition:
# - any level on a flat position (its direction is unknown); clearing with None is always allowed;
# - a level that is not a finite, positive price;
# - a stop-loss not strictly on the protective side of the reference price (long: below it,
#   short: above it), where the reference is the last price, or the average cost if none is
#   known yet; a take-profit not strictly on the profit side of it; a level exactly at the
#   reference is rejected because it would trigger at once;
# - a stop-loss at or beyond the take-profit, and a take-profit at or inside the stop-loss or
#   the trailing stop.
# A long's stop below its average cost is the normal case; a stop above it (locking in profit)
# is accepted as long as it is still below the reference price.


def _reference(position: Position) -> Decimal:
    return position.last_price if position.last_price is not None else position.avg_cost


def _check_level(position: Position, level: Decimal, what: str) -> None:
    if position.quantity == 0:
        raise InvalidPosition(f"{position.symbol}: no {what} on a flat position")
    if not level.is_finite() or level <= 0:
        raise InvalidPosition(f"{position.symbol}: {what} must be a positive price, got {level}")


def _beyond(direction: int, a: Decimal, b: Decimal) -> bool:
    """Tell whether `a` is strictly on the profit side of `b` for `direction`."""
    return a > b if direction > 0 else a < b


def set_stop_loss(position: Position, price: Decimal | None) -> Position:
    """Return the position with its stop-loss at `price` (None clears it)."""
    if price is None:
        return replace(position, stop_loss=None)
    _check_level(position, price, "stop-loss")
    d = _direction(position.quantity)
    ref = _reference(position)
    if not _beyond(d, ref, price):
        raise InvalidPosition(
            f"{position.symbol}: stop-loss {price} is on the wrong side of the price {ref}")
    if position.take_profit is not None and not _beyond(d, position.take_profit, price):
        raise InvalidPosition(
            f"{position.symbol}: stop-loss {price} is beyond the take-profit {position.take_profit}")
    return replace(position, stop_loss=price)


def set_take_profit(position: Position, price: Decimal | None) -> Position:
    """Return the position with its take-profit at `price` (None clears it)."""
    if price is None:
        return replace(position, take_profit=None)
    _check_level(position, price, "take-profit")
    d = _direction(position.quantity)
    ref = _reference(position)
    if not _beyond(d, price, ref):
        raise InvalidPosition(
            f"{position.symbol}: take-profit {price} is on the wrong side of the price {ref}")
    for name, level in (("stop-loss", position.stop_loss), ("trailing stop", position.trailing_stop)):
        if level is not None and not _beyond(d, price, level):
            raise InvalidPosition(
                f"{position.symbol}: take-profit {price} is inside the {name} {level}")
    return replace(position, take_profit=price)


def _trail_level(extreme: Decimal, direction: int, amount: Decimal | None,
                 percent: Decimal | None) -> Decimal:
    if amount is not None:
        return extreme - direction * amount
    assert percent is not None
    return extreme * (ONE - direction * percent / _HUNDRED)


def set_trailing(position: Position, *, amount: Decimal | None = None,
                 percent: Decimal | None = None) -> Position:
    """Return the position trailing a stop `amount` or `percent` away from the best price since now.

    The water mark starts at the reference price; setting again restarts the trail.
    """
    if position.quantity == 0:
        raise InvalidPosition(f"{position.symbol}: no trailing stop on a flat position")
    if (amount is None) == (percent is None):
        raise InvalidPosition(f"{position.symbol}: give exactly one of trailing amount or percent")
    width = amount if amount is not None else percent
    assert width is not None
    if not width.is_finite() or width <= 0:
        raise InvalidPosition(f"{position.symbol}: trailing width must be positive, got {width}")
    if percent is not None and percent >= _HUNDRED:
        raise InvalidPosition(f"{position.symbol}: trailing percent must be below 100, got {percent}")
    d = _direction(position.quantity)
    extreme = _reference(position)
    stop = _trail_level(extreme, d, amount, percent)
    if stop <= 0:
        raise InvalidPosition(
            f"{position.symbol}: trailing {width} from {extreme} leaves no positive stop")
    return replace(position, trail_amount=amount, trail_percent=percent,
                   trail_extreme=extreme, trailing_stop=stop)


def clear_trailing(position: Position) -> Position:
    """Return the position without a trailing stop."""
    return replace(position, trail_amount=None, trail_percent=None,
                   trail_extreme=None, trailing_stop=None)


def update_trailing(position: Position, price: Decimal) -> Position:
    """Return the position with its trailing stop ratcheted by `price`; it never loosens.

    Without a trailing stop (or when flat) the position comes back unchanged.
    """
    _check_price(position.symbol, price, "price")
    if position.trailing_stop is None or position.trail_extreme is None or position.quantity == 0:
        return position
    d = _direction(position.quantity)
    if not _beyond(d, price, position.trail_extreme):
        return position
    # The water mark only moves in the profit direction, so the new level is always tighter.
    stop = _trail_level(price, d, position.trail_amount, position.trail_percent)
    return replace(position, trail_extreme=price, trailing_stop=stop)


def move_stop_to_break_even(position: Position, *, offset: Decimal = ZERO) -> Position:
    """Return the position with its stop-loss at average cost + `offset` in the profit direction.

    A stop-loss already at or beyond that level is kept (never loosened); a break-even level on
    the wrong side of the reference price raises InvalidPosition (the position is not in profit).
    """
    if position.quantity == 0:
        raise InvalidPosition(f"{position.symbol}: no break-even on a flat position")
    d = _direction(position.quantity)
    level = position.avg_cost + d * offset
    if position.stop_loss is not None and not _beyond(d, level, position.stop_loss):
        return position
    return set_stop_loss(position, level)


def triggered_exit(position: Position, price: Decimal) -> ExitReason | None:
    """Return which protective level `price` hits, or None (long: stop at price <= level).

    Stops win over take-profit; when the stop-loss and the trailing stop are both hit, the
    tighter one (the one price crossed first) is reported, the stop-loss on a tie.
    """
    _check_price(position.symbol, price, "price")
    if position.quantity == 0:
        return None
    d = _direction(position.quantity)
    stop_hit = position.stop_loss is not None and not _beyond(d, price, position.stop_loss)
    trail_hit = position.trailing_stop is not None and not _beyond(d, price, position.trailing_stop)
    if stop_hit and trail_hit:
        assert position.stop_loss is not None and position.trailing_stop is not None
        if _beyond(d, position.trailing_stop, position.stop_loss):
            return ExitReason.TRAILING_STOP
        return ExitReason.STOP_LOSS
    if stop_hit:
        return ExitReason.STOP_LOSS
    if trail_hit:
        return ExitReason.TRAILING_STOP
    if position.take_profit is not None and not _beyond(d, position.take_profit, price):
        return ExitReason.TAKE_PROFIT
    return None
