"""Text (NUL-separated) half of the wire layer: version-gated request layouts and response layouts, sv 100..200."""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Any, Callable, Final, Mapping

from ibapi.message import OUT
from ibapi.server_versions import (
    MIN_SERVER_VER_ADVANCED_ORDER_REJECT,
    MIN_SERVER_VER_AGG_GROUP,
    MIN_SERVER_VER_AUTO_CANCEL_PARENT,
    MIN_SERVER_VER_AUTO_PRICE_FOR_HEDGE,
    MIN_SERVER_VER_BOND_ACCRUED_INTEREST,
    MIN_SERVER_VER_BOND_ISSUERID,
    MIN_SERVER_VER_CASH_QTY,
    MIN_SERVER_VER_CME_TAGGING_FIELDS,
    MIN_SERVER_VER_CME_TAGGING_FIELDS_IN_OPEN_ORDER,
    MIN_SERVER_VER_CUSTOMER_ACCOUNT,
    MIN_SERVER_VER_D_PEG_ORDERS,
    MIN_SERVER_VER_DECISION_MAKER,
    MIN_SERVER_VER_DURATION,
    MIN_SERVER_VER_ENCODE_MSG_ASCII7,
    MIN_SERVER_VER_ERROR_TIME,
    MIN_SERVER_VER_EXT_OPERATOR,
    MIN_SERVER_VER_FA_PROFILE_DESUPPORT,
    MIN_SERVER_VER_FRACTIONAL_SIZE_SUPPORT,
    MIN_SERVER_VER_FULL_ORDER_PREVIEW_FIELDS,
    MIN_SERVER_VER_FUND_DATA_FIELDS,
    MIN_SERVER_VER_HISTORICAL_DATA_END,
    MIN_SERVER_VER_IMBALANCE_ONLY,
    MIN_SERVER_VER_INCLUDE_OVERNIGHT,
    MIN_SERVER_VER_INELIGIBILITY_REASONS,
    MIN_SERVER_VER_LAST_LIQUIDITY,
    MIN_SERVER_VER_LAST_TRADE_DATE,
    MIN_SERVER_VER_MANUAL_ORDER_TIME,
    MIN_SERVER_VER_MARKET_CAP_PRICE,
    MIN_SERVER_VER_MARKET_RULES,
    MIN_SERVER_VER_MD_SIZE_MULTIPLIER,
    MIN_SERVER_VER_MIFID_EXECUTION,
    MIN_SERVER_VER_MODELS_SUPPORT,
    MIN_SERVER_VER_ORDER_CONTAINER,
    MIN_SERVER_VER_PARAMETRIZED_DAYS_OF_EXECUTIONS,
    MIN_SERVER_VER_PAST_LIMIT,
    MIN_SERVER_VER_PEGBEST_PEGMID_OFFSETS,
    MIN_SERVER_VER_PEGGED_TO_BENCHMARK,
    MIN_SERVER_VER_PENDING_PRICE_REVISION,
    MIN_SERVER_VER_POST_TO_ATS,
    MIN_SERVER_VER_PRICE_MGMT_ALGO,
    MIN_SERVER_VER_PROFESSIONAL_CUSTOMER,
    MIN_SERVER_VER_REAL_EXPIRATION_DATE,
    MIN_SERVER_VER_REQ_SMART_COMPONENTS,
    MIN_SERVER_VER_RFQ_FIELDS,
    MIN_SERVER_VER_SIZE_RULES,
    MIN_SERVER_VER_SOFT_DOLLAR_TIER,
    MIN_SERVER_VER_STOCK_TYPE,
    MIN_SERVER_VER_SUBMITTER,
    MIN_SERVER_VER_SYNT_REALTIME_BARS,
    MIN_SERVER_VER_UNDERLYING_INFO,
    MIN_SERVER_VER_UNDO_RFQ_FIELDS,
    MIN_SERVER_VER_WHAT_IF_EXT_FIELDS,
)

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
    Layout,
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
    between,
    since,
    until,
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
# competeAgainstBestOffset = UP_TO_MID (infinity) adds the mid offsets: ibapi writes "Infinity",
# ib_async "Infinite".
_INFINITY_TEXT: Final = frozenset({b"Infinity", b"Infinite", b"inf"})
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

    __slots__ = ("_fields", "_pos", "msg_id", "request_id", "server_version")

    def __init__(self, body: bytes, msg_id: int, server_version: int) -> None:
        self.msg_id = msg_id
        self.server_version = server_version
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

    def read(self, layout: Layout) -> dict[str, Any]:
        """Read the fields `layout` carries at this message's version: typed where named in _KINDS, else raw."""
        values: dict[str, Any] = {}
        for name in layout.at(self.server_version):
            kind = _KINDS.get(name)
            value = self.raw() if kind is None else kind(self)
            if name in _REQUEST_ID_FIELDS:
                self.request_id = value
            values[name] = value
        return values

    def repeated(self, layout: Layout) -> list[dict[str, Any]]:
        """Read a count, then that many groups of `layout`."""
        return [self.read(layout) for _ in range(self.count())]

    def done(self) -> None:
        extra = len(self._fields) - self._pos
        if extra:
            raise WireError(f"{extra} unexpected trailing field(s)", msg_id=self.msg_id, request_id=self.request_id)


# ---------------------------------------------------------------------------------------------
# Client → server: what ibapi 10.50's EClient writes at each server version 100..226 (text bodies
# never change above 200). Each layout mirrors the order of EClient's make_field calls; a field
# named in _KINDS is decoded and validated, any other one is read raw and ignored.

