"""For e2e tests: the whole actor tree on multiprocTCPBase, started as the launcher does, against a simulator.

`start_system` creates the actor system on a free loopback admin port, the simulator (stepped
clock by default, so prices move only when a test steps them) and the root Supervisor, and
answers StartSystem with a Config whose broker points at the simulator. Unless a test gives it
settings, no rule is configured (the demo signals come once an hour), so every order
comes from the test's own PlaceOrderGroup. `System.close` stops everything as the launcher does
and fails the test if a process of the system outlives the shutdown (after killing it by pid).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

from thespian.actors import ActorAddress, ActorSystem

from actors.processes import alive, listener_pid, parent_of, session_of, session_pids
from core import order_group as og
from core.config import Config, parse_config
from core.matching import BrokerOrder
from core.orders import new_order
from core.types import OrderType, Quote, Side, TimeInForce
from messages import (
    ActorReady,
    ChildStatus,
    GetActorStatus,
    GetOrders,
    GetPositions,
    GetStatus,
    GroupKind,
    Message,
    OrderIntent,
    OrdersSnapshot,
    PositionChanged,
    PositionsSnapshot,
    Shutdown,
    StartSystem,
    StatusSnapshot,
)
from messages.lifecycle import ActorStatusSnapshot
from simulator.market import WalkParams
from simulator.server import SimulatorConfig, SimulatorThread, SymbolSpec

_T = TypeVar("_T")
START_PRICE = Decimal("100.00")
SUPERVISOR = "supervisor"


def free_port() -> int:
    """Return a free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(condition: Callable[[], _T], timeout: float, what: str, interval: float = 0.02) -> _T:
    """Return the first truthy value of `condition()`; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


def wait_until(condition: Callable[[], _T], timeout: float, what: str, interval: float = 0.2) -> _T:
    """Return the first truthy value of `condition()`, polled every `interval` s (for costly checks: a
    subprocess, a socket); fail after `timeout` seconds saying what it last returned."""
    deadline = time.monotonic() + timeout
    value = condition()
    while not value:
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what} (last: {value!r})")
        time.sleep(interval)
        value = condition()
    return value


def kill_launched(launcher: "subprocess.Popen[bytes] | subprocess.Popen[str]", marker: str,
                  *extra: int) -> None:
    """SIGKILL a launched `bootstrap.py` (its process group) if still running, and every process naming `marker`."""
    if launcher.poll() is None:
        os.killpg(launcher.pid, signal.SIGKILL)
        launcher.wait(10)
    for pid in processes_mentioning(marker) + list(extra):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def processes_mentioning(text: str) -> list[int]:
    """Return the live (non-zombie) pids whose command line contains `text` (a subprocess's marker)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = next(line for line in (entry / "status").read_text().splitlines() if line.startswith("State:"))
        except (OSError, StopIteration):
            continue
        if text in cmdline and "Z" not in state.split()[1]:
            found.append(int(entry.name))
    return found


def descendants(root: int) -> list[int]:
    """Return every live process below `root` (Linux /proc)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat[stat.rfind(")") + 2:].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [root]
    while todo:
        for pid in children.get(todo.pop(), ()):
            found.append(pid)
            todo.append(pid)
    return [pid for pid in found if alive(pid)]


def kill(pid: int) -> None:
    """SIGKILL `pid` if it still exists (never 0 or 1: 0 would signal our own process group)."""
    if pid <= 1 or pid == os.getpid():
        return
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def walk(*, lot: int = 100, max_book_lots: int = 10, volatility: float = 2.0,
         start_price: Decimal = START_PRICE) -> WalkParams:
    """Return lively random-walk parameters (prices move a few cents per quote)."""
    return WalkParams(start_price=start_price, volatility=volatility, lot=lot, max_book_lots=max_book_lots)


BAR_S = 60  # seconds per scripted bar
# Risk limits far beyond any order the e2e tests place (the risk tests give their own).
LOOSE_RISK: dict[str, object] = {
    "max_order_quantity": 1_000_000, "max_order_notional": 1_000_000_000, "price_collar_pct": 50,
    "max_position_per_symbol": 1_000_000, "max_gross_exposure": 10_000_000_000,
    "max_net_exposure": 10_000_000_000, "max_open_orders": 10_000, "max_orders_per_minute": 100_000,
    "daily_loss_limit": 1_000_000_000}


def scripted(symbol: str, directory: Path, prices: Sequence[str | Decimal]) -> SymbolSpec:
    """Return a simulator symbol whose trade price walks in a straight line from each price to the next.

    The first bar holds prices[0] for BAR_S seconds, bar i moves linearly from prices[i-1] to
    prices[i] over BAR_S seconds (bid = the trade price, ask one tick above, 500 shares a side).
    After the last bar no quote comes any more.
    """
    path = directory / f"{symbol}.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    values = [Decimal(p) for p in prices]
    rows = ["timestamp,open,high,low,close,volume"]
    for i, close in enumerate(values):
        open_ = values[i - 1] if i else close
        high, low = max(open_, close), min(open_, close)
        rows.append(f"{1_700_000_000 + i * BAR_S},{open_},{high},{low},{close},1000")
    path.write_text("\n".join(rows) + "\n")
    return SymbolSpec(symbol=symbol, bars_csv=str(path))


def make_config(*, admin_port: int, broker_port: int, symbols: Iterable[str], log_dir: Path,
                state_dir: Path, symbol_budget: tuple[int, float] = (5, 60.0),
                group_budget: tuple[int, float] = (3, 60.0), core_budget: tuple[int, float] = (2, 60.0),
                bar_seconds: int = 5, warmup_bars: int = 0, rules: Mapping[str, object] | None = None,
                signals: Mapping[str, object] | None = None, risk: Mapping[str, object] | None = None) -> Config:
    """Return a Config trading `symbols` on the simulator at `broker_port`.

    Without `rules` nothing decides (no rules; the demo signals come once an hour), so every
    order is the test's own. `signals` replaces the [signals] table, `risk` the [risk] table
    (by default limits no test order reaches: the tests of the limits set their own).
    """
    return parse_config({
        "system": {"admin_port": admin_port, "log_dir": str(log_dir), "state_dir": str(state_dir),
                   "log_level": "DEBUG"},
        "broker": {"host": "127.0.0.1", "port": broker_port, "client_id": 1,
                   "reconnect": {"initial_s": 0.2, "max_s": 0.5, "jitter": 0.1}},
        "supervision": {
            "symbol": {"max_restarts": symbol_budget[0], "window_s": symbol_budget[1]},
            "order_group": {"max_restarts": group_budget[0], "window_s": group_budget[1]},
            "core": {"max_restarts": core_budget[0], "window_s": core_budget[1]},
        },
        "symbols": {name: {} for name in symbols},
        # No history by default: a symbol is ready at once.
        "market_data": {"warmup_bars": warmup_bars, "stale_after_s": 3600.0, "bar_seconds": bar_seconds},
        "strategy": {"watch_config": False},
        "rules": dict(rules) if rules is not None else {},
        "signals": dict(signals) if signals is not None else {"demo": {"interval_s": 3600.0}},
        "risk": dict(risk) if risk is not None else LOOSE_RISK,
    }, source="<e2e>")


@dataclass
class System:
    """A running system: the actor system, its root Supervisor and the simulator it trades against."""

    asys: ActorSystem
    sim: SimulatorThread
    supervisor: ActorAddress
    config: Config
    admin_port: int
    log_dir: Path
    admin_pids: set[int] = field(default_factory=set)
    pids: set[int] = field(default_factory=set)
    closed: bool = False
    session: int = 0  # the admin's session: every process of the system, orphans included
    parents: dict[int, int] = field(default_factory=dict)
    tmp_path: Path = Path(".")
    symbols: tuple[SymbolSpec, ...] = ()
    clock: str = "stepped"
    config_kwargs: dict[str, Any] = field(default_factory=dict)
    sim_owned: bool = True   # close() stops the simulator (not after a restart_system took it over)
    killed: bool = False     # every process was SIGKILLed (kill_all): nothing to shut down
    core_pids: dict[str, int] = field(default_factory=dict)  # core actor key -> pid, from status

    # ------------------------------------------------------------ asking actors

    def ask(self, to: ActorAddress, question: Message, expect: type[_T], timeout: float = 5.0) -> _T:
        """Ask `to` and return its answer to this very question (skipping late answers to earlier ones)."""
        deadline = time.monotonic() + timeout
        reply = self.asys.ask(to, question, timeout)
        while not (isinstance(reply, expect) and getattr(reply, "cause_id", None) == question.msg_id):
            left = deadline - time.monotonic()
            assert left > 0 and reply is not None, (
                f"no {expect.__name__} answered {type(question).__name__}; last reply {reply!r}")
            reply = self.asys.listen(left)
        return reply

    def status(self) -> StatusSnapshot:
        """Return the root Supervisor's status (every supervised actor, sub-supervisors' children too)."""
        snapshot = self.ask(self.supervisor, GetStatus(), StatusSnapshot)
        self.pids.update(c.pid for c in snapshot.children if c.pid)
        self.core_pids.update({c.key: c.pid for c in snapshot.children if c.pid and c.supervisor == SUPERVISOR})
        return snapshot

    def child(self, supervisor: str, key: str) -> ChildStatus | None:
        """Return the status of the child `key` of `supervisor`, or None if it has none by that key."""
        return next((c for c in self.status().children
                     if c.supervisor == supervisor and c.key == key), None)

    def running(self, supervisor: str, key: str, incarnation: int | None = None) -> ChildStatus:
        """Wait until `key` runs and is ready (in `incarnation`, if given); return its status."""
        def ready() -> ChildStatus | None:
            c = self.child(supervisor, key)
            if c is None or not (c.running and c.ready and c.pid and c.address is not None):
                return None
            return c if incarnation is None or c.incarnation == incarnation else None
        return wait_for(ready, 10, f"{supervisor}/{key} running"
                        + (f" in incarnation {incarnation}" if incarnation else ""))

    def address(self, supervisor: str, key: str) -> ActorAddress:
        address = self.running(supervisor, key).address
        assert address is not None
        return address

    def address_pid(self, key: str) -> int:
        """Return the pid of the core actor `key` as last seen by status (0 if never seen)."""
        return self.core_pids.get(key, 0)

    def detail(self, supervisor: str, key: str) -> str:
        """Return what the running actor `key` says about its state (GetActorStatus detail)."""
        return self.actor_status(self.address(supervisor, key)).detail

    def actor_status(self, address: ActorAddress) -> ActorStatusSnapshot:
        status = self.ask(address, GetActorStatus(), ActorStatusSnapshot)
        self.pids.add(status.pid)
        return status

    def position(self, symbol: str) -> PositionChanged:
        """Return the position the symbol's actor holds now."""
        snapshot = self.ask(self.address("symbols", symbol), GetPositions(symbol=symbol), PositionsSnapshot)
        assert len(snapshot.positions) == 1, snapshot
        return snapshot.positions[0]

    def group_orders(self, group_id: str) -> OrdersSnapshot | None:
        """Return the legs of a running group as the group sees them; None once it finished."""
        c = self.child("groups", group_id)
        if c is None or c.address is None:
            return None
        return self.ask(c.address, GetOrders(), OrdersSnapshot)

    # ------------------------------------------------------------ orders

    def place(self, group: og.OrderGroup, *, market_price: Decimal | None = None, rule: str = "test") -> OrderIntent:
        """Send `group` to the risk gate as a SymbolActor does (reply_to = "symbols"); return the intent.

        The gate's reference price is the simulator's quote (last, else mid) unless given.
        """
        head = group.legs[0]
        if market_price is None:
            quote = self.quote(group.symbol)
            market_price = quote.last if quote.last is not None else (
                (quote.bid + quote.ask) / 2 if quote.bid is not None and quote.ask is not None else None)
        intent = OrderIntent(intent_id=group.id, symbol=group.symbol, side=head.side, quantity=head.quantity,
                             order_type=head.order_type, limit_price=head.limit_price,
                             stop_price=head.stop_price, tif=head.tif, kind=GroupKind(group.kind.value),
                             legs=group.legs, market_price=market_price, rule=rule,
                             reply_to=self.address(SUPERVISOR, "symbols"))
        self.asys.tell(self.address(SUPERVISOR, "risk"), intent)
        return intent

    def log_lines(self, containing: str, symbol: str = "") -> list[str]:
        """Return the lines of logs/system.log (or logs/symbols/<symbol>.log) that contain `containing`."""
        path = self.log_dir / "symbols" / f"{symbol}.log" if symbol else self.log_dir / "system.log"
        return [line for line in path.read_text(encoding="utf-8").splitlines() if containing in line]

    # ------------------------------------------------------------ the simulator

    def step(self, seconds: float) -> int:
        return self.sim.step(seconds)

    def quote(self, symbol: str) -> Quote:
        return self.sim.call(lambda: self.sim.sim.quotes[symbol])

    def broker_orders(self) -> dict[str, BrokerOrder]:
        """Return the simulator's orders by orderRef."""
        return self.sim.call(lambda: {o.order_ref: o for o in self.sim.sim.book.orders.values()})

    def broker_order(self, ref: str) -> BrokerOrder | None:
        return self.broker_orders().get(ref)

    def broker_position(self, symbol: str) -> Decimal:
        return Decimal(self.sim.snapshot()["positions"].get(symbol, "0"))

    def broker_realized(self) -> Decimal:
        return Decimal(self.sim.snapshot()["account"]["RealizedPnL"])

    def orders_per_ref(self) -> dict[str, int]:
        return dict(self.sim.snapshot()["orders_per_ref"])

    def step_until(self, condition: Callable[[], _T], *, step_s: float = 1.0, max_steps: int = 600,
                   what: str = "") -> _T:
        """Step the market `step_s` at a time until `condition()` holds after a step; return its value."""
        for _ in range(max_steps):
            self.step(step_s)
            value = condition()
            if value:
                return value
        raise AssertionError(f"{what or 'the condition'} did not happen within {max_steps * step_s:g} "
                             f"market seconds")

    # ------------------------------------------------------------ faults

    def kill_actor(self, supervisor: str, key: str) -> ChildStatus:
        """SIGKILL the process of `key`; return its status from before the kill."""
        before = self.running(supervisor, key)
        assert before.pid and before.pid != os.getpid()
        kill(before.pid)
        return before

    # ------------------------------------------------------------ stop

    def processes(self) -> set[int]:
        """Return every process of this actor system seen so far, the admin's live descendants included."""
        for admin in self.admin_pids:
            self.pids.update(descendants(admin))
        if self.session > 1:
            self.pids.update(session_pids(self.session))
        return self.pids | self.admin_pids

    def kill_all(self) -> None:
        """SIGKILL every process of the actor system at once (a crash of the whole system); the simulator stays."""
        self.processes()
        wait_for(lambda: self.all_dead(), 10, "every process of the actor system to die after SIGKILL")

    def all_dead(self) -> bool:
        """SIGKILL what is left of the actor system; return True once none of its processes lives."""
        self.killed = True
        pids = set(session_pids(self.session)) if self.session > 1 else set()
        pids |= {pid for pid in self.pids | self.admin_pids if alive(pid)}
        for pid in pids:
            kill(pid)
        return not any(alive(pid) for pid in pids)

    def close(self) -> None:
        """Stop the system as the launcher does (Shutdown, then the actor system) and the simulator.

        Raises AssertionError if a process of the system outlived the shutdown (it is killed first).
        """
        if self.closed:
            return
        self.closed = True
        if self.killed:
            wait_for(lambda: self.all_dead(), 10, "the killed system's processes to be gone")
            if self.sim_owned:
                self.sim.stop()
            return
        try:
            self.status()
        except Exception:  # collecting pids is best effort: the system may be half gone
            pass
        ours = self.processes()
        self.parents = {pid: parent_of(pid) for pid in ours}
        try:
            self.asys.ask(self.supervisor, Shutdown(reason="test over"), 15)
        except Exception:
            pass
        try:
            self.asys.shutdown()
        finally:
            if self.sim_owned:
                self.sim.stop()
            deadline = time.monotonic() + 5
            if self.session > 1:
                ours |= set(session_pids(self.session))  # e.g. a child orphaned during the shutdown
            while (left := sorted(p for p in ours if alive(p))) and time.monotonic() < deadline:
                time.sleep(0.02)
            for pid in left:
                kill(pid)
        assert not left, f"processes {left} outlived the system's shutdown ({self._describe(left)})"

    def _describe(self, pids: list[int]) -> str:
        """Say what each pid was (its parent, whether it was the admin) for a failure message."""
        parts = []
        for pid in pids:
            role = "admin" if pid in self.admin_pids else "actor"
            parts.append(f"{pid}: {role}, parent {self.parents.get(pid, '?')}")
        return "; ".join(parts)


