"""Server → client encoder: one method per message, each a complete frame for the connection's version and mode."""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Iterable

from ibapi.message import IN
from ibapi.server_versions import MIN_SERVER_VER_HISTORICAL_DATA_END
from ibapi.protobuf.AccountSummary_pb2 import AccountSummary as AccountSummaryProto
from ibapi.protobuf.AccountSummaryEnd_pb2 import AccountSummaryEnd as AccountSummaryEndProto
from ibapi.protobuf.CommissionAndFeesReport_pb2 import CommissionAndFeesReport as CommissionAndFeesReportProto
from ibapi.protobuf.CompletedOrder_pb2 import CompletedOrder as CompletedOrderProto
from ibapi.protobuf.CompletedOrdersEnd_pb2 import CompletedOrdersEnd as CompletedOrdersEndProto
from ibapi.protobuf.ContractData_pb2 import ContractData as ContractDataProto
from ibapi.protobuf.ContractDataEnd_pb2 import ContractDataEnd as ContractDataEndProto
from ibapi.protobuf.ContractDetails_pb2 import ContractDetails as ContractDetailsProto
from ibapi.protobuf.CurrentTime_pb2 import CurrentTime as CurrentTimeProto
from ibapi.protobuf.ErrorMessage_pb2 import ErrorMessage as ErrorMessageProto
from ibapi.protobuf.Execution_pb2 import Execution as ExecutionProto
from ibapi.protobuf.ExecutionDetails_pb2 import ExecutionDetails as ExecutionDetailsProto
from ibapi.protobuf.ExecutionDetailsEnd_pb2 import ExecutionDetailsEnd as ExecutionDetailsEndProto
from ibapi.protobuf.HistoricalData_pb2 import HistoricalData as HistoricalDataProto
from ibapi.protobuf.HistoricalDataBar_pb2 import HistoricalDataBar as HistoricalDataBarProto
from ibapi.protobuf.HistoricalDataEnd_pb2 import HistoricalDataEnd as HistoricalDataEndProto
from ibapi.protobuf.ManagedAccounts_pb2 import ManagedAccounts as ManagedAccountsProto
from ibapi.protobuf.MarketDataType_pb2 import MarketDataType as MarketDataTypeProto
from ibapi.protobuf.NextValidId_pb2 import NextValidId as NextValidIdProto
from ibapi.protobuf.OpenOrder_pb2 import OpenOrder as OpenOrderProto
from ibapi.protobuf.OpenOrdersEnd_pb2 import OpenOrdersEnd as OpenOrdersEndProto
from ibapi.protobuf.OrderState_pb2 import OrderState as OrderStateProto
from ibapi.protobuf.OrderStatus_pb2 import OrderStatus as OrderStatusProto
from ibapi.protobuf.Position_pb2 import Position as PositionProto
from ibapi.protobuf.PositionEnd_pb2 import PositionEnd as PositionEndProto
from ibapi.protobuf.RealTimeBarTick_pb2 import RealTimeBarTick as RealTimeBarTickProto
from ibapi.protobuf.TickGeneric_pb2 import TickGeneric as TickGenericProto
from ibapi.protobuf.TickPrice_pb2 import TickPrice as TickPriceProto
from ibapi.protobuf.TickSize_pb2 import TickSize as TickSizeProto
from ibapi.protobuf.TickString_pb2 import TickString as TickStringProto

from simulator import wire_text as t
from simulator.wire_base import (
    MAX_SERVER_VERSION,
    MIN_SERVER_VERSION,
    PROTOBUF_ID_OFFSET,
    PROTOBUF_MIN_SERVER_VERSION,
    UNSET_FLOAT,
    ZERO,
    Contract,
    ContractDetails,
    ExecutionReport,
    HistoricalBar,
    OrderParams,
    encode_msg_id,
    frame,
)
from simulator.wire_proto import contract_proto, dec_str, order_proto


def _unset_or(value: Decimal | None) -> float:
    return UNSET_FLOAT if value is None else float(value)


