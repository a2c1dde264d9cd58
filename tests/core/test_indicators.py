"""Tests for core.indicators: hand-computed fixtures, streaming == batch, edge cases, snapshots."""

from __future__ import annotations

import copy
import math
import pickle
from collections.abc import Callable, Sequence
from decimal import Decimal
from fractions import Fraction as F
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from core.errors import CoreError
from core.indicators import (
    Atr,
    Bands,
    Bollinger,
    Channel,
    Donchian,
    Ema,
    InvalidIndicatorInput,
    Rsi,
    Sma,
    Vwap,
    atr_batch,
    bollinger_batch,
    donchian_batch,
    ema_batch,
    rsi_batch,
    sma_batch,
    true_range_batch,
    vwap_batch,
)

TOL = 1e-9


def close_to(a: float, b: float | F) -> bool:
    return math.isclose(a, float(b), rel_tol=TOL, abs_tol=TOL)


def assert_series(actual: np.ndarray, expected: Sequence[float | F | None]) -> None:
    assert len(actual) == len(expected)
    for i, (a, e) in enumerate(zip(actual.tolist(), expected)):
        if e is None:
            assert math.isnan(a), f"index {i}: expected nan, got {a}"
        else:
            assert close_to(a, e), f"index {i}: expected {float(e)}, got {a}"


def assert_stream(actual: Sequence[float | None], expected: Sequence[float | F | None]) -> None:
    assert len(actual) == len(expected)
    for i, (a, e) in enumerate(zip(actual, expected)):
        if e is None:
            assert a is None, f"index {i}: expected None, got {a}"
        else:
            assert a is not None and close_to(a, e), f"index {i}: expected {float(e)}, got {a}"


def assert_agree(streamed: Sequence[float | None], batch: np.ndarray) -> None:
    assert len(streamed) == len(batch)
    for i, (s, b) in enumerate(zip(streamed, batch.tolist())):
        if s is None:
            assert math.isnan(b), f"index {i}: stream warming up, batch {b}"
        else:
            assert not math.isnan(b) and close_to(s, b), f"index {i}: stream {s} != batch {b}"


def assert_bands_agree(
    streamed: Sequence[Bands | None], batch: tuple[np.ndarray, np.ndarray, np.ndarray]
) -> None:
    middle, upper, lower = batch
    assert_agree([b and b.middle for b in streamed], middle)
    # A band is middle ± k·σ: when k·σ nearly cancels the middle (lower band ≈ 0 after a spike)
    # an ulp of σ is far more than 1e-9 of the result, so judge the bands on their inputs' scale.
    for i, b in enumerate(streamed):
        if b is None:
            assert math.isnan(upper[i]) and math.isnan(lower[i])
            continue
        scale = max(1.0, abs(middle[i]) + (upper[i] - middle[i]))
        assert abs(b.upper - upper[i]) <= TOL * scale, f"index {i}: upper {b.upper} {upper[i]}"
        assert abs(b.lower - lower[i]) <= TOL * scale, f"index {i}: lower {b.lower} {lower[i]}"


# --------------------------------------------------------------------------- hand fixtures

SMA_VALUES = [10, 11, 13, 12, 15, 14]
# n=3: (10+11+13)/3, (11+13+12)/3, (13+12+15)/3, (12+15+14)/3
SMA_EXPECTED = [None, None, F(34, 3), F(36, 3), F(40, 3), F(41, 3)]

EMA_VALUES = [22, 24, 23, 25, 27, 26]
# n=4, alpha = 2/5. Seed at index 3: (22+24+23+25)/4 = 23.5.
# index 4: 23.5 + 0.4 × (27 − 23.5) = 24.9; index 5: 24.9 + 0.4 × (26 − 24.9) = 25.34
EMA_EXPECTED = [None, None, None, F(47, 2), F(249, 10), F(2534, 100)]