_CONTRACT: Final = (
    "contract.conId", "contract.symbol", "contract.secType", "contract.lastTradeDateOrContractMonth",
    "contract.strike", "contract.right", "contract.multiplier", "contract.exchange", "contract.primaryExchange",
    "contract.currency", "contract.localSymbol", "contract.tradingClass",
)
_REQUEST_ID_FIELDS: Final = frozenset({"reqId", "orderId"})
_KINDS: Final[Mapping[str, Callable[[_Reader], Any]]] = {
    "reqId": _Reader.integer, "orderId": _Reader.integer, "clientId": _Reader.integer,
    "optionalCapabilities": _Reader.string, "numIds": _Reader.integer, "marketDataType": _Reader.integer,
    "contract.conId": _Reader.integer, "contract.strike": _Reader.price, "contract.includeExpired": _Reader.boolean,
    **{name: _Reader.string for name in (
        "contract.symbol", "contract.secType", "contract.lastTradeDateOrContractMonth", "contract.right",
        "contract.multiplier", "contract.exchange", "contract.primaryExchange", "contract.currency",
        "contract.localSymbol", "contract.tradingClass", "contract.secIdType", "contract.secId",
        "order.action", "order.orderType", "order.tif", "order.ocaGroup", "order.account", "order.orderRef",
        "order.goodAfterTime", "order.goodTillDate", "order.deltaNeutralOrderType", "order.hedgeType",
        "order.algoStrategy", "leg.action", "leg.exchange", "genericTickList", "manualOrderCancelTime",
        "extOperator", "group", "tags", "filter.acctCode", "filter.time", "filter.symbol", "filter.secType",
        "filter.exchange", "filter.side", "endDateTime", "barSizeSetting", "durationStr", "whatToShow")},
    "contract.deltaNeutralContractPresent": _Reader.boolean,
    "order.totalQuantity": _Reader.decimal,
    **{name: _Reader.price for name in (
        "order.lmtPrice", "order.auxPrice", "order.trailStopPrice", "order.trailingPercent",
        "order.scalePriceIncrement")},
    "order.transmit": _Reader.boolean, "order.parentId": _Reader.integer, "order.outsideRth": _Reader.boolean,
    "order.hidden": _Reader.boolean, "order.ocaType": _Reader.integer, "order.whatIf": _Reader.boolean,
    "order.conditionsCount": _Reader.integer,
    "leg.conId": _Reader.integer, "leg.ratio": _Reader.integer,
    "snapshot": _Reader.boolean, "regulatorySnapshot": _Reader.boolean,
    "manualOrderIndicator": _Reader.opt_int, "autoBind": _Reader.boolean, "apiOnly": _Reader.boolean,
    "filter.clientId": _Reader.integer, "filter.lastNDays": _Reader.opt_int,
    "useRTH": _Reader.boolean, "formatDate": _Reader.integer, "keepUpToDate": _Reader.boolean,
    "barSize": _Reader.integer,
}

START_API_REQ: Final = Layout("version", "clientId", "optionalCapabilities")
REQ_IDS_REQ: Final = Layout("version", "numIds")
VERSION_ONLY_REQ: Final = Layout("version")
VERSIONED_REQ_ID_REQ: Final = Layout("version", "reqId")
REQ_MARKET_DATA_TYPE_REQ: Final = Layout("version", "marketDataType")
SHORT_LEG: Final = Layout("leg.conId", "leg.ratio", "leg.action", "leg.exchange")
DELTA_NEUTRAL_CONTRACT: Final = Layout("deltaNeutralContract.conId", "deltaNeutralContract.delta",
                                       "deltaNeutralContract.price")
DELTA_NEUTRAL_PRESENT: Final = Layout("contract.deltaNeutralContractPresent")
REQ_MKT_DATA_HEAD: Final = Layout("version", "reqId", *_CONTRACT)       # then BAG legs, delta neutral
REQ_MKT_DATA_TAIL: Final = Layout("genericTickList", "snapshot",
                                  *since(MIN_SERVER_VER_REQ_SMART_COMPONENTS, "regulatorySnapshot"),
                                  "mktDataOptions")
CANCEL_ORDER_REQ: Final = Layout(
    *until(MIN_SERVER_VER_CME_TAGGING_FIELDS, "version"), "orderId",
    *since(MIN_SERVER_VER_MANUAL_ORDER_TIME, "manualOrderCancelTime"),
    # RFQ fields, withdrawn at UNDO_RFQ_FIELDS; ibapi sends "", "", UNSET_INTEGER there.
    *between(MIN_SERVER_VER_RFQ_FIELDS, MIN_SERVER_VER_UNDO_RFQ_FIELDS, "rfq.text1", "rfq.text2", "rfq.int"),
    *since(MIN_SERVER_VER_CME_TAGGING_FIELDS, "extOperator", "manualOrderIndicator"),
)
REQ_GLOBAL_CANCEL_REQ: Final = Layout(
    *until(MIN_SERVER_VER_CME_TAGGING_FIELDS, "version"),
    *since(MIN_SERVER_VER_CME_TAGGING_FIELDS, "extOperator", "manualOrderIndicator"),
)
REQ_AUTO_OPEN_ORDERS_REQ: Final = Layout("version", "autoBind")
REQ_COMPLETED_ORDERS_REQ: Final = Layout("apiOnly")
REQ_ACCOUNT_SUMMARY_REQ: Final = Layout("version", "reqId", "group", "tags")
REQ_EXECUTIONS_REQ: Final = Layout(
    "version", "reqId", "filter.clientId", "filter.acctCode", "filter.time", "filter.symbol", "filter.secType",
    "filter.exchange", "filter.side", *since(MIN_SERVER_VER_PARAMETRIZED_DAYS_OF_EXECUTIONS, "filter.lastNDays"),
)   # then, from PARAMETRIZED_DAYS_OF_EXECUTIONS, a count of specific dates and the dates
REQ_CONTRACT_DATA_REQ: Final = Layout(
    "version", "reqId", *_CONTRACT, "contract.includeExpired", "contract.secIdType", "contract.secId",
    *since(MIN_SERVER_VER_BOND_ISSUERID, "contract.issuerId"),
)
REQ_HISTORICAL_DATA_HEAD: Final = Layout(
    *until(MIN_SERVER_VER_SYNT_REALTIME_BARS, "version"), "reqId", *_CONTRACT, "contract.includeExpired",
    "endDateTime", "barSizeSetting", "durationStr", "useRTH", "whatToShow", "formatDate",
)   # then BAG legs
REQ_HISTORICAL_DATA_TAIL: Final = Layout(*since(MIN_SERVER_VER_SYNT_REALTIME_BARS, "keepUpToDate"), "chartOptions")
REQ_REAL_TIME_BARS_REQ: Final = Layout("version", "reqId", *_CONTRACT, "barSize", "whatToShow", "useRTH",
                                       "realTimeBarsOptions")

# PLACE_ORDER (3) in the segments EClient.placeOrder writes between its value-dependent sections.
PLACE_ORDER_HEAD: Final = Layout(
    *until(MIN_SERVER_VER_ORDER_CONTAINER, "version"), "orderId", *_CONTRACT, "contract.secIdType",
    "contract.secId", "order.action", "order.totalQuantity", "order.orderType", "order.lmtPrice",
    "order.auxPrice", "order.tif", "order.ocaGroup", "order.account", "order.openClose", "order.origin",
    "order.orderRef", "order.transmit", "order.parentId", "order.blockOrder", "order.sweepToFill",
    "order.displaySize", "order.triggerMethod", "order.outsideRth", "order.hidden",
)   # then, for BAG: legs, order combo leg prices, smart combo routing params
ORDER_LEG: Final = Layout("leg.conId", "leg.ratio", "leg.action", "leg.exchange", "leg.openClose",
                          "leg.shortSaleSlot", "leg.designatedLocation", "leg.exemptCode")
