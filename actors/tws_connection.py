"""TwsConnection: the actor that owns the broker socket — connect, pace, reconnect, resync, route.

The socket is read through ThespianWatch (multiprocTCPBase) and decoded inside the actor with
ibapi's own framing and decoder (actors/tws_edge.py); there is no EReader thread and no run loop.
`core.connection.decide` runs for every event and this shell carries out its commands. Every
outbound frame leaves through one `core.pacing` pacer: CONTROL (START_API, heartbeat, sync
requests), URGENT (cancels, protective orders), ORDER (new orders, modifies), DATA (market and
historical data).

Where items wait:

* `held`: placements (new orders and modifies) while the connection is not READY. Order ids are
  allocated only when a placement leaves the pacer, so a bracket's legs get increasing ids and a
  held order never burns an id before the floor of the next socket is known.
* `parked`: cancels and historical requests while no socket is usable (not yet nextValidId);
  they join the pacer as soon as one is. Market-data requests and sync requests of a dead socket
  are dropped: the next socket's sync re-subscribes and re-requests.

Orders: SubmitOrder registers a route ref -> (group, owner, order); the first PLACE_ORDER answers
OrderSubmitted(ref, group, broker id). Broker events are routed by orderRef, or by (client id,
order id), to the owner: OrderAccepted (first openOrder/orderStatus), OrderStatusChanged (repeats
dropped), ExecutionReported (to the symbols supervisor as well, for the position: the owner may
have ended before a late fill), OrderRejected. Executions are de-duplicated by exec id (a live fill
and its replay by reqExecutions count once) and sent when their commission report has joined
them, so positions see the commission; a report that lags more than `commission_wait_ns` lets
the execution go without it and follows as CommissionReported to the symbols supervisor (the
position joins it to its fill by exec id). A status arriving while an
execution of the same order waits for its commission waits behind it: fills before Filled.
Executions of an order we do not know yet are buffered and routed when its route appears
(ClaimOrders of a restarted group). An open order whose orderRef we do not know is announced
once as ExternalOrderDetected on the bus and never touched.

Quotes: ticks update one book per symbol; after each socket read, every subscriber without a
QuoteUpdate in flight gets the latest quote (with how many ticks it merges); the next one waits
for its QuoteProcessed. A subscriber that gave a QuoteChannel gets its QuoteUpdates as datagrams
from this actor's own UDP socket (actors/quote_channel.py) and acknowledges them the same way;
the acknowledgements are read when quotes go out and on the timer (not watched: that would wake
the actor once more per quote); an update unacknowledged for `quote_channel.RESEND_AFTER_NS`
counts as lost and the latest quote goes again. A subscribed symbol without ticks for `stale_after_ns` while READY is
published as MarketDataStale, and MarketDataResumed when its data comes back.

After every change that matters for a restart (routes, the id floor, subscriptions) the actor
sends its parent a Snapshot whose state is a TwsChange (what changed; the parent keeps the
TwsState it adds up to); ConfigureActor(state=TwsState) resumes from it.
"""

from __future__ import annotations

import pickle
import socket
from collections import OrderedDict, deque
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from datetime import timedelta
from decimal import Decimal
from functools import partial
from typing import Any, Final, TypeVar

from thespian.actors import ActorAddress, ActorExitRequest, ThespianWatch, WakeupMessage, WatchMessage

from actors import direct_channel as dc
from actors import journaling, logs
from actors import quote_channel as qc
from actors import tws_edge as edge
from actors.base import ShellActor, run_once
from actors.supervision import StateChange
from core import connection as cc
from core import pacing
from core.config import Config
from core.errors import InvalidOrder
from core.orders import DONE_STATES, Order, OrderStatus, validate
from core.pacing import Priority
from core.types import ZERO, Bar, Execution, Quote
from journal.store import ExecRow, Journal, OrderRow
from messages import (
    BrokerError,
    BrokerPositionReported,
    CancelOrder,
    ClaimOrders,
    CommissionReported,
    ConfigureActor,
    ConnectionStateChanged,
    ExecutionReported,
    ExternalOrderDetected,
    GetHistoricalBars,
    HistoricalBars,
    MarketDataResumed,
    MarketDataStale,
    Message,
    ModifyOrder,
    OrderAccepted,
    OrderRejected,
    OrderStatusChanged,
    OrderSubmitted,
    PeerMoved,
    QuoteChannel,
    QuoteProcessed,
    QuoteUpdate,
    Snapshot,
    SubmitOrder,
    SubmitOrders,
    SubscribeMarketData,
    SymbolActorStarted,
    TradingStateChanged,
    UnsubscribeMarketData,
)
from messages.base import new_id
from messages.connection import ConnectionState
from messages.risk import TradingState

_S: Final = 1_000_000_000
_M = TypeVar("_M", bound=Message)
_TIMER: Final = "tws-timer"
SYMBOLS: Final = "symbols"  # the symbols supervisor: it routes the broker's positions and fills to each symbol
RISK: Final = "risk"  # the peer whose approved legs may come through the direct channel
_READ_BUDGET: Final = 4 << 20          # bytes read per WatchMessage; the watch fires again for more
_WRITE_RETRY_NS: Final = 5_000_000     # a full socket buffer is retried this soon
_SENT_INTENTS_KEPT: Final = 10_000      # group ids whose intent is known resolved (then forgotten at once)
# An order's later states (accepted, statuses, fills added to its route) are journaled together,
# at most this long after the first of them: IB sends them in bunches, each a commit (and an
# fsync) that kept the journal's one write lock from the risk gate. They are not what recovery
# trusts: executions are journaled before they are routed and the broker's own reports after a
# restart settle any state lost with the last few milliseconds.
_ROUTES_LAZY_NS: Final = 50_000_000
_MIN_WAKE_NS: Final = 1_000_000        # never schedule a zero wakeup (thespian #58: wakeup floods)
# After error 100 (a request dropped over the socket's message rate; IB does not say which), this
# long after the last one every subscription with no tick since its request is asked again.
_DATA_RECHECK_NS: Final = 1_000_000_000
_CONNECT_BLOCK_S: Final = 2.0          # longest a connect may block the actor (loopback/LAN: instant)
_UNROUTED_KEPT: Final = 1000           # executions of unknown orders kept for a late route
# A finished order's route stays in the snapshot this long (late commission reports, repeated
# statuses), then only in memory: the snapshot's size follows the live orders, not the day's.
_FINISHED_KEPT_NS: Final = 30_000_000_000
# IB's error(reqId, …) names an order id or a request id in one number: request ids start far
# above any order id so an error is never routed to the wrong one.
FIRST_REQ_ID: Final = 1_000_000_000
_SOCKET_UP: Final = frozenset({cc.ConnState.SYNCHRONIZING, cc.ConnState.READY, cc.ConnState.DEGRADED})


# ---------------------------------------------------------------- settings and durable state


@dataclass(frozen=True, slots=True, kw_only=True)
class TwsSettings:
    """What the connection needs: where and how to connect, the contracts, the journaled id floor.

    `order_id_hwm` is the journaled order-id high-water mark: ids start above it and above
    every nextValidId. `all_open_orders` picks reqAllOpenOrders (every API client's orders, so
    another client's orders show up as external) over reqOpenOrders for the OPEN_ORDERS step.
    """

    connection: cc.ConnectionConfig = field(default_factory=cc.ConnectionConfig)
    contracts: tuple[edge.ContractSpec, ...] = ()
    account: str = ""
    order_id_hwm: int = 0
    seed: int = 0
    all_open_orders: bool = True
    commission_wait_ns: int = 1 * _S
    stale_after_ns: int = 30 * _S   # a subscribed symbol silent this long while READY is stale
    log_dir: str = ""       # "" keeps the process's log sinks (tests); else <log_dir>/system.log
    log_level: str = "INFO"
    journal: journaling.JournalSettings | None = None  # None: nothing journaled (tests of the wire)


def settings_from_config(config: Config, *, order_id_hwm: int = 0, host: str | None = None,
                         port: int | None = None) -> TwsSettings:
    """Return the settings `config` describes; host/port override [broker] (the embedded simulator's port)."""
    contracts = tuple(
        edge.ContractSpec(symbol=s.symbol, sec_type=s.sec_type.value, exchange=s.exchange,
                          primary_exchange=s.primary_exchange or "", currency=s.currency)
        for s in config.symbols)
    return TwsSettings(connection=cc.config_from_broker(config.broker, host=host, port=port),
                       contracts=contracts, account=config.broker.account or "",
                       order_id_hwm=order_id_hwm, stale_after_ns=round(config.market_data.stale_after_s * _S),
                       log_dir=str(config.system.log_dir),
                       log_level=config.system.log_level.value, journal=journaling.JournalSettings.of(config))


