"""Performance analytics: round-trip trades from fills, and the metrics a trader judges a system by."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from enum import StrEnum
from types import MappingProxyType
from typing import Final
from zoneinfo import ZoneInfo

from core.errors import InvalidAnalyticsInput, InvalidExecution
from core.position import share
from core.types import ZERO, Side

TRADING_DAYS: Final = 252
_HUNDRED: Final = Decimal(100)
_NS: Final = 1_000_000_000
# A partial close releases cost × closed / open, and a fill through zero splits its commission
# the same way, with core.position.share itself: the trades' realized P&L adds up to the
# position's to the last digit.
_NO_MARKS: Final[Mapping[str, Decimal]] = MappingProxyType({})


class TradeSide(StrEnum):
    LONG = "LONG"
    SHORT = "SHORT"


@dataclass(frozen=True, slots=True, kw_only=True)
class Fill:
    """One of our fills, joined to its order group and the intent (rule, protective stop) behind it."""

    exec_id: str
    symbol: str
    side: Side
    quantity: Decimal
    price: Decimal
    commission: Decimal = ZERO
    ts_ns: int = 0
    group_id: str = ""
    rule: str = ""
    stop: Decimal | None = None

    def __post_init__(self) -> None:
        if not self.exec_id or not self.symbol:
            raise InvalidExecution(f"a fill needs an exec id and a symbol, got {self.exec_id!r} {self.symbol!r}")
        if not self.quantity.is_finite() or self.quantity <= 0:
            raise InvalidExecution(f"fill {self.exec_id}: quantity must be positive, got {self.quantity}")
        # Zero is a real fill price: options that expire worthless are booked at 0.
        if not self.price.is_finite() or self.price < 0:
            raise InvalidExecution(f"fill {self.exec_id}: price must be finite and not negative, got {self.price}")
        if not self.commission.is_finite():
            raise InvalidExecution(f"fill {self.exec_id}: commission must be finite, got {self.commission}")
        if self.stop is not None and (not self.stop.is_finite() or self.stop < 0):
            raise InvalidExecution(f"fill {self.exec_id}: stop must be finite and not negative, got {self.stop}")


@dataclass(frozen=True, slots=True, kw_only=True)
class Trade:
    """One round trip of one symbol: from the fill that leaves a flat position to the one that flattens it.

    `quantity` is the largest absolute position; `entry_price` the quantity-weighted average of
    the fills in the trade's direction, `exit_price` of the fills against it (None before any).
    P&L uses average cost like core/position.py: a trade still open (`closed_ns` 0) carries what
    its partial closes realized so far, and `open_quantity` at `open_cost` (price × quantity at
    average cost) still to be marked. `r_multiple` = net_pnl / (|entry_price − stop| × quantity)
    with the stop of the opening fill; None without a stop or when the stop is at the entry.
    """

    symbol: str
    side: TradeSide
    opened_ns: int
    closed_ns: int = 0
    quantity: Decimal
    entry_price: Decimal
    exit_price: Decimal | None = None
    gross_pnl: Decimal = ZERO
    commissions: Decimal = ZERO
    net_pnl: Decimal = ZERO
    r_multiple: Decimal | None = None
    rule: str = ""
    stop: Decimal | None = None
    fills: int = 0
    open_quantity: Decimal = ZERO
    open_cost: Decimal = ZERO
    last_price: Decimal = ZERO
    last_ns: int = 0

    @property
    def is_open(self) -> bool:
        return self.closed_ns == 0

    @property
    def direction(self) -> int:
        """Return +1 for a long trade and -1 for a short one."""
        return 1 if self.side is TradeSide.LONG else -1


class _Open:
    """The mutable accumulator of one trade while round_trips walks the fills."""

    __slots__ = ("symbol", "direction", "opened_ns", "closed_ns", "rule", "stop", "max_qty",
                 "open_qty", "cost", "entry_qty", "entry_value", "exit_qty", "exit_value",
                 "gross", "commissions", "fills", "last_price", "last_ns")

    def __init__(self, fill: Fill, direction: int, quantity: Decimal, commission: Decimal) -> None:
        self.symbol = fill.symbol
        self.direction = direction
        self.opened_ns = fill.ts_ns
        self.closed_ns = 0
        self.rule = fill.rule
        self.stop = fill.stop
        value = quantity * fill.price
        self.max_qty = self.open_qty = self.entry_qty = quantity
        self.cost = self.entry_value = value
        self.exit_qty = self.exit_value = self.gross = ZERO
        self.commissions = commission
        self.fills = 1
        self.last_price = fill.price
        self.last_ns = fill.ts_ns

    def trade(self) -> Trade:
        entry = self.entry_value / self.entry_qty
        net = self.gross - self.commissions
        r = None
        if self.stop is not None:
            risk = abs(entry - self.stop) * self.max_qty
            r = net / risk if risk else None
        return Trade(
            symbol=self.symbol, side=TradeSide.LONG if self.direction > 0 else TradeSide.SHORT,
            opened_ns=self.opened_ns, closed_ns=self.closed_ns, quantity=self.max_qty,
            entry_price=entry, exit_price=self.exit_value / self.exit_qty if self.exit_qty else None,
            gross_pnl=self.gross, commissions=self.commissions, net_pnl=net, r_multiple=r,
            rule=self.rule, stop=self.stop, fills=self.fills, open_quantity=self.open_qty,
            open_cost=self.cost, last_price=self.last_price, last_ns=self.last_ns)


def round_trips(fills: Iterable[Fill]) -> tuple[Trade, ...]:
    """Return the round-trip trades of `fills` (in time order), ordered by opening; a repeated exec id counts once.

    A fill through zero closes the trade with the part that flattens it and opens the next trade
    with the remainder; its commission is split between them in proportion to the quantities, and
    it counts as a fill of both.
    """
    order: list[_Open] = []
    live: dict[str, _Open] = {}
    seen: set[str] = set()
    for fill in fills:
        if fill.exec_id in seen:
            continue
        seen.add(fill.exec_id)
        q = fill.quantity
        sign = fill.side.sign
        t = live.get(fill.symbol)
        if t is None:
            t = live[fill.symbol] = _Open(fill, sign, q, fill.commission)
            order.append(t)
            continue
        t.fills += 1
        t.last_price = fill.price
        t.last_ns = fill.ts_ns
        if sign == t.direction:
            value = q * fill.price
            t.open_qty += q
            t.cost += value
            t.entry_qty += q
            t.entry_value += value
            t.commissions += fill.commission
            if t.open_qty > t.max_qty:
                t.max_qty = t.open_qty
            continue
        closed = q if q < t.open_qty else t.open_qty
        released = share(t.cost, closed, t.open_qty)
        t.gross += t.direction * (closed * fill.price - released)
        t.cost -= released
        t.open_qty -= closed
        t.exit_qty += closed
        t.exit_value += closed * fill.price
        commission = share(fill.commission, closed, q)
        t.commissions += commission
        if t.open_qty:
            continue
        t.closed_ns = fill.ts_ns
        del live[fill.symbol]
        if closed < q:
            nxt = live[fill.symbol] = _Open(fill, sign, q - closed, fill.commission - commission)
            order.append(nxt)
    return tuple(t.trade() for t in order)


# ---------------------------------------------------------------- metrics


@dataclass(frozen=True, slots=True, kw_only=True)
class DailyPnl:
    """The net P&L of the trades closed on one exchange day, and its return on the capital."""

    day: date
    pnl: Decimal
    ret: Decimal


@dataclass(frozen=True, slots=True, kw_only=True)
class EquityPoint:
    """Equity after a close; `drawdown` (≤ 0) is equity − the peak so far, `drawdown_pct` its % of that peak."""

    ts_ns: int
    equity: Decimal
    drawdown: Decimal
    drawdown_pct: Decimal


@dataclass(frozen=True, slots=True, kw_only=True)
class Breakdown:
    """Closed trades of one symbol or one rule: count, win rate, net P&L and expectancy."""

    key: str
    trades: int
    win_rate: Decimal
    net_pnl: Decimal
    expectancy: Decimal


@dataclass(frozen=True, slots=True, kw_only=True)
class Metrics:
    """The performance of a list of trades; see `metrics` for every formula. Money is Decimal."""

    capital: Decimal
    realized_pnl: Decimal
    unrealized_pnl: Decimal
    commissions: Decimal
    net_pnl: Decimal
    trades: int
    open_trades: int
    winners: int
    losers: int
    win_rate: Decimal | None
    gross_wins: Decimal
    gross_losses: Decimal
    profit_factor: Decimal | None
    expectancy: Decimal | None
    avg_r: Decimal | None
    daily: tuple[DailyPnl, ...]
    sharpe: float | None
    sortino: float | None
    equity: tuple[EquityPoint, ...]
    max_drawdown: Decimal
    max_drawdown_pct: Decimal
    max_drawdown_ns: int
    exposure: float | None
    first_ns: int
    last_ns: int
    by_symbol: tuple[Breakdown, ...]
    by_rule: tuple[Breakdown, ...]


class _DayOf:
    """Exchange day of a timestamp, remembering the last day's bounds (closes come mostly in order)."""

    __slots__ = ("zone", "day", "start", "end")

    def __init__(self, zone: ZoneInfo) -> None:
        self.zone = zone
        self.day = date.min
        self.start = self.end = 0

    def __call__(self, ts_ns: int) -> date:
        if not self.start <= ts_ns < self.end:
            self.day = datetime.fromtimestamp(ts_ns // _NS, self.zone).date()
            # Bounds from local midnights: a DST day is 23 or 25 hours long.
            self.start = int(datetime.combine(self.day, time(), self.zone).timestamp()) * _NS
            nxt = self.day + timedelta(days=1)
            self.end = int(datetime.combine(nxt, time(), self.zone).timestamp()) * _NS
        return self.day


def _breakdowns(groups: Mapping[str, list[Decimal]]) -> tuple[Breakdown, ...]:
    out = []
    for key in sorted(groups):
        nets = groups[key]
        n = len(nets)
        total = sum(nets, ZERO)
        out.append(Breakdown(key=key, trades=n, win_rate=Decimal(sum(1 for x in nets if x > 0)) / n,
                             net_pnl=total, expectancy=total / n))
    return tuple(out)


def _ratios(returns: list[float]) -> tuple[float | None, float | None]:
    n = len(returns)
    if n < 2:
        return None, None
    mean = math.fsum(returns) / n
    variance = math.fsum((r - mean) ** 2 for r in returns) / (n - 1)
    downside = math.fsum(min(r, 0.0) ** 2 for r in returns) / n
    scale = math.sqrt(TRADING_DAYS)
    sharpe = mean / math.sqrt(variance) * scale if variance > 0 else None
    sortino = mean / math.sqrt(downside) * scale if downside > 0 else None
    return sharpe, sortino


def _exposure(trades: list[Trade], first: int, last: int) -> float | None:
    span = last - first
    if span <= 0:
        return None
    held = 0
    start = end = first
    for t in sorted(trades, key=lambda t: t.opened_ns):
        stop = t.closed_ns if t.closed_ns else last
        if t.opened_ns > end:
            held += end - start
            start = t.opened_ns
            end = stop
        elif stop > end:
            end = stop
    held += end - start
    return held / span


def metrics(trades: Iterable[Trade], *, capital: Decimal, marks: Mapping[str, Decimal] = _NO_MARKS,
            zone: ZoneInfo) -> Metrics:
    """Return the performance of `trades` on `capital`; open trades are valued at `marks` (else their last fill).

    - realized_pnl = Σ gross P&L of every trade (closed, and what open ones realized in partial
      closes); commissions = Σ of every trade's; unrealized_pnl = Σ over open trades of
      direction × (open_quantity × mark − open_cost); net_pnl = realized + unrealized − commissions.
    - Only closed trades count below. A winner has net P&L > 0, a loser < 0 (zero is neither).
      win_rate = winners / trades; profit_factor = Σ winners' net / |Σ losers' net| (None without
      losers); expectancy = Σ net / trades; avg_r = mean r_multiple of the closed trades having one.
    - daily: Σ net P&L of the trades closed on each exchange day (`zone`), days with a close only;
      ret = pnl / capital. sharpe = mean(ret) / sample stdev(ret) × √252; sortino = mean(ret) /
      √(Σ min(ret, 0)² / days) × √252; both None under 2 days or with a zero denominator.
    - equity: capital at the first trade's opening, then capital + cumulative net P&L at each close
      (in close order); drawdown = equity − running peak; drawdown_pct = drawdown / peak × 100.
      max_drawdown is the largest −drawdown (money), max_drawdown_pct the largest −drawdown_pct,
      max_drawdown_ns the time from the peak before the largest money drawdown to the first point
      back at that peak, or to the last point when it never got back.
    - exposure = time with any position open / (last fill − first fill), an open trade counting as
      open up to the last fill; None when that span is empty.
    - by_symbol / by_rule: per key (the rule "" for fills no rule caused), sorted by key.
    """
    if not capital.is_finite() or capital <= 0:
        raise InvalidAnalyticsInput(f"capital must be a positive amount, got {capital}")
    for symbol, price in marks.items():
        if not price.is_finite() or price < 0:
            raise InvalidAnalyticsInput(f"mark of {symbol} must be finite and not negative, got {price}")
    all_trades = list(trades)
    closed = sorted((t for t in all_trades if not t.is_open), key=lambda t: t.closed_ns)
    realized = sum((t.gross_pnl for t in all_trades), ZERO)
    commissions = sum((t.commissions for t in all_trades), ZERO)
    unrealized = ZERO
    for t in all_trades:
        if t.is_open:
            mark = marks.get(t.symbol, t.last_price)
            unrealized += t.direction * (t.open_quantity * mark - t.open_cost)

    n = len(closed)
    wins = [t.net_pnl for t in closed if t.net_pnl > 0]
    losses = [t.net_pnl for t in closed if t.net_pnl < 0]
    gross_wins = sum(wins, ZERO)
    gross_losses = -sum(losses, ZERO)
    total = sum((t.net_pnl for t in closed), ZERO)
    rs = [t.r_multiple for t in closed if t.r_multiple is not None]

    day_of = _DayOf(zone)
    daily_sum: dict[date, Decimal] = {}
    by_symbol: dict[str, list[Decimal]] = {}
    by_rule: dict[str, list[Decimal]] = {}
    first = min((t.opened_ns for t in all_trades), default=0)
    last = max((t.closed_ns or t.last_ns for t in all_trades), default=0)
    equity: list[EquityPoint] = [EquityPoint(ts_ns=first, equity=capital, drawdown=ZERO,
                                             drawdown_pct=ZERO)] if all_trades else []
    value = peak = capital
    peak_ns = first
    max_dd = max_dd_pct = ZERO
    dd_from, dd_to = 0, None   # the largest money drawdown's peak, and when equity got back to it
    for t in closed:
        day = day_of(t.closed_ns)
        daily_sum[day] = daily_sum.get(day, ZERO) + t.net_pnl
        by_symbol.setdefault(t.symbol, []).append(t.net_pnl)
        by_rule.setdefault(t.rule, []).append(t.net_pnl)
        value += t.net_pnl
        if value >= peak:
            if dd_to is None:
                dd_to = t.closed_ns
            peak, peak_ns = value, t.closed_ns
        drawdown = value - peak
        pct = drawdown / peak * _HUNDRED
        equity.append(EquityPoint(ts_ns=t.closed_ns, equity=value, drawdown=drawdown, drawdown_pct=pct))
        if -drawdown > max_dd:
            # A new record can only come inside the current episode (below the current peak).
            max_dd, dd_from, dd_to = -drawdown, peak_ns, None
        if -pct > max_dd_pct:
            max_dd_pct = -pct
    max_dd_ns = 0
    if max_dd:
        max_dd_ns = (dd_to if dd_to is not None else equity[-1].ts_ns) - dd_from

    daily = tuple(DailyPnl(day=d, pnl=p, ret=p / capital) for d, p in sorted(daily_sum.items()))
    sharpe, sortino = _ratios([float(d.ret) for d in daily])
    return Metrics(
        capital=capital, realized_pnl=realized, unrealized_pnl=unrealized, commissions=commissions,
        net_pnl=realized + unrealized - commissions, trades=n, open_trades=len(all_trades) - n,
        winners=len(wins), losers=len(losses),
        win_rate=Decimal(len(wins)) / n if n else None,
        gross_wins=gross_wins, gross_losses=gross_losses,
        profit_factor=gross_wins / gross_losses if gross_losses else None,
        expectancy=total / n if n else None,
        avg_r=sum(rs, ZERO) / len(rs) if rs else None,
        daily=daily, sharpe=sharpe, sortino=sortino, equity=tuple(equity),
        max_drawdown=max_dd, max_drawdown_pct=max_dd_pct, max_drawdown_ns=max_dd_ns,
        exposure=_exposure(all_trades, first, last), first_ns=first, last_ns=last,
        by_symbol=_breakdowns(by_symbol), by_rule=_breakdowns(by_rule))
