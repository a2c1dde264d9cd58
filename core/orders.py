"""Orders: the Order value, its status, the transition table with the real broker races, validation."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal, InvalidOperation
from enum import Enum
from typing import Any, Final

from core.canonical import canonical_reduce
from core.errors import DuplicateExecution, InvalidExecution, InvalidOrder, InvalidTransition
from core.types import ZERO, Execution, OrderType, Side, TimeInForce


class OrderStatus(str, Enum):
    CREATED = "Created"                  # built locally, not yet handed to the broker
    PENDING_SUBMIT = "PendingSubmit"     # PLACE_ORDER sent, no acknowledgement yet
    PRE_SUBMITTED = "PreSubmitted"       # accepted, held (bracket child, untriggered, not transmitted)
    SUBMITTED = "Submitted"              # working at the broker
    PARTIALLY_FILLED = "PartiallyFilled"
    FILLED = "Filled"
    PENDING_CANCEL = "PendingCancel"
    CANCELLED = "Cancelled"
    REJECTED = "Rejected"
    INACTIVE = "Inactive"


@dataclass(frozen=True, slots=True, kw_only=True)
class Order:
    """One order as we track it; `ref` is the durable client id carried in IB's orderRef."""

    ref: str
    symbol: str
    side: Side
    quantity: Decimal
    order_type: OrderType
    limit_price: Decimal | None = None
    stop_price: Decimal | None = None
    trail_amount: Decimal | None = None
    trail_percent: Decimal | None = None
    tif: TimeInForce = TimeInForce.DAY
    parent_ref: str = ""
    oca_group: str = ""
    status: OrderStatus = OrderStatus.CREATED
    broker_id: int = 0
    filled: Decimal = ZERO
    avg_fill_price: Decimal = ZERO
    commission: Decimal = ZERO
    exec_ids: frozenset[str] = field(default_factory=frozenset)
    reason: str = ""
    # Every execution applied, in arrival order, superseded originals of corrections included:
    # needed to tell a harmless repeat from a conflicting one and to replace a corrected fill.
    executions: tuple[Execution, ...] = ()
    # The cumulative `filled` of the last orderStatus: advisory, it only tells that executions
    # the broker already counted have not reached us yet (see `awaiting_executions`).
    broker_filled: Decimal = ZERO

    def __reduce__(self) -> tuple[Any, ...]:
        # Sets sorted: the same journal bytes under any PYTHONHASHSEED (core/canonical.py).
        return canonical_reduce(self)


_S = OrderStatus

