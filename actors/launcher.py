"""Start and stop a whole system in the foreground: simulator, actor system, Supervisor (`bootstrap.py run`)."""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path
from typing import Final

from core.config import BrokerKind, Config

ROOT: Final = Path(__file__).resolve().parent.parent
PIDFILE: Final = "system.json"


class LaunchError(Exception):
    """The system cannot start; the message says why and what to do."""


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    """Return True if something accepts TCP connections on (host, port)."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_pidfile(config: Config) -> dict[str, object] | None:
    path = Path(config.system.state_dir) / PIDFILE
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def check_admin_port(config: Config) -> None:
    """Raise LaunchError if the admin port is taken, saying whether by a live system or by a stranger.

    Thespian would silently join whatever admin listens there (or hang 14 s on a stranger), so
    the port is probed with a plain socket first (thespian-notes §4.3).
    """
    host, port = config.system.bind_address, config.system.admin_port
    if not port_open(host, port):
        return
    info = read_pidfile(config)
    if info and info.get("admin_port") == port and isinstance(info.get("pid"), int) and pid_alive(info["pid"]):
        raise LaunchError(
            f"a system is already running on {host}:{port} (launcher pid {info['pid']}, started "
            f"{info.get('started', '?')}); stop it with Ctrl-C in its terminal or "
            f"`kill {info['pid']}`, or give this one another system.admin_port")
    raise LaunchError(
        f"{host}:{port} (system.admin_port) is in use by another program; stop it or set "
        f"system.admin_port in the config to a free port")


@dataclass
class Simulator:
    """The embedded simulator, run as its own process so it outlives a crashed actor system."""

    process: subprocess.Popen[bytes]
    port: int
    control_port: int

    def stop(self, timeout: float = 5.0) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout)


def start_simulator(config: Config, config_path: Path, timeout: float = 20.0) -> Simulator:
    """Start `bootstrap.py simulator` on the configured (or a free) loopback port and wait until it listens."""
    port = config.simulator.port or free_port()
    control_port = free_port()
    cmd = [sys.executable, str(ROOT / "bootstrap.py"), "simulator", "--config", str(config_path),
           "--port", str(port), "--control-port", str(control_port)]
    log_dir = Path(config.system.log_dir)
    log_dir.mkdir(parents=True, exist_ok=True)
    out = open(log_dir / "simulator.log", "ab")
    process = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=os.getcwd(),
                               start_new_session=True)
    out.close()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise LaunchError(f"the simulator exited at start-up (code {process.returncode}); "
                              f"see {log_dir / 'simulator.log'}")
        if port_open("127.0.0.1", port, timeout=0.2):
            return Simulator(process=process, port=port, control_port=control_port)
        time.sleep(0.05)
    process.kill()
    raise LaunchError(f"the simulator did not listen on 127.0.0.1:{port} within {timeout:.0f} s")


def admin_token(config: Config, *, create: bool = False) -> str:
    """Return the admin token: IBACTORS_ADMIN_TOKEN, else the state directory's admin.token ("" if none).

    With `create` (the launcher) a missing file is made with a new random token, readable by its
    owner only. A token file others may read is refused: anyone who reads it can halt or flatten.
    """
    from actors.supervisor import ADMIN_TOKEN_ENV, ADMIN_TOKEN_FILE

    token = os.environ.get(ADMIN_TOKEN_ENV, "")
    if token:
        return token
    path = Path(config.system.state_dir) / ADMIN_TOKEN_FILE
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        if not create:
            return ""
        path.parent.mkdir(parents=True, exist_ok=True)
        token = secrets.token_urlsafe(32)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(token + "\n")
        return token
    if mode & 0o077:
        raise LaunchError(f"{path} (the admin token) can be read by other users (mode {mode & 0o777:o}); "
                          f"run `chmod 600 {path}`")
    try:
        return path.read_text().strip()
    except PermissionError:
        raise LaunchError(f"cannot read {path} (the admin token): run this as the user who started the "
                          f"system, or set {ADMIN_TOKEN_ENV}") from None


def check_journal(config: Config) -> None:
    """Raise LaunchError if the journal is foreign, corrupt or newer than this program (it is left untouched).

    A missing journal is created here, so every actor process opens one that exists.
    """
    from journal.store import Journal, JournalError

    try:
        Journal.open(config.journal_path.absolute(), synchronous=config.journal.synchronous.value).close()
    except JournalError as exc:
        raise LaunchError(f"the journal cannot be used: {exc}") from None


def export_environment(config: Config, log_dir: Path) -> None:
    """Tell the actor processes (forked from this one) where to log, at what level, and at what nice value."""
    from actors import logs, processes

    os.environ[logs.ENV_DIR] = str(log_dir)
    os.environ[logs.ENV_LEVEL] = str(config.system.log_level)
    os.environ[processes.ENV_BACKGROUND_NICE] = str(config.system.background_nice)


def run(config: Config, config_path: Path, *, stop_event: threading.Event | None = None,
        start_timeout: float = 60.0) -> int:
    """Run the whole system until SIGINT/SIGTERM (or `stop_event`); stop it in reverse start order."""
    from thespian.actors import ActorSystem

    from actors import nodes, thespian_patches
    from actors.processes import session_of, sweep_session
    from messages import ActorReady, ActorStatusSnapshot, AdminError, GetActorStatus, Shutdown, StartSystem

    if config.cluster.active:
        config = nodes.absolute_paths(config)  # the members' actors write to the same files
    check_admin_port(config)
    state_dir = Path(config.system.state_dir)
    state_dir.mkdir(parents=True, exist_ok=True)
    check_journal(config)
    token = admin_token(config, create=True)
    Path(config.system.log_dir).mkdir(parents=True, exist_ok=True)
    thespian_patches.set_bind_host(config.system.bind_address)
    capabilities: dict[str, object] = {"Admin Port": config.system.admin_port}
    if config.cluster.active:
        cluster = config.cluster
        thespian_patches.set_convention_timers(timedelta(seconds=cluster.heartbeat_s), cluster.missed_heartbeats)
        capabilities.update(nodes.leader_capabilities(config))
    export_environment(config, Path(config.system.log_dir).resolve())

    stop = stop_event or threading.Event()
    metrics: MetricsServer | None = None
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    sim: Simulator | None = None
    asys = None
    session = 0  # the actor system's processes (the admin's session), swept after the shutdown
    try:
        if config.broker.kind is BrokerKind.SIMULATOR:
            sim = start_simulator(config, config_path)
            config = replace(config, broker=replace(config.broker, host="127.0.0.1", port=sim.port))
            print(f"simulator: listening on 127.0.0.1:{sim.port}, control port {sim.control_port} "
                  f"(log: {config.system.log_dir}/simulator.log)", flush=True)
        asys = ActorSystem("multiprocTCPBase", capabilities, logDefs=_thespian_log_defs(config))
        if config.cluster.active:
            members = ", ".join(f"{n.name} ({n.host}:{n.admin_port})" for n in config.cluster.nodes)
            print(f"cluster: this is node {config.cluster.name}, the leader; members {members} join it "
                  f"with `python bootstrap.py node --name NAME`", flush=True)
        supervisor = asys.createActor("actors.supervisor.Supervisor", globalName="supervisor")
        status = asys.ask(supervisor, GetActorStatus(), start_timeout)
        if isinstance(status, ActorStatusSnapshot):
            session = session_of(status.pid)
        reply = asys.ask(supervisor, StartSystem(config=config, admin_token=token), start_timeout)
        if isinstance(reply, AdminError):
            raise LaunchError(f"the system could not start: {reply.text}")
        if not isinstance(reply, ActorReady):
            raise LaunchError(f"the system did not report ready within {start_timeout:.0f} s "
                              f"(got {type(reply).__name__}); see {config.system.log_dir}/system.log")
        (state_dir / PIDFILE).write_text(json.dumps({
            "pid": os.getpid(), "admin_port": config.system.admin_port,
            "started": time.strftime("%Y-%m-%d %H:%M:%S"),
            "simulator_port": sim.port if sim else None,
            "simulator_control_port": sim.control_port if sim else None}))
        symbols = ", ".join(config.symbol_names)
        print(f"system: running on admin port {config.system.admin_port} — trading {symbols}; "
              f"logs in {config.system.log_dir}/ — Ctrl-C stops it", flush=True)
        if config.system.background_nice:
            print(f"processes: the symbol and order group actors and their supervisors run at nice "
                  f"{config.system.background_nice} (system.background_nice)", flush=True)
        if config.monitoring.prometheus_port:
            metrics = MetricsServer(config).start()
            print(f"metrics: http://{config.system.bind_address}:{config.monitoring.prometheus_port}/metrics",
                  flush=True)
        checked = time.monotonic()
        while not stop.wait(0.1 if metrics is not None else 0.5):
            if metrics is not None:
                metrics.serve(asys, supervisor)
            if sim is not None and sim.process.poll() is not None:
                print("simulator: exited unexpectedly; stopping the system", file=sys.stderr, flush=True)
                break
            if time.monotonic() - checked >= 2.0:
                checked = time.monotonic()
                # `bootstrap.py shutdown` stops the Supervisor: then this launcher's work is done too.
                if not isinstance(asys.ask(supervisor, GetActorStatus(), 5), ActorStatusSnapshot):
                    print("system: the supervisor has stopped (a shutdown command)", flush=True)
                    break
        print("system: stopping", flush=True)
        try:
            asys.ask(supervisor, Shutdown(reason="operator stop", token=token), 15)
        except Exception as exc:  # shutting down regardless
            print(f"system: supervisor did not confirm the stop ({exc}); shutting down anyway", file=sys.stderr)
        return 0
    finally:
        if asys is not None:
            asys.shutdown()
            # An actor that did not answer its exit request survives asys.shutdown().
            left = sweep_session(session)
            if left:
                print(f"system: killed {left} actor process(es) that had not exited", file=sys.stderr,
                      flush=True)
        if metrics is not None:
            metrics.stop()
        if sim is not None:
            sim.stop()
        try:
            (state_dir / PIDFILE).unlink()
        except OSError:
            pass
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        print("system: stopped", flush=True)


def run_node(config: Config, name: str, *, admin_port: int | None = None,
             stop_event: threading.Event | None = None) -> int:
    """Run member node `name` of [cluster.nodes] until SIGINT/SIGTERM (or `stop_event`): an actor system
    that joins the leader's convention and hosts the symbol actors the leader places on it."""
    from thespian.actors import ActorSystem

    from actors import nodes, thespian_patches
    from actors.processes import listener_pid, session_of, sweep_session

    cluster = config.cluster
    if not cluster.active:
        raise LaunchError("the configuration lists no member nodes: add a [cluster.nodes.<name>] table "
                          "for each (see the README, \"Running on several nodes\")")
    try:
        node = cluster.node(name)
    except KeyError:
        raise LaunchError(f"no node {name!r} in [cluster.nodes]; the configured nodes are "
                          f"{', '.join(n.name for n in cluster.nodes)}") from None
    port = admin_port or node.admin_port
    if port_open(node.host, port):
        raise LaunchError(f"{node.host}:{port} (cluster.nodes.{name}.admin_port) is in use: is node {name} "
                          f"running already? Stop it, or give this one another --admin-port")
    config = nodes.absolute_paths(config)
    journal = config.journal_path
    if not journal.exists():
        # A member's symbol actors journal their state there: a journal of its own would lose it.
        raise LaunchError(f"no journal at {journal}: the node's symbol actors write to the leader's journal, "
                          f"so this node must see the leader's state directory at the same path (start the "
                          f"leader first, from the same working directory, or give an absolute system.state_dir)")
    leader = f"{config.system.bind_address}:{config.system.admin_port}"
    Path(config.system.log_dir).mkdir(parents=True, exist_ok=True)
    thespian_patches.set_bind_host(node.host)
    thespian_patches.set_convention_timers(timedelta(seconds=cluster.heartbeat_s), cluster.missed_heartbeats)
    export_environment(config, Path(config.system.log_dir))

    stop = stop_event or threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    asys = None
    session = 0
    try:
        asys = ActorSystem("multiprocTCPBase", nodes.member_capabilities(config, node, port),
                           logDefs=_thespian_log_defs(config))
        session = session_of(listener_pid(port))
        watch = asys.createActor("actors.nodes.NodeWatch")
        asys.tell(watch, nodes.WatchConvention(leader=cluster.name))
        print(f"node {name}: listening on {node.host}:{port}, joining the leader at {leader} (symbols: "
              f"{' '.join(node.symbols)}) — Ctrl-C stops it", flush=True)
        joined = False
        while not stop.wait(0.5):
            state = asys.ask(watch, nodes.GetNodeState(), 5)
            if isinstance(state, nodes.NodeState) and state.joined != joined:
                joined = state.joined
                print(f"node {name}: {'joined' if joined else 'lost'} the leader at {leader}", flush=True)
        return 0
    finally:
        if asys is not None:
            print(f"node {name}: stopping", flush=True)
            asys.shutdown()
            left = sweep_session(session)
            if left:
                print(f"node {name}: killed {left} actor process(es) that had not exited", file=sys.stderr,
                      flush=True)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        print(f"node {name}: stopped", flush=True)


