"""Several nodes: capabilities, symbol placement, the placed symbol actor's fence and a member's convention watch.

The leader (`bootstrap.py run`) keeps the broker connection, risk, the journal writers and the
order groups; members (`bootstrap.py node --name NAME`) are actor systems that join its thespian
convention and host symbol actors. Each system advertises its node name as a capability; the
symbols supervisor chooses a node for each symbol (`Placement`) and creates a PlacedSymbolActor
with that node as its `targetActorRequirements`, so thespian's own capability check
(`actorSystemCapabilityCheck`) sends the creation to that member's admin.

Thespian 4.0.1 tells the parent nothing when a member dies: the convention's cleanup would send
ChildActorExited for the actors created there, but it never records them (`createdActor` is
never called). The symbols supervisor therefore asks for convention updates and restarts the
symbols of a member that left itself. Members re-register every `cluster.heartbeat_s` (tuned
convention timers, actors.thespian_patches), so a dead one is noticed after
`heartbeat_s × missed_heartbeats`.

A symbol actor on a member fences itself: every heartbeat it asks its supervisor whether it is
still that symbol's actor, and it stops when told otherwise (the supervisor moved the symbol) or
after `missed_heartbeats` questions without an answer (the leader is gone or cut off). All its
orders go through the leader's risk gate anyway, so a cut-off actor cannot trade; the fence makes
sure it does not come back next to its replacement when the network heals, nor outlive a
restarted leader.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Final

from thespian.actors import (
    ActorAddress,
    ActorExitRequest,
    ActorSystemConventionUpdate,
    ActorTypeDispatcher,
    WakeupMessage,
)

from actors.symbol import SymbolActor
from core.config import ClusterConfig, Config, NodeConfig
from messages import Message

NODE_CAP: Final = "ibactors.node"          # capability: this actor system's node name
LEADER_CAP: Final = "ibactors.leader"      # capability: True on the leader
SYMBOLS_CAP: Final = "ibactors.symbols"    # capability: the symbols a member admits ("*" = any)
SYMBOL_REQ: Final = "ibactors.symbol"      # requirement: the symbol an actor is created for
CONVENTION_CAP: Final = "Convention Address.IPv4"  # thespian's: the leader's admin (host, port)
PLACED_CLASS: Final = "actors.nodes.PlacedSymbolActor"
_FENCE: Final = "node-fence"


def leader_capabilities(config: Config) -> dict[str, object]:
    """Return the capabilities of the leader's actor system (its admin port included)."""
    return {"Admin Port": config.system.admin_port, NODE_CAP: config.cluster.name, LEADER_CAP: True,
            SYMBOLS_CAP: config.cluster.symbols}


def member_capabilities(config: Config, node: NodeConfig, admin_port: int | None = None) -> dict[str, object]:
    """Return the capabilities of member `node`: its admin port, name, symbols and the leader to join."""
    return {"Admin Port": admin_port or node.admin_port, NODE_CAP: node.name, LEADER_CAP: False,
            SYMBOLS_CAP: node.symbols,
            CONVENTION_CAP: (config.system.bind_address, config.system.admin_port)}


def absolute_paths(config: Config) -> Config:
    """Return `config` with its state and log directories absolute, as every node's actors must use them."""
    system = dataclasses.replace(config.system, state_dir=Path(config.system.state_dir).resolve(),
                                 log_dir=Path(config.system.log_dir).resolve())
    return dataclasses.replace(config, system=system)


def admitted(symbols: object, symbol: str) -> bool:
    """Return True if a node's advertised symbol list admits `symbol`."""
    return isinstance(symbols, (tuple, list)) and ("*" in symbols or symbol in symbols)


class Placement:
    """Which node runs which symbol, and which members are alive (the symbols supervisor's record).

    A symbol goes to the first live node in configuration order, the leader first, that admits it,
    has room (`max_symbols`) and has not refused it since it (re)joined; when none does, to the
    leader, which can always run a symbol: its protective orders must be managed somewhere.
    """

    def __init__(self, cluster: ClusterConfig) -> None:
        self.cluster = cluster
        self.live: dict[str, ActorAddress] = {}   # member name -> its admin's address
        self.where: dict[str, str] = {}           # symbol -> node name
        self.refused: dict[str, set[str]] = {}    # member name -> symbols it did not start

    @property
    def leader(self) -> str:
        return self.cluster.name

    def expected(self) -> tuple[str, ...]:
        """Return the configured members that have not joined (yet)."""
        return tuple(n.name for n in self.cluster.nodes if n.name not in self.live)

    def joined(self, name: object, admin: ActorAddress) -> bool:
        """Record member `name` alive at `admin`; return False for a system that is no configured member."""
        if not isinstance(name, str) or name == self.leader or name not in {n.name for n in self.cluster.nodes}:
            return False
        self.live[name] = admin
        self.refused.pop(name, None)
        return True

    def left(self, name: object, admin: ActorAddress) -> tuple[str, ...] | None:
        """Record that member `name` (at `admin`) left; return the symbols placed on it (None if unknown)."""
        if not isinstance(name, str) or name not in self.live or self.live[name] != admin:
            return None
        del self.live[name]
        return self.on(name)

    def on(self, name: str) -> tuple[str, ...]:
        """Return the symbols placed on node `name`, sorted."""
        return tuple(sorted(symbol for symbol, node in self.where.items() if node == name))

    def choose(self, symbol: str) -> str:
        """Return the node that should run `symbol` now."""
        cluster = self.cluster
        if cluster.leader_admits(symbol) and self._room(cluster.name, cluster.max_symbols, symbol):
            return cluster.name
        for node in cluster.nodes:
            if (node.name in self.live and node.admits(symbol) and symbol not in self.refused.get(node.name, ())
                    and self._room(node.name, node.max_symbols, symbol)):
                return node.name
        return cluster.name

    def _room(self, name: str, cap: int, symbol: str) -> bool:
        return cap == 0 or sum(1 for s, n in self.where.items() if n == name and s != symbol) < cap

    def place(self, symbol: str, node: str) -> None:
        """Record that `symbol` was started on `node`."""
        self.where[symbol] = node

    def failed_start(self, symbol: str) -> str | None:
        """Record that `symbol` never came up where it was placed; return that member (None for the leader)."""
        node = self.where.get(symbol)
        if node is None or node == self.leader:
            return None
        self.refused.setdefault(node, set()).add(symbol)
        return node

    def forget(self, symbol: str) -> None:
        """Forget where `symbol` ran (it stopped for good)."""
        self.where.pop(symbol, None)

    def describe(self) -> str:
        """Return one line: each node (live members only) with its symbols."""
        names = [self.leader] + [n.name for n in self.cluster.nodes]
        parts = []
        for name in names:
            state = "leader" if name == self.leader else ("up" if name in self.live else "down")
            parts.append(f"{name} ({state}): {' '.join(self.on(name)) or '-'}")
        return "; ".join(parts)


