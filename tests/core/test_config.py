"""Tests for core.config: the shipped config.toml, defaults, every kind of invalid value, error collection."""

from __future__ import annotations

import dataclasses
import pickle
import tomllib
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings, strategies as st

from core.config import (
    ActorBase,
    BrokerKind,
    ClockMode,
    Config,
    LogLevel,
    SecType,
    SignalSourceKind,
    Synchronous,
    Wire,
    load_config,
    loads_config,
    parse_config,
)
from core.errors import ConfigError

D = Decimal
SHIPPED = Path(__file__).resolve().parents[2] / "config.toml"
DEFAULTS = loads_config("")


def _problems(text: str) -> tuple[str, ...]:
    with pytest.raises(ConfigError) as info:
        loads_config(text, "test.toml")
    for problem in info.value.problems:
        assert problem in str(info.value)  # the message lists every problem
    return info.value.problems


# --- the shipped file and the defaults ---------------------------------------------------------


@pytest.mark.parametrize("value", ["-1", "20", "\"high\"", "1.5"])
def test_background_nice_outside_0_to_19_is_refused_naming_the_setting(value: str) -> None:
    problems = _problems(f"[system]\nbackground_nice = {value}\n")
    assert len(problems) == 1 and "system.background_nice" in problems[0], problems


def test_shipped_config_loads_with_expected_defaults() -> None:
    config = load_config(SHIPPED)

    assert config.source == str(SHIPPED)
    assert config.system.name == "ibactors"
    assert config.system.state_dir == Path("var/state")
    assert config.system.log_dir == Path("logs")
    assert config.system.log_level is LogLevel.INFO
    assert config.system.admin_port == 19471
    assert config.system.bind_address == "127.0.0.1"
    assert config.system.base is ActorBase.MULTIPROC_TCP
    assert config.system.zone.key == "America/New_York"
    assert config.system.background_nice == 19
    assert config.broker.kind is BrokerKind.SIMULATOR
    assert (config.broker.host, config.broker.port, config.broker.client_id) == ("127.0.0.1", 7497, 1)
    assert config.broker.account is None
    assert config.broker.pacing_msgs_per_s == 45
    assert config.broker.wire is Wire.PROTOBUF
    assert config.broker.heartbeat_timeout_s > config.broker.heartbeat_interval_s
    assert (config.broker.reconnect.initial_s, config.broker.reconnect.max_s) == (1.0, 60.0)
    assert config.simulator.port == 0
    assert config.simulator.clock is ClockMode.ACCELERATED
    assert config.simulator.commission_per_share == D("0.005")
    assert config.simulator.commission_min == D("1.00")
    assert config.symbol_names == ("AAPL", "MSFT", "SPY")
    assert all(s.exchange == "SMART" and s.currency == "USD" and s.sec_type is SecType.STK
               and s.tick_size == D("0.01") and s.lot_size == 1 for s in config.symbols)
    assert config.symbol("SPY").primary_exchange == "ARCA"
    assert config.supervision.core.max_restarts == 2
    assert config.supervision.symbol.max_restarts == 5
    assert config.market_data.bar_seconds == 5
    assert config.risk.max_order_notional == D(60000)
    assert config.risk.daily_loss_limit == D(5000)
    assert config.risk.reduce_only_at_pct == D(80)
    assert config.journal.synchronous is Synchronous.FULL
    assert config.journal_path == Path("var/state/journal.sqlite")
    assert config.signals.source is SignalSourceKind.DEMO
    assert config.signals.http.auth_env is None
    assert (config.strategy.session_open, config.strategy.session_close) == ("09:30", "16:00")
    assert [r.name for r in config.rules if r.enabled] == ["exit_on_reversal", "enter_long", "enter_short",
                                                            "trail_winners"]
    assert Config().rules == ()  # an empty file runs no rules: config.toml ships the default strategy
    assert config.monitoring.prometheus_port == 0


def test_shipped_config_states_the_code_defaults_except_simulated_symbols() -> None:
    shipped = load_config(SHIPPED)

    for f in dataclasses.fields(Config):
        if f.name not in ("simulator", "source", "rules"):
            assert getattr(shipped, f.name) == getattr(DEFAULTS, f.name), f.name
    assert dataclasses.replace(shipped.simulator, symbols=()) == DEFAULTS.simulator


