"""`bootstrap.py run` on the shipped config listens on loopback only: every TCP listener and UDP socket of every process."""

from __future__ import annotations

import ipaddress
import json
import os
import re
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from actors.launcher import port_open
from simulator.control import send
from tests.e2e.harness import kill_launched, descendants, free_port, processes_mentioning, wait_until

ROOT = Path(__file__).resolve().parents[2]
TCP_LISTEN = "0A"  # include/net/tcp_states.h


@dataclass(frozen=True, slots=True, kw_only=True)
class Bound:
    """One socket of a process with a local address: a TCP listener or any UDP socket."""

    pid: int
    command: str
    proto: str   # tcp, tcp6, udp, udp6
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.proto} {self.host}:{self.port} pid {self.pid} ({self.command})"


def _address(hex_address: str) -> tuple[str, int]:
    """Decode /proc/net/{tcp,udp}[6]'s local_address (32-bit words in host byte order, then the port)."""
    host, port = hex_address.split(":")
    raw = bytes.fromhex(host)
    words = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4)) if sys.byteorder == "little" else raw
    return str(ipaddress.ip_address(words)), int(port, 16)


def _socket_inodes(pid: int) -> set[str]:
    found = set()
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if link.startswith("socket:["):
                found.add(link[8:-1])
    except OSError:
        pass
    return found


def _command(pid: int) -> str:
    """Return what the process runs, e.g. "bootstrap.py run" (actors are forked from it) or "bootstrap.py simulator"."""
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return "?"
    names = [Path(a).name for a in args if a]
    return " ".join(names[1:3]) if len(names) > 2 else " ".join(names)


def bound_sockets(pids: set[int]) -> list[Bound]:
    """Return every TCP listener and UDP socket that one of `pids` holds, with its local address."""
    owners: dict[str, set[int]] = {}
    for pid in pids:
        for inode in _socket_inodes(pid):
            owners.setdefault(inode, set()).add(pid)
    found = []
    for pid in sorted(pids):  # /proc/<pid>/net is the process's network namespace
        for proto in ("tcp", "tcp6", "udp", "udp6"):
            try:
                lines = Path(f"/proc/{pid}/net/{proto}").read_text().splitlines()[1:]
            except OSError:
                continue
            for line in lines:
                fields = line.split()
                local, state, inode = fields[1], fields[3], fields[9]
                if pid not in owners.get(inode, ()) or (proto.startswith("tcp") and state != TCP_LISTEN):
                    continue
                host, port = _address(local)
                found.append(Bound(pid=pid, command=_command(pid), proto=proto, host=host, port=port))
    return sorted(set(found), key=lambda b: (b.port, b.proto, b.pid))


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    text = (ROOT / "config.toml").read_text()
    text, n = re.subn(r"(?m)^admin_port = \d+", f"admin_port = {free_port()}", text)
    text, m = re.subn(r"(?m)^prometheus_port = 0", f"prometheus_port = {free_port()}", text)
    assert n == m == 1
    (tmp_path / "config.toml").write_text(text)
    return tmp_path


@pytest.mark.timeout(120)
def test_run_on_the_shipped_config_listens_on_loopback_only(workdir: Path) -> None:
    config = workdir / "config.toml"
    marker = str(config)  # every process of this system carries it in its command line
    admin_port = int(re.search(r"(?m)^admin_port = (\d+)", config.read_text()).group(1))  # type: ignore[union-attr]
    metrics_port = int(re.search(r"(?m)^prometheus_port = (\d+)", config.read_text()).group(1))  # type: ignore[union-attr]
    env = {k: v for k, v in os.environ.items() if k != "THESPIAN_BASE_IPADDR"}  # as an operator's shell
    launcher = subprocess.Popen([sys.executable, str(ROOT / "bootstrap.py"), "run", "--config", marker],
                                cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)
    try:
        state = workdir / "var" / "state" / "system.json"
        info = wait_until(lambda: state.exists() and json.loads(state.read_text() or "{}"), 60, "the system to start")
        control = info["simulator_control_port"]
        wait_until(lambda: send(control, {"cmd": "status"})["status"]["clients"] == [1], 30,
                   "the connection to the simulator")
        wait_until(lambda: port_open("127.0.0.1", metrics_port), 30, "the metrics endpoint")
        pids = set(processes_mentioning(marker)) | {launcher.pid} | set(descendants(launcher.pid))

        sockets = bound_sockets(pids)

        listing = "\n".join(map(str, sockets))
        exposed = [s for s in sockets if not ipaddress.ip_address(s.host).is_loopback]
        shown = "\n".join(map(str, exposed))
        assert not exposed, f"sockets not on loopback:\n{shown}\nall of them:\n{listing}"
        ports = {s.port for s in sockets if s.proto == "tcp"}
        expected = {"admin": admin_port, "simulator": info["simulator_port"],
                    "simulator control": control, "metrics": metrics_port}
        assert all(port in ports for port in expected.values()), f"expected {expected} among:\n{listing}"
        listening = {s.pid for s in sockets if s.proto == "tcp"}
        assert len(listening) >= 10, f"only {len(listening)} processes listen (one per actor expected):\n{listing}"
        assert any(s.proto == "udp" for s in sockets), f"no quote-channel datagram socket:\n{listing}"
        print(f"{len(sockets)} sockets of {len(pids)} processes, all on loopback:\n{listing}")

        os.killpg(launcher.pid, signal.SIGINT)
        out, _ = launcher.communicate(timeout=60)
        assert launcher.returncode == 0, out.decode(errors="replace")
    finally:
        kill_launched(launcher, marker)
