"""The backtest feed: the simulator's intra-bar path, a closing quote, a fixed merge order."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.backtest_feed import FeedParams, bar_quotes, merged, within
from core.bar_data import NS, FileBar, read_bars
from core.demo_data import write_demo_data
from simulator.market import BarReplayModel, ReplayParams

D = Decimal
MIN = 60 * NS


def _bar(ts: int, o: str, h: str, lo: str, c: str, volume: int = 10, line: int = 2) -> FileBar:
    return FileBar(ts_ns=ts, open=D(o), high=D(h), low=D(lo), close=D(c), volume=volume, line=line)


def test_an_up_bar_walks_open_low_high_close_and_a_down_bar_open_high_low_close() -> None:
    up = list(bar_quotes("X", [_bar(0, "100", "102", "99", "101", volume=10)], MIN))
    assert [q.last for q in up] == [D("100.00"), D("99.00"), D("102.00"), D("101.00"), D("101.00")]
    assert [q.ts_ns for q in up] == [0, 15 * NS, 30 * NS, 45 * NS, 60 * NS]  # then the closing quote
    assert [q.last_size for q in up] == [3, 3, 2, 2, 0] and up[-1].volume == 10
    assert (up[0].bid, up[0].ask, up[0].bid_size) == (D("100.00"), D("100.01"), 500)
    down = list(bar_quotes("X", [_bar(0, "100", "102", "99", "99.50")], MIN))
    assert [q.last for q in down][:4] == [D(100), D(102), D(99), D("99.50")]


def test_cumulative_volume_restarts_each_new_york_day() -> None:
    day1 = 1704205800 * NS  # 2024-01-02 09:30 New York
    bars = [_bar(day1, "1", "1", "1", "1", 8), _bar(day1 + 86_400 * NS, "1", "1", "1", "1", 4)]
    volumes = [q.volume for q in bar_quotes("X", bars, MIN)]
    assert volumes == [2, 4, 6, 8, 1, 2, 3, 4, 4]


def test_the_feed_prices_match_the_simulators_replay_of_the_same_bars(tmp_path: Path) -> None:
    (path,) = write_demo_data(tmp_path, symbols=("AAPL",), days=1)
    bars, _ = read_bars(str(path))
    ours = [q for q in bar_quotes("AAPL", bars[:30], MIN) if q.ts_ns < bars[30].ts_ns]
    model = BarReplayModel("AAPL", path, ReplayParams(quote_interval_ns=MIN // 4))
    state = model.initial_state(bars[0].ts_ns)
    state, theirs = model.step_to(state, bars[30].ts_ns - 1)
    assert [(q.ts_ns, q.last, q.bid, q.ask, q.volume) for q in ours] == \
           [(q.ts_ns, q.last, q.bid, q.ask, q.volume) for q in theirs]


@settings(max_examples=50, deadline=None)
@given(st.dictionaries(st.sampled_from(["AAPL", "MSFT", "SPY", "QQQ"]),
                       st.lists(st.integers(0, 50), min_size=1, max_size=20), min_size=1))
def test_merging_keeps_time_order_and_breaks_ties_by_symbol(starts: dict[str, list[int]]) -> None:
    streams = {s: bar_quotes(s, [_bar(m * MIN, "10", "11", "9", "10") for m in sorted(set(ms))], MIN)
               for s, ms in starts.items()}
    out = [(q.ts_ns, q.symbol) for q in merged(streams)]
    assert out == sorted(out)
    assert len(out) == sum(4 * len(set(ms)) + 1 for ms in starts.values())  # with each closing quote


def test_within_keeps_bars_from_inclusive_to_exclusive() -> None:
    bars = [_bar(m * MIN, "1", "1", "1", "1") for m in range(5)]
    assert [b.ts_ns // MIN for b in within(bars, 1 * MIN, 4 * MIN)] == [1, 2, 3]
    assert len(within(bars)) == 5


def test_bad_feed_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="points must be >= 4"):
        FeedParams(points=3)
    with pytest.raises(ValueError, match="bar_ns must be > 0"):
        list(bar_quotes("X", [_bar(0, "1", "1", "1", "1")], 0))
