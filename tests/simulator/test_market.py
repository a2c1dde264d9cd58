"""Tests for simulator.market: clocks, random-walk and replay streams, IB history strings, 5 s bars."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from datetime import datetime
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from core.types import Quote
from simulator.market import (
    DEFAULT_MARKET_START_NS,
    NS,
    NY,
    AcceleratedClock,
    BarReplayModel,
    HistoricalRequestError,
    MarketDataError,
    RandomWalkModel,
    RealTimeBarAggregator,
    ReplayFileError,
    ReplayParams,
    SteppedClock,
    WalkParams,
    historical_bars,
    ny_ns,
    parse_bar_size,
    parse_duration,
    symbol_key,
)

D = Decimal
T0 = DEFAULT_MARKET_START_NS
STEP = 250_000_000
REPO = Path(__file__).resolve().parents[2]


def stream(model: RandomWalkModel | BarReplayModel, start_ns: int | None, end_ns: int) -> list[Quote]:
    """Return every quote from `start_ns` to `end_ns` in one call."""
    return list(model.step_to(model.initial_state(start_ns), end_ns)[1])


def ohlcv(quotes: list[Quote], price: str = "last") -> tuple[Decimal, Decimal, Decimal, Decimal, Decimal]:
    """Return (open, high, low, close, volume) of the quotes' prices, computed from scratch."""
    if price == "mid":
        prices = [(q.bid + q.ask) / 2 for q in quotes]
    else:
        prices = [getattr(q, price) for q in quotes]
    return prices[0], max(prices), min(prices), prices[-1], sum((q.last_size for q in quotes), D(0))


def bucket(quotes: list[Quote], size_ns: int) -> dict[int, list[Quote]]:
    out: dict[int, list[Quote]] = {}
    for q in quotes:
        out.setdefault(q.ts_ns - q.ts_ns % size_ns, []).append(q)
    return out


# ---------------------------------------------------------------------------------- clocks


def test_default_market_start_is_0930_new_york() -> None:
    dt = datetime.fromtimestamp(T0 / NS, NY)
    assert (dt.hour, dt.minute, dt.second, dt.weekday()) == (9, 30, 0, 1)


@pytest.mark.parametrize(
    ("advances", "expected_ns"),
    [
        ((), 0),
        ((1,), NS),
        ((0.25, 0.25), 500_000_000),
        ((D("0.1"),) * 10, NS),
        ((0,), 0),
        ((3600,), 3600 * NS),
    ],
)
def test_stepped_clock_advance_moves_time_exactly(advances: tuple, expected_ns: int) -> None:
    clock = SteppedClock(start_ns=T0)
    for a in advances:
        clock.advance(a)
    assert clock.now_ns() == T0 + expected_ns


def test_stepped_clock_advance_negative_raises() -> None:
    with pytest.raises(MarketDataError):
        SteppedClock().advance(-1)


@pytest.mark.parametrize(
    ("speed", "wall", "expected_ns"),
    [
        (1.0, 100.0, T0),
        (1.0, 101.0, T0 + NS),
        (60.0, 101.0, T0 + 60 * NS),
        (60.0, 100.5, T0 + 30 * NS),
        (0.5, 104.0, T0 + 2 * NS),
    ],
)
def test_accelerated_clock_maps_wall_time_to_market_time(speed: float, wall: float, expected_ns: int) -> None:
    clock = AcceleratedClock(speed, T0, wall0=100.0)
    assert clock.market_ns_at(wall) == expected_ns
    assert clock.wall_at(expected_ns) == pytest.approx(wall)


def test_accelerated_clock_now_reads_injected_wall() -> None:
    walls = iter([10.0, 12.0])
    clock = AcceleratedClock(10.0, T0, wall=lambda: next(walls))  # anchors wall0 at 10.0
    assert clock.now_ns() == T0 + 20 * NS


@pytest.mark.parametrize("speed", [0.0, -1.0, math.inf, math.nan])
def test_accelerated_clock_non_positive_speed_raises(speed: float) -> None:
    with pytest.raises(MarketDataError):
        AcceleratedClock(speed, T0, wall0=0.0)


# ---------------------------------------------------------------------------------- random walk

WALK = RandomWalkModel("AAPL", WalkParams(start_price=D("100.00")), seed=42)
REF_END = T0 + 120 * NS
REF = stream(WALK, None, REF_END)


