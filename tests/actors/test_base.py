"""The actor shell on both system bases: configuration, run-once failure escalation, publishing, clocks."""

from __future__ import annotations

import copy
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from thespian.actors import ActorAddress, ActorExitRequest, ActorSystem

from actors.base import ShellActor
from actors.clock import Clock, VirtualClock, WallClock, current_clock, install_clock
from messages import (
    ActorFailed,
    ActorReady,
    ActorStatusSnapshot,
    ConfigureActor,
    GetActorStatus,
    Peer,
)

pytestmark = pytest.mark.timeout(60)

ASK = timedelta(seconds=10)
_HELPERS = "tests.actors.helpers_actors"


from tests.actors import helpers_actors as h  # noqa: E402  (after the constants it may use)


@pytest.fixture
def asys(both_asys: ActorSystem) -> ActorSystem:
    return both_asys


def _is_multiproc(asys: ActorSystem) -> bool:
    return "multiproc" in type(asys._systemBase).__module__


def _ask(asys: ActorSystem, to: ActorAddress, msg: Any, expect: type) -> Any:
    reply = asys.ask(to, msg, ASK)
    assert isinstance(reply, expect), f"asked {type(msg).__name__}, expected {expect.__name__}, got {reply!r}"
    return reply


def _start_child(asys: ActorSystem, child: str) -> tuple[ActorAddress, ActorAddress]:
    parent = asys.createActor(h.ParentProbe)
    started = _ask(asys, parent, h.StartChild(child=child), h.ChildStarted)
    return parent, started.reply_to


def _lines(path: Path, prefix: str) -> list[str]:
    return [line for line in path.read_text(encoding="utf-8").splitlines() if line.startswith(prefix)]


# ---------------------------------------------------------------- on both bases


def test_configured_actor_reports_ready_to_supervisor_named_in_configure(asys: ActorSystem) -> None:
    parent, child = _start_child(asys, "FlakyChild")
    configure = ConfigureActor(key="symbol.AAPL", incarnation=3, reply_to=parent)
    asys.tell(child, configure)  # sent by the test, so only reply_to can name the parent
    log = _ask(asys, parent, h.AwaitProbe(ready=1), h.ProbeLog)
    (ready,) = log.ready
    assert (ready.key, ready.incarnation, ready.cause_id) == ("symbol.AAPL", 3, configure.msg_id)
    status = _ask(asys, child, GetActorStatus(), ActorStatusSnapshot)
    assert (status.key, status.incarnation) == ("symbol.AAPL", 3)
    assert status.configured and not status.failed
    assert status.actor_class == f"{_HELPERS}.FlakyChild"


def test_succeeding_handler_replies_with_caused_message_and_actor_stays_up(asys: ActorSystem) -> None:
    parent, child = _start_child(asys, "FlakyChild")
    asys.tell(child, ConfigureActor(key="echo", reply_to=parent))
    for text in ("one", "two"):
        echo = h.Echo(text=text)
        reply = _ask(asys, child, echo, h.Echoed)
        assert (reply.text, reply.key, reply.cause_id) == (text, "echo", echo.msg_id)
        assert reply.ts_ns > 0
    log = _ask(asys, parent, h.AwaitProbe(ready=1), h.ProbeLog)
    assert (log.failures, log.exits) == ((), 0)


def test_raising_handler_runs_once_reports_traceback_to_supervisor_and_exits(
    asys: ActorSystem, tmp_path: Path,
) -> None:
    attempts = tmp_path / "attempts"
    attempts.touch()
    parent, child = _start_child(asys, "FlakyChild")
    asys.tell(child, ConfigureActor(key="flaky", incarnation=2, reply_to=parent))
    explode = h.Explode(attempts_file=str(attempts))
    asys.tell(child, explode)
    log = _ask(asys, parent, h.AwaitProbe(ready=1, failures=1, exits=1), h.ProbeLog)
    assert len(_lines(attempts, "attempt")) == 1
    (failure,) = log.failures
    assert isinstance(failure, ActorFailed)
    assert (failure.key, failure.incarnation, failure.message_type) == ("flaky", 2, "Explode")
    assert failure.message_id == failure.cause_id == explode.msg_id
    assert failure.actor_class == f"{_HELPERS}.FlakyChild"
    assert failure.error == "RuntimeError: boom"
    assert "receiveMsg_Explode" in failure.traceback and "RuntimeError: boom" in failure.traceback
    assert log.exits == 1