def admin_ask(config: Config, message: object, timeout: float = 15.0,
              handle: tuple[object, object] | None = None) -> object:
    """Send an admin `message` to the running system's Supervisor and return its answer.

    The admin port is probed first: thespian would otherwise start a new, empty system on it.
    Raises LaunchError when no system answers there. The attached handle is never shut down
    (that would stop the running system); it goes with this process.
    """
    asys, supervisor = handle if handle is not None else attach(config)
    reply = asys.ask(supervisor, message, timeout)  # type: ignore[attr-defined]
    if reply is None:
        raise LaunchError(f"the system on {config.system.bind_address}:{config.system.admin_port} did not "
                          f"answer within {timeout:.0f} s")
    return reply


def attach(config: Config) -> tuple[object, object]:
    """Return a handle on the running actor system and its Supervisor's address (LaunchError if none runs)."""
    from thespian.actors import ActorSystem

    host, port = config.system.bind_address, config.system.admin_port
    if not port_open(host, port):
        raise LaunchError(f"no system is running on {host}:{port} (system.admin_port); start one with "
                          f"`python bootstrap.py run`")
    from actors import thespian_patches

    if not os.environ.get(thespian_patches.BIND_ENV):
        thespian_patches.set_bind_host(config.system.bind_address)
    asys = ActorSystem("multiprocTCPBase", {"Admin Port": port}, logDefs=_thespian_log_defs(config))
    return asys, asys.createActor("actors.supervisor.Supervisor", globalName="supervisor")


