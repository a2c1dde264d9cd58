"""Bench-only actor and simulator subclasses that timestamp the quote and order paths for bench.bench_runtime.

Each subclass adds a wall-clock stamp and calls the project's own handler, so what it measures
is the unmodified behaviour plus a few microseconds per stamped message:

* TimedSymbolActor records (received, quote.ts_ns, coalesced, handler CPU) for every quote it handles
  and stamps each bracket intent it sends to the risk gate (with the quote that triggered it).
* TimedSymbolSupervisor starts TimedSymbolActors (CHILD_CLASS) and records its Snapshot handler's CPU.
* TimedOrderGroupSupervisor / TimedOrderGroupActor / TimedTwsConnection stamp the entry order on
  its way: PlaceOrderGroup received, group actor configured, entry SubmitOrder sent, received by tws.
* RecordingSimulator records when each quote left for the socket and when each PLACE_ORDER came in.

Records go to files, not messages: under load the symbols supervisor's mailbox is minutes behind,
so a question routed through it is not answered in time. Each process appends one line per event
to `<$IBACTORS_BENCH_RECORDS>/stamps-<pid>.tsv`; nothing is written when the variable is unset.
"""

from __future__ import annotations

import os
import time
from typing import IO, Any, ClassVar, Final

from thespian.actors import ActorAddress

from actors.order_group import OrderGroupActor
from actors.order_group_supervisor import OrderGroupSupervisor
from actors.risk_manager import RiskManager
from actors.symbol import SymbolActor
from actors.symbol_supervisor import SymbolSupervisor
from actors.tws_connection import TwsConnection
from core import order_group as og
from messages import ConfigureActor, OrderIntent, PlaceOrderGroup, QuoteUpdate, Snapshot, SubmitOrder, SubmitOrders
from simulator.server import Simulator
from simulator.wire import PlaceOrder, decode_request

RECORDS_ENV: Final = "IBACTORS_BENCH_RECORDS"
ENTRY_SUFFIX: Final = f":{og.ENTRY}"

_out: IO[str] | None = None
_out_pid = 0


def record(stage: str, key: str, *numbers: int) -> None:
    """Append `stage key numbers...` to this process's stamp file, if the bench asked for stamps.

    Every line is flushed at once: a process may be killed (or a group actor end) without
    running exit handlers, and a line per QuoteUpdate costs a few microseconds.
    """
    global _out, _out_pid
    directory = os.environ.get(RECORDS_ENV)
    if not directory:
        return
    if _out is None or _out_pid != os.getpid():  # a forked child must not share its parent's file
        _out = open(os.path.join(directory, f"stamps-{os.getpid()}.tsv"), "a", encoding="ascii")
        _out_pid = os.getpid()
    _out.write("\t".join((stage, key, *map(str, numbers))) + "\n")
    _out.flush()


def stamp(stage: str, key: str, *extra: int) -> None:
    """Record `stage` of `key` now (wall clock), with `extra` numbers after the time."""
    record(stage, key, time.time_ns(), *extra)


# ---------------------------------------------------------------- actors


class TimedSymbolActor(SymbolActor):
    """A SymbolActor that records every QuoteUpdate and stamps the brackets it places."""

    def __init__(self) -> None:
        super().__init__()
        self._trigger: tuple[int, int] | None = None  # (quote.ts_ns, received) of the quote in hand
        self._stamped = ""  # the intent stamped on its way into the direct channel

    def _on_quote(self, msg: QuoteUpdate, sender: ActorAddress) -> None:
        # Both ways in (a QuoteUpdate message, a quote-channel datagram) end here.
        received, cpu = time.time_ns(), time.thread_time_ns()
        self._trigger = (msg.quote.ts_ns, received)
        try:
            super()._on_quote(msg, sender)
        finally:
            self._trigger = None
            # The handler's CPU includes sending its messages (thespian pickles them in send).
            record("quote", msg.quote.symbol, received, msg.quote.ts_ns, msg.coalesced,
                   time.thread_time_ns() - cpu)

    def tell_peer(self, name: str, msg: object) -> None:
        # The symbol's decision ends with its intent leaving for the risk gate (which submits the legs).
        if isinstance(msg, OrderIntent) and msg.is_bracket and self._trigger is not None \
                and msg.intent_id != self._stamped:
            stamp("place", msg.intent_id, *self._trigger)
        super().tell_peer(name, msg)

    def _intent_direct(self, intent: OrderIntent) -> bool:
        # Stamped before the datagram leaves: the risk gate (on the other core) may stamp first.
        if intent.is_bracket and self._trigger is not None:
            stamp("place", intent.intent_id, *self._trigger)
            self._stamped = intent.intent_id
        return super()._intent_direct(intent)


