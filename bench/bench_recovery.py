"""Benchmark of recovery after kill -9 of a symbol actor: SIGKILL to its new incarnation ready, and to its next quote.

Run: ``python -m bench.bench_recovery [--kills 20] [--symbols 10] [--seed 8] [--gap 0.5] [--json PATH]``

The system runs as bench.bench_runtime runs it (its start_system: multiprocTCPBase on a free
admin port, the simulator in its own spawned process at speed 1, a quote every 250 ms per symbol
staggered, the moving-average cross rules on 1 s bars), with `--symbols` symbols, none of which
can order by itself (every rule entry sizes to zero lots), and RecoverySymbolSupervisor below as
the symbols supervisor. Each symbol is first given a short position: the bench sends the risk
gate a market SELL of 100 as a SymbolActor would (reply_to the symbols supervisor) and waits for
the symbol actor to hold it. Short, because the long-only rules never touch it (their exit wants
a long position, their entry a flat one), so a position read after a recovery must equal the one
read before the kill.

Then `--kills` times, `--gap` seconds apart: a seeded choice of symbol, its ChildStatus (pid,
incarnation) from the symbols supervisor (GetChildren), its position (GetPositions), the wall
clock (time.time_ns: one clock for every process), SIGKILL. Measured from the SIGKILL, from stamp
files every process appends to (bench.bench_support.record: no question waits behind a mailbox):

* exit noticed: the supervisor handles the ChildActorExited of the killed incarnation;
* ready: the supervisor handles the new incarnation's ActorReady (configured from the state the
  supervisor kept: its position), the moment GetStatus / GetChildren start reporting it ready;
* first quote: the new incarnation's process handled its first QuoteUpdate. The actor subscribes
  to its quotes itself while it is configured (SubscribeMarketData with its quote channel), so
  this can come a little before the supervisor's "ready"; it includes the wait for a quote to
  reach the new subscriber (the symbol quotes every 250 ms).

After each kill the bench checks, through the admin queries, that the supervisor reports the new
incarnation running and ready in the stamped process, and that the restarted actor holds the
position it held before (quantity, average cost, realized P&L, commissions, state). The table
shows median, p90 (from 10 kills), p99 (from 100 kills) and max; the exit code is 1 when a
position changed across a kill. The symbol restart budget is raised above `--kills` for the run
(the default, 5 in 60 s, would quarantine a symbol killed a sixth time).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import signal
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from decimal import Decimal
from pathlib import Path
from typing import Any, Final, TypeVar

from bench import bench_runtime
from bench.bench_runtime import Strategy, System, percentile, start_system, wait_for
from bench.bench_support import TimedSymbolSupervisor, stamp

SUPERVISOR_CLASS: Final = "bench.bench_recovery.RecoverySymbolSupervisor"
POSITION: Final = Decimal(100)  # shares sold short per symbol before the kills
SETTLE_TIMEOUT_S: Final = 60.0
RECOVERY_TIMEOUT_S: Final = 60.0
_MS: Final = 1_000_000
_T = TypeVar("_T")


# ---------------------------------------------------------------- in the actor system


class RecoverySymbolSupervisor(TimedSymbolSupervisor):
    """The timed symbols supervisor, stamping each child's exit and each incarnation's readiness."""

    def on_child_exited(self, key: str, reason: Any) -> None:
        child = self.children.get(key)
        stamp("exited", key, child.incarnation if child is not None else 0)
        super().on_child_exited(key, reason)

    def on_child_ready(self, key: str, address: Any, incarnation: int) -> None:
        child = self.children.get(key)
        stamp("ready", key, incarnation, child.pid if child is not None else 0)
        super().on_child_ready(key, address, incarnation)


# ---------------------------------------------------------------- stamps


@dataclass
class Stamps:
    """Every stamp line read so far from a directory of stamp files, read on from where each file was left."""

    directory: Path
    offsets: dict[Path, int] = field(default_factory=dict)
    exited: dict[tuple[str, int], int] = field(default_factory=dict)        # (symbol, incarnation) -> ns
    ready: dict[tuple[str, int], tuple[int, int]] = field(default_factory=dict)  # -> (ns, pid)
    first_quote: dict[tuple[str, int], int] = field(default_factory=dict)   # (symbol, pid) -> received ns

    def read(self) -> None:
        """Parse the complete lines appended since the last read (a line cut short waits for its end)."""
        for path in self.directory.glob("stamps-*.tsv"):
            pid = int(path.stem.split("-", 1)[1])
            start = self.offsets.get(path, 0)
            with path.open("rb") as f:
                f.seek(start)
                chunk = f.read()
            end = chunk.rfind(b"\n") + 1
            self.offsets[path] = start + end
            for line in chunk[:end].decode("ascii").splitlines():
                self._take(line.split("\t"), pid)

    def _take(self, fields: list[str], pid: int) -> None:
        try:
            stage, key, numbers = fields[0], fields[1], [int(n) for n in fields[2:]]
        except (IndexError, ValueError):
            return
        if stage == "exited" and len(numbers) == 2:
            self.exited.setdefault((key, numbers[1]), numbers[0])
        elif stage == "ready" and len(numbers) == 3:
            self.ready.setdefault((key, numbers[1]), (numbers[0], numbers[2]))
        elif stage == "quote" and numbers:
            self.first_quote.setdefault((key, pid), numbers[0])

    def await_(self, find: Callable[[], _T | None], timeout: float, what: str) -> _T:
        """Return `find()` once it finds something after a read; raise after `timeout` seconds."""
        def probe() -> _T | None:
            self.read()
            return find()
        found = wait_for(probe, timeout, what, 0.005)
        assert found is not None
        return found


# ---------------------------------------------------------------- the system


@contextmanager
def restart_budget(max_restarts: int) -> Iterator[None]:
    """Let bench_runtime.start_system configure a symbol restart budget of `max_restarts` in 60 s."""
    from core.config import RestartBudget

    original = bench_runtime.make_config

    def make_config(symbols: Sequence[str], work: Path, strategy: Strategy) -> Any:
        config = original(symbols, work, strategy)
        budget = RestartBudget(max_restarts=max_restarts, window_s=60.0)
        return replace(config, supervision=replace(config.supervision, symbol=budget))

    bench_runtime.make_config = make_config
    try:
        yield
    finally:
        bench_runtime.make_config = original


def ask(system: System, to: Any, question: Any, expect: type[_T], timeout: float = 10.0) -> _T:
    """Ask `to`; return its answer to this very question (late answers to earlier ones are skipped)."""
    deadline = time.monotonic() + timeout
    reply = system.asys.ask(to, question, timeout)
    while not (isinstance(reply, expect) and getattr(reply, "cause_id", None) == question.msg_id):
        left = deadline - time.monotonic()
        if left <= 0 or reply is None:
            raise RuntimeError(f"no {expect.__name__} answered {type(question).__name__} (last reply {reply!r})")
        reply = system.asys.listen(left)
    return reply


def symbols_supervisor(system: System) -> Any:
    """Return the address of the symbols supervisor, from the root's status."""
    from messages import GetStatus, StatusSnapshot

    status = ask(system, system.supervisor, GetStatus(), StatusSnapshot, 30)
    found = next((c for c in status.children if c.supervisor == "supervisor" and c.key == "symbols"), None)
    if found is None or found.address is None:
        raise RuntimeError("the root supervisor reports no running symbols supervisor")
    return found.address


