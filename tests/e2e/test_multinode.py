"""Acceptance (issue 9, several nodes): symbols on a member trade; the member is lost; they resume on another.

The leader runs in this process as the launcher starts it (its capabilities, tuned convention
timers), with the simulator in a thread; members b and c are real `bootstrap.py node` processes.
Both symbols start on b and open positions. b's admin is frozen (SIGSTOP): the symbols must be
ready on c within 10 s and b's stale actors must stop. Then c is SIGKILLed, its admin, logger,
actors and node command at once, while a take-profit fills: the symbols must be ready on b within
10 s with the broker's positions, the missed fill applied once, and every order reference must
reach the simulator exactly once. Last, the leader is killed: the actors on b must stop.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from thespian.actors import ActorAddress, ActorSystem

from actors import nodes
from actors import thespian_patches as tp
from actors.launcher import check_journal
from actors.processes import alive, listener_pid, session_of, session_pids
from core.config import load_config
from core.matching import FILLED
from messages import ActorReady, ChildrenSnapshot, GetChildren, StartSystem
from simulator.server import SimulatorConfig, SimulatorThread
from tests.e2e.harness import (
    SUPERVISOR,
    System,
    bracket,
    descendants,
    free_port,
    kill,
    make_config,
    net_pnl,
    scripted,
    wait_for,
    wait_until,
)

pytestmark = pytest.mark.timeout(180)
ROOT = Path(__file__).resolve().parents[2]
RESUME_WITHIN_S = 10.0


@dataclasses.dataclass
class Member:
    """A member node run by `bootstrap.py node` in its own session."""

    name: str
    port: int
    process: subprocess.Popen[bytes]
    out: Path

    def session(self) -> int:
        """Return the session of the node's actor system (its admin daemonizes into a session of its own)."""
        pid = listener_pid(self.port)
        return session_of(pid) if pid else 0

    def text(self) -> str:
        return self.out.read_text(encoding="utf-8", errors="replace")

    def kill(self) -> None:
        """SIGKILL the node command and every process of its actor system, its admin first (a host crash)."""
        admin = listener_pid(self.port)
        victims = [self.process.pid, admin] + [pid for pid in session_pids(session_of(admin)) if pid != admin]
        for pid in victims:
            kill(pid)
        self.process.wait(5)


def _member_config(path: Path, *, leader_port: int, ports: dict[str, int], log_dir: Path, state_dir: Path) -> Path:
    members = "".join(f'[cluster.nodes.{name}]\nadmin_port = {port}\nsymbols = ["*"]\n'
                      for name, port in ports.items())
    path.write_text(f'''
[system]
admin_port = {leader_port}
log_dir = "{log_dir}"
state_dir = "{state_dir}"
log_level = "DEBUG"

[symbols.AAPL]
[symbols.MSFT]

[cluster]
name = "main"
symbols = []          # the leader runs a symbol only when no member can
join_wait_s = 20.0
{members}''', encoding="utf-8")
    return path


def _start_member(name: str, path: Path, tmp_path: Path) -> Member:
    """Run `bootstrap.py node --name NAME` on a free port (another, if that one was taken meanwhile)."""
    for _ in range(3):
        port = free_port()
        out = tmp_path / f"node-{name}-{port}.out"
        with open(out, "wb") as f:
            process = subprocess.Popen([sys.executable, str(ROOT / "bootstrap.py"), "node", "--config", str(path),
                                        "--name", name, "--admin-port", str(port)],
                                       stdout=f, stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True)
        member = Member(name=name, port=port, process=process, out=out)
        wait_until(lambda: "listening on" in member.text() or process.poll() is not None, 20,
                   f"node {name} to start")
        if process.poll() is None:
            return member
        assert "is in use" in member.text(), member.text()
    raise AssertionError(f"node {name} found no free admin port in 3 tries")