def test_failure_report_that_raises_lets_thespian_retry_without_rerunning_handler(
    asys: ActorSystem, tmp_path: Path,
) -> None:
    attempts = tmp_path / "attempts"
    attempts.touch()
    parent, child = _start_child(asys, "ReportFailsChild")
    asys.tell(child, ConfigureActor(key="reporter", reply_to=parent))
    asys.tell(child, h.Explode(attempts_file=str(attempts)))
    log = _ask(asys, parent, h.AwaitProbe(ready=1, failures=1, exits=1), h.ProbeLog)
    # The multiproc bases retry at once with a deepcopy; simpleSystemBase re-queues the retry
    # behind the exit request, so it never reaches the (exited) actor.
    assert len(_lines(attempts, "delivery")) == (2 if _is_multiproc(asys) else 1)
    assert len(_lines(attempts, "attempt")) == 1
    assert len(log.failures) == 1 and log.exits == 1


def test_configure_that_raises_reports_failure_to_supervisor_and_exits(asys: ActorSystem) -> None:
    parent, child = _start_child(asys, "FlakyChild")
    asys.tell(child, ConfigureActor(key="misconfigured", config=h.FAIL_ON_CONFIGURE, reply_to=parent))
    log = _ask(asys, parent, h.AwaitProbe(failures=1, exits=1), h.ProbeLog)
    (failure,) = log.failures
    assert (failure.key, failure.message_type) == ("misconfigured", "ConfigureActor")
    assert "bad configuration" in failure.traceback
    assert log.ready == ()


def test_unconfigured_actor_reports_failure_to_sender(asys: ActorSystem, tmp_path: Path) -> None:
    attempts = tmp_path / "attempts"
    attempts.touch()
    child = asys.createActor(h.FlakyChild)
    explode = h.Explode(attempts_file=str(attempts))
    failure = _ask(asys, child, explode, ActorFailed)
    assert (failure.key, failure.incarnation, failure.cause_id) == ("FlakyChild", 0, explode.msg_id)
    assert len(_lines(attempts, "attempt")) == 1


def test_publish_sends_envelope_with_caused_message_to_bus_peer(asys: ActorSystem) -> None:
    parent, child = _start_child(asys, "FlakyChild")
    bus = Peer(name="bus", address=parent)
    asys.tell(child, ConfigureActor(key="publisher", reply_to=parent, peers=(bus,)))
    command = h.PublishNote(text="hello")
    asys.tell(child, command)
    log = _ask(asys, parent, h.AwaitProbe(ready=1, publications=1), h.ProbeLog)
    (envelope,) = log.publications
    assert isinstance(envelope.message, h.Note)
    assert (envelope.message.text, envelope.message.cause_id) == ("hello", command.msg_id)
    assert envelope.ts_ns == envelope.message.ts_ns > 0


# ---------------------------------------------------------------- one instance, no actor system