def child(system: System, supervisor: Any, symbol: str) -> Any:
    """Return the ChildStatus of `symbol` as the symbols supervisor reports it (None if it has none)."""
    from messages import ChildrenSnapshot, GetChildren

    snapshot = ask(system, supervisor, GetChildren(), ChildrenSnapshot)
    return next((c for c in snapshot.children if c.key == symbol), None)


def held(system: System, address: Any, symbol: str) -> tuple[Any, ...]:
    """Return what must survive a kill of the symbol's actor: quantity, average cost, realized P&L, fees, state."""
    from messages import GetPositions, PositionsSnapshot

    snapshot = ask(system, address, GetPositions(symbol=symbol), PositionsSnapshot)
    if len(snapshot.positions) != 1:
        raise RuntimeError(f"{symbol}: GetPositions answered {snapshot.positions!r}")
    p = snapshot.positions[0]
    return p.quantity, p.avg_cost, p.realized_pnl, p.commissions, p.state.value


def open_short(system: System, supervisor: Any, symbol: str) -> None:
    """Send the risk gate a market SELL of POSITION for `symbol`, as a symbol actor sends its intents."""
    from core import order_group as og
    from core.orders import new_order
    from core.types import OrderType, Side
    from messages import GetStatus, GroupKind, OrderIntent, StatusSnapshot

    status = ask(system, system.supervisor, GetStatus(), StatusSnapshot, 30)
    risk = next((c.address for c in status.children if c.supervisor == "supervisor" and c.key == "risk"), None)
    if risk is None:
        raise RuntimeError("the root supervisor reports no running risk gate")
    group = og.single(f"recovery-{symbol}", new_order(ref="entry", symbol=symbol, side=Side.SELL,
                                                       quantity=POSITION, order_type=OrderType.MKT))
    head = group.legs[0]
    system.asys.tell(risk, OrderIntent(intent_id=group.id, symbol=symbol, side=head.side, quantity=head.quantity,
                                       order_type=head.order_type, kind=GroupKind(group.kind.value),
                                       legs=group.legs, market_price=Decimal(100), rule="bench_recovery",
                                       reply_to=supervisor))


