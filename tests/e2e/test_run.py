"""`bootstrap.py run` on the shipped config, driven as a subprocess: it trades on the simulator and Ctrl-C stops everything."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

import pytest

from actors.launcher import port_open
from simulator.control import send
from tests.e2e.harness import kill_launched, free_port, processes_mentioning, wait_until

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    text = (ROOT / "config.toml").read_text()
    text, n = re.subn(r"(?m)^admin_port = \d+", f"admin_port = {free_port()}", text)
    assert n == 1
    (tmp_path / "config.toml").write_text(text)
    return tmp_path


@pytest.mark.timeout(240)
def test_run_on_the_shipped_config_trades_on_the_simulator_and_ctrl_c_leaves_no_process(workdir: Path) -> None:
    config = workdir / "config.toml"
    marker = str(config)  # every process of this system carries it in its command line
    launcher = subprocess.Popen([sys.executable, str(ROOT / "bootstrap.py"), "run", "--config", marker],
                                cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                start_new_session=True)
    started = time.monotonic()
    try:
        state = workdir / "var" / "state" / "system.json"
        info = wait_until(lambda: state.exists() and json.loads(state.read_text() or "{}"), 60, "the system to start")
        control = info["simulator_control_port"]

        def traded() -> dict | None:
            status = send(control, {"cmd": "status"})["status"]
            return status if status["executions"] > 0 and status["orders_per_ref"] else None

        status = wait_until(traded, 120, "an order to fill at the simulator")
        first_fill_s = time.monotonic() - started
        print(f"first fill {first_fill_s:.1f} s after start; simulator: {status}")
        assert all(count == 1 for count in status["orders_per_ref"].values()), status["orders_per_ref"]
        assert all(re.fullmatch(r"[A-Z]+-\d+-\d+:(entry|sl|tp)", ref) for ref in status["orders_per_ref"])
        logs = workdir / "logs"
        assert (logs / "system.log").stat().st_size > 0
        traded_symbols = {ref.split("-")[0] for ref in status["orders_per_ref"]}
        for symbol in traded_symbols:
            assert (logs / "symbols" / f"{symbol}.log").stat().st_size > 0

        _reload_rules_while_running(config, logs / "system.log")

        os.killpg(launcher.pid, signal.SIGINT)  # what Ctrl-C in its terminal does
        out, _ = launcher.communicate(timeout=60)
        text = out.decode(errors="replace")
        assert launcher.returncode == 0, text
        assert "system: stopped" in text
        assert not state.exists()
        wait_until(lambda: not processes_mentioning(marker), 15, "every process of the system to exit")

        # The journal says why each order was sent: the rule that fired on the signal, the intent,
        # the risk decision, the orders and the fills.
        ref = sorted(status["orders_per_ref"])[0]
        why = subprocess.run([sys.executable, str(ROOT / "bootstrap.py"), "why", ref, "--config", marker],
                             cwd=workdir, capture_output=True, text=True, timeout=60)
        assert why.returncode == 0, why.stderr
        for text in (ref, "APPROVED", "SENT", "rule"):
            assert text in why.stdout, why.stdout
        unknown = subprocess.run([sys.executable, str(ROOT / "bootstrap.py"), "why", "NOPE-1-1", "--config",
                                  marker], cwd=workdir, capture_output=True, text=True, timeout=60)
        assert unknown.returncode == 1 and "NOPE-1-1" in unknown.stderr, unknown.stderr
    finally:
        kill_launched(launcher, marker)


def _reload(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(ROOT / "bootstrap.py"), "reload-rules", "--config", str(config)],
                          cwd=config.parent, capture_output=True, text=True, timeout=60)


def _reload_rules_while_running(config: Path, system_log: Path) -> None:
    """`bootstrap.py reload-rules` and the watched file: a good edit swaps the rules, a bad one is refused."""
    good = config.read_text()
    edited = good.replace('signal.confidence >= 0.65', 'signal.confidence >= 0.7')
    assert edited != good
    config.write_text(edited)
    done = _reload(config)
    assert done.returncode == 0, done.stderr
    assert re.search(r"rules (r-\w+ -> r-\w+|unchanged \(r-\w+\))", done.stdout), done.stdout  # the watcher may be first
    wait_until(lambda: re.search(r"strategy: rules r-\w+ -> r-\w+", system_log.read_text()), 10, "the rules swapped")
    config.write_text(edited.replace('signal.confidence >= 0.7', 'signal.confidance >= 0.7'))
    refused = _reload(config)
    assert refused.returncode == 2 and "rules.enter_long.when" in refused.stderr, refused
    assert "running rules stay as they are" in refused.stderr
    wait_until(lambda: "refused; rules r-" in system_log.read_text(), 10, "the watcher refusing the broken file")
    config.write_text(good)


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(x) for x in text.split()]


@pytest.mark.timeout(240)
def test_run_stops_even_when_an_actor_process_is_frozen_and_leaves_no_process(workdir: Path) -> None:
    config = workdir / "config.toml"
    marker = str(config)
    launcher = subprocess.Popen([sys.executable, str(ROOT / "bootstrap.py"), "run", "--config", marker],
                                cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                start_new_session=True)
    frozen = 0
    try:
        state = workdir / "var" / "state" / "system.json"
        wait_until(lambda: state.exists() and json.loads(state.read_text() or "{}"), 60, "the system to start")
        # The symbols supervisor is the process with the most children (one per symbol); freeze
        # one of its symbol actors: it will not answer its exit request.
        processes = processes_mentioning(marker)
        parent = max(processes, key=lambda pid: len(_children(pid)))
        frozen = _children(parent)[0]
        os.kill(frozen, signal.SIGSTOP)

        os.killpg(launcher.pid, signal.SIGINT)
        out, _ = launcher.communicate(timeout=120)
        text = out.decode(errors="replace")
        assert launcher.returncode == 0, text
        assert "system: stopped" in text
        assert re.search(r"killed \d+ actor process\(es\) that had not exited", text), text
        wait_until(lambda: not processes_mentioning(marker), 15, "every process of the system to exit")
    finally:
        kill_launched(launcher, marker, *([frozen] if frozen else []))


@pytest.mark.timeout(60)
def test_run_refuses_a_foreign_journal_and_never_writes_to_it(workdir: Path) -> None:
    journal = workdir / "var" / "state" / "journal.sqlite"
    journal.parent.mkdir(parents=True)
    foreign = b"these are somebody's notes, not a journal\n" * 200
    journal.write_bytes(foreign)
    run = subprocess.run([sys.executable, str(ROOT / "bootstrap.py"), "run", "--config", str(workdir / "config.toml")],
                         cwd=workdir, capture_output=True, text=True, timeout=50)
    assert run.returncode == 3, run.stdout + run.stderr
    assert "journal" in run.stderr and str(journal) in run.stderr, run.stderr
    assert journal.read_bytes() == foreign  # never overwritten
    assert not (journal.parent / "system.json").exists()


def _journal_positions(path: Path) -> dict[str, Decimal]:
    """Return each symbol's position as its actor last journaled it (read while the system runs)."""
    from actors.symbol import SymbolState
    from journal.store import Journal

    with Journal.open(path, readonly=True) as journal:
        return {key.split(":", 1)[1]: state.position.quantity for key, state in journal.states("symbol:")
                if isinstance(state, SymbolState)}


