"""Tests of the SQLite journal: round trips, idempotent writes, batches, processes, foreign files."""

from __future__ import annotations

import itertools
import multiprocessing
import multiprocessing.connection
import multiprocessing.synchronize
import os
import pickle
import random
import signal
import sqlite3
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.orders import Order, OrderStatus
from core.types import Execution, OrderType, Side, TimeInForce
from journal.store import (
    APPLICATION_ID,
    MIGRATIONS,
    SCHEMA_VERSION,
    CorruptJournal,
    EventRow,
    ExecRow,
    FiringRow,
    ForeignJournal,
    IntentRow,
    Journal,
    JournalError,
    NewerJournal,
    OrderRow,
    SignalRow,
)

D = Decimal
FORK = multiprocessing.get_context("fork")
decimals = st.decimals(allow_nan=False, allow_infinity=False)
_ids = itertools.count()


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    with Journal.open(tmp_path / "j.sqlite") as j:
        yield j


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Journal]:
    """One journal for property tests (hypothesis forbids function-scoped fixtures); ids are unique."""
    with Journal.open(tmp_path_factory.mktemp("shared") / "j.sqlite", synchronous="NORMAL") as j:
        yield j


def _uid(prefix: str) -> str:
    return f"{prefix}-{next(_ids)}"


def _same(a: Decimal | None, b: Decimal | None) -> bool:
    """Return whether two decimals are equal to the digit and exponent (1.10 is not 1.1)."""
    return (a is None and b is None) or (a is not None and b is not None and a.as_tuple() == b.as_tuple())


def _intent(intent_id: str = "AAPL-1-1", **changes: object) -> IntentRow:
    fields: dict[str, object] = dict(
        intent_id=intent_id, ts_ns=1_700_000_000_000_000_000, symbol="AAPL", side=Side.BUY,
        quantity=D("100"), order_type=OrderType.LMT, limit_price=D("101.50"))
    fields.update(changes)
    return IntentRow(**fields)  # type: ignore[arg-type]


def _order_row(ref: str = "AAPL-1-1:entry", **changes: object) -> OrderRow:
    fields: dict[str, object] = dict(ref=ref, group_id=ref.partition(":")[0], symbol="AAPL",
                                     side=Side.BUY, quantity=D("100"), order_type=OrderType.LMT,
                                     limit_price=D("101.50"), first_ts_ns=10, updated_ns=10)
    fields.update(changes)
    return OrderRow(**fields)  # type: ignore[arg-type]


def _exec_row(exec_id: str = "E1", **changes: object) -> ExecRow:
    fields: dict[str, object] = dict(exec_id=exec_id, ref="AAPL-1-1:entry", order_id=7, symbol="AAPL",
                                     side=Side.BUY, quantity=D("100"), price=D("101.45"), ts_ns=20)
    fields.update(changes)
    return ExecRow(**fields)  # type: ignore[arg-type]


# --- opening and migrations ------------------------------------------------------------------------

