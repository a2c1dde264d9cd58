"""The actor shell: ShellActor (key, incarnation, clock, supervisor, peers) and the run-once handler guard."""

from __future__ import annotations

import functools
import os
import signal
import traceback
from collections import deque
from collections.abc import Callable
from typing import Any, ClassVar, Final, TypeVar

from loguru import logger
from thespian.actors import (
    ActorAddress,
    ActorExitRequest,
    ActorSystemMessage,
    ActorTypeDispatcher,
    PoisonMessage,
)

from actors import logs
from actors.clock import Clock, VirtualTimers, current_clock, current_timers
from actors.metrics import Metrics
from actors.processes import background_nice, lower_priority, set_parent_death_signal, set_time_slice
from messages import (
    ActorFailed,
    ActorReady,
    ActorStatusSnapshot,
    ConfigureActor,
    GetActorStatus,
    Message,
    PeerMoved,
    Publish,
    SetLogLevel,
)

BUS: Final = "bus"  # the peer name publish() sends to
_FAILED_IDS_KEPT: Final = 64
ORDER_PATH_SLICE_NS: Final = 300_000  # 0.3 ms (Linux clamps a slice to 0.1-100 ms)

_A = TypeVar("_A", bound="ShellActor")
_M = TypeVar("_M")
_Handler = Callable[[_A, _M, ActorAddress], Any]
_M2 = TypeVar("_M2", bound=Message)


def run_once(handler: _Handler[_A, _M]) -> _Handler[_A, _M]:
    """Guard a `receiveMsg_*` handler: it runs at most once per message and a failure escalates.

    An exception is logged and reported to the supervisor as ActorFailed, the actor asks itself
    to exit (so its supervisor restarts a fresh incarnation) and the handler returns normally,
    so thespian does not retry it. From then on the instance handles nothing more.
    """

    @functools.wraps(handler)
    def guarded(self: _A, msg: _M, sender: ActorAddress) -> Any:
        msg_id = getattr(msg, "msg_id", None)
        if msg_id is not None and msg_id in self._failed_ids:
            # thespian re-delivers a message whose handler raised (a deepcopy: same msg_id), e.g.
            # when reporting the failure itself raised. The first attempt may already have sent
            # an order, so the body never runs again.
            return None
        if self.failed:
            # Like a crashed Erlang process: an instance whose handler raised may hold half-made
            # state, so it sends nothing more while its exit request is on its way.
            self.log.warning("{} dropped {} {}: the actor failed and is exiting",
                             self.key, type(msg).__name__, msg_id or "")
            return None
        try:
            with logger.contextualize(corr=getattr(msg, "corr_id", "") or msg_id or "-"):
                return handler(self, msg, sender)
        except Exception as exc:
            self.failed = True
            if msg_id is not None:
                self._failed_ids.append(msg_id)
            text = traceback.format_exc()
            try:
                self.log.error("{} failed handling {} {}: {}\n{}",
                               self.key, type(msg).__name__, msg_id or "", _summary(exc), text)
                self.report_failure(msg, sender, exc, text)
            finally:
                self.send(self.myAddress, ActorExitRequest())
            return None

    return guarded


