"""The broker's matching engine with IB order semantics, shared by the TWS simulator and the backtest broker.

Every public function is pure: it takes a `Book` and returns a new `Book` plus the events the
broker would report, in the order a real TWS reports them. The simulator turns the events into
`openOrder` / `orderStatus` / `execDetails` + `commissionAndFeesReport` / `error` messages.

Conventions (IB's where IB defines them, documented choices where it does not):

* **Liquidity.** Orders take liquidity from the displayed top of book: buys fill at the ask up to
  `ask_size`, sells at the bid up to `bid_size`. The displayed size is the liquidity available
  until the next quote for that symbol, and every fill consumes it: two orders matched on the same
  quote share its size, and an order placed after a quote gets what earlier fills left of it. A
  side with a price but a size of zero has unknown depth (bar-replayed quotes carry none) and is
  treated as unlimited. Our own orders never trade with each other. Working orders are matched in
  time priority (the order in which they became active). The rest of an order keeps working and
  fills on later quotes: partial fills come from limited liquidity.
* **No quote yet.** An order for a symbol without a quote rests as `Submitted` (an IOC is
  cancelled at once) until a quote arrives.
* **Limits** fill when marketable (buy: ask <= limit; sell: bid >= limit) at the touch, which is
  never worse than the limit: price improvement goes to the order.
* **Stops** trigger on whichever of the last trade or the touch reaches the stop first (buy: last
  or ask >= stop; sell: last or bid <= stop), then act as MKT on the same quote; STP LMT becomes
  a LMT at its limit. A stop placed beyond the market triggers on the first quote it sees.
* **Trailing stops** (`TRAIL`, `trail_amount` or `trail_percent`; `stop_price` is the optional
  initial stop, IB's trailStopPrice) track a reference price, the last trade or else the touch
  (sell: bid, buy: ask): sell stop = ref − amount or ref × (1 − pct/100), buy stop = ref + amount
  or ref × (1 + pct/100), rounded away from the market to the book's tick (0.01) so the distance is
  never less than asked. The stop only ratchets in the protective direction, and triggers like a STP.
* **Time in force.** DAY orders are cancelled by `end_of_day`; GTC orders survive it. IOC orders
  are matched once when they become active and the rest is cancelled (an untriggered IOC stop is
  cancelled whole).
* **Transmit and brackets.** An order with `transmit=False` is held silently, as TWS does: no
  event, invisible to `open_orders`, status `PendingSubmit` inside the book. It is activated,
  with every other held order of its family (the orders linked through `parent_id`), when an order
  of that family arrives with `transmit=True`, or when it is re-placed with `transmit=True`. If the
  last order also says `transmit=False`, nothing ever executes (ib_insync #71). A child
  (`parent_id != 0`) is `PreSubmitted` with `why_held="child"` until its parent is **fully** filled
  (IB activates children on the full fill only; their size is not changed by a partial parent
  fill), then `Submitted`. Cancelling an order, for any reason, cancels its unfinished children —
  also after a partial parent fill, which leaves those shares unprotected, as at IB.
* **OCA groups** are keyed by (account, `oca_group`). `oca_type` 0 is treated as 1.
  Type 1 (cancel, with block): when a member is completely filled every other member is cancelled;
  while a member is partially filled the others are blocked from filling (overfill protection).
  Type 2 (reduce, with block): each fill of q shares reduces every other member at once by q scaled
  by the member's size relative to the filled order's size, so no sibling can overfill. Type 3
  (reduce, no block): the same reduction, but only after the whole matching pass, so two members can
  both fill on one quote (the overfill IB warns about). A member reduced to its filled quantity is
  cancelled. Children of one parent that name no OCA group form an implicit type-2 group: a
  take-profit fill cancels (or, partially, reduces) the stop.
* **Modify** = placing a working order's id again from the same client: quantity, order type,
  prices, trailing parameters, tif and order_ref are replaced. Changing symbol, side, account,
  parent or OCA fields gives 105; an invalid new order or a quantity not above the filled quantity
  gives 134 "Modify order failed"; the order is unchanged in both cases. A transmitted order ignores
  `transmit=False` on a modify.
* **Order ids** are unique across clients in this engine (the simulator hands out ids from one
  counter). Error 103 "Duplicate order id" answers an id that is done (Filled, Cancelled,
  Inactive), an id owned by another client, and a new id not above the highest id that client
  already used. A 103 changes nothing; a 201 consumes the id.
* **Rejections** (201, status `Inactive`): invalid quantity, prices, order type, side, tif, OCA
  type, unknown or finished parent, and the fault-injection flag `reject_next`, which is consumed by
  the next new order that passes the id checks.
* **Cancels** answer `Cancelled` + 202 "Order Canceled - reason:" (engine-initiated cancels name
  their reason after the colon); an unknown id gives 10147; an order already done gives 10148 and
  nothing changes (the cancel lost a race with a fill).
* **Commissions** follow IB's fixed pricing per order: total = min(max(minimum, per_share × qty),
  maximum_pct % of trade value). The minimum is charged once per order, not per partial fill: each
  fill pays the increase of that total, so the first fill pays the minimum and later fills pay per
  share until the per-share amount exceeds it.
* **Ids.** Perm ids come from a counter in the book. Exec ids have IB's shape,
  `<prefix>.<permId hex>.<fill number hex>.01`, unique because perm ids are.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_EVEN, Decimal
from typing import Final, Generic, TypeVar

from core.types import ZERO, OrderType, Quote, Side, TimeInForce

K = TypeVar("K")
V = TypeVar("V")

# IB's status strings, exactly as orderStatus carries them.
PENDING_SUBMIT: Final = "PendingSubmit"  # inside the book only: held, not transmitted
PRE_SUBMITTED: Final = "PreSubmitted"
SUBMITTED: Final = "Submitted"
CANCELLED: Final = "Cancelled"
FILLED: Final = "Filled"
INACTIVE: Final = "Inactive"
DONE_STATES: Final = frozenset({FILLED, CANCELLED, INACTIVE})

# IB's error codes the engine emits.
DUPLICATE_ORDER_ID: Final = 103
MODIFY_MISMATCH: Final = 105
MODIFY_FAILED: Final = 134
ORDER_REJECTED: Final = 201
ORDER_CANCELLED: Final = 202
CANCEL_UNKNOWN: Final = 10147
CANNOT_CANCEL: Final = 10148

DEFAULT_TICK: Final = Decimal("0.01")
DEFAULT_EXEC_PREFIX: Final = "0000e0d5"
FIRST_PERM_ID: Final = 1_000_000_001
FAULT_REJECT_REASON: Final = "rejected by fault injection"

_HUNDRED: Final = Decimal(100)
_STOP_TYPES: Final = frozenset({OrderType.STP, OrderType.STP_LMT, OrderType.TRAIL})
_LIMIT_TYPES: Final = frozenset({OrderType.LMT, OrderType.STP_LMT})
_BRACKET_OCA_TYPE: Final = 2


class _Delete:
    __slots__ = ()

    def __repr__(self) -> str:
        return "<delete>"


_DELETE: Final = _Delete()


class FrozenMap(Mapping[K, V], Generic[K, V]):
    """An immutable mapping; `updated` returns a changed copy."""

    __slots__ = ("_d",)

    def __init__(self, items: Mapping[K, V] | Iterable[tuple[K, V]] = ()) -> None:
        self._d: dict[K, V] = dict(items)

    def __getitem__(self, key: K) -> V:
        return self._d[key]

    def get(self, key: K, default: V | None = None) -> V | None:  # type: ignore[override]
        return self._d.get(key, default)

    def __contains__(self, key: object) -> bool:
        return key in self._d

    def __iter__(self) -> Iterator[K]:
        return iter(self._d)

    def __len__(self) -> int:
        return len(self._d)

    def __repr__(self) -> str:
        return f"FrozenMap({self._d!r})"

    def __reduce__(self) -> tuple[type, tuple[dict[K, V]]]:
        return (FrozenMap, (self._d,))

    def updated(self, changes: Mapping[K, object]) -> FrozenMap[K, V]:
        """Return a copy with `changes` applied; a value of `_DELETE` removes the key."""
        if not changes:
            return self
        d = dict(self._d)
        for key, value in changes.items():
            if value is _DELETE:
                d.pop(key, None)
            else:
                d[key] = value  # type: ignore[assignment]
        return FrozenMap(d)


class IdMap(Mapping[int, V], Generic[V]):
    """A persistent map keyed by int: an update copies three dicts of at most 64 entries, never the whole map.

    Iteration is in ascending key order.
    """

    __slots__ = ("_root", "_len")

    def __init__(self, items: Iterable[tuple[int, V]] = ()) -> None:
        self._root: dict[int, dict[int, dict[int, V]]] = {}
        self._len = 0
        pairs = dict(items)
        if pairs:
            built = IdMap().updated(pairs)
            self._root, self._len = built._root, built._len

    def __getitem__(self, key: int) -> V:
        value = self.get(key, _DELETE)
        if value is _DELETE:
            raise KeyError(key)
        return value  # type: ignore[return-value]

    def get(self, key: int, default: V | None = None) -> V | None:  # type: ignore[override]
        mid = self._root.get(key >> 12)
        if mid is None:
            return default
        leaf = mid.get((key >> 6) & 63)
        if leaf is None:
            return default
        return leaf.get(key, default)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, int) and self.get(key, _DELETE) is not _DELETE

    def __iter__(self) -> Iterator[int]:
        for top in sorted(self._root):
            mid = self._root[top]
            for m in sorted(mid):
                yield from sorted(mid[m])

    def __len__(self) -> int:
        return self._len

    def __repr__(self) -> str:
        return f"IdMap({dict(self.items())!r})"

    def __reduce__(self) -> tuple[type, tuple[tuple[tuple[int, V], ...]]]:
        return (IdMap, (tuple(self.items()),))

    def updated(self, changes: Mapping[int, object]) -> IdMap[V]:
        """Return a copy with `changes` applied; a value of `_DELETE` removes the key."""
        if not changes:
            return self
        root = dict(self._root)
        mids: dict[int, dict[int, dict[int, V]]] = {}
        leaves: dict[tuple[int, int], dict[int, V]] = {}
        length = self._len
        for key, value in changes.items():
            top, m = key >> 12, (key >> 6) & 63
            mid = mids.get(top)
            if mid is None:
                mid = mids[top] = root[top] = dict(root.get(top, {}))
            leaf = leaves.get((top, m))
            if leaf is None:
                leaf = leaves[(top, m)] = mid[m] = dict(mid.get(m, {}))
            if value is _DELETE:
                if key in leaf:
                    del leaf[key]
                    length -= 1
            else:
                if key not in leaf:
                    length += 1
                leaf[key] = value  # type: ignore[assignment]
        for (top, m), leaf in leaves.items():
            if not leaf:
                del mids[top][m]
        for top, mid in mids.items():
            if not mid:
                del root[top]
        new: IdMap[V] = IdMap()
        new._root, new._len = root, length
        return new


@dataclass(frozen=True, slots=True, kw_only=True)
class BrokerOrder:
    """An order as the broker holds it (IB semantics); `stop_price` is IB's auxPrice, or a TRAIL's initial stop."""

    order_id: int
    client_id: int = 0
    perm_id: int = 0
    account: str = ""
    symbol: str
    side: Side
    quantity: Decimal
    order_type: OrderType
    limit_price: Decimal | None = None
    stop_price: Decimal | None = None
    trail_amount: Decimal | None = None
    trail_percent: Decimal | None = None
    tif: TimeInForce = TimeInForce.DAY
    parent_id: int = 0
    oca_group: str = ""
    oca_type: int = 0
    transmit: bool = True
    order_ref: str = ""
    # broker-side state
    status: str = PENDING_SUBMIT
    filled: Decimal = ZERO
    avg_fill_price: Decimal = ZERO
    last_fill_price: Decimal = ZERO
    trail_stop: Decimal | None = None
    triggered: bool = False
    why_held: str = ""
    fill_value: Decimal = ZERO   # Σ price × quantity of the fills: avg_fill_price stays exact
    commission: Decimal = ZERO   # charged so far; the per-order minimum is paid once
    fill_count: int = 0          # numbers the exec ids

    @property
    def remaining(self) -> Decimal:
        return max(ZERO, self.quantity - self.filled)

    @property
    def done(self) -> bool:
        return self.status in DONE_STATES


@dataclass(frozen=True, slots=True, kw_only=True)
class CommissionModel:
    """IB fixed pricing: per share, a minimum per order, capped at a percentage of the trade value (<= 0: no cap)."""

    per_share: Decimal = Decimal("0.005")
    minimum: Decimal = Decimal("1.00")
    maximum_pct: Decimal = Decimal("1.0")


@dataclass(frozen=True, slots=True, kw_only=True)
class Market:
    """The last quote of a symbol and the liquidity fills have left of it; None = unlimited."""

    quote: Quote
    bid_left: Decimal | None
    ask_left: Decimal | None


@dataclass(frozen=True, slots=True, kw_only=True)
class StatusEvent:
    """IB's orderStatus: cumulative filled/remaining/average price."""

    order_id: int
    status: str
    filled: Decimal
    remaining: Decimal
    avg_fill_price: Decimal
    last_fill_price: Decimal
    perm_id: int
    parent_id: int
    client_id: int
    why_held: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class FillEvent:
    """One execution (IB's execDetails with its commission report)."""

    order_id: int
    exec_id: str
    symbol: str
    side: Side
    quantity: Decimal
    price: Decimal
    cum_qty: Decimal
    avg_price: Decimal
    perm_id: int
    client_id: int
    order_ref: str
    commission: Decimal
    ts_ns: int
    account: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class ErrorEvent:
    """IB's error(orderId, code, message) for one order."""

    order_id: int
    code: int
    message: str


