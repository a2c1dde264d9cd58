"""The rule engine: rules from config.toml compiled once, then evaluated purely against one event.

A rule reads the event (a prediction signal's fields, or the bar that closed), the position, the
time (exchange time zone, regular session) and the market (prices and indicators); its
condition is an expression (core/expr.py: parsed without eval, typed, three-valued). Rules run
by priority (higher first, then in file order) with a per-rule-per-symbol cooldown, a daily fire
limit and `final` (or `strategy.first_match_only`) to stop after a match. A rule that fires
yields a decision (open a bracket sized by ATR risk, open a single order, close or scale out,
move the stop to break-even, trail it, cancel working orders, log) for the symbol actor to
turn into order groups.

Everything here is pure: time comes in as `now_ns`, state as immutable values (`RuleMemory`
per symbol, `MarketState` per symbol). A `RuleSet` holds compiled closures and does not pickle:
actors exchange the rule *configuration* (`RuleConfig`s) and compile it themselves
(`compile_rules`, cached by version).
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import ROUND_FLOOR, Decimal
from typing import TYPE_CHECKING, Final, TypeAlias
from zoneinfo import ZoneInfo

from core.config import (
    ActionConfig,
    ActionKind,
    CancelScope,
    EntryType,
    RuleConfig,
    RuleEvent,
    SideChoice,
    StrategyConfig,
)
from core.errors import CoreError, ExprError
from core.expr import Compiled, SeriesSpec, ValueType, Vocabulary, compile_condition, prev_key, series_key
from core.indicators import Atr, Donchian, Ema, Rsi, Sma
from core.orders import round_to_tick
from core.position import Position, held_ns, unrealized_pnl
from core.types import Bar, OrderType, Side, TimeInForce

if TYPE_CHECKING:
    from core.config import Config

_NS_PER_S: Final = 1_000_000_000
_NS_PER_MIN: Final = 60 * _NS_PER_S
_ZERO: Final = Decimal(0)
HISTORY_BARS: Final = 512  # closed bars kept per symbol to warm up indicators a reload adds


class RulesError(CoreError, ValueError):
    """A rule set does not compile; `problems` names each rule and the offending text."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems: tuple[str, ...] = tuple(problems)
        super().__init__("invalid rules:\n" + "\n".join(f"  - {p}" for p in self.problems))


# ---------------------------------------------------------------- vocabulary

_NUM: Final = "num"
_BOOL: Final = "bool"
_STR: Final = "str"

SIGNAL_NAMES: Final[Mapping[str, ValueType]] = {
    "signal.direction": _STR,        # "LONG", "SHORT" or "FLAT"
    "signal.long": _BOOL,
    "signal.short": _BOOL,
    "signal.flat": _BOOL,
    "signal.confidence": _NUM,       # 0..1
    "signal.horizon_s": _NUM,
    "signal.age_s": _NUM,            # seconds since the source created it
    "signal.minutes_to_expiry": _NUM,  # unknown when it never expires
    "signal.source": _STR,
    "signal.reference_price": _NUM,  # unknown when the source gave none
}
POSITION_NAMES: Final[Mapping[str, ValueType]] = {
    "position.side": _STR,           # "FLAT", "LONG" or "SHORT"
    "position.flat": _BOOL,
    "position.long": _BOOL,
    "position.short": _BOOL,
    "position.quantity": _NUM,       # signed
    "position.size": _NUM,           # absolute
    "position.avg_cost": _NUM,       # unknown when flat
    "position.unrealized_pnl": _NUM,
    "position.realized_pnl": _NUM,
    "position.minutes_held": _NUM,   # unknown when flat
    "position.stop": _NUM,           # the tightest working protective stop; unknown if none
    "position.working_orders": _NUM,  # order groups still working
    "position.entry_working": _BOOL,  # an entry group has not filled yet
    "position.exit_working": _BOOL,   # a close is on its way
}
MARKET_NAMES: Final[Mapping[str, ValueType]] = {
    "market.price": _NUM,    # last trade, else the mid
    "market.bid": _NUM,
    "market.ask": _NUM,
    "market.mid": _NUM,
    "market.spread": _NUM,
    "market.volume": _NUM,   # the session's cumulative volume
    "market.open": _NUM,     # the last closed bar
    "market.high": _NUM,
    "market.low": _NUM,
    "market.close": _NUM,
    "market.bar_volume": _NUM,
    "market.bars": _NUM,     # closed bars seen (history included)
}
TIME_NAMES: Final[Mapping[str, ValueType]] = {
    "time.hour": _NUM,                 # exchange time zone
    "time.minute": _NUM,
    "time.hhmm": _NUM,                 # 9:45 reads 945
    "time.weekday": _STR,              # "Mon" .. "Sun"
    "time.in_session": _BOOL,          # a weekday, between strategy.session_open and _close
    "time.minutes_to_close": _NUM,     # to today's session close (negative after it)
    "time.minutes_since_open": _NUM,   # since today's session open (negative before it)
}
OTHER_NAMES: Final[Mapping[str, ValueType]] = {"symbol": _STR}

