"""The root Supervisor (globalName "supervisor"): starts the core actors in order, answers status, shuts down.

`StartSystem(config)` starts the core actors in CORE_CHILDREN order, each after the previous one
answered ActorReady, and answers ActorReady itself when all are up (AdminError if a core actor
could not be started at all). A core actor over its restart budget (`supervision.core`) is not
restarted again: trading halts (TradingStateChanged HALTED on the bus, a critical log line).
Admin commands that change state need `StartSystem.admin_token` when one was given. Halt, Resume
and Flatten go to the RiskManager ("risk"), ReloadRules to the StrategyController; their answers
come back to whoever asked.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from decimal import Decimal
from zoneinfo import ZoneInfo
from dataclasses import fields as dataclass_fields
from datetime import timedelta
from typing import ClassVar, Final

from thespian.actors import ActorAddress, ActorExitRequest

from actors import admin_tables, journaling
from actors.base import configure_logs, run_once
from actors.supervision import ChildSpec, ExitReason, Restart, SupervisorActor
from core.config import Config
from journal.recovery import abandon_unsent
from journal.store import Journal, JournalError
from messages.validation import admin_problems
from messages import (
    ActorReady,
    AdminQuery,
    AdminTable,
    CancelAll,
    PositionChanged,
    RulesLoaded,
    SetLogLevel,
    ActorStatusSnapshot,
    AdminCommand,
    AdminError,
    AdminErrorCode,
    AdminReply,
    ChildrenSnapshot,
    ChildStatus,
    ConnectionStateChanged,
    Flatten,
    GetChildren,
    Halt,
    GetStatus,
    Message,
    ReloadRules,
    RestartActor,
    Resume,
    Shutdown,
    StartSystem,
    StatusSnapshot,
    Subscribe,
    TradingStateChanged,
)
from messages.connection import ConnectionState
from messages.risk import TradingState

SUPERVISOR: Final = "supervisor"  # the root's globalName, key and peer name
ADMIN_TOKEN_FILE: Final = "admin.token"        # in the state directory, owner-only (the launcher writes it)
ADMIN_TOKEN_ENV: Final = "IBACTORS_ADMIN_TOKEN"

# The core children in start order, with their default classes; stopped in reverse order.
CORE_CHILDREN: Final[tuple[tuple[str, str], ...]] = (
    ("bus", "actors.bus.Bus"),
    ("tws", "actors.tws_connection.TwsConnection"),
    # Every order intent passes the gate; it must be up before anything can decide to trade.
    ("risk", "actors.risk_manager.RiskManager"),
    # "groups" before "symbols": a symbol may decide to enter as soon as it is warm.
    ("groups", "actors.order_group_supervisor.OrderGroupSupervisor"),
    ("symbols", "actors.symbol_supervisor.SymbolSupervisor"),
    # After the symbols, so it can route; signals last, so nothing arrives before it can go somewhere.
    ("strategy", "actors.strategy.StrategyController"),
    ("signals", "actors.signal_source.SignalSource"),
)
CORE_PEERS: Final[tuple[str, ...]] = ("bus", "tws", "risk", "symbols", "groups", "strategy", "signals",
                                      SUPERVISOR)
SUB_SUPERVISORS: Final = frozenset({"symbols", "groups"})

_STATUS_TIMEOUT: Final = "status-timeout"


@dataclass(slots=True)
class _Gather:
    """An admin request waiting for the sub-supervisors' answers."""

    asker: ActorAddress
    request: Message
    waiting: list[tuple[str, str]]  # (question msg_id, sub-supervisor key) not answered yet
    children: list[ChildStatus] = field(default_factory=list)

    def answered(self, msg_id: str) -> bool:
        before = len(self.waiting)
        self.waiting = [(m, k) for m, k in self.waiting if m != msg_id]
        return len(self.waiting) < before


