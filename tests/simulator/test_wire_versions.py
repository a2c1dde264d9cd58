"""Third-party clients on old server versions: ib_async 2.1 ("v157..178") negotiates 178 and is understood.

ib_async writes its own request layouts and parses responses by unpacking fixed field lists, so
besides the ibapi oracle (test_wire_encode, test_wire_requests) its bytes are pinned here: the
payloads below were captured from ib_async 2.1.0 talking to this simulator at server version 178.
"""

from __future__ import annotations

from decimal import Decimal

import pytest
from ibapi import comm

from simulator.wire import (
    CancelMktData,
    CancelOrder,
    Contract,
    Encoder,
    ExecutionFilter,
    OrderParams,
    PlaceOrder,
    ReqAccountSummary,
    ReqCompletedOrders,
    ReqContractDetails,
    ReqExecutions,
    ReqGlobalCancel,
    ReqHistoricalData,
    ReqMktData,
    ReqRealTimeBars,
    Request,
    StartApi,
    decode_request,
    negotiate,
    parse_version_text,
    uses_protobuf,
)

D = Decimal
IB_ASYNC_SV = 178
# ib_async sends every contract field, the unset strike as "0.0".
AAPL = Contract(symbol="AAPL", sec_type="STK", strike=D(0), exchange="SMART", currency="USD")
_CONTRACT = b"0\x00AAPL\x00STK\x00\x000.0\x00\x00\x00SMART\x00\x00USD\x00\x00\x00"

IB_ASYNC_178: list[tuple[str, bytes, Request]] = [
    ("start_api", b"71\x002\x007\x00\x00", StartApi(client_id=7)),
    ("req_mkt_data", b"1\x0011\x001001\x00" + _CONTRACT + b"0\x00233,236\x000\x000\x00\x00",
     ReqMktData(req_id=1001, contract=AAPL, generic_ticks="233,236")),
    ("cancel_mkt_data", b"2\x002\x001001\x00", CancelMktData(req_id=1001)),
    ("place_order_bracket_parent",
     b"3\x0042\x000\x00AAPL\x00STK\x00\x000.0\x00\x00\x00SMART\x00\x00USD\x00\x00\x00\x00\x00BUY\x00100\x00"
     b"LMT\x00150.25\x00\x00GTC\x00OCA1\x00DU123\x00O\x000\x00g-17:entry\x000\x000\x000\x000\x000\x000\x001"
     b"\x000\x00\x000.0\x00\x00\x00\x00\x00\x00\x000\x00\x00-1\x003\x00\x00\x000\x00\x00\x000\x000\x00\x000"
     b"\x00\x00\x00\x00\x00\x000\x00\x00\x00\x00\x000\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x000\x00\x00"
     b"\x000\x000\x00\x00\x000\x00\x000\x000\x000\x000\x00\x00\x00\x00\x00\x00\x000\x00\x00\x00\x00\x00\x00"
     b"\x00\x00\x000\x000\x000\x000\x00\x00\x000\x00\x00\x00",
     PlaceOrder(order_id=42, contract=AAPL, order=OrderParams(
         action="BUY", total_quantity=D(100), order_type="LMT", lmt_price=D("150.25"), tif="GTC",
         oca_group="OCA1", oca_type=3, account="DU123", order_ref="g-17:entry", transmit=False, outside_rth=True))),
    ("place_order_bracket_stop",
     b"3\x0043\x000\x00AAPL\x00STK\x00\x000.0\x00\x00\x00SMART\x00\x00USD\x00\x00\x00\x00\x00SELL\x00100"
     b"\x00STP\x00\x00140.0\x00\x00\x00\x00O\x000\x00g-17:stop\x001\x0042\x000\x000\x000\x000\x000\x000\x00"
     b"\x000.0\x00\x00\x00\x00\x00\x00\x000\x00\x00-1\x000\x00\x00\x000\x00\x00\x000\x000\x00\x000\x00\x00"
     b"\x00\x00\x00\x000\x00\x00\x00\x00\x000\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x000\x00\x00\x000\x00"
     b"0\x00\x00\x000\x00\x000\x000\x000\x000\x00\x00\x00\x00\x00\x00\x000\x00\x00\x00\x00\x00\x00\x00\x00"
     b"\x000\x000\x000\x000\x00\x00\x000\x00\x00\x00",
     PlaceOrder(order_id=43, contract=AAPL, order=OrderParams(
         action="SELL", total_quantity=D(100), order_type="STP", aux_price=D(140), parent_id=42, transmit=True,
         order_ref="g-17:stop"))),
    ("place_order_trail",
     b"3\x0044\x000\x00AAPL\x00STK\x00\x000.0\x00\x00\x00SMART\x00\x00USD\x00\x00\x00\x00\x00SELL\x000.5"
     b"\x00TRAIL\x00\x00\x00DAY\x00\x00\x00O\x000\x00\x001\x000\x000\x000\x000\x000\x000\x000\x00\x000.0"
     b"\x00\x00\x00\x00\x00\x00\x000\x00\x00-1\x000\x00\x00\x000\x00\x00\x000\x000\x00\x000\x00\x00\x00\x00"
     b"\x00\x000\x00\x00\x00\x00\x000\x00\x0095.5\x002.0\x00\x00\x00\x00\x00\x00\x00\x000\x00\x00\x000\x000"
     b"\x00\x00\x000\x00\x000\x000\x000\x000\x00\x00\x00\x00\x00\x00\x000\x00\x00\x00\x00\x00\x00\x00\x00"
     b"\x000\x000\x000\x000\x00\x00\x000\x00\x00\x00",
     PlaceOrder(order_id=44, contract=AAPL, order=OrderParams(
         action="SELL", total_quantity=D("0.5"), order_type="TRAIL", trail_stop_price=D("95.5"),
         trailing_percent=D(2), tif="DAY"))),
    ("cancel_order", b"4\x001\x0042\x0020250102 10:00:00\x00",
     CancelOrder(order_id=42, manual_order_cancel_time="20250102 10:00:00")),
    ("req_executions", b"7\x003\x005001\x007\x00DU123\x00\x00AAPL\x00\x00\x00\x00",
     ReqExecutions(req_id=5001, filter=ExecutionFilter(client_id=7, account="DU123", symbol="AAPL"))),
    ("req_contract_details", b"9\x008\x003001\x00" + _CONTRACT + b"0\x00\x00\x00\x00",
     ReqContractDetails(req_id=3001, contract=AAPL)),
    ("req_historical_data",
     b"20\x004001\x00" + _CONTRACT + b"0\x00\x001 min\x002 D\x001\x00TRADES\x001\x000\x00\x00",
     ReqHistoricalData(req_id=4001, contract=AAPL, end_date_time="", duration="2 D", bar_size="1 min",
                       what_to_show="TRADES", use_rth=True, format_date=1, keep_up_to_date=False)),
    ("req_real_time_bars", b"50\x003\x004002\x00" + _CONTRACT + b"5\x00TRADES\x001\x00\x00",
     ReqRealTimeBars(req_id=4002, contract=AAPL, bar_size=5, what_to_show="TRADES", use_rth=True)),
    ("req_account_summary", b"62\x001\x009001\x00All\x00NetLiquidation,TotalCashValue\x00",
     ReqAccountSummary(req_id=9001, group="All", tags=("NetLiquidation", "TotalCashValue"))),
    ("req_completed_orders", b"99\x000\x00", ReqCompletedOrders(api_only=False)),
    ("req_global_cancel", b"58\x001\x00", ReqGlobalCancel()),
]


