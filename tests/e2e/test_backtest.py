"""Acceptance (issue 8, so far): `bootstrap.py backtest` runs the actors over bar files; same inputs, same journal bytes."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from typing import Any
from pathlib import Path

import pytest

from core.demo_data import write_demo_data
from journal.store import Journal

pytestmark = pytest.mark.timeout(180)
ROOT = Path(__file__).resolve().parents[2]

CONFIG = """
[symbols.AAPL]
[symbols.MSFT]

[risk]
max_order_quantity = 1000
max_order_notional = 1000000
max_position_per_symbol = 1000
max_gross_exposure = 10000000
max_net_exposure = 10000000
max_open_orders = 100
max_orders_per_minute = 600
daily_loss_limit = 1000000
"""

# A moving-average cross traded with ATR brackets (core.rules.moving_average_cross, as TOML).
RULES = """
[rules.ma_exit]
on = "bar"
priority = 10
final = true
when = "position.long and crosses_below(sma(5), sma(20))"
action = { type = "close_position" }

[rules.ma_entry]
on = "bar"
priority = 5
when = "position.flat and position.working_orders == 0 and crosses_above(sma(5), sma(20))"
action = { type = "open_bracket", side = "buy", atr_period = 14, stop_atr = 2, target_atr = 3, risk = 100, max_quantity = 200 }
"""


def _config(tmp_path: Path) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(CONFIG + RULES, encoding="utf-8")
    return path


def _backtest(config: Path, data: Path, out: Path, *extra: str, seed: str = "0") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONHASHSEED": seed}
    return subprocess.run([sys.executable, str(ROOT / "bootstrap.py"), "backtest", "--config", str(config),
                           "--data", str(data), "--out", str(out), *extra],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=150)


def test_two_backtests_of_the_same_inputs_write_the_same_journal_bytes_and_trade(tmp_path: Path) -> None:
    data = tmp_path / "data"
    write_demo_data(data, symbols=("AAPL", "MSFT"), days=1)
    config = _config(tmp_path)
    digests = []
    for n, seed in enumerate(("1", "2")):  # other hash seeds, other output directories
        done = _backtest(config, data, tmp_path / f"out{n}", seed=seed)
        assert done.returncode == 0, done.stderr[-3000:]
        assert "backtest: 780 bars" in done.stdout and "100%" in done.stderr
        assert "no instance to reset" not in done.stderr  # no thespian noise at the end
        journal = tmp_path / f"out{n}" / "state" / "journal.sqlite"
        digests.append(hashlib.sha256(journal.read_bytes()).hexdigest())
        assert (tmp_path / f"out{n}" / "report" / "report.html").exists()
    assert digests[0] == digests[1]
    with Journal.open(tmp_path / "out0" / "state" / "journal.sqlite", readonly=True) as journal:
        fills = journal.executions()
        positions = [state.position for _, state in journal.states("symbol:")]  # type: ignore[attr-defined]
    assert len(fills) >= 4 and {f.symbol for f in fills} == {"AAPL", "MSFT"}  # the rules traded both
    # Each symbol's saved state names no settled fill: the journal's order covers them (a state
    # that kept every exec id would grow, and cost, with every fill of a long backtest).
    assert [p.exec_ids for p in positions] == [frozenset(), frozenset()]
    assert sum(p.exec_floor > 0 for p in positions) == 2


def test_bad_data_stops_the_run_naming_file_and_line_or_is_skipped_and_reported(tmp_path: Path) -> None:
    data = tmp_path / "data"
    (path,) = write_demo_data(data, symbols=("AAPL",), days=1)
    lines = path.read_text(encoding="utf-8").splitlines()
    ts, o, h, lo, c, v = lines[10].split(",")
    lines[10] = ",".join((ts, o, str(float(lo) - 1), lo, c, v))  # high below low on line 11
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    config = tmp_path / "config.toml"
    config.write_text("[symbols.AAPL]\n", encoding="utf-8")

    stopped = _backtest(config, data, tmp_path / "stop")
    assert stopped.returncode == 1
    assert f"{path}:11: range: high/low do not bound open/close" in stopped.stderr
    assert not (tmp_path / "stop" / "state" / "journal.sqlite").exists()  # nothing ran

    skipped = _backtest(config, data, tmp_path / "skip", "--on-bad-data", "skip")
    assert skipped.returncode == 0, skipped.stderr[-3000:]
    assert f"skipped: {path}:11: range:" in skipped.stderr
    assert "backtest: 389 bars" in skipped.stdout


def test_replayed_signals_are_judged_at_their_time_trade_by_the_signal_rules_and_are_journaled(
        tmp_path: Path) -> None:
    data = tmp_path / "data"
    write_demo_data(data, days=1)  # AAPL, MSFT, SPY: the default config's symbols
    day = 1704205800  # 2024-01-02 09:30 New York, in epoch seconds
    signals = [{"id": f"s{n}", "symbol": "AAPL", "direction": "LONG", "confidence": 0.9, "ts": day + 3600 * n}
               for n in range(1, 6)]
    lines = [json.dumps(s) for s in signals]
    lines.insert(2, '{"id": "bad", "symbol": "AAPL"')             # malformed: rejected, with its line
    lines.append(json.dumps({**signals[0], "ts": day + 5 * 3600 + 60}))  # s1 again: a duplicate
    feed = tmp_path / "signals.jsonl"
    feed.write_text("\n".join(lines) + "\n", encoding="utf-8")
    config = tmp_path / "config.toml"  # the shipped strategy (signal rules), its file not watched
    config.write_text((ROOT / "config.toml").read_text(encoding="utf-8"), encoding="utf-8")

    done = _backtest(config, data, tmp_path / "out", "--signals", str(feed))
    assert done.returncode == 0, done.stderr[-3000:]
    with Journal.open(tmp_path / "out" / "state" / "journal.sqlite", readonly=True) as journal:
        rows = journal.recent_signals(limit=100)
        intents = journal.intents()
    accepted = sorted(r.signal_id for r in rows if r.accepted)
    assert accepted == [f"s{n}" for n in range(1, 6)]
    assert {r.code for r in rows if not r.accepted} == {"MALFORMED", "DUPLICATE"}
    assert {r.ts_ns for r in rows if r.accepted} == {(day + 3600 * n) * 1_000_000_000 for n in range(1, 6)}
    assert intents and {i.symbol for i in intents} == {"AAPL"} and all(i.signal_id for i in intents)


def test_backtest_actors_read_no_wall_clock(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import datetime as dt
    import time

    from actors.backtest import run_backtest
    from core.config import load_config

    project = str(ROOT)
    ours = tuple(f"{project}/{package}/" for package in ("actors", "core", "journal", "messages", "simulator"))
    reads: list[str] = []

    def watched(name: str, real: Any) -> Any:
        def read(*args: Any) -> Any:
            caller = sys._getframe(1).f_code
            if caller.co_filename.startswith(ours):
                reads.append(f"{name} from {caller.co_filename}:{caller.co_name}")
            return real(*args)
        return read

    for name in ("time", "time_ns", "monotonic", "monotonic_ns", "perf_counter"):
        monkeypatch.setattr(time, name, watched(f"time.{name}", getattr(time, name)))

    class WatchedDatetime(dt.datetime):
        @classmethod
        def now(cls, tz: Any = None) -> Any:  # type: ignore[override]
            caller = sys._getframe(1).f_code
            if caller.co_filename.startswith(ours):
                reads.append(f"datetime.now from {caller.co_filename}:{caller.co_name}")
            return super().now(tz)

    monkeypatch.setattr(dt, "datetime", WatchedDatetime)
    data = tmp_path / "data"
    write_demo_data(data, symbols=("AAPL", "MSFT"), days=1)
    result = run_backtest(load_config(_config(tmp_path)), data, tmp_path / "out")
    with Journal.open(result.journal, readonly=True) as journal:
        assert journal.executions()  # it traded
    assert reads == []
