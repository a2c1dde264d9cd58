"""core.bars: time bars from quotes (buckets, OHLC, volume deltas, gaps, late quotes); streamed == batch."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.bars import (
    BarState,
    InvalidBarInput,
    bucket_start,
    close_due,
    new_state,
    quote_price,
    reset_open_bar,
    update,
)
from core.types import Bar, Quote

S = 1_000_000_000
T0 = 1_699_999_980 * S  # a multiple of 60 s
D = Decimal


def _q(t_s: float, last: str | None = None, *, bid: str | None = None, ask: str | None = None,
       volume: int = 0, symbol: str = "AAPL") -> Quote:
    return Quote(symbol=symbol, last=D(last) if last is not None else None,
                 bid=D(bid) if bid is not None else None, ask=D(ask) if ask is not None else None,
                 volume=D(volume), ts_ns=T0 + int(t_s * S))


def _bar(t_s: int, o: str, h: str, lo: str, c: str, v: int = 0) -> Bar:
    return Bar(symbol="AAPL", ts_ns=T0 + t_s * S, open=D(o), high=D(h), low=D(lo), close=D(c), volume=D(v))


def _run(quotes: list[Quote], bar_seconds: int = 60) -> tuple[BarState, list[Bar]]:
    state = new_state("AAPL", bar_seconds)
    closed: list[Bar] = []
    for quote in quotes:
        state, done = update(state, quote)
        closed.extend(done)
    return state, closed


@pytest.mark.parametrize(("quotes", "closed", "open_bar"), [
    pytest.param([_q(0, "10"), _q(20, "12"), _q(40, "9"), _q(59, "11")], [],
                 _bar(0, "10", "12", "9", "11"), id="one-bucket-stays-open"),
    pytest.param([_q(1, "10"), _q(30, "12"), _q(60, "11")], [_bar(0, "10", "12", "10", "12")],
                 _bar(60, "11", "11", "11", "11"), id="next-bucket-closes-previous"),
    pytest.param([_q(5, "10"), _q(250, "13")], [_bar(0, "10", "10", "10", "10")],
                 _bar(240, "13", "13", "13", "13"), id="gap-leaves-no-empty-bars"),
    pytest.param([_q(0, bid="9.99", ask="10.01"), _q(10, bid="10.00", ask="10.03")], [],
                 _bar(0, "10.00", "10.015", "10.00", "10.015"), id="mid-without-last"),
    pytest.param([_q(0, "10"), _q(10, bid="1", ask=None), _q(20, "11")], [],
                 _bar(0, "10", "11", "10", "11"), id="quote-without-price-builds-nothing"),
    pytest.param([_q(0, "10"), _q(70)], [_bar(0, "10", "10", "10", "10")], None,
                 id="quote-without-price-still-closes-due-bar"),
    pytest.param([_q(0, "10"), _q(61, "11"), _q(59, "50")], [_bar(0, "10", "10", "10", "10")],
                 _bar(60, "11", "11", "11", "11"), id="late-quote-changes-nothing"),
])
def test_update_builds_bars_from_quote_prices(quotes: list[Quote], closed: list[Bar],
                                              open_bar: Bar | None) -> None:
    state, done = _run(quotes)
    assert done == closed
    assert state.open_bar == open_bar


@pytest.mark.parametrize(("ticks", "bar_volumes"), [
    pytest.param([(0, 100), (10, 150), (30, 180), (60, 200)], [80, 20], id="deltas-of-cumulative-volume"),
    pytest.param([(0, 100), (10, 150), (20, 0), (30, 180), (70, 200)], [80, 20],
                 id="zero-is-unknown-not-a-reset"),
    pytest.param([(0, 100), (10, 150), (60, 30), (70, 50)], [50, 50], id="drop-is-a-new-session"),
    pytest.param([(0, 100), (61, 150), (59, 170), (70, 200)], [0, 100], id="late-volume-goes-to-next-bar"),
])
def test_bar_volume_sums_increases_of_cumulative_volume(ticks: list[tuple[int, int]],
                                                        bar_volumes: list[int]) -> None:
    # The first quote's cumulative volume is the baseline: what traded before it is nobody's.
    state, done = _run([_q(t, "10", volume=v) for t, v in ticks])
    assert state.open_bar is not None
    assert [b.volume for b in done + [state.open_bar]] == [D(v) for v in bar_volumes]


def test_close_due_closes_open_bar_only_after_its_bucket_ends() -> None:
    state, _ = _run([_q(0, "10")])
    assert close_due(state, T0 + 60 * S - 1) == (state, ())
    after, closed = close_due(state, T0 + 60 * S)
    assert closed == (state.open_bar,) and after.open_bar is None


def test_reset_open_bar_forgets_bar_and_volume_baseline() -> None:
    state, _ = _run([_q(0, "10", volume=5)])
    reset = reset_open_bar(state)
    assert (reset.open_bar, reset.last_volume) == (None, None)
    assert state.open_bar is not None  # the old value is untouched


@pytest.mark.parametrize(("make", "match"), [
    pytest.param(lambda: new_state("AAPL", 0), "bar_seconds", id="zero-length"),
    pytest.param(lambda: new_state("", 60), "symbol", id="no-symbol"),
    pytest.param(lambda: update(new_state("AAPL", 60), _q(0, "1", symbol="MSFT")), "MSFT", id="other-symbol"),
    pytest.param(lambda: update(new_state("AAPL", 60), _q(0, "-1")), "price", id="negative-price"),
    pytest.param(lambda: update(new_state("AAPL", 60), _q(0, "1", volume=-3)), "volume",
                 id="negative-volume"),
])
def test_invalid_input_raises_invalid_bar_input(make: object, match: str) -> None:
    with pytest.raises(InvalidBarInput, match=match):
        make()  # type: ignore[operator]


@pytest.mark.parametrize(("quote", "price"), [
    (_q(0, "10", bid="1", ask="2"), D("10")),
    (_q(0, bid="1", ask="2"), D("1.5")),
    (_q(0, bid="1"), None),
])
def test_quote_price_prefers_last_then_mid(quote: Quote, price: Decimal | None) -> None:
    assert quote_price(quote) == price


# ---------------------------------------------------------------- streamed == batch

_steps = st.lists(
    st.tuples(st.integers(0, 50_000_000_000),            # ns since the previous quote
              st.integers(1, 10_000).map(lambda c: D(c) / 100),  # price
              st.integers(0, 500)),                       # volume traded since the previous quote
    min_size=1, max_size=60,
)


@settings(max_examples=150)
@given(steps=_steps, bar_seconds=st.sampled_from([1, 5, 60]))
def test_streamed_bars_equal_quotes_grouped_by_bucket(steps: list[tuple[int, Decimal, int]],
                                                      bar_seconds: int) -> None:
    t, volume, quotes = T0, 1_000, []
    for dt, price, traded in steps:
        t += dt
        volume += traded
        quotes.append(Quote(symbol="AAPL", last=price, volume=D(volume), ts_ns=t))
    state, closed = _run(quotes, bar_seconds)
    bars = closed + ([state.open_bar] if state.open_bar is not None else [])
    buckets: dict[int, list[Quote]] = {}
    for quote in quotes:
        buckets.setdefault(bucket_start(quote.ts_ns, bar_seconds), []).append(quote)
    assert [b.ts_ns for b in bars] == sorted(buckets)
    previous_volume = quotes[0].volume
    for bar in bars:
        group = buckets[bar.ts_ns]
        prices = [q.last for q in group]
        assert (bar.open, bar.high, bar.low, bar.close) == (prices[0], max(prices), min(prices), prices[-1])
        assert bar.low <= min(bar.open, bar.close) <= max(bar.open, bar.close) <= bar.high
        assert bar.volume == group[-1].volume - previous_volume
        previous_volume = group[-1].volume
    assert sum((b.volume for b in bars), D(0)) == quotes[-1].volume - quotes[0].volume
