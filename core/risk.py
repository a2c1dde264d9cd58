"""The pre-trade risk gate: limits on each order intent, the account it is checked against, the loss ladder."""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import date
from decimal import Decimal
from enum import StrEnum
from typing import Final

from core.config import RiskConfig
from core.errors import InvalidRiskInput
from core.types import ZERO, OrderType, Side

WINDOW_NS: Final = 60_000_000_000  # the order-rate window: max_orders_per_minute counts (now - 60 s, now]
_SECOND: Final = 1_000_000_000     # the window's bucket
_HUNDRED: Final = Decimal(100)
_DAY: Final = re.compile(r"\d{4}-\d{2}-\d{2}")


class Mode(StrEnum):
    """The trading state; same values as messages.risk.TradingState (core does not import messages)."""

    ACTIVE = "ACTIVE"
    REDUCE_ONLY = "REDUCE_ONLY"  # exits and protective orders only
    HALTED = "HALTED"            # no rule runs, working entries cancelled; only exits pass


class Limit(StrEnum):
    """What a denial names; the value is the config key where one exists."""

    TRADING_STATE = "trading_state"
    INVALID = "invalid_intent"
    MARKET_PRICE = "market_price"
    MAX_ORDER_QUANTITY = "max_order_quantity"
    MAX_ORDER_NOTIONAL = "max_order_notional"
    PRICE_COLLAR = "price_collar_pct"
    MAX_POSITION = "max_position_per_symbol"
    MAX_GROSS = "max_gross_exposure"
    MAX_NET = "max_net_exposure"
    MAX_OPEN_ORDERS = "max_open_orders"
    ORDER_RATE = "max_orders_per_minute"
    REDUCE_ONLY = "reduce_only"


@dataclass(frozen=True, slots=True, kw_only=True)
class Proposal:
    """One order intent as risk sees it; `quantity` is the entry leg's (bracket children only protect it)."""

    intent_id: str
    symbol: str
    side: Side
    quantity: Decimal
    order_type: OrderType
    limit_price: Decimal | None = None
    stop_price: Decimal | None = None
    market_price: Decimal | None = None  # the placer's last trade (or mid): collar and notional reference
    legs: int = 1                        # orders the intent places: open-order and rate limits count them
    reduce_only: bool = False            # claimed by the placer, checked against the real position
    operator: bool = False               # an operator's flatten (checked like any exit)


@dataclass(frozen=True, slots=True, kw_only=True)
class Holding:
    """One symbol's position as the bus reports it; `net_pnl` is cumulative after commissions."""

    symbol: str
    quantity: Decimal = ZERO
    mark: Decimal | None = None
    net_pnl: Decimal = ZERO


@dataclass(frozen=True, slots=True, kw_only=True)
class Working:
    """An approved intent whose order group has not finished; `pending` is its unfilled signed entry."""

    intent_id: str
    symbol: str
    legs: int
    pending: Decimal