ORDER_LEG_PRICE: Final = Layout("legPrice")
TAG_VALUE: Final = Layout("tag", "value")
PLACE_ORDER_EXTENDED: Final = Layout(
    "deprecated.sharesAllocation", "order.discretionaryAmt", "order.goodAfterTime", "order.goodTillDate",
    "order.faGroup", "order.faMethod", "order.faPercentage",
    *until(MIN_SERVER_VER_FA_PROFILE_DESUPPORT, "deprecated.faProfile"),
    *since(MIN_SERVER_VER_MODELS_SUPPORT, "order.modelCode"),
    "order.shortSaleSlot", "order.designatedLocation", "order.exemptCode", "order.ocaType", "order.rule80A",
    "order.settlingFirm", "order.allOrNone", "order.minQty", "order.percentOffset", "deprecated.eTradeOnly",
    "deprecated.firmQuoteOnly", "deprecated.nbboPriceCap", "order.auctionStrategy", "order.startingPrice",
    "order.stockRefPrice", "order.delta", "order.stockRangeLower", "order.stockRangeUpper",
    "order.overridePercentageConstraints", "order.volatility", "order.volatilityType",
    "order.deltaNeutralOrderType", "order.deltaNeutralAuxPrice",
)   # then the delta-neutral order when deltaNeutralOrderType is set
DELTA_NEUTRAL_ORDER: Final = Layout(
    "order.deltaNeutralConId", "order.deltaNeutralSettlingFirm", "order.deltaNeutralClearingAccount",
    "order.deltaNeutralClearingIntent", "order.deltaNeutralOpenClose", "order.deltaNeutralShortSale",
    "order.deltaNeutralShortSaleSlot", "order.deltaNeutralDesignatedLocation",
)
PLACE_ORDER_TRAIL_SCALE: Final = Layout(
    "order.continuousUpdate", "order.referencePriceType", "order.trailStopPrice", "order.trailingPercent",
    "order.scaleInitLevelSize", "order.scaleSubsLevelSize", "order.scalePriceIncrement",
)   # then the scale section when scalePriceIncrement > 0
SCALE_ORDER: Final = Layout(
    "order.scalePriceAdjustValue", "order.scalePriceAdjustInterval", "order.scaleProfitOffset",
    "order.scaleAutoReset", "order.scaleInitPosition", "order.scaleInitFillQty", "order.scaleRandomPercent",
)
PLACE_ORDER_HEDGE: Final = Layout("order.scaleTable", "order.activeStartTime", "order.activeStopTime",
                                  "order.hedgeType")   # then hedgeParam when hedgeType is set
HEDGE_PARAM: Final = Layout("order.hedgeParam")
PLACE_ORDER_CLEARING: Final = Layout("order.optOutSmartRouting", "order.clearingAccount", "order.clearingIntent",
                                     "order.notHeld")   # then the delta-neutral contract flag (and contract)
ALGO_STRATEGY: Final = Layout("order.algoStrategy")   # then the algo params when it is set
PLACE_ORDER_MISC: Final = Layout("order.algoId", "order.whatIf", "order.orderMiscOptions", "order.solicited",
                                 "order.randomizeSize", "order.randomizePrice")
PEG_BENCH_ORDER: Final = Layout(*since(
    MIN_SERVER_VER_PEGGED_TO_BENCHMARK, "order.referenceContractId", "order.isPeggedChangeAmountDecrease",
    "order.peggedChangeAmount", "order.referenceChangeAmount", "order.referenceExchangeId"))
CONDITIONS_COUNT: Final = Layout(*since(MIN_SERVER_VER_PEGGED_TO_BENCHMARK, "order.conditionsCount"))
PLACE_ORDER_ADJUSTED: Final = Layout(
    *since(MIN_SERVER_VER_PEGGED_TO_BENCHMARK, "order.adjustedOrderType", "order.triggerPrice",
           "order.lmtPriceOffset", "order.adjustedStopPrice", "order.adjustedStopLimitPrice",
           "order.adjustedTrailingAmount", "order.adjustableTrailingUnit"),
    *since(MIN_SERVER_VER_EXT_OPERATOR, "order.extOperator"),
    *since(MIN_SERVER_VER_SOFT_DOLLAR_TIER, "order.softDollarTier.name", "order.softDollarTier.value"),
    *since(MIN_SERVER_VER_CASH_QTY, "order.cashQty"),
    *since(MIN_SERVER_VER_DECISION_MAKER, "order.mifid2DecisionMaker", "order.mifid2DecisionAlgo"),
    *since(MIN_SERVER_VER_MIFID_EXECUTION, "order.mifid2ExecutionTrader", "order.mifid2ExecutionAlgo"),
    *since(MIN_SERVER_VER_AUTO_PRICE_FOR_HEDGE, "order.dontUseAutoPriceForHedge"),
    *since(MIN_SERVER_VER_ORDER_CONTAINER, "order.isOmsContainer"),
    *since(MIN_SERVER_VER_D_PEG_ORDERS, "order.discretionaryUpToLimitPrice"),
    *since(MIN_SERVER_VER_PRICE_MGMT_ALGO, "order.usePriceMgmtAlgo"),
    *since(MIN_SERVER_VER_DURATION, "order.duration"),
    *since(MIN_SERVER_VER_POST_TO_ATS, "order.postToAts"),
    *since(MIN_SERVER_VER_AUTO_CANCEL_PARENT, "order.autoCancelParent"),
    *since(MIN_SERVER_VER_ADVANCED_ORDER_REJECT, "order.advancedErrorOverride"),
    *since(MIN_SERVER_VER_MANUAL_ORDER_TIME, "order.manualOrderTime"),
)   # then, from PEGBEST_PEGMID_OFFSETS, the sections for IBKRATS, PEG BEST and PEG MID
MIN_TRADE_QTY: Final = Layout("order.minTradeQty")
PEG_BEST: Final = Layout("order.minCompeteSize", "order.competeAgainstBestOffset")
MID_OFFSETS: Final = Layout("order.midOffsetAtWhole", "order.midOffsetAtHalf")
PLACE_ORDER_TAIL: Final = Layout(
    *since(MIN_SERVER_VER_CUSTOMER_ACCOUNT, "order.customerAccount"),
    *since(MIN_SERVER_VER_PROFESSIONAL_CUSTOMER, "order.professionalCustomer"),
    # RFQ fields, withdrawn at UNDO_RFQ_FIELDS; ibapi sends "", UNSET_INTEGER there.
    *between(MIN_SERVER_VER_RFQ_FIELDS, MIN_SERVER_VER_UNDO_RFQ_FIELDS, "rfq.text", "rfq.int"),
    *since(MIN_SERVER_VER_INCLUDE_OVERNIGHT, "order.includeOvernight"),
    *since(MIN_SERVER_VER_CME_TAGGING_FIELDS, "order.manualOrderIndicator"),
    *since(MIN_SERVER_VER_IMBALANCE_ONLY, "order.imbalanceOnly"),
)

