"""The launcher's admin-port probe: a live system or a stranger on the port is a clear error, never a join."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest

from actors.launcher import PIDFILE, LaunchError, check_admin_port
from core.config import Config, SystemConfig


def _config(tmp_path: Path, port: int) -> Config:
    return Config(system=SystemConfig(state_dir=tmp_path / "state", log_dir=tmp_path / "logs", admin_port=port))


@pytest.fixture
def listener() -> socket.socket:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    yield s
    s.close()


def test_free_admin_port_passes(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    check_admin_port(_config(tmp_path, port))


def test_stranger_on_admin_port_is_named_as_another_program(tmp_path: Path, listener: socket.socket) -> None:
    with pytest.raises(LaunchError, match=r"in use by another program.*system.admin_port"):
        check_admin_port(_config(tmp_path, listener.getsockname()[1]))


def test_live_system_on_admin_port_is_named_with_its_pid(tmp_path: Path, listener: socket.socket) -> None:
    config = _config(tmp_path, listener.getsockname()[1])
    Path(config.system.state_dir).mkdir(parents=True)
    (Path(config.system.state_dir) / PIDFILE).write_text(json.dumps(
        {"pid": os.getpid(), "admin_port": config.system.admin_port, "started": "today"}))
    with pytest.raises(LaunchError, match=rf"already running .*launcher pid {os.getpid()}"):
        check_admin_port(config)


def test_stale_pidfile_of_a_dead_launcher_does_not_claim_the_port(tmp_path: Path, listener: socket.socket) -> None:
    config = _config(tmp_path, listener.getsockname()[1])
    Path(config.system.state_dir).mkdir(parents=True)
    (Path(config.system.state_dir) / PIDFILE).write_text(json.dumps(
        {"pid": 2**22 + 12345, "admin_port": config.system.admin_port}))
    with pytest.raises(LaunchError, match="in use by another program"):
        check_admin_port(config)


def test_listener_pid_and_session_find_the_process_behind_a_port() -> None:
    from actors import processes

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        assert processes.listener_pid(s.getsockname()[1]) == os.getpid()
    assert processes.session_of(os.getpid()) == os.getsid(0)
    assert processes.listener_pid(1) == 0  # nothing listens on port 1
    assert os.getpid() in processes.session_pids(os.getsid(0))
    assert processes.kill_session(os.getsid(0)) == 0  # never the caller's own session
