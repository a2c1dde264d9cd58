"""Fixes to thespian 4.0.1's transports, applied on import of the `actors` package (pinned version).

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

A third fix, for security: thespian binds every listener (the admin's, each actor process's, an
attached CLI's; TCP and UDP bases alike) to all interfaces, because an "external" address has
`IPActorAddress.bindname = ('', port)` whatever address it advertises, and the wire format is
unauthenticated pickle (anyone who reaches a port can run code). Patched, a listener binds the
address it advertises, and the advertised address is THESPIAN_BASE_IPADDR when set, else
127.0.0.1 (thespian would probe a route to 8.8.8.8 and advertise the host's external address).
So every process listens on loopback unless the operator configured an address: the launcher
sets THESPIAN_BASE_IPADDR from `system.bind_address` before the actor system forks, and
`set_bind_host` does the same for a driver of its own. A routable address (multi-node
conventions) binds that address only; "0.0.0.0" binds every interface, as asked. Processes
inherit it by fork (thespian's default start method) and by the environment.

A fourth fix: when a parent handles a child's exit, `MultiProcReplicator._childExited` drops
(and reaps) every child process that has died, silently. A child killed just then never got its
ChildActorExited: `childDied`, run on SIGCHLD, no longer found it (measured: 23 of 160 exits lost
when 16 children die together). Its supervisor listed it as running for good, and a later actor
on its reused TCP port passed for it. `_child_exited` announces each dead child it drops, as
`childDied` does, except the one whose exit is being handled.

Convention timers (multi-node, set only where a convention is configured): thespian declares a
silent convention member dead after 3 missed re-registrations of 7 min 22 s each (~22 minutes),
and a member that is not admitted yet retries only every 3 min 22 s. `set_convention_timers`
sets the module constants of `thespian.system.admin.convention` (read by name each time a
timer starts, so the admin forked afterwards keeps them) to a heartbeat of seconds.

On another thespian version `apply()` raises ThespianPatchError rather than leave the listeners
on every interface: check the new version's IPBase.py and the transports' bind calls, then move
PATCHED_VERSION. It also raises when the pinned source no longer has the shape replaced here.
"""

from __future__ import annotations

import errno
import math
import os
import select
import selectors
import socket
import types
from datetime import timedelta
from importlib import metadata
from typing import Any, Final, NamedTuple

PATCHED_VERSION: Final = "4.0.1"
BIND_ENV: Final = "THESPIAN_BASE_IPADDR"   # thespian's own knob for the advertised address
LOOPBACK: Final = "127.0.0.1"
LOOPBACK6: Final = "::1"
# What the bind fix replaces, as it reads in the pinned source (checked before patching).
UNPATCHED_BIND: Final = "self.bindname = ('', sa[1]) if external else sa"
UNPATCHED_BASE: Final = "baseaddr = os.getenv('THESPIAN_BASE_IPADDR', None)"
UNPATCHED_PROBE: Final = "else ('8.8.8.8', 80)"
UNPATCHED_CHILD_EXITED: Final = "self._child_procs = list(filter(self._checkChildLiveness, children))"
TRANSPORT_BINDS: Final = {"TCPTransport": 2, "UDPTransport": 2}  # `.bind(*….addressDetails.bindArgs)` calls


class ThespianPatchError(RuntimeError):
    """The installed thespian is not the one these patches were checked against (listeners would be exposed)."""
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


def _child_exited(self: Any, child_address: Any) -> None:
    """Forget the dead child processes, and announce each one other than `child_address` (now handled).

    Thespian's own version drops (and reaps) every dead child silently: a child killed while its
    parent handled another child's exit never got its ChildActorExited, as `childDied` (on
    SIGCHLD) no longer finds it. Its supervisor kept it listed as running for good.
    """
    from thespian.actors import ChildActorExited
    from thespian.system.addressManager import CannotPickleAddress
    from thespian.system.transport import TransmitIntent
    from thespian.system.utilis import partition

    children = getattr(self, "_child_procs", [])
    self._child_procs, dead = partition(self._checkChildLiveness, children)
    for each in dead:
        address = getattr(each, "childRealAddr", each.childAddr)
        if address == child_address or each.childAddr == child_address:
            continue
        try:
            self.transport.scheduleTransmit(None, TransmitIntent(self.transport.myAddress,
                                                                 ChildActorExited(address)))
        except CannotPickleAddress:
            pass  # as childDied: a child that never reported its address cannot be named


