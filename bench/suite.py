"""The benchmark suite (issue 8): every benchmark in turn, one table against the issue's goals, one JSON file.

Run: ``pip install -e '.[bench]'`` once (backtrader and ib_async, the peers measured side by side), then
``python -m bench.suite [--quick] [--json out.json] [--skip PART ...] [--bars N] [--max-bars N] [--seconds S]``

Each part is a benchmark of its own, run as a subprocess, one after the other (never two at a
time: the parts measure latency, and the machine may have two cores), writing its figures as JSON
to a temp dir; its output goes to a log there (`--keep` keeps the dir, which is also kept when a
part fails). The load average is read before each part; `--quick` is a smoke run of a few minutes.

Parts, in order (`--skip` takes their names):

* backtest: bench_backtest --bars 10000 N. Ours vs backtrader bars/s on N one-minute bars (default
  100,000; quick 10,000) with the ATR bracket strategy. Goal: ours >= 2x backtrader.
* linearity: bench_backtest --bars 10000 MAX with backtrader hidden (ours only). Our bars/s at
  10,000 and MAX bars (default 1,000,000; quick 50,000) in one process, the backtest part's N
  shown between. Goal: bars/s at MAX >= 0.8x bars/s at 10,000 (within 20 %; faster is fine).
* latency: bench_runtime --skip scale --phases staggered. Our tick-to-order p50/p99, 100 symbols
  quoting, 20 of them trading.
* ib_async: bench_ib_async. The same with a minimal single-process ib_async script on the same
  simulator. Goal: our p99 <= 5x its p99.
* memory: bench_runtime --skip latency. PSS per symbol actor: (PSS with N symbols - with 3) / (N - 3),
  N = 300 (quick 30).
* journal: bench_journal --skip throughput --variants full none. What the journal adds to an order
  before it leaves, in process (the gate's transaction + 3 legs x (submitted + placed), journal
  FULL as shipped) p50/p99, and the gate's commit measured end to end through the actors.
* recovery: bench_recovery. kill -9 of a symbol actor: to its new incarnation ready, to its first
  quote; its position unchanged.

How long: at today's 1,000-4,000 bars/s of our backtest, the 1,000,000 bars of the linearity part
alone take 4-17 minutes (the suite prints an estimate from the backtest part's figure); the
backtest part 1-2 minutes, latency and ib_async `--seconds` (60) plus a minute of start-up and
shutdown each, memory 2-3 minutes, journal and recovery about a minute each: 15-30 minutes in
all. `--max-bars` sets the largest size (or `--skip linearity`). `--quick` takes about 3 minutes.

The table has one row per figure: part | figure | value | goal | status, where status is MET or
MISSED for the issue's goals, FAILED (with the reason in the value) for a part that crashed,
timed out or left no readable figures, SKIPPED for a part left out, n/a for a goal whose other
part gave nothing. The exit code is 1 if any part FAILED; a MISSED goal does not change it (the
suite measures, it does not judge the build).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final

ROOT: Final = Path(__file__).resolve().parent.parent
PARTS: Final = ("backtest", "linearity", "latency", "ib_async", "memory", "journal", "recovery")
BASE_BARS: Final = 10_000          # the linearity's small size, and the backtest part's first
RATIO_GOAL: Final = 2.0            # ours >= 2x backtrader's bars/s
LATENCY_GOAL: Final = 5.0          # our tick-to-order p99 <= 5x the ib_async baseline's
LINEARITY_GOAL: Final = 0.8        # bars/s at the largest size >= 0.8x bars/s at BASE_BARS
HEARTBEAT_S: Final = 30.0
TERM_WAIT_S: Final = 30.0
# bench_backtest runs backtrader at every size when it can import it; the linearity part hides it
# (an import of a None entry in sys.modules raises ImportError), so only ours runs there.
OURS_ONLY: Final = ("import sys; sys.modules['backtrader'] = None; from bench.bench_backtest import main; "
                    "raise SystemExit(main(sys.argv[1:]))")

MET, MISSED, FAILED, SKIPPED, NA = "MET", "MISSED", "FAILED", "SKIPPED", "n/a"
_SAYS_WHY: Final = re.compile(r"^\w*(Error|Exception|Interrupt)\b|^PROBLEMS|timed out|error:")


# ---------------------------------------------------------------- the table (pure)


@dataclass(frozen=True, slots=True, kw_only=True)
class Outcome:
    """What one part left: its JSON figures (None if it wrote none) and why it failed ("" if it did not)."""

    data: Any = None
    error: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Row:
    """One line of the suite's table; `number` is the value as a number, for the JSON."""

    part: str
    figure: str
    value: str
    goal: str = ""
    status: str = ""  # MET, MISSED, FAILED, SKIPPED, n/a, or "" (a figure without a goal)
    number: float | None = None


