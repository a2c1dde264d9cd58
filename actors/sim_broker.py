"""SimBroker: the broker connection of a backtest, the very TwsConnection with core.matching in place of a socket.

TwsConnection turns every request into frames with `wire.encode(request) -> (frames, events)` and
every broker answer into `edge.*Seen` events it handles one by one. A SimWire stands where that
wire stands: its `encode` answers each request at once from `core.matching` (the matching engine
the TWS simulator runs) and returns no frames. Everything above it, order routing, the state
machine, the pacer, the journal writes, the messages to groups and symbols, is the live code path.

Quotes come from the backtest driver as `MarketQuote` messages: the quote's fields are taken as
the ticks a live socket would bring, all at once, and go on as a QuoteUpdate that asks for no
QuoteProcessed (the driver hands over the next quote only when every message is handled); when the
symbol has working orders, the quote is matched against them first, as the simulator does.
A change of New York date ends the day at the broker (DAY orders expire).

Run it on simpleSystemBase with a VirtualClock and VirtualTimers installed (actors/clock.py): it
reads no wall clock and opens no socket.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Final

from thespian.actors import ActorAddress

from actors import tws_edge as edge
from actors.tws_connection import TwsConnection
from core import connection as cc
from core import matching
from core.matching import BrokerOrder, CommissionModel
from core.bar_data import ny_date
from core.orders import IB_STATUS, Order, OrderStatus
from core.types import Execution, Quote
from messages import Message, QuoteUpdate

SERVER_VERSION: Final = 200
ACCOUNT: Final = "SIM"
_QUOTE_FIELDS: Final = ("bid", "ask", "last", "bid_size", "ask_size", "last_size", "volume")


@dataclass(frozen=True, slots=True, kw_only=True)
class MarketQuote(Message):
    """The backtest driver's next quote for the SimBroker (the market moved)."""

    quote: Quote


@dataclass(slots=True)
class SimExchange:
    """The broker a SimWire talks to: the matching book, the next order id, the subscriptions."""

    book: matching.Book = field(default_factory=matching.new_book)
    next_id: int = 1
    subscribed: dict[int, str] = field(default_factory=dict)  # req id -> symbol
    day: object = None                                        # the New York date of the last quote


