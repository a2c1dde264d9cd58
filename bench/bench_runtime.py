"""Benchmark of the actor runtime on the simulator: tick-to-order latency, memory per symbol actor, quote staleness.

Run: ``python -m bench.bench_runtime [--seconds 60] [--repeat 1] [--symbols 100] [--trading 20] [--scale-symbols 300]
[--phases both|staggered|lockstep] [--background-nice 19] [--json PATH]``

The whole tree runs as `bootstrap.py run` runs it (multiprocTCPBase on a free admin port, the root
Supervisor by globalName, StartSystem with a Config), against a simulator in its own spawned
process (accelerated clock at speed 1: a quote every 250 ms per symbol, 7 wire ticks each; pacing
off). The latency run goes twice by default: with the symbols' quotes spread over each 250 ms, as
a real feed sends them, and in lockstep (all 100 symbols at the same instants: 100 symbol actors
wake at once on 2 cores, the worst case). StartSystem.actor_classes swaps in the subclasses of bench.bench_support: they only stamp.

1. Tick-to-order latency (goal p50 <= 5 ms, p99 <= 20 ms): `--symbols` symbols quote and run the
   moving-average cross rules on 1 s bars (SMA 2/3, ATR 3, stop and target 1 ATR, volatility 3); the first
   `--trading` of them can order (the others have a lot size above the rules' max_quantity, so each
   entry sizes to zero lots). Quotes are held until the whole tree is up (see bench_latency).
   The simulator stamps (time.monotonic_ns: one clock for every process on Linux) each quote as
   it hands the quote's ticks to the socket, and each PLACE_ORDER as it arrives. The latency of a
   bracket entry (its ":entry" PLACE_ORDER, transmit=False; exits are left out: they wait for a
   cancel round trip first) = arrival - send time of the latest quote of its symbol sent before
   it. Approximation: when a newer quote of the symbol left while the order was on its way, that
   quote is taken for the trigger and the latency is understated (badly, once it exceeds the
   250 ms between quotes). So the row below uses the real trigger (the quote.ts_ns the symbol
   actor acted on, matched to the simulator's send) and says how often the two differ.
   Breakdown of that path (time.time_ns in every process): simulator send -> tws handles the tick
   (quote.ts_ns) -> the symbol actor has the QuoteUpdate -> it sends the entry SubmitOrder (after
   its Snapshot; the symbol submits a bracket's legs itself) -> tws has it -> PLACE_ORDER at the
   simulator (order id, pacer, socket write); and, off that path, when the group actor that
   claims the legs had its ConfigureActor.
   Wire baseline: simulator send -> tws handling the tick, for every QuoteUpdate.
2. Memory: the system with `--scale-symbols` symbols and with 3; PSS (smaps_rollup) summed over
   every process of the actor system (the admin's session: thespian's admin daemonizes), the
   simulator excluded, read 3 s after the quotes were released; (total_N - total_3) / (N - 3)
   per symbol actor. Start-up (quotes held, see bench_scale): StartSystem -> ActorReady, and until
   the simulator saw every market-data subscription. No symbol can order here (every entry sizes
   to zero lots), so no order group actor is alive.
3. Quote staleness with those N symbols (`--stale-seconds`): per QuoteUpdate, now - quote.ts_ns
   at the symbol actor and its `coalesced` count (wire ticks merged into it).
Both runs also show the CPU per QuoteUpdate (the symbol actors' process CPU, and inside the
handler), the symbols supervisor's Snapshot load, and the cores each role used in the window
(/proc/<pid>/stat; exited group actors through their parent's reaped-children time).

Each measurement runs once per `--repeat`; the table shows medians of the runs. The run's own
processes are stopped in every case: an ordered Shutdown, asys.shutdown(), then SIGKILL by pid
for whatever is left in the admin's session, and the simulator process.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import json
import math
import multiprocessing
import os
import shutil
import signal
import statistics
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Final, TypeVar

from actors.processes import kill_session, proc_stat, session_of, session_pids

P50_GOAL_MS: Final = 5.0
PHASES: Final = {True: "staggered over each 250 ms (like a real feed)",
                 False: "in lockstep (every symbol at the same instants: the worst case)"}
P99_GOAL_MS: Final = 20.0
BASELINE_SYMBOLS: Final = 3
ENTRY_SUFFIX: Final = ":entry"
TICKS_PER_QUOTE: Final = 7  # bid, ask, last prices, their three sizes, volume: what tws counts as ticks
_MS: Final = 1_000_000
SHUTDOWN_WAIT_S: Final = 20
_T = TypeVar("_T")

TIMED_SYMBOLS: Final = ("symbols", "bench.bench_support.TimedSymbolSupervisor")
TIMED_ORDER_PATH: Final = (("tws", "bench.bench_support.TimedTwsConnection"),
                            ("risk", "bench.bench_support.TimedRiskManager"), TIMED_SYMBOLS,
                           ("groups", "bench.bench_support.TimedOrderGroupSupervisor"))


# ---------------------------------------------------------------- the simulator process


@dataclass(frozen=True)
class SimRecords:
    """What the RecordingSimulator saw: per-symbol quote send times (mono, wall) and every PLACE_ORDER."""

    quote_sends: dict[str, list[tuple[int, int]]]
    place_orders: list[tuple[str, bool, int, int]]  # (orderRef, transmit, mono, wall)


def _serve(config: Any, conn: Any, hold_quotes: bool) -> None:
    """Child process: run a RecordingSimulator; each command ("subscriptions", "go": send the quotes,
    "hold": stop sending them) is answered with the subscription count; "stop" with the records."""
    from loguru import logger

    from bench.bench_support import RecordingSimulator

    logger.remove()

    async def main() -> None:
        sim = RecordingSimulator(config)
        if hold_quotes:
            sim.silenced.update(sim.specs)
        await sim.start()
        conn.send(sim.port)
        loop = asyncio.get_running_loop()
        while (command := await loop.run_in_executor(None, conn.recv)) != "stop":
            if command == "go":
                sim.silenced.clear()
            elif command == "hold":
                sim.silenced.update(sim.specs)
            conn.send(sim.subscriptions())
        records = SimRecords(quote_sends=sim.quote_sends, place_orders=sim.place_orders)
        await sim.stop()
        conn.send(records)

    asyncio.run(main())


class SimulatorProcess:
    """The recording simulator in a spawned process: its GIL is not the actors' nor the bench's."""

    def __init__(self, config: Any, hold_quotes: bool = False) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self.process = ctx.Process(target=_serve, args=(config, child, hold_quotes), daemon=True,
                                   name="bench-simulator")
        self.process.start()
        child.close()
        if not self._conn.poll(30):
            self.kill()
            raise RuntimeError("the simulator process did not start within 30 s")
        self.port: int = self._conn.recv()

    @property
    def pid(self) -> int:
        return self.process.pid or 0

    def subscriptions(self) -> int:
        self._conn.send("subscriptions")
        return int(self._conn.recv())

    def release_quotes(self) -> None:
        """Start sending the quotes held back since start-up."""
        self._conn.send("go")
        self._conn.recv()

    def hold_quotes(self) -> None:
        """Send no more quotes (the system calms down before it is questioned and stopped)."""
        self._conn.send("hold")
        self._conn.recv()

    def stop(self) -> SimRecords:
        self._conn.send("stop")
        if not self._conn.poll(30):
            raise RuntimeError("the simulator did not hand over its records within 30 s")
        records: SimRecords = self._conn.recv()
        self.process.join(10)
        self.kill()
        return records

    def kill(self) -> None:
        if self.process.is_alive():
            self.process.kill()
            self.process.join(5)


# ---------------------------------------------------------------- processes


def pss_kib(pid: int) -> int:
    """Return the proportional set size of `pid` in KiB (0 if it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def wait_for(condition: Callable[[], _T], timeout: float, what: str, interval: float = 0.1) -> _T:
    """Return the first truthy value of `condition()`; raise after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise RuntimeError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


# ---------------------------------------------------------------- the system


# Above the rules' max_quantity (100): the rules run on every bar but size each entry to zero lots.
SILENT_LOT: Final = 1_000


@dataclass(frozen=True)
class Strategy:
    """The moving-average cross rules' knobs for a run; only the first `trading` symbols can place orders."""

    volatility: float
    stop_atr: str
    target_atr: str
    trading: int
    stagger: bool = True  # quotes spread over each 250 ms (a real feed); False: every symbol at once
    journal_sync: str = "FULL"  # the journal's synchronous setting ("FULL" or "NORMAL")
    background_nice: int = 19  # system.background_nice (its default)


def make_config(symbols: Sequence[str], work: Path, strategy: Strategy) -> Any:
    """Return a Config quoting `symbols` on 1 s bars on the embedded simulator (port set later)."""
    from actors.launcher import free_port
    from core.config import parse_config
    from core.rules import moving_average_cross

    return parse_config({
        "system": {"admin_port": free_port(), "log_dir": str(work / "logs"), "state_dir": str(work / "state"),
                   "log_level": "INFO", "background_nice": strategy.background_nice},
        "broker": {"host": "127.0.0.1", "client_id": 1},
        "simulator": {"defaults": {"price": 100, "volatility": strategy.volatility}},
        "symbols": {name: {} if i < strategy.trading else {"lot_size": SILENT_LOT}
                    for i, name in enumerate(symbols)},
        "market_data": {"bar_seconds": 1, "warmup_bars": 0},
        "strategy": {"watch_config": False},
        "rules": moving_average_cross(fast=2, slow=3, atr_period=3, stop_atr=strategy.stop_atr,
                                      target_atr=strategy.target_atr),
        "signals": {"demo": {"interval_s": 3600.0}},  # bars decide here, not signals
        "risk": BENCH_RISK,
        "journal": {"synchronous": strategy.journal_sync},
    }, source="<bench_runtime>")


# Every intent passes the risk gate; its limits must not be what the latency figures measure.
BENCH_RISK: dict[str, object] = {
    "max_order_quantity": 1_000_000, "max_order_notional": 1_000_000_000, "price_collar_pct": 50,
    "max_position_per_symbol": 1_000_000, "max_gross_exposure": 10_000_000_000,
    "max_net_exposure": 10_000_000_000, "max_open_orders": 100_000, "max_orders_per_minute": 1_000_000,
    "daily_loss_limit": 1_000_000_000}


@dataclass
class System:
    """A running actor system, its root Supervisor and the simulator it trades against."""

    asys: Any
    supervisor: Any
    config: Any
    sim: SimulatorProcess
    work: Path
    start_s: float = 0.0
    subscribed_s: float = 0.0
    session: int = 0  # the admin's session: every process of the actor system
    root_pid: int = 0
    records: SimRecords | None = None
    closed: bool = False

    def core_pids(self) -> dict[str, int]:
        """Return key -> pid of the root's children ("bus", "tws", "symbols", "groups"); {} if it does not say."""
        from messages import GetStatus, StatusSnapshot

        status = self.asys.ask(self.supervisor, GetStatus(), 30)
        if not isinstance(status, StatusSnapshot):
            print(f"  (no StatusSnapshot from the supervisor: CPU is not split by actor; got {status!r})")
            return {}
        return {c.key: c.pid for c in status.children if c.supervisor == "supervisor" and c.pid}

    def close(self) -> None:
        from messages import AdminReply, Shutdown

        if self.closed:
            return
        self.closed = True
        try:
            try:
                began = time.monotonic()
                reply = self.asys.ask(self.supervisor, Shutdown(reason="bench over"), SHUTDOWN_WAIT_S)
                if not isinstance(reply, AdminReply):
                    print(f"  (the supervisor did not confirm the ordered stop within {SHUTDOWN_WAIT_S} s)")
                elif time.monotonic() - began > 10:
                    print(f"  (the ordered stop took {time.monotonic() - began:.1f} s)")
            except Exception as exc:  # shutting down regardless
                print(f"  (the supervisor did not confirm the stop: {exc})")
            finally:
                self.asys.shutdown()
        finally:
            # asys.shutdown() returns before the last processes (admin, logger) are gone.
            deadline = time.monotonic() + 10
            while session_pids(self.session) and time.monotonic() < deadline:
                time.sleep(0.1)
            left = kill_session(self.session)
            if left:
                print(f"  (killed {left} actor system process(es) left after the shutdown)")
            try:
                self.records = self.sim.stop()
            finally:
                self.sim.kill()
                if self in _RUNNING:
                    _RUNNING.remove(self)


# ---------------------------------------------------------------- CPU accounting

_TICK: Final = os.sysconf("SC_CLK_TCK")


def cpu_sample(pids: Iterable[int]) -> dict[int, tuple[int, int, int]]:
    """Return pid -> (ppid, own CPU ticks, reaped children's CPU ticks) for the live `pids`."""
    sample = {}
    for pid in pids:
        stat = proc_stat(pid)
        if stat is not None:
            sample[pid] = (int(stat[1]), int(stat[11]) + int(stat[12]), int(stat[13]) + int(stat[14]))
    return sample


def machine_busy() -> tuple[int, int]:
    """Return (busy, total) CPU ticks of the whole machine since boot."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields) - idle, sum(fields)


CHILDREN_OF: Final = {"symbols": "symbol actors", "groups": "order group actors"}


@dataclass
class CpuWindow:
    """CPU seconds per wall second by role over a measured window."""

    cores: dict[str, float]
    machine: float  # busy fraction of all CPUs


def roles_of(system: System) -> dict[int, str]:
    """Return pid -> role of the root, the core actors, the simulator, and "<key> children" by parent pid."""
    roles = {system.root_pid: "supervisor", system.sim.pid: "simulator (own process)"}
    roles.update({pid: key for key, pid in system.core_pids().items()})
    return roles


def cpu_window(before: dict[int, tuple[int, int, int]], after: dict[int, tuple[int, int, int]],
               roles: dict[int, str], seconds: float,
               machine: tuple[tuple[int, int], tuple[int, int]]) -> CpuWindow:
    """Attribute each process's CPU ticks between two samples to its role, or to its parent's children.

    A child that exited in the window is counted through its parent's reaped-children ticks
    (thespian waits for its children), so short-lived order group actors are not lost.
    """
    cores: dict[str, float] = {}

    def add(role: str, ticks: int) -> None:
        cores[role] = cores.get(role, 0.0) + ticks / _TICK / seconds

    for pid, (ppid, ticks, reaped) in after.items():
        _, ticks0, reaped0 = before.get(pid, (ppid, 0, 0))
        role = roles.get(pid)
        if role is None:
            parent = roles.get(ppid, "")
            role = CHILDREN_OF.get(parent, "thespian admin, logger")
        add(role, ticks - ticks0)
        if roles.get(pid) in CHILDREN_OF:
            add(CHILDREN_OF[roles[pid]], reaped - reaped0)
    (busy0, total0), (busy1, total1) = machine
    return CpuWindow(cores=cores, machine=(busy1 - busy0) / max(1, total1 - total0))


_RUNNING: list[System] = []  # what a signal handler must kill


def _kill_on_signal(signum: int, frame: object) -> None:
    # thespian's ask() swallows KeyboardInterrupt: kill this run's processes by pid and leave.
    for system in _RUNNING:
        kill_session(system.session)
        system.sim.kill()
    print(f"\nbench_runtime: stopped by signal {signum}; its processes were killed", flush=True)
    os._exit(128 + signum)


def start_system(symbols: Sequence[str], strategy: Strategy, actor_classes: tuple[tuple[str, str], ...],
                 timeout: float = 300.0, hold_quotes: bool = False) -> System:
    """Start the simulator, then the actor system and Supervisor as the launcher does; wait for every subscription.

    With `hold_quotes` the simulator sends no quote until `sim.release_quotes()`.
    """
    from thespian.actors import ActorSystem

    from actors.launcher import _thespian_log_defs, export_environment
    from bench.bench_support import RECORDS_ENV
    from messages import ActorReady, ActorStatusSnapshot, GetActorStatus, StartSystem
    from simulator.launch import simulator_config

    work = Path(tempfile.mkdtemp(prefix="bench_runtime-"))
    (work / "stamps").mkdir()
    config = make_config(symbols, work, strategy)
    for path in (config.system.log_dir, config.system.state_dir):
        Path(path).mkdir(parents=True, exist_ok=True)
    sim = SimulatorProcess(simulator_config(config, port=0, pacing_msgs_per_s=0,
                                            stagger_quotes=strategy.stagger), hold_quotes)
    config = replace(config, broker=replace(config.broker, port=sim.port))
    os.environ["THESPIAN_BASE_IPADDR"] = config.system.bind_address
    export_environment(config, Path(config.system.log_dir).resolve())
    os.environ[RECORDS_ENV] = str(work / "stamps")
    try:
        asys = ActorSystem("multiprocTCPBase", {"Admin Port": config.system.admin_port},
                           logDefs=_thespian_log_defs(config))
    except BaseException:
        sim.kill()
        raise
    system = System(asys=asys, supervisor=None, config=config, sim=sim, work=work)
    _RUNNING.append(system)
    try:
        system.supervisor = asys.createActor("actors.supervisor.Supervisor", globalName="supervisor")
        status = asys.ask(system.supervisor, GetActorStatus(), 30)
        if not isinstance(status, ActorStatusSnapshot):
            raise RuntimeError(f"the supervisor did not answer GetActorStatus (got {status!r})")
        system.session, system.root_pid = session_of(status.pid), status.pid
        started = time.monotonic()
        reply = asys.ask(system.supervisor, StartSystem(config=config, actor_classes=actor_classes), timeout)
        if not isinstance(reply, ActorReady):
            raise RuntimeError(f"the system did not start (got {reply!r})")
        system.start_s = time.monotonic() - started
        wait_for(lambda: sim.subscriptions() >= len(symbols), timeout, "every market-data subscription", 0.2)
        system.subscribed_s = time.monotonic() - started
    except BaseException:
        system.close()
        raise
    return system


def measure(system: System, seconds: float) -> tuple[tuple[int, int], tuple[int, int], CpuWindow]:
    """Wait `seconds`; return the window's (monotonic, wall) start and end and the CPU used by role."""
    roles = roles_of(system)

    def sample() -> dict[int, tuple[int, int, int]]:
        return cpu_sample([*session_pids(system.session), system.sim.pid])

    before, machine0 = sample(), machine_busy()
    start = (time.monotonic_ns(), time.time_ns())
    time.sleep(seconds)
    end = (time.monotonic_ns(), time.time_ns())
    after, machine1 = sample(), machine_busy()
    return start, end, cpu_window(before, after, roles, (end[0] - start[0]) / 1e9, (machine0, machine1))


def _discard(work: Path, keep: bool) -> None:
    if keep:
        print(f"  logs and stamps kept in {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)


# ---------------------------------------------------------------- statistics


def percentile(values: Sequence[float], q: float) -> float:
    """Return the nearest-rank q-quantile (0 < q <= 1) of `values` (nan if empty)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def summary(values: Sequence[float]) -> dict[str, float]:
    return {"n": len(values), "p50": percentile(values, 0.5), "p90": percentile(values, 0.9),
            "p99": percentile(values, 0.99), "max": max(values) if values else math.nan}


def latest_at_or_before(times: Sequence[int], t: int) -> int | None:
    i = bisect.bisect_right(times, t) - 1
    return times[i] if i >= 0 else None


def symbol_of(group_id: str) -> str:
    return group_id.rsplit("-", 2)[0]  # group ids are f"{symbol}-{incarnation}-{n}"


@dataclass
class Records:
    """What the bench subclasses wrote: order-path stamps per group, every QuoteUpdate, every child Snapshot."""

    groups: dict[str, dict[str, list[int]]] = field(default_factory=dict)  # group id -> stage -> numbers
    quotes: list[tuple[str, int, int, int, int]] = field(default_factory=list)  # symbol, received, ts, n, cpu
    snapshots: list[tuple[int, int]] = field(default_factory=list)  # received, handler CPU ns


def read_records(directory: Path) -> Records:
    """Parse every stamp file in `directory` (the first stamp of a group's stage wins)."""
    records = Records()
    for path in directory.glob("stamps-*.tsv"):
        for line in path.read_text(encoding="ascii").splitlines():
            stage, key, *fields = line.split("\t")
            try:
                numbers = [int(n) for n in fields]
            except ValueError:
                continue  # a line cut short by a killed process
            if stage == "quote" and len(numbers) == 4:
                records.quotes.append((key, *numbers))  # type: ignore[arg-type]
            elif stage == "snapshot" and len(numbers) == 2:
                records.snapshots.append((numbers[0], numbers[1]))
            elif numbers:
                records.groups.setdefault(key, {}).setdefault(stage, numbers)
    return records


# ---------------------------------------------------------------- 1. tick-to-order latency


SLOWEST: Final = 5  # the slowest entries shown with their stages

STAGES: Final = (
    ("quote sent -> tws handles the tick (wire)", "sent", "tick"),
    ("tws tick -> symbol actor has the QuoteUpdate", "tick", "quote"),
    ("symbol: bar, rules, journal -> intent sent", "quote", "place"),
    ("intent sent -> risk has it", "place", "risk_in"),
    ("risk: check, journal -> legs sent", "risk_in", "risk_out"),
    ("legs sent by risk -> entry SubmitOrder at tws", "risk_out", "tws"),
    ("tws: legs queued, pacer -> entry released", "tws", "released"),
    ("tws: id, journal, write -> PLACE_ORDER at simulator", "released", "arrived"),
    ("(off the path) entry sent -> its group actor configured", "place", "group_up"),
)


@dataclass
class QuoteStats:
    """The QuoteUpdates the symbol actors received in a window, and the symbols supervisor's Snapshots."""

    staleness_ms: list[float] = field(default_factory=list)
    coalesced: list[int] = field(default_factory=list)
    handler_cpu_ms: list[float] = field(default_factory=list)
    wire_ms: list[float] = field(default_factory=list)
    updates_per_s: float = math.nan     # per symbol actor
    snapshots_per_s: float = math.nan   # child Snapshots the symbols supervisor handled
    snapshot_cpu_ms: list[float] = field(default_factory=list)
    process_cpu_ms: float = math.nan    # symbol actors' CPU / QuoteUpdates


def quote_stats(records: Records, window: tuple[int, int], cpu: CpuWindow, symbols: int,
                wall_sends: dict[str, list[int]] | None = None) -> QuoteStats:
    """Return the QuoteUpdates and Snapshots of the wall-clock `window`; with the simulator's sends, the wire too."""
    stats = QuoteStats()
    start, end = window
    seconds = (end - start) / 1e9
    for symbol, received, tick, merged, handler_ns in records.quotes:
        if start <= received <= end:
            stats.staleness_ms.append((received - tick) / _MS)
            stats.coalesced.append(merged)
            stats.handler_cpu_ms.append(handler_ns / _MS)
            if wall_sends and (sent := latest_at_or_before(wall_sends.get(symbol, []), tick)) is not None:
                stats.wire_ms.append((tick - sent) / _MS)
    stats.updates_per_s = len(stats.staleness_ms) / seconds / max(1, symbols)
    snapshots = [cpu_ns / _MS for received, cpu_ns in records.snapshots if start <= received <= end]
    stats.snapshots_per_s, stats.snapshot_cpu_ms = len(snapshots) / seconds, snapshots
    if stats.staleness_ms:
        stats.process_cpu_ms = cpu.cores.get("symbol actors", 0.0) * seconds * 1000 / len(stats.staleness_ms)
    return stats


@dataclass
class LatencyRun:
    latencies_ms: list[float]
    stages_ms: dict[str, list[float]]
    via_trigger_ms: list[float]
    newer_quote: int
    entries_per_s: float
    orders_per_s: float
    quotes: QuoteStats
    cpu: CpuWindow
    # The slowest entries measured from their trigger quote: (total ms, {stage: ms}), slowest first.
    slowest: list[tuple[float, dict[str, float]]] = field(default_factory=list)


def bench_latency(symbols: int, seconds: float, warmup: float, strategy: Strategy, keep: bool = False) -> LatencyRun:
    """Trade `symbols` symbols for `seconds` after `warmup`; return entry latencies and their breakdown."""
    names = [f"S{i:03d}" for i in range(symbols)]
    # Quotes wait until the whole tree is up: a symbol actor that decides to enter before "groups"
    # is ready (it starts last, after every symbol) fails with "no peer 'groups'" and restarts.
    system = start_system(names, strategy, TIMED_ORDER_PATH, hold_quotes=True)
    try:
        system.sim.release_quotes()
        print(f"  {symbols} symbols: started in {system.start_s:.1f} s, subscribed after {system.subscribed_s:.1f} s; "
              f"quotes released; measuring {seconds:g} s after {warmup:g} s warm-up", flush=True)
        time.sleep(warmup)
        window, window_end, cpu = measure(system, seconds)
        system.sim.hold_quotes()
    finally:
        system.close()
    sim = system.records
    assert sim is not None
    records = read_records(system.work / "stamps")
    _discard(system.work, keep)

    mono_sends = {s: [m for m, _ in sends] for s, sends in sim.quote_sends.items()}
    wall_sends = {s: [w for _, w in sends] for s, sends in sim.quote_sends.items()}
    latencies, via_trigger, newer = [], [], 0
    slowest: list[tuple[float, dict[str, float]]] = []
    stages: dict[str, list[float]] = {name: [] for name, _, _ in STAGES}
    seen: set[str] = set()
    orders_in_window = 0
    for ref, transmit, mono, wall in sim.place_orders:
        if not window[0] <= mono <= window_end[0]:
            continue
        orders_in_window += 1
        if not ref.endswith(ENTRY_SUFFIX) or transmit or ref in seen:
            continue
        seen.add(ref)
        gid = ref[: -len(ENTRY_SUFFIX)]
        symbol = symbol_of(gid)
        sent = latest_at_or_before(mono_sends.get(symbol, []), mono)
        if sent is None:
            continue
        latencies.append((mono - sent) / _MS)
        marks = records.groups.get(gid, {})
        if "place" not in marks:
            continue
        place, tick, quote = marks["place"]
        trigger_sent = latest_at_or_before(wall_sends.get(symbol, []), tick)
        if trigger_sent is None:
            continue
        times = {"sent": trigger_sent, "tick": tick, "quote": quote, "place": place, "arrived": wall,
                 **{stage: values[0] for stage, values in marks.items() if stage != "place"}}
        entry: dict[str, float] = {}
        for name, start, end in STAGES:
            if start in times and end in times:
                entry[name] = (times[end] - times[start]) / _MS
                stages[name].append(entry[name])
        via_trigger.append((wall - trigger_sent) / _MS)
        slowest.append((via_trigger[-1], entry))
        newer += latest_at_or_before(wall_sends.get(symbol, []), wall) != trigger_sent
    span = (window_end[0] - window[0]) / 1e9
    return LatencyRun(latencies_ms=latencies, stages_ms=stages, via_trigger_ms=via_trigger, newer_quote=newer,
                      entries_per_s=len(latencies) / span, orders_per_s=orders_in_window / span,
                      quotes=quote_stats(records, (window[1], window_end[1]), cpu, symbols, wall_sends), cpu=cpu,
                      slowest=sorted(slowest, key=lambda e: -e[0])[:SLOWEST])


@dataclass
class ScaleRun:
    symbols: int
    start_s: float
    subscribed_s: float
    processes: int
    pss_kib: int
    quotes: QuoteStats | None = None
    cpu: CpuWindow | None = None


def bench_scale(symbols: int, settle: float, stale_seconds: float, strategy: Strategy,
                keep: bool = False) -> ScaleRun:
    """Start `symbols` symbol actors; return start-up times, the system's PSS and (if asked) quote staleness.

    Quotes are held during start-up: with 300 symbols quoting, each new actor waited behind the
    symbols supervisor's Snapshot backlog and the start-up crawled (65 actors in 90 s, then ~1 a minute).
    """
    names = [f"S{i:03d}" for i in range(symbols)]
    system = start_system(names, strategy, (TIMED_SYMBOLS,), hold_quotes=True)
    try:
        system.sim.release_quotes()
        time.sleep(settle)  # quotes flow to every actor before memory is read
        pids = session_pids(system.session)
        total = sum(pss_kib(pid) for pid in pids)
        print(f"  {symbols} symbols: started in {system.start_s:.1f} s, subscribed after {system.subscribed_s:.1f} s; "
              f"{len(pids)} processes, PSS {total / 1024:.1f} MiB", flush=True)
        run = ScaleRun(symbols=symbols, start_s=system.start_s, subscribed_s=system.subscribed_s,
                       processes=len(pids), pss_kib=total)
        if stale_seconds > 0:
            (_, window), (_, window_end), run.cpu = measure(system, stale_seconds)
            system.sim.hold_quotes()
    finally:
        system.close()
    if stale_seconds > 0 and run.cpu is not None:
        run.quotes = quote_stats(read_records(system.work / "stamps"), (window, window_end), run.cpu, symbols)
    _discard(system.work, keep)
    return run


# ---------------------------------------------------------------- the table


def _med(values: Iterable[float]) -> float:
    values = [v for v in values if not math.isnan(v)]
    return statistics.median(values) if values else math.nan


def _runs(values: Sequence[float], fmt: str) -> str:
    return "" if len(values) < 2 else "runs " + ", ".join(format(v, fmt) for v in values)


def _goal(value: float, goal: float) -> str:
    if math.isnan(value):
        return "no data"
    return "ok" if value <= goal else f"MISSED by {value - goal:,.1f} ms (goal <= {goal:g} ms)"


def print_table(rows: list[tuple[str, str, str, str]]) -> None:
    header = ("measure", "median", "detail", "goal")
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    line = "  ".join(f"{{:<{w}}}" for w in widths)
    print(line.format(*header))
    print(line.format(*("-" * w for w in widths)))
    for row in rows:
        print(line.format(*row).rstrip())


def _mean(values: Sequence[float]) -> float:
    return statistics.fmean(values) if values else math.nan


def quote_rows(label: str, stats: Sequence[QuoteStats | None], wire: bool) -> list[tuple[str, str, str, str]]:
    """Return the staleness, coalescing, per-quote CPU, Snapshot and (optionally) wire rows of `stats`."""
    q = [x for x in stats if x is not None]
    stale = [summary(x.staleness_ms) for x in q]
    rows = [
        (f"quote staleness ({label}) p50", f"{_med(s['p50'] for s in stale):,.1f} ms",
         f"now - quote.ts_ns at the symbol actor, over {_med(s['n'] for s in stale):.0f} QuoteUpdates", ""),
        (f"quote staleness ({label}) p99", f"{_med(s['p99'] for s in stale):,.1f} ms",
         f"max {_med(s['max'] for s in stale):,.1f} ms", ""),
        (f"coalesced per QuoteUpdate ({label})", f"{_med(_mean(x.coalesced) for x in q):.1f} ticks",
         f"{_med(x.updates_per_s for x in q):.2f} QuoteUpdates/s per symbol for 4 quotes/s sent "
         f"(one quote = {TICKS_PER_QUOTE} wire ticks)", ""),
        (f"symbol actor CPU per QuoteUpdate ({label})", f"{_med(x.process_cpu_ms for x in q):.2f} ms",
         f"the process's CPU / QuoteUpdates; in the quote handler itself "
         f"{_med(_mean(x.handler_cpu_ms) for x in q):.2f} ms (the rest: receiving and acknowledging it, "
         f"snapshots, logs)", ""),
        (f"symbols supervisor: child Snapshots ({label})", f"{_med(x.snapshots_per_s for x in q):,.0f}/s handled",
         f"a symbol sends one when its position, working groups or counter change; handler CPU "
         f"{_med(_mean(x.snapshot_cpu_ms) for x in q):.2f} ms each (one SubtreeChange upward)", ""),
    ]
    if wire:
        w = [summary(x.wire_ms) for x in q]
        rows.append(("wire baseline: quote sent -> tws handles the tick", f"{_med(s['p50'] for s in w):,.2f} ms",
                     f"p99 {_med(s['p99'] for s in w):,.1f} ms, from quote.ts_ns (tws's stamp) of every QuoteUpdate",
                     ""))
    return rows


def latency_rows(runs: list[LatencyRun], symbols: int, trading: int,
                 phases: str = "") -> list[tuple[str, str, str, str]]:
    rows: list[tuple[str, str, str, str]] = []
    if phases:
        rows.append((f"-- quotes {phases}", "", "", ""))
    stats = [summary(r.latencies_ms) for r in runs]
    rows.append((f"tick-to-order entries ({symbols} symbols, {trading} trading)", f"{_med(s['n'] for s in stats):.0f}",
                 f"{_med(r.entries_per_s for r in runs):.2f} entries/s, {_med(r.orders_per_s for r in runs):.1f} "
                 f"PLACE_ORDER/s (all legs, exits)", ""))
    for key, goal in (("p50", P50_GOAL_MS), ("p90", None), ("p99", P99_GOAL_MS), ("max", None)):
        values = [s[key] for s in stats]
        value = _med(values)
        rows.append((f"tick-to-order {key}", f"{value:,.1f} ms", _runs(values, ",.1f"),
                     _goal(value, goal) if goal is not None else ""))
    via = [summary(r.via_trigger_ms) for r in runs]
    real50, real99 = _med(s["p50"] for s in via), _med(s["p99"] for s in via)
    verdict = ("no data" if math.isnan(real50) else "ok" if real50 <= P50_GOAL_MS and real99 <= P99_GOAL_MS
               else f"MISSED: p50 by {max(0.0, real50 - P50_GOAL_MS):,.1f} ms, p99 by "
                    f"{max(0.0, real99 - P99_GOAL_MS):,.1f} ms")
    rows.append(("  from the real trigger quote p50 / p99", f"{real50:,.1f} / {real99:,.1f} ms",
                 f"a newer quote of the symbol left before the order for {_med(r.newer_quote for r in runs):.0f} of "
                 f"{_med(s['n'] for s in via):.0f} entries (then the row above understates)", verdict))
    for name, _, _ in STAGES:
        parts = [summary(r.stages_ms[name]) for r in runs]
        rows.append((f"    {name}", f"{_med(p['p50'] for p in parts):,.2f} ms",
                     f"p99 {_med(p['p99'] for p in parts):,.1f} ms, max {_med(p['max'] for p in parts):,.1f} ms", ""))
    rows += slowest_rows(runs)
    rows += quote_rows(f"{symbols} symbols", [r.quotes for r in runs], wire=True)
    rows.append(cpu_row(f"CPU while trading ({symbols} symbols)", [r.cpu for r in runs]))
    return rows


_STAGE_SHORT: Final = ("wire", "to symbol", "symbol", "to risk", "risk", "to tws", "pacer", "tws")


def slowest_rows(runs: Sequence[LatencyRun]) -> list[tuple[str, str, str, str]]:
    """Return a row per slowest entry of the runs (from its trigger quote), its time split by stage."""
    entries = sorted((e for r in runs for e in r.slowest), key=lambda e: -e[0])[:SLOWEST]
    rows = []
    for rank, (total, stages) in enumerate(entries, 1):
        parts = [f"{short} {stages[name]:,.1f}" for short, (name, _, _) in zip(_STAGE_SHORT, STAGES)
                 if name in stages]
        worst = max(parts, key=lambda p: float(p.rsplit(" ", 1)[1].replace(",", "")), default="")
        rows.append((f"  slowest entry #{rank} (from its trigger)", f"{total:,.1f} ms",
                     f"{' | '.join(parts)} ms; most in: {worst.rsplit(' ', 1)[0]}", ""))
    return rows


def cpu_row(label: str, windows: Sequence[CpuWindow | None]) -> tuple[str, str, str, str]:
    """Return a row: the machine's busy share and the cores each role used (medians), busiest first."""
    present = [w for w in windows if w is not None]
    roles = {role for w in present for role in w.cores}
    cores = {role: _med(w.cores.get(role, 0.0) for w in present) for role in roles}
    detail = ", ".join(f"{role} {value:.2f}" for role, value in sorted(cores.items(), key=lambda kv: -kv[1])
                       if value >= 0.005)
    return (label, f"{_med(w.machine for w in present):.0%} busy",
            f"machine busy (every user of it); cores used: {detail} (of {os.cpu_count()})", "")


def scale_rows(big: list[ScaleRun], small: list[ScaleRun]) -> list[tuple[str, str, str, str]]:
    n = big[0].symbols
    per_actor = [(b.pss_kib - s.pss_kib) / (b.symbols - s.symbols) / 1024 for b, s in zip(big, small)]
    rows = [
        (f"start {n} symbol actors (StartSystem -> ActorReady)", f"{_med(r.start_s for r in big):.1f} s",
         f"every subscription at the simulator after {_med(r.subscribed_s for r in big):.1f} s; "
         f"{BASELINE_SYMBOLS} symbols: {_med(r.start_s for r in small):.1f} s", ""),
        (f"PSS total, {n} symbols", f"{_med(r.pss_kib for r in big) / 1024:,.1f} MiB",
         f"{_med(r.processes for r in big):.0f} processes (admin, logger, supervisor, core actors, symbol actors)", ""),
        (f"PSS total, {BASELINE_SYMBOLS} symbols", f"{_med(r.pss_kib for r in small) / 1024:,.1f} MiB",
         f"{_med(r.processes for r in small):.0f} processes", ""),
        ("PSS per symbol actor", f"{_med(per_actor):,.2f} MiB",
         f"(total_{n} - total_{BASELINE_SYMBOLS}) / {n - BASELINE_SYMBOLS}"
         + (f"; {_runs(per_actor, '.2f')}" if len(per_actor) > 1 else ""), ""),
    ]
    rows += quote_rows(f"{n} symbols, quotes staggered", [r.quotes for r in big], wire=False)
    rows.append(cpu_row(f"CPU while quoting ({n} symbols)", [r.cpu for r in big]))
    return rows


def _finite(value: float) -> float | None:
    return None if math.isnan(value) else value


def json_figures(args: argparse.Namespace, latency: dict[str, list[LatencyRun]], big: list[ScaleRun],
                 small: list[ScaleRun]) -> dict[str, object]:
    """Return the table's figures (medians of the runs) as plain values for --json; NaN becomes None."""
    phases: dict[str, object] = {}
    for phase, runs in latency.items():
        stats = [summary(r.latencies_ms) for r in runs]
        via = [summary(r.via_trigger_ms) for r in runs]
        phases[phase] = {
            "symbols": args.symbols, "trading": min(args.trading, args.symbols), "runs": len(runs),
            "entries": _finite(_med(s["n"] for s in stats)),
            "entries_per_s": _finite(_med(r.entries_per_s for r in runs)),
            "orders_per_s": _finite(_med(r.orders_per_s for r in runs)),
            **{f"{key}_ms": _finite(_med(s[key] for s in stats)) for key in ("p50", "p90", "p99", "max")},
            "trigger_p50_ms": _finite(_med(s["p50"] for s in via)),
            "trigger_p99_ms": _finite(_med(s["p99"] for s in via)),
            "newer_quote": _finite(_med(r.newer_quote for r in runs)),
            "stages_ms": {name: {key: _finite(_med(summary(r.stages_ms[name])[key] for r in runs))
                                 for key in ("p50", "p99", "max")} for name, _, _ in STAGES},
        }
    scale: dict[str, object] | None = None
    if big and small:
        per_actor = [(b.pss_kib - s.pss_kib) / (b.symbols - s.symbols) / 1024 for b, s in zip(big, small)]
        scale = {
            "symbols": big[0].symbols, "baseline_symbols": small[0].symbols, "runs": len(big),
            "pss_per_symbol_actor_mib": _finite(_med(per_actor)),
            "pss_total_mib": _finite(_med(r.pss_kib for r in big) / 1024),
            "pss_baseline_mib": _finite(_med(r.pss_kib for r in small) / 1024),
            "processes": _finite(_med(r.processes for r in big)),
            "start_s": _finite(_med(r.start_s for r in big)),
            "subscribed_s": _finite(_med(r.subscribed_s for r in big)),
            "staleness_p50_ms": _finite(_med(summary(r.quotes.staleness_ms)["p50"] for r in big if r.quotes)),
            "staleness_p99_ms": _finite(_med(summary(r.quotes.staleness_ms)["p99"] for r in big if r.quotes)),
        }
    return {"args": {k: v for k, v in vars(args).items() if k != "json"}, "cpus": os.cpu_count(),
            "latency": phases, "scale": scale}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="measured wall seconds of the latency run")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds after the last subscription not measured")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each measurement (medians are shown)")
    parser.add_argument("--symbols", type=int, default=100, help="symbols of the latency run")
    parser.add_argument("--trading", type=int, default=20,
                        help="how many of the latency run's symbols can order (the others only quote and compute)")
    parser.add_argument("--scale-symbols", type=int, default=300, help="symbols of the memory/staleness run")
    parser.add_argument("--stale-seconds", type=float, default=20.0, help="measured seconds of staleness at scale")
    parser.add_argument("--volatility", type=float, default=3.0, help="annualised volatility of the simulated prices")
    parser.add_argument("--stop-atr", default="1", help="stop_atr of the latency run's rules")
    parser.add_argument("--target-atr", default="1", help="target_atr of the latency run's rules")
    parser.add_argument("--keep", action="store_true", help="keep each run's logs and stamps (the path is printed)")
    parser.add_argument("--background-nice", type=int, default=19, choices=range(20), metavar="0-19",
                        help="system.background_nice (default 19, the setting's; 0: every actor alike)")
    parser.add_argument("--journal-sync", choices=("FULL", "NORMAL"), default="FULL",
                        help="journal.synchronous of the measured system (default FULL, as shipped)")
    parser.add_argument("--phases", choices=("both", "staggered", "lockstep"), default="both",
                        help="quote timing of the latency run: spread over each 250 ms like a real feed "
                             "(staggered), all symbols at the same instants (lockstep, the worst case), or both")
    parser.add_argument("--skip", choices=("latency", "scale"), action="append", default=[],
                        help="leave a part out (repeatable)")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _kill_on_signal)
    began = time.monotonic()
    trading = Strategy(volatility=args.volatility, stop_atr=args.stop_atr, target_atr=args.target_atr,
                       trading=min(args.trading, args.symbols), journal_sync=args.journal_sync,
                       background_nice=args.background_nice)
    quiet = replace(trading, trading=0)
    print(f"actor runtime benchmark: multiprocTCPBase, simulator in its own process (speed 1, 4 quotes/s per "
          f"symbol), {args.repeat} run(s) each, {os.cpu_count()} CPUs\n", flush=True)
    rows: list[tuple[str, str, str, str]] = []
    by_phase: dict[str, list[LatencyRun]] = {}
    big: list[ScaleRun] = []
    small: list[ScaleRun] = []
    if "latency" not in args.skip:
        for stagger in {"both": (True, False), "staggered": (True,), "lockstep": (False,)}[args.phases]:
            phases = PHASES[stagger]
            runs = by_phase.setdefault("staggered" if stagger else "lockstep", [])
            for i in range(args.repeat):
                print(f"latency run {i + 1}/{args.repeat}, quotes {phases}", flush=True)
                runs.append(bench_latency(args.symbols, args.seconds, args.warmup,
                                          replace(trading, stagger=stagger), args.keep))
            rows += latency_rows(runs, args.symbols, trading.trading, phases)
    if "scale" not in args.skip:
        for i in range(args.repeat):
            print(f"scale run {i + 1}/{args.repeat}", flush=True)
            big.append(bench_scale(args.scale_symbols, 3.0, args.stale_seconds, quiet, args.keep))
            small.append(bench_scale(BASELINE_SYMBOLS, 3.0, 0.0, quiet, args.keep))
        rows += scale_rows(big, small)
    print()
    print_table(rows)
    if args.json is not None:
        args.json.write_text(json.dumps(json_figures(args, by_phase, big, small), indent=2, default=str) + "\n",
                             encoding="utf-8")
        print(f"\nfigures written to {args.json}")
    print(f"\nbenchmark took {time.monotonic() - began:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