_CONTRACT_ATTRS: Final = {
    "contract.conId": "con_id", "contract.symbol": "symbol", "contract.secType": "sec_type",
    "contract.lastTradeDateOrContractMonth": "last_trade_date", "contract.strike": "strike",
    "contract.right": "right", "contract.multiplier": "multiplier", "contract.exchange": "exchange",
    "contract.primaryExchange": "primary_exchange", "contract.currency": "currency",
    "contract.localSymbol": "local_symbol", "contract.tradingClass": "trading_class",
    "contract.secIdType": "sec_id_type", "contract.secId": "sec_id", "contract.includeExpired": "include_expired",
}


def _contract(values: Mapping[str, Any], legs: tuple[ComboLeg, ...] = ()) -> Contract:
    """Return the Contract of the contract.* fields read into `values`."""
    return Contract(**{attr: values[name] for name, attr in _CONTRACT_ATTRS.items() if name in values},
                    combo_legs=legs)


def _legs(r: _Reader, leg: Layout) -> tuple[ComboLeg, ...]:
    return tuple(ComboLeg(con_id=v["leg.conId"], ratio=v["leg.ratio"], action=v["leg.action"],
                          exchange=v["leg.exchange"]) for v in r.repeated(leg))


def _delta_neutral_contract(r: _Reader) -> None:
    if r.read(DELTA_NEUTRAL_PRESENT)["contract.deltaNeutralContractPresent"]:
        r.read(DELTA_NEUTRAL_CONTRACT)


def _start_api(r: _Reader) -> StartApi:
    v = r.read(START_API_REQ)
    return StartApi(client_id=v["clientId"], optional_capabilities=v["optionalCapabilities"])


def _req_ids(r: _Reader) -> ReqIds:
    return ReqIds(num_ids=r.read(REQ_IDS_REQ)["numIds"])


def _req_mkt_data(r: _Reader) -> ReqMktData:
    head = r.read(REQ_MKT_DATA_HEAD)
    legs = _legs(r, SHORT_LEG) if head["contract.secType"] == "BAG" else ()
    _delta_neutral_contract(r)
    tail = r.read(REQ_MKT_DATA_TAIL)
    return ReqMktData(req_id=head["reqId"], contract=_contract(head, legs), generic_ticks=tail["genericTickList"],
                      snapshot=tail["snapshot"], regulatory_snapshot=tail.get("regulatorySnapshot", False))


def _versioned_req_id(cls: type) -> Callable[[_Reader], Request]:
    def decode(r: _Reader) -> Request:
        return cls(req_id=r.read(VERSIONED_REQ_ID_REQ)["reqId"])
    return decode


def _version_only(cls: type) -> Callable[[_Reader], Request]:
    def decode(r: _Reader) -> Request:
        r.read(VERSION_ONLY_REQ)
        return cls()
    return decode


def _place_order(r: _Reader) -> PlaceOrder:
    v = r.read(PLACE_ORDER_HEAD)
    order_id = v["orderId"]
    legs: tuple[ComboLeg, ...] = ()
    if v["contract.secType"] == "BAG":
        legs = _legs(r, ORDER_LEG)
        r.repeated(ORDER_LEG_PRICE)
        r.repeated(TAG_VALUE)                     # smart combo routing params
    v |= r.read(PLACE_ORDER_EXTENDED)
    if v["order.deltaNeutralOrderType"]:
        r.read(DELTA_NEUTRAL_ORDER)
    v |= r.read(PLACE_ORDER_TRAIL_SCALE)
    increment = v["order.scalePriceIncrement"]
    if increment is not None and increment > 0:
        r.read(SCALE_ORDER)
    v |= r.read(PLACE_ORDER_HEDGE)
    if v["order.hedgeType"]:
        r.read(HEDGE_PARAM)
    r.read(PLACE_ORDER_CLEARING)
    _delta_neutral_contract(r)
    v |= r.read(ALGO_STRATEGY)
    if v["order.algoStrategy"]:
        r.repeated(TAG_VALUE)                     # algo params
    v |= r.read(PLACE_ORDER_MISC)
    if v["order.orderType"] in PEG_BENCH_TYPES:
        r.read(PEG_BENCH_ORDER)
    if r.read(CONDITIONS_COUNT).get("order.conditionsCount", 0) > 0:
        raise UnsupportedRequest("order conditions are not supported", msg_id=r.msg_id, request_id=order_id)
    r.read(PLACE_ORDER_ADJUSTED)
    if r.server_version >= MIN_SERVER_VER_PEGBEST_PEGMID_OFFSETS:
        if v["contract.exchange"] == "IBKRATS":
            r.read(MIN_TRADE_QTY)
        if v["order.orderType"] in _PEG_BEST_TYPES:
            if r.read(PEG_BEST)["order.competeAgainstBestOffset"] in _INFINITY_TEXT:
                r.read(MID_OFFSETS)
        elif v["order.orderType"] in _PEG_MID_TYPES:
            r.read(MID_OFFSETS)
    r.read(PLACE_ORDER_TAIL)
    order = OrderParams(
        action=v["order.action"], total_quantity=v["order.totalQuantity"], order_type=v["order.orderType"],
        lmt_price=v["order.lmtPrice"], aux_price=v["order.auxPrice"], trailing_percent=v["order.trailingPercent"],
        trail_stop_price=v["order.trailStopPrice"], tif=v["order.tif"], parent_id=v["order.parentId"],
        transmit=v["order.transmit"], oca_group=v["order.ocaGroup"], oca_type=v["order.ocaType"],
        order_ref=v["order.orderRef"], account=v["order.account"], outside_rth=v["order.outsideRth"],
        hidden=v["order.hidden"], good_after_time=v["order.goodAfterTime"], good_till_date=v["order.goodTillDate"],
        what_if=v["order.whatIf"], algo_strategy=v["order.algoStrategy"],
    )
    return PlaceOrder(order_id=order_id, contract=_contract(v, legs), order=order, attached=None)


