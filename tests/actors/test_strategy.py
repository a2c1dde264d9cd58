"""StrategyController against stand-in symbols/bus: signal routing, reloads (good, bad, watched), restarts."""

from __future__ import annotations

import os
import time
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from thespian.actors import ActorAddress, ActorSystem

from actors.strategy import RULES_EVENT, ControllerState, StrategyController
from core.config import load_config
from journal.store import Journal
from messages import (
    ActorQuarantined,
    AdminError,
    AdminReply,
    Direction,
    Peer,
    PredictionSignal,
    ReloadRules,
    RulesLoaded,
    RulesRejected,
    SignalAccepted,
    SignalIgnored,
    SignalRejected,
    SymbolActorStarted,
)
from tests.actors import helpers_runtime as h

pytestmark = pytest.mark.timeout(60)

ASK = timedelta(seconds=10)
_ACTOR = f"{StrategyController.__module__}.{StrategyController.__qualname__}"

BASE = """
[system]
log_dir = "{log_dir}"
state_dir = "{state_dir}"
[symbols.AAPL]
[symbols.MSFT]
[strategy]
watch_config = {watch}
"""
RULE = """
[rules.{name}]
when = "{when}"
action = {{ type = "log", message = "hit" }}
"""


def write(path: Path, *rules: tuple[str, str], watch: bool = False, extra: str = "") -> Path:
    text = BASE.format(log_dir=path.parent / "logs", state_dir=path.parent / "state",
                       watch=str(watch).lower()) + extra
    text += "".join(RULE.format(name=n, when=w) for n, w in rules)
    path.write_text(text)
    return path


def signal(symbol: str = "AAPL", n: int = 1) -> PredictionSignal:
    return PredictionSignal(symbol=symbol, direction=Direction.LONG, confidence=Decimal("0.8"),
                            source="test", source_id=f"t-{n}")


class Rig:
    """A StrategyController under a stand-in supervisor, with recording symbols and bus actors."""

    def __init__(self, asys: ActorSystem, path: Path, *, state: object = None) -> None:
        self.asys = asys
        self.symbols = asys.createActor(h.Recorder)
        self.bus = asys.createActor(h.Recorder)
        self.parent = asys.createActor(h.StandInSupervisor)
        peers = (Peer(name="symbols", address=self.symbols), Peer(name="bus", address=self.bus))
        info = asys.ask(self.parent, h.StartChild(actor_class=_ACTOR, key="strategy", config=load_config(path),
                                                  state=state, peers=peers, restart=False), ASK)
        self.child: ActorAddress = info.address

    def records(self, who: ActorAddress, type_name: str, count: int) -> list[Any]:
        answer = self.asys.ask(who, h.AwaitRecords(type_name=type_name, count=count), ASK)
        assert isinstance(answer, h.Records), f"waited for {count} {type_name}, got {answer!r}"
        return [m for m in answer.messages if type_name in h._names(m)]

    def published(self, cls: type, count: int = 0) -> list[Any]:
        deadline = time.monotonic() + 10
        while True:
            found = [p.message for p in self.records(self.bus, "Publish", 0) if isinstance(p.message, cls)]
            if len(found) >= count or time.monotonic() > deadline:
                return found
            time.sleep(0.01)


@pytest.fixture
def asys(simple_asys: ActorSystem) -> ActorSystem:
    return simple_asys


def test_configure_publishes_the_loaded_rule_version(asys: ActorSystem, tmp_path: Path) -> None:
    rig = Rig(asys, write(tmp_path / "config.toml", ("a", "position.flat")))
    (loaded,) = rig.published(RulesLoaded, 1)
    assert loaded.rule_names == ("a",) and loaded.version.startswith("r-")


