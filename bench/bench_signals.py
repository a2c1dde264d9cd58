"""Benchmark of the signal path: signal-to-order latency with 100 symbols and 50 rules each (issue 5).

Run: ``python -m bench.bench_signals [--symbols 100] [--rules 50] [--signals 100] [--rate 10] [--repeat 1]``

The whole tree runs as `bootstrap.py run` runs it, through bench_runtime.start_system
(multiprocTCPBase on a free admin port, the root Supervisor by globalName, StartSystem with a
Config) against the RecordingSimulator in its own spawned process (speed 1, a quote every 250 ms
per symbol, simulator pacing off; the connection's own pacer stays at its default, 45 msgs/s).
Every symbol runs the same `--rules` rules on 1 s bars, warmed up on 30 historical bars: 49 (by
default) generated from a seeded list of templates — signal-confidence thresholds above 1.0,
short signals (only longs are sent), position, time, market and indicator conditions that
cannot hold, `all`/`any` lists, cooldowns and daily limits, some on "bar" events — which are
evaluated but never fire, and at the lowest priority the one entry rule (a market bracket
sized by ATR(14) risk), so every signal rule is evaluated before it fires.

The bench process stands in for SignalSource: it holds an ActorSystem handle on the admin port
and tells each PredictionSignal (LONG, confidence 0.8) straight to the StrategyController, as a
source does, `--rate` per second, round robin over the symbols. Each symbol gets at most one
signal per run, so every signal meets a flat symbol with nothing working (its entry then fills
and the bracket stays): `--signals` is capped at `--symbols`; `--repeat` starts a fresh system
per run. Signals are sent only when every symbol actor has its history and a quote and the
controller has a route to each.

Latency = the simulator's arrival time of the bracket's ":entry" PLACE_ORDER - the signal's
send stamp taken just before `asys.tell` (time.monotonic_ns: one clock for every process on
Linux). A signal without its entry at the simulator within NO_ORDER_S counts as "no order".
The breakdown uses wall-clock stamps of bench_support.SignalTimedSymbolActor (received, rules
started, rules done, entry SubmitOrder sent) and TimedTwsConnection (the SubmitOrder received).
The default 10 signals/s needs 30 PLACE_ORDER/s (three legs a bracket), inside the connection's
45/s budget. Above 15 signals/s the brackets need more than the pacer lets out (IB's limit is 50
messages/s): entries then queue in the pacer, so the table also shows the latency up to the
connection, before the pacer, and the run says so.
The run's processes are stopped in every case, as bench_runtime does.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Final

from bench import bench_runtime as rt

NO_ORDER_S: Final = 5.0
WARMUP_BARS: Final = 30  # ATR(14) and the templates' indicators are known from the history
ATR_PERIOD: Final = 14
VOLATILITY: Final = 3.0  # a lively price, so ATR(14) of 1 s bars leaves room for a stop and a target
CONFIDENCE: Final = Decimal("0.8")
SEED: Final = 5
_MS: Final = 1_000_000
BRACKET_LEGS: Final = 3  # entry, stop-loss, take-profit: one PLACE_ORDER each
ACTOR_CLASSES: Final = (("tws", "bench.bench_support.TimedTwsConnection"),
                        ("symbols", "bench.bench_support.SignalTimedSymbolSupervisor"))
ENTRY_RULE: Final = "enter_long"
ENTRY_WHEN: Final = "signal.long and signal.confidence >= 0.5 and position.flat and not position.entry_working"

STAGES: Final = (
    ("bench tell -> symbol actor has the signal (via the controller)", "sent", "received"),
    ("symbol: expiry check -> rules start", "received", "rules"),
    ("symbol: evaluate the signal rules (Situation, evaluate, 'fired' log line)", "rules", "decided"),
    ("symbol: bracket, Snapshot to its supervisor -> entry SubmitOrder sent", "decided", "submit"),
    ("entry SubmitOrder -> tws has it", "submit", "tws"),
    ("tws: id, pacer, write -> PLACE_ORDER at simulator", "tws", "arrived"),
)


# ---------------------------------------------------------------- the rules

Template = Callable[[random.Random], dict[str, object]]


def _bracket(rng: random.Random, side: str = "signal") -> dict[str, object]:
    return {"type": "open_bracket", "side": side, "risk": rng.choice([50, 100, 250]),
            "stop_atr": rng.choice(["1.5", "2", "2.5"]), "target_atr": rng.choice(["2", "3", "4"]),
            "atr_period": rng.choice([10, 14, 20]), "max_quantity": 100}


def _log(text: str) -> dict[str, object]:
    return {"type": "log", "message": f"{{symbol}} {text} at {{market.close}}", "level": "INFO"}


# Each template is a realistic rule whose condition never holds on this bench's signals and bars:
# only LONG signals of confidence 0.8 are sent, each to a flat symbol, and prices stay near 100.
SIGNAL_TEMPLATES: Final[dict[str, Template]] = {
    "conf_above_one": lambda r: {"when": f"signal.long and signal.confidence >= {r.choice(['1.01', '1.1', '1.5'])}",
                                 "action": _bracket(r)},
    "short_entry": lambda r: {"when": f"signal.short and signal.confidence >= {r.choice(['0.5', '0.65', '0.8'])}"
                                      " and position.flat and not position.entry_working",
                              "all": [f"known(atr({ATR_PERIOD}))"], "action": _bracket(r, "sell")},
    "flat_signal_close": lambda r: {"when": "signal.flat and not position.flat", "action": {"type": "close_position"}},
    "reversal_close": lambda r: {"when": "(position.long and signal.short) or (position.short and signal.long)",
                                 "final": True, "action": {"type": "close_position"}},
    "rsi_extreme": lambda r: {"when": f"signal.long and rsi({r.choice([7, 14, 21])}) > 101",
                              "action": {"type": "open_order", "side": "buy", "quantity": 10}},
    "sma_huge": lambda r: {"when": f"signal.long and sma({r.choice([5, 10, 20])}) > 1e9", "action": _bracket(r)},
    "late_hour": lambda r: {"when": f"signal.long and time.hour > {r.randint(30, 40)}", "action": _log("late long")},
    "wide_spread": lambda r: {"when": f"signal.long and market.spread > {r.randint(50, 90)}",
                              "action": {"type": "cancel_orders"}},
    "held_forever": lambda r: {"when": "not position.flat and position.minutes_held > 1e6",
                               "action": {"type": "scale_out", "fraction": "0.5"}},
    "stale_signal": lambda r: {"when": f"signal.age_s > {r.randint(3600, 86400)}", "action": _log("stale signal")},
    "ema_negative": lambda r: {"when": f"signal.long and ema({r.choice([8, 13, 21])}) < 0",
                               "action": {"type": "open_order", "side": "buy", "quantity": 10, "entry": "limit",
                                          "limit_offset_ticks": 2}},
    "channel_inverted": lambda r: {"when": f"signal.long and highest({(n := r.choice([5, 10]))}) < lowest({n})",
                                   "action": _bracket(r)},
    "negative_volume": lambda r: {"when": "signal.long and market.volume < 0", "action": _log("odd volume")},
    "other_source": lambda r: {"when": f'signal.source == "feed-{r.randint(1, 9)}" and signal.long',
                               "action": _bracket(r)},
    "any_extreme": lambda r: {"when": "signal.long and position.flat",
                              "any": [f"rsi({r.choice([7, 14])}) > 101", "market.price > 1e9"],
                              "action": {"type": "open_order", "side": "buy", "quantity": 5}},
    "all_negative_sma": lambda r: {"when": "signal.long",
                                   "all": ["position.flat", f"sma({r.choice([3, 5, 8])}) < 0"],
                                   "action": _bracket(r)},
    "huge_profit": lambda r: {"when": "position.unrealized_pnl > 1e9", "action": {"type": "break_even"}},
    "long_horizon": lambda r: {"when": "signal.long and signal.horizon_s > 1e9", "action": _log("long horizon")},
}
BAR_TEMPLATES: Final[dict[str, Template]] = {
    "bar_trail": lambda r: {"when": "not position.flat and position.unrealized_pnl > 1e9 and known(position.stop)",
                            "action": {"type": "trail_stop", "trail_atr": "2.5", "atr_period": ATR_PERIOD}},
    "bar_rsi_cross": lambda r: {"when": f"crosses_above(rsi({r.choice([7, 14])}), 101)", "action": _log("RSI > 101")},
    "bar_night_close": lambda r: {"when": "time.hour > 30 and not position.flat", "action": {"type": "close_position"}},
    "bar_crash": lambda r: {"when": "market.close < 0", "action": {"type": "cancel_orders", "scope": "all"}},
}
BAR_SHARE: Final = 0.2  # of the never-firing rules, this share runs on bars


def make_rules(count: int, seed: int = SEED) -> dict[str, dict[str, object]]:
    """Return `[rules]` tables: `count - 1` never-firing rules from the seeded templates, then the entry rule.

    Every template is used before any repeats; priorities are 1..1000 (the entry rule has 0, the
    lowest), about a third have a cooldown and a fifth a daily fire limit.
    """
    rng = random.Random(seed)
    bars = round((count - 1) * BAR_SHARE)
    picks: list[tuple[str, str, Template]] = []
    for on, templates, n in (("bar", BAR_TEMPLATES, bars), ("signal", SIGNAL_TEMPLATES, count - 1 - bars)):
        names = list(templates)
        while len(names) < n:
            names += rng.sample(list(templates), len(templates))
        picks += [(on, name, templates[name]) for name in names[:n]]
    rng.shuffle(picks)
    rules: dict[str, dict[str, object]] = {}
    for i, (on, name, template) in enumerate(picks):
        rule: dict[str, object] = {"on": on, "priority": rng.randint(1, 1000), **template(rng)}
        if rng.random() < 1 / 3:
            rule["cooldown_s"] = rng.choice([30, 60, 300])
        if rng.random() < 1 / 5:
            rule["max_fires_per_day"] = rng.choice([1, 5, 20])
        rules[f"r{i:02d}_{name}"] = rule
    rules[ENTRY_RULE] = {"on": "signal", "priority": 0, "when": ENTRY_WHEN,
                         "action": {"type": "open_bracket", "side": "buy", "risk": 100, "stop_atr": "2",
                                    "target_atr": "3", "atr_period": ATR_PERIOD, "max_quantity": 100}}
    return rules


def make_config(symbols: Sequence[str], work: Path, rules: int) -> Any:
    """Return a Config: `symbols` at price 100 on 1 s bars, each running `make_rules(rules)`, no demo signals."""
    from actors.launcher import free_port
    from core.config import parse_config

    return parse_config({
        "system": {"admin_port": free_port(), "log_dir": str(work / "logs"), "state_dir": str(work / "state"),
                   "log_level": "INFO"},
        "broker": {"host": "127.0.0.1", "client_id": 1},
        "simulator": {"defaults": {"price": 100, "volatility": VOLATILITY}},
        "symbols": {name: {} for name in symbols},
        "market_data": {"bar_seconds": 1, "warmup_bars": WARMUP_BARS},
        "strategy": {"watch_config": False},
        "rules": make_rules(rules),
        "signals": {"demo": {"interval_s": 3600.0}},  # the bench sends the signals
        "risk": rt.BENCH_RISK,
    }, source="<bench_signals>")


def start(names: Sequence[str], rules: int) -> rt.System:
    """Start the system as bench_runtime.start_system does, with this bench's Config; quotes held."""
    # start_system builds its Config with the module's make_config (the moving-average rules):
    # this bench lends it its own for the call rather than copying start_system.
    saved = rt.make_config
    rt.make_config = lambda symbols, work, strategy: make_config(symbols, work, rules)
    try:
        return rt.start_system(names, rt.Strategy(volatility=VOLATILITY, stop_atr="2", target_atr="3",
                                                  trading=len(names)), ACTOR_CLASSES, hold_quotes=True)
    finally:
        rt.make_config = saved