# (high, low, close); n=3. True ranges:
#   0: 10 − 8 = 2 (first bar: high − low)
#   1: max(11−9, |11−9|, |9−9|) = 2
#   2: gap up over close 10: max(14−13, |14−10|, |13−10|) = 4
#   3: max(13−11, |13−13.5|, |11−13.5|) = 2.5
#   4: max(12.5−12, |12.5−12|, |12−12|) = 0.5
#   5: gap down under close 12.25: max(10−9, |10−12.25|, |9−12.25|) = 3.25
ATR_BARS = [(10, 8, 9), (11, 9, 10), (14, 13, 13.5), (13, 11, 12), (12.5, 12, 12.25), (10, 9, 9.5)]
ATR_TRUE_RANGES = [2, 2, 4, F(5, 2), F(1, 2), F(13, 4)]
# Seed (2+2+4)/3 = 8/3; then ATR = (ATR × 2 + TR) / 3:
#   (8/3 × 2 + 5/2)/3 = 47/18;  (47/18 × 2 + 1/2)/3 = 103/54;  (103/54 × 2 + 13/4)/3 = 763/324
ATR_EXPECTED = [None, None, F(8, 3), F(47, 18), F(103, 54), F(763, 324)]

# The widely reproduced 14-period RSI worksheet closes, rounded to cents. Changes:
#   −.25 +.06 −.54 +.72 +.50 +.27 +.32 +.42 +.24 −.19 +.14 −.42 +.67 0, then −.28
# Σgain over the first 14 = 3.34, Σloss = 1.40, so RSI = 100 × 3.34 / (3.34 + 1.40) = 33400/474.
# Next: avg gain = (3.34/14 × 13 + 0)/14 = 43.42/196,
#       avg loss = (1.40/14 × 13 + .28)/14 = 22.12/196,
#       RSI = 100 × 43.42 / (43.42 + 22.12) = 434200/6554.
RSI_WILDER_VALUES = [
    "44.34", "44.09", "44.15", "43.61", "44.33", "44.83", "45.10", "45.42",
    "45.84", "46.08", "45.89", "46.03", "45.61", "46.28", "46.28", "46.00",
]
RSI_WILDER_EXPECTED = [None] * 14 + [F(33400, 474), F(434200, 6554)]

RSI_SMALL_VALUES = [10, 12, 11, 14, 13, 13]
# n=3, changes +2 −1 +3 −1 0. Seed: gain 5/3, loss 1/3 → 100 × 5/6 = 250/3.
# Then gain (5/3×2 + 0)/3 = 10/9, loss (1/3×2 + 1)/3 = 5/9 → 100 × 10/15 = 200/3;
# then gain 20/27, loss 10/27 → 200/3 again.
RSI_SMALL_EXPECTED = [None, None, None, F(250, 3), F(200, 3), F(200, 3)]

BOLL_VALUES = [2, 4, 6, 5, 5]
# n=3, k=2, population variance (÷ n):
#   [2,4,6] mean 4, deviations −2 0 2 → var 8/3;  [4,6,5] mean 5 → var (1+1+0)/3 = 2/3;
#   [6,5,5] mean 16/3, deviations 2/3 −1/3 −1/3 → var (4/9+1/9+1/9)/3 = 2/9.
BOLL_MEANS_VARS = [None, None, (F(4), F(8, 3)), (F(5), F(2, 3)), (F(16, 3), F(2, 9))]

# (high, low, close, volume): typical prices 9, 10.5, 12; pv 900, 2100, 3600.
VWAP_BARS = [(10, 8, 9, 100), (12, 9, 10.5, 200), (13, 11, 12, 300)]
# cumulative: 900/100 = 9, 3000/300 = 10, 6600/600 = 11
VWAP_EXPECTED = [F(9), F(10), F(11)]
# a session starting at bar 2: 3600/300 = 12
VWAP_SESSION_EXPECTED = [F(9), F(10), F(12)]

