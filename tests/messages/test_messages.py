"""Every message type constructs, pickles, stays frozen, carries its ids, and is exported exactly once."""

from __future__ import annotations

import copy
import dataclasses
import enum
import importlib
import inspect
import multiprocessing
import pickle
import pkgutil
import secrets
import types
import typing
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import thespian.actors
from hypothesis import given, settings
from hypothesis import strategies as st
from thespian.actors import ActorAddress

import messages
from core.position import Position, PositionState
from messages import Message
from messages.base import new_id, seed_ids, type_names
from messages.signals import RAW_EXCERPT_CHARS, excerpt

# Annotations are strings (`from __future__ import annotations`) and ActorAddress is imported
# by the message modules only for type checking, so it is supplied here.
_HINT_NS = {"ActorAddress": ActorAddress}
_IDS = ("msg_id", "cause_id", "corr_id")

ALL_TYPES: list[type[Message]] = [getattr(messages, name) for name in messages.__all__]


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls, localns=_HINT_NS)


def _sample(tp: Any, name: str) -> Any:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        return _sample(next(a for a in args if a is not type(None)), name)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return (_sample(args[0], name), _sample(args[0], name))
        return tuple(_sample(a, name) for a in args)
    if origin is frozenset:
        return frozenset({_sample(args[0], name)})
    if tp is bool:
        return True
    if tp is int:
        return 7
    if tp is str:
        return f"{name}-sample"
    if tp is Decimal:
        return Decimal("12.34")
    if tp is object:
        return ("opaque", name, Decimal("1.5"))
    if tp is ActorAddress:
        return ActorAddress(f"addr-{name}")
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return next(iter(tp))
    if dataclasses.is_dataclass(tp):
        return _build(tp)
    raise TypeError(f"no sample value for field {name!r} of type {tp!r}: extend _sample")


def _build(cls: type) -> Any:
    """Build `cls` with a sample for every field (messages) or every required field (core values)."""
    hints = _hints(cls)
    is_message = issubclass(cls, Message)
    values = {
        f.name: _sample(hints[f.name], f.name)
        for f in dataclasses.fields(cls)
        if f.name not in _IDS
        and (is_message or (f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING))
    }
    return cls(**values)


def _fields(msg: Message) -> dict[str, Any]:
    return {f.name: getattr(msg, f.name) for f in dataclasses.fields(msg) if f.name not in _IDS}


def _message_classes_by_module() -> list[tuple[str, type[Message]]]:
    found = []
    for info in pkgutil.iter_modules(messages.__path__):
        module = importlib.import_module(f"messages.{info.name}")
        for _, obj in inspect.getmembers(module, inspect.isclass):
            if issubclass(obj, Message) and obj.__module__ == module.__name__:
                found.append((module.__name__, obj))
    return found


_type_ids = pytest.mark.parametrize("cls", ALL_TYPES, ids=lambda c: c.__name__)


@_type_ids
def test_message_type_constructs_from_sample_of_every_field(cls: type[Message]) -> None:
    hints = _hints(cls)
    values = {f.name: _sample(hints[f.name], f.name) for f in dataclasses.fields(cls) if f.name not in _IDS}
    msg = cls(**values)
    assert _fields(msg) == values


@_type_ids
def test_message_type_round_trips_through_pickle_and_deepcopy_equal(cls: type[Message]) -> None:
    msg = _build(cls)
    for copied in (pickle.loads(pickle.dumps(msg, protocol=pickle.HIGHEST_PROTOCOL)), copy.deepcopy(msg)):
        assert type(copied) is cls
        assert copied == msg
        assert copied.msg_id == msg.msg_id  # thespian retries with a deepcopy: the id must survive


@_type_ids
def test_message_type_rejects_mutation_with_frozen_instance_error(cls: type[Message]) -> None:
    msg = _build(cls)
    for name in [f.name for f in dataclasses.fields(cls)]:
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(msg, name, getattr(msg, name))
    with pytest.raises((dataclasses.FrozenInstanceError, AttributeError, TypeError)):
        msg.not_a_field = 1  # type: ignore[attr-defined]


@_type_ids
def test_message_type_has_unique_id_and_caused_by_carries_cause_id(cls: type[Message]) -> None:
    root = _build(cls)
    assert root.msg_id and root.cause_id == "" and root.corr_id == ""
    assert root.correlation_id == root.msg_id
    derived = cls.caused_by(root, **_fields(root) | {"ts_ns": 99})
    assert derived.cause_id == root.msg_id
    assert derived.corr_id == root.msg_id
    assert derived.msg_id not in (root.msg_id, "")
    assert derived.ts_ns == 99
    assert _fields(derived) == _fields(root) | {"ts_ns": 99}