# ---------------------------------------------------------------- the bench


@dataclass(frozen=True, slots=True, kw_only=True)
class Kill:
    """One SIGKILL of a symbol actor and what followed (ms after the kill)."""

    symbol: str
    incarnation: int        # the new one
    exit_noticed_ms: float
    ready_ms: float
    first_quote_ms: float
    position_kept: bool
    before: tuple[str, ...]
    after: tuple[str, ...]


def summary(values: Sequence[float]) -> dict[str, float | int | None]:
    """Return n, p50, p90 (from 10 values), p99 (from 100) and max of `values`; None where not shown."""
    def finite(x: float) -> float | None:
        return None if math.isnan(x) else x
    return {"n": len(values), "p50": finite(percentile(values, 0.5)),
            "p90": finite(percentile(values, 0.9)) if len(values) >= 10 else None,
            "p99": finite(percentile(values, 0.99)) if len(values) >= 100 else None,
            "max": max(values) if values else None}


def bench_recovery(symbols: int, kills: int, seed: int, gap: float) -> list[Kill]:
    """Give `symbols` symbols a short position, then SIGKILL a seeded choice of symbol actor `kills` times."""
    names = [f"S{i:03d}" for i in range(symbols)]
    strategy = Strategy(volatility=3.0, stop_atr="1", target_atr="1", trading=0)
    with restart_budget(min(1000, kills + 5)):
        system = start_system(names, strategy, (("symbols", SUPERVISOR_CLASS),), hold_quotes=True)
    stamps = Stamps(system.work / "stamps")
    results: list[Kill] = []
    try:
        system.sim.release_quotes()
        supervisor = symbols_supervisor(system)
        for name in names:
            open_short(system, supervisor, name)

        def all_short() -> bool:
            for name in names:
                c = child(system, supervisor, name)
                if c is None or c.address is None or held(system, c.address, name)[0] != -POSITION:
                    return False
            return True

        wait_for(all_short, SETTLE_TIMEOUT_S, f"a short position of {POSITION} in each symbol actor", 0.2)
        stamps.await_(lambda: all(any(k == name for k, _ in stamps.first_quote) for name in names) or None,
                      SETTLE_TIMEOUT_S, "a quote handled by every symbol actor")
        print(f"  {symbols} symbols: started in {system.start_s:.1f} s, each short {POSITION}; "
              f"{kills} kills {gap:g} s apart (seed {seed})", flush=True)
        rng = random.Random(seed)
        for i in range(kills):
            symbol = rng.choice(names)
            results.append(kill_once(system, supervisor, stamps, symbol))
            k = results[-1]
            print(f"  kill {i + 1}/{kills} {symbol} -> #{k.incarnation}: exit noticed {k.exit_noticed_ms:.1f} ms, "
                  f"ready {k.ready_ms:.1f} ms, first quote {k.first_quote_ms:.1f} ms"
                  + ("" if k.position_kept else f"; POSITION CHANGED {k.before} -> {k.after}"), flush=True)
            time.sleep(gap)  # the system settles (the supervisor's Snapshots, tws's announcements) before the next
    finally:
        system.close()
        shutil.rmtree(system.work, ignore_errors=True)
    return results


