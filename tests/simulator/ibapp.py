"""A recording client built only from the official ibapi EClient/EWrapper, for simulator tests."""

from __future__ import annotations

import contextlib
import inspect
import socket
import threading
import time
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Callable

from ibapi.client import EClient
from ibapi.contract import Contract
from ibapi.order import Order
from ibapi.wrapper import EWrapper


@dataclass
class Call:
    """One EWrapper callback as the client saw it."""

    name: str
    args: tuple[Any, ...]
    at: float = field(default_factory=time.monotonic)


class IBApp(EWrapper, EClient):
    """An unmodified EClient whose every EWrapper callback is recorded; tests wait on conditions.

    The same object can reconnect after its socket dropped: `start` again (ibapi allows it when
    each connection gets its own `run` thread).
    """

    def __init__(self) -> None:
        EWrapper.__init__(self)
        EClient.__init__(self, wrapper=self)
        self.calls: list[Call] = []
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._next_id = 0
        for name, fn in inspect.getmembers(EWrapper, inspect.isfunction):
            if name.startswith("_") or name in ("logAnswer",):
                continue
            setattr(self, name, self._recorder(name))

    def _recorder(self, name: str) -> Callable[..., None]:
        def record(*args: Any) -> None:
            with self._cond:
                if name == "nextValidId":
                    self._next_id = max(self._next_id, args[0])
                self.calls.append(Call(name, args))
                self._cond.notify_all()
        return record

    def start(self, port: int, client_id: int = 1, host: str = "127.0.0.1", *,
              wait: bool = True, timeout: float = 5.0) -> "IBApp":
        """Connect and start a message loop thread; with `wait`, return once this connection's nextValidId arrived."""
        if self._thread is not None:
            self._thread.join(timeout)  # the previous connection's loop must be gone before a new one
        seen = len(self.named("nextValidId"))
        self.connect(host, port, client_id)
        self._thread = threading.Thread(target=self.run, name=f"ibapi-run-{client_id}", daemon=True)
        self._thread.start()
        if wait:
            self.wait_for(lambda calls: len([c for c in calls if c.name == "nextValidId"]) > seen,
                          timeout, what=f"nextValidId of client {client_id}")
        return self

    def stop(self, join: bool = False) -> None:
        """Disconnect; the loop thread ends by itself within ibapi's 0.2 s queue poll (`join` waits for it)."""
        if self.isConnected():
            sock = getattr(self.conn, "socket", None)
            if sock is not None:
                # ibapi's reader thread sits in recv (1 s timeout) and a bare close() waits for it:
                # shut down first so the server sees the FIN now.
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
            self.disconnect()
        if join and self._thread is not None:
            self._thread.join(timeout=5)

    def sync(self, timeout: float = 5.0) -> None:
        """Round-trip a reqCurrentTime: every message the server sent before it has been handled on return."""
        seen = len(self.named("currentTime"))
        self.reqCurrentTime()
        self.wait_for(lambda calls: len([c for c in calls if c.name == "currentTime"]) > seen,
                      timeout, what="currentTime (sync)")

    def take_id(self) -> int:
        """Return a fresh order id: the highest nextValidId seen, then counting up."""
        with self._cond:
            oid = self._next_id
            self._next_id += 1
            return oid

    def mark(self) -> int:
        """Return the number of calls recorded so far, to look only at later ones (`after=`)."""
        with self._cond:
            return len(self.calls)

    def named(self, name: str, after: int = 0) -> list[Call]:
        with self._cond:
            return [c for c in self.calls[after:] if c.name == name]

    def wait_for(self, predicate: Callable[[list[Call]], Any], timeout: float = 5.0, what: str = "") -> Any:
        """Wait until predicate(calls) is truthy and return its value; fail with the calls seen."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                value = predicate(self.calls)
                if value:
                    return value
                left = deadline - time.monotonic()
                if left <= 0:
                    seen = ", ".join(f"{c.name}{c.args[:4]}" for c in self.calls[-15:])
                    raise AssertionError(f"timed out waiting for {what or predicate}; last calls: {seen}")
                self._cond.wait(left)

    def wait_call(self, name: str, match: Callable[..., bool] = lambda *a: True,
                  timeout: float = 5.0, count: int = 1, after: int = 0) -> list[Call]:
        """Wait for `count` calls named `name` (recorded at index >= `after`) whose args satisfy `match`; return them."""
        def pred(calls: list[Call]) -> list[Call] | None:
            hits = [c for c in calls[after:] if c.name == name and match(*c.args)]
            return hits if len(hits) >= count else None
        return self.wait_for(pred, timeout, what=f"{count}× {name}")

    def errors(self, code: int | None = None, after: int = 0) -> list[Call]:
        return [c for c in self.named("error", after) if code is None or c.args[2] == code]


def stock(symbol: str, currency: str = "USD") -> Contract:
    """Return an ibapi Contract for a SMART-routed stock."""
    c = Contract()
    c.symbol, c.secType, c.exchange, c.currency = symbol, "STK", "SMART", currency
    return c


def order(action: str, quantity: int | str | Decimal, order_type: str = "MKT", **fields: Any) -> Order:
    """Return an ibapi Order; `fields` are Order attributes by their ibapi names (lmtPrice, tif, ...)."""
    o = Order()
    o.action, o.totalQuantity, o.orderType = action, Decimal(quantity), order_type
    for name, value in fields.items():
        if not hasattr(o, name):
            raise AttributeError(f"ibapi Order has no field {name!r}")
        setattr(o, name, value)
    return o