class Encoder:
    """Build complete server → client frames for one connection's negotiated version and mode.

    `protobuf=False` writes the text layout of the negotiated version (100..226; the layouts stop
    changing at 200, and from 201 ids are 4-byte binary: the hybrid a real TWS also accepts);
    `protobuf=True` needs sv >= 201 and writes ibapi's protobuf messages. Every method is
    keyword-only and returns bytes ready for the socket.
    """

    __slots__ = ("server_version", "protobuf")

    def __init__(self, server_version: int, protobuf: bool) -> None:
        if not MIN_SERVER_VERSION <= server_version <= MAX_SERVER_VERSION:
            raise ValueError(f"server version {server_version} outside {MIN_SERVER_VERSION}..{MAX_SERVER_VERSION}")
        if protobuf and server_version < PROTOBUF_MIN_SERVER_VERSION:
            raise ValueError(f"protobuf needs server version >= {PROTOBUF_MIN_SERVER_VERSION}")
        self.server_version = server_version
        self.protobuf = protobuf

    def _text(self, msg_id: int, layout: t.Layout | None, values: dict[str, str] | list[str]) -> bytes:
        fields = values if layout is None else layout.render(self.server_version, values)
        body = "".join(f"{field}\0" for field in fields).encode("utf-8")
        return frame(encode_msg_id(msg_id, self.server_version) + body)

    def _api_text(self, value: str) -> str:
        return t.api_text(value, self.server_version)

    def _proto(self, msg_id: int, message: Any) -> bytes:
        return frame((msg_id + PROTOBUF_ID_OFFSET).to_bytes(4, "big") + message.SerializeToString())

    # -- connection ---------------------------------------------------------------------------

    def managed_accounts(self, *, accounts: str) -> bytes:
        """Return MANAGED_ACCTS; `accounts` is IB's comma-separated list, e.g. 'DU123,DU456'."""
        if self.protobuf:
            return self._proto(IN.MANAGED_ACCTS, ManagedAccountsProto(accountsList=accounts))
        return self._text(IN.MANAGED_ACCTS, t.MANAGED_ACCTS, {"version": "1", "accountsList": self._api_text(accounts)})

    def next_valid_id(self, *, order_id: int) -> bytes:
        """Return NEXT_VALID_ID."""
        if self.protobuf:
            return self._proto(IN.NEXT_VALID_ID, NextValidIdProto(orderId=order_id))
        return self._text(IN.NEXT_VALID_ID, t.NEXT_VALID_ID, {"version": "1", "orderId": t.num(order_id)})

    def error(self, *, req_id: int, code: int, message: str, error_time_ms: int,
              advanced_order_reject_json: str = "") -> bytes:
        """Return ERR_MSG; errorTime (epoch ms) travels from sv 194, advancedOrderRejectJson from 166."""
        if self.protobuf:
            return self._proto(IN.ERR_MSG, ErrorMessageProto(
                id=req_id, errorTime=error_time_ms, errorCode=code, errorMsg=message,
                advancedOrderRejectJson=advanced_order_reject_json))
        return self._text(IN.ERR_MSG, t.ERR_MSG, {
            "version": t.ERR_MSG_VERSION, "reqId": t.num(req_id), "errorCode": t.num(code),
            "errorMsg": self._api_text(message),
            "advancedOrderRejectJson": self._api_text(advanced_order_reject_json), "errorTime": t.num(error_time_ms)})

    def current_time(self, *, epoch_seconds: int) -> bytes:
        """Return CURRENT_TIME."""
        if self.protobuf:
            return self._proto(IN.CURRENT_TIME, CurrentTimeProto(currentTime=epoch_seconds))
        return self._text(IN.CURRENT_TIME, t.CURRENT_TIME, {"version": "1", "time": t.num(epoch_seconds)})

    # -- market data --------------------------------------------------------------------------

    def tick_price(self, *, req_id: int, tick_type: int, price: Decimal, size: Decimal | None = None,
                   attr_mask: int = 0) -> bytes:
        """Return TICK_PRICE; for BID/ASK/LAST ibapi also fires tickSize(type 0/3/5) with `size`.

        `attr_mask`: bit 0 canAutoExecute, bit 1 pastLimit (sv >= 109), bit 2 preOpen (sv >= 132).
        """
        if self.protobuf:
            p = TickPriceProto(reqId=req_id, tickType=tick_type, price=float(price), attrMask=attr_mask)
            if size is not None:
                p.size = dec_str(size)
            return self._proto(IN.TICK_PRICE, p)
        return self._text(IN.TICK_PRICE, t.TICK_PRICE, {
            "version": "6", "reqId": t.num(req_id), "tickType": t.num(tick_type), "price": t.num(price),
            "size": t.num(size), "attrMask": t.num(t.tick_attr_mask(attr_mask, self.server_version))})

    def tick_size(self, *, req_id: int, tick_type: int, size: Decimal) -> bytes:
        """Return TICK_SIZE."""
        if self.protobuf:
            return self._proto(IN.TICK_SIZE, TickSizeProto(reqId=req_id, tickType=tick_type, size=dec_str(size)))
        return self._text(IN.TICK_SIZE, t.TICK_SIZE, {
            "version": "6", "reqId": t.num(req_id), "tickType": t.num(tick_type), "size": t.num(size)})

    def tick_string(self, *, req_id: int, tick_type: int, value: str) -> bytes:
        """Return TICK_STRING (e.g. type 45, last timestamp)."""
        if self.protobuf:
            return self._proto(IN.TICK_STRING, TickStringProto(reqId=req_id, tickType=tick_type, value=value))
        return self._text(IN.TICK_STRING, t.TICK_STRING, {
            "version": "6", "reqId": t.num(req_id), "tickType": t.num(tick_type), "value": self._api_text(value)})

    def tick_generic(self, *, req_id: int, tick_type: int, value: Decimal) -> bytes:
        """Return TICK_GENERIC."""
        if self.protobuf:
            return self._proto(IN.TICK_GENERIC, TickGenericProto(reqId=req_id, tickType=tick_type,
                                                                 value=float(value)))
        return self._text(IN.TICK_GENERIC, t.TICK_GENERIC, {
            "version": "6", "reqId": t.num(req_id), "tickType": t.num(tick_type), "value": t.num(value)})

    def market_data_type(self, *, req_id: int, market_data_type: int) -> bytes:
        """Return MARKET_DATA_TYPE (1 live, 2 frozen, 3 delayed, 4 delayed-frozen)."""
        if self.protobuf:
            return self._proto(IN.MARKET_DATA_TYPE, MarketDataTypeProto(reqId=req_id,
                                                                        marketDataType=market_data_type))
        return self._text(IN.MARKET_DATA_TYPE, t.MARKET_DATA_TYPE, {
            "version": "1", "reqId": t.num(req_id), "marketDataType": t.num(market_data_type)})

    # -- orders -------------------------------------------------------------------------------

    def order_status(self, *, order_id: int, status: str, filled: Decimal, remaining: Decimal,
                     avg_fill_price: Decimal, perm_id: int, parent_id: int, last_fill_price: Decimal,
                     client_id: int, why_held: str = "", mkt_cap_price: Decimal = ZERO) -> bytes:
        """Return ORDER_STATUS; `filled`/`remaining` are cumulative for the order."""
        if self.protobuf:
            return self._proto(IN.ORDER_STATUS, OrderStatusProto(
                orderId=order_id, status=status, filled=dec_str(filled), remaining=dec_str(remaining),
                avgFillPrice=float(avg_fill_price), permId=perm_id, parentId=parent_id,
                lastFillPrice=float(last_fill_price), clientId=client_id, whyHeld=why_held,
                mktCapPrice=float(mkt_cap_price)))
        return self._text(IN.ORDER_STATUS, t.ORDER_STATUS, {
            "version": t.ORDER_STATUS_VERSION, "orderId": t.num(order_id), "status": t.text(status),
            "filled": t.num(filled), "remaining": t.num(remaining), "avgFillPrice": t.num(avg_fill_price),
            "permId": t.num(perm_id), "parentId": t.num(parent_id), "lastFillPrice": t.num(last_fill_price),
            "clientId": t.num(client_id), "whyHeld": t.text(why_held), "mktCapPrice": t.num(mkt_cap_price)})

    def open_order(self, *, order_id: int, contract: Contract, order: OrderParams, status: str,
                   commission: Decimal | None = None, commission_currency: str = "",
                   warning_text: str = "") -> bytes:
        """Return OPEN_ORDER echoing `contract` and `order` (set its perm_id/client_id/parent_id first)."""
        if self.protobuf:
            state = OrderStateProto(status=status, commissionAndFeesCurrency=commission_currency,
                                    warningText=warning_text)
            if commission is not None:
                state.commissionAndFees = float(commission)
            return self._proto(IN.OPEN_ORDER, OpenOrderProto(
                orderId=order_id, contract=contract_proto(contract), order=order_proto(order, order_id=order_id),
                orderState=state))
        return self._text(IN.OPEN_ORDER, None, t.open_order_fields(
            server_version=self.server_version, order_id=order_id, contract=contract, order=order, status=status,
            commission=commission, commission_currency=commission_currency, warning_text=warning_text))

    def open_order_end(self) -> bytes:
        """Return OPEN_ORDER_END."""
        if self.protobuf:
            return self._proto(IN.OPEN_ORDER_END, OpenOrdersEndProto())
        return self._text(IN.OPEN_ORDER_END, t.OPEN_ORDER_END, {"version": "1"})

    def completed_order(self, *, contract: Contract, order: OrderParams, status: str,
                        filled: Decimal | None = None, completed_time: str = "",
                        completed_status: str = "") -> bytes:
        """Return COMPLETED_ORDER for a filled or cancelled order."""
        if self.protobuf:
            o = order_proto(order, order_id=None)
            if filled is not None:
                o.filledQuantity = dec_str(filled)
            return self._proto(IN.COMPLETED_ORDER, CompletedOrderProto(
                contract=contract_proto(contract), order=o, orderState=OrderStateProto(
                    status=status, completedTime=completed_time, completedStatus=completed_status)))
        return self._text(IN.COMPLETED_ORDER, None, t.completed_order_fields(
            server_version=self.server_version, contract=contract, order=order, status=status, filled=filled,
            completed_time=completed_time, completed_status=completed_status))

    def completed_orders_end(self) -> bytes:
        """Return COMPLETED_ORDERS_END."""
        if self.protobuf:
            return self._proto(IN.COMPLETED_ORDERS_END, CompletedOrdersEndProto())
        return self._text(IN.COMPLETED_ORDERS_END, t.COMPLETED_ORDERS_END, {})

    # -- executions ---------------------------------------------------------------------------

    def exec_details(self, *, req_id: int, contract: Contract, execution: ExecutionReport) -> bytes:
        """Return EXECUTION_DATA; `req_id` is -1 for a live fill, the request's id for reqExecutions."""
        if self.protobuf:
            e = execution
            p = ExecutionProto(
                orderId=e.order_id, execId=e.exec_id, time=e.time, acctNumber=e.account, exchange=e.exchange,
                side=e.side, shares=dec_str(e.shares), price=float(e.price), permId=e.perm_id,
                clientId=e.client_id, isLiquidation=bool(e.liquidation), cumQty=dec_str(e.cum_qty),
                avgPrice=float(e.avg_price), orderRef=e.order_ref, evRule=e.ev_rule, modelCode=e.model_code,
                lastLiquidity=e.last_liquidity, isPriceRevisionPending=e.pending_price_revision,
                submitter=e.submitter)
            if e.ev_multiplier is not None:
                p.evMultiplier = float(e.ev_multiplier)
            return self._proto(IN.EXECUTION_DATA, ExecutionDetailsProto(
                reqId=req_id, contract=contract_proto(contract), execution=p))
        return self._text(IN.EXECUTION_DATA, None, t.execution_fields(
            server_version=self.server_version, req_id=req_id, contract=contract, execution=execution))

    def exec_details_end(self, *, req_id: int) -> bytes:
        """Return EXECUTION_DATA_END."""
        if self.protobuf:
            return self._proto(IN.EXECUTION_DATA_END, ExecutionDetailsEndProto(reqId=req_id))
        return self._text(IN.EXECUTION_DATA_END, t.EXECUTION_DATA_END, {"version": "1", "reqId": t.num(req_id)})

    def commission_and_fees_report(self, *, exec_id: str, commission: Decimal, currency: str,
                                   realized_pnl: Decimal | None = None, bond_yield: Decimal | None = None,
                                   yield_redemption_date: int = 0) -> bytes:
        """Return COMMISSION_AND_FEES_REPORT for one execId; None sends IB's unset double."""
        if self.protobuf:
            return self._proto(IN.COMMISSION_AND_FEES_REPORT, CommissionAndFeesReportProto(
                execId=exec_id, commissionAndFees=float(commission), currency=currency,
                realizedPNL=_unset_or(realized_pnl), bondYield=_unset_or(bond_yield),
                yieldRedemptionDate=str(yield_redemption_date)))
        return self._text(IN.COMMISSION_AND_FEES_REPORT, t.COMMISSION_REPORT, {
            "version": "1", "execId": t.text(exec_id), "commissionAndFees": t.num(commission),
            "currency": t.text(currency),
            "realizedPNL": t.UNSET_DOUBLE_TEXT if realized_pnl is None else t.num(realized_pnl),
            "yield": t.UNSET_DOUBLE_TEXT if bond_yield is None else t.num(bond_yield),
            "yieldRedemptionDate": t.num(yield_redemption_date)})

    # -- account ------------------------------------------------------------------------------

    def position(self, *, account: str, contract: Contract, position: Decimal, avg_cost: Decimal) -> bytes:
        """Return POSITION_DATA (text version 3: with tradingClass and avgCost)."""
        if self.protobuf:
            return self._proto(IN.POSITION_DATA, PositionProto(
                account=account, contract=contract_proto(contract), position=dec_str(position),
                avgCost=float(avg_cost)))
        return self._text(IN.POSITION_DATA, t.POSITION_DATA, {
            "version": "3", "account": t.text(account), **t.contract_values(contract),
            "position": t.num(position), "avgCost": t.num(avg_cost)})

    def position_end(self) -> bytes:
        """Return POSITION_END."""
        if self.protobuf:
            return self._proto(IN.POSITION_END, PositionEndProto())
        return self._text(IN.POSITION_END, t.POSITION_END, {"version": "1"})

    def account_summary(self, *, req_id: int, account: str, tag: str, value: str, currency: str) -> bytes:
        """Return ACCOUNT_SUMMARY for one tag."""
        if self.protobuf:
            return self._proto(IN.ACCOUNT_SUMMARY, AccountSummaryProto(
                reqId=req_id, account=account, tag=tag, value=value, currency=currency))
        return self._text(IN.ACCOUNT_SUMMARY, t.ACCOUNT_SUMMARY, {
            "version": "1", "reqId": t.num(req_id), "account": self._api_text(account),
            "tag": self._api_text(tag), "value": self._api_text(value), "currency": self._api_text(currency)})

    def account_summary_end(self, *, req_id: int) -> bytes:
        """Return ACCOUNT_SUMMARY_END."""
        if self.protobuf:
            return self._proto(IN.ACCOUNT_SUMMARY_END, AccountSummaryEndProto(reqId=req_id))
        return self._text(IN.ACCOUNT_SUMMARY_END, t.ACCOUNT_SUMMARY_END, {"version": "1", "reqId": t.num(req_id)})

    # -- reference and historical data --------------------------------------------------------

    def contract_details(self, *, req_id: int, details: ContractDetails) -> bytes:
        """Return CONTRACT_DATA."""
        if self.protobuf:
            d = details
            p = ContractDetailsProto(
                marketName=d.market_name, minTick=dec_str(d.min_tick), orderTypes=d.order_types,
                validExchanges=d.valid_exchanges, priceMagnifier=d.price_magnifier, underConId=d.under_con_id,
                longName=d.long_name, contractMonth=d.contract_month, industry=d.industry, category=d.category,
                subcategory=d.subcategory, timeZoneId=d.time_zone_id, tradingHours=d.trading_hours,
                liquidHours=d.liquid_hours, aggGroup=d.agg_group, underSymbol=d.under_symbol,
                underSecType=d.under_sec_type, marketRuleIds=d.market_rule_ids,
                realExpirationDate=d.real_expiration_date, stockType=d.stock_type, minSize=dec_str(d.min_size),
                sizeIncrement=dec_str(d.size_increment), suggestedSizeIncrement=dec_str(d.suggested_size_increment))
            return self._proto(IN.CONTRACT_DATA, ContractDataProto(
                reqId=req_id, contract=contract_proto(d.contract), contractDetails=p))
        return self._text(IN.CONTRACT_DATA, None, t.contract_details_fields(
            server_version=self.server_version, req_id=req_id, details=details))

    def contract_details_end(self, *, req_id: int) -> bytes:
        """Return CONTRACT_DATA_END."""
        if self.protobuf:
            return self._proto(IN.CONTRACT_DATA_END, ContractDataEndProto(reqId=req_id))
        return self._text(IN.CONTRACT_DATA_END, t.CONTRACT_DATA_END, {"version": "1", "reqId": t.num(req_id)})

    def historical_data(self, *, req_id: int, bars: Iterable[HistoricalBar], start: str = "",
                        end: str = "") -> bytes:
        """Return HISTORICAL_DATA with every bar; always follow it with historical_data_end.

        Below sv 196 the end marker travels inside this message (`start`/`end` are the dates
        historicalDataEnd reports) and historical_data_end returns b""; from 196 they are unused here.
        """
        bars = tuple(bars)
        if self.protobuf:
            return self._proto(IN.HISTORICAL_DATA, HistoricalDataProto(reqId=req_id, historicalDataBars=[
                HistoricalDataBarProto(date=b.date, open=float(b.open), high=float(b.high), low=float(b.low),
                                       close=float(b.close), volume=dec_str(b.volume), WAP=dec_str(b.wap),
                                       barCount=b.bar_count) for b in bars]))
        sv = self.server_version
        fields = t.HISTORICAL_DATA_HEAD.render(sv, {
            "version": t.HISTORICAL_DATA_VERSION, "reqId": t.num(req_id), "startDateStr": t.text(start),
            "endDateStr": t.text(end), "itemCount": t.num(len(bars))})
        for b in bars:
            fields += t.HISTORICAL_BAR.render(sv, {
                "date": t.text(b.date), "open": t.num(b.open), "high": t.num(b.high), "low": t.num(b.low),
                "close": t.num(b.close), "volume": t.num(b.volume), "wap": t.num(b.wap), "hasGaps": "false",
                "barCount": t.num(b.bar_count)})
        return self._text(IN.HISTORICAL_DATA, None, fields)

    def historical_data_end(self, *, req_id: int, start: str, end: str) -> bytes:
        """Return HISTORICAL_DATA_END (108), a message of its own since sv 196; b"" before (see historical_data)."""
        if self.server_version < MIN_SERVER_VER_HISTORICAL_DATA_END:
            return b""
        if self.protobuf:
            return self._proto(IN.HISTORICAL_DATA_END, HistoricalDataEndProto(
                reqId=req_id, startDateStr=start, endDateStr=end))
        return self._text(IN.HISTORICAL_DATA_END, t.HISTORICAL_DATA_END, {
            "reqId": t.num(req_id), "startDateStr": t.text(start), "endDateStr": t.text(end)})

    def real_time_bar(self, *, req_id: int, time: int, open: Decimal, high: Decimal, low: Decimal,
                      close: Decimal, volume: Decimal, wap: Decimal, count: int) -> bytes:
        """Return REAL_TIME_BARS for one 5-second bar starting at epoch second `time`."""
        if self.protobuf:
            return self._proto(IN.REAL_TIME_BARS, RealTimeBarTickProto(
                reqId=req_id, time=time, open=float(open), high=float(high), low=float(low), close=float(close),
                volume=dec_str(volume), WAP=dec_str(wap), count=count))
        return self._text(IN.REAL_TIME_BARS, t.REAL_TIME_BARS, {
            "version": "3", "reqId": t.num(req_id), "time": t.num(time), "open": t.num(open),
            "high": t.num(high), "low": t.num(low), "close": t.num(close), "volume": t.num(volume),
            "wap": t.num(wap), "count": t.num(count)})
