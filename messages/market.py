"""Market data protocol: subscriptions, coalesced quotes with their acknowledgement, bars, staleness."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from core.types import Bar, Quote
from messages.base import Message

if TYPE_CHECKING:
    from thespian.actors import ActorAddress


@dataclass(frozen=True, slots=True, kw_only=True)
class QuoteChannel:
    """Where a subscriber takes its quotes as datagrams (actors/quote_channel.py) instead of messages.

    `host`/`port` is the subscriber's UDP socket; `token` is a secret shared through this
    (thespian) message only, carried in every datagram, so nothing else can feed it quotes.
    """

    host: str
    port: int
    token: str


@dataclass(frozen=True, slots=True, kw_only=True)
class SubscribeMarketData(Message):
    """Start quotes (and bars of `bar_size_s`, 0 = none) for a symbol, delivered to `reply_to`.

    With a `channel`, the QuoteUpdates go to that UDP socket (acknowledged by datagram) rather
    than as thespian messages; without one, as messages acknowledged by QuoteProcessed.
    """

    symbol: str
    bar_size_s: int = 0
    reply_to: ActorAddress | None = None
    channel: QuoteChannel | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class UnsubscribeMarketData(Message):
    """Stop a subscription made with SubscribeMarketData."""

    symbol: str
    reply_to: ActorAddress | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class QuoteUpdate(Message):
    """The latest quote of a symbol; `coalesced` wire updates were merged into it.

    A subscriber has at most one QuoteUpdate in flight: the connection sends the next (latest)
    one only after the subscriber's QuoteProcessed (or the channel's acknowledgement datagram),
    because the TCP base carries ~2k msg/s.
    """

    quote: Quote
    coalesced: int = 1
    ack: bool = True  # False: no QuoteProcessed wanted (a backtest's broker runs every message to its end)


@dataclass(frozen=True, slots=True, kw_only=True)
class QuoteProcessed(Message):
    """A subscriber finished with its QuoteUpdate for `symbol`; the next one may be sent."""

    symbol: str


@dataclass(frozen=True, slots=True, kw_only=True)
class BarClosed(Message):
    """A bar of `bar_size_s` seconds completed."""

    bar: Bar
    bar_size_s: int = 60


@dataclass(frozen=True, slots=True, kw_only=True)
class GetHistoricalBars(Message):
    """Ask for the `count` bars of `bar_size_s` ending at `end_ns` (0 = now)."""

    symbol: str
    bar_size_s: int = 60
    count: int = 100
    end_ns: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class HistoricalBars(Message):
    """The answer to GetHistoricalBars, oldest bar first."""

    symbol: str
    bar_size_s: int = 60
    bars: tuple[Bar, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class MarketDataStale(Message):
    """No data arrived for a subscribed symbol for `silent_ns` (its last data at `last_ts_ns`)."""

    symbol: str
    last_ts_ns: int = 0
    silent_ns: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class MarketDataResumed(Message):
    """Data flows again for a symbol that was reported stale."""

    symbol: str
