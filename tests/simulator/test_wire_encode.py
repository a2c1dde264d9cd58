"""Every simulator encoder, in every mode and server version, round-trips through ibapi's EClient.run and Decoder.

The oracle is the unmodified ibapi client code: frames are cut with `comm.read_msg` (what EReader
does), queued on a real `EClient`'s `msg_queue`, and dispatched by `EClient.run()` itself (binary or
text id, protobuf or text body) into `Decoder` and a recording `EWrapper`. Nothing is patched; the
client simply has no socket, so `run()` returns once the queue is empty. ibapi's text decoder is
gated on the server version for every version from 100, so each check says what a client of that
version must see (e.g. no errorTime below 194, no mktCapPrice below 131).
"""

from __future__ import annotations

import functools
import inspect
from decimal import Decimal
from typing import Any, Callable

import pytest
from ibapi import comm
from ibapi.client import EClient
from ibapi.const import UNSET_DECIMAL, UNSET_DOUBLE
from ibapi.decoder import Decoder
from ibapi.errors import BAD_MESSAGE, UNKNOWN_ID
from ibapi.server_versions import (
    MIN_SERVER_VER_ADVANCED_ORDER_REJECT,
    MIN_SERVER_VER_ERROR_TIME,
    MIN_SERVER_VER_HISTORICAL_DATA_END,
    MIN_SERVER_VER_LAST_LIQUIDITY,
    MIN_SERVER_VER_MARKET_CAP_PRICE,
    MIN_SERVER_VER_PAST_LIMIT,
    MIN_SERVER_VER_PRE_OPEN_BID_ASK,
    MIN_SERVER_VER_SIZE_RULES,
    MIN_SERVER_VER_STOCK_TYPE,
    MIN_SERVER_VER_SUBMITTER,
)
from ibapi.wrapper import EWrapper

from simulator import wire_text
from simulator.wire_base import Layout, since
from simulator.wire import (
    Contract,
    ContractDetails,
    Encoder,
    ExecutionReport,
    HistoricalBar,
    OrderParams,
)

D = Decimal

# Text versions with a gate at or next to them: ibapi's floor, the 9.81 client's 157, ib_async's 178, ...
TEXT_VERSIONS = [100, 157, 163, 173, 176, 178, 187, 190, 193, 194, 196, 199, 200]
# (server version, protobuf): text up to 200, the text/binary-id hybrid at 226, protobuf at 201 and 226.
MODES = [(sv, False) for sv in TEXT_VERSIONS] + [(226, False), (201, True), (226, True)]
MODE_IDS = [f"text-{sv}" for sv in TEXT_VERSIONS] + ["text-226", "proto-201", "proto-226"]

AAPL = Contract(con_id=265598, symbol="AAPL", sec_type="STK", exchange="SMART", primary_exchange="NASDAQ",
                currency="USD", local_symbol="AAPL", trading_class="NMS")
PARENT = OrderParams(action="BUY", total_quantity=D("100"), order_type="LMT", lmt_price=D("150.25"), tif="GTC",
                     oca_group="OCA1", oca_type=3, order_ref="g-17:entry", account="DU123", outside_rth=True,
                     parent_id=41, client_id=7, perm_id=1234567890123, transmit=False)
TRAIL = OrderParams(action="SELL", total_quantity=D("0.5"), order_type="TRAIL", trail_stop_price=D("95.5"),
                    trailing_percent=D("2"), tif="DAY", order_ref="g-17:stop", account="DU123", client_id=7,
                    perm_id=77)
FILL = ExecutionReport(order_id=42, exec_id="0001f4e8.65a1b2c3.01.01", time="20250102  10:15:00",
                       account="DU123", exchange="ISLAND", side="BOT", shares=D("60"), price=D("150.25"),
                       perm_id=1234567890123, client_id=7, cum_qty=D("60"), avg_price=D("150.25"),
                       order_ref="g-17:entry", last_liquidity=1, submitter="sim")


class _Recorder(EWrapper):
    """An EWrapper whose every callback appends (name, args) to `calls`."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, tuple[Any, ...]]] = []
        for name, _ in inspect.getmembers(EWrapper, inspect.isfunction):
            if not name.startswith("_"):
                setattr(self, name, self._record(name))

    def _record(self, name: str) -> Callable[..., None]:
        def record(*args: Any) -> None:
            self.calls.append((name, args))
        return record


@functools.cache
def _oracle(server_version: int) -> tuple[_Recorder, Decoder]:
    """Return a recorder and ibapi's Decoder for `server_version` (building a Decoder costs ~1.5 ms)."""
    recorder = _Recorder()
    return recorder, Decoder(recorder, server_version)


