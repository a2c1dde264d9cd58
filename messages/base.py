"""The message base: a unique id, the id of the causing message, the chain's root id and a clock stamp."""

from __future__ import annotations

import functools
import itertools
import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Self

_prefix: str = ""
_counter: Iterator[int] = itertools.count(1)


def _reseed() -> None:
    # A forked child inherits the parent's prefix and counter; without a fresh prefix both
    # processes would hand out the same ids (thespian's multiproc bases fork every actor).
    global _prefix, _counter
    _prefix = secrets.token_hex(6) + "-"
    _counter = itertools.count(1)


_reseed()
os.register_at_fork(after_in_child=_reseed)


def new_id() -> str:
    """Return an id unique across processes and runs: a random per-process prefix and a counter."""
    return f"{_prefix}{next(_counter)}"


def seed_ids(prefix: str) -> None:
    """Number this process's ids `prefix`-1, `prefix`-2, … so a single-process backtest is reproducible."""
    global _prefix, _counter
    _prefix = f"{prefix}-"
    _counter = itertools.count(1)


@dataclass(frozen=True, slots=True, kw_only=True)
class Message:
    """Base of every message.

    `msg_id` is unique; `cause_id` is the id of the message that caused this one ("" for a root);
    `corr_id` is the id of the chain's root ("" for a root itself), so one value ties a fill back
    to its signal in the logs; `ts_ns` is the sender's clock when it made the message (0 = unset).
    `dataclasses.replace` keeps the id: it edits one message; derive a new one with `caused_by`.
    """

    msg_id: str = field(default_factory=new_id)
    cause_id: str = ""
    corr_id: str = ""
    ts_ns: int = 0

    def __str__(self) -> str:
        # thespian builds str(message) for a debug line on every send and receive, even with
        # debug logging off; the dataclass repr of a large message cost milliseconds there.
        # repr() stays complete.
        return f"{type(self).__name__}({self.msg_id})"

    @property
    def correlation_id(self) -> str:
        """Return the id of the chain's root message (this message's own id for a root)."""
        return self.corr_id or self.msg_id

    @classmethod
    def caused_by(cls, cause: Message | None, /, **fields: Any) -> Self:
        """Return a new `cls` message caused by `cause` (a root when `cause` is None)."""
        if cause is None:
            return cls(**fields)
        return cls(cause_id=cause.msg_id, corr_id=cause.corr_id or cause.msg_id, **fields)


@functools.cache
def type_names(cls: type[Message]) -> tuple[str, ...]:
    """Return the names a bus subscription may use for `cls`: its own, then each Message base's."""
    return tuple(c.__name__ for c in cls.__mro__ if isinstance(c, type) and issubclass(c, Message))
