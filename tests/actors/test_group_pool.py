"""The groups supervisor's pool of spare group actors, on multiprocTCPBase with recording tws/symbols/bus."""

from __future__ import annotations

import os
import re
import signal
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any, ClassVar

import pytest
from thespian.actors import ActorAddress, ActorExitRequest, ActorSystem

from actors.order_group_supervisor import OrderGroupSupervisor
from core import order_group as og
from core.config import Config, RestartBudget, SupervisionConfig, SystemConfig
from core.orders import OrderStatus, new_order
from core.types import Execution, OrderType, Side, TimeInForce
from messages import (
    ActorStatusSnapshot,
    CancelOrder,
    ChildrenSnapshot,
    ChildStatus,
    ClaimOrders,
    ConfigureActor,
    ExecutionReported,
    GetActorStatus,
    GetChildren,
    GroupKind,
    GroupOutcome,
    ModifyOrder,
    OrderGroupFinished,
    OrderStatusChanged,
    OrderSubmitted,
    Peer,
    PlaceOrderGroup,
    Publish,
    Snapshot,
    SubmitOrder,
)

pytestmark = pytest.mark.timeout(60)

ASK_S = 10.0

from tests.actors import helpers_runtime as h  # noqa: E402
from tests.actors.conftest import start_system  # noqa: E402
from tests.actors import helpers_supervision as hs  # noqa: E402


class NoSpareGroups(OrderGroupSupervisor):
    """The groups supervisor without a pool."""

    SPARES: ClassVar[int] = 0


class StoppableGroups(OrderGroupSupervisor):
    """The groups supervisor, with StopAll running `stop_children` (answered Done when they stopped)."""

    def receiveMsg_StopAll(self, msg: hs.StopAll, sender: ActorAddress) -> None:
        self.stop_asker = (sender, msg)
        self.stop_children()

    def on_children_stopped(self) -> None:
        asker, msg = self.stop_asker
        self.tell(asker, self.make(hs.Done, msg, ok=True))


# ---------------------------------------------------------------- the rig


def _bracket(group_id: str) -> PlaceOrderGroup:
    entry = new_order(ref=og.leg_ref(group_id, og.ENTRY), symbol="AAPL", side=Side.BUY,
                      quantity=10, order_type=OrderType.LMT, limit_price="100")
    stop = new_order(ref=og.leg_ref(group_id, og.STOP_LOSS), symbol="AAPL", side=Side.SELL,
                     quantity=10, order_type=OrderType.STP, stop_price="95", tif=TimeInForce.GTC)
    target = new_order(ref=og.leg_ref(group_id, og.TAKE_PROFIT), symbol="AAPL", side=Side.SELL,
                       quantity=10, order_type=OrderType.LMT, limit_price="110", tif=TimeInForce.GTC)
    group = og.bracket(group_id, entry, stop, target)
    return PlaceOrderGroup(group_id=group_id, kind=GroupKind.BRACKET, symbol="AAPL", legs=group.legs,
                           approval="test")


def _legs(group_id: str) -> tuple[str, str, str]:
    entry, stop, target = (og.leg_ref(group_id, leg) for leg in (og.ENTRY, og.STOP_LOSS, og.TAKE_PROFIT))
    return entry, stop, target


def _fill(ref: str, broker_id: int, exec_id: str, quantity: int, price: str) -> ExecutionReported:
    side = Side.BUY if ref.endswith(og.ENTRY) else Side.SELL
    return ExecutionReported(execution=Execution(
        exec_id=exec_id, order_id=broker_id, order_ref=ref, symbol="AAPL", side=side,
        quantity=Decimal(quantity), price=Decimal(price)))


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has exited
    except (FileNotFoundError, IndexError):
        return False


def _wait(condition: Callable[[], Any], what: str, deadline_s: float = 10.0) -> Any:
    deadline = time.monotonic() + deadline_s
    while not (result := condition()):
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.01)
    return result


