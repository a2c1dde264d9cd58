"""Acceptance: the simulator's JSON-lines control port (execute/send), and `bootstrap.py simulator` as a process."""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from simulator import control
from simulator.server import SimulatorThread
from tests.simulator.conftest import Connect, MakeSim
from tests.simulator.ibapp import order, stock

pytestmark = pytest.mark.timeout(30)

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def controlled(make_sim: MakeSim) -> SimulatorThread:
    return make_sim(control_port=0)


def _execute(sim: SimulatorThread, request: Any) -> dict[str, Any]:
    return sim.call(control.execute, sim.sim, request)


@pytest.mark.parametrize("request_", [
    {"cmd": "status"},
    {"cmd": "drop"},
    {"cmd": "drop", "client_id": 3},
    {"cmd": "refuse", "seconds": 0},
    {"cmd": "lose_link"},
    {"cmd": "restore_link"},
    {"cmd": "restore_link", "data_kept": True},
    {"cmd": "duplicate_statuses", "count": 2},
    {"cmd": "fill_after_cancel"},
    {"cmd": "fill_after_cancel", "count": 3},
    {"cmd": "commission_lag", "seconds": 2},
    {"cmd": "commission_lag", "seconds": 0},
    {"cmd": "reject_next"},
    {"cmd": "reject_next", "reason": "too big"},
    {"cmd": "silence", "symbol": "MSFT"},
    {"cmd": "silence", "symbol": "MSFT", "on": False},
])
def test_execute_accepts_every_documented_command(sim: SimulatorThread, request_: dict[str, Any]) -> None:
    reply = _execute(sim, request_)
    assert reply["ok"] is True, reply


def test_execute_commands_change_the_simulator_state(sim: SimulatorThread) -> None:
    _execute(sim, {"cmd": "duplicate_statuses", "count": 2})
    _execute(sim, {"cmd": "fill_after_cancel", "count": 3})
    _execute(sim, {"cmd": "silence", "symbol": "SPY"})
    _execute(sim, {"cmd": "lose_link"})
    assert (sim.sim.duplicate_statuses, sim.sim.fill_after_cancel, sim.sim.silenced, sim.sim.link_down) == (
        2, 3, {"SPY"}, True)
    _execute(sim, {"cmd": "restore_link"})
    _execute(sim, {"cmd": "reject_next", "reason": "too big"})
    assert not sim.sim.link_down and sim.sim.book.reject_next == "too big"
    status = _execute(sim, {"cmd": "status"})["status"]
    assert {"port", "clients", "market_ns", "orders", "executions", "positions", "account"} <= set(status)
    assert status["port"] == sim.port


@pytest.mark.parametrize(("request_", "says"), [
    ([1, 2], "JSON object"),
    ("status", "JSON object"),
    (None, "JSON object"),
    ({}, "cmd"),
    ({"cmd": 5}, "cmd"),
    ({"cmd": "explode"}, "unknown command"),
    ({"cmd": "duplicate_statuses"}, "count"),
    ({"cmd": "duplicate_statuses", "count": -1}, "whole number"),
    ({"cmd": "duplicate_statuses", "count": "2"}, "whole number"),
    ({"cmd": "fill_after_cancel", "count": True}, "whole number"),
    ({"cmd": "drop", "client_id": 1.5}, "whole number"),
    ({"cmd": "refuse"}, "seconds"),
    ({"cmd": "refuse", "seconds": 99999}, "seconds"),
    ({"cmd": "commission_lag"}, "seconds"),
    ({"cmd": "commission_lag", "seconds": -1}, "seconds"),
    ({"cmd": "silence", "symbol": "NOPE"}, "NOPE"),
    ({"cmd": "silence"}, "symbol"),
])
def test_execute_bad_request_answers_ok_false_with_error(sim: SimulatorThread, request_: Any, says: str) -> None:
    reply = _execute(sim, request_)
    assert reply["ok"] is False and says in reply["error"], reply
    assert not sim.sim.link_down and not sim.sim.silenced  # nothing half-applied


def test_send_over_control_port_returns_status(controlled: SimulatorThread, connect: Connect) -> None:
    connect(controlled, 4)
    reply = control.send(controlled.control_port, {"cmd": "status"})
    assert reply["ok"] and reply["status"]["clients"] == [4]


def test_control_port_answers_bad_lines_and_keeps_the_connection(controlled: SimulatorThread) -> None:
    with socket.create_connection(("127.0.0.1", controlled.control_port), timeout=5) as sock:
        sock.sendall(b"this is not json\n" + b'{"cmd": "nope"}\n' + b"x" * (control.MAX_LINE + 10) + b"\n")
        sock.sendall(b"[" * 60_000 + b"\n" + b"\xff\xfe\n")
        sock.sendall(b'{"cmd": "status"}\n')
        replies = []
        buf = b""
        while len(replies) < 6:
            chunk = sock.recv(65536)
            assert chunk, f"control port closed early after {replies}"
            buf += chunk
            *lines, buf = buf.split(b"\n")
            replies += [json.loads(line) for line in lines]
    assert [r["ok"] for r in replies] == [False, False, False, False, False, True]
    assert "not JSON" in replies[0]["error"] and "unknown command" in replies[1]["error"]
    assert "too long" in replies[2]["error"]


def test_control_faults_reach_a_connected_ibapi_client(controlled: SimulatorThread, connect: Connect) -> None:
    app = connect(controlled, 1)
    port = controlled.control_port
    assert control.send(port, {"cmd": "reject_next", "reason": "desk says no"})["ok"]
    oid = app.take_id()
    app.placeOrder(oid, stock("AAPL"), order("BUY", 10))
    app.wait_call("error", lambda rid, t, code, msg, *a: rid == oid and code == 201 and "desk says no" in msg)
    assert control.send(port, {"cmd": "lose_link"})["ok"]
    app.wait_call("error", lambda rid, t, code, *a: code == 1100)
    assert control.send(port, {"cmd": "restore_link", "data_kept": True})["ok"]
    app.wait_call("error", lambda rid, t, code, *a: code == 1102)
    assert control.send(port, {"cmd": "drop", "client_id": 1}) == {"ok": True, "dropped": 1}
    app.wait_call("connectionClosed")


def test_bootstrap_simulator_process_serves_ibapi_and_control_then_stops_on_sigterm(connect: Connect) -> None:
    proc = subprocess.Popen(
        [sys.executable, "bootstrap.py", "simulator", "--port", "0", "--control-port", "0", "--no-pacing"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        banner = proc.stdout.readline()  # type: ignore[union-attr]
        found = re.search(r"listening on 127\.0\.0\.1:(\d+) .*control port (\d+)", banner)
        assert found, banner
        port, control_port = int(found[1]), int(found[2])

        class Target:  # what connect() needs from a simulator
            pass
        target = Target()
        target.port = port  # type: ignore[attr-defined]
        app = connect(target, 9)  # type: ignore[arg-type]
        assert app.serverVersion() in (200, 226)
        assert control.send(control_port, {"cmd": "status"})["status"]["clients"] == [9]
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=10)
        assert proc.returncode == 0 and "stopped" in out
        app.wait_call("connectionClosed")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=5)
