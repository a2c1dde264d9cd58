"""Pickles that are the same bytes in every run: sets are written sorted.

A frozenset pickles its members in hash order, and str hashes change with PYTHONHASHSEED, which
is random per process by default. Values that reach the journal as pickles (a position's exec ids,
an order's exec ids, a group's cancelled legs) would then make two identical backtests write
different bytes. `canonical_reduce` is a `__reduce__` for frozen dataclasses that writes each
frozenset field as a sorted tuple and restores it as a frozenset, without running `__init__`
(as the default pickling does not).
"""

from __future__ import annotations

from dataclasses import MISSING, fields
from typing import Any


def canonical_reduce(obj: Any) -> tuple[Any, ...]:
    """Return `__reduce__`'s answer for the dataclass `obj`, with frozenset fields in sorted order."""
    names: list[str] = []
    values: list[Any] = []
    sets: list[str] = []
    for f in fields(obj):
        value = getattr(obj, f.name)
        if isinstance(value, frozenset):
            sets.append(f.name)
            try:
                value = tuple(sorted(value))  # str ids: compared in C, no key function per member
            except TypeError:
                value = tuple(sorted(value, key=_order))
        names.append(f.name)
        values.append(value)
    return _rebuild, (type(obj), tuple(names), tuple(values), tuple(sets))


def _order(member: Any) -> tuple[str, Any]:
    # Members of one set are of one type in practice (str ids); the type name keeps mixed sets sortable.
    return (type(member).__name__, member if isinstance(member, (str, int, float)) else repr(member))


def _rebuild(cls: type, names: tuple[str, ...], values: tuple[Any, ...], sets: tuple[str, ...]) -> Any:
    obj = object.__new__(cls)
    for name, value in zip(names, values):
        object.__setattr__(obj, name, frozenset(value) if name in sets else value)
    if len(names) != len(fields(cls)):
        # Pickled before a field was added: the field's default, as the constructor would give it.
        for f in fields(cls):
            if f.name not in names:
                if f.default is not MISSING:
                    object.__setattr__(obj, f.name, f.default)
                elif f.default_factory is not MISSING:
                    object.__setattr__(obj, f.name, f.default_factory())
    return obj