# ---------------------------------------------------------------- one run


@dataclass
class SignalRun:
    latencies_ms: list[float]
    missing: list[str]          # source ids without an entry at the simulator within NO_ORDER_S
    late_ms: list[float]        # latencies of entries that came after NO_ORDER_S
    stages_ms: dict[str, list[float]]
    eval_cpu_ms: list[float]
    signal_rules: int
    send_rate: float            # signals per second actually sent
    cpu: rt.CpuWindow | None
    ready_s: float
    pacing: int                 # the connection's outbound budget, messages per second
    decided_ms: list[float] = field(default_factory=list)  # sent -> entry SubmitOrder sent (wall)
    at_tws_ms: list[float] = field(default_factory=list)   # sent -> tws has the entry SubmitOrder (wall)


def controller_of(system: rt.System) -> Any:
    """Return the StrategyController's address (the root's "strategy" child)."""
    from messages import GetStatus, StatusSnapshot

    status = system.asys.ask(system.supervisor, GetStatus(), 30)
    if not isinstance(status, StatusSnapshot):
        raise RuntimeError(f"the supervisor did not answer GetStatus (got {status!r})")
    for child in status.children:
        if child.supervisor == "supervisor" and child.key == "strategy" and child.address is not None:
            return child.address
    raise RuntimeError("no running \"strategy\" child in the supervisor's status")


