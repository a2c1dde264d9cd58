"""Protobuf half of the wire layer: request decoding and message builders over ibapi's own *_pb2 classes."""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Any, Callable, Final, Mapping

from ibapi.message import OUT
from ibapi.protobuf.AccountSummaryRequest_pb2 import AccountSummaryRequest as AccountSummaryRequestProto
from ibapi.protobuf.AllOpenOrdersRequest_pb2 import AllOpenOrdersRequest as AllOpenOrdersRequestProto
from ibapi.protobuf.AutoOpenOrdersRequest_pb2 import AutoOpenOrdersRequest as AutoOpenOrdersRequestProto
from ibapi.protobuf.CancelAccountSummary_pb2 import CancelAccountSummary as CancelAccountSummaryProto
from ibapi.protobuf.CancelHistoricalData_pb2 import CancelHistoricalData as CancelHistoricalDataProto
from ibapi.protobuf.CancelMarketData_pb2 import CancelMarketData as CancelMarketDataProto
from ibapi.protobuf.CancelOrderRequest_pb2 import CancelOrderRequest as CancelOrderRequestProto
from ibapi.protobuf.CancelPositions_pb2 import CancelPositions as CancelPositionsProto
from ibapi.protobuf.CancelRealTimeBars_pb2 import CancelRealTimeBars as CancelRealTimeBarsProto
from ibapi.protobuf.CompletedOrdersRequest_pb2 import CompletedOrdersRequest as CompletedOrdersRequestProto
from ibapi.protobuf.Contract_pb2 import Contract as ContractProto
from ibapi.protobuf.ContractDataRequest_pb2 import ContractDataRequest as ContractDataRequestProto
from ibapi.protobuf.CurrentTimeRequest_pb2 import CurrentTimeRequest as CurrentTimeRequestProto
from ibapi.protobuf.ExecutionRequest_pb2 import ExecutionRequest as ExecutionRequestProto
from ibapi.protobuf.GlobalCancelRequest_pb2 import GlobalCancelRequest as GlobalCancelRequestProto
from ibapi.protobuf.HistoricalDataRequest_pb2 import HistoricalDataRequest as HistoricalDataRequestProto
from ibapi.protobuf.IdsRequest_pb2 import IdsRequest as IdsRequestProto
from ibapi.protobuf.ManagedAccountsRequest_pb2 import ManagedAccountsRequest as ManagedAccountsRequestProto
from ibapi.protobuf.MarketDataRequest_pb2 import MarketDataRequest as MarketDataRequestProto
from ibapi.protobuf.MarketDataTypeRequest_pb2 import MarketDataTypeRequest as MarketDataTypeRequestProto
from ibapi.protobuf.OpenOrdersRequest_pb2 import OpenOrdersRequest as OpenOrdersRequestProto
from ibapi.protobuf.Order_pb2 import Order as OrderProto
from ibapi.protobuf.PlaceOrderRequest_pb2 import PlaceOrderRequest as PlaceOrderRequestProto
from ibapi.protobuf.PositionsRequest_pb2 import PositionsRequest as PositionsRequestProto
from ibapi.protobuf.RealTimeBarsRequest_pb2 import RealTimeBarsRequest as RealTimeBarsRequestProto
from ibapi.protobuf.StartApiRequest_pb2 import StartApiRequest as StartApiRequestProto

from simulator.wire_base import (
    UNSET_FLOAT,
    UNSET_INT,
    AttachedOrders,
    CancelAccountSummary,
    CancelHistoricalData,
    CancelMktData,
    CancelOrder,
    CancelPositions,
    CancelRealTimeBars,
    ComboLeg,
    Contract,
    ExecutionFilter,
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
    UnsupportedRequest,
    Unknown,
    WireError,
)
from simulator.wire_text import parse_number, split_tags

