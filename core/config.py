"""The configuration: config.toml validated into frozen dataclasses, every problem reported at once.

The schema is the dataclasses below. Each field's type and its `setting(...)` metadata (range,
pattern, extra check) say what a valid value is; one generic walker turns a parsed TOML dict into
these values and collects every problem (wrong type, out of range, unknown key with the closest
known key, missing required key, failed cross-field check) into one `ConfigError`. Adding a
section means writing one dataclass and one field on `Config`; nothing else changes.

Every key has a default (only a symbol table's `symbol` is required, and a table name supplies
it) and a missing section takes its defaults. So an empty file is a valid configuration: it
trades the three default symbols on the embedded simulator, and nothing can reach a real account
unless `broker.kind = "tws"` is written down.

Relative paths (`system.state_dir`, `system.log_dir`, `signals.file.path`, `bars_csv`) are kept as
written; the runtime interprets them against its working directory. `journal.path` is relative to
`system.state_dir` (see `Config.journal_path`).
"""

from __future__ import annotations

import dataclasses
import difflib
import ipaddress
import json
import math
import re
import tomllib
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from functools import cache
from os import PathLike
from pathlib import Path
from typing import Any, ClassVar, Final
from urllib.parse import parse_qsl, urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from core.errors import ConfigError

# ---------------------------------------------------------------------------------------------
# The field-spec mechanism
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Bad:
    """What a `check` returns for an invalid value; `secret` masks the value in the message."""

    expected: str
    secret: bool = False


