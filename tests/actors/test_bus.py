"""The bus on both bases: delivery by type name and base type, unsubscribe, dead subscribers, restarts."""

from __future__ import annotations


import pytest
from thespian.actors import ActorAddress, ActorExitRequest, ActorSystem

from actors.bus import Bus, BusState
from actors.supervision import ChildSpec
from core.config import RestartBudget
from messages import (
    ActorReady,
    AdminReply,
    ChildrenSnapshot,
    ConfigureActor,
    GetChildren,
    Peer,
    Publish,
    RestartActor,
    Snapshot,
    Subscribe,
    Unsubscribe,
)

pytestmark = pytest.mark.timeout(60)

_HELPERS = "tests.actors.helpers_supervision"


from tests.actors import helpers_supervision as h  # noqa: E402  (after the constants it may use)


@pytest.fixture
def asys(both_asys: ActorSystem) -> ActorSystem:
    return both_asys


def _bus(asys: ActorSystem) -> tuple[ActorAddress, ActorAddress]:
    """Return a configured bus and the stand-in that is its supervisor (it records the bus's snapshots)."""
    bus, parent = asys.createActor(Bus), asys.createActor(h.StandIn)
    asys.tell(bus, ConfigureActor(key="bus", reply_to=parent))
    _seen(asys, parent, lambda m: isinstance(m, ActorReady))
    return bus, parent


def _subscriber(asys: ActorSystem, bus: ActorAddress, *type_names: str) -> ActorAddress:
    actor = asys.createActor(h.StandIn)
    for name in type_names:
        asys.tell(bus, Subscribe(type_name=name, reply_to=actor))
    return actor


def _seen(asys: ActorSystem, actor: ActorAddress, match, what: str = "") -> list:
    reply = h.poll(asys, actor, h.GetPid, h.Pid, until=lambda p: any(match(m) for m in p.seen),
                   what=what or "a message")
    return [m for m in reply.seen if match(m)]


def _received(asys: ActorSystem, actor: ActorAddress) -> list:
    return [m for m in h.ask(asys, actor, h.GetPid(), h.Pid).seen if isinstance(m, (h.Ping, h.Pong))]


def _flush(asys: ActorSystem, bus: ActorAddress, barrier: ActorAddress) -> None:
    """Publish a Pong that only `barrier` subscribes to and wait for it: earlier publications are out."""
    pong = h.Pong(text="barrier")
    asys.tell(bus, Publish(message=pong))
    _seen(asys, barrier, lambda m: m == pong, "the barrier")


def test_bus_delivers_to_exact_and_base_type_subscribers_only(asys: ActorSystem) -> None:
    bus, _ = _bus(asys)
    exact = _subscriber(asys, bus, "LoudPing")
    base = _subscriber(asys, bus, "Ping")
    everything = _subscriber(asys, bus, "Message", "Ping")  # two matching names: still once
    other = _subscriber(asys, bus, "Pong")
    loud, quiet = h.LoudPing(text="loud"), h.Ping(text="quiet")
    asys.tell(bus, Publish(message=loud))
    asys.tell(bus, Publish(message=quiet))
    _flush(asys, bus, other)
    _seen(asys, everything, lambda m: m == quiet)
    assert _received(asys, exact) == [loud]
    assert _received(asys, base) == [loud, quiet]
    assert [m for m in _received(asys, everything) if isinstance(m, h.Ping)] == [loud, quiet]
    assert [m for m in _received(asys, other) if isinstance(m, h.Ping)] == []


def test_unsubscribed_actor_receives_nothing_more(asys: ActorSystem) -> None:
    bus, _ = _bus(asys)
    leaving = _subscriber(asys, bus, "Ping", "Pong")
    first, second = h.Ping(text="1"), h.Ping(text="2")
    asys.tell(bus, Publish(message=first))
    _seen(asys, leaving, lambda m: m == first)
    asys.tell(bus, Unsubscribe(type_name="Ping", reply_to=leaving))
    asys.tell(bus, Publish(message=second))
    _flush(asys, bus, leaving)
    assert [m for m in _received(asys, leaving) if isinstance(m, h.Ping)] == [first]


