"""Order protocol: intents, group commands, legs to the broker connection, and the broker's order events."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from enum import Enum
from typing import TYPE_CHECKING

from core.orders import Order, OrderStatus
from core.types import ZERO, Execution, OrderType, Side, TimeInForce
from messages.base import Message

if TYPE_CHECKING:
    from thespian.actors import ActorAddress


class GroupKind(str, Enum):
    SINGLE = "SINGLE"
    BRACKET = "BRACKET"  # entry parent + take-profit/stop-loss children; only the last leg transmits
    OCO = "OCO"          # legs share one IB ocaGroup: a fill of one cancels the others at the broker


class GroupOutcome(str, Enum):
    FILLED = "FILLED"        # at least one leg filled; `filled` says how much of the entry
    CANCELLED = "CANCELLED"  # ended with nothing filled (our cancel, expiry, or IB's)
    REJECTED = "REJECTED"    # the broker refused a leg before anything filled


# ---------------------------------------------------------------- commands


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderIntent(Message):
    """A wish to trade, sent to the RiskManager: the order group to place and why (rule, signal).

    `intent_id` is the order group's id; `kind` and `legs` are the group (legs in transmit order,
    each with its durable ref). `stop_loss`/`take_profit` make it a bracket. `reduce_only` intents
    only shrink a position and stay allowed while trading is REDUCE_ONLY (risk still checks them
    against the real position); `operator` marks an operator's flatten, allowed even when HALTED.
    `market_price` is the placer's last trade (or mid) price, the reference for the price collar
    and the notional of a market order. `reply_to` receives the group's events (the symbols
    supervisor, a stable address).
    """

    intent_id: str
    symbol: str
    side: Side
    quantity: Decimal
    order_type: OrderType
    limit_price: Decimal | None = None
    stop_price: Decimal | None = None
    tif: TimeInForce = TimeInForce.DAY
    stop_loss: Decimal | None = None
    take_profit: Decimal | None = None
    rule: str = ""
    rules_version: str = ""
    signal_id: str = ""
    reduce_only: bool = False
    operator: bool = False
    market_price: Decimal | None = None
    trigger: str = ""      # what made the decision: "tick" (a quote closed a bar), "signal", "" (other)
    trigger_ts_ns: int = 0  # when that quote or signal arrived (the decision's latency counts from it)
    kind: GroupKind = GroupKind.SINGLE
    legs: tuple[Order, ...] = ()
    reply_to: ActorAddress | None = None

    @property
    def is_bracket(self) -> bool:
        return self.stop_loss is not None or self.take_profit is not None


@dataclass(frozen=True, slots=True, kw_only=True)
class PlaceOrderGroup(Message):
    """Start an order group: its legs in transmit order; `reply_to` receives the group's events.

    `started` (a core.order_group.OrderGroup) says the placer already submitted the legs itself
    (SubmitOrder with `unowned`, straight to the connection: two hops fewer on the way to the
    broker); the group actor then starts from that state and claims the legs (ClaimOrders), as
    a restarted group does, and never submits them again. `approval` is the id of the
    RiskManager's OrderApproved: the groups supervisor places nothing without one.
    """

    group_id: str
    kind: GroupKind
    symbol: str
    legs: tuple[Order, ...]
    intent_id: str = ""
    reply_to: ActorAddress | None = None
    started: object = None
    approval: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class CancelOrder(Message):
    """Cancel one order by its durable ref (to its group, or from the group to the connection)."""

    ref: str
    reason: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class CancelOrderGroup(Message):
    """Cancel every working leg of a group, or with `entry_only` only its entry (a bracket's children stay)."""

    group_id: str
    reason: str = ""
    entry_only: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class ModifyOrder(Message):
    """Change a working order; a None field stays as it is."""

    ref: str
    quantity: Decimal | None = None
    limit_price: Decimal | None = None
    stop_price: Decimal | None = None
    reason: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class SubmitOrder(Message):
    """Hand one leg to the broker connection; re-submitting a known ref modifies it (IB re-places by id).

    `transmit` is False for every bracket leg but the last, so IB holds the group until it is
    complete. `protective` legs (stops, exits) jump the pacing queue with cancels. An `unowned`
    order has no owner yet: the connection keeps what the broker says about it until its group
    claims it (ClaimOrders) and then replays it.
    """

    order: Order
    group_id: str = ""
    transmit: bool = True
    protective: bool = False
    reply_to: ActorAddress | None = None
    unowned: bool = False
    trigger: str = ""       # as OrderIntent.trigger: the PLACE_ORDER's latency is "<trigger>_to_order"
    trigger_ts_ns: int = 0

    @property
    def parent_ref(self) -> str:
        return self.order.parent_ref


@dataclass(frozen=True, slots=True, kw_only=True)
class SubmitOrders(Message):
    """Several SubmitOrders in one message, handled in order: a group's legs in one transmit.

    Thespian's TCP transport has one transmit in flight per target and waits for its
    acknowledgement, which a busy connection actor gives only between two of its handlers: three
    legs sent apart wait for three of them (tens of ms under a full quote load), one batch for one.
    """

    orders: tuple[SubmitOrder, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class GetOrders(Message):
    """Ask for the tracked orders, optionally of one symbol; done orders only when asked."""

    symbol: str = ""
    include_done: bool = False


# ---------------------------------------------------------------- events


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderEvent(Message):
    """Base of the broker's events about one order, keyed by its durable ref."""

    ref: str
    group_id: str = ""
    broker_id: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderSubmitted(OrderEvent):
    """The connection sent PLACE_ORDER for the leg under `broker_id` (the id high-water mark moves)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderAccepted(OrderEvent):
    """The broker acknowledged the order (its first openOrder/orderStatus after PLACE_ORDER)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderStatusChanged(OrderEvent):
    """The broker reported a new status; advisory for fills (executions are the truth), repeats dropped."""

    status: OrderStatus
    filled: Decimal = ZERO
    remaining: Decimal = ZERO
    avg_fill_price: Decimal = ZERO
    why_held: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderRejected(OrderEvent):
    """The broker refused the order or a modification of it."""

    code: int
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ExecutionReported(Message):
    """A fill from `execDetails`, de-duplicated by exec id at the connection."""

    execution: Execution
    group_id: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class CommissionReported(Message):
    """A commission report that came after its execution was passed on without it (IB sends it apart).

    It goes to the order's owner and, by `symbol`, to the symbol's position, which adds it once.
    """

    exec_id: str
    order_ref: str = ""
    symbol: str = ""
    commission: Decimal
    realized_pnl: Decimal | None = None
    currency: str = "USD"


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderGroupFinished(Message):
    """A group has no working legs left; its actor stops after sending this."""

    group_id: str
    symbol: str
    outcome: GroupOutcome
    filled: Decimal = ZERO
    reason: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class ExternalOrderDetected(Message):
    """The broker has an order the journal does not know (placed in TWS, or by another client)."""

    order: Order
    reason: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class OrdersSnapshot(Message):
    """The answer to GetOrders."""

    orders: tuple[Order, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class ClaimOrders(Message):
    """A restarted order group takes back its legs from the broker connection.

    From now on the connection routes the legs' events to `reply_to`, and it replays each leg's
    last status and every execution it has seen for them (the group dedupes by exec id).
    """

    group_id: str
    refs: tuple[str, ...] = ()
    reply_to: ActorAddress | None = None
