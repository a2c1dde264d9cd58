"""Every admin command driven as a `bootstrap.py` subprocess against `bootstrap.py run` on the shipped config (issue 7)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from actors.launcher import port_open
from journal.store import Journal
from simulator.control import send
from tests.e2e.harness import free_port, processes_mentioning, wait_until
from tests.simulator.ibapp import IBApp

ROOT = Path(__file__).resolve().parents[2]
BOOTSTRAP = str(ROOT / "bootstrap.py")
TOKEN_ENV = "IBACTORS_ADMIN_TOKEN"
CORE_ACTORS = ("bus", "tws", "risk", "groups", "symbols", "strategy", "signals")
SYMBOLS = ("AAPL", "MSFT", "SPY")
RULES = ("exit_on_reversal", "enter_long", "enter_short", "trail_winners")  # the shipped, enabled ones
OBSERVER_CLIENT_ID = 77  # our own API session at the simulator, to see every client's orders
DONE_STATUSES = frozenset({"Filled", "Cancelled", "ApiCancelled", "Inactive"})


def _write_config(directory: Path) -> Path:
    """Copy the shipped config into `directory` with a free admin port and a demo signal every second."""
    text = (ROOT / "config.toml").read_text()
    text, n = re.subn(r"(?m)^admin_port = \d+", f"admin_port = {free_port()}", text)
    text, m = re.subn(r"(?m)^interval_s = 5\.0", "interval_s = 1.0", text)  # [signals.demo]
    assert n == m == 1
    path = directory / "config.toml"
    path.write_text(text)
    return path


def _admin_port(config: Path) -> int:
    found = re.search(r"(?m)^admin_port = (\d+)", config.read_text())
    assert found
    return int(found.group(1))


def _bootstrap(config: Path, *args: str, token: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run `bootstrap.py ARGS --config CONFIG` in the config's directory, with `token` as the env token (or none)."""
    env = {k: v for k, v in os.environ.items() if k != TOKEN_ENV}
    if token is not None:
        env[TOKEN_ENV] = token
    return subprocess.run([sys.executable, BOOTSTRAP, *args, "--config", str(config)], cwd=config.parent,
                          env=env, capture_output=True, text=True, timeout=60)


def _cells(line: str) -> list[str]:
    return re.split(r"\s{2,}", line.strip())


def _dec(text: str) -> Decimal:
    return Decimal(text.replace(",", "") or "0")


