"""The stand-in demo strategy: a long-only moving-average cross with ATR-sized, ATR-protected brackets.

`on_bar(state, bar, position)` is pure. The state is an immutable value, but the streaming
indicators it holds (core.indicators Sma/Atr) are mutable objects: `on_bar` and `warm_up` update
*copies* of them and return a new state, and never mutate the state they were given. So a state
handed out (in a snapshot, or kept by the caller) never changes under its holder's feet, and a
call that raises leaves the caller's state as it was. A state pickles (the indicators do).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from decimal import ROUND_FLOOR, Decimal
from typing import Final, TypeAlias

from core.config import StrategyConfig, StrategyKind
from core.errors import CoreError
from core.indicators import Atr, Sma
from core.orders import round_to_tick
from core.position import Position
from core.types import Bar, OrderType, Side

_ONE: Final = Decimal(1)


class InvalidStrategyInput(CoreError, ValueError):
    """The strategy got a configuration it cannot run, or a bar of another symbol."""


@dataclass(frozen=True, slots=True, kw_only=True)
class StrategyState:
    """The strategy's memory for one symbol: its settings, indicators and the previous averages.

    `last_ts_ns` is the start of the last bar seen (-1 = none): a bar not newer than it is a
    repeat (a history bar the live feed also built) and is ignored.
    """

    symbol: str
    config: StrategyConfig
    tick: Decimal
    lot: Decimal
    fast: Sma
    slow: Sma
    atr: Atr
    prev_fast: float | None = None
    prev_slow: float | None = None
    last_ts_ns: int = -1
    bars_seen: int = 0

    @property
    def warmed_up(self) -> bool:
        """Return True once both averages and the ATR have values."""
        return self.fast.value is not None and self.slow.value is not None \
            and self.atr.value is not None


# ---------------------------------------------------------------- decisions


@dataclass(frozen=True, slots=True, kw_only=True)
class EnterBracket:
    """Open a position with a bracket: entry, stop-loss (STP) and take-profit (LMT) children.

    The entry is a market order: the cross is a signal for now, and a limit that misses would
    leave a working entry blocking every later one. `reference_price` (the bar's close) anchors
    the stop and target, and the ATR sizing assumes it.
    """

    side: Side
    quantity: Decimal
    entry_type: OrderType
    reference_price: Decimal
    stop_price: Decimal
    target_price: Decimal
    atr: Decimal
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ExitPosition:
    """Close `quantity` of the position with a market order on `side` (cancel its protection first)."""

    side: Side
    quantity: Decimal
    reason: str


Decision: TypeAlias = EnterBracket | ExitPosition


# ---------------------------------------------------------------- state


def new_state(symbol: str, config: StrategyConfig, *, tick: Decimal,
              lot: Decimal = _ONE) -> StrategyState:
    """Return a fresh (cold) strategy state for `symbol` trading on `tick` in lots of `lot`."""
    if config.kind is not StrategyKind.MA_CROSS:
        raise InvalidStrategyInput(f"strategy kind {config.kind!r} is not supported; expected ma_cross")
    if not config.fast < config.slow:
        raise InvalidStrategyInput(f"fast={config.fast} must be below slow={config.slow}")
    for name, value in (("tick", tick), ("lot", lot)):
        if not isinstance(value, Decimal) or not value.is_finite() or value <= 0:
            raise InvalidStrategyInput(f"{name}={value!r} is invalid; expected a Decimal > 0")
    return StrategyState(symbol=symbol, config=config, tick=tick, lot=lot,
                         fast=Sma(config.fast), slow=Sma(config.slow), atr=Atr(config.atr_period))


def _advance(state: StrategyState, bar: Bar) -> StrategyState:
    fast, slow, atr = state.fast.copy(), state.slow.copy(), state.atr.copy()
    fast.update(bar.close)
    slow.update(bar.close)
    atr.update(bar.high, bar.low, bar.close)
    return replace(state, fast=fast, slow=slow, atr=atr, prev_fast=state.fast.value,
                   prev_slow=state.slow.value, last_ts_ns=bar.ts_ns, bars_seen=state.bars_seen + 1)


def _is_new(state: StrategyState, bar: Bar) -> bool:
    if bar.symbol != state.symbol:
        raise InvalidStrategyInput(f"bar for {bar.symbol!r} given to the {state.symbol} strategy")
    return bar.ts_ns > state.last_ts_ns


def warm_up(state: StrategyState, bars: Iterable[Bar]) -> StrategyState:
    """Return the state after feeding `bars` (oldest first) without deciding anything.

    Bars not newer than the last one seen are skipped, so a history that overlaps the live bars
    (or a restart's snapshot) only fills the gap after them.
    """
    for bar in bars:
        if _is_new(state, bar):
            state = _advance(state, bar)
    return state


# ---------------------------------------------------------------- decide


def _crossed_up(state: StrategyState) -> bool:
    pf, ps, f, s = state.prev_fast, state.prev_slow, state.fast.value, state.slow.value
    return None not in (pf, ps, f, s) and pf <= ps and f > s  # type: ignore[operator]


def _crossed_down(state: StrategyState) -> bool:
    pf, ps, f, s = state.prev_fast, state.prev_slow, state.fast.value, state.slow.value
    return None not in (pf, ps, f, s) and pf >= ps and f < s  # type: ignore[operator]


def size(state: StrategyState, atr: Decimal) -> Decimal:
    """Return floor(risk / (stop multiple × ATR)) in whole lots, capped at the maximum; 0 = too small."""
    config = state.config
    risk_per_unit = config.stop_atr_multiple * atr
    if risk_per_unit <= 0:
        return Decimal(0)
    quantity = min(config.risk_per_trade / risk_per_unit, config.max_quantity)
    lots = (quantity / state.lot).to_integral_value(rounding=ROUND_FLOOR)
    return lots * state.lot


def _entry(state: StrategyState, bar: Bar) -> EnterBracket | None:
    assert state.atr.value is not None
    atr = Decimal(repr(state.atr.value))
    quantity = size(state, atr)
    if quantity < 1:
        return None
    config = state.config
    close = bar.close
    # Both children sell: round_to_tick rounds a sell up, so the stop is never looser than asked
    # (and the target a tick further at most).
    stop = round_to_tick(close - config.stop_atr_multiple * atr, state.tick, Side.SELL)
    target = round_to_tick(close + config.target_atr_multiple * atr, state.tick, Side.SELL)
    if not 0 < stop < close < target:
        return None  # an ATR below one tick leaves no room for a stop under the price
    reason = (f"fast SMA {state.fast.value:.4f} crossed above slow SMA {state.slow.value:.4f}; "
              f"ATR {atr:.4f}")
    return EnterBracket(side=Side.BUY, quantity=quantity, entry_type=OrderType.MKT,
                        reference_price=close, stop_price=stop, target_price=target, atr=atr,
                        reason=reason)


def on_bar(state: StrategyState, bar: Bar, position: Position, *,
           working: bool = False) -> tuple[StrategyState, tuple[Decision, ...]]:
    """Return the state after one closed bar and what to do about it.

    Flat, no group working (`working` = the symbol has an order group in flight: the cooldown),
    warmed up and the fast SMA crossing above the slow one: a BUY bracket sized by ATR risk.
    Long and the fast SMA crossing below the slow one: exit the whole position. A repeated or
    older bar changes nothing.
    """
    if not _is_new(state, bar):
        return state, ()
    state = _advance(state, bar)
    if not state.warmed_up:
        return state, ()
    if position.quantity > 0 and _crossed_down(state):
        reason = (f"fast SMA {state.fast.value:.4f} crossed below slow SMA "
                  f"{state.slow.value:.4f}")
        return state, (ExitPosition(side=Side.SELL, quantity=position.quantity, reason=reason),)
    if position.quantity == 0 and not working and _crossed_up(state):
        entry = _entry(state, bar)
        if entry is not None:
            return state, (entry,)
    return state, ()