DONCHIAN_HIGHS = [5, 7, 6, 4, 6, 8]
DONCHIAN_LOWS = [3, 4, 2, 3, 5, 6]
# n=3: highs max(5,7,6)=7, max(7,6,4)=7, max(6,4,6)=6, max(4,6,8)=8
#      lows  min(3,4,2)=2, min(4,2,3)=2, min(2,3,5)=2, min(3,5,6)=3
DONCHIAN_UPPER = [None, None, 7, 7, 6, 8]
DONCHIAN_LOWER = [None, None, 2, 2, 2, 3]


def columns(bars: Sequence[tuple[Any, ...]]) -> list[list[Any]]:
    return [list(col) for col in zip(*bars)] if bars else []


def test_sma_fixture_batch_and_stream_match_hand_values() -> None:
    assert_series(sma_batch(SMA_VALUES, 3), SMA_EXPECTED)
    s = Sma(3)
    assert_stream([s.update(x) for x in SMA_VALUES], SMA_EXPECTED)


def test_ema_fixture_is_sma_seeded_with_alpha_two_over_n_plus_one() -> None:
    assert_series(ema_batch(EMA_VALUES, 4), EMA_EXPECTED)
    s = Ema(4)
    assert s.alpha == 0.4
    assert_stream([s.update(x) for x in EMA_VALUES], EMA_EXPECTED)


def test_atr_fixture_with_gaps_matches_hand_values() -> None:
    h, lo, c = columns(ATR_BARS)
    assert_series(true_range_batch(h, lo, c), ATR_TRUE_RANGES)
    assert_series(atr_batch(h, lo, c, 3), ATR_EXPECTED)
    s = Atr(3)
    assert_stream([s.update(*bar) for bar in ATR_BARS], ATR_EXPECTED)


@pytest.mark.parametrize(
    "values, n, expected",
    [
        (RSI_WILDER_VALUES, 14, RSI_WILDER_EXPECTED),
        (RSI_SMALL_VALUES, 3, RSI_SMALL_EXPECTED),
    ],
    ids=["wilder-14", "small-3"],
)
def test_rsi_fixture_matches_hand_values(
    values: list[Any], n: int, expected: list[F | None]
) -> None:
    assert_series(rsi_batch([Decimal(v) for v in map(str, values)], n), expected)
    s = Rsi(n)
    assert_stream([s.update(Decimal(str(v))) for v in values], expected)


def test_bollinger_fixture_uses_population_deviation() -> None:
    middle, upper, lower = bollinger_batch(BOLL_VALUES, 3, 2)
    s = Bollinger(3, 2)
    streamed = [s.update(x) for x in BOLL_VALUES]
    for i, mv in enumerate(BOLL_MEANS_VARS):
        if mv is None:
            assert math.isnan(middle[i]) and math.isnan(upper[i]) and math.isnan(lower[i])
            assert streamed[i] is None
            continue
        mean, var = mv
        width = 2 * math.sqrt(var)
        for got in (
            Bands(middle=middle[i], upper=upper[i], lower=lower[i]),
            streamed[i],
        ):
            assert got is not None
            assert close_to(got.middle, mean)
            assert close_to(got.upper, float(mean) + width)
            assert close_to(got.lower, float(mean) - width)
    # the sample deviation (÷ n−1) over [2,4,6] would put the upper band at 4 + 2×2 = 8
    assert not close_to(upper[2], 8)


@pytest.mark.parametrize(
    "session_start, expected",
    [(None, VWAP_EXPECTED), ([False, False, True], VWAP_SESSION_EXPECTED)],
    ids=["one-session", "reset-at-bar-2"],
)
def test_vwap_three_bars_match_hand_values(
    session_start: list[bool] | None, expected: list[F]
) -> None:
    h, lo, c, v = columns(VWAP_BARS)
    assert_series(vwap_batch(h, lo, c, v, session_start), expected)
    s = Vwap()
    starts = session_start or [False] * len(VWAP_BARS)
    streamed = [s.update(*bar, new_session=new) for bar, new in zip(VWAP_BARS, starts)]
    assert_stream(streamed, expected)