@pytest.fixture
def cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[System, dict[str, Member]]]:
    """Start members b and c (`bootstrap.py node`) and a leader trading AAPL and MSFT; stop all of it after."""
    from thespian.system.admin import convention

    monkeypatch.setenv("THESPIAN_BASE_IPADDR", "127.0.0.1")
    for name in tp.CONVENTION_TIMERS:  # the leader's admin is forked from this process: restored after
        monkeypatch.setattr(convention, name, getattr(convention, name))
    log_dir, state_dir = tmp_path / "logs", tmp_path / "state"
    log_dir.mkdir()
    state_dir.mkdir()
    leader_port = free_port()
    ports = {"b": free_port(), "c": free_port()}
    path = _member_config(tmp_path / "config.toml", leader_port=leader_port, ports=ports, log_dir=log_dir,
                          state_dir=state_dir)
    file_config = load_config(path)
    symbols = (scripted("AAPL", tmp_path / "bars", ("100", "101")),
               scripted("MSFT", tmp_path / "bars", ("250", "250", "250", "252.40")))
    members: dict[str, Member] = {}
    system: System | None = None
    sim = SimulatorThread(SimulatorConfig(clock="stepped", symbols=symbols, seed=7)).start()
    try:
        config = dataclasses.replace(
            make_config(admin_port=leader_port, broker_port=sim.port, symbols=("AAPL", "MSFT"), log_dir=log_dir,
                        state_dir=state_dir), cluster=file_config.cluster)
        check_journal(config)  # as the launcher does: the members' actors open the leader's journal
        for name in ports:
            members[name] = _start_member(name, path, tmp_path)
        tp.set_convention_timers(timedelta(seconds=config.cluster.heartbeat_s), config.cluster.missed_heartbeats)
        asys = ActorSystem("multiprocTCPBase", {**nodes.leader_capabilities(config), "Process Startup Method": "fork"},
                           transientUnique=True)
        supervisor = asys.createActor("actors.supervisor.Supervisor", globalName=SUPERVISOR)
        system = System(asys=asys, sim=sim, supervisor=supervisor, config=config, admin_port=leader_port,
                        log_dir=log_dir, session=session_of(listener_pid(leader_port)), tmp_path=tmp_path,
                        symbols=symbols)
        system.ask(supervisor, StartSystem(config=config), ActorReady, timeout=60)
        for symbol in ("AAPL", "MSFT"):
            system.running("symbols", symbol)
        wait_for(lambda: sim.snapshot()["clients"] == [1], 10, "the connection to the simulator")
        yield system, members
    finally:
        problems = []
        if system is not None:
            try:
                system.close()  # the leader's symbols supervisor stops its actors on the members too
            except AssertionError as exc:
                problems.append(str(exc))
        else:
            sim.stop()
        for member in members.values():
            session = member.session()
            if member.process.poll() is None:
                member.process.send_signal(signal.SIGTERM)
                try:
                    member.process.wait(20)
                except subprocess.TimeoutExpired:
                    problems.append(f"node {member.name} did not stop on SIGTERM")
            left = [pid for pid in session_pids(session) if alive(pid)] if session > 1 else []
            for pid in left + [member.process.pid]:
                kill(pid)
            if left:
                problems.append(f"node {member.name} left processes {left}")
        assert not problems, problems


def _on(system: System, symbols: ActorAddress, member: Member, symbol: str, incarnation: int) -> bool:
    """Return True once incarnation `incarnation` of `symbol` is ready in `member`'s actor system."""
    # Asked of the symbols supervisor: the root's status journals every request (not for polling).
    children = system.ask(symbols, GetChildren(), ChildrenSnapshot).children
    child = next((c for c in children if c.key == symbol), None)
    return (child is not None and child.running and child.ready and child.incarnation == incarnation
            and child.pid > 0 and session_of(child.pid) == member.session())


def _pids(system: System, symbols: ActorAddress) -> list[int]:
    return [child.pid for child in system.ask(symbols, GetChildren(), ChildrenSnapshot).children]


def _moved(system: System, symbols: ActorAddress, to: Member, incarnation: int, since: float, what: str) -> float:
    """Wait until AAPL and MSFT run in `incarnation` on `to`, at most RESUME_WITHIN_S after `since`; return when."""
    for symbol in ("AAPL", "MSFT"):
        wait_for(lambda: _on(system, symbols, to, symbol, incarnation),
                 RESUME_WITHIN_S - (time.monotonic() - since) + 0.01, f"{symbol} to run on node {to.name}",
                 interval=0.1)
    took = time.monotonic() - since
    print(f"{what}: AAPL and MSFT ready on node {to.name} after {took:.2f} s")
    assert took < RESUME_WITHIN_S
    return took