def ibapi_callbacks(frames: bytes, server_version: int) -> list[tuple[str, tuple[Any, ...]]]:
    """Return the EWrapper callbacks ibapi fires for `frames` at `server_version`."""
    recorder, decoder = _oracle(server_version)
    recorder.calls = []
    client = EClient(recorder)
    client.serverVersion_ = server_version
    client.decoder = decoder
    rest = frames
    while rest:
        _size, payload, rest = comm.read_msg(rest)
        assert payload, "incomplete frame"
        client.msg_queue.put(payload)
    client.run()
    return recorder.calls


def only(calls: list[tuple[str, tuple[Any, ...]]], name: str) -> list[tuple[Any, ...]]:
    """Return the args of every `name` callback; ProtoBuf mirror callbacks are ignored."""
    complaints = (BAD_MESSAGE.code(), UNKNOWN_ID.code())
    assert not [c for c in calls if c[0] == "error" and c[1][2] in complaints], f"decoder complained: {calls}"
    return [args for n, args in calls if n == name]


def one(calls: list[tuple[str, tuple[Any, ...]]], name: str) -> tuple[Any, ...]:
    found = only(calls, name)
    assert len(found) == 1, f"expected one {name}, got {calls}"
    return found[0]


def _check_contract(contract: Any) -> None:
    assert (contract.conId, contract.symbol, contract.secType, contract.exchange, contract.currency,
            contract.localSymbol, contract.tradingClass) == (265598, "AAPL", "STK", "SMART", "USD", "AAPL", "NMS")


# ---------------------------------------------------------------------------------------------
# Cases: (id, build(encoder) -> frame bytes, check(callbacks)).


def _check_managed(calls: list, sv: int) -> None:
    assert one(calls, "managedAccounts") == ("DU123,DU456",)


def _check_next_valid_id(calls: list, sv: int) -> None:
    assert one(calls, "nextValidId") == (1001,)


def _check_error(calls: list, sv: int) -> None:
    error_time = 1735812000123 if sv >= MIN_SERVER_VER_ERROR_TIME else 0
    reject_json = '{"reason":"x"}' if sv >= MIN_SERVER_VER_ADVANCED_ORDER_REJECT else ""
    assert one(calls, "error") == (42, error_time, 202, "Order Canceled - reason: caf\u00e9 \\ 100%", reject_json)


def _check_system_error(calls: list, sv: int) -> None:
    error_time = 1735812000000 if sv >= MIN_SERVER_VER_ERROR_TIME else 0
    assert one(calls, "error") == (-1, error_time, 2104, "Market data farm connection is OK:usfarm", "")


def _check_current_time(calls: list, sv: int) -> None:
    assert one(calls, "currentTime") == (1735812000,)


def _check_tick_price(calls: list, sv: int) -> None:
    req_id, tick_type, price, attrib = one(calls, "tickPrice")
    # attrMask 3: canAutoExecute + pastLimit; before PAST_LIMIT the field is canAutoExecute alone.
    assert (req_id, tick_type, price, attrib.canAutoExecute, attrib.pastLimit, attrib.preOpen) == (
        1001, 1, 150.25, True, sv >= MIN_SERVER_VER_PAST_LIMIT, False)
    assert one(calls, "tickSize") == (1001, 0, D("300"))


def _check_tick_price_pre_open(calls: list, sv: int) -> None:
    _req_id, _tick_type, _price, attrib = one(calls, "tickPrice")
    assert (attrib.canAutoExecute, attrib.pastLimit, attrib.preOpen) == (
        True, False, sv >= MIN_SERVER_VER_PRE_OPEN_BID_ASK)


def _check_tick_price_last_without_size(calls: list, sv: int) -> None:
    assert one(calls, "tickPrice")[:3] == (1001, 4, 150.3)
    assert one(calls, "tickSize") == (1001, 5, UNSET_DECIMAL)


def _check_tick_size(calls: list, sv: int) -> None:
    assert one(calls, "tickSize") == (1001, 8, D("12345.5"))


def _check_tick_string(calls: list, sv: int) -> None:
    assert one(calls, "tickString") == (1001, 45, "1735812000")