# The order lifecycle, read top to bottom. A status missing from a row is a transition the broker
# cannot legitimately produce: `transition` raises InvalidTransition instead of overwriting.
# A repeat of the current status is not a transition (IB repeats orderStatus freely).
NEXT: Final[Mapping[OrderStatus, frozenset[OrderStatus]]] = {
    # Built locally: risk may refuse it, or its group may drop it, before it is ever sent.
    _S.CREATED: frozenset({_S.PENDING_SUBMIT, _S.REJECTED, _S.CANCELLED}),
    # PLACE_ORDER sent. TWS never reports PendingSubmit and orderStatus may skip steps: a
    # marketable order can fill before its first status (execDetails first), a bracket child
    # answers PreSubmitted, a bad order comes back Inactive/Cancelled with error 201, and a cancel
    # sent before TWS acknowledged ends as ApiCancelled.
    _S.PENDING_SUBMIT: frozenset({_S.PRE_SUBMITTED, _S.SUBMITTED, _S.PARTIALLY_FILLED, _S.FILLED,
                                  _S.PENDING_CANCEL, _S.CANCELLED, _S.REJECTED, _S.INACTIVE}),
    # Held at IB: a bracket child waiting for its parent, a stop not yet elected, outside RTH.
    # PreSubmitted -> Submitted when it is released; an elected stop may fill at once.
    _S.PRE_SUBMITTED: frozenset({_S.SUBMITTED, _S.PARTIALLY_FILLED, _S.FILLED, _S.PENDING_CANCEL,
                                 _S.CANCELLED, _S.REJECTED, _S.INACTIVE}),
    # Working. Back to PreSubmitted when a GTC order is held again outside regular hours.
    # Cancelled without our cancel is IB's unexpected cancel (error 202, e.g. a price check);
    # an exchange may still reject it (201) after TWS accepted it.
    _S.SUBMITTED: frozenset({_S.PRE_SUBMITTED, _S.PARTIALLY_FILLED, _S.FILLED, _S.PENDING_CANCEL,
                             _S.CANCELLED, _S.REJECTED, _S.INACTIVE}),
    # IB keeps reporting Submitted while partially filled. The rest can be cancelled (ours or a
    # 202) or deactivated, but an order that already executed is never rejected as a whole.
    _S.PARTIALLY_FILLED: frozenset({_S.FILLED, _S.PENDING_CANCEL, _S.CANCELLED, _S.INACTIVE}),
    # Our cancel is in flight and fills can still arrive (IB docs): a full fill overtakes the
    # cancel (a partial one leaves the cancel pending, see `apply_execution`). A rejected cancel
    # (error 161 / 10148 "cannot be cancelled") puts the order back to working, held or not.
    _S.PENDING_CANCEL: frozenset({_S.CANCELLED, _S.FILLED, _S.PRE_SUBMITTED, _S.SUBMITTED,
                                  _S.PARTIALLY_FILLED}),
    _S.FILLED: frozenset(),
    # Done, except for the late-fill race: IB may report the fill (execDetails, then Filled) after
    # the Cancelled ack when it executed before the cancel took. IB reports a reject as
    # Cancelled + error 201; the 201 arriving after the status refines it to Rejected.
    _S.CANCELLED: frozenset({_S.FILLED, _S.REJECTED}),
    _S.REJECTED: frozenset(),
    # Not working (rejected, blocked by a precaution, no shares to locate): treated as done. A
    # cancel of it is confirmed as Cancelled, an error 201 refines it to Rejected, and an execution
    # it reported late (the same race as after Cancelled) is still the broker's truth.
    _S.INACTIVE: frozenset({_S.CANCELLED, _S.REJECTED, _S.FILLED}),
}

DONE_STATES: Final = frozenset({_S.FILLED, _S.CANCELLED, _S.REJECTED, _S.INACTIVE})
WORKING_STATES: Final = frozenset({_S.PENDING_SUBMIT, _S.PRE_SUBMITTED, _S.SUBMITTED,
                                   _S.PARTIALLY_FILLED, _S.PENDING_CANCEL})

# IB's orderStatus strings, translated at the edge. ApiPending (held by the API, e.g. waiting for
# a contract definition) is not yet at IB, like our PendingSubmit. ApiCancelled is a cancel that
# beat the acknowledgement. "Submitted"/"PreSubmitted" with fills become PartiallyFilled in
# `apply_broker_status`.
IB_STATUS: Final[Mapping[str, OrderStatus]] = {
    "ApiPending": _S.PENDING_SUBMIT,
    "PendingSubmit": _S.PENDING_SUBMIT,
    "PreSubmitted": _S.PRE_SUBMITTED,
    "Submitted": _S.SUBMITTED,
    "PendingCancel": _S.PENDING_CANCEL,
    "ApiCancelled": _S.CANCELLED,
    "Cancelled": _S.CANCELLED,
    "Filled": _S.FILLED,
    "Inactive": _S.INACTIVE,
}

# IB follows an error 201 with Inactive or Cancelled: for an order already marked Rejected that
# status restates the rejection and changes nothing.
_RESTATES_REJECTION: Final = frozenset({_S.CANCELLED, _S.INACTIVE})
# A working status that reports fewer fills than the executions already applied was sent before
# them (statuses and executions are separate messages): it is stale and ignored.
_STALE_IF_BEHIND: Final = frozenset({_S.PRE_SUBMITTED, _S.SUBMITTED, _S.PARTIALLY_FILLED})


# ---------------------------------------------------------------- predicates


def is_done(order: Order) -> bool:
    """Return True once the order can no longer work at the broker (late fills still apply)."""
    return order.status in DONE_STATES


