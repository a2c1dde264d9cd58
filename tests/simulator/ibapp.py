"""A recording client built only from the official ibapi EClient/EWrapper, for simulator tests."""

from __future__ import annotations

import inspect
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from ibapi.client import EClient
from ibapi.wrapper import EWrapper


@dataclass
class Call:
    """One EWrapper callback as the client saw it."""

    name: str
    args: tuple[Any, ...]
    at: float = field(default_factory=time.monotonic)


class IBApp(EWrapper, EClient):
    """An unmodified EClient whose every EWrapper callback is recorded; tests wait on conditions."""

    def __init__(self) -> None:
        EWrapper.__init__(self)
        EClient.__init__(self, wrapper=self)
        self.calls: list[Call] = []
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        for name, fn in inspect.getmembers(EWrapper, inspect.isfunction):
            if name.startswith("_") or name in ("logAnswer",):
                continue
            setattr(self, name, self._recorder(name))

    def _recorder(self, name: str) -> Callable[..., None]:
        def record(*args: Any) -> None:
            with self._cond:
                self.calls.append(Call(name, args))
                self._cond.notify_all()
        return record

    def start(self, port: int, client_id: int = 1, host: str = "127.0.0.1") -> "IBApp":
        """Connect and start the message loop thread; return once nextValidId arrived."""
        self.connect(host, port, client_id)
        self._thread = threading.Thread(target=self.run, name=f"ibapi-run-{client_id}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self.isConnected():
            self.disconnect()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def named(self, name: str) -> list[Call]:
        with self._cond:
            return [c for c in self.calls if c.name == name]

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
                  timeout: float = 5.0, count: int = 1) -> list[Call]:
        """Wait for `count` calls named `name` whose args satisfy `match`; return them."""
        def pred(calls: list[Call]) -> list[Call] | None:
            hits = [c for c in calls if c.name == name and match(*c.args)]
            return hits if len(hits) >= count else None
        return self.wait_for(pred, timeout, what=f"{count}× {name}")

    def errors(self, code: int | None = None) -> list[Call]:
        return [c for c in self.named("error") if code is None or c.args[2] == code]
