"""core/rules.py: conditions, actions, priorities, cooldowns, daily limits and ATR sizing, as tables."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

import pytest

from core import rules as r
from core.config import parse_config
from core.errors import ConfigError
from core.position import Position, PositionState
from core.types import Bar, OrderType, Side, TimeInForce

D = Decimal
S = 1_000_000_000
# Tuesday 2026-11-24 10:00 in New York (EST, UTC-5): inside the regular session.
TUE_10AM = int(datetime(2026, 11, 24, 15, 0, tzinfo=timezone.utc).timestamp()) * S


def ruleset(rules: dict[str, Any], **strategy: Any) -> r.RuleSet:
    config = parse_config({"symbols": {"AAPL": {}, "MSFT": {}}, "rules": rules,
                           "strategy": strategy})
    return r.compile_rules(config)


def bars(closes: list[float], *, start: int = TUE_10AM - 3600 * S, width: float = 1.0) -> list[Bar]:
    return [Bar(symbol="AAPL", ts_ns=start + i * 60 * S, open=D(repr(c)), high=D(repr(c + width)),
                low=D(repr(c - width)), close=D(repr(c))) for i, c in enumerate(closes)]


def market(rules: r.RuleSet, closes: list[float] = [100.0] * 20, width: float = 1.0) -> r.MarketState:
    return r.warm_up(r.new_market(rules.series), bars(closes, width=width))


def long(quantity: int = 10, avg: str = "100", opened: int = TUE_10AM - 600 * S) -> Position:
    q = D(quantity)
    return Position(symbol="AAPL", quantity=q, cost_basis=q * D(avg),
                    state=PositionState.OPEN if q else PositionState.FLAT, opened_ts_ns=opened if q else 0)


def signal(direction: str = "LONG", confidence: str = "0.8", **more: Any) -> r.SignalFacts:
    return r.SignalFacts(signal_id="s-1", direction=direction, confidence=D(confidence),
                         created_ns=more.pop("created_ns", TUE_10AM - 2 * S), **more)


def situation(rules: r.RuleSet, *, position: Position | None = None, price: str | None = "100",
              spread: str = "0.02", now: int = TUE_10AM, **more: Any) -> r.Situation:
    last = D(price) if price is not None else None
    half = D(spread) / 2
    return r.Situation(symbol=more.pop("symbol", "AAPL"), now_ns=now,
                       position=position or Position(symbol="AAPL"),
                       market=more.pop("market_state", None) or market(rules), tick=D("0.01"),
                       bid=last - half if last is not None else None, ask=last + half if last is not None else None,
                       last=last, **more)


def fire(rules: r.RuleSet, event: str = "signal", memory: r.RuleMemory | None = None,
         **kw: Any) -> r.Evaluation:
    return r.evaluate(rules, memory or r.RuleMemory(), event, situation(rules, **kw))


def rule(when: str = "true", action: dict[str, Any] | None = None, **more: Any) -> dict[str, Any]:
    return {"when": when, "action": action or {"type": "log", "message": "hit"}, **more}


# ---------------------------------------------------------------- conditions


@pytest.mark.parametrize(("when", "kw", "fires"), [
    ("signal.long and signal.confidence >= 0.7", {"signal": signal("LONG", "0.8")}, True),
    ("signal.long and signal.confidence >= 0.7", {"signal": signal("LONG", "0.6")}, False),
    ("signal.direction == 'SHORT'", {"signal": signal("SHORT")}, True),
    ("signal.direction in ['LONG', 'SHORT']", {"signal": signal("FLAT")}, False),
    ("signal.age_s < 5", {"signal": signal(created_ns=TUE_10AM - 2 * S)}, True),
    ("signal.age_s < 5", {"signal": signal(created_ns=TUE_10AM - 9 * S)}, False),
    ("signal.minutes_to_expiry > 1", {"signal": signal(expires_ns=TUE_10AM + 300 * S)}, True),
    ("signal.minutes_to_expiry > 1", {"signal": signal()}, False),  # never expires: unknown
    ("position.flat", {"signal": signal()}, True),
    ("position.long and position.size == 10", {"signal": signal(), "position": long()}, True),
    ("position.unrealized_pnl > 40", {"signal": signal(), "position": long(avg="95")}, True),
    ("position.unrealized_pnl > 60", {"signal": signal(), "position": long(avg="95")}, False),
    ("position.minutes_held >= 10", {"signal": signal(), "position": long()}, True),
    ("position.minutes_held >= 11", {"signal": signal(), "position": long()}, False),
    ("position.minutes_held >= 0", {"signal": signal()}, False),  # flat: unknown, never true
    ("time.in_session and time.weekday == 'Tue' and time.hhmm == 1000", {"signal": signal()}, True),
    ("time.minutes_to_close == 360 and time.minutes_since_open == 30", {"signal": signal()}, True),
    ("time.in_session", {"signal": signal(), "now": TUE_10AM + 7 * 3600 * S}, False),  # 17:00
    ("time.in_session", {"signal": signal(), "now": TUE_10AM + 4 * 86400 * S}, False),  # Saturday
    ("market.spread <= 0.05 and market.mid == 100", {"signal": signal()}, True),
    ("market.spread <= 0.05", {"signal": signal(), "spread": "0.10"}, False),
    ("market.price > 99", {"signal": signal(), "price": None}, True),  # no quote: the last bar's close
    ("sma(5) == 100 and atr(14) == 2", {"signal": signal()}, True),
    ("highest(5) == 101 and lowest(5) == 99", {"signal": signal()}, True),
    ("sma(50) > 0", {"signal": signal()}, False),  # 20 bars: not warmed up, unknown
    ("not (sma(50) > 0)", {"signal": signal()}, False),  # unknown stays unknown under not
    ("known(atr(14)) and not known(sma(50))", {"signal": signal()}, True),
    ("symbol == 'AAPL'", {"signal": signal()}, True),
])
def test_condition_reads_event_position_time_and_market(when: str, kw: dict[str, Any], fires: bool) -> None:
    rules = ruleset({"x": rule(when)})

    assert bool(fire(rules, **kw).fired) is fires


@pytest.mark.parametrize(("extra", "fires"), [
    ({"all": ["position.flat", "signal.long"]}, True),
    ({"all": ["position.flat", "signal.short"]}, False),
    ({"any": ["signal.short", "signal.confidence > 0.5"]}, True),
    ({"any": ["signal.short", "signal.confidence > 0.9"]}, False),
    ({"all": ["position.flat"], "any": ["signal.flat", "signal.long"]}, True),
])
def test_all_and_any_lists_combine_with_when(extra: dict[str, Any], fires: bool) -> None:
    rules = ruleset({"x": rule("signal.confidence > 0", **extra)})

    assert bool(fire(rules, signal=signal("LONG", "0.8")).fired) is fires


def test_crosses_above_compares_this_bar_with_the_previous_one() -> None:
    rules = ruleset({"x": rule("crosses_above(sma(1), sma(2))", on="bar")})
    falling = market(rules, [100.0, 99.0])
    crossed = r.advance(falling, bars([100.0, 99.0, 101.0])[-1])

    assert not fire(rules, "bar", market_state=falling).fired
    assert fire(rules, "bar", market_state=crossed).fired


def test_bar_rules_do_not_run_on_signals_and_signal_rules_not_on_bars() -> None:
    rules = ruleset({"on_bar": rule(on="bar"), "on_signal": rule(on="signal")})

    assert [f.rule for f in fire(rules, "bar").fired] == ["on_bar"]
    assert [f.rule for f in fire(rules, "signal", signal=signal()).fired] == ["on_signal"]


def test_rule_limited_to_symbols_skips_the_others() -> None:
    rules = ruleset({"msft_only": rule(symbols=["MSFT"])})

    assert not fire(rules, signal=signal()).fired
    assert fire(rules, signal=signal(), symbol="MSFT").fired


# ---------------------------------------------------------------- priorities, final, cooldowns, limits


@pytest.mark.parametrize(("rules_def", "strategy", "expected"), [
    ({"low": rule(priority=1), "high": rule(priority=9), "mid": rule(priority=5)}, {}, ["high", "mid", "low"]),
    ({"a": rule(), "b": rule(), "c": rule()}, {}, ["a", "b", "c"]),  # ties: file order
    ({"low": rule(priority=1), "high": rule(priority=9, final=True)}, {}, ["high"]),
    ({"low": rule(priority=1), "high": rule(priority=9)}, {"first_match_only": True}, ["high"]),
    ({"low": rule(priority=1), "high": rule("false", priority=9, final=True)}, {}, ["low"]),
    ({"off": rule(priority=9, enabled=False), "on": rule()}, {}, ["on"]),
])
def test_rules_run_by_priority_and_stop_after_a_final_match(rules_def: dict[str, Any], strategy: dict[str, Any],
                                                            expected: list[str]) -> None:
    rules = ruleset(rules_def, **strategy)

    assert [f.rule for f in fire(rules, signal=signal()).fired] == expected


@pytest.mark.parametrize(("after_s", "fires"), [(10, False), (59.9, False), (60, True), (3600, True)])
def test_cooldown_is_per_rule_and_symbol(after_s: float, fires: bool) -> None:
    rules = ruleset({"x": rule(cooldown_s=60), "free": rule()})
    first = fire(rules, signal=signal())
    later = fire(rules, memory=first.memory, signal=signal(), now=TUE_10AM + int(after_s * S))

    assert [f.rule for f in first.fired] == ["x", "free"]
    assert ("x" in [f.rule for f in later.fired]) is fires and "free" in [f.rule for f in later.fired]
    assert fires or any("x: cooling down" in note for note in later.notes)


def test_daily_fire_limit_stops_a_rule_until_the_next_exchange_day() -> None:
    rules = ruleset({"x": rule(max_fires_per_day=2)})
    memory = r.RuleMemory()
    fired = []
    for minute in range(4):
        result = fire(rules, memory=memory, signal=signal(), now=TUE_10AM + minute * 60 * S)
        memory = result.memory
        fired.append(bool(result.fired))
    # 00:30 New York the next day is a new exchange day (05:30 UTC would not be in UTC terms).
    next_day = fire(rules, memory=memory, signal=signal(), now=TUE_10AM + int(14.5 * 3600) * S)

    assert fired == [True, True, False, False]
    assert next_day.fired


def test_matched_rule_whose_action_cannot_be_taken_does_not_count_as_fired() -> None:
    rules = ruleset({"close": rule(action={"type": "close_position"}, cooldown_s=60)})
    flat = fire(rules, signal=signal())
    held = fire(rules, memory=flat.memory, signal=signal(), position=long())

    assert not flat.fired and "no position to close" in flat.notes[0]
    assert held.fired  # no cooldown was started by the first, unfired match


def test_forget_removed_keeps_cooldowns_of_rules_still_present() -> None:
    rules = ruleset({"a": rule(cooldown_s=60), "b": rule(cooldown_s=60)})
    memory = fire(rules, signal=signal()).memory
    reloaded = ruleset({"a": rule(cooldown_s=60)})

    assert [n for n, _ in r.forget_removed(memory, reloaded).last_fired] == ["a"]


# ---------------------------------------------------------------- sizing and actions


@pytest.mark.parametrize(("risk", "stop_atr", "atr", "lot", "cap", "expected"), [
    ("100", "2", "1", "1", "1000", "50"),
    ("100", "2", "0.3", "1", "1000", "166"),     # 166.67 rounds down
    ("100", "2", "0.3", "100", "1000", "100"),   # in lots of 100
    ("100", "2", "0.3", "1", "80", "80"),        # capped
    ("100", "2", "60", "1", "1000", "0"),        # below one share: nothing
    ("100", "2", "0.3", "200", "1000", "0"),     # below one lot: nothing
])
def test_size_by_risk_is_risk_over_stop_distance_in_whole_lots_capped(
        risk: str, stop_atr: str, atr: str, lot: str, cap: str, expected: str) -> None:
    assert r.size_by_risk(D(risk), D(stop_atr), D(atr), lot=D(lot), max_quantity=D(cap)) == D(expected)


BRACKET = {"type": "open_bracket", "side": "signal", "risk": 100, "stop_atr": 2, "target_atr": 3}


@pytest.mark.parametrize(("direction", "side", "stop", "target"), [
    ("LONG", Side.BUY, "96.00", "106.00"),
    ("SHORT", Side.SELL, "104.00", "94.00"),
])
def test_open_bracket_follows_the_signal_with_atr_stop_and_target(direction: str, side: Side, stop: str,
                                                                  target: str) -> None:
    rules = ruleset({"enter": rule(action=BRACKET)})
    (firing,) = fire(rules, signal=signal(direction)).fired
    decision = firing.decision

    assert isinstance(decision, r.OpenPosition) and decision.is_bracket
    assert (decision.side, decision.quantity, decision.order_type) == (side, D(25), OrderType.MKT)
    assert (decision.stop_loss, decision.take_profit) == (D(stop), D(target))  # ATR(14) = 2
    assert decision.atr == D(2) and decision.reference_price == D(100)


@pytest.mark.parametrize(("kw", "note"), [
    ({"signal": signal("FLAT")}, "FLAT"),
    ({"signal": signal(), "price": None, "market_state": r.MarketState()}, "no market price"),
])
def test_open_bracket_not_taken_without_side_or_price(kw: dict[str, Any], note: str) -> None:
    rules = ruleset({"enter": rule(action=BRACKET)})
    result = fire(rules, **kw)

    assert not result.fired and note in result.notes[0]


def test_open_bracket_waits_for_its_atr() -> None:
    rules = ruleset({"enter": rule(action=BRACKET)})
    result = fire(rules, signal=signal(), market_state=market(rules, [100.0] * 5))

    assert not result.fired and "ATR(14) is not ready" in result.notes[0]


def test_open_bracket_with_limit_entry_prices_the_children_from_the_limit() -> None:
    rules = ruleset({"enter": rule(action={**BRACKET, "entry": "limit", "limit_offset_ticks": 5})})
    (firing,) = fire(rules, signal=signal("LONG")).fired

    assert (firing.decision.order_type, firing.decision.limit_price) == (OrderType.LMT, D("99.95"))
    assert (firing.decision.stop_loss, firing.decision.take_profit) == (D("95.95"), D("105.95"))


@pytest.mark.parametrize(("entry", "order_type", "limit", "stop"), [
    ("market", OrderType.MKT, None, None),
    ("limit", OrderType.LMT, "99.90", None),
    ("stop", OrderType.STP, None, "100.20"),
    ("stop_limit", OrderType.STP_LMT, "100.20", "100.20"),
])
def test_open_order_of_each_type_prices_from_the_market(entry: str, order_type: OrderType, limit: str | None,
                                                        stop: str | None) -> None:
    action = {"type": "open_order", "side": "buy", "quantity": 7, "entry": entry, "limit_offset_ticks": 10,
              "stop_offset_ticks": 20, "tif": "GTC"}
    (firing,) = fire(ruleset({"x": rule(action=action)}), signal=signal()).fired
    decision = firing.decision

    assert not decision.is_bracket and (decision.side, decision.quantity) == (Side.BUY, D(7))
    assert decision.order_type is order_type and decision.tif is TimeInForce.GTC
    assert decision.limit_price == (D(limit) if limit else None)
    assert decision.stop_price == (D(stop) if stop else None)


def test_opening_is_not_taken_while_a_close_is_pending() -> None:
    result = fire(ruleset({"x": rule(action=BRACKET)}), signal=signal(), position=long(), exit_pending=True)

    assert not result.fired and "close of the position is on its way" in result.notes[0]


@pytest.mark.parametrize(("action", "kw", "expected"), [
    ({"type": "close_position"}, {"position": long()}, r.ClosePosition()),
    ({"type": "scale_out", "fraction": 0.5}, {"position": long(10)}, r.ClosePosition(quantity=D(5))),
    ({"type": "scale_out", "fraction": 0.33}, {"position": long(10)}, r.ClosePosition(quantity=D(3))),
    ({"type": "scale_out", "quantity": 50}, {"position": long(10)}, r.ClosePosition(quantity=D(10))),
    ({"type": "cancel_orders"}, {"groups": (r.Protection(group_id="g1", entry=True),
                                           r.Protection(group_id="g2", entry=True, filled=True))},
     r.CancelGroups(group_ids=("g1",))),
    ({"type": "cancel_orders", "scope": "all"}, {"groups": (r.Protection(group_id="g1", entry=True),
                                                            r.Protection(group_id="g2", entry=True, filled=True))},
     r.CancelGroups(group_ids=("g1", "g2"))),
    ({"type": "log", "message": "{symbol} at {market.price}, sma {sma(5)}, x {nope}", "level": "WARNING"}, {},
     r.Notify(level="WARNING", message="AAPL at 100, sma 100, x ?")),
])
def test_position_and_order_actions_resolve_to_decisions(action: dict[str, Any], kw: dict[str, Any],
                                                         expected: r.Decision) -> None:
    (firing,) = fire(ruleset({"x": rule(action=action)}), signal=signal(), **kw).fired

    assert firing.decision == expected


@pytest.mark.parametrize(("action", "kw", "note"), [
    ({"type": "close_position"}, {}, "no position to close"),
    ({"type": "close_position"}, {"position": long(), "exit_pending": True}, "already on its way"),
    ({"type": "scale_out", "fraction": 0.05}, {"position": long(10)}, "rounds to 0 lots"),
    ({"type": "scale_out", "fraction": 0.5},
     {"position": long(10), "groups": (r.Protection(group_id="g", entry=True, filled=True, stop=D(95)),)},
     "use close_position"),
    ({"type": "cancel_orders"}, {}, "no working entry orders"),
])
def test_actions_that_do_not_apply_now_are_noted_not_taken(action: dict[str, Any], kw: dict[str, Any],
                                                           note: str) -> None:
    result = fire(ruleset({"x": rule(action=action)}), signal=signal(), **kw)

    assert not result.fired and note in result.notes[0]


PROTECTED = (r.Protection(group_id="g1", entry=True, filled=True, stop=D("95.00")),)


@pytest.mark.parametrize(("action", "kw", "moves", "note"), [
    ({"type": "break_even"}, {"position": long(avg="98"), "groups": PROTECTED}, (("g1", D("98.00")),), None),
    ({"type": "break_even", "offset_ticks": 3}, {"position": long(avg="98"), "groups": PROTECTED},
     (("g1", D("98.03")),), None),
    ({"type": "break_even"}, {"position": long(avg="94"), "groups": PROTECTED}, None, "already at or beyond"),
    ({"type": "break_even"}, {"position": long(avg="101"), "groups": PROTECTED}, None, "wrong side of the price"),
    ({"type": "trail_stop", "trail_amount": 2}, {"position": long(), "groups": PROTECTED},
     (("g1", D("98.00")),), None),
    ({"type": "trail_stop", "trail_atr": 1.5}, {"position": long(), "groups": PROTECTED},
     (("g1", D("97.00")),), None),  # 1.5 × ATR 2 behind 100
    ({"type": "trail_stop", "trail_amount": 6}, {"position": long(), "groups": PROTECTED}, None,
     "already at or beyond"),  # 94 would loosen the 95 stop: a trail only tightens
    ({"type": "trail_stop", "trail_amount": 2}, {"position": long()}, None, "already at or beyond"),  # no stop
])
def test_stop_moves_only_tighten_and_stay_behind_the_price(action: dict[str, Any], kw: dict[str, Any],
                                                           moves: tuple[Any, ...] | None, note: str | None) -> None:
    result = fire(ruleset({"x": rule(action=action, on="bar")}), "bar", **kw)

    if moves is None:
        assert not result.fired and note in result.notes[0]
    else:
        assert result.fired[0].decision == r.MoveStops(moves=moves)


def test_short_position_stops_move_down() -> None:
    short = Position(symbol="AAPL", quantity=D(-10), cost_basis=D(-1020), state=PositionState.OPEN)
    groups = (r.Protection(group_id="g1", entry=True, filled=True, stop=D("105.00")),)
    result = fire(ruleset({"x": rule(action={"type": "trail_stop", "trail_amount": 2})}), signal=signal(),
                  position=short, groups=groups)

    assert result.fired[0].decision == r.MoveStops(moves=(("g1", D("102.00")),))


def test_firing_says_why_with_the_values_it_read() -> None:
    rules = ruleset({"x": rule("signal.confidence >= 0.7 and position.flat")})
    (firing,) = fire(rules, signal=signal("LONG", "0.82")).fired

    assert firing.why == "`(signal.confidence >= 0.7 and position.flat)` with position.flat=true, " \
                         "signal.confidence=0.82"


# ---------------------------------------------------------------- validation


@pytest.mark.parametrize(("rules_def", "fragments"), [
    ({"x": rule("signal.confidance > 0.5")}, ("rules.x.when", "signal.confidance", "did you mean")),
    ({"x": rule("position.flat", all=["sma(0) > 1"])}, ("rules.x.all[0]", "sma(0)")),
    ({"x": rule("signal.long", on="bar")}, ("rules.x.when", 'signal fields exist only in rules with on = "signal"')),
    ({"x": rule("__import__('os')")}, ("rules.x.when", "__import__")),
    ({"x": rule(symbols=["TSLA"])}, ("rules.x.symbols", "TSLA not traded")),
    ({"x": rule(action={"type": "open_bracket", "risk": 100, "stop_atr": 2})},
     ("rules.x.action", "stop_atr and target_atr")),
    ({"x": rule(action={"type": "open_bracket", "quantity": 5, "risk": 100, "stop_atr": 2, "target_atr": 3})},
     ("rules.x.action", "exactly one of quantity")),
    ({"x": rule(action={"type": "open_order", "side": "buy", "risk": 100})}, ("rules.x.action.risk", "stop_atr too")),
    ({"x": rule(on="bar", action={"type": "open_order", "quantity": 1})}, ("rules.x.action.side", "no signal")),
    ({"x": rule(action={"type": "open_bracket", "quantity": 5, "stop_atr": 2, "target_atr": 3,
                        "entry": "stop"})}, ("rules.x.action.entry", '"market" or "limit"')),
    ({"x": rule(action={"type": "scale_out"})}, ("rules.x.action", "fraction")),
    ({"x": rule(action={"type": "trail_stop", "trail_atr": 1, "trail_amount": 1})}, ("rules.x.action", "trail")),
    ({"x": rule(action={"type": "log"})}, ("rules.x.action", "needs a message")),
    ({"x": rule(action={"type": "teleport"})}, ("rules.x.action.type", "open_bracket")),
    ({"bad name!": rule()}, ("rules", "rule name")),
])
def test_invalid_rules_are_refused_at_load_naming_the_rule_and_text(rules_def: dict[str, Any],
                                                                    fragments: tuple[str, ...]) -> None:
    with pytest.raises(ConfigError) as info:
        ruleset(rules_def)

    text = str(info.value)
    for fragment in fragments:
        assert fragment in text, (fragment, text)


def test_every_problem_of_every_rule_is_reported_together() -> None:
    with pytest.raises(ConfigError) as info:
        ruleset({"a": rule("nope"), "b": rule(action={"type": "log"}), "c": rule()})

    assert len(info.value.problems) == 2


def test_shipped_config_rules_compile() -> None:
    from pathlib import Path

    from core.config import load_config

    config = load_config(Path(__file__).parents[2] / "config.toml")
    rules = r.compile_rules(config)
    assert {"enter_long", "enter_short", "exit_on_reversal", "trail_winners"} <= set(rules.names)
    assert ("atr", (14,)) in rules.series


def test_version_is_a_digest_of_the_rule_configuration() -> None:
    a = ruleset({"x": rule("position.flat")})
    b = ruleset({"x": rule("position.flat")})
    c = ruleset({"x": rule("position.long")})

    assert a.version == b.version != c.version and a.version.startswith("r-")


# ---------------------------------------------------------------- market state


def test_retarget_warms_new_indicators_from_the_history_like_a_fresh_market() -> None:
    closes = [100.0 + (i % 7) - (i % 3) for i in range(60)]
    before = ruleset({"x": rule("sma(5) > 0")})
    after = ruleset({"x": rule("sma(5) > 0 and rsi(14) > 0 and ema(10) > 0")})
    moved = r.retarget(market(before, closes), after.series)
    fresh = market(after, closes)

    assert moved.values == pytest.approx(fresh.values)
    assert moved.previous == pytest.approx(fresh.previous)
    assert moved.bars_seen == fresh.bars_seen == 60


def test_advance_skips_a_bar_not_newer_than_the_last_and_keeps_a_bounded_history() -> None:
    rules = ruleset({"x": rule("sma(3) > 0")})
    state = market(rules, [100.0] * (r.HISTORY_BARS + 10))
    again = r.advance(state, state.history[-1])

    assert again is state and len(state.history) == r.HISTORY_BARS


def test_moving_average_cross_rules_compile_and_enter_on_a_cross() -> None:
    rules = ruleset(r.moving_average_cross(fast=1, slow=2, atr_period=1, stop_atr=2, target_atr=3))
    crossed = market(rules, [100.0, 100.0, 99.0, 100.0], width=0.5)
    (firing,) = fire(rules, "bar", market_state=crossed).fired

    assert firing.rule == "ma_entry" and firing.decision.side is Side.BUY
    exit_ = fire(rules, "bar", market_state=r.advance(crossed, bars([100.0] * 4 + [98.0])[-1]), position=long())
    assert [f.rule for f in exit_.fired] == ["ma_exit"]


def test_memory_day_moves_even_when_nothing_fires() -> None:
    rules = ruleset({"x": rule("false")})
    result = fire(rules, signal=signal())

    assert result.memory.day == r.exchange_day(rules, TUE_10AM)
    assert replace(result.memory, day=-1) == r.RuleMemory()
