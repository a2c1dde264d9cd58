"""StrategyController: loads the rules, routes signals to symbol actors, pushes new rule versions to them.

Signals come from SignalSource ("signals"); each goes straight to its symbol's actor (addresses
come from the symbols supervisor's SymbolActorStarted announcements). While a symbol's actor is
not running yet (starting, restarting, or with `strategy.start_symbols = "on_signal"` not started
until its first signal: the controller asks "symbols" to start it) its signals wait here, at most
PENDING_PER_SYMBOL of them (the oldest go first, logged), and are delivered when it announces
itself; the symbol actor drops any that expired meanwhile. A signal for a symbol that is not
traded is rejected, one for a quarantined symbol ignored, each with its reason on the bus.

A reload (the `ReloadRules` admin command, or the configuration file changing on disk when
`strategy.watch_config`) re-reads the whole file and validates it completely, rules compiled
against the running symbols, before anything changes; then the new version goes to every
symbol actor at once (RulesUpdated through "symbols", which also keeps it for restarts). A bad
file changes nothing: the old rules keep running and RulesRejected says why. Only `[strategy]`
and `[rules]` reload; other changes are reported and wait for the next start. The running rule
set is in the controller's snapshot, so a restarted controller keeps a reloaded version.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from datetime import timedelta
from pathlib import Path
from typing import ClassVar, Final

from thespian.actors import ActorAddress, WakeupMessage

from actors import journaling
from actors.base import ShellActor, run_once
from core import rules as core_rules
from core.config import Config, RuleConfig, StrategyConfig, SymbolStart, load_config
from core.errors import ConfigError
from journal.store import RULES_EVENT, Journal
from messages import (
    ActorQuarantined,
    ActorRestarted,
    AdminError,
    AdminErrorCode,
    AdminReply,
    ConfigureActor,
    Message,
    PeerMoved,
    PredictionSignal,
    ReloadRules,
    RulesLoaded,
    RulesRejected,
    RulesUpdated,
    SignalAccepted,
    SignalIgnored,
    SignalRejected,
    Snapshot,
    StartSymbol,
    Subscribe,
    SymbolActorStarted,
)

SYMBOLS: Final = "symbols"
PENDING_PER_SYMBOL: Final = 100
_WATCH: Final = "watch-config"


@dataclass(frozen=True, slots=True, kw_only=True)
class ControllerState:
    """The rule set running now (as configuration: compiled rules do not pickle) and its version."""

    version: str
    rules: tuple[RuleConfig, ...]
    strategy: StrategyConfig


def _stamp(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size


class StrategyController(ShellActor):
    """The "strategy" core child: ConfigureActor(config=Config, state=ControllerState or None)."""

    WATCH_INTERVAL_S: ClassVar[float] = 1.0

    def __init__(self) -> None:
        super().__init__()
        self.running: Config | None = None
        self.state: ControllerState | None = None
        self.routes: dict[str, tuple[ActorAddress, int]] = {}  # symbol -> (address, incarnation)
        self.waiting: dict[str, list[PredictionSignal]] = {}  # signals for symbols not running yet
        self.starting: set[str] = set()  # symbols asked to start (on_signal), not announced yet
        self.quarantined: set[str] = set()
        self.path: Path | None = None
        self.stamp: tuple[int, int] | None = None
        self.routed = 0
        self.reloads = 0
        self.journal: Journal | None = None

    # ------------------------------------------------------------ set-up

    def on_configure(self, msg: ConfigureActor) -> None:
        config = msg.config
        if not isinstance(config, Config):
            raise TypeError(f"StrategyController needs a core.config.Config, not {type(config).__name__}")
        saved = msg.state
        if isinstance(saved, ControllerState):
            config = replace(config, rules=saved.rules, strategy=saved.strategy)
        rules = core_rules.compile_rules(config)  # validated with the config; a failure is a bug
        self.running = config
        self.state = ControllerState(version=rules.version, rules=config.rules, strategy=config.strategy)
        source = Path(config.source)
        self.path = source if config.source and not config.source.startswith("<") else None
        self.stamp = _stamp(self.path) if self.path is not None else None
        self.log.info("strategy: rules {} loaded: {}", rules.version, ", ".join(rules.names) or "none")
        self.journal = journaling.journal(journaling.JournalSettings.of(config))
        self._journal_rules(msg, rules.version, config.rules, config.source,
                            "kept from before a restart" if isinstance(saved, ControllerState) else "start")
        self.publish(self.make(RulesLoaded, msg, version=rules.version, rule_names=rules.names,
                               source=config.source))
        bus = self.peers.get("bus")
        if bus is not None:
            self.tell(bus, self.make(Subscribe, msg, type_name="ActorQuarantined", reply_to=self.myAddress))
            self.tell(bus, self.make(Subscribe, msg, type_name="ActorRestarted", reply_to=self.myAddress))
        if isinstance(saved, ControllerState):
            self._push(msg)  # the symbols may have been started with the file's rules
        if self.path is not None and config.strategy.watch_config:
            self.wakeupAfter(timedelta(seconds=self.WATCH_INTERVAL_S), payload=_WATCH)

    # ------------------------------------------------------------ signals

    @run_once
    def receiveMsg_SymbolActorStarted(self, msg: SymbolActorStarted, sender: ActorAddress) -> None:
        self.routes[msg.symbol] = (msg.address, msg.incarnation)
        self.quarantined.discard(msg.symbol)
        self.starting.discard(msg.symbol)
        waiting = self.waiting.pop(msg.symbol, [])
        for signal in waiting:
            self.tell(msg.address, signal)
        if waiting:
            self.log.info("strategy: {} waiting signal(s) delivered to {} #{}", len(waiting), msg.symbol,
                          msg.incarnation)

    def receiveMsg_ActorQuarantined(self, msg: ActorQuarantined, sender: ActorAddress) -> None:
        if self.running is not None and msg.key in self.running.symbol_names:
            self.quarantined.add(msg.key)
            self.routes.pop(msg.key, None)
            dropped = self.waiting.pop(msg.key, [])
            for signal in dropped:
                self._ignore(signal, f"{msg.key} is quarantined: no new entries until an operator restarts it")

    def receiveMsg_ActorRestarted(self, msg: ActorRestarted, sender: ActorAddress) -> None:
        route = self.routes.get(msg.key)
        if route is not None and route[1] < msg.incarnation:
            del self.routes[msg.key]  # its new address comes with SymbolActorStarted

    @run_once
    def receiveMsg_PredictionSignal(self, msg: PredictionSignal, sender: ActorAddress) -> None:
        config = self.running
        if config is None:
            return
        signal_id = msg.source_id or msg.msg_id
        if msg.symbol not in config.symbol_names:
            reason = f"{msg.symbol!r} is not a traded symbol"
            self.log.warning("strategy: signal {} rejected: {}", signal_id, reason)
            self.publish(self.make(SignalRejected, msg, reason=reason, source=msg.source,
                                   source_id=msg.source_id, signal_id=signal_id, symbol=msg.symbol))
            return
        if msg.symbol in self.quarantined:
            self._ignore(msg, f"{msg.symbol} is quarantined: no new entries until an operator restarts it")
            return
        route = self.routes.get(msg.symbol)
        if route is not None:
            self.tell(route[0], msg)
        else:
            self._wait(msg, config)
        self.routed += 1
        self.log.info("strategy: signal {} {} {} {} -> {}", signal_id, msg.symbol, msg.direction.value,
                      msg.confidence, "symbol actor" if route is not None else "waiting for its symbol actor")
        self.publish(self.make(SignalAccepted, msg, signal_id=signal_id, symbol=msg.symbol))

    def _wait(self, msg: PredictionSignal, config: Config) -> None:
        waiting = self.waiting.setdefault(msg.symbol, [])
        waiting.append(msg)
        if len(waiting) > PENDING_PER_SYMBOL:
            self._ignore(waiting.pop(0), f"more than {PENDING_PER_SYMBOL} signals waited for {msg.symbol}'s "
                                         f"actor to start")
        if config.strategy.start_symbols is SymbolStart.ON_SIGNAL and msg.symbol not in self.starting:
            self.starting.add(msg.symbol)
            self.tell_peer(SYMBOLS, self.make(StartSymbol, msg, symbol=msg.symbol))

    def _ignore(self, msg: PredictionSignal, reason: str) -> None:
        signal_id = msg.source_id or msg.msg_id
        self.log.warning("strategy: signal {} ignored: {}", signal_id, reason)
        self.publish(self.make(SignalIgnored, msg, signal_id=signal_id, symbol=msg.symbol, reason=reason))

    # ------------------------------------------------------------ rules

    @run_once
    def receiveMsg_ReloadRules(self, msg: ReloadRules, sender: ActorAddress) -> None:
        path = Path(msg.path) if msg.path else self.path
        if path is None:
            self.tell(sender, self.make(AdminError, msg, code=AdminErrorCode.REFUSED, command="ReloadRules",
                                        text="the running configuration was not read from a file; "
                                             "give the path of one to reload from"))
            return
        ok, text = self.reload(msg, path, "admin command")
        if ok:
            self.tell(sender, self.make(AdminReply, msg, text=text))
        else:
            self.tell(sender, self.make(AdminError, msg, code=AdminErrorCode.FAILED, text=text,
                                        command="ReloadRules"))

    def reload(self, cause: Message | None, path: Path, why: str) -> tuple[bool, str]:
        """Validate the rules in `path` completely, then swap them in; return (ok, what happened)."""
        running, state = self.running, self.state
        assert running is not None and state is not None
        try:
            new = load_config(path)
            rules = core_rules.compile_set(new.rules, new.strategy, running.symbol_names,
                                           running.system.timezone)
        except (ConfigError, core_rules.RulesError) as exc:
            problems = exc.problems
            self.log.error("strategy: reload of {} ({}) refused; rules {} keep running:\n{}", path, why,
                           state.version, "\n".join(f"  - {p}" for p in problems))
            self.publish(self.make(RulesRejected, cause, problems=problems, source=str(path)))
            return False, (f"rules not reloaded, {state.version} keeps running; {len(problems)} "
                           f"problem(s):\n" + "\n".join(f"  - {p}" for p in problems))
        if rules.version == state.version:
            self.log.info("strategy: reload of {} ({}): rules {} unchanged", path, why, rules.version)
            return True, f"rules unchanged ({rules.version})"
        outside = replace(new, rules=running.rules, strategy=running.strategy, source=running.source)
        if outside != running:
            self.log.warning("strategy: {} also changes settings outside [strategy] and [rules]; those "
                             "take effect at the next start", path)
        previous = state.version
        self.running = replace(running, rules=new.rules, strategy=new.strategy)
        self.state = ControllerState(version=rules.version, rules=new.rules, strategy=new.strategy)
        self.reloads += 1
        self.tell(self.parent, self.make(Snapshot, cause, key=self.key, incarnation=self.incarnation,
                                         state=self.state))
        self._push(cause)
        self.log.info("strategy: rules {} -> {} ({}): {}", previous, rules.version, why,
                      ", ".join(rules.names) or "none")
        self._journal_rules(cause, rules.version, new.rules, str(path), why, previous)
        self.publish(self.make(RulesLoaded, cause, version=rules.version, rule_names=rules.names,
                               source=str(path)))
        return True, f"rules {previous} -> {rules.version}: {', '.join(rules.names) or 'none'}"

    def _journal_rules(self, cause: Message | None, version: str, rules: tuple[RuleConfig, ...], source: str,
                       why: str, previous: str = "") -> None:
        """Journal the rule set now running, whole: `why` can show what a version's rule said."""
        if self.journal is None:
            return
        names = ", ".join(r.name for r in rules) or "none"
        self.journal.record_event(
            RULES_EVENT, ts_ns=self.now_ns(), actor=self.key, ref=version,
            msg_id=cause.msg_id if cause is not None else "", corr_id=cause.correlation_id if cause else "",
            text=f"rules {previous + ' -> ' if previous else ''}{version} ({why}): {names}",
            data={"version": version, "previous": previous, "source": source, "why": why,
                  "rules": [asdict(r) for r in rules]})

    def _push(self, cause: Message | None) -> None:
        state = self.state
        assert state is not None
        self.tell_peer(SYMBOLS, self.make(RulesUpdated, cause, version=state.version, rules=state.rules,
                                          strategy=state.strategy))

    @run_once
    def receiveMsg_PeerMoved(self, msg: PeerMoved, sender: ActorAddress) -> None:
        super().receiveMsg_PeerMoved(msg, sender)
        if msg.name == SYMBOLS and self.state is not None:
            self.routes.clear()  # its children are announced again as they start
            self.starting.clear()
            if self.running is not None and self.running.strategy.start_symbols is SymbolStart.ON_SIGNAL:
                for symbol in self.waiting:  # a symbol asked to start may never have been
                    self.starting.add(symbol)
                    self.tell_peer(SYMBOLS, self.make(StartSymbol, msg, symbol=symbol))
            self._push(msg)      # a restarted symbols supervisor starts from the file's rules

    def receiveMsg_WakeupMessage(self, msg: WakeupMessage, sender: ActorAddress) -> None:
        if msg.payload != _WATCH or self.path is None or self.failed:
            return
        stamp = _stamp(self.path)
        if stamp is not None and stamp != self.stamp:
            self.stamp = stamp
            self.reload(None, self.path, "the file changed")
        self.wakeupAfter(timedelta(seconds=self.WATCH_INTERVAL_S), payload=_WATCH)

    def status_detail(self) -> str:
        version = self.state.version if self.state is not None else "-"
        waiting = sum(len(w) for w in self.waiting.values())
        return (f"rules {version}; {self.routed} signal(s) routed; {self.reloads} reload(s); "
                f"{len(self.routes)} symbol route(s)" + (f"; {waiting} signal(s) waiting" if waiting else "")
                + (f"; quarantined: {', '.join(sorted(self.quarantined))}" if self.quarantined else ""))