class _Context:
    """Which message is being decoded, so every error names it."""

    __slots__ = ("msg_id", "request_id")

    def __init__(self, msg_id: int) -> None:
        self.msg_id = msg_id
        self.request_id: int | None = None

    def error(self, message: str) -> WireError:
        return WireError(message, msg_id=self.msg_id, request_id=self.request_id)

    def price(self, message: Any, name: str) -> Decimal | None:
        """Return an optional double as Decimal; absent or UNSET_DOUBLE means None."""
        if not message.HasField(name):
            return None
        value = getattr(message, name)
        if value == UNSET_FLOAT:
            return None
        if not math.isfinite(value):
            raise self.error(f"{name} is not finite")
        return Decimal(repr(value))

    def decimal(self, message: Any, name: str) -> Decimal | None:
        """Return an optional decimal string as Decimal; absent or "" means None."""
        text = getattr(message, name) if message.HasField(name) else ""
        if text == "":
            return None
        try:
            return parse_number(text.encode("utf-8"))
        except ValueError as exc:
            raise self.error(f"{name}: {exc}") from None


def _multiplier(ctx: _Context, proto: Any) -> str:
    # Contract.multiplier is a double in protobuf but a string everywhere else.
    value = ctx.price(proto, "multiplier")
    return "" if value is None else format(value.normalize(), "f")


def _contract(ctx: _Context, proto: Any) -> Contract:
    return Contract(
        con_id=proto.conId, symbol=proto.symbol, sec_type=proto.secType,
        last_trade_date=proto.lastTradeDateOrContractMonth, strike=ctx.price(proto, "strike"),
        right=proto.right, multiplier=_multiplier(ctx, proto), exchange=proto.exchange,
        primary_exchange=proto.primaryExch, currency=proto.currency, local_symbol=proto.localSymbol,
        trading_class=proto.tradingClass, sec_id_type=proto.secIdType, sec_id=proto.secId,
        include_expired=proto.includeExpired,
        combo_legs=tuple(ComboLeg(con_id=leg.conId, ratio=leg.ratio, action=leg.action, exchange=leg.exchange)
                         for leg in proto.comboLegs),
    )


def _order(ctx: _Context, proto: Any) -> OrderParams:
    # ibapi's createOrderProto omits false/zero/unset fields: absent transmit means False, never "default true".
    return OrderParams(
        action=proto.action, total_quantity=ctx.decimal(proto, "totalQuantity"), order_type=proto.orderType,
        lmt_price=ctx.price(proto, "lmtPrice"), aux_price=ctx.price(proto, "auxPrice"),
        trailing_percent=ctx.price(proto, "trailingPercent"),
        trail_stop_price=ctx.price(proto, "trailStopPrice"), tif=proto.tif, parent_id=proto.parentId,
        transmit=proto.transmit, oca_group=proto.ocaGroup, oca_type=proto.ocaType, order_ref=proto.orderRef,
        account=proto.account, outside_rth=proto.outsideRth, hidden=proto.hidden,
        good_after_time=proto.goodAfterTime, good_till_date=proto.goodTillDate, what_if=proto.whatIf,
        algo_strategy=proto.algoStrategy, client_id=proto.clientId, perm_id=proto.permId,
    )


def _opt_int(proto: Any, name: str) -> int | None:
    if not proto.HasField(name):
        return None
    value = getattr(proto, name)
    return None if value == UNSET_INT else value


def _start_api(ctx: _Context, p: Any) -> StartApi:
    return StartApi(client_id=p.clientId, optional_capabilities=p.optionalCapabilities)


def _req_mkt_data(ctx: _Context, p: Any) -> ReqMktData:
    ctx.request_id = p.reqId
    return ReqMktData(req_id=p.reqId, contract=_contract(ctx, p.contract), generic_ticks=p.genericTickList,
                      snapshot=p.snapshot, regulatory_snapshot=p.regulatorySnapshot)


def _place_order(ctx: _Context, p: Any) -> PlaceOrder:
    ctx.request_id = p.orderId
    if len(p.order.conditions):
        raise UnsupportedRequest("order conditions are not supported", msg_id=ctx.msg_id, request_id=p.orderId)
    attached = None
    a = p.attachedOrders
    if p.HasField("attachedOrders") and any(a.HasField(n) for n in ("slOrderId", "slOrderType", "ptOrderId",
                                                                       "ptOrderType")):
        attached = AttachedOrders(sl_order_id=_opt_int(a, "slOrderId"), sl_order_type=a.slOrderType,
                                  pt_order_id=_opt_int(a, "ptOrderId"), pt_order_type=a.ptOrderType)
    return PlaceOrder(order_id=p.orderId, contract=_contract(ctx, p.contract), order=_order(ctx, p.order),
                      attached=attached)