def is_working(order: Order) -> bool:
    """Return True while the order is sent and not done (includes a pending cancel)."""
    return order.status in WORKING_STATES


def remaining(order: Order) -> Decimal:
    """Return the unfilled quantity (IB's `remaining`), whatever the status."""
    return order.quantity - order.filled


def awaiting_executions(order: Order) -> bool:
    """Return True while the broker counted fills (its status, or Filled) not yet in executions."""
    if order.status is OrderStatus.FILLED and order.filled < order.quantity:
        return True
    return order.broker_filled > order.filled


# ---------------------------------------------------------------- transitions


def transition(order: Order, to: OrderStatus) -> Order:
    """Return the order moved to `to`; a repeat of the current status changes nothing."""
    if to is order.status:
        return order
    if to not in NEXT[order.status]:
        raise InvalidTransition(
            f"order {order.ref}: {order.status.value} -> {to.value} is not allowed")
    return replace(order, status=to)


def request_cancel(order: Order) -> Order:
    """Return the order once we ask to cancel it: CANCELLED if never sent, else PENDING_CANCEL.

    A done order is returned unchanged: there is nothing left to cancel (IB would answer 161).
    """
    if order.status is _S.CREATED:
        return transition(order, _S.CANCELLED)
    if order.status in DONE_STATES:
        return order
    return transition(order, _S.PENDING_CANCEL)


def reject(order: Order, reason: str) -> Order:
    """Return the order marked REJECTED with `reason` (error 201, or refused before sending)."""
    moved = transition(order, _S.REJECTED)
    if moved is order and order.reason:
        return order
    return replace(moved, reason=reason)


def apply_broker_status(order: Order, ib_status: str, filled: Decimal, remaining: Decimal) -> Order:
    """Return the order after one IB orderStatus; advisory, so fills still come from executions.

    The status follows the table. A "Filled" that arrives before its executions moves the order to
    FILLED at once (the broker has said nothing more will execute) while `filled`, the average
    price and commission stay driven by executions; `broker_filled` records the broker's count so
    `awaiting_executions` tells the group to wait for them. `remaining` is only checked.
    """
    to = IB_STATUS.get(ib_status)
    if to is None:
        raise InvalidTransition(f"order {order.ref}: unknown IB order status {ib_status!r}")
    for name, amount in (("filled", filled), ("remaining", remaining)):
        if not isinstance(amount, Decimal) or not amount.is_finite() or amount < 0:
            raise InvalidExecution(
                f"order {order.ref}: orderStatus {ib_status} {name}={amount!r}; "
                "expected a finite Decimal >= 0")
    if to in (_S.PRE_SUBMITTED, _S.SUBMITTED) and (filled > 0 or order.filled > 0):
        to = _S.PARTIALLY_FILLED  # IB says Submitted (or PreSubmitted, held GTC) while partly filled
    if to in _STALE_IF_BEHIND and filled < order.filled:
        return order
    if order.status is _S.REJECTED and to in _RESTATES_REJECTION:
        to = _S.REJECTED
    moved = transition(order, to)
    if moved.broker_filled == filled:
        return moved
    return replace(moved, broker_filled=filled)


# ---------------------------------------------------------------- executions


def _split_exec_id(exec_id: str) -> tuple[str, tuple[int, str]]:
    # IB corrects a fill by sending a new execId that differs only after the last period
    # ("0000e0d5.6589b5b6.01.01" -> "...01.02"). The prefix names the fill, the suffix its revision;
    # revisions compare by length, then text, which orders zero-padded and plain counters alike.
    prefix, dot, suffix = exec_id.rpartition(".")
    if not dot:
        return exec_id, (0, "")
    return prefix, (len(suffix), suffix)


def _effective(executions: tuple[Execution, ...]) -> tuple[Execution, ...]:
    best: dict[str, tuple[tuple[int, str], Execution]] = {}
    for execution in executions:
        prefix, revision = _split_exec_id(execution.exec_id)
        held = best.get(prefix)
        if held is None or revision > held[0]:
            best[prefix] = (revision, execution)
    return tuple(execution for _, execution in best.values())