@pytest.mark.timeout(300)
def test_kill_9_of_the_whole_running_system_then_run_again_loses_no_fill_and_sends_nothing_twice(
        workdir: Path) -> None:
    # The broker is a standalone simulator (it keeps running, and filling, while the system is dead).
    sim_port, control = free_port(), free_port()
    sim_config = workdir / "simulator.toml"
    sim_config.write_text((workdir / "config.toml").read_text())
    simulator = subprocess.Popen([sys.executable, str(ROOT / "bootstrap.py"), "simulator", "--config",
                                  str(sim_config), "--port", str(sim_port), "--control-port", str(control)],
                                 cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                 start_new_session=True)
    config = workdir / "config.toml"
    text, n = re.subn(r'(?m)^kind = "simulator"', 'kind = "tws"', config.read_text())
    text, m = re.subn(r"(?m)^port = 7497", f"port = {sim_port}", text)
    assert n == m == 1
    config.write_text(text)
    marker = str(config)
    journal = workdir / "var" / "state" / "journal.sqlite"

    outputs: list[Path] = []

    def run() -> subprocess.Popen[bytes]:
        outputs.append(workdir / f"launcher-{len(outputs) + 1}.txt")
        with outputs[-1].open("wb") as out:
            return subprocess.Popen([sys.executable, str(ROOT / "bootstrap.py"), "run", "--config", marker],
                                    cwd=workdir, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)

    def status() -> dict:
        return send(control, {"cmd": "status"})["status"]

    launcher = None
    try:
        wait_until(lambda: port_open("127.0.0.1", control), 30, "the simulator's control port")
        launcher = run()
        wait_until(lambda: status()["executions"] > 0, 180, "a first fill at the simulator")
        for pid in processes_mentioning(marker):  # kill -9 of the whole system, all at once
            os.kill(pid, signal.SIGKILL)
        wait_until(lambda: not processes_mentioning(marker), 15, "every process of the system to die")
        launcher.wait(10)
        before = status()

        launcher = run()  # `run` again, on the same state directory
        wait_until(lambda: status()["clients"] == [1], 60, "the restarted system to reconnect")
        sim_positions = lambda: {s: Decimal(q) for s, q in status()["positions"].items() if Decimal(q) != 0}
        wait_until(lambda: {s: q for s, q in _journal_positions(journal).items() if q != 0} == sim_positions(), 60,
              "every symbol's journaled position to equal the simulator's")
        after = status()
        print(f"at the kill: {before['executions']} fill(s), {len(before['orders_per_ref'])} order(s); "
              f"after the restart: {after['executions']} fill(s), {len(after['orders_per_ref'])} order(s); "
              f"positions {sim_positions()}")
        assert all(count == 1 for count in after["orders_per_ref"].values()), after["orders_per_ref"]
        assert set(before["orders_per_ref"]) <= set(after["orders_per_ref"])
        os.killpg(launcher.pid, signal.SIGINT)
        code = launcher.wait(60)
        assert code == 0, f"the second launcher exited {code}; its output:\n{outputs[-1].read_text()[-4000:]}"
    finally:
        for proc in (launcher, simulator):
            if proc is not None and proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
        for pid in processes_mentioning(marker):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