def test_shipped_simulator_symbols_inherit_unset_keys_from_defaults() -> None:
    sim = load_config(SHIPPED).simulator

    assert sim.model_for("AAPL").price == D("190.00")
    assert sim.model_for("AAPL").spread == sim.defaults.spread == D("0.02")
    assert sim.model_for("SPY").spread == D("0.01")
    assert sim.model_for("SPY").volume == 50000
    assert sim.model_for("QQQ") is sim.defaults
    assert sim.defaults.price is None  # the simulator derives a stable price per symbol


def test_empty_file_is_valid_and_trades_default_symbols_on_the_simulator() -> None:
    config = loads_config("")

    assert config.broker.kind is BrokerKind.SIMULATOR
    assert config.symbol_names == ("AAPL", "MSFT", "SPY")
    assert config == dataclasses.replace(Config(), source="<string>")


def test_missing_sections_take_defaults_and_given_keys_override_only_themselves() -> None:
    config = loads_config("[risk]\nmax_order_quantity = 10\n")

    assert config.risk == dataclasses.replace(DEFAULTS.risk, max_order_quantity=D(10))
    for name in ("system", "broker", "simulator", "supervision", "symbols", "journal", "signals",
                 "strategy", "market_data", "monitoring"):
        assert getattr(config, name) == getattr(DEFAULTS, name)


def test_partial_nested_table_keeps_that_fields_own_defaults() -> None:
    config = loads_config("[supervision.core]\nmax_restarts = 9\n")

    assert config.supervision.core.max_restarts == 9
    assert config.supervision.core.window_s == DEFAULTS.supervision.core.window_s
    assert config.supervision.symbol == DEFAULTS.supervision.symbol


@given(st.sets(st.sampled_from([f.name for f in dataclasses.fields(Config) if f.name != "source"])))
@settings(max_examples=30)
def test_dropping_any_sections_of_the_shipped_file_yields_their_defaults(dropped: set[str]) -> None:
    document = tomllib.loads(SHIPPED.read_text(encoding="utf-8"))
    shipped = parse_config(document)
    if "symbols" in dropped:
        dropped.add("simulator")  # its per-symbol models name the shipped symbols

    config = parse_config({k: v for k, v in document.items() if k not in dropped})

    for name in {f.name for f in dataclasses.fields(Config)} - {"source"}:
        expected = DEFAULTS if name in dropped else shipped
        assert getattr(config, name) == getattr(expected, name), name


# --- value parsing ------------------------------------------------------------------------------


@pytest.mark.parametrize(("given", "expected"), [
    (0.1, D("0.1")),
    (1, D(1)),
    ("12.50", D("12.50")),
    (" 7 ", D(7)),
    (1e20, D("1E+20")),
])
def test_decimal_keys_accept_ints_floats_and_strings_exactly(given: Any, expected: Decimal) -> None:
    config = parse_config({"risk": {"max_order_notional": given}})

    assert config.risk.max_order_notional == expected
    assert type(config.risk.max_order_notional) is Decimal


@given(st.floats(min_value=1e-300, max_value=1e300, allow_nan=False, allow_infinity=False))
@settings(max_examples=50)
def test_decimal_from_float_equals_its_shortest_repr(value: float) -> None:
    config = parse_config({"risk": {"max_order_notional": value}})

    assert config.risk.max_order_notional == Decimal(str(value))


def test_symbols_as_array_of_tables_keep_their_order() -> None:
    config = loads_config('[[symbols]]\nsymbol = "SPY"\n[[symbols]]\nsymbol = "BRK.B"\ntick_size = "0.05"\n')

    assert config.symbol_names == ("SPY", "BRK.B")
    assert config.symbol("BRK.B").tick_size == D("0.05")
    with pytest.raises(KeyError):
        config.symbol("AAPL")


def test_symbol_table_name_with_a_dot_is_quoted_and_accepted() -> None:
    config = loads_config('[symbols."BRK.B"]\nlot_size = 1\n')

    assert config.symbol_names == ("BRK.B",)


