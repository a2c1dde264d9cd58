"""OTP-style supervision on thespian: child specs, ordered start and stop, restart budgets, state hand-back.

Thespian restarts nothing (thespian-notes §3): a parent only learns `ChildActorExited(address)`,
for wanted and unwanted exits alike. `SupervisorActor` adds what OTP supervisors do: it starts its
children one after the other (create → ConfigureActor → wait for ActorReady), keeps each child's
latest Snapshot, re-creates a child that exited unexpectedly with incarnation+1 and that state
while the restart budget allows, tells the other children where a (re)started child lives
(PeerMoved), and gives up on a child whose budget is spent (`on_gave_up`: quarantine a symbol,
escalate for a core actor). Exits it asked for (ActorExitRequest it sent, ActorFinished from a
transient child) are remembered, so they are not mistaken for crashes.

A supervisor that has a supervisor itself keeps it informed of its subtree: after every change
to one child it sends a Snapshot whose state is a SubtreeChange (that child's SavedChild, or its
removal), which the parent merges into the SupervisorState it keeps. The cost per change is one
child's state, not the whole subtree's (300 symbols snapshotting once per bar would otherwise
pickle 300 states per bar each). A restarted sub-supervisor resumes its children from that state
with their incarnations, states and quarantines, and first stops the children its killed
predecessor left orphaned.

Exit notices are matched with care, because thespian names a child by its TCP port and ports are
reused. A message that names its sender (ActorReady, Snapshot, ActorFinished, ActorFailed) must
come from the child with that key at that address. An exit notice matching a forked child whose
process still runs, and which is not on its way out, is not believed. Every `WATCH_S` the
supervisor looks at the processes it forked: a child whose process is gone at two looks in a row
counts as exited even if no notice came (thespian 4.0.1 lost some; actors.thespian_patches fixes
the cause it found).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from typing import ClassVar, Final

from thespian.actors import ActorAddress, ActorExitRequest, ChildActorExited, WakeupMessage

from actors import logs
from actors.base import ShellActor, run_once
from actors.processes import alive, parent_of
from core.config import RestartBudget
from core.supervision import ExitReason, Restart, RestartHistory, Verdict, decide_exit
from messages import (
    ActorFailed,
    ActorFinished,
    AdminError,
    AdminErrorCode,
    AdminReply,
    ActorReady,
    ActorRestarted,
    ChildrenSnapshot,
    ChildStatus,
    ConfigureActor,
    GetChildren,
    Message,
    Peer,
    PeerMoved,
    RestartActor,
    SetLogLevel,
    Snapshot,
)

__all__ = [
    "ChildSpec",
    "ExitReason",
    "Restart",
    "SavedChild",
    "StateChange",
    "SubtreeChange",
    "SupervisorActor",
    "SupervisorState",
]

_STOP_TIMEOUT: Final = "stop-timeout"
_WATCH: Final = "child-process-watch"


def _running(pid: int) -> bool:
    """Return True if `pid` runs and is still our child (not a zombie, not a reused pid)."""
    return alive(pid) and parent_of(pid) == os.getpid()


@dataclass(frozen=True, slots=True, kw_only=True)
class ChildSpec:
    """How to start one child: its key, actor class (dotted path), config, restart type and peer names.

    `peers` names the actors the child may talk to; each resolves to a sibling with that key,
    to the supervisor itself (its own key), or to one of the supervisor's own peers. A name
    that is not running yet reaches the child later as PeerMoved. `supervises` marks a child
    that is a SupervisorActor itself (it answers GetChildren).
    """

    key: str
    actor_class: str
    config: object = None
    restart: Restart = Restart.PERMANENT
    peers: tuple[str, ...] = ()
    supervises: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class SavedChild:
    """One child in a supervisor's own snapshot; `spec` is kept for dynamic children only."""

    key: str
    incarnation: int = 0
    state: object = None
    quarantined: bool = False
    address: ActorAddress | None = None
    spec: ChildSpec | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class SupervisorState:
    """What a supervisor hands its own supervisor: every child's incarnation, state and quarantine."""

    children: tuple[SavedChild, ...] = ()


