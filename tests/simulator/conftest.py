"""Fixtures for the simulator acceptance tests: a stepped-clock SimulatorThread per test, in both wire modes, and ibapi clients."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from ibapi.execution import ExecutionFilter
from ibapi.message import IN, OUT
from ibapi.order_cancel import OrderCancel
from ibapi.protobuf.ErrorMessage_pb2 import ErrorMessage
from ibapi.protobuf.StartApiRequest_pb2 import StartApiRequest

from simulator.server import SimulatorConfig, SimulatorThread
from simulator.wire import FrameParser, encode_msg_id, parse_handshake, split_message_id, uses_protobuf
from simulator.wire_base import PROTOBUF_ID_OFFSET
from tests.simulator.ibapp import IBApp, order, stock

START_API: int = OUT.START_API
ERR_MSG: int = IN.ERR_MSG

SERVER_VERSION = {"protobuf": 226, "text": 200}

MakeSim = Callable[..., SimulatorThread]
Connect = Callable[..., IBApp]


@pytest.fixture(params=["protobuf", "text"])
def wire(request: pytest.FixtureRequest) -> str:
    """The wire mode: protobuf (sv 226, a current TWS) or text (sv 200)."""
    return request.param


@pytest.fixture
def make_sim(request: pytest.FixtureRequest, wire: str) -> MakeSim:
    """Return a factory of started simulators (stepped clock, free loopback port, pacing off unless asked), each stopped at teardown.

    `wall` replaces the simulator's wall clock (pacing windows, refuse); config fields go by keyword.
    """
    def make(wall: Callable[[], float] = time.monotonic, **overrides: Any) -> SimulatorThread:
        overrides.setdefault("clock", "stepped")
        # Pacing is its own topic: elsewhere the tests' sync round trips must not count against it.
        overrides.setdefault("pacing_msgs_per_s", 0)
        config = SimulatorConfig(host="127.0.0.1", port=0, wire=wire, **overrides)  # type: ignore[arg-type]
        sim = SimulatorThread(config, wall=wall)
        request.addfinalizer(sim.stop)
        return sim.start()
    return make


@pytest.fixture
def sim(make_sim: MakeSim) -> SimulatorThread:
    return make_sim()


@pytest.fixture
def connect(request: pytest.FixtureRequest) -> Connect:
    """Return a factory of connected IBApp clients (`wait=False` for connections expected to fail), each stopped at teardown."""
    def make(simulator: SimulatorThread, client_id: int = 1, *, wait: bool = True) -> IBApp:
        app = IBApp()
        request.addfinalizer(app.stop)
        return app.start(simulator.port, client_id, wait=wait)
    return make


@pytest.fixture
def app(sim: SimulatorThread, connect: Connect) -> IBApp:
    return connect(sim, 1)


def eventually(predicate: Callable[[], Any], timeout: float = 5.0, what: str = "") -> Any:
    """Poll predicate() until it is truthy (return it) or the deadline passes (fail)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or predicate}")
        time.sleep(0.005)


def step_until(simulator: SimulatorThread, app: IBApp, predicate: Callable[[], Any], seconds: float = 1.0,
               max_steps: int = 60) -> Any:
    """Step market time by `seconds` until predicate() (checked after the client caught up) is truthy; return it."""
    for _ in range(max_steps):
        simulator.step(seconds)
        app.sync()
        value = predicate()
        if value:
            return value
    raise AssertionError(f"condition not met after {max_steps} steps of {seconds} s; "
                         f"last calls: {[(c.name, c.args[:3]) for c in app.calls[-10:]]}")


@pytest.fixture(name="step_until")
def step_until_fixture() -> Callable[..., Any]:
    """The step_until function, for test modules (conftest helpers are not importable)."""
    return step_until


# ---------------------------------------------------------------- raw sockets (robustness, fuzz)