class Rig:
    """A groups supervisor (top-level) with recording tws, symbols, bus and parent actors."""

    def __init__(self, asys: ActorSystem, tmp_path: Path, pids: set[int],
                 cls: type[OrderGroupSupervisor] = OrderGroupSupervisor,
                 budget: RestartBudget | None = None) -> None:
        self.asys = asys
        self.pids = pids  # every process seen, killed after the system's shutdown
        self.tws, self.symbols, self.bus, self.parent = (asys.createActor(h.Recorder) for _ in range(4))
        self.sup = asys.createActor(cls)
        supervision = SupervisionConfig(order_group=budget) if budget else SupervisionConfig()
        config = Config(system=SystemConfig(log_dir=tmp_path, state_dir=tmp_path / "state"), supervision=supervision)
        roles = (("tws", self.tws), ("symbols", self.symbols), ("bus", self.bus), ("supervisor", self.parent))
        peers = tuple(Peer(name=n, address=a) for n, a in roles)
        asys.tell(self.sup, ConfigureActor(key="groups", config=config, peers=peers, reply_to=self.parent))
        self.sup_pid = self.status().pid
        assert self.sup_pid > 0

    def status(self) -> ActorStatusSnapshot:
        reply = self.asys.ask(self.sup, GetActorStatus(), ASK_S)
        assert isinstance(reply, ActorStatusSnapshot), reply
        return reply

    def spares(self) -> tuple[int, ...]:
        """Return the pids of the spares standing by, as the supervisor reports them."""
        found = re.search(r"\(pids ([\d ]+)\)", self.status().detail)
        pids = tuple(int(p) for p in found.group(1).split()) if found else ()
        self.pids.update(pids)
        return pids

    def wait_spares(self, count: int, what: str = "", *, without: tuple[int, ...] = ()) -> tuple[int, ...]:
        def standing() -> tuple[int, ...] | None:
            pids = self.spares()
            return pids if len(pids) == count and not set(pids) & set(without) else None
        return _wait(standing, what or f"{count} spares standing by")

    def children(self) -> dict[str, ChildStatus]:
        reply = self.asys.ask(self.sup, GetChildren(), ASK_S)
        assert isinstance(reply, ChildrenSnapshot), reply
        self.pids.update(c.pid for c in reply.children if c.pid > 0)
        return {c.key: c for c in reply.children}

    def wait_group(self, key: str, incarnation: int = 1) -> ChildStatus:
        def ready() -> ChildStatus | None:
            child = self.children().get(key)
            return child if child and child.ready and child.incarnation == incarnation else None
        return _wait(ready, f"{key} #{incarnation} ready")

    def records(self, who: ActorAddress, type_name: str = "Message", count: int = 0) -> h.Records:
        answer = self.asys.ask(who, h.AwaitRecords(type_name=type_name, count=count), ASK_S)
        assert isinstance(answer, h.Records), f"waited for {count} {type_name}, got {answer!r}"
        return answer

    def sent(self, who: ActorAddress, cls: type, count: int = 0) -> list[Any]:
        return [m for m in self.records(who, cls.__name__, count).messages if isinstance(m, cls)]

    def feed(self, to: ActorAddress, *messages: Any) -> None:
        """Send events to a group as the broker connection."""
        for message in messages:
            self.asys.tell(self.tws, h.Feed(to=to, message=message))

    def accept(self, group_id: str, to: ActorAddress) -> dict[str, int]:
        ids = dict(zip(_legs(group_id), (101, 102, 103)))
        self.feed(to, *(OrderSubmitted(ref=ref, group_id=group_id, broker_id=b) for ref, b in ids.items()))
        return ids

    def group_snapshots(self) -> list[str]:
        """Return the keys of every child change the supervisor reported to its parent."""
        return [s.state.key for s in self.sent(self.parent, Snapshot)]


