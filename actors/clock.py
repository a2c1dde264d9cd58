"""Clocks injected into actors: the wall clock live, a settable virtual clock in tests and backtests."""

from __future__ import annotations

import time
from typing import Protocol, runtime_checkable


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