class _Offline(h.FlakyChild):
    """A FlakyChild held directly: sends are recorded instead of delivered."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[tuple[ActorAddress, Any]] = []

    @property
    def myAddress(self) -> ActorAddress:  # noqa: N802 (thespian's name)
        return ActorAddress("self")

    def send(self, targetAddr: ActorAddress, msg: Any) -> None:  # noqa: N803
        self.sent.append((targetAddr, msg))


SUPERVISOR = ActorAddress("supervisor")
SENDER = ActorAddress("sender")


def _configured(**fields: Any) -> _Offline:
    actor = _Offline()
    actor.receiveMessage(ConfigureActor(key="k", reply_to=SUPERVISOR, **fields), SENDER)
    actor.sent.clear()
    return actor


def test_guard_skips_redelivered_copy_of_failed_message() -> None:
    actor = _configured()
    msg = h.FailInMemory()
    actor.receiveMessage(msg, SENDER)
    actor.receiveMessage(copy.deepcopy(msg), SENDER)  # what thespian does after a raise
    assert actor.attempts == 1
    failures = [m for to, m in actor.sent if isinstance(m, ActorFailed)]
    exits = [to for to, m in actor.sent if isinstance(m, ActorExitRequest)]
    assert len(failures) == 1 and failures[0].message_id == msg.msg_id
    assert exits == [ActorAddress("self")]
    assert [to for to, m in actor.sent if isinstance(m, ActorFailed)] == [SUPERVISOR]


def test_failed_actor_handles_nothing_more_before_it_exits() -> None:
    actor = _configured()
    actor.receiveMessage(h.FailInMemory(), SENDER)
    sent_before = len(actor.sent)
    actor.receiveMessage(h.Echo(text="late"), SENDER)
    actor.receiveMessage(h.FailInMemory(), SENDER)
    assert actor.attempts == 1
    assert len(actor.sent) == sent_before
    actor.receiveMessage(GetActorStatus(), SENDER)
    (status,) = [m for _, m in actor.sent[sent_before:]]
    assert isinstance(status, ActorStatusSnapshot) and status.failed


def test_unconfigured_instance_reports_failure_to_sender() -> None:
    actor = _Offline()
    actor.receiveMessage(h.FailInMemory(), SENDER)
    assert [to for to, m in actor.sent if isinstance(m, ActorFailed)] == [SENDER]


def test_configure_without_reply_to_takes_sender_as_supervisor() -> None:
    actor = _Offline()
    configure = ConfigureActor(key="k")
    actor.receiveMessage(configure, SENDER)
    (to, ready), = actor.sent
    assert to == SENDER and isinstance(ready, ActorReady) and ready.cause_id == configure.msg_id
    assert actor.parent == SENDER


def test_tell_peer_without_such_peer_fails_the_handler_with_its_name() -> None:
    actor = _configured(peers=(Peer(name="risk", address=ActorAddress("risk")),))
    assert actor.peer("risk") == ActorAddress("risk")
    with pytest.raises(KeyError, match="journal"):
        actor.tell_peer("journal", h.Note(text="x"))


def test_publish_without_bus_peer_sends_nothing() -> None:
    actor = _configured()
    actor.receiveMessage(h.PublishNote(text="x"), SENDER)
    assert actor.sent == [] and not actor.failed


@pytest.fixture
def virtual_clock() -> Iterator[VirtualClock]:
    clock = VirtualClock(1_000)
    previous = install_clock(clock)
    yield clock
    install_clock(previous)


def test_shell_stamps_messages_with_installed_clock(virtual_clock: VirtualClock) -> None:
    actor = _configured()
    virtual_clock.set(5_000)
    echo = h.Echo(text="t")
    actor.receiveMessage(echo, SENDER)
    (_, reply), = actor.sent
    assert reply.ts_ns == 5_000 and actor.now_ns() == 5_000
    assert current_clock() is virtual_clock


def test_virtual_clock_moves_forward_only() -> None:
    clock = VirtualClock(10)
    clock.advance(5)
    clock.set(20)
    assert clock.now_ns() == 20
    with pytest.raises(ValueError):
        clock.set(19)
    with pytest.raises(ValueError):
        clock.advance(-1)
    assert clock.now_ns() == 20


def test_wall_clock_reads_epoch_nanoseconds() -> None:
    before = time.time_ns()
    now = WallClock().now_ns()
    assert before <= now <= time.time_ns()
    assert isinstance(WallClock(), Clock) and isinstance(VirtualClock(), Clock)


def test_shell_actor_without_configuration_uses_class_name_and_process_clock() -> None:
    actor = ShellActor()
    assert (actor.key, actor.incarnation, actor.parent, actor.configured) == ("ShellActor", 0, None, False)
    assert actor.clock is current_clock()


def test_a_driver_can_declare_every_actor_in_process_even_from_a_child_process() -> None:
    import multiprocessing

    from actors import logs

    def child(queue: Any) -> None:
        before = logs.runs_alone()
        logs.run_in_process()
        queue.put((before, logs.runs_alone()))

    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    process = ctx.Process(target=child, args=(queue,))
    process.start()
    try:
        assert queue.get(timeout=10) == (True, False)
    finally:
        process.join(10)
    assert not logs.runs_alone()  # the test process itself never ran alone