@pytest.fixture
def rig_of(tmp_path: Path, request: pytest.FixtureRequest,
           monkeypatch: pytest.MonkeyPatch) -> Callable[..., Rig]:
    # Group actors open their log sinks from the launcher's environment, as in a real run.
    monkeypatch.setenv("IBACTORS_LOG_DIR", str(tmp_path))
    pids: set[int] = set()

    def kill_leftovers() -> None:
        # Registered before the system starts, so it runs after its shutdown (finalizers run
        # last-in first-out): a SIGKILLed supervisor orphans its groups, and none may outlive the test.
        for pid in pids - {0}:  # never 0: os.kill(0, ...) signals our own process group
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    request.addfinalizer(kill_leftovers)
    asys = start_system("multiprocTCPBase", request, monkeypatch)
    return lambda **kwargs: Rig(asys, tmp_path, pids, **kwargs)


# ---------------------------------------------------------------- tests


def test_place_order_group_is_served_by_a_spare_created_before_it_and_replaced_after(rig_of) -> None:
    rig = rig_of()
    spares = rig.wait_spares(2)
    assert set(spares) <= set(h.child_pids(rig.sup_pid)) and all(_alive(p) for p in spares)
    assert rig.children() == {}  # spares are not children
    before = time.monotonic()
    rig.asys.tell(rig.sup, _bracket("g-1"))
    group = rig.wait_group("g-1")
    assert group.pid in spares
    submits = rig.sent(rig.tws, SubmitOrder, 3)
    assert [s.order.ref for s in submits] == list(_legs("g-1"))
    assert [s.transmit for s in submits] == [False, False, True]
    assert all(s.reply_to == group.address for s in submits)
    refilled = rig.wait_spares(2, "a replacement spare", without=(group.pid,))
    assert len(set(refilled) - set(spares)) == 1
    assert time.monotonic() - before < 5
    assert list(rig.children()) == ["g-1"]
    assert "pool off" not in rig.status().detail


def test_group_from_a_spare_fills_finishes_is_forgotten_and_its_repeat_is_ignored(rig_of) -> None:
    rig = rig_of()
    spares = rig.wait_spares(2)
    place = _bracket("g-1")
    rig.asys.tell(rig.sup, place)
    group = rig.wait_group("g-1")
    assert group.pid in spares
    entry, stop, target = _legs("g-1")
    ids = rig.accept("g-1", group.address)
    rig.feed(group.address, _fill(entry, ids[entry], "e1", 10, "100"),
             OrderStatusChanged(ref=entry, group_id="g-1", broker_id=ids[entry], status=OrderStatus.FILLED,
                                filled=Decimal(10), remaining=Decimal(0)),
             _fill(target, ids[target], "t1", 10, "110"))
    (cancel,) = rig.sent(rig.tws, CancelOrder, 1)
    assert cancel.ref == stop  # the target filled: the stop is cancelled
    rig.feed(group.address, OrderStatusChanged(ref=stop, group_id="g-1", broker_id=ids[stop],
                                               status=OrderStatus.CANCELLED, filled=Decimal(0),
                                               remaining=Decimal(10)))
    (published,) = rig.sent(rig.bus, Publish, 1)
    assert isinstance(published.message, OrderGroupFinished)
    assert (published.message.outcome, published.message.filled) == (GroupOutcome.FILLED, Decimal(10))
    _wait(lambda: "g-1" not in rig.children(), "the finished group forgotten")
    _wait(lambda: group.pid in rig.spares(), "the finished group's process standing by as a spare")
    rig.asys.tell(rig.sup, place)  # the same command again: never its orders twice
    rig.asys.tell(rig.sup, _bracket("g-2"))
    rig.wait_group("g-2")
    submits = rig.sent(rig.tws, SubmitOrder, 6)
    assert [s.group_id for s in submits] == ["g-1"] * 3 + ["g-2"] * 3
    assert "g-1" not in rig.children()


