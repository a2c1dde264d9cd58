"""SignalSource: prediction signals from a demo generator, an HTTP endpoint or a JSON-lines file, to the strategy.

The "signals" core child. ConfigureActor(config=core.config.Config, state=SourceState or None);
peers "strategy" (receives every accepted PredictionSignal) and "bus" (receives every
SignalRejected). Which source runs is `config.signals.source`; core/signals.py holds the
contract a source must meet and judges every item.

Durability: the resume point (HTTP cursor, file offset, demo counter) and the ids accepted so
far are the actor's state. After a batch changes it, the actor sends its Snapshot to its
supervisor BEFORE telling the strategy about the batch's signals, so a restarted incarnation
never delivers a signal twice; at worst a signal whose Snapshot went out is lost with the
process before reaching the strategy, which is the safe side for trading. Snapshots are
SourceChanges (what changed, the new ids only) that the supervisor merges into its SourceState.

HTTP: a GET every `poll_interval_s` with `Accept: application/json`, the cursor as the
`cursor` query parameter and the credential (the value of the environment variable named
`auth_env`) in the `auth_header` header. The request blocks the actor (it has nothing else to
do): a hanging server makes it unresponsive for up to `timeout_s` per socket operation. A failed
poll (refused, timeout, HTTP status >= 400, a redirect, a body that is not JSON or has the wrong
shape) is logged and counted and the next one waits `poll_interval_s * 2**k` (k failures in a
row, at most BACKOFF_MAX_S); a success resets it. Redirects are not followed, so the credential
never goes to another host; it never appears in a log line or a rejection either. A configured
`auth_env` that is not set stops the source at start with one ERROR line (status says why).

File: read from the saved byte offset, at most FILE_MAX_LINES lines per timer turn; with
`follow`, appended lines are picked up every FILE_POLL_S and a last line without its newline
waits until it is complete (without `follow` the file is taken as complete and the replay
ends at its end). A file that shrank or was replaced starts again at its first line; a missing
one is retried.
"""

from __future__ import annotations

import http.client
import os
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from typing import Final
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from thespian.actors import ActorAddress, WakeupMessage

from actors import journaling
from actors.base import ShellActor, run_once
from actors.supervision import StateChange
from core.config import Config, SignalsConfig, SignalSourceKind
from core.signals import (
    NS_PER_S,
    Payload,
    Reason,
    Rejection,
    Seen,
    demo_signal,
    intake,
    parse_lines,
    parse_payload,
    raw_excerpt,
)
from journal.store import Journal, SignalRow
from messages import ConfigureActor, PredictionSignal, ReplaySignals, SignalRejected, Snapshot

STRATEGY: Final = "strategy"
STATE_KEY: Final = "signals"  # the source's resume point in the journal's actor states
BACKOFF_MAX_S: Final = 60.0            # the longest wait between failed polls
FILE_POLL_S: Final = 0.5               # how often a followed (or missing) file is looked at
FILE_MAX_LINES: Final = 1_000          # lines per timer turn, so a big file does not block the actor
FILE_MAX_BYTES: Final = 1 << 20        # bytes read per turn; a longer line is rejected whole
HTTP_MAX_BODY_BYTES: Final = 8 << 20   # a larger body is a failed poll
_TICK: Final = "signals-tick"
_MASK: Final = "***"


@dataclass(frozen=True, slots=True, kw_only=True)
class SourceState:
    """Where the source resumes after a restart, and the ids it accepted (for de-duplication)."""

    cursor: str = ""                    # http: the endpoint's last cursor ("" = none yet)
    file_path: str = ""                 # file: the file `offset` and `line` belong to
    file_id: tuple[int, int] = (0, 0)   # file: (st_dev, st_ino) when last read; another = replaced
    offset: int = 0                     # file: bytes consumed
    line: int = 0                       # file: lines consumed
    demo_n: int = 0                     # demo: the last signal made
    seen: Seen = field(default_factory=Seen)


