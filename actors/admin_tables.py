"""The operator's tables (positions, orders, P&L, signals, rules), read from the journal by the Supervisor.

The journal holds what every actor committed before acting, so the tables need no round of
questions to the actors. Marks (the latest price of each held symbol) come from the bus, as the
symbol actors publish them; without one a position is valued at its last fill.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timezone
from decimal import Decimal
from typing import Final
from zoneinfo import ZoneInfo

from actors.risk_manager import STATE_KEY as RISK_KEY
from actors.risk_manager import RiskState
from actors.symbol import SymbolState
from core import risk as core_risk
from core.position import Position, unrealized_pnl
from core.types import ZERO
from journal.store import Journal
from messages import AdminTable, QueryKind

_S: Final = 1_000_000_000


def _money(value: Decimal) -> str:
    return f"{value.quantize(Decimal('0.01')):,}"


def _num(value: Decimal | None) -> str:
    return "" if value is None else f"{value.normalize():f}"


def _when(ts_ns: int, zone: ZoneInfo) -> str:
    if not ts_ns:
        return ""
    return datetime.fromtimestamp(ts_ns / _S, tz=timezone.utc).astimezone(zone).strftime("%Y-%m-%d %H:%M:%S")


def _positions(journal: Journal, symbol: str) -> list[tuple[str, Position]]:
    found = []
    for key, state in journal.states("symbol:"):
        name = key.split(":", 1)[1]
        if isinstance(state, SymbolState) and symbol in ("", name):
            found.append((name, state.position))
    return found


def _unrealized(position: Position, mark: Decimal | None) -> Decimal:
    price = mark if mark is not None else position.last_price
    return unrealized_pnl(position, price) if price is not None and position.quantity != 0 else ZERO


def positions(journal: Journal, marks: Mapping[str, Decimal], symbol: str = "") -> AdminTable:
    """Return every symbol's position (held ones first) with its cost, mark, P&L and levels."""
    rows = []
    held = 0
    for name, p in sorted(_positions(journal, symbol), key=lambda item: (item[1].quantity == 0, item[0])):
        mark = marks.get(name, p.last_price)
        held += p.quantity != 0
        rows.append((name, p.state.value, _num(p.quantity), _num(p.avg_cost) if p.quantity else "", _num(mark),
                     _money(_unrealized(p, mark)), _money(p.realized_pnl), _money(p.commissions),
                     _num(p.stop_loss), _num(p.take_profit), _num(p.trailing_stop)))
    return AdminTable(title="positions", columns=("symbol", "state", "quantity", "avg cost", "mark", "unrealized",
                                                  "realized", "commissions", "stop", "target", "trailing"),
                      rows=tuple(rows), text=f"{held} held of {len(rows)} symbol(s)")


def orders(journal: Journal, symbol: str = "") -> AdminTable:
    """Return the working orders (open in the journal), each with its group, broker id and fills."""
    rows = tuple((o.ref, o.group_id, o.symbol, o.side.value, _num(o.quantity), o.order_type.value,
                  _num(o.limit_price), _num(o.stop_price), o.tif.value, str(o.broker_id or ""), o.status.value,
                  _num(o.filled), "external" if o.external else "")
                 for o in journal.orders(symbol=symbol, open_only=True))
    return AdminTable(title="orders", columns=("ref", "group", "symbol", "side", "quantity", "type", "limit",
                                               "stop", "tif", "broker id", "status", "filled", ""),
                      rows=rows, text=f"{len(rows)} working order(s)")


def pnl(journal: Journal, marks: Mapping[str, Decimal], symbol: str = "") -> AdminTable:
    """Return realized, unrealized and commissions per symbol and in total, and the account's day P&L."""
    rows = []
    total = [ZERO, ZERO, ZERO]
    for name, p in sorted(_positions(journal, symbol)):
        unrealized = _unrealized(p, marks.get(name))
        parts = (p.realized_pnl, unrealized, p.commissions)
        total = [t + v for t, v in zip(total, parts)]
        rows.append((name, _money(parts[0]), _money(parts[1]), _money(parts[2]),
                     _money(parts[0] + parts[1] - parts[2])))
    rows.append(("TOTAL", _money(total[0]), _money(total[1]), _money(total[2]),
                 _money(total[0] + total[1] - total[2])))
    risk = journal.get_state(RISK_KEY)
    text = "net = realized + unrealized - commissions"
    if isinstance(risk, RiskState):
        account = risk.account
        text += (f"; trading {account.mode.value}; day {account.day or '-'} P&L "
                 f"{_money(core_risk.day_pnl(account))} (as of the gate's last journaled account)")
    return AdminTable(title="pnl", columns=("symbol", "realized", "unrealized", "commissions", "net"),
                      rows=tuple(rows), text=text)


def signals(journal: Journal, zone: ZoneInfo, symbol: str = "", limit: int = 50) -> AdminTable:
    """Return the latest signals, newest first, accepted or rejected with the reason."""
    recent = journal.recent_signals(symbol=symbol, limit=limit)
    rows = tuple((_when(s.ts_ns, zone), s.signal_id, s.symbol, str(s.data.get("direction", "")),
                  str(s.data.get("confidence", "")), "accepted" if s.accepted else f"REJECTED {s.code}",
                  s.reason) for s in recent)
    rejected = sum(not s.accepted for s in recent)
    return AdminTable(title="signals", columns=("time", "id", "symbol", "direction", "confidence", "outcome",
                                                "reason"),
                      rows=rows, text=f"{len(rows)} latest signal(s), {rejected} rejected")


def rules(journal: Journal, zone: ZoneInfo, now_ns: int, version: str, names: tuple[str, ...],
          symbol: str = "") -> AdminTable:
    """Return each running rule with its fires today (exchange day) and the last time and symbol it fired."""
    now = datetime.fromtimestamp(now_ns / _S, tz=timezone.utc).astimezone(zone)
    day_start = int(now.replace(hour=0, minute=0, second=0, microsecond=0).timestamp() * _S)
    fires: dict[str, list[int]] = {}
    last: dict[str, tuple[int, str]] = {}
    for firing in journal.firings(symbol=symbol, since_ns=day_start):
        fires.setdefault(firing.rule, []).append(firing.ts_ns)
        last[firing.rule] = (firing.ts_ns, firing.symbol)
    rows = []
    for name in names or tuple(sorted(fires)):
        when, where = last.get(name, (0, ""))
        rows.append((name, str(len(fires.get(name, ()))), _when(when, zone), where))
    return AdminTable(title="rules", columns=("rule", "fires today", "last fired", "symbol"), rows=tuple(rows),
                      text=f"rules {version or '?'} ({len(names)} running)")


def table(what: QueryKind, journal: Journal, *, marks: Mapping[str, Decimal], zone: ZoneInfo, now_ns: int,
          rules_version: str, rule_names: tuple[str, ...], symbol: str = "", limit: int = 50) -> AdminTable:
    """Return the table `what` names."""
    match what:
        case QueryKind.POSITIONS:
            return positions(journal, marks, symbol)
        case QueryKind.ORDERS:
            return orders(journal, symbol)
        case QueryKind.PNL:
            return pnl(journal, marks, symbol)
        case QueryKind.SIGNALS:
            return signals(journal, zone, symbol, limit)
        case QueryKind.RULES:
            return rules(journal, zone, now_ns, rules_version, rule_names, symbol)
    raise ValueError(f"no table {what!r}")
