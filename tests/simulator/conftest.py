"""Fixtures for the simulator acceptance tests: a stepped-clock SimulatorThread per test, in both wire modes, and ibapi clients."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from simulator.server import SimulatorConfig, SimulatorThread
from tests.simulator.ibapp import IBApp

SERVER_VERSION = {"protobuf": 226, "text": 200}

MakeSim = Callable[..., SimulatorThread]
Connect = Callable[..., IBApp]


@pytest.fixture(params=["protobuf", "text"])
def wire(request: pytest.FixtureRequest) -> str:
    """The wire mode: protobuf (sv 226, a current TWS) or text (sv 200)."""
    return request.param


@pytest.fixture
def make_sim(request: pytest.FixtureRequest, wire: str) -> MakeSim:
    """Return a factory of started simulators (stepped clock, free loopback port), each stopped at teardown."""
    def make(**overrides: Any) -> SimulatorThread:
        overrides.setdefault("clock", "stepped")
        # Pacing is its own topic: elsewhere the tests' sync round trips must not count against it.
        overrides.setdefault("pacing_msgs_per_s", 0)
        config = SimulatorConfig(host="127.0.0.1", port=0, wire=wire, **overrides)  # type: ignore[arg-type]
        sim = SimulatorThread(config)
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