def test_walk_same_seed_gives_same_quotes_from_a_fresh_model() -> None:
    again = RandomWalkModel("AAPL", WalkParams(start_price=D("100.00")), seed=42)
    assert stream(again, None, REF_END) == REF
    assert len(REF) == 481


@pytest.mark.parametrize(("symbol", "seed"), [("AAPL", 43), ("MSFT", 42)])
def test_walk_other_seed_or_symbol_gives_other_quotes(symbol: str, seed: int) -> None:
    other = RandomWalkModel(symbol, WalkParams(start_price=D("100.00")), seed=seed)
    quotes = stream(other, None, REF_END)
    assert [q.last for q in quotes] != [q.last for q in REF]


@given(cuts=st.lists(st.integers(min_value=0, max_value=120 * NS), max_size=12))
@settings(max_examples=60)
def test_walk_quotes_do_not_depend_on_how_time_is_chunked(cuts: list[int]) -> None:
    model = RandomWalkModel("AAPL", WalkParams(start_price=D("100.00")), seed=42)
    state = model.initial_state()
    got: list[Quote] = []
    for cut in [*sorted(cuts), 120 * NS]:
        state, quotes = model.step_to(state, T0 + cut)
        got.extend(quotes)
    assert got == REF


@pytest.mark.parametrize("boundary_s", [1024, -1024, 4096 * 1024])  # fine block, before origin, superblock
def test_walk_is_continuous_and_chunk_free_across_block_boundaries(boundary_s: int) -> None:
    model = RandomWalkModel("AAPL", WalkParams(start_price=D("100.00")), seed=42)
    lo, hi = T0 + (boundary_s - 20) * NS, T0 + (boundary_s + 20) * NS
    whole = stream(model, lo, hi)
    state, got = model.initial_state(lo), []
    for cut in (boundary_s - 7, boundary_s, boundary_s + 0.25, boundary_s + 13):
        state, quotes = model.step_to(state, T0 + int(cut * NS) - 1)
        got.extend(quotes)
    got.extend(model.step_to(state, hi)[1])
    assert got == whole and len(whole) == 161
    assert max(abs(b.last - a.last) for a, b in zip(whole, whole[1:])) <= D("0.05")


def test_walk_symbol_key_and_stream_do_not_depend_on_python_hash_seed() -> None:
    code = ("from simulator.market import *; m = RandomWalkModel('AAPL', seed=42);"
            "s, q = m.step_to(m.initial_state(), DEFAULT_MARKET_START_NS + 10 * 10**9);"
            "print(symbol_key('AAPL'), [str(x.last) for x in q])")
    env = {**os.environ, "PYTHONHASHSEED": "12345", "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=REPO, capture_output=True,
                         text=True, timeout=60, check=True).stdout.split(" ", 1)
    model = RandomWalkModel("AAPL", seed=42)
    _, quotes = model.step_to(model.initial_state(), T0 + 10 * NS)
    assert int(out[0]) == symbol_key("AAPL")
    assert out[1].strip() == str([str(q.last) for q in quotes])


def test_walk_quotes_are_on_the_tick_grid_with_a_consistent_book() -> None:
    assert REF[0].last == D("100.00") and REF[0].ts_ns == T0
    for i, q in enumerate(REF):
        assert q.ts_ns == T0 + i * STEP
        assert q.symbol == "AAPL"
        assert q.bid > 0 and q.ask - q.bid == D("0.01")
        assert q.bid <= q.last <= q.ask
        for px in (q.bid, q.ask, q.last):
            assert px == px.quantize(D("0.01"))
        assert q.bid_size > 0 and q.ask_size > 0 and q.last_size > 0
        assert q.bid_size % 100 == 0 and q.last_size % 100 == 0


def test_walk_cumulative_volume_adds_each_trade() -> None:
    for prev, q in zip(REF, REF[1:]):
        assert q.volume == prev.volume + q.last_size


def test_walk_volume_resets_at_new_york_midnight() -> None:
    midnight = ny_ns(2024, 1, 3)
    quotes = stream(WALK, midnight - 2 * NS, midnight + 2 * NS)
    before = [q for q in quotes if q.ts_ns < midnight]
    after = [q for q in quotes if q.ts_ns >= midnight]
    assert after[0].volume == after[0].last_size
    assert before[-1].volume > 1_000_000


