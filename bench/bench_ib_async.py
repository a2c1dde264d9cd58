"""Baseline for tick-to-order latency: a minimal single-process ib_async script on bench_runtime's simulator.

Run: ``python -m bench.bench_ib_async [--seconds 60] [--warmup 5] [--symbols 100] [--trading 20] [--json PATH]``
(needs the bench extra: ``pip install -e '.[bench]'``, which pins ib_async 2.1.0).

Issue 8 measures our tick-to-order latency (bench.bench_runtime) against "the baseline a user
would write by hand": one process, one ib_async IB object, no actors. Both runs use the very same
simulator: bench_runtime's SimulatorProcess (RecordingSimulator in its own spawned process,
accelerated clock at speed 1, a quote every 250 ms per symbol staggered over each 250 ms, 7 wire
ticks each, pacing off) built by bench_runtime.make_config with the same knobs (volatility 3,
stop and target 1 ATR), holding its quotes until the script has subscribed to every symbol.

The script (run_script, in its own spawned process) connects with ``IB().connect``, qualifies
``Stock(sym, "SMART", "USD")`` for every symbol, calls ``reqMktData`` for each and, in a
``pendingTickersEvent`` handler, does what our symbol actor does per quote: the price is the last
trade, else the bid/ask midpoint; it builds 1 s bars (a tick in a later second closes the bar) and
on each closed bar updates SMA(2), SMA(3) and Wilder's ATR(3), then runs
core.rules.moving_average_cross's two rules: flat with no working order and SMA(2) crossing above
SMA(3) opens a market bracket (``ib.bracketOrder`` with the parent made a market order, stop and
target 1 ATR away, sized floor(100 / ATR) capped at 100, in lots), long and SMA(2) crossing below
SMA(3) cancels the bracket's legs and, once they are done, sells the position at market. Every
symbol computes; only the first `--trading` can order (the others size with a lot of
bench_runtime.SILENT_LOT, so each entry comes to zero lots, as in bench_runtime).

Latency of an entry is computed exactly as bench_runtime does: the simulator's arrival of the
bracket's entry PLACE_ORDER (orderRef "<symbol>-ibasync-<n>:entry", transmit=False) minus the
send time of the latest quote of its symbol sent before it (time.monotonic_ns in the simulator).
The row "from the real trigger quote" takes instead the quote the script acted on (ib_async's
ticker.timestamp of the batch that closed the bar, matched to the simulator's wall-clock sends).

The simulator does not serve account updates (reqAccountUpdates, reqAccountUpdatesMulti: it
answers error 321), so the script leaves them out of ib_async's start-up fetch; each would
otherwise cost connect() its whole timeout. Nothing else is changed from ib_async's defaults: its
own throttle (45 requests/s) stays on, as our connection's pacer does.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import shutil
import signal
import sys
import tempfile
import time
import traceback
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from bench.bench_runtime import (
    ENTRY_SUFFIX,
    SILENT_LOT,
    SimRecords,
    SimulatorProcess,
    Strategy,
    cpu_sample,
    latest_at_or_before,
    machine_busy,
    make_config,
    summary,
    symbol_of,
    wait_for,
)

CLIENT_ID: Final = 17
REF_TAG: Final = "ibasync"  # group ids are f"{symbol}-{REF_TAG}-{n}", which bench_runtime.symbol_of reads
RISK: Final = 100.0          # core.rules.moving_average_cross's defaults
MAX_QUANTITY: Final = 100
STOP_ATR: Final = 1.0
TARGET_ATR: Final = 1.0
FAST: Final = 2
SLOW: Final = 3
ATR_PERIOD: Final = 3
TICK: Final = 0.01
VOLATILITY: Final = 3.0
START_TIMEOUT_S: Final = 120.0
STOP_TIMEOUT_S: Final = 30.0
_MS: Final = 1_000_000
_CLK_TCK: Final = os.sysconf("SC_CLK_TCK")

STAGES: Final = (
    ("quote sent -> ib_async reads the tick", "sent", "tick"),
    ("tick -> bar, indicators, rules -> entry placed", "tick", "place"),
    ("entry placed -> PLACE_ORDER at simulator", "place", "arrived"),
)


# ---------------------------------------------------------------- the script a user would write


@dataclass
class SymbolBook:
    """One symbol's bar being built, its indicators, position and working trades."""

    contract: Any
    lot: int
    bar_second: int = -1
    open: float = math.nan
    high: float = math.nan
    low: float = math.nan
    close: float = math.nan
    volume: float = 0.0
    last_volume: float = math.nan
    closes: deque[float] = field(default_factory=lambda: deque(maxlen=SLOW))
    fast: float | None = None
    slow: float | None = None
    atr: float | None = None
    atr_seed: list[float] = field(default_factory=list)
    prev_close: float | None = None
    position: float = 0.0
    trades: list[Any] = field(default_factory=list)
    closing: bool = False
    groups: int = 0