def test_donchian_fixture_includes_current_bar() -> None:
    upper, lower = donchian_batch(DONCHIAN_HIGHS, DONCHIAN_LOWS, 3)
    assert_series(upper, DONCHIAN_UPPER)
    assert_series(lower, DONCHIAN_LOWER)
    s = Donchian(3)
    streamed = [s.update(h, lo) for h, lo in zip(DONCHIAN_HIGHS, DONCHIAN_LOWS)]
    assert_stream([None if ch is None else ch.upper for ch in streamed], DONCHIAN_UPPER)
    assert_stream([None if ch is None else ch.lower for ch in streamed], DONCHIAN_LOWER)
    assert streamed[-1] == Channel(upper=8.0, lower=3.0)
    assert streamed[-1].middle == 5.5


# --------------------------------------------------------------------------- streaming == batch

prices = st.floats(min_value=1.0, max_value=10_000.0, allow_nan=False, allow_infinity=False)
spreads = st.floats(min_value=0.0, max_value=50.0, allow_nan=False, allow_infinity=False)
volumes = st.one_of(st.just(0.0), st.floats(min_value=0.0, max_value=1e7, allow_nan=False))
# prices with the occasional spike or zero, for the rolling sums' cancellation paths
wild_prices = st.one_of(prices, st.sampled_from([0.0, 1e-3, 1e6, 1e8]))
periods = st.sampled_from([1, 2, 3, 5, 14, 20])

bar_lists = st.lists(st.tuples(prices, spreads, spreads, volumes, st.booleans()), max_size=60)


def ohlcv(raw: list[tuple[float, float, float, float, bool]]) -> tuple[list[float], ...]:
    """Return (high, low, close, volume, session_start) columns built around each close."""
    high = [c + up for c, up, _, _, _ in raw]
    low = [c - down for c, _, down, _, _ in raw]
    close = [c for c, _, _, _, _ in raw]
    volume = [v for _, _, _, v, _ in raw]
    starts = [s for _, _, _, _, s in raw]
    return high, low, close, volume, starts  # type: ignore[return-value]


def split_stream(
    make: Callable[[int], Any],
    columns_: Sequence[list[Any]],
    split: int,
    update: Callable[..., Any],
) -> list[Any]:
    """Warm a state from the first `split` rows, then stream the rest; return every row's value."""
    first = [col[:split] for col in columns_]
    state = make(split)
    values: list[Any] = []
    replay = make(0)
    for row in zip(*first):  # the values history warm-up would have produced along the way
        values.append(update(replay, row))
    assert state == replay  # from_history is feeding the batch through update
    for row in zip(*(col[split:] for col in columns_)):
        values.append(update(state, row))
    return values


@given(values=st.lists(wild_prices, max_size=60), n=periods, cut=st.integers(0, 60))
def test_sma_stream_equals_batch_at_every_index(values: list[float], n: int, cut: int) -> None:
    split = min(cut, len(values))
    streamed = split_stream(
        lambda k: Sma.from_history(values[:k], n), [values], split, lambda s, r: s.update(*r)
    )
    assert_agree(streamed, sma_batch(values, n))


@given(values=st.lists(prices, max_size=60), n=periods, cut=st.integers(0, 60))
def test_ema_stream_equals_batch_at_every_index(values: list[float], n: int, cut: int) -> None:
    split = min(cut, len(values))
    streamed = split_stream(
        lambda k: Ema.from_history(values[:k], n), [values], split, lambda s, r: s.update(*r)
    )
    assert_agree(streamed, ema_batch(values, n))


