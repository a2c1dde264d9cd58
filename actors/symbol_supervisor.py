"""SymbolSupervisor: one SymbolActor per configured symbol, routing by symbol, quarantine on a spent budget.

Each child's key is its symbol ("AAPL") and its config is the whole core.config.Config (the
actor reads `config.symbol(key)`). After every (re)start the symbol's address goes to tws as
SymbolActorStarted, so quotes reach it directly; a restarted tws hears about every symbol again.
A symbol over its `supervision.symbol` budget is quarantined: ActorQuarantined on the bus, no
more restarts, its resting protective orders stay at the broker.

Facts about a symbol's orders (ExecutionReported, CommissionReported, OrderGroupFinished) are kept
until the symbol's own Snapshot shows them, and every (re)started incarnation gets the kept ones
again (it ignores an exec id or a group it already knows): one sent to an actor that dies before
handling it (or before its Snapshot leaves) becomes a dead letter, and one for a symbol that is
down (restarting, or quarantined until an operator restarts it) has nowhere to go. Other messages
for a symbol that is down are dropped with a warning, so no stale command fires hours later.

With member nodes configured ([cluster.nodes], actors/nodes.py) each symbol actor is placed on a
node: the starts wait (up to cluster.join_wait_s) for the members to join, a member's symbols are
restarted elsewhere when the convention says it left, and a symbol actor on a member that asks
whether it is still current (NodeHeartbeat) is told so, or told to stop.
"""

from __future__ import annotations

from collections import deque
from dataclasses import replace
from datetime import timedelta
from typing import ClassVar, Final

from thespian.actors import ActorAddress, ActorExitRequest, ActorSystemConventionUpdate, ChildActorExited

from actors import journaling, logs, nodes
from actors.base import run_once
from actors.supervision import ChildSpec, Restart, SavedChild, SupervisorActor
from core.config import Config, SymbolStart
from messages import (
    ActorQuarantined,
    CommissionReported,
    ConfigureActor,
    DirectChannel,
    ExecutionReported,
    Flatten,
    Message,
    OrderGroupFinished,
    PeerMoved,
    RulesUpdated,
    StartSymbol,
    SymbolActorStarted,
    ToSymbol,
    TradingStateChanged,
)
from messages.risk import TradingState

SYMBOL_PEERS: Final[tuple[str, ...]] = ("bus", "tws", "risk", "symbols", "groups", "strategy", "supervisor")
# Message types that carry a `symbol` field and go to that symbol's actor when sent here.
ROUTED_BY_SYMBOL: Final = frozenset({
    "OrderGroupFinished", "PredictionSignal", "ClosePosition", "MoveStop",
    "MarketDataStale", "MarketDataResumed", "HistoricalBars", "BrokerPositionReported", "CommissionReported",
})
_KEPT_PER_SYMBOL: Final = 1000
# Messages a symbol must not miss: facts about its orders, unlike commands, which go stale.
FACTS: Final = frozenset({"ExecutionReported", "OrderGroupFinished", "CommissionReported"})
_JOIN_WAIT: Final = "join-wait"          # the held starts' sentinel and timer payload
_START_TIMEOUT: Final = "start-timeout"   # a symbol placed on a member that must be ready in time


def reflects(state: object, fact: Message, seq: int | None = None) -> bool:
    """Return True if a symbol's snapshot `state` (a SymbolState) already accounts for `fact`.

    `seq` is the journal's sequence number of the fill an ExecutionReported or CommissionReported
    is about, when known: a fill at or below the position's exec floor is applied although its id
    has left `exec_ids`.
    """
    if isinstance(fact, ExecutionReported):
        position = getattr(state, "position", None)
        if fact.execution.exec_id in getattr(position, "exec_ids", ()):
            return True
        return seq is not None and seq <= getattr(position, "exec_floor", 0)
    if isinstance(fact, CommissionReported):
        # Added once its fill is applied (by id, or under the exec floor by the fill's number)
        # and the fill no longer waits for it.
        position = getattr(state, "position", None)
        applied = (fact.exec_id in getattr(position, "exec_ids", ())
                   or (seq is not None and seq <= getattr(position, "exec_floor", 0)))
        return applied and fact.exec_id not in getattr(position, "commission_due", ())
    if isinstance(fact, OrderGroupFinished):
        working = getattr(state, "working", None)
        return working is not None and all(w.group_id != fact.group_id for w in working)
    return False


