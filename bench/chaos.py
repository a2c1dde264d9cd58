"""Issue 9's chaos run: accelerated trading on simulated symbols under seeded random faults, then the checks.

Run: ``python -m bench.chaos [--minutes N | --seconds S] [--symbols 50] [--seed 1] [--speed 4] [--json PATH]
[--work DIR] [--strict] [--squeeze]``

The whole actor tree runs as the e2e tests run it (multiprocTCPBase on a free loopback admin
port, an admin token, the simulator in this process) against the simulator on an accelerated
clock (`--speed` market seconds per wall second), trading `--symbols` random walks on 1 s bars:
a fast moving-average cross, long and short brackets on prediction signals, trailing stops. A
loopback HTTP prediction API feeds it a steady flow of signals. The risk limits sit below what
the rules ask for, so the gate denies intents all along (and the risk check can fail).

A seeded scheduler injects faults at random times: each round deals every kind once in a random
order, then the weighted extra draws, with a pause of 0.8 to 2.5 s after each injection:

* kill -9 of a symbol actor, an order group actor, the TwsConnection, the RiskManager;
* kill -9 of a journal writer while it holds the journal's write lock (there is no Journal actor:
  each actor writes the SQLite journal itself; the victim is whichever symbol, group, connection
  or risk process /proc/locks shows holding the WAL write lock, i.e. mid-transaction);
* connection drops, and drops followed by refused reconnects (a TWS restart);
* 1100/1101/1102 storms (link lost and restored several times, data kept or lost);
* repeated order statuses, fills after cancels, silent data stops of one symbol;
* malformed and hostile prediction-API replies (bad JSON and types, huge and deeply nested
  bodies, floods, log-forging ids, hostile symbols, hanging and lying servers);
* malformed and hostile admin messages (wrong types, missing or wrong tokens, non-commands,
  garbage bytes on the admin port);
* pacing pressure: a signal for every symbol at once and a market-data loss (1101) that makes
  every symbol re-subscribe, all through the connection's pacer; with `--squeeze` also under a
  budget the simulator squeezes (another API client's share: the excess gets error 100 and is
  dropped, as TWS does).

Each injection then waits for its own sign of recovery: the killed actor back in a new
incarnation (a group may finish instead), the connection READY with every symbol subscribed,
the silence noticed and the data flowing again, the counter faults used up, a valid signal after
the bad ones accepted and none of the bad ones, the admin error expected. Within its deadline it
counts as survived, else as lost; "untriggered" is a fault nothing exercised (a counter nothing
used up, a silence while nothing watched).

At the end the faults stop and are healed, the system settles (every pending recovery resolved,
connection READY, every symbol subscribed and running), the market is frozen, and these checks
run, each printed PASS/FAIL with its detail:

1. every symbol actor's position equals the simulator's;
2. the simulator received no orderRef twice;
3. no order that breaks a risk limit reached the simulator: each order in the simulator's order
   log belongs to an intent the gate approved (journal); an entry's quantity, notional (at the
   price the gate used), the position after it and the open orders with it are within the
   limits; a child is no bigger than its entry; an exit that grew the simulator's position
   (possible when a fill is reported after its cancel was acknowledged) is held to the entry
   limits too and reported as a finding;
4. every fill the simulator made is in the journal, once, and no other; each symbol's journaled
   fills add up to the simulator's position;
5. the system still answers `status` (connection READY, no symbol quarantined, core actors running);
6. the journal passes SQLite's integrity check after its writers were killed mid-transaction.

Findings follow the checks: what the run saw that the checks do not judge: faults lost (no
sign of recovery within the deadline), messages over IB's 50/s at the simulator, forged log
lines, exits that grew a position, signal faults the source took long to get through, restarts
nobody caused. The exit code is 0 only when every check passes (with `--strict`, and no
finding). Whatever happens, the actor system, the simulator and the signal server are stopped,
and no process of the run is left.
"""

from __future__ import annotations

import argparse
import heapq
import json
import os
import random
import re
import shutil
import socket
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Final

from thespian.actors import ActorSystem

from actors.processes import listener_pid, session_of
from core.config import Config, parse_config
from core.risk import is_reducing
from core.rules import moving_average_cross
from journal.store import IntentRow, Journal
from messages import (
    ActorReady,
    AdminError,
    AdminErrorCode,
    AdminQuery,
    AdminReply,
    AdminTable,
    CancelAll,
    ChildStatus,
    Flatten,
    GetPositions,
    GetStatus,
    Halt,
    Message,
    PositionsSnapshot,
    QueryKind,
    RestartActor,
    Resume,
    SetLogLevel,
    Shutdown,
    StartSystem,
    StatusSnapshot,
)
from messages.connection import ConnectionState
from simulator.market import WalkParams
from simulator.server import OrderRecord, Simulator, SimulatorConfig, SimulatorThread, SymbolSpec
from tests.e2e.harness import System, descendants, free_port, kill

SUPERVISOR: Final = "supervisor"
ADMIN_TOKEN: Final = "chaos-admin-token"
SIGNAL_KEY_ENV: Final = "CHAOS_SIGNAL_KEY"
SIGNAL_KEY: Final = "chaos-signal-key"
CLIENT_ID: Final = 1
STALE_S: Final = 2.0              # market_data.stale_after_s: a silence this long is noticed
OBSERVE_S: Final = 0.5            # how often the scheduler looks at the system
RECOVERY_S: Final = 45.0          # the deadline of a recovery
SIGNALS_S: Final = 120.0          # the deadline of a signal fault: a flood takes the source a while
SLOW_SIGNALS_S: Final = 10.0      # a signal fault survived later than this is a finding
COUNTER_S: Final = 60.0           # the deadline of a counter fault (it waits for orders to use it)
SETTLE_S: Final = 120.0           # the longest the end may wait for the system to settle
GHOST_S: Final = 10.0             # a child listed running this long after its process is gone is a finding
UNANSWERED_S: Final = 15.0        # a status without every supervisor's answer this long is a finding
STALLED_S: Final = 60.0           # the next fault not injectable this long (what it needs never shows) too
QUIET_S: Final = 3.0              # no new order or fill at the frozen simulator for this long: at rest
NOTIONAL_SLACK: Final = Decimal("0.000001")

TICKERS: Final = (
    "AAPL", "MSFT", "SPY", "AMZN", "NVDA", "GOOG", "META", "TSLA", "AMD", "INTC", "NFLX", "ORCL", "IBM",
    "CSCO", "ADBE", "CRM", "QCOM", "TXN", "AVGO", "MU", "PYPL", "SHOP", "UBER", "ABNB", "SQ", "JPM",
    "BAC", "WFC", "GS", "MS", "C", "V", "MA", "AXP", "KO", "PEP", "MCD", "SBUX", "NKE", "DIS", "WMT",
    "TGT", "COST", "HD", "LOW", "XOM", "CVX", "PFE", "MRK", "JNJ", "UNH", "ABBV", "LLY", "T", "VZ",
    "QQQ", "IWM", "DIA", "GLD", "TLT",
)

# Long-only SMA cross on bars, long and short brackets on signals, trailing stops; the rules ask
# for up to MAX_QUANTITY shares where the gate allows RISK["max_order_quantity"].
MAX_QUANTITY: Final = 400
RULES: Final[dict[str, dict[str, object]]] = {
    **moving_average_cross(fast=2, slow=4, atr_period=3, stop_atr=1.5, target_atr=1.5, risk=40,
                           max_quantity=MAX_QUANTITY),
    "sig_exit": {"on": "signal", "priority": 100, "final": True,
                 "when": "(position.long and signal.short) or (position.short and signal.long)",
                 "action": {"type": "close_position"}},
    "sig_long": {"on": "signal", "priority": 50,
                 "when": "signal.long and signal.confidence >= 0.6 and position.flat and not position.entry_working",
                 "all": ["known(atr(3))"],
                 "action": {"type": "open_bracket", "side": "buy", "risk": 40, "stop_atr": 1.5, "target_atr": 2,
                            "atr_period": 3, "max_quantity": MAX_QUANTITY}},
    "sig_short": {"on": "signal", "priority": 50,
                  "when": "signal.short and signal.confidence >= 0.6 and position.flat and not position.entry_working",
                  "all": ["known(atr(3))"],
                  "action": {"type": "open_bracket", "side": "sell", "risk": 40, "stop_atr": 1.5, "target_atr": 2,
                             "atr_period": 3, "max_quantity": MAX_QUANTITY}},
    "trail": {"on": "bar", "priority": 8,
              "when": "not position.flat and position.unrealized_pnl > 0 and known(position.stop)",
              "action": {"type": "trail_stop", "trail_atr": 2.0, "atr_period": 3}},
}
RISK: Final[dict[str, object]] = {
    "max_order_quantity": 150, "max_order_notional": 25_000, "price_collar_pct": 5,
    "max_position_per_symbol": 300, "max_gross_exposure": 50_000_000, "max_net_exposure": 50_000_000,
    "max_open_orders": 120, "max_orders_per_minute": 2_000, "daily_loss_limit": 1_000_000_000,
}
BUDGET: Final = {"max_restarts": 1000, "window_s": 60.0}  # chaos kills far more than a real budget allows