@_type_ids
def test_message_type_replace_keeps_id_and_sets_field(cls: type[Message]) -> None:
    msg = _build(cls)
    edited = dataclasses.replace(msg, ts_ns=msg.ts_ns + 1)
    assert type(edited) is cls and edited.msg_id == msg.msg_id and edited.ts_ns == msg.ts_ns + 1


def test_message_class_names_are_unique_across_messages_package() -> None:
    names = [cls.__name__ for _, cls in _message_classes_by_module()]
    assert len(names) == len(set(names)), sorted(n for n in set(names) if names.count(n) > 1)


def test_message_class_names_do_not_shadow_thespian_message_names() -> None:
    # thespian dispatches receiveMsg_<bare class name>: a clash would route its messages to ours.
    thespian_names = {name for name, obj in inspect.getmembers(thespian.actors, inspect.isclass)}
    for info in pkgutil.iter_modules(importlib.import_module("thespian.system.messages").__path__):
        module = importlib.import_module(f"thespian.system.messages.{info.name}")
        thespian_names |= {name for name, obj in inspect.getmembers(module, inspect.isclass)}
    assert thespian_names.isdisjoint(messages.__all__)


def test_every_message_class_of_every_module_is_exported_in_all() -> None:
    defined = _message_classes_by_module()
    assert len(defined) > 60
    for module_name, cls in defined:
        assert cls.__name__ in messages.__all__, f"{module_name}.{cls.__name__} missing from messages.__all__"
        assert getattr(messages, cls.__name__) is cls


def test_all_lists_only_message_types_once_each() -> None:
    assert len(messages.__all__) == len(set(messages.__all__))
    for cls in ALL_TYPES:
        assert isinstance(cls, type) and issubclass(cls, Message), cls
        assert dataclasses.is_dataclass(cls) and "__slots__" in vars(cls)
        assert cls.__dataclass_params__.frozen  # type: ignore[attr-defined]


def test_message_type_finds_class_by_name_and_rejects_unknown_name() -> None:
    assert messages.message_type("OrderDenied") is messages.OrderDenied
    with pytest.raises(KeyError, match="NoSuchThing"):
        messages.message_type("NoSuchThing")


def test_type_names_lists_own_then_message_bases() -> None:
    assert type_names(messages.OrderDenied) == ("OrderDenied", "RiskDecision", "Message")
    assert type_names(messages.OrderStatusChanged) == ("OrderStatusChanged", "OrderEvent", "Message")
    assert type_names(Message) == ("Message",)


def test_caused_by_chain_keeps_root_id_as_correlation_id() -> None:
    signal = messages.PredictionSignal(
        symbol="AAPL", direction=messages.Direction.LONG, confidence=Decimal("0.8"))
    accepted = messages.SignalAccepted.caused_by(signal, signal_id=signal.msg_id, symbol="AAPL")
    ignored = messages.SignalIgnored.caused_by(accepted, signal_id=signal.msg_id, symbol="AAPL")
    assert ignored.cause_id == accepted.msg_id
    assert ignored.corr_id == accepted.corr_id == signal.msg_id == ignored.correlation_id
    assert messages.Message.caused_by(None).cause_id == ""


def test_new_ids_do_not_repeat_within_a_process() -> None:
    ids = [new_id() for _ in range(20_000)]
    assert len(set(ids)) == len(ids)


def _id_in_child(queue: Any) -> None:
    queue.put(new_id())


def test_forked_process_numbers_ids_under_a_fresh_prefix() -> None:
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_id_in_child, args=(queue,))
    child.start()
    try:
        child_id = queue.get(timeout=10)
    finally:
        child.join(timeout=10)
    mine = new_id()
    assert child.exitcode == 0
    assert child_id.rsplit("-", 1)[0] != mine.rsplit("-", 1)[0]


@pytest.fixture
def random_ids_after() -> Any:
    yield
    seed_ids(secrets.token_hex(6))


def test_seed_ids_numbers_messages_reproducibly(random_ids_after: None) -> None:
    runs = []
    for _ in range(2):
        seed_ids("bt")
        runs.append([Message().msg_id for _ in range(3)])
    assert runs[0] == runs[1] == ["bt-1", "bt-2", "bt-3"]


