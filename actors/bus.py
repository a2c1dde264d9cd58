"""The bus: publish/subscribe by message type name; a subscription to a base type receives its subclasses.

Subscribers are removed when they die. Thespian tells a parent about its child's exit, but the
bus is nobody's parent, so it registers as the actor system's dead-letter handler instead: a
delivery to an exited actor comes back as `DeadEnvelope(deadAddress, message)` (on the TCP base
once the connection to the dead process is refused), and every subscription of that address
goes. Thespian keeps one dead-letter handler per system (the last to register), so no other
actor may register. Subscriptions live in the bus's Snapshot, so a restarted bus keeps them.
"""

from __future__ import annotations

from dataclasses import dataclass

from thespian.actors import ActorAddress, DeadEnvelope

from actors.base import ShellActor, run_once
from messages import ConfigureActor, Message, Publish, Snapshot, Subscribe, Unsubscribe, type_names


@dataclass(frozen=True, slots=True, kw_only=True)
class BusState:
    """The bus's snapshot: its subscriptions as (type name, subscriber) pairs, oldest first."""

    subscriptions: tuple[tuple[str, ActorAddress], ...] = ()


class Bus(ShellActor):
    """Delivers each published message once to every subscriber of its type or of a base type."""

    def __init__(self) -> None:
        super().__init__()
        # A list of pairs, not a dict: ActorAddress is unhashable.
        self.subscriptions: list[tuple[str, ActorAddress]] = []
        self.delivered = 0

    def on_configure(self, msg: ConfigureActor) -> None:
        if isinstance(msg.state, BusState):
            self.subscriptions = list(msg.state.subscriptions)
        self.handleDeadLetters(startHandling=True)

    @run_once
    def receiveMsg_Subscribe(self, msg: Subscribe, sender: ActorAddress) -> None:
        entry = (msg.type_name, msg.reply_to if msg.reply_to is not None else sender)
        if entry not in self.subscriptions:
            self.subscriptions.append(entry)
            self.log.debug("bus: {} subscribed to {}", entry[1], entry[0])
            self._snapshot()

    @run_once
    def receiveMsg_Unsubscribe(self, msg: Unsubscribe, sender: ActorAddress) -> None:
        entry = (msg.type_name, msg.reply_to if msg.reply_to is not None else sender)
        if entry in self.subscriptions:
            self.subscriptions.remove(entry)
            self._snapshot()

    @run_once
    def receiveMsg_Publish(self, msg: Publish, sender: ActorAddress) -> None:
        inner = msg.message
        if not isinstance(inner, Message):
            self.log.warning("bus: dropped a Publish of {}, which is not a message", type(inner).__name__)
            return
        for subscriber in self.subscribers(type(inner)):
            self.send(subscriber, inner)
            self.delivered += 1

    def subscribers(self, cls: type[Message]) -> list[ActorAddress]:
        """Return each subscriber of `cls` or of one of its Message bases once, in subscription order."""
        names = type_names(cls)
        found: list[ActorAddress] = []
        for name, address in self.subscriptions:
            if name in names and address not in found:
                found.append(address)
        return found

    @run_once
    def receiveMsg_DeadEnvelope(self, msg: DeadEnvelope, sender: ActorAddress) -> None:
        dead = msg.deadAddress
        if not isinstance(dead, ActorAddress):
            dead = ActorAddress(dead)  # simpleSystemBase names the dead target by its address string
        before = len(self.subscriptions)
        self.subscriptions = [(name, address) for name, address in self.subscriptions if address != dead]
        if len(self.subscriptions) < before:
            self.log.info("bus: removed {} subscription(s) of exited actor {}",
                          before - len(self.subscriptions), dead)
            self._snapshot()
        else:
            self.log.debug("bus: dead letter {} to {}", type(msg.deadMessage).__name__, dead)

    def _snapshot(self) -> None:
        if self.parent is not None:
            self.tell(self.parent, self.make(Snapshot, None, key=self.key, incarnation=self.incarnation,
                                             state=BusState(subscriptions=tuple(self.subscriptions))))
