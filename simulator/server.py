"""The TWS simulator: an asyncio loopback server the unmodified ibapi client trades against.

One `Simulator` owns the broker's whole state — the matching book (`core/matching.py`), the
account, the market models, every execution of the session — and it outlives client
connections, as TWS does. Each socket is a `Session`. All state changes happen on the event
loop's thread; `SimulatorThread` runs the loop in a background thread and is the Python API that
tests, benchmarks and `bootstrap.py simulator` use (faults included).

Behaviour a client sees, in TWS's order (tws-protocol.md §2, §7):

* Handshake: the version reply goes alone; nothing else until START_API. Then managedAccounts,
  nextValidId, the farm notices 2104/2106/2158, and openOrder + orderStatus for the client's
  orders that are still working (TWS re-sends them on every connect).
* A second connection with a client id in use gets 326 and is closed.
* Pacing: more than `pacing_msgs_per_s` messages in one second from a client → error 100 and the
  excess messages are dropped unprocessed; `pacing_strikes` violations within ten seconds and the
  client is disconnected, as TWS eventually does. `pacing_msgs_per_s = 0` switches pacing off.
* Bad input never takes the server down: a broken frame or handshake drops that client; a
  malformed message gets error 320 naming the request and is skipped; a request the simulator
  does not serve (an unknown id included) gets error 321.
* Market time runs on an accelerated clock (market seconds per wall second) or a stepped clock
  (`SimulatorThread.step`). Quotes come from one seeded random walk (or a replayed CSV) per
  symbol; every quote is matched against the working orders of its symbol whether or not a client
  is connected, so fills keep happening during an outage and are recovered via reqExecutions.
* DAY orders expire when the New York calendar date of market time changes (the models trade
  around the clock).
* Every new order is written to `order_log` with what the broker knew as it arrived (its position
  in the symbol, the working orders, the quote), so a check can judge each order by the state it
  met; the market can be frozen (no quotes, no market fills) to compare states at rest.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any, Final, Literal

from loguru import logger

from core import matching
from core.matching import BrokerOrder, CommissionModel, ErrorEvent, FillEvent, OpenOrderEvent, StatusEvent
from core.types import OrderType, Quote, Side, TimeInForce
from simulator import account as acct
from simulator import market
from simulator.market import (
    NS,
    NY,
    AcceleratedClock,
    BarReplayModel,
    HistoricalRequestError,
    MarketDataError,
    RandomWalkModel,
    RealTimeBarAggregator,
    ReplayParams,
    SteppedClock,
    StreamState,
    WalkParams,
    symbol_key,
)
from simulator.wire import (
    MAX_SERVER_VERSION,
    CancelAccountSummary,
    CancelHistoricalData,
    CancelMktData,
    CancelOrder,
    CancelPositions,
    CancelRealTimeBars,
    Contract,
    ContractDetails,
    Encoder,
    ExecutionReport,
    FrameError,
    FrameParser,
    HandshakeError,
    HistoricalBar,
    OrderParams,
    PlaceOrder,
    ReqAccountSummary,
    ReqAllOpenOrders,
    ReqAutoOpenOrders,
    ReqCompletedOrders,
    ReqContractDetails,
    ReqCurrentTime,
    ReqExecutions,
    ReqGlobalCancel,
    ReqHistoricalData,
    ReqIds,
    ReqManagedAccts,
    ReqMarketDataType,
    ReqMktData,
    ReqOpenOrders,
    ReqPositions,
    ReqRealTimeBars,
    StartApi,
    Unknown,
    UnsupportedRequest,
    WireError,
    decode_request,
    negotiate,
    parse_handshake,
    uses_protobuf,
    version_reply,
)

# IB tick types (tws-protocol.md §5.2).
BID_SIZE, BID, ASK, ASK_SIZE, LAST, LAST_SIZE, VOLUME = 0, 1, 2, 3, 4, 5, 8

# IB's codes and texts for what the simulator reports on its own.
NO_SECURITY_DEFINITION: Final = 200
ERROR_READING_REQUEST: Final = 320
ERROR_VALIDATING_REQUEST: Final = 321
CLIENT_ID_IN_USE: Final = 326
MAX_RATE_EXCEEDED: Final = 100
LINK_LOST, LINK_RESTORED_DATA_LOST, LINK_RESTORED_DATA_KEPT = 1100, 1101, 1102
FARM_NOTICES: Final = (
    (2104, "Market data farm connection is OK:usfarm"),
    (2106, "HMDS data farm connection is OK:ushmds"),
    (2158, "Sec-def data farm connection is OK:secdefnj"),
)
LINK_TEXT: Final = {
    LINK_LOST: "Connectivity between IB and Trader Workstation has been lost.",
    LINK_RESTORED_DATA_LOST: "Connectivity between IB and Trader Workstation has been restored - data lost.",
    LINK_RESTORED_DATA_KEPT: "Connectivity between IB and Trader Workstation has been restored - data maintained.",
}

# Errors that refuse a request (not news about an order): they answer the client that sent it.
_ANSWER_CODES: Final = frozenset({matching.DUPLICATE_ORDER_ID, matching.MODIFY_MISMATCH, matching.MODIFY_FAILED,
                                  matching.CANCEL_UNKNOWN, matching.CANNOT_CANCEL})
_ORDER_TYPES: Final = {t.value: t for t in OrderType}
_TIFS: Final = {t.value: t for t in TimeInForce}
_SIDES: Final = {"BUY": Side.BUY, "SELL": Side.SELL, "SSHORT": Side.SELL}
_PRIMARY: Final = {"SPY": "ARCA", "QQQ": "NASDAQ", "IWM": "ARCA"}


@dataclass(frozen=True, slots=True, kw_only=True)
class SymbolSpec:
    """One tradable stock: its random-walk parameters, or a CSV of bars to replay instead."""

    symbol: str
    walk: WalkParams = field(default_factory=WalkParams)
    bars_csv: str = ""
    currency: str = "USD"


DEFAULT_SYMBOLS: Final = tuple(SymbolSpec(symbol=s) for s in ("AAPL", "MSFT", "SPY", "AMZN", "NVDA"))


@dataclass(frozen=True, slots=True, kw_only=True)
class SimulatorConfig:
    """How the simulator runs; the defaults behave like a paper TWS on loopback."""

    host: str = "127.0.0.1"
    port: int = 0                                   # 0: pick a free port
    control_port: int | None = None                 # JSON-lines fault control; None: off, 0: free port
    seed: int = 1
    speed: float = 1.0                              # market seconds per wall second
    clock: Literal["accelerated", "stepped"] = "accelerated"
    start_ns: int = market.DEFAULT_MARKET_START_NS
    wire: Literal["protobuf", "text"] = "protobuf"
    max_server_version: int = MAX_SERVER_VERSION
    symbols: tuple[SymbolSpec, ...] = DEFAULT_SYMBOLS
    account_id: str = "DU1234567"
    starting_cash: Decimal = acct.STARTING_CASH
    commission: CommissionModel = CommissionModel()
    pacing_msgs_per_s: int = 50                     # 0: off
    pacing_strikes: int = 3                         # violations within 10 s before a disconnect
    loop_interval_s: float = 0.01                   # wall cadence of the accelerated market loop
    # Spread the symbols' quote times over the quote interval (symbol i of n quotes i/n of an
    # interval later), as a real feed does; False: every symbol quotes at the same instants.
    stagger_quotes: bool = False
    max_write_buffer: int = 64 << 20                # a client this far behind is dropped
    first_order_id: int = 1


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderRecord:
    """A new order as it reached the broker, with the broker's state just before it (for after-the-fact checks)."""

    wall_s: float                # the simulator's wall clock (monotonic seconds)
    market_ns: int
    order_id: int
    client_id: int
    order_ref: str
    symbol: str
    side: Side
    quantity: Decimal
    order_type: OrderType
    limit_price: Decimal | None
    stop_price: Decimal | None
    parent_id: int
    oca_group: str
    transmit: bool
    position: Decimal            # the account's position in the symbol before this order
    working_orders: int          # orders not done in the book (every symbol) before this order
    bid: Decimal | None
    ask: Decimal | None
    last: Decimal | None