def test_walk_initial_state_counts_the_days_volume_before_it() -> None:
    midnight = ny_ns(2024, 1, 2)
    early = stream(WALK, midnight, T0 - 1)
    assert WALK.initial_state(T0).day_volume == early[-1].volume
    assert REF[0].volume == early[-1].volume + REF[0].last_size


def test_walk_starting_mid_stream_joins_the_reference() -> None:
    later = stream(WALK, T0 + 30 * NS + 1, REF_END)
    assert later == REF[120:]


def test_walk_step_to_an_earlier_time_emits_nothing() -> None:
    state, quotes = WALK.step_to(WALK.initial_state(), T0 + 10 * NS)
    assert WALK.step_to(state, T0 + 5 * NS) == (state, ())


@pytest.mark.parametrize("limit", [0, 1, 7, 481, 1000])
def test_walk_max_quotes_keeps_only_the_latest_with_true_volume(limit: int) -> None:
    state, quotes = WALK.step_to(WALK.initial_state(), REF_END, max_quotes=limit)
    assert list(quotes) == (REF[-limit:] if limit else [])
    assert state.day_volume == REF[-1].volume


def test_walk_skip_to_then_step_to_resumes_the_same_stream() -> None:
    state = WALK.skip_to(WALK.initial_state(), T0 + 60 * NS)
    _, quotes = WALK.step_to(state, REF_END)
    assert list(quotes) == REF[241:]


def test_walk_prices_stay_positive_under_extreme_volatility() -> None:
    model = RandomWalkModel("PENNY", WalkParams(start_price=D("0.02"), volatility=50.0), seed=1)
    quotes = stream(model, None, T0 + 600 * NS)
    assert min(q.bid for q in quotes) >= D("0.01")
    assert min(q.last for q in quotes) >= D("0.01")
    assert len({q.last for q in quotes}) > 1


@pytest.mark.parametrize("volatility", [1e4, 1e6])
def test_walk_absurd_volatility_stays_within_int64_ticks(volatility: float) -> None:
    model = RandomWalkModel("WILD", WalkParams(start_price=D("50"), volatility=volatility), seed=2)
    quotes = stream(model, None, T0 + 60 * NS)
    assert all(D("0.01") <= q.last <= D("1e13") for q in quotes)
    bars = historical_bars(model, "WILD", T0, "1 Y", "1 day")
    assert all(D("0.01") <= b.low <= b.high <= D("1e13") for b in bars)


def test_walk_default_start_price_is_derived_from_the_symbol() -> None:
    a, b = RandomWalkModel("AAPL"), RandomWalkModel("MSFT")
    assert D(10) <= a.start_price < D(500) and a.start_price != b.start_price
    assert RandomWalkModel("AAPL").start_price == a.start_price


def _log_return_std(closes: list[Decimal]) -> float:
    r = [math.log(b / a) for a, b in zip(closes, closes[1:])]
    mean = sum(r) / len(r)
    return math.sqrt(sum((x - mean) ** 2 for x in r) / (len(r) - 1))


@pytest.mark.parametrize(
    ("duration", "bar_size", "bar_seconds"),
    [("1 D", "1 min", 60), ("2 Y", "1 day", 86_400)],
)
def test_walk_realised_volatility_matches_the_annualised_parameter(
        duration: str, bar_size: str, bar_seconds: int) -> None:
    model = RandomWalkModel("VOL", WalkParams(start_price=D("1000.00"), volatility=0.3), seed=3)
    bars = historical_bars(model, "VOL", T0, duration, bar_size)
    expected = 0.3 * math.sqrt(bar_seconds / (365.25 * 86_400))
    assert _log_return_std([b.close for b in bars]) == pytest.approx(expected, rel=0.2)


@pytest.mark.parametrize(
    "params",
    [WalkParams(spread_ticks=0), WalkParams(tick=D(0)), WalkParams(volatility=-1.0),
     WalkParams(quote_interval_ns=0), WalkParams(start_price=D("-1")), WalkParams(max_trade_lots=0)],
)
def test_walk_invalid_params_raise(params: WalkParams) -> None:
    with pytest.raises(MarketDataError):
        RandomWalkModel("X", params)


