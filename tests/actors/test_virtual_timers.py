"""Timers on a virtual clock: an actor's wakeupAfter waits for the driver, fires in order, at its due time."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from thespian.actors import ActorAddress, ActorSystem, WakeupMessage

from actors.base import ShellActor
from actors.clock import VirtualClock, VirtualTimers, install_clock, install_timers

pytestmark = pytest.mark.timeout(30)
MS = 1_000_000


class Sleeper(ShellActor):
    """Asks for the wakeups it is told to ("after <ms> <name>"), records each at the clock's time."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[int, object]] = []

    def receiveMsg_tuple(self, msg: tuple[Any, ...], sender: ActorAddress) -> None:
        if msg[0] == "after":
            self.wakeupAfter(timedelta(milliseconds=msg[1]), payload=msg[2])
        elif msg[0] == "seen":
            self.send(sender, list(self.seen))

    def receiveMsg_WakeupMessage(self, msg: WakeupMessage, sender: ActorAddress) -> None:
        self.seen.append((self.now_ns(), msg.payload))
        if msg.payload == "chain":  # a timer that asks for another: fired in the same sweep when due
            self.wakeupAfter(timedelta(milliseconds=5), payload="chained")


@pytest.fixture
def virtual() -> Iterator[tuple[VirtualClock, VirtualTimers]]:
    clock = VirtualClock(1_000 * MS)
    timers = VirtualTimers(clock)
    previous_clock, previous_timers = install_clock(clock), install_timers(timers)
    yield clock, timers
    install_clock(previous_clock)
    install_timers(previous_timers)


def test_wakeups_wait_for_the_driver_and_fire_in_due_order_at_their_due_time(
        simple_asys: ActorSystem, virtual: tuple[VirtualClock, VirtualTimers]) -> None:
    clock, timers = virtual
    actor = simple_asys.createActor(Sleeper)
    for ms, name in ((30, "c"), (10, "a"), (10, "b"), (0, "now"), (20, "chain")):
        simple_asys.tell(actor, ("after", ms, name))
    assert simple_asys.ask(actor, ("seen",), timedelta(seconds=5)) == []  # none on the wall clock
    assert len(timers) == 5 and timers.next_due_ns() == 1_000 * MS

    assert timers.fire_until(1_020 * MS, simple_asys.tell) == 4
    start = 1_000 * MS
    assert simple_asys.ask(actor, ("seen",), timedelta(seconds=5)) == [
        (start, "now"), (start + 10 * MS, "a"), (start + 10 * MS, "b"), (start + 20 * MS, "chain")]
    assert clock.now_ns() == 1_020 * MS  # left at the driver's time

    assert timers.fire_until(1_100 * MS, simple_asys.tell) == 2  # "chained" at 1_025 ms, then "c"
    seen = simple_asys.ask(actor, ("seen",), timedelta(seconds=5))
    assert seen[4:] == [(start + 25 * MS, "chained"), (start + 30 * MS, "c")]
    assert len(timers) == 0 and timers.next_due_ns() is None and timers.fired == 6


def test_without_virtual_timers_an_actor_uses_thespians_own(simple_asys: ActorSystem) -> None:
    actor = simple_asys.createActor(Sleeper)
    simple_asys.tell(actor, ("after", 1, "real"))
    deadline = timedelta(seconds=5)
    seen: list[Any] = []
    for _ in range(200):
        seen = simple_asys.ask(actor, ("seen",), deadline)
        if seen:
            break
    assert [payload for _, payload in seen] == ["real"]
