"""An actor dies with its supervisor's process, like an OTP link: no orphan survives a kill -9 of its parent."""

from __future__ import annotations

import os
import signal
import time
from datetime import timedelta

import pytest
from thespian.actors import ActorSystem

from actors.processes import alive
from messages import ActorStatusSnapshot, GetActorStatus
from tests.actors import helpers_runtime as h

pytestmark = pytest.mark.timeout(60)
ASK = timedelta(seconds=10)


def test_configured_actor_dies_when_its_supervisors_process_is_killed(tcp_asys: ActorSystem) -> None:
    parent = tcp_asys.createActor(h.StandInSupervisor)
    info = tcp_asys.ask(parent, h.StartChild(actor_class="actors.bus.Bus", key="bus", config=None, state=None,
                                             peers=(), restart=False, incarnation=1), ASK)
    assert isinstance(info, h.ChildInfo), info
    # ConfigureActor (from the supervisor) and our question (from us) may arrive in either order.
    deadline = time.monotonic() + 10
    while True:
        status = tcp_asys.ask(info.address, GetActorStatus(), ASK)
        assert isinstance(status, ActorStatusSnapshot), status
        if status.configured:
            break
        assert time.monotonic() < deadline, "the child was never configured"
        time.sleep(0.01)
    child_pid, parent_pid = status.pid, info.supervisor_pid
    assert child_pid not in (0, parent_pid) and alive(child_pid)

    os.kill(parent_pid, signal.SIGKILL)  # nobody is left to ask the child to exit
    deadline = time.monotonic() + 10
    while alive(child_pid):
        assert time.monotonic() < deadline, f"actor {child_pid} outlived its killed supervisor {parent_pid}"
        time.sleep(0.01)