class _System:
    """One `bootstrap.py run` on a copy of the shipped config, and the ways a test looks at it."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.config = _write_config(workdir)
        self.marker = str(self.config)  # every process of this system carries it in its command line
        self.state_dir = workdir / "var" / "state"
        self.launcher: subprocess.Popen[bytes] | None = None
        self.control = 0
        self._observer: IBApp | None = None

    @property
    def running(self) -> bool:
        return self.launcher is not None and self.launcher.poll() is None

    def start(self) -> None:
        with open(self.workdir / "run.out", "ab") as out:
            self.launcher = subprocess.Popen([sys.executable, BOOTSTRAP, "run", "--config", self.marker],
                                             cwd=self.workdir, stdout=out, stderr=subprocess.STDOUT,
                                             env={k: v for k, v in os.environ.items() if k != TOKEN_ENV},
                                             start_new_session=True)
        pidfile = self.state_dir / "system.json"
        info = wait_until(lambda: pidfile.exists() and json.loads(pidfile.read_text() or "{}"), 60, "the system to start")
        self.control = info["simulator_control_port"]
        # Started is not yet connected: the tests drive a system whose connection has synchronized
        # (the status reads the connection's state from the bus, a moment after the connection).
        wait_until(lambda: self.json("status")["connection_state"] == "READY", 30, "the connection to be READY")

    def stop(self) -> None:
        self._close_observer()
        if self.launcher is not None and self.launcher.poll() is None:
            os.killpg(self.launcher.pid, signal.SIGINT)  # Ctrl-C
            try:
                self.launcher.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.launcher.pid, signal.SIGKILL)
                self.launcher.wait(10)
        for pid in processes_mentioning(self.marker):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def _close_observer(self) -> None:
        if self._observer is not None:
            self._observer.stop(join=True)
            self._observer = None

    # ---------------------------------------------------------------- the admin commands

    def cli(self, *args: str, token: str | None = None) -> subprocess.CompletedProcess[str]:
        return _bootstrap(self.config, *args, token=token)

    def ok(self, *args: str) -> str:
        done = self.cli(*args)
        assert done.returncode == 0, (args, done.returncode, done.stdout, done.stderr)
        return done.stdout

    def json(self, *args: str) -> dict[str, Any]:
        return json.loads(self.ok(*args, "--json"))

    def rows(self, *args: str) -> list[dict[str, str]]:
        return self.json(*args)["rows"]

    def trading_state(self) -> str:
        return self.json("status")["trading_state"]

    def actor(self, key: str) -> dict[str, str]:
        return next(a for a in self.json("status")["actors"] if a["actor"] == key)

    def activate(self) -> dict[str, Any]:
        """Make trading ACTIVE (another test may have halted it); return the status."""
        status = self.json("status")
        if status["trading_state"] != "ACTIVE":
            self.ok("resume", "--reason", "test precondition")
            status = self.json("status")
        assert status["trading_state"] == "ACTIVE"
        return status

    def held(self) -> dict[str, Decimal]:
        """Return the positions table's held quantities."""
        return {r["symbol"]: _dec(r["quantity"]) for r in self.rows("positions") if _dec(r["quantity"])}

    def position_row(self, symbol: str) -> dict[str, str]:
        """Return the positions table's row of `symbol` without the fields that move with the market."""
        (row,) = self.rows("positions", symbol)
        return {k: v for k, v in row.items() if k not in ("mark", "unrealized")}

    def journal_admin_events(self, after_seq: int = 0) -> list[Any]:
        with Journal.open(self.state_dir / "journal.sqlite", readonly=True) as journal:
            return journal.events(kind="admin", after_seq=after_seq)

    # ---------------------------------------------------------------- the simulator's view

    def sim(self) -> dict[str, Any]:
        return send(self.control, {"cmd": "status"})["status"]

    def sim_held(self) -> dict[str, Decimal]:
        return {s: Decimal(q) for s, q in self.sim()["positions"].items() if Decimal(q)}

    def _observe(self) -> IBApp:
        if self._observer is None or not self._observer.isConnected():
            self._close_observer()
            self._observer = IBApp().start(self.sim()["port"], OBSERVER_CLIENT_ID)
        return self._observer

    def broker_open(self) -> dict[str, str]:
        """Return the simulator's open orders of every client: orderRef -> symbol."""
        app = self._observe()
        mark = app.mark()
        app.reqAllOpenOrders()
        app.wait_call("openOrderEnd", after=mark)
        return {c.args[2].orderRef: c.args[1].symbol for c in app.named("openOrder", mark)
                if c.args[3].status not in DONE_STATUSES}

    def broker_completed(self) -> dict[str, str]:
        """Return the simulator's finished orders: orderRef -> final status."""
        app = self._observe()
        mark = app.mark()
        app.reqCompletedOrders(False)
        app.wait_call("completedOrdersEnd", after=mark)
        return {c.args[1].orderRef: c.args[2].status for c in app.named("completedOrder", mark)}


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[_System]:
    system = _System(tmp_path_factory.mktemp("admin"))
    try:
        yield system
    finally:
        system.stop()
        assert not processes_mentioning(system.marker)


@pytest.fixture
def system(shared: _System) -> _System:
    """Return the module's running system, started again if a test shut it down."""
    if not shared.running:
        shared.start()
    return shared


# -------------------------------------------------------------------- no system


@pytest.mark.parametrize("args", [("status",), ("positions", "--json"), ("halt",), ("shutdown",)])
def test_command_without_a_running_system_says_so_in_one_line_and_starts_no_system(
        tmp_path: Path, args: tuple[str, ...]) -> None:
    config = _write_config(tmp_path)
    port = _admin_port(config)
    done = _bootstrap(config, *args)
    assert done.returncode == 1, done
    lines = (done.stdout + done.stderr).strip().splitlines()
    assert len(lines) == 1 and "no system is running" in lines[0] and f":{port}" in lines[0], lines
    assert not port_open("127.0.0.1", port)  # thespian would have started an empty system listening there
    assert not processes_mentioning(str(config))
    assert not (tmp_path / "var" / "state" / "journal.sqlite").exists()


