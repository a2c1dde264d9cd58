"""Wire layer of the TWS simulator: framing, handshake, version choice, request decoding, response encoding.

Everything the asyncio server needs is importable from here; it never has to know the mode.

Connection lifecycle (one client socket)::

    buf = b""
    while (got := parse_handshake(buf)) is None:          # HandshakeError -> close the socket
        buf += await reader.read(4096)
    hello, used = got                                      # hello.lo, hello.hi, hello.options
    sv = negotiate(hello.lo, hello.hi, 226, wire="protobuf")   # or wire="text" (caps at 200);
                                                           # ib_async's "v157..178" gets 178 (text)
    writer.write(version_reply(sv, "20250102 10:00:00 UTC"))   # must travel ALONE (ibapi reads
    await writer.drain()                                   # one recv and drops the rest), and
                                                           # nothing else before START_API
    encoder = Encoder(sv, protobuf=uses_protobuf(sv, "protobuf"))
    frames = FrameParser()
    for payload in frames.feed(buf[used:]): ...            # bytes that followed the handshake
    while data := await reader.read(65536):
        for payload in frames.feed(data):                  # FrameError -> drop the client
            try:
                request = decode_request(payload, sv)      # a frozen value, see below
            except UnsupportedRequest as exc:              # well-formed, feature not simulated
                writer.write(encoder.error(req_id=-1 if exc.request_id is None else exc.request_id, ...))
                continue
            except WireError as exc:                       # malformed; the stream is still aligned
                continue                                   # exc.msg_id, exc.request_id (may be None)
            match request:
                case StartApi(client_id=cid): writer.write(encoder.managed_accounts(accounts="DU1"))
                case PlaceOrder(order_id=oid, contract=c, order=o): ...
                case Unknown(msg_id=mid): ...              # ignore, or answer with an error

Errors (all subclasses of ProtocolError):
    FrameError        framing is broken (length prefix > MAX_FRAME_LEN = 0xFFFFFF): drop the client
    HandshakeError    bad "API\\0" prefix, bad "v<lo>..<hi>" text, or no version both sides serve
    WireError         one message is malformed; .msg_id (base id) and .request_id (order/req id or None)
    UnsupportedRequest(WireError)  well-formed but not simulated (order conditions)

Framing and handshake:
    FrameParser(max_frame_len=MAX_FRAME_LEN).feed(data: bytes) -> list[bytes]   payloads, in order
    FrameParser.pending -> int                          bytes buffered for an incomplete frame
    parse_handshake(data: bytes) -> tuple[Handshake, int] | None    None while incomplete; int = bytes used
    parse_version_text(text: bytes) -> Handshake        the "v100..226 +OPTS" part alone
    Handshake(lo: int, hi: int, options: str)           a NamedTuple
    negotiate(lo, hi, max_server_version=226, *, wire="protobuf") -> int
        min(hi, max) (max capped at 200 for wire="text"); HandshakeError if below lo or below
        MIN_SERVER_VERSION (100, ibapi's MIN_CLIENT_VER: every text layout is gated down to it).
        Below 201 the connection is text whatever the wire mode (uses_protobuf is False).
    uses_protobuf(server_version, wire) -> bool         True when wire="protobuf" and sv >= 201
    version_reply(server_version: int, connection_time: str) -> bytes
    frame(payload) -> bytes; encode_msg_id(msg_id, server_version) -> bytes
    split_message_id(payload, server_version) -> tuple[int, bytes]   raw id (protobuf: id + 200), body

Requests (client -> server), from decode_request(payload: bytes, server_version: int) -> Request
(`Request` is the union of the frozen, slotted, keyword-only dataclasses below).
Text bodies are read with the layout ibapi 10.50's EClient writes at that server version (100..200,
unchanged up to 226): named fields gated by ibapi's MIN_SERVER_VER_* constants, e.g. CANCEL_ORDER has
a version field and no CME tagging below 192, REQ_EXECUTIONS no lastNDays below 200. Fields a version
lacks decode as their default (regulatory_snapshot False below 114, keep_up_to_date False below 124).
Protobuf bodies (id > 200) are read with ibapi.protobuf. Both give the same values; None means unset.
    StartApi(client_id, optional_capabilities)          ReqIds(num_ids)
    ReqCurrentTime()                                    ReqMarketDataType(market_data_type)
    ReqMktData(req_id, contract, generic_ticks, snapshot, regulatory_snapshot)
    CancelMktData(req_id)
    PlaceOrder(order_id, contract: Contract, order: OrderParams, attached: AttachedOrders | None)
    CancelOrder(order_id, manual_order_cancel_time, ext_operator, manual_order_indicator: int | None)
    ReqGlobalCancel(ext_operator, manual_order_indicator)
    ReqOpenOrders()  ReqAllOpenOrders()  ReqAutoOpenOrders(auto_bind)  ReqCompletedOrders(api_only)
    ReqPositions()  CancelPositions()  ReqManagedAccts()
    ReqAccountSummary(req_id, group, tags: tuple[str, ...])   CancelAccountSummary(req_id)
    ReqExecutions(req_id, filter: ExecutionFilter)      ReqContractDetails(req_id, contract)
    ReqHistoricalData(req_id, contract, end_date_time, duration, bar_size, what_to_show, use_rth,
                      format_date, keep_up_to_date)     CancelHistoricalData(req_id)
    ReqRealTimeBars(req_id, contract, bar_size, what_to_show, use_rth)   CancelRealTimeBars(req_id)
    Unknown(msg_id, protobuf)                           any other id (not validated)
  Contract(con_id, symbol, sec_type, last_trade_date, strike: Decimal | None, right, multiplier: str,
           exchange, primary_exchange, currency, local_symbol, trading_class, sec_id_type, sec_id,
           include_expired, combo_legs: tuple[ComboLeg, ...])
  OrderParams(action, total_quantity: Decimal | None, order_type, lmt_price, aux_price, trailing_percent,
              trail_stop_price (all Decimal | None), tif, parent_id, transmit, oca_group, oca_type,
              order_ref, account, outside_rth, hidden, good_after_time, good_till_date, what_if,
              algo_strategy, client_id, perm_id)
      protobuf omits false/zero fields: an absent `transmit` is False (a held bracket parent).
      Text PLACE_ORDER carries no clientId/permId: both are 0 there.
  ExecutionFilter(client_id, account, time, symbol, sec_type, exchange, side, last_n_days: int | None,
                  specific_dates: tuple[int, ...])

Responses (server -> client): Encoder(server_version, protobuf: bool); every method is keyword-only
and returns a complete frame. Text layouts are named field lists whose fields are gated by server
version (simulator.wire_base.Layout), checked against ibapi's Decoder at every version 100..226.
Below a field's version it is simply not sent: ERR_MSG has a version field and no errorTime below 194
(and no advancedOrderRejectJson below 166), ORDER_STATUS a version field and no mktCapPrice below 131,
OPEN_ORDER a message version (34) below 145, strings are UTF-8 rather than unicode-escaped below 153.
    managed_accounts(accounts)      next_valid_id(order_id)      current_time(epoch_seconds)
    error(req_id, code, message, error_time_ms, advanced_order_reject_json="")
    tick_price(req_id, tick_type, price, size=None, attr_mask=0)   tick_size(req_id, tick_type, size)
    tick_string(req_id, tick_type, value)   tick_generic(req_id, tick_type, value)
    market_data_type(req_id, market_data_type)
    order_status(order_id, status, filled, remaining, avg_fill_price, perm_id, parent_id,
                 last_fill_price, client_id, why_held="", mkt_cap_price=0)
    open_order(order_id, contract, order: OrderParams, status, commission=None,
               commission_currency="", warning_text="")          open_order_end()
    completed_order(contract, order, status, filled=None, completed_time="", completed_status="")
    completed_orders_end()
    exec_details(req_id, contract, execution: ExecutionReport)   exec_details_end(req_id)
    commission_and_fees_report(exec_id, commission, currency, realized_pnl=None, bond_yield=None,
                               yield_redemption_date=0)
    position(account, contract, position, avg_cost)   position_end()
    account_summary(req_id, account, tag, value, currency)   account_summary_end(req_id)
    contract_details(req_id, details: ContractDetails)   contract_details_end(req_id)
    historical_data(req_id, bars: Iterable[HistoricalBar], start="", end="")
    historical_data_end(req_id, start, end)
        from sv 196 the end is its own message; below 196 it travels inside HISTORICAL_DATA (pass
        start/end there) and historical_data_end returns b"" - always call both, in that order
    real_time_bar(req_id, time, open, high, low, close, volume, wap, count)
  ExecutionReport(order_id, exec_id, time, account, exchange, side "BOT"/"SLD", shares, price, perm_id,
                  client_id, cum_qty, avg_price, order_ref="", liquidation=0, ev_rule="",
                  ev_multiplier=None, model_code="", last_liquidity=0, pending_price_revision=False,
                  submitter="")
  ContractDetails(contract, market_name, min_tick, order_types, valid_exchanges, price_magnifier,
                  long_name, time_zone_id, trading_hours, liquid_hours, stock_type, min_size, ...)
  HistoricalBar(date, open, high, low, close, volume, wap, bar_count)
Prices and quantities are Decimal everywhere; money/prices become doubles only on the wire.
"""

