"""The ibapi edge of the broker connection: IB's own framing, decoder and request encoders, in our vocabulary.

With the simulator, this is the only module that imports `ibapi`. TwsConnection owns the socket;
this module never touches one. A `Wire` is made per socket:

* `feed(bytes)` frames the stream with `ibapi.comm.read_msg`, reads the handshake reply, then
  decodes each frame with ibapi's own `Decoder` exactly as `EClient.run` does (text `interpret`,
  or `processProtoBuf` for ids above PROTOBUF_MSG_ID), without EReader thread or run loop. A
  `_Translator` EWrapper turns each callback into one frozen event of this module: IB's camelCase,
  floats and status strings stop here.
* `encode(request)` calls the real `EClient` request method (placeOrder, cancelOrder, reqMktData…)
  on a client whose `conn` only collects frames: the actor's pacer decides when they leave. Those
  methods touch nothing but `self.conn.sendMsg`, `self.isConnected()`, `self.serverVersion()`,
  `self.clientId`/`optCapab` (START_API) and `self.wrapper.error` (tests/actors check this).
"""

from __future__ import annotations

import logging
import math
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from typing import Any, Final, TypeAlias
from zoneinfo import ZoneInfo

from ibapi import comm
from ibapi.client import EClient
from ibapi.common import PROTOBUF_MSG_ID, BarData, TickAttrib
from ibapi.commission_and_fees_report import CommissionAndFeesReport
from ibapi.const import MAX_MSG_LEN, UNSET_DECIMAL, UNSET_DOUBLE
from ibapi.contract import Contract
from ibapi.decoder import Decoder
from ibapi.execution import Execution as IbExecution
from ibapi.execution import ExecutionFilter
from ibapi.order import Order as IbOrder
from ibapi.order_cancel import OrderCancel
from ibapi.order_state import OrderState
from ibapi.server_versions import MAX_CLIENT_VER, MIN_CLIENT_VER, MIN_SERVER_VER_PROTOBUF
from ibapi.ticktype import TickTypeEnum
from ibapi.utils import BadMessage
from ibapi.wrapper import EWrapper

from core.orders import IB_STATUS, Order, OrderStatus
from core.types import ZERO, Execution, OrderType, Side, TimeInForce

# ibapi logs every request and answer at INFO through stdlib logging, which thespian forwards to
# its logger actor: one record per wire message would swamp it. Its warnings still pass.
logging.getLogger("ibapi").setLevel(logging.WARNING)

_NS: Final = 1_000_000_000
_NY: Final = ZoneInfo("America/New_York")

# ---------------------------------------------------------------- contracts


@dataclass(frozen=True, slots=True, kw_only=True)
class ContractSpec:
    """How IB names one traded symbol."""

    symbol: str
    sec_type: str = "STK"
    exchange: str = "SMART"
    primary_exchange: str = ""
    currency: str = "USD"


def _contract(spec: ContractSpec) -> Contract:
    c = Contract()
    c.symbol, c.secType, c.exchange, c.currency = spec.symbol, spec.sec_type, spec.exchange, spec.currency
    if spec.primary_exchange:
        c.primaryExchange = spec.primary_exchange
    return c


# ---------------------------------------------------------------- requests (what the pacer carries)


@dataclass(frozen=True, slots=True, kw_only=True)
class StartApiRequest:
    """START_API: sent once per socket, right after the handshake reply."""


@dataclass(frozen=True, slots=True, kw_only=True)
class PlaceOrderRequest:
    """PLACE_ORDER for `order` under `order_id` (the same id again modifies it)."""

    order_id: int
    order: Order
    contract: ContractSpec
    parent_id: int = 0
    transmit: bool = True
    account: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class CancelOrderRequest:
    order_id: int


@dataclass(frozen=True, slots=True, kw_only=True)
class IdsRequest:
    """reqIds(-1): TWS answers nextValidId."""


@dataclass(frozen=True, slots=True, kw_only=True)
class CurrentTimeRequest:
    """reqCurrentTime: the heartbeat."""


@dataclass(frozen=True, slots=True, kw_only=True)
class OpenOrdersRequest:
    """reqAllOpenOrders (every API client's orders) or reqOpenOrders (this client's)."""

    all_clients: bool = True