def routes(system: rt.System, controller: Any) -> int:
    """Return how many symbol routes the controller has (from its status detail)."""
    from messages import ActorStatusSnapshot, GetActorStatus

    status = system.asys.ask(controller, GetActorStatus(), 10)
    found = re.search(r"(\d+) symbol route", status.detail) if isinstance(status, ActorStatusSnapshot) else None
    return int(found.group(1)) if found else 0


def wait_ready(system: rt.System, names: Sequence[str], controller: Any, timeout: float) -> None:
    """Wait until every symbol actor has its history and a quote and the controller routes to each."""
    stamps = system.work / "stamps"

    def warm() -> bool:
        groups = rt.read_records(stamps).groups
        return all("history" in groups.get(n, {}) and "first_quote" in groups.get(n, {}) for n in names)

    rt.wait_for(warm, timeout, "every symbol's history and first quote", 0.25)
    rt.wait_for(lambda: routes(system, controller) >= len(names), timeout, "a controller route to every symbol", 0.25)


def send_signals(system: rt.System, controller: Any, names: Sequence[str], count: int, rate: float,
                 run: int) -> dict[str, tuple[str, int, int]]:
    """Tell `count` LONG signals to the controller at `rate`/s; return source_id -> (symbol, mono, wall) at send."""
    from messages import Direction, PredictionSignal

    sent: dict[str, tuple[str, int, int]] = {}
    began = time.monotonic()
    for i in range(count):
        delay = began + i / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)  # the send schedule, not a wait for a condition
        symbol = names[i % len(names)]
        source_id = f"bench-{run}-{i:04d}"
        wall = time.time_ns()
        msg = PredictionSignal(symbol=symbol, direction=Direction.LONG, confidence=CONFIDENCE, horizon_s=300,
                               source="bench", source_id=source_id, created_ns=wall, ts_ns=wall)
        mono, wall = time.monotonic_ns(), time.time_ns()
        system.asys.tell(controller, msg)
        sent[source_id] = (symbol, mono, wall)
    return sent


