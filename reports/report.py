"""`bootstrap.py report`: fills from the journal → round trips → metrics → equity.png and report.html."""

from __future__ import annotations

import gc
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timezone
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Final, TextIO, TypeVar
from zoneinfo import ZoneInfo

from core.analytics import Fill, Metrics, Trade, metrics, round_trips
from core.errors import CoreError
from journal.store import Journal, JournalError

DEFAULT_CAPITAL: Final = Decimal(100_000)
DEFAULT_BASE: Final = Path("var/reports")
PROGRESS_FROM: Final = 20_000  # fills: below this the report takes about a second
PROGRESS_BYTES: Final = 4 << 20  # a journal this large may take a while just to read (~20k fills)
HTML_NAME: Final = "report.html"
PNG_NAME: Final = "equity.png"

T = TypeVar("T")


class ReportError(Exception):
    """The report cannot be made: a bad argument, or no readable journal; the message says what to do."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Report:
    """A written report: where it is and the figures in it."""

    out_dir: Path
    html: Path
    png: Path
    fills: int
    carried: int
    trades: tuple[Trade, ...]
    metrics: Metrics


class Progress:
    """Progress of long work on `stream` (None: silent): phase lines, and percentages rewritten in place."""

    def __init__(self, stream: TextIO | None, *, min_items: int = PROGRESS_FROM) -> None:
        self.stream = stream
        self.min_items = min_items
        self._shown = -1  # the percentage `at` showed last

    def at(self, label: str, done: int, total: int) -> None:
        """Show `label NN% done/total` in place when the percentage moved; end the line at 100 %."""
        percent = done * 100 // max(total, 1)
        if self.stream is None or percent == self._shown:
            return
        self._shown = percent
        self.stream.write(f"\r{label} {percent:3d}% {done:,}/{total:,}" + ("\n" if done >= total else ""))
        self.stream.flush()

    def say(self, text: str) -> None:
        """Write one finished line."""
        if self.stream is not None:
            self.stream.write(f"{text}\n")
            self.stream.flush()

    def over(self, label: str, items: Sequence[T]) -> Iterator[T]:
        """Yield `items`, showing `label NN%` every tenth of them when there are at least `min_items`."""
        total = len(items)
        if self.stream is None or total < self.min_items or total == 0:
            yield from items
            return
        step = max(1, total // 10)
        for i, item in enumerate(items):
            if i % step == 0:
                self.stream.write(f"\r{label} {min(99, i * 100 // total):3d}%")
                self.stream.flush()
            yield item
        self.stream.write(f"\r{label} 100%\n")
        self.stream.flush()


def parse_since(text: str) -> date:
    """Return the date of a YYYY-MM-DD argument; ReportError otherwise."""
    try:
        if len(text) != 10:
            raise ValueError(text)
        return date.fromisoformat(text)
    except ValueError:
        raise ReportError(f"--since {text!r} is not a date: write it as YYYY-MM-DD, e.g. 2024-03-01 "
                          f"(an exchange-time day)") from None


def parse_capital(text: str | Decimal) -> Decimal:
    """Return a positive capital amount; ReportError otherwise."""
    try:
        value = Decimal(str(text).replace("_", "").replace(",", ""))
    except InvalidOperation:
        value = Decimal("NaN")
    if not value.is_finite() or value <= 0:
        raise ReportError(f"--capital {text!r} is not a positive amount: give the account's starting "
                          f"capital, e.g. --capital 100000")
    return value


def group_of(ref: str) -> str:
    """Return the order group of a durable ref ("AAPL-1-3:entry" → "AAPL-1-3"); a ref without a leg is its own."""
    return ref.rpartition(":")[0] or ref


def load_fills(journal: Journal, progress: Progress | None = None) -> list[Fill]:
    """Return every journaled fill in time order, with the rule and protective stop of its group's intent."""
    progress = progress or Progress(None)
    rows = journal.fill_tuples()
    intents = journal.intent_rules()
    fills = []
    for exec_id, ref, symbol, side, quantity, price, commission, ts_ns in progress.over(
            "joining fills to their intents", rows):
        group = group_of(ref)
        rule, stop = intents.get(group, ("", None))
        fills.append(Fill(exec_id=exec_id, symbol=symbol, side=side, quantity=quantity, price=price,
                          commission=commission, ts_ns=ts_ns, group_id=group, rule=rule, stop=stop))
    # Journal order is arrival order: fills the broker reports after a reconnect arrive after
    # later ones. Stable, so fills of one timestamp keep their journal order (and nearly sorted
    # input sorts in linear time).
    fills.sort(key=_ts_of)
    return fills


def _ts_of(fill: Fill) -> int:
    return fill.ts_ns