def effective_executions(order: Order) -> tuple[Execution, ...]:
    """Return the executions that count: the latest revision of each fill, corrections applied."""
    return _effective(order.executions)


def _check_execution(order: Order, execution: Execution) -> None:
    name = execution.exec_id
    if not name:
        raise InvalidExecution(f"order {order.ref}: an execution needs an exec id")
    if execution.symbol != order.symbol:
        raise InvalidExecution(
            f"order {order.ref}: execution {name} is for {execution.symbol}, not {order.symbol}")
    if execution.side is not order.side:
        raise InvalidExecution(
            f"order {order.ref}: execution {name} is a {execution.side.value}, "
            f"the order a {order.side.value}")
    if execution.order_ref and execution.order_ref != order.ref:
        raise InvalidExecution(
            f"order {order.ref}: execution {name} belongs to order {execution.order_ref}")
    if not execution.quantity.is_finite() or execution.quantity <= 0:
        raise InvalidExecution(
            f"order {order.ref}: execution {name} quantity={execution.quantity}; expected > 0")
    # Zero is a real fill price (an option expiring worthless).
    if not execution.price.is_finite() or execution.price < 0:
        raise InvalidExecution(
            f"order {order.ref}: execution {name} price={execution.price}; expected >= 0")
    if not execution.commission.is_finite():
        raise InvalidExecution(
            f"order {order.ref}: execution {name} commission={execution.commission}; expected finite")


def _same_trade(a: Execution, b: Execution) -> bool:
    # The trade itself identifies the fill. Order id and ref are routing data (already checked
    # against the order); a replay by reqExecutions may carry them differently or not at all.
    return (a.symbol, a.side, a.quantity, a.price) == (b.symbol, b.side, b.quantity, b.price)


def _repeat(order: Order, known: Execution, execution: Execution) -> Order:
    if not _same_trade(known, execution):
        raise DuplicateExecution(
            f"order {order.ref}: execution {known.exec_id} was {known.side.value} "
            f"{known.quantity}@{known.price}, now reported as {execution.side.value} "
            f"{execution.quantity}@{execution.price}")
    if execution.commission == known.commission or execution.commission == ZERO:
        return order
    if known.commission != ZERO:
        raise DuplicateExecution(
            f"order {order.ref}: execution {known.exec_id} commission was {known.commission}, "
            f"now {execution.commission}")
    # The commission report arrives apart from execDetails and is joined by exec id later.
    executions = tuple(execution if e is known else e for e in order.executions)
    return _with_fills(order, executions, order.status)


def _with_fills(order: Order, executions: tuple[Execution, ...], status: OrderStatus) -> Order:
    counted = _effective(executions)
    filled = sum((e.quantity for e in counted), ZERO)
    if filled > order.quantity:
        raise InvalidExecution(
            f"order {order.ref}: fills of {filled} would exceed the order quantity {order.quantity}")
    notional = sum((e.quantity * e.price for e in counted), ZERO)
    return replace(
        transition(order, status),
        executions=executions,
        exec_ids=frozenset(e.exec_id for e in executions),
        filled=filled,
        avg_fill_price=notional / filled if filled else ZERO,
        commission=sum((e.commission for e in counted), ZERO),
    )


def apply_execution(order: Order, execution: Execution) -> Order:
    """Return the order with one execution applied; an exec id already applied changes nothing.

    A correction (same execId up to the last period, higher revision) replaces the earlier fill's
    quantity, price and commission; a lower revision arriving after its correction is recorded
    and ignored. The same exec id with other trade fields raises DuplicateExecution; a commission
    arriving later for a known exec id is joined. Full fill -> FILLED. A partial fill moves a
    working order to PARTIALLY_FILLED but leaves PENDING_CANCEL, CANCELLED, INACTIVE and FILLED
    (said by the broker ahead of its executions) as they are: those are the fill races.
    """
    _check_execution(order, execution)
    for known in order.executions:
        if known.exec_id == execution.exec_id:
            return _repeat(order, known, execution)
    executions = order.executions + (execution,)
    filled = sum((e.quantity for e in _effective(executions)), ZERO)
    if filled == order.quantity:
        status = _S.FILLED
    elif order.status in (_S.PENDING_CANCEL, _S.CANCELLED, _S.INACTIVE, _S.FILLED):
        status = order.status
    else:
        status = _S.PARTIALLY_FILLED
    return _with_fills(order, executions, status)