@dataclass(frozen=True, slots=True, kw_only=True)
class CompletedOrdersRequest:
    """reqCompletedOrders(apiOnly=True)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class PositionsRequest:
    """reqPositions: a snapshot ended by positionEnd, then live updates."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ExecutionsRequest:
    """reqExecutions with an empty filter: today's executions, ended by execDetailsEnd(req_id)."""

    req_id: int


@dataclass(frozen=True, slots=True, kw_only=True)
class MarketDataRequest:
    req_id: int
    contract: ContractSpec


@dataclass(frozen=True, slots=True, kw_only=True)
class MarketDataCancel:
    req_id: int


@dataclass(frozen=True, slots=True, kw_only=True)
class HistoricalDataRequest:
    """`count` TRADES bars of `bar_size_s` ending at `end_ns` (0 = now), all hours, epoch dates."""

    req_id: int
    contract: ContractSpec
    bar_size_s: int
    count: int
    end_ns: int = 0


Request: TypeAlias = (StartApiRequest | PlaceOrderRequest | CancelOrderRequest | IdsRequest
                      | CurrentTimeRequest | OpenOrdersRequest | CompletedOrdersRequest
                      | PositionsRequest | ExecutionsRequest | MarketDataRequest | MarketDataCancel
                      | HistoricalDataRequest)

# IB's legal bar sizes up to a day (seconds -> barSizeSetting).
BAR_SIZES: Final = {
    1: "1 secs", 5: "5 secs", 10: "10 secs", 15: "15 secs", 30: "30 secs",
    60: "1 min", 120: "2 mins", 180: "3 mins", 300: "5 mins", 600: "10 mins", 900: "15 mins",
    1200: "20 mins", 1800: "30 mins", 3600: "1 hour", 7200: "2 hours", 10_800: "3 hours",
    14_400: "4 hours", 28_800: "8 hours", 86_400: "1 day",
}
_DAY_S: Final = 86_400


def bar_size_setting(bar_size_s: int) -> str:
    """Return IB's barSizeSetting for a bar of `bar_size_s` seconds; ValueError if IB has none."""
    try:
        return BAR_SIZES[bar_size_s]
    except KeyError:
        raise ValueError(f"bar_size_s={bar_size_s} is not an IB bar size (have {sorted(BAR_SIZES)})") \
            from None


def duration_setting(bar_size_s: int, count: int) -> str:
    """Return the durationStr covering `count` bars: seconds up to a day (IB's "S" limit), else days."""
    if count < 1:
        raise ValueError(f"count={count} is invalid; expected >= 1")
    seconds = bar_size_s * count
    if seconds <= _DAY_S and bar_size_s < _DAY_S:
        return f"{seconds} S"
    return f"{math.ceil(seconds / _DAY_S)} D"


def end_setting(end_ns: int) -> str:
    """Return endDateTime: "" for now, else UTC "yyyymmdd-hh:mm:ss"."""
    if end_ns <= 0:
        return ""
    return datetime.fromtimestamp(end_ns / _NS, timezone.utc).strftime("%Y%m%d-%H:%M:%S")


def handshake_bytes(connect_options: str = "") -> bytes:
    """Return the client's opening bytes: "API\\0" and the framed version range, as EClient.connect sends."""
    version = f"v{MIN_CLIENT_VER}..{MAX_CLIENT_VER}"
    if connect_options:
        version += " " + connect_options
    return b"API\0" + comm.make_initial_msg(version)


# ---------------------------------------------------------------- events (what the wire said)


@dataclass(frozen=True, slots=True, kw_only=True)
class Handshaken:
    """The version reply: TWS chose `server_version`; requests may be encoded from now on."""

    server_version: int
    connection_time: str


@dataclass(frozen=True, slots=True, kw_only=True)
class NextIdSeen:
    order_id: int


@dataclass(frozen=True, slots=True, kw_only=True)
class NoticeSeen:
    """IB's error(reqId, code, text): an error, a warning or an informational notice."""

    req_id: int
    code: int
    text: str