# -------------------------------------------------------------------- read-only commands


def test_status_lists_every_actor_with_its_incarnation_and_restarts_in_text_and_json(system: _System) -> None:
    lines = system.ok("status").split("\n\n")[0].splitlines()  # the actors; monitoring tables follow
    assert re.fullmatch(r"trading (ACTIVE|HALTED|REDUCE_ONLY), connection \w+, \d+/\d+ actors running.*", lines[0])
    assert _cells(lines[1]) == ["actor", "supervisor", "incarnation", "restarts", "state", "pid"]
    assert set(lines[2]) <= {"-", " "}
    table = {cells[0]: cells for cells in (line.split() for line in lines[3:])}
    for key in CORE_ACTORS + SYMBOLS:
        actor, supervisor, incarnation, restarts, state, pid = table[key]
        assert supervisor == ("symbols" if key in SYMBOLS else "supervisor")
        assert int(incarnation) >= 1 and re.fullmatch(r"\d+/\d+", restarts) and state == "running"
        assert int(pid) > 0

    status = system.json("status")
    assert status["trading_state"] in ("ACTIVE", "HALTED", "REDUCE_ONLY")
    assert status["connection_state"] == "READY"
    assert status["quarantined"] == []
    actors = {a["actor"]: a for a in status["actors"]}
    assert set(CORE_ACTORS + SYMBOLS) <= set(actors)
    assert all(int(actors[key]["incarnation"]) >= 1 for key in CORE_ACTORS + SYMBOLS)


TABLES = {
    "positions": ("symbol", "state", "quantity", "avg cost", "mark", "unrealized", "realized", "commissions",
                  "stop", "target", "trailing"),
    "orders": ("ref", "group", "symbol", "side", "quantity", "type", "limit", "stop", "tif", "broker id",
               "status", "filled", ""),
    "pnl": ("symbol", "realized", "unrealized", "commissions", "net"),
    "signals": ("time", "id", "symbol", "direction", "confidence", "outcome", "reason"),
    "rules": ("rule", "fires today", "last fired", "symbol"),
}


@pytest.mark.parametrize("command", sorted(TABLES))
def test_read_only_table_has_its_header_and_parsable_json_and_a_symbol_filters_it(
        system: _System, command: str) -> None:
    columns = TABLES[command]
    if command == "signals":
        wait_until(lambda: system.rows("signals"), 20, "a first demo signal")
    lines = system.ok(command).splitlines()
    assert lines[0].startswith(f"{command}: ")
    assert _cells(lines[1]) == [c for c in columns if c]
    assert set(lines[2]) <= {"-", " "}

    table = system.json(command)
    assert table["title"] == command and table["text"]
    assert all(tuple(row) == columns for row in table["rows"])
    rows = table["rows"]
    match command:
        case "positions":
            assert sorted(r["symbol"] for r in rows) == sorted(SYMBOLS)
        case "pnl":
            assert [r["symbol"] for r in rows] == sorted(SYMBOLS) + ["TOTAL"]
            for column in ("realized", "unrealized", "commissions"):
                assert sum(_dec(r[column]) for r in rows[:-1]) == _dec(rows[-1][column])
        case "signals":
            assert rows and all(r["symbol"] in SYMBOLS and r["id"].startswith("demo-") for r in rows)
            assert all(r["outcome"] == "accepted" or r["outcome"].startswith("REJECTED") for r in rows)
        case "rules":
            assert [r["rule"] for r in rows] == list(RULES)
            assert re.match(r"rules r-\w+ \(4 running\)", table["text"]), table["text"]
        case "orders":
            assert all(r["symbol"] in SYMBOLS and r["ref"].startswith(f"{r['group']}:") for r in rows)

    only = system.rows(command, "AAPL")
    if command == "pnl":
        assert [r["symbol"] for r in only] == ["AAPL", "TOTAL"]
    elif command == "positions":
        assert [r["symbol"] for r in only] == ["AAPL"]
    else:
        assert all(r["symbol"] in ("AAPL", "") for r in only), only