from __future__ import annotations

import re
from typing import Final, Literal, NamedTuple

from simulator.wire_base import (
    MAX_FRAME_LEN,
    MAX_SERVER_VERSION,
    MIN_SERVER_VERSION,
    PROTOBUF_ID_OFFSET,
    PROTOBUF_MIN_SERVER_VERSION,
    TEXT_MAX_SERVER_VERSION,
    AttachedOrders,
    CancelAccountSummary,
    CancelHistoricalData,
    CancelMktData,
    CancelOrder,
    CancelPositions,
    CancelRealTimeBars,
    ComboLeg,
    Contract,
    ContractDetails,
    ExecutionFilter,
    ExecutionReport,
    FrameError,
    HandshakeError,
    HistoricalBar,
    OrderParams,
    PlaceOrder,
    ProtocolError,
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
    UnsupportedRequest,
    Unknown,
    WireError,
    encode_msg_id,
    frame,
)
from simulator.wire_encode import Encoder
from simulator.wire_proto import decode_proto_request
from simulator.wire_text import decode_text_request

__all__ = [
    "API_PREFIX", "MAX_FRAME_LEN", "MAX_HANDSHAKE_LEN", "MAX_SERVER_VERSION", "MIN_SERVER_VERSION",
    "PROTOBUF_MIN_SERVER_VERSION", "TEXT_MAX_SERVER_VERSION", "AttachedOrders", "CancelAccountSummary",
    "CancelHistoricalData", "CancelMktData", "CancelOrder", "CancelPositions", "CancelRealTimeBars", "ComboLeg",
    "Contract", "ContractDetails", "Encoder", "ExecutionFilter", "ExecutionReport", "FrameError", "FrameParser",
    "Handshake", "HandshakeError", "HistoricalBar", "OrderParams", "PlaceOrder", "ProtocolError",
    "ReqAccountSummary", "ReqAllOpenOrders", "ReqAutoOpenOrders", "ReqCompletedOrders", "ReqContractDetails",
    "ReqCurrentTime", "ReqExecutions", "ReqGlobalCancel", "ReqHistoricalData", "ReqIds", "ReqManagedAccts",
    "ReqMarketDataType", "ReqMktData", "ReqOpenOrders", "ReqPositions", "ReqRealTimeBars", "Request",
    "StartApi", "Unknown", "UnsupportedRequest", "Wire", "WireError", "decode_request", "encode_msg_id",
    "frame", "negotiate", "parse_handshake", "parse_version_text", "split_message_id", "uses_protobuf", "version_reply",
]