@pytest.mark.parametrize(("payload", "expected"), [c[1:] for c in IB_ASYNC_178], ids=[c[0] for c in IB_ASYNC_178])
def test_ib_async_request_at_178_decodes_to_its_value(payload: bytes, expected: Request) -> None:
    assert decode_request(payload, IB_ASYNC_SV) == expected


@pytest.mark.parametrize("wire", ["protobuf", "text"])
@pytest.mark.parametrize("text", [b"v157..178", b"v157..178 +PACEAPI"])
def test_ib_async_handshake_negotiates_178_text_in_either_wire_mode(text: bytes, wire: str) -> None:
    hello = parse_version_text(text)
    sv = negotiate(hello.lo, hello.hi, 226, wire=wire)  # type: ignore[arg-type]
    assert sv == IB_ASYNC_SV and not uses_protobuf(sv, wire)  # type: ignore[arg-type]


def _fields(frame: bytes) -> list[str]:
    """Return the fields of one text frame the way ib_async splits it (message id first)."""
    _size, payload, rest = comm.read_msg(frame)
    assert rest == b""
    return payload.decode().split("\0")[:-1]


ENCODER = Encoder(IB_ASYNC_SV, protobuf=False)


@pytest.mark.parametrize(("frame", "count"), [
    # ib_async snoops these two to decide the API is ready: `_, _, value = fields`.
    (ENCODER.next_valid_id(order_id=7), 3),
    (ENCODER.managed_accounts(accounts="DU1"), 3),
    # priceSizeTick: `_, _, reqId, tickType, price, size, _ = fields`.
    (ENCODER.tick_price(req_id=1, tick_type=1, price=D("1.5"), size=D(100), attr_mask=1), 7),
    # position: exactly 16 fields are unpacked (version 3 with tradingClass and avgCost).
    (ENCODER.position(account="DU1", contract=AAPL, position=D(10), avg_cost=D("1.5")), 16),
    # commissionReport: exactly 8.
    (ENCODER.commission_and_fees_report(exec_id="e1", commission=D(1), currency="USD"), 8),
])
def test_frames_ib_async_unpacks_by_position_have_its_field_count(frame: bytes, count: int) -> None:
    assert len(_fields(frame)) == count


def test_error_at_178_has_a_version_and_reject_json_but_no_error_time() -> None:
    # ib_async below 194: `_, _, reqId, errorCode, errorString, *rest`, then the JSON from 166.
    fields = _fields(ENCODER.error(req_id=42, code=202, message="Order Canceled - reason:", error_time_ms=1))
    assert fields == ["4", "2", "42", "202", "Order Canceled - reason:", ""]


def test_historical_data_at_178_carries_the_end_dates_before_the_bars() -> None:
    # ib_async: `_, reqId, startDateStr, endDateStr, numBars, *bars`, then historicalDataEnd.
    fields = _fields(ENCODER.historical_data(req_id=4001, bars=[], start="20250101 09:30:00", end="20250102"))
    assert fields == ["17", "4001", "20250101 09:30:00", "20250102", "0"]
    assert ENCODER.historical_data_end(req_id=4001, start="20250101 09:30:00", end="20250102") == b""