def _ceil_to_tick(price: float) -> float:
    return round(math.ceil(price / TICK - 1e-9) * TICK, 2)


def run_script(port: int, symbols: Sequence[str], trading: int, conn: Any) -> None:
    """Child process: the hand-written ib_async moving-average cross; "stop" on `conn` ends it.

    Sends "ready" once every symbol is subscribed, and at the end a dict of its entries
    (ref, tick wall ns, placed wall ns) and counters; {"error": text} if it failed.
    """
    import asyncio
    import logging

    from ib_async import IB, Stock, util
    from ib_async.ib import StartupFetch, StartupFetchALL
    from ib_async.order import MarketOrder

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C is the bench's to handle: it stops this process

    problems: list[str] = []

    class KeepProblems(logging.Handler):
        # ib_async logs TWS's own errors ("Error 202, reqId 6: ...", counted through errorEvent)
        # and its own trouble (a message it could not decode, a start-up request that timed out)
        # alike; the second kind is kept for the report instead of garbling the bench's table.
        def emit(self, record: logging.LogRecord) -> None:
            text = record.getMessage()
            if not (record.name == "ib_async.wrapper" and text.startswith(("Error ", "Warning "))):
                problems.append(f"{record.name}: {text}")

    library_log = logging.getLogger("ib_async")
    library_log.addHandler(KeepProblems(logging.WARNING))
    library_log.propagate = False

    ib = IB()
    books: dict[str, SymbolBook] = {}
    entries: list[tuple[str, int, int]] = []  # (entry ref, tick wall ns, placed wall ns)
    counters = {"batches": 0, "ticker_updates": 0, "bars": 0, "crosses_up": 0, "zero_sized": 0,
                "exits": 0, "handler_cpu_ns": 0}
    errors: dict[int, int] = {}  # error code -> count (202: an order cancelled; 2104...: notices)

    def working(book: SymbolBook) -> bool:
        book.trades = [t for t in book.trades if not t.isDone()]
        return bool(book.trades)

    def enter(book: SymbolBook, price: float, tick_ns: int) -> None:
        assert book.atr is not None
        quantity = math.floor(min(RISK / (STOP_ATR * book.atr), MAX_QUANTITY) / book.lot) * book.lot
        if quantity <= 0:
            counters["zero_sized"] += 1
            return
        stop = _ceil_to_tick(price - STOP_ATR * book.atr)  # a sell stop rounds up: never looser
        target = _ceil_to_tick(price + TARGET_ATR * book.atr)
        if not 0 < stop < price < target:
            return
        book.groups += 1
        group = f"{book.contract.symbol}-{REF_TAG}-{book.groups}"
        bracket = ib.bracketOrder("BUY", quantity, price, target, stop)
        # core.rules.moving_average_cross opens with a market order; the children stay as built.
        bracket.parent.orderType = "MKT"
        bracket.parent.lmtPrice = util.UNSET_DOUBLE
        bracket.parent.orderRef = group + ENTRY_SUFFIX
        bracket.takeProfit.orderRef = f"{group}:tp"
        bracket.stopLoss.orderRef = f"{group}:sl"
        placed = time.time_ns()
        for order in bracket:
            book.trades.append(ib.placeOrder(book.contract, order))
        entries.append((group + ENTRY_SUFFIX, tick_ns, placed))

    def sell_if_closed(book: SymbolBook) -> None:
        if book.closing and not working(book):
            book.closing = False
            if book.position > 0:
                book.groups += 1
                order = MarketOrder("SELL", book.position,
                                    orderRef=f"{book.contract.symbol}-{REF_TAG}-{book.groups}:exit")
                book.trades.append(ib.placeOrder(book.contract, order))
                counters["exits"] += 1

    def on_bar(book: SymbolBook, price: float, tick_ns: int) -> None:
        counters["bars"] += 1
        high, low, close = book.high, book.low, book.close
        book.closes.append(close)
        prev_fast, prev_slow = book.fast, book.slow
        if len(book.closes) >= FAST:
            book.fast = sum(list(book.closes)[-FAST:]) / FAST
        if len(book.closes) >= SLOW:
            book.slow = sum(book.closes) / SLOW
        true_range = high - low if book.prev_close is None else max(
            high - low, abs(high - book.prev_close), abs(low - book.prev_close))
        book.prev_close = close
        if book.atr is None:
            book.atr_seed.append(true_range)
            if len(book.atr_seed) == ATR_PERIOD:
                book.atr = sum(book.atr_seed) / ATR_PERIOD
        else:
            book.atr = (book.atr * (ATR_PERIOD - 1) + true_range) / ATR_PERIOD
        if prev_fast is None or prev_slow is None or book.fast is None or book.slow is None:
            return
        if book.position > 0 and prev_fast >= prev_slow and book.fast < book.slow:
            if not book.closing:
                book.closing = True
                for trade in book.trades:
                    if not trade.isDone():
                        ib.cancelOrder(trade.order)
                sell_if_closed(book)
        elif book.position == 0 and prev_fast <= prev_slow and book.fast > book.slow:
            counters["crosses_up"] += 1
            if not working(book) and book.atr is not None and book.atr > 0:
                enter(book, price, tick_ns)

    def on_pending(tickers: Any) -> None:
        cpu = time.thread_time_ns()
        counters["batches"] += 1
        for ticker in tickers:
            counters["ticker_updates"] += 1
            price = ticker.last if not math.isnan(ticker.last) else ticker.midpoint()
            if math.isnan(price) or price <= 0:
                continue
            book = books[ticker.contract.symbol]
            tick_ns = int(ticker.timestamp * 1e9)
            second = int(ticker.timestamp)
            volume = 0.0 if math.isnan(ticker.volume) or math.isnan(book.last_volume) \
                else max(0.0, ticker.volume - book.last_volume)
            if not math.isnan(ticker.volume):
                book.last_volume = ticker.volume
            if second > book.bar_second >= 0:
                on_bar(book, price, tick_ns)
                book.bar_second = -1
            if book.bar_second < 0:
                book.bar_second = second
                book.open = book.high = book.low = book.close = price
                book.volume = volume
            elif second == book.bar_second:
                book.high, book.low, book.close = max(book.high, price), min(book.low, price), price
                book.volume += volume
        counters["handler_cpu_ns"] += time.thread_time_ns() - cpu

    def on_fill(trade: Any, fill: Any) -> None:
        book = books.get(fill.contract.symbol)
        if book is not None:
            shares = fill.execution.shares
            book.position += shares if fill.execution.side == "BOT" else -shares

    def on_error(req_id: int, code: int, message: str, contract: Any) -> None:
        errors[code] = errors.get(code, 0) + 1

    def on_status(trade: Any) -> None:
        book = books.get(trade.contract.symbol)
        if book is not None and trade.isDone():
            sell_if_closed(book)

    try:
        ib.connect("127.0.0.1", port, clientId=CLIENT_ID,
                   fetchFields=StartupFetchALL & ~(StartupFetch.ACCOUNT_UPDATES | StartupFetch.SUB_ACCOUNT_UPDATES))
        contracts = ib.qualifyContracts(*(Stock(s, "SMART", "USD") for s in symbols))
        if len(contracts) != len(symbols) or not all(contracts):
            raise RuntimeError(f"qualified {sum(map(bool, contracts))} of {len(symbols)} contracts")
        for i, contract in enumerate(contracts):
            books[contract.symbol] = SymbolBook(contract=contract, lot=1 if i < trading else SILENT_LOT)
        ib.pendingTickersEvent += on_pending
        ib.execDetailsEvent += on_fill
        ib.orderStatusEvent += on_status
        ib.errorEvent += on_error
        for contract in contracts:
            ib.reqMktData(contract)
        conn.send("ready")
        stop = asyncio.Event()
        util.getLoop().add_reader(conn.fileno(), stop.set)  # "stop", or EOF if the bench died
        ib.run(stop.wait())
        util.getLoop().remove_reader(conn.fileno())
        try:
            conn.recv()
        except EOFError:
            return
        ib.disconnect()
        conn.send({"entries": entries, "counters": counters, "errors": errors, "problems": problems})
    except Exception:
        try:
            conn.send({"error": traceback.format_exc()})
        except OSError:
            pass
    finally:
        if ib.isConnected():
            ib.disconnect()