@dataclass(frozen=True, slots=True, kw_only=True)
class OpenOrderSeen:
    """An openOrder: `order.ref` is IB's orderRef ("" if none), its status the order state's."""

    order_id: int
    client_id: int
    perm_id: int
    parent_id: int
    order: Order
    order_type: str  # IB's orderType text, for the log of an external order we cannot represent


@dataclass(frozen=True, slots=True, kw_only=True)
class OpenOrdersEnd:
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class StatusSeen:
    """An orderStatus; `status` is None for a status word we do not know."""

    order_id: int
    client_id: int
    perm_id: int
    parent_id: int
    status: OrderStatus | None
    word: str
    filled: Decimal
    remaining: Decimal
    avg_fill_price: Decimal
    why_held: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ExecutionSeen:
    """An execDetails; `req_id` is -1 for a live fill, the reqExecutions id for a replay."""

    req_id: int
    execution: Execution
    client_id: int
    perm_id: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ExecutionsEnd:
    req_id: int


@dataclass(frozen=True, slots=True, kw_only=True)
class CommissionSeen:
    """A commission report; `commission` is None when IB sent its "unset" value."""

    exec_id: str
    commission: Decimal | None
    realized_pnl: Decimal | None
    currency: str


@dataclass(frozen=True, slots=True, kw_only=True)
class CompletedOrderSeen:
    order: Order
    client_id: int
    perm_id: int


@dataclass(frozen=True, slots=True, kw_only=True)
class CompletedOrdersEnd:
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class PositionSeen:
    account: str
    symbol: str
    quantity: Decimal
    avg_cost: Decimal


@dataclass(frozen=True, slots=True, kw_only=True)
class PositionsEnd:
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class TickSeen:
    """One tick: `field` is a Quote field name (bid, ask, last, bid_size, ask_size, last_size, volume)."""

    req_id: int
    field: str
    value: Decimal


@dataclass(frozen=True, slots=True, kw_only=True)
class CurrentTimeSeen:
    epoch_s: int


@dataclass(frozen=True, slots=True, kw_only=True)
class BarSeen:
    req_id: int
    ts_ns: int
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal


@dataclass(frozen=True, slots=True, kw_only=True)
class BarsEnd:
    req_id: int


@dataclass(frozen=True, slots=True, kw_only=True)
class AccountsSeen:
    accounts: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class BadFrame:
    """A frame ibapi's decoder could not read (or a translation failed): logged and skipped."""

    msg_id: int
    error: str


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamBroken:
    """The byte stream cannot be read further (a frame declares more than the protocol allows): reconnect."""

    error: str


WireEvent: TypeAlias = (Handshaken | NextIdSeen | NoticeSeen | OpenOrderSeen | OpenOrdersEnd
                        | StatusSeen | ExecutionSeen | ExecutionsEnd | CommissionSeen
                        | CompletedOrderSeen | CompletedOrdersEnd | PositionSeen | PositionsEnd
                        | TickSeen | CurrentTimeSeen | BarSeen | BarsEnd | AccountsSeen | BadFrame
                        | StreamBroken)


# ---------------------------------------------------------------- translation tables and values

_PRICE_TICKS: Final = {
    TickTypeEnum.BID: "bid", TickTypeEnum.ASK: "ask", TickTypeEnum.LAST: "last",
    TickTypeEnum.DELAYED_BID: "bid", TickTypeEnum.DELAYED_ASK: "ask", TickTypeEnum.DELAYED_LAST: "last",
}
_SIZE_TICKS: Final = {
    TickTypeEnum.BID_SIZE: "bid_size", TickTypeEnum.ASK_SIZE: "ask_size",
    TickTypeEnum.LAST_SIZE: "last_size", TickTypeEnum.VOLUME: "volume",
    TickTypeEnum.DELAYED_BID_SIZE: "bid_size", TickTypeEnum.DELAYED_ASK_SIZE: "ask_size",
    TickTypeEnum.DELAYED_LAST_SIZE: "last_size", TickTypeEnum.DELAYED_VOLUME: "volume",
}
_ORDER_TYPES: Final = {t.value: t for t in OrderType}
_TIFS: Final = {t.value: t for t in TimeInForce}
# An execution's side is BOT/SLD; an order's action BUY/SELL/SSHORT (a short sale sells).
_EXEC_SIDES: Final = {"BOT": Side.BUY, "SLD": Side.SELL}
_ACTIONS: Final = {"BUY": Side.BUY, "SELL": Side.SELL, "SSHORT": Side.SELL}
# OCA type 1: cancel the other orders of the group when one fills, with overfill protection.
OCA_CANCEL_WITH_BLOCK: Final = 1