# (kind, what the table calls it, weight: extra draws per round beyond the one every kind gets)
KINDS: Final[tuple[tuple[str, str, int], ...]] = (
    ("kill_symbol", "kill -9 symbol actor", 3),
    ("kill_group", "kill -9 order group actor", 3),
    ("kill_tws", "kill -9 TwsConnection", 1),
    ("kill_risk", "kill -9 RiskManager", 1),
    ("kill_journal", "kill -9 journal writer mid-transaction", 1),
    ("drop", "connection drop", 1),
    ("refuse", "drop + refused reconnects", 1),
    ("storm", "1100/1101/1102 storm", 1),
    ("dup_status", "repeated order statuses", 1),
    ("fill_after_cancel", "fill after cancel", 1),
    ("silence", "silent data stop", 1),
    ("bad_signals", "malformed signals", 1),
    ("hostile_signals", "hostile signals", 1),
    ("bad_admin", "malformed/hostile admin messages", 1),
    ("pacing", "pacing pressure", 1),
)
LABEL: Final = {kind: label for kind, label, _ in KINDS}
KILL_KEYS: Final = {"kill_tws": "tws", "kill_risk": "risk"}
NO_JOURNAL_ACTOR: Final = ("there is no Journal actor process: every actor writes the SQLite journal itself; "
                           "'kill -9 journal writer' kills whichever symbol/group/tws/risk process holds the "
                           "journal's WAL write lock (mid-transaction, from /proc/locks)")


# ---------------------------------------------------------------- settings


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    """One chaos run: how long, how big, which seed."""

    seconds: float = 600.0
    symbols: int = 50
    seed: int = 1
    speed: float = 4.0               # market seconds per wall second
    gap: tuple[float, float] = (0.8, 2.5)   # wall seconds between two injections
    signals_per_s: float = 1.5       # valid trading signals offered per second
    # Pacing pressure also squeezes the simulator's budget (another client's share): what the
    # connection sends over it is dropped with error 100, and the run checks it recovers.
    squeeze: bool = False
    strict: bool = False             # a finding (a lost fault, a pacing violation...) fails the run too
    work: Path | None = None         # None: a temporary directory, removed unless `keep`
    keep: bool = False
    log: Callable[[str], None] = print


def symbol_names(n: int) -> tuple[str, ...]:
    """Return `n` distinct tickers (real ones first, then synthetic ones)."""
    names = list(TICKERS[:n])
    i = 0
    while len(names) < n:
        names.append(f"X{i:03d}")
        i += 1
    return tuple(names)


def symbol_specs(names: Sequence[str]) -> tuple[SymbolSpec, ...]:
    # A quote every market second, lively enough that a 4-second bar often crosses; start prices
    # spread over [10, 500) by the symbol (so notional limits bite on the dear ones).
    walk = WalkParams(volatility=3.0, quote_interval_ns=1_000_000_000, max_book_lots=10, lot=100)
    return tuple(SymbolSpec(symbol=name, walk=walk) for name in names)


def chaos_config(*, admin_port: int, broker_port: int, symbols: Sequence[str], work: Path, signal_url: str) -> Config:
    """Return the configuration of the system under chaos."""
    return parse_config({
        "system": {"admin_port": admin_port, "log_dir": str(work / "logs"), "state_dir": str(work / "state"),
                   "log_level": "INFO"},
        "broker": {"host": "127.0.0.1", "port": broker_port, "client_id": CLIENT_ID,
                   "reconnect": {"initial_s": 0.2, "max_s": 1.0, "jitter": 0.1}},
        "supervision": {"symbol": BUDGET, "order_group": BUDGET, "core": BUDGET},
        "symbols": {name: {} for name in symbols},
        "market_data": {"warmup_bars": 0, "stale_after_s": STALE_S, "bar_seconds": 1},
        "strategy": {"watch_config": False},
        "rules": RULES,
        "signals": {"source": "http", "max_age_s": 60.0,
                    "http": {"url": signal_url, "poll_interval_s": 0.2, "timeout_s": 0.5,
                             "auth_env": SIGNAL_KEY_ENV}},
        "risk": RISK,
    }, source="<chaos>")


# ---------------------------------------------------------------- the prediction API


@dataclass
class Reply:
    """One scripted HTTP answer."""

    status: int = 200
    body: bytes = b"[]"
    delay_s: float = 0.0
    headers: tuple[tuple[str, str], ...] = ()
    short_by: int = 0                # announce this many bytes more than the body has, then hang up


class SignalServer:
    """A prediction API on 127.0.0.1: each GET takes the next queued reply (an empty list when none is queued)."""

    def __init__(self) -> None:
        self.replies: deque[Reply] = deque()
        self.served = 0
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                with server.lock:
                    server.served += 1
                    reply = server.replies.popleft() if server.replies else Reply()
                if reply.delay_s:
                    time.sleep(reply.delay_s)  # past the source's timeout: it gives up first
                try:
                    self.send_response(reply.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(reply.body) + reply.short_by))
                    for name, value in reply.headers:
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(reply.body)
                    if reply.short_by:
                        self.close_connection = True
                except OSError:
                    pass  # the client hung up after its timeout

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="chaos-signals", daemon=True)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1/predictions"

    def start(self) -> None:
        self.thread.start()

    def push(self, *replies: Reply) -> None:
        with self.lock:
            self.replies.extend(replies)

    def backlog(self) -> int:
        with self.lock:
            return len(self.replies)

    def close(self) -> None:
        if self.thread.is_alive():
            self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


def _json(value: object) -> bytes:
    return json.dumps(value).encode()


def signal_item(sid: str, symbol: str, direction: str, confidence: float | str, **extra: object) -> dict[str, object]:
    return {"id": sid, "symbol": symbol, "direction": direction, "confidence": confidence, "ts": time.time(),
            **extra}


# ---------------------------------------------------------------- bookkeeping


@dataclass
class Tally:
    """What became of the injections of one kind."""

    injected: int = 0
    survived: int = 0
    lost: int = 0
    untriggered: int = 0
    recovery_s: list[float] = field(default_factory=list)
    lost_why: list[str] = field(default_factory=list)
    notes: Counter[str] = field(default_factory=Counter)


class Stretch:
    """The longest stretch of run time a condition held, and what it was about (a stalled fault's kind)."""

    def __init__(self) -> None:
        self.since: float | None = None
        self.what = ""
        self.longest: tuple[float, float, str] = (0.0, 0.0, "")  # (start, seconds, what)

    def seen(self, holds: bool, at: float, what: str = "") -> None:
        """Record whether the condition holds at `at` (run seconds); a new `what` starts a new stretch."""
        if not holds:
            self.since = None
            return
        if self.since is None or what != self.what:
            self.since, self.what = at, what
        if at - self.since > self.longest[1]:
            self.longest = (self.since, at - self.since, what)

    def over(self, limit_s: float) -> tuple[float, float, str] | None:
        """Return (start, seconds, what) of the longest stretch if it lasted more than `limit_s`."""
        return self.longest if self.longest[1] > limit_s else None


@dataclass
class Observation:
    """The system as the scheduler last saw it."""

    at: float
    status: StatusSnapshot | None
    children: dict[tuple[str, str], ChildStatus]
    sim: dict[str, Any]

    @property
    def ready(self) -> bool:
        """The connection is READY, our client is connected and receives every symbol."""
        return (self.status is not None and self.status.connection_state is ConnectionState.READY
                and self.sim["clients"] == [CLIENT_ID])


class _Untriggered:
    """The verdict on a fault nothing exercised (a counter nothing used up, a silence nobody watched)."""


UNTRIGGERED: Final = _Untriggered()
Verdict = bool | str | _Untriggered | None  # True: survived; a str: lost, why; None: not yet


@dataclass
class Pending:
    """An injected fault waiting for its sign of recovery."""

    kind: str
    what: str
    started: float
    deadline: float
    check: Callable[[Observation], Verdict]
    untriggered: Callable[[], bool] | None = None  # at the deadline: nothing used the fault up
    last: str = ""


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    ok: bool
    detail: str


@dataclass
class LogTail:
    """Lines appended to system.log since the last read: stale and resumed symbols, errors."""

    path: Path
    offset: int = 0
    stale: dict[str, list[float]] = field(default_factory=dict)     # symbol -> times noticed (monotonic)
    resumed: dict[str, list[float]] = field(default_factory=dict)
    errors: int = 0
    criticals: int = 0
    tracebacks: int = 0
    forged: list[str] = field(default_factory=list)
    rest: bytes = b""

    def read(self) -> None:
        try:
            with self.path.open("rb") as f:
                f.seek(self.offset)
                chunk = f.read()
        except FileNotFoundError:
            return
        self.offset += len(chunk)
        data = self.rest + chunk
        cut = data.rfind(b"\n") + 1
        self.rest = data[cut:]
        now = time.monotonic()
        for raw in data[:cut].decode("utf-8", errors="replace").splitlines():
            if raw.startswith(FORGED_PREFIX):
                self.forged.append(raw[:120])
            if " | ERROR    | " in raw:
                self.errors += 1
            elif " | CRITICAL | " in raw:
                self.criticals += 1
            if raw.startswith("Traceback"):
                self.tracebacks += 1
            if (m := _STALE_LINE.search(raw)) is not None:
                self.stale.setdefault(m.group(1), []).append(now)
            elif (m := _RESUMED_LINE.search(raw)) is not None:
                self.resumed.setdefault(m.group(1), []).append(now)


