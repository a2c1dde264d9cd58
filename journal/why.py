"""Why was this order sent: the journaled chain signal → rule → intent → risk → orders → fills."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

from core.types import ZERO, Side
from journal.store import (
    RULES_EVENT,
    EventRow,
    ExecRow,
    FiringRow,
    IntentRow,
    Journal,
    JournalError,
    OrderRow,
    SignalRow,
)

_LABEL = 12
NONE = "(none journaled)"


class NotInJournal(JournalError):
    """Nothing in the journal matches the order ref, group/intent id or broker order id asked about."""


@dataclass(frozen=True, slots=True, kw_only=True)
class WhyChain:
    """Every journaled link behind one order group; a missing link is None or empty."""

    query: str
    group_id: str
    intent: IntentRow | None = None
    signal: SignalRow | None = None
    firings: tuple[FiringRow, ...] = ()
    orders: tuple[OrderRow, ...] = ()
    executions: tuple[ExecRow, ...] = ()
    events: tuple[EventRow, ...] = ()
    rules: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)  # (version, name) -> the rule


def _group_of(ref: str) -> str:
    """Return the group id of a leg ref ("AAPL-1-3:entry" → "AAPL-1-3"); a ref without a leg is its own group."""
    return ref.rpartition(":")[0] or ref


def why(journal: Journal, order: str) -> WhyChain:
    """Return the chain behind an order ref, an order group / intent id or a broker order id."""
    key = order.strip()
    found = journal.order(key) if key else None
    group = ""
    if found is None and key and (journal.intent(key) is not None or journal.orders(group_id=key)):
        group = key
    elif found is None and key.isdigit():
        found = journal.order_by_broker_id(int(key))
    if found is None and not group:
        raise NotInJournal(_not_found(journal, key))
    if found is not None:
        group = found.group_id or _group_of(found.ref)
    # An empty id filters nothing in the journal's queries: an order without a group stands alone.
    orders = journal.orders(group_id=group) if group else []
    if found is not None and all(o.ref != found.ref for o in orders):
        orders.append(found)  # journaled without a group (an external order)
    refs = tuple(o.ref for o in orders if o.ref)
    intent = journal.intent(group) if group else None
    firings = tuple(journal.firings(intent_id=group)) if group else ()
    signal_id = intent.signal_id if intent is not None and intent.signal_id else next(
        (f.signal_id for f in firings if f.signal_id), "")
    keys = tuple(k for k in (group, *refs) if k)
    named = {(f.rules_version, f.rule) for f in firings} | (
        {(intent.rules_version, intent.rule)} if intent is not None and intent.rule else set())
    return WhyChain(
        query=key, group_id=group, intent=intent,
        signal=journal.signal(signal_id) if signal_id else None, firings=firings,
        orders=tuple(orders), executions=tuple(journal.executions(refs=refs)) if refs else (),
        events=tuple(journal.events(refs=keys)) if keys else (), rules=_rules(journal, named))


def _rules(journal: Journal, named: set[tuple[str, str]]) -> dict[tuple[str, str], dict[str, Any]]:
    """Return each named rule as its version was journaled when it started running (absent: not journaled)."""
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for version in {v for v, _ in named if v}:
        loaded = journal.events(kind=RULES_EVENT, ref=version)
        for rule in loaded[-1].data.get("rules", ()) if loaded else ():
            if (version, rule.get("name")) in named:
                found[(version, rule["name"])] = rule
    return found


def _not_found(journal: Journal, key: str) -> str:
    searched = "order refs and order group / intent ids"
    if key.isdigit():
        searched = "order refs, order group / intent ids and broker order ids"
    latest = journal.latest_intent_ids(3)
    if latest:
        hint = (f"run `python bootstrap.py why <ref>` with a ref from this journal, e.g. the latest "
                f"intents: {', '.join(latest)}")
    else:
        hint = "the journal has no intents yet: check journal.path points at the running system's journal"
    return f"nothing in journal {journal.path} matches {key!r} (searched {searched}); {hint}"


def _num(value: Decimal | None) -> str:
    return "-" if value is None else format(value, "f")


def _time(ts_ns: int) -> str:
    if ts_ns <= 0:
        return "time unknown"
    seconds, ns = divmod(ts_ns, 1_000_000_000)
    stamp = datetime.fromtimestamp(seconds, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
    return f"{stamp}.{ns // 1_000_000:03d} UTC"


def _prices(limit: Decimal | None, stop: Decimal | None) -> str:
    parts = ([f"@ {_num(limit)}"] if limit is not None else []) + (
        [f"stop {_num(stop)}"] if stop is not None else [])
    return " ".join(parts)


def _table(rows: list[tuple[str, ...]]) -> list[str]:
    """Return the rows with every column padded to its widest cell."""
    if not rows:
        return []
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip() for r in rows]


def _section(label: str, lines: list[str]) -> list[str]:
    lines = lines or [NONE]
    return [f"{label:<{_LABEL}}{lines[0]}"] + [" " * _LABEL + line for line in lines[1:]]


def _signal_lines(signal: SignalRow | None) -> list[str]:
    if signal is None:
        return []
    verdict = "accepted" if signal.accepted else (
        f"rejected{f' ({signal.code})' if signal.code else ''}: {signal.reason or 'no reason given'}")
    lines = [f"{signal.signal_id}  {signal.symbol}  {_time(signal.ts_ns)}  {verdict}"]
    if signal.data:
        lines.append("  ".join(f"{k}={v}" for k, v in signal.data.items()))
    return lines


def _rule_lines(firings: tuple[FiringRow, ...], intent: IntentRow | None,
                rules: dict[tuple[str, str], dict[str, Any]]) -> list[str]:
    lines = []
    for f in firings:
        lines.append(f"{f.rule}  version {f.rules_version or '-'}  trigger {f.trigger}  {_time(f.ts_ns)}")
        if f.why:
            lines.append(f"why: {f.why}")
        lines += _definition(rules.get((f.rules_version, f.rule)))
    if not lines and intent is not None and intent.rule:
        lines.append(f"{intent.rule}  version {intent.rules_version or '-'}  (its firing was not journaled)")
        lines += _definition(rules.get((intent.rules_version, intent.rule)))
    return lines


def _definition(rule: dict[str, Any] | None) -> list[str]:
    """Return what the rule said: its event and condition, and its action's set fields."""
    if rule is None:
        return []
    when = " and ".join(f"({c})" for c in (rule.get("when"), *rule.get("all", ())) if c) or "always"
    action = rule.get("action") or {}
    fields = ", ".join(f"{k}={v}" for k, v in action.items() if k != "type" and v not in (None, "", 0, [], {}))
    return [f"rule: on {rule.get('on', '?')} when {when}",
            f"action: {action.get('type', '?')}" + (f" ({fields})" if fields else "")]