@dataclass(frozen=True, slots=True, kw_only=True)
class Route:
    """One order the connection knows: who owns it, what was asked, what the broker said.

    `broker_id` is 0 until its first PLACE_ORDER leaves (an order never given an id never
    reached the broker). `order` is None for a ref a restarted group claimed before we knew it.
    """

    ref: str
    group_id: str = ""
    owner: ActorAddress | None = None
    order: Order | None = None
    broker_id: int = 0
    transmit: bool = True
    protective: bool = False
    priority: Priority = Priority.ORDER
    accepted: bool = False
    cancel_requested: bool = False
    last_status: OrderStatusChanged | None = None
    rejection: OrderRejected | None = None
    executions: tuple[Execution, ...] = ()
    cause_id: str = ""  # the SubmitOrder (or ClaimOrders): every event about the order follows it
    corr_id: str = ""
    trigger: str = ""       # what decided the order ("tick", "signal"): its latency is "<trigger>_to_order"
    trigger_ts_ns: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class SubscriptionState:
    """A symbol's quote subscribers: the symbol actor (`primary`, replaced on its restart) and others."""

    symbol: str
    primary: ActorAddress | None = None
    others: tuple[ActorAddress, ...] = ()
    primary_channel: QuoteChannel | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class TwsState:
    """What a restarted TwsConnection resumes from: routes, the next order id, subscriptions."""

    next_order_id: int
    routes: tuple[Route, ...] = ()
    subscriptions: tuple[SubscriptionState, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class TwsChange(StateChange):
    """A Snapshot of the connection as a change to the TwsState its supervisor keeps.

    `routes` are the routes new or changed since the last change, `forget` the refs of orders
    finished long enough ago to leave the kept state, `subscriptions` all of them when they
    changed (None: unchanged). The size of a snapshot follows what changed, not the day's orders.
    """

    next_order_id: int
    routes: tuple[Route, ...] = ()
    forget: tuple[str, ...] = ()
    subscriptions: tuple[SubscriptionState, ...] | None = None

    def apply(self, state: object) -> TwsState:
        """Return the kept TwsState `state` (None: nothing kept yet) with this change made."""
        base = state if isinstance(state, TwsState) else TwsState(next_order_id=0)
        routes = {r.ref: r for r in base.routes}
        for ref in self.forget:
            routes.pop(ref, None)
        for route in self.routes:
            routes[route.ref] = route
        return TwsState(next_order_id=max(base.next_order_id, self.next_order_id),
                        routes=tuple(routes.values()),
                        subscriptions=base.subscriptions if self.subscriptions is None else self.subscriptions)


# ---------------------------------------------------------------- pacer items


@dataclass(frozen=True, slots=True)
class _Send:
    """A prebuilt request. Unless `survives`, it belongs to the socket it was queued for."""

    request: edge.Request
    heartbeat: bool = False
    survives: bool = False


@dataclass(frozen=True, slots=True)
class _Place:
    """PLACE_ORDER for a route, encoded when it leaves (its id and latest version then)."""

    ref: str


@dataclass(frozen=True, slots=True)
class _Cancel:
    ref: str


_Item = _Send | _Place | _Cancel


# ---------------------------------------------------------------- quote books


class _Listener:
    __slots__ = ("address", "primary", "in_flight", "unsent", "channel", "seq", "sent_ns")

    def __init__(self, address: ActorAddress, primary: bool, channel: QuoteChannel | None = None) -> None:
        self.address = address
        self.primary = primary
        self.in_flight = False
        self.unsent = 0
        self.channel = channel  # None: QuoteUpdate messages
        self.seq = 0            # the last quote datagram sent to it
        self.sent_ns = 0        # when that datagram left


class _Book:
    """One symbol's subscription: its current reqId, the latest quote fields, its listeners."""

    __slots__ = ("symbol", "req_id", "listeners", "fields", "ts_ns", "watch_from_ns", "stale", "sent_ns")

    def __init__(self, symbol: str) -> None:
        self.symbol = symbol
        self.req_id = 0
        self.listeners: list[_Listener] = []
        self.fields: dict[str, Decimal] = {}
        self.ts_ns = 0
        self.watch_from_ns = 0  # silence counts from the last tick or (re)subscription
        self.stale = False
        self.sent_ns = 0        # when the current request left for the broker (0: not yet)

    def quote(self) -> Quote:
        f = self.fields
        return Quote(symbol=self.symbol, bid=f.get("bid"), ask=f.get("ask"), last=f.get("last"),
                     bid_size=f.get("bid_size", ZERO), ask_size=f.get("ask_size", ZERO),
                     last_size=f.get("last_size", ZERO), volume=f.get("volume", ZERO), ts_ns=self.ts_ns)

    def state(self) -> SubscriptionState:
        primary = next((x for x in self.listeners if x.primary), None)
        return SubscriptionState(symbol=self.symbol, primary=primary.address if primary else None,
                                 others=tuple(x.address for x in self.listeners if not x.primary),
                                 primary_channel=primary.channel if primary else None)


@dataclass(slots=True)
class _History:
    symbol: str
    bar_size_s: int
    count: int
    requester: ActorAddress
    cause: GetHistoricalBars
    request: edge.HistoricalDataRequest
    bars: list[Bar] = field(default_factory=list)


@dataclass(slots=True)
class _Awaiting:
    ref: str
    execution: Execution
    deadline_ns: int


# Errors about one of our orders that its owner must hear as OrderRejected. Not routed: 202 (the
# Cancelled status says it), 2102 (a modify still being processed: logged), and warnings.
_ROUTED_ORDER_CLASSES: Final = frozenset({cc.CodeClass.ORDER_REJECTS, cc.CodeClass.DUPLICATE_ORDER_ID,
                                          cc.CodeClass.CANCEL_RACE})


def finished_before(route: Route, when_ns: int) -> bool:
    """Return True if `route`'s order ended (rejected, or a final status) before `when_ns`."""
    if route.rejection is not None:
        return route.rejection.ts_ns < when_ns
    last = route.last_status
    return last is not None and last.status in DONE_STATES and last.ts_ns < when_ns


def routes_to_order(code: int) -> bool:
    """Return True if an error `code` about one of our order ids goes to the order's owner."""
    kind = cc.classify(code)
    if kind in _ROUTED_ORDER_CLASSES:
        return True
    # Codes no class names (200 no security definition, 135/10147 id not found, 320/321 request
    # errors, 10xxx order rejects) are about the order; 21xx are warnings.
    return kind is cc.CodeClass.UNKNOWN and not 2100 <= code < 2200


class TwsConnection(ShellActor):
    """The broker connection. Config: TwsSettings or a core.config.Config; state: TwsState or None."""

    ON_ORDER_PATH = True  # its process asks for a short time slice (ShellActor.ON_ORDER_PATH)

    def __init__(self) -> None:
        super().__init__()
        self.settings = TwsSettings()
        self.conn: cc.Connection | None = None
        self.pacer = pacing.new_pacer()
        self.contracts: dict[str, edge.ContractSpec] = {}
        self.sock: socket.socket | None = None
        self.wire: edge.Wire | None = None
        self.out_buf = bytearray()
        self.routes: dict[str, Route] = {}
        self.by_id: dict[int, str] = {}
        self.held: list[str] = []
        self.queued_place: set[str] = set()
        self.parked: list[tuple[_Item, Priority]] = []
        self.books: dict[str, _Book] = {}
        self.req_symbol: dict[int, str] = {}
        # Symbols with a quote to send, in the order they came (a dict: a set's order changes with
        # the hash seed, and so would which symbol hears first and decides first in a backtest).
        self.fresh_quotes: dict[str, None] = {}
        self.quote_out: qc.Endpoint | None = None  # the socket quote datagrams leave from
        self.direct = dc.Receiver([SubmitOrders])  # risk's approved legs, as datagrams (multiproc only)
        self.channel_check_ns = 0                  # next look for unacknowledged datagrams
        self.recheck_data_ns: int | None = None    # when to ask again for subscriptions error 100 may have lost
        self.history: dict[int, _History] = {}
        self.next_req_id = FIRST_REQ_ID
        self.sync_exec_req = 0
        self.exec_seen: set[str] = set()
        self.exec_route: dict[str, str] = {}
        self.awaiting: dict[str, _Awaiting] = {}
        self.early_commissions: OrderedDict[str, Decimal] = OrderedDict()
        self.waiting_statuses: dict[str, list[OrderStatusChanged]] = {}
        self.unrouted: OrderedDict[str, edge.ExecutionSeen] = OrderedDict()
        self.externals: set[tuple[int, int, int]] = set()
        self.events: deque[cc.Event] = deque()
        self.deciding = False
        self.armed: list[int] = []
        self.dirty = False
        self.changed_refs: set[str] = set()  # routes changed since the last snapshot
        self.snap_refs: set[str] = set()     # routes the supervisor's kept state holds
        self.subs_changed = False
        self.cause: Message | None = None
        self.journal: Journal | None = None
        self.journaled_hwm = 0
        self.hwm_due = 0  # an order id to raise the journaled mark to before this pump's batch commits
        self.in_pump = False  # inside the pump's batch: owner messages wait until the frames are written
        self.after_write: list[Callable[[], None]] = []
        self.sent_intents: set[str] = set()  # intents this incarnation resolved SENT (no need to look again)
        self.lazy_routes: dict[str, Route] = {}  # order rows to journal by `routes_due_ns`
        self.holding_settle = False  # a multi-order handler settles once, at its end
        self.routes_due_ns = 0
        self.unconfirmed: set[str] = set()  # journaled routes with an id the broker has not shown yet

    # ------------------------------------------------------------ thespian plumbing

    def receiveMessage(self, msg: Any, sender: ActorAddress) -> Any:
        super().receiveMessage(msg, sender)
        # The watch must come back from every call, or thespian stops watching the sockets.
        if self.failed:
            return None
        # Not the quote socket: its acknowledgements are only needed before the next quote of
        # their symbol, so they are drained when quotes go out (and by the timer), not woken for.
        watched = [fd for fd in (self.sock.fileno() if self.sock is not None else None,
                                 self.direct.fileno()) if fd is not None]
        return ThespianWatch(watched) if watched else None

    def on_configure(self, msg: ConfigureActor) -> None:
        config = msg.config
        if isinstance(config, Config):
            settings = settings_from_config(config)
        elif isinstance(config, TwsSettings):
            settings = config
        else:
            raise TypeError(f"{self.key}: config must be TwsSettings or Config, not {type(config).__name__}")
        self.settings = settings
        self._configure_logging(settings)
        self.contracts = {c.symbol: c for c in settings.contracts}
        state = msg.state
        if state is not None and not isinstance(state, TwsState):
            raise TypeError(f"{self.key}: state must be a TwsState, not {type(state).__name__}")
        self.journal = journaling.journal(settings.journal)
        hwm = settings.order_id_hwm
        if self.journal is not None:
            # Never below an id used before: the journaled mark is written before each PLACE_ORDER.
            self.journaled_hwm = self.journal.order_id_hwm()
            hwm = max(hwm, self.journaled_hwm)
            state = self._from_journal(self.journal) if state is None else self._with_journal(state, self.journal)
        if state is not None:
            hwm = max(hwm, state.next_order_id - 1)
        self.conn = cc.new_connection(settings.connection, order_id_hwm=hwm, seed=settings.seed)
        self.pacer = pacing.new_pacer(settings.connection.pacing_msgs_per_s)
        if state is not None:
            self._restore(state)
        self.cause = msg
        self.direct.open(self)
        self.direct.offer(self, self.peers.get(RISK), msg)
        self.log.info("{}: connecting to {}:{} as client {} (next order id {})", self.key,
                      settings.connection.host, settings.connection.port, settings.connection.client_id,
                      self.conn.next_id)
        self._decide(cc.ConnectRequested(at_ns=self.now_ns()))
        self._settle()

    @run_once
    def receiveMsg_PeerMoved(self, msg: PeerMoved, sender: ActorAddress) -> None:
        super().receiveMsg_PeerMoved(msg, sender)
        if msg.name == RISK:
            self.direct.offer(self, msg.address, msg)  # a restarted risk manager knows no channel

    def _configure_logging(self, settings: TwsSettings) -> None:
        # The process's shared system.log sink (actors.logs); a Config had adopt() add it already.
        # No corr is bound here: a bound value would hide the one run_once puts in the context.
        if settings.log_dir:
            logs.configure_process(settings.log_dir, settings.log_level)

    def _with_journal(self, state: TwsState, journal: Journal) -> TwsState:
        """Return our supervisor's `state` brought up to the journal.

        The supervisor keeps what our snapshots add up to, and a kill can come between a journal
        write and the snapshot telling it: an order's row and its broker id are written before its
        PLACE_ORDER leaves. An order the state has without an id but the journal with one may be at
        the broker: it is never sent again (the sync after the connect tells whether it arrived).
        """
        routes = []
        for route in state.routes:
            if not route.broker_id:
                row = journal.order(route.ref)
                if row is not None and row.broker_id and row.route is not None:
                    route = replace(pickle.loads(row.route), owner=route.owner, broker_id=row.broker_id)
                    self.unconfirmed.add(route.ref)
            routes.append(route)
        missed = self._from_journal(journal, skip=frozenset(route.ref for route in routes))
        return replace(state, routes=tuple(routes) + (missed.routes if missed is not None else ()))

    def _from_journal(self, journal: Journal, skip: frozenset[str] = frozenset()) -> TwsState | None:
        """Return the routes of the orders the journal has open but `skip` does not name, or None.

        The other orders of their groups come with them, done or not: a working child is modified
        under its parent's broker id. An open order the journal never gave a broker id never left
        the process before the restart: it is not sent now (its intent is abandoned) but kept as
        rejected, so a group that claims it learns that. One with an id may or may not have
        reached the broker: the sync after the connect tells (an order the broker does not know by
        then never reached it).
        """
        def wanted(row: OrderRow) -> bool:
            return row.route is not None and not row.external and row.ref not in skip

        rows = [row for row in journal.orders(open_only=True) if wanted(row)]
        if not rows:
            return None
        open_refs = {row.ref for row in rows}
        for group_id in sorted({row.group_id for row in rows if row.group_id}):
            rows += [row for row in journal.orders(group_id=group_id) if wanted(row) and row.ref not in open_refs]
        now = self.now_ns()
        routes: list[Route] = []
        for row in rows:
            route = replace(pickle.loads(row.route), owner=None)
            if row.ref not in open_refs:
                routes.append(route)  # done: kept for its broker id and its facts
                continue
            if not route.broker_id and route.rejection is None:
                reason = "never sent before the restart: abandoned (a decision is not sent after an outage)"
                rejection = OrderRejected(ref=route.ref, group_id=route.group_id, code=0, reason=reason,
                                          cause_id=route.cause_id, corr_id=route.corr_id, ts_ns=now)
                route = replace(route, rejection=rejection, cancel_requested=True)
                self.log.warning("{}: order {} {}", self.key, route.ref, reason)
            elif route.broker_id:
                self.unconfirmed.add(route.ref)
            routes.append(route)
        self.log.info("{}: {} open order(s) from the journal, {} done one(s) of their groups ({} to confirm "
                      "with the broker)", self.key, len(open_refs), len(routes) - len(open_refs),
                      len(self.unconfirmed))
        return TwsState(next_order_id=journal.order_id_hwm() + 1, routes=tuple(routes))

    def _restore(self, state: TwsState) -> None:
        self.snap_refs = {route.ref for route in state.routes}
        for route in state.routes:
            self.routes[route.ref] = route
            if route.broker_id:
                self.by_id[route.broker_id] = route.ref
            for e in route.executions:
                self.exec_seen.add(e.exec_id)
                self.exec_route[e.exec_id] = route.ref
            # Never given an id = never left: it still has to go (after the next sync).
            if route.broker_id == 0 and route.order is not None and not route.cancel_requested:
                self.held.append(route.ref)
                self.queued_place.add(route.ref)
        for sub in state.subscriptions:
            book = _Book(sub.symbol)
            if sub.primary is not None:
                book.listeners.append(_Listener(sub.primary, True, self._channel(sub.primary_channel)))
            book.listeners.extend(_Listener(a, False) for a in sub.others)
            self.books[sub.symbol] = book
        self.log.info("{}: resumed with {} route(s), {} held, {} subscription(s)", self.key,
                      len(self.routes), len(self.held), len(self.books))

    def receiveMsg_ActorExitRequest(self, msg: ActorExitRequest, sender: ActorAddress) -> None:
        self._flush_lazy_routes(force=True)
        if self.conn is not None and self.sock is not None:
            self.conn, _ = cc.decide(self.conn, cc.DisconnectRequested(at_ns=self.now_ns(),
                                                                        reason="stopping"))
        self._close_socket("stopping")
        if self.quote_out is not None:
            self.quote_out.close()
            self.quote_out = None
        self.direct.close()

    @run_once
    def receiveMsg_WatchMessage(self, msg: WatchMessage, sender: ActorAddress) -> None:
        self.direct.take(self, msg.ready)  # first: approved orders wait behind nothing
        if self.sock is not None and self.sock.fileno() in msg.ready:
            self._read_socket()
        self._settle()

    @run_once
    def receiveMsg_WakeupMessage(self, msg: WakeupMessage, sender: ActorAddress) -> None:
        payload = msg.payload
        if not (isinstance(payload, tuple) and payload and payload[0] == _TIMER):
            return
        self.armed = [t for t in self.armed if t != payload[1]]
        if self.conn is None:
            return
        now = self.now_ns()
        self._decide(cc.Tick(now_ns=now))
        self._check_stale(now)
        self._recheck_data(now)
        self._take_acks()
        self._check_channels(now)
        for exec_id, waiting in list(self.awaiting.items()):
            if waiting.deadline_ns <= now:
                self.log.warning("{}: no commission report for {} after {:.1f} s; the fill goes without it",
                                 self.key, exec_id, self.settings.commission_wait_ns / _S)
                del self.awaiting[exec_id]
                self._deliver_execution(waiting.ref, waiting.execution, None)
        self._settle()

    # ------------------------------------------------------------ the connection machine

    def _decide(self, event: cc.Event) -> None:
        """Run `event` (and every event its commands cause) through core.connection.decide."""
        self.events.append(event)
        self._drain_events()

    def _drain_events(self) -> None:
        if self.deciding:
            return  # the running loop below takes it, in order
        self.deciding = True
        try:
            while self.events:
                assert self.conn is not None
                self.conn, commands = cc.decide(self.conn, self.events.popleft())
                for command in commands:
                    self._carry_out(command)
        finally:
            self.deciding = False

    def _carry_out(self, command: cc.Command) -> None:
        match command:
            case cc.OpenSocket():
                self._open_socket(command)
            case cc.CloseSocket(reason=reason):
                self._close_socket(reason)
            case cc.ScheduleReconnect(attempt=attempt, delay_ns=delay):
                self.log.info("{}: reconnect attempt {} in {:.2f} s", self.key, attempt + 1, delay / _S)
            case cc.RequestSync(step=step):
                self._request_sync(step)
            case cc.ResubscribeMarketData():
                self._resubscribe()
                self.events.append(cc.SyncStepDone(at_ns=self.now_ns(), step=cc.SyncStep.MARKET_DATA))
            case cc.SendHeartbeat():
                self._enqueue(_Send(edge.CurrentTimeRequest(), heartbeat=True), Priority.CONTROL)
            case cc.PublishState(state=state, previous=previous, reason=reason, code=code):
                self.log.info("{}: {} -> {} ({})", self.key, previous.value, state.value, reason)
                if self.journal is not None:
                    self.journal.record_event("connection", ts_ns=self.now_ns(), actor=self.key,
                                              text=f"{previous.value} -> {state.value}: {reason}",
                                              data={"state": state.value, "previous": previous.value,
                                                    "code": code})
                self.publish(self.make(ConnectionStateChanged, self.cause, state=ConnectionState(state.value),
                                       previous=ConnectionState(previous.value), reason=reason, code=code))
            case cc.PublishDataHealth(degraded_farms=farms, code=code, reason=reason):
                self.log.info("{}: degraded data farms: {} ({})", self.key,
                              ", ".join(sorted(farms)) or "none", reason)
            case cc.HoldOrders(reason=reason):
                self._hold_orders(reason)
            case cc.ReleaseOrders(next_order_id=next_id):
                self._unconfirmed_never_sent()
                self._cancel_again()
                self.log.info("{}: orders may leave (next id {}; {} held)", self.key, next_id, len(self.held))
                self._release_orders()
                for book in self.books.values():  # READY again: silence counts from now
                    book.watch_from_ns = max(book.watch_from_ns, self.now_ns())
            case cc.HaltTrading(reason=reason):
                self.publish(self.make(TradingStateChanged, self.cause, state=TradingState.HALTED,
                                       previous=TradingState.ACTIVE, reason=reason))
            case cc.ThrottleOutbound(rate_per_s=rate):
                self.pacer = pacing.set_rate(self.pacer, rate)
            case cc.Alert(level=level, text=text):
                self.log.log(level.value, "{}: {}", self.key, text)

    def _usable(self) -> bool:
        """Return True when requests may leave: the socket is up and nextValidId arrived."""
        return self.wire is not None and self.conn is not None and self.conn.state in _SOCKET_UP

    # ------------------------------------------------------------ the socket

    def _open_socket(self, command: cc.OpenSocket) -> None:
        self._close_socket("reconnecting")
        timeout = min(_CONNECT_BLOCK_S, self.settings.connection.connect_timeout_ns / _S)
        try:
            sock = socket.create_connection((command.host, command.port), timeout=timeout)
        except OSError as exc:
            self.events.append(cc.SocketFailed(at_ns=self.now_ns(),
                                               reason=f"connect to {command.host}:{command.port}: {exc}"))
            return
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setblocking(False)
        self.sock = sock
        self.wire = edge.Wire(command.client_id)
        self.out_buf = bytearray(edge.handshake_bytes())

    def _close_socket(self, reason: str) -> None:
        sock, self.sock = self.sock, None
        had_wire = self.wire is not None
        self.wire = None
        self.out_buf = bytearray()
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()
            self.log.info("{}: socket closed ({})", self.key, reason)
        if not had_wire:
            return
        # What waited for this socket: placements go back to `held`, cancels and historical
        # requests wait for the next socket, the rest (sync, heartbeat, START_API, market data)
        # the next socket's sync requests afresh.
        self.pacer, queued = pacing.drain(self.pacer)
        places = [q.item.ref for q in queued if isinstance(q.item, _Place)]
        self.held[:0] = places
        self.parked.extend((q.item, q.priority) for q in queued
                           if isinstance(q.item, _Cancel) or (isinstance(q.item, _Send) and q.item.survives))
        waiting = {item.request.req_id for item, _ in self.parked
                   if isinstance(item, _Send) and isinstance(item.request, edge.HistoricalDataRequest)}
        for req_id, hist in self.history.items():
            hist.bars.clear()
            if req_id not in waiting:  # in flight on the dead socket: ask again
                self.parked.append((_Send(hist.request, survives=True), Priority.DATA))
        for book in self.books.values():
            book.req_id = 0
        self.req_symbol.clear()
        self.sync_exec_req = 0

    def _lost(self, reason: str) -> None:
        self._close_socket(reason)
        self._decide(cc.SocketClosed(at_ns=self.now_ns(), reason=reason))

    def _read_socket(self) -> None:
        sock, wire = self.sock, self.wire
        assert sock is not None and wire is not None
        chunks: list[bytes] = []
        total, closed = 0, ""
        while total < _READ_BUDGET:
            try:
                data = sock.recv(1 << 18)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                closed = f"socket error: {exc}"
                break
            if not data:
                closed = "TWS closed the connection"
                break
            chunks.append(data)
            total += len(data)
        if chunks:
            for event in wire.feed(b"".join(chunks)):
                if self.wire is not wire:
                    break  # an event closed this socket (326, 1300): the rest belongs to it
                self._on_wire(event)
        if closed and self.wire is wire:
            self._lost(closed)

    def _write(self, frames: bytes) -> None:
        self.out_buf += frames

    def _flush_writes(self) -> None:
        if self.sock is None or not self.out_buf:
            return
        try:
            sent = self.sock.send(self.out_buf)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._lost(f"write failed: {exc}")
            return
        del self.out_buf[:sent]

    # ------------------------------------------------------------ the pacer

    def _enqueue(self, item: _Item, priority: Priority) -> None:
        if self._usable() or (self.wire is not None and self.wire.ready and priority is Priority.CONTROL):
            self.pacer = pacing.enqueue(self.pacer, item, priority, self.now_ns())
        elif isinstance(item, _Place):
            self.held.append(item.ref)
        elif isinstance(item, _Cancel) or (isinstance(item, _Send) and item.survives):
            self.parked.append((item, priority))
        # else: a request for a socket that is gone; the next sync makes it again

    def _pump(self) -> int:
        if self.wire is None or not self.wire.ready:
            return 0
        now = self.now_ns()
        self.pacer, released = pacing.ready(self.pacer, now)
        if not released:
            return 0
        # One journal transaction for everything released together (a bracket's legs), committed
        # before _settle writes their frames to the socket. What the owners hear of it (and the log
        # lines) waits until the frames are written: it is not on the way to the broker.
        self.in_pump = True
        try:
            with self.journal.batch() if self.journal is not None else nullcontext():
                for paced in released:
                    if self.wire is None:  # a release closed the socket; the rest waits for the next one
                        self._requeue_after_loss(paced)
                        continue
                    self.metrics.observe("pacing_delay", paced.waited_ns)
                    self._release(paced.item, now)
                if self.hwm_due and self.journal is not None:
                    # Once for the batch, with its highest id: every frame leaves after this commit.
                    self.journaled_hwm = self.journal.raise_order_id_hwm(self.hwm_due)
        finally:
            self.in_pump, self.hwm_due = False, 0
        # Counted as sent when they reach the socket (right after this commit), not when released.
        self.pacer = pacing.written(self.pacer, len(released), self.now_ns())
        return len(released)

    def _after_write(self, action: Callable[[], None]) -> None:
        """Run `action` now, or, inside the pump's batch, once its frames are written (in order)."""
        if self.in_pump:
            self.after_write.append(action)  # not on the way to the broker
        else:
            action()

    def _tell_after_write(self) -> None:
        done, self.after_write = self.after_write, []
        for action in done:
            action()

    def _requeue_after_loss(self, paced: pacing.Paced) -> None:
        item = paced.item
        if isinstance(item, _Place):
            self.held.append(item.ref)
        elif isinstance(item, _Cancel) or (isinstance(item, _Send) and item.survives):
            self.parked.append((item, paced.priority))

    def _release(self, item: _Item, now: int) -> None:
        assert self.wire is not None
        match item:
            case _Send(request=request, heartbeat=heartbeat):
                if isinstance(request, edge.MarketDataRequest):
                    symbol = self.req_symbol.get(request.req_id)
                    if symbol is None:
                        return  # unsubscribed or superseded while it waited
                    book = self.books.get(symbol)
                    if book is not None:
                        book.sent_ns = now
                frames, events = self.wire.encode(request)
                self._write(frames)
                if heartbeat:
                    self.events.append(cc.HeartbeatSent(at_ns=now))
                self._on_wire_events(events)
            case _Place(ref=ref):
                self._release_place(ref)
            case _Cancel(ref=ref):
                route = self.routes.get(ref)
                if route is None or not route.broker_id:
                    return
                frames, events = self.wire.encode(edge.CancelOrderRequest(order_id=route.broker_id))
                self._write(frames)
                self.log.info("{}: cancel {} (id {}) sent", self.key, ref, route.broker_id)
                self._on_wire_events(events)

    def _settle(self) -> None:
        """Carry out what the handler started: decisions, pacer releases, writes, quotes, snapshot, timer."""
        if self.holding_settle:
            return  # the handler that holds it settles once at its end
        for _ in range(16):
            self._drain_events()
            if self._usable() and self.parked:
                parked, self.parked = self.parked, []
                for item, priority in parked:
                    self._enqueue(item, priority)
            released = self._pump()
            self._flush_writes()
            self._tell_after_write()
            if not released and not self.events:
                break
        self._flush_quotes()
        self._flush_lazy_routes()
        self._snapshot()
        self._arm()

    def _arm(self) -> None:
        if self.conn is None:
            return
        now = self.now_ns()
        times = [cc.next_wakeup_ns(self.conn)]
        if self.wire is not None and self.wire.ready:
            times.append(pacing.next_release_ns(self.pacer, now))
        if self.awaiting:
            times.append(min(w.deadline_ns for w in self.awaiting.values()))
        if self.out_buf and self.sock is not None:
            times.append(now + _WRITE_RETRY_NS)
        times.append(self._next_stale_ns())
        if self.lazy_routes:
            times.append(self.routes_due_ns)
        if self.quote_out is not None:
            times.append(self.channel_check_ns)
        times.append(self.recheck_data_ns)
        present = [t for t in times if t is not None]
        if not present:
            return
        at = max(min(present), now + _MIN_WAKE_NS)
        if self.armed and min(self.armed) <= at:
            return
        self.armed.append(at)
        self.wakeupAfter(timedelta(microseconds=(at - now) / 1000), payload=(_TIMER, at))

    def _snapshot(self) -> None:
        if not self.dirty or self.conn is None or self.parent is None:
            return
        self.dirty = False
        cutoff = self.now_ns() - _FINISHED_KEPT_NS
        forget = tuple(ref for ref in sorted(self.snap_refs)
                       if ref not in self.changed_refs and finished_before(self.routes[ref], cutoff))
        self.snap_refs.difference_update(forget)
        self.snap_refs.update(self.changed_refs)
        change = TwsChange(
            next_order_id=self.conn.next_id,
            routes=tuple(self.routes[ref] for ref in sorted(self.changed_refs)),
            forget=forget,
            subscriptions=tuple(b.state() for b in self.books.values()) if self.subs_changed else None,
        )
        self.changed_refs.clear()
        self.subs_changed = False
        self.tell(self.parent, self.make(Snapshot, self.cause, key=self.key, incarnation=self.incarnation,
                                         state=change))

    # ------------------------------------------------------------ sync steps

    def _request_sync(self, step: cc.SyncStep) -> None:
        match step:
            case cc.SyncStep.ORDER_IDS:
                request: edge.Request = edge.IdsRequest()
            case cc.SyncStep.OPEN_ORDERS:
                request = edge.OpenOrdersRequest(all_clients=self.settings.all_open_orders)
            case cc.SyncStep.COMPLETED_ORDERS:
                request = edge.CompletedOrdersRequest()
            case cc.SyncStep.POSITIONS:
                request = edge.PositionsRequest()
            case cc.SyncStep.EXECUTIONS:
                self.sync_exec_req = self._req_id()
                request = edge.ExecutionsRequest(req_id=self.sync_exec_req)
            case _:
                return
        self._enqueue(_Send(request), Priority.CONTROL)

    def _req_id(self) -> int:
        req_id, self.next_req_id = self.next_req_id, self.next_req_id + 1
        return req_id

    # ------------------------------------------------------------ wire events

    def _on_wire_events(self, events: list[edge.WireEvent]) -> None:
        for event in events:
            self._on_wire(event)

    def _on_wire(self, ev: edge.WireEvent) -> None:
        now = self.now_ns()
        match ev:
            case edge.TickSeen():
                self._on_tick(ev, now)
            case edge.Handshaken(server_version=version):
                self.log.info("{}: connected, server version {}", self.key, version)
                self._decide(cc.SocketConnected(at_ns=now, server_version=version))
                self._enqueue(_Send(edge.StartApiRequest()), Priority.CONTROL)
            case edge.NextIdSeen(order_id=order_id):
                self._decide(cc.NextValidId(at_ns=now, order_id=order_id))
            case edge.NoticeSeen():
                self._on_notice(ev, now)
            case edge.OpenOrderSeen():
                self._on_open_order(ev, now)
            case edge.OpenOrdersEnd():
                self._decide(cc.SyncStepDone(at_ns=now, step=cc.SyncStep.OPEN_ORDERS))
            case edge.StatusSeen():
                self._on_status(ev, now)
            case edge.ExecutionSeen():
                self._on_execution(ev, now)
            case edge.ExecutionsEnd(req_id=req_id):
                if req_id == self.sync_exec_req:
                    self._decide(cc.SyncStepDone(at_ns=now, step=cc.SyncStep.EXECUTIONS))
            case edge.CommissionSeen():
                self._on_commission(ev)
            case edge.CompletedOrderSeen():
                self._on_completed(ev)
            case edge.CompletedOrdersEnd():
                self._decide(cc.SyncStepDone(at_ns=now, step=cc.SyncStep.COMPLETED_ORDERS))
            case edge.PositionSeen(account=account, symbol=symbol, quantity=quantity, avg_cost=avg_cost):
                if not self.settings.account or account == self.settings.account:
                    reported = self.make(BrokerPositionReported, self.cause, symbol=symbol,
                                         quantity=quantity, avg_cost=avg_cost)
                    self.publish(reported)
                    if (symbols := self.peers.get(SYMBOLS)) is not None:
                        self.tell(symbols, reported)  # each symbol actor reconciles its own position
            case edge.PositionsEnd():
                self._decide(cc.SyncStepDone(at_ns=now, step=cc.SyncStep.POSITIONS))
            case edge.CurrentTimeSeen():
                self._decide(cc.HeartbeatAnswered(at_ns=now))
            case edge.BarSeen():
                hist = self.history.get(ev.req_id)
                if hist is not None:
                    hist.bars.append(Bar(symbol=hist.symbol, ts_ns=ev.ts_ns, open=ev.open, high=ev.high,
                                         low=ev.low, close=ev.close, volume=ev.volume))
            case edge.BarsEnd(req_id=req_id):
                self._answer_history(req_id)
            case edge.AccountsSeen(accounts=accounts):
                self.log.info("{}: managed accounts {}", self.key, ", ".join(accounts))
            case edge.BadFrame(msg_id=msg_id, error=error):
                self.log.error("{}: skipped an undecodable message (id {}): {}", self.key, msg_id, error)
            case edge.StreamBroken(error=error):
                self.log.error("{}: {}; reconnecting", self.key, error)
                self._lost(f"unreadable stream: {error}")

    def _on_notice(self, ev: edge.NoticeSeen, now: int) -> None:
        code, req_id, text = ev.code, ev.req_id, ev.text
        self._decide(cc.BrokerCode(at_ns=now, code=code, req_id=req_id, text=text))
        if code in cc.PACING and self.books:
            self.recheck_data_ns = now + _DATA_RECHECK_NS
        ref = self.by_id.get(req_id, "") if 0 <= req_id < FIRST_REQ_ID else ""
        symbol = ""
        if ref:
            route = self.routes[ref]
            if routes_to_order(code):
                self.log.warning("{}: order {} (id {}): IB {} {}", self.key, ref, req_id, code, text)
                rejected = self._about(route, OrderRejected, ref=ref, group_id=route.group_id,
                                       broker_id=route.broker_id, code=code, reason=text)
                self._set(replace(route, rejection=rejected))
                self._to_owner(route, rejected)
            else:
                self.log.info("{}: order {} (id {}): IB {} {}", self.key, ref, req_id, code, text)
        elif req_id in self.history:
            hist = self.history[req_id]
            symbol = hist.symbol
            self.log.warning("{}: history of {} refused: IB {} {}", self.key, symbol, code, text)
            self._answer_history(req_id)
        elif req_id in self.req_symbol:
            symbol = self.req_symbol[req_id]
            self.log.warning("{}: market data of {}: IB {} {}", self.key, symbol, code, text)
        if cc.classify(code) is not cc.CodeClass.DATA_FARM_OK:
            self.publish(self.make(BrokerError, self.cause, code=code, message=text, request_id=req_id,
                                   order_ref=ref, symbol=symbol))

    # ------------------------------------------------------------ orders: commands

    @run_once
    def receiveMsg_SubmitOrder(self, msg: SubmitOrder, sender: ActorAddress) -> None:
        self.cause = msg
        order = msg.order
        known = self.routes.get(order.ref)
        owner: ActorAddress | None = msg.reply_to if msg.reply_to is not None else sender
        if msg.unowned:
            # Its group claims it later (or claimed it already: the claim may overtake this).
            owner = known.owner if known is not None else None
        if known is not None and known.order is not None:
            if known.order == order and known.transmit == msg.transmit:
                # A repeat of what we already have: answer again, send nothing twice.
                if known.broker_id and owner is not None:
                    self.tell(owner, self.make(OrderSubmitted, msg, ref=order.ref, group_id=known.group_id,
                                               broker_id=known.broker_id))
                self._settle()
                return
            self._modify(replace(known, owner=owner, transmit=msg.transmit), order, msg)
            self._settle()
            return
        try:
            validate(order)
        except InvalidOrder as exc:
            self.log.warning("{}: order {} refused: {}", self.key, order.ref, exc)
            rejection = self.make(OrderRejected, msg, ref=order.ref, group_id=msg.group_id, code=0,
                                  reason=str(exc))
            if owner is not None:
                self.tell(owner, rejection)
            elif known is None:  # kept for the claim: the group learns it with the replay
                self._set(Route(ref=order.ref, group_id=msg.group_id, order=order, rejection=rejection,
                                cause_id=msg.msg_id, corr_id=msg.correlation_id))
            self._settle()
            return
        priority = Priority.URGENT if msg.protective else Priority.ORDER
        parent = self.routes.get(order.parent_ref) if order.parent_ref else None
        if parent is not None and not parent.broker_id:
            # A bracket's legs share one priority: FIFO then keeps the parent ahead of its children.
            priority = parent.priority
        route = Route(ref=order.ref, group_id=msg.group_id, owner=owner, order=order, transmit=msg.transmit,
                      protective=msg.protective, priority=priority, cause_id=msg.msg_id,
                      corr_id=msg.correlation_id, trigger=msg.trigger, trigger_ts_ns=msg.trigger_ts_ns)
        if known is not None:  # claimed before we knew it: keep what the broker told us
            route = replace(known, group_id=msg.group_id or known.group_id, owner=owner, order=order,
                            transmit=msg.transmit, protective=msg.protective, priority=priority,
                            cause_id=msg.msg_id, corr_id=msg.correlation_id, trigger=msg.trigger,
                            trigger_ts_ns=msg.trigger_ts_ns)
        self._set(route)
        self.log.info("{}: order {} {} {} {} {} transmit={} ({})", self.key, order.ref, order.side.value,
                      order.quantity, order.symbol, order.order_type.value, msg.transmit,
                      "queued" if cc.orders_allowed(self._conn()) else "held until READY")
        if not route.broker_id:
            self._queue_place(order.ref)
        self._settle()

    def receiveMsg_SubmitOrders(self, msg: SubmitOrders, sender: ActorAddress) -> None:
        # Every leg queued first, then one settle: the legs leave in one pacer release, journaled
        # in one transaction (one commit, not one per leg, before their frames are written).
        self.holding_settle = True
        try:
            for submit in msg.orders:
                self.receiveMsg_SubmitOrder(submit, sender)
        finally:
            self.holding_settle = False
        if not self.failed:
            self._settle()

    @run_once
    def receiveMsg_ModifyOrder(self, msg: ModifyOrder, sender: ActorAddress) -> None:
        self.cause = msg
        route = self.routes.get(msg.ref)
        if route is None or route.order is None:
            self.log.warning("{}: modify of unknown order {} ignored", self.key, msg.ref)
            self.tell(sender, self.make(OrderRejected, msg, ref=msg.ref, code=0, reason="unknown order"))
            self._settle()
            return
        asked = (("quantity", msg.quantity), ("limit_price", msg.limit_price), ("stop_price", msg.stop_price))
        changes = {name: value for name, value in asked if value is not None}
        self._modify(route, replace(route.order, **changes), msg)
        self._settle()

    def _modify(self, route: Route, order: Order, cause: Message) -> None:
        try:
            validate(order)
        except InvalidOrder as exc:
            self.log.warning("{}: modify of {} refused: {}", self.key, route.ref, exc)
            self._to_owner(route, self.make(OrderRejected, cause, ref=route.ref, group_id=route.group_id,
                                            broker_id=route.broker_id, code=0, reason=str(exc)))
            return
        if route.cancel_requested:
            self.log.warning("{}: modify of {} ignored: a cancel was requested", self.key, route.ref)
            return
        self._set(replace(route, order=order))
        self.log.info("{}: modify {} (id {}): quantity {} limit {} stop {}", self.key, route.ref,
                      route.broker_id, order.quantity, order.limit_price, order.stop_price)
        # An order that never left goes with its latest version; a sent one is placed again.
        if route.broker_id:
            self._queue_place(route.ref, Priority.URGENT if route.protective else Priority.ORDER)

    def _queue_place(self, ref: str, priority: Priority | None = None) -> None:
        if ref in self.queued_place:
            return
        self.queued_place.add(ref)
        route = self.routes[ref]
        if cc.orders_allowed(self._conn()) and self._usable():
            self.pacer = pacing.enqueue(self.pacer, _Place(ref), priority or route.priority, self.now_ns())
        else:
            self.held.append(ref)

    @run_once
    def receiveMsg_CancelOrder(self, msg: CancelOrder, sender: ActorAddress) -> None:
        self.cause = msg
        route = self.routes.get(msg.ref)
        if route is None:
            self.log.warning("{}: cancel of unknown order {} ignored", self.key, msg.ref)
            self._settle()
            return
        # A repeat is ignored, except for an order refused here before it ever left: its owner may
        # have asked to cancel it before hearing of the refusal, and waits for the cancel.
        if route.cancel_requested and (route.broker_id or route.rejection is None):
            self._settle()
            return
        route = replace(route, cancel_requested=True)
        self._set(route)
        if route.ref in self.held:  # a modify or the first placement still waiting: moot now
            self.held.remove(route.ref)
            self.queued_place.discard(route.ref)
        if not route.broker_id:
            # It never reached the broker (a queued placement is skipped when it comes up).
            self.log.info("{}: order {} cancelled before it was sent", self.key, route.ref)
            order = route.order
            quantity = order.quantity if order is not None else ZERO
            self._status(route, self.make(OrderStatusChanged, msg, ref=route.ref, group_id=route.group_id,
                                          status=OrderStatus.CANCELLED, remaining=quantity,
                                          why_held="cancelled before it was sent"))
        else:
            self.log.info("{}: cancel {} (id {}) queued: {}", self.key, route.ref, route.broker_id,
                          msg.reason)
            self._enqueue(_Cancel(route.ref), Priority.URGENT)
        self._settle()

    @run_once
    def receiveMsg_ClaimOrders(self, msg: ClaimOrders, sender: ActorAddress) -> None:
        self.cause = msg
        owner = msg.reply_to if msg.reply_to is not None else sender
        for ref in msg.refs:
            route = self.routes.get(ref)
            if route is None:
                route = Route(ref=ref, group_id=msg.group_id, owner=owner, cause_id=msg.msg_id,
                              corr_id=msg.correlation_id)
            else:
                route = replace(route, owner=owner, group_id=msg.group_id or route.group_id)
            self._set(route)
            self.log.info("{}: {} claims {} (id {}, {} execution(s))", self.key, msg.group_id, ref,
                          route.broker_id, len(route.executions))
            self._replay(route, msg)
            self._route_buffered(ref)
        self._settle()

    def _replay(self, route: Route, cause: Message) -> None:
        def again(m: Message) -> Message:
            return replace(m, msg_id=new_id(), cause_id=cause.msg_id, corr_id=cause.correlation_id,
                           ts_ns=self.now_ns())
        if route.broker_id:
            self._to_owner(route, self.make(OrderSubmitted, cause, ref=route.ref, group_id=route.group_id,
                                            broker_id=route.broker_id))
        if route.last_status is not None:
            self._to_owner(route, again(replace(route.last_status, group_id=route.group_id)))
        if route.rejection is not None:
            self._to_owner(route, again(replace(route.rejection, group_id=route.group_id)))
        for e in route.executions:
            self._to_owner(route, self.make(ExecutionReported, cause, execution=e, group_id=route.group_id))

    def _release_orders(self) -> None:
        held, self.held = self.held, []
        for ref in held:
            route = self.routes.get(ref)
            if route is None or (route.cancel_requested and not route.broker_id):
                self.queued_place.discard(ref)
                continue
            priority = (Priority.URGENT if route.protective else Priority.ORDER) if route.broker_id \
                else route.priority
            self.pacer = pacing.enqueue(self.pacer, _Place(ref), priority, self.now_ns())

    def _hold_orders(self, reason: str) -> None:
        self.pacer, queued = pacing.drain(self.pacer, frozenset({Priority.URGENT, Priority.ORDER}))
        self.held[:0] = [q.item.ref for q in queued if isinstance(q.item, _Place)]
        for q in queued:
            if not isinstance(q.item, _Place):
                self._enqueue(q.item, q.priority)
        self.log.info("{}: new orders held ({}); {} waiting", self.key, reason, len(self.held))

    def _release_place(self, ref: str) -> None:
        assert self.wire is not None
        self.queued_place.discard(ref)
        route = self.routes.get(ref)
        if route is None or route.order is None or route.cancel_requested:
            return
        if not cc.orders_allowed(self._conn()):
            self.held.insert(0, ref)
            self.queued_place.add(ref)
            return
        parent_id = 0
        if route.order.parent_ref:
            parent = self.routes.get(route.order.parent_ref)
            # A parent known to be rejected (e.g. an untransmitted one the sync after a restart did
            # not find) must not get new children: the last one would transmit it at the broker.
            if parent is None or not parent.broker_id or (not route.broker_id and parent.rejection is not None):
                reason = f"parent {route.order.parent_ref} is not at the broker"
                self.log.warning("{}: order {} not sent: {}", self.key, ref, reason)
                rejected = self._about(route, OrderRejected, ref=ref, group_id=route.group_id, code=0,
                                       reason=reason)
                self._set(replace(route, rejection=rejected, cancel_requested=True))
                self._to_owner(route, rejected)
                return
            parent_id = parent.broker_id
        first = not route.broker_id
        if first:
            self.conn, broker_id = cc.next_order_id(self._conn())
            route = replace(route, broker_id=broker_id)
            self.by_id[broker_id] = ref
        self._set(route)
        order = route.order
        # Only a new leg may be held back (transmit=False until its bracket is complete); a
        # modify of an order at the broker always transmits.
        request = edge.PlaceOrderRequest(order_id=route.broker_id, order=order,
                                         contract=self._contract(order.symbol), parent_id=parent_id,
                                         transmit=route.transmit or not first, account=self.settings.account)
        frames, events = self.wire.encode(request)
        self._write(frames)
        log = self.log.bind(corr=route.corr_id or "-")
        self._after_write(partial(log.info, "{}: {} {} (id {}, parent {}, transmit {})", self.key,
                                  "placed" if first else "re-placed", ref, route.broker_id, parent_id,
                                  request.transmit))
        if first:
            self.metrics.inc("orders_sent")
            if route.trigger and route.trigger_ts_ns:
                self.metrics.observe(f"{route.trigger}_to_order", self.now_ns() - route.trigger_ts_ns)
            self._to_owner(route, self._about(route, OrderSubmitted, ref=ref, group_id=route.group_id,
                                              broker_id=route.broker_id))
        self._on_wire_events(events)

    def _contract(self, symbol: str) -> edge.ContractSpec:
        return self.contracts.get(symbol) or edge.ContractSpec(symbol=symbol)

    def _conn(self) -> cc.Connection:
        assert self.conn is not None
        return self.conn

    # ------------------------------------------------------------ orders: broker events

    def _set(self, route: Route) -> None:
        self.routes[route.ref] = route
        self.changed_refs.add(route.ref)
        self.dirty = True
        self._journal_route(route)

    def _journal_route(self, route: Route) -> None:
        """Commit the order's row (and its route) before anything acts on the change.

        A first broker id also raises the journaled order-id mark and, for a group's first order to
        leave, resolves its intent as SENT, in the same transaction, before its PLACE_ORDER is written.
        """
        journal, order = self.journal, route.order
        if journal is None or order is None or (not route.broker_id and route.rejection is None):
            # Not given an id yet: it cannot be at the broker, and the intent and the group's record
            # already say what was asked. Its row is written when its PLACE_ORDER is about to leave.
            return
        if not route.broker_id or route.broker_id <= self.journaled_hwm:
            # Not a first placement: journaled with the next batch (see _ROUTES_LAZY_NS).
            self.lazy_routes[route.ref] = route
            if not self.routes_due_ns:
                self.routes_due_ns = self.now_ns() + _ROUTES_LAZY_NS
            return
        with journal.batch():
            self.lazy_routes.pop(route.ref, None)
            self._journal_lazy_routes(journal)
            journal.upsert_order(self._order_row(route))
            if self.in_pump:
                self.hwm_due = max(self.hwm_due, route.broker_id)  # raised once, before the batch commits
            else:
                self.journaled_hwm = journal.raise_order_id_hwm(route.broker_id)
            if route.group_id and route.group_id not in self.sent_intents:
                intent = journal.intent(route.group_id)
                if intent is not None and not intent.resolution:
                    journal.resolve_intent(route.group_id, resolution="SENT", ts_ns=self.now_ns(),
                                           reason=f"{route.ref} placed as order {route.broker_id}")
                if len(self.sent_intents) >= _SENT_INTENTS_KEPT:
                    self.sent_intents.clear()
                self.sent_intents.add(route.group_id)

    def _journal_lazy_routes(self, journal: Journal) -> None:
        """Write the order rows waiting for the next batch (inside one)."""
        routes, self.lazy_routes, self.routes_due_ns = self.lazy_routes, {}, 0
        for route in routes.values():
            journal.upsert_order(self._order_row(route))

    def _flush_lazy_routes(self, force: bool = False) -> None:
        if self.journal is None or not self.lazy_routes or not (force or self.now_ns() >= self.routes_due_ns):
            return
        # Not synced: these rows follow what the broker already did (statuses, fills); after a
        # restart the broker tells it again. What must be on disk before an order leaves is
        # committed synced by _journal_route.
        with self.journal.batch(synced=False):
            self._journal_lazy_routes(self.journal)

    def _order_row(self, route: Route) -> OrderRow:
        order = route.order
        assert order is not None
        now = self.now_ns()
        last = route.last_status
        if last is not None:
            status, filled, avg = last.status, last.filled, last.avg_fill_price
        else:
            status = (OrderStatus.REJECTED if route.rejection is not None
                      else OrderStatus.PENDING_SUBMIT if route.broker_id else OrderStatus.CREATED)
            filled = sum((e.quantity for e in route.executions), ZERO)
            avg = ZERO
        return OrderRow.of(replace(order, broker_id=route.broker_id, status=status, filled=filled,
                                   avg_fill_price=avg),
                           group_id=route.group_id, ts_ns=now,
                           route=pickle.dumps(replace(route, owner=None), protocol=pickle.HIGHEST_PROTOCOL))

    def _about(self, route: Route, cls: type[_M], **fields: Any) -> _M:
        """Return a `cls` message about `route`, in the correlation chain of the message that made it."""
        return cls(cause_id=route.cause_id, corr_id=route.corr_id, ts_ns=self.now_ns(), **fields)

    def _to_owner(self, route: Route, msg: Message) -> None:
        self._after_write(partial(self._tell_owner, route, msg))

    def _tell_owner(self, route: Route, msg: Message) -> None:
        if route.owner is not None:
            self.tell(route.owner, msg)
        else:
            # Kept in the route (status, executions) and replayed when its group claims it.
            self.log.debug("{}: {} for {} waits for its owner's claim", self.key, type(msg).__name__,
                           route.ref)

    def _find(self, ref: str, order_id: int, client_id: int) -> Route | None:
        route = self.routes.get(ref) if ref else None
        if route is None and client_id == self.settings.connection.client_id:
            known = self.by_id.get(order_id)
            route = self.routes.get(known) if known else None
        return route

    def _accept(self, route: Route) -> Route:
        if route.accepted:
            return route
        route = replace(route, accepted=True)
        self._set(route)
        self._to_owner(route, self._about(route, OrderAccepted, ref=route.ref, group_id=route.group_id,
                                          broker_id=route.broker_id))
        return route

    def _adopt(self, route: Route, order_id: int, client_id: int) -> Route:
        """Take the broker id of a claimed route whose PLACE_ORDER went out before a restart."""
        if route.broker_id or client_id != self.settings.connection.client_id or order_id <= 0:
            return route
        route = replace(route, broker_id=order_id)
        self.by_id[order_id] = route.ref
        self._set(route)
        return route

    def _cancel_again(self) -> None:
        """After a sync: ask again to cancel every order still working that we asked to cancel.

        A cancel written just before its socket closed never reached TWS, and nothing else would
        send it again (its owner's repeats are deduplicated here); the repeat of one that did is
        refused (10148/161) without touching the order.
        """
        queued = {q.item.ref for q in self.pacer.queues[Priority.URGENT] if isinstance(q.item, _Cancel)}
        for ref, route in self.routes.items():
            last = route.last_status
            if route.cancel_requested and route.broker_id and route.rejection is None and ref not in queued \
                    and (last is None or last.status not in DONE_STATES):
                self.log.info("{}: cancel {} (id {}) asked again after the reconnect", self.key, ref, route.broker_id)
                self._enqueue(_Cancel(ref), Priority.URGENT)

    def _unconfirmed_never_sent(self) -> None:
        """After the first sync since a restart from the journal: an order the broker knows nothing about
        (not open, not completed, no status) never reached it; its owner hears it was rejected."""
        refs, self.unconfirmed = self.unconfirmed, set()
        for ref in sorted(refs):
            route = self.routes.get(ref)
            if route is None or route.accepted or route.last_status is not None or route.rejection is not None:
                continue
            reason = (f"order {route.broker_id} is not at the broker after the restart: its PLACE_ORDER never "
                      f"reached it (it is not sent again)")
            self.log.warning("{}: {}: {}", self.key, ref, reason)
            rejected = self._about(route, OrderRejected, ref=ref, group_id=route.group_id,
                                   broker_id=route.broker_id, code=0, reason=reason)
            self._set(replace(route, rejection=rejected, cancel_requested=True))
            self._to_owner(route, rejected)

    def _on_open_order(self, ev: edge.OpenOrderSeen, now: int) -> None:
        self._decide(cc.OrderIdSeen(at_ns=now, order_id=ev.order_id))
        route = self._find(ev.order.ref, ev.order_id, ev.client_id)
        if route is None:
            key = (ev.client_id, ev.order_id, ev.perm_id)
            if key in self.externals or ev.order.status in DONE_STATES:
                return
            self.externals.add(key)
            reason = (f"client {ev.client_id} order {ev.order_id} (perm {ev.perm_id}, {ev.order_type}) "
                      f"with orderRef {ev.order.ref!r} is not ours")
            self.log.warning("{}: external order: {}", self.key, reason)
            if self.journal is not None:
                self.journal.record_event("external_order", ts_ns=now, actor=self.key, symbol=ev.order.symbol,
                                          ref=ev.order.ref, text=reason,
                                          data={"order_id": ev.order_id, "client_id": ev.client_id,
                                                "perm_id": ev.perm_id})
            self.publish(self.make(ExternalOrderDetected, self.cause, order=ev.order, reason=reason))
            return
        route = self._adopt(route, ev.order_id, ev.client_id)
        self._accept(route)
        self._route_buffered(route.ref)

    def _on_status(self, ev: edge.StatusSeen, now: int) -> None:
        self._decide(cc.OrderIdSeen(at_ns=now, order_id=ev.order_id))
        if ev.client_id not in (0, self.settings.connection.client_id):
            return  # another API client's order: its ids are not ours
        ref = self.by_id.get(ev.order_id)
        if ref is None:
            return
        if ev.status is None:
            self.log.warning("{}: order {}: unknown IB status {!r} ignored", self.key, ref, ev.word)
            return
        route = self._accept(self.routes[ref])
        self._status(route, self._about(route, OrderStatusChanged, ref=ref, group_id=route.group_id,
                                        broker_id=route.broker_id, status=ev.status, filled=ev.filled,
                                        remaining=ev.remaining, avg_fill_price=ev.avg_fill_price,
                                        why_held=ev.why_held))

    def _on_completed(self, ev: edge.CompletedOrderSeen) -> None:
        route = self._find(ev.order.ref, ev.order.broker_id, ev.client_id)
        if route is None:
            return
        order = ev.order
        self._status(route, self._about(route, OrderStatusChanged, ref=route.ref, group_id=route.group_id,
                                        broker_id=route.broker_id, status=order.status, filled=order.filled,
                                        remaining=max(ZERO, order.quantity - order.filled)))

    def _status(self, route: Route, msg: OrderStatusChanged) -> None:
        last = route.last_status
        if last is not None and (last.status, last.filled, last.remaining) == (msg.status, msg.filled,
                                                                               msg.remaining):
            return  # IB repeats orderStatus freely
        self._set(replace(route, last_status=msg))
        if any(w.ref == route.ref for w in self.awaiting.values()):
            # An execution of this order waits for its commission: the fill goes first.
            self.waiting_statuses.setdefault(route.ref, []).append(msg)
            return
        self._to_owner(route, msg)

    def _on_execution(self, ev: edge.ExecutionSeen, now: int) -> None:
        execution = ev.execution
        if execution.exec_id in self.exec_seen:
            return  # the live fill and its replay by reqExecutions count once
        if not execution.ts_ns:
            execution = replace(execution, ts_ns=now)
        route = self._find(execution.order_ref, execution.order_id, ev.client_id)
        if route is None:
            self.unrouted[execution.exec_id] = replace(ev, execution=execution)
            while len(self.unrouted) > _UNROUTED_KEPT:
                self.unrouted.popitem(last=False)
            self.log.info("{}: execution {} of an order we do not know (ref {!r}, id {}) kept",
                          self.key, execution.exec_id, execution.order_ref, execution.order_id)
            return
        self._take_execution(route, execution, now)

    def _take_execution(self, route: Route, execution: Execution, now: int) -> None:
        self.exec_seen.add(execution.exec_id)
        self.metrics.inc("fills")
        if self.journal is not None:
            # Durable before any position can move with it; a repeat of a journaled fill is not a new one.
            with self.journal.batch():
                self.journal.record_execution(ExecRow.of(replace(execution, order_ref=route.ref)))
                self._journal_lazy_routes(self.journal)
        commission = self.early_commissions.pop(execution.exec_id, None)
        if commission is not None:
            self._deliver_execution(route.ref, execution, commission)
        else:
            self.awaiting[execution.exec_id] = _Awaiting(ref=route.ref, execution=execution,
                                                         deadline_ns=now + self.settings.commission_wait_ns)

    def _deliver_execution(self, ref: str, execution: Execution, commission: Decimal | None) -> None:
        if commission is not None:
            execution = replace(execution, commission=commission)
            if self.journal is not None:
                # Not synced: a commission is sent again with its fill after a restart (and the
                # next synced commit puts it on disk anyway).
                with self.journal.batch(synced=False):
                    self.journal.record_commission(execution.exec_id, commission=commission,
                                                   realized_pnl=None, ts_ns=self.now_ns())
                    self._journal_lazy_routes(self.journal)
        route = self.routes[ref]
        self._set(replace(route, executions=route.executions + (execution,)))
        self.exec_route[execution.exec_id] = ref
        log = self.log.bind(corr=route.corr_id or "-")
        log.info("{}: fill {} {} {} {} @ {} (commission {}) for {}", self.key, execution.exec_id,
                 execution.side.value, execution.quantity, execution.symbol, execution.price,
                 execution.commission, ref)
        reported = self._about(route, ExecutionReported, execution=execution, group_id=route.group_id)
        self._to_owner(route, reported)
        if (symbols := self.peers.get(SYMBOLS)) is not None:
            # The position's own copy: the group forwards the fill too, but a fill after its
            # group ended (a late fill of a cancelled leg) has no group left to forward it.
            self.tell(symbols, reported)
        if not any(w.ref == ref for w in self.awaiting.values()):
            for status in self.waiting_statuses.pop(ref, []):
                self._to_owner(self.routes[ref], status)

    def _on_commission(self, ev: edge.CommissionSeen) -> None:
        if ev.commission is None:
            return  # IB's "unset" report; the real one follows
        waiting = self.awaiting.pop(ev.exec_id, None)
        if waiting is not None:
            self._deliver_execution(waiting.ref, waiting.execution, ev.commission)
            return
        ref = self.exec_route.get(ev.exec_id)
        if ref is not None:
            route = self.routes[ref]
            late = [e for e in route.executions if e.exec_id == ev.exec_id and e.commission == ZERO]
            if late and ev.commission != ZERO:
                if self.journal is not None:
                    with self.journal.batch(synced=False):
                        self.journal.record_commission(ev.exec_id, commission=ev.commission,
                                                       realized_pnl=ev.realized_pnl, ts_ns=self.now_ns())
                executions = tuple(replace(e, commission=ev.commission) if e.exec_id == ev.exec_id else e
                                   for e in route.executions)
                self._set(replace(route, executions=executions))
                reported = self._about(route, CommissionReported, exec_id=ev.exec_id, order_ref=ref,
                                       symbol=late[0].symbol, commission=ev.commission,
                                       realized_pnl=ev.realized_pnl, currency=ev.currency or "USD")
                if (symbols := self.peers.get(SYMBOLS)) is not None:
                    self.tell(symbols, reported)  # the position adds it to the fill it has
                else:
                    self._to_owner(route, reported)
            return
        if ev.exec_id not in self.exec_seen:
            self.early_commissions[ev.exec_id] = ev.commission
            while len(self.early_commissions) > _UNROUTED_KEPT:
                self.early_commissions.popitem(last=False)

    def _route_buffered(self, ref: str) -> None:
        route = self.routes[ref]
        for exec_id, ev in list(self.unrouted.items()):
            e = ev.execution
            if (e.order_ref and e.order_ref == ref) or \
                    (route.broker_id and e.order_id == route.broker_id
                     and ev.client_id == self.settings.connection.client_id):
                del self.unrouted[exec_id]
                self._take_execution(route, e, self.now_ns())

    # ------------------------------------------------------------ market data

    @run_once
    def receiveMsg_SubscribeMarketData(self, msg: SubscribeMarketData, sender: ActorAddress) -> None:
        self.cause = msg
        self._subscribe(msg.symbol, msg.reply_to if msg.reply_to is not None else sender, primary=False,
                        channel=self._channel(msg.channel))
        self._settle()

    @run_once
    def receiveMsg_SymbolActorStarted(self, msg: SymbolActorStarted, sender: ActorAddress) -> None:
        self.cause = msg
        self._subscribe(msg.symbol, msg.address, primary=True)
        self._settle()

    @run_once
    def receiveMsg_UnsubscribeMarketData(self, msg: UnsubscribeMarketData, sender: ActorAddress) -> None:
        self.cause = msg
        book = self.books.get(msg.symbol)
        address = msg.reply_to if msg.reply_to is not None else sender
        if book is not None:
            book.listeners = [x for x in book.listeners if x.address != address]
            if not book.listeners:
                del self.books[msg.symbol]
                if book.req_id:
                    self.req_symbol.pop(book.req_id, None)
                    self._enqueue(_Send(edge.MarketDataCancel(req_id=book.req_id)), Priority.DATA)
            self.dirty = self.subs_changed = True
        self._settle()

    def _channel(self, channel: QuoteChannel | None) -> QuoteChannel | None:
        """Return `channel` if quotes can go there, opening this actor's datagram socket on first use."""
        if channel is None:
            return None
        if self.quote_out is None:
            try:
                self.quote_out = qc.Endpoint()
            except OSError as exc:
                self.log.error("{}: no datagram socket for quotes ({}); they go as messages", self.key, exc)
                return None
            self.channel_check_ns = self.now_ns() + qc.RESEND_AFTER_NS
        return channel

    def _subscribe(self, symbol: str, address: ActorAddress, *, primary: bool,
                   channel: QuoteChannel | None = None) -> None:
        book = self.books.get(symbol)
        if book is None:
            book = self.books[symbol] = _Book(symbol)
        listener = next((x for x in book.listeners if x.address == address), None)
        if primary:
            # The symbol actor restarted at `address`: its old incarnation is gone.
            book.listeners = [x for x in book.listeners if not x.primary or x.address == address]
            if listener is not None:
                listener.primary = True
        if listener is None:
            listener = _Listener(address, primary or not any(x.primary for x in book.listeners))
            book.listeners.append(listener)
        if channel is not None and qc.usable_symbol(symbol):
            listener.channel = channel
        listener.in_flight = False
        if book.fields:
            listener.unsent = max(listener.unsent, 1)
            self.fresh_quotes[symbol] = None
        self.dirty = self.subs_changed = True
        self.log.info("{}: {} quotes to {} listener(s)", self.key, symbol, len(book.listeners))
        if not book.req_id and self._usable():
            self._request_market_data(book)

    def _request_market_data(self, book: _Book) -> None:
        book.watch_from_ns = self.now_ns()
        book.sent_ns = 0
        book.req_id = self._req_id()
        self.req_symbol[book.req_id] = book.symbol
        self._enqueue(_Send(edge.MarketDataRequest(req_id=book.req_id, contract=self._contract(book.symbol))),
                      Priority.DATA)

    def _resubscribe(self) -> None:
        """Cancel and re-request every subscription with fresh reqIds (after 1101 and every new socket)."""
        for book in self.books.values():
            if book.req_id:
                self.req_symbol.pop(book.req_id, None)
                self._enqueue(_Send(edge.MarketDataCancel(req_id=book.req_id)), Priority.DATA)
            self._request_market_data(book)
        if self.books:
            self.log.info("{}: re-subscribed {}", self.key, ", ".join(sorted(self.books)))

    def gauges(self) -> dict[str, int]:
        now = self.now_ns()
        ages = {f"quote_age_ms_{symbol}": (now - book.ts_ns) // 1_000_000
                for symbol, book in self.books.items() if book.ts_ns}
        return {**ages, "routes": len(self.routes), "held_orders": len(self.held)}

    def _on_tick(self, ev: edge.TickSeen, now: int) -> None:
        self._fields_in(ev.req_id, {ev.field: ev.value}, now)

    def _fields_in(self, req_id: int, fields: dict[str, Decimal], now: int) -> None:
        """Take quote fields for the subscription `req_id` (one tick, or a backtest's whole quote)."""
        symbol = self.req_symbol.get(req_id)
        if symbol is None:
            return
        book = self.books[symbol]
        self.metrics.inc("ticks_in", len(fields))
        book.fields.update(fields)
        book.ts_ns = book.watch_from_ns = now
        if book.stale:
            book.stale = False
            self.log.info("{}: {} data flows again", self.key, symbol)
            self.publish(self.make(MarketDataResumed, self.cause, symbol=symbol))
        for listener in book.listeners:
            listener.unsent += len(fields)
        self.fresh_quotes[symbol] = None

    def _watched(self) -> list[_Book]:
        if not cc.orders_allowed(self._conn()):
            return []  # not READY: the connection's own state says why no data comes
        return [b for b in self.books.values() if b.req_id and not b.stale]

    def _next_stale_ns(self) -> int | None:
        books = self._watched()
        return min(b.watch_from_ns for b in books) + self.settings.stale_after_ns if books else None

    def _recheck_data(self, now: int) -> None:
        """Ask again for every subscription with no tick since its request, once error 100 stopped coming.

        IB drops a request over the message rate and its error 100 does not say which. A
        market-data request lost so would leave the symbol without data until the next reconnect;
        one that arrived brings its first ticks at once, so a subscription still silent since its
        request left is taken for lost (asking again only costs a cancel and a request).
        """
        if self.recheck_data_ns is None or now < self.recheck_data_ns:
            return
        self.recheck_data_ns = None
        if not cc.orders_allowed(self._conn()):
            return  # not READY: the (re)synchronization after it subscribes everything again
        lost = [b for b in self.books.values() if b.req_id and b.sent_ns and b.ts_ns < b.sent_ns]
        for book in lost:
            self.req_symbol.pop(book.req_id, None)
            self._enqueue(_Send(edge.MarketDataCancel(req_id=book.req_id)), Priority.DATA)
            self._request_market_data(book)
        if lost:
            self.log.warning("{}: market data asked again after error 100 (no tick since the request): {}",
                             self.key, ", ".join(sorted(b.symbol for b in lost)))

    def _check_stale(self, now: int) -> None:
        for book in self._watched():
            silent = now - book.watch_from_ns
            if silent >= self.settings.stale_after_ns:
                book.stale = True
                self.log.warning("{}: no market data for {} for {:.1f} s", self.key, book.symbol, silent / _S)
                self.publish(self.make(MarketDataStale, self.cause, symbol=book.symbol, last_ts_ns=book.ts_ns,
                                       silent_ns=silent))

    def _flush_quotes(self) -> None:
        if not self.fresh_quotes:
            return
        self._take_acks()
        for symbol in self.fresh_quotes:
            book = self.books.get(symbol)
            if book is None or not book.fields:
                continue
            quote: Quote | None = None
            for listener in book.listeners:
                if listener.in_flight or not listener.unsent:
                    continue
                quote = quote or book.quote()
                update = QuoteUpdate(quote=quote, coalesced=listener.unsent, ts_ns=self.now_ns())
                if listener.channel is not None and self.quote_out is not None:
                    # A datagram that cannot leave (full buffer, receiver gone) is resent by
                    # _check_channels like a lost one.
                    listener.seq += 1
                    listener.sent_ns = update.ts_ns
                    channel = listener.channel
                    self.quote_out.send_to((channel.host, channel.port),
                                           qc.encode_quote(channel.token, listener.seq, update))
                else:
                    self.tell(listener.address, update)
                listener.in_flight, listener.unsent = True, 0
        self.fresh_quotes.clear()

    def _take_acks(self) -> None:
        """Free the subscribers whose quote datagram was acknowledged (read from the quote socket)."""
        if self.quote_out is None:
            return
        for data, _ in self.quote_out.drain():
            try:
                ack = qc.decode_ack(data)
            except qc.ChannelError as exc:
                self.log.warning("{}: quote acknowledgement refused: {}", self.key, exc)
                continue
            book = self.books.get(ack.symbol)
            if book is None:
                continue
            for listener in book.listeners:
                channel = listener.channel
                if channel is not None and channel.token == ack.token and listener.seq == ack.seq:
                    listener.in_flight = False
                    if listener.unsent:
                        self.fresh_quotes[ack.symbol] = None

    def _check_channels(self, now: int) -> None:
        """Take a quote datagram unacknowledged for RESEND_AFTER_NS as lost: the latest quote goes again."""
        if self.quote_out is None or now < self.channel_check_ns:
            return
        self.channel_check_ns = now + qc.RESEND_AFTER_NS // 2
        for book in self.books.values():
            for listener in book.listeners:
                if (listener.channel is not None and listener.in_flight
                        and now - listener.sent_ns >= qc.RESEND_AFTER_NS):
                    listener.in_flight = False
                    listener.unsent = max(listener.unsent, 1)
                    self.fresh_quotes[book.symbol] = None

    def receiveMsg_QuoteProcessed(self, msg: QuoteProcessed, sender: ActorAddress) -> None:
        book = self.books.get(msg.symbol)
        if book is not None:
            for listener in book.listeners:
                if listener.address == sender:
                    listener.in_flight = False
                    if listener.unsent:
                        self.fresh_quotes[msg.symbol] = None
        if not self.failed:
            self._flush_quotes()

    # ------------------------------------------------------------ historical bars

    @run_once
    def receiveMsg_GetHistoricalBars(self, msg: GetHistoricalBars, sender: ActorAddress) -> None:
        self.cause = msg
        req_id = self._req_id()
        request = edge.HistoricalDataRequest(req_id=req_id, contract=self._contract(msg.symbol),
                                             bar_size_s=msg.bar_size_s, count=msg.count, end_ns=msg.end_ns)
        try:
            edge.bar_size_setting(msg.bar_size_s)
            edge.duration_setting(msg.bar_size_s, msg.count)
        except ValueError as exc:
            self.log.warning("{}: history of {} refused: {}", self.key, msg.symbol, exc)
            self.tell(sender, self.make(HistoricalBars, msg, symbol=msg.symbol, bar_size_s=msg.bar_size_s))
            self._settle()
            return
        self.history[req_id] = _History(symbol=msg.symbol, bar_size_s=msg.bar_size_s, count=msg.count,
                                        requester=sender, cause=msg, request=request)
        self._enqueue(_Send(request, survives=True), Priority.DATA)
        self._settle()

    def _answer_history(self, req_id: int) -> None:
        hist = self.history.pop(req_id, None)
        if hist is None:
            return
        bars = tuple(sorted(hist.bars, key=lambda b: b.ts_ns))[-hist.count:]
        self.tell(hist.requester, self.make(HistoricalBars, hist.cause, symbol=hist.symbol,
                                            bar_size_s=hist.bar_size_s, bars=bars))