SERIES: Final[Mapping[str, SeriesSpec]] = {
    "sma": SeriesSpec("sma"),
    "ema": SeriesSpec("ema"),
    "rsi": SeriesSpec("rsi"),
    "atr": SeriesSpec("atr"),
    "highest": SeriesSpec("highest"),  # highest high of the last n bars
    "lowest": SeriesSpec("lowest"),    # lowest low of the last n bars
}
_PREV_NAMES: Final = frozenset({"market.close", "market.high", "market.low", "market.price"})
_WEEKDAYS: Final = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


def vocabulary(event: str) -> Vocabulary:
    """Return what the conditions of a rule on `event` ("signal" or "bar") may read."""
    names = {**POSITION_NAMES, **MARKET_NAMES, **TIME_NAMES, **OTHER_NAMES}
    if event == "signal":
        names.update(SIGNAL_NAMES)
    return Vocabulary(names=names, series=SERIES, prev_names=_PREV_NAMES)


_VOCABULARIES: Final = {event: vocabulary(event) for event in ("signal", "bar")}


# ---------------------------------------------------------------- compiled rules


@dataclass(frozen=True, slots=True, eq=False)
class CompiledRule:
    """One rule ready to evaluate: its configuration, its condition and its place in the order."""

    config: RuleConfig
    condition: Compiled
    index: int

    @property
    def name(self) -> str:
        return self.config.name


@dataclass(frozen=True, slots=True, eq=False)
class RuleSet:
    """A compiled, validated rule set; `version` is a digest of its configuration."""

    version: str
    rules: tuple[CompiledRule, ...]           # evaluation order: priority desc, then file order
    series: frozenset[tuple[str, tuple[int, ...]]]
    first_match_only: bool
    zone: ZoneInfo
    session_open_min: int
    session_close_min: int
    by_event: Mapping[str, tuple[CompiledRule, ...]] = field(default_factory=dict)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(rule.name for rule in self.rules)


def rules_version(rules: Sequence[RuleConfig], strategy: StrategyConfig) -> str:
    """Return a short digest of the rule configuration: equal configurations, equal versions."""
    text = repr((tuple(rules), strategy))
    return "r-" + hashlib.sha256(text.encode()).hexdigest()[:10]


def _minutes(hhmm: str) -> int:
    hours, minutes = hhmm.split(":")
    return int(hours) * 60 + int(minutes)


def _where(rule: RuleConfig, key: str) -> str:
    return f"rules.{rule.name}.{key}"


def _condition_text(rule: RuleConfig) -> str:
    parts = [f"({rule.when})"] if rule.when.strip() not in ("", "true") else []
    parts += [f"({text})" for text in rule.all]
    if rule.any:
        parts.append("(" + " or ".join(f"({text})" for text in rule.any) + ")")
    return " and ".join(parts) or "true"


def _check_parts(rule: RuleConfig, vocab: Vocabulary) -> list[str]:
    """Compile each part alone, so a problem names the key and text it came from."""
    problems: list[str] = []
    parts = [("when", rule.when)] + [(f"all[{i}]", t) for i, t in enumerate(rule.all)] \
        + [(f"any[{i}]", t) for i, t in enumerate(rule.any)]
    for key, text in parts:
        try:
            compile_condition(text, vocab)
        except ExprError as exc:
            hint = ""
            if rule.on is RuleEvent.BAR and "unknown name 'signal." in str(exc):
                hint = ' (signal fields exist only in rules with on = "signal")'
            problems.append(f"{_where(rule, key)} = {text!r}: {exc}{hint}")
    return problems