# ---------------------------------------------------------------------------------- history strings


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("60 S", 60), ("1 D", 86_400), ("30 D", 30 * 86_400), ("1 W", 7 * 86_400),
     ("1 M", 30 * 86_400), ("1 Y", 365 * 86_400), ("20 Y", 20 * 365 * 86_400)],
)
def test_parse_duration_valid_strings(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    "text", ["", "60", "60S", "60 s", "S 60", "0 D", "-1 D", "1.5 D", "1 X", " 1 D", "1 D ", "1  D"],
)
def test_parse_duration_invalid_string_raises_321(text: str) -> None:
    with pytest.raises(HistoricalRequestError) as err:
        parse_duration(text)
    assert err.value.code == 321
    assert "duration" in err.value.message and repr(text) in err.value.message


def test_parse_duration_beyond_twenty_years_raises_162() -> None:
    with pytest.raises(HistoricalRequestError) as err:
        parse_duration("21 Y")
    assert err.value.code == 162 and "Time length exceed max" in err.value.message


@pytest.mark.parametrize(
    ("text", "unit", "seconds"),
    [("1 secs", "fixed", 1), ("5 secs", "fixed", 5), ("30 secs", "fixed", 30),
     ("1 min", "fixed", 60), ("5 mins", "fixed", 300), ("20 mins", "fixed", 1200),
     ("1 hour", "fixed", 3600), ("8 hours", "fixed", 28_800), ("1 day", "day", 86_400),
     ("1W", "week", 604_800), ("1 week", "week", 604_800), ("1M", "month", 2_592_000)],
)
def test_parse_bar_size_valid_strings(text: str, unit: str, seconds: int) -> None:
    spec = parse_bar_size(text)
    assert (spec.text, spec.unit, spec.seconds) == (text, unit, seconds)


@pytest.mark.parametrize(
    "text", ["1 sec", "1 mins", "2 min", "1 hours", "1 d", "1 Day", "5 seconds", "", "7 mins", "1D"],
)
def test_parse_bar_size_invalid_string_raises_321_listing_legal_ones(text: str) -> None:
    with pytest.raises(HistoricalRequestError) as err:
        parse_bar_size(text)
    assert err.value.code == 321
    assert "bar size setting is invalid. Legal ones are: 1 secs, 5 secs" in err.value.message


@pytest.mark.parametrize(("duration", "bar_size"), [("3 D", "1 secs"), ("1 M", "1 min"), ("1 Y", "15 mins")])
def test_history_too_many_small_bars_raises_162(duration: str, bar_size: str) -> None:
    with pytest.raises(HistoricalRequestError) as err:
        historical_bars(WALK, "AAPL", T0, duration, bar_size)
    assert err.value.code == 162


def test_history_unknown_what_to_show_raises_321() -> None:
    with pytest.raises(HistoricalRequestError) as err:
        historical_bars(WALK, "AAPL", T0, "1 D", "1 min", "OPTION_IMPLIED_VOLATILITY")
    assert err.value.code == 321


def test_history_for_another_symbol_raises() -> None:
    with pytest.raises(MarketDataError):
        historical_bars(WALK, "MSFT", T0, "1 D", "1 min")


# ---------------------------------------------------------------------------------- history values


@pytest.mark.parametrize(
    ("what", "price"), [("TRADES", "last"), ("BID", "bid"), ("ASK", "ask"), ("MIDPOINT", "mid")],
)
def test_history_equals_the_streamed_quotes_across_the_origin(what: str, price: str) -> None:
    end = T0 + 60 * NS + 1
    quotes = stream(WALK, T0 - 55 * NS, end)
    bars = historical_bars(WALK, "AAPL", end, "120 S", "5 secs", what)
    assert len(bars) == 24
    expected = {ts: ohlcv(qs, price) for ts, qs in bucket(quotes, 5 * NS).items()}
    assert [b.ts_ns for b in bars] == sorted(expected)
    for b in bars:
        o, h, lo, c, v = expected[b.ts_ns]
        assert (b.open, b.high, b.low, b.close) == (o, h, lo, c)
        assert b.volume == (v if what == "TRADES" else 0)