@dataclass(frozen=True, slots=True, kw_only=True)
class OpenOrderEvent:
    """The simulator must (re)send openOrder for this order state."""

    order: BrokerOrder


Event = StatusEvent | FillEvent | ErrorEvent | OpenOrderEvent

_OcaKey = tuple[str, str, str]


@dataclass(frozen=True, slots=True, kw_only=True)
class Book:
    """Everything the broker knows: orders, per-symbol markets, links between orders, counters."""

    commission: CommissionModel = CommissionModel()
    orders: IdMap[BrokerOrder] = field(default_factory=IdMap)           # every order ever accepted
    live: IdMap[bool] = field(default_factory=IdMap)                    # ids of orders not done
    working: FrozenMap[str, tuple[int, ...]] = field(default_factory=FrozenMap)  # Submitted, time priority
    children: IdMap[tuple[int, ...]] = field(default_factory=IdMap)     # parent id -> child ids
    held: IdMap[tuple[int, ...]] = field(default_factory=IdMap)         # family root -> untransmitted ids
    oca: FrozenMap[_OcaKey, tuple[int, ...]] = field(default_factory=FrozenMap)  # live groups only
    markets: FrozenMap[str, Market] = field(default_factory=FrozenMap)
    max_order_id: FrozenMap[int, int] = field(default_factory=FrozenMap)  # client id -> highest id used
    next_perm_id: int = FIRST_PERM_ID
    reject_next: str = ""   # fault injection: the reason the next new order is rejected with
    tick: Decimal = DEFAULT_TICK
    exec_prefix: str = DEFAULT_EXEC_PREFIX


