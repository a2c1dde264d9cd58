"""The broker connection as a pure machine: decide(connection, event) -> (connection, commands).

DISCONNECTED -> CONNECTING -> SYNCHRONIZING -> READY, and DEGRADED while TWS has lost IB (1100 /
2110: the socket stays open). New orders leave only in READY: HoldOrders is issued on every exit
from READY and ReleaseOrders on every entry (orders are held from the start). Cancels are not
held: the shell sends them whenever a socket is up.

After every new socket, and after 1101 / 1102, the connection reconciles before READY, one step
at a time (tws-protocol.md §10.2): order-id floor, open orders, completed orders, positions,
executions (after the order snapshots), and market data (after a new socket or 1101, never after
1102 alone). Each step has a deadline; a step that times out is re-requested `sync_step_retries`
times, then the socket is closed and reconnected.

Timers run on Tick events: the heartbeat (reqCurrentTime every interval while a socket is up; no
answer within the timeout closes it), the connect deadline, the reconnect schedule (exponential
backoff with deterministic jitter) and the outage ladder, which keeps running while disconnected
(FM-2). The ladder, measured from the moment the connection stopped being READY:

1. at once: HoldOrders and a WARNING (IB's nightly reset causes this every day);
2. after `outage_alert_ns` (default 3 min, past the usual 1-3 min reset): an ERROR alert;
3. after `outage_halt_ns` (default 15 min): a CRITICAL alert and HaltTrading: no new entries
   until an operator resumes, so orders held through a long outage never leave late at stale
   prices. Resting protective orders stay at the broker; nothing is terminated.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, replace
from enum import Enum
from types import MappingProxyType
from typing import Final, TypeAlias

from core.config import BrokerConfig
from core.errors import ConfigError, InvalidConnectionEvent
from core.pacing import IB_LIMIT_PER_S

_S: Final = 1_000_000_000

# ---------------------------------------------------------------- IB codes, by what they mean to us
# Keyed on the number, never on the text. reqId is -1 for system notices, the order id for order
# errors, the request id for request errors.

# TWS lost its link to IB's servers (nightly reset, ISP, competing session). The API socket stays
# open; nothing reaches IB. TWS repeats 1100 while the outage lasts (IBC #143; LEAN IB PR #258
# counted 833 of them over 15 hours). 2110 is handled the same way.
LINK_LOST: Final = frozenset({1100, 2110})
# The link is back but market data was lost: every subscription must be re-requested, then
# orders, positions and executions reconciled.
LINK_RESTORED_DATA_LOST: Final = frozenset({1101})
# The link is back and subscriptions survived; orders and fills must still be reconciled.
LINK_RESTORED_DATA_KEPT: Final = frozenset({1102})
# TWS reset its socket port: reconnect.
SOCKET_PORT_RESET: Final = frozenset({1300})
# The client id is in use; TWS closes the socket next. Back off: reconnecting at once only meets
# the old session again (nautilus_trader PR #4412 saw the id cycle).
CLIENT_ID_IN_USE: Final = frozenset({326})
# Raised by the ibapi client itself: could not connect / not connected / bad message length.
SOCKET_ERRORS: Final = frozenset({502, 504, 507})
# A data farm went down (market 2103, historical 2105, sec-def 2157). Data is degraded; the
# socket and the orders are untouched (tearing the socket down on a farm flap is
# nautilus_trader PR #4412's bug).
DATA_FARM_DOWN: Final = frozenset({2103, 2105, 2157})
# A farm is inactive but available on demand (historical 2107, market 2108): no data flows from
# it until something is requested. Marked degraded like a down farm, never more than that.
DATA_FARM_INACTIVE: Final = frozenset({2107, 2108})
# A farm is OK (market 2104, historical 2106, sec-def 2158). Informational: TWS sends them right
# after connecting, IB Gateway only once data is requested, so never wait for them.
DATA_FARM_OK: Final = frozenset({2104, 2106, 2158})
# Warnings that never change any state: order message warning (399), account-data unsubscribe
# (2100), outsideRth ignored (2109), an order warning that ib_async #191 wrongly read as a cancel
# (10349).
INFORMATIONAL: Final = frozenset({399, 2100, 2109, 10349})
# The socket-wide 50 msg/s limit was exceeded. Our pacer never exceeds its budget, so another API
# client of the same TWS shares it: halve our rate and alert.
PACING: Final = frozenset({100})
# Historical (162) and real-time bar (420) pacing: the data requester backs off.
DATA_PACING: Final = frozenset({162, 420})
# The order id is not above every id this client used: raise the floor; the order group submits
# a new intent after checking the original never reached IB.
DUPLICATE_ORDER_ID: Final = frozenset({103})
# The order was refused (201 with the reason in the text, 203 security not allowed, 110 price
# not a tick multiple, 104/105 modify of a filled / mismatched order). Routed to the group.
ORDER_REJECTS: Final = frozenset({104, 105, 110, 201, 203})
# Cancelled with a reason: after our own cancel, and also unexpectedly (price checks). Routed.
ORDER_CANCELLED: Final = frozenset({202})
# The cancel lost a race with a fill or another cancel: not a failure, the fill is coming.
CANCEL_RACE: Final = frozenset({161, 10148})
# A modify arrived while the order was still being processed: retry the modify later.
MODIFY_IN_FLIGHT: Final = frozenset({2102})
# Market-data entitlement (not subscribed / partially / competing live session): alert, and do
# not treat it as a connection failure.
DATA_ENTITLEMENT: Final = frozenset({354, 10090, 10197})
# A request was refused: duplicate ticker id (102), validation failed (321), no historical query
# for the ticker id (366). Routed to the requester.
REQUEST_ERRORS: Final = frozenset({102, 321, 366})


class CodeClass(str, Enum):
    LINK_LOST = "LINK_LOST"
    LINK_RESTORED_DATA_LOST = "LINK_RESTORED_DATA_LOST"
    LINK_RESTORED_DATA_KEPT = "LINK_RESTORED_DATA_KEPT"
    SOCKET_PORT_RESET = "SOCKET_PORT_RESET"
    CLIENT_ID_IN_USE = "CLIENT_ID_IN_USE"
    SOCKET_ERRORS = "SOCKET_ERRORS"
    DATA_FARM_DOWN = "DATA_FARM_DOWN"
    DATA_FARM_INACTIVE = "DATA_FARM_INACTIVE"
    DATA_FARM_OK = "DATA_FARM_OK"
    INFORMATIONAL = "INFORMATIONAL"
    PACING = "PACING"
    DATA_PACING = "DATA_PACING"
    DUPLICATE_ORDER_ID = "DUPLICATE_ORDER_ID"
    ORDER_REJECTS = "ORDER_REJECTS"
    ORDER_CANCELLED = "ORDER_CANCELLED"
    CANCEL_RACE = "CANCEL_RACE"
    MODIFY_IN_FLIGHT = "MODIFY_IN_FLIGHT"
    DATA_ENTITLEMENT = "DATA_ENTITLEMENT"
    REQUEST_ERRORS = "REQUEST_ERRORS"
    UNKNOWN = "UNKNOWN"


CODE_CLASSES: Final[Mapping[CodeClass, frozenset[int]]] = MappingProxyType({
    CodeClass.LINK_LOST: LINK_LOST,
    CodeClass.LINK_RESTORED_DATA_LOST: LINK_RESTORED_DATA_LOST,
    CodeClass.LINK_RESTORED_DATA_KEPT: LINK_RESTORED_DATA_KEPT,
    CodeClass.SOCKET_PORT_RESET: SOCKET_PORT_RESET,
    CodeClass.CLIENT_ID_IN_USE: CLIENT_ID_IN_USE,
    CodeClass.SOCKET_ERRORS: SOCKET_ERRORS,
    CodeClass.DATA_FARM_DOWN: DATA_FARM_DOWN,
    CodeClass.DATA_FARM_INACTIVE: DATA_FARM_INACTIVE,
    CodeClass.DATA_FARM_OK: DATA_FARM_OK,
    CodeClass.INFORMATIONAL: INFORMATIONAL,
    CodeClass.PACING: PACING,
    CodeClass.DATA_PACING: DATA_PACING,
    CodeClass.DUPLICATE_ORDER_ID: DUPLICATE_ORDER_ID,
    CodeClass.ORDER_REJECTS: ORDER_REJECTS,
    CodeClass.ORDER_CANCELLED: ORDER_CANCELLED,
    CodeClass.CANCEL_RACE: CANCEL_RACE,
    CodeClass.MODIFY_IN_FLIGHT: MODIFY_IN_FLIGHT,
    CodeClass.DATA_ENTITLEMENT: DATA_ENTITLEMENT,
    CodeClass.REQUEST_ERRORS: REQUEST_ERRORS,
})
_CLASS_OF: Final = MappingProxyType({c: k for k, codes in CODE_CLASSES.items() for c in codes})

# Which farm a farm notice speaks about.
FARM_OF: Final[Mapping[int, str]] = MappingProxyType({
    2103: "market", 2104: "market", 2108: "market",
    2105: "historical", 2106: "historical", 2107: "historical",
    2157: "secdef", 2158: "secdef",
})

# Codes whose repetition never raises a streak alert (the streak is still counted): normal
# notices, and codes that alert on every occurrence already.
_QUIET: Final = (DATA_FARM_OK | DATA_FARM_INACTIVE | INFORMATIONAL | CLIENT_ID_IN_USE | PACING
                 | DUPLICATE_ORDER_ID)

# reqCompletedOrders exists from server version 150 on.
MIN_SERVER_VERSION_COMPLETED_ORDERS: Final = 150


def classify(code: int) -> CodeClass:
    """Return the class of an IB error or notice code (UNKNOWN for codes no class names)."""
    return _CLASS_OF.get(code, CodeClass.UNKNOWN)


# ---------------------------------------------------------------- states and settings


class ConnState(str, Enum):
    """The connection's state; the values are messages.connection.ConnectionState's, one to one."""

    DISCONNECTED = "DISCONNECTED"
    CONNECTING = "CONNECTING"        # socket opening / handshake; nothing is sent before nextValidId
    SYNCHRONIZING = "SYNCHRONIZING"  # connected; reconciling before any new order may leave
    READY = "READY"
    DEGRADED = "DEGRADED"            # socket up but TWS lost IB's servers (1100 / 2110)


_SOCKET_UP: Final = frozenset({ConnState.SYNCHRONIZING, ConnState.READY, ConnState.DEGRADED})


class SyncStep(str, Enum):
    """Reconciliation steps, in the order they run (tws-protocol.md §10.2)."""

    ORDER_IDS = "ORDER_IDS"                # nextValidId, or reqIds(-1) without a new socket
    OPEN_ORDERS = "OPEN_ORDERS"            # reqOpenOrders / reqAllOpenOrders ... openOrderEnd
    COMPLETED_ORDERS = "COMPLETED_ORDERS"  # reqCompletedOrders ... completedOrdersEnd
    POSITIONS = "POSITIONS"                # reqPositions ... positionEnd
    EXECUTIONS = "EXECUTIONS"              # reqExecutions ... execDetailsEnd, after the orders
    MARKET_DATA = "MARKET_DATA"            # cancel and re-request every subscription, fresh reqIds


class AlertLevel(str, Enum):
    INFO = "INFO"
    WARNING = "WARNING"
    ERROR = "ERROR"
    CRITICAL = "CRITICAL"


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectionConfig:
    """Where to connect and every timer of the connection; durations in nanoseconds."""

    host: str = "127.0.0.1"
    port: int = 7497
    client_id: int = 1
    connect_timeout_ns: int = 10 * _S
    reconnect_initial_ns: int = 1 * _S
    reconnect_max_ns: int = 60 * _S
    jitter: float = 0.2                 # each reconnect wait is randomized by up to ±jitter
    heartbeat_interval_ns: int = 10 * _S
    heartbeat_timeout_ns: int = 30 * _S
    sync_step_timeout_ns: int = 30 * _S
    sync_step_retries: int = 2          # re-requests of a timed-out step before reconnecting
    outage_alert_ns: int = 180 * _S     # not READY this long: ERROR alert
    outage_halt_ns: int = 900 * _S      # not READY this long: CRITICAL alert + HaltTrading
    error_alert_after: int = 5          # a code repeated 5, 10, 20, 40... times alerts
    pacing_msgs_per_s: int = 45


def config_from_broker(broker: BrokerConfig, *, host: str | None = None,
                       port: int | None = None) -> ConnectionConfig:
    """Return the connection settings of `[broker]`; host/port override it (the embedded simulator)."""
    return ConnectionConfig(
        host=broker.host if host is None else host,
        port=broker.port if port is None else port,
        client_id=broker.client_id,
        connect_timeout_ns=round(broker.connect_timeout_s * _S),
        reconnect_initial_ns=round(broker.reconnect.initial_s * _S),
        reconnect_max_ns=round(broker.reconnect.max_s * _S),
        jitter=broker.reconnect.jitter,
        heartbeat_interval_ns=round(broker.heartbeat_interval_s * _S),
        heartbeat_timeout_ns=round(broker.heartbeat_timeout_s * _S),
        pacing_msgs_per_s=broker.pacing_msgs_per_s,
    )


def _check_config(config: ConnectionConfig) -> None:
    c, problems = config, []

    def positive(name: str) -> None:
        value = getattr(c, name)
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            problems.append(f"{name}: {value!r} is invalid; expected a positive integer")

    for name in ("connect_timeout_ns", "reconnect_initial_ns", "reconnect_max_ns",
                 "heartbeat_interval_ns", "heartbeat_timeout_ns", "sync_step_timeout_ns",
                 "outage_alert_ns", "outage_halt_ns", "error_alert_after"):
        positive(name)
    if not problems:
        if c.reconnect_max_ns < c.reconnect_initial_ns:
            problems.append("reconnect_max_ns: must be >= reconnect_initial_ns")
        if c.heartbeat_timeout_ns <= c.heartbeat_interval_ns:
            problems.append("heartbeat_timeout_ns: must exceed heartbeat_interval_ns")
        if c.outage_halt_ns < c.outage_alert_ns:
            problems.append("outage_halt_ns: must be >= outage_alert_ns")
    if not isinstance(c.jitter, (int, float)) or isinstance(c.jitter, bool) or not 0 <= c.jitter <= 1:
        problems.append(f"jitter: {c.jitter!r} is invalid; expected 0..1")
    if not isinstance(c.sync_step_retries, int) or isinstance(c.sync_step_retries, bool) \
            or c.sync_step_retries < 0:
        problems.append(f"sync_step_retries: {c.sync_step_retries!r} is invalid; expected >= 0")
    if not isinstance(c.pacing_msgs_per_s, int) or not 1 <= c.pacing_msgs_per_s <= IB_LIMIT_PER_S:
        problems.append(f"pacing_msgs_per_s: {c.pacing_msgs_per_s!r} is invalid; expected 1..50")
    if not isinstance(c.client_id, int) or c.client_id < 0:
        problems.append(f"client_id: {c.client_id!r} is invalid; expected >= 0")
    if not isinstance(c.port, int) or not 1 <= c.port <= 65535:
        problems.append(f"port: {c.port!r} is invalid; expected 1..65535")
    if problems:
        raise ConfigError(problems)


@dataclass(frozen=True, slots=True, kw_only=True)
class Connection:
    """The connection's whole state; build it with `new_connection`, advance it with `decide`."""

    config: ConnectionConfig
    next_id: int                     # the order-id floor: the next id `next_order_id` hands out
    seed: int = 0                    # jitter: u = hash(seed, draws), pure and replayable
    draws: int = 0
    state: ConnState = ConnState.DISCONNECTED
    wanted: bool = False             # a connection was requested and not since given up
    attempt: int = 0                 # reconnects scheduled since the last READY
    server_version: int = 0
    reconnect_at_ns: int | None = None
    connect_deadline_ns: int | None = None
    link_lost: bool = False          # 1100 / 2110 seen on this socket, not yet restored
    resubscribe: bool = False        # market data must be re-requested before READY
    sync_steps: tuple[SyncStep, ...] = ()  # the current step first
    step_deadline_ns: int | None = None
    step_retries: int = 0
    heartbeat_due_ns: int | None = None
    heartbeat_sent_ns: int | None = None   # an unanswered heartbeat left at this time
    last_heartbeat_ns: int | None = None   # the latest answer
    down_since_ns: int | None = None       # not READY (while wanted) since
    escalation: int = 0                    # outage ladder steps taken: 0, 1 (alert), 2 (halt)
    degraded_farms: frozenset[str] = frozenset()
    error_counts: tuple[tuple[int, int], ...] = ()  # (code, consecutive count), sorted by code
    pacing_msgs_per_s: int = 45


