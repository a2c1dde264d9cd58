"""Domain values shared across core/, messages/ and the actors: sides, order types, executions, quotes, bars."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from enum import Enum

ZERO = Decimal(0)


class Side(str, Enum):
    BUY = "BUY"
    SELL = "SELL"

    @property
    def sign(self) -> int:
        """Return +1 for BUY and -1 for SELL."""
        return 1 if self is Side.BUY else -1

    @property
    def opposite(self) -> "Side":
        return Side.SELL if self is Side.BUY else Side.BUY


class OrderType(str, Enum):
    MKT = "MKT"
    LMT = "LMT"
    STP = "STP"
    STP_LMT = "STP LMT"
    TRAIL = "TRAIL"


class TimeInForce(str, Enum):
    DAY = "DAY"
    GTC = "GTC"
    IOC = "IOC"


@dataclass(frozen=True, slots=True, kw_only=True)
class Execution:
    """One fill as the broker reported it (`execDetails` + its commission report)."""

    exec_id: str
    order_id: int
    order_ref: str
    symbol: str
    side: Side
    quantity: Decimal
    price: Decimal
    commission: Decimal = ZERO
    ts_ns: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class Quote:
    """Top of book and last trade for one symbol at one moment."""

    symbol: str
    bid: Decimal | None = None
    ask: Decimal | None = None
    last: Decimal | None = None
    bid_size: Decimal = ZERO
    ask_size: Decimal = ZERO
    last_size: Decimal = ZERO
    volume: Decimal = ZERO
    ts_ns: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class Bar:
    """An OHLCV bar for one symbol; `ts_ns` is the bar's start."""

    symbol: str
    ts_ns: int
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal = ZERO