def _cancel_order(ctx: _Context, p: Any) -> CancelOrder:
    c = p.orderCancel
    return CancelOrder(order_id=p.orderId, manual_order_cancel_time=c.manualOrderCancelTime,
                       ext_operator=c.extOperator, manual_order_indicator=_opt_int(c, "manualOrderIndicator"))


def _global_cancel(ctx: _Context, p: Any) -> ReqGlobalCancel:
    c = p.orderCancel
    return ReqGlobalCancel(ext_operator=c.extOperator, manual_order_indicator=_opt_int(c, "manualOrderIndicator"))


def _executions(ctx: _Context, p: Any) -> ReqExecutions:
    f = p.executionFilter
    return ReqExecutions(req_id=p.reqId, filter=ExecutionFilter(
        client_id=f.clientId, account=f.acctCode, time=f.time, symbol=f.symbol, sec_type=f.secType,
        exchange=f.exchange, side=f.side, last_n_days=_opt_int(f, "lastNDays"),
        specific_dates=tuple(f.specificDates)))


def _historical_data(ctx: _Context, p: Any) -> ReqHistoricalData:
    ctx.request_id = p.reqId
    return ReqHistoricalData(req_id=p.reqId, contract=_contract(ctx, p.contract), end_date_time=p.endDateTime,
                             duration=p.duration, bar_size=p.barSizeSetting, what_to_show=p.whatToShow,
                             use_rth=p.useRTH, format_date=p.formatDate, keep_up_to_date=p.keepUpToDate)


def _real_time_bars(ctx: _Context, p: Any) -> ReqRealTimeBars:
    ctx.request_id = p.reqId
    return ReqRealTimeBars(req_id=p.reqId, contract=_contract(ctx, p.contract), bar_size=p.barSize,
                           what_to_show=p.whatToShow, use_rth=p.useRTH)


def _contract_details(ctx: _Context, p: Any) -> ReqContractDetails:
    ctx.request_id = p.reqId
    return ReqContractDetails(req_id=p.reqId, contract=_contract(ctx, p.contract))


_DECODERS: Final[Mapping[int, tuple[type, Callable[[_Context, Any], Request]]]] = {
    OUT.START_API: (StartApiRequestProto, _start_api),
    OUT.REQ_IDS: (IdsRequestProto, lambda ctx, p: ReqIds(num_ids=p.numIds)),
    OUT.REQ_CURRENT_TIME: (CurrentTimeRequestProto, lambda ctx, p: ReqCurrentTime()),
    OUT.REQ_MARKET_DATA_TYPE: (MarketDataTypeRequestProto,
                               lambda ctx, p: ReqMarketDataType(market_data_type=p.marketDataType)),
    OUT.REQ_MKT_DATA: (MarketDataRequestProto, _req_mkt_data),
    OUT.CANCEL_MKT_DATA: (CancelMarketDataProto, lambda ctx, p: CancelMktData(req_id=p.reqId)),
    OUT.PLACE_ORDER: (PlaceOrderRequestProto, _place_order),
    OUT.CANCEL_ORDER: (CancelOrderRequestProto, _cancel_order),
    OUT.REQ_GLOBAL_CANCEL: (GlobalCancelRequestProto, _global_cancel),
    OUT.REQ_OPEN_ORDERS: (OpenOrdersRequestProto, lambda ctx, p: ReqOpenOrders()),
    OUT.REQ_ALL_OPEN_ORDERS: (AllOpenOrdersRequestProto, lambda ctx, p: ReqAllOpenOrders()),
    OUT.REQ_AUTO_OPEN_ORDERS: (AutoOpenOrdersRequestProto, lambda ctx, p: ReqAutoOpenOrders(auto_bind=p.autoBind)),
    OUT.REQ_COMPLETED_ORDERS: (CompletedOrdersRequestProto,
                               lambda ctx, p: ReqCompletedOrders(api_only=p.apiOnly)),
    OUT.REQ_POSITIONS: (PositionsRequestProto, lambda ctx, p: ReqPositions()),
    OUT.CANCEL_POSITIONS: (CancelPositionsProto, lambda ctx, p: CancelPositions()),
    OUT.REQ_ACCOUNT_SUMMARY: (AccountSummaryRequestProto, lambda ctx, p: ReqAccountSummary(
        req_id=p.reqId, group=p.group, tags=split_tags(p.tags))),
    OUT.CANCEL_ACCOUNT_SUMMARY: (CancelAccountSummaryProto, lambda ctx, p: CancelAccountSummary(req_id=p.reqId)),
    OUT.REQ_EXECUTIONS: (ExecutionRequestProto, _executions),
    OUT.REQ_CONTRACT_DATA: (ContractDataRequestProto, _contract_details),
    OUT.REQ_HISTORICAL_DATA: (HistoricalDataRequestProto, _historical_data),
    OUT.CANCEL_HISTORICAL_DATA: (CancelHistoricalDataProto, lambda ctx, p: CancelHistoricalData(req_id=p.reqId)),
    OUT.REQ_REAL_TIME_BARS: (RealTimeBarsRequestProto, _real_time_bars),
    OUT.CANCEL_REAL_TIME_BARS: (CancelRealTimeBarsProto, lambda ctx, p: CancelRealTimeBars(req_id=p.reqId)),
    OUT.REQ_MANAGED_ACCTS: (ManagedAccountsRequestProto, lambda ctx, p: ReqManagedAccts()),
}


