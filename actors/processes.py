"""The actor system's processes, found by session: what the launcher sweeps after a shutdown.

Thespian's admin daemonizes (setsid, then a second fork), so the actor system's processes are
not the launcher's descendants: they form the admin's session, which every actor inherits.
A clean `asys.shutdown()` ends them all; an actor that does not answer (a handler stuck in a
loop, a stopped process) survives it, and SIGKILL of a parent orphans its children
(thespian-notes §2.7), so whatever is left of the session afterwards is killed.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import time
from typing import Final

_PR_SET_PDEATHSIG: Final = 1  # linux/prctl.h


class _SchedAttr(ctypes.Structure):
    # struct sched_attr (include/uapi/linux/sched/types.h), version 1.
    _fields_ = [("size", ctypes.c_uint32), ("sched_policy", ctypes.c_uint32), ("sched_flags", ctypes.c_uint64),
                ("sched_nice", ctypes.c_int32), ("sched_priority", ctypes.c_uint32),
                ("sched_runtime", ctypes.c_uint64), ("sched_deadline", ctypes.c_uint64),
                ("sched_period", ctypes.c_uint64), ("sched_util_min", ctypes.c_uint32),
                ("sched_util_max", ctypes.c_uint32)]


_SYS_SCHED_SETATTR: Final = {"x86_64": 314, "aarch64": 274}


def set_time_slice(slice_ns: int) -> bool:
    """Ask Linux for a short time slice for this process (SCHED_NORMAL, its nice kept); False if refused.

    With EEVDF (Linux 6.6+), a shorter slice means an earlier deadline: since 6.12 a woken task with
    a shorter slice than the running one preempts it at once instead of waiting out its slice. The
    processes an order passes through use it, so an intent or approved legs arriving on a busy
    machine run now rather than a few milliseconds later. Older kernels ignore it.
    """
    number = _SYS_SCHED_SETATTR.get(os.uname().machine)
    if number is None or sys.platform != "linux":
        return False
    try:
        nice = os.getpriority(os.PRIO_PROCESS, 0)
        attr = _SchedAttr(size=ctypes.sizeof(_SchedAttr), sched_policy=0, sched_nice=nice,
                          sched_runtime=slice_ns)
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.syscall(number, 0, ctypes.byref(attr), 0) == 0
    except (OSError, AttributeError):
        return False


ENV_BACKGROUND_NICE: Final = "IBACTORS_BACKGROUND_NICE"  # the launcher's system.background_nice


def lower_priority(nice: int) -> int:
    """Raise this process's nice value to `nice` (never lower it: that needs privileges); return it after.

    The background actors (the symbol and order group actors and their supervisors) run niced:
    Linux then gives the processes every order passes through their turn as soon as they wake,
    rather than after a hundred symbol processes that woke with them. The background's share still
    grows with its number of processes: it loses little CPU, only its place in the queue.
    """
    current = os.getpriority(os.PRIO_PROCESS, 0)
    if nice > current:
        try:
            return os.nice(nice - current)
        except OSError:
            return current
    return current


def background_nice() -> int:
    """Return the nice value the launcher asked background actors to run at (0: as the launcher)."""
    try:
        return max(0, min(19, int(os.environ.get(ENV_BACKGROUND_NICE, "0"))))
    except ValueError:
        return 0


def proc_stat(pid: int) -> list[str] | None:
    """Return the fields of /proc/<pid>/stat after the command name (state first), None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            stat = f.read()
    except OSError:
        return None
    return stat[stat.rfind(")") + 2:].split()


def alive(pid: int) -> bool:
    """Return True if `pid` runs (a zombie does not)."""
    stat = proc_stat(pid)
    return stat is not None and stat[0] not in ("Z", "X")


def parent_of(pid: int) -> int:
    """Return the parent pid of `pid` (0 if it is gone)."""
    stat = proc_stat(pid)
    return int(stat[1]) if stat is not None else 0


def session_of(pid: int) -> int:
    """Return the session id of `pid` (0 if it is gone)."""
    stat = proc_stat(pid)
    return int(stat[3]) if stat is not None else 0


def session_pids(session: int) -> list[int]:
    """Return the live (not zombie) processes of `session`."""
    return [int(entry) for entry in os.listdir("/proc")
            if entry.isdigit() and (stat := proc_stat(int(entry))) is not None
            and int(stat[3]) == session and stat[0] not in ("Z", "X")]


def kill_session(session: int) -> int:
    """SIGKILL every process left in `session`; return how many there were.

    Never the caller's own session, nor session 0 or 1 (unknown, or init's).
    """
    if session <= 1 or session == session_of(os.getpid()):
        return 0
    left = session_pids(session)
    for pid in left:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return len(left)


def sweep_session(session: int, grace_s: float = 10.0) -> int:
    """Wait up to `grace_s` for `session` to end by itself, then kill what is left; return that count."""
    if session <= 1 or session == session_of(os.getpid()):
        return 0
    deadline = time.monotonic() + grace_s
    while session_pids(session) and time.monotonic() < deadline:
        time.sleep(0.1)
    return kill_session(session)


def listener_pid(port: int) -> int:
    """Return the pid of the process listening on TCP `port` (IPv4, any address), 0 if none is found.

    An actor system's admin listens on its admin port; its session is the whole system.
    """
    inodes = set()
    try:
        with open("/proc/net/tcp", encoding="ascii") as f:
            next(f)
            for line in f:
                fields = line.split()
                local, state, inode = fields[1], fields[3], fields[9]
                if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:  # 0A = LISTEN
                    inodes.add(f"socket:[{inode}]")
    except (OSError, StopIteration, IndexError, ValueError):
        return 0
    if not inodes:
        return 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            for fd in os.listdir(f"/proc/{entry}/fd"):
                if os.readlink(f"/proc/{entry}/fd/{fd}") in inodes:
                    return int(entry)
        except OSError:
            continue
    return 0


def set_parent_death_signal(signum: int) -> bool:
    """Have the kernel send this process `signum` when its parent dies (0 = never); False if unsupported."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        return int(ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signum, 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False