def new_connection(config: ConnectionConfig, *, order_id_hwm: int, seed: int = 0) -> Connection:
    """Return a DISCONNECTED connection whose first order id is the journaled high-water mark + 1."""
    _check_config(config)
    if not isinstance(order_id_hwm, int) or isinstance(order_id_hwm, bool) or order_id_hwm < 0:
        raise ConfigError([f"order_id_hwm: {order_id_hwm!r} is invalid; expected an integer >= 0"])
    return Connection(config=config, next_id=order_id_hwm + 1, seed=seed,
                      pacing_msgs_per_s=config.pacing_msgs_per_s)


# ---------------------------------------------------------------- events


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectRequested:
    """Connect (at start-up, or now instead of waiting for the scheduled reconnect)."""

    at_ns: int


@dataclass(frozen=True, slots=True, kw_only=True)
class DisconnectRequested:
    """Close the socket and stay disconnected (shutdown)."""

    at_ns: int
    reason: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class SocketConnected:
    """The handshake finished; TWS chose `server_version`. Requests still wait for nextValidId."""

    at_ns: int
    server_version: int


@dataclass(frozen=True, slots=True, kw_only=True)
class SocketFailed:
    """Opening the socket failed, or a write on the open socket failed."""

    at_ns: int
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class SocketClosed:
    """The socket closed (recv returned b"" or raised, or ibapi's connectionClosed)."""

    at_ns: int
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class NextValidId:
    """TWS's nextValidId: the connection is usable (after a connect) or reqIds answered."""

    at_ns: int
    order_id: int


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderIdSeen:
    """An order id seen at the broker (openOrder / orderStatus, any client): ids must exceed it."""

    at_ns: int
    order_id: int