API_PREFIX: Final = b"API\0"
MAX_HANDSHAKE_LEN: Final = 1024     # "v100..226" plus connect options; anything longer is not a client
Wire = Literal["protobuf", "text"]

_VERSIONS = re.compile(r"v([0-9]{1,6})(?:\.\.([0-9]{1,6}))?(?: (.*))?", re.DOTALL)


class FrameParser:
    """Split one client's byte stream into frame payloads; feed it whatever each read returned."""

    __slots__ = ("_buf", "max_frame_len")

    def __init__(self, max_frame_len: int = MAX_FRAME_LEN) -> None:
        self._buf = bytearray()
        self.max_frame_len = max_frame_len

    @property
    def pending(self) -> int:
        """Return how many bytes of an incomplete frame are buffered."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[bytes]:
        """Return the payloads completed by `data`; FrameError as soon as a length prefix is too big."""
        buf = self._buf
        buf += data
        payloads: list[bytes] = []
        pos, end = 0, len(buf)
        while end - pos >= 4:
            size = int.from_bytes(buf[pos:pos + 4], "big")
            if size > self.max_frame_len:
                # Checked before waiting for the body: a hostile 2 GB prefix never allocates.
                raise FrameError(f"frame length {size} exceeds {self.max_frame_len}")
            if end - pos - 4 < size:
                break
            payloads.append(bytes(buf[pos + 4:pos + 4 + size]))
            pos += 4 + size
        if pos:
            del buf[:pos]
        return payloads


class Handshake(NamedTuple):
    """The client's opening: its version range and the connect options after the range."""

    lo: int
    hi: int
    options: str


