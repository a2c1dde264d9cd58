"""Several nodes: capabilities, where symbols are placed, and the placed actor's capability check."""

from __future__ import annotations

from pathlib import Path

import pytest

from actors import nodes
from core.config import Config, loads_config

CONFIG = loads_config('''
[system]
admin_port = 19480
state_dir = "var/state"
[symbols.AAPL]
[symbols.MSFT]
[symbols.SPY]
[symbols.QQQ]
[cluster]
name = "main"
symbols = ["SPY"]
[cluster.nodes.b]
admin_port = 19481
symbols = ["AAPL", "MSFT"]
max_symbols = 1
[cluster.nodes.c]
admin_port = 19482
''')


def _placement(config: Config = CONFIG, *live: str) -> nodes.Placement:
    placement = nodes.Placement(config.cluster)
    for name in live:
        assert placement.joined(name, f"admin-{name}")  # type: ignore[arg-type]
    return placement


def test_leader_and_member_capabilities_name_the_node_and_the_leader_to_join() -> None:
    leader = nodes.leader_capabilities(CONFIG)
    member = nodes.member_capabilities(CONFIG, CONFIG.cluster.node("b"), admin_port=20001)

    assert leader == {"Admin Port": 19480, nodes.NODE_CAP: "main", nodes.LEADER_CAP: True,
                      nodes.SYMBOLS_CAP: ("SPY",)}
    assert member == {"Admin Port": 20001, nodes.NODE_CAP: "b", nodes.LEADER_CAP: False,
                      nodes.SYMBOLS_CAP: ("AAPL", "MSFT"), nodes.CONVENTION_CAP: ("127.0.0.1", 19480)}
    assert nodes.member_capabilities(CONFIG, CONFIG.cluster.node("c"))["Admin Port"] == 19482


def test_absolute_paths_resolve_the_state_and_log_directories() -> None:
    config = nodes.absolute_paths(CONFIG)

    assert config.system.state_dir == Path("var/state").resolve()
    assert config.system.log_dir.is_absolute()
    assert config.journal_path.is_absolute()


@pytest.mark.parametrize(("live", "expected"), [
    ((), {"AAPL": "main", "MSFT": "main", "SPY": "main", "QQQ": "main"}),        # no member: the leader
    (("b",), {"AAPL": "b", "MSFT": "main", "SPY": "main", "QQQ": "main"}),       # b has room for one
    (("c",), {"AAPL": "c", "MSFT": "c", "SPY": "main", "QQQ": "c"}),             # the leader prefers SPY
    (("b", "c"), {"AAPL": "b", "MSFT": "c", "SPY": "main", "QQQ": "c"}),         # first fit in config order
])
def test_each_symbol_goes_to_the_first_live_node_that_admits_it_and_has_room(live: tuple[str, ...],
                                                                             expected: dict[str, str]) -> None:
    placement = _placement(CONFIG, *live)
    where = {}
    for symbol in ("AAPL", "MSFT", "SPY", "QQQ"):
        where[symbol] = placement.choose(symbol)
        placement.place(symbol, where[symbol])

    assert where == expected


def test_a_member_that_left_hands_back_its_symbols_and_gets_no_more() -> None:
    placement = _placement(CONFIG, "b", "c")
    for symbol in ("AAPL", "MSFT", "QQQ"):
        placement.place(symbol, placement.choose(symbol))

    assert placement.left("c", "admin-b") is None  # c's name with another admin: not c leaving
    assert placement.left("c", "admin-c") == ("MSFT", "QQQ")
    assert placement.left("c", "admin-c") is None  # told twice
    assert placement.choose("MSFT") == "main"      # b is full (AAPL), c is gone
    assert placement.on("b") == ("AAPL",)
    assert "c (down): MSFT QQQ" in placement.describe()


