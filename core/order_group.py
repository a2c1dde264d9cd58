"""Order groups (single, bracket, OCO) as a pure machine: decide(group, event) -> (group, commands)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from decimal import Decimal
from enum import Enum
from typing import Any, Final, TypeAlias

from core.canonical import canonical_reduce
from core.errors import InvalidExecution, InvalidGroupEvent, InvalidOrder
from core.orders import (
    Order,
    OrderStatus,
    apply_broker_status,
    apply_execution,
    awaiting_executions,
    is_done,
    reject,
    request_cancel,
    transition,
    validate,
)
from core.types import ZERO, Execution, OrderType, Side

ENTRY: Final = "entry"
STOP_LOSS: Final = "sl"
TAKE_PROFIT: Final = "tp"
OCA_SUFFIX: Final = "oca"
CANCELLED: Final = "cancelled: "  # how a group asked to cancel every leg words its end (`reason`)

# IB's ocaType for the bracket children and OCO legs: 3 = reduce the rest proportionately, no
# block. Type 2 adds overfill "block" (only one order of the group routed at a time), which could
# hold back a triggered stop-loss while the take-profit rests at the exchange. The group does not
# rely on IB for either behaviour: it sends the sibling cancels and size reductions itself (OCA
# legs have been seen not to cancel, atreyu-backtrader-api #11) and reports an over-exit race
# through GroupFinished.unprotected.
OCA_TYPE: Final = 3

_STOP_TYPES: Final = frozenset({OrderType.STP, OrderType.STP_LMT, OrderType.TRAIL})


class GroupKind(str, Enum):
    SINGLE = "SINGLE"
    BRACKET = "BRACKET"  # legs: entry, stop-loss, take-profit; children share an OCA group
    OCO = "OCO"          # two or more legs of one size; one fill cancels the others


class GroupState(str, Enum):
    PENDING = "PENDING"  # built, nothing sent
    WORKING = "WORKING"  # submitted; some leg is working or a fill the broker reported is due
    DONE = "DONE"        # no leg works and every reported fill is in


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderGroup:
    """One bracket, OCO group or single order; `size` is the quantity every leg was built with."""

    id: str
    kind: GroupKind
    symbol: str
    legs: tuple[Order, ...]
    size: Decimal
    oca_group: str = ""
    state: GroupState = GroupState.PENDING
    cancel_requested: frozenset[str] = frozenset()  # legs we sent a CancelOrder for
    reason: str = ""                                # why the group ended (first decisive event)

    def __reduce__(self) -> tuple[Any, ...]:
        # Sets sorted: the same journal bytes under any PYTHONHASHSEED (core/canonical.py).
        return canonical_reduce(self)


# ---------------------------------------------------------------- events


@dataclass(frozen=True, slots=True, kw_only=True)
class Start:
    """Submit the group's legs."""


@dataclass(frozen=True, slots=True, kw_only=True)
class LegAccepted:
    """The connection assigned the leg its broker order id."""

    ref: str
    broker_id: int


@dataclass(frozen=True, slots=True, kw_only=True)
class LegStatus:
    """IB's orderStatus for a leg (advisory)."""

    ref: str
    ib_status: str
    filled: Decimal
    remaining: Decimal


@dataclass(frozen=True, slots=True, kw_only=True)
class LegExecution:
    """An execution for a leg, routed by its order ref (or broker order id)."""

    execution: Execution


@dataclass(frozen=True, slots=True, kw_only=True)
class LegRejected:
    """The broker (error 201) or risk refused a leg."""

    ref: str
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class CancelGroup:
    """Cancel every leg that still works."""

    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class CancelEntry:
    """Cancel what still works of the entry (a halt): a bracket's children stay, sized to its fills.

    A single order or an OCO group is all entry: every working leg is cancelled.
    """

    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ReplaceStop:
    """Move the stop price of the group's stop order (the bracket's stop-loss, or a single stop)."""

    new_price: Decimal


Event: TypeAlias = (Start | LegAccepted | LegStatus | LegExecution | LegRejected | CancelGroup | CancelEntry
                    | ReplaceStop)


# ---------------------------------------------------------------- commands


