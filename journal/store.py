"""The SQLite journal: the durable record every actor process writes to and every restart rebuilds from."""

from __future__ import annotations

import json
import pickle
import sqlite3
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from decimal import Decimal
from enum import Enum
from pathlib import Path
from types import TracebackType
from typing import Any, Final

from core.orders import DONE_STATES, IB_STATUS, Order, OrderStatus
from core.types import ZERO, Execution, OrderType, Side, TimeInForce

APPLICATION_ID: Final = 0x4942_4A4E  # "IBJN": tells our journal from any other SQLite file
SCHEMA_VERSION: Final = 2
RULES_EVENT: Final = "rules_loaded"  # the event holding a rule set, whole, as it started running
BUSY_TIMEOUT_MS: Final = 10_000
_WAL_ATTEMPTS: Final = 110  # ~10 s of backoff (1 ms doubling to 100 ms)
SQLITE_MAGIC: Final = b"SQLite format 3\x00"

DECISIONS: Final = frozenset({"PENDING", "APPROVED", "DENIED"})
RESOLUTIONS: Final = frozenset({"", "SENT", "ABANDONED"})
SYNCHRONOUS: Final = frozenset({"FULL", "NORMAL"})

# Decimal columns are declared TEXT: a NUMERIC/REAL affinity would turn "1.10" into a float.
MIGRATIONS: Final[dict[int, tuple[str, ...]]] = {
    1: (
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
        """CREATE TABLE events (
            seq INTEGER PRIMARY KEY AUTOINCREMENT, ts_ns INTEGER NOT NULL, kind TEXT NOT NULL,
            actor TEXT NOT NULL, symbol TEXT NOT NULL, ref TEXT NOT NULL, msg_id TEXT NOT NULL,
            cause_id TEXT NOT NULL, corr_id TEXT NOT NULL, text TEXT NOT NULL, data TEXT NOT NULL)""",
        "CREATE INDEX events_kind ON events (kind)",
        "CREATE INDEX events_ref ON events (ref)",
        "CREATE INDEX events_symbol ON events (symbol)",
        """CREATE TABLE signals (
            signal_id TEXT PRIMARY KEY, ts_ns INTEGER NOT NULL, symbol TEXT NOT NULL,
            accepted INTEGER NOT NULL, code TEXT NOT NULL, reason TEXT NOT NULL, data TEXT NOT NULL)""",
        """CREATE TABLE firings (
            seq INTEGER PRIMARY KEY AUTOINCREMENT, ts_ns INTEGER NOT NULL, symbol TEXT NOT NULL,
            rule TEXT NOT NULL, rules_version TEXT NOT NULL, trigger TEXT NOT NULL,
            signal_id TEXT NOT NULL, why TEXT NOT NULL, intent_id TEXT NOT NULL)""",
        "CREATE INDEX firings_intent ON firings (intent_id)",
        "CREATE INDEX firings_symbol ON firings (symbol)",
        """CREATE TABLE intents (
            intent_id TEXT PRIMARY KEY, ts_ns INTEGER NOT NULL, symbol TEXT NOT NULL,
            side TEXT NOT NULL, quantity TEXT NOT NULL, order_type TEXT NOT NULL,
            limit_price TEXT, stop_price TEXT, tif TEXT NOT NULL, stop_loss TEXT, take_profit TEXT,
            kind TEXT NOT NULL, legs INTEGER NOT NULL, rule TEXT NOT NULL,
            rules_version TEXT NOT NULL, signal_id TEXT NOT NULL, reduce_only INTEGER NOT NULL,
            operator INTEGER NOT NULL, market_price TEXT, msg_id TEXT NOT NULL,
            corr_id TEXT NOT NULL, decision TEXT NOT NULL, limit_name TEXT NOT NULL,
            detail TEXT NOT NULL, decided_ns INTEGER NOT NULL, resolution TEXT NOT NULL,
            resolution_reason TEXT NOT NULL, resolved_ns INTEGER NOT NULL)""",
        "CREATE INDEX intents_symbol ON intents (symbol)",
        """CREATE TABLE orders (
            ref TEXT PRIMARY KEY, group_id TEXT NOT NULL, symbol TEXT NOT NULL, side TEXT NOT NULL,
            quantity TEXT NOT NULL, order_type TEXT NOT NULL, limit_price TEXT, stop_price TEXT,
            tif TEXT NOT NULL, parent_ref TEXT NOT NULL, broker_id INTEGER NOT NULL,
            status TEXT NOT NULL, filled TEXT NOT NULL, avg_fill_price TEXT NOT NULL,
            external INTEGER NOT NULL, first_ts_ns INTEGER NOT NULL, updated_ns INTEGER NOT NULL,
            route BLOB)""",
        "CREATE INDEX orders_broker_id ON orders (broker_id)",
        "CREATE INDEX orders_group_id ON orders (group_id)",
        """CREATE TABLE executions (
            exec_id TEXT PRIMARY KEY, seq INTEGER NOT NULL UNIQUE, ref TEXT NOT NULL,
            order_id INTEGER NOT NULL, symbol TEXT NOT NULL, side TEXT NOT NULL,
            quantity TEXT NOT NULL, price TEXT NOT NULL, ts_ns INTEGER NOT NULL,
            commission TEXT NOT NULL, realized_pnl TEXT, commission_ns INTEGER NOT NULL)""",
        "CREATE INDEX executions_ref ON executions (ref)",
        "CREATE INDEX executions_symbol ON executions (symbol)",
        "CREATE TABLE order_ids (id INTEGER PRIMARY KEY CHECK (id = 1), hwm INTEGER NOT NULL)",
        """CREATE TABLE actor_state (
            key TEXT PRIMARY KEY, state BLOB NOT NULL, incarnation INTEGER NOT NULL,
            updated_ns INTEGER NOT NULL)""",
    ),
    # A symbol's fills after its exec floor (every fill a symbol actor applies asks for them) were
    # found through the symbol index alone: a scan of all the symbol's fills, quadratic over a
    # long backtest (1M bars: half the run in that query).
    2: (
        "CREATE INDEX executions_symbol_seq ON executions (symbol, seq)",
        "DROP INDEX executions_symbol",
    ),
}

