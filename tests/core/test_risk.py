"""Tests for core.risk: each limit at and past its edge, the check order, modes, the loss ladder, bookkeeping."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings, strategies as st

from core.config import RiskConfig
from core.errors import InvalidRiskInput
from core.risk import (
    POSITION_LIMITS,
    WINDOW_NS,
    Account,
    Holding,
    Limit,
    Mode,
    Proposal,
    Verdict,
    Working,
    assess,
    check,
    day_pnl,
    decide,
    group_finished,
    is_reducing,
    new_day,
    position_changed,
    position_of,
    set_mode,
    with_position,
)
from core.types import OrderType, Side
from messages.risk import TradingState

D = Decimal
S = 1_000_000_000
NOW = 1_000 * S
# 500 qty, 50k notional, 5% collar, 1000 position, 250k gross, 150k net, 50 open orders, 60/min,
# 5000 daily loss, reduce-only at 80% (the defaults, but the notional: the tables are written for 50k)
LIMITS = RiskConfig(max_order_notional=D(50_000))
WIDE = RiskConfig(max_order_quantity=D(10**6), max_order_notional=D(10**9),
                  max_position_per_symbol=D(10**6), max_gross_exposure=D(10**12),
                  max_net_exposure=D(10**12), max_open_orders=1000, max_orders_per_minute=1000)


def _p(side: str = "BUY", quantity: Any = 100, *, symbol: str = "AAPL", order_type: str = "LMT",
       limit: Any = "100", stop: Any = None, market: Any = "100", legs: int = 1,
       intent_id: str = "g-new", reduce_only: bool = False, operator: bool = False) -> Proposal:
    def dec(x: Any) -> Decimal | None:
        return None if x is None else D(str(x))

    return Proposal(intent_id=intent_id, symbol=symbol, side=Side(side), quantity=D(str(quantity)),
                    order_type=OrderType(order_type), limit_price=dec(limit), stop_price=dec(stop),
                    market_price=dec(market), legs=legs, reduce_only=reduce_only, operator=operator)


def _hold(symbol: str = "AAPL", quantity: Any = 0, mark: Any = None, net_pnl: Any = 0) -> Holding:
    return Holding(symbol=symbol, quantity=D(str(quantity)),
                   mark=None if mark is None else D(str(mark)), net_pnl=D(str(net_pnl)))


def _work(intent_id: str, pending: Any = 0, *, symbol: str = "AAPL", legs: int = 1) -> Working:
    return Working(intent_id=intent_id, symbol=symbol, legs=legs, pending=D(str(pending)))


def _sent(times: tuple[int, ...] | list[int]) -> tuple[tuple[int, int], ...]:
    """Return the rate window's buckets holding one leg approved at each of `times` (ns)."""
    counts: dict[int, int] = {}
    for t in times:
        counts[t // S] = counts.get(t // S, 0) + 1
    return tuple(sorted(counts.items()))


def _acct(*holdings: Holding, working: tuple[Working, ...] = (), sent_ns: tuple[int, ...] = (),
          mode: Mode = Mode.ACTIVE, reason: str = "") -> Account:
    return Account(mode=mode, mode_reason=reason, holdings=holdings, working=working, sent=_sent(sent_ns))


def _open(legs: int) -> tuple[Working, ...]:
    return tuple(_work(f"g-{i}", symbol="MSFT") for i in range(legs))


def _assert_verdict(verdict: Verdict, expected: Limit | None, parts: tuple[str, ...]) -> None:
    if expected is None:
        assert verdict.approved, verdict
        assert verdict.limit is None
        return
    assert not verdict.approved
    assert verdict.limit is expected, verdict
    for part in parts:
        assert part in verdict.detail, (part, verdict.detail)


# ---------------------------------------------------------------- every limit: at it passes, past it fails

GROSS = replace(WIDE, max_gross_exposure=D(100_000))
NET = replace(WIDE, max_net_exposure=D(100_000))
SHORT_MSFT = _hold("MSFT", -500, mark="100")  # gross 50000, net -50000
LONG_MSFT = _hold("MSFT", 500, mark="100")    # gross 50000, net +50000

EDGES: list[tuple[str, RiskConfig, Account, Proposal, Limit | None, tuple[str, ...]]] = [
    ("quantity at", LIMITS, _acct(), _p(quantity=500, limit="10", market="10"), None, ()),
    ("quantity past", LIMITS, _acct(), _p(quantity=800, limit="10", market="10"),
     Limit.MAX_ORDER_QUANTITY, ("quantity 800 > max_order_quantity 500 (by 300)",)),
    ("notional at", LIMITS, _acct(), _p(quantity=500, limit="100"), None, ()),
    ("notional past", LIMITS, _acct(), _p(quantity=500, limit="100.01"),
     Limit.MAX_ORDER_NOTIONAL, ("notional 50005.00 > max_order_notional 50000 (by 5.00)",)),
    ("notional of a market order uses the market", LIMITS, _acct(),
     _p(quantity=500, order_type="MKT", limit=None, market="100.01"),
     Limit.MAX_ORDER_NOTIONAL, ("50005.00", "(by 5.00)")),
    ("notional of a stop order uses the stop", LIMITS, _acct(),
     _p(quantity=500, order_type="STP", limit=None, stop="100.02", market="100"),
     Limit.MAX_ORDER_NOTIONAL, ("50010.00", "(by 10.00)")),
    ("collar at, above", LIMITS, _acct(), _p(limit="105"), None, ()),
    ("collar at, below", LIMITS, _acct(), _p(limit="95"), None, ()),
    ("collar past", LIMITS, _acct(), _p(limit="110.00", market="100.00"),
     Limit.PRICE_COLLAR, ("limit 110.00 is 10.0% from the market 100.00 > price_collar_pct 5 "
                          "(by 5.0 points)",)),
    ("collar just past", LIMITS, _acct(), _p(limit="105.01"),
     Limit.PRICE_COLLAR, ("limit 105.01 is 5.01% from the market 100", "(by 0.01 points)")),
    ("collar on a stop", LIMITS, _acct(), _p(order_type="STP", limit=None, stop="94.99"),
     Limit.PRICE_COLLAR, ("stop 94.99 is 5.01% from the market 100",)),
    ("position at", LIMITS, _acct(_hold(quantity=600), working=(_work("g-1", 300),)),
     _p(quantity=100, limit="10", market="10"), None, ()),
    ("position past", LIMITS, _acct(_hold(quantity=700), working=(_work("g-1", 300),)),
     _p(quantity=200, limit="10", market="10"),
     Limit.MAX_POSITION, ("position after the order 1200 > max_position_per_symbol 1000 (by 200)",
                          "position 700, pending +300, order +200")),
    ("position past, short", LIMITS, _acct(_hold(quantity=-900)),
     _p("SELL", 101, limit="10", market="10"),
     Limit.MAX_POSITION, ("position after the order -1001", "max_position_per_symbol 1000 (by 1)")),
    ("gross at", GROSS, _acct(SHORT_MSFT), _p(quantity=500, limit="100"), None, ()),
    ("gross past", GROSS, _acct(SHORT_MSFT), _p(quantity=500, limit="100.01"),
     Limit.MAX_GROSS, ("gross exposure after the order 100005.00 > max_gross_exposure 100000 "
                       "(by 5.00)",)),
    ("gross counts pending at the mark", GROSS,
     _acct(SHORT_MSFT, working=(_work("g-1", -1, symbol="MSFT"),)),
     _p(quantity=500, limit="100"), Limit.MAX_GROSS, ("100100.00", "(by 100.00)")),
    ("gross counts a symbol without a mark as 0", GROSS,
     _acct(SHORT_MSFT, _hold("IBM", 10_000)), _p(quantity=500, limit="100"), None, ()),
    ("gross values the own symbol at the order's price", GROSS,
     _acct(SHORT_MSFT, _hold("AAPL", 100, mark="1")), _p(quantity=400, limit="100"), None, ()),
    ("gross own symbol past", GROSS,
     _acct(SHORT_MSFT, _hold("AAPL", 101, mark="1")), _p(quantity=400, limit="100"),
     Limit.MAX_GROSS, ("100100.00",)),
    ("net at", NET, _acct(LONG_MSFT), _p(quantity=500, limit="100"), None, ()),
    ("net past", NET, _acct(LONG_MSFT), _p(quantity=500, limit="100.01"),
     Limit.MAX_NET, ("net exposure after the order 100005.00 > max_net_exposure 100000 (by 5.00)",)),
    ("net past, short", NET, _acct(SHORT_MSFT), _p("SELL", 500, limit="100.01"),
     Limit.MAX_NET, ("net exposure after the order -100005.00", "(by 5.00)")),
    ("open orders at", LIMITS, _acct(working=_open(47)), _p(legs=3), None, ()),
    ("open orders past", LIMITS, _acct(working=_open(47)), _p(legs=4),
     Limit.MAX_OPEN_ORDERS, ("51 > max_open_orders 50 (by 1)",)),
    ("rate at", LIMITS, _acct(sent_ns=(NOW - 59 * S,) * 57), _p(legs=3), None, ()),
    ("rate past", LIMITS, _acct(sent_ns=(NOW - 59 * S,) * 57 + (NOW,)), _p(legs=3),
     Limit.ORDER_RATE, ("61 > max_orders_per_minute 60 (by 1)",)),
    ("rate counts a send exactly 60 s ago (one-second buckets err on the strict side)", LIMITS,
     _acct(sent_ns=(NOW - 59 * S,) * 57 + (NOW - WINDOW_NS,)), _p(legs=3), Limit.ORDER_RATE, ()),
    ("rate forgets a send from the second before the window", LIMITS,
     _acct(sent_ns=(NOW - 59 * S,) * 57 + (NOW - WINDOW_NS - 1,)), _p(legs=3), None, ()),
    ("market price missing for a market order", LIMITS, _acct(),
     _p(order_type="MKT", limit=None, market=None), Limit.MARKET_PRICE, ("no market price for AAPL",)),
    ("market price missing for a stop order", LIMITS, _acct(),
     _p(order_type="STP", limit=None, stop="100", market=None), Limit.MARKET_PRICE, ()),
    ("market price zero is no market price", LIMITS, _acct(),
     _p(order_type="MKT", limit=None, market="0"), Limit.MARKET_PRICE, ()),
    ("limit order without a market price", LIMITS, _acct(), _p(market=None), None, ()),
    ("quantity zero", LIMITS, _acct(), _p(quantity=0), Limit.INVALID, ("quantity 0",)),
    ("quantity negative", LIMITS, _acct(), _p(quantity=-5), Limit.INVALID, ("quantity -5",)),
    ("quantity NaN", LIMITS, _acct(), _p(quantity="NaN"), Limit.INVALID, ("quantity NaN",)),
    ("limit price zero", LIMITS, _acct(), _p(limit="0"), Limit.INVALID, ("limit price 0",)),
    ("stop price negative", LIMITS, _acct(), _p(order_type="STP LMT", stop="-1"),
     Limit.INVALID, ("stop price -1",)),
    ("no legs", LIMITS, _acct(), _p(legs=0), Limit.INVALID, ("legs 0 < 1",)),
    ("intent already working", LIMITS, _acct(working=(_work("g-new", 100),)), _p(),
     Limit.INVALID, ("g-new is already working",)),
]


@pytest.mark.parametrize(("limits", "account", "proposal", "expected", "parts"),
                         [e[1:] for e in EDGES], ids=[e[0] for e in EDGES])
def test_check_passes_at_each_limit_and_names_it_one_past(limits: RiskConfig, account: Account,
                                                          proposal: Proposal, expected: Limit | None,
                                                          parts: tuple[str, ...]) -> None:
    _assert_verdict(check(limits, account, proposal, NOW), expected, parts)


def test_check_formats_decimals_without_exponent() -> None:
    verdict = check(LIMITS, _acct(), _p(quantity=D("8E+2"), limit="1E+1", market="1E+1"), NOW)
    assert verdict.detail == "quantity 800 > max_order_quantity 500 (by 300)"


# ---------------------------------------------------------------- the check order

ORDER: list[tuple[str, Account, Proposal, Limit]] = [
    ("invalid before the trading state", _acct(mode=Mode.HALTED), _p(quantity=0), Limit.INVALID),
    ("trading state before reduce-only", _acct(mode=Mode.REDUCE_ONLY), _p(reduce_only=True),
     Limit.TRADING_STATE),
    ("reduce-only before the collar", _acct(), _p(reduce_only=True, limit="200"), Limit.REDUCE_ONLY),
    ("collar before the size limits", _acct(), _p(quantity=900, limit="200"), Limit.PRICE_COLLAR),
    ("market price before quantity", _acct(), _p(quantity=900, order_type="MKT", limit=None, market=None),
     Limit.MARKET_PRICE),
    ("quantity before notional", _acct(), _p(quantity=900, limit="100"), Limit.MAX_ORDER_QUANTITY),
    ("notional before position", _acct(_hold(quantity=990)), _p(quantity=400, limit="200", market="200"),
     Limit.MAX_ORDER_NOTIONAL),
    ("position before gross", _acct(_hold("MSFT", 10_000, mark="100"), _hold(quantity=990)),
     _p(quantity=20), Limit.MAX_POSITION),
    ("gross before net", _acct(_hold("MSFT", 2_490, mark="100")), _p(quantity=200), Limit.MAX_GROSS),
    ("net before open orders", _acct(_hold("MSFT", 1_490, mark="100"), working=_open(50)),
     _p(quantity=200), Limit.MAX_NET),
    ("open orders before rate", _acct(working=_open(50), sent_ns=(NOW,) * 60), _p(), Limit.MAX_OPEN_ORDERS),
]


@pytest.mark.parametrize(("account", "proposal", "expected"), [o[1:] for o in ORDER],
                         ids=[o[0] for o in ORDER])
def test_check_names_the_first_limit_a_proposal_breaks(account: Account, proposal: Proposal,
                                                       expected: Limit) -> None:
    assert check(LIMITS, account, proposal, NOW).limit is expected


# ---------------------------------------------------------------- reducing intents


@pytest.mark.parametrize(("position", "signed", "expected"), [
    ("100", "-100", True), ("100", "-1", True), ("-100", "100", True), ("-100", "40", True),
    ("100", "-101", False), ("-100", "101", False), ("100", "10", False), ("-100", "-10", False),
    ("0", "10", False), ("0", "-10", False),
])
def test_is_reducing_only_shrinks_never_flips(position: str, signed: str, expected: bool) -> None:
    assert is_reducing(D(position), D(signed)) is expected


def test_full_exit_passes_every_size_and_count_limit() -> None:
    crowded = _acct(_hold(quantity=5_000, mark="100"), _hold("MSFT", 10**6, mark="100"),
                    working=_open(50), sent_ns=(NOW,) * 60)
    exit_ = _p("SELL", 5_000, order_type="MKT", limit=None, market=None, legs=3)
    assert check(LIMITS, crowded, exit_, NOW) == Verdict(approved=True, reducing=True)


def test_exit_one_past_the_position_is_not_reducing_and_meets_the_limits() -> None:
    account = _acct(_hold(quantity=100))
    verdict = check(LIMITS, account, _p("SELL", 101, limit="10", market="10"), NOW)
    assert verdict.approved and not verdict.reducing
    reduce_only = check(LIMITS, account, _p("SELL", 101, limit="10", market="10", reduce_only=True), NOW)
    _assert_verdict(reduce_only, Limit.REDUCE_ONLY, ("would not reduce the position 100 (to -1)",))


def test_reducing_exit_outside_the_collar_is_denied() -> None:
    verdict = check(LIMITS, _acct(_hold(quantity=100)), _p("SELL", 100, limit="80"), NOW)
    assert verdict.limit is Limit.PRICE_COLLAR and verdict.reducing


# ---------------------------------------------------------------- trading state

MODES: list[tuple[str, Account, Proposal, Limit | None]] = [
    ("halted denies an entry", _acct(mode=Mode.HALTED), _p(), Limit.TRADING_STATE),
    ("halted lets an exit under way finish", _acct(_hold(quantity=100), mode=Mode.HALTED),
     _p("SELL", 100, reduce_only=True), None),
    ("halted lets an operator's flatten through", _acct(_hold(quantity=100), mode=Mode.HALTED),
     _p("SELL", 100, order_type="MKT", limit=None, market=None, operator=True, reduce_only=True), None),
    ("halted denies an operator order that would flip", _acct(_hold(quantity=100), mode=Mode.HALTED),
     _p("SELL", 150, operator=True), Limit.TRADING_STATE),
    ("halted denies an operator order when flat", _acct(mode=Mode.HALTED),
     _p("SELL", 10, operator=True), Limit.TRADING_STATE),
    ("reduce-only denies an entry", _acct(mode=Mode.REDUCE_ONLY), _p(), Limit.TRADING_STATE),
    ("reduce-only denies adding", _acct(_hold(quantity=100), mode=Mode.REDUCE_ONLY), _p("BUY", 1),
     Limit.TRADING_STATE),
    ("reduce-only lets a partial exit through", _acct(_hold(quantity=-100), mode=Mode.REDUCE_ONLY),
     _p("BUY", 40), None),
    ("active lets an operator entry through like any entry", _acct(), _p(operator=True), None),
    ("active denies a reduce-only order when flat", _acct(), _p("SELL", 10, reduce_only=True),
     Limit.REDUCE_ONLY),
]


@pytest.mark.parametrize(("account", "proposal", "expected"), [m[1:] for m in MODES],
                         ids=[m[0] for m in MODES])
def test_trading_state_gates_intents(account: Account, proposal: Proposal,
                                     expected: Limit | None) -> None:
    _assert_verdict(check(LIMITS, account, proposal, NOW), expected, ())


def test_trading_state_denial_names_the_mode_and_its_reason() -> None:
    account = _acct(mode=Mode.REDUCE_ONLY, reason="daily loss 4100.00 reached 80%")
    verdict = check(LIMITS, account, _p(), NOW)
    assert "REDUCE_ONLY" in verdict.detail and "daily loss 4100.00 reached 80%" in verdict.detail
    assert "HALTED (operator)" in check(LIMITS, _acct(mode=Mode.HALTED, reason="operator"), _p(), NOW).detail


def test_mode_values_match_the_trading_state_message() -> None:
    assert [m.value for m in Mode] == [t.value for t in TradingState]


def test_set_mode_is_the_operators_and_clears_the_loss_flag() -> None:
    account = replace(_acct(mode=Mode.HALTED), halted_by_loss=True)
    resumed = set_mode(account, Mode.ACTIVE, "operator resume")
    assert (resumed.mode, resumed.mode_reason, resumed.halted_by_loss) == (Mode.ACTIVE, "operator resume", False)


# ---------------------------------------------------------------- the daily-loss ladder


def _pnl(account: Account, net_pnl: str) -> Account:
    return position_changed(account, _hold("AAPL", 0, net_pnl=net_pnl))


def test_loss_ladder_tightens_active_to_reduce_only_to_halted_and_never_loosens() -> None:
    account = new_day(Account(holdings=(_hold("MSFT", net_pnl="1000"),)), "2024-03-04")
    assert account.day_start_pnl == D(1000)

    account, reason = assess(LIMITS, _pnl(account, "-3999.99"))
    assert (account.mode, reason) == (Mode.ACTIVE, "")

    account, reason = assess(LIMITS, _pnl(account, "-4100.00"))
    assert reason == "daily loss 4100.00 reached 80% of daily_loss_limit 5000 (4000.00): REDUCE_ONLY"
    assert (account.mode, account.mode_reason, account.halted_by_loss) == (Mode.REDUCE_ONLY, reason, True)

    account, reason = assess(LIMITS, _pnl(account, "-4500"))
    assert (account.mode, reason) == (Mode.REDUCE_ONLY, "")

    account, reason = assess(LIMITS, _pnl(account, "-5000"))
    assert reason == "daily loss 5000.00 reached daily_loss_limit 5000: HALTED"
    assert (account.mode, account.halted_by_loss) == (Mode.HALTED, True)

    account, reason = assess(LIMITS, _pnl(account, "+200"))
    assert (account.mode, reason) == (Mode.HALTED, "")


@pytest.mark.parametrize(("mode", "loss", "expected"), [
    (Mode.ACTIVE, "3999", Mode.ACTIVE),
    (Mode.ACTIVE, "4000", Mode.REDUCE_ONLY),
    (Mode.ACTIVE, "4999.99", Mode.REDUCE_ONLY),
    (Mode.ACTIVE, "5000", Mode.HALTED),
    (Mode.REDUCE_ONLY, "4500", Mode.REDUCE_ONLY),
    (Mode.REDUCE_ONLY, "5000", Mode.HALTED),
    (Mode.HALTED, "4500", Mode.HALTED),
    (Mode.HALTED, "9000", Mode.HALTED),
])
def test_loss_ladder_moves_only_to_a_stricter_mode(mode: Mode, loss: str, expected: Mode) -> None:
    account = set_mode(Account(holdings=(_hold(net_pnl=-D(loss)),)), mode, "operator")
    assessed, reason = assess(LIMITS, account)
    assert assessed.mode is expected
    assert bool(reason) is (expected is not mode)
    assert assessed.halted_by_loss is (expected is not mode)


def test_loss_ladder_with_reduce_only_at_zero_acts_on_any_loss_but_not_on_none() -> None:
    limits = replace(LIMITS, reduce_only_at_pct=D(0))
    assert assess(limits, Account())[0].mode is Mode.ACTIVE
    assert assess(limits, Account(holdings=(_hold(net_pnl="-0.01"),)))[0].mode is Mode.REDUCE_ONLY


def test_new_day_lifts_a_loss_halt_but_not_an_operator_halt() -> None:
    lost = Account(day="2024-03-04", holdings=(_hold(net_pnl="-6000"),))
    halted, _ = assess(LIMITS, lost)
    assert halted.mode is Mode.HALTED

    next_day = new_day(halted, "2024-03-05")
    assert (next_day.mode, next_day.halted_by_loss) == (Mode.ACTIVE, False)
    assert next_day.day_start_pnl == D(-6000) and day_pnl(next_day) == 0
    assert assess(LIMITS, next_day)[0].mode is Mode.ACTIVE

    operator = new_day(set_mode(halted, Mode.HALTED, "operator"), "2024-03-05")
    assert (operator.mode, operator.mode_reason) == (Mode.HALTED, "operator")


def test_new_day_on_the_same_day_changes_nothing() -> None:
    account, _ = assess(LIMITS, Account(day="2024-03-04", holdings=(_hold(net_pnl="-6000"),)))
    assert new_day(account, "2024-03-04") is account


@pytest.mark.parametrize("day", ["", "20240304", "2024-3-4", "2024-02-30", "yesterday"])
def test_new_day_refuses_a_malformed_day(day: str) -> None:
    with pytest.raises(InvalidRiskInput):
        new_day(Account(), day)


def test_day_pnl_sums_holdings_from_the_days_start() -> None:
    account = Account(day_start_pnl=D("-50"), holdings=(_hold(net_pnl="100"), _hold("MSFT", net_pnl="-30.5")))
    assert day_pnl(account) == D("119.5")


# ---------------------------------------------------------------- bookkeeping


def test_decide_records_an_approved_entry_as_working_and_its_legs_as_sent() -> None:
    account = _acct(sent_ns=(NOW - WINDOW_NS - 1, NOW - WINDOW_NS + 1))
    after, verdict = decide(LIMITS, account, _p("SELL", 30, legs=3, intent_id="g-7"), NOW)
    assert verdict.approved
    assert after.working == (_work("g-7", -30, legs=3),)
    # The second before the window is dropped; the legs approved now share one bucket.
    assert after.sent == (((NOW - WINDOW_NS + 1) // S, 1), (NOW // S, 3))
    again, _ = decide(LIMITS, after, _p("SELL", 1, intent_id="g-8"), NOW + 1)
    assert again.sent == (((NOW - WINDOW_NS + 1) // S, 1), (NOW // S, 4))


def test_the_rate_window_stays_small_however_many_orders_pass() -> None:
    limits = replace(LIMITS, max_orders_per_minute=1_000_000, max_open_orders=1_000_000)
    account = Account()
    for i in range(3000):  # 50 intents a second for a minute
        account, verdict = decide(limits, account, _p(quantity=1, legs=3, intent_id=f"g-{i}"), NOW + i * S // 50)
        assert verdict.approved
        account = group_finished(account, f"g-{i}")
    assert len(account.sent) <= 61 and sum(n for _, n in account.sent) == 9000


def test_decide_records_a_reducing_intent_with_nothing_pending() -> None:
    after, verdict = decide(LIMITS, _acct(_hold(quantity=100)), _p("SELL", 100, intent_id="x"), NOW)
    assert verdict.reducing and after.working == (_work("x", 0),)


def test_decide_leaves_the_account_unchanged_on_a_denial() -> None:
    account = _acct(working=(_work("g-1", 10),), sent_ns=(NOW - WINDOW_NS,))
    after, verdict = decide(LIMITS, account, _p(quantity=900), NOW)
    assert not verdict.approved and after is account


def test_decided_intents_fill_the_order_rate_window_until_it_slides() -> None:
    limits = replace(LIMITS, max_orders_per_minute=3, max_open_orders=1000)
    account = Account()
    for i in range(3):
        account, verdict = decide(limits, account, _p(quantity=1, intent_id=f"g-{i}"), NOW + i * S)
        assert verdict.approved
    assert decide(limits, account, _p(quantity=1, intent_id="g-3"), NOW + 59 * S)[1].limit is Limit.ORDER_RATE
    assert decide(limits, account, _p(quantity=1, intent_id="g-3"), NOW + WINDOW_NS + S)[1].approved


def test_group_finished_drops_the_intent_and_ignores_an_unknown_id() -> None:
    account = _acct(working=(_work("g-1", 10), _work("g-2", 5)))
    assert group_finished(account, "g-1").working == (_work("g-2", 5),)
    assert group_finished(account, "nope") is account


def test_position_change_consumes_pending_entries_fifo_in_their_direction() -> None:
    account = _acct(working=(_work("g-1", 100), _work("g-2", 50), _work("g-3", -30, symbol="MSFT"),
                             _work("g-4", 0)))
    account = position_changed(account, _hold(quantity=120, mark="101"))
    assert [w.pending for w in account.working] == [0, 30, -30, 0]
    assert account.holdings == (_hold(quantity=120, mark="101"),)

    exited = position_changed(account, _hold(quantity=70))  # a stop-out: not a fill of an entry
    assert [w.pending for w in exited.working] == [0, 30, -30, 0]

    refilled = position_changed(exited, _hold(quantity=200))  # more than is pending
    assert [w.pending for w in refilled.working] == [0, 0, -30, 0]
    assert [h.quantity for h in refilled.holdings] == [200]


def test_position_change_of_a_short_entry_consumes_only_short_pending() -> None:
    account = _acct(_hold("MSFT", 10, mark="5"),
                    working=(_work("g-1", 20), _work("g-2", -40), _work("g-3", -40)))
    account = position_changed(account, _hold(quantity=-50))
    assert [w.pending for w in account.working] == [20, 0, -30]
    assert [h.symbol for h in account.holdings] == ["MSFT", "AAPL"]


def test_position_change_refuses_a_non_finite_quantity() -> None:
    with pytest.raises(InvalidRiskInput):
        position_changed(Account(), _hold(quantity="NaN"))


# ---------------------------------------------------------------- properties

_money = st.decimals(min_value=D("-1000000"), max_value=D("1000000"), places=2)
_price = st.one_of(st.none(), _money, st.sampled_from([D("NaN"), D("Infinity"), D("-Infinity")]))
_symbols = st.sampled_from(["AAPL", "MSFT", "IBM"])
_holdings = st.lists(st.builds(Holding, symbol=_symbols, quantity=st.decimals(-3000, 3000, places=0),
                               mark=st.one_of(st.none(), st.decimals(0, 1000, places=2)), net_pnl=_money),
                     max_size=3, unique_by=lambda h: h.symbol)
_working = st.lists(st.builds(Working, intent_id=st.sampled_from(["g-1", "g-2", "g-3", "g-4"]), symbol=_symbols,
                              legs=st.integers(1, 3), pending=st.decimals(-800, 800, places=0)),
                    max_size=4, unique_by=lambda w: w.intent_id)
_accounts = st.builds(lambda mode, holdings, working, sent: Account(
    mode=mode, holdings=tuple(holdings), working=tuple(working), sent=_sent(sent)),
    st.sampled_from(Mode), _holdings, _working, st.lists(st.integers(NOW - 2 * WINDOW_NS, NOW), max_size=70))
_limits = st.builds(lambda qty, pos, gross, orders: replace(
    LIMITS, max_order_quantity=qty, max_order_notional=D(10**6), max_position_per_symbol=pos,
    max_gross_exposure=gross, max_net_exposure=gross, max_open_orders=orders, max_orders_per_minute=orders),
    st.decimals(1, 1500, places=0), st.decimals(1, 1500, places=0), st.decimals(1, 10**7, places=0),
    st.integers(1, 60))


@settings(max_examples=300)
@given(limits=_limits, account=_accounts, symbol=_symbols, side=st.sampled_from(Side),
       quantity=st.one_of(_money, st.just(D("NaN"))), order_type=st.sampled_from(OrderType),
       limit=_price, stop=_price, market=_price, legs=st.integers(-1, 4), reduce_only=st.booleans(),
       operator=st.booleans())
def test_check_never_raises_and_denials_always_name_a_limit(
        limits: RiskConfig, account: Account, symbol: str, side: Side, quantity: Decimal,
        order_type: OrderType, limit: Decimal | None, stop: Decimal | None, market: Decimal | None,
        legs: int, reduce_only: bool, operator: bool) -> None:
    p = Proposal(intent_id="g-new", symbol=symbol, side=side, quantity=quantity, order_type=order_type,
                 limit_price=limit, stop_price=stop, market_price=market, legs=legs,
                 reduce_only=reduce_only, operator=operator)
    verdict = check(limits, account, p, NOW)
    assert verdict.approved is (verdict.limit is None)
    assert verdict.approved or verdict.detail
    assert "E+" not in verdict.detail and "E-" not in verdict.detail


@settings(max_examples=300)
@given(limits=_limits, account=_accounts, symbol=_symbols, side=st.sampled_from(Side),
       quantity=st.decimals(1, 1500, places=0), price=st.decimals(1, 200, places=2))
def test_approved_entry_never_leaves_position_and_pending_past_the_limit(
        limits: RiskConfig, account: Account, symbol: str, side: Side, quantity: Decimal,
        price: Decimal) -> None:
    p = Proposal(intent_id="g-new", symbol=symbol, side=side, quantity=quantity,
                 order_type=OrderType.LMT, limit_price=price, market_price=price, legs=1)
    after, verdict = decide(limits, account, p, NOW)
    if verdict.approved and not verdict.reducing:
        held = sum((h.quantity for h in after.holdings if h.symbol == symbol), D(0))
        pending = sum((w.pending for w in after.working if w.symbol == symbol), D(0))
        assert abs(held + pending) <= limits.max_position_per_symbol


def test_with_position_recounts_a_symbol_keeping_its_mark_and_pnl_and_consumes_the_pending_entry() -> None:
    held = Holding(symbol="AAPL", quantity=D(0), mark=D("101.5"), net_pnl=D("-12"))
    account = _acct(held, Holding(symbol="MSFT", quantity=D(5)), working=(_work("g-1", 61),))
    after = with_position(account, "AAPL", D(61))
    assert position_of(after, "AAPL") == D(61) and position_of(after, "MSFT") == D(5)
    assert next(h for h in after.holdings if h.symbol == "AAPL") == replace(held, quantity=D(61))
    assert after.working == (_work("g-1", 0),)  # its entry filled: no longer pending exposure
    assert position_of(with_position(_acct(), "TSLA", D(-3)), "TSLA") == D(-3)  # never held before


def test_a_close_denied_on_a_stale_count_passes_on_the_fresher_one() -> None:
    close = _p("SELL", 61, order_type="MKT", limit=None, reduce_only=True)
    stale = _acct(Holding(symbol="AAPL", quantity=D(0)))
    assert check(LIMITS, stale, close, NOW).limit in POSITION_LIMITS
    assert check(LIMITS, with_position(stale, "AAPL", D(61)), close, NOW) == Verdict(approved=True, reducing=True)