@dataclass(frozen=True, slots=True, kw_only=True)
class SubmitOrder:
    """Place `order`; `transmit=False` holds it at TWS until a later order of the group transmits."""

    order: Order
    transmit: bool
    parent_ref: str = ""
    oca_type: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class CancelOrder:
    """Cancel the working leg `ref`; a cancel that loses the race to a fill is answered 161/10148."""

    ref: str
    reason: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class ModifyOrder:
    """Re-place the working order with its new quantity or stop price (same order id)."""

    order: Order


@dataclass(frozen=True, slots=True, kw_only=True)
class GroupFinished:
    """The group is done. `unprotected` (brackets) = entry fills not closed by a child; < 0 over-exit."""

    group_id: str
    reason: str
    unprotected: Decimal = ZERO
    legs: tuple[Order, ...] = ()


Command: TypeAlias = SubmitOrder | CancelOrder | ModifyOrder | GroupFinished
Decision: TypeAlias = tuple[OrderGroup, tuple[Command, ...]]


# ---------------------------------------------------------------- builders


def leg_ref(group_id: str, leg: str) -> str:
    """Return the durable client id of a leg (IB orderRef): group id + leg name."""
    return f"{group_id}:{leg}"


def _check_group_id(group_id: str) -> None:
    if not isinstance(group_id, str) or not group_id:
        raise InvalidOrder(f"group_id={group_id!r} is invalid; expected a non-empty id")


def _leg(order: Order, ref: str, *, parent_ref: str = "", oca_group: str = "") -> Order:
    if order.status is not OrderStatus.CREATED or order.filled or order.executions \
            or order.broker_id:
        raise InvalidOrder(
            f"order {ref}: status={order.status.value}, filled={order.filled}, "
            f"broker_id={order.broker_id} is invalid; expected a new order (Created, unfilled)")
    return validate(replace(order, ref=ref, parent_ref=parent_ref, oca_group=oca_group))


def _same(legs: tuple[Order, ...], name: str, expected: object, why: str) -> None:
    for leg in legs:
        value = getattr(leg, name)
        if value != expected:
            raise InvalidOrder(f"order {leg.ref}: {name}={value!r} is invalid; expected {expected!r} ({why})")


def single(group_id: str, order: Order) -> OrderGroup:
    """Return a group of one standalone order; its ref becomes "{group_id}:entry"."""
    _check_group_id(group_id)
    leg = _leg(order, leg_ref(group_id, ENTRY))
    return OrderGroup(id=group_id, kind=GroupKind.SINGLE, symbol=leg.symbol, legs=(leg,),
                      size=leg.quantity)


def _entry_price(entry: Order) -> Decimal | None:
    return entry.limit_price if entry.limit_price is not None else entry.stop_price


def _check_bracket_prices(entry: Order, sl: Order, tp: Order) -> None:
    long = entry.side is Side.BUY
    where = "below" if long else "above"
    reference = _entry_price(entry)
    stop = sl.stop_price
    assert tp.limit_price is not None  # validate() demanded it for the LMT take-profit
    if reference is not None:
        if stop is not None and (stop >= reference if long else stop <= reference):
            raise InvalidOrder(
                f"order {sl.ref}: stop_price={stop!r} is invalid; expected {where} the entry "
                f"price {reference} for a {entry.side.value} bracket")
        if tp.limit_price <= reference if long else tp.limit_price >= reference:
            raise InvalidOrder(
                f"order {tp.ref}: limit_price={tp.limit_price!r} is invalid; expected "
                f"{'above' if long else 'below'} the entry price {reference} for a "
                f"{entry.side.value} bracket")
    if stop is not None and (stop >= tp.limit_price if long else stop <= tp.limit_price):
        raise InvalidOrder(
            f"order {sl.ref}: stop_price={stop!r} is invalid; expected {where} the take-profit "
            f"{tp.limit_price} for a {entry.side.value} bracket")


