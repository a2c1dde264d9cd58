"""The backtest driver: the live actor tree on simpleSystemBase, a SimBroker for tws, a virtual clock.

`run_backtest` reads bar files (core.bar_data, stopping at or skipping bad rows), turns them into
quotes (core.backtest_feed), and starts the very actor classes `run` starts, in this one process,
with the broker replaced by actors.sim_broker.SimBroker. Then, for each quote in time order, it
fires the timers due by the quote's time (actors.clock.VirtualTimers: the actors' wakeupAfter) and
hands the quote to the broker; thespian's simpleSystemBase runs every message to quiescence before
the next quote. Nothing reads the wall clock: message ids are seeded, sets pickle sorted, and the
journal (a fresh one under `out/state`) is the same bytes for the same inputs.

What a backtest changes in the configuration (the rest is the user's):

* state and logs go under `out/`, and the journal starts empty (an old one is refused);
* quotes come as messages (no datagram channel), bars are the data's bar length, no warm-up
  history (the data's first bars warm the indicators up);
* the rules file is not watched, demo signals never fire, the heartbeat runs once a day.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from itertools import groupby
from operator import itemgetter
from pathlib import Path
from typing import Final

from thespian.actors import ActorAddress, ActorSystem

from actors import journaling, logs
from actors.clock import VirtualClock, VirtualTimers, install_clock, install_timers
from actors.sim_broker import MarketQuote
from core.backtest_feed import FeedParams, bar_quotes, merged, within
from core.bar_data import DataProblem, FileBar, OnBadData, bar_interval_ns, read_bars
from core.signals import line_time_ns, parse_lines
from core.config import ActorBase, Config, SignalSourceKind, Synchronous
from messages import (
    ActorReady,
    AdminError,
    ChildrenSnapshot,
    GetChildren,
    ReplaySignals,
    Shutdown,
    StartSystem,
    seed_ids,
)

SIM_BROKER: Final = "actors.sim_broker.SimBroker"
_S: Final = 1_000_000_000
_ASK_S: Final = 60.0
_NEVER_S: Final = 1e9           # demo signals: once in ~31 years
_DAILY_S: Final = 86_400.0      # the heartbeat of a broker that cannot fail


class BacktestError(RuntimeError):
    """The backtest could not run; the message says why and what to do."""


@dataclass(frozen=True, slots=True, kw_only=True)
class BacktestResult:
    """What a backtest did: where its journal is, how many bars and quotes, the data problems it skipped."""

    journal: Path
    bars: int
    quotes: int
    timers: int
    problems: tuple[DataProblem, ...]


def data_files(data: Path, symbols: Iterable[str]) -> dict[str, Path]:
    """Return `SYMBOL.csv` per symbol from a directory, or the one CSV for the one symbol."""
    wanted = tuple(symbols)
    if data.is_file():
        if len(wanted) != 1:
            raise BacktestError(f"{data} is one file but the configuration trades {len(wanted)} symbols "
                                f"({', '.join(wanted)}): give a directory with one SYMBOL.csv each")
        return {wanted[0]: data}
    files = {s: data / f"{s}.csv" for s in wanted}
    missing = [str(p) for p in files.values() if not p.is_file()]
    if missing:
        raise BacktestError(f"no bar file for {len(missing)} symbol(s): {', '.join(missing)}")
    return files


def backtest_config(config: Config, out: Path, bar_seconds: int) -> Config:
    """Return `config` as a backtest runs it (see the module doc)."""
    system = replace(config.system, state_dir=out / "state", log_dir=out / "logs", base=ActorBase.SIMPLE)
    broker = replace(config.broker, heartbeat_interval_s=_DAILY_S, heartbeat_timeout_s=2 * _DAILY_S)
    market = replace(config.market_data, bar_seconds=bar_seconds, warmup_bars=0, quote_channel=False,
                     stale_after_s=10 * _DAILY_S)
    signals = replace(config.signals, source=SignalSourceKind.DEMO,
                      demo=replace(config.signals.demo, interval_s=_NEVER_S))
    return replace(config, system=system, broker=broker, market_data=market, signals=signals,
                   journal=replace(config.journal, synchronous=Synchronous.NORMAL),
                   strategy=replace(config.strategy, watch_config=False))


def load_bars(files: Mapping[str, Path], *, on_bad: OnBadData, from_ns: int | None, to_ns: int | None
              ) -> tuple[dict[str, tuple[FileBar, ...]], tuple[DataProblem, ...], int]:
    """Return each symbol's bars in the window, the problems seen, and the bar length in ns."""
    bars: dict[str, tuple[FileBar, ...]] = {}
    problems: list[DataProblem] = []
    for symbol, path in sorted(files.items()):
        rows, seen = read_bars(str(path), on_bad=on_bad, gaps=True)
        problems.extend(seen)
        bars[symbol] = within(rows, from_ns, to_ns)
    lengths = {n for n in (bar_interval_ns(b) for b in bars.values()) if n}
    if len(lengths) > 1:
        raise BacktestError(f"the files have different bar lengths ({', '.join(f'{n / _S:g} s' for n in sorted(lengths))})"
                            f": resample them to one")
    if not any(bars.values()):
        raise BacktestError("no bars in the data within --from/--to")
    return bars, tuple(problems), lengths.pop() if lengths else 60 * _S