class SymbolSupervisor(SupervisorActor):
    """Supervises the symbol actors (key = symbol) and routes messages addressed to a symbol."""

    BACKGROUND = True  # runs at system.background_nice (ShellActor.BACKGROUND)

    CHILD_CLASS: ClassVar[str] = "actors.symbol.SymbolActor"

    def __init__(self) -> None:
        super().__init__()
        # Facts per symbol its snapshots do not show yet, each with its journal sequence number if a fill.
        self.pending: dict[str, deque[tuple[Message, int | None]]] = {}
        self.traded: Config | None = None  # the config new symbol actors start with (rules kept current)
        self.trading: TradingStateChanged | None = None  # the risk manager's latest mode, for every start
        self.risk_channel: DirectChannel | None = None  # the risk manager's intent inbox, for every start

    def child_specs(self, msg: ConfigureActor) -> tuple[ChildSpec, ...]:
        config = msg.config
        if not isinstance(config, Config):
            raise TypeError(f"SymbolSupervisor needs a core.config.Config, not {type(config).__name__}")
        self.budget = config.supervision.symbol
        self.traded = config
        if config.strategy.start_symbols is SymbolStart.ON_SIGNAL:
            # Each starts with the first signal for it (StartSymbol); one the journal shows holding a
            # position or working orders starts now, so its protection is managed from the start.
            return tuple(self.spec_of(config, symbol) for symbol in self._busy_in_journal(config))
        return tuple(self.spec_of(config, symbol) for symbol in config.symbol_names)

    def _busy_in_journal(self, config: Config) -> list[str]:
        journal = journaling.journal(journaling.JournalSettings.of(config))
        if journal is None:
            return []
        busy = []
        for key, state in journal.states("symbol:"):
            symbol = key.split(":", 1)[1]
            position = getattr(state, "position", None)
            if symbol in config.symbol_names and (getattr(position, "quantity", 0) != 0
                                                   or getattr(state, "working", ())):
                busy.append(symbol)
        if busy:
            self.log.info("symbols: starting {} now: the journal shows positions or working orders",
                          ", ".join(busy))
        return busy

    def spec_of(self, config: Config, symbol: str) -> ChildSpec:
        """Return the child spec of the actor of `symbol`."""
        return ChildSpec(key=symbol, actor_class=self.CHILD_CLASS, config=self.child_config(config, symbol),
                         restart=Restart.PERMANENT, peers=SYMBOL_PEERS)

    @run_once
    def receiveMsg_StartSymbol(self, msg: StartSymbol, sender: ActorAddress) -> None:
        config = self.traded
        if config is None or msg.symbol in self.children:
            return
        if msg.symbol not in config.symbol_names:
            self.log.warning("symbols: not starting {}: not a traded symbol", msg.symbol)
            return
        self.log.info("symbols: starting {} for its first signal", msg.symbol)
        self.add_child(self.spec_of(config, msg.symbol))

    def child_config(self, config: Config, symbol: str) -> object:
        """Return the config the actor of `symbol` is configured with."""
        return config

    def on_child_ready(self, key: str, address: ActorAddress, incarnation: int) -> None:
        self._announce(key, address, incarnation, None)
        if self.trading is not None and self.trading.state is not TradingState.ACTIVE:
            self.tell(address, self.trading)
        if self.risk_channel is not None:
            self.tell(address, self.risk_channel)
        for fact, _ in self.pending.get(key, ()):
            self.tell(address, fact)

    def on_child_state(self, key: str, state: object) -> None:
        pending = self.pending.get(key)
        if pending:
            kept = [(fact, seq) for fact, seq in pending if not reflects(state, fact, seq)]
            if len(kept) < len(pending):
                self.pending[key] = deque(kept, maxlen=_KEPT_PER_SYMBOL)

    def _announce(self, key: str, address: ActorAddress, incarnation: int, cause: Message | None,
                  to: tuple[str, ...] = ("tws", "strategy")) -> None:
        for name in to:  # quotes (tws) and signals (strategy) go to the symbol directly
            peer = self.peers.get(name)
            if peer is not None:
                self.tell(peer, self.make(SymbolActorStarted, cause, symbol=key, address=address,
                                          incarnation=incarnation))

    def on_gave_up(self, key: str) -> None:
        child = self.children[key]
        restarts = child.history.count(self.budget, self.now_ns())
        reason = (f"{key} exited more than {self.budget.max_restarts} times in {self.budget.window_s:g} s"
                  + (f"; last error: {child.last_error}" if child.last_error else ""))
        self.log.error("symbols: {} quarantined: {}; no new entries, its protective orders stay at the "
                       "broker", key, reason)
        self.publish(self.make(ActorQuarantined, None, key=key, restarts=restarts,
                               window_s=round(self.budget.window_s), reason=reason))

    @run_once
    def receiveMsg_PeerMoved(self, msg: PeerMoved, sender: ActorAddress) -> None:
        super().receiveMsg_PeerMoved(msg, sender)
        if msg.name in ("tws", "strategy"):
            # A new tws (or controller) knows no symbol actor yet.
            for key, child in self.children.items():
                if child.address is not None and child.ready:
                    self._announce(key, child.address, child.incarnation, msg, to=(msg.name,))

    @run_once
    def receiveMsg_RulesUpdated(self, msg: RulesUpdated, sender: ActorAddress) -> None:
        # Restarted symbols start from their spec's config: it carries the new rules from now on.
        if self.traded is not None:
            self.traded = replace(self.traded, rules=msg.rules, strategy=msg.strategy)
        for key, child in self.children.items():
            config = child.spec.config
            if isinstance(config, Config):
                child.spec = replace(child.spec, config=replace(config, rules=msg.rules,
                                                                strategy=msg.strategy))
            if child.address is not None:
                self.tell(child.address, msg)
        self.log.info("symbols: rules {} sent to {} symbol(s)", msg.version, len(self.children))

    @run_once
    def receiveMsg_DirectChannel(self, msg: DirectChannel, sender: ActorAddress) -> None:
        # The risk manager's intent inbox (the latest offer wins: a restarted one offers a new inbox).
        if "OrderIntent" not in msg.types:
            return
        self.risk_channel = msg
        for child in self.children.values():
            if child.address is not None:
                self.tell(child.address, msg)

    @run_once
    def receiveMsg_TradingStateChanged(self, msg: TradingStateChanged, sender: ActorAddress) -> None:
        self.trading = msg
        for child in self.children.values():
            if child.address is not None:
                self.tell(child.address, msg)

    @run_once
    def receiveMsg_Flatten(self, msg: Flatten, sender: ActorAddress) -> None:
        if msg.symbol:
            self.route(msg.symbol, msg)
            return
        for key, child in self.children.items():
            if child.address is not None:
                self.tell(child.address, msg)
            else:
                self.log.error("symbols: cannot flatten {}: its actor is not running", key)

    # ------------------------------------------------------------ routing

    @run_once
    def receiveMsg_ToSymbol(self, msg: ToSymbol, sender: ActorAddress) -> None:
        self.route(msg.symbol, msg.message)

    @run_once
    def receiveMsg_ExecutionReported(self, msg: ExecutionReported, sender: ActorAddress) -> None:
        self.route(msg.execution.symbol, msg)

    def receiveUnrecognizedMessage(self, msg: object, sender: ActorAddress) -> None:
        symbol = getattr(msg, "symbol", None)
        if isinstance(msg, Message) and type(msg).__name__ in ROUTED_BY_SYMBOL and isinstance(symbol, str):
            self.route(symbol, msg)
        else:
            super().receiveUnrecognizedMessage(msg, sender)

    def _exec_seq(self, msg: Message) -> int | None:
        """Return the journal's sequence number of the fill `msg` is about (journaled before routing)."""
        if isinstance(msg, ExecutionReported):
            exec_id = msg.execution.exec_id
        elif isinstance(msg, CommissionReported):
            exec_id = msg.exec_id
        else:
            return None
        if self.traded is None:
            return None
        journal = journaling.journal(journaling.JournalSettings.of(self.traded))
        return None if journal is None else journal.exec_seq(exec_id)

    def route(self, symbol: str, msg: Message) -> None:
        """Send `msg` to the current actor of `symbol`; keep a fact until the symbol's snapshot shows it."""
        address = self.child_address(symbol)
        fact = symbol in self.children and type(msg).__name__ in FACTS
        if fact:
            self.pending.setdefault(symbol, deque(maxlen=_KEPT_PER_SYMBOL)).append((msg, self._exec_seq(msg)))
        if address is not None:
            self.tell(address, msg)
        elif fact:
            self.log.warning("symbols: kept {} {} for {}, which is not running", type(msg).__name__,
                             msg.msg_id, symbol)
        elif symbol in self.children or type(msg).__name__ != "BrokerPositionReported":
            self.log.warning("symbols: dropped {} {} for {}: {}", type(msg).__name__, msg.msg_id, symbol,
                             "not running" if symbol in self.children else "not a traded symbol")
        # else: the broker holds a symbol this system does not trade; not ours to reconcile

    # ------------------------------------------------------------ placement on member nodes

    placement: nodes.Placement | None = None  # set when [cluster.nodes] lists members

    def start_children(self, specs: tuple[ChildSpec, ...], saved: tuple[SavedChild, ...] = ()) -> None:
        cluster = self.traded.cluster if self.traded is not None else None
        if cluster is None or not cluster.active or self.placement is not None or not logs.runs_alone():
            # One node: no members configured, or every actor in one process (a backtest).
            super().start_children(specs, saved)
            return
        self.placement = nodes.Placement(cluster)
        self.notifyOnSystemRegistrationChanges(True)  # the admin answers with every member so far
        if cluster.join_wait_s <= 0 or not (specs or saved):
            super().start_children(specs, saved)
            return
        # The children are registered (facts for them are kept) but start only once the members
        # joined or the wait is over: a start before that would put every symbol on the leader.
        self._starting = _JOIN_WAIT
        super().start_children(specs, saved)
        self.log.info("symbols: waiting up to {:g} s for node(s) {} to join before starting symbols",
                      cluster.join_wait_s, ", ".join(self.placement.expected()))
        self.wakeupAfter(timedelta(seconds=cluster.join_wait_s), payload=_JOIN_WAIT)

    def _release_starts(self, why: str) -> None:
        if self._starting != _JOIN_WAIT:
            return
        self.log.info("symbols: starting symbols: {}", why)
        self._starting = None
        self._start_next()

    def create_child(self, spec: ChildSpec, incarnation: int) -> ActorAddress:
        placement = self.placement
        if placement is None or spec.actor_class != self.CHILD_CLASS:
            return super().create_child(spec, incarnation)
        node = placement.choose(spec.key)
        placement.place(spec.key, node)
        self.log.info("symbols: {} #{} goes to node {}", spec.key, incarnation, node)
        if node == placement.leader:
            return super().create_child(spec, incarnation)
        # thespian's capability check (PlacedSymbolActor.actorSystemCapabilityCheck) sends the
        # creation to the member's admin; the returned address resolves once it exists.
        address = self.createActor(nodes.PLACED_CLASS, targetActorRequirements={
            nodes.NODE_CAP: node, nodes.SYMBOL_REQ: spec.key})
        self.wakeupAfter(timedelta(seconds=placement.cluster.start_timeout_s),
                         payload=(_START_TIMEOUT, spec.key, incarnation))
        return address

    def on_wakeup(self, payload: object) -> None:
        placement = self.placement
        if payload == _JOIN_WAIT and placement is not None:
            self._release_starts(f"node(s) {', '.join(placement.expected())} did not join within "
                                 f"{placement.cluster.join_wait_s:g} s")
            return
        if isinstance(payload, tuple) and payload[:1] == (_START_TIMEOUT,) and placement is not None:
            _, key, incarnation = payload
            child = self.children.get(key)
            if child is None or child.incarnation != incarnation or child.address is None or child.ready:
                return
            node = placement.failed_start(key)
            self.log.error("symbols: {} #{} was not ready on node {} within {:g} s; starting it elsewhere",
                           key, incarnation, node, placement.cluster.start_timeout_s)
            self._lost(key)
            return
        super().on_wakeup(payload)

    def _lost(self, key: str) -> None:
        """Take the child `key` for exited (its node is gone, or it never came up there) and restart it."""
        child = self.children.get(key)
        if child is None or child.address is None:
            return
        address = child.address
        self.send(address, ActorExitRequest())  # in case it still runs (a node cut off, not dead)
        # Handled here and now: a creation the dead node never answered leaves an address that no
        # ChildActorExited from thespian would ever name (thespian 4.0.1 drops the request when its
        # forward to that node fails).
        super().receiveMsg_ChildActorExited(ChildActorExited(address), self.myAddress)

    @run_once
    def receiveMsg_ChildActorExited(self, msg: ChildActorExited, sender: ActorAddress) -> None:
        child = self._child_at(msg.childAddress)
        if child is not None and not child.ready and self.placement is not None:
            node = self.placement.failed_start(child.spec.key)
            if node is not None:
                self.log.warning("symbols: {} #{} did not start on node {}; it goes elsewhere next",
                                 child.spec.key, child.incarnation, node)
        super().receiveMsg_ChildActorExited(msg, sender)

    def on_child_removed(self, key: str) -> None:
        if self.placement is not None:
            self.placement.forget(key)

    def receiveMsg_ActorSystemConventionUpdate(self, msg: ActorSystemConventionUpdate, sender: ActorAddress) -> None:
        placement = self.placement
        if placement is None:
            return
        name = (msg.remoteCapabilities or {}).get(nodes.NODE_CAP)
        if msg.remoteAdded:
            if placement.joined(name, msg.remoteAdminAddress):
                self.log.info("symbols: node {} joined ({})", name, msg.remoteAdminAddress)
                if not placement.expected():
                    self._release_starts("every node joined")
            else:
                self.log.warning("symbols: {} ({}) joined the convention but is no member in cluster.nodes; "
                                 "no symbol goes there", name, msg.remoteAdminAddress)
            return
        lost = placement.left(name, msg.remoteAdminAddress)
        if lost is None:
            return
        self.log.warning("symbols: node {} left (stopped, or silent for {:g} s); restarting its symbols "
                         "elsewhere: {}", name, placement.cluster.dead_after_s, ", ".join(lost) or "none")
        for key in lost:
            self._lost(key)

    def receiveMsg_NodeHeartbeat(self, msg: nodes.NodeHeartbeat, sender: ActorAddress) -> None:
        child = self.children.get(msg.key)
        current = (child is not None and child.address is not None and child.address == sender
                   and child.incarnation == msg.incarnation)
        self.tell(sender, self.make(nodes.NodeHeartbeatAck, msg, key=msg.key, current=current))
        if not current:
            self.log.warning("symbols: {} #{} on a node is not the current actor of {}: told to stop",
                             msg.key, msg.incarnation, msg.key)

    def receiveMsg_ActorExitRequest(self, msg: ActorExitRequest, sender: ActorAddress) -> None:
        if self.placement is not None:
            self.notifyOnSystemRegistrationChanges(False)
        super().receiveMsg_ActorExitRequest(msg, sender)

    def status_detail(self) -> str:
        return "" if self.placement is None else self.placement.describe()

    def gauges(self) -> dict[str, int]:
        placement = self.placement
        if placement is None:
            return {}
        figures = {}
        for name in (placement.leader, *(n.name for n in placement.cluster.nodes)):
            figures[f"node_{name}_up"] = int(name == placement.leader or name in placement.live)
            figures[f"node_{name}_symbols"] = len(placement.on(name))
        return figures
