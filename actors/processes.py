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
