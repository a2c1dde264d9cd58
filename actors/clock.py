"""Clocks injected into actors: the wall clock live, a settable virtual clock in tests and backtests.

With a virtual clock, timers must move with it too: on simpleSystemBase thespian's own wakeups run
on the wall clock and fire between any two messages, so a backtest would journal different rows
at different times from run to run. `VirtualTimers` is the timer queue of a virtual clock: every
ShellActor's `wakeupAfter` goes there while one is installed, and the driver fires due timers in
(due time, order of request) order, setting the clock to each one's due time first.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any, Protocol, runtime_checkable

from thespian.actors import WakeupMessage


@runtime_checkable
class Clock(Protocol):
    def now_ns(self) -> int:
        """Return the current time in nanoseconds since the epoch."""
        ...


class WallClock:
    """The system's real time."""

    def now_ns(self) -> int:
        """Return the wall-clock time in nanoseconds since the epoch."""
        return time.time_ns()

    def __repr__(self) -> str:
        return "WallClock()"


class VirtualClock:
    """A clock that moves only when told to; it never goes backwards."""

    def __init__(self, start_ns: int = 0) -> None:
        self._now_ns = start_ns

    def now_ns(self) -> int:
        """Return the clock's current time."""
        return self._now_ns

    def set(self, now_ns: int) -> None:
        """Move the clock to `now_ns`; raise ValueError if that is in its past."""
        if now_ns < self._now_ns:
            raise ValueError(f"virtual clock cannot go back from {self._now_ns} to {now_ns}")
        self._now_ns = now_ns

    def advance(self, delta_ns: int) -> None:
        """Move the clock forward by `delta_ns`; raise ValueError for a negative step."""
        if delta_ns < 0:
            raise ValueError(f"virtual clock cannot step back by {-delta_ns} ns")
        self._now_ns += delta_ns

    def __repr__(self) -> str:
        return f"VirtualClock({self._now_ns})"


class VirtualTimers:
    """Timers that fire on a VirtualClock's time, in (due, request order), when a driver says so."""

    def __init__(self, clock: VirtualClock) -> None:
        self.clock = clock
        self._heap: list[tuple[int, int, Any, timedelta, object]] = []
        self._seq = 0
        self.fired = 0

    def add(self, address: Any, period: timedelta | float | int, payload: object) -> None:
        """Queue a wakeup of `address` `period` (a timedelta or seconds) from the clock's now."""
        delay = period if isinstance(period, timedelta) else timedelta(seconds=period)
        delay_ns = max(0, (delay.days * 86_400 + delay.seconds) * 1_000_000_000 + delay.microseconds * 1000)
        self._seq += 1
        heapq.heappush(self._heap, (self.clock.now_ns() + delay_ns, self._seq, address, delay, payload))

    def next_due_ns(self) -> int | None:
        """Return when the earliest queued timer is due (None: none is queued)."""
        return self._heap[0][0] if self._heap else None

    def fire_until(self, until_ns: int, tell: Callable[[Any, object], None]) -> int:
        """Fire every timer due at or before `until_ns` (and any they queue meanwhile); return how many.

        Each is delivered by `tell(address, WakeupMessage(period, payload))` with the clock set to
        its due time; the clock is left at `until_ns`.
        """
        fired = 0
        while self._heap and self._heap[0][0] <= until_ns:
            due, _, address, delay, payload = heapq.heappop(self._heap)
            if due > self.clock.now_ns():
                self.clock.set(due)
            tell(address, WakeupMessage(delay, payload))
            fired += 1
        if until_ns > self.clock.now_ns():
            self.clock.set(until_ns)
        self.fired += fired
        return fired

    def __len__(self) -> int:
        return len(self._heap)


# The clock new actors in this process pick up. On simpleSystemBase every actor lives in the
# creating process, so a backtest installs one VirtualClock here and drives all actors with it;
# each multiproc actor process keeps the wall clock.
_current: Clock = WallClock()


def current_clock() -> Clock:
    """Return the clock actors created in this process use."""
    return _current


def install_clock(clock: Clock) -> Clock:
    """Make `clock` the clock of actors created from now on in this process; return the previous one."""
    global _current
    previous, _current = _current, clock
    return previous


# The timer queue new actors in this process use for wakeupAfter (None: thespian's own timers).
_timers: VirtualTimers | None = None


def current_timers() -> VirtualTimers | None:
    """Return the virtual timer queue actors created in this process use, if one is installed."""
    return _timers


def install_timers(timers: VirtualTimers | None) -> VirtualTimers | None:
    """Make `timers` the timer queue of actors created from now on in this process; return the previous one."""
    global _timers
    previous, _timers = _timers, timers
    return previous