def bracket(group_id: str, entry: Order, stop_loss: Order, take_profit: Order) -> OrderGroup:
    """Return a bracket: entry, stop-loss and take-profit children in one OCA group.

    The children must be the opposite side of the entry, same symbol and quantity; the stop-loss
    is a stop order (STP, STP LMT, TRAIL) and the take-profit a limit, each on its own side of
    the entry price (when the entry has one) and of each other.
    """
    _check_group_id(group_id)
    oca = leg_ref(group_id, OCA_SUFFIX)
    head = _leg(entry, leg_ref(group_id, ENTRY))
    sl = _leg(stop_loss, leg_ref(group_id, STOP_LOSS), parent_ref=head.ref, oca_group=oca)
    tp = _leg(take_profit, leg_ref(group_id, TAKE_PROFIT), parent_ref=head.ref, oca_group=oca)
    children = (sl, tp)
    _same(children, "symbol", head.symbol, "the entry's symbol")
    _same(children, "side", head.side.opposite, "the side opposite the entry")
    _same(children, "quantity", head.quantity, "the entry's quantity")
    if sl.order_type not in _STOP_TYPES:
        raise InvalidOrder(f"order {sl.ref}: order_type={sl.order_type.value!r} is invalid; "
                           f"expected one of {sorted(t.value for t in _STOP_TYPES)}")
    if tp.order_type is not OrderType.LMT:
        raise InvalidOrder(f"order {tp.ref}: order_type={tp.order_type.value!r} is invalid; "
                           f"expected 'LMT'")
    _check_bracket_prices(head, sl, tp)
    return OrderGroup(id=group_id, kind=GroupKind.BRACKET, symbol=head.symbol,
                      legs=(head, sl, tp), size=head.quantity, oca_group=oca)


def oco(group_id: str, orders: tuple[Order, ...] | list[Order]) -> OrderGroup:
    """Return an OCO group of two or more same-symbol, same-size orders ("{group_id}:oco{i}", i from 0)."""
    _check_group_id(group_id)
    if len(orders) < 2:
        raise InvalidOrder(f"group {group_id}: orders has {len(orders)} order(s); expected at least 2")
    oca = leg_ref(group_id, OCA_SUFFIX)
    legs = tuple(_leg(order, leg_ref(group_id, f"oco{i}"), oca_group=oca)
                 for i, order in enumerate(orders))
    _same(legs[1:], "symbol", legs[0].symbol, "every OCO leg trades one symbol")
    _same(legs[1:], "quantity", legs[0].quantity, "OCO legs share one size")
    return OrderGroup(id=group_id, kind=GroupKind.OCO, symbol=legs[0].symbol, legs=legs,
                      size=legs[0].quantity, oca_group=oca)


# ---------------------------------------------------------------- queries


def find_leg(group: OrderGroup, ref: str) -> Order:
    """Return the leg with `ref`, or raise InvalidGroupEvent."""
    return group.legs[_index(group, ref)]


def unprotected(group: OrderGroup) -> Decimal:
    """Return a bracket's entry fills not yet closed by a child (negative: over-exit); else zero."""
    if group.kind is not GroupKind.BRACKET:
        return ZERO
    entry, sl, tp = group.legs
    return entry.filled - sl.filled - tp.filled


def _index(group: OrderGroup, ref: str) -> int:
    for i, leg in enumerate(group.legs):
        if leg.ref == ref:
            return i
    raise InvalidGroupEvent(f"group {group.id}: no leg {ref!r}")


def _put(group: OrderGroup, order: Order) -> OrderGroup:
    i = _index(group, order.ref)
    if group.legs[i] is order:
        return group
    return replace(group, legs=group.legs[:i] + (order,) + group.legs[i + 1:])


def _require_started(group: OrderGroup, event: object) -> None:
    if group.state is GroupState.PENDING:
        raise InvalidGroupEvent(
            f"group {group.id}: {type(event).__name__} before the group was started")


# ---------------------------------------------------------------- coordination


def _cancel(group: OrderGroup, refs: tuple[str, ...], reason: str) -> Decision:
    commands: list[Command] = []
    for ref in refs:
        leg = find_leg(group, ref)
        if ref in group.cancel_requested or is_done(leg):
            continue
        cancelled = request_cancel(leg)
        group = _put(group, cancelled)
        if leg.status is not OrderStatus.CREATED:  # a leg never sent is simply dropped
            group = replace(group, cancel_requested=group.cancel_requested | {ref})
            commands.append(CancelOrder(ref=ref, reason=reason))
    return group, tuple(commands)