class Supervisor(SupervisorActor):
    """The root of the actor tree and the admin entry point."""

    STATUS_TIMEOUT_S: ClassVar[float] = 2.0

    def __init__(self) -> None:
        super().__init__()
        self.key = SUPERVISOR
        self.trading_state = TradingState.ACTIVE
        self.connection_state = ConnectionState.DISCONNECTED
        self.started_ns = 0
        self.admin_token = ""
        self.journal: Journal | None = None
        self.marks: dict[str, Decimal] = {}
        self.rules: tuple[str, tuple[str, ...]] = ("", ())
        self.zone = ZoneInfo("America/New_York")
        self._start_requests: list[tuple[ActorAddress, StartSystem]] = []
        self._stop_requests: list[tuple[ActorAddress, Shutdown]] = []
        self._gathers: list[_Gather] = []
        self._relays: dict[str, tuple[ActorAddress, Message]] = {}  # forwarded msg_id -> (asker, request)

    # ------------------------------------------------------------ start

    @run_once
    def receiveMsg_StartSystem(self, msg: StartSystem, sender: ActorAddress) -> None:
        if self.configured:
            if self._all_started:
                self._answer_start(sender, msg)
            else:
                self._start_requests.append((sender, msg))
            return
        if not isinstance(msg.config, Config):
            self._refuse(sender, msg, AdminErrorCode.FAILED,
                         f"StartSystem needs a core.config.Config, not {type(msg.config).__name__}")
            return
        classes = dict(CORE_CHILDREN)
        unknown = sorted({key for key, _ in msg.actor_classes} - classes.keys())
        if unknown:
            self._refuse(sender, msg, AdminErrorCode.UNKNOWN_TARGET,
                         f"no core actor {', '.join(unknown)} (have {', '.join(classes)})")
            return
        classes.update(msg.actor_classes)
        configure_logs(msg.config)
        try:
            self.journal = journaling.journal(journaling.JournalSettings.of(msg.config))
        except JournalError as exc:  # foreign, corrupt or newer: never touched, nothing starts
            self._refuse(sender, msg, AdminErrorCode.FAILED, f"cannot open the journal: {exc}")
            return
        self._recover(msg)
        self.zone = msg.config.system.zone
        self.config = msg.config
        self.budget = msg.config.supervision.core
        self.admin_token = msg.admin_token
        self.configured = True
        self.started_ns = self.now_ns()
        self.start_cause = msg
        self._start_requests.append((sender, msg))
        self.log.info("supervisor: starting {}", ", ".join(key for key, _ in CORE_CHILDREN))
        self.start_children(tuple(
            ChildSpec(key=key, actor_class=classes[key], config=msg.config, restart=Restart.PERMANENT,
                      peers=CORE_PEERS, supervises=key in SUB_SUPERVISORS)
            for key, _ in CORE_CHILDREN
        ))

    def _recover(self, cause: Message) -> None:
        """Settle the journal before any actor runs: intents that never left are abandoned (journal/recovery.py)."""
        assert self.journal is not None
        now = self.now_ns()
        abandoned = abandon_unsent(self.journal, now)
        if abandoned:
            self.log.warning("supervisor: {} intent(s) abandoned: no order of them had left when the system "
                             "stopped: {}", len(abandoned), ", ".join(abandoned))
        self.journal.record_event("system_start", ts_ns=now, actor=self.key, msg_id=cause.msg_id,
                                  text=f"started; {len(abandoned)} unsent intent(s) abandoned",
                                  # No pid on a virtual clock: two backtests journal the same bytes.
                                  data={"pid": 0 if self.timers is not None else os.getpid(),
                                        "abandoned": abandoned})

    def _journal_admin(self, msg: AdminCommand, outcome: str) -> None:
        """Record an admin command and what became of it (fields but the token)."""
        if self.journal is None:
            return
        fields = {f.name: getattr(msg, f.name) for f in dataclass_fields(msg)
                  if f.name not in ("token", "msg_id", "cause_id", "corr_id", "ts_ns")}
        self.journal.record_event("admin", ts_ns=self.now_ns(), actor=self.key, msg_id=msg.msg_id,
                                  cause_id=msg.cause_id, corr_id=msg.correlation_id,
                                  text=f"{type(msg).__name__}: {outcome}",
                                  data={"command": type(msg).__name__,
                                        **{k: str(v) for k, v in fields.items()}})

    def on_all_started(self) -> None:
        requests, self._start_requests = self._start_requests, []
        for asker, request in requests:
            self._answer_start(asker, request)

    def _answer_start(self, asker: ActorAddress, request: StartSystem) -> None:
        down = self.quarantined()
        if down:
            self._refuse(asker, request, AdminErrorCode.FAILED,
                         f"core actor(s) {', '.join(down)} could not be started; trading is HALTED")
        else:
            self.tell(asker, self.make(ActorReady, request, key=self.key, incarnation=1, pid=os.getpid()))

    def on_child_ready(self, key: str, address: ActorAddress, incarnation: int) -> None:
        self.peers[key] = address  # so publish() reaches the current bus
        if key == "bus":
            for name in ("TradingStateChanged", "ConnectionStateChanged", "PositionChanged", "RulesLoaded"):
                self.tell(address, self.make(Subscribe, self.start_cause, type_name=name,
                                             reply_to=self.myAddress))

    def on_gave_up(self, key: str) -> None:
        previous, self.trading_state = self.trading_state, TradingState.HALTED
        reason = (f"core actor {key} exited more than {self.budget.max_restarts} times in "
                  f"{self.budget.window_s:g} s")
        self.log.critical("supervisor: {}; trading HALTED (resting protective orders stay at the broker)",
                          reason)
        halted = self.make(TradingStateChanged, None, state=TradingState.HALTED, previous=previous,
                           reason=reason)
        self.publish(halted)
        risk = self.child_address("risk")
        if risk is not None:
            self.tell(risk, halted)  # the gate enforces it, even when the bus is the one that gave up

    # ------------------------------------------------------------ bus events

    def receiveMsg_TradingStateChanged(self, msg: TradingStateChanged, sender: ActorAddress) -> None:
        self.trading_state = msg.state

    def receiveMsg_ConnectionStateChanged(self, msg: ConnectionStateChanged, sender: ActorAddress) -> None:
        self.connection_state = msg.state

    def receiveMsg_PositionChanged(self, msg: PositionChanged, sender: ActorAddress) -> None:
        if msg.last_price is not None:
            self.marks[msg.symbol] = msg.last_price  # for the operator's positions and P&L tables

    def receiveMsg_RulesLoaded(self, msg: RulesLoaded, sender: ActorAddress) -> None:
        self.rules = (msg.version, msg.rule_names)

    # ------------------------------------------------------------ admin

    def _authorized(self, msg: AdminCommand, sender: ActorAddress) -> bool:
        """Return True if `msg` is well formed and, when it changes state, carries the admin token."""
        problems = admin_problems(msg)
        if problems:
            self._refuse(sender, msg, AdminErrorCode.MALFORMED, "; ".join(problems))
            return False
        symbol = getattr(msg, "symbol", "")
        traded = self.config.symbol_names if isinstance(self.config, Config) else ()
        if symbol and traded and symbol not in traded:
            # A typo must not read as done ("flatten APPL" would close nothing and say it did).
            self._refuse(sender, msg, AdminErrorCode.UNKNOWN_TARGET,
                         f"{symbol!r} is not a traded symbol (have {', '.join(traded)})")
            return False
        if not msg.changes_state or not self.admin_token or msg.token == self.admin_token:
            return True
        self._refuse(sender, msg, AdminErrorCode.UNAUTHORIZED,
                     "missing or wrong admin token (the running system's is in its state directory's "
                     f"{ADMIN_TOKEN_FILE}, or in the {ADMIN_TOKEN_ENV} environment variable it was started with)")
        return False

    def receiveUnrecognizedMessage(self, msg: object, sender: ActorAddress) -> None:
        if self._child_at(sender) is not None or self.peers_include(sender):
            super().receiveUnrecognizedMessage(msg, sender)
            return
        # Someone outside the tree (an operator's tool) sent something that is no admin command.
        what = type(msg).__name__
        self.log.warning("supervisor: refused a {} from outside the system: not an admin command", what)
        if self.journal is not None:
            self.journal.record_event("admin", ts_ns=self.now_ns(), actor=self.key,
                                      text=f"{what}: refused (MALFORMED): not an admin command")
        self.tell(sender, self.make(AdminError, msg if isinstance(msg, Message) else None,
                                    code=AdminErrorCode.MALFORMED, command=what,
                                    text=f"{what} is not an admin command; nothing was changed"))

    def peers_include(self, address: ActorAddress) -> bool:
        return any(address == peer for peer in self.peers.values())

    @run_once
    def receiveMsg_AdminQuery(self, msg: AdminQuery, sender: ActorAddress) -> None:
        if not self._authorized(msg, sender):
            return
        if self.journal is None:
            self._refuse(sender, msg, AdminErrorCode.REFUSED, "the system has not started")
            return
        try:
            answer = admin_tables.table(msg.what, self.journal, marks=self.marks, zone=self.zone,
                                        now_ns=self.now_ns(), rules_version=self.rules[0],
                                        rule_names=self.rules[1], symbol=msg.symbol, limit=msg.limit)
        except JournalError as exc:
            self._refuse(sender, msg, AdminErrorCode.FAILED, f"cannot read the journal: {exc}")
            return
        self._journal_admin(msg, f"answered: {answer.text}")
        self.tell(sender, self.make(AdminTable, msg, title=answer.title, columns=answer.columns, rows=answer.rows,
                                    text=answer.text))

    def receiveMsg_SetLogLevel(self, msg: SetLogLevel, sender: ActorAddress) -> None:
        if self._child_at(sender) is not None:
            return  # only an operator's command comes here
        if not self._authorized(msg, sender):
            return
        known = set(self.children) | set(self.config.symbol_names if isinstance(self.config, Config) else ())
        if msg.key and msg.key not in known | {self.key}:
            self._refuse(sender, msg, AdminErrorCode.UNKNOWN_TARGET,
                         f"no actor or symbol {msg.key!r} (have {', '.join(sorted(known))})")
            return
        super().receiveMsg_SetLogLevel(msg, sender)
        text = f"log level {msg.level.value} for {msg.key or 'every actor'}"
        self._journal_admin(msg, text)
        self.tell(sender, self.make(AdminReply, msg, text=text))

    @run_once
    def receiveMsg_CancelAll(self, msg: CancelAll, sender: ActorAddress) -> None:
        self._relay(msg, sender, "groups", "the order groups supervisor")

    def _refuse(self, to: ActorAddress, msg: Message, code: AdminErrorCode, text: str) -> None:
        self.log.warning("supervisor: refused {}: {}", type(msg).__name__, text)
        if isinstance(msg, AdminCommand):
            self._journal_admin(msg, f"refused ({code.value}): {text}")
        self.tell(to, self.make(AdminError, msg, code=code, text=text, command=type(msg).__name__))

    @run_once
    def receiveMsg_GetStatus(self, msg: GetStatus, sender: ActorAddress) -> None:
        if not self._authorized(msg, sender):
            return
        self._journal_admin(msg, "answered")
        self._gather(sender, msg, GetChildren)

    @run_once
    def receiveMsg_RestartActor(self, msg: RestartActor, sender: ActorAddress) -> None:
        if not self._authorized(msg, sender):
            return
        self._journal_admin(msg, f"restart of {msg.key} requested")
        if msg.key in self.children:
            super().receiveMsg_RestartActor(msg, sender)
        else:
            self._gather(sender, msg, RestartActor)

    @run_once
    def receiveMsg_ReloadRules(self, msg: ReloadRules, sender: ActorAddress) -> None:
        self._relay(msg, sender, "strategy", "the strategy controller")

    @run_once
    def receiveMsg_Halt(self, msg: Halt, sender: ActorAddress) -> None:
        self._relay(msg, sender, "risk", "the risk manager")

    @run_once
    def receiveMsg_Resume(self, msg: Resume, sender: ActorAddress) -> None:
        self._relay(msg, sender, "risk", "the risk manager")

    @run_once
    def receiveMsg_Flatten(self, msg: Flatten, sender: ActorAddress) -> None:
        self._relay(msg, sender, "risk", "the risk manager")

    def _relay(self, msg: AdminCommand, sender: ActorAddress, key: str, what: str) -> None:
        """Forward an admin command to the core child `key`; its answer goes back to `sender`."""
        if not self._authorized(msg, sender):
            return
        child = self.child_address(key)
        if child is None:
            self._refuse(sender, msg, AdminErrorCode.REFUSED, f"{what} is not running")
            return
        self._relays[msg.msg_id] = (sender, msg)
        self.tell(child, msg)

    def _relayed(self, answer: Message) -> bool:
        """Pass an answer to a forwarded command back to whoever asked; False if it is not one."""
        relay = self._relays.pop(answer.cause_id, None)
        if relay is None:
            return False
        if isinstance(relay[1], AdminCommand):
            outcome = (answer.text if isinstance(answer, AdminReply)
                       else f"refused ({answer.code.value}): {answer.text}" if isinstance(answer, AdminError)
                       else type(answer).__name__)
            self._journal_admin(relay[1], outcome)
        self.tell(relay[0], answer)
        return True

    @run_once
    def receiveMsg_Shutdown(self, msg: Shutdown, sender: ActorAddress) -> None:
        if not self._authorized(msg, sender):
            return
        self.log.info("supervisor: shutting down{}", f": {msg.reason}" if msg.reason else "")
        self._journal_admin(msg, "stopping")
        self._stop_requests.append((sender, msg))
        if not self.stopping_all:
            self.stop_children()

    def on_children_stopped(self) -> None:
        for asker, request in self._stop_requests:
            self.tell(asker, self.make(AdminReply, request, text="stopped"))
        self._stop_requests = []
        self.send(self.myAddress, ActorExitRequest())

    # ------------------------------------------------------------ asking the sub-supervisors

    def _gather(self, asker: ActorAddress, request: Message, question: type[Message]) -> None:
        gather = _Gather(asker=asker, request=request, waiting=[])
        for key, child in self.children.items():
            if child.spec.supervises and child.address is not None:
                fields = ({"key": request.key, "token": request.token}
                          if isinstance(request, RestartActor) else {})
                ask = self.make(question, request, **fields)
                gather.waiting.append((ask.msg_id, key))
                self.tell(child.address, ask)
        if not gather.waiting:
            self._finish(gather)
            return
        self._gathers.append(gather)
        self.wakeupAfter(timedelta(seconds=self.STATUS_TIMEOUT_S),
                         payload=(_STATUS_TIMEOUT, gather.waiting[0][0]))

    def _answered(self, answer: Message) -> _Gather | None:
        for gather in self._gathers:
            if gather.answered(answer.cause_id):
                return gather
        return None

    def on_child_exited(self, key: str, reason: ExitReason) -> None:
        self.peers.pop(key, None)
        # A sub-supervisor that exited will not answer: finish without it instead of timing out.
        for gather in list(self._gathers):
            remaining = [(m, k) for m, k in gather.waiting if k != key]
            if len(remaining) < len(gather.waiting):
                gather.waiting = remaining
                if not remaining:
                    self._finish(gather)

    def receiveMsg_ChildrenSnapshot(self, msg: ChildrenSnapshot, sender: ActorAddress) -> None:
        gather = self._answered(msg)
        if gather is None:
            return
        gather.children.extend(msg.children)
        if not gather.waiting:
            self._finish(gather)

    def receiveMsg_AdminReply(self, msg: AdminReply, sender: ActorAddress) -> None:
        if self._relayed(msg):
            return
        gather = self._answered(msg)
        if gather is not None:
            # One sub-supervisor knew the key: that is the answer.
            self._gathers.remove(gather)
            if isinstance(gather.request, AdminCommand):
                self._journal_admin(gather.request, msg.text)
            self.tell(gather.asker, self.make(AdminReply, gather.request, ok=msg.ok, text=msg.text))

    def receiveMsg_AdminError(self, msg: AdminError, sender: ActorAddress) -> None:
        if self._relayed(msg):
            return
        gather = self._answered(msg)
        if gather is not None and not gather.waiting:
            self._finish(gather)

    def on_wakeup(self, payload: object) -> None:
        if isinstance(payload, tuple) and payload[:1] == (_STATUS_TIMEOUT,):
            for gather in self._gathers:
                if any(m == payload[1] for m, _ in gather.waiting):
                    self.log.warning("supervisor: {} sub-supervisor(s) did not answer {} within {} s",
                                     len(gather.waiting), type(gather.request).__name__,
                                     self.STATUS_TIMEOUT_S)
                    self._finish(gather)
                    return

    def _finish(self, gather: _Gather) -> None:
        if gather in self._gathers:
            self._gathers.remove(gather)
        request = gather.request
        if isinstance(request, RestartActor):
            self._refuse(gather.asker, request, AdminErrorCode.UNKNOWN_TARGET, f"no actor {request.key!r}")
            return
        children = self.child_statuses() + tuple(gather.children)
        quarantined = tuple(c.key for c in children if c.quarantined)
        text = (f"trading {self.trading_state.value}, connection {self.connection_state.value}, "
                f"{sum(c.running for c in children)}/{len(children)} actors running"
                + (f", quarantined: {', '.join(quarantined)}" if quarantined else "")
                + (f", {len(gather.waiting)} supervisor(s) did not answer" if gather.waiting else ""))
        self.tell(gather.asker, self.make(
            StatusSnapshot, request, trading_state=self.trading_state,
            connection_state=self.connection_state, actors=tuple(_actor_status(c) for c in children),
            quarantined=quarantined, started_ns=self.started_ns, text=text, children=children,
        ))


def _actor_status(child: ChildStatus) -> ActorStatusSnapshot:
    state = "quarantined" if child.quarantined else "running" if child.running else "down"
    return ActorStatusSnapshot(
        key=child.key, actor_class=child.actor_class, incarnation=child.incarnation,
        configured=child.ready, failed=child.quarantined, pid=child.pid,
        detail=f"{child.supervisor}: {state}, restarts {child.restarts}/{child.max_restarts} in window",
    )