def test_history_last_bar_is_partial_up_to_the_end_time() -> None:
    end = T0 + 62 * NS
    bars = historical_bars(WALK, "AAPL", end, "60 S", "5 secs")
    assert len(bars) == 12 and bars[-1].ts_ns == T0 + 60 * NS
    partial = [q for q in REF if T0 + 60 * NS <= q.ts_ns <= end]
    assert bars[-1].count == len(partial) == 9
    assert bars[-1].close == partial[-1].last
    assert bars[-1].wap == (sum(q.last * q.last_size for q in partial)
                            / sum(q.last_size for q in partial)).quantize(D("0.0001"))


def test_history_daily_bars_start_at_new_york_midnights() -> None:
    bars = historical_bars(WALK, "AAPL", T0, "30 D", "1 day")
    assert len(bars) == 30
    for b in bars:
        dt = datetime.fromtimestamp(b.ts_ns / NS, NY)
        assert (dt.hour, dt.minute) == (0, 0)
    assert datetime.fromtimestamp(bars[-1].ts_ns / NS, NY).date() == datetime(2024, 1, 2).date()


def test_history_recent_daily_bar_is_identical_in_short_and_long_requests() -> None:
    long = historical_bars(WALK, "AAPL", T0 + 3600 * NS, "1 Y", "1 day")
    short = historical_bars(WALK, "AAPL", T0 + 3600 * NS, "1 D", "1 day")
    assert len(long) == 365 and long[-1] == short[-1]


@pytest.mark.parametrize(
    ("duration", "bar_size"),
    [("1 Y", "1 day"), ("1 M", "1 hour"), ("2 Y", "1W"), ("5 Y", "1M"), ("1 D", "1 min")],
)
def test_history_bars_are_well_formed_and_ordered(duration: str, bar_size: str) -> None:
    bars = historical_bars(WALK, "AAPL", T0, duration, bar_size)
    assert bars
    for b in bars:
        assert 0 < b.low <= min(b.open, b.close) <= max(b.open, b.close) <= b.high
        assert b.volume > 0 and b.count > 0 and b.low <= b.wap <= b.high
    assert all(a.ts_ns < b.ts_ns for a, b in zip(bars, bars[1:]))


def test_history_is_deterministic_across_model_instances() -> None:
    fresh = RandomWalkModel("AAPL", WalkParams(start_price=D("100.00")), seed=42)
    assert historical_bars(fresh, "AAPL", T0, "1 Y", "1 day") == historical_bars(
        WALK, "AAPL", T0, "1 Y", "1 day")


def test_history_use_rth_keeps_only_regular_session_bars() -> None:
    bars = historical_bars(WALK, "AAPL", T0, "1 W", "30 mins", use_rth=True)
    starts = [datetime.fromtimestamp(b.ts_ns / NS, NY) for b in bars]
    assert starts and all(s.weekday() < 5 and (9, 30) <= (s.hour, s.minute) < (16, 0) for s in starts)
    assert len(bars) == 5 * 13


# ---------------------------------------------------------------------------------- replay

CSV_HEADER = "timestamp,open,high,low,close,volume\n"


def write_csv(tmp_path: Path, body: str, header: str = CSV_HEADER) -> Path:
    path = tmp_path / "bars.csv"
    path.write_text(header + body)
    return path


REPLAY_ROWS = (
    "2024-01-02T09:30:00,100.00,101.00,99.50,100.80,1200\n"   # bullish: O -> L -> H -> C
    "2024-01-02T09:31:00,100.80,100.90,99.00,99.20,2400\n"    # bearish: O -> H -> L -> C
    f"{ny_ns(2024, 1, 2, 9, 32) // NS},99.20,99.60,99.10,99.40,7\n"
    "2024-01-02T09:40:00-05:00,99.40,99.40,99.40,99.40,0\n"
)


def test_replay_reproduces_each_bars_ohlcv_and_path_order(tmp_path: Path) -> None:
    model = BarReplayModel("AAPL", write_csv(tmp_path, REPLAY_ROWS))
    quotes = stream(model, None, ny_ns(2024, 1, 2, 10))
    by_bar = bucket(quotes, 60 * NS)
    expected = [(D("100.00"), D("101.00"), D("99.50"), D("100.80"), D(1200)),
                (D("100.80"), D("100.90"), D("99.00"), D("99.20"), D(2400)),
                (D("99.20"), D("99.60"), D("99.10"), D("99.40"), D(7)),
                (D("99.40"), D("99.40"), D("99.40"), D("99.40"), D(0))]
    assert [ohlcv(qs) for qs in by_bar.values()] == expected
    assert [len(qs) for qs in by_bar.values()] == [240] * 4
    first = [q.last for q in by_bar[ny_ns(2024, 1, 2, 9, 30)]]
    assert first.index(D("99.50")) < first.index(D("101.00"))
    second = [q.last for q in by_bar[ny_ns(2024, 1, 2, 9, 31)]]
    assert second.index(D("100.90")) < second.index(D("99.00"))


