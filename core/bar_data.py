"""OHLCV bar files: read and check them, naming the file and line of every problem.

One format for every reader (the simulator's bar replay, backtests): a CSV with a header row naming
timestamp, open, high, low, close, volume (any order, any case, extra columns ignored). A timestamp
is epoch seconds or ISO 8601; ISO without an offset is New York local time, a bare date New York
midnight. Prices are positive decimals, volume a whole number >= 0.

A problem is one of these kinds, each with its file and 1-based line (the header is line 1):

* ``format``    a row that cannot be read (a field missing or not a number, a bad timestamp);
* ``price``     a price that is not positive;
* ``range``     high and low that do not bound open and close (high below low among them);
* ``duplicate`` the timestamp of the previous row again;
* ``unsorted``  a timestamp before the previous row's;
* ``gap``       (only when asked) bars missing inside one New York day: the spacing to the previous
  row is more than the file's bar interval (its smallest spacing) on the same date. Nights and
  weekends are not gaps.

`read_bars` stops at the first problem (``OnBadData.STOP``, raising `BadBarData`), or skips every
bad row and goes on (``OnBadData.SKIP``), returning the problems it skipped or saw (a gap skips
nothing: the bars after it are good).
"""

from __future__ import annotations

import csv
import enum
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Final
from zoneinfo import ZoneInfo

NY: Final = ZoneInfo("America/New_York")
NS: Final = 1_000_000_000
COLUMNS: Final = ("timestamp", "open", "high", "low", "close", "volume")
_DAY_NS: Final = 86_400 * NS


class OnBadData(enum.Enum):
    """What a reader does with a bad row: stop at it (the default) or skip it and go on."""

    STOP = "stop"
    SKIP = "skip"


@dataclass(frozen=True, slots=True, kw_only=True)
class FileBar:
    """One row of a bar file (prices as in the file)."""

    ts_ns: int
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: int
    line: int


@dataclass(frozen=True, slots=True, kw_only=True)
class DataProblem:
    """What is wrong at one line of one file."""

    path: str
    line: int
    kind: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.kind}: {self.reason}"


class BadBarData(ValueError):
    """A bar file that cannot be used as it is; `problem` names the file, line and kind."""

    def __init__(self, problem: DataProblem) -> None:
        self.problem = problem
        super().__init__(str(problem))


def parse_timestamp(text: str) -> int:
    """Return epoch nanoseconds for epoch seconds or ISO 8601 (no offset: New York local time)."""
    s = text.strip()
    try:
        seconds = Decimal(s)
    except InvalidOperation:
        pass
    else:
        if not seconds.is_finite():
            raise ValueError(f"timestamp {text!r} is not a finite number")
        return int((seconds * NS).to_integral_value())
    try:
        dt = datetime.fromisoformat(s)
    except ValueError:
        raise ValueError(f"timestamp {text!r} is neither epoch seconds nor ISO 8601") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=NY)
    whole = int(dt.replace(microsecond=0).timestamp())
    return whole * NS + dt.microsecond * 1000


def _number(text: str, name: str) -> Decimal:
    try:
        value = Decimal(text.strip())
    except InvalidOperation:
        raise ValueError(f"{name} {text!r} is not a number") from None
    if not value.is_finite():
        raise ValueError(f"{name} {text!r} is not a finite number")
    return value


def _volume(text: str) -> int:
    try:
        value = Decimal(text.strip())
    except InvalidOperation:
        raise ValueError(f"volume {text!r} is not a number") from None
    if not value.is_finite() or value < 0 or value != value.to_integral_value():
        raise ValueError(f"volume must be a whole number >= 0, got {text!r}")
    return int(value)


def ny_date(ts_ns: int) -> date:
    """Return the New York calendar date of an epoch-nanosecond time."""
    return datetime.fromtimestamp(ts_ns / NS, NY).date()


def price_ticks(price: Decimal, tick: Decimal) -> int:
    """Return `price` in whole ticks (at least one), rounded half to even."""
    return max(1, int((price / tick).to_integral_value()))


