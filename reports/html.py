"""The report page: one self-contained HTML file (inline CSS, the chart as a data URI, no script)."""

from __future__ import annotations

import base64
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timezone
from decimal import ROUND_HALF_EVEN, Decimal
from html import escape
from typing import Final
from zoneinfo import ZoneInfo

from core.analytics import Breakdown, Metrics, Trade

TRADE_ROWS: Final = 500  # a long trade list shows this many first and last trades
_CENT: Final = Decimal("0.01")
_PRICE: Final = Decimal("0.0001")
NONE: Final = "–"

_CSS: Final = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #222;
       margin: 24px auto; max-width: 1180px; padding: 0 16px; background: #fff; }
h1 { font-size: 22px; margin: 0 0 4px; } h2 { font-size: 17px; margin: 28px 0 8px; }
p.meta { color: #555; margin: 0 0 4px; } p.note { color: #555; font-style: italic; }
table { border-collapse: collapse; font-variant-numeric: tabular-nums; }
th, td { padding: 3px 10px; border-bottom: 1px solid #e4e4e4; text-align: right; white-space: nowrap; }
th { background: #f4f4f4; font-weight: 600; } th.l, td.l { text-align: left; }
tbody tr:nth-child(even) { background: #fafafa; }
table.headline { float: left; margin: 0 24px 12px 0; } table.headline th { text-align: left; }
div.clear { clear: both; } td.neg { color: #b03a2e; } td.pos { color: #1e7b34; }
img.chart { width: 100%; max-width: 1100px; border: 1px solid #ddd; margin-top: 4px; }
tr.gap td { text-align: center; color: #555; font-style: italic; background: #fff8e1; }
"""


@dataclass(frozen=True, slots=True, kw_only=True)
class Context:
    """What the page says about where its numbers come from."""

    journal: str
    zone: ZoneInfo
    capital_note: str
    generated: datetime
    fills: int
    since: date | None = None
    carried: int = 0


def money(value: Decimal) -> str:
    """Return money rounded to cents with thousands separators: -1,234.50."""
    return f"{value.quantize(_CENT, ROUND_HALF_EVEN):,}"


def price(value: Decimal | None) -> str:
    """Return a price with 2 to 4 decimals, or a dash."""
    if value is None:
        return NONE
    text = f"{value.quantize(_PRICE, ROUND_HALF_EVEN):,}"
    whole, _, frac = text.partition(".")
    return f"{whole}.{frac.rstrip('0').ljust(2, '0')}"


def quantity(value: Decimal) -> str:
    """Return a quantity without trailing zeros: 100, 0.5."""
    text = f"{value:,f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def ratio(value: Decimal | float | None, places: int = 2) -> str:
    """Return a plain ratio rounded to `places`, or a dash when undefined."""
    return NONE if value is None else f"{value:,.{places}f}"


def percent(value: Decimal | float | None, places: int = 2) -> str:
    """Return a fraction as a percentage (0.5 → 50.00%), or a dash when undefined."""
    return NONE if value is None else f"{value * 100:,.{places}f}%"


def duration(ns: int) -> str:
    """Return a duration as days, hours and minutes: 2d 4h 0m."""
    minutes = ns // 60_000_000_000
    days, rest = divmod(minutes, 24 * 60)
    hours, mins = divmod(rest, 60)
    return f"{days}d {hours}h {mins}m" if days else f"{hours}h {mins}m"


def _when(ts_ns: int, zone: ZoneInfo) -> str:
    if not ts_ns:
        return "open"
    return datetime.fromtimestamp(ts_ns / 1e9, zone).strftime("%Y-%m-%d %H:%M:%S")


def _sign(value: Decimal | float | None) -> str:
    if value is None or value == 0:
        return ""
    return ' class="neg"' if value < 0 else ' class="pos"'


def _headline(m: Metrics) -> list[tuple[str, str, str, Decimal | float | None]]:
    """Return (id, label, text, signed value for colour) for every headline metric."""
    end = m.capital + m.net_pnl
    return [
        ("net_pnl", "Net P&L", money(m.net_pnl), m.net_pnl),
        ("realized_pnl", "Realized P&L (gross)", money(m.realized_pnl), m.realized_pnl),
        ("unrealized_pnl", "Unrealized P&L", money(m.unrealized_pnl), m.unrealized_pnl),
        ("commissions", "Commissions", money(m.commissions), None),
        ("capital", "Capital", money(m.capital), None),
        ("ending_equity", "Ending equity", money(end), None),
        ("return", "Return on capital", percent(m.net_pnl / m.capital), m.net_pnl),
        ("trades", "Closed trades", f"{m.trades:,}", None),
        ("open_trades", "Open trades", f"{m.open_trades:,}", None),
        ("win_rate", "Win rate", percent(m.win_rate), None),
        ("profit_factor", "Profit factor", ratio(m.profit_factor), None),
        ("expectancy", "Expectancy per trade", NONE if m.expectancy is None else money(m.expectancy),
         m.expectancy),
        ("avg_r", "Average R multiple", ratio(m.avg_r), m.avg_r),
        ("sharpe", "Sharpe (daily, annualized)", ratio(m.sharpe), m.sharpe),
        ("sortino", "Sortino (daily, annualized)", ratio(m.sortino), m.sortino),
        ("max_drawdown", "Max drawdown", money(m.max_drawdown), -m.max_drawdown),
        ("max_drawdown_pct", "Max drawdown %", f"{m.max_drawdown_pct:,.2f}%", -m.max_drawdown_pct),
        ("max_drawdown_duration", "Drawdown duration", duration(m.max_drawdown_ns), None),
        ("exposure", "Exposure", percent(m.exposure), None),
        ("trading_days", "Days with closes", f"{len(m.daily):,}", None),
    ]


def _table(head: Sequence[str], rows: Iterable[str], left: Collection[int] = (0,), table_id: str = "") -> str:
    ths = "".join(f'<th class="l">{escape(h)}</th>' if i in left else f"<th>{escape(h)}</th>"
                  for i, h in enumerate(head))
    ident = f' id="{table_id}"' if table_id else ""
    return f"<table{ident}><thead><tr>{ths}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _breakdown_rows(items: Sequence[Breakdown], blank: str) -> list[str]:
    return [f'<tr><td class="l">{escape(b.key or blank)}</td><td>{b.trades:,}</td>'
            f"<td>{percent(b.win_rate)}</td><td{_sign(b.net_pnl)}>{money(b.net_pnl)}</td>"
            f"<td{_sign(b.expectancy)}>{money(b.expectancy)}</td></tr>" for b in items]


def _trade_row(n: int, t: Trade, zone: ZoneInfo) -> str:
    r = NONE if t.r_multiple is None else f"{t.r_multiple:,.2f}"
    return (f'<tr><td>{n}</td><td class="l">{escape(t.symbol)}</td><td class="l">{t.side.value}</td>'
            f'<td class="l">{_when(t.opened_ns, zone)}</td><td class="l">{_when(t.closed_ns, zone)}</td>'
            f"<td>{quantity(t.quantity)}</td><td>{price(t.entry_price)}</td><td>{price(t.exit_price)}</td>"
            f"<td{_sign(t.gross_pnl)}>{money(t.gross_pnl)}</td><td>{money(t.commissions)}</td>"
            f"<td{_sign(t.net_pnl)}>{money(t.net_pnl)}</td><td{_sign(t.r_multiple)}>{r}</td>"
            f'<td class="l">{escape(t.rule) or NONE}</td><td>{t.fills}</td></tr>')


def _trade_rows(trades: Sequence[Trade], zone: ZoneInfo) -> tuple[list[str], str]:
    n = len(trades)
    if n <= 2 * TRADE_ROWS:
        return [_trade_row(i, t, zone) for i, t in enumerate(trades, 1)], ""
    hidden = n - 2 * TRADE_ROWS
    gap = (f'<tr class="gap"><td colspan="14">… {hidden:,} trades (#{TRADE_ROWS + 1:,} to '
           f"#{n - TRADE_ROWS:,}) not shown …</td></tr>")
    rows = [_trade_row(i, t, zone) for i, t in enumerate(trades[:TRADE_ROWS], 1)]
    rows.append(gap)
    rows.extend(_trade_row(i, t, zone) for i, t in enumerate(trades[-TRADE_ROWS:], n - TRADE_ROWS + 1))
    note = (f"{n:,} trades: the first {TRADE_ROWS:,} and the last {TRADE_ROWS:,} are listed, "
            f"{hidden:,} in between are left out of this page (they are in every figure above).")
    return rows, note


def render(m: Metrics, trades: Sequence[Trade], chart_png: bytes, ctx: Context) -> str:
    """Return the whole report page: headline metrics, the chart, per-symbol and per-rule tables, the trades."""
    zone = ctx.zone
    period = (f"{_when(m.first_ns, zone)} to {_when(m.last_ns, zone)}" if trades else "no trades")
    since = f" · trades opened since {ctx.since.isoformat()}" if ctx.since else ""
    carried = ""
    if ctx.carried:
        carried = (f'<p class="note" id="carried">{ctx.carried:,} trade(s) opened before '
                   f"{ctx.since.isoformat() if ctx.since else 'the period'} are left out; their fills "
                   f"were still replayed so that positions carried into the period are not taken for "
                   f"new trades.</p>")
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        "<title>Trading performance report</title>",
        f"<style>{_CSS}</style></head><body>",
        "<h1>Trading performance report</h1>",
        f'<p class="meta">Journal <code>{escape(ctx.journal)}</code>{escape(since)}</p>',
        f'<p class="meta">Period {escape(period)} ({escape(zone.key)}) · {ctx.fills:,} fills · '
        f"{escape(ctx.capital_note)} · generated "
        f"{ctx.generated.astimezone(timezone.utc).strftime('%Y-%m-%d %H:%M:%S')} UTC</p>",
        carried,
    ]
    if not trades:
        parts.append('<p class="note" id="no-trades">No trades: the journal holds no fills'
                     f"{' in this period' if ctx.since else ''}, so there is nothing to measure.</p>")
    headline = _headline(m)
    half = (len(headline) + 1) // 2
    parts.append("<h2>Summary</h2>")
    for chunk in (headline[:half], headline[half:]):
        rows = "".join(f'<tr id="m-{key}"><th>{escape(label)}</th><td{_sign(v)}>{escape(text)}</td></tr>'
                       for key, label, text, v in chunk)
        parts.append(f'<table class="headline"><tbody>{rows}</tbody></table>')
    parts.append('<div class="clear"></div>')
    parts.append('<p class="note">Closed trades only in the ratios; a winner nets more than zero after '
                 "commissions. Open trades are valued at their last fill price. Sharpe and Sortino use "
                 "the days with at least one close, return = that day's net P&amp;L / capital, × √252.</p>")
    encoded = base64.b64encode(chart_png).decode("ascii")
    parts.append("<h2>Equity and drawdown</h2>")
    parts.append(f'<img class="chart" id="chart" alt="Equity curve and drawdown" width="1100" height="650" '
                 f'src="data:image/png;base64,{encoded}">')
    head = ("", "Trades", "Win rate", "Net P&L", "Expectancy")
    parts.append("<h2>By symbol</h2>")
    parts.append(_table(("Symbol", *head[1:]), _breakdown_rows(m.by_symbol, NONE), table_id="by-symbol"))
    parts.append("<h2>By rule</h2>")
    parts.append(_table(("Rule", *head[1:]), _breakdown_rows(m.by_rule, "(no rule: manual or external)"),
                        table_id="by-rule"))
    rows, note = _trade_rows(trades, zone)
    parts.append("<h2>Trades</h2>")
    if note:
        parts.append(f'<p class="note" id="trades-note">{escape(note)}</p>')
    parts.append(_table(("#", "Symbol", "Side", "Opened", "Closed", "Qty", "Entry", "Exit", "Gross",
                         "Comm.", "Net", "R", "Rule", "Fills"), rows, left=(1, 2, 3, 4, 12), table_id="trades"))
    parts.append("</body></html>")
    return "\n".join(p for p in parts if p)