def test_positions_table_holds_what_the_simulator_holds(system: _System) -> None:
    system.activate()
    wait_until(system.sim_held, 60, "a position at the simulator")
    wait_until(lambda: system.held() == system.sim_held(), 20, "the positions table to equal the simulator's positions")


def test_orders_table_lists_the_simulators_open_orders(system: _System) -> None:
    system.activate()
    wait_until(system.broker_open, 60, "an open order at the simulator")
    wait_until(lambda: {r["ref"] for r in system.rows("orders")} == set(system.broker_open()), 20,
          "the working orders to be the simulator's open orders")


# -------------------------------------------------------------------- the token


@pytest.mark.parametrize("args", [("halt",), ("flatten", "--all"), ("cancel-all",), ("restart", "AAPL"),
                                  ("log-level", "DEBUG"), ("shutdown",)])
def test_mutating_command_with_a_wrong_token_is_refused_and_changes_nothing(
        system: _System, args: tuple[str, ...]) -> None:
    before = system.activate()
    incarnation = next(a for a in before["actors"] if a["actor"] == "AAPL")["incarnation"]
    refused = system.cli(*args, token="not-the-token")
    assert refused.returncode == 1, refused
    assert "UNAUTHORIZED" in refused.stderr, refused.stderr
    as_json = system.cli(*args, "--json", token="not-the-token")
    assert as_json.returncode == 1 and json.loads(as_json.stdout)["code"] == "UNAUTHORIZED", as_json

    status = system.cli("status", "--json", token="not-the-token")  # read-only: the token is not needed
    assert status.returncode == 0, status
    after = json.loads(status.stdout)
    assert after["trading_state"] == "ACTIVE"
    assert next(a for a in after["actors"] if a["actor"] == "AAPL")["incarnation"] == incarnation
    assert system.running
    assert (system.state_dir / "admin.token").stat().st_mode & 0o777 == 0o600


# -------------------------------------------------------------------- restart, cancel-all, log level


def test_restart_of_a_symbol_gives_it_a_new_incarnation_with_its_position_unchanged(system: _System) -> None:
    system.activate()
    # Its position must carry state to lose: AAPL has traded (realized P&L and commissions).
    wait_until(lambda: _dec(system.position_row("AAPL")["commissions"]), 90, "AAPL to trade")
    # Frozen: no rule runs while halted, and no protective order of AAPL is left to fill.
    system.ok("halt", "--reason", "restart test")
    system.ok("cancel-all", "AAPL")
    wait_until(lambda: "AAPL" not in system.broker_open().values(), 15, "AAPL's orders gone at the simulator")
    sim_quantity = Decimal(system.sim()["positions"].get("AAPL", "0"))
    before = wait_until(lambda: (row := system.position_row("AAPL")) and _dec(row["quantity"]) == sim_quantity and row,
                   15, "AAPL's journaled position to settle")
    incarnation = int(system.actor("AAPL")["incarnation"])

    events = system.journal_admin_events()
    out = system.ok("restart", "AAPL")
    assert "restarting AAPL" in out, out
    journaled = [e.text for e in system.journal_admin_events(events[-1].seq if events else 0)]
    assert any(t.startswith("RestartActor: ") and "restarting AAPL" in t for t in journaled), journaled
    wait_until(lambda: (a := system.actor("AAPL"))["incarnation"] == str(incarnation + 1) and a["state"] == "running",
          20, "AAPL's next incarnation to run")
    assert system.position_row("AAPL") == before
    assert Decimal(system.sim()["positions"].get("AAPL", "0")) == sim_quantity

    unknown = system.cli("restart", "NOPE")
    assert unknown.returncode == 1 and "UNKNOWN_TARGET" in unknown.stderr, unknown
    system.ok("resume")


def _halted_with_protective_orders(system: _System) -> dict[str, str]:
    """Halt once the simulator holds a protective order; return its open orders (ref -> symbol) then."""
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        system.activate()
        wait_until(lambda: any(ref.endswith((":sl", ":tp")) for ref in system.broker_open()), 60,
              "a protective order at the simulator")
        system.ok("halt", "--reason", "cancel-all test")
        # The halt cancels working entries (or they fill): only protective orders stay.
        wait_until(lambda: not any(ref.endswith(":entry") for ref in system.broker_open()), 15,
              "the halt to settle the entries")
        open_orders = system.broker_open()
        if open_orders:
            return open_orders
    raise AssertionError("the simulator never kept an open order across a halt")


