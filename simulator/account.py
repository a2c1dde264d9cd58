"""Simulated IB account: cash, positions at IB-style average cost, P&L and reqAccountSummary values.

Conventions (what a paper TWS account shows for US stocks in one currency):

* `avg_cost` is IB's position avgCost: it includes commissions. Opening or adding to a long
  adds the commission to the cost (avg = (cost + commission) / shares); opening or adding to a
  short nets it from the proceeds (avg = (proceeds - commission) / shares). Reducing leaves
  avg_cost alone; the reduction realizes (price - avg_cost) x shares x direction minus its
  share of the commission. A fill that flips the position closes the old side and opens the
  new one at the fill price, splitting the commission pro rata between the two parts. So
  realized P&L includes both legs' commissions, as in IB's commission report, and
  NetLiquidation - starting cash == RealizedPnL + UnrealizedPnL at all times.
* A position that closes stays listed with quantity 0 and avg_cost 0 for the rest of the
  session, as TWS reports it to reqPositions.
* Margin is Reg-T for stocks: initial 50 % and maintenance 25 % of gross position value.
  BuyingPower is 4 x ExcessLiquidity (day-trading buying power of a margin account, floored at
  0). SMA is approximated as EquityWithLoanValue - Reg-T initial margin (floored at 0).
* Positions are marked at the last price given to `mark`; a fill marks its symbol at the fill
  price only when no mark exists yet. Values are plain decimal strings: money to 2 places.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Final

from core.errors import CoreError, InvalidExecution
from core.types import ZERO, Execution, Side

STARTING_CASH: Final = Decimal(1_000_000)
INITIAL_MARGIN: Final = Decimal("0.5")
MAINTENANCE_MARGIN: Final = Decimal("0.25")
BUYING_POWER_MULTIPLE: Final = Decimal(4)
_CENTS: Final = Decimal("0.01")


class AccountError(CoreError):
    """An account operation got invalid input (e.g. a non-positive mark price)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Holding:
    """One symbol's position: signed quantity and IB avgCost (commission-inclusive, >= 0)."""

    symbol: str
    quantity: Decimal = ZERO
    avg_cost: Decimal = ZERO


@dataclass(frozen=True, slots=True, kw_only=True)
class Account:
    """The whole account as a value; holdings keep first-trade order, marks are (symbol, price)."""

    account_id: str = "DU1234567"
    currency: str = "USD"
    starting_cash: Decimal = STARTING_CASH
    cash: Decimal = STARTING_CASH
    holdings: tuple[Holding, ...] = ()
    marks: tuple[tuple[str, Decimal], ...] = ()
    realized_pnl: Decimal = ZERO
    commissions: Decimal = ZERO


def open_account(account_id: str = "DU1234567", cash: Decimal = STARTING_CASH,
                 currency: str = "USD") -> Account:
    """Return a fresh account holding only `cash`."""
    cash = Decimal(cash)
    if not cash.is_finite():
        raise AccountError(f"starting cash must be finite, got {cash}")
    return Account(account_id=account_id, currency=currency, starting_cash=cash, cash=cash)


def holding(account: Account, symbol: str) -> Holding:
    """Return the symbol's holding (flat if never traded)."""
    for h in account.holdings:
        if h.symbol == symbol:
            return h
    return Holding(symbol=symbol)


def mark_price(account: Account, symbol: str) -> Decimal | None:
    """Return the price the symbol is marked at, or None."""
    for s, p in account.marks:
        if s == symbol:
            return p
    return None


def _with_mark(marks: tuple[tuple[str, Decimal], ...], symbol: str, price: Decimal
               ) -> tuple[tuple[str, Decimal], ...]:
    for i, (s, _) in enumerate(marks):
        if s == symbol:
            return (*marks[:i], (symbol, price), *marks[i + 1:])
    return (*marks, (symbol, price))


def mark(account: Account, symbol: str, price: Decimal) -> Account:
    """Return the account with `symbol` marked at `price` (> 0)."""
    price = Decimal(price)
    if not (price.is_finite() and price > 0):
        raise AccountError(f"mark price for {symbol} must be > 0, got {price}")
    return replace(account, marks=_with_mark(account.marks, symbol, price))


def mark_many(account: Account, prices: Mapping[str, Decimal]) -> Account:
    """Return the account marked at every (symbol, price) of `prices`."""
    for symbol, price in prices.items():
        account = mark(account, symbol, price)
    return account