def _cancel_order(r: _Reader) -> CancelOrder:
    v = r.read(CANCEL_ORDER_REQ)
    return CancelOrder(order_id=v["orderId"], manual_order_cancel_time=v.get("manualOrderCancelTime", ""),
                       ext_operator=v.get("extOperator", ""), manual_order_indicator=v.get("manualOrderIndicator"))


def _global_cancel(r: _Reader) -> ReqGlobalCancel:
    v = r.read(REQ_GLOBAL_CANCEL_REQ)
    return ReqGlobalCancel(ext_operator=v.get("extOperator", ""),
                           manual_order_indicator=v.get("manualOrderIndicator"))


def _auto_open_orders(r: _Reader) -> ReqAutoOpenOrders:
    return ReqAutoOpenOrders(auto_bind=r.read(REQ_AUTO_OPEN_ORDERS_REQ)["autoBind"])


def _completed_orders(r: _Reader) -> ReqCompletedOrders:
    return ReqCompletedOrders(api_only=r.read(REQ_COMPLETED_ORDERS_REQ)["apiOnly"])


def _market_data_type(r: _Reader) -> ReqMarketDataType:
    return ReqMarketDataType(market_data_type=r.read(REQ_MARKET_DATA_TYPE_REQ)["marketDataType"])


def _account_summary(r: _Reader) -> ReqAccountSummary:
    v = r.read(REQ_ACCOUNT_SUMMARY_REQ)
    return ReqAccountSummary(req_id=v["reqId"], group=v["group"], tags=split_tags(v["tags"]))


def split_tags(tags: str) -> tuple[str, ...]:
    """Return the comma-separated account summary tags, trimmed, empties dropped."""
    return tuple(tag.strip() for tag in tags.split(",") if tag.strip())


def _executions(r: _Reader) -> ReqExecutions:
    v = r.read(REQ_EXECUTIONS_REQ)
    dates: tuple[int, ...] = ()
    if r.server_version >= MIN_SERVER_VER_PARAMETRIZED_DAYS_OF_EXECUTIONS:
        dates = tuple(r.integer() for _ in range(r.count()))
    return ReqExecutions(req_id=v["reqId"], filter=ExecutionFilter(
        client_id=v["filter.clientId"], account=v["filter.acctCode"], time=v["filter.time"],
        symbol=v["filter.symbol"], sec_type=v["filter.secType"], exchange=v["filter.exchange"],
        side=v["filter.side"], last_n_days=v.get("filter.lastNDays"), specific_dates=dates))


def _contract_details(r: _Reader) -> ReqContractDetails:
    v = r.read(REQ_CONTRACT_DATA_REQ)
    return ReqContractDetails(req_id=v["reqId"], contract=_contract(v))


def _historical_data(r: _Reader) -> ReqHistoricalData:
    v = r.read(REQ_HISTORICAL_DATA_HEAD)
    legs = _legs(r, SHORT_LEG) if v["contract.secType"] == "BAG" else ()
    v |= r.read(REQ_HISTORICAL_DATA_TAIL)
    return ReqHistoricalData(req_id=v["reqId"], contract=_contract(v, legs), end_date_time=v["endDateTime"],
                             duration=v["durationStr"], bar_size=v["barSizeSetting"], what_to_show=v["whatToShow"],
                             use_rth=v["useRTH"], format_date=v["formatDate"],
                             keep_up_to_date=v.get("keepUpToDate", False))


def _real_time_bars(r: _Reader) -> ReqRealTimeBars:
    v = r.read(REQ_REAL_TIME_BARS_REQ)
    return ReqRealTimeBars(req_id=v["reqId"], contract=_contract(v), bar_size=v["barSize"],
                           what_to_show=v["whatToShow"], use_rth=v["useRTH"])


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


def decode_text_request(msg_id: int, body: bytes, server_version: int) -> Request:
    """Decode the NUL-separated body of request `msg_id` as sent at `server_version`; unknown ids become Unknown."""
    decoder = _DECODERS.get(msg_id)
    if decoder is None:
        return Unknown(msg_id=msg_id, protobuf=False)
    reader = _Reader(body, msg_id, server_version)
    request = decoder(reader)
    reader.done()
    return request


# ---------------------------------------------------------------------------------------------
# Server → client: what ibapi's Decoder reads at each server version 100..226, as named field
# layouts. Encoders fill a {name: text} mapping; unnamed positions go out empty, which the decoder
# reads as 0, "" or UNSET. A name that is not in the layout is a bug and raises at once.

TICK_PRICE: Final = Layout("version", "reqId", "tickType", "price", "size", "attrMask")
TICK_SIZE: Final = Layout("version", "reqId", "tickType", "size")
TICK_STRING: Final = Layout("version", "reqId", "tickType", "value")
TICK_GENERIC: Final = Layout("version", "reqId", "tickType", "value")
MARKET_DATA_TYPE: Final = Layout("version", "reqId", "marketDataType")
ORDER_STATUS: Final = Layout(
    *until(MIN_SERVER_VER_MARKET_CAP_PRICE, "version"), "orderId", "status", "filled", "remaining",
    "avgFillPrice", "permId", "parentId", "lastFillPrice", "clientId", "whyHeld",
    *since(MIN_SERVER_VER_MARKET_CAP_PRICE, "mktCapPrice"),
)
ERR_MSG: Final = Layout(
    *until(MIN_SERVER_VER_ERROR_TIME, "version"), "reqId", "errorCode", "errorMsg",
    *since(MIN_SERVER_VER_ADVANCED_ORDER_REJECT, "advancedOrderRejectJson"),
    *since(MIN_SERVER_VER_ERROR_TIME, "errorTime"),
)
NEXT_VALID_ID: Final = Layout("version", "orderId")
MANAGED_ACCTS: Final = Layout("version", "accountsList")
CURRENT_TIME: Final = Layout("version", "time")
OPEN_ORDER_END: Final = Layout("version")
EXECUTION_DATA_END: Final = Layout("version", "reqId")
POSITION_END: Final = Layout("version")
ACCOUNT_SUMMARY: Final = Layout("version", "reqId", "account", "tag", "value", "currency")
ACCOUNT_SUMMARY_END: Final = Layout("version", "reqId")
CONTRACT_DATA_END: Final = Layout("version", "reqId")
COMPLETED_ORDERS_END: Final = Layout()
COMMISSION_REPORT: Final = Layout("version", "execId", "commissionAndFees", "currency", "realizedPNL", "yield",
                                  "yieldRedemptionDate")
