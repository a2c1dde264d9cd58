"""Benchmark of the risk gate and the SQLite journal: what they cost per order (issue 6).

Run: ``python -m bench.bench_journal [--intents 2000] [--rate 50] [--latency-intents 500] [--orders 200]
[--variants full normal none] [--working 16] [--quick] [--json PATH]``

Three measurements, each variant side by side in the same run:

1. Intent throughput through risk + journal. One multiprocTCPBase system (a free loopback admin
   port, THESPIAN_BASE_IPADDR=127.0.0.1); per variant a fresh RiskManager with its own journal
   file in a temp dir, configured as its supervisor configures it (ConfigureActor with a
   parse_config Config: the bench's loose limits, so every intent is approved) and stand-ins for
   its supervisor and its peers "tws", "groups", "symbols" and "bus" that count what arrives; the
   "groups" one stamps each PlaceOrderGroup's arrival (time.monotonic_ns: one clock for every
   process on Linux). Variants: journal FULL (fsync every commit), journal NORMAL (WAL, survives a
   process crash), and "none": UnjournaledRiskManager below, the same actor with its journal
   dropped after set-up. After `--warmup` intents (not counted) the bench tells `--intents`
   bracket intents (unique group ids) as fast as it can; throughput = intents / (first send ->
   last PlaceOrderGroup at "groups"), also over the burst's first and last tenth. The bench's own
   send rate is shown: when it is close to the throughput, the sender (thespian's TCP transport)
   is the limit, not the gate.
   As the real groups do, the "groups" stand-in finishes the groups (OrderGroupFinished straight
   to the gate, as the bus would deliver it), keeping the latest `--working` open (default 16:
   the default max_open_orders of 50 holds 16 brackets), so the gate's account does not carry
   thousands of working groups. Each finish is one more commit of the account (and Snapshot) at
   the gate: part of what an order costs there. The account's sends of the last 60 s (for
   max_orders_per_minute, 3 per bracket) still grow with the burst under loose limits: every
   commit and Snapshot of the account carries them, so the rate falls as the burst goes on; the
   table shows the account's journaled size at the end.
2. Per-intent latency: on a fresh rig per variant, `--latency-intents` intents told one at a
   time at `--rate`/s on a fixed schedule; latency = the PlaceOrderGroup's arrival at "groups" -
   the monotonic stamp taken just before `asys.tell`. "journal adds" = the variant's p50 (p99)
   minus the no-journal p50 (p99): a difference of percentiles, the two runs are not paired.
3. Journal write cost in process (no actors, FULL and NORMAL files of their own), per simulated
   bracket (`--orders` of them), the writes the system does for it, each timed alone
   (perf_counter_ns), with the real row types and pickles:
   (a) the gate's transaction: record_intent + put_state of the group's first GroupRecord +
       put_state of a RiskState (the account as full as the default limits let it be: 16
       working brackets, 5 holdings, 60 sends in the rate window; ~1.6 KB pickled) in one batch();
   (b) the connection's order rows, per leg (3 legs) and change, each its own transaction with
       the leg's pickled Route: "submitted" (the SubmitOrder registered), "placed" (broker id:
       upsert + raise_order_id_hwm + the intent looked up and, for the first leg, resolved SENT,
       in one batch, as `TwsConnection._journal_route` does), "accepted" and "done" (entry and
       target filled, stop cancelled);
   (c) per fill (entry and target: two per bracket) record_execution + record_commission.
   The route blobs are the real `Route` pickles (~0.4-0.7 KB, printed), not padded to 1.5 KB.

Which figure is "the latency the journal adds per order": on the way to the broker, part 2's
"journal adds" (the gate's commit, measured end to end through the actors) plus, at the
connection, the "submitted" + "placed" writes of each leg before its PLACE_ORDER leaves; part 3
prints that path in process as "outbound path" (the gate's transaction + 3 legs x (submitted +
placed): a bracket is live at the broker once its last leg is placed). Its "per order, all
writes" row is the journal's whole time per bracket, most of it off that path (acks, fills).

The run's processes are stopped in every case (an exception, Ctrl-C, SIGTERM): the rigs' actors
are asked to exit, then asys.shutdown(), then whatever is left in the admin's session is killed
by pid; the temp dirs are removed.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import pickle
import shutil
import signal
import tempfile
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal
from pathlib import Path
from typing import Any, Final

from thespian.actors import Actor, ActorAddress, ActorExitRequest, ActorSystemMessage

from actors.risk_manager import RiskManager
from bench.bench_runtime import percentile
from messages import (
    ActorFailed,
    ConfigureActor,
    GroupOutcome,
    OrderGroupFinished,
    PlaceOrderGroup,
    Publish,
    SubmitOrders,
)

_MS: Final = 1_000_000
SYMBOL: Final = "AAPL"
QUANTITY: Final = Decimal(10)
VARIANTS: Final = ("full", "normal", "none")
LABEL: Final = {"full": "FULL", "normal": "NORMAL", "none": "none"}
ROLES: Final = ("tws", "groups", "symbols", "bus")
ASK_S: Final = 30
SHUTDOWN_WAIT_S: Final = 10


# ---------------------------------------------------------------- the stand-ins (in the actor processes)


@dataclass(frozen=True, slots=True, kw_only=True)
class Role:
    """Tell a StandIn its name; a "groups" one finishes all but the latest `keep_working` groups (-1: none)."""

    name: str
    keep_working: int = -1


@dataclass(frozen=True, slots=True, kw_only=True)
class GetTally:
    """Ask a StandIn for its Tally once `count` messages of type `type_name` have arrived (0: at once)."""

    type_name: str = "PlaceOrderGroup"
    count: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class Tally:
    """What a StandIn saw: messages per type, each PlaceOrderGroup's arrival (monotonic ns), failures."""

    role: str
    counts: tuple[tuple[str, int], ...]
    arrivals: tuple[tuple[str, int], ...]
    failures: tuple[str, ...]


