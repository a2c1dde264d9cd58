"""Acceptance (issue 8): a backtest and a live run on the simulator, on the same bars and signals with the same rules, trade alike.

The data: 35 seeded one-minute demo bars of AAPL and MSFT (core.demo_data, seed 3), traded by a
moving-average cross (SMA 2 over SMA 5) with ATR brackets, and by prediction signals (SIGNALS:
a SHORT one opens a short bracket, one against the position closes it): in 35 bars they open
long and short positions and close them by a reversing signal, by the stop and by
the target.

The signals reach both runs between two bars: the backtest replays its file with each signal
stamped SIGNAL_LEAD_S before its bar's data time (after the last quote of the bar before, which
stays open until the next quote); the live run appends each one, stamped with the wall clock, to
the file its signal source follows, in a wall-clock second with no quote, and waits until the
symbol actor judged it and the system settled.

The backtest runs `bootstrap.py backtest` over the minute bars. The live run is the whole
multiprocess system against the simulator replaying the same rows one second apart (one
minute of data = one second of market time, a x60 replay): at the replay's fixed 250 ms quote
interval each bar is four quotes, the open, the low and the high (or the high and the low), the
close, priced exactly as the backtest feed prices its four (core/backtest_feed.py follows the
simulator's replay path).

How the live run is paced. A live symbol builds bars from the wall-clock time its quotes arrive
(bar_seconds = 1), so each data bar must reach it within one wall-clock second, and the next
bar in a later one. An accelerated simulator clock cannot promise that (its phase against the
wall-clock seconds is arbitrary, and nothing waits for a slow decision), so the simulator runs
on its stepped clock: at the start of each wall-clock
second the test steps the bar's four quotes one by one, and after each quote waits until the
system has settled on it: every symbol actor handled the quote (no quote coalesced away), any
order it decided on reached the simulator, entries are filled there, the actor's working
groups are the ones live at the broker, and its position is the broker's. A decision therefore
meets the very quote the backtest's decision met. The test fails rather than split a bar if
that takes too long. After the last bar, one more quote at its close ends it, as the backtest
feed's closing quote does.

The tolerance is zero. Both brokers are core.matching fed the same quotes: a market order
fills at the touch of the quote current when it arrives (buy at the ask, sell at the bid), a
stop triggers on the first quote whose last or touch crosses it and then fills at that touch,
a limit fills on the first marketable quote at the touch (never worse than its limit). The
book size (500 a side) exceeds every order (at most 200), so nothing fills partially. The same
order meeting the same quote fills at the same price, with the same commission (IB fixed
pricing, the same CommissionModel in both). Only an order that met a different quote could
differ, which the pacing rules out, so prices are compared for equality.
"""

from __future__ import annotations

import math
import re
import subprocess
import sys
import time
import json
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Final

import pytest
from thespian.actors import ActorAddress

from core.analytics import round_trips
from core.demo_data import demo_rows
from core.matching import PENDING_SUBMIT
from core.rules import moving_average_cross
from journal.store import Journal
from reports.report import group_of, load_fills
from tests.e2e.harness import LOOSE_RISK, System, SymbolSpec, wait_for

pytestmark = pytest.mark.timeout(180)
ROOT = Path(__file__).resolve().parents[2]

SYMBOLS = ("AAPL", "MSFT")
BARS = 35
SEED = 3
POINTS = 4                 # quotes per bar, in the backtest feed and in the replay
STEP_S = 0.25              # market seconds between replayed quotes: a 1 s bar / 4
LATEST_STEP_S = 0.9        # a quote stepped later in its wall-clock second might land in the next
RULES = {
    **moving_average_cross(fast=2, slow=5, atr_period=3, stop_atr=1, target_atr=1.5, risk=100, max_quantity=200),
    # Prediction signals: a SHORT one opens a short bracket, one against the position closes it. No
    # cooldowns: a live bar is a wall-clock second, a backtest's a minute of market time.
    "signal_reversal": {"on": "signal", "priority": 100, "final": True,
                        "when": "(position.long and signal.short) or (position.short and signal.long)",
                        "action": {"type": "close_position"}},
    "signal_short": {"on": "signal", "priority": 50,
                     "when": "signal.short and signal.confidence >= 0.6 and position.flat "
                             "and not position.entry_working",
                     "action": {"type": "open_bracket", "side": "sell", "atr_period": 3, "stop_atr": 1,
                                "target_atr": 1.5, "risk": 100, "max_quantity": 200}},
}
# (bar index, direction) per symbol: each comes after that bar's predecessor had all its quotes
# and before its own first quote (the predecessor still open: bars close on the next quote).
SIGNALS: Final = {"AAPL": ((9, "SHORT"), (11, "LONG"), (21, "SHORT"), (30, "LONG")),
                  "MSFT": ((9, "SHORT"), (12, "LONG"), (13, "SHORT"), (27, "SHORT"))}