@dataclass(frozen=True, slots=True, kw_only=True)
class Account:
    """Everything the gate checks an intent against."""

    mode: Mode = Mode.ACTIVE
    mode_reason: str = ""
    halted_by_loss: bool = False  # the loss ladder (not the operator) set the current mode
    day: str = ""                 # the exchange date "YYYY-MM-DD" the day P&L counts from
    day_start_pnl: Decimal = ZERO
    holdings: tuple[Holding, ...] = ()
    working: tuple[Working, ...] = ()
    # The order-rate window in one-second buckets, oldest first: (second = ns // 1e9, legs approved in
    # it). Its size is bounded by the window (61 entries), not by the order rate.
    sent: tuple[tuple[int, int], ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Verdict:
    """The gate's answer; a denial names the first limit broken and says by how much."""

    approved: bool
    limit: Limit | None = None
    detail: str = ""
    reducing: bool = False


# ---------------------------------------------------------------------------------------------
# Formatting: plain Decimals, never an exponent
# ---------------------------------------------------------------------------------------------


def _n(value: Decimal | int) -> str:
    return format(value, "f") if isinstance(value, Decimal) else str(value)


def _money(value: Decimal) -> str:
    """Money with at least two decimals (4E+3 -> 4000.00)."""
    exponent = value.as_tuple().exponent
    return format(value, ".2f") if isinstance(exponent, int) and exponent > -2 else format(value, "f")


def _signed(value: Decimal) -> str:
    return ("+" if value > 0 else "") + _n(value)


def _pct(value: Decimal) -> str:
    short = format(value, ".1f")
    if Decimal(short) == value:
        return short
    long = format(value, ".4f").rstrip("0")
    return long + "0" if long.endswith(".") else long


def _over(what: str, value: str, key: str, limit: Decimal | int, by: str) -> str:
    return f"{what} {value} > {key} {_n(limit)} (by {by})"


# ---------------------------------------------------------------------------------------------
# The check
# ---------------------------------------------------------------------------------------------


def _deny(limit: Limit, detail: str, reducing: bool = False) -> Verdict:
    return Verdict(approved=False, limit=limit, detail=detail, reducing=reducing)


def _invalid(p: Proposal) -> str:
    if not p.symbol:
        return "symbol is empty"
    if not p.intent_id:
        return "intent_id is empty"
    if not p.quantity.is_finite() or p.quantity <= ZERO:
        return f"quantity {_n(p.quantity)} is not > 0"
    for name, price in (("limit price", p.limit_price), ("stop price", p.stop_price)):
        if price is not None and (not price.is_finite() or price <= ZERO):
            return f"{name} {_n(price)} is not > 0"
    if p.legs < 1:
        return f"legs {p.legs} < 1"
    return ""


def _market(p: Proposal) -> Decimal | None:
    # A non-positive or non-finite reference is no reference: it gives neither a collar nor a
    # notional, and it must not make an exit (which needs neither) invalid.
    m = p.market_price
    return m if m is not None and m.is_finite() and m > ZERO else None


def _holdings(account: Account) -> dict[str, Holding]:
    return {h.symbol: h for h in account.holdings}


def _position(account: Account, symbol: str) -> Decimal:
    for h in account.holdings:
        if h.symbol == symbol:
            return h.quantity
    return ZERO


def _pending(account: Account, symbol: str) -> Decimal:
    return sum((w.pending for w in account.working if w.symbol == symbol), ZERO)


def _sign(value: Decimal) -> int:
    return (value > ZERO) - (value < ZERO)


def is_reducing(position: Decimal, signed_quantity: Decimal) -> bool:
    """Return whether an order of `signed_quantity` only shrinks `position` (never through zero)."""
    return (position != ZERO and _sign(signed_quantity) == -_sign(position)
            and abs(signed_quantity) <= abs(position))


def _trading_state(account: Account, p: Proposal, s: Decimal, q: Decimal, reducing: bool) -> str:
    why = f"trading is {account.mode}" + (f" ({account.mode_reason})" if account.mode_reason else "")
    order = f"{p.side.value} {_n(p.quantity)} {p.symbol}"
    # HALTED stops the rules (the symbols run none) and new exposure; an exit still passes: one
    # already under way when the halt came (its protection was cancelled first) must not be left
    # half done, and an operator's flatten must work.
    if account.mode == Mode.HALTED and not reducing:
        return f"{why}: {order} would not reduce the position {_n(q)} (only exits may pass)"
    if account.mode == Mode.REDUCE_ONLY and not reducing:
        return f"{why}: {order} would not reduce the position {_n(q)} (to {_n(q + s)})"
    return ""


def _collar(limits: RiskConfig, p: Proposal, market: Decimal | None) -> str:
    if market is None:
        return ""
    for name, price in (("limit", p.limit_price), ("stop", p.stop_price)):
        if price is None:
            continue
        distance = abs(price - market)
        # compared without dividing, so "at the collar" is exact
        if distance * _HUNDRED > limits.price_collar_pct * market:
            pct = distance * _HUNDRED / market
            return (f"{name} {_n(price)} is {_pct(pct)}% from the market {_n(market)} > "
                    f"price_collar_pct {_n(limits.price_collar_pct)} "
                    f"(by {_pct(pct - limits.price_collar_pct)} points)")
    return ""


def _exposures(account: Account, p: Proposal, price: Decimal, s: Decimal) -> tuple[Decimal, Decimal]:
    """Return gross and net exposure after the order: (position + pending) × mark per symbol.

    A symbol without a mark counts 0, except the proposal's own, valued at the order's price.
    """
    held = _holdings(account)
    symbols = dict.fromkeys([*held, *(w.symbol for w in account.working), p.symbol])
    gross = net = ZERO
    for symbol in symbols:
        h = held.get(symbol)
        exposure = (h.quantity if h else ZERO) + _pending(account, symbol)
        if symbol == p.symbol:
            value = (exposure + s) * price
        else:
            mark = h.mark if h is not None else None
            value = exposure * mark if mark is not None and mark.is_finite() else ZERO
        gross += abs(value)
        net += value
    return gross, net


def _in_window(second: int, now_ns: int) -> bool:
    # A bucket counts while any part of its second is inside (now - 60 s, now]: a leg counts for 60
    # to 61 s, never less (the limit errs on the strict side).
    return (second + 1) * _SECOND > now_ns - WINDOW_NS and second * _SECOND <= now_ns


def _recent(account: Account, now_ns: int) -> int:
    return sum(legs for second, legs in account.sent if _in_window(second, now_ns))


def check(limits: RiskConfig, account: Account, p: Proposal, now_ns: int) -> Verdict:
    """Return the verdict on proposal `p` against `limits` and `account`: the first limit broken wins."""
    invalid = _invalid(p)
    if not invalid and any(w.intent_id == p.intent_id for w in account.working):
        # the intent id is its order group's durable id: two live groups under one id would be
        # two orders for one decision
        invalid = f"intent {p.intent_id} is already working"
    if invalid:
        return _deny(Limit.INVALID, invalid)

    q = _position(account, p.symbol)
    s = p.quantity * p.side.sign
    reducing = is_reducing(q, s)

    if state := _trading_state(account, p, s, q, reducing):
        return _deny(Limit.TRADING_STATE, state, reducing)
    if p.reduce_only and not reducing:
        return _deny(Limit.REDUCE_ONLY,
                     f"reduce-only {p.side.value} {_n(p.quantity)} {p.symbol} would not reduce the "
                     f"position {_n(q)} (to {_n(q + s)})", reducing)

    market = _market(p)
    if collar := _collar(limits, p, market):
        return _deny(Limit.PRICE_COLLAR, collar, reducing)

    if reducing:
        # a full exit is never blocked by size or count limits
        return Verdict(approved=True, reducing=True)

    if market is None and p.limit_price is None:
        return _deny(Limit.MARKET_PRICE,
                     f"no market price for {p.symbol} and no limit price: the notional of "
                     f"{p.order_type.value} {p.side.value} {_n(p.quantity)} cannot be computed")
    price = next(x for x in (p.limit_price, p.stop_price, market) if x is not None)

    if p.quantity > limits.max_order_quantity:
        return _deny(Limit.MAX_ORDER_QUANTITY,
                     _over("quantity", _n(p.quantity), "max_order_quantity", limits.max_order_quantity,
                           _n(p.quantity - limits.max_order_quantity)))
    notional = p.quantity * price
    if notional > limits.max_order_notional:
        return _deny(Limit.MAX_ORDER_NOTIONAL,
                     _over("notional", _money(notional), "max_order_notional",
                           limits.max_order_notional, _money(notional - limits.max_order_notional))
                     + f"; {_n(p.quantity)} x {_n(price)}")

    pending = _pending(account, p.symbol)
    after = q + pending + s
    if abs(after) > limits.max_position_per_symbol:
        shown = _n(after) if after >= ZERO else f"{_n(after)} (short {_n(-after)})"
        return _deny(Limit.MAX_POSITION,
                     _over("position after the order", shown, "max_position_per_symbol",
                           limits.max_position_per_symbol,
                           _n(abs(after) - limits.max_position_per_symbol))
                     + f"; position {_n(q)}, pending {_signed(pending)}, order {_signed(s)}")

    gross, net = _exposures(account, p, price, s)
    if gross > limits.max_gross_exposure:
        return _deny(Limit.MAX_GROSS,
                     _over("gross exposure after the order", _money(gross), "max_gross_exposure",
                           limits.max_gross_exposure, _money(gross - limits.max_gross_exposure)))
    if abs(net) > limits.max_net_exposure:
        shown = _money(net) if net >= ZERO else f"{_money(net)} (short {_money(-net)})"
        return _deny(Limit.MAX_NET,
                     _over("net exposure after the order", shown, "max_net_exposure",
                           limits.max_net_exposure, _money(abs(net) - limits.max_net_exposure)))

    open_orders = sum(w.legs for w in account.working) + p.legs
    if open_orders > limits.max_open_orders:
        return _deny(Limit.MAX_OPEN_ORDERS,
                     _over("open orders with this intent", str(open_orders), "max_open_orders",
                           limits.max_open_orders, str(open_orders - limits.max_open_orders)))

    sent = _recent(account, now_ns) + p.legs
    if sent > limits.max_orders_per_minute:
        return _deny(Limit.ORDER_RATE,
                     _over("orders in the last 60 s with this intent", str(sent),
                           "max_orders_per_minute", limits.max_orders_per_minute,
                           str(sent - limits.max_orders_per_minute)))

    return Verdict(approved=True)


# ---------------------------------------------------------------------------------------------
# Account updates
# ---------------------------------------------------------------------------------------------


# Denials that a stale count of the symbol's position can cause (the gate counts it from the bus,
# which may lag the symbol's own journaled position by the time an exit is asked for).
POSITION_LIMITS: Final = frozenset({Limit.TRADING_STATE, Limit.REDUCE_ONLY, Limit.MAX_POSITION,
                                    Limit.MAX_GROSS, Limit.MAX_NET})


def position_of(account: Account, symbol: str) -> Decimal:
    """Return the signed quantity of `symbol` the account holds (0 if none)."""
    return _position(account, symbol)


def with_position(account: Account, symbol: str, quantity: Decimal) -> Account:
    """Return `account` holding `quantity` of `symbol` (its mark and P&L kept): a fresher count of it."""
    old = next((h for h in account.holdings if h.symbol == symbol), None)
    return position_changed(account, Holding(symbol=symbol, quantity=quantity,
                                             mark=old.mark if old is not None else None,
                                             net_pnl=old.net_pnl if old is not None else ZERO))


def decide(limits: RiskConfig, account: Account, p: Proposal, now_ns: int) -> tuple[Account, Verdict]:
    """Check `p`; when approved, return the account with it working and its legs counted as sent."""
    verdict = check(limits, account, p, now_ns)
    if not verdict.approved:
        return account, verdict
    pending = ZERO if verdict.reducing else p.quantity * p.side.sign
    working = Working(intent_id=p.intent_id, symbol=p.symbol, legs=p.legs, pending=pending)
    return replace(account, working=(*account.working, working), sent=_count(account.sent, now_ns, p.legs)), verdict


def _count(sent: tuple[tuple[int, int], ...], now_ns: int, legs: int) -> tuple[tuple[int, int], ...]:
    """Return the window's buckets with `legs` more approved now and the buckets out of the window dropped."""
    second = now_ns // _SECOND
    kept = [(s, n) for s, n in sent if (s + 1) * _SECOND > now_ns - WINDOW_NS]
    if kept and kept[-1][0] == second:
        kept[-1] = (second, kept[-1][1] + legs)
    else:
        kept.append((second, legs))
        kept.sort()
    return tuple(kept)


def group_finished(account: Account, intent_id: str) -> Account:
    """Return the account without the working intent `intent_id` (an unknown id changes nothing)."""
    working = tuple(w for w in account.working if w.intent_id != intent_id)
    return account if len(working) == len(account.working) else replace(account, working=working)


def position_changed(account: Account, holding: Holding) -> Account:
    """Replace the symbol's holding; its change in the direction of pending entries consumes them FIFO."""
    for name, value in (("quantity", holding.quantity), ("net_pnl", holding.net_pnl),
                        ("mark", holding.mark)):
        if value is not None and not value.is_finite():
            raise InvalidRiskInput(f"holding {holding.symbol}: {name} {value} is not a finite number")
    before = _position(account, holding.symbol)
    if any(h.symbol == holding.symbol for h in account.holdings):
        holdings = tuple(holding if h.symbol == holding.symbol else h for h in account.holdings)
    else:
        holdings = (*account.holdings, holding)

    # A fill of a working entry moves its exposure from pending into the position; a change the
    # other way (an exit, a stop-out) leaves the entries' pending as it is.
    change = holding.quantity - before
    direction = _sign(change)
    left = abs(change)
    working = []
    for w in account.working:
        if left > ZERO and w.symbol == holding.symbol and _sign(w.pending) == direction:
            take = min(left, abs(w.pending))
            left -= take
            w = replace(w, pending=w.pending - take * direction)
        working.append(w)
    return replace(account, holdings=holdings, working=tuple(working))


def day_pnl(account: Account) -> Decimal:
    """Return the net P&L since the day began: the holdings' net_pnl minus the day's start."""
    return sum((h.net_pnl for h in account.holdings), ZERO) - account.day_start_pnl


def new_day(account: Account, day: str) -> Account:
    """Start exchange day `day` (YYYY-MM-DD): the day P&L counts from here; a loss-set mode lifts."""
    if not _DAY.fullmatch(day):
        raise InvalidRiskInput(f"day {day!r} is not YYYY-MM-DD")
    try:
        date.fromisoformat(day)
    except ValueError:
        raise InvalidRiskInput(f"day {day!r} is not a calendar date") from None
    if day == account.day:
        return account
    start = sum((h.net_pnl for h in account.holdings), ZERO)
    account = replace(account, day=day, day_start_pnl=start)
    if account.halted_by_loss:
        # the loss limit is per day; an operator's halt stays until the operator resumes
        account = replace(account, mode=Mode.ACTIVE, halted_by_loss=False,
                          mode_reason=f"new trading day {day}")
    return account


def assess(limits: RiskConfig, account: Account) -> tuple[Account, str]:
    """Apply the daily-loss ladder; return the account and the reason when the mode changed, else ""."""
    loss = -day_pnl(account)
    if loss <= ZERO:
        return account, ""
    halt_at = limits.daily_loss_limit
    reduce_at = limits.daily_loss_limit * limits.reduce_only_at_pct / _HUNDRED
    # the ladder only tightens: it never lifts a stricter mode, whoever set it
    if loss >= halt_at and account.mode != Mode.HALTED:
        mode = Mode.HALTED
        reason = f"daily loss {_money(loss)} reached daily_loss_limit {_n(halt_at)}: HALTED"
    elif loss >= reduce_at and account.mode == Mode.ACTIVE:
        mode = Mode.REDUCE_ONLY
        reason = (f"daily loss {_money(loss)} reached {_n(limits.reduce_only_at_pct)}% of "
                  f"daily_loss_limit {_n(halt_at)} ({_money(reduce_at)}): REDUCE_ONLY")
    else:
        return account, ""
    return replace(account, mode=mode, mode_reason=reason, halted_by_loss=True), reason


def set_mode(account: Account, mode: Mode, reason: str) -> Account:
    """Return the account in the operator's `mode` (halt, resume, reduce-only) for `reason`."""
    return replace(account, mode=Mode(mode), mode_reason=reason, halted_by_loss=False)

