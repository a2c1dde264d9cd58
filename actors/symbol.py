"""SymbolActor: one traded symbol's position, bars, indicators and rules; it opens and closes order groups."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import timedelta
from decimal import Decimal
from enum import Enum
from pathlib import Path
from typing import Any, Final

from loguru import logger
from thespian.actors import ActorAddress, ActorExitRequest, ThespianWatch, WakeupMessage, WatchMessage

from actors import direct_channel as dc
from actors import journaling, logs
from actors import quote_channel as qc
from actors.base import ShellActor, run_once
from actors.order_group import group_key
from core import bars as core_bars
from core import order_group as og
from core import rules as core_rules
from core.config import Config, MarketDataConfig, RuleConfig, StrategyConfig, SymbolConfig
from core.errors import CoreError, InvalidOrder
from core.orders import new_order
from core.position import (
    Position,
    PositionState,
    apply_commission,
    apply_execution,
    cancel_entry,
    cancel_exit,
    expect_entry,
    expect_exit,
    mark,
    settle_fills,
)
from core.types import Bar, Execution, OrderType, Quote, Side, TimeInForce
from journal.store import FiringRow, Journal
from messages import (
    BrokerPositionReported,
    CancelOrderGroup,
    CommissionReported,
    ConfigureActor,
    DirectChannel,
    ExecutionReported,
    Flatten,
    GetHistoricalBars,
    GetPositions,
    GroupKind,
    HistoricalBars,
    Message,
    MoveStop,
    OrderDenied,
    OrderGroupFinished,
    OrderIntent,
    PeerMoved,
    PositionChanged,
    PositionsSnapshot,
    PredictionSignal,
    QuoteProcessed,
    QuoteUpdate,
    RulesUpdated,
    SignalIgnored,
    Snapshot,
    SubscribeMarketData,
    ToSymbol,
    TradingStateChanged,
)
from messages.risk import TradingState

TWS: Final = "tws"
GROUPS: Final = "groups"
RISK: Final = "risk"
MARK_EVERY_NS: Final = 500_000_000  # a held position's mark goes to the bus at most twice a second
_MARK: Final = "publish-mark"
_RECONCILE: Final = "reconcile-with-broker"
# The broker's position is compared with ours once neither a fill of the symbol nor a broker report
# arrived for this long: its position reports and our fills travel different paths (tws -> symbols,
# tws -> group -> symbols), so either can lead the other.
RECONCILE_QUIET_NS: Final = 5_000_000_000
_COMPILED: dict[str, core_rules.RuleSet] = {}  # rule sets compiled in this process, by version


# ---------------------------------------------------------------- configuration and state


@dataclass(frozen=True, slots=True, kw_only=True)
class SymbolSettings:
    """What one SymbolActor needs from the configuration (ConfigureActor.config may also be a Config)."""

    symbol: SymbolConfig
    market_data: MarketDataConfig
    strategy: StrategyConfig
    log_dir: Path
    log_level: str = "INFO"
    rules: tuple[RuleConfig, ...] = ()
    traded: tuple[str, ...] = ()
    timezone: str = "America/New_York"
    journal: journaling.JournalSettings | None = None  # None: nothing journaled (actor tests)

    @classmethod
    def of(cls, config: Config, symbol: str) -> SymbolSettings:
        """Return the settings of `symbol` in `config`; KeyError if it is not traded."""
        return cls(symbol=config.symbol(symbol), market_data=config.market_data,
                   strategy=config.strategy, log_dir=config.system.log_dir,
                   log_level=config.system.log_level.value, rules=config.rules,
                   traded=config.symbol_names, timezone=config.system.timezone,
                   journal=journaling.JournalSettings.of(config))


def rule_set(settings: SymbolSettings) -> core_rules.RuleSet:
    """Return the compiled rules of `settings`, compiled once per version in this process."""
    version = core_rules.rules_version(settings.rules, settings.strategy)
    compiled = _COMPILED.get(version)
    if compiled is None:
        traded = settings.traded or (settings.symbol.symbol,)
        compiled = core_rules.compile_set(settings.rules, settings.strategy, traded, settings.timezone)
        _COMPILED[version] = compiled
    return compiled


class GroupRole(str, Enum):
    ENTRY = "ENTRY"    # opens the position (a bracket: its children protect what filled)
    EXIT = "EXIT"      # closes it
    REDUCE = "REDUCE"  # closes part of it (a scale-out)


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkingGroup:
    """An order group this symbol started that has not reported OrderGroupFinished yet.

    `filled` turns True at the group's first entry fill (a bracket's children then protect the
    position); `stop` is its protective stop price, kept up to date when a rule moves it.
    """

    group_id: str
    role: GroupRole
    filled: bool = False
    stop: Decimal | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class SymbolState:
    """The snapshot of a SymbolActor: position, bars, market, rule memory, working groups, counters.

    `group_counter` only grows: group ids are f"{symbol}-{incarnation}-{n}" with n taken from
    it, and it is snapshotted before a group leaves, so no id repeats across restarts.
    `exit_pending` is the reason of an exit waiting for the working groups to be cancelled
    ("" = none): closing while a bracket's stop rests could sell twice. `memory` holds the
    rules' cooldowns and daily fire counts, so a restart does not fire a rule again early.

    The actor snapshots it when its durable part changes (`durable_part`: the position apart
    from its mark price, the working groups, the counter, a pending exit, the rule memory), not
    on every bar, and without the market (`for_snapshot`): a restarted incarnation brings its
    bars and indicators up to date from the historical warm-up.
    """

    symbol: str
    position: Position
    bars: core_bars.BarState
    market: core_rules.MarketState = field(default_factory=core_rules.MarketState)
    memory: core_rules.RuleMemory = field(default_factory=core_rules.RuleMemory)
    working: tuple[WorkingGroup, ...] = ()
    group_counter: int = 0
    exit_pending: str = ""
    exit_cause: tuple[str, str, str] = ()  # (rule, rules version, signal id) of the pending exit
    exit_operator: bool = False            # the pending exit is an operator's flatten
    quote: Quote | None = None


def durable_part(state: SymbolState | None) -> tuple[object, ...] | None:
    """Return what must survive a restart of the symbol: all but the mark price, quote, bars and market."""
    if state is None:
        return None
    return (replace(state.position, last_price=None), state.working, state.group_counter,
            state.exit_pending, state.exit_cause, state.exit_operator, state.memory)


def for_snapshot(state: SymbolState) -> SymbolState:
    """Return the state as its supervisor keeps it: without the market history, indicators and quote."""
    return replace(state, market=core_rules.MarketState(), quote=None)


def new_symbol_state(settings: SymbolSettings) -> SymbolState:
    """Return the state of a symbol that never traded."""
    name = settings.symbol.symbol
    return SymbolState(
        symbol=name,
        position=Position(symbol=name),
        bars=core_bars.new_state(name, settings.market_data.bar_seconds),
        market=core_rules.new_market(rule_set(settings).series),
    )


def group_id(symbol: str, incarnation: int, n: int) -> str:
    """Return the id of the symbol's n-th order group started by this incarnation."""
    return f"{symbol}-{incarnation}-{n}"