SIGNAL_LEAD_S: Final = 5  # in the backtest: this long before the bar (its predecessor's last quote is 15 s before)
BAR_LINE = re.compile(r" bar (\d+) O (\S+) H (\S+) L (\S+) C (\S+) V (\S+)$")
HEADER = "timestamp,open,high,low,close,volume\n"

Row = tuple[int, str, str, str, str, int]


# ---------------------------------------------------------------- inputs


def _rows(symbol: str) -> list[Row]:
    return list(demo_rows(symbol, days=1, seed=SEED))[:BARS]


def _write_csv(path: Path, rows: Sequence[Row]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(HEADER + "".join(",".join(map(str, r)) + "\n" for r in rows), encoding="ascii")


def _replay_rows(rows: Sequence[Row]) -> list[Row]:
    """Return the rows one second apart, then a flat bar at the last close (its first quote ends the last bar)."""
    first = rows[0][0]
    out: list[Row] = [(first + i, o, h, lo, c, v) for i, (_, o, h, lo, c, v) in enumerate(rows)]
    close = rows[-1][4]
    out.append((first + len(rows), close, close, close, close, 0))
    return out


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"no TOML for {value!r}")


def _signal_line(symbol: str, bar: int, direction: str, ts: float) -> str:
    return json.dumps({"id": f"{symbol}-{bar}", "symbol": symbol, "direction": direction, "confidence": 0.9,
                       "ts": ts}) + "\n"


def _backtest_signals(path: Path) -> Path:
    """Write the signals file of the backtest: each signal SIGNAL_LEAD_S before its bar's data time."""
    lines = sorted((ts, _signal_line(symbol, bar, direction, ts))
                   for symbol, signals in SIGNALS.items() for bar, direction in signals
                   for ts in (_rows(symbol)[bar][0] - SIGNAL_LEAD_S,))
    path.write_text("".join(line for _, line in lines), encoding="utf-8")
    return path


def _backtest_config(path: Path) -> Path:
    """Write the live run's trading settings (symbols, rules, risk) as a config file for the backtest."""
    lines = ['[system]', 'log_level = "DEBUG"']
    lines += [f"[symbols.{s}]" for s in SYMBOLS]
    lines += ["[risk]", *(f"{k} = {_toml(v)}" for k, v in LOOSE_RISK.items())]
    for name, table in RULES.items():
        lines += [f"[rules.{name}]", *(f"{k} = {_toml(v)}" for k, v in table.items())]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


# ---------------------------------------------------------------- the live run


