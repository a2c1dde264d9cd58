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


class ExprError(CoreError, ValueError):
    """An expression is outside the grammar or mistyped; `column` is 1-based (0 = whole text)."""

    def __init__(self, message: str, *, text: str = "", column: int = 0) -> None:
        self.message = message
        self.text = text
        self.column = column
        super().__init__(message)

    def __str__(self) -> str:
        where = f" at column {self.column}" if self.column else ""
        if not self.text:
            return f"{self.message}{where}"
        shown = self.text if len(self.text) <= 200 else self.text[:200] + "…"
        return f"{self.message}{where} in `{shown}`"

    def __reduce__(self) -> tuple[object, ...]:
        # keyword-only fields do not survive the default exception pickling (it replays `args`)
        return type(self), (self.message,), {"text": self.text, "column": self.column}


class InvalidRiskInput(CoreError):
    """A value given to the risk gate's account is unusable (a non-finite quantity, a malformed day)."""


class InvalidAnalyticsInput(CoreError):
    """A value given to the performance analytics is unusable (a non-positive capital, a bad mark)."""