def test_killed_spare_is_replaced_and_never_reported_as_a_group(rig_of) -> None:
    rig = rig_of()
    spares = rig.wait_spares(2)
    os.kill(spares[0], signal.SIGKILL)
    after = rig.wait_spares(2, "the killed spare replaced", without=(spares[0],))
    assert spares[1] in after
    assert rig.children() == {}
    assert rig.group_snapshots() == []  # its supervisor was told of no child
    rig.asys.tell(rig.sup, _bracket("g-1"))
    assert rig.wait_group("g-1").pid in after


def test_group_from_a_spare_killed_is_restarted_in_a_new_process_from_its_snapshot(rig_of) -> None:
    rig = rig_of()
    spares = rig.wait_spares(2)
    rig.asys.tell(rig.sup, _bracket("g-1"))
    group = rig.wait_group("g-1")
    assert group.pid in spares
    entry, stop, target = _legs("g-1")
    ids = rig.accept("g-1", group.address)
    rig.feed(group.address, _fill(entry, ids[entry], "e1", 4, "100"))
    assert len(rig.sent(rig.tws, ModifyOrder, 2)) == 2

    def filled_at_parent() -> bool:
        states = [s.state.saved.state for s in rig.sent(rig.parent, Snapshot)
                  if s.state.key == "g-1" and s.state.saved is not None]
        return bool(states) and isinstance(states[-1], og.OrderGroup) and states[-1].legs[0].filled == 4

    _wait(filled_at_parent, "the snapshot with the fill")
    standing = rig.wait_spares(2)
    os.kill(group.pid, signal.SIGKILL)
    restarted = rig.wait_group("g-1", incarnation=2)
    assert restarted.pid not in (group.pid, *standing)  # a restart never takes a spare
    (claim,) = rig.sent(rig.tws, ClaimOrders, 1)
    assert (claim.refs, claim.reply_to) == ((entry, stop, target), restarted.address)
    assert len(rig.sent(rig.tws, SubmitOrder)) == 3
    assert set(rig.wait_spares(2)) == set(standing)


def test_spares_dying_beyond_the_budget_are_not_replaced_and_groups_still_start(rig_of) -> None:
    rig = rig_of(budget=RestartBudget(max_restarts=2, window_s=60.0))
    killed: list[int] = []
    for _ in range(2):
        spares = rig.wait_spares(2, without=tuple(killed))
        killed.append(spares[0])
        os.kill(spares[0], signal.SIGKILL)
    spares = rig.wait_spares(2, "the second replacement", without=tuple(killed))
    os.kill(spares[0], signal.SIGKILL)  # a third death inside the window: no more spares
    _wait(lambda: "pool off" in rig.status().detail, "the pool to stop")
    assert rig.spares() == (spares[1],)
    rig.asys.tell(rig.sup, _bracket("g-1"))
    assert rig.wait_group("g-1").pid == spares[1]
    rig.asys.tell(rig.sup, _bracket("g-2"))
    second = rig.wait_group("g-2")
    assert second.pid not in spares
    assert rig.spares() == ()
    assert len(rig.sent(rig.tws, SubmitOrder, 6)) == 6


def test_exit_request_to_the_supervisor_stops_every_spare_and_group(rig_of) -> None:
    rig = rig_of()
    spares = rig.wait_spares(2)
    rig.asys.tell(rig.sup, _bracket("g-1"))
    group = rig.wait_group("g-1")
    everyone = (*rig.wait_spares(2, without=(group.pid,)), group.pid, *spares, rig.sup_pid)
    rig.asys.tell(rig.sup, ActorExitRequest())
    _wait(lambda: not any(_alive(p) for p in everyone), "every process of the supervisor to exit")


