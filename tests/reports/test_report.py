"""Tests for `bootstrap.py report`: the journal join, the page's numbers, --since, errors, scale, a real browser."""

from __future__ import annotations

import base64
import io
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from html.parser import HTMLParser
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from matplotlib import image as mimage

import bootstrap
from core.analytics import Fill, Metrics, Trade, metrics, round_trips
from core.orders import OrderStatus
from core.types import OrderType, Side
from journal.store import ExecRow, IntentRow, Journal, OrderRow
from reports import html as page
from reports.report import Progress, Report, build, parse_since

D = Decimal
NY = ZoneInfo("America/New_York")
REPO = Path(__file__).resolve().parents[2]
BOOTSTRAP = REPO / "bootstrap.py"


def _ts(when: str) -> int:
    return int(datetime.fromisoformat(when).replace(tzinfo=NY).timestamp()) * 10**9


@dataclass(frozen=True)
class Leg:
    leg: str
    side: str
    qty: int | str
    price: str
    when: str
    commission: str = "1"


@dataclass(frozen=True)
class Group:
    group_id: str
    symbol: str
    rule: str
    stop: str | None
    legs: tuple[Leg, ...]


def _journal(path: Path, groups: Sequence[Group], *, external: Sequence[tuple[str, Leg]] = ()) -> Path:
    """Journal each group as the system would: intent (decided, sent), one order row per leg, its fills."""
    with Journal.open(path) as j, j.batch():
        n = 0
        for g in groups:
            first = g.legs[0]
            ts = _ts(first.when)
            j.record_intent(IntentRow(intent_id=g.group_id, ts_ns=ts, symbol=g.symbol, side=Side(first.side),
                                      quantity=D(first.qty), order_type=OrderType.MKT, rule=g.rule,
                                      stop_loss=None if g.stop is None else D(g.stop), kind="BRACKET",
                                      legs=len({leg.leg for leg in g.legs})))
            j.decide_intent(g.group_id, decision="APPROVED", ts_ns=ts)
            j.resolve_intent(g.group_id, resolution="SENT", reason="placed", ts_ns=ts)
            for leg in g.legs:
                n += 1
                ref = f"{g.group_id}:{leg.leg}"
                j.upsert_order(OrderRow(ref=ref, group_id=g.group_id, symbol=g.symbol, side=Side(leg.side),
                                        quantity=D(leg.qty), order_type=OrderType.MKT, broker_id=100 + n,
                                        status=OrderStatus.FILLED, filled=D(leg.qty), avg_fill_price=D(leg.price),
                                        first_ts_ns=_ts(leg.when), updated_ns=_ts(leg.when)))
                j.record_execution(ExecRow(exec_id=f"{n:04d}.01", ref=ref, order_id=100 + n, symbol=g.symbol,
                                           side=Side(leg.side), quantity=D(leg.qty), price=D(leg.price),
                                           ts_ns=_ts(leg.when)))
                # the commission report arrives after the fill
                j.record_commission(f"{n:04d}.01", commission=D(leg.commission), realized_pnl=None,
                                    ts_ns=_ts(leg.when) + 1)
        for symbol, leg in external:
            n += 1
            j.record_execution(ExecRow(exec_id=f"{n:04d}.01", ref="", order_id=0, symbol=symbol,
                                       side=Side(leg.side), quantity=D(leg.qty), price=D(leg.price),
                                       ts_ns=_ts(leg.when), commission=D(leg.commission)))
    return path


# The trade list of tests/core/test_analytics.py, journaled: 4 closed trades, 1 open.
GROUPS = (
    Group("AAPL-1-1", "AAPL", "breakout", "98", (
        Leg("entry", "BUY", 100, "100", "2024-03-04 10:00"), Leg("target", "SELL", 100, "103", "2024-03-04 11:00"))),
    Group("MSFT-1-1", "MSFT", "fade", "205", (
        Leg("entry", "SELL", 50, "200", "2024-03-04 10:30"), Leg("stop", "BUY", 50, "204", "2024-03-04 14:00"))),
    Group("AAPL-1-2", "AAPL", "pullback", "100", (
        Leg("entry", "BUY", 60, "102", "2024-03-05 10:00"), Leg("entry", "BUY", 40, "104.5", "2024-03-05 10:15"),
        Leg("target", "SELL", 50, "101", "2024-03-05 11:00"), Leg("stop", "SELL", 50, "100", "2024-03-05 12:00"))),
    Group("AAPL-1-3", "AAPL", "fade", "110", (Leg("entry", "SELL", 30, "105", "2024-03-06 13:00"),)),
)
# MSFT bought by hand in TWS and sold by hand: external fills, no group, no rule, no stop
EXTERNAL = (("MSFT", Leg("", "BUY", 20, "210", "2024-03-06 09:45")),
            ("MSFT", Leg("", "SELL", 20, "215", "2024-03-06 15:00")))


