"""Stand-in actors for the TwsConnection tests: recorders (owner, bus, subscriber), a restarting supervisor.

Imported by dotted path in every actor process (the multiproc base forks them from the test).
"""

from __future__ import annotations

import os
import socket
import time
from typing import Any
from dataclasses import dataclass

from thespian.actors import ActorAddress, ActorSystemMessage, ActorTypeDispatcher, ChildActorExited

from actors import tws_edge as edge
from actors.supervision import StateChange
from messages import ConfigureActor, Message, Peer, Publish, QuoteProcessed, QuoteUpdate, Snapshot

# ---------------------------------------------------------------- control messages


@dataclass(frozen=True, slots=True, kw_only=True)
class AwaitRecords(Message):
    """Ask a Recorder for what it recorded once it holds `count` messages of `type_name` (0: at once)."""

    type_name: str = "Message"
    count: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class Records(Message):
    """A Recorder's answer: every message in arrival order (bus envelopes opened), and quote flow figures."""

    messages: tuple[Message, ...] = ()
    max_in_flight: int = 0
    in_flight: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class Feed(Message):
    """Ask a Recorder to send `message` to `to`, so the answer comes back to the recorder."""

    to: ActorAddress
    message: Message


@dataclass(frozen=True, slots=True, kw_only=True)
class Setup(Message):
    """Make a Recorder answer each QuoteUpdate at once (`auto_ack`) or only when told (Ack)."""

    auto_ack: bool = True


@dataclass(frozen=True, slots=True, kw_only=True)
class Ack(Message):
    """Answer the oldest unanswered QuoteUpdate with QuoteProcessed."""


@dataclass(frozen=True, slots=True, kw_only=True)
class StartChild(Message):
    """Ask a StandInSupervisor to create `actor_class` (dotted) and configure it."""

    actor_class: str
    key: str
    config: object = None
    state: object = None
    peers: tuple[Peer, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class GetChild(Message):
    """Ask a StandInSupervisor for its current child."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ChildInfo(Message):
    address: ActorAddress | None
    incarnation: int
    supervisor_pid: int
    state: object = None


def _names(msg: object) -> tuple[str, ...]:
    return tuple(c.__name__ for c in type(msg).__mro__)


# ---------------------------------------------------------------- actors


class Recorder(ActorTypeDispatcher):
    """Records every message (a bus Publish is recorded as its content); plays a quote subscriber too."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[Message] = []
        self.waiting: list[tuple[ActorAddress, AwaitRecords]] = []
        self.auto_ack = True
        self.unacked: list[tuple[ActorAddress, str]] = []
        self.max_in_flight = 0

    def receiveMessage(self, msg: object, sender: ActorAddress) -> None:
        if isinstance(msg, AwaitRecords):
            self.waiting.append((sender, msg))
        elif isinstance(msg, Feed):
            self.send(msg.to, msg.message)
        elif isinstance(msg, Setup):
            self.auto_ack = msg.auto_ack
        elif isinstance(msg, Ack):
            if self.unacked:
                to, symbol = self.unacked.pop(0)
                self.send(to, QuoteProcessed(symbol=symbol))
        elif isinstance(msg, ActorSystemMessage):
            self.on_system(msg, sender)
        elif isinstance(msg, Message):
            self.records.append(msg.message if isinstance(msg, Publish) else msg)
            if isinstance(msg, QuoteUpdate):
                self.unacked.append((sender, msg.quote.symbol))
                self.max_in_flight = max(self.max_in_flight, len(self.unacked))
                if self.auto_ack:
                    to, symbol = self.unacked.pop(0)
                    self.send(to, QuoteProcessed(symbol=symbol))
            self.on_message(msg, sender)
        self._answer()

    def on_system(self, msg: ActorSystemMessage, sender: ActorAddress) -> None:
        pass

    def on_message(self, msg: Message, sender: ActorAddress) -> None:
        pass

    def _answer(self) -> None:
        still = []
        for asker, want in self.waiting:
            have = sum(1 for m in self.records if want.type_name in _names(m))
            if have >= want.count:
                self.send(asker, Records.caused_by(want, messages=tuple(self.records),
                                                   max_in_flight=self.max_in_flight,
                                                   in_flight=len(self.unacked)))
            else:
                still.append((asker, want))
        self.waiting = still


class StandInSupervisor(Recorder):
    """Creates one child, keeps its last Snapshot and re-creates it from that state after any exit."""

    def __init__(self) -> None:
        super().__init__()
        self.spec: StartChild | None = None
        self.child: ActorAddress | None = None
        self.incarnation = 0
        self.state: object = None

    def on_message(self, msg: Message, sender: ActorAddress) -> None:
        if isinstance(msg, StartChild):
            self.spec = msg
            self.state = msg.state
            self._start()
            self._info(sender, msg)
        elif isinstance(msg, GetChild):
            self._info(sender, msg)
        elif isinstance(msg, Snapshot):
            # Like SupervisorActor: a StateChange is merged into the kept state.
            self.state = msg.state.apply(self.state) if isinstance(msg.state, StateChange) else msg.state

    def on_system(self, msg: ActorSystemMessage, sender: ActorAddress) -> None:
        if isinstance(msg, ChildActorExited) and self.spec is not None and msg.childAddress == self.child:
            self._start()

    def _info(self, to: ActorAddress, cause: Message) -> None:
        self.send(to, ChildInfo.caused_by(cause, address=self.child, incarnation=self.incarnation,
                                          supervisor_pid=os.getpid(), state=self.state))

    def _start(self) -> None:
        assert self.spec is not None
        self.incarnation += 1
        self.child = self.createActor(self.spec.actor_class)
        self.send(self.child, ConfigureActor(key=self.spec.key, incarnation=self.incarnation,
                                             config=self.spec.config, state=self.state,
                                             peers=self.spec.peers, reply_to=self.myAddress))


def place_external(port: int, client_id: int, order: Any) -> int:
    """Place `order` as another API client would (ibapi's encoder on a plain socket); return its id."""
    wire = edge.Wire(client_id)
    events: list[Any] = []

    def until(kind: type, **match: Any) -> Any:
        deadline = time.monotonic() + 5
        while True:
            for ev in events:
                if isinstance(ev, kind) and all(getattr(ev, k) == v for k, v in match.items()):
                    return ev
            assert time.monotonic() < deadline, f"no {kind.__name__} from the simulator"
            events.extend(wire.feed(sock.recv(65536)))

    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(edge.handshake_bytes())
        until(edge.Handshaken)
        sock.sendall(wire.encode(edge.StartApiRequest())[0])
        order_id = until(edge.NextIdSeen).order_id
        frames, errors = wire.encode(edge.PlaceOrderRequest(order_id=order_id, order=order,
                                                            contract=edge.ContractSpec(symbol=order.symbol)))
        assert errors == []
        sock.sendall(frames)
        until(edge.StatusSeen, order_id=order_id)
    return order_id