def _price(value: float) -> Decimal | None:
    """Return an IB float price as the Decimal it was on the wire; None for IB's unset/invalid values."""
    if value is None or value == UNSET_DOUBLE or not math.isfinite(value):
        return None
    # repr() is the shortest text that round-trips: the decimal IB sent ("190.25", not 190.2499…).
    return Decimal(repr(float(value)))


def _amount(value: Any) -> Decimal | None:
    if value is None:
        return None
    if isinstance(value, Decimal):
        return None if value == UNSET_DECIMAL or not value.is_finite() else value
    if isinstance(value, float):
        return _price(value)
    try:
        return Decimal(str(value))
    except InvalidOperation:
        return None


def parse_ib_time(text: str) -> int:
    """Return epoch ns of an IB time, or 0 if unreadable.

    Forms: "yyyymmdd hh:mm:ss [zone]" (New York without a zone), "yyyymmdd-hh:mm:ss" (UTC), epoch
    seconds, and a daily bar's "yyyymmdd" (midnight in New York).
    """
    text = text.strip()
    if not text:
        return 0
    try:
        if text.isdigit():
            if len(text) == 8:  # a daily bar's date: midnight in New York
                return int(datetime.strptime(text, "%Y%m%d").replace(tzinfo=_NY).timestamp()) * _NS
            return int(text) * _NS
        if "-" in text and " " not in text:
            dt = datetime.strptime(text, "%Y%m%d-%H:%M:%S").replace(tzinfo=timezone.utc)
            return int(dt.timestamp()) * _NS
        parts = text.split()
        zone = ZoneInfo(parts[2]) if len(parts) > 2 else _NY
        dt = datetime.strptime(f"{parts[0]} {parts[1]}", "%Y%m%d %H:%M:%S").replace(tzinfo=zone)
        return int(dt.timestamp()) * _NS
    except (ValueError, IndexError, KeyError):
        return 0
    except Exception:  # zoneinfo raises its own errors for unknown zone names
        return 0


def _core_order(order: IbOrder, contract: Contract, status: OrderStatus | None, order_id: int) -> Order:
    order_type = _ORDER_TYPES.get(order.orderType, OrderType.MKT)
    trail = order_type is OrderType.TRAIL
    quantity = _amount(order.totalQuantity) or ZERO
    filled = _amount(getattr(order, "filledQuantity", None)) or ZERO
    return Order(
        ref=order.orderRef or "",
        symbol=contract.symbol or contract.localSymbol or "",
        side=_ACTIONS.get((order.action or "").upper(), Side.BUY),
        quantity=quantity,
        order_type=order_type,
        limit_price=_price(order.lmtPrice) if order_type in (OrderType.LMT, OrderType.STP_LMT) else None,
        stop_price=_price(order.trailStopPrice if trail else order.auxPrice)
        if order_type in (OrderType.STP, OrderType.STP_LMT, OrderType.TRAIL) else None,
        trail_amount=_price(order.auxPrice) if trail else None,
        trail_percent=_price(order.trailingPercent) if trail else None,
        tif=_TIFS.get(order.tif or "DAY", TimeInForce.DAY),
        oca_group=order.ocaGroup or "",
        status=status if status is not None else OrderStatus.SUBMITTED,
        broker_id=order_id,
        filled=min(filled, quantity) if quantity else filled,
    )


