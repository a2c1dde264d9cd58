"""Each actor process's connection to the journal (DESIGN §5): opened once per process, written before acting.

Every actor that owns durable facts writes them itself, synchronously, before the messages that
act on them leave: the risk manager the intent and its decision before the orders go, the
connection an order's row (with its broker id) before its PLACE_ORDER and an execution before it
is routed, a symbol or order group its state before its commands. SQLite in WAL mode lets every
process write the one file; a commit survives kill -9 of the writer (and, with `synchronous =
FULL`, a power loss). With FULL, commits nothing outside the machine acts on before a later
synced commit do not wait for the disk (`Journal.batch(synced=False)`): the symbol's and the risk
manager's on the way to an order, a group's progress, order statuses, commissions. The
connection's synced commit before each PLACE_ORDER puts them on disk too, since the WAL is
appended in commit order.

A process forked from an actor that had the journal open must not use (or close) the inherited
connection: connections are kept per process id, and inherited ones are kept referenced, never
closed, so SQLite's locks of the parent stay intact.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Final

from core.config import Config
from journal.store import Journal

_OPEN: dict[tuple[int, str], Journal] = {}
_INHERITED: Final[list[Journal]] = []


@dataclass(frozen=True, slots=True, kw_only=True)
class JournalSettings:
    """Where the journal is and how it commits (core.config.JournalConfig, resolved to one path)."""

    path: str
    synchronous: str = "FULL"

    @classmethod
    def of(cls, config: Config) -> JournalSettings:
        """Return the journal settings of `config` (its path under `system.state_dir`, made absolute)."""
        return cls(path=str(config.journal_path.absolute()), synchronous=config.journal.synchronous.value)


def journal(settings: JournalSettings | None) -> Journal | None:
    """Return this process's connection to the journal `settings` names (None: no journal)."""
    if settings is None:
        return None
    pid = os.getpid()
    key = (pid, settings.path)
    found = _OPEN.get(key)
    if found is None:
        for (owner, path), inherited in list(_OPEN.items()):
            if owner != pid:  # opened by the process we were forked from
                _INHERITED.append(inherited)
                del _OPEN[(owner, path)]
        found = Journal.open(settings.path, synchronous=settings.synchronous)
        _OPEN[key] = found
    return found


def close_all() -> None:
    """Close this process's journal connections (a clean stop; inherited ones stay untouched)."""
    pid = os.getpid()
    for (owner, path), opened in list(_OPEN.items()):
        if owner == pid:
            opened.close()
            del _OPEN[(owner, path)]
