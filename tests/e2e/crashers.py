"""Actors that crash the whole actor system (SIGKILL of every process) at one precise point, for recovery tests.

Used through StartSystem.actor_classes; imported by dotted path in the actor processes (forked
from the test, the repository root is on sys.path). The trigger is in the data the test sends
(a rule name, a group id), so only the test's own order crashes the system.
"""

from __future__ import annotations

import os
import signal
import time
from typing import Final

from actors.processes import session_pids
from actors.risk_manager import RiskManager
from actors.tws_connection import TwsConnection
from core import risk as core_risk
from messages import OrderIntent, PlaceOrderGroup

CRASH_AFTER_JOURNAL: Final = "crash-after-journal"  # the rule of an intent that kills the system once journaled
CRASH_AFTER_SEND: Final = "crash-after-send"        # a group id prefix: killed once its entry's bytes left


def kill_whole_system() -> None:
    """SIGKILL every process of this actor system's session, this one last (kill -9 of the whole system)."""
    me, session = os.getpid(), os.getsid(0)
    # Again until none is left: a process forked while we kill (a spare being created) is caught too.
    for _ in range(100):
        others = [pid for pid in session_pids(session) if pid != me]
        if not others:
            break
        for pid in others:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.01)
    os.kill(me, signal.SIGKILL)


class CrashAfterJournalRisk(RiskManager):
    """Kills the system right after an approved intent of rule CRASH_AFTER_JOURNAL is journaled."""

    def _journal_intent(self, intent: OrderIntent, verdict: core_risk.Verdict, account: core_risk.Account,
                        now: int, place: PlaceOrderGroup | None) -> bool:
        journaled = super()._journal_intent(intent, verdict, account, now, place)
        if journaled and verdict.approved and intent.rule == CRASH_AFTER_JOURNAL:
            kill_whole_system()
        return journaled


class CrashAfterSendTws(TwsConnection):
    """Kills the system right after the PLACE_ORDER of an entry whose group id starts CRASH_AFTER_SEND left.

    "Left" as in production: its journal transaction committed (at the end of the pacer's release),
    then every byte handed to the kernel; then nothing more is read or written.
    """

    crash_due = False

    def _release_place(self, ref: str) -> None:
        super()._release_place(ref)
        if ref.startswith(CRASH_AFTER_SEND) and ref.endswith(":entry") and self.routes[ref].broker_id:
            self.crash_due = True

    def _pump(self) -> int:
        released = super()._pump()
        if self.crash_due:
            deadline = time.monotonic() + 5
            while self.out_buf and self.sock is not None and time.monotonic() < deadline:
                self._flush_writes()
                if self.out_buf:
                    time.sleep(0.001)
            kill_whole_system()
        return released
