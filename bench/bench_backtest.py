"""Benchmark of backtests: bars/s of our backtest against backtrader on the same bars and strategy, by size.

Run: ``pip install -e '.[bench]'`` once (backtrader), then
``python -m bench.bench_backtest [--bars 10000 100000] [--json FILE]``

For each size, one symbol of seeded demo one-minute bars (core.demo_data) is backtested twice in
this run: by `bootstrap.py backtest`'s driver (actors.backtest: the live actors on simpleSystemBase,
SimBroker, the journal, risk, order groups) and by backtrader (its own engine, no journal), both
with the same strategy: long when SMA(5) crosses above SMA(20), a market entry sized so that a stop
2 ATR(14) away loses 100, a stop 2 ATR and a target 3 ATR away (a bracket), out when SMA(5)
crosses back below. Wall time of the run itself (data already on disk; our report not made).
Goals (issue 8): ours >= 2x backtrader's bars/s; bars/s at the largest size within 20 % of the
smallest. The table says MET or MISSED; --json writes the figures.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Final

from core.config import parse_config
from core.demo_data import BARS_PER_DAY, write_demo_data
from core.rules import moving_average_cross

SYMBOL = "AAPL"
RULES: Final = moving_average_cross(fast=5, slow=20, atr_period=14, stop_atr=2, target_atr=3, risk=100,
                                    max_quantity=1000)
RISK = {"max_order_quantity": 10_000, "max_order_notional": 10_000_000, "max_position_per_symbol": 10_000,
        "max_gross_exposure": 100_000_000, "max_net_exposure": 100_000_000, "max_open_orders": 100,
        "max_orders_per_minute": 6000, "daily_loss_limit": 100_000_000}


def ours(data: Path, out: Path) -> tuple[float, int]:
    """Return (seconds, fills) of our backtest over `data`."""
    from loguru import logger

    from actors.backtest import run_backtest
    from journal.store import Journal

    logger.remove()
    config = parse_config({"symbols": {SYMBOL: {}}, "rules": RULES, "risk": RISK,
                           "system": {"log_level": "WARNING"}}, source="<bench>")
    started = time.perf_counter()
    result = run_backtest(config, data, out)
    took = time.perf_counter() - started
    with Journal.open(result.journal, readonly=True) as journal:
        fills = len(journal.executions())
    return took, fills


def backtrader_run(csv: Path) -> tuple[float, int] | None:
    """Return (seconds, fills) of the same strategy in backtrader, or None when it is not installed."""
    try:
        import backtrader as bt
    except ImportError:
        return None

    class MaCross(bt.Strategy):
        def __init__(self) -> None:
            self.fast, self.slow = bt.ind.SMA(period=5), bt.ind.SMA(period=20)
            self.cross = bt.ind.CrossOver(self.fast, self.slow)
            self.atr = bt.ind.ATR(period=14)
            self.fills = 0
            self.live: list[Any] = []

        def notify_order(self, order: Any) -> None:
            if order.status == order.Completed:
                self.fills += 1

        def next(self) -> None:
            if not self.position and not any(o.alive() for o in self.live):
                if self.cross[0] > 0 and self.atr[0] > 0:
                    size = min(1000, math.floor(100 / (2 * self.atr[0])))
                    if size > 0:
                        price = self.data.close[0]
                        self.live = self.buy_bracket(size=size, exectype=bt.Order.Market,
                                                     stopprice=price - 2 * self.atr[0],
                                                     limitprice=price + 3 * self.atr[0])
            elif self.position and self.cross[0] < 0:
                for order in self.live:
                    if order.alive():
                        self.cancel(order)
                self.close()

    cerebro = bt.Cerebro(stdstats=False)
    cerebro.adddata(bt.feeds.GenericCSVData(dataname=str(csv), dtformat=lambda s: _utc(s), datetime=0, open=1,
                                            high=2, low=3, close=4, volume=5, openinterest=-1,
                                            timeframe=bt.TimeFrame.Minutes, compression=1, headers=True))
    cerebro.addstrategy(MaCross)
    cerebro.broker.setcash(10_000_000)
    started = time.perf_counter()
    (strategy,) = cerebro.run()
    return time.perf_counter() - started, strategy.fills


def _utc(text: str) -> Any:
    from datetime import datetime, timezone
    return datetime.fromtimestamp(int(text), timezone.utc).replace(tzinfo=None)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bars", type=int, nargs="+", default=[10_000, 100_000], help="sizes (one-minute bars)")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args(argv)
    rows: list[dict[str, Any]] = []
    root = Path(tempfile.mkdtemp(prefix="bench_backtest-"))
    try:
        for bars in args.bars:
            days = math.ceil(bars / BARS_PER_DAY)
            data = root / f"data-{bars}"
            (csv,) = write_demo_data(data, symbols=(SYMBOL,), days=days)
            lines = csv.read_text(encoding="ascii").splitlines()[: bars + 1]
            csv.write_text("\n".join(lines) + "\n", encoding="ascii")
            print(f"{bars:,} bars: ours ...", end="", file=sys.stderr, flush=True)
            took, fills = ours(data, root / f"out-{bars}")
            print(f" {took:.1f} s; backtrader ...", end="", file=sys.stderr, flush=True)
            theirs = backtrader_run(csv)
            print(" done" if theirs else " not installed (pip install -e '.[bench]')", file=sys.stderr)
            rows.append({"bars": bars, "ours_s": took, "ours_bars_per_s": bars / took, "ours_fills": fills,
                         "backtrader_s": theirs[0] if theirs else None,
                         "backtrader_bars_per_s": bars / theirs[0] if theirs else None,
                         "backtrader_fills": theirs[1] if theirs else None})
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(f"\n{'bars':>10}  {'ours bars/s':>12}  {'backtrader bars/s':>18}  {'ratio':>6}  {'fills ours/bt':>14}")
    for r in rows:
        ratio = r["ours_bars_per_s"] / r["backtrader_bars_per_s"] if r["backtrader_bars_per_s"] else None
        r["ratio"] = ratio
        print(f"{r['bars']:>10,}  {r['ours_bars_per_s']:>12,.0f}  "
              f"{(r['backtrader_bars_per_s'] or 0):>18,.0f}  {(ratio or 0):>6.2f}  "
              f"{r['ours_fills']:>6} / {r['backtrader_fills'] if r['backtrader_fills'] is not None else '-':<6}")
    ratios = [r["ratio"] for r in rows if r["ratio"]]
    if ratios:
        worst = min(ratios)
        print(f"goal ours >= 2x backtrader: {'MET' if worst >= 2 else 'MISSED'} (worst ratio {worst:.2f})")
    if len(rows) > 1:
        drift = rows[-1]["ours_bars_per_s"] / rows[0]["ours_bars_per_s"]
        print(f"goal bars/s at {rows[-1]['bars']:,} within 20 % of {rows[0]['bars']:,}: "
              f"{'MET' if drift >= 0.8 else 'MISSED'} ({drift:.2f}x)")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