def _action_problems(rule: RuleConfig) -> list[str]:
    """Return what is wrong with the keys of the rule's action for its type."""
    action = rule.action
    kind = action.type
    at = _where(rule, "action")
    problems: list[str] = []
    opening = kind in (ActionKind.OPEN_BRACKET, ActionKind.OPEN_ORDER)
    if opening:
        if action.side is SideChoice.SIGNAL and rule.on is not RuleEvent.SIGNAL:
            problems.append(f'{at}.side = "signal": expected "buy" or "sell" in a rule with '
                            f'on = "{rule.on.value}" (there is no signal to follow)')
        if (action.quantity is None) == (action.risk is None):
            problems.append(f"{at}: expected exactly one of quantity (a fixed size) or risk "
                            f"(money lost at the stop, sized by ATR)")
        if action.risk is not None and action.stop_atr is None:
            problems.append(f"{at}.risk = {action.risk}: expected stop_atr too (risk sizing "
                            f"divides the risk by stop_atr × ATR)")
    if kind is ActionKind.OPEN_BRACKET:
        if action.stop_atr is None or action.target_atr is None:
            problems.append(f"{at}: an open_bracket needs stop_atr and target_atr (its stop-loss "
                            f"and take-profit distances in ATRs)")
        if action.entry not in (EntryType.MARKET, EntryType.LIMIT):
            problems.append(f'{at}.entry = "{action.entry.value}": expected "market" or "limit" '
                            f"for a bracket entry")
    if kind is ActionKind.SCALE_OUT and (action.fraction is None) == (action.quantity is None):
        problems.append(f"{at}: a scale_out needs exactly one of fraction (0 < f <= 1) or quantity")
    if kind is ActionKind.TRAIL_STOP and (action.trail_atr is None) == (action.trail_amount is None):
        problems.append(f"{at}: a trail_stop needs exactly one of trail_atr or trail_amount")
    if kind is ActionKind.LOG and not action.message:
        problems.append(f"{at}: a log action needs a message")
    return problems


def compile_rules(config: Config) -> RuleSet:
    """Compile the configuration's rules; raise RulesError naming every rule and text at fault."""
    return compile_set(config.rules, config.strategy, config.symbol_names, config.system.timezone)


def rule_problems(config: Config) -> list[str]:
    """Return every problem of the configuration's rules (empty when they compile)."""
    try:
        compile_rules(config)
    except RulesError as exc:
        return list(exc.problems)
    return []


def compile_set(rules: Sequence[RuleConfig], strategy: StrategyConfig, symbols: Sequence[str],
                timezone: str) -> RuleSet:
    """Compile `rules` for the traded `symbols` in the exchange `timezone`; raise RulesError."""
    problems: list[str] = []
    compiled: list[CompiledRule] = []
    series: set[tuple[str, tuple[int, ...]]] = set()
    traded = set(symbols)
    for index, rule in enumerate(rules):
        vocab = _VOCABULARIES[rule.on.value]
        stray = [s for s in rule.symbols if s not in traded]
        if stray:
            problems.append(f"{_where(rule, 'symbols')}: {', '.join(stray)} not traded (add them "
                            f"to [symbols] or remove them here)")
        problems += _action_problems(rule)
        text = _condition_text(rule)
        try:
            condition = compile_condition(text, vocab)
        except ExprError:
            problems += _check_parts(rule, vocab) or [f"{_where(rule, 'when')}: {text!r} does not compile"]
            continue
        if not rule.enabled:
            continue
        series |= condition.series
        action = rule.action
        if action.stop_atr is not None or action.trail_atr is not None:
            series.add(("atr", (action.atr_period,)))
        series |= _message_series(action.message)
        compiled.append(CompiledRule(config=rule, condition=condition, index=index))
    if problems:
        raise RulesError(problems)
    ordered = tuple(sorted(compiled, key=lambda r: (-r.config.priority, r.index)))
    by_event = {event: tuple(r for r in ordered if r.config.on.value == event)
                for event in ("signal", "bar")}
    return RuleSet(version=rules_version(rules, strategy), rules=ordered, series=frozenset(series),
                   first_match_only=strategy.first_match_only, zone=ZoneInfo(timezone),
                   session_open_min=_minutes(strategy.session_open),
                   session_close_min=_minutes(strategy.session_close), by_event=by_event)


# ---------------------------------------------------------------- market state


def _new_indicator(name: str, args: tuple[int, ...]) -> object:
    n = args[0]
    return {"sma": Sma, "ema": Ema, "rsi": Rsi, "atr": Atr}.get(name, Donchian)(n)


def _update_indicator(name: str, indicator: object, bar: Bar) -> float | None:
    if name in ("sma", "ema", "rsi"):
        return indicator.update(bar.close)  # type: ignore[attr-defined, no-any-return]
    if name == "atr":
        return indicator.update(bar.high, bar.low, bar.close)  # type: ignore[attr-defined, no-any-return]
    channel = indicator.update(bar.high, bar.low)  # type: ignore[attr-defined]
    if channel is None:
        return None
    return channel.upper if name == "highest" else channel.lower  # type: ignore[no-any-return]


@dataclass(frozen=True, slots=True, kw_only=True)
class MarketState:
    """One symbol's closed bars and the indicators its rules read, at the last bar and the one before.

    The streaming indicators are mutable objects (core/indicators.py): `advance` updates copies
    and returns a new state, never touching the one it was given. `history` keeps the last
    HISTORY_BARS bars, so a reload that needs a new indicator warms it up at once.
    """

    series: frozenset[tuple[str, tuple[int, ...]]] = frozenset()
    indicators: Mapping[str, object] = field(default_factory=dict)
    values: Mapping[str, float | None] = field(default_factory=dict)
    previous: Mapping[str, float | None] = field(default_factory=dict)
    history: tuple[Bar, ...] = ()
    bars_seen: int = 0

    @property
    def last_bar(self) -> Bar | None:
        return self.history[-1] if self.history else None

    @property
    def last_ts_ns(self) -> int:
        return self.history[-1].ts_ns if self.history else -1