def read_bars(path: str, *, on_bad: OnBadData = OnBadData.STOP,
              gaps: bool = False) -> tuple[tuple[FileBar, ...], tuple[DataProblem, ...]]:
    """Return the good bars of `path` in file order and the problems seen (see the module doc)."""
    try:
        fh = open(path, newline="", encoding="utf-8")
    except OSError as exc:
        raise BadBarData(DataProblem(path=path, line=0, kind="file",
                                     reason=f"cannot open: {exc.strerror or exc}")) from exc
    with fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if header is None:
            raise BadBarData(DataProblem(path=path, line=1, kind="file",
                                         reason="empty file: a header row is required"))
        names = [h.strip().lower() for h in header]
        missing = [c for c in COLUMNS if c not in names]
        if missing:
            raise BadBarData(DataProblem(path=path, line=1, kind="file",
                                         reason=f"header lacks column(s) {', '.join(missing)}; "
                                                f"required: {', '.join(COLUMNS)}"))
        bars, problems = _rows(path, reader, names, on_bad)
        if not bars:
            raise BadBarData(DataProblem(path=path, line=max(reader.line_num, 1), kind="file",
                                         reason="no data rows after the header"))
    if gaps:
        for problem in find_gaps(path, bars):
            if on_bad is OnBadData.STOP:
                raise BadBarData(problem)
            problems.append(problem)
        problems.sort(key=lambda p: p.line)
    return tuple(bars), tuple(problems)


def _rows(path: str, reader: Iterable[list[str]], names: list[str],
          on_bad: OnBadData) -> tuple[list[FileBar], list[DataProblem]]:
    col = {c: names.index(c) for c in COLUMNS}
    bars: list[FileBar] = []
    problems: list[DataProblem] = []
    for fields in reader:
        line = reader.line_num  # type: ignore[attr-defined]
        if not fields or all(not f.strip() for f in fields):
            continue
        try:
            bar = _bar(fields, col, len(names), line, bars[-1] if bars else None)
        except _RowError as exc:
            problem = DataProblem(path=path, line=line, kind=exc.kind, reason=exc.reason)
            if on_bad is OnBadData.STOP:
                raise BadBarData(problem) from None
            problems.append(problem)
            continue
        bars.append(bar)
    return bars, problems


class _RowError(Exception):
    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason


def _bar(fields: list[str], col: dict[str, int], width: int, line: int, previous: FileBar | None) -> FileBar:
    try:
        if len(fields) < width:
            raise ValueError(f"expected {width} fields, got {len(fields)}")
        ts = parse_timestamp(fields[col["timestamp"]])
        o, h, lo, c = (_number(fields[col[k]], k) for k in ("open", "high", "low", "close"))
        volume = _volume(fields[col["volume"]])
    except ValueError as exc:
        raise _RowError("format", str(exc)) from None
    for name, value in (("open", o), ("high", h), ("low", lo), ("close", c)):
        if value <= 0:
            raise _RowError("price", f"{name} must be a positive number, got {fields[col[name]].strip()!r}")
    if h < max(o, c) or lo > min(o, c) or h < lo:
        raise _RowError("range", f"high/low do not bound open/close (open {o}, high {h}, low {lo}, close {c})")
    if previous is not None and ts == previous.ts_ns:
        raise _RowError("duplicate", f"timestamp is not after the previous row's: "
                                     f"the same as line {previous.line}")
    if previous is not None and ts < previous.ts_ns:
        raise _RowError("unsorted", f"timestamp is not after the previous row's: "
                                    f"before line {previous.line}'s")
    return FileBar(ts_ns=ts, open=o, high=h, low=lo, close=c, volume=volume, line=line)


def bar_interval_ns(bars: tuple[FileBar, ...] | list[FileBar]) -> int | None:
    """Return the file's bar interval: its smallest spacing between rows (None for one bar)."""
    spacings = [b.ts_ns - a.ts_ns for a, b in zip(bars, bars[1:])]
    return min(spacings) if spacings else None


def find_gaps(path: str, bars: tuple[FileBar, ...] | list[FileBar]) -> list[DataProblem]:
    """Return a `gap` problem at each row that follows missing bars of the same New York day."""
    interval = bar_interval_ns(bars)
    if interval is None:
        return []
    found: list[DataProblem] = []
    for a, b in zip(bars, bars[1:]):
        spacing = b.ts_ns - a.ts_ns
        if spacing > interval and spacing < _DAY_NS and ny_date(a.ts_ns) == ny_date(b.ts_ns):
            missing = spacing // interval - 1
            found.append(DataProblem(path=path, line=b.line, kind="gap",
                                     reason=f"{missing} bar(s) of {interval / NS:g} s missing after "
                                            f"line {a.line} on the same day"))
    return found