def _intent_lines(i: IntentRow | None) -> list[str]:
    if i is None:
        return []
    order = " ".join(p for p in (i.side.value, _num(i.quantity), i.order_type.value,
                                 _prices(i.limit_price, i.stop_price), i.tif.value) if p)
    lines = [f"{i.intent_id}  {i.symbol}  {order}  {_time(i.ts_ns)}"]
    if i.stop_loss is not None or i.take_profit is not None:
        lines.append(f"bracket: stop-loss {_num(i.stop_loss)}  take-profit {_num(i.take_profit)}")
    notes = [f"kind {i.kind}" if i.kind else "", f"{i.legs} leg(s)" if i.legs else "",
             f"market {_num(i.market_price)}" if i.market_price is not None else "",
             "reduce-only" if i.reduce_only else "", "operator" if i.operator else ""]
    if any(notes):
        lines.append(", ".join(n for n in notes if n))
    return lines


def _risk_lines(i: IntentRow | None) -> list[str]:
    if i is None:
        return []
    if i.decision == "PENDING":
        return ["PENDING (no decision journaled)"]
    head = i.decision + (f"  limit {i.limit_name}" if i.limit_name else "") + f"  {_time(i.decided_ns)}"
    return [head] + ([f"detail: {i.detail}"] if i.detail else [])


def _order_lines(orders: tuple[OrderRow, ...]) -> list[str]:
    return _table([
        (o.ref, f"#{o.broker_id}" if o.broker_id else "#-",
         " ".join(p for p in (o.side.value, _num(o.quantity), o.order_type.value,
                              _prices(o.limit_price, o.stop_price)) if p),
         o.status.value, f"filled {_num(o.filled)} @ {_num(o.avg_fill_price)}",
         "external" if o.external else "")
        for o in orders])


def _fill_lines(executions: tuple[ExecRow, ...]) -> list[str]:
    return _table([
        (e.exec_id, e.ref, f"{e.side.value} {_num(e.quantity)} @ {_num(e.price)}",
         f"commission {_num(e.commission)}", _time(e.ts_ns),
         f"realized {_num(e.realized_pnl)}" if e.realized_pnl is not None else "")
        for e in executions])


def _resolution_lines(i: IntentRow | None) -> list[str]:
    if i is None or not i.resolution:
        return []
    return [f"{i.resolution}  {_time(i.resolved_ns)}"] + (
        [f"reason: {i.resolution_reason}"] if i.resolution_reason else [])


def _event_lines(events: tuple[EventRow, ...]) -> list[str]:
    return _table([(_time(e.ts_ns), e.kind, e.ref, e.text) for e in events])


def _total(executions: tuple[ExecRow, ...]) -> str:
    if not executions:
        return "nothing filled"
    by_side = {side: sum((e.quantity for e in executions if e.side is side), ZERO) for side in Side}
    filled = ", ".join(f"{side.value} {_num(q)}" for side, q in by_side.items() if q)
    commission = sum((e.commission for e in executions), ZERO)
    text = f"filled {filled} in {len(executions)} fill(s); commissions {_num(commission)}"
    realized = [e.realized_pnl for e in executions if e.realized_pnl is not None]
    if realized:
        text += f"; realized P&L {_num(sum(realized, ZERO))}"
    return text


def render_why(chain: WhyChain) -> str:
    """Return the chain as aligned plain text, one section per link, ending with the fill totals."""
    asked = f" (asked for {chain.query})" if chain.query != chain.group_id else ""
    lines = [f"why {chain.group_id or 'an order without a group'}{asked}"]
    lines += _section("signal", _signal_lines(chain.signal))
    lines += _section("rule", _rule_lines(chain.firings, chain.intent, chain.rules))
    lines += _section("intent", _intent_lines(chain.intent))
    lines += _section("risk", _risk_lines(chain.intent))
    lines += _section("orders", _order_lines(chain.orders))
    lines += _section("fills", _fill_lines(chain.executions))
    resolution = _resolution_lines(chain.intent)
    if resolution:
        lines += _section("resolution", resolution)
    if chain.events:
        lines += _section("events", _event_lines(chain.events))
    lines += _section("total", [_total(chain.executions)])
    return "\n".join(lines) + "\n"
