"""Strategy protocol: the outcome of loading or reloading the trading rules."""

from __future__ import annotations

from dataclasses import dataclass

from core.config import RuleConfig, StrategyConfig
from messages.base import Message


@dataclass(frozen=True, slots=True, kw_only=True)
class RulesLoaded(Message):
    """A rule set is running; `version` is what order intents cite as their rules_version."""

    version: str
    rule_names: tuple[str, ...] = ()
    source: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class RulesRejected(Message):
    """A rule set failed to load; each problem names the rule and the offending text. The old set runs on."""

    problems: tuple[str, ...]
    source: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class RulesUpdated(Message):
    """A new rule set to run from now on (controller → symbols supervisor → each symbol actor).

    It carries the rule *configuration*, not compiled rules (those hold closures and do not
    pickle): each actor compiles it (core.rules) and caches the result by `version`.
    """

    version: str
    rules: tuple[RuleConfig, ...]
    strategy: StrategyConfig


@dataclass(frozen=True, slots=True, kw_only=True)
class StartSymbol(Message):
    """Start the actor of a configured `symbol` if it is not running (controller → symbols supervisor)."""

    symbol: str