ORDER_LOG_SIZE: Final = 100_000  # the newest records kept


@dataclass(frozen=True, slots=True)
class _Exec:
    fill: FillEvent
    time_text: str
    realized: Decimal


class Session:
    """One client socket: negotiated version, encoder, subscriptions, pacing window."""

    _ids = itertools.count(1)

    def __init__(self, sim: "Simulator", writer: asyncio.StreamWriter) -> None:
        self.sim = sim
        self.writer = writer
        self.n = next(self._ids)
        self.server_version = 0
        self.encoder: Encoder | None = None
        self.client_id: int | None = None
        self.started = False
        self.closed = False
        self.mkt: dict[int, str] = {}                        # req id -> symbol
        self.rtb: dict[int, RealTimeBarAggregator] = {}      # req id -> 5 s bar builder
        self.positions_sub = False
        self.out: list[bytes] = []
        self.held: list[bytes] = []                          # order events during a link outage
        self.pace: deque[float] = deque()
        self.strikes: deque[float] = deque()
        self.warned_at = -1.0

    def queue(self, data: bytes) -> None:
        if not self.closed:
            if not self.out:
                self.sim._dirty.append(self)
            self.out.append(data)

    def flush(self) -> None:
        if self.out and not self.closed:
            self.writer.write(b"".join(self.out))
            self.out.clear()
            if self.writer.transport.get_write_buffer_size() > self.sim.config.max_write_buffer:
                logger.warning("simulator: client {} is too slow to read; dropping it", self.client_id)
                self.close()
        else:
            self.out.clear()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.out.clear()
            self.writer.close()