def test_open_missing_file_creates_directories_and_current_schema(tmp_path: Path) -> None:
    path = tmp_path / "var" / "state" / "journal.sqlite"
    with Journal.open(path) as j:
        assert j.schema_version() == SCHEMA_VERSION
        assert j.path == path
    raw = sqlite3.connect(path)
    try:
        assert raw.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        meta = dict(raw.execute("SELECT key, value FROM meta").fetchall())
        tables = {r[0] for r in raw.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    finally:
        raw.close()
    assert meta == {"schema_version": str(SCHEMA_VERSION), "created_ns": "0"}
    assert {"events", "signals", "firings", "intents", "orders", "executions", "order_ids",
            "actor_state"} <= tables


def test_open_empty_file_migrates_it_into_a_journal(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    path.write_bytes(b"")
    with Journal.open(path) as j:
        assert j.schema_version() == SCHEMA_VERSION
        assert j.record_event("hello", ts_ns=1) == 1
    with Journal.open(path) as j:  # reopening an existing journal migrates nothing
        assert [e.kind for e in j.events()] == ["hello"]


def test_version_1_journal_migrates_keeping_its_rows_and_finds_a_symbols_later_fills_by_index(
        tmp_path: Path) -> None:
    path = tmp_path / "v1.sqlite"
    raw = sqlite3.connect(path)
    for sql in MIGRATIONS[1]:
        raw.execute(sql)
    raw.execute("INSERT INTO meta (key, value) VALUES ('schema_version', '1'), ('created_ns', '0')")
    raw.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    raw.execute("INSERT INTO executions VALUES ('e1', 1, 'AAPL-1-1:entry', 7, 'AAPL', 'BUY', '10', '100', 5, "
                "'1', NULL, 0)")
    raw.commit()
    raw.close()
    with pytest.raises(JournalError, match="open it read-write once to migrate it"):
        Journal.open(path, readonly=True)
    with Journal.open(path) as j:
        assert j.schema_version() == SCHEMA_VERSION == 2
        assert [e.exec_id for e in j.executions(symbol="AAPL")] == ["e1"]
        plan = " ".join(str(r[-1]) for r in j._conn.execute(
            "EXPLAIN QUERY PLAN SELECT * FROM executions WHERE symbol = ? AND seq > ? ORDER BY seq", ("AAPL", 0)))
    assert "executions_symbol_seq (symbol=? AND seq>?)" in plan, plan


def test_migrations_cover_every_version_up_to_the_schema_version() -> None:
    assert sorted(MIGRATIONS) == list(range(1, SCHEMA_VERSION + 1))
    assert all(MIGRATIONS[v] for v in MIGRATIONS)


def test_synchronous_setting_is_applied_and_checked(tmp_path: Path) -> None:
    with Journal.open(tmp_path / "n.sqlite", synchronous="NORMAL") as j:
        assert j._conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
    with Journal.open(tmp_path / "f.sqlite") as j:
        assert j._conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    with pytest.raises(JournalError, match="synchronous"):
        Journal.open(tmp_path / "x.sqlite", synchronous="OFF")


def test_a_batch_told_not_to_sync_commits_with_normal_and_the_next_batch_syncs_again(tmp_path: Path) -> None:
    def level(j: Journal) -> int:
        return j._conn.execute("PRAGMA synchronous").fetchone()[0]

    with Journal.open(tmp_path / "f.sqlite") as j:
        with j.batch(synced=False):
            j.put_state("a", 1)
            assert level(j) == 1  # NORMAL: this commit does not wait for the disk
            with j.batch():       # a nested batch joins the outer one, and its setting
                j.put_state("b", 2)
                assert level(j) == 1
        with j.batch():
            j.put_state("a", 3)
            assert level(j) == 2  # FULL again: the journal was opened FULL
        with j.batch(synced=False):
            j.put_state("c", 4)
        j.put_state("d", 5)       # a lone write is a synced batch of its own
        assert level(j) == 2
        assert (j.get_state("a"), j.get_state("b"), j.get_state("c"), j.get_state("d")) == (3, 2, 4, 5)
    with Journal.open(tmp_path / "n.sqlite", synchronous="NORMAL") as j:
        with j.batch():
            j.put_state("a", 1)
            assert level(j) == 1  # opened NORMAL: nothing syncs
    with Journal.open(tmp_path / "f.sqlite") as j, pytest.raises(RuntimeError):
        with j.batch(synced=False):
            j.put_state("e", 6)
            raise RuntimeError("undone")
    with Journal.open(tmp_path / "f.sqlite") as j:
        assert j.get_state("e") is None


def test_readonly_open_of_missing_file_fails_without_creating_it(tmp_path: Path) -> None:
    path = tmp_path / "nowhere" / "j.sqlite"
    with pytest.raises(JournalError, match="does not exist") as info:
        Journal.open(path, readonly=True)
    assert str(path) in str(info.value)
    assert not path.exists() and not path.parent.exists()


def test_readonly_journal_reads_but_refuses_writes(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    with Journal.open(path) as j:
        j.record_event("x", ts_ns=1)
    with Journal.open(path, readonly=True) as ro:
        assert [e.kind for e in ro.events()] == ["x"]
        with pytest.raises(JournalError, match="read-only"):
            ro.record_event("y", ts_ns=2)


def _foreign_app_id(path: Path) -> None:
    raw = sqlite3.connect(path)
    raw.execute("PRAGMA application_id = 42")
    raw.execute("CREATE TABLE accounts (id INTEGER PRIMARY KEY, name TEXT)")
    raw.execute("INSERT INTO accounts (name) VALUES ('alice')")
    raw.commit()
    raw.close()


def _plain_sqlite(path: Path) -> None:
    raw = sqlite3.connect(path)
    raw.execute("CREATE TABLE events (seq INTEGER, note TEXT)")
    raw.commit()
    raw.close()


def _ours_without_meta(path: Path) -> None:
    raw = sqlite3.connect(path)
    raw.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    raw.execute("CREATE TABLE something (a)")
    raw.commit()
    raw.close()


def _text_file(path: Path) -> None:
    path.write_text("symbol,qty\nAAPL,100\n" * 50)


def _random_bytes(path: Path) -> None:
    path.write_bytes(random.Random(7).randbytes(16_384))


def _full_journal(path: Path) -> None:
    with Journal.open(path) as j, j.batch():
        for i in range(200):
            j.record_event("filler", ts_ns=i, text="x" * 500)


def _truncated_journal(path: Path) -> None:
    _full_journal(path)
    with path.open("r+b") as f:
        f.truncate(path.stat().st_size // 2)


def _newer_journal(path: Path) -> None:
    _full_journal(path)
    raw = sqlite3.connect(path)
    raw.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    raw.commit()
    raw.close()


@pytest.mark.parametrize("make, error, words", [
    (_foreign_app_id, ForeignJournal, "another application"),
    (_plain_sqlite, ForeignJournal, "no journal meta"),
    (_ours_without_meta, ForeignJournal, "no journal meta"),
    (_text_file, CorruptJournal, "not a database"),
    (_random_bytes, CorruptJournal, "not a database"),
    (_truncated_journal, CorruptJournal, ""),
    (_newer_journal, NewerJournal, "schema version 99"),
])
def test_unusable_file_raises_its_error_and_is_never_written(
        tmp_path: Path, make: Callable[[Path], None], error: type[JournalError], words: str) -> None:
    path = tmp_path / "j.sqlite"
    make(path)
    before = path.read_bytes()
    for readonly in (False, True):
        with pytest.raises(error) as info:
            Journal.open(path, readonly=readonly)
        message = str(info.value)
        assert str(path) in message and words in message
        assert "move it away or point journal.path elsewhere" in message
    assert path.read_bytes() == before
    # A WAL-mode file that SQLite cannot checkpoint on close keeps its -shm index and an empty WAL.
    assert {p.name for p in tmp_path.iterdir()} <= {"j.sqlite", "j.sqlite-wal", "j.sqlite-shm"}
    wal = tmp_path / "j.sqlite-wal"
    assert not wal.exists() or wal.stat().st_size == 0


# --- round trips -----------------------------------------------------------------------------------

@settings(max_examples=60)
@given(quantity=decimals, limit=st.none() | decimals, stop=st.none() | decimals,
       stop_loss=st.none() | decimals, take_profit=st.none() | decimals,
       market=st.none() | decimals, flag=st.booleans())
def test_intent_round_trip_keeps_every_field_and_decimal_exactly(
        shared: Journal, quantity: Decimal, limit: Decimal | None, stop: Decimal | None,
        stop_loss: Decimal | None, take_profit: Decimal | None, market: Decimal | None, flag: bool) -> None:
    row = IntentRow(
        intent_id=_uid("I"), ts_ns=123, symbol="MSFT", side=Side.SELL, quantity=quantity,
        order_type=OrderType.STP_LMT, limit_price=limit, stop_price=stop, tif=TimeInForce.GTC,
        stop_loss=stop_loss, take_profit=take_profit, kind="BRACKET", legs=3, rule="atr",
        rules_version="v2", signal_id="S9", reduce_only=flag, operator=not flag, market_price=market,
        msg_id="m1", corr_id="c1", decision="DENIED", limit_name="max_position", detail="too big",
        decided_ns=124, resolution="ABANDONED", resolution_reason="denied", resolved_ns=125)
    assert shared.record_intent(row) is True
    back = shared.intent(row.intent_id)
    assert back == row
    assert back is not None
    for name in ("quantity", "limit_price", "stop_price", "stop_loss", "take_profit", "market_price"):
        assert _same(getattr(back, name), getattr(row, name)), name


@settings(max_examples=60)
@given(quantity=decimals, filled=decimals, avg=decimals, route=st.none() | st.binary(max_size=64),
       external=st.booleans(), status=st.sampled_from(OrderStatus))
def test_order_round_trip_keeps_every_field_and_decimal_exactly(
        shared: Journal, quantity: Decimal, filled: Decimal, avg: Decimal, route: bytes | None,
        external: bool, status: OrderStatus) -> None:
    ref = _uid("G") + ":stop"
    row = _order_row(ref, quantity=quantity, filled=filled, avg_fill_price=avg, route=route,
                     external=external, status=status, order_type=OrderType.STP, limit_price=None,
                     stop_price=D("99.00"), parent_ref="x:entry", broker_id=next(_ids) + 1,
                     tif=TimeInForce.GTC, side=Side.SELL)
    shared.upsert_order(row)
    back = shared.order(ref)
    assert back == row
    assert back is not None
    assert all(_same(getattr(back, n), getattr(row, n)) for n in ("quantity", "filled", "avg_fill_price"))
    assert shared.order_by_broker_id(row.broker_id) == row


@settings(max_examples=60)
@given(quantity=decimals, price=decimals, commission=decimals, pnl=st.none() | decimals)
def test_execution_round_trip_keeps_every_field_and_decimal_exactly(
        shared: Journal, quantity: Decimal, price: Decimal, commission: Decimal, pnl: Decimal | None) -> None:
    row = _exec_row(_uid("E"), quantity=quantity, price=price, commission=commission, realized_pnl=pnl)
    assert shared.record_execution(row) is True
    (back,) = [e for e in shared.executions(refs=[row.ref]) if e.exec_id == row.exec_id]
    assert back.seq > 0
    assert back == ExecRow(**{**{n: getattr(row, n) for n in row.__slots__}, "seq": back.seq})
    assert all(_same(getattr(back, n), getattr(row, n))
               for n in ("quantity", "price", "commission", "realized_pnl"))


def test_signal_firing_and_event_round_trip(journal: Journal) -> None:
    sig = SignalRow(signal_id="S1", ts_ns=5, symbol="AAPL", accepted=False, code="STALE",
                    reason="expired 3 s ago", data={"direction": "up", "confidence": "0.80"})
    journal.record_signal(sig)
    assert journal.signal("S1") == sig
    firing = FiringRow(ts_ns=6, symbol="AAPL", rule="atr", rules_version="v1", trigger="bar",
                       signal_id="S1", why="close > sma", intent_id="G1")
    seq = journal.record_firing(firing)
    assert journal.firings(intent_id="G1") == [FiringRow(**{**{n: getattr(firing, n)
                                                              for n in firing.__slots__}, "seq": seq})]
    seq = journal.record_event("risk", ts_ns=7, actor="risk", symbol="AAPL", ref="G1", msg_id="m",
                               cause_id="c", corr_id="k", text="denied",
                               data={"limit": D("1.10"), "side": Side.BUY, "legs": [1, 2]})
    assert journal.events() == [EventRow(seq=seq, ts_ns=7, kind="risk", actor="risk", symbol="AAPL",
                                         ref="G1", msg_id="m", cause_id="c", corr_id="k", text="denied",
                                         data={"limit": "1.10", "side": "BUY", "legs": [1, 2]})]


def test_event_data_that_is_not_json_raises_type_error(journal: Journal) -> None:
    with pytest.raises(TypeError, match="cannot be journaled"):
        journal.record_event("x", ts_ns=1, data={"obj": object()})
    assert journal.events() == []


def test_repeated_signal_id_keeps_the_first_row(journal: Journal) -> None:
    first = SignalRow(signal_id="S1", ts_ns=1, symbol="AAPL", accepted=True)
    journal.record_signal(first)
    journal.record_signal(SignalRow(signal_id="S1", ts_ns=2, symbol="AAPL", accepted=False, reason="dup"))
    assert journal.signal("S1") == first
    assert journal.signal("nope") is None


def test_events_filter_by_kind_ref_symbol_seq_and_limit(journal: Journal) -> None:
    for i, (kind, ref, symbol) in enumerate([("a", "G1", "AAPL"), ("b", "G1", "MSFT"), ("a", "G2", "AAPL"),
                                             ("a", "", "MSFT")], start=1):
        assert journal.record_event(kind, ts_ns=i, ref=ref, symbol=symbol) == i
    seqs = lambda **kw: [e.seq for e in journal.events(**kw)]  # noqa: E731
    assert seqs() == [1, 2, 3, 4]
    assert seqs(kind="a") == [1, 3, 4]
    assert seqs(ref="G1") == [1, 2]
    assert seqs(symbol="MSFT") == [2, 4]
    assert seqs(kind="a", symbol="AAPL") == [1, 3]
    assert seqs(after_seq=2) == [3, 4]
    assert seqs(limit=2) == [1, 2]
    assert seqs(refs=["G2", "G1"]) == [1, 2, 3]


def test_state_round_trips_by_key_and_prefix(journal: Journal) -> None:
    order = Order(ref="A:entry", symbol="AAPL", side=Side.BUY, quantity=D("1.10"), order_type=OrderType.MKT)
    journal.put_state("symbol/AAPL", {"order": order, "cash": D("10.00")}, incarnation=2, ts_ns=9)
    journal.put_state("symbol/A_B", [1, 2])
    journal.put_state("symbolX", "other")
    journal.put_state("group/G1", None)
    assert journal.get_state("symbol/AAPL") == {"order": order, "cash": D("10.00")}
    assert journal.states("symbol/") == [("symbol/AAPL", {"order": order, "cash": D("10.00")}),
                                         ("symbol/A_B", [1, 2])]
    assert journal.states("symbol/A_") == [("symbol/A_B", [1, 2])]  # _ is not a wildcard
    assert journal.states("symbol/%") == []
    assert journal.states("SYMBOL/") == []  # case matters
    journal.put_state("symbol/AAPL", "replaced")
    assert journal.get_state("symbol/AAPL") == "replaced"
    journal.drop_state("symbol/AAPL")
    journal.drop_state("never/there")
    assert journal.get_state("symbol/AAPL") is None
    assert journal.get_state("group/G1") is None


def test_unpicklable_state_raises_journal_error_naming_the_key(journal: Journal) -> None:
    blob = pickle.dumps(Side.BUY, protocol=5).replace(b"core.types", b"gone.types")
    journal._conn.execute("INSERT INTO actor_state VALUES ('symbol/BAD', ?, 0, 0)", (blob,))
    journal.put_state("symbol/GOOD", 1)
    for read in (lambda: journal.get_state("symbol/BAD"), lambda: journal.states("symbol/")):
        with pytest.raises(JournalError, match="'symbol/BAD'"):
            read()
    assert journal.get_state("symbol/GOOD") == 1


# --- idempotence and monotonicity ------------------------------------------------------------------

@settings(max_examples=40)
@given(st.lists(st.integers(min_value=0, max_value=2**40), max_size=20))
def test_order_id_hwm_never_goes_backwards(tmp_path_factory: pytest.TempPathFactory, ids: list[int]) -> None:
    with Journal.open(tmp_path_factory.mktemp("hwm") / "j.sqlite", synchronous="NORMAL") as j:
        assert j.order_id_hwm() == 0
        best = 0
        for n in ids:
            best = max(best, n)
            assert j.raise_order_id_hwm(n) == best
            assert j.order_id_hwm() == best


def test_execution_id_counts_once_and_keeps_the_first_row(journal: Journal) -> None:
    first = _exec_row("E1")
    assert journal.record_execution(first) is True
    assert journal.record_execution(_exec_row("E1", quantity=D("50"), price=D("1"))) is False
    assert journal.record_execution(_exec_row("E2", ref="AAPL-1-1:stop", symbol="MSFT")) is True
    assert [(e.exec_id, e.seq, e.quantity) for e in journal.executions()] == [("E1", 1, D("100")),
                                                                              ("E2", 2, D("100"))]
    assert journal.exec_ids() == {"E1", "E2"}
    assert [e.exec_id for e in journal.executions(symbol="MSFT")] == ["E2"]
    assert [e.exec_id for e in journal.executions(after_seq=1)] == ["E2"]
    assert [e.exec_id for e in journal.executions(refs=iter(["AAPL-1-1:entry"]))] == ["E1"]


def test_execution_from_broker_execution_keeps_its_fields() -> None:
    e = Execution(exec_id="X", order_id=3, order_ref="G:entry", symbol="AAPL", side=Side.SELL,
                  quantity=D("5"), price=D("1.5"), commission=D("0.35"), ts_ns=8)
    assert ExecRow.of(e) == ExecRow(exec_id="X", ref="G:entry", order_id=3, symbol="AAPL", side=Side.SELL,
                                    quantity=D("5"), price=D("1.5"), ts_ns=8, commission=D("0.35"))


def test_commission_attaches_to_a_known_fill_only(journal: Journal) -> None:
    journal.record_execution(_exec_row("E1"))
    assert journal.record_commission("E1", commission=D("1.0500"), realized_pnl=D("-3.20"), ts_ns=30) is True
    assert journal.record_commission("E9", commission=D("1"), realized_pnl=None, ts_ns=31) is False
    (row,) = journal.executions()
    assert (str(row.commission), str(row.realized_pnl), row.commission_ns) == ("1.0500", "-3.20", 30)


def test_intent_is_recorded_once_then_decided_and_resolved(journal: Journal) -> None:
    assert journal.record_intent(_intent("G1")) is True
    assert journal.record_intent(_intent("G1", quantity=D("5"))) is False
    journal.record_intent(_intent("G2", symbol="MSFT", rule="breakout", stop_loss=D("99.50")))
    journal.decide_intent("G1", decision="DENIED", limit_name="max_position", detail="600 > 500", ts_ns=50)
    journal.resolve_intent("G1", resolution="ABANDONED", reason="denied by risk", ts_ns=51)
    row = journal.intent("G1")
    assert row is not None and row.quantity == D("100")
    assert (row.decision, row.limit_name, row.detail, row.decided_ns) == ("DENIED", "max_position",
                                                                          "600 > 500", 50)
    assert (row.resolution, row.resolution_reason, row.resolved_ns) == ("ABANDONED", "denied by risk", 51)
    assert [i.intent_id for i in journal.intents()] == ["G1", "G2"]
    assert [i.intent_id for i in journal.intents(symbol="MSFT")] == ["G2"]
    assert [i.intent_id for i in journal.intents(decision="PENDING")] == ["G2"]
    assert journal.latest_intent_ids(5) == ["G2", "G1"]
    assert journal.intent("G3") is None
    assert journal.intent_rules() == {"G1": ("", None), "G2": ("breakout", D("99.50"))}


def test_fill_tuples_are_every_fill_in_journal_order_with_exact_decimals(journal: Journal) -> None:
    for n, (side, price) in enumerate(((Side.BUY, "101.25"), (Side.SELL, "102.50")), start=1):
        journal.record_execution(ExecRow(exec_id=f"e{n}", ref=f"AAPL-1-1:{'entry' if n == 1 else 'tp'}",
                                         order_id=n, symbol="AAPL", side=side, quantity=D("10"),
                                         price=D(price), ts_ns=n, commission=D("1.05")))
    assert journal.fill_tuples() == [
        (r.exec_id, r.ref, r.symbol, r.side, r.quantity, r.price, r.commission, r.ts_ns)
        for r in journal.executions()]
    assert journal.fill_tuples()[1] == ("e2", "AAPL-1-1:tp", "AAPL", Side.SELL, D("10"), D("102.50"), D("1.05"), 2)


@pytest.mark.parametrize("call, words", [
    (lambda j: j.decide_intent("nope", decision="APPROVED", ts_ns=1), "no intent 'nope'"),
    (lambda j: j.resolve_intent("nope", resolution="SENT", reason="", ts_ns=1), "no intent 'nope'"),
    (lambda j: j.decide_intent("G1", decision="MAYBE", ts_ns=1), "decision 'MAYBE'"),
    (lambda j: j.resolve_intent("G1", resolution="LOST", reason="", ts_ns=1), "resolution 'LOST'"),
    (lambda j: j.record_intent(_intent("G5", decision="OK")), "decision 'OK'"),
    (lambda j: j.upsert_order(_order_row(status="Sleeping")), "status 'Sleeping'"),  # type: ignore[arg-type]
])
def test_invalid_intent_or_order_update_raises_and_changes_nothing(
        journal: Journal, call: Callable[[Journal], object], words: str) -> None:
    journal.record_intent(_intent("G1"))
    with pytest.raises(JournalError, match=words):
        call(journal)
    assert journal.intents() == [_intent("G1")]
    assert journal.orders() == []


def test_upsert_order_replaces_by_ref_keeping_earliest_first_seen_and_transmit_order(journal: Journal) -> None:
    journal.upsert_order(_order_row("G1:entry", first_ts_ns=0, updated_ns=5))
    journal.upsert_order(_order_row("G1:stop", order_type=OrderType.STP, first_ts_ns=20))
    journal.upsert_order(_order_row("G1:target", first_ts_ns=20))
    journal.upsert_order(_order_row("G2:entry", symbol="MSFT", first_ts_ns=20))
    journal.upsert_order(_order_row("G1:entry", first_ts_ns=30, updated_ns=31, status=OrderStatus.FILLED,
                                    filled=D("100"), avg_fill_price=D("101.45"), broker_id=1042))
    journal.upsert_order(_order_row("G1:stop", order_type=OrderType.STP, first_ts_ns=25,
                                    status="ApiCancelled"))  # type: ignore[arg-type]
    journal.upsert_order(_order_row("G1:target", first_ts_ns=0, status=OrderStatus.SUBMITTED))
    entry = journal.order("G1:entry")
    assert entry is not None
    assert (entry.first_ts_ns, entry.updated_ns, entry.status, entry.filled) == (30, 31, OrderStatus.FILLED,
                                                                                 D("100"))
    stop, target = journal.order("G1:stop"), journal.order("G1:target")
    assert stop is not None and target is not None
    assert (stop.first_ts_ns, stop.status) == (20, OrderStatus.CANCELLED)
    assert (target.first_ts_ns, target.status) == (20, OrderStatus.SUBMITTED)
    assert [o.ref for o in journal.orders(group_id="G1")] == ["G1:entry", "G1:stop", "G1:target"]
    assert [o.ref for o in journal.orders(open_only=True)] == ["G1:target", "G2:entry"]
    assert [o.ref for o in journal.orders(symbol="MSFT", open_only=True)] == ["G2:entry"]
    assert journal.order_by_broker_id(1042) == entry
    assert journal.order_by_broker_id(0) is None
    assert journal.order("G9:entry") is None


def test_order_row_of_core_order_keeps_its_fields() -> None:
    o = Order(ref="G:entry", symbol="AAPL", side=Side.BUY, quantity=D("3"), order_type=OrderType.LMT,
              limit_price=D("9.5"), status=OrderStatus.SUBMITTED, broker_id=12)
    row = OrderRow.of(o, group_id="G", ts_ns=4, route=b"\x01")
    assert (row.ref, row.group_id, row.limit_price, row.status, row.broker_id, row.first_ts_ns,
            row.route) == ("G:entry", "G", D("9.5"), OrderStatus.SUBMITTED, 12, 4, b"\x01")


# --- batches and concurrent writers -----------------------------------------------------------------

def test_batch_commits_all_writes_together(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    with Journal.open(path) as writer, Journal.open(path) as reader:
        with writer.batch():
            writer.record_intent(_intent("G1"))
            writer.upsert_order(_order_row("G1:entry"))
            writer.record_execution(_exec_row("E1"))
            assert reader.intent("G1") is None and reader.exec_ids() == set()
        assert reader.intent("G1") == _intent("G1")
        assert reader.order("G1:entry") is not None and reader.exec_ids() == {"E1"}


def test_batch_rolls_back_every_write_when_the_block_raises(journal: Journal) -> None:
    with pytest.raises(RuntimeError, match="boom"), journal.batch():
        journal.record_intent(_intent("G1"))
        journal.raise_order_id_hwm(99)
        raise RuntimeError("boom")
    assert journal.intent("G1") is None and journal.order_id_hwm() == 0
    journal.record_event("after", ts_ns=1)  # the journal is usable again
    assert [e.kind for e in journal.events()] == ["after"]


def test_nested_batch_joins_the_outer_and_undoes_only_itself_on_error(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    with Journal.open(path) as j, Journal.open(path) as other:
        with j.batch():
            j.record_event("outer", ts_ns=1)
            with j.batch():
                j.record_event("inner", ts_ns=2)
            assert other.events() == []  # the inner batch committed nothing on its own
            with pytest.raises(ValueError), j.batch():
                j.record_event("failed", ts_ns=3)
                raise ValueError
            j.record_event("last", ts_ns=4)
        assert [e.kind for e in other.events()] == ["outer", "inner", "last"]


def test_two_journals_on_one_file_read_each_others_writes(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    with Journal.open(path) as a, Journal.open(path) as b:
        a.record_intent(_intent("G1"))
        b.record_execution(_exec_row("E1"))
        assert b.raise_order_id_hwm(5) == 5
        assert a.raise_order_id_hwm(3) == 5
        assert b.intent("G1") == _intent("G1")
        assert a.exec_ids() == {"E1"} and a.order_id_hwm() == 5


def _write_events(path: str, n: int) -> None:
    with Journal.open(path) as j:
        for i in range(n):
            j.record_event("child", ts_ns=i, text=str(i))


def test_second_process_writes_while_the_first_reads(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    Journal.open(path).close()
    child = FORK.Process(target=_write_events, args=(str(path), 300))
    child.start()
    try:
        with Journal.open(path) as reader:
            seen: list[EventRow] = []
            deadline = time.monotonic() + 10
            while len([e for e in seen if e.kind == "child"]) < 300 and time.monotonic() < deadline:
                seen += reader.events(after_seq=seen[-1].seq if seen else 0)
                reader.record_event("parent", ts_ns=0)  # and the reader writes too
            assert [e.text for e in seen if e.kind == "child"] == [str(i) for i in range(300)]
            assert [e.seq for e in seen] == list(range(1, len(seen) + 1))
    finally:
        child.join(10)
    assert child.exitcode == 0


def _write_until_killed(path: str, conn: multiprocessing.connection.Connection) -> None:
    with Journal.open(path) as j:
        for i in itertools.count():
            conn.send(j.record_event("tick", ts_ns=i))


def test_committed_writes_survive_kill_9_of_the_writer(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    Journal.open(path).close()
    mine, theirs = FORK.Pipe(duplex=False)
    child = FORK.Process(target=_write_until_killed, args=(str(path), theirs))
    child.start()
    theirs.close()
    acked = 0
    deadline = time.monotonic() + 10
    while acked < 50 and time.monotonic() < deadline:
        if mine.poll(0.5):
            acked = mine.recv()
    assert child.pid is not None
    os.kill(child.pid, signal.SIGKILL)
    child.join(10)
    while mine.poll(0):
        try:
            acked = mine.recv()
        except EOFError:
            break
    assert child.exitcode == -signal.SIGKILL and acked >= 50
    with Journal.open(path) as j:
        seqs = [e.seq for e in j.events(kind="tick")]
    assert seqs[:acked] == list(range(1, acked + 1))


def _open_at_once(path: str, barrier: multiprocessing.synchronize.Barrier, n: int) -> None:
    barrier.wait(10)
    with Journal.open(path) as j:
        j.record_event("opened", ts_ns=n)


@pytest.mark.parametrize("round_", range(5))  # a lost race shows only now and then: try several
def test_processes_opening_a_new_journal_at_once_create_it_once(tmp_path: Path, round_: int) -> None:
    path = tmp_path / "new" / "j.sqlite"
    barrier = FORK.Barrier(4)
    children = [FORK.Process(target=_open_at_once, args=(str(path), barrier, n)) for n in range(4)]
    for c in children:
        c.start()
    for c in children:
        c.join(15)
    assert [c.exitcode for c in children] == [0, 0, 0, 0]
    with Journal.open(path) as j:
        assert sorted(e.ts_ns for e in j.events(kind="opened")) == [0, 1, 2, 3]
        assert j.schema_version() == SCHEMA_VERSION


def test_a_writer_waits_for_a_busy_journal_itself_not_through_sqlite_sleeping_busy_handler(tmp_path: Path) -> None:
    import threading
    import time

    path = tmp_path / "journal.sqlite"
    holder = Journal.open(path)
    Journal.open(path).close()  # created and migrated before the waiter's thread opens it
    done: list[float] = []
    kinds: list[str] = []

    def write() -> None:
        with Journal.open(path) as waiter:  # its own connection, in its own thread
            ready.set()
            waiter.record_event("waited", ts_ns=2)
            done.append(time.monotonic())
            kinds.extend(e.kind for e in waiter.events())

    ready = threading.Event()

    with holder.batch():
        holder.record_event("held", ts_ns=1)
        thread = threading.Thread(target=write)
        thread.start()
        assert ready.wait(10)
        time.sleep(0.06)  # held this long on purpose: the waiter must wait for it
        assert not done
    thread.join(10)
    assert done and kinds == ["held", "waited"]
    # SQLite's own busy handler (busy_timeout) sleeps 25-100 ms at a time once a wait grows: it is
    # off, and the journal waits in steps of at most 2 ms (bench_journal and bench_runtime measure it).
    assert holder._conn.execute("PRAGMA busy_timeout").fetchone()[0] == 0
    holder.close()
