"""The direct channel: chosen messages to a busy actor as local datagrams, read through ThespianWatch.

Why: on multiprocTCPBase a message reaches its target only after several turns of both event
loops (connect or reuse, read, acknowledge), and the target's turns are slow while it works. The
connection actor reads the broker socket and sends every quote; the approved legs that risk sent it
waited there 17-59 ms (median, bench_runtime, 100 symbols quoting) while a datagram on a watched
socket is read on the next turn. The connection still takes the very same message objects through
the very same handlers: only the carrier differs, and thespian stays the fallback.

The carrier is an AF_UNIX datagram socket in Linux's abstract namespace (no file to clean up after
a kill -9; the name is freed with the process):

* **Reliable.** A local datagram is never dropped: when the receiver's queue is full the
  non-blocking `sendto` fails (EAGAIN), as it does when the receiver is gone (ECONNREFUSED) or the
  message too large. `send` then returns False and the sender uses thespian for that message.
* **Ordered** per sender socket. Only whole, self-contained messages (one SubmitOrders carries all
  legs of a group) use it, so a fallback message overtaken by a later datagram changes nothing.
* **Only from us.** The kernel attaches the sender's credentials to every datagram (SO_PASSCRED);
  the inbox drops any datagram from another user id, and any without the secret token that only
  the thespian message offering the channel carried, before unpickling anything. Only the
  message types the inbox was opened for are handed on.

Wire format: token (32 ASCII hex characters), then the pickle of (message, sender address).
"""

from __future__ import annotations

import errno
import os
import pickle
import secrets
import socket
import struct
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final

from thespian.actors import ActorAddress

from actors import logs
from messages import DirectChannel

_TOKEN_LEN: Final = 32
_MAX_DATAGRAM: Final = 1 << 20
_DRAIN_LIMIT: Final = 256  # datagrams per wake-up; the watch fires again for more
_UCRED: Final = struct.Struct("3i")  # pid, uid, gid
_PREFIX: Final = "ibactors-direct-"

SUPPORTED: Final = sys.platform.startswith("linux") and hasattr(socket, "SO_PASSCRED")


class DirectRefused(ValueError):
    """A datagram that is not for this inbox (foreign user, wrong token, unexpected type, garbage)."""


@dataclass(frozen=True, slots=True)
class Delivery:
    """One message taken from the inbox, with the address of the actor that sent it."""

    message: object
    sender: ActorAddress