def _bind_where_advertised(original: Any) -> Any:
    """Wrap IPActorAddress.__init__: advertise loopback unless configured, and bind what is advertised."""

    def __init__(self: Any, af: int, socktype: int, proto: int, baseaddr: Any, port: Any,
                 external: Any = False) -> None:
        if external and baseaddr in (None, "", "0.0.0.0") and not os.getenv(BIND_ENV):
            # thespian would advertise the interface routed to 8.8.8.8 (or the convention leader)
            baseaddr = LOOPBACK6 if af == socket.AF_INET6 else LOOPBACK
        original(self, af, socktype, proto, baseaddr, port, external)
        if external:
            self.bindname = self.sockname  # was ('', port): every interface

    __init__.unpatched = original  # type: ignore[attr-defined]
    return __init__


def _source(module: Any) -> str:
    with open(module.__file__, encoding="utf-8") as f:
        return f.read()


def check_bind_source() -> None:
    """Raise ThespianPatchError unless thespian's address and transport source still read as patched here."""
    from thespian.system.transport import IPBase, TCPTransport, UDPTransport

    missing = [text for text in (UNPATCHED_BIND, UNPATCHED_BASE, UNPATCHED_PROBE, "def bindArgs(self): return self.bindname,")
               if text not in _source(IPBase)]
    for module in (TCPTransport, UDPTransport):
        found = _source(module).count(".addressDetails.bindArgs)")
        if found != TRANSPORT_BINDS[module.__name__.rsplit(".", 1)[1]]:
            missing.append(f"{module.__name__}: {found} bind(*….bindArgs) calls")
    if missing:
        raise ThespianPatchError(f"thespian {PATCHED_VERSION}'s listener binding is not as the bind fix expects "
                                 f"({'; '.join(missing)}): its listeners could be on every interface; "
                                 "review actors/thespian_patches.py")


def check_child_exited_source(replicator: Any) -> None:
    """Raise ThespianPatchError unless thespian's `_childExited` is the silent filter `_child_exited` replaces."""
    import inspect

    source = inspect.getsource(replicator._childExited)
    if UNPATCHED_CHILD_EXITED not in source:
        raise ThespianPatchError(f"thespian {PATCHED_VERSION}'s MultiProcReplicator._childExited is not the one "
                                 "the exit-notice fix replaces; review actors/thespian_patches.py")


def set_bind_host(host: str) -> None:
    """Make the actor systems this process starts (and their forks) listen on and advertise `host`.

    "127.0.0.1" (the default when nothing is set) keeps them on loopback; a routable address is
    for multi-node conventions; "0.0.0.0" binds every interface. Call before ActorSystem().
    """
    from thespian.system.transport.IPBase import thisSystem

    if not host or not host.strip():
        raise ValueError("a bind host must be an address such as 127.0.0.1, not empty")
    os.environ[BIND_ENV] = host
    thisSystem.add_local_addr(host)  # thespian reads the variable into its local addresses at import only


def bind_host() -> str:
    """Return the address thespian listeners of this process bind and advertise."""
    return os.environ.get(BIND_ENV) or LOOPBACK


def apply() -> bool:
    """Patch thespian if it is the pinned version (ThespianPatchError otherwise); return whether in force."""
    try:
        version = metadata.version("thespian")
    except metadata.PackageNotFoundError:
        return False
    if version != PATCHED_VERSION:
        raise ThespianPatchError(
            f"thespian {version} is installed, but actors/thespian_patches.py was written for {PATCHED_VERSION} "
            "(setup.cfg pins it): unpatched, every actor process would listen on all interfaces. Install "
            f"thespian=={PATCHED_VERSION}, or check the fixes against the new version and move PATCHED_VERSION.")
    from thespian.system.actorManager import ActorManager
    from thespian.system.transport import TCPTransport
    from thespian.system.transport.IPBase import IPActorAddress

    if not isinstance(TCPTransport.selectors, types.SimpleNamespace):
        TCPTransport.selectors = _selectors_shim()  # type: ignore[assignment]
    ActorManager._childInaccessible = _child_inaccessible  # type: ignore[method-assign]
    from thespian.system.multiprocCommon import MultiProcReplicator

    if MultiProcReplicator._childExited is not _child_exited:
        check_child_exited_source(MultiProcReplicator)
        _child_exited.unpatched = MultiProcReplicator._childExited  # type: ignore[attr-defined]
        MultiProcReplicator._childExited = _child_exited  # type: ignore[method-assign]
    if not hasattr(IPActorAddress.__init__, "unpatched"):
        check_bind_source()
        IPActorAddress.__init__ = _bind_where_advertised(IPActorAddress.__init__)  # type: ignore[method-assign]
    return applied()


