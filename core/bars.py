"""Time bars built from a stream of quotes: OHLC from the last price (else the mid), volume from deltas."""

from __future__ import annotations

from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Final

from core.errors import CoreError
from core.types import ZERO, Bar, Quote

_NS_PER_S: Final = 1_000_000_000
_TWO: Final = Decimal(2)


class InvalidBarInput(CoreError, ValueError):
    """A bar builder got an invalid bar length, a quote of another symbol or a bad price or volume."""


@dataclass(frozen=True, slots=True, kw_only=True)
class BarState:
    """One symbol's bar builder: the bar being built and the cumulative volume last seen.

    `open_bar.ts_ns` is the start of its bucket (a multiple of the bar length since the epoch).
    `last_volume` is the quote's cumulative (session) volume at the last priced quote; a bar's
    volume is the sum of the increases since then, so coalescing quotes loses no traded volume.
    """

    symbol: str
    bar_seconds: int
    open_bar: Bar | None = None
    last_volume: Decimal | None = None

    @property
    def bar_ns(self) -> int:
        """Return the bar length in nanoseconds."""
        return self.bar_seconds * _NS_PER_S


def new_state(symbol: str, bar_seconds: int) -> BarState:
    """Return an empty bar builder for `symbol` with bars of `bar_seconds`."""
    if not isinstance(symbol, str) or not symbol:
        raise InvalidBarInput(f"symbol={symbol!r} is invalid; expected a non-empty symbol")
    if isinstance(bar_seconds, bool) or not isinstance(bar_seconds, int) or bar_seconds < 1:
        raise InvalidBarInput(f"bar_seconds={bar_seconds!r} is invalid; expected an integer >= 1")
    return BarState(symbol=symbol, bar_seconds=bar_seconds)


def bucket_start(ts_ns: int, bar_seconds: int) -> int:
    """Return the start of the `bar_seconds` bucket holding `ts_ns`."""
    bar_ns = bar_seconds * _NS_PER_S
    return ts_ns - ts_ns % bar_ns


def quote_price(quote: Quote) -> Decimal | None:
    """Return the quote's last price, else the bid/ask midpoint, else None."""
    if quote.last is not None:
        return quote.last
    if quote.bid is not None and quote.ask is not None:
        return (quote.bid + quote.ask) / _TWO
    return None


def close_due(state: BarState, now_ns: int) -> tuple[BarState, tuple[Bar, ...]]:
    """Return the state with the open bar closed if its bucket ended by `now_ns`, and that bar."""
    bar = state.open_bar
    if bar is None or now_ns < bar.ts_ns + state.bar_ns:
        return state, ()
    return replace(state, open_bar=None), (bar,)


def _check(state: BarState, quote: Quote, price: Decimal | None) -> None:
    if quote.symbol != state.symbol:
        raise InvalidBarInput(f"quote for {quote.symbol!r} given to the {state.symbol} bar builder")
    if price is not None and (not price.is_finite() or price <= 0):
        raise InvalidBarInput(f"{state.symbol}: quote price {price!r} is invalid; expected > 0")
    if not quote.volume.is_finite() or quote.volume < 0:
        raise InvalidBarInput(f"{state.symbol}: quote volume {quote.volume!r} is invalid; expected >= 0")


def _volume_delta(state: BarState, volume: Decimal) -> Decimal:
    if state.last_volume is None or volume == 0:
        # Zero is "no volume reported yet" (IB's tick 8 not received), not a session restart.
        # What traded before the first quote we saw belongs to no bar of ours.
        return ZERO
    if volume >= state.last_volume:
        return volume - state.last_volume
    return volume  # the cumulative count restarted (a new session): all of it is new


def update(state: BarState, quote: Quote) -> tuple[BarState, tuple[Bar, ...]]:
    """Return the state after one quote and the bars it closed (oldest first; none or one).

    A quote in a later bucket closes the open bar (a gap leaves no empty bars) and opens the
    next. A quote without a price closes a due bar but builds nothing. A quote older than the
    open bar's bucket belongs to a bar already closed: it changes nothing, and its volume goes
    to the next bar through the cumulative count.
    """
    price = quote_price(quote)
    _check(state, quote, price)
    state, closed = close_due(state, quote.ts_ns)
    if price is None:
        return state, closed
    start = bucket_start(quote.ts_ns, state.bar_seconds)
    bar = state.open_bar
    if bar is not None and start < bar.ts_ns:
        return state, closed
    volume = _volume_delta(state, quote.volume)
    if bar is None:
        bar = Bar(symbol=state.symbol, ts_ns=start, open=price, high=price, low=price, close=price,
                  volume=volume)
    else:
        bar = replace(bar, high=max(bar.high, price), low=min(bar.low, price), close=price,
                      volume=bar.volume + volume)
    baseline = state.last_volume if quote.volume == 0 else quote.volume
    return replace(state, open_bar=bar, last_volume=baseline), closed


def reset_open_bar(state: BarState) -> BarState:
    """Return the state without its open bar or volume baseline (resume after a gap in the quotes)."""
    return replace(state, open_bar=None, last_volume=None)
