"""Acceptance under faults: kill -9 of symbol, group, connection actors; a broker outage; quarantine."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import pytest

from core.matching import CANCELLED, FILLED
from core.types import OrderType
from tests.e2e.harness import System, alive, bracket, net_pnl, scripted, wait_for

pytestmark = pytest.mark.timeout(90)

WORKING = "Submitted"


def _all_once(system: System) -> dict[str, int]:
    per_ref = system.orders_per_ref()
    assert per_ref and all(n == 1 for n in per_ref.values()), per_ref
    return per_ref


def _open_bracket(system: System, group_id: str, symbol: str, *, stop_below: Decimal,
                  target_above: Decimal, quantity: int = 100) -> None:
    """Place a market-entry bracket and wait until the entry filled and both children work at the broker."""
    quote = system.quote(symbol)
    assert quote.bid is not None and quote.ask is not None
    system.place(bracket(group_id, symbol, quantity, stop=quote.bid - stop_below,
                         target=quote.ask + target_above))
    wait_for(lambda: system.position(symbol).quantity == quantity, 10, f"{symbol} entry fill at the actor")
    wait_for(lambda: system.broker_order(f"{group_id}:sl").status == WORKING
             and system.broker_order(f"{group_id}:tp").status == WORKING, 10, "the children working")


def _exit_filled(system: System, group_id: str) -> str:
    orders = system.broker_orders()
    return next((ref for ref in (f"{group_id}:sl", f"{group_id}:tp") if orders[ref].status == FILLED), "")


def test_symbol_actor_killed_with_a_position_comes_back_with_it_and_its_stop_closes_it_within_1s(
        launch: Callable[..., System], tmp_path: Path) -> None:
    # AAPL holds 100 for a bar, then falls to 99: the stop at 99.90 triggers on the way down.
    system = launch((scripted("AAPL", tmp_path, ("100", "100", "99")), scripted("MSFT", tmp_path, ("50",))))
    system.step(1)
    _open_bracket(system, "f1", "AAPL", stop_below=Decimal("0.10"), target_above=Decimal(30))
    held = system.position("AAPL")

    before = system.kill_actor("symbols", "AAPL")
    after = system.running("symbols", "AAPL", incarnation=before.incarnation + 1)
    assert after.pid != before.pid and not alive(before.pid)
    assert system.actor_status(after.address).pid == after.pid
    restored = system.position("AAPL")
    assert (restored.quantity, restored.avg_cost, restored.state, restored.commissions) == \
        (held.quantity, held.avg_cost, held.state, held.commissions) == \
        (Decimal(100), held.avg_cost, held.state, Decimal(1))
    assert system.broker_order("f1:sl").status == WORKING  # the protection never left the broker

    system.step_until(lambda: system.broker_order("f1:sl").status == FILLED, step_s=0.25, max_steps=720,
                      what="the stop-loss to trigger")
    triggered = time.monotonic()
    closed = wait_for(lambda: (p := system.position("AAPL")).quantity == 0 and p, 1.0,
                      "the restarted actor to see its stop close the position")
    print(f"stop fill reached the restarted symbol actor {time.monotonic() - triggered:.3f} s "
          f"after the quote")
    assert closed.state.value == "CLOSED"
    assert system.child("symbols", "AAPL").incarnation == after.incarnation
    wait_for(lambda: system.broker_order("f1:tp").status == CANCELLED, 10, "the take-profit cancelled")
    wait_for(lambda: system.child("groups", "f1") is None, 10, "the group to finish")
    assert net_pnl(closed) == system.broker_realized()
    assert system.broker_position("AAPL") == 0
    assert _all_once(system) == {"f1:entry": 1, "f1:sl": 1, "f1:tp": 1}


def test_order_group_killed_with_a_resting_bracket_resumes_and_applies_its_next_fills(
        launch: Callable[..., System], tmp_path: Path) -> None:
    # MSFT dips from 100 to 99.70 (the limit entry at 99.80 fills), then climbs to 100.50 (the
    # take-profit at 100.20 fills; the stop at 99.50 is never touched).
    system = launch((scripted("MSFT", tmp_path, ("100", "99.70", "100.50")),))
    system.step(1)
    system.place(bracket("f2", "MSFT", 100, entry_type=OrderType.LMT, entry_limit=Decimal("99.80"),
                         stop=Decimal("99.50"), target=Decimal("100.20")))
    wait_for(lambda: (o := system.broker_order("f2:entry")) is not None and o.status == WORKING, 10,
             "the entry resting at the broker")
    wait_for(lambda: system.broker_order("f2:tp") is not None, 10, "the children at the broker")

    before = system.kill_actor("groups", "f2")
    after = system.running("groups", "f2", incarnation=before.incarnation + 1)
    assert after.pid != before.pid and not alive(before.pid)

    system.step_until(lambda: system.broker_order("f2:entry").status == FILLED, step_s=1.0, max_steps=180,
                      what="the entry to fill")
    wait_for(lambda: system.position("MSFT").quantity == 100, 5, "the entry fill at the symbol actor")
    legs = wait_for(lambda: (s := system.group_orders("f2")) and s.orders[0].filled == 100 and s, 5,
                    "the restarted group to apply the entry fill")
    assert [leg.status.value for leg in legs.orders[1:]] == [WORKING, WORKING]

    system.step_until(lambda: _exit_filled(system, "f2"), step_s=1.0, max_steps=180, what="a child to fill")
    assert _exit_filled(system, "f2") == "f2:tp"
    wait_for(lambda: system.child("groups", "f2") is None, 10, "the restarted group to finish")
    assert system.broker_order("f2:sl").status == CANCELLED
    closed = wait_for(lambda: (p := system.position("MSFT")).quantity == 0 and p, 5, "the position closed")
    assert net_pnl(closed) == system.broker_realized()
    assert _all_once(system) == {"f2:entry": 1, "f2:sl": 1, "f2:tp": 1}


def test_broker_outage_with_refused_reconnects_applies_a_fill_made_meanwhile_once(
        launch: Callable[..., System], tmp_path: Path) -> None:
    # SPY rises from 100 to 101 while the broker is away: the take-profit at 100.51 fills then.
    system = launch((scripted("SPY", tmp_path, ("100", "101")),))
    system.step(1)
    _open_bracket(system, "f3", "SPY", stop_below=Decimal("0.50"), target_above=Decimal("0.50"))

    refused = time.monotonic()
    system.sim.refuse(5.0)  # a TWS restart: the socket drops, connects are refused for 5 s
    wait_for(lambda: system.sim.snapshot()["clients"] == [], 5, "the connection to drop")
    system.step_until(lambda: _exit_filled(system, "f3"), step_s=5.0, max_steps=24,
                      what="a child to fill during the outage")
    assert _exit_filled(system, "f3") == "f3:tp"
    assert system.position("SPY").quantity == 100  # nothing reached us yet
    wait_for(lambda: system.sim.snapshot()["clients"] == [1], 15, "the connection to come back")
    assert time.monotonic() - refused >= 5.0

    closed = wait_for(lambda: (p := system.position("SPY")).quantity == 0 and p, 10,
                      "the outage's fill at the symbol actor")
    wait_for(lambda: system.child("groups", "f3") is None, 10, "the group to finish")
    assert system.broker_order("f3:sl").status == CANCELLED
    assert closed.quantity == system.broker_position("SPY") == 0
    assert closed.commissions == Decimal(2)  # one entry and one exit: the replayed fill counted once
    assert net_pnl(closed) == system.broker_realized()
    assert _all_once(system) == {"f3:entry": 1, "f3:sl": 1, "f3:tp": 1}


def test_commission_reports_that_lag_their_fills_still_reach_the_position_once(
        launch: Callable[..., System], tmp_path: Path) -> None:
    # IB's commission report can come well after its fill: each fill goes on without it after
    # the connection's 1 s wait, and the report, 1.5 s late, is joined to it at the position.
    system = launch((scripted("SPY", tmp_path, ("100", "101")),))
    system.sim.commission_lag(1.5)
    system.step(1)
    _open_bracket(system, "f8", "SPY", stop_below=Decimal("0.50"), target_above=Decimal("0.50"))
    wait_for(lambda: system.position("SPY").commissions == Decimal(1), 10,
             "the entry's late commission at the position")
    system.step_until(lambda: _exit_filled(system, "f8"), step_s=5.0, max_steps=24, what="a child to fill")
    closed = wait_for(lambda: (p := system.position("SPY")).quantity == 0 and p.commissions == 2 and p, 10,
                      "the exit's late commission at the position")
    wait_for(lambda: system.child("groups", "f8") is None, 10, "the group to finish")
    assert system.position("SPY").commissions == 2  # each report counted once
    assert net_pnl(closed) == system.broker_realized()
    assert _all_once(system) == {"f8:entry": 1, "f8:sl": 1, "f8:tp": 1}


def test_symbol_killed_past_its_restart_budget_is_quarantined_and_other_symbols_keep_trading(
        launch: Callable[..., System], tmp_path: Path) -> None:
    system = launch((scripted("AAPL", tmp_path, ("100", "100")), scripted("MSFT", tmp_path, ("100", "101"))),
                    symbol_budget=(2, 60.0))
    system.step(1)
    _open_bracket(system, "f4", "AAPL", stop_below=Decimal(30), target_above=Decimal(30))

    incarnation = system.running("symbols", "AAPL").incarnation
    for _ in range(2):  # within the budget: restarted each time
        system.kill_actor("symbols", "AAPL")
        incarnation += 1
        system.running("symbols", "AAPL", incarnation=incarnation)
        assert system.position("AAPL").quantity == 100
    last = system.kill_actor("symbols", "AAPL")
    wait_for(lambda: "AAPL" in system.status().quarantined, 10, "AAPL quarantined")
    aapl = system.child("symbols", "AAPL")
    assert aapl is not None and not aapl.running and aapl.quarantined and not alive(last.pid)
    assert system.running("symbols", "MSFT").incarnation == 1
    # Its protection stays at the broker.
    assert system.broker_order("f4:sl").status == system.broker_order("f4:tp").status == WORKING

    _open_bracket(system, "f5", "MSFT", stop_below=Decimal(30), target_above=Decimal("0.50"))
    system.step_until(lambda: system.broker_order("f5:tp").status == FILLED, step_s=5.0, max_steps=24,
                      what="the MSFT take-profit to fill")
    closed = wait_for(lambda: (p := system.position("MSFT")).quantity == 0 and p, 10, "MSFT closed")
    wait_for(lambda: system.child("groups", "f5") is None, 10, "the MSFT group to finish")
    assert net_pnl(closed) == system.broker_realized()  # AAPL is still open: no realized P&L of its own
    assert system.broker_position("AAPL") == 100
    assert system.child("symbols", "AAPL").quarantined
    _all_once(system)


def test_symbol_actor_killed_while_a_fill_is_on_its_way_to_it_still_gets_the_fill(
        launch: Callable[..., System], tmp_path: Path) -> None:
    # The actor is frozen (SIGSTOP) while its stop fills, so the fill is routed to a process that
    # never handles it; then it is killed. Its restarted incarnation must still see the fill.
    system = launch((scripted("AAPL", tmp_path, ("100", "99")),))
    system.step(1)
    _open_bracket(system, "f6", "AAPL", stop_below=Decimal("0.10"), target_above=Decimal(30))
    frozen = system.running("symbols", "AAPL")
    os.kill(frozen.pid, signal.SIGSTOP)
    try:
        system.step_until(lambda: system.broker_order("f6:sl").status == FILLED, step_s=1.0, max_steps=120,
                          what="the stop-loss to fill")
        wait_for(lambda: system.child("groups", "f6") is None, 10, "the group to finish (its fill forwarded)")
    finally:
        os.kill(frozen.pid, signal.SIGKILL)
    system.running("symbols", "AAPL", incarnation=frozen.incarnation + 1)
    closed = wait_for(lambda: (p := system.position("AAPL")).quantity == 0 and p, 5,
                      "the restarted actor to hold the fill its frozen predecessor never handled")
    assert closed.state.value == "CLOSED"
    assert net_pnl(closed) == system.broker_realized()
    assert _all_once(system) == {"f6:entry": 1, "f6:sl": 1, "f6:tp": 1}


def test_connection_actor_killed_with_a_resting_bracket_resumes_routing_its_fills(
        launch: Callable[..., System], tmp_path: Path) -> None:
    system = launch((scripted("AAPL", tmp_path, ("100", "101")),))
    system.step(1)
    _open_bracket(system, "f7", "AAPL", stop_below=Decimal("0.50"), target_above=Decimal("0.50"))
    before = system.kill_actor("supervisor", "tws")
    after = system.running("supervisor", "tws", incarnation=before.incarnation + 1)
    assert after.pid != before.pid and not alive(before.pid)
    wait_for(lambda: system.sim.snapshot()["clients"] == [1], 10, "the new connection at the broker")
    system.step_until(lambda: _exit_filled(system, "f7"), step_s=5.0, max_steps=24, what="a child to fill")
    assert _exit_filled(system, "f7") == "f7:tp"
    closed = wait_for(lambda: (p := system.position("AAPL")).quantity == 0 and p, 10,
                      "the fill at the symbol")
    wait_for(lambda: system.child("groups", "f7") is None, 10, "the group to finish")
    assert system.broker_order("f7:sl").status == CANCELLED
    assert net_pnl(closed) == system.broker_realized()
    assert _all_once(system) == {"f7:entry": 1, "f7:sl": 1, "f7:tp": 1}


def test_a_trade_made_outside_the_system_is_reported_as_a_position_mismatch_until_undone(
        launch: Callable[..., System], tmp_path: Path) -> None:
    # Another API client (a person in TWS) buys 7 AAPL on the account: the broker's position
    # stream says 7, ours says 0. Once the fills are quiet, the AAPL actor reports the mismatch and
    # takes no entry; MSFT is untouched. When the person sells them again, the two agree.
    from core.orders import new_order
    from core.types import Side
    from tests.actors.helpers_tws import place_external

    system = launch((scripted("AAPL", tmp_path, ("100",)), scripted("MSFT", tmp_path, ("50",))))
    system.step(1)
    buy = new_order(ref="manual-buy", symbol="AAPL", side=Side.BUY, quantity=7, order_type=OrderType.MKT)
    place_external(system.sim.port, 9, buy)
    wait_for(lambda: system.broker_position("AAPL") == 7, 10, "the manual buy to fill")
    detail = wait_for(lambda: "POSITION MISMATCH" in (d := system.detail("symbols", "AAPL")) and d, 15,
                      "the AAPL actor to report the mismatch")
    assert "ours 0, broker 7" in detail
    assert "MISMATCH" not in system.detail("symbols", "MSFT")
    assert system.position("AAPL").quantity == 0  # nothing invented
    sell = new_order(ref="manual-sell", symbol="AAPL", side=Side.SELL, quantity=7, order_type=OrderType.MKT)
    place_external(system.sim.port, 9, sell)
    wait_for(lambda: "MISMATCH" not in system.detail("symbols", "AAPL"), 15, "the two to agree again")