# ---------------------------------------------------------------- validation

_PRICE_FIELDS: Final = ("limit_price", "stop_price", "trail_amount", "trail_percent")

_REQUIRED: Final[Mapping[OrderType, frozenset[str]]] = {
    OrderType.MKT: frozenset(),
    OrderType.LMT: frozenset({"limit_price"}),
    OrderType.STP: frozenset({"stop_price"}),
    OrderType.STP_LMT: frozenset({"stop_price", "limit_price"}),
    OrderType.TRAIL: frozenset(),  # exactly one of trail_amount / trail_percent, checked apart
}

_ALLOWED: Final[Mapping[OrderType, frozenset[str]]] = {
    OrderType.MKT: frozenset(),
    OrderType.LMT: frozenset({"limit_price"}),
    OrderType.STP: frozenset({"stop_price"}),
    OrderType.STP_LMT: frozenset({"stop_price", "limit_price"}),
    # stop_price on a TRAIL is the initial trailing stop (IB's trailStopPrice).
    OrderType.TRAIL: frozenset({"trail_amount", "trail_percent", "stop_price"}),
}

# IOC cancels whatever does not execute on arrival, so a stop or trailing stop sent IOC would be
# cancelled before it could ever trigger: IB offers IOC only for immediately executable types.
_TIFS: Final[Mapping[OrderType, frozenset[TimeInForce]]] = {
    OrderType.MKT: frozenset(TimeInForce),
    OrderType.LMT: frozenset(TimeInForce),
    OrderType.STP: frozenset({TimeInForce.DAY, TimeInForce.GTC}),
    OrderType.STP_LMT: frozenset({TimeInForce.DAY, TimeInForce.GTC}),
    OrderType.TRAIL: frozenset({TimeInForce.DAY, TimeInForce.GTC}),
}

_HUNDRED: Final = Decimal(100)


def _bad(order_ref: str, name: str, value: object, expected: str) -> InvalidOrder:
    return InvalidOrder(f"order {order_ref or '?'}: {name}={value!r} is invalid; expected {expected}")


def _is_amount(value: object) -> bool:
    return isinstance(value, Decimal) and value.is_finite() and value > 0


def validate(order: Order) -> Order:
    """Return the order if its fields make a valid order, else raise InvalidOrder naming the field."""
    ref = order.ref
    if not isinstance(ref, str) or not ref:
        raise _bad(ref, "ref", ref, "a non-empty durable client id")
    if not isinstance(order.symbol, str) or not order.symbol:
        raise _bad(ref, "symbol", order.symbol, "a non-empty symbol")
    for name, kind in (("side", Side), ("order_type", OrderType), ("tif", TimeInForce),
                       ("status", OrderStatus)):
        value = getattr(order, name)
        if not isinstance(value, kind):
            raise _bad(ref, name, value, f"one of {[m.value for m in kind]}")
    if not _is_amount(order.quantity):
        raise _bad(ref, "quantity", order.quantity, "a Decimal > 0")
    kind = order.order_type
    for name in _PRICE_FIELDS:
        value = getattr(order, name)
        if value is None:
            if name in _REQUIRED[kind]:
                raise _bad(ref, name, value, f"a price > 0 for a {kind.value} order")
        elif name not in _ALLOWED[kind]:
            raise _bad(ref, name, value, f"None for a {kind.value} order")
        elif not _is_amount(value):
            raise _bad(ref, name, value, "a Decimal > 0")
    if kind is OrderType.TRAIL:
        if (order.trail_amount is None) == (order.trail_percent is None):
            raise _bad(ref, "trail_amount/trail_percent", (order.trail_amount, order.trail_percent),
                       "exactly one of them for a TRAIL order")
        if order.trail_percent is not None and order.trail_percent >= _HUNDRED:
            raise _bad(ref, "trail_percent", order.trail_percent, "a percentage in (0, 100)")
    if order.tif not in _TIFS[kind]:
        allowed = sorted(t.value for t in _TIFS[kind])
        raise _bad(ref, "tif", order.tif.value, f"one of {allowed} for a {kind.value} order")
    if not isinstance(order.filled, Decimal) or not ZERO <= order.filled <= order.quantity:
        raise _bad(ref, "filled", order.filled, f"between 0 and the quantity {order.quantity}")
    if not isinstance(order.broker_id, int) or order.broker_id < 0:
        raise _bad(ref, "broker_id", order.broker_id, "an order id >= 0 (0 = not yet assigned)")
    return order