def bench_signals(symbols: int, rules: int, count: int, rate: float, run: int, keep: bool) -> SignalRun:
    """Start the system, send `count` signals at `rate`/s; return their latencies and breakdown."""
    names = [f"S{i:03d}" for i in range(symbols)]
    began = time.monotonic()
    system = start(names, rules)
    try:
        system.sim.release_quotes()
        controller = controller_of(system)
        wait_ready(system, names, controller, 120)
        ready_s = time.monotonic() - began
        print(f"  {symbols} symbols x {rules} rules: started in {system.start_s:.1f} s, warm and routed after "
              f"{ready_s:.1f} s; sending {count} signals at {rate:g}/s", flush=True)
        roles = rt.roles_of(system)

        def sample() -> dict[int, tuple[int, int, int]]:
            return rt.cpu_sample([*rt.session_pids(system.session), system.sim.pid])

        before, machine0, t0 = sample(), rt.machine_busy(), time.monotonic()
        sent = send_signals(system, controller, names, count, rate, run)
        stamps = sorted(mono for _, mono, _ in sent.values())
        send_rate = (len(stamps) - 1) * 1e9 / (stamps[-1] - stamps[0]) if len(stamps) > 1 else float("nan")
        # Every signal has had its NO_ORDER_S: what has not arrived by then is counted as no order.
        time.sleep(max(0.0, (stamps[-1] + NO_ORDER_S * 1e9 - time.monotonic_ns()) / 1e9))
        after, machine1 = sample(), rt.machine_busy()
        cpu = rt.cpu_window(before, after, roles, time.monotonic() - t0, (machine0, machine1))
        system.sim.hold_quotes()
    finally:
        system.close()
    sim = system.records
    assert sim is not None
    records = rt.read_records(system.work / "stamps")
    rt._discard(system.work, keep)
    return analyse(sent, sim, records, send_rate, cpu, ready_s, system.config.broker.pacing_msgs_per_s)