class StandIn(Actor):
    """A stand-in for the gate's supervisor or one of its peers: counts what arrives, answers nothing.

    Stamps each PlaceOrderGroup's arrival first thing in the handler.
    """

    def __init__(self) -> None:
        super().__init__()
        self.role = "?"
        self.keep_working = -1
        self.counts: Counter[str] = Counter()
        self.arrivals: dict[str, int] = {}
        self.open: deque[tuple[str, str]] = deque()
        self.failures: list[str] = []
        self.waiting: list[tuple[ActorAddress, GetTally]] = []

    def receiveMessage(self, msg: object, sender: ActorAddress) -> None:
        now = time.monotonic_ns()
        if isinstance(msg, ActorSystemMessage):
            return
        if isinstance(msg, Role):
            self.role, self.keep_working = msg.name, msg.keep_working
            return
        if isinstance(msg, GetTally):
            self.waiting.append((sender, msg))
            self._answer()
            return
        inner = msg.message if isinstance(msg, Publish) else None
        self.counts[type(msg).__name__ if inner is None else f"Publish({type(inner).__name__})"] += 1
        if isinstance(msg, SubmitOrders):
            self.counts["SubmitOrder"] += len(msg.orders)  # a group's legs come in one message
        if isinstance(msg, ActorFailed):
            self.failures.append(f"{msg.key}: {msg.error} handling {msg.message_type}")
        if isinstance(msg, PlaceOrderGroup):
            self.arrivals.setdefault(msg.group_id, now)
            if self.keep_working >= 0:
                self.open.append((msg.group_id, msg.symbol))
                while len(self.open) > self.keep_working:
                    group_id, symbol = self.open.popleft()
                    self.send(sender, OrderGroupFinished.caused_by(msg, group_id=group_id, symbol=symbol,
                                                                   outcome=GroupOutcome.CANCELLED,
                                                                   ts_ns=time.time_ns()))
        self._answer()

    def _answer(self) -> None:
        still = []
        for asker, wanted in self.waiting:
            if self.counts[wanted.type_name] >= wanted.count:
                self.send(asker, Tally(role=self.role, counts=tuple(sorted(self.counts.items())),
                                       arrivals=tuple(self.arrivals.items()), failures=tuple(self.failures)))
            else:
                still.append((asker, wanted))
        self.waiting = still


class UnjournaledRiskManager(RiskManager):
    """The RiskManager without a journal: the same gate, sends and Snapshots, no SQLite write.

    Set-up still opens (and reads) its journal file once; from then on `journal` is None, which
    the gate treats as "nothing journaled".
    """

    def on_configure(self, msg: ConfigureActor) -> None:
        super().on_configure(msg)
        self.journal = None


_ACTOR_CLASS: Final = {"full": f"{RiskManager.__module__}.{RiskManager.__qualname__}",
                       "normal": f"{RiskManager.__module__}.{RiskManager.__qualname__}",
                       "none": "bench.bench_journal.UnjournaledRiskManager"}


# ---------------------------------------------------------------- values the bench sends and writes


def make_config(work: Path, variant: str) -> Any:
    """Return the gate's Config: its state dir (journal.sqlite) under `work`, loose limits, `variant`'s sync."""
    from bench.bench_runtime import BENCH_RISK
    from core.config import parse_config

    return parse_config({
        "system": {"log_dir": str(work / "logs"), "state_dir": str(work / "state")},
        "symbols": {SYMBOL: {}},
        "journal": {"synchronous": "NORMAL" if variant == "normal" else "FULL"},
        "risk": BENCH_RISK,
    }, source=f"<bench_journal {variant}>")


def bracket(group_id: str) -> Any:
    """Return the core bracket `group_id`: BUY 10 LMT 100 entry, STP 95 stop-loss, LMT 110 take-profit."""
    from core import order_group as og
    from core.orders import new_order
    from core.types import OrderType, Side, TimeInForce

    entry = new_order(ref=og.leg_ref(group_id, og.ENTRY), symbol=SYMBOL, side=Side.BUY, quantity=QUANTITY,
                      order_type=OrderType.LMT, limit_price=Decimal("100.00"))
    stop = new_order(ref=og.leg_ref(group_id, og.STOP_LOSS), symbol=SYMBOL, side=Side.SELL, quantity=QUANTITY,
                     order_type=OrderType.STP, stop_price=Decimal("95.00"), tif=TimeInForce.GTC)
    target = new_order(ref=og.leg_ref(group_id, og.TAKE_PROFIT), symbol=SYMBOL, side=Side.SELL,
                       quantity=QUANTITY, order_type=OrderType.LMT, limit_price=Decimal("110.00"),
                       tif=TimeInForce.GTC)
    return og.bracket(group_id, entry, stop, target)