def _summary(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


class ShellActor(ActorTypeDispatcher):
    """Base of every actor: identity, injected clock, supervisor and peers, and guarded set-up.

    Until ConfigureActor arrives, `key` is the class name and failures go to the failing
    message's sender. Subclasses extend `on_configure`, decorate handlers with `run_once`, stamp
    times with `now_ns()` (never the wall clock) and talk through `tell`, `tell_peer` and `publish`.
    """

    # An actor that carries every order (the connection, the risk gate): its process asks for a
    # short time slice, so that, woken, it preempts whatever runs (processes.set_time_slice).
    ON_ORDER_PATH: ClassVar[bool] = False
    # One of the many processes of the same kind (symbols, order groups, and their supervisors, whose
    # children inherit their nice value): runs at system.background_nice. The singletons (bus,
    # strategy controller, signal source, root supervisor) keep the launcher's: they carry state
    # changes and signals to everyone, and the root's children (the connection, the risk gate)
    # inherit its nice value and could not lower it back.
    BACKGROUND: ClassVar[bool] = False

    def __init__(self) -> None:
        super().__init__()
        self.clock: Clock = current_clock()
        self.timers: VirtualTimers | None = current_timers()  # a backtest's timers, on its virtual clock
        self.key: str = type(self).__name__
        self.incarnation: int = 0
        self.parent: ActorAddress | None = None
        self.peers: dict[str, ActorAddress] = {}
        self.config: object = None
        self.configured: bool = False
        self.failed: bool = False
        self.log = logger.bind(actor=self.key)
        self.metrics = Metrics()
        self._failed_ids: deque[str] = deque(maxlen=_FAILED_IDS_KEPT)
        if logs.runs_alone():
            # Like an OTP link: an actor dies with its parent's process, from its first moment in
            # its own process (before any ConfigureActor). A supervisor killed with SIGKILL would
            # otherwise orphan its children (thespian-notes §2.7), which keep trading next to the
            # replacements its successor starts from their snapshots; and a child still starting
            # or exiting when its supervisor has gone does not linger.
            set_parent_death_signal(signal.SIGKILL)
            if self.ON_ORDER_PATH:
                set_time_slice(ORDER_PATH_SLICE_NS)
            elif self.BACKGROUND:
                lower_priority(background_nice())

    # ------------------------------------------------------------ set-up

    @run_once
    def receiveMsg_ConfigureActor(self, msg: ConfigureActor, sender: ActorAddress) -> None:
        self.adopt(msg, sender)
        self.on_configure(msg)
        self.configured = True
        self.tell(self.parent, self.make(ActorReady, msg, key=self.key, incarnation=self.incarnation,
                                         pid=os.getpid(), parent_pid=os.getppid()))

    def adopt(self, msg: ConfigureActor, sender: ActorAddress) -> None:
        """Take identity, supervisor, peers and config from `msg` and set up this process's log files."""
        self.key = msg.key
        self.incarnation = msg.incarnation
        self.parent = msg.reply_to if msg.reply_to is not None else sender
        self.peers = {peer.name: peer.address for peer in msg.peers}
        self.config = msg.config
        self.log = logger.bind(actor=f"{self.key}#{self.incarnation}")
        configure_logs(msg.config)

    def on_configure(self, msg: ConfigureActor) -> None:
        """Apply `msg.config` and resume from `msg.state` (None = fresh); raise to fail the start."""

    @run_once
    def receiveMsg_PeerMoved(self, msg: PeerMoved, sender: ActorAddress) -> None:
        # A restarted peer lives at a new address; messages to the old one become dead letters.
        self.peers[msg.name] = msg.address
        self.log.debug("{}: peer {} moved to {}", self.key, msg.name, msg.address)

    def receiveMsg_GetActorStatus(self, msg: GetActorStatus, sender: ActorAddress) -> None:
        # Not run_once: a failed actor still says so while it exits.
        counters, histograms = self.metrics.snapshot()
        gauges = tuple(sorted(self.gauges().items()))
        self.tell(sender, self.make(
            ActorStatusSnapshot, msg, key=self.key, actor_class=_class_path(type(self)),
            incarnation=self.incarnation, configured=self.configured, failed=self.failed,
            detail=self.status_detail(), pid=os.getpid(), counters=counters, histograms=histograms,
            gauges=gauges,
        ))

    def status_detail(self) -> str:
        """Return a one-line summary of this actor's state for GetActorStatus ("" = nothing to say)."""
        return ""

    def gauges(self) -> dict[str, int]:
        """Return this actor's figures of the moment for monitoring (name -> integer value)."""
        return {}

    def receiveMsg_SetLogLevel(self, msg: SetLogLevel, sender: ActorAddress) -> None:
        # Not run_once: changing the level must not take the actor down; the process's sinks change.
        if msg.key in ("", self.key):
            count = logs.set_level(msg.level.value)
            self.log.log(msg.level.value if msg.level.value != "TRACE" else "INFO",
                         "{}: log level {} ({} sink(s))", self.key, msg.level.value, count)

    def receiveUnrecognizedMessage(self, msg: object, sender: ActorAddress) -> None:
        if isinstance(msg, PoisonMessage):
            self.log.warning("{}: a message it sent could not be delivered or handled: {}\n{}",
                             self.key, type(msg.poisonMessage).__name__, msg.details or "")
        elif not isinstance(msg, ActorSystemMessage):
            self.log.warning("{} has no handler for {}", self.key, type(msg).__name__)

    # ------------------------------------------------------------ helpers

    def now_ns(self) -> int:
        """Return the injected clock's time."""
        return self.clock.now_ns()

    def wakeupAfter(self, timePeriod: Any, payload: Any = None) -> None:
        """Ask for a WakeupMessage after `timePeriod`: thespian's timer live, the virtual clock's in a backtest."""
        if self.timers is not None:
            self.timers.add(self.myAddress, timePeriod, payload)
            return
        super().wakeupAfter(timePeriod, payload)

    def make(self, cls: type[_M2], cause: Message | None, /, **fields: Any) -> _M2:
        """Return a `cls` message caused by `cause`, stamped with this actor's clock."""
        return cls.caused_by(cause, ts_ns=self.now_ns(), **fields)

    def tell(self, to: ActorAddress, msg: object) -> None:
        """Send `msg` to `to`."""
        self.send(to, msg)

    def peer(self, name: str) -> ActorAddress:
        """Return the address of the peer called `name`; raise KeyError if it was not configured."""
        try:
            return self.peers[name]
        except KeyError:
            raise KeyError(f"{self.key}: no peer {name!r} configured (have {sorted(self.peers)})") from None

    def tell_peer(self, name: str, msg: object) -> None:
        """Send `msg` to the peer called `name`."""
        self.send(self.peer(name), msg)

    def publish(self, msg: Message) -> None:
        """Hand `msg` to the bus for its subscribers; without a configured bus it goes nowhere."""
        bus = self.peers.get(BUS)
        if bus is not None:
            self.send(bus, Publish(message=msg, ts_ns=msg.ts_ns))

    def report_failure(self, msg: object, sender: ActorAddress, error: Exception, text: str) -> None:
        """Send ActorFailed about `msg` to the supervisor, or to the sender before configuration."""
        report = self.make(
            ActorFailed,
            msg if isinstance(msg, Message) else None,
            key=self.key,
            incarnation=self.incarnation,
            actor_class=_class_path(type(self)),
            message_type=type(msg).__name__,
            message_id=getattr(msg, "msg_id", ""),
            error=_summary(error),
            traceback=text,
        )
        self.send(self.parent if self.parent is not None else sender, report)


def configure_logs(config: object) -> None:
    """Give this process its log files when `config` is a core.config.Config (else the launcher's env)."""
    system = getattr(config, "system", None)
    level = getattr(system, "log_level", None)
    logs.configure_process(getattr(system, "log_dir", None), getattr(level, "value", level))


def _class_path(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"