REAL_TIME_BARS: Final = Layout("version", "reqId", "time", "open", "high", "low", "close", "volume", "wap", "count")
HISTORICAL_DATA_END: Final = Layout("reqId", "startDateStr", "endDateStr")   # a message of its own from sv 196
HISTORICAL_DATA_HEAD: Final = Layout(
    *until(MIN_SERVER_VER_SYNT_REALTIME_BARS, "version"), "reqId",
    *until(MIN_SERVER_VER_HISTORICAL_DATA_END, "startDateStr", "endDateStr"),   # the end marker, before 196
    "itemCount",
)
HISTORICAL_BAR: Final = Layout("date", "open", "high", "low", "close", "volume", "wap",
                               *until(MIN_SERVER_VER_SYNT_REALTIME_BARS, "hasGaps"), "barCount")

_CONTRACT_SHORT: Final = ("contract.conId", "contract.symbol", "contract.secType",
                          "contract.lastTradeDateOrContractMonth", "contract.strike", "contract.right",
                          "contract.multiplier", "contract.exchange", "contract.currency",
                          "contract.localSymbol", "contract.tradingClass")
POSITION_DATA: Final = Layout("version", "account", *_CONTRACT_SHORT, "position", "avgCost")
EXECUTION_DATA: Final = Layout(
    *until(MIN_SERVER_VER_LAST_LIQUIDITY, "version"), "reqId", "order.orderId", *_CONTRACT_SHORT,
    "execId", "time", "acctNumber", "exchange", "side", "shares", "price", "permId", "clientId",
    "liquidation", "cumQty", "avgPrice", "orderRef", "evRule", "evMultiplier",
    *since(MIN_SERVER_VER_MODELS_SUPPORT, "modelCode"),
    *since(MIN_SERVER_VER_LAST_LIQUIDITY, "lastLiquidity"),
    *since(MIN_SERVER_VER_PENDING_PRICE_REVISION, "pendingPriceRevision"),
    *since(MIN_SERVER_VER_SUBMITTER, "submitter"),
)
# OrderDecoder.decodeWhatIfInfoAndCommissionAndFees after whatIf: the order state of OPEN_ORDER.
_ORDER_STATE: Final = (
    "state.status",
    *since(MIN_SERVER_VER_WHAT_IF_EXT_FIELDS, "state.initMarginBefore", "state.maintMarginBefore",
           "state.equityWithLoanBefore", "state.initMarginChange", "state.maintMarginChange",
           "state.equityWithLoanChange"),
    "state.initMarginAfter", "state.maintMarginAfter", "state.equityWithLoanAfter",
    "state.commissionAndFees", "state.minCommissionAndFees", "state.maxCommissionAndFees",
    "state.commissionAndFeesCurrency",
    *since(MIN_SERVER_VER_FULL_ORDER_PREVIEW_FIELDS, "state.marginCurrency",
           "state.initMarginBeforeOutsideRTH", "state.maintMarginBeforeOutsideRTH",
           "state.equityWithLoanBeforeOutsideRTH", "state.initMarginChangeOutsideRTH",
           "state.maintMarginChangeOutsideRTH", "state.equityWithLoanChangeOutsideRTH",
           "state.initMarginAfterOutsideRTH", "state.maintMarginAfterOutsideRTH",
           "state.equityWithLoanAfterOutsideRTH", "state.suggestedSize", "state.rejectReason",
           "state.accountsCount"),
    "state.warningText",
)
# Inserted after "order.randomizePrice" when the order type is PEG BENCH (both layouts below).
PEG_BENCH: Final = ("order.referenceContractId", "order.isPeggedChangeAmountDecrease",
                    "order.peggedChangeAmount", "order.referenceChangeAmount", "order.referenceExchangeId")
_PEG_BEST_MID: Final = since(MIN_SERVER_VER_PEGBEST_PEGMID_OFFSETS, "order.minTradeQty", "order.minCompeteSize",
                             "order.competeAgainstBestOffset", "order.midOffsetAtWhole", "order.midOffsetAtHalf")