class Simulator:
    """The broker: state, market, sessions, faults; every method runs on the event loop's thread."""

    def __init__(self, config: SimulatorConfig = SimulatorConfig(), *,
                 wall: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self.wall = wall
        if config.clock == "stepped":
            self.clock: SteppedClock | AcceleratedClock = SteppedClock(config.start_ns)
        else:
            self.clock = AcceleratedClock(config.speed, config.start_ns, wall=wall)
        self.book = matching.new_book(config.commission)
        self.account = acct.open_account(config.account_id, config.starting_cash)
        self.specs = {s.symbol: s for s in config.symbols}
        self.models: dict[str, RandomWalkModel | BarReplayModel] = {}
        self.streams: dict[str, StreamState] = {}
        self.quotes: dict[str, Quote] = {}
        self.booked: dict[str, int] = {}                     # symbol -> ts of the quote the book has
        n = len(config.symbols)
        for i, spec in enumerate(config.symbols):
            if spec.bars_csv:
                model: RandomWalkModel | BarReplayModel = BarReplayModel(
                    spec.symbol, spec.bars_csv, ReplayParams(start_ns=config.start_ns))
            else:
                walk = spec.walk
                if config.stagger_quotes:
                    walk = replace(walk, origin_ns=walk.origin_ns + i * walk.quote_interval_ns // n)
                model = RandomWalkModel(spec.symbol, walk, seed=config.seed)
            self.models[spec.symbol] = model
            self.streams[spec.symbol] = model.initial_state(config.start_ns)
        self.sessions: list[Session] = []
        self.executions: list[_Exec] = []
        self.orders_per_ref: Counter[str] = Counter()
        self.next_id_floor = config.first_order_id
        self._dirty: list[Session] = []
        self._day = self._ny_date(self.clock.now_ns())
        self._server: asyncio.base_events.Server | None = None
        self._control: asyncio.base_events.Server | None = None
        self._tasks: list[asyncio.Task[Any]] = []
        self._serving: set[asyncio.Task[Any]] = set()
        self.port = config.port
        self.control_port = config.control_port
        # faults
        self.refusing_until = 0.0
        self.link_down = False
        self.silenced: set[str] = set()
        self.duplicate_statuses = 0
        self.fill_after_cancel = 0
        self.commission_lag_s = 0.0  # live commission reports follow their fill this much later
        self.squeeze: tuple[int, float] | None = None    # (msgs/s per client, until this wall time)
        self.frozen: tuple[int, float] | None = None     # (market ns, wall time) the market stopped at
        self.stats: Counter[str] = Counter()
        self.order_log: deque[OrderRecord] = deque(maxlen=ORDER_LOG_SIZE)

    # ---------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        """Listen on the configured loopback port (and the control port) and start the market."""
        self._server = await asyncio.start_server(self._serve, self.config.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        if self.config.control_port is not None:
            from simulator.control import serve_control
            self._control = await serve_control(self, self.config.host, self.config.control_port)
            self.control_port = self._control.sockets[0].getsockname()[1]
        if isinstance(self.clock, AcceleratedClock):
            self._tasks.append(asyncio.get_running_loop().create_task(self._market_loop()))
        logger.info("simulator: listening on {}:{} ({} wire, {} clock)", self.config.host, self.port,
                    self.config.wire, self.config.clock)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for server in (self._server, self._control):
            if server is not None:
                server.close()
        for s in list(self.sessions):
            s.close()
        # A closed socket ends its session task by itself (EOF); cancelling it instead makes asyncio's
        # stream callback log a CancelledError traceback on Python 3.11.
        serving = list(self._serving)
        if serving:
            _, stuck = await asyncio.wait(serving, timeout=1.0)
            for task in stuck:
                task.cancel()
        pending = [*self._tasks, *self._serving]
        if pending:
            await asyncio.wait(pending, timeout=2.0)

    # ---------------------------------------------------------------- market

    @staticmethod
    def _ny_date(ns: int) -> Any:
        return datetime.fromtimestamp(ns / NS, NY).date()

    def now_ns(self) -> int:
        return self.frozen[0] if self.frozen is not None else self.clock.now_ns()

    async def _market_loop(self) -> None:
        while True:
            try:
                if self.frozen is None:
                    self.advance(self.clock.now_ns())
            except Exception:  # the market must never stop because of one bad step
                logger.exception("simulator: market step failed")
            await asyncio.sleep(self.config.loop_interval_s)

    def advance(self, to_ns: int) -> int:
        """Generate every symbol's quotes up to market time `to_ns` and process them; return the count."""
        count = 0
        for symbol, model in self.models.items():
            if symbol in self.silenced and not self.book.working.get(symbol):
                self.streams[symbol] = model.skip_to(self.streams[symbol], to_ns)
                continue
            self.streams[symbol], quotes = model.step_to(self.streams[symbol], to_ns)
            for q in quotes:
                self._on_quote(q)
            count += len(quotes)
        day = self._ny_date(to_ns)
        if day != self._day:
            self._day = day
            self.book, events = matching.end_of_day(self.book, to_ns)
            self._dispatch(events, None)
        self.flush()
        return count

    def _on_quote(self, q: Quote) -> None:
        symbol = q.symbol
        self.quotes[symbol] = q
        if self.book.working.get(symbol):
            self._book_quote(symbol)
        if symbol in self.silenced or self.link_down:
            return
        for s in self.sessions:
            if s.mkt and s.started:
                enc = s.encoder
                for req_id, sym in s.mkt.items():
                    if sym == symbol:
                        s.queue(self._tick_bytes(enc, req_id, q))
            if s.rtb:
                for req_id, agg in s.rtb.items():
                    if agg.symbol == symbol:
                        for bar in agg.feed(q):
                            s.queue(s.encoder.real_time_bar(
                                req_id=req_id, time=bar.ts_ns // NS, open=bar.open, high=bar.high,
                                low=bar.low, close=bar.close, volume=bar.volume, wap=bar.wap,
                                count=bar.count))
        self.stats["quotes"] += 1

    @staticmethod
    def _tick_bytes(enc: Encoder, req_id: int, q: Quote) -> bytes:
        parts = []
        if q.bid is not None:
            parts.append(enc.tick_price(req_id=req_id, tick_type=BID, price=q.bid, size=q.bid_size))
        if q.ask is not None:
            parts.append(enc.tick_price(req_id=req_id, tick_type=ASK, price=q.ask, size=q.ask_size))
        if q.last is not None:
            parts.append(enc.tick_price(req_id=req_id, tick_type=LAST, price=q.last, size=q.last_size))
        parts.append(enc.tick_size(req_id=req_id, tick_type=VOLUME, size=q.volume))
        return b"".join(parts)

    def _book_quote(self, symbol: str) -> None:
        """Give the book the symbol's latest quote (the book sees quotes only while it needs them)."""
        q = self.quotes.get(symbol)
        if q is None or self.booked.get(symbol) == q.ts_ns:
            return
        self.booked[symbol] = q.ts_ns
        self.book, events = matching.on_quote(self.book, q, q.ts_ns)
        self.account = acct.mark(self.account, symbol, q.last) if q.last else self.account
        self._dispatch(events, None)

    # ---------------------------------------------------------------- contracts

    def contract(self, symbol: str) -> Contract:
        spec = self.specs[symbol]
        return Contract(con_id=symbol_key(symbol) % 900_000_000 + 10_000, symbol=symbol, sec_type="STK",
                        exchange="SMART", primary_exchange=_PRIMARY.get(symbol, "NASDAQ"),
                        currency=spec.currency, local_symbol=symbol, trading_class=symbol)

    def resolve(self, c: Contract) -> str | None:
        """Return the symbol a request's contract names, or None if the simulator has no such stock."""
        symbol = c.symbol or c.local_symbol
        if symbol not in self.specs:
            return None
        if c.sec_type not in ("", "STK") or (c.currency and c.currency != self.specs[symbol].currency):
            return None
        return symbol

    # ---------------------------------------------------------------- connections

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.wall() < self.refusing_until:
            writer.close()
            return
        session = Session(self, writer)
        self.sessions.append(session)
        task = asyncio.current_task()
        if task is not None:
            self._serving.add(task)
        try:
            await self._talk(session, reader)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass  # a cancelled session is the simulator stopping: nothing to report
        except (FrameError, HandshakeError) as exc:
            logger.info("simulator: dropping client {}: {}", session.client_id, exc)
            self.stats["protocol_drops"] += 1
        except Exception:
            logger.exception("simulator: client {} failed; dropping it", session.client_id)
            self.stats["internal_drops"] += 1
        finally:
            session.close()
            if session in self.sessions:
                self.sessions.remove(session)
            self._serving.discard(task)

    async def _talk(self, s: Session, reader: asyncio.StreamReader) -> None:
        buf = b""
        while (got := parse_handshake(buf)) is None:
            data = await reader.read(4096)
            if not data:
                return
            buf += data
            if len(buf) > 4096:
                raise HandshakeError("handshake longer than 4096 bytes")
        hello, used = got
        sv = negotiate(hello.lo, hello.hi, self.config.max_server_version, wire=self.config.wire)
        s.server_version = sv
        s.encoder = Encoder(sv, protobuf=uses_protobuf(sv, self.config.wire))
        now = datetime.fromtimestamp(self.now_ns() / NS, timezone.utc)
        s.writer.write(version_reply(sv, now.strftime("%Y%m%d %H:%M:%S") + " Greenwich Mean Time"))
        await s.writer.drain()
        frames = FrameParser()
        payloads = frames.feed(buf[used:])
        while not s.closed:
            for payload in payloads:
                if s.closed:
                    break
                self._receive(s, payload)
            self.flush()
            if s.closed:
                return
            data = await reader.read(65536)
            if not data:
                return
            payloads = frames.feed(data)

    def _receive(self, s: Session, payload: bytes) -> None:
        if self._paced_out(s):
            return
        try:
            request = decode_request(payload, s.server_version)
        except UnsupportedRequest as exc:
            self._error(s, exc.request_id if exc.request_id is not None else -1, ERROR_VALIDATING_REQUEST,
                        f"Error validating request: {exc}")
            return
        except WireError as exc:
            self.stats["malformed"] += 1
            self._error(s, exc.request_id if exc.request_id is not None else -1, ERROR_READING_REQUEST,
                        f"Error reading request: message id {exc.msg_id}: {exc}")
            return
        if not s.started and not isinstance(request, StartApi):
            self.stats["before_start_api"] += 1
            return
        handler = _HANDLERS.get(type(request))
        if handler is None:
            # A request the simulator does not serve (or an id nobody knows) is answered, never
            # silently dropped: a client waiting for its answer would wait forever.
            self.stats["unknown"] += 1
            msg_id = request.msg_id if isinstance(request, Unknown) else type(request).__name__
            self._error(s, -1, ERROR_VALIDATING_REQUEST,
                        f"Error validating request: message id {msg_id} is not supported by the simulator")
            return
        handler(self, s, request)

    def _paced_out(self, s: Session) -> bool:
        limit = self.config.pacing_msgs_per_s
        now = self.wall()
        if self.squeeze is not None:
            if now < self.squeeze[1]:
                limit = min(limit, self.squeeze[0]) if limit > 0 else self.squeeze[0]
            else:
                self.squeeze = None
        if limit <= 0:
            return False
        pace = s.pace
        pace.append(now)
        while pace and pace[0] <= now - 1.0:
            pace.popleft()
        if len(pace) <= limit:
            return False
        self.stats["paced_out"] += 1
        if now - s.warned_at >= 1.0:
            s.warned_at = now
            s.strikes.append(now)
            while s.strikes and s.strikes[0] <= now - 10.0:
                s.strikes.popleft()
            self._error(s, -1, MAX_RATE_EXCEEDED,
                        f"Max rate of messages per second has been exceeded:max={limit} rec={len(pace)} (001)")
            if len(s.strikes) >= self.config.pacing_strikes:
                logger.warning("simulator: client {} kept exceeding {} msg/s; disconnecting", s.client_id, limit)
                s.flush()
                s.close()
        return True

    def _error(self, s: Session | None, req_id: int, code: int, message: str) -> None:
        if s is not None and s.encoder is not None:
            s.queue(s.encoder.error(req_id=req_id, code=code, message=message,
                                    error_time_ms=int(time.time() * 1000)))

    def flush(self) -> None:
        dirty, self._dirty = self._dirty, []
        for s in dirty:
            s.flush()

    def session_of(self, client_id: int) -> Session | None:
        for s in self.sessions:
            if s.started and s.client_id == client_id and not s.closed:
                return s
        return None

    # ---------------------------------------------------------------- order events

    def next_order_id(self) -> int:
        used = max(self.book.max_order_id.values(), default=0)
        return max(used + 1, self.next_id_floor)

    def _order_params(self, o: BrokerOrder) -> OrderParams:
        trail = o.order_type is OrderType.TRAIL
        return OrderParams(
            action=o.side.value, total_quantity=o.quantity, order_type=o.order_type.value,
            lmt_price=o.limit_price,
            aux_price=o.trail_amount if trail else o.stop_price,
            trailing_percent=o.trail_percent,
            trail_stop_price=(o.trail_stop if o.trail_stop is not None else o.stop_price) if trail else None,
            tif=o.tif.value, parent_id=o.parent_id, transmit=o.transmit, oca_group=o.oca_group,
            oca_type=o.oca_type, order_ref=o.order_ref, account=o.account or self.account.account_id,
            client_id=o.client_id, perm_id=o.perm_id)

    def _owner(self, client_id: int, fallback: Session | None) -> Session | None:
        s = self.session_of(client_id)
        return s if s is not None else fallback

    def _send_order_event(self, s: Session | None, data: bytes) -> None:
        if s is None:
            return
        if self.link_down:
            s.held.append(data)
        else:
            s.queue(data)

    def _dispatch(self, events: Iterable[matching.Event], origin: Session | None) -> None:
        for ev in events:
            if isinstance(ev, StatusEvent):
                s = self._owner(ev.client_id, origin)
                if s is None:
                    continue
                data = s.encoder.order_status(
                    order_id=ev.order_id, status=ev.status, filled=ev.filled, remaining=ev.remaining,
                    avg_fill_price=ev.avg_fill_price, perm_id=ev.perm_id, parent_id=ev.parent_id,
                    last_fill_price=ev.last_fill_price, client_id=ev.client_id, why_held=ev.why_held)
                repeat = 1
                if self.duplicate_statuses > 0:
                    self.duplicate_statuses -= 1
                    repeat = 2
                for _ in range(repeat):
                    self._send_order_event(s, data)
            elif isinstance(ev, OpenOrderEvent):
                o = ev.order
                s = self._owner(o.client_id, origin)
                if s is not None:
                    self._send_order_event(s, s.encoder.open_order(
                        order_id=o.order_id, contract=self.contract(o.symbol), order=self._order_params(o),
                        status=o.status, commission=o.commission if o.commission else None,
                        commission_currency="USD" if o.commission else ""))
            elif isinstance(ev, FillEvent):
                self._on_fill(ev, origin)
            elif isinstance(ev, ErrorEvent):
                order = matching.get_order(self.book, ev.order_id)
                if ev.code in _ANSWER_CODES and origin is not None:
                    s = origin  # the refusal of a request goes to its sender, even for another client's id
                else:
                    s = self._owner(order.client_id, origin) if order is not None else origin
                if s is not None:
                    self._send_order_event(s, s.encoder.error(
                        req_id=ev.order_id, code=ev.code, message=ev.message,
                        error_time_ms=int(time.time() * 1000)))

    def _on_fill(self, fill: FillEvent, origin: Session | None) -> None:
        before = self.account.realized_pnl
        self.account = acct.apply_execution(self.account, fill)
        realized = self.account.realized_pnl - before
        when = datetime.fromtimestamp(fill.ts_ns / NS, NY)
        record = _Exec(fill=fill, time_text=when.strftime("%Y%m%d %H:%M:%S US/Eastern"), realized=realized)
        self.executions.append(record)
        self.stats["fills"] += 1
        s = self._owner(fill.client_id, origin)
        if s is not None and self.commission_lag_s > 0:
            # IB's commission report can lag its fill (field notes): the report follows on its own.
            self._send_order_event(s, self._exec_bytes(s, -1, record, with_commission=False))
            asyncio.get_running_loop().call_later(self.commission_lag_s, self._late_commission, s, record)
        elif s is not None:
            self._send_order_event(s, self._exec_bytes(s, -1, record))
        for p in self.sessions:
            if p.positions_sub and p.started:
                self._send_position(p, fill.symbol)

    def _exec_bytes(self, s: Session, req_id: int, e: _Exec, *, with_commission: bool = True) -> bytes:
        f = e.fill
        report = ExecutionReport(
            order_id=f.order_id, exec_id=f.exec_id, time=e.time_text, account=f.account or self.account.account_id,
            exchange=_PRIMARY.get(f.symbol, "NASDAQ"), side="BOT" if f.side is Side.BUY else "SLD",
            shares=f.quantity, price=f.price, perm_id=f.perm_id, client_id=f.client_id, cum_qty=f.cum_qty,
            avg_price=f.avg_price, order_ref=f.order_ref)
        details = s.encoder.exec_details(req_id=req_id, contract=self.contract(f.symbol), execution=report)
        return details + self._commission_bytes(s, e) if with_commission else details

    def _commission_bytes(self, s: Session, e: _Exec) -> bytes:
        return s.encoder.commission_and_fees_report(exec_id=e.fill.exec_id, commission=e.fill.commission,
                                                    currency="USD", realized_pnl=e.realized if e.realized else None)

    def _late_commission(self, s: Session, e: _Exec) -> None:
        self._send_order_event(s, self._commission_bytes(s, e))
        self.flush()

    def _mark_to_market(self) -> None:
        """Mark every holding at its symbol's latest trade: the book (and its marks) sees quotes only while it has orders."""
        prices = {}
        for h in self.account.holdings:
            q = self.quotes.get(h.symbol)
            if q is not None and q.last:
                prices[h.symbol] = q.last
        if prices:
            self.account = acct.mark_many(self.account, prices)

    def _send_position(self, s: Session, symbol: str) -> None:
        h = acct.holding(self.account, symbol)
        s.queue(s.encoder.position(account=self.account.account_id, contract=self.contract(symbol),
                                   position=h.quantity, avg_cost=h.avg_cost))

    # ---------------------------------------------------------------- request handlers

    def _start_api(self, s: Session, r: StartApi) -> None:
        if s.started:
            return
        if self.session_of(r.client_id) is not None:
            self._error(s, -1, CLIENT_ID_IN_USE,
                        "Unable to connect as the client id is already in use. Retry with a unique client id.")
            s.flush()
            s.close()
            return
        s.client_id = r.client_id
        s.started = True
        enc = s.encoder
        s.queue(enc.managed_accounts(accounts=self.account.account_id))
        s.queue(enc.next_valid_id(order_id=self.next_order_id()))
        for code, text in FARM_NOTICES:
            self._error(s, -1, code, text)
        for o in matching.open_orders(self.book, r.client_id):
            self._echo_open(s, o)
        self.stats["connections"] += 1

    def _echo_open(self, s: Session, o: BrokerOrder) -> None:
        s.queue(s.encoder.open_order(order_id=o.order_id, contract=self.contract(o.symbol),
                                     order=self._order_params(o), status=o.status))
        s.queue(s.encoder.order_status(
            order_id=o.order_id, status=o.status, filled=o.filled, remaining=o.remaining,
            avg_fill_price=o.avg_fill_price, perm_id=o.perm_id, parent_id=o.parent_id,
            last_fill_price=o.last_fill_price, client_id=o.client_id, why_held=o.why_held))

    def _req_ids(self, s: Session, r: ReqIds) -> None:
        s.queue(s.encoder.next_valid_id(order_id=self.next_order_id()))

    def _req_current_time(self, s: Session, r: ReqCurrentTime) -> None:
        s.queue(s.encoder.current_time(epoch_seconds=self.now_ns() // NS))

    def _req_managed_accts(self, s: Session, r: ReqManagedAccts) -> None:
        s.queue(s.encoder.managed_accounts(accounts=self.account.account_id))

    def _req_market_data_type(self, s: Session, r: ReqMarketDataType) -> None:
        s.queue(s.encoder.market_data_type(req_id=-1, market_data_type=r.market_data_type))

    def _no_security(self, s: Session, req_id: int, c: Contract) -> None:
        self._error(s, req_id, NO_SECURITY_DEFINITION,
                    f"No security definition has been found for the request (symbol {c.symbol!r}, "
                    f"secType {c.sec_type!r}, currency {c.currency!r})")

    def _req_mkt_data(self, s: Session, r: ReqMktData) -> None:
        symbol = self.resolve(r.contract)
        if symbol is None:
            self._no_security(s, r.req_id, r.contract)
            return
        s.mkt[r.req_id] = symbol
        q = self.quotes.get(symbol)
        if q is not None and symbol not in self.silenced and not self.link_down:
            s.queue(self._tick_bytes(s.encoder, r.req_id, q))

    def _cancel_mkt_data(self, s: Session, r: CancelMktData) -> None:
        s.mkt.pop(r.req_id, None)

    def _req_real_time_bars(self, s: Session, r: ReqRealTimeBars) -> None:
        symbol = self.resolve(r.contract)
        if symbol is None:
            self._no_security(s, r.req_id, r.contract)
            return
        try:
            s.rtb[r.req_id] = RealTimeBarAggregator(symbol, r.what_to_show or "TRADES")
        except MarketDataError as exc:
            self._error(s, r.req_id, ERROR_VALIDATING_REQUEST, f"Error validating request: {exc}")

    def _cancel_real_time_bars(self, s: Session, r: CancelRealTimeBars) -> None:
        s.rtb.pop(r.req_id, None)

    def _req_contract_details(self, s: Session, r: ReqContractDetails) -> None:
        symbol = self.resolve(r.contract)
        if symbol is None:
            self._no_security(s, r.req_id, r.contract)
            return
        model = self.models[symbol]
        details = ContractDetails(
            contract=self.contract(symbol), market_name=symbol, min_tick=model.tick,
            order_types="LMT,MKT,STP,STP LMT,TRAIL", valid_exchanges="SMART,NASDAQ,NYSE,ARCA",
            long_name=f"{symbol} (simulated)", time_zone_id="US/Eastern", stock_type="COMMON")
        s.queue(s.encoder.contract_details(req_id=r.req_id, details=details))
        s.queue(s.encoder.contract_details_end(req_id=r.req_id))

    def _req_historical_data(self, s: Session, r: ReqHistoricalData) -> None:
        symbol = self.resolve(r.contract)
        if symbol is None:
            self._no_security(s, r.req_id, r.contract)
            return
        now = self.now_ns()
        try:
            end = min(now, parse_ib_time(r.end_date_time)) if r.end_date_time else now
            bars = market.historical_bars(self.models[symbol], symbol, end, r.duration, r.bar_size,
                                          r.what_to_show or "TRADES", use_rth=r.use_rth)
        except HistoricalRequestError as exc:
            self._error(s, r.req_id, exc.code, exc.message)
            return
        except (MarketDataError, ValueError) as exc:
            self._error(s, r.req_id, ERROR_VALIDATING_REQUEST, f"Error validating request: {exc}")
            return
        daily = market.parse_bar_size(r.bar_size).unit != "fixed"
        out = [HistoricalBar(date=format_bar_time(b.ts_ns, r.format_date, daily), open=b.open, high=b.high,
                             low=b.low, close=b.close, volume=b.volume, wap=b.wap, bar_count=b.count)
               for b in bars]
        start_text = format_bar_time(end - market.parse_duration(r.duration) * NS, 1, False)
        end_text = format_bar_time(end, 1, False)
        # Below server version 196 the end marker travels inside HISTORICAL_DATA itself.
        s.queue(s.encoder.historical_data(req_id=r.req_id, bars=out, start=start_text, end=end_text))
        s.queue(s.encoder.historical_data_end(req_id=r.req_id, start=start_text, end=end_text))

    def _cancel_historical_data(self, s: Session, r: CancelHistoricalData) -> None:
        pass  # keepUpToDate is not simulated: there is nothing running to cancel

    def _place_order(self, s: Session, r: PlaceOrder) -> None:
        symbol = self.resolve(r.contract)
        if symbol is None:
            self._no_security(s, r.order_id, r.contract)
            return
        p = r.order
        side = _SIDES.get(p.action.upper())
        order_type = _ORDER_TYPES.get(p.order_type.upper())
        tif = _TIFS.get((p.tif or "DAY").upper())
        problems = [f"{name} {value!r} is not supported" for name, value, ok in (
            ("action", p.action, side), ("orderType", p.order_type, order_type), ("tif", p.tif, tif)) if not ok]
        if problems or p.total_quantity is None:
            if p.total_quantity is None:
                problems.append("totalQuantity is missing")
            self._error(s, r.order_id, matching.ORDER_REJECTED, "Order rejected - reason:" + "; ".join(problems))
            return
        trail = order_type is OrderType.TRAIL
        order = BrokerOrder(
            order_id=r.order_id, client_id=s.client_id or 0, account=p.account or self.account.account_id,
            symbol=symbol, side=side, quantity=p.total_quantity, order_type=order_type,
            limit_price=p.lmt_price,
            stop_price=p.trail_stop_price if trail else p.aux_price,
            trail_amount=p.aux_price if trail and p.trailing_percent is None else None,
            trail_percent=p.trailing_percent if trail else None,
            tif=tif, parent_id=p.parent_id, oca_group=p.oca_group, oca_type=p.oca_type,
            transmit=p.transmit, order_ref=p.order_ref)
        is_new = matching.get_order(self.book, r.order_id) is None
        self._book_quote(symbol)
        now = self.now_ns()
        before = self._record(order, now) if is_new else None
        self.book, events = matching.place(self.book, order, now)
        if before is not None and matching.get_order(self.book, r.order_id) is not None:
            self.orders_per_ref[p.order_ref] += 1
            self.stats["orders"] += 1
            self.order_log.append(before)
        self._dispatch(events, s)

    def _record(self, order: BrokerOrder, now: int) -> OrderRecord:
        q = self.quotes.get(order.symbol)
        return OrderRecord(
            wall_s=self.wall(), market_ns=now, order_id=order.order_id, client_id=order.client_id,
            order_ref=order.order_ref, symbol=order.symbol, side=order.side, quantity=order.quantity,
            order_type=order.order_type, limit_price=order.limit_price, stop_price=order.stop_price,
            parent_id=order.parent_id, oca_group=order.oca_group, transmit=order.transmit,
            position=acct.holding(self.account, order.symbol).quantity,
            working_orders=len(matching.open_orders(self.book)),
            bid=q.bid if q else None, ask=q.ask if q else None, last=q.last if q else None)

    def _cancel_order(self, s: Session, r: CancelOrder) -> None:
        order = matching.get_order(self.book, r.order_id)
        now = self.now_ns()
        if self.fill_after_cancel and order is not None and order.client_id == s.client_id and not order.done \
                and order.remaining > 0 and order.status != matching.PENDING_SUBMIT:
            self.fill_after_cancel -= 1
            self._race_fill_after_cancel(s, order, now)
            return
        # Order ids belong to the client that placed them: another client's id is "not found" (10147).
        self.book, events = matching.cancel(self.book, r.order_id, now, client_id=s.client_id)
        self._dispatch(events, s)

    def _race_fill_after_cancel(self, s: Session, order: BrokerOrder, now: int) -> None:
        """Acknowledge the cancel, then report that the order had filled at the exchange first."""
        remaining = order.remaining
        self._send_order_event(s, s.encoder.order_status(
            order_id=order.order_id, status=matching.CANCELLED, filled=order.filled, remaining=remaining,
            avg_fill_price=order.avg_fill_price, perm_id=order.perm_id, parent_id=order.parent_id,
            last_fill_price=order.last_fill_price, client_id=order.client_id))
        self._send_order_event(s, s.encoder.error(  # held like every order event while the link is down
            req_id=order.order_id, code=matching.ORDER_CANCELLED, message="Order Canceled - reason:",
            error_time_ms=int(time.time() * 1000)))
        q = self.quotes.get(order.symbol)
        price = order.limit_price or (q.ask if order.side is Side.BUY else q.bid) if q else order.limit_price
        if price is None:
            price = order.stop_price or Decimal(1)
        self.book, events = matching.fill_now(self.book, order.order_id, price, now)
        self._dispatch(events, s)

    def _req_global_cancel(self, s: Session, r: ReqGlobalCancel) -> None:
        now = self.now_ns()
        for o in matching.open_orders(self.book):
            if not matching.get_order(self.book, o.order_id).done:
                self.book, events = matching.cancel(self.book, o.order_id, now)
                self._dispatch(events, s)

    def _req_open_orders(self, s: Session, r: ReqOpenOrders | ReqAllOpenOrders) -> None:
        client = None if isinstance(r, ReqAllOpenOrders) else s.client_id
        for o in matching.open_orders(self.book, client):
            self._echo_open(s, o)
        s.queue(s.encoder.open_order_end())

    def _req_auto_open_orders(self, s: Session, r: ReqAutoOpenOrders) -> None:
        pass  # no manual TWS orders exist in the simulator to bind

    def _req_completed_orders(self, s: Session, r: ReqCompletedOrders) -> None:
        for oid in sorted(self.book.orders):
            o = self.book.orders[oid]
            if o.done:
                s.queue(s.encoder.completed_order(
                    contract=self.contract(o.symbol), order=self._order_params(o), status=o.status,
                    filled=o.filled, completed_status=o.status))
        s.queue(s.encoder.completed_orders_end())

    def _req_positions(self, s: Session, r: ReqPositions) -> None:
        for symbol, _, _ in acct.positions(self.account):
            self._send_position(s, symbol)
        s.queue(s.encoder.position_end())
        s.positions_sub = True

    def _cancel_positions(self, s: Session, r: CancelPositions) -> None:
        s.positions_sub = False

    def _req_account_summary(self, s: Session, r: ReqAccountSummary) -> None:
        self._mark_to_market()
        for tag, (value, currency) in acct.summary(self.account, r.tags).items():
            s.queue(s.encoder.account_summary(req_id=r.req_id, account=self.account.account_id, tag=tag,
                                              value=value, currency=currency))
        s.queue(s.encoder.account_summary_end(req_id=r.req_id))

    def _cancel_account_summary(self, s: Session, r: CancelAccountSummary) -> None:
        pass  # summaries are sent once per request; nothing keeps streaming

    def _req_executions(self, s: Session, r: ReqExecutions) -> None:
        f = r.filter
        try:
            since = parse_ib_time(f.time) if f.time else None
        except ValueError as exc:
            self._error(s, r.req_id, ERROR_VALIDATING_REQUEST, f"Error validating request: execution filter time: {exc}")
            return
        for e in self.executions:
            fill = e.fill
            if f.client_id and fill.client_id != f.client_id:
                continue
            if f.symbol and fill.symbol != f.symbol:
                continue
            if f.side and f.side.upper() not in (fill.side.value, "BOT" if fill.side is Side.BUY else "SLD"):
                continue
            if f.account and (fill.account or self.account.account_id) != f.account:
                continue
            if f.sec_type and f.sec_type != "STK":
                continue
            if since is not None and fill.ts_ns < since:
                continue
            s.queue(self._exec_bytes(s, r.req_id, e))
        s.queue(s.encoder.exec_details_end(req_id=r.req_id))

    # ---------------------------------------------------------------- faults

    def drop(self, client_id: int | None = None) -> int:
        """Close the socket of `client_id` (every client if None) at once; return how many."""
        victims = [s for s in self.sessions if client_id is None or s.client_id == client_id]
        for s in victims:
            s.close()
        return len(victims)

    def refuse(self, seconds: float) -> None:
        """Act like a TWS restart: drop every client and refuse connections for `seconds` of wall time."""
        self.refusing_until = self.wall() + seconds
        self.drop()
        if self._server is not None:
            self._server.close()
            self._server = None
            asyncio.get_running_loop().call_later(seconds, self._reopen)

    def _reopen(self) -> None:
        async def reopen() -> None:
            for attempt in range(50):
                try:
                    self._server = await asyncio.start_server(self._serve, self.config.host, self.port)
                    return
                except OSError:
                    await asyncio.sleep(0.05 * (attempt + 1))
            logger.error("simulator: could not listen on port {} again", self.port)
        self._tasks.append(asyncio.get_running_loop().create_task(reopen()))

    def lose_link(self) -> None:
        """Send 1100 to every client; market data and order events stop until `restore_link`."""
        self.link_down = True
        for s in self.sessions:
            self._error(s, -1, LINK_LOST, LINK_TEXT[LINK_LOST])
        self.flush()

    def restore_link(self, data_kept: bool = False) -> None:
        """Send 1102 (data kept) or 1101 (data lost: market data subscriptions are dropped)."""
        self.link_down = False
        code = LINK_RESTORED_DATA_KEPT if data_kept else LINK_RESTORED_DATA_LOST
        for s in self.sessions:
            self._error(s, -1, code, LINK_TEXT[code])
            if not data_kept:
                s.mkt.clear()
                s.rtb.clear()
            for data in s.held:
                s.queue(data)
            s.held.clear()
        self.flush()

    def squeeze_pacing(self, msgs_per_s: int, seconds: float) -> None:
        """Let each client send at most `msgs_per_s` messages a second for `seconds` of wall time.

        IB's 50 msg/s is one budget for every API client of a TWS: another client taking its share
        leaves ours less, and the excess gets error 100 as usual (then a disconnect after the strikes).
        """
        if msgs_per_s < 1:
            raise ValueError(f"msgs_per_s must be >= 1, got {msgs_per_s!r}")
        self.squeeze = (msgs_per_s, self.wall() + seconds)

    def freeze(self, frozen: bool = True) -> None:
        """Stop market time (no quotes, no market fills; orders still work at the last quote), or let it run on.

        An accelerated clock resumes where it stopped, without the frozen interval's quotes.
        """
        if not isinstance(self.clock, AcceleratedClock):
            raise ValueError("freeze needs the accelerated clock (a stepped clock moves only when stepped)")
        if frozen and self.frozen is None:
            self.frozen = (self.clock.now_ns(), self.wall())
        elif not frozen and self.frozen is not None:
            self.clock.wall0 += self.wall() - self.frozen[1]
            self.frozen = None

    def set_reject_next(self, reason: str = matching.FAULT_REJECT_REASON) -> None:
        self.book = matching.with_reject_next(self.book, reason)

    def set_silenced(self, symbol: str, silenced: bool = True) -> None:
        if symbol not in self.specs:
            raise KeyError(f"unknown symbol {symbol!r}")
        (self.silenced.add if silenced else self.silenced.discard)(symbol)

    def snapshot(self) -> dict[str, Any]:
        """Return plain data about the broker's state, for tests, checks and the control command."""
        self._mark_to_market()
        return {
            "port": self.port,
            "clients": sorted(s.client_id for s in self.sessions if s.started and s.client_id is not None),
            "market_ns": self.now_ns(),
            "orders": len(self.book.orders),
            "open_orders": len(matching.open_orders(self.book)),
            "executions": len(self.executions),
            "orders_per_ref": dict(self.orders_per_ref),
            # market-data subscriptions per client: how many distinct symbols it receives ticks for
            "subscribed": {str(s.client_id): len(set(s.mkt.values())) for s in self.sessions
                           if s.started and not s.closed},
            "frozen": self.frozen is not None,
            "positions": {sym: str(q) for sym, q, _ in acct.positions(self.account)},
            "account": {k: v for k, (v, _) in acct.summary(self.account, (
                "NetLiquidation", "TotalCashValue", "RealizedPnL", "UnrealizedPnL")).items()},
            "stats": dict(self.stats),
        }


_HANDLERS: Final[dict[type, Callable[[Simulator, Session, Any], None]]] = {
    StartApi: Simulator._start_api,
    ReqIds: Simulator._req_ids,
    ReqCurrentTime: Simulator._req_current_time,
    ReqManagedAccts: Simulator._req_managed_accts,
    ReqMarketDataType: Simulator._req_market_data_type,
    ReqMktData: Simulator._req_mkt_data,
    CancelMktData: Simulator._cancel_mkt_data,
    ReqRealTimeBars: Simulator._req_real_time_bars,
    CancelRealTimeBars: Simulator._cancel_real_time_bars,
    ReqContractDetails: Simulator._req_contract_details,
    ReqHistoricalData: Simulator._req_historical_data,
    CancelHistoricalData: Simulator._cancel_historical_data,
    PlaceOrder: Simulator._place_order,
    CancelOrder: Simulator._cancel_order,
    ReqGlobalCancel: Simulator._req_global_cancel,
    ReqOpenOrders: Simulator._req_open_orders,
    ReqAllOpenOrders: Simulator._req_open_orders,
    ReqAutoOpenOrders: Simulator._req_auto_open_orders,
    ReqCompletedOrders: Simulator._req_completed_orders,
    ReqPositions: Simulator._req_positions,
    CancelPositions: Simulator._cancel_positions,
    ReqAccountSummary: Simulator._req_account_summary,
    CancelAccountSummary: Simulator._cancel_account_summary,
    ReqExecutions: Simulator._req_executions,
}


def parse_ib_time(text: str) -> int:
    """Return epoch ns of an IB time string: "yyyymmdd hh:mm:ss [tz]" (New York if no zone) or "yyyymmdd-hh:mm:ss" (UTC).

    Raise ValueError for anything else, an unknown zone included.
    """
    from zoneinfo import ZoneInfo

    text = text.strip()
    if "-" in text and " " not in text:
        dt = datetime.strptime(text, "%Y%m%d-%H:%M:%S").replace(tzinfo=timezone.utc)
    else:
        parts = text.split()
        if not parts:
            raise ValueError("empty time")
        clock = parts[1] if len(parts) > 1 else "00:00:00"
        try:
            zone = ZoneInfo(parts[2]) if len(parts) > 2 else NY
        except (KeyError, ValueError, OSError, ImportError):  # ZoneInfo's ways of saying "no such zone"
            raise ValueError(f"unknown time zone {parts[2]!r}") from None
        dt = datetime.strptime(f"{parts[0]} {clock}", "%Y%m%d %H:%M:%S").replace(tzinfo=zone)
    return int(dt.timestamp()) * NS


def format_bar_time(ts_ns: int, format_date: int, daily: bool) -> str:
    """Return a bar's date as TWS sends it: formatDate 2 → epoch seconds; else New York local text."""
    if format_date == 2 and not daily:
        return str(ts_ns // NS)
    dt = datetime.fromtimestamp(ts_ns / NS, NY)
    return dt.strftime("%Y%m%d") if daily else dt.strftime("%Y%m%d %H:%M:%S US/Eastern")


class SimulatorThread:
    """Runs a Simulator on its own event loop in a daemon thread; the Python API for tests and tools."""

    def __init__(self, config: SimulatorConfig = SimulatorConfig(), *,
                 wall: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self.loop = asyncio.new_event_loop()
        self.sim = Simulator(config, wall=wall)
        self._thread = threading.Thread(target=self._run, name="tws-simulator", daemon=True)
        self._ready = threading.Event()
        self._error: BaseException | None = None

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self.sim.start())
        except BaseException as exc:  # reported to start()
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        self.loop.run_forever()
        self.loop.run_until_complete(self.sim.stop())
        self.loop.close()

    def start(self, timeout: float = 10.0) -> "SimulatorThread":
        self._thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError("simulator did not start listening in time")
        if self._error is not None:
            raise self._error
        return self

    def stop(self, timeout: float = 10.0) -> None:
        if self._thread.is_alive():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout)

    def __enter__(self) -> "SimulatorThread":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        return self.sim.port

    @property
    def control_port(self) -> int | None:
        return self.sim.control_port

    def call(self, fn: Callable[..., Any], *args: Any, timeout: float = 10.0, **kwargs: Any) -> Any:
        """Run `fn(*args, **kwargs)` on the simulator's loop thread and return its result."""
        async def run() -> Any:
            result = fn(*args, **kwargs)
            self.sim.flush()
            return result
        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(timeout)

    def step(self, seconds: float) -> int:
        """Advance a stepped clock by `seconds` of market time, processing every quote; return the count."""
        def go() -> int:
            if not isinstance(self.sim.clock, SteppedClock):
                raise RuntimeError("step() needs clock='stepped'")
            return self.sim.advance(self.sim.clock.advance(seconds))
        return self.call(go)

    # faults and views, each run on the loop thread
    def drop(self, client_id: int | None = None) -> int:
        return self.call(self.sim.drop, client_id)

    def refuse(self, seconds: float) -> None:
        self.call(self.sim.refuse, seconds)

    def lose_link(self) -> None:
        self.call(self.sim.lose_link)

    def restore_link(self, data_kept: bool = False) -> None:
        self.call(self.sim.restore_link, data_kept)

    def duplicate_statuses(self, count: int) -> None:
        self.call(setattr, self.sim, "duplicate_statuses", count)

    def fill_after_cancel(self, count: int = 1) -> None:
        self.call(setattr, self.sim, "fill_after_cancel", count)

    def commission_lag(self, seconds: float) -> None:
        self.call(setattr, self.sim, "commission_lag_s", seconds)

    def reject_next(self, reason: str = matching.FAULT_REJECT_REASON) -> None:
        self.call(self.sim.set_reject_next, reason)

    def silence(self, symbol: str, silenced: bool = True) -> None:
        self.call(self.sim.set_silenced, symbol, silenced)

    def squeeze_pacing(self, msgs_per_s: int, seconds: float) -> None:
        self.call(self.sim.squeeze_pacing, msgs_per_s, seconds)

    def freeze(self, frozen: bool = True) -> None:
        self.call(self.sim.freeze, frozen)

    def order_log(self) -> list[OrderRecord]:
        return self.call(lambda: list(self.sim.order_log))

    def snapshot(self) -> dict[str, Any]:
        return self.call(self.sim.snapshot)