def new_market(series: frozenset[tuple[str, tuple[int, ...]]] = frozenset()) -> MarketState:
    """Return a market state with no bars that will compute `series`."""
    indicators = {series_key(name, args): _new_indicator(name, args) for name, args in series}
    return MarketState(series=series, indicators=indicators)


def advance(market: MarketState, bar: Bar) -> MarketState:
    """Return the market after one closed bar; a bar not newer than the last one changes nothing."""
    if bar.ts_ns <= market.last_ts_ns:
        return market
    indicators: dict[str, object] = {}
    values: dict[str, float | None] = {}
    for name, args in market.series:
        key = series_key(name, args)
        indicator = market.indicators[key].copy()  # type: ignore[attr-defined]
        values[key] = _update_indicator(name, indicator, bar)
        indicators[key] = indicator
    history = market.history[-(HISTORY_BARS - 1):] + (bar,)
    return replace(market, indicators=indicators, values=values, previous=market.values,
                   history=history, bars_seen=market.bars_seen + 1)


def warm_up(market: MarketState, bars: Sequence[Bar]) -> MarketState:
    """Return the market after `bars` (oldest first); bars it has already seen are skipped."""
    for bar in bars:
        market = advance(market, bar)
    return market


def retarget(market: MarketState, series: frozenset[tuple[str, tuple[int, ...]]]) -> MarketState:
    """Return the market computing `series` instead, new indicators warmed up from the history."""
    if series == market.series:
        return market
    fresh = new_market(series)
    fresh = replace(fresh, bars_seen=market.bars_seen - len(market.history))
    return warm_up(fresh, market.history)


# ---------------------------------------------------------------- the event


@dataclass(frozen=True, slots=True, kw_only=True)
class SignalFacts:
    """What a rule may read of a prediction signal (messages.PredictionSignal, seen from core)."""

    signal_id: str
    direction: str           # "LONG", "SHORT" or "FLAT"
    confidence: Decimal
    horizon_s: int = 0
    created_ns: int = 0
    expires_ns: int = 0
    source: str = ""
    reference_price: Decimal | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Protection:
    """A working order group of the symbol, as the rules see it."""

    group_id: str
    entry: bool                 # an entry group (bracket or single), as opposed to a close
    filled: bool = False        # its entry has (partly) filled: a bracket's children now protect
    stop: Decimal | None = None  # the group's protective stop price, if it has one


@dataclass(frozen=True, slots=True, kw_only=True)
class Situation:
    """Everything one evaluation reads: the event, the position, the market, the time."""

    symbol: str
    now_ns: int
    position: Position
    market: MarketState
    tick: Decimal
    lot: Decimal = Decimal(1)
    bid: Decimal | None = None
    ask: Decimal | None = None
    last: Decimal | None = None
    volume: Decimal | None = None
    groups: tuple[Protection, ...] = ()
    exit_pending: bool = False
    signal: SignalFacts | None = None

    @property
    def price(self) -> Decimal | None:
        if self.last is not None:
            return self.last
        if self.bid is not None and self.ask is not None:
            return (self.bid + self.ask) / 2
        bar = self.market.last_bar
        return bar.close if bar is not None else None


def _f(value: Decimal | int | None) -> float | None:
    return None if value is None else float(value)


def _stops(situation: Situation) -> list[Decimal]:
    return [g.stop for g in situation.groups if g.stop is not None and g.filled]


