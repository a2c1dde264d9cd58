"""What a start of the whole system settles in the journal before any actor runs: intents that never left.

The rule (DESIGN §5, "sent or abandoned, never both"): an intent is SENT in the same transaction
that journals its group's first broker order id, before that PLACE_ORDER is written. So an intent
the risk manager approved that is still unresolved when the whole system starts never had an
order reach the broker, and it is ABANDONED: a decision taken before an outage of unknown length
is not acted on after it (the rules decide again on fresh data). An intent still PENDING (the
gate died deciding) is abandoned as well.
"""

from __future__ import annotations

from journal.store import Journal

ABANDONED_REASON = "no order of it had left when the system stopped; not sent after the restart"


def abandon_unsent(journal: Journal, ts_ns: int) -> list[str]:
    """Resolve every approved or pending, unresolved intent as ABANDONED; return their ids."""
    abandoned: list[str] = []
    with journal.batch():
        for decision in ("APPROVED", "PENDING"):
            for intent in journal.intents(decision=decision):
                if intent.resolution:
                    continue
                journal.resolve_intent(intent.intent_id, resolution="ABANDONED", reason=ABANDONED_REASON,
                                       ts_ns=ts_ns)
                journal.record_event("intent_abandoned", ts_ns=ts_ns, actor="supervisor",
                                     symbol=intent.symbol, ref=intent.intent_id, text=ABANDONED_REASON)
                abandoned.append(intent.intent_id)
    return abandoned