def default_out_dir(now: datetime, base: Path = DEFAULT_BASE) -> Path:
    """Return base/<UTC date-time> for `now`, with a suffix if that directory already exists."""
    stamp = now.astimezone(timezone.utc).strftime("%Y%m%d-%H%M%S")
    out = base / stamp
    n = 1
    while out.exists():
        n += 1
        out = base / f"{stamp}-{n}"
    return out


def build(journal_path: Path, *, out_dir: Path, zone: ZoneInfo, capital: Decimal = DEFAULT_CAPITAL,
          since: date | None = None, progress: Progress | None = None, capital_note: str = "",
          now: datetime | None = None) -> Report:
    """Read the journal at `journal_path` (read-only) and write equity.png and report.html into `out_dir`.

    With `since`, only the trades opened on or after that exchange day count; earlier fills are
    still replayed so a position carried into the day is not taken for a new trade.
    """
    # Hundreds of thousands of acyclic values are made here: the cyclic collector would walk them
    # again and again (a third of the run) and could free nothing.
    collecting = gc.isenabled()
    gc.disable()
    try:
        return _build(journal_path, out_dir=out_dir, zone=zone, capital=capital, since=since,
                      progress=progress or Progress(None), capital_note=capital_note, now=now)
    finally:
        if collecting:
            gc.enable()


def _build(journal_path: Path, *, out_dir: Path, zone: ZoneInfo, capital: Decimal, since: date | None,
           progress: Progress, capital_note: str, now: datetime | None) -> Report:
    from reports import chart, html  # matplotlib loads only when a report is really drawn

    if not journal_path.is_file():
        raise ReportError(f"no journal at {journal_path}: the system has not run with this "
                          f"configuration yet (or give --journal PATH)")
    if journal_path.stat().st_size >= PROGRESS_BYTES:
        progress.say("reading fills and intents from the journal…")
    try:
        with Journal.open(journal_path, readonly=True) as journal:
            fills = load_fills(journal, progress)
    except JournalError as exc:
        raise ReportError(f"cannot read the journal: {exc}") from exc
    many = len(fills) >= progress.min_items
    try:
        trades = round_trips(progress.over("building round trips", fills))
        carried = 0
        if since is not None:
            start = int(datetime.combine(since, time(), zone).timestamp()) * 1_000_000_000
            kept = tuple(t for t in trades if t.opened_ns >= start)
            carried = sum(1 for t in trades if t.opened_ns < start and (t.is_open or t.closed_ns >= start))
            trades = kept
            fills = [f for f in fills if f.ts_ns >= start]
        if many:
            progress.say("computing metrics…")
        m = metrics(trades, capital=capital, zone=zone)
    except CoreError as exc:
        raise ReportError(f"the journal holds a fill the analytics cannot use: {exc}") from exc
    if many:
        progress.say("drawing the chart…")
    png = chart.draw(m, zone)
    ctx = html.Context(journal=str(journal_path), zone=zone, generated=now or datetime.now(timezone.utc),
                       fills=len(fills), since=since, carried=carried,
                       capital_note=capital_note or f"capital {html.money(capital)}")
    page = html.render(m, trades, png, ctx)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / PNG_NAME).write_bytes(png)
        (out_dir / HTML_NAME).write_text(page, encoding="utf-8")
    except OSError as exc:
        raise ReportError(f"cannot write the report into {out_dir} ({exc}); choose another --out") from exc
    return Report(out_dir=out_dir, html=out_dir / HTML_NAME, png=out_dir / PNG_NAME, fills=len(fills),
                  carried=carried, trades=trades, metrics=m)


def run(*, journal_path: Path, zone: ZoneInfo, since: str | None = None, out: Path | None = None,
        capital: str | None = None, stdout: TextIO | None = None, stderr: TextIO | None = None) -> int:
    """Make a report as the command line asks; return the exit status (0 done, 2 bad argument or no journal)."""
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    try:
        day = parse_since(since) if since is not None else None
        amount = parse_capital(capital) if capital is not None else DEFAULT_CAPITAL
        note = "" if capital is not None else (f"capital {DEFAULT_CAPITAL:,} (the default; "
                                               f"set it with --capital)")
        now = datetime.now(timezone.utc)
        report = build(journal_path, out_dir=out or default_out_dir(now), zone=zone, capital=amount,
                       since=day, progress=Progress(stderr), capital_note=note, now=now)
    except ReportError as exc:
        print(f"report: {exc}", file=stderr)
        return 2
    m = report.metrics
    if report.trades:
        print(f"{m.trades:,} closed and {m.open_trades:,} open trade(s) from {report.fills:,} fills; "
              f"net P&L {m.net_pnl:,.2f}", file=stdout)
    else:
        print("no trades in the journal" + (f" since {day}" if day else "") + ": the report says so",
              file=stdout)
    print(f"report written to {report.html}", file=stdout)
    return 0
