"""SignalSource on a real actor system: demo, a real HTTP server on loopback, a JSON-lines file, restarts."""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from thespian.actors import ActorAddress, ActorExitRequest, ActorSystem

from actors.signal_source import (
    BACKOFF_MAX_S,
    FILE_MAX_BYTES,
    SignalSource,
    SourceChange,
    SourceState,
    backoff_s,
    with_cursor,
)
from core.config import Config, parse_config
from core.signals import Seen
from messages import (
    ActorReady,
    ActorStatusSnapshot,
    Direction,
    GetActorStatus,
    Peer,
    PredictionSignal,
    Publish,
    SignalRejected,
    Snapshot,
)
from tests.actors import helpers_runtime as h

pytestmark = pytest.mark.timeout(60)

ASK = timedelta(seconds=10)
_ACTOR = f"{SignalSource.__module__}.{SignalSource.__qualname__}"
SECRET = "Bearer s3cr3t-t0ken-42"
ENV = "IBACTORS_TEST_SIGNAL_KEY"
D = Decimal


def _signal(sid: str, symbol: str = "AAPL", direction: str = "LONG", confidence: Any = 0.8, **more: Any) -> dict:
    return {"id": sid, "symbol": symbol, "direction": direction, "confidence": confidence, **more}


def _wait_for(condition: Callable[[], bool], what: str | Callable[[], str], deadline_s: float = 10.0) -> None:
    deadline = time.monotonic() + deadline_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what if isinstance(what, str) else what()}"
        time.sleep(0.01)


# ---------------------------------------------------------------- a scripted prediction API


@dataclass(frozen=True)
class Reply:
    status: int = 200
    body: Any = b"[]"          # bytes as they are; anything else is sent as JSON
    hang_s: float = 0.0        # wait this long before answering (released early at shutdown)
    location: str = ""         # a Location header (for a redirect)


@dataclass(frozen=True)
class Request:
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]