FORGED_PREFIX: Final = "2099-01-01 00:00:00.000 | CRITICAL"   # a log line a signal id tries to forge
_STALE_LINE: Final = re.compile(r"no market data for (\S+) for")
_RESUMED_LINE: Final = re.compile(r"tws: (\S+) data flows again")


# ---------------------------------------------------------------- starting the system


def start_system(work: Path, settings: Settings, server: SignalServer) -> System:
    """Start the actor system, the accelerated simulator and the Supervisor; the caller must close() it."""
    os.environ.setdefault("THESPIAN_BASE_IPADDR", "127.0.0.1")  # loopback only
    os.environ[SIGNAL_KEY_ENV] = SIGNAL_KEY                     # inherited by the signal source's process
    names = symbol_names(settings.symbols)
    specs = symbol_specs(names)
    (work / "logs").mkdir(parents=True, exist_ok=True)
    (work / "state").mkdir(parents=True, exist_ok=True)
    admin_port = free_port()
    before = set(descendants(os.getpid()))
    # Forked before any thread of ours exists (the simulator's, the signal server's): a fork never
    # copies a lock another thread holds into the actor processes.
    asys = ActorSystem("multiprocTCPBase", {"Admin Port": admin_port, "Process Startup Method": "fork"},
                       transientUnique=True)
    admin_pids = {pid for pid in descendants(os.getpid()) if pid not in before}
    sim: SimulatorThread | None = None
    try:
        sim = SimulatorThread(SimulatorConfig(clock="accelerated", speed=settings.speed, symbols=specs,
                                              seed=settings.seed, stagger_quotes=True)).start()
        server.start()
        config = chaos_config(admin_port=admin_port, broker_port=sim.port, symbols=names, work=work,
                              signal_url=server.url)
        supervisor = asys.createActor("actors.supervisor.Supervisor", globalName=SUPERVISOR)
        system = System(asys=asys, sim=sim, supervisor=supervisor, config=config, admin_port=admin_port,
                        log_dir=work / "logs", admin_pids=admin_pids, session=session_of(listener_pid(admin_port)),
                        tmp_path=work, symbols=specs, clock="accelerated")
    except BaseException:
        asys.shutdown()
        if sim is not None:
            sim.stop()
        raise
    try:
        ready = system.ask(supervisor, StartSystem(config=config, admin_token=ADMIN_TOKEN), ActorReady, timeout=90)
        system.pids.add(ready.pid)
        deadline = time.monotonic() + 90
        while True:
            status = system.status()
            up = {c.key for c in status.children if c.supervisor == "symbols" and c.running and c.ready}
            if up >= set(names) and system.sim.snapshot()["clients"] == [CLIENT_ID] and \
                    status.connection_state is ConnectionState.READY:
                break
            if time.monotonic() > deadline:
                raise AssertionError(f"the system did not come up: {len(up)} of {len(names)} symbols, "
                                     f"connection {status.connection_state.value}")
            time.sleep(0.2)
    except BaseException:
        system.close()
        raise
    return system


# ---------------------------------------------------------------- the run


