"""The demo bar data: seeded one-minute OHLCV bars, the same bytes for the same arguments on any machine.

Regular New York sessions (09:30-16:00, Monday to Friday, 390 bars a day; holidays are not
skipped), one CSV per symbol in core.bar_data's format. Prices follow a multiplicative random walk
(numpy's PCG64 seeded per symbol from `seed` and the symbol's name, so adding a symbol does not
change the others) with a little mean reversion and an intraday volatility smile, rounded to the
cent; each bar's open is the previous close, high and low bound open and close, and volume is
larger at the open and the close.

Only exactly rounded arithmetic is used (+, -, *, /, sqrt on uniform draws; the shocks are
Irwin-Hall sums of 12 uniforms, not numpy's normal sampler, whose tails call the platform's libm),
so the files are the same bytes on every machine.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Final

import numpy as np

from core.bar_data import COLUMNS, NY

BARS_PER_DAY: Final = 390
DEFAULT_SYMBOLS: Final = ("AAPL", "MSFT", "SPY")
_OPEN: Final = time(9, 30)
_START_PRICE: Final = {"AAPL": 190.0, "MSFT": 370.0, "SPY": 470.0}
_CENT: Final = Decimal("0.01")


def trading_days(start: date, count: int) -> list[date]:
    """Return `count` weekdays from `start` (itself included when it is one)."""
    days: list[date] = []
    d = start
    while len(days) < count:
        if d.weekday() < 5:
            days.append(d)
        d += timedelta(days=1)
    return days


def _rng(symbol: str, seed: int) -> np.random.Generator:
    digest = hashlib.sha256(f"{seed}:{symbol}".encode()).digest()
    return np.random.Generator(np.random.PCG64(int.from_bytes(digest[:8], "big")))


def demo_rows(symbol: str, *, days: int, seed: int, start: date = date(2024, 1, 2),
              annual_vol: float = 0.25) -> Iterator[tuple[int, str, str, str, str, int]]:
    """Yield (epoch seconds, open, high, low, close, volume) for `days` sessions of `symbol`."""
    rng = _rng(symbol, seed)
    price = _START_PRICE.get(symbol, 100.0 + (int(hashlib.sha256(symbol.encode()).hexdigest(), 16) % 400))
    anchor = price
    minute_vol = annual_vol / float(np.sqrt(252 * BARS_PER_DAY))
    u = np.linspace(-1.0, 1.0, BARS_PER_DAY)
    smile = 0.7 + 0.9 * u * u  # busier at the open and the close
    for day in trading_days(start, days):
        shocks = rng.random((BARS_PER_DAY, 3, 12)).sum(axis=2) - 6.0  # ~N(0, 1), exactly reproducible
        opened = datetime.combine(day, _OPEN, tzinfo=NY)
        first = int(opened.timestamp())
        for i in range(BARS_PER_DAY):
            sigma = minute_vol * float(smile[i])
            drift = 0.002 * (anchor - price) / anchor  # a little mean reversion
            close = price * (1.0 + drift + sigma * float(shocks[i, 0]))
            wick = abs(float(shocks[i, 1])) * sigma * price * 0.6
            tail = abs(float(shocks[i, 2])) * sigma * price * 0.6
            o, c = _cents(price), _cents(close)
            h = max(o, c, _cents(max(price, close) + wick))
            lo = min(o, c, _cents(max(0.01, min(price, close) - tail)))
            volume = int(200 + 1800 * float(smile[i]) + int(abs(float(shocks[i, 1])) * 500))
            yield first + 60 * i, str(o), str(h), str(lo), str(c), volume
            price = float(c)


def _cents(value: float) -> Decimal:
    return Decimal(repr(value)).quantize(_CENT)


def write_demo_data(directory: str | Path, *, symbols: Sequence[str] = DEFAULT_SYMBOLS, days: int = 5,
                    seed: int = 7) -> list[Path]:
    """Write one `<SYMBOL>.csv` per symbol into `directory` (created); return their paths."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    for symbol in symbols:
        path = out / f"{symbol}.csv"
        with open(path, "w", encoding="ascii", newline="\n") as f:
            f.write(",".join(COLUMNS) + "\n")
            for ts, o, h, lo, c, v in demo_rows(symbol, days=days, seed=seed):
                f.write(f"{ts},{o},{h},{lo},{c},{v}\n")
        paths.append(path)
    return paths