@given(values=st.lists(prices, max_size=60), n=periods, cut=st.integers(0, 60))
def test_rsi_stream_equals_batch_at_every_index(values: list[float], n: int, cut: int) -> None:
    split = min(cut, len(values))
    streamed = split_stream(
        lambda k: Rsi.from_history(values[:k], n), [values], split, lambda s, r: s.update(*r)
    )
    assert_agree(streamed, rsi_batch(values, n))
    assert all(v is None or 0.0 <= v <= 100.0 for v in streamed)


@given(
    values=st.lists(wild_prices, max_size=60),
    n=periods,
    k=st.sampled_from([0.0, 1.5, 2.0, 3.0]),
    cut=st.integers(0, 60),
)
def test_bollinger_stream_equals_batch_at_every_index(
    values: list[float], n: int, k: float, cut: int
) -> None:
    split = min(cut, len(values))
    streamed = split_stream(
        lambda m: Bollinger.from_history(values[:m], n, k),
        [values],
        split,
        lambda s, r: s.update(*r),
    )
    assert_bands_agree(streamed, bollinger_batch(values, n, k))


@given(raw=bar_lists, n=periods, cut=st.integers(0, 60))
def test_atr_stream_equals_batch_at_every_index(raw: list[Any], n: int, cut: int) -> None:
    high, low, close, _, _ = ohlcv(raw)
    split = min(cut, len(raw))
    streamed = split_stream(
        lambda k: Atr.from_history(high[:k], low[:k], close[:k], n),
        [high, low, close],
        split,
        lambda s, r: s.update(*r),
    )
    assert_agree(streamed, atr_batch(high, low, close, n))


@given(raw=bar_lists, cut=st.integers(0, 60))
def test_vwap_stream_equals_batch_at_every_index(raw: list[Any], cut: int) -> None:
    high, low, close, volume, starts = ohlcv(raw)
    split = min(cut, len(raw))
    streamed = split_stream(
        lambda k: Vwap.from_history(high[:k], low[:k], close[:k], volume[:k], starts[:k]),
        [high, low, close, volume, starts],
        split,
        lambda s, r: s.update(*r[:4], new_session=r[4]),
    )
    assert_agree(streamed, vwap_batch(high, low, close, volume, starts))


@given(raw=bar_lists, n=periods, cut=st.integers(0, 60))
def test_donchian_stream_equals_batch_at_every_index(raw: list[Any], n: int, cut: int) -> None:
    high, low, _, _, _ = ohlcv(raw)
    split = min(cut, len(raw))
    streamed = split_stream(
        lambda k: Donchian.from_history(high[:k], low[:k], n),
        [high, low],
        split,
        lambda s, r: s.update(*r),
    )
    upper, lower = donchian_batch(high, low, n)
    assert_agree([c and c.upper for c in streamed], upper)
    assert_agree([c and c.lower for c in streamed], lower)


@pytest.mark.parametrize(
    "values, n",
    [
        ([2049.0, 1.2478338912201252, 1.0], 2),  # found by hypothesis: variance collapses 1e8×
        ([1.0, 1e6, 1.0, 1.0001, 1.0, 1.0002, 1.0], 3),
        ([5e5, 100.0, 100.01, 100.0, 100.02, 100.01], 5),
    ],
)
def test_bollinger_spike_leaving_the_window_matches_batch(values: list[float], n: int) -> None:
    middle, upper, lower = bollinger_batch(values, n, 1.5)
    state = Bollinger(n, 1.5)
    streamed = [state.update(x) for x in values]
    # these bands sit well away from zero, so they must also agree to 1e-9 relative
    assert_agree([b and b.middle for b in streamed], middle)
    assert_agree([b and b.upper for b in streamed], upper)
    assert_agree([b and b.lower for b in streamed], lower)


def test_sma_spike_leaving_the_window_matches_batch() -> None:
    # 1e12 + 0.1 keeps only ~1e-4 of the 0.1; a plain running sum would carry that error on.
    values = [1e12, 0.1, 0.2, 0.3, 0.4, 0.5]
    state = Sma(3)
    streamed = [state.update(x) for x in values]
    assert_agree(streamed, sma_batch(values, 3))
    assert_stream(streamed, [None, None, F(10**12 + F(3, 10), 3), F(6, 30), F(9, 30), F(12, 30)])