class Chaos:
    """The scheduler: injects faults, watches for recoveries, settles the system and checks it."""

    def __init__(self, system: System, server: SignalServer, settings: Settings) -> None:
        self.system = system
        self.sim = system.sim
        self.server = server
        self.settings = settings
        self.log = settings.log
        self.rnd = random.Random(settings.seed)                      # the faults: kinds, order, parameters
        self.signal_rnd = random.Random(f"signals-{settings.seed}")  # the steady flow of valid signals
        self.symbols = tuple(s.symbol for s in system.symbols)
        self.tallies = {kind: Tally() for kind, _, _ in KINDS}
        self.pending: list[Pending] = []
        self.actions: list[tuple[float, int, Callable[[], None]]] = []
        self.seq = 0
        self.deck: list[str] = []
        self.kills: Counter[tuple[str, str]] = Counter()   # (supervisor, key) -> our kills
        self.squeezed_until = 0.0
        self.pacing_violations: list[str] = []
        self.paced_out = 0
        self.signal_n = 0
        self.forging = 0                                 # signal ids sent that try to forge a log line
        self.findings: list[str] = []                    # seen, but outside what the checks judge
        self.slow: dict[str, list[tuple[float, str]]] = {}  # signal faults survived only after SLOW_SIGNALS_S
        self.silenced: set[str] = set()
        self.gone_since: dict[tuple[str, str, int, int], float] = {}  # running children whose pid is gone
        self.ghosts: dict[tuple[str, str, int, int], float] = {}      # ... for GHOST_S: when (run seconds)
        self.healing = False                             # the end: every fault stopped and healed
        self.unanswered = Stretch()                      # statuses missing an answer (or not answered)
        self.stalled = Stretch()                         # the next fault of the deck could not go in
        self.healed: dict[str, int] = {}                 # counter faults as the heal found them
        self.tail = LogTail(system.log_dir / "system.log")
        self.journal = Journal.open(system.config.journal_path, readonly=True)
        self.t0 = time.monotonic()
        self.obs = self.observe()

    # ------------------------------------------------------------ looking

    def observe(self) -> Observation:
        try:
            status: StatusSnapshot | None = self.system.status()
        except Exception:  # a status that does not come in time is itself a sign: retried next turn
            status = None
        children = {(c.supervisor, c.key): c for c in status.children} if status is not None else (
            self.obs.children if hasattr(self, "obs") else {})
        snap = self.sim.call(_glance, self.sim.sim)
        paced = int(snap["stats"].get("paced_out", 0))
        now = time.monotonic()
        if paced > self.paced_out and now > self.squeezed_until + 1.5:
            self.pacing_violations.append(f"{paced - self.paced_out} message(s) paced out at +{now - self.t0:.0f} s")
        self.paced_out = paced
        self.tail.read()
        if not self.healing:
            self.unanswered.seen(status is None or "did not answer" in status.text, now - self.t0)
        self.obs = Observation(at=now, status=status, children=children, sim=snap)
        if status is not None:
            self._watch_ghosts(self.obs)
        return self.obs

    def _watch_ghosts(self, obs: Observation) -> None:
        """Remember children a supervisor still lists as running whose process has been gone for GHOST_S."""
        now_gone = set()
        for (sup, key), c in obs.children.items():
            if c.running and c.pid and not self._ours(c.pid):
                ident = (sup, key, c.incarnation, c.pid)
                now_gone.add(ident)
                first = self.gone_since.setdefault(ident, obs.at)
                if obs.at - first >= GHOST_S and ident not in self.ghosts:
                    self.ghosts[ident] = obs.at - self.t0
        self.gone_since = {ident: t for ident, t in self.gone_since.items() if ident in now_gone}

    def subscribed(self, obs: Observation) -> int:
        return int(obs.sim.get("subscribed", {}).get(str(CLIENT_ID), 0))

    def healthy(self, obs: Observation) -> bool:
        return obs.ready and self.subscribed(obs) == len(self.symbols)

    def _health(self, obs: Observation) -> str:
        state = obs.status.connection_state.value if obs.status is not None else "no status"
        return f"connection {state}, clients {obs.sim['clients']}, {self.subscribed(obs)}/{len(self.symbols)} subscribed"

    # ------------------------------------------------------------ timing

    def at(self, delay: float, action: Callable[[], None]) -> None:
        self.seq += 1
        heapq.heappush(self.actions, (time.monotonic() + delay, self.seq, action))

    def run_due(self) -> None:
        now = time.monotonic()
        while self.actions and self.actions[0][0] <= now:
            _, _, action = heapq.heappop(self.actions)
            action()

    def say(self, text: str) -> None:
        self.log(f"  +{time.monotonic() - self.t0:6.1f} s {text}")

    def expect(self, kind: str, what: str, check: Callable[[Observation], Verdict], deadline_s: float = RECOVERY_S,
               untriggered: Callable[[], bool] | None = None) -> None:
        now = time.monotonic()
        tally = self.tallies[kind]
        tally.injected += 1
        self.say(f"{LABEL[kind]}: {what}")
        self.pending.append(Pending(kind=kind, what=what, started=now, deadline=now + deadline_s, check=check,
                                    untriggered=untriggered))

    def resolve(self, obs: Observation, final: bool = False) -> None:
        """Settle every pending fault whose sign of recovery (or loss) is there, or whose deadline passed."""
        left = []
        for p in self.pending:
            try:
                verdict = p.check(obs)
            except Exception as exc:  # a check must never stop the run
                verdict = f"check failed: {exc!r}"
            tally = self.tallies[p.kind]
            if verdict is UNTRIGGERED:
                tally.untriggered += 1
            elif verdict is True:
                tally.survived += 1
                tally.recovery_s.append(obs.at - p.started)
                if p.kind.endswith("_signals") and obs.at - p.started > SLOW_SIGNALS_S:
                    self.slow.setdefault(p.kind, []).append((obs.at - p.started, p.what))
            elif isinstance(verdict, str) and verdict:
                tally.lost += 1
                tally.lost_why.append(f"{p.what}: {verdict}")
                self.log(f"  LOST {LABEL[p.kind]}: {p.what}: {verdict}")
            elif obs.at >= p.deadline or final:
                if p.untriggered is not None and p.untriggered():
                    tally.untriggered += 1
                else:
                    tally.lost += 1
                    why = f"{p.what}: no recovery within {obs.at - p.started:.0f} s ({self._health(obs)})"
                    tally.lost_why.append(why)
                    self.log(f"  LOST {LABEL[p.kind]}: {why}")
            else:
                left.append(p)
        self.pending = left

    # ------------------------------------------------------------ choosing

    def next_kind(self) -> str:
        if not self.deck:
            first = [kind for kind, _, _ in KINDS]
            self.rnd.shuffle(first)
            extra = [kind for kind, _, weight in KINDS for _ in range(weight)]
            self.rnd.shuffle(extra)
            self.deck = first + extra
        return self.deck[0]

    def inject(self) -> bool:
        """Inject the next fault of the deck; False if it cannot be injected now (tried again later)."""
        kind = self.next_kind()
        done = getattr(self, f"_inject_{kind}")(self.obs)
        if done:
            self.deck.pop(0)
        return done

    # ------------------------------------------------------------ kills

    def _running(self, obs: Observation, supervisor: str, key: str | None = None) -> list[ChildStatus]:
        return [c for (sup, k), c in obs.children.items()
                if sup == supervisor and (key is None or k == key) and c.running and c.ready and c.pid
                and self._ours(c.pid)]

    def _ours(self, pid: int) -> bool:
        """Return True if `pid` lives in the actor system's session (a pid a status still names may be gone,
        or even reused by another process: never signal that one)."""
        try:
            return pid > 1 and os.getsid(pid) == self.system.session
        except OSError:
            return False

    def _kill(self, kind: str, victim: ChildStatus, what: str = "") -> None:
        kill(victim.pid)
        self.kills[(victim.supervisor, victim.key)] += 1
        name = f"{victim.supervisor}/{victim.key}#{victim.incarnation} (pid {victim.pid})"
        give_up = time.monotonic() + RECOVERY_S

        def back(obs: Observation) -> Verdict:
            now = obs.children.get((victim.supervisor, victim.key))
            if now is None:
                # A group may come back and finish before we look; a symbol or core actor never vanishes.
                return True if victim.supervisor == "groups" else "gone from its supervisor"
            if now.quarantined:
                return "quarantined"
            if not (now.running and now.ready and now.incarnation > victim.incarnation):
                if obs.at >= give_up - OBSERVE_S * 2:
                    return f"still incarnation {now.incarnation} at pid {now.pid} ({_process_state(victim.pid)})"
                return None
            if victim.key == "tws" and not obs.ready:
                return None
            return True

        self.expect(kind, what or name, back)

    def _inject_kill_symbol(self, obs: Observation) -> bool:
        victims = self._running(obs, "symbols")
        if not victims:
            return False
        self._kill("kill_symbol", self.rnd.choice(victims))
        return True

    def _inject_kill_group(self, obs: Observation) -> bool:
        victims = self._running(obs, "groups")
        if not victims:
            return False
        self._kill("kill_group", self.rnd.choice(victims))
        return True

    def _inject_kill_tws(self, obs: Observation) -> bool:
        victims = self._running(obs, SUPERVISOR, "tws")
        if not victims:
            return False
        self._kill("kill_tws", victims[0])
        return True

    def _inject_kill_risk(self, obs: Observation) -> bool:
        victims = self._running(obs, SUPERVISOR, "risk")
        if not victims:
            return False
        self._kill("kill_risk", victims[0])
        return True

    def _inject_kill_journal(self, obs: Observation) -> bool:
        """SIGKILL the symbol, group, connection or risk process that holds the journal's write lock."""
        shm = Path(f"{self.system.config.journal_path}-shm")
        try:
            inode = os.stat(shm).st_ino
        except FileNotFoundError:
            return False
        by_pid = {c.pid: c for c in obs.children.values() if c.running and c.ready and c.pid
                  and (c.supervisor in ("symbols", "groups") or c.key in ("tws", "risk"))}
        # SQLite's WAL write lock is a POSIX lock on byte 120 of the -shm file (the first lock byte).
        pattern = re.compile(rf"^\d+: POSIX\s+ADVISORY\s+WRITE (\d+) [0-9a-f]+:[0-9a-f]+:{inode} 120 120$")
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline:
            with open("/proc/locks", encoding="ascii", errors="replace") as f:
                holders = [int(m.group(1)) for line in f if (m := pattern.match(line.strip()))]
            for pid in holders:
                victim = by_pid.get(pid)
                if victim is not None and self._ours(pid):
                    self._kill("kill_journal", victim,
                               f"{victim.supervisor}/{victim.key}#{victim.incarnation} holding the write lock")
                    return True
            time.sleep(0.001)
        self.tallies["kill_journal"].notes["no writer caught in 3 s"] += 1
        return False

    # ------------------------------------------------------------ the connection

    def _reconnected(self, kind: str, what: str, after: Callable[[], float]) -> None:
        """Expect the connection READY again with every symbol subscribed, once `after()` (a time) has passed."""
        def check(obs: Observation) -> Verdict:
            return True if obs.at >= after() and self.healthy(obs) else None
        self.expect(kind, what, check)

    def _inject_drop(self, obs: Observation) -> bool:
        dropped = self.sim.drop(CLIENT_ID)
        now = time.monotonic()
        self._reconnected("drop", f"socket closed ({dropped} dropped)", lambda: now + 0.3)
        return True

    def _inject_refuse(self, obs: Observation) -> bool:
        seconds = round(self.rnd.uniform(2.0, 6.0), 1)
        self.sim.refuse(seconds)
        until = time.monotonic() + seconds
        self._reconnected("refuse", f"dropped, reconnects refused for {seconds} s", lambda: until)
        return True

    def _inject_storm(self, obs: Observation) -> bool:
        steps: list[tuple[float, Callable[[], None]]] = []
        t = 0.0
        cycles = self.rnd.randint(3, 7)
        codes = []
        for _ in range(cycles):
            for _ in range(self.rnd.randint(1, 3)):  # TWS repeats 1100 while the outage lasts
                steps.append((t, self.sim.lose_link))
                t += self.rnd.uniform(0.02, 0.3)
                codes.append("1100")
            kept = self.rnd.random() < 0.5
            steps.append((t, lambda kept=kept: self.sim.restore_link(kept)))
            codes.append("1102" if kept else "1101")
            t += self.rnd.uniform(0.02, 0.6)
        for delay, action in steps:
            self.at(delay, action)
        ends = time.monotonic() + t
        self._reconnected("storm", f"{len(codes)} codes in {t:.1f} s ({' '.join(codes)})", lambda: ends)
        return True

    def _inject_pacing(self, obs: Observation) -> bool:
        """Everyone at once: a signal for every symbol (up to a bracket each) and a market-data loss (1101:
        every symbol re-subscribes), all through the connection's pacer; with `squeeze`, under a budget
        another client shares (excess messages get error 100 and are dropped, as TWS does)."""
        rate = self.rnd.randint(8, 20)
        seconds = round(self.rnd.uniform(3.0, 6.0), 1)
        now = time.monotonic()
        what = f"{len(self.symbols)} signals at once + 1101"
        until = now + 0.2
        if self.settings.squeeze:
            self.sim.squeeze_pacing(rate, seconds)
            self.squeezed_until = max(self.squeezed_until, now + seconds)
            what += f", budget squeezed to {rate}/s for {seconds} s"
            until = now + seconds
        self.server.push(Reply(body=_json([
            signal_item(self._sid("burst"), sym, self.rnd.choice(("LONG", "SHORT")), 0.9) for sym in self.symbols])))
        self.sim.lose_link()
        self.at(0.2, lambda: self.sim.restore_link(False))
        self._reconnected("pacing", what, lambda: until)
        return True

    # ------------------------------------------------------------ broker-side faults

    def _counter(self, kind: str, attribute: str, count: int, what: str) -> None:
        """Add `count` to one of the simulator's counter faults; survived once all of it is used up."""
        target = self.sim.call(lambda: getattr(self.sim.sim, attribute)) + count
        self.sim.call(setattr, self.sim.sim, attribute, target)

        def left() -> int:  # what the counter held before the settle zeroed it, or holds now
            return self.healed.get(attribute, 0) if self.healing else self.sim.call(
                lambda: getattr(self.sim.sim, attribute))

        def check(obs: Observation) -> Verdict:
            value = left()
            if value >= target:  # none of ours used yet
                return UNTRIGGERED if self.healing else None
            if value > target - count and not self.healing:
                return None
            return True if self.healthy(obs) else None

        self.expect(kind, what, check, COUNTER_S, untriggered=lambda: left() >= target)

    def _inject_dup_status(self, obs: Observation) -> bool:
        count = self.rnd.randint(5, 30)
        self._counter("dup_status", "duplicate_statuses", count, f"next {count} statuses sent twice")
        return True

    def _inject_fill_after_cancel(self, obs: Observation) -> bool:
        count = self.rnd.randint(1, 2)
        self._counter("fill_after_cancel", "fill_after_cancel", count, f"next {count} cancel(s) then filled")
        return True

    def _inject_silence(self, obs: Observation) -> bool:
        quiet = [s for s in self.symbols if s not in self.silenced]
        symbol = self.rnd.choice(quiet)
        seconds = round(self.rnd.uniform(STALE_S + 2.0, STALE_S + 6.0), 1)
        self.silenced.add(symbol)
        self.sim.silence(symbol)
        start = time.monotonic()
        resumed: list[float] = []

        def resume() -> None:
            self.sim.silence(symbol, False)
            self.silenced.discard(symbol)
            resumed.append(time.monotonic())

        self.at(seconds, resume)

        def check(obs: Observation) -> Verdict:
            if not resumed:
                return None
            noticed = [t for t in self.tail.stale.get(symbol, []) if start <= t <= resumed[0] + 0.5]
            if not noticed:
                # Nothing watches while the connection is not READY; a silence cut short by the end
                # of the run may not have lasted long enough either.
                return UNTRIGGERED if obs.at > resumed[0] + 2.0 else None
            if [t for t in self.tail.resumed.get(symbol, []) if t >= noticed[0]]:
                return True
            # A connection restarted since it noticed never saw the symbol stale (nor says it
            # flows again): its quote age tells whether quotes came after the silence.
            age = self._quote_age_s(obs, symbol)
            return True if age is not None and age < obs.at - resumed[0] else None

        self.expect("silence", f"{symbol} silent for {seconds} s", check, RECOVERY_S + seconds,
                    untriggered=lambda: not [t for t in self.tail.stale.get(symbol, []) if t >= start])
        return True

    def _quote_age_s(self, obs: Observation, symbol: str) -> float | None:
        """Return how long ago the connection last had a quote of `symbol` (None: it cannot say now)."""
        tws = obs.children.get((SUPERVISOR, "tws"))
        if tws is None or tws.address is None or not tws.running:
            return None
        try:
            gauges = dict(self.system.actor_status(tws.address).gauges)
        except AssertionError:
            return None
        age = gauges.get(f"quote_age_ms_{symbol}")
        return None if age is None else age / 1000

    # ------------------------------------------------------------ signals

    def _sid(self, prefix: str) -> str:
        self.signal_n += 1
        return f"{prefix}-{self.settings.seed}-{self.signal_n}"

    def offer_signals(self) -> None:
        """Queue the steady flow of valid trading signals (when the API has nothing else queued)."""
        if self.server.backlog() > 2:
            return
        rnd = self.signal_rnd
        items = [signal_item(self._sid("s"), rnd.choice(self.symbols), rnd.choice(("LONG", "SHORT")),
                             round(rnd.uniform(0.55, 0.95), 2)) for _ in range(rnd.randint(1, 3))]
        self.server.push(Reply(body=_json({"signals": items, "cursor": f"c{self.signal_n}"})))

    def _signals_then_canary(self, kind: str, what: str, replies: list[Reply], rejected: list[str]) -> None:
        canary = self._sid("canary")
        incarnation = self.obs.children.get((SUPERVISOR, "signals"))
        before = incarnation.incarnation if incarnation is not None else 0
        self.server.push(*replies, Reply(body=_json([signal_item(canary, self.rnd.choice(self.symbols), "FLAT", 0.5)])))

        def check(obs: Observation) -> Verdict:
            row = self.journal.signal(canary)
            if row is None:
                return None
            if not row.accepted:
                return f"the valid signal after them was rejected: {row.reason}"
            wrongly = [sid for sid in rejected if (r := self.journal.signal(sid)) is not None and r.accepted]
            if wrongly:
                return f"accepted what it must reject: {', '.join(wrongly)}"
            now = obs.children.get((SUPERVISOR, "signals"))
            if now is not None and now.incarnation != before:
                return f"the signal source restarted (incarnation {before} -> {now.incarnation})"
            return True

        self.expect(kind, what, check, SIGNALS_S)

    def _inject_bad_signals(self, obs: Observation) -> bool:
        sym = self.rnd.choice(self.symbols)
        ids = [self._sid("bad") for _ in range(6)]
        menu: list[tuple[str, Reply, list[str]]] = [
            ("not JSON", Reply(body=b'{"signals": [ not json'), []),
            ("wrong shape", Reply(body=self.rnd.choice((b'{"foo": 1}', b'"text"', b"42", b"null"))), []),
            ("wrong types", Reply(body=_json([signal_item(ids[0], sym, "LONG", "high"),
                                              signal_item(ids[1], sym, 7, 0.9)])), ids[:2]),
            ("NaN confidence", Reply(body=b'[{"id": "%s", "symbol": "%s", "direction": "LONG", "confidence": NaN}]'
                                     % (ids[2].encode(), sym.encode())), ids[2:3]),
            ("missing fields", Reply(body=_json([{"id": ids[3], "symbol": sym}, {"symbol": sym, "direction": "LONG"}])),
             ids[3:4]),
            ("unknown symbol", Reply(body=_json([signal_item(ids[4], "ZZZZ", "LONG", 0.9)])), ids[4:5]),
            ("stale", Reply(body=_json([{**signal_item(ids[5], sym, "LONG", 0.9), "ts": time.time() - 3600}])),
             ids[5:6]),
            ("HTTP error", Reply(status=self.rnd.choice((500, 503, 404)), body=b"<html>oops</html>"), []),
            ("empty body", Reply(body=b""), []),
            ("not UTF-8", Reply(body=b"\xff\xfe[\x00]"), []),
        ]
        picked = self.rnd.sample(menu, self.rnd.randint(2, 4))
        self._signals_then_canary("bad_signals", ", ".join(name for name, _, _ in picked),
                                  [reply for _, reply, _ in picked], [sid for _, _, ids_ in picked for sid in ids_])
        return True

    def _inject_hostile_signals(self, obs: Observation) -> bool:
        sym = self.rnd.choice(self.symbols)
        n = self._sid("h")
        flood = [signal_item(f"{n}-f{i}", f"ZZ{i % 997}", "LONG", 0.9) for i in range(1000)]
        forged = f"{n}\n{FORGED_PREFIX} | supervisor | corr=- | forged by a signal id"
        menu: list[tuple[str, Callable[[], Reply], list[str], bool]] = [
            ("9 MB body", lambda: Reply(body=b"[" + b"0," * (9 << 19) + b"0]"), [], False),
            ("200k-deep nesting", lambda: Reply(body=b"[" * 200_000 + b"]" * 200_000), [], False),
            ("1000-signal flood", lambda: Reply(body=_json(flood)), [flood[0]["id"], flood[-1]["id"]], False),
            ("log-forging id", lambda: Reply(body=_json([signal_item(forged, sym, "FLAT", 0.5)])), [], True),
            ("hostile symbols", lambda: Reply(body=_json([
                signal_item(f"{n}-p", "../../etc/passwd", "LONG", 0.9),
                signal_item(f"{n}-u", "\u0410APL", "LONG", 0.9),
                signal_item(f"{n}-e", f"\x1b[31m{sym}", "LONG", 0.9),
                signal_item(f"{n}-q", "AAPL'; DROP TABLE executions;--", "LONG", 0.9)])),
             [f"{n}-p", f"{n}-u", f"{n}-e", f"{n}-q"], False),
            ("extreme numbers", lambda: Reply(body=(
                '[{"id": "%(n)s-c", "symbol": "%(s)s", "direction": "LONG", "confidence": -0.5},'
                ' {"id": "%(n)s-b", "symbol": "%(s)s", "direction": "LONG", "confidence": 1e999},'
                ' {"id": "%(n)s-t", "symbol": "%(s)s", "direction": "LONG", "confidence": 0.9, "ts": 1e30},'
                ' {"id": "%(n)s-z", "symbol": "%(s)s", "direction": "LONG", "confidence": 0.9, "horizon_s": -5},'
                ' {"id": 1%(zeros)s, "symbol": "%(s)s", "direction": "LONG", "confidence": 0.9}]'
                % {"n": n, "s": sym, "zeros": "0" * 400}).encode()),
             [f"{n}-c", f"{n}-b", f"{n}-t", f"{n}-z"], False),
            ("SQL in an id", lambda: Reply(body=_json([signal_item(f"{n}'); DROP TABLE executions;--", sym, "FLAT", 0.5)])),
             [], False),
            ("injected fields", lambda: Reply(body=_json([signal_item(f"{n}-x", sym, "FLAT", 0.5, __class__="os.system",
                                                                      action="flatten", token=ADMIN_TOKEN)])), [], False),
            ("hanging server", lambda: Reply(delay_s=2.0), [], False),
            ("redirect", lambda: Reply(status=302, headers=(("Location", "http://169.254.169.254/latest"),)), [], False),
            ("lying Content-Length", lambda: Reply(body=b'[{"id": "x"', short_by=5000), [], False),
            ("binary garbage", lambda: Reply(body=self.rnd.randbytes(4096)), [], False),
        ]
        picked = self.rnd.sample(menu, self.rnd.randint(2, 3))
        self._signals_then_canary("hostile_signals", ", ".join(name for name, _, _, _ in picked),
                                  [make() for _, make, _, _ in picked],
                                  [sid for _, _, ids, _ in picked for sid in ids])
        self.forging += sum(1 for _, _, _, forges in picked if forges)
        return True

    # ------------------------------------------------------------ admin

    def _admin_answer(self, message: object, timeout: float = 10.0) -> Message | None:
        """Send `message` to the Supervisor from outside; return its AdminError/AdminReply/AdminTable to it."""
        asys = self.system.asys
        deadline = time.monotonic() + timeout
        reply = asys.ask(self.system.supervisor, message, timeout)
        while True:
            if isinstance(reply, (AdminError, AdminReply, AdminTable)):
                if not isinstance(message, Message) or reply.cause_id == message.msg_id:
                    return reply
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            reply = asys.listen(left)

    def _garbage_to_admin_port(self) -> None:
        for payload in (self.rnd.randbytes(3000), b"GET / HTTP/1.0\r\n\r\n", (2**31 - 1).to_bytes(4, "big") + b"x",
                        b"\x80\x04\x95" + self.rnd.randbytes(64)):
            try:
                with socket.create_connection(("127.0.0.1", self.system.admin_port), timeout=2) as s:
                    s.sendall(payload)
            except OSError:
                pass

    def _inject_bad_admin(self, obs: Observation) -> bool:
        sym = self.rnd.choice(self.symbols)
        U, M, T = AdminErrorCode.UNAUTHORIZED, AdminErrorCode.MALFORMED, AdminErrorCode.UNKNOWN_TARGET
        menu: list[tuple[str, Callable[[], object], AdminErrorCode | None]] = [
            ("Shutdown, wrong token", lambda: Shutdown(reason="chaos", token="guess"), U),
            ("Halt, no token", lambda: Halt(reason="chaos"), U),
            ("Flatten, 10 kB wrong token", lambda: Flatten(symbol=sym, token="x" * 10_000), U),
            ("RestartActor tws, wrong token", lambda: RestartActor(key="tws", token="admin"), U),
            ("CancelAll, symbol an int", lambda: CancelAll(symbol=123, token=ADMIN_TOKEN), M),  # type: ignore[arg-type]
            ("SetLogLevel, unknown level", lambda: SetLogLevel(level="LOUD", token=ADMIN_TOKEN), M),  # type: ignore[arg-type]
            ("AdminQuery, SQL as the table", lambda: AdminQuery(what="orders; DROP TABLE executions"), M),  # type: ignore[arg-type]
            ("Resume, token None", lambda: Resume(token=None), M),  # type: ignore[arg-type]
            ("RestartActor, path as key", lambda: RestartActor(key="../../supervisor", token=ADMIN_TOKEN), T),
            ("Flatten, unknown symbol", lambda: Flatten(symbol="ZZZZ", token=ADMIN_TOKEN), T),
            ("AdminQuery, limit -1", lambda: AdminQuery(what=QueryKind.ORDERS, limit=-1), None),
            ("a plain string", lambda: "shutdown", M),
            ("a dict", lambda: {"cmd": "shutdown", "token": ADMIN_TOKEN}, M),
            ("bytes", lambda: b"\x80\x04garbage", M),
            ("garbage bytes on the admin port", lambda: None, None),
        ]
        picked = self.rnd.sample(menu, self.rnd.randint(1, 3))
        state = obs.status.trading_state if obs.status is not None else None
        problems = []
        for name, make, expected in picked:
            message = make()
            if message is None:
                self._garbage_to_admin_port()
                continue
            answer = self._admin_answer(message)
            if answer is None:
                problems.append(f"{name}: no answer in 10 s")
            elif expected is not None and not (isinstance(answer, AdminError) and answer.code is expected):
                problems.append(f"{name}: answered {type(answer).__name__} "
                                f"{getattr(answer, 'code', '')} {getattr(answer, 'text', '')[:80]!r}, "
                                f"expected {expected.value}")
        what = ", ".join(name for name, _, _ in picked)

        def check(obs: Observation) -> Verdict:
            if problems:
                return "; ".join(problems)
            if obs.status is None:
                return None
            if state is not None and obs.status.trading_state != state:
                return f"trading state changed {state.value} -> {obs.status.trading_state.value}"
            return True

        self.expect("bad_admin", what, check)
        return True

    # ------------------------------------------------------------ the run

    def run(self, seconds: float) -> None:
        """Trade under faults for `seconds` of wall time."""
        self.t0 = time.monotonic()
        end = self.t0 + seconds
        next_fault = self.t0 + 2.0
        next_signals = self.t0
        next_look = self.t0
        last_report = self.t0
        while (now := time.monotonic()) < end:
            self.run_due()
            if now >= next_look:
                self.resolve(self.observe())
                next_look = time.monotonic() + OBSERVE_S
            if now >= next_signals:
                self.offer_signals()
                next_signals = now + 1.0 / self.settings.signals_per_s * self.signal_rnd.uniform(0.5, 1.5)
            if now >= next_fault:
                injected = self.inject()
                self.stalled.seen(not injected, time.monotonic() - self.t0, self.deck[0] if self.deck else "")
                if injected:
                    next_fault = time.monotonic() + self.rnd.uniform(*self.settings.gap)
                else:
                    next_fault = time.monotonic() + 0.5
            if now - last_report >= 30:
                last_report = now
                injected = sum(t.injected for t in self.tallies.values())
                self.log(f"  +{now - self.t0:4.0f} s: {injected} faults injected, {len(self.pending)} recovering, "
                         f"{self.obs.sim['orders']} orders, {self.obs.sim['executions']} fills")
            time.sleep(0.02)

    def settle(self) -> str:
        """Stop and heal every fault, wait until the system is at rest with the market frozen; return what happened."""
        # The steady signals stop with the run; what a signal fault queued (its canary last) is served.
        while self.actions:  # what was still to come of a storm, a silence, a burst: now
            heapq.heappop(self.actions)[2]()

        def heal() -> None:
            sim = self.sim.sim
            self.healed = {"duplicate_statuses": sim.duplicate_statuses, "fill_after_cancel": sim.fill_after_cancel}
            sim.duplicate_statuses = 0
            sim.fill_after_cancel = 0
            sim.squeeze = None
            if sim.link_down:
                sim.restore_link(False)
        self.sim.call(heal)
        self.healing = True
        started = time.monotonic()
        deadline = started + SETTLE_S
        said = started
        while True:
            obs = self.observe()
            self.resolve(obs)
            down = [f"{sup}/{key}" for (sup, key), c in obs.children.items()
                    if sup in ("symbols", SUPERVISOR) and not (c.running and c.ready)]
            if not self.pending and self.healthy(obs) and not down:
                break
            if time.monotonic() > deadline:
                self.resolve(obs, final=True)
                break
            if time.monotonic() - said >= 10:
                said = time.monotonic()
                self.log(f"  settling: {self._health(obs)}; waiting for "
                         + ", ".join([f"{LABEL[p.kind]} ({p.what})" for p in self.pending] + down))
            time.sleep(OBSERVE_S)
        settled = time.monotonic() - started
        self.sim.freeze()
        quiet_since, seen = time.monotonic(), (-1, -1)
        while time.monotonic() - quiet_since < QUIET_S and time.monotonic() < deadline + 30:
            snap = self.sim.snapshot()
            now_seen = (snap["orders"], snap["executions"])
            if now_seen != seen:
                seen, quiet_since = now_seen, time.monotonic()
            time.sleep(0.2)
        return f"settled in {settled:.1f} s, market frozen at rest after {time.monotonic() - started:.1f} s"

    # ------------------------------------------------------------ checks

    def positions(self) -> dict[str, Decimal | str]:
        status = self.system.status()
        found: dict[str, Decimal | str] = {}
        for c in status.children:
            if c.supervisor != "symbols":
                continue
            if c.address is None or not c.running:
                found[c.key] = "not running"
                continue
            try:
                snap = self.system.ask(c.address, GetPositions(symbol=c.key), PositionsSnapshot, timeout=10)
                found[c.key] = snap.positions[0].quantity if snap.positions else Decimal(0)
            except AssertionError as exc:
                found[c.key] = f"no answer ({exc})"
        return found

    def check_positions(self) -> Check:
        deadline = time.monotonic() + 30
        while True:
            broker = {s: Decimal(q) for s, q in self.sim.snapshot()["positions"].items()}
            ours = self.positions()
            wrong = [f"{s}: actor {ours.get(s, 'missing')} vs simulator {broker.get(s, Decimal(0))}"
                     for s in self.symbols if ours.get(s) != broker.get(s, Decimal(0))]
            if not wrong or time.monotonic() > deadline:
                break
            time.sleep(1.0)
        held = sum(1 for q in broker.values() if q)
        return Check("positions equal the simulator's for every symbol", not wrong,
                     f"{len(self.symbols)} symbols, {held} holding a position" if not wrong
                     else f"{len(wrong)} differ: " + "; ".join(wrong[:8]))

    def check_order_refs(self) -> Check:
        per_ref = self.sim.snapshot()["orders_per_ref"]
        twice = {ref: n for ref, n in per_ref.items() if n != 1}
        return Check("no orderRef was sent twice", not twice,
                     f"{len(per_ref)} orderRefs, each once" if not twice
                     else f"{len(twice)} sent more than once: " + ", ".join(f"{r} x{n}" for r, n in list(twice.items())[:8]))

    def check_risk(self) -> Check:
        limits = self.system.config.risk
        log = self.sim.order_log()
        intents = {row.intent_id: row for row in self.journal.intents()}
        denied = Counter(row.limit_name for row in intents.values() if row.decision == "DENIED")
        by_id = {r.order_id: r for r in log}
        breaches: list[str] = []
        grew: list[str] = []
        entries = exits = children = 0
        for r in log:
            group = r.order_ref.rpartition(":")[0]
            intent = intents.get(group)
            if intent is None or intent.decision != "APPROVED":
                breaches.append(f"{r.order_ref}: no approved intent {group!r}"
                                + (f" ({intent.decision} {intent.limit_name})" if intent is not None else ""))
                continue
            signed = r.quantity * r.side.sign
            if r.parent_id:
                children += 1
                parent = by_id.get(r.parent_id)
                if parent is not None and r.quantity > parent.quantity:
                    breaches.append(f"{r.order_ref}: child {r.quantity} > its entry {parent.quantity}")
                continue
            if intent.reduce_only or intent.operator:
                exits += 1
                if not is_reducing(r.position, signed):
                    # The gate judged it by the position it knew; at the broker a fill it had not
                    # heard of yet (one reported after its cancel was acknowledged) had moved it.
                    grew.append(f"{r.order_ref} {r.side.value} {r.quantity} met {r.position}")
                    breaches.extend(f"{r.order_ref}: {problem}" for problem in _entry_problems(r, intent, limits)
                                    if "max_open_orders" not in problem)
                continue
            entries += 1
            breaches.extend(f"{r.order_ref}: {problem}" for problem in _entry_problems(r, intent, limits))
        if grew:
            self.findings.append(f"{len(grew)} exit(s) the gate approved as reducing grew the simulator's position "
                                 f"(a fill reported after its cancel was acknowledged had closed it first): "
                                 + "; ".join(grew[:6]))
        shown = ", ".join(f"{name} {n}" for name, n in denied.most_common())
        detail = (f"{len(log)} orders ({entries} entries, {children} protective children, {exits} exits) within "
                  f"the limits; the gate denied {sum(denied.values())} intents ({shown or 'none'})")
        return Check("no order breaching a risk limit reached the simulator", not breaches and bool(log),
                     detail if not breaches else f"{len(breaches)} breaches: " + "; ".join(breaches[:6]))

    def check_fills(self) -> Check:
        fills = self.sim.call(lambda: [(e.fill.exec_id, e.fill.symbol, e.fill.quantity * e.fill.side.sign)
                                       for e in self.sim.sim.executions])
        rows = self.journal.executions()
        journaled = Counter(row.exec_id for row in rows)
        broker_ids = {exec_id for exec_id, _, _ in fills}
        missing = sorted(broker_ids - journaled.keys())
        phantom = sorted(journaled.keys() - broker_ids)
        twice = sorted(e for e, n in journaled.items() if n > 1)
        net: Counter[str] = Counter()
        for row in rows:
            net[row.symbol] += row.quantity * row.side.sign
        broker = {s: Decimal(q) for s, q in self.sim.snapshot()["positions"].items()}
        off = [f"{s}: journal {net.get(s, 0)} vs simulator {broker.get(s, Decimal(0))}"
               for s in self.symbols if net.get(s, 0) != broker.get(s, Decimal(0))]
        ok = not (missing or phantom or twice or off) and bool(fills)
        parts = [f"{len(missing)} missing ({', '.join(missing[:4])})" if missing else "",
                 f"{len(phantom)} unknown to the simulator ({', '.join(phantom[:4])})" if phantom else "",
                 f"{len(twice)} twice" if twice else "", "; ".join(off[:4])]
        return Check("every fill is in the journal once", ok,
                     f"{len(fills)} fills, each journaled once; journaled fills add up to every position" if ok
                     else "; ".join(p for p in parts if p) or "no fills at all")

    def check_status(self) -> Check:
        started = time.monotonic()
        try:
            status = self.system.ask(self.system.supervisor, GetStatus(), StatusSnapshot, timeout=15)
        except AssertionError as exc:
            return Check("the system still answers status", False, str(exc))
        took = time.monotonic() - started
        down = [f"{c.supervisor}/{c.key}" for c in status.children
                if c.supervisor in (SUPERVISOR, "symbols") and not (c.running and c.ready)]
        ok = status.connection_state is ConnectionState.READY and not status.quarantined and not down
        return Check("the system still answers status", ok,
                     f"answered in {took:.2f} s: trading {status.trading_state.value}, connection "
                     f"{status.connection_state.value}, {len(status.children)} actors, quarantined "
                     f"{list(status.quarantined) or 'none'}, not running {down or 'none'}")

    def check_journal(self) -> Check:
        uri = f"file:{self.system.config.journal_path}?mode=ro"
        with sqlite3.connect(uri, uri=True, timeout=30) as conn:
            result = [row[0] for row in conn.execute("PRAGMA integrity_check")]
        ok = result == ["ok"]
        kills = self.tallies["kill_journal"].injected
        return Check("the journal is intact after its writers were killed mid-transaction", ok,
                     f"integrity_check ok after {kills} writer kill(s)" if ok else "; ".join(result[:5]))

    def find_pacing(self) -> None:
        if self.pacing_violations:
            bursts = self.tallies["pacing"].injected
            where = "outside the squeezes" if self.settings.squeeze else f"in a run with {bursts} burst(s)"
            self.findings.append(f"the system went over IB's 50 msg/s at the simulator {where}: "
                                 + "; ".join(self.pacing_violations[:5]))

    def find_forged_logs(self) -> None:
        if self.tail.forged:
            self.findings.append(f"{len(self.tail.forged)} log line(s) forged by a signal id with a line break "
                                 f"({self.forging} sent), e.g. {self.tail.forged[0]!r}")

    def find_lost(self) -> None:
        for kind, tally in self.tallies.items():
            for why in tally.lost_why[:3]:
                self.findings.append(f"{LABEL[kind]} lost: {why}")
            if tally.lost > 3:
                self.findings.append(f"{LABEL[kind]}: {tally.lost - 3} more lost")

    def checks(self) -> list[Check]:
        found = []
        for make in (self.check_positions, self.check_order_refs, self.check_risk, self.check_fills,
                     self.check_status, self.check_journal):
            try:
                found.append(make())
            except Exception as exc:  # a check that cannot run fails, saying why
                found.append(Check(make.__name__.removeprefix("check_"), False, f"could not run: {exc!r}"))
        return found

    def find(self) -> list[str]:
        """Return what the run saw that no check covers (the risk check adds its own first)."""
        self.find_lost()
        self.find_pacing()
        self.find_forged_logs()
        for kind in ("bad_signals", "hostile_signals"):
            slow = [(round(t, 1), why) for t, why in self.slow.get(kind, [])]
            if slow:
                self.findings.append(f"{LABEL[kind]}: the source took more than {SLOW_SIGNALS_S:g} s to accept the "
                                     "valid signal behind " + "; ".join(f"{why} ({t} s)" for t, why in slow[:4]))
        if self.ghosts:
            self.findings.append(
                "a supervisor went on listing a child as running after its process was gone (its exit never "
                "handled; a new actor on the same reused port is then taken for it): " + "; ".join(
                    f"{sup}/{key}#{inc} pid {pid} from +{at:.0f} s" for (sup, key, inc, pid), at in
                    list(self.ghosts.items())[:5]))
        unanswered = self.unanswered.over(UNANSWERED_S)
        if unanswered:
            start, seconds, _ = unanswered
            self.findings.append(f"the status went {seconds:.0f} s from +{start:.0f} s without every supervisor's "
                                 "answer (a sub-supervisor did not answer GetChildren in time): a busy or stuck "
                                 "supervisor; the faults that need its children could not be chosen meanwhile")
        stalled = self.stalled.over(STALLED_S)
        if stalled:
            start, seconds, kind = stalled
            self.findings.append(f"the fault {LABEL.get(kind, kind)!r} could not be injected for {seconds:.0f} s "
                                 f"from +{start:.0f} s (what it needs never showed), so the faults behind it waited")
        restarts = self.unexpected_restarts()
        if restarts:
            self.findings.append("actors restarted more often than they were killed: " + ", ".join(restarts))
        return self.findings

    def unexpected_restarts(self) -> list[str]:
        """Return the symbol and core actors that restarted more often than we killed them."""
        found = []
        for (sup, key), c in self.obs.children.items():
            if sup not in ("symbols", SUPERVISOR):
                continue
            extra = c.incarnation - 1 - self.kills[(sup, key)]
            if extra > 0:
                found.append(f"{sup}/{key} +{extra}")
        return found