def _expected_fills(groups: Sequence[Group], external: Sequence[tuple[str, Leg]] = ()) -> list[Fill]:
    fills = [Fill(exec_id=leg.when + g.group_id + str(i), symbol=g.symbol, side=Side(leg.side), quantity=D(leg.qty),
                  price=D(leg.price), commission=D(leg.commission), ts_ns=_ts(leg.when), group_id=g.group_id,
                  rule=g.rule, stop=None if g.stop is None else D(g.stop))
             for g in groups for i, leg in enumerate(g.legs)]
    fills += [Fill(exec_id=f"x{i}", symbol=s, side=Side(leg.side), quantity=D(leg.qty), price=D(leg.price),
                   commission=D(leg.commission), ts_ns=_ts(leg.when)) for i, (s, leg) in enumerate(external)]
    return sorted(fills, key=lambda f: f.ts_ns)


class _Page(HTMLParser):
    """The cells of every table with an id, and the text of every element with an id."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self.rows: dict[str, list[str]] = {}
        self.ids: dict[str, str] = {}
        self.images: list[str] = []
        self._table = ""
        self._row: list[str] | None = None
        self._row_id = ""
        self._cell: list[str] | None = None
        self._open_ids: list[tuple[str, str, list[str]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "img":
            self.images.append(a.get("src") or "")
        if tag == "table" and a.get("id"):
            self._table = a["id"] or ""
            self.tables[self._table] = []
        elif tag == "tr":
            self._row = []
            self._row_id = a.get("id") or ""
        elif tag == "td" and self._row is not None:
            self._cell = []
        if a.get("id") and tag != "table":
            self._open_ids.append((tag, a["id"] or "", []))

    def handle_endtag(self, tag: str) -> None:
        if tag == "td" and self._cell is not None and self._row is not None:
            self._row.append("".join(self._cell))
            self._cell = None
        elif tag == "tr" and self._row is not None:
            if self._row and self._table:
                self.tables[self._table].append(self._row)
            if self._row_id:
                self.rows[self._row_id] = self._row
            self._row = None
        elif tag == "table":
            self._table = ""
        if self._open_ids and self._open_ids[-1][0] == tag:
            _, ident, text = self._open_ids.pop()
            self.ids[ident] = "".join(text)

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)
        for _, _, text in self._open_ids:
            text.append(data)


def _parse(path: Path) -> _Page:
    p = _Page()
    p.feed(path.read_text(encoding="utf-8"))
    return p


def _headline(p: _Page) -> dict[str, str]:
    """Return metric id → the text of its value cell."""
    return {key[2:]: cells[0] for key, cells in p.rows.items() if key.startswith("m-")}


def _expected_headline(m: Metrics) -> dict[str, str]:
    return {key: text for key, _, text, _ in page._headline(m)}


def _check_trades_table(p: _Page, trades: Sequence[Trade]) -> None:
    rows = p.tables["trades"]
    assert len(rows) == len(trades)
    for row, t in zip(rows, trades, strict=True):
        assert row[1:3] == [t.symbol, t.side.value]
        assert row[8] == page.money(t.gross_pnl) and row[10] == page.money(t.net_pnl)
        assert row[11] == (page.NONE if t.r_multiple is None else f"{t.r_multiple:,.2f}")
        assert row[12] == (t.rule or page.NONE)


def _self_contained(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    assert "<script" not in text.lower() and "<link" not in text.lower()
    assert not re.search(r"https?://", text), "the page must not reach any URL"
    srcs = re.findall(r'src="([^"]*)"', text)
    assert srcs and all(s.startswith("data:image/png;base64,") for s in srcs)


# ---------------------------------------------------------------- the page's numbers


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Report:
    root = tmp_path_factory.mktemp("small")
    path = _journal(root / "journal.sqlite", GROUPS, external=EXTERNAL)
    return build(path, out_dir=root / "out", zone=NY, capital=D(10_000))


def test_report_joins_each_fill_to_its_intents_rule_and_stop(small: Report) -> None:
    expected = round_trips(_expected_fills(GROUPS, EXTERNAL))
    got = [(t.symbol, t.side, t.rule, t.stop, t.r_multiple, t.net_pnl, t.fills) for t in small.trades]
    assert got == [(t.symbol, t.side, t.rule, t.stop, t.r_multiple, t.net_pnl, t.fills) for t in expected]
    # the manual MSFT round trip has neither rule nor stop; the open AAPL short is the fade's
    assert [(t.rule, t.is_open) for t in small.trades] == [
        ("breakout", False), ("fade", False), ("pullback", False), ("", False), ("fade", True)]


def test_report_page_numbers_match_core_analytics(small: Report) -> None:
    expected = metrics(round_trips(_expected_fills(GROUPS, EXTERNAL)), capital=D(10_000), zone=NY)
    p = _parse(small.html)
    shown = _headline(p)
    assert shown == _expected_headline(expected)
    # as computed by hand in tests/core/test_analytics.py; the open short is valued at its fill price
    assert shown["net_pnl"] == "-61.00"          # −50 realized − 11 commissions + 0 unrealized
    assert shown["commissions"] == "11.00"
    assert (shown["trades"], shown["open_trades"], shown["win_rate"]) == ("4", "1", "50.00%")
    assert (shown["profit_factor"], shown["expectancy"], shown["avg_r"]) == ("0.87", "-15.00", "-0.05")
    assert (shown["max_drawdown"], shown["max_drawdown_pct"]) == ("456.00", "4.43%")
    assert (shown["sharpe"], shown["sortino"]) == ("-1.57", "-2.16")
    assert shown["max_drawdown_duration"] == "2d 4h 0m"
    assert shown["exposure"] == "21.23%"
    assert p.tables["by-symbol"] == [["AAPL", "2", "50.00%", "44.00", "22.00"],
                                     ["MSFT", "2", "50.00%", "-104.00", "-52.00"]]
    assert [row[0] for row in p.tables["by-rule"]] == ["(no rule: manual or external)", "breakout", "fade",
                                                       "pullback"]
    _check_trades_table(p, small.trades)


def test_report_page_is_self_contained_and_embeds_the_chart_file(small: Report) -> None:
    _self_contained(small.html)
    png = small.png.read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    (src,) = _parse(small.html).images
    assert base64.b64decode(src.split(",", 1)[1]) == png


def test_report_since_keeps_trades_opened_that_day_and_skips_a_carried_position(tmp_path: Path) -> None:
    groups = (
        Group("AAPL-1-1", "AAPL", "a", "9", (Leg("entry", "BUY", 10, "10", "2024-03-04 10:00"),
                                             Leg("exit", "SELL", 10, "11", "2024-03-04 11:00"))),
        # opened the day before --since and closed on it: carried in, left out
        Group("MSFT-1-1", "MSFT", "b", "21", (Leg("entry", "SELL", 5, "20", "2024-03-04 15:00"),
                                              Leg("exit", "BUY", 5, "19", "2024-03-05 10:00"))),
        Group("AAPL-1-2", "AAPL", "a", "9", (Leg("entry", "BUY", 10, "10", "2024-03-05 10:30"),
                                             Leg("exit", "SELL", 10, "9", "2024-03-05 11:00"))),
        Group("AAPL-1-3", "AAPL", "c", None, (Leg("entry", "SELL", 10, "12", "2024-03-06 10:00"),
                                              Leg("exit", "BUY", 10, "11", "2024-03-06 11:00"))),
    )
    path = _journal(tmp_path / "journal.sqlite", groups)
    report = build(path, out_dir=tmp_path / "out", zone=NY, capital=D(1_000), since=date(2024, 3, 5))
    # the MSFT buy-back is not taken for a new long trade
    assert [(t.symbol, t.side.value, t.rule) for t in report.trades] == [("AAPL", "LONG", "a"), ("AAPL", "SHORT", "c")]
    assert (report.carried, report.fills) == (1, 5)
    expected = metrics(round_trips(_expected_fills(groups[2:])), capital=D(1_000), zone=NY)
    p = _parse(report.html)
    assert _headline(p) == _expected_headline(expected)
    assert _headline(p)["net_pnl"] == "-4.00"   # −10 − 2 + 10 − 2
    assert "1 trade(s) opened before 2024-03-05" in p.ids["carried"]
    _check_trades_table(p, report.trades)


def test_report_of_a_journal_without_fills_says_so(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite"
    Journal.open(path).close()
    report = build(path, out_dir=tmp_path / "out", zone=NY)
    p = _parse(report.html)
    assert "No trades" in p.ids["no-trades"]
    assert (report.trades, _headline(p)["trades"], p.tables["trades"]) == ((), "0", [])
    assert report.png.read_bytes().startswith(b"\x89PNG")


def test_progress_rewrites_one_line_every_tenth_and_only_for_many_items() -> None:
    out = io.StringIO()
    progress = Progress(out, min_items=50)
    assert list(progress.over("joining", range(49))) == list(range(49))
    assert out.getvalue() == ""
    assert list(progress.over("joining", range(100))) == list(range(100))
    assert out.getvalue() == "".join(f"\rjoining {p:3d}%" for p in range(0, 100, 10)) + "\rjoining 100%\n"
    assert list(Progress(None, min_items=1).over("x", [1, 2])) == [1, 2]


@pytest.mark.parametrize("text", ["2024-13-01", "yesterday", "2024-3-5", "20240305", ""])
def test_parse_since_rejects_anything_but_a_calendar_date(text: str) -> None:
    from reports.report import ReportError
    with pytest.raises(ReportError, match="YYYY-MM-DD"):
        parse_since(text)


@pytest.mark.parametrize(("args", "message"), [
    (["--since", "2024-02-30"], "--since '2024-02-30' is not a date"),
    (["--since", ""], "--since '' is not a date"),
    (["--capital", "-5"], "--capital '-5' is not a positive amount"),
    (["--capital", "lots"], "--capital 'lots' is not a positive amount"),
])
def test_report_command_with_bad_argument_exits_2_and_writes_nothing(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str) -> None:
    path = _journal(tmp_path / "journal.sqlite", GROUPS[:1])
    out = tmp_path / "out"
    assert bootstrap.main(["report", "--journal", str(path), "--out", str(out), *args]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_report_command_without_journal_exits_2_saying_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "state" / "journal.sqlite"
    assert bootstrap.main(["report", "--journal", str(missing), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert f"no journal at {missing}" in err and "--journal PATH" in err
    assert not missing.exists()


def test_report_command_on_a_foreign_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bogus = tmp_path / "journal.sqlite"
    bogus.write_text("not a database")
    assert bootstrap.main(["report", "--journal", str(bogus), "--out", str(tmp_path / "out")]) == 2
    assert "cannot read the journal" in capsys.readouterr().err


def test_report_subprocess_writes_under_var_reports_and_prints_the_path(tmp_path: Path) -> None:
    path = _journal(tmp_path / "journal.sqlite", GROUPS, external=EXTERNAL)
    run = subprocess.run([sys.executable, str(BOOTSTRAP), "report", "--journal", str(path), "--capital", "10000",
                          "--since", "2024-03-05"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    written = re.search(r"report written to (\S+)", run.stdout)
    assert written, run.stdout
    html_path = tmp_path / written.group(1)
    assert html_path.parent.parent == tmp_path / "var" / "reports"
    assert re.fullmatch(r"\d{8}-\d{6}", html_path.parent.name)
    assert (html_path.parent / "equity.png").is_file()
    # from 03-05 on: the pullback (−254), the manual MSFT (+98) and the open fade short
    expected = metrics(round_trips([f for f in _expected_fills(GROUPS, EXTERNAL) if f.ts_ns >= _ts("2024-03-05 00:00")]),
                       capital=D(10_000), zone=NY)
    assert (expected.trades, expected.open_trades) == (2, 1)
    assert _headline(_parse(html_path)) == _expected_headline(expected)
    assert "2 closed and 1 open trade(s) from 7 fills" in run.stdout
    assert run.stderr == ""   # a small journal shows no progress


# ---------------------------------------------------------------- scale


def test_report_of_100k_trades_takes_under_10_seconds_with_progress(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite"
    symbols = ("AAPL", "MSFT", "SPY")
    rules = ("breakout", "fade", "pullback", "atr_bracket")
    base = _ts("2024-01-02 09:30")
    with Journal.open(path, synchronous="NORMAL") as j, j.batch():
        for i in range(100_000):
            sym = symbols[i % 3]
            group = f"{sym}-1-{i}"
            entry = D(100 + i % 37)
            exit_ = entry + D((i * 7919) % 41 - 20) / 10     # −2.00 … +2.00
            side, back = (Side.BUY, Side.SELL) if i % 2 else (Side.SELL, Side.BUY)
            ts = base + i * 300 * 10**9                      # one trade every 5 minutes, around the clock
            j.record_intent(IntentRow(intent_id=group, ts_ns=ts, symbol=sym, side=side, quantity=D(100),
                                      order_type=OrderType.MKT, rule=rules[i % 4], stop_loss=entry - side.sign))
            j.record_execution(ExecRow(exec_id=f"{i}.1", ref=f"{group}:entry", order_id=2 * i, symbol=sym,
                                       side=side, quantity=D(100), price=entry, ts_ns=ts, commission=D(1)))
            j.record_execution(ExecRow(exec_id=f"{i}.2", ref=f"{group}:exit", order_id=2 * i + 1, symbol=sym,
                                       side=back, quantity=D(100), price=exit_, ts_ns=ts + 120 * 10**9,
                                       commission=D(1)))
    out = tmp_path / "out"
    start = time.monotonic()
    run = subprocess.run([sys.executable, str(BOOTSTRAP), "report", "--journal", str(path), "--out", str(out),
                          "--capital", "1000000"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    elapsed = time.monotonic() - start
    print(f"report of 100,000 trades: {elapsed:.2f} s")
    assert run.returncode == 0, run.stderr
    assert elapsed < 10.0, f"the report of 100,000 trades took {elapsed:.1f} s"
    assert "100,000 closed and 0 open trade(s) from 200,000 fills" in run.stdout
    # progress: each phase counts up in tenths on one line
    assert "building round trips  50%" in run.stderr and "building round trips 100%" in run.stderr
    assert "reading fills and intents" in run.stderr and "drawing the chart" in run.stderr
    p = _parse(out / "report.html")
    assert "the first 500 and the last 500 are listed, 99,000 in between" in p.ids["trades-note"]
    rows = p.tables["trades"]
    assert len(rows) == 1001 and rows[0][0] == "1" and rows[-1][0] == "100000" and "not shown" in rows[500][0]
    assert _headline(p)["trades"] == "100,000"
    assert [row[1] for row in p.tables["by-symbol"]] == ["33,334", "33,333", "33,333"]  # AAPL takes i % 3 == 0


# ---------------------------------------------------------------- a real browser

# the chart's colours (reports/chart.py): the equity line, and the drawdown fill at alpha 0.45 on white
_EQUITY_RGB = np.array([0x1F, 0x5F, 0x99]) / 255
_FILL_RGB = (1 - 0.45) * 1.0 + 0.45 * np.array([0xB0, 0x3A, 0x2E]) / 255


def test_report_page_renders_its_chart_in_headless_chromium(small: Report, tmp_path: Path) -> None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.fail("chromium is not installed: `apt-get install -y chromium` (the page must be checked in a "
                    "real browser; this test never skips)")
    shot = tmp_path / "shot.png"
    run = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                          "--disable-background-networking", "--disable-component-update", "--disable-sync",
                          "--enable-logging=stderr", "--v=0",  # the page's console messages, as ":CONSOLE" lines
                          f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1280,2400",
                          f"--screenshot={shot}", small.html.resolve().as_uri()],
                         capture_output=True, text=True, timeout=90)
    assert shot.is_file(), f"chromium wrote no screenshot (exit {run.returncode}): {run.stderr[-2000:]}"
    assert shot.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    # opened without errors: the page wrote nothing to the browser's console (a script error or a
    # blocked resource would be logged there)
    console = [line for line in run.stderr.splitlines() if ":CONSOLE" in line]
    assert not console, f"the page logged to the browser's console: {console}"
    pixels = mimage.imread(str(shot))[:, :, :3]
    assert pixels.shape[:2] == (2400, 1280)
    near_line = np.all(np.abs(pixels - _EQUITY_RGB) < 0.06, axis=2)
    near_fill = np.all(np.abs(pixels - _FILL_RGB) < 0.06, axis=2)
    # a broken image shows its alt text instead: none of the chart's colours anywhere
    assert near_line.sum() > 300, f"no equity line on the page ({near_line.sum()} px)"
    assert near_fill.sum() > 2_000, f"no drawdown area on the page ({near_fill.sum()} px)"
    rows, cols = np.nonzero(near_line)
    # the chart region (the equity line's bounding box) is wide and mostly not white
    assert cols.max() - cols.min() > 500
    region = pixels[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
    assert np.any(region < 0.95, axis=2).mean() > 0.01