def round_to_tick(price: Decimal, tick: Decimal, side: Side) -> Decimal:
    """Return `price` on the tick grid, rounded conservatively for `side`: BUY down, SELL up.

    A buy limit never pays more and a sell limit never takes less than asked. A buy stop (which
    protects a short) rounds down and a sell stop (protecting a long) rounds up, so a rounded stop
    is never looser than asked. Both rules round BUY down and SELL up.
    """
    if not isinstance(tick, Decimal) or not tick.is_finite() or tick <= 0:
        raise InvalidOrder(f"tick={tick!r} is invalid; expected a Decimal > 0")
    if not isinstance(price, Decimal) or not price.is_finite():
        raise InvalidOrder(f"price={price!r} is invalid; expected a finite Decimal")
    rounding = ROUND_FLOOR if side is Side.BUY else ROUND_CEILING
    return (price / tick).to_integral_value(rounding=rounding) * tick


_ENUM_FIELDS: Final[Mapping[str, type[Enum]]] = {
    "side": Side, "order_type": OrderType, "tif": TimeInForce, "status": OrderStatus,
}
_DECIMAL_FIELDS: Final = ("quantity", *_PRICE_FIELDS)


def _coerce(fields: dict[str, Any]) -> dict[str, Any]:
    ref = str(fields.get("ref", ""))
    out = dict(fields)
    for name, kind in _ENUM_FIELDS.items():
        value = out.get(name)
        if isinstance(value, str) and not isinstance(value, kind):
            try:
                out[name] = kind(value)
            except ValueError:
                raise _bad(ref, name, value, f"one of {[m.value for m in kind]}") from None
    for name in _DECIMAL_FIELDS:
        value = out.get(name)
        if isinstance(value, bool) or isinstance(value, float):
            # a float carries binary noise into prices: callers pass Decimal, int or str
            raise _bad(ref, name, value, "a Decimal (or an int / a decimal string), not a float")
        if isinstance(value, (int, str)):
            try:
                out[name] = Decimal(value)
            except InvalidOperation:
                raise _bad(ref, name, value, "a decimal number") from None
    return out


def new_order(*, tick: Decimal | None = None, lot: Decimal | None = None, **fields: Any) -> Order:
    """Return a validated CREATED order from `fields`; with `tick`, prices are rounded to it.

    Limit and stop prices round by `round_to_tick` for the order's side; a trailing amount rounds
    down (a tighter trail). With `lot`, the quantity must be a whole number of lots.
    """
    values = _coerce(fields)
    try:
        order = Order(**values)
    except TypeError as exc:
        raise InvalidOrder(f"order {values.get('ref', '?')}: {exc}") from None
    if tick is not None:
        if not isinstance(order.side, Side):
            validate(order)  # names the bad side before rounding needs it
        changes = {
            name: round_to_tick(value, tick, order.side)
            for name in ("limit_price", "stop_price")
            if isinstance(value := getattr(order, name), Decimal)
        }
        if isinstance(order.trail_amount, Decimal):
            changes["trail_amount"] = round_to_tick(order.trail_amount, tick, Side.BUY)
        order = replace(order, **changes)
    if lot is not None:
        if not _is_amount(lot):
            raise _bad(order.ref, "lot", lot, "a Decimal > 0")
        if isinstance(order.quantity, Decimal) and order.quantity.is_finite() \
                and order.quantity % lot != 0:
            raise _bad(order.ref, "quantity", order.quantity, f"a multiple of the lot size {lot}")
    return validate(order)