def test_parsed_config_is_frozen_and_pickles_for_actor_messages() -> None:
    config = load_config(SHIPPED)

    with pytest.raises(dataclasses.FrozenInstanceError):
        config.risk.max_order_notional = D(1)  # type: ignore[misc]
    assert pickle.loads(pickle.dumps(config)) == config


# --- invalid input: one clear problem each ------------------------------------------------------

INVALID: list[tuple[str, str, tuple[str, ...]]] = [
    # (case, TOML text, substrings the single problem must contain: path, value, expectation)
    ("wrong type decimal", '[risk]\nmax_order_notional = "lots"',
     ("risk.max_order_notional", '"lots" (string)', "expected a decimal number > 0")),
    ("wrong type int", '[system]\nadmin_port = "19471"',
     ("system.admin_port", '"19471" (string)', "expected an integer in 1024..65535")),
    ("float for int", "[broker]\nport = 7497.0",
     ("broker.port", "7497.0 (float)", "expected an integer in 1..65535")),
    ("wrong type table", "system = 5",
     ("system", "5 (integer)", "expected a table")),
    ("wrong type bool", '[signals.file]\nfollow = "yes"',
     ("signals.file.follow", '"yes" (string)', "expected true or false")),
    ("out of range pacing", "[broker]\npacing_msgs_per_s = 51",
     ("broker.pacing_msgs_per_s = 51 (integer)", "expected an integer in 1..50")),
    ("out of range jitter", "[broker.reconnect]\njitter = 1.5",
     ("broker.reconnect.jitter = 1.5 (float)", "expected a number in 0..1")),
    ("out of range zero money", "[risk]\ndaily_loss_limit = 0",
     ("risk.daily_loss_limit = 0 (integer)", "expected a decimal number > 0")),
    ("out of range pct", "[risk]\nreduce_only_at_pct = 100.5",
     ("risk.reduce_only_at_pct = 100.5 (float)", "expected a decimal number in 0..100")),
    ("out of range admin port", "[system]\nadmin_port = 80",
     ("system.admin_port = 80 (integer)", "1024..65535")),
    ("out of range simulator port", "[simulator]\nport = 99",
     ("simulator.port = 99 (integer)", "expected 0 (pick a free port) or a port in 1024..65535")),
    ("out of range speed", "[simulator]\nspeed = 0",
     ("simulator.speed = 0 (integer)", "expected a number > 0")),
    ("bar not dividing a day", "[market_data]\nbar_seconds = 7",
     ("market_data.bar_seconds = 7 (integer)", "divides a day")),
    ("integer too large for a number", "[broker]\nconnect_timeout_s = 1" + "0" * 400,
     ("broker.connect_timeout_s = 1000", "…", "expected a number > 0")),
    ("nan decimal", "[risk]\nmax_order_notional = nan",
     ("risk.max_order_notional = nan (float)", "expected a decimal number > 0")),
    ("infinite decimal text", '[risk]\nmax_order_notional = "Infinity"',
     ("risk.max_order_notional", '"Infinity" (string)', "expected a decimal number > 0")),
    ("unknown key suggests closest", "[risk]\nmax_order_notionl = 1000",
     ("risk.max_order_notionl = 1000 (integer)", "unknown key", "did you mean risk.max_order_notional?")),
    ("unknown nested key suggests closest", "[broker.reconnect]\nmax = 5",
     ("broker.reconnect.max = 5 (integer)", "unknown key", "did you mean broker.reconnect.max_s?")),
    ("unknown section suggests closest", "[riks]\nmax_open_orders = 1",
     ("riks = {max_open_orders} (table)", "unknown key", "did you mean risk?")),
    ("unknown key without a close match lists keys", "[journal]\nzzz = 1",
     ("journal.zzz = 1 (integer)", "unknown key", "the keys of [journal] are: path, synchronous")),
    ("bool for int", "[broker]\nclient_id = true",
     ("broker.client_id = true (boolean)", "expected an integer", "true/false is not a number")),
    ("bool for decimal", "[risk]\nmax_order_quantity = false",
     ("risk.max_order_quantity = false (boolean)", "expected a decimal number > 0", "not a number")),
    ("bool for float", "[broker]\nconnect_timeout_s = true",
     ("broker.connect_timeout_s = true (boolean)", "expected a number > 0", "not a number")),
    ("bad enum choice", '[broker]\nkind = "TWS"',
     ('broker.kind = "TWS" (string)', 'expected one of "simulator", "tws"', 'did you mean "tws"?')),
    ("bad enum log level", '[system]\nlog_level = "info"',
     ('system.log_level = "info" (string)', '"DEBUG"', 'did you mean "INFO"?')),
    ("bad enum wire", '[broker]\nwire = "json"',
     ('broker.wire = "json" (string)', 'expected one of "protobuf", "text"')),
    ("bad symbol lowercase", "[symbols.aapl]",
     ('symbols.aapl.symbol = "aapl" (string)', "uppercase letters, digits, '.' or '-'")),
    ("bad symbol too long", '[[symbols]]\nsymbol = "ABCDEFGHIJKLM"',
     ('symbols[0].symbol = "ABCDEFGHIJKLM" (string)', "1 to 12")),
    ("bad symbol character", '[[symbols]]\nsymbol = "AA PL"',
     ('symbols[0].symbol = "AA PL" (string)', "expected a symbol")),
    ("symbol key contradicts table name", '[symbols.AAPL]\nsymbol = "MSFT"',
     ('symbols.AAPL.symbol = "MSFT" (string)', 'expected the table name "AAPL"')),
    ("duplicate symbol", '[[symbols]]\nsymbol = "AAPL"\n[[symbols]]\nsymbol = "MSFT"\n[[symbols]]\nsymbol = "AAPL"',
     ('symbols[2].symbol = "AAPL" (string)', "expected a unique symbol", "already defined at symbols[0]")),
    ("missing required key", '[[symbols]]\nexchange = "SMART"',
     ("symbols[0].symbol: missing required key", "expected a symbol")),
    ("no symbols", "symbols = []",
     ("symbols = [] (array)", "at least 1 entry")),
    ("bad currency", '[symbols.AAPL]\ncurrency = "usd"',
     ('symbols.AAPL.currency = "usd" (string)', "3-letter currency code")),
    ("unsupported sec type", '[symbols.ES]\nsec_type = "FUT"',
     ('symbols.ES.sec_type = "FUT" (string)', 'expected one of "STK"')),
    ("bad timezone typo", '[system]\ntimezone = "America/NewYork"',
     ('system.timezone = "America/NewYork" (string)', "IANA time zone", 'did you mean "America/New_York"?')),
    ("bad timezone", '[system]\ntimezone = "Mars/Olympus_Mons"',
     ('system.timezone = "Mars/Olympus_Mons" (string)', "expected an IANA time zone name")),
    ("bad bind address", '[system]\nbind_address = "localhost:80"',
     ('system.bind_address = "localhost:80" (string)', "expected an IP address")),
    ("bad url", '[signals.http]\nurl = "ftp://example.com/x"',
     ('signals.http.url = "ftp://example.com/x" (string)', "expected an http:// or https:// URL")),
    ("literal secret in auth_env", '[signals.http]\nauth_env = "sk_live_4eC39HqLyjWDarjtT1zdp7dc"',
     ("signals.http.auth_env", '"sk_…" (32 characters, hidden)', "NAME of an environment variable",
      "never write secrets in the configuration file")),
    ("literal secret uppercase token in auth_env", '[signals.http]\nauth_env = "AKIAIOSFODNN7EXAMPLE"',
     ("signals.http.auth_env", "hidden", "environment variable")),
    ("literal secret in auth_header", '[signals.http]\nauth_header = "Bearer eyJhbGciOiJIUzI1NiJ9"',
     ("signals.http.auth_header", "hidden", "NAME of an HTTP header", "environment variable")),
    ("literal secret under an unknown key", '[signals.http]\napi_key = "abcd1234efgh5678"',
     ("signals.http.api_key", "hidden", "unknown key", "environment variable")),
    ("literal secret in url", '[signals.http]\nurl = "https://bob:hunter2@signals.example.com/"',
     ("signals.http.url", "hidden", "without credentials", "environment variable")),
    ("literal secret in url query", '[signals.http]\nurl = "https://x.example.com/p?api_key=abc123"',
     ("signals.http.url", "hidden", "without credentials")),
    ("cross-field session closes before it opens", '[strategy]\nsession_open = "16:00"\nsession_close = "09:30"',
     ('strategy.session_open = "16:00"', 'strategy.session_close = "09:30"',
      "expected session_open before session_close")),
    ("cross-field heartbeat timeout", "[broker]\nheartbeat_interval_s = 10\nheartbeat_timeout_s = 10",
     ("broker.heartbeat_timeout_s = 10.0", "broker.heartbeat_interval_s = 10.0",
      "expected heartbeat_timeout_s > heartbeat_interval_s")),
    ("cross-field reconnect max below initial", "[broker.reconnect]\ninitial_s = 30\nmax_s = 5",
     ("broker.reconnect.max_s = 5.0", "broker.reconnect.initial_s = 30.0", "expected max_s >= initial_s")),
    ("cross-field simulator port is the admin port", "[system]\nadmin_port = 20000\n[simulator]\nport = 20000",
     ("simulator.port = 20000", "system.admin_port = 20000", "expected different ports")),
    ("cross-field metrics port is the admin port", "[monitoring]\nprometheus_port = 19471",
     ("monitoring.prometheus_port = 19471", "system.admin_port = 19471", "expected different ports")),
    ("cross-field http source without url", '[signals]\nsource = "http"',
     ('signals.source = "http"', "signals.http.url = (not set)", "signals.http.url to be set")),
    ("cross-field file source without path", '[signals]\nsource = "file"',
     ('signals.source = "file"', "signals.file.path = (not set)", "signals.file.path to be set")),
    ("cross-field simulated symbol not traded", "[simulator.symbols.APPL]\nprice = 1",
     ("simulator.symbols", "symbols = ", "not in [symbols]: APPL (did you mean AAPL?)")),
    ("toml syntax error", "[risk]\nmax_order_notional = = 5",
     ("test.toml: invalid TOML", "line 2, column")),
    ("toml duplicate table", "[risk]\n[risk]",
     ("test.toml: invalid TOML", "line 2")),
]


