"""Prediction-signal intake: raw input from a source becomes a PredictionSignal or a Rejection with its reason.

The contract a prediction source must meet. A signal is a JSON object with these keys (any other
key is ignored):

==================  =========  ==============================================================
key                 required   value
==================  =========  ==============================================================
``symbol``          yes        a traded symbol; case-insensitive (``"aapl"`` is AAPL)
``direction``       yes        ``"LONG"``, ``"SHORT"`` or ``"FLAT"``, case-insensitive; also
                               ``"bullish"``/``"bearish"``/``"neutral"``, ``"buy"``/``"sell"``,
                               ``"up"``/``"down"``
``confidence``      yes        a number in [0, 1] (``true``/``false`` are not numbers)
``id``              yes        a string or integer: the source's own id for the prediction; a
                               second delivery of the same id is rejected as a duplicate
``ts``              no         when the source made it: epoch seconds (a number) or an ISO-8601
                               string with a UTC offset (``"2024-05-01T14:30:00Z"``); missing =
                               when it arrived. Older than ``max_age_s`` is stale; more than
                               ``FUTURE_SKEW_S`` ahead of our clock is rejected.
``horizon_s``       no         an integer >= 0: seconds the prediction is about
``expires``         no         epoch seconds or ISO-8601 with offset; otherwise ``ts +
                               horizon_s`` when ``horizon_s`` > 0; otherwise it never expires
``reference_price`` no         a finite number > 0: the price the prediction was made at
==================  =========  ==============================================================

Numbers are kept as Decimal from the JSON text (never through a binary float); ``NaN`` and
``Infinity`` are rejected as bad values of the field that holds them.

An HTTP endpoint answers with either a JSON list of signal objects or an object
``{"signals": [...], "cursor": "<opaque>"}``; the cursor is sent back as the ``cursor`` query
parameter of the next request, so the endpoint can return only what is new. A JSON-lines file
holds one signal object per line. Each signal is judged on its own: one bad item never spoils
the others.
"""

from __future__ import annotations

import json
import random
from collections.abc import Collection, Container, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal
from enum import Enum
from typing import Any, Final

from core.errors import ConfigError
from messages.signals import Direction, PredictionSignal, excerpt

NS_PER_S: Final = 1_000_000_000
FUTURE_SKEW_S: Final = 5         # clocks disagree a little: a signal this far ahead is still "now"
MAX_EPOCH_S: Final = 10**11      # beyond year 5000: a timestamp in milliseconds or nanoseconds
MAX_HORIZON_S: Final = 366 * 24 * 3600
MAX_ID_CHARS: Final = 200
SEEN_LIMIT: Final = 10_000       # accepted (source, id) pairs remembered for de-duplication
DEMO_HORIZON_S: Final = 300

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=timezone.utc)
_CONFIDENCE: Final = "a number in [0, 1]"
_TIME: Final = 'epoch seconds or an ISO-8601 time with a UTC offset (e.g. "2024-05-01T14:30:00Z")'
_ID: Final = f"a non-empty string or integer of at most {MAX_ID_CHARS} characters"
_PAYLOAD: Final = 'a JSON list of signals or an object {"signals": [...], "cursor": "..."}'
_SYMBOLS_SHOWN: Final = 8

# Every spelling a source may use for a direction, upper-cased.
DIRECTION_WORDS: Final = {
    "LONG": Direction.LONG, "BULLISH": Direction.LONG, "BUY": Direction.LONG, "UP": Direction.LONG,
    "SHORT": Direction.SHORT, "BEARISH": Direction.SHORT, "SELL": Direction.SHORT, "DOWN": Direction.SHORT,
    "FLAT": Direction.FLAT, "NEUTRAL": Direction.FLAT,
}
_DIRECTION: Final = 'one of "LONG", "SHORT", "FLAT" (or bullish/bearish/neutral, buy/sell, up/down)'


class Reason(str, Enum):
    """Why a signal was rejected."""

    MALFORMED = "MALFORMED"            # not JSON, not an object, a body of the wrong shape
    MISSING_FIELD = "MISSING_FIELD"
    WRONG_TYPE = "WRONG_TYPE"
    BAD_VALUE = "BAD_VALUE"            # NaN/inf, out of range, unknown direction word, bad time
    UNKNOWN_SYMBOL = "UNKNOWN_SYMBOL"  # well-formed, but the symbol is not traded
    STALE = "STALE"                    # made more than max_age_s ago
    EXPIRED = "EXPIRED"                # its own expiry has passed
    DUPLICATE = "DUPLICATE"            # this (source, id) was accepted before
    FUTURE = "FUTURE"                  # made more than FUTURE_SKEW_S ahead of our clock