class SignalServer:
    """An HTTP server on 127.0.0.1 that answers GETs from a script and records each request."""

    def __init__(self) -> None:
        self.script: deque[Reply] = deque()
        self.requests: list[Request] = []
        self.lock = threading.Lock()
        self.release = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                parts = urlsplit(self.path)
                with server.lock:
                    server.requests.append(Request(path=parts.path, query=parse_qs(parts.query),
                                                 headers={k.lower(): v for k, v in self.headers.items()}))
                    reply = server.script.popleft() if server.script else Reply()
                if reply.hang_s:
                    server.release.wait(reply.hang_s)
                body = reply.body if isinstance(reply.body, bytes) else json.dumps(reply.body).encode()
                try:
                    self.send_response(reply.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    if reply.location:
                        self.send_header("Location", reply.location)
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:
                    pass  # the poller gave up on a hanging answer

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str = "/v1/predictions") -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}?model=flow"

    def queue(self, *replies: Reply) -> None:
        with self.lock:
            self.script.extend(replies)

    def seen(self, path: str | None = None) -> list[Request]:
        with self.lock:
            return [r for r in self.requests if path is None or r.path == path]

    def close(self) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The credential in the environment, no proxies: set before the actor system forks its processes."""
    monkeypatch.setenv(ENV, SECRET)
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def asys(env: None, tcp_asys: ActorSystem) -> ActorSystem:
    return tcp_asys


@pytest.fixture
def server(asys: ActorSystem) -> Iterator[SignalServer]:
    # Started after the actor system: its threads are never in a forked process.
    srv = SignalServer()
    yield srv
    srv.close()


# ---------------------------------------------------------------- the rig


def _config(tmp_path: Path, signals: dict[str, Any]) -> Config:
    return parse_config({"system": {"log_dir": str(tmp_path / "logs"), "state_dir": str(tmp_path / "state")},
                         "symbols": [{"symbol": "AAPL"}, {"symbol": "MSFT"}],
                         "signals": {"max_age_s": 60, **signals}})


def _http(url: str, **more: Any) -> dict[str, Any]:
    return {"source": "http", "http": {"url": url, "poll_interval_s": 0.05, "timeout_s": 0.3,
                                       "auth_env": ENV, **more}}


class Rig:
    """A SignalSource under a stand-in supervisor, with recording strategy and bus."""

    def __init__(self, asys: ActorSystem, config: Config) -> None:
        self.asys = asys
        self.config = config
        self.log = Path(str(config.system.log_dir)) / "system.log"
        self.strategy = asys.createActor(h.Recorder)
        self.bus = asys.createActor(h.Recorder)
        self.parent = self._start(state=None, incarnation=1)

    def _start(self, *, state: object, incarnation: int) -> ActorAddress:
        parent = self.asys.createActor(h.StandInSupervisor)
        peers = (Peer(name="strategy", address=self.strategy), Peer(name="bus", address=self.bus))
        # restart=False: the stand-in would restart once per ChildActorExited, and thespian may deliver
        # two for one exit (the child's goodbye and the parent's SIGCHLD); restart() does it once.
        info = self.asys.ask(parent, h.StartChild(actor_class=_ACTOR, key="signals", config=self.config,
                                                  state=state, peers=peers, restart=False,
                                                  incarnation=incarnation), ASK)
        assert isinstance(info, h.ChildInfo) and info.address is not None
        self.records(parent, ActorReady, 1)
        return parent

    def records(self, who: ActorAddress, cls: type, count: int = 0) -> list[Any]:
        answer = self.asys.ask(who, h.AwaitRecords(type_name=cls.__name__, count=count), ASK)
        assert isinstance(answer, h.Records), f"waited for {count} {cls.__name__}, got {answer!r}"
        return [m for m in answer.messages if isinstance(m, cls)]

    def signals(self, count: int = 0) -> list[PredictionSignal]:
        return self.records(self.strategy, PredictionSignal, count)

    def rejected(self, count: int = 0) -> list[SignalRejected]:
        return [p.message for p in self.records(self.bus, Publish, count) if isinstance(p.message, SignalRejected)]

    def child(self) -> ActorAddress:
        info = self.asys.ask(self.parent, h.GetChild(), ASK)
        assert isinstance(info, h.ChildInfo) and info.address is not None
        return info.address

    def status(self) -> str:
        answer = self.asys.ask(self.child(), GetActorStatus(), ASK)
        assert isinstance(answer, ActorStatusSnapshot)
        return answer.detail

    def wait_status(self, fragment: str) -> str:
        seen: list[str] = []
        _wait_for(lambda: seen.append(self.status()) or fragment in seen[-1],
                  lambda: f"status with {fragment!r}, last {seen[-1:]}")
        return seen[-1]

    def restart(self) -> None:
        """Stop the child as a crash would, then start the next incarnation from its Snapshots as a supervisor does."""
        self.asys.tell(self.child(), ActorExitRequest())
        exited = lambda: self.asys.ask(self.parent, h.AwaitRecords(), ASK).exits >= 1  # noqa: E731
        _wait_for(exited, "the child's exit")
        snapshots = self.records(self.parent, Snapshot)
        assert snapshots and all(isinstance(s.state, SourceChange) for s in snapshots)
        state: object = None
        for snapshot in snapshots:
            state = snapshot.state.apply(state)
        self.parent = self._start(state=state, incarnation=2)

    def log_text(self) -> str:
        return self.log.read_text(encoding="utf-8") if self.log.exists() else ""


# ---------------------------------------------------------------- pure helpers of the shell


@pytest.mark.parametrize(("url", "cursor", "expected"), [
    ("http://h/p", "", "http://h/p"),
    ("http://h/p", "c-1", "http://h/p?cursor=c-1"),
    ("http://h/p?model=x&cursor=old", "c 2&x", "http://h/p?model=x&cursor=c+2%26x"),
    ("http://h/p?model=x&cursor=old", "", "http://h/p?model=x"),
])
def test_with_cursor_merges_cursor_into_query(url: str, cursor: str, expected: str) -> None:
    assert with_cursor(url, cursor) == expected


@pytest.mark.parametrize(("interval", "failures", "expected"), [
    (5.0, 0, 5.0), (5.0, 1, 10.0), (5.0, 3, 40.0), (5.0, 4, BACKOFF_MAX_S), (5.0, 10_000, BACKOFF_MAX_S),
    (120.0, 2, 120.0), (0.05, 2, 0.2),
])
def test_backoff_doubles_per_failure_up_to_the_cap(interval: float, failures: int, expected: float) -> None:
    assert backoff_s(interval, failures) == pytest.approx(expected)


def test_source_change_merges_resume_point_and_new_ids_into_kept_state() -> None:
    kept = SourceState(cursor="c-1", seen=Seen().add_all([("http", "a")]))
    change = SourceChange.of(SourceState(cursor="c-2", demo_n=3), (("http", "b"),))

    merged = change.apply(kept)

    assert (merged.cursor, merged.demo_n) == ("c-2", 3)
    assert merged.seen.keys == (("http", "a"), ("http", "b"))
    assert change.apply(None).seen.keys == (("http", "b"),)


# ---------------------------------------------------------------- http


def test_http_good_signals_reach_strategy_once_with_cursor_and_auth(asys: ActorSystem, server: SignalServer,
                                                                    tmp_path: Path) -> None:
    server.queue(Reply(body={"signals": [_signal("a1", expires=time.time() + 60),
                                         _signal("a2", "msft", "bearish", 0.6, reference_price=101.5)],
                             "cursor": "c-1"}),
                 Reply(body={"signals": [_signal("a2"), _signal("a3", direction="neutral")], "cursor": "c-2"}))
    rig = Rig(asys, _config(tmp_path, _http(server.url())))

    signals = rig.signals(3)
    _wait_for(lambda: len(server.seen()) >= 5, "more polls after the scripted ones")

    assert [(s.source_id, s.symbol, s.direction, s.confidence) for s in rig.signals()] == [
        ("a1", "AAPL", Direction.LONG, D("0.8")), ("a2", "MSFT", Direction.SHORT, D("0.6")),
        ("a3", "AAPL", Direction.FLAT, D("0.8"))]
    assert signals[1].reference_price == D("101.5") and signals[0].expires_ns > signals[0].created_ns > 0
    (duplicate,) = rig.rejected(1)
    assert (duplicate.code, duplicate.source_id, duplicate.source) == ("DUPLICATE", "a2", "http")
    cursors = [r.query.get("cursor") for r in server.seen()]
    assert cursors[:3] == [None, ["c-1"], ["c-2"]] and set(map(str, cursors[3:])) == {"['c-2']"}
    first = server.seen()[0]
    assert first.path == "/v1/predictions" and first.query["model"] == ["flow"]
    assert first.headers["authorization"] == SECRET and first.headers["accept"] == "application/json"
    assert "signal a1 AAPL LONG 0.8 accepted" in rig.log_text()
    assert "s3cr3t" not in rig.log_text()


def test_http_bad_items_are_rejected_on_the_bus_with_reasons(asys: ActorSystem, server: SignalServer,
                                                             tmp_path: Path) -> None:
    items = b"".join([
        b'[{"id": "w1", "symbol": "AAPL", "direction": "LONG", "confidence": "high"},',
        b' {"id": "n1", "symbol": "AAPL", "direction": "LONG", "confidence": NaN},',
        b' {"id": "u1", "symbol": "TSLA", "direction": "LONG", "confidence": 0.7},',
        b' {"id": "s1", "symbol": "AAPL", "direction": "LONG", "confidence": 0.7, "ts": 1000000000},',
        b' {"id": "g1", "symbol": "MSFT", "direction": "SHORT", "confidence": 0.9}]',
    ])
    server.queue(Reply(body=b'{"signals": [ {"id": "' + SECRET.encode() + b'" '), Reply(body=items))
    rig = Rig(asys, _config(tmp_path, _http(server.url())))

    (good,) = rig.signals(1)
    rejected = rig.rejected(5)

    assert good.source_id == "g1"
    assert [r.code for r in rejected] == ["MALFORMED", "WRONG_TYPE", "BAD_VALUE", "UNKNOWN_SYMBOL", "STALE"]
    assert "body is not JSON" in rejected[0].reason and rejected[0].raw == '{"signals": [ {"id": "***" '
    assert not any("s3cr3t" in r.raw or "s3cr3t" in r.reason for r in rejected)
    assert rejected[1].reason.startswith('item 1: confidence = "high": expected a number in [0, 1]')
    assert "confidence = NaN" in rejected[2].reason and rejected[2].source_id == "n1"
    assert 'symbol = "TSLA"' in rejected[3].reason and rejected[3].symbol == "TSLA"
    assert "item 4: ts = 1000000000" in rejected[4].reason
    text = rig.log_text()
    assert "rejected (UNKNOWN_SYMBOL): item 3: symbol" in text and "poll of" in text and "malformed body" in text
    assert "s3cr3t" not in text


def test_http_500_and_hanging_server_are_survived_and_next_poll_delivers(asys: ActorSystem, server: SignalServer,
                                                                          tmp_path: Path) -> None:
    server.queue(Reply(status=500, body=b"oops"), Reply(hang_s=2.0),
                 Reply(body={"signals": [_signal("g9")], "cursor": "c-9"}))
    rig = Rig(asys, _config(tmp_path, _http(server.url())))

    (signal,) = rig.signals(1)
    detail = rig.wait_status("last poll ok")

    assert signal.source_id == "g9"
    assert "http: 1 accepted, rejected: none" in detail
    assert "poll errors: 1 HTTP 500, 1 timeout" in detail and "cursor c-9" in detail
    assert rig.rejected() == []
    text = rig.log_text()
    assert "failed (HTTP 500)" in text and "failed (timeout)" in text and "poll ok again after 2 failure(s)" in text


def test_http_redirect_is_a_failed_poll_and_the_credential_stays_home(asys: ActorSystem, server: SignalServer,
                                                                       tmp_path: Path) -> None:
    server.queue(Reply(status=302, body=b"", location=server.url("/elsewhere")),
                 Reply(body=[_signal("d1")]))
    rig = Rig(asys, _config(tmp_path, _http(server.url())))

    (signal,) = rig.signals(1)

    assert signal.source_id == "d1"
    assert server.seen("/elsewhere") == []
    assert "poll errors: 1 HTTP 302" in rig.wait_status("last poll ok")
    assert "redirects are not followed" in rig.log_text()


def test_http_unset_auth_env_stops_the_source_without_polling(asys: ActorSystem, server: SignalServer,
                                                              tmp_path: Path) -> None:
    broken = Rig(asys, _config(tmp_path, _http(server.url("/broken"), auth_env="IBACTORS_TEST_UNSET_KEY")))
    working = Rig(asys, _config(tmp_path, _http(server.url("/working"))))

    _wait_for(lambda: len(server.seen("/working")) >= 3, "the working source's polls")

    assert server.seen("/broken") == []
    detail = broken.status()
    assert "not running" in detail and "IBACTORS_TEST_UNSET_KEY" in detail and "not set" in detail
    assert "last poll ok" in working.status()
    assert broken.log_text().count("does not run") == 1


def test_http_restart_resumes_at_saved_cursor_without_redelivery(asys: ActorSystem, server: SignalServer,
                                                                 tmp_path: Path) -> None:
    server.queue(Reply(body={"signals": [_signal("r1"), _signal("r2")], "cursor": "c-5"}))
    rig = Rig(asys, _config(tmp_path, _http(server.url())))
    rig.signals(2)
    _wait_for(lambda: len(server.seen()) >= 2, "a poll after the first")

    rig.restart()
    before = len(server.seen())  # every request from here on comes from the new incarnation
    # A server that wrongly repeats itself after the restart: the saved ids still stop a redelivery.
    server.queue(Reply(body={"signals": [_signal("r2"), _signal("r3")], "cursor": "c-6"}))
    rig.signals(3)

    assert [s.source_id for s in rig.signals()] == ["r1", "r2", "r3"]
    assert [(r.code, r.source_id) for r in rig.rejected(1)] == [("DUPLICATE", "r2")]
    assert server.seen()[before].query.get("cursor") == ["c-5"]


# ---------------------------------------------------------------- file


def _line(sid: str, **more: Any) -> str:
    return json.dumps(_signal(sid, **more)) + "\n"


def test_file_follow_reads_appended_complete_lines_and_restarts_after_truncation(asys: ActorSystem,
                                                                                 tmp_path: Path) -> None:
    path = tmp_path / "signals.jsonl"
    path.write_text(_line("f1") + "\n" + "{oops\n" + _line("f2") + '{"id": "f3", "symbol": "AAPL", ')
    rig = Rig(asys, _config(tmp_path, {"source": "file", "file": {"path": str(path), "follow": True}}))

    assert [s.source_id for s in rig.signals(2)] == ["f1", "f2"]
    (bad,) = rig.rejected(1)
    assert bad.code == "MALFORMED" and bad.reason.startswith("line 3: not JSON")

    with path.open("a") as f:
        f.write('"direction": "up", "confidence": 0.55}\n' + _line("f4", symbol="MSFT"))
    assert [s.source_id for s in rig.signals(4)][2:] == ["f3", "f4"]
    rig.wait_status("line 6 ")

    path.write_text(_line("f5"))  # truncated and rewritten, shorter than what was read
    assert [s.source_id for s in rig.signals(5)][4:] == ["f5"]
    assert "shrank" in rig.log_text() and len(rig.rejected()) == 1


def test_file_replay_stops_at_end_and_restart_does_not_redeliver(asys: ActorSystem, tmp_path: Path) -> None:
    path = tmp_path / "replay.jsonl"
    path.write_text(_line("p1") + _line("p2", direction="down") + _line("p3").rstrip("\n"))
    rig = Rig(asys, _config(tmp_path, {"source": "file", "file": {"path": str(path)}}))

    assert [s.source_id for s in rig.signals(3)] == ["p1", "p2", "p3"]  # the replay reads an unfinished last line
    rig.wait_status("replay done")
    rig.restart()
    detail = rig.wait_status("replay done")

    assert "file: 0 accepted" in detail and "line 3 " in detail
    assert [s.source_id for s in rig.signals()] == ["p1", "p2", "p3"]
    assert rig.rejected() == []


def test_file_line_longer_than_a_turn_is_rejected_whole_and_the_next_line_read(asys: ActorSystem,
                                                                              tmp_path: Path) -> None:
    path = tmp_path / "long.jsonl"
    path.write_text(_line("l1") + _line("l2", note="x" * (FILE_MAX_BYTES + 100_000)) + _line("l3"))
    rig = Rig(asys, _config(tmp_path, {"source": "file", "file": {"path": str(path), "follow": True}}))

    assert [s.source_id for s in rig.signals(2)] == ["l1", "l3"]
    (bad,) = rig.rejected(1)
    assert bad.code == "MALFORMED" and bad.reason.startswith(f"line 2: longer than {FILE_MAX_BYTES} bytes")
    assert "line 3 " in rig.wait_status("following")


def test_file_missing_is_retried_until_it_appears(asys: ActorSystem, tmp_path: Path) -> None:
    path = tmp_path / "later.jsonl"
    rig = Rig(asys, _config(tmp_path, {"source": "file", "file": {"path": str(path), "follow": True}}))
    rig.wait_status("missing")

    path.write_text(_line("m1"))

    assert [s.source_id for s in rig.signals(1)] == ["m1"]
    assert rig.log_text().count("cannot read") == 1


# ---------------------------------------------------------------- demo


def test_demo_signals_arrive_with_increasing_ids_and_continue_after_restart(asys: ActorSystem,
                                                                            tmp_path: Path) -> None:
    rig = Rig(asys, _config(tmp_path, {"source": "demo", "demo": {"seed": 11, "interval_s": 0.05}}))

    first = rig.signals(3)
    rig.restart()
    after = rig.signals(len(rig.signals()) + 3)

    numbers = [int(s.source_id.removeprefix("demo-")) for s in after]
    assert numbers[:3] == [1, 2, 3] and numbers == sorted(set(numbers))
    assert len(numbers) >= len(first) + 3
    assert all(s.source == "demo" and s.symbol in ("AAPL", "MSFT") and s.horizon_s == 300 for s in after)