@dataclass(frozen=True, slots=True, kw_only=True)
class SyncStepDone:
    """A reconciliation step finished (its ...End callback arrived, or resubscriptions were sent)."""

    at_ns: int
    step: SyncStep


@dataclass(frozen=True, slots=True, kw_only=True)
class BrokerCode:
    """IB's error(reqId, code, text): `req_id` is -1 for system notices, the order id for orders."""

    at_ns: int
    code: int
    req_id: int = -1
    text: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class HeartbeatSent:
    """The reqCurrentTime of a SendHeartbeat left the pacer at `at_ns`."""

    at_ns: int


@dataclass(frozen=True, slots=True, kw_only=True)
class HeartbeatAnswered:
    """TWS answered the heartbeat (currentTime)."""

    at_ns: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Tick:
    """Timers: send at `next_wakeup_ns(connection)` or on any regular cadence."""

    now_ns: int


Event: TypeAlias = (ConnectRequested | DisconnectRequested | SocketConnected | SocketFailed
                    | SocketClosed | NextValidId | OrderIdSeen | SyncStepDone | BrokerCode
                    | HeartbeatSent | HeartbeatAnswered | Tick)


# ---------------------------------------------------------------- commands


@dataclass(frozen=True, slots=True, kw_only=True)
class OpenSocket:
    host: str
    port: int
    client_id: int


