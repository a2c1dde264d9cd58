"""Admin protocol: commands an operator sends the Supervisor through the admin port, and the replies."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import ClassVar

from messages.base import Message
from messages.connection import ConnectionState
from messages.lifecycle import ActorStatusSnapshot, ChildStatus
from messages.risk import TradingState


class LogLevel(str, Enum):
    TRACE = "TRACE"
    DEBUG = "DEBUG"
    INFO = "INFO"
    SUCCESS = "SUCCESS"
    WARNING = "WARNING"
    ERROR = "ERROR"
    CRITICAL = "CRITICAL"


class AdminErrorCode(str, Enum):
    UNAUTHORIZED = "UNAUTHORIZED"      # missing or wrong token on a command that changes state
    UNKNOWN_TARGET = "UNKNOWN_TARGET"  # no actor, symbol or group by that name
    REFUSED = "REFUSED"                # valid, but not now (e.g. resume while the connection is down)
    FAILED = "FAILED"                  # tried and failed; `text` says why
    MALFORMED = "MALFORMED"            # not an admin command, or one whose fields have the wrong types


# ---------------------------------------------------------------- commands


@dataclass(frozen=True, slots=True, kw_only=True)
class AdminCommand(Message):
    """Base of operator commands; the Supervisor refuses a state-changing one without the admin token."""

    changes_state: ClassVar[bool] = True

    token: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class GetStatus(AdminCommand):
    """Ask for the system's status."""

    changes_state: ClassVar[bool] = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Shutdown(AdminCommand):
    """Stop the whole system cleanly (children in reverse start order)."""

    reason: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class RestartActor(AdminCommand):
    """Stop the actor called `key` and let its supervisor restart it (also lifts a quarantine)."""

    key: str


@dataclass(frozen=True, slots=True, kw_only=True)
class SetLogLevel(AdminCommand):
    """Set the minimum log level of the actor `key` ("" = every actor)."""

    level: LogLevel
    key: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class CancelAll(AdminCommand):
    """Cancel every working order, or those of `symbol`; positions and protective stops of others stay."""

    symbol: str = ""
    reason: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class ReloadRules(AdminCommand):
    """Re-read the rules (from `path`, "" = the configured file); a bad file leaves the old rules running."""

    path: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Halt(AdminCommand):
    """Stop new orders (HALTED), or only new exposure when `reduce_only` (REDUCE_ONLY)."""

    reason: str = ""
    reduce_only: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Resume(AdminCommand):
    """Return to ACTIVE trading."""

    reason: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Flatten(AdminCommand):
    """Cancel entries and close positions at market, of `symbol` or ("" ) of every symbol."""

    symbol: str = ""
    reason: str = ""


class QueryKind(str, Enum):
    POSITIONS = "positions"
    ORDERS = "orders"
    PNL = "pnl"
    SIGNALS = "signals"
    RULES = "rules"


@dataclass(frozen=True, slots=True, kw_only=True)
class AdminQuery(AdminCommand):
    """Ask for one of the operator's tables (of `symbol` only, if given; at most `limit` rows of history)."""

    changes_state: ClassVar[bool] = False

    what: QueryKind
    symbol: str = ""
    limit: int = 50


# ---------------------------------------------------------------- replies


@dataclass(frozen=True, slots=True, kw_only=True)
class AdminTable(Message):
    """The answer to an AdminQuery: a titled table of strings (`columns` name each row's cells) and a summary."""

    title: str
    columns: tuple[str, ...] = ()
    rows: tuple[tuple[str, ...], ...] = ()
    text: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class StatusSnapshot(Message):
    """The answer to GetStatus."""

    trading_state: TradingState
    connection_state: ConnectionState
    actors: tuple[ActorStatusSnapshot, ...] = ()
    quarantined: tuple[str, ...] = ()
    started_ns: int = 0
    text: str = ""
    children: tuple[ChildStatus, ...] = ()  # every supervised actor, sub-supervisors' children too


@dataclass(frozen=True, slots=True, kw_only=True)
class AdminReply(Message):
    """The outcome of an admin command, as text for the operator."""

    ok: bool = True
    text: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class AdminError(Message):
    """An admin command was refused or failed."""

    code: AdminErrorCode
    text: str = ""
    command: str = ""