class SimWire:
    """A wire whose broker is `exchange`: every request is answered at once, no bytes move."""

    ready = True

    def __init__(self, exchange: SimExchange, client_id: int, now_ns: Any) -> None:
        self.exchange = exchange
        self.client_id = client_id
        self.now_ns = now_ns

    def opening(self) -> list[edge.WireEvent]:
        """Return what a fresh socket hears first: the version reply."""
        return [edge.Handshaken(server_version=SERVER_VERSION, connection_time="sim")]

    def encode(self, request: Any) -> tuple[bytes, list[edge.WireEvent]]:
        ex = self.exchange
        match request:
            case edge.StartApiRequest() | edge.IdsRequest():
                events: list[edge.WireEvent] = [edge.NextIdSeen(order_id=ex.next_id)]
                if isinstance(request, edge.StartApiRequest):
                    events.append(edge.AccountsSeen(accounts=(ACCOUNT,)))
                return b"", events
            case edge.CurrentTimeRequest():
                return b"", [edge.CurrentTimeSeen(epoch_s=self.now_ns() // 1_000_000_000)]
            case edge.OpenOrdersRequest():
                return b"", [*(self._open_order(o) for o in matching.open_orders(ex.book)), edge.OpenOrdersEnd()]
            case edge.CompletedOrdersRequest():
                return b"", [edge.CompletedOrdersEnd()]
            case edge.PositionsRequest():
                return b"", [edge.PositionsEnd()]
            case edge.ExecutionsRequest(req_id=req_id):
                return b"", [edge.ExecutionsEnd(req_id=req_id)]
            case edge.MarketDataRequest(req_id=req_id, contract=contract):
                ex.subscribed[req_id] = contract.symbol
                market = ex.book.markets.get(contract.symbol)
                return b"", (ticks(req_id, market.quote) if market is not None else [])
            case edge.MarketDataCancel(req_id=req_id):
                ex.subscribed.pop(req_id, None)
                return b"", []
            case edge.HistoricalDataRequest(req_id=req_id):
                return b"", [edge.BarsEnd(req_id=req_id)]  # warm-up comes from the data, not history
            case edge.PlaceOrderRequest():
                ex.next_id = max(ex.next_id, request.order_id + 1)
                ex.book, answers = matching.place(ex.book, broker_order(request, self.client_id), self.now_ns())
                return b"", self.translate(answers)
            case edge.CancelOrderRequest(order_id=order_id):
                ex.book, answers = matching.cancel(ex.book, order_id, self.now_ns(), client_id=self.client_id)
                return b"", self.translate(answers)
        raise TypeError(f"SimWire cannot answer {type(request).__name__}")

    def translate(self, answers: tuple[matching.Event, ...]) -> list[edge.WireEvent]:
        """Return the wire events IB would send for the matching engine's events."""
        out: list[edge.WireEvent] = []
        for ev in answers:
            if isinstance(ev, matching.StatusEvent):
                out.append(edge.StatusSeen(
                    order_id=ev.order_id, client_id=ev.client_id, perm_id=ev.perm_id, parent_id=ev.parent_id,
                    status=IB_STATUS.get(ev.status), word=ev.status, filled=ev.filled, remaining=ev.remaining,
                    avg_fill_price=ev.avg_fill_price, why_held=ev.why_held))
            elif isinstance(ev, matching.OpenOrderEvent):
                out.append(self._open_order(ev.order))
            elif isinstance(ev, matching.FillEvent):
                out.append(edge.ExecutionSeen(
                    req_id=-1, client_id=ev.client_id, perm_id=ev.perm_id,
                    execution=Execution(exec_id=ev.exec_id, order_id=ev.order_id, order_ref=ev.order_ref,
                                        symbol=ev.symbol, side=ev.side, quantity=ev.quantity, price=ev.price,
                                        ts_ns=ev.ts_ns)))
                out.append(edge.CommissionSeen(exec_id=ev.exec_id, commission=ev.commission, realized_pnl=None,
                                               currency="USD"))
            elif isinstance(ev, matching.ErrorEvent):
                out.append(edge.NoticeSeen(req_id=ev.order_id, code=ev.code, text=ev.message))
        return out

    def _open_order(self, o: BrokerOrder) -> edge.OpenOrderSeen:
        status = IB_STATUS.get(o.status)
        order = Order(ref=o.order_ref, symbol=o.symbol, side=o.side, quantity=o.quantity, order_type=o.order_type,
                      limit_price=o.limit_price, stop_price=o.stop_price, trail_amount=o.trail_amount,
                      trail_percent=o.trail_percent, tif=o.tif, oca_group=o.oca_group,
                      status=status if status is not None else OrderStatus.SUBMITTED, broker_id=o.order_id,
                      filled=o.filled)
        return edge.OpenOrderSeen(order_id=o.order_id, client_id=o.client_id, perm_id=o.perm_id,
                                  parent_id=o.parent_id, order=order, order_type=o.order_type.value)


def broker_order(r: edge.PlaceOrderRequest, client_id: int) -> BrokerOrder:
    """Return the order the broker holds for a PLACE_ORDER (what the simulator builds from the wire)."""
    o = r.order
    return BrokerOrder(
        order_id=r.order_id, client_id=client_id, account=r.account or ACCOUNT, symbol=o.symbol, side=o.side,
        quantity=o.quantity, order_type=o.order_type, limit_price=o.limit_price, stop_price=o.stop_price,
        trail_amount=o.trail_amount, trail_percent=o.trail_percent, tif=o.tif, parent_id=r.parent_id,
        oca_group=o.oca_group, oca_type=edge.OCA_CANCEL_WITH_BLOCK if o.oca_group else 0,
        transmit=r.transmit, order_ref=o.ref)


def quote_fields(quote: Quote) -> dict[str, Decimal]:
    """Return the fields a live feed would tick for `quote` (each one that has a value)."""
    return {name: Decimal(value) for name in _QUOTE_FIELDS if (value := getattr(quote, name)) is not None}


def ticks(req_id: int, quote: Quote) -> list[edge.WireEvent]:
    """Return the ticks a live feed would bring for `quote` (one per field that has a value)."""
    return [edge.TickSeen(req_id=req_id, field=name, value=value) for name, value in quote_fields(quote).items()]


class SimBroker(TwsConnection):
    """TwsConnection over a SimWire: a backtest's broker (see the module doc)."""

    def __init__(self) -> None:
        super().__init__()
        self.exchange = SimExchange()

    def on_configure(self, msg: Any) -> None:
        self.exchange.book = matching.new_book(CommissionModel())
        super().on_configure(msg)

    def _open_socket(self, command: cc.OpenSocket) -> None:
        self._close_socket("reconnecting")
        wire = SimWire(self.exchange, command.client_id, self.now_ns)
        self.wire = wire  # type: ignore[assignment]
        self.out_buf = bytearray()
        self._on_wire_events(wire.opening())

    def _flush_writes(self) -> None:
        self.out_buf.clear()  # nothing is written: SimWire answered every request already

    def receiveMsg_MarketQuote(self, msg: MarketQuote, sender: ActorAddress) -> None:
        quote, ex, wire = msg.quote, self.exchange, self.wire
        if not isinstance(wire, SimWire):
            return
        day = ny_date(quote.ts_ns)
        events: list[edge.WireEvent] = []
        if ex.day is not None and day != ex.day:
            ex.book, answers = matching.end_of_day(ex.book, quote.ts_ns)
            events += wire.translate(answers)
        ex.day = day
        # The quote meets the working orders first (fills at this quote), then goes to subscribers.
        ex.book, answers = matching.on_quote(ex.book, quote, quote.ts_ns)
        events += wire.translate(answers)
        self._on_wire_events(events)
        now = self.now_ns()
        for req_id, symbol in ex.subscribed.items():
            if symbol == quote.symbol:
                self._fields_in(req_id, quote_fields(quote), now)
        self._settle()

    def _flush_quotes(self) -> None:
        # Every message runs to its end before the driver's next quote, so a subscriber never has
        # a quote in flight: no acknowledgement is asked for, and none is waited on.
        for symbol in self.fresh_quotes:
            book = self.books.get(symbol)
            if book is None or not book.fields:
                continue
            quote: Quote | None = None
            for listener in book.listeners:
                if listener.unsent:
                    quote = quote or book.quote()
                    self.tell(listener.address, QuoteUpdate(quote=quote, coalesced=listener.unsent,
                                                            ts_ns=self.now_ns(), ack=False))
                    listener.unsent = 0
        self.fresh_quotes.clear()
