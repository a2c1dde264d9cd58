"""Acceptance (issue 9, several nodes): symbols on a member trade; the member is killed; they resume on another.

The leader runs in this process as the launcher starts it (its capabilities, tuned convention
timers), with the simulator in a thread; members b and c are real `bootstrap.py node` processes.
Every symbol starts on b. b's whole session (its admin, logger and symbol actors) and its node
command are SIGKILLed while both symbols hold positions and while a take-profit of one fills;
the symbols must be ready again on c within 10 s, with the broker's positions, and every order
reference must reach the simulator exactly once.
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
        for name, port in ports.items():
            out = tmp_path / f"node-{name}.out"
            with open(out, "wb") as f:
                process = subprocess.Popen([sys.executable, str(ROOT / "bootstrap.py"), "node", "--config", str(path),
                                            "--name", name], stdout=f, stderr=subprocess.STDOUT, cwd=ROOT,
                                           start_new_session=True)
            members[name] = Member(name=name, port=port, process=process, out=out)
        for member in members.values():
            wait_until(lambda: "listening on" in member.text(), 20, f"node {member.name} to start")
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


def test_symbols_of_a_killed_member_resume_on_another_node_with_positions_and_no_duplicate_order(
        cluster: tuple[System, dict[str, Member]]) -> None:
    system, members = cluster
    b, c = members["b"], members["c"]
    supervisor = system.address(SUPERVISOR, "symbols")
    for member in (b, c):
        assert f"node {member.name}: joined the leader" in member.text()
    # The leader prefers no symbol: both went to the first member, none runs in the leader's processes.
    for symbol in ("AAPL", "MSFT"):
        assert _on(system, supervisor, b, symbol, 1), system.child("symbols", symbol)
    assert not {system.child("symbols", s).pid for s in ("AAPL", "MSFT")} & set(descendants(os.getpid()))
    assert system.detail(SUPERVISOR, "symbols") == "main (leader): -; b (up): AAPL MSFT; c (up): -"

    system.step(1)  # the first quotes
    plans = {"AAPL": (100, Decimal("0.50")), "MSFT": (50, Decimal("0.73"))}
    for symbol, (quantity, gain) in plans.items():
        quote = system.quote(symbol)
        assert quote.bid is not None and quote.ask is not None
        system.place(bracket(f"mn-{symbol}", symbol, quantity, stop=quote.bid - 5, target=quote.ask + gain))
    for symbol, (quantity, _) in plans.items():  # the symbol actors on b hold the positions
        wait_for(lambda: system.position(symbol).quantity == quantity, 10, f"{symbol}'s entry fill on node b")

    killed = time.monotonic()
    b.kill()
    # While AAPL's actor is gone, its take-profit fills: the new incarnation must apply that fill once.
    system.step_until(lambda: system.broker_order("mn-AAPL:tp").status == FILLED, step_s=5.0, max_steps=30,
                      what="AAPL's take-profit to fill")
    for symbol in plans:
        wait_for(lambda: _on(system, supervisor, c, symbol, 2), RESUME_WITHIN_S - (time.monotonic() - killed) + 0.01,
                 f"{symbol} to run again on node c", interval=0.1)
    resumed = time.monotonic() - killed
    print(f"node b killed: AAPL and MSFT ready on node c after {resumed:.2f} s")
    assert resumed < RESUME_WITHIN_S
    assert system.detail(SUPERVISOR, "symbols") == "main (leader): -; b (down): -; c (up): AAPL MSFT"
    gauges = dict(system.actor_status(supervisor).gauges)
    assert {k: v for k, v in gauges.items() if k.startswith("node_")} == {
        "node_main_up": 1, "node_main_symbols": 0, "node_b_up": 0, "node_b_symbols": 0,
        "node_c_up": 1, "node_c_symbols": 2}

    # Positions intact: the broker's, with AAPL's missed fill applied exactly once.
    wait_for(lambda: system.position("AAPL").quantity == 0, 10, "AAPL flat after its take-profit")
    assert system.broker_position("AAPL") == 0
    assert system.position("MSFT").quantity == system.broker_position("MSFT") == 50
    # The resumed MSFT trades on: its take-profit fills and reaches the actor on node c.
    system.step_until(lambda: system.broker_order("mn-MSFT:tp").status == FILLED, step_s=5.0, max_steps=60,
                      what="MSFT's take-profit to fill")
    wait_for(lambda: system.position("MSFT").quantity == 0, 10, "MSFT flat on node c")
    assert system.broker_position("MSFT") == 0
    ours = sum((net_pnl(system.position(symbol)) for symbol in plans), Decimal(0))
    assert ours == system.broker_realized()
    per_ref = system.orders_per_ref()
    assert sorted(per_ref) == sorted(f"mn-{s}:{leg}" for s in plans for leg in ("entry", "sl", "tp"))
    assert set(per_ref.values()) == {1}, per_ref
    assert "node c: joined the leader" in c.text() and "lost" not in c.text()


def test_symbol_actors_on_a_member_stop_themselves_when_the_leader_is_gone(
        cluster: tuple[System, dict[str, Member]]) -> None:
    # A member outlives a crashed leader; its symbol actors must not (a restarted leader starts
    # new ones from the journal: two actors would trade one symbol).
    system, members = cluster
    b = members["b"]
    children = system.ask(system.address(SUPERVISOR, "symbols"), GetChildren(), ChildrenSnapshot).children
    pids = [c.pid for c in children]
    assert len(pids) == 2 and {session_of(pid) for pid in pids} == {b.session()}

    system.pids -= set(pids)  # not the leader's: kill_all kills every process it saw in a status
    system.kill_all()  # every process of the leader at once
    killed = time.monotonic()
    wait_until(lambda: not any(alive(pid) for pid in pids), 15, "the symbol actors on node b to stop", interval=0.1)
    stopped = time.monotonic() - killed
    cluster_config = system.config.cluster
    print(f"leader killed: node b's symbol actors stopped after {stopped:.2f} s")
    assert stopped < cluster_config.heartbeat_s * (cluster_config.missed_heartbeats + 1) + 2.0
    for symbol in ("AAPL", "MSFT"):
        assert system.log_lines("stopping on this node: its supervisor on the leader did not answer", symbol)
    wait_until(lambda: "node b: lost the leader" in b.text(), 15, "node b to notice the leader is gone")
    assert alive(b.process.pid)  # the node itself waits for a leader to come back
