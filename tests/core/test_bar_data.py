"""Bar files: every bad row is named by file, line and kind; a reader stops at it or skips it."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from core.bar_data import NS, BadBarData, OnBadData, bar_interval_ns, parse_timestamp, read_bars

HEADER = "timestamp,open,high,low,close,volume\n"


def _file(tmp_path: Path, body: str, header: str = HEADER) -> str:
    path = tmp_path / "bars.csv"
    path.write_text(header + body, encoding="utf-8")
    return str(path)


GOOD = ("2024-01-02T09:30:00,100,101,99,100.5,10\n"
        "2024-01-02T09:31:00,100.5,102,100,101,20\n")


def test_a_good_file_reads_in_order_with_new_york_times_and_exact_prices(tmp_path: Path) -> None:
    bars, problems = read_bars(_file(tmp_path, GOOD))
    assert problems == ()
    assert [b.line for b in bars] == [2, 3]
    assert bars[0].ts_ns == parse_timestamp("2024-01-02T09:30:00-05:00")
    assert (bars[0].open, bars[0].high, bars[0].low, bars[0].close, bars[0].volume) == (
        Decimal(100), Decimal(101), Decimal(99), Decimal("100.5"), 10)
    assert bar_interval_ns(bars) == 60 * NS


def test_columns_may_come_in_any_order_and_epoch_seconds_work(tmp_path: Path) -> None:
    path = _file(tmp_path, "7,20,101,99,102,100,1704205800\n", header="Extra,Volume,Close,Low,High,Open,Timestamp\n")
    (bar,), _ = read_bars(path)
    assert (bar.ts_ns, bar.open, bar.close, bar.volume) == (1704205800 * NS, Decimal(100), Decimal(101), 20)


BAD = [  # (row, kind, fragment)
    ("2024-01-02T09:32:00,abc,101,99,100,10", "format", "open 'abc' is not a number"),
    ("2024-01-02T09:32:00,100,101,99", "format", "expected 6 fields, got 4"),
    ("yesterday,100,101,99,100,10", "format", "neither epoch seconds nor ISO 8601"),
    ("2024-01-02T09:32:00,100,101,99,100,1.5", "format", "volume must be a whole number"),
    ("2024-01-02T09:32:00,-100,101,99,100,10", "price", "open must be a positive number"),
    ("2024-01-02T09:32:00,100,98,99,100,10", "range", "high/low do not bound open/close"),
    ("2024-01-02T09:31:00,100,101,99,100,10", "duplicate", "the same as line 3"),
    ("2024-01-02T09:30:30,100,101,99,100,10", "unsorted", "before line 3's"),
]


@pytest.mark.parametrize(("row", "kind", "fragment"), BAD, ids=[b[1] + "-" + str(i) for i, b in enumerate(BAD)])
def test_a_bad_row_stops_the_read_with_file_line_and_kind(tmp_path: Path, row: str, kind: str,
                                                          fragment: str) -> None:
    path = _file(tmp_path, GOOD + row + "\n" + "2024-01-02T09:33:00,100,101,99,100,10\n")
    with pytest.raises(BadBarData) as err:
        read_bars(path)
    problem = err.value.problem
    assert (problem.path, problem.line, problem.kind) == (path, 4, kind)
    assert str(err.value).startswith(f"{path}:4: {kind}: ") and fragment in str(err.value)


def test_skipping_drops_every_bad_row_reports_each_and_keeps_the_good_ones(tmp_path: Path) -> None:
    body = GOOD + "".join(row + "\n" for row, _, _ in BAD) + "2024-01-02T09:40:00,100,101,99,100,10\n"
    bars, problems = read_bars(_file(tmp_path, body), on_bad=OnBadData.SKIP)
    assert [b.line for b in bars] == [2, 3, 4 + len(BAD)]
    assert [(p.line, p.kind) for p in problems] == [(4 + i, kind) for i, (_, kind, _) in enumerate(BAD)]


def test_gaps_inside_a_day_are_reported_when_asked_but_nights_are_not(tmp_path: Path) -> None:
    body = (GOOD
            + "2024-01-02T09:35:00,100,101,99,100,10\n"   # 09:32..09:34 missing
            + "2024-01-03T09:30:00,100,101,99,100,10\n")  # the next morning: not a gap
    path = _file(tmp_path, body)
    assert read_bars(path)[1] == ()  # not asked: nothing to say
    bars, problems = read_bars(path, on_bad=OnBadData.SKIP, gaps=True)
    assert len(bars) == 4  # a gap skips nothing
    assert [(p.line, p.kind) for p in problems] == [(4, "gap")]
    assert "3 bar(s) of 60 s missing after line 3" in problems[0].reason
    with pytest.raises(BadBarData) as err:
        read_bars(path, gaps=True)
    assert (err.value.problem.line, err.value.problem.kind) == (4, "gap")


@pytest.mark.parametrize(("header", "body", "line", "fragment"), [
    ("", "", 1, "header row is required"),
    ("time,open,high,low,close,volume\n", "2024-01-02,1,1,1,1,1\n", 1, "lacks column(s) timestamp"),
    (HEADER, "", 1, "no data rows"),
])
def test_a_file_without_a_header_or_rows_is_refused_on_its_line(tmp_path: Path, header: str, body: str,
                                                                line: int, fragment: str) -> None:
    with pytest.raises(BadBarData) as err:
        read_bars(_file(tmp_path, body, header=header))
    assert err.value.problem.line == line and fragment in str(err.value)


def test_a_missing_file_says_so(tmp_path: Path) -> None:
    with pytest.raises(BadBarData, match="cannot open"):
        read_bars(str(tmp_path / "nope.csv"))