def applied() -> bool:
    """Return True if thespian's TCP transport uses RoundSelector, exits count the right child and listeners bind as advertised."""
    from thespian.system.actorManager import ActorManager
    from thespian.system.multiprocCommon import MultiProcReplicator
    from thespian.system.transport import TCPTransport
    from thespian.system.transport.IPBase import IPActorAddress

    return (getattr(TCPTransport.selectors, "DefaultSelector", None) is RoundSelector
            and ActorManager._childInaccessible is _child_inaccessible
            and MultiProcReplicator._childExited is _child_exited
            and hasattr(IPActorAddress.__init__, "unpatched"))


# The convention constants, each read as a global where a timer starts (never copied at import).
CONVENTION_TIMERS: Final = ("CONVENTION_REREGISTRATION_PERIOD", "CONVENTION_RESTART_PERIOD",
                            "CONVENTION_REGISTRATION_MISS_MAX")
UNPATCHED_TIMER_READS: Final = (
    "ExpirationTimer(CONVENTION_REREGISTRATION_PERIOD)",   # re-registration and leader wake-ups
    "ExpirationTimer(CONVENTION_REREGISTRATION_PERIOD *",  # a member's validity: period × misses
    "CONVENTION_RESTART_PERIOD)).view(current_time)",      # an unadmitted member's retry
    ">= \\\n               CONVENTION_REGISTRATION_MISS_MAX:",  # a member giving its leader up
)


def check_convention_source() -> None:
    """Raise ThespianPatchError unless thespian's convention code reads its timer constants as patched here."""
    from thespian.system.admin import convention

    source = _source(convention)
    missing = [text for text in UNPATCHED_TIMER_READS if text not in source]
    missing += [f"{name} = getenvdef(" for name in CONVENTION_TIMERS
                if not any(line.startswith(name) and "getenvdef(" in line for line in source.splitlines())]
    if missing:
        raise ThespianPatchError(f"thespian {PATCHED_VERSION}'s convention timers are not as "
                                 f"set_convention_timers expects ({'; '.join(missing)}): a dead node could "
                                 "go unnoticed for 22 minutes; review actors/thespian_patches.py")


def set_convention_timers(heartbeat: timedelta, missed: int) -> None:
    """Make the conventions of actor systems this process starts run on a `heartbeat` of seconds.

    Members re-register every `heartbeat` (one not admitted yet retries as often); the leader takes a
    member silent for `missed` heartbeats for dead, a member its leader after `missed` failed
    registrations. Call before ActorSystem(): the admin is forked from this process.
    """
    if not timedelta(0) < heartbeat:
        raise ValueError(f"a convention heartbeat must be positive, not {heartbeat}")
    if missed < 1:
        raise ValueError(f"a member must be allowed at least one missed heartbeat, not {missed}")
    version = metadata.version("thespian")
    if version != PATCHED_VERSION:
        raise ThespianPatchError(f"thespian {version} is installed; set_convention_timers was checked against "
                                 f"{PATCHED_VERSION}")
    check_convention_source()
    from thespian.system.admin import convention

    convention.CONVENTION_REREGISTRATION_PERIOD = heartbeat
    convention.CONVENTION_RESTART_PERIOD = heartbeat
    convention.CONVENTION_REGISTRATION_MISS_MAX = missed


def convention_timers() -> tuple[timedelta, timedelta, int]:
    """Return thespian's convention re-registration period, retry period and missed-registration limit."""
    from thespian.system.admin import convention

    return (convention.CONVENTION_REREGISTRATION_PERIOD, convention.CONVENTION_RESTART_PERIOD,
            convention.CONVENTION_REGISTRATION_MISS_MAX)