class RawClient:
    """A hand-driven TWS API socket: handshake, frames, and what the server answers or whether it hung up."""

    def __init__(self, port: int, timeout: float = 5.0) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.server_version = 0
        self.frames: list[bytes] = []
        self.closed = False
        self._parser = FrameParser()

    def handshake(self, versions: bytes = b"v100..226") -> int:
        """Send the API prefix and version range; return the server version of the reply."""
        self.sock.sendall(b"API\0" + len(versions).to_bytes(4, "big") + versions)
        reply = self.read_frame()
        self.server_version = int(reply.split(b"\0")[0])
        return self.server_version

    def start(self, client_id: int) -> None:
        """Send START_API as ibapi does in this session's mode."""
        sv = self.server_version
        if uses_protobuf(sv, "protobuf"):
            body = StartApiRequest(clientId=client_id, optionalCapabilities="").SerializeToString()
            self.send(encode_msg_id(START_API + PROTOBUF_ID_OFFSET, sv) + body)
        else:
            self.send(encode_msg_id(START_API, sv) + b"2\0%d\0\0" % client_id)

    def send(self, payload: bytes) -> None:
        self.send_raw(len(payload).to_bytes(4, "big") + payload)

    def send_raw(self, data: bytes) -> None:
        try:
            self.sock.sendall(data)
        except OSError:
            self.closed = True

    def read_frame(self, timeout: float = 5.0) -> bytes:
        deadline = time.monotonic() + timeout
        while not self.frames:
            if not self._receive(deadline):
                raise AssertionError("the server closed the connection instead of answering")
        return self.frames.pop(0)

    def _receive(self, deadline: float) -> bool:
        """Read once (until the deadline); False once the server has closed the socket."""
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError("timed out waiting for the server")
        self.sock.settimeout(left)
        try:
            data = self.sock.recv(1 << 16)
        except socket.timeout:
            return True
        except OSError:
            data = b""
        if not data:
            self.closed = True
            return False
        self.frames += self._parser.feed(data)
        return True

    def wait_closed(self, timeout: float = 5.0) -> bool:
        """Return True once the server hung up (reading and keeping what it sent), False at the deadline."""
        deadline = time.monotonic() + timeout
        while not self.closed:
            if time.monotonic() >= deadline:
                return False
            try:
                self._receive(deadline)
            except AssertionError:
                return False
        return True

    def wait_error(self, timeout: float = 5.0) -> tuple[int, int, str]:
        """Return the next ERR_MSG as (id, code, text), skipping other messages."""
        deadline = time.monotonic() + timeout
        while True:
            for i, payload in enumerate(self.frames):
                found = decode_error(payload, self.server_version)
                if found is not None:
                    del self.frames[:i + 1]
                    return found
            self.frames.clear()
            if not self._receive(deadline):
                raise AssertionError("the server closed the connection instead of sending an error")

    def drain(self) -> None:
        """Discard whatever has arrived, without waiting."""
        self.sock.setblocking(False)
        try:
            while data := self.sock.recv(1 << 16):
                self._parser.feed(data)
            self.closed = True
        except (BlockingIOError, InterruptedError):
            pass
        except OSError:
            self.closed = True
        finally:
            self.sock.setblocking(True)
        self.frames.clear()

    def close(self) -> None:
        self.sock.close()


def decode_error(payload: bytes, server_version: int) -> tuple[int, int, str] | None:
    """Return (id, code, text) if `payload` is an ERR_MSG, else None."""
    raw_id, body = split_message_id(payload, server_version)
    if raw_id == ERR_MSG + PROTOBUF_ID_OFFSET:
        msg = ErrorMessage()
        msg.ParseFromString(body)
        return msg.id, msg.errorCode, msg.errorMsg
    if raw_id == ERR_MSG:
        fields = body.split(b"\0")  # sv 194+: reqId, errorCode, errorMsg, advancedOrderRejectJson, errorTime
        return int(fields[0]), int(fields[1]), fields[2].decode()
    return None


@pytest.fixture
def raw(request: pytest.FixtureRequest) -> Callable[[SimulatorThread], RawClient]:
    """Return a factory of raw sockets to a simulator, each closed at teardown."""
    def make(simulator: SimulatorThread) -> RawClient:
        client = RawClient(simulator.port)
        request.addfinalizer(client.close)
        return client
    return make


