"""Shared base of the wire layer: protocol constants, error types, request/response values, frame building."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from decimal import Decimal
from typing import Final, Mapping, TypeAlias

from ibapi.const import MAX_MSG_LEN, UNSET_DOUBLE, UNSET_INTEGER
from ibapi.server_versions import MAX_CLIENT_VER, MIN_CLIENT_VER, MIN_SERVER_VER_PROTOBUF

MAX_FRAME_LEN: Final = MAX_MSG_LEN              # 0xFFFFFF, ibapi's own limit for one message
MIN_SERVER_VERSION: Final = MIN_CLIENT_VER      # 100: every text layout is gated down to ibapi's floor
TEXT_MAX_SERVER_VERSION: Final = 200            # the highest version whose ids are ASCII text
PROTOBUF_MIN_SERVER_VERSION: Final = MIN_SERVER_VER_PROTOBUF   # 201: binary ids, protobuf possible
MAX_SERVER_VERSION: Final = MAX_CLIENT_VER      # 226, what ibapi 10.50 asks for
PROTOBUF_ID_OFFSET: Final = 200                 # a protobuf message travels as id + 200
UNSET_INT: Final = UNSET_INTEGER
UNSET_FLOAT: Final = UNSET_DOUBLE
ZERO: Final = Decimal(0)

_LEN = struct.Struct(">I")


class ProtocolError(Exception):
    """Base of every error the wire layer raises on bad input from a client."""


class FrameError(ProtocolError):
    """The byte stream cannot be framed (e.g. a length prefix above the maximum): drop the client."""


class HandshakeError(ProtocolError):
    """The connect handshake is malformed or asks for versions the simulator cannot serve."""


class WireError(ProtocolError):
    """One framed message could not be decoded; the stream itself is still aligned."""

    def __init__(self, message: str, *, msg_id: int | None = None, request_id: int | None = None) -> None:
        super().__init__(message if msg_id is None else f"msg {msg_id}: {message}")
        self.msg_id = msg_id
        self.request_id = request_id


class UnsupportedRequest(WireError):
    """A well-formed request uses a feature the simulator does not implement (e.g. order conditions)."""


def frame(payload: bytes) -> bytes:
    """Return `payload` behind its 4-byte big-endian length prefix."""
    if len(payload) > MAX_FRAME_LEN:
        raise ValueError(f"payload of {len(payload)} bytes exceeds the {MAX_FRAME_LEN}-byte frame limit")
    return _LEN.pack(len(payload)) + payload


def encode_msg_id(msg_id: int, server_version: int) -> bytes:
    """Return the wire form of a message id: ASCII + NUL up to sv 200, 4-byte big-endian from 201."""
    if server_version >= PROTOBUF_MIN_SERVER_VERSION:
        return msg_id.to_bytes(4, "big")
    return b"%d\0" % msg_id


# ---------------------------------------------------------------------------------------------
# Text layouts: named fields, each present for a range of server versions.

_NEVER: Final = 1 << 30


@dataclass(frozen=True, slots=True)
class Gated:
    """A field that travels only for server versions in [since, until)."""

    name: str
    since: int = 0
    until: int = _NEVER


def since(version: int, *names: str) -> tuple[Gated, ...]:
    """Return `names` as fields that exist from server version `version` on."""
    return tuple(Gated(name, since=version) for name in names)


def until(version: int, *names: str) -> tuple[Gated, ...]:
    """Return `names` as fields that server version `version` dropped."""
    return tuple(Gated(name, until=version) for name in names)


def between(first: int, dropped: int, *names: str) -> tuple[Gated, ...]:
    """Return `names` as fields of server versions first..dropped-1 only."""
    return tuple(Gated(name, since=first, until=dropped) for name in names)


class Layout:
    """An ordered list of named text fields, some gated by server version; `at(sv)` gives the names sent."""

    __slots__ = ("entries", "names", "_at")

    def __init__(self, *entries: str | Gated) -> None:
        gated = tuple(e if isinstance(e, Gated) else Gated(e) for e in entries)
        names = [g.name for g in gated]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate field names in layout: {sorted(n for n in names if names.count(n) > 1)}")
        self.entries = gated
        self.names = frozenset(names)
        self._at: dict[int, tuple[str, ...]] = {}

    def at(self, server_version: int) -> tuple[str, ...]:
        """Return the field names that travel at `server_version`, in wire order."""
        found = self._at.get(server_version)
        if found is None:
            found = self._at[server_version] = tuple(
                g.name for g in self.entries if g.since <= server_version < g.until)
        return found

    def render(self, server_version: int, values: Mapping[str, str]) -> list[str]:
        """Return the field texts sent at `server_version`, "" where `values` has no entry.

        A name unknown to the layout is a bug and raises; a known name whose field does not
        travel at this version is dropped (so one mapping serves every version).
        """
        unknown = values.keys() - self.names
        if unknown:
            raise ValueError(f"fields not in the layout: {sorted(unknown)}")
        return [values.get(name, "") for name in self.at(server_version)]


# ---------------------------------------------------------------------------------------------
# Values shared by requests (client → server) and encoder inputs (server → client).
# Prices and quantities are Decimal; None means IB's "unset" sentinel.


@dataclass(frozen=True, slots=True, kw_only=True)
class ComboLeg:
    """One leg of a BAG contract as a request carried it."""

    con_id: int = 0
    ratio: int = 0
    action: str = ""
    exchange: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Contract:
    """The contract fields the simulator reads or echoes; `last_trade_date` is IB's lastTradeDateOrContractMonth."""

    con_id: int = 0
    symbol: str = ""
    sec_type: str = ""
    last_trade_date: str = ""
    strike: Decimal | None = None
    right: str = ""
    multiplier: str = ""
    exchange: str = ""
    primary_exchange: str = ""
    currency: str = ""
    local_symbol: str = ""
    trading_class: str = ""
    sec_id_type: str = ""
    sec_id: str = ""
    include_expired: bool = False
    combo_legs: tuple[ComboLeg, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderParams:
    """The order attributes of PLACE_ORDER the simulator honours; also what openOrder/completedOrder echo."""

    action: str = ""
    total_quantity: Decimal | None = None
    order_type: str = ""
    lmt_price: Decimal | None = None
    aux_price: Decimal | None = None
    trailing_percent: Decimal | None = None
    trail_stop_price: Decimal | None = None
    tif: str = ""
    parent_id: int = 0
    transmit: bool = True
    oca_group: str = ""
    oca_type: int = 0
    order_ref: str = ""
    account: str = ""
    outside_rth: bool = False
    hidden: bool = False
    good_after_time: str = ""
    good_till_date: str = ""
    what_if: bool = False
    algo_strategy: str = ""
    client_id: int = 0
    perm_id: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class AttachedOrders:
    """Protobuf-only (sv >= 218) stop-loss / take-profit ids attached to one PLACE_ORDER."""

    sl_order_id: int | None = None
    sl_order_type: str = ""
    pt_order_id: int | None = None
    pt_order_type: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class ExecutionFilter:
    """reqExecutions' filter; `last_n_days` None means unset."""

    client_id: int = 0
    account: str = ""
    time: str = ""
    symbol: str = ""
    sec_type: str = ""
    exchange: str = ""
    side: str = ""
    last_n_days: int | None = None
    specific_dates: tuple[int, ...] = ()


# ---------------------------------------------------------------------------------------------
# Requests: one frozen value per client → server message the simulator understands.


@dataclass(frozen=True, slots=True, kw_only=True)
class StartApi:
    client_id: int
    optional_capabilities: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class ReqIds:
    num_ids: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ReqCurrentTime:
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class ReqMarketDataType:
    market_data_type: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ReqMktData:
    req_id: int
    contract: Contract
    generic_ticks: str = ""
    snapshot: bool = False
    regulatory_snapshot: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class CancelMktData:
    req_id: int


@dataclass(frozen=True, slots=True, kw_only=True)
class PlaceOrder:
    order_id: int
    contract: Contract
    order: OrderParams
    attached: AttachedOrders | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class CancelOrder:
    order_id: int
    manual_order_cancel_time: str = ""
    ext_operator: str = ""
    manual_order_indicator: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ReqGlobalCancel:
    ext_operator: str = ""
    manual_order_indicator: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ReqOpenOrders:
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class ReqAllOpenOrders:
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class ReqAutoOpenOrders:
    auto_bind: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class ReqCompletedOrders:
    api_only: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class ReqPositions:
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class CancelPositions:
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class ReqAccountSummary:
    req_id: int
    group: str
    tags: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class CancelAccountSummary:
    req_id: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ReqExecutions:
    req_id: int
    filter: ExecutionFilter


@dataclass(frozen=True, slots=True, kw_only=True)
class ReqContractDetails:
    req_id: int
    contract: Contract


@dataclass(frozen=True, slots=True, kw_only=True)
class ReqHistoricalData:
    req_id: int
    contract: Contract
    end_date_time: str
    duration: str
    bar_size: str
    what_to_show: str
    use_rth: bool
    format_date: int
    keep_up_to_date: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class CancelHistoricalData:
    req_id: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ReqRealTimeBars:
    req_id: int
    contract: Contract
    bar_size: int
    what_to_show: str
    use_rth: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class CancelRealTimeBars:
    req_id: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ReqManagedAccts:
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class Unknown:
    """A message id the simulator does not decode; `msg_id` is the base id (protobuf offset removed)."""

    msg_id: int
    protobuf: bool = False


Request: TypeAlias = (
    StartApi | ReqIds | ReqCurrentTime | ReqMarketDataType | ReqMktData | CancelMktData | PlaceOrder
    | CancelOrder | ReqGlobalCancel | ReqOpenOrders | ReqAllOpenOrders | ReqAutoOpenOrders
    | ReqCompletedOrders | ReqPositions | CancelPositions | ReqAccountSummary | CancelAccountSummary
    | ReqExecutions | ReqContractDetails | ReqHistoricalData | CancelHistoricalData | ReqRealTimeBars
    | CancelRealTimeBars | ReqManagedAccts | Unknown
)


# ---------------------------------------------------------------------------------------------
# Encoder inputs that have no request counterpart.


@dataclass(frozen=True, slots=True, kw_only=True)
class ExecutionReport:
    """One fill as execDetails reports it; `side` is IB's BOT/SLD, `time` e.g. '20250102  10:15:00'."""

    order_id: int
    exec_id: str
    time: str
    account: str
    exchange: str
    side: str
    shares: Decimal
    price: Decimal
    perm_id: int
    client_id: int
    cum_qty: Decimal
    avg_price: Decimal
    order_ref: str = ""
    liquidation: int = 0
    ev_rule: str = ""
    ev_multiplier: Decimal | None = None
    model_code: str = ""
    last_liquidity: int = 0
    pending_price_revision: bool = False
    submitter: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class ContractDetails:
    """What contractDetails reports for one contract (enough for a stock)."""

    contract: Contract
    market_name: str = ""
    min_tick: Decimal = Decimal("0.01")
    order_types: str = ""
    valid_exchanges: str = ""
    price_magnifier: int = 1
    under_con_id: int = 0
    long_name: str = ""
    contract_month: str = ""
    industry: str = ""
    category: str = ""
    subcategory: str = ""
    time_zone_id: str = ""
    trading_hours: str = ""
    liquid_hours: str = ""
    agg_group: int = 0
    under_symbol: str = ""
    under_sec_type: str = ""
    market_rule_ids: str = ""
    real_expiration_date: str = ""
    stock_type: str = ""
    min_size: Decimal = Decimal(1)
    size_increment: Decimal = Decimal(1)
    suggested_size_increment: Decimal = Decimal(1)


@dataclass(frozen=True, slots=True, kw_only=True)
class HistoricalBar:
    """One historicalData bar; `date` is already formatted per the request's formatDate."""

    date: str
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal
    wap: Decimal
    bar_count: int = 0