def start_system(tmp_path: Path, symbols: tuple[SymbolSpec, ...], *, clock: str = "stepped",
                 **config_kwargs: Any) -> System:
    """Start simulator, actor system and Supervisor as the launcher does; the caller must close() it."""
    os.environ.setdefault("THESPIAN_BASE_IPADDR", "127.0.0.1")  # loopback only (thespian-notes §4.4)
    return _start(tmp_path, symbols, None, clock, config_kwargs)


def restart_system(old: System, **overrides: Any) -> System:
    """Start the actor system again (as `run` would after a crash) on the same simulator and state dir.

    `old` must have been killed (`kill_all`); the new System owns the simulator from now on.
    """
    assert old.killed, "restart_system is for a system whose processes were all killed"
    old.sim_owned = False
    kwargs = {**old.config_kwargs, **overrides}
    return _start(old.tmp_path, old.symbols, old.sim, old.clock, kwargs)


def _start(tmp_path: Path, symbols: tuple[SymbolSpec, ...], sim: SimulatorThread | None, clock: str,
           config_kwargs: dict[str, Any]) -> System:
    log_dir, state_dir = tmp_path / "logs", tmp_path / "state"
    log_dir.mkdir(parents=True, exist_ok=True)
    state_dir.mkdir(parents=True, exist_ok=True)
    admin_port = free_port()
    before = set(descendants(os.getpid()))
    # The actor system forks its admin before the simulator's thread exists: a fork never copies a
    # lock the simulator's thread holds (loguru's, asyncio's) into the actor processes.
    asys = ActorSystem("multiprocTCPBase", {"Admin Port": admin_port, "Process Startup Method": "fork"},
                       transientUnique=True)
    admin_pids = {pid for pid in descendants(os.getpid()) if pid not in before}
    owned = sim is None
    try:
        if sim is None:
            sim = SimulatorThread(SimulatorConfig(clock=clock, symbols=symbols, seed=7)).start()
        actor_classes = tuple(config_kwargs.pop("actor_classes", ()))
        config = make_config(admin_port=admin_port, broker_port=sim.port,
                             symbols=[s.symbol for s in symbols], log_dir=log_dir, state_dir=state_dir,
                             **config_kwargs)
        config_kwargs["actor_classes"] = actor_classes
        supervisor = asys.createActor("actors.supervisor.Supervisor", globalName=SUPERVISOR)
        system = System(asys=asys, sim=sim, supervisor=supervisor, config=config, admin_port=admin_port,
                        log_dir=log_dir, admin_pids=admin_pids, session=session_of(listener_pid(admin_port)),
                        tmp_path=tmp_path, symbols=symbols, clock=clock, config_kwargs=config_kwargs,
                        sim_owned=owned)
    except BaseException:
        asys.shutdown()
        if sim is not None and owned:
            sim.stop()
        raise
    try:
        start = StartSystem(config=config, actor_classes=actor_classes)
        ready = system.ask(supervisor, start, ActorReady, timeout=30)
        system.pids.add(ready.pid)
        # Every symbol runs and the connection is up before a test places anything.
        for spec in symbols:
            system.running("symbols", spec.symbol)
        wait_for(lambda: system.sim.snapshot()["clients"] == [1], 10, "the connection to the simulator")
        system.running(SUPERVISOR, "groups")
    except BaseException:
        system.close()
        raise
    return system