def analyse(sent: dict[str, tuple[str, int, int]], sim: rt.SimRecords, records: rt.Records, send_rate: float,
            cpu: rt.CpuWindow | None, ready_s: float, pacing: int) -> SignalRun:
    """Match each signal to its symbol's first entry PLACE_ORDER after it; return latencies and stages."""
    entries: dict[str, tuple[str, int, int]] = {}  # symbol -> (group id, mono, wall) of its first entry
    for ref, _transmit, mono, wall in sim.place_orders:
        if ref.endswith(rt.ENTRY_SUFFIX):
            gid = ref[: -len(rt.ENTRY_SUFFIX)]
            entries.setdefault(rt.symbol_of(gid), (gid, mono, wall))
    run = SignalRun(latencies_ms=[], missing=[], late_ms=[], stages_ms={name: [] for name, _, _ in STAGES},
                    eval_cpu_ms=[], signal_rules=0, send_rate=send_rate, cpu=cpu, ready_s=ready_s,
                    pacing=pacing)
    for source_id, (symbol, mono, wall) in sent.items():
        entry = entries.get(symbol)
        marks = records.groups.get(source_id, {}).get("signal")
        if marks is not None and len(marks) == 6:
            run.signal_rules = max(run.signal_rules, marks[5])
            if marks[2]:
                run.eval_cpu_ms.append(marks[4] / _MS)
        if entry is None or entry[1] < mono:
            run.missing.append(source_id)
            continue
        gid, arrived_mono, arrived_wall = entry
        latency = (arrived_mono - mono) / _MS
        if latency > NO_ORDER_S * 1000:
            run.missing.append(source_id)
            run.late_ms.append(latency)
            continue
        run.latencies_ms.append(latency)
        times = {"sent": wall, "arrived": arrived_wall}
        if marks is not None and len(marks) == 6:
            times.update({k: v for k, v in zip(("received", "rules", "decided", "submit"), marks[:4]) if v})
        tws = records.groups.get(gid, {}).get("tws")
        if tws:
            times["tws"] = tws[0]
        for name, start, end in STAGES:
            if start in times and end in times:
                run.stages_ms[name].append((times[end] - times[start]) / _MS)
        if "submit" in times:
            run.decided_ms.append((times["submit"] - wall) / _MS)
        if "tws" in times:
            run.at_tws_ms.append((times["tws"] - wall) / _MS)
    return run


# ---------------------------------------------------------------- the table


