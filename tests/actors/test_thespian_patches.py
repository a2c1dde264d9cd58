"""The thespian transport patch: in force for the pinned version, and a drop-in for one loop turn."""

from __future__ import annotations

import os
import select
import signal
import socket
import subprocess
import sys
import time
from datetime import timedelta
from importlib import metadata
from pathlib import Path

import pytest
from thespian.actors import Actor, ActorExitRequest, ActorSystem, ActorSystemConventionUpdate

from actors import thespian_patches as tp
from tests.actors.helpers_actors import ExitCounter


def test_patch_is_in_force_for_the_pinned_thespian_version() -> None:
    # Fails after a thespian upgrade: check that the event loop still builds a selector per turn
    # (TCPTransport._runWithExpiry) before moving PATCHED_VERSION.
    assert metadata.version("thespian") == tp.PATCHED_VERSION
    assert tp.applied()
    from thespian.system.transport import TCPTransport

    source = open(TCPTransport.__file__, encoding="utf-8").read()
    assert source.count("selectors.DefaultSelector()") == 2


def test_round_selector_reports_readable_and_writable_sockets() -> None:
    a, b = socket.socketpair()
    try:
        sel = tp.RoundSelector()
        sel.register(a.fileno(), tp.EVENT_READ)
        sel.register(b, tp.EVENT_WRITE)
        ready = {key.fd: events for key, events in sel.select(0)}
        assert ready == {b.fileno(): tp.EVENT_WRITE}  # nothing to read yet
        b.send(b"x")
        sel = tp.RoundSelector()
        sel.register(a.fileno(), tp.EVENT_READ)
        assert [(key.fd, events) for key, events in sel.select(1.0)] == [(a.fileno(), tp.EVENT_READ)]
        sel.close()
    finally:
        a.close()
        b.close()


def test_round_selector_times_out_empty_and_refuses_a_double_registration() -> None:
    a, b = socket.socketpair()
    try:
        sel = tp.RoundSelector()
        sel.register(a.fileno(), tp.EVENT_READ)
        assert sel.select(0.01) == []
        with pytest.raises(KeyError, match="already registered"):
            sel.register(a.fileno(), tp.EVENT_WRITE)
        with pytest.raises(ValueError, match="invalid events"):
            tp.RoundSelector().register(b.fileno(), 0)
    finally:
        a.close()
        b.close()


def test_round_selector_raises_ebadf_for_a_closed_descriptor_like_epoll_would() -> None:
    a, b = socket.socketpair()
    fd = os.dup(a.fileno())
    os.close(fd)  # a descriptor number that is not open
    try:
        sel = tp.RoundSelector()
        sel.register(fd, tp.EVENT_READ)
        with pytest.raises(OSError) as raised:
            sel.select(0)
        assert raised.value.errno == 9  # EBADF
    finally:
        a.close()
        b.close()


def test_hang_up_makes_a_socket_readable_so_its_owner_sees_the_end() -> None:
    a, b = socket.socketpair()
    b.close()
    try:
        sel = tp.RoundSelector()
        sel.register(a.fileno(), tp.EVENT_READ)
        ((key, events),) = sel.select(1.0)
        assert key.fd == a.fileno() and events == tp.EVENT_READ
        assert a.recv(10) == b""
    finally:
        a.close()
    assert select.POLLIN  # the platform has poll()


def test_a_child_that_cannot_be_told_to_exit_is_the_one_counted_as_exited() -> None:
    # thespian 4.0.1 binds the loop variable late: the failure of the exit request to one child
    # marked the loop's last child exited, so a parent could leave while that child still ran.
    from thespian.system import actorManager
    from thespian.system.actorManager import ActorManager
    from thespian.system.transport import TransmitIntent

    source = open(actorManager.__file__, encoding="utf-8").read()
    assert "lambda r,m: self._childInaccessible(each, m)" in source  # the bug this patch is for

    class Parent:
        def __init__(self) -> None:
            self.exited: list[str] = []

        def _handleChildExited(self, address: str) -> bool:
            self.exited.append(address)
            return True

    parent = Parent()
    failed = TransmitIntent("child-a", object())
    assert ActorManager._childInaccessible(parent, "child-c", failed) is True
    assert parent.exited == ["child-a"]


# ---------------------------------------------------------------- listeners on loopback