def _ib_order(r: PlaceOrderRequest) -> IbOrder:
    order = r.order
    o = IbOrder()
    o.orderId = r.order_id
    o.action = order.side.value
    o.totalQuantity = order.quantity
    o.orderType = order.order_type.value
    o.tif = order.tif.value
    o.orderRef = order.ref
    o.parentId = r.parent_id
    o.transmit = r.transmit
    if order.limit_price is not None:
        o.lmtPrice = float(order.limit_price)
    if order.order_type is OrderType.TRAIL:
        if order.trail_amount is not None:
            o.auxPrice = float(order.trail_amount)
        if order.trail_percent is not None:
            o.trailingPercent = float(order.trail_percent)
        if order.stop_price is not None:
            o.trailStopPrice = float(order.stop_price)
    elif order.stop_price is not None:
        o.auxPrice = float(order.stop_price)
    if order.oca_group:
        o.ocaGroup = order.oca_group
        o.ocaType = OCA_CANCEL_WITH_BLOCK
    if r.account:
        o.account = r.account
    return o


# ---------------------------------------------------------------- the EWrapper


class _Translator(EWrapper):
    """Every callback the connection uses becomes one event in `events`; the rest are ignored."""

    def __init__(self, events: list[WireEvent]) -> None:
        super().__init__()
        self.events = events

    def error(self, reqId: int, errorTime: int, errorCode: int, errorString: str,
              advancedOrderRejectJson: str = "") -> None:
        text = errorString if not advancedOrderRejectJson else f"{errorString} {advancedOrderRejectJson}"
        self.events.append(NoticeSeen(req_id=int(reqId), code=int(errorCode), text=str(text)))

    def nextValidId(self, orderId: int) -> None:
        self.events.append(NextIdSeen(order_id=int(orderId)))

    def managedAccounts(self, accountsList: str) -> None:
        self.events.append(AccountsSeen(accounts=tuple(a for a in accountsList.split(",") if a)))

    def openOrder(self, orderId: int, contract: Contract, order: IbOrder,
                  orderState: OrderState) -> None:
        status = IB_STATUS.get(orderState.status)
        self.events.append(OpenOrderSeen(
            order_id=int(orderId), client_id=int(order.clientId), perm_id=int(order.permId),
            parent_id=int(order.parentId), order=_core_order(order, contract, status, int(orderId)),
            order_type=order.orderType))

    def openOrderEnd(self) -> None:
        self.events.append(OpenOrdersEnd())

    def orderStatus(self, orderId: int, status: str, filled: Decimal, remaining: Decimal,
                    avgFillPrice: float, permId: int, parentId: int, lastFillPrice: float,
                    clientId: int, whyHeld: str, mktCapPrice: float) -> None:
        self.events.append(StatusSeen(
            order_id=int(orderId), client_id=int(clientId), perm_id=int(permId), parent_id=int(parentId),
            status=IB_STATUS.get(status), word=str(status), filled=_amount(filled) or ZERO,
            remaining=_amount(remaining) or ZERO, avg_fill_price=_price(avgFillPrice) or ZERO,
            why_held=whyHeld or ""))

    def execDetails(self, reqId: int, contract: Contract, execution: IbExecution) -> None:
        e = execution
        self.events.append(ExecutionSeen(
            req_id=int(reqId), client_id=int(e.clientId), perm_id=int(e.permId),
            execution=Execution(
                exec_id=e.execId, order_id=int(e.orderId), order_ref=e.orderRef or "",
                symbol=contract.symbol or contract.localSymbol or "",
                side=_EXEC_SIDES.get(e.side, Side.SELL if e.side.upper().startswith("S") else Side.BUY),
                quantity=_amount(e.shares) or ZERO, price=_price(e.price) or ZERO,
                ts_ns=parse_ib_time(e.time))))

    def execDetailsEnd(self, reqId: int) -> None:
        self.events.append(ExecutionsEnd(req_id=int(reqId)))

    def commissionAndFeesReport(self, commissionAndFeesReport: CommissionAndFeesReport
                                ) -> None:
        r = commissionAndFeesReport
        self.events.append(CommissionSeen(exec_id=r.execId, commission=_price(r.commissionAndFees),
                                          realized_pnl=_price(r.realizedPNL), currency=r.currency or ""))

    def completedOrder(self, contract: Contract, order: IbOrder,
                       orderState: OrderState) -> None:
        status = IB_STATUS.get(orderState.status) or IB_STATUS.get(orderState.completedStatus)
        self.events.append(CompletedOrderSeen(
            order=_core_order(order, contract, status, int(order.orderId)), client_id=int(order.clientId),
            perm_id=int(order.permId)))

    def completedOrdersEnd(self) -> None:
        self.events.append(CompletedOrdersEnd())

    def position(self, account: str, contract: Contract, position: Decimal,
                 avgCost: float) -> None:
        self.events.append(PositionSeen(account=account, symbol=contract.symbol or contract.localSymbol or "",
                                        quantity=_amount(position) or ZERO, avg_cost=_price(avgCost) or ZERO))

    def positionEnd(self) -> None:
        self.events.append(PositionsEnd())

    def tickPrice(self, reqId: int, tickType: int, price: float,
                  attrib: TickAttrib) -> None:
        name = _PRICE_TICKS.get(tickType)
        value = _price(price)
        # IB sends -1 (or 0) for "no price" on an empty side of the book.
        if name is not None and value is not None and value > 0:
            self.events.append(TickSeen(req_id=int(reqId), field=name, value=value))

    def tickSize(self, reqId: int, tickType: int, size: Decimal) -> None:
        name = _SIZE_TICKS.get(tickType)
        value = _amount(size)
        if name is not None and value is not None and value >= 0:
            self.events.append(TickSeen(req_id=int(reqId), field=name, value=value))

    def currentTime(self, time: int) -> None:
        self.events.append(CurrentTimeSeen(epoch_s=int(time)))

    def historicalData(self, reqId: int, bar: BarData) -> None:
        self.events.append(BarSeen(
            req_id=int(reqId), ts_ns=parse_ib_time(str(bar.date)), open=_price(bar.open) or ZERO,
            high=_price(bar.high) or ZERO, low=_price(bar.low) or ZERO, close=_price(bar.close) or ZERO,
            volume=_amount(bar.volume) or ZERO))

    def historicalDataEnd(self, reqId: int, start: str, end: str) -> None:
        self.events.append(BarsEnd(req_id=int(reqId)))