def intent(group_id: str) -> Any:
    """Return the OrderIntent of `bracket(group_id)`, as a symbol actor's rule would send it."""
    from messages import GroupKind, OrderIntent

    group = bracket(group_id)
    head = group.legs[0]
    wall = time.time_ns()
    return OrderIntent(intent_id=group_id, symbol=SYMBOL, side=head.side, quantity=head.quantity,
                       order_type=head.order_type, limit_price=head.limit_price, stop_loss=Decimal("95.00"),
                       take_profit=Decimal("110.00"), kind=GroupKind.BRACKET, legs=group.legs,
                       market_price=Decimal("100.00"), rule="bench_entry", rules_version="bench-1",
                       signal_id=f"sig-{group_id}", ts_ns=wall)


# ---------------------------------------------------------------- the actor rigs


@dataclass
class Rig:
    """One variant's RiskManager, its stand-ins and its work dir."""

    variant: str
    risk: ActorAddress
    standins: dict[str, ActorAddress]
    work: Path
    config: Any
    pid: int = 0


@dataclass
class Bench:
    """The run's actor system, the admin's session (every process of it) and the live rigs."""

    asys: Any
    session: int
    root: Path
    rigs: list[Rig] = field(default_factory=list)


_RUNNING: list[Bench] = []  # what a signal handler must kill
_TEMP: list[Path] = []      # and remove


def _kill_on_signal(signum: int, frame: object) -> None:
    from actors.processes import kill_session

    # thespian's ask() swallows KeyboardInterrupt: kill this run's processes by pid and leave.
    for bench in _RUNNING:
        kill_session(bench.session)
    for path in _TEMP:
        shutil.rmtree(path, ignore_errors=True)
    print(f"\nbench_journal: stopped by signal {signum}; its processes were killed", flush=True)
    os._exit(128 + signum)


def open_bench(root: Path) -> Bench:
    """Start a multiprocTCPBase system on a free loopback admin port; remember its session for the sweep."""
    from thespian.actors import ActorSystem

    from actors.launcher import _thespian_log_defs, free_port
    from actors.processes import listener_pid, session_of

    os.environ["THESPIAN_BASE_IPADDR"] = "127.0.0.1"
    os.environ["IBACTORS_LOG_DIR"] = str(root / "logs")
    (root / "logs").mkdir(parents=True, exist_ok=True)  # thespian's admin does not start without its log file
    port = free_port()
    asys = ActorSystem("multiprocTCPBase", {"Admin Port": port},
                       logDefs=_thespian_log_defs(make_config(root, "full")), transientUnique=True)
    bench = Bench(asys=asys, session=session_of(listener_pid(port)), root=root)
    _RUNNING.append(bench)
    return bench


def close_bench(bench: Bench) -> None:
    """Stop every rig, shut the system down, kill what is left of its session."""
    from actors.processes import kill_session, session_pids

    try:
        for rig in list(bench.rigs):
            stop_rig(bench, rig)
    finally:
        try:
            bench.asys.shutdown()
        finally:
            # asys.shutdown() returns before the last processes (admin, logger) are gone.
            if bench.session > 1:
                deadline = time.monotonic() + SHUTDOWN_WAIT_S
                while session_pids(bench.session) and time.monotonic() < deadline:
                    time.sleep(0.1)
                left = kill_session(bench.session)
                if left:
                    print(f"  (killed {left} actor system process(es) left after the shutdown)")
            if bench in _RUNNING:
                _RUNNING.remove(bench)


def start_rig(bench: Bench, variant: str, name: str, keep_working: int) -> Rig:
    """Create `variant`'s RiskManager and its stand-ins, configure it and wait until it says it is configured."""
    from actors.processes import session_of
    from messages import ActorStatusSnapshot, GetActorStatus, Peer

    work = bench.root / name
    config = make_config(work, variant)
    asys = bench.asys
    standins = {role: asys.createActor("bench.bench_journal.StandIn") for role in (*ROLES, "supervisor")}
    rig = Rig(variant=variant, risk=asys.createActor(_ACTOR_CLASS[variant]), standins=standins, work=work,
              config=config)
    bench.rigs.append(rig)
    for role, address in standins.items():
        asys.tell(address, Role(name=role, keep_working=keep_working if role == "groups" else -1))
    peers = tuple(Peer(name=role, address=standins[role]) for role in ROLES)
    asys.tell(rig.risk, ConfigureActor(key="risk", config=config, peers=peers, reply_to=standins["supervisor"]))
    status = asys.ask(rig.risk, GetActorStatus(), ASK_S)
    if not (isinstance(status, ActorStatusSnapshot) and status.configured and not status.failed):
        failures = tally(bench, rig, "supervisor").failures
        raise RuntimeError(f"the {variant} RiskManager did not start: {status!r} {failures}")
    rig.pid = status.pid
    if session_of(status.pid) != bench.session:
        raise RuntimeError(f"the RiskManager (pid {status.pid}) is not in the admin's session {bench.session}")
    return rig


def stop_rig(bench: Bench, rig: Rig) -> None:
    """Ask the rig's actors to exit (the gate closes nothing itself: its process ends)."""
    for address in (rig.risk, *rig.standins.values()):
        bench.asys.tell(address, ActorExitRequest())
    bench.rigs.remove(rig)