class _Pacer:
    """Steps the simulator one quote at a time and waits until the system has settled on each."""

    def __init__(self, system: System) -> None:
        self.system = system
        self.actors: dict[str, ActorAddress] = {s: system.address("symbols", s) for s in SYMBOLS}
        self.quotes = 0  # quotes stepped per symbol
        self.signals: dict[str, int] = {}  # signals written per symbol
        self.slowest = 0.0

    def signal(self, feed: Path, lines: Sequence[tuple[str, int, str]]) -> None:
        """Write (symbol, bar, direction) signals in a wall-clock second of their own, stamped now."""
        _next_second()  # no quote in this second: the open bar stays open until the next one's
        with feed.open("a", encoding="utf-8") as out:
            for symbol, bar, direction in lines:
                out.write(_signal_line(symbol, bar, direction, time.time()))
                self.signals[symbol] = self.signals.get(symbol, 0) + 1
        wait_for(self._settled, 10, f"the system to settle on the signals of bar {lines[0][1]}", interval=0.003)

    def quote(self, seconds: float) -> None:
        start = time.monotonic()
        assert self.system.step(seconds) == len(SYMBOLS), "one quote per symbol per step"
        self.quotes += 1
        wait_for(self._settled, 10, f"the system to settle on quote {self.quotes}", interval=0.003)
        self.slowest = max(self.slowest, time.monotonic() - start)

    def bar(self, first: bool = False) -> None:
        """Step one bar's quotes within the next wall-clock second."""
        second = _next_second()
        for k in range(POINTS):
            late = time.time() - second
            assert late < LATEST_STEP_S, (
                f"quote {k + 1} of bar {self.quotes // POINTS + 1} would be stepped {late:.3f} s into its "
                f"wall-clock second: the system did not keep up (slowest settle {self.slowest:.3f} s)")
            self.quote(0 if first and k == 0 else STEP_S)

    def _settled(self) -> bool:
        symbols: dict[str, str] = {}
        for symbol, address in self.actors.items():
            status = self.system.actor_status(address)
            counters = dict(status.counters)
            if counters.get("quotes_processed", 0) < self.quotes or \
                    counters.get("signals_processed", 0) < self.signals.get(symbol, 0):
                return False
            symbols[symbol] = status.detail
        orders = self.system.broker_orders().values()
        positions = self.system.sim.snapshot()["positions"]
        for symbol, detail in symbols.items():
            held, groups, exiting = _symbol_detail(detail)
            if exiting or held != Decimal(positions.get(symbol, "0")):
                return False
            mine = [o for o in orders if o.symbol == symbol]
            if groups != {group_of(o.order_ref) for o in mine if not o.done}:
                return False
            # Held legs wait for their transmitting sibling; an entry not filled is still on its way.
            if any(o.status == PENDING_SUBMIT or (o.order_ref.endswith(":entry") and not o.done) for o in mine):
                return False
        return True


def _next_second() -> int:
    """Wait until just after the next wall-clock second begins; return that second."""
    second = math.floor(time.time()) + 1
    wait_for(lambda: time.time() >= second + 0.01, 2, "the next wall-clock second", interval=0.002)
    return second


def _symbol_detail(detail: str) -> tuple[Decimal, set[str], bool]:
    """Return a symbol actor's position quantity, working group ids and whether an exit is pending."""
    found = re.match(r"position \S+ (\S+); working groups: ([^;]*);", detail)
    assert found is not None, f"a symbol's status detail changed its shape: {detail!r}"
    working = found.group(2)
    groups = set() if working == "none" else {w.split()[0] for w in working.split(", ")}
    return Decimal(found.group(1)), groups, "exit pending" in detail


def _live(launch: Callable[..., System], tmp_path: Path) -> tuple[Path, Path, float]:
    """Trade the replayed bars live; return the journal, the log directory and the slowest settle (s)."""
    specs = []
    for symbol in SYMBOLS:
        path = tmp_path / "replay" / f"{symbol}.csv"
        _write_csv(path, _replay_rows(_rows(symbol)))
        specs.append(SymbolSpec(symbol=symbol, bars_csv=str(path)))
    feed = tmp_path / "signals.jsonl"
    feed.touch()
    system = launch(tuple(specs), bar_seconds=1, rules=RULES,
                    signals={"source": "file", "max_age_s": 60.0, "file": {"path": str(feed), "follow": True}})
    wait_for(lambda: system.sim.call(lambda: sorted(
        sym for s in system.sim.sim.sessions for sym in s.mkt.values())) == sorted(SYMBOLS),
        10, "the system's market data subscriptions")
    pacer = _Pacer(system)
    due = {bar: [(symbol, bar, direction) for symbol, signals in SIGNALS.items()
                 for b, direction in signals if b == bar] for bar in range(BARS)}
    for n in range(BARS):
        if due[n]:
            pacer.signal(feed, due[n])
        pacer.bar(first=n == 0)
    _next_second()
    pacer.quote(STEP_S)  # the flat bar's first quote closes the last bar
    system.close()
    return system.config.journal_path, system.log_dir, pacer.slowest


# ---------------------------------------------------------------- reading the journals and logs


def _executions(journal: Path) -> dict[str, list[tuple[str, str, Decimal, Decimal, Decimal]]]:
    with Journal.open(journal, readonly=True) as j:
        rows = j.executions()
    out: dict[str, list[tuple[str, str, Decimal, Decimal, Decimal]]] = {}
    for r in rows:
        out.setdefault(r.symbol, []).append((r.ref, r.side.value, r.quantity, r.price, r.commission))
    return out