@pytest.mark.parametrize(("text", "needles"), [(t, n) for _, t, n in INVALID],
                         ids=[case for case, _, _ in INVALID])
def test_invalid_value_gives_one_problem_naming_path_value_and_expectation(
        text: str, needles: tuple[str, ...]) -> None:
    problems = _problems(text)

    assert len(problems) == 1, problems
    for needle in needles:
        assert needle in problems[0], (needle, problems[0])


@pytest.mark.parametrize("secret", [
    "sk_live_4eC39HqLyjWDarjtT1zdp7dc",
    "eyJhbGciOiJIUzI1NiJ9",
    "hunter2",
])
def test_literal_secret_never_appears_in_the_error_text(secret: str) -> None:
    text = (f'[signals.http]\nauth_env = "{secret}"\nauth_header = "Bearer {secret}"\n'
            f'token = "{secret}"\nurl = "https://bob:{secret}@x.example.com/"\n')
    with pytest.raises(ConfigError) as info:
        loads_config(text)

    assert len(info.value.problems) == 4
    assert secret not in str(info.value)


def test_environment_variable_name_is_accepted_for_the_credential() -> None:
    config = loads_config('[signals]\nsource = "http"\n[signals.http]\n'
                          'url = "https://signals.example.com/v1/p?symbol=AAPL"\nauth_env = "SIGNAL_API_KEY"\n')

    assert config.signals.http.auth_env == "SIGNAL_API_KEY"
    assert config.signals.http.url == "https://signals.example.com/v1/p?symbol=AAPL"