def new_book(commission: CommissionModel = CommissionModel(), *, reject_next: bool = False,
             tick: Decimal = DEFAULT_TICK, first_perm_id: int = FIRST_PERM_ID) -> Book:
    """Return an empty book."""
    return Book(commission=commission, reject_next=FAULT_REJECT_REASON if reject_next else "",
                tick=tick, next_perm_id=first_perm_id)


def with_reject_next(book: Book, reason: str = FAULT_REJECT_REASON) -> Book:
    """Return the book with the next new order set to be rejected (201) with `reason`."""
    return replace(book, reject_next=reason or FAULT_REJECT_REASON)


def commission_for(model: CommissionModel, quantity: Decimal, price: Decimal) -> Decimal:
    """Return the commission of one order of `quantity` executed in total at `price`."""
    return _commission_due(model, quantity, quantity * price)


def _commission_due(model: CommissionModel, quantity: Decimal, value: Decimal) -> Decimal:
    if quantity <= 0:
        return ZERO
    fee = max(model.minimum, model.per_share * quantity)
    if model.maximum_pct > 0:
        fee = min(fee, model.maximum_pct / _HUNDRED * abs(value))
    return fee


def get_order(book: Book, order_id: int) -> BrokerOrder | None:
    """Return the order with `order_id`, or None."""
    return book.orders.get(order_id)