class ClientProcess:
    """The ib_async script in a spawned process, talked to over a pipe."""

    def __init__(self, port: int, symbols: Sequence[str], trading: int) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self.process = ctx.Process(target=run_script, args=(port, list(symbols), trading, child), daemon=True,
                                   name="bench-ib-async")
        self.process.start()
        child.close()

    @property
    def pid(self) -> int:
        return self.process.pid or 0

    def _receive(self, timeout: float, what: str) -> Any:
        if not self._conn.poll(timeout):
            raise RuntimeError(f"the ib_async script did not {what} within {timeout:g} s")
        try:
            answer = self._conn.recv()
        except EOFError:
            raise RuntimeError(f"the ib_async script exited before it could {what} "
                               f"(exit code {self.process.exitcode})") from None
        if isinstance(answer, dict) and "error" in answer:
            raise RuntimeError(f"the ib_async script failed:\n{answer['error']}")
        return answer

    def wait_ready(self, timeout: float) -> None:
        """Return once the script has asked for every symbol's market data."""
        self._receive(timeout, "subscribe to every symbol")

    def stop(self) -> dict[str, Any]:
        """Ask the script to disconnect; return its entries and counters."""
        self._conn.send("stop")
        report: dict[str, Any] = self._receive(STOP_TIMEOUT_S, "hand over its figures")
        self.process.join(10)
        return report

    def kill(self) -> None:
        if self.process.is_alive():
            self.process.kill()
            self.process.join(5)
        self._conn.close()