class NoFigure(Exception):
    """A part's JSON lacks a figure it owes (the part ran, but measured nothing there)."""


def _num(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        raise NoFigure(f"no {what} in its figures (got {value!r})")
    return float(value)


def _ms(value: float) -> str:
    return f"{value:,.1f} ms" if value >= 10 else f"{value:,.2f} ms"


def _at_least(value: float, goal: float) -> str:
    return MET if value >= goal else MISSED


def _backtest(data: Any, outcomes: Mapping[str, Outcome]) -> list[Row]:
    row = max(data, key=lambda r: r["bars"])
    bars = int(row["bars"])
    ours = _num(row["ours_bars_per_s"], "ours bars/s")
    rows = [Row(part="backtest", figure=f"ours bars/s, {bars:,} bars", value=f"{ours:,.0f}", number=ours)]
    if row.get("backtrader_bars_per_s") is None:
        return [*rows, Row(part="backtest", figure="backtrader bars/s", status=FAILED,
                           value="no figure: backtrader is not installed (pip install -e '.[bench]')")]
    theirs = _num(row["backtrader_bars_per_s"], "backtrader bars/s")
    ratio = ours / theirs
    rows += [
        Row(part="backtest", figure=f"backtrader bars/s, {bars:,} bars", value=f"{theirs:,.0f}", number=theirs),
        Row(part="backtest", figure="ours / backtrader bars/s", value=f"{ratio:.2f}x", goal=f">= {RATIO_GOAL:g}x",
            status=_at_least(ratio, RATIO_GOAL), number=ratio),
        Row(part="backtest", figure="fills ours / backtrader (same strategy)",
            value=f"{row.get('ours_fills')} / {row.get('backtrader_fills')}"),
    ]
    return rows


def _linearity(data: Any, outcomes: Mapping[str, Outcome]) -> list[Row]:
    sizes = sorted(data, key=lambda r: r["bars"])
    if len(sizes) < 2:
        raise NoFigure("needs two sizes")
    rows = [Row(part="linearity", figure=f"ours bars/s, {int(r['bars']):,} bars",
                value=f"{_num(r['ours_bars_per_s'], 'ours bars/s'):,.0f}", number=float(r["ours_bars_per_s"]))
            for r in sizes]
    # The backtest part's sizes between the two, measured in its own process: shown, not judged.
    backtest = outcomes.get("backtest")
    mine = {int(r["bars"]) for r in sizes}
    if backtest is not None and isinstance(backtest.data, list):
        for r in sorted(backtest.data, key=lambda r: r.get("bars", 0)):
            bars = r.get("bars")
            per_s = r.get("ours_bars_per_s")
            if isinstance(bars, int) and bars not in mine and isinstance(per_s, (int, float)) \
                    and sizes[0]["bars"] < bars < sizes[-1]["bars"]:
                rows.insert(-1, Row(part="linearity", figure=f"ours bars/s, {bars:,} bars (backtest part)",
                                    value=f"{per_s:,.0f}", number=float(per_s)))
    small, large = sizes[0], sizes[-1]
    drift = _num(large["ours_bars_per_s"], "ours bars/s") / _num(small["ours_bars_per_s"], "ours bars/s")
    rows.append(Row(part="linearity", figure=f"bars/s at {int(large['bars']):,} / at {int(small['bars']):,} bars",
                    value=f"{drift:.2f}", goal=f">= {LINEARITY_GOAL:g} (within 20 %)",
                    status=_at_least(drift, LINEARITY_GOAL), number=drift))
    return rows


def _ours_latency(data: Any) -> dict[str, Any]:
    return data["latency"]["staggered"]


def _latency(data: Any, outcomes: Mapping[str, Outcome]) -> list[Row]:
    run = _ours_latency(data)
    p50, p99 = _num(run["p50_ms"], "tick-to-order p50"), _num(run["p99_ms"], "tick-to-order p99")
    who = f"{run['symbols']} symbols, {run['trading']} trading"
    return [Row(part="latency", figure=f"ours tick-to-order p50 ({who})", value=_ms(p50), number=p50),
            Row(part="latency", figure="ours tick-to-order p99", value=_ms(p99), number=p99),
            Row(part="latency", figure="ours entries measured", value=f"{run['entries']:.0f}",
                number=float(run["entries"]))]


def _ib_async(data: Any, outcomes: Mapping[str, Outcome]) -> list[Row]:
    run = data["ib_async"]
    p50, p99 = _num(run["p50_ms"], "tick-to-order p50"), _num(run["p99_ms"], "tick-to-order p99")
    rows = [Row(part="ib_async", figure=f"ib_async tick-to-order p50 ({run['symbols']} symbols, "
                                        f"{run['trading']} trading)", value=_ms(p50), number=p50),
            Row(part="ib_async", figure="ib_async tick-to-order p99", value=_ms(p99), number=p99),
            Row(part="ib_async", figure="ib_async entries measured", value=f"{run['entries']:.0f}",
                number=float(run["entries"]))]
    goal = f"<= {LATENCY_GOAL:g}x"
    ours = outcomes.get("latency")
    try:
        mine = _num(_ours_latency(ours.data)["p99_ms"], "p99") if ours is not None else None
    except (NoFigure, KeyError, TypeError):
        mine = None
    if mine is None:
        why = "the latency part was skipped" if ours is None else "the latency part gave no p99"
        rows.append(Row(part="ib_async", figure="ours p99 / ib_async p99", value=why, goal=goal, status=NA))
    else:
        ratio = mine / p99
        rows.append(Row(part="ib_async", figure="ours p99 / ib_async p99", value=f"{ratio:.2f}x", goal=goal,
                        status=MET if ratio <= LATENCY_GOAL else MISSED, number=ratio))
    return rows


def _memory(data: Any, outcomes: Mapping[str, Outcome]) -> list[Row]:
    scale = data["scale"]
    if scale is None:
        raise NoFigure("no scale run in its figures")
    per = _num(scale["pss_per_symbol_actor_mib"], "PSS per symbol actor")
    n, base = scale["symbols"], scale["baseline_symbols"]
    total = _num(scale["pss_total_mib"], "PSS total")
    return [Row(part="memory", figure=f"PSS per symbol actor ((PSS {n} - PSS {base} symbols) / {n - base})",
                value=f"{per:.2f} MiB", number=per),
            Row(part="memory", figure=f"PSS of the whole system, {n} symbols", value=f"{total:,.1f} MiB",
                number=total),
            Row(part="memory", figure=f"start {n} symbol actors", value=f"{_num(scale['start_s'], 'start-up'):.1f} s",
                number=float(scale["start_s"]))]


def _journal(data: Any, outcomes: Mapping[str, Outcome]) -> list[Row]:
    path = data["writes_ms"]["full"]["outbound_path"]
    p50, p99 = _num(path["p50"], "outbound path p50"), _num(path["p99"], "outbound path p99")
    rows = [Row(part="journal", figure="journal per order before it leaves (FULL, in process) p50", value=_ms(p50),
                number=p50),
            Row(part="journal", figure="journal per order before it leaves (FULL, in process) p99", value=_ms(p99),
                number=p99)]
    gate = data.get("latency_ms", {}).get("full", {})
    if "journal_adds_p50" in gate:
        adds50 = _num(gate["journal_adds_p50"], "journal adds p50")
        adds99 = _num(gate["journal_adds_p99"], "journal adds p99")
        rows.append(Row(part="journal", figure="journal adds at the risk gate, end to end, p50 / p99",
                        value=f"{_ms(adds50)} / {_ms(adds99)}", number=adds50))
    return rows


def _recovery(data: Any, outcomes: Mapping[str, Outcome]) -> list[Row]:
    rows = []
    for label, key in (("kill -9 of a symbol actor -> new incarnation ready", "ready_ms"),
                       ("kill -9 of a symbol actor -> it handled a quote", "first_quote_ms")):
        s = data[key]
        p50, top = _num(s["p50"], f"{key} p50"), _num(s["max"], f"{key} max")
        tail = f", p99 {_ms(s['p99'])}" if s.get("p99") is not None else ""
        rows.append(Row(part="recovery", figure=f"{label}, p50 / max", value=f"{_ms(p50)} / {_ms(top)}{tail}",
                        number=p50))
    kept = data["positions_kept"]
    rows.append(Row(part="recovery", figure=f"position unchanged across {data['kills']} kills",
                    value="yes" if kept else "NO", goal="unchanged", status=MET if kept else MISSED))
    return rows


ROWS: Final[Mapping[str, Callable[[Any, Mapping[str, Outcome]], list[Row]]]] = {
    "backtest": _backtest, "linearity": _linearity, "latency": _latency, "ib_async": _ib_async,
    "memory": _memory, "journal": _journal, "recovery": _recovery}


def table_rows(outcomes: Mapping[str, Outcome]) -> list[Row]:
    """Return the suite's rows from each part's outcome, in PARTS order; a part absent from `outcomes` was skipped."""
    rows: list[Row] = []
    for part in PARTS:
        outcome = outcomes.get(part)
        if outcome is None:
            rows.append(Row(part=part, figure="(left out: --skip)", value="", status=SKIPPED))
            continue
        if outcome.data is not None:
            try:
                rows += ROWS[part](outcome.data, outcomes)
            except NoFigure as exc:
                rows.append(Row(part=part, figure="(no figures)", value=str(exc), status=FAILED))
            except (KeyError, TypeError, ValueError, IndexError, AttributeError, ZeroDivisionError) as exc:
                rows.append(Row(part=part, figure="(unreadable figures)", value=f"{type(exc).__name__}: {exc}",
                                status=FAILED))
        if outcome.error:
            rows.append(Row(part=part, figure="(part failed)", value=outcome.error, status=FAILED))
        elif outcome.data is None:
            rows.append(Row(part=part, figure="(part failed)", value="it wrote no figures", status=FAILED))
    return rows


def failed_parts(rows: Sequence[Row]) -> list[str]:
    """Return the parts with a FAILED row, in order."""
    return list(dict.fromkeys(r.part for r in rows if r.status == FAILED))


def format_table(rows: Sequence[Row], width: int = 70) -> str:
    """Return the rows as an aligned text table (values longer than `width` are cut)."""
    def cut(text: str) -> str:
        return text if len(text) <= width else text[: width - 3] + "..."
    header = ("part", "figure", "value", "goal", "status")
    cells = [(r.part, r.figure, cut(r.value), r.goal, r.status) for r in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) if cells else len(h) for i, h in enumerate(header)]
    line = "  ".join(f"{{:<{w}}}" for w in widths)
    out = [line.format(*header), line.format(*("-" * w for w in widths))]
    out += [line.format(*c).rstrip() for c in cells]
    return "\n".join(out)


