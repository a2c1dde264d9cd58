"""The SQLite journal: durable record of signals, intents, orders, fills and actor state."""

from journal.store import (
    APPLICATION_ID,
    MIGRATIONS,
    SCHEMA_VERSION,
    CorruptJournal,
    EventRow,
    ExecRow,
    FiringRow,
    ForeignJournal,
    IntentRow,
    Journal,
    JournalError,
    NewerJournal,
    OrderRow,
    SignalRow,
)
from journal.why import NotInJournal, WhyChain, render_why, why

__all__ = [
    "APPLICATION_ID", "MIGRATIONS", "SCHEMA_VERSION", "CorruptJournal", "EventRow", "ExecRow",
    "FiringRow", "ForeignJournal", "IntentRow", "Journal", "JournalError", "NewerJournal",
    "NotInJournal", "OrderRow", "SignalRow", "WhyChain", "render_why", "why",
]