@pytest.mark.parametrize(
    ("quantity", "cost_basis", "state", "last_price", "avg_cost", "unrealized"),
    [
        (Decimal(10), Decimal(1000), PositionState.OPEN, Decimal(105), Decimal(100), Decimal(50)),
        (Decimal(-10), Decimal(-1000), PositionState.OPEN, Decimal(105), Decimal(100), Decimal(-50)),
        (Decimal(10), Decimal(1000), PositionState.OPEN, None, Decimal(100), Decimal(0)),
        (Decimal(0), Decimal(0), PositionState.FLAT, None, Decimal(0), Decimal(0)),
    ],
)
def test_position_changed_of_position_reports_average_cost_and_unrealized_pnl(
    quantity: Decimal, cost_basis: Decimal, state: PositionState, last_price: Decimal | None,
    avg_cost: Decimal, unrealized: Decimal,
) -> None:
    position = Position(symbol="AAPL", quantity=quantity, cost_basis=cost_basis, state=state,
                        last_price=last_price, realized_pnl=Decimal(3), commissions=Decimal("1.5"))
    cause = messages.GetPositions()
    event = messages.PositionChanged.of(position, cause=cause, ts_ns=42)
    assert (event.symbol, event.quantity) == ("AAPL", quantity)
    assert (event.avg_cost, event.unrealized_pnl) == (avg_cost, unrealized)
    assert (event.realized_pnl, event.commissions, event.state, event.last_price) == (
        Decimal(3), Decimal("1.5"), state, last_price)
    assert event.cause_id == cause.msg_id and event.ts_ns == 42


def test_peer_value_round_trips_through_pickle() -> None:
    peer = messages.Peer(name="bus", address=ActorAddress("addr"))
    assert pickle.loads(pickle.dumps(peer)) == peer


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("short", "short"), ("x" * RAW_EXCERPT_CHARS, "x" * RAW_EXCERPT_CHARS),
     ("y" * (RAW_EXCERPT_CHARS + 1), "y" * (RAW_EXCERPT_CHARS - 1) + "…")],
)
def test_excerpt_cuts_long_raw_text_to_limit(raw: str, expected: str) -> None:
    assert excerpt(raw) == expected
    assert len(excerpt(raw)) <= RAW_EXCERPT_CHARS


@pytest.mark.parametrize(
    ("cls", "changes"),
    [(messages.GetStatus, False), (messages.Halt, True), (messages.Shutdown, True),
     (messages.CancelAll, True), (messages.ReloadRules, True), (messages.SetLogLevel, True)],
)
def test_admin_command_says_whether_it_changes_state(cls: type[messages.AdminCommand], changes: bool) -> None:
    assert cls.changes_state is changes


# ---------------------------------------------------------------- property: arbitrary field values


def _strategy(tp: Any) -> st.SearchStrategy[Any]:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        return st.one_of(*[_strategy(a) for a in args])
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return st.lists(_strategy(args[0]), max_size=2).map(tuple)
        return st.tuples(*[_strategy(a) for a in args])
    if origin is frozenset:
        return st.frozensets(_strategy(args[0]), max_size=3)
    if tp is type(None):
        return st.none()
    if tp is bool:
        return st.booleans()
    if tp is int:
        return st.integers(min_value=-(2**63), max_value=2**63 - 1)
    if tp is str:
        return st.text(max_size=20)
    if tp is float:
        return st.floats(allow_nan=False)  # NaN != NaN would fail the round trip, not pickle
    if tp is Path:
        return st.text(max_size=10).map(Path)
    if tp is Decimal:
        return st.decimals(allow_nan=False, allow_infinity=False, places=4)
    if tp is object:
        return st.one_of(st.none(), st.tuples(st.text(max_size=5), st.integers()))
    if tp is ActorAddress:
        return st.text(max_size=8).map(ActorAddress)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return st.sampled_from(tp)
    if dataclasses.is_dataclass(tp):
        hints = _hints(tp)
        return st.builds(tp, **{f.name: _strategy(hints[f.name]) for f in dataclasses.fields(tp)
                                if f.name != "msg_id"})
    raise TypeError(f"no strategy for {tp!r}")


@settings(max_examples=150)
@given(st.sampled_from(ALL_TYPES).flatmap(_strategy))
def test_any_message_with_arbitrary_fields_round_trips_through_pickle(msg: Message) -> None:
    assert pickle.loads(pickle.dumps(msg)) == msg


def test_message_str_is_short_and_repr_stays_complete() -> None:
    # thespian formats str(message) for a debug line on every send and receive.
    msg = messages.QuoteProcessed(symbol="AAPL")
    assert str(msg) == f"QuoteProcessed({msg.msg_id})" == f"{msg}"
    assert "symbol='AAPL'" in repr(msg)
