"""OTP restart bookkeeping as pure values: restart types, exit reasons, restart windows, exit verdicts."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Final

from core.config import RestartBudget

_NS_PER_S: Final = 1_000_000_000


class Restart(str, Enum):
    """When a supervisor re-creates a child that exited (Erlang/OTP's restart types)."""

    PERMANENT = "permanent"  # always, unless the supervisor itself asked for the exit
    TRANSIENT = "transient"  # only after an abnormal exit (crash, kill, failed handler)
    TEMPORARY = "temporary"  # never


class ExitReason(str, Enum):
    """Why a child exited, as far as its supervisor knows (thespian's ChildActorExited does not say)."""

    REQUESTED = "requested"    # the supervisor sent it ActorExitRequest
    FINISHED = "finished"      # the child said its work is done (ActorFinished) before exiting
    UNEXPECTED = "unexpected"  # anything else: a failed handler, a crash, a signal


class Verdict(str, Enum):
    """What the supervisor does about one exit."""

    FORGET = "forget"    # no restart; the exit was wanted
    RESTART = "restart"  # re-create the child with its last snapshot
    GIVE_UP = "give_up"  # the restart budget is spent: quarantine or escalate


# Which exits are wanted, by restart type. An unexpected exit of a permanent or transient child
# is the budget's decision; a "finished" permanent child is restarted, as OTP restarts a permanent
# child after a normal exit.
_WANTED: Final[Mapping[tuple[Restart, ExitReason], bool]] = {
    (Restart.PERMANENT, ExitReason.REQUESTED): True,
    (Restart.PERMANENT, ExitReason.FINISHED): False,
    (Restart.PERMANENT, ExitReason.UNEXPECTED): False,
    (Restart.TRANSIENT, ExitReason.REQUESTED): True,
    (Restart.TRANSIENT, ExitReason.FINISHED): True,
    (Restart.TRANSIENT, ExitReason.UNEXPECTED): False,
    (Restart.TEMPORARY, ExitReason.REQUESTED): True,
    (Restart.TEMPORARY, ExitReason.FINISHED): True,
    (Restart.TEMPORARY, ExitReason.UNEXPECTED): True,
}


def window_ns(budget: RestartBudget) -> int:
    """Return the budget's window in nanoseconds."""
    return int(budget.window_s * _NS_PER_S)


@dataclass(frozen=True, slots=True, kw_only=True)
class RestartHistory:
    """The times (clock ns, oldest first) at which one child was restarted."""

    times_ns: tuple[int, ...] = ()

    def within(self, budget: RestartBudget, now_ns: int) -> RestartHistory:
        """Return the history without restarts that left the budget's window by `now_ns`."""
        start = now_ns - window_ns(budget)
        kept = tuple(t for t in self.times_ns if t > start)
        return self if len(kept) == len(self.times_ns) else RestartHistory(times_ns=kept)

    def count(self, budget: RestartBudget, now_ns: int) -> int:
        """Return how many restarts fall inside the budget's window ending at `now_ns`."""
        return len(self.within(budget, now_ns).times_ns)


def decide_exit(restart: Restart, reason: ExitReason, history: RestartHistory,
                budget: RestartBudget, now_ns: int) -> tuple[Verdict, RestartHistory]:
    """Return what to do about one exit and the child's restart history afterwards.

    A restart is allowed while fewer than `budget.max_restarts` restarts lie inside the window
    ending now; the restart is then recorded. Otherwise the verdict is GIVE_UP.
    """
    if _WANTED[restart, reason]:
        return Verdict.FORGET, history
    recent = history.within(budget, now_ns)
    if len(recent.times_ns) >= budget.max_restarts:
        return Verdict.GIVE_UP, recent
    return Verdict.RESTART, RestartHistory(times_ns=recent.times_ns + (now_ns,))