def _resize(group: OrderGroup, refs: tuple[str, ...], total: Decimal, reason: str) -> Decision:
    # Every leg keeps what it filled plus the part of `total` nobody has filled yet, so the legs
    # together can never fill more than `total` (IB OCA "reduce proportionately" for same-size
    # legs). A leg with nothing left is cancelled, never resized to zero or below its fills.
    legs = [find_leg(group, ref) for ref in refs]
    left = max(total - sum((leg.filled for leg in legs), ZERO), ZERO)
    commands: list[Command] = []
    for leg in legs:
        if is_done(leg) or leg.ref in group.cancel_requested:
            continue
        target = leg.filled + left
        if target <= leg.filled:
            group, cancels = _cancel(group, (leg.ref,), reason)
            commands.extend(cancels)
        elif target != leg.quantity:
            resized = replace(leg, quantity=target)
            group = _put(group, resized)
            commands.append(ModifyOrder(order=resized))
    return group, tuple(commands)


def _protected_size(entry: Order) -> Decimal | None:
    # What the children must cover. Before the entry fills they rest (held by IB) at full size;
    # a partial fill sizes them to the fills; the broker's Filled means full size even while its
    # executions are still on the way. An entry that ended unfilled leaves nothing to protect,
    # unless its final status counted fills whose executions have not arrived: wait for them.
    if entry.status is OrderStatus.FILLED:
        return entry.quantity
    if entry.filled > 0:
        return entry.filled
    if is_done(entry):
        return None if awaiting_executions(entry) else ZERO
    return entry.quantity


def _ended_unasked(group: OrderGroup, leg: Order) -> bool:
    return is_done(leg) and leg.status is not OrderStatus.FILLED and leg.filled == 0 \
        and leg.ref not in group.cancel_requested


def _coordinate_bracket(group: OrderGroup) -> Decision:
    entry, sl, tp = group.legs
    for child, name in ((sl, "stop-loss"), (tp, "take-profit")):
        if child.status is OrderStatus.FILLED:
            # The exit is complete: cancel the sibling, and the entry's rest too, so a later entry
            # fill cannot open a position nothing protects.
            group = replace(group, reason=group.reason or f"{name} filled")
            return _cancel(group, tuple(leg.ref for leg in group.legs if leg is not child),
                           f"{name} filled")
    commands: tuple[Command, ...] = ()
    if _ended_unasked(group, sl) and not is_done(entry):
        # The stop-loss was rejected or cancelled by the broker (201, 202 price check): never
        # keep entering without it. What already filled stays covered by the take-profit.
        detail = f": {sl.reason}" if sl.reason else ""
        why = f"stop-loss {sl.status.value}{detail}"
        group = replace(group, reason=group.reason or why)
        group, commands = _cancel(group, (entry.ref,), why)
        entry = group.legs[0]
    total = _protected_size(entry)
    if total is None:
        return group, commands
    if total == 0 and not group.reason:
        detail = f": {entry.reason}" if entry.reason else ""
        group = replace(group, reason=f"entry {entry.status.value}{detail}")
    group, more = _resize(group, (sl.ref, tp.ref), total,
                          "entry ended unfilled" if total == 0 else "resize to the entry fills")
    return group, commands + more


def _coordinate_oco(group: OrderGroup) -> Decision:
    for leg in group.legs:
        if leg.status is OrderStatus.FILLED:
            group = replace(group, reason=group.reason or f"{leg.ref} filled")
            return _cancel(group, tuple(other.ref for other in group.legs if other is not leg),
                           f"{leg.ref} filled")
    return _resize(group, tuple(leg.ref for leg in group.legs), group.size, "OCO sibling filled")


def _summary(group: OrderGroup) -> str:
    return ", ".join(f"{leg.ref.rpartition(':')[2]} {leg.status.value}" for leg in group.legs)


def _finish_if_idle(group: OrderGroup, commands: tuple[Command, ...]) -> Decision:
    if group.state is GroupState.DONE:
        return group, commands
    if not all(is_done(leg) and not awaiting_executions(leg) for leg in group.legs):
        return group, commands
    group = replace(group, state=GroupState.DONE, reason=group.reason or _summary(group))
    finished = GroupFinished(group_id=group.id, reason=group.reason,
                             unprotected=unprotected(group), legs=group.legs)
    return group, commands + (finished,)


