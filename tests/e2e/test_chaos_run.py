"""Acceptance (issue 9): a 60-second seeded chaos run passes every check, and what chaos runs found stays fixed.

The chaos run is bench/chaos.py at a test's length: 50 symbols trading on the accelerated
simulator while every kind of fault is injected (kill -9 of symbol, group, connection, risk and
journal-writing processes, drops and refused reconnects, 1100/1101/1102 storms, repeated statuses,
fills after cancels, silences, bad and hostile signals and admin messages, pacing pressure).
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import pytest

from actors.risk_manager import RiskManager
from actors.tws_connection import TwsConnection
from bench import chaos
from core.matching import CANCELLED
from core.types import Execution, Quote
from journal.store import Journal
from messages import AdminReply, CancelAll, MoveStop, PlaceOrderGroup
from tests.e2e.harness import System, bracket, scripted, wait_for

DIE_AFTER_FILL = "die-after-fill"  # a group id prefix: the connection SIGKILLs itself once its entry's fill is journaled


class DieAfterFillTws(TwsConnection):
    """Kills its own process (first incarnation only) once the entry of a DIE_AFTER_FILL group filled.

    From that group's first placement on it sends its supervisor no snapshot, as when the kill
    overtakes them: the next incarnation resumes from a state that knows none of the group's
    orders, though the journal has them all (the entry as filled, the children as working).
    """

    stale = False
    due = False

    def _release_place(self, ref: str) -> None:
        super()._release_place(ref)
        if ref.startswith(DIE_AFTER_FILL) and self.incarnation == 1:
            self.stale = True

    def _snapshot(self) -> None:
        if not self.stale:
            super()._snapshot()

    def _deliver_execution(self, ref: str, execution: Execution, commission: Decimal | None) -> None:
        super()._deliver_execution(ref, execution, commission)
        if ref.startswith(DIE_AFTER_FILL) and ref.endswith(":entry") and self.incarnation == 1:
            self.due = True

    def _settle(self) -> None:
        super()._settle()
        if self.due:
            self._flush_lazy_routes(force=True)  # the entry's Filled status journaled too
            os.kill(os.getpid(), signal.SIGKILL)


DIE_AFTER_ENTRY = "die-after-entry"  # a group id prefix: the connection SIGKILLs itself once the entry's bytes left


class DieAfterEntryTws(TwsConnection):
    """Kills its own process (first incarnation only) once the PLACE_ORDER of a DIE_AFTER_ENTRY entry left and
    before its children's: the entry's broker id is journaled, the snapshot naming it never sent."""

    due = False

    def _release_place(self, ref: str) -> None:
        if self.due:
            return  # the entry's children: the kill comes first
        super()._release_place(ref)
        if ref.startswith(DIE_AFTER_ENTRY) and ref.endswith(":entry") and self.incarnation == 1:
            self.due = True

    def _pump(self) -> int:
        released = super()._pump()  # the journal transaction of the release committed
        if self.due:
            while self.out_buf and self.sock is not None:
                self._flush_writes()
            os.kill(os.getpid(), signal.SIGKILL)
        return released


DIE_BEFORE_GROUP = "die-before-group"  # a group id prefix: the risk manager dies between its two sends


class DieBeforeGroupRisk(RiskManager):
    """Kills its own process (first incarnation only) once it approved a DIE_BEFORE_GROUP intent and handed
    its legs to the connection, instead of telling the groups supervisor to start the group."""

    def tell_peer(self, name: str, msg: object) -> None:
        if isinstance(msg, PlaceOrderGroup) and msg.group_id.startswith(DIE_BEFORE_GROUP) and self.incarnation == 1:
            os.kill(os.getpid(), signal.SIGKILL)
        super().tell_peer(name, msg)


LOSE_CANCEL = "lose-cancel"  # a group id prefix: the socket dies with the first cancel of one of its legs


class LoseCancelTws(TwsConnection):
    """Loses the first cancel of a LOSE_CANCEL take-profit with its socket (written, then the socket closed
    under it, as when TWS drops the connection at that moment); the connection reconnects as usual."""

    lost_one = False

    def _release(self, item: object, now: int) -> None:
        ref = getattr(item, "ref", "")
        if type(item).__name__ == "_Cancel" and ref.startswith(LOSE_CANCEL) and ref.endswith(":tp") \
                and not self.lost_one:
            self.lost_one = True
            self.log.info("{}: cancel {} sent (lost with the socket, on purpose)", self.key, ref)
            self._lost("test: the socket closed with the cancel in it")
            return
        super()._release(item, now)


def _aapl_with(launch: Callable[..., System], tmp_path: Path, key: str, cls: type) -> System:
    """Return a system trading AAPL at 100 whose core actor `key` is `cls` (of this module), one step on."""
    system = launch((scripted("AAPL", tmp_path, ("100",)),),
                    actor_classes=((key, f"tests.e2e.test_chaos_run.{cls.__name__}"),))
    system.step(1)
    return system


def _place_bracket(system: System, gid: str) -> Quote:
    """Place a 100-share AAPL bracket `gid` (stop and target 5 away) and return the quote it was built on."""
    quote = system.quote("AAPL")
    system.place(bracket(gid, "AAPL", 100, stop=quote.bid - 5, target=quote.ask + 5))
    return quote


@pytest.mark.timeout(90)
def test_connection_killed_right_after_placing_a_bracket_delivers_its_fill_and_still_moves_and_cancels_its_stop(
        launch: Callable[..., System], tmp_path: Path) -> None:
    system = _aapl_with(launch, tmp_path, "tws", DieAfterFillTws)
    first = system.running("supervisor", "tws")
    gid = f"{DIE_AFTER_FILL}-1"
    quote = _place_bracket(system, gid)
    system.running("supervisor", "tws", incarnation=first.incarnation + 1)
    assert system.broker_position("AAPL") == 100
    # The fill may not have left the dead connection for the group: the new one must route it.
    wait_for(lambda: system.position("AAPL").quantity == 100, 15, "the entry fill at the symbol actor")

    # The children are ours, not external orders: the stop moves under its parent's broker id, and
    # cancelling the symbol's orders reaches the broker.
    moved = quote.bid - 4
    system.asys.tell(system.address("supervisor", "groups"),
                     MoveStop(symbol="AAPL", stop_price=moved, group_id=gid, reason="test"))
    wait_for(lambda: system.broker_order(f"{gid}:sl").stop_price == moved, 10, "the stop moved at the broker")
    reply = system.asys.ask(system.supervisor, CancelAll(symbol="AAPL", reason="test"), 10)
    assert isinstance(reply, AdminReply), reply
    wait_for(lambda: all(system.broker_order(f"{gid}:{leg}").status == CANCELLED for leg in ("sl", "tp")), 10,
             "both children cancelled at the broker")
    wait_for(lambda: system.child("groups", gid) is None, 15, "the group to finish")
    with Journal.open(system.config.journal_path, readonly=True) as journal:
        fills = {row.ref: row.quantity for row in journal.executions(symbol="AAPL")}
    assert fills == {f"{gid}:entry": 100}
    assert system.position("AAPL").quantity == 100 == system.broker_position("AAPL")
    assert system.orders_per_ref() == {f"{gid}:entry": 1, f"{gid}:sl": 1, f"{gid}:tp": 1}


@pytest.mark.timeout(90)
def test_connection_killed_between_an_entry_and_its_children_never_sends_the_entry_again(
        launch: Callable[..., System], tmp_path: Path) -> None:
    system = _aapl_with(launch, tmp_path, "tws", DieAfterEntryTws)
    first = system.running("supervisor", "tws")
    gid = f"{DIE_AFTER_ENTRY}-1"
    # The link is down: the bracket waits in the connection (and in the snapshots it sends) with no ids.
    system.sim.lose_link()
    wait_for(lambda: system.status().connection_state.value == "DEGRADED", 10, "the connection DEGRADED")
    _place_bracket(system, gid)
    wait_for(lambda: system.log_lines(f"claims {gid}:tp"), 10, "the group's claim at the connection")
    system.sim.restore_link(data_kept=True)  # the legs leave: the entry, then the connection dies
    system.running("supervisor", "tws", incarnation=first.incarnation + 1)
    wait_for(lambda: system.status().connection_state.value == "READY", 15, "the new connection READY")

    # The entry reached the broker untransmitted (its children never came): it is never sent again.
    wait_for(lambda: system.child("groups", gid) is None, 15, "the group to finish")
    assert system.orders_per_ref() == {f"{gid}:entry": 1}
    assert system.position("AAPL").quantity == 0 == system.broker_position("AAPL")


@pytest.mark.timeout(90)
def test_risk_manager_killed_between_submitting_the_legs_and_starting_the_group_still_gets_the_group_started(
        launch: Callable[..., System], tmp_path: Path) -> None:
    system = _aapl_with(launch, tmp_path, "risk", DieBeforeGroupRisk)
    first = system.running("supervisor", "risk")
    gid = f"{DIE_BEFORE_GROUP}-1"
    _place_bracket(system, gid)
    system.running("supervisor", "risk", incarnation=first.incarnation + 1)
    wait_for(lambda: system.broker_position("AAPL") == 100, 10, "the entry to fill at the simulator")
    # The restarted gate places its working group again: the group claims its legs and their fills.
    group = system.running("groups", gid)
    wait_for(lambda: system.position("AAPL").quantity == 100, 15, "the entry fill at the symbol actor")
    assert group.incarnation == 1
    assert system.orders_per_ref() == {f"{gid}:entry": 1, f"{gid}:sl": 1, f"{gid}:tp": 1}


@pytest.mark.timeout(90)
def test_cancel_lost_with_its_socket_is_asked_again_after_the_reconnect(
        launch: Callable[..., System], tmp_path: Path) -> None:
    system = _aapl_with(launch, tmp_path, "tws", LoseCancelTws)
    gid = f"{LOSE_CANCEL}-1"
    _place_bracket(system, gid)
    wait_for(lambda: system.broker_order(f"{gid}:tp") is not None and system.broker_order(f"{gid}:tp").status
             == "Submitted", 10, "the bracket working at the broker")
    reply = system.asys.ask(system.supervisor, CancelAll(symbol="AAPL", reason="test"), 10)
    assert isinstance(reply, AdminReply), reply
    wait_for(lambda: system.log_lines("lost with the socket, on purpose"), 10, "the cancel lost")
    wait_for(lambda: all(system.broker_order(f"{gid}:{leg}").status == CANCELLED for leg in ("sl", "tp")), 15,
             "both children cancelled at the broker after the reconnect")
    wait_for(lambda: system.child("groups", gid) is None, 15, "the group to finish")
    assert system.orders_per_ref() == {f"{gid}:entry": 1, f"{gid}:sl": 1, f"{gid}:tp": 1}


@pytest.mark.timeout(240)
def test_chaos_run_of_60_seconds_with_50_symbols_passes_every_check(tmp_path: Path) -> None:
    lines: list[str] = []
    report = chaos.run(chaos.Settings(seconds=60, symbols=50, seed=1, work=tmp_path / "chaos", log=lines.append))
    table = report.table()
    print("\n".join(lines) + table)  # with -s: the faults, figures, checks and findings (not judged here)
    faults = report.faults
    assert all(f["injected"] >= 1 for f in faults.values()), table
    assert sum(f["injected"] for f in faults.values()) >= 25, table
    failed = [f"{c.name}: {c.detail}" for c in report.checks if not c.ok]
    assert not failed, "\n".join(failed) + table
    assert report.passed
