"""Benchmark of starting an order group actor: PlaceOrderGroup at the groups supervisor -> its ConfigureActor.

Run: ``python -m bench.bench_group_pool [--groups 50] [--interval-ms 100] [--burst 1] [--variants none pool]``

A groups supervisor (bench.bench_support's stamping subclass; each `--variants` entry sets its
pool) runs under multiprocTCPBase with one do-nothing stand-in for tws, symbols and bus, and
group actors log to files as under the launcher. The bench sends it `--groups` bracket
PlaceOrderGroups, `--burst` at a time every `--interval-ms`, and reads the stamps
(time.time_ns in each process): "groups" (the supervisor has the PlaceOrderGroup), "group_up"
(the group actor has its ConfigureActor) and "submit" (its entry SubmitOrder left). Each group
stays alive (the stand-in broker never answers) until the system shuts down.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import tempfile
import time
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any, ClassVar, Final

from thespian.actors import ActorAddress, ActorTypeDispatcher

from bench.bench_support import RECORDS_ENV, TimedOrderGroupSupervisor

_MS: Final = 1_000_000


class Sink(ActorTypeDispatcher):
    """A stand-in for tws, symbols and bus that takes every message and answers none."""

    def receiveMsg_object(self, msg: object, sender: ActorAddress) -> None:
        pass


class UnpooledGroups(TimedOrderGroupSupervisor):
    """No spares: every group's process is created when its PlaceOrderGroup arrives (as before the pool)."""

    SPARES: ClassVar[int] = 0


class PooledGroups(TimedOrderGroupSupervisor):
    """The default pool (OrderGroupSupervisor.SPARES and SPARE_DELAY_S)."""


class PooledNoDelayGroups(TimedOrderGroupSupervisor):
    """The default pool, replacing a taken spare at once (a timer of 0 s)."""

    SPARE_DELAY_S: ClassVar[float] = 0.0


class PooledSlowGroups(TimedOrderGroupSupervisor):
    """The default pool, replacing a taken spare after 50 ms."""

    SPARE_DELAY_S: ClassVar[float] = 0.05


class Pooled4Groups(TimedOrderGroupSupervisor):
    """A pool of 4 spares."""

    SPARES: ClassVar[int] = 4


VARIANTS: Final = {"none": UnpooledGroups, "pool": PooledGroups, "pool-nodelay": PooledNoDelayGroups,
                   "pool-50ms": PooledSlowGroups, "pool4": Pooled4Groups}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _bracket(group_id: str) -> Any:
    from core import order_group as og
    from core.orders import new_order
    from core.types import OrderType, Side, TimeInForce
    from messages import GroupKind, PlaceOrderGroup

    entry = new_order(ref=og.leg_ref(group_id, og.ENTRY), symbol="AAPL", side=Side.BUY,
                      quantity=Decimal(10), order_type=OrderType.LMT, limit_price="100")
    stop = new_order(ref=og.leg_ref(group_id, og.STOP_LOSS), symbol="AAPL", side=Side.SELL,
                     quantity=Decimal(10), order_type=OrderType.STP, stop_price="95", tif=TimeInForce.GTC)
    target = new_order(ref=og.leg_ref(group_id, og.TAKE_PROFIT), symbol="AAPL", side=Side.SELL,
                       quantity=Decimal(10), order_type=OrderType.LMT, limit_price="110",
                       tif=TimeInForce.GTC)
    group = og.bracket(group_id, entry, stop, target)
    return PlaceOrderGroup(group_id=group_id, kind=GroupKind.BRACKET, symbol="AAPL", legs=group.legs,
                           approval="test")


def _read(directory: Path) -> dict[str, dict[str, int]]:
    stamps: dict[str, dict[str, int]] = {}
    for path in directory.glob("stamps-*.tsv"):
        for line in path.read_text(encoding="ascii").splitlines():
            stage, key, t, *_ = line.split("\t")
            stamps.setdefault(stage, {}).setdefault(key, int(t))
    return stamps