@dataclass(frozen=True, slots=True, kw_only=True)
class Rejection:
    """A signal that cannot be used; `text` names the field and what was expected."""

    reason: Reason
    text: str
    source: str = ""
    source_id: str = ""
    symbol: str = ""
    raw: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Payload:
    """An HTTP body taken apart: the signal items (not yet judged) and the cursor it gave (None = keep)."""

    items: tuple[object, ...] = ()
    cursor: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Line:
    """One non-empty line of a JSON-lines file, with its 1-based number."""

    number: int
    data: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class Chunk:
    """Complete lines split off the front of some bytes: `consumed` bytes are done with."""

    lines: tuple[Line, ...] = ()
    consumed: int = 0
    next_line: int = 1


def _seen(keys: tuple[tuple[str, str], ...], limit: int) -> Seen:
    return Seen(keys=keys, limit=limit)


@dataclass(frozen=True, slots=True, kw_only=True)
class Seen:
    """The (source, id) pairs of the last `limit` accepted signals, oldest first; adding returns a new value."""

    keys: tuple[tuple[str, str], ...] = ()
    limit: int = SEEN_LIMIT
    _members: frozenset[tuple[str, str]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.limit < 1:
            raise ConfigError([f"seen ids limit = {self.limit}: expected at least 1"])
        keys = self.keys[-self.limit:]
        object.__setattr__(self, "keys", keys)
        object.__setattr__(self, "_members", frozenset(keys))

    def __contains__(self, key: object) -> bool:
        return key in self._members

    def __len__(self) -> int:
        return len(self.keys)

    def __reduce__(self) -> tuple[Any, ...]:
        # the member set is derived: pickling only the ordered keys halves the snapshot
        return _seen, (self.keys, self.limit)

    def add_all(self, keys: Iterable[tuple[str, str]]) -> Seen:
        """Return this value with `keys` added as the newest (already known ones are not repeated)."""
        fresh: list[tuple[str, str]] = []
        known = set(self._members)
        for key in keys:
            if key not in known:
                known.add(key)
                fresh.append(key)
        if not fresh:
            return self
        return Seen(keys=self.keys + tuple(fresh), limit=self.limit)


class _Invalid(Exception):
    """A field check failed (private: normalize turns it into a Rejection)."""

    def __init__(self, reason: Reason, text: str) -> None:
        super().__init__(text)
        self.reason = reason
        self.text = text


def _reject_constant(text: str) -> Decimal:
    # NaN / Infinity / -Infinity are not JSON; keep them as non-finite Decimals so the field
    # that holds one is named in the rejection (BAD_VALUE), and an ignored key stays harmless.
    return Decimal(text)


def _loads(text: str | bytes) -> Any:
    if isinstance(text, bytes):
        # The contract is UTF-8 (a BOM tolerated); json.loads would also guess UTF-16 and UTF-32.
        text = text.decode("utf-8-sig")
    return json.loads(text, parse_float=Decimal, parse_constant=_reject_constant)


def _show(value: object) -> str:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    try:
        shown = json.dumps(value, default=str, ensure_ascii=False)
    except (TypeError, ValueError, RecursionError):
        shown = repr(value)
    return excerpt(shown, 60)


def raw_excerpt(raw: object) -> str:
    """Return a short text of `raw` for a rejection report."""
    if isinstance(raw, (bytes, bytearray)):
        return excerpt(bytes(raw[:1024]).decode("utf-8", errors="replace"))
    if isinstance(raw, str):
        return excerpt(raw)
    try:
        return excerpt(json.dumps(raw, default=str, ensure_ascii=False))
    except (TypeError, ValueError, RecursionError):
        return excerpt(repr(raw))


def _kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float, Decimal)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _number(obj: dict[Any, Any], name: str, expected: str) -> Decimal | None:
    """Return the field as a Decimal (None when absent or null); raise _Invalid unless a number."""
    value = obj.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, Decimal)):
        raise _Invalid(Reason.WRONG_TYPE, f"{name} = {_show(value)}: expected {expected}, not {_kind(value)}")
    number = value if isinstance(value, Decimal) else Decimal(repr(value) if isinstance(value, float) else value)
    if not number.is_finite():
        raise _Invalid(Reason.BAD_VALUE, f"{name} = {_show(value)}: expected {expected} (a finite number)")
    return number