def test_cancel_all_of_a_symbol_cancels_only_its_orders_at_the_simulator_and_without_one_every_order(
        system: _System) -> None:
    open_orders = _halted_with_protective_orders(system)
    symbol = sorted(open_orders.values())[0]
    groups: dict[str, set[str]] = {}
    for ref in open_orders:
        groups.setdefault(ref.split(":")[0], set()).add(ref)

    out = system.ok("cancel-all", symbol)
    assert symbol in out, out
    wait_until(lambda: symbol not in system.broker_open().values(), 15, f"{symbol}'s orders gone at the simulator")
    still_open, finished = system.broker_open(), system.broker_completed()
    cancelled_groups = 0
    for group, refs in groups.items():
        statuses = {finished.get(ref, "open") for ref in refs}
        if group.startswith(f"{symbol}-"):
            # A leg that filled just before the cancel took its OCA sibling with it.
            assert statuses == {"Cancelled"} or "Filled" in statuses, (group, statuses)
            cancelled_groups += statuses == {"Cancelled"}
        else:  # untouched: still working, or finished by its own fill
            assert refs & set(still_open) or "Filled" in statuses, (group, statuses)
    assert cancelled_groups, groups

    system.ok("cancel-all")
    wait_until(lambda: not system.broker_open(), 15, "every order cancelled at the simulator")
    system.ok("resume")


def test_log_level_of_a_symbol_writes_its_debug_lines_and_an_unknown_actor_is_refused(system: _System) -> None:
    logs = system.workdir / "logs" / "symbols"
    aapl, msft = logs / "AAPL.log", logs / "MSFT.log"
    offsets = {path: path.stat().st_size for path in (aapl, msft)}

    def debug_lines(path: Path) -> list[str]:
        with path.open() as f:
            f.seek(offsets[path])
            return [line for line in f.read().splitlines() if re.search(r"\| DEBUG\s+\|", line)]

    out = system.ok("log-level", "AAPL", "DEBUG")
    assert "DEBUG" in out and "AAPL" in out, out
    # Two bars later MSFT has closed the first one too: it must have logged it below DEBUG.
    wait_until(lambda: len([line for line in debug_lines(aapl) if " bar " in line]) >= 2, 20, "AAPL's bars at DEBUG")
    assert not debug_lines(msft), debug_lines(msft)[:3]
    # A restarted AAPL (a new process) keeps the operator's level: its own bars come at DEBUG too.
    before = {m.group(1) for line in debug_lines(aapl) if (m := re.search(r"\| (AAPL#\d+) \|", line))}
    system.ok("restart", "AAPL")
    offsets[aapl] = aapl.stat().st_size

    def new_bars() -> list[str]:
        return [line for line in debug_lines(aapl) if " bar " in line
                and (m := re.search(r"\| (AAPL#\d+) \|", line)) and m.group(1) not in before]
    wait_until(lambda: len(new_bars()) >= 2, 30, "the restarted AAPL's bars at DEBUG")

    unknown = system.cli("log-level", "NOPE", "DEBUG")
    assert unknown.returncode == 1 and "UNKNOWN_TARGET" in unknown.stderr, unknown
    bad_level = system.cli("log-level", "AAPL", "LOUD")
    assert bad_level.returncode == 2, bad_level
    system.ok("log-level", "AAPL", "INFO")


# -------------------------------------------------------------------- halt, resume, flatten