def collect_statuses(asys: object, supervisor: object, status: object, timeout: float = 3.0) -> list[object]:
    """Ask the Supervisor and every running actor `status` lists for its ActorStatusSnapshot (figures included)."""
    from messages import ActorStatusSnapshot, GetActorStatus

    found = []
    targets = [supervisor] + [c.address for c in getattr(status, "children", ()) if c.address is not None and c.running]
    for address in targets:
        reply = asys.ask(address, GetActorStatus(), timeout)  # type: ignore[attr-defined]
        if isinstance(reply, ActorStatusSnapshot):
            found.append(reply)
    return found


def metrics_text(asys: object, supervisor: object) -> str:
    """Return the running system's figures in Prometheus text format (asking every actor)."""
    from actors.metrics import merge, prometheus_text
    from messages import GetStatus, StatusSnapshot

    status = asys.ask(supervisor, GetStatus(), 5.0)  # type: ignore[attr-defined]
    if not isinstance(status, StatusSnapshot):
        raise LaunchError("the system did not answer its status")
    counters, histograms, gauges = merge(collect_statuses(asys, supervisor, status))  # type: ignore[arg-type]
    gauges["actors_running"] = sum(c.running for c in status.children)
    gauges["restarts"] = sum(c.restarts for c in status.children)
    gauges["quarantined"] = len(status.quarantined)
    gauges["trading_halted"] = int(status.trading_state.value == "HALTED")
    return prometheus_text(counters, histograms, gauges={k: float(v) for k, v in gauges.items()})


