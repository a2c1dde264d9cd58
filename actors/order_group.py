"""OrderGroupActor: one bracket, OCO group or single order, driving core.order_group against tws."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Final

from loguru import logger
from thespian.actors import ActorAddress, ActorExitRequest, WakeupMessage

from actors import journaling, logs
from actors.base import ShellActor, configure_logs, run_once
from core import order_group as og
from core.errors import CoreError, InvalidGroupEvent, InvalidOrder
from core.orders import Order, OrderStatus, is_done
from journal.store import Journal
from core.types import ZERO, OrderType
from messages import (
    ActorFinished,
    CancelOrder,
    CancelOrderGroup,
    ClaimOrders,
    ConfigureActor,
    ExecutionReported,
    GetOrders,
    GroupKind,
    GroupOutcome,
    Message,
    ModifyOrder,
    MoveStop,
    OrderAccepted,
    OrderGroupFinished,
    OrderRejected,
    OrdersSnapshot,
    OrderStatusChanged,
    OrderSubmitted,
    PeerMoved,
    PlaceOrderGroup,
    Snapshot,
    StandBy,
    StandingBy,
    SubmitOrder,
    ToSymbol,
)

TWS: Final = "tws"
SYMBOLS: Final = "symbols"
# A change that sends nothing is journaled at most this late (a command's change: before it leaves).
RECORD_LAZY_US: Final = 50_000
_RECORD: Final = "group-record"


_PROTECTIVE_TYPES: Final = frozenset({OrderType.STP, OrderType.STP_LMT, OrderType.TRAIL})

# Errors IB reports about a modify or cancel request, not about the order: the leg keeps working
# (or is already done) and only our request failed. 104 can't modify a filled order, 105 modify
# does not match the original, 135 order id not found, 161 not in a cancellable state, 10147 id
# to cancel not found, 10148 cannot be cancelled in its state.
REQUEST_ONLY_ERRORS: Final = frozenset({104, 105, 135, 161, 10147, 10148})

# Our order statuses as IB's orderStatus words for core.order_group.LegStatus. A partial fill is
# IB's "Submitted" with fills; Rejected arrives as a LegRejected; Created never comes from IB.
_IB_WORD: Final = {
    OrderStatus.PENDING_SUBMIT: "PendingSubmit",
    OrderStatus.PRE_SUBMITTED: "PreSubmitted",
    OrderStatus.SUBMITTED: "Submitted",
    OrderStatus.PARTIALLY_FILLED: "Submitted",
    OrderStatus.FILLED: "Filled",
    OrderStatus.PENDING_CANCEL: "PendingCancel",
    OrderStatus.CANCELLED: "Cancelled",
    OrderStatus.INACTIVE: "Inactive",
}


@dataclass(frozen=True, slots=True, kw_only=True)
class GroupRecord:
    """A group as the journal keeps it (key `group_key`): its placement and its state (None: not started).

    The risk manager writes the first record with the intent; the group actor rewrites it before
    each of its commands leaves and drops it once the group finished and said so.
    """

    place: PlaceOrderGroup
    group: og.OrderGroup | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class GroupConfig:
    """An OrderGroupActor's configuration: its placement and the journal it keeps its state in."""

    place: PlaceOrderGroup
    journal: journaling.JournalSettings | None = None


def group_key(group_id: str) -> str:
    """Return the key of a group's record in the journal."""
    return f"group:{group_id}"


def build_group(place: PlaceOrderGroup) -> og.OrderGroup:
    """Return the core group `place` describes (legs in transmit order); raise InvalidOrder if invalid."""
    legs = place.legs
    kind = place.kind
    if kind is GroupKind.SINGLE and len(legs) == 1:
        group = og.single(place.group_id, legs[0])
    elif kind is GroupKind.BRACKET and len(legs) == 3:
        group = og.bracket(place.group_id, *legs)
    elif kind is GroupKind.OCO and len(legs) >= 2:
        group = og.oco(place.group_id, legs)
    else:
        raise InvalidOrder(f"group {place.group_id}: a {kind.value} group cannot have {len(legs)} leg(s)")
    if group.symbol != place.symbol:
        raise InvalidOrder(f"group {place.group_id}: legs trade {group.symbol}, the group {place.symbol}")
    return group


def was_sent(leg: Order) -> bool:
    """Return True if the leg may be at the broker (handed to the connection, or given an id)."""
    return leg.status is not OrderStatus.CREATED or leg.broker_id != 0


