"""An actor dies with its supervisor's process, like an OTP link: no orphan survives a kill -9 of its parent."""

from __future__ import annotations

import os
import signal
import time

import pytest
from thespian.actors import ActorSystem

from actors.processes import alive
from tests.actors import helpers_runtime as h

pytestmark = pytest.mark.timeout(60)


def test_configured_actor_dies_when_its_supervisors_process_is_killed(tcp_asys: ActorSystem) -> None:
    info, child_pid = h.start_configured(tcp_asys, "actors.bus.Bus", key="bus")
    parent_pid = info.supervisor_pid
    assert child_pid not in (0, parent_pid) and alive(child_pid)

    os.kill(parent_pid, signal.SIGKILL)  # nobody is left to ask the child to exit
    deadline = time.monotonic() + 10
    while alive(child_pid):
        assert time.monotonic() < deadline, f"actor {child_pid} outlived its killed supervisor {parent_pid}"
        time.sleep(0.01)