# ---------------------------------------------------------------- the measurement


def _cores(before: dict[int, tuple[int, int, int]], after: dict[int, tuple[int, int, int]], pid: int,
           seconds: float) -> float:
    if pid not in before or pid not in after:
        return math.nan
    return (after[pid][1] - before[pid][1]) / _CLK_TCK / seconds


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def bench_ib_async(symbols: int, trading: int, seconds: float, warmup: float) -> dict[str, Any]:
    """Trade `symbols` symbols with the ib_async script for `seconds` after `warmup`; return its figures."""
    names = [f"S{i:03d}" for i in range(symbols)]
    trading = min(trading, symbols)
    work = Path(tempfile.mkdtemp(prefix="bench_ib_async-"))
    sim: SimulatorProcess | None = None
    client: ClientProcess | None = None
    records: SimRecords | None = None
    try:
        from simulator.launch import simulator_config

        strategy = Strategy(volatility=VOLATILITY, stop_atr=str(STOP_ATR), target_atr=str(TARGET_ATR),
                            trading=trading)
        config = make_config(names, work, strategy)
        sim = SimulatorProcess(simulator_config(config, port=0, pacing_msgs_per_s=0, stagger_quotes=True),
                               hold_quotes=True)
        started = time.monotonic()
        client = ClientProcess(sim.port, names, trading)
        client.wait_ready(START_TIMEOUT_S)
        wait_for(lambda: sim is not None and sim.subscriptions() >= symbols, START_TIMEOUT_S,
                 "every market-data subscription", 0.1)
        subscribed_s = time.monotonic() - started
        sim.release_quotes()
        print(f"  {symbols} symbols: ib_async subscribed after {subscribed_s:.1f} s; quotes released; "
              f"measuring {seconds:g} s after {warmup:g} s warm-up", flush=True)
        time.sleep(warmup)
        pids = [sim.pid, client.pid]
        cpu0, machine0 = cpu_sample(pids), machine_busy()
        window = time.monotonic_ns(), time.time_ns()
        time.sleep(seconds)
        window_end = time.monotonic_ns(), time.time_ns()
        cpu1, machine1 = cpu_sample(pids), machine_busy()
        sim.hold_quotes()
        report = client.stop()
        records = sim.stop()
    finally:
        if client is not None:
            client.kill()
        if sim is not None:
            sim.kill()
        shutil.rmtree(work, ignore_errors=True)
    assert records is not None
    return _figures(records, report, window, window_end, (cpu0, cpu1), (machine0, machine1), (sim.pid, client.pid),
                    symbols, trading, subscribed_s)