@dataclass(frozen=True, slots=True, kw_only=True)
class SourceChange(StateChange):
    """A Snapshot's state: the new resume point and the ids accepted since the last one."""

    cursor: str
    file_path: str
    file_id: tuple[int, int]
    offset: int
    line: int
    demo_n: int
    added: tuple[tuple[str, str], ...] = ()

    @staticmethod
    def of(state: SourceState, added: tuple[tuple[str, str], ...]) -> SourceChange:
        """Return the change that makes any earlier state into `state`, given the ids added since."""
        return SourceChange(cursor=state.cursor, file_path=state.file_path, file_id=state.file_id,
                            offset=state.offset, line=state.line, demo_n=state.demo_n, added=added)

    def apply(self, state: object) -> SourceState:
        """Return `state` (the kept SourceState, None at first) with this change made."""
        seen = state.seen if isinstance(state, SourceState) else Seen()
        return SourceState(cursor=self.cursor, file_path=self.file_path, file_id=self.file_id, offset=self.offset,
                           line=self.line, demo_n=self.demo_n, seen=seen.add_all(self.added))


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    # urllib would repeat our headers, the credential included, to wherever a redirect points.
    def redirect_request(self, req: urllib.request.Request, fp: object, code: int, msg: str, headers: object,
                         newurl: str) -> None:
        return None


_OPENER: Final = urllib.request.build_opener(_NoRedirect)


def with_cursor(url: str, cursor: str) -> str:
    """Return `url` with its `cursor` query parameter set to `cursor` (removed when "")."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "cursor"]
    if cursor:
        query.append(("cursor", cursor))
    return urlunsplit(parts._replace(query=urlencode(query)))


def backoff_s(interval_s: float, failures: int) -> float:
    """Return the wait before the next poll after `failures` failed polls in a row."""
    if failures <= 0:
        return interval_s
    return max(interval_s, min(BACKOFF_MAX_S, interval_s * 2 ** min(failures, 32)))


def rejection_id(rejection: Rejection, n: int, now_ns: int) -> str:
    """Return the journal id of a rejected signal: a duplicate's source id belongs to its accepted twin."""
    return f"rejected:{rejection.source_id or '-'}:{now_ns}:{n}"