def parse_handshake(data: bytes) -> tuple[Handshake, int] | None:
    """Return the handshake at the start of `data` and the bytes it used, or None while incomplete."""
    head = bytes(data[:4])
    if head != API_PREFIX[:len(head)]:
        raise HandshakeError(f"bad handshake prefix {head!r}")
    if len(data) < 8:
        return None
    size = int.from_bytes(data[4:8], "big")
    if not 0 < size <= MAX_HANDSHAKE_LEN:
        raise HandshakeError(f"bad handshake length {size}")
    if len(data) < 8 + size:
        return None
    return parse_version_text(bytes(data[8:8 + size])), 8 + size


def parse_version_text(text: bytes) -> Handshake:
    """Return the version range and options of "v<lo>..<hi>[ <options>]" ("v<n>" means n..n)."""
    try:
        decoded = text.decode("ascii")
    except UnicodeDecodeError:
        raise HandshakeError(f"handshake is not ASCII: {text[:40]!r}") from None
    match = _VERSIONS.fullmatch(decoded)
    if match is None:
        raise HandshakeError(f"bad version text {decoded[:40]!r}")
    lo = int(match[1])
    hi = int(match[2]) if match[2] is not None else lo
    if lo > hi:
        raise HandshakeError(f"empty version range v{lo}..{hi}")
    return Handshake(lo, hi, match[3] or "")


def negotiate(lo: int, hi: int, max_server_version: int = MAX_SERVER_VERSION, *,
              wire: Wire = "protobuf") -> int:
    """Return the version to announce: min(hi, max), max capped at 200 for text; refuse below lo or 100."""
    if wire not in ("protobuf", "text"):
        raise ValueError(f"unknown wire mode {wire!r}")
    if not MIN_SERVER_VERSION <= max_server_version <= MAX_SERVER_VERSION:
        raise ValueError(f"max server version {max_server_version} outside "
                         f"{MIN_SERVER_VERSION}..{MAX_SERVER_VERSION}")
    cap = max_server_version if wire == "protobuf" else min(max_server_version, TEXT_MAX_SERVER_VERSION)
    chosen = min(hi, cap)
    if chosen < lo:
        raise HandshakeError(f"client needs v{lo}..{hi}, simulator serves up to v{cap}")
    if chosen < MIN_SERVER_VERSION:
        raise HandshakeError(f"client offers up to v{hi}, simulator needs at least v{MIN_SERVER_VERSION}")
    return chosen


def uses_protobuf(server_version: int, wire: Wire) -> bool:
    """Return True when responses should be protobuf: protobuf wire and a version that allows it."""
    return wire == "protobuf" and server_version >= PROTOBUF_MIN_SERVER_VERSION


def version_reply(server_version: int, connection_time: str) -> bytes:
    """Return the handshake answer: a framed two-field text message in every mode."""
    if "\0" in connection_time:
        raise ValueError("connection time must not contain NUL")
    return frame(f"{server_version}\0{connection_time}\0".encode("utf-8"))


def split_message_id(payload: bytes, server_version: int) -> tuple[int, bytes]:
    """Return the raw message id of one payload (protobuf ones still + 200) and the body after it."""
    if server_version >= PROTOBUF_MIN_SERVER_VERSION:
        if len(payload) < 4:
            raise WireError(f"payload of {len(payload)} bytes has no 4-byte message id")
        return int.from_bytes(payload[:4], "big"), payload[4:]
    end = payload.find(b"\0")
    if end < 0:
        raise WireError("payload has no NUL-terminated message id")
    text = payload[:end]
    if not text.isdigit() or len(text) > 9:
        raise WireError(f"bad text message id {text[:20]!r}")
    return int(text), payload[end + 1:]


def decode_request(payload: bytes, server_version: int) -> Request:
    """Return the request value of one frame payload; WireError if it is malformed."""
    raw_id, body = split_message_id(payload, server_version)
    if raw_id > PROTOBUF_ID_OFFSET:
        if server_version < PROTOBUF_MIN_SERVER_VERSION:
            return Unknown(msg_id=raw_id, protobuf=False)
        return decode_proto_request(raw_id - PROTOBUF_ID_OFFSET, body)
    return decode_text_request(raw_id, body, server_version)
