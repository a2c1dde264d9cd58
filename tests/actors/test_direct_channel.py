"""The direct channel: local datagrams that carry chosen messages to a busy actor, and refuse anything else."""

from __future__ import annotations

import os
import pickle
import socket
from decimal import Decimal

import pytest
from thespian.actors import ActorAddress

from actors import direct_channel as dc
from core.orders import new_order
from core.types import OrderType, Side
from messages import DirectChannel, SubmitOrder, SubmitOrders

pytestmark = [pytest.mark.timeout(30),
              pytest.mark.skipif(not dc.SUPPORTED, reason="direct channels exist on Linux only")]


def _submits(n: int = 3) -> SubmitOrders:
    orders = tuple(SubmitOrder(order=new_order(ref=f"g1.leg{i}", symbol="SPY", side=Side.BUY, quantity=1 + i,
                                               order_type=OrderType.LMT, limit_price=Decimal("100.25")),
                               group_id="g1", transmit=i == n - 1)
                   for i in range(n))
    return SubmitOrders(orders=orders)


@pytest.fixture
def inbox() -> dc.Inbox:
    box = dc.Inbox([SubmitOrders])
    yield box
    box.close()


def _raw_send(channel: DirectChannel, data: bytes) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.sendto(data, "\0" + channel.name)


def test_a_message_arrives_whole_with_its_sender_and_in_order(inbox: dc.Inbox) -> None:
    out = dc.Outbox()
    sender = ActorAddress("risk-address")
    first, second = _submits(3), _submits(1)
    assert out.send(inbox.channel(), first, sender) and out.send(inbox.channel(), second, sender)
    deliveries, problems = inbox.drain()
    assert problems == []
    assert [d.message for d in deliveries] == [first, second]
    assert all(d.sender == sender for d in deliveries)
    assert inbox.drain() == ([], [])  # nothing twice
    assert (out.sent, out.fell_back) == (2, 0)
    out.close()


def test_the_offer_names_the_types_and_never_shows_its_token(inbox: dc.Inbox) -> None:
    channel = inbox.channel()
    assert channel.types == ("SubmitOrders",)
    assert channel.token not in repr(channel) and len(channel.token) == 32


@pytest.mark.parametrize(("data", "why"), [
    (b"0" * 32 + pickle.dumps((SubmitOrders(orders=()), ActorAddress("x"))), "token"),
    (b"", "token"),
    (None, "undecodable"),   # the right token, then garbage
    ("wrong type", "refused: this inbox takes SubmitOrders"),
])
def test_a_datagram_without_the_token_or_not_of_the_offered_types_is_refused_and_reported(
        inbox: dc.Inbox, data: bytes | str | None, why: str) -> None:
    token = inbox.token.encode("ascii")
    if data is None:
        data = token + b"\x80\x05not a pickle"
    elif isinstance(data, str):
        data = token + pickle.dumps((SubmitOrder(order=_submits(1).orders[0].order, group_id="g1"),
                                     ActorAddress("x")))
    _raw_send(inbox.channel(), data)
    deliveries, problems = inbox.drain()
    assert deliveries == [] and len(problems) == 1 and inbox.refused == 1
    assert why.split(":")[0] in problems[0] or why in problems[0], problems


def test_a_sender_falls_back_when_the_inbox_is_gone_full_or_not_for_that_type() -> None:
    out = dc.Outbox()
    box = dc.Inbox([SubmitOrders])
    channel = box.channel()
    assert not out.send(None, _submits(), ActorAddress("r"))
    assert not out.send(channel, SubmitOrder(order=_submits(1).orders[0].order), ActorAddress("r"))
    sent = 0
    while out.send(channel, _submits(), ActorAddress("r")):  # the kernel queues a few, then says EAGAIN
        sent += 1
        assert sent < 10_000
    assert sent >= 1 and not out.gone  # full is not gone: the next one may go
    assert len(box.drain()[0]) == sent  # what went is all there
    box.close()
    assert not out.send(channel, _submits(), ActorAddress("r")) and out.gone
    out.close()


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to send as another user")
def test_a_datagram_from_another_user_is_refused_before_it_is_unpickled(inbox: dc.Inbox) -> None:
    channel = inbox.channel()
    data = inbox.token.encode("ascii") + pickle.dumps((_submits(), ActorAddress("x")))
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child only sends
        try:
            os.setuid(65534)
            _raw_send(channel, data)
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    deliveries, problems = inbox.drain()
    assert deliveries == [] and "user id 65534" in problems[0]