def open_orders(book: Book, client_id: int | None = None) -> tuple[BrokerOrder, ...]:
    """Return the orders TWS would report to reqOpenOrders (all clients if None), by id; held orders are invisible."""
    found = []
    for oid in book.live:
        order = book.orders[oid]
        if order.status == PENDING_SUBMIT:
            continue
        if client_id is None or order.client_id == client_id:
            found.append(order)
    return tuple(found)


def place(book: Book, order: BrokerOrder, ts_ns: int) -> tuple[Book, tuple[Event, ...]]:
    """Accept, modify or refuse `order` (IB's placeOrder) and match it against the last quote."""
    existing = book.orders.get(order.order_id)
    if existing is not None and existing.client_id == order.client_id and not existing.done:
        tx = _Tx(book, ts_ns)
        _modify(tx, existing, order)
    elif existing is not None or order.order_id <= (book.max_order_id.get(order.client_id) or 0):
        return book, (ErrorEvent(order_id=order.order_id, code=DUPLICATE_ORDER_ID,
                                 message="Duplicate order id"),)
    else:
        tx = _Tx(book, ts_ns)
        _accept(tx, order)
    _flush(tx)
    return tx.commit()


def cancel(book: Book, order_id: int, ts_ns: int, *,
           client_id: int | None = None) -> tuple[Book, tuple[Event, ...]]:
    """Cancel a working or held order and its children (IB's cancelOrder); `client_id` restricts to that client's orders."""
    order = book.orders.get(order_id)
    if order is None or (client_id is not None and order.client_id != client_id):
        return book, (ErrorEvent(order_id=order_id, code=CANCEL_UNKNOWN,
                                 message=f"OrderId {order_id} that needs to be cancelled is not found."),)
    if order.done:
        return book, (ErrorEvent(order_id=order_id, code=CANNOT_CANCEL,
                                 message=f"OrderId {order_id} that needs to be cancelled cannot be "
                                         f"cancelled, state: {order.status}."),)
    tx = _Tx(book, ts_ns)
    _cancel(tx, order_id, "")
    _flush(tx)
    return tx.commit()


def on_quote(book: Book, quote: Quote, ts_ns: int) -> tuple[Book, tuple[Event, ...]]:
    """Record `quote` as the symbol's market and match that symbol's working orders against it."""
    tx = _Tx(book, ts_ns)
    tx.markets[quote.symbol] = Market(quote=quote, bid_left=_depth(quote.bid, quote.bid_size),
                                      ask_left=_depth(quote.ask, quote.ask_size))
    for oid in book.working.get(quote.symbol, ()):
        _match(tx, oid)
    _flush(tx)
    return tx.commit()


def end_of_day(book: Book, ts_ns: int) -> tuple[Book, tuple[Event, ...]]:
    """Cancel every DAY order that is not done (held ones included); GTC orders survive."""
    tx = _Tx(book, ts_ns)
    for oid in book.live:
        order = tx.order(oid)
        if order is not None and not order.done and order.tif is TimeInForce.DAY:
            _cancel(tx, oid, "DAY order expired")
    _flush(tx)
    return tx.commit()


# ---------------------------------------------------------------- the transaction