def apply_fill(account: Account, symbol: str, side: Side, quantity: Decimal, price: Decimal,
               commission: Decimal = ZERO) -> Account:
    """Return the account after one fill; commission is a positive cost paid in cash.

    The fill's realized P&L (for a commission report) is the difference of `realized_pnl`
    before and after.
    """
    quantity, price, commission = Decimal(quantity), Decimal(price), Decimal(commission)
    if not isinstance(side, Side):
        raise InvalidExecution(f"{symbol}: side must be a Side, got {side!r}")
    if not (quantity.is_finite() and quantity > 0):
        raise InvalidExecution(f"{symbol}: fill quantity must be > 0, got {quantity}")
    if not (price.is_finite() and price > 0):
        raise InvalidExecution(f"{symbol}: fill price must be > 0, got {price}")
    if not (commission.is_finite() and commission >= 0):
        raise InvalidExecution(f"{symbol}: commission must be >= 0, got {commission}")
    sign = side.sign
    old = holding(account, symbol)
    q, avg = old.quantity, old.avg_cost
    realized = ZERO
    if q == 0 or (q > 0) == (sign > 0):
        new_q = q + sign * quantity
        new_avg = (abs(q) * avg + quantity * price + sign * commission) / abs(new_q)
    else:
        closed = min(quantity, abs(q))
        opened = quantity - closed
        close_commission = commission * closed / quantity
        direction = 1 if q > 0 else -1
        realized = (price - avg) * closed * direction - close_commission
        new_q = q + sign * quantity
        if opened > 0:
            new_avg = price + sign * (commission - close_commission) / opened
        elif new_q == 0:
            new_avg = ZERO
        else:
            new_avg = avg
    new_holding = Holding(symbol=symbol, quantity=new_q, avg_cost=new_avg)
    holdings = account.holdings
    for i, h in enumerate(holdings):
        if h.symbol == symbol:
            holdings = (*holdings[:i], new_holding, *holdings[i + 1:])
            break
    else:
        holdings = (*holdings, new_holding)
    marks = account.marks
    if mark_price(account, symbol) is None:
        marks = _with_mark(marks, symbol, price)
    return replace(
        account,
        cash=account.cash - sign * quantity * price - commission,
        holdings=holdings,
        marks=marks,
        realized_pnl=account.realized_pnl + realized,
        commissions=account.commissions + commission,
    )


def apply_execution(account: Account, execution: Execution) -> Account:
    """Return the account after an Execution (same as apply_fill with its fields)."""
    return apply_fill(account, execution.symbol, execution.side, execution.quantity,
                      execution.price, execution.commission)


def _mark_or_cost(account: Account, h: Holding) -> Decimal:
    p = mark_price(account, h.symbol)
    return h.avg_cost if p is None else p


def market_value(account: Account) -> Decimal:
    """Return the signed market value of all positions, Σ quantity × mark."""
    return sum((h.quantity * _mark_or_cost(account, h) for h in account.holdings), ZERO)


def gross_position_value(account: Account) -> Decimal:
    """Return Σ |quantity| × mark."""
    return sum((abs(h.quantity) * _mark_or_cost(account, h) for h in account.holdings), ZERO)


def net_liquidation(account: Account) -> Decimal:
    """Return cash + Σ quantity × mark."""
    return account.cash + market_value(account)


def unrealized_pnl(account: Account) -> Decimal:
    """Return Σ (mark − avg_cost) × quantity over open positions."""
    return sum(((_mark_or_cost(account, h) - h.avg_cost) * h.quantity
                for h in account.holdings if h.quantity), ZERO)


def positions(account: Account) -> tuple[tuple[str, Decimal, Decimal], ...]:
    """Return (symbol, quantity, avg_cost) per symbol traded this session, flat ones included."""
    return tuple((h.symbol, h.quantity, h.avg_cost) for h in account.holdings)


def format_money(value: Decimal) -> str:
    """Return IB's plain decimal text for an amount: two places, no exponent, no separators."""
    text = f"{value.quantize(_CENTS):f}"
    return "0.00" if text == "-0.00" else text


def _ratio(value: Decimal, places: str) -> str:
    text = f"{value.quantize(Decimal(places)):f}"
    return text[1:] if text.startswith("-") and Decimal(text) == 0 else text