def _external_address(unpatched: bool = False) -> object:
    """Return a TCPv4 address made as thespian makes a listener's (external=True), optionally unpatched."""
    from thespian.system.transport.IPBase import IPActorAddress, TCPv4ActorAddress

    if not unpatched:
        return TCPv4ActorAddress(None, 0, external=True)
    address = object.__new__(TCPv4ActorAddress)
    IPActorAddress.__init__.unpatched(address, socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP,
                                      None, 0, True)
    return address


def test_pinned_thespian_binds_every_interface_unpatched(monkeypatch: pytest.MonkeyPatch) -> None:
    # The bug this fix is for: even with THESPIAN_BASE_IPADDR=127.0.0.1 (only the advertised
    # address) an external address binds '' (INADDR_ANY), for the admin and every actor.
    from thespian.system.transport import IPBase

    source = open(IPBase.__file__, encoding="utf-8").read()
    assert tp.UNPATCHED_BIND in source and tp.UNPATCHED_PROBE in source
    monkeypatch.setenv(tp.BIND_ENV, "127.0.0.1")
    address = _external_address(unpatched=True)
    assert address.sockname == ("127.0.0.1", 0)  # type: ignore[attr-defined]
    assert address.bindname == ("", 0)  # type: ignore[attr-defined]


@pytest.mark.parametrize(("configured", "bound"), [
    (None, "127.0.0.1"),            # nothing configured: loopback, no probe of a route to 8.8.8.8
    ("", "127.0.0.1"),
    ("127.0.0.1", "127.0.0.1"),
    ("198.51.100.7", "198.51.100.7"),  # an operator's address (multi-node): that address only
    ("0.0.0.0", "0.0.0.0"),          # every interface, when asked for explicitly
])
def test_patched_listener_binds_the_address_it_advertises(monkeypatch: pytest.MonkeyPatch, configured: str | None,
                                                         bound: str) -> None:
    if configured is None:
        monkeypatch.delenv(tp.BIND_ENV, raising=False)
    else:
        monkeypatch.setenv(tp.BIND_ENV, configured)
    address = _external_address()
    assert address.bindname == address.sockname == (bound, 0)  # type: ignore[attr-defined]
    assert tp.bind_host() == (configured or "127.0.0.1")


def test_patched_admin_actor_and_udp_addresses_bind_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    from thespian.actors import ActorAddress
    from thespian.system.transport.IPBase import TCPv4ActorAddress, UDPv4ActorAddress
    from thespian.system.transport.TCPTransport import TCPTransport

    monkeypatch.delenv(tp.BIND_ENV, raising=False)
    admin = TCPTransport.getAdminAddr({"Admin Port": 19999}).addressDetails
    assert admin.bindname == admin.sockname == ("127.0.0.1", 19999)
    child = TCPv4ActorAddress(None, 0, external=ActorAddress(admin))  # an actor's, made from its parent's
    assert child.bindname == ("127.0.0.1", 0)
    cli = TCPv4ActorAddress(None, 0, external=("", 19999))  # an attached CLI's (ExternalInterfaceTransportInit)
    assert cli.bindname == ("127.0.0.1", 0)
    udp = UDPv4ActorAddress(None, 0, external=True)
    assert udp.bindname == ("127.0.0.1", 0)
    local = TCPv4ActorAddress("", 0)  # a non-external address was loopback already and stays so
    assert local.bindname == ("127.0.0.1", 0)


def test_patched_listener_socket_is_bound_to_loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(tp.BIND_ENV, raising=False)
    address = _external_address()
    with socket.socket(*address.socketArgs) as s:  # type: ignore[attr-defined]
        s.bind(*address.bindArgs)  # type: ignore[attr-defined]
        s.listen(1)
        assert s.getsockname()[0] == "127.0.0.1"


def test_set_bind_host_configures_the_address_for_this_process_and_its_forks(monkeypatch: pytest.MonkeyPatch) -> None:
    from thespian.system.transport.IPBase import thisSystem

    monkeypatch.setenv(tp.BIND_ENV, "127.0.0.1")  # restored after the test
    try:
        tp.set_bind_host("198.51.100.9")
        assert os.environ[tp.BIND_ENV] == "198.51.100.9" and tp.bind_host() == "198.51.100.9"
        assert thisSystem.isLocalAddr("198.51.100.9")
        assert _external_address().bindname == ("198.51.100.9", 0)  # type: ignore[attr-defined]
    finally:
        thisSystem._myAddresses.discard("198.51.100.9")
    with pytest.raises(ValueError, match="not empty"):
        tp.set_bind_host(" ")