class _Tx:
    """The changes one public call makes, applied to a new Book by `commit` (never to the old one)."""

    __slots__ = ("book", "ts_ns", "orders", "live", "working", "left_working", "children", "held",
                 "oca", "touched_oca", "markets", "max_ids", "next_perm_id", "reject_next",
                 "events", "deferred")

    def __init__(self, book: Book, ts_ns: int) -> None:
        self.book = book
        self.ts_ns = ts_ns
        self.orders: dict[int, BrokerOrder] = {}
        self.live: dict[int, object] = {}
        self.working: dict[str, list[int]] = {}
        self.left_working: dict[str, set[int]] = {}  # ids that stopped being Submitted, per symbol
        self.children: dict[int, tuple[int, ...]] = {}
        self.held: dict[int, object] = {}
        self.oca: dict[_OcaKey, tuple[int, ...]] = {}
        self.touched_oca: set[_OcaKey] = set()
        self.markets: dict[str, Market] = {}
        self.max_ids: dict[int, int] = {}
        self.next_perm_id = book.next_perm_id
        self.reject_next = book.reject_next
        self.events: list[Event] = []
        self.deferred: list[tuple[int, Decimal]] = []  # type-3 OCA reductions, applied after the pass

    def order(self, oid: int) -> BrokerOrder | None:
        found = self.orders.get(oid)
        return found if found is not None else self.book.orders.get(oid)

    def put(self, order: BrokerOrder) -> None:
        old = self.order(order.order_id)
        self.orders[order.order_id] = order
        if old is not None and old.status == SUBMITTED and order.status != SUBMITTED:
            self.left_working.setdefault(order.symbol, set()).add(order.order_id)
        if old is None or old.status != order.status:
            key = _oca_key(order)
            if key is not None:
                self.touched_oca.add(key)
        if order.done and (old is None or not old.done):
            self.live[order.order_id] = _DELETE
        elif not order.done and old is None:
            self.live[order.order_id] = True

    def market(self, symbol: str) -> Market | None:
        found = self.markets.get(symbol)
        return found if found is not None else self.book.markets.get(symbol)

    def working_list(self, symbol: str) -> list[int]:
        found = self.working.get(symbol)
        if found is None:
            found = self.working[symbol] = list(self.book.working.get(symbol, ()))
        return found

    def child_ids(self, oid: int) -> tuple[int, ...]:
        found = self.children.get(oid)
        return found if found is not None else (self.book.children.get(oid) or ())

    def held_ids(self, root: int) -> tuple[int, ...]:
        found = self.held.get(root)
        if found is _DELETE:
            return ()
        return found if found is not None else (self.book.held.get(root) or ())  # type: ignore[return-value]

    def oca_members(self, key: _OcaKey) -> tuple[int, ...]:
        found = self.oca.get(key)
        return found if found is not None else (self.book.oca.get(key) or ())

    def emit(self, event: Event) -> None:
        self.events.append(event)

    def commit(self) -> tuple[Book, tuple[Event, ...]]:
        book = self.book
        working: dict[str, object] = {}
        # Submitted is never re-entered, so only the ids that left it need filtering out.
        for symbol in self.working.keys() | self.left_working.keys():
            left = self.left_working.get(symbol)
            ids = self.working_list(symbol)
            kept = tuple(ids) if not left else tuple(oid for oid in ids if oid not in left)
            working[symbol] = kept if kept else _DELETE
        oca: dict[_OcaKey, object] = {}
        for key in self.touched_oca | set(self.oca):
            members = tuple(oid for oid in self.oca_members(key) if not self.order(oid).done)  # type: ignore[union-attr]
            oca[key] = members if members else _DELETE
        new = replace(
            book,
            orders=book.orders.updated(self.orders),
            live=book.live.updated(self.live),
            working=book.working.updated(working),
            children=book.children.updated(self.children),
            held=book.held.updated(self.held),
            oca=book.oca.updated(oca),
            markets=book.markets.updated(self.markets),
            max_order_id=book.max_order_id.updated(self.max_ids),
            next_perm_id=self.next_perm_id,
            reject_next=self.reject_next,
        )
        return new, tuple(self.events)


# ---------------------------------------------------------------- helpers


def _depth(price: Decimal | None, size: Decimal) -> Decimal | None:
    # Zero size with a price: depth unknown (bars carry none), so unlimited.
    return size if price is not None and size > 0 else None


def _valid_price(price: Decimal | None) -> Decimal | None:
    # IB sends -1 for a missing side.
    return price if price is not None and price > 0 else None


def _status_event(order: BrokerOrder) -> StatusEvent:
    return StatusEvent(order_id=order.order_id, status=order.status, filled=order.filled,
                       remaining=order.remaining, avg_fill_price=order.avg_fill_price,
                       last_fill_price=order.last_fill_price, perm_id=order.perm_id,
                       parent_id=order.parent_id, client_id=order.client_id, why_held=order.why_held)


def _oca_key(order: BrokerOrder) -> _OcaKey | None:
    if order.oca_group:
        return ("oca", order.account, order.oca_group)
    if order.parent_id:
        return ("bracket", "", str(order.parent_id))
    return None


def _oca_type(order: BrokerOrder) -> int:
    if order.oca_group:
        return order.oca_type if order.oca_type in (1, 2, 3) else 1
    return _BRACKET_OCA_TYPE


def _root(tx: _Tx, order: BrokerOrder) -> int:
    seen = {order.order_id}
    current = order
    while current.parent_id and current.parent_id not in seen:
        parent = tx.order(current.parent_id)
        if parent is None:
            break
        seen.add(parent.order_id)
        current = parent
    return current.order_id


def _finite(value: object) -> bool:
    return isinstance(value, Decimal) and value.is_finite()


