"""Signal protocol: prediction signals from the source, and what became of each one."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from enum import Enum
from typing import Final

from messages.base import Message

RAW_EXCERPT_CHARS: Final = 200


class Direction(str, Enum):
    LONG = "LONG"
    SHORT = "SHORT"
    FLAT = "FLAT"  # the source expects no move: close or stay out


def excerpt(raw: str, limit: int = RAW_EXCERPT_CHARS) -> str:
    """Return `raw` cut to `limit` characters (marked with an ellipsis) for a rejection report.

    Control characters come out escaped ("\\n"): a line break from a feed must not start a forged
    line in the logs.
    """
    cut = raw if len(raw) <= limit else raw[: max(limit - 1, 0)] + "…"
    return cut if cut.isprintable() else "".join(c if c.isprintable() else repr(c)[1:-1] for c in cut)


@dataclass(frozen=True, slots=True, kw_only=True)
class PredictionSignal(Message):
    """A validated prediction: `confidence` in [0, 1], valid until `expires_ns` (0 = no expiry).

    `source` names the feed and `source_id` is the feed's own id for the prediction (used to
    drop a prediction delivered twice); `reference_price` is the price it was made at, if given;
    `created_ns` is when the source made it (0 = unknown), `ts_ns` when it was received.
    """

    symbol: str
    direction: Direction
    confidence: Decimal
    horizon_s: int = 0
    expires_ns: int = 0
    source: str = ""
    source_id: str = ""
    reference_price: Decimal | None = None
    created_ns: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class SignalRejected(Message):
    """A prediction that could not be used: malformed, expired, duplicate, unknown symbol…

    `raw` is an excerpt of the offending input (see `excerpt`); `signal_id` is "" when it never
    became a PredictionSignal. `code` is the machine-readable reason (core.signals.Reason's value,
    e.g. "STALE"; "" when the sender has none) and `reason` the human text.
    """

    reason: str
    code: str = ""
    source: str = ""
    source_id: str = ""
    signal_id: str = ""
    symbol: str = ""
    raw: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class SignalAccepted(Message):
    """The strategy controller routed a signal to its symbol actor."""

    signal_id: str
    symbol: str


@dataclass(frozen=True, slots=True, kw_only=True)
class SignalIgnored(Message):
    """A symbol actor evaluated a signal and no rule acted on it (cooldown, no match, quarantine…)."""

    signal_id: str
    symbol: str
    reason: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class ReplaySignals(Message):
    """A backtest's signal lines, due now on its virtual clock: (line number, JSON text) each.

    The signal source judges them as it judges a file's lines, at the clock's time.
    """

    lines: tuple[tuple[int, str], ...]
