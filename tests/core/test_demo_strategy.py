"""core.demo_strategy: MA-cross entries sized by ATR risk, exits on the cross back, cooldown, purity."""

from __future__ import annotations

import copy
import pickle
from decimal import ROUND_CEILING, Decimal

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core import demo_strategy as ds
from core.config import StrategyConfig
from core.indicators import atr_batch, sma_batch
from core.position import Position, PositionState
from core.types import Bar, OrderType, Side

D = Decimal
S = 1_000_000_000
CONFIG = StrategyConfig(fast=2, slow=4, atr_period=3, stop_atr_multiple=D(2), target_atr_multiple=D(3),
                        risk_per_trade=D(100), max_quantity=D(100))
FLAT = Position(symbol="AAPL")
LONG = Position(symbol="AAPL", quantity=D(10), cost_basis=D(1080), state=PositionState.OPEN)

# Falling closes (fast below slow), then 108: fast 104 > slow 103.5, the cross up.
HISTORY = (110, 108, 106, 104, 102, 100)
CROSS_UP = 108


def _bar(i: int, close: float, *, spread: float = 1.0, symbol: str = "AAPL") -> Bar:
    c = D(str(close))
    s = D(str(spread))
    return Bar(symbol=symbol, ts_ns=i * 60 * S, open=c, high=c + s, low=c - s, close=c)


def _bars(closes: tuple[float, ...] | list[float], start: int = 0) -> list[Bar]:
    return [_bar(start + i, c) for i, c in enumerate(closes)]


def _state(config: StrategyConfig = CONFIG, *, tick: str = "0.01", lot: int = 1) -> ds.StrategyState:
    return ds.new_state("AAPL", config, tick=D(tick), lot=D(lot))


def _warm(config: StrategyConfig = CONFIG) -> ds.StrategyState:
    return ds.warm_up(_state(config), _bars(HISTORY))


def _expected_atr(bars: list[Bar], n: int) -> Decimal:
    high = [float(b.high) for b in bars]
    low = [float(b.low) for b in bars]
    close = [float(b.close) for b in bars]
    return D(repr(float(atr_batch(high, low, close, n)[-1])))


def test_cross_up_when_flat_opens_atr_sized_bracket_on_tick_grid() -> None:
    state = _warm()
    bar = _bar(len(HISTORY), CROSS_UP)
    state, decisions = ds.on_bar(state, bar, FLAT)
    (entry,) = decisions
    assert isinstance(entry, ds.EnterBracket)
    atr = _expected_atr(_bars(HISTORY) + [bar], 3)
    assert entry.atr == atr
    assert entry.quantity == D(int(D(100) / (2 * atr)))
    assert (entry.side, entry.entry_type, entry.reference_price) == (Side.BUY, OrderType.MKT, D(108))
    tick = D("0.01")
    assert entry.stop_price == ((D(108) - 2 * atr) / tick).to_integral_value(ROUND_CEILING) * tick
    assert entry.target_price == ((D(108) + 3 * atr) / tick).to_integral_value(ROUND_CEILING) * tick
    assert entry.stop_price < D(108) < entry.target_price


@pytest.mark.parametrize(("position", "working", "expected"), [
    pytest.param(FLAT, False, 1, id="flat-enters"),
    pytest.param(FLAT, True, 0, id="cooldown-while-a-group-works"),
    pytest.param(LONG, False, 0, id="long-does-not-add"),
    pytest.param(Position(symbol="AAPL", state=PositionState.CLOSED), False, 1, id="closed-enters-again"),
])
def test_cross_up_enters_only_when_flat_and_no_group_works(position: Position, working: bool,
                                                           expected: int) -> None:
    _, decisions = ds.on_bar(_warm(), _bar(len(HISTORY), CROSS_UP), position, working=working)
    assert len(decisions) == expected


@pytest.mark.parametrize("history", [HISTORY[-2:], HISTORY[-3:]], ids=["cold", "slow-just-warm"])
def test_no_cross_before_both_averages_existed_on_the_previous_bar(history: tuple[int, ...]) -> None:
    state = _state()
    decisions = []
    for bar in _bars(history + (CROSS_UP,)):
        state, made = ds.on_bar(state, bar, FLAT)
        decisions.extend(made)
    assert decisions == [] and state.prev_slow is None