@dataclass(frozen=True, slots=True, kw_only=True)
class CloseSocket:
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ScheduleReconnect:
    """A reconnect is due at `at_ns` (after `delay_ns`); a Tick at or after it opens the socket."""

    at_ns: int
    attempt: int
    delay_ns: int


@dataclass(frozen=True, slots=True, kw_only=True)
class RequestSync:
    """Request one reconciliation step's snapshot; answer with SyncStepDone (or NextValidId)."""

    step: SyncStep


@dataclass(frozen=True, slots=True, kw_only=True)
class ResubscribeMarketData:
    """Cancel and re-request every subscription with fresh reqIds; answer SyncStepDone(MARKET_DATA)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SendHeartbeat:
    """Send reqCurrentTime (pacer priority CONTROL) and report HeartbeatSent when it leaves."""


@dataclass(frozen=True, slots=True, kw_only=True)
class PublishState:
    state: ConnState
    previous: ConnState
    reason: str = ""
    code: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class PublishDataHealth:
    """The set of degraded data farms changed; the connection and the orders are unaffected."""

    degraded_farms: frozenset[str]
    code: int
    reason: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class HoldOrders:
    """Keep new orders and modifies back; cancels still leave whenever a socket is up."""

    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ReleaseOrders:
    """Orders may leave again, with ids from `next_order_id` on."""

    next_order_id: int


@dataclass(frozen=True, slots=True, kw_only=True)
class HaltTrading:
    """The outage outlasted the ladder: stop new entries until an operator resumes."""

    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ThrottleOutbound:
    """Run the socket's pacer at `rate_per_s` from now on."""

    rate_per_s: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Alert:
    level: AlertLevel
    text: str
    code: int = 0


