"""The processes that carry every order ask Linux for a short time slice, so that, woken, they preempt;
the background actors run niced (system.background_nice), so that those two go first."""

from __future__ import annotations

import ctypes
import os

import pytest
from thespian.actors import ActorSystem

from actors.base import ORDER_PATH_SLICE_NS
from actors.bus import Bus
from actors.order_group import OrderGroupActor
from actors.order_group_supervisor import OrderGroupSupervisor
from actors.processes import (
    _SYS_SCHED_SETATTR,
    ENV_BACKGROUND_NICE,
    _SchedAttr,
    background_nice,
    lower_priority,
    set_time_slice,
)
from actors.risk_manager import RiskManager
from actors.signal_source import SignalSource
from actors.strategy import StrategyController
from actors.supervisor import Supervisor
from actors.symbol import SymbolActor
from actors.symbol_supervisor import SymbolSupervisor
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


# ---------------------------------------------------------------- the background's nice value


@pytest.fixture
def niced_asys(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> ActorSystem:
    """A multiproc system whose actors were told (as the launcher tells them) to run background actors at nice 7."""
    from tests.actors.conftest import start_system

    monkeypatch.setenv(ENV_BACKGROUND_NICE, "7")
    return start_system("multiprocTCPBase", request, monkeypatch)


def test_background_actors_run_at_the_background_nice_and_the_order_path_keeps_the_launchers(
        niced_asys: ActorSystem) -> None:
    ours = os.getpriority(os.PRIO_PROCESS, 0)
    _, background = h.start_configured(niced_asys, "tests.actors.helpers_runtime.InTheBackground")
    _, bus = h.start_configured(niced_asys, "actors.bus.Bus")
    _, order_path = h.start_configured(niced_asys, "tests.actors.helpers_runtime.OnTheOrderPath")
    assert os.getpriority(os.PRIO_PROCESS, background) == max(ours, 7)
    assert os.getpriority(os.PRIO_PROCESS, bus) == os.getpriority(os.PRIO_PROCESS, order_path) == ours
    assert all(cls.BACKGROUND for cls in (SymbolActor, SymbolSupervisor, OrderGroupActor, OrderGroupSupervisor))
    # The root supervisor's children (the connection, the risk gate) inherit its nice value and
    # could not lower it back; the bus, the strategy controller and the signal source carry state
    # changes and signals to everyone.
    assert not any(cls.BACKGROUND for cls in (TwsConnection, RiskManager, Supervisor, Bus, StrategyController,
                                              SignalSource))


def test_lower_priority_only_raises_the_nice_value_and_background_nice_reads_the_launchers_setting(
        monkeypatch: pytest.MonkeyPatch) -> None:
    pid = os.fork()
    if pid == 0:
        start = os.getpriority(os.PRIO_PROCESS, 0)
        ok = lower_priority(start + 3) == start + 3 and lower_priority(start) == start + 3
        os._exit(0 if ok and os.getpriority(os.PRIO_PROCESS, 0) == start + 3 else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    for text, nice in (("12", 12), ("0", 0), ("40", 19), ("-5", 0), ("x", 0)):
        monkeypatch.setenv(ENV_BACKGROUND_NICE, text)
        assert background_nice() == nice, text
    monkeypatch.delenv(ENV_BACKGROUND_NICE)
    assert background_nice() == 0
