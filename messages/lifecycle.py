"""Supervision and bus protocol: configure/restore, snapshots, failure reports, status, subscriptions."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from messages.base import Message

if TYPE_CHECKING:
    from thespian.actors import ActorAddress


@dataclass(frozen=True, slots=True, kw_only=True)
class Peer:
    """A named actor another actor talks to (e.g. "bus", "risk", "journal"); a value, not a message."""

    name: str
    address: ActorAddress


@dataclass(frozen=True, slots=True, kw_only=True)
class ConfigureActor(Message):
    """Set up a freshly (re)started actor: the first message its supervisor sends it.

    `incarnation` counts starts of this `key` (1 = first). `config` is the actor's configuration
    and `state` the last Snapshot's state to resume from (None = fresh); both are opaque frozen,
    picklable values the actor kind defines. `reply_to` is the supervisor, which receives
    ActorReady, Snapshot and ActorFailed; `peers` are the addresses it may talk to.
    """

    key: str
    incarnation: int = 1
    config: object = None
    state: object = None
    peers: tuple[Peer, ...] = ()
    reply_to: ActorAddress | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ActorReady(Message):
    """An actor finished ConfigureActor; its supervisor may start the next child in order.

    `pid` is the process the actor runs in (0 = not said), for status and operations; `parent_pid`
    its parent process: a supervisor that forked it watches that process (its exit notice can be
    lost, and a port can be reused by another actor).
    """

    key: str
    incarnation: int = 1
    pid: int = 0
    parent_pid: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class Snapshot(Message):
    """An actor's state after a change, kept by its supervisor to hand back on restart."""

    key: str
    incarnation: int = 1
    state: object = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ActorFailed(Message):
    """A handler raised: the actor reports it once, handles nothing more and exits; its supervisor decides.

    `message_type` and `message_id` name the message being handled; `error` is the exception's
    one-line summary and `traceback` the full text.
    """

    key: str
    incarnation: int = 0
    actor_class: str = ""
    message_type: str
    message_id: str = ""
    error: str = ""
    traceback: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class ActorRestarted(Message):
    """A supervisor re-created a child after it exited; `restarts` counts those in the current window."""

    key: str
    incarnation: int
    restarts: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class ActorQuarantined(Message):
    """A child used up its restart budget and is not restarted again (a symbol stops new entries)."""

    key: str
    restarts: int
    window_s: int
    reason: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class GetActorStatus(Message):
    """Ask one actor how it is."""


@dataclass(frozen=True, slots=True, kw_only=True)
class HistogramData:
    """A latency histogram: `counts[i]` observations at or under `bounds_us[i]`, the last bucket unbounded."""

    name: str
    bounds_us: tuple[int, ...] = ()
    counts: tuple[int, ...] = ()
    count: int = 0
    sum_us: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class ActorStatusSnapshot(Message):
    """The answer to GetActorStatus; `counters` and `histograms` are the actor's monitoring figures."""

    key: str
    actor_class: str = ""
    incarnation: int = 0
    configured: bool = False
    failed: bool = False
    detail: str = ""
    pid: int = 0  # the actor's process (0 = not known)
    counters: tuple[tuple[str, int], ...] = ()
    histograms: tuple[HistogramData, ...] = ()
    gauges: tuple[tuple[str, int], ...] = ()  # values now, e.g. each symbol's quote age in ms


@dataclass(frozen=True, slots=True, kw_only=True)
class Subscribe(Message):
    """Subscribe `reply_to` (default: the sender) to published messages of `type_name` or its subtypes.

    A name, not a class: the bus matches it against `messages.type_names(type(msg))`.
    """

    type_name: str
    reply_to: ActorAddress | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Unsubscribe(Message):
    """Undo one Subscribe."""

    type_name: str
    reply_to: ActorAddress | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Publish(Message):
    """Ask the bus to deliver `message` to its subscribers (the envelope keeps bus commands apart)."""

    message: Message


@dataclass(frozen=True, slots=True, kw_only=True)
class PeerMoved(Message):
    """The peer called `name` was (re)started at `address`: a supervisor tells the actors that talk to it."""

    name: str
    address: ActorAddress


@dataclass(frozen=True, slots=True, kw_only=True)
class DirectChannel(Message):
    """An actor offers a faster carrier for some of the messages sent to it (actors/direct_channel.py).

    `name` is its local datagram socket, `token` a secret that every datagram must carry (never
    shown: only this message carries it), `types` the message type names the channel takes. A
    sender uses the latest offer and falls back to thespian whenever a datagram cannot go.
    """

    name: str
    token: str = field(repr=False)
    types: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class ActorFinished(Message):
    """A child's work is done: its supervisor stops it and does not restart it (a transient's normal end).

    The child sends this to its supervisor and waits for the ActorExitRequest that follows, instead
    of exiting by itself: thespian's ChildActorExited does not say why a child exited.
    """

    key: str
    incarnation: int = 1
    reason: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class ToSymbol(Message):
    """Deliver `message` to the current actor of `symbol` (the symbol supervisor routes the envelope)."""

    symbol: str
    message: Message


@dataclass(frozen=True, slots=True, kw_only=True)
class SymbolActorStarted(Message):
    """The actor of `symbol` was (re)started at `address` (to tws, so quotes go to it directly)."""

    symbol: str
    address: ActorAddress
    incarnation: int = 1


@dataclass(frozen=True, slots=True, kw_only=True)
class StartSystem(Message):
    """Start the actor tree: the root Supervisor starts its core children in order, then answers ActorReady.

    `config` is the validated core.config.Config. `actor_classes` replaces the class of a core child
    by key, as (key, dotted class path) pairs (e.g. a simulated broker for "tws" in backtests).
    `admin_token`, when not empty, must accompany every admin command that changes state.
    """

    config: object = None
    actor_classes: tuple[tuple[str, str], ...] = ()
    admin_token: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class ChildStatus:
    """One supervised child as its supervisor sees it; a value, not a message.

    `restarts` counts the restarts inside the current budget window; `running` is false for a
    child that is quarantined, stopped or finished; `address` is None when no process is known.
    """

    supervisor: str
    key: str
    actor_class: str = ""
    restart: str = ""
    incarnation: int = 0
    restarts: int = 0
    max_restarts: int = 0
    ready: bool = False
    running: bool = False
    quarantined: bool = False
    address: ActorAddress | None = None
    last_error: str = ""
    pid: int = 0  # the process of the running incarnation, as it said in ActorReady (0 = not known)


@dataclass(frozen=True, slots=True, kw_only=True)
class GetChildren(Message):
    """Ask a supervisor about each of its children."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ChildrenSnapshot(Message):
    """The answer to GetChildren: the supervisor `key` and its children in start order."""

    key: str
    children: tuple[ChildStatus, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class StandBy(Message):
    """Wait as a spare group actor until a ConfigureActor makes it a group; answer StandingBy.

    The OrderGroupSupervisor keeps a pool of spares so a new group needs no new process.

    `supervisor_pid` is the process that created the spare: the spare exits with it (0 = no check).
    """

    supervisor_pid: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class StandingBy(Message):
    """A spare group actor is up in process `pid` and waits for its ConfigureActor."""

    pid: int
