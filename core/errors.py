"""Typed errors raised by core/ on invalid input; the actor shell turns expected ones into events."""

from __future__ import annotations


class CoreError(Exception):
    """Base of every error core/ raises on purpose."""


class InvalidOrder(CoreError):
    """An order's fields do not make a valid order (quantity, prices, type, time in force)."""


class InvalidTransition(CoreError):
    """A broker event would move an order through a transition the table forbids."""


class DuplicateExecution(CoreError):
    """An execution id was seen before with different contents (not a harmless repeat)."""


class InvalidExecution(CoreError):
    """An execution does not fit the order or position it is applied to."""


class InvalidGroupEvent(CoreError):
    """An event does not fit the order group it was given to."""


class InvalidPosition(CoreError):
    """A position operation is not valid in the position's current state."""


class ConfigError(CoreError):
    """The configuration is invalid; `problems` lists every offending key path with its reason."""

    def __init__(self, problems: tuple[str, ...] | list[str]) -> None:
        self.problems: tuple[str, ...] = tuple(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"invalid configuration ({len(self.problems)} problem(s)):\n{lines}")


class InvalidConnectionEvent(CoreError):
    """A value given to the connection machine is not one of its events."""