def is_protective(leg: Order) -> bool:
    """Return True for a leg that protects a position: a bracket child or a stop."""
    return bool(leg.parent_ref) or leg.order_type in _PROTECTIVE_TYPES


def outcome(group: og.OrderGroup) -> tuple[GroupOutcome, Decimal]:
    """Return how a finished group ended and how much of its entry filled (OCO: all legs)."""
    if group.kind is og.GroupKind.OCO:
        filled = sum((leg.filled for leg in group.legs), ZERO)
    else:
        filled = group.legs[0].filled
    if any(leg.filled > 0 for leg in group.legs):
        return GroupOutcome.FILLED, filled
    if any(leg.status is OrderStatus.REJECTED for leg in group.legs):
        return GroupOutcome.REJECTED, filled
    return GroupOutcome.CANCELLED, filled


def modification(before: Order, after: Order, *, cause: Message | None = None,
                 ts_ns: int = 0) -> ModifyOrder:
    """Return the ModifyOrder naming only what changed between two versions of a leg."""
    return ModifyOrder.caused_by(
        cause,
        ts_ns=ts_ns,
        ref=after.ref,
        quantity=after.quantity if after.quantity != before.quantity else None,
        limit_price=after.limit_price if after.limit_price != before.limit_price else None,
        stop_price=after.stop_price if after.stop_price != before.stop_price else None,
    )