def _settle(group: OrderGroup) -> Decision:
    if group.state is not GroupState.WORKING:
        # A late status or fill after the group finished is still recorded, but starts nothing.
        return group, ()
    if group.kind is GroupKind.BRACKET:
        group, commands = _coordinate_bracket(group)
    elif group.kind is GroupKind.OCO:
        group, commands = _coordinate_oco(group)
    else:
        commands = ()
    return _finish_if_idle(group, commands)


# ---------------------------------------------------------------- handlers


def _start(group: OrderGroup, event: Start) -> Decision:
    if group.state is not GroupState.PENDING:
        raise InvalidGroupEvent(f"group {group.id}: Start while {group.state.value}")
    legs = tuple(transition(leg, OrderStatus.PENDING_SUBMIT) for leg in group.legs)
    group = replace(group, legs=legs, state=GroupState.WORKING)
    oca_type = OCA_TYPE if group.oca_group else 0
    if group.kind is GroupKind.BRACKET:
        # IB transmit semantics: the parent and the first child are held at TWS (transmit=False)
        # until the last child arrives with transmit=True, so the entry can never execute before
        # its protection exists. A last child sent with transmit=False leaves all three unsent.
        entry, sl, tp = legs
        return group, (
            SubmitOrder(order=entry, transmit=False),
            SubmitOrder(order=sl, transmit=False, parent_ref=entry.ref, oca_type=oca_type),
            SubmitOrder(order=tp, transmit=True, parent_ref=entry.ref, oca_type=oca_type),
        )
    return group, tuple(SubmitOrder(order=leg, transmit=True, oca_type=oca_type) for leg in legs)


def _leg_accepted(group: OrderGroup, event: LegAccepted) -> Decision:
    _require_started(group, event)
    leg = find_leg(group, event.ref)
    if not isinstance(event.broker_id, int) or event.broker_id <= 0:
        raise InvalidGroupEvent(
            f"group {group.id}: leg {event.ref} broker_id={event.broker_id!r}; expected an id > 0")
    if leg.broker_id == event.broker_id:
        return group, ()
    # A new id is only acceptable before the broker acknowledged the leg (error 103 makes the
    # connection re-send the same intent under a fresh id); afterwards the id is permanent.
    if leg.broker_id and leg.status is not OrderStatus.PENDING_SUBMIT:
        raise InvalidGroupEvent(
            f"group {group.id}: leg {event.ref} already has broker id {leg.broker_id}, "
            f"got {event.broker_id}")
    return _put(group, replace(leg, broker_id=event.broker_id)), ()


def _leg_status(group: OrderGroup, event: LegStatus) -> Decision:
    _require_started(group, event)
    leg = find_leg(group, event.ref)
    updated = apply_broker_status(leg, event.ib_status, event.filled, event.remaining)
    if updated is leg:
        return group, ()
    return _settle(_put(group, updated))


def _route(group: OrderGroup, execution: Execution) -> Order:
    if execution.order_ref:
        return find_leg(group, execution.order_ref)
    for leg in group.legs:
        if execution.order_id and leg.broker_id == execution.order_id:
            return leg
    raise InvalidGroupEvent(
        f"group {group.id}: execution {execution.exec_id} matches no leg "
        f"(order ref {execution.order_ref!r}, order id {execution.order_id})")


def _fill(group: OrderGroup, leg: Order, execution: Execution) -> Order:
    try:
        return apply_execution(leg, execution)
    except InvalidExecution:
        if leg.quantity >= group.size:
            raise
    # We reduced this leg, and a fill at its earlier size beat the modify to the exchange. The
    # fill is the broker's truth: widen the leg to what it filled (never past the size it was
    # built with, which the next call enforces) and apply it.
    widened = apply_execution(replace(leg, quantity=group.size), execution)
    return apply_execution(replace(leg, quantity=max(widened.filled, leg.quantity)), execution)


def _leg_execution(group: OrderGroup, event: LegExecution) -> Decision:
    _require_started(group, event)
    leg = _route(group, event.execution)
    # A fill for a leg we asked to cancel is applied like any other (cancel race, error 161/10148).
    updated = _fill(group, leg, event.execution)
    if updated is leg:
        return group, ()
    return _settle(_put(group, updated))