def test_halt_keeps_new_entries_from_the_simulator_until_resume(system: _System) -> None:
    system.activate()
    seen = {r["id"] for r in system.rows("signals")}
    out = system.ok("halt", "--reason", "halt test")
    halted_ns = time.time_ns()
    assert "HALTED" in out, out
    assert system.trading_state() == "HALTED"
    refs = set(system.sim()["orders_per_ref"])

    wait_until(lambda: len({r["id"] for r in system.rows("signals") if r["outcome"] == "accepted"} - seen) >= 5, 30,
          "5 demo signals while halted")
    assert system.trading_state() == "HALTED"
    new_groups = {ref.split(":")[0] for ref in set(system.sim()["orders_per_ref"]) - refs}
    with Journal.open(system.state_dir / "journal.sqlite", readonly=True) as journal:
        approved_after = [i.intent_id for i in journal.intents(decision="APPROVED") if i.decided_ns > halted_ns]
        # Only an intent the gate had approved before the halt answered may still have been on its way.
        late = [g for g in new_groups if (i := journal.intent(g)) is None or i.decided_ns > halted_ns]
    assert not approved_after and not late, (approved_after, late)

    out = system.ok("resume", "--reason", "halt test done")
    assert "ACTIVE" in out, out
    assert system.trading_state() == "ACTIVE"


def test_flatten_all_closes_every_position_at_the_simulator_and_halts(system: _System) -> None:
    for args in (("flatten",), ("flatten", "AAPL", "--all")):
        bad = system.cli(*args)
        assert bad.returncode == 2 and "flatten --all" in bad.stderr, bad
    system.activate()
    wait_until(system.sim_held, 90, "a position at the simulator")

    out = system.ok("flatten", "--all", "--reason", "flatten test")
    assert "HALTED" in out, out
    wait_until(lambda: not system.sim_held(), 20, "every position at the simulator closed")
    wait_until(lambda: not system.broker_open(), 20, "no order left working at the simulator")
    assert system.trading_state() == "HALTED"
    wait_until(lambda: not system.held(), 20, "the positions table to hold nothing")


def test_a_symbol_the_system_does_not_trade_is_refused_as_unknown_target(system: _System) -> None:
    # A typo must not read as done: `flatten APPL` would close nothing and say it did.
    for command in (("flatten", "APPL"), ("cancel-all", "APPL"), ("positions", "APPL")):
        done = system.cli(*command)
        assert done.returncode == 1 and "UNKNOWN_TARGET" in done.stderr and "AAPL" in done.stderr, done


# -------------------------------------------------------------------- the journal, shutdown


def test_every_admin_command_is_journaled_with_its_outcome_and_never_its_token(system: _System) -> None:
    system.activate()
    events = system.journal_admin_events()
    after = events[-1].seq if events else 0
    system.ok("status")
    system.ok("orders")
    system.cli("halt", token="not-the-token")
    system.cli("log-level", "NOPE", "DEBUG")
    system.cli("restart", "NOPE")
    system.ok("halt", "--reason", "journal test")
    system.ok("resume", "--reason", "journal test done")
    system.ok("reload-rules")

    expected = ["GetStatus: answered", "AdminQuery: answered: ", "Halt: refused (UNAUTHORIZED)",
                "SetLogLevel: refused (UNKNOWN_TARGET)", "RestartActor: refused (UNKNOWN_TARGET)",
                "Halt: trading HALTED", "Resume: trading ACTIVE", "ReloadRules: "]
    events = system.journal_admin_events(after)
    texts = iter(e.text for e in events)
    for prefix in expected:  # in this order, each with what became of it
        assert any(text.startswith(prefix) for text in texts), (prefix, [e.text for e in events])
    halt = next(e for e in events if e.text.startswith("Halt: trading HALTED"))
    assert halt.data["reason"] == "journal test"
    token = (system.state_dir / "admin.token").read_text().strip()
    assert token and not any(token in e.text or token in json.dumps(e.data) for e in events)


def test_shutdown_stops_the_system_and_the_run_process_exits_by_itself(system: _System) -> None:
    port = _admin_port(system.config)
    assert system.launcher is not None
    out = system.ok("shutdown", "--reason", "shutdown test")
    assert "stopped" in out, out
    assert system.launcher.wait(60) == 0
    assert "system: stopped" in (system.workdir / "run.out").read_text()
    wait_until(lambda: not processes_mentioning(system.marker), 15, "every process of the system to exit")
    assert not port_open("127.0.0.1", port)
    assert not (system.state_dir / "system.json").exists()
    assert any(e.text.startswith("Shutdown: stopping") and e.data["reason"] == "shutdown test"
               for e in system.journal_admin_events())
    after = system.cli("status")
    assert after.returncode == 1 and "no system is running" in after.stderr, after