class OrderGroupActor(ShellActor):
    """One live order group. Configured with ConfigureActor(config=PlaceOrderGroup, state=last group or None).

    Fresh, it submits the legs to "tws" (after snapshotting them as sent). Restarted from a
    snapshot, it never re-submits a leg that may be at the broker: it re-claims the legs with
    ClaimOrders and the connection replays what it missed. Every change goes to the supervisor
    as Snapshot(state=OrderGroup). Executions are forwarded to the symbol (via "symbols" in a
    ToSymbol envelope) before the group reacts to them, so the symbol sees the fills before the
    group's OrderGroupFinished, which takes the same path (and is published on the bus). Then it
    tells its supervisor ActorFinished and waits to be stopped. Created ahead as a spare, it is
    told StandBy first: it opens its log sinks, answers StandingBy and exits with its supervisor's
    process until its ConfigureActor comes.
    """

    BACKGROUND = True  # runs at system.background_nice (ShellActor.BACKGROUND)

    def __init__(self) -> None:
        super().__init__()
        self.place: PlaceOrderGroup | None = None
        self.group: og.OrderGroup | None = None
        self.finished: bool = False
        self.journal: Journal | None = None
        self.record_due = False    # the group changed since its journal record was written
        self.cancel_asked = ""     # why every leg was asked to be cancelled (CancelOrderGroup), if it was
        self.record_armed = False  # a wakeup will write it

    # ------------------------------------------------------------ set-up

    @run_once
    def receiveMsg_StandBy(self, msg: StandBy, sender: ActorAddress) -> None:
        # A spare, created ahead by the groups supervisor; a ConfigureActor makes it a group.
        if self.configured:
            if not self.finished:
                return  # a working group never becomes a spare
            self._forget_group()
        if msg.supervisor_pid and logs.runs_alone():
            # Nobody knows an idle spare but the supervisor that made it. The spare dies with that
            # process (ShellActor sets the parent-death signal); one whose supervisor is already
            # gone (it was re-parented) exits now.
            if os.getppid() != msg.supervisor_pid:
                self.send(self.myAddress, ActorExitRequest())
                return
        # Opening the log sinks is most of a fresh process's ConfigureActor (~5 ms): done now,
        # ConfigureActor only finds them open. A group's config never names a log directory, so
        # the sinks are the launcher's (IBACTORS_LOG_DIR), as ConfigureActor would open them.
        configure_logs(None)
        self.log.info("spare group actor standing by in process {}", os.getpid())
        self.tell(sender, self.make(StandingBy, msg, pid=os.getpid()))

    def _forget_group(self) -> None:
        """After the group finished, become a spare again: the process (its log sinks and journal
        connection open) serves the next group, which saves a fork, a start and an exit per group."""
        self.log.info("{}: finished; the process stands by for the next group", self.key)
        self.place, self.group, self.finished, self.cancel_asked = None, None, False, ""
        self.record_due = False
        self.configured, self.config = False, None
        self.key, self.incarnation = type(self).__name__, 0
        self.log = logger.bind(actor=self.key)

    def _stray(self, ref: str, what: str) -> bool:
        """True (logged at debug) if `ref` is no leg of this group: meant for one this process ran before."""
        group = self.group
        if group is not None and any(leg.ref == ref for leg in group.legs):
            return False
        self.log.debug("{}: {} for {} ignored: not a leg of this group", self.key, what, ref)
        return True

    def on_configure(self, msg: ConfigureActor) -> None:
        place = msg.config
        if isinstance(place, GroupConfig):
            self.journal = journaling.journal(place.journal)
            place = place.place
        if not isinstance(place, PlaceOrderGroup):
            raise TypeError(f"{self.key}: config must be a PlaceOrderGroup, got {type(place).__name__}")
        self.place = place
        self.log = self.log.bind(group=place.group_id, corr=place.correlation_id)
        # The orders continue the PlaceOrderGroup's correlation chain (back to the signal that
        # asked for them), not the supervisor's start-up chain that ConfigureActor carries.
        state = msg.state
        if state is None:
            try:
                group = build_group(place)
            except InvalidOrder as exc:
                # Expected: the legs were refused before anything was sent; the group ends here.
                self.log.warning("{}: rejected before submitting: {}", place.group_id, exc)
                self._announce(place, GroupOutcome.REJECTED, ZERO, str(exc))
                return
            self.group = group
            self._decide(place, og.Start())
            return
        if not isinstance(state, og.OrderGroup) or state.id != place.group_id:
            raise TypeError(f"{self.key}: state is not the snapshot of group {place.group_id}: {state!r}")
        self.group = state
        if state.kind is og.GroupKind.BRACKET and state.reason.startswith(og.CANCELLED):
            # Only a CancelGroup words a bracket's end so: the cancel this actor was asked for
            # before the restart, so an uncovered entry fill is expected (the symbol closes it).
            self.cancel_asked = state.reason.removeprefix(og.CANCELLED)
        if state.state is og.GroupState.DONE:
            self.log.info("{}: restarted after it finished; announcing the end again", state.id)
            self._finish(place, og.GroupFinished(group_id=state.id, reason=state.reason,
                                                 unprotected=og.unprotected(state), legs=state.legs))
        elif state.state is og.GroupState.PENDING and not any(was_sent(leg) for leg in state.legs):
            self._decide(place, og.Start())
        else:
            how = (f"restarted (incarnation {self.incarnation})" if place.started is None
                   or self.incarnation > 1 else "its legs were submitted by its placer")
            self._claim(place, state, how)

    def _claim(self, cause: Message, state: og.OrderGroup, how: str) -> None:
        """Claim the sent legs at the connection (it replays what we missed) and cancel again what we asked to."""
        refs = tuple(leg.ref for leg in state.legs if was_sent(leg))
        if not refs:
            return
        self.log.info("{}: {}; claiming {}", state.id, how, ", ".join(refs))
        self.tell_peer(TWS, self.make(ClaimOrders, cause, group_id=state.id, refs=refs, reply_to=self.myAddress))
        for leg in state.legs:
            if leg.ref in state.cancel_requested and not is_done(leg):
                # The cancel may have died with the previous incarnation; asking twice is harmless.
                self.tell_peer(TWS, self.make(CancelOrder, cause, ref=leg.ref, reason="cancel again after a restart"))

    @run_once
    def receiveMsg_PeerMoved(self, msg: PeerMoved, sender: ActorAddress) -> None:
        super().receiveMsg_PeerMoved(msg, sender)
        group, place = self.group, self.place
        if msg.name != TWS or group is None or place is None or self.finished or group.state is og.GroupState.DONE:
            return
        # A restarted connection resumes from its last snapshot to its supervisor, which may predate
        # our legs or our claim (the kill came first): without a new claim it keeps their events
        # (fills included) for an owner that never comes, or takes the legs for external orders.
        self._claim(place, group, "the connection restarted")

    # ------------------------------------------------------------ broker events

    @run_once
    def receiveMsg_OrderSubmitted(self, msg: OrderSubmitted, sender: ActorAddress) -> None:
        if not self._stray(msg.ref, "OrderSubmitted"):
            self._accepted(msg)

    @run_once
    def receiveMsg_OrderAccepted(self, msg: OrderAccepted, sender: ActorAddress) -> None:
        if not self._stray(msg.ref, "OrderAccepted"):
            self._accepted(msg)

    def _accepted(self, msg: OrderSubmitted | OrderAccepted) -> None:
        if msg.broker_id <= 0:
            return  # the connection knows no id yet: nothing to record
        self._decide(msg, og.LegAccepted(ref=msg.ref, broker_id=msg.broker_id), tolerant=True)

    @run_once
    def receiveMsg_OrderStatusChanged(self, msg: OrderStatusChanged, sender: ActorAddress) -> None:
        if self._stray(msg.ref, "OrderStatusChanged"):
            return
        if msg.status is OrderStatus.REJECTED:
            reason = msg.why_held or "rejected by the broker"
            self._decide(msg, og.LegRejected(ref=msg.ref, reason=reason), tolerant=True)
            return
        word = _IB_WORD.get(msg.status)
        if word is None:
            self.log.warning("{}: ignored status {} for {}", self.key, msg.status.value, msg.ref)
            return
        # orderStatus is advisory and races the executions: one that does not fit is dropped.
        self._decide(msg, og.LegStatus(ref=msg.ref, ib_status=word, filled=msg.filled,
                                       remaining=msg.remaining), tolerant=True)

    @run_once
    def receiveMsg_ExecutionReported(self, msg: ExecutionReported, sender: ActorAddress) -> None:
        execution = msg.execution
        if self._stray(execution.order_ref, f"execution {execution.exec_id}"):
            return  # the connection also sends every fill to the symbols supervisor
        # The fill is the broker's truth whatever the group makes of it: the position gets it
        # first (it dedupes by exec id, so a replay after ClaimOrders is harmless).
        self._to_symbol(execution.symbol, msg)
        try:
            self._decide(msg, og.LegExecution(execution=execution))
        except InvalidGroupEvent as exc:
            self.log.error("{}: execution {} matches no leg, dropped: {}", self.key, execution.exec_id, exc)

    @run_once
    def receiveMsg_OrderRejected(self, msg: OrderRejected, sender: ActorAddress) -> None:
        if self._stray(msg.ref, "OrderRejected"):
            return
        if msg.code in REQUEST_ONLY_ERRORS:
            self.log.warning("{}: request for {} refused ({} {}); the order itself stands",
                             self.key, msg.ref, msg.code, msg.reason)
            return
        self._decide(msg, og.LegRejected(ref=msg.ref, reason=f"{msg.code}: {msg.reason}"), tolerant=True)

    # ------------------------------------------------------------ commands

    @run_once
    def receiveMsg_CancelOrderGroup(self, msg: CancelOrderGroup, sender: ActorAddress) -> None:
        if self.group is None or (msg.group_id and msg.group_id != self.group.id):
            self.log.warning("{}: CancelOrderGroup for {} ignored", self.key, msg.group_id)
            return
        reason = msg.reason or "cancel requested"
        if not msg.entry_only:
            self.cancel_asked = reason
        event = og.CancelEntry(reason=reason) if msg.entry_only else og.CancelGroup(reason=reason)
        self._decide(msg, event, tolerant=True)

    @run_once
    def receiveMsg_MoveStop(self, msg: MoveStop, sender: ActorAddress) -> None:
        if self.group is None or (msg.group_id and msg.group_id != self.group.id):
            self.log.warning("{}: MoveStop for {} ignored", self.key, msg.group_id)
            return
        self._decide(msg, og.ReplaceStop(new_price=msg.stop_price), tolerant=True)

    def receiveMsg_GetOrders(self, msg: GetOrders, sender: ActorAddress) -> None:
        legs = self.group.legs if self.group is not None else ()
        self.tell(sender, self.make(OrdersSnapshot, msg, orders=legs))

    # ------------------------------------------------------------ core

    def _decide(self, cause: Message, event: og.Event, *, tolerant: bool = False) -> None:
        before = self.group
        if before is None:
            self.log.warning("{}: {} ignored, the group was never built", self.key, type(event).__name__)
            return
        try:
            group, commands = og.decide(before, event)
        except CoreError as exc:
            if not tolerant:
                raise
            self.log.warning("{}: {} dropped: {}", self.key, type(event).__name__, exc)
            return
        self.group = group
        if group is not before:
            self.record_due = True
            if any(not isinstance(c, og.GroupFinished) for c in commands):
                # Before any order leaves: a restart must know which legs may be at the broker.
                self._journal_record()
            elif not self.record_armed:
                # A change that sends nothing (a status, a fill whose sibling is already cancelled)
                # joins the next record, or is written a moment later: a group usually finishes
                # (and drops its record) before then.
                self.record_armed = True
                self.wakeupAfter(timedelta(microseconds=RECORD_LAZY_US), payload=_RECORD)
            self.tell(self.parent, self.make(Snapshot, cause, key=self.key,
                                             incarnation=self.incarnation, state=group))
        for command in commands:
            self._execute(cause, before, command)

    def _journal_record(self) -> None:
        if self.record_due and self.journal is not None and self.place is not None and self.group is not None \
                and not self.finished and not self.failed:
            # Not synced: a leg reaches the broker only through the connection, which commits
            # synced before its PLACE_ORDER (putting this record on disk too); cancels and
            # modifies change what the broker reports again after a restart.
            with self.journal.batch(synced=False):
                self.journal.put_state(group_key(self.group.id), GroupRecord(place=self.place, group=self.group),
                                       incarnation=self.incarnation, ts_ns=self.now_ns())
        self.record_due = False

    @run_once
    def receiveMsg_WakeupMessage(self, msg: WakeupMessage, sender: ActorAddress) -> None:
        if msg.payload == _RECORD:
            self.record_armed = False
            self._journal_record()

    def receiveMsg_ActorExitRequest(self, msg: ActorExitRequest, sender: ActorAddress) -> None:
        self._journal_record()  # stopped (not finished) with a change not yet written

    def _execute(self, cause: Message, before: og.OrderGroup, command: og.Command) -> None:
        group_id = before.id
        match command:
            case og.SubmitOrder(order=order, transmit=transmit):
                self.log.info("{}: submit {} {} {} {} transmit={}", group_id, order.ref, order.side.value,
                              order.quantity, order.order_type.value, transmit)
                self.tell_peer(TWS, self.make(SubmitOrder, cause, order=order, group_id=group_id,
                                              transmit=transmit, protective=is_protective(order),
                                              reply_to=self.myAddress))
            case og.CancelOrder(ref=ref, reason=reason):
                self.log.info("{}: cancel {} ({})", group_id, ref, reason)
                self.tell_peer(TWS, self.make(CancelOrder, cause, ref=ref, reason=reason))
            case og.ModifyOrder(order=order):
                change = modification(og.find_leg(before, order.ref), order, cause=cause,
                                      ts_ns=self.now_ns())
                self.log.info("{}: modify {} quantity={} limit={} stop={}", group_id, order.ref,
                              change.quantity, change.limit_price, change.stop_price)
                self.tell_peer(TWS, change)
            case og.GroupFinished():
                self._finish(cause, command)

    def _finish(self, cause: Message, finished: og.GroupFinished) -> None:
        assert self.group is not None
        result, filled = outcome(self.group)
        if finished.unprotected != 0 and self.cancel_asked and finished.unprotected > 0:
            # Asked to cancel every leg (a symbol's exit closes the position next; an operator's
            # cancel-all leaves it open on purpose): expected, not an alarm.
            self.log.info("{}: cancelled as asked ({}); {} entry fill(s) no exit of this group covers now",
                          finished.group_id, self.cancel_asked, finished.unprotected)
        elif finished.unprotected != 0:
            self.log.error("{}: finished with {} entry fill(s) no exit covers", finished.group_id,
                           finished.unprotected)
        self._announce(cause, result, filled, finished.reason)

    def _announce(self, cause: Message, result: GroupOutcome, filled: Decimal, reason: str) -> None:
        assert self.place is not None
        place = self.place
        self.log.info("{}: finished {} (filled {}): {}", place.group_id, result.value, filled, reason)
        event = self.make(OrderGroupFinished, cause, group_id=place.group_id, symbol=place.symbol,
                          outcome=result, filled=filled, reason=reason)
        self._to_symbol(place.symbol, event)
        self.publish(event)
        if self.journal is not None:
            # Finished and said so: a restart of the whole system does not bring it back.
            self.journal.drop_state(group_key(place.group_id))
        self.finished = True
        self.record_due = False
        # A transient child's normal end: the supervisor stops it and does not restart it.
        self.tell(self.parent, self.make(ActorFinished, cause, key=self.key,
                                         incarnation=self.incarnation, reason=reason))

    def _to_symbol(self, symbol: str, msg: Message) -> None:
        envelope = self.make(ToSymbol, msg, symbol=symbol, message=msg)
        to = self.peers.get(SYMBOLS)
        if to is None and self.place is not None:
            to = self.place.reply_to
        if to is None:
            self.log.warning("{}: no symbols peer; {} not forwarded", self.key, type(msg).__name__)
            return
        self.tell(to, envelope)