def test_replay_gap_between_bars_gives_no_quotes(tmp_path: Path) -> None:
    model = BarReplayModel("AAPL", write_csv(tmp_path, REPLAY_ROWS))
    quotes = stream(model, None, ny_ns(2024, 1, 2, 10))
    assert not [q for q in quotes if ny_ns(2024, 1, 2, 9, 33) <= q.ts_ns < ny_ns(2024, 1, 2, 9, 40)]


def test_replay_is_exhausted_after_the_last_bar(tmp_path: Path) -> None:
    model = BarReplayModel("AAPL", write_csv(tmp_path, REPLAY_ROWS))
    state, _ = model.step_to(model.initial_state(), ny_ns(2024, 1, 2, 9, 40, 59))
    assert not model.exhausted(state)
    state, _ = model.step_to(state, ny_ns(2024, 1, 2, 9, 41))
    assert model.exhausted(state)
    assert model.step_to(state, ny_ns(2024, 1, 3)) == (state, ())


def test_replay_start_ns_shifts_the_series(tmp_path: Path) -> None:
    model = BarReplayModel("AAPL", write_csv(tmp_path, REPLAY_ROWS), ReplayParams(start_ns=T0 + 3600 * NS))
    quotes = stream(model, None, T0 + 7200 * NS)
    assert quotes[0].ts_ns == T0 + 3600 * NS and quotes[0].last == D("100.00")


@given(cuts=st.lists(st.integers(min_value=0, max_value=11 * 60 * NS), max_size=10))
@settings(max_examples=30)
def test_replay_quotes_do_not_depend_on_how_time_is_chunked(tmp_path_factory: pytest.TempPathFactory,
                                                           cuts: list[int]) -> None:
    path = write_csv(tmp_path_factory.mktemp("replay"), REPLAY_ROWS)
    model = BarReplayModel("AAPL", path)
    whole = stream(model, None, T0 + 11 * 60 * NS)
    state, got = model.initial_state(), []
    for cut in [*sorted(cuts), 11 * 60 * NS]:
        state, quotes = model.step_to(state, T0 + cut)
        got.extend(quotes)
    assert got == whole


def test_replay_history_matches_the_source_bars(tmp_path: Path) -> None:
    model = BarReplayModel("AAPL", write_csv(tmp_path, REPLAY_ROWS))
    bars = historical_bars(model, "AAPL", ny_ns(2024, 1, 2, 9, 45), "960 S", "1 min")
    assert [(b.open, b.high, b.low, b.close, b.volume) for b in bars] == [
        (D("100.00"), D("101.00"), D("99.50"), D("100.80"), D(1200)),
        (D("100.80"), D("100.90"), D("99.00"), D("99.20"), D(2400)),
        (D("99.20"), D("99.60"), D("99.10"), D("99.40"), D(7)),
        (D("99.40"), D("99.40"), D("99.40"), D("99.40"), D(0)),
    ]
    five = historical_bars(model, "AAPL", ny_ns(2024, 1, 2, 9, 45), "960 S", "5 mins")
    assert [(b.open, b.high, b.low, b.close, b.volume) for b in five] == [
        (D("100.00"), D("101.00"), D("99.00"), D("99.40"), D(3607)),
        (D("99.40"), D("99.40"), D("99.40"), D("99.40"), D(0)),
    ]


def test_replay_history_before_the_file_is_empty(tmp_path: Path) -> None:
    model = BarReplayModel("AAPL", write_csv(tmp_path, REPLAY_ROWS))
    assert historical_bars(model, "AAPL", ny_ns(2024, 1, 1), "1 D", "1 hour") == ()


