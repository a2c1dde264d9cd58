"""Position protocol: position changes, broker positions for reconciliation, and position commands."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Self

from core.position import Position, PositionState, unrealized_pnl
from core.types import ZERO
from messages.base import Message


@dataclass(frozen=True, slots=True, kw_only=True)
class PositionChanged(Message):
    """A symbol's position after a fill, a mark or a level change (P&L gross, commissions apart)."""

    symbol: str
    quantity: Decimal = ZERO
    avg_cost: Decimal = ZERO
    realized_pnl: Decimal = ZERO
    unrealized_pnl: Decimal = ZERO
    commissions: Decimal = ZERO
    state: PositionState = PositionState.FLAT
    stop_loss: Decimal | None = None
    take_profit: Decimal | None = None
    trailing_stop: Decimal | None = None
    last_price: Decimal | None = None
    opened_ts_ns: int = 0

    @classmethod
    def of(cls, position: Position, *, cause: Message | None = None, ts_ns: int = 0) -> Self:
        """Return the event describing `position`, caused by `cause`."""
        return cls.caused_by(
            cause,
            ts_ns=ts_ns,
            symbol=position.symbol,
            quantity=position.quantity,
            avg_cost=position.avg_cost,
            realized_pnl=position.realized_pnl,
            # Without a last price there is nothing to mark against: report zero, not an error.
            unrealized_pnl=unrealized_pnl(position) if position.last_price is not None else ZERO,
            commissions=position.commissions,
            state=position.state,
            stop_loss=position.stop_loss,
            take_profit=position.take_profit,
            trailing_stop=position.trailing_stop,
            last_price=position.last_price,
            opened_ts_ns=position.opened_ts_ns,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class BrokerPositionReported(Message):
    """The broker's view of a position (`reqPositions`), reconciled against ours after a (re)connect."""

    symbol: str
    quantity: Decimal
    avg_cost: Decimal = ZERO


@dataclass(frozen=True, slots=True, kw_only=True)
class GetPositions(Message):
    """Ask for the positions, optionally of one symbol."""

    symbol: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class PositionsSnapshot(Message):
    """The answer to GetPositions: each symbol's latest PositionChanged."""

    positions: tuple[PositionChanged, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class ClosePosition(Message):
    """Close a symbol's position, or `quantity` of it (None = all), cancelling its entry orders."""

    symbol: str
    quantity: Decimal | None = None
    reason: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class MoveStop(Message):
    """Move a symbol's protective stop to `stop_price` (its working stop order follows).

    To the groups supervisor, `group_id` names the group whose stop moves.
    """

    symbol: str
    stop_price: Decimal
    reason: str = ""
    group_id: str = ""