def signal_lines(path: Path, start_ns: int) -> list[tuple[int, int, str]]:
    """Return (due time, line number, text) per non-empty line of a JSON-lines signal file, in file order.

    A line is due at its `ts`; one without a readable `ts` at `start_ns` (the source rejects it
    then, with why, as it would live).
    """
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise BacktestError(f"cannot read the signals file {path}: {exc.strerror or exc}") from exc
    chunk = parse_lines(raw, final=True)
    out = []
    for line in chunk.lines:
        text = line.data.decode("utf-8", errors="replace")
        due = line_time_ns(text)
        out.append((max(due, start_ns) if due is not None else start_ns, line.number, text))
    return out


def run_backtest(config: Config, data: Path, out: Path, *, on_bad: OnBadData = OnBadData.STOP,
                 from_ns: int | None = None, to_ns: int | None = None, signals: Path | None = None,
                 progress: Callable[[int, int], None] | None = None) -> BacktestResult:
    """Run the strategy of `config` over the bars in `data`; the journal and logs go under `out`."""
    files = data_files(data, config.symbol_names)
    bars, problems, bar_ns = load_bars(files, on_bad=on_bad, from_ns=from_ns, to_ns=to_ns)
    if bar_ns % _S or 86_400 * _S % bar_ns:
        raise BacktestError(f"bars of {bar_ns / _S:g} s cannot be backtested: a bar must be whole seconds "
                            f"that divide a day")
    cfg = backtest_config(config, out, bar_ns // _S)
    journal = cfg.journal_path
    if journal.exists():
        raise BacktestError(f"{journal} exists: a backtest writes a fresh journal; choose another --out or "
                            f"remove it")
    total = sum(len(b) for b in bars.values())
    streams = {s: bar_quotes(s, b, bar_ns, FeedParams()) for s, b in bars.items()}
    first = min(b[0].ts_ns for b in bars.values() if b)
    replay = sorted(signal_lines(signals, first)) if signals is not None else []

    seed_ids("bt")
    clock = VirtualClock(first - _S)
    timers = VirtualTimers(clock)
    saved = (install_clock(clock), install_timers(timers), logs.run_in_process())
    # simpleSystemBase warns of every stopped actor ("had no instance to reset on kill") on stderr
    # through logging's last resort; our actors log what matters to out/logs.
    thespian_log = logging.getLogger("Thespian")
    thespian_level = thespian_log.level
    thespian_log.setLevel(logging.ERROR)
    asys = ActorSystem("simpleSystemBase", transientUnique=True, logDefs=False)
    quotes = 0
    try:
        supervisor = asys.createActor("actors.supervisor.Supervisor")
        reply = asys.ask(supervisor, StartSystem(config=cfg, actor_classes=(("tws", SIM_BROKER),)), _ASK_S)
        if not isinstance(reply, ActorReady):
            text = reply.text if isinstance(reply, AdminError) else type(reply).__name__
            raise BacktestError(f"the actors did not start: {text}; see {cfg.system.log_dir}/system.log")
        tws = _child(asys, supervisor, "tws")
        source = _child(asys, supervisor, "signals")
        timers.fire_until(first, asys.tell)
        # Signal lines of one instant go together; all due by a quote go before it (a signal and a
        # quote of one instant: the signal first); those after the data are judged all the same.
        pending = deque((due, tuple(line[1:] for line in lines))
                        for due, lines in groupby(replay, key=itemgetter(0)))

        def signals_until(until_ns: float) -> None:
            while pending and pending[0][0] <= until_ns:
                due, lines = pending.popleft()
                timers.fire_until(due, asys.tell)
                asys.tell(source, ReplaySignals(lines=lines))

        for quote in merged(streams):
            signals_until(quote.ts_ns)
            timers.fire_until(quote.ts_ns, asys.tell)
            asys.tell(tws, MarketQuote(quote=quote))
            quotes += 1
            if progress is not None and quotes % 4 == 0:
                progress(min(total, quotes // 4), total)
        signals_until(float("inf"))
        timers.fire_until(clock.now_ns() + _S, asys.tell)  # the last lazy journal batches
        asys.ask(supervisor, Shutdown(reason="backtest done"), _ASK_S)
    finally:
        asys.shutdown()
        thespian_log.setLevel(thespian_level)
        journaling.close_all()
        logs.close_all()
        install_clock(saved[0])
        install_timers(saved[1])
        logs.run_in_process(saved[2])
    return BacktestResult(journal=journal, bars=total, quotes=quotes, timers=timers.fired, problems=problems)


def _child(asys: ActorSystem, supervisor: ActorAddress, key: str) -> ActorAddress:
    snapshot = asys.ask(supervisor, GetChildren(), _ASK_S)
    if isinstance(snapshot, ChildrenSnapshot):
        for child in snapshot.children:
            if child.key == key and child.address is not None:
                return child.address
    raise BacktestError(f"no {key} actor after the start")
