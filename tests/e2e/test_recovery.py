"""Crash recovery of the whole system (issue 6): kill -9 of every actor process at the worst moments, then start again.

Each test kills the whole actor system (every process, SIGKILL) while the simulator keeps running,
starts it again on the same state directory as `run` would, and checks: positions equal the
simulator's, no orderRef reached the simulator twice, and the journal tells the whole story.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from core import order_group as og
from core.matching import FILLED
from core.orders import new_order
from core.types import OrderType, Side
from journal import Journal, render_why, why
from tests.e2e.crashers import CRASH_AFTER_JOURNAL, CRASH_AFTER_SEND
from tests.e2e.harness import (
    System,
    SymbolSpec,
    alive,
    bracket,
    restart_system,
    scripted,
    start_system,
    wait_for,
    walk,
)

pytestmark = pytest.mark.timeout(120)

D = Decimal
WORKING = "Submitted"


@pytest.fixture
def systems(request: pytest.FixtureRequest, tmp_path: Path,
            monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., System]]:
    """Return start(symbols, **kwargs) / restart(old, **overrides); every system is closed afterwards."""
    monkeypatch.setenv("THESPIAN_BASE_IPADDR", "127.0.0.1")
    started: list[System] = []

    def start(symbols: tuple[SymbolSpec, ...] | None = None, *, old: System | None = None,
              **kwargs: Any) -> System:
        if old is not None:
            system = restart_system(old, **kwargs)
        else:
            assert symbols is not None
            system = start_system(tmp_path / "run", symbols, **kwargs)
        started.append(system)
        return system

    yield start
    problems = []
    for system in reversed(started):  # the newest owns the simulator
        try:
            system.close()
        except AssertionError as exc:
            problems.append(str(exc))
    assert not problems, problems


def _died_by_itself(system: System) -> None:
    """Wait until the crasher killed the system; SIGKILL any process that escaped it (e.g. one being forked)."""
    system.processes()
    wait_for(lambda: not alive(system.address_pid("tws")) and not alive(system.address_pid("risk")), 15,
             "the crasher to kill the actor system")
    system.kill_all()


def _journal(system: System) -> Journal:
    return Journal.open(system.config.journal_path, readonly=True)


def _single(gid: str, symbol: str, side: Side, quantity: int, order_type: OrderType = OrderType.MKT,
            limit: Decimal | None = None) -> og.OrderGroup:
    return og.single(gid, new_order(ref=og.leg_ref(gid, og.ENTRY), symbol=symbol, side=side,
                                    quantity=D(quantity), order_type=order_type, limit_price=limit))


def _once(system: System) -> dict[str, int]:
    per_ref = system.orders_per_ref()
    assert all(n == 1 for n in per_ref.values()), f"an orderRef reached the simulator twice: {per_ref}"
    return per_ref


def _positions_match(system: System, symbols: tuple[str, ...]) -> None:
    for symbol in symbols:
        wait_for(lambda: system.position(symbol).quantity == system.broker_position(symbol), 15,
                 f"{symbol}: the actor's position to equal the simulator's "
                 f"({system.broker_position(symbol)})")


def test_a_intent_journaled_but_never_sent_is_abandoned_on_restart_and_never_sent(
        systems: Callable[..., System], tmp_path: Path) -> None:
    system = systems((scripted("AAPL", tmp_path, ("100",)),),
                     actor_classes=(("risk", "tests.e2e.crashers.CrashAfterJournalRisk"),))
    system.step(1)
    quote = system.quote("AAPL")
    system.place(bracket("a1", "AAPL", 100, stop=quote.bid - 5, target=quote.ask + 5), rule=CRASH_AFTER_JOURNAL)
    _died_by_itself(system)
    with _journal(system) as journal:
        intent = journal.intent("a1")
        assert intent is not None and (intent.decision, intent.resolution) == ("APPROVED", "")
    assert not any(ref.startswith("a1:") for ref in system.orders_per_ref())

    again = systems(old=system, actor_classes=())
    with _journal(again) as journal:
        intent = journal.intent("a1")
        assert intent is not None and intent.resolution == "ABANDONED"
        story = render_why(why(journal, "a1"))
    assert "ABANDONED" in story and "APPROVED" in story
    assert again.position("AAPL").quantity == 0 == again.broker_position("AAPL")
    assert again.child("groups", "a1") is None  # not resumed: it never left
    # The system trades on: a new order reaches the simulator, the abandoned one never does.
    again.place(_single("a2", "AAPL", Side.BUY, 10))
    wait_for(lambda: again.broker_position("AAPL") == 10, 10, "the new order to fill at the simulator")
    _positions_match(again, ("AAPL",))
    assert _once(again) == {"a2:entry": 1}


def test_b_order_sent_but_not_acknowledged_is_found_at_the_broker_and_its_fill_applied_once(
        systems: Callable[..., System], tmp_path: Path) -> None:
    system = systems((scripted("AAPL", tmp_path, ("100",)),),
                     actor_classes=(("tws", "tests.e2e.crashers.CrashAfterSendTws"),))
    system.step(1)
    gid = f"{CRASH_AFTER_SEND}-1"
    system.place(_single(gid, "AAPL", Side.BUY, 50))
    _died_by_itself(system)
    assert system.orders_per_ref() == {f"{gid}:entry": 1}  # it did reach the broker
    wait_for(lambda: system.broker_position("AAPL") == 50, 10, "the market order to fill at the simulator")
    with _journal(system) as journal:
        assert journal.intent(gid).resolution == "SENT"
        assert journal.executions(symbol="AAPL") == []  # the fill happened after the crash

    again = systems(old=system, actor_classes=())
    _positions_match(again, ("AAPL",))
    assert again.position("AAPL").quantity == 50
    wait_for(lambda: again.child("groups", gid) is None, 15, "the resumed group to finish")
    with _journal(again) as journal:
        fills = journal.executions(symbol="AAPL")
        assert len(fills) == 1 and fills[0].ref == f"{gid}:entry" and fills[0].quantity == 50
        story = render_why(why(journal, gid))
    assert "SENT" in story and fills[0].exec_id in story
    assert _once(again) == {f"{gid}:entry": 1}


def test_c_bracket_partially_filled_resumes_with_children_sized_to_the_fills(
        systems: Callable[..., System]) -> None:
    # One lot of 100 shares on each side: a 300-share market entry fills 100 per quote.
    system = systems((SymbolSpec(symbol="AAPL", walk=walk(lot=100, max_book_lots=1)),))
    system.step(1)
    quote = system.quote("AAPL")
    system.place(bracket("c1", "AAPL", 300, stop=quote.bid - D(20), target=quote.ask + D(20)))
    wait_for(lambda: system.position("AAPL").quantity == 100, 10, "the first partial fill at the actor")
    system.kill_all()  # 100 of 300 filled, the children resized to 100
    assert system.broker_order("c1:entry").filled == 100

    again = systems(old=system)
    _positions_match(again, ("AAPL",))

    def legs() -> tuple[Decimal, Decimal, Decimal]:
        orders = again.broker_orders()
        return orders["c1:entry"].filled, orders["c1:sl"].quantity, orders["c1:tp"].quantity

    for filled in (D(200), D(300)):
        again.step(0.25)  # the next quote: one more lot, with the resumed group managing it
        wait_for(lambda: legs() == (filled, filled, filled), 10, f"children resized to the {filled} filled")
        wait_for(lambda: again.position("AAPL").quantity == filled, 10, f"the actor to hold {filled}")
    assert again.broker_order("c1:entry").status == FILLED
    assert again.broker_order("c1:sl").status == again.broker_order("c1:tp").status == WORKING
    _positions_match(again, ("AAPL",))
    assert _once(again) == {"c1:entry": 1, "c1:sl": 1, "c1:tp": 1}
    with _journal(again) as journal:
        assert [e.quantity for e in journal.executions(symbol="AAPL")] == [100, 100, 100]


def test_d_fills_at_the_broker_during_the_outage_are_applied_once_and_the_group_resumes(
        systems: Callable[..., System], tmp_path: Path) -> None:
    # AAPL rests at 100 for a bar, falls to 98 (the limit entry at 99 fills while the actor system
    # is down), rests at 98, then rises to 103 (the target at 102 fills, with the system back).
    system = systems((scripted("AAPL", tmp_path, ("100", "100", "98", "98", "103")),
                      scripted("MSFT", tmp_path, ("50",))))
    system.step(1)
    system.place(bracket("d1", "AAPL", 100, stop=D(95), target=D(102), entry_type=OrderType.LMT,
                         entry_limit=D(99)))
    system.place(_single("d2", "MSFT", Side.BUY, 20))
    wait_for(lambda: system.broker_orders().get("d1:tp") is not None
             and system.broker_orders()["d1:entry"].status == WORKING, 10, "the bracket resting at the broker")
    wait_for(lambda: system.position("MSFT").quantity == 20, 10, "the MSFT position")
    system.kill_all()

    system.step_until(lambda: system.broker_order("d1:entry").status == FILLED, step_s=5.0, max_steps=60,
                      what="the entry to fill while the system is down")
    assert system.broker_position("AAPL") == 100

    again = systems(old=system)
    _positions_match(again, ("AAPL", "MSFT"))
    assert again.position("AAPL").quantity == 100
    resumed = again.running("groups", "d1")  # the bracket is managed again, its children at the broker
    assert resumed.incarnation == 1
    assert again.broker_order("d1:sl").status == again.broker_order("d1:tp").status == WORKING
    with _journal(again) as journal:
        assert [e.ref for e in journal.executions(symbol="AAPL")] == ["d1:entry"]

    again.step_until(lambda: again.broker_order("d1:tp").status == FILLED, step_s=5.0, max_steps=60,
                     what="the target to fill")
    wait_for(lambda: again.child("groups", "d1") is None, 15, "the resumed bracket to finish")
    wait_for(lambda: again.broker_order("d1:sl").status == "Cancelled", 10, "the stop cancelled")
    _positions_match(again, ("AAPL", "MSFT"))
    assert _once(again) == {"d1:entry": 1, "d1:sl": 1, "d1:tp": 1, "d2:entry": 1}
    with _journal(again) as journal:
        fills = {e.ref: e for e in journal.executions(symbol="AAPL")}
        assert sorted(fills) == ["d1:entry", "d1:tp"]  # each fill journaled once
        story = render_why(why(journal, "d1"))
    aapl = again.position("AAPL")
    bought, sold = fills["d1:entry"], fills["d1:tp"]
    assert bought.price <= D(99) and sold.price >= D(102)  # limit prices or better
    assert aapl.quantity == 0 and aapl.realized_pnl == (sold.price - bought.price) * 100
    for text in ("d1:entry", "d1:sl", "d1:tp", "APPROVED", "SENT", bought.exec_id, sold.exec_id):
        assert text in story, story