def _required(obj: dict[Any, Any], name: str, expected: str) -> object:
    if obj.get(name) is None:
        raise _Invalid(Reason.MISSING_FIELD, f"{name} is missing: expected {expected}")
    return obj[name]


def _time_ns(obj: dict[Any, Any], name: str) -> int | None:
    value = obj.get(name)
    if value is None:
        return None
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.strip())
        except ValueError:
            raise _Invalid(Reason.BAD_VALUE, f"{name} = {_show(value)}: expected {_TIME}") from None
        if moment.tzinfo is None:
            raise _Invalid(Reason.BAD_VALUE, f"{name} = {_show(value)}: expected {_TIME}; "
                                             "this one has no UTC offset") from None
        delta = moment - _EPOCH
        seconds = Decimal(delta.days * 86_400 + delta.seconds) + Decimal(delta.microseconds).scaleb(-6)
    else:
        number = _number(obj, name, _TIME)
        assert number is not None
        seconds = number
    if not 0 <= seconds < MAX_EPOCH_S:
        hint = " (milliseconds? send seconds)" if seconds >= MAX_EPOCH_S else ""
        raise _Invalid(Reason.BAD_VALUE, f"{name} = {_show(value)}: expected {_TIME} between 1970 "
                                         f"and year 5000{hint}")
    return int(seconds.scaleb(9))


def _symbol(obj: dict[Any, Any], symbols: Collection[str]) -> str:
    value = _required(obj, "symbol", "a traded symbol")
    if not isinstance(value, str):
        raise _Invalid(Reason.WRONG_TYPE, f"symbol = {_show(value)}: expected a string, not {_kind(value)}")
    symbol = value.strip().upper()
    if not symbol:
        raise _Invalid(Reason.BAD_VALUE, 'symbol = "": expected a traded symbol')
    return symbol


def _source_id(obj: dict[Any, Any]) -> str:
    value = _required(obj, "id", _ID)
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise _Invalid(Reason.WRONG_TYPE, f"id = {_show(value)}: expected {_ID}, not {_kind(value)}")
    if isinstance(value, int):
        if abs(value) >= 10**MAX_ID_CHARS:
            raise _Invalid(Reason.BAD_VALUE, f"id = {_show(value)}: expected {_ID}")
        return str(value)
    text = value.strip()
    if not text or len(text) > MAX_ID_CHARS:
        raise _Invalid(Reason.BAD_VALUE, f"id = {_show(value)}: expected {_ID}")
    if not text.isprintable():  # a line break in an id would forge lines wherever the id is logged
        raise _Invalid(Reason.BAD_VALUE, f"id = {_show(value)}: expected {_ID}, without control characters")
    return text


def _direction(obj: dict[Any, Any]) -> Direction:
    value = _required(obj, "direction", _DIRECTION)
    if not isinstance(value, str):
        raise _Invalid(Reason.WRONG_TYPE, f"direction = {_show(value)}: expected {_DIRECTION}, "
                                          f"not {_kind(value)}")
    direction = DIRECTION_WORDS.get(value.strip().upper())
    if direction is None:
        raise _Invalid(Reason.BAD_VALUE, f"direction = {_show(value)}: expected {_DIRECTION}")
    return direction


def _confidence(obj: dict[Any, Any]) -> Decimal:
    _required(obj, "confidence", _CONFIDENCE)
    value = _number(obj, "confidence", _CONFIDENCE)
    assert value is not None
    if not 0 <= value <= 1:
        raise _Invalid(Reason.BAD_VALUE, f"confidence = {_show(obj['confidence'])}: expected {_CONFIDENCE}")
    return value


def _horizon(obj: dict[Any, Any]) -> int:
    expected = f"an integer number of seconds in [0, {MAX_HORIZON_S}]"
    value = _number(obj, "horizon_s", expected)
    if value is None:
        return 0
    if value != value.to_integral_value():
        raise _Invalid(Reason.WRONG_TYPE, f"horizon_s = {_show(obj['horizon_s'])}: expected {expected}")
    if not 0 <= value <= MAX_HORIZON_S:
        raise _Invalid(Reason.BAD_VALUE, f"horizon_s = {_show(obj['horizon_s'])}: expected {expected}")
    return int(value)


def _reference_price(obj: dict[Any, Any]) -> Decimal | None:
    expected = "a price > 0"
    value = _number(obj, "reference_price", expected)
    if value is not None and value <= 0:
        raise _Invalid(Reason.BAD_VALUE, f"reference_price = {_show(obj['reference_price'])}: expected {expected}")
    return value