Command: TypeAlias = (OpenSocket | CloseSocket | ScheduleReconnect | RequestSync
                      | ResubscribeMarketData | SendHeartbeat | PublishState | PublishDataHealth
                      | HoldOrders | ReleaseOrders | HaltTrading | ThrottleOutbound | Alert)
Decision: TypeAlias = tuple[Connection, tuple[Command, ...]]


# ---------------------------------------------------------------- backoff, ids, timers


def jitter_unit(seed: int, draw: int) -> float:
    """Return u in [0, 1) for the `draw`-th jitter of `seed`: a hash, so pure and replayable."""
    digest = hashlib.blake2b(f"{seed}:{draw}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def backoff_ns(config: ConnectionConfig, attempt: int, u: float) -> int:
    """Return min(max, initial x 2^attempt) x (1 + jitter x (2u - 1)): within ±jitter of the base."""
    base = min(config.reconnect_max_ns, config.reconnect_initial_ns << min(attempt, 64))
    return max(0, round(base * (1 + config.jitter * (2 * u - 1))))


def next_order_id(conn: Connection) -> tuple[Connection, int]:
    """Hand out the next order id; ids only go up (journal the new high-water mark before sending)."""
    return replace(conn, next_id=conn.next_id + 1), conn.next_id


def orders_allowed(conn: Connection) -> bool:
    """Return True when new orders may leave (READY)."""
    return conn.state is ConnState.READY


def error_count(conn: Connection, code: int) -> int:
    """Return how many times `code` came in a row (since it was last resolved or READY)."""
    return dict(conn.error_counts).get(code, 0)


def next_wakeup_ns(conn: Connection) -> int | None:
    """Return the earliest time a Tick has something to do, or None when no timer runs."""
    c, times = conn.config, []
    if conn.state is ConnState.DISCONNECTED and conn.wanted:
        times.append(conn.reconnect_at_ns)
    elif conn.state is ConnState.CONNECTING:
        times.append(conn.connect_deadline_ns)
    elif conn.state in _SOCKET_UP:
        if conn.heartbeat_sent_ns is not None:
            times.append(conn.heartbeat_sent_ns + c.heartbeat_timeout_ns)
        else:
            times.append(conn.heartbeat_due_ns)
        times.append(conn.step_deadline_ns)
    if conn.wanted and conn.down_since_ns is not None and conn.escalation < 2:
        limit = c.outage_alert_ns if conn.escalation == 0 else c.outage_halt_ns
        times.append(conn.down_since_ns + limit)
    present = [t for t in times if t is not None]
    return min(present) if present else None


# ---------------------------------------------------------------- the machine


class _Out:
    """Collects commands while a decision is built."""

    __slots__ = ("commands",)

    def __init__(self) -> None:
        self.commands: list[Command] = []

    def __call__(self, *commands: Command) -> None:
        self.commands.extend(commands)


def _move(conn: Connection, to: ConnState, now: int, out: _Out, reason: str, code: int = 0) -> Connection:
    previous = conn.state
    if to is previous:
        return conn
    if previous is ConnState.READY:
        out(HoldOrders(reason=reason))
        conn = replace(conn, down_since_ns=now if conn.wanted else None)
    conn = replace(conn, state=to)
    out(PublishState(state=to, previous=previous, reason=reason, code=code))
    if to is ConnState.READY:
        if conn.escalation and conn.down_since_ns is not None:
            out(Alert(level=AlertLevel.INFO,
                      text=f"connection ready again after {(now - conn.down_since_ns) / _S:.0f} s"))
        conn = replace(conn, attempt=0, down_since_ns=None, escalation=0, error_counts=())
        if conn.pacing_msgs_per_s != conn.config.pacing_msgs_per_s:
            conn = replace(conn, pacing_msgs_per_s=conn.config.pacing_msgs_per_s)
            out(ThrottleOutbound(rate_per_s=conn.pacing_msgs_per_s))
        out(ReleaseOrders(next_order_id=conn.next_id))
    return conn


def _socket_gone(conn: Connection) -> Connection:
    return replace(conn, connect_deadline_ns=None, link_lost=False, sync_steps=(),
                   step_deadline_ns=None, step_retries=0, heartbeat_due_ns=None,
                   heartbeat_sent_ns=None, server_version=0)


def _schedule_reconnect(conn: Connection, now: int, out: _Out) -> Connection:
    delay = backoff_ns(conn.config, conn.attempt, jitter_unit(conn.seed, conn.draws))
    out(ScheduleReconnect(at_ns=now + delay, attempt=conn.attempt, delay_ns=delay))
    return replace(conn, reconnect_at_ns=now + delay, attempt=conn.attempt + 1, draws=conn.draws + 1)


def _lose_socket(conn: Connection, now: int, out: _Out, reason: str, *, close: bool, code: int = 0,
                 level: AlertLevel | None = None) -> Connection:
    """Drop the socket (closing it if asked), go DISCONNECTED and schedule the next attempt."""
    if close:
        out(CloseSocket(reason=reason))
    if level is not None:
        out(Alert(level=level, text=reason, code=code))
    conn = _move(_socket_gone(conn), ConnState.DISCONNECTED, now, out, reason, code)
    if conn.wanted:
        conn = _schedule_reconnect(conn, now, out)
    return conn


def _open(conn: Connection, now: int, out: _Out, reason: str) -> Connection:
    c = conn.config
    out(OpenSocket(host=c.host, port=c.port, client_id=c.client_id))
    conn = replace(conn, reconnect_at_ns=None, connect_deadline_ns=now + c.connect_timeout_ns,
                   down_since_ns=now if conn.down_since_ns is None else conn.down_since_ns)
    return _move(conn, ConnState.CONNECTING, now, out, reason)


def _step_command(step: SyncStep) -> Command:
    return ResubscribeMarketData() if step is SyncStep.MARKET_DATA else RequestSync(step=step)


def _plan(conn: Connection, *, with_order_ids: bool) -> tuple[SyncStep, ...]:
    steps = [SyncStep.ORDER_IDS] if with_order_ids else []
    steps.append(SyncStep.OPEN_ORDERS)
    if not 0 < conn.server_version < MIN_SERVER_VERSION_COMPLETED_ORDERS:
        steps.append(SyncStep.COMPLETED_ORDERS)
    steps += [SyncStep.POSITIONS, SyncStep.EXECUTIONS]
    if conn.resubscribe:
        steps.append(SyncStep.MARKET_DATA)
    return tuple(steps)


def _start_steps(conn: Connection, steps: tuple[SyncStep, ...], now: int, out: _Out) -> Connection:
    """Start the first of `steps`, or go READY when none is left."""
    if not steps:
        conn = replace(conn, sync_steps=(), step_deadline_ns=None, step_retries=0)
        return _move(conn, ConnState.READY, now, out, "synchronized")
    out(_step_command(steps[0]))
    return replace(conn, sync_steps=steps, step_retries=0,
                   step_deadline_ns=now + conn.config.sync_step_timeout_ns)


def _synchronize(conn: Connection, now: int, out: _Out, reason: str, code: int, *,
                 with_order_ids: bool) -> Connection:
    conn = _move(conn, ConnState.SYNCHRONIZING, now, out, reason, code)
    return _start_steps(conn, _plan(conn, with_order_ids=with_order_ids), now, out)


def _step_done(conn: Connection, step: SyncStep, now: int, out: _Out) -> Connection:
    if conn.state is not ConnState.SYNCHRONIZING or not conn.sync_steps or conn.sync_steps[0] is not step:
        return conn  # stale: a step of an earlier attempt, or one already retried and answered
    if step is SyncStep.MARKET_DATA:
        conn = replace(conn, resubscribe=False)
    return _start_steps(conn, conn.sync_steps[1:], now, out)


def _raise_floor(conn: Connection, floor: int) -> Connection:
    return conn if floor <= conn.next_id else replace(conn, next_id=floor)


def _count(conn: Connection, code: int, out: _Out) -> Connection:
    counts = dict(conn.error_counts)
    n = counts.get(code, 0) + 1
    counts[code] = n
    every = conn.config.error_alert_after
    if code not in _QUIET and n >= every and n % every == 0 and ((n // every) & (n // every - 1)) == 0:
        level = AlertLevel.ERROR if code in LINK_LOST else AlertLevel.WARNING
        out(Alert(level=level, text=f"IB code {code} came {n} times in a row", code=code))
    return replace(conn, error_counts=tuple(sorted(counts.items())))


def _forget(conn: Connection, codes: frozenset[int]) -> Connection:
    return replace(conn, error_counts=tuple((c, n) for c, n in conn.error_counts if c not in codes))


def _on_code(conn: Connection, ev: BrokerCode, out: _Out) -> Connection:
    now, code, kind = ev.at_ns, ev.code, classify(ev.code)
    conn = _count(conn, code, out)
    label = f"IB {code}: {ev.text}" if ev.text else f"IB {code}"
    if kind is CodeClass.LINK_LOST:
        if conn.state in (ConnState.SYNCHRONIZING, ConnState.READY):
            out(Alert(level=AlertLevel.WARNING, text=f"API link lost ({label})", code=code))
            conn = replace(conn, link_lost=True, sync_steps=(), step_deadline_ns=None, step_retries=0)
            return _move(conn, ConnState.DEGRADED, now, out, "API link lost", code)
        if conn.state is ConnState.CONNECTING:
            return replace(conn, link_lost=True)  # applied when nextValidId arrives
        return conn
    if kind in (CodeClass.LINK_RESTORED_DATA_LOST, CodeClass.LINK_RESTORED_DATA_KEPT):
        conn = _forget(conn, LINK_LOST)
        data_lost = kind is CodeClass.LINK_RESTORED_DATA_LOST
        conn = replace(conn, link_lost=False, resubscribe=conn.resubscribe or data_lost)
        if conn.state in _SOCKET_UP:
            why = "API link restored, data lost" if data_lost else "API link restored, data kept"
            out(Alert(level=AlertLevel.INFO, text=f"{why} ({label})", code=code))
            return _synchronize(conn, now, out, why, code, with_order_ids=True)
        return conn
    if kind is CodeClass.SOCKET_PORT_RESET:
        if conn.state is ConnState.DISCONNECTED:
            return conn
        return _lose_socket(conn, now, out, f"TWS reset its socket port ({label})", close=True,
                            code=code, level=AlertLevel.WARNING)
    if kind is CodeClass.CLIENT_ID_IN_USE:
        text = (f"client id {conn.config.client_id} is already in use at TWS; backing off "
                f"({label})")
        if conn.state is ConnState.DISCONNECTED:
            out(Alert(level=AlertLevel.ERROR, text=text, code=code))
            return conn
        return _lose_socket(conn, now, out, text, close=True, code=code, level=AlertLevel.ERROR)
    if kind is CodeClass.SOCKET_ERRORS:
        if conn.state is ConnState.DISCONNECTED:
            return conn
        return _lose_socket(conn, now, out, f"socket error ({label})", close=True, code=code,
                            level=None if conn.state is ConnState.CONNECTING else AlertLevel.WARNING)
    if kind in (CodeClass.DATA_FARM_DOWN, CodeClass.DATA_FARM_INACTIVE, CodeClass.DATA_FARM_OK):
        farm = FARM_OF[code]
        if kind is CodeClass.DATA_FARM_OK:
            conn = _forget(conn, frozenset(c for c, f in FARM_OF.items() if f == farm))
            farms = conn.degraded_farms - {farm}
        else:
            farms = conn.degraded_farms | {farm}
        if farms != conn.degraded_farms:
            out(PublishDataHealth(degraded_farms=farms, code=code, reason=label))
            conn = replace(conn, degraded_farms=farms)
        return conn
    if kind is CodeClass.PACING:
        rate = max(1, conn.pacing_msgs_per_s // 2)
        out(Alert(level=AlertLevel.ERROR,
                  text=f"IB pacing violation ({label}): outbound rate lowered to {rate}/s", code=code),
            ThrottleOutbound(rate_per_s=rate))
        return replace(conn, pacing_msgs_per_s=rate)
    if kind is CodeClass.DUPLICATE_ORDER_ID:
        if ev.req_id >= 0:
            conn = _raise_floor(conn, ev.req_id + 1)
        out(Alert(level=AlertLevel.WARNING,
                  text=f"duplicate order id {ev.req_id}; next order id {conn.next_id}", code=code))
        return conn
    if kind is CodeClass.DATA_ENTITLEMENT and error_count(conn, code) == 1:
        out(Alert(level=AlertLevel.WARNING, text=f"market-data entitlement ({label})", code=code))
    return conn


def _on_tick(conn: Connection, now: int, out: _Out) -> Connection:
    c = conn.config
    if conn.state is ConnState.DISCONNECTED and conn.wanted:
        if conn.reconnect_at_ns is None:
            conn = _schedule_reconnect(conn, now, out)
        elif now >= conn.reconnect_at_ns:
            conn = _open(conn, now, out, f"reconnect attempt {conn.attempt}")
    elif conn.state is ConnState.CONNECTING:
        if conn.connect_deadline_ns is not None and now >= conn.connect_deadline_ns:
            conn = _lose_socket(conn, now, out, "connect timed out", close=True)
    elif conn.state in _SOCKET_UP:
        if conn.heartbeat_sent_ns is not None and now >= conn.heartbeat_sent_ns + c.heartbeat_timeout_ns:
            conn = _lose_socket(
                conn, now, out, f"no heartbeat answer for {(now - conn.heartbeat_sent_ns) / _S:.1f} s",
                close=True, level=AlertLevel.ERROR)
        else:
            if conn.step_deadline_ns is not None and now >= conn.step_deadline_ns:
                conn = _step_timed_out(conn, now, out)
            if conn.state in _SOCKET_UP and conn.heartbeat_sent_ns is None \
                    and conn.heartbeat_due_ns is not None and now >= conn.heartbeat_due_ns:
                out(SendHeartbeat())
                conn = replace(conn, heartbeat_sent_ns=now, heartbeat_due_ns=now + c.heartbeat_interval_ns)
    return _ladder(conn, now, out)


def _step_timed_out(conn: Connection, now: int, out: _Out) -> Connection:
    step = conn.sync_steps[0]
    if conn.step_retries < conn.config.sync_step_retries:
        out(Alert(level=AlertLevel.WARNING,
                  text=f"sync step {step.value} timed out; retry {conn.step_retries + 1}"),
            _step_command(step))
        return replace(conn, step_retries=conn.step_retries + 1,
                       step_deadline_ns=now + conn.config.sync_step_timeout_ns)
    return _lose_socket(conn, now, out,
                        f"sync step {step.value} timed out {conn.step_retries + 1} times; reconnecting",
                        close=True, level=AlertLevel.ERROR)


def _ladder(conn: Connection, now: int, out: _Out) -> Connection:
    if not conn.wanted or conn.down_since_ns is None:
        return conn
    c, down = conn.config, now - conn.down_since_ns
    if conn.escalation < 1 and down >= c.outage_alert_ns:
        out(Alert(level=AlertLevel.ERROR,
                  text=f"broker connection not ready for {down / _S:.0f} s ({conn.state.value})"))
        conn = replace(conn, escalation=1)
    if conn.escalation < 2 and down >= c.outage_halt_ns:
        text = f"broker connection not ready for {down / _S:.0f} s ({conn.state.value}); trading halted"
        out(Alert(level=AlertLevel.CRITICAL, text=text), HaltTrading(reason=text))
        conn = replace(conn, escalation=2)
    return conn


def decide(conn: Connection, event: Event) -> Decision:
    """Return the connection after `event` and the commands the shell must carry out, in order."""
    out = _Out()
    match event:
        case Tick(now_ns=now):
            conn = _on_tick(conn, now, out)
        case ConnectRequested(at_ns=now):
            if conn.state is ConnState.DISCONNECTED:
                conn = _open(replace(conn, wanted=True), now, out, "connect requested")
            else:
                conn = replace(conn, wanted=True)
        case DisconnectRequested(at_ns=now, reason=reason):
            if conn.state is not ConnState.DISCONNECTED:
                out(CloseSocket(reason=reason or "disconnect requested"))
            conn = replace(_socket_gone(conn), wanted=False, reconnect_at_ns=None,
                           down_since_ns=None, escalation=0)
            conn = _move(conn, ConnState.DISCONNECTED, now, out, reason or "disconnect requested")
        case SocketConnected(server_version=version):
            if conn.state is ConnState.CONNECTING:
                conn = replace(conn, server_version=version)
        case SocketFailed(at_ns=now, reason=reason) | SocketClosed(at_ns=now, reason=reason):
            if conn.state is ConnState.CONNECTING:
                conn = _lose_socket(conn, now, out, reason, close=False)
            elif conn.state in _SOCKET_UP:
                conn = _lose_socket(conn, now, out, reason, close=False, level=AlertLevel.WARNING)
        case NextValidId(at_ns=now, order_id=order_id):
            conn = _raise_floor(conn, order_id)
            if conn.state is ConnState.CONNECTING:
                conn = replace(conn, connect_deadline_ns=None, resubscribe=True,
                               heartbeat_due_ns=now + conn.config.heartbeat_interval_ns)
                if conn.link_lost:
                    conn = _move(conn, ConnState.DEGRADED, now, out, "connected; API link lost")
                else:
                    conn = _synchronize(conn, now, out, "connected", 0, with_order_ids=False)
            else:
                conn = _step_done(conn, SyncStep.ORDER_IDS, now, out)
        case OrderIdSeen(order_id=order_id):
            conn = _raise_floor(conn, order_id + 1)
        case SyncStepDone(at_ns=now, step=step):
            conn = _step_done(conn, step, now, out)
        case BrokerCode():
            conn = _on_code(conn, event, out)
        case HeartbeatSent(at_ns=now):
            if conn.state in _SOCKET_UP and conn.heartbeat_sent_ns is not None \
                    and now > conn.heartbeat_sent_ns:
                conn = replace(conn, heartbeat_sent_ns=now)
        case HeartbeatAnswered(at_ns=now):
            if conn.heartbeat_sent_ns is not None:
                conn = replace(conn, heartbeat_sent_ns=None, last_heartbeat_ns=now)
        case _:
            raise InvalidConnectionEvent(f"{type(event).__name__} is not a connection event")
    return conn, tuple(out.commands)