def test_stop_children_stops_every_spare_and_group(rig_of) -> None:
    rig = rig_of(cls=StoppableGroups)
    rig.asys.tell(rig.sup, _bracket("g-1"))
    group = rig.wait_group("g-1")
    spares = rig.wait_spares(2, without=(group.pid,))
    done = rig.asys.ask(rig.sup, hs.StopAll(), ASK_S)
    assert isinstance(done, hs.Done) and done.ok
    _wait(lambda: not any(_alive(p) for p in (group.pid, *spares)), "the group and the spares to exit")
    assert _alive(rig.sup_pid) and rig.spares() == ()
    assert h.child_pids(rig.sup_pid) == []


def test_spares_exit_with_a_killed_supervisor(rig_of) -> None:
    rig = rig_of()
    spares = rig.wait_spares(2)
    rig.pids.add(rig.sup_pid)
    os.kill(rig.sup_pid, signal.SIGKILL)
    _wait(lambda: not any(_alive(p) for p in spares), "the orphaned spares to exit")


def test_no_spares_when_spares_is_zero_and_groups_start_as_before(rig_of) -> None:
    rig = rig_of(cls=NoSpareGroups)
    assert "spares 0 ready (kept 0" in rig.status().detail
    rig.asys.tell(rig.sup, _bracket("g-1"))
    group = rig.wait_group("g-1")
    assert len(rig.sent(rig.tws, SubmitOrder, 3)) == 3
    rig.asys.tell(rig.sup, _bracket("g-1"))
    rig.asys.tell(rig.sup, _bracket("g-2"))
    second = rig.wait_group("g-2")
    assert sorted(h.child_pids(rig.sup_pid)) == sorted((group.pid, second.pid))
    assert rig.spares() == () and list(rig.children()) == ["g-1", "g-2"]
    assert [s.group_id for s in rig.sent(rig.tws, SubmitOrder, 6)] == ["g-1"] * 3 + ["g-2"] * 3


def test_a_finished_groups_process_serves_a_later_group_and_ignores_its_old_groups_events(rig_of) -> None:
    rig = rig_of()
    rig.wait_spares(2)
    rig.asys.tell(rig.sup, _bracket("g-1"))
    first = rig.wait_group("g-1")
    entry, stop, target = _legs("g-1")
    ids = rig.accept("g-1", first.address)
    rig.feed(first.address, _fill(entry, ids[entry], "e1", 10, "100"), _fill(target, ids[target], "t1", 10, "110"))
    rig.sent(rig.tws, CancelOrder, 1)
    rig.feed(first.address, OrderStatusChanged(ref=stop, group_id="g-1", broker_id=ids[stop],
                                               status=OrderStatus.CANCELLED, filled=Decimal(0), remaining=Decimal(10)))
    _wait(lambda: first.pid in rig.spares(), "g-1's process standing by as a spare")
    assert "g-1" not in rig.children()
    # Late events of g-1 (the connection routes a leg's events to its last owner) change nothing.
    rig.feed(first.address, _fill(stop, ids[stop], "s1", 10, "95"),
             OrderStatusChanged(ref=stop, group_id="g-1", broker_id=ids[stop], status=OrderStatus.FILLED,
                                filled=Decimal(10), remaining=Decimal(0)))
    spares = rig.wait_spares(3)  # two created ahead, and g-1's
    assert first.pid in spares and _alive(first.pid)
    for n in (2, 3, 4):  # as many groups as spares: g-1's process serves one of them
        rig.asys.tell(rig.sup, _bracket(f"g-{n}"))
    groups = {n: rig.wait_group(f"g-{n}") for n in (2, 3, 4)}
    assert {g.pid for g in groups.values()} == set(spares)
    (n, again) = next((n, g) for n, g in groups.items() if g.pid == first.pid)
    submits = [s for s in rig.sent(rig.tws, SubmitOrder, 12) if s.group_id == f"g-{n}"]
    assert [s.order.ref for s in submits] == list(_legs(f"g-{n}"))
    assert all(s.reply_to == again.address for s in submits)
    assert [p.message.group_id for p in rig.sent(rig.bus, Publish)
            if isinstance(p.message, OrderGroupFinished)] == ["g-1"]  # g-1's late fill finished nothing