def _glance(sim: Simulator) -> dict[str, Any]:
    """Return the little of the simulator's state the scheduler looks at each turn (on its loop, cheaply)."""
    return {
        "clients": sorted(s.client_id for s in sim.sessions if s.started and s.client_id is not None),
        "subscribed": {str(s.client_id): len(set(s.mkt.values())) for s in sim.sessions if s.started and not s.closed},
        "orders": len(sim.book.orders),
        "executions": len(sim.executions),
        "stats": {"paced_out": sim.stats.get("paced_out", 0)},
    }


def _process_state(pid: int) -> str:
    """Say whether `pid` is gone, a zombie nobody reaped (and whose child it is), or running."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return f"pid {pid} gone (reaped)"
    fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
    state, parent = fields.get("State", "?").strip(), fields.get("PPid", "?").strip()
    return f"pid {pid} {'a zombie not reaped by' if state.startswith('Z') else 'still alive under'} {parent}"


def _entry_problems(r: OrderRecord, intent: IntentRow, limits: Any) -> list[str]:
    """Return the limits an entry order breaks, judged as the gate judges: at the intent's prices."""
    problems = []
    if r.quantity > limits.max_order_quantity:
        problems.append(f"quantity {r.quantity} > max_order_quantity {limits.max_order_quantity}")
    price = next((p for p in (r.limit_price, r.stop_price, intent.market_price) if p is not None), None)
    if price is None:
        problems.append("no price to value the order at")
    elif r.quantity * price > limits.max_order_notional * (1 + NOTIONAL_SLACK):
        problems.append(f"notional {r.quantity * price} > max_order_notional {limits.max_order_notional}")
    after = r.position + r.quantity * r.side.sign
    if abs(after) > limits.max_position_per_symbol:
        problems.append(f"position after {after} > max_position_per_symbol {limits.max_position_per_symbol}")
    if r.working_orders + intent.legs > limits.max_open_orders:
        problems.append(f"{r.working_orders} working + {intent.legs} legs > max_open_orders {limits.max_open_orders}")
    return problems


