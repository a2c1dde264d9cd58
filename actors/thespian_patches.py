"""Fixes to thespian 4.0.1's TCP transport, applied on import of the `actors` package (pinned version).

Every turn of thespian's TCP event loop builds a new `selectors.DefaultSelector()` (an epoll on
Linux: one epoll_create, one epoll_ctl per socket, a close) and registers every socket the
process holds, idle ones included (thespian keeps a socket to each peer open for 20 minutes);
thespian's own comment says "creates selector on each loop, perhaps this could be optimized".
The connection actor and the supervisors hold a socket per symbol actor, so each turn cost them
~0.25 ms per 100 sockets, on every message. `RoundSelector` does what one turn needs with
`select.poll` (registering is a dict entry, not a system call): ~15 µs for 100 sockets.

The patch replaces the `selectors` name inside `thespian.system.transport.TCPTransport` only,
and only for the thespian version it was written against; `applied()` says whether it is in
force (a test fails when it is not, e.g. after an upgrade).

A second fix: an exiting actor sends each child an ActorExitRequest whose failure callback is
`lambda r, m: self._childInaccessible(each, m)` in a loop, so `each` is the *last* child when the
callback runs. A child that was already gone (our supervisors ask their children to exit first,
in reverse start order) made thespian count another, still running child as exited: the parent
said goodbye while that child still ran, and its own parent moved on to stop the next sibling
(seen as a symbol actor exiting after the order groups did). `ActorManager._childInaccessible`
is replaced by one that takes the child from the failed transmit's target address.
"""

from __future__ import annotations

import errno
import math
import select
import selectors
import types
from importlib import metadata
from typing import Any, Final, NamedTuple

PATCHED_VERSION: Final = "4.0.1"
EVENT_READ: Final = selectors.EVENT_READ
EVENT_WRITE: Final = selectors.EVENT_WRITE
_POLL_READ: Final = select.POLLIN
_POLL_WRITE: Final = select.POLLOUT


class Key(NamedTuple):
    """What thespian reads from a ready selector key: its file descriptor (and events)."""

    fd: int
    events: int


class RoundSelector:
    """A `selectors`-compatible selector for one loop turn: register, select once, close.

    Events are mapped as the stdlib PollSelector maps them (an error or hang-up makes a socket
    both readable and writable, so its owner reads and sees it). A closed descriptor (POLLNVAL)
    raises OSError(EBADF) from `select`, as registering it in an epoll would: thespian then
    looks for the bad watched descriptor and drops it.
    """

    __slots__ = ("_poll", "_keys")

    def __init__(self) -> None:
        self._poll = select.poll()
        self._keys: dict[int, Key] = {}

    def register(self, fileobj: Any, events: int, data: Any = None) -> Key:
        fd = fileobj if isinstance(fileobj, int) else fileobj.fileno()
        if fd < 0:
            raise ValueError(f"invalid file descriptor: {fd}")
        if fd in self._keys:
            raise KeyError(f"{fileobj!r} (FD {fd}) is already registered")
        if not events or events & ~(EVENT_READ | EVENT_WRITE):
            raise ValueError(f"invalid events: {events!r}")
        mask = (_POLL_READ if events & EVENT_READ else 0) | (_POLL_WRITE if events & EVENT_WRITE else 0)
        self._poll.register(fd, mask)
        key = self._keys[fd] = Key(fd, events)
        return key

    def select(self, timeout: float | None = None) -> list[tuple[Key, int]]:
        if timeout is not None:
            timeout = 0 if timeout <= 0 else math.ceil(timeout * 1e3)  # poll() takes milliseconds
        try:
            fd_events = self._poll.poll(timeout)
        except InterruptedError:
            return []
        ready = []
        for fd, event in fd_events:
            if event & select.POLLNVAL:
                raise OSError(errno.EBADF, f"file descriptor {fd} is not open")
            events = 0
            if event & ~_POLL_READ:
                events |= EVENT_WRITE
            if event & ~_POLL_WRITE:
                events |= EVENT_READ
            key = self._keys.get(fd)
            if key is not None:
                ready.append((key, events & key.events))
        return ready

    def close(self) -> None:
        self._keys.clear()


def _selectors_shim() -> types.SimpleNamespace:
    return types.SimpleNamespace(DefaultSelector=RoundSelector, EVENT_READ=EVENT_READ,
                                 EVENT_WRITE=EVENT_WRITE)


def _child_inaccessible(self: Any, child_address: Any, exit_request_intent: Any) -> bool:
    """Count as exited the child the failed ActorExitRequest was sent to (not the loop's last)."""
    target = getattr(exit_request_intent, "targetAddr", None)
    return self._handleChildExited(child_address if target is None else target)


def apply() -> bool:
    """Patch thespian if it is the pinned version; return whether the patches are in force."""
    try:
        version = metadata.version("thespian")
    except metadata.PackageNotFoundError:
        return False
    if version != PATCHED_VERSION:
        return False
    from thespian.system.transport import TCPTransport

    from thespian.system.actorManager import ActorManager

    if not isinstance(TCPTransport.selectors, types.SimpleNamespace):
        TCPTransport.selectors = _selectors_shim()  # type: ignore[assignment]
    ActorManager._childInaccessible = _child_inaccessible  # type: ignore[method-assign]
    return applied()


def applied() -> bool:
    """Return True if thespian's TCP transport uses RoundSelector and exits count the right child."""
    from thespian.system.actorManager import ActorManager
    from thespian.system.transport import TCPTransport

    return (getattr(TCPTransport.selectors, "DefaultSelector", None) is RoundSelector
            and ActorManager._childInaccessible is _child_inaccessible)
