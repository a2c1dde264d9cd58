"""Acceptance: random kill -9 of symbol, group and connection actors while the strategy trades loses nothing.

Three random-walk symbols trade a fast-crossing demo strategy on 1 s wall-clock bars while the
test steps the market and, every few steps, SIGKILLs a seeded-random actor (a symbol actor, an
order group or the connection) and waits for its supervisor to bring it back. Afterwards every
symbol actor's position equals the broker's, and the broker saw every order ref exactly once.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from core.rules import moving_average_cross
from messages import ChildStatus
from tests.e2e.harness import System, SymbolSpec, kill, wait_for, walk

pytestmark = pytest.mark.timeout(120)

SYMBOLS = ("AAPL", "MSFT", "SPY")
RULES = moving_average_cross(fast=1, slow=2, atr_period=2, stop_atr=1, target_atr=1, risk=50,
                             max_quantity=100)
KILLS = 12           # how many actors die, in KINDS order
TICK_S = 0.25        # wall time per market step (four 1 s bars of the market per wall second)
KILL_EVERY = 3       # steps


KINDS = ("symbols", "groups", "symbols", "groups", "tws", "groups")  # the victim of each kill, in turn


def _victims(system: System, kind: str) -> list[ChildStatus]:
    """Return the running actors of `kind` ("symbols", "groups": their children; "tws": the connection)."""
    return [c for c in system.status().children if c.running and c.ready and c.pid
            and (c.key == kind if kind == "tws" else c.supervisor == kind)]


def _back(system: System, victim: ChildStatus) -> bool:
    now = system.child(victim.supervisor, victim.key)
    # A killed group may come back and finish before we look: gone counts as handled.
    return now is None or (now.running and now.ready and now.incarnation > victim.incarnation)


def test_random_kills_while_trading_leave_positions_equal_to_the_broker_and_no_order_twice(
        launch: Callable[..., System], tmp_path: Path) -> None:
    budget = (1000, 60.0)
    system = launch(tuple(SymbolSpec(symbol=s, walk=walk(volatility=4.0)) for s in SYMBOLS), bar_seconds=1,
                    rules=RULES, symbol_budget=budget, group_budget=budget, core_budget=budget)
    rnd = random.Random(11)
    killed: list[str] = []
    start = time.monotonic()
    steps = 0
    while len(killed) < KILLS:
        assert time.monotonic() - start < 60, f"only {len(killed)} kills in 60 s: {killed}"
        system.step(1.0)
        steps += 1
        tick = start + steps * TICK_S
        wait_for(lambda: time.monotonic() >= tick, TICK_S + 5, "the next market step", interval=0.005)
        if steps % KILL_EVERY == 0:
            candidates = _victims(system, KINDS[len(killed) % len(KINDS)])
            if not candidates:
                continue  # no group working right now: try again after the next step
            victim = rnd.choice(candidates)
            kill(victim.pid)
            killed.append(f"{victim.supervisor}/{victim.key}#{victim.incarnation}")
            wait_for(lambda: _back(system, victim), 10, f"{victim.key} to be back after its kill")

    orders = system.orders_per_ref()
    print(f"{steps} steps, {len(killed)} kills ({', '.join(killed)}); {len(orders)} orders")
    assert sum(k.startswith("groups/") for k in killed) == 6
    assert len({ref.split(":")[0] for ref in orders}) >= 3  # the strategy kept trading through it all
    for symbol in SYMBOLS:
        wait_for(lambda: system.position(symbol).quantity == system.broker_position(symbol), 10,
                 f"{symbol}: the symbol actor's position to equal the broker's")
    assert all(n == 1 for n in orders.values()), orders
    status = system.status()
    assert status.quarantined == () and status.trading_state.value == "ACTIVE"