def _intents(journal: Path) -> list[tuple[str, str, str]]:
    """Return (group id, rule, signal id) of every order intent."""
    with Journal.open(journal, readonly=True) as j:
        return [(i.intent_id, i.rule, i.signal_id) for i in j.intents()]


def _signals(journal: Path) -> set[str]:
    """Return the ids of the signals the journal shows accepted."""
    with Journal.open(journal, readonly=True) as j:
        return {r.signal_id for r in j.recent_signals(limit=1000) if r.accepted}


def _trades(journal: Path) -> list[tuple[object, ...]]:
    with Journal.open(journal, readonly=True) as j:
        fills = load_fills(j)
    trades = round_trips(sorted(fills, key=lambda f: (f.symbol, f.ts_ns)))
    return [(t.symbol, t.side.value, t.quantity, t.entry_price, t.exit_price, t.net_pnl, t.rule, t.fills)
            for t in trades]


def _bars(log_dir: Path, symbol: str) -> list[tuple[Decimal, ...]]:
    """Return (O, H, L, C, V) of every bar the symbol's actor closed, from its log."""
    text = (log_dir / "symbols" / f"{symbol}.log").read_text(encoding="utf-8")
    return [tuple(map(Decimal, m.groups()[1:])) for m in map(BAR_LINE.search, text.splitlines()) if m]


# ---------------------------------------------------------------- the test


def test_backtest_and_live_run_on_the_same_bars_and_signals_make_the_same_trades_at_the_same_prices(
        launch: Callable[..., System], tmp_path: Path) -> None:
    data = tmp_path / "data"
    for symbol in SYMBOLS:
        _write_csv(data / f"{symbol}.csv", _rows(symbol))
    out = tmp_path / "backtest"
    done = subprocess.run([sys.executable, str(ROOT / "bootstrap.py"), "backtest", "--config",
                           str(_backtest_config(tmp_path / "config.toml")), "--data", str(data), "--out", str(out),
                           "--signals", str(_backtest_signals(tmp_path / "backtest-signals.jsonl"))],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    live_journal, live_logs, slowest = _live(launch, tmp_path)

    # The bars: both built exactly the data's bars from their quotes (4 per bar, none coalesced).
    for symbol in SYMBOLS:
        expected = [tuple(map(Decimal, (o, h, lo, c))) for _, o, h, lo, c, _ in _rows(symbol)]
        backtest_bars, live_bars = _bars(out / "logs", symbol), _bars(live_logs, symbol)
        assert [b[:4] for b in backtest_bars] == expected, f"{symbol}: the backtest's bars"
        assert [b[:4] for b in live_bars] == expected, f"{symbol}: the live bars (slowest settle {slowest:.3f} s)"
        assert live_bars == backtest_bars, f"{symbol}: bar volumes"

    # The executions: the same orders (group and leg), sides, quantities, prices and commissions.
    backtest, live = _executions(out / "state" / "journal.sqlite"), _executions(live_journal)
    assert sorted(backtest) == sorted(live) == sorted(SYMBOLS), (sorted(backtest), sorted(live))
    for symbol in SYMBOLS:
        assert live[symbol] == backtest[symbol], symbol
    # Long and short entries, rule exits (a single order at market), stops and targets of both.
    kinds = {(ref.rpartition(":")[2], side) for fills in backtest.values() for ref, side, *_ in fills}
    assert kinds == {(leg, side) for leg in ("entry", "sl", "tp") for side in ("BUY", "SELL")}, kinds
    assert sum(len(f) for f in backtest.values()) >= 12

    # The decisions: the same intents, from the same rules and signals (every signal acted on).
    decided = [sorted(_intents(out / "state" / "journal.sqlite")), sorted(_intents(live_journal))]
    assert decided[0] == decided[1]
    assert {"ma_entry", "signal_short", "signal_reversal"} <= {rule for _, rule, _ in decided[0]}
    judged = [_signals(out / "state" / "journal.sqlite"), _signals(live_journal)]
    assert judged[0] == judged[1] == {f"{symbol}-{bar}" for symbol, signals in SIGNALS.items() for bar, _ in signals}

    # The round trips the report builds from each journal.
    trades = _trades(out / "state" / "journal.sqlite")
    assert _trades(live_journal) == trades
    assert len(trades) >= 6