def _invalid_reason(order: BrokerOrder) -> str:
    """Return why `order` is not a valid order, or "" if it is."""
    if not isinstance(order.side, Side):
        return f"unknown side {order.side!r}"
    if not isinstance(order.order_type, OrderType):
        return f"unknown order type {order.order_type!r}"
    if not isinstance(order.tif, TimeInForce):
        return f"unsupported time in force {order.tif!r}"
    if not order.symbol:
        return "missing symbol"
    if not _finite(order.quantity) or order.quantity <= 0:
        return f"quantity must be positive, got {order.quantity}"
    for name in ("limit_price", "stop_price"):
        value = getattr(order, name)
        if value is not None and (not _finite(value) or value < 0):
            return f"{name} must be a non-negative number, got {value}"
    for name in ("trail_amount", "trail_percent"):
        value = getattr(order, name)
        if value is not None and (not _finite(value) or value <= 0):
            return f"{name} must be positive, got {value}"
    kind = order.order_type
    if kind in _LIMIT_TYPES and order.limit_price is None:
        return f"{kind.value} order needs a limit price"
    if kind in (OrderType.STP, OrderType.STP_LMT) and order.stop_price is None:
        return f"{kind.value} order needs a stop price"
    if kind is OrderType.TRAIL:
        if (order.trail_amount is None) == (order.trail_percent is None):
            return "TRAIL order needs exactly one of trail amount and trail percent"
        if order.trail_percent is not None and order.trail_percent >= _HUNDRED:
            return f"trail percent must be below 100, got {order.trail_percent}"
    if order.oca_type not in (0, 1, 2, 3):
        return f"unknown OCA type {order.oca_type}"
    return ""


def _round_to_tick(price: Decimal, tick: Decimal, rounding: str) -> Decimal:
    return (price / tick).to_integral_value(rounding=rounding) * tick


def _trail_level(order: BrokerOrder, ref: Decimal, tick: Decimal) -> Decimal:
    # Rounded away from the market: the distance is never less than the one asked for.
    if order.side is Side.SELL:
        raw = (ref - order.trail_amount if order.trail_amount is not None
               else ref * (1 - order.trail_percent / _HUNDRED))  # type: ignore[operator]
        return _round_to_tick(raw, tick, ROUND_FLOOR)
    raw = (ref + order.trail_amount if order.trail_amount is not None
           else ref * (1 + order.trail_percent / _HUNDRED))  # type: ignore[operator]
    return _round_to_tick(raw, tick, ROUND_CEILING)


def _armed(order: BrokerOrder, quote: Quote, tick: Decimal) -> BrokerOrder:
    """Return the stop order with its trailing level moved and its trigger evaluated on `quote`."""
    buy = order.side is Side.BUY
    last = _valid_price(quote.last)
    touch = _valid_price(quote.ask if buy else quote.bid)
    stop = order.stop_price
    if order.order_type is OrderType.TRAIL:
        stop = order.trail_stop
        ref = last if last is not None else touch
        if ref is not None:
            level = _trail_level(order, ref, tick)
            if stop is None:
                stop = level
            else:
                stop = min(stop, level) if buy else max(stop, level)  # ratchets one way only
        if stop != order.trail_stop:
            order = replace(order, trail_stop=stop)
    if stop is None:
        return order
    prices = [p for p in (last, touch) if p is not None]
    hit = any(p >= stop for p in prices) if buy else any(p <= stop for p in prices)
    return replace(order, triggered=True) if hit else order


# ---------------------------------------------------------------- state changes


def _reject(tx: _Tx, order: BrokerOrder, reason: str) -> None:
    rejected = replace(order, status=INACTIVE)
    tx.put(rejected)
    tx.emit(ErrorEvent(order_id=order.order_id, code=ORDER_REJECTED,
                       message=f"Order rejected - reason:{reason}"))
    tx.emit(_status_event(rejected))


def _accept(tx: _Tx, incoming: BrokerOrder) -> None:
    tx.max_ids[incoming.client_id] = incoming.order_id
    perm_id = tx.next_perm_id
    tx.next_perm_id += 1
    order = replace(incoming, perm_id=perm_id, status=PENDING_SUBMIT, filled=ZERO,
                    avg_fill_price=ZERO, last_fill_price=ZERO, trail_stop=None, triggered=False,
                    why_held="", fill_value=ZERO, commission=ZERO, fill_count=0)
    reason = _invalid_reason(order)
    if not reason and order.parent_id:
        parent = tx.order(order.parent_id)
        if parent is None or order.parent_id == order.order_id:
            reason = f"parent order {order.parent_id} not found"
        elif parent.status in (CANCELLED, INACTIVE):
            reason = f"parent order {order.parent_id} is {parent.status}"
    if tx.reject_next:
        reason = reason or tx.reject_next
        tx.reject_next = ""
    if reason:
        _reject(tx, order, reason)
        return
    if order.order_type is OrderType.TRAIL and order.stop_price is not None:
        order = replace(order, trail_stop=order.stop_price)
    tx.put(order)
    if order.parent_id:
        tx.children[order.parent_id] = tx.child_ids(order.parent_id) + (order.order_id,)
    key = _oca_key(order)
    if key is not None:
        tx.oca[key] = tx.oca_members(key) + (order.order_id,)
        tx.touched_oca.add(key)
    root = _root(tx, order)
    if not order.transmit:
        tx.held[root] = tx.held_ids(root) + (order.order_id,)
        return
    _transmit_family(tx, root, extra=order.order_id)


