"""Benchmark of the TWS simulator as an unmodified ibapi client sees it: ticks/s streamed and orders/s acknowledged.

Run: ``python -m bench.bench_simulator [--runs 3] [--seconds 3] [--symbols 100] [--speed 25] [--orders 2000] [--ramp]``

The simulator runs in its own process (as TWS would), pacing off; the client is the official
ibapi EClient/EWrapper, counting callbacks on its message-loop thread.

* ticks/s: every symbol subscribed with reqMktData on an accelerated clock; counted are the
  tickPrice + tickSize callbacks the client handled per wall second (after a warm-up), next to the
  tick messages the server generated in the same time (from its quote counter). Past its capacity
  the ibapi client does not degrade gently: its reader thread concatenates everything waiting on
  the socket before handing any of it on, so what it handles collapses (`--ramp` shows the knee).
* orders/s: N resting limit orders (never marketable, spread over the symbols) placed as fast as
  the client sends them; an order counts once its first orderStatus came back. Throughput is N
  over first send → last acknowledgement; latency is send → acknowledgement per order.
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import queue
import socket
import statistics
import threading
import time
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from ibapi.client import EClient
from ibapi.contract import Contract
from ibapi.order import Order
from ibapi.order_cancel import OrderCancel
from ibapi.wrapper import EWrapper

TICKS_GOAL = 20_000
ORDERS_GOAL = 1_000
CALLBACKS_PER_QUOTE = 7  # tickPrice bid/ask/last, their three tickSize, and VOLUME


class Client(EWrapper, EClient):
    """A lean ibapi client: counts ticks and records when each order was first acknowledged."""

    def __init__(self) -> None:
        EWrapper.__init__(self)
        EClient.__init__(self, wrapper=self)
        self.ticks = 0
        self.next_id = 0
        self.ready = threading.Event()
        self.acked: dict[int, float] = {}
        self.all_acked = threading.Event()
        self.expect = 0
        self.problems: list[str] = []
        self._thread: threading.Thread | None = None

    def start(self, port: int, client_id: int) -> None:
        self.connect("127.0.0.1", port, client_id)
        self._thread = threading.Thread(target=self.run, daemon=True)
        self._thread.start()
        if not self.ready.wait(10):
            raise RuntimeError("no nextValidId from the simulator")

    def stop(self) -> None:
        # ibapi's run loop keeps handling queued messages after disconnect() has reset the server
        # version, and then fails on None >= int: silence the socket and drop the backlog first.
        sock = getattr(self.conn, "socket", None)
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        if self.reader is not None:
            self.reader.join(5)  # it may still be splitting a large backlog into the queue
        with contextlib.suppress(queue.Empty):
            while True:
                self.msg_queue.get_nowait()
        self.disconnect()
        if self._thread is not None:
            self._thread.join(5)

    def nextValidId(self, orderId: int) -> None:
        self.next_id = orderId
        self.ready.set()

    def tickPrice(self, reqId: int, tickType: int, price: float, attrib: Any) -> None:
        self.ticks += 1

    def tickSize(self, reqId: int, tickType: int, size: Decimal) -> None:
        self.ticks += 1

    def orderStatus(self, orderId: int, status: str, *rest: Any) -> None:
        if orderId not in self.acked:
            self.acked[orderId] = time.perf_counter()
            if len(self.acked) >= self.expect:
                self.all_acked.set()

    def error(self, reqId: int, errorTime: int, errorCode: int, errorString: str, *rest: Any) -> None:
        if errorCode not in (2104, 2106, 2158, 202):
            self.problems.append(f"{reqId} {errorCode} {errorString}")

    def connectionClosed(self) -> None:
        self.problems.append("connection closed")


def stock(symbol: str) -> Contract:
    c = Contract()
    c.symbol, c.secType, c.exchange, c.currency = symbol, "STK", "SMART", "USD"
    return c


def _serve(config: Any, conn: Any) -> None:
    """Child process: run the simulator until the parent says stop."""
    from loguru import logger

    from simulator.server import SimulatorThread

    logger.remove()
    sim = SimulatorThread(config).start()
    conn.send((sim.port, sim.control_port))
    conn.recv()
    sim.stop()


class SimulatorProcess:
    """The simulator in a child process, with its control port for counters."""

    def __init__(self, **overrides: Any) -> None:
        from simulator.server import SimulatorConfig

        config = SimulatorConfig(pacing_msgs_per_s=0, control_port=0, **overrides)
        ctx = multiprocessing.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=_serve, args=(config, child), daemon=True)
        self._proc.start()
        if not self._conn.poll(30):
            raise RuntimeError("simulator process did not start")
        self.port, self.control_port = self._conn.recv()

    def stats(self) -> dict[str, Any]:
        from simulator.control import send

        return send(self.control_port, {"cmd": "status"})["status"]

    def stop(self) -> None:
        self._conn.send("stop")
        self._proc.join(10)
        if self._proc.is_alive():
            self._proc.kill()

    def __enter__(self) -> "SimulatorProcess":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass(frozen=True)
class TickRun:
    received_per_s: float
    generated_per_s: float


def bench_ticks(wire: str, symbols: int, speed: float, seconds: float, warmup: float = 1.0) -> TickRun:
    """Stream every symbol to one client; return callbacks handled and tick messages generated per second."""
    from simulator.server import SymbolSpec

    names = tuple(f"S{i:03d}" for i in range(symbols))
    with SimulatorProcess(wire=wire, clock="accelerated", speed=speed,
                          symbols=tuple(SymbolSpec(symbol=n) for n in names)) as sim:
        client = Client()
        client.start(sim.port, 1)
        try:
            for req_id, name in enumerate(names, start=1):
                client.reqMktData(req_id, stock(name), "", False, False, [])
            time.sleep(warmup)  # subscriptions land and the stream settles
            quotes0, ticks0, t0 = sim.stats()["stats"].get("quotes", 0), client.ticks, time.perf_counter()
            time.sleep(seconds)
            quotes1, ticks1, t1 = sim.stats()["stats"].get("quotes", 0), client.ticks, time.perf_counter()
            if client.problems:
                raise RuntimeError(f"client saw problems: {client.problems[:3]}")
        finally:
            client.stop()
    elapsed = t1 - t0
    return TickRun(received_per_s=(ticks1 - ticks0) / elapsed,
                   generated_per_s=(quotes1 - quotes0) * CALLBACKS_PER_QUOTE / elapsed)


@dataclass(frozen=True)
class OrderRun:
    per_s: float
    p50_ms: float
    p99_ms: float


def bench_orders(wire: str, count: int, symbols: int = 5) -> OrderRun:
    """Place `count` resting limit orders as fast as the client sends; return throughput and ack latency."""
    from simulator.server import SymbolSpec

    names = tuple(f"S{i:03d}" for i in range(symbols))
    with SimulatorProcess(wire=wire, clock="stepped", symbols=tuple(SymbolSpec(symbol=n) for n in names)) as sim:
        client = Client()
        client.start(sim.port, 1)
        try:
            contracts = [stock(n) for n in names]
            orders = []
            for i in range(count):
                o = Order()
                # Far from any market on either side: every order rests, nothing fills.
                o.action, o.orderType, o.totalQuantity = ("BUY", "LMT", Decimal(100)) if i % 2 else ("SELL", "LMT", Decimal(100))
                o.lmtPrice = 1.0 if i % 2 else 100_000.0
                o.tif = "GTC"
                orders.append(o)
            client.expect = count
            first = client.next_id
            sent: dict[int, float] = {}
            for i, o in enumerate(orders):
                oid = first + i
                sent[oid] = time.perf_counter()
                client.placeOrder(oid, contracts[i % symbols], o)
            if not client.all_acked.wait(120):
                raise RuntimeError(f"only {len(client.acked)} of {count} orders acknowledged")
            if client.problems:
                raise RuntimeError(f"client saw problems: {client.problems[:3]}")
            client.reqGlobalCancel(OrderCancel())
        finally:
            client.stop()
    latencies = sorted((client.acked[oid] - t) * 1000 for oid, t in sent.items())
    span = max(client.acked.values()) - min(sent.values())
    return OrderRun(per_s=count / span, p50_ms=statistics.median(latencies),
                    p99_ms=latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=3.0, help="measured wall seconds per tick run")
    parser.add_argument("--symbols", type=int, default=100, help="symbols subscribed in the tick runs")
    parser.add_argument("--speed", type=float, default=25.0, help="market seconds per wall second in tick runs")
    parser.add_argument("--orders", type=int, default=2000, help="orders per order run")
    parser.add_argument("--wire", choices=("protobuf", "text", "both"), default="both")
    parser.add_argument("--ramp", action="store_true",
                        help="also raise the offered tick rate step by step to find where the client falls behind")
    args = parser.parse_args(argv)
    wires = ("protobuf", "text") if args.wire == "both" else (args.wire,)

    offered = args.symbols * args.speed * 4 * CALLBACKS_PER_QUOTE  # 4 quotes per market second per symbol
    print(f"TWS simulator benchmark: {args.runs} runs each; ticks: {args.symbols} symbols at x{args.speed:g} "
          f"(~{offered:,.0f} tick callbacks/s offered), {args.seconds:g} s measured; orders: {args.orders} per run\n")
    rows: list[tuple[str, str, str, str]] = []
    ok = True
    for wire in wires:
        ticks = [bench_ticks(wire, args.symbols, args.speed, args.seconds) for _ in range(args.runs)]
        received = statistics.median(t.received_per_s for t in ticks)
        generated = statistics.median(t.generated_per_s for t in ticks)
        ok &= received >= TICKS_GOAL
        rows.append((f"ticks/s received by the client ({wire})", f"{received:,.0f}",
                     f"runs {', '.join(f'{t.received_per_s:,.0f}' for t in ticks)}; server generated {generated:,.0f}/s",
                     "ok" if received >= TICKS_GOAL else f"MISSED (goal {TICKS_GOAL:,})"))
        orders = [bench_orders(wire, args.orders) for _ in range(args.runs)]
        rate = statistics.median(o.per_s for o in orders)
        ok &= rate >= ORDERS_GOAL
        rows.append((f"orders/s acknowledged ({wire})", f"{rate:,.0f}",
                     f"ack latency p50 {statistics.median(o.p50_ms for o in orders):.1f} ms, "
                     f"p99 {statistics.median(o.p99_ms for o in orders):.1f} ms",
                     "ok" if rate >= ORDERS_GOAL else f"MISSED (goal {ORDERS_GOAL:,})"))
    if args.ramp:
        for wire in wires:
            for speed in (25, 35, 45, 55, 75):
                run = bench_ticks(wire, args.symbols, speed, args.seconds)
                rows.append((f"ramp ({wire}) offered {args.symbols * speed * 4 * CALLBACKS_PER_QUOTE:,}/s",
                             f"{run.received_per_s:,.0f}", f"server generated {run.generated_per_s:,.0f}/s",
                             "keeps up" if run.received_per_s >= 0.95 * run.generated_per_s else "falls behind"))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    header = ("measure", "median", "detail", "goal")
    widths = [max(w, len(h)) for w, h in zip(widths, header)]
    line = "  ".join(f"{{:<{w}}}" for w in widths)
    print(line.format(*header))
    print(line.format(*("-" * w for w in widths)))
    for r in rows:
        print(line.format(*r))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
