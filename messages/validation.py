"""Check an admin command from outside the system before anything acts on it: each field has its declared type.

Dataclasses do not check types, and an operator's tool (or anyone who reaches the admin port)
can send a command built with anything in its fields. A malformed command is refused as a whole
and changes nothing.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from enum import Enum
from functools import cache
from typing import Any

from messages.admin import AdminCommand


@cache
def _hints(cls: type) -> dict[str, Any]:
    try:
        return typing.get_type_hints(cls)
    except (NameError, TypeError):  # a hint that names a type only imported for type checking
        return {}


def _accepts(hint: Any, value: object) -> bool:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_accepts(arm, value) for arm in typing.get_args(hint))
    if origin is tuple:
        args = typing.get_args(hint)
        if not isinstance(value, tuple):
            return False
        if len(args) == 2 and args[1] is Ellipsis:
            return all(_accepts(args[0], item) for item in value)
        return len(args) == len(value) and all(_accepts(a, v) for a, v in zip(args, value))
    if origin is typing.ClassVar:
        return True
    if hint is type(None):
        return value is None
    if isinstance(hint, type):
        if hint is int:
            return isinstance(value, int) and not isinstance(value, bool)
        if issubclass(hint, Enum):
            return isinstance(value, hint)
        return isinstance(value, hint)
    return True  # a hint this check does not know: leave it to the handler


def admin_problems(msg: object) -> list[str]:
    """Return what is wrong with `msg` as an admin command ([] = well formed)."""
    if not isinstance(msg, AdminCommand):
        return [f"{type(msg).__name__} is not an admin command"]
    hints = _hints(type(msg))
    problems = []
    for field in dataclasses.fields(msg):
        hint = hints.get(field.name)
        value = getattr(msg, field.name, None)
        if hint is not None and not _accepts(hint, value):
            shown = repr(value)
            shown = shown if len(shown) <= 60 else shown[:60] + "…"
            problems.append(f"{type(msg).__name__}.{field.name} = {shown}: expected {_name(hint)}")
    return problems


def _name(hint: Any) -> str:
    return hint.__name__ if isinstance(hint, type) else str(hint).replace("typing.", "")