def _check_tick_string_non_ascii(calls: list, sv: int) -> None:
    # Unicode-escaped from ENCODE_MSG_ASCII7 (153), plain UTF-8 before: the client sees the same text.
    assert one(calls, "tickString") == (1001, 45, "caf\u00e9 \\ x")


def _check_tick_generic(calls: list, sv: int) -> None:
    assert one(calls, "tickGeneric") == (1001, 49, 1.5)


def _check_market_data_type(calls: list, sv: int) -> None:
    assert one(calls, "marketDataType") == (1001, 3)


def _check_order_status(calls: list, sv: int) -> None:
    mkt_cap_price = 0.0 if sv >= MIN_SERVER_VER_MARKET_CAP_PRICE else None
    assert one(calls, "orderStatus") == (42, "Submitted", D("60"), D("40"), 150.25, 1234567890123, 41, 150.3, 7,
                                         "locate", mkt_cap_price)


def _check_open_order(calls: list, sv: int) -> None:
    order_id, contract, order, state = one(calls, "openOrder")
    _check_contract(contract)
    assert order_id == order.orderId == 42
    assert (order.action, order.totalQuantity, order.orderType, order.lmtPrice, order.auxPrice, order.tif) == (
        "BUY", D("100"), "LMT", 150.25, UNSET_DOUBLE, "GTC")
    assert (order.ocaGroup, order.ocaType, order.orderRef, order.account, order.outsideRth) == (
        "OCA1", 3, "g-17:entry", "DU123", True)
    assert (order.parentId, order.permId, order.clientId) == (41, 1234567890123, 7)
    assert (state.status, state.commissionAndFees, state.commissionAndFeesCurrency) == ("Submitted", 1.25, "USD")


def _check_open_order_trail(calls: list, sv: int) -> None:
    order_id, contract, order, state = one(calls, "openOrder")
    assert (order_id, order.orderType, order.totalQuantity, order.trailStopPrice, order.trailingPercent) == (
        43, "TRAIL", D("0.5"), 95.5, 2.0)
    assert (order.lmtPrice, state.status, order.orderRef) == (UNSET_DOUBLE, "PreSubmitted", "g-17:stop")


def _check_open_order_peg_bench(calls: list, sv: int) -> None:
    order_id, _contract, order, state = one(calls, "openOrder")
    assert (order_id, order.orderType, state.status, order.permId) == (44, "PEG BENCH", "Submitted", 5)


def _check_open_order_end(calls: list, sv: int) -> None:
    assert one(calls, "openOrderEnd") == ()


def _check_completed_order(calls: list, sv: int) -> None:
    contract, order, state = one(calls, "completedOrder")
    _check_contract(contract)
    assert (order.action, order.totalQuantity, order.orderType, order.lmtPrice, order.orderRef, order.permId) == (
        "BUY", D("100"), "LMT", 150.25, "g-17:entry", 1234567890123)
    assert (order.filledQuantity, state.status, state.completedTime, state.completedStatus) == (
        D("100"), "Filled", "20250102 10:15:00 America/New_York", "Filled Size: 100")


def _check_completed_orders_end(calls: list, sv: int) -> None:
    assert one(calls, "completedOrdersEnd") == ()


def _check_exec_details(calls: list, sv: int) -> None:
    req_id, contract, e = one(calls, "execDetails")
    _check_contract(contract)
    assert req_id == -1
    assert (e.orderId, e.execId, e.time, e.acctNumber, e.exchange, e.side) == (
        42, "0001f4e8.65a1b2c3.01.01", "20250102  10:15:00", "DU123", "ISLAND", "BOT")
    assert (e.shares, e.price, e.permId, e.clientId, e.cumQty, e.avgPrice) == (
        D("60"), 150.25, 1234567890123, 7, D("60"), 150.25)
    assert (e.orderRef, e.liquidation) == ("g-17:entry", 0)
    assert e.lastLiquidity == (1 if sv >= MIN_SERVER_VER_LAST_LIQUIDITY else 0)
    assert e.submitter == ("sim" if sv >= MIN_SERVER_VER_SUBMITTER else "")


def _check_exec_details_end(calls: list, sv: int) -> None:
    assert one(calls, "execDetailsEnd") == (5001,)