def _leg_rejected(group: OrderGroup, event: LegRejected) -> Decision:
    leg = find_leg(group, event.ref)
    updated = reject(leg, event.reason)
    if updated is leg:
        return group, ()
    why = f"{event.ref} rejected: {event.reason}"
    group = _put(group, updated)
    if group.state is GroupState.PENDING:
        # refused before anything was sent (risk): the whole group is void
        return _cancel_group(replace(group, reason=group.reason or why), CancelGroup(reason=why))
    return _settle(group)


def _cancel_group(group: OrderGroup, event: CancelGroup) -> Decision:
    if group.state is GroupState.DONE:
        return group, ()  # cancels are idempotent: a cancel-all racing the group's end is harmless
    pending = group.state is GroupState.PENDING
    group = replace(group, reason=group.reason or f"{CANCELLED}{event.reason}")
    group, commands = _cancel(group, tuple(leg.ref for leg in group.legs), event.reason)
    if pending:
        group = replace(group, state=GroupState.WORKING)  # every leg is now done: finish below
        return _finish_if_idle(group, commands)
    group, more = _settle(group)
    return group, commands + more


def _cancel_entry(group: OrderGroup, event: CancelEntry) -> Decision:
    if group.kind is not GroupKind.BRACKET or group.state is not GroupState.WORKING:
        return _cancel_group(group, CancelGroup(reason=event.reason))
    # The children follow the entry: once it is done they are resized to its fills (or
    # cancelled when nothing filled) by the bracket's own coordination.
    group, commands = _cancel(group, (group.legs[0].ref,), event.reason)
    group, more = _settle(group)
    return group, commands + more


def _stop_leg(group: OrderGroup) -> Order:
    if group.kind is GroupKind.BRACKET:
        return group.legs[1]
    if group.kind is GroupKind.SINGLE and group.legs[0].order_type in _STOP_TYPES:
        return group.legs[0]
    raise InvalidGroupEvent(f"group {group.id}: a {group.kind.value} group has no stop to replace")


def _replace_stop(group: OrderGroup, event: ReplaceStop) -> Decision:
    if group.state is GroupState.DONE:
        raise InvalidGroupEvent(f"group {group.id}: ReplaceStop after the group finished")
    leg = _stop_leg(group)
    if is_done(leg) or leg.ref in group.cancel_requested:
        raise InvalidGroupEvent(
            f"group {group.id}: cannot move the stop of {leg.ref}, it is {leg.status.value}"
            f"{' and being cancelled' if leg.ref in group.cancel_requested else ''}")
    price = event.new_price
    if price == leg.stop_price:
        return group, ()
    try:
        moved = validate(replace(leg, stop_price=price))
    except InvalidOrder as exc:
        raise InvalidGroupEvent(f"group {group.id}: ReplaceStop: {exc}") from None
    if group.kind is GroupKind.BRACKET:
        tp = group.legs[2]
        assert tp.limit_price is not None and price is not None
        long_exit = leg.side is Side.SELL
        if price >= tp.limit_price if long_exit else price <= tp.limit_price:
            raise InvalidGroupEvent(
                f"group {group.id}: ReplaceStop new_price={price} is invalid; expected "
                f"{'below' if long_exit else 'above'} the take-profit {tp.limit_price}")
    group = _put(group, moved)
    if leg.status is OrderStatus.CREATED:
        return group, ()
    return group, (ModifyOrder(order=moved),)


def decide(group: OrderGroup, event: Event) -> Decision:
    """Return the group after `event` and the commands to send, in order.

    Raises InvalidGroupEvent for an event that does not fit (unknown leg, wrong state), and the
    order errors (InvalidTransition, InvalidExecution, DuplicateExecution) a leg update raises.
    """
    match event:
        case Start():
            return _start(group, event)
        case LegAccepted():
            return _leg_accepted(group, event)
        case LegStatus():
            return _leg_status(group, event)
        case LegExecution():
            return _leg_execution(group, event)
        case LegRejected():
            return _leg_rejected(group, event)
        case CancelGroup():
            return _cancel_group(group, event)
        case CancelEntry():
            return _cancel_entry(group, event)
        case ReplaceStop():
            return _replace_stop(group, event)
    raise InvalidGroupEvent(f"group {group.id}: unknown event {type(event).__name__}")