def test_rolling_sums_do_not_drift_over_a_long_stream() -> None:
    # Prices near 10 000 with cent-sized noise: a naive running sum and sum of squares would
    # lose the band width to cancellation long before 20 000 bars.
    rng = np.random.default_rng(7)
    values = 10_000.0 + np.round(rng.normal(0.0, 0.05, 20_000), 2)
    middle, upper, _ = bollinger_batch(values, 20, 2.0)
    sma = Sma(20)
    boll = Bollinger(20, 2.0)
    for x in values.tolist():
        s, b = sma.update(x), boll.update(x)
    assert s is not None and b is not None
    assert close_to(s, middle[-1]) and close_to(b.middle, middle[-1])
    assert close_to(b.upper, upper[-1])


# --------------------------------------------------------------------------- edge cases

def all_streams(n: int) -> list[tuple[Any, Callable[[Any, float], Any]]]:
    """Every indicator, fed a bar whose high/low/close are all `x` (volume 10)."""
    return [
        (Sma(n), lambda s, x: s.update(x)),
        (Ema(n), lambda s, x: s.update(x)),
        (Rsi(n), lambda s, x: s.update(x)),
        (Bollinger(n), lambda s, x: s.update(x)),
        (Atr(n), lambda s, x: s.update(x, x, x)),
        (Donchian(n), lambda s, x: s.update(x, x)),
        (Vwap(), lambda s, x: s.update(x, x, x, 10)),
    ]


@pytest.mark.parametrize("n", [1, 3])
def test_constant_series_gives_flat_indicators_and_rsi_100(n: int) -> None:
    c = 42.5
    values = [c] * 8
    assert_series(sma_batch(values, n), [None] * (n - 1) + [c] * (9 - n))
    assert_series(ema_batch(values, n), [None] * (n - 1) + [c] * (9 - n))
    assert_series(rsi_batch(values, n), [None] * n + [100] * (8 - n))
    assert_series(atr_batch(values, values, values, n), [None] * (n - 1) + [0] * (9 - n))
    middle, upper, lower = bollinger_batch(values, n)
    assert_series(upper, [None] * (n - 1) + [c] * (9 - n))
    assert_series(lower, [None] * (n - 1) + [c] * (9 - n))
    assert_series(vwap_batch(values, values, values, [10] * 8), [c] * 8)
    expected = [c, c, 100.0, Bands(middle=c, upper=c, lower=c), 0.0, Channel(upper=c, lower=c), c]
    for (state, feed), want in zip(all_streams(n), expected, strict=True):
        assert [feed(state, x) for x in values][n:] == [want] * (8 - n)


def test_period_one_passes_values_through() -> None:
    values = [5.0, 7.0, 6.0, 6.0, 9.0]
    assert_series(sma_batch(values, 1), values)
    assert_series(ema_batch(values, 1), values)
    # one change per RSI: up → 100, down → 0, flat → 100 (no loss)
    assert_series(rsi_batch(values, 1), [None, 100, 0, 100, 100])
    bars = [(6.0, 4.0, 5.0), (8.0, 7.0, 7.5), (7.0, 6.5, 7.0)]
    h, lo, c = columns(bars)
    # TR: 2; max(1, |8−5|, |7−5|) = 3; max(.5, |7−7.5|, |6.5−7.5|) = 1
    assert_series(atr_batch(h, lo, c, 1), [2, 3, 1])
    middle, upper, lower = bollinger_batch(values, 1, 2.0)
    assert_series(upper, values)
    assert_series(lower, values)
    upper, lower = donchian_batch(h, lo, 1)
    assert_series(upper, h)
    assert_series(lower, lo)