def entry_group(gid: str, symbol: SymbolConfig, entry: core_rules.OpenPosition) -> og.OrderGroup:
    """Return the group for an OpenPosition: a bracket (entry, GTC stop-loss, GTC take-profit) or one order."""
    name, tick = symbol.symbol, symbol.tick_size
    common: dict[str, Any] = {"symbol": name, "quantity": entry.quantity, "tick": tick}
    head = new_order(ref=og.leg_ref(gid, og.ENTRY), side=entry.side, order_type=entry.order_type,
                     limit_price=entry.limit_price, stop_price=entry.stop_price, tif=entry.tif, **common)
    if not entry.is_bracket:
        return og.single(gid, head)
    exit_side = entry.side.opposite
    # The children outlive a trading day: a DAY stop would leave an overnight position bare.
    stop = new_order(ref=og.leg_ref(gid, og.STOP_LOSS), side=exit_side, order_type=OrderType.STP,
                     stop_price=entry.stop_loss, tif=TimeInForce.GTC, **common)
    target = new_order(ref=og.leg_ref(gid, og.TAKE_PROFIT), side=exit_side, order_type=OrderType.LMT,
                       limit_price=entry.take_profit, tif=TimeInForce.GTC, **common)
    return og.bracket(gid, head, stop, target)


def exit_group(gid: str, position: Position, quantity: Decimal | None = None) -> og.OrderGroup:
    """Return a single market order that closes `position` (or `quantity` of it)."""
    side = Side.SELL if position.quantity > 0 else Side.BUY
    size = abs(position.quantity) if quantity is None else quantity
    order = new_order(ref=og.leg_ref(gid, og.ENTRY), symbol=position.symbol, side=side,
                      quantity=size, order_type=OrderType.MKT)
    return og.single(gid, order)


def state_key(symbol: str) -> str:
    """Return the key of a symbol's state in the journal."""
    return f"symbol:{symbol}"


def without_group(state: SymbolState, finished: WorkingGroup) -> SymbolState:
    """Return the state once the working group `finished` ended (its position expectation undone)."""
    position = state.position
    if finished.role is GroupRole.ENTRY and position.state is PositionState.OPENING:
        position = cancel_entry(position)
    elif finished.role is not GroupRole.ENTRY and position.state is PositionState.CLOSING:
        position = cancel_exit(position)  # a scale-out done, or a close that did not fill
    return replace(state, position=position, working=tuple(w for w in state.working if w is not finished))


def market_price(state: SymbolState) -> Decimal | None:
    """Return the symbol's latest price (last trade, else mid): the risk gate's reference."""
    if state.quote is not None:
        price = core_bars.quote_price(state.quote)
        if price is not None:
            return price
    return state.position.last_price


def trigger_of(cause: Message) -> dict[str, Any]:
    """Return the OrderIntent fields naming what triggered a decision and when it arrived."""
    if isinstance(cause, QuoteUpdate):
        return {"trigger": "tick", "trigger_ts_ns": cause.quote.ts_ns or cause.ts_ns}
    if isinstance(cause, PredictionSignal):
        return {"trigger": "signal", "trigger_ts_ns": cause.ts_ns}
    return {}


def unintended_fill(state: SymbolState, before: Decimal, after: Decimal, ref: str) -> bool:
    """Return True if a fill of our order `ref` took the position from `before` to `after` where no entry meant to.

    A fill that crosses zero (or opens a position from flat) is only ever meant by the entry leg of
    a working entry group. Anything else is an over-exit: a stop or target that filled after its
    cancel was acknowledged, both of them in one gap, or a close that overlapped such a fill (the
    field notes: PendingCancel orders can still fill). Orders that are not ours are left alone.
    """
    crossed = (before > 0 > after) or (before < 0 < after) or (before == 0 != after)
    gid, _, leg = ref.rpartition(":")
    if not crossed or not gid.startswith(f"{state.symbol}-") or leg not in (og.ENTRY, og.STOP_LOSS, og.TAKE_PROFIT):
        return False
    if leg != og.ENTRY and child_before_entry(state, ref):
        return False
    return not (leg == og.ENTRY and any(w.group_id == gid and w.role is GroupRole.ENTRY for w in state.working))


def child_before_entry(state: SymbolState, ref: str) -> bool:
    """Return True if `ref` is a bracket child of a working entry group whose entry fill was not seen yet.

    The broker holds a bracket's children until their parent fills, so the entry's fill is on its
    way: it was delayed, e.g. lost with a killed connection and replayed after its restart, while
    the child's fill came straight. Seen in chaos runs, 1-9 times per 10 minutes.
    """
    gid, _, leg = ref.rpartition(":")
    return leg in (og.STOP_LOSS, og.TAKE_PROFIT) and any(
        w.group_id == gid and w.role is GroupRole.ENTRY and not w.filled for w in state.working)


def group_of_ref(ref: str) -> str:
    """Return the group id of a leg's durable ref ("AAPL-1-3:entry" → "AAPL-1-3")."""
    return ref.rsplit(":", 1)[0]


# ---------------------------------------------------------------- logging


def configure_logging(settings: SymbolSettings) -> None:
    """Send this process's log to `system.log` and the symbol's lines to `symbols/<SYM>.log`."""
    logs.add_symbol_sink(settings.symbol.symbol, settings.log_dir, settings.log_level)


def release_logging(settings: SymbolSettings) -> None:
    """Drop this actor's use of its log sinks; a sink nobody uses any more is removed."""
    logs.release(logs.symbol_log_paths(settings.symbol.symbol, settings.log_dir))


def close_log_sinks() -> None:
    """Remove every sink added in this process (a simpleSystemBase shutdown stops no actor)."""
    logs.close_all()


# ---------------------------------------------------------------- the actor


