"""Supervision and bus protocol: configure/restore, snapshots, failure reports, status, subscriptions."""

from __future__ import annotations

from dataclasses import dataclass
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
    """An actor finished ConfigureActor; its supervisor may start the next child in order."""

    key: str
    incarnation: int = 1


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
class ActorStatusSnapshot(Message):
    """The answer to GetActorStatus."""

    key: str
    actor_class: str = ""
    incarnation: int = 0
    configured: bool = False
    failed: bool = False
    detail: str = ""


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