def test_apply_refuses_another_thespian_version(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tp.metadata, "version", lambda name: "4.0.2")
    with pytest.raises(tp.ThespianPatchError, match=r"thespian 4\.0\.2 is installed.*all interfaces"):
        tp.apply()


@pytest.mark.parametrize("shape", ["UNPATCHED_BIND", "UNPATCHED_BASE", "UNPATCHED_PROBE"])
def test_bind_fix_refuses_a_source_that_changed_shape(monkeypatch: pytest.MonkeyPatch, shape: str) -> None:
    tp.check_bind_source()  # the pinned source as installed
    monkeypatch.setattr(tp, shape, "self.bindname = (BIND_HOST, sa[1])")
    with pytest.raises(tp.ThespianPatchError, match="not as the bind fix expects"):
        tp.check_bind_source()


def test_apply_is_idempotent_and_wraps_the_original_once() -> None:
    from thespian.system.transport.IPBase import IPActorAddress

    wrapped = IPActorAddress.__init__
    assert tp.apply() is True
    assert IPActorAddress.__init__ is wrapped
    assert not hasattr(wrapped.unpatched, "unpatched")


# ---------------------------------------------------------------- convention timers (several nodes)


def test_pinned_convention_reads_its_timer_constants_where_timers_start() -> None:
    # Fails after a thespian upgrade that copies the constants at import or renames them: then
    # set_convention_timers would change nothing and a dead node would go unnoticed for 22 minutes.
    from thespian.system.admin import convention

    tp.check_convention_source()
    source = open(convention.__file__, encoding="utf-8").read()
    assert source.count("ExpirationTimer(CONVENTION_REREGISTRATION_PERIOD)") >= 4
    for module in ("actorManager", "systemBase", "multiprocCommon"):
        text = open(convention.__file__.replace("admin/convention.py", f"{module}.py"), encoding="utf-8").read()
        assert "CONVENTION_RE" not in text  # nobody holds a copy of them


def _keep_convention_timers(monkeypatch: pytest.MonkeyPatch) -> None:
    from thespian.system.admin import convention

    for name in tp.CONVENTION_TIMERS:  # restored after the test, whatever it sets
        monkeypatch.setattr(convention, name, getattr(convention, name))


def test_set_convention_timers_sets_the_heartbeat_the_retry_and_the_misses(monkeypatch: pytest.MonkeyPatch) -> None:
    from thespian.system.admin.convention import ConventionMemberData

    _keep_convention_timers(monkeypatch)
    tp.set_convention_timers(timedelta(seconds=0.5), 4)

    assert tp.convention_timers() == (timedelta(seconds=0.5), timedelta(seconds=0.5), 4)
    member = ConventionMemberData("somewhere", {})
    assert timedelta(seconds=1.9) < member.registryValid.view().remaining() <= timedelta(seconds=2)


@pytest.mark.parametrize(("heartbeat", "missed", "match"), [
    (timedelta(0), 3, "must be positive"),
    (timedelta(seconds=-1), 3, "must be positive"),
    (timedelta(seconds=1), 0, "at least one missed heartbeat"),
])
def test_set_convention_timers_refuses_nonsense(monkeypatch: pytest.MonkeyPatch, heartbeat: timedelta, missed: int,
                                                match: str) -> None:
    _keep_convention_timers(monkeypatch)
    before = tp.convention_timers()
    with pytest.raises(ValueError, match=match):
        tp.set_convention_timers(heartbeat, missed)
    assert tp.convention_timers() == before


def test_set_convention_timers_refuses_a_source_that_changed_shape(monkeypatch: pytest.MonkeyPatch) -> None:
    _keep_convention_timers(monkeypatch)
    monkeypatch.setattr(tp, "UNPATCHED_TIMER_READS", ("ExpirationTimer(CONVENTION_HEARTBEAT)",))
    with pytest.raises(tp.ThespianPatchError, match="convention timers are not as"):
        tp.set_convention_timers(timedelta(seconds=1), 3)
    monkeypatch.setattr(tp.metadata, "version", lambda name: "4.0.2")
    with pytest.raises(tp.ThespianPatchError, match=r"thespian 4\.0\.2 is installed"):
        tp.set_convention_timers(timedelta(seconds=1), 3)