# ---------------------------------------------------------------- report


@dataclass
class Report:
    """What a run found: the figures, the fault table and the checks."""

    settings: dict[str, Any]
    figures: dict[str, Any]
    faults: dict[str, dict[str, Any]]
    checks: list[Check]
    notes: list[str]
    findings: list[str] = field(default_factory=list)

    strict: bool = False  # a finding fails the run too

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(c.ok for c in self.checks) and not (self.strict and self.findings)

    def table(self) -> str:
        lines = ["", "faults                                     injected  survived  lost  untriggered  recovery p50 / max"]
        for kind, label, _ in KINDS:
            f = self.faults[kind]
            rec = f["recovery_s"]
            shown = f"{statistics.median(rec):5.1f} / {max(rec):5.1f} s" if rec else "-"
            lines.append(f"{label:<42} {f['injected']:>8}  {f['survived']:>8}  {f['lost']:>4}  {f['untriggered']:>11}  {shown}")
        total = {k: sum(f[k] for f in self.faults.values()) for k in ("injected", "survived", "lost", "untriggered")}
        lines.append(f"{'total':<42} {total['injected']:>8}  {total['survived']:>8}  {total['lost']:>4}  "
                     f"{total['untriggered']:>11}")
        lines.append(f"  ({NO_JOURNAL_ACTOR})")
        lines.append("")
        lines.append("figures")
        for name, value in self.figures.items():
            lines.append(f"  {name}: {value}")
        lines.append("")
        lines.append("checks")
        for c in self.checks:
            lines.append(f"  {'PASS' if c.ok else 'FAIL'}  {c.name}: {c.detail}")
        for note in self.notes:
            lines.append(f"  note: {note}")
        lines.append("")
        lines.append("findings (not judged by the checks)" if self.findings else "findings: none")
        for finding in self.findings:
            lines.append(f"  FOUND  {finding}")
        lines.append("")
        lines.append("RESULT: " + ("PASS" if self.passed else "FAIL"))
        return "\n".join(lines)

    def as_json(self) -> dict[str, Any]:
        return {"settings": self.settings, "figures": self.figures, "faults": self.faults,
                "checks": [{"name": c.name, "ok": c.ok, "detail": c.detail} for c in self.checks],
                "notes": self.notes, "findings": self.findings, "passed": self.passed}