def _pct(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def run(variant: str, groups: int, interval_ms: float, burst: int, settle_s: float) -> dict[str, list[float]]:
    """Start the groups supervisor `variant`, place `groups` brackets; return each stage's latencies in ms."""
    from thespian.actors import ActorSystem

    from core.config import Config, SystemConfig
    from messages import ActorStatusSnapshot, ConfigureActor, GetActorStatus, Peer

    work = Path(tempfile.mkdtemp(prefix="bench_group_pool-"))
    (work / "stamps").mkdir()
    os.environ[RECORDS_ENV] = str(work / "stamps")
    os.environ["THESPIAN_BASE_IPADDR"] = "127.0.0.1"
    os.environ["IBACTORS_LOG_DIR"] = str(work / "logs")  # group actors log as under the launcher
    asys = ActorSystem("multiprocTCPBase", {"Admin Port": _free_port(), "Process Startup Method": "fork"},
                       transientUnique=True)
    sent: dict[str, int] = {}
    stamps: dict[str, dict[str, int]] = {}
    ids = [f"g-{i}" for i in range(groups)]
    try:
        sink = asys.createActor(Sink)
        sup = asys.createActor(VARIANTS[variant])
        config = Config(system=SystemConfig(log_dir=work / "logs"))
        peers = tuple(Peer(name=n, address=sink) for n in ("tws", "symbols", "bus", "supervisor"))
        asys.tell(sup, ConfigureActor(key="groups", config=config, peers=peers, reply_to=sink))
        status = asys.ask(sup, GetActorStatus(), 30)
        if not (isinstance(status, ActorStatusSnapshot) and status.configured):
            raise RuntimeError(f"the groups supervisor did not start: {status!r}")
        time.sleep(settle_s)  # the pool fills
        for start in range(0, groups, burst):
            for group_id in ids[start:start + burst]:
                place = _bracket(group_id)
                sent[group_id] = time.time_ns()
                asys.tell(sup, place)
            time.sleep(interval_ms / 1000)
        deadline = time.monotonic() + 60
        while len(stamps.get("submit", {})) < groups and time.monotonic() < deadline:
            time.sleep(0.1)
            stamps = _read(work / "stamps")
    finally:
        asys.shutdown()
        shutil.rmtree(work, ignore_errors=True)

    def between(a: dict[str, int], b: dict[str, int]) -> list[float]:
        return [(b[g] - a[g]) / _MS for g in ids if g in a and g in b]

    groups_in, up, submit = (stamps.get(stage, {}) for stage in ("groups", "group_up", "submit"))
    return {"groups -> group_up": between(groups_in, up),
            "groups -> entry submit": between(groups_in, submit),
            "bench tell -> group_up": between(sent, up)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--groups", type=int, default=50)
    parser.add_argument("--interval-ms", type=float, default=100.0)
    parser.add_argument("--burst", type=int, default=1)
    parser.add_argument("--settle", type=float, default=1.0, help="seconds before the first group")
    parser.add_argument("--variants", nargs="+", default=["none", "pool"], choices=sorted(VARIANTS))
    args = parser.parse_args(argv)
    print(f"{args.groups} brackets, {args.burst} every {args.interval_ms:g} ms")
    print(f"{'variant':<12}  {'stage':<24} {'n':>3} {'median ms':>10} "
          f"{'p90 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    for variant in args.variants:
        for stage, values in run(variant, args.groups, args.interval_ms, args.burst, args.settle).items():
            if not values:
                print(f"{variant:<12}  {stage:<24} {0:>3}")
                continue
            print(f"{variant:<12}  {stage:<24} {len(values):>3} {statistics.median(values):>10.2f} "
                  f"{_pct(values, 0.9):>8.2f} {_pct(values, 0.99):>8.2f} {max(values):>8.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