def environment(rules: RuleSet, situation: Situation) -> dict[str, object]:
    """Return the values the rules' expressions read, keyed as core/expr expects."""
    s, position, market = situation, situation.position, situation.market
    qty = position.quantity
    side = "LONG" if qty > 0 else "SHORT" if qty < 0 else "FLAT"
    stops = _stops(s)
    stop = (max(stops) if qty > 0 else min(stops)) if stops and qty else None
    mid = (s.bid + s.ask) / 2 if s.bid is not None and s.ask is not None else None
    bar = market.last_bar
    price = s.price
    env: dict[str, object] = {
        "symbol": s.symbol,
        "position.side": side, "position.flat": qty == 0, "position.long": qty > 0,
        "position.short": qty < 0, "position.quantity": float(qty), "position.size": float(abs(qty)),
        "position.avg_cost": _f(position.avg_cost) if qty else None,
        "position.unrealized_pnl": (float(unrealized_pnl(position, price)) if qty and price is not None
                                    else 0.0 if not qty else None),
        "position.realized_pnl": float(position.realized_pnl),
        "position.minutes_held": held_ns(position, s.now_ns) / _NS_PER_MIN if qty else None,
        "position.stop": _f(stop),
        "position.working_orders": float(len(s.groups)),
        "position.entry_working": any(g.entry and not g.filled for g in s.groups),
        "position.exit_working": s.exit_pending or any(not g.entry for g in s.groups),
        "market.price": _f(price), "market.bid": _f(s.bid), "market.ask": _f(s.ask),
        "market.mid": _f(mid), "market.last": _f(s.last),
        "market.spread": _f(s.ask - s.bid) if s.bid is not None and s.ask is not None else None,
        "market.volume": _f(s.volume), "market.bars": float(market.bars_seen),
    }
    if bar is not None:
        env.update({"market.open": float(bar.open), "market.high": float(bar.high),
                    "market.low": float(bar.low), "market.close": float(bar.close),
                    "market.bar_volume": float(bar.volume)})
        if len(market.history) > 1:
            before = market.history[-2]
            env.update({"prev:market.close": float(before.close), "prev:market.high": float(before.high),
                        "prev:market.low": float(before.low), "prev:market.price": float(before.close)})
    env.update(market.values)
    for key, value in market.previous.items():
        env[prev_key(key)] = value
    local = datetime.fromtimestamp(s.now_ns / _NS_PER_S, rules.zone)
    minute_of_day = local.hour * 60 + local.minute + local.second / 60
    env.update({
        "time.hour": float(local.hour), "time.minute": float(local.minute),
        "time.hhmm": float(local.hour * 100 + local.minute), "time.weekday": _WEEKDAYS[local.weekday()],
        "time.in_session": local.weekday() < 5
        and rules.session_open_min <= minute_of_day < rules.session_close_min,
        "time.minutes_to_close": rules.session_close_min - minute_of_day,
        "time.minutes_since_open": minute_of_day - rules.session_open_min,
    })
    signal = s.signal
    if signal is not None:
        env.update({
            "signal.direction": signal.direction, "signal.long": signal.direction == "LONG",
            "signal.short": signal.direction == "SHORT", "signal.flat": signal.direction == "FLAT",
            "signal.confidence": float(signal.confidence), "signal.horizon_s": float(signal.horizon_s),
            "signal.age_s": (s.now_ns - signal.created_ns) / _NS_PER_S if signal.created_ns else 0.0,
            "signal.minutes_to_expiry": ((signal.expires_ns - s.now_ns) / _NS_PER_MIN
                                         if signal.expires_ns else None),
            "signal.source": signal.source, "signal.reference_price": _f(signal.reference_price),
        })
    return env


# ---------------------------------------------------------------- decisions


@dataclass(frozen=True, slots=True, kw_only=True)
class OpenPosition:
    """Open (or add to) a position: a bracket when `stop_loss`/`take_profit` are set, else one order."""

    side: Side
    quantity: Decimal
    order_type: OrderType
    limit_price: Decimal | None = None
    stop_price: Decimal | None = None      # the entry's own trigger (a stop entry)
    stop_loss: Decimal | None = None
    take_profit: Decimal | None = None
    tif: TimeInForce = TimeInForce.DAY
    reference_price: Decimal | None = None
    atr: Decimal | None = None

    @property
    def is_bracket(self) -> bool:
        return self.stop_loss is not None or self.take_profit is not None