class TimedRiskManager(RiskManager):
    """A RiskManager that stamps each bracket intent's arrival and the moment its legs left for tws."""

    def __init__(self) -> None:
        super().__init__()
        self._out = ""  # the intent whose legs were stamped on their way out

    def receiveMsg_OrderIntent(self, msg: OrderIntent, sender: ActorAddress) -> None:
        if msg.is_bracket:
            stamp("risk_in", msg.intent_id)
        super().receiveMsg_OrderIntent(msg, sender)
        if msg.is_bracket and self._out != msg.intent_id:  # its group actor submits the legs
            stamp("risk_out", msg.intent_id)

    def _to_tws(self, submit: SubmitOrders) -> None:
        # Stamped before the legs leave (what the handler does after them is off the path).
        group = submit.orders[0].group_id if submit.orders else ""
        if group and submit.orders[0].order.ref.endswith(ENTRY_SUFFIX):
            stamp("risk_out", group)
            self._out = group
        super()._to_tws(submit)


class TimedSymbolSupervisor(SymbolSupervisor):
    """A SymbolSupervisor whose children are TimedSymbolActors; it records its Snapshot handler's CPU."""

    CHILD_CLASS: ClassVar[str] = "bench.bench_support.TimedSymbolActor"

    def receiveMsg_Snapshot(self, msg: Snapshot, sender: ActorAddress) -> None:
        received, cpu = time.time_ns(), time.thread_time_ns()
        try:
            super().receiveMsg_Snapshot(msg, sender)
        finally:
            record("snapshot", msg.key, received, time.thread_time_ns() - cpu)


class TimedOrderGroupActor(OrderGroupActor):
    """An OrderGroupActor that stamps its configuration and its entry SubmitOrder."""

    def receiveMsg_ConfigureActor(self, msg: ConfigureActor, sender: ActorAddress) -> None:
        stamp("group_up", msg.key)
        super().receiveMsg_ConfigureActor(msg, sender)

    def tell_peer(self, name: str, msg: object) -> None:
        if isinstance(msg, SubmitOrder) and msg.order.ref.endswith(ENTRY_SUFFIX):
            stamp("submit", msg.group_id)
        super().tell_peer(name, msg)


class TimedOrderGroupSupervisor(OrderGroupSupervisor):
    """An OrderGroupSupervisor that stamps each PlaceOrderGroup and starts TimedOrderGroupActors."""

    CHILD_CLASS: ClassVar[str] = "bench.bench_support.TimedOrderGroupActor"

    def receiveMsg_PlaceOrderGroup(self, msg: PlaceOrderGroup, sender: ActorAddress) -> None:
        stamp("groups", msg.group_id)
        super().receiveMsg_PlaceOrderGroup(msg, sender)


class TimedTwsConnection(TwsConnection):
    """A TwsConnection that stamps the arrival of each entry SubmitOrder and its release by the pacer."""

    def receiveMsg_SubmitOrder(self, msg: SubmitOrder, sender: ActorAddress) -> None:
        if msg.order.ref.endswith(ENTRY_SUFFIX):
            stamp("tws", msg.group_id)
        super().receiveMsg_SubmitOrder(msg, sender)

    def _release_place(self, ref: str) -> None:
        # The pacer let the entry go: what follows is its id, the journal commit and the write.
        if ref.endswith(ENTRY_SUFFIX):
            stamp("released", ref[: -len(ENTRY_SUFFIX)])
        super()._release_place(ref)


# ---------------------------------------------------------------- simulator