def test_several_problems_are_all_reported_together() -> None:
    text = """
[system]
log_level = "LOUD"
[broker]
client_id = -1
pacing_msgs_per_s = true
[risk]
max_order_notionl = 5
[[symbols]]
symbol = "aapl"
[strategy]
session_open = "17:00"
session_close = "09:30"
"""
    problems = _problems(text)

    assert len(problems) == 6, problems
    for path in ("system.log_level", "broker.client_id", "broker.pacing_msgs_per_s",
                 "risk.max_order_notionl", "symbols[0].symbol", 'strategy.session_open = "17:00", strategy.session_close = "09:30"'):
        assert sum(path in p for p in problems) == 1, path
    assert "6 problem(s)" in str(ConfigError(problems))


def test_cross_field_check_still_runs_when_another_key_of_the_section_is_invalid() -> None:
    problems = _problems('[strategy]\nsession_open = "17:00"\nsession_close = "09:30"\nwatch_config = 3\n')

    assert len(problems) == 2
    assert any("strategy.watch_config = 3" in p for p in problems)
    assert any("expected session_open before session_close" in p for p in problems)


def test_symbol_table_contradicting_its_name_still_has_its_other_keys_checked() -> None:
    problems = _problems('[symbols.AAPL]\nsymbol = "MSFT"\nlot_size = 0\n')

    assert len(problems) == 2
    assert any(p.startswith('symbols.AAPL.symbol = "MSFT"') for p in problems)
    assert any(p.startswith("symbols.AAPL.lot_size = 0 (integer): expected an integer >= 1") for p in problems)