class _Outbox:
    """The EClient's `conn`: collects the frames a request method produces instead of sending them."""

    def __init__(self) -> None:
        self.frames: list[bytes] = []
        self.socket = None

    def sendMsg(self, msg: bytes) -> int:
        self.frames.append(msg)
        return len(msg)

    def isConnected(self) -> bool:
        return True

    def disconnect(self) -> None:
        self.frames.clear()


# ---------------------------------------------------------------- one socket's codec


class Wire:
    """Decode one socket's byte stream and encode its requests with ibapi's own code."""

    def __init__(self, client_id: int) -> None:
        self.server_version = 0
        self.connection_time = ""
        self._rest = b""
        self.broken = False  # a frame over MAX_MSG_LEN arrived: nothing more is read
        self._events: list[WireEvent] = []
        self._wrapper = _Translator(self._events)
        self._decoder: Decoder | None = None
        self._outbox = _Outbox()
        self._client = EClient(self._wrapper)
        self._client.conn = self._outbox
        self._client.clientId = client_id

    @property
    def ready(self) -> bool:
        """Return True once the version reply arrived (requests can be encoded)."""
        return self._decoder is not None

    def feed(self, data: bytes) -> list[WireEvent]:
        """Return the events of every complete frame in the stream so far; keep a partial frame.

        A frame longer than the protocol's MAX_MSG_LEN (16 MB) is never buffered: the stream is
        broken (StreamBroken, once), and everything after it is dropped until the socket closes.
        """
        if self.broken:
            return []
        buf = memoryview(self._rest + data)  # read_msg slices a memoryview without copying the rest
        while len(buf) >= 4:
            size, text, rest = comm.read_msg(buf)
            if size > MAX_MSG_LEN:
                self.broken = True
                self._rest = b""
                self._events.append(StreamBroken(error=f"a frame declares {size:,} bytes, more than the "
                                                       f"protocol's {MAX_MSG_LEN:,}: the stream cannot be read further"))
                return self._take()
            if len(buf) - 4 < size:
                break
            buf = rest
            self._frame(bytes(text))
        self._rest = bytes(buf)
        return self._take()

    def encode(self, request: Request) -> tuple[bytes, list[WireEvent]]:
        """Return the frames of one request and the errors ibapi reported while encoding it."""
        if not self.ready:
            raise RuntimeError("cannot encode a request before the handshake reply")
        self._outbox.frames.clear()
        _ENCODERS[type(request)](self._client, request)
        frames = b"".join(self._outbox.frames)
        self._outbox.frames.clear()
        return frames, self._take()

    def _take(self) -> list[WireEvent]:
        events = list(self._events)
        self._events.clear()
        return events

    def _frame(self, text: bytes) -> None:
        if self._decoder is None:
            # EClient.connect: loop until a two-field message, the version reply, arrives.
            fields = comm.read_fields(text)
            if len(fields) == 2:
                try:
                    server_version = int(fields[0])
                except ValueError:  # not a TWS: reported, and the connect timeout ends the attempt
                    self._events.append(BadFrame(msg_id=0, error=f"unreadable version reply {text[:64]!r}"))
                    return
                self._handshaken(server_version, fields[1].decode("ascii", "replace"))
            return
        msg_id = 0
        try:
            # EClient.run, without its queue: raw 4-byte ids from the protobuf server version on.
            if self.server_version >= MIN_SERVER_VER_PROTOBUF:
                msg_id = int.from_bytes(text[:4], "big")
                text = text[4:]
            else:
                cut = text.index(b"\0")
                msg_id = int(text[:cut])
                text = text[cut + 1:]
            if msg_id > PROTOBUF_MSG_ID:
                self._decoder.processProtoBuf(text, msg_id - PROTOBUF_MSG_ID)
            else:
                self._decoder.interpret(comm.read_fields(text), msg_id)
        except BadMessage as exc:
            self._events.append(BadFrame(msg_id=msg_id, error=f"BadMessage: {exc.text}"))
        except Exception:  # one unreadable frame must not take the connection down
            self._events.append(BadFrame(msg_id=msg_id, error=traceback.format_exc()))

    def _handshaken(self, server_version: int, connection_time: str) -> None:
        self.server_version = server_version
        self.connection_time = connection_time
        client = self._client
        client.serverVersion_ = server_version
        client.connTime = connection_time
        client.setConnState(EClient.CONNECTED)
        self._decoder = Decoder(self._wrapper, server_version)
        self._events.append(Handshaken(server_version=server_version, connection_time=connection_time))