def rows_of(runs: list[SignalRun], symbols: int, rules: int, count: int,
            rate: float) -> list[tuple[str, str, str, str]]:
    """Return the table rows: latency percentiles, misses, the breakdown, rule evaluation and CPU (medians of runs)."""
    med, fmt_runs = rt._med, rt._runs
    stats = [rt.summary(r.latencies_ms) for r in runs]
    rows = [(f"signals -> entry orders ({symbols} symbols x {rules} rules)", f"{med(s['n'] for s in stats):.0f}",
             f"of {count} sent at {med(r.send_rate for r in runs):.1f}/s (asked {rate:g}/s), one per symbol; "
             f"ready after {med(r.ready_s for r in runs):.0f} s", "")]
    for key in ("p50", "p90", "p99", "max"):
        values = [s[key] for s in stats]
        rows.append((f"signal-to-order {key}", f"{med(values):,.1f} ms", fmt_runs(values, ",.1f"), ""))
    missing = [len(r.missing) for r in runs]
    late = [x for r in runs for x in r.late_ms]
    rows.append((f"signals without an entry within {NO_ORDER_S:g} s", f"{med(missing):.0f}",
                 (f"{sum(missing)} over all runs; {len(late)} came later (max {max(late):,.0f} ms)" if late
                  else f"{sum(missing)} over all runs"), "" if not sum(missing) else "see the note"))
    for label, values_of in (("signal -> entry SubmitOrder sent (the decision)", lambda r: r.decided_ms),
                             ("signal -> tws has the entry (before its pacer)", lambda r: r.at_tws_ms)):
        parts = [rt.summary(values_of(r)) for r in runs]
        rows.append((f"  {label} p50 / p99",
                     f"{med(p['p50'] for p in parts):,.1f} / {med(p['p99'] for p in parts):,.1f} ms",
                     f"max {med(p['max'] for p in parts):,.1f} ms (wall clocks of the bench and the actors)", ""))
    for name, _, _ in STAGES:
        parts = [rt.summary(r.stages_ms[name]) for r in runs]
        rows.append((f"    {name}", f"{med(p['p50'] for p in parts):,.2f} ms",
                     f"p99 {med(p['p99'] for p in parts):,.1f} ms, max {med(p['max'] for p in parts):,.1f} ms", ""))
    cpu = [rt.summary(r.eval_cpu_ms) for r in runs]
    rows.append((f"rule evaluation CPU per signal ({med(r.signal_rules for r in runs):.0f} signal rules)",
                 f"{med(c['p50'] for c in cpu):,.2f} ms",
                 f"thread CPU of the evaluation stage; p99 {med(c['p99'] for c in cpu):,.2f} ms; "
                 f"the other {rules - med(r.signal_rules for r in runs):.0f} rules run on bars", ""))
    rows.append(rt.cpu_row("CPU while signalling", [r.cpu for r in runs]))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--symbols", type=int, default=100, help="traded symbols, each with its own actor")
    parser.add_argument("--rules", type=int, default=50, help="rules per symbol (the last one is the entry)")
    parser.add_argument("--signals", type=int, default=0,
                        help="signals per run, at most one per symbol (default and cap: --symbols)")
    parser.add_argument("--rate", type=float, default=10.0, help="signals sent per second")
    parser.add_argument("--repeat", type=int, default=1, help="runs, each on a fresh system (medians are shown)")
    parser.add_argument("--keep", action="store_true", help="keep each run's logs and stamps (the path is printed)")
    args = parser.parse_args(argv)
    if args.symbols < 1 or args.rules < 1 or args.rate <= 0 or args.repeat < 1:
        parser.error("--symbols, --rules, --rate and --repeat must be positive")
    count = min(args.signals or args.symbols, args.symbols)
    if args.signals > args.symbols:
        print(f"(--signals {args.signals} capped at {args.symbols}: one signal per flat symbol per run)")
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, rt._kill_on_signal)
    began = time.monotonic()
    print(f"signal-to-order benchmark: multiprocTCPBase, simulator in its own process, {args.repeat} run(s), "
          f"{os.cpu_count()} CPUs\n", flush=True)
    runs = []
    for i in range(args.repeat):
        print(f"run {i + 1}/{args.repeat}", flush=True)
        runs.append(bench_signals(args.symbols, args.rules, count, args.rate, i + 1, args.keep))
    print()
    rt.print_table(rows_of(runs, args.symbols, args.rules, count, args.rate))
    print("\nmeasured: PredictionSignal told to the StrategyController by this process (standing in for "
          "SignalSource) -> the symbol actor evaluates its rules -> the bracket's entry PLACE_ORDER arrives at the "
          "simulator; one signal per flat symbol per run.")
    demand = args.rate * BRACKET_LEGS
    if demand > runs[0].pacing:
        pacing = runs[0].pacing
        print(f"note: {args.rate:g} brackets/s need {demand:g} PLACE_ORDER/s, more than the connection's pacer "
              f"lets out ({pacing} messages/s over every message, protective legs and cancels first; IB allows "
              f"50/s): entries queue in the pacer (the 'tws: id, pacer, write' stage); the 'signal -> tws has the "
              f"entry' row is the latency before it. Try --rate {pacing // (2 * BRACKET_LEGS)} for the unqueued path.")
    for run in runs:
        if run.missing:
            print(f"no order within {NO_ORDER_S:g} s: {', '.join(run.missing[:10])}"
                  + (" ..." if len(run.missing) > 10 else ""))
    print(f"benchmark took {time.monotonic() - began:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