def _known_symbols(symbols: Collection[str]) -> str:
    names = sorted(symbols)
    shown = ", ".join(names[:_SYMBOLS_SHOWN])
    return shown + (f", … ({len(names)} in all)" if len(names) > _SYMBOLS_SHOWN else "")


def _when(ns: int) -> str:
    seconds = ns / NS_PER_S
    return f"{seconds:.0f} s" if abs(seconds) >= 10 else f"{seconds:.1f} s"


def normalize(obj: object, *, source: str, symbols: Collection[str], now_ns: int, max_age_s: float,
              seen: Container[tuple[str, str]] = frozenset(), where: str = "") -> PredictionSignal | Rejection:
    """Return the PredictionSignal that `obj` (JSON text or a parsed object) describes, or why it cannot be one.

    `seen` holds the (source, id) pairs accepted before; `where` ("line 7") prefixes a rejection's text.
    """
    prefix = f"{where}: " if where else ""
    fields: dict[str, str] = {}

    def reject(reason: Reason, text: str) -> Rejection:
        return Rejection(reason=reason, text=prefix + text, source=source, source_id=fields.get("id", ""),
                         symbol=fields.get("symbol", ""), raw=raw_excerpt(obj))

    parsed = obj
    if isinstance(obj, (str, bytes, bytearray)):
        try:
            parsed = _loads(bytes(obj) if isinstance(obj, bytearray) else obj)
        except UnicodeDecodeError:
            return reject(Reason.MALFORMED, "not UTF-8 text: expected a JSON object")
        except RecursionError:
            return reject(Reason.MALFORMED, "nested too deeply: expected a JSON object")
        except ValueError as exc:
            return reject(Reason.MALFORMED, f"not JSON ({exc}): expected a JSON object")
    if not isinstance(parsed, dict):
        return reject(Reason.MALFORMED, f"{_kind(parsed)}: expected a JSON object (one signal)")
    try:
        fields["id"] = _source_id(parsed)
        fields["symbol"] = symbol = _symbol(parsed, symbols)
        direction = _direction(parsed)
        confidence = _confidence(parsed)
        horizon_s = _horizon(parsed)
        reference_price = _reference_price(parsed)
        created = _time_ns(parsed, "ts")
        expires = _time_ns(parsed, "expires")
    except _Invalid as bad:
        return reject(bad.reason, bad.text)
    if symbol not in symbols:
        return reject(Reason.UNKNOWN_SYMBOL, f"symbol = {_show(parsed['symbol'])}: expected a traded symbol "
                                             f"({_known_symbols(symbols)})")
    source_id = fields["id"]
    if (source, source_id) in seen:
        return reject(Reason.DUPLICATE, f"id = {_show(parsed['id'])}: already received from {source}; "
                                        "expected each prediction once")
    created_ns = now_ns if created is None else created
    if expires is None:
        expires = created_ns + horizon_s * NS_PER_S if horizon_s > 0 else 0
    elif created is not None and expires <= created:
        return reject(Reason.BAD_VALUE, f"expires = {_show(parsed['expires'])}: expected a time after ts")
    if created_ns > now_ns + FUTURE_SKEW_S * NS_PER_S:
        return reject(Reason.FUTURE, f"ts = {_show(parsed['ts'])}: {_when(created_ns - now_ns)} in the future; "
                                     f"expected at most {FUTURE_SKEW_S} s ahead of our clock")
    if expires and expires <= now_ns:
        return reject(Reason.EXPIRED, f"expires {_when(now_ns - expires)} ago: expected a signal still valid")
    age_ns = now_ns - created_ns
    if age_ns > max_age_s * NS_PER_S:
        return reject(Reason.STALE, f"ts = {_show(parsed['ts'])}: made {_when(age_ns)} ago; expected at most "
                                    f"{max_age_s:g} s (signals.max_age_s)")
    return PredictionSignal(symbol=symbol, direction=direction, confidence=confidence, horizon_s=horizon_s,
                            expires_ns=expires, source=source, source_id=source_id,
                            reference_price=reference_price, created_ns=created_ns, ts_ns=now_ns)


class _Both:
    __slots__ = ("first", "second")

    def __init__(self, first: Container[tuple[str, str]], second: Container[tuple[str, str]]) -> None:
        self.first = first
        self.second = second

    def __contains__(self, key: object) -> bool:
        return key in self.first or key in self.second