MOVE_AWAY: Final = "move it away or point journal.path elsewhere"


class JournalError(Exception):
    """The journal cannot be opened, read or written; the message names the file and what to do."""


class ForeignJournal(JournalError):
    """The file is a SQLite database that belongs to something else."""


class CorruptJournal(JournalError):
    """The file is not a database, or its integrity check fails."""


class NewerJournal(JournalError):
    """The journal was written by a newer version of this program (a higher schema_version)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SignalRow:
    """A prediction signal as it arrived, accepted or rejected with a code and reason."""

    signal_id: str
    ts_ns: int
    symbol: str
    accepted: bool
    code: str = ""
    reason: str = ""
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class FiringRow:
    """A rule that fired on a signal or a bar, why, and the intent it produced; `seq` is assigned on write."""

    seq: int = 0
    ts_ns: int
    symbol: str
    rule: str
    rules_version: str = ""
    trigger: str = "signal"
    signal_id: str = ""
    why: str = ""
    intent_id: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class IntentRow:
    """An order intent (the order group to place and why), the risk decision on it and its resolution."""

    intent_id: str
    ts_ns: int
    symbol: str
    side: Side
    quantity: Decimal
    order_type: OrderType
    limit_price: Decimal | None = None
    stop_price: Decimal | None = None
    tif: TimeInForce = TimeInForce.DAY
    stop_loss: Decimal | None = None
    take_profit: Decimal | None = None
    kind: str = ""
    legs: int = 0
    rule: str = ""
    rules_version: str = ""
    signal_id: str = ""
    reduce_only: bool = False
    operator: bool = False
    market_price: Decimal | None = None
    msg_id: str = ""
    corr_id: str = ""
    decision: str = "PENDING"
    limit_name: str = ""
    detail: str = ""
    decided_ns: int = 0
    resolution: str = ""
    resolution_reason: str = ""
    resolved_ns: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderRow:
    """One order leg as last known; `route` is opaque bytes the connection keeps with it."""

    ref: str
    group_id: str = ""
    symbol: str
    side: Side
    quantity: Decimal
    order_type: OrderType
    limit_price: Decimal | None = None
    stop_price: Decimal | None = None
    tif: TimeInForce = TimeInForce.DAY
    parent_ref: str = ""
    broker_id: int = 0
    status: OrderStatus = OrderStatus.CREATED
    filled: Decimal = ZERO
    avg_fill_price: Decimal = ZERO
    external: bool = False
    first_ts_ns: int = 0
    updated_ns: int = 0
    route: bytes | None = None

    @classmethod
    def of(cls, order: Order, *, group_id: str = "", ts_ns: int = 0, external: bool = False,
           route: bytes | None = None) -> OrderRow:
        """Return the row of a core order, first seen and updated at `ts_ns`."""
        return cls(ref=order.ref, group_id=group_id, symbol=order.symbol, side=order.side,
                   quantity=order.quantity, order_type=order.order_type,
                   limit_price=order.limit_price, stop_price=order.stop_price, tif=order.tif,
                   parent_ref=order.parent_ref, broker_id=order.broker_id, status=order.status,
                   filled=order.filled, avg_fill_price=order.avg_fill_price, external=external,
                   first_ts_ns=ts_ns, updated_ns=ts_ns, route=route)


@dataclass(frozen=True, slots=True, kw_only=True)
class ExecRow:
    """One fill; `seq` (insertion order) and `commission_ns` are assigned by the journal."""

    exec_id: str
    ref: str
    order_id: int
    symbol: str
    side: Side
    quantity: Decimal
    price: Decimal
    ts_ns: int
    commission: Decimal = ZERO
    realized_pnl: Decimal | None = None
    seq: int = 0
    commission_ns: int = 0

    @classmethod
    def of(cls, execution: Execution) -> ExecRow:
        """Return the row of a broker execution."""
        return cls(exec_id=execution.exec_id, ref=execution.order_ref, order_id=execution.order_id,
                   symbol=execution.symbol, side=execution.side, quantity=execution.quantity,
                   price=execution.price, ts_ns=execution.ts_ns, commission=execution.commission)


@dataclass(frozen=True, slots=True, kw_only=True)
class EventRow:
    """One entry of the generic story (admin commands, connection events, snapshots, resolutions…)."""

    seq: int
    ts_ns: int
    kind: str
    actor: str = ""
    symbol: str = ""
    ref: str = ""
    msg_id: str = ""
    cause_id: str = ""
    corr_id: str = ""
    text: str = ""
    data: dict[str, Any] = field(default_factory=dict)


_INTENT_COLS: Final = tuple(f.name for f in fields(IntentRow))
_ORDER_COLS: Final = tuple(f.name for f in fields(OrderRow))
_EXEC_COLS: Final = tuple(f.name for f in fields(ExecRow))
_FIRING_COLS: Final = tuple(f.name for f in fields(FiringRow))
_SIGNAL_COLS: Final = tuple(f.name for f in fields(SignalRow))
_EVENT_COLS: Final = tuple(f.name for f in fields(EventRow))
_DONE: Final = tuple(sorted(s.value for s in DONE_STATES))


def _json_default(value: object) -> object:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=str)
    raise TypeError(f"{type(value).__name__} {value!r} cannot be journaled as JSON; pass str, "
                    f"int, float, bool, Decimal, enums, lists or dicts of them")


def _to_json(data: Mapping[str, Any] | None) -> str:
    return json.dumps(dict(data or {}), default=_json_default, ensure_ascii=False,
                      separators=(",", ":"))


def _encode(value: object) -> object:
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, Mapping):
        return _to_json(value)
    return value


def _dec(text: str | None) -> Decimal | None:
    return None if text is None else Decimal(text)


def _status(value: OrderStatus | str, ref: str) -> OrderStatus:
    """Return our status for one of ours or an IB status string ("ApiCancelled" → Cancelled)."""
    if isinstance(value, OrderStatus):
        return value
    try:
        return OrderStatus(value)
    except ValueError:
        pass
    try:
        return IB_STATUS[value]
    except KeyError:
        raise JournalError(f"order {ref}: status {value!r} is neither an OrderStatus value nor an "
                           f"IB order status; pass a core.orders.OrderStatus") from None


def _intent(r: sqlite3.Row) -> IntentRow:
    return IntentRow(
        intent_id=r["intent_id"], ts_ns=r["ts_ns"], symbol=r["symbol"], side=Side(r["side"]),
        quantity=Decimal(r["quantity"]), order_type=OrderType(r["order_type"]),
        limit_price=_dec(r["limit_price"]), stop_price=_dec(r["stop_price"]),
        tif=TimeInForce(r["tif"]), stop_loss=_dec(r["stop_loss"]),
        take_profit=_dec(r["take_profit"]), kind=r["kind"], legs=r["legs"], rule=r["rule"],
        rules_version=r["rules_version"], signal_id=r["signal_id"],
        reduce_only=bool(r["reduce_only"]), operator=bool(r["operator"]),
        market_price=_dec(r["market_price"]), msg_id=r["msg_id"], corr_id=r["corr_id"],
        decision=r["decision"], limit_name=r["limit_name"], detail=r["detail"],
        decided_ns=r["decided_ns"], resolution=r["resolution"],
        resolution_reason=r["resolution_reason"], resolved_ns=r["resolved_ns"])


def _order(r: sqlite3.Row) -> OrderRow:
    return OrderRow(
        ref=r["ref"], group_id=r["group_id"], symbol=r["symbol"], side=Side(r["side"]),
        quantity=Decimal(r["quantity"]), order_type=OrderType(r["order_type"]),
        limit_price=_dec(r["limit_price"]), stop_price=_dec(r["stop_price"]),
        tif=TimeInForce(r["tif"]), parent_ref=r["parent_ref"], broker_id=r["broker_id"],
        status=_status(r["status"], r["ref"]), filled=Decimal(r["filled"]),
        avg_fill_price=Decimal(r["avg_fill_price"]), external=bool(r["external"]),
        first_ts_ns=r["first_ts_ns"], updated_ns=r["updated_ns"], route=r["route"])


def _execution(r: sqlite3.Row) -> ExecRow:
    return ExecRow(
        exec_id=r["exec_id"], ref=r["ref"], order_id=r["order_id"], symbol=r["symbol"],
        side=Side(r["side"]), quantity=Decimal(r["quantity"]), price=Decimal(r["price"]),
        ts_ns=r["ts_ns"], commission=Decimal(r["commission"]),
        realized_pnl=_dec(r["realized_pnl"]), seq=r["seq"], commission_ns=r["commission_ns"])


def _signal(r: sqlite3.Row) -> SignalRow:
    return SignalRow(signal_id=r["signal_id"], ts_ns=r["ts_ns"], symbol=r["symbol"],
                     accepted=bool(r["accepted"]), code=r["code"], reason=r["reason"],
                     data=json.loads(r["data"]))


def _firing(r: sqlite3.Row) -> FiringRow:
    return FiringRow(**{c: r[c] for c in _FIRING_COLS})


def _event(r: sqlite3.Row) -> EventRow:
    return EventRow(**{c: r[c] for c in _EVENT_COLS if c != "data"}, data=json.loads(r["data"]))


def _where(conditions: Iterable[tuple[str, object]]) -> tuple[str, list[object]]:
    """Return a WHERE clause of the `column = value` pairs whose value is set, and its parameters."""
    parts, params = [], []
    for clause, value in conditions:
        if value:
            parts.append(clause)
            params.append(value)
    return (" WHERE " + " AND ".join(parts) if parts else ""), params


class Journal:
    """One process's connection to the journal file; many processes may hold one on the same file."""

    def __init__(self, conn: sqlite3.Connection, path: Path, *, readonly: bool, synchronous: str = "FULL") -> None:
        self._conn = conn
        self.path = path
        self.readonly = readonly
        self.synchronous = synchronous  # as opened: what a batch not told otherwise commits with
        self._sync_now = synchronous    # the connection's setting at this moment
        self._depth = 0

    # --- opening ---------------------------------------------------------------------------------

    @classmethod
    def open(cls, path: str | Path, *, synchronous: str = "FULL", readonly: bool = False) -> Journal:
        """Open (creating it and its directories unless `readonly`) and migrate the journal at `path`."""
        path = Path(path)
        sync = str(getattr(synchronous, "value", synchronous)).upper()
        if sync not in SYNCHRONOUS:
            raise JournalError(f"journal {path}: synchronous={synchronous!r} is not one of "
                               f"{sorted(SYNCHRONOUS)}; set journal.synchronous to FULL or NORMAL")
        if readonly:
            if not path.is_file() or path.stat().st_size == 0:
                raise JournalError(f"journal {path} does not exist or is empty: nothing to read; "
                                   f"check journal.path and system.state_dir, or run the system once")
        else:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise JournalError(f"journal {path}: cannot create its directory ({exc}); "
                                   f"point journal.path elsewhere") from exc
        _check_header(path)
        target = f"{path.absolute().as_uri()}?mode={'ro' if readonly else 'rwc'}"
        try:
            conn = sqlite3.connect(target, uri=True, timeout=BUSY_TIMEOUT_MS / 1000,
                                   isolation_level=None)
        except sqlite3.Error as exc:
            raise JournalError(f"journal {path} cannot be opened ({exc}); check the path and its "
                               f"permissions, or point journal.path elsewhere") from exc
        conn.row_factory = sqlite3.Row
        try:
            # Connection settings only: none of these pragmas writes to the file.
            _execute(conn, path, f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            _execute(conn, path, "BEGIN")  # one snapshot: another opener may be creating it right now
            try:
                version = _inspect(conn, path)
            finally:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
            _execute(conn, path, f"PRAGMA synchronous = {sync}")
            if readonly:
                if version < SCHEMA_VERSION:
                    raise JournalError(f"journal {path} has schema version {version}, older than "
                                       f"{SCHEMA_VERSION}; open it read-write once to migrate it")
            else:
                # Written only now that the file is known to be ours, or empty.
                _enable_wal(conn, path)
                if version < SCHEMA_VERSION:
                    _migrate(conn, path)
            # From now on a busy file is waited for by `_retrying` in short steps: SQLite's own busy
            # handler sleeps 25-100 ms at a time, which many writing processes turn into that much
            # latency on the order path when the lock they wait for is free again within a millisecond.
            _execute(conn, path, "PRAGMA busy_timeout = 0")
        except BaseException:
            conn.close()
            raise
        return cls(conn, path, readonly=readonly, synchronous=sync)

    def close(self) -> None:
        """Close the connection; uncommitted work of an open batch is rolled back."""
        self._conn.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Journal({str(self.path)!r}{', readonly' if self.readonly else ''})"

    def schema_version(self) -> int:
        """Return the schema version stored in the journal."""
        row = self._query("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        return int(row[0])

    # --- transactions ----------------------------------------------------------------------------

    @contextmanager
    def batch(self, *, synced: bool = True) -> Iterator[None]:
        """Commit every write in the block together, or none if it raises; nested batches join the outer one.

        `synced=False` (outermost batch only) commits without waiting for the disk even when the
        journal is opened FULL: for writes that nothing outside the machine acts on before a later
        synced commit. The WAL is one file appended in commit order, so the fsync of any later
        commit, by any process, makes this one survive a power loss too; a crash of the process
        loses nothing either way. The connection to the broker commits synced before every order
        it sends, so intents and decisions written this way are on disk before their order leaves.
        """
        self._writable()
        if self._depth:
            # A savepoint: an inner block that raises undoes only its own writes.
            name = f"batch{self._depth}"
            self._exec(f"SAVEPOINT {name}")
            self._depth += 1
            try:
                yield
            except BaseException:
                self._exec(f"ROLLBACK TO {name}")
                raise
            finally:
                self._depth -= 1
                self._exec(f"RELEASE {name}")
            return
        with self._transaction(synced):
            yield

    def _set_sync(self, synced: bool) -> None:
        # Outside any transaction (SQLite ignores the pragma inside one); a process that always
        # commits one way switches once.
        wanted = self.synchronous if synced else "NORMAL"
        if wanted != self._sync_now:
            _execute(self._conn, self.path, f"PRAGMA synchronous = {wanted}")
            self._sync_now = wanted

    @contextmanager
    def _transaction(self, synced: bool = True) -> Iterator[None]:
        self._set_sync(synced)
        # IMMEDIATE takes the write lock up front: a deferred transaction that reads first gets
        # SQLITE_BUSY without waiting when another process commits in between (WAL snapshot rule).
        self._retrying("BEGIN IMMEDIATE")
        self._depth = 1
        try:
            yield
            self._exec("COMMIT")
        except BaseException:
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
            raise
        finally:
            self._depth = 0

    @contextmanager
    def _write(self) -> Iterator[None]:
        self._writable()
        if self._depth:
            yield
            return
        with self._transaction():
            yield

    def _writable(self) -> None:
        if self.readonly:
            raise JournalError(f"journal {self.path} is open read-only; open it without "
                               f"readonly=True to write")

    def _exec(self, sql: str, params: Iterable[object] = ()) -> sqlite3.Cursor:
        return _execute(self._conn, self.path, sql, params)

    def _query(self, sql: str, params: Iterable[object] = ()) -> sqlite3.Cursor:
        if self._depth:
            return _execute(self._conn, self.path, sql, params)
        return self._retrying(sql, params)

    def _retrying(self, sql: str, params: Iterable[object] = ()) -> sqlite3.Cursor:
        """Run `sql`, waiting for a busy journal (another process writing) in steps of 50 us to 2 ms."""
        values = tuple(params)
        deadline = 0.0  # set at the first busy answer: a query that runs at once reads no clock
        delay = 0.00005
        while True:
            try:
                return self._conn.execute(sql, values)
            except sqlite3.OperationalError as exc:
                now = time.monotonic()
                deadline = deadline or now + BUSY_TIMEOUT_MS / 1000
                if not _is_busy(exc) or now >= deadline:
                    return _execute(self._conn, self.path, sql, values)  # raises it as a JournalError
            time.sleep(delay)
            delay = min(delay * 2, 0.002)

    def _insert(self, table: str, cols: tuple[str, ...], values: Iterable[object],
                conflict: str = "") -> sqlite3.Cursor:
        marks = ", ".join("?" * len(cols))
        sql = f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({marks}) {conflict}"
        return self._exec(sql, [_encode(v) for v in values])

    # --- writes ----------------------------------------------------------------------------------

    def record_event(self, kind: str, *, ts_ns: int, actor: str = "", symbol: str = "", ref: str = "",
                     msg_id: str = "", cause_id: str = "", corr_id: str = "", text: str = "",
                     data: Mapping[str, Any] | None = None) -> int:
        """Append an event (Decimals in `data` are stored as strings) and return its seq."""
        cols = _EVENT_COLS[1:]
        values = (ts_ns, kind, actor, symbol, ref, msg_id, cause_id, corr_id, text, _to_json(data))
        with self._write():
            return self._insert("events", cols, values).lastrowid or 0

    def record_signal(self, row: SignalRow) -> None:
        """Store a signal; a signal_id already there keeps its first row."""
        with self._write():
            self._insert("signals", _SIGNAL_COLS, (getattr(row, c) for c in _SIGNAL_COLS),
                         "ON CONFLICT (signal_id) DO NOTHING")

    def record_firing(self, row: FiringRow) -> int:
        """Append a rule firing and return its seq (`row.seq` is ignored)."""
        cols = _FIRING_COLS[1:]
        with self._write():
            return self._insert("firings", cols, (getattr(row, c) for c in cols)).lastrowid or 0

    def record_intent(self, row: IntentRow) -> bool:
        """Store an intent; return False (changing nothing) when its intent_id is already there."""
        _check_choice("decision", row.decision, DECISIONS, row.intent_id)
        _check_choice("resolution", row.resolution, RESOLUTIONS, row.intent_id)
        with self._write():
            cur = self._insert("intents", _INTENT_COLS, (getattr(row, c) for c in _INTENT_COLS),
                               "ON CONFLICT (intent_id) DO NOTHING")
            return cur.rowcount == 1

    def decide_intent(self, intent_id: str, *, decision: str, limit_name: str = "", detail: str = "",
                      ts_ns: int) -> None:
        """Store the risk decision (PENDING, APPROVED or DENIED) on a journaled intent."""
        _check_choice("decision", decision, DECISIONS, intent_id)
        with self._write():
            cur = self._exec("UPDATE intents SET decision = ?, limit_name = ?, detail = ?, "
                             "decided_ns = ? WHERE intent_id = ?",
                             (decision, limit_name, detail, ts_ns, intent_id))
            self._found(cur, "intent", intent_id, "record_intent")

    def resolve_intent(self, intent_id: str, *, resolution: str, reason: str, ts_ns: int) -> None:
        """Store how a journaled intent ended: SENT to the broker or ABANDONED (and why)."""
        _check_choice("resolution", resolution, RESOLUTIONS, intent_id)
        with self._write():
            cur = self._exec("UPDATE intents SET resolution = ?, resolution_reason = ?, "
                             "resolved_ns = ? WHERE intent_id = ?",
                             (resolution, reason, ts_ns, intent_id))
            self._found(cur, "intent", intent_id, "record_intent")

    def upsert_order(self, row: OrderRow) -> None:
        """Insert or replace the order with `row.ref`, keeping its earliest known first_ts_ns."""
        status = _status(row.status, row.ref)
        values = [status if c == "status" else getattr(row, c) for c in _ORDER_COLS]
        updates = ", ".join(f"{c} = excluded.{c}" for c in _ORDER_COLS
                            if c not in ("ref", "first_ts_ns"))
        # ON CONFLICT DO UPDATE keeps the rowid (INSERT OR REPLACE would not): rowid order is the
        # order legs were first journaled in, i.e. their transmit order. 0 means "not known".
        conflict = (f"ON CONFLICT (ref) DO UPDATE SET {updates}, first_ts_ns = CASE "
                    "WHEN first_ts_ns = 0 THEN excluded.first_ts_ns "
                    "WHEN excluded.first_ts_ns = 0 THEN first_ts_ns "
                    "ELSE min(first_ts_ns, excluded.first_ts_ns) END")
        with self._write():
            self._insert("orders", _ORDER_COLS, values, conflict)

    def record_execution(self, row: ExecRow) -> bool:
        """Store a fill; return False (changing nothing) when its exec_id is already there."""
        cols = tuple(c for c in _EXEC_COLS if c != "seq")
        values = [getattr(row, c) for c in cols]
        with self._write():
            if self._query("SELECT 1 FROM executions WHERE exec_id = ?", (row.exec_id,)).fetchone():
                return False
            seq = self._query("SELECT coalesce(max(seq), 0) + 1 FROM executions").fetchone()[0]
            self._insert("executions", (*cols, "seq"), (*values, seq))
            return True

    def record_commission(self, exec_id: str, *, commission: Decimal, realized_pnl: Decimal | None,
                          ts_ns: int) -> bool:
        """Attach a commission report to a journaled fill; return False when the exec_id is unknown."""
        with self._write():
            cur = self._exec("UPDATE executions SET commission = ?, realized_pnl = ?, "
                             "commission_ns = ? WHERE exec_id = ?",
                             (_encode(commission), _encode(realized_pnl), ts_ns, exec_id))
            return cur.rowcount == 1

    def raise_order_id_hwm(self, order_id: int) -> int:
        """Raise the order-id high-water mark to `order_id` (never lower it); return the stored mark."""
        with self._write():
            self._exec("INSERT INTO order_ids (id, hwm) VALUES (1, ?) "
                       "ON CONFLICT (id) DO UPDATE SET hwm = max(hwm, excluded.hwm)", (order_id,))
            return int(self._query("SELECT hwm FROM order_ids WHERE id = 1").fetchone()[0])

    def put_state(self, key: str, state: object, *, incarnation: int = 0, ts_ns: int = 0) -> None:
        """Store an actor's state (pickled) under `key`, replacing what was there."""
        blob = pickle.dumps(state, protocol=5)
        with self._write():
            self._exec("INSERT INTO actor_state (key, state, incarnation, updated_ns) "
                       "VALUES (?, ?, ?, ?) ON CONFLICT (key) DO UPDATE SET state = excluded.state, "
                       "incarnation = excluded.incarnation, updated_ns = excluded.updated_ns",
                       (key, blob, incarnation, ts_ns))

    def drop_state(self, key: str) -> None:
        """Forget the state under `key` (nothing happens when there is none)."""
        with self._write():
            self._exec("DELETE FROM actor_state WHERE key = ?", (key,))

    # --- reads -----------------------------------------------------------------------------------

    def order_id_hwm(self) -> int:
        """Return the order-id high-water mark (0 when none was stored)."""
        row = self._query("SELECT hwm FROM order_ids WHERE id = 1").fetchone()
        return int(row[0]) if row else 0

    def get_state(self, key: str) -> object | None:
        """Return the state stored under `key`, or None."""
        row = self._query("SELECT state FROM actor_state WHERE key = ?", (key,)).fetchone()
        return None if row is None else self._unpickle(key, row[0])

    def states(self, prefix: str) -> list[tuple[str, object]]:
        """Return (key, state) for every key starting with `prefix`, ordered by key."""
        # substr, not LIKE: keys may hold % and _, and LIKE ignores ASCII case.
        rows = self._query("SELECT key, state FROM actor_state WHERE substr(key, 1, ?) = ? "
                           "ORDER BY key", (len(prefix), prefix)).fetchall()
        return [(key, self._unpickle(key, blob)) for key, blob in rows]

    def intent(self, intent_id: str) -> IntentRow | None:
        """Return the intent with this id, or None."""
        row = self._query("SELECT * FROM intents WHERE intent_id = ?", (intent_id,)).fetchone()
        return None if row is None else _intent(row)

    def intents(self, *, symbol: str = "", decision: str = "") -> list[IntentRow]:
        """Return the intents matching the filters that are set, in the order they were journaled."""
        where, params = _where((("symbol = ?", symbol), ("decision = ?", decision)))
        rows = self._query(f"SELECT * FROM intents{where} ORDER BY rowid", params).fetchall()
        return [_intent(r) for r in rows]

    def intent_rules(self) -> dict[str, tuple[str, Decimal | None]]:
        """Return (rule, protective stop) of every intent by id: what analytics joins fills to, without whole rows."""
        rows = self._query("SELECT intent_id, rule, stop_loss FROM intents").fetchall()
        return {r["intent_id"]: (r["rule"], _dec(r["stop_loss"])) for r in rows}

    def latest_intent_ids(self, n: int = 3) -> list[str]:
        """Return the ids of the last `n` intents journaled, newest first."""
        rows = self._query("SELECT intent_id FROM intents ORDER BY rowid DESC LIMIT ?", (n,))
        return [r[0] for r in rows.fetchall()]

    def order(self, ref: str) -> OrderRow | None:
        """Return the order with this durable ref, or None."""
        row = self._query("SELECT * FROM orders WHERE ref = ?", (ref,)).fetchone()
        return None if row is None else _order(row)

    def order_by_broker_id(self, broker_id: int) -> OrderRow | None:
        """Return the order the broker knows by this id (the latest journaled if ever reused), or None."""
        if broker_id <= 0:
            return None  # 0 is "not sent yet", shared by every unsent order
        row = self._query("SELECT * FROM orders WHERE broker_id = ? ORDER BY rowid DESC LIMIT 1",
                          (broker_id,)).fetchone()
        return None if row is None else _order(row)

    def orders(self, *, group_id: str = "", symbol: str = "", open_only: bool = False) -> list[OrderRow]:
        """Return the orders matching the filters, in the order first journaled (transmit order)."""
        where, params = _where((("group_id = ?", group_id), ("symbol = ?", symbol)))
        if open_only:
            done = f"status NOT IN ({', '.join('?' * len(_DONE))})"
            where = f"{where} AND {done}" if where else f" WHERE {done}"
            params.extend(_DONE)
        rows = self._query(f"SELECT * FROM orders{where} ORDER BY rowid", params).fetchall()
        return [_order(r) for r in rows]

    def executions(self, *, symbol: str = "", refs: Iterable[str] = (), after_seq: int = 0) -> list[ExecRow]:
        """Return the fills matching the filters (refs: any of them; none given: all) in insertion order."""
        where, params = _where((("symbol = ?", symbol), ("seq > ?", after_seq)))
        wanted = tuple(refs)
        if wanted:
            among = f"ref IN ({', '.join('?' * len(wanted))})"
            where = f"{where} AND {among}" if where else f" WHERE {among}"
            params.extend(wanted)
        rows = self._query(f"SELECT * FROM executions{where} ORDER BY seq", params).fetchall()
        return [_execution(r) for r in rows]

    def fill_tuples(self) -> list[tuple[str, str, str, Side, Decimal, Decimal, Decimal, int]]:
        """Return every fill as (exec id, ref, symbol, side, quantity, price, commission, ts_ns), in
        journal order: what analytics reads, without building an ExecRow per fill."""
        sides = {s.value: s for s in Side}
        rows = self._query("SELECT exec_id, ref, symbol, side, quantity, price, commission, ts_ns "
                           "FROM executions ORDER BY seq").fetchall()
        return [(r[0], r[1], r[2], sides[r[3]], Decimal(r[4]), Decimal(r[5]), Decimal(r[6]), r[7]) for r in rows]

    def exec_seq(self, exec_id: str) -> int | None:
        """Return the sequence number of the journaled fill `exec_id`, or None when it is not journaled."""
        row = self._query("SELECT seq FROM executions WHERE exec_id = ?", (exec_id,)).fetchone()
        return None if row is None else int(row[0])

    def exec_ids(self) -> set[str]:
        """Return every journaled execution id."""
        return {r[0] for r in self._query("SELECT exec_id FROM executions").fetchall()}

    def signal(self, signal_id: str) -> SignalRow | None:
        """Return the signal with this id, or None."""
        row = self._query("SELECT * FROM signals WHERE signal_id = ?", (signal_id,)).fetchone()
        return None if row is None else _signal(row)

    def recent_signals(self, *, symbol: str = "", limit: int = 50) -> list[SignalRow]:
        """Return the latest `limit` signals (accepted and rejected), newest first."""
        where, params = _where((("symbol = ?", symbol),))
        rows = self._query(f"SELECT * FROM signals{where} ORDER BY ts_ns DESC, rowid DESC LIMIT ?",
                           (*params, max(limit, 0))).fetchall()
        return [_signal(r) for r in rows]

    def firings(self, *, intent_id: str = "", symbol: str = "", since_ns: int = 0) -> list[FiringRow]:
        """Return the rule firings matching the filters (at or after `since_ns`), in seq order."""
        where, params = _where((("intent_id = ?", intent_id), ("symbol = ?", symbol),
                                ("ts_ns >= ?", since_ns)))
        rows = self._query(f"SELECT * FROM firings{where} ORDER BY seq", params).fetchall()
        return [_firing(r) for r in rows]

    def events(self, *, kind: str = "", ref: str = "", symbol: str = "", after_seq: int = 0,
               limit: int = 0, refs: Iterable[str] = ()) -> list[EventRow]:
        """Return the events matching the filters (`refs`: any of them), oldest first, at most `limit` (0: all)."""
        where, params = _where((("kind = ?", kind), ("ref = ?", ref), ("symbol = ?", symbol),
                                ("seq > ?", after_seq)))
        wanted = tuple(refs)
        if wanted:
            among = f"ref IN ({', '.join('?' * len(wanted))})"
            where = f"{where} AND {among}" if where else f" WHERE {among}"
            params.extend(wanted)
        sql = f"SELECT * FROM events{where} ORDER BY seq"
        if limit > 0:
            sql += " LIMIT ?"
            params.append(limit)
        return [_event(r) for r in self._query(sql, params).fetchall()]

    # --- helpers ---------------------------------------------------------------------------------

    def _found(self, cur: sqlite3.Cursor, what: str, key: str, how: str) -> None:
        if cur.rowcount == 0:
            raise JournalError(f"journal {self.path}: no {what} {key!r} to update; "
                               f"{how} it first")

    def _unpickle(self, key: str, blob: bytes) -> object:
        try:
            return pickle.loads(blob)
        except Exception as exc:  # any failure of a foreign or stale pickle: module gone, class renamed…
            raise JournalError(f"journal {self.path}: the state under key {key!r} cannot be "
                               f"unpickled ({type(exc).__name__}: {exc}); drop_state({key!r}) "
                               f"to start that actor afresh") from exc


def _check_choice(name: str, value: str, allowed: frozenset[str], intent_id: str) -> None:
    if value not in allowed:
        raise JournalError(f"intent {intent_id}: {name} {value!r} is not one of {sorted(allowed)}")


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
    text = str(exc)
    return "locked" in text or "busy" in text


def _execute(conn: sqlite3.Connection, path: Path, sql: str,
             params: Iterable[object] = ()) -> sqlite3.Cursor:
    try:
        return conn.execute(sql, tuple(params))
    except sqlite3.OperationalError as exc:
        raise JournalError(f"journal {path}: {exc} (while running {sql.split('(')[0].strip()!r}); "
                           f"check the disk and that no process holds a write transaction open "
                           f"for {BUSY_TIMEOUT_MS // 1000} s") from exc
    except sqlite3.DatabaseError as exc:
        if type(exc) is not sqlite3.DatabaseError:
            raise  # IntegrityError, ProgrammingError…: a bug in the caller, not a damaged file
        raise CorruptJournal(f"journal {path} is damaged ({exc}); {MOVE_AWAY}") from exc


def _check_header(path: Path) -> None:
    try:
        with path.open("rb") as f:
            head = f.read(len(SQLITE_MAGIC))
    except FileNotFoundError:
        return
    except OSError as exc:
        raise JournalError(f"journal {path} cannot be read ({exc}); check its permissions or "
                           f"point journal.path elsewhere") from exc
    if head and head != SQLITE_MAGIC:
        raise CorruptJournal(f"journal {path}: file is not a database; {MOVE_AWAY}")


def _inspect(conn: sqlite3.Connection, path: Path) -> int:
    """Return the schema version of an intact journal of ours (0: an empty file), reading only."""
    try:
        app_id = conn.execute("PRAGMA application_id").fetchone()[0]
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    except sqlite3.DatabaseError as exc:
        raise CorruptJournal(f"journal {path}: {exc}; {MOVE_AWAY}") from exc
    if app_id not in (0, APPLICATION_ID):
        raise ForeignJournal(f"journal {path} is a SQLite database of another application "
                             f"(application_id {app_id:#x}); {MOVE_AWAY}")
    if not tables and app_id == 0:
        return 0
    if app_id == 0 or "meta" not in tables:
        raise ForeignJournal(f"journal {path} is a SQLite database with tables "
                             f"({', '.join(sorted(tables)[:5])}) but no journal meta; {MOVE_AWAY}")
    try:
        problems = [r[0] for r in conn.execute("PRAGMA quick_check").fetchall()]
    except sqlite3.DatabaseError as exc:
        raise CorruptJournal(f"journal {path} is damaged ({exc}); {MOVE_AWAY}") from exc
    if problems != ["ok"]:
        shown = "; ".join(problems[:3])
        raise CorruptJournal(f"journal {path} fails its integrity check ({shown}); {MOVE_AWAY}")
    try:
        row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    except sqlite3.DatabaseError as exc:
        raise ForeignJournal(f"journal {path} has a meta table that is not a journal's ({exc}); "
                             f"{MOVE_AWAY}") from exc
    try:
        version = int(row[0]) if row else -1
    except (TypeError, ValueError):
        version = -1
    if version < 1:
        raise ForeignJournal(f"journal {path} has no valid schema_version in its meta table; "
                             f"{MOVE_AWAY}")
    if version > SCHEMA_VERSION:
        raise NewerJournal(f"journal {path} has schema version {version}, newer than this "
                           f"program's {SCHEMA_VERSION}: run the newer version, or {MOVE_AWAY}")
    return version


def _enable_wal(conn: sqlite3.Connection, path: Path) -> None:
    """Switch the file to WAL mode, once for all processes (the mode is stored in the file)."""
    # Changing the mode needs an exclusive lock, and SQLite answers SQLITE_BUSY at once, without
    # its busy handler, while another opener holds the file: retry until someone has switched it.
    for attempt in range(_WAL_ATTEMPTS):
        try:
            mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
            if mode != "wal":
                mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode == "wal":
                return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc):
                raise JournalError(f"journal {path}: {exc} while switching it to WAL mode; check "
                                   f"the disk and the file's permissions") from exc
        time.sleep(min(0.001 * 2 ** attempt, 0.1))
    raise JournalError(f"journal {path} could not be switched to WAL mode within about "
                       f"{BUSY_TIMEOUT_MS // 1000} s: another process keeps it locked (a non-journal "
                       f"program?); stop it, or point journal.path elsewhere")


def _migrate(conn: sqlite3.Connection, path: Path) -> None:
    """Bring the journal to SCHEMA_VERSION in one write transaction (so concurrent openers create it once)."""
    _execute(conn, path, "BEGIN IMMEDIATE")
    try:
        version = _inspect(conn, path)  # another process may have migrated it meanwhile
        for step in range(version + 1, SCHEMA_VERSION + 1):
            for sql in MIGRATIONS[step]:
                _execute(conn, path, sql)
        if version < SCHEMA_VERSION:
            # application_id lives in the header and is written inside this transaction.
            _execute(conn, path, f"PRAGMA application_id = {APPLICATION_ID}")
            _execute(conn, path, "INSERT INTO meta (key, value) VALUES ('schema_version', ?) "
                     "ON CONFLICT (key) DO UPDATE SET value = excluded.value", (str(SCHEMA_VERSION),))
            _execute(conn, path, "INSERT INTO meta (key, value) VALUES ('created_ns', '0') "
                     "ON CONFLICT (key) DO NOTHING")
        _execute(conn, path, "COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