def _transmit_family(tx: _Tx, root: int, *, extra: int | None = None) -> None:
    """Activate the family's held orders (and `extra`): openOrder + orderStatus for each, then match."""
    ids = set(tx.held_ids(root))
    if extra is not None:
        ids.add(extra)
    if ids - {extra}:
        tx.held[root] = _DELETE
    announced = []
    for oid in sorted(ids):
        order = tx.order(oid)
        if order is None or order.status != PENDING_SUBMIT:
            continue
        parent = tx.order(order.parent_id) if order.parent_id else None
        if parent is not None and parent.status in (CANCELLED, INACTIVE):
            _cancel(tx, oid, f"parent order {parent.order_id} {parent.status}")
            continue
        if parent is not None and parent.status != FILLED:
            order = replace(order, status=PRE_SUBMITTED, why_held="child", transmit=True)
        else:
            order = replace(order, status=SUBMITTED, why_held="", transmit=True)
            tx.working_list(order.symbol).append(oid)
        tx.put(order)
        tx.emit(OpenOrderEvent(order=order))
        tx.emit(_status_event(order))
        announced.append(oid)
    for oid in announced:
        order = tx.order(oid)
        if order is not None and order.status == SUBMITTED:
            _match(tx, oid)
            _expire_ioc(tx, oid)


def _activate_child(tx: _Tx, oid: int) -> None:
    order = tx.order(oid)
    if order is None or order.status != PRE_SUBMITTED:
        return
    order = replace(order, status=SUBMITTED, why_held="")
    tx.put(order)
    tx.working_list(order.symbol).append(oid)
    tx.emit(_status_event(order))
    _match(tx, oid)
    _expire_ioc(tx, oid)


def _expire_ioc(tx: _Tx, oid: int) -> None:
    order = tx.order(oid)
    if order is not None and order.tif is TimeInForce.IOC and not order.done:
        _cancel(tx, oid, "IOC order not filled immediately")


def _modify(tx: _Tx, old: BrokerOrder, new: BrokerOrder) -> None:
    def fail(code: int, message: str) -> None:
        tx.emit(ErrorEvent(order_id=old.order_id, code=code, message=message))

    if (new.symbol, new.side, new.account, new.parent_id, new.oca_group, new.oca_type) != (
            old.symbol, old.side, old.account, old.parent_id, old.oca_group, old.oca_type):
        fail(MODIFY_MISMATCH, "Order being modified does not match original order")
        return
    reason = _invalid_reason(new)
    if not reason and new.quantity <= old.filled:
        reason = f"quantity {new.quantity} must exceed the filled quantity {old.filled}"
    if reason:
        fail(MODIFY_FAILED, f"Modify order failed. reason:{reason}")
        return
    order = replace(old, quantity=new.quantity, order_type=new.order_type,
                    limit_price=new.limit_price, stop_price=new.stop_price,
                    trail_amount=new.trail_amount, trail_percent=new.trail_percent, tif=new.tif,
                    order_ref=new.order_ref, transmit=old.transmit or new.transmit)
    if new.order_type is not old.order_type:
        order = replace(order, triggered=False, trail_stop=None)
    if order.order_type is OrderType.TRAIL and not order.triggered and (
            (new.trail_amount, new.trail_percent, new.stop_price)
            != (old.trail_amount, old.trail_percent, old.stop_price)):
        order = replace(order, trail_stop=new.stop_price)  # None: re-initialised from the next quote
    tx.put(order)
    if old.status == PENDING_SUBMIT:
        if new.transmit:
            _transmit_family(tx, _root(tx, order))
        return
    tx.emit(OpenOrderEvent(order=order))
    tx.emit(_status_event(order))
    if order.status == SUBMITTED:
        _match(tx, order.order_id)
        _expire_ioc(tx, order.order_id)


def _cancel(tx: _Tx, oid: int, reason: str) -> None:
    order = tx.order(oid)
    if order is None or order.done:
        return
    if order.status == PENDING_SUBMIT:
        root = _root(tx, order)
        rest = tuple(i for i in tx.held_ids(root) if i != oid)
        tx.held[root] = rest if rest else _DELETE
    order = replace(order, status=CANCELLED)
    tx.put(order)
    tx.emit(_status_event(order))
    tx.emit(ErrorEvent(order_id=oid, code=ORDER_CANCELLED, message=f"Order Canceled - reason:{reason}"))
    for child in tx.child_ids(oid):
        _cancel(tx, child, f"parent order {oid} cancelled")


def _blocked(tx: _Tx, order: BrokerOrder) -> bool:
    # OCA type 1 "with block": while one member is partially filled the others may not fill.
    key = _oca_key(order)
    if key is None or _oca_type(order) != 1:
        return False
    for mid in tx.oca_members(key):
        if mid == order.order_id:
            continue
        member = tx.order(mid)
        if member is not None and not member.done and member.filled > 0:
            return True
    return False