def test_signal_waits_until_its_symbol_actor_is_announced_then_goes_direct(asys: ActorSystem,
                                                                           tmp_path: Path) -> None:
    rig = Rig(asys, write(tmp_path / "config.toml"))
    first = signal(n=1)
    asys.tell(rig.child, first)
    assert [a.signal_id for a in rig.published(SignalAccepted, 1)] == ["t-1"]
    aapl = asys.createActor(h.Recorder)
    asys.tell(rig.child, SymbolActorStarted(symbol="AAPL", address=aapl, incarnation=1))
    second = signal(n=2)
    asys.tell(rig.child, second)
    delivered = rig.records(aapl, "PredictionSignal", 2)
    assert [m.msg_id for m in delivered] == [first.msg_id, second.msg_id]
    assert rig.records(rig.symbols, "PredictionSignal", 0) == []  # nothing through the supervisor
    assert rig.records(rig.symbols, "StartSymbol", 0) == []  # at_start: the symbols start by themselves


def test_on_signal_start_asks_symbols_to_start_the_actor_once_and_delivers_on_announce(
        asys: ActorSystem, tmp_path: Path) -> None:
    rig = Rig(asys, write(tmp_path / "config.toml", extra='start_symbols = "on_signal"\n'))
    asys.tell(rig.child, signal("MSFT", n=1))
    asys.tell(rig.child, signal("MSFT", n=2))
    (start,) = rig.records(rig.symbols, "StartSymbol", 1)
    assert start.symbol == "MSFT"
    msft = asys.createActor(h.Recorder)
    asys.tell(rig.child, SymbolActorStarted(symbol="MSFT", address=msft, incarnation=1))
    assert [m.source_id for m in rig.records(msft, "PredictionSignal", 2)] == ["t-1", "t-2"]
    assert len(rig.records(rig.symbols, "StartSymbol", 0)) == 1


def test_signal_for_untraded_symbol_is_rejected_and_for_quarantined_one_ignored(
        asys: ActorSystem, tmp_path: Path) -> None:
    rig = Rig(asys, write(tmp_path / "config.toml"))
    asys.tell(rig.child, signal("TSLA"))
    asys.tell(rig.child, ActorQuarantined(key="MSFT", restarts=6, window_s=60))
    asys.tell(rig.child, signal("MSFT"))
    (rejected,) = rig.published(SignalRejected, 1)
    (ignored,) = rig.published(SignalIgnored, 1)
    assert "'TSLA' is not a traded symbol" in rejected.reason
    assert ignored.symbol == "MSFT" and "quarantined" in ignored.reason
    assert rig.records(rig.symbols, "PredictionSignal", 0) == []


def test_reload_swaps_in_new_rules_and_pushes_them_to_the_symbols(asys: ActorSystem, tmp_path: Path) -> None:
    path = write(tmp_path / "config.toml", ("a", "position.flat"))
    rig = Rig(asys, path)
    (first,) = rig.published(RulesLoaded, 1)
    write(path, ("a", "position.flat"), ("b", "signal.long"))
    reply = asys.ask(rig.child, ReloadRules(), ASK)
    assert isinstance(reply, AdminReply) and f"{first.version} -> " in reply.text
    (update,) = rig.records(rig.symbols, "RulesUpdated", 1)
    assert [r.name for r in update.rules] == ["a", "b"] and update.version != first.version
    (_, second) = rig.published(RulesLoaded, 2)
    assert second.version == update.version
    snapshots = rig.records(rig.parent, "Snapshot", 1)
    assert isinstance(snapshots[-1].state, ControllerState) and snapshots[-1].state.version == update.version
    again = asys.ask(rig.child, ReloadRules(), ASK)
    assert isinstance(again, AdminReply) and "unchanged" in again.text
    assert len(rig.records(rig.symbols, "RulesUpdated", 0)) == 1
    # The journal holds both rule sets whole, as they started running (an unchanged reload adds none).
    with Journal.open(tmp_path / "state" / "journal.sqlite", readonly=True) as journal:
        events = journal.events(kind=RULES_EVENT)
    assert [(e.ref, e.data["previous"], e.data["why"]) for e in events] == [
        (first.version, "", "start"), (update.version, first.version, "admin command")]
    assert [(r["name"], r["when"]) for r in events[1].data["rules"]] == [("a", "position.flat"),
                                                                        ("b", "signal.long")]


