"""Supervision on both bases: ordered start/stop, restarts with state, budgets, quarantine, escalation."""

from __future__ import annotations

import dataclasses
import os
import signal
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import pytest
from thespian.actors import ActorAddress, ActorSystem, ChildActorExited

from actors.clock import VirtualClock, install_clock
from actors.supervision import ChildSpec, Restart, SupervisorState
from core.config import (
    Config,
    DemoSignalsConfig,
    RestartBudget,
    SignalsConfig,
    StrategyConfig,
    SupervisionConfig,
    SymbolConfig,
    SymbolStart,
    SystemConfig,
)
from core.types import Execution, Side
from messages import (
    ActorQuarantined,
    ActorReady,
    AdminError,
    AdminErrorCode,
    AdminReply,
    CancelOrderGroup,
    ChildStatus,
    ChildrenSnapshot,
    ConfigureActor,
    Direction,
    ExecutionReported,
    GetChildren,
    GetStatus,
    GroupKind,
    PlaceOrderGroup,
    PredictionSignal,
    Publish,
    RestartActor,
    Shutdown,
    StartSystem,
    StatusSnapshot,
    Subscribe,
    ToSymbol,
    TradingStateChanged,
)
from messages.risk import TradingState

pytestmark = pytest.mark.timeout(60)

_HELPERS = "tests.actors.helpers_supervision"


from tests.actors.conftest import start_system
from tests.actors import helpers_supervision as h  # noqa: E402  (after the constants it may use)

STAND_IN = f"{_HELPERS}.StandIn"
ROOT_CLASSES = (("tws", STAND_IN), ("symbols", f"{_HELPERS}.StandInSymbols"),
                ("groups", f"{_HELPERS}.StandInGroups"))


@dataclass
class Env:
    asys: ActorSystem
    events: Path
    multiproc: bool
    pids: list[int] = field(default_factory=list)

    def lines(self) -> list[str]:
        return h.events(self.events)

    def pid_of(self, address: ActorAddress) -> h.Pid:
        reply = h.ask(self.asys, address, h.GetPid(), h.Pid)
        self.pids.append(reply.pid)
        return reply


def _make_env(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
              base: str) -> Env:
    events = tmp_path / "events.log"
    monkeypatch.setenv(h.EVENTS_ENV, str(events))  # before the system forks its processes
    multiproc = base == "multiprocTCPBase"
    pids: list[int] = []

    def kill_leftovers() -> None:
        # After the shutdown (finalizers run last-in first-out): a killed parent orphans its
        # children, and none may outlive the test. In-process actors report this process's pid.
        for pid in pids if multiproc else ():
            if pid <= 1 or pid == os.getpid():
                continue  # os.kill(0, ...) would signal this test run's whole process group
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    request.addfinalizer(kill_leftovers)
    return Env(asys=start_system(base, request, monkeypatch), events=events, multiproc=multiproc, pids=pids)