def _figures(records: SimRecords, report: dict[str, Any], window: tuple[int, int], window_end: tuple[int, int],
             cpu: tuple[dict[int, tuple[int, int, int]], dict[int, tuple[int, int, int]]],
             machine: tuple[tuple[int, int], tuple[int, int]], pids: tuple[int, int], symbols: int, trading: int,
             subscribed_s: float) -> dict[str, Any]:
    mono_sends = {s: [m for m, _ in sends] for s, sends in records.quote_sends.items()}
    wall_sends = {s: [w for _, w in sends] for s, sends in records.quote_sends.items()}
    stamps = {ref: (tick, placed) for ref, tick, placed in report["entries"]}
    latencies: list[float] = []
    via_trigger: list[float] = []
    stages: dict[str, list[float]] = {name: [] for name, _, _ in STAGES}
    newer = orders = 0
    seen: set[str] = set()
    for ref, transmit, mono, wall in records.place_orders:
        if not window[0] <= mono <= window_end[0]:
            continue
        orders += 1
        if not ref.endswith(ENTRY_SUFFIX) or transmit or ref in seen:
            continue
        seen.add(ref)
        symbol = symbol_of(ref[: -len(ENTRY_SUFFIX)])
        sent = latest_at_or_before(mono_sends.get(symbol, []), mono)
        if sent is None:
            continue
        latencies.append((mono - sent) / _MS)
        if ref not in stamps:
            continue
        tick, placed = stamps[ref]
        trigger_sent = latest_at_or_before(wall_sends.get(symbol, []), tick)
        if trigger_sent is None:
            continue
        times = {"sent": trigger_sent, "tick": tick, "place": placed, "arrived": wall}
        for name, start, end in STAGES:
            stages[name].append((times[end] - times[start]) / _MS)
        via_trigger.append((wall - trigger_sent) / _MS)
        newer += latest_at_or_before(wall_sends.get(symbol, []), wall) != trigger_sent
    span = (window_end[0] - window[0]) / 1e9
    lat, via = summary(latencies), summary(via_trigger)
    counters = report["counters"]
    (busy0, total0), (busy1, total1) = machine
    sim_pid, client_pid = pids
    return {
        "symbols": symbols, "trading": trading, "seconds": span, "subscribed_s": subscribed_s,
        "entries": len(latencies), "entries_per_s": len(latencies) / span, "orders_per_s": orders / span,
        "p50_ms": lat["p50"], "p90_ms": lat["p90"], "p99_ms": lat["p99"], "max_ms": lat["max"],
        "trigger_p50_ms": via["p50"], "trigger_p99_ms": via["p99"], "trigger_entries": len(via_trigger),
        "newer_quote": newer,
        "stages_ms": {name: {"p50": values["p50"], "p99": values["p99"]}
                      for name, values in ((n, summary(v)) for n, v in stages.items())},
        "client_cores": _cores(*cpu, client_pid, span), "simulator_cores": _cores(*cpu, sim_pid, span),
        "machine_busy": (busy1 - busy0) / max(1, total1 - total0),
        "handler_cpu_ms_per_update": counters["handler_cpu_ns"] / _MS / max(1, counters["ticker_updates"]),
        "counters": counters, "errors": {str(code): n for code, n in sorted(report["errors"].items())},
        "library_problems": report["problems"],
    }


# ---------------------------------------------------------------- output