def test_symbols_of_a_lost_member_resume_on_another_node_with_positions_and_no_duplicate_order(
        cluster: tuple[System, dict[str, Member]]) -> None:
    system, members = cluster
    b, c = members["b"], members["c"]
    symbols = system.address(SUPERVISOR, "symbols")
    for member in (b, c):
        assert f"node {member.name}: joined the leader" in member.text()
    # The leader prefers no symbol: both went to the first member, none runs in the leader's processes.
    for symbol in ("AAPL", "MSFT"):
        assert _on(system, symbols, b, symbol, 1), system.child("symbols", symbol)
    assert not set(_pids(system, symbols)) & set(descendants(os.getpid()))
    assert system.detail(SUPERVISOR, "symbols") == "main (leader): -; b (up): AAPL MSFT; c (up): -"

    system.step(1)  # the first quotes
    plans = {"AAPL": (100, Decimal("0.50")), "MSFT": (50, Decimal("0.73"))}
    for symbol, (quantity, gain) in plans.items():
        quote = system.quote(symbol)
        assert quote.bid is not None and quote.ask is not None
        system.place(bracket(f"mn-{symbol}", symbol, quantity, stop=quote.bid - 5, target=quote.ask + gain))
    for symbol, (quantity, _) in plans.items():  # the symbol actors on b hold the positions
        wait_for(lambda: system.position(symbol).quantity == quantity, 10, f"{symbol}'s entry fill on node b")

    # 1. b's admin freezes (or is cut off): taken for dead although its symbol actors still run.
    # They must stop (told to by the leader, or by their own fence), not trade next to their
    # replacements on c, which hold the same positions.
    stale = _pids(system, symbols)
    admin = listener_pid(b.port)
    os.kill(admin, signal.SIGSTOP)
    try:
        _moved(system, symbols, c, 2, time.monotonic(), "node b frozen")
        wait_until(lambda: not any(alive(pid) for pid in stale), 10, "the stale actors on node b to stop",
                   interval=0.1)
        for symbol in plans:
            assert [line for line in system.log_lines(" stopping", symbol) if f"| {symbol}#1 |" in line], symbol
    finally:
        os.kill(admin, signal.SIGCONT)
    for symbol, (quantity, _) in plans.items():
        assert system.position(symbol).quantity == system.broker_position(symbol) == quantity
    wait_until(lambda: len(system.log_lines("symbols: node b joined")) == 2, 15, "node b to join again")
    assert system.detail(SUPERVISOR, "symbols") == "main (leader): -; b (up): -; c (up): AAPL MSFT"

    # 2. c is killed outright (every process of it at once). While AAPL's actor is gone its
    # take-profit fills: the new incarnation, back on b, must apply that fill once.
    killed = time.monotonic()
    c.kill()
    system.step_until(lambda: system.broker_order("mn-AAPL:tp").status == FILLED, step_s=5.0, max_steps=30,
                      what="AAPL's take-profit to fill")
    _moved(system, symbols, b, 3, killed, "node c killed")
    assert system.detail(SUPERVISOR, "symbols") == "main (leader): -; b (up): AAPL MSFT; c (down): -"
    gauges = dict(system.actor_status(symbols).gauges)
    assert {k: v for k, v in gauges.items() if k.startswith("node_")} == {
        "node_main_up": 1, "node_main_symbols": 0, "node_b_up": 1, "node_b_symbols": 2,
        "node_c_up": 0, "node_c_symbols": 0}

    # Positions intact: the broker's, with AAPL's missed fill applied exactly once.
    wait_for(lambda: system.position("AAPL").quantity == 0, 10, "AAPL flat after its take-profit")
    assert system.broker_position("AAPL") == 0
    assert system.position("MSFT").quantity == system.broker_position("MSFT") == 50
    # The resumed MSFT trades on: its take-profit fills and reaches the actor on node b.
    system.step_until(lambda: system.broker_order("mn-MSFT:tp").status == FILLED, step_s=5.0, max_steps=60,
                      what="MSFT's take-profit to fill")
    wait_for(lambda: system.position("MSFT").quantity == 0, 10, "MSFT flat on node b")
    assert system.broker_position("MSFT") == 0
    ours = sum((net_pnl(system.position(symbol)) for symbol in plans), Decimal(0))
    assert ours == system.broker_realized()
    per_ref = system.orders_per_ref()
    assert sorted(per_ref) == sorted(f"mn-{s}:{leg}" for s in plans for leg in ("entry", "sl", "tp"))
    assert set(per_ref.values()) == {1}, per_ref

    # 3. The leader dies: b outlives it, its symbol actors must not (a restarted leader starts new
    # ones from the journal). They stop themselves once their supervisor stops answering.
    pids = _pids(system, symbols)
    system.pids -= set(pids)  # not the leader's: kill_all kills every process it saw in a status
    system.kill_all()  # every process of the leader at once
    killed = time.monotonic()
    wait_until(lambda: not any(alive(pid) for pid in pids), 15, "the symbol actors on node b to stop", interval=0.1)
    stopped = time.monotonic() - killed
    print(f"leader killed: node b's symbol actors stopped after {stopped:.2f} s")
    cluster_config = system.config.cluster
    assert stopped < cluster_config.heartbeat_s * (cluster_config.missed_heartbeats + 1) + 2.0
    for symbol in plans:
        assert system.log_lines("stopping on this node: its supervisor on the leader did not answer", symbol)
    wait_until(lambda: "node b: lost the leader" in b.text(), 15, "node b to notice the leader is gone")
    assert b.process.poll() is None  # the node itself waits for a leader to come back