class StateChange:
    """A Snapshot state that is a change, not a whole state: the supervisor keeps `apply(kept)`.

    Children whose state is large and changes a piece at a time (a sub-supervisor's subtree,
    the connection's order routes) send changes, so a snapshot costs what changed.
    """

    __slots__ = ()

    def apply(self, state: object) -> object:
        """Return `state` (the kept one, None at first) with this change made."""
        raise NotImplementedError


@dataclass(frozen=True, slots=True, kw_only=True)
class SubtreeChange(StateChange):
    """A supervisor's report of one child's change to its own supervisor (the Snapshot's state).

    `saved` is the child as it is now, None when the supervisor forgot it. The parent keeps the
    SupervisorState that `apply` builds; changes arrive in order (thespian delivers in order per
    sender and receiver) and a restarted sub-supervisor's first change applies to the state it
    was restored from.
    """

    key: str
    saved: SavedChild | None

    def apply(self, state: object) -> SupervisorState:
        """Return `state` (a SupervisorState, or None for an empty one) with this change made."""
        children = state.children if isinstance(state, SupervisorState) else ()
        merged: list[SavedChild] = []
        found = False
        for item in children:
            if item.key == self.key:
                found = True
                if self.saved is not None:
                    merged.append(self.saved)
            else:
                merged.append(item)
        if not found and self.saved is not None:
            merged.append(self.saved)
        return SupervisorState(children=tuple(merged))


class _Child:
    """The supervisor's mutable record of one child (actor-local; never sent)."""

    __slots__ = ("spec", "dynamic", "address", "incarnation", "ready", "state", "history",
                 "quarantined", "stopping", "remove", "restart_after", "last_error", "pid",
                 "forked", "failed", "seen_gone")

    def __init__(self, spec: ChildSpec, *, dynamic: bool) -> None:
        self.spec = spec
        self.dynamic = dynamic
        self.address: ActorAddress | None = None
        self.incarnation = 0
        self.ready = False
        self.state: object = None
        self.history = RestartHistory()
        self.quarantined = False
        self.stopping: ExitReason | None = None  # set when the supervisor asked for the exit
        self.remove = False                      # forget the child once it exited
        self.restart_after = False               # start it again once it exited (admin restart)
        self.last_error = ""
        self.pid = 0                             # the running incarnation's process (its ActorReady)
        self.forked = False                      # that process is ours (we watch it)
        self.failed = False                      # it reported ActorFailed: it exits by itself
        self.seen_gone = False                   # the watch's last look found its process gone