def _check_commission(calls: list, sv: int) -> None:
    (report,) = one(calls, "commissionAndFeesReport")
    assert (report.execId, report.commissionAndFees, report.currency, report.realizedPNL, report.yield_,
            report.yieldRedemptionDate) == ("0001f4e8.65a1b2c3.01.01", 1.0, "USD", UNSET_DOUBLE, UNSET_DOUBLE, 0)


def _check_commission_realized(calls: list, sv: int) -> None:
    (report,) = one(calls, "commissionAndFeesReport")
    assert (report.commissionAndFees, report.realizedPNL) == (0.35, -12.5)


def _check_position(calls: list, sv: int) -> None:
    account, contract, position, avg_cost = one(calls, "position")
    _check_contract(contract)
    assert (account, position, avg_cost) == ("DU123", D("-25"), 151.125)


def _check_position_end(calls: list, sv: int) -> None:
    assert one(calls, "positionEnd") == ()


def _check_account_summary(calls: list, sv: int) -> None:
    assert one(calls, "accountSummary") == (9001, "DU123", "NetLiquidation", "100000.00", "USD")


def _check_account_summary_end(calls: list, sv: int) -> None:
    assert one(calls, "accountSummaryEnd") == (9001,)


def _check_contract_details(calls: list, sv: int) -> None:
    req_id, details = one(calls, "contractDetails")
    c = details.contract
    _check_contract(c)
    assert (req_id, c.primaryExchange, details.minTick, details.longName, details.timeZoneId) == (
        3001, "NASDAQ", 0.01, "APPLE INC \u00e9", "US/Eastern")
    assert (details.marketName, details.orderTypes, details.validExchanges, details.priceMagnifier) == (
        "NMS", "LMT,MKT,STP,TRAIL", "SMART,ISLAND", 1)
    assert details.stockType == ("COMMON" if sv >= MIN_SERVER_VER_STOCK_TYPE else "")
    if sv >= MIN_SERVER_VER_SIZE_RULES:
        assert (details.minSize, details.sizeIncrement, details.suggestedSizeIncrement) == (
            D("0.0001"), D("0.0001"), D("100"))
    assert (details.tradingHours, details.liquidHours) == ("20250102:0400-20250102:2000",
                                                           "20250102:0930-20250102:1600")


def _check_contract_details_end(calls: list, sv: int) -> None:
    assert one(calls, "contractDetailsEnd") == (3001,)


def _check_historical_data(calls: list, sv: int) -> None:
    bars = only(calls, "historicalData")
    assert [(r, b.date, b.open, b.high, b.low, b.close, b.volume, b.wap, b.barCount) for r, b in bars] == [
        (4001, "20250102 09:30:00 US/Eastern", 150.0, 151.5, 149.75, 151.25, D("1200"), D("150.6"), 17),
        (4001, "20250102 09:31:00 US/Eastern", 151.25, 151.3, 150.9, 151.0, D("800"), D("151.1"), 9),
    ]
    # Before HISTORICAL_DATA_END (196) the end marker is part of HISTORICAL_DATA itself.
    ends = [(4001, "", "")] if sv < MIN_SERVER_VER_HISTORICAL_DATA_END else []
    assert only(calls, "historicalDataEnd") == ends


def _check_historical_data_with_dates(calls: list, sv: int) -> None:
    assert len(only(calls, "historicalData")) == 1
    ends = [(4001, "20250101 09:30:00", "20250102 16:00:00")] if sv < MIN_SERVER_VER_HISTORICAL_DATA_END else []
    assert only(calls, "historicalDataEnd") == ends


def _check_historical_data_end(calls: list, sv: int) -> None:
    ends = [(4001, "20250101 09:30:00", "20250102 16:00:00")] if sv >= MIN_SERVER_VER_HISTORICAL_DATA_END else []
    assert only(calls, "historicalDataEnd") == ends


def _check_real_time_bar(calls: list, sv: int) -> None:
    assert one(calls, "realtimeBar") == (4002, 1735828200, 150.0, 150.5, 149.5, 150.25, D("300"), D("150.1"), 12)


BAR_1 = HistoricalBar(date="20250102 09:30:00 US/Eastern", open=D("150"), high=D("151.5"), low=D("149.75"),
                      close=D("151.25"), volume=D("1200"), wap=D("150.6"), bar_count=17)
BAR_2 = HistoricalBar(date="20250102 09:31:00 US/Eastern", open=D("151.25"), high=D("151.3"), low=D("150.9"),
                      close=D("151"), volume=D("800"), wap=D("151.1"), bar_count=9)