@pytest.fixture(params=["simpleSystemBase", "multiprocTCPBase"])
def env(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Env:
    return _make_env(request, monkeypatch, tmp_path, request.param)


@pytest.fixture
def mp_env(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Env:
    return _make_env(request, monkeypatch, tmp_path, "multiprocTCPBase")


# ---------------------------------------------------------------- helpers


def _tree(env: Env, keys: tuple[str, ...] = ("a", "b", "c"), *, budget: RestartBudget | None = None,
          restart: Restart = Restart.PERMANENT) -> ActorAddress:
    """Start a TreeSupervisor whose children each name every other child as a peer."""
    specs = tuple(ChildSpec(key=k, actor_class=STAND_IN, restart=restart,
                            peers=tuple(p for p in keys if p != k) + ("tree",)) for k in keys)
    sup = env.asys.createActor(h.TreeSupervisor)
    parent = env.asys.createActor(h.StandIn)  # receives ActorReady and the tree's own snapshots
    config = h.TreeConfig(specs=specs, budget=budget or RestartBudget(max_restarts=3, window_s=60.0))
    env.asys.tell(sup, ConfigureActor(key="tree", config=config, reply_to=parent))
    (ready,) = _seen(env, parent, lambda m: isinstance(m, ActorReady), "the tree's ActorReady")
    assert ready.key == "tree"
    return sup


def _children(env: Env, sup: ActorAddress, until=lambda s: True, what: str = "") -> dict[str, ChildStatus]:
    snap = h.poll(env.asys, sup, GetChildren, ChildrenSnapshot, until=lambda r: until(_by_key(r.children)),
                  what=what)
    return _by_key(snap.children)


def _by_key(children: tuple[ChildStatus, ...]) -> dict[str, ChildStatus]:
    return {c.key: c for c in children}


def _restarted(key: str, incarnation: int):
    return lambda cs: key in cs and cs[key].incarnation == incarnation and cs[key].ready


def _config(tmp_path: Path, *, symbol: RestartBudget | None = None,
            core: RestartBudget | None = None) -> Config:
    defaults = SupervisionConfig()
    return Config(
        system=SystemConfig(log_dir=tmp_path, state_dir=tmp_path / "state"),
        symbols=(SymbolConfig(symbol="AAPL"), SymbolConfig(symbol="MSFT"), SymbolConfig(symbol="SPY")),
        supervision=SupervisionConfig(symbol=symbol or defaults.symbol,
                                      order_group=RestartBudget(max_restarts=2, window_s=60.0),
                                      core=core or defaults.core),
        signals=SignalsConfig(demo=DemoSignalsConfig(interval_s=3600.0)),  # no demo signal in the way
    )


def _root(env: Env, config: Config) -> ActorAddress:
    root = env.asys.createActor(h.Root, globalName="supervisor")
    ready = h.ask(env.asys, root, StartSystem(config=config, actor_classes=ROOT_CLASSES), ActorReady)
    assert ready.key == "supervisor"
    return root


def _status(env: Env, root: ActorAddress, until=lambda s: True, what: str = "") -> StatusSnapshot:
    return h.poll(env.asys, root, GetStatus, StatusSnapshot, until=until, what=what)


def _address(status: StatusSnapshot, key: str) -> ActorAddress:
    (child,) = [c for c in status.children if c.key == key]
    assert child.address is not None
    return child.address


def _listen(env: Env, bus: ActorAddress, *type_names: str) -> ActorAddress:
    """Return a stand-in subscribed on `bus` to `type_names`, once a probe shows the subscription works."""
    listener = env.asys.createActor(h.StandIn)
    for name in (*type_names, "Ping"):
        env.asys.tell(bus, Subscribe(type_name=name, reply_to=listener))
    probe = h.Ping(text="probe")
    env.asys.tell(bus, Publish(message=probe))
    _seen(env, listener, lambda m: m == probe)
    return listener


def _seen(env: Env, actor: ActorAddress, match, what: str = "") -> list:
    reply = h.poll(env.asys, actor, h.GetPid, h.Pid, until=lambda p: any(match(m) for m in p.seen),
                   what=what or "a message")
    return [m for m in reply.seen if match(m)]


def _exited(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            return any(line.startswith("State:") and "Z" in line for line in f)  # a zombie is gone
    except FileNotFoundError:
        return True


# ---------------------------------------------------------------- order


def test_tree_starts_children_in_order_and_stops_them_in_reverse(env: Env) -> None:
    sup = _tree(env)
    assert env.lines() == ["configure a 1", "configure b 1", "configure c 1"]
    children = _children(env, sup)
    assert [k for k in children] == ["a", "b", "c"]
    assert all(c.ready and c.running and c.incarnation == 1 for c in children.values())
    assert h.ask(env.asys, sup, h.StopAll(), h.Done).ok
    assert env.lines()[3:] == ["exit c 1", "exit b 1", "exit a 1"]
    after = _children(env, sup)
    assert not any(c.running for c in after.values())
    assert [c.incarnation for c in after.values()] == [1, 1, 1]


def test_child_started_before_its_peer_learns_the_peer_by_peer_moved(env: Env) -> None:
    sup = _tree(env, ("a", "b"))
    children = _children(env, sup)
    a, b = env.pid_of(children["a"].address), env.pid_of(children["b"].address)
    assert a.moved == ("b",)
    assert dict((p.name, p.address) for p in a.peers)["b"] == children["b"].address
    assert b.moved == ()
    assert {p.name for p in b.peers} == {"a", "tree"}


def test_root_starts_core_children_in_order_and_shutdown_stops_them_in_reverse(
    env: Env, tmp_path: Path,
) -> None:
    root = _root(env, _config(tmp_path))
    # "groups" before "symbols": a symbol may decide to enter as soon as it is warm.
    assert env.lines() == ["configure tws 1", "configure groups 1", "configure symbols 1", "configure AAPL 1",
                           "configure MSFT 1", "configure SPY 1"]
    reply = h.ask(env.asys, root, Shutdown(reason="test"), AdminReply)
    assert reply.ok and reply.text == "stopped"
    stops = env.lines()[6:]
    assert stops[:1] == ["exit symbols 1"]
    assert sorted(stops[1:4]) == ["exit AAPL 1", "exit MSFT 1", "exit SPY 1"]
    assert stops[4:] == ["exit groups 1", "exit tws 1"]


def test_root_refuses_shutdown_without_the_admin_token(env: Env, tmp_path: Path) -> None:
    root = env.asys.createActor(h.Root, globalName="supervisor")
    h.ask(env.asys, root, StartSystem(config=_config(tmp_path), actor_classes=ROOT_CLASSES,
                                      admin_token="s3cret"), ActorReady)
    refused = h.ask(env.asys, root, Shutdown(token="wrong"), AdminError)
    assert refused.code is AdminErrorCode.UNAUTHORIZED
    assert h.ask(env.asys, root, Shutdown(token="s3cret"), AdminReply).ok


@pytest.mark.parametrize(("config", "code"), [
    (None, AdminErrorCode.FAILED),
    ("config", AdminErrorCode.FAILED),
])
def test_root_refuses_start_without_a_config(env: Env, config: object, code: AdminErrorCode) -> None:
    root = env.asys.createActor(h.Root)
    refused = h.ask(env.asys, root, StartSystem(config=config), AdminError)
    assert refused.code is code and "core.config.Config" in refused.text


def test_root_refuses_class_override_for_unknown_core_key(env: Env, tmp_path: Path) -> None:
    root = env.asys.createActor(h.Root)
    start = StartSystem(config=_config(tmp_path), actor_classes=(("nonesuch", STAND_IN),))
    refused = h.ask(env.asys, root, start, AdminError)
    assert refused.code is AdminErrorCode.UNKNOWN_TARGET and "nonesuch" in refused.text


# ---------------------------------------------------------------- restarts


def test_failing_child_is_restarted_with_last_snapshot_and_siblings_learn_its_address(env: Env) -> None:
    sup = _tree(env, ("a", "b"))
    a = _children(env, sup)["a"].address
    assert h.ask(env.asys, a, h.SetState(value=("qty", Decimal(70))), h.Done).ok
    h.poll(env.asys, sup, h.GetSaved, h.Saved, what="the snapshot",
           until=lambda s: s.state.children[0].state == ("qty", Decimal(70)))
    env.asys.tell(a, h.Crash())
    children = _children(env, sup, _restarted("a", 2), "a's restart")
    assert children["a"].address != a
    assert children["a"].restarts == 1 and "crashed on request" in children["a"].last_error
    restarted = env.pid_of(children["a"].address)
    assert (restarted.key, restarted.incarnation, restarted.state) == ("a", 2, ("qty", Decimal(70)))
    b = h.poll(env.asys, children["b"].address, h.GetPid, h.Pid, until=lambda p: p.moved.count("a") == 1,
               what="PeerMoved at b")
    assert dict((p.name, p.address) for p in b.peers)["a"] == children["a"].address
    assert b.incarnation == 1
    assert env.lines().count("configure a 2") == 1


def test_sigkilled_child_is_restarted_with_snapshot_and_new_address_reaches_siblings(mp_env: Env) -> None:
    env = mp_env
    sup = _tree(env, ("a", "b"))
    a = _children(env, sup)["a"].address
    h.ask(env.asys, a, h.SetState(value=42), h.Done)
    h.poll(env.asys, sup, h.GetSaved, h.Saved, until=lambda s: s.state.children[0].state == 42)
    old = env.pid_of(a)
    os.kill(old.pid, signal.SIGKILL)
    children = _children(env, sup, _restarted("a", 2), "a's restart after SIGKILL")
    new = env.pid_of(children["a"].address)
    assert new.pid != old.pid and (new.incarnation, new.state) == (2, 42)
    assert children["a"].restarts == 1
    b = h.poll(env.asys, children["b"].address, h.GetPid, h.Pid, until=lambda p: "a" in p.moved,
               what="PeerMoved at b")
    assert dict((p.name, p.address) for p in b.peers)["a"] == children["a"].address


def test_sigkilled_sub_supervisor_is_restarted_and_its_orphans_are_stopped(
    mp_env: Env, tmp_path: Path,
) -> None:
    env = mp_env
    root = _root(env, _config(tmp_path))
    status = _status(env, root)
    aapl = _address(status, "AAPL")
    h.ask(env.asys, aapl, h.SetState(value="long 10"), h.Done)

    def aapl_state(saved: h.Saved) -> object:
        (symbols,) = [c for c in saved.state.children if c.key == "symbols"]
        return isinstance(symbols.state, SupervisorState) and symbols.state.children[0].state

    h.poll(env.asys, root, h.GetSaved, h.Saved, until=lambda s: aapl_state(s) == "long 10",
           what="AAPL's state at the root")
    orphans = [env.pid_of(_address(status, sym)).pid for sym in ("AAPL", "MSFT", "SPY")]
    sup_pid = _pid_of_parent(orphans[0])
    env.pids.append(sup_pid)
    os.kill(sup_pid, signal.SIGKILL)
    after = _status(env, root, what="symbols restarted", until=lambda s: all(
        c.incarnation == 2 and c.ready for c in s.children if c.key in ("symbols", "AAPL", "MSFT", "SPY")))
    assert env.pid_of(_address(after, "AAPL")).state == "long 10"
    h.poll_until(lambda: all(_exited(pid) for pid in orphans), what="the orphaned symbol actors to exit")


def test_child_whose_exit_notice_is_lost_is_restarted_by_the_process_watch(mp_env: Env) -> None:
    # Thespian 4.0.1 lost the notice of a child killed while another child's exit was handled;
    # the supervisor then listed it as running for good. Its process watch now counts it exited.
    env = mp_env
    specs = tuple(ChildSpec(key=k, actor_class=STAND_IN, peers=("tree",)) for k in ("a", "b"))
    sup = env.asys.createActor(h.DeafTreeSupervisor)
    parent = env.asys.createActor(h.StandIn)
    env.asys.tell(sup, ConfigureActor(key="tree", reply_to=parent, config=h.TreeConfig(
        specs=specs, budget=RestartBudget(max_restarts=3, window_s=60.0))))
    _seen(env, parent, lambda m: isinstance(m, ActorReady), "the tree's ActorReady")
    a = _children(env, sup, lambda cs: cs["a"].ready)["a"]
    old = env.pid_of(a.address)
    h.ask(env.asys, sup, h.MissExit(key="a"), h.Done)
    os.kill(old.pid, signal.SIGKILL)
    children = _children(env, sup, _restarted("a", 2), "a's restart without its exit notice")
    assert "missed-exit a" in env.lines()
    new = env.pid_of(children["a"].address)
    assert new.pid != old.pid and new.incarnation == 2
    assert children["b"].incarnation == 1


def test_exit_notice_matching_a_running_child_is_not_believed(mp_env: Env) -> None:
    # A late notice for a dead actor whose port a running child now has names that child's
    # address: the child runs on, untouched; a real exit after it is still handled.
    env = mp_env
    sup = _tree(env, ("a", "b"))
    before = _children(env, sup, lambda cs: cs["a"].ready and cs["b"].ready)
    a_pid = env.pid_of(before["a"].address).pid
    env.asys.tell(sup, ChildActorExited(before["a"].address))
    b_pid = env.pid_of(before["b"].address).pid
    os.kill(b_pid, signal.SIGKILL)
    after = _children(env, sup, _restarted("b", 2), "b's restart after SIGKILL")
    assert after["a"].incarnation == 1 and after["a"].restarts == 0
    assert env.pid_of(after["a"].address).pid == a_pid


def _pid_of_parent(pid: int) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("PPid:"):
                return int(line.split()[1])
    raise AssertionError(f"no parent pid for {pid}")


def test_restart_budget_window_frees_up_as_the_injected_clock_moves(request: pytest.FixtureRequest,
                                                                    monkeypatch: pytest.MonkeyPatch,
                                                                    tmp_path: Path) -> None:
    clock = VirtualClock(1_000_000_000)
    previous = install_clock(clock)
    request.addfinalizer(lambda: install_clock(previous))
    env = _make_env(request, monkeypatch, tmp_path, "simpleSystemBase")
    sup = _tree(env, ("a",), budget=RestartBudget(max_restarts=1, window_s=10.0))
    env.asys.tell(_children(env, sup)["a"].address, h.Crash())
    children = _children(env, sup, _restarted("a", 2))
    clock.advance(11 * 1_000_000_000)
    env.asys.tell(children["a"].address, h.Crash())
    children = _children(env, sup, _restarted("a", 3))
    assert children["a"].restarts == 1
    env.asys.tell(children["a"].address, h.Crash())
    children = _children(env, sup, lambda cs: cs["a"].quarantined)
    assert not children["a"].running and children["a"].incarnation == 3
    assert "gave-up a" in env.lines()


def test_symbol_over_budget_is_quarantined_while_other_symbols_keep_working(env: Env, tmp_path: Path) -> None:
    root = _root(env, _config(tmp_path, symbol=RestartBudget(max_restarts=1, window_s=60.0)))
    status = _status(env, root)
    listener = _listen(env, _address(status, "bus"), "ActorQuarantined")
    env.asys.tell(_address(status, "AAPL"), h.Crash())
    status = _status(env, root, lambda s: _key(s, "AAPL").incarnation == 2 and _key(s, "AAPL").ready)
    env.asys.tell(_address(status, "AAPL"), h.Crash())
    (quarantined,) = _seen(env, listener, lambda m: isinstance(m, ActorQuarantined), "ActorQuarantined")
    assert (quarantined.key, quarantined.restarts, quarantined.window_s) == ("AAPL", 1, 60)
    status = _status(env, root, lambda s: s.quarantined == ("AAPL",))
    assert status.trading_state is TradingState.ACTIVE
    assert not _key(status, "AAPL").running
    symbols = _address(status, "symbols")
    ping = h.Ping(text="still there?")
    env.asys.tell(symbols, ToSymbol(symbol="MSFT", message=ping))
    _seen(env, _address(status, "MSFT"), lambda m: m == ping, "the ping at MSFT")
    assert _key(status, "MSFT").incarnation == 1 and _key(status, "SPY").running
    assert env.lines().count("configure AAPL 3") == 0


def test_execution_for_quarantined_symbol_is_delivered_after_admin_restart(env: Env, tmp_path: Path) -> None:
    root = _root(env, _config(tmp_path, symbol=RestartBudget(max_restarts=0, window_s=60.0)))
    status = _status(env, root)
    env.asys.tell(_address(status, "AAPL"), h.Crash())
    status = _status(env, root, lambda s: s.quarantined == ("AAPL",))
    fill = ExecutionReported(execution=Execution(
        exec_id="e1", order_id=1, order_ref="g-1.entry", symbol="AAPL", side=Side.BUY,
        quantity=Decimal(10), price=Decimal("100.5")))
    env.asys.tell(_address(status, "symbols"), fill)
    unknown = h.ask(env.asys, root, RestartActor(key="NOPE"), AdminError)
    assert unknown.code is AdminErrorCode.UNKNOWN_TARGET
    assert h.ask(env.asys, root, RestartActor(key="AAPL"), AdminReply).ok
    status = _status(env, root, lambda s: _key(s, "AAPL").incarnation == 2 and _key(s, "AAPL").ready)
    assert status.quarantined == ()
    _seen(env, _address(status, "AAPL"), lambda m: m == fill, "the kept fill")


def test_core_child_over_budget_halts_trading(env: Env, tmp_path: Path) -> None:
    root = _root(env, _config(tmp_path, core=RestartBudget(max_restarts=0, window_s=60.0)))
    status = _status(env, root)
    listener = _listen(env, _address(status, "bus"), "TradingStateChanged")
    env.asys.tell(_address(status, "tws"), h.Crash())
    (halted,) = _seen(env, listener, lambda m: isinstance(m, TradingStateChanged), "TradingStateChanged")
    assert (halted.state, halted.previous) == (TradingState.HALTED, TradingState.ACTIVE)
    assert "tws" in halted.reason
    status = _status(env, root, lambda s: s.trading_state is TradingState.HALTED)
    assert status.quarantined == ("tws",) and not _key(status, "tws").running
    assert "configure tws 2" not in env.lines()


def test_removed_child_is_not_restarted(env: Env) -> None:
    sup = _tree(env, ("a", "b"))
    assert h.ask(env.asys, sup, h.RemoveChild(key="b"), h.Done).ok
    children = _children(env, sup, lambda cs: "b" not in cs, "b removed")
    assert list(children) == ["a"] and children["a"].incarnation == 1
    assert "exit b 1" in env.lines() and "configure b 2" not in env.lines()
    assert not h.ask(env.asys, sup, h.RemoveChild(key="b"), h.Done).ok


def test_dynamic_child_added_at_runtime_gets_running_peers(env: Env) -> None:
    sup = _tree(env, ("a",))
    spec = ChildSpec(key="late", actor_class=STAND_IN, restart=Restart.TEMPORARY, peers=("a",))
    assert h.ask(env.asys, sup, h.AddChild(spec=spec), h.Done).ok
    assert not h.ask(env.asys, sup, h.AddChild(spec=spec), h.Done).ok
    children = _children(env, sup, lambda cs: "late" in cs and cs["late"].ready)
    late = env.pid_of(children["late"].address)
    assert [p.name for p in late.peers] == ["a"]
    env.asys.tell(children["late"].address, h.Crash())  # temporary: never restarted
    _children(env, sup, lambda cs: "late" not in cs, "the temporary child forgotten")
    assert "configure late 2" not in env.lines()


def test_admin_restart_of_running_child_resumes_its_state(env: Env) -> None:
    sup = _tree(env, ("a",))
    a = _children(env, sup)["a"].address
    h.ask(env.asys, a, h.SetState(value=3), h.Done)
    h.poll(env.asys, sup, h.GetSaved, h.Saved, until=lambda s: s.state.children[0].state == 3)
    assert h.ask(env.asys, sup, RestartActor(key="a"), AdminReply).ok
    children = _children(env, sup, _restarted("a", 2))
    assert children["a"].restarts == 0
    assert env.pid_of(children["a"].address).state == 3


# ---------------------------------------------------------------- order groups


def _place(group_id: str) -> PlaceOrderGroup:
    return PlaceOrderGroup(group_id=group_id, kind=GroupKind.SINGLE, symbol="AAPL", legs=(), approval="test")


def test_group_child_that_finishes_is_not_restarted_and_its_id_is_not_placed_twice(
    env: Env, tmp_path: Path,
) -> None:
    root = _root(env, _config(tmp_path))
    groups = _address(_status(env, root), "groups")
    place = _place("g-1")
    env.asys.tell(groups, place)
    children = _children(env, groups, lambda cs: "g-1" in cs and cs["g-1"].ready)
    assert children["g-1"].restart == Restart.TRANSIENT.value
    child = env.pid_of(children["g-1"].address)
    assert child.key == "g-1" and child.incarnation == 1
    env.asys.tell(children["g-1"].address, h.Finish())
    _children(env, groups, lambda cs: "g-1" not in cs, "the finished group forgotten")
    env.asys.tell(groups, place)
    assert "g-1" not in _children(env, groups)
    assert env.lines().count("configure g-1 1") == 1 and "exit g-1 1" in env.lines()
    assert "configure g-1 2" not in env.lines()


def test_group_child_that_crashes_is_restarted_from_its_snapshot(env: Env, tmp_path: Path) -> None:
    root = _root(env, _config(tmp_path))
    groups = _address(_status(env, root), "groups")
    env.asys.tell(groups, _place("g-2"))
    g = _children(env, groups, lambda cs: "g-2" in cs and cs["g-2"].ready)["g-2"].address
    h.ask(env.asys, g, h.SetState(value="entry sent"), h.Done)
    env.asys.tell(g, h.Crash())
    children = _children(env, groups, _restarted("g-2", 2), "the group's restart")
    restarted = env.pid_of(children["g-2"].address)
    assert restarted.state == "entry sent"
    assert isinstance(restarted.seen, tuple)


def test_cancel_order_group_is_forwarded_to_the_running_group(env: Env, tmp_path: Path) -> None:
    root = _root(env, _config(tmp_path))
    groups = _address(_status(env, root), "groups")
    env.asys.tell(groups, _place("g-3"))
    g = _children(env, groups, lambda cs: "g-3" in cs and cs["g-3"].ready)["g-3"].address
    cancel = CancelOrderGroup(group_id="g-3", reason="exit signal")
    env.asys.tell(groups, cancel)
    assert _seen(env, g, lambda m: m == cancel, "the forwarded cancel")


# ---------------------------------------------------------------- status


def test_status_lists_every_actor_with_incarnation_and_restarts(env: Env, tmp_path: Path) -> None:
    root = _root(env, _config(tmp_path))
    env.asys.tell(_address(_status(env, root), "MSFT"), h.Crash())
    status = _status(env, root, lambda s: _key(s, "MSFT").incarnation == 2 and _key(s, "MSFT").ready)
    keys = [c.key for c in status.children]
    assert keys == ["bus", "tws", "risk", "groups", "symbols", "strategy", "signals", "AAPL", "MSFT", "SPY"]
    assert [a.key for a in status.actors] == keys
    assert (_key(status, "MSFT").restarts, _key(status, "MSFT").supervisor) == (1, "symbols")
    assert (_key(status, "tws").incarnation, _key(status, "tws").restarts) == (1, 0)
    assert all(c.running and c.address is not None for c in status.children)
    assert status.trading_state is TradingState.ACTIVE and status.quarantined == ()
    assert status.started_ns > 0 and "10/10 actors running" in status.text
    msft = [a for a in status.actors if a.key == "MSFT"][0]
    assert msft.incarnation == 2 and msft.configured and "restarts 1/5" in msft.detail


def _key(status: StatusSnapshot, key: str) -> ChildStatus:
    (child,) = [c for c in status.children if c.key == key]
    return child


def test_on_signal_symbols_start_with_their_first_signal_which_then_reaches_them(env: Env, tmp_path: Path) -> None:
    config = dataclasses.replace(_config(tmp_path), strategy=StrategyConfig(start_symbols=SymbolStart.ON_SIGNAL,
                                                                            watch_config=False))
    root = _root(env, config)
    status = _status(env, root)
    assert not any(c.supervisor == "symbols" for c in status.children)  # none started yet
    signal = PredictionSignal(symbol="MSFT", direction=Direction.LONG, confidence=Decimal("0.8"), source_id="x-1")
    env.asys.tell(_address(status, "strategy"), signal)
    status = _status(env, root, lambda s: any(c.key == "MSFT" and c.ready for c in s.children), "MSFT started")
    assert [c.key for c in status.children if c.supervisor == "symbols"] == ["MSFT"]
    assert _seen(env, _address(status, "MSFT"), lambda m: getattr(m, "source_id", "") == "x-1",
                 "the signal at the new symbol actor")
