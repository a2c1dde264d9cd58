"""OrderGroupSupervisor: one transient OrderGroupActor per PlaceOrderGroup, keyed by group id.

A group child is configured with its PlaceOrderGroup and restarted only after an abnormal exit
(budget `supervision.order_group`), resuming from its last Snapshot. It ends normally by sending
ActorFinished (or its OrderGroupFinished) to this supervisor, which then forgets it (and stops it,
unless its process becomes a spare, below).
A group id is placed at most once: a repeated PlaceOrderGroup, even after the group finished,
is ignored, so a re-sent command never sends its orders twice. A PlaceOrderGroup without the
risk manager's approval is refused (OrderGroupFinished REJECTED to its reply_to).

Creating an actor process costs a fork and the child's start-up (~10 ms idle, far more under
load) on the tick-to-order path, so the supervisor keeps `SPARES` group actor processes created
ahead (a pool; multiproc bases only). A spare is told StandBy and answers StandingBy; a
PlaceOrderGroup takes one and configures it like a freshly created child. A replacement is
created once no process of the supervisor's is starting (the group that took the spare
included), one at a time, so replacements do not compete with orders for the CPU. Spares are
not children: they are neither listed, snapshotted nor restarted as groups; a spare that dies
is replaced, within the order-group restart budget (beyond it the pool stays empty and groups
are created on demand). A restart always creates a new process: the pool only serves first
starts. A group that finishes normally is not stopped: it is forgotten as a child and its
process, told StandBy again, becomes a spare (up to RECYCLED_MAX spares), so at a steady pace of
groups no process is created or ends at all. Such a process may still receive late events of the
group it ran (the connection routes a leg's events to its last owner); a group actor ignores
events for refs that are not its legs (the connection sends every fill to the symbols too).
"""

from __future__ import annotations

import importlib
import os
from collections import deque
from datetime import timedelta
from typing import TYPE_CHECKING, ClassVar, Final

from thespian.actors import ActorAddress, ActorExitRequest, ChildActorExited

from actors import journaling, logs
from actors.base import run_once
from actors.order_group import GroupConfig, GroupRecord, was_sent
from actors.processes import alive
from actors.supervision import ChildSpec, Restart, SupervisorActor
from core import order_group as og
from core.config import Config
from core.errors import CoreError
from core.orders import is_done
from core.supervision import ExitReason, RestartHistory, Verdict, decide_exit
from journal.store import Journal
from messages import (
    ActorQuarantined,
    AdminReply,
    CancelAll,
    CancelOrderGroup,
    ConfigureActor,
    GroupOutcome,
    MoveStop,
    OrderGroupFinished,
    PlaceOrderGroup,
    StandBy,
    StandingBy,
)

if TYPE_CHECKING:
    from actors.supervision import _Child

GROUP_PEERS: Final[tuple[str, ...]] = ("bus", "tws", "symbols", "groups", "supervisor")
_FINISHED_KEPT: Final = 10_000
_REFILL: Final = "spare-pool-refill"


class _Spare:
    """One pre-created group actor process (actor-local; never sent)."""

    __slots__ = ("address", "pid", "ready", "retiring")

    def __init__(self, address: ActorAddress) -> None:
        self.address = address
        self.pid = 0           # from its StandingBy
        self.ready = False     # it answered StandBy
        self.retiring = False  # we asked it to exit


def stands_by(class_path: str) -> bool:
    """Return True if the actor class at `class_path` can wait as a spare (it handles StandBy)."""
    module, _, name = class_path.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError):
        return False
    return callable(getattr(cls, "receiveMsg_StandBy", None))