def run(settings: Settings) -> Report:
    """Run one chaos run end to end and return its report; no process of it is left when this returns."""
    log = settings.log
    temporary = settings.work is None
    work = Path(tempfile.mkdtemp(prefix="chaos-")) if settings.work is None else settings.work
    work.mkdir(parents=True, exist_ok=True)
    server = SignalServer()
    system: System | None = None
    chaos: Chaos | None = None
    notes: list[str] = []
    checks: list[Check] = []
    findings: list[str] = []
    figures: dict[str, Any] = {}
    started = time.monotonic()
    try:
        log(f"chaos: {settings.symbols} symbols, {settings.seconds:g} s, seed {settings.seed}, speed x{settings.speed:g}; "
            f"work {work}")
        system = start_system(work, settings, server)
        log(f"chaos: system up in {time.monotonic() - started:.1f} s; trading under faults")
        chaos = Chaos(system, server, settings)
        chaos.run(settings.seconds)
        log("chaos: faults stopped; settling")
        notes.append(chaos.settle())
        log("chaos: checking")
        checks = chaos.checks()
        findings = chaos.find()
        snap = system.sim.snapshot()
        intents = chaos.journal.intents()
        signals = chaos.journal.recent_signals(limit=1_000_000)
        figures = {
            "trading seconds": round(settings.seconds),
            "orders at the simulator": snap["orders"],
            "fills": snap["executions"],
            "positions open at the end": sum(1 for q in snap["positions"].values() if Decimal(q)),
            "intents approved / denied": f"{sum(i.decision == 'APPROVED' for i in intents)} / "
                                         f"{sum(i.decision == 'DENIED' for i in intents)}",
            "signals accepted / rejected": f"{sum(s.accepted for s in signals)} / {sum(not s.accepted for s in signals)}",
            "signal polls served": server.served,
            "kills": sum(chaos.kills.values()),
            "log lines ERROR / CRITICAL": f"{chaos.tail.errors} / {chaos.tail.criticals}",
            "simulator messages paced out": chaos.paced_out,
        }
    except Exception as exc:
        checks.append(Check("the run itself", False, f"{type(exc).__name__}: {exc}"))
    finally:
        if chaos is not None:
            chaos.journal.close()
        if system is not None:
            try:
                system.close()
            except AssertionError as exc:
                checks.append(Check("no process left after the run", False, str(exc)))
        server.close()
        if temporary and not settings.keep:
            shutil.rmtree(work, ignore_errors=True)
    figures["wall seconds"] = round(time.monotonic() - started)
    faults = {}
    for kind, _, _ in KINDS:
        t = chaos.tallies[kind] if chaos is not None else Tally()
        faults[kind] = {"label": LABEL[kind], "injected": t.injected, "survived": t.survived, "lost": t.lost,
                        "untriggered": t.untriggered, "recovery_s": [round(x, 2) for x in t.recovery_s],
                        "lost_why": t.lost_why, "notes": dict(t.notes)}
    return Report(settings={"seconds": settings.seconds, "symbols": settings.symbols, "seed": settings.seed,
                            "speed": settings.speed, "gap": list(settings.gap), "squeeze": settings.squeeze,
                            "strict": settings.strict},
                  figures=figures, faults=faults, checks=checks, notes=notes, findings=findings,
                  strict=settings.strict)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.chaos", description=__doc__.split("\n")[0])
    length = parser.add_mutually_exclusive_group()
    length.add_argument("--minutes", type=float, help="trading time under faults, in minutes (default 10)")
    length.add_argument("--seconds", type=float, help="trading time under faults, in seconds")
    parser.add_argument("--symbols", type=int, default=50, help="simulated symbols traded (default 50)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the faults, the market and the signals")
    parser.add_argument("--speed", type=float, default=4.0, help="market seconds per wall second (default 4)")
    parser.add_argument("--json", type=Path, help="also write the report as JSON to this file")
    parser.add_argument("--work", type=Path, help="keep logs, journal and state here (default: a temporary directory)")
    parser.add_argument("--strict", action="store_true",
                        help="fail on findings too (lost faults, pacing violations, forged log lines...)")
    parser.add_argument("--squeeze", action="store_true",
                        help="pacing pressure also squeezes the simulator's 50 msg/s (another client's share)")
    args = parser.parse_args(argv)
    if args.symbols < 1:
        parser.error("--symbols must be at least 1")
    if args.work is not None and args.work.exists() and any(args.work.iterdir()):
        # A previous run's journal would be recovered against a new simulator: every check fails.
        parser.error(f"--work {args.work} is not empty (a previous run's journal and logs are there); "
                     f"give a new directory or remove it")
    seconds = args.seconds if args.seconds is not None else (args.minutes if args.minutes is not None else 10.0) * 60
    settings = Settings(seconds=seconds, symbols=args.symbols, seed=args.seed, speed=args.speed, work=args.work,
                        keep=args.work is not None, squeeze=args.squeeze, strict=args.strict,
                        log=lambda line: print(line, flush=True))
    report = run(settings)
    print(report.table(), flush=True)
    if args.json is not None:
        args.json.write_text(json.dumps(report.as_json(), indent=2, default=str) + "\n")
    return 0 if report.passed else 1


if __name__ == "__main__":
    sys.exit(main())