def test_cross_down_when_long_exits_whole_position_with_market_sell() -> None:
    state = ds.warm_up(_state(), _bars(HISTORY[:-2] + (100, 108, 108, 100)))
    state, decisions = ds.on_bar(state, _bar(len(HISTORY) + 2, 90), LONG)
    assert decisions == (ds.ExitPosition(side=Side.SELL, quantity=D(10), reason=decisions[0].reason),)
    assert "crossed below" in decisions[0].reason
    # Flat, the same cross is nothing to act on.
    _, decisions = ds.on_bar(ds.warm_up(_state(), _bars(HISTORY[:-2] + (100, 108, 108, 100))),
                             _bar(len(HISTORY) + 2, 90), FLAT)
    assert decisions == ()


@pytest.mark.parametrize(("atr", "risk", "cap", "lot", "quantity"), [
    pytest.param("0.5", "100", "1000", 1, 100, id="risk-over-stop-distance"),
    pytest.param("3", "100", "1000", 1, 16, id="floored"),
    pytest.param("0.01", "100", "25", 1, 25, id="capped-at-max-quantity"),
    pytest.param("3", "100", "1000", 5, 15, id="whole-lots"),
    pytest.param("60", "100", "1000", 1, 0, id="stop-wider-than-risk-gives-nothing"),
])
def test_size_is_risk_over_stop_multiple_times_atr(atr: str, risk: str, cap: str, lot: int,
                                                   quantity: int) -> None:
    config = StrategyConfig(fast=2, slow=4, risk_per_trade=D(risk), max_quantity=D(cap))
    assert ds.size(_state(config, lot=lot), D(atr)) == D(quantity)


def test_entry_too_small_for_one_share_decides_nothing() -> None:
    config = StrategyConfig(fast=2, slow=4, atr_period=3, risk_per_trade=D(1))
    _, decisions = ds.on_bar(_warm(config), _bar(len(HISTORY), CROSS_UP), FLAT)
    assert decisions == ()


def test_on_bar_never_mutates_the_state_it_was_given() -> None:
    state = _warm()
    before = copy.deepcopy(state)
    after, _ = ds.on_bar(state, _bar(len(HISTORY), CROSS_UP), FLAT)
    assert state == before
    assert after != before and after.bars_seen == before.bars_seen + 1
    assert after.fast is not state.fast and after.atr is not state.atr


def test_repeated_or_older_bar_changes_nothing() -> None:
    state = _warm()
    for bar in (_bar(len(HISTORY) - 1, 500), _bar(0, 1)):
        assert ds.on_bar(state, bar, FLAT) == (state, ())


def test_warm_up_skips_bars_it_has_seen_and_fills_the_gap() -> None:
    state = ds.warm_up(_state(), _bars(HISTORY[:4]))
    resumed = ds.warm_up(state, _bars(HISTORY))  # overlapping history after a restart
    assert resumed == _warm()


def test_state_round_trips_through_pickle() -> None:
    state = _warm()
    assert pickle.loads(pickle.dumps(state)) == state


@pytest.mark.parametrize(("make", "match"), [
    pytest.param(lambda: ds.new_state("AAPL", CONFIG, tick=D(0)), "tick", id="zero-tick"),
    pytest.param(lambda: ds.new_state("AAPL", StrategyConfig(fast=5, slow=5), tick=D("0.01")), "fast",
                 id="fast-not-below-slow"),
    pytest.param(lambda: ds.on_bar(_state(), _bar(0, 1, symbol="MSFT"), FLAT), "MSFT", id="other-symbol"),
])
def test_invalid_input_raises_invalid_strategy_input(make: object, match: str) -> None:
    with pytest.raises(ds.InvalidStrategyInput, match=match):
        make()  # type: ignore[operator]


@settings(max_examples=60)
@given(closes=st.lists(st.integers(50, 150), min_size=1, max_size=40))
def test_decisions_follow_batch_sma_crosses_when_flat(closes: list[int]) -> None:
    # Risk and multiples chosen so every cross is tradable: quantity >= 1, stop above zero.
    config = StrategyConfig(fast=2, slow=4, atr_period=3, stop_atr_multiple=D("0.1"),
                            target_atr_multiple=D("0.2"), risk_per_trade=D(10_000))
    bars = [_bar(i, c) for i, c in enumerate(closes)]
    state, entries = _state(config), []
    for i, bar in enumerate(bars):
        state, decisions = ds.on_bar(state, bar, FLAT)
        entries.extend(i for d in decisions if isinstance(d, ds.EnterBracket))
    fast = sma_batch(closes, 2)
    slow = sma_batch(closes, 4)
    atr = atr_batch([float(b.high) for b in bars], [float(b.low) for b in bars], closes, 3)
    crosses = [i for i in range(1, len(closes))
               if not np.isnan(slow[i - 1]) and not np.isnan(atr[i])
               and fast[i - 1] <= slow[i - 1] and fast[i] > slow[i]]
    assert entries == crosses