def test_subscriber_that_exited_is_removed_when_a_delivery_comes_back_dead(asys: ActorSystem) -> None:
    bus, parent = _bus(asys)
    gone = _subscriber(asys, bus, "Ping")
    stays = _subscriber(asys, bus, "Ping", "Pong")

    def subscribed(snapshot: Snapshot, who: ActorAddress) -> bool:
        return any(address == who for _, address in snapshot.state.subscriptions)

    _seen(asys, parent, lambda m: isinstance(m, Snapshot) and subscribed(m, stays), "both subscriptions")
    asys.tell(gone, ActorExitRequest())
    ping = h.Ping(text="anyone?")
    asys.tell(bus, Publish(message=ping))
    _seen(asys, stays, lambda m: m == ping)
    (last, *_) = reversed(_seen(asys, parent, lambda m: isinstance(m, Snapshot) and not subscribed(m, gone),
                                "the dead subscriber's removal"))
    assert [name for name, address in last.state.subscriptions if address == stays] == ["Ping", "Pong"]


def test_restarted_bus_keeps_its_subscriptions(asys: ActorSystem) -> None:
    tree, parent = asys.createActor(h.TreeSupervisor), asys.createActor(h.StandIn)
    spec = ChildSpec(key="bus", actor_class="actors.bus.Bus")
    asys.tell(tree, ConfigureActor(key="tree", reply_to=parent, config=h.TreeConfig(
        specs=(spec,), budget=RestartBudget(max_restarts=1, window_s=60.0))))
    _seen(asys, parent, lambda m: isinstance(m, ActorReady))
    bus = h.ask(asys, tree, GetChildren(), ChildrenSnapshot).children[0].address
    listener = _subscriber(asys, bus, "Ping")
    h.poll(asys, tree, h.GetSaved, h.Saved, until=lambda s: isinstance(s.state.children[0].state, BusState),
           what="the bus snapshot at its supervisor")
    assert h.ask(asys, tree, RestartActor(key="bus"), AdminReply).ok
    restarted = h.poll(asys, tree, GetChildren, ChildrenSnapshot,
                       until=lambda s: s.children[0].incarnation == 2 and s.children[0].ready).children[0]
    assert restarted.address != bus
    ping = h.Ping(text="after restart")
    asys.tell(restarted.address, Publish(message=ping))
    _seen(asys, listener, lambda m: m == ping, "delivery by the restarted bus")


def test_publish_of_a_non_message_is_dropped_and_the_bus_keeps_working(asys: ActorSystem) -> None:
    bus, _ = _bus(asys)
    listener = _subscriber(asys, bus, "Ping")
    asys.tell(bus, Publish(message="not a message"))  # type: ignore[arg-type]
    ping = h.Ping(text="next")
    asys.tell(bus, Publish(message=ping))
    _seen(asys, listener, lambda m: m == ping)


# ---------------------------------------------------------------- one instance, no actor system


def test_subscribers_lists_each_matching_address_once_in_subscription_order() -> None:
    bus = Bus()
    a, b, c = ActorAddress("a"), ActorAddress("b"), ActorAddress("c")
    bus.subscriptions = [("Message", b), ("LoudPing", a), ("Ping", b), ("Pong", c)]
    assert bus.subscribers(h.LoudPing) == [b, a]
    assert bus.subscribers(h.Ping) == [b]
    assert bus.subscribers(h.Pong) == [b, c]


def test_bus_resumes_subscriptions_from_its_snapshot_state() -> None:
    bus = Bus()
    bus.handleDeadLetters = lambda startHandling=True: None  # type: ignore[method-assign]
    state = BusState(subscriptions=(("Ping", ActorAddress("x")),))
    peers = (Peer(name="bus", address=ActorAddress("b")),)
    bus.on_configure(ConfigureActor(key="bus", state=state, peers=peers))
    assert bus.subscribers(h.LoudPing) == [ActorAddress("x")]