# IB spells the Reg-T tags "RegTEquity"/"RegTMargin"; ibapi's AccountSummaryTags constants
# say "ReqTEquity"/"ReqTMargin", so a request may use either and is answered in its spelling.
_ALIASES: Final = {"ReqTEquity": "RegTEquity", "ReqTMargin": "RegTMargin"}
_LEDGER_TAGS: Final = ("Currency", "CashBalance", "TotalCashBalance", "AccruedCash",
                       "StockMarketValue", "NetLiquidationByCurrency", "RealizedPnL",
                       "UnrealizedPnL", "ExchangeRate")


def _all_values(account: Account) -> dict[str, tuple[str, str]]:
    ccy = account.currency
    gross = gross_position_value(account)
    netliq = net_liquidation(account)
    equity = netliq  # stocks only: equity with loan value == net liquidation
    init = gross * INITIAL_MARGIN
    maint = gross * MAINTENANCE_MARGIN
    available = equity - init
    excess = equity - maint
    buying_power = max(ZERO, excess * BUYING_POWER_MULTIPLE)
    cushion = excess / netliq if netliq > 0 else ZERO
    leverage = gross / netliq if netliq > 0 else ZERO

    def money(v: Decimal) -> tuple[str, str]:
        return format_money(v), ccy

    return {
        "AccountType": ("INDIVIDUAL", ""),
        "NetLiquidation": money(netliq),
        "TotalCashValue": money(account.cash),
        "SettledCash": money(account.cash),
        "AccruedCash": money(ZERO),
        "BuyingPower": money(buying_power),
        "EquityWithLoanValue": money(equity),
        "PreviousDayEquityWithLoanValue": money(account.starting_cash),
        "GrossPositionValue": money(gross),
        "RegTEquity": money(equity),
        "RegTMargin": money(init),
        "SMA": money(max(ZERO, equity - init)),
        "InitMarginReq": money(init),
        "MaintMarginReq": money(maint),
        "AvailableFunds": money(available),
        "ExcessLiquidity": money(excess),
        "Cushion": (_ratio(cushion, "0.000001"), ""),
        "FullInitMarginReq": money(init),
        "FullMaintMarginReq": money(maint),
        "FullAvailableFunds": money(available),
        "FullExcessLiquidity": money(excess),
        "LookAheadNextChange": ("0", ""),
        "LookAheadInitMarginReq": money(init),
        "LookAheadMaintMarginReq": money(maint),
        "LookAheadAvailableFunds": money(available),
        "LookAheadExcessLiquidity": money(excess),
        "HighestSeverity": ("0", ""),
        "DayTradesRemaining": ("-1", ""),  # -1: unlimited (not a pattern-day-trader restriction)
        "Leverage": (_ratio(leverage, "0.01"), ""),
        # $LEDGER values (per-currency ledger, here the single base currency)
        "Currency": (ccy, ccy),
        "CashBalance": money(account.cash),
        "TotalCashBalance": money(account.cash),
        "StockMarketValue": money(market_value(account)),
        "NetLiquidationByCurrency": money(netliq),
        "RealizedPnL": money(account.realized_pnl),
        "UnrealizedPnL": money(unrealized_pnl(account)),
        "ExchangeRate": ("1.00", ccy),
    }


def summary(account: Account, tags: Iterable[str] | str | None = None) -> dict[str, tuple[str, str]]:
    """Return {tag: (value, currency)} for the requested reqAccountSummary tags (None: all).

    `tags` is a list or IB's comma-separated string; "$LEDGER", "$LEDGER:ALL" and
    "$LEDGER:<account currency>" expand to the ledger tags. Unknown tags are left out.
    """
    values = _all_values(account)
    if tags is None:
        return values
    if isinstance(tags, str):
        tags = tags.split(",")
    out: dict[str, tuple[str, str]] = {}
    for raw in tags:
        tag = raw.strip()
        if tag.upper().startswith("$LEDGER"):
            which = tag.partition(":")[2].upper()
            if which in ("", "ALL", account.currency.upper()):
                for t in _LEDGER_TAGS:
                    out[t] = values[t]
        elif tag in values:
            out[tag] = values[tag]
        elif tag in _ALIASES:
            out[tag] = values[_ALIASES[tag]]
    return out


__all__ = [
    "Account", "AccountError", "Holding", "apply_execution", "apply_fill", "format_money",
    "gross_position_value", "holding", "mark", "mark_many", "mark_price", "market_value",
    "net_liquidation", "open_account", "positions", "summary", "unrealized_pnl",
]
