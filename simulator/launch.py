"""Build a simulator from `config.toml` and run it in the foreground (`bootstrap.py simulator`)."""

from __future__ import annotations

import asyncio
import signal
from dataclasses import replace
from decimal import Decimal
from typing import Any

from core.config import Config, PriceModel
from core.matching import CommissionModel
from simulator.market import DEFAULT_QUOTE_INTERVAL_NS, NS, WalkParams
from simulator.server import Simulator, SimulatorConfig, SymbolSpec

LOT = 100


def walk_params(model: PriceModel, tick: Decimal) -> WalkParams:
    """Translate a config price model (spread in price units, volume per minute) into WalkParams."""
    spread_ticks = max(1, int((model.spread / tick).to_integral_value()))
    steps_per_minute = 60 * NS // DEFAULT_QUOTE_INTERVAL_NS
    # Each step trades uniform 1..max_trade_lots lots: the mean is (1 + max) / 2 lots.
    max_trade_lots = max(1, round(2 * model.volume / steps_per_minute / LOT - 1))
    return WalkParams(start_price=model.price, drift=model.drift, volatility=model.volatility,
                      spread_ticks=spread_ticks, tick=tick, lot=LOT, max_trade_lots=max_trade_lots)


def simulator_config(config: Config, **overrides: Any) -> SimulatorConfig:
    """Return the SimulatorConfig that `config` describes, with keyword overrides applied."""
    sim = config.simulator
    specs = []
    for sym in config.symbols:
        model = sim.model_for(sym.symbol)
        specs.append(SymbolSpec(symbol=sym.symbol, walk=walk_params(model, sym.tick_size),
                                bars_csv=str(model.bars_csv) if model.bars_csv else "", currency=sym.currency))
    result = SimulatorConfig(
        host="127.0.0.1", port=sim.port, seed=sim.seed, speed=sim.speed, clock=sim.clock.value,
        wire=config.broker.wire.value, symbols=tuple(specs),
        commission=CommissionModel(per_share=sim.commission_per_share, minimum=sim.commission_min))
    return replace(result, **{k: v for k, v in overrides.items() if v is not None})


def run_foreground(config: SimulatorConfig) -> int:
    """Serve until SIGINT or SIGTERM; return the process exit code."""
    async def main() -> None:
        sim = Simulator(config)
        await sim.start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        print(f"TWS simulator listening on {config.host}:{sim.port} "
              f"({config.wire} wire, {config.clock} clock x{config.speed}, seed {config.seed}"
              + (f", control port {sim.control_port}" if sim.control_port else "") + "). Ctrl-C stops it.",
              flush=True)
        await stop.wait()
        await sim.stop()
        print("TWS simulator stopped.", flush=True)

    asyncio.run(main())
    return 0
