"""OrderGroupSupervisor: one transient OrderGroupActor per PlaceOrderGroup, keyed by group id.

A group child is configured with its PlaceOrderGroup and restarted only after an abnormal exit
(budget `supervision.order_group`), resuming from its last Snapshot. It ends normally by sending
ActorFinished (or its OrderGroupFinished) to this supervisor, which then stops it and forgets it.
A group id is placed at most once: a repeated PlaceOrderGroup, even after the group finished,
is ignored, so a re-sent command never sends its orders twice.
"""

from __future__ import annotations

from collections import deque
from typing import ClassVar, Final

from thespian.actors import ActorAddress

from actors.base import run_once
from actors.supervision import ChildSpec, Restart, SupervisorActor
from core.config import Config
from messages import ActorQuarantined, CancelOrderGroup, ConfigureActor, OrderGroupFinished, PlaceOrderGroup

GROUP_PEERS: Final[tuple[str, ...]] = ("bus", "tws", "symbols", "groups", "supervisor")
_FINISHED_KEPT: Final = 10_000


class OrderGroupSupervisor(SupervisorActor):
    """Starts, restarts and retires the order group actors."""

    CHILD_CLASS: ClassVar[str] = "actors.order_group.OrderGroupActor"

    def __init__(self) -> None:
        super().__init__()
        self.finished: deque[str] = deque(maxlen=_FINISHED_KEPT)

    def on_configure(self, msg: ConfigureActor) -> None:
        if not isinstance(msg.config, Config):
            raise TypeError(f"OrderGroupSupervisor needs a core.config.Config, "
                            f"not {type(msg.config).__name__}")
        self.budget = msg.config.supervision.order_group

    @run_once
    def receiveMsg_PlaceOrderGroup(self, msg: PlaceOrderGroup, sender: ActorAddress) -> None:
        if msg.group_id in self.children or msg.group_id in self.finished:
            self.log.warning("groups: ignored a repeated PlaceOrderGroup {} ({})", msg.group_id, msg.msg_id)
            return
        self.add_child(ChildSpec(key=msg.group_id, actor_class=self.CHILD_CLASS, config=msg,
                                 restart=Restart.TRANSIENT, peers=GROUP_PEERS))

    @run_once
    def receiveMsg_CancelOrderGroup(self, msg: CancelOrderGroup, sender: ActorAddress) -> None:
        if msg.group_id in self.finished:
            self.log.info("groups: cancel of {} ignored: the group already finished", msg.group_id)
        elif not self.tell_child(msg.group_id, msg):
            self.log.warning("groups: cannot cancel {}: no such running group", msg.group_id)

    @run_once
    def receiveMsg_OrderGroupFinished(self, msg: OrderGroupFinished, sender: ActorAddress) -> None:
        self.finish_child(sender, msg.outcome.value)

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