class Inbox:
    """The receiving end: a bound abstract socket, watched by its actor."""

    def __init__(self, accepts: Iterable[type]) -> None:
        if not SUPPORTED:
            raise OSError("direct channels need Linux (abstract AF_UNIX sockets with SO_PASSCRED)")
        self.accepts = tuple(accepts)
        self.token = secrets.token_hex(_TOKEN_LEN // 2)
        self.name = f"{_PREFIX}{os.getpid()}-{secrets.token_hex(8)}"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
            self.sock.bind("\0" + self.name)
            self.sock.setblocking(False)
        except OSError:
            self.sock.close()
            raise
        self.refused = 0

    def fileno(self) -> int:
        """Return the socket's descriptor (for ThespianWatch)."""
        return self.sock.fileno()

    def channel(self) -> DirectChannel:
        """Return what a sender needs to reach this inbox (sent to it as a thespian message)."""
        return DirectChannel(name=self.name, token=self.token,
                             types=tuple(cls.__name__ for cls in self.accepts))

    def drain(self) -> tuple[list[Delivery], list[str]]:
        """Return the deliveries waiting now (oldest first) and why each refused datagram was refused."""
        out: list[Delivery] = []
        problems: list[str] = []
        for _ in range(_DRAIN_LIMIT):
            try:
                data, ancillary, _flags, _addr = self.sock.recvmsg(_MAX_DATAGRAM, socket.CMSG_SPACE(_UCRED.size))
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                problems.append(f"read failed: {exc}")
                break
            try:
                out.append(self._parse(data, ancillary))
            except DirectRefused as exc:
                self.refused += 1
                problems.append(str(exc))
        return out, problems

    def _parse(self, data: bytes, ancillary: list[tuple[int, int, bytes]]) -> Delivery:
        uid = _sender_uid(ancillary)
        if uid != os.getuid():
            raise DirectRefused(f"datagram from user id {uid} refused (only {os.getuid()} may send)")
        token = data[:_TOKEN_LEN]
        if not secrets.compare_digest(token, self.token.encode("ascii")):
            raise DirectRefused("datagram without this inbox's token refused")
        try:
            message, sender = pickle.loads(data[_TOKEN_LEN:])
        except Exception as exc:  # noqa: BLE001 - a broken datagram is reported, never raised
            raise DirectRefused(f"undecodable datagram refused: {type(exc).__name__}: {exc}") from None
        if not isinstance(message, self.accepts) or not isinstance(sender, ActorAddress):
            raise DirectRefused(f"{type(message).__name__} from {type(sender).__name__} refused: "
                                f"this inbox takes {', '.join(c.__name__ for c in self.accepts)}")
        return Delivery(message=message, sender=sender)

    def close(self) -> None:
        """Close the socket (idempotent); its name is free again."""
        self.sock.close()


def _sender_uid(ancillary: list[tuple[int, int, bytes]]) -> int | None:
    for level, kind, payload in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS and len(payload) >= _UCRED.size:
            return int(_UCRED.unpack_from(payload)[1])
    return None


class Outbox:
    """The sending end: one unbound socket per sending actor; every failure means "use thespian"."""

    def __init__(self) -> None:
        self.sock: socket.socket | None = None
        self.sent = 0
        self.fell_back = 0
        self.gone = False  # the last failure said no inbox lives there any more

    def send(self, channel: DirectChannel | None, message: Any, sender: ActorAddress) -> bool:
        """Put `message` into `channel`'s inbox now; return False if it did not go (send it otherwise)."""
        if channel is None or not SUPPORTED or type(message).__name__ not in channel.types:
            return False
        try:
            data = channel.token.encode("ascii") + pickle.dumps((message, sender), protocol=pickle.HIGHEST_PROTOCOL)
            if self.sock is None:
                self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                self.sock.setblocking(False)
            self.sock.sendto(data, "\0" + channel.name)
        except (OSError, pickle.PicklingError, TypeError, AttributeError) as exc:
            self.fell_back += 1
            self.gone = isinstance(exc, OSError) and exc.errno in (errno.ECONNREFUSED, errno.ENOENT)
            return False
        self.sent += 1
        self.gone = False
        return True

    def close(self) -> None:
        """Close the socket (idempotent)."""
        if self.sock is not None:
            self.sock.close()
            self.sock = None


class Receiver:
    """A receiving actor's end: its inbox (when the actor has a process of its own), the offer, the intake.

    The actor returns `fileno()` in its ThespianWatch, calls `take` when the watch says the inbox is
    ready, and `offer` to whoever should send by datagram (again after that one restarts).
    """

    def __init__(self, accepts: Iterable[type]) -> None:
        self.accepts = tuple(accepts)
        self.inbox: Inbox | None = None

    def open(self, actor: Any) -> None:
        """Open the inbox if this actor runs in its own process on Linux (in-process: messages only)."""
        if self.inbox is not None or not SUPPORTED or not logs.runs_alone():
            return
        try:
            self.inbox = Inbox(self.accepts)
        except OSError as exc:
            actor.log.warning("{}: no direct channel ({}); {} come as messages", actor.key, exc,
                              ", ".join(c.__name__ for c in self.accepts))

    def fileno(self) -> int | None:
        """Return the descriptor to watch (None: no inbox)."""
        return self.inbox.fileno() if self.inbox is not None else None

    def offer(self, actor: Any, to: ActorAddress | None, cause: Any) -> None:
        """Tell `to` (if known) where to send the accepted types, in a DirectChannel from `actor`."""
        if self.inbox is not None and to is not None:
            channel = self.inbox.channel()
            actor.tell(to, actor.make(DirectChannel, cause, name=channel.name, token=channel.token,
                                      types=channel.types))

    def take(self, actor: Any, ready: Iterable[int]) -> None:
        """Hand every waiting datagram to `actor`'s own handlers, as if it had come as a message."""
        if self.inbox is None or self.inbox.fileno() not in ready:
            return
        deliveries, problems = self.inbox.drain()
        for problem in problems:
            actor.metrics.inc("direct_refused")
            actor.log.warning("{}: direct channel: {}", actor.key, problem)
        for delivery in deliveries:
            actor.metrics.inc("direct_in")
            actor.receiveMessage(delivery.message, delivery.sender)

    def close(self) -> None:
        """Close the inbox (idempotent)."""
        if self.inbox is not None:
            self.inbox.close()
            self.inbox = None


class Link:
    """A sending actor's end of one receiver's channel: the latest offer, kept while its offerer is known."""

    def __init__(self, type_name: str) -> None:
        self.type_name = type_name
        self.channel: DirectChannel | None = None
        self.offered_by: ActorAddress | None = None
        self.out = Outbox()

    def offer(self, msg: DirectChannel, by: ActorAddress | None = None) -> bool:
        """Take `msg` if it carries our type (the latest offer wins); return whether it did."""
        if self.type_name not in msg.types:
            return False
        self.channel, self.offered_by = msg, by
        return True

    def send(self, message: Any, sender: ActorAddress, to: ActorAddress | None = None) -> bool:
        """Send by datagram; False: send it as a message. With `to`, only an offer `to` made is used.

        An inbox found gone is forgotten: its restarted owner offers a new one.
        """
        channel = self.channel if to is None or self.offered_by == to else None
        if self.out.send(channel, message, sender):
            return True
        if self.channel is not None and self.out.gone:
            self.channel = None
        return False