@pytest.mark.timeout(240)
def test_status_shows_the_figures_and_prometheus_serves_them_on_loopback(workdir: Path) -> None:
    import urllib.request

    port = free_port()
    config = workdir / "config.toml"
    text, n = re.subn(r"(?m)^prometheus_port = 0", f"prometheus_port = {port}", config.read_text())
    assert n == 1
    config.write_text(text)
    marker = str(config)
    launcher = subprocess.Popen([sys.executable, str(ROOT / "bootstrap.py"), "run", "--config", marker],
                                cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
    try:
        state = workdir / "var" / "state" / "system.json"
        info = wait_until(lambda: state.exists() and json.loads(state.read_text() or "{}"), 60, "the system to start")
        wait_until(lambda: send(info["simulator_control_port"], {"cmd": "status"})["status"]["executions"] > 0, 120,
              "a first fill")

        def scrape() -> str:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=20) as response:
                assert response.status == 200
                assert response.headers["Content-Type"].startswith("text/plain")
                return response.read().decode()

        metrics = wait_until(lambda: (lambda t: t if "ibactors_fills_total" in t else None)(scrape()), 30,
                        "fills in /metrics")
        for line in ("# TYPE ibactors_ticks_in_total counter", "# TYPE ibactors_orders_sent_total counter",
                     "# TYPE ibactors_signal_to_order_seconds histogram",
                     'ibactors_signal_to_order_seconds_bucket{le="+Inf"}', "# TYPE ibactors_restarts gauge"):
            assert line in metrics, metrics
        running = re.search(r"(?m)^ibactors_actors_running (\d+)", metrics)
        assert running and int(running.group(1)) >= 10, metrics  # 10 core and symbol actors, and groups
        status = subprocess.run([sys.executable, str(ROOT / "bootstrap.py"), "status", "--json", "--config", marker],
                                cwd=workdir, capture_output=True, text=True, timeout=60)
        assert status.returncode == 0, status.stderr
        figures = json.loads(status.stdout)
        assert figures["counters"]["fills"] >= 1 and figures["counters"]["ticks_in"] > 0
        assert figures["latency"]["signal_to_order"]["count"] >= 1
        assert any(name.startswith("quote_age_ms_") for name in figures["gauges"])
        os.killpg(launcher.pid, signal.SIGINT)
        code = launcher.wait(60)
        assert code == 0, f"the second launcher exited {code}; its output:\n{outputs[-1].read_text()[-4000:]}"
    finally:
        kill_launched(launcher, marker)
