"""Acceptance: bar rules (a moving-average cross) open a bracket and see it through, also across a kill -9.

The rules cross a 1-bar over a 2-bar average on 1 s wall-clock bars. The test steps the
simulator one scripted bar per wall-clock second, so the bars (and the decision) are
deterministic: the symbol sees 100, 100, 99, 100, which cross up when the fourth bar closes
(ATR 1 → 50 shares, stop 98, target 103); the next bar rises to 103.50 and fills the target.
"""

from __future__ import annotations

import math
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from core.matching import CANCELLED, FILLED
from core.rules import moving_average_cross
from tests.e2e.harness import BAR_S, SUPERVISOR, System, net_pnl, scripted, wait_for

pytestmark = pytest.mark.timeout(90)

# Seen by the symbol at the end of each step: 100 (step 0, 1 s), 100, 99, 100, 100; then 103.50.
PRICES = ("100", "99", "100", "100", "103.50")
RULES = moving_average_cross(fast=1, slow=2, atr_period=1, stop_atr=2, target_atr=3, risk=100,
                             max_quantity=100)
GROUP = "AAPL-1-1"  # the symbol's first group of its first incarnation


def _next_bar(system: System) -> None:
    """Step the market one scripted bar on, early in the next wall-clock second (one actor bar each)."""
    start = math.floor(time.time()) + 1.05
    wait_for(lambda: time.time() >= start, 2, "the next wall-clock second", interval=0.002)
    system.step(BAR_S)


def _enter(launch: Callable[..., System], tmp_path: Path) -> System:
    system = launch((scripted("AAPL", tmp_path, PRICES),), bar_seconds=1, rules=RULES)
    system.step(1)
    for _ in range(4):  # the fourth step closes the bar that crosses
        _next_bar(system)
    wait_for(lambda: system.position("AAPL").quantity == 50, 10, "the strategy's entry to fill")
    orders = system.broker_orders()
    assert sorted(orders) == [f"{GROUP}:entry", f"{GROUP}:sl", f"{GROUP}:tp"]
    assert (orders[f"{GROUP}:sl"].stop_price, orders[f"{GROUP}:tp"].limit_price) == (98, 103)
    assert f"working groups: {GROUP} ENTRY" in system.detail("symbols", "AAPL")
    return system


def _closed(system: System) -> None:
    closed = wait_for(lambda: (p := system.position("AAPL")).quantity == 0 and p, 5, "the position closed")
    assert closed.state.value == "CLOSED"
    wait_for(lambda: "working groups: none" in system.detail("symbols", "AAPL"), 5,
             "the symbol to see its group finish")
    assert system.broker_order(f"{GROUP}:sl").status == CANCELLED
    assert net_pnl(closed) == system.broker_realized()
    assert system.orders_per_ref() == {f"{GROUP}:entry": 1, f"{GROUP}:sl": 1, f"{GROUP}:tp": 1}


def test_bar_rule_cross_opens_bracket_whose_target_closes_the_position(
        launch: Callable[..., System], tmp_path: Path) -> None:
    system = _enter(launch, tmp_path)
    # The symbol's intent and risk's approved legs each took the next actor's datagram inbox
    # (actors/direct_channel.py), not a thespian message.
    for actor in ("risk", "tws"):
        counters = dict(system.actor_status(system.address(SUPERVISOR, actor)).counters)
        assert counters.get("direct_in") == 1, (actor, counters)
    _next_bar(system)
    assert system.broker_order(f"{GROUP}:tp").status == FILLED
    _closed(system)


def test_symbol_actor_killed_while_its_group_ends_learns_the_end_in_its_next_incarnation(
        launch: Callable[..., System], tmp_path: Path) -> None:
    # Frozen (SIGSTOP) while its target fills, the actor never handles the fill nor the group's
    # end; killed, its next incarnation starts from a snapshot that still holds both the position
    # and the working group, and must be told what happened.
    system = _enter(launch, tmp_path)
    frozen = system.running("symbols", "AAPL")
    os.kill(frozen.pid, signal.SIGSTOP)
    try:
        _next_bar(system)
        assert system.broker_order(f"{GROUP}:tp").status == FILLED
        wait_for(lambda: system.child("groups", GROUP) is None, 10, "the group to finish")
    finally:
        os.kill(frozen.pid, signal.SIGKILL)
    system.running("symbols", "AAPL", incarnation=frozen.incarnation + 1)
    _closed(system)