class SupervisorActor(ShellActor):
    """A one-for-one supervisor; subclasses give `child_specs`, `budget` and the hooks.

    Hooks: `child_specs(msg)` (static children, in start order), `on_child_ready(key, address,
    incarnation)`, `on_child_state(key, state)`, `on_gave_up(key)`, `on_all_started()` (default:
    ActorReady to the parent), `on_children_stopped()` and `create_child(spec, incarnation)` (where
    a child's process comes from). Dynamic children come and go with `add_child` / `remove_child`.
    """

    STOP_TIMEOUT_S: ClassVar[float] = 5.0
    WATCH_S: ClassVar[float] = 1.0  # how often the processes of forked children are looked at

    def __init__(self) -> None:
        super().__init__()
        self.budget: RestartBudget = RestartBudget()
        self.children: dict[str, _Child] = {}  # in start order; keys are str (addresses are unhashable)
        self._queue: list[str] = []
        self._starting: str | None = None
        self._all_started = False
        self.start_cause: Message | None = None  # the message that started the children (ids chain)
        self._stop_queue: list[str] = []
        self._stop_token = 0
        self.stopping_all = False
        self.exiting = False
        self._log_levels: dict[str, SetLogLevel] = {}  # the operator's log levels by actor key ("" = all)

    # ------------------------------------------------------------ hooks

    def child_specs(self, msg: ConfigureActor) -> tuple[ChildSpec, ...]:
        """Return the static children to start after configuration, in start order."""
        return ()

    def on_child_ready(self, key: str, address: ActorAddress, incarnation: int) -> None:
        """React to a child that finished ConfigureActor (first start or restart)."""

    def on_gave_up(self, key: str) -> None:
        """React to a child whose restart budget is spent; it stays down (quarantined)."""
        self.log.error("{}: child {} used up its restart budget ({} in {} s) and stays down",
                       self.key, key, self.budget.max_restarts, self.budget.window_s)

    def on_all_started(self) -> None:
        """React to the last static child being ready; by default tell the parent this supervisor is."""
        if self.parent is not None:
            self.tell(self.parent, self.make(ActorReady, self.start_cause, key=self.key,
                                             incarnation=self.incarnation, pid=os.getpid(),
                                             parent_pid=os.getppid()))

    def on_children_stopped(self) -> None:
        """React to the end of `stop_children`."""

    def on_child_exited(self, key: str, reason: ExitReason) -> None:
        """React to a child's exit before the supervisor decides whether to restart it."""

    def on_child_removed(self, key: str) -> None:
        """React to a child that exited for good and was forgotten (a finished or removed child)."""

    def on_child_state(self, key: str, state: object) -> None:
        """React to a child's new Snapshot state (kept to hand back on its restart)."""

    def create_child(self, spec: ChildSpec, incarnation: int) -> ActorAddress:
        """Return the new process for incarnation `incarnation` of `spec` (default: create it now)."""
        return self.createActor(spec.actor_class)

    def receiveMsg_SetLogLevel(self, msg: SetLogLevel, sender: ActorAddress) -> None:
        # Every process of the subtree changes its own sinks: pass it on to each child. Kept, so a
        # restarted child (a new process, at the configured level) gets it again.
        super().receiveMsg_SetLogLevel(msg, sender)
        if not msg.key:
            self._log_levels.clear()
        self._log_levels[msg.key] = msg
        for child in self.children.values():
            if child.address is not None:
                self.tell(child.address, msg)

    # ------------------------------------------------------------ set-up

    @run_once
    def receiveMsg_ConfigureActor(self, msg: ConfigureActor, sender: ActorAddress) -> None:
        # ShellActor's set-up, except that ActorReady waits until every static child is ready.
        self.adopt(msg, sender)
        self.start_cause = msg
        self.on_configure(msg)
        self.configured = True
        specs = self.child_specs(msg)
        saved = msg.state.children if isinstance(msg.state, SupervisorState) else ()
        self.start_children(specs, saved)
        if logs.runs_alone():  # in-process bases have no processes to watch
            self.wakeupAfter(timedelta(seconds=self.WATCH_S), payload=_WATCH)

    def start_children(self, specs: tuple[ChildSpec, ...], saved: tuple[SavedChild, ...] = ()) -> None:
        """Register `specs` (resuming what `saved` says about them) and start them one after the other."""
        for spec in specs:
            self.children[spec.key] = _Child(spec, dynamic=False)
        for item in saved:
            if item.address is not None:
                # Our predecessor may have been killed (SIGKILL orphans its children, which
                # would go on trading next to the replacements): stop whatever is left of it.
                self.send(item.address, ActorExitRequest())
            child = self.children.get(item.key)
            if child is None and item.spec is not None:
                child = self.children[item.key] = _Child(item.spec, dynamic=True)
            if child is not None:
                child.incarnation, child.state, child.quarantined = (
                    item.incarnation, item.state, item.quarantined)
        self._queue.extend(key for key in self.children if key not in self._queue)
        self._start_next()

    # ------------------------------------------------------------ dynamic children

    def add_child(self, spec: ChildSpec, state: object = None) -> bool:
        """Start a dynamic child now (from `state`, None = fresh); False if the key is taken or stopping."""
        if self.stopping_all or self.exiting:
            self.log.warning("{}: not starting {} while stopping", self.key, spec.key)
            return False
        if spec.key in self.children:
            self.log.warning("{}: a child {} exists already", self.key, spec.key)
            return False
        child = self.children[spec.key] = _Child(spec, dynamic=True)
        child.state = state
        self._spawn(child)
        self._snapshot_upward(spec.key)
        return True

    def remove_child(self, key: str) -> bool:
        """Stop the child `key` (wanted exit) and forget it; return False for an unknown key."""
        child = self.children.get(key)
        if child is None:
            return False
        child.remove = True
        if child.address is None:
            del self.children[key]
            self.on_child_removed(key)
            self._snapshot_upward(key)
        else:
            self._request_exit(child)
        return True

    def restart_child(self, key: str) -> bool:
        """Stop the child `key` and start it again with its last state, lifting a quarantine."""
        child = self.children.get(key)
        if child is None or self.stopping_all or self.exiting:
            return False
        child.quarantined = False
        child.history = RestartHistory()
        if child.address is None:
            self._spawn(child)
        else:
            child.restart_after = True
            self._request_exit(child)
        return True

    # ------------------------------------------------------------ stopping

    def stop_children(self) -> None:
        """Stop every running child in reverse start order, each after the previous one exited."""
        self.stopping_all = True
        self._queue.clear()
        self._stop_queue = list(reversed(self.children))
        self._stop_next()

    def _stop_next(self) -> None:
        while self._stop_queue:
            child = self.children.get(self._stop_queue[0])
            if child is None or child.address is None:
                self._stop_queue.pop(0)
                continue
            self._request_exit(child)
            self._stop_token += 1
            self.wakeupAfter(timedelta(seconds=self.STOP_TIMEOUT_S),
                             payload=(_STOP_TIMEOUT, child.spec.key, self._stop_token))
            return
        self.on_children_stopped()

    def _request_exit(self, child: _Child) -> None:
        if child.stopping is None:
            child.stopping = ExitReason.REQUESTED
        assert child.address is not None
        self.send(child.address, ActorExitRequest())

    def receiveMsg_WakeupMessage(self, msg: WakeupMessage, sender: ActorAddress) -> None:
        payload = msg.payload
        if payload == _WATCH:
            self._watch_processes()
            if not self.exiting:
                self.wakeupAfter(timedelta(seconds=self.WATCH_S), payload=_WATCH)
        elif isinstance(payload, tuple) and payload[:1] == (_STOP_TIMEOUT,):
            _, key, token = payload
            if token == self._stop_token and self._stop_queue[:1] == [key]:
                self.log.warning("{}: child {} did not exit within {} s; stopping the next one",
                                 self.key, key, self.STOP_TIMEOUT_S)
                self._stop_queue.pop(0)
                self._stop_next()
        else:
            self.on_wakeup(payload)

    def on_wakeup(self, payload: object) -> None:
        """React to a timer this supervisor set with `wakeupAfter` (not a stop timeout)."""

    def receiveMsg_ActorExitRequest(self, msg: ActorExitRequest, sender: ActorAddress) -> None:
        # thespian stops our children after this handler and waits for them; ask them first, in
        # reverse start order, and remember that none of their exits is to be restarted.
        self.exiting = True
        for child in reversed(list(self.children.values())):
            if child.address is not None:
                self._request_exit(child)

    # ------------------------------------------------------------ from children

    @run_once
    def receiveMsg_ActorReady(self, msg: ActorReady, sender: ActorAddress) -> None:
        child = self._child_at(sender, msg.key)
        if child is None or child.incarnation != msg.incarnation or child.address is None:
            self.log.debug("{}: stale ActorReady from {} #{}", self.key, msg.key, msg.incarnation)
            return
        child.ready = True
        child.pid = msg.pid
        # Only a process we forked is ours to watch (a child on another node has its own pids).
        child.forked = msg.parent_pid == os.getpid() and msg.pid not in (0, os.getpid())
        self.log.info("{}: {} #{} ready", self.key, child.spec.key, child.incarnation)
        moved = self.make(PeerMoved, msg, name=child.spec.key, address=child.address)
        for other in self.children.values():
            if other is not child and other.address is not None and child.spec.key in other.spec.peers:
                self.tell(other.address, moved)
        for level in self._log_levels.values():
            if level.key in ("", child.spec.key) or child.spec.supervises:
                self.tell(child.address, level)
        self.on_child_ready(child.spec.key, child.address, child.incarnation)
        self._snapshot_upward(child.spec.key)
        if self._starting == child.spec.key:
            self._starting = None
            self._start_next()

    @run_once
    def receiveMsg_Snapshot(self, msg: Snapshot, sender: ActorAddress) -> None:
        child = self._child_at(sender, msg.key)
        if child is None or child.incarnation != msg.incarnation:
            self.log.debug("{}: stale Snapshot from {} #{}", self.key, msg.key, msg.incarnation)
            return
        state = msg.state
        if isinstance(state, StateChange):
            state = state.apply(child.state)
        child.state = state
        self.on_child_state(child.spec.key, state)
        self._snapshot_upward(child.spec.key)

    @run_once
    def receiveMsg_ActorFinished(self, msg: ActorFinished, sender: ActorAddress) -> None:
        self.finish_child(sender, msg.reason, msg.key)

    def finish_child(self, address: ActorAddress, reason: str = "", key: str = "") -> bool:
        """Stop the child `key` at `address` because its work is done (not restarted unless permanent)."""
        child = self._child_at(address, key)
        if child is None or child.address is None:
            return False
        self.log.info("{}: {} #{} finished{}", self.key, child.spec.key, child.incarnation,
                      f": {reason}" if reason else "")
        child.stopping = ExitReason.FINISHED
        self._request_exit(child)
        return True

    @run_once
    def receiveMsg_ActorFailed(self, msg: ActorFailed, sender: ActorAddress) -> None:
        # The child exits by itself after reporting (run_once); ChildActorExited decides.
        child = self._child_at(sender, msg.key)
        if child is not None:
            child.last_error = msg.error
            child.failed = True
        self.log.error("{}: child {} #{} failed handling {} {}: {}\n{}", self.key, msg.key,
                       msg.incarnation, msg.message_type, msg.message_id, msg.error, msg.traceback)

    @run_once
    def receiveMsg_ChildActorExited(self, msg: ChildActorExited, sender: ActorAddress) -> None:
        for child in self._exit_noticed(msg.childAddress):
            self._gone(child)

    def _exit_noticed(self, address: ActorAddress) -> list[_Child]:
        """Return the children an exit notice for `address` is about.

        Ports are reused: a notice (a late or repeated one) can match a running child on the port
        the dead one had, or two children (one dead but never announced). A forked child whose
        process is gone is the one; a running one is believed only when it is on its way out (we
        asked it to exit, or it reported a failure and exits by itself); otherwise the process
        watch decides.
        """
        matches = [c for c in self.children.values() if c.address is not None and c.address == address]
        dead = [c for c in matches if c.forked and not _running(c.pid)]
        if dead:
            return dead
        leaving = [c for c in matches if c.stopping is not None or c.failed or not c.forked]
        if leaving:
            return leaving[:1]
        for child in matches:
            self.log.warning("{}: an exit notice matches {} #{}, whose process {} still runs: "
                             "not believed (a reused port); its process is watched",
                             self.key, child.spec.key, child.incarnation, child.pid)
        return []

    def _gone(self, child: _Child) -> None:
        reason = child.stopping or ExitReason.UNEXPECTED
        if self.exiting or self.stopping_all:
            reason = ExitReason.REQUESTED
        self._exited(child, reason)
        if self._stop_queue[:1] == [child.spec.key]:
            self._stop_queue.pop(0)
            self._stop_next()

    def _watch_processes(self) -> None:
        """Count as exited a forked child whose process was gone at two looks in a row (its notice was lost)."""
        for child in list(self.children.values()):
            if child.address is None or not child.forked:
                continue
            if _running(child.pid):
                child.seen_gone = False
            elif not child.seen_gone:
                child.seen_gone = True  # its notice may be on its way
            else:
                self.log.warning("{}: {} #{}: its process {} is gone and no exit notice came; "
                                 "counting it as exited", self.key, child.spec.key, child.incarnation, child.pid)
                self._gone(child)

    @run_once
    def receiveMsg_PeerMoved(self, msg: PeerMoved, sender: ActorAddress) -> None:
        super().receiveMsg_PeerMoved(msg, sender)
        # Our own peer moved (e.g. tws restarted under the root): pass it on to the children
        # that talk to it.
        forwarded = self.make(PeerMoved, msg, name=msg.name, address=msg.address)
        for child in self.children.values():
            if child.address is not None and msg.name in child.spec.peers and msg.name not in self.children:
                self.tell(child.address, forwarded)

    @run_once
    def receiveMsg_RestartActor(self, msg: RestartActor, sender: ActorAddress) -> None:
        if self.restart_child(msg.key):
            self.tell(sender, self.make(AdminReply, msg, text=f"{self.key}: restarting {msg.key}"))
        else:
            self.tell(sender, self.make(AdminError, msg, code=AdminErrorCode.UNKNOWN_TARGET,
                                        text=f"{self.key} supervises no {msg.key!r}", command="RestartActor"))

    def receiveMsg_GetChildren(self, msg: GetChildren, sender: ActorAddress) -> None:
        self.tell(sender, self.make(ChildrenSnapshot, msg, key=self.key, children=self.child_statuses()))

    # ------------------------------------------------------------ status

    def child_statuses(self) -> tuple[ChildStatus, ...]:
        """Return every child's status, in start order."""
        now = self.now_ns()
        return tuple(
            ChildStatus(
                supervisor=self.key, key=key, actor_class=c.spec.actor_class,
                restart=c.spec.restart.value, incarnation=c.incarnation,
                restarts=c.history.count(self.budget, now), max_restarts=self.budget.max_restarts,
                ready=c.ready, running=c.address is not None, quarantined=c.quarantined,
                address=c.address, last_error=c.last_error, pid=c.pid if c.address is not None else 0,
            )
            for key, c in self.children.items()
        )

    def child_address(self, key: str) -> ActorAddress | None:
        """Return the current address of the child `key`, or None when it is not running."""
        child = self.children.get(key)
        return child.address if child is not None else None

    def quarantined(self) -> tuple[str, ...]:
        """Return the keys of the children this supervisor gave up on."""
        return tuple(key for key, c in self.children.items() if c.quarantined)

    def saved_state(self) -> SupervisorState:
        """Return this supervisor's own snapshot: what a restarted incarnation resumes from."""
        return SupervisorState(children=tuple(_saved(key, c) for key, c in self.children.items()))

    # ------------------------------------------------------------ internals

    def _child_at(self, address: ActorAddress, key: str = "") -> _Child | None:
        """Return the running child at `address` (and with `key`, when the message names it)."""
        for child in self.children.values():
            if child.address is not None and child.address == address and key in ("", child.spec.key):
                return child
        return None

    def _resolve(self, name: str) -> ActorAddress | None:
        if name == self.key:
            return self.myAddress
        child = self.children.get(name)
        if child is not None:
            return child.address if child.ready else None
        return self.peers.get(name)

    def _start_next(self) -> None:
        while self._starting is None and self._queue and not (self.stopping_all or self.exiting):
            child = self.children.get(self._queue.pop(0))
            if child is None or child.quarantined or child.address is not None:
                continue
            self._starting = child.spec.key
            if not self._spawn(child):
                self._starting = None
        if self._starting is None and not self._queue and not self._all_started:
            self._all_started = True
            self.on_all_started()

    def _spawn(self, child: _Child) -> bool:
        """Create and configure `child`; return False if it could not be created within its budget."""
        while True:
            try:
                address = self.create_child(child.spec, child.incarnation + 1)
            except Exception as exc:  # an import error or a bad class path: count it as a crash
                child.last_error = f"{type(exc).__name__}: {exc}"
                self.log.error("{}: cannot create {} ({}): {}", self.key, child.spec.key,
                               child.spec.actor_class, child.last_error)
                verdict, child.history = decide_exit(child.spec.restart, ExitReason.UNEXPECTED,
                                                     child.history, self.budget, self.now_ns())
                if verdict is Verdict.RESTART:
                    continue
                if verdict is Verdict.GIVE_UP:
                    child.quarantined = True
                    self.on_gave_up(child.spec.key)
                return False
            child.incarnation += 1
            child.address, child.ready, child.stopping = address, False, None
            child.restart_after = False
            peers = tuple(Peer(name=name, address=found) for name in child.spec.peers
                          if (found := self._resolve(name)) is not None)
            self.tell(address, self.make(
                ConfigureActor, self.start_cause, key=child.spec.key, incarnation=child.incarnation,
                config=child.spec.config, state=child.state, peers=peers, reply_to=self.myAddress,
            ))
            self.log.info("{}: started {} #{}", self.key, child.spec.key, child.incarnation)
            return True

    def _exited(self, child: _Child, reason: ExitReason) -> None:
        key = child.spec.key
        child.address, child.ready, child.stopping, child.pid = None, False, None, 0
        child.forked, child.failed, child.seen_gone = False, False, False
        self.on_child_exited(key, reason)
        verdict, child.history = decide_exit(child.spec.restart, reason, child.history,
                                             self.budget, self.now_ns())
        self.log.info("{}: {} #{} exited ({}): {}", self.key, key, child.incarnation,
                      reason.value, verdict.value)
        if verdict is Verdict.FORGET:
            if child.restart_after and not child.remove and not (self.stopping_all or self.exiting):
                self._spawn(child)
            elif child.remove or child.dynamic:
                del self.children[key]
                self.on_child_removed(key)
        elif verdict is Verdict.RESTART:
            if self._spawn(child):
                self.publish(self.make(ActorRestarted, None, key=key, incarnation=child.incarnation,
                                       restarts=child.history.count(self.budget, self.now_ns())))
        else:
            child.quarantined = True
            self.on_gave_up(key)
        if self._starting == key and child.address is None:
            self._starting = None
            self._start_next()
        self._snapshot_upward(key)

    def _snapshot_upward(self, key: str) -> None:
        """Tell our own supervisor (if any) what child `key` looks like now (or that it is gone)."""
        if self.parent is None or self.exiting:
            return
        child = self.children.get(key)
        change = SubtreeChange(key=key, saved=None if child is None else _saved(key, child))
        self.tell(self.parent, self.make(Snapshot, None, key=self.key, incarnation=self.incarnation,
                                         state=change))

    def tell_child(self, key: str, msg: object) -> bool:
        """Send `msg` to the running child `key`; return False when it is not running."""
        address = self.child_address(key)
        if address is None:
            return False
        self.tell(address, msg)
        return True


def _saved(key: str, child: _Child) -> SavedChild:
    return SavedChild(key=key, incarnation=child.incarnation, state=child.state,
                      quarantined=child.quarantined, address=child.address,
                      spec=child.spec if child.dynamic else None)