# OPEN_ORDER (5) without value-dependent sections: processOpenOrder + OrderDecoder. Below
# ORDER_CONTAINER it opens with a message version, which gates the rest: sending 34, the
# highest, keeps every version-gated field, so only server-version gates remain. The minimal
# form has 119 fields at sv 157, 127 at 176, 129 at 187 and 147 from 200 (reference Appendix A).
OPEN_ORDER_VERSION: Final = "34"
OPEN_ORDER: Final = Layout(
    *until(MIN_SERVER_VER_ORDER_CONTAINER, "version"), "order.orderId", *_CONTRACT_SHORT,
    "order.action", "order.totalQuantity", "order.orderType", "order.lmtPrice", "order.auxPrice",
    "order.tif", "order.ocaGroup", "order.account", "order.openClose", "order.origin", "order.orderRef",
    "order.clientId", "order.permId", "order.outsideRth", "order.hidden", "order.discretionaryAmt",
    "order.goodAfterTime", "deprecated.sharesAllocation", "order.faGroup", "order.faMethod",
    "order.faPercentage", *until(MIN_SERVER_VER_FA_PROFILE_DESUPPORT, "deprecated.faProfile"),
    *since(MIN_SERVER_VER_MODELS_SUPPORT, "order.modelCode"), "order.goodTillDate", "order.rule80A",
    "order.percentOffset", "order.settlingFirm", "order.shortSaleSlot", "order.designatedLocation",
    "order.exemptCode", "order.auctionStrategy", "order.startingPrice", "order.stockRefPrice", "order.delta",
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
    "order.solicited", "order.whatIf", *_ORDER_STATE, "order.randomizeSize", "order.randomizePrice",
    *since(MIN_SERVER_VER_PEGGED_TO_BENCHMARK, "order.conditionsCount", "order.adjustedOrderType",
           "order.triggerPrice", "order.trailStopPrice#adjusted", "order.lmtPriceOffset",
           "order.adjustedStopPrice", "order.adjustedStopLimitPrice", "order.adjustedTrailingAmount",
           "order.adjustableTrailingUnit"),
    *since(MIN_SERVER_VER_SOFT_DOLLAR_TIER, "order.softDollarTier.name", "order.softDollarTier.value",
           "order.softDollarTier.displayName"),
    *since(MIN_SERVER_VER_CASH_QTY, "order.cashQty"),
    *since(MIN_SERVER_VER_AUTO_PRICE_FOR_HEDGE, "order.dontUseAutoPriceForHedge"),
    *since(MIN_SERVER_VER_ORDER_CONTAINER, "order.isOmsContainer"),
    *since(MIN_SERVER_VER_D_PEG_ORDERS, "order.discretionaryUpToLimitPrice"),
    *since(MIN_SERVER_VER_PRICE_MGMT_ALGO, "order.usePriceMgmtAlgo"),
    *since(MIN_SERVER_VER_DURATION, "order.duration"),
    *since(MIN_SERVER_VER_POST_TO_ATS, "order.postToAts"),
    *since(MIN_SERVER_VER_AUTO_CANCEL_PARENT, "order.autoCancelParent"),
    *_PEG_BEST_MID,
    *since(MIN_SERVER_VER_CUSTOMER_ACCOUNT, "order.customerAccount"),
    *since(MIN_SERVER_VER_PROFESSIONAL_CUSTOMER, "order.professionalCustomer"),
    *since(MIN_SERVER_VER_BOND_ACCRUED_INTEREST, "order.bondAccruedInterest"),
    *since(MIN_SERVER_VER_INCLUDE_OVERNIGHT, "order.includeOvernight"),
    *since(MIN_SERVER_VER_CME_TAGGING_FIELDS_IN_OPEN_ORDER, "order.extOperator", "order.manualOrderIndicator"),
    *since(MIN_SERVER_VER_SUBMITTER, "order.submitter"),
    *since(MIN_SERVER_VER_IMBALANCE_ONLY, "order.imbalanceOnly"),
)
# COMPLETED_ORDER (101) without value-dependent sections. ibapi decodes it with version =
# UNSET_INTEGER, so only server-version gates apply; autoCancelParent and imbalanceOnly are
# read at every version here (ib_async 2.1 reads them too).
COMPLETED_ORDER: Final = Layout(
    *_CONTRACT_SHORT,
    "order.action", "order.totalQuantity", "order.orderType", "order.lmtPrice", "order.auxPrice",
    "order.tif", "order.ocaGroup", "order.account", "order.openClose", "order.origin", "order.orderRef",
    "order.permId", "order.outsideRth", "order.hidden", "order.discretionaryAmt", "order.goodAfterTime",
    "order.faGroup", "order.faMethod", "order.faPercentage",
    *until(MIN_SERVER_VER_FA_PROFILE_DESUPPORT, "deprecated.faProfile"),
    *since(MIN_SERVER_VER_MODELS_SUPPORT, "order.modelCode"), "order.goodTillDate",
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
    "order.randomizeSize", "order.randomizePrice",
    *since(MIN_SERVER_VER_PEGGED_TO_BENCHMARK, "order.conditionsCount"),
    "order.trailStopPrice#adjusted", "order.lmtPriceOffset",
    *since(MIN_SERVER_VER_CASH_QTY, "order.cashQty"),
    *since(MIN_SERVER_VER_AUTO_PRICE_FOR_HEDGE, "order.dontUseAutoPriceForHedge"),
    *since(MIN_SERVER_VER_ORDER_CONTAINER, "order.isOmsContainer"),
    "order.autoCancelDate", "order.filledQuantity", "order.refFuturesConId", "order.autoCancelParent",
    "order.shareholder", "order.imbalanceOnly", "order.routeMarketableToBbo", "order.parentPermId",
    "state.completedTime", "state.completedStatus",
    *_PEG_BEST_MID,
    *since(MIN_SERVER_VER_CUSTOMER_ACCOUNT, "order.customerAccount"),
    *since(MIN_SERVER_VER_PROFESSIONAL_CUSTOMER, "order.professionalCustomer"),
    *since(MIN_SERVER_VER_SUBMITTER, "order.submitter"),
)
# CONTRACT_DATA (10); below SIZE_RULES it opens with a message version (8 keeps every field).
CONTRACT_DATA_VERSION: Final = "8"
CONTRACT_DATA: Final = Layout(
    *until(MIN_SERVER_VER_SIZE_RULES, "version"), "reqId", "contract.symbol", "contract.secType",
    "contract.lastTradeDateOrContractMonth", *since(MIN_SERVER_VER_LAST_TRADE_DATE, "contract.lastTradeDate"),
    "contract.strike", "contract.right", "contract.exchange", "contract.currency", "contract.localSymbol",
    "marketName", "contract.tradingClass", "contract.conId", "minTick",
    *between(MIN_SERVER_VER_MD_SIZE_MULTIPLIER, MIN_SERVER_VER_SIZE_RULES, "deprecated.mdSizeMultiplier"),
    "contract.multiplier", "orderTypes", "validExchanges", "priceMagnifier", "underConId", "longName",
    "contract.primaryExchange", "contractMonth", "industry", "category", "subcategory", "timeZoneId",
    "tradingHours", "liquidHours", "evRule", "evMultiplier", "secIdListCount",
    *since(MIN_SERVER_VER_AGG_GROUP, "aggGroup"),
    *since(MIN_SERVER_VER_UNDERLYING_INFO, "underSymbol", "underSecType"),
    *since(MIN_SERVER_VER_MARKET_RULES, "marketRuleIds"),
    *since(MIN_SERVER_VER_REAL_EXPIRATION_DATE, "realExpirationDate"),
    *since(MIN_SERVER_VER_STOCK_TYPE, "stockType"),
    *between(MIN_SERVER_VER_FRACTIONAL_SIZE_SUPPORT, MIN_SERVER_VER_SIZE_RULES, "deprecated.sizeMinTick"),
    *since(MIN_SERVER_VER_SIZE_RULES, "minSize", "sizeIncrement", "suggestedSizeIncrement"),
    *since(MIN_SERVER_VER_INELIGIBILITY_REASONS, "ineligibilityReasonCount"),
)
# Inserted after "suggestedSizeIncrement" when secType is FUND (from FUND_DATA_FIELDS).
FUND_FIELDS: Final = (
    "fundName", "fundFamily", "fundType", "fundFrontLoad", "fundBackLoad", "fundBackLoadTimeInterval",
    "fundManagementFee", "fundClosed", "fundClosedForNewInvestors", "fundClosedForNewMoney",
    "fundNotifyAmount", "fundMinimumInitialPurchase", "fundSubsequentMinimumPurchase", "fundBlueSkyStates",
    "fundBlueSkyTerritories", "fundDistributionPolicyIndicator", "fundAssetType",
)
# The message versions sent where a layout still carries one below the version that dropped it.
ORDER_STATUS_VERSION: Final = "6"
ERR_MSG_VERSION: Final = "2"
EXECUTION_DATA_VERSION: Final = "10"
HISTORICAL_DATA_VERSION: Final = "3"


def insert_after(names: tuple[str, ...], anchor: str, extra: tuple[str, ...]) -> tuple[str, ...]:
    """Return `names` with `extra` inserted right after `anchor`."""
    at = names.index(anchor) + 1
    return names[:at] + extra + names[at:]