class ConventionWatcher(Actor):
    """Records the convention updates its admin sends (a member joined or left) with their times."""

    def __init__(self) -> None:
        super().__init__()
        self.updates: list[tuple[float, bool]] = []

    def receiveMessage(self, msg: object, sender: object) -> None:
        if msg == "watch":
            self.notifyOnSystemRegistrationChanges(True)
            self.send(sender, "watching")
        elif isinstance(msg, ActorSystemConventionUpdate):
            self.updates.append((time.time(), msg.remoteAdded))
        elif msg == "updates":
            self.send(sender, list(self.updates))


_MEMBER = """
import sys, time
from datetime import timedelta
from actors import thespian_patches as tp
tp.set_convention_timers(timedelta(seconds=float(sys.argv[3])), 3)
from thespian.actors import ActorSystem
ActorSystem("multiprocTCPBase", {"Admin Port": int(sys.argv[1]),
                                 "Convention Address.IPv4": ("127.0.0.1", int(sys.argv[2]))})
time.sleep(120)
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.timeout(60)
def test_tuned_convention_tells_the_leader_of_a_killed_member_within_its_heartbeats(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # Unpatched, the leader notices a SIGKILLed member after 3 × 7 min 22 s.
    from thespian.actors import ActorSystem

    from actors.processes import alive, listener_pid, session_of, session_pids

    heartbeat = 0.5
    _keep_convention_timers(monkeypatch)
    tp.set_convention_timers(timedelta(seconds=heartbeat), 3)
    leader_port, member_port = _free_port(), _free_port()
    root = Path(__file__).resolve().parents[2]
    member = subprocess.Popen([sys.executable, "-c", _MEMBER, str(member_port), str(leader_port), str(heartbeat)],
                              cwd=root, start_new_session=True)
    asys = ActorSystem("multiprocTCPBase", {"Admin Port": leader_port}, transientUnique=True)
    victims: set[int] = {member.pid}
    try:
        watcher = asys.createActor(ConventionWatcher)
        assert asys.ask(watcher, "watch", 5) == "watching"
        deadline = time.monotonic() + 20
        while not asys.ask(watcher, "updates", 5) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert [added for _, added in asys.ask(watcher, "updates", 5)] == [True]
        victims |= set(session_pids(session_of(listener_pid(member_port))))  # the member's admin and logger
        killed = time.time()
        for pid in victims:
            os.kill(pid, signal.SIGKILL)
        while len(updates := asys.ask(watcher, "updates", 5)) < 2 and time.time() - killed < 30:
            time.sleep(0.05)
        assert [added for _, added in updates] == [True, False]
        noticed = updates[1][0] - killed
        print(f"a killed member was noticed after {noticed:.2f} s (heartbeat {heartbeat} s × 3)")
        assert noticed < heartbeat * 3 + 2.0
    finally:
        asys.shutdown()
        for pid in victims:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
        member.wait(5)


@pytest.mark.timeout(120)
def test_every_child_exit_is_announced_when_children_die_together(tcp_asys: ActorSystem) -> None:
    # Half of 16 children are killed and half asked to exit, at once, four times. Unpatched,
    # thespian reaped a child that died while it handled another child's exit without telling the
    # parent (measured: 23 of 160 exits never announced); a supervisor then listed it as running
    # for good, and a later actor on its reused port passed for it.
    assert tp.applied()
    for _ in range(4):
        parent = tcp_asys.createActor(ExitCounter)
        assert tcp_asys.ask(parent, ("start", 16), 30) == "ready"
        tcp_asys.tell(parent, "go")
        deadline = time.monotonic() + 15
        while (count := tcp_asys.ask(parent, "count", 5))[0] < 16 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert count[0] == count[2] == 16, f"only {count[0]} of 16 exits announced"
        tcp_asys.tell(parent, ActorExitRequest())


def test_exit_notice_fix_replaces_the_pinned_silent_filter() -> None:
    from thespian.system.multiprocCommon import MultiProcReplicator

    assert MultiProcReplicator._childExited is tp._child_exited
    import inspect

    assert tp.UNPATCHED_CHILD_EXITED in inspect.getsource(tp._child_exited.unpatched)