DETAILS = ContractDetails(contract=AAPL, market_name="NMS", min_tick=D("0.01"), order_types="LMT,MKT,STP,TRAIL",
                          valid_exchanges="SMART,ISLAND", long_name="APPLE INC \u00e9", time_zone_id="US/Eastern",
                          trading_hours="20250102:0400-20250102:2000", liquid_hours="20250102:0930-20250102:1600",
                          stock_type="COMMON", min_size=D("0.0001"), size_increment=D("0.0001"),
                          suggested_size_increment=D("100"))

CASES: list[tuple[str, Callable[[Encoder], bytes], Callable[[list], None]]] = [
    ("managed_accounts", lambda e: e.managed_accounts(accounts="DU123,DU456"), _check_managed),
    ("next_valid_id", lambda e: e.next_valid_id(order_id=1001), _check_next_valid_id),
    ("error", lambda e: e.error(req_id=42, code=202, message="Order Canceled - reason: caf\u00e9 \\ 100%",
                                error_time_ms=1735812000123, advanced_order_reject_json='{"reason":"x"}'),
     _check_error),
    ("error_system", lambda e: e.error(req_id=-1, code=2104, message="Market data farm connection is OK:usfarm",
                                       error_time_ms=1735812000000), _check_system_error),
    ("current_time", lambda e: e.current_time(epoch_seconds=1735812000), _check_current_time),
    ("tick_price", lambda e: e.tick_price(req_id=1001, tick_type=1, price=D("150.25"), size=D("300"),
                                          attr_mask=3), _check_tick_price),
    ("tick_price_pre_open", lambda e: e.tick_price(req_id=1001, tick_type=1, price=D("150.25"), size=D("300"),
                                                   attr_mask=5), _check_tick_price_pre_open),
    ("tick_price_no_size", lambda e: e.tick_price(req_id=1001, tick_type=4, price=D("150.30")),
     _check_tick_price_last_without_size),
    ("tick_size", lambda e: e.tick_size(req_id=1001, tick_type=8, size=D("12345.5")), _check_tick_size),
    ("tick_string", lambda e: e.tick_string(req_id=1001, tick_type=45, value="1735812000"), _check_tick_string),
    ("tick_string_non_ascii", lambda e: e.tick_string(req_id=1001, tick_type=45, value="caf\u00e9 \\ x"),
     _check_tick_string_non_ascii),
    ("tick_generic", lambda e: e.tick_generic(req_id=1001, tick_type=49, value=D("1.5")), _check_tick_generic),
    ("market_data_type", lambda e: e.market_data_type(req_id=1001, market_data_type=3), _check_market_data_type),
    ("order_status", lambda e: e.order_status(
        order_id=42, status="Submitted", filled=D("60"), remaining=D("40"), avg_fill_price=D("150.25"),
        perm_id=1234567890123, parent_id=41, last_fill_price=D("150.30"), client_id=7, why_held="locate"),
     _check_order_status),
    ("open_order", lambda e: e.open_order(order_id=42, contract=AAPL, order=PARENT, status="Submitted",
                                          commission=D("1.25"), commission_currency="USD"), _check_open_order),
    ("open_order_trail", lambda e: e.open_order(order_id=43, contract=AAPL, order=TRAIL, status="PreSubmitted"),
     _check_open_order_trail),
    ("open_order_peg_bench", lambda e: e.open_order(
        order_id=44, contract=AAPL, order=OrderParams(action="BUY", total_quantity=D(1), order_type="PEG BENCH",
                                                      perm_id=5), status="Submitted"),
     _check_open_order_peg_bench),
    ("open_order_end", lambda e: e.open_order_end(), _check_open_order_end),
    ("completed_order", lambda e: e.completed_order(
        contract=AAPL, order=PARENT, status="Filled", filled=D("100"),
        completed_time="20250102 10:15:00 America/New_York", completed_status="Filled Size: 100"),
     _check_completed_order),
    ("completed_orders_end", lambda e: e.completed_orders_end(), _check_completed_orders_end),
    ("exec_details", lambda e: e.exec_details(req_id=-1, contract=AAPL, execution=FILL), _check_exec_details),
    ("exec_details_end", lambda e: e.exec_details_end(req_id=5001), _check_exec_details_end),
    ("commission", lambda e: e.commission_and_fees_report(exec_id=FILL.exec_id, commission=D("1"), currency="USD"),
     _check_commission),
    ("commission_realized", lambda e: e.commission_and_fees_report(
        exec_id=FILL.exec_id, commission=D("0.35"), currency="USD", realized_pnl=D("-12.5")),
     _check_commission_realized),
    ("position", lambda e: e.position(account="DU123", contract=AAPL, position=D("-25"), avg_cost=D("151.125")),
     _check_position),
    ("position_end", lambda e: e.position_end(), _check_position_end),
    ("account_summary", lambda e: e.account_summary(req_id=9001, account="DU123", tag="NetLiquidation",
                                                    value="100000.00", currency="USD"), _check_account_summary),
    ("account_summary_end", lambda e: e.account_summary_end(req_id=9001), _check_account_summary_end),
    ("contract_details", lambda e: e.contract_details(req_id=3001, details=DETAILS), _check_contract_details),
    ("contract_details_end", lambda e: e.contract_details_end(req_id=3001), _check_contract_details_end),
    ("historical_data", lambda e: e.historical_data(req_id=4001, bars=[BAR_1, BAR_2]), _check_historical_data),
    ("historical_data_with_dates", lambda e: e.historical_data(req_id=4001, bars=[BAR_1], start="20250101 09:30:00",
                                                               end="20250102 16:00:00"),
     _check_historical_data_with_dates),
    ("historical_data_end", lambda e: e.historical_data_end(req_id=4001, start="20250101 09:30:00",
                                                            end="20250102 16:00:00"), _check_historical_data_end),
    ("real_time_bar", lambda e: e.real_time_bar(req_id=4002, time=1735828200, open=D("150"), high=D("150.5"),
                                                low=D("149.5"), close=D("150.25"), volume=D("300"), wap=D("150.1"),
                                                count=12), _check_real_time_bar),
]