def _match(tx: _Tx, oid: int) -> None:
    order = tx.order(oid)
    if order is None or order.status != SUBMITTED:
        return
    market = tx.market(order.symbol)
    if market is None:
        return
    if order.order_type in _STOP_TYPES and not order.triggered:
        armed = _armed(order, market.quote, tx.book.tick)
        if armed is not order:
            tx.put(armed)
            order = armed
        if not order.triggered:
            return
    if _blocked(tx, order):
        return
    buy = order.side is Side.BUY
    price = _valid_price(market.quote.ask if buy else market.quote.bid)
    if price is None:
        return
    if order.order_type in _LIMIT_TYPES:
        limit = order.limit_price
        if (price > limit) if buy else (price < limit):  # type: ignore[operator]
            return
    available = market.ask_left if buy else market.bid_left
    quantity = order.remaining if available is None else min(order.remaining, available)
    if quantity <= 0:
        return
    _fill(tx, order, quantity, price, market)


def _fill(tx: _Tx, order: BrokerOrder, quantity: Decimal, price: Decimal, market: Market) -> None:
    if order.side is Side.BUY and market.ask_left is not None:
        tx.markets[order.symbol] = replace(market, ask_left=market.ask_left - quantity)
    elif order.side is Side.SELL and market.bid_left is not None:
        tx.markets[order.symbol] = replace(market, bid_left=market.bid_left - quantity)
    cum = order.filled + quantity
    value = order.fill_value + quantity * price
    due = _commission_due(tx.book.commission, cum, value)
    number = order.fill_count + 1
    filled = replace(order, filled=cum, fill_value=value, avg_fill_price=value / cum,
                     last_fill_price=price, commission=due, fill_count=number,
                     status=FILLED if cum >= order.quantity else SUBMITTED)
    tx.put(filled)
    tx.emit(FillEvent(order_id=order.order_id,
                      exec_id=f"{tx.book.exec_prefix}.{order.perm_id:08x}.{number:02x}.01",
                      symbol=order.symbol, side=order.side, quantity=quantity, price=price,
                      cum_qty=cum, avg_price=filled.avg_fill_price, perm_id=order.perm_id,
                      client_id=order.client_id, order_ref=order.order_ref,
                      commission=due - order.commission, ts_ns=tx.ts_ns, account=order.account))
    tx.emit(_status_event(filled))
    if filled.status == FILLED:
        tx.emit(OpenOrderEvent(order=filled))
    _after_fill_oca(tx, filled, quantity)
    if filled.status == FILLED:
        for child in tx.child_ids(filled.order_id):
            _activate_child(tx, child)


def _after_fill_oca(tx: _Tx, order: BrokerOrder, quantity: Decimal) -> None:
    key = _oca_key(order)
    if key is None:
        return
    kind = _oca_type(order)
    if kind == 1:
        if order.status == FILLED:
            for mid in tx.oca_members(key):
                if mid != order.order_id:
                    _cancel(tx, mid, f"OCA group {key[2]} filled by order {order.order_id}")
    elif kind == 2:
        _reduce_members(tx, key, order.order_id, quantity)
    else:
        tx.deferred.append((order.order_id, quantity))


def _reduce_members(tx: _Tx, key: _OcaKey, filler_id: int, quantity: Decimal) -> None:
    filler = tx.order(filler_id)
    if filler is None:
        return
    for mid in tx.oca_members(key):
        member = tx.order(mid)
        if mid == filler_id or member is None or member.done:
            continue
        if member.quantity == filler.quantity:
            cut = quantity
        else:  # proportionately, to the member's own quantity precision
            exponent = min(member.quantity.as_tuple().exponent, 0)  # type: ignore[type-var]
            cut = (quantity * member.quantity / filler.quantity).quantize(
                Decimal(1).scaleb(exponent), rounding=ROUND_HALF_EVEN)
        if cut <= 0:
            continue
        new_quantity = max(member.filled, member.quantity - cut)
        reduced = replace(member, quantity=new_quantity)
        tx.put(reduced)
        if new_quantity <= member.filled:
            _cancel(tx, mid, f"OCA group {key[2]} reduced by order {filler_id}")
        else:
            tx.emit(OpenOrderEvent(order=reduced))
            tx.emit(_status_event(reduced))


def _flush(tx: _Tx) -> None:
    while tx.deferred:
        pending, tx.deferred = tx.deferred, []
        for oid, quantity in pending:
            order = tx.order(oid)
            key = _oca_key(order) if order is not None else None
            if key is not None:
                _reduce_members(tx, key, oid, quantity)


def fill_now(book: Book, order_id: int, price: Decimal, ts_ns: int) -> tuple[Book, tuple[Event, ...]]:
    """Fill the whole remaining quantity of a live order at `price` at once, whatever the quote says.

    The exchange fill that beat a cancel (fault injection): same events and consequences (children
    activated, OCA siblings cancelled or reduced) as a fill from a quote, and no liquidity consumed.
    """
    from core.errors import InvalidExecution, InvalidTransition

    order = book.orders.get(order_id)
    if order is None:
        raise InvalidTransition(f"order {order_id}: unknown, cannot be filled")
    if order.done or order.status == PENDING_SUBMIT or order.remaining <= 0:
        raise InvalidTransition(f"order {order_id}: {order.status} cannot be filled")
    if not _finite(price) or price <= 0:
        raise InvalidExecution(f"order {order_id}: fill price must be positive, got {price}")
    tx = _Tx(book, ts_ns)
    unlimited = Market(quote=Quote(symbol=order.symbol, ts_ns=ts_ns), bid_left=None, ask_left=None)
    _fill(tx, order, order.remaining, price, unlimited)
    _flush(tx)
    return tx.commit()
