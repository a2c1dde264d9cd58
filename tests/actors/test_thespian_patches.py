"""The thespian transport patch: in force for the pinned version, and a drop-in for one loop turn."""

from __future__ import annotations

import os
import select
import socket
from importlib import metadata

import pytest

from actors import thespian_patches as tp


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
