"""Acceptance: market data through the official ibapi client (ticks, history, 5 s bars, contract details)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from simulator.market import NS, WalkParams
from simulator.server import SimulatorConfig, SimulatorThread, SymbolSpec
from tests.simulator.conftest import Connect, MakeSim, step_until
from tests.simulator.ibapp import IBApp, stock

pytestmark = pytest.mark.timeout(30)

BID_SIZE, BID, ASK, ASK_SIZE, LAST, LAST_SIZE, VOLUME = 0, 1, 2, 3, 4, 5, 8
START_S = SimulatorConfig().start_ns // NS
NY = ZoneInfo("America/New_York")


def _ticks(app: IBApp, req_id: int, after: int = 0) -> list[tuple[str, int, object]]:
    """Return (callback, tick type, price or size) for one request, in arrival order."""
    return [(c.name, c.args[1], c.args[2]) for c in app.calls[after:]
            if c.name in ("tickPrice", "tickSize") and c.args[0] == req_id]


def test_mkt_data_streams_bid_ask_last_each_with_its_size_then_volume(sim: SimulatorThread, app: IBApp) -> None:
    app.reqMktData(1, stock("AAPL"), "", False, False, [])
    app.sync()
    mark = app.mark()
    sim.step(2)
    app.sync()
    ticks = _ticks(app, 1, mark)
    assert len(ticks) % 7 == 0 and len(ticks) >= 7 * 8  # 4 quotes a second, 7 callbacks each
    for i in range(0, len(ticks), 7):
        quote = ticks[i:i + 7]
        assert [(name, kind) for name, kind, _ in quote] == [
            ("tickPrice", BID), ("tickSize", BID_SIZE), ("tickPrice", ASK), ("tickSize", ASK_SIZE),
            ("tickPrice", LAST), ("tickSize", LAST_SIZE), ("tickSize", VOLUME)]
        bid, ask, last = quote[0][2], quote[2][2], quote[4][2]
        assert 0 < bid < ask and bid <= last <= ask
        assert all(isinstance(v, Decimal) and v > 0 for _, kind, v in quote if kind in (0, 3, 5, 8))
    volumes = [v for name, kind, v in ticks if kind == VOLUME]
    assert volumes == sorted(volumes)  # cumulative day volume


def test_mkt_data_for_unknown_symbol_or_currency_gets_error_200(app: IBApp) -> None:
    app.reqMktData(5, stock("NOPE"), "", False, False, [])
    app.reqMktData(6, stock("AAPL", currency="EUR"), "", False, False, [])
    app.wait_call("error", lambda rid, t, code, *a: code == 200, count=2)
    assert sorted(c.args[0] for c in app.errors(200)) == [5, 6]


def test_cancel_mkt_data_stops_the_stream_of_that_request_only(sim: SimulatorThread, app: IBApp) -> None:
    app.reqMktData(1, stock("AAPL"), "", False, False, [])
    app.reqMktData(2, stock("SPY"), "", False, False, [])
    app.sync()
    sim.step(1)
    app.cancelMktData(1)
    app.sync()
    mark = app.mark()
    sim.step(1)
    app.sync()
    after = {c.args[0] for c in app.named("tickPrice", mark)}
    assert after == {2}


def test_historical_data_gives_consistent_bars_then_end_marker(sim: SimulatorThread, app: IBApp) -> None:
    app.reqHistoricalData(3, stock("MSFT"), "", "3600 S", "5 mins", "TRADES", 0, 1, False, [])
    end = app.wait_call("historicalDataEnd")[0]
    bars = [c.args[1] for c in app.named("historicalData")]
    assert end.args[0] == 3 and all(c.args[0] == 3 for c in app.named("historicalData"))
    assert len(bars) == 12
    times = [datetime.strptime(b.date.rsplit(" ", 1)[0], "%Y%m%d %H:%M:%S").replace(tzinfo=NY) for b in bars]
    assert [int(t.timestamp()) - int(times[0].timestamp()) for t in times] == [300 * i for i in range(12)]
    assert int(times[-1].timestamp()) == START_S  # bars start in (end - duration, end]: the last is the current one
    for b in bars:
        assert b.low <= min(b.open, b.close) <= max(b.open, b.close) <= b.high
        assert b.volume > 0 and b.barCount > 0


def test_historical_data_format_date_2_gives_epoch_seconds(sim: SimulatorThread, app: IBApp) -> None:
    sim.step(600)
    app.reqHistoricalData(4, stock("AAPL"), "", "600 S", "1 min", "MIDPOINT", 0, 2, False, [])
    app.wait_call("historicalDataEnd")
    dates = [int(c.args[1].date) for c in app.named("historicalData")]
    assert dates == [START_S + 60 * i for i in range(1, 11)]  # (end - 600 s, end]; the last bar is partial


def test_historical_data_with_bad_bar_size_gets_an_error_not_bars(app: IBApp) -> None:
    app.reqHistoricalData(8, stock("AAPL"), "", "1 D", "7 parsecs", "TRADES", 0, 1, False, [])
    app.reqHistoricalData(9, stock("NOPE"), "", "1 D", "1 min", "TRADES", 0, 1, False, [])
    app.wait_call("error", lambda rid, *a: rid in (8, 9), count=2)
    assert app.errors(200)[0].args[0] == 9
    app.sync()
    assert not app.named("historicalData") and not app.named("historicalDataEnd")


def test_real_time_bars_arrive_every_five_seconds_of_market_time(sim: SimulatorThread, app: IBApp) -> None:
    app.reqRealTimeBars(11, stock("SPY"), 5, "TRADES", False, [])
    app.sync()
    step_until(sim, app, lambda: len(app.named("realtimeBar")) >= 3, seconds=2.5)
    bars = [c.args for c in app.named("realtimeBar")]
    assert all(rid == 11 for rid, *_ in bars)
    times = [t for _, t, *_ in bars]
    assert times[0] % 5 == 0 and times == [times[0] + 5 * i for i in range(len(times))]
    for _, t, o, h, lo, c, volume, wap, count in bars:
        assert lo <= min(o, c) <= max(o, c) <= h and volume > 0 and count > 0


def test_cancel_real_time_bars_stops_them(sim: SimulatorThread, app: IBApp) -> None:
    app.reqRealTimeBars(12, stock("SPY"), 5, "MIDPOINT", False, [])
    app.sync()
    step_until(sim, app, lambda: app.named("realtimeBar"), seconds=5)
    app.cancelRealTimeBars(12)
    app.sync()
    mark = app.mark()
    sim.step(20)
    app.sync()
    assert not app.named("realtimeBar", mark)


def test_contract_details_describe_the_stock_then_end_marker(app: IBApp) -> None:
    app.reqContractDetails(21, stock("NVDA"))
    app.wait_call("contractDetailsEnd", lambda rid: rid == 21)
    (call,) = app.named("contractDetails")
    details = call.args[1]
    assert call.args[0] == 21
    assert (details.contract.symbol, details.contract.secType, details.contract.currency) == ("NVDA", "STK", "USD")
    assert details.contract.conId > 0 and details.minTick == pytest.approx(0.01)
    assert "LMT" in details.orderTypes and details.timeZoneId == "US/Eastern"


def test_contract_details_for_unknown_symbol_gets_error_200(app: IBApp) -> None:
    app.reqContractDetails(22, stock("ZZZZ"))
    app.wait_call("error", lambda rid, t, code, *a: rid == 22 and code == 200)
    app.sync()
    assert not app.named("contractDetailsEnd")


def test_market_can_replay_custom_symbols_with_chosen_start_price(make_sim: MakeSim, connect: Connect) -> None:
    sim = make_sim(symbols=(SymbolSpec(symbol="TEST", walk=WalkParams(start_price=Decimal("50"))),))
    app = connect(sim)
    app.reqMktData(1, stock("TEST"), "", False, False, [])
    app.sync()
    sim.step(1)
    app.sync()
    bids = [c.args[2] for c in app.named("tickPrice") if c.args[1] == BID]
    assert bids and all(45 < b < 55 for b in bids)


def test_replayed_csv_bars_drive_the_ticks_a_client_receives(make_sim: MakeSim, connect: Connect,
                                                             tmp_path) -> None:
    csv = tmp_path / "aapl.csv"
    # Two 1-minute bars from the market start (New York local time in the file).
    csv.write_text("timestamp,open,high,low,close,volume\n"
                   "2024-01-02T09:30:00,100.00,101.00,99.50,100.50,6000\n"
                   "2024-01-02T09:31:00,100.50,102.00,100.00,101.50,6000\n")
    sim = make_sim(symbols=(SymbolSpec(symbol="AAPL", bars_csv=str(csv)),))
    app = connect(sim)
    app.reqMktData(1, stock("AAPL"), "", False, False, [])
    # The replay ends with the second bar: the day's cumulative volume then is the file's 12,000.
    step_until(sim, app, lambda: any(c.args[1] == 8 and c.args[2] == 12000 for c in app.named("tickSize")),
               seconds=10, max_steps=20)
    lasts = [c.args[2] for c in app.named("tickPrice") if c.args[1] == 4]
    assert min(lasts) == pytest.approx(99.50) and max(lasts) == pytest.approx(102.00)


@pytest.mark.parametrize(("stagger", "distinct"), [(False, 1), (True, 4)])
def test_stagger_quotes_spreads_symbols_quote_times_over_the_interval(stagger: bool, distinct: int) -> None:
    from simulator.server import DEFAULT_SYMBOLS, Simulator

    symbols = tuple(DEFAULT_SYMBOLS[:4])
    config = SimulatorConfig(clock="stepped", symbols=symbols, stagger_quotes=stagger)
    sim = Simulator(config)
    sim.advance(config.start_ns + 10 * 250_000_000)
    times = {s.symbol: sim.quotes[s.symbol].ts_ns % 250_000_000 for s in symbols}
    assert len(set(times.values())) == distinct
    if stagger:  # symbol i of 4 quotes i quarters of an interval after the first
        assert sorted(times.values()) == [0, 62_500_000, 125_000_000, 187_500_000]