@dataclass(frozen=True, slots=True, kw_only=True)
class ClosePosition:
    """Close `quantity` of the position at market (None = all of it, cancelling its protection first)."""

    quantity: Decimal | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class MoveStops:
    """Move the protective stop of each (group id, new stop price)."""

    moves: tuple[tuple[str, Decimal], ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class CancelGroups:
    """Cancel these working groups."""

    group_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Notify:
    """Write `message` to the symbol's log at `level`."""

    level: str
    message: str


Decision: TypeAlias = OpenPosition | ClosePosition | MoveStops | CancelGroups | Notify


@dataclass(frozen=True, slots=True, kw_only=True)
class Firing:
    """A rule that fired: its decision and why (the condition and the values it read)."""

    rule: str
    decision: Decision
    why: str


@dataclass(frozen=True, slots=True, kw_only=True)
class RuleMemory:
    """One symbol's rule history: when each rule last fired, and its fires on the exchange day `day`."""

    day: int = -1
    last_fired: tuple[tuple[str, int], ...] = ()
    fires_today: tuple[tuple[str, int], ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Evaluation:
    """The outcome of one event: the new memory, the rules that fired, and why others did not."""

    memory: RuleMemory
    fired: tuple[Firing, ...] = ()
    notes: tuple[str, ...] = ()


class _NotApplicable(Exception):
    """The rule matched but its action cannot be taken now (no ATR yet, nothing to close...)."""


def _side(action: ActionConfig, situation: Situation) -> Side:
    if action.side is SideChoice.BUY:
        return Side.BUY
    if action.side is SideChoice.SELL:
        return Side.SELL
    direction = situation.signal.direction if situation.signal is not None else "FLAT"
    if direction == "LONG":
        return Side.BUY
    if direction == "SHORT":
        return Side.SELL
    raise _NotApplicable("the signal is FLAT: no side to open")


def _atr(action: ActionConfig, situation: Situation) -> Decimal:
    key = series_key("atr", (action.atr_period,))
    value = situation.market.values.get(key)
    if value is None or not math.isfinite(value) or value <= 0:
        raise _NotApplicable(f"ATR({action.atr_period}) is not ready "
                             f"({situation.market.bars_seen} bar(s) seen)")
    return Decimal(repr(value))


def _lots(quantity: Decimal, lot: Decimal) -> Decimal:
    return (quantity / lot).to_integral_value(rounding=ROUND_FLOOR) * lot


def size_by_risk(risk: Decimal, stop_atr: Decimal, atr: Decimal, *, lot: Decimal,
                 max_quantity: Decimal) -> Decimal:
    """Return floor(risk ÷ (stop_atr × ATR)) in whole lots, capped at max_quantity; 0 = too small."""
    per_unit = stop_atr * atr
    if per_unit <= 0:
        return _ZERO
    return _lots(min(risk / per_unit, max_quantity), lot)


_ENTRY_TYPES: Final[Mapping[EntryType, OrderType]] = {
    EntryType.MARKET: OrderType.MKT, EntryType.LIMIT: OrderType.LMT,
    EntryType.STOP: OrderType.STP, EntryType.STOP_LIMIT: OrderType.STP_LMT,
}


def _open(action: ActionConfig, situation: Situation, bracket: bool) -> OpenPosition:
    if situation.exit_pending:
        raise _NotApplicable("a close of the position is on its way")
    side = _side(action, situation)
    price = situation.price
    if price is None:
        raise _NotApplicable("no market price yet")
    tick, lot = situation.tick, situation.lot
    atr = _atr(action, situation) if action.stop_atr is not None else None
    if action.risk is not None:
        assert action.stop_atr is not None and atr is not None
        quantity = size_by_risk(action.risk, action.stop_atr, atr, lot=lot,
                                max_quantity=action.max_quantity)
    else:
        assert action.quantity is not None
        quantity = _lots(action.quantity, lot)
    if quantity <= 0:
        raise _NotApplicable(f"sized to 0 (risk {action.risk}, ATR {atr}, lot {lot})")
    sign = 1 if side is Side.BUY else -1
    entry = action.entry
    limit = stop = None
    if entry is EntryType.LIMIT:
        limit = round_to_tick(price - sign * action.limit_offset_ticks * tick, tick, side)
    if entry in (EntryType.STOP, EntryType.STOP_LIMIT):
        stop = round_to_tick(price + sign * action.stop_offset_ticks * tick, tick, side.opposite)
    if entry is EntryType.STOP_LIMIT:
        limit = stop  # a stop-limit entry: the limit at the trigger, no chasing past it
    order_type = _ENTRY_TYPES[entry]
    stop_loss = take_profit = None
    if bracket:
        assert atr is not None and action.stop_atr is not None and action.target_atr is not None
        anchor = limit if limit is not None else price
        exit_side = side.opposite
        # The children trade the opposite side: round_to_tick rounds a sell stop up and a buy
        # stop down, so the stop is never looser than asked (the target a tick further at most).
        stop_loss = round_to_tick(anchor - sign * action.stop_atr * atr, tick, exit_side)
        take_profit = round_to_tick(anchor + sign * action.target_atr * atr, tick, exit_side)
        if not (0 < stop_loss < anchor < take_profit if side is Side.BUY
                else 0 < take_profit < anchor < stop_loss):
            raise _NotApplicable(f"ATR {atr} leaves no room for a stop and a target around {anchor}")
    return OpenPosition(side=side, quantity=quantity, order_type=order_type, limit_price=limit,
                        stop_price=stop, stop_loss=stop_loss, take_profit=take_profit,
                        tif=TimeInForce(action.tif), reference_price=price, atr=atr)


def _close(situation: Situation) -> ClosePosition:
    if situation.position.quantity == 0:
        raise _NotApplicable("no position to close")
    if situation.exit_pending or any(not g.entry for g in situation.groups):
        raise _NotApplicable("a close is already on its way")
    return ClosePosition()


def _scale_out(action: ActionConfig, situation: Situation) -> ClosePosition:
    held = abs(situation.position.quantity)
    if held == 0:
        raise _NotApplicable("no position to scale out of")
    if any(g.filled and g.stop is not None for g in situation.groups):
        # Its children are sized to the whole position: a stop left at full size would reverse
        # the position when it triggers after a partial close.
        raise _NotApplicable("a bracket protects the position at full size; use close_position")
    if situation.exit_pending or any(not g.entry for g in situation.groups):
        raise _NotApplicable("a close is already on its way")
    wanted = held * action.fraction if action.fraction is not None else action.quantity
    assert wanted is not None
    quantity = min(_lots(wanted, situation.lot), held)
    if quantity <= 0:
        raise _NotApplicable(f"scale-out of {wanted} rounds to 0 lots")
    return ClosePosition(quantity=quantity)


def _tighter(situation: Situation, new_stop: Decimal, why: str) -> MoveStops:
    position, price = situation.position, situation.price
    long = position.quantity > 0
    moves: list[tuple[str, Decimal]] = []
    for group in situation.groups:
        if group.stop is None or not group.filled:
            continue
        if (new_stop > group.stop) if long else (new_stop < group.stop):
            moves.append((group.group_id, new_stop))
    if not moves:
        raise _NotApplicable(f"the stop is already at or beyond {new_stop} ({why})")
    if price is not None and ((new_stop >= price) if long else (new_stop <= price)):
        raise _NotApplicable(f"{new_stop} is on the wrong side of the price {price}: it would "
                             f"trigger at once")
    return MoveStops(moves=tuple(moves))


def _break_even(action: ActionConfig, situation: Situation) -> MoveStops:
    position = situation.position
    if position.quantity == 0:
        raise _NotApplicable("no position")
    long = position.quantity > 0
    offset = action.offset_ticks * situation.tick
    target = position.avg_cost + offset if long else position.avg_cost - offset
    stop = round_to_tick(target, situation.tick, Side.SELL if long else Side.BUY)
    return _tighter(situation, stop, f"break-even at {position.avg_cost}")


def _trail(action: ActionConfig, situation: Situation) -> MoveStops:
    position, price = situation.position, situation.price
    if position.quantity == 0:
        raise _NotApplicable("no position")
    if price is None:
        raise _NotApplicable("no market price yet")
    if action.trail_amount is not None:
        distance = action.trail_amount
    else:
        assert action.trail_atr is not None
        distance = action.trail_atr * _atr(action, situation)
    long = position.quantity > 0
    stop = round_to_tick(price - distance if long else price + distance, situation.tick,
                         Side.SELL if long else Side.BUY)
    return _tighter(situation, stop, f"{distance} behind {price}")


def _cancel(action: ActionConfig, situation: Situation) -> CancelGroups:
    entries_only = action.scope is CancelScope.ENTRIES
    ids = tuple(g.group_id for g in situation.groups if not entries_only or (g.entry and not g.filled))
    if not ids:
        raise _NotApplicable("no working " + ("entry " if entries_only else "") + "orders")
    return CancelGroups(group_ids=ids)


_PLACEHOLDER: Final = re.compile(r"\{([A-Za-z_][A-Za-z0-9_.:(),]*)\}")
_SERIES_CALL: Final = re.compile(r"(?:prev:)?([a-z_]+)\(([0-9]+(?:,[0-9]+)*)\)")


def _message_series(message: str) -> set[tuple[str, tuple[int, ...]]]:
    """Return the indicators a log message's {placeholders} name, so they are computed."""
    found = set()
    for key in _PLACEHOLDER.findall(message):
        call = _SERIES_CALL.fullmatch(key)
        if call and call.group(1) in SERIES:
            found.add((call.group(1), tuple(int(a) for a in call.group(2).split(","))))
    return found


def render(message: str, env: Mapping[str, object]) -> str:
    """Return `message` with each {name} replaced by its value ("?" when unknown); no format()."""
    def value(match: re.Match[str]) -> str:
        got = env.get(match.group(1))
        if got is None:
            return "?"
        if isinstance(got, bool):
            return "true" if got else "false"
        if isinstance(got, float):
            return f"{got:.6g}"
        return str(got)
    return _PLACEHOLDER.sub(value, message)


def decide(action: ActionConfig, situation: Situation, env: Mapping[str, object]) -> Decision:
    """Return what `action` amounts to now; raise _NotApplicable when it cannot be taken."""
    kind = action.type
    if kind is ActionKind.OPEN_BRACKET:
        return _open(action, situation, bracket=True)
    if kind is ActionKind.OPEN_ORDER:
        return _open(action, situation, bracket=False)
    if kind is ActionKind.CLOSE_POSITION:
        return _close(situation)
    if kind is ActionKind.SCALE_OUT:
        return _scale_out(action, situation)
    if kind is ActionKind.BREAK_EVEN:
        return _break_even(action, situation)
    if kind is ActionKind.TRAIL_STOP:
        return _trail(action, situation)
    if kind is ActionKind.CANCEL_ORDERS:
        return _cancel(action, situation)
    return Notify(level=action.level.value, message=render(action.message, env))


# ---------------------------------------------------------------- evaluation


def _why(rule: CompiledRule, env: Mapping[str, object]) -> str:
    shown = []
    for key in sorted(rule.condition.keys):
        value = env.get(key)
        if isinstance(value, float):
            text = f"{value:.6g}"
        elif isinstance(value, bool):
            text = "true" if value else "false"
        else:
            text = "?" if value is None else str(value)
        shown.append(f"{key}={text}")
    return f"`{rule.condition.source}`" + (f" with {', '.join(shown)}" if shown else "")


def exchange_day(rules: RuleSet, now_ns: int) -> int:
    """Return the exchange-local date of `now_ns` as an ordinal (daily fire limits reset on it)."""
    return datetime.fromtimestamp(now_ns / _NS_PER_S, rules.zone).date().toordinal()


def evaluate(rules: RuleSet, memory: RuleMemory, event: str, situation: Situation) -> Evaluation:
    """Run the rules on `event` ("signal" or "bar") for one symbol; return what fired and the new memory."""
    candidates = rules.by_event.get(event, ())
    if not candidates:
        return Evaluation(memory=memory)
    now = situation.now_ns
    day = exchange_day(rules, now)
    last_fired = dict(memory.last_fired)
    fires_today = dict(memory.fires_today) if memory.day == day else {}
    env = environment(rules, situation)
    fired: list[Firing] = []
    notes: list[str] = []
    for rule in candidates:
        config = rule.config
        if config.symbols and situation.symbol not in config.symbols:
            continue
        last = last_fired.get(config.name)
        if config.cooldown_s and last is not None and now - last < config.cooldown_s * _NS_PER_S:
            left = config.cooldown_s - (now - last) / _NS_PER_S
            notes.append(f"{config.name}: cooling down ({left:.0f} s left)")
            continue
        if config.max_fires_per_day and fires_today.get(config.name, 0) >= config.max_fires_per_day:
            notes.append(f"{config.name}: fired {config.max_fires_per_day} time(s) today, its limit")
            continue
        if not rule.condition.holds(env):
            continue
        try:
            decision = decide(config.action, situation, env)
        except _NotApplicable as exc:
            notes.append(f"{config.name}: matched, but {config.action.type.value} not taken: {exc}")
            continue
        last_fired[config.name] = now
        fires_today[config.name] = fires_today.get(config.name, 0) + 1
        fired.append(Firing(rule=config.name, decision=decision, why=_why(rule, env)))
        if config.final or rules.first_match_only:
            break
    if not fired:
        return Evaluation(memory=memory if memory.day == day else replace(memory, day=day),
                          notes=tuple(notes))
    return Evaluation(memory=RuleMemory(day=day, last_fired=tuple(sorted(last_fired.items())),
                                        fires_today=tuple(sorted(fires_today.items()))),
                      fired=tuple(fired), notes=tuple(notes))


def forget_removed(memory: RuleMemory, rules: RuleSet) -> RuleMemory:
    """Return the memory without rules the set no longer has (a reload keeps the others' cooldowns)."""
    names = set(rules.names)
    return replace(memory, last_fired=tuple(p for p in memory.last_fired if p[0] in names),
                   fires_today=tuple(p for p in memory.fires_today if p[0] in names))


def moving_average_cross(*, fast: int, slow: int, atr_period: int = 14, stop_atr: float | str = 2,
                         target_atr: float | str = 3, risk: float | str = 100,
                         max_quantity: float | str = 100) -> dict[str, dict[str, object]]:
    """Return `[rules]` tables for a long-only moving-average cross traded with ATR-sized brackets.

    On each closed bar: flat with nothing working and SMA(fast) crossing above SMA(slow) opens
    a market bracket (stop and target `stop_atr`/`target_atr` ATRs away, sized so the stop loses
    `risk`); long and SMA(fast) crossing below SMA(slow) closes the position. Tests and
    benchmarks use it to trade on bars without signals.
    """
    return {
        "ma_exit": {"on": "bar", "priority": 10, "final": True,
                    "when": f"position.long and crosses_below(sma({fast}), sma({slow}))",
                    "action": {"type": "close_position"}},
        "ma_entry": {"on": "bar", "priority": 5,
                     "when": (f"position.flat and position.working_orders == 0 and "
                              f"crosses_above(sma({fast}), sma({slow}))"),
                     "action": {"type": "open_bracket", "side": "buy", "risk": risk, "stop_atr": stop_atr,
                                "target_atr": target_atr, "atr_period": atr_period,
                                "max_quantity": max_quantity}},
    }