def pick(names: tuple[str, ...], values: Mapping[str, str]) -> list[str]:
    """Return the field texts of `names` in order, "" where `values` has no entry (values may hold more)."""
    return [values.get(name, "") for name in names]


def text(value: str) -> str:
    """Return a string field as is; a NUL would split the frame, so it is refused."""
    if "\0" in value:
        raise ValueError(f"NUL inside a text field: {value!r}")
    return value


def escaped(value: str) -> str:
    """Return a string field the client decodes with unicode-escape (sv >= 153): ASCII with escapes."""
    return value.encode("unicode_escape").decode("ascii")


def api_text(value: str, server_version: int) -> str:
    """Return a field ibapi decodes with unicode-escape from ENCODE_MSG_ASCII7 (153) and as UTF-8 before."""
    return escaped(value) if server_version >= MIN_SERVER_VER_ENCODE_MSG_ASCII7 else text(value)


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


def tick_attr_mask(attr_mask: int, server_version: int) -> int:
    """Return the attrMask to send: before PAST_LIMIT (109) the field is only canAutoExecute as 0/1."""
    if server_version < MIN_SERVER_VER_PAST_LIMIT:
        return attr_mask & 1
    return attr_mask


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


def _with_peg_bench(names: tuple[str, ...], order: OrderParams, server_version: int) -> tuple[str, ...]:
    if order.order_type in PEG_BENCH_TYPES and server_version >= MIN_SERVER_VER_PEGGED_TO_BENCHMARK:
        return insert_after(names, "order.randomizePrice", PEG_BENCH)
    return names


def open_order_fields(*, server_version: int, order_id: int, contract: Contract, order: OrderParams, status: str,
                      commission: Decimal | None, commission_currency: str, warning_text: str) -> list[str]:
    """Return the OPEN_ORDER field texts for a plain order at `server_version`."""
    values = {
        "version": OPEN_ORDER_VERSION, "order.orderId": num(order_id), **contract_values(contract),
        **_order_values(order), "order.clientId": num(order.client_id), "order.parentId": num(order.parent_id),
        "order.whatIf": flag(order.what_if), "state.status": text(status),
        "state.commissionAndFees": num(commission), "state.commissionAndFeesCurrency": text(commission_currency),
        "state.accountsCount": "0", "state.warningText": text(warning_text),
    }
    OPEN_ORDER.render(server_version, values)        # validates the names
    return pick(_with_peg_bench(OPEN_ORDER.at(server_version), order, server_version), values)


def completed_order_fields(*, server_version: int, contract: Contract, order: OrderParams, status: str,
                           filled: Decimal | None, completed_time: str, completed_status: str) -> list[str]:
    """Return the COMPLETED_ORDER field texts for a plain order at `server_version`."""
    values = {
        **contract_values(contract), **_order_values(order), "state.status": text(status),
        "order.filledQuantity": num(filled), "state.completedTime": text(completed_time),
        "state.completedStatus": text(completed_status),
    }
    COMPLETED_ORDER.render(server_version, values)
    return pick(_with_peg_bench(COMPLETED_ORDER.at(server_version), order, server_version), values)


def execution_fields(*, server_version: int, req_id: int, contract: Contract,
                     execution: ExecutionReport) -> list[str]:
    """Return the EXECUTION_DATA field texts at `server_version`."""
    e = execution
    return EXECUTION_DATA.render(server_version, {
        "version": EXECUTION_DATA_VERSION, "reqId": num(req_id), "order.orderId": num(e.order_id),
        **contract_values(contract), "execId": text(e.exec_id), "time": text(e.time),
        "acctNumber": text(e.account), "exchange": text(e.exchange), "side": text(e.side), "shares": num(e.shares),
        "price": num(e.price), "permId": num(e.perm_id), "clientId": num(e.client_id),
        "liquidation": num(e.liquidation), "cumQty": num(e.cum_qty), "avgPrice": num(e.avg_price),
        "orderRef": text(e.order_ref), "evRule": text(e.ev_rule), "evMultiplier": num(e.ev_multiplier),
        "modelCode": text(e.model_code), "lastLiquidity": num(e.last_liquidity),
        "pendingPriceRevision": flag(e.pending_price_revision), "submitter": text(e.submitter),
    })


def contract_details_fields(*, server_version: int, req_id: int, details: ContractDetails) -> list[str]:
    """Return the CONTRACT_DATA field texts at `server_version`."""
    d, c = details, details.contract
    values = {
        "version": CONTRACT_DATA_VERSION, "reqId": num(req_id), "contract.symbol": text(c.symbol),
        "contract.secType": text(c.sec_type), "contract.lastTradeDateOrContractMonth": text(c.last_trade_date),
        "contract.strike": num(c.strike), "contract.right": text(c.right), "contract.exchange": text(c.exchange),
        "contract.currency": text(c.currency), "contract.localSymbol": text(c.local_symbol),
        "marketName": text(d.market_name), "contract.tradingClass": text(c.trading_class),
        "contract.conId": num(c.con_id), "minTick": num(d.min_tick), "deprecated.mdSizeMultiplier": "1",
        "contract.multiplier": text(c.multiplier), "orderTypes": text(d.order_types),
        "validExchanges": text(d.valid_exchanges), "priceMagnifier": num(d.price_magnifier),
        "underConId": num(d.under_con_id), "longName": api_text(d.long_name, server_version),
        "contract.primaryExchange": text(c.primary_exchange), "contractMonth": text(d.contract_month),
        "industry": text(d.industry), "category": text(d.category), "subcategory": text(d.subcategory),
        "timeZoneId": text(d.time_zone_id), "tradingHours": text(d.trading_hours),
        "liquidHours": text(d.liquid_hours), "secIdListCount": "0", "aggGroup": num(d.agg_group),
        "underSymbol": text(d.under_symbol), "underSecType": text(d.under_sec_type),
        "marketRuleIds": text(d.market_rule_ids), "realExpirationDate": text(d.real_expiration_date),
        "stockType": text(d.stock_type), "deprecated.sizeMinTick": num(d.size_increment),
        "minSize": num(d.min_size), "sizeIncrement": num(d.size_increment),
        "suggestedSizeIncrement": num(d.suggested_size_increment), "ineligibilityReasonCount": "0",
    }
    names = CONTRACT_DATA.at(server_version)
    CONTRACT_DATA.render(server_version, values)
    if c.sec_type == "FUND" and server_version >= MIN_SERVER_VER_FUND_DATA_FIELDS:
        names = insert_after(names, "suggestedSizeIncrement", FUND_FIELDS)
    return pick(names, values)