def kill_once(system: System, supervisor: Any, stamps: Stamps, symbol: str) -> Kill:
    """SIGKILL the actor of `symbol`; wait until its next incarnation is ready and handled a quote."""
    before = child(system, supervisor, symbol)
    if before is None or not (before.running and before.ready and before.pid > 1 and before.address):
        raise RuntimeError(f"{symbol} is not running and ready before its kill: {before!r}")
    if before.pid == os.getpid():
        raise RuntimeError(f"{symbol}: the supervisor reports this bench's own pid")
    position = held(system, before.address, symbol)
    incarnation = before.incarnation + 1
    killed = time.time_ns()
    os.kill(before.pid, signal.SIGKILL)
    ready, pid = stamps.await_(lambda: stamps.ready.get((symbol, incarnation)), RECOVERY_TIMEOUT_S,
                               f"{symbol} #{incarnation} ready")
    exited = stamps.await_(lambda: stamps.exited.get((symbol, before.incarnation)), RECOVERY_TIMEOUT_S,
                           f"{symbol} #{before.incarnation} noticed gone")
    quote = stamps.await_(lambda: stamps.first_quote.get((symbol, pid)), RECOVERY_TIMEOUT_S,
                          f"{symbol} #{incarnation} handling a quote")
    after = child(system, supervisor, symbol)
    if after is None or not (after.running and after.ready and after.incarnation == incarnation and after.pid == pid):
        raise RuntimeError(f"{symbol}: after the kill the supervisor reports {after!r}, "
                           f"not #{incarnation} ready in process {pid}")
    now = held(system, after.address, symbol)
    return Kill(symbol=symbol, incarnation=incarnation, exit_noticed_ms=(exited - killed) / _MS,
                ready_ms=(ready - killed) / _MS, first_quote_ms=(quote - killed) / _MS, position_kept=now == position,
                before=tuple(map(str, position)), after=tuple(map(str, now)))


def figures(kills: list[Kill], symbols: int, seed: int, gap: float) -> dict[str, object]:
    """Return the run's figures for --json (and the suite)."""
    return {
        "symbols": symbols, "kills": len(kills), "seed": seed, "gap_s": gap, "cpus": os.cpu_count(),
        "exit_noticed_ms": summary([k.exit_noticed_ms for k in kills]),
        "ready_ms": summary([k.ready_ms for k in kills]),
        "first_quote_ms": summary([k.first_quote_ms for k in kills]),
        "positions_kept": all(k.position_kept for k in kills),
        "position_changes": [{"symbol": k.symbol, "incarnation": k.incarnation, "before": k.before, "after": k.after}
                             for k in kills if not k.position_kept],
        "each": [{"symbol": k.symbol, "incarnation": k.incarnation, "exit_noticed_ms": k.exit_noticed_ms,
                  "ready_ms": k.ready_ms, "first_quote_ms": k.first_quote_ms, "position_kept": k.position_kept}
                 for k in kills],
    }


def _cell(s: dict[str, Any], key: str) -> str:
    return "-" if s[key] is None else f"{s[key]:,.1f}"


def print_table(result: dict[str, Any]) -> None:
    print(f"\n{'from SIGKILL to':<46}  {'p50 ms':>8}  {'p90 ms':>8}  {'p99 ms':>8}  {'max ms':>8}")
    for label, key in (("the supervisor noticed the exit", "exit_noticed_ms"),
                       ("the new incarnation ready (status reports it)", "ready_ms"),
                       ("the new incarnation handled a quote", "first_quote_ms")):
        s = result[key]
        print(f"{label:<46}  {_cell(s, 'p50'):>8}  {_cell(s, 'p90'):>8}  {_cell(s, 'p99'):>8}  {_cell(s, 'max'):>8}")
    kept = result["positions_kept"]
    print(f"position after each recovery equals the one before: {'yes' if kept else 'NO'} "
          f"({result['kills']} kills of {result['symbols']} symbols)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=20, help="symbol actors killed, one after the other")
    parser.add_argument("--symbols", type=int, default=10, help="symbols quoting (each holds a short position)")
    parser.add_argument("--seed", type=int, default=8, help="seed of the choice of symbol to kill")
    parser.add_argument("--gap", type=float, default=0.5, help="seconds between a recovery and the next kill")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    if not 1 <= args.kills <= 995 or args.symbols < 1 or args.gap < 0:
        parser.error("--kills must be 1..995, --symbols >= 1 and --gap >= 0")
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, bench_runtime._kill_on_signal)
    began = time.monotonic()
    print(f"recovery benchmark: kill -9 of a symbol actor, multiprocTCPBase, simulator in its own process, "
          f"{os.cpu_count()} CPUs", flush=True)
    kills = bench_recovery(args.symbols, args.kills, args.seed, args.gap)
    result = figures(kills, args.symbols, args.seed, args.gap)
    print_table(result)
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        print(f"\nfigures written to {args.json}")
    print(f"\nbenchmark took {time.monotonic() - began:.0f} s")
    return 0 if result["positions_kept"] else 1


if __name__ == "__main__":
    # Run as bench.bench_recovery, not __main__: the actor processes import RecoverySymbolSupervisor from there.
    from bench.bench_recovery import main as _main

    raise SystemExit(_main())