# ---------------------------------------------------------------- the parts


@dataclass(frozen=True, slots=True, kw_only=True)
class Part:
    """One benchmark run as a subprocess: `argv` after the interpreter (the suite adds --json PATH)."""

    name: str
    title: str
    argv: tuple[str, ...]
    timeout_s: float


def plan(args: argparse.Namespace) -> list[Part]:
    """Return the parts to run, in order, for the suite's options."""
    seconds, warmup = f"{args.seconds:g}", ("2" if args.quick else "5")
    sizes = [str(b) for b in dict.fromkeys((BASE_BARS, args.bars))]
    parts = [
        Part(name="backtest", title=f"backtest: ours vs backtrader, {args.bars:,} bars",
             argv=("-m", "bench.bench_backtest", "--bars", *sizes), timeout_s=3600),
        Part(name="linearity", title=f"linearity: ours alone at {BASE_BARS:,} and {args.max_bars:,} bars",
             argv=("-c", OURS_ONLY, "--bars", str(BASE_BARS), str(args.max_bars)),
             timeout_s=max(3600.0, args.max_bars / 100)),
        Part(name="latency", title=f"tick-to-order latency, ours: 100 symbols, {seconds} s measured",
             argv=("-m", "bench.bench_runtime", "--skip", "scale", "--phases", "staggered", "--seconds", seconds,
                   "--warmup", warmup), timeout_s=1800),
        Part(name="ib_async", title=f"tick-to-order latency, ib_async baseline: 100 symbols, {seconds} s measured",
             argv=("-m", "bench.bench_ib_async", "--seconds", seconds, "--warmup", warmup), timeout_s=1800),
        Part(name="memory", title=f"memory per symbol actor: {args.scale_symbols} symbols",
             argv=("-m", "bench.bench_runtime", "--skip", "latency", "--scale-symbols", str(args.scale_symbols),
                   "--stale-seconds", "5" if args.quick else "20"), timeout_s=1800),
        Part(name="journal", title="journal cost per order",
             argv=("-m", "bench.bench_journal", "--skip", "throughput", "--variants", "full", "none",
                   *(("--quick",) if args.quick else ())), timeout_s=1800),
        Part(name="recovery", title=f"recovery after kill -9 of a symbol actor: {args.kills} kills",
             argv=("-m", "bench.bench_recovery", "--kills", str(args.kills)), timeout_s=1800),
    ]
    return [p for p in parts if p.name not in args.skip]


