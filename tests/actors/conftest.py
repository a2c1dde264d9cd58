"""Actor-system fixtures shared by the actor tests: in-process and multiproc TCP systems on free loopback ports.

Stand-in actor modules (tests/actors/helpers_*.py) are imported by dotted path in every actor
process: the repository root is on sys.path (setup.cfg's pytest `pythonpath`), and the multiproc
base forks each actor from this process.
"""

from __future__ import annotations

import socket
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from thespian.actors import ActorSystem

from actors import logs
from actors.clock import VirtualClock, VirtualTimers, install_clock, install_timers
from actors.processes import listener_pid, session_of, sweep_session


def free_port() -> int:
    """Return a TCP port that is free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until_closed(port: int, deadline_s: float = 5.0) -> None:
    """Fail unless nothing listens on 127.0.0.1:`port` within the deadline (a system shut down cleanly)."""
    deadline = time.monotonic() + deadline_s
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                pass
        except OSError:
            return
        assert time.monotonic() < deadline, f"admin port {port} still listens after shutdown"
        time.sleep(0.01)


def start_system(base: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> ActorSystem:
    """Start an actor system of `base` (free loopback admin port for multiproc) shut down in a finalizer."""
    if base == "multiprocTCPBase":
        monkeypatch.setenv("THESPIAN_BASE_IPADDR", "127.0.0.1")
        port = free_port()
        system = ActorSystem("multiprocTCPBase", {"Admin Port": port, "Process Startup Method": "fork"},
                             transientUnique=True)
        # The admin daemonizes into its own session, which every actor of the system inherits.
        session = session_of(listener_pid(port))

        def shutdown() -> None:
            system.shutdown()
            wait_until_closed(port)
            left = sweep_session(session, grace_s=5.0)
            if left:
                warnings.warn(f"{request.node.nodeid}: {left} process(es) of its actor system outlived "
                              f"the shutdown; killed them", stacklevel=1)
    else:
        system = ActorSystem("simpleSystemBase", transientUnique=True, logDefs=False)

        def shutdown() -> None:
            system.shutdown()
            logs.close_all()  # in-process actors shared this process's loguru sinks

    request.addfinalizer(shutdown)
    return system


@pytest.fixture
def simple_asys(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> ActorSystem:
    return start_system("simpleSystemBase", request, monkeypatch)


@pytest.fixture
def tcp_asys(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> ActorSystem:
    return start_system("multiprocTCPBase", request, monkeypatch)


@pytest.fixture(params=["simpleSystemBase", "multiprocTCPBase"])
def both_asys(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> ActorSystem:
    """One test run per base: in-process for logic, multiproc TCP for isolation and pickling."""
    return start_system(request.param, request, monkeypatch)


@contextmanager
def virtual_time(start_ns: int) -> Iterator[tuple[VirtualClock, VirtualTimers]]:
    """Make actors created inside run in-process on a virtual clock from `start_ns`, their timers fired by the test."""
    clock = VirtualClock(start_ns)
    timers = VirtualTimers(clock)
    previous = (install_clock(clock), install_timers(timers), logs.run_in_process())
    try:
        yield clock, timers
    finally:
        install_clock(previous[0])
        install_timers(previous[1])
        logs.run_in_process(previous[2])
