"""Robustness: hostile or broken input on raw sockets costs only that client; an ibapi client beside it keeps trading."""

from __future__ import annotations

import socket
from collections.abc import Callable
from decimal import Decimal

import pytest
from ibapi.protobuf.PlaceOrderRequest_pb2 import PlaceOrderRequest

from simulator.server import SimulatorThread
from simulator.wire import PlaceOrder, decode_request, encode_msg_id, split_message_id
from simulator.wire_base import PROTOBUF_ID_OFFSET
from tests.simulator.conftest import Connect, RawClient, captured_requests
from tests.simulator.ibapp import IBApp, order, stock

pytestmark = pytest.mark.timeout(30)

Raw = Callable[[SimulatorThread], RawClient]
PLACE_ORDER, REQ_CURRENT_TIME = 3, 49
ERROR_READING_REQUEST, ERROR_VALIDATING_REQUEST = 320, 321


@pytest.fixture
def healthy(sim: SimulatorThread, connect: Connect) -> IBApp:
    app = connect(sim, 1)
    app.reqMktData(1, stock("AAPL"), "", False, False, [])
    app.sync()
    return app


def _still_trades(sim: SimulatorThread, app: IBApp) -> None:
    """The healthy client still gets ticks and fills."""
    mark = app.mark()
    sim.step(0.5)
    app.sync()
    assert len(app.named("tickPrice", mark)) >= 3
    oid = app.take_id()
    app.placeOrder(oid, stock("AAPL"), order("BUY", 1))
    app.wait_call("orderStatus", lambda o, s, *a: o == oid and s == "Filled")


def _started(raw: Raw, sim: SimulatorThread, client_id: int = 50) -> RawClient:
    client = raw(sim)
    client.handshake()
    client.start(client_id)
    while client.wait_error()[1] != 2158:  # the last farm notice ends the connect sequence
        pass
    return client


def _frame_of(wire: str, sv: int, kind: type) -> bytes:
    return next(p for p in captured_requests(wire) if isinstance(decode_request(p, sv), kind))


# ---------------------------------------------------------------- handshake


@pytest.mark.parametrize("opening", [
    b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n",                 # garbage instead of "API\0"
    b"API\0" + (5).to_bytes(4, "big") + b"hello",                 # not a version range
    b"API\0" + (9).to_bytes(4, "big") + b"v300..400",             # no version both sides serve
    b"API\0" + (9).to_bytes(4, "big") + b"v226..100",             # empty range
    b"API\0" + (0).to_bytes(4, "big"),                            # zero-length version text
    b"API\0" + (0x7FFFFFFF).to_bytes(4, "big") + b"v100..226",    # a 2 GB handshake length
    b"API\0" + (4).to_bytes(4, "big") + b"\xff\xfe\xfd\xfc",      # not ASCII
    b"\0" * 64,
], ids=["http", "not-a-range", "no-common-version", "empty-range", "zero-length", "2gb-length",
        "not-ascii", "zeros"])
def test_bad_handshake_closes_that_socket_only(sim: SimulatorThread, healthy: IBApp, raw: Raw, opening: bytes) -> None:
    client = raw(sim)
    client.send_raw(opening)
    assert client.wait_closed()
    assert not client.frames  # not even a version reply
    _still_trades(sim, healthy)


def test_handshake_cut_short_then_eof_closes_that_socket(sim: SimulatorThread, healthy: IBApp, raw: Raw) -> None:
    client = raw(sim)
    client.send_raw(b"API\0\0\0")
    client.sock.shutdown(socket.SHUT_WR)
    assert client.wait_closed()
    _still_trades(sim, healthy)


def test_oversized_handshake_stream_without_valid_frame_is_cut_off(sim: SimulatorThread, healthy: IBApp,
                                                                   raw: Raw) -> None:
    client = raw(sim)
    client.send_raw(b"API\0" + (4000).to_bytes(4, "big") + b"v" * 5000)
    assert client.wait_closed()
    _still_trades(sim, healthy)


def test_requests_before_start_api_are_ignored_then_start_api_works(sim: SimulatorThread, healthy: IBApp,
                                                                    raw: Raw, wire: str) -> None:
    client = raw(sim)
    sv = client.handshake()
    client.send(encode_msg_id(REQ_CURRENT_TIME + (PROTOBUF_ID_OFFSET if wire == "protobuf" else 0), sv)
                + (b"" if wire == "protobuf" else b"1\0"))
    client.start(51)
    assert client.wait_error()[1] == 2104  # the first answer is the connect sequence, not a currentTime
    kinds = []
    assert not client.wait_closed(timeout=0.2)
    for payload in client.frames:
        kinds.append(split_message_id(payload, sv)[0] % PROTOBUF_ID_OFFSET)
    assert 49 not in kinds
    _still_trades(sim, healthy)


# ---------------------------------------------------------------- framing


def test_two_gigabyte_length_prefix_closes_that_socket(sim: SimulatorThread, healthy: IBApp, raw: Raw) -> None:
    client = _started(raw, sim)
    client.send_raw((0x7FFFFFFF).to_bytes(4, "big") + b"\0" * 16)
    assert client.wait_closed()
    _still_trades(sim, healthy)
    assert sim.snapshot()["stats"]["protocol_drops"] == 1


def test_truncated_frame_then_eof_closes_that_socket(sim: SimulatorThread, healthy: IBApp, raw: Raw) -> None:
    client = _started(raw, sim)
    client.send_raw((100).to_bytes(4, "big") + b"49\0" + b"1\0")
    client.sock.shutdown(socket.SHUT_WR)
    assert client.wait_closed()
    _still_trades(sim, healthy)


