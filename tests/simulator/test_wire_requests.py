"""Request decoding: the unmodified ibapi EClient writes real requests over a loopback socket; we decode them.

Each server version gets one real TCP connection: the test accepts it, answers the handshake with
the wire layer's own parse_handshake/negotiate/version_reply (announcing that version), and then
reads what the client's request methods put on the socket through FrameParser + decode_request.
Up to 200 every request is text, laid out as EClient gates it on that version (from ibapi's floor
100 through ib_async's 178); at 205 some are protobuf and the rest text with binary ids; at 226
every request is protobuf.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Callable, Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ibapi.client import EClient
from ibapi.const import UNSET_DOUBLE
from ibapi.contract import ComboLeg as IbComboLeg
from ibapi.contract import Contract as IbContract
from ibapi.execution import ExecutionFilter as IbExecutionFilter
from ibapi.order import Order as IbOrder
from ibapi.order_cancel import OrderCancel as IbOrderCancel
from ibapi.order_condition import PriceCondition
from ibapi.server_versions import (
    MIN_SERVER_VER_CASH_QTY,
    MIN_SERVER_VER_CME_TAGGING_FIELDS,
    MIN_SERVER_VER_FRACTIONAL_POSITIONS,
    MIN_SERVER_VER_MANUAL_ORDER_TIME,
    MIN_SERVER_VER_PARAMETRIZED_DAYS_OF_EXECUTIONS,
    MIN_SERVER_VER_PEGBEST_PEGMID_OFFSETS,
    MIN_SERVER_VER_PEGGED_TO_BENCHMARK,
    MIN_SERVER_VER_REQ_SMART_COMPONENTS,
    MIN_SERVER_VER_SYNT_REALTIME_BARS,
)
from ibapi.tag_value import TagValue
from ibapi.wrapper import EWrapper

from simulator.wire import (
    CancelAccountSummary,
    CancelHistoricalData,
    CancelMktData,
    CancelOrder,
    CancelPositions,
    CancelRealTimeBars,
    Contract,
    ExecutionFilter,
    FrameParser,
    Handshake,
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
    Request,
    StartApi,
    Unknown,
    UnsupportedRequest,
    WireError,
    decode_request,
    negotiate,
    parse_handshake,
    split_message_id,
    version_reply,
)

D = Decimal
DEADLINE_S = 5.0


class _ErrorRecorder(EWrapper):
    """EWrapper that remembers client-side errors, so a request the client refused is reported."""

    def __init__(self) -> None:
        super().__init__()
        self.errors: list[tuple[Any, ...]] = []

    def error(self, *args: Any) -> None:
        self.errors.append(args)


@dataclass
class Loopback:
    """A real EClient connected to a socket this test serves with the wire layer."""

    server_version: int
    client: EClient
    wrapper: _ErrorRecorder
    conn: socket.socket
    hello: Handshake
    parser: FrameParser = field(default_factory=FrameParser)
    ready: list[bytes] = field(default_factory=list)
    start_api: Request | None = None

    def next_payload(self) -> bytes:
        deadline = time.monotonic() + DEADLINE_S
        while not self.ready:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no request arrived; client errors: {self.wrapper.errors}")
            self.conn.settimeout(remaining)
            data = self.conn.recv(65536)
            assert data, "client closed the socket"
            self.ready.extend(self.parser.feed(data))
        return self.ready.pop(0)

    def capture(self, send: Callable[[EClient], None]) -> bytes:
        """Return the frame payload the real client wrote for `send`."""
        send(self.client)
        return self.next_payload()

    def request(self, send: Callable[[EClient], None]) -> Request:
        return decode_request(self.capture(send), self.server_version)


# Versions with a request gate at or next to them (ibapi's floor, the 9.81 client's 157, ib_async's
# 178, ...), then the text/protobuf mix at 205 and all-protobuf 226.
REQUEST_VERSIONS = [100, 157, 163, 173, 176, 178, 187, 190, 193, 194, 196, 199, 200, 205, 226]
FUZZ_VERSIONS = [100, 178, 200, 205, 226]


def _version_id(sv: int) -> str:
    return f"sv{sv}-" + ("text" if sv <= 200 else "mixed" if sv < 213 else "protobuf")


@pytest.fixture(scope="module", params=REQUEST_VERSIONS, ids=_version_id)
def loopback(request: pytest.FixtureRequest) -> Iterator[Loopback]:
    with _connected(request.param) as lb:
        yield lb


@pytest.fixture(scope="module", params=FUZZ_VERSIONS, ids=_version_id)
def fuzz_loopback(request: pytest.FixtureRequest) -> Iterator[Loopback]:
    with _connected(request.param) as lb:
        yield lb


@contextlib.contextmanager
def _connected(server_version: int) -> Iterator[Loopback]:
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(DEADLINE_S)
    wrapper = _ErrorRecorder()
    client = EClient(wrapper)
    client.setConnectOptions("+PACEAPI")
    client.setOptionalCapabilities("cap-x")
    connecting = threading.Thread(target=client.connect, args=("127.0.0.1", listener.getsockname()[1], 7),
                                  daemon=True)
    connecting.start()
    conn, _ = listener.accept()
    conn.settimeout(DEADLINE_S)
    buf = b""
    while (got := parse_handshake(buf)) is None:
        data = conn.recv(4096)
        assert data, "client closed during the handshake"
        buf += data
    hello, used = got
    conn.sendall(version_reply(negotiate(hello.lo, hello.hi, server_version), "20250102 10:00:00 UTC"))
    connecting.join(DEADLINE_S)
    if server_version < MIN_SERVER_VER_CASH_QTY:
        # ibapi 10.50 refuses every order below CASH_QTY (111): its `if order.cashQty` check is true
        # for the UNSET_DOUBLE default. A user of such a server clears cashQty first.
        place = client.placeOrder

        def place_without_cash_qty(order_id: int, contract: IbContract, order: IbOrder) -> None:
            order.cashQty = 0.0
            place(order_id, contract, order)

        client.placeOrder = place_without_cash_qty
    lb = Loopback(server_version=server_version, client=client, wrapper=wrapper, conn=conn, hello=hello)
    lb.ready.extend(lb.parser.feed(buf[used:]))
    try:
        lb.start_api = decode_request(lb.next_payload(), lb.server_version)   # EClient sends it unasked
        yield lb
    finally:
        client.disconnect()
        conn.close()
        listener.close()


def stock(symbol: str = "AAPL") -> IbContract:
    c = IbContract()
    c.symbol, c.secType, c.exchange, c.currency = symbol, "STK", "SMART", "USD"
    return c


def ib_order(**attrs: Any) -> IbOrder:
    order = IbOrder()
    for name, value in attrs.items():
        setattr(order, name, value)
    return order


AAPL = Contract(symbol="AAPL", sec_type="STK", exchange="SMART", currency="USD")


def test_handshake_from_real_client_carries_range_and_connect_options(loopback: Loopback) -> None:
    assert loopback.hello == Handshake(100, 226, "+PACEAPI")


def test_real_client_accepts_the_version_reply(loopback: Loopback) -> None:
    assert loopback.client.serverVersion() == loopback.server_version
    assert loopback.client.isConnected()


def test_start_api_decodes_client_id_and_capabilities(loopback: Loopback) -> None:
    assert loopback.start_api == StartApi(client_id=7, optional_capabilities="cap-x")


def test_request_ids_use_the_binary_id_and_protobuf_offset_of_the_version(loopback: Loopback) -> None:
    raw_id, _body = split_message_id(loopback.capture(lambda c: c.reqIds(-1)), loopback.server_version)
    assert raw_id == (208 if loopback.server_version >= 213 else 8)


# The expected value, or a function of the server version returning it.
SIMPLE: list[tuple[str, Callable[[EClient], None], Request | Callable[[int], Request]]] = [
    ("req_ids", lambda c: c.reqIds(-1), ReqIds(num_ids=-1)),
    ("req_current_time", lambda c: c.reqCurrentTime(), ReqCurrentTime()),
    ("req_market_data_type", lambda c: c.reqMarketDataType(3), ReqMarketDataType(market_data_type=3)),
    ("req_mkt_data", lambda c: c.reqMktData(1001, stock(), "233,236", False, False, []),
     ReqMktData(req_id=1001, contract=AAPL, generic_ticks="233,236")),
    ("req_mkt_data_snapshot", lambda c: c.reqMktData(1002, stock("MSFT"), "", True, True, []),
     lambda sv: ReqMktData(req_id=1002, contract=Contract(symbol="MSFT", sec_type="STK", exchange="SMART",
                                                          currency="USD"),
                           snapshot=True, regulatory_snapshot=sv >= MIN_SERVER_VER_REQ_SMART_COMPONENTS)),
    ("cancel_mkt_data", lambda c: c.cancelMktData(1001), CancelMktData(req_id=1001)),
    ("cancel_order", lambda c: c.cancelOrder(42, IbOrderCancel()), CancelOrder(order_id=42)),
    ("req_global_cancel", lambda c: c.reqGlobalCancel(IbOrderCancel()), ReqGlobalCancel()),
    ("req_open_orders", lambda c: c.reqOpenOrders(), ReqOpenOrders()),
    ("req_all_open_orders", lambda c: c.reqAllOpenOrders(), ReqAllOpenOrders()),
    ("req_auto_open_orders", lambda c: c.reqAutoOpenOrders(True), ReqAutoOpenOrders(auto_bind=True)),
    ("req_completed_orders", lambda c: c.reqCompletedOrders(True), ReqCompletedOrders(api_only=True)),
    ("req_completed_orders_all", lambda c: c.reqCompletedOrders(False), ReqCompletedOrders(api_only=False)),
    ("req_positions", lambda c: c.reqPositions(), ReqPositions()),
    ("cancel_positions", lambda c: c.cancelPositions(), CancelPositions()),
    ("req_account_summary",
     lambda c: c.reqAccountSummary(9001, "All", "NetLiquidation,TotalCashValue,BuyingPower"),
     ReqAccountSummary(req_id=9001, group="All", tags=("NetLiquidation", "TotalCashValue", "BuyingPower"))),
    ("cancel_account_summary", lambda c: c.cancelAccountSummary(9001), CancelAccountSummary(req_id=9001)),
    ("req_executions", lambda c: c.reqExecutions(5001, IbExecutionFilter()),
     ReqExecutions(req_id=5001, filter=ExecutionFilter())),
    ("req_contract_details", lambda c: c.reqContractDetails(3001, stock()),
     ReqContractDetails(req_id=3001, contract=AAPL)),
    ("req_historical_data",
     lambda c: c.reqHistoricalData(4001, stock(), "", "2 D", "1 min", "TRADES", 1, 1, False, []),
     ReqHistoricalData(req_id=4001, contract=AAPL, end_date_time="", duration="2 D", bar_size="1 min",
                       what_to_show="TRADES", use_rth=True, format_date=1, keep_up_to_date=False)),
    ("req_historical_data_keep_up",
     lambda c: c.reqHistoricalData(4003, stock(), "20250102 16:00:00 US/Eastern", "1 D", "5 mins", "MIDPOINT",
                                   0, 2, True, []),
     lambda sv: ReqHistoricalData(req_id=4003, contract=AAPL, end_date_time="20250102 16:00:00 US/Eastern",
                                  duration="1 D", bar_size="5 mins", what_to_show="MIDPOINT", use_rth=False,
                                  format_date=2, keep_up_to_date=sv >= MIN_SERVER_VER_SYNT_REALTIME_BARS)),
    ("cancel_historical_data", lambda c: c.cancelHistoricalData(4001), CancelHistoricalData(req_id=4001)),
    ("req_real_time_bars", lambda c: c.reqRealTimeBars(4002, stock(), 5, "TRADES", True, []),
     ReqRealTimeBars(req_id=4002, contract=AAPL, bar_size=5, what_to_show="TRADES", use_rth=True)),
    ("cancel_real_time_bars", lambda c: c.cancelRealTimeBars(4002), CancelRealTimeBars(req_id=4002)),
    ("req_managed_accts", lambda c: c.reqManagedAccts(), ReqManagedAccts()),
]


@pytest.mark.parametrize(("send", "expected"), [c[1:] for c in SIMPLE], ids=[c[0] for c in SIMPLE])
def test_real_client_request_decodes_to_its_value(loopback: Loopback, send: Callable, expected: Any) -> None:
    if callable(expected):
        expected = expected(loopback.server_version)
    assert loopback.request(send) == expected


def test_contract_fields_of_a_fully_specified_contract_survive(loopback: Loopback) -> None:
    c = stock()
    c.conId, c.primaryExchange, c.localSymbol, c.tradingClass, c.multiplier = 265598, "NASDAQ", "AAPL", "NMS", "1"
    c.lastTradeDateOrContractMonth, c.right = "20250117", "C"
    c.strike = 150.5
    request = loopback.request(lambda client: client.reqMktData(1003, c, "", False, False, []))
    assert request == ReqMktData(req_id=1003, contract=Contract(
        con_id=265598, symbol="AAPL", sec_type="STK", last_trade_date="20250117", strike=D("150.5"), right="C",
        multiplier="1", exchange="SMART", primary_exchange="NASDAQ", currency="USD", local_symbol="AAPL",
        trading_class="NMS"))


def test_execution_filter_fields_survive(loopback: Loopback) -> None:
    f = IbExecutionFilter()
    f.clientId, f.acctCode, f.symbol, f.secType, f.exchange, f.side = 7, "DU123", "AAPL", "STK", "SMART", "BUY"
    f.time = "20250102 09:30:00"
    days = loopback.server_version >= MIN_SERVER_VER_PARAMETRIZED_DAYS_OF_EXECUTIONS   # else the client refuses
    if days:
        f.lastNDays, f.specificDates = 3, [20250102, 20250103]
    assert loopback.request(lambda c: c.reqExecutions(5002, f)) == ReqExecutions(req_id=5002, filter=ExecutionFilter(
        client_id=7, account="DU123", time="20250102 09:30:00", symbol="AAPL", sec_type="STK", exchange="SMART",
        side="BUY", last_n_days=3 if days else None, specific_dates=(20250102, 20250103) if days else ()))


def test_bracket_parent_with_transmit_false_decodes_held(loopback: Loopback) -> None:
    parent = ib_order(orderId=42, action="BUY", totalQuantity=D(100), orderType="LMT", lmtPrice=150.25, tif="GTC",
                      ocaGroup="OCA1", ocaType=3, account="DU123", orderRef="g-17:entry", transmit=False,
                      outsideRth=True, goodTillDate="20250110 16:00:00 US/Eastern")
    request = loopback.request(lambda c: c.placeOrder(42, stock(), parent))
    assert request == PlaceOrder(order_id=42, contract=AAPL, order=OrderParams(
        action="BUY", total_quantity=D(100), order_type="LMT", lmt_price=D("150.25"), tif="GTC", oca_group="OCA1",
        oca_type=3, account="DU123", order_ref="g-17:entry", transmit=False, outside_rth=True,
        good_till_date="20250110 16:00:00 US/Eastern"))


def test_bracket_child_stop_decodes_parent_id_and_transmit(loopback: Loopback) -> None:
    child = ib_order(action="SELL", totalQuantity=D(100), orderType="STP", auxPrice=140.0, parentId=42,
                     transmit=True, orderRef="g-17:stop")
    request = loopback.request(lambda c: c.placeOrder(43, stock(), child))
    assert request == PlaceOrder(order_id=43, contract=AAPL, order=OrderParams(
        action="SELL", total_quantity=D(100), order_type="STP", aux_price=D(140), parent_id=42, transmit=True,
        order_ref="g-17:stop"))


def test_trailing_stop_decodes_trail_fields_and_fractional_quantity(loopback: Loopback) -> None:
    trail = ib_order(action="SELL", totalQuantity=D("0.5"), orderType="TRAIL", trailStopPrice=95.5,
                     trailingPercent=2.0, tif="DAY")
    request = loopback.request(lambda c: c.placeOrder(44, stock(), trail))
    assert isinstance(request, PlaceOrder)
    # Before FRACTIONAL_POSITIONS (101) the client sends int(totalQuantity).
    quantity = D("0.5") if loopback.server_version >= MIN_SERVER_VER_FRACTIONAL_POSITIONS else D(0)
    assert (request.order.order_type, request.order.total_quantity, request.order.trail_stop_price,
            request.order.trailing_percent, request.order.lmt_price, request.order.aux_price) == (
        "TRAIL", quantity, D("95.5"), D("2.0"), None, None)


def test_order_with_value_dependent_sections_keeps_text_alignment(loopback: Loopback) -> None:
    # Hedge, scale, delta-neutral and algo sections each insert fields in text PLACE_ORDER.
    order = ib_order(action="BUY", totalQuantity=D(300), orderType="LMT", lmtPrice=10.0, hedgeType="D",
                     hedgeParam="0.5", scaleInitLevelSize=100, scaleSubsLevelSize=50, scalePriceIncrement=0.05,
                     scalePriceAdjustValue=0.01, scalePriceAdjustInterval=60, deltaNeutralOrderType="LMT",
                     deltaNeutralAuxPrice=1.0, algoStrategy="Adaptive",
                     algoParams=[TagValue("adaptivePriority", "Normal")], whatIf=True, orderRef="kitchen")
    request = loopback.request(lambda c: c.placeOrder(45, stock(), order))
    assert isinstance(request, PlaceOrder)
    assert (request.order_id, request.order.algo_strategy, request.order.what_if, request.order.order_ref,
            request.order.lmt_price, request.order.total_quantity) == (45, "Adaptive", True, "kitchen",
                                                                       D(10), D(300))


def test_peg_mid_order_on_ibkrats_keeps_text_alignment(loopback: Loopback) -> None:
    contract = stock()
    contract.exchange = "IBKRATS"
    order = ib_order(action="BUY", totalQuantity=D(10), orderType="PEG MID", orderRef="peg")
    if loopback.server_version >= MIN_SERVER_VER_PEGBEST_PEGMID_OFFSETS:   # else the client refuses them
        order.minTradeQty, order.midOffsetAtWhole, order.midOffsetAtHalf = 5, 0.01, 0.005
    request = loopback.request(lambda c: c.placeOrder(46, contract, order))
    assert isinstance(request, PlaceOrder)
    assert (request.contract.exchange, request.order.order_type, request.order.order_ref) == (
        "IBKRATS", "PEG MID", "peg")


def test_combo_order_decodes_its_legs(loopback: Loopback) -> None:
    bag = IbContract()
    bag.symbol, bag.secType, bag.exchange, bag.currency = "AAPL,MSFT", "BAG", "SMART", "USD"
    legs = []
    for con_id, action in ((265598, "BUY"), (272093, "SELL")):
        leg = IbComboLeg()
        leg.conId, leg.ratio, leg.action, leg.exchange = con_id, 1, action, "SMART"
        legs.append(leg)
    bag.comboLegs = legs
    order = ib_order(action="BUY", totalQuantity=D(1), orderType="MKT", orderRef="pair")
    request = loopback.request(lambda c: c.placeOrder(47, bag, order))
    assert isinstance(request, PlaceOrder)
    assert [(leg.con_id, leg.ratio, leg.action) for leg in request.contract.combo_legs] == [
        (265598, 1, "BUY"), (272093, 1, "SELL")]
    assert request.order.order_ref == "pair"


def test_order_with_conditions_raises_unsupported_with_the_order_id(loopback: Loopback) -> None:
    condition = PriceCondition(PriceCondition.TriggerMethodEnum.Default, 265598, "SMART", True, 150.0)
    order = ib_order(action="BUY", totalQuantity=D(1), orderType="MKT", conditions=[condition])
    payload = loopback.capture(lambda c: c.placeOrder(48, stock(), order))
    if loopback.server_version < MIN_SERVER_VER_PEGGED_TO_BENCHMARK:
        # Conditions came with PEGGED_TO_BENCHMARK: an older client silently leaves them out.
        request = decode_request(payload, loopback.server_version)
        assert isinstance(request, PlaceOrder) and request.order_id == 48
        return
    with pytest.raises(UnsupportedRequest) as caught:
        decode_request(payload, loopback.server_version)
    assert (caught.value.msg_id, caught.value.request_id) == (3, 48)


def test_cancel_order_with_cme_tagging_fields_decodes_them(loopback: Loopback) -> None:
    sv = loopback.server_version
    cancel = IbOrderCancel()          # the client refuses fields its server version lacks
    expected = CancelOrder(order_id=42)
    if sv >= MIN_SERVER_VER_MANUAL_ORDER_TIME:
        cancel.manualOrderCancelTime = "20250102 10:00:00"
        expected = CancelOrder(order_id=42, manual_order_cancel_time="20250102 10:00:00")
    if sv >= MIN_SERVER_VER_CME_TAGGING_FIELDS:
        cancel.extOperator, cancel.manualOrderIndicator = "op7", 1
        expected = CancelOrder(order_id=42, manual_order_cancel_time="20250102 10:00:00", ext_operator="op7",
                               manual_order_indicator=1)
    assert loopback.request(lambda c: c.cancelOrder(42, cancel)) == expected


def test_global_cancel_with_cme_tagging_fields_decodes_them(loopback: Loopback) -> None:
    cancel = IbOrderCancel()
    expected = ReqGlobalCancel()
    if loopback.server_version >= MIN_SERVER_VER_CME_TAGGING_FIELDS:
        cancel.extOperator, cancel.manualOrderIndicator = "op7", 0
        expected = ReqGlobalCancel(ext_operator="op7", manual_order_indicator=0)
    assert loopback.request(lambda c: c.reqGlobalCancel(cancel)) == expected


def test_request_the_simulator_does_not_model_decodes_as_unknown(loopback: Loopback) -> None:
    request = loopback.request(lambda c: c.reqNewsBulletins(True))
    assert request == Unknown(msg_id=12, protobuf=loopback.server_version >= 209)


def test_truncated_place_order_raises_wire_error_naming_message_and_order(loopback: Loopback) -> None:
    payload = loopback.capture(lambda c: c.placeOrder(49, stock(), ib_order(action="BUY", totalQuantity=D(1),
                                                                            orderType="MKT")))
    with pytest.raises(WireError) as caught:
        decode_request(payload[:-3], loopback.server_version)
    assert caught.value.msg_id == 3


# ---------------------------------------------------------------------------------------------
# Hand-made malformed input (no client needed).

TEXT_PLACE_ORDER_HEAD = b"3\x0042\x00"


@pytest.mark.parametrize(("payload", "server_version"), [
    (b"", 200),
    (b"", 226),
    (b"\x00\x00\x03", 226),
    (b"abc\x001\x00", 200),
    (b"12345678901\x00", 200),
    (b"8\x001\x00-1", 200),                 # last field not NUL-terminated
    (b"8\x001\x00x1\x00", 200),             # non-numeric numIds
    (b"8\x001\x00", 200),                   # truncated: numIds missing
    (b"8\x001\x00-1\x00extra\x00", 200),    # one field too many
    (b"71\x002\x007\x00\xff\xfe\x00", 200),  # capabilities not UTF-8
    (TEXT_PLACE_ORDER_HEAD + b"0\x00", 200),
    ((3).to_bytes(4, "big") + b"42\x00", 226),
    ((203).to_bytes(4, "big") + b"\xff\xff\xff", 226),
    ((208).to_bytes(4, "big") + b"\x08", 226),  # truncated varint
])
def test_malformed_request_raises_wire_error(payload: bytes, server_version: int) -> None:
    with pytest.raises(WireError):
        decode_request(payload, server_version)


def test_protobuf_order_with_nan_price_raises_wire_error() -> None:
    from ibapi.protobuf.PlaceOrderRequest_pb2 import PlaceOrderRequest
    message = PlaceOrderRequest(orderId=5)
    message.order.lmtPrice = float("nan")
    with pytest.raises(WireError) as caught:
        decode_request((203).to_bytes(4, "big") + message.SerializeToString(), 226)
    assert (caught.value.msg_id, caught.value.request_id) == (3, 5)


@pytest.mark.parametrize("quantity", ["1e99999", "abc", "NaN", "Infinity", "1_000"])
def test_protobuf_order_with_bad_decimal_quantity_raises_wire_error(quantity: str) -> None:
    from ibapi.protobuf.PlaceOrderRequest_pb2 import PlaceOrderRequest
    message = PlaceOrderRequest(orderId=5)
    message.order.totalQuantity = quantity
    with pytest.raises(WireError):
        decode_request((203).to_bytes(4, "big") + message.SerializeToString(), 226)


def test_text_sentinels_for_unset_doubles_decode_as_none() -> None:
    # A Java TWS-style spelling, Python's repr, and "" all mean UNSET_DOUBLE.
    contract = b"0\x00AAPL\x00STK\x00\x00%s\x00\x00\x00SMART\x00\x00USD\x00\x00\x00"
    for strike in (b"", b"1.7976931348623157E308", b"1.7976931348623157e+308"):
        payload = b"1\x0011\x001001\x00" + contract % strike + b"0\x00\x000\x000\x00\x00"
        request = decode_request(payload, 200)
        assert isinstance(request, ReqMktData) and request.contract.strike is None


# ---------------------------------------------------------------------------------------------
# Property: nothing but WireError ever escapes decode_request.

KNOWN_TEXT_IDS = [1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 20, 25, 49, 50, 51, 58, 59, 61, 62, 63, 64, 71, 99]
_field = st.one_of(
    st.sampled_from([b"", b"0", b"1", b"-1", b"2147483647", b"1.5", b"1e5", b"BAG", b"PEG BENCH", b"PEG BEST",
                     b"Infinity", b"IBKRATS", b"LMT", b"nan", b"1.7976931348623157E308", b"999999999999999999999"]),
    st.binary(max_size=6).filter(lambda b: b"\0" not in b),
)


@given(msg_id=st.sampled_from(KNOWN_TEXT_IDS), fields=st.lists(_field, max_size=130), terminated=st.booleans(),
       server_version=st.sampled_from([100, 157, 178, 189, 193, 200]))
def test_text_requests_from_random_fields_raise_only_wire_error(msg_id: int, fields: list[bytes],
                                                                terminated: bool, server_version: int) -> None:
    body = b"\0".join(fields) + (b"\0" if terminated and fields else b"")
    try:
        decode_request(b"%d\0" % msg_id + body, server_version)
    except WireError:
        pass


@given(msg_id=st.sampled_from(KNOWN_TEXT_IDS), body=st.binary(max_size=300))
def test_protobuf_requests_from_random_bytes_raise_only_wire_error(msg_id: int, body: bytes) -> None:
    try:
        decode_request((msg_id + 200).to_bytes(4, "big") + body, 226)
    except WireError:
        pass


def _order_sends(server_version: int) -> list[Callable[[EClient], None]]:
    bag = IbContract()
    bag.symbol, bag.secType, bag.exchange, bag.currency = "X", "BAG", "IBKRATS", "USD"
    leg = IbComboLeg()
    leg.conId, leg.ratio, leg.action, leg.exchange = 1, 1, "BUY", "SMART"
    bag.comboLegs = [leg]
    # competeAgainstBestOffset exists from PEGBEST_PEGMID_OFFSETS: an older client refuses the order.
    offset = float("inf") if server_version >= MIN_SERVER_VER_PEGBEST_PEGMID_OFFSETS else UNSET_DOUBLE
    return [
        lambda c: c.placeOrder(60, stock(), ib_order(action="BUY", totalQuantity=D(1), orderType="LMT",
                                                     lmtPrice=1.0, transmit=False, parentId=59)),
        lambda c: c.placeOrder(61, bag, ib_order(action="BUY", totalQuantity=D(1), orderType="PEG BEST",
                                                 competeAgainstBestOffset=offset, hedgeType="D",
                                                 hedgeParam="1", algoStrategy="Vwap", algoParams=[TagValue("a", "b")],
                                                 scalePriceIncrement=0.1, deltaNeutralOrderType="MKT")),
        lambda c: c.placeOrder(62, stock(), ib_order(action="SELL", totalQuantity=D(1), orderType="PEG BENCH")),
    ]


@pytest.fixture(scope="module")
def seed_payloads(fuzz_loopback: Loopback) -> list[bytes]:
    """Real client payloads of every request kind, to mutate."""
    sends = [c[1] for c in SIMPLE] + _order_sends(fuzz_loopback.server_version)
    return [fuzz_loopback.capture(send) for send in sends]


def test_seed_requests_of_every_kind_decode(fuzz_loopback: Loopback, seed_payloads: list[bytes]) -> None:
    for payload in seed_payloads:
        assert not isinstance(decode_request(payload, fuzz_loopback.server_version), Unknown)


@settings(max_examples=120)     # per server version: five of them share the old 3 x 200 budget
@given(data=st.data())
def test_mutated_real_requests_raise_only_wire_error(fuzz_loopback: Loopback, seed_payloads: list[bytes],
                                                     data: st.DataObject) -> None:
    loopback = fuzz_loopback
    payload = data.draw(st.sampled_from(seed_payloads))
    raw_id, body = split_message_id(payload, loopback.server_version)
    head = payload[:len(payload) - len(body)]
    if raw_id > 200:
        cut = data.draw(st.integers(0, len(body)))
        body = body[:cut] + data.draw(st.binary(max_size=8)) + body[cut + data.draw(st.integers(0, 4)):]
    else:
        fields = body.split(b"\0")[:-1]
        for _ in range(data.draw(st.integers(1, 3))):
            at = data.draw(st.integers(0, len(fields)))
            action = data.draw(st.sampled_from(["replace", "delete", "insert"]))
            if action == "insert" or not fields or at == len(fields):
                fields.insert(at, data.draw(_field))
            elif action == "delete":
                del fields[at]
            else:
                fields[at] = data.draw(_field)
        body = b"".join(f + b"\0" for f in fields)
    try:
        decode_request(head + body, loopback.server_version)
    except WireError:
        pass


HOSTILE_FIELDS = [b"", b"x", b"-1", b"1.5", b"99999999999999999999", b"nan", b"Infinity", b"BAG", b"PEG BENCH",
                  b"\xff"]


def _decodes_or_wire_error(payload: bytes, server_version: int) -> None:
    try:
        decode_request(payload, server_version)
    except WireError:
        pass


def test_every_field_of_real_requests_tolerates_hostile_values(fuzz_loopback: Loopback,
                                                               seed_payloads: list[bytes]) -> None:
    sv = fuzz_loopback.server_version
    for payload in seed_payloads:
        raw_id, body = split_message_id(payload, sv)
        head = payload[:len(payload) - len(body)]
        if raw_id > 200:
            for at in range(len(body) + 1):
                _decodes_or_wire_error(head + body[:at], sv)
                _decodes_or_wire_error(head + body[:at] + bytes([body[at] ^ 0xFF]) + body[at + 1:]
                                       if at < len(body) else head + body + b"\xff", sv)
            continue
        fields = body.split(b"\0")[:-1]
        for at in range(len(fields)):
            for value in HOSTILE_FIELDS:
                mutated = fields[:at] + [value] + fields[at + 1:]
                _decodes_or_wire_error(head + b"".join(f + b"\0" for f in mutated), sv)
            _decodes_or_wire_error(head + b"".join(f + b"\0" for f in fields[:at] + fields[at + 1:]), sv)


@given(payload=st.binary(max_size=200), server_version=st.sampled_from([100, 157, 178, 200, 205, 226]))
def test_random_payload_raises_only_wire_error(payload: bytes, server_version: int) -> None:
    try:
        decode_request(payload, server_version)
    except WireError:
        pass
