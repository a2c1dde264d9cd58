"""The one entry point: validate the configuration, run the simulator, run the system, operate it."""

from __future__ import annotations

import argparse
import sys
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


def _cmd_reload_rules(args: argparse.Namespace) -> int:
    import os

    from actors.launcher import LaunchError, admin_ask
    from messages import AdminError, AdminReply, ReloadRules

    # The running system would refuse an invalid file too: say so here without bothering it.
    config = _load(args.config, then="The running rules stay as they are.")
    if config is None:
        return 2
    token = os.environ.get("IBACTORS_ADMIN_TOKEN", "")
    try:
        reply = admin_ask(config, ReloadRules(path=str(Path(args.config).resolve()), token=token))
    except LaunchError as exc:
        print(exc, file=sys.stderr)
        return 1
    if isinstance(reply, AdminReply):
        print(reply.text)
        return 0
    text = reply.text if isinstance(reply, AdminError) else repr(reply)
    print(f"reload refused: {text}", file=sys.stderr)
    return 1


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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bootstrap.py",
        description="An actor-based automated trading system for Interactive Brokers.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    run = sub.add_parser("run", help="start the whole system in the foreground (Ctrl-C stops it)")
    run.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="path to config.toml")
    run.set_defaults(func=_cmd_run)

    check = sub.add_parser("check-config", help="validate a configuration file and report every problem")
    check.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="path to config.toml")
    check.set_defaults(func=_cmd_check_config)

    reload = sub.add_parser("reload-rules", help="validate the rules in the config file and swap them into "
                                                 "the running system (a bad file changes nothing)")
    reload.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="path to config.toml")
    reload.set_defaults(func=_cmd_reload_rules)

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
    ctl.add_argument("cmd", help="status, drop, refuse, lose_link, restore_link, duplicate_statuses, "
                                 "fill_after_cancel, reject_next, silence")
    ctl.add_argument("args", nargs="*", help="KEY=VALUE arguments, e.g. seconds=5 client_id=1 symbol=AAPL")
    ctl.set_defaults(func=_cmd_simulator_ctl)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
