"""Simulator market data: clocks, seeded random-walk and bar-replay models, IB-style history and 5 s bars.

Time is always passed in (epoch nanoseconds, UTC); no model reads the wall clock. Both models
cut time into *steps* at a fixed quote interval (default 250 ms, roughly IB's sampling of
top-of-book), and every step's prices, sizes and volume are a pure function of (model, step
index). `step_to` therefore gives the same quotes however a time range is chunked into calls,
and history built from the same steps joins the live stream exactly.

Conventions shared by both models (documented once here):

* Prices live on an integer tick grid (`tick`, default 0.01) and are never below one tick.
  Each step carries a *last* (trade) price; the book is derived from it with a fixed spread of
  `spread_ticks`: bid = max(1 tick, last - (spread_ticks // 2) ticks), ask = bid + spread_ticks
  ticks, so last always lies within [bid, ask] and every price view is a monotone function of
  last (history for BID/ASK/MIDPOINT is the TRADES history mapped through it).
* Quote.volume is the cumulative volume of the New York calendar day (IB tick 8), including
  the steps of that day before the stream started; Quote.last_size is the step's volume.
* Market time is continuous: the models trade around the clock. `use_rth` in history only
  filters intraday bars to 09:30-16:00 New York, Monday to Friday.
"""

from __future__ import annotations

import hashlib
import math
import re
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Final
from zoneinfo import ZoneInfo

import numpy as np

from core.bar_data import BadBarData, price_ticks, read_bars
from core.types import ZERO, Bar, Quote

NY: Final = ZoneInfo("America/New_York")
NS: Final = 1_000_000_000
DEFAULT_QUOTE_INTERVAL_NS: Final = 250_000_000
DEFAULT_TICK: Final = Decimal("0.01")
# Drift and volatility are annualised over the calendar year because market time is continuous.
SECONDS_PER_YEAR: Final = 365.25 * 86_400


