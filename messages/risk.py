"""Risk protocol: the decision on each order intent, and the system's trading state."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from messages.base import Message
from messages.orders import OrderIntent


class TradingState(str, Enum):
    ACTIVE = "ACTIVE"
    REDUCE_ONLY = "REDUCE_ONLY"  # exits and protective orders only; no new or larger positions
    HALTED = "HALTED"            # no new orders; resting protective orders stay at the broker


@dataclass(frozen=True, slots=True, kw_only=True)
class RiskDecision(Message):
    """Base of the risk manager's answer to one OrderIntent."""

    intent: OrderIntent


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderApproved(RiskDecision):
    """The intent passed every limit and goes on to an order group."""


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderDenied(RiskDecision):
    """The intent broke `limit` (e.g. "max_position"); `detail` says by how much."""

    limit: str
    detail: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class TradingStateChanged(Message):
    """The trading state moved from `previous` to `state`."""

    state: TradingState
    previous: TradingState
    reason: str = ""
