"""Per-process loguru sinks: every actor logs to `logs/system.log`, a symbol actor also to `logs/symbols/<SYM>.log`.

Each actor process configures its own sinks when it handles ConfigureActor (thespian-notes §10.2):
inherited sinks are dropped first, files are appended to and never rotated by an actor (no two
processes ever rotate one file), and every line carries the actor and the correlation id of the
message being handled (`run_once` binds it). On simpleSystemBase every actor shares the
launcher's process: sinks are reference-counted and shared, and nothing inherited is removed.
The launcher passes the log directory and level in IBACTORS_LOG_DIR / IBACTORS_LOG_LEVEL; without
them (unit tests) an actor adds no sink.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

from loguru import logger

SYSTEM_LOG: Final = "system.log"
SYMBOL_LOG_DIR: Final = "symbols"
LOG_FORMAT: Final = ("{time:YYYY-MM-DD HH:mm:ss.SSS} | {level: <8} | {process} | {extra[actor]} | "
                     "corr={extra[corr]} | {message}")  # loguru appends the newline and any traceback
ENV_DIR: Final = "IBACTORS_LOG_DIR"
ENV_LEVEL: Final = "IBACTORS_LOG_LEVEL"

# log file -> (loguru handler id, users) in this process, and each file's filter
_sinks: dict[str, tuple[int, int]] = {}
_filters: dict[str, Callable[[Any], bool] | None] = {}
_owner_pid = 0


# Set by a driver that runs every actor in its own process on simpleSystemBase (a backtest): then
# no actor runs alone, even when that driver itself is a multiprocessing child (a bench, a test).
_in_process = False


def run_in_process(flag: bool = True) -> bool:
    """Declare that the actors of this process all live in it (simpleSystemBase); return the old value."""
    global _in_process
    previous, _in_process = _in_process, flag
    return previous


def runs_alone() -> bool:
    """Return True in a forked actor process (multiproc bases), False in the launcher's process."""
    return not _in_process and multiprocessing.parent_process() is not None


def _claim_process() -> None:
    global _owner_pid
    if runs_alone() and _owner_pid != os.getpid():
        # Sinks inherited through fork write into the parent's files and queues (the enqueue=True
        # deadlock of thespian-notes §10.2): drop them before adding our own.
        logger.remove()
        _sinks.clear()
        _owner_pid = os.getpid()
    logger.configure(extra={"actor": "-", "corr": "-"})


def _add_sink(path: Path, level: str, filter_: Callable[[Any], bool] | None = None) -> None:
    key = str(path)
    if key in _sinks:
        handler, users = _sinks[key]
        _sinks[key] = (handler, users + 1)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logger.add(path, level=level, format=LOG_FORMAT, filter=filter_, enqueue=False, encoding="utf-8")
    _sinks[key] = (handler, 1)
    _filters[key] = filter_


def set_level(level: str) -> int:
    """Give every sink of this process the minimum level `level` (an operator's log-level); return how many."""
    for key, (handler, users) in list(_sinks.items()):
        try:
            logger.remove(handler)
        except ValueError:
            pass
        replaced = logger.add(Path(key), level=level, format=LOG_FORMAT, filter=_filters.get(key), enqueue=False,
                              encoding="utf-8")
        _sinks[key] = (replaced, users)
    return len(_sinks)


def log_settings(log_dir: str | Path | None = None, level: str | None = None) -> tuple[Path, str] | None:
    """Return (directory, level) from the arguments or the launcher's environment; None = no files."""
    directory = log_dir if log_dir is not None else os.environ.get(ENV_DIR)
    if not directory:
        return None
    return Path(directory), str(level or os.environ.get(ENV_LEVEL) or "INFO")


def configure_process(log_dir: str | Path | None = None, level: str | None = None) -> None:
    """Give this process its system.log sink (once; later calls only count another user)."""
    settings = log_settings(log_dir, level)
    if settings is None:
        return
    _claim_process()
    _add_sink(settings[0] / SYSTEM_LOG, settings[1])


def add_symbol_sink(symbol: str, log_dir: str | Path | None = None, level: str | None = None) -> None:
    """Send the lines bound to `symbol` also to logs/symbols/<SYMBOL>.log."""
    settings = log_settings(log_dir, level)
    if settings is None:
        return
    _claim_process()
    _add_sink(settings[0] / SYSTEM_LOG, settings[1])
    _add_sink(settings[0] / SYMBOL_LOG_DIR / f"{symbol}.log", settings[1],
              lambda record: record["extra"].get("symbol") == symbol)


def symbol_log_paths(symbol: str, log_dir: str | Path) -> tuple[Path, Path]:
    return Path(log_dir) / SYSTEM_LOG, Path(log_dir) / SYMBOL_LOG_DIR / f"{symbol}.log"


def release(paths: tuple[Path, ...]) -> None:
    """Drop one use of each sink; a sink nobody uses any more is removed (and flushed)."""
    for path in paths:
        key = str(path)
        if key not in _sinks:
            continue
        handler, users = _sinks[key]
        if users > 1:
            _sinks[key] = (handler, users - 1)
            continue
        del _sinks[key]
        try:
            logger.remove(handler)
        except ValueError:
            pass  # already gone with a logger.remove() in this process


def close_all() -> None:
    """Remove every sink added here (a simpleSystemBase shutdown stops no actor)."""
    for handler, _ in _sinks.values():
        try:
            logger.remove(handler)
        except ValueError:
            pass
    _sinks.clear()