def ny_ns(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> int:
    """Return epoch nanoseconds of a New York wall-clock time."""
    return int(datetime(year, month, day, hour, minute, second, tzinfo=NY).timestamp()) * NS


# Tuesday 2 January 2024, 09:30 New York: a regular session open.
DEFAULT_MARKET_START_NS: Final = ny_ns(2024, 1, 2, 9, 30)


# --------------------------------------------------------------------------------------------
# Errors


class MarketDataError(ValueError):
    """Invalid parameters or input for a market data model."""


class HistoricalRequestError(MarketDataError):
    """A historical data request TWS would refuse; `code` and `message` are what to send as ERR_MSG."""

    def __init__(self, code: int, message: str) -> None:
        self.code = code
        self.message = message
        super().__init__(f"{code}: {message}")


class ReplayFileError(MarketDataError):
    """A bar CSV cannot be replayed; names the file and the 1-based line (the header is line 1)."""

    def __init__(self, path: str, line: int, reason: str) -> None:
        self.path = path
        self.line = line
        self.reason = reason
        super().__init__(f"{path}:{line}: {reason}")


# --------------------------------------------------------------------------------------------
# Clocks


def _seconds_to_ns(seconds: float | int | Decimal) -> int:
    return int((Decimal(str(seconds)) * NS).to_integral_value())


class SteppedClock:
    """Market time that moves only when told to (tests, backtests)."""

    def __init__(self, start_ns: int = DEFAULT_MARKET_START_NS) -> None:
        self._now = int(start_ns)

    def now_ns(self) -> int:
        """Return the current market time in epoch nanoseconds."""
        return self._now

    def advance(self, seconds: float | int | Decimal) -> int:
        """Move market time forward by `seconds` (>= 0) and return the new time in ns."""
        return self.advance_ns(_seconds_to_ns(seconds))

    def advance_ns(self, ns: int) -> int:
        """Move market time forward by `ns` nanoseconds (>= 0) and return the new time."""
        if ns < 0:
            raise MarketDataError(f"a clock cannot go backwards ({ns} ns)")
        self._now += int(ns)
        return self._now


class AcceleratedClock:
    """Market time = start + (wall - wall0) x speed, for a wall time passed in or read from `wall`.

    `wall` (default time.monotonic) is only read by `now_ns()`; `market_ns_at` and `wall_at` are
    pure. `wall0` defaults to the wall time at construction.
    """

    def __init__(
        self,
        speed: float = 1.0,
        start_market_ns: int = DEFAULT_MARKET_START_NS,
        *,
        wall0: float | None = None,
        wall: Callable[[], float] = time.monotonic,
    ) -> None:
        if not (speed > 0 and math.isfinite(speed)):
            raise MarketDataError(f"clock speed must be a positive finite number, got {speed!r}")
        self.speed = float(speed)
        self.start_market_ns = int(start_market_ns)
        self._wall = wall
        self.wall0 = float(wall()) if wall0 is None else float(wall0)

    def market_ns_at(self, wall_s: float) -> int:
        """Return the market time (ns) at wall time `wall_s` (seconds, same origin as wall0)."""
        return self.start_market_ns + round((wall_s - self.wall0) * self.speed * NS)

    def wall_at(self, market_ns: int) -> float:
        """Return the wall time (seconds) at which market time reaches `market_ns`."""
        return self.wall0 + (market_ns - self.start_market_ns) / (self.speed * NS)

    def now_ns(self) -> int:
        """Return the current market time in ns, reading the injected wall clock."""
        return self.market_ns_at(self._wall())


# --------------------------------------------------------------------------------------------
# New York calendar helpers


_MIDNIGHT_CACHE: dict[date, int] = {}


def _midnight_ns(d: date) -> int:
    ns = _MIDNIGHT_CACHE.get(d)
    if ns is None:
        ns = _MIDNIGHT_CACHE[d] = ny_ns(d.year, d.month, d.day)
    return ns


def _ny_date(ns: int) -> date:
    return datetime.fromtimestamp(ns // NS, NY).date()


def _day_start_ns(ns: int) -> int:
    return _midnight_ns(_ny_date(ns))


def _next_day_start_ns(day_start_ns: int) -> int:
    return _midnight_ns(_ny_date(day_start_ns) + timedelta(days=1))


# --------------------------------------------------------------------------------------------
# Stream state and the shared step machinery


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamState:
    """Where one symbol's stream stands: the next step to emit and the day's volume so far."""

    next_step: int
    day_start_ns: int
    day_volume: int


@dataclass(frozen=True, slots=True, kw_only=True)
class SimBar(Bar):
    """A Bar plus the WAP and trade count that IB's bar messages carry (0 when not TRADES)."""

    wap: Decimal = ZERO
    count: int = 0


# One chunk of consecutive steps: times (ns), last ticks, bid size, ask size, volume (shares).
_Chunk = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]

WHAT_TO_SHOW: Final = frozenset({"TRADES", "MIDPOINT", "BID", "ASK"})


class _SteppedModel:
    """Quote stream and history over integer steps; subclasses define the steps."""

    symbol: str
    tick: Decimal
    spread_ticks: int
    quote_interval_ns: int

    def _init_cache(self) -> None:
        self._px: dict[int, Decimal] = {}
        self._sz: dict[int, Decimal] = {}
        self._half = self.spread_ticks // 2

    # ---- subclass hooks
    def last_step_at(self, ts_ns: int) -> int:
        """Return the index of the last step at or before `ts_ns` (-1 or lower when none)."""
        raise NotImplementedError

    def step_time_ns(self, step: int) -> int:
        """Return the market time of step `step`."""
        raise NotImplementedError

    def _chunks(self, k0: int, k1: int) -> Iterator[_Chunk]:
        raise NotImplementedError

    def _first_step(self) -> int:
        raise NotImplementedError

    # ---- stream
    def initial_state(self, at_ns: int | None = None) -> StreamState:
        """Return a state whose first `step_to(at_ns)` emits the quote current at `at_ns`."""
        first = self._first_step()
        k = first if at_ns is None else max(first, self.last_step_at(at_ns))
        day_start = _day_start_ns(self.step_time_ns(k))
        k_day = max(first, self.last_step_at(day_start - 1) + 1)
        volume = sum(int(c[4].sum()) for c in self._chunks(k_day, k)) if k_day < k else 0
        return StreamState(next_step=k, day_start_ns=day_start, day_volume=volume)

    def step_to(
        self, state: StreamState, market_ts_ns: int, *, max_quotes: int | None = None
    ) -> tuple[StreamState, tuple[Quote, ...]]:
        """Return the advanced state and the quotes due in (previous call, market_ts_ns].

        With `max_quotes`, a backlog longer than that is conflated: only the latest
        `max_quotes` quotes are built (volume still counts every skipped step).
        """
        k_hi = self.last_step_at(market_ts_ns)
        if k_hi < state.next_step:
            return state, ()
        if max_quotes is not None and k_hi - state.next_step + 1 > max_quotes:
            state = self._skip(state, k_hi + 1 - max(max_quotes, 0))
            if max_quotes <= 0:
                return state, ()
        chunks = list(self._chunks(state.next_step, k_hi + 1))
        if len(chunks) == 1:
            t, last, bsz, asz, vol = chunks[0]
        else:
            t, last, bsz, asz, vol = (np.concatenate(parts) for parts in zip(*chunks))
        cum, day_start, day_volume = _accumulate(state.day_start_ns, state.day_volume, t, vol)
        quotes = self._quotes(t, last, bsz, asz, vol, cum)
        return StreamState(next_step=k_hi + 1, day_start_ns=day_start, day_volume=day_volume), quotes

    def skip_to(self, state: StreamState, market_ts_ns: int) -> StreamState:
        """Return the state advanced to `market_ts_ns` without building quotes (a silenced symbol)."""
        return self._skip(state, self.last_step_at(market_ts_ns) + 1)

    def _skip(self, state: StreamState, k_end: int) -> StreamState:
        if k_end <= state.next_step:
            return state
        day_start, day_volume = state.day_start_ns, state.day_volume
        for t, _, _, _, vol in self._chunks(state.next_step, k_end):
            _, day_start, day_volume = _accumulate(day_start, day_volume, t, vol)
        return StreamState(next_step=k_end, day_start_ns=day_start, day_volume=day_volume)

    def _price(self, ticks: int) -> Decimal:
        d = self._px.get(ticks)
        if d is None:
            d = self._px[ticks] = Decimal(ticks) * self.tick
        return d

    def _size(self, shares: int) -> Decimal:
        d = self._sz.get(shares)
        if d is None:
            d = self._sz[shares] = Decimal(shares)
        return d

    def _quotes(self, t: np.ndarray, last: np.ndarray, bsz: np.ndarray, asz: np.ndarray,
                vol: np.ndarray, cum: np.ndarray) -> tuple[Quote, ...]:
        bid = np.maximum(last - self._half, 1)
        ask = bid + self.spread_ticks
        px, sz, sym = self._price, self._size, self.symbol
        return tuple(
            Quote(symbol=sym, bid=px(b), ask=px(a), last=px(lt), bid_size=sz(bs), ask_size=sz(az),
                  last_size=sz(v), volume=Decimal(c), ts_ns=ts)
            for ts, lt, b, a, bs, az, v, c in zip(
                t.tolist(), last.tolist(), bid.tolist(), ask.tolist(), bsz.tolist(),
                asz.tolist(), vol.tolist(), cum.tolist())
        )

    # ---- history
    def _price_view(self, ticks: int, what: str) -> Decimal:
        bid = max(1, ticks - self._half)
        if what == "TRADES":
            return self._price(ticks)
        if what == "BID":
            return self._price(bid)
        if what == "ASK":
            return self._price(bid + self.spread_ticks)
        return Decimal(2 * bid + self.spread_ticks) * self.tick / 2  # MIDPOINT

    def _aggregate(self, ks: np.ndarray, ke: np.ndarray, long_bars: bool) -> _Agg:
        raise NotImplementedError

    def _history(self, end_ts_ns: int, duration_s: int, spec: BarSize, what: str,
                 use_rth: bool) -> tuple[SimBar, ...]:
        starts, ends = _bar_grid(end_ts_ns - duration_s * NS, end_ts_ns, spec)
        if use_rth and spec.unit == "fixed":
            keep = [i for i, s in enumerate(starts) if _in_rth(s)]
            starts, ends = [starts[i] for i in keep], [ends[i] for i in keep]
        if len(starts) > MAX_HISTORY_BARS:
            raise HistoricalRequestError(162, "Historical Market Data Service error message:"
                                              "Time length exceed max.")
        ks = np.array([self.last_step_at(s - 1) + 1 for s in starts], dtype=np.int64)
        ke = np.array([self.last_step_at(min(e - 1, end_ts_ns)) for e in ends], dtype=np.int64)
        ks = np.maximum(ks, self._first_step())
        agg = self._aggregate(ks, ke, spec.seconds * NS >= BLOCK_STEPS * self.quote_interval_ns)
        bars = []
        for i, s in enumerate(starts):
            n = int(agg.count[i])
            if n == 0:
                continue
            o, h, lo, c = (int(x[i]) for x in (agg.open, agg.high, agg.low, agg.close))
            trades = what == "TRADES"
            vol = int(agg.volume[i])
            wap = ZERO
            if trades:
                wap = (Decimal(float(agg.pv[i])) * self.tick / vol if vol
                       else self._price(c)).quantize(Decimal("0.0001"))
            bars.append(SimBar(
                symbol=self.symbol, ts_ns=s, open=self._price_view(o, what),
                high=self._price_view(h, what), low=self._price_view(lo, what),
                close=self._price_view(c, what), volume=Decimal(vol) if trades else ZERO,
                wap=wap, count=n if trades else 0))
        return tuple(bars)


def _accumulate(day_start: int, base: int, t: np.ndarray, vol: np.ndarray
                ) -> tuple[np.ndarray, int, int]:
    """Return cumulative day volume per step (resetting at New York midnight), new day start, total."""
    cum = np.empty_like(vol)
    n, pos = len(t), 0
    while pos < n:
        nxt = _next_day_start_ns(day_start)
        end = int(np.searchsorted(t, nxt, side="left"))
        if end > pos:
            cum[pos:end] = np.cumsum(vol[pos:end]) + base
            base = int(cum[end - 1])
        if end >= n:
            break
        day_start, base, pos = _day_start_ns(int(t[end])), 0, end
    return cum, day_start, base


@dataclass(slots=True)
class _Agg:
    """Per-bar aggregates of last ticks; count == 0 means the bar has no steps.

    `pv` (sum of ticks x volume, for the WAP) is float64: exact below 2**53, and only the WAP
    (rounded to 4 places) depends on it.
    """

    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    pv: np.ndarray
    count: np.ndarray

    @classmethod
    def empty(cls, n: int) -> _Agg:
        z = np.zeros(n, dtype=np.int64)
        return cls(z.copy(), np.full(n, np.iinfo(np.int64).min), np.full(n, np.iinfo(np.int64).max),
                   z.copy(), z.copy(), np.zeros(n), z.copy())

    def merge_steps(self, ks: np.ndarray, ke: np.ndarray, k0: int, last: np.ndarray,
                    vol: np.ndarray) -> None:
        """Fold steps k0.. (arrays) into the bars they belong to; bars are disjoint and ordered."""
        k = np.arange(k0, k0 + len(last), dtype=np.int64)
        ids = np.searchsorted(ks, k, side="right") - 1
        valid = ids >= 0
        valid[valid] &= k[valid] <= ke[ids[valid]]
        if not valid.any():
            return
        ids, last, vol = ids[valid], last[valid], vol[valid]
        cut = np.flatnonzero(np.diff(ids)) + 1
        seg = np.concatenate(([0], cut))
        u = ids[seg]
        first = self.count[u] == 0
        self.open[u[first]] = last[seg[first]]
        np.maximum.at(self.high, u, np.maximum.reduceat(last, seg))
        np.minimum.at(self.low, u, np.minimum.reduceat(last, seg))
        self.close[u] = last[np.concatenate((cut - 1, [len(last) - 1]))]
        self.volume[u] += np.add.reduceat(vol, seg)
        self.pv[u] += np.add.reduceat(last.astype(np.float64) * vol, seg)
        self.count[u] += np.diff(np.concatenate((seg, [len(last)])))

    def merge_one(self, i: int, o: int, h: int, lo: int, c: int, v: int, pv: float, n: int) -> None:
        if self.count[i] == 0:
            self.open[i] = o
        self.high[i] = max(int(self.high[i]), h)
        self.low[i] = min(int(self.low[i]), lo)
        self.close[i] = c
        self.volume[i] += v
        self.pv[i] += pv
        self.count[i] += n


def _fine_aggregate(model: _SteppedModel, agg: _Agg, ks: np.ndarray, ke: np.ndarray,
                    sel: np.ndarray) -> None:
    """Aggregate the selected bars from every step (exact: the same steps the stream emits)."""
    sel = sel & (ke >= ks)
    if not sel.any():
        return
    sks, ske = ks[sel], ke[sel]
    idx = np.flatnonzero(sel)
    sub = _Agg.empty(len(idx))
    k_lo, k_hi = int(sks.min()), int(ske.max())
    if k_hi < k_lo:
        return
    k = k_lo
    for t, last, _, _, vol in model._chunks(k_lo, k_hi + 1):
        sub.merge_steps(sks, ske, k, last, vol)
        k += len(t)
    for name in ("open", "high", "low", "close", "volume", "pv", "count"):
        getattr(agg, name)[idx] = getattr(sub, name)


# --------------------------------------------------------------------------------------------
# Random walk


@dataclass(frozen=True, slots=True, kw_only=True)
class WalkParams:
    """Random-walk parameters; drift and volatility are annualised over the calendar year.

    The log price follows Brownian motion with drift (drift - volatility**2 / 2) per year, so
    `drift` is the expected simple return per year. `start_price` None derives a stable price in
    [10, 500) from the symbol. Book sizes are uniform in 1..max_book_lots lots; every step
    trades uniform 1..max_trade_lots lots (one trade per step).
    """

    start_price: Decimal | None = None
    drift: float = 0.0
    volatility: float = 0.25
    spread_ticks: int = 1
    tick: Decimal = DEFAULT_TICK
    lot: int = 100
    max_book_lots: int = 10
    max_trade_lots: int = 3
    quote_interval_ns: int = DEFAULT_QUOTE_INTERVAL_NS
    origin_ns: int = DEFAULT_MARKET_START_NS


def symbol_key(symbol: str) -> int:
    """Return a stable 64-bit key for a symbol (blake2b; Python's hash() is salted per process)."""
    return int.from_bytes(hashlib.blake2b(symbol.encode(), digest_size=8).digest(), "little")


def _zigzag(i: int) -> int:
    return 2 * i if i >= 0 else -2 * i - 1


_FINE, _COARSE = 0, 1
BLOCK_STEPS: Final = 4096             # steps per fine block (1024 s at 250 ms)
SUPER_BLOCKS: Final = 4096            # block boundaries per coarse superblock
HISTORY_FINE_STEPS: Final = 1 << 20   # bars within this many steps of a history's end are exact
# Bars shorter than a block have no boundary to build them from, so such requests are built
# from every step and limited to this many (about 24 days at 250 ms).
MAX_FINE_ONLY_STEPS: Final = 1 << 23
MAX_HISTORY_BARS: Final = 100_000
_FINE_CACHE: Final = 16
_MAX_LOG_TICKS: Final = math.log(1e15)


class RandomWalkModel(_SteppedModel):
    """Seeded geometric random walk for one symbol, addressable by step index in both directions.

    Construction (so that any step is reachable without walking from the origin): the log
    price at every BLOCK_STEPS-th step ("block boundary") is a coarse Gaussian walk from
    log(start_price) at the origin (step 0), generated forwards for later blocks and backwards
    for earlier ones; the steps inside a block are a Brownian bridge between its two
    boundaries. Each block and each superblock of boundaries has its own numpy Generator,
    seeded from (seed, symbol_key(symbol), kind, index). History before the origin is therefore
    the same walk run backwards from the start price, and history after it is exactly what was
    streamed.
    """

    def __init__(self, symbol: str, params: WalkParams | None = None, seed: int = 0) -> None:
        p = params or WalkParams()
        _validate_common(p.tick, p.spread_ticks, p.quote_interval_ns, p.lot)
        if not (p.volatility >= 0 and math.isfinite(p.volatility) and math.isfinite(p.drift)):
            raise MarketDataError(f"volatility must be >= 0 and finite, drift finite: {p!r}")
        if p.max_book_lots < 1 or p.max_trade_lots < 1:
            raise MarketDataError("max_book_lots and max_trade_lots must be >= 1")
        if seed < 0:
            raise MarketDataError(f"seed must be >= 0, got {seed}")
        self.symbol = symbol
        self.params = p
        self.seed = seed
        self.tick = p.tick
        self.spread_ticks = p.spread_ticks
        self.quote_interval_ns = p.quote_interval_ns
        self._key = symbol_key(symbol)
        if p.start_price is None:
            self.start_price = Decimal(1000 + self._key % 49_000) / 100
        else:
            self.start_price = p.start_price
        if self.start_price <= 0:
            raise MarketDataError(f"start_price must be > 0, got {self.start_price}")
        dt_years = p.quote_interval_ns / NS / SECONDS_PER_YEAR
        mu = (p.drift - p.volatility ** 2 / 2) * dt_years
        self._sigma_step = p.volatility * math.sqrt(dt_years)
        self._mu_block = mu * BLOCK_STEPS
        self._sigma_block = self._sigma_step * math.sqrt(BLOCK_STEPS)
        self._log_tick = math.log(float(p.tick))
        self._frac = np.arange(BLOCK_STEPS) / BLOCK_STEPS
        self._super_start: dict[int, float] = {0: math.log(float(self.start_price))}
        self._supers: OrderedDict[int, np.ndarray] = OrderedDict()
        self._blocks: OrderedDict[int, tuple[np.ndarray, ...]] = OrderedDict()
        self._init_cache()

    # ---- steps
    def last_step_at(self, ts_ns: int) -> int:
        return (ts_ns - self.params.origin_ns) // self.quote_interval_ns

    def step_time_ns(self, step: int) -> int:
        return self.params.origin_ns + step * self.quote_interval_ns

    def _first_step(self) -> int:
        return -(1 << 62)  # unbounded in the past

    def initial_state(self, at_ns: int | None = None) -> StreamState:
        """Return a state whose first `step_to(at_ns)` emits the quote current at `at_ns` (default origin)."""
        return super().initial_state(self.params.origin_ns if at_ns is None else at_ns)

    def _rng(self, kind: int, index: int) -> np.random.Generator:
        seq = np.random.SeedSequence([self.seed, self._key, kind, _zigzag(index)])
        return np.random.Generator(np.random.PCG64(seq))

    def _coarse_cum(self, j: int) -> np.ndarray:
        inc = self._rng(_COARSE, j).standard_normal(SUPER_BLOCKS)
        inc *= self._sigma_block
        inc += self._mu_block
        return np.cumsum(inc)

    def _super_start_of(self, j: int) -> float:
        starts = self._super_start
        if j not in starts:
            step = 1 if j > 0 else -1
            i = j - step
            while i not in starts:
                i -= step
            while i != j:
                if step > 0:
                    starts[i + 1] = starts[i] + float(self._coarse_cum(i)[-1])
                else:
                    starts[i - 1] = starts[i] - float(self._coarse_cum(i - 1)[-1])
                i += step
        return starts[j]

    def _superblock(self, j: int) -> np.ndarray:
        hit = self._supers.get(j)
        if hit is not None:
            self._supers.move_to_end(j)
            return hit
        start = self._super_start_of(j)
        c = self._coarse_cum(j)
        e = np.empty(SUPER_BLOCKS)
        e[0] = start
        e[1:] = start + c[:-1]
        self._supers[j] = e
        if len(self._supers) > 4:
            self._supers.popitem(last=False)
        return e

    def _boundary(self, b: int) -> float:
        return float(self._superblock(b // SUPER_BLOCKS)[b % SUPER_BLOCKS])

    def _boundaries(self, b0: int, b1: int) -> np.ndarray:
        """Return log prices at block boundaries b0..b1 inclusive."""
        parts = []
        b = b0
        while b <= b1:
            j = b // SUPER_BLOCKS
            hi = min(b1, (j + 1) * SUPER_BLOCKS - 1)
            parts.append(self._superblock(j)[b - j * SUPER_BLOCKS: hi - j * SUPER_BLOCKS + 1])
            b = hi + 1
        return np.concatenate(parts)

    def _block(self, b: int) -> tuple[np.ndarray, ...]:
        hit = self._blocks.get(b)
        if hit is not None:
            self._blocks.move_to_end(b)
            return hit
        p = self.params
        e0, e1 = self._boundary(b), self._boundary(b + 1)
        rng = self._rng(_FINE, b)
        w = np.cumsum(rng.standard_normal(BLOCK_STEPS))
        w *= self._sigma_step
        path = np.empty(BLOCK_STEPS)
        path[0] = 0.0
        path[1:] = w[:-1]
        path += self._frac * ((e1 - e0) - w[-1])
        path += e0
        last = self._ticks(path)
        bid = rng.integers(1, p.max_book_lots + 1, BLOCK_STEPS, dtype=np.int64) * p.lot
        ask = rng.integers(1, p.max_book_lots + 1, BLOCK_STEPS, dtype=np.int64) * p.lot
        vol = rng.integers(1, p.max_trade_lots + 1, BLOCK_STEPS, dtype=np.int64) * p.lot
        block = (last, bid, ask, vol)
        self._blocks[b] = block
        if len(self._blocks) > _FINE_CACHE:
            self._blocks.popitem(last=False)
        return block

    def _ticks(self, log_price: np.ndarray) -> np.ndarray:
        # Clipped so that exp() never overflows and prices stay within int64 ticks (and >= 1).
        x = np.clip(log_price - self._log_tick, -700.0, _MAX_LOG_TICKS)
        return np.maximum(np.rint(np.exp(x)).astype(np.int64), 1)

    def _chunks(self, k0: int, k1: int) -> Iterator[_Chunk]:
        k = k0
        while k < k1:
            b = k // BLOCK_STEPS
            i0 = k - b * BLOCK_STEPS
            i1 = min(BLOCK_STEPS, k1 - b * BLOCK_STEPS)
            last, bid, ask, vol = self._block(b)
            t = self.params.origin_ns + np.arange(k, k + i1 - i0, dtype=np.int64) * self.quote_interval_ns
            yield t, last[i0:i1], bid[i0:i1], ask[i0:i1], vol[i0:i1]
            k += i1 - i0

    # ---- history
    def _aggregate(self, ks: np.ndarray, ke: np.ndarray, long_bars: bool) -> _Agg:
        agg = _Agg.empty(len(ks))
        if not len(ks):
            return agg
        budget = HISTORY_FINE_STEPS if long_bars else MAX_FINE_ONLY_STEPS
        fine = ks >= int(ke.max()) - budget + 1
        _fine_aggregate(self, agg, ks, ke, fine)
        coarse = np.flatnonzero(~fine & (ke >= ks))
        if len(coarse):
            self._coarse_aggregate(agg, ks, ke, coarse)
        return agg

    def _coarse_aggregate(self, agg: _Agg, ks: np.ndarray, ke: np.ndarray, idx: np.ndarray) -> None:
        """Aggregate old bars from block-boundary prices only; volume is the expected volume.

        Open and close are the prices at the bar's first and last block boundary; high and low
        are the extremes over its boundaries (an approximation: the path between is not built).
        """
        p = self.params
        b_first = -(-int(ks[idx[0]]) // BLOCK_STEPS)
        b_last = int(ke[idx[-1]]) // BLOCK_STEPS + 1
        logp = self._boundaries(b_first - 1, b_last)
        ticks = self._ticks(logp)
        mean_vol = (1 + p.max_trade_lots) / 2 * p.lot
        for i in idx.tolist():
            lo_b = -(-int(ks[i]) // BLOCK_STEPS)
            hi_b = int(ke[i]) // BLOCK_STEPS
            if hi_b < lo_b:  # bar shorter than a block: use the boundary before it
                lo_b = hi_b
            seg = ticks[lo_b - (b_first - 1): hi_b - (b_first - 1) + 1]
            n = int(ke[i] - ks[i] + 1)
            o, c = int(seg[0]), int(seg[-1])
            v = int(round(mean_vol * n / p.lot)) * p.lot
            typical = (int(seg.max()) + int(seg.min()) + c) // 3
            agg.merge_one(i, o, int(seg.max()), int(seg.min()), c, v, float(typical) * v, n)


def _validate_common(tick: Decimal, spread_ticks: int, interval_ns: int, lot: int) -> None:
    if not tick > 0:
        raise MarketDataError(f"tick must be > 0, got {tick}")
    if spread_ticks < 1:
        raise MarketDataError(f"spread_ticks must be >= 1, got {spread_ticks}")
    if interval_ns <= 0:
        raise MarketDataError(f"quote_interval_ns must be > 0, got {interval_ns}")
    if lot < 1:
        raise MarketDataError(f"lot must be >= 1, got {lot}")


# --------------------------------------------------------------------------------------------
# Bar replay


@dataclass(frozen=True, slots=True, kw_only=True)
class ReplayParams:
    """Bar-replay parameters; `start_ns` shifts the series so its first bar starts there."""

    spread_ticks: int = 1
    tick: Decimal = DEFAULT_TICK
    book_size: int = 500
    quote_interval_ns: int = DEFAULT_QUOTE_INTERVAL_NS
    bar_ns: int | None = None
    start_ns: int | None = None


class BarReplayModel(_SteppedModel):
    """Replays OHLCV bars from a CSV as quotes: each bar becomes a deterministic intra-bar path.

    A bar with close >= open walks O -> L -> H -> C (dips first, ends near its high); a bar with
    close < open walks O -> H -> L -> C. The three legs get equal shares of the bar's steps and
    are linear in between, quantised to the tick, so the path hits O, H, L and C exactly when a
    bar has at least 4 steps. Volume is spread evenly (the remainder on the first steps). A bar
    lasts until the next bar or `bar_ns` (default: the smallest spacing in the file), whichever
    is sooner: gaps (nights, weekends) produce no quotes. CSV prices are rounded to the tick.

    CSV: header required with columns timestamp, open, high, low, close, volume (any order,
    case-insensitive, extra columns ignored). timestamp is epoch seconds or ISO 8601; ISO
    without an offset is New York local time; a bare date means New York midnight.
    """

    def __init__(self, symbol: str, path: str | Path, params: ReplayParams | None = None) -> None:
        p = params or ReplayParams()
        _validate_common(p.tick, p.spread_ticks, p.quote_interval_ns, 1)
        if p.book_size < 0:
            raise MarketDataError(f"book_size must be >= 0, got {p.book_size}")
        self.symbol = symbol
        self.params = p
        self.path = str(path)
        self.tick = p.tick
        self.spread_ticks = p.spread_ticks
        self.quote_interval_ns = p.quote_interval_ns
        rows = _read_bar_csv(self.path, p.tick)
        starts = np.array([r[0] for r in rows], dtype=np.int64)
        if p.start_ns is not None:
            starts += p.start_ns - int(starts[0])
        if p.bar_ns is not None:
            if p.bar_ns <= 0:
                raise MarketDataError(f"bar_ns must be > 0, got {p.bar_ns}")
            bar_ns = p.bar_ns
        elif len(starts) > 1:
            bar_ns = int(np.diff(starts).min())
        else:
            bar_ns = 60 * NS
        durations = np.minimum(np.append(np.diff(starts), bar_ns), bar_ns)
        self.bar_ns = bar_ns
        self.starts = starts
        self.ohlcv = np.array([r[1:] for r in rows], dtype=np.int64)  # ticks x4, volume
        self.steps = np.maximum(durations // p.quote_interval_ns, 1)
        self.offsets = np.concatenate(([0], np.cumsum(self.steps)))
        self.total_steps = int(self.offsets[-1])
        self._bars: OrderedDict[int, tuple[np.ndarray, np.ndarray]] = OrderedDict()
        self._init_cache()

    def last_step_at(self, ts_ns: int) -> int:
        j = int(np.searchsorted(self.starts, ts_ns, side="right")) - 1
        if j < 0:
            return -1
        i = min(int(self.steps[j]) - 1, (ts_ns - int(self.starts[j])) // self.quote_interval_ns)
        return int(self.offsets[j]) + i

    def step_time_ns(self, step: int) -> int:
        if step < 0:
            return int(self.starts[0]) + step * self.quote_interval_ns
        if step >= self.total_steps:
            return int(self.starts[-1]) + (step - int(self.offsets[-2])) * self.quote_interval_ns
        j = int(np.searchsorted(self.offsets, step, side="right")) - 1
        return int(self.starts[j]) + (step - int(self.offsets[j])) * self.quote_interval_ns

    def _first_step(self) -> int:
        return 0

    def exhausted(self, state: StreamState) -> bool:
        """Return True when every bar of the file has been streamed."""
        return state.next_step >= self.total_steps

    def _path(self, j: int) -> tuple[np.ndarray, np.ndarray]:
        hit = self._bars.get(j)
        if hit is not None:
            self._bars.move_to_end(j)
            return hit
        o, h, lo, c, v = (int(x) for x in self.ohlcv[j])
        n = int(self.steps[j])
        mid = (lo, h) if c >= o else (h, lo)
        if n >= 4:
            xs = [0, (n - 1) // 3, 2 * (n - 1) // 3, n - 1]
            last = np.rint(np.interp(np.arange(n), xs, [o, *mid, c])).astype(np.int64)
        else:
            last = np.array([o, *mid, c][-n:] if n > 1 else [c], dtype=np.int64)
        vol = np.full(n, v // n, dtype=np.int64)
        vol[: v % n] += 1
        self._bars[j] = (last, vol)
        if len(self._bars) > 8:
            self._bars.popitem(last=False)
        return last, vol

    def _chunks(self, k0: int, k1: int) -> Iterator[_Chunk]:
        k0, k1 = max(k0, 0), min(k1, self.total_steps)
        k = k0
        size = self.params.book_size
        while k < k1:
            j = int(np.searchsorted(self.offsets, k, side="right")) - 1
            i0 = k - int(self.offsets[j])
            i1 = min(int(self.steps[j]), k1 - int(self.offsets[j]))
            last, vol = self._path(j)
            t = int(self.starts[j]) + np.arange(i0, i1, dtype=np.int64) * self.quote_interval_ns
            book = np.full(i1 - i0, size, dtype=np.int64)
            yield t, last[i0:i1], book, book, vol[i0:i1]
            k += i1 - i0

    def _aggregate(self, ks: np.ndarray, ke: np.ndarray, long_bars: bool) -> _Agg:
        """Aggregate whole source bars from their OHLCV (the path hits them exactly), partial ones by step."""
        agg = _Agg.empty(len(ks))
        offs, steps = self.offsets, self.steps
        for i, (a, b) in enumerate(zip(ks.tolist(), ke.tolist())):
            a, b = max(a, 0), min(b, self.total_steps - 1)
            if b < a:
                continue
            j = int(np.searchsorted(offs, a, side="right")) - 1
            while j < len(steps) and int(offs[j]) <= b:
                s0, s1 = int(offs[j]), int(offs[j]) + int(steps[j]) - 1
                if a <= s0 and s1 <= b and steps[j] >= 4:
                    o, h, lo, c, v = (int(x) for x in self.ohlcv[j])
                    agg.merge_one(i, o, h, lo, c, v, (h + lo + c) / 3 * v, int(steps[j]))
                else:
                    last, vol = self._path(j)
                    x0, x1 = max(a, s0) - s0, min(b, s1) - s0 + 1
                    sl, sv = last[x0:x1], vol[x0:x1]
                    agg.merge_one(i, int(sl[0]), int(sl.max()), int(sl.min()), int(sl[-1]),
                                  int(sv.sum()), float((sl.astype(np.float64) * sv).sum()), x1 - x0)
                j += 1
        return agg


def _read_bar_csv(path: str, tick: Decimal) -> list[tuple[int, int, int, int, int, int]]:
    """Return (ts_ns, open, high, low, close ticks, volume) per row of a bar file (core.bar_data's format)."""
    try:
        bars, _ = read_bars(path)
    except BadBarData as exc:
        raise ReplayFileError(path, exc.problem.line, exc.problem.reason) from None
    return [(b.ts_ns, *(price_ticks(price, tick) for price in (b.open, b.high, b.low, b.close)), b.volume)
            for b in bars]


# --------------------------------------------------------------------------------------------
# Historical data: IB duration and bar size strings


@dataclass(frozen=True, slots=True, kw_only=True)
class BarSize:
    """A parsed IB bar size: fixed-length (`seconds`) or a calendar day, week or month."""

    text: str
    unit: str       # "fixed" | "day" | "week" | "month"
    seconds: int    # nominal length


_FIXED_BAR_SIZES: Final = {
    "1 secs": 1, "5 secs": 5, "10 secs": 10, "15 secs": 15, "30 secs": 30,
    "1 min": 60, "2 mins": 120, "3 mins": 180, "5 mins": 300, "10 mins": 600,
    "15 mins": 900, "20 mins": 1200, "30 mins": 1800,
    "1 hour": 3600, "2 hours": 7200, "3 hours": 10_800, "4 hours": 14_400, "8 hours": 28_800,
}
_CALENDAR_BAR_SIZES: Final = {
    "1 day": ("day", 86_400), "1W": ("week", 7 * 86_400), "1 week": ("week", 7 * 86_400),
    "1M": ("month", 30 * 86_400), "1 month": ("month", 30 * 86_400),
}
_LEGAL_BAR_SIZES: Final = ", ".join([*_FIXED_BAR_SIZES, "1 day", "1W", "1M"])
# IB's durations: S seconds, D days, W weeks, M months, Y years. Market time is continuous, so
# a day is 86,400 s, a month 30 days and a year 365 days.
_DURATION_UNITS: Final = {"S": 1, "D": 86_400, "W": 7 * 86_400, "M": 30 * 86_400, "Y": 365 * 86_400}
_DURATION_RE: Final = re.compile(r"(\d+) ([SDWMY])")
MAX_DURATION_S: Final = 20 * 365 * 86_400


def parse_duration(text: str) -> int:
    """Return the length in seconds of an IB duration string such as "60 S", "30 D" or "1 Y"."""
    m = _DURATION_RE.fullmatch(text)
    if m is None or int(m.group(1)) == 0:
        raise HistoricalRequestError(
            321, f"Error validating request.-'bP' : cause - Historical data duration format is "
                 f"invalid: {text!r}. Use '<integer> <unit>' with unit S, D, W, M or Y, e.g. '1 D'")
    seconds = int(m.group(1)) * _DURATION_UNITS[m.group(2)]
    if seconds > MAX_DURATION_S:
        raise HistoricalRequestError(
            162, "Historical Market Data Service error message:Time length exceed max.")
    return seconds


def parse_bar_size(text: str) -> BarSize:
    """Return the BarSize of an IB bar size string such as "5 secs", "1 min" or "1 day"."""
    if text in _FIXED_BAR_SIZES:
        return BarSize(text=text, unit="fixed", seconds=_FIXED_BAR_SIZES[text])
    if text in _CALENDAR_BAR_SIZES:
        unit, seconds = _CALENDAR_BAR_SIZES[text]
        return BarSize(text=text, unit=unit, seconds=seconds)
    raise HistoricalRequestError(
        321, f"Error validating request.-'bK' : cause - Historical data bar size setting is "
             f"invalid. Legal ones are: {_LEGAL_BAR_SIZES}")


def _bar_grid(start_ns: int, end_ns: int, spec: BarSize) -> tuple[list[int], list[int]]:
    """Return starts and ends of the New York-aligned bars whose start lies in (start_ns, end_ns]."""
    starts: list[int] = []
    ends: list[int] = []
    d = _ny_date(start_ns)
    last_day = _ny_date(end_ns)
    if spec.unit == "fixed":
        size = spec.seconds * NS
        while d <= last_day:
            m0, m1 = _midnight_ns(d), _midnight_ns(d + timedelta(days=1))
            j0 = max(0, (start_ns - m0) // size + 1)
            s = m0 + j0 * size
            while s < m1 and s <= end_ns:
                starts.append(s)
                ends.append(min(s + size, m1))
                s += size
            d += timedelta(days=1)
        return starts, ends
    if spec.unit == "week":
        d -= timedelta(days=d.weekday())
    elif spec.unit == "month":
        d = d.replace(day=1)
    while True:
        if spec.unit == "day":
            nxt = d + timedelta(days=1)
        elif spec.unit == "week":
            nxt = d + timedelta(days=7)
        else:
            nxt = (d.replace(day=28) + timedelta(days=4)).replace(day=1)
        s = _midnight_ns(d)
        if s > end_ns:
            break
        if s > start_ns:
            starts.append(s)
            ends.append(_midnight_ns(nxt))
        d = nxt
    return starts, ends


def _in_rth(ns: int) -> bool:
    dt = datetime.fromtimestamp(ns // NS, NY)
    minutes = dt.hour * 60 + dt.minute
    return dt.weekday() < 5 and 9 * 60 + 30 <= minutes < 16 * 60


MarketModel = RandomWalkModel | BarReplayModel


def historical_bars(
    model: MarketModel,
    symbol: str,
    end_ts_ns: int,
    duration: str,
    bar_size: str,
    what_to_show: str = "TRADES",
    *,
    use_rth: bool = False,
) -> tuple[SimBar, ...]:
    """Return the bars starting in (end - duration, end], built from the model's own steps.

    The last bar may be partial (it holds steps up to `end_ts_ns`, like TWS's current bar);
    bars with no steps are omitted. Pass the current market time as the end: the walk can
    generate the future too. TRADES bars carry volume, WAP and trade count; MIDPOINT, BID and
    ASK bars carry zeros there. For the random walk, bars more than HISTORY_FINE_STEPS steps
    before the end are built from block boundaries (approximate high/low, expected volume).
    """
    if symbol != model.symbol:
        raise MarketDataError(f"model is for {model.symbol!r}, not {symbol!r}")
    duration_s = parse_duration(duration)
    spec = parse_bar_size(bar_size)
    what = what_to_show.upper()
    if what not in WHAT_TO_SHOW:
        raise HistoricalRequestError(
            321, f"Error validating request.-'bO' : cause - whatToShow {what_to_show!r} is not "
                 f"supported by the simulator (use {', '.join(sorted(WHAT_TO_SHOW))})")
    if duration_s // spec.seconds > MAX_HISTORY_BARS:
        raise HistoricalRequestError(
            162, "Historical Market Data Service error message:Time length exceed max.")
    if isinstance(model, RandomWalkModel) and spec.seconds * NS < BLOCK_STEPS * model.quote_interval_ns:
        if duration_s * NS // model.quote_interval_ns > MAX_FINE_ONLY_STEPS:
            raise HistoricalRequestError(
                162, "Historical Market Data Service error message:Time length exceed max.")
    return model._history(end_ts_ns, duration_s, spec, what, use_rth)


# --------------------------------------------------------------------------------------------
# Real-time 5 s bars


class RealTimeBarAggregator:
    """Builds IB real-time bars (5 s, aligned to epoch multiples) from a symbol's quotes.

    Feed every quote of the stream in time order. A bar is emitted once a quote at or after its
    end arrives (or `flush` is called with such a time); intervals without quotes give no bar.
    TRADES uses last price and sums last_size; MIDPOINT, BID and ASK use the book and have no
    volume.
    """

    def __init__(self, symbol: str, what_to_show: str = "TRADES", bar_seconds: int = 5) -> None:
        what = what_to_show.upper()
        if what not in WHAT_TO_SHOW:
            raise MarketDataError(f"whatToShow {what_to_show!r} not supported ({sorted(WHAT_TO_SHOW)})")
        if bar_seconds <= 0:
            raise MarketDataError(f"bar_seconds must be > 0, got {bar_seconds}")
        self.symbol = symbol
        self.what_to_show = what
        self.bar_ns = bar_seconds * NS
        self._start: int | None = None
        self._o = self._h = self._l = self._c = ZERO
        self._vol = ZERO
        self._pv = ZERO
        self._n = 0
        self._last_ts = -(1 << 62)

    def _value(self, q: Quote) -> Decimal | None:
        if self.what_to_show == "TRADES":
            return q.last
        if self.what_to_show == "BID":
            return q.bid
        if self.what_to_show == "ASK":
            return q.ask
        return None if q.bid is None or q.ask is None else (q.bid + q.ask) / 2

    def feed(self, quote: Quote) -> tuple[SimBar, ...]:
        """Take one quote; return the bars it completed (zero or one)."""
        if quote.symbol != self.symbol:
            raise MarketDataError(f"aggregator for {self.symbol!r} got a {quote.symbol!r} quote")
        if quote.ts_ns < self._last_ts:
            raise MarketDataError(f"quote at {quote.ts_ns} is older than the previous one")
        self._last_ts = quote.ts_ns
        done = self.flush(quote.ts_ns)
        px = self._value(quote)
        if px is None:
            return done
        if self._start is None:
            self._start = quote.ts_ns - quote.ts_ns % self.bar_ns
            self._o = self._h = self._l = px
            self._vol = self._pv = ZERO
            self._n = 0
        self._h = max(self._h, px)
        self._l = min(self._l, px)
        self._c = px
        if self.what_to_show == "TRADES" and quote.last_size > 0:
            self._vol += quote.last_size
            self._pv += quote.last_size * px
            self._n += 1
        return done

    def flush(self, ts_ns: int) -> tuple[SimBar, ...]:
        """Return the bar in progress if `ts_ns` is at or past its end."""
        if self._start is None or ts_ns < self._start + self.bar_ns:
            return ()
        trades = self.what_to_show == "TRADES"
        wap = (self._pv / self._vol).quantize(Decimal("0.0001")) if trades and self._vol else (
            self._c if trades else ZERO)
        bar = SimBar(symbol=self.symbol, ts_ns=self._start, open=self._o, high=self._h,
                     low=self._l, close=self._c, volume=self._vol if trades else ZERO,
                     wap=wap, count=self._n)
        self._start = None
        return (bar,)


__all__ = [
    "AcceleratedClock", "BarReplayModel", "BarSize", "DEFAULT_MARKET_START_NS",
    "DEFAULT_QUOTE_INTERVAL_NS", "HistoricalRequestError", "MarketDataError", "MarketModel",
    "RandomWalkModel", "RealTimeBarAggregator", "ReplayFileError", "ReplayParams", "SimBar",
    "SteppedClock", "StreamState", "WalkParams", "historical_bars", "ny_ns", "parse_bar_size",
    "parse_duration", "symbol_key",
]