def intake(items: Iterable[tuple[str, object]], seen: Seen, *, source: str, symbols: Collection[str],
           now_ns: int, max_age_s: float) -> tuple[Seen, tuple[PredictionSignal | Rejection, ...]]:
    """Judge each (where, raw) item on its own; return `seen` with the accepted ids added, and the results in order.

    An id repeated within the batch is a duplicate like one accepted before.
    """
    fresh: set[tuple[str, str]] = set()
    order: list[tuple[str, str]] = []
    both = _Both(seen, fresh)
    results: list[PredictionSignal | Rejection] = []
    for where, raw in items:
        result = normalize(raw, source=source, symbols=symbols, now_ns=now_ns, max_age_s=max_age_s,
                           seen=both, where=where)
        if isinstance(result, PredictionSignal):
            key = (source, result.source_id)
            fresh.add(key)
            order.append(key)
        results.append(result)
    return seen.add_all(order), tuple(results)


def parse_payload(body: bytes) -> Payload | Rejection:
    """Return the items and cursor of an HTTP body, or a MALFORMED rejection of the whole body."""

    def malformed(text: str) -> Rejection:
        return Rejection(reason=Reason.MALFORMED, text=text, raw=raw_excerpt(body))

    if not body.strip():
        return Payload()
    try:
        data = _loads(body)
    except UnicodeDecodeError:
        return malformed(f"body is not UTF-8 text: expected {_PAYLOAD}")
    except RecursionError:
        return malformed(f"body nested too deeply: expected {_PAYLOAD}")
    except ValueError as exc:
        return malformed(f"body is not JSON ({exc}): expected {_PAYLOAD}")
    if isinstance(data, list):
        return Payload(items=tuple(data))
    if not isinstance(data, dict):
        return malformed(f"body is {_kind(data)}: expected {_PAYLOAD}")
    signals = data.get("signals")
    if not isinstance(signals, list):
        what = "missing" if signals is None else f"{_show(signals)}, {_kind(signals)}"
        return malformed(f"body.signals is {what}: expected {_PAYLOAD}")
    cursor = data.get("cursor")
    if cursor is None:
        return Payload(items=tuple(signals))
    if isinstance(cursor, bool) or not isinstance(cursor, (str, int)):
        return malformed(f"body.cursor = {_show(cursor)}: expected a string")
    return Payload(items=tuple(signals), cursor=str(cursor))


def line_time_ns(text: bytes | str) -> int | None:
    """Return the `ts` of one JSON signal line, or None when it has no readable one (it is judged anyway)."""
    try:
        obj = json.loads(text)
        return _time_ns(obj, "ts") if isinstance(obj, dict) else None
    except (ValueError, _Invalid, TypeError):
        return None


def parse_lines(data: bytes | str, *, first_line: int = 1, limit: int | None = None,
                final: bool = False) -> Chunk:
    """Split complete lines off the front of `data` (at most `limit` non-empty ones), numbered from `first_line`.

    A last line without its newline is left unread (it may still be being written) unless `final`.
    Empty lines are skipped but counted.
    """
    raw = data.encode("utf-8") if isinstance(data, str) else data
    lines: list[Line] = []
    number = first_line
    pos = 0
    while pos < len(raw) and (limit is None or len(lines) < limit):
        end = raw.find(b"\n", pos)
        if end < 0:
            if not final:
                break
            end = len(raw)
        content = raw[pos:end]
        if content.strip():
            lines.append(Line(number=number, data=content))
        number += 1
        pos = min(end + 1, len(raw))
    return Chunk(lines=tuple(lines), consumed=pos, next_line=number)


def demo_signal(seed: int, n: int, symbols: Sequence[str], now_ns: int) -> PredictionSignal:
    """Return the `n`-th demo signal of `seed`: the same (seed, n) always gives the same prediction."""
    if not symbols:
        raise ConfigError(["symbols = []: demo signals need at least one traded symbol"])
    rng = random.Random(f"{seed}:{n}")
    symbol = rng.choice(symbols)
    roll = rng.random()
    direction = Direction.LONG if roll < 0.45 else Direction.SHORT if roll < 0.80 else Direction.FLAT
    confidence = Decimal(rng.randint(50, 95)).scaleb(-2)
    return PredictionSignal(symbol=symbol, direction=direction, confidence=confidence, horizon_s=DEMO_HORIZON_S,
                            expires_ns=now_ns + DEMO_HORIZON_S * NS_PER_S, source="demo",
                            source_id=f"demo-{n}", created_ns=now_ns, ts_ns=now_ns)