def _tail(log: Path) -> list[str]:
    try:
        with log.open("rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - 16384))
            tail = f.read().decode("utf-8", errors="replace")
    except OSError:
        return []
    return [line.strip() for line in tail.replace("\r", "\n").splitlines() if line.strip()]


def _last_line(log: Path) -> str:
    lines = _tail(log)
    return lines[-1] if lines else ""


def _reason(log: Path) -> str:
    """Return the line of a failed part's log that says why: its last error or PROBLEMS line, else its last line."""
    lines = _tail(log)
    said = [line for line in lines if _SAYS_WHY.search(line)]
    return said[-1] if said else (lines[-1] if lines else "no output")


def _stop(process: subprocess.Popen[bytes]) -> None:
    """Ask the part to stop (its benchmark kills its own processes on SIGTERM), then kill its process group."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(TERM_WAIT_S)
        except subprocess.TimeoutExpired:
            pass
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGKILL)  # its own session: start_new_session=True
        except ProcessLookupError:
            pass
        process.wait(10)


def run_part(part: Part, directory: Path) -> tuple[Outcome, dict[str, Any]]:
    """Run `part` to its end (or its timeout), showing progress; return its outcome and its run record."""
    figures, log = directory / f"{part.name}.json", directory / f"{part.name}.log"
    argv = [sys.executable, *part.argv, "--json", str(figures)]
    load = os.getloadavg()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    began = time.monotonic()
    error = ""
    with log.open("wb") as out:
        process = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            beat = began
            while process.poll() is None:
                now = time.monotonic()
                if now - began > part.timeout_s:
                    _stop(process)
                    error = f"timed out after {part.timeout_s:.0f} s"
                    break
                if now - beat >= HEARTBEAT_S:
                    beat = now
                    print(f"      ... {now - began:.0f} s: {_last_line(log)[:100]}", flush=True)
                time.sleep(0.5)
        except BaseException:
            _stop(process)
            raise
    took = time.monotonic() - began
    code = process.returncode
    if not error and code != 0:
        error = f"exit code {code}: {_reason(log)}"
    data = None
    if figures.exists():
        try:
            data = json.loads(figures.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            error = error or f"unreadable JSON: {exc}"
    if data is None and not error:
        error = f"it wrote no figures: {_reason(log)}"
    record = {"command": argv[:1] + [a if a != OURS_ONLY else "<bench_backtest, backtrader hidden>" for a in argv[1:]],
              "seconds": round(took, 1), "load_before": list(load), "exit_code": code, "error": error,
              "log": str(log), "figures": data}
    return Outcome(data=data, error=error), record


def machine() -> dict[str, Any]:
    """Return what the figures depend on: CPUs, their model, memory, Python, the platform."""
    info: dict[str, Any] = {"cpus": os.cpu_count(), "python": platform.python_version(),
                            "implementation": platform.python_implementation(), "platform": platform.platform()}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu_model"] = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                info["memory_mib"] = int(line.split()[1]) // 1024
                break
    except OSError:
        pass
    return info


def _expected(part: Part, args: argparse.Namespace, outcomes: Mapping[str, Outcome]) -> str:
    if part.name != "linearity":
        return ""
    rate = 2500.0  # today's 1,000-4,000 bars/s
    backtest = outcomes.get("backtest")
    try:
        rate = float(max(backtest.data, key=lambda r: r["bars"])["ours_bars_per_s"])  # type: ignore[union-attr]
        source = "at the backtest part's rate"
    except (AttributeError, KeyError, TypeError, ValueError):
        source = "at ~2,500 bars/s"
    return f" (expected ~{(BASE_BARS + args.max_bars) / rate / 60:.0f} min {source})"


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # the running part is stopped on the way out (run_part)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run of a few minutes: 10k/50k bars, 10 s latency runs, 30 symbols, 5 kills")
    parser.add_argument("--json", type=Path, default=None, help="write every figure, the table and the machine here")
    parser.add_argument("--skip", choices=PARTS, nargs="+", action="extend", default=[], metavar="PART",
                        help=f"leave parts out ({', '.join(PARTS)})")
    parser.add_argument("--bars", type=int, default=None, help="bars of the backtest vs backtrader (100,000)")
    parser.add_argument("--max-bars", type=int, default=None,
                        help="largest size of the linearity part (1,000,000: ours takes 4-17 minutes)")
    parser.add_argument("--seconds", type=float, default=None, help="measured seconds of each latency run (60)")
    parser.add_argument("--scale-symbols", type=int, default=None, help="symbols of the memory part (300)")
    parser.add_argument("--kills", type=int, default=None, help="kills of the recovery part (20)")
    parser.add_argument("--keep", action="store_true", help="keep the parts' logs and JSON (the dir is printed)")
    args = parser.parse_args(argv)
    for name, full, quick in (("bars", 100_000, 10_000), ("max_bars", 1_000_000, 50_000), ("seconds", 60.0, 10.0),
                              ("scale_symbols", 300, 30), ("kills", 20, 5)):
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else full)
    if args.bars < 1 or args.max_bars <= BASE_BARS or args.seconds <= 0 or args.scale_symbols <= 3 or args.kills < 1:
        parser.error(f"--bars >= 1, --max-bars > {BASE_BARS}, --seconds > 0, --scale-symbols > 3 and --kills >= 1")
    signal.signal(signal.SIGTERM, _interrupt)
    parts = plan(args)
    directory = Path(tempfile.mkdtemp(prefix="bench_suite-"))
    began = time.monotonic()
    info = machine()
    print(f"benchmark suite{' (quick)' if args.quick else ''}: {len(parts)} part(s) one after the other, "
          f"{info['cpus']} CPUs, Python {info['python']}; logs in {directory}", flush=True)
    outcomes: dict[str, Outcome] = {}
    records: dict[str, Any] = {}
    try:
        for i, part in enumerate(parts, 1):
            load = " ".join(f"{x:.2f}" for x in os.getloadavg())
            print(f"[{i}/{len(parts)}] {part.title}{_expected(part, args, outcomes)}; load {load}", flush=True)
            outcome, records[part.name] = run_part(part, directory)
            outcomes[part.name] = outcome
            took = records[part.name]["seconds"]
            print(f"      {'FAILED' if outcome.error else 'done'} in {took:.0f} s"
                  + (f": {outcome.error[:200]}" if outcome.error else ""), flush=True)
    except KeyboardInterrupt:
        print(f"\nsuite interrupted; the running part was stopped; logs kept in {directory}", flush=True)
        return 130
    rows = table_rows(outcomes)
    failed = failed_parts(rows)
    print()
    print(format_table(rows))
    if args.json is not None:
        combined = {"suite": {"quick": args.quick, "args": {k: str(v) if isinstance(v, Path) else v
                                                           for k, v in vars(args).items()},
                              "seconds": round(time.monotonic() - began, 1), "failed": failed},
                    "machine": info, "parts": records, "rows": [asdict(r) for r in rows]}
        args.json.write_text(json.dumps(combined, indent=2, default=str) + "\n", encoding="utf-8")
        print(f"\nfigures written to {args.json}")
    if failed or args.keep:
        print(f"logs of every part kept in {directory}")
    else:
        shutil.rmtree(directory, ignore_errors=True)
    print(f"suite took {time.monotonic() - began:.0f} s"
          + (f"; FAILED: {', '.join(failed)}" if failed else "; every part ran (MISSED goals do not fail it)"))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