def decode_proto_request(msg_id: int, body: bytes) -> Request:
    """Decode the protobuf body of request `msg_id` (offset already removed); unknown ids become Unknown."""
    entry = _DECODERS.get(msg_id)
    if entry is None:
        return Unknown(msg_id=msg_id, protobuf=True)
    cls, convert = entry
    message = cls()
    try:
        message.ParseFromString(body)
    except Exception as exc:   # DecodeError, or anything the C parser raises on hostile bytes
        raise WireError(f"undecodable {cls.__name__}: {exc}", msg_id=msg_id) from None
    return convert(_Context(msg_id), message)


# ---------------------------------------------------------------------------------------------
# Builders for the server → client side.


def dec_str(value: Decimal) -> str:
    """Return a Decimal as the plain decimal string protobuf quantity fields carry."""
    if not value.is_finite():
        raise ValueError(f"non-finite number: {value}")
    return format(value, "f")


def contract_proto(contract: Contract) -> Any:
    """Return the protobuf Contract for `contract`, leaving unset fields absent."""
    p = ContractProto(conId=contract.con_id, symbol=contract.symbol, secType=contract.sec_type,
                      lastTradeDateOrContractMonth=contract.last_trade_date, right=contract.right,
                      exchange=contract.exchange, primaryExch=contract.primary_exchange,
                      currency=contract.currency, localSymbol=contract.local_symbol,
                      tradingClass=contract.trading_class)
    if contract.strike is not None:
        p.strike = float(contract.strike)
    if contract.multiplier:
        p.multiplier = float(contract.multiplier)
    if contract.sec_id_type or contract.sec_id:
        p.secIdType, p.secId = contract.sec_id_type, contract.sec_id
    return p


def order_proto(order: OrderParams, *, order_id: int | None) -> Any:
    """Return the protobuf Order for `order`, leaving unset prices absent."""
    p = OrderProto(clientId=order.client_id, permId=order.perm_id, parentId=order.parent_id,
                   action=order.action, orderType=order.order_type, tif=order.tif, account=order.account,
                   ocaGroup=order.oca_group, ocaType=order.oca_type, orderRef=order.order_ref,
                   outsideRth=order.outside_rth, hidden=order.hidden, goodAfterTime=order.good_after_time,
                   goodTillDate=order.good_till_date, whatIf=order.what_if, transmit=order.transmit)
    if order_id is not None:
        p.orderId = order_id
    if order.total_quantity is not None:
        p.totalQuantity = dec_str(order.total_quantity)
    for name, value in (("lmtPrice", order.lmt_price), ("auxPrice", order.aux_price),
                        ("trailingPercent", order.trailing_percent), ("trailStopPrice", order.trail_stop_price)):
        if value is not None:
            setattr(p, name, float(value))
    return p