class SignalSource(ShellActor):
    """The "signals" core child: ConfigureActor(config=Config, state=SourceState or None); peers "strategy", "bus"."""

    def __init__(self) -> None:
        super().__init__()
        self.settings: SignalsConfig = SignalsConfig()
        self.kind: SignalSourceKind = SignalSourceKind.DEMO
        self.symbols: tuple[str, ...] = ()
        self.state = SourceState()
        self.accepted = 0
        self.journal: Journal | None = None
        self.rejections_journaled = 0
        self.rejected: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.failures = 0            # failed polls in a row
        self.last_poll_ns = 0
        self.last_error = ""         # "" = the last poll succeeded
        self.next_delay_s = 0.0
        self.stopped = ""            # why the source does not run ("" = it runs)
        self.done = False            # a file replay reached the end
        self.credential: str | None = None
        self.missing = False         # the file was missing at the last look (warned once)
        self.skipping = False        # inside a file line longer than FILE_MAX_BYTES

    # ------------------------------------------------------------ set-up

    def on_configure(self, msg: ConfigureActor) -> None:
        config = msg.config
        if not isinstance(config, Config):
            raise TypeError(f"SignalSource needs a core.config.Config, not {type(config).__name__}")
        self.settings = config.signals
        self.kind = config.signals.source
        self.symbols = config.symbol_names
        self.journal = journaling.journal(journaling.JournalSettings.of(config))
        state = msg.state
        if state is None and self.journal is not None:
            state = self.journal.get_state(STATE_KEY)  # the whole system restarted: resume where it was
        if isinstance(state, SourceState):
            self.state = state
        if not self.symbols:
            self._stop("no traded symbols are configured")
            return
        if self.kind is SignalSourceKind.HTTP:
            name = self.settings.http.auth_env
            if name is not None:
                credential = os.environ.get(name, "")
                if not credential:
                    self._stop(f"signals.http.auth_env names the environment variable {name}, which is not set "
                               "(or empty)")
                    return
                if not credential.isprintable():
                    # http.client would refuse it on every poll with an error that quotes the value
                    self._stop(f"the environment variable {name} holds characters an HTTP header cannot carry")
                    return
                self.credential = credential
        where = {SignalSourceKind.DEMO: f"after demo-{self.state.demo_n}",
                 SignalSourceKind.HTTP: f"at cursor {self._mask(self.state.cursor) or '(none)'}",
                 SignalSourceKind.FILE: f"at line {self.state.line + 1} of {self.settings.file.path}"}[self.kind]
        self.log.info("signals: {} source starts {}", self.kind.value, where)
        # The demo's first signal comes one interval in, when the symbols have warmed up; a real
        # source is read at once.
        self._arm(self.settings.demo.interval_s if self.kind is SignalSourceKind.DEMO else 0.0)

    def _stop(self, why: str) -> None:
        self.stopped = why
        self.log.error("signals: the {} source does not run: {}", self.kind.value, why)

    def _arm(self, delay_s: float) -> None:
        self.next_delay_s = delay_s
        self.wakeupAfter(timedelta(seconds=delay_s), payload=_TICK)

    @run_once
    def receiveMsg_WakeupMessage(self, msg: WakeupMessage, sender: ActorAddress) -> None:
        if msg.payload != _TICK or self.stopped:
            return
        if self.kind is SignalSourceKind.DEMO:
            delay: float | None = self._demo()
        elif self.kind is SignalSourceKind.HTTP:
            delay = self._poll()
        else:
            delay = self._read_file()
        if delay is not None:
            self._arm(delay)

    @run_once
    def receiveMsg_ReplaySignals(self, msg: ReplaySignals, sender: ActorAddress) -> None:
        # A backtest hands each file line over at its time: judged like a file's line, then now.
        if self.stopped or not msg.lines:
            return
        seen, results = intake(((f"line {number}", text) for number, text in msg.lines), self.state.seen,
                               source=SignalSourceKind.FILE.value, symbols=self.symbols, now_ns=self.now_ns(),
                               max_age_s=self.settings.max_age_s)
        self._deliver(results, replace(self.state, line=max(n for n, _ in msg.lines), seen=seen))

    # ------------------------------------------------------------ delivery

    def _deliver(self, results: tuple[PredictionSignal | Rejection, ...], state: SourceState) -> None:
        accepted = [r for r in results if isinstance(r, PredictionSignal)]
        # Demo ids come from the durable counter: remembering them would only crowd out real ones.
        added = tuple((s.source, s.source_id) for s in accepted if s.source != "demo")
        before = self.state
        self.state = state
        changed = bool(added) or SourceChange.of(before, ()) != SourceChange.of(state, ())
        self._journal(results, state if changed else None)
        if changed:
            # Durable before the strategy hears of it: a restart resumes after these signals.
            self.tell(self.parent, self.make(Snapshot, None, key=self.key, incarnation=self.incarnation,
                                             state=SourceChange.of(state, added)))
        for result in results:
            if isinstance(result, PredictionSignal):
                self.accepted += 1
                self.metrics.inc("signals_accepted")
                self.tell_peer(STRATEGY, result)
                self.log.info("signal {} {} {} {} accepted", self._mask(result.source_id), result.symbol,
                              result.direction.value, result.confidence)
            else:
                self._reject(result)

    def _journal(self, results: tuple[PredictionSignal | Rejection, ...], state: SourceState | None) -> None:
        """Commit every signal (accepted or rejected, with why) and the resume point before acting on them."""
        journal = self.journal
        if journal is None or (not results and state is None):
            return
        now = self.now_ns()
        with journal.batch():
            for result in results:
                if isinstance(result, PredictionSignal):
                    journal.record_signal(SignalRow(
                        signal_id=result.source_id or result.msg_id, ts_ns=result.ts_ns or now,
                        symbol=result.symbol, accepted=True,
                        data={"direction": result.direction.value, "confidence": result.confidence,
                              "horizon_s": result.horizon_s, "expires_ns": result.expires_ns,
                              "source": result.source, "reference_price": result.reference_price,
                              "created_ns": result.created_ns}))
                else:
                    result = self._masked(result)
                    self.rejections_journaled += 1
                    signal_id = rejection_id(result, self.rejections_journaled, now)
                    journal.record_signal(SignalRow(
                        signal_id=signal_id, ts_ns=now, symbol=result.symbol, accepted=False,
                        code=result.reason.value, reason=result.text,
                        data={"source": result.source or self.kind.value, "raw": result.raw[:2000]}))
            if state is not None:
                journal.put_state(STATE_KEY, state, incarnation=self.incarnation, ts_ns=now)

    def _reject(self, rejection: Rejection) -> None:
        rejection = self._masked(rejection)
        code = rejection.reason.value
        self.rejected[code] += 1
        self.metrics.inc(f"signals_rejected_{code}")
        self.log.warning("signal {} rejected ({}): {}", rejection.source_id or "-", code, rejection.text)
        self.publish(self.make(SignalRejected, None, reason=rejection.text, code=code,
                               source=rejection.source or self.kind.value, source_id=rejection.source_id,
                               symbol=rejection.symbol, raw=rejection.raw))

    def _mask(self, text: str) -> str:
        secret = self.credential
        return text.replace(secret, _MASK) if secret else text

    def _masked(self, rejection: Rejection) -> Rejection:
        # A server may echo the request, credential included, into any field it sends back.
        if not self.credential:
            return rejection
        return replace(rejection, text=self._mask(rejection.text), raw=self._mask(rejection.raw),
                       source_id=self._mask(rejection.source_id), symbol=self._mask(rejection.symbol))

    # ------------------------------------------------------------ demo

    def _demo(self) -> float:
        n = self.state.demo_n + 1
        signal = demo_signal(self.settings.demo.seed, n, self.symbols, self.now_ns())
        self._deliver((signal,), replace(self.state, demo_n=n))
        return self.settings.demo.interval_s

    # ------------------------------------------------------------ http

    def _poll(self) -> float:
        settings = self.settings.http
        assert settings.url is not None  # the configuration requires it for this source
        url = with_cursor(settings.url, self.state.cursor)
        headers = {"Accept": "application/json"}
        if self.credential is not None:
            headers[settings.auth_header] = self.credential
        self.last_poll_ns = self.now_ns()
        try:
            request = urllib.request.Request(url, headers=headers, method="GET")
            with _OPENER.open(request, timeout=settings.timeout_s) as response:
                body = response.read(HTTP_MAX_BODY_BYTES + 1)
        except urllib.error.HTTPError as exc:
            exc.close()
            kind = f"HTTP {exc.code}"
            detail = f"{kind} {exc.reason}" + ("; redirects are not followed" if 300 <= exc.code < 400 else "")
            return self._poll_failed(url, kind, detail)
        except urllib.error.URLError as exc:
            reason = exc.reason
            kind = ("refused" if isinstance(reason, ConnectionRefusedError)
                    else "timeout" if isinstance(reason, TimeoutError) else "unreachable")
            detail = f"timed out: no connection within {settings.timeout_s:g} s" if kind == "timeout" else str(reason)
            return self._poll_failed(url, kind, detail)
        except TimeoutError:
            return self._poll_failed(url, "timeout", f"timed out: no answer within {settings.timeout_s:g} s")
        except (OSError, http.client.HTTPException, ValueError) as exc:
            return self._poll_failed(url, "error", f"{type(exc).__name__}: {exc}")
        if len(body) > HTTP_MAX_BODY_BYTES:
            return self._poll_failed(url, "body too large", f"more than {HTTP_MAX_BODY_BYTES} bytes")
        payload = parse_payload(body)
        if isinstance(payload, Rejection):
            self._reject(replace(payload, source=self.kind.value))
            return self._poll_failed(url, "malformed body", payload.text)
        return self._polled(payload)

    def _polled(self, payload: Payload) -> float:
        seen, results = intake(((f"item {i}", item) for i, item in enumerate(payload.items, 1)), self.state.seen,
                               source=self.kind.value, symbols=self.symbols, now_ns=self.now_ns(),
                               max_age_s=self.settings.max_age_s)
        cursor = self.state.cursor if payload.cursor is None else payload.cursor
        if self.failures:
            self.log.info("signals: poll ok again after {} failure(s)", self.failures)
        self.failures = 0
        self.last_error = ""
        self._deliver(results, replace(self.state, cursor=cursor, seen=seen))
        return self.settings.http.poll_interval_s

    def _poll_failed(self, url: str, kind: str, detail: str) -> float:
        self.errors[kind] += 1
        self.failures += 1
        self.last_error = kind
        delay = backoff_s(self.settings.http.poll_interval_s, self.failures)
        self.log.warning("signals: poll of {} failed ({}): {}; next poll in {:.1f} s ({} failure(s) in a row)",
                         self._mask(url), kind, self._mask(detail), delay, self.failures)
        return delay

    # ------------------------------------------------------------ file

    def _read_file(self) -> float | None:
        settings = self.settings.file
        assert settings.path is not None  # the configuration requires it for this source
        path = Path(settings.path)
        state = self.state
        if state.file_path != str(path):
            state = replace(state, file_path=str(path), file_id=(0, 0), offset=0, line=0)
        try:
            with open(path, "rb") as f:
                st = os.fstat(f.fileno())
                ident = (st.st_dev, st.st_ino)
                if state.file_id not in ((0, 0), ident):
                    self.log.warning("signals: {} was replaced (rotated?): reading it from its first line", path)
                    state = replace(state, offset=0, line=0)
                    self.skipping = False
                elif st.st_size < state.offset:
                    self.log.warning("signals: {} shrank from {} to {} bytes (truncated?): reading it from its "
                                     "first line", path, state.offset, st.st_size)
                    state = replace(state, offset=0, line=0)
                    self.skipping = False
                state = replace(state, file_id=ident)
                start = state.offset
                f.seek(start)
                data = f.read(FILE_MAX_BYTES)
        except OSError as exc:
            if not self.missing:
                self.log.warning("signals: cannot read {}: {}; trying again every {:g} s", path,
                                 exc.strerror or exc, FILE_POLL_S)
            self.missing = True
            return FILE_POLL_S
        if self.missing:
            self.log.info("signals: {} can be read again", path)
            self.missing = False
        end = start + len(data)
        results: tuple[PredictionSignal | Rejection, ...] = ()
        if self.skipping:
            newline = data.find(b"\n")
            consumed = len(data) if newline < 0 else newline + 1
            self.skipping = newline < 0
            state = replace(state, offset=state.offset + consumed, line=state.line + (newline >= 0))
        else:
            final = not settings.follow and end >= st.st_size
            chunk = parse_lines(data, first_line=state.line + 1, limit=FILE_MAX_LINES, final=final)
            if chunk.consumed == 0 and len(data) >= FILE_MAX_BYTES:
                number = state.line + 1
                results = (Rejection(reason=Reason.MALFORMED, source=self.kind.value, raw=raw_excerpt(data[:256]),
                                     text=f"line {number}: longer than {FILE_MAX_BYTES} bytes: expected one "
                                          "JSON object per line"),)
                self.skipping = True
                state = replace(state, offset=end)
            else:
                seen, results = intake(((f"line {line.number}", line.data) for line in chunk.lines), state.seen,
                                       source=self.kind.value, symbols=self.symbols, now_ns=self.now_ns(),
                                       max_age_s=self.settings.max_age_s)
                state = replace(state, offset=state.offset + chunk.consumed, line=chunk.next_line - 1, seen=seen)
        self._deliver(results, state)
        rest = data[state.offset - start:]
        if b"\n" in rest or (len(data) >= FILE_MAX_BYTES and state.offset < st.st_size):
            return 0.0  # more to read now: the next turn comes after any waiting message
        if settings.follow:
            return FILE_POLL_S
        self.done = True
        self.log.info("signals: {} replayed to its end ({} lines)", path, state.line)
        return None

    # ------------------------------------------------------------ status

    def status_detail(self) -> str:
        rejected = ", ".join(f"{n} {code}" for code, n in sorted(self.rejected.items(), key=lambda kv: (-kv[1], kv[0])))
        parts = [f"{self.kind.value}: {self.accepted} accepted, rejected: {rejected or 'none'}"]
        if self.stopped:
            parts.append(f"not running: {self.stopped}")
        elif self.kind is SignalSourceKind.HTTP:
            if self.last_poll_ns:
                ago = (self.now_ns() - self.last_poll_ns) / NS_PER_S
                if self.last_error:
                    parts.append(f"last poll failed ({self.last_error}) {ago:.1f} s ago, {self.failures} in a row, "
                                 f"next in {self.next_delay_s:.1f} s")
                else:
                    parts.append(f"last poll ok {ago:.1f} s ago")
            else:
                parts.append("no poll yet")
            if self.errors:
                parts.append("poll errors: " + ", ".join(f"{n} {k}" for k, n in sorted(self.errors.items())))
            parts.append(f"cursor {self._mask(self.state.cursor) or '(none)'}")
        elif self.kind is SignalSourceKind.FILE:
            where = f"line {self.state.line} (byte {self.state.offset}) of {self.settings.file.path}"
            parts.append(where + ("; missing" if self.missing else "; replay done" if self.done
                                  else "; following" if self.settings.file.follow else ""))
        else:
            parts.append(f"next demo-{self.state.demo_n + 1} in {self.settings.demo.interval_s:g} s")
        return "; ".join(parts)