class RecordingSimulator(Simulator):
    """A Simulator that records, per symbol, when its quotes were handed to the sockets, and every PLACE_ORDER."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.quote_sends: dict[str, list[tuple[int, int]]] = {s: [] for s in self.specs}  # (mono, wall)
        self.place_orders: list[tuple[str, bool, int, int]] = []  # (orderRef, transmit, mono, wall)
        self._unsent: list[str] = []

    def _on_quote(self, q: Any) -> None:
        super()._on_quote(q)
        self._unsent.append(q.symbol)

    def flush(self) -> None:
        # Ticks are only queued in _on_quote; they leave in this flush (asyncio writes at once
        # when the transport's buffer is empty). The stamp is taken just before it: taken after,
        # the reader on the other core could handle a tick before the stamp that sent it.
        mono, wall = time.monotonic_ns(), time.time_ns()
        super().flush()
        if self._unsent:
            for symbol in self._unsent:
                self.quote_sends[symbol].append((mono, wall))
            self._unsent.clear()

    def _receive(self, s: Any, payload: bytes) -> None:
        # The server dispatches through a table of Simulator's own methods, so a _place_order
        # override would never run: the frame is decoded once more here (after the stamp).
        mono, wall = time.monotonic_ns(), time.time_ns()
        if s.started:
            try:
                request = decode_request(payload, s.server_version)
            except Exception:  # the server answers a bad frame itself
                request = None
            if isinstance(request, PlaceOrder):
                self.place_orders.append((request.order.order_ref or "", bool(request.order.transmit),
                                          mono, wall))
        super()._receive(s, payload)

    def subscriptions(self) -> int:
        """Return the market-data subscriptions of the started sessions."""
        return sum(len(s.mkt) for s in self.sessions if s.started)


# ---------------------------------------------------------------- the signal path (bench.bench_signals)


class SignalTimedSymbolActor(SymbolActor):
    """A SymbolActor that stamps each PredictionSignal's way to its entry order, and its own warm-up.

    Per signal one line `signal <source_id>`: received, rules started (the Situation is built),
    rules done (the first firing is acted on; 0 if none fired), entry SubmitOrder sent (0 if none),
    the evaluation's thread CPU, and the rules on "signal" events (wall clock, ns). Per symbol
    `history <SYM>` when the historical warm-up is in and `first_quote <SYM>` at its first quote.
    Quotes are not stamped beyond the first: this bench is about signals.
    """

    def __init__(self) -> None:
        super().__init__()
        self._marks: list[int] | None = None  # [received, rules start, rules done, submit, cpu start, cpu]
        self._quoted = False

    def receiveMsg_HistoricalBars(self, msg: Any, sender: ActorAddress) -> None:
        super().receiveMsg_HistoricalBars(msg, sender)
        if self.state is not None and msg.symbol == self.state.symbol:
            record("history", msg.symbol, time.time_ns(), self.state.market.bars_seen)

    def _on_quote(self, msg: QuoteUpdate, sender: ActorAddress) -> None:
        super()._on_quote(msg, sender)
        if not self._quoted and self.state is not None and self.state.quote is not None:
            self._quoted = True
            record("first_quote", msg.quote.symbol, time.time_ns())

    def receiveMsg_PredictionSignal(self, msg: Any, sender: ActorAddress) -> None:
        self._marks = [time.time_ns(), 0, 0, 0, 0, 0]
        try:
            super().receiveMsg_PredictionSignal(msg, sender)
        finally:
            marks, self._marks = self._marks, None
            rules = self.rules.by_event.get("signal", ()) if self.rules is not None else ()
            record("signal", msg.source_id or msg.msg_id, *marks[:4], marks[5], len(rules))

    def _situation(self, state: Any, signal: Any) -> Any:
        if signal is not None and self._marks is not None and not self._marks[1]:
            self._marks[1], self._marks[4] = time.time_ns(), time.thread_time_ns()
        return super()._situation(state, signal)

    def _act(self, cause: Any, state: Any, firing: Any, signal_id: str, outbox: Any) -> Any:
        # Called right after core.rules.evaluate returned (and its notes were logged).
        if self._marks is not None and not self._marks[2]:
            self._marks[2], self._marks[5] = time.time_ns(), time.thread_time_ns() - self._marks[4]
        return super()._act(cause, state, firing, signal_id, outbox)

    def tell_peer(self, name: str, msg: object) -> None:
        if (self._marks is not None and not self._marks[3] and isinstance(msg, SubmitOrder)
                and msg.order.ref.endswith(ENTRY_SUFFIX)):
            self._marks[3] = time.time_ns()
        super().tell_peer(name, msg)


class SignalTimedSymbolSupervisor(SymbolSupervisor):
    """A SymbolSupervisor whose children are SignalTimedSymbolActors."""

    CHILD_CLASS: ClassVar[str] = "bench.bench_support.SignalTimedSymbolActor"
