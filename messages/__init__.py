"""Every message type the actors exchange; `__all__` lists them all and is the registry the bus reads."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

from messages.admin import (
    AdminCommand,
    AdminError,
    AdminErrorCode,
    AdminQuery,
    AdminReply,
    AdminTable,
    CancelAll,
    Flatten,
    GetStatus,
    Halt,
    LogLevel,
    QueryKind,
    ReloadRules,
    RestartActor,
    Resume,
    SetLogLevel,
    Shutdown,
    StatusSnapshot,
)
from messages.base import Message, new_id, seed_ids, type_names
from messages.connection import (
    BrokerError,
    BrokerSynchronized,
    ConnectionLost,
    ConnectionRestored,
    ConnectionState,
    ConnectionStateChanged,
)
from messages.lifecycle import (
    ActorFailed,
    ActorFinished,
    ActorQuarantined,
    ActorReady,
    ActorRestarted,
    ActorStatusSnapshot,
    HistogramData,
    ChildrenSnapshot,
    ChildStatus,
    ConfigureActor,
    DirectChannel,
    GetActorStatus,
    GetChildren,
    Peer,
    PeerMoved,
    Publish,
    Snapshot,
    StandBy,
    StandingBy,
    StartSystem,
    Subscribe,
    SymbolActorStarted,
    ToSymbol,
    Unsubscribe,
)
from messages.market import (
    BarClosed,
    GetHistoricalBars,
    HistoricalBars,
    MarketDataResumed,
    MarketDataStale,
    QuoteChannel,
    QuoteProcessed,
    QuoteUpdate,
    SubscribeMarketData,
    UnsubscribeMarketData,
)
from messages.orders import (
    CancelOrder,
    CancelOrderGroup,
    ClaimOrders,
    CommissionReported,
    ExecutionReported,
    ExternalOrderDetected,
    GetOrders,
    GroupKind,
    GroupOutcome,
    ModifyOrder,
    OrderAccepted,
    OrderEvent,
    OrderGroupFinished,
    OrderIntent,
    OrderRejected,
    OrdersSnapshot,
    OrderStatusChanged,
    OrderSubmitted,
    PlaceOrderGroup,
    SubmitOrder,
    SubmitOrders,
)
from messages.positions import (
    BrokerPositionReported,
    ClosePosition,
    GetPositions,
    MoveStop,
    PositionChanged,
    PositionsSnapshot,
)
from messages.risk import OrderApproved, OrderDenied, RiskDecision, TradingState, TradingStateChanged
from messages.signals import (
    Direction,
    PredictionSignal,
    ReplaySignals,
    SignalAccepted,
    SignalIgnored,
    SignalRejected,
    excerpt,
)
from messages.strategy import RulesLoaded, RulesRejected, RulesUpdated, StartSymbol

# Message types only: the enums (GroupKind, Direction, TradingState…), the Peer and ChildStatus
# values and the helpers are importable from here too, but are not messages.
__all__ = [
    # base
    "Message",
    # orders
    "OrderIntent",
    "PlaceOrderGroup",
    "CancelOrder",
    "CancelOrderGroup",
    "ModifyOrder",
    "SubmitOrder",
    "SubmitOrders",
    "GetOrders",
    "OrderEvent",
    "OrderSubmitted",
    "OrderAccepted",
    "OrderStatusChanged",
    "OrderRejected",
    "ExecutionReported",
    "CommissionReported",
    "OrderGroupFinished",
    "ExternalOrderDetected",
    "OrdersSnapshot",
    "ClaimOrders",
    # market
    "SubscribeMarketData",
    "UnsubscribeMarketData",
    "QuoteUpdate",
    "QuoteProcessed",
    "BarClosed",
    "GetHistoricalBars",
    "HistoricalBars",
    "MarketDataStale",
    "MarketDataResumed",
    # positions
    "PositionChanged",
    "BrokerPositionReported",
    "GetPositions",
    "PositionsSnapshot",
    "ClosePosition",
    "MoveStop",
    # signals
    "PredictionSignal",
    "ReplaySignals",
    "SignalRejected",
    "SignalAccepted",
    "SignalIgnored",
    # risk
    "RiskDecision",
    "OrderApproved",
    "OrderDenied",
    "TradingStateChanged",
    # connection
    "ConnectionStateChanged",
    "ConnectionLost",
    "ConnectionRestored",
    "BrokerSynchronized",
    "BrokerError",
    # lifecycle and bus
    "ConfigureActor",
    "ActorReady",
    "Snapshot",
    "ActorFailed",
    "ActorRestarted",
    "ActorQuarantined",
    "GetActorStatus",
    "ActorStatusSnapshot",
    "Subscribe",
    "Unsubscribe",
    "Publish",
    "PeerMoved",
    "DirectChannel",
    "ActorFinished",
    "ToSymbol",
    "SymbolActorStarted",
    "StartSystem",
    "GetChildren",
    "ChildrenSnapshot",
    "StandBy",
    "StandingBy",
    # admin
    "AdminCommand",
    "GetStatus",
    "Shutdown",
    "RestartActor",
    "SetLogLevel",
    "CancelAll",
    "ReloadRules",
    "Halt",
    "Resume",
    "Flatten",
    "AdminQuery",
    "StatusSnapshot",
    "AdminReply",
    "AdminTable",
    "AdminError",
    # strategy
    "RulesLoaded",
    "RulesRejected",
    "RulesUpdated",
    "StartSymbol",
]

MESSAGE_TYPES: Final[Mapping[str, type[Message]]] = MappingProxyType(
    {name: globals()[name] for name in __all__}
)


def message_type(name: str) -> type[Message]:
    """Return the message class called `name`; raise KeyError for a name that is not a message type."""
    try:
        return MESSAGE_TYPES[name]
    except KeyError:
        raise KeyError(f"unknown message type {name!r}") from None