@pytest.mark.parametrize(
    ("body", "line", "fragment"),
    [
        ("2024-01-02T09:30:00,100,101,99,100,10\n2024-01-02T09:31:00,abc,101,99,100,10\n", 3,
         "open 'abc' is not a number"),
        ("2024-01-02T09:30:00,100,99,98,100,10\n", 2, "high/low do not bound"),
        ("2024-01-02T09:30:00,100,101,99,100,10\n2024-01-02T09:30:00,100,101,99,100,10\n", 3,
         "not after the previous"),
        ("2024-01-02T09:30:00,100,101,99\n", 2, "expected 6 fields, got 4"),
        ("2024-01-02T09:30:00,100,101,99,100,-5\n", 2, "volume must be a whole number"),
        ("2024-01-02T09:30:00,100,101,99,100,1.5\n", 2, "volume must be a whole number"),
        ("yesterday,100,101,99,100,10\n", 2, "neither epoch seconds nor ISO 8601"),
        ("2024-01-02T09:30:00,0,101,0,100,10\n", 2, "must be a positive number"),
        ("", 1, "no data rows"),
    ],
)
def test_replay_bad_row_error_names_file_and_line(tmp_path: Path, body: str, line: int, fragment: str) -> None:
    path = write_csv(tmp_path, body)
    with pytest.raises(ReplayFileError) as err:
        BarReplayModel("AAPL", path)
    assert err.value.line == line
    assert str(err.value).startswith(f"{path}:{line}: ")
    assert fragment in str(err.value)


@pytest.mark.parametrize(
    ("header", "fragment"), [("", "header row is required"), ("time,open,high,low,close,volume\n", "timestamp")],
)
def test_replay_missing_header_raises_on_line_one(tmp_path: Path, header: str, fragment: str) -> None:
    path = write_csv(tmp_path, "" if not header else "2024-01-02,1,1,1,1,1\n", header=header)
    with pytest.raises(ReplayFileError) as err:
        BarReplayModel("AAPL", path)
    assert err.value.line == 1 and fragment in str(err.value)


def test_replay_header_columns_may_be_reordered_and_extra(tmp_path: Path) -> None:
    path = write_csv(tmp_path, "7,1200,100.80,99.50,101.00,100.00,2024-01-02T09:30:00\n",
                     header="Extra,Volume,Close,Low,High,Open,Timestamp\n")
    quotes = stream(BarReplayModel("AAPL", path), None, T0 + 120 * NS)
    assert ohlcv(quotes) == (D("100.00"), D("101.00"), D("99.50"), D("100.80"), D(1200))


# ---------------------------------------------------------------------------------- 5 s bars


def test_realtime_bars_equal_historical_five_second_bars() -> None:
    agg = RealTimeBarAggregator("AAPL")
    bars = [b for q in REF[:80] for b in agg.feed(q)]
    assert len(bars) == 3
    assert all(b.ts_ns % (5 * NS) == 0 for b in bars)
    hist = historical_bars(WALK, "AAPL", T0 + 15 * NS - 1, "15 S", "5 secs")
    assert bars == list(hist)


def test_realtime_bar_is_emitted_once_its_end_time_passes() -> None:
    agg = RealTimeBarAggregator("AAPL", "MIDPOINT")
    for q in REF[:10]:
        assert agg.feed(q) == ()
    assert agg.flush(T0 + 5 * NS - 1) == ()
    (bar,) = agg.flush(T0 + 5 * NS)
    assert (bar.open, bar.high, bar.low, bar.close) == ohlcv(REF[:10], "mid")[:4]
    assert bar.volume == 0 and agg.flush(T0 + 10 * NS) == ()


def test_realtime_bars_skip_intervals_without_quotes() -> None:
    agg = RealTimeBarAggregator("AAPL")
    agg.feed(REF[0])
    (bar,) = agg.feed(REF[200])
    assert bar.ts_ns == T0 and bar.count == 1
    (bar,) = agg.flush(REF[200].ts_ns + 5 * NS)
    assert bar.ts_ns == T0 + 50 * NS


@pytest.mark.parametrize(
    "quote", [Quote(symbol="MSFT", last=D(1), ts_ns=T0 + NS), Quote(symbol="AAPL", last=D(1), ts_ns=T0 - 1)],
)
def test_realtime_bars_reject_foreign_or_out_of_order_quotes(quote: Quote) -> None:
    agg = RealTimeBarAggregator("AAPL")
    agg.feed(REF[0])
    with pytest.raises(MarketDataError):
        agg.feed(quote)