class MetricsServer:
    """The Prometheus text endpoint (GET /metrics) on the bind address, served with the launcher's own handle.

    The HTTP thread only queues a scrape; the launcher's loop (which owns the actor system handle:
    thespian's is not for two threads) answers it with `serve`.
    """

    def __init__(self, config: Config) -> None:
        import http.server
        import queue

        self.pending: queue.Queue[tuple[threading.Event, list[str]]] = queue.Queue()
        pending = self.pending

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
                if self.path.split("?")[0] != "/metrics":
                    self.send_error(404, "only /metrics is served")
                    return
                done, answer = threading.Event(), []
                pending.put((done, answer))
                if not done.wait(15) or not answer or answer[0].startswith("!"):
                    self.send_error(503, f"the system did not answer{f': {answer[0][1:]}' if answer else ''}")
                    return
                body = answer[0].encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass

        self.server = http.server.ThreadingHTTPServer((config.system.bind_address,
                                                       config.monitoring.prometheus_port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, name="metrics", daemon=True)

    def serve(self, asys: object, supervisor: object) -> None:
        """Answer the scrapes waiting (call from the thread that owns `asys`)."""
        import queue

        while True:
            try:
                done, answer = self.pending.get_nowait()
            except queue.Empty:
                return
            try:
                answer.append(metrics_text(asys, supervisor))
            except Exception as exc:  # reported to the scraper as a 503
                answer.append(f"!{exc}")
            done.set()

    def start(self) -> MetricsServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _thespian_log_defs(config: Config) -> dict[str, object]:
    """Thespian's own stdlib logging: warnings and above into logs/thespian.log."""
    return {
        "version": 1,
        "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
        "handlers": {"file": {"class": "logging.FileHandler", "formatter": "plain", "level": "WARNING",
                              "filename": str(Path(config.system.log_dir).resolve() / "thespian.log")}},
        "loggers": {"": {"handlers": ["file"], "level": "WARNING"}},
    }
