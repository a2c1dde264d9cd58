"""Acceptance: the whole actor tree trades brackets and OCO groups on the simulator over real sockets."""

from __future__ import annotations

import re
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import pytest

from core.matching import CANCELLED, FILLED
from core.types import Side
from messages.positions import PositionChanged
from tests.e2e.harness import System, SymbolSpec, bracket, net_pnl, oco, scripted, wait_for, walk

pytestmark = pytest.mark.timeout(90)


def _all_once(system: System) -> dict[str, int]:
    per_ref = system.orders_per_ref()
    assert per_ref and all(n == 1 for n in per_ref.values()), per_ref
    return per_ref


def _flat_with(system: System, symbol: str, status: str) -> Callable[[], PositionChanged | None]:
    def check() -> PositionChanged | None:
        position = system.position(symbol)
        return position if position.quantity == 0 and position.state.value == status else None
    return check


def test_brackets_on_three_symbols_fill_entry_then_target_and_pnl_matches_the_broker_to_the_cent(
        launch: Callable[..., System], tmp_path: Path) -> None:
    # Two longs in rising markets and a short in a falling one: each target is reached in bar 1.
    plans = (("AAPL", Side.BUY, ("100", "101")), ("MSFT", Side.BUY, ("250", "252.40")),
             ("SPY", Side.SELL, ("400", "398.90")))
    system = launch(tuple(scripted(symbol, tmp_path, prices) for symbol, _, prices in plans))
    system.step(1)  # the first quotes
    places = []
    for n, (symbol, side, _) in enumerate(plans):
        quote = system.quote(symbol)
        assert quote.bid is not None and quote.ask is not None
        away = Decimal(5) if side is Side.BUY else Decimal(-5)
        gain = Decimal("0.73") if side is Side.BUY else Decimal("-0.61")
        places.append(system.place(bracket(f"t1-{n}", symbol, 100 + 10 * n, side=side,
                                           stop=quote.bid - away, target=quote.ask + gain)))
    for n, (symbol, side, _) in enumerate(plans):
        held = (100 + 10 * n) * (1 if side is Side.BUY else -1)
        wait_for(lambda: system.position(symbol).quantity == held, 10, f"{symbol} entry fill at the actor")
        assert system.broker_order(f"t1-{n}:entry").status == FILLED

    def targets_filled() -> bool:
        orders = system.broker_orders()
        return all(orders[f"t1-{n}:tp"].status == FILLED for n in range(len(plans)))

    system.step_until(targets_filled, step_s=5.0, max_steps=24, what="every take-profit to fill")
    positions = [wait_for(_flat_with(system, symbol, "CLOSED"), 10, f"{symbol} closed")
                 for symbol, _, _ in plans]
    for n in range(len(plans)):  # each stop-loss ended Cancelled and the group finished
        wait_for(lambda: system.broker_order(f"t1-{n}:sl").status == CANCELLED, 10, f"t1-{n}:sl cancelled")
        wait_for(lambda: system.child("groups", f"t1-{n}") is None, 10, f"group t1-{n} to finish")
    ours = sum((net_pnl(p) for p in positions), Decimal(0))
    print(f"net realized P&L: ours {ours}, the broker's {system.broker_realized()}")
    assert ours == system.broker_realized()
    assert all(p.realized_pnl > 0 for p in positions)
    assert all(p.commissions == Decimal(2) for p in positions)  # $1 minimum per order, entry and exit
    assert {s: system.broker_position(s) for s, _, _ in plans} == {s: 0 for s, _, _ in plans}
    assert len(_all_once(system)) == 3 * len(plans)
    # Every process logs one shape (time, level, pid, actor, correlation id), the connection too;
    # each fill, in the connection's log and in its symbol's, follows its PlaceOrderGroup's chain.
    shape = re.compile(r"\S+ \S+ \| [A-Z]+ +\| \d+ \| \S+ \| corr=\S+ \| ")
    lines = system.log_lines("")
    assert [line for line in lines if line[:1].isdigit() and not shape.match(line)] == []
    assert any("| tws#1 |" in line for line in lines)
    for (symbol, _, _), place in zip(plans, places):
        tws = [line for line in system.log_lines("tws: fill ") if f" for {place.intent_id}:" in line]
        for lines in (system.log_lines(f"{symbol}: fill ", symbol), tws):
            assert len(lines) == 2 and all(f"corr={place.correlation_id} " in line for line in lines), lines


def test_bracket_partial_entry_fill_resizes_children_at_the_broker(launch: Callable[..., System]) -> None:
    # One lot of 100 shares on each side of the book: a 300-share market entry fills 100 per quote.
    system = launch((SymbolSpec(symbol="AAPL", walk=walk(lot=100, max_book_lots=1)),))
    system.step(1)
    quote = system.quote("AAPL")
    assert quote.ask_size == 100
    system.place(bracket("t2", "AAPL", 300, stop=quote.bid - Decimal(20), target=quote.ask + Decimal(20)))

    def legs() -> tuple[Decimal, Decimal, Decimal] | None:
        orders = system.broker_orders()
        if len(orders) < 3:
            return None
        return orders["t2:entry"].filled, orders["t2:sl"].quantity, orders["t2:tp"].quantity

    seen = []
    for filled in (Decimal(100), Decimal(200)):
        wait_for(lambda: legs() == (filled, filled, filled), 10, f"children resized to the {filled} filled")
        wait_for(lambda: system.position("AAPL").quantity == filled, 10, f"the actor to hold {filled}")
        seen.append(legs())
        system.step(0.25)  # the next quote: one more lot
    wait_for(lambda: legs() == (300, 300, 300), 10, "children back at full size after the full fill")
    orders = system.broker_orders()
    assert orders["t2:entry"].status == FILLED
    assert orders["t2:sl"].status == orders["t2:tp"].status == "Submitted"  # active once the parent filled
    assert seen == [(100, 100, 100), (200, 200, 200)]
    assert system.position("AAPL").quantity == 300 == system.broker_position("AAPL")
    _all_once(system)  # a resize is a modify of the same order, never a second order


def test_oco_fill_cancels_its_sibling_at_the_broker(launch: Callable[..., System], tmp_path: Path) -> None:
    system = launch((scripted("MSFT", tmp_path, ("100", "101")),))
    system.step(1)
    group = oco("t3", "MSFT", 10, buy_below=Decimal("99.50"), sell_above=Decimal("100.50"))
    buy, sell = (leg.ref for leg in group.legs)
    system.place(group)
    wait_for(lambda: len(system.broker_orders()) == 2
             and all(o.status == "Submitted" for o in system.broker_orders().values()),
             10, "both legs working at the broker")

    system.step_until(lambda: system.broker_order(sell).status == FILLED, step_s=5.0, max_steps=24,
                      what="the SELL leg to fill as the price rises")
    wait_for(lambda: system.broker_order(buy).status == CANCELLED, 10, "the BUY leg cancelled")
    wait_for(lambda: system.child("groups", "t3") is None, 10, "the OCO group to finish")
    wait_for(lambda: system.position("MSFT").quantity == -10, 10, "the fill at the symbol actor")
    assert system.broker_order(sell).filled == 10 and system.broker_order(buy).filled == 0
    assert system.broker_position("MSFT") == -10
    assert _all_once(system) == {buy: 1, sell: 1}
