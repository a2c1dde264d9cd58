"""The backtest's market feed: bars from files become quotes, merged over symbols in a fixed order.

Each bar becomes `points` quotes spread evenly over its interval, along the same deterministic
path the simulator's bar replay takes (simulator/market.py, BarReplayModel): open, then low and
high (close >= open) or high and low (close < open), then close; the bar's volume is split over
the points (the remainder on the first ones). As in the simulator, bid = max(last - spread // 2
ticks, 1 tick) and ask = bid + spread ticks, each with `book_size` shares, and `volume` is the
New York day's cumulative volume. So a backtest and a live run on the simulator with the same
bars see the same prices.

A bar closes only when a later quote arrives (core/bars.py), so each symbol's stream ends with
one more quote at the end of its last bar: its close again, with no new volume.

Streams are merged by (time, symbol): ties between symbols always resolve the same way.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Final

from core.bar_data import FileBar, ny_date, price_ticks
from core.types import Quote

DEFAULT_TICK: Final = Decimal("0.01")


@dataclass(frozen=True, slots=True, kw_only=True)
class FeedParams:
    """How bars become quotes (the simulator's replay defaults)."""

    tick: Decimal = DEFAULT_TICK
    spread_ticks: int = 1
    book_size: int = 500
    points: int = 4

    def __post_init__(self) -> None:
        problems = []
        if not self.tick.is_finite() or self.tick <= 0:
            problems.append(f"tick must be > 0, got {self.tick}")
        if self.spread_ticks < 1:
            problems.append(f"spread_ticks must be >= 1, got {self.spread_ticks}")
        if self.book_size < 0:
            problems.append(f"book_size must be >= 0, got {self.book_size}")
        if self.points < 4:
            problems.append(f"points must be >= 4 (open, low, high, close), got {self.points}")
        if problems:
            raise ValueError("; ".join(problems))


def _path(bar: FileBar, points: int, tick: Decimal) -> list[int]:
    """The bar's prices in ticks at each point: O -> L -> H -> C (up bar) or O -> H -> L -> C."""
    o, h, lo, c = (price_ticks(p, tick) for p in (bar.open, bar.high, bar.low, bar.close))
    mid = (lo, h) if c >= o else (h, lo)
    anchors = [0, (points - 1) // 3, 2 * (points - 1) // 3, points - 1]
    values = [o, *mid, c]
    out: list[int] = []
    for i in range(points):
        k = max(j for j in range(3) if anchors[j] <= i) if i < points - 1 else 2
        x0, x1, y0, y1 = anchors[k], anchors[k + 1], values[k], values[k + 1]
        # round half to even, like numpy's rint in the simulator's replay
        out.append(int((Decimal(y0) + Decimal(y1 - y0) * Decimal(i - x0) / Decimal(x1 - x0)).to_integral_value()))
    return out


def bar_quotes(symbol: str, bars: Sequence[FileBar], bar_ns: int, params: FeedParams = FeedParams()
               ) -> Iterator[Quote]:
    """Yield the quotes of `bars` (one symbol, in time order), then the quote that closes the last bar."""
    if bar_ns <= 0:
        raise ValueError(f"bar_ns must be > 0, got {bar_ns}")
    tick, points = params.tick, params.points
    half, size = params.spread_ticks // 2, Decimal(params.book_size)
    step = bar_ns // points
    day, cumulative = None, 0
    last: Quote | None = None
    for bar in bars:
        if ny_date(bar.ts_ns) != day:
            day, cumulative = ny_date(bar.ts_ns), 0
        share, extra = divmod(bar.volume, points)
        for i, price in enumerate(_path(bar, points, tick)):
            traded = share + (1 if i < extra else 0)
            cumulative += traded
            bid = max(price - half, 1)
            last = Quote(symbol=symbol, bid=bid * tick, ask=(bid + params.spread_ticks) * tick, last=price * tick,
                         bid_size=size, ask_size=size, last_size=Decimal(traded), volume=Decimal(cumulative),
                         ts_ns=bar.ts_ns + i * step)
            yield last
    if last is not None and bars:
        closing_ts = bars[-1].ts_ns + bar_ns
        yield Quote(symbol=symbol, bid=last.bid, ask=last.ask, last=last.last, bid_size=size, ask_size=size,
                    last_size=Decimal(0), volume=last.volume, ts_ns=closing_ts)


def merged(streams: Mapping[str, Iterable[Quote]]) -> Iterator[Quote]:
    """Merge per-symbol quote streams (each in time order) by (time, symbol)."""
    keyed = [_keyed(symbol, stream) for symbol, stream in sorted(streams.items())]
    for _, _, _, quote in heapq.merge(*keyed):
        yield quote


def _keyed(symbol: str, stream: Iterable[Quote]) -> Iterator[tuple[int, str, int, Quote]]:
    for n, quote in enumerate(stream):
        yield quote.ts_ns, symbol, n, quote


def within(bars: Sequence[FileBar], from_ns: int | None = None, to_ns: int | None = None) -> tuple[FileBar, ...]:
    """Return the bars starting at or after `from_ns` and before `to_ns` (None: unbounded)."""
    return tuple(b for b in bars if (from_ns is None or b.ts_ns >= from_ns) and (to_ns is None or b.ts_ns < to_ns))