class SymbolActor(ShellActor):
    """One symbol: ConfigureActor(key=symbol, config=Config or SymbolSettings, state=SymbolState or None).

    Peers: "tws" (market data, history), "risk" (OrderIntent: the order group to place), "groups"
    (CancelOrderGroup, MoveStop), "bus". Quotes build bars; each closed bar advances the
    indicators and runs the rules on "bar"; each PredictionSignal (from the strategy controller)
    runs the rules on "signal". A rule that fires becomes an order intent to the risk gate (its
    group's legs, the rule, the rule-set version and the signal), or a stop move, a cancel, a log
    line. Executions (forwarded by each group through "symbols") move the position;
    OrderGroupFinished (the same path, so after the group's fills) or OrderDenied clears the
    working group. RulesUpdated swaps the rules at once. TradingStateChanged HALTED stops the
    rules and cancels the working entries; Flatten closes the position (an operator's exit).
    With `market_data.quote_channel` the quotes come as datagrams on the actor's own UDP socket
    (actors/quote_channel.py, watched with ThespianWatch); QuoteUpdate messages work either way.
    """

    BACKGROUND = True  # runs at system.background_nice (ShellActor.BACKGROUND)

    def __init__(self) -> None:
        super().__init__()
        self.settings: SymbolSettings | None = None
        self.state: SymbolState | None = None
        self.rules: core_rules.RuleSet | None = None
        self._base_log = self.log
        self._saved: tuple[object, ...] | None = None  # durable_part of the last Snapshot sent
        self.inbox: qc.Endpoint | None = None
        self.token = ""
        self.refused = 0  # quote datagrams dropped as malformed or foreign
        self.trading = TradingState.ACTIVE  # the risk manager's mode, as the symbols supervisor passes it on
        self.broker_quantity: Decimal | None = None  # the broker's latest position report (reqPositions)
        self.mismatch: tuple[Decimal, Decimal] | None = None  # (ours, the broker's) while they disagree
        self._last_fill_ns = 0
        self._last_report_ns = 0
        self._reconcile_armed = False
        self.journal: Journal | None = None
        self._firings: list[FiringRow] = []  # rules that fired, journaled with the next commit
        self._positions: list[tuple[Position, str]] = []  # positions after fills (with the exec id), likewise
        self._mark_due_ns = 0  # the next quote that may publish a held position's new mark
        self._mark_armed = False  # a wakeup will publish the latest mark
        self.to_risk = dc.Link("OrderIntent")  # the risk manager's intent inbox, offered via the supervisor

    def receiveMessage(self, msg: Any, sender: ActorAddress) -> Any:
        super().receiveMessage(msg, sender)
        # The watch must come back from every call, or thespian stops watching the socket.
        if self.inbox is not None and not self.failed:
            return ThespianWatch([self.inbox.fileno()])
        return None

    # ------------------------------------------------------------ set-up

    def on_configure(self, msg: ConfigureActor) -> None:
        config = msg.config
        settings = SymbolSettings.of(config, msg.key) if isinstance(config, Config) else config
        if not isinstance(settings, SymbolSettings):
            raise TypeError(f"{msg.key}: config must be a Config or SymbolSettings, "
                            f"got {type(config).__name__}")
        name = settings.symbol.symbol
        configure_logging(settings)
        self.settings = settings
        self.rules = rule_set(settings)
        self._base_log = logger.bind(actor=f"{name}#{self.incarnation}", symbol=name)
        self.log = self._base_log.bind(corr=msg.correlation_id)
        self.journal = journaling.journal(settings.journal)
        state = msg.state
        recovered = False
        if self.journal is not None:
            # The journal is written before the supervisor's copy is sent, so it is never older; with
            # nothing kept by the supervisor, the whole system restarted.
            journaled = self.journal.get_state(state_key(name))
            if journaled is not None:
                recovered = state is None
                state = journaled
        if state is None:
            state = new_symbol_state(settings)
        elif not isinstance(state, SymbolState) or state.symbol != name:
            raise TypeError(f"{name}: state is not a {name} SymbolState: {state!r}")
        else:
            # Snapshots skip per-quote changes, so a snapshot's open bar is stale: start afresh;
            # the market comes back from the historical warm-up.
            state = replace(state, bars=core_bars.reset_open_bar(state.bars),
                            market=core_rules.retarget(state.market, self.rules.series),
                            memory=core_rules.forget_removed(state.memory, self.rules))
        if self.journal is not None:
            state = self._catch_up(state, recovered)
        self.state = state
        self._saved = durable_part(state) if msg.state is not None else None
        self.log.info("{} configured (incarnation {}): position {} {}, {} working group(s), counter {}; "
                      "rules {} ({})", name, self.incarnation, state.position.state.value,
                      state.position.quantity, len(state.working), state.group_counter,
                      self.rules.version, ", ".join(self.rules.names) or "none")
        # Datagrams need a watched socket: only an actor in its own process has one (in-process, on
        # simpleSystemBase, nothing would ever read them), so in-process quotes come as messages.
        if settings.market_data.quote_channel and self.inbox is None and qc.usable_symbol(name) \
                and logs.runs_alone():
            self.inbox = qc.Endpoint()
            self.token = qc.new_token()
        self._subscribe(msg)
        market = settings.market_data
        if market.warmup_bars:
            self.tell_peer(TWS, self.make(GetHistoricalBars, msg, symbol=name,
                                          bar_size_s=market.bar_seconds, count=market.warmup_bars))
        if state.exit_pending and not state.working:
            # An exit waited for groups that ended while the system was down: close now.
            outbox: list[tuple[str, Message]] = []
            self._commit(msg, self._close(msg, state, state.exit_pending, outbox, why=state.exit_cause,
                                          operator=state.exit_operator), outbox)

    def _catch_up(self, state: SymbolState, recovered: bool) -> SymbolState:
        """Return the state with every journaled fill it missed applied (exactly once, by exec id).

        After a restart of the whole system (`recovered`), a working group whose intent the journal
        shows denied, abandoned (it never reached the broker) or never decided is dropped.
        """
        journal = self.journal
        assert journal is not None
        position = state.position
        for row in journal.executions(symbol=state.symbol, after_seq=position.exec_floor):
            if row.exec_id not in position.exec_ids:
                execution = Execution(exec_id=row.exec_id, order_id=row.order_id, order_ref=row.ref,
                                      symbol=row.symbol, side=row.side, quantity=row.quantity, price=row.price,
                                      commission=row.commission, ts_ns=row.ts_ns)
                position = apply_execution(position, execution)
                self.log.warning("{}: journaled fill {} {} {} @ {} applied on restart -> position {}",
                                 state.symbol, row.exec_id, row.side.value, row.quantity, row.price,
                                 position.quantity)
                gid = group_of_ref(row.ref)
                if row.ref == og.leg_ref(gid, og.ENTRY):
                    state = replace(state, working=tuple(replace(w, filled=True) if w.group_id == gid else w
                                                         for w in state.working))
        state = replace(state, position=self._settle_fills(position))
        if not recovered:
            return state
        for working in state.working:
            intent = journal.intent(working.group_id)
            if intent is None:
                why = "its intent never reached the risk manager"
            elif intent.decision == "DENIED":
                why = f"its intent was denied ({intent.limit_name})"
            elif intent.resolution == "ABANDONED":
                why = f"its intent was abandoned: {intent.resolution_reason}"
            elif journal.get_state(group_key(working.group_id)) is None:
                # The group's record goes with its approval and leaves once it finished and said so.
                why = "its group finished before the restart"
            else:
                continue
            self.log.warning("{}: working group {} dropped on restart: {}", state.symbol, working.group_id, why)
            state = without_group(state, working)
        return state

    def _subscribe(self, cause: Message) -> None:
        assert self.settings is not None
        channel = self.inbox.channel(self.token) if self.inbox is not None else None
        self.tell_peer(TWS, self.make(SubscribeMarketData, cause, symbol=self.settings.symbol.symbol,
                                      reply_to=self.myAddress, channel=channel))

    @run_once
    def receiveMsg_PeerMoved(self, msg: PeerMoved, sender: ActorAddress) -> None:
        super().receiveMsg_PeerMoved(msg, sender)
        if msg.name == TWS and self.settings is not None:
            self._subscribe(msg)  # a restarted connection may not know this incarnation's channel

    def receiveMsg_ActorExitRequest(self, msg: ActorExitRequest, sender: ActorAddress) -> None:
        if self.inbox is not None:
            self.inbox.close()
            self.inbox = None
        if self.settings is not None:
            self.log.info("{} stopping", self.settings.symbol.symbol)
            release_logging(self.settings)
            self.settings = None

    def _trace(self, msg: Message) -> None:
        self.log = self._base_log.bind(corr=msg.correlation_id)

    # ------------------------------------------------------------ market data

    def receiveMsg_QuoteUpdate(self, msg: QuoteUpdate, sender: ActorAddress) -> None:
        # Not run_once itself: the acknowledgement must go back even when processing failed,
        # or the connection would hold this symbol's quotes forever.
        try:
            self._on_quote(msg, sender)
        finally:
            if msg.ack:
                self.tell(sender, self.make(QuoteProcessed, msg, symbol=msg.quote.symbol))

    def receiveMsg_WatchMessage(self, msg: WatchMessage, sender: ActorAddress) -> None:
        inbox = self.inbox
        if inbox is None or inbox.fileno() not in msg.ready:
            return
        best, refused = qc.latest_quote(inbox.drain(), self.token)
        if refused:
            self.refused += len(refused)
            self.log.warning("{}: {} quote datagram(s) refused ({} so far): {}", self.key, len(refused),
                             self.refused, refused[0])
        if best is None:
            return
        seq, update, reply_to = best
        try:
            self._on_quote(update, sender)
        finally:
            inbox.send_to(reply_to, qc.encode_ack(self.token, seq, update.quote.symbol))

    @run_once
    def _on_quote(self, msg: QuoteUpdate, sender: ActorAddress) -> None:
        state = self.state
        if state is None:
            return
        self._trace(msg)
        self.metrics.inc("quotes_processed")
        quote = msg.quote
        if quote.symbol != state.symbol:
            self.log.warning("{}: quote for {} ignored", state.symbol, quote.symbol)
            return
        try:
            price = core_bars.quote_price(quote)
            position = mark(state.position, price) if price is not None else state.position
            bars, closed = core_bars.update(state.bars, quote)
        except CoreError as exc:
            self.log.warning("{}: quote dropped: {}", state.symbol, exc)
            return
        self.state = replace(state, position=position, bars=bars, quote=quote)
        if position.quantity != 0 and position is not state.position:
            self._mark(msg)
        for bar in closed:
            self._on_bar(msg, bar)

    def _mark(self, cause: Message | None) -> None:
        """Publish the held position's new mark: the account's unrealized P&L (the daily loss limit)
        follows it, at most once per MARK_EVERY_NS; the last mark of a burst goes when the time is up."""
        now = self.now_ns()
        if now < self._mark_due_ns:
            if not self._mark_armed:
                self._mark_armed = True
                self.wakeupAfter(timedelta(seconds=(self._mark_due_ns - now) / 1e9), payload=_MARK)
            return
        self._mark_due_ns = now + MARK_EVERY_NS
        state = self.state
        if state is not None and state.position.quantity != 0:
            self.publish(PositionChanged.of(state.position, cause=cause, ts_ns=now))

    @run_once
    def receiveMsg_WakeupMessage(self, msg: WakeupMessage, sender: ActorAddress) -> None:
        if msg.payload == _MARK:
            self._mark_armed = False
            self._mark(None)
        elif msg.payload == _RECONCILE:
            self._reconcile_armed = False
            self._reconcile(msg)

    # ------------------------------------------------------------ reconciliation with the broker

    @run_once
    def receiveMsg_BrokerPositionReported(self, msg: BrokerPositionReported, sender: ActorAddress) -> None:
        state = self.state
        if state is None or msg.symbol != state.symbol:
            return
        self.broker_quantity = msg.quantity
        self._last_report_ns = self.now_ns()
        self._reconcile_soon(RECONCILE_QUIET_NS)

    def _reconcile_soon(self, delay_ns: int) -> None:
        if not self._reconcile_armed:
            self._reconcile_armed = True
            self.wakeupAfter(timedelta(seconds=delay_ns / 1e9), payload=_RECONCILE)

    def _reconcile(self, cause: Message) -> None:
        """Compare our position with the broker's once both have been quiet; block entries while they differ.

        Quiet: no fill applied and no broker report for RECONCILE_QUIET_NS. A report can arrive just
        before the fill it includes (or long after it), so neither side is compared mid-change.

        A difference is never "fixed" by inventing fills (nautilus_trader #3054 opened an opposite
        position that way): it is logged, journaled and shown by `status`, and the symbol takes no
        new entry until the two agree again (exits and protective orders go on). An operator
        resolves it (e.g. flatten at the broker, or a restart once the fills are journaled).
        """
        state, broker = self.state, self.broker_quantity
        if state is None or broker is None:
            return
        quiet_for = self.now_ns() - max(self._last_fill_ns, self._last_report_ns)
        if quiet_for < RECONCILE_QUIET_NS:
            self._reconcile_soon(RECONCILE_QUIET_NS - quiet_for)
            return
        ours = state.position.quantity
        if ours == broker:
            if self.mismatch is not None:
                self.log.warning("{}: our position {} agrees with the broker's again; entries allowed",
                                 state.symbol, ours)
                self._journal_mismatch(state.symbol, "position_agrees", ours, broker)
            self.mismatch = None
        elif self.mismatch != (ours, broker):
            self.mismatch = (ours, broker)
            self.metrics.inc("position_mismatches")
            self.log.error("{}: POSITION MISMATCH: ours {}, the broker's {}; no new entry until they agree "
                           "(exits and protective orders go on). Check the broker's executions, then flatten "
                           "or restart the symbol", state.symbol, ours, broker)
            self._journal_mismatch(state.symbol, "position_mismatch", ours, broker)

    def _journal_mismatch(self, symbol: str, kind: str, ours: Decimal, broker: Decimal) -> None:
        if self.journal is not None:
            self.journal.record_event(kind, ts_ns=self.now_ns(), actor=self.key, symbol=symbol,
                                      text=f"ours {ours}, the broker's {broker}",
                                      data={"ours": ours, "broker": broker})

    def _on_bar(self, cause: Message, bar: Bar) -> None:
        state = self.state
        assert state is not None
        self.log.debug("{} bar {} O {} H {} L {} C {} V {}", state.symbol, bar.ts_ns, bar.open,
                       bar.high, bar.low, bar.close, bar.volume)
        state = replace(state, market=core_rules.advance(state.market, bar))
        outbox: list[tuple[str, Message]] = []
        state, _ = self._run_rules(cause, state, "bar", None, outbox)
        self._commit(cause, state, outbox)

    @run_once
    def receiveMsg_HistoricalBars(self, msg: HistoricalBars, sender: ActorAddress) -> None:
        state = self.state
        if state is None or msg.symbol != state.symbol:
            return
        self._trace(msg)
        try:
            market = core_rules.warm_up(state.market, msg.bars)
        except CoreError as exc:
            self.log.warning("{}: history dropped: {}", state.symbol, exc)
            return
        self.log.info("{}: warmed up on {} historical bar(s); {} bar(s) seen", state.symbol,
                      len(msg.bars), market.bars_seen)
        self._commit(msg, replace(state, market=market), [])

    # ------------------------------------------------------------ signals and rules

    @run_once
    def receiveMsg_PredictionSignal(self, msg: PredictionSignal, sender: ActorAddress) -> None:
        state = self.state
        if state is None:
            return
        self._trace(msg)
        self.metrics.inc("signals_processed")
        signal_id = msg.source_id or msg.msg_id
        if msg.symbol != state.symbol:
            self._ignored(msg, signal_id, f"a signal for {msg.symbol} reached {state.symbol}")
            return
        now = self.now_ns()
        if msg.expires_ns and now >= msg.expires_ns:
            self._ignored(msg, signal_id, "expired before it was evaluated")
            return
        outbox: list[tuple[str, Message]] = []
        state, result = self._run_rules(msg, state, "signal", msg, outbox)
        self._commit(msg, state, outbox)
        if not result.fired:
            self._ignored(msg, signal_id, "; ".join(result.notes) or "no rule matched")

    def _ignored(self, msg: PredictionSignal, signal_id: str, reason: str) -> None:
        self.log.info("{}: signal {} {} {} ignored: {}", msg.symbol, signal_id, msg.direction.value,
                      msg.confidence, reason)
        self.publish(self.make(SignalIgnored, msg, signal_id=signal_id, symbol=msg.symbol, reason=reason))

    @run_once
    def receiveMsg_RulesUpdated(self, msg: RulesUpdated, sender: ActorAddress) -> None:
        state, settings = self.state, self.settings
        if state is None or settings is None:
            return
        self._trace(msg)
        settings = replace(settings, rules=msg.rules, strategy=msg.strategy)
        rules = rule_set(settings)  # validated by the controller; a failure here is a bug
        self.settings, self.rules = settings, rules
        state = replace(state, market=core_rules.retarget(state.market, rules.series),
                        memory=core_rules.forget_removed(state.memory, rules))
        self.log.info("{}: rules {} now running ({})", state.symbol, rules.version,
                      ", ".join(rules.names) or "none")
        self._commit(msg, state, [])

    def _situation(self, state: SymbolState, signal: PredictionSignal | None) -> core_rules.Situation:
        assert self.settings is not None
        quote = state.quote
        facts = None
        if signal is not None:
            facts = core_rules.SignalFacts(
                signal_id=signal.source_id or signal.msg_id, direction=signal.direction.value,
                confidence=signal.confidence, horizon_s=signal.horizon_s,
                created_ns=signal.created_ns or signal.ts_ns,
                expires_ns=signal.expires_ns, source=signal.source,
                reference_price=signal.reference_price)
        groups = tuple(core_rules.Protection(group_id=w.group_id, entry=w.role is GroupRole.ENTRY,
                                             filled=w.filled, stop=w.stop) for w in state.working)
        return core_rules.Situation(
            symbol=state.symbol, now_ns=self.now_ns(), position=state.position, market=state.market,
            tick=self.settings.symbol.tick_size, lot=Decimal(self.settings.symbol.lot_size),
            bid=quote.bid if quote else None, ask=quote.ask if quote else None,
            last=quote.last if quote else None, volume=quote.volume if quote else None,
            groups=groups, exit_pending=bool(state.exit_pending), signal=facts)

    def _run_rules(self, cause: Message, state: SymbolState, event: str, signal: PredictionSignal | None,
                   outbox: list[tuple[str, Message]]) -> tuple[SymbolState, core_rules.Evaluation]:
        """Evaluate the rules on `event` and act on what fired; return the state and the evaluation."""
        rules = self.rules
        assert rules is not None
        if self.trading is TradingState.HALTED:
            note = "trading is HALTED: no rule runs"
            return state, core_rules.Evaluation(memory=state.memory, fired=(), notes=(note,) if signal else ())
        result = core_rules.evaluate(rules, state.memory, event, self._situation(state, signal))
        for note in result.notes:
            self.log.info("{}: {}", state.symbol, note)
        state = replace(state, memory=result.memory)
        signal_id = (signal.source_id or signal.msg_id) if signal is not None else ""
        for firing in result.fired:
            on = f"signal {signal_id}" if signal is not None else "bar"
            self.log.info("{}: rule {} ({}) fired on {}: {}", state.symbol, firing.rule, rules.version, on,
                          firing.why)
            counter = state.group_counter
            state = self._act(cause, state, firing, signal_id, outbox)
            intent_id = group_id(state.symbol, self.incarnation, state.group_counter) \
                if state.group_counter != counter else ""
            self._firings.append(FiringRow(ts_ns=self.now_ns(), symbol=state.symbol, rule=firing.rule,
                                           rules_version=rules.version, trigger=event, signal_id=signal_id,
                                           why=firing.why, intent_id=intent_id))
        return state, result

    # ------------------------------------------------------------ decisions -> groups

    def _act(self, cause: Message, state: SymbolState, firing: core_rules.Firing, signal_id: str,
             outbox: list[tuple[str, Message]]) -> SymbolState:
        decision = firing.decision
        if isinstance(decision, core_rules.OpenPosition):
            return self._enter(cause, state, decision, firing, signal_id, outbox)
        reason = f"rule {firing.rule}"
        if isinstance(decision, core_rules.ClosePosition):
            assert self.rules is not None
            why = (firing.rule, self.rules.version, signal_id)
            if decision.quantity is None:
                return self._exit(cause, state, reason, outbox, why)
            return self._reduce(cause, state, decision.quantity, reason, outbox, why)
        if isinstance(decision, core_rules.MoveStops):
            moved = dict(decision.moves)
            for gid, price in decision.moves:
                self.log.info("{}: move the stop of {} to {} ({})", state.symbol, gid, price, reason)
                outbox.append((GROUPS, self.make(MoveStop, cause, symbol=state.symbol, stop_price=price,
                                                 reason=reason, group_id=gid)))
            return replace(state, working=tuple(replace(w, stop=moved[w.group_id]) if w.group_id in moved
                                                else w for w in state.working))
        if isinstance(decision, core_rules.CancelGroups):
            for gid in decision.group_ids:
                self.log.info("{}: cancel {} ({})", state.symbol, gid, reason)
                outbox.append((GROUPS, self.make(CancelOrderGroup, cause, group_id=gid, reason=reason)))
            return state
        self.log.log(decision.level, "{}: {} ({})", state.symbol, decision.message, reason)
        return state

    def _enter(self, cause: Message, state: SymbolState, entry: core_rules.OpenPosition,
               firing: core_rules.Firing, signal_id: str, outbox: list[tuple[str, Message]]) -> SymbolState:
        assert self.settings is not None and self.rules is not None
        if self.mismatch is not None:
            ours, broker = self.mismatch
            self.log.warning("{}: rule {} would enter, but our position {} differs from the broker's {}: "
                             "no entry", state.symbol, firing.rule, ours, broker)
            return state
        n = state.group_counter + 1
        gid = group_id(state.symbol, self.incarnation, n)
        try:
            group = entry_group(gid, self.settings.symbol, entry)
        except InvalidOrder as exc:
            self.log.warning("{}: rule {}: entry not placed: {}", state.symbol, firing.rule, exc)
            return state
        kind = GroupKind.BRACKET if entry.is_bracket else GroupKind.SINGLE
        intent = self.make(
            OrderIntent, cause, intent_id=gid, symbol=state.symbol, side=entry.side,
            quantity=entry.quantity, order_type=entry.order_type, limit_price=entry.limit_price,
            stop_price=entry.stop_price, tif=entry.tif, stop_loss=entry.stop_loss,
            take_profit=entry.take_profit, rule=firing.rule, rules_version=self.rules.version,
            signal_id=signal_id, kind=kind, legs=group.legs, market_price=market_price(state),
            reply_to=self.parent, **trigger_of(cause))
        self.metrics.inc("intents")
        self.log.info("{}: intent {} {} {} {} {}{} (rule {} {}, signal {})", state.symbol, gid,
                      entry.side.value, entry.quantity, entry.order_type.value, kind.value.lower(),
                      f" stop {entry.stop_loss} target {entry.take_profit}" if entry.is_bracket else "",
                      firing.rule, self.rules.version, signal_id or "-")
        position = state.position
        if position.state in (PositionState.FLAT, PositionState.CLOSED, PositionState.OPENING):
            position = expect_entry(position)
        outbox.append((RISK, intent))
        return replace(state, position=position, group_counter=n,
                       working=state.working + (WorkingGroup(group_id=gid, role=GroupRole.ENTRY,
                                                             stop=entry.stop_loss),))

    def _exit(self, cause: Message, state: SymbolState, reason: str,
              outbox: list[tuple[str, Message]], why: tuple[str, str, str] = (),
              operator: bool = False) -> SymbolState:
        if state.exit_pending or any(w.role is GroupRole.EXIT for w in state.working):
            return state  # already on its way out
        if state.working:
            # Cancel the protection first and close what is left once the groups ended: a market
            # exit beside a resting stop could sell the position twice.
            self.log.info("{}: exit ({}); cancelling {} first", state.symbol, reason,
                          ", ".join(w.group_id for w in state.working))
            for working in state.working:
                outbox.append((GROUPS, self.make(CancelOrderGroup, cause, group_id=working.group_id,
                                                 reason=f"exit: {reason}")))
            return replace(state, exit_pending=reason, exit_cause=why, exit_operator=operator)
        return self._close(cause, state, reason, outbox, why=why, operator=operator)

    def _close(self, cause: Message, state: SymbolState, reason: str, outbox: list[tuple[str, Message]],
               quantity: Decimal | None = None, why: tuple[str, str, str] = (),
               operator: bool = False) -> SymbolState:
        """Close the position (or `quantity` of it) at market; `why` = (rule, rules version, signal id)."""
        position = state.position
        if position.quantity == 0:
            return replace(state, exit_pending="", exit_cause=(), exit_operator=False)
        n = state.group_counter + 1
        gid = group_id(state.symbol, self.incarnation, n)
        group = exit_group(gid, position, quantity)
        role = GroupRole.EXIT if quantity is None else GroupRole.REDUCE
        self.log.info("{}: intent {} {} {} {} {} ({}{})", state.symbol, gid,
                      "close" if quantity is None else "scale out", group.legs[0].side.value, group.size,
                      "MKT", reason, f" {why[1]}, signal {why[2] or '-'}" if why else "")
        if position.state is PositionState.OPEN:
            position = expect_exit(position)
        leg = group.legs[0]
        rule, version, signal_id = why or ("", "", "")
        intent = self.make(OrderIntent, cause, intent_id=gid, symbol=state.symbol, side=leg.side,
                           quantity=leg.quantity, order_type=leg.order_type, rule=rule, rules_version=version,
                           signal_id=signal_id, reduce_only=True, operator=operator, kind=GroupKind.SINGLE,
                           legs=group.legs, market_price=market_price(state),
                           reply_to=self.parent, **trigger_of(cause))
        self.metrics.inc("intents")
        outbox.append((RISK, intent))
        return replace(state, position=position, group_counter=n, exit_pending="", exit_cause=(),
                       exit_operator=False, working=state.working + (WorkingGroup(group_id=gid, role=role),))

    def _reduce(self, cause: Message, state: SymbolState, quantity: Decimal, reason: str,
                outbox: list[tuple[str, Message]], why: tuple[str, str, str]) -> SymbolState:
        if state.exit_pending or any(w.role is not GroupRole.ENTRY for w in state.working):
            return state  # a close or another scale-out is on its way
        return self._close(cause, state, reason, outbox, quantity, why)

    def _commit(self, cause: Message, state: SymbolState, outbox: list[tuple[str, Message]]) -> None:
        before = self.state
        self.state = state
        durable = durable_part(state)
        changed = durable != self._saved
        self._journal(state if changed else None)
        if changed:
            self._saved = durable
        # Without a journal, the supervisor's copy (with the group counter) is all a restart has: it
        # goes before any intent it accounts for. With one, the journal (just committed) is what a
        # restart reads, so the copy goes after the intents: it is not on the way to the broker.
        snapshot_first = changed and self.journal is None
        if snapshot_first:
            self._snapshot_up(cause, state)
        for peer, message in outbox:
            if peer == RISK and isinstance(message, OrderIntent) and self._intent_direct(message):
                continue
            self.tell_peer(peer, message)
        if changed and not snapshot_first:
            self._snapshot_up(cause, state)
        # After the orders: the bus is for listeners, not on the way to the broker.
        if before is not None and state.position != before.position and (
                state.position.quantity != 0 or durable_part(before) != durable):
            # A flat position's mark moving is no news; a held one's is (unrealized P&L).
            self.publish(PositionChanged.of(state.position, cause=cause, ts_ns=self.now_ns()))

    def _snapshot_up(self, cause: Message, state: SymbolState) -> None:
        self.tell(self.parent, self.make(Snapshot, cause, key=self.key, incarnation=self.incarnation,
                                         state=for_snapshot(state)))

    def receiveMsg_DirectChannel(self, msg: DirectChannel, sender: ActorAddress) -> None:
        if sender == self.parent:
            self.to_risk.offer(msg)  # passed on by the supervisor; the latest offer wins

    def _intent_direct(self, intent: OrderIntent) -> bool:
        """Put the intent into the risk manager's datagram inbox; False: send it as a message."""
        return self.to_risk.send(intent, self.myAddress)

    def _journal(self, state: SymbolState | None) -> None:
        """Commit the rules that fired and the changed state (if given) before any order leaves.

        Not synced to disk: what it writes reaches the broker only as an order, and the connection
        commits synced before any order leaves (which makes this commit survive a power loss too);
        the fills it follows are synced by the connection, and a restart catches up from them.
        """
        journal, firings, positions = self.journal, self._firings, self._positions
        self._firings, self._positions = [], []
        if journal is None or (state is None and not firings and not positions):
            return
        with journal.batch(synced=False):
            for firing in firings:
                journal.record_firing(firing)
            for p, exec_id in positions:
                journal.record_event("position", ts_ns=self.now_ns(), actor=self.key, symbol=p.symbol,
                                     ref=exec_id, text=f"{p.quantity} @ {p.avg_cost} ({p.state.value})",
                                     data={"quantity": p.quantity, "avg_cost": p.avg_cost,
                                           "realized_pnl": p.realized_pnl, "commissions": p.commissions,
                                           "state": p.state.value})
            if state is not None:
                journal.put_state(state_key(state.symbol), for_snapshot(state), incarnation=self.incarnation,
                                  ts_ns=self.now_ns())

    # ------------------------------------------------------------ fills and groups

    @run_once
    def receiveMsg_ExecutionReported(self, msg: ExecutionReported, sender: ActorAddress) -> None:
        state = self.state
        if state is None:
            return
        self._trace(msg)
        execution = msg.execution
        if self._settled(state.position, execution.exec_id):
            return  # applied long ago: a replay of a fact the journal's floor already covers
        try:
            position = apply_execution(state.position, execution)
        except CoreError as exc:
            self.log.error("{}: execution {} not applied: {}", state.symbol, execution.exec_id, exc)
            return
        if position is state.position:
            return  # an exec id already applied (a replay, or the commission report's repeat)
        position = self._settle_fills(position)
        self.log.info("{}: fill {} {} {} @ {} -> position {} avg {} ({})", state.symbol,
                      execution.exec_id, execution.side.value, execution.quantity, execution.price,
                      position.quantity, position.avg_cost, position.state.value)
        gid = group_of_ref(execution.order_ref)
        entry_fill = execution.order_ref == og.leg_ref(gid, og.ENTRY)
        working = tuple(replace(w, filled=True) if entry_fill and w.group_id == gid else w
                        for w in state.working)
        self._positions.append((position, execution.exec_id))
        self._last_fill_ns = self.now_ns()
        if self.broker_quantity is not None:
            self._reconcile_soon(RECONCILE_QUIET_NS)  # compared again once the fills are quiet
        outbox: list[tuple[str, Message]] = []
        before, state = state, replace(state, position=position, working=working)
        if child_before_entry(before, execution.order_ref):
            self.log.info("{}: {} filled before its entry's fill reached us: that fill is on its way",
                          state.symbol, execution.order_ref)
        if unintended_fill(before, before.position.quantity, position.quantity, execution.order_ref):
            state = self._undo_unintended(msg, state, before.position.quantity, execution, outbox)
        self._commit(msg, state, outbox)

    @run_once
    def receiveMsg_CommissionReported(self, msg: CommissionReported, sender: ActorAddress) -> None:
        state = self.state
        if state is None:
            return
        try:
            position = apply_commission(state.position, msg.exec_id, msg.commission)
        except CoreError as exc:
            self.log.error("{}: commission report for {} not applied: {}", state.symbol, msg.exec_id, exc)
            return
        if position is state.position:
            return  # its fill had it already, or it was added before (a repeat)
        self.log.info("{}: late commission {} for fill {} -> commissions {}", state.symbol, msg.commission,
                      msg.exec_id, position.commissions)
        self._commit(msg, replace(state, position=position), [])

    def _undo_unintended(self, cause: Message, state: SymbolState, before: Decimal, execution: Execution,
                         outbox: list[tuple[str, Message]]) -> SymbolState:
        """Close a position no entry opened (an over-exit), now or once the exits on their way ended."""
        reason = (f"unintended position: {execution.order_ref} {execution.side.value} {execution.quantity} "
                  f"took it from {before} to {state.position.quantity}")
        self.metrics.inc("unintended_fills")
        closing = [w.group_id for w in state.working if w.role is not GroupRole.ENTRY]
        if state.exit_pending or closing:
            self.log.error("{}: {}; closing it once {} ended", state.symbol, reason,
                           ", ".join(closing) or "the cancels on their way")
            return replace(state, exit_pending=state.exit_pending or reason)
        self.log.error("{}: {}; closing it", state.symbol, reason)
        return self._exit(cause, state, reason, outbox)

    def _settled(self, position: Position, exec_id: str) -> bool:
        """Return True if `exec_id` is a journaled fill at or below the position's exec floor."""
        if position.exec_floor == 0 or exec_id in position.exec_ids or self.journal is None:
            return False
        seq = self.journal.exec_seq(exec_id)
        return seq is not None and seq <= position.exec_floor

    def _settle_fills(self, position: Position) -> Position:
        """Return the position with the exec ids the journal's fill order now covers folded into its floor."""
        if self.journal is None:
            return position  # no journal to ask: every exec id stays
        rows = self.journal.executions(symbol=position.symbol, after_seq=position.exec_floor)
        return settle_fills(position, ((r.exec_id, r.seq) for r in rows))

    @run_once
    def receiveMsg_OrderGroupFinished(self, msg: OrderGroupFinished, sender: ActorAddress) -> None:
        state = self.state
        if state is None:
            return
        self._trace(msg)
        finished = next((w for w in state.working if w.group_id == msg.group_id), None)
        if finished is None:
            return  # not ours, or already handled (the bus and the direct path both bring it)
        self.log.info("{}: group {} finished {} (filled {}): {}", state.symbol, msg.group_id,
                      msg.outcome.value, msg.filled, msg.reason)
        self._group_ended(msg, state, finished, msg.outcome.value)

    @run_once
    def receiveMsg_OrderDenied(self, msg: OrderDenied, sender: ActorAddress) -> None:
        state = self.state
        if state is None:
            return
        self._trace(msg)
        denied = next((w for w in state.working if w.group_id == msg.intent.intent_id), None)
        if denied is None:
            return
        self.log.warning("{}: intent {} denied by risk ({}): {}", state.symbol, denied.group_id, msg.limit,
                         msg.detail)
        self._group_ended(msg, state, denied, "DENIED")

    def _group_ended(self, msg: Message, state: SymbolState, finished: WorkingGroup, outcome: str) -> None:
        state = without_group(state, finished)
        position = state.position
        # What is held now may be another group's: an entry that filled after this exit did (its
        # children protect it), or an exit still working. Only with neither is it left unprotected.
        covering = [w.group_id for w in state.working if w.role is GroupRole.EXIT or w.filled]
        if finished.role is GroupRole.EXIT and position.quantity != 0 and covering:
            self.log.info("{}: exit group {} ended {}; the {} held now are under {}", state.symbol,
                          finished.group_id, outcome, position.quantity, ", ".join(covering))
        elif finished.role is GroupRole.EXIT and isinstance(msg, OrderDenied) and msg.limit == "reduce_only":
            # The gate counts the position from the journal, which has every fill before we hear of
            # it: a fill on its way (a cancelled order the broker filled after all) closed it.
            self.log.warning("{}: exit group {} denied: the journal counts fills not applied here yet ({}); "
                             "{} held until they come", state.symbol, finished.group_id, msg.detail,
                             position.quantity)
        elif finished.role is GroupRole.EXIT and position.quantity != 0:
            self.log.error("{}: exit group {} ended {} with {} still held and no exit working",
                           state.symbol, finished.group_id, outcome, position.quantity)
        elif position.quantity != 0 and not state.working and not state.exit_pending:
            self.log.warning("{}: {} held and no order group protects it", state.symbol,
                             position.quantity)
        outbox: list[tuple[str, Message]] = []
        if state.exit_pending and not state.working:
            state = self._close(msg, state, state.exit_pending, outbox, why=state.exit_cause,
                                operator=state.exit_operator)
        self._commit(msg, state, outbox)

    # ------------------------------------------------------------ the kill switch

    @run_once
    def receiveMsg_TradingStateChanged(self, msg: TradingStateChanged, sender: ActorAddress) -> None:
        state = self.state
        if state is None:
            return
        self._trace(msg)
        before, self.trading = self.trading, msg.state
        if msg.state is not TradingState.HALTED or before is TradingState.HALTED:
            if msg.state is not before:
                self.log.warning("{}: trading {} ({})", state.symbol, msg.state.value, msg.reason)
            return
        # Halted: no rule runs; working entries are cancelled; protective orders stay at the broker
        # (a bracket whose entry filled keeps its children, sized to the fills).
        entries = [w for w in state.working if w.role is GroupRole.ENTRY]
        self.log.warning("{}: trading HALTED ({}); cancelling {} working entr{}", state.symbol, msg.reason,
                         len(entries), "y" if len(entries) == 1 else "ies")
        for working in entries:
            self.tell_peer(GROUPS, self.make(CancelOrderGroup, msg, group_id=working.group_id,
                                             reason=f"halt: {msg.reason}", entry_only=working.filled))

    @run_once
    def receiveMsg_Flatten(self, msg: Flatten, sender: ActorAddress) -> None:
        state = self.state
        if state is None or msg.symbol not in ("", state.symbol):
            return
        self._trace(msg)
        reason = f"flatten{f': {msg.reason}' if msg.reason else ''}"
        if state.position.quantity == 0 and not state.working:
            self.log.info("{}: {}: nothing to close", state.symbol, reason)
            return
        self.log.warning("{}: {} ({} held, {} working group(s))", state.symbol, reason,
                         state.position.quantity, len(state.working))
        outbox: list[tuple[str, Message]] = []
        state = self._exit(msg, state, reason, outbox, why=("operator", "", ""), operator=True)
        self._commit(msg, state, outbox)

    def receiveMsg_ToSymbol(self, msg: ToSymbol, sender: ActorAddress) -> None:
        # Normally unwrapped by the symbol supervisor; handled here too so nothing depends on it.
        self.receiveMessage(msg.message, sender)

    def status_detail(self) -> str:
        state = self.state
        if state is None:
            return "not configured"
        working = ", ".join(f"{w.group_id} {w.role.value}" for w in state.working) or "none"
        rules = self.rules.version if self.rules is not None else "-"
        return (f"position {state.position.state.value} {state.position.quantity}; working groups: "
                f"{working}; groups started: {state.group_counter}; rules {rules}"
                + (f"; exit pending: {state.exit_pending}" if state.exit_pending else "")
                + (f"; POSITION MISMATCH: ours {self.mismatch[0]}, broker {self.mismatch[1]}"
                   if self.mismatch is not None else ""))

    def receiveMsg_GetPositions(self, msg: GetPositions, sender: ActorAddress) -> None:
        state = self.state
        positions: tuple[PositionChanged, ...] = ()
        if state is not None and msg.symbol in ("", state.symbol):
            positions = (PositionChanged.of(state.position, cause=msg, ts_ns=self.now_ns()),)
        self.tell(sender, self.make(PositionsSnapshot, msg, positions=positions))
