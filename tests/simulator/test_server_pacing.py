"""Acceptance: IB's 50 messages/s pacing as the official ibapi client meets it (error 100, then a disconnect)."""

from __future__ import annotations

import time

import pytest

from tests.simulator.conftest import Connect, MakeSim, eventually

pytestmark = pytest.mark.timeout(30)


def test_burst_above_limit_gets_error_100_and_only_the_allowed_messages_answered(
        make_sim: MakeSim, connect: Connect) -> None:
    sim = make_sim(pacing_msgs_per_s=50, wall=lambda: 1000.0)  # a frozen wall: every message in one second
    app = connect(sim)
    for _ in range(80):
        app.reqCurrentTime()
    app.wait_call("error", lambda rid, t, code, *a: rid == -1 and code == 100)
    error_at = next(i for i, c in enumerate(app.calls) if c.name == "error" and c.args[2] == 100)
    answered = [c for c in app.calls[:error_at] if c.name == "currentTime"]
    # START_API was message 1 of the second: 49 answers fill the 50, the 51st trips the limit.
    assert len(answered) == 49
    eventually(lambda: sim.snapshot()["stats"]["paced_out"] == 80 - 49, what="the 31 excess messages dropped")
    assert "Max rate of messages per second has been exceeded" in app.errors(100)[0].args[3]
    assert app.isConnected() and len(app.errors(100)) == 1


def test_burst_within_limit_is_served_whole(make_sim: MakeSim, connect: Connect) -> None:
    sim = make_sim(pacing_msgs_per_s=50)
    app = connect(sim)
    for _ in range(45):
        app.reqCurrentTime()
    app.wait_call("currentTime", count=45)
    assert not app.errors(100)


def test_client_that_keeps_exceeding_the_limit_is_disconnected_while_others_keep_working(
        make_sim: MakeSim, connect: Connect) -> None:
    sim = make_sim(pacing_msgs_per_s=20, pacing_strikes=2)
    flooder, calm = connect(sim, 1), connect(sim, 2)
    deadline = time.monotonic() + 10
    while not flooder.named("connectionClosed"):
        assert time.monotonic() < deadline, "the flooding client was never disconnected"
        for _ in range(30):
            flooder.reqCurrentTime()
        try:
            flooder.wait_call("connectionClosed", timeout=0.2)
        except AssertionError:
            pass
    assert len(flooder.errors(100)) >= 2
    calm.sync()
    assert sim.snapshot()["clients"] == [2] and not calm.errors(100)