@given(section=st.sampled_from(["", "system", "broker", "broker.reconnect", "simulator.defaults",
                                "risk", "signals.http", "strategy", "supervision.core"]),
       key=st.from_regex(r"[a-z][a-z_]{0,15}", fullmatch=True))
@settings(max_examples=60)
def test_any_unknown_key_is_reported_with_its_path(section: str, key: str) -> None:
    document: dict[str, Any] = {}
    table = document
    for part in filter(None, section.split(".")):
        table = table.setdefault(part, {})
    known = {f.name for f in dataclasses.fields(_section_type(section))}
    if key in known:
        return
    table[key] = 1

    with pytest.raises(ConfigError) as info:
        parse_config(document)

    path = f"{section}.{key}" if section else key
    assert len(info.value.problems) == 1
    assert info.value.problems[0].startswith(f"{path} = 1 (integer): unknown key")


def _section_type(section: str) -> type:
    cls: Any = Config
    for part in filter(None, section.split(".")):
        cls = type(getattr(cls(), part))
    return cls


# --- reading the file ---------------------------------------------------------------------------


def test_missing_file_is_a_config_error_naming_the_path(tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    with pytest.raises(ConfigError) as info:
        load_config(path)

    assert str(path) in str(info.value)
    assert "cannot read" in str(info.value)


def test_file_with_utf8_bom_loads(tmp_path: Path) -> None:
    path = tmp_path / "bom.toml"
    path.write_bytes(b"\xef\xbb\xbf[risk]\nmax_open_orders = 7\n")

    assert load_config(path).risk.max_open_orders == 7


def test_non_utf8_file_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes('[system]\nname = "caf\xe9"\n'.encode("latin-1"))

    with pytest.raises(ConfigError, match="UTF-8"):
        load_config(path)


def test_syntax_error_in_a_file_names_the_file_and_position(tmp_path: Path) -> None:
    path = tmp_path / "broken.toml"
    path.write_text("[system]\nname = \"x\"\nadmin_port = \n", encoding="utf-8")

    with pytest.raises(ConfigError) as info:
        load_config(path)

    assert f"{path}: invalid TOML" in str(info.value)
    assert "line 3" in str(info.value)


# --- several nodes ([cluster]) --------------------------------------------------------------------

_TWO_MEMBERS = '''
[cluster]
symbols = ["SPY"]
max_symbols = 1
heartbeat_s = 0.5
[cluster.nodes.b]
admin_port = 19472
symbols = ["AAPL", "MSFT"]
max_symbols = 2
[cluster.nodes.c]
host = "127.0.0.1"
admin_port = 19473
'''


def test_cluster_defaults_to_one_node_and_the_shipped_file_lists_no_members() -> None:
    cluster = load_config(SHIPPED).cluster

    assert cluster == DEFAULTS.cluster
    assert not cluster.active
    assert (cluster.name, cluster.symbols, cluster.heartbeat_s, cluster.missed_heartbeats) == ("main", ("*",), 1.0, 3)
    assert cluster.dead_after_s == 3.0


def test_cluster_members_parse_in_order_with_their_defaults() -> None:
    cluster = loads_config(_TWO_MEMBERS).cluster

    assert cluster.active
    assert [(n.name, n.host, n.admin_port, n.symbols, n.max_symbols) for n in cluster.nodes] == [
        ("b", "127.0.0.1", 19472, ("AAPL", "MSFT"), 2), ("c", "127.0.0.1", 19473, ("*",), 0)]
    assert cluster.node("c").admin_port == 19473
    assert cluster.dead_after_s == 1.5
    with pytest.raises(KeyError):
        cluster.node("main")  # the leader is no member


@pytest.mark.parametrize(("symbol", "leader", "b", "c"), [
    ("SPY", True, False, True),
    ("AAPL", False, True, True),
    ("MSFT", False, True, True),
])
def test_node_symbol_lists_admit_named_symbols_and_star_admits_any(symbol: str, leader: bool, b: bool,
                                                                   c: bool) -> None:
    cluster = loads_config(_TWO_MEMBERS).cluster

    assert (cluster.leader_admits(symbol), cluster.node("b").admits(symbol), cluster.node("c").admits(symbol)) == (
        leader, b, c)


@pytest.mark.parametrize(("text", "expected"), [
    ('[cluster]\nname = "b"\n[cluster.nodes.b]\nadmin_port = 19472\n',
     "member names other than the leader's own"),
    ('[cluster.nodes.b]\nadmin_port = 19472\n[cluster.nodes.c]\nadmin_port = 19472\n',
     "b and c share 127.0.0.1:19472"),
    ('[cluster.nodes.b]\nadmin_port = 19472\nsymbols = ["MSFX"]\n',
     "cluster.nodes.b.symbols: MSFX (did you mean MSFT?)"),
    ('[cluster]\nsymbols = ["QQQ"]\n[cluster.nodes.b]\nadmin_port = 19472\n',
     "not in [symbols]: cluster.symbols: QQQ"),
    ('[cluster.nodes.b]\nadmin_port = 19472\nsymbols = ["aapl"]\n',
     'cluster.nodes.b.symbols[0] = "aapl" (string): expected "*" (every traded symbol) or a symbol'),
    ('[cluster.nodes.b]\nhost = "10.0.0.2"\nadmin_port = 19472\n',
     "system.bind_address that cluster.nodes.b on 10.0.0.2 can reach"),
    ('[cluster.nodes.b]\nadmin_port = 19471\n',
     "cluster.nodes.b on another address than the leader's own"),
    ('[cluster.nodes.b]\nsymbols = ["*"]\n', "cluster.nodes.b.admin_port: missing required key"),
    ('[cluster.nodes.b]\nadmin_port = 19472\nhost = "localhost"\n', 'cluster.nodes.b.host = "localhost"'),
    ('[cluster]\nheartbeat_s = 0.01\n', "cluster.heartbeat_s = 0.01 (float): expected a number in 0.1..600"),
    ('[cluster]\nmissed_heartbeats = 1\n', "cluster.missed_heartbeats = 1 (integer): expected an integer in 2..100"),
    ('[cluster.nodes."b c"]\nadmin_port = 19472\n', 'cluster.nodes."b c".name = "b c" (string): expected a node name'),
])
def test_invalid_cluster_settings_are_reported_with_the_offending_keys(text: str, expected: str) -> None:
    problems = _problems(text)

    assert len(problems) == 1, problems
    assert expected in problems[0], problems


def test_member_on_another_host_is_valid_when_the_leader_listens_on_a_routable_address() -> None:
    config = loads_config('[system]\nbind_address = "10.0.0.1"\n[cluster.nodes.b]\nhost = "10.0.0.2"\n'
                          'admin_port = 19471\n')

    assert config.cluster.node("b").host == "10.0.0.2"