class _Relay:
    """A loopback relay between one client and the simulator that records every byte the client sends."""

    def __init__(self, upstream_port: int) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.upstream_port = upstream_port
        self.sent = bytearray()
        self._threads = [threading.Thread(target=self._accept, daemon=True)]
        self._threads[0].start()

    def _accept(self) -> None:
        client, _ = self.listener.accept()
        server = socket.create_connection(("127.0.0.1", self.upstream_port))
        pumps = [threading.Thread(target=self._pump, args=(client, server, True), daemon=True),
                 threading.Thread(target=self._pump, args=(server, client, False), daemon=True)]
        for t in pumps:
            t.start()
        for t in pumps:
            t.join()

    def _pump(self, src: socket.socket, dst: socket.socket, record: bool) -> None:
        try:
            while data := src.recv(1 << 16):
                if record:
                    self.sent += data
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self.listener.close()
        self._threads[0].join(timeout=5)


_CAPTURED: dict[str, list[bytes]] = {}


def _drive_every_request(app: IBApp) -> None:
    """Send one of each request the simulator serves (and a few it does not), as a trading client would."""
    aapl = stock("AAPL")
    oid = app.take_id()
    app.reqCurrentTime()
    app.reqIds(-1)
    app.reqManagedAccts()
    app.reqMarketDataType(1)
    app.reqMktData(1, aapl, "", False, False, [])
    app.reqContractDetails(2, stock("MSFT"))
    app.reqHistoricalData(3, aapl, "", "1800 S", "1 min", "TRADES", 1, 1, False, [])
    app.reqRealTimeBars(4, aapl, 5, "MIDPOINT", False, [])
    app.placeOrder(oid, aapl, order("BUY", 777, "LMT", lmtPrice=12.34, tif="GTC", orderRef="capture"))
    app.placeOrder(oid, aapl, order("BUY", 778, "LMT", lmtPrice=12.35, tif="GTC", orderRef="capture"))
    app.placeOrder(oid + 1, aapl, order("SELL", 5, "TRAIL", trailingPercent=1.5))
    app.placeOrder(oid + 2, aapl, order("BUY", 10, "STP LMT", auxPrice=500.0, lmtPrice=501.0, transmit=False))
    app.placeOrder(oid + 3, aapl, order("SELL", 10, "LMT", lmtPrice=600.0, parentId=oid + 2, transmit=False,
                                        ocaGroup="cap", ocaType=2))
    app.placeOrder(oid + 4, aapl, order("SELL", 10, "STP", auxPrice=100.0, parentId=oid + 2, tif="DAY"))
    app.placeOrder(oid + 5, aapl, order("BUY", Decimal("1"), "MKT", tif="IOC"))
    app.cancelOrder(oid, OrderCancel())
    app.reqOpenOrders()
    app.reqAllOpenOrders()
    app.reqCompletedOrders(True)
    app.reqPositions()
    app.cancelPositions()
    app.reqAccountSummary(5, "All", "NetLiquidation,TotalCashValue,$LEDGER")
    app.cancelAccountSummary(5)
    f = ExecutionFilter()
    f.symbol, f.side, f.time = "AAPL", "BUY", "20240102 09:00:00"
    app.reqExecutions(6, f)
    app.cancelHistoricalData(3)
    app.cancelRealTimeBars(4)
    app.cancelMktData(1)
    app.reqAccountUpdates(True, "")     # not simulated
    app.reqPnL(7, "DU1234567", "")      # not simulated
    app.reqGlobalCancel(OrderCancel())
    app.sync()


def captured_requests(wire: str) -> list[bytes]:
    """Return the frame payloads an unmodified EClient wrote while sending every request (START_API first), per wire."""
    if wire not in _CAPTURED:
        sim = SimulatorThread(SimulatorConfig(clock="stepped", wire=wire, pacing_msgs_per_s=0)).start()
        relay = _Relay(sim.port)
        app = IBApp()
        try:
            app.start(relay.port, 90)
            sim.step(1)
            _drive_every_request(app)
        finally:
            app.stop()
            relay.close()
            sim.stop()
        data = bytes(relay.sent)
        got = parse_handshake(data)
        assert got is not None, "no handshake captured"
        _CAPTURED[wire] = FrameParser().feed(data[got[1]:])
    return _CAPTURED[wire]