@pytest.mark.parametrize("n", [4, 10])
def test_series_shorter_than_warm_up_is_all_nan_and_none(n: int) -> None:
    values = [1.0, 2.0, 3.0]
    batches = (
        sma_batch(values, n),
        ema_batch(values, n),
        rsi_batch(values, n),
        atr_batch(values, values, values, n),
        *bollinger_batch(values, n),
        *donchian_batch(values, values, n),
    )
    for out in batches:
        assert len(out) == 3 and np.isnan(out).all()
    for state, feed in all_streams(n):
        if isinstance(state, Vwap):
            continue
        assert [feed(state, x) for x in values] == [None, None, None]
        assert state.value is None


def test_rsi_needs_n_plus_one_values() -> None:
    assert np.isnan(rsi_batch([1.0, 2.0, 3.0], 3)).all()
    assert_series(rsi_batch([1.0, 2.0, 3.0, 4.0], 3), [None, None, None, 100])


def test_empty_history_gives_empty_batches_and_fresh_states() -> None:
    assert sma_batch([], 3).shape == (0,)
    assert vwap_batch([], [], [], []).shape == (0,)
    assert Atr.from_history([], [], [], 3) == Atr(3)
    assert Vwap.from_history([], [], [], []) == Vwap()


def test_vwap_zero_volume_is_undefined_until_the_session_trades() -> None:
    bars = [(11, 9, 10, 0), (12, 10, 11, 100), (30, 20, 25, 0), (9, 9, 9, 0), (6, 6, 6, 50)]
    starts = [False, False, False, True, False]
    # bar 0: nothing traded → nan; bar 1: tp 11; bar 2: zero volume, still 11;
    # bar 3: new session, nothing traded yet → nan; bar 4: tp 6
    expected = [None, F(11), F(11), None, F(6)]
    h, lo, c, v = columns(bars)
    assert_series(vwap_batch(h, lo, c, v, starts), expected)
    s = Vwap()
    assert_stream([s.update(*bar, new_session=new) for bar, new in zip(bars, starts)], expected)


def test_decimal_inputs_give_the_same_values_as_floats() -> None:
    d = [(Decimal(str(h)), Decimal(str(lo)), Decimal(str(c))) for h, lo, c in ATR_BARS]
    h, lo, c = columns(d)
    assert_series(atr_batch(h, lo, c, 3), ATR_EXPECTED)
    state = Atr(3)
    assert_stream([state.update(*bar) for bar in d], ATR_EXPECTED)
    assert Bollinger(3, Decimal("2")).k == 2.0


# --------------------------------------------------------------------------- snapshots

@pytest.mark.parametrize(
    "clone",
    [lambda s: s.copy(), copy.copy, copy.deepcopy, lambda s: pickle.loads(pickle.dumps(s))],
    ids=["copy", "copy.copy", "deepcopy", "pickle"],
)
def test_snapshot_is_independent_and_resumes_identically(clone: Callable[[Any], Any]) -> None:
    history = [10.0, 12.0, 11.0, 14.0, 13.0, 15.0, 12.5]
    future = [16.0, 11.0, 13.0, 9.0, 17.0]
    for original, feed in all_streams(3):
        for x in history:
            feed(original, x)
        snapshot = clone(original)
        assert snapshot == original and snapshot is not original
        a = [feed(original, x) for x in future]
        assert snapshot != original
        b = [feed(snapshot, x) for x in future]
        assert a == b
        assert snapshot == original


def test_snapshot_does_not_share_the_window_with_its_original() -> None:
    original = Sma.from_history([1.0, 2.0, 3.0], 3)
    snapshot = original.copy()
    original.update(100.0)
    assert snapshot.value == 2.0
    assert original.value == 35.0