class OrderGroupSupervisor(SupervisorActor):
    """Starts, restarts and retires the order group actors; keeps `SPARES` of them created ahead."""

    BACKGROUND = True  # runs at system.background_nice (ShellActor.BACKGROUND)

    CHILD_CLASS: ClassVar[str] = "actors.order_group.OrderGroupActor"
    SPARES: ClassVar[int] = 2  # 0: every group's process is created when its PlaceOrderGroup arrives
    SPARE_DELAY_S: ClassVar[float] = 0.005  # a replacement waits this long, so queued orders go first
    # A finished group's process becomes a spare again while the pool holds fewer than this; new
    # spares are only created below SPARES, so with groups finishing as often as they start, the
    # pool refills itself and a group costs no fork, start and exit.
    RECYCLED_MAX: ClassVar[int] = 6

    def __init__(self) -> None:
        super().__init__()
        self.finished: deque[str] = deque(maxlen=_FINISHED_KEPT)
        self.spares: list[_Spare] = []
        self.pooling = False
        self._spare_deaths = RestartHistory()
        self._refill_due = False
        self.journal_settings: journaling.JournalSettings | None = None
        self.journal: Journal | None = None
        self.recovering = False

    def on_configure(self, msg: ConfigureActor) -> None:
        if not isinstance(msg.config, Config):
            raise TypeError(f"OrderGroupSupervisor needs a core.config.Config, "
                            f"not {type(msg.config).__name__}")
        self.budget = msg.config.supervision.order_group
        self.journal_settings = journaling.JournalSettings.of(msg.config)
        self.journal = journaling.journal(self.journal_settings)
        # Nothing kept by our supervisor: the whole system (re)starts; the journal has the groups.
        self.recovering = msg.state is None

    def on_all_started(self) -> None:
        if self.recovering:
            self.recovering = False
            self._recover()
        super().on_all_started()
        # In-process bases create an actor in microseconds: a pool would only hold instances. A
        # class that cannot stand by (e.g. a test stand-in) gets no spares either.
        self.pooling = self.SPARES > 0 and logs.runs_alone() and stands_by(self.CHILD_CLASS)
        self._refill_soon(0.0)

    @run_once
    def receiveMsg_PlaceOrderGroup(self, msg: PlaceOrderGroup, sender: ActorAddress) -> None:
        if msg.group_id in self.children or msg.group_id in self.finished:
            self.log.warning("groups: ignored a repeated PlaceOrderGroup {} ({})", msg.group_id, msg.msg_id)
            return
        if not msg.approval:
            # Every order passes the risk gate: a placement it did not approve is a bug upstream.
            reason = "not approved by the risk manager (send an OrderIntent to \"risk\")"
            self.log.error("groups: refused PlaceOrderGroup {}: {}", msg.group_id, reason)
            if msg.reply_to is not None:
                self.tell(msg.reply_to, self.make(OrderGroupFinished, msg, group_id=msg.group_id,
                                                  symbol=msg.symbol, outcome=GroupOutcome.REJECTED,
                                                  reason=reason))
            return
        # A group whose legs its placer submitted starts from that state, like a restarted one.
        self.add_child(self._spec(msg), state=msg.started)

    def _recover(self) -> None:
        """Start again every group the journal holds that was not finished (after a whole-system restart).

        A group whose intent was abandoned never had an order leave: it is dropped. A leg the group
        handed to the connection that the journal never recorded never reached the connection (nor
        the broker): it is rejected before the group resumes, so the group does not wait for it.
        """
        journal = self.journal
        if journal is None:
            return
        for key, record in journal.states("group:"):
            gid = key.split(":", 1)[1]
            intent = journal.intent(gid)
            if not isinstance(record, GroupRecord) or record.group is None or (
                    intent is not None and intent.resolution == "ABANDONED"):
                why = "its intent was abandoned" if intent is not None and intent.resolution == "ABANDONED" \
                    else "it never started"
                self.log.warning("groups: {} not resumed: {}", gid, why)
                journal.drop_state(key)
                continue
            group = record.group
            for leg in group.legs:
                if was_sent(leg) and journal.order(leg.ref) is None and not is_done(leg):
                    reason = "never reached the broker connection before the restart"
                    self.log.warning("groups: {}: {} {}", gid, leg.ref, reason)
                    try:
                        group, _ = og.decide(group, og.LegRejected(ref=leg.ref, reason=reason))
                    except CoreError as exc:
                        self.log.error("groups: {}: {} could not be marked rejected: {}", gid, leg.ref, exc)
            self.log.info("groups: resuming {} from the journal ({})", gid, group.state.value)
            self.add_child(self._spec(record.place), state=group)

    def _spec(self, place: PlaceOrderGroup) -> ChildSpec:
        return ChildSpec(key=place.group_id, actor_class=self.CHILD_CLASS,
                         config=GroupConfig(place=place, journal=self.journal_settings),
                         restart=Restart.TRANSIENT, peers=GROUP_PEERS)

    @run_once
    def receiveMsg_CancelOrderGroup(self, msg: CancelOrderGroup, sender: ActorAddress) -> None:
        if msg.group_id in self.finished:
            self.log.info("groups: cancel of {} ignored: the group already finished", msg.group_id)
        elif not self.tell_child(msg.group_id, msg):
            self.log.warning("groups: cannot cancel {}: no such running group", msg.group_id)

    @run_once
    def receiveMsg_CancelAll(self, msg: CancelAll, sender: ActorAddress) -> None:
        # The operator's cancel-all: every working order of every group (of `symbol`), protective
        # stops included — the positions they protected stay as they are.
        cancelled = []
        for key, child in self.children.items():
            config = child.spec.config
            place = config.place if isinstance(config, GroupConfig) else config
            if child.address is None or not isinstance(place, PlaceOrderGroup):
                continue
            if msg.symbol in ("", place.symbol):
                self.tell(child.address, self.make(CancelOrderGroup, msg, group_id=key,
                                                   reason=f"operator cancel-all{f': {msg.reason}' if msg.reason else ''}"))
                cancelled.append(key)
        what = f" of {msg.symbol}" if msg.symbol else ""
        self.log.warning("groups: cancel-all{}: cancelling {} group(s){}", what, len(cancelled),
                         f": {', '.join(cancelled)}" if cancelled else "")
        self.tell(sender, self.make(AdminReply, msg, text=f"cancelling {len(cancelled)} working group(s){what}"
                                    + (f": {', '.join(cancelled)}" if cancelled else "")))

    @run_once
    def receiveMsg_MoveStop(self, msg: MoveStop, sender: ActorAddress) -> None:
        if msg.group_id in self.finished:
            self.log.info("groups: stop move of {} ignored: the group already finished", msg.group_id)
        elif not self.tell_child(msg.group_id, msg):
            self.log.warning("groups: cannot move the stop of {}: no such running group", msg.group_id)

    @run_once
    def receiveMsg_OrderGroupFinished(self, msg: OrderGroupFinished, sender: ActorAddress) -> None:
        self.finish_child(sender, msg.outcome.value, msg.group_id)

    def finish_child(self, address: ActorAddress, reason: str = "", key: str = "") -> bool:
        child = self._child_at(address, key)
        if child is None or child.address is None or not self._recyclable(child):
            return super().finish_child(address, reason, key)
        pid = child.pid
        self.log.info("groups: {} #{} finished{}; its process {} becomes a spare", child.spec.key,
                      child.incarnation, f": {reason}" if reason else "", pid)
        self._exited(child, ExitReason.FINISHED)  # forgotten as if it had exited
        spare = _Spare(address)
        spare.pid = pid
        self.spares.append(spare)
        self.tell(address, self.make(StandBy, None, supervisor_pid=os.getpid()))
        return True

    def _recyclable(self, child: _Child) -> bool:
        """A finished group's process may serve the next group: ours, alive, not failing, pool not full."""
        return (self.pooling and child.forked and child.stopping is None and not child.failed
                and not (self.stopping_all or self.exiting) and alive(child.pid)
                and sum(not s.retiring for s in self.spares) < self.RECYCLED_MAX)

    def on_child_removed(self, key: str) -> None:
        self.finished.append(key)

    def on_gave_up(self, key: str) -> None:
        child = self.children[key]
        reason = (f"group {key} exited more than {self.budget.max_restarts} times in "
                  f"{self.budget.window_s:g} s; its orders at the broker are no longer managed"
                  + (f"; last error: {child.last_error}" if child.last_error else ""))
        self.log.critical("groups: {}", reason)
        self.publish(self.make(ActorQuarantined, None, key=key,
                               restarts=child.history.count(self.budget, self.now_ns()),
                               window_s=round(self.budget.window_s), reason=reason))

    def status_detail(self) -> str:
        ready = [s for s in self.spares if s.ready and not s.retiring]
        state = "" if self.pooling or not self.SPARES else ", pool off"
        return (f"groups {sum(c.address is not None for c in self.children.values())}, "
                f"spares {len(ready)} ready (kept {self.SPARES}, finished groups' up to "
                f"{self.RECYCLED_MAX}){state}"
                + (f" (pids {' '.join(str(s.pid) for s in ready)})" if ready else ""))

    # ------------------------------------------------------------ the pool

    def create_child(self, spec: ChildSpec, incarnation: int) -> ActorAddress:
        if incarnation == 1 and spec.actor_class == self.CHILD_CLASS:
            spare = self._take_spare()
            if spare is not None:
                self.log.info("groups: {} takes spare {}", spec.key, spare.pid or "(starting)")
                # The replacement waits until this group has handled its ConfigureActor.
                self._refill_soon(self.SPARE_DELAY_S)
                return spare.address
        return super().create_child(spec, incarnation)

    def spare_pids(self) -> tuple[int, ...]:
        """Return the processes of the spares that answered StandBy and wait for a group."""
        return tuple(s.pid for s in self.spares if s.ready and not s.retiring)

    def _take_spare(self) -> _Spare | None:
        waiting = [s for s in self.spares if not s.retiring]
        # One that answered first; one still starting is still faster than a new fork.
        for spare in sorted(waiting, key=lambda s: not s.ready):
            self.spares.remove(spare)
            return spare
        return None

    def _refill_soon(self, delay_s: float) -> None:
        if self.pooling and not self._refill_due and not (self.stopping_all or self.exiting):
            self._refill_due = True
            self.wakeupAfter(timedelta(seconds=delay_s), payload=_REFILL)

    def on_wakeup(self, payload: object) -> None:
        if payload != _REFILL:
            super().on_wakeup(payload)
            return
        self._refill_due = False
        if not self.pooling or self.stopping_all or self.exiting:
            return
        if sum(not s.retiring for s in self.spares) >= self.SPARES or self._any_starting():
            return  # the next ActorReady, StandingBy or exit tops the pool up
        # One spare at a time, and only while no process of ours starts: a start costs ~10 ms of
        # CPU, and in a burst of orders larger than the pool the groups created on demand would
        # otherwise compete with the replacements.
        try:
            address = self.createActor(self.CHILD_CLASS)
        except Exception as exc:  # counted like a spare that died at once
            self.log.error("groups: cannot create a spare {}: {}: {}", self.CHILD_CLASS,
                           type(exc).__name__, exc)
            self._spare_died("(not created)")
            self._top_up()
            return
        self.spares.append(_Spare(address))
        self.tell(address, self.make(StandBy, None, supervisor_pid=os.getpid()))

    def _any_starting(self) -> bool:
        return (any(c.address is not None and not c.ready for c in self.children.values())
                or any(not s.ready and not s.retiring for s in self.spares))

    def _top_up(self) -> None:
        if sum(not s.retiring for s in self.spares) < self.SPARES:
            self._refill_soon(self.SPARE_DELAY_S)

    def on_child_ready(self, key: str, address: ActorAddress, incarnation: int) -> None:
        self._top_up()

    def on_child_exited(self, key: str, reason: ExitReason) -> None:
        self._top_up()

    @run_once
    def receiveMsg_StandingBy(self, msg: StandingBy, sender: ActorAddress) -> None:
        spare = self._spare_at(sender)
        if spare is None:
            return  # taken before it answered: it is a group now
        spare.ready, spare.pid = True, msg.pid
        self.log.debug("groups: spare {} standing by", msg.pid)
        self._top_up()

    @run_once
    def receiveMsg_ChildActorExited(self, msg: ChildActorExited, sender: ActorAddress) -> None:
        spare = self._spare_at(msg.childAddress)
        if spare is None:
            super().receiveMsg_ChildActorExited(msg, sender)
            return
        self.spares.remove(spare)
        if not (spare.retiring or self.stopping_all or self.exiting):
            self._spare_died(spare.pid or "(starting)")
        self._top_up()

    def _spare_died(self, which: object) -> None:
        verdict, self._spare_deaths = decide_exit(Restart.PERMANENT, ExitReason.UNEXPECTED,
                                                  self._spare_deaths, self.budget, self.now_ns())
        if verdict is Verdict.RESTART:
            self.log.warning("groups: spare {} exited; replacing it", which)
            return
        self.pooling = False
        self.log.error("groups: spares exited more than {} times in {:g} s; no more spares, "
                       "groups start in new processes", self.budget.max_restarts, self.budget.window_s)

    def stop_children(self) -> None:
        self._retire_spares()
        super().stop_children()

    def receiveMsg_ActorExitRequest(self, msg: ActorExitRequest, sender: ActorAddress) -> None:
        super().receiveMsg_ActorExitRequest(msg, sender)
        self._retire_spares()

    def _retire_spares(self) -> None:
        for spare in self.spares:
            if not spare.retiring:
                spare.retiring = True
                self.send(spare.address, ActorExitRequest())

    def _spare_at(self, address: ActorAddress) -> _Spare | None:
        for spare in self.spares:
            if spare.address == address:
                return spare
        return None