@pytest.mark.parametrize(("when", "fragment"), [
    ("signal.confidance > 0.5", "rules.b.when"),
    ("__import__('os').system('true')", "__import__"),
    ("position.flat and", "rules.b.when"),
])
def test_broken_reload_changes_nothing_and_says_why(asys: ActorSystem, tmp_path: Path, when: str,
                                                     fragment: str) -> None:
    path = write(tmp_path / "config.toml", ("a", "position.flat"))
    rig = Rig(asys, path)
    write(path, ("a", "position.flat"), ("b", when))
    reply = asys.ask(rig.child, ReloadRules(), ASK)
    assert isinstance(reply, AdminError) and fragment in reply.text and "keeps running" in reply.text
    (rejected,) = rig.published(RulesRejected, 1)
    assert any(fragment in p for p in rejected.problems)
    assert rig.records(rig.symbols, "RulesUpdated", 0) == []


def test_reload_of_an_unreadable_or_invalid_toml_file_keeps_the_rules(asys: ActorSystem, tmp_path: Path) -> None:
    path = write(tmp_path / "config.toml", ("a", "position.flat"))
    rig = Rig(asys, path)
    path.write_text("[rules.a\nwhen = ")
    assert isinstance(asys.ask(rig.child, ReloadRules(), ASK), AdminError)
    assert isinstance(asys.ask(rig.child, ReloadRules(path=str(tmp_path / "missing.toml")), ASK), AdminError)
    assert len(rig.published(RulesRejected, 2)) == 2
    assert rig.records(rig.symbols, "RulesUpdated", 0) == []


def test_reload_naming_an_untraded_symbol_is_refused(asys: ActorSystem, tmp_path: Path) -> None:
    path = write(tmp_path / "config.toml", ("a", "position.flat"))
    rig = Rig(asys, path)
    path.write_text(path.read_text() + '[symbols.TSLA]\n[rules.t]\nsymbols = ["TSLA"]\n'
                    'action = { type = "log", message = "x" }\n')
    reply = asys.ask(rig.child, ReloadRules(), ASK)
    assert isinstance(reply, AdminError) and "TSLA not traded" in reply.text


def test_restarted_controller_keeps_the_reloaded_rules_and_pushes_them(asys: ActorSystem, tmp_path: Path) -> None:
    path = write(tmp_path / "config.toml", ("a", "position.flat"))
    reloaded = load_config(write(tmp_path / "other.toml", ("z", "position.long")))
    state = ControllerState(version="r-x", rules=reloaded.rules, strategy=reloaded.strategy)
    rig = Rig(asys, path, state=state)
    (update,) = rig.records(rig.symbols, "RulesUpdated", 1)
    assert [r.name for r in update.rules] == ["z"]


def test_watched_file_change_reloads_without_a_command(tcp_asys: ActorSystem, tmp_path: Path) -> None:
    path = write(tmp_path / "config.toml", ("a", "position.flat"), watch=True)
    rig = Rig(tcp_asys, path)
    rig.published(RulesLoaded, 1)
    write(path, ("a", "position.flat"), ("b", "position.long"), watch=True)
    os.utime(path, ns=(time.time_ns() + 2_000_000_000,) * 2)  # a distinct mtime even on coarse clocks
    (update,) = rig.records(rig.symbols, "RulesUpdated", 1)
    assert [r.name for r in update.rules] == ["a", "b"]
    write(path, ("a", "nonsense"), watch=True)
    os.utime(path, ns=(time.time_ns() + 4_000_000_000,) * 2)
    (rejected,) = rig.published(RulesRejected, 1)
    assert any("nonsense" in p for p in rejected.problems)
    assert len(rig.records(rig.symbols, "RulesUpdated", 0)) == 1