def test_state_size_stays_bounded_by_the_window() -> None:
    sizes = []
    for count in (100, 5_000):
        values = np.linspace(1.0, 2.0, count)  # rising: Donchian keeps its whole low deque
        states = [
            Sma.from_history(values, 5),
            Bollinger.from_history(values, 5),
            Donchian.from_history(values, values, 5),
            Atr.from_history(values, values, values, 5),
        ]
        sizes.append([len(pickle.dumps(s)) for s in states])
    for small, large in zip(*sizes):
        assert large <= small + 8  # only the bar counter grows


# --------------------------------------------------------------------------- validation

@pytest.mark.parametrize("n", [0, -1, 1.5, True, "3", None])
@pytest.mark.parametrize(
    "build",
    [
        Sma, Ema, Rsi, Atr, Bollinger, Donchian,
        lambda n: sma_batch([1.0], n),
        lambda n: ema_batch([1.0], n),
        lambda n: rsi_batch([1.0], n),
        lambda n: bollinger_batch([1.0], n),
        lambda n: atr_batch([1.0], [1.0], [1.0], n),
        lambda n: donchian_batch([1.0], [1.0], n),
    ],
)
def test_invalid_period_raises_invalid_indicator_input(build: Callable[[Any], Any], n: Any) -> None:
    with pytest.raises(InvalidIndicatorInput):
        build(n)


@pytest.mark.parametrize(
    "call",
    [
        lambda: Bollinger(3, -1.0),
        lambda: Bollinger(3, math.inf),
        lambda: sma_batch([1.0, math.nan], 1),
        lambda: sma_batch([[1.0, 2.0]], 1),
        lambda: sma_batch(["a"], 1),
        lambda: atr_batch([1.0, 2.0], [1.0], [1.0], 1),
        lambda: atr_batch([1.0], [2.0], [1.0], 1),
        lambda: donchian_batch([1.0, 0.5], [1.0, 1.0], 1),
        lambda: vwap_batch([1.0], [1.0], [1.0], [-5.0]),
        lambda: vwap_batch([1.0], [1.0], [1.0], [5.0], [True, False]),
        lambda: vwap_batch([1.0], [1.0], [1.0], [5.0], [1]),
    ],
    ids=["k-negative", "k-infinite", "nan-value", "2-d", "not-a-number", "length-mismatch",
         "atr-high-below-low", "donchian-high-below-low", "negative-volume",
         "session-length", "session-not-bool"],
)
def test_invalid_batch_input_raises_invalid_indicator_input(call: Callable[[], Any]) -> None:
    with pytest.raises(InvalidIndicatorInput):
        call()


@pytest.mark.parametrize(
    "state, bad",
    [
        (Sma.from_history([1.0, 2.0], 2), lambda s: s.update(math.nan)),
        (Ema.from_history([1.0, 2.0], 2), lambda s: s.update("x")),
        (Rsi.from_history([1.0, 2.0, 1.5], 2), lambda s: s.update(math.inf)),
        (Bollinger.from_history([1.0, 2.0, 4.0], 2), lambda s: s.update(None)),
        (
            Atr.from_history([2.0, 3.0], [1.0, 2.0], [1.5, 2.5], 2),
            lambda s: s.update(1.0, 2.0, 1.5),
        ),
        (Donchian.from_history([2.0, 3.0], [1.0, 2.0], 2), lambda s: s.update(1.0, 2.0)),
        (Vwap.from_history([2.0], [1.0], [1.5], [10.0]),
         lambda s: s.update(2.0, 1.0, 1.5, -1.0, new_session=True)),
    ],
    ids=["sma", "ema", "rsi", "bollinger", "atr", "donchian", "vwap"],
)
def test_rejected_update_leaves_state_untouched(state: Any, bad: Callable[[Any], Any]) -> None:
    before = state.copy()
    with pytest.raises(InvalidIndicatorInput):
        bad(state)
    assert state == before


def test_invalid_indicator_input_is_a_core_and_value_error() -> None:
    assert issubclass(InvalidIndicatorInput, CoreError)
    assert issubclass(InvalidIndicatorInput, ValueError)