Check = Callable[[Any], "Bad | str | None"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Spec:
    """Constraints of one configuration key beyond its type."""

    ge: Any = None
    gt: Any = None
    le: Any = None
    lt: Any = None
    check: Check | None = None   # runs after type and range; returns None when the value is fine
    expect: str = ""             # what a valid value is, instead of the generated description
    key: str = ""                # a collection of tables: the item field its table name fills
    inherit: str = ""            # a collection of tables: the sibling field its items default to
    min_items: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class Rule:
    """A cross-field check: `check(*values)` returns None or what was expected."""

    paths: tuple[str, ...]   # dotted, relative to the dataclass that declares the rule
    check: Callable[..., str | None]


def setting(default: Any = dataclasses.MISSING, *, factory: Callable[[], Any] | None = None,
            ge: Any = None, gt: Any = None, le: Any = None, lt: Any = None,
            check: Check | None = None, expect: str = "", key: str = "", inherit: str = "",
            min_items: int = 0) -> Any:
    """Return a dataclass field whose metadata carries the key's constraints."""
    spec = Spec(ge=ge, gt=gt, le=le, lt=lt, check=check, expect=expect, key=key,
                inherit=inherit, min_items=min_items)
    if factory is not None:
        return field(default_factory=factory, metadata={"spec": spec})
    return field(default=default, metadata={"spec": spec})


_NO_SPEC: Final = Spec()


class _Invalid:
    def __repr__(self) -> str:
        return "<invalid>"


_INVALID: Final = _Invalid()


@dataclass(frozen=True, slots=True)
class _Partial:
    """A section that had problems: the values that did parse, for cross-field checks."""

    values: Mapping[str, Any]


@cache
def _hints(cls: type) -> Mapping[str, Any]:
    return typing.get_type_hints(cls)


def _spec(f: dataclasses.Field[Any]) -> Spec:
    return f.metadata.get("spec", _NO_SPEC)


def _is_section(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _optional_inner(tp: Any) -> Any:
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return None


def _scalar_items(tp: Any) -> Any:
    """Return T for `tuple[T, ...]` of a scalar T (an array of strings, numbers...), else None."""
    if typing.get_origin(tp) is tuple:
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis and not _is_section(args[0]):
            return args[0]
    return None


def _item_type(tp: Any) -> Any:
    if typing.get_origin(tp) is tuple:
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis and _is_section(args[0]):
            return args[0]
    return None


_BARE_KEY: Final = re.compile(r"[A-Za-z0-9_-]+")


def _join(prefix: str, name: str) -> str:
    name = name if _BARE_KEY.fullmatch(name) else json.dumps(name, ensure_ascii=False)
    return f"{prefix}.{name}" if prefix else name


_TOML_KIND: Final[Mapping[type, str]] = {
    bool: "boolean", int: "integer", float: "float", str: "string", list: "array", dict: "table",
}


def _clip(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _mask(value: Any) -> str:
    if not isinstance(value, str):
        return "(hidden)"
    return f'"{value[:3]}…" ({len(value)} characters, hidden)'


def _show(value: Any, *, typed: bool = True) -> str:
    """Render a value the way it reads in the TOML file."""
    if value is None:
        return "(not set)"
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, (str, StrEnum, Path)):
        text = json.dumps(str(value), ensure_ascii=False)
    elif isinstance(value, dict):
        text = "{" + ", ".join(str(k) for k in value) + "}"
    elif isinstance(value, (list, tuple)):
        text = "[" + ", ".join(_show(v, typed=False) for v in value) + "]"
    elif dataclasses.is_dataclass(value) and hasattr(value, "symbol"):
        text = json.dumps(value.symbol)
    else:
        text = str(value)
    text = _clip(text)
    kind = _TOML_KIND.get(type(value))
    return f"{text} ({kind})" if typed and kind else text


def _close(word: str, choices: typing.Iterable[str]) -> str | None:
    choices = list(choices)
    found = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    if not found:
        folded = {c.casefold(): c for c in choices}
        found = difflib.get_close_matches(word.casefold(), list(folded), n=1, cutoff=0.6)
        found = [folded[f] for f in found]
    return found[0] if found else None


def _describe(tp: Any, spec: Spec) -> str:
    """Say in words what a valid value of this type and spec is."""
    if spec.expect:
        return spec.expect
    inner = _optional_inner(tp)
    if inner is not None:
        return _describe(inner, spec)
    scalar = _scalar_items(tp)
    if scalar is not None:
        return f"an array of {_describe(scalar, _NO_SPEC).removeprefix('a ').removeprefix('an ')}s"
    item = _item_type(tp)
    if item is not None:
        text = (f"a table of tables keyed by {spec.key} or an array of tables"
                if spec.key else "an array of tables")
        return text + (f" with at least {spec.min_items} entry" if spec.min_items else "")
    if _is_section(tp):
        return "a table"
    if isinstance(tp, type) and issubclass(tp, StrEnum):
        return "one of " + ", ".join(json.dumps(m.value) for m in tp)
    base = {bool: "true or false", int: "an integer", float: "a number",
            Decimal: "a decimal number", str: "a string", Path: "a non-empty path"}.get(tp, str(tp))
    if spec.ge is not None and spec.le is not None:
        return f"{base} in {str(spec.ge)}..{str(spec.le)}"
    parts = [f"{op} {str(b)}" for op, b in
             ((">", spec.gt), (">=", spec.ge), ("<", spec.lt), ("<=", spec.le)) if b is not None]
    return f"{base} {' and '.join(parts)}" if parts else base


def _coerce(tp: Any, value: Any) -> Any:
    """Convert a TOML value to `tp`, or return _INVALID when its type does not fit."""
    if tp is bool:
        return value if isinstance(value, bool) else _INVALID
    if isinstance(value, bool):  # bool is an int subclass: never a number here
        return _INVALID
    if tp is int:
        return value if isinstance(value, int) else _INVALID
    if tp is float:
        if not isinstance(value, (int, float)):
            return _INVALID
        try:
            number = float(value)  # TOML integers are unbounded: 10**400 overflows
        except OverflowError:
            return _INVALID
        return number if math.isfinite(number) else _INVALID
    if tp is Decimal:
        if isinstance(value, float):
            value = str(value)  # 0.1 stays 0.1, not 0.1000000000000000055511151231257827
        if isinstance(value, (int, str)):
            try:
                number = Decimal(value)
            except InvalidOperation:
                return _INVALID
            return number if number.is_finite() else _INVALID
        return _INVALID
    if tp is str:
        return value if isinstance(value, str) else _INVALID
    if tp is Path:
        return Path(value) if isinstance(value, str) and value.strip() else _INVALID
    if isinstance(tp, type) and issubclass(tp, StrEnum):
        try:
            return tp(value) if isinstance(value, str) else _INVALID
        except ValueError:
            return _INVALID
    raise TypeError(f"core.config has no parser for {tp!r}")


def _in_range(value: Any, spec: Spec) -> bool:
    return ((spec.ge is None or value >= spec.ge) and (spec.gt is None or value > spec.gt)
            and (spec.le is None or value <= spec.le) and (spec.lt is None or value < spec.lt))


class _Walker:
    """Parse a TOML dict against the dataclasses, collecting every problem instead of stopping."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def bad(self, path: str, value: Any, expected: str, *, secret: bool = False) -> _Invalid:
        shown = _mask(value) if secret else _show(value)
        self.problems.append(f"{path} = {shown}: expected {expected}")
        return _INVALID

    def value(self, tp: Any, spec: Spec, raw: Any, path: str, base: Any) -> Any:
        inner = _optional_inner(tp)
        if inner is not None:
            tp = inner
        item = _item_type(tp)
        if item is not None:
            return self.collection(item, spec, raw, path, base)
        if _is_section(tp):
            if not isinstance(raw, dict):
                return self.bad(path, raw, "a table")
            return self.section(tp, raw, path, base)
        scalar = _scalar_items(tp)
        if scalar is not None:
            if not isinstance(raw, list):
                return self.bad(path, raw, _describe(tp, spec))
            items = tuple(self.value(scalar, spec, v, f"{path}[{i}]", None) for i, v in enumerate(raw))
            return _INVALID if any(v is _INVALID for v in items) else items
        value = _coerce(tp, raw)
        if value is _INVALID:
            expected = _describe(tp, spec)
            if isinstance(raw, bool) and tp in (int, float, Decimal):
                expected += " (true/false is not a number)"
            elif isinstance(tp, type) and issubclass(tp, StrEnum) and isinstance(raw, str):
                near = _close(raw, [m.value for m in tp])
                if near:
                    expected += f' (did you mean "{near}"?)'
            return self.bad(path, raw, expected)
        if not _in_range(value, spec):
            return self.bad(path, raw, _describe(tp, spec))
        if spec.check is not None:
            verdict = spec.check(value)
            if isinstance(verdict, Bad):
                return self.bad(path, raw, verdict.expected, secret=verdict.secret)
            if verdict is not None:
                return self.bad(path, raw, spec.expect or verdict)
        return value

    def section(self, cls: type, data: Mapping[str, Any], path: str, base: Any) -> Any:
        """Parse one table into `cls`; keys it does not give come from `base`, then the defaults."""
        before = len(self.problems)
        hints = _hints(cls)
        fields = [f for f in dataclasses.fields(cls) if f.init and f.metadata.get("in_file", True)]
        known = {f.name for f in fields}
        values: dict[str, Any] = {}
        for f in fields:
            spec = _spec(f)
            fpath = _join(path, f.name)
            default = _default_of(f, base)
            if f.name in data:
                # Keys missing from a nested table keep this field's default, not the class's:
                # [supervision.core] with only max_restarts keeps the core window.
                sub_base = default if _is_section(hints[f.name]) else None
                if spec.inherit:
                    sub_base = values.get(spec.inherit)
                    sub_base = None if isinstance(sub_base, (_Invalid, _Partial)) else sub_base
                values[f.name] = self.value(hints[f.name], spec, data[f.name], fpath, sub_base)
            elif default is not dataclasses.MISSING:
                values[f.name] = default
            else:
                self.problems.append(f"{fpath}: missing required key; expected "
                                     f"{_describe(hints[f.name], spec)}")
                values[f.name] = _INVALID
        for name, raw in data.items():
            if name not in known:
                self.unknown(path, name, raw, sorted(known))
        for rule in getattr(cls, "RULES", ()):
            self.rule(rule, values, path)
        if len(self.problems) > before:
            return _Partial(values)
        return cls(**values)

    def collection(self, item: type, spec: Spec, raw: Any, path: str, base: Any) -> Any:
        """Parse an array of tables, or a table of tables whose names fill `spec.key`."""
        if isinstance(raw, list):
            entries = [(f"{path}[{i}]", None, entry) for i, entry in enumerate(raw)]
        elif isinstance(raw, dict) and spec.key:
            entries = [(_join(path, name), name, entry) for name, entry in raw.items()]
        else:
            return self.bad(path, raw, _describe(tuple[item, ...], spec))
        before = len(self.problems)
        items: list[Any] = []
        seen: dict[Any, str] = {}
        for epath, table_name, entry in entries:
            if not isinstance(entry, dict):
                self.bad(epath, entry, "a table")
                continue
            if table_name is not None:
                if spec.key in entry and entry[spec.key] != table_name:
                    self.bad(_join(epath, spec.key), entry[spec.key],
                             f'the table name "{table_name}" (or no {spec.key} key at all)')
                entry = {**entry, spec.key: table_name}
            parsed = self.section(item, entry, epath, base)
            items.append(parsed)
            name = _lookup(parsed, spec.key) if spec.key else _INVALID
            if isinstance(name, _Invalid):
                continue
            if name in seen:
                self.bad(_join(epath, spec.key), name,
                         f"a unique {spec.key}; {_show(name, typed=False)} is already defined "
                         f"at {seen[name]}")
            else:
                seen[name] = epath
        if len(entries) < spec.min_items:
            self.bad(path, raw, _describe(tuple[item, ...], spec))
        if len(self.problems) > before:
            return _INVALID
        return tuple(items)

    def unknown(self, path: str, name: str, raw: Any, known: list[str]) -> None:
        kpath = _join(path, name)
        where = f"[{path}]" if path else "the top level"
        secret = _SECRET_KEY.search(name) is not None
        near = _close(name, known)
        if near:
            hint = f"did you mean {_join(path, near)}?"
        else:
            hint = f"the keys of {where} are: {', '.join(known)}."
        if secret:
            hint += (" Never write secrets in the configuration file: put the secret in an "
                     "environment variable and write the variable's NAME in the configuration "
                     "(e.g. signals.http.auth_env).")
        shown = _mask(raw) if secret else _show(raw)
        self.problems.append(f"{kpath} = {shown}: unknown key; {hint}")

    def rule(self, rule: Rule, values: Mapping[str, Any], path: str) -> None:
        root = _Partial(values)
        got = [_lookup(root, p) for p in rule.paths]
        if any(isinstance(v, (_Invalid, _Partial)) for v in got):
            return  # a problem with an input was already reported
        expected = rule.check(*got)
        if expected is not None:
            shown = ", ".join(f"{path}.{p} = {_show(v, typed=False)}" if path
                              else f"{p} = {_show(v, typed=False)}"
                              for p, v in zip(rule.paths, got))
            self.problems.append(f"{shown}: expected {expected}")


def _default_of(f: dataclasses.Field[Any], base: Any) -> Any:
    if base is not None and hasattr(base, f.name):
        return getattr(base, f.name)
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def _lookup(obj: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        if isinstance(obj, _Partial):
            obj = obj.values.get(part, _INVALID)
        elif isinstance(obj, _Invalid):
            return _INVALID
        else:
            obj = getattr(obj, part, _INVALID)
    return obj


# ---------------------------------------------------------------------------------------------
# Value checks used by the schema
# ---------------------------------------------------------------------------------------------

_SECRET_KEY: Final = re.compile(r"(?i)token|secret|passw|api_?key|credential|bearer|private_?key")
_SYMBOL: Final = re.compile(r"[A-Z0-9][A-Z0-9.\-]{0,11}")
_ENV_NAME: Final = re.compile(r"[A-Z_][A-Z0-9_]{0,127}")
_HEADER_NAME: Final = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~-]{1,64}")
_NAME: Final = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_HOST: Final = re.compile(r"[A-Za-z0-9.:\-\[\]%]{1,253}")
_CURRENCY: Final = re.compile(r"[A-Z]{3}")
_EXCHANGE: Final = re.compile(r"[A-Z0-9.]{1,16}")
_USE_ENV: Final = ("never write secrets in the configuration file: put the secret in an "
                   "environment variable and write the variable's NAME in signals.http.auth_env")


def _pattern(regex: re.Pattern[str], expected: str) -> Check:
    def check(value: str) -> str | None:
        return None if regex.fullmatch(value) else expected
    return check


SYMBOL_EXPECT: Final = "a symbol of 1 to 12 uppercase letters, digits, '.' or '-' (e.g. \"BRK.B\")"


def _timezone(name: str) -> str | None:
    try:
        ZoneInfo(name)
        return None
    except (ZoneInfoNotFoundError, ValueError):
        near = _close(name, available_timezones())
        hint = f' (did you mean "{near}"?)' if near else ""
        return f'an IANA time zone name such as "America/New_York"{hint}'


def _ip_address(text: str) -> str | None:
    try:
        ipaddress.ip_address(text)
        return None
    except ValueError:
        return 'an IP address such as "127.0.0.1" (loopback) or "0.0.0.0" (every interface)'


def _port_or_zero(port: int) -> str | None:
    return None if port == 0 or 1024 <= port <= 65535 else "0 or a port in 1024..65535"


def _divides_day(seconds: int) -> str | None:
    return None if 86400 % seconds == 0 else "a bar length in seconds that divides a day (86400)"


def _env_name(name: str) -> Bad | None:
    # A credential pasted here instead of a variable name: a long run of letters and digits with
    # no underscore (AWS, Stripe and bearer tokens look like that; variable names do not).
    looks_secret = (not _ENV_NAME.fullmatch(name)
                    or (len(name) >= 16 and "_" not in name and re.search(r"\d", name) is not None))
    if not looks_secret:
        return None
    return Bad(expected="the NAME of an environment variable that holds the secret (uppercase "
               f"letters, digits and '_', e.g. \"SIGNAL_API_KEY\"), not the secret; {_USE_ENV}",
               secret=True)


def _header_name(name: str) -> Bad | None:
    if _HEADER_NAME.fullmatch(name):
        return None
    return Bad(expected=f'the NAME of an HTTP header such as "Authorization"; {_USE_ENV}',
               secret=True)


def _http_url(url: str) -> Bad | str | None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return 'an http:// or https:// URL such as "https://signals.example.com/v1/predictions"'
    if parts.username or parts.password or any(_SECRET_KEY.search(k) for k, _ in
                                               parse_qsl(parts.query, keep_blank_values=True)):
        return Bad(expected=f"a URL without credentials in it; {_USE_ENV}", secret=True)
    return None


# ---------------------------------------------------------------------------------------------
# The schema
# ---------------------------------------------------------------------------------------------


class LogLevel(StrEnum):
    TRACE = "TRACE"
    DEBUG = "DEBUG"
    INFO = "INFO"
    SUCCESS = "SUCCESS"
    WARNING = "WARNING"
    ERROR = "ERROR"
    CRITICAL = "CRITICAL"


class ActorBase(StrEnum):
    MULTIPROC_TCP = "multiprocTCPBase"   # one process per actor: isolation, the live default
    SIMPLE = "simpleSystemBase"          # one process, no pickling: backtests and fast tests


class BrokerKind(StrEnum):
    SIMULATOR = "simulator"   # the embedded TWS simulator: no IB account needed
    TWS = "tws"               # a real TWS or IB Gateway at broker.host:broker.port


class Wire(StrEnum):
    PROTOBUF = "protobuf"   # what a current TWS (server version >= 201) speaks
    TEXT = "text"           # the classic NUL-separated text protocol


class ClockMode(StrEnum):
    ACCELERATED = "accelerated"   # market time runs `speed` times faster than the wall clock
    STEPPED = "stepped"           # market time advances only when the driver steps it


class SecType(StrEnum):
    STK = "STK"   # only stocks/ETFs so far: other types need expiry, multiplier, right


class Synchronous(StrEnum):
    NORMAL = "NORMAL"   # WAL + NORMAL: survives a process crash, may lose the last commits on power loss
    FULL = "FULL"       # fsync on every commit: survives power loss


class SignalSourceKind(StrEnum):
    DEMO = "demo"
    HTTP = "http"
    FILE = "file"


class RuleEvent(StrEnum):
    SIGNAL = "signal"   # a prediction signal for the symbol arrived
    BAR = "bar"         # a bar of the symbol closed


class ActionKind(StrEnum):
    OPEN_BRACKET = "open_bracket"      # entry + stop-loss + take-profit, sized by ATR risk or fixed
    OPEN_ORDER = "open_order"          # one order of any supported type
    CLOSE_POSITION = "close_position"  # cancel working groups, then close the position at market
    SCALE_OUT = "scale_out"            # close a fraction (or a quantity) of the position at market
    BREAK_EVEN = "break_even"          # move the protective stop to the entry price (± offset)
    TRAIL_STOP = "trail_stop"          # move the protective stop behind the price; only ever tightens
    CANCEL_ORDERS = "cancel_orders"    # cancel working entries (or every working group)
    LOG = "log"                        # write a line to the symbol's log (a notification)


class SideChoice(StrEnum):
    BUY = "buy"
    SELL = "sell"
    SIGNAL = "signal"   # LONG buys, SHORT sells, FLAT does nothing


class EntryType(StrEnum):
    MARKET = "market"
    LIMIT = "limit"            # at the reference price ∓ limit_offset_ticks (a buy below, a sell above)
    STOP = "stop"              # at the reference price ± stop_offset_ticks (a buy above, a sell below)
    STOP_LIMIT = "stop_limit"  # both


class SymbolStart(StrEnum):
    AT_START = "at_start"    # every configured symbol's actor starts with the system
    ON_SIGNAL = "on_signal"  # a symbol's actor starts with the first signal for it (large universes)


class CancelScope(StrEnum):
    ENTRIES = "entries"   # entry groups only: protective orders of open positions stay
    ALL = "all"           # every working group of the symbol (its position is left unprotected)


_RULE_NAME: Final = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,63}")
_HHMM: Final = re.compile(r"([01][0-9]|2[0-3]):[0-5][0-9]")


@dataclass(frozen=True, slots=True, kw_only=True)
class SystemConfig:
    """The actor system: where it keeps state and logs, how it listens, its exchange time zone."""

    name: str = setting("ibactors", check=_pattern(_NAME, "1 to 64 letters, digits, '_', '.' or '-'"))
    state_dir: Path = setting(Path("var/state"))
    log_dir: Path = setting(Path("logs"))
    log_level: LogLevel = setting(LogLevel.INFO)
    admin_port: int = setting(19471, ge=1024, le=65535)
    bind_address: str = setting("127.0.0.1", check=_ip_address)
    base: ActorBase = setting(ActorBase.MULTIPROC_TCP)
    timezone: str = setting("America/New_York", check=_timezone)
    # The nice value of the symbol and order group actors and their supervisors (the many): 0 runs
    # every actor alike; higher puts the connection and the risk gate, which every order passes, first.
    background_nice: int = setting(19, ge=0, le=19)

    @property
    def zone(self) -> ZoneInfo:
        """Return the exchange time zone."""
        return ZoneInfo(self.timezone)


@dataclass(frozen=True, slots=True, kw_only=True)
class ReconnectConfig:
    """Backoff between reconnect attempts: initial, doubled up to max, each randomized by ±jitter."""

    initial_s: float = setting(1.0, gt=0)
    max_s: float = setting(60.0, gt=0)
    jitter: float = setting(0.2, ge=0, le=1)

    RULES: ClassVar[tuple[Rule, ...]] = (
        Rule(paths=("max_s", "initial_s"),
             check=lambda hi, lo: None if hi >= lo else "max_s >= initial_s"),
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class BrokerConfig:
    """The broker socket: which TWS to reach, heartbeats, reconnects and outbound pacing."""

    kind: BrokerKind = setting(BrokerKind.SIMULATOR)
    host: str = setting("127.0.0.1", check=_pattern(_HOST, "a host name or IP address"))
    port: int = setting(7497, ge=1, le=65535)
    client_id: int = setting(1, ge=0, le=2**31 - 1)
    account: str | None = setting(None, check=_pattern(_NAME, "an IB account id such as \"DU1234567\""))
    connect_timeout_s: float = setting(10.0, gt=0)
    reconnect: ReconnectConfig = setting(factory=ReconnectConfig)
    heartbeat_interval_s: float = setting(10.0, gt=0)
    heartbeat_timeout_s: float = setting(30.0, gt=0)
    # IB's limit is 50 messages/s summed over every message type and every client of one TWS.
    pacing_msgs_per_s: int = setting(45, ge=1, le=50)
    wire: Wire = setting(Wire.PROTOBUF)

    RULES: ClassVar[tuple[Rule, ...]] = (
        Rule(paths=("heartbeat_timeout_s", "heartbeat_interval_s"),
             check=lambda t, i: None if t > i else "heartbeat_timeout_s > heartbeat_interval_s"),
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class PriceModel:
    """The simulator's random walk for one symbol, or replayed bars when `bars_csv` is set."""

    price: Decimal | None = setting(None, gt=0)       # unset: the simulator derives one per symbol
    drift: float = setting(0.0, ge=-10, le=10)        # annualized
    volatility: float = setting(0.25, ge=0, le=10)    # annualized
    spread: Decimal = setting(Decimal("0.02"), ge=0)  # absolute, in price units
    volume: int = setting(10_000, ge=0)               # mean shares per market minute
    bars_csv: Path | None = setting(None)


@dataclass(frozen=True, slots=True, kw_only=True)
class SymbolPriceModel(PriceModel):
    """A `PriceModel` for one named symbol; keys it does not set come from `[simulator.defaults]`."""

    symbol: str = setting(check=_pattern(_SYMBOL, SYMBOL_EXPECT), expect=SYMBOL_EXPECT)


@dataclass(frozen=True, slots=True, kw_only=True)
class SimulatorConfig:
    """The embedded TWS simulator: its port, clock, commissions and per-symbol price models."""

    port: int = setting(0, ge=0, le=65535, check=_port_or_zero,
                        expect="0 (pick a free port) or a port in 1024..65535")
    seed: int = setting(42, ge=0)
    speed: float = setting(1.0, gt=0, le=1_000_000)
    clock: ClockMode = setting(ClockMode.ACCELERATED)
    commission_per_share: Decimal = setting(Decimal("0.005"), ge=0)
    commission_min: Decimal = setting(Decimal("1.00"), ge=0)
    defaults: PriceModel = setting(factory=PriceModel)
    symbols: tuple[SymbolPriceModel, ...] = setting((), key="symbol", inherit="defaults")

    def model_for(self, symbol: str) -> PriceModel:
        """Return the price model of `symbol`: its own table, else the defaults."""
        for model in self.symbols:
            if model.symbol == symbol:
                return model
        return self.defaults


@dataclass(frozen=True, slots=True, kw_only=True)
class RestartBudget:
    """At most `max_restarts` restarts within `window_s` seconds; one more and the supervisor gives up."""

    max_restarts: int = setting(3, ge=0, le=1000)
    window_s: float = setting(60.0, gt=0)


@dataclass(frozen=True, slots=True, kw_only=True)
class SupervisionConfig:
    """Restart budgets: a spent symbol budget quarantines the symbol, a spent core budget halts trading."""

    symbol: RestartBudget = setting(factory=lambda: RestartBudget(max_restarts=5, window_s=60.0))
    order_group: RestartBudget = setting(factory=lambda: RestartBudget(max_restarts=3, window_s=60.0))
    core: RestartBudget = setting(factory=lambda: RestartBudget(max_restarts=2, window_s=60.0))


@dataclass(frozen=True, slots=True, kw_only=True)
class SymbolConfig:
    """One traded instrument as IB knows it."""

    symbol: str = setting(check=_pattern(_SYMBOL, SYMBOL_EXPECT), expect=SYMBOL_EXPECT)
    exchange: str = setting("SMART", check=_pattern(_EXCHANGE, 'an IB exchange code such as "SMART"'))
    # With SMART routing IB may answer "ambiguous contract" (error 200) for a symbol listed on
    # several venues; the primary exchange (e.g. "NASDAQ") disambiguates it.
    primary_exchange: str | None = setting(
        None, check=_pattern(_EXCHANGE, 'an IB exchange code such as "NASDAQ"'))
    currency: str = setting("USD", check=_pattern(_CURRENCY, 'a 3-letter currency code such as "USD"'))
    sec_type: SecType = setting(SecType.STK)
    tick_size: Decimal = setting(Decimal("0.01"), gt=0)
    lot_size: int = setting(1, ge=1)


def _default_symbols() -> tuple[SymbolConfig, ...]:
    return (SymbolConfig(symbol="AAPL", primary_exchange="NASDAQ"),
            SymbolConfig(symbol="MSFT", primary_exchange="NASDAQ"),
            SymbolConfig(symbol="SPY", primary_exchange="ARCA"))


@dataclass(frozen=True, slots=True, kw_only=True)
class MarketDataConfig:
    """How quotes become decisions: delivery to symbol actors, bar length, warm-up, stale-data detection."""

    bar_seconds: int = setting(5, ge=1, le=86_400, check=_divides_day)
    warmup_bars: int = setting(50, ge=0, le=100_000)
    stale_after_s: float = setting(30.0, gt=0)
    # Quotes reach symbol actors as loopback UDP datagrams (actors/quote_channel.py): a thespian
    # message costs ~0.7 ms of CPU at each end, a datagram ~0.06 ms. False: thespian messages.
    quote_channel: bool = setting(True)


@dataclass(frozen=True, slots=True, kw_only=True)
class RiskConfig:
    """Pre-trade limits every order intent must pass; money in account currency."""

    max_order_quantity: Decimal = setting(Decimal(500), gt=0)
    max_order_notional: Decimal = setting(Decimal(60_000), gt=0)
    price_collar_pct: Decimal = setting(Decimal(5), gt=0, le=100)
    max_position_per_symbol: Decimal = setting(Decimal(1_000), gt=0)
    max_gross_exposure: Decimal = setting(Decimal(250_000), gt=0)
    max_net_exposure: Decimal = setting(Decimal(150_000), gt=0)
    # IB allows at most 20 active orders per contract and side; this caps all symbols together.
    max_open_orders: int = setting(50, ge=1)
    max_orders_per_minute: int = setting(60, ge=1)
    daily_loss_limit: Decimal = setting(Decimal(5_000), gt=0)
    reduce_only_at_pct: Decimal = setting(Decimal(80), ge=0, le=100)


@dataclass(frozen=True, slots=True, kw_only=True)
class JournalConfig:
    """The SQLite journal (WAL): the durable record that every restart rebuilds state from."""

    path: Path = setting(Path("journal.sqlite"))
    synchronous: Synchronous = setting(Synchronous.FULL)


@dataclass(frozen=True, slots=True, kw_only=True)
class DemoSignalsConfig:
    """A seeded generator of random prediction signals, for trying the system out."""

    seed: int = setting(7, ge=0)
    interval_s: float = setting(5.0, gt=0)


@dataclass(frozen=True, slots=True, kw_only=True)
class HttpSignalsConfig:
    """A prediction API polled over HTTP; its credential comes from an environment variable."""

    url: str | None = setting(None, check=_http_url)
    poll_interval_s: float = setting(5.0, gt=0)
    timeout_s: float = setting(5.0, gt=0)
    auth_header: str = setting("Authorization", check=_header_name)
    auth_env: str | None = setting(None, check=_env_name)


@dataclass(frozen=True, slots=True, kw_only=True)
class FileSignalsConfig:
    """Signals replayed from a JSON-lines file; `follow` keeps reading as lines are appended."""

    path: Path | None = setting(None)
    follow: bool = setting(False)


@dataclass(frozen=True, slots=True, kw_only=True)
class SignalsConfig:
    """Where prediction signals come from; signals older than `max_age_s` are rejected."""

    source: SignalSourceKind = setting(SignalSourceKind.DEMO)
    max_age_s: float = setting(60.0, gt=0)
    demo: DemoSignalsConfig = setting(factory=DemoSignalsConfig)
    http: HttpSignalsConfig = setting(factory=HttpSignalsConfig)
    file: FileSignalsConfig = setting(factory=FileSignalsConfig)

    RULES: ClassVar[tuple[Rule, ...]] = (
        Rule(paths=("source", "http.url"),
             check=lambda s, u: None if s is not SignalSourceKind.HTTP or u is not None
             else 'signals.http.url to be set when source = "http"'),
        Rule(paths=("source", "file.path"),
             check=lambda s, p: None if s is not SignalSourceKind.FILE or p is not None
             else 'signals.file.path to be set when source = "file"'),
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class StrategyConfig:
    """How the rules run: the regular session (exchange time) and reload behaviour."""

    first_match_only: bool = setting(False)   # stop at the first rule that fires, whatever its `final`
    session_open: str = setting("09:30", check=_pattern(_HHMM, 'a time "HH:MM" (24-hour, exchange time)'))
    session_close: str = setting("16:00", check=_pattern(_HHMM, 'a time "HH:MM" (24-hour, exchange time)'))
    watch_config: bool = setting(True)        # reload the rules when the configuration file changes
    start_symbols: SymbolStart = setting(SymbolStart.AT_START)

    RULES: ClassVar[tuple[Rule, ...]] = (
        Rule(paths=("session_open", "session_close"),
             check=lambda o, c: None if o < c else "session_open before session_close"),
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class ActionConfig:
    """What a rule does when it fires; which keys apply depends on `type` (core/rules.py checks them)."""

    type: ActionKind = setting(expect="one of " + ", ".join(f'"{k.value}"' for k in ActionKind))
    side: SideChoice = setting(SideChoice.SIGNAL)
    entry: EntryType = setting(EntryType.MARKET)
    quantity: Decimal | None = setting(None, gt=0)        # a fixed size, instead of risk sizing
    risk: Decimal | None = setting(None, gt=0)            # money lost at the stop: sizes the order
    atr_period: int = setting(14, ge=1, le=10_000)
    stop_atr: Decimal | None = setting(None, gt=0)        # stop distance in ATRs
    target_atr: Decimal | None = setting(None, gt=0)      # take-profit distance in ATRs
    max_quantity: Decimal = setting(Decimal(100), gt=0)   # cap on a risk-sized order
    limit_offset_ticks: int = setting(0, ge=0, le=100_000)
    stop_offset_ticks: int = setting(0, ge=0, le=100_000)
    tif: str = setting("DAY", check=_pattern(re.compile(r"DAY|GTC|IOC"), '"DAY", "GTC" or "IOC"'))
    fraction: Decimal | None = setting(None, gt=0, le=1)  # scale_out: part of the position
    offset_ticks: int = setting(0, ge=-100_000, le=100_000)  # break_even: ticks beyond the entry
    trail_atr: Decimal | None = setting(None, gt=0)       # trail_stop: distance in ATRs...
    trail_amount: Decimal | None = setting(None, gt=0)    # ...or in price units
    scope: CancelScope = setting(CancelScope.ENTRIES)
    message: str = setting("")
    level: LogLevel = setting(LogLevel.INFO)


@dataclass(frozen=True, slots=True, kw_only=True)
class RuleConfig:
    """One trading rule: when it is evaluated, its condition, its limits and its action."""

    name: str = setting(check=_pattern(_RULE_NAME, "a rule name: a letter, then up to 63 letters, "
                                                    "digits, '_', '.' or '-'"))
    on: RuleEvent = setting(RuleEvent.SIGNAL)
    when: str = setting("true")                 # an expression (see core/expr.py)
    all: tuple[str, ...] = setting(())          # more conditions, every one must hold
    any: tuple[str, ...] = setting(())          # more conditions, at least one must hold (if any)
    priority: int = setting(0, ge=-1_000_000, le=1_000_000)   # higher runs first
    cooldown_s: float = setting(0.0, ge=0)      # per symbol: no second fire within this long
    max_fires_per_day: int = setting(0, ge=0)   # per symbol and exchange day; 0 = no limit
    final: bool = setting(False)                # when it fires, lower-priority rules do not run
    symbols: tuple[str, ...] = setting((), check=_pattern(_SYMBOL, SYMBOL_EXPECT))  # () = every symbol
    enabled: bool = setting(True)
    action: ActionConfig = setting(expect="a table with at least a type")


@dataclass(frozen=True, slots=True, kw_only=True)
class MonitoringConfig:
    """Metrics export."""

    prometheus_port: int = setting(0, ge=0, le=65535, check=_port_or_zero,
                                   expect="0 (off) or a port in 1024..65535")


NODE_EXPECT: Final = "a node name: 1 to 64 letters, digits, '_', '.' or '-'"
_ANY_SYMBOL: Final = "*"


def _symbol_or_any(name: str) -> str | None:
    if name == _ANY_SYMBOL or _SYMBOL.fullmatch(name):
        return None
    return f'"*" (every traded symbol) or {SYMBOL_EXPECT}'


def _admits(symbols: tuple[str, ...], symbol: str) -> bool:
    return _ANY_SYMBOL in symbols or symbol in symbols


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeConfig:
    """A member node: an actor system on host:admin_port that joins the leader and runs symbol actors.

    `symbols` are the symbols it may run ("*" = any traded symbol); `max_symbols` caps how many
    it is given (0 = no cap).
    """

    name: str = setting(check=_pattern(_NAME, NODE_EXPECT), expect=NODE_EXPECT)
    host: str = setting("127.0.0.1", check=_ip_address)
    admin_port: int = setting(ge=1024, le=65535)
    symbols: tuple[str, ...] = setting((_ANY_SYMBOL,), check=_symbol_or_any)
    max_symbols: int = setting(0, ge=0, le=100_000)

    def admits(self, symbol: str) -> bool:
        """Return True if this node may run `symbol`."""
        return _admits(self.symbols, symbol)

    def __str__(self) -> str:
        return self.name  # how a problem message shows it


def _distinct_addresses(nodes: tuple[NodeConfig, ...]) -> str | None:
    seen: dict[tuple[str, int], str] = {}
    for node in nodes:
        other = seen.setdefault((node.host, node.admin_port), node.name)
        if other != node.name:
            return f"a host and admin_port of their own for each node ({other} and {node.name} share " \
                   f"{node.host}:{node.admin_port})"
    return None


@dataclass(frozen=True, slots=True, kw_only=True)
class ClusterConfig:
    """Several nodes: symbol actors placed on member actor systems that join this one (the leader).

    The leader is the system `bootstrap.py run` starts (system.bind_address:system.admin_port):
    it keeps the broker connection, risk, journal writers and order groups. Each `[cluster.nodes.<name>]`
    is a member started with `bootstrap.py node --name <name>`. A symbol goes to the first live node,
    the leader first, that admits it and has room; when none does, to the leader. Members
    re-register with the leader every `heartbeat_s`; one silent for `missed_heartbeats` of them is
    dead, and its symbols restart elsewhere from the journal. No nodes: one node, as without this table.
    """

    name: str = setting("main", check=_pattern(_NAME, NODE_EXPECT), expect=NODE_EXPECT)
    symbols: tuple[str, ...] = setting((_ANY_SYMBOL,), check=_symbol_or_any)
    max_symbols: int = setting(0, ge=0, le=100_000)
    heartbeat_s: float = setting(1.0, ge=0.1, le=600)
    missed_heartbeats: int = setting(3, ge=2, le=100)
    join_wait_s: float = setting(10.0, ge=0, le=600)
    start_timeout_s: float = setting(10.0, gt=0, le=600)
    nodes: tuple[NodeConfig, ...] = setting((), key="name")

    RULES: ClassVar[tuple[Rule, ...]] = (
        Rule(paths=("name", "nodes"),
             check=lambda leader, nodes: None if all(n.name != leader for n in nodes)
             else f"member names other than the leader's own (cluster.name = {json.dumps(leader)})"),
        Rule(paths=("nodes",), check=_distinct_addresses),
    )

    @property
    def active(self) -> bool:
        """Return True when member nodes are configured (symbol actors may run elsewhere)."""
        return bool(self.nodes)

    @property
    def dead_after_s(self) -> float:
        """Return how long a silent member lives on before it is declared dead."""
        return self.heartbeat_s * self.missed_heartbeats

    def leader_admits(self, symbol: str) -> bool:
        """Return True if the leader's own list admits `symbol` (it takes any as a last resort)."""
        return _admits(self.symbols, symbol)

    def node(self, name: str) -> NodeConfig:
        """Return the member called `name`; KeyError if none is configured."""
        for node in self.nodes:
            if node.name == name:
                return node
        raise KeyError(name)


def _distinct_ports(a: int, b: int) -> str | None:
    return None if a == 0 or a != b else "different ports (each listener needs its own)"


def _cluster_symbols_are_traded(nodes: tuple[NodeConfig, ...], leader: tuple[str, ...],
                                traded: tuple[SymbolConfig, ...]) -> str | None:
    names = [s.symbol for s in traded]
    lists = [("cluster.symbols", leader)] + [(f"cluster.nodes.{n.name}.symbols", n.symbols) for n in nodes]
    stray = [f"{where}: {s}" + (f" (did you mean {near}?)" if (near := _close(s, names)) else "")
             for where, symbols in lists for s in symbols if s != _ANY_SYMBOL and s not in names]
    return None if not stray else "node symbol lists naming traded symbols only; not in [symbols]: " + \
        ", ".join(stray)


def _leader_reachable(nodes: tuple[NodeConfig, ...], bind_address: str, admin_port: int) -> str | None:
    for node in nodes:
        if (node.host, node.admin_port) == (bind_address, admin_port):
            return f"cluster.nodes.{node.name} on another address than the leader's own " \
                   f"(system.bind_address:system.admin_port = {bind_address}:{admin_port})"
        if not ipaddress.ip_address(node.host).is_loopback and ipaddress.ip_address(bind_address).is_loopback:
            return f"system.bind_address that cluster.nodes.{node.name} on {node.host} can reach: the " \
                   "leader listens on loopback only (set the address of this machine on the nodes' network)"
    return None


def _simulated_are_traded(simulated: tuple[SymbolPriceModel, ...],
                          traded: tuple[SymbolConfig, ...]) -> str | None:
    names = [s.symbol for s in traded]
    stray = [m.symbol for m in simulated if m.symbol not in names]
    if not stray:
        return None
    hints = [f"{s} (did you mean {near}?)" if (near := _close(s, names)) else s for s in stray]
    return ("every [simulator.symbols.<SYM>] to name a traded symbol; not in [symbols]: "
            + ", ".join(hints))


@dataclass(frozen=True, slots=True, kw_only=True)
class Config:
    """The whole configuration."""

    system: SystemConfig = setting(factory=SystemConfig)
    broker: BrokerConfig = setting(factory=BrokerConfig)
    simulator: SimulatorConfig = setting(factory=SimulatorConfig)
    supervision: SupervisionConfig = setting(factory=SupervisionConfig)
    symbols: tuple[SymbolConfig, ...] = setting(factory=_default_symbols, key="symbol", min_items=1)
    market_data: MarketDataConfig = setting(factory=MarketDataConfig)
    risk: RiskConfig = setting(factory=RiskConfig)
    journal: JournalConfig = setting(factory=JournalConfig)
    signals: SignalsConfig = setting(factory=SignalsConfig)
    strategy: StrategyConfig = setting(factory=StrategyConfig)
    rules: tuple[RuleConfig, ...] = setting((), key="name")
    monitoring: MonitoringConfig = setting(factory=MonitoringConfig)
    cluster: ClusterConfig = setting(factory=ClusterConfig)
    source: str = field(default="<defaults>", metadata={"in_file": False})

    RULES: ClassVar[tuple[Rule, ...]] = (
        Rule(paths=("simulator.port", "system.admin_port"), check=_distinct_ports),
        Rule(paths=("monitoring.prometheus_port", "system.admin_port"), check=_distinct_ports),
        Rule(paths=("monitoring.prometheus_port", "simulator.port"), check=_distinct_ports),
        Rule(paths=("simulator.symbols", "symbols"), check=_simulated_are_traded),
        Rule(paths=("cluster.nodes", "cluster.symbols", "symbols"), check=_cluster_symbols_are_traded),
        Rule(paths=("cluster.nodes", "system.bind_address", "system.admin_port"), check=_leader_reachable),
    )

    @property
    def journal_path(self) -> Path:
        """Return the journal file: `journal.path` under `system.state_dir` unless absolute."""
        return self.system.state_dir / self.journal.path

    @property
    def symbol_names(self) -> tuple[str, ...]:
        """Return the traded symbols in configuration order."""
        return tuple(s.symbol for s in self.symbols)

    def symbol(self, name: str) -> SymbolConfig:
        """Return the configuration of one traded symbol; KeyError if it is not traded."""
        for s in self.symbols:
            if s.symbol == name:
                return s
        raise KeyError(name)


# ---------------------------------------------------------------------------------------------
# Entry points
# ---------------------------------------------------------------------------------------------


def parse_config(data: Mapping[str, Any], source: str = "<dict>") -> Config:
    """Validate an already-parsed TOML document; raise ConfigError listing every problem."""
    walker = _Walker()
    parsed = walker.section(Config, dict(data), "", None)
    if walker.problems:
        raise ConfigError(walker.problems)
    from core.rules import rule_problems  # the rules' expressions need the parsed symbols
    problems = rule_problems(parsed)
    if problems:
        raise ConfigError(problems)
    return dataclasses.replace(parsed, source=source)


def loads_config(text: str, source: str = "<string>") -> Config:
    """Parse and validate TOML text; a syntax error becomes a ConfigError with its line and column."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{source}: invalid TOML: {exc}"]) from None
    return parse_config(data, source)


def load_config(path: str | PathLike[str]) -> Config:
    """Read, parse and validate a configuration file."""
    source = str(path)
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError([f"{source}: cannot read the configuration file: "
                           f"{exc.strerror or exc}"]) from None
    try:
        text = raw.decode("utf-8-sig")  # TOML is UTF-8; tolerate the BOM some editors write
    except UnicodeDecodeError as exc:
        raise ConfigError([f"{source}: not UTF-8 text (byte {exc.start}): TOML files must be "
                           "UTF-8"]) from None
    return loads_config(text, source)
