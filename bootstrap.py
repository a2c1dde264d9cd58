"""The one entry point: validate the configuration, run the simulator, run the system, operate it."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from core.config import Config

DEFAULT_CONFIG = Path(__file__).resolve().parent / "config.toml"


def _load(path: Path, then: str = "") -> Config | None:
    """Return the validated configuration at `path`, or None after printing every problem (and `then`)."""
    from core.config import load_config
    from core.errors import ConfigError

    try:
        return load_config(path)
    except ConfigError as exc:
        print(f"{path}: {exc}" + (f"\n{then}" if then else ""), file=sys.stderr)
        return None


def _cmd_check_config(args: argparse.Namespace) -> int:
    config = _load(args.config, then="Fix the listed keys and run `python bootstrap.py check-config` again.")
    if config is None:
        return 2
    symbols = ", ".join(s.symbol for s in config.symbols)
    print(f"{args.config}: OK — broker {config.broker.kind} on {config.broker.host}:{config.broker.port}, "
          f"symbols {symbols}")
    return 0


def _cmd_simulator(args: argparse.Namespace) -> int:
    from simulator.launch import run_foreground, simulator_config

    config = _load(args.config)
    if config is None:
        return 2
    sim = simulator_config(config, port=args.port, seed=args.seed, speed=args.speed, wire=args.wire,
                           control_port=args.control_port,
                           pacing_msgs_per_s=0 if args.no_pacing else None)
    return run_foreground(sim)


def _cmd_simulator_ctl(args: argparse.Namespace) -> int:
    import json

    from simulator.control import send

    request: dict[str, object] = {"cmd": args.cmd}
    for item in args.args:
        key, sep, value = item.partition("=")
        if not sep:
            print(f"argument {item!r}: expected KEY=VALUE, e.g. seconds=5", file=sys.stderr)
            return 2
        try:
            request[key] = json.loads(value)
        except json.JSONDecodeError:
            request[key] = value
    try:
        reply = send(args.control_port, request)
    except OSError as exc:
        print(f"no simulator control port on 127.0.0.1:{args.control_port} ({exc}); start one with "
              f"`python bootstrap.py simulator --control-port {args.control_port}`", file=sys.stderr)
        return 1
    print(json.dumps(reply, indent=2))
    return 0 if reply.get("ok") else 1


def _cmd_run(args: argparse.Namespace) -> int:
    from actors.launcher import LaunchError, run

    config = _load(args.config)
    if config is None:
        return 2
    try:
        return run(config, args.config)
    except LaunchError as exc:
        print(f"cannot start: {exc}", file=sys.stderr)
        return 3


def _cmd_node(args: argparse.Namespace) -> int:
    from actors.launcher import LaunchError, run_node

    config = _load(args.config)
    if config is None:
        return 2
    try:
        return run_node(config, args.name, admin_port=args.admin_port)
    except LaunchError as exc:
        print(f"cannot start node {args.name}: {exc}", file=sys.stderr)
        return 3


def _cmd_reload_rules(args: argparse.Namespace) -> int:
    from actors.launcher import LaunchError, admin_ask, admin_token
    from messages import AdminError, AdminReply, ReloadRules

    # The running system would refuse an invalid file too: say so here without bothering it.
    config = _load(args.config, then="The running rules stay as they are.")
    if config is None:
        return 2
    try:
        reply = admin_ask(config, ReloadRules(path=str(Path(args.config).resolve()),
                                              token=admin_token(config)))
    except LaunchError as exc:
        print(exc, file=sys.stderr)
        return 1
    if isinstance(reply, AdminReply):
        print(reply.text)
        return 0
    text = reply.text if isinstance(reply, AdminError) else repr(reply)
    print(f"reload refused: {text}", file=sys.stderr)
    return 1


def format_table(columns: tuple[str, ...], rows: tuple[tuple[str, ...], ...]) -> str:
    """Return `rows` as aligned text under a header (numbers right-aligned)."""
    def numeric(text: str) -> bool:
        return bool(text) and text.replace(",", "").replace(".", "", 1).lstrip("-+").isdigit()
    widths = [max([len(c)] + [len(r[i]) if i < len(r) else 0 for r in rows]) for i, c in enumerate(columns)]
    right = [bool(rows) and all(numeric(r[i]) or not r[i] for r in rows if i < len(r)) for i in range(len(columns))]
    def line(cells: tuple[str, ...]) -> str:
        return "  ".join((cell.rjust(w) if r else cell.ljust(w)) for cell, w, r in zip(cells, widths, right)).rstrip()
    return "\n".join([line(columns), line(tuple("-" * w for w in widths))] + [line(r) for r in rows])


def _admin(args: argparse.Namespace, build: object) -> int:
    """Send the admin command `build(token)` to the running system and print its answer."""
    import json

    from actors.launcher import LaunchError, admin_ask, admin_token, attach
    from messages import AdminError, AdminReply, AdminTable, StatusSnapshot

    config = _load(args.config)
    if config is None:
        return 2
    try:
        handle = attach(config)  # one handle: `status` asks every actor through it too
        reply = admin_ask(config, build(admin_token(config)), handle=handle)  # type: ignore[operator]
    except LaunchError as exc:
        print(exc, file=sys.stderr)
        return 1
    as_json = getattr(args, "json", False)
    if isinstance(reply, AdminError):
        if as_json:
            print(json.dumps({"ok": False, "code": reply.code.value, "error": reply.text}))
        print(f"{reply.command or 'command'} refused ({reply.code.value}): {reply.text}", file=sys.stderr)
        return 1
    if isinstance(reply, AdminReply):
        print(json.dumps({"ok": reply.ok, "text": reply.text}) if as_json else reply.text)
        return 0 if reply.ok else 1
    if isinstance(reply, AdminTable):
        if as_json:
            print(json.dumps({"title": reply.title, "text": reply.text,
                              "rows": [dict(zip(reply.columns, row)) for row in reply.rows]}, indent=2))
        else:
            print(f"{reply.title}: {reply.text}")
            print(format_table(reply.columns, reply.rows))
        return 0
    if isinstance(reply, StatusSnapshot):
        from actors.launcher import collect_statuses
        from actors.metrics import merge, quantile_ms

        columns = ("actor", "supervisor", "incarnation", "restarts", "state", "pid")
        rows = tuple((c.key, c.supervisor, str(c.incarnation), f"{c.restarts}/{c.max_restarts}",
                      "quarantined" if c.quarantined else "running" if c.running else "down", str(c.pid or ""))
                     for c in reply.children)
        counters, histograms, gauges = merge(collect_statuses(*handle, reply))  # type: ignore[arg-type]
        latency = {name: {"count": h.count, "p50_ms": quantile_ms(h, 0.5), "p99_ms": quantile_ms(h, 0.99),
                          "mean_ms": round(h.sum_us / h.count / 1000, 3) if h.count else None}
                   for name, h in sorted(histograms.items())}
        if as_json:
            print(json.dumps({"trading_state": reply.trading_state.value,
                              "connection_state": reply.connection_state.value,
                              "quarantined": list(reply.quarantined), "text": reply.text,
                              "actors": [dict(zip(columns, row)) for row in rows],
                              "counters": counters, "latency": latency, "gauges": gauges}, indent=2))
        else:
            print(reply.text)
            print(format_table(columns, rows))
            if counters:
                print()
                print(format_table(("counter", "value"), tuple((k, str(v)) for k, v in sorted(counters.items()))))
            if latency:
                print()
                print(format_table(("latency", "count", "p50 ms (<=)", "p99 ms (<=)", "mean ms"),
                                   tuple((k, str(v["count"]), f"{v['p50_ms']:g}" if v["p50_ms"] is not None else "",
                                          f"{v['p99_ms']:g}" if v["p99_ms"] is not None else "",
                                          str(v["mean_ms"] or "")) for k, v in latency.items())))
            if gauges:
                print()
                print(format_table(("now", "value"), tuple((k, str(v)) for k, v in sorted(gauges.items()))))
        return 0
    print(f"unexpected answer: {reply!r}", file=sys.stderr)
    return 1


def _cmd_status(args: argparse.Namespace) -> int:
    from messages import GetStatus
    return _admin(args, lambda token: GetStatus(token=token))


def _cmd_query(args: argparse.Namespace) -> int:
    from messages import AdminQuery, QueryKind
    return _admin(args, lambda token: AdminQuery(what=QueryKind(args.command), symbol=args.symbol or "",
                                                 limit=args.limit, token=token))


def _cmd_halt(args: argparse.Namespace) -> int:
    from messages import Halt
    return _admin(args, lambda token: Halt(reason=args.reason, reduce_only=args.reduce_only, token=token))


def _cmd_resume(args: argparse.Namespace) -> int:
    from messages import Resume
    return _admin(args, lambda token: Resume(reason=args.reason, token=token))


def _cmd_flatten(args: argparse.Namespace) -> int:
    from messages import Flatten
    if bool(args.symbol) == bool(args.all):
        print("say which: `flatten SYMBOL` for one symbol, or `flatten --all` for every one", file=sys.stderr)
        return 2
    return _admin(args, lambda token: Flatten(symbol=args.symbol or "", reason=args.reason, token=token))


def _cmd_cancel_all(args: argparse.Namespace) -> int:
    from messages import CancelAll
    return _admin(args, lambda token: CancelAll(symbol=args.symbol or "", reason=args.reason, token=token))


def _cmd_restart(args: argparse.Namespace) -> int:
    from messages import RestartActor
    return _admin(args, lambda token: RestartActor(key=args.actor, token=token))


def _cmd_log_level(args: argparse.Namespace) -> int:
    from messages import LogLevel, SetLogLevel
    words = args.words
    if len(words) not in (1, 2):
        print("usage: log-level [ACTOR_OR_SYMBOL] LEVEL", file=sys.stderr)
        return 2
    try:
        level = LogLevel(words[-1].upper())
    except ValueError:
        print(f"unknown level {words[-1]!r}: one of {', '.join(l.value for l in LogLevel)}", file=sys.stderr)
        return 2
    key = words[0] if len(words) == 2 else ""
    return _admin(args, lambda token: SetLogLevel(level=level, key=key, token=token))


def _cmd_shutdown(args: argparse.Namespace) -> int:
    from messages import Shutdown
    return _admin(args, lambda token: Shutdown(reason=args.reason, token=token))


def _cmd_why(args: argparse.Namespace) -> int:
    from journal.store import Journal, JournalError
    from journal.why import NotInJournal, render_why, why

    path = args.journal
    if path is None:
        config = _load(args.config)
        if config is None:
            return 2
        path = config.journal_path
    if not Path(path).exists():
        print(f"no journal at {path}: the system has not run with this configuration yet "
              f"(or give --journal PATH)", file=sys.stderr)
        return 2
    try:
        with Journal.open(path, readonly=True) as journal:
            print(render_why(why(journal, args.order)))
    except NotInJournal as exc:
        print(exc, file=sys.stderr)
        return 1
    except JournalError as exc:
        print(f"cannot read the journal: {exc}", file=sys.stderr)
        return 2
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from reports.report import run

    config = _load(args.config)
    if config is None:
        return 2
    return run(journal_path=args.journal or config.journal_path, zone=config.system.zone, since=args.since,
               out=args.out, capital=args.capital)


def _cmd_backtest(args: argparse.Namespace) -> int:
    from loguru import logger

    from actors.backtest import BacktestError, run_backtest
    from core.bar_data import BadBarData, OnBadData, parse_timestamp
    from reports.report import Progress
    from reports.report import run as report

    config = _load(args.config)
    if config is None:
        return 2
    try:
        bounds = [parse_timestamp(t) if t else None for t in (args.from_, args.to)]
    except ValueError as exc:
        print(f"--from/--to: {exc}", file=sys.stderr)
        return 2
    out = args.out or Path("var/backtests") / time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    logger.remove()  # the actors log to out/logs; the terminal shows progress and the result
    shown = Progress(sys.stderr)
    started = time.perf_counter()
    try:
        result = run_backtest(config, args.data, out, on_bad=OnBadData(args.on_bad_data), from_ns=bounds[0],
                              to_ns=bounds[1], signals=args.signals,
                              progress=lambda done, total: shown.at("backtest bars", done, total))
    except (BacktestError, BadBarData) as exc:
        print(f"\nbacktest: {exc}", file=sys.stderr)
        if isinstance(exc, BadBarData):
            print("fix the row, or give --on-bad-data skip to leave bad rows out (each is reported)",
                  file=sys.stderr)
        return 1
    took = time.perf_counter() - started
    for problem in result.problems:
        print(f"skipped: {problem}" if problem.kind != "gap" else f"note: {problem}", file=sys.stderr)
    print(f"backtest: {result.bars:,} bars, {result.quotes:,} quotes in {took:.1f} s "
          f"({result.bars / max(took, 1e-9):,.0f} bars/s); journal {result.journal}")
    return report(journal_path=result.journal, zone=config.system.zone, out=out / "report")


def _cmd_demo_data(args: argparse.Namespace) -> int:
    from core.demo_data import write_demo_data

    paths = write_demo_data(args.out, symbols=tuple(args.symbols), days=args.days, seed=args.seed)
    print(f"demo data: {len(paths)} file(s) of {args.days} session(s) each in {args.out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bootstrap.py",
        description="An actor-based automated trading system for Interactive Brokers.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    run = sub.add_parser("run", help="start the whole system in the foreground (Ctrl-C stops it)")
    run.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="path to config.toml")
    run.set_defaults(func=_cmd_run)

    node = sub.add_parser("node", help="run a member node in the foreground: an actor system that joins the "
                                       "leader (`run`) and hosts the symbol actors it places there")
    node.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="path to config.toml (the leader's)")
    node.add_argument("--name", required=True, help="this node's name: a [cluster.nodes.<name>] table")
    node.add_argument("--admin-port", type=int, help="listen on this port instead of the node's admin_port")
    node.set_defaults(func=_cmd_node)

    check = sub.add_parser("check-config", help="validate a configuration file and report every problem")
    check.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="path to config.toml")
    check.set_defaults(func=_cmd_check_config)

    reload = sub.add_parser("reload-rules", help="validate the rules in the config file and swap them into "
                                                 "the running system (a bad file changes nothing)")
    reload.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="path to config.toml")
    reload.set_defaults(func=_cmd_reload_rules)

    def admin(name: str, func: object, help_: str) -> argparse.ArgumentParser:
        command = sub.add_parser(name, help=help_)
        command.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="path to config.toml")
        command.add_argument("--json", action="store_true", help="print JSON instead of text")
        command.set_defaults(func=func)
        return command

    admin("status", _cmd_status, "every actor with its incarnation and restarts, the connection, trading state")
    for name, what in (("positions", "positions with cost, mark, P&L and stops"),
                       ("orders", "working orders"), ("pnl", "realized and unrealized P&L and commissions"),
                       ("signals", "the latest signals, with rejections"),
                       ("rules", "the running rules: version, fires today")):
        query = admin(name, _cmd_query, what)
        query.add_argument("symbol", nargs="?", help="only this symbol")
        query.add_argument("--limit", type=int, default=50, help="rows of history (signals)")
    halt = admin("halt", _cmd_halt, "stop new orders: no rule runs, working entries cancelled, stops stay")
    halt.add_argument("--reduce-only", action="store_true", help="only orders that reduce a position")
    halt.add_argument("--reason", default="", help="why (journaled)")
    resume = admin("resume", _cmd_resume, "return to ACTIVE trading")
    resume.add_argument("--reason", default="", help="why (journaled)")
    flatten = admin("flatten", _cmd_flatten, "cancel entries and close positions at market (--all also halts)")
    flatten.add_argument("symbol", nargs="?", help="the symbol to flatten")
    flatten.add_argument("--all", action="store_true", help="every symbol")
    flatten.add_argument("--reason", default="", help="why (journaled)")
    cancel = admin("cancel-all", _cmd_cancel_all, "cancel every working order (of SYMBOL), stops included")
    cancel.add_argument("symbol", nargs="?", help="only this symbol's orders")
    cancel.add_argument("--reason", default="", help="why (journaled)")
    restart = admin("restart", _cmd_restart, "restart an actor (a symbol, a core actor, a group); lifts a quarantine")
    restart.add_argument("actor", help="the actor's key, e.g. AAPL or tws")
    level = admin("log-level", _cmd_log_level, "set the log level of every actor, or of one")
    level.add_argument("words", nargs="+", metavar="[ACTOR] LEVEL", help="e.g. `DEBUG` or `AAPL DEBUG`")
    stop = admin("shutdown", _cmd_shutdown, "stop the running system cleanly")
    stop.add_argument("--reason", default="", help="why (journaled)")

    explain = sub.add_parser("why", help="say why an order was sent: signal -> rule -> intent -> risk decision "
                                         "-> orders -> fills, from the journal")
    explain.add_argument("order", help="an order ref (AAPL-1-3:entry), a group / intent id (AAPL-1-3) or a "
                                       "broker order id")
    explain.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="path to config.toml")
    explain.add_argument("--journal", type=Path, help="the journal file (default: the config's)")
    explain.set_defaults(func=_cmd_why)

    report = sub.add_parser("report", help="performance report from the journal: round trips, metrics, an "
                                           "equity chart and one self-contained HTML page")
    report.add_argument("--since", metavar="YYYY-MM-DD", help="only trades opened on or after this exchange day")
    report.add_argument("--out", type=Path, help="output directory (default: var/reports/<UTC date-time>)")
    report.add_argument("--capital", metavar="N", help="starting capital for returns and equity (default 100000)")
    report.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="path to config.toml")
    report.add_argument("--journal", type=Path, help="the journal file (default: the config's)")
    report.set_defaults(func=_cmd_report)

    bt = sub.add_parser("backtest", help="run the strategy over bar files with the same actors, on a "
                                         "simulated broker and a virtual clock; then the report")
    bt.add_argument("--data", type=Path, required=True,
                    help="a directory with one SYMBOL.csv per traded symbol (or one CSV for one symbol)")
    bt.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="path to config.toml")
    bt.add_argument("--out", type=Path, help="output directory (default: var/backtests/<UTC date-time>)")
    bt.add_argument("--from", dest="from_", metavar="TIME", help="first bar (ISO 8601, New York time without "
                                                                 "an offset, or epoch seconds)")
    bt.add_argument("--to", metavar="TIME", help="end of the window (exclusive)")
    bt.add_argument("--on-bad-data", choices=("stop", "skip"), default="stop",
                    help="a bad row (unreadable, non-positive price, high below low, duplicate or unsorted "
                         "time) stops the run (default) or is skipped and reported; gaps are reported")
    bt.add_argument("--signals", type=Path, help="prediction signals to replay, one JSON object per line, each "
                                                 "handed to the signal source at its ts")
    bt.set_defaults(func=_cmd_backtest)

    demo = sub.add_parser("demo-data", help="write the seeded demo bars (one-minute sessions) as CSV files")
    demo.add_argument("--out", type=Path, default=Path("var/demo-data"), help="output directory")
    demo.add_argument("--days", type=int, default=5, help="sessions per symbol (390 bars each)")
    demo.add_argument("--seed", type=int, default=7, help="random seed")
    demo.add_argument("--symbols", nargs="+", default=["AAPL", "MSFT", "SPY"], help="symbols")
    demo.set_defaults(func=_cmd_demo_data)

    sim = sub.add_parser("simulator", help="run the TWS simulator standalone, for any TWS API client")
    sim.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="path to config.toml")
    sim.add_argument("--port", type=int, default=7497, help="API port to listen on (default 7497, 0 = free)")
    sim.add_argument("--seed", type=int, help="market seed (default: simulator.seed)")
    sim.add_argument("--speed", type=float, help="market seconds per wall second (default: simulator.speed)")
    sim.add_argument("--wire", choices=("protobuf", "text"), help="protobuf (server version 226) or text (200)")
    sim.add_argument("--control-port", type=int, help="JSON-lines fault-control port on loopback (0 = free)")
    sim.add_argument("--no-pacing", action="store_true", help="do not enforce the 50 msg/s limit")
    sim.set_defaults(func=_cmd_simulator)

    ctl = sub.add_parser("simulator-ctl", help="inject a fault into a running simulator, or show its state")
    ctl.add_argument("--control-port", type=int, required=True, help="the simulator's --control-port")
    from simulator.control import COMMANDS

    ctl.add_argument("cmd", help=", ".join(COMMANDS) + " (see simulator/control.py)")
    ctl.add_argument("args", nargs="*", help="KEY=VALUE arguments, e.g. seconds=5 client_id=1 symbol=AAPL")
    ctl.set_defaults(func=_cmd_simulator_ctl)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return int(args.func(args))
    except BrokenPipeError:  # e.g. `status | head -1`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
