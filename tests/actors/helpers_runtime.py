"""Stand-in actors for the runtime tests: recorders (tws, symbols, groups, bus) and a restarting supervisor.

Imported by dotted path in every actor process (the multiproc base forks them from the test).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from datetime import timedelta

from thespian.actors import (
    ActorAddress,
    ActorExitRequest,
    ActorSystem,
    ActorSystemMessage,
    ActorTypeDispatcher,
    ChildActorExited,
)

from actors.base import ShellActor
from actors.supervision import StateChange
from messages import ActorFinished, ActorStatusSnapshot, ConfigureActor, GetActorStatus, Message, Peer, Snapshot

# ---------------------------------------------------------------- control messages


@dataclass(frozen=True, slots=True, kw_only=True)
class AwaitRecords(Message):
    """Ask a Recorder for everything it recorded once it holds `count` messages of `type_name`."""

    type_name: str = "Message"
    count: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class Records(Message):
    """A Recorder's answer: what it recorded, in arrival order, and how many children exited."""

    messages: tuple[Message, ...] = ()
    exits: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class Feed(Message):
    """Ask a Recorder to send `message` to `to`, as if it came from the recorder's role (e.g. tws)."""

    to: ActorAddress
    message: Message


@dataclass(frozen=True, slots=True, kw_only=True)
class StartChild(Message):
    """Ask a StandInSupervisor to create `actor_class` (dotted) and configure it."""

    actor_class: str
    key: str
    config: object = None
    state: object = None
    peers: tuple[Peer, ...] = ()
    restart: bool = True
    incarnation: int = 1


@dataclass(frozen=True, slots=True, kw_only=True)
class GetChild(Message):
    """Ask a StandInSupervisor for its current child and its own pid."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ChildInfo(Message):
    address: ActorAddress | None
    incarnation: int
    supervisor_pid: int


def _names(msg: object) -> tuple[str, ...]:
    return tuple(c.__name__ for c in type(msg).__mro__)


# ---------------------------------------------------------------- actors


class Recorder(ActorTypeDispatcher):
    """Records every message it gets; answers AwaitRecords when the wanted count is reached.

    As a parent it plays a supervisor that stops a child on ActorFinished.
    """

    def __init__(self) -> None:
        super().__init__()
        self.records: list[Message] = []
        self.exits = 0
        self.waiting: list[tuple[ActorAddress, AwaitRecords]] = []

    def receiveMessage(self, msg: object, sender: ActorAddress) -> None:
        if isinstance(msg, AwaitRecords):
            self.waiting.append((sender, msg))
        elif isinstance(msg, Feed):
            self.send(msg.to, msg.message)
        elif isinstance(msg, ChildActorExited):
            self.exits += 1
            self.on_child_exited(msg)
        elif isinstance(msg, ActorSystemMessage):
            return
        else:
            super().receiveMessage(msg, sender)
            if isinstance(msg, Message) and not isinstance(msg, (StartChild, GetChild)):
                self.records.append(msg)
            if isinstance(msg, ActorFinished):
                self.send(sender, ActorExitRequest())
        self._answer()

    def receiveUnrecognizedMessage(self, msg: object, sender: ActorAddress) -> None:
        pass

    def on_child_exited(self, msg: ChildActorExited) -> None:
        pass

    def _answer(self) -> None:
        still = []
        for asker, want in self.waiting:
            have = sum(1 for m in self.records if want.type_name in _names(m))
            if have >= want.count:
                self.send(asker, Records.caused_by(want, messages=tuple(self.records), exits=self.exits))
            else:
                still.append((asker, want))
        self.waiting = still


class StandInSupervisor(Recorder):
    """Creates one child, keeps its last Snapshot and re-creates it with that state after an unasked exit."""

    def __init__(self) -> None:
        super().__init__()
        self.spec: StartChild | None = None
        self.child: ActorAddress | None = None
        self.incarnation = 0
        self.state: object = None
        self.finished = False

    def receiveMsg_StartChild(self, msg: StartChild, sender: ActorAddress) -> None:
        self.spec = msg
        self.state = msg.state
        self.incarnation = msg.incarnation - 1
        self._start()
        self.send(sender, ChildInfo.caused_by(msg, address=self.child, incarnation=self.incarnation,
                                              supervisor_pid=os.getpid()))

    def receiveMsg_GetChild(self, msg: GetChild, sender: ActorAddress) -> None:
        self.send(sender, ChildInfo.caused_by(msg, address=self.child, incarnation=self.incarnation,
                                              supervisor_pid=os.getpid()))

    def receiveMsg_Snapshot(self, msg: Snapshot, sender: ActorAddress) -> None:
        # Like SupervisorActor: a StateChange is merged into the kept state.
        self.state = msg.state.apply(self.state) if isinstance(msg.state, StateChange) else msg.state

    def receiveMsg_ActorFinished(self, msg: ActorFinished, sender: ActorAddress) -> None:
        self.finished = True

    def on_child_exited(self, msg: ChildActorExited) -> None:
        if msg.childAddress != self.child:
            return  # thespian may report one exit twice, or an earlier incarnation's late
        if self.spec is None or self.finished or not self.spec.restart:
            self.child = None
            return
        self._start()

    def _start(self) -> None:
        assert self.spec is not None
        self.incarnation += 1
        self.child = self.createActor(self.spec.actor_class)
        self.send(self.child, ConfigureActor(key=self.spec.key, incarnation=self.incarnation,
                                             config=self.spec.config, state=self.state,
                                             peers=self.spec.peers, reply_to=self.myAddress))


# ---------------------------------------------------------------- test plumbing (not actors)


def child_pids(parent_pid: int) -> list[int]:
    """Return the pids whose parent is `parent_pid` (Linux /proc)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as f:
                stat = f.read()
        except OSError:
            continue
        # The command name (field 2) may hold spaces; the fields after its closing ")" do not.
        fields = stat[stat.rfind(")") + 2:].split()
        if int(fields[1]) == parent_pid:
            pids.append(int(entry))
    return pids


class OnTheOrderPath(ShellActor):
    """A do-nothing actor that, like the connection and the risk gate, carries orders."""

    ON_ORDER_PATH = True


class InTheBackground(ShellActor):
    """A do-nothing actor that, like the symbol and order group actors, runs at system.background_nice."""

    BACKGROUND = True


def start_configured(asys: ActorSystem, actor_class: str, key: str = "x") -> tuple[ChildInfo, int]:
    """Start `actor_class` under a new StandInSupervisor; return its ChildInfo and pid once it is configured."""
    ask = timedelta(seconds=10)
    parent = asys.createActor(StandInSupervisor)
    info = asys.ask(parent, StartChild(actor_class=actor_class, key=key, restart=False, incarnation=1), ask)
    assert isinstance(info, ChildInfo), info
    # ConfigureActor (from the supervisor) and our question (from us) may arrive in either order.
    deadline = time.monotonic() + 10
    while True:
        status = asys.ask(info.address, GetActorStatus(), ask)
        assert isinstance(status, ActorStatusSnapshot), status
        if status.configured:
            return info, status.pid
        assert time.monotonic() < deadline, f"{actor_class} was never configured"
        time.sleep(0.01)