def test_truncated_frame_left_hanging_does_not_block_other_clients(sim: SimulatorThread, healthy: IBApp,
                                                                  raw: Raw) -> None:
    client = _started(raw, sim)
    client.send_raw((1000).to_bytes(4, "big") + b"\0" * 10)
    _still_trades(sim, healthy)
    assert not client.wait_closed(timeout=0.1)  # TWS waits for the rest, as it must


@pytest.mark.parametrize("payload", [b"", b"\0", b"\0\0\0"], ids=["empty", "one-nul", "three-nuls"])
def test_empty_or_idless_frame_gets_error_320_and_connection_stays(sim: SimulatorThread, healthy: IBApp, raw: Raw,
                                                                   payload: bytes) -> None:
    client = _started(raw, sim)
    client.send(payload)
    assert client.wait_error()[1] == ERROR_READING_REQUEST
    _still_trades(sim, healthy)
    assert not client.wait_closed(timeout=0.05)


@pytest.mark.parametrize("msg_id", [0, 999, 10_000, 999_999_999], ids=str)
def test_unknown_message_id_gets_error_321_and_connection_stays(sim: SimulatorThread, healthy: IBApp, raw: Raw,
                                                                wire: str, msg_id: int) -> None:
    client = _started(raw, sim)
    if wire == "protobuf":
        client.send(msg_id.to_bytes(4, "big") + b"\x08\x01")
    else:
        client.send(b"%d\0" % msg_id + b"1\0")
    req_id, code, text = client.wait_error()
    assert (req_id, code) == (-1, ERROR_VALIDATING_REQUEST) and "not supported" in text
    _still_trades(sim, healthy)


def test_unsupported_real_request_gets_error_321_not_silence(sim: SimulatorThread, connect: Connect) -> None:
    app = connect(sim, 2)
    app.reqPnL(7, "DU1234567", "")
    app.wait_call("error", lambda rid, t, code, *a: code == ERROR_VALIDATING_REQUEST)


# ---------------------------------------------------------------- malformed requests


def _mangled_orders(wire: str, sv: int, oid: int) -> list[bytes]:
    """Return PLACE_ORDER payloads for order `oid` whose quantity or price fields are not numbers."""
    payload = _frame_of(wire, sv, PlaceOrder)
    if wire == "protobuf":
        out = []
        for field, value in (("totalQuantity", "abc"), ("totalQuantity", "NaN"), ("totalQuantity", "-5"),
                             ("lmtPrice", float("nan")), ("lmtPrice", float("inf"))):
            req = PlaceOrderRequest()
            req.ParseFromString(payload[4:])
            req.orderId = oid
            setattr(req.order, field, value)
            out.append(payload[:4] + req.SerializeToString())
        out.append(payload[:4] + b"\x08" + oid.to_bytes(1, "big") + b"\x12\xff\xff")  # a truncated submessage
        return out
    fields = payload.split(b"\0")
    fields[1] = b"%d" % oid
    quantity, price = fields.index(b"777"), fields.index(b"12.34")
    out = []
    for index, value in ((quantity, b"abc"), (quantity, b"1e999999"), (price, b"12,34"), (price, b"nan")):
        mangled = list(fields)
        mangled[index] = value
        out.append(b"\0".join(mangled))
    out.append(b"\0".join(fields[:10]))  # cut after ten fields
    return out


def test_malformed_order_fields_get_an_error_for_that_order_and_connection_stays(
        sim: SimulatorThread, healthy: IBApp, raw: Raw, wire: str) -> None:
    client = _started(raw, sim)
    sv = client.server_version
    for n, payload in enumerate(_mangled_orders(wire, sv, 200), start=0):
        client.send(payload)
        req_id, code, text = client.wait_error()
        assert code in (ERROR_READING_REQUEST, 201), (n, code, text)  # unreadable, or read and rejected
        assert req_id in (200, -1)
    assert not client.wait_closed(timeout=0.05)
    _still_trades(sim, healthy)
    assert sim.snapshot()["executions"] == 1 and sim.snapshot()["stats"].get("internal_drops", 0) == 0


@pytest.mark.parametrize("wire", ["protobuf"])  # only a protobuf session can get the other mode's frames
def test_text_frame_in_a_protobuf_session_is_answered_not_fatal(sim: SimulatorThread, healthy: IBApp, raw: Raw) -> None:
    client = _started(raw, sim)
    client.send(b"49\0" + b"1\0")  # REQ_CURRENT_TIME in text form: its first 4 bytes read as a huge id
    assert client.wait_error()[1] in (ERROR_READING_REQUEST, ERROR_VALIDATING_REQUEST)
    _still_trades(sim, healthy)


def test_many_bad_clients_at_once_leave_the_server_serving(sim: SimulatorThread, healthy: IBApp, raw: Raw) -> None:
    clients = [raw(sim) for _ in range(20)]
    for i, client in enumerate(clients):
        client.send_raw(b"API\0" + (0x7FFFFFFF - i).to_bytes(4, "big") if i % 2 else b"junk" * 10)
    assert all(client.wait_closed() for client in clients)
    _still_trades(sim, healthy)
    assert sim.snapshot()["clients"] == [1]


def test_fractional_quantity_order_is_accepted_and_filled(sim: SimulatorThread, healthy: IBApp) -> None:
    # A fractional quantity from a well-formed client is a valid (if unusual) stock order, not garbage.
    oid = healthy.take_id()
    sim.step(0.25)
    healthy.placeOrder(oid, stock("AAPL"), order("BUY", Decimal("0.5")))
    healthy.wait_call("orderStatus", lambda o, s, *a: o == oid and s == "Filled")
