"""Stand-in actors and messages for the supervision and bus tests, imported by dotted path in actor processes.

Stand-ins append one line per start and exit to the file named by $SUPERVISION_TEST_EVENTS (set
before the actor system forks), so a test reads the order in which a tree started and stopped.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, TypeVar

from thespian.actors import ActorAddress, ActorExitRequest, ActorSystem, ChildActorExited

from actors.base import ShellActor, run_once
from actors.order_group_supervisor import OrderGroupSupervisor
from actors.supervision import ChildSpec, SupervisorActor
from actors.supervisor import Supervisor
from actors.symbol_supervisor import SymbolSupervisor
from core.config import RestartBudget
from messages import ActorFinished, ConfigureActor, Message, Peer, PeerMoved, Snapshot

EVENTS_ENV: Final = "SUPERVISION_TEST_EVENTS"
MODULE: Final = "tests.actors.helpers_supervision"


def _event(line: str) -> None:
    path = os.environ.get(EVENTS_ENV)
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(line + "\n")


def events(path: str | os.PathLike[str]) -> list[str]:
    """Return the event lines written so far."""
    try:
        with open(path, encoding="utf-8") as f:
            return f.read().splitlines()
    except FileNotFoundError:
        return []


# ---------------------------------------------------------------- messages


@dataclass(frozen=True, slots=True, kw_only=True)
class GetPid(Message):
    """Ask a stand-in who it is."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Pid(Message):
    pid: int
    key: str
    incarnation: int
    state: object
    peers: tuple[Peer, ...]
    moved: tuple[str, ...]
    seen: tuple[Message, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class SetState(Message):
    """Set a stand-in's state; it sends its supervisor a Snapshot."""

    value: object


@dataclass(frozen=True, slots=True, kw_only=True)
class Crash(Message):
    """Make a stand-in's run-once handler raise."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Finish(Message):
    """Make a stand-in tell its supervisor that its work is done."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Ping(Message):
    text: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class LoudPing(Ping):
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class Pong(Message):
    text: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class TreeConfig:
    """A TreeSupervisor's configuration: its children and budget."""

    specs: tuple[ChildSpec, ...]
    budget: RestartBudget


@dataclass(frozen=True, slots=True, kw_only=True)
class AddChild(Message):
    spec: ChildSpec


@dataclass(frozen=True, slots=True, kw_only=True)
class RemoveChild(Message):
    key: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Done(Message):
    ok: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class StopAll(Message):
    """Make a tree supervisor stop its children (reverse order) and answer Done."""


@dataclass(frozen=True, slots=True, kw_only=True)
class GetSaved(Message):
    """Ask a test supervisor for its own snapshot (the states it would hand back)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Saved(Message):
    state: object


# ---------------------------------------------------------------- actors


class StandIn(ShellActor):
    """A child that reports its pid, state, peers and everything else it was sent."""

    def __init__(self) -> None:
        super().__init__()
        self.state: object = None
        self.moved: list[str] = []
        self.seen: list[Message] = []

    def on_configure(self, msg: ConfigureActor) -> None:
        self.state = msg.state
        _event(f"configure {msg.key} {msg.incarnation}")

    def receiveMsg_ActorExitRequest(self, msg: ActorExitRequest, sender: ActorAddress) -> None:
        _event(f"exit {self.key} {self.incarnation}")

    @run_once
    def receiveMsg_PeerMoved(self, msg: PeerMoved, sender: ActorAddress) -> None:
        super().receiveMsg_PeerMoved(msg, sender)
        self.moved.append(msg.name)

    def receiveMsg_GetPid(self, msg: GetPid, sender: ActorAddress) -> None:
        self.tell(sender, self.make(
            Pid, msg, pid=os.getpid(), key=self.key, incarnation=self.incarnation, state=self.state,
            peers=tuple(Peer(name=n, address=a) for n, a in self.peers.items()),
            moved=tuple(self.moved), seen=tuple(self.seen)))

    @run_once
    def receiveMsg_SetState(self, msg: SetState, sender: ActorAddress) -> None:
        self.state = msg.value
        assert self.parent is not None
        self.tell(self.parent, self.make(Snapshot, msg, key=self.key, incarnation=self.incarnation,
                                         state=self.state))
        self.tell(sender, self.make(Done, msg, ok=True))

    @run_once
    def receiveMsg_Crash(self, msg: Crash, sender: ActorAddress) -> None:
        raise RuntimeError(f"{self.key} crashed on request")

    @run_once
    def receiveMsg_Finish(self, msg: Finish, sender: ActorAddress) -> None:
        assert self.parent is not None
        self.tell(self.parent, self.make(ActorFinished, msg, key=self.key, incarnation=self.incarnation,
                                         reason="done"))

    def receiveMsg_Message(self, msg: Message, sender: ActorAddress) -> None:
        self.seen.append(msg)


class TreeSupervisor(SupervisorActor):
    """A generic supervisor: children and budget come from its TreeConfig."""

    def child_specs(self, msg: ConfigureActor) -> tuple[ChildSpec, ...]:
        assert isinstance(msg.config, TreeConfig)
        self.budget = msg.config.budget
        return msg.config.specs

    def on_gave_up(self, key: str) -> None:
        super().on_gave_up(key)
        _event(f"gave-up {key}")

    def receiveMsg_AddChild(self, msg: AddChild, sender: ActorAddress) -> None:
        self.tell(sender, self.make(Done, msg, ok=self.add_child(msg.spec)))

    def receiveMsg_RemoveChild(self, msg: RemoveChild, sender: ActorAddress) -> None:
        self.tell(sender, self.make(Done, msg, ok=self.remove_child(msg.key)))

    def receiveMsg_GetSaved(self, msg: GetSaved, sender: ActorAddress) -> None:
        self.tell(sender, self.make(Saved, msg, state=self.saved_state()))

    def receiveMsg_StopAll(self, msg: StopAll, sender: ActorAddress) -> None:
        self.stop_asker = (sender, msg)
        self.stop_children()

    def on_children_stopped(self) -> None:
        asker, msg = self.stop_asker
        self.tell(asker, self.make(Done, msg, ok=True))


@dataclass(frozen=True, slots=True, kw_only=True)
class MissExit(Message):
    """The next exit notice for child `key` gets lost (as thespian 4.0.1 lost some)."""

    key: str


class DeafTreeSupervisor(TreeSupervisor):
    """A TreeSupervisor that drops the exit notices it is told to miss."""

    def __init__(self) -> None:
        super().__init__()
        self.deaf_to: set[str] = set()

    def receiveMsg_MissExit(self, msg: MissExit, sender: ActorAddress) -> None:
        self.deaf_to.add(msg.key)
        self.tell(sender, self.make(Done, msg, ok=True))

    def receiveMsg_ChildActorExited(self, msg: ChildActorExited, sender: ActorAddress) -> None:
        for key in list(self.deaf_to):
            if self.child_address(key) == msg.childAddress:
                self.deaf_to.discard(key)
                _event(f"missed-exit {key}")
                return
        super().receiveMsg_ChildActorExited(msg, sender)


class Root(Supervisor):
    """The root Supervisor, which also shows its own snapshot."""

    def receiveMsg_GetSaved(self, msg: GetSaved, sender: ActorAddress) -> None:
        self.tell(sender, self.make(Saved, msg, state=self.saved_state()))


class _LoggedExit:
    def on_configure(self, msg: ConfigureActor) -> None:
        _event(f"configure {msg.key} {msg.incarnation}")
        super().on_configure(msg)  # type: ignore[misc]

    def receiveMsg_ActorExitRequest(self, msg: ActorExitRequest, sender: ActorAddress) -> None:
        _event(f"exit {self.key} {self.incarnation}")  # type: ignore[attr-defined]
        super().receiveMsg_ActorExitRequest(msg, sender)  # type: ignore[misc]

    @run_once
    def receiveMsg_Crash(self, msg: Crash, sender: ActorAddress) -> None:
        raise RuntimeError("supervisor crashed on request")


class StandInSymbols(_LoggedExit, SymbolSupervisor):
    CHILD_CLASS = f"{MODULE}.StandIn"


class StandInGroups(_LoggedExit, OrderGroupSupervisor):
    CHILD_CLASS = f"{MODULE}.StandIn"


# ---------------------------------------------------------------- test utilities

_T = TypeVar("_T")


def ask(asys: ActorSystem, to: ActorAddress, msg: Any, expect: type[_T], timeout_s: float = 5.0) -> _T:
    reply = asys.ask(to, msg, timeout_s)
    assert isinstance(reply, expect), f"asked {type(msg).__name__}, expected {expect.__name__}, got {reply!r}"
    return reply


def poll(asys: ActorSystem, to: ActorAddress, make: Callable[[], Any], expect: type[_T],
         until: Callable[[_T], bool], deadline_s: float = 10.0, what: str = "") -> _T:
    """Ask `to` with a fresh `make()` until the reply satisfies `until`; fail after the deadline."""
    deadline = time.monotonic() + deadline_s
    while True:
        question = make()
        reply = asys.ask(to, question, 1.0)
        # An ask may return a late answer to an earlier question: only the answer to this one counts.
        if isinstance(reply, expect) and getattr(reply, "cause_id", None) == question.msg_id and until(reply):
            return reply
        assert time.monotonic() < deadline, (
            f"gave up waiting for {what or expect.__name__}; last reply {reply!r}")
        time.sleep(0.005)


def poll_until(condition: Callable[[], bool], deadline_s: float = 10.0, what: str = "") -> None:
    """Wait until `condition()` holds; fail after the deadline."""
    deadline = time.monotonic() + deadline_s
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting for {what or 'the condition'}"
        time.sleep(0.005)