def tally(bench: Bench, rig: Rig, role: str, count: int = 0, timeout: float = ASK_S,
          type_name: str = "PlaceOrderGroup") -> Tally:
    """Return `role`'s Tally once `count` messages of `type_name` arrived, or what it has after `timeout`."""
    answer = bench.asys.ask(rig.standins[role], GetTally(type_name=type_name, count=count), timeout)
    if not isinstance(answer, Tally):
        answer = bench.asys.ask(rig.standins[role], GetTally(), ASK_S)
    if not isinstance(answer, Tally):
        raise RuntimeError(f"the {role} stand-in of {rig.variant} did not answer (got {answer!r})")
    return answer


def check(bench: Bench, rig: Rig, expected: int) -> list[str]:
    """Return what went wrong at the rig: a failure reported to its supervisor, fewer orders than `expected`."""
    problems = list(tally(bench, rig, "supervisor").failures)
    tws = dict(tally(bench, rig, "tws", 3 * expected, 10, "SubmitOrder").counts).get("SubmitOrder", 0)
    if tws != 3 * expected:
        problems.append(f"tws has {tws} SubmitOrders, expected {3 * expected}")
    return problems


def risk_state_bytes(rig: Rig) -> int:
    """Return the size of the gate's account as last journaled (0: not journaled)."""
    from actors.risk_manager import STATE_KEY
    from journal.store import Journal

    path = Path(rig.config.journal_path)
    if rig.variant == "none" or not path.is_file():
        return 0
    with Journal.open(path, readonly=True) as journal:
        state = journal.get_state(STATE_KEY)
    return len(pickle.dumps(state, protocol=5)) if state is not None else 0


def warm_up(bench: Bench, rig: Rig, count: int) -> None:
    """Send `count` intents (not measured) and wait for their groups: first commits, imports, connections."""
    for i in range(count):
        bench.asys.tell(rig.risk, intent(f"{rig.variant}-warm-{i}"))
    got = len(tally(bench, rig, "groups", count, 60).arrivals)
    if got < count:
        raise RuntimeError(f"{rig.variant}: only {got} of {count} warm-up groups arrived")


@dataclass
class Throughput:
    intents: int
    arrived: int
    per_s: float
    send_per_s: float
    elapsed_s: float
    first_per_s: float  # over the first tenth of the groups: from the first send
    last_per_s: float   # over the last tenth: between arrivals
    state_bytes: int
    problems: list[str]


def bench_throughput(bench: Bench, variant: str, count: int, warmup: int, keep_working: int) -> Throughput:
    """Tell `count` intents to a fresh `variant` gate as fast as possible; return intents/s to the last group."""
    rig = start_rig(bench, variant, f"throughput-{variant}", keep_working)
    try:
        warm_up(bench, rig, warmup)
        messages = [intent(f"{variant}-t-{i}") for i in range(count)]
        first = time.monotonic_ns()
        for msg in messages:
            bench.asys.tell(rig.risk, msg)
        sent = time.monotonic_ns()
        found = tally(bench, rig, "groups", warmup + count, max(60.0, count / 20))
        arrivals = dict(found.arrivals)
        times = sorted(arrivals[m.intent_id] for m in messages if m.intent_id in arrivals)
        arrived, tenth = len(times), max(1, len(times) // 10)
        elapsed = (times[-1] - first) / 1e9 if times else math.nan
        return Throughput(intents=count, arrived=arrived, per_s=arrived / elapsed if elapsed > 0 else math.nan,
                          send_per_s=count / ((sent - first) / 1e9) if sent > first else math.nan,
                          elapsed_s=elapsed,
                          first_per_s=tenth * 1e9 / (times[tenth - 1] - first) if times else math.nan,
                          last_per_s=(tenth * 1e9 / (times[-1] - times[-tenth - 1])
                                      if len(times) > tenth and times[-1] > times[-tenth - 1] else math.nan),
                          state_bytes=risk_state_bytes(rig), problems=check(bench, rig, warmup + count))
    finally:
        stop_rig(bench, rig)


@dataclass
class Latency:
    latencies_ms: list[float]
    missing: int
    send_rate: float
    state_bytes: int
    problems: list[str]


def bench_latency(bench: Bench, variant: str, count: int, rate: float, warmup: int,
                  keep_working: int) -> Latency:
    """Tell `count` intents one at a time at `rate`/s to a fresh `variant` gate; return send -> group latencies."""
    rig = start_rig(bench, variant, f"latency-{variant}", keep_working)
    try:
        warm_up(bench, rig, warmup)
        sent: dict[str, int] = {}
        began = time.monotonic()
        for i in range(count):
            delay = began + i / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)  # the send schedule, not a wait for a condition
            msg = intent(f"{variant}-l-{i}")
            sent[msg.intent_id] = time.monotonic_ns()
            bench.asys.tell(rig.risk, msg)
        stamps = sorted(sent.values())
        send_rate = (len(stamps) - 1) * 1e9 / (stamps[-1] - stamps[0]) if len(stamps) > 1 else math.nan
        arrivals = dict(tally(bench, rig, "groups", warmup + count, 60).arrivals)
        latencies = [(arrivals[g] - t) / _MS for g, t in sent.items() if g in arrivals]
        return Latency(latencies_ms=latencies, missing=count - len(latencies), send_rate=send_rate,
                       state_bytes=risk_state_bytes(rig), problems=check(bench, rig, warmup + count))
    finally:
        stop_rig(bench, rig)


# ---------------------------------------------------------------- part 3: the writes in process