def test_a_member_that_did_not_start_a_symbol_is_skipped_for_it_until_it_rejoins() -> None:
    placement = _placement(CONFIG, "c")
    placement.place("QQQ", placement.choose("QQQ"))

    assert placement.failed_start("QQQ") == "c"
    assert placement.choose("QQQ") == "main"
    assert placement.choose("AAPL") == "c"  # only that symbol
    placement.place("SPY", "main")
    assert placement.failed_start("SPY") is None  # the leader never refuses
    assert placement.left("c", "admin-c") is not None and placement.joined("c", "admin-c2")  # type: ignore[arg-type]
    assert placement.choose("QQQ") == "c"


@pytest.mark.parametrize("name", ["main", "x", None, 7])
def test_only_configured_members_join(name: object) -> None:
    placement = _placement()

    assert placement.joined(name, "admin-x") is False  # type: ignore[arg-type]
    assert placement.expected() == ("b", "c")


def test_expected_lists_the_members_still_to_join() -> None:
    placement = _placement(CONFIG, "c")

    assert placement.expected() == ("b",)
    placement.joined("b", "admin-b")  # type: ignore[arg-type]
    assert placement.expected() == ()


@pytest.mark.parametrize(("capabilities", "requirements", "admits"), [
    ({nodes.NODE_CAP: "b", nodes.SYMBOLS_CAP: ("AAPL",)}, {nodes.NODE_CAP: "b", nodes.SYMBOL_REQ: "AAPL"}, True),
    ({nodes.NODE_CAP: "b", nodes.SYMBOLS_CAP: ("*",)}, {nodes.NODE_CAP: "b", nodes.SYMBOL_REQ: "QQQ"}, True),
    ({nodes.NODE_CAP: "b", nodes.SYMBOLS_CAP: ("AAPL",)}, {nodes.NODE_CAP: "b", nodes.SYMBOL_REQ: "MSFT"}, False),
    ({nodes.NODE_CAP: "c", nodes.SYMBOLS_CAP: ("*",)}, {nodes.NODE_CAP: "b", nodes.SYMBOL_REQ: "AAPL"}, False),
    ({nodes.NODE_CAP: "b", nodes.SYMBOLS_CAP: ("*",)}, {}, False),      # never placed without a node
    ({"Admin Port": 1900}, {nodes.NODE_CAP: "b"}, False),              # a system that is no node
])
def test_placed_symbol_actor_admits_only_the_required_node_when_it_runs_the_symbol(
        capabilities: dict[str, object], requirements: dict[str, object], admits: bool) -> None:
    assert nodes.PlacedSymbolActor.actorSystemCapabilityCheck(capabilities, requirements) is admits


def _node_config(tmp_path: Path, port: int) -> Config:
    return loads_config(f'''
[system]
admin_port = 19480
state_dir = "{tmp_path / "state"}"
log_dir = "{tmp_path / "logs"}"
[cluster.nodes.b]
admin_port = {port}
''')


@pytest.mark.parametrize(("name", "setup", "expected"), [
    ("x", "", "no node 'x' in [cluster.nodes]; the configured nodes are b"),
    ("b", "busy", "is in use: is node b running already?"),
    ("b", "", "no journal at"),
])
def test_a_node_that_cannot_join_says_why_before_starting_anything(tmp_path: Path, name: str, setup: str,
                                                                   expected: str) -> None:
    import socket

    from actors.launcher import LaunchError, run_node

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        if setup == "busy":
            busy.listen(1)  # else the port is bound, not listening: free for a node to probe
        config = _node_config(tmp_path, busy.getsockname()[1])
        with pytest.raises(LaunchError, match=expected.replace("[", r"\[").replace("]", r"\]").replace("?", r"\?")):
            run_node(config, name)
    assert not (tmp_path / "state").exists()  # a node never makes a journal of its own


def test_a_config_without_members_has_no_node_to_run() -> None:
    from actors.launcher import LaunchError, run_node

    with pytest.raises(LaunchError, match=r"lists no member nodes"):
        run_node(loads_config(""), "b")
