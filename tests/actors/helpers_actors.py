"""Test actors and messages for the shell tests; imported by dotted path in every actor process."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Final

from thespian.actors import ActorAddress, ActorExitRequest, ActorTypeDispatcher, ChildActorExited

from actors.base import ShellActor, run_once
from messages import ActorFailed, ActorReady, ConfigureActor, Message, Publish

FAIL_ON_CONFIGURE: Final = "fail-on-configure"


@dataclass(frozen=True, slots=True, kw_only=True)
class Explode(Message):
    """Append an attempt line to `attempts_file`, then raise."""

    attempts_file: str


@dataclass(frozen=True, slots=True, kw_only=True)
class FailInMemory(Message):
    """Count an attempt on the actor itself, then raise (for tests that hold the instance)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Echo(Message):
    text: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Echoed(Message):
    text: str
    key: str


@dataclass(frozen=True, slots=True, kw_only=True)
class PublishNote(Message):
    text: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Note(Message):
    text: str


@dataclass(frozen=True, slots=True, kw_only=True)
class StartChild(Message):
    """Ask a ParentProbe to create a child of the class named `child` (a class of this module)."""

    child: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ChildStarted(Message):
    reply_to: ActorAddress


@dataclass(frozen=True, slots=True, kw_only=True)
class AwaitProbe(Message):
    """Ask a ParentProbe for its log once it has seen at least these many of each."""

    ready: int = 0
    failures: int = 0
    exits: int = 0
    publications: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class ProbeLog(Message):
    ready: tuple[ActorReady, ...]
    failures: tuple[ActorFailed, ...]
    publications: tuple[Publish, ...]
    exits: int


class FlakyChild(ShellActor):
    """A shell actor whose handlers succeed or raise on request."""

    def __init__(self) -> None:
        super().__init__()
        self.attempts = 0

    def on_configure(self, msg: ConfigureActor) -> None:
        if msg.config == FAIL_ON_CONFIGURE:
            raise RuntimeError("bad configuration")

    @run_once
    def receiveMsg_Explode(self, msg: Explode, sender: ActorAddress) -> None:
        with open(msg.attempts_file, "a", encoding="utf-8") as f:
            f.write(f"attempt {os.getpid()}\n")
        raise RuntimeError("boom")

    @run_once
    def receiveMsg_FailInMemory(self, msg: FailInMemory, sender: ActorAddress) -> None:
        self.attempts += 1
        raise ValueError("failed in memory")

    @run_once
    def receiveMsg_Echo(self, msg: Echo, sender: ActorAddress) -> None:
        self.tell(sender, self.make(Echoed, msg, text=msg.text, key=self.key))

    @run_once
    def receiveMsg_PublishNote(self, msg: PublishNote, sender: ActorAddress) -> None:
        self.publish(self.make(Note, msg, text=msg.text))


class ReportFailsChild(FlakyChild):
    """Its failure report raises after sending, so thespian retries the message (a deepcopy)."""

    def receiveMessage(self, msg: object, sender: ActorAddress) -> object:
        if isinstance(msg, Explode):
            with open(msg.attempts_file, "a", encoding="utf-8") as f:
                f.write(f"delivery {os.getpid()}\n")
        return super().receiveMessage(msg, sender)

    def report_failure(self, msg: object, sender: ActorAddress, error: Exception, text: str) -> None:
        super().report_failure(msg, sender, error, text)
        raise RuntimeError("reporting failed")


_CHILDREN: Final = {cls.__name__: cls for cls in (FlakyChild, ReportFailsChild)}


class ParentProbe(ActorTypeDispatcher):
    """Creates children and records what they tell their supervisor, including their exits."""

    def __init__(self) -> None:
        super().__init__()
        self.ready: list[ActorReady] = []
        self.failures: list[ActorFailed] = []
        self.publications: list[Publish] = []
        self.exits = 0
        self.waiting: list[tuple[ActorAddress, AwaitProbe]] = []

    def receiveMsg_StartChild(self, msg: StartChild, sender: ActorAddress) -> None:
        child = self.createActor(_CHILDREN[msg.child])
        self.send(sender, ChildStarted.caused_by(msg, reply_to=child))

    def receiveMsg_ActorReady(self, msg: ActorReady, sender: ActorAddress) -> None:
        self.ready.append(msg)
        self._answer()

    def receiveMsg_ActorFailed(self, msg: ActorFailed, sender: ActorAddress) -> None:
        self.failures.append(msg)
        self._answer()

    def receiveMsg_Publish(self, msg: Publish, sender: ActorAddress) -> None:
        self.publications.append(msg)
        self._answer()

    def receiveMsg_ChildActorExited(self, msg: ChildActorExited, sender: ActorAddress) -> None:
        self.exits += 1
        self._answer()

    def receiveMsg_AwaitProbe(self, msg: AwaitProbe, sender: ActorAddress) -> None:
        self.waiting.append((sender, msg))
        self._answer()

    def _answer(self) -> None:
        still = []
        for asker, want in self.waiting:
            if (len(self.ready) >= want.ready and len(self.failures) >= want.failures
                    and self.exits >= want.exits and len(self.publications) >= want.publications):
                self.send(asker, ProbeLog.caused_by(
                    want, ready=tuple(self.ready), failures=tuple(self.failures),
                    publications=tuple(self.publications), exits=self.exits))
            else:
                still.append((asker, want))
        self.waiting = still


class Pid(ActorTypeDispatcher):
    """Answers "pid" with ("pid", its process id)."""

    def receiveMsg_str(self, msg: str, sender: ActorAddress) -> None:
        if msg == "pid":
            self.send(sender, ("pid", os.getpid()))


class ExitCounter(ActorTypeDispatcher):
    """Creates ("start", n) Pid children, then on "go" kills every other one and asks the rest to exit.

    "count" answers (children whose ChildActorExited arrived, notices, children): thespian 4.0.1
    lost the notice of a child that died while another child's exit was handled.
    """

    def __init__(self) -> None:
        super().__init__()
        self.kids: list[list[object]] = []  # [address, pid]
        self.noticed: set[int] = set()
        self.notices = 0
        self.waiter: ActorAddress | None = None

    def receiveMsg_tuple(self, msg: tuple, sender: ActorAddress) -> None:
        if msg[0] == "start":
            self.waiter = sender
            for _ in range(msg[1]):
                child = self.createActor(Pid)
                self.kids.append([child, 0])
                self.send(child, "pid")
        elif msg[0] == "pid":
            for kid in self.kids:
                if kid[0] == sender:
                    kid[1] = msg[1]
            if all(kid[1] for kid in self.kids) and self.waiter is not None:
                self.send(self.waiter, "ready")

    def receiveMsg_str(self, msg: str, sender: ActorAddress) -> None:
        if msg == "go":
            for i, (child, pid) in enumerate(self.kids):
                if i % 2:
                    os.kill(pid, 9)
                else:
                    self.send(child, ActorExitRequest())
        elif msg == "count":
            self.send(sender, (len(self.noticed), self.notices, len(self.kids)))

    def receiveMsg_ChildActorExited(self, msg: ChildActorExited, sender: ActorAddress) -> None:
        self.notices += 1
        self.noticed.update(i for i, kid in enumerate(self.kids) if kid[0] == msg.childAddress)