@pytest.mark.parametrize(("server_version", "protobuf"), MODES, ids=MODE_IDS)
@pytest.mark.parametrize(("build", "check"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_encoder_frame_decodes_in_ibapi_to_the_encoded_values(server_version: int, protobuf: bool,
                                                             build: Callable, check: Callable) -> None:
    frame = build(Encoder(server_version, protobuf=protobuf))
    check(ibapi_callbacks(frame, server_version), server_version)


class _CountingFields(tuple):
    """A field tuple that counts how many fields a proc-based decoder pulled from its iterator."""

    consumed = 0

    def __iter__(self):  # type: ignore[override]
        for item in tuple.__iter__(self):
            self.consumed += 1
            yield item


def assert_consumed_exactly(frame: bytes, server_version: int) -> None:
    """Assert ibapi's text decoder at `server_version` reads every field of `frame`, no more, no fewer."""
    _size, payload, rest = comm.read_msg(frame)
    assert rest == b""
    if server_version > 200:
        msg_id, body = int.from_bytes(payload[:4], "big"), payload[4:]
    else:
        head, _, body = payload.partition(b"\0")
        msg_id = int(head)
    fields = _CountingFields(comm.read_fields(body))
    recorder, decoder = _oracle(server_version)
    recorder.calls = []
    decoder.interpret(fields, msg_id)
    handler = decoder.msgId2handleInfo[msg_id]
    if handler.processMeth is not None:
        assert fields.consumed == len(fields), f"ibapi read {fields.consumed} of {len(fields)} fields"
    else:
        # Signature-decoded messages fire only with exactly the right field count.
        assert [c for c in recorder.calls if c[0] == handler.wrapperMeth.__name__]


@pytest.mark.parametrize("server_version", [*TEXT_VERSIONS, 226])
@pytest.mark.parametrize("build", [c[1] for c in CASES], ids=[c[0] for c in CASES])
def test_text_encoder_frame_is_consumed_exactly_by_ibapi_decoder(server_version: int, build: Callable) -> None:
    frame = build(Encoder(server_version, protobuf=False))
    if frame == b"":
        assert server_version < MIN_SERVER_VER_HISTORICAL_DATA_END    # historical_data_end before 196
        return
    assert_consumed_exactly(frame, server_version)


@pytest.mark.parametrize("server_version", range(100, 227))
def test_every_text_encoder_round_trips_at_every_server_version(server_version: int) -> None:
    encoder = Encoder(server_version, protobuf=False)
    for name, build, check in CASES:
        frame = build(encoder)
        try:
            check(ibapi_callbacks(frame, server_version), server_version)
            if frame:
                assert_consumed_exactly(frame, server_version)
        except AssertionError as exc:
            raise AssertionError(f"{name} at sv {server_version}: {exc}") from exc


@pytest.mark.parametrize(("server_version", "fields"), [(100, 96), (157, 119), (176, 127), (187, 129), (200, 147),
                                                        (226, 147)])
def test_open_order_text_frame_for_plain_order_has_the_observed_field_count(server_version: int,
                                                                            fields: int) -> None:
    # Counts observed from ibapi's decoder (reference §5.4): 119 at 157, 127 at 176, 129 at 187, 147 at 200.
    assert len(wire_text.OPEN_ORDER.at(server_version)) == fields
    frame = Encoder(server_version, protobuf=False).open_order(order_id=42, contract=AAPL, order=PARENT,
                                                              status="Submitted")
    _size, payload, _rest = comm.read_msg(frame)
    body = payload.partition(b"\0")[2] if server_version <= 200 else payload[4:]
    assert len(comm.read_fields(body)) == fields


@pytest.mark.parametrize(("server_version", "present", "absent"), [
    (193, ("version", "errorMsg", "advancedOrderRejectJson"), ("errorTime",)),
    (194, ("errorMsg", "advancedOrderRejectJson", "errorTime"), ("version",)),
    (165, ("version", "errorMsg"), ("advancedOrderRejectJson", "errorTime")),
])
def test_layout_fields_follow_their_version_gates(server_version: int, present: tuple[str, ...],
                                                  absent: tuple[str, ...]) -> None:
    names = wire_text.ERR_MSG.at(server_version)
    assert set(present) <= set(names) and not set(absent) & set(names)


def test_layout_with_a_misspelt_field_name_raises() -> None:
    with pytest.raises(ValueError, match="not in the layout"):
        wire_text.ORDER_STATUS.render(200, {"orderID": "1"})


def test_layout_with_a_duplicate_field_name_raises() -> None:
    with pytest.raises(ValueError, match="duplicate"):
        Layout("reqId", *since(150, "reqId"))


def test_layout_field_of_a_later_version_is_dropped_not_refused() -> None:
    assert wire_text.ORDER_STATUS.render(130, {"version": "6", "orderId": "1", "mktCapPrice": "2"})[:2] == ["6", "1"]
    assert "2" not in wire_text.ORDER_STATUS.render(130, {"mktCapPrice": "2"})


@pytest.mark.parametrize(("server_version", "protobuf"), [(200, True), (99, False), (227, False)])
def test_encoder_with_impossible_version_or_mode_raises(server_version: int, protobuf: bool) -> None:
    with pytest.raises(ValueError):
        Encoder(server_version, protobuf=protobuf)


def test_text_encoder_refuses_a_nul_inside_a_plain_string_field() -> None:
    with pytest.raises(ValueError, match="NUL"):
        Encoder(200, protobuf=False).order_status(
            order_id=1, status="Sub\0mitted", filled=D(0), remaining=D(1), avg_fill_price=D(0), perm_id=1,
            parent_id=0, last_fill_price=D(0), client_id=1)


@pytest.mark.parametrize(("server_version", "expected"), [(152, "caf\u00e9".encode()), (153, b"caf\\xe9")])
def test_free_text_is_utf8_before_153_and_unicode_escaped_from_153(server_version: int, expected: bytes) -> None:
    frame = Encoder(server_version, protobuf=False).tick_string(req_id=1, tick_type=45, value="caf\u00e9")
    assert frame.endswith(b"\0" + expected + b"\0")


@pytest.mark.parametrize("server_version", [100, 195])
def test_historical_data_end_before_196_is_nothing_to_send(server_version: int) -> None:
    end = Encoder(server_version, protobuf=False).historical_data_end(req_id=1, start="a", end="b")
    assert end == (b"" if server_version < 196 else end) and (server_version < 196) == (end == b"")


@pytest.mark.parametrize(("server_version", "protobuf", "head"), [
    (157, False, b"9\x00"), (200, False, b"9\x00"), (226, False, b"\x00\x00\x00\x09"),
    (226, True, b"\x00\x00\x00\xd1")])
def test_message_id_wire_form_follows_version_and_mode(server_version: int, protobuf: bool, head: bytes) -> None:
    frame = Encoder(server_version, protobuf=protobuf).next_valid_id(order_id=5)
    assert int.from_bytes(frame[:4], "big") == len(frame) - 4
    assert frame[4:4 + len(head)] == head