def _place(c: EClient, r: PlaceOrderRequest) -> None:
    c.placeOrder(r.order_id, _contract(r.contract), _ib_order(r))


def _historical(c: EClient, r: HistoricalDataRequest) -> None:
    c.reqHistoricalData(r.req_id, _contract(r.contract), end_setting(r.end_ns),
                        duration_setting(r.bar_size_s, r.count), bar_size_setting(r.bar_size_s),
                        "TRADES", 0, 2, False, [])


_ENCODERS: Final[dict[type, Callable[[EClient, Any], None]]] = {
    StartApiRequest: lambda c, r: c.startApi(),
    PlaceOrderRequest: _place,
    CancelOrderRequest: lambda c, r: c.cancelOrder(r.order_id, OrderCancel()),
    IdsRequest: lambda c, r: c.reqIds(-1),
    CurrentTimeRequest: lambda c, r: c.reqCurrentTime(),
    OpenOrdersRequest: lambda c, r: c.reqAllOpenOrders() if r.all_clients else c.reqOpenOrders(),
    CompletedOrdersRequest: lambda c, r: c.reqCompletedOrders(True),
    PositionsRequest: lambda c, r: c.reqPositions(),
    ExecutionsRequest: lambda c, r: c.reqExecutions(r.req_id, ExecutionFilter()),
    MarketDataRequest: lambda c, r: c.reqMktData(r.req_id, _contract(r.contract), "", False, False, []),
    MarketDataCancel: lambda c, r: c.cancelMktData(r.req_id),
    HistoricalDataRequest: _historical,
}

# The EClient request methods the connection calls, for the test that checks what they touch.
CLIENT_METHODS: Final = ("startApi", "placeOrder", "cancelOrder", "reqIds", "reqCurrentTime",
                         "reqAllOpenOrders", "reqOpenOrders", "reqCompletedOrders", "reqPositions",
                         "reqExecutions", "reqMktData", "cancelMktData", "reqHistoricalData")