# ---------------------------------------------------------------- order builders


def bracket(group_id: str, symbol: str, quantity: int | Decimal, *, stop: Decimal, target: Decimal,
            side: Side = Side.BUY, entry_type: OrderType = OrderType.MKT,
            entry_limit: Decimal | None = None) -> og.OrderGroup:
    """Return a bracket: a (MKT) entry, a GTC stop-loss and a GTC take-profit."""
    quantity = Decimal(quantity)
    exit_side = side.opposite
    entry = new_order(ref=og.leg_ref(group_id, og.ENTRY), symbol=symbol, side=side, quantity=quantity,
                      order_type=entry_type, limit_price=entry_limit)
    sl = new_order(ref=og.leg_ref(group_id, og.STOP_LOSS), symbol=symbol, side=exit_side,
                   quantity=quantity, order_type=OrderType.STP, stop_price=stop, tif=TimeInForce.GTC)
    tp = new_order(ref=og.leg_ref(group_id, og.TAKE_PROFIT), symbol=symbol, side=exit_side,
                   quantity=quantity, order_type=OrderType.LMT, limit_price=target, tif=TimeInForce.GTC)
    return og.bracket(group_id, entry, sl, tp)


def oco(group_id: str, symbol: str, quantity: int | Decimal, *, buy_below: Decimal,
        sell_above: Decimal) -> og.OrderGroup:
    """Return an OCO pair ("{id}:oco0" BUY limit under the market, "{id}:oco1" SELL limit over it)."""
    quantity = Decimal(quantity)
    buy = new_order(ref=og.leg_ref(group_id, "buy"), symbol=symbol, side=Side.BUY, quantity=quantity,
                    order_type=OrderType.LMT, limit_price=buy_below, tif=TimeInForce.GTC)
    sell = new_order(ref=og.leg_ref(group_id, "sell"), symbol=symbol, side=Side.SELL, quantity=quantity,
                     order_type=OrderType.LMT, limit_price=sell_above, tif=TimeInForce.GTC)
    return og.oco(group_id, (buy, sell))


def net_pnl(position: PositionChanged) -> Decimal:
    """Return realized P&L net of commissions (IB's RealizedPnL convention), to the cent."""
    return (position.realized_pnl - position.commissions).quantize(Decimal("0.01"))


__all__ = [
    "BAR_S", "START_PRICE", "System", "SymbolSpec", "alive", "bracket", "descendants", "free_port", "kill",
    "make_config", "net_pnl", "oco", "scripted", "start_system", "wait_for", "walk",
]
