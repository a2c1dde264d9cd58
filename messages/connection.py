"""Broker connection protocol: the connection's state and the broker's errors and notices."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from messages.base import Message


class ConnectionState(str, Enum):
    DISCONNECTED = "DISCONNECTED"
    CONNECTING = "CONNECTING"
    SYNCHRONIZING = "SYNCHRONIZING"  # connected; reconciling before any new order may leave
    READY = "READY"
    DEGRADED = "DEGRADED"            # socket up but TWS lost IB's servers (1100) or a farm (2110)


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectionStateChanged(Message):
    """The connection moved from `previous` to `state`; `code` is the IB code that caused it, if any."""

    state: ConnectionState
    previous: ConnectionState
    reason: str = ""
    code: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectionLost(Message):
    """The socket to TWS closed or stopped answering, or TWS lost IB (1100)."""

    reason: str = ""
    code: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectionRestored(Message):
    """The connection is back; `data_lost` (IB 1101, or a new socket) means data must be re-requested."""

    data_lost: bool = True
    code: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class BrokerSynchronized(Message):
    """Reconciliation after a (re)connect finished; orders may leave from `next_order_id` on."""

    next_order_id: int
    open_orders: int = 0
    executions: int = 0
    positions: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class BrokerError(Message):
    """An error or notice from TWS; `request_id` is IB's reqId (-1 for system notices)."""

    code: int
    message: str
    request_id: int = -1
    order_ref: str = ""
    symbol: str = ""
