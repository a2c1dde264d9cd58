"""Text (NUL-separated) half of the wire layer: sv 200 request decoders and named response field layouts."""

from __future__ import annotations

import re
from dataclasses import replace
from decimal import Decimal, InvalidOperation
from typing import Callable, Final, Mapping

from ibapi.message import OUT

from simulator.wire_base import (
    UNSET_FLOAT,
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

_INT = re.compile(rb"[+-]?[0-9]{1,19}")
_NUMBER = re.compile(rb"[+-]?(?:[0-9]{1,40}(?:\.[0-9]{0,40})?|\.[0-9]{1,40})(?:[eE][+-]?[0-9]{1,4})?")
_INT64 = range(-(2**63), 2**63)
# ibapi's Decimal decoder maps these spellings to UNSET_DECIMAL; Python's str(UNSET_DECIMAL) too.
_UNSET_DECIMAL_TEXT: Final = frozenset(
    {b"2147483647", b"9223372036854775807", b"-9223372036854775808", b"1.7976931348623157E308",
     b"1.7976931348623157e+308", b"170141183460469231731687303715884105727"}
)
_MAX_COUNT = 1000
_MAX_EXPONENT = 400   # bigger magnitudes are never real prices/sizes and make arithmetic slow
PEG_BENCH_TYPES: Final = frozenset({"PEG BENCH", "PEGBENCH"})   # each adds value-dependent fields
_PEG_BEST_TYPES: Final = frozenset({"PEG BEST", "PEGBEST"})
_PEG_MID_TYPES: Final = frozenset({"PEG MID", "PEGMID"})
# A real TWS (Java) writes Double.MAX_VALUE like this; ibapi's float() reads it as UNSET_DOUBLE.
UNSET_DOUBLE_TEXT: Final = "1.7976931348623157E308"


def parse_number(value: bytes) -> Decimal:
    """Return a plain decimal number (no NaN, infinities, underscores or huge exponents); ValueError otherwise."""
    if _NUMBER.fullmatch(value) is None:
        raise ValueError(f"not a number: {value[:40]!r}")
    try:
        number = Decimal(value.decode("ascii"))
    except InvalidOperation:
        raise ValueError(f"not a number: {value[:40]!r}") from None
    if number and abs(number.adjusted()) > _MAX_EXPONENT:
        raise ValueError(f"number out of range: {value[:40]!r}")
    return number


class _Reader:
    """Sequential typed access to one text message's fields; every failure is a WireError."""

    __slots__ = ("_fields", "_pos", "msg_id", "request_id")

    def __init__(self, body: bytes, msg_id: int) -> None:
        self.msg_id = msg_id
        self.request_id: int | None = None
        if body and not body.endswith(b"\0"):
            raise WireError("last field is not NUL-terminated", msg_id=msg_id)
        self._fields = body.split(b"\0")[:-1] if body else []
        self._pos = 0

    def error(self, message: str) -> WireError:
        return WireError(f"field {self._pos - 1}: {message}", msg_id=self.msg_id, request_id=self.request_id)

    def raw(self) -> bytes:
        if self._pos >= len(self._fields):
            self._pos += 1
            raise self.error("message truncated")
        value = self._fields[self._pos]
        self._pos += 1
        return value

    def skip(self, count: int = 1) -> None:
        for _ in range(count):
            self.raw()

    def string(self) -> str:
        try:
            return self.raw().decode("utf-8")
        except UnicodeDecodeError:
            raise self.error("not UTF-8") from None

    def integer(self) -> int:
        value = self.raw()
        if _INT.fullmatch(value) is None:
            raise self.error(f"not an integer: {value[:40]!r}")
        number = int(value)
        if number not in _INT64:
            raise self.error("integer out of range")
        return number

    def opt_int(self) -> int | None:
        """Read an int where "" or UNSET_INTEGER means unset."""
        value = self.raw()
        if value == b"":
            return None
        self._pos -= 1
        number = self.integer()
        return None if number == 2**31 - 1 else number

    def boolean(self) -> bool:
        return self.integer() != 0

    def count(self) -> int:
        """Read the length of a repeated section; a hostile count must not drive a huge loop."""
        number = self.integer()
        if not 0 <= number <= _MAX_COUNT:
            raise self.error(f"bad count {number}")
        return number

    def price(self) -> Decimal | None:
        """Read a double where "" and both spellings of UNSET_DOUBLE mean unset."""
        value = self.raw()
        if value == b"":
            return None
        number = self._number(value)
        return None if float(value) == UNSET_FLOAT else number

    def decimal(self) -> Decimal | None:
        """Read a Decimal quantity where "" and ibapi's UNSET_DECIMAL spellings mean unset."""
        value = self.raw()
        if value == b"" or value in _UNSET_DECIMAL_TEXT:
            return None
        return self._number(value)

    def _number(self, value: bytes) -> Decimal:
        try:
            return parse_number(value)
        except ValueError as exc:
            raise self.error(str(exc)) from None

    def done(self) -> None:
        extra = len(self._fields) - self._pos
        if extra:
            raise WireError(f"{extra} unexpected trailing field(s)", msg_id=self.msg_id, request_id=self.request_id)


# ---------------------------------------------------------------------------------------------
# Client → server: the layouts ibapi 10.50's EClient writes at sv 200 (valid unchanged to 226).


def _contract(r: _Reader, *, sec_id: bool = False) -> Contract:
    """Read conId … tradingClass (+ secIdType, secId), the order every request uses."""
    fields = dict(
        con_id=r.integer(), symbol=r.string(), sec_type=r.string(), last_trade_date=r.string(), strike=r.price(),
        right=r.string(), multiplier=r.string(), exchange=r.string(), primary_exchange=r.string(),
        currency=r.string(), local_symbol=r.string(), trading_class=r.string(),
    )
    if sec_id:
        fields.update(sec_id_type=r.string(), sec_id=r.string())
    return Contract(**fields)


def _short_legs(r: _Reader) -> tuple[ComboLeg, ...]:
    return tuple(ComboLeg(con_id=r.integer(), ratio=r.integer(), action=r.string(), exchange=r.string())
                 for _ in range(r.count()))


def _start_api(r: _Reader) -> StartApi:
    r.skip()
    return StartApi(client_id=r.integer(), optional_capabilities=r.string())


def _req_ids(r: _Reader) -> ReqIds:
    r.skip()
    return ReqIds(num_ids=r.integer())


def _req_mkt_data(r: _Reader) -> ReqMktData:
    r.skip()
    req_id = r.request_id = r.integer()
    contract = _contract(r)
    if contract.sec_type == "BAG":
        contract = replace(contract, combo_legs=_short_legs(r))
    if r.boolean():              # delta-neutral contract: conId, delta, price
        r.skip(3)
    generic_ticks, snapshot, regulatory = r.string(), r.boolean(), r.boolean()
    r.skip()                  # mktDataOptions, "internal use only"
    return ReqMktData(req_id=req_id, contract=contract, generic_ticks=generic_ticks, snapshot=snapshot,
                      regulatory_snapshot=regulatory)


def _versioned_req_id(cls: type) -> Callable[[_Reader], Request]:
    def decode(r: _Reader) -> Request:
        r.skip()
        return cls(req_id=r.integer())
    return decode


def _version_only(cls: type) -> Callable[[_Reader], Request]:
    def decode(r: _Reader) -> Request:
        r.skip()
        return cls()
    return decode


def _place_order(r: _Reader) -> PlaceOrder:
    order_id = r.request_id = r.integer()
    contract = _contract(r, sec_id=True)
    action, quantity, order_type = r.string(), r.decimal(), r.string()
    lmt_price, aux_price = r.price(), r.price()
    tif, oca_group, account = r.string(), r.string(), r.string()
    r.skip(2)                                     # openClose, origin
    order_ref, transmit, parent_id = r.string(), r.boolean(), r.integer()
    r.skip(4)                                     # blockOrder, sweepToFill, displaySize, triggerMethod
    outside_rth, hidden = r.boolean(), r.boolean()
    if contract.sec_type == "BAG":
        legs = []
        for _ in range(r.count()):
            legs.append(ComboLeg(con_id=r.integer(), ratio=r.integer(), action=r.string(), exchange=r.string()))
            r.skip(4)                             # openClose, shortSaleSlot, designatedLocation, exemptCode
        contract = replace(contract, combo_legs=tuple(legs))
        r.skip(r.count())                         # order combo leg prices
        r.skip(2 * r.count())                     # smart combo routing tag/value pairs
    r.skip(2)                                     # sharesAllocation (deprecated), discretionaryAmt
    good_after_time, good_till_date = r.string(), r.string()
    r.skip(4)                                     # faGroup, faMethod, faPercentage, modelCode
    r.skip(3)                                     # shortSaleSlot, designatedLocation, exemptCode
    oca_type = r.integer()
    r.skip(17)                                    # rule80A … volatilityType
    delta_neutral_type = r.string()
    r.skip()                                      # deltaNeutralAuxPrice
    if delta_neutral_type:
        r.skip(8)
    r.skip(2)                                     # continuousUpdate, referencePriceType
    trail_stop_price, trailing_percent = r.price(), r.price()
    r.skip(2)                                     # scaleInitLevelSize, scaleSubsLevelSize
    scale_increment = r.price()
    if scale_increment is not None and scale_increment > 0:
        r.skip(7)
    r.skip(3)                                     # scaleTable, activeStartTime, activeStopTime
    if r.string():                                   # hedgeType, then hedgeParam
        r.skip()
    r.skip(4)                                     # optOutSmartRouting, clearingAccount, clearingIntent, notHeld
    if r.boolean():                                  # delta-neutral contract: conId, delta, price
        r.skip(3)
    algo_strategy = r.string()
    if algo_strategy:
        r.skip(2 * r.count())                     # algo tag/value pairs
    r.skip()                                      # algoId
    what_if = r.boolean()
    r.skip(4)                                     # orderMiscOptions, solicited, randomizeSize, randomizePrice
    if order_type in PEG_BENCH_TYPES:
        r.skip(5)
    if r.integer() > 0:
        raise UnsupportedRequest("order conditions are not supported", msg_id=r.msg_id, request_id=order_id)
    r.skip(7)                                     # adjustedOrderType … adjustableTrailingUnit
    r.skip(1 + 2 + 1 + 4)                         # extOperator, softDollarTier, cashQty, 4 × mifid2
    r.skip(9)                                     # dontUseAutoPriceForHedge … manualOrderTime
    if contract.exchange == "IBKRATS":
        r.skip()                                  # minTradeQty
    if order_type in _PEG_BEST_TYPES:
        r.skip()                                  # minCompeteSize
        if r.raw() == b"Infinity":                # competeAgainstBestOffset == UP_TO_MID
            r.skip(2)
    elif order_type in _PEG_MID_TYPES:
        r.skip(2)                                 # midOffsetAtWhole, midOffsetAtHalf
    r.skip(5)                                     # customerAccount … imbalanceOnly
    order = OrderParams(
        action=action, total_quantity=quantity, order_type=order_type, lmt_price=lmt_price,
        aux_price=aux_price, trailing_percent=trailing_percent, trail_stop_price=trail_stop_price, tif=tif,
        parent_id=parent_id, transmit=transmit, oca_group=oca_group, oca_type=oca_type, order_ref=order_ref,
        account=account, outside_rth=outside_rth, hidden=hidden, good_after_time=good_after_time,
        good_till_date=good_till_date, what_if=what_if, algo_strategy=algo_strategy,
    )
    return PlaceOrder(order_id=order_id, contract=contract, order=order, attached=None)


def _cancel_order(r: _Reader) -> CancelOrder:
    order_id = r.request_id = r.integer()
    return CancelOrder(order_id=order_id, manual_order_cancel_time=r.string(), ext_operator=r.string(),
                       manual_order_indicator=r.opt_int())


def _global_cancel(r: _Reader) -> ReqGlobalCancel:
    return ReqGlobalCancel(ext_operator=r.string(), manual_order_indicator=r.opt_int())


def _auto_open_orders(r: _Reader) -> ReqAutoOpenOrders:
    r.skip()
    return ReqAutoOpenOrders(auto_bind=r.boolean())


def _completed_orders(r: _Reader) -> ReqCompletedOrders:
    return ReqCompletedOrders(api_only=r.boolean())


def _market_data_type(r: _Reader) -> ReqMarketDataType:
    r.skip()
    return ReqMarketDataType(market_data_type=r.integer())


def _account_summary(r: _Reader) -> ReqAccountSummary:
    r.skip()
    req_id = r.request_id = r.integer()
    group, tags = r.string(), r.string()
    return ReqAccountSummary(req_id=req_id, group=group, tags=split_tags(tags))


def split_tags(tags: str) -> tuple[str, ...]:
    """Return the comma-separated account summary tags, trimmed, empties dropped."""
    return tuple(tag.strip() for tag in tags.split(",") if tag.strip())


def _executions(r: _Reader) -> ReqExecutions:
    r.skip()
    req_id = r.request_id = r.integer()
    client_id, account, time, symbol, sec_type, exchange, side = (
        r.integer(), r.string(), r.string(), r.string(), r.string(), r.string(), r.string())
    last_n_days = r.opt_int()
    dates = tuple(r.integer() for _ in range(r.count()))
    return ReqExecutions(req_id=req_id, filter=ExecutionFilter(
        client_id=client_id, account=account, time=time, symbol=symbol, sec_type=sec_type,
        exchange=exchange, side=side, last_n_days=last_n_days, specific_dates=dates))


def _contract_details(r: _Reader) -> ReqContractDetails:
    r.skip()
    req_id = r.request_id = r.integer()
    con_id, symbol, sec_type, last_trade_date = r.integer(), r.string(), r.string(), r.string()
    strike, right, multiplier, exchange = r.price(), r.string(), r.string(), r.string()
    primary_exchange, currency, local_symbol, trading_class = r.string(), r.string(), r.string(), r.string()
    include_expired, sec_id_type, sec_id = r.boolean(), r.string(), r.string()
    r.skip()                                      # issuerId
    return ReqContractDetails(req_id=req_id, contract=Contract(
        con_id=con_id, symbol=symbol, sec_type=sec_type, last_trade_date=last_trade_date, strike=strike,
        right=right, multiplier=multiplier, exchange=exchange, primary_exchange=primary_exchange,
        currency=currency, local_symbol=local_symbol, trading_class=trading_class,
        include_expired=include_expired, sec_id_type=sec_id_type, sec_id=sec_id))


def _historical_data(r: _Reader) -> ReqHistoricalData:
    req_id = r.request_id = r.integer()           # no version field since SYNT_REALTIME_BARS
    contract = _contract(r)
    include_expired = r.boolean()
    end, bar_size, duration, use_rth, what_to_show, format_date = (
        r.string(), r.string(), r.string(), r.boolean(), r.string(), r.integer())
    legs = _short_legs(r) if contract.sec_type == "BAG" else ()
    keep_up_to_date = r.boolean()
    r.skip()                                  # chartOptions
    contract = replace(contract, include_expired=include_expired, combo_legs=legs)
    return ReqHistoricalData(req_id=req_id, contract=contract, end_date_time=end, duration=duration,
                             bar_size=bar_size, what_to_show=what_to_show, use_rth=use_rth,
                             format_date=format_date, keep_up_to_date=keep_up_to_date)


def _real_time_bars(r: _Reader) -> ReqRealTimeBars:
    r.skip()
    req_id = r.request_id = r.integer()
    contract = _contract(r)
    bar_size, what_to_show, use_rth = r.integer(), r.string(), r.boolean()
    r.skip()                                  # realTimeBarsOptions
    return ReqRealTimeBars(req_id=req_id, contract=contract, bar_size=bar_size, what_to_show=what_to_show,
                           use_rth=use_rth)


_DECODERS: Final[Mapping[int, Callable[[_Reader], Request]]] = {
    OUT.START_API: _start_api,
    OUT.REQ_IDS: _req_ids,
    OUT.REQ_CURRENT_TIME: _version_only(ReqCurrentTime),
    OUT.REQ_MARKET_DATA_TYPE: _market_data_type,
    OUT.REQ_MKT_DATA: _req_mkt_data,
    OUT.CANCEL_MKT_DATA: _versioned_req_id(CancelMktData),
    OUT.PLACE_ORDER: _place_order,
    OUT.CANCEL_ORDER: _cancel_order,
    OUT.REQ_GLOBAL_CANCEL: _global_cancel,
    OUT.REQ_OPEN_ORDERS: _version_only(ReqOpenOrders),
    OUT.REQ_ALL_OPEN_ORDERS: _version_only(ReqAllOpenOrders),
    OUT.REQ_AUTO_OPEN_ORDERS: _auto_open_orders,
    OUT.REQ_COMPLETED_ORDERS: _completed_orders,
    OUT.REQ_POSITIONS: _version_only(ReqPositions),
    OUT.CANCEL_POSITIONS: _version_only(CancelPositions),
    OUT.REQ_ACCOUNT_SUMMARY: _account_summary,
    OUT.CANCEL_ACCOUNT_SUMMARY: _versioned_req_id(CancelAccountSummary),
    OUT.REQ_EXECUTIONS: _executions,
    OUT.REQ_CONTRACT_DATA: _contract_details,
    OUT.REQ_HISTORICAL_DATA: _historical_data,
    OUT.CANCEL_HISTORICAL_DATA: _versioned_req_id(CancelHistoricalData),
    OUT.REQ_REAL_TIME_BARS: _real_time_bars,
    OUT.CANCEL_REAL_TIME_BARS: _versioned_req_id(CancelRealTimeBars),
    OUT.REQ_MANAGED_ACCTS: _version_only(ReqManagedAccts),
}


def decode_text_request(msg_id: int, body: bytes) -> Request:
    """Decode the NUL-separated body of request `msg_id`; unknown ids become Unknown."""
    decoder = _DECODERS.get(msg_id)
    if decoder is None:
        return Unknown(msg_id=msg_id, protobuf=False)
    reader = _Reader(body, msg_id)
    request = decoder(reader)
    reader.done()
    return request


# ---------------------------------------------------------------------------------------------
# Server → client: every layout is a named field list (what ibapi's decoder reads at sv 200..226).
# Encoders fill a {name: text} mapping; unnamed positions go out empty, which the decoder reads
# as 0, "" or UNSET. A name that is not in the layout is a bug and raises at once.

TICK_PRICE: Final = ("version", "reqId", "tickType", "price", "size", "attrMask")
TICK_SIZE: Final = ("version", "reqId", "tickType", "size")
TICK_STRING: Final = ("version", "reqId", "tickType", "value")
TICK_GENERIC: Final = ("version", "reqId", "tickType", "value")
MARKET_DATA_TYPE: Final = ("version", "reqId", "marketDataType")
ORDER_STATUS: Final = ("orderId", "status", "filled", "remaining", "avgFillPrice", "permId", "parentId",
                       "lastFillPrice", "clientId", "whyHeld", "mktCapPrice")
ERR_MSG: Final = ("reqId", "errorCode", "errorMsg", "advancedOrderRejectJson", "errorTime")
NEXT_VALID_ID: Final = ("version", "orderId")
MANAGED_ACCTS: Final = ("version", "accountsList")
CURRENT_TIME: Final = ("version", "time")
OPEN_ORDER_END: Final = ("version",)
EXECUTION_DATA_END: Final = ("version", "reqId")
POSITION_END: Final = ("version",)
ACCOUNT_SUMMARY: Final = ("version", "reqId", "account", "tag", "value", "currency")
ACCOUNT_SUMMARY_END: Final = ("version", "reqId")
CONTRACT_DATA_END: Final = ("version", "reqId")
COMPLETED_ORDERS_END: Final = ()
COMMISSION_REPORT: Final = ("version", "execId", "commissionAndFees", "currency", "realizedPNL", "yield",
                            "yieldRedemptionDate")
REAL_TIME_BARS: Final = ("version", "reqId", "time", "open", "high", "low", "close", "volume", "wap", "count")
HISTORICAL_DATA_END: Final = ("reqId", "startDateStr", "endDateStr")
HISTORICAL_DATA_HEAD: Final = ("reqId", "itemCount")
HISTORICAL_BAR: Final = ("date", "open", "high", "low", "close", "volume", "wap", "barCount")

_CONTRACT_SHORT: Final = ("contract.conId", "contract.symbol", "contract.secType",
                          "contract.lastTradeDateOrContractMonth", "contract.strike", "contract.right",
                          "contract.multiplier", "contract.exchange", "contract.currency",
                          "contract.localSymbol", "contract.tradingClass")
POSITION_DATA: Final = ("version", "account", *_CONTRACT_SHORT, "position", "avgCost")
EXECUTION_DATA: Final = (
    "reqId", "order.orderId", *_CONTRACT_SHORT,
    "execId", "time", "acctNumber", "exchange", "side", "shares", "price", "permId", "clientId",
    "liquidation", "cumQty", "avgPrice", "orderRef", "evRule", "evMultiplier", "modelCode",
    "lastLiquidity", "pendingPriceRevision", "submitter",
)
_ORDER_STATE_PREVIEW: Final = (
    "state.initMarginBefore", "state.maintMarginBefore", "state.equityWithLoanBefore",
    "state.initMarginChange", "state.maintMarginChange", "state.equityWithLoanChange",
    "state.initMarginAfter", "state.maintMarginAfter", "state.equityWithLoanAfter",
    "state.commissionAndFees", "state.minCommissionAndFees", "state.maxCommissionAndFees",
    "state.commissionAndFeesCurrency", "state.marginCurrency",
    "state.initMarginBeforeOutsideRTH", "state.maintMarginBeforeOutsideRTH",
    "state.equityWithLoanBeforeOutsideRTH", "state.initMarginChangeOutsideRTH",
    "state.maintMarginChangeOutsideRTH", "state.equityWithLoanChangeOutsideRTH",
    "state.initMarginAfterOutsideRTH", "state.maintMarginAfterOutsideRTH",
    "state.equityWithLoanAfterOutsideRTH", "state.suggestedSize", "state.rejectReason",
    "state.accountsCount", "state.warningText",
)
# Inserted after "order.randomizePrice" when the order type is PEG BENCH (both layouts below).
PEG_BENCH: Final = ("order.referenceContractId", "order.isPeggedChangeAmountDecrease",
                    "order.peggedChangeAmount", "order.referenceChangeAmount", "order.referenceExchangeId")
# OPEN_ORDER (5) without value-dependent sections: 147 fields (reference Appendix A).
OPEN_ORDER: Final = (
    "order.orderId", *_CONTRACT_SHORT,
    "order.action", "order.totalQuantity", "order.orderType", "order.lmtPrice", "order.auxPrice",
    "order.tif", "order.ocaGroup", "order.account", "order.openClose", "order.origin", "order.orderRef",
    "order.clientId", "order.permId", "order.outsideRth", "order.hidden", "order.discretionaryAmt",
    "order.goodAfterTime", "deprecated.sharesAllocation", "order.faGroup", "order.faMethod",
    "order.faPercentage", "order.modelCode", "order.goodTillDate", "order.rule80A", "order.percentOffset",
    "order.settlingFirm", "order.shortSaleSlot", "order.designatedLocation", "order.exemptCode",
    "order.auctionStrategy", "order.startingPrice", "order.stockRefPrice", "order.delta",
    "order.stockRangeLower", "order.stockRangeUpper", "order.displaySize", "order.blockOrder",
    "order.sweepToFill", "order.allOrNone", "order.minQty", "order.ocaType", "deprecated.eTradeOnly",
    "deprecated.firmQuoteOnly", "deprecated.nbboPriceCap", "order.parentId", "order.triggerMethod",
    "order.volatility", "order.volatilityType", "order.deltaNeutralOrderType",
    "order.deltaNeutralAuxPrice", "order.continuousUpdate", "order.referencePriceType",
    "order.trailStopPrice", "order.trailingPercent", "order.basisPoints", "order.basisPointsType",
    "contract.comboLegsDescrip", "contract.comboLegsCount", "order.comboLegsCount",
    "order.smartComboRoutingParamsCount", "order.scaleInitLevelSize", "order.scaleSubsLevelSize",
    "order.scalePriceIncrement", "order.hedgeType", "order.optOutSmartRouting", "order.clearingAccount",
    "order.clearingIntent", "order.notHeld", "contract.deltaNeutralContractPresent", "order.algoStrategy",
    "order.solicited", "order.whatIf", "state.status", *_ORDER_STATE_PREVIEW,
    "order.randomizeSize", "order.randomizePrice", "order.conditionsCount",
    "order.adjustedOrderType", "order.triggerPrice", "order.trailStopPrice#adjusted",
    "order.lmtPriceOffset", "order.adjustedStopPrice", "order.adjustedStopLimitPrice",
    "order.adjustedTrailingAmount", "order.adjustableTrailingUnit", "order.softDollarTier.name",
    "order.softDollarTier.value", "order.softDollarTier.displayName", "order.cashQty",
    "order.dontUseAutoPriceForHedge", "order.isOmsContainer", "order.discretionaryUpToLimitPrice",
    "order.usePriceMgmtAlgo", "order.duration", "order.postToAts", "order.autoCancelParent",
    "order.minTradeQty", "order.minCompeteSize", "order.competeAgainstBestOffset",
    "order.midOffsetAtWhole", "order.midOffsetAtHalf", "order.customerAccount",
    "order.professionalCustomer", "order.bondAccruedInterest", "order.includeOvernight",
    "order.extOperator", "order.manualOrderIndicator", "order.submitter", "order.imbalanceOnly",
)
# COMPLETED_ORDER (101) without value-dependent sections.
COMPLETED_ORDER: Final = (
    *_CONTRACT_SHORT,
    "order.action", "order.totalQuantity", "order.orderType", "order.lmtPrice", "order.auxPrice",
    "order.tif", "order.ocaGroup", "order.account", "order.openClose", "order.origin", "order.orderRef",
    "order.permId", "order.outsideRth", "order.hidden", "order.discretionaryAmt", "order.goodAfterTime",
    "order.faGroup", "order.faMethod", "order.faPercentage", "order.modelCode", "order.goodTillDate",
    "order.rule80A", "order.percentOffset", "order.settlingFirm", "order.shortSaleSlot",
    "order.designatedLocation", "order.exemptCode", "order.startingPrice", "order.stockRefPrice",
    "order.delta", "order.stockRangeLower", "order.stockRangeUpper", "order.displaySize",
    "order.sweepToFill", "order.allOrNone", "order.minQty", "order.ocaType", "order.triggerMethod",
    "order.volatility", "order.volatilityType", "order.deltaNeutralOrderType",
    "order.deltaNeutralAuxPrice", "order.continuousUpdate", "order.referencePriceType",
    "order.trailStopPrice", "order.trailingPercent", "contract.comboLegsDescrip",
    "contract.comboLegsCount", "order.comboLegsCount", "order.smartComboRoutingParamsCount",
    "order.scaleInitLevelSize", "order.scaleSubsLevelSize", "order.scalePriceIncrement",
    "order.hedgeType", "order.clearingAccount", "order.clearingIntent", "order.notHeld",
    "contract.deltaNeutralContractPresent", "order.algoStrategy", "order.solicited", "state.status",
    "order.randomizeSize", "order.randomizePrice", "order.conditionsCount",
    "order.trailStopPrice#adjusted", "order.lmtPriceOffset", "order.cashQty",
    "order.dontUseAutoPriceForHedge", "order.isOmsContainer", "order.autoCancelDate",
    "order.filledQuantity", "order.refFuturesConId", "order.autoCancelParent", "order.shareholder",
    "order.imbalanceOnly", "order.routeMarketableToBbo", "order.parentPermId", "state.completedTime",
    "state.completedStatus", "order.minTradeQty", "order.minCompeteSize",
    "order.competeAgainstBestOffset", "order.midOffsetAtWhole", "order.midOffsetAtHalf",
    "order.customerAccount", "order.professionalCustomer", "order.submitter",
)
# CONTRACT_DATA (10) at sv >= 182 (no version field since SIZE_RULES).
CONTRACT_DATA: Final = (
    "reqId", "contract.symbol", "contract.secType", "contract.lastTradeDateOrContractMonth",
    "contract.lastTradeDate", "contract.strike", "contract.right", "contract.exchange", "contract.currency",
    "contract.localSymbol", "marketName", "contract.tradingClass", "contract.conId", "minTick",
    "contract.multiplier", "orderTypes", "validExchanges", "priceMagnifier", "underConId", "longName",
    "contract.primaryExchange", "contractMonth", "industry", "category", "subcategory", "timeZoneId",
    "tradingHours", "liquidHours", "evRule", "evMultiplier", "secIdListCount", "aggGroup", "underSymbol",
    "underSecType", "marketRuleIds", "realExpirationDate", "stockType", "minSize", "sizeIncrement",
    "suggestedSizeIncrement", "ineligibilityReasonCount",
)
# Inserted before "ineligibilityReasonCount" when secType is FUND.
FUND_FIELDS: Final = (
    "fundName", "fundFamily", "fundType", "fundFrontLoad", "fundBackLoad", "fundBackLoadTimeInterval",
    "fundManagementFee", "fundClosed", "fundClosedForNewInvestors", "fundClosedForNewMoney",
    "fundNotifyAmount", "fundMinimumInitialPurchase", "fundSubsequentMinimumPurchase", "fundBlueSkyStates",
    "fundBlueSkyTerritories", "fundDistributionPolicyIndicator", "fundAssetType",
)


def layout(names: tuple[str, ...], values: Mapping[str, str]) -> list[str]:
    """Return the field texts of `names` in order, "" where `values` has no entry."""
    unknown = values.keys() - set(names)
    if unknown:
        raise ValueError(f"fields not in the layout: {sorted(unknown)}")
    return [values.get(name, "") for name in names]


def insert_after(names: tuple[str, ...], anchor: str, extra: tuple[str, ...]) -> tuple[str, ...]:
    """Return `names` with `extra` inserted right after `anchor`."""
    at = names.index(anchor) + 1
    return names[:at] + extra + names[at:]


def text(value: str) -> str:
    """Return a string field as is; a NUL would split the frame, so it is refused."""
    if "\0" in value:
        raise ValueError(f"NUL inside a text field: {value!r}")
    return value


def escaped(value: str) -> str:
    """Return a string field the client decodes with unicode-escape (sv >= 153): ASCII with escapes."""
    return value.encode("unicode_escape").decode("ascii")


def num(value: Decimal | int | None) -> str:
    """Return a number field; None is "" (the decoder's unset or 0)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if not value.is_finite():
        raise ValueError(f"non-finite number: {value}")
    return format(value, "f")


def flag(value: bool) -> str:
    """Return a bool field as ibapi writes and reads it: 1 or 0."""
    return "1" if value else "0"


def contract_values(contract: Contract) -> dict[str, str]:
    """Return the contract's entries for the layouts that use the 11-field short contract."""
    return {
        "contract.conId": num(contract.con_id), "contract.symbol": text(contract.symbol),
        "contract.secType": text(contract.sec_type),
        "contract.lastTradeDateOrContractMonth": text(contract.last_trade_date),
        "contract.strike": num(contract.strike), "contract.right": text(contract.right),
        "contract.multiplier": text(contract.multiplier), "contract.exchange": text(contract.exchange),
        "contract.currency": text(contract.currency), "contract.localSymbol": text(contract.local_symbol),
        "contract.tradingClass": text(contract.trading_class),
    }


def _order_values(order: OrderParams) -> dict[str, str]:
    return {
        "order.action": text(order.action), "order.totalQuantity": num(order.total_quantity),
        "order.orderType": text(order.order_type), "order.lmtPrice": num(order.lmt_price),
        "order.auxPrice": num(order.aux_price), "order.tif": text(order.tif),
        "order.ocaGroup": text(order.oca_group), "order.account": text(order.account),
        "order.origin": "0", "order.orderRef": text(order.order_ref), "order.permId": num(order.perm_id),
        "order.outsideRth": flag(order.outside_rth), "order.hidden": flag(order.hidden),
        "order.goodAfterTime": text(order.good_after_time), "order.goodTillDate": text(order.good_till_date),
        "order.exemptCode": "-1", "order.ocaType": num(order.oca_type),
        # trailStopPrice is read twice (trail params, then adjusted-order params): send it both times.
        "order.trailStopPrice": num(order.trail_stop_price),
        "order.trailStopPrice#adjusted": num(order.trail_stop_price),
        "order.trailingPercent": num(order.trailing_percent),
        # Value-dependent sections stay closed: no delta-neutral order, combo legs, algo, conditions.
        "contract.comboLegsCount": "0", "order.comboLegsCount": "0", "order.smartComboRoutingParamsCount": "0",
        "contract.deltaNeutralContractPresent": "0", "order.conditionsCount": "0",
    }


def _with_peg_bench(names: tuple[str, ...], order: OrderParams) -> tuple[str, ...]:
    if order.order_type in PEG_BENCH_TYPES:
        return insert_after(names, "order.randomizePrice", PEG_BENCH)
    return names


def open_order_fields(*, order_id: int, contract: Contract, order: OrderParams, status: str,
                      commission: Decimal | None, commission_currency: str, warning_text: str) -> list[str]:
    """Return the OPEN_ORDER field texts for a plain order."""
    values = {
        "order.orderId": num(order_id), **contract_values(contract), **_order_values(order),
        "order.clientId": num(order.client_id), "order.parentId": num(order.parent_id),
        "order.whatIf": flag(order.what_if), "state.status": text(status),
        "state.commissionAndFees": num(commission), "state.commissionAndFeesCurrency": text(commission_currency),
        "state.accountsCount": "0", "state.warningText": text(warning_text),
    }
    return layout(_with_peg_bench(OPEN_ORDER, order), values)


def completed_order_fields(*, contract: Contract, order: OrderParams, status: str, filled: Decimal | None,
                           completed_time: str, completed_status: str) -> list[str]:
    """Return the COMPLETED_ORDER field texts for a plain order."""
    values = {
        **contract_values(contract), **_order_values(order), "state.status": text(status),
        "order.filledQuantity": num(filled), "state.completedTime": text(completed_time),
        "state.completedStatus": text(completed_status),
    }
    return layout(_with_peg_bench(COMPLETED_ORDER, order), values)


def execution_fields(*, req_id: int, contract: Contract, execution: ExecutionReport) -> list[str]:
    """Return the EXECUTION_DATA field texts."""
    e = execution
    return layout(EXECUTION_DATA, {
        "reqId": num(req_id), "order.orderId": num(e.order_id), **contract_values(contract),
        "execId": text(e.exec_id), "time": text(e.time), "acctNumber": text(e.account),
        "exchange": text(e.exchange), "side": text(e.side), "shares": num(e.shares), "price": num(e.price),
        "permId": num(e.perm_id), "clientId": num(e.client_id), "liquidation": num(e.liquidation),
        "cumQty": num(e.cum_qty), "avgPrice": num(e.avg_price), "orderRef": text(e.order_ref),
        "evRule": text(e.ev_rule), "evMultiplier": num(e.ev_multiplier), "modelCode": text(e.model_code),
        "lastLiquidity": num(e.last_liquidity), "pendingPriceRevision": flag(e.pending_price_revision),
        "submitter": text(e.submitter),
    })


def contract_details_fields(*, req_id: int, details: ContractDetails) -> list[str]:
    """Return the CONTRACT_DATA field texts."""
    d, c = details, details.contract
    names = CONTRACT_DATA
    if c.sec_type == "FUND":
        names = insert_after(names, "suggestedSizeIncrement", FUND_FIELDS)
    return layout(names, {
        "reqId": num(req_id), "contract.symbol": text(c.symbol), "contract.secType": text(c.sec_type),
        "contract.lastTradeDateOrContractMonth": text(c.last_trade_date), "contract.strike": num(c.strike),
        "contract.right": text(c.right), "contract.exchange": text(c.exchange),
        "contract.currency": text(c.currency), "contract.localSymbol": text(c.local_symbol),
        "marketName": text(d.market_name), "contract.tradingClass": text(c.trading_class),
        "contract.conId": num(c.con_id), "minTick": num(d.min_tick), "contract.multiplier": text(c.multiplier),
        "orderTypes": text(d.order_types), "validExchanges": text(d.valid_exchanges),
        "priceMagnifier": num(d.price_magnifier), "underConId": num(d.under_con_id),
        "longName": escaped(d.long_name), "contract.primaryExchange": text(c.primary_exchange),
        "contractMonth": text(d.contract_month), "industry": text(d.industry), "category": text(d.category),
        "subcategory": text(d.subcategory), "timeZoneId": text(d.time_zone_id),
        "tradingHours": text(d.trading_hours), "liquidHours": text(d.liquid_hours), "secIdListCount": "0",
        "aggGroup": num(d.agg_group), "underSymbol": text(d.under_symbol),
        "underSecType": text(d.under_sec_type), "marketRuleIds": text(d.market_rule_ids),
        "realExpirationDate": text(d.real_expiration_date), "stockType": text(d.stock_type),
        "minSize": num(d.min_size), "sizeIncrement": num(d.size_increment),
        "suggestedSizeIncrement": num(d.suggested_size_increment), "ineligibilityReasonCount": "0",
    })