def rows_of(result: dict[str, Any]) -> list[tuple[str, str, str]]:
    """Return the table's (measure, value, detail) rows for one result of bench_ib_async."""
    r = result
    rows = [
        (f"tick-to-order entries ({r['symbols']} symbols, {r['trading']} trading)", f"{r['entries']}",
         f"{r['entries_per_s']:.2f} entries/s, {r['orders_per_s']:.1f} PLACE_ORDER/s (all legs, exits) "
         f"over {r['seconds']:.1f} s"),
        ("tick-to-order p50", f"{r['p50_ms']:,.1f} ms", "entry PLACE_ORDER arrival - latest quote of its symbol sent"),
        ("tick-to-order p90", f"{r['p90_ms']:,.1f} ms", ""),
        ("tick-to-order p99", f"{r['p99_ms']:,.1f} ms", ""),
        ("tick-to-order max", f"{r['max_ms']:,.1f} ms", ""),
        ("  from the real trigger quote p50 / p99", f"{r['trigger_p50_ms']:,.1f} / {r['trigger_p99_ms']:,.1f} ms",
         f"a newer quote of the symbol left before the order for {r['newer_quote']} of {r['trigger_entries']} "
         f"entries (then the rows above understate)"),
    ]
    for name, values in r["stages_ms"].items():
        rows.append((f"    {name}", f"{values['p50']:,.2f} ms", f"p99 {values['p99']:,.1f} ms"))
    c = r["counters"]
    rows += [
        ("script CPU per ticker update (handler)", f"{r['handler_cpu_ms_per_update']:.3f} ms",
         f"{c['ticker_updates']:,} ticker updates in {c['batches']:,} pendingTickersEvent batches, "
         f"{c['bars']:,} bars, {c['crosses_up']:,} crosses up ({c['zero_sized']:,} sized to 0 lots), "
         f"{c['exits']:,} exits (whole run)"),
        ("errors and notices the script received", f"{sum(r['errors'].values()):,}",
         ", ".join(f"{code}: {n:,}" for code, n in r["errors"].items()) or "none"),
        ("problems ib_async logged", f"{len(r['library_problems']):,}",
         "; ".join(r["library_problems"][:3]) or "none (nothing it could not decode, no start-up timeout)"),
        ("CPU while trading", f"{r['machine_busy']:.0%} busy",
         f"cores used: ib_async script {r['client_cores']:.2f}, simulator {r['simulator_cores']:.2f} "
         f"(of {os.cpu_count()}); machine busy counts every user of it"),
    ]
    return rows


def print_rows(rows: list[tuple[str, str, str]]) -> None:
    header = ("measure", "value", "detail")
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(header)]
    line = "  ".join(f"{{:<{w}}}" for w in widths)
    print(line.format(*header))
    print(line.format(*("-" * w for w in widths)))
    for row in rows:
        print(line.format(*row).rstrip())


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, float):
        return _finite(value)
    return value


def _exit_on_signal(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)  # unwinds through bench_ib_async's finally: both processes are killed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="measured wall seconds")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds after the quotes start not measured")
    parser.add_argument("--symbols", type=int, default=100, help="symbols quoting")
    parser.add_argument("--trading", type=int, default=20, help="how many of them can order")
    parser.add_argument("--json", type=Path, help="also write {\"ib_async\": {...}} to this file")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _exit_on_signal)
    began = time.monotonic()
    print(f"ib_async baseline: one process, ib_async {_ib_async_version()}, against bench_runtime's simulator "
          f"in its own process (speed 1, 4 quotes/s per symbol, staggered), {os.cpu_count()} CPUs", flush=True)
    try:
        result = bench_ib_async(args.symbols, args.trading, args.seconds, args.warmup)
    except KeyboardInterrupt:
        print("\nbench_ib_async: interrupted; its processes were stopped", flush=True)
        return 130
    print()
    print_rows(rows_of(result))
    if args.json is not None:
        args.json.write_text(json.dumps({"ib_async": _jsonable(result)}, indent=2) + "\n")
        print(f"\nfigures written to {args.json}")
    print(f"\nbenchmark took {time.monotonic() - began:.0f} s")
    return 0


def _ib_async_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("ib_async")
    except PackageNotFoundError:
        sys.exit("bench_ib_async needs ib_async: pip install -e '.[bench]'")


if __name__ == "__main__":
    raise SystemExit(main())