# ---------------------------------------------------------------- the fence's messages


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeHeartbeat(Message):
    """A symbol actor on a member asks its supervisor whether it is still the actor of `key`."""

    key: str
    incarnation: int


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeHeartbeatAck(Message):
    """The supervisor's answer: `current` False means another incarnation runs the symbol (stop)."""

    key: str
    current: bool


class PlacedSymbolActor(SymbolActor):
    """A SymbolActor that thespian creates on the member its requirements name, and that fences itself there."""

    @staticmethod
    def actorSystemCapabilityCheck(capabilities: dict[str, Any], requirements: dict[str, Any]) -> bool:  # noqa: N802
        node = (requirements or {}).get(NODE_CAP)
        symbol = (requirements or {}).get(SYMBOL_REQ)
        return (node is not None and capabilities.get(NODE_CAP) == node
                and (symbol is None or admitted(capabilities.get(SYMBOLS_CAP), symbol)))

    def __init__(self) -> None:
        super().__init__()
        self.fence_every = timedelta(seconds=1)
        self.fence_after = 3
        self.unanswered = 0

    def on_configure(self, msg: Any) -> None:
        super().on_configure(msg)
        cluster = getattr(msg.config, "cluster", None)
        if isinstance(cluster, ClusterConfig):
            self.fence_every = timedelta(seconds=cluster.heartbeat_s)
            self.fence_after = cluster.missed_heartbeats
        self.wakeupAfter(self.fence_every, payload=_FENCE)

    def receiveMsg_WakeupMessage(self, msg: WakeupMessage, sender: ActorAddress) -> None:
        if msg.payload != _FENCE:
            super().receiveMsg_WakeupMessage(msg, sender)
            return
        if self.failed or self.parent is None:
            return
        if self.unanswered >= self.fence_after:
            self.fence(f"its supervisor on the leader did not answer for "
                       f"{self.unanswered * self.fence_every.total_seconds():g} s")
            return
        self.unanswered += 1
        self.tell(self.parent, NodeHeartbeat(key=self.key, incarnation=self.incarnation, ts_ns=self.now_ns()))
        self.wakeupAfter(self.fence_every, payload=_FENCE)

    def receiveMsg_NodeHeartbeatAck(self, msg: NodeHeartbeatAck, sender: ActorAddress) -> None:
        if msg.current:
            self.unanswered = 0
        else:
            self.fence("its supervisor runs this symbol elsewhere now")

    def fence(self, why: str) -> None:
        """Stop this actor: it is no longer the one trading its symbol."""
        self.log.error("{}: stopping on this node: {}", self.key, why)
        self.failed = True  # handles nothing more while the exit request is on its way
        self.send(self.myAddress, ActorExitRequest())


# ---------------------------------------------------------------- a member's view of the convention


@dataclass(frozen=True, slots=True, kw_only=True)
class WatchConvention:
    """Start following the convention; `leader` is the leader's node name."""

    leader: str


@dataclass(frozen=True, slots=True, kw_only=True)
class GetNodeState:
    """Ask a NodeWatch whether its node is in the leader's convention."""


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeState:
    """Whether the node is in the convention now, and how often it joined and lost it."""

    joined: bool
    joins: int
    losses: int


class NodeWatch(ActorTypeDispatcher):
    """On a member: follows convention updates about the leader (for `bootstrap.py node`'s status lines)."""

    def __init__(self) -> None:
        super().__init__()
        self.leader = ""
        self.state = NodeState(joined=False, joins=0, losses=0)

    def receiveMsg_WatchConvention(self, msg: WatchConvention, sender: ActorAddress) -> None:
        self.leader = msg.leader
        self.notifyOnSystemRegistrationChanges(True)

    def receiveMsg_ActorSystemConventionUpdate(self, msg: ActorSystemConventionUpdate, sender: ActorAddress) -> None:
        caps = msg.remoteCapabilities or {}
        if caps.get(NODE_CAP) != self.leader and not caps.get(LEADER_CAP):
            return
        state = self.state
        if msg.remoteAdded and not state.joined:
            self.state = dataclasses.replace(state, joined=True, joins=state.joins + 1)
        elif not msg.remoteAdded and state.joined:
            self.state = dataclasses.replace(state, joined=False, losses=state.losses + 1)

    def receiveMsg_GetNodeState(self, msg: GetNodeState, sender: ActorAddress) -> None:
        self.send(sender, self.state)
