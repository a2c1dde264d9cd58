"""Orders: the Order value, its status, the transition table with the real broker races, validation."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from enum import Enum

from core.types import ZERO, OrderType, Side, TimeInForce


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
