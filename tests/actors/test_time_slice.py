"""The processes that carry every order ask Linux for a short time slice, so that, woken, they preempt."""

from __future__ import annotations

import ctypes
import os

import pytest
from thespian.actors import ActorSystem

from actors.base import ORDER_PATH_SLICE_NS
from actors.processes import _SYS_SCHED_SETATTR, _SchedAttr, set_time_slice
from actors.risk_manager import RiskManager
from actors.symbol import SymbolActor
from actors.tws_connection import TwsConnection
from tests.actors import helpers_runtime as h

pytestmark = pytest.mark.timeout(60)


def slice_of(pid: int) -> int | None:
    """Return the time slice Linux keeps for `pid` (sched_getattr), None where it cannot be read."""
    number = _SYS_SCHED_SETATTR.get(os.uname().machine)
    if number is None:
        return None
    attr = _SchedAttr()
    if ctypes.CDLL(None, use_errno=True).syscall(number + 1, pid, ctypes.byref(attr), ctypes.sizeof(attr), 0):
        return None
    return int(attr.sched_runtime)


def _kernel_keeps_custom_slices() -> bool:
    pid = os.fork()
    if pid == 0:
        os._exit(0 if set_time_slice(ORDER_PATH_SLICE_NS) and slice_of(0) == ORDER_PATH_SLICE_NS else 1)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status) == 0


def test_an_actor_on_the_order_path_runs_with_a_short_time_slice_and_the_others_do_not(
        tcp_asys: ActorSystem) -> None:
    if not _kernel_keeps_custom_slices():
        pytest.skip("this kernel keeps no per-process time slice (Linux < 6.12 or not Linux)")
    assert slice_of(h.start_configured(tcp_asys, "tests.actors.helpers_runtime.OnTheOrderPath")[1]) == ORDER_PATH_SLICE_NS
    assert slice_of(h.start_configured(tcp_asys, "actors.bus.Bus")[1]) != ORDER_PATH_SLICE_NS
    assert TwsConnection.ON_ORDER_PATH and RiskManager.ON_ORDER_PATH and not SymbolActor.ON_ORDER_PATH