WRITES: Final = (
    ("risk", "(a) risk transaction: intent + group record + account"),
    ("submitted", "(b) order row 'submitted' (per leg)"),
    ("placed", "(b) order row 'placed' + id hwm + intent SENT (per leg)"),
    ("accepted", "(b) order row 'accepted' (per leg)"),
    ("done", "(b) order row 'filled'/'cancelled' (per leg)"),
    ("execution", "(c) record_execution (per fill)"),
    ("commission", "(c) record_commission (per fill)"),
)


@dataclass
class Writes:
    per_write_ms: dict[str, list[float]]
    per_order_ms: list[float]
    outbound_ms: list[float]
    sizes: dict[str, int]


def account_state(now: int) -> Any:
    """Return a RiskState as full as the default limits let it be: 16 working brackets, 5 holdings, 60 sends."""
    from actors.risk_manager import RiskState
    from core import risk as core_risk

    working = tuple(core_risk.Working(intent_id=f"{SYMBOL}-7-{1000 + i}", symbol=SYMBOL, legs=3, pending=QUANTITY)
                    for i in range(16))
    holdings = tuple(core_risk.Holding(symbol=s, quantity=Decimal(100), mark=Decimal("101.25"),
                                       net_pnl=Decimal("-12.50")) for s in ("AAPL", "MSFT", "NVDA", "AMZN", "META"))
    account = core_risk.Account(day="2025-06-02", day_start_pnl=Decimal("-3.75"), holdings=holdings,
                                working=working, sent=tuple((now // 1_000_000_000 - i, 1) for i in range(59, -1, -1)))
    return RiskState(account=account)


def _timed(action: Callable[[], object]) -> float:
    began = time.perf_counter_ns()
    action()
    return (time.perf_counter_ns() - began) / _MS


def bench_writes(path: Path, synchronous: str, orders: int) -> Writes:
    """Do the journal writes of `orders` brackets, as the gate and the connection do them; time each one."""
    from actors.order_group import GroupRecord, group_key
    from actors.risk_manager import STATE_KEY
    from actors.tws_connection import Route
    from core import order_group as og
    from core.orders import OrderStatus
    from core.types import Execution
    from journal.store import ExecRow, IntentRow, Journal
    from messages import OrderStatusChanged, PlaceOrderGroup

    per_write: dict[str, list[float]] = {key: [] for key, _ in WRITES}
    per_order: list[float] = []
    outbound: list[float] = []
    sizes: dict[str, int] = {}
    broker_id = 0
    with Journal.open(path, synchronous=synchronous) as journal:
        for n in range(orders):
            now = time.time_ns()
            group_id = f"{SYMBOL}-{synchronous}-{n}"
            msg = intent(group_id)
            started, _ = og.decide(bracket(group_id), og.Start())
            place = PlaceOrderGroup(group_id=group_id, kind=msg.kind, symbol=SYMBOL, legs=msg.legs,
                                    intent_id=group_id, approval=f"approval-{n}", started=started)
            record, state = GroupRecord(place=place, group=started), account_state(now)
            row = IntentRow(intent_id=group_id, ts_ns=msg.ts_ns, symbol=SYMBOL, side=msg.side,
                            quantity=msg.quantity, order_type=msg.order_type, limit_price=msg.limit_price,
                            tif=msg.tif, stop_loss=msg.stop_loss, take_profit=msg.take_profit,
                            kind=msg.kind.value, legs=len(msg.legs), rule=msg.rule,
                            rules_version=msg.rules_version, signal_id=msg.signal_id,
                            market_price=msg.market_price, msg_id=msg.msg_id, corr_id=msg.correlation_id,
                            decision="APPROVED", decided_ns=now)
            sizes["risk state"] = len(pickle.dumps(state, protocol=5))
            sizes["group record"] = len(pickle.dumps(record, protocol=5))
            costs: dict[str, list[float]] = {key: [] for key, _ in WRITES}

            def risk_transaction() -> None:
                with journal.batch():
                    journal.record_intent(row)
                    journal.put_state(group_key(group_id), record, ts_ns=now)
                    journal.put_state(STATE_KEY, state, ts_ns=now)

            costs["risk"].append(_timed(risk_transaction))

            routes: list[Route] = []
            for leg in msg.legs:
                route = Route(ref=leg.ref, group_id=group_id, order=leg, transmit=leg is msg.legs[-1],
                              cause_id=msg.msg_id, corr_id=msg.correlation_id)
                routes.append(route)
                costs["submitted"].append(_timed(lambda r=route: _upsert(journal, r, now)))
            hwm = journal.order_id_hwm()
            for i, route in enumerate(routes):
                broker_id += 1
                routes[i] = route = replace(route, broker_id=broker_id, order=replace(route.order, broker_id=broker_id))

                def placed(r: Route = route) -> None:
                    nonlocal hwm
                    with journal.batch():
                        _upsert(journal, r, now)
                        if r.broker_id > hwm:
                            hwm = journal.raise_order_id_hwm(r.broker_id)
                            found = journal.intent(group_id)
                            if found is not None and not found.resolution:
                                journal.resolve_intent(group_id, resolution="SENT", ts_ns=now,
                                                       reason=f"{r.ref} placed as order {r.broker_id}")

                costs["placed"].append(_timed(placed))
            for i, route in enumerate(routes):
                status = OrderStatusChanged(ref=route.ref, group_id=group_id, broker_id=route.broker_id,
                                            status=OrderStatus.SUBMITTED, remaining=QUANTITY, ts_ns=now,
                                            cause_id=msg.msg_id, corr_id=msg.correlation_id)
                routes[i] = route = replace(route, accepted=True, last_status=status)
                costs["accepted"].append(_timed(lambda r=route: _upsert(journal, r, now)))
            # Entry and take-profit fill; the stop-loss is cancelled by the broker (OCA).
            for i, route in enumerate(routes):
                filled = route.order.ref.endswith(og.ENTRY) or route.order.ref.endswith(og.TAKE_PROFIT)
                if filled:
                    execution = Execution(exec_id=f"0000e0d5.{n:08x}.{i:02d}.01", order_id=route.broker_id,
                                          order_ref=route.ref, symbol=SYMBOL, side=route.order.side,
                                          quantity=QUANTITY, price=route.order.limit_price or Decimal("100.00"),
                                          ts_ns=now)
                    costs["execution"].append(_timed(lambda e=execution: journal.record_execution(ExecRow.of(e))))
                    costs["commission"].append(_timed(lambda e=execution: journal.record_commission(
                        e.exec_id, commission=Decimal("1.00"), realized_pnl=None, ts_ns=now)))
                    execution = replace(execution, commission=Decimal("1.00"))
                    status = replace(route.last_status, status=OrderStatus.FILLED, filled=QUANTITY,
                                     remaining=Decimal(0), avg_fill_price=execution.price)
                    routes[i] = route = replace(route, last_status=status, executions=(execution,))
                else:
                    status = replace(route.last_status, status=OrderStatus.CANCELLED)
                    routes[i] = route = replace(route, last_status=status)
                sizes["route (done)" if filled else "route (cancelled)"] = len(_route_blob(route))
                costs["done"].append(_timed(lambda r=route: _upsert(journal, r, now)))
            sizes["route (submitted)"] = len(_route_blob(replace(routes[0], broker_id=0, last_status=None,
                                                                    accepted=False, executions=())))
            for key, values in costs.items():
                per_write[key] += values
            per_order.append(sum(sum(v) for v in costs.values()))
            outbound.append(sum(costs["risk"]) + sum(costs["submitted"]) + sum(costs["placed"]))
    return Writes(per_write_ms=per_write, per_order_ms=per_order, outbound_ms=outbound, sizes=sizes)


def _route_blob(route: Any) -> bytes:
    return pickle.dumps(replace(route, owner=None), protocol=pickle.HIGHEST_PROTOCOL)


def _upsert(journal: Any, route: Any, now: int) -> None:
    """Write the leg's row as `TwsConnection._journal_route` does (its own transaction)."""
    from core.orders import OrderStatus
    from journal.store import OrderRow

    last = route.last_status
    if last is not None:
        status, filled, avg = last.status, last.filled, last.avg_fill_price
    else:
        status = OrderStatus.PENDING_SUBMIT if route.broker_id else OrderStatus.CREATED
        filled, avg = Decimal(0), Decimal(0)
    row = OrderRow.of(replace(route.order, broker_id=route.broker_id, status=status, filled=filled,
                              avg_fill_price=avg), group_id=route.group_id, ts_ns=now, route=_route_blob(route))
    with journal.batch():
        journal.upsert_order(row)


# ---------------------------------------------------------------- statistics and the table


def summary(values: Sequence[float]) -> dict[str, float]:
    """Return n, p50, p99 and max of `values`."""
    return {"n": len(values), "p50": percentile(values, 0.5), "p99": percentile(values, 0.99),
            "max": max(values) if values else math.nan}


def _f(value: float, fmt: str = ",.2f") -> str:
    return "-" if value is None or math.isnan(value) else format(value, fmt)


def _pair(s: dict[str, float], fmt: str = ",.2f") -> str:
    return f"{_f(s['p50'], fmt)} / {_f(s['p99'], fmt)}"


Row = tuple[str, dict[str, str], str]


def print_table(title: str, columns: Sequence[str], rows: list[Row]) -> None:
    """Print `rows` (label, cell per column, detail) aligned under `title`."""
    header = ("measure", *(LABEL.get(c, c) for c in columns), "detail")
    cells = [(label, *(values.get(c, "") for c in columns), detail) for label, values, detail in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(header)]
    aligns = ["<", *(">" for _ in columns), "<"]
    line = "  ".join(f"{{:{a}{w}}}" for a, w in zip(aligns, widths))
    print(f"\n{title}")
    print(line.format(*header).rstrip())
    print(line.format(*("-" * w for w in widths)).rstrip())
    for cell in cells:
        print(line.format(*cell).rstrip())


def throughput_rows(results: dict[str, Throughput]) -> list[Row]:
    base = results.get("none")
    rows: list[Row] = [
        ("intents/s (first send -> last PlaceOrderGroup)", {v: _f(r.per_s, ",.0f") for v, r in results.items()},
         f"{next(iter(results.values())).intents} bracket intents told as fast as possible"),
    ]
    if base is not None:
        rows.append(("  ratio to no journal", {v: _f(r.per_s / base.per_s, ".2f") for v, r in results.items()},
                     "throughput / the no-journal throughput"))
        rows.append(("  time per intent, minus no journal (ms)",
                     {v: _f(1000 / r.per_s - 1000 / base.per_s, ",.2f") for v, r in results.items()},
                     "1/throughput - 1/no-journal throughput"))
    rows += [
        ("  first tenth / last tenth (intents/s)",
         {v: f"{_f(r.first_per_s, ',.0f')} / {_f(r.last_per_s, ',.0f')}" for v, r in results.items()},
         "rate to the first 10% of the groups, and between the last 10%: the burst's start and end"),
        ("  bench send rate (intents/s)", {v: _f(r.send_per_s, ",.0f") for v, r in results.items()},
         "how fast the bench told them (near the throughput: the sender limits)"),
        ("  arrived at groups", {v: f"{r.arrived}/{r.intents}" for v, r in results.items()}, ""),
        ("  gate's account, journaled (bytes)", {v: str(r.state_bytes) if r.state_bytes else "-"
                                                 for v, r in results.items()},
         "pickled RiskState at the end (sends of the last 60 s are in it)"),
    ]
    return rows


def latency_rows(results: dict[str, Latency], rate: float) -> list[Row]:
    stats = {v: summary(r.latencies_ms) for v, r in results.items()}
    first = next(iter(results.values()))
    rows: list[Row] = [
        ("send -> PlaceOrderGroup p50 / p99 (ms)", {v: _pair(s) for v, s in stats.items()},
         f"{len(first.latencies_ms) + first.missing} intents one at a time, sent at "
         f"{_f(first.send_rate, '.1f')}/s (asked {rate:g}/s)"),
        ("  max (ms)", {v: _f(s["max"]) for v, s in stats.items()}, ""),
    ]
    base = stats.get("none")
    if base is not None:
        rows.append(("journal adds p50 / p99 (ms)",
                     {v: f"{_f(s['p50'] - base['p50'], '+,.2f')} / {_f(s['p99'] - base['p99'], '+,.2f')}"
                      for v, s in stats.items() if v != "none"},
                     "variant p50 (p99) - no-journal p50 (p99)"))
    rows += [
        ("  missing groups", {v: str(r.missing) for v, r in results.items()}, "no PlaceOrderGroup within 60 s"),
        ("  gate's account, journaled (bytes)", {v: str(r.state_bytes) if r.state_bytes else "-"
                                                 for v, r in results.items()}, "pickled RiskState at the end"),
    ]
    return rows


def writes_rows(results: dict[str, Writes]) -> list[Row]:
    rows: list[Row] = []
    for key, label in WRITES:
        rows.append((f"{label} p50 / p99 (ms)", {v: _pair(summary(w.per_write_ms[key]), ",.3f")
                                                 for v, w in results.items()},
                     f"{len(next(iter(results.values())).per_write_ms[key])} writes"))
    first = next(iter(results.values()))
    rows += [
        ("per order, all writes p50 / p99 (ms)", {v: _pair(summary(w.per_order_ms), ",.2f")
                                                  for v, w in results.items()},
         f"{len(first.per_order_ms)} brackets: 1 risk + 12 order rows + 2 x (execution + commission)"),
        ("  outbound path p50 / p99 (ms)", {v: _pair(summary(w.outbound_ms), ",.2f") for v, w in results.items()},
         "risk transaction + 3 legs x (submitted + placed): before the bracket is live"),
        ("  pickles (bytes)", {}, ", ".join(f"{k} {n}" for k, n in sorted(first.sizes.items()))),
    ]
    return rows


# ---------------------------------------------------------------- the run


def run_actors(args: argparse.Namespace, root: Path) -> tuple[dict[str, Throughput], dict[str, Latency]]:
    """Parts 1 and 2: one actor system, a fresh rig per variant and part."""
    throughput: dict[str, Throughput] = {}
    latency: dict[str, Latency] = {}
    bench = open_bench(root)
    try:
        for variant in args.variants if "throughput" not in args.skip else ():
            print(f"throughput, journal {LABEL[variant]}: {args.intents} intents as fast as possible", flush=True)
            throughput[variant] = result = bench_throughput(bench, variant, args.intents, args.warmup, args.working)
            print(f"  {result.per_s:,.0f} intents/s ({result.arrived} arrived in {result.elapsed_s:.2f} s; "
                  f"sent at {result.send_per_s:,.0f}/s){_problems(result.problems)}", flush=True)
        for variant in args.variants if "latency" not in args.skip else ():
            print(f"latency, journal {LABEL[variant]}: {args.latency_intents} intents at {args.rate:g}/s "
                  f"(~{args.latency_intents / args.rate:.0f} s)", flush=True)
            latency[variant] = found = bench_latency(bench, variant, args.latency_intents, args.rate, args.warmup,
                                                     args.working)
            s = summary(found.latencies_ms)
            print(f"  p50 {s['p50']:.2f} ms, p99 {s['p99']:.2f} ms, max {s['max']:.2f} ms"
                  f"{_problems(found.problems)}", flush=True)
    finally:
        close_bench(bench)
    return throughput, latency


def _problems(problems: list[str]) -> str:
    return f"; PROBLEMS: {'; '.join(problems)}" if problems else ""


def run_writes(args: argparse.Namespace, root: Path) -> dict[str, Writes]:
    """Part 3 for each journal variant asked for."""
    results: dict[str, Writes] = {}
    for variant in (v for v in args.variants if v != "none"):
        sync = LABEL[variant]
        print(f"journal writes in process, {sync}: {args.orders} brackets", flush=True)
        results[variant] = w = bench_writes(root / f"writes-{variant}" / "journal.sqlite", sync, args.orders)
        s = summary(w.per_order_ms)
        print(f"  per order p50 {s['p50']:.2f} ms, p99 {s['p99']:.2f} ms", flush=True)
    return results


def _json(throughput: dict[str, Throughput], latency: dict[str, Latency], writes: dict[str, Writes],
          args: argparse.Namespace) -> dict[str, object]:
    return {
        "args": {k: v for k, v in vars(args).items() if k != "json"},
        "cpus": os.cpu_count(),
        "throughput": {v: {"intents": r.intents, "arrived": r.arrived, "intents_per_s": r.per_s,
                           "send_per_s": r.send_per_s, "elapsed_s": r.elapsed_s,
                           "first_tenth_per_s": r.first_per_s, "last_tenth_per_s": r.last_per_s,
                           "ratio_to_none": r.per_s / throughput["none"].per_s if "none" in throughput else None,
                           "state_bytes": r.state_bytes, "problems": r.problems} for v, r in throughput.items()},
        "latency_ms": {v: {**summary(r.latencies_ms), "missing": r.missing, "send_rate": r.send_rate,
                           "state_bytes": r.state_bytes, "problems": r.problems,
                           **({"journal_adds_p50": percentile(r.latencies_ms, 0.5)
                               - percentile(latency["none"].latencies_ms, 0.5),
                               "journal_adds_p99": percentile(r.latencies_ms, 0.99)
                               - percentile(latency["none"].latencies_ms, 0.99)}
                              if "none" in latency and v != "none" else {})}
                       for v, r in latency.items()},
        "writes_ms": {v: {**{key: summary(w.per_write_ms[key]) for key, _ in WRITES},
                          "per_order": summary(w.per_order_ms), "outbound_path": summary(w.outbound_ms),
                          "sizes_bytes": w.sizes} for v, w in writes.items()},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--intents", type=int, default=2000, help="intents of the throughput run, per variant")
    parser.add_argument("--rate", type=float, default=50.0, help="intents per second of the latency run")
    parser.add_argument("--latency-intents", type=int, default=500, help="intents of the latency run, per variant")
    parser.add_argument("--orders", type=int, default=200, help="brackets whose writes part 3 times, per variant")
    parser.add_argument("--warmup", type=int, default=20, help="intents sent (not measured) before each run")
    parser.add_argument("--working", type=int, default=16,
                        help="groups the stand-in keeps open; older ones finish (-1: none ever finishes)")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--skip", choices=("throughput", "latency", "writes"), action="append", default=[],
                        help="leave a part out (repeatable)")
    parser.add_argument("--quick", action="store_true", help="small counts: a smoke run")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    if args.quick:
        args.intents, args.latency_intents, args.orders, args.warmup = 200, 50, 20, 5
    args.variants = list(dict.fromkeys(args.variants))
    if min(args.intents, args.latency_intents, args.orders) < 1 or args.rate <= 0 or args.warmup < 0:
        parser.error("counts must be >= 1, --rate > 0 and --warmup >= 0")
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _kill_on_signal)
    root = Path(tempfile.mkdtemp(prefix="bench_journal-"))
    _TEMP.append(root)
    began = time.monotonic()
    print(f"risk + journal benchmark: multiprocTCPBase on loopback, journals under {root} "
          f"({_filesystem(root)}), {os.cpu_count()} CPUs, variants {' '.join(LABEL[v] for v in args.variants)}",
          flush=True)
    try:
        throughput, latency = ({}, {}) if {"throughput", "latency"} <= set(args.skip) else run_actors(args, root)
        writes = run_writes(args, root) if "writes" not in args.skip else {}
    finally:
        shutil.rmtree(root, ignore_errors=True)
    if throughput:
        print_table(f"1. intent throughput through risk + journal ({args.working} groups kept working)",
                    args.variants, throughput_rows(throughput))
    if latency:
        print_table(f"2. per-intent latency at {args.rate:g} intents/s, bench tell -> PlaceOrderGroup at groups",
                    args.variants, latency_rows(latency, args.rate))
    if writes:
        print_table("3. journal writes in process (no actors), per write and per bracket",
                    list(writes), writes_rows(writes))
    problems = [p for r in (*throughput.values(), *latency.values()) for p in r.problems]
    if problems:
        print(f"\nPROBLEMS: {'; '.join(problems)}")
    if args.json is not None:
        args.json.write_text(json.dumps(_json(throughput, latency, writes, args), indent=2, default=str) + "\n",
                             encoding="utf-8")
        print(f"\nfigures written to {args.json}")
    print(f"\ntotal {time.monotonic() - began:.0f} s")
    return 1 if problems else 0


def _filesystem(path: Path) -> str:
    """Return the type of the filesystem holding `path` (fsync cost depends on it), from /proc/mounts."""
    best, kind = "", "unknown filesystem"
    try:
        with open("/proc/mounts", encoding="ascii", errors="replace") as f:
            for line in f:
                parts = line.split()
                if len(parts) > 2 and str(path.resolve()).startswith(parts[1]) and len(parts[1]) > len(best):
                    best, kind = parts[1], f"{parts[2]} at {parts[1]}"
    except OSError:
        pass
    return kind


if __name__ == "__main__":
    # Run as bench.bench_journal, not __main__: the stand-ins' messages pickle by module name and the
    # actor processes import them from there.
    from bench.bench_journal import main as _main

    raise SystemExit(_main())
